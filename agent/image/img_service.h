/* agent/image: the image service — what the CRI ImageService needs, on top
 * of the registry client, the parsers and the unpacker of image.h.
 *
 * Pull (img_pull*.c): reference normalisation, manifest or index fetch with
 * platform selection for the running machine, config fetch and parse, every
 * layer fetched into the content store (at most max_parallel_blobs at
 * once, resumable) and unpacked as it arrives on the thread pool into
 * <root>/layers/<chain-id hex>/ (one directory per ChainID, shared between
 * images, used by the runtime as an overlayfs lower dir), DiffIDs
 * verified, then the ImageRecord written through the store.  Two pulls of
 * the same reference share one pull; two pulls sharing a layer share its
 * download and unpack.
 *
 * Records (img_service*.c): ImageStatus, ListImages, RemoveImage (layers
 * and blobs still used by another image or a container stay),
 * ImageFsInfo.
 *
 * Threading: every function runs on the loop thread and never blocks,
 * except img_svc_new (start-up).  Callbacks run on the loop thread.
 */
#ifndef IMG_SERVICE_H
#define IMG_SERVICE_H

#include "ag_core.h"
#include "image/image.h"

#include <uv.h>

#include "api.pb.h"

struct st_store;
struct img_svc;
struct img_pull_waiter;

struct img_svc_opts {
    uv_loop_t *loop;           /* required */
    struct st_store *store;    /* borrowed; opened with loop (async writes) */
    const char *root;          /* content/ and layers/ go under it */
    const char *registries;    /* registries.yaml path, NULL = none */
    const char *ns;            /* store namespace; NULL = "k8s.io" */
    unsigned max_parallel_blobs; /* 0 = 3 */
    uint64_t max_layer_bytes;  /* decompression bound per layer; 0 = 2 GiB */
    unsigned unpack_flags;     /* IMG_UNPACK_* */
    const char *platform;      /* "os/arch[/variant]"; NULL = the running machine */
};

/* Blocking (start-up): opens the content store, reads registries.yaml and
 * the CA files, detects the platform, removes leftover temporary layer
 * directories.  Returns 0 with *out owned (img_svc_close), or a negative
 * errno with err. */
int img_svc_new(const struct img_svc_opts *o, struct img_svc **out, struct ag_err *err) AG_WUR;

typedef void (*img_svc_closed_cb)(void *arg);
/* Cancels every pull (their callbacks run with -ECANCELED), closes the
 * registry client and frees the service once no work is in flight; then
 * calls cb (may be NULL).  Accepts NULL (cb is then not called). */
void img_svc_close(struct img_svc *s, img_svc_closed_cb cb, void *arg);

/* ---- pull ------------------------------------------------------------------ */

/* Completion of a pull: err->code 0 and image_id "sha256:<config hex>" on
 * success.  Both valid for the call only. */
typedef void (*img_pull_cb)(void *arg, const struct ag_err *err, const char *image_id);

/* PullImage.  image is the reference as the client wrote it (normalised
 * here; -EINVAL with the reason if malformed).  auth may be NULL (copied).
 * spec may be NULL (its annotations are kept in the record; borrowed for
 * the call).  *waiter (may be NULL) allows img_svc_pull_cancel.  Returns 0
 * (cb will run exactly once) or a negative errno with err (cb will not
 * run). */
int img_svc_pull(struct img_svc *s, const char *image, const struct img_auth_config *auth,
                 const runtime_v1_ImageSpec *spec, img_pull_cb cb, void *arg,
                 struct img_pull_waiter **waiter, struct ag_err *err) AG_WUR;
/* Detaches one waiter: its callback never runs.  When a pull has no
 * waiter left, its downloads stop (partial blobs stay for a resume). */
void img_svc_pull_cancel(struct img_pull_waiter *w);
/* Progress of the in-flight pull of image (normalised like a pull) as
 * JSON: {"ref":..,"phase":..,"layers":[{"digest":..,"done":N,"total":N,
 * "state":..}]}; returns owned text, or NULL when no pull of it runs. */
char *img_svc_pull_progress(struct img_svc *s, const char *image);

/* ---- records ------------------------------------------------------------------ */

/* ImageStatus: *out->image is set (owned, pb_release) when found, left
 * NULL when absent (not an error).  verbose adds info["info"] (JSON). */
int img_svc_status(struct img_svc *s, const char *image, bool verbose,
                   runtime_v1_ImageStatusResponse *out, struct ag_err *err) AG_WUR;
/* ListImages into *out (owned, pb_release); filter may be NULL. */
int img_svc_list(struct img_svc *s, const runtime_v1_ImageFilter *filter,
                 runtime_v1_ListImagesResponse *out, struct ag_err *err) AG_WUR;

typedef void (*img_svc_done_cb)(void *arg, const struct ag_err *err);
/* RemoveImage by id, id prefix, tag or digest reference; absent succeeds.
 * Removes the record (all its names), then deletes on the thread pool the
 * layer directories and blobs nothing else uses.  Returns 0 (cb runs once)
 * or a negative errno with err (cb does not run). */
int img_svc_remove(struct img_svc *s, const char *image, img_svc_done_cb cb, void *arg,
                   struct ag_err *err) AG_WUR;

struct img_fs_usage {
    uint64_t bytes;
    uint64_t inodes;
    int64_t timestamp_ns;
    const char *mountpoint; /* borrowed from the service */
};
typedef void (*img_svc_fsinfo_cb)(void *arg, const struct ag_err *err,
                                  const struct img_fs_usage *u);
/* ImageFsInfo: bytes (allocated blocks) and inodes under content/ and
 * layers/, walked on the thread pool.  Returns 0 (cb runs once) or a
 * negative errno. */
int img_svc_fsinfo(struct img_svc *s, img_svc_fsinfo_cb cb, void *arg, struct ag_err *err) AG_WUR;

/* The directory of unpacked layers (<root>/layers), borrowed. */
const char *img_svc_layers_dir(const struct img_svc *s);

#endif
