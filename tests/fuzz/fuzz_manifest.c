/* libFuzzer target: OCI/Docker index, manifest and config JSON.  The first
 * byte picks the parser (and a Content-Type); the rest is the document.
 * Parsed indexes also go through platform selection for a few platforms;
 * parsed structs are checked for their invariants (valid digests, sizes
 * >= 0, bounded counts). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const char *const content_types[] = {NULL,
                                            IMG_MT_OCI_INDEX,
                                            IMG_MT_DOCKER_LIST,
                                            IMG_MT_OCI_MANIFEST,
                                            IMG_MT_DOCKER_MANIFEST,
                                            "application/json"};
static const char *const platforms[] = {"linux/amd64", "linux/arm64", "linux/arm/v7",
                                        "linux/arm/v6", "linux/arm64/v8.2"};

static void check_desc(const struct img_descriptor *d)
{
    struct ag_err err;

    if (d->size < 0 || d->media_type == NULL || img_digest_validate(d->digest, &err) != 0)
        abort();
}

static void do_index(const uint8_t *p, size_t n, const char *ct)
{
    struct img_index *idx = NULL;
    struct ag_err err;

    if (img_index_parse(p, n, ct, &idx, &err) != 0) {
        if (idx != NULL)
            abort();
        return;
    }
    if (idx->manifests_count > IMG_MANIFEST_MAX_ENTRIES)
        abort();
    for (size_t i = 0; i < idx->manifests_count; i++)
        check_desc(&idx->manifests[i]);
    for (size_t i = 0; i < sizeof(platforms) / sizeof(platforms[0]); i++) {
        struct img_platform pl;
        if (img_platform_parse(platforms[i], &pl, &err) != 0)
            abort();
        int r = img_index_select(idx, &pl, (unsigned)i & 3, &err);
        if (r >= 0 && (size_t)r >= idx->manifests_count)
            abort();
    }
    img_index_free(idx);
}

static void do_manifest(const uint8_t *p, size_t n, const char *ct)
{
    struct img_manifest *m = NULL;
    struct ag_err err;
    enum img_compression comp;
    bool enc;

    if (img_manifest_parse(p, n, ct, &m, &err) != 0) {
        if (m != NULL)
            abort();
        return;
    }
    check_desc(&m->config);
    for (size_t i = 0; i < m->layers_count; i++) {
        check_desc(&m->layers[i]);
        (void)img_media_type_layer(m->layers[i].media_type, &comp, &enc, &err);
    }
    img_manifest_free(m);
}

static void do_config(const uint8_t *p, size_t n)
{
    struct img_config *c = NULL;
    struct ag_err err;
    char chain[IMG_DIGEST_MAX];

    if (img_config_parse(p, n, &c, &err) != 0) {
        if (c != NULL)
            abort();
        return;
    }
    for (size_t i = 0; i < c->diff_ids_count; i++) {
        if (img_digest_validate(c->diff_ids[i], &err) != 0)
            abort();
    }
    if (c->diff_ids_count > 0)
        (void)img_digest_chain_id(c->diff_ids, c->diff_ids_count, chain, &err);
    img_config_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    enum img_doc_kind kind;
    struct ag_err err;
    const char *ct;

    if (size < 1)
        return 0;
    ct = content_types[(data[0] >> 2) % (sizeof(content_types) / sizeof(content_types[0]))];
    switch (data[0] & 3) {
    case 0:
        do_index(data + 1, size - 1, ct);
        break;
    case 1:
        do_manifest(data + 1, size - 1, ct);
        break;
    case 2:
        do_config(data + 1, size - 1);
        break;
    default:
        if (img_doc_detect(data + 1, size - 1, ct, &kind, &err) == 0 && kind != IMG_DOC_INDEX &&
            kind != IMG_DOC_MANIFEST)
            abort();
        break;
    }
    return 0;
}
