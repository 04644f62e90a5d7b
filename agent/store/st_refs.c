/* agent/store: who uses which unpacked layer and which content blob.  The
 * counts are derived from the records every time (images: their layers'
 * chain ids and their manifest, config, index and layer digests; containers:
 * their lower_layers), never stored, so they cannot drift from the records
 * after a crash.  The GC asks for a snapshot, deletes what has no user, and
 * drops the snapshot.  Loop thread only. */
#include "st_internal.h"
#ifndef ST_STORE_UNAVAILABLE

#include <string.h>

struct st_ref {
    struct st_hnode node; /* key = kind letter + key */
    size_t count, cap;
    struct st_ref_user *users;
    char key[];
};

struct st_refs {
    struct st_htab tab;
};

static struct st_ref *ref_find(const struct st_refs *refs, enum st_ref_kind kind, const char *key)
{
    char stackkey[160];
    size_t n = strlen(key);
    _cleanup_free_ char *heap = NULL;
    char *k = stackkey;

    if (n + 2 > sizeof(stackkey)) {
        k = heap = malloc(n + 2);
        if (k == NULL)
            return NULL;
    }
    k[0] = kind == ST_REF_LAYER ? 'L' : 'B';
    memcpy(k + 1, key, n + 1);
    struct st_hnode *h = st__htab_find(&refs->tab, k);
    return h != NULL ? ag_container_of(h, struct st_ref, node) : NULL;
}

static int ref_add(struct st_refs *refs, enum st_ref_kind kind, const char *key,
                   const struct st_ref_user *user)
{
    if (key == NULL || key[0] == '\0')
        return 0;
    struct st_ref *r = ref_find(refs, kind, key);
    if (r == NULL) {
        size_t n = strlen(key);
        r = calloc(1, sizeof(*r) + n + 2);
        if (r == NULL)
            return -ENOMEM;
        r->key[0] = kind == ST_REF_LAYER ? 'L' : 'B';
        memcpy(r->key + 1, key, n + 1);
        r->node.key = r->key;
        if (st__htab_insert(&refs->tab, &r->node) < 0) {
            free(r);
            return -ENOMEM;
        }
    }
    /* One user counts once per key (an image may list a blob twice). */
    for (size_t i = 0; i < r->count; i++)
        if (r->users[i].id == user->id && r->users[i].kind == user->kind)
            return 0;
    if (r->count == r->cap) {
        size_t cap = r->cap ? r->cap * 2 : 2;
        struct st_ref_user *u = realloc(r->users, cap * sizeof(*u));
        if (u == NULL)
            return -ENOMEM;
        r->users = u;
        r->cap = cap;
    }
    r->users[r->count++] = *user;
    return 0;
}

static int add_image(struct st_refs *refs, const struct st_ref_user *u,
                     const picocri_store_ImageRecord *img)
{
    int rc = ref_add(refs, ST_REF_BLOB, img->manifest_digest, u);

    if (rc == 0)
        rc = ref_add(refs, ST_REF_BLOB, img->config_digest, u);
    if (rc == 0)
        rc = ref_add(refs, ST_REF_BLOB, img->index_digest, u);
    for (pb_size_t i = 0; rc == 0 && i < img->layers_count; i++) {
        rc = ref_add(refs, ST_REF_BLOB, img->layers[i].digest, u);
        if (rc == 0)
            rc = ref_add(refs, ST_REF_LAYER, img->layers[i].chain_id, u);
    }
    return rc;
}

static int add_ns(struct st_refs *refs, const struct st_ns *ns)
{
    int rc = 0;

    for (int k = ST_KIND_IMAGE; k <= ST_KIND_CONTAINER; k += ST_KIND_CONTAINER) {
        size_t b = 0;
        for (struct st_hnode *n = st__htab_next(&ns->recs[k], &b, NULL); rc == 0 && n != NULL;
             n = st__htab_next(&ns->recs[k], &b, n)) {
            const struct st_entry *e = ag_container_of(n, struct st_entry, node);
            struct st_ref_user u = {.ns = ns->name, .kind = e->kind, .id = e->node.key};
            if (e->kind == ST_KIND_IMAGE) {
                rc = add_image(refs, &u, e->msg);
                continue;
            }
            const picocri_store_ContainerRecord *c = e->msg;
            for (pb_size_t i = 0; rc == 0 && i < c->lower_layers_count; i++)
                rc = ref_add(refs, ST_REF_LAYER, c->lower_layers[i], &u);
        }
    }
    return rc;
}

int st_refs_build(struct st_store *st, struct st_refs **out)
{
    struct st_refs *refs = calloc(1, sizeof(*refs));
    int rc = refs != NULL ? st__htab_reserve(&refs->tab) : -ENOMEM;

    for (const struct st_ns *ns = st->ns_head; rc == 0 && ns != NULL; ns = ns->next)
        rc = add_ns(refs, ns);
    if (rc < 0) {
        st_refs_free(refs);
        return rc;
    }
    *out = refs;
    return 0;
}

void st_refs_free(struct st_refs *refs)
{
    if (refs == NULL)
        return;
    size_t b = 0;
    struct st_hnode *n = st__htab_next(&refs->tab, &b, NULL);
    while (n != NULL) {
        struct st_hnode *next = st__htab_next(&refs->tab, &b, n);
        struct st_ref *r = ag_container_of(n, struct st_ref, node);
        free(r->users);
        free(r);
        n = next;
    }
    st__htab_fini(&refs->tab);
    free(refs);
}

size_t st_refs_count(const struct st_refs *refs, enum st_ref_kind kind, const char *key)
{
    const struct st_ref *r = ref_find(refs, kind, key);

    return r != NULL ? r->count : 0;
}

const struct st_ref_user *st_refs_user(const struct st_refs *refs, enum st_ref_kind kind,
                                       const char *key, size_t index)
{
    const struct st_ref *r = ref_find(refs, kind, key);

    return r != NULL && index < r->count ? &r->users[index] : NULL;
}
#endif /* ST_STORE_UNAVAILABLE */
