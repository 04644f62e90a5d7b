/* agent/image: the pull orchestration behind CRI PullImage.
 *
 * A pull walks: MANIFEST (by tag or digest; an index selects the entry for
 * the running platform and its manifest is fetched by digest) -> CONFIG
 * (fetched into the content store, read back verified, parsed, checked
 * against the manifest) -> LAYERS (one layer job per ChainID, joined when
 * another pull already runs it; the registry client runs at most
 * max_parallel_blobs downloads) -> RECORD (the ImageRecord put through the
 * store, which moves tags from other images) -> DONE.  Pulls of the same
 * canonical reference share one pull: later callers become waiters.
 *
 * Invariants: every waiter hears exactly once (or is detached by
 * img_svc_pull_cancel); a failed or cancelled pull leaves no record and no
 * layer directory that nothing uses (verified blobs and partial downloads
 * stay in the content store for a later resume); an error message says
 * what failed, and starts with "RegistryUnavailable" when no endpoint of
 * the registry could be reached.
 */
#include "image/img_service_int.h"

#include <cjson/cJSON.h>
#include <pb_decode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CONFIG_BUSY_RETRY_MS 100
#define CONFIG_BUSY_RETRIES 600

enum pull_phase { P_MANIFEST, P_CONFIG, P_LAYERS, P_RECORD, P_DONE };

static const char *const phase_names[] = {"manifest", "config", "layers", "record", "done"};

struct img_pull_waiter {
    struct img_pull_waiter *next;
    struct img_pull *pull;
    img_pull_cb cb;
    void *arg;
};

struct pull_layer {
    char digest[IMG_DIGEST_MAX];
    char chain[IMG_DIGEST_MAX];
    int64_t size;
    bool done;
};

struct img_pull {
    struct img_pull *next;
    struct img_svc *svc;
    enum pull_phase phase;
    char key[IMG_SVC_NAME_MAX + IMG_REF_TAG_MAX];
    struct img_ref ref;
    struct img_auth_config auth;
    runtime_v1_ImageSpec *spec; /* owned copy, may be NULL */
    struct img_pull_waiter *waiters;
    struct img_fetch *fetch;
    uv_timer_t *retry_timer;    /* config fetch waiting for another ingest */
    unsigned busy_retries;
    char index_digest[IMG_DIGEST_MAX];
    char top_digest[IMG_DIGEST_MAX];
    char manifest_digest[IMG_DIGEST_MAX];
    char manifest_mt[128];
    int64_t manifest_size;
    struct img_manifest *man;
    struct img_config *cfg;
    int64_t config_size;
    struct pull_layer *layers;
    size_t layer_count, layers_left;
    bool failed, writing;
    unsigned depth; /* > 0 while a function of this pull runs: no free */
    struct ag_err err;
};

static void pull_finish(struct img_pull *p);

/* ---- credentials ------------------------------------------------------------------ */

static int dup_opt(const char *s, char **out)
{
    *out = NULL;
    if (s == NULL || s[0] == '\0')
        return 0;
    return (*out = strdup(s)) == NULL ? -ENOMEM : 0;
}

int img_svc__auth_copy(const struct img_auth_config *src, struct img_auth_config *dst)
{
    memset(dst, 0, sizeof(*dst));
    if (src == NULL)
        return 0;
    if (dup_opt(src->username, &dst->username) < 0 || dup_opt(src->password, &dst->password) < 0 ||
        dup_opt(src->auth, &dst->auth) < 0 ||
        dup_opt(src->identity_token, &dst->identity_token) < 0 ||
        dup_opt(src->registry_token, &dst->registry_token) < 0) {
        img_auth_config_fini(dst);
        return -ENOMEM;
    }
    return 0;
}

/* ---- errors ------------------------------------------------------------------------- */

static bool unreachable(int code)
{
    switch (code) {
    case -ECONNREFUSED:
    case -ECONNRESET:
    case -ECONNABORTED:
    case -EHOSTUNREACH:
    case -ENETUNREACH:
    case -ENETDOWN:
    case -ETIMEDOUT:
    case -EPIPE:
    case -EAI_AGAIN:
    case -ENOTCONN:
        return true;
    default:
        return false;
    }
}

/* Records the first failure, with "RegistryUnavailable" in front when the
 * registry could not be reached (cri-api's sentinel for the kubelet). */
static void pull_fail(struct img_pull *p, const struct ag_err *err, int code, const char *what)
{
    if (p->failed)
        return;
    p->failed = true;
    if (err != NULL && err->code < 0)
        p->err = *err;
    else
        ag_err_set(&p->err, code < 0 ? code : -EIO, "%s", strerror(code < 0 ? -code : EIO));
    if (what != NULL)
        ag_err_wrap(&p->err, "%s", what);
    ag_err_wrap(&p->err, "pull %s", p->key);
    if (unreachable(p->err.code) && p->err.code != -ECANCELED)
        ag_err_wrap(&p->err, "RegistryUnavailable");
}

/* ---- layers ---------------------------------------------------------------------------- */

void img_pull__layer_detached(struct img_pull *p, size_t index)
{
    if (index < p->layer_count && !p->layers[index].done) {
        p->layers[index].done = true;
        p->layers_left--;
    }
}

/* Stops every layer of a failed pull; the pull is finished by the caller
 * (or by the last job that reports). */
static void stop_layers(struct img_pull *p)
{
    p->depth++;
    img_layer_job_leave(p->svc, p);
    p->depth--;
}

void img_pull__layer_done(struct img_pull *p, size_t index, int status, const struct ag_err *err)
{
    img_pull__layer_detached(p, index);
    if (status < 0 && !p->failed) {
        pull_fail(p, err, status, NULL);
        /* Stop the other layers of this pull (shared jobs keep running for
         * their other pulls). */
        stop_layers(p);
    }
    if (p->layers_left == 0)
        pull_finish(p);
}

static int start_layers(struct img_pull *p, struct ag_err *err)
{
    const struct img_manifest *m = p->man;
    char **ids = p->cfg->diff_ids;
    int rc;

    p->layers = calloc(m->layers_count ? m->layers_count : 1, sizeof(*p->layers));
    if (p->layers == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    p->layer_count = m->layers_count;
    for (size_t i = 0; i < m->layers_count; i++) {
        struct pull_layer *l = &p->layers[i];
        snprintf(l->digest, sizeof(l->digest), "%s", m->layers[i].digest);
        l->size = m->layers[i].size;
        if ((rc = img_digest_chain_id(ids, i + 1, l->chain, err)) < 0)
            return ag_err_wrap(err, "config rootfs.diff_ids");
    }
    p->phase = P_LAYERS;
    p->layers_left = p->layer_count;
    if (p->layer_count == 0)
        return ag_err_set(err, -EINVAL, "image has no layers");
    for (size_t i = 0; i < m->layers_count; i++) {
        struct img_layer_req r = {
            .ref = &p->ref,
            .auth = &p->auth,
            .digest = m->layers[i].digest,
            .media_type = m->layers[i].media_type,
            .size = m->layers[i].size,
            .diff_id = ids[i],
            .chain_id = p->layers[i].chain,
        };
        if ((rc = img_layer_job_join(p->svc, &r, p, i, err)) < 0) {
            /* Stop the layers already joined; the caller finishes. */
            pull_fail(p, err, rc, NULL);
            for (size_t k = i; k < p->layer_count; k++)
                img_pull__layer_detached(p, k);
            stop_layers(p);
            return 0;
        }
    }
    return 0;
}

/* ---- config ---------------------------------------------------------------------------- */

static void on_config_read(int status, uint8_t *bytes, size_t len, void *data)
{
    struct img_pull *p = data;
    struct ag_err e;
    int rc;

    img_svc__unbusy(p->svc);
    ag_err_init(&e);
    if (status < 0) {
        free(bytes);
        ag_err_set(&e, status, "read config %s: %s", p->man->config.digest, strerror(-status));
        pull_fail(p, &e, status, NULL);
        pull_finish(p);
        return;
    }
    rc = img_config_parse(bytes, len, &p->cfg, &e);
    free(bytes);
    if (rc == 0)
        rc = img_manifest_check_config(p->man, p->cfg, &e);
    if (rc == 0 && !p->failed)
        rc = start_layers(p, &e);
    if (rc < 0) {
        ag_err_wrap(&e, "config %s", p->man->config.digest);
        pull_fail(p, &e, rc, NULL);
        pull_finish(p);
    } else if (p->failed) {
        pull_finish(p);
    }
}

static void fetch_config(struct img_pull *p);

static void on_retry_closed(uv_handle_t *h) { free(h); }

static void on_config_retry(uv_timer_t *t)
{
    struct img_pull *p = t->data;

    uv_close((uv_handle_t *)t, on_retry_closed);
    p->retry_timer = NULL;
    img_svc__unbusy(p->svc);
    if (p->failed) {
        pull_finish(p);
        return;
    }
    fetch_config(p);
}

static void on_config_done(int status, const struct ag_err *err, void *data)
{
    struct img_pull *p = data;
    struct ag_err e;

    p->fetch = NULL;
    ag_err_init(&e);
    if (status == -EBUSY && !p->failed && p->busy_retries++ < CONFIG_BUSY_RETRIES &&
        (p->retry_timer = calloc(1, sizeof(*p->retry_timer))) != NULL) {
        /* Another pull fetches the same config: wait for it to publish. */
        uv_timer_init(p->svc->loop, p->retry_timer);
        p->retry_timer->data = p;
        uv_timer_start(p->retry_timer, on_config_retry, CONFIG_BUSY_RETRY_MS, 0);
        p->svc->busy++;
        return;
    }
    if (status < 0 || p->failed) {
        pull_fail(p, err, status, NULL);
        pull_finish(p);
        return;
    }
    if (img_content_read(p->svc->loop, p->svc->content, p->man->config.digest,
                         IMG_MANIFEST_MAX_BYTES, on_config_read, p) < 0) {
        ag_err_set(&e, -ENOMEM, "read config: cannot queue");
        pull_fail(p, &e, -ENOMEM, NULL);
        pull_finish(p);
        return;
    }
    p->svc->busy++;
}

static void fetch_config(struct img_pull *p)
{
    struct img_blob_req b = {
        .digest = p->man->config.digest,
        .size = p->man->config.size,
        .on_done = on_config_done,
        .data = p,
    };
    struct ag_err e;

    ag_err_init(&e);
    p->phase = P_CONFIG;
    if (p->man->config.size > (int64_t)IMG_MANIFEST_MAX_BYTES) {
        ag_err_set(&e, -EFBIG, "config %s: %lld bytes is over the %u byte limit",
                   p->man->config.digest, (long long)p->man->config.size, IMG_MANIFEST_MAX_BYTES);
        pull_fail(p, &e, -EFBIG, NULL);
        pull_finish(p);
        return;
    }
    if (img_registry_fetch_blob(p->svc->reg, &p->ref, &b, &p->auth, &p->fetch, &e) < 0) {
        p->fetch = NULL;
        pull_fail(p, &e, e.code, NULL);
        pull_finish(p);
    }
}

/* ---- manifests ------------------------------------------------------------------------- */

static void fetch_manifest(struct img_pull *p, const char *digest);

static int on_index(struct img_pull *p, const struct img_manifest_data *m, struct ag_err *err)
{
    _cleanup_(img_index_freep) struct img_index *idx = NULL;
    int sel, rc;

    if (p->index_digest[0] != '\0')
        return ag_err_set(err, -EINVAL, "index %s points to another index", p->index_digest);
    rc = img_index_parse(m->data, m->len, m->media_type, &idx, err);
    if (rc < 0)
        return ag_err_wrap(err, "index %s", m->digest);
    sel = img_index_select(idx, &p->svc->platform, p->svc->platform_flags, err);
    if (sel < 0)
        return ag_err_wrap(err, "index %s", m->digest);
    snprintf(p->index_digest, sizeof(p->index_digest), "%s", m->digest);
    fetch_manifest(p, idx->manifests[sel].digest);
    return 0;
}

static int on_manifest_doc(struct img_pull *p, const struct img_manifest_data *m,
                           struct ag_err *err)
{
    int rc = img_manifest_parse(m->data, m->len, m->media_type, &p->man, err);

    if (rc < 0)
        return ag_err_wrap(err, "manifest %s", m->digest);
    snprintf(p->manifest_digest, sizeof(p->manifest_digest), "%s", m->digest);
    snprintf(p->manifest_mt, sizeof(p->manifest_mt), "%s", p->man->media_type);
    p->manifest_size = (int64_t)m->len;
    fetch_config(p);
    return 0;
}

static void on_manifest(int status, struct img_manifest_data *m, const struct ag_err *err,
                        void *data)
{
    struct img_pull *p = data;
    enum img_doc_kind kind = IMG_DOC_UNKNOWN;
    struct ag_err e;
    int rc;

    p->fetch = NULL;
    ag_err_init(&e);
    if (status < 0 || p->failed) {
        pull_fail(p, err, status, NULL);
        pull_finish(p);
        return;
    }
    if (p->top_digest[0] == '\0')
        snprintf(p->top_digest, sizeof(p->top_digest), "%s", m->digest);
    rc = img_doc_detect(m->data, m->len, m->media_type, &kind, &e);
    if (rc < 0)
        ag_err_wrap(&e, "manifest %s", m->digest);
    else if (kind == IMG_DOC_INDEX)
        rc = on_index(p, m, &e);
    else if (kind == IMG_DOC_MANIFEST)
        rc = on_manifest_doc(p, m, &e);
    else
        rc = ag_err_set(&e, -ENOTSUP, "manifest %s: unsupported document", m->digest);
    if (rc < 0) {
        pull_fail(p, &e, rc, NULL);
        pull_finish(p);
    }
}

static void fetch_manifest(struct img_pull *p, const char *digest)
{
    struct img_ref r = p->ref;
    struct ag_err e;

    ag_err_init(&e);
    if (digest != NULL)
        snprintf(r.digest, sizeof(r.digest), "%s", digest);
    p->phase = P_MANIFEST;
    if (img_registry_fetch_manifest(p->svc->reg, &r, &p->auth, on_manifest, p, &p->fetch, &e) <
        0) {
        p->fetch = NULL;
        pull_fail(p, &e, e.code, NULL);
        pull_finish(p);
    }
}

/* ---- record ------------------------------------------------------------------------------ */

static void pull_free(struct img_pull *p)
{
    struct img_svc *s = p->svc;

    for (struct img_pull **pp = &s->pulls; *pp != NULL; pp = &(*pp)->next)
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    while (p->waiters != NULL) {
        struct img_pull_waiter *w = p->waiters;
        p->waiters = w->next;
        free(w);
    }
    img_auth_config_fini(&p->auth);
    if (p->spec != NULL) {
        pb_release(runtime_v1_ImageSpec_fields, p->spec);
        free(p->spec);
    }
    img_manifest_free(p->man);
    img_config_free(p->cfg);
    free(p->layers);
    free(p);
    img_svc__maybe_free(s);
}

static void notify(struct img_pull *p, const char *id);

static void on_failure_gc_done(void *arg, const struct ag_err *err)
{
    struct img_pull *p = arg;

    (void)err;
    notify(p, NULL);
    pull_free(p);
}

/* Unreferenced layer directories this pull produced go away after a
 * failure, before the caller hears of it; blobs stay (verified content,
 * resumable partials).  Then notifies and frees the pull. */
static void fail_and_free(struct img_pull *p)
{
    char **chains = calloc(p->layer_count + 1, sizeof(char *));
    size_t n = 0;

    for (size_t i = 0; chains != NULL && i < p->layer_count; i++)
        if (p->layers[i].chain[0] != '\0' && (chains[n] = strdup(p->layers[i].chain)) != NULL)
            n++;
    /* The pull must not count as a user of its own layers any more. */
    p->layer_count = 0;
    if (chains == NULL) {
        on_failure_gc_done(p, NULL);
        return;
    }
    img_svc__gc(p->svc, chains, n, NULL, 0, on_failure_gc_done, p);
}

static void notify(struct img_pull *p, const char *id)
{
    struct img_pull_waiter *w = p->waiters;

    p->waiters = NULL;
    while (w != NULL) {
        struct img_pull_waiter *n = w->next;
        w->cb(w->arg, &p->err, id);
        free(w);
        w = n;
    }
}

static void on_record_written(int status, void *arg)
{
    struct img_pull *p = arg;
    struct ag_err e;

    img_svc__unbusy(p->svc);
    p->writing = false;
    p->phase = P_DONE;
    if (status < 0) {
        ag_err_init(&e);
        ag_err_set(&e, status, "write image record: %s", strerror(-status));
        pull_fail(p, &e, status, NULL);
    } else {
        ag_log(AG_INFO, "image pulled ref=%s id=%s", p->key, p->cfg ? p->man->config.digest : "");
    }
    notify(p, p->failed ? NULL : p->man->config.digest);
    pull_free(p);
}

static int write_record(struct img_pull *p, struct ag_err *err)
{
    picocri_store_ImageRecord rec = picocri_store_ImageRecord_init_zero;
    char tag[IMG_SVC_NAME_MAX + IMG_REF_TAG_MAX + 2], dig[IMG_SVC_NAME_MAX + IMG_DIGEST_MAX + 2];
    char name[IMG_SVC_NAME_MAX];
    struct img_pull_info pi = {
        .ref = &p->ref,
        .man = p->man,
        .cfg = p->cfg,
        .manifest_digest = p->manifest_digest,
        .manifest_media_type = p->manifest_mt,
        .manifest_size = p->manifest_size,
        .index_digest = p->index_digest,
        .spec = p->spec,
        .layers_dir = p->svc->layers_dir,
        .source = "registry",
    };
    int rc;

    tag[0] = dig[0] = '\0';
    if (img_ref_format_name(&p->ref, name, sizeof(name)) < 0)
        return ag_err_set(err, -ENAMETOOLONG, "name too long");
    if (p->ref.tag[0] != '\0')
        snprintf(tag, sizeof(tag), "%s:%s", name, p->ref.tag);
    snprintf(dig, sizeof(dig), "%s@%s", name, p->top_digest);
    pi.tag = tag[0] ? tag : NULL;
    pi.repo_digest = dig;
    rc = img_pull__build_record(p->svc, &pi, &rec, err);
    if (rc < 0)
        return rc;
    rc = st_image_put(p->svc->st, p->svc->ns, &rec, on_record_written, p, err);
    st_record_release(ST_KIND_IMAGE, &rec);
    if (rc < 0)
        return rc;
    p->svc->busy++;
    p->writing = true;
    p->phase = P_RECORD;
    return 0;
}

/* Called whenever the pull may be complete: writes the record after the
 * last layer, or reports a failure once nothing of the pull runs. */
static void pull_finish(struct img_pull *p)
{
    struct ag_err e;

    if (p->depth > 0 || p->fetch != NULL || p->retry_timer != NULL || p->writing)
        return;
    if (p->phase == P_LAYERS && p->layers_left > 0)
        return;
    if (!p->failed && p->phase == P_LAYERS) {
        ag_err_init(&e);
        if (p->svc->closing)
            ag_err_set(&e, -ECANCELED, "daemon is shutting down");
        else if (write_record(p, &e) == 0)
            return;
        pull_fail(p, &e, e.code, NULL);
    }
    if (!p->failed) {
        ag_err_init(&e);
        ag_err_set(&e, -EIO, "internal: pull ended in phase %s", phase_names[p->phase]);
        pull_fail(p, &e, -EIO, NULL);
    }
    ag_log(p->err.code == -ECANCELED ? AG_INFO : AG_WARN, "pull failed ref=%s: %s", p->key,
           p->err.msg);
    p->writing = true; /* no second finish while the cleanup runs */
    fail_and_free(p);
}

/* ---- public ------------------------------------------------------------------------------- */

static int spec_copy(const runtime_v1_ImageSpec *src, runtime_v1_ImageSpec **out)
{
    runtime_v1_ImageSpec *c = calloc(1, sizeof(*c));

    *out = NULL;
    if (c == NULL)
        return -ENOMEM;
    if (src->annotations_count > 0) {
        c->annotations = calloc(src->annotations_count, sizeof(*c->annotations));
        if (c->annotations == NULL)
            goto oom;
        for (pb_size_t i = 0; i < src->annotations_count; i++) {
            const runtime_v1_ImageSpec_AnnotationsEntry *a = &src->annotations[i];
            c->annotations[i].key = strdup(a->key ? a->key : "");
            c->annotations[i].value = strdup(a->value ? a->value : "");
            c->annotations_count = i + 1;
            if (c->annotations[i].key == NULL || c->annotations[i].value == NULL)
                goto oom;
        }
    }
    *out = c;
    return 0;
oom:
    pb_release(runtime_v1_ImageSpec_fields, c);
    free(c);
    return -ENOMEM;
}

static struct img_pull *pull_find(struct img_svc *s, const char *key)
{
    for (struct img_pull *p = s->pulls; p != NULL; p = p->next)
        if (strcmp(p->key, key) == 0 && !p->failed && p->phase != P_DONE)
            return p;
    return NULL;
}

static int pull_new(struct img_svc *s, const struct img_ref *ref, const char *key,
                    const struct img_auth_config *auth, const runtime_v1_ImageSpec *spec,
                    struct img_pull **out, struct ag_err *err)
{
    struct img_pull *p = calloc(1, sizeof(*p));

    if (p == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    p->svc = s;
    p->ref = *ref;
    snprintf(p->key, sizeof(p->key), "%s", key);
    if (img_svc__auth_copy(auth, &p->auth) < 0 ||
        (spec != NULL && spec->annotations_count > 0 && spec_copy(spec, &p->spec) < 0)) {
        img_auth_config_fini(&p->auth);
        free(p);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    *out = p;
    return 0;
}

int img_svc_pull(struct img_svc *s, const char *image, const struct img_auth_config *auth,
                 const runtime_v1_ImageSpec *spec, img_pull_cb cb, void *arg,
                 struct img_pull_waiter **waiter, struct ag_err *err)
{
    struct img_ref ref;
    char key[IMG_SVC_NAME_MAX + IMG_REF_TAG_MAX];
    struct img_pull_waiter *w;
    struct img_pull *p;
    bool fresh = false;
    int rc;

    if (s->closing)
        return ag_err_set(err, -ECANCELED, "daemon is shutting down");
    if (image == NULL || image[0] == '\0')
        return ag_err_set(err, -EINVAL, "image reference is empty");
    if ((rc = img_ref_parse(image, &ref, err)) < 0)
        return rc;
    if (img_ref_format(&ref, key, sizeof(key)) < 0)
        return ag_err_set(err, -ENAMETOOLONG, "image reference too long");
    if ((w = calloc(1, sizeof(*w))) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    /* Same canonical reference (and no credentials of its own): join the
     * pull in flight rather than download the image twice. */
    p = pull_find(s, key);
    if (p == NULL) {
        if ((rc = pull_new(s, &ref, key, auth, spec, &p, err)) < 0) {
            free(w);
            return rc;
        }
        fresh = true;
    }
    w->pull = p;
    w->cb = cb;
    w->arg = arg;
    w->next = p->waiters;
    p->waiters = w;
    if (waiter != NULL)
        *waiter = w;
    if (fresh) {
        p->next = s->pulls;
        s->pulls = p;
        ag_log(AG_INFO, "pull start ref=%s", key);
        fetch_manifest(p, NULL);
    } else {
        ag_log(AG_INFO, "pull join ref=%s", key);
    }
    return 0;
}

static void pull_abort(struct img_pull *p, int code, const char *why)
{
    struct ag_err e;

    ag_err_init(&e);
    ag_err_set(&e, code, "%s", why);
    pull_fail(p, &e, code, NULL);
    if (p->fetch != NULL)
        img_fetch_cancel(p->fetch); /* its callback finishes the pull */
    if (p->retry_timer != NULL)
        uv_timer_start(p->retry_timer, on_config_retry, 0, 0);
    if (p->phase == P_LAYERS && p->layers_left > 0) {
        stop_layers(p);
        pull_finish(p);
    }
}

void img_svc_pull_cancel(struct img_pull_waiter *w)
{
    struct img_pull *p;

    if (w == NULL)
        return;
    p = w->pull;
    for (struct img_pull_waiter **pp = &p->waiters; *pp != NULL; pp = &(*pp)->next)
        if (*pp == w) {
            *pp = w->next;
            free(w);
            break;
        }
    /* The record write, once started, completes: it is cheap and leaves a
     * usable image. */
    if (p->waiters == NULL && !p->writing && !p->failed)
        pull_abort(p, -ECANCELED, "cancelled by the client");
}

void img_pull__cancel_all(struct img_svc *s)
{
    struct img_pull *p = s->pulls;

    while (p != NULL) {
        struct img_pull *next = p->next;
        if (!p->writing && !p->failed)
            pull_abort(p, -ECANCELED, "daemon is shutting down");
        p = next;
    }
}

bool img_pull__uses_chain(const struct img_svc *s, const char *chain_hex)
{
    for (const struct img_pull *p = s->pulls; p != NULL; p = p->next)
        for (size_t i = 0; i < p->layer_count; i++)
            if (strcmp(p->layers[i].chain + strlen("sha256:"), chain_hex) == 0)
                return true;
    return false;
}

bool img_pull__uses_blob(const struct img_svc *s, const char *digest)
{
    for (const struct img_pull *p = s->pulls; p != NULL; p = p->next) {
        if (strcmp(p->manifest_digest, digest) == 0 || strcmp(p->index_digest, digest) == 0 ||
            (p->man != NULL && strcmp(p->man->config.digest, digest) == 0))
            return true;
        for (size_t i = 0; p->man != NULL && i < p->man->layers_count; i++)
            if (strcmp(p->man->layers[i].digest, digest) == 0)
                return true;
    }
    return false;
}

char *img_svc_pull_progress(struct img_svc *s, const char *image)
{
    struct img_ref ref;
    char key[IMG_SVC_NAME_MAX + IMG_REF_TAG_MAX];
    struct ag_err e;
    struct img_pull *p;
    cJSON *j, *arr;
    char *out;

    ag_err_init(&e);
    if (image == NULL || img_ref_parse(image, &ref, &e) < 0 ||
        img_ref_format(&ref, key, sizeof(key)) < 0 || (p = pull_find(s, key)) == NULL)
        return NULL;
    if ((j = cJSON_CreateObject()) == NULL)
        return NULL;
    cJSON_AddStringToObject(j, "ref", p->key);
    cJSON_AddStringToObject(j, "phase", phase_names[p->phase]);
    arr = cJSON_AddArrayToObject(j, "layers");
    for (size_t i = 0; arr != NULL && i < p->layer_count; i++) {
        uint64_t done = 0;
        int64_t total = p->layers[i].size;
        const char *state = p->layers[i].done ? "done" : "waiting";
        cJSON *l = cJSON_CreateObject();
        if (l == NULL)
            break;
        if (!p->layers[i].done)
            img_layer_job_progress(s, p, i, &done, &total, &state);
        else
            done = p->layers[i].size > 0 ? (uint64_t)p->layers[i].size : 0;
        cJSON_AddStringToObject(l, "digest", p->layers[i].digest);
        cJSON_AddNumberToObject(l, "done", (double)done);
        cJSON_AddNumberToObject(l, "total", (double)total);
        cJSON_AddStringToObject(l, "state", state);
        cJSON_AddItemToArray(arr, l);
    }
    out = cJSON_PrintUnformatted(j);
    cJSON_Delete(j);
    return out;
}
