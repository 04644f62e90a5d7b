/* agent/store: lookups (id, name, unique prefix) and the mutating calls
 * (put, delete).  A put validates, encodes and allocates first, then
 * changes the index in one step that cannot fail, then hands the encoded
 * bytes to st_write.c.  When an image takes a name from another image, the
 * other image is rewritten only after the new one is durable, so a crash
 * between the two writes leaves the name on both (repaired at the next open:
 * the newer write keeps it) and never on neither. */
#include "st_internal.h"
#ifndef ST_STORE_UNAVAILABLE

#include <limits.h>
#include <stdio.h>
#include <string.h>

#define ST_IMAGE_ID_LEN (7 + ST_ID_HEX_LEN)

/* Loser images to rewrite once the winner is on disk (async mode). */
struct st_chain {
    struct st_store *st;
    st_done_cb cb;
    void *arg;
    size_t count;
    char ns[ST_NS_MAX_LEN + 1];
    char ids[][ST_IMAGE_ID_LEN + 1];
};

static struct st_entry *entry_find(const struct st_ns *ns, enum st_kind kind, const char *id)
{
    struct st_hnode *n = st__htab_find(&ns->recs[kind], id);

    return n != NULL ? ag_container_of(n, struct st_entry, node) : NULL;
}

static struct st_entry *name_find(const struct st_ns *ns, const char *key)
{
    struct st_hnode *n = st__htab_find(&ns->names, key);

    return n != NULL ? ag_container_of(n, struct st_name, node)->owner : NULL;
}

static int prefix_find(const struct st_ns *ns, enum st_kind kind, const char *prefix,
                       struct st_entry **out, struct ag_err *err)
{
    size_t plen = strlen(prefix), b = 0, skip = kind == ST_KIND_IMAGE ? 7 : 0;
    struct st_entry *found = NULL;

    for (struct st_hnode *n = st__htab_next(&ns->recs[kind], &b, NULL); n != NULL;
         n = st__htab_next(&ns->recs[kind], &b, n)) {
        if (strncmp(n->key + skip, prefix, plen) != 0)
            continue;
        if (found != NULL) {
            char esc[80];
            ag_str_escape(esc, sizeof(esc), prefix, 64);
            return ag_err_set(err, -EINVAL, "ambiguous id prefix %s: matches several %s", esc,
                              st__kind_dir(kind));
        }
        found = ag_container_of(n, struct st_entry, node);
    }
    if (found == NULL)
        return -ENOENT;
    *out = found;
    return 0;
}

int st_get(struct st_store *st, const char *ns_name, enum st_kind kind, const char *ref,
           const void **out, struct ag_err *err)
{
    const struct st_ns *ns = st__ns_find(st, ns_name);
    struct st_entry *e = NULL;
    char key[PATH_MAX];
    int rc;

    if ((unsigned)kind >= ST_KIND_COUNT || ref == NULL || ref[0] == '\0')
        return ag_err_set(err, -EINVAL, "empty %s reference", "record");
    if (ns == NULL)
        goto none;
    e = entry_find(ns, kind, ref);
    if (e == NULL && kind == ST_KIND_IMAGE) {
        if (snprintf(key, sizeof(key), "i%s", ref) < (int)sizeof(key))
            e = name_find(ns, key);
        if (e == NULL && st_id_valid(ref)) {
            snprintf(key, sizeof(key), "sha256:%s", ref);
            e = entry_find(ns, kind, key);
        }
    }
    if (e == NULL) {
        const char *prefix = ref;
        if (kind == ST_KIND_IMAGE && strncmp(prefix, "sha256:", 7) == 0)
            prefix += 7;
        /* Only hex can prefix an id; "nginx" must not match "...". */
        if (prefix[0] == '\0' || prefix[strspn(prefix, "0123456789abcdef")] != '\0')
            goto none;
        rc = prefix_find(ns, kind, prefix, &e, err);
        if (rc == -ENOENT)
            goto none;
        if (rc < 0)
            return rc;
    }
    *out = e->msg;
    return 0;
none:;
    char esc[80];
    ag_str_escape(esc, sizeof(esc), ref, 64);
    return ag_err_set(err, -ENOENT, "%s %s not found", st__kind_dir(kind), esc);
}

int st_image_find_name(struct st_store *st, const char *ns_name, const char *name,
                       const picocri_store_ImageRecord **out)
{
    const struct st_ns *ns = st__ns_find(st, ns_name);
    char key[PATH_MAX];

    if (ns == NULL || snprintf(key, sizeof(key), "i%s", name) >= (int)sizeof(key))
        return -ENOENT;
    struct st_entry *e = name_find(ns, key);
    if (e == NULL)
        return -ENOENT;
    *out = e->msg;
    return 0;
}

int st_pod_find_name(struct st_store *st, const char *ns_name, const char *name,
                     const char *k8s_namespace, const char *uid, uint32_t attempt,
                     const picocri_store_PodRecord **out)
{
    const struct st_ns *ns = st__ns_find(st, ns_name);
    char key[PATH_MAX];

    if (ns == NULL || snprintf(key, sizeof(key), "p%s\x1f%s\x1f%s\x1f%u", name, k8s_namespace, uid,
                               (unsigned)attempt) >= (int)sizeof(key))
        return -ENOENT;
    struct st_entry *e = name_find(ns, key);
    if (e == NULL)
        return -ENOENT;
    *out = e->msg;
    return 0;
}

int st_container_find_name(struct st_store *st, const char *ns_name, const char *pod_id,
                           const char *name, uint32_t attempt,
                           const picocri_store_ContainerRecord **out)
{
    const struct st_ns *ns = st__ns_find(st, ns_name);
    char key[PATH_MAX];

    if (ns == NULL || snprintf(key, sizeof(key), "c%s\x1f%s\x1f%u", pod_id, name,
                               (unsigned)attempt) >= (int)sizeof(key))
        return -ENOENT;
    struct st_entry *e = name_find(ns, key);
    if (e == NULL)
        return -ENOENT;
    *out = e->msg;
    return 0;
}

/* Shape checks a put makes on top of the decoder's (the id). */
static int validate(enum st_kind kind, const void *rec, struct ag_err *err)
{
    if (kind == ST_KIND_POD) {
        const picocri_store_PodRecord *pod = rec;
        if (pod->config == NULL || pod->config->metadata == NULL)
            return ag_err_set(err, -EINVAL, "pod %s: config.metadata is required", pod->id);
    } else if (kind == ST_KIND_CONTAINER) {
        const picocri_store_ContainerRecord *ctr = rec;
        if (!st_id_valid(ctr->pod_id))
            return ag_err_set(err, -EINVAL, "container %s: malformed pod id", ctr->id);
        if (ctr->config == NULL || ctr->config->metadata == NULL)
            return ag_err_set(err, -EINVAL, "container %s: config.metadata is required", ctr->id);
    }
    return 0;
}

static int check_reserved(const struct st_ns *ns, struct st_entry *e, struct ag_err *err)
{
    for (size_t i = 0; e->kind != ST_KIND_IMAGE && i < e->names_count; i++) {
        struct st_entry *holder = name_find(ns, e->names[i]->key);
        if (holder != NULL && strcmp(holder->node.key, e->node.key) != 0)
            return ag_err_set(err, -EEXIST, "%s name is reserved for %s",
                              e->kind == ST_KIND_POD ? "pod" : "container", holder->node.key);
    }
    return 0;
}

/* Writes the current in-memory state of one record (after a name was taken
 * from it); nothing to do if it was deleted meanwhile. */
static int rewrite(struct st_store *st, const char *ns_name, enum st_kind kind, const char *id)
{
    const struct st_ns *ns = st__ns_find(st, ns_name);
    struct st_entry *e = ns != NULL ? entry_find(ns, kind, id) : NULL;
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;

    if (e == NULL)
        return 0;
    int rc = st__record_path(st, ns_name, kind, id, path, sizeof(path));
    if (rc < 0)
        return rc;
    e->seq = st__seq_next(st);
    rc = st_record_encode(kind, e->seq, e->msg, &buf, &len);
    if (rc < 0)
        return rc;
    struct st_wreq *req = st__wreq_new(path, buf, len, NULL, NULL);
    if (req == NULL) {
        free(buf);
        return -ENOMEM;
    }
    return st__wreq_submit(st, req);
}

static void rewrite_losers(struct st_store *st, const char *ns, char (*ids)[ST_IMAGE_ID_LEN + 1],
                           size_t count)
{
    for (size_t i = 0; i < count; i++) {
        int rc = rewrite(st, ns, ST_KIND_IMAGE, ids[i]);
        /* The next open repairs it: the newer record keeps the name. */
        if (rc < 0)
            ag_log(AG_WARN, "store rewrite ns=%s image=%s failed: %s", ns, ids[i], strerror(-rc));
    }
}

static void on_image_durable(int status, void *arg)
{
    struct st_chain *ch = arg;

    if (status == 0)
        rewrite_losers(ch->st, ch->ns, ch->ids, ch->count);
    if (ch->cb != NULL)
        ch->cb(status, ch->arg);
    free(ch);
}

/* Everything a put allocates before it changes the index. */
struct put_plan {
    struct st_entry *e;
    struct st_wreq *req;
    struct st_chain *chain;
    struct st_entry **losers;
};

static void plan_fini(struct put_plan *p)
{
    if (p->e != NULL) {
        free(p->e->msg); /* contents are still the caller's */
        p->e->msg = NULL;
        st__names_free(p->e->names, p->e->names_count);
        free(p->e);
    }
    st__wreq_free(p->req);
    free(p->chain);
    free(p->losers);
}

static int plan(struct st_store *st, const char *ns, enum st_kind kind, void *rec, st_done_cb cb,
                void *arg, struct put_plan *p)
{
    char path[PATH_MAX];
    uint8_t *buf = NULL;
    size_t len = 0;
    int rc = st__record_path(st, ns, kind, st_record_id(kind, rec), path, sizeof(path));

    if (rc < 0)
        return rc;
    uint64_t seq = st__seq_next(st);
    rc = st_record_encode(kind, seq, rec, &buf, &len);
    if (rc < 0)
        return rc;
    /* A shallow copy: the contents stay the caller's until the commit. */
    void *msg = malloc(st__kind_size(kind));
    if (msg != NULL)
        memcpy(msg, rec, st__kind_size(kind));
    if (msg == NULL || (p->e = st__entry_new(kind, msg, seq)) == NULL) {
        free(msg);
        free(buf);
        return -ENOMEM;
    }
    size_t cap = p->e->names_count;
    p->losers = calloc(cap + 1, sizeof(*p->losers));
    if (kind == ST_KIND_IMAGE && st->loop != NULL && p->losers != NULL) {
        p->chain = calloc(1, sizeof(*p->chain) + (cap + 1) * sizeof(p->chain->ids[0]));
        if (p->chain != NULL) {
            *p->chain = (struct st_chain){.st = st, .cb = cb, .arg = arg};
            memcpy(p->chain->ns, ns, strlen(ns) + 1);
            cb = on_image_durable;
            arg = p->chain;
        }
    }
    p->req = st__wreq_new(path, buf, len, cb, arg);
    if (p->req == NULL)
        free(buf);
    if (p->req == NULL || p->losers == NULL ||
        (kind == ST_KIND_IMAGE && st->loop != NULL && p->chain == NULL))
        return -ENOMEM;
    return 0;
}

int st_put(struct st_store *st, const char *ns_name, enum st_kind kind, void *rec, st_done_cb cb,
           void *arg, struct ag_err *err)
{
    struct put_plan p = {0};
    struct st_ns *ns = NULL;
    int rc;

    if ((unsigned)kind >= ST_KIND_COUNT || rec == NULL)
        return ag_err_set(err, -EINVAL, "put: bad arguments");
    if (st->loop == NULL && cb != NULL)
        return ag_err_set(err, -EINVAL, "put: completion callback needs a store with a loop");
    const char *id = st_record_id(kind, rec);
    if (st__id_file(kind, id) == NULL)
        return ag_err_set(err, -EINVAL, "put: malformed %s id", st__kind_dir(kind));
    rc = validate(kind, rec, err);
    if (rc < 0)
        return rc;
    rc = st__ns_get(st, ns_name, &ns);
    if (rc < 0)
        return ag_err_set(err, rc, "put: namespace: %s", strerror(-rc));
    rc = plan(st, ns_name, kind, rec, cb, arg, &p);
    if (rc == 0)
        rc = check_reserved(ns, p.e, err);
    else
        ag_err_set(err, rc, "put %s %s: %s", st__kind_dir(kind), id, strerror(-rc));
    if (rc < 0) {
        plan_fini(&p);
        return rc;
    }

    /* Commit: from here on nothing fails until the write itself. */
    struct st_entry *e = steal_ptr(&p.e);
    memset(rec, 0, st__kind_size(kind));
    struct st_entry *old = entry_find(ns, kind, e->node.key);
    if (old != NULL) {
        st__entry_unlink(ns, old);
        st__entry_free(old);
    }
    size_t nl = st__entry_link(ns, e, p.losers);
    char(*ids)[ST_IMAGE_ID_LEN + 1] = p.chain != NULL ? p.chain->ids : NULL;
    for (size_t i = 0; ids != NULL && i < nl; i++)
        snprintf(ids[i], sizeof(ids[i]), "%s", p.losers[i]->node.key);
    if (p.chain != NULL)
        p.chain->count = nl;
    p.chain = NULL; /* owned by the request's callback now */

    rc = st__wreq_submit(st, steal_ptr(&p.req));
    if (st->loop == NULL && rc == 0 && nl > 0) {
        char(*bids)[ST_IMAGE_ID_LEN + 1] = calloc(nl, sizeof(*bids));
        for (size_t i = 0; bids != NULL && i < nl; i++)
            snprintf(bids[i], sizeof(bids[i]), "%s", p.losers[i]->node.key);
        if (bids != NULL)
            rewrite_losers(st, ns_name, bids, nl);
        else
            ag_log(AG_WARN, "store rewrite ns=%s: out of memory", ns_name);
        free(bids);
    }
    free(p.losers);
    if (rc < 0)
        return ag_err_set(err, rc, "write %s %s: %s", st__kind_dir(kind), e->node.key,
                          strerror(-rc));
    return 0;
}

int st_delete(struct st_store *st, const char *ns_name, enum st_kind kind, const char *id,
              st_done_cb cb, void *arg, struct ag_err *err)
{
    struct st_ns *ns = st__ns_find(st, ns_name);
    char path[PATH_MAX];

    if ((unsigned)kind >= ST_KIND_COUNT || id == NULL)
        return ag_err_set(err, -EINVAL, "delete: bad arguments");
    if (st->loop == NULL && cb != NULL)
        return ag_err_set(err, -EINVAL, "delete: completion callback needs a store with a loop");
    struct st_entry *e = ns != NULL ? entry_find(ns, kind, id) : NULL;
    if (e == NULL)
        return ag_err_set(err, -ENOENT, "%s %s not found", st__kind_dir(kind), id);
    /* id may be the record's own string, freed below. */
    char idbuf[ST_IMAGE_ID_LEN + 1];
    snprintf(idbuf, sizeof(idbuf), "%s", e->node.key);
    id = idbuf;
    int rc = st__record_path(st, ns_name, kind, id, path, sizeof(path));
    if (rc < 0)
        return ag_err_set(err, rc, "delete %s: %s", id, strerror(-rc));
    struct st_wreq *req = st__wreq_new(path, NULL, 0, cb, arg);
    if (req == NULL)
        return ag_err_set(err, -ENOMEM, "delete %s: out of memory", id);
    st__entry_unlink(ns, e);
    st__entry_free(e);
    rc = st__wreq_submit(st, req);
    if (rc < 0)
        return ag_err_set(err, rc, "delete %s %s: %s", st__kind_dir(kind), id, strerror(-rc));
    return 0;
}
#endif /* ST_STORE_UNAVAILABLE */
