/* agent/stream: the attach backend helper.  The container monitor
 * (agent/runtime, rt_monitor.h) holds the container's stdio and serves
 * attach streams on its unix socket; rt_monitor_attach() opens one (it
 * blocks: thread-pool worker), then this proc speaks the monitor's frames on
 * the loop: 'O'/'E' output, 'X' exit in, 'I' stdin, 'C' close stdin, 'W'
 * resize out.
 *
 * Invariant: input frames are bounded by RT_MON_PAYLOAD_MAX (the parser's
 * limit), stdin queued toward the monitor by STRM_IN_HIGH; no sink call
 * after release; freed when the work is done and the pipe is closed. */
#include "strm_int.h"

#include <stdio.h>
#include <string.h>

#include "runtime/rt_monitor.h"

#define ATTACH_TIMEOUT_MS 10000

struct attach {
    struct strm_proc base;
    uv_work_t w;
    uv_loop_t *loop;
    struct strm_proc_sink sink;
    char *socket_path;
    bool with_stdin, stdin_once, tty;
    bool working, released, reported, pipe_open, pipe_closing, paused, in_blocked, stdin_closed;
    int fd; /* from the worker */
    struct ag_err err;
    uv_pipe_t pipe;
    struct ag_buf in;  /* partial frame from the monitor */
    size_t out_pending; /* stdin bytes queued toward the monitor */
    uint16_t want_w, want_h;
};

struct awr {
    uv_write_t w;
    struct attach *a;
    size_t len;
    uint8_t data[];
};

static void maybe_free(struct attach *a)
{
    if (!a->released || a->working || a->pipe_open || a->pipe_closing)
        return;
    if (a->fd >= 0)
        close(a->fd);
    ag_buf_fini(&a->in);
    free(a->socket_path);
    free(a);
}

static void report(struct attach *a, int code, const char *error)
{
    if (a->reported || a->released)
        return;
    a->reported = true;
    a->sink.exited(a->sink.arg, code, error);
}

static void on_pipe_closed(uv_handle_t *h)
{
    struct attach *a = h->data;

    a->pipe_closing = false;
    maybe_free(a);
}

static void close_pipe(struct attach *a)
{
    if (a->pipe_open) {
        a->pipe_open = false;
        a->pipe_closing = true; /* freed only from the close callback */
        uv_close((uv_handle_t *)&a->pipe, on_pipe_closed);
    }
}

static void on_awrite(uv_write_t *w, int status)
{
    struct awr *r = ag_container_of(w, struct awr, w);
    struct attach *a = r->a;

    a->out_pending -= r->len;
    free(r);
    if (a->in_blocked && a->out_pending < STRM_IN_HIGH / 4) {
        a->in_blocked = false;
        if (!a->released)
            a->sink.stdin_drained(a->sink.arg);
    }
}

static int send_frame(struct attach *a, uint8_t type, const void *payload, size_t len)
{
    if (!a->pipe_open)
        return -EPIPE;
    struct awr *r = malloc(sizeof(*r) + RT_MON_HDR_LEN + len);
    if (r == NULL)
        return -ENOMEM;
    r->a = a;
    r->len = RT_MON_HDR_LEN + len;
    rt_mon_frame_header(r->data, type, len);
    if (len)
        memcpy(r->data + RT_MON_HDR_LEN, payload, len);
    uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)r->len);
    int rc = uv_write(&r->w, (uv_stream_t *)&a->pipe, &b, 1, on_awrite);
    if (rc < 0) {
        free(r);
        return rc;
    }
    a->out_pending += r->len;
    return 0;
}

static int at_write_stdin(struct strm_proc *p, const uint8_t *data, size_t len)
{
    struct attach *a = (struct attach *)p;
    int rc = 0;

    if (!a->with_stdin || a->stdin_closed)
        return -EPIPE;
    if (a->working)
        return -EAGAIN; /* not attached yet: the client has not seen output either */
    for (size_t off = 0; off < len && rc == 0; off += RT_MON_PAYLOAD_MAX) {
        size_t n = len - off < RT_MON_PAYLOAD_MAX ? len - off : RT_MON_PAYLOAD_MAX;
        rc = send_frame(a, RT_MON_STDIN, data + off, n);
    }
    if (rc < 0)
        return rc;
    if (a->out_pending > STRM_IN_HIGH) {
        a->in_blocked = true;
        return 1;
    }
    return 0;
}

static void at_close_stdin(struct strm_proc *p)
{
    struct attach *a = (struct attach *)p;

    if (a->stdin_closed)
        return;
    a->stdin_closed = true;
    if (a->stdin_once && !a->working)
        (void)send_frame(a, RT_MON_CLOSE_STDIN, NULL, 0);
}

static int at_resize(struct strm_proc *p, uint16_t w, uint16_t h)
{
    struct attach *a = (struct attach *)p;
    char buf[32];

    if (!a->tty)
        return -ENOTTY;
    if (a->working) {
        a->want_w = w;
        a->want_h = h;
        return 0;
    }
    int n = snprintf(buf, sizeof(buf), "%u %u", (unsigned)h, (unsigned)w);
    return send_frame(a, RT_MON_RESIZE, buf, (size_t)n);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[RT_MON_HDR_LEN + RT_MON_PAYLOAD_MAX];

    buf->base = slab;
    buf->len = sizeof(slab);
}

static int handle_frames(struct attach *a)
{
    struct rt_mon_frame f;
    int n;

    while ((n = rt_mon_frame_parse(a->in.data, a->in.len, &f)) > 0) {
        if (f.type == RT_MON_STDOUT || f.type == RT_MON_STDERR) {
            if (!a->released && !a->reported)
                a->sink.output(a->sink.arg, f.type == RT_MON_STDERR ? 2 : 1, f.payload, f.len);
        } else if (f.type == RT_MON_EXITED) {
            report(a, 0, NULL);
        }
        ag_buf_consume(&a->in, (size_t)n);
    }
    return n;
}

static void on_aread(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct attach *a = s->data;

    if (n == 0)
        return;
    if (n < 0) {
        uv_read_stop(s);
        report(a, -1, "attach: the container monitor closed the connection");
        return;
    }
    if (ag_buf_append(&a->in, buf->base, (size_t)n) < 0 || handle_frames(a) < 0) {
        uv_read_stop(s);
        report(a, -1, "attach: bad frame from the container monitor");
    }
}

static void at_pause(struct strm_proc *p, bool paused)
{
    struct attach *a = (struct attach *)p;

    a->paused = paused;
    if (!a->pipe_open)
        return;
    if (paused)
        uv_read_stop((uv_stream_t *)&a->pipe);
    else
        uv_read_start((uv_stream_t *)&a->pipe, on_alloc, on_aread);
}

static void at_release(struct strm_proc *p)
{
    struct attach *a = (struct attach *)p;

    a->released = true;
    if (a->pipe_open && a->stdin_once && a->with_stdin && !a->stdin_closed) {
        /* StdinOnce: the container's stdin closes with the first attach. */
        uint8_t hdr[RT_MON_HDR_LEN];
        rt_mon_frame_header(hdr, RT_MON_CLOSE_STDIN, 0);
        uv_buf_t b = uv_buf_init((char *)hdr, sizeof(hdr));
        (void)uv_try_write((uv_stream_t *)&a->pipe, &b, 1);
    }
    close_pipe(a);
    maybe_free(a);
}

static const struct strm_proc_ops attach_ops = {at_write_stdin, at_close_stdin, at_resize,
                                                at_pause, at_release};

static void attach_work(uv_work_t *w)
{
    struct attach *a = ag_container_of(w, struct attach, w);

    a->fd = rt_monitor_attach(a->socket_path, a->with_stdin, ATTACH_TIMEOUT_MS, &a->err);
}

static void after_attach_work(uv_work_t *w, int status)
{
    struct attach *a = ag_container_of(w, struct attach, w);

    a->working = false;
    if (a->released) {
        maybe_free(a);
        return;
    }
    if (status < 0 || a->fd < 0) {
        report(a, -1, a->err.code ? a->err.msg : "attach: cancelled");
        return;
    }
    if (uv_pipe_init(a->loop, &a->pipe, 0) < 0)
        return report(a, -1, "attach: pipe init failed");
    a->pipe.data = a;
    a->pipe_open = true;
    if (uv_pipe_open(&a->pipe, a->fd) < 0)
        return report(a, -1, "attach: pipe open failed");
    a->fd = -1;
    at_pause(&a->base, a->paused);
    if (a->want_w || a->want_h)
        (void)at_resize(&a->base, a->want_w, a->want_h);
    if (a->stdin_closed && a->stdin_once)
        (void)send_frame(a, RT_MON_CLOSE_STDIN, NULL, 0);
}

int strm_monitor_attach(uv_loop_t *loop, const char *socket_path,
                        const struct strm_params *params, bool stdin_once,
                        const struct strm_proc_sink *sink, struct strm_proc **out,
                        struct ag_err *err)
{
    struct attach *a = calloc(1, sizeof(*a));

    if (a == NULL || (a->socket_path = strdup(socket_path)) == NULL) {
        free(a);
        return ag_err_set(err, -ENOMEM, "attach: out of memory");
    }
    a->base.ops = &attach_ops;
    a->loop = loop;
    a->sink = *sink;
    a->with_stdin = params->stdin;
    a->stdin_once = stdin_once;
    a->tty = params->tty;
    a->fd = -1;
    a->working = true;
    ag_buf_init(&a->in);
    ag_err_init(&a->err);
    int rc = uv_queue_work(loop, &a->w, attach_work, after_attach_work);
    if (rc < 0) {
        free(a->socket_path);
        free(a);
        return ag_err_set(err, rc, "attach: queue work: %s", uv_strerror(rc));
    }
    *out = &a->base;
    return 0;
}
