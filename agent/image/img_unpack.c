/* agent/image: applies one layer to a directory that becomes an overlayfs
 * lower dir.  Compressed bytes in (img_unpack_feed), through the
 * decompressor and the tar reader, out to the filesystem.  Whiteouts become
 * overlay whiteouts (char 0/0, or the xattr form), opaque markers become the
 * overlay opaque xattr.  Blocking: runs on the thread pool.
 * Invariant: nothing is created, changed or removed outside the layer
 * directory.  Entry paths are cleaned lexically (absolute paths and ".."
 * refused), parents are opened beneath the layer root with openat2
 * (RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS|RESOLVE_NO_SYMLINKS) or an O_NOFOLLOW
 * walk, and the last component is only ever touched with *at() calls that do
 * not follow it.  Any violation fails the whole layer. */
#include "image/image.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#define DEFAULT_MAX_ENTRIES 1000000
/* Large files: start writeback every WRITEBACK_STEP bytes so the layer's
 * final sync finds little left to write. */
#define WRITEBACK_STEP (8u << 20)
#define DEFERRED_BYTES_MAX (64u << 20)
#define WHITEOUT_PREFIX ".wh."
#define OPAQUE_NAME ".wh..wh..opq"

struct deferred_dir {
    char *path;
    uint32_t mode;
    struct timespec mtime;
};

struct saved_xattr {
    char *name;
    uint8_t *value;
    size_t len;
};

struct img_unpack {
    int root_fd;
    /* Parent directory of the last regular file, reused by the next one in
     * the same directory (tars list a directory's files together).  Only
     * regular-file entries keep it: any other entry can change the tree. */
    int parent_fd;
    char parent[IMG_TAR_PATH_MAX + 1];
    uid_t euid;
    gid_t egid;
    mode_t umask; /* the process umask, or 0777 when unknown (always chmod) */
    struct img_unpack_opts opts;
    char expected[IMG_DIGEST_MAX];
    bool priv;
    bool no_openat2;
    bool failed, finished;
    struct img_decomp *dec;
    struct img_tar *tar;
    /* the regular file being written */
    int file_fd;
    char cur[IMG_TAR_PATH_MAX + 1];
    uint32_t cur_mode, cur_uid, cur_gid;
    uint64_t cur_written, cur_flushed;
    struct timespec cur_mtime;
    struct saved_xattr *cur_xattrs;
    size_t cur_xattrs_count;
    /* directories whose mode and mtime are set at the end */
    struct deferred_dir *dirs;
    size_t dirs_count, dirs_cap, dirs_bytes;
    size_t warnings;
    char first_warning[256];
};

/* ---- helpers ------------------------------------------------------------------ */

static void warn(struct img_unpack *u, const char *fmt, ...) AG_PRINTF(2, 3);
static void warn(struct img_unpack *u, const char *fmt, ...)
{
    va_list ap;

    if (u->warnings++ == 0) {
        va_start(ap, fmt);
        vsnprintf(u->first_warning, sizeof(u->first_warning), fmt, ap);
        va_end(ap);
    }
}

static int fail_entry(struct ag_err *err, int code, const char *path, const char *what)
{
    char esc[160];

    ag_str_escape(esc, sizeof(esc), path, 128);
    return ag_err_set(err, code, "layer entry \"%s\": %s", esc, what);
}

static int fail_errno(struct ag_err *err, int code, const char *path, const char *op)
{
    char esc[160];

    ag_str_escape(esc, sizeof(esc), path, 128);
    return ag_err_set(err, code, "layer entry \"%s\": %s: %s", esc, op, strerror(-code));
}

/* Lexical cleaning: drops "" and "." components, refuses absolute paths and
 * "..".  An empty result means the layer root itself. */
static int clean_path(const char *in, char *out, struct ag_err *err)
{
    size_t o = 0;
    const char *p = in;

    if (in[0] == '/')
        return fail_entry(err, -EPERM, in, "absolute path refused");
    while (*p) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (n == 2 && p[0] == '.' && p[1] == '.')
            return fail_entry(err, -EPERM, in, "\"..\" component refused");
        if (n > 255)
            return fail_entry(err, -ENAMETOOLONG, in, "name component too long");
        if (n > 0 && !(n == 1 && p[0] == '.')) {
            if (o > 0)
                out[o++] = '/';
            memcpy(out + o, p, n);
            o += n;
        }
        p += n;
        if (*p == '/')
            p++;
    }
    out[o] = '\0';
    return 0;
}

/* Splits a cleaned path into parent (in place) and base name. */
static const char *split_base(char *path)
{
    char *slash = strrchr(path, '/');

    if (slash == NULL)
        return NULL;
    *slash = '\0';
    return slash + 1;
}

/* Walks dir beneath root one component at a time without following
 * symlinks, creating missing directories when create is set. */
static int walk_dir(int root_fd, const char *dir, bool create, int *out)
{
    char buf[IMG_TAR_PATH_MAX + 1];
    char *save = NULL;
    int fd = openat(root_fd, ".", O_PATH | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    snprintf(buf, sizeof(buf), "%s", dir);
    for (char *c = strtok_r(buf, "/", &save); c; c = strtok_r(NULL, "/", &save)) {
        int next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        if (next < 0 && errno == ENOENT && create) {
            if (mkdirat(fd, c, 0755) < 0 && errno != EEXIST) {
                int e = -errno;
                close(fd);
                return e;
            }
            next = openat(fd, c, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
        }
        if (next < 0) {
            /* A symlink component gives ENOTDIR here (O_NOFOLLOW|O_DIRECTORY). */
            int e = -errno;
            close(fd);
            return e;
        }
        close(fd);
        fd = next;
    }
    *out = fd;
    return 0;
}

/* Opens dir ("" = root) beneath the layer root as an O_PATH fd.  Symlinks
 * anywhere on the way are refused (-ELOOP). */
static int open_dir(struct img_unpack *u, const char *dir, bool create, int *out)
{
    struct open_how how = {
        .flags = O_PATH | O_DIRECTORY | O_CLOEXEC,
        .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_SYMLINKS,
    };
    int fd;

    if (dir[0] == '\0')
        dir = ".";
    if (!u->no_openat2) {
        fd = (int)syscall(SYS_openat2, u->root_fd, dir, &how, sizeof(how));
        if (fd >= 0) {
            *out = fd;
            return 0;
        }
        if (errno == ENOSYS)
            u->no_openat2 = true;
        else if (errno != ENOENT || !create)
            return -errno;
    }
    /* Missing parents (tars may omit directory entries) or no openat2. */
    return walk_dir(u->root_fd, dir, create, out);
}

static int open_parent(struct img_unpack *u, const char *path, char *dirbuf, const char **base,
                       int *out, bool create, struct ag_err *err)
{
    int rc;

    strcpy(dirbuf, path);
    *base = split_base(dirbuf);
    if (*base == NULL) {
        *base = path;
        dirbuf[0] = '\0';
    }
    rc = open_dir(u, dirbuf, create, out);
    if (rc == -ELOOP || rc == -EXDEV)
        return fail_entry(err, -EPERM, path, "a parent directory is a symlink (refused)");
    if (rc == -ENOTDIR)
        return fail_entry(err, -EPERM, path,
                          "a parent is not a directory or is a symlink (refused)");
    if (rc < 0)
        return fail_errno(err, rc, path, "open parent");
    return 0;
}

/* Removes name under dir_fd recursively, never following symlinks. */
static int remove_tree_at(int dir_fd, const char *name, int depth)
{
    struct stat st;
    DIR *d;
    struct dirent *de;
    int fd, rc = 0;

    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dir_fd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    if (depth > IMG_TAR_PATH_MAX / 2)
        return -ELOOP;
    fd = openat(dir_fd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    d = fdopendir(fd);
    if (d == NULL) {
        close(fd);
        return -ENOMEM;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = remove_tree_at(dirfd(d), de->d_name, depth + 1);
    }
    closedir(d);
    if (rc == 0 && unlinkat(dir_fd, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = -errno;
    return rc;
}

/* ---- attributes -------------------------------------------------------------- */

static bool overlay_xattr(const char *name)
{
    return strncmp(name, "trusted.overlay.", 16) == 0 || strncmp(name, "user.overlay.", 13) == 0;
}

/* Sets one xattr on fd (when >= 0) or on dir_fd/name without following it. */
static int set_xattr(struct img_unpack *u, int fd, int dir_fd, const char *name, const char *path,
                     const char *key, const void *val, size_t len, struct ag_err *err)
{
    bool privileged_ns = strncmp(key, "trusted.", 8) == 0 || strncmp(key, "security.", 9) == 0;
    char proc[64];
    int r;

    if (overlay_xattr(key)) {
        /* A layer must not forge overlayfs metadata (redirect, metacopy...). */
        warn(u, "entry %.128s: overlay xattr %.64s ignored", path, key);
        return 0;
    }
    if (privileged_ns && !u->priv) {
        warn(u, "entry %.128s: xattr %.64s skipped (not permitted)", path, key);
        return 0;
    }
    if (fd >= 0) {
        r = fsetxattr(fd, key, val, len, 0);
    } else {
        snprintf(proc, sizeof(proc), "/proc/self/fd/%d/", dir_fd);
        char full[IMG_TAR_PATH_MAX + 80];
        snprintf(full, sizeof(full), "%s%s", proc, name);
        r = lsetxattr(full, key, val, len, 0);
    }
    if (r < 0) {
        if (errno == EPERM || errno == ENOTSUP || errno == EACCES) {
            warn(u, "entry %.128s: xattr %.64s skipped (%s)", path, key, strerror(errno));
            return 0;
        }
        return fail_errno(err, -errno, path, "setxattr");
    }
    return 0;
}

static int set_owner(struct img_unpack *u, int dir_fd, const char *name, const char *path,
                     uint32_t uid, uint32_t gid, struct ag_err *err)
{
    if (!u->priv)
        return 0;
    if (fchownat(dir_fd, name, uid, gid, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == EPERM || errno == EINVAL) {
            warn(u, "entry %.128s: ownership %u:%u not applied (%s)", path, uid, gid,
                 strerror(errno));
            return 0;
        }
        return fail_errno(err, -errno, path, "chown");
    }
    return 0;
}

static int set_times(int dir_fd, const char *name, const struct timespec *mtime, const char *path,
                     struct ag_err *err)
{
    struct timespec ts[2] = {*mtime, *mtime};

    if (utimensat(dir_fd, name, ts, AT_SYMLINK_NOFOLLOW) < 0)
        return fail_errno(err, -errno, path, "utimensat");
    return 0;
}

/* Removes whatever is at dir_fd/name unless both it and the entry are dirs.
 * Returns 1 when an existing directory is kept. */
static int prepare_slot(int dir_fd, const char *name, bool entry_is_dir, const char *path,
                        struct ag_err *err)
{
    struct stat st;
    int rc;

    if (fstatat(dir_fd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : fail_errno(err, -errno, path, "stat");
    if (entry_is_dir && S_ISDIR(st.st_mode))
        return 1;
    rc = remove_tree_at(dir_fd, name, 0);
    return rc < 0 ? fail_errno(err, rc, path, "replace existing") : 0;
}

static int defer_dir(struct img_unpack *u, const char *path, const struct img_tar_entry *e,
                     struct ag_err *err)
{
    size_t n = strlen(path) + 1;

    if (u->dirs_bytes + n > DEFERRED_BYTES_MAX)
        return ag_err_set(err, -EFBIG, "layer has too many directories");
    if (u->dirs_count == u->dirs_cap) {
        size_t cap = u->dirs_cap ? u->dirs_cap * 2 : 64;
        struct deferred_dir *d = realloc(u->dirs, cap * sizeof(*d));
        if (d == NULL)
            return ag_err_set(err, -ENOMEM, "out of memory");
        u->dirs = d;
        u->dirs_cap = cap;
    }
    struct deferred_dir *d = &u->dirs[u->dirs_count];
    d->path = strdup(path);
    if (d->path == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    d->mode = e->mode;
    d->mtime.tv_sec = e->mtime_sec;
    d->mtime.tv_nsec = e->mtime_nsec;
    u->dirs_count++;
    u->dirs_bytes += n;
    return 0;
}

/* ---- whiteouts ------------------------------------------------------------------ */

static const char *ovl_xattr(const struct img_unpack *u, const char *what, char *buf, size_t n)
{
    snprintf(buf, n, "%s.overlay.%s", (u->opts.flags & IMG_UNPACK_USERXATTR) ? "user" : "trusted",
             what);
    return buf;
}

static bool can_trusted(const struct img_unpack *u)
{
    return (u->opts.flags & IMG_UNPACK_USERXATTR) || u->priv;
}

static int set_opaque(struct img_unpack *u, const char *dir, const char *path, char value,
                      struct ag_err *err)
{
    char key[48], cur = 0;
    int dfd, fd;
    int rc = open_dir(u, dir, true, &dfd);

    if (rc < 0)
        return fail_errno(err, rc, path, "open directory");
    /* Reopen for fsetxattr (O_PATH fds cannot carry xattrs). */
    fd = openat(dfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    close(dfd);
    if (fd < 0)
        return fail_errno(err, -errno, path, "open directory");
    ovl_xattr(u, "opaque", key, sizeof(key));
    /* "y" (opaque) wins over "x" (only has xattr whiteouts). */
    if (value == 'x' && fgetxattr(fd, key, &cur, 1) == 1 && cur == 'y') {
        close(fd);
        return 0;
    }
    rc = can_trusted(u) ? fsetxattr(fd, key, &value, 1, 0) : -1;
    if (rc < 0) {
        int e = can_trusted(u) ? -errno : -EPERM;
        close(fd);
        return fail_errno(err, e, path,
                          "cannot set the overlay opaque xattr (needs root, or rootless "
                          "userxattr mode)");
    }
    close(fd);
    return 0;
}

/* ".wh.<name>": an overlay whiteout for <name>, unless this layer already
 * put something there (whiteouts only hide lower layers). */
static int do_whiteout(struct img_unpack *u, const char *path, char *dirbuf, const char *base,
                       int dir_fd, struct ag_err *err)
{
    const char *target = base + strlen(WHITEOUT_PREFIX);
    char key[48];
    struct stat st;
    int fd;

    if (*target == '\0' || strcmp(target, ".") == 0 || strcmp(target, "..") == 0)
        return fail_entry(err, -EINVAL, path, "invalid whiteout name");
    if (fstatat(dir_fd, target, &st, AT_SYMLINK_NOFOLLOW) == 0)
        return 0;
    if (u->priv && !(u->opts.flags & IMG_UNPACK_USERXATTR)) {
        if (mknodat(dir_fd, target, S_IFCHR | 0, makedev(0, 0)) == 0)
            return 0;
        if (errno != EPERM)
            return fail_errno(err, -errno, path, "mknod whiteout");
    }
    if (!can_trusted(u))
        return fail_entry(err, -EPERM, path,
                          "whiteout needs root (mknod 0/0 or trusted.overlay xattrs) or "
                          "rootless userxattr mode");
    /* The xattr form: an empty file with overlay.whiteout, inside a
     * directory marked overlay.opaque=x (Linux 6.7+ overlayfs). */
    fd = openat(dir_fd, target, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
    if (fd < 0)
        return fail_errno(err, -errno, path, "create whiteout");
    if (fsetxattr(fd, ovl_xattr(u, "whiteout", key, sizeof(key)), "y", 1, 0) < 0) {
        int e = -errno;
        close(fd);
        unlinkat(dir_fd, target, 0);
        return fail_errno(err, e, path, "set the overlay whiteout xattr");
    }
    close(fd);
    return set_opaque(u, dirbuf, path, 'x', err);
}

/* ---- entries -------------------------------------------------------------------- */

static int apply_common(struct img_unpack *u, const struct img_tar_entry *e, int dir_fd,
                        const char *base, const char *path, bool is_dir, struct ag_err *err)
{
    struct timespec mt = {e->mtime_sec, e->mtime_nsec};
    int rc;

    if ((rc = set_owner(u, dir_fd, base, path, e->uid, e->gid, err)) < 0)
        return rc;
    if (e->type != IMG_TAR_SYMLINK && !is_dir && fchmodat(dir_fd, base, e->mode, 0) < 0)
        return fail_errno(err, -errno, path, "chmod");
    for (size_t i = 0; i < e->xattrs_count; i++) {
        if ((rc = set_xattr(u, -1, dir_fd, base, path, e->xattrs[i].name, e->xattrs[i].value,
                            e->xattrs[i].value_len, err)) < 0)
            return rc;
    }
    if (is_dir)
        return defer_dir(u, path, e, err);
    return set_times(dir_fd, base, &mt, path, err);
}

static int make_hardlink(struct img_unpack *u, const struct img_tar_entry *e, int dir_fd,
                         const char *base, const char *path, struct ag_err *err)
{
    char target[IMG_TAR_PATH_MAX + 1], tdir[IMG_TAR_PATH_MAX + 1];
    const char *tbase;
    struct stat st;
    int tfd, rc;

    if (e->linkname[0] == '\0')
        return fail_entry(err, -EINVAL, path, "hardlink without a target");
    if ((rc = clean_path(e->linkname, target, err)) < 0)
        return ag_err_wrap(err, "hardlink \"%.128s\" target", path);
    if (target[0] == '\0')
        return fail_entry(err, -EPERM, path, "hardlink to the layer root refused");
    if ((rc = open_parent(u, target, tdir, &tbase, &tfd, false, err)) < 0)
        return ag_err_wrap(err, "hardlink \"%.128s\" target", path);
    if (fstatat(tfd, tbase, &st, AT_SYMLINK_NOFOLLOW) < 0 || S_ISDIR(st.st_mode)) {
        char esc[160];
        close(tfd);
        ag_str_escape(esc, sizeof(esc), target, 128);
        rc = fail_entry(err, -EPERM, path, "hardlink target is not a file earlier in this layer");
        return ag_err_wrap(err, "hardlink to \"%s\" refused", esc);
    }
    if (strcmp(target, path) == 0) {
        close(tfd);
        return 0;
    }
    if ((rc = prepare_slot(dir_fd, base, false, path, err)) < 0) {
        close(tfd);
        return rc;
    }
    rc = linkat(tfd, tbase, dir_fd, base, 0) < 0 ? -errno : 0;
    close(tfd);
    return rc < 0 ? fail_errno(err, rc, path, "link") : 0;
}

static int make_node(struct img_unpack *u, const struct img_tar_entry *e, int dir_fd,
                     const char *base, const char *path, struct ag_err *err)
{
    mode_t type = e->type == IMG_TAR_CHR ? S_IFCHR : e->type == IMG_TAR_BLK ? S_IFBLK : S_IFIFO;

    if (type != S_IFIFO && !u->priv) {
        warn(u, "entry %.128s: device node skipped (not permitted)", path);
        return 1;
    }
    if (mknodat(dir_fd, base, type | 0600, makedev(e->dev_major, e->dev_minor)) < 0) {
        if (errno == EPERM && type != S_IFIFO) {
            warn(u, "entry %.128s: device node skipped (%s)", path, strerror(errno));
            return 1;
        }
        return fail_errno(err, -errno, path, "mknod");
    }
    return 0;
}

/* The mode a regular file is created with: its final permission bits when
 * the umask keeps them all (then no fchmod is needed), else 0600.  The
 * tree is private (0700) until it is published. */
static mode_t create_mode(const struct img_unpack *u, const struct img_tar_entry *e)
{
    mode_t perm = e->mode & 0777;

    return (e->mode & 07000) == 0 && (perm & u->umask) == 0 ? perm : 0600;
}

/* Creates a regular file's slot without a stat first: only when the name
 * is taken (an earlier entry of this layer) is it replaced. */
static int create_file(struct img_unpack *u, const struct img_tar_entry *e, int dir_fd,
                       const char *base, const char *path, struct ag_err *err)
{
    const int flags = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;
    int fd = openat(dir_fd, base, flags, create_mode(u, e));
    int rc;

    if (fd < 0 && errno == EEXIST) {
        if ((rc = prepare_slot(dir_fd, base, false, path, err)) < 0)
            return rc;
        fd = openat(dir_fd, base, flags, create_mode(u, e));
    }
    if (fd < 0)
        return fail_errno(err, -errno, path, "create");
    return fd;
}

static int start_file(struct img_unpack *u, const struct img_tar_entry *e, int dir_fd,
                      const char *base, const char *path, struct ag_err *err)
{
    int fd = create_file(u, e, dir_fd, base, path, err);

    if (fd < 0)
        return fd;
    u->file_fd = fd;
    snprintf(u->cur, sizeof(u->cur), "%s", path);
    u->cur_written = u->cur_flushed = 0;
    u->cur_mode = e->mode;
    u->cur_uid = e->uid;
    u->cur_gid = e->gid;
    u->cur_mtime.tv_sec = e->mtime_sec;
    u->cur_mtime.tv_nsec = e->mtime_nsec;
    /* Xattrs go on after the data and chown: a write or chown would clear
     * security.capability. */
    if (e->xattrs_count == 0)
        return 0;
    u->cur_xattrs = calloc(e->xattrs_count, sizeof(*u->cur_xattrs));
    if (u->cur_xattrs == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < e->xattrs_count; i++) {
        struct saved_xattr *x = &u->cur_xattrs[i];
        u->cur_xattrs_count = i + 1;
        x->name = strdup(e->xattrs[i].name);
        x->value = malloc(e->xattrs[i].value_len + 1);
        if (x->name == NULL || x->value == NULL)
            return ag_err_set(err, -ENOMEM, "out of memory");
        memcpy(x->value, e->xattrs[i].value, e->xattrs[i].value_len);
        x->len = e->xattrs[i].value_len;
    }
    return 0;
}

static int entry_in_dir(struct img_unpack *u, const struct img_tar_entry *e, const char *path,
                        char *dirbuf, const char *base, int dir_fd, struct ag_err *err)
{
    bool is_dir = e->type == IMG_TAR_DIR;
    int rc;

    if (strcmp(base, OPAQUE_NAME) == 0)
        return set_opaque(u, dirbuf, path, 'y', err);
    if (strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) == 0)
        return do_whiteout(u, path, dirbuf, base, dir_fd, err);
    if (e->type == IMG_TAR_HARDLINK)
        return make_hardlink(u, e, dir_fd, base, path, err);
    if (e->type == IMG_TAR_REG)
        return start_file(u, e, dir_fd, base, path, err);
    if ((rc = prepare_slot(dir_fd, base, is_dir, path, err)) < 0)
        return rc;
    switch (e->type) {
    case IMG_TAR_DIR:
        if (rc == 0 && mkdirat(dir_fd, base, 0700) < 0)
            return fail_errno(err, -errno, path, "mkdir");
        break;
    case IMG_TAR_SYMLINK:
        if (e->linkname[0] == '\0')
            return fail_entry(err, -EINVAL, path, "symlink without a target");
        if (symlinkat(e->linkname, dir_fd, base) < 0)
            return fail_errno(err, -errno, path, "symlink");
        break;
    default:
        if ((rc = make_node(u, e, dir_fd, base, path, err)) != 0)
            return rc > 0 ? 0 : rc;
        break;
    }
    return apply_common(u, e, dir_fd, base, path, is_dir, err);
}

static void drop_parent(struct img_unpack *u)
{
    if (u->parent_fd >= 0)
        close(u->parent_fd);
    u->parent_fd = -1;
    u->parent[0] = '\0';
}

/* A regular file: reuses the previous file's parent directory when it is
 * the same one.  Whiteout markers go the general way. */
static int reg_entry(struct img_unpack *u, const struct img_tar_entry *e, const char *path,
                     struct ag_err *err)
{
    char dirbuf[IMG_TAR_PATH_MAX + 1];
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    int dir_fd, rc;

    if (strncmp(base, WHITEOUT_PREFIX, strlen(WHITEOUT_PREFIX)) == 0) {
        drop_parent(u);
        if ((rc = open_parent(u, path, dirbuf, &base, &dir_fd, true, err)) < 0)
            return rc;
        rc = entry_in_dir(u, e, path, dirbuf, base, dir_fd, err);
        close(dir_fd);
        return rc;
    }
    if (u->parent_fd < 0 || strlen(u->parent) != dlen || memcmp(u->parent, path, dlen) != 0) {
        drop_parent(u);
        if ((rc = open_parent(u, path, dirbuf, &base, &dir_fd, true, err)) < 0)
            return rc;
        u->parent_fd = dir_fd;
        memcpy(u->parent, path, dlen);
        u->parent[dlen] = '\0';
    }
    return start_file(u, e, u->parent_fd, base, path, err);
}

/* The process umask, without changing it (umask() would race with other
 * threads): 0777 ("always chmod") when /proc is not readable. */
static mode_t read_umask(void)
{
    char *text = NULL, *line;
    unsigned long v;
    mode_t m = 0777;

    if (ag_file_read("/proc/self/status", 65536, &text, NULL) < 0)
        return m;
    if ((line = strstr(text, "\nUmask:")) != NULL && sscanf(line + 7, "%lo", &v) == 1)
        m = (mode_t)(v & 0777);
    free(text);
    return m;
}

static int on_entry(void *ud, const struct img_tar_entry *e, struct ag_err *err)
{
    struct img_unpack *u = ud;
    char path[IMG_TAR_PATH_MAX + 1], dirbuf[IMG_TAR_PATH_MAX + 1];
    const char *base;
    int dir_fd = -1;
    int rc;

    if (img_tar_entries(u->tar) > u->opts.max_entries)
        return ag_err_set(err, -EFBIG, "layer has more than %llu entries",
                          (unsigned long long)u->opts.max_entries);
    if ((rc = clean_path(e->path, path, err)) < 0)
        return rc;
    if (path[0] == '\0') {
        /* "./": the layer root's own attributes are unspecified. */
        if (e->type != IMG_TAR_DIR)
            return fail_entry(err, -EINVAL, e->path, "non-directory entry for the layer root");
        return 0;
    }
    if (e->type == IMG_TAR_REG)
        return reg_entry(u, e, path, err);
    drop_parent(u);
    if ((rc = open_parent(u, path, dirbuf, &base, &dir_fd, true, err)) < 0)
        return rc;
    rc = entry_in_dir(u, e, path, dirbuf, base, dir_fd, err);
    close(dir_fd);
    return rc;
}

static int on_data(void *ud, const uint8_t *data, size_t len, struct ag_err *err)
{
    struct img_unpack *u = ud;

    /* Data of entries that are not written as files (whiteout markers). */
    if (u->file_fd < 0)
        return 0;
    while (len > 0) {
        ssize_t n = write(u->file_fd, data, len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return fail_errno(err, n < 0 ? -errno : -EIO, u->cur, "write");
        data += n;
        len -= (size_t)n;
        u->cur_written += (uint64_t)n;
    }
    if (u->cur_written - u->cur_flushed >= WRITEBACK_STEP) {
        /* Asynchronous: only queues the pages for writeback (best effort). */
        (void)sync_file_range(u->file_fd, (off_t)u->cur_flushed,
                              (off_t)(u->cur_written - u->cur_flushed), SYNC_FILE_RANGE_WRITE);
        u->cur_flushed = u->cur_written;
    }
    return 0;
}

static void drop_cur_xattrs(struct img_unpack *u)
{
    for (size_t i = 0; i < u->cur_xattrs_count; i++) {
        free(u->cur_xattrs[i].name);
        free(u->cur_xattrs[i].value);
    }
    free(u->cur_xattrs);
    u->cur_xattrs = NULL;
    u->cur_xattrs_count = 0;
}

static int finish_file(struct img_unpack *u, struct ag_err *err)
{
    struct timespec ts[2] = {u->cur_mtime, u->cur_mtime};
    int fd = u->file_fd;
    int rc;

    /* A new file already belongs to euid:egid (no parent directory is
     * setgid while the layer is built: directory modes are applied last). */
    bool owned = u->cur_uid == u->euid && u->cur_gid == u->egid;
    if (u->priv && !owned && fchown(fd, u->cur_uid, u->cur_gid) < 0) {
        if (errno != EPERM && errno != EINVAL)
            return fail_errno(err, -errno, u->cur, "chown");
        warn(u, "entry %.128s: ownership not applied (%s)", u->cur, strerror(errno));
    }
    /* After chown, which clears set-id bits.  Not needed when the file was
     * created with exactly its mode (create_mode). */
    bool exact = (u->cur_mode & 07000) == 0 && ((u->cur_mode & 0777) & u->umask) == 0;
    if (!exact && fchmod(fd, u->cur_mode) < 0)
        return fail_errno(err, -errno, u->cur, "chmod");
    for (size_t i = 0; i < u->cur_xattrs_count; i++) {
        struct saved_xattr *x = &u->cur_xattrs[i];
        if ((rc = set_xattr(u, fd, -1, NULL, u->cur, x->name, x->value, x->len, err)) < 0)
            return rc;
    }
    if (futimens(fd, ts) < 0)
        return fail_errno(err, -errno, u->cur, "futimens");
    return 0;
}

static int on_entry_end(void *ud, struct ag_err *err)
{
    struct img_unpack *u = ud;
    int rc = 0;

    if (u->file_fd < 0)
        return 0;
    rc = finish_file(u, err);
    drop_cur_xattrs(u);
    close(u->file_fd);
    u->file_fd = -1;
    return rc;
}

static int on_decompressed(void *ud, const uint8_t *data, size_t len, struct ag_err *err)
{
    struct img_unpack *u = ud;

    return img_tar_feed(u->tar, data, len, err);
}

/* ---- public API --------------------------------------------------------------- */

int img_unpack_new(const char *dir, const struct img_unpack_opts *opts, struct img_unpack **out,
                   struct ag_err *err)
{
    static const struct img_tar_cbs cbs = {on_entry, on_data, on_entry_end};
    struct img_unpack *u;
    int rc;

    *out = NULL;
    u = calloc(1, sizeof(*u));
    if (u == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    u->file_fd = -1;
    u->parent_fd = -1;
    u->euid = geteuid();
    u->egid = getegid();
    u->umask = read_umask();
    u->opts = *opts;
    u->opts.expected_diff_id = NULL;
    if (u->opts.max_entries == 0)
        u->opts.max_entries = DEFAULT_MAX_ENTRIES;
    u->priv = geteuid() == 0 && !(opts->flags & IMG_UNPACK_UNPRIVILEGED);
    u->no_openat2 = opts->flags & IMG_UNPACK_NO_OPENAT2;
    u->root_fd = open(dir, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (u->root_fd < 0) {
        rc = ag_err_set(err, -errno, "open layer directory %s: %s", dir, strerror(errno));
        free(u);
        return rc;
    }
    if (opts->expected_diff_id) {
        if ((rc = img_digest_validate(opts->expected_diff_id, err)) < 0 ||
            strncmp(opts->expected_diff_id, "sha256:", 7) != 0) {
            img_unpack_free(u);
            return ag_err_set(err, -EINVAL, "expected diff_id must be a sha256 digest");
        }
        snprintf(u->expected, sizeof(u->expected), "%s", opts->expected_diff_id);
    }
    rc = img_decomp_new(opts->compression, opts->max_uncompressed, on_decompressed, u, &u->dec);
    if (rc == 0)
        rc = img_tar_new(&cbs, u, &u->tar);
    if (rc < 0) {
        img_unpack_free(u);
        return ag_err_set(err, rc, rc == -EINVAL ? "unknown layer compression" : "out of memory");
    }
    *out = u;
    return 0;
}

void img_unpack_free(struct img_unpack *u)
{
    if (u == NULL)
        return;
    if (u->file_fd >= 0)
        close(u->file_fd);
    drop_parent(u);
    drop_cur_xattrs(u);
    for (size_t i = 0; i < u->dirs_count; i++)
        free(u->dirs[i].path);
    free(u->dirs);
    img_decomp_free(u->dec);
    img_tar_free(u->tar);
    if (u->root_fd >= 0)
        close(u->root_fd);
    free(u);
}

int img_unpack_feed(struct img_unpack *u, const uint8_t *data, size_t len, struct ag_err *err)
{
    int rc;

    if (u->failed || u->finished)
        return ag_err_set(err, -EINVAL, "unpack used after an error or after finish");
    rc = img_decomp_feed(u->dec, data, len, err);
    if (rc < 0) {
        u->failed = true;
        return ag_err_wrap(err, "unpack layer");
    }
    return 0;
}

static int fix_dirs(struct img_unpack *u, struct ag_err *err)
{
    for (size_t i = 0; i < u->dirs_count; i++) {
        struct deferred_dir *d = &u->dirs[i];
        char dirbuf[IMG_TAR_PATH_MAX + 1];
        const char *base;
        struct stat st;
        int dfd, rc;

        strcpy(dirbuf, d->path);
        base = split_base(dirbuf);
        if (base == NULL) {
            base = d->path;
            dirbuf[0] = '\0';
        }
        /* Replaced by a later entry of the layer: nothing to fix. */
        if (open_dir(u, dirbuf, false, &dfd) < 0)
            continue;
        if (fstatat(dfd, base, &st, AT_SYMLINK_NOFOLLOW) < 0 || !S_ISDIR(st.st_mode)) {
            close(dfd);
            continue;
        }
        rc = fchmodat(dfd, base, d->mode, 0) < 0 ? fail_errno(err, -errno, d->path, "chmod")
                                                 : set_times(dfd, base, &d->mtime, d->path, err);
        close(dfd);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int img_unpack_finish(struct img_unpack *u, char diff_id[IMG_DIGEST_MAX], struct ag_err *err)
{
    char got[IMG_DIGEST_MAX];
    int rc = -EIO;

    if (u->failed || u->finished)
        return ag_err_set(err, -EINVAL, "unpack used after an error or after finish");
    u->finished = true;
    if ((rc = img_decomp_finish(u->dec, got, err)) < 0 || (rc = img_tar_finish(u->tar, err)) < 0 ||
        (rc = fix_dirs(u, err)) < 0)
        return ag_err_wrap(err, "unpack layer");
    if (u->expected[0] && strcmp(u->expected, got) != 0)
        return ag_err_set(err, -EBADMSG, "unpack layer: diff_id mismatch: expected %s, got %s",
                          u->expected, got);
    if (diff_id)
        memcpy(diff_id, got, IMG_DIGEST_MAX);
    return 0;
}

size_t img_unpack_warnings(const struct img_unpack *u, const char **first)
{
    if (first)
        *first = u->first_warning;
    return u->warnings;
}

/* ---- whole blob into a fresh directory -------------------------------------------- */

static int feed_file(struct img_unpack *u, int fd, struct ag_err *err)
{
    const size_t bufsz = 256 * 1024;
    _cleanup_free_ uint8_t *buf = malloc(bufsz);
    int rc;

    if (buf == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    for (;;) {
        ssize_t n = read(fd, buf, bufsz);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ag_err_set(err, -errno, "read blob: %s", strerror(errno));
        if (n == 0)
            return 0;
        if ((rc = img_unpack_feed(u, buf, (size_t)n, err)) < 0)
            return rc;
    }
}

static void remove_path(const char *path)
{
    _cleanup_free_ char *copy = strdup(path);
    char *slash = copy ? strrchr(copy, '/') : NULL;
    int dfd;

    if (copy == NULL)
        return;
    if (slash == NULL) {
        (void)remove_tree_at(AT_FDCWD, copy, 0);
        return;
    }
    *slash = '\0';
    dfd = open(slash == copy ? "/" : copy, O_PATH | O_DIRECTORY | O_CLOEXEC);
    if (dfd < 0)
        return;
    (void)remove_tree_at(dfd, slash + 1, 0);
    close(dfd);
}

static int unpack_into(const char *blob_path, const char *tmp, const struct img_unpack_opts *opts,
                       char diff_id[IMG_DIGEST_MAX], struct ag_err *err)
{
    struct img_unpack *u = NULL;
    _cleanup_close_ int fd = open(blob_path, O_RDONLY | O_CLOEXEC);
    int rc;

    if (fd < 0)
        return ag_err_set(err, -errno, "open blob %s: %s", blob_path, strerror(errno));
    if ((rc = img_unpack_new(tmp, opts, &u, err)) < 0)
        return rc;
    rc = feed_file(u, fd, err);
    if (rc == 0)
        rc = img_unpack_finish(u, diff_id, err);
    img_unpack_free(u);
    if (rc == 0) {
        /* One syncfs instead of an fsync per file: the layer must be on
         * disk before the rename makes it visible. */
        _cleanup_close_ int dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd < 0 || syncfs(dfd) < 0)
            rc = ag_err_set(err, -errno, "unpack: syncfs %s: %s", tmp, strerror(errno));
    }
    return rc;
}

int img_unpack_blob(const char *blob_path, const char *dest, const struct img_unpack_opts *opts,
                    char diff_id[IMG_DIGEST_MAX], struct ag_err *err)
{
    char tmp[PATH_MAX];
    struct stat st;
    int rc;

    if (lstat(dest, &st) == 0)
        return ag_err_set(err, -EEXIST, "unpack: %s already exists", dest);
    if (snprintf(tmp, sizeof(tmp), "%s.tmp-XXXXXX", dest) >= (int)sizeof(tmp))
        return ag_err_set(err, -ENAMETOOLONG, "unpack: path too long");
    if (mkdtemp(tmp) == NULL)
        return ag_err_set(err, -errno, "unpack: mkdtemp %s: %s", tmp, strerror(errno));
    if (chmod(tmp, 0755) < 0) {
        rc = ag_err_set(err, -errno, "unpack: chmod %s: %s", tmp, strerror(errno));
        goto fail;
    }
    if ((rc = unpack_into(blob_path, tmp, opts, diff_id, err)) < 0)
        goto fail;
    if (rename(tmp, dest) < 0) {
        rc = ag_err_set(err, errno == ENOTEMPTY ? -EEXIST : -errno, "unpack: rename to %s: %s",
                        dest, strerror(errno));
        goto fail;
    }
    /* Make the rename durable: fsync the parent directory. */
    {
        _cleanup_free_ char *parent = strdup(dest);
        char *slash = parent ? strrchr(parent, '/') : NULL;
        if (slash)
            *slash = '\0';
        int pfd = open(slash && slash != parent ? parent : (slash ? "/" : "."),
                       O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (pfd >= 0) {
            (void)fsync(pfd);
            close(pfd);
        }
    }
    return 0;
fail:
    remove_path(tmp);
    return rc;
}
