/* agent/runtime: the per-container state directory and the state JSON.
 *
 * state_root/<id>/ holds state.json (our record: pid, its start time,
 * bundle, cgroup), config.json (the spec as it was at create: later edits
 * of the bundle have no effect) and exec.fifo while the container is
 * "created".  The status is derived, not stored: a live init with the fifo
 * is created, without it running; a dead (or reused) pid is stopped.
 * Invariant: ids are [A-Za-z0-9_.-]{1,128} not starting with '.', so a
 * state path never leaves state_root.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "rt_internal.h"

int rt__id_check(const char *id, struct ag_err *err)
{
    size_t n = id ? strlen(id) : 0;
    if (n == 0 || n > 128 || id[0] == '.' ||
        strspn(id, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-") != n)
        return ag_err_set(err, -EINVAL, "invalid container id (want 1-128 of [A-Za-z0-9_.-])");
    return 0;
}

int rt__state_dir(const char *root, const char *id, char *out, size_t out_len)
{
    return ag_path_join(out, out_len, root, id);
}

int rt__proc_start_time(pid_t pid, unsigned long long *out)
{
    char path[64], buf[1024];
    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return -EIO;
    buf[n] = 0;
    /* comm may contain spaces and parentheses: fields start after the last ')'. */
    char *p = strrchr(buf, ')');
    if (!p || p[1] != ' ')
        return -EIO;
    char state = p[2];
    if (state == 'Z' || state == 'X')
        return -ESRCH;
    p += 2;
    for (int field = 3; field < 22 && p; field++) {
        p = strchr(p, ' ');
        if (p)
            p++;
    }
    if (!p)
        return -EIO;
    *out = strtoull(p, NULL, 10);
    return 0;
}

/* State lives under /run (tmpfs) and is rebuilt from the process table
 * after a reboot: ag_file_replace (atomic by rename, no fsync). */
int rt__state_write(const char *dir, const struct rt_state *st, struct ag_err *err)
{
    char path[4200];
    cJSON *o = cJSON_CreateObject();
    if (!o || !cJSON_AddStringToObject(o, "id", st->id) ||
        !cJSON_AddStringToObject(o, "bundle", st->bundle) ||
        !cJSON_AddStringToObject(o, "cgroup", st->cgroup) ||
        !cJSON_AddNumberToObject(o, "pid", st->pid) ||
        !cJSON_AddNumberToObject(o, "startTime", (double)st->start_time) ||
        !cJSON_AddNumberToObject(o, "created", (double)st->created_ns) ||
        !cJSON_AddBoolToObject(o, "started", st->started)) {
        cJSON_Delete(o);
        return ag_err_set(err, -ENOMEM, "state: out of memory");
    }
    char *txt = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    if (!txt)
        return ag_err_set(err, -ENOMEM, "state: out of memory");
    snprintf(path, sizeof(path), "%s/state.json", dir);
    int rc = ag_file_replace(path, txt, strlen(txt), 0600);
    free(txt);
    return rc < 0 ? ag_err_set(err, rc, "write %s: %s", path, strerror(-rc)) : 0;
}

static void copy_str(const cJSON *o, const char *key, char *out, size_t len)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
    snprintf(out, len, "%s", cJSON_IsString(v) ? v->valuestring : "");
}

int rt__state_read(const char *dir, struct rt_state *st, struct ag_err *err)
{
    char path[4200];
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    memset(st, 0, sizeof(*st));
    snprintf(path, sizeof(path), "%s/state.json", dir);
    int rc = ag_file_read(path, RT_STATE_MAX, &buf, &len);
    if (rc == -ENOENT) {
        struct stat sb;
        /* A directory without a record is a create in progress or one that died. */
        if (stat(dir, &sb) == 0)
            return ag_err_set(err, -EAGAIN, "container is being created or its create "
                                            "failed (no state record)");
        return ag_err_set(err, -ENOENT, "container does not exist");
    }
    if (rc < 0)
        return ag_err_set(err, rc, "read %s: %s", path, strerror(-rc));
    cJSON *o = cJSON_ParseWithLength(buf, len);
    if (!o)
        return ag_err_set(err, -EIO, "%s: corrupt", path);
    copy_str(o, "id", st->id, sizeof(st->id));
    copy_str(o, "bundle", st->bundle, sizeof(st->bundle));
    copy_str(o, "cgroup", st->cgroup, sizeof(st->cgroup));
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, "pid");
    st->pid = cJSON_IsNumber(v) ? (pid_t)v->valuedouble : 0;
    v = cJSON_GetObjectItemCaseSensitive(o, "startTime");
    st->start_time = cJSON_IsNumber(v) ? (unsigned long long)v->valuedouble : 0;
    v = cJSON_GetObjectItemCaseSensitive(o, "created");
    st->created_ns = cJSON_IsNumber(v) ? (int64_t)v->valuedouble : 0;
    st->started = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(o, "started"));
    cJSON_Delete(o);
    return 0;
}

const char *rt__state_status(const char *dir, const struct rt_state *st)
{
    unsigned long long t = 0;
    char fifo[4200];
    struct stat sb;
    if (st->pid <= 0 || rt__proc_start_time(st->pid, &t) < 0 || t != st->start_time)
        return RT_STATUS_STOPPED;
    snprintf(fifo, sizeof(fifo), "%s/exec.fifo", dir);
    return stat(fifo, &sb) == 0 ? RT_STATUS_CREATED : RT_STATUS_RUNNING;
}

char *rt__state_json(const struct rt_state *st, const char *status, const struct rt_kv *ann,
                     size_t ann_count)
{
    cJSON *o = cJSON_CreateObject(), *a;
    char *txt = NULL;
    if (!o || !cJSON_AddStringToObject(o, "ociVersion", "1.2.0") ||
        !cJSON_AddStringToObject(o, "id", st->id) ||
        !cJSON_AddStringToObject(o, "status", status) ||
        !cJSON_AddNumberToObject(o, "pid", strcmp(status, RT_STATUS_STOPPED) ? st->pid : 0) ||
        !cJSON_AddStringToObject(o, "bundle", st->bundle) ||
        !(a = cJSON_AddObjectToObject(o, "annotations")))
        goto out;
    for (size_t i = 0; i < ann_count; i++)
        if (!cJSON_AddStringToObject(a, ann[i].key, ann[i].value))
            goto out;
    txt = cJSON_PrintUnformatted(o);
out:
    cJSON_Delete(o);
    return txt;
}
