/* agent/runtime: the process spec applied in the child before execve.
 *
 * Terminal (pty, master sent over the console socket with SCM_RIGHTS),
 * rlimits, oom_score_adj (clamped like containerd's restrict_oom_score_adj
 * when CAP_SYS_RESOURCE is missing), user, groups and the five capability
 * sets, and the lookup of args[0] in the container's PATH.
 * Invariant: runs only in a forked child (init or exec); it never returns
 * into the caller's process image, and every failure is reported with a
 * message (the child sends it to the parent over the sync socket).
 */
#include <fcntl.h>
#include <grp.h>
#include <limits.h>
#include <linux/capability.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <termios.h>

#include "rt_internal.h"

/* ---- terminal ---------------------------------------------------------------------- */

static int send_fd(int sock, int fd)
{
    char data = 'F';
    struct iovec iov = {.iov_base = &data, .iov_len = 1};
    union {
        char buf[CMSG_SPACE(sizeof(int))];
        struct cmsghdr align;
    } u;
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = u.buf,
                         .msg_controllen = sizeof(u.buf)};
    struct cmsghdr *c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(c), &fd, sizeof(int));
    return sendmsg(sock, &msg, MSG_NOSIGNAL) < 0 ? -errno : 0;
}

int rt__console_setup(int console_socket, const struct rt_process *p, struct ag_err *err)
{
    char name[64];
    int unlock = 0;
    if (console_socket < 0)
        return ag_err_set(err, -EINVAL, "process.terminal needs a console socket");
    _cleanup_close_ int master = open("/dev/ptmx", O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (master < 0)
        return ag_err_set(err, -errno, "open /dev/ptmx: %s", strerror(errno));
    if (ioctl(master, TIOCSPTLCK, &unlock) < 0 || ptsname_r(master, name, sizeof(name)) != 0)
        return ag_err_set(err, -errno, "unlock pty: %s", strerror(errno));
    _cleanup_close_ int slave = open(name, O_RDWR | O_NOCTTY | O_CLOEXEC);
    if (slave < 0)
        return ag_err_set(err, -errno, "open %s: %s", name, strerror(errno));
    if (p->cons_height && p->cons_width) {
        struct winsize ws = {.ws_row = (unsigned short)p->cons_height,
                             .ws_col = (unsigned short)p->cons_width};
        (void)ioctl(slave, TIOCSWINSZ, &ws);
    }
    /* /dev/console is the pty slave, as on a real system. */
    int cfd = open("/dev/console", O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (cfd >= 0) {
        close(cfd);
        if (mount(name, "/dev/console", NULL, MS_BIND, NULL) < 0)
            return ag_err_set(err, -errno, "bind %s on /dev/console: %s", name,
                              strerror(errno));
    }
    int rc = send_fd(console_socket, master);
    if (rc < 0)
        return ag_err_set(err, rc, "send pty master on console socket: %s", strerror(-rc));
    if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) < 0)
        return ag_err_set(err, -errno, "make pty the controlling terminal: %s",
                          strerror(errno));
    for (int i = 0; i < 3; i++)
        if (dup2(slave, i) < 0)
            return ag_err_set(err, -errno, "dup2 pty: %s", strerror(errno));
    return 0;
}

/* ---- resources of the process --------------------------------------------------------- */

static bool have_cap(int cap)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0)
        return false;
    return (d[cap / 32].effective >> (cap % 32)) & 1;
}

int rt__oom_score_adj_write(pid_t pid, int value, struct ag_err *err)
{
    char path[64], cur[16] = "0", buf[16];
    int fd;
    snprintf(path, sizeof(path), "/proc/%d/oom_score_adj", (int)pid);
    fd = open(path, O_RDWR | O_CLOEXEC);
    if (fd < 0)
        return ag_err_set(err, -errno, "open %s: %s", path, strerror(errno));
    ssize_t n = read(fd, cur, sizeof(cur) - 1);
    cur[n > 0 ? n : 0] = 0;
    int current = atoi(cur);
    /* Lowering needs CAP_SYS_RESOURCE: without it keep the current value,
     * never fail the container (containerd restrict_oom_score_adj). */
    if (value < current && !have_cap(CAP_SYS_RESOURCE))
        value = current;
    snprintf(buf, sizeof(buf), "%d", value);
    if (pwrite(fd, buf, strlen(buf), 0) < 0 && errno != EACCES && errno != EPERM) {
        int e = errno;
        close(fd);
        return ag_err_set(err, -e, "write %s: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

/* Applied while still privileged: rlimits (raising hard limits needs
 * CAP_SYS_RESOURCE, which the caller may lack: then only lower). */
int rt__process_prepare(const struct rt_process *p, struct ag_err *err)
{
    for (size_t i = 0; i < p->rlimits_count; i++) {
        struct rlimit rl = {(rlim_t)p->rlimits[i].soft, (rlim_t)p->rlimits[i].hard};
        if (setrlimit(p->rlimits[i].type, &rl) < 0)
            return ag_err_set(err, -errno, "setrlimit %d (%llu/%llu): %s", p->rlimits[i].type,
                              (unsigned long long)rl.rlim_cur, (unsigned long long)rl.rlim_max,
                              strerror(errno));
    }
    if (p->has_oom_score_adj && rt__oom_score_adj_write(getpid(), p->oom_score_adj, err) < 0)
        return err->code;
    if (p->has_umask)
        umask((mode_t)p->umask);
    return 0;
}

/* ---- identity and capabilities --------------------------------------------------------- */

static int last_cap(void)
{
    char buf[16] = "";
    int fd = open("/proc/sys/kernel/cap_last_cap", O_RDONLY | O_CLOEXEC);
    if (fd >= 0) {
        ssize_t n = read(fd, buf, sizeof(buf) - 1);
        buf[n > 0 ? n : 0] = 0;
        close(fd);
    }
    int v = atoi(buf);
    return v > 0 && v < 64 ? v : CAP_LAST_CAP;
}

static int set_caps(const struct rt_caps *c, struct ag_err *err)
{
    struct __user_cap_header_struct h = {_LINUX_CAPABILITY_VERSION_3, 0};
    struct __user_cap_data_struct d[2];
    if (syscall(SYS_capget, &h, d) < 0)
        return ag_err_set(err, -errno, "capget: %s", strerror(errno));
    /* Capabilities we do not hold cannot be granted: drop them from the
     * request instead of failing (runtime-spec: warn, don't fail). */
    uint64_t have = d[0].permitted | ((uint64_t)d[1].permitted << 32);
    uint64_t prm = c->permitted & have, eff = c->effective & prm, inh = c->inheritable;
    d[0].effective = (uint32_t)eff;
    d[1].effective = (uint32_t)(eff >> 32);
    d[0].permitted = (uint32_t)prm;
    d[1].permitted = (uint32_t)(prm >> 32);
    d[0].inheritable = (uint32_t)inh;
    d[1].inheritable = (uint32_t)(inh >> 32);
    if (syscall(SYS_capset, &h, d) < 0) {
        /* Inheritable bits outside the bounding set are refused: retry without. */
        d[0].inheritable = (uint32_t)(inh & prm);
        d[1].inheritable = (uint32_t)((inh & prm) >> 32);
        if (syscall(SYS_capset, &h, d) < 0)
            return ag_err_set(err, -errno, "capset: %s", strerror(errno));
    }
    (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0);
    for (int i = 0; i < 64; i++)
        if (((c->ambient & prm & inh) >> i) & 1)
            (void)prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, i, 0, 0);
    return 0;
}

int rt__process_creds(const struct rt_process *p, struct ag_err *err)
{
    int last = last_cap();
    if (p->has_caps) {
        for (int i = 0; i <= last; i++)
            if (!((p->caps.bounding >> i) & 1) && prctl(PR_CAPBSET_DROP, i, 0, 0, 0) < 0 &&
                errno != EINVAL)
                return ag_err_set(err, -errno, "drop bounding cap %d: %s", i, strerror(errno));
    }
    if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0)
        return ag_err_set(err, -errno, "keepcaps: %s", strerror(errno));
    /* With setgroups denied (user namespace) an empty list is not an error. */
    if (setgroups(p->gids_count, (const gid_t *)p->gids) < 0 &&
        (errno != EPERM || p->gids_count))
        return ag_err_set(err, -errno, "setgroups: %s", strerror(errno));
    if (syscall(SYS_setresgid, p->gid, p->gid, p->gid) < 0)
        return ag_err_set(err, -errno, "setresgid %u: %s (is the group mapped in the user "
                                       "namespace?)", p->gid, strerror(errno));
    if (syscall(SYS_setresuid, p->uid, p->uid, p->uid) < 0)
        return ag_err_set(err, -errno, "setresuid %u: %s (is the user mapped in the user "
                                       "namespace?)", p->uid, strerror(errno));
    if (prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0) < 0)
        return ag_err_set(err, -errno, "keepcaps: %s", strerror(errno));
    struct rt_caps none = {0};
    return set_caps(p->has_caps ? &p->caps : &none, err);
}

/* ---- executable lookup --------------------------------------------------------------- */

static const char *env_get(const struct rt_process *p, const char *key)
{
    size_t n = strlen(key);
    for (size_t i = 0; i < p->env_count; i++)
        if (!strncmp(p->env[i], key, n) && p->env[i][n] == '=')
            return p->env[i] + n + 1;
    return NULL;
}

int rt__process_find_exe(const struct rt_process *p, char **out, struct ag_err *err)
{
    const char *a0 = p->args[0];
    const char *path = env_get(p, "PATH");
    struct stat st;
    *out = NULL;
    if (strchr(a0, '/')) {
        if (stat(a0, &st) < 0 || !S_ISREG(st.st_mode))
            return ag_err_set(err, -ENOENT, "exec %.200s: no such file", a0);
        *out = strdup(a0);
        return *out ? 0 : -ENOMEM;
    }
    if (!path)
        path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
    for (const char *d = path; d;) {
        const char *c = strchr(d, ':');
        size_t n = c ? (size_t)(c - d) : strlen(d);
        char cand[PATH_MAX];
        if (snprintf(cand, sizeof(cand), "%.*s/%s", (int)n, n ? d : ".", a0) <
                (int)sizeof(cand) &&
            stat(cand, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 0111)) {
            *out = strdup(cand);
            return *out ? 0 : -ENOMEM;
        }
        d = c ? c + 1 : NULL;
    }
    return ag_err_set(err, -ENOENT, "exec %.200s: not found in PATH", a0);
}
