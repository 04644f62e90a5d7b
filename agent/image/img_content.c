/* agent/image: the content store, an OCI image layout under <root>/content
 * (oci-layout, index.json, blobs/sha256/<hex>), and the ingest writer that
 * puts downloaded blobs into it.
 *
 * A blob is streamed into ingest/<hex>.partial while SHA-256 is computed
 * over it; it is published by rename into blobs/ only when its size and
 * digest match (fsync file, rename, fsync directory), so a blob visible in
 * blobs/ is always verified (DESIGN principle 3).  An interrupted download
 * leaves the partial file; the next ingest re-hashes it and resumes at its
 * end.  All file work runs on the libuv thread pool; an ingest has at most
 * one work request in flight, which alone touches the file descriptor and
 * the hash context, so writes land in order.
 */
#include "image/img_net.h"

#include <fcntl.h>
#include <limits.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#define HEX_LEN 64
#define REHASH_BUF (256 * 1024)
/* Start writeback every WRITEBACK_STEP bytes so the fsync before publishing
 * finds little left to write. */
#define WRITEBACK_STEP (8u << 20)

struct img_content {
    char *root;   /* <root>/content */
    char *blobs;  /* <root>/content/blobs/sha256 */
    char *ingest; /* <root>/content/ingest */
    struct img_ingest *active;
};

/* ---- layout -------------------------------------------------------------- */

static bool hex_of(const char *digest, char hex[HEX_LEN + 1])
{
    if (digest == NULL || strncmp(digest, "sha256:", 7) != 0 || strlen(digest) != 7 + HEX_LEN)
        return false;
    for (int i = 0; i < HEX_LEN; i++) {
        char ch = digest[7 + i];
        if (!((ch >= '0' && ch <= '9') || (ch >= 'a' && ch <= 'f')))
            return false;
    }
    memcpy(hex, digest + 7, HEX_LEN + 1);
    return true;
}

int img_content_open(const char *root, struct img_content **out, struct ag_err *err)
{
    struct img_content *c = calloc(1, sizeof(*c));
    char path[PATH_MAX];
    int rc;

    if (c == NULL)
        return ag_err_set(err, -ENOMEM, "content store: out of memory");
    if (asprintf(&c->root, "%s/content", root) < 0 ||
        asprintf(&c->blobs, "%s/blobs/sha256", c->root) < 0 ||
        asprintf(&c->ingest, "%s/ingest", c->root) < 0) {
        img_content_free(c);
        return ag_err_set(err, -ENOMEM, "content store: out of memory");
    }
    rc = ag_mkdir_p(c->blobs, 0755);
    if (rc == 0)
        rc = ag_mkdir_p(c->ingest, 0700);
    if (rc < 0) {
        img_content_free(c);
        return ag_err_set(err, rc, "content store %s: mkdir: %s", root, strerror(-rc));
    }
    static const char layout[] = "{\"imageLayoutVersion\":\"1.0.0\"}\n";
    static const char index[] = "{\"schemaVersion\":2,\"manifests\":[]}\n";
    const struct {
        const char *name, *text;
    } files[] = {{"oci-layout", layout}, {"index.json", index}};
    for (size_t i = 0; i < AG_ARRAY_LEN(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", c->root, files[i].name);
        if (access(path, F_OK) == 0)
            continue;
        rc = ag_file_write_atomic(path, files[i].text, strlen(files[i].text), 0644);
        if (rc < 0) {
            img_content_free(c);
            return ag_err_set(err, rc, "content store: write %s: %s", path, strerror(-rc));
        }
    }
    *out = c;
    return 0;
}

void img_content_free(struct img_content *c)
{
    if (c == NULL)
        return;
    ag_assert(c->active == NULL);
    free(c->root);
    free(c->blobs);
    free(c->ingest);
    free(c);
}

int img_content_blob_path(const struct img_content *c, const char *digest, char *out,
                          size_t out_len)
{
    char hex[HEX_LEN + 1];

    if (!hex_of(digest, hex))
        return -EINVAL;
    int n = snprintf(out, out_len, "%s/%s", c->blobs, hex);
    return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}

int img_content_ingest_path(const struct img_content *c, const char *digest, char *out,
                            size_t out_len)
{
    char hex[HEX_LEN + 1];

    if (!hex_of(digest, hex))
        return -EINVAL;
    int n = snprintf(out, out_len, "%s/%s.partial", c->ingest, hex);
    return n < 0 || (size_t)n >= out_len ? -ENAMETOOLONG : 0;
}

static int fsync_dir(const char *dir)
{
    _cleanup_close_ int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

    if (fd < 0)
        return -errno;
    return fsync(fd) < 0 ? -errno : 0;
}

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    static const char digits[] = "0123456789abcdef";

    for (size_t i = 0; i < n; i++) {
        out[2 * i] = digits[in[i] >> 4];
        out[2 * i + 1] = digits[in[i] & 15];
    }
    out[2 * n] = '\0';
}

/* ---- simple operations: stat, read, delete ----------------------------------- */

enum simple_op { OP_STAT, OP_READ, OP_DELETE };

struct simple_work {
    uv_work_t work;
    enum simple_op op;
    char path[PATH_MAX];
    char hex[HEX_LEN + 1];
    size_t max_len;
    int status;
    int64_t size;
    uint8_t *bytes;
    size_t len;
    void *cb;
    void *data;
};

static int read_verified(struct simple_work *w)
{
    char *buf = NULL;
    size_t len = 0;
    uint8_t sum[32];
    char got[HEX_LEN + 1];
    int rc = ag_file_read(w->path, w->max_len, &buf, &len);

    if (rc < 0)
        return rc;
    if (mbedtls_sha256_ret((const unsigned char *)buf, len, sum, 0) != 0) {
        free(buf);
        return -EIO;
    }
    hex_encode(sum, sizeof(sum), got);
    if (strcmp(got, w->hex) != 0) {
        free(buf);
        return -EBADMSG;
    }
    w->bytes = (uint8_t *)buf;
    w->len = len;
    return 0;
}

static void simple_run(uv_work_t *req)
{
    struct simple_work *w = ag_container_of(req, struct simple_work, work);
    struct stat st;

    switch (w->op) {
    case OP_STAT:
        w->status = stat(w->path, &st) < 0 ? -errno : 0;
        w->size = w->status == 0 ? (int64_t)st.st_size : -1;
        break;
    case OP_READ:
        w->status = read_verified(w);
        break;
    case OP_DELETE:
        w->status = unlink(w->path) < 0 ? -errno : 0;
        if (w->status == 0) {
            char *slash = strrchr(w->path, '/');
            *slash = '\0';
            fsync_dir(w->path);
        }
        break;
    }
}

static void simple_done(uv_work_t *req, int status)
{
    struct simple_work *w = ag_container_of(req, struct simple_work, work);

    if (status == UV_ECANCELED)
        w->status = -ECANCELED;
    switch (w->op) {
    case OP_STAT:
        ((img_content_stat_cb)w->cb)(w->status, w->size, w->data);
        break;
    case OP_READ:
        ((img_content_read_cb)w->cb)(w->status, steal_ptr(&w->bytes), w->len, w->data);
        break;
    case OP_DELETE:
        ((img_content_done_cb)w->cb)(w->status, w->data);
        break;
    }
    free(w->bytes);
    free(w);
}

static int simple_submit(uv_loop_t *loop, struct img_content *c, const char *digest,
                         enum simple_op op, size_t max_len, void *cb, void *data)
{
    struct simple_work *w = calloc(1, sizeof(*w));
    int rc;

    if (w == NULL)
        return -ENOMEM;
    if (!hex_of(digest, w->hex) || img_content_blob_path(c, digest, w->path, sizeof(w->path)) < 0) {
        free(w);
        return -EINVAL;
    }
    w->op = op;
    w->max_len = max_len;
    w->cb = cb;
    w->data = data;
    rc = uv_queue_work(loop, &w->work, simple_run, simple_done);
    if (rc < 0)
        free(w);
    return rc;
}

int img_content_stat(uv_loop_t *loop, struct img_content *c, const char *digest,
                     img_content_stat_cb cb, void *data)
{
    return simple_submit(loop, c, digest, OP_STAT, 0, (void *)cb, data);
}

int img_content_read(uv_loop_t *loop, struct img_content *c, const char *digest, size_t max_len,
                     img_content_read_cb cb, void *data)
{
    return simple_submit(loop, c, digest, OP_READ, max_len, (void *)cb, data);
}

int img_content_delete(uv_loop_t *loop, struct img_content *c, const char *digest,
                       img_content_done_cb cb, void *data)
{
    return simple_submit(loop, c, digest, OP_DELETE, 0, (void *)cb, data);
}

/* ---- ingest ---------------------------------------------------------------------- */

/* Queue buffers of up to IBUF_CAP bytes (a socket read) are recycled, at
 * most IBUF_POOL_MAX per ingest: allocating and freeing one per read made
 * the allocator return and re-fault the same pages for every chunk. */
#define IBUF_CAP 65536
#define IBUF_POOL_MAX 32

struct ibuf {
    struct ibuf *next;
    bool pooled; /* IBUF_CAP bytes of data, may go back to the pool */
    uint64_t off;
    bool reset;
    size_t len;
    uint8_t data[];
};

enum ing_op { OP_ING_OPEN, OP_ING_WRITE, OP_ING_COMMIT };
enum ing_state { ING_OPENING, ING_OPEN, ING_COMMITTING, ING_FINISHED };

struct img_ingest {
    struct img_content *c;
    uv_loop_t *loop;
    struct img_ingest *next;
    enum ing_state state;
    char hex[HEX_LEN + 1];
    int64_t size;
    char partial[PATH_MAX];
    char final[PATH_MAX];
    int fd;
    struct img_sha256 sha;
    uint64_t offset;  /* accepted: where the next write lands */
    uint64_t written; /* on disk and hashed (worker's view) */
    uint64_t flushed; /* writeback started up to here (worker) */
    struct ibuf *q_head, *q_tail, *batch;
    struct ibuf *pool;
    size_t pool_count;
    size_t backlog;
    uv_work_t work;
    enum ing_op op;
    bool busy;
    bool freed;
    bool commit_req;
    int werr;
    int result;
    struct ag_err err;
    img_ingest_open_cb open_cb;
    img_ingest_written_cb written_cb;
    img_ingest_commit_cb commit_cb;
    void *data;
};

static void ingest_pump(struct img_ingest *ing);

static struct ibuf *ibuf_get(struct img_ingest *ing, size_t n)
{
    struct ibuf *b;

    if (n <= IBUF_CAP && ing->pool != NULL) {
        b = ing->pool;
        ing->pool = b->next;
        ing->pool_count--;
        return b;
    }
    b = malloc(sizeof(*b) + (n <= IBUF_CAP ? IBUF_CAP : n));
    if (b != NULL)
        b->pooled = n <= IBUF_CAP;
    return b;
}

static void ibuf_put(struct img_ingest *ing, struct ibuf *b)
{
    if (b->pooled && ing->pool_count < IBUF_POOL_MAX && !ing->freed) {
        b->next = ing->pool;
        ing->pool = b;
        ing->pool_count++;
        return;
    }
    free(b);
}

static int rehash_partial(struct img_ingest *ing)
{
    struct stat st;
    uint8_t *buf;

    if (fstat(ing->fd, &st) < 0)
        return -errno;
    if (ing->size >= 0 && st.st_size > ing->size) {
        /* Longer than the blob can be: useless, start over. */
        if (ftruncate(ing->fd, 0) < 0)
            return -errno;
        st.st_size = 0;
    }
    buf = malloc(REHASH_BUF);
    if (buf == NULL)
        return -ENOMEM;
    uint64_t done = 0;
    while (done < (uint64_t)st.st_size) {
        ssize_t n = pread(ing->fd, buf, REHASH_BUF, (off_t)done);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break; /* shorter than it said: resume from what was read */
        if (img_sha256_update(&ing->sha, buf, (size_t)n) < 0)
            break; /* reported by the commit's finish */
        done += (uint64_t)n;
    }
    free(buf);
    if (done < (uint64_t)st.st_size && ftruncate(ing->fd, (off_t)done) < 0)
        return -errno;
    ing->written = done;
    return 0;
}

static int work_open(struct img_ingest *ing)
{
    struct stat st;

    if (stat(ing->final, &st) == 0 && (ing->size < 0 || st.st_size == ing->size))
        return 1;
    ing->fd = open(ing->partial, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
    if (ing->fd < 0)
        return -errno;
    return rehash_partial(ing);
}

static int write_all_at(int fd, const uint8_t *p, size_t n, uint64_t off)
{
    while (n > 0) {
        ssize_t w = pwrite(fd, p, n, (off_t)off);
        if (w < 0 && errno == EINTR)
            continue;
        if (w < 0)
            return -errno;
        p += w;
        n -= (size_t)w;
        off += (uint64_t)w;
    }
    return 0;
}

static void work_write(struct img_ingest *ing)
{
    for (struct ibuf *b = ing->batch; b != NULL && ing->werr == 0; b = b->next) {
        if (b->reset) {
            if (ftruncate(ing->fd, 0) < 0) {
                ing->werr = -errno;
                break;
            }
            img_sha256_fini(&ing->sha);
            img_sha256_init(&ing->sha);
            ing->written = ing->flushed = 0;
            continue;
        }
        ing->werr = write_all_at(ing->fd, b->data, b->len, ing->written);
        if (ing->werr == 0)
            ing->werr = img_sha256_update(&ing->sha, b->data, b->len);
        if (ing->werr == 0)
            ing->written += b->len;
    }
    if (ing->written > ing->flushed + WRITEBACK_STEP) {
        /* Asynchronous: only queues the pages for writeback (best effort). */
        (void)sync_file_range(ing->fd, (off_t)ing->flushed, (off_t)(ing->written - ing->flushed),
                              SYNC_FILE_RANGE_WRITE);
        ing->flushed = ing->written;
    }
}

static int work_commit(struct img_ingest *ing)
{
    uint8_t sum[32];
    char got[HEX_LEN + 1];

    if (ing->werr < 0)
        return ag_err_set(&ing->err, ing->werr, "write %s: %s", ing->partial, strerror(-ing->werr));
    if (ing->size >= 0 && ing->written != (uint64_t)ing->size) {
        unlink(ing->partial);
        return ag_err_set(&ing->err, -EBADMSG, "size mismatch: got %llu bytes, want %lld",
                          (unsigned long long)ing->written, (long long)ing->size);
    }
    int rc = img_sha256_finish(&ing->sha, sum);
    if (rc < 0)
        return ag_err_set(&ing->err, rc, "sha256 of %s: %s", ing->partial, strerror(-rc));
    hex_encode(sum, sizeof(sum), got);
    if (strcmp(got, ing->hex) != 0) {
        unlink(ing->partial);
        return ag_err_set(&ing->err, -EBADMSG, "digest mismatch: got sha256:%s", got);
    }
    if (fsync(ing->fd) < 0)
        return ag_err_set(&ing->err, -errno, "fsync %s: %s", ing->partial, strerror(errno));
    if (rename(ing->partial, ing->final) < 0)
        return ag_err_set(&ing->err, -errno, "rename to %s: %s", ing->final, strerror(errno));
    rc = fsync_dir(ing->c->blobs);
    if (rc < 0)
        return ag_err_set(&ing->err, rc, "fsync %s: %s", ing->c->blobs, strerror(-rc));
    return 0;
}

static void ingest_run(uv_work_t *req)
{
    struct img_ingest *ing = ag_container_of(req, struct img_ingest, work);

    switch (ing->op) {
    case OP_ING_OPEN:
        ing->result = work_open(ing);
        break;
    case OP_ING_WRITE:
        work_write(ing);
        break;
    case OP_ING_COMMIT:
        ing->result = work_commit(ing);
        break;
    }
}

static void ingest_destroy(struct img_ingest *ing)
{
    struct img_ingest **pp = &ing->c->active;

    while (*pp != NULL && *pp != ing)
        pp = &(*pp)->next;
    if (*pp == ing)
        *pp = ing->next;
    for (struct ibuf *b = ing->q_head, *n; b != NULL; b = n) {
        n = b->next;
        free(b);
    }
    for (struct ibuf *b = ing->pool, *n; b != NULL; b = n) {
        n = b->next;
        free(b);
    }
    if (ing->fd >= 0)
        close(ing->fd);
    img_sha256_fini(&ing->sha);
    free(ing);
}

static void after_write(struct img_ingest *ing)
{
    struct ibuf *b = steal_ptr(&ing->batch), *n;

    for (; b != NULL; b = n) {
        n = b->next;
        ing->backlog -= b->len;
        if (!b->reset && ing->werr == 0 && !ing->freed && ing->written_cb != NULL)
            ing->written_cb(ing, b->off, b->data, b->len, ing->data);
        ibuf_put(ing, b);
    }
}

static void ingest_done(uv_work_t *req, int status)
{
    struct img_ingest *ing = ag_container_of(req, struct img_ingest, work);

    ing->busy = true; /* until the callbacks below returned */
    switch (ing->op) {
    case OP_ING_OPEN:
        ing->state = ing->result == 0 ? ING_OPEN : ING_FINISHED;
        ing->offset = ing->written;
        if (!ing->freed)
            ing->open_cb(ing, ing->result, ing->offset, ing->data);
        break;
    case OP_ING_WRITE:
        after_write(ing);
        break;
    case OP_ING_COMMIT:
        ing->state = ING_FINISHED;
        if (!ing->freed && ing->commit_cb != NULL)
            ing->commit_cb(ing, ing->result, &ing->err, ing->data);
        break;
    }
    ing->busy = false;
    ingest_pump(ing);
}

static void ingest_submit(struct img_ingest *ing, enum ing_op op)
{
    ing->op = op;
    ing->busy = true;
    if (uv_queue_work(ing->loop, &ing->work, ingest_run, ingest_done) < 0) {
        ing->busy = false;
        ing->werr = -EIO;
    }
}

static void ingest_pump(struct img_ingest *ing)
{
    if (ing->busy)
        return;
    if (ing->freed) {
        ingest_destroy(ing);
        return;
    }
    if (ing->state != ING_OPEN)
        return;
    if (ing->q_head != NULL) {
        ing->batch = steal_ptr(&ing->q_head);
        ing->q_tail = NULL;
        ingest_submit(ing, OP_ING_WRITE);
        return;
    }
    if (ing->commit_req) {
        ing->commit_req = false;
        ing->state = ING_COMMITTING;
        ingest_submit(ing, OP_ING_COMMIT);
    }
}

int img_ingest_open(uv_loop_t *loop, struct img_content *c, const char *digest, int64_t size,
                    img_ingest_open_cb cb, void *data, struct img_ingest **out)
{
    struct img_ingest *ing;

    ing = calloc(1, sizeof(*ing));
    if (ing == NULL)
        return -ENOMEM;
    if (!hex_of(digest, ing->hex)) {
        free(ing);
        return -EINVAL;
    }
    for (struct img_ingest *it = c->active; it != NULL; it = it->next)
        if (strcmp(it->hex, ing->hex) == 0) {
            free(ing);
            return -EBUSY;
        }
    ing->c = c;
    ing->loop = loop;
    ing->fd = -1;
    ing->size = size;
    ing->open_cb = cb;
    ing->data = data;
    ag_err_init(&ing->err);
    img_sha256_init(&ing->sha);
    snprintf(ing->partial, sizeof(ing->partial), "%s/%s.partial", c->ingest, ing->hex);
    snprintf(ing->final, sizeof(ing->final), "%s/%s", c->blobs, ing->hex);
    ing->next = c->active;
    c->active = ing;
    ing->state = ING_OPENING;
    ingest_submit(ing, OP_ING_OPEN);
    if (!ing->busy) {
        ingest_destroy(ing);
        return -EIO;
    }
    *out = ing;
    return 0;
}

void img_ingest_set_written_cb(struct img_ingest *ing, img_ingest_written_cb cb)
{
    ing->written_cb = cb;
}

static int enqueue(struct img_ingest *ing, struct ibuf *b)
{
    if (ing->state != ING_OPEN || ing->commit_req) {
        free(b);
        return -EINVAL;
    }
    if (ing->werr < 0) {
        free(b);
        return ing->werr;
    }
    b->next = NULL;
    if (ing->q_tail)
        ing->q_tail->next = b;
    else
        ing->q_head = b;
    ing->q_tail = b;
    ing->backlog += b->len;
    ingest_pump(ing);
    return 0;
}

int img_ingest_write(struct img_ingest *ing, const uint8_t *p, size_t n)
{
    if (n == 0)
        return 0;
    if (ing->size >= 0 && ing->offset + n > (uint64_t)ing->size)
        return -EFBIG;
    struct ibuf *b = ibuf_get(ing, n);
    if (b == NULL)
        return -ENOMEM;
    b->off = ing->offset;
    b->reset = false;
    b->len = n;
    memcpy(b->data, p, n);
    int rc = enqueue(ing, b);
    if (rc == 0)
        ing->offset += n;
    return rc;
}

int img_ingest_reset(struct img_ingest *ing)
{
    struct ibuf *b = calloc(1, sizeof(*b));

    if (b == NULL)
        return -ENOMEM;
    b->pooled = false;
    b->reset = true;
    int rc = enqueue(ing, b);
    if (rc == 0)
        ing->offset = 0;
    return rc;
}

uint64_t img_ingest_offset(const struct img_ingest *ing) { return ing->offset; }

size_t img_ingest_backlog(const struct img_ingest *ing) { return ing->backlog; }

int img_ingest_commit(struct img_ingest *ing, img_ingest_commit_cb cb)
{
    if (ing->state != ING_OPEN || ing->commit_req)
        return -EINVAL;
    ing->commit_cb = cb;
    ing->commit_req = true;
    ingest_pump(ing);
    return 0;
}

void img_ingest_free(struct img_ingest *ing)
{
    if (ing == NULL)
        return;
    ing->freed = true;
    ingest_pump(ing);
}

size_t img_content_open_ingests(const struct img_content *c)
{
    size_t n = 0;

    for (const struct img_ingest *it = c->active; it != NULL; it = it->next)
        n++;
    return n;
}
