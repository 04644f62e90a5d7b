/* agent/runtime: `picocri monitor`, one small process per container.  It
 * detaches from the daemon (fork, setsid, fork: it ends up a child of init
 * or of the nearest subreaper), becomes a child subreaper, creates the
 * container with the executor so that it is the init's parent, holds the
 * container's stdio (pipes, or the pty master received on a console
 * socket), reports readiness, and then runs a poll loop
 * (rt_monitor_loop.c) until the container exits.  The exit status is
 * written to the exit file before the control socket disappears, so a
 * client that finds no monitor always finds the exit file.
 *
 * The monitor's code path stays small: no libuv, no thread, no TLS; only
 * libc, the executor and the log writer.  Signals are blocked (and read from
 * a signalfd) only after the container init was forked, so the init never
 * inherits a blocked mask or ignored signals from us.
 */
#include "rt_monitor_int.h"

#include <fcntl.h>
#include <getopt.h>
#include <poll.h>
#include <signal.h>
#include <inttypes.h>
#include <stdio.h>
#include <malloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>

#define READY_TIMEOUT_MS 120000

static int parse_args(struct monitor *m, int argc, char **argv)
{
    static const struct option opts[] = {
        {"id", required_argument, NULL, 'i'},
        {"bundle", required_argument, NULL, 'b'},
        {"state-root", required_argument, NULL, 'r'},
        {"exit-file", required_argument, NULL, 'x'},
        {"log-path", required_argument, NULL, 'l'},
        {"socket", required_argument, NULL, 's'},
        {"tty", no_argument, NULL, 't'},
        {"stdin", no_argument, NULL, 'I'},
        {"foreground", no_argument, NULL, 'f'},
        {"ready-fd", required_argument, NULL, 'R'},
        {"debug-log", required_argument, NULL, 'D'},
        {NULL, 0, NULL, 0},
    };
    int c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 'i': m->id = optarg; break;
        case 'b': m->bundle = optarg; break;
        case 'r': m->state_root = optarg; break;
        case 'x': m->exit_file = optarg; break;
        case 'l': m->log_path = optarg; break;
        case 's': m->socket_path = optarg; break;
        case 't': m->tty = true; break;
        case 'I': m->want_stdin = true; break;
        case 'f': m->foreground = true; break;
        case 'R': m->ready_fd = atoi(optarg); break;
        case 'D': m->debug_log = optarg; break;
        default: return -EINVAL;
        }
    }
    if (optind != argc || m->id == NULL || m->bundle == NULL || m->state_root == NULL ||
        m->exit_file == NULL || m->log_path == NULL)
        return -EINVAL;
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: picocri monitor --id ID --bundle DIR --state-root DIR "
                    "--exit-file FILE --log-path FILE [--socket PATH] [--tty] [--stdin] "
                    "[--foreground] [--ready-fd N] [--debug-log FILE]\n");
}

/* The readiness line: "ok <monitor pid> <container pid>" or
 * "error <errno> <message>".  Written once; the fd is then closed. */
static void report_ready(struct monitor *m, int code, const char *msg)
{
    char line[AG_ERR_MSG_LEN + 64];
    int n;

    if (m->ready_fd < 0)
        return;
    if (code == 0)
        n = snprintf(line, sizeof(line), "ok %d %d\n", (int)getpid(), m->st.pid);
    else
        n = snprintf(line, sizeof(line), "error %d %s\n", -code, msg);
    if (n > (int)sizeof(line) - 1)
        n = (int)sizeof(line) - 1;
    if (write(m->ready_fd, line, (size_t)n) < 0)
        ag_log(AG_WARN, "monitor ctr=%s readiness report failed errno=%d", m->id, errno);
    if (m->ready_fd > 2)
        close(m->ready_fd);
    m->ready_fd = -1;
}

/* First process: waits for the readiness line of the detached monitor,
 * prints it on stdout, exits 0 for "ok", else 1. */
static int wait_ready(int fd, pid_t child)
{
    char line[AG_ERR_MSG_LEN + 64];
    size_t len = 0;
    int64_t deadline = ag_now_ns() + (int64_t)READY_TIMEOUT_MS * 1000000;

    while (len < sizeof(line) - 1) {
        int64_t left = (deadline - ag_now_ns()) / 1000000;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, (int)left) == 0)
            break;
        ssize_t n = read(fd, line + len, sizeof(line) - 1 - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        len += (size_t)n;
        if (memchr(line, '\n', len) != NULL)
            break;
    }
    line[len] = '\0';
    waitpid(child, NULL, 0);
    if (len == 0 || line[len - 1] != '\n') {
        fprintf(stdout, "error %d monitor exited or timed out before it was ready\n", EIO);
        return 1;
    }
    fputs(line, stdout);
    fflush(stdout);
    return strncmp(line, "ok ", 3) == 0 ? 0 : 1;
}

/* Detaches: the caller returns in the monitor (grandchild) with
 * m->ready_fd set; the first process never returns. */
static void detach(struct monitor *m)
{
    int p[2];
    pid_t pid;

    if (pipe2(p, O_CLOEXEC) < 0) {
        printf("error %d pipe\n", errno);
        exit(1);
    }
    pid = fork();
    if (pid < 0) {
        printf("error %d fork\n", errno);
        exit(1);
    }
    if (pid > 0) {
        close(p[1]);
        exit(wait_ready(p[0], pid));
    }
    close(p[0]);
    if (setsid() < 0)
        _exit(1);
    pid = fork();
    if (pid != 0)
        _exit(pid < 0 ? 1 : 0);
    m->ready_fd = p[1];
}

/* stdin/stdout/stderr to /dev/null (stderr to --debug-log if given), every
 * other inherited fd closed except the readiness pipe (moved to 3). */
static int sanitize_fds(struct monitor *m)
{
    int null = open("/dev/null", O_RDWR | O_CLOEXEC);
    int errfd = -1;

    if (null < 0)
        return -errno;
    if (m->debug_log != NULL)
        errfd = open(m->debug_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
    if (m->ready_fd >= 0 && m->ready_fd != 3) {
        if (dup3(m->ready_fd, 3, O_CLOEXEC) < 0)
            return -errno;
        m->ready_fd = 3;
    }
    dup2(null, 0);
    dup2(null, 1);
    dup2(errfd >= 0 ? errfd : null, 2);
    int first = m->ready_fd == 3 ? 4 : 3;
    if (syscall(SYS_close_range, first, ~0U, 0) < 0) {
        for (int fd = first; fd < 1024; fd++)
            close(fd);
    }
    return 0;
}

/* Receives the pty master sent by the container init over the console
 * socket (SCM_RIGHTS), waiting at most 10 s. */
static int recv_pty_master(int sock)
{
    char data[64];
    union {
        struct cmsghdr h;
        char buf[CMSG_SPACE(sizeof(int))];
    } cbuf;
    struct iovec iov = {data, sizeof(data)};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = cbuf.buf,
                         .msg_controllen = sizeof(cbuf.buf)};
    struct pollfd p = {.fd = sock, .events = POLLIN};
    int fd;

    if (poll(&p, 1, 10000) <= 0)
        return -ETIMEDOUT;
    if (recvmsg(sock, &msg, MSG_CMSG_CLOEXEC) < 0)
        return -errno;
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    if (c == NULL || c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS ||
        c->cmsg_len != CMSG_LEN(sizeof(int)))
        return -EPROTO;
    memcpy(&fd, CMSG_DATA(c), sizeof(int));
    return fd;
}

/* Creates the container with pipes (or a console socket) for its stdio. */
static int create_container(struct monitor *m, struct ag_err *err)
{
    int out[2] = {-1, -1}, errp[2] = {-1, -1}, in[2] = {-1, -1}, cons[2] = {-1, -1};
    struct rt_stdio io = {.in = -1, .out = -1, .err = -1, .console_socket = -1};
    int rc = -EIO;
    pid_t pid = -1;

    if (m->tty) {
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, cons) < 0)
            return ag_err_set(err, -errno, "console socketpair");
        io.console_socket = cons[1];
    } else {
        if (pipe2(out, O_CLOEXEC) < 0 || pipe2(errp, O_CLOEXEC) < 0)
            return ag_err_set(err, -errno, "pipe");
        io.out = out[1];
        io.err = errp[1];
        if (m->want_stdin) {
            if (pipe2(in, O_CLOEXEC) < 0)
                return ag_err_set(err, -errno, "pipe");
            io.in = in[0];
        } else {
            in[0] = open("/dev/null", O_RDONLY | O_CLOEXEC);
            if (in[0] < 0)
                return ag_err_set(err, -errno, "open /dev/null");
            io.in = in[0];
        }
    }
    rc = rt_container_create(m->state_root, m->id, m->bundle, &io, &pid, err);
    /* The child ends belong to the container now. */
    for (int *fd = (int[]){out[1], errp[1], in[0], cons[1]}, i = 0; i < 4; i++)
        if (fd[i] >= 0)
            close(fd[i]);
    if (rc < 0) {
        for (int *fd = (int[]){out[0], errp[0], in[1], cons[0]}, i = 0; i < 4; i++)
            if (fd[i] >= 0)
                close(fd[i]);
        return rc;
    }
    m->st.pid = pid;
    m->st.created_at = ag_now_ns();
    m->st.state = RT_MON_CREATED;
    if (m->tty) {
        int master = recv_pty_master(cons[0]);
        close(cons[0]);
        if (master < 0)
            return ag_err_set(err, master, "receive pty master from console socket");
        m->out_fd = master;
        m->in_fd = m->want_stdin ? fcntl(master, F_DUPFD_CLOEXEC, 3) : -1;
    } else {
        m->out_fd = out[0];
        m->err_fd = errp[0];
        m->in_fd = in[1];
    }
    for (int *fd = (int[]){m->out_fd, m->err_fd, m->in_fd}, i = 0; i < 3; i++)
        if (fd[i] >= 0)
            fcntl(fd[i], F_SETFL, fcntl(fd[i], F_GETFL) | O_NONBLOCK);
    return 0;
}

static int listen_socket(struct monitor *m, struct ag_err *err)
{
    struct sockaddr_un addr;
    int dirfd = -1, fd, len;

    len = rt_monitor_sockaddr(m->socket_path, &addr, &dirfd);
    if (len < 0)
        return ag_err_set(err, len, "socket path %s", m->socket_path);
    fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0) {
        if (dirfd >= 0)
            close(dirfd);
        return ag_err_set(err, -errno, "socket");
    }
    unlink(addr.sun_path);
    mode_t old = umask(0077);
    int rc = bind(fd, (struct sockaddr *)&addr, (socklen_t)len) < 0 ? -errno : 0;
    umask(old);
    if (rc == 0 && listen(fd, 16) < 0)
        rc = -errno;
    if (dirfd >= 0)
        close(dirfd);
    if (rc < 0) {
        close(fd);
        return ag_err_set(err, rc, "bind %s", m->socket_path);
    }
    m->listen_fd = fd;
    return 0;
}

/* Blocks the signals the loop handles and opens the signalfd.  Called after
 * the init was forked (see the file comment). */
static int signals_setup(struct monitor *m, struct ag_err *err)
{
    sigset_t set;

    sigemptyset(&set);
    sigaddset(&set, SIGCHLD);
    sigaddset(&set, SIGTERM);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGHUP);
    sigaddset(&set, SIGPIPE);
    if (sigprocmask(SIG_BLOCK, &set, NULL) < 0)
        return ag_err_set(err, -errno, "sigprocmask");
    m->sig_fd = signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK);
    if (m->sig_fd < 0)
        return ag_err_set(err, -errno, "signalfd");
    return 0;
}

void rt__mon_record_exit(struct monitor *m, int wstatus)
{
    m->st.state = RT_MON_EXITED_STATE;
    m->st.finished_at = ag_now_ns();
    if (WIFSIGNALED(wstatus)) {
        m->st.signal = WTERMSIG(wstatus);
        m->st.exit_code = 128 + m->st.signal;
    } else {
        m->st.signal = 0;
        m->st.exit_code = WEXITSTATUS(wstatus);
    }
    if (m->oom_known) {
        struct rt_cgroup_stats cs;
        struct ag_err e;
        ag_err_init(&e);
        if (rt_container_stats(m->state_root, m->id, &cs, &e) == 0)
            m->st.oom_killed = cs.oom_kills > m->oom_base;
    }
    m->drain_deadline_ns = m->st.finished_at + (int64_t)MON_DRAIN_MS * 1000000;
    ag_log(AG_INFO, "monitor ctr=%s exited code=%d signal=%d oom=%d", m->id, m->st.exit_code,
           m->st.signal, m->st.oom_killed);
}

/* noinline (also setup() below): their buffers must not sit in
 * rt_monitor_main's frame, which stays on the stack, resident, for the
 * container's whole life. */
__attribute__((noinline)) static void write_exit_file(struct monitor *m, const char *error)
{
    struct rt_exit_status es = {.st = m->st};
    char buf[2048];

    snprintf(es.error, sizeof(es.error), "%s", error != NULL ? error : "");
    int n = rt_exit_status_format(&es, buf, sizeof(buf));
    int rc = n < 0 ? n : ag_file_write_atomic(m->exit_file, buf, (size_t)n, 0600);
    if (rc < 0)
        ag_log(AG_ERROR, "monitor ctr=%s write exit file %s errno=%d", m->id, m->exit_file, -rc);
}

__attribute__((noinline)) static int setup(struct monitor *m, struct ag_err *err)
{
    char sock[4096];
    int rc;

    if (m->socket_path == NULL) {
        if (snprintf(sock, sizeof(sock), "%s/%s/monitor.sock", m->state_root, m->id) >=
            (int)sizeof(sock))
            return ag_err_set(err, -ENAMETOOLONG, "socket path");
        m->socket_path = ag_xstrdup(sock);
    }
    if (prctl(PR_SET_CHILD_SUBREAPER, 1) < 0)
        return ag_err_set(err, -errno, "PR_SET_CHILD_SUBREAPER");
    rc = rt_log_file_open(&m->log_file, m->log_path);
    if (rc < 0)
        return ag_err_set(err, rc, "open log %s", m->log_path);
    rt_log_writer_init(&m->log, &rt_log_file_ops, &m->log_file);
    rc = create_container(m, err);
    if (rc < 0)
        return ag_err_wrap(err, "create container %s", m->id);
    rc = signals_setup(m, err);
    if (rc == 0)
        rc = listen_socket(m, err);
    if (rc < 0) {
        struct ag_err e;
        ag_err_init(&e);
        (void)!rt_container_delete(m->state_root, m->id, true, &e);
        kill(m->st.pid, SIGKILL);
        waitpid(m->st.pid, NULL, 0);
        return rc;
    }
    struct rt_cgroup_stats cs;
    struct ag_err e;
    ag_err_init(&e);
    if (rt_container_stats(m->state_root, m->id, &cs, &e) == 0) {
        m->oom_base = cs.oom_kills;
        m->oom_known = true;
    }
    return 0;
}

/* The monitor sleeps for the container's whole life, so memory touched
 * once by the executor's create and start paths should not stay resident:
 * give back freed heap pages, the stack pages below the loop's frame
 * (nothing lives below the stack pointer: no signal handler runs on this
 * stack, signals come from a signalfd), and the read-only file pages
 * (code, rodata) touched so far.  A private file mapping is dropped only
 * when it is not writable and holds no anonymous page (smaps
 * "Anonymous: 0"), so it is identical to the file and the few pages the
 * loop needs fault back in from the page cache; relocated (RELRO) and
 * writable mappings are never touched.  The stack is trimmed later, by
 * rt__mon_trim_stack() from the loop's shallowest point, just before it
 * sleeps in poll(): trimmed here, the pages below this deep frame would
 * be touched again by the rest of this function and its callers. */
static uintptr_t stack_trim_lo; /* [stack] start; 0 = nothing to trim */

static void release_mapping(uintptr_t lo, uintptr_t hi, const char *perms, bool file,
                            bool is_stack, size_t anon_kb, uintptr_t sp)
{
    if (is_stack) {
        if (sp > lo && sp < hi)
            stack_trim_lo = lo;
    } else if (file && anon_kb == 0 && perms[0] == 'r' && perms[1] == '-' && perms[3] == 'p') {
        madvise((void *)lo, hi - lo, MADV_DONTNEED);
    }
}

void rt__mon_trim_stack(void)
{
    char here;

    if (stack_trim_lo == 0)
        return;
    uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE);
    /* One page below this frame stays for poll() and the calls to come. */
    uintptr_t top = ((uintptr_t)&here & ~(page - 1)) - page;
    if (top > stack_trim_lo)
        madvise((void *)stack_trim_lo, top - stack_trim_lo, MADV_DONTNEED);
    stack_trim_lo = 0;
}

void rt__mon_release_memory(void)
{
    char here;
    uintptr_t sp = (uintptr_t)&here, lo = 0, hi = 0;
    char line[512], perms[8] = "";
    bool file = false, is_stack = false, have = false;
    size_t kb;
    FILE *f;

    malloc_trim(0);
    f = fopen("/proc/self/smaps", "re");
    if (f == NULL)
        return;
    while (fgets(line, sizeof(line), f) != NULL) {
        uintptr_t a, b;
        char p[8];
        if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s", &a, &b, p) == 3) {
            lo = a;
            hi = b;
            memcpy(perms, p, sizeof(perms));
            file = strchr(line, '/') != NULL;
            is_stack = strstr(line, "[stack]") != NULL;
            have = true;
        } else if (have && sscanf(line, "Anonymous: %zu", &kb) == 1) {
            release_mapping(lo, hi, perms, file, is_stack, kb, sp);
            have = false;
        }
    }
    fclose(f);
    /* The stdio buffer just freed would otherwise stay in the heap. */
    malloc_trim(0);
}

int rt_monitor_main(int argc, char **argv)
{
    struct monitor m = {.ready_fd = -1, .sig_fd = -1, .listen_fd = -1, .out_fd = -1,
                        .err_fd = -1, .in_fd = -1};
    struct ag_err err;
    int rc;

    ag_err_init(&err);
    if (parse_args(&m, argc, argv) < 0) {
        usage();
        return 2;
    }
    /* Buffers of 16 KiB and more (a control client's frame buffer, the log
     * writer's line buffers, the stdin queue) get their own mappings, which
     * free() returns at once: in the heap they would stay resident after
     * their client left (a 16 KiB hole never reaches the trim threshold). */
    mallopt(M_MMAP_THRESHOLD, MON_MMAP_THRESHOLD);
    mallopt(M_TRIM_THRESHOLD, MON_MMAP_THRESHOLD);
    if (!m.foreground)
        detach(&m);
    else if (m.ready_fd < 0)
        m.ready_fd = dup(1);
    if (!m.foreground && chdir("/") < 0)
        return 1;
    rc = m.foreground ? 0 : sanitize_fds(&m);
    rt_log_file_init(&m.log_file);
    rt__mon_init_clients(&m);
    if (rc == 0)
        rc = setup(&m, &err);
    else
        ag_err_set(&err, rc, "monitor fds");
    if (rc < 0) {
        ag_log(AG_ERROR, "monitor ctr=%s %s", m.id, err.msg);
        report_ready(&m, rc, err.msg);
        return 1;
    }
    report_ready(&m, 0, NULL);
    rt__mon_release_memory();
    rc = rt__mon_loop(&m);
    if (rc < 0 && m.st.state != RT_MON_EXITED_STATE) {
        /* The monitor cannot serve the container any more: stop it rather
         * than leave a container nobody can see. */
        ag_log(AG_ERROR, "monitor ctr=%s loop failed errno=%d: killing", m.id, -rc);
        kill(m.st.pid, SIGKILL);
        int ws = 0;
        if (waitpid(m.st.pid, &ws, 0) == m.st.pid)
            rt__mon_record_exit(&m, ws);
    }
    (void)!rt_log_writer_flush(&m.log, -1, ag_now_ns());
    write_exit_file(&m, rc < 0 ? "monitor failed; container killed" : NULL);
    /* Only now stop listening: a client that cannot connect (or whose
     * queued connection is reset) finds the exit file. */
    if (m.listen_fd >= 0)
        close(m.listen_fd);
    m.listen_fd = -1;
    unlink(m.socket_path);
    rt__mon_clients_finish(&m);
    rt_log_writer_fini(&m.log);
    rt_log_file_fini(&m.log_file);
    return rc < 0 ? 1 : 0;
}
