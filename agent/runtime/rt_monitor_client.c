/* agent/runtime: the daemon side of the monitor: spawning `picocri monitor`
 * and talking to its control socket.  Everything here blocks, bounded by a
 * timeout, and is meant for the libuv thread pool (or a CLI).  A monitor
 * that is gone is not an error of its own: connect returns -ENOENT or
 * -ECONNREFUSED and the caller reads the exit file, which the monitor
 * writes before it removes its socket.
 *
 * The spawn path between fork and execve calls only async-signal-safe
 * functions (the daemon is multi-threaded).
 */
#include "rt_monitor.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

int rt_monitor_sockaddr(const char *path, struct sockaddr_un *addr, int *dirfd_out)
{
    size_t len = strlen(path);

    *dirfd_out = -1;
    memset(addr, 0, sizeof(*addr));
    addr->sun_family = AF_UNIX;
    if (len == 0)
        return -EINVAL;
    if (len < sizeof(addr->sun_path)) {
        memcpy(addr->sun_path, path, len + 1);
        return (int)(offsetof(struct sockaddr_un, sun_path) + len + 1);
    }
    /* Too long for sun_path: name it through an fd of its directory. */
    char dir[PATH_MAX], base[PATH_MAX];
    if (len >= sizeof(dir))
        return -ENAMETOOLONG;
    memcpy(dir, path, len + 1);
    memcpy(base, path, len + 1);
    int fd = open(dirname(dir), O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    int n = snprintf(addr->sun_path, sizeof(addr->sun_path), "/proc/self/fd/%d/%s", fd,
                     basename(base));
    if (n < 0 || (size_t)n >= sizeof(addr->sun_path)) {
        close(fd);
        return -ENAMETOOLONG;
    }
    *dirfd_out = fd;
    return (int)(offsetof(struct sockaddr_un, sun_path) + (size_t)n + 1);
}

static int64_t deadline_after(int timeout_ms)
{
    return ag_now_ns() + (int64_t)timeout_ms * 1000000;
}

static int ms_left(int64_t deadline)
{
    int64_t left = (deadline - ag_now_ns()) / 1000000;

    return left <= 0 ? 0 : left > INT32_MAX ? INT32_MAX : (int)left;
}

/* Waits for events on fd until the deadline: 0, -ETIMEDOUT or -errno. */
static int wait_fd(int fd, short events, int64_t deadline)
{
    for (;;) {
        struct pollfd p = {.fd = fd, .events = events};
        int left = ms_left(deadline);
        if (left == 0)
            return -ETIMEDOUT;
        int r = poll(&p, 1, left);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r > 0)
            return 0;
    }
}

int rt_monitor_connect(const char *socket_path, int timeout_ms, struct ag_err *err)
{
    struct sockaddr_un addr;
    int dirfd, len, fd, rc;

    len = rt_monitor_sockaddr(socket_path, &addr, &dirfd);
    if (len < 0)
        return ag_err_set(err, len, "monitor socket %s", socket_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
        rc = -errno;
        if (dirfd >= 0)
            close(dirfd);
        return ag_err_set(err, rc, "socket");
    }
    /* A unix stream connect does not block on a listening socket with a
     * free backlog slot; a full backlog is retried until the deadline. */
    int64_t deadline = deadline_after(timeout_ms);
    for (;;) {
        rc = connect(fd, (struct sockaddr *)&addr, (socklen_t)len) < 0 ? -errno : 0;
        if (rc != -EAGAIN && rc != -EINTR)
            break;
        if (ms_left(deadline) == 0) {
            rc = -ETIMEDOUT;
            break;
        }
        usleep(10000);
    }
    if (dirfd >= 0)
        close(dirfd);
    if (rc < 0) {
        close(fd);
        return ag_err_set(err, rc, "connect monitor %s", socket_path);
    }
    return fd;
}

static int send_all(int fd, const struct iovec *iov_in, int n, int64_t deadline)
{
    struct iovec iov[2];
    struct msghdr msg = {.msg_iov = iov, .msg_iovlen = (size_t)n};

    memcpy(iov, iov_in, sizeof(iov[0]) * (size_t)n);
    while (msg.msg_iovlen > 0) {
        ssize_t w = sendmsg(fd, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -errno;
            int rc = wait_fd(fd, POLLOUT, deadline);
            if (rc < 0)
                return rc;
            continue;
        }
        size_t done = (size_t)w;
        while (msg.msg_iovlen > 0 && done >= msg.msg_iov->iov_len) {
            done -= msg.msg_iov->iov_len;
            msg.msg_iov++;
            msg.msg_iovlen--;
        }
        if (msg.msg_iovlen > 0) {
            msg.msg_iov->iov_base = (char *)msg.msg_iov->iov_base + done;
            msg.msg_iov->iov_len -= done;
        }
    }
    return 0;
}

int rt_monitor_send_frame(int fd, uint8_t type, const void *payload, size_t len, int timeout_ms)
{
    uint8_t hdr[RT_MON_HDR_LEN];
    struct iovec iov[2] = {{hdr, sizeof(hdr)}, {(void *)payload, len}};

    if (len > RT_MON_PAYLOAD_MAX)
        return -EMSGSIZE;
    rt_mon_frame_header(hdr, type, len);
    return send_all(fd, iov, len > 0 ? 2 : 1, deadline_after(timeout_ms));
}

/* Reads exactly len bytes before the deadline. */
static int recv_exact(int fd, uint8_t *buf, size_t len, int64_t deadline)
{
    size_t got = 0;

    while (got < len) {
        ssize_t n = recv(fd, buf + got, len - got, MSG_DONTWAIT);
        if (n > 0) {
            got += (size_t)n;
            continue;
        }
        if (n == 0)
            return -ECONNRESET;
        if (errno == EINTR)
            continue;
        if (errno != EAGAIN)
            return -errno;
        int rc = wait_fd(fd, POLLIN, deadline);
        if (rc < 0)
            return rc;
    }
    return 0;
}

/* Turns an 'N' payload "<errno> <message>" into err. */
static int reply_error(const uint8_t *p, size_t len, struct ag_err *err)
{
    char text[AG_ERR_MSG_LEN];
    long code = 0;
    char *end;

    /* The message is cut to what an ag_err can hold anyway. */
    if (len > sizeof(text) - 1)
        len = sizeof(text) - 1;
    memcpy(text, p, len);
    text[len] = '\0';
    code = strtol(text, &end, 10);
    if (end == text || code <= 0 || code > 4095)
        code = EIO;
    while (*end == ' ')
        end++;
    return ag_err_set(err, (int)-code, "%s", end);
}

int rt_monitor_request(int fd, uint8_t type, const char *payload, char *out, size_t out_len,
                       int timeout_ms, struct ag_err *err)
{
    _cleanup_free_ uint8_t *buf = malloc(RT_MON_HDR_LEN + RT_MON_PAYLOAD_MAX);
    int64_t deadline = deadline_after(timeout_ms);
    size_t plen = payload != NULL ? strlen(payload) : 0;
    struct rt_mon_frame f;
    int rc;

    if (buf == NULL)
        return ag_err_set(err, -ENOMEM, "monitor reply buffer");
    rc = rt_monitor_send_frame(fd, type, payload, plen, timeout_ms);
    if (rc < 0)
        return ag_err_set(err, rc, "send request '%c' to monitor", type);
    rc = recv_exact(fd, buf, RT_MON_HDR_LEN, deadline);
    if (rc < 0)
        return ag_err_set(err, rc, "read monitor reply");
    rc = rt_mon_frame_parse(buf, RT_MON_HDR_LEN, &f);
    if (rc < 0)
        return ag_err_set(err, -EPROTO, "bad monitor reply header");
    size_t len = (size_t)buf[1] << 24 | (size_t)buf[2] << 16 | (size_t)buf[3] << 8 | buf[4];
    rc = recv_exact(fd, buf + RT_MON_HDR_LEN, len, deadline);
    if (rc < 0)
        return ag_err_set(err, rc, "read monitor reply");
    if (rt_mon_frame_parse(buf, RT_MON_HDR_LEN + len, &f) <= 0)
        return ag_err_set(err, -EPROTO, "bad monitor reply");
    if (f.type == RT_MON_ERR)
        return reply_error(f.payload, f.len, err);
    if (f.type != RT_MON_OK)
        return ag_err_set(err, -EPROTO, "unexpected monitor frame '%c'", f.type);
    if (out_len > 0) {
        size_t n = f.len < out_len - 1 ? f.len : out_len - 1;
        memcpy(out, f.payload, n);
        out[n] = '\0';
    }
    return 0;
}

static int one_request(const char *socket_path, uint8_t type, const char *payload, char *out,
                       size_t out_len, int timeout_ms, struct ag_err *err)
{
    int fd = rt_monitor_connect(socket_path, timeout_ms, err);

    if (fd < 0)
        return fd;
    int rc = rt_monitor_request(fd, type, payload, out, out_len, timeout_ms, err);
    close(fd);
    return rc;
}

int rt_monitor_start(const char *socket_path, int timeout_ms, struct ag_err *err)
{
    return one_request(socket_path, RT_MON_START, NULL, NULL, 0, timeout_ms, err);
}

int rt_monitor_signal(const char *socket_path, int sig, bool all, int timeout_ms,
                      struct ag_err *err)
{
    char p[32];

    snprintf(p, sizeof(p), "%d%s", sig, all ? " all" : "");
    return one_request(socket_path, RT_MON_SIGNAL, p, NULL, 0, timeout_ms, err);
}

int rt_monitor_reopen_log(const char *socket_path, int timeout_ms, struct ag_err *err)
{
    return one_request(socket_path, RT_MON_REOPEN, NULL, NULL, 0, timeout_ms, err);
}

int rt_monitor_resize(const char *socket_path, unsigned rows, unsigned cols, int timeout_ms,
                      struct ag_err *err)
{
    char p[32];

    snprintf(p, sizeof(p), "%u %u", rows, cols);
    return one_request(socket_path, RT_MON_RESIZE, p, NULL, 0, timeout_ms, err);
}

int rt_monitor_status(const char *socket_path, struct rt_mon_status *out, int timeout_ms,
                      struct ag_err *err)
{
    char text[512];
    int rc = one_request(socket_path, RT_MON_STATUS, NULL, text, sizeof(text), timeout_ms, err);

    if (rc < 0)
        return rc;
    if (rt_mon_status_parse(text, strlen(text), out) < 0)
        return ag_err_set(err, -EPROTO, "bad monitor status");
    return 0;
}

int rt_monitor_attach(const char *socket_path, bool with_stdin, int timeout_ms,
                      struct ag_err *err)
{
    int fd = rt_monitor_connect(socket_path, timeout_ms, err);

    if (fd < 0)
        return fd;
    int rc = rt_monitor_request(fd, RT_MON_ATTACH, with_stdin ? "stdin" : NULL, NULL, 0,
                                timeout_ms, err);
    if (rc < 0) {
        close(fd);
        return rc;
    }
    return fd;
}

/* ---- spawn ------------------------------------------------------------------------ */

#define MAX_ARGS 24

static int build_argv(const struct rt_monitor_opts *o, const char **argv)
{
    int n = 0;

    argv[n++] = "picocri";
    argv[n++] = "monitor";
    argv[n++] = "--id";
    argv[n++] = o->id;
    argv[n++] = "--bundle";
    argv[n++] = o->bundle;
    argv[n++] = "--state-root";
    argv[n++] = o->state_root;
    argv[n++] = "--exit-file";
    argv[n++] = o->exit_file;
    argv[n++] = "--log-path";
    argv[n++] = o->log_path;
    if (o->socket_path != NULL) {
        argv[n++] = "--socket";
        argv[n++] = o->socket_path;
    }
    if (o->tty)
        argv[n++] = "--tty";
    if (o->stdin_open)
        argv[n++] = "--stdin";
    argv[n] = NULL;
    return n;
}

/* Child: stdout to the pipe, stdin/stderr to /dev/null, exec.  Only
 * async-signal-safe calls. */
static void __attribute__((noreturn)) spawn_child(const char *exe, const char **argv, int out,
                                                  int null)
{
    sigset_t none;

    sigemptyset(&none);
    sigprocmask(SIG_SETMASK, &none, NULL);
    for (int s = 1; s < NSIG; s++)
        if (s != SIGKILL && s != SIGSTOP)
            signal(s, SIG_DFL);
    if (dup2(null, 0) < 0 || dup2(out, 1) < 0 || dup2(null, 2) < 0)
        _exit(127);
    /* A fixed small environment: the monitor needs none of the daemon's,
     * and whatever it inherits stays resident on its stack for the
     * container's whole life.  No per-thread malloc cache (tcache): the
     * chunks it keeps from set-up pin heap pages that malloc_trim() could
     * otherwise give back (16 KiB per monitor).  glibc reads tunables only
     * at start-up, hence the environment; every exec of the executor
     * passes the container's own environment, so this goes no further. */
    static char path_env[] = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    static char tunables_env[] = "GLIBC_TUNABLES=glibc.malloc.tcache_count=0";
    static char *const envp[] = {path_env, tunables_env, NULL};
    execve(exe, (char *const *)argv, envp);
    _exit(127);
}

/* Parses "ok <mpid> <cpid>\n" or "error <errno> <msg>\n". */
static int parse_ready(char *line, pid_t *mpid, pid_t *cpid, struct ag_err *err)
{
    int a, b;

    if (sscanf(line, "ok %d %d", &a, &b) == 2 && a > 0 && b > 0) {
        *mpid = a;
        *cpid = b;
        return 0;
    }
    char *nl = strchr(line, '\n');
    if (nl != NULL)
        *nl = '\0';
    int n = 0;
    if (sscanf(line, "error %d %n", &a, &n) >= 1 && n > 0 && a > 0 && a < 4096)
        return ag_err_set(err, -a, "monitor: %s", line + n);
    return ag_err_set(err, -EIO, "monitor: unexpected readiness line");
}

int rt_monitor_spawn(const struct rt_monitor_opts *o, int timeout_ms, pid_t *monitor_pid,
                     pid_t *ctr_pid, struct ag_err *err)
{
    const char *argv[MAX_ARGS];
    const char *exe = o->exe != NULL ? o->exe : "/proc/self/exe";
    _cleanup_close_ int rd = -1, wr = -1, null = -1;
    int p[2], status = 0, rc;
    char line[AG_ERR_MSG_LEN + 64];
    size_t len = 0;

    if (o->id == NULL || o->bundle == NULL || o->state_root == NULL || o->exit_file == NULL ||
        o->log_path == NULL)
        return ag_err_set(err, -EINVAL, "monitor spawn: missing option");
    build_argv(o, argv);
    if (pipe2(p, O_CLOEXEC) < 0)
        return ag_err_set(err, -errno, "pipe");
    rd = p[0];
    wr = p[1];
    null = open("/dev/null", O_RDWR | O_CLOEXEC);
    if (null < 0)
        return ag_err_set(err, -errno, "open /dev/null");
    pid_t pid = fork();
    if (pid < 0)
        return ag_err_set(err, -errno, "fork monitor");
    if (pid == 0)
        spawn_child(exe, argv, wr, null);
    close(steal_fd(&wr));
    int64_t deadline = deadline_after(timeout_ms);
    rc = 0;
    while (len < sizeof(line) - 1 && memchr(line, '\n', len) == NULL) {
        rc = wait_fd(rd, POLLIN, deadline);
        if (rc < 0)
            break;
        ssize_t n = read(rd, line + len, sizeof(line) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    line[len] = '\0';
    if (rc == -ETIMEDOUT) {
        /* The first process only waits for the monitor; killing it does not
         * stop the monitor, which reports to a closed pipe and carries on. */
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
        return ag_err_set(err, -ETIMEDOUT, "monitor for %s not ready after %d ms", o->id,
                          timeout_ms);
    }
    while (waitpid(pid, &status, 0) < 0 && errno == EINTR)
        ;
    if (len == 0)
        return ag_err_set(err, -EIO, "monitor for %s exited without a report (status %d)", o->id,
                          status);
    rc = parse_ready(line, monitor_pid, ctr_pid, err);
    if (rc < 0)
        return ag_err_wrap(err, "spawn monitor for %s", o->id);
    return 0;
}
