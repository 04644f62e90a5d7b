/* agent/stream: the generic proc over file descriptors: a process whose
 * stdio the daemon holds as pipes or a pty master, with its exit learned
 * from a pidfd, from uv_spawn (host processes, tests) or from the caller.
 * Used by the container exec backend (strm_exec.c) and the host backend.
 *
 * Exit is reported after stdout and stderr reach EOF (or EIO on a pty
 * master), or STRM_DRAIN_MS after the exit when something else keeps them
 * open.  Release closes our ends of the stdio (the process gets EOF on
 * stdin and EPIPE on output) but never kills the process: that is what
 * kubelet's and containerd's exec do when a client goes away; a process
 * that ignores its closed stdio runs on until it exits by itself.  The
 * child is still reaped: the pidfd watch (or the uv_process_t) stays open
 * until the exit, then the object frees itself.
 *
 * Invariant: no sink call after release; freed only when every handle is
 * closed and no start is pending in the thread pool. */
#include "strm_int.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <linux/wait.h>

enum { H_IN, H_OUT, H_ERR, H_COUNT };

struct fdproc {
    struct strm_proc base;
    uv_loop_t *loop;
    struct strm_proc_sink sink;
    bool tty, starting, released, reported, exit_seen, paused, stdin_close_wanted;
    bool stdin_dead, in_blocked;
    uv_pipe_t io[H_COUNT];
    bool io_open[H_COUNT], eof[H_COUNT];
    uv_poll_t pidpoll;
    int pidfd; /* owned while pidpoll is open */
    bool pidpoll_open;
    uv_process_t child;
    bool child_open;
    uv_timer_t drain;
    bool drain_open;
    int open_handles;
    int exit_code;
    char *error;
    size_t in_pending;
    struct ag_buf early_in; /* stdin before the process exists (starting) */
    uint16_t want_w, want_h;
};

struct inw {
    uv_write_t w;
    struct fdproc *p;
    size_t len;
    uint8_t data[];
};

static void maybe_free(struct fdproc *p)
{
    if (!p->released || p->open_handles > 0 || p->starting)
        return;
    free(p->error);
    ag_buf_fini(&p->early_in);
    free(p);
}

static void on_closed(uv_handle_t *h)
{
    struct fdproc *p = h->data;

    p->open_handles--;
    maybe_free(p);
}

static void close_handle(struct fdproc *p, uv_handle_t *h, bool *open)
{
    if (!*open)
        return;
    *open = false;
    h->data = p;
    uv_close(h, on_closed);
}

static void on_pidpoll_closed(uv_handle_t *h);

/* Closes the exit watch (pidfd poll or uv_process_t). */
static void close_exit_watch(struct fdproc *p)
{
    if (p->pidpoll_open) {
        p->pidpoll_open = false;
        p->pidpoll.data = p;
        uv_close((uv_handle_t *)&p->pidpoll, on_pidpoll_closed);
    }
    close_handle(p, (uv_handle_t *)&p->child, &p->child_open);
}

static void close_io(struct fdproc *p, int i)
{
    /* With a tty, the one master is H_OUT; H_IN is never opened. */
    close_handle(p, (uv_handle_t *)&p->io[i], &p->io_open[i]);
}

static void maybe_report(struct fdproc *p)
{
    if (p->reported || !p->exit_seen || p->released || p->starting)
        return;
    bool drained = (!p->io_open[H_OUT] || p->eof[H_OUT]) && (!p->io_open[H_ERR] || p->eof[H_ERR]);
    if (!drained && p->drain_open && uv_is_active((uv_handle_t *)&p->drain))
        return;
    if (!drained && !p->drain_open) {
        return; /* cannot happen: the drain timer is set at exit */
    }
    p->reported = true;
    p->sink.exited(p->sink.arg, p->exit_code, p->error);
}

static void on_drain(uv_timer_t *t)
{
    struct fdproc *p = t->data;

    p->eof[H_OUT] = p->eof[H_ERR] = true;
    maybe_report(p);
}

static void on_exit_known(struct fdproc *p)
{
    p->exit_seen = true;
    if (p->drain_open)
        uv_timer_start(&p->drain, on_drain, STRM_DRAIN_MS, 0);
    maybe_report(p);
    if (p->released)
        close_exit_watch(p);
}

void strm_fdproc_exited(struct strm_proc *sp, int exit_code, const char *error)
{
    struct fdproc *p = (struct fdproc *)sp;

    if (p->exit_seen)
        return;
    p->exit_code = exit_code;
    if (error)
        p->error = strdup(error);
    on_exit_known(p);
}

/* ---- output --------------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[65536];

    buf->base = slab;
    buf->len = sizeof(slab);
}

static void on_out_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct fdproc *p = s->data;
    int i = s == (uv_stream_t *)&p->io[H_ERR] ? H_ERR : H_OUT;

    if (n == 0)
        return;
    if (n < 0) {
        /* EOF; EIO on a pty master once the slave side is closed. */
        p->eof[i] = true;
        uv_read_stop(s);
        maybe_report(p);
        return;
    }
    if (!p->released && !p->reported)
        p->sink.output(p->sink.arg, i == H_ERR ? 2 : 1, (const uint8_t *)buf->base, (size_t)n);
}

static void set_reading(struct fdproc *p)
{
    for (int i = H_OUT; i <= H_ERR; i++) {
        if (!p->io_open[i] || p->eof[i])
            continue;
        if (p->paused)
            uv_read_stop((uv_stream_t *)&p->io[i]);
        else
            uv_read_start((uv_stream_t *)&p->io[i], on_alloc, on_out_read);
    }
}

static void fd_pause(struct strm_proc *sp, bool paused)
{
    struct fdproc *p = (struct fdproc *)sp;

    p->paused = paused;
    set_reading(p);
}

/* ---- stdin ------------------------------------------------------------------------------- */

static uv_stream_t *stdin_stream(struct fdproc *p)
{
    int i = p->tty ? H_OUT : H_IN;
    return p->io_open[i] ? (uv_stream_t *)&p->io[i] : NULL;
}

static void maybe_close_stdin(struct fdproc *p)
{
    /* A pty master is also the output: stdin EOF is the client's ^D. */
    if (p->stdin_close_wanted && p->in_pending == 0 && !p->tty)
        close_io(p, H_IN);
}

static void on_in_write(uv_write_t *w, int status)
{
    struct inw *r = ag_container_of(w, struct inw, w);
    struct fdproc *p = r->p;

    p->in_pending -= r->len;
    free(r);
    if (status < 0)
        p->stdin_dead = true; /* EPIPE: the process closed its stdin */
    if (p->in_blocked && (p->stdin_dead || p->in_pending < STRM_IN_HIGH / 4)) {
        p->in_blocked = false;
        if (!p->released)
            p->sink.stdin_drained(p->sink.arg);
    }
    maybe_close_stdin(p);
}

static int queue_stdin(struct fdproc *p, const uint8_t *data, size_t len)
{
    uv_stream_t *s = stdin_stream(p);

    if (s == NULL || p->stdin_dead)
        return -EPIPE;
    struct inw *r = malloc(sizeof(*r) + len);
    if (r == NULL)
        return -ENOMEM;
    r->p = p;
    r->len = len;
    memcpy(r->data, data, len);
    uv_buf_t b = uv_buf_init((char *)r->data, (unsigned)len);
    int rc = uv_write(&r->w, s, &b, 1, on_in_write);
    if (rc < 0) {
        free(r);
        p->stdin_dead = true;
        return rc;
    }
    p->in_pending += len;
    if (p->in_pending > STRM_IN_HIGH) {
        p->in_blocked = true;
        return 1;
    }
    return 0;
}

static int fd_write_stdin(struct strm_proc *sp, const uint8_t *data, size_t len)
{
    struct fdproc *p = (struct fdproc *)sp;

    if (p->starting) {
        if (ag_buf_append(&p->early_in, data, len) < 0)
            return -ENOMEM;
        if (p->early_in.len > STRM_IN_HIGH) {
            p->in_blocked = true;
            return 1;
        }
        return 0;
    }
    return queue_stdin(p, data, len);
}

static void fd_close_stdin(struct strm_proc *sp)
{
    struct fdproc *p = (struct fdproc *)sp;

    p->stdin_close_wanted = true;
    if (!p->starting)
        maybe_close_stdin(p);
}

static int fd_resize(struct strm_proc *sp, uint16_t w, uint16_t h)
{
    struct fdproc *p = (struct fdproc *)sp;
    struct winsize ws = {.ws_row = h, .ws_col = w};
    uv_os_fd_t fd;

    if (!p->tty)
        return -ENOTTY;
    if (p->starting) {
        p->want_w = w;
        p->want_h = h;
        return 0;
    }
    if (!p->io_open[H_OUT] || uv_fileno((uv_handle_t *)&p->io[H_OUT], &fd) < 0)
        return -EBADF;
    return ioctl(fd, TIOCSWINSZ, &ws) < 0 ? -errno : 0;
}

static void fd_release(struct strm_proc *sp)
{
    struct fdproc *p = (struct fdproc *)sp;

    p->released = true;
    for (int i = 0; i < H_COUNT; i++)
        close_io(p, i);
    close_handle(p, (uv_handle_t *)&p->drain, &p->drain_open);
    /* The exit watch stays until the process exits, so it is reaped. */
    if (p->exit_seen)
        close_exit_watch(p);
    maybe_free(p);
}

static const struct strm_proc_ops fd_ops = {fd_write_stdin, fd_close_stdin, fd_resize, fd_pause,
                                             fd_release};

/* ---- construction ------------------------------------------------------------------------ */

int strm__fdproc_new_pending(uv_loop_t *loop, const struct strm_proc_sink *sink, bool tty,
                             struct strm_proc **out)
{
    struct fdproc *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return -ENOMEM;
    p->base.ops = &fd_ops;
    p->loop = loop;
    p->sink = *sink;
    p->tty = tty;
    p->starting = true;
    p->pidfd = -1;
    ag_buf_init(&p->early_in);
    uv_timer_init(loop, &p->drain);
    p->drain.data = p;
    p->drain_open = true;
    p->open_handles = 1;
    *out = &p->base;
    return 0;
}

static int open_io(struct fdproc *p, int i, int *fd)
{
    if (*fd < 0)
        return 0;
    int rc = uv_pipe_init(p->loop, &p->io[i], 0);
    if (rc < 0)
        return rc;
    p->io[i].data = p;
    p->io_open[i] = true;
    p->open_handles++;
    rc = uv_pipe_open(&p->io[i], *fd);
    if (rc < 0)
        return rc;
    *fd = -1;
    return 0;
}

bool strm__fdproc_released(struct strm_proc *sp) { return ((struct fdproc *)sp)->released; }

int strm__fdproc_start(struct strm_proc *sp, int in_fd, int out_fd, int err_fd)
{
    struct fdproc *p = (struct fdproc *)sp;
    int rc = 0;

    p->starting = false;
    if (p->released) {
        rc = -ECANCELED;
        goto out;
    }
    if (p->tty)
        in_fd = -1; /* the master (out_fd) serves both directions */
    if ((rc = open_io(p, H_IN, &in_fd)) < 0 || (rc = open_io(p, H_OUT, &out_fd)) < 0 ||
        (rc = open_io(p, H_ERR, &err_fd)) < 0)
        goto out;
    set_reading(p);
    if (p->want_w || p->want_h)
        (void)fd_resize(sp, p->want_w, p->want_h);
    if (p->early_in.len > 0) {
        int r = queue_stdin(p, p->early_in.data, p->early_in.len);
        ag_buf_fini(&p->early_in);
        if (r != 1 && p->in_blocked) {
            p->in_blocked = false;
            p->sink.stdin_drained(p->sink.arg);
        }
    }
    maybe_close_stdin(p);
out:
    for (int *fd = (int[]){in_fd, out_fd, err_fd}, i = 0; i < 3; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    if (p->released)
        maybe_free(p);
    else
        maybe_report(p);
    return rc;
}

int strm_fdproc_new(uv_loop_t *loop, const struct strm_proc_sink *sink, bool tty, int stdin_fd,
                    int stdout_fd, int stderr_fd, struct strm_proc **out)
{
    int rc = strm__fdproc_new_pending(loop, sink, tty, out);

    if (rc < 0) {
        for (int *fd = (int[]){stdin_fd, stdout_fd, stderr_fd}, i = 0; i < 3; i++)
            if (fd[i] >= 0)
                close(fd[i]);
        return rc;
    }
    rc = strm__fdproc_start(*out, stdin_fd, stdout_fd, stderr_fd);
    if (rc < 0) {
        (*out)->ops->release(*out);
        *out = NULL;
    }
    return rc;
}

/* ---- exit through a pidfd ------------------------------------------------------------------ */

static void on_pidfd(uv_poll_t *h, int status, int events)
{
    struct fdproc *p = h->data;
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    if (waitid((idtype_t)P_PIDFD, (id_t)p->pidfd, &si, WEXITED | WNOHANG) < 0 || si.si_pid == 0)
        return;
    uv_poll_stop(h);
    p->exit_code = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
    on_exit_known(p);
}

/* The pidfd is closed only after its poll handle (libuv needs it valid
 * until then). */
static void on_pidpoll_closed(uv_handle_t *h)
{
    struct fdproc *p = h->data;

    close(p->pidfd);
    p->pidfd = -1;
    on_closed(h);
}

int strm_fdproc_watch_pidfd(struct strm_proc *sp, int pidfd)
{
    struct fdproc *p = (struct fdproc *)sp;
    int rc = uv_poll_init(p->loop, &p->pidpoll, pidfd);

    if (rc < 0) {
        close(pidfd);
        return rc;
    }
    p->pidfd = pidfd;
    p->pidpoll.data = p;
    p->pidpoll_open = true;
    p->open_handles++;
    return uv_poll_start(&p->pidpoll, UV_READABLE, on_pidfd);
}

/* ---- host processes (tests and the stream-test harness) ---------------------------------- */

static void on_child_exit(uv_process_t *h, int64_t status, int term_signal)
{
    struct fdproc *p = ag_container_of(h, struct fdproc, child);

    p->exit_code = term_signal ? 128 + term_signal : (int)status;
    on_exit_known(p);
}

static int make_pipe(int fds[2])
{
    return pipe2(fds, O_CLOEXEC) < 0 ? -errno : 0;
}

int strm_host_exec(uv_loop_t *loop, char *const *argv, const struct strm_params *params,
                   const struct strm_proc_sink *sink, struct strm_proc **out, struct ag_err *err)
{
    int in[2] = {-1, -1}, o[2] = {-1, -1}, e[2] = {-1, -1}, master = -1, slave = -1, rc;
    struct strm_proc *sp = NULL;

    if (params->tty) {
        char name[64];
        int unlock = 0;
        master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
        if (master < 0 || ioctl(master, TIOCSPTLCK, &unlock) < 0 ||
            ptsname_r(master, name, sizeof(name)) != 0 ||
            (slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC)) < 0) {
            rc = ag_err_set(err, -errno, "open pty: %s", strerror(errno));
            goto fail;
        }
    } else if ((rc = make_pipe(in)) < 0 || (rc = make_pipe(o)) < 0 || (rc = make_pipe(e)) < 0) {
        ag_err_set(err, rc, "pipe: %s", strerror(-rc));
        goto fail;
    }
    if ((rc = strm__fdproc_new_pending(loop, sink, params->tty, &sp)) < 0) {
        ag_err_set(err, rc, "out of memory");
        goto fail;
    }
    struct fdproc *p = (struct fdproc *)sp;
    uv_stdio_container_t stdio[3];
    for (int i = 0; i < 3; i++) {
        stdio[i].flags = UV_INHERIT_FD;
        stdio[i].data.fd = params->tty ? slave : i == 0 ? in[0] : i == 1 ? o[1] : e[1];
    }
    uv_process_options_t opts = {.exit_cb = on_child_exit, .file = argv[0],
                                 .args = (char **)argv, .stdio_count = 3, .stdio = stdio,
                                 .flags = params->tty ? UV_PROCESS_DETACHED : 0};
    p->child.data = p;
    rc = uv_spawn(loop, &p->child, &opts);
    if (rc < 0) {
        ag_err_set(err, rc, "spawn %.200s: %s", argv[0], uv_strerror(rc));
        /* uv_spawn initialised the handle: it must be closed. */
        p->child_open = true;
        p->open_handles++;
        p->starting = false;
        sp->ops->release(sp);
        sp = NULL;
        goto fail;
    }
    p->child_open = true;
    p->open_handles++;
    if (params->tty) {
        close(steal_fd(&slave));
        rc = strm__fdproc_start(sp, -1, steal_fd(&master), -1);
    } else {
        close(steal_fd(&in[0]));
        close(steal_fd(&o[1]));
        close(steal_fd(&e[1]));
        /* Streams the request did not ask for are closed: stdin reads EOF. */
        rc = strm__fdproc_start(sp, params->stdin ? steal_fd(&in[1]) : -1,
                                params->stdout ? steal_fd(&o[0]) : -1,
                                params->stderr ? steal_fd(&e[0]) : -1);
    }
    if (rc < 0) {
        ag_err_set(err, rc, "stdio: %s", uv_strerror(rc));
        sp->ops->release(sp);
        sp = NULL;
        goto fail;
    }
    *out = sp;
fail:
    for (int *fd = (int[]){in[0], in[1], o[0], o[1], e[0], e[1], master, slave}, i = 0; i < 8; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    return rc;
}
