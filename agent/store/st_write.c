/* agent/store: record writes.  The blocking primitives (st__file_put: atomic
 * write through ag_file_write_atomic, creating the namespace directories on
 * first use; st__file_unlink: unlink + fsync directory) run at start-up, in
 * blocking mode, or on the libuv thread pool.  The queue keeps writes of one
 * path in order: at most one is in flight per path (a second concurrent
 * write would share the temporary file name), later ones wait, and when
 * several wait only the newest content is written and all their callbacks
 * report its status, which saves SD-card writes.  Invariant: a request in
 * st->writes is the one in flight for its path and counts in st->pending. */
#include "st_internal.h"
#ifndef ST_STORE_UNAVAILABLE

#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

struct st_wreq {
    struct st_hnode node; /* key = path; in st->writes while in flight */
    struct st_store *st;
    uv_work_t work;
    struct st_wreq *queued; /* head only: later requests of this path, oldest first */
    struct st_wreq *riders; /* coalesced requests whose callbacks fire with this one */
    struct st_wreq *next;   /* link in a queued or riders list */
    uint8_t *buf;           /* NULL: delete */
    size_t len;
    st_done_cb cb;
    void *arg;
    int status;
    char path[];
};

static int fsync_dir(const char *dir)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    return fsync(fd) < 0 ? -errno : 0;
}

/* Cuts path at its last '/' into out; returns -ENAMETOOLONG/-EINVAL. */
static int parent_of(const char *path, char *out, size_t out_len)
{
    const char *slash = strrchr(path, '/');

    if (slash == NULL || slash == path)
        return -EINVAL;
    size_t n = (size_t)(slash - path);
    if (n >= out_len)
        return -ENAMETOOLONG;
    memcpy(out, path, n);
    out[n] = '\0';
    return 0;
}

/* Creates <meta>/<ns>/<kind dir> for path and makes the new directory
 * entries durable (fsync of <ns> and <meta>). */
static int make_dirs(const char *path)
{
    char kind_dir[PATH_MAX], ns_dir[PATH_MAX], meta[PATH_MAX];
    int rc = parent_of(path, kind_dir, sizeof(kind_dir));

    if (rc == 0)
        rc = parent_of(kind_dir, ns_dir, sizeof(ns_dir));
    if (rc == 0)
        rc = parent_of(ns_dir, meta, sizeof(meta));
    if (rc == 0)
        rc = ag_mkdir_p(kind_dir, 0700);
    if (rc == 0)
        rc = fsync_dir(ns_dir);
    if (rc == 0)
        rc = fsync_dir(meta);
    return rc;
}

int st__file_put(const char *path, const uint8_t *buf, size_t len)
{
    int rc = ag_file_write_atomic(path, buf, len, 0600);

    if (rc == -ENOENT) {
        rc = make_dirs(path);
        if (rc == 0)
            rc = ag_file_write_atomic(path, buf, len, 0600);
    }
    return rc;
}

int st__file_unlink(const char *path)
{
    char dir[PATH_MAX];
    int rc = parent_of(path, dir, sizeof(dir));

    if (rc < 0)
        return rc;
    if (unlink(path) < 0)
        return errno == ENOENT ? 0 : -errno;
    return fsync_dir(dir);
}

struct st_wreq *st__wreq_new(const char *path, uint8_t *buf, size_t len, st_done_cb cb, void *arg)
{
    size_t plen = strlen(path);
    struct st_wreq *req = calloc(1, sizeof(*req) + plen + 1);

    if (req == NULL)
        return NULL;
    memcpy(req->path, path, plen + 1);
    req->node.key = req->path;
    req->buf = buf;
    req->len = len;
    req->cb = cb;
    req->arg = arg;
    return req;
}

void st__wreq_free(struct st_wreq *req)
{
    if (req == NULL)
        return;
    free(req->buf);
    free(req);
}

static int wreq_run(struct st_wreq *req)
{
    return req->buf != NULL ? st__file_put(req->path, req->buf, req->len)
                            : st__file_unlink(req->path);
}

static void on_work(uv_work_t *w)
{
    struct st_wreq *req = ag_container_of(w, struct st_wreq, work);

    req->status = wreq_run(req);
}

static void on_work_done(uv_work_t *w, int status);

static void start(struct st_store *st, struct st_wreq *req)
{
    req->st = st;
    /* Cannot fail: st->writes was reserved at open. */
    ag_assert(st__htab_insert(&st->writes, &req->node) == 0);
    st->pending++;
    ag_assert(uv_queue_work(st->loop, &req->work, on_work, on_work_done) == 0);
}

/* The newest waiting request becomes the next write; the others ride on it. */
static struct st_wreq *coalesce(struct st_wreq *queued)
{
    struct st_wreq *last = queued;

    while (last->next != NULL)
        last = last->next;
    for (struct st_wreq *r = queued; r != last; r = r->next) {
        free(r->buf);
        r->buf = NULL;
    }
    struct st_wreq **tail = &last->riders;
    while (*tail != NULL)
        tail = &(*tail)->next;
    if (queued != last) {
        *tail = queued;
        for (struct st_wreq *r = queued; r != NULL; r = r->next)
            if (r->next == last)
                r->next = NULL;
    }
    return last;
}

static void on_work_done(uv_work_t *w, int status)
{
    struct st_wreq *req = ag_container_of(w, struct st_wreq, work);
    struct st_store *st = req->st;

    if (status < 0)
        req->status = status; /* UV_ECANCELED: the write never ran */
    st__htab_remove(&st->writes, &req->node);
    st->pending--;
    if (req->queued != NULL)
        start(st, coalesce(req->queued));
    if (req->status < 0)
        ag_log(AG_ERROR, "store write path=%s failed: %s", req->path, strerror(-req->status));
    /* Callbacks last: they may submit more writes for the same path. */
    struct st_wreq *r = req->riders;
    if (req->cb != NULL)
        req->cb(req->status, req->arg);
    while (r != NULL) {
        struct st_wreq *next = r->next;
        if (r->cb != NULL)
            r->cb(req->status, r->arg);
        st__wreq_free(r);
        r = next;
    }
    st__wreq_free(req);
}

int st__wreq_submit(struct st_store *st, struct st_wreq *req)
{
    if (st->loop == NULL) {
        int rc = wreq_run(req);
        st__wreq_free(req);
        return rc;
    }
    struct st_hnode *n = st__htab_find(&st->writes, req->path);
    if (n == NULL) {
        start(st, req);
        return 0;
    }
    struct st_wreq *head = ag_container_of(n, struct st_wreq, node);
    struct st_wreq **tail = &head->queued;
    while (*tail != NULL)
        tail = &(*tail)->next;
    *tail = req;
    return 0;
}
#endif /* ST_STORE_UNAVAILABLE */
