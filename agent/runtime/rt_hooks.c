/* agent/runtime: OCI hooks.
 *
 * Each hook is forked and exec'ed with its args and env, the state JSON on
 * its stdin (through a pipe), and killed when its timeout passes.  Hooks of
 * one kind run in order; the first failure stops them unless warn_only
 * (poststop).  Also the small fd helpers shared by the lifecycle code.
 * Invariant: a hook never outlives the call (killed and reaped on timeout).
 */
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "rt_internal.h"

static const char *const kind_names[RT_HOOK_COUNT] = {
    "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
};

int rt__write_all(int fd, const void *buf, size_t len)
{
    const char *p = buf;
    while (len) {
        ssize_t n = write(fd, p, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

int rt__sync_send(int fd, int type, int code, const char *msg)
{
    struct rt_sync_msg m = {.type = type, .code = code};
    if (msg)
        snprintf(m.msg, sizeof(m.msg), "%s", msg);
    ssize_t n = send(fd, &m, sizeof(m), MSG_NOSIGNAL);
    return n == (ssize_t)sizeof(m) ? 0 : -EPIPE;
}

int rt__sync_recv(int fd, struct rt_sync_msg *m, int timeout_ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int rc;
    do
        rc = poll(&p, 1, timeout_ms);
    while (rc < 0 && errno == EINTR);
    if (rc == 0)
        return -ETIMEDOUT;
    if (rc < 0)
        return -errno;
    ssize_t n;
    do
        n = recv(fd, m, sizeof(*m), 0);
    while (n < 0 && errno == EINTR);
    if (n == 0)
        return -EPIPE;
    if (n != (ssize_t)sizeof(*m))
        return n < 0 ? -errno : -EPROTO;
    m->msg[sizeof(m->msg) - 1] = 0;
    return 0;
}

static int wait_timeout(pid_t pid, int timeout_s, int *status)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (unsigned delay = 100;;) {
        pid_t r = waitpid(pid, status, WNOHANG);
        if (r == pid)
            return 0;
        if (r < 0 && errno != EINTR)
            return -errno;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (timeout_s > 0 && now.tv_sec - start.tv_sec >= timeout_s) {
            kill(pid, SIGKILL);
            waitpid(pid, status, 0);
            return -ETIMEDOUT;
        }
        nanosleep(&(struct timespec){0, (long)delay * 1000}, NULL);
        if (delay < 20000)
            delay *= 2;
    }
}

static int run_one(const struct rt_hook *h, const char *state_json, struct ag_err *err)
{
    int pfd[2], status = 0;
    char *const empty[] = {NULL};
    char *const argv0[] = {h->path, NULL};
    /* A socket, not a pipe: MSG_NOSIGNAL spares the caller's SIGPIPE
     * disposition when the hook does not read its stdin. */
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, pfd) < 0)
        return ag_err_set(err, -errno, "socketpair: %s", strerror(errno));
    pid_t pid = fork();
    if (pid < 0) {
        close(pfd[0]);
        close(pfd[1]);
        return ag_err_set(err, -errno, "fork: %s", strerror(errno));
    }
    if (pid == 0) {
        dup2(pfd[0], 0);
        execve(h->path, h->args ? h->args : argv0, h->env ? h->env : empty);
        _exit(127);
    }
    close(pfd[0]);
    /* The hook may not read stdin: a send error is ignored, the exit status decides. */
    for (size_t off = 0, len = strlen(state_json); off < len;) {
        ssize_t n = send(pfd[1], state_json + off, len - off, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(pfd[1]);
    int rc = wait_timeout(pid, h->timeout, &status);
    if (rc == -ETIMEDOUT)
        return ag_err_set(err, rc, "hook %.200s: timed out after %ds", h->path, h->timeout);
    if (rc < 0)
        return ag_err_set(err, rc, "hook %.200s: wait: %s", h->path, strerror(-rc));
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
        return 0;
    if (WIFEXITED(status))
        return ag_err_set(err, -EIO, "hook %.200s: exit status %d", h->path,
                          WEXITSTATUS(status));
    return ag_err_set(err, -EIO, "hook %.200s: killed by signal %d", h->path, WTERMSIG(status));
}

int rt__hooks_run(const struct rt_spec *spec, enum rt_hook_kind kind, const char *state_json,
                  bool warn_only, struct ag_err *err)
{
    for (size_t i = 0; i < spec->hooks_count[kind]; i++) {
        if (run_one(&spec->hooks[kind][i], state_json, err) == 0)
            continue;
        if (!warn_only)
            return ag_err_wrap(err, "%s hook", kind_names[kind]);
        ag_log(AG_WARN, "%s hook failed: %s", kind_names[kind], err->msg);
        ag_err_init(err);
    }
    return 0;
}
