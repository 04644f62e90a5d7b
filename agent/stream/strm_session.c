/* agent/stream: remote-command sessions (exec and attach) over an upgraded
 * connection.  Over SPDY the session waits (stream-creation timeout) for
 * the client to open the streams the request calls for: error, then stdin,
 * stdout, stderr per the CRI request (no stderr with a tty) and resize (tty,
 * protocol v3+); over WebSocket the channels exist at once.  Then it starts
 * the backend's proc, pumps output to stdout/stderr and client stdin to the
 * proc, applies resize JSON, and at exit writes the status (v4/v5: a
 * metav1.Status JSON; v1-v3: plain text, empty on success) on the error
 * stream, half-closes the streams and lets the connection close.
 *
 * Invariants: the proc is created at most once and released exactly once
 * (strm__rc_free); nothing is sent after the status; stdin is never
 * buffered here: a full proc stdin stops socket reads instead. */
#include "strm_int.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

#define RESIZE_MAX 4096

struct strm_rc {
    struct strm_conn *c;
    uint32_t ids[STRM_CH_COUNT];
    bool have[STRM_CH_COUNT], need[STRM_CH_COUNT];
    bool started, done, stdin_blocked;
    struct strm_proc *proc;
    struct strm_proc_sink sink;
    struct ag_buf resize;
    struct ag_buf early_stdin; /* stdin before the proc exists (bounded) */
    bool early_fin;
};

static const char *const chan_names[STRM_CH_COUNT] = {"stdin", "stdout", "stderr", "error",
                                                      "resize"};

int strm__rc_status(int version, int exit_code, const char *error, char *out, size_t out_len)
{
    char msg[600], code[16];
    int n;

    if (exit_code == 0 && error == NULL) {
        if (version < 4)
            return 0;
        n = snprintf(out, out_len, "{\"metadata\":{},\"status\":\"Success\"}");
        return n < 0 || (size_t)n >= out_len ? -ENOSPC : n;
    }
    if (error == NULL)
        snprintf(msg, sizeof(msg),
                 "command terminated with non-zero exit code: exit status %d", exit_code);
    else
        snprintf(msg, sizeof(msg), "%s", error);
    if (version < 4) {
        n = snprintf(out, out_len, "%s", msg);
        return n < 0 || (size_t)n >= out_len ? -ENOSPC : n;
    }
    cJSON *j = cJSON_CreateObject();
    if (j == NULL)
        return -ENOMEM;
    cJSON_AddItemToObject(j, "metadata", cJSON_CreateObject());
    cJSON_AddStringToObject(j, "status", "Failure");
    cJSON_AddStringToObject(j, "message", msg);
    if (error == NULL) {
        cJSON *details = cJSON_CreateObject(), *causes = cJSON_CreateArray();
        cJSON *cause = cJSON_CreateObject();
        snprintf(code, sizeof(code), "%d", exit_code);
        cJSON_AddStringToObject(j, "reason", "NonZeroExitCode");
        cJSON_AddStringToObject(cause, "reason", "ExitCode");
        cJSON_AddStringToObject(cause, "message", code);
        cJSON_AddItemToArray(causes, cause);
        cJSON_AddItemToObject(details, "causes", causes);
        cJSON_AddItemToObject(j, "details", details);
    }
    bool ok = cJSON_PrintPreallocated(j, out, (int)out_len, false);
    cJSON_Delete(j);
    return ok ? (int)strlen(out) : -ENOSPC;
}

/* Length of the JSON object at the start of p (after whitespace), 0 when
 * incomplete, -EINVAL when p does not start an object. */
static long object_end(const char *p, size_t len)
{
    size_t i = 0;
    int depth = 0;
    bool in_str = false, esc = false;

    while (i < len && (p[i] == ' ' || p[i] == '\n' || p[i] == '\r' || p[i] == '\t'))
        i++;
    if (i == len)
        return 0;
    if (p[i] != '{')
        return -EINVAL;
    for (; i < len; i++) {
        char ch = p[i];
        if (in_str) {
            if (esc)
                esc = false;
            else if (ch == '\\')
                esc = true;
            else if (ch == '"')
                in_str = false;
        } else if (ch == '"') {
            in_str = true;
        } else if (ch == '{' || ch == '[') {
            depth++;
        } else if ((ch == '}' || ch == ']') && --depth == 0) {
            return (long)i + 1;
        }
    }
    return 0;
}

static int size_field(const cJSON *j, const char *name, uint16_t *out)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(j, name);

    if (v == NULL) {
        *out = 0;
        return 0;
    }
    if (!cJSON_IsNumber(v) || v->valuedouble < 0 || v->valuedouble > 65535)
        return -EINVAL;
    *out = (uint16_t)v->valuedouble;
    return 0;
}

int strm__resize_parse(struct ag_buf *buf, uint16_t *w, uint16_t *h)
{
    int count = 0;

    for (;;) {
        long end = object_end((const char *)buf->data, buf->len);
        if (end < 0)
            return -EINVAL;
        if (end == 0)
            return buf->len > RESIZE_MAX ? -EINVAL : count;
        cJSON *j = cJSON_ParseWithLength((const char *)buf->data, (size_t)end);
        int rc = j && cJSON_IsObject(j) ? 0 : -EINVAL;
        if (rc == 0)
            rc = size_field(j, "Width", w);
        if (rc == 0)
            rc = size_field(j, "Height", h);
        cJSON_Delete(j);
        if (rc < 0)
            return rc;
        ag_buf_consume(buf, (size_t)end);
        count++;
    }
}

/* ---- the proc's reports ------------------------------------------------------------- */

static void on_output(void *arg, int fd, const uint8_t *data, size_t len)
{
    struct strm_rc *rc = arg;
    int ch = fd == 2 ? STRM_CH_STDERR : STRM_CH_STDOUT;

    if (rc->done || !rc->have[ch])
        return;
    (void)strm__send(rc->c, rc->ids[ch], data, len, false);
}

static void on_stdin_drained(void *arg)
{
    struct strm_rc *rc = arg;

    if (rc->stdin_blocked) {
        rc->stdin_blocked = false;
        strm__block_input(rc->c, false);
    }
}

static void finish(struct strm_rc *rc, int exit_code, const char *error)
{
    char status[1024];
    struct strm_conn *c = rc->c;

    if (rc->done)
        return;
    rc->done = true;
    int n = strm__rc_status(c->version, exit_code, error, status, sizeof(status));
    if (n < 0)
        n = 0;
    if (rc->have[STRM_CH_ERROR])
        (void)strm__send(c, rc->ids[STRM_CH_ERROR], status, (size_t)n, true);
    if (c->state == STRM_C_SPDY) {
        for (int ch = STRM_CH_STDOUT; ch <= STRM_CH_STDERR; ch++)
            if (rc->have[ch])
                (void)strm__send(c, rc->ids[ch], NULL, 0, true);
    }
    if (rc->stdin_blocked) {
        rc->stdin_blocked = false;
        strm__block_input(c, false);
    }
    strm__finish(c);
}

static void on_exited(void *arg, int exit_code, const char *error)
{
    struct strm_rc *rc = arg;

    ag_log(AG_DEBUG, "stream session ended exit_code=%d%s%s", exit_code, error ? " error=" : "",
           error ? error : "");
    finish(rc, exit_code, error);
}

/* ---- starting ------------------------------------------------------------------------- */

static void maybe_start(struct strm_rc *rc)
{
    struct strm_conn *c = rc->c;
    const struct strm_backend_ops *ops = c->srv->ops;
    struct ag_err err;
    int r;

    if (rc->started)
        return;
    for (int ch = 0; ch < STRM_CH_COUNT; ch++)
        if (rc->need[ch] && !rc->have[ch])
            return;
    rc->started = true;
    strm__started(c);
    ag_err_init(&err);
    if (c->kind == STRM_EXEC)
        r = ops->exec ? ops->exec(c->srv->ctx, c->srv->loop, c->request, &c->params, &rc->sink,
                                  &rc->proc, &err)
                      : ag_err_set(&err, -ENOTSUP, "exec is not supported by this runtime");
    else
        r = ops->attach ? ops->attach(c->srv->ctx, c->srv->loop, c->request, &c->params,
                                      &rc->sink, &rc->proc, &err)
                        : ag_err_set(&err, -ENOTSUP, "attach is not supported by this runtime");
    if (r < 0) {
        rc->proc = NULL;
        ag_log(AG_INFO, "stream %s failed: %s", c->kind == STRM_EXEC ? "exec" : "attach",
               err.msg);
        finish(rc, -1, err.msg);
        return;
    }
    /* Stdin the client sent while it was still opening streams. */
    if (rc->early_stdin.len > 0 || rc->early_fin) {
        struct ag_buf early = rc->early_stdin;
        ag_buf_init(&rc->early_stdin);
        if (rc->stdin_blocked) {
            rc->stdin_blocked = false;
            strm__block_input(c, false);
        }
        (void)strm__rc_data(rc, rc->ids[STRM_CH_STDIN], early.data, early.len, rc->early_fin);
        ag_buf_fini(&early);
    }
}

int strm__rc_new(struct strm_conn *c, struct strm_rc **out)
{
    struct strm_rc *rc = calloc(1, sizeof(*rc));

    if (rc == NULL)
        return -ENOMEM;
    rc->c = c;
    ag_buf_init(&rc->resize);
    ag_buf_init(&rc->early_stdin);
    rc->sink = (struct strm_proc_sink){on_output, on_stdin_drained, on_exited, rc};
    rc->need[STRM_CH_ERROR] = true;
    rc->need[STRM_CH_STDIN] = c->params.stdin;
    rc->need[STRM_CH_STDOUT] = c->params.stdout;
    rc->need[STRM_CH_STDERR] = c->params.stderr && !c->params.tty;
    rc->need[STRM_CH_RESIZE] = c->params.tty && c->version >= 3;
    *out = rc;
    if (c->state == STRM_C_WS) {
        /* WebSocket channels exist from the start; client input on a
         * channel the request did not ask for is ignored. */
        for (int ch = 0; ch < STRM_CH_COUNT; ch++) {
            rc->ids[ch] = (uint32_t)ch;
            rc->have[ch] = rc->need[ch] || ch == STRM_CH_RESIZE;
        }
        maybe_start(rc);
    }
    return 0;
}

void strm__rc_free(struct strm_rc *rc)
{
    if (rc == NULL)
        return;
    if (rc->proc)
        rc->proc->ops->release(rc->proc);
    ag_buf_fini(&rc->resize);
    ag_buf_fini(&rc->early_stdin);
    free(rc);
}

bool strm__rc_started(const struct strm_rc *rc) { return rc->started; }

void strm__rc_timeout(struct strm_rc *rc)
{
    ag_log(AG_INFO, "stream session: timed out waiting for client to create streams");
    finish(rc, -1, "timed out waiting for client to create streams");
}

void strm__rc_pause(struct strm_rc *rc, bool paused)
{
    if (rc->proc)
        rc->proc->ops->pause_output(rc->proc, paused);
}

int strm__rc_stream(struct strm_rc *rc, uint32_t id, const char *type)
{
    int ch = -1;

    for (int i = 0; i < STRM_CH_COUNT; i++)
        if (strcmp(type, chan_names[i]) == 0)
            ch = i;
    /* An unexpected, duplicate or late stream is refused; the session goes on. */
    if (ch < 0 || rc->have[ch] || (!rc->need[ch] && ch != STRM_CH_RESIZE) || rc->done)
        return strm__reset(rc->c, id);
    for (int i = 0; i < STRM_CH_COUNT; i++)
        if (rc->have[i] && rc->ids[i] == id)
            return -EPROTO; /* a stream id used twice */
    rc->have[ch] = true;
    rc->ids[ch] = id;
    int r = strm__reply(rc->c, id);
    if (r < 0)
        return r;
    maybe_start(rc);
    return 0;
}

static void on_resize_data(struct strm_rc *rc, const uint8_t *data, size_t len)
{
    uint16_t w = 0, h = 0;

    if (ag_buf_append(&rc->resize, data, len) < 0)
        return;
    int n = strm__resize_parse(&rc->resize, &w, &h);
    if (n < 0) {
        /* kubelet stops handling resizes after bad JSON; so do we. */
        ag_buf_fini(&rc->resize);
        rc->have[STRM_CH_RESIZE] = false;
        return;
    }
    if (n > 0 && rc->proc && rc->proc->ops->resize)
        (void)rc->proc->ops->resize(rc->proc, w, h);
}

int strm__rc_data(struct strm_rc *rc, uint32_t id, const uint8_t *data, size_t len, bool fin)
{
    int ch = -1;

    for (int i = 0; i < STRM_CH_COUNT; i++)
        if (rc->have[i] && rc->ids[i] == id)
            ch = i;
    if (ch < 0 || rc->done)
        return 0; /* a refused stream, or after the end */
    if (ch == STRM_CH_STDIN && !rc->started) {
        if (ag_buf_append(&rc->early_stdin, data, len) < 0)
            return -ENOMEM;
        rc->early_fin |= fin;
        if (rc->early_stdin.len > STRM_IN_HIGH && !rc->stdin_blocked) {
            rc->stdin_blocked = true;
            strm__block_input(rc->c, true);
        }
    } else if (ch == STRM_CH_STDIN && rc->proc) {
        if (len > 0) {
            int r = rc->proc->ops->write_stdin(rc->proc, data, len);
            if (r == 1 && !rc->stdin_blocked) {
                rc->stdin_blocked = true;
                strm__block_input(rc->c, true);
            }
        }
        if (fin)
            rc->proc->ops->close_stdin(rc->proc);
    } else if (ch == STRM_CH_RESIZE && len > 0) {
        on_resize_data(rc, data, len);
    }
    return 0;
}
