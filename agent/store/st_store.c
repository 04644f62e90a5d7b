/* agent/store: the in-memory index and the put/get/delete API.  Each
 * namespace holds one id table per kind and one table of unique names
 * (image tags and digests, pod and container reservations).  Invariants:
 * every entry's name nodes are exactly the ones linked in its namespace's
 * names table; a name belongs to at most one entry; a put allocates
 * everything it needs before it changes anything, so a failed put leaves the
 * index as it was.  Runs on the loop thread only; disk work is st_write.c's. */
#include "st_internal.h"
#ifndef ST_STORE_UNAVAILABLE

#include <stdio.h>
#include <string.h>

struct st_ns *st__ns_find(const struct st_store *st, const char *name)
{
    for (struct st_ns *ns = st->ns_head; ns != NULL; ns = ns->next)
        if (strcmp(ns->name, name) == 0)
            return ns;
    return NULL;
}

static void ns_free(struct st_ns *ns)
{
    for (int k = 0; k < ST_KIND_COUNT; k++) {
        size_t b = 0;
        struct st_hnode *n = st__htab_next(&ns->recs[k], &b, NULL);
        while (n != NULL) {
            struct st_hnode *next = st__htab_next(&ns->recs[k], &b, n);
            st__entry_free(ag_container_of(n, struct st_entry, node));
            n = next;
        }
        st__htab_fini(&ns->recs[k]);
    }
    st__htab_fini(&ns->names);
    free(ns);
}

int st__ns_get(struct st_store *st, const char *name, struct st_ns **out)
{
    struct st_ns *ns = st__ns_find(st, name);

    if (ns == NULL) {
        if (!st_ns_name_valid(name))
            return -EINVAL;
        ns = calloc(1, sizeof(*ns));
        if (ns == NULL)
            return -ENOMEM;
        memcpy(ns->name, name, strlen(name) + 1);
        /* Reserve every table now so that linking entries cannot fail. */
        int rc = st__htab_reserve(&ns->names);
        for (int k = 0; k < ST_KIND_COUNT && rc == 0; k++)
            rc = st__htab_reserve(&ns->recs[k]);
        if (rc < 0) {
            ns_free(ns);
            return rc;
        }
        ns->next = st->ns_head;
        st->ns_head = ns;
        st->ns_count++;
    }
    *out = ns;
    return 0;
}

bool st_ns_name_valid(const char *name)
{
    size_t len = name != NULL ? strlen(name) : 0;
    bool prev_alnum = false;

    if (len == 0 || len > ST_NS_MAX_LEN)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = name[i];
        bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
        if (!alnum && (!prev_alnum || (c != '.' && c != '_' && c != '-')))
            return false;
        prev_alnum = alnum;
    }
    return prev_alnum;
}

int st__record_path(const struct st_store *st, const char *ns, enum st_kind kind, const char *id,
                    char *out, size_t out_len)
{
    const char *file = st__id_file(kind, id);

    if (file == NULL)
        return -EINVAL;
    int n = snprintf(out, out_len, "%s/%s/%s/%s", st->meta, ns, st__kind_dir(kind), file);
    return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : 0;
}

uint64_t st__seq_next(struct st_store *st)
{
    /* Wall-clock time when it moves forward, else one more than the last:
     * boards without an RTC boot in 1970 until NTP answers. */
    uint64_t now = (uint64_t)ag_now_ns();

    st->seq_max = now > st->seq_max ? now : st->seq_max + 1;
    return st->seq_max;
}

struct st_entry *st__entry_new(enum st_kind kind, void *msg, uint64_t seq)
{
    struct st_entry *e = calloc(1, sizeof(*e));

    if (e == NULL)
        return NULL;
    if (st__names_build(kind, msg, &e->names, &e->names_count) < 0) {
        free(e);
        return NULL;
    }
    e->kind = kind;
    e->seq = seq;
    e->msg = msg;
    e->node.key = st_record_id(kind, msg);
    for (size_t i = 0; i < e->names_count; i++)
        e->names[i]->owner = e;
    return e;
}

void st__entry_free(struct st_entry *e)
{
    if (e == NULL)
        return;
    st_record_release(e->kind, e->msg);
    free(e->msg);
    st__names_free(e->names, e->names_count);
    free(e);
}

/* Frees nm, one of e's names (already out of the names table); with
 * edit_msg, an image record also stops listing the name. */
static void entry_drop_name(struct st_entry *e, struct st_name *nm, bool edit_msg)
{
    for (size_t i = 0; i < e->names_count; i++) {
        if (e->names[i] == nm) {
            e->names[i] = e->names[--e->names_count];
            break;
        }
    }
    if (edit_msg && e->kind == ST_KIND_IMAGE)
        st__image_drop_name(e->msg, nm->key + 1);
    free(nm);
}

/* True if a is the newer claim: larger seq, ties broken by id. */
static bool newer(const struct st_entry *a, const struct st_entry *b)
{
    if (a->seq != b->seq)
        return a->seq > b->seq;
    return strcmp(a->node.key, b->node.key) > 0;
}

static void add_loser(struct st_entry **losers, size_t *n, struct st_entry *e)
{
    for (size_t i = 0; i < *n; i++)
        if (losers[i] == e)
            return;
    losers[(*n)++] = e;
}

size_t st__entry_link(struct st_ns *ns, struct st_entry *e, struct st_entry **losers)
{
    size_t nlosers = 0;

    /* Cannot fail: the tables were reserved when the namespace was made. */
    ag_assert(st__htab_insert(&ns->recs[e->kind], &e->node) == 0);
    for (size_t i = 0; i < e->names_count;) {
        struct st_name *nm = e->names[i];
        struct st_hnode *h = st__htab_find(&ns->names, nm->key);
        struct st_name *held = h ? ag_container_of(h, struct st_name, node) : NULL;
        if (held != NULL && held->owner == e) {
            entry_drop_name(e, nm, false); /* the record lists the name twice */
            continue;
        }
        if (held != NULL) {
            struct st_entry *loser = newer(e, held->owner) ? held->owner : e;
            struct st_name *gone = loser == e ? nm : held;
            if (loser->kind != ST_KIND_IMAGE)
                ag_log(AG_WARN, "store name conflict ns=%s id=%s other=%s: keeping the newer",
                       ns->name, e->node.key, held->owner->node.key);
            if (losers != NULL && loser->kind == ST_KIND_IMAGE)
                add_loser(losers, &nlosers, loser);
            if (loser == e) {
                entry_drop_name(e, nm, true);
                continue;
            }
            st__htab_remove(&ns->names, &gone->node);
            entry_drop_name(held->owner, gone, true);
        }
        ag_assert(st__htab_insert(&ns->names, &nm->node) == 0);
        i++;
    }
    return nlosers;
}

void st__entry_unlink(struct st_ns *ns, struct st_entry *e)
{
    st__htab_remove(&ns->recs[e->kind], &e->node);
    for (size_t i = 0; i < e->names_count; i++)
        st__htab_remove(&ns->names, &e->names[i]->node);
}

/* ---- store ---- */

int st_store_open(const char *root, uv_loop_t *loop, struct st_store **out, struct ag_err *err)
{
    struct st_store *st = calloc(1, sizeof(*st));
    int rc = -ENOMEM;

    if (st == NULL)
        return ag_err_set(err, -ENOMEM, "open store: out of memory");
    st->loop = loop;
    if (asprintf(&st->meta, "%s/meta", root) < 0) {
        st->meta = NULL;
        goto fail;
    }
    rc = st__htab_reserve(&st->writes);
    if (rc < 0)
        goto fail;
    rc = ag_mkdir_p(st->meta, 0700);
    if (rc < 0) {
        ag_err_set(err, rc, "create %s: %s", st->meta, strerror(-rc));
        goto fail_wrapped;
    }
    rc = st__load_all(st, err);
    if (rc < 0)
        goto fail_wrapped;
    *out = st;
    return 0;
fail:
    ag_err_set(err, rc, "open store: %s", strerror(-rc));
fail_wrapped:
    st_store_close(st);
    return err->code;
}

void st_store_close(struct st_store *st)
{
    if (st == NULL)
        return;
    /* In-flight writes reference the store from the thread pool. */
    ag_assert(st->pending == 0);
    while (st->ns_head != NULL) {
        struct st_ns *ns = st->ns_head;
        st->ns_head = ns->next;
        ns_free(ns);
    }
    st__htab_fini(&st->writes);
    free(st->meta);
    free(st);
}

size_t st_store_pending(const struct st_store *st) { return st->pending; }
const char *st_store_meta_dir(const struct st_store *st) { return st->meta; }

const char *st_store_ns_name(const struct st_store *st, size_t index)
{
    const struct st_ns *ns = st->ns_head;

    for (; ns != NULL && index > 0; index--)
        ns = ns->next;
    return ns != NULL ? ns->name : NULL;
}

size_t st_count(const struct st_store *st, const char *ns, enum st_kind kind)
{
    const struct st_ns *n = (unsigned)kind < ST_KIND_COUNT ? st__ns_find(st, ns) : NULL;

    return n != NULL ? n->recs[kind].count : 0;
}

void st_iter_init(struct st_iter *it, const struct st_store *st, const char *ns, enum st_kind kind)
{
    const struct st_ns *n = (unsigned)kind < ST_KIND_COUNT ? st__ns_find(st, ns) : NULL;

    it->table = n != NULL ? &n->recs[kind] : NULL;
    it->bucket = 0;
    it->node = NULL;
}

const void *st_iter_next(struct st_iter *it)
{
    if (it->table == NULL)
        return NULL;
    struct st_hnode *n = st__htab_next(it->table, &it->bucket, it->node);
    it->node = n;
    if (n == NULL) {
        it->table = NULL;
        return NULL;
    }
    return ag_container_of(n, struct st_entry, node)->msg;
}
#endif /* ST_STORE_UNAVAILABLE */
