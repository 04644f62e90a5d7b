/* agent/image: internal state shared by img_service*.c and img_pull*.c.
 *
 * Ownership: the service owns its pulls (svc->pulls) and layer jobs
 * (svc->jobs); a pull references the jobs of its layers through
 * job waiters, and a job outlives a cancelled pull only until its own
 * worker is idle.  Everything is touched on the loop thread only, except
 * the members a job marks "worker" while its uv_work_t is in flight.
 */
#ifndef IMG_SERVICE_INT_H
#define IMG_SERVICE_INT_H

#include "image/img_service.h"
#include "store/store.h"

#include <limits.h>

#define IMG_SVC_PATH_MAX 1024
#define IMG_SVC_NAME_MAX (IMG_REF_NAME_MAX + IMG_DIGEST_MAX + 8)

struct img_pull;
struct img_layer_job;

struct img_svc {
    uv_loop_t *loop;
    struct st_store *st;
    const char *ns;
    char root[IMG_SVC_PATH_MAX];
    char layers_dir[IMG_SVC_PATH_MAX];
    struct img_content *content;
    struct img_registries *regs;
    struct img_registry *reg;
    struct img_platform platform;
    unsigned platform_flags;
    uint64_t max_layer_bytes;
    unsigned unpack_flags;
    struct img_pull *pulls;
    struct img_layer_job *jobs;
    size_t busy; /* work items and store writes in flight */
    bool closing;
    img_svc_closed_cb closed_cb;
    void *closed_arg;
};

/* ---- img_service.c ---- */
void img_svc__unbusy(struct img_svc *s);
/* Frees the service if it is closing and idle. */
void img_svc__maybe_free(struct img_svc *s);
/* True if an in-flight pull or job uses the layer with this chain id hex. */
bool img_svc__layer_in_use(const struct img_svc *s, const char *chain_hex);
/* Deletes (on the thread pool) the layer directories of chain ids (hex or
 * "sha256:hex") and the blobs in digests that no record and no in-flight
 * pull uses.  Takes ownership of both arrays.  cb (may be NULL) runs once
 * when done, possibly before this returns. */
void img_svc__gc(struct img_svc *s, char **chains, size_t chain_count, char **digests,
                 size_t digest_count, img_svc_done_cb cb, void *arg);
/* Removes a directory tree without following symlinks (thread pool). */
int img_svc__rm_tree(const char *path);
/* Canonical name for lookups: the reference normalised, or the text as is
 * (ids, id prefixes).  Returns 0 or -ENAMETOOLONG. */
void img_svc__lookup_name(const char *image, char *out, size_t out_len);
const picocri_store_ImageRecord *img_svc__find(struct img_svc *s, const char *image);

/* A heap copy of src's annotations with `image` as the image (pulled
 * records and the CRI Image message both name the image by its id); on
 * failure *out holds what was made, for pb_release by the caller. */
int img_svc__spec_copy(const runtime_v1_ImageSpec *src, const char *image,
                       runtime_v1_ImageSpec **out) AG_WUR;

/* ---- img_auth helpers (img_pull.c) ---- */
int img_svc__auth_copy(const struct img_auth_config *src, struct img_auth_config *dst) AG_WUR;

/* ---- layer jobs (img_pull_layer.c) ---- */
struct img_layer_req {
    const struct img_ref *ref;           /* domain/path to fetch from */
    const struct img_auth_config *auth;  /* copied */
    const char *digest;
    const char *media_type;
    int64_t size;
    const char *diff_id;
    const char *chain_id;                /* "sha256:<hex>" */
};
/* Called on the loop when the layer is ready in <layers>/<chain hex>
 * (status 0) or failed. */
typedef void (*img_layer_done_cb)(struct img_pull *p, size_t index, int status,
                                  const struct ag_err *err);
/* Starts (or joins) the job of one layer for pull p's layer index. */
int img_layer_job_join(struct img_svc *s, const struct img_layer_req *r, struct img_pull *p,
                       size_t index, struct ag_err *err) AG_WUR;
/* Stops pull p's layers: p leaves jobs shared with other pulls
 * (img_pull__layer_detached for each) and jobs only p waits for fail with
 * -ECANCELED, reporting to p after their cleanup (possibly before this
 * returns). */
void img_layer_job_leave(struct img_svc *s, struct img_pull *p);
/* Progress of a job that pull p waits for, by layer index. */
void img_layer_job_progress(const struct img_svc *s, const struct img_pull *p, size_t index,
                            uint64_t *done, int64_t *total, const char **state);
void img_pull__layer_done(struct img_pull *p, size_t index, int status, const struct ag_err *err);
/* p no longer waits for layer index (it did not complete for p). */
void img_pull__layer_detached(struct img_pull *p, size_t index);

/* ---- records (img_pull_record.c) ---- */
struct img_pull_info {
    const struct img_ref *ref;
    const struct img_manifest *man;
    const struct img_config *cfg;
    const char *manifest_digest;
    const char *manifest_media_type;
    int64_t manifest_size;
    const char *index_digest;        /* "" or NULL: none */
    const char *tag;                 /* "domain/path:tag" or NULL */
    const char *repo_digest;         /* "domain/path@digest" or NULL */
    const runtime_v1_ImageSpec *spec; /* may be NULL */
    const char *layers_dir;
    const char *source;              /* "registry", "import" */
};
/* Builds the ImageRecord of a pulled image: id = config digest, names
 * merged with those of an existing record of the same id, layers with
 * their ChainIDs and directories, size, uid/username.  *rec is owned by
 * the caller (st_record_release) also on failure. */
int img_pull__build_record(struct img_svc *s, const struct img_pull_info *pi,
                           picocri_store_ImageRecord *rec, struct ag_err *err) AG_WUR;

/* ---- pulls (img_pull.c) ---- */
void img_pull__cancel_all(struct img_svc *s);
/* Fills chain ids (hex) used by in-flight pulls into the callback. */
bool img_pull__uses_chain(const struct img_svc *s, const char *chain_hex);
bool img_pull__uses_blob(const struct img_svc *s, const char *digest);

#endif
