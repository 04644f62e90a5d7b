/* cri/: ImageService handlers, one function per RPC (see cri.h for the
 * handler contract), on the image service of agent/image/img_service.h.
 *
 * The image service is started at the first image RPC (cri_image_service),
 * on the daemon's one store (d->store, opened by cri_services_start), and
 * closed on SIGTERM/SIGINT by a watcher of its own so that in-flight pulls
 * stop and the registry client's kept-alive connections do not hold the
 * loop open after the server drained.
 *
 * Test knob (environment of `picocri serve`):
 * PICOCRI_IMAGE_MAX_LAYER_BYTES bounds the uncompressed size of one layer
 * (default 2 GiB), so the decompression-bomb limit can be tested with a
 * small archive.
 */
#include "cri_handlers.h"

#include <api.pb.h>
#include <pb_decode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "image/img_service.h"

struct image_front {
    struct img_svc *svc;
    uv_signal_t sigterm, sigint;
    int closing_handles;
    struct cri_daemon *d;
};

static void on_front_handle_closed(uv_handle_t *h)
{
    struct image_front *f = h->data;

    if (--f->closing_handles == 0)
        free(f);
}

static void on_svc_closed(void *arg)
{
    struct image_front *f = arg;

    f->svc = NULL;
    f->closing_handles = 2;
    uv_close((uv_handle_t *)&f->sigterm, on_front_handle_closed);
    uv_close((uv_handle_t *)&f->sigint, on_front_handle_closed);
}

static void on_stop_signal(uv_signal_t *h, int signum)
{
    struct image_front *f = h->data;

    (void)signum;
    if (f->d->images != f->svc || f->svc == NULL)
        return;
    ag_log(AG_INFO, "image service stopping");
    f->d->images = NULL;
    uv_signal_stop(&f->sigterm);
    uv_signal_stop(&f->sigint);
    img_svc_close(f->svc, on_svc_closed, f);
}

static uint64_t env_u64(const char *name)
{
    const char *v = getenv(name);
    char *end = NULL;
    unsigned long long n;

    if (v == NULL || v[0] == '\0')
        return 0;
    n = strtoull(v, &end, 10);
    return end != NULL && *end == '\0' ? (uint64_t)n : 0;
}

int cri_image_service(struct cri_daemon *d, struct img_svc **out, struct ag_err *err)
{
    struct image_front *f;
    int rc;

    if (d->images != NULL) {
        *out = d->images;
        return 0;
    }
    if (d->loop == NULL || d->store == NULL || d->cfg == NULL)
        return ag_err_set(err, -EIO, "the image service needs the daemon's loop and store");
    if ((f = calloc(1, sizeof(*f))) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    struct img_svc_opts o = {
        .loop = d->loop,
        .store = d->store,
        .root = d->cfg->root,
        .registries = d->cfg->registries,
        .max_layer_bytes = env_u64("PICOCRI_IMAGE_MAX_LAYER_BYTES"),
    };
    if ((rc = img_svc_new(&o, &f->svc, err)) < 0) {
        free(f);
        return ag_err_wrap(err, "start the image service");
    }
    f->d = d;
    uv_signal_init(d->loop, &f->sigterm);
    uv_signal_init(d->loop, &f->sigint);
    f->sigterm.data = f->sigint.data = f;
    uv_signal_start(&f->sigterm, on_stop_signal, SIGTERM);
    uv_signal_start(&f->sigint, on_stop_signal, SIGINT);
    /* The watchers must not keep the loop alive by themselves. */
    uv_unref((uv_handle_t *)&f->sigterm);
    uv_unref((uv_handle_t *)&f->sigint);
    d->images = f->svc;
    *out = f->svc;
    return 0;
}

static struct img_svc *svc_of(struct cri_call *call)
{
    struct img_svc *s = NULL;
    struct ag_err err;

    ag_err_init(&err);
    if (cri_image_service(cri_call_daemon(call), &s, &err) < 0) {
        cri_call_fail_code(call, CRI_UNAVAILABLE, "picocri: %s", err.msg);
        return NULL;
    }
    return s;
}

static const char *spec_image(const runtime_v1_ImageSpec *spec)
{
    return spec != NULL && spec->image != NULL ? spec->image : "";
}

/* The service for a call that names an image (Pull, Remove); NULL when the
 * call was failed (no service, or no image named). */
static struct img_svc *svc_for_image(struct cri_call *call, const runtime_v1_ImageSpec *spec)
{
    struct img_svc *s = svc_of(call);

    if (s != NULL && spec_image(spec)[0] == '\0') {
        cri_call_fail_code(call, CRI_INVALID_ARGUMENT, "picocri: image.image is required");
        return NULL;
    }
    return s;
}

/* ---- PullImage ------------------------------------------------------------------ */

static void on_pulled(void *arg, const struct ag_err *err, const char *image_id)
{
    struct cri_call *call = arg;
    runtime_v1_PullImageResponse resp = {.image_ref = (char *)image_id};

    if (err->code < 0)
        cri_call_fail(call, err);
    else
        cri_call_reply(call, &resp);
}

static void on_pull_cancel(struct cri_call *call, void *data)
{
    img_svc_pull_cancel(data);
    cri_call_fail_code(call, CRI_CANCELLED, "picocri: pull cancelled");
}

void cri_image_pull(struct cri_call *call, void *reqp)
{
    const runtime_v1_PullImageRequest *req = reqp;
    const runtime_v1_AuthConfig *a = req->auth;
    struct img_auth_config auth = {0};
    struct img_pull_waiter *w = NULL;
    struct img_svc *s;
    struct ag_err err;

    if ((s = svc_for_image(call, req->image)) == NULL)
        return;
    ag_err_init(&err);
    if (a != NULL) {
        /* Borrowed for the call: img_svc_pull copies what it keeps. */
        auth.username = a->username;
        auth.password = a->password;
        auth.auth = a->auth;
        auth.identity_token = a->identity_token;
        auth.registry_token = a->registry_token;
    }
    if (img_svc_pull(s, req->image->image, a ? &auth : NULL, req->image, on_pulled, call, &w,
                     &err) < 0) {
        cri_call_fail(call, &err);
        return;
    }
    cri_call_on_cancel(call, on_pull_cancel, w);
}

/* ---- ImageStatus / ListImages ------------------------------------------------------ */

void cri_image_status(struct cri_call *call, void *reqp)
{
    const runtime_v1_ImageStatusRequest *req = reqp;
    runtime_v1_ImageStatusResponse resp = runtime_v1_ImageStatusResponse_init_zero;
    struct img_svc *s;
    struct ag_err err;

    if ((s = svc_of(call)) == NULL)
        return;
    ag_err_init(&err);
    if (img_svc_status(s, spec_image(req->image), req->verbose, &resp, &err) < 0)
        cri_call_fail(call, &err);
    else
        cri_call_reply(call, &resp);
    pb_release(runtime_v1_ImageStatusResponse_fields, &resp);
}

void cri_image_list(struct cri_call *call, void *reqp)
{
    const runtime_v1_ListImagesRequest *req = reqp;
    runtime_v1_ListImagesResponse resp = runtime_v1_ListImagesResponse_init_zero;
    struct img_svc *s;
    struct ag_err err;

    if ((s = svc_of(call)) == NULL)
        return;
    ag_err_init(&err);
    if (img_svc_list(s, req->filter, &resp, &err) < 0)
        cri_call_fail(call, &err);
    else
        cri_call_reply(call, &resp);
    pb_release(runtime_v1_ListImagesResponse_fields, &resp);
}

/* ---- RemoveImage ------------------------------------------------------------------- */

static void on_removed(void *arg, const struct ag_err *err)
{
    struct cri_call *call = arg;
    runtime_v1_RemoveImageResponse resp = runtime_v1_RemoveImageResponse_init_zero;

    if (err != NULL && err->code < 0)
        cri_call_fail(call, err);
    else
        cri_call_reply(call, &resp);
}

void cri_image_remove(struct cri_call *call, void *reqp)
{
    const runtime_v1_RemoveImageRequest *req = reqp;
    struct img_svc *s;
    struct ag_err err;

    if ((s = svc_for_image(call, req->image)) == NULL)
        return;
    ag_err_init(&err);
    if (img_svc_remove(s, req->image->image, on_removed, call, &err) < 0)
        cri_call_fail(call, &err);
}

/* ---- ImageFsInfo ------------------------------------------------------------------- */

static void on_fsinfo(void *arg, const struct ag_err *err, const struct img_fs_usage *u)
{
    struct cri_call *call = arg;
    runtime_v1_FilesystemIdentifier id = {.mountpoint = (char *)(u ? u->mountpoint : "")};
    runtime_v1_UInt64Value bytes = {.value = u ? u->bytes : 0};
    runtime_v1_UInt64Value inodes = {.value = u ? u->inodes : 0};
    runtime_v1_FilesystemUsage fs = {
        .timestamp = u ? u->timestamp_ns : 0,
        .fs_id = &id,
        .used_bytes = &bytes,
        .inodes_used = &inodes,
    };
    runtime_v1_ImageFsInfoResponse resp = {.image_filesystems_count = 1,
                                           .image_filesystems = &fs};

    if (err->code < 0 || u == NULL)
        cri_call_fail(call, err);
    else
        cri_call_reply(call, &resp);
}

void cri_image_fsinfo(struct cri_call *call, void *reqp)
{
    struct img_svc *s;
    struct ag_err err;

    (void)reqp;
    if ((s = svc_of(call)) == NULL)
        return;
    ag_err_init(&err);
    if (img_svc_fsinfo(s, on_fsinfo, call, &err) < 0)
        cri_call_fail(call, &err);
}
