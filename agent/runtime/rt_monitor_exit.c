/* agent/runtime: the exit file, the record a monitor leaves when its
 * container exits: a small JSON object written atomically, so a daemon that
 * was down when the container exited still learns the exact exit code,
 * signal, OOM kill and times.  The monitor formats it with snprintf (it must
 * not pull in more code than it needs); the daemon parses it with cJSON.
 *
 * Invariant: the file is either absent (not exited yet) or complete; the
 * parser accepts only the fields' documented types and ranges.
 */
#include "rt_monitor.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* JSON string escape of s into out (always NUL-terminated, truncated). */
static void json_escape(char *out, size_t out_len, const char *s)
{
    size_t o = 0;

    for (; *s != '\0' && o + 7 < out_len; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            out[o++] = '\\';
            out[o++] = (char)c;
        } else if (c < 0x20 || c >= 0x7f) {
            o += (size_t)snprintf(out + o, out_len - o, "\\u%04x", c);
        } else {
            out[o++] = (char)c;
        }
    }
    out[o] = '\0';
}

int rt_exit_status_format(const struct rt_exit_status *es, char *out, size_t out_len)
{
    const struct rt_mon_status *st = &es->st;
    char err[sizeof(es->error) * 6 + 16] = "";
    int n;

    if (es->error[0] != '\0') {
        char esc[sizeof(es->error) * 6];
        json_escape(esc, sizeof(esc), es->error);
        snprintf(err, sizeof(err), ",\"error\":\"%s\"", esc);
    }
    n = snprintf(out, out_len,
                 "{\"pid\":%d,\"exit_code\":%d,\"signal\":%d,\"oom_killed\":%s,"
                 "\"created_at\":%lld,\"started_at\":%lld,\"finished_at\":%lld%s}\n",
                 st->pid, st->exit_code, st->signal, st->oom_killed ? "true" : "false",
                 (long long)st->created_at, (long long)st->started_at,
                 (long long)st->finished_at, err);
    return (n < 0 || (size_t)n >= out_len) ? -ENOSPC : n;
}

/* An integer field within [lo, hi]; doubles carry 53 bits, enough for ns
 * timestamps until the year 2255. */
static int get_int(const cJSON *o, const char *name, double lo, double hi, int64_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, name);

    if (!cJSON_IsNumber(v) || v->valuedouble < lo || v->valuedouble > hi ||
        v->valuedouble != (double)(int64_t)v->valuedouble)
        return -EINVAL;
    *out = (int64_t)v->valuedouble;
    return 0;
}

int rt_exit_status_parse(const char *json, size_t len, struct rt_exit_status *out)
{
    cJSON *o = cJSON_ParseWithLength(json, len);
    const cJSON *oom, *e;
    int64_t pid, code, sig;
    int rc = -EINVAL;

    memset(out, 0, sizeof(*out));
    if (o == NULL)
        return -EINVAL;
    if (!cJSON_IsObject(o) || get_int(o, "pid", 0, INT32_MAX, &pid) < 0 ||
        get_int(o, "exit_code", INT32_MIN, INT32_MAX, &code) < 0 ||
        get_int(o, "signal", 0, 64, &sig) < 0 ||
        get_int(o, "created_at", 0, 9.0e18, &out->st.created_at) < 0 ||
        get_int(o, "started_at", 0, 9.0e18, &out->st.started_at) < 0 ||
        get_int(o, "finished_at", 0, 9.0e18, &out->st.finished_at) < 0)
        goto out;
    oom = cJSON_GetObjectItemCaseSensitive(o, "oom_killed");
    if (!cJSON_IsBool(oom))
        goto out;
    e = cJSON_GetObjectItemCaseSensitive(o, "error");
    if (e != NULL) {
        if (!cJSON_IsString(e))
            goto out;
        snprintf(out->error, sizeof(out->error), "%s", e->valuestring);
    }
    out->st.state = RT_MON_EXITED_STATE;
    out->st.pid = (int)pid;
    out->st.exit_code = (int)code;
    out->st.signal = (int)sig;
    out->st.oom_killed = cJSON_IsTrue(oom);
    rc = 0;
out:
    cJSON_Delete(o);
    return rc;
}

int rt_monitor_read_exit(const char *exit_file, struct rt_exit_status *out, struct ag_err *err)
{
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int rc = ag_file_read(exit_file, 8192, &buf, &len);

    if (rc == -ENOENT)
        return ag_err_set(err, rc, "exit file %s: not written yet", exit_file);
    if (rc < 0)
        return ag_err_set(err, rc, "read exit file %s", exit_file);
    rc = rt_exit_status_parse(buf, len, out);
    if (rc < 0)
        return ag_err_set(err, rc, "exit file %s: malformed", exit_file);
    return 0;
}
