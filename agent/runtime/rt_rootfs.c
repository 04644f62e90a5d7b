/* agent/runtime: the container's root filesystem, built inside the init's
 * private mount namespace between fork and exec.
 *
 * Order: make "/" slave (or rootfsPropagation), bind the rootfs onto
 * itself, the config's mounts in order, devices and /dev symlinks,
 * pivot_root (MS_MOVE + chroot when the root is a ramdisk), then masked and
 * read-only paths and the read-only root.
 * Invariant: every mount target is resolved inside the rootfs without
 * following a symlink out of it: the path is walked component by component
 * (absolute links restart at the rootfs, a relative link that climbs above
 * it is refused with -EXDEV), then opened with openat2(RESOLVE_BENEATH |
 * RESOLVE_NO_SYMLINKS) and mounted through /proc/self/fd/N, so a swap of a
 * component for a symlink after the check fails instead of escaping.
 * Nothing is ever mounted in the caller's mount namespace.
 */
#include <fcntl.h>
#include <limits.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/vfs.h>

#include "rt_internal.h"

#ifndef AT_RECURSIVE
#define AT_RECURSIVE 0x8000
#endif

struct mount_attr_k {
    uint64_t attr_set, attr_clr, propagation, userns_fd;
};

static int rootfd = -1;

static int openat2_beneath(int dirfd, const char *path, int flags)
{
    struct open_how how = {
        .flags = (uint64_t)(flags | O_CLOEXEC),
        .resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS,
    };
    long fd = syscall(SYS_openat2, dirfd, path[0] ? path : ".", &how, sizeof(how));
    return fd < 0 ? -errno : (int)fd;
}

/* Appends component c (length n) to the normalised relative path rel. */
static int rel_push(char *rel, size_t len, const char *c, size_t n)
{
    size_t l = strlen(rel);
    if (l + n + 2 > len)
        return -ENAMETOOLONG;
    if (l)
        rel[l++] = '/';
    memcpy(rel + l, c, n);
    rel[l + n] = 0;
    return 0;
}

/* Resolves path inside the rootfs into a symlink-free relative path `rel`.
 * Missing trailing components are kept as they are (they will be created).
 * Returns -EXDEV when a relative symlink climbs out of the rootfs. */
static int resolve_in_root(const char *path, char *rel, size_t rel_len)
{
    char work[PATH_MAX * 2], link[PATH_MAX];
    int links = 0;
    bool missing = false;
    if (strlen(path) >= sizeof(work))
        return -ENAMETOOLONG;
    strcpy(work, path);
    rel[0] = 0;
    for (char *p = work; *p;) {
        while (*p == '/')
            p++;
        if (!*p)
            break;
        size_t n = strcspn(p, "/");
        char *next = p + n;
        if (n == 1 && p[0] == '.') {
            p = next;
            continue;
        }
        if (n == 2 && p[0] == '.' && p[1] == '.') {
            char *slash = strrchr(rel, '/');
            if (!rel[0])
                return -EXDEV;
            if (slash)
                *slash = 0;
            else
                rel[0] = 0;
            p = next;
            continue;
        }
        if (rel_push(rel, rel_len, p, n) < 0)
            return -ENAMETOOLONG;
        struct stat st;
        if (missing || fstatat(rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) < 0) {
            missing = true;
            p = next;
            continue;
        }
        if (!S_ISLNK(st.st_mode)) {
            p = next;
            continue;
        }
        if (++links > 40)
            return -ELOOP;
        ssize_t ln = readlinkat(rootfd, rel, link, sizeof(link) - 1);
        if (ln < 0)
            return -errno;
        link[ln] = 0;
        /* Drop the link's own name, then splice its target in front of the rest. */
        char *slash = strrchr(rel, '/');
        if (slash)
            *slash = 0;
        else
            rel[0] = 0;
        if (link[0] == '/')
            rel[0] = 0;
        char rest[PATH_MAX * 2];
        if ((size_t)snprintf(rest, sizeof(rest), "%s/%s", link, next) >= sizeof(rest))
            return -ENAMETOOLONG;
        strcpy(work, rest);
        p = work;
    }
    return 0;
}

/* Creates every missing component of rel (directories, and a file for the
 * last one when !dir), then returns an O_PATH fd of it. */
static int mkpath_open(const char *rel, bool dir, int mode)
{
    char buf[PATH_MAX];
    if (strlen(rel) >= sizeof(buf))
        return -ENAMETOOLONG;
    strcpy(buf, rel);
    for (char *p = buf; *p; p++) {
        if (*p != '/')
            continue;
        *p = 0;
        if (mkdirat(rootfd, buf, 0755) < 0 && errno != EEXIST)
            return -errno;
        *p = '/';
    }
    if (buf[0]) {
        if (dir) {
            if (mkdirat(rootfd, buf, 0755) < 0 && errno != EEXIST)
                return -errno;
        } else {
            int fd = openat(rootfd, buf, O_CREAT | O_WRONLY | O_CLOEXEC | O_NOFOLLOW, mode);
            if (fd < 0 && errno != EEXIST && errno != EISDIR && errno != ENXIO &&
                errno != ELOOP && errno != EACCES && errno != ETXTBSY)
                return -errno;
            if (fd >= 0)
                close(fd);
        }
    }
    return openat2_beneath(rootfd, buf, O_PATH);
}

static int open_target(const char *dest, bool dir, struct ag_err *err)
{
    char rel[PATH_MAX];
    int rc = resolve_in_root(dest, rel, sizeof(rel));
    if (rc == -EXDEV)
        return ag_err_set(err, rc, "mount target %.300s escapes the container root through a "
                                   "symlink", dest);
    if (rc < 0)
        return ag_err_set(err, rc, "resolve %.300s in rootfs: %s", dest, strerror(-rc));
    rc = mkpath_open(rel, dir, 0644);
    if (rc < 0)
        return ag_err_set(err, rc, "create mount target %.300s: %s", dest, strerror(-rc));
    return rc;
}

static void fd_path(int fd, char *buf, size_t len) { snprintf(buf, len, "/proc/self/fd/%d", fd); }

static int open_target(const char *dest, bool dir, struct ag_err *err);

/* v1: a tmpfs with one cgroup mount per hierarchy, as runc lays it out. */
static int mount_cgroup_v1(const struct rt_mount *m, const char *target, unsigned long flags,
                           struct ag_err *err)
{
    static const char *const ctrls[] = {"cpu", "cpuacct", "cpuset", "memory", "devices",
                                        "freezer", "blkio", "pids", "hugetlb", "name=systemd"};
    char dir[PATH_MAX], top[64];
    if (mount("tmpfs", target, "tmpfs", flags & ~(unsigned long)MS_RDONLY, "mode=755") < 0)
        return ag_err_set(err, -errno, "mount tmpfs for cgroup: %s", strerror(errno));
    /* The fd behind `target` is the directory under the new tmpfs: reopen. */
    _cleanup_close_ int fd = open_target(m->destination, true, err);
    if (fd < 0)
        return fd;
    fd_path(fd, top, sizeof(top));
    for (size_t i = 0; i < AG_ARRAY_LEN(ctrls); i++) {
        if (!rt__cgroup_v1_mount(ctrls[i]))
            continue;
        bool named = !strncmp(ctrls[i], "name=", 5);
        const char *name = named ? ctrls[i] + 5 : ctrls[i];
        if (mkdirat(fd, name, 0755) < 0 && errno != EEXIST)
            return ag_err_set(err, -errno, "mkdir cgroup/%s: %s", name, strerror(errno));
        snprintf(dir, sizeof(dir), "%s/%s", top, name);
        if (mount("cgroup", dir, "cgroup", flags, named ? "none,name=systemd" : ctrls[i]) < 0)
            return ag_err_set(err, -errno, "mount cgroup %s: %s", ctrls[i], strerror(errno));
    }
    if ((flags & MS_RDONLY) && mount(NULL, top, NULL, MS_REMOUNT | flags, "mode=755") < 0)
        return ag_err_set(err, -errno, "remount cgroup tmpfs ro: %s", strerror(errno));
    return 0;
}

static int mount_fs(const struct rt_mount *m, const char *target, struct ag_err *err)
{
    unsigned long flags = m->opts.flags & ~(unsigned long)MS_REMOUNT;
    if (!strcmp(m->type, "cgroup") || !strcmp(m->type, "cgroup2")) {
        struct statfs sfs;
        if (statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == 0x63677270)
            return mount("cgroup2", target, "cgroup2", flags, NULL) < 0
                       ? ag_err_set(err, -errno, "mount cgroup2: %s", strerror(errno))
                       : 0;
        return mount_cgroup_v1(m, target, flags, err);
    }
    if (mount(m->source ? m->source : m->type, target, m->type, flags, m->opts.data) == 0)
        return 0;
    /* sysfs needs its own network namespace in a user namespace: bind the host's. */
    if (!strcmp(m->type, "sysfs") && (errno == EPERM || errno == EACCES) &&
        mount("/sys", target, NULL, MS_BIND | MS_REC, NULL) == 0)
        return 0;
    return ag_err_set(err, -errno, "mount %s on %.300s: %s", m->type, m->destination,
                      strerror(errno));
}

static int mount_bind(const struct rt_mount *m, const char *target, struct ag_err *err)
{
    unsigned long f = MS_BIND | (m->opts.recursive ? MS_REC : 0);
    if (mount(m->source, target, NULL, f, NULL) < 0)
        return ag_err_set(err, -errno, "bind %.300s on %.300s: %s", m->source, m->destination,
                          strerror(errno));
    return 0;
}

static unsigned long bind_flags(const struct rt_mount *m)
{
    return m->opts.flags &
           (MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC | MS_NOATIME | MS_NODIRATIME | MS_RELATIME);
}

/* The kernel ignores flags on the first bind: remount to apply them, keeping
 * flags locked by a user namespace.  target must name the new mount itself
 * (a path opened after the bind), not the file it covers. */
static int bind_apply_flags(const struct rt_mount *m, const char *target, struct ag_err *err)
{
    unsigned long want = bind_flags(m);

    if (mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | want, NULL) < 0) {
        struct statfs sfs;
        if (statfs(target, &sfs) < 0 ||
            mount(NULL, target, NULL, MS_REMOUNT | MS_BIND | want | (unsigned long)sfs.f_flags,
                  NULL) < 0)
            return ag_err_set(err, -errno, "remount %.300s: %s", m->destination,
                              strerror(errno));
    }
    return 0;
}

static int do_mount(const struct rt_mount *m, struct ag_err *err)
{
    struct stat st;
    bool dir = true;
    char target[64];
    if (m->opts.tmpcopyup || m->opts.idmap)
        return ag_err_set(err, -ENOTSUP, "mount %.300s: tmpcopyup/idmap options are not "
                                         "supported", m->destination);
    if (m->opts.bind) {
        if (stat(m->source, &st) < 0)
            return ag_err_set(err, -errno, "bind source %.300s: %s", m->source,
                              strerror(errno));
        dir = S_ISDIR(st.st_mode);
    }
    _cleanup_close_ int fd = open_target(m->destination, dir, err);
    if (fd < 0)
        return fd;
    fd_path(fd, target, sizeof(target));
    if ((m->opts.bind ? mount_bind(m, target, err) : mount_fs(m, target, err)) < 0)
        return err->code;
    bool flags = m->opts.bind && bind_flags(m) != 0;
    if (flags || m->opts.propagation || m->opts.attr_set || m->opts.attr_clr) {
        /* The new mount sits on top of the O_PATH fd's: reopen. */
        _cleanup_close_ int fd2 = open_target(m->destination, dir, err);
        if (fd2 < 0)
            return fd2;
        fd_path(fd2, target, sizeof(target));
        if (flags && bind_apply_flags(m, target, err) < 0)
            return err->code;
        if (m->opts.propagation && mount(NULL, target, NULL, m->opts.propagation, NULL) < 0)
            return ag_err_set(err, -errno, "propagation of %.300s: %s", m->destination,
                              strerror(errno));
        if (m->opts.attr_set || m->opts.attr_clr) {
            struct mount_attr_k a = {m->opts.attr_set, m->opts.attr_clr, 0, 0};
            if (syscall(SYS_mount_setattr, fd2, "", AT_EMPTY_PATH | AT_RECURSIVE, &a,
                        sizeof(a)) < 0)
                return ag_err_set(err, -errno, "mount_setattr %.300s: %s", m->destination,
                                  strerror(errno));
        }
    }
    return 0;
}

/* ---- devices ------------------------------------------------------------------------ */

static const struct rt_device default_devices[] = {
    {'c', (char *)"/dev/null", 1, 3, 0666, 0, 0},    {'c', (char *)"/dev/zero", 1, 5, 0666, 0, 0},
    {'c', (char *)"/dev/full", 1, 7, 0666, 0, 0},    {'c', (char *)"/dev/random", 1, 8, 0666, 0, 0},
    {'c', (char *)"/dev/urandom", 1, 9, 0666, 0, 0}, {'c', (char *)"/dev/tty", 5, 0, 0666, 0, 0},
};

static int make_device(const struct rt_device *d, bool userns, bool configured,
                       struct ag_err *err)
{
    char rel[PATH_MAX], target[64];
    struct stat st;
    mode_t type = d->type == 'b' ? S_IFBLK : d->type == 'p' ? S_IFIFO : S_IFCHR;
    dev_t rdev = makedev((unsigned)d->major, (unsigned)d->minor);
    int rc = resolve_in_root(d->path, rel, sizeof(rel));
    if (rc < 0)
        return ag_err_set(err, rc, "device %.300s: %s", d->path, strerror(-rc));
    if (fstatat(rootfd, rel, &st, AT_SYMLINK_NOFOLLOW) == 0) {
        if ((st.st_mode & S_IFMT) == type && (type == S_IFIFO || st.st_rdev == rdev))
            return 0;
        if (configured && !S_ISREG(st.st_mode))
            return ag_err_set(err, -EEXIST, "device %.300s: exists and does not match",
                              d->path);
        if (unlinkat(rootfd, rel, 0) < 0)
            return ag_err_set(err, -errno, "device %.300s: %s", d->path, strerror(errno));
    }
    _cleanup_close_ int dirfd = -1;
    char *slash = strrchr(rel, '/');
    if (slash) {
        *slash = 0;
        dirfd = mkpath_open(rel, true, 0755);
        *slash = '/';
        if (dirfd < 0)
            return ag_err_set(err, dirfd, "device dir for %.300s: %s", d->path,
                              strerror(-dirfd));
    }
    if (!userns && mknodat(rootfd, rel, type | (d->file_mode & 07777), rdev) < 0 &&
        errno != EPERM)
        return ag_err_set(err, -errno, "mknod %.300s: %s", d->path, strerror(errno));
    if (!userns && faccessat(rootfd, rel, F_OK, AT_SYMLINK_NOFOLLOW) == 0) {
        if (fchownat(rootfd, rel, d->uid, d->gid, AT_SYMLINK_NOFOLLOW) < 0 ||
            fchmodat(rootfd, rel, d->file_mode & 07777, 0) < 0)
            return ag_err_set(err, -errno, "chown/chmod %.300s: %s", d->path, strerror(errno));
        return 0;
    }
    /* In a user namespace (or under a device cgroup that denies mknod) the
     * node cannot be made: bind the host's instead. */
    _cleanup_close_ int fd = mkpath_open(rel, false, 0);
    if (fd < 0)
        return ag_err_set(err, fd, "device %.300s: %s", d->path, strerror(-fd));
    fd_path(fd, target, sizeof(target));
    if (mount(d->path, target, NULL, MS_BIND, NULL) < 0)
        return ag_err_set(err, -errno, "bind device %.300s: %s", d->path, strerror(errno));
    return 0;
}

static int make_devices(const struct rt_spec *s, struct ag_err *err)
{
    static const char *const links[][2] = {
        {"/proc/self/fd", "dev/fd"},         {"/proc/self/fd/0", "dev/stdin"},
        {"/proc/self/fd/1", "dev/stdout"},   {"/proc/self/fd/2", "dev/stderr"},
        {"pts/ptmx", "dev/ptmx"},
    };
    bool userns = s->ns[RT_NS_USER].enabled;
    struct stat st;
    for (size_t i = 0; i < AG_ARRAY_LEN(default_devices); i++)
        if (make_device(&default_devices[i], userns, false, err) < 0)
            return err->code;
    for (size_t i = 0; i < s->devices_count; i++)
        if (make_device(&s->devices[i], userns, true, err) < 0)
            return err->code;
    if (fstatat(rootfd, "dev", &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode))
        return 0;
    for (size_t i = 0; i < AG_ARRAY_LEN(links); i++) {
        if (i == 4) {
            /* /dev/ptmx must reach the container's devpts instance. */
            if (fstatat(rootfd, "dev/pts/ptmx", &st, 0) < 0)
                continue;
            (void)unlinkat(rootfd, links[i][1], 0);
        }
        if (symlinkat(links[i][0], rootfd, links[i][1]) < 0 && errno != EEXIST)
            return ag_err_set(err, -errno, "symlink /%s: %s", links[i][1], strerror(errno));
    }
    return 0;
}

/* ---- entry points --------------------------------------------------------------- */

int rt__rootfs_setup(const struct rt_spec *s, struct ag_err *err)
{
    unsigned long prop = s->rootfs_propagation ? s->rootfs_propagation : MS_SLAVE | MS_REC;
    if (mount(NULL, "/", NULL, prop, NULL) < 0)
        return ag_err_set(err, -errno, "make / %s: %s", "rslave", strerror(errno));
    if (mount(s->root_path, s->root_path, NULL, MS_BIND | MS_REC, NULL) < 0)
        return ag_err_set(err, -errno, "bind rootfs %.300s: %s", s->root_path, strerror(errno));
    rootfd = open(s->root_path, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (rootfd < 0)
        return ag_err_set(err, -errno, "open rootfs: %s", strerror(errno));
    for (size_t i = 0; i < s->mounts_count; i++)
        if (do_mount(&s->mounts[i], err) < 0)
            return err->code;
    return make_devices(s, err);
}

int rt__rootfs_pivot(const struct rt_spec *s, struct ag_err *err)
{
    if (chdir(s->root_path) < 0)
        return ag_err_set(err, -errno, "chdir rootfs: %s", strerror(errno));
    if (syscall(SYS_pivot_root, ".", ".") == 0) {
        /* The old root is stacked under the new one: detach it without
         * propagating the unmount to the host. */
        if (mount(NULL, ".", NULL, MS_SLAVE | MS_REC, NULL) < 0 ||
            umount2(".", MNT_DETACH) < 0)
            return ag_err_set(err, -errno, "detach old root: %s", strerror(errno));
    } else if (errno == EINVAL) {
        /* Ramdisk root (initramfs): pivot_root is refused; move and chroot. */
        if (mount(s->root_path, "/", NULL, MS_MOVE, NULL) < 0 || chroot(".") < 0)
            return ag_err_set(err, -errno, "move rootfs: %s", strerror(errno));
    } else
        return ag_err_set(err, -errno, "pivot_root: %s", strerror(errno));
    if (chdir("/") < 0)
        return ag_err_set(err, -errno, "chdir /: %s", strerror(errno));
    if (rootfd >= 0)
        close(rootfd);
    rootfd = open("/", O_PATH | O_DIRECTORY | O_CLOEXEC);
    return rootfd < 0 ? ag_err_set(err, -errno, "open /: %s", strerror(errno)) : 0;
}

static int mask_path(const char *path, struct ag_err *err)
{
    struct stat st;
    if (stat(path, &st) < 0)
        return errno == ENOENT ? 0 : ag_err_set(err, -errno, "mask %.300s: %s", path,
                                                strerror(errno));
    int rc = S_ISDIR(st.st_mode) ? mount("tmpfs", path, "tmpfs", MS_RDONLY, "size=0k")
                                 : mount("/dev/null", path, NULL, MS_BIND, NULL);
    if (rc < 0 && errno != ENOENT)
        return ag_err_set(err, -errno, "mask %.300s: %s", path, strerror(errno));
    return 0;
}

static int readonly_path(const char *path, struct ag_err *err)
{
    if (mount(path, path, NULL, MS_BIND | MS_REC, NULL) < 0)
        return errno == ENOENT ? 0 : ag_err_set(err, -errno, "bind %.300s: %s", path,
                                                strerror(errno));
    if (mount(NULL, path, NULL,
              MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, NULL) < 0)
        return ag_err_set(err, -errno, "remount ro %.300s: %s", path, strerror(errno));
    return 0;
}

static int write_sysctl(const char *key, const char *value, struct ag_err *err)
{
    char path[PATH_MAX];
    int n = snprintf(path, sizeof(path), "/proc/sys/%s", key);
    if (n < 0 || (size_t)n >= sizeof(path))
        return ag_err_set(err, -ENAMETOOLONG, "sysctl key too long");
    for (char *p = path + 10; *p; p++)
        if (*p == '.')
            *p = '/';
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, value, strlen(value)) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return ag_err_set(err, -e, "sysctl %.200s: %s", key, strerror(e));
    }
    close(fd);
    return 0;
}

int rt__rootfs_finish(const struct rt_spec *s, struct ag_err *err)
{
    /* sysctls first: /proc/sys is usually among the read-only paths. */
    for (size_t i = 0; i < s->sysctl_count; i++)
        if (write_sysctl(s->sysctl[i].key, s->sysctl[i].value, err) < 0)
            return err->code;
    for (size_t i = 0; i < s->masked_count; i++)
        if (mask_path(s->masked_paths[i], err) < 0)
            return err->code;
    for (size_t i = 0; i < s->readonly_count; i++)
        if (readonly_path(s->readonly_paths[i], err) < 0)
            return err->code;
    if (s->root_readonly &&
        mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY, NULL) < 0) {
        struct statfs sfs;
        if (statfs("/", &sfs) < 0 ||
            mount(NULL, "/", NULL, MS_REMOUNT | MS_BIND | MS_RDONLY | (unsigned long)sfs.f_flags,
                  NULL) < 0)
            return ag_err_set(err, -errno, "remount / read-only: %s", strerror(errno));
    }
    if (rootfd >= 0) {
        close(rootfd);
        rootfd = -1;
    }
    return 0;
}
