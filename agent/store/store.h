/* agent/store: the namespaced metadata store.  Images, pods and containers
 * are records (picocri.store.ImageRecord, PodRecord, ContainerRecord from
 * store.proto), one file each under <root>/meta/<namespace>/<kind>s/, loaded
 * into an in-memory index at open and written atomically on every change.
 *
 * Threading: every function here runs on the loop thread (or, for a store
 * opened without a loop, on the one thread that owns it).  Memory operations
 * never block.  Disk writes either happen inside the call (store opened with
 * loop == NULL: start-up tools, tests) or run on the libuv thread pool and
 * report through an st_done_cb on the loop (store opened with a loop).
 *
 * Ownership: records handed to put are moved into the store; records
 * returned by get/find/iter are borrowed and valid until the next change to
 * that record (put or delete of the same id) or st_store_close().
 */
#ifndef ST_STORE_H
#define ST_STORE_H

#include "ag_core.h"

/* store.pb.h is generated from store.proto by the Makefile.  Until the
 * generator can build it, the store compiles to nothing and its unit test
 * and fuzzer fail, saying so, instead of breaking everyone's build. */
#if !__has_include("store.pb.h")
#define ST_STORE_UNAVAILABLE 1
#else
#include "store.pb.h"

#include <uv.h>

#define ST_ID_HEX_LEN 64         /* pod and container ids; image ids are "sha256:" + 64 hex */
#define ST_NS_MAX_LEN 76         /* containerd's namespace name limit */
#define ST_RECORD_MAX (4u << 20) /* largest record file accepted, header included */
#define ST_DEFAULT_NS "k8s.io"

enum st_kind { ST_KIND_IMAGE = 0, ST_KIND_POD = 1, ST_KIND_CONTAINER = 2, ST_KIND_COUNT = 3 };

struct st_store;

/* Completion of a disk write: status 0, or negative errno (the failure is
 * also logged with the record's path). */
typedef void (*st_done_cb)(int status, void *arg);

/* ---- store ----------------------------------------------------------------- */

/* Opens (creating if needed) <root>/meta and loads every namespace: removes
 * leftover "*.tmp.*" files, moves torn or corrupt records to
 * <root>/meta/<ns>/corrupt/ with a warning, and repairs image names claimed
 * by two images (the newer write keeps the name).  Blocking: start-up only.
 * loop == NULL selects blocking writes; otherwise writes use loop's thread
 * pool.  Returns 0 and *out (owned; st_store_close), or negative errno with
 * err set (-ENOMEM, -EACCES, -ENOTDIR, ...). */
int st_store_open(const char *root, uv_loop_t *loop, struct st_store **out,
                  struct ag_err *err) AG_WUR;
/* Frees the store and every record.  Accepts NULL.  Must not be called while
 * writes are in flight (st_store_pending() != 0): run the loop until they
 * complete first. */
void st_store_close(struct st_store *st);
/* Number of records with a disk write in flight (async mode). */
size_t st_store_pending(const struct st_store *st);
/* The <root>/meta directory (borrowed). */
const char *st_store_meta_dir(const struct st_store *st);
/* Namespaces with at least one loaded or put record, by index (0..): returns
 * NULL past the end.  Borrowed. */
const char *st_store_ns_name(const struct st_store *st, size_t index);
/* Returns true if name is a valid namespace name (containerd's rule:
 * [A-Za-z0-9]+ joined by single '.', '_' or '-', at most 76 bytes). */
bool st_ns_name_valid(const char *name);

/* ---- generic records ----------------------------------------------------------
 * `rec` is a picocri_store_ImageRecord / PodRecord / ContainerRecord matching
 * kind.  Every pointer field must be heap memory from malloc (pb_release frees
 * it). */

/* Looks up by full id, then (images) by exact name in repo_tags/repo_digests,
 * then by unique id prefix (images accept the prefix with or without
 * "sha256:").  Returns 0 and *out (borrowed), -ENOENT if nothing matches,
 * -EINVAL if the prefix matches more than one record (err says so) or ref is
 * empty. */
int st_get(struct st_store *st, const char *ns, enum st_kind kind, const char *ref,
           const void **out, struct ag_err *err) AG_WUR;
/* Stores rec (new, or replacing the record with the same id).  On success the
 * contents of *rec are moved into the store and *rec is zeroed; on failure
 * *rec is untouched and still the caller's.
 *  - The id must be well-formed (images "sha256:<64 hex>", others 64 hex).
 *  - Pods: (metadata name, namespace, uid, attempt) must not be held by
 *    another pod; containers: (pod_id, metadata name, attempt) must not be
 *    held by another container: else -EEXIST "name is reserved".
 *  - Images: each repo tag/digest moves to this image; the previous holder
 *    loses it (and is rewritten after this record is durable).
 * The memory index changes at once.  Blocking mode: the record is written
 * before return (cb must be NULL).  Async mode: returns 0 after queueing;
 * cb (may be NULL) runs on the loop once the write completed, with its
 * status.  Returns -EINVAL (bad id, bad ns), -EEXIST, -ENOMEM, or a write
 * error in blocking mode (the memory change then stays, see README). */
int st_put(struct st_store *st, const char *ns, enum st_kind kind, void *rec, st_done_cb cb,
           void *arg, struct ag_err *err) AG_WUR;
/* Removes the record with this exact full id (unlink + fsync directory).
 * Returns 0, -ENOENT if absent (callers decide about idempotency), or a
 * write error in blocking mode.  cb as for st_put. */
int st_delete(struct st_store *st, const char *ns, enum st_kind kind, const char *id, st_done_cb cb,
              void *arg, struct ag_err *err) AG_WUR;
/* Number of records of a kind in a namespace. */
size_t st_count(const struct st_store *st, const char *ns, enum st_kind kind);

/* Iteration in unspecified order.  The store must not change during an
 * iteration (collect ids first, then put/delete). */
struct st_iter {
    const void *table;
    size_t bucket;
    const void *node;
};
void st_iter_init(struct st_iter *it, const struct st_store *st, const char *ns, enum st_kind kind);
/* Returns the next record (borrowed) or NULL at the end. */
const void *st_iter_next(struct st_iter *it);

/* Deep copy (via encode/decode): *dst is zeroed first and owned by the
 * caller afterwards (st_record_release).  Returns 0 or -ENOMEM/-EINVAL. */
int st_record_copy(enum st_kind kind, const void *src, void *dst) AG_WUR;
/* Frees every pointer field of rec (pb_release) and zeroes it. */
void st_record_release(enum st_kind kind, void *rec);

/* ---- typed helpers ------------------------------------------------------------- */

/* Exact name (repo tag or repo digest) -> image; -ENOENT if none. */
int st_image_find_name(struct st_store *st, const char *ns, const char *name,
                       const picocri_store_ImageRecord **out) AG_WUR;
/* The pod holding (name, namespace, uid, attempt); -ENOENT if none. */
int st_pod_find_name(struct st_store *st, const char *ns, const char *name,
                     const char *k8s_namespace, const char *uid, uint32_t attempt,
                     const picocri_store_PodRecord **out) AG_WUR;
/* The container holding (pod_id, name, attempt); -ENOENT if none. */
int st_container_find_name(struct st_store *st, const char *ns, const char *pod_id,
                           const char *name, uint32_t attempt,
                           const picocri_store_ContainerRecord **out) AG_WUR;

static inline int st_image_get(struct st_store *st, const char *ns, const char *ref,
                               const picocri_store_ImageRecord **out, struct ag_err *err)
{
    return st_get(st, ns, ST_KIND_IMAGE, ref, (const void **)out, err);
}
static inline int st_pod_get(struct st_store *st, const char *ns, const char *ref,
                             const picocri_store_PodRecord **out, struct ag_err *err)
{
    return st_get(st, ns, ST_KIND_POD, ref, (const void **)out, err);
}
static inline int st_container_get(struct st_store *st, const char *ns, const char *ref,
                                   const picocri_store_ContainerRecord **out, struct ag_err *err)
{
    return st_get(st, ns, ST_KIND_CONTAINER, ref, (const void **)out, err);
}
static inline int st_image_put(struct st_store *st, const char *ns, picocri_store_ImageRecord *rec,
                               st_done_cb cb, void *arg, struct ag_err *err)
{
    return st_put(st, ns, ST_KIND_IMAGE, rec, cb, arg, err);
}
static inline int st_pod_put(struct st_store *st, const char *ns, picocri_store_PodRecord *rec,
                             st_done_cb cb, void *arg, struct ag_err *err)
{
    return st_put(st, ns, ST_KIND_POD, rec, cb, arg, err);
}
static inline int st_container_put(struct st_store *st, const char *ns,
                                   picocri_store_ContainerRecord *rec, st_done_cb cb, void *arg,
                                   struct ag_err *err)
{
    return st_put(st, ns, ST_KIND_CONTAINER, rec, cb, arg, err);
}

/* ---- ids ---------------------------------------------------------------------- */

/* Writes 64 lowercase hex chars from getrandom() and a NUL into out.
 * Returns 0 or negative errno (-ENOSYS, -EIO). */
int st_id_new(char out[ST_ID_HEX_LEN + 1]) AG_WUR;
/* True if s is exactly 64 lowercase hex chars. */
bool st_id_valid(const char *s);

/* ---- record files --------------------------------------------------------------
 * File = 24-byte header (magic "PCST", u16 version, u8 kind, u8 0, u64 seq,
 * u32 payload length, u32 CRC32 of header[0..20) + payload; little-endian)
 * followed by the protobuf payload.  Exposed for tests and the fuzzer. */
#define ST_HDR_LEN 24

/* Encodes rec with a header; *out is owned (free). */
int st_record_encode(enum st_kind kind, uint64_t seq, const void *rec, uint8_t **out,
                     size_t *out_len) AG_WUR;
/* Checks and decodes untrusted file bytes: header, exact length, CRC,
 * protobuf, and the record's id shape.  On success *rec (zeroed first, of
 * kind's type) is owned by the caller (st_record_release) and *seq is set.
 * Returns 0, -EBADMSG (torn, corrupt, wrong kind), -EFBIG, -ENOMEM. */
int st_record_decode(enum st_kind kind, const uint8_t *data, size_t len, void *rec,
                     uint64_t *seq) AG_WUR;
/* The id of a record of kind (borrowed; NULL if unset). */
const char *st_record_id(enum st_kind kind, const void *rec);

/* ---- layer and blob references -------------------------------------------------
 * Who uses which unpacked layer (keyed by chain id) and which content blob
 * (keyed by digest), computed from the records, never persisted, so it cannot
 * drift.  A snapshot: rebuild after changes.  Layers with count 0 (absent)
 * are GC candidates. */
enum st_ref_kind { ST_REF_LAYER = 0, ST_REF_BLOB = 1 };

struct st_refs;
struct st_ref_user {
    const char *ns; /* borrowed from the store */
    enum st_kind kind;
    const char *id; /* borrowed from the store */
};
/* Builds the reference snapshot over every namespace.  Images use their
 * layers' chain ids and their manifest, config, index and layer blobs;
 * containers use their lower_layers.  Valid until the store changes.
 * Returns 0 or -ENOMEM. */
int st_refs_build(struct st_store *st, struct st_refs **out) AG_WUR;
void st_refs_free(struct st_refs *refs);
/* Number of users of key (0 = unused: a GC candidate). */
size_t st_refs_count(const struct st_refs *refs, enum st_ref_kind kind, const char *key);
/* The index-th user of key, or NULL past the end. */
const struct st_ref_user *st_refs_user(const struct st_refs *refs, enum st_ref_kind kind,
                                       const char *key, size_t index);

#endif /* store.pb.h */
#endif
