/* agent/store internal header: the hash table, the in-memory index types and
 * the cross-file helpers of st_record.c, st_store.c, st_load.c, st_write.c
 * and st_refs.c.  Not for other folders: they include store.h. */
#ifndef ST_INTERNAL_H
#define ST_INTERNAL_H

#include "store.h"
#ifndef ST_STORE_UNAVAILABLE

#include <pb.h>

/* ---- intrusive chained hash table keyed by a NUL-terminated string ---- */
struct st_hnode {
    struct st_hnode *next;
    const char *key; /* owned by the containing object */
    uint32_t hash;
};

struct st_htab {
    struct st_hnode **buckets;
    size_t bucket_count; /* power of two, 0 before the first insert */
    size_t count;
};

uint32_t st__hash(const char *s);
/* Inserts n (its key set); grows the bucket array when it can, so the only
 * failure (-ENOMEM) happens for the very first bucket array. */
int st__htab_insert(struct st_htab *t, struct st_hnode *n) AG_WUR;
/* Allocates the bucket array so that a later insert cannot fail. */
int st__htab_reserve(struct st_htab *t) AG_WUR;
struct st_hnode *st__htab_find(const struct st_htab *t, const char *key);
void st__htab_remove(struct st_htab *t, struct st_hnode *n);
/* Frees the bucket array only; the nodes belong to their owners. */
void st__htab_fini(struct st_htab *t);
/* Walks all nodes: *bucket and *node are the cursor (start at 0/NULL). */
struct st_hnode *st__htab_next(const struct st_htab *t, size_t *bucket,
                               const struct st_hnode *node);

/* ---- in-memory index ---- */
struct st_entry;

/* One unique name an entry holds: image tags/digests, pod and container
 * reservation keys.  Lives in its namespace's names table. */
struct st_name {
    struct st_hnode node;
    struct st_entry *owner;
    char key[];
};

struct st_entry {
    struct st_hnode node; /* key = the record's id */
    enum st_kind kind;
    uint64_t seq; /* header seq of the last write */
    void *msg;    /* decoded record (heap), pb_release'd at free */
    struct st_name **names;
    size_t names_count;
};

struct st_ns {
    struct st_ns *next;
    struct st_htab recs[ST_KIND_COUNT];
    struct st_htab names;
    char name[ST_NS_MAX_LEN + 1];
};

struct st_store {
    char *meta;      /* <root>/meta */
    uv_loop_t *loop; /* NULL: blocking writes */
    uint64_t seq_max;
    struct st_ns *ns_head;
    size_t ns_count;
    struct st_htab writes; /* in-flight write requests by path */
    size_t pending;
};

/* st_record.c */
const pb_msgdesc_t *st__kind_desc(enum st_kind kind);
size_t st__kind_size(enum st_kind kind);
const char *st__kind_dir(enum st_kind kind); /* "images", "pods", "containers" */
/* The file name (64 hex) of a record id, or NULL if the id is malformed. */
const char *st__id_file(enum st_kind kind, const char *id);
/* Builds the unique name keys of rec into a new array of st_name (owner
 * unset).  Returns 0 or -ENOMEM. */
int st__names_build(enum st_kind kind, const void *rec, struct st_name ***out,
                    size_t *out_count) AG_WUR;
void st__names_free(struct st_name **names, size_t count);
/* Removes image name (key without the 'i' prefix) from an image record's
 * repo_tags/repo_digests arrays. */
void st__image_drop_name(picocri_store_ImageRecord *img, const char *name);

/* st_store.c */
struct st_ns *st__ns_find(const struct st_store *st, const char *name);
int st__ns_get(struct st_store *st, const char *name, struct st_ns **out) AG_WUR;
/* <meta>/<ns>/<kind dir>/<file> */
int st__record_path(const struct st_store *st, const char *ns, enum st_kind kind, const char *id,
                    char *out, size_t out_len) AG_WUR;
struct st_entry *st__entry_new(enum st_kind kind, void *msg, uint64_t seq);
void st__entry_free(struct st_entry *e);
/* Inserts e (names included) into ns; names held by others are taken over
 * (images) and the losers are appended to losers[] (capacity >= names
 * count) unless NULL.  Returns the number of losers. */
size_t st__entry_link(struct st_ns *ns, struct st_entry *e, struct st_entry **losers);
void st__entry_unlink(struct st_ns *ns, struct st_entry *e);
uint64_t st__seq_next(struct st_store *st);

/* st_load.c */
int st__load_all(struct st_store *st, struct ag_err *err) AG_WUR;

/* st_write.c: blocking primitives and the per-path serialised queue. */
int st__file_put(const char *path, const uint8_t *buf, size_t len) AG_WUR;
int st__file_unlink(const char *path) AG_WUR;
struct st_wreq;
/* Allocates a write (buf owned, taken) or, with buf == NULL, a delete. */
struct st_wreq *st__wreq_new(const char *path, uint8_t *buf, size_t len, st_done_cb cb, void *arg);
void st__wreq_free(struct st_wreq *req);
/* Blocking mode: performs req now and frees it; returns its status.
 * Async mode: queues it behind earlier writes of the same path (cannot
 * fail); returns 0 and cb reports later. */
int st__wreq_submit(struct st_store *st, struct st_wreq *req) AG_WUR;

#endif /* ST_STORE_UNAVAILABLE */
#endif
