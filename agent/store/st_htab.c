/* agent/store: a small intrusive chained hash table keyed by strings (FNV-1a),
 * used for records by id, unique names and in-flight writes.  Nodes live in
 * their owners; the table owns only its bucket array.  Invariant: after
 * st__htab_reserve() or one successful insert, inserting never fails (a
 * failed grow keeps the old, longer chains). */
#include "st_internal.h"
#ifndef ST_STORE_UNAVAILABLE

#include <string.h>

#define ST_HTAB_MIN 16

uint32_t st__hash(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s != '\0'; s++) {
        h ^= (unsigned char)*s;
        h *= 16777619u;
    }
    return h;
}

int st__htab_reserve(struct st_htab *t)
{
    if (t->bucket_count != 0)
        return 0;
    t->buckets = calloc(ST_HTAB_MIN, sizeof(*t->buckets));
    if (t->buckets == NULL)
        return -ENOMEM;
    t->bucket_count = ST_HTAB_MIN;
    return 0;
}

static void grow(struct st_htab *t)
{
    size_t n = t->bucket_count * 2;
    struct st_hnode **nb = calloc(n, sizeof(*nb));

    if (nb == NULL)
        return;
    for (size_t i = 0; i < t->bucket_count; i++) {
        struct st_hnode *x = t->buckets[i];
        while (x != NULL) {
            struct st_hnode *next = x->next;
            size_t b = x->hash & (n - 1);
            x->next = nb[b];
            nb[b] = x;
            x = next;
        }
    }
    free(t->buckets);
    t->buckets = nb;
    t->bucket_count = n;
}

int st__htab_insert(struct st_htab *t, struct st_hnode *n)
{
    int rc = st__htab_reserve(t);

    if (rc < 0)
        return rc;
    if (t->count >= t->bucket_count)
        grow(t);
    n->hash = st__hash(n->key);
    size_t b = n->hash & (t->bucket_count - 1);
    n->next = t->buckets[b];
    t->buckets[b] = n;
    t->count++;
    return 0;
}

struct st_hnode *st__htab_find(const struct st_htab *t, const char *key)
{
    if (t->bucket_count == 0)
        return NULL;
    uint32_t h = st__hash(key);
    for (struct st_hnode *x = t->buckets[h & (t->bucket_count - 1)]; x != NULL; x = x->next)
        if (x->hash == h && strcmp(x->key, key) == 0)
            return x;
    return NULL;
}

void st__htab_remove(struct st_htab *t, struct st_hnode *n)
{
    if (t->bucket_count == 0)
        return;
    struct st_hnode **pp = &t->buckets[n->hash & (t->bucket_count - 1)];
    for (; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == n) {
            *pp = n->next;
            n->next = NULL;
            t->count--;
            return;
        }
    }
}

void st__htab_fini(struct st_htab *t)
{
    free(t->buckets);
    t->buckets = NULL;
    t->bucket_count = 0;
    t->count = 0;
}

struct st_hnode *st__htab_next(const struct st_htab *t, size_t *bucket, const struct st_hnode *node)
{
    if (node != NULL && node->next != NULL)
        return node->next;
    size_t b = node != NULL ? *bucket + 1 : *bucket;
    for (; b < t->bucket_count; b++) {
        if (t->buckets[b] != NULL) {
            *bucket = b;
            return t->buckets[b];
        }
    }
    *bucket = t->bucket_count;
    return NULL;
}
#endif /* ST_STORE_UNAVAILABLE */
