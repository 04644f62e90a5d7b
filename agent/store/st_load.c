/* agent/store: start-up recovery.  Reads every record under <meta>, and
 * repairs what a crash or a bad medium can leave: leftover temporary files
 * of an interrupted atomic write are removed; records that fail the header,
 * length, CRC, protobuf or id checks are moved to <meta>/<ns>/corrupt/ with
 * a warning (kept for inspection, never silently dropped); an image name
 * held by two images (a crash between the two writes of a tag move) stays
 * with the newer write and the older record is rewritten without it.
 * Blocking: runs inside st_store_open() only. */
#include "st_internal.h"
#ifndef ST_STORE_UNAVAILABLE

#include <dirent.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

struct load_ctx {
    struct st_store *st;
    struct st_ns *ns;
    enum st_kind kind;
    const char *dir;         /* <meta>/<ns>/<kind dir> */
    struct st_entry **dirty; /* images to rewrite after loading */
    size_t dirty_count, dirty_cap;
    bool dir_changed;
};

static int read_record(int dirfd, const char *name, uint8_t **out, size_t *out_len)
{
    _cleanup_close_ int fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    struct stat sb;

    if (fd < 0)
        return -errno;
    if (fstat(fd, &sb) < 0)
        return -errno;
    if (!S_ISREG(sb.st_mode))
        return -EBADMSG;
    if ((uint64_t)sb.st_size > ST_RECORD_MAX)
        return -EFBIG;
    size_t len = (size_t)sb.st_size, got = 0;
    _cleanup_free_ uint8_t *buf = malloc(len + 1);
    if (buf == NULL)
        return -ENOMEM;
    while (got < len) {
        ssize_t n = read(fd, buf + got, len - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break; /* shrank under us: the length check rejects it */
        got += (size_t)n;
    }
    *out = steal_ptr(&buf);
    *out_len = got;
    return 0;
}

/* Moves a bad record to <meta>/<ns>/corrupt/<kind dir>-<name>.<ns time>. */
static int move_aside(struct load_ctx *c, const char *name, int why)
{
    _cleanup_free_ char *corrupt = NULL, *from = NULL, *to = NULL;
    char esc[96];

    ag_str_escape(esc, sizeof(esc), name, 80);
    ag_log(AG_WARN, "store corrupt record ns=%s kind=%s file=%s (%s): moved to corrupt/",
           c->ns->name, st__kind_dir(c->kind), esc, strerror(-why));
    if (asprintf(&corrupt, "%s/%s/corrupt", c->st->meta, c->ns->name) < 0)
        return corrupt = NULL, -ENOMEM;
    if (asprintf(&from, "%s/%s", c->dir, name) < 0)
        return from = NULL, -ENOMEM;
    if (asprintf(&to, "%s/%s-%s.%lld", corrupt, st__kind_dir(c->kind), name,
                 (long long)ag_now_ns()) < 0)
        return to = NULL, -ENOMEM;
    int rc = ag_mkdir_p(corrupt, 0700);
    if (rc < 0)
        return rc;
    if (rename(from, to) < 0)
        return -errno;
    c->dir_changed = true;
    _cleanup_close_ int fd = open(corrupt, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    return fd >= 0 && fsync(fd) == 0 ? 0 : -errno;
}

static int mark_dirty(struct load_ctx *c, struct st_entry *e)
{
    for (size_t i = 0; i < c->dirty_count; i++)
        if (c->dirty[i] == e)
            return 0;
    if (c->dirty_count == c->dirty_cap) {
        size_t cap = c->dirty_cap ? c->dirty_cap * 2 : 8;
        struct st_entry **d = realloc(c->dirty, cap * sizeof(*d));
        if (d == NULL)
            return -ENOMEM;
        c->dirty = d;
        c->dirty_cap = cap;
    }
    c->dirty[c->dirty_count++] = e;
    return 0;
}

static int load_one(struct load_ctx *c, int dirfd, const char *name)
{
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t seq = 0;
    int rc = read_record(dirfd, name, &buf, &len);
    void *msg = NULL;

    if (rc == 0) {
        msg = malloc(st__kind_size(c->kind));
        rc = msg == NULL ? -ENOMEM : st_record_decode(c->kind, buf, len, msg, &seq);
    }
    if (rc == 0 && strcmp(st__id_file(c->kind, st_record_id(c->kind, msg)), name) != 0) {
        st_record_release(c->kind, msg);
        rc = -EBADMSG; /* a record copied under another record's name */
    }
    if (rc == -ENOMEM || rc == -EIO) {
        free(msg);
        return rc; /* not the file's fault: fail the open */
    }
    if (rc < 0) {
        free(msg);
        return move_aside(c, name, rc);
    }
    struct st_entry *e = st__entry_new(c->kind, msg, seq);
    if (e == NULL) {
        st_record_release(c->kind, msg);
        free(msg);
        return -ENOMEM;
    }
    if (seq > c->st->seq_max)
        c->st->seq_max = seq;
    struct st_entry **losers = calloc(e->names_count + 1, sizeof(*losers));
    if (losers == NULL) {
        st__entry_free(e);
        return -ENOMEM;
    }
    size_t nl = st__entry_link(c->ns, e, losers);
    for (size_t i = 0; i < nl && rc == 0; i++)
        rc = mark_dirty(c, losers[i]);
    free(losers);
    return rc;
}

static bool is_tmp_name(const char *name) { return strstr(name, ".tmp.") != NULL; }

static int load_kind(struct load_ctx *c)
{
    DIR *d = opendir(c->dir);
    int rc = 0;

    if (d == NULL)
        return errno == ENOENT || errno == ENOTDIR ? 0 : -errno;
    for (struct dirent *de; rc == 0 && (de = readdir(d)) != NULL;) {
        const char *name = de->d_name;
        if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
            continue;
        if (is_tmp_name(name)) {
            if (unlinkat(dirfd(d), name, 0) < 0 && errno != ENOENT)
                rc = -errno;
            c->dir_changed = true;
            ag_log(AG_INFO, "store removed leftover temp file ns=%s kind=%s", c->ns->name,
                   st__kind_dir(c->kind));
            continue;
        }
        if (!st_id_valid(name)) {
            char esc[96];
            ag_str_escape(esc, sizeof(esc), name, 80);
            ag_log(AG_WARN, "store ignoring unknown file ns=%s kind=%s file=%s", c->ns->name,
                   st__kind_dir(c->kind), esc);
            continue;
        }
        rc = load_one(c, dirfd(d), name);
    }
    if (rc == 0 && c->dir_changed && fsync(dirfd(d)) < 0)
        rc = -errno;
    closedir(d);
    return rc;
}

/* Rewrites images whose names moved to a newer image while loading. */
static int repair(struct load_ctx *c)
{
    char path[PATH_MAX];

    for (size_t i = 0; i < c->dirty_count; i++) {
        struct st_entry *e = c->dirty[i];
        _cleanup_free_ uint8_t *buf = NULL;
        size_t len = 0;
        e->seq = st__seq_next(c->st);
        int rc = st__record_path(c->st, c->ns->name, e->kind, e->node.key, path, sizeof(path));
        if (rc == 0)
            rc = st_record_encode(e->kind, e->seq, e->msg, &buf, &len);
        if (rc == 0)
            rc = st__file_put(path, buf, len);
        if (rc < 0)
            return rc;
        ag_log(AG_INFO, "store repaired names ns=%s image=%s", c->ns->name, e->node.key);
    }
    return 0;
}

static int load_ns(struct st_store *st, const char *name)
{
    struct load_ctx c = {.st = st};
    char dir[PATH_MAX];
    int rc = st__ns_get(st, name, &c.ns);

    for (int k = 0; rc == 0 && k < ST_KIND_COUNT; k++) {
        c.kind = (enum st_kind)k;
        c.dir_changed = false;
        c.dir = dir;
        if (snprintf(dir, sizeof(dir), "%s/%s/%s", st->meta, name, st__kind_dir(c.kind)) >=
            (int)sizeof(dir))
            rc = -ENAMETOOLONG;
        else
            rc = load_kind(&c);
    }
    if (rc == 0)
        rc = repair(&c);
    free(c.dirty);
    return rc;
}

int st__load_all(struct st_store *st, struct ag_err *err)
{
    DIR *d = opendir(st->meta);
    int rc = 0;
    size_t counts[ST_KIND_COUNT] = {0};

    if (d == NULL)
        return ag_err_set(err, -errno, "open %s: %s", st->meta, strerror(errno));
    for (struct dirent *de; rc == 0 && (de = readdir(d)) != NULL;) {
        if (de->d_name[0] == '.')
            continue;
        if (!st_ns_name_valid(de->d_name)) {
            char esc[96];
            ag_str_escape(esc, sizeof(esc), de->d_name, 80);
            ag_log(AG_WARN, "store ignoring %s/%s: not a namespace name", st->meta, esc);
            continue;
        }
        rc = load_ns(st, de->d_name);
        if (rc < 0)
            ag_err_set(err, rc, "load namespace %s: %s", de->d_name, strerror(-rc));
    }
    closedir(d);
    if (rc < 0)
        return rc;
    for (const struct st_ns *ns = st->ns_head; ns != NULL; ns = ns->next)
        for (int k = 0; k < ST_KIND_COUNT; k++)
            counts[k] += ns->recs[k].count;
    ag_log(AG_INFO, "store loaded namespaces=%zu images=%zu pods=%zu containers=%zu", st->ns_count,
           counts[ST_KIND_IMAGE], counts[ST_KIND_POD], counts[ST_KIND_CONTAINER]);
    return 0;
}
#endif /* ST_STORE_UNAVAILABLE */
