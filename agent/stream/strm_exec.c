/* agent/stream: the real exec backend helper.  rt_container_exec joins a
 * running container's namespaces and cgroup and forks; it blocks, so it
 * runs in a thread-pool worker.  Its process is a child of the daemon (the
 * executor uses CLONE_PARENT), which libuv does not reap: the loop thread
 * opens a pidfd for it and the fd proc reaps it with waitid(P_PIDFD).
 * stdio: pipes made here (non-tty), or a pty whose master the executor
 * sends back over a console socket (tty).
 *
 * Invariant: the worker touches only its own request; the fd proc stays
 * allocated ("starting") until the work is done, even if the client went
 * away, and a started process is always watched so it is reaped. */
#include "strm_int.h"

#include <fcntl.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include "runtime/runtime.h"

struct exec_work {
    uv_work_t w;
    struct strm_proc *proc;
    char *state_root, *id;
    struct rt_process *process; /* owned */
    bool tty;
    int child[3], ours[3]; /* child ends (closed after exec), our ends */
    int console[2];        /* [0] ours, [1] the executor's */
    int master;            /* received pty master */
    pid_t pid;
    int rc;
    struct ag_err err;
};

static void exec_work_free(struct exec_work *x)
{
    for (int i = 0; i < 3; i++) {
        if (x->child[i] >= 0)
            close(x->child[i]);
        if (x->ours[i] >= 0)
            close(x->ours[i]);
    }
    for (int i = 0; i < 2; i++)
        if (x->console[i] >= 0)
            close(x->console[i]);
    if (x->master >= 0)
        close(x->master);
    rt_process_free(x->process);
    free(x->state_root);
    free(x->id);
    free(x);
}

/* Receives the pty master the executor's child sent (before its execve,
 * so it is already queued when rt_container_exec returns). */
static int recv_master(int sock)
{
    char byte;
    struct iovec iov = {&byte, 1};
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof(u.buf)};
    struct pollfd pfd = {sock, POLLIN, 0};

    if (poll(&pfd, 1, 5000) <= 0)
        return -ETIMEDOUT;
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) < 0)
        return -errno;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c == NULL || c->cmsg_type != SCM_RIGHTS || c->cmsg_len != CMSG_LEN(sizeof(int)))
        return -EPROTO;
    int fd;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

static void exec_work(uv_work_t *w)
{
    struct exec_work *x = ag_container_of(w, struct exec_work, w);
    struct rt_stdio io = {.in = x->child[0], .out = x->child[1], .err = x->child[2],
                          .console_socket = x->tty ? x->console[1] : -1};

    x->process->terminal = x->tty;
    x->rc = rt_container_exec(x->state_root, x->id, x->process, &io, &x->pid, &x->err);
    if (x->rc < 0 || !x->tty)
        return;
    int m = recv_master(x->console[0]);
    if (m < 0)
        x->rc = ag_err_set(&x->err, m, "exec in %s: receive pty master: %s", x->id,
                           strerror(-m));
    else
        x->master = m;
}

static void after_exec_work(uv_work_t *w, int status)
{
    struct exec_work *x = ag_container_of(w, struct exec_work, w);
    struct strm_proc *p = x->proc;
    int rc = status < 0 ? status : x->rc;

    if (rc < 0) {
        int r = strm__fdproc_start(p, -1, -1, -1);
        if (r == 0)
            strm_fdproc_exited(p, -1, x->err.code ? x->err.msg : "exec: cancelled");
        exec_work_free(x);
        return;
    }
    /* Watch first: even a released proc must reap its child. */
    int pidfd = (int)syscall(SYS_pidfd_open, x->pid, 0);
    if (pidfd < 0 || strm_fdproc_watch_pidfd(p, pidfd) < 0)
        ag_log(AG_ERROR, "exec pid=%d: pidfd_open: %s (the process will not be reaped)",
               (int)x->pid, strerror(errno));
    if (x->tty)
        rc = strm__fdproc_start(p, -1, steal_fd(&x->master), -1);
    else
        rc = strm__fdproc_start(p, steal_fd(&x->ours[0]), steal_fd(&x->ours[1]),
                                steal_fd(&x->ours[2]));
    if (rc < 0 && rc != -ECANCELED)
        strm_fdproc_exited(p, -1, "exec: stdio setup failed");
    exec_work_free(x);
}

static int exec_pipes(struct exec_work *x, const struct strm_params *params)
{
    int fds[2];

    for (int i = 0; i < 3; i++) {
        bool want = i == 0 ? params->stdin : i == 1 ? params->stdout : params->stderr;
        if (i > 0 && !want) {
            x->child[i] = open("/dev/null", O_WRONLY | O_CLOEXEC);
            if (x->child[i] < 0)
                return -errno;
            continue;
        }
        if (pipe2(fds, O_CLOEXEC) < 0)
            return -errno;
        /* Without stdin the process reads EOF: our end is closed at once. */
        x->child[i] = i == 0 ? fds[0] : fds[1];
        x->ours[i] = i == 0 ? fds[1] : fds[0];
        if (i == 0 && !want)
            close(steal_fd(&x->ours[0]));
    }
    return 0;
}

int strm_container_exec(uv_loop_t *loop, const char *state_root, const char *id,
                        struct rt_process *process, const struct strm_params *params,
                        const struct strm_proc_sink *sink, struct strm_proc **out,
                        struct ag_err *err)
{
    struct exec_work *x = calloc(1, sizeof(*x));
    int rc = -ENOMEM;

    if (x == NULL) {
        rt_process_free(process);
        return ag_err_set(err, -ENOMEM, "exec: out of memory");
    }
    x->process = process;
    x->tty = params->tty;
    x->master = -1;
    for (int i = 0; i < 3; i++)
        x->child[i] = x->ours[i] = -1;
    x->console[0] = x->console[1] = -1;
    ag_err_init(&x->err);
    x->state_root = strdup(state_root);
    x->id = strdup(id);
    if (x->state_root == NULL || x->id == NULL)
        goto fail;
    if (params->tty) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, x->console) < 0) {
            rc = -errno;
            goto fail;
        }
    } else if ((rc = exec_pipes(x, params)) < 0) {
        goto fail;
    }
    if ((rc = strm__fdproc_new_pending(loop, sink, params->tty, &x->proc)) < 0)
        goto fail;
    if ((rc = uv_queue_work(loop, &x->w, exec_work, after_exec_work)) < 0) {
        x->proc->ops->release(x->proc);
        (void)strm__fdproc_start(x->proc, -1, -1, -1);
        goto fail;
    }
    *out = x->proc;
    return 0;
fail:
    ag_err_set(err, rc, "exec in %s: %s", id, strerror(-rc));
    exec_work_free(x);
    return rc;
}
