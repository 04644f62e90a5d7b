/* agent/image: layer jobs — one per ChainID in flight — download a layer
 * blob into the content store and unpack it into <layers>/<chain hex>/.
 *
 * Pipelining: the registry client reports each chunk once it is in the
 * ingest file; the job only advances its "on disk" mark and a work item on
 * the thread pool reads the ingest file from where the unpacker stopped up
 * to that mark and feeds img_unpack_feed (one work item at a time, in
 * order), so the layer is mostly unpacked when its download ends.  Reading
 * the file back (from the page cache) instead of queueing copies keeps
 * memory flat however far the unpacker lags behind the network, and lets a
 * download resumed from a partial file be unpacked from its first byte.
 * When the stream is not contiguous (a server that ignored Range and
 * restarted the blob, the blob already in the store), the pipelined
 * unpacker is dropped and the verified blob is unpacked from the content
 * store after the download (img_unpack_blob).  Either way the
 * layer is built in "<chain hex>.tmp-XXXXXX" and renamed into place only
 * after the DiffID matched and the tree was synced, so <layers>/<hex>
 * exists only complete.  Failures remove the temporary tree.
 *
 * Invariant: a job is freed only when no work item is in flight and its
 * fetch has reported; every waiter hears exactly once.
 */
#include "image/img_service_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Read size of the pipelined unpacker (one buffer per layer in flight). */
#define FEED_BUF (256u * 1024)
/* Bytes one feed work item unpacks at most: short items let the ingest
 * writes of other downloads (same thread pool, FIFO) run between them, and
 * a cancel or failure is noticed within a bounded time. */
#define FEED_ITEM_MAX (1u << 20)

enum job_work { W_NONE, W_PREPARE, W_FEED, W_FINISH, W_BLOB, W_CLEANUP };

struct job_waiter {
    struct job_waiter *next;
    struct img_pull *pull;
    size_t index;
};

struct img_layer_job {
    struct img_layer_job *next;
    struct img_svc *svc;
    char chain_hex[65];
    char digest[IMG_DIGEST_MAX];
    char diff_id[IMG_DIGEST_MAX];
    int64_t size;
    enum img_compression comp;
    struct img_ref ref;
    struct img_auth_config auth;
    char dest[IMG_SVC_PATH_MAX];
    char tmp[IMG_SVC_PATH_MAX];
    struct job_waiter *waiters;
    struct img_fetch *fetch;
    bool fetching;
    /* loop thread */
    uint64_t avail; /* contiguous bytes from 0 in the ingest file */
    bool pipelined;
    bool downloaded;
    bool failed;
    bool unpack_failed; /* failed by the unpacker while the download ran */
    bool finished_unpack;
    uint64_t done_bytes;
    /* worker (the loop reads fed only while no work item is in flight) */
    uv_work_t work;
    enum job_work wkind;
    uint64_t fed, feed_to;
    int src_fd;
    uint8_t *rbuf;
    struct img_unpack *u;
    bool exists;
    int wstatus;
    struct ag_err werr;
    struct ag_err err;
};

static void job_kick(struct img_layer_job *j);
static void after_work(uv_work_t *w, int status);

/* ---- worker side ---------------------------------------------------------------- */

static struct img_unpack_opts job_opts(const struct img_layer_job *j)
{
    return (struct img_unpack_opts){
        .compression = j->comp,
        .max_uncompressed = j->svc->max_layer_bytes,
        .expected_diff_id = j->diff_id,
        .flags = j->svc->unpack_flags,
    };
}

static void do_prepare(struct img_layer_job *j)
{
    struct img_unpack_opts o = job_opts(j);
    struct stat st;

    if (lstat(j->dest, &st) == 0 && S_ISDIR(st.st_mode)) {
        j->exists = true;
        return;
    }
    if (snprintf(j->tmp, sizeof(j->tmp), "%s.tmp-XXXXXX", j->dest) >= (int)sizeof(j->tmp) ||
        mkdtemp(j->tmp) == NULL) {
        j->wstatus = ag_err_set(&j->werr, -errno ? -errno : -ENAMETOOLONG,
                                "layer %s: create %s: %s", j->digest, j->tmp, strerror(errno));
        j->tmp[0] = '\0';
        return;
    }
    j->wstatus = img_unpack_new(j->tmp, &o, &j->u, &j->werr);
}

static void close_src(struct img_layer_job *j)
{
    if (j->src_fd >= 0)
        close(j->src_fd);
    j->src_fd = -1;
    free(j->rbuf);
    j->rbuf = NULL;
}

/* Opens the blob being downloaded: its ingest file, or the published blob
 * once the download committed (rename keeps the inode). */
static int open_src(struct img_layer_job *j)
{
    char path[IMG_SVC_PATH_MAX];

    if (img_content_ingest_path(j->svc->content, j->digest, path, sizeof(path)) == 0)
        j->src_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (j->src_fd < 0 && img_content_blob_path(j->svc->content, j->digest, path, sizeof(path)) == 0)
        j->src_fd = open(path, O_RDONLY | O_CLOEXEC);
    if (j->src_fd < 0)
        return ag_err_set(&j->werr, -errno ? -errno : -EIO, "layer %s: open download: %s",
                          j->digest, strerror(errno));
    if ((j->rbuf = malloc(FEED_BUF)) == NULL)
        return ag_err_set(&j->werr, -ENOMEM, "out of memory");
    return 0;
}

static void do_feed(struct img_layer_job *j)
{
    if (j->src_fd < 0 && (j->wstatus = open_src(j)) < 0)
        return;
    while (j->fed < j->feed_to && j->wstatus == 0) {
        size_t want = j->feed_to - j->fed < FEED_BUF ? (size_t)(j->feed_to - j->fed) : FEED_BUF;
        ssize_t n = pread(j->src_fd, j->rbuf, want, (off_t)j->fed);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0) {
            j->wstatus = ag_err_set(&j->werr, n < 0 ? -errno : -EIO,
                                    "layer %s: read download at %llu: %s", j->digest,
                                    (unsigned long long)j->fed, n < 0 ? strerror(errno) : "short");
            return;
        }
        j->wstatus = img_unpack_feed(j->u, j->rbuf, (size_t)n, &j->werr);
        j->fed += (uint64_t)n;
    }
}

static int publish(struct img_layer_job *j)
{
    int dfd, rc = 0;
    char dir[IMG_SVC_PATH_MAX];

    dfd = open(j->tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    /* One syncfs for the whole tree instead of an fsync per file. */
    if (dfd < 0 || syncfs(dfd) < 0)
        rc = ag_err_set(&j->werr, -errno, "layer %s: sync %s: %s", j->digest, j->tmp,
                        strerror(errno));
    if (dfd >= 0)
        close(dfd);
    if (rc == 0 && rename(j->tmp, j->dest) < 0)
        rc = ag_err_set(&j->werr, -errno, "layer %s: rename to %s: %s", j->digest, j->dest,
                        strerror(errno));
    if (rc < 0)
        return rc;
    j->tmp[0] = '\0';
    snprintf(dir, sizeof(dir), "%s", j->svc->layers_dir);
    if ((dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC)) >= 0) {
        (void)fsync(dfd);
        close(dfd);
    }
    return 0;
}

static void do_finish(struct img_layer_job *j)
{
    char diff_id[IMG_DIGEST_MAX];

    close_src(j);
    j->wstatus = img_unpack_finish(j->u, diff_id, &j->werr);
    img_unpack_free(j->u);
    j->u = NULL;
    if (j->wstatus == 0)
        j->wstatus = publish(j);
}

static void drop_tmp(struct img_layer_job *j)
{
    close_src(j);
    img_unpack_free(j->u);
    j->u = NULL;
    if (j->tmp[0] != '\0')
        (void)img_svc__rm_tree(j->tmp);
    j->tmp[0] = '\0';
}

static void do_blob(struct img_layer_job *j)
{
    struct img_unpack_opts o = job_opts(j);
    char blob[IMG_SVC_PATH_MAX];
    struct stat st;

    drop_tmp(j);
    if (lstat(j->dest, &st) == 0 && S_ISDIR(st.st_mode))
        return;
    j->wstatus = img_content_blob_path(j->svc->content, j->digest, blob, sizeof(blob));
    if (j->wstatus < 0) {
        ag_err_set(&j->werr, j->wstatus, "layer %s: bad digest", j->digest);
        return;
    }
    j->wstatus = img_unpack_blob(blob, j->dest, &o, NULL, &j->werr);
}

static void on_work(uv_work_t *w)
{
    struct img_layer_job *j = ag_container_of(w, struct img_layer_job, work);

    ag_err_init(&j->werr);
    j->wstatus = 0;
    switch (j->wkind) {
    case W_PREPARE:
        do_prepare(j);
        break;
    case W_FEED:
        do_feed(j);
        break;
    case W_FINISH:
        do_finish(j);
        break;
    case W_BLOB:
        do_blob(j);
        break;
    case W_CLEANUP:
    case W_NONE:
        drop_tmp(j);
        break;
    }
}

/* ---- loop side ------------------------------------------------------------------- */

static void job_unlink(struct img_layer_job *j)
{
    for (struct img_layer_job **pp = &j->svc->jobs; *pp != NULL; pp = &(*pp)->next)
        if (*pp == j) {
            *pp = j->next;
            break;
        }
}

static void job_free(struct img_layer_job *j)
{
    struct img_svc *s = j->svc;

    job_unlink(j);
    close_src(j);
    while (j->waiters != NULL) {
        struct job_waiter *w = j->waiters;
        j->waiters = w->next;
        free(w);
    }
    img_auth_config_fini(&j->auth);
    free(j);
    img_svc__maybe_free(s);
}

/* Reports to every waiter, then frees the job.  The job leaves the
 * service's list first: a waiter that fails its pull garbage-collects the
 * pull's layers at once, and a layer this job published just before it was
 * cancelled must not look in use by it then. */
static void job_complete(struct img_layer_job *j, int status)
{
    struct img_svc *s = j->svc;
    struct job_waiter *w = j->waiters;

    job_unlink(j);
    /* Busy guard: unlinked, the job no longer keeps a closing service
     * alive, and the callbacks may end its last pull. */
    s->busy++;
    j->waiters = NULL;
    while (w != NULL) {
        struct job_waiter *n = w->next;
        img_pull__layer_done(w->pull, w->index, status, &j->err);
        free(w);
        w = n;
    }
    job_free(j);
    img_svc__unbusy(s);
}

static void start_work(struct img_layer_job *j, enum job_work kind)
{
    j->wkind = kind;
    if (uv_queue_work(j->svc->loop, &j->work, on_work, after_work) < 0) {
        /* Only fails for a closing loop; the job then fails in place. */
        j->wkind = W_NONE;
        if (!j->failed) {
            j->failed = true;
            ag_err_set(&j->err, -EIO, "layer %s: cannot queue work", j->digest);
        }
        return;
    }
    j->svc->busy++;
}

static void job_fail(struct img_layer_job *j, int status, const struct ag_err *err)
{
    if (!j->failed) {
        j->failed = true;
        if (err != NULL && err->code < 0)
            j->err = *err;
        else
            ag_err_set(&j->err, status, "layer %s: %s", j->digest, strerror(-status));
    }
    if (j->fetching && j->fetch != NULL)
        img_fetch_cancel(j->fetch);
    job_kick(j);
}

static void on_blob_data(uint64_t off, const uint8_t *p, size_t n, void *data)
{
    struct img_layer_job *j = data;

    (void)p; /* the unpacker reads the ingest file itself */
    if (j->failed || !j->pipelined)
        return;
    if (off == j->avail || (j->avail == 0 && off > 0)) {
        /* In order, or the first chunk of a download resumed from a
         * partial file: the bytes before it are already in that file. */
        j->avail = off + n;
    } else {
        /* Restarted from 0 (Range ignored): the file is being rewritten
         * under the unpacker; unpack the verified blob afterwards. */
        j->pipelined = false;
    }
    job_kick(j);
}

static void on_blob_progress(uint64_t done, int64_t total, void *data)
{
    struct img_layer_job *j = data;

    (void)total;
    j->done_bytes = done;
}

static void on_blob_done(int status, const struct ag_err *err, void *data)
{
    struct img_layer_job *j = data;

    j->fetching = false;
    j->fetch = NULL;
    j->downloaded = true;
    if (status < 0) {
        if (j->unpack_failed && status != -ECANCELED && err != NULL && err->code < 0)
            j->err = *err;
        job_fail(j, status, err);
        return;
    }
    if (j->size >= 0)
        j->done_bytes = (uint64_t)j->size;
    if (j->pipelined && (j->size < 0 || j->avail != (uint64_t)j->size))
        j->pipelined = false; /* blob was already there: unpack it from the store */
    job_kick(j);
}

static void start_fetch(struct img_layer_job *j)
{
    struct img_blob_req b = {
        .digest = j->digest,
        .size = j->size,
        .on_progress = on_blob_progress,
        .on_data = on_blob_data,
        .on_done = on_blob_done,
        .data = j,
    };
    struct ag_err e;

    ag_err_init(&e);
    j->fetching = true;
    if (img_registry_fetch_blob(j->svc->reg, &j->ref, &b, &j->auth, &j->fetch, &e) < 0) {
        j->fetching = false;
        j->fetch = NULL;
        job_fail(j, e.code, &e);
    }
}

static void after_work(uv_work_t *w, int status)
{
    struct img_layer_job *j = ag_container_of(w, struct img_layer_job, work);
    enum job_work kind = j->wkind;

    (void)status;
    j->wkind = W_NONE;
    img_svc__unbusy(j->svc);
    if (kind == W_FEED && !j->pipelined)
        j->wstatus = 0; /* read a file being rewritten: the blob is unpacked later */
    if (j->wstatus < 0 && !j->failed) {
        /* Let a running download end: if the blob fails its digest check,
         * that is the cause to report (corrupt bytes also break the
         * unpacker first); it is bounded by the descriptor's size. */
        j->failed = true;
        j->unpack_failed = j->fetching;
        j->err = j->werr;
    }
    if (kind == W_PREPARE && !j->failed) {
        if (j->exists) {
            j->finished_unpack = true;
        } else if (j->waiters == NULL || j->svc->closing) {
            job_fail(j, -ECANCELED, NULL);
            return;
        } else {
            start_fetch(j);
            return;
        }
    }
    if (kind == W_FINISH || kind == W_BLOB)
        j->finished_unpack = !j->failed;
    job_kick(j);
}

/* Advances the job: at most one work item at a time. */
static void job_kick(struct img_layer_job *j)
{
    if (j->wkind != W_NONE)
        return;
    if (j->failed) {
        if (j->fetching)
            return; /* wait for the cancelled fetch to report */
        if (j->u != NULL || j->tmp[0] != '\0') {
            start_work(j, W_CLEANUP);
            if (j->wkind != W_NONE)
                return;
        }
        job_complete(j, j->err.code ? j->err.code : -EIO);
        return;
    }
    if (j->finished_unpack) {
        job_complete(j, 0);
        return;
    }
    if (j->pipelined && j->avail > j->fed && j->u != NULL) {
        j->feed_to = j->avail - j->fed > FEED_ITEM_MAX ? j->fed + FEED_ITEM_MAX : j->avail;
        start_work(j, W_FEED);
        return;
    }
    if (!j->downloaded)
        return;
    start_work(j, j->pipelined ? W_FINISH : W_BLOB);
}

/* ---- public (folder) --------------------------------------------------------------- */

static struct img_layer_job *job_find(struct img_svc *s, const char *hex)
{
    for (struct img_layer_job *j = s->jobs; j != NULL; j = j->next)
        if (strcmp(j->chain_hex, hex) == 0)
            return j;
    return NULL;
}

static int job_new(struct img_svc *s, const struct img_layer_req *r, struct img_layer_job **out,
                   struct ag_err *err)
{
    struct img_layer_job *j = calloc(1, sizeof(*j));
    bool encrypted = false;
    int rc;

    if (j == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    j->svc = s;
    j->src_fd = -1;
    snprintf(j->chain_hex, sizeof(j->chain_hex), "%s", r->chain_id + strlen("sha256:"));
    snprintf(j->digest, sizeof(j->digest), "%s", r->digest);
    snprintf(j->diff_id, sizeof(j->diff_id), "%s", r->diff_id);
    j->size = r->size;
    j->ref = *r->ref;
    j->pipelined = true;
    rc = img_media_type_layer(r->media_type, &j->comp, &encrypted, err);
    if (rc == 0 && encrypted)
        rc = ag_err_set(err, -ENOTSUP, "layer %s: encrypted layers (%s) are not supported yet",
                        r->digest, r->media_type);
    if (rc == 0 && (rc = img_svc__auth_copy(r->auth, &j->auth)) < 0)
        ag_err_set(err, rc, "out of memory");
    if (rc == 0 && snprintf(j->dest, sizeof(j->dest), "%s/%s", s->layers_dir, j->chain_hex) >=
                       (int)sizeof(j->dest))
        rc = ag_err_set(err, -ENAMETOOLONG, "layer path too long");
    if (rc < 0) {
        img_auth_config_fini(&j->auth);
        free(j);
        return rc;
    }
    *out = j;
    return 0;
}

int img_layer_job_join(struct img_svc *s, const struct img_layer_req *r, struct img_pull *p,
                       size_t index, struct ag_err *err)
{
    const char *hex = r->chain_id + strlen("sha256:");
    struct img_layer_job *j = job_find(s, hex);
    struct job_waiter *w = calloc(1, sizeof(*w));
    bool fresh = j == NULL;
    int rc;

    if (w == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    if (strncmp(r->chain_id, "sha256:", 7) != 0 || strlen(hex) != 64) {
        free(w);
        return ag_err_set(err, -EINVAL, "bad chain id %s", r->chain_id);
    }
    if (fresh && (rc = job_new(s, r, &j, err)) < 0) {
        free(w);
        return rc;
    }
    w->pull = p;
    w->index = index;
    w->next = j->waiters;
    j->waiters = w;
    if (fresh) {
        j->next = s->jobs;
        s->jobs = j;
        start_work(j, W_PREPARE);
        if (j->wkind == W_NONE) {
            j->waiters = NULL;
            free(w);
            job_free(j);
            return ag_err_set(err, -EIO, "cannot queue work");
        }
    }
    return 0;
}

static bool only_waiter(const struct img_layer_job *j, const struct img_pull *p)
{
    for (const struct job_waiter *w = j->waiters; w != NULL; w = w->next)
        if (w->pull != p)
            return false;
    return j->waiters != NULL;
}

void img_layer_job_leave(struct img_svc *s, struct img_pull *p)
{
    struct img_layer_job *j, *next;
    struct ag_err e;

    /* Jobs other pulls also wait for go on without p.  Collect first:
     * failing a job may complete it (and free it) at once. */
    for (j = s->jobs; j != NULL; j = j->next) {
        if (only_waiter(j, p))
            continue;
        for (struct job_waiter **pp = &j->waiters; *pp != NULL;) {
            if ((*pp)->pull == p) {
                struct job_waiter *w = *pp;
                *pp = w->next;
                img_pull__layer_detached(p, w->index);
                free(w);
            } else {
                pp = &(*pp)->next;
            }
        }
    }
    /* Jobs only p waits for stop; p hears from them once their temporary
     * trees are gone, so a failed pull reports only after its cleanup. */
    for (j = s->jobs; j != NULL; j = next) {
        next = j->next;
        if (only_waiter(j, p) && !j->failed && !j->finished_unpack) {
            ag_err_init(&e);
            ag_err_set(&e, -ECANCELED, "layer %s: cancelled", j->digest);
            job_fail(j, -ECANCELED, &e);
        }
    }
}

void img_layer_job_progress(const struct img_svc *s, const struct img_pull *p, size_t index,
                            uint64_t *done, int64_t *total, const char **state)
{
    for (const struct img_layer_job *j = s->jobs; j != NULL; j = j->next)
        for (const struct job_waiter *w = j->waiters; w != NULL; w = w->next)
            if (w->pull == p && w->index == index) {
                *done = j->done_bytes;
                *total = j->size;
                *state = j->downloaded ? "unpacking" : j->fetching ? "downloading" : "waiting";
                return;
            }
}

bool img_svc__layer_in_use(const struct img_svc *s, const char *chain_hex)
{
    for (const struct img_layer_job *j = s->jobs; j != NULL; j = j->next)
        if (strcmp(j->chain_hex, chain_hex) == 0)
            return true;
    return img_pull__uses_chain(s, chain_hex);
}
