/* agent/runtime: a pod's namespaces, pinned by bind mounts, its /etc files
 * and /dev/shm, and the optional infra process.  A forked helper unshares
 * the namespaces, sets the hostname, brings loopback up and writes the
 * pod's sysctls from inside them; the parent pins them with bind mounts of
 * /proc/<helper>/ns/<type>, after which the helper exits and the namespaces
 * live on through the pins.  Invariant: rt_pod_create() either leaves a
 * complete pod directory or nothing mounted and nothing on disk. */
#include "rt_pod.h"

#include <fcntl.h>
#include <ftw.h>
#include <limits.h>
#include <net/if.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>

#define SHM_OPTS "mode=1777,size=65536k"

static int join(char *out, size_t n, const char *dir, const char *name)
{
    return ag_path_join(out, n, dir, name);
}

/* ---- /etc files ------------------------------------------------------------ */

static int write_resolv(const struct rt_pod_setup *s, char *path)
{
    const runtime_v1_DNSConfig *d = s->dns;
    char buf[8192];
    size_t n = 0;

    if (d == NULL || (d->servers_count == 0 && d->searches_count == 0 && d->options_count == 0)) {
        /* No DNS config: the host's, as containerd does. */
        _cleanup_free_ char *host = NULL;
        size_t len = 0;
        if (ag_file_read("/etc/resolv.conf", 65536, &host, &len) < 0)
            return ag_file_replace(path, "", 0, 0644);
        return ag_file_replace(path, host, len, 0644);
    }
    if (d->searches_count > 0) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "search");
        for (size_t i = 0; i < d->searches_count && n < sizeof(buf); i++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s", d->searches[i]);
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\n");
    }
    for (size_t i = 0; i < d->servers_count && n < sizeof(buf); i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "nameserver %s\n", d->servers[i]);
    if (d->options_count > 0 && n < sizeof(buf)) {
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "options");
        for (size_t i = 0; i < d->options_count && n < sizeof(buf); i++)
            n += (size_t)snprintf(buf + n, sizeof(buf) - n, " %s", d->options[i]);
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\n");
    }
    if (n >= sizeof(buf))
        return -E2BIG;
    return ag_file_replace(path, buf, n, 0644);
}

static int write_files(const struct rt_pod_setup *s, struct ag_err *err)
{
    char path[PATH_MAX], buf[512];
    int rc, n;

    if ((rc = join(path, sizeof(path), s->dir, "hostname")) < 0)
        return ag_err_set(err, rc, "pod directory path too long");
    n = snprintf(buf, sizeof(buf), "%s\n", s->hostname ? s->hostname : "");
    if ((rc = ag_file_replace(path, buf, (size_t)n, 0644)) < 0)
        return ag_err_set(err, rc, "write %s: %s", path, strerror(-rc));
    if ((rc = join(path, sizeof(path), s->dir, "resolv.conf")) < 0 ||
        (rc = write_resolv(s, path)) < 0)
        return ag_err_set(err, rc, "write resolv.conf: %s", strerror(-rc));
    n = snprintf(buf, sizeof(buf),
                 "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
                 "fe00::0\tip6-localnet\nff00::0\tip6-mcastprefix\n"
                 "ff02::1\tip6-allnodes\nff02::2\tip6-allrouters\n");
    if ((rc = join(path, sizeof(path), s->dir, "hosts")) < 0 ||
        (rc = ag_file_replace(path, buf, (size_t)n, 0644)) < 0)
        return ag_err_set(err, rc, "write hosts: %s", strerror(-rc));
    return 0;
}

/* ---- the namespace helper ------------------------------------------------------ */

/* Only namespaced sysctls are allowed, each in the namespace the pod owns. */
static bool sysctl_allowed(const char *name, int flags)
{
    if (strncmp(name, "net.", 4) == 0)
        return flags & CLONE_NEWNET;
    if (strncmp(name, "kernel.shm", 10) == 0 || strncmp(name, "kernel.msg", 10) == 0 ||
        strcmp(name, "kernel.sem") == 0 || strncmp(name, "fs.mqueue.", 10) == 0)
        return flags & CLONE_NEWIPC;
    if (strcmp(name, "kernel.hostname") == 0 || strcmp(name, "kernel.domainname") == 0)
        return flags & CLONE_NEWUTS;
    return false;
}

static int check_sysctls(const struct rt_pod_setup *s, int flags, struct ag_err *err)
{
    const runtime_v1_LinuxPodSandboxConfig *l = s->linux;

    for (size_t i = 0; l != NULL && i < l->sysctls_count; i++) {
        const char *k = l->sysctls[i].key;
        if (k == NULL || strstr(k, "..") != NULL || !sysctl_allowed(k, flags))
            return ag_err_set(err, -EINVAL, "sysctl %s is not allowed: only namespaced "
                                            "sysctls of namespaces the pod owns",
                              k ? k : "(empty)");
    }
    return 0;
}

/* In the helper: async-signal-safe calls only (the daemon has threads). */
static int child_write_sysctls(const struct rt_pod_setup *s)
{
    const runtime_v1_LinuxPodSandboxConfig *l = s->linux;

    for (size_t i = 0; l != NULL && i < l->sysctls_count; i++) {
        char path[PATH_MAX] = "/proc/sys/";
        size_t n = 10;
        const char *k = l->sysctls[i].key, *v = l->sysctls[i].value ? l->sysctls[i].value : "";
        bool slashes = strchr(k, '/') != NULL;
        for (; *k && n + 1 < sizeof(path); k++, n++)
            path[n] = (!slashes && *k == '.') ? '/' : *k;
        path[n] = '\0';
        int fd = open(path, O_WRONLY | O_CLOEXEC);
        if (fd < 0)
            return -(int)i - 1;
        ssize_t w = write(fd, v, strlen(v));
        close(fd);
        if (w < 0)
            return -(int)i - 1;
    }
    return 0;
}

static int child_loopback_up(void)
{
    struct ifreq ifr;
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
    int rc = -1;

    if (fd < 0)
        return -1;
    memset(&ifr, 0, sizeof(ifr));
    memcpy(ifr.ifr_name, "lo", 3);
    if (ioctl(fd, SIOCGIFFLAGS, &ifr) == 0) {
        ifr.ifr_flags |= IFF_UP | IFF_RUNNING;
        rc = ioctl(fd, SIOCSIFFLAGS, &ifr);
    }
    close(fd);
    return rc;
}

/* close_range(2) of [lo, hi]; an empty range (keep fds side by side, as
 * two pipe2() calls usually give) is no error, where the kernel's EINVAL
 * would send us to the slow loop below. */
static int close_fds(unsigned lo, unsigned hi)
{
    return lo > hi ? 0 : (int)syscall(SYS_close_range, lo, hi, 0);
}

/* Closes every inherited descriptor but keep1 and keep2.  Helpers forked
 * concurrently by other pool threads would otherwise hold each other's pipe
 * ends open, and one waiting for end-of-file would wait forever. */
static void close_others(int keep1, int keep2)
{
    int a = keep1 < keep2 ? keep1 : keep2, b = keep1 < keep2 ? keep2 : keep1;

    if (close_fds(3, (unsigned)a - 1) == 0 && close_fds((unsigned)a + 1, (unsigned)b - 1) == 0 &&
        close_fds((unsigned)b + 1, ~0U) == 0)
        return;
    for (int fd = 3; fd < 4096; fd++)
        if (fd != a && fd != b)
            close(fd);
}

/* The helper's report: 0 ok, 1 unshare, 2 hostname, 3 loopback, 100+i the
 * i-th sysctl. */
static void __attribute__((noreturn)) ns_helper(const struct rt_pod_setup *s, int flags,
                                                int ready, int go)
{
    int status = 0;
    char c;

    close_others(ready, go);

    if (unshare(flags) < 0)
        status = 1;
    else if ((flags & CLONE_NEWUTS) && s->hostname != NULL &&
             sethostname(s->hostname, strlen(s->hostname)) < 0)
        status = 2;
    else if ((flags & CLONE_NEWNET) && child_loopback_up() < 0)
        status = 3;
    else {
        int r = child_write_sysctls(s);
        if (r < 0)
            status = 100 - r - 1;
    }
    if (write(ready, &status, sizeof(status)) != sizeof(status))
        _exit(1);
    /* Wait until the parent has pinned the namespaces (or gave up). */
    while (read(go, &c, 1) < 0 && errno == EINTR)
        ;
    _exit(0);
}

static int pin(pid_t pid, const char *type, const char *dir, const char *name, struct ag_err *err)
{
    char src[64], dst[PATH_MAX];
    int fd;

    snprintf(src, sizeof(src), "/proc/%d/ns/%s", (int)pid, type);
    if (join(dst, sizeof(dst), dir, name) < 0)
        return ag_err_set(err, -ENAMETOOLONG, "pod directory path too long");
    fd = open(dst, O_WRONLY | O_CREAT | O_CLOEXEC, 0444);
    if (fd < 0)
        return ag_err_set(err, -errno, "create %s: %s", dst, strerror(errno));
    close(fd);
    if (mount(src, dst, NULL, MS_BIND, NULL) < 0)
        return ag_err_set(err, -errno, "pin %s namespace: %s", type, strerror(errno));
    return 0;
}

static int helper_failure(const struct rt_pod_setup *s, int status, struct ag_err *err)
{
    if (status == 1)
        return ag_err_set(err, -EPERM, "create pod namespaces: unshare failed");
    if (status == 2)
        return ag_err_set(err, -EINVAL, "set hostname %s failed", s->hostname);
    if (status == 3)
        return ag_err_set(err, -EIO, "bring up loopback failed");
    return ag_err_set(err, -EINVAL, "set sysctl %s failed",
                      s->linux->sysctls[status - 100].key);
}

static int make_namespaces(const struct rt_pod_setup *s, int flags, struct ag_err *err)
{
    int ready[2], go[2], status = -1, rc = 0;
    pid_t pid;

    if (pipe2(ready, O_CLOEXEC) < 0)
        return ag_err_set(err, -errno, "pipe: %s", strerror(errno));
    if (pipe2(go, O_CLOEXEC) < 0) {
        close(ready[0]);
        close(ready[1]);
        return ag_err_set(err, -errno, "pipe: %s", strerror(errno));
    }
    pid = fork();
    if (pid == 0) {
        close(ready[0]);
        close(go[1]);
        ns_helper(s, flags, ready[1], go[0]);
    }
    close(ready[1]);
    close(go[0]);
    if (pid < 0) {
        rc = ag_err_set(err, -errno, "fork: %s", strerror(errno));
    } else if (read(ready[0], &status, sizeof(status)) != sizeof(status)) {
        rc = ag_err_set(err, -EIO, "pod namespace helper died");
    } else if (status != 0) {
        rc = helper_failure(s, status, err);
    } else {
        if (flags & CLONE_NEWNET)
            rc = pin(pid, "net", s->dir, RT_POD_NETNS, err);
        if (rc == 0 && (flags & CLONE_NEWUTS))
            rc = pin(pid, "uts", s->dir, RT_POD_UTSNS, err);
        if (rc == 0 && (flags & CLONE_NEWIPC))
            rc = pin(pid, "ipc", s->dir, RT_POD_IPCNS, err);
    }
    /* A byte (or end-of-file if the write fails) releases the helper. */
    if (write(go[1], "x", 1) < 0)
        ag_log(AG_DEBUG, "pod helper release failed errno=%d", errno);
    close(go[1]);
    close(ready[0]);
    if (pid > 0)
        while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
            ;
    return rc;
}

static int mount_shm(const char *dir, struct ag_err *err)
{
    char path[PATH_MAX];

    if (join(path, sizeof(path), dir, RT_POD_SHM) < 0)
        return ag_err_set(err, -ENAMETOOLONG, "pod directory path too long");
    if (mkdir(path, 01777) < 0 && errno != EEXIST)
        return ag_err_set(err, -errno, "mkdir %s: %s", path, strerror(errno));
    if (mount("shm", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, SHM_OPTS) < 0)
        return ag_err_set(err, -errno, "mount pod shm: %s", strerror(errno));
    return 0;
}

int rt_pod_create(const struct rt_pod_setup *s, struct ag_err *err)
{
    int flags = (s->host_network ? 0 : CLONE_NEWNET | CLONE_NEWUTS) |
                (s->host_ipc ? 0 : CLONE_NEWIPC);
    int rc;

    if ((rc = check_sysctls(s, flags, err)) < 0)
        return rc;
    if ((rc = ag_mkdir_p(s->dir, 0711)) < 0)
        return ag_err_set(err, rc, "create %s: %s", s->dir, strerror(-rc));
    rc = write_files(s, err);
    if (rc == 0 && flags != 0)
        rc = make_namespaces(s, flags, err);
    if (rc == 0 && !s->host_ipc)
        rc = mount_shm(s->dir, err);
    if (rc < 0) {
        struct ag_err undo;
        ag_err_init(&undo);
        if (rt_pod_remove(s->dir, &undo) < 0)
            ag_log(AG_WARN, "pod undo failed dir=%s err=\"%s\"", s->dir, undo.msg);
    }
    return rc;
}

int rt_pod_ns_path(const char *dir, const char *which, char *out, size_t out_len)
{
    struct stat st;
    int rc = join(out, out_len, dir, which);

    if (rc < 0)
        return rc;
    return stat(out, &st) == 0 ? 0 : -ENOENT;
}

/* nftw callback: removes files and empty directories, never crossing into
 * another file system (FTW_MOUNT), so a mount that failed to detach is
 * left alone instead of emptied. */
static int remove_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    if (type == FTW_DP)
        return rmdir(path) < 0 && errno != ENOENT ? -1 : 0;
    return unlink(path) < 0 && errno != ENOENT ? -1 : 0;
}

int rt_pod_remove(const char *dir, struct ag_err *err)
{
    static const char *const mounts[] = {RT_POD_NETNS, RT_POD_UTSNS, RT_POD_IPCNS, RT_POD_SHM};
    char path[PATH_MAX];
    struct stat st;

    if (stat(dir, &st) < 0 && errno == ENOENT)
        return 0;
    for (size_t i = 0; i < AG_ARRAY_LEN(mounts); i++) {
        if (join(path, sizeof(path), dir, mounts[i]) < 0)
            return ag_err_set(err, -ENAMETOOLONG, "pod directory path too long");
        /* Lazy: a process still using the namespace keeps it, not the pin. */
        if (umount2(path, MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
            return ag_err_set(err, -errno, "unmount %s: %s", path, strerror(errno));
    }
    if (nftw(dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS | FTW_MOUNT) < 0 && errno != ENOENT)
        return ag_err_set(err, -errno, "remove %s: %s", dir, strerror(errno));
    return 0;
}

/* ---- the infra process -------------------------------------------------------- */

int rt_pod_pause_start(const char *self_exe, const char *dir, pid_t *pid, struct ag_err *err)
{
    char pidfile[PATH_MAX];
    _cleanup_free_ char *data = NULL;
    int status = 0;
    pid_t child;

    if (join(pidfile, sizeof(pidfile), dir, "pause.pid") < 0)
        return ag_err_set(err, -ENAMETOOLONG, "pod directory path too long");
    unlink(pidfile);
    child = fork();
    if (child == 0) {
        int null = open("/dev/null", O_RDWR | O_CLOEXEC);
        if (null >= 0) {
            dup2(null, 0);
            dup2(null, 1);
            dup2(null, 2);
        }
        setsid();
        execl(self_exe, self_exe, "pause", "--dir", dir, (char *)NULL);
        _exit(127);
    }
    if (child < 0)
        return ag_err_set(err, -errno, "fork: %s", strerror(errno));
    while (waitpid(child, &status, 0) < 0 && errno == EINTR)
        ;
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        return ag_err_set(err, -EIO, "pod infra process failed to start (status %d)", status);
    if (ag_file_read(pidfile, 64, &data, NULL) < 0 || (*pid = (pid_t)atol(data)) <= 0)
        return ag_err_set(err, -EIO, "pod infra process wrote no pid");
    return 0;
}

bool rt_pod_pause_alive(pid_t pid)
{
    char path[64], buf[256];
    int fd;
    ssize_t n;

    snprintf(path, sizeof(path), "/proc/%d/cmdline", (int)pid);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    n = read(fd, buf, sizeof(buf) - 1);
    close(fd);
    if (n <= 0)
        return false;
    buf[n] = '\0';
    size_t first = strlen(buf);
    return (size_t)n > first + 1 && strcmp(buf + first + 1, "pause") == 0;
}

int rt_pod_pause_stop(pid_t pid)
{
    if (pid <= 0 || !rt_pod_pause_alive(pid))
        return 0;
    if (kill(pid, SIGKILL) < 0 && errno != ESRCH)
        return -errno;
    /* Not our child: poll until it is gone, at most 5 s. */
    for (int i = 0; i < 500 && rt_pod_pause_alive(pid); i++) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return rt_pod_pause_alive(pid) ? -ETIMEDOUT : 0;
}

static int join_ns(const char *dir, const char *name, int type)
{
    char path[PATH_MAX];
    int fd, rc;

    if (join(path, sizeof(path), dir, name) < 0)
        return -ENAMETOOLONG;
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? 0 : -errno; /* a host namespace: stay */
    rc = setns(fd, type) < 0 ? -errno : 0;
    close(fd);
    return rc;
}

/* PID 1 of the pod: reap orphans until told to stop. */
static int __attribute__((noreturn)) pause_loop(void)
{
    sigset_t all;

    prctl(PR_SET_NAME, "pause", 0, 0, 0);
    sigfillset(&all);
    sigprocmask(SIG_BLOCK, &all, NULL);
    for (;;) {
        siginfo_t si;
        if (sigwaitinfo(&all, &si) < 0)
            continue;
        if (si.si_signo == SIGTERM || si.si_signo == SIGINT)
            _exit(0);
        if (si.si_signo == SIGCHLD)
            while (waitpid(-1, NULL, WNOHANG) > 0)
                ;
    }
}

int rt_pause_main(int argc, char **argv)
{
    const char *dir = argc == 3 && strcmp(argv[1], "--dir") == 0 ? argv[2] : NULL;
    char pidfile[PATH_MAX], buf[32];

    if (dir == NULL) {
        fprintf(stderr, "usage: picocri pause --dir POD_DIR\n");
        return 2;
    }
    if (join_ns(dir, RT_POD_NETNS, CLONE_NEWNET) < 0 ||
        join_ns(dir, RT_POD_IPCNS, CLONE_NEWIPC) < 0 ||
        join_ns(dir, RT_POD_UTSNS, CLONE_NEWUTS) < 0 || unshare(CLONE_NEWPID) < 0)
        return 1;
    pid_t pid = fork();
    if (pid == 0)
        pause_loop();
    if (pid < 0 || join(pidfile, sizeof(pidfile), dir, "pause.pid") < 0)
        _exit(1);
    int n = snprintf(buf, sizeof(buf), "%d\n", (int)pid);
    /* _exit: this process unshared a PID namespace it is not in, so exit-time
     * machinery that forks (sanitizer leak checks) must not run here. */
    _exit(ag_file_write_atomic(pidfile, buf, (size_t)n, 0644) < 0 ? 1 : 0);
}
