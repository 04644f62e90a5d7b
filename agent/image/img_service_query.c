/* agent/image: ImageStatus, ListImages, RemoveImage and ImageFsInfo over
 * the image records of the store.
 *
 * Lookups accept what the kubelet and crictl send: a full id
 * ("sha256:<hex>"), a unique id prefix, a repo tag or repo digest, or a
 * short reference ("busybox" -> docker.io/library/busybox:latest).
 * RemoveImage deletes the record (all of its names) once, durably, and only
 * then the layer directories and blobs nothing else uses (st_refs counts
 * other images and containers), so a crash never leaves a record that
 * points to deleted layers.
 */
#include "image/img_service_int.h"

#include <pb_decode.h>

#include <cjson/cJSON.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- lookups ----------------------------------------------------------------------- */

void img_svc__lookup_name(const char *image, char *out, size_t out_len)
{
    struct img_ref ref;
    struct ag_err e;
    char name[IMG_SVC_NAME_MAX];

    ag_err_init(&e);
    snprintf(out, out_len, "%s", image);
    if (img_ref_parse(image, &ref, &e) < 0)
        return;
    /* tag+digest: the digest names the image. */
    if (ref.tag[0] != '\0' && ref.digest[0] != '\0') {
        if (img_ref_format_name(&ref, name, sizeof(name)) >= 0)
            snprintf(out, out_len, "%s@%s", name, ref.digest);
        return;
    }
    if (img_ref_format(&ref, out, out_len) < 0)
        snprintf(out, out_len, "%s", image);
}

const picocri_store_ImageRecord *img_svc__find(struct img_svc *s, const char *image)
{
    const picocri_store_ImageRecord *rec = NULL;
    char name[IMG_SVC_NAME_MAX + IMG_REF_TAG_MAX];
    struct ag_err e;

    ag_err_init(&e);
    if (image == NULL || image[0] == '\0')
        return NULL;
    if (st_image_get(s->st, s->ns, image, &rec, &e) == 0)
        return rec;
    img_svc__lookup_name(image, name, sizeof(name));
    if (strcmp(name, image) != 0 && st_image_get(s->st, s->ns, name, &rec, &e) == 0)
        return rec;
    return NULL;
}

/* ---- CRI Image ------------------------------------------------------------------------ */

static int dup_strv(char **src, pb_size_t n, char ***dst, pb_size_t *dn)
{
    *dst = NULL;
    *dn = 0;
    if (n == 0)
        return 0;
    if ((*dst = calloc(n, sizeof(char *))) == NULL)
        return -ENOMEM;
    for (pb_size_t i = 0; i < n; i++) {
        if (((*dst)[i] = strdup(src[i])) == NULL)
            return -ENOMEM;
        *dn = i + 1;
    }
    return 0;
}

int img_svc__spec_copy(const runtime_v1_ImageSpec *src, const char *image,
                       runtime_v1_ImageSpec **out)
{
    runtime_v1_ImageSpec *c = calloc(1, sizeof(*c));

    if ((*out = c) == NULL)
        return -ENOMEM;
    if ((c->image = strdup(image)) == NULL)
        return -ENOMEM;
    if (src == NULL || src->annotations_count == 0)
        return 0;
    if ((c->annotations = calloc(src->annotations_count, sizeof(*c->annotations))) == NULL)
        return -ENOMEM;
    for (pb_size_t i = 0; i < src->annotations_count; i++) {
        c->annotations_count = i + 1;
        c->annotations[i].key = strdup(src->annotations[i].key ? src->annotations[i].key : "");
        c->annotations[i].value =
            strdup(src->annotations[i].value ? src->annotations[i].value : "");
        if (c->annotations[i].key == NULL || c->annotations[i].value == NULL)
            return -ENOMEM;
    }
    return 0;
}

/* Fills *img (zeroed by the caller) from rec; on failure the caller
 * releases what was filled. */
static int image_from(const picocri_store_ImageRecord *rec, runtime_v1_Image *img)
{
    if ((img->id = strdup(rec->id)) == NULL ||
        dup_strv(rec->repo_tags, rec->repo_tags_count, &img->repo_tags, &img->repo_tags_count) <
            0 ||
        dup_strv(rec->repo_digests, rec->repo_digests_count, &img->repo_digests,
                 &img->repo_digests_count) < 0)
        return -ENOMEM;
    img->size = rec->size;
    img->pinned = rec->pinned;
    if (rec->uid != NULL) {
        if ((img->uid = calloc(1, sizeof(*img->uid))) == NULL)
            return -ENOMEM;
        img->uid->value = rec->uid->value;
    } else if (rec->username != NULL && (img->username = strdup(rec->username)) == NULL) {
        return -ENOMEM;
    }
    return img_svc__spec_copy(rec->spec, rec->id, &img->spec);
}

static char *verbose_info(const picocri_store_ImageRecord *rec)
{
    cJSON *j = cJSON_CreateObject(), *arr;
    char *out;

    if (j == NULL)
        return NULL;
    cJSON_AddStringToObject(j, "id", rec->id);
    cJSON_AddStringToObject(j, "manifestDigest", rec->manifest_digest ? rec->manifest_digest : "");
    cJSON_AddStringToObject(j, "manifestMediaType",
                            rec->manifest_media_type ? rec->manifest_media_type : "");
    cJSON_AddStringToObject(j, "indexDigest", rec->index_digest ? rec->index_digest : "");
    cJSON_AddStringToObject(j, "configDigest", rec->config_digest ? rec->config_digest : "");
    if (rec->platform != NULL) {
        char p[128];
        snprintf(p, sizeof(p), "%s/%s%s%s", rec->platform->os ? rec->platform->os : "",
                 rec->platform->architecture ? rec->platform->architecture : "",
                 rec->platform->variant ? "/" : "",
                 rec->platform->variant ? rec->platform->variant : "");
        cJSON_AddStringToObject(j, "platform", p);
    }
    cJSON_AddStringToObject(j, "source", rec->source ? rec->source : "");
    cJSON_AddNumberToObject(j, "pulledAt", (double)rec->pulled_at_ns / 1e9);
    if (rec->layers_count > 0 && rec->layers[rec->layers_count - 1].chain_id != NULL)
        cJSON_AddStringToObject(j, "chainID", rec->layers[rec->layers_count - 1].chain_id);
    arr = cJSON_AddArrayToObject(j, "layers");
    for (pb_size_t i = 0; arr != NULL && i < rec->layers_count; i++) {
        const picocri_store_LayerRecord *l = &rec->layers[i];
        cJSON *o = cJSON_CreateObject();
        if (o == NULL)
            break;
        cJSON_AddStringToObject(o, "digest", l->digest ? l->digest : "");
        cJSON_AddStringToObject(o, "mediaType", l->media_type ? l->media_type : "");
        cJSON_AddNumberToObject(o, "size", (double)l->size);
        cJSON_AddStringToObject(o, "diffID", l->diff_id ? l->diff_id : "");
        cJSON_AddStringToObject(o, "chainID", l->chain_id ? l->chain_id : "");
        cJSON_AddStringToObject(o, "dir", l->unpacked_dir ? l->unpacked_dir : "");
        cJSON_AddItemToArray(arr, o);
    }
    out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}

static int add_info(runtime_v1_ImageStatusResponse *out, const char *key, char *value)
{
    runtime_v1_ImageStatusResponse_InfoEntry *n;

    if (value == NULL)
        return -ENOMEM;
    n = realloc(out->info, (out->info_count + 1) * sizeof(*n));
    if (n == NULL) {
        free(value);
        return -ENOMEM;
    }
    out->info = n;
    n[out->info_count].value = value;
    if ((n[out->info_count].key = strdup(key)) == NULL) {
        free(value);
        return -ENOMEM;
    }
    out->info_count++;
    return 0;
}

int img_svc_status(struct img_svc *s, const char *image, bool verbose,
                   runtime_v1_ImageStatusResponse *out, struct ag_err *err)
{
    const picocri_store_ImageRecord *rec = img_svc__find(s, image);
    char *progress;

    if (rec != NULL) {
        if ((out->image = calloc(1, sizeof(*out->image))) == NULL ||
            image_from(rec, out->image) < 0 ||
            (verbose && add_info(out, "info", verbose_info(rec)) < 0))
            return ag_err_set(err, -ENOMEM, "image status: out of memory");
    }
    /* A pull in flight shows its progress (used by `picocri pull`). */
    if (verbose && (progress = img_svc_pull_progress(s, image)) != NULL &&
        add_info(out, "pullProgress", progress) < 0)
        return ag_err_set(err, -ENOMEM, "image status: out of memory");
    return 0;
}

int img_svc_list(struct img_svc *s, const runtime_v1_ImageFilter *filter,
                 runtime_v1_ListImagesResponse *out, struct ag_err *err)
{
    const char *want = filter && filter->image && filter->image->image && filter->image->image[0]
                           ? filter->image->image
                           : NULL;
    const picocri_store_ImageRecord *only = want ? img_svc__find(s, want) : NULL;
    size_t cap = st_count(s->st, s->ns, ST_KIND_IMAGE);
    const picocri_store_ImageRecord *rec;
    struct st_iter it;

    if (want != NULL && only == NULL)
        return 0;
    if (cap == 0)
        return 0;
    if ((out->images = calloc(cap, sizeof(*out->images))) == NULL)
        return ag_err_set(err, -ENOMEM, "list images: out of memory");
    st_iter_init(&it, s->st, s->ns, ST_KIND_IMAGE);
    while ((rec = st_iter_next(&it)) != NULL && out->images_count < cap) {
        if (only != NULL && rec != only)
            continue;
        out->images_count++;
        if (image_from(rec, &out->images[out->images_count - 1]) < 0)
            return ag_err_set(err, -ENOMEM, "list images: out of memory");
    }
    return 0;
}

/* ---- remove ------------------------------------------------------------------------------ */

struct remove_op {
    struct img_svc *svc;
    img_svc_done_cb cb;
    void *arg;
    char **chains;
    size_t chain_count;
    char **digests;
    size_t digest_count;
};

static void remove_op_free(struct remove_op *op)
{
    for (size_t i = 0; i < op->chain_count; i++)
        free(op->chains[i]);
    for (size_t i = 0; i < op->digest_count; i++)
        free(op->digests[i]);
    free(op->chains);
    free(op->digests);
    free(op);
}

static void on_gc_done(void *arg, const struct ag_err *err)
{
    struct remove_op *op = arg;
    struct ag_err ok;

    (void)err;
    ag_err_init(&ok);
    op->cb(op->arg, &ok);
    free(op);
}

static void on_record_deleted(int status, void *arg)
{
    struct remove_op *op = arg;
    struct img_svc *s = op->svc;
    struct ag_err e;

    if (status < 0) {
        ag_err_init(&e);
        ag_err_set(&e, status, "remove image record: %s", strerror(-status));
        op->cb(op->arg, &e);
        remove_op_free(op);
        img_svc__unbusy(s);
        return;
    }
    img_svc__gc(s, steal_ptr(&op->chains), op->chain_count, steal_ptr(&op->digests),
                op->digest_count, on_gc_done, op);
    img_svc__unbusy(s);
}

static int push(char **v, size_t *n, const char *s)
{
    if (s == NULL || s[0] == '\0')
        return 0;
    return (v[(*n)++] = strdup(s)) == NULL ? -ENOMEM : 0;
}

static int collect(const picocri_store_ImageRecord *rec, struct remove_op *op)
{
    size_t n = rec->layers_count;
    int rc = 0;

    op->chains = calloc(n + 1, sizeof(char *));
    op->digests = calloc(n + 4, sizeof(char *));
    if (op->chains == NULL || op->digests == NULL)
        return -ENOMEM;
    for (size_t i = 0; rc == 0 && i < n; i++) {
        if (rec->layers[i].chain_id != NULL)
            rc = push(op->chains, &op->chain_count, rec->layers[i].chain_id);
        if (rc == 0)
            rc = push(op->digests, &op->digest_count, rec->layers[i].digest);
    }
    if (rc == 0)
        rc = push(op->digests, &op->digest_count, rec->manifest_digest);
    if (rc == 0)
        rc = push(op->digests, &op->digest_count, rec->index_digest);
    if (rc == 0)
        rc = push(op->digests, &op->digest_count, rec->config_digest);
    return rc;
}

int img_svc_remove(struct img_svc *s, const char *image, img_svc_done_cb cb, void *arg,
                   struct ag_err *err)
{
    const picocri_store_ImageRecord *rec = img_svc__find(s, image);
    struct remove_op *op;
    char id[IMG_DIGEST_MAX + 8];
    int rc;

    if (rec == NULL) {
        struct ag_err ok;
        ag_err_init(&ok);
        cb(arg, &ok); /* absent: success (kubelet contract) */
        return 0;
    }
    if ((op = calloc(1, sizeof(*op))) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    op->svc = s;
    op->cb = cb;
    op->arg = arg;
    if (collect(rec, op) < 0) {
        remove_op_free(op);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    snprintf(id, sizeof(id), "%s", rec->id);
    rc = st_delete(s->st, s->ns, ST_KIND_IMAGE, id, on_record_deleted, op, err);
    if (rc < 0) {
        remove_op_free(op);
        return rc;
    }
    ag_log(AG_INFO, "image removed id=%s", id);
    s->busy++;
    return 0;
}

/* ---- fsinfo ---------------------------------------------------------------------------------- */

struct fsinfo_op {
    uv_work_t work;
    struct img_svc *svc;
    img_svc_fsinfo_cb cb;
    void *arg;
    uint64_t bytes, inodes;
    int status;
};

static void walk(int dfd, const char *name, int depth, struct fsinfo_op *op)
{
    struct stat st;
    struct dirent *de;
    DIR *d;
    int fd;

    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return;
    op->inodes++;
    op->bytes += (uint64_t)st.st_blocks * 512;
    if (!S_ISDIR(st.st_mode) || depth > 512)
        return;
    if ((fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) < 0)
        return;
    if ((d = fdopendir(fd)) == NULL) {
        close(fd);
        return;
    }
    while ((de = readdir(d)) != NULL)
        if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
            walk(dirfd(d), de->d_name, depth + 1, op);
    closedir(d);
}

static void on_fsinfo_work(uv_work_t *w)
{
    struct fsinfo_op *op = ag_container_of(w, struct fsinfo_op, work);
    char content[IMG_SVC_PATH_MAX + 16];

    snprintf(content, sizeof(content), "%s/content", op->svc->root);
    walk(AT_FDCWD, content, 0, op);
    walk(AT_FDCWD, op->svc->layers_dir, 0, op);
}

static void on_fsinfo_done(uv_work_t *w, int status)
{
    struct fsinfo_op *op = ag_container_of(w, struct fsinfo_op, work);
    struct img_svc *s = op->svc;
    struct img_fs_usage u = {
        .bytes = op->bytes,
        .inodes = op->inodes,
        .timestamp_ns = ag_now_ns(),
        .mountpoint = s->layers_dir,
    };
    struct ag_err e;

    ag_err_init(&e);
    if (status < 0)
        ag_err_set(&e, status, "image fs info: %s", strerror(-status));
    op->cb(op->arg, &e, status < 0 ? NULL : &u);
    free(op);
    img_svc__unbusy(s);
}

int img_svc_fsinfo(struct img_svc *s, img_svc_fsinfo_cb cb, void *arg, struct ag_err *err)
{
    struct fsinfo_op *op = calloc(1, sizeof(*op));
    int rc;

    if (op == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    op->svc = s;
    op->cb = cb;
    op->arg = arg;
    if ((rc = uv_queue_work(s->loop, &op->work, on_fsinfo_work, on_fsinfo_done)) < 0) {
        free(op);
        return ag_err_set(err, rc, "image fs info: %s", uv_strerror(rc));
    }
    s->busy++;
    return 0;
}
