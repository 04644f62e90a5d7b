/* agent/runtime: `picocri import` — an image from a local OCI layout into
 * the daemon's data directory, with the daemon stopped: the manifest and
 * config blobs are copied into <root>/content, each layer is unpacked (and
 * its DiffID verified) into <root>/layers/<chain id hex>, and an
 * ImageRecord (source "import") is stored.  For preloading images into a
 * device image and for tests; pulling from registries is the image
 * service's job.
 *
 * Blocking command-line code; the store is opened in blocking mode, so the
 * daemon must not run at the same time (its memory would not see it).
 */
#include "rt_svc_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "image/image.h"

#define IMPORT_MAX_JSON (4u << 20)
#define REF_NAME_ANNOTATION "org.opencontainers.image.ref.name"

struct import {
    const char *layout, *tag, *root;
    char name[IMG_REF_NAME_MAX + IMG_REF_TAG_MAX + 160];
    struct img_manifest *m;
    struct img_config *cfg;
    char manifest_digest[IMG_DIGEST_MAX];
    struct ag_err err;
};

static int blob_path(const char *base, const char *digest, char *out, size_t len)
{
    const char *hex = strchr(digest, ':');
    if (hex == NULL || strncmp(digest, "sha256:", 7) != 0)
        return -EINVAL;
    return snprintf(out, len, "%s/blobs/sha256/%s", base, hex + 1) < (int)len ? 0 : -ENAMETOOLONG;
}

static int read_verified(struct import *im, const char *digest, char **data, size_t *len)
{
    char path[SVC_PATH];
    int rc;

    if ((rc = blob_path(im->layout, digest, path, sizeof(path))) < 0)
        return ag_err_set(&im->err, rc, "bad digest %s", digest);
    if ((rc = ag_file_read(path, IMPORT_MAX_JSON, data, len)) < 0)
        return ag_err_set(&im->err, rc, "read %s: %s", path, strerror(-rc));
    return img_digest_verify(digest, *data, *len, &im->err);
}

static int find_manifest(struct import *im)
{
    char path[SVC_PATH];
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    struct img_index *idx = NULL;
    int rc;

    snprintf(path, sizeof(path), "%s/index.json", im->layout);
    if ((rc = ag_file_read(path, IMPORT_MAX_JSON, &data, &len)) < 0)
        return ag_err_set(&im->err, rc, "read %s: %s", path, strerror(-rc));
    if ((rc = img_index_parse(data, len, IMG_MT_OCI_INDEX, &idx, &im->err)) < 0)
        return rc;
    rc = ag_err_set(&im->err, -ENOENT, "no manifest tagged \"%s\" in %s", im->tag ? im->tag : "",
                    im->layout);
    for (size_t i = 0; i < idx->manifests_count; i++) {
        const struct img_descriptor *d = &idx->manifests[i];
        bool match = im->tag == NULL;
        for (size_t a = 0; !match && a < d->annotations_count; a++)
            match = strcmp(d->annotations[a].key, REF_NAME_ANNOTATION) == 0 &&
                    strcmp(d->annotations[a].value, im->tag) == 0;
        if (match) {
            snprintf(im->manifest_digest, sizeof(im->manifest_digest), "%s", d->digest);
            ag_err_init(&im->err);
            rc = 0;
            break;
        }
    }
    img_index_free(idx);
    return rc;
}

static int load_docs(struct import *im)
{
    _cleanup_free_ char *mdata = NULL;
    _cleanup_free_ char *cdata = NULL;
    size_t mlen = 0, clen = 0;
    char dst[SVC_PATH];
    int rc;

    if ((rc = find_manifest(im)) < 0 ||
        (rc = read_verified(im, im->manifest_digest, &mdata, &mlen)) < 0 ||
        (rc = img_manifest_parse(mdata, mlen, NULL, &im->m, &im->err)) < 0 ||
        (rc = read_verified(im, im->m->config.digest, &cdata, &clen)) < 0 ||
        (rc = img_config_parse(cdata, clen, &im->cfg, &im->err)) < 0)
        return rc;
    if (im->cfg->diff_ids_count != im->m->layers_count)
        return ag_err_set(&im->err, -EINVAL, "config has %zu diff_ids for %zu layers",
                          im->cfg->diff_ids_count, im->m->layers_count);
    /* The daemon reads the config (and keeps the manifest) from content. */
    char content[SVC_PATH - 32];
    if (snprintf(content, sizeof(content), "%s/content", im->root) >= (int)sizeof(content))
        return ag_err_set(&im->err, -ENAMETOOLONG, "root path too long");
    snprintf(dst, sizeof(dst), "%s/blobs/sha256", content);
    if ((rc = ag_mkdir_p(dst, 0755)) < 0)
        return ag_err_set(&im->err, rc, "create %s: %s", dst, strerror(-rc));
    if ((rc = blob_path(content, im->m->config.digest, dst, sizeof(dst))) < 0 ||
        (rc = ag_file_write_atomic(dst, cdata, clen, 0644)) < 0)
        return ag_err_set(&im->err, rc, "write config blob: %s", strerror(-rc));
    if ((rc = blob_path(content, im->manifest_digest, dst, sizeof(dst))) < 0 ||
        (rc = ag_file_write_atomic(dst, mdata, mlen, 0644)) < 0)
        return ag_err_set(&im->err, rc, "write manifest blob: %s", strerror(-rc));
    return 0;
}

static int unpack_layer(struct import *im, size_t i, picocri_store_LayerRecord *l)
{
    const struct img_descriptor *d = &im->m->layers[i];
    char chain[IMG_DIGEST_MAX], src[SVC_PATH], dest[SVC_PATH], diff[IMG_DIGEST_MAX];
    struct img_unpack_opts o = {.expected_diff_id = im->cfg->diff_ids[i]};
    struct stat st;
    bool enc = false;
    int rc;

    if ((rc = img_digest_chain_id(im->cfg->diff_ids, i + 1, chain, &im->err)) < 0 ||
        (rc = img_media_type_layer(d->media_type, &o.compression, &enc, &im->err)) < 0)
        return rc;
    if (enc)
        return ag_err_set(&im->err, -ENOTSUP, "encrypted layers cannot be imported");
    if (snprintf(dest, sizeof(dest), "%s/layers/%s", im->root, strchr(chain, ':') + 1) >=
            (int)sizeof(dest) ||
        blob_path(im->layout, d->digest, src, sizeof(src)) < 0)
        return ag_err_set(&im->err, -ENAMETOOLONG, "layer path too long");
    if (stat(dest, &st) < 0) {
        char dir[SVC_PATH + 8];
        snprintf(dir, sizeof(dir), "%s/layers", im->root);
        if ((rc = ag_mkdir_p(dir, 0755)) < 0)
            return ag_err_set(&im->err, rc, "create %s", dir);
        if ((rc = img_unpack_blob(src, dest, &o, diff, &im->err)) < 0)
            return ag_err_wrap(&im->err, "unpack layer %s", d->digest);
    }
    l->digest = strdup(d->digest);
    l->media_type = strdup(d->media_type);
    l->size = d->size;
    l->diff_id = strdup(im->cfg->diff_ids[i]);
    l->chain_id = strdup(chain);
    l->unpacked_dir = strdup(dest);
    if (!l->digest || !l->media_type || !l->diff_id || !l->chain_id || !l->unpacked_dir)
        return ag_err_set(&im->err, -ENOMEM, "out of memory");
    return 0;
}

static int store_record(struct import *im)
{
    picocri_store_ImageRecord rec = {0};
    struct st_store *st = NULL;
    int rc = -ENOMEM;

    rec.id = strdup(im->m->config.digest);
    rec.manifest_digest = strdup(im->manifest_digest);
    rec.config_digest = strdup(im->m->config.digest);
    rec.manifest_media_type = strdup(im->m->media_type ? im->m->media_type : IMG_MT_OCI_MANIFEST);
    rec.source = strdup("import");
    rec.repo_tags = calloc(1, sizeof(char *));
    rec.layers = calloc(im->m->layers_count + 1, sizeof(*rec.layers));
    rec.pulled_at_ns = ag_now_ns();
    if (!rec.id || !rec.manifest_digest || !rec.config_digest || !rec.source || !rec.repo_tags ||
        !rec.layers || (rec.repo_tags[0] = strdup(im->name)) == NULL)
        goto out;
    rec.repo_tags_count = 1;
    for (size_t i = 0; i < im->m->layers_count; i++) {
        rec.layers_count++;
        if ((rc = unpack_layer(im, i, &rec.layers[i])) < 0)
            goto out;
        rec.size += (uint64_t)im->m->layers[i].size;
    }
    rec.size += (uint64_t)im->m->config.size;
    if ((rc = st_store_open(im->root, NULL, &st, &im->err)) < 0)
        goto out;
    rc = st_image_put(st, ST_DEFAULT_NS, &rec, NULL, NULL, &im->err);
    st_store_close(st);
out:
    if (rc == -ENOMEM && im->err.code == 0)
        ag_err_set(&im->err, rc, "out of memory");
    st_record_release(ST_KIND_IMAGE, &rec);
    return rc;
}

int rt_svc_import_main(int argc, char **argv)
{
    struct import im = {0};
    struct ag_config cfg;
    struct img_ref ref;
    char layout[SVC_PATH];
    int rc, i = 1;

    ag_config_init(&cfg);
    ag_err_init(&im.err);
    im.root = cfg.root;
    if (i + 1 < argc && strcmp(argv[i], "--root") == 0) {
        im.root = argv[i + 1];
        i += 2;
    }
    if (argc - i != 2) {
        fprintf(stderr, "usage: picocri import [--root DIR] LAYOUT[:TAG] NAME\n"
                        "(run it while the daemon is stopped)\n");
        ag_config_fini(&cfg);
        return 2;
    }
    snprintf(layout, sizeof(layout), "%s", argv[i]);
    char *colon = strrchr(layout, ':');
    if (colon != NULL && strchr(colon, '/') == NULL) {
        *colon = '\0';
        im.tag = colon + 1;
    }
    im.layout = layout;
    if ((rc = img_ref_parse(argv[i + 1], &ref, &im.err)) < 0 ||
        (rc = img_ref_format(&ref, im.name, sizeof(im.name))) < 0) {
        fprintf(stderr, "picocri import: bad image name %s: %s\n", argv[i + 1], im.err.msg);
        ag_config_fini(&cfg);
        return 2;
    }
    rc = load_docs(&im);
    if (rc == 0)
        rc = store_record(&im);
    if (rc < 0)
        fprintf(stderr, "picocri import: %s\n", im.err.msg);
    else
        printf("%s %s\n", im.m->config.digest, im.name);
    img_manifest_free(im.m);
    img_config_free(im.cfg);
    ag_config_fini(&cfg);
    return rc < 0 ? 1 : 0;
}
