/* agent/image: the image service's lifetime and its disk housekeeping —
 * opening the content store and the registry client, removing leftover
 * temporary layer trees at start, and deleting unused layer directories
 * and blobs on the thread pool.
 *
 * Layout under root: content/ (OCI image layout, img_content.c) and
 * layers/<chain id hex>/ (one unpacked layer each).  "<hex>.tmp-*" is a
 * layer being built, "<hex>.del-*" one being deleted: neither is ever
 * used as a layer, and both are removed at start.
 *
 * Invariant: a layer directory or blob is deleted only when no record
 * (image or container, per st_refs) and no in-flight pull uses it.
 */
#include "image/img_service_int.h"

#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define RM_MAX_DEPTH 512

/* ---- removal (thread pool or start-up) ------------------------------------------- */

static int rm_at(int dfd, const char *name, int depth)
{
    struct stat st;
    int fd, rc = 0;
    DIR *d;
    struct dirent *de;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : -errno;
    if (!S_ISDIR(st.st_mode))
        return unlinkat(dfd, name, 0) < 0 && errno != ENOENT ? -errno : 0;
    if (depth > RM_MAX_DEPTH)
        return -ELOOP;
    fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    if ((d = fdopendir(fd)) == NULL) {
        rc = -errno;
        close(fd);
        return rc;
    }
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        int r = rm_at(dirfd(d), de->d_name, depth + 1);
        if (r < 0 && rc == 0)
            rc = r;
    }
    closedir(d);
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT && rc == 0)
        rc = -errno;
    return rc;
}

int img_svc__rm_tree(const char *path)
{
    return rm_at(AT_FDCWD, path, 0);
}

static void clean_leftovers(const char *layers_dir)
{
    DIR *d = opendir(layers_dir);
    struct dirent *de;

    if (d == NULL)
        return;
    while ((de = readdir(d)) != NULL)
        if (strstr(de->d_name, ".tmp-") != NULL || strstr(de->d_name, ".del-") != NULL) {
            ag_log(AG_INFO, "removing leftover layer tree %s/%s", layers_dir, de->d_name);
            (void)rm_at(dirfd(d), de->d_name, 0);
        }
    closedir(d);
}

/* ---- lifetime ------------------------------------------------------------------------ */

int img_svc_new(const struct img_svc_opts *o, struct img_svc **out, struct ag_err *err)
{
    struct img_svc *s = calloc(1, sizeof(*s));
    int rc;

    if (s == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    s->loop = o->loop;
    s->st = o->store;
    s->ns = o->ns ? o->ns : ST_DEFAULT_NS;
    s->max_layer_bytes = o->max_layer_bytes;
    s->unpack_flags = o->unpack_flags;
    if (snprintf(s->root, sizeof(s->root), "%s", o->root) >= (int)sizeof(s->root) ||
        snprintf(s->layers_dir, sizeof(s->layers_dir), "%s/layers", o->root) >=
            (int)sizeof(s->layers_dir)) {
        free(s);
        return ag_err_set(err, -ENAMETOOLONG, "root path too long");
    }
    if ((rc = ag_mkdir_p(s->layers_dir, 0700)) < 0) {
        ag_err_set(err, rc, "create %s: %s", s->layers_dir, strerror(-rc));
        free(s);
        return rc;
    }
    clean_leftovers(s->layers_dir);
    rc = o->platform ? img_platform_parse(o->platform, &s->platform, err)
                     : img_platform_host(&s->platform, err);
    if (rc == 0)
        rc = img_content_open(o->root, &s->content, err); /* <root>/content */
    if (rc == 0 && o->registries != NULL && o->registries[0] != '\0')
        rc = img_registries_load(o->registries, &s->regs, err);
    if (rc == 0) {
        struct img_registry_opts ro = {
            .loop = o->loop,
            .content = s->content,
            .registries = s->regs,
            .max_parallel_blobs = o->max_parallel_blobs,
            .proxy_from_env = true,
        };
        rc = img_registry_new(&ro, &s->reg, err);
    }
    if (rc < 0) {
        img_registries_free(s->regs);
        img_content_free(s->content);
        free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void img_svc__unbusy(struct img_svc *s)
{
    ag_assert(s->busy > 0);
    s->busy--;
    img_svc__maybe_free(s);
}

#define FREE_POLL_MS 10
#define FREE_POLL_MAX 3000 /* 30 s */

struct retire {
    uv_timer_t timer;
    struct img_content *content;
    unsigned ticks;
    img_svc_closed_cb cb;
    void *arg;
};

static void on_retire_closed(uv_handle_t *h)
{
    struct retire *r = h->data;
    img_svc_closed_cb cb = r->cb;
    void *arg = r->arg;

    free(r);
    ag_log(AG_INFO, "image service closed");
    if (cb != NULL)
        cb(arg);
}

/* The registry client frees its ingests only after their thread-pool work
 * ends (an ingest is "open" until then); the content store may go only
 * when none is left (bounded wait).  Other thread-pool work of the service
 * has ended already (busy == 0) and keeps no pointer to the store. */
static void on_retire_tick(uv_timer_t *t)
{
    struct retire *r = t->data;
    size_t open = img_content_open_ingests(r->content);

    if (open > 0 && ++r->ticks < FREE_POLL_MAX)
        return;
    if (open == 0)
        img_content_free(r->content);
    else
        ag_log(AG_WARN, "image service: work still in flight at close; content store kept");
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, on_retire_closed);
}

void img_svc__maybe_free(struct img_svc *s)
{
    struct retire *r;

    if (!s->closing || s->busy > 0 || s->pulls != NULL || s->jobs != NULL)
        return;
    if (s->reg != NULL)
        img_registry_close(s->reg);
    img_registries_free(s->regs);
    r = calloc(1, sizeof(*r));
    if (r == NULL) {
        ag_log(AG_WARN, "image service: out of memory at close; content store kept");
        if (s->closed_cb != NULL)
            s->closed_cb(s->closed_arg);
        free(s);
        return;
    }
    r->content = s->content;
    r->cb = s->closed_cb;
    r->arg = s->closed_arg;
    uv_timer_init(s->loop, &r->timer);
    r->timer.data = r;
    uv_timer_start(&r->timer, on_retire_tick, 0, FREE_POLL_MS);
    free(s);
}

void img_svc_close(struct img_svc *s, img_svc_closed_cb cb, void *arg)
{
    if (s == NULL || s->closing)
        return;
    s->closing = true;
    s->closed_cb = cb;
    s->closed_arg = arg;
    /* Busy guard: cancellation may complete pulls synchronously. */
    s->busy++;
    img_pull__cancel_all(s);
    img_svc__unbusy(s);
}

const char *img_svc_layers_dir(const struct img_svc *s) { return s->layers_dir; }

/* ---- garbage collection ------------------------------------------------------------ */

struct gc_work {
    uv_work_t work;
    struct img_svc *svc;
    char **chains; /* layer directory paths to delete */
    size_t chain_count;
    char **blobs; /* blob paths to delete */
    size_t blob_count;
    img_svc_done_cb cb;
    void *arg;
};

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        free(v[i]);
    free(v);
}

static void on_gc_work(uv_work_t *w)
{
    struct gc_work *g = ag_container_of(w, struct gc_work, work);
    char tmp[IMG_SVC_PATH_MAX + 32];

    for (size_t i = 0; i < g->chain_count; i++) {
        /* Rename first: a half-deleted tree must never look like a layer. */
        snprintf(tmp, sizeof(tmp), "%s.del-%d", g->chains[i], getpid());
        if (rename(g->chains[i], tmp) == 0)
            (void)img_svc__rm_tree(tmp);
    }
    for (size_t i = 0; i < g->blob_count; i++)
        (void)unlink(g->blobs[i]);
}

static void on_gc_done(uv_work_t *w, int status)
{
    struct gc_work *g = ag_container_of(w, struct gc_work, work);
    struct img_svc *s = g->svc;

    img_svc_done_cb cb = g->cb;
    void *arg = g->arg;

    (void)status;
    free_strv(g->chains, g->chain_count);
    free_strv(g->blobs, g->blob_count);
    free(g);
    if (cb != NULL)
        cb(arg, NULL);
    img_svc__unbusy(s);
}

static const char *hex_of(const char *id)
{
    const char *c = strchr(id, ':');
    return c ? c + 1 : id;
}

/* Keeps the entries of v nothing uses, turned into paths; frees the rest. */
static size_t filter_layers(struct img_svc *s, const struct st_refs *refs, char **v, size_t n)
{
    size_t k = 0;
    char key[IMG_DIGEST_MAX + 8], path[IMG_SVC_PATH_MAX];

    for (size_t i = 0; i < n; i++) {
        const char *hex = hex_of(v[i]);
        snprintf(key, sizeof(key), "sha256:%s", hex);
        bool keep = strlen(hex) == 64 && st_refs_count(refs, ST_REF_LAYER, key) == 0 &&
                    !img_svc__layer_in_use(s, hex) &&
                    snprintf(path, sizeof(path), "%s/%s", s->layers_dir, hex) < (int)sizeof(path);
        for (size_t j = 0; keep && j < k; j++)
            keep = strcmp(v[j], path) != 0;
        if (keep) {
            char *p = strdup(path);
            if (p != NULL) {
                free(v[i]);
                v[k++] = p;
                continue;
            }
        }
        free(v[i]);
    }
    return k;
}

static size_t filter_blobs(struct img_svc *s, const struct st_refs *refs, char **v, size_t n)
{
    size_t k = 0;
    char path[IMG_SVC_PATH_MAX];

    for (size_t i = 0; i < n; i++) {
        /* Blobs of images still being pulled are in no record yet. */
        bool keep = st_refs_count(refs, ST_REF_BLOB, v[i]) == 0 && !img_pull__uses_blob(s, v[i]) &&
                    img_content_blob_path(s->content, v[i], path, sizeof(path)) == 0;
        for (size_t j = 0; keep && j < k; j++)
            keep = strcmp(v[j], path) != 0;
        char *p = keep ? strdup(path) : NULL;
        free(v[i]);
        if (p != NULL)
            v[k++] = p;
    }
    return k;
}

void img_svc__gc(struct img_svc *s, char **chains, size_t chain_count, char **digests,
                 size_t digest_count, img_svc_done_cb cb, void *arg)
{
    struct st_refs *refs = NULL;
    struct gc_work *g = NULL;

    if (st_refs_build(s->st, &refs) < 0 || (g = calloc(1, sizeof(*g))) == NULL) {
        ag_log(AG_WARN, "image gc: out of memory; unused layers stay on disk");
        goto out;
    }
    g->svc = s;
    g->cb = cb;
    g->arg = arg;
    g->chain_count = filter_layers(s, refs, chains, chain_count);
    g->chains = steal_ptr(&chains);
    g->blob_count = filter_blobs(s, refs, digests, digest_count);
    g->blobs = steal_ptr(&digests);
    chain_count = digest_count = 0;
    if (g->chain_count == 0 && g->blob_count == 0)
        goto out;
    if (uv_queue_work(s->loop, &g->work, on_gc_work, on_gc_done) < 0)
        goto out;
    s->busy++;
    g = NULL;
    cb = NULL;
out:
    st_refs_free(refs);
    if (g != NULL) {
        free_strv(g->chains, g->chain_count);
        free_strv(g->blobs, g->blob_count);
        free(g);
    }
    free_strv(chains, chain_count);
    free_strv(digests, digest_count);
    if (cb != NULL)
        cb(arg, NULL);
}
