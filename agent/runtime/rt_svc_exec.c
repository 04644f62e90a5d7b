/* agent/runtime: ExecSync of the runtime service.
 *
 * A worker builds the process from the container's saved config.json (env,
 * cwd, user, capabilities, seccomp: the executor applies them) with the
 * requested argv, and starts it with rt_container_exec, which forks it into
 * the container's namespaces and cgroup as the daemon's child.  Everything
 * after that happens on the loop: the stdout/stderr pipes are read through
 * uv_pipe handles into buffers capped at RT_SVC_EXEC_MAX (the excess is
 * dropped), the exit comes from a pidfd (waitid P_PIDFD reaps it), and a
 * timer kills the process when the timeout expires.  The call completes
 * once the process exited and both pipes are at EOF, or STRM-style at most
 * EXEC_DRAIN_MS after the exit (a background child may keep them open).
 *
 * Invariant: nothing blocks the loop or another RPC; the structure is freed
 * only after every handle's close callback ran.
 */
#include "rt_svc_int.h"

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "rt_internal.h"
#include "runtime.h"

#define EXEC_DRAIN_MS 2000
#define EXEC_READ_BUF 65536

#ifndef P_PIDFD
#define P_PIDFD 3
#endif

struct rt_svc_exec {
    struct rt_svc *svc;
    char id[ST_ID_HEX_LEN + 1];
    char bundle[SVC_PATH];
    char **argv; /* owned */
    int64_t timeout_s;
    rt_svc_exec_cb cb;
    void *arg;
    struct ag_err err;
    /* worker results */
    int pipes[2][2]; /* [stream][read, write] */
    int null_fd;
    pid_t pid;
    int rc;
    /* loop side */
    int pidfd;
    uv_pipe_t outp[2];
    uv_poll_t pidpoll;
    uv_timer_t timer;
    int handles; /* initialised handles, closed at the end */
    bool eof[2];
    bool exited, timed_out, cancelled, completed, started;
    int exit_code;
    struct ag_buf buf[2];
    char rbuf[EXEC_READ_BUF];
};

static void exec_free(struct rt_svc_exec *x)
{
    for (int s = 0; s < 2; s++)
        for (int e = 0; e < 2; e++)
            if (x->pipes[s][e] >= 0)
                close(x->pipes[s][e]);
    if (x->null_fd >= 0)
        close(x->null_fd);
    if (x->pidfd >= 0)
        close(x->pidfd);
    svc__strv_free(x->argv);
    ag_buf_fini(&x->buf[0]);
    ag_buf_fini(&x->buf[1]);
    x->svc->busy--;
    free(x);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct rt_svc_exec *x = h->data;

    if (--x->handles == 0)
        exec_free(x);
}

static void exec_complete(struct rt_svc_exec *x)
{
    if (x->completed)
        return;
    x->completed = true;
    if (x->cancelled)
        ag_err_set(&x->err, -ECANCELED, "exec cancelled");
    else if (x->timed_out)
        ag_err_set(&x->err, -ETIMEDOUT, "command timed out after %llds", (long long)x->timeout_s);
    x->cb(x->arg, &x->err, x->exit_code, x->buf[0].data, x->buf[0].len, x->buf[1].data,
          x->buf[1].len);
    /* Close every handle; the last close frees x. */
    if (x->handles == 0) {
        exec_free(x);
        return;
    }
    uv_handle_t *hs[4] = {(uv_handle_t *)&x->outp[0], (uv_handle_t *)&x->outp[1],
                          (uv_handle_t *)&x->pidpoll, (uv_handle_t *)&x->timer};
    for (int i = 0; i < 4; i++)
        if (hs[i]->data == x && !uv_is_closing(hs[i]))
            uv_close(hs[i], on_handle_closed);
}

static void maybe_done(struct rt_svc_exec *x)
{
    if (x->exited && x->eof[0] && x->eof[1])
        exec_complete(x);
}

/* ---- loop callbacks --------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct rt_svc_exec *x = h->data;

    (void)suggested;
    buf->base = x->rbuf;
    buf->len = sizeof(x->rbuf);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct rt_svc_exec *x = s->data;
    int i = (uv_pipe_t *)s == &x->outp[0] ? 0 : 1;

    if (n > 0) {
        size_t room = RT_SVC_EXEC_MAX - x->buf[i].len;
        size_t take = (size_t)n < room ? (size_t)n : room;
        /* Past the cap, or out of memory: drop silently (CRI contract). */
        if (take > 0)
            svc_ignore(ag_buf_append(&x->buf[i], buf->base, take));
        return;
    }
    if (n < 0) {
        uv_read_stop(s);
        x->eof[i] = true;
        maybe_done(x);
    }
}

static void on_drain_timer(uv_timer_t *t)
{
    struct rt_svc_exec *x = t->data;

    x->eof[0] = x->eof[1] = true;
    exec_complete(x);
}

static void on_exit_ready(uv_poll_t *p, int status, int events)
{
    struct rt_svc_exec *x = p->data;
    siginfo_t si;

    memset(&si, 0, sizeof(si));
    if (syscall(SYS_waitid, P_PIDFD, x->pidfd, &si, WEXITED | WNOHANG, NULL) < 0 || si.si_pid == 0)
        return; /* spurious */
    uv_poll_stop(p);
    x->exited = true;
    x->exit_code = si.si_code == CLD_EXITED ? si.si_status : 128 + si.si_status;
    uv_timer_stop(&x->timer);
    if (!(x->eof[0] && x->eof[1]))
        uv_timer_start(&x->timer, on_drain_timer, EXEC_DRAIN_MS, 0);
    maybe_done(x);
}

static void kill_it(struct rt_svc_exec *x)
{
    if (x->pidfd >= 0 && !x->exited)
        svc_ignore((int)syscall(SYS_pidfd_send_signal, x->pidfd, SIGKILL, NULL, 0));
}

static void on_timeout(uv_timer_t *t)
{
    struct rt_svc_exec *x = t->data;

    x->timed_out = true;
    ag_log(AG_INFO, "exec timed out ctr=%.12s pid=%d: killing", x->id, (int)x->pid);
    kill_it(x);
}

static int loop_start(struct rt_svc_exec *x)
{
    uv_loop_t *loop = x->svc->loop;

    x->pidfd = (int)syscall(SYS_pidfd_open, x->pid, 0);
    if (x->pidfd < 0)
        return -errno;
    if (uv_timer_init(loop, &x->timer) < 0)
        return -EIO;
    x->timer.data = x;
    x->handles++;
    if (uv_poll_init(loop, &x->pidpoll, x->pidfd) < 0)
        return -EIO;
    x->pidpoll.data = x;
    x->handles++;
    for (int i = 0; i < 2; i++) {
        if (uv_pipe_init(loop, &x->outp[i], 0) < 0)
            return -EIO;
        x->outp[i].data = x;
        x->handles++;
        if (uv_pipe_open(&x->outp[i], x->pipes[i][0]) < 0)
            return -EIO;
        x->pipes[i][0] = -1; /* owned by the handle now */
        if (uv_read_start((uv_stream_t *)&x->outp[i], on_alloc, on_read) < 0)
            return -EIO;
    }
    if (uv_poll_start(&x->pidpoll, UV_READABLE, on_exit_ready) < 0)
        return -EIO;
    if (x->timeout_s > 0)
        uv_timer_start(&x->timer, on_timeout, (uint64_t)x->timeout_s * 1000, 0);
    return 0;
}

/* ---- worker --------------------------------------------------------------------------------- */

static void exec_work(void *ctx)
{
    struct rt_svc_exec *x = ctx;
    struct rt_spec *spec = NULL;
    struct rt_process *proc;
    size_t n = 0;

    if ((x->rc = rt_spec_load(x->bundle, &spec, &x->err)) < 0) {
        ag_err_wrap(&x->err, "exec: container config");
        return;
    }
    proc = steal_ptr(&spec->process);
    rt_spec_free(spec);
    if (proc == NULL) {
        x->rc = ag_err_set(&x->err, -EINVAL, "exec: container config has no process");
        return;
    }
    while (x->argv[n] != NULL)
        n++;
    rt__strv_free(proc->args);
    proc->args = steal_ptr(&x->argv);
    proc->args_count = n;
    proc->terminal = false;
    struct rt_stdio io = {
        .in = x->null_fd, .out = x->pipes[0][1], .err = x->pipes[1][1], .console_socket = -1};
    x->rc = rt_container_exec(x->svc->state_root, x->id, proc, &io, &x->pid, &x->err);
    x->argv = steal_ptr(&proc->args);
    proc->args_count = 0;
    rt_process_free(proc);
    /* The child has its copies; ours must go so EOF can come. */
    for (int i = 0; i < 2; i++) {
        close(x->pipes[i][1]);
        x->pipes[i][1] = -1;
    }
}

static void exec_after(void *ctx, int status)
{
    struct rt_svc_exec *x = ctx;
    int rc;

    if (status < 0 && x->rc == 0)
        x->rc = ag_err_set(&x->err, status, "exec cancelled");
    if (x->rc < 0) {
        exec_complete(x);
        return;
    }
    x->started = true;
    if ((rc = loop_start(x)) < 0) {
        ag_err_set(&x->err, rc, "exec: watch the process: %s", strerror(-rc));
        kill_it(x);
        exec_complete(x);
        return;
    }
    if (x->cancelled)
        kill_it(x);
}

int rt_svc_exec_sync(struct rt_svc *svc, const char *id, char *const *argv, size_t argc,
                     int64_t timeout_s, rt_svc_exec_cb cb, void *arg, struct rt_svc_exec **handle,
                     struct ag_err *err)
{
    const picocri_store_ContainerRecord *r;
    struct rt_svc_exec *x;
    int rc;

    if (argc == 0 || argv == NULL || argv[0] == NULL || argv[0][0] == '\0')
        return ag_err_set(err, -EINVAL, "cmd is required");
    if ((r = svc__ctr(svc, id, err)) == NULL)
        return err->code;
    if (r->state != picocri_store_ContainerState_CONTAINER_STATE_RUNNING)
        return ag_err_set(err, -EBUSY, "container %.12s is not running", r->id);
    if ((x = calloc(1, sizeof(*x))) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    x->svc = svc;
    x->cb = cb;
    x->arg = arg;
    x->timeout_s = timeout_s;
    x->pidfd = x->null_fd = -1;
    for (int i = 0; i < 2; i++)
        x->pipes[i][0] = x->pipes[i][1] = -1;
    ag_err_init(&x->err);
    ag_buf_init(&x->buf[0]);
    ag_buf_init(&x->buf[1]);
    svc->busy++;
    snprintf(x->id, sizeof(x->id), "%s", r->id);
    snprintf(x->bundle, sizeof(x->bundle), "%s", r->bundle_path ? r->bundle_path : "");
    rc = -ENOMEM;
    if ((x->argv = calloc(argc + 1, sizeof(char *))) == NULL)
        goto fail;
    for (size_t i = 0; i < argc; i++)
        if ((x->argv[i] = strdup(argv[i] ? argv[i] : "")) == NULL)
            goto fail;
    if ((x->null_fd = open("/dev/null", O_RDONLY | O_CLOEXEC)) < 0 ||
        pipe2(x->pipes[0], O_CLOEXEC) < 0 || pipe2(x->pipes[1], O_CLOEXEC) < 0) {
        rc = -errno;
        goto fail;
    }
    if ((rc = svc__work(svc, x, exec_work, exec_after)) < 0)
        goto fail;
    if (handle != NULL)
        *handle = x;
    return 0;
fail:
    exec_free(x);
    return ag_err_set(err, rc, "exec in %.12s: %s", id, strerror(-rc));
}

void rt_svc_exec_cancel(struct rt_svc_exec *x)
{
    if (x == NULL || x->completed)
        return;
    x->cancelled = true;
    if (x->started)
        kill_it(x);
}
