/* agent/image: the registry client: manifest and blob fetches over the
 * distribution API (GET /v2/<name>/manifests|blobs/<ref>), with mirrors,
 * authentication (Bearer token flow, Basic), redirects, retries and resume.
 *
 * A fetch walks its endpoint list (mirrors, then the upstream).  On each
 * endpoint it makes attempts: a request, then as needed a token fetch and a
 * retry with the token (once per 401), redirects (at most 5,
 * Authorization dropped when the host changes), and retries with
 * exponential backoff on 5xx, 429 and dropped connections.  A blob streams
 * into an ingest of the content store; a retry resumes with Range from the
 * bytes already accepted, and a server that ignores Range (200) restarts
 * the ingest.  Invariants: every fetch calls its callback exactly once;
 * registry responses are untrusted (bodies are bounded, digests verified,
 * error text escaped); credentials never go to a host they were not meant
 * for and are never logged.
 */
#include "image/img_net.h"

#include <cjson/cJSON.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define BACKOFF_MAX_MS 30000

/* ---- client ------------------------------------------------------------------ */

static int build_tls(struct img_registry *r, struct ag_err *err)
{
    struct img_tls_opts dflt = {0};
    int rc = img_tls_cfg_new(&dflt, &r->tls_default, err);

    if (rc < 0 || r->cfg == NULL || r->cfg->config_count == 0)
        return rc;
    r->tls = calloc(r->cfg->config_count, sizeof(*r->tls));
    if (r->tls == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    for (size_t i = 0; i < r->cfg->config_count; i++) {
        const struct img_host_config *hc = &r->cfg->configs[i];
        struct img_tls_opts o = {hc->ca_file, hc->cert_file, hc->key_file,
                                 hc->insecure_skip_verify};
        if (!o.ca_file && !o.cert_file && !o.key_file && !o.insecure_skip_verify)
            continue;
        rc = img_tls_cfg_new(&o, &r->tls[r->tls_count].cfg, err);
        if (rc < 0)
            return ag_err_wrap(err, "configs: %s: tls", hc->host);
        r->tls[r->tls_count++].hc = hc;
    }
    return 0;
}

static void registry_destroy(struct img_registry *r)
{
    if (r->pool != NULL)
        img_conn_pool_close(r->pool);
    img_token_cache_free(r->tokens);
    img_tls_cfg_free(r->tls_default);
    for (size_t i = 0; i < r->tls_count; i++)
        img_tls_cfg_free(r->tls[i].cfg);
    free(r->tls);
    free(r);
}

int img_registry_new(const struct img_registry_opts *o, struct img_registry **out,
                     struct ag_err *err)
{
    struct img_registry *r = calloc(1, sizeof(*r));
    struct img_proxy_cfg proxy = {0};
    int rc;

    if (r == NULL)
        return ag_err_set(err, -ENOMEM, "registry client: out of memory");
    r->loop = o->loop;
    r->content = o->content;
    r->cfg = o->registries;
    r->max_parallel = o->max_parallel_blobs ? o->max_parallel_blobs : 3;
    r->max_retries = o->max_retries ? o->max_retries : 4;
    r->retry_base_ms = o->retry_base_ms ? o->retry_base_ms : 500;
    if (o->proxy_from_env)
        img_proxy_cfg_from_env(&proxy);
    rc = img_conn_pool_new(o->loop, &proxy, o->connect_timeout_ms ? o->connect_timeout_ms : 30000,
                           o->stall_timeout_ms ? o->stall_timeout_ms : 60000, &r->pool);
    img_proxy_cfg_fini(&proxy);
    if (rc == 0)
        rc = img_token_cache_new(&r->tokens);
    if (rc < 0) {
        registry_destroy(r);
        return ag_err_set(err, rc, "registry client: out of memory");
    }
    rc = build_tls(r, err);
    if (rc < 0) {
        registry_destroy(r);
        return rc;
    }
    *out = r;
    return 0;
}

static void registry_maybe_free(struct img_registry *r)
{
    if (r->closing && r->fetches == NULL)
        registry_destroy(r);
}

void img_registry_close(struct img_registry *r)
{
    r->closing = true;
    for (struct img_fetch *f = r->fetches; f != NULL; f = f->next)
        if (f->parent == NULL)
            img_fetch_cancel(f);
    registry_maybe_free(r);
}

struct img_tls_cfg *img__tls_for(struct img_registry *r, const struct img_url *u)
{
    char hp[300];
    const struct img_host_config *hc;

    img_url_hostport(u, hp, sizeof(hp));
    hc = img_registries_host(r->cfg, hp);
    for (size_t i = 0; hc != NULL && i < r->tls_count; i++)
        if (r->tls[i].hc == hc)
            return r->tls[i].cfg;
    return r->tls_default;
}

/* ---- fetch lifetime ------------------------------------------------------------- */

static void on_timer_closed(uv_handle_t *h)
{
    struct img_fetch *f = h->data;
    struct img_registry *r = f->r;

    if (f->prev)
        f->prev->next = f->next;
    else
        r->fetches = f->next;
    if (f->next)
        f->next->prev = f->prev;
    img_auth_config_fini(&f->auth);
    img_auth_secret_free(f->auth_header);
    free(f->eps);
    free(f->buf);
    free(f);
    registry_maybe_free(r);
}

int img__fetch_new(struct img_registry *r, enum img_fetch_kind kind, struct img_fetch **out)
{
    struct img_fetch *f = calloc(1, sizeof(*f));

    if (f == NULL)
        return -ENOMEM;
    f->r = r;
    f->kind = kind;
    ag_err_init(&f->err);
    uv_timer_init(r->loop, &f->timer);
    f->timer.data = f;
    f->next = r->fetches;
    if (r->fetches)
        r->fetches->prev = f;
    r->fetches = f;
    *out = f;
    return 0;
}

static void release_slot(struct img_fetch *f)
{
    struct img_registry *r = f->r;

    if (f->waiting_slot) {
        struct img_fetch **pp = &r->wait_head, *prev = NULL;
        while (*pp != NULL && *pp != f) {
            prev = *pp;
            pp = &(*pp)->wait_next;
        }
        if (*pp == f) {
            *pp = f->wait_next;
            if (r->wait_tail == f)
                r->wait_tail = prev;
        }
        f->waiting_slot = false;
    }
    if (!f->has_slot)
        return;
    f->has_slot = false;
    r->active_blobs--;
    if (r->wait_head != NULL && !r->closing) {
        struct img_fetch *n = r->wait_head;
        r->wait_head = n->wait_next;
        if (r->wait_head == NULL)
            r->wait_tail = NULL;
        n->waiting_slot = false;
        n->has_slot = true;
        r->active_blobs++;
        img__fetch_attempt(n);
    }
}

/* Stops everything in flight; the fetch then only waits to be freed. */
static void fetch_quiesce(struct img_fetch *f)
{
    if (f->conn != NULL) {
        img_conn_abort(f->conn);
        f->conn = NULL;
    }
    if (f->child != NULL) {
        struct img_fetch *c = f->child;
        f->child = NULL;
        c->parent = NULL;
        img__fetch_finish(c, -ECANCELED);
    }
    uv_timer_stop(&f->timer);
    img_ingest_free(f->ing);
    f->ing = NULL;
    release_slot(f);
}

static void deliver_manifest(struct img_fetch *f, int status)
{
    struct img_manifest_data m = {0};

    if (status == 0) {
        m.data = steal_ptr(&f->buf);
        m.len = f->buf_len;
        snprintf(m.media_type, sizeof(m.media_type), "%s", f->content_type);
        if (strncmp(f->object, "sha", 3) == 0 && strchr(f->object, ':') != NULL)
            snprintf(m.digest, sizeof(m.digest), "%s", f->object);
        else
            img_digest_sha256(m.data, m.len, m.digest);
    }
    f->manifest_cb(status, status == 0 ? &m : NULL, &f->err, f->data);
    free(m.data);
}

void img__fetch_finish(struct img_fetch *f, int status)
{
    if (f->finished)
        return;
    f->finished = true;
    fetch_quiesce(f);
    if (status < 0 && f->err.code == 0)
        ag_err_set(&f->err, status, "%s", strerror(-status));
    if (status == 0)
        ag_err_init(&f->err);
    switch (f->kind) {
    case IMG_F_MANIFEST:
        deliver_manifest(f, status);
        break;
    case IMG_F_BLOB:
        f->blob.on_done(status, &f->err, f->blob.data);
        break;
    case IMG_F_TOKEN:
        if (f->parent != NULL) {
            struct img_fetch *p = f->parent;
            p->child = NULL;
            f->parent = NULL;
            img__token_done(p, status, &f->err);
            /* p->auth_header now holds the token: keep ours alive until here. */
        }
        break;
    }
    uv_close((uv_handle_t *)&f->timer, on_timer_closed);
}

static void on_cancel_timer(uv_timer_t *t)
{
    struct img_fetch *f = t->data;

    ag_err_set(&f->err, -ECANCELED, "cancelled");
    img__fetch_finish(f, -ECANCELED);
}

void img_fetch_cancel(struct img_fetch *f)
{
    if (f == NULL || f->finished || f->timer_for_finish)
        return;
    f->timer_for_finish = true;
    if (f->conn != NULL) {
        img_conn_abort(f->conn);
        f->conn = NULL;
    }
    uv_timer_start(&f->timer, on_cancel_timer, 0, 0);
}

static void on_commit(struct img_ingest *ing, int status, const struct ag_err *err, void *data)
{
    struct img_fetch *f = data;
    char where[2400];

    if (f->finished || f->timer_for_finish)
        return;
    if (status == 0) {
        img__fetch_finish(f, 0);
        return;
    }
    img__fetch_describe(f, where, sizeof(where));
    ag_err_set(&f->err, status, "blob %s from %s: %s", f->blob_digest, where, err->msg);
    if (status == -EBADMSG) {
        /* The partial file is gone; the next endpoint starts afresh. */
        img_ingest_free(f->ing);
        f->ing = NULL;
        img__fetch_next(f);
        return;
    }
    img__fetch_finish(f, status);
}

void img__blob_done(struct img_fetch *f)
{
    uint64_t have = img_ingest_offset(f->ing);
    char where[2400];

    if (f->blob.size >= 0 && have < (uint64_t)f->blob.size) {
        img__fetch_describe(f, where, sizeof(where));
        ag_err_set(&f->err, -ECONNRESET, "%s: body ended after %llu of %lld bytes", where,
                   (unsigned long long)have, (long long)f->blob.size);
        img__fetch_retry(f);
        return;
    }
    if (img_ingest_commit(f->ing, on_commit) < 0)
        img__fetch_finish(f, -EIO);
}

static void on_ingest_written(struct img_ingest *ing, uint64_t off, const uint8_t *p, size_t n,
                              void *data)
{
    struct img_fetch *f = data;

    if (f->finished || f->timer_for_finish)
        return;
    if (f->blob.on_data != NULL)
        f->blob.on_data(off, p, n, f->blob.data);
    if (f->blob.on_progress != NULL)
        f->blob.on_progress(off + n, f->blob.size, f->blob.data);
    if (f->paused && f->conn != NULL && img_ingest_backlog(ing) < IMG_FETCH_RESUME_BACKLOG) {
        f->paused = false;
        img_conn_resume(f->conn);
    }
}

static void on_ingest_open(struct img_ingest *ing, int status, uint64_t offset, void *data)
{
    struct img_fetch *f = data;

    if (f->finished || f->timer_for_finish)
        return;
    if (status == 1) {
        if (f->blob.on_progress != NULL && f->blob.size >= 0)
            f->blob.on_progress((uint64_t)f->blob.size, f->blob.size, f->blob.data);
        img__fetch_finish(f, 0);
        return;
    }
    if (status < 0) {
        ag_err_set(&f->err, status, "blob %s: open ingest: %s", f->blob_digest, strerror(-status));
        img__fetch_finish(f, status);
        return;
    }
    img_ingest_set_written_cb(ing, on_ingest_written);
    if (offset > 0 && f->blob.on_progress != NULL)
        f->blob.on_progress(offset, f->blob.size, f->blob.data);
    if (f->blob.size >= 0 && offset == (uint64_t)f->blob.size) {
        if (img_ingest_commit(ing, on_commit) < 0)
            img__fetch_finish(f, -EIO);
        return;
    }
    img__fetch_attempt(f);
}

/* ---- attempts ------------------------------------------------------------------- */

void img__fetch_attempt(struct img_fetch *f)
{
    const struct img_endpoint *e;
    char ns[300] = "";
    int rc;

    if (f->finished || f->timer_for_finish)
        return;
    if (f->kind == IMG_F_BLOB && f->ing == NULL) {
        rc = img_ingest_open(f->r->loop, f->r->content, f->blob_digest, f->blob.size,
                             on_ingest_open, f, &f->ing);
        if (rc < 0) {
            f->ing = NULL;
            ag_err_set(&f->err, rc, "blob %s: %s", f->blob_digest,
                       rc == -EBUSY ? "already being fetched" : strerror(-rc));
            img__fetch_finish(f, rc);
        }
        return;
    }
    e = img__fetch_ep(f);
    if (!e->is_upstream)
        snprintf(ns, sizeof(ns), "?ns=%s", f->registry);
    f->url.tls = e->tls && !f->plain_now;
    f->url.port = f->plain_now && e->port == 443 ? 80 : e->port;
    snprintf(f->url.host, sizeof(f->url.host), "%s", e->host);
    if (snprintf(f->url.path, sizeof(f->url.path), "%s/%s/%s/%s%s", e->prefix, e->repo,
                 f->kind == IMG_F_MANIFEST ? "manifests" : "blobs", f->object,
                 ns) >= (int)sizeof(f->url.path)) {
        ag_err_set(&f->err, -ENAMETOOLONG, "request path too long");
        img__fetch_finish(f, -ENAMETOOLONG);
        return;
    }
    f->redirects = 0;
    f->send_auth = true;
    f->auth_retried = false;
    img__request_send(f);
}

static void on_retry_timer(uv_timer_t *t) { img__fetch_attempt(t->data); }

void img__fetch_retry(struct img_fetch *f)
{
    uint32_t delay;

    if (f->finished || f->timer_for_finish)
        return;
    if (f->kind == IMG_F_TOKEN) {
        img__fetch_finish(f, f->err.code < 0 ? f->err.code : -EIO);
        return;
    }
    if (++f->attempt > f->r->max_retries) {
        img__fetch_next(f);
        return;
    }
    delay = f->r->retry_base_ms << (f->attempt - 1 < 16 ? f->attempt - 1 : 16);
    if (delay > BACKOFF_MAX_MS)
        delay = BACKOFF_MAX_MS;
    if (f->retry_after_ms > delay)
        delay = f->retry_after_ms;
    ag_log(AG_INFO, "registry retry attempt=%u delay_ms=%u error=\"%s\"", f->attempt, delay,
           f->err.msg);
    uv_timer_start(&f->timer, on_retry_timer, delay, 0);
}

void img__fetch_next(struct img_fetch *f)
{
    if (f->finished || f->timer_for_finish)
        return;
    if (f->kind == IMG_F_TOKEN || f->ep_idx + 1 >= f->ep_count) {
        img__fetch_finish(f, f->err.code < 0 ? f->err.code : -EIO);
        return;
    }
    ag_log(AG_WARN, "registry endpoint failed, trying the next error=\"%s\"", f->err.msg);
    f->ep_idx++;
    f->attempt = 0;
    f->plain_now = false;
    img_auth_secret_free(f->auth_header);
    f->auth_header = NULL;
    img__fetch_attempt(f);
}

/* ---- public fetches ------------------------------------------------------------- */

static int fetch_setup(struct img_registry *r, enum img_fetch_kind kind, const struct img_ref *ref,
                       const char *object, const struct img_auth_config *auth,
                       struct img_fetch **out, struct ag_err *err)
{
    struct img_fetch *f;
    int rc;

    if (r->closing)
        return ag_err_set(err, -ESHUTDOWN, "registry client is closing");
    if (object == NULL || object[0] == '\0' || strlen(object) >= sizeof(f->object))
        return ag_err_set(err, -EINVAL, "%s/%s: no tag or digest", ref->domain, ref->path);
    rc = img__fetch_new(r, kind, &f);
    if (rc < 0)
        return ag_err_set(err, rc, "out of memory");
    snprintf(f->registry, sizeof(f->registry), "%s", ref->domain);
    snprintf(f->object, sizeof(f->object), "%s", object);
    rc = img_auth_config_copy(&f->auth, auth);
    if (rc < 0)
        ag_err_set(err, rc, "out of memory");
    else
        rc = img_registries_endpoints(r->cfg, ref->domain, ref->path, &f->eps, &f->ep_count, err);
    if (rc < 0) {
        f->finished = true;
        uv_close((uv_handle_t *)&f->timer, on_timer_closed);
        return rc;
    }
    *out = f;
    return 0;
}

int img_registry_fetch_manifest(struct img_registry *r, const struct img_ref *ref,
                                const struct img_auth_config *auth, img_manifest_cb cb, void *data,
                                struct img_fetch **out, struct ag_err *err)
{
    struct img_fetch *f;
    int rc = fetch_setup(r, IMG_F_MANIFEST, ref, img_ref_object(ref), auth, &f, err);

    if (rc < 0)
        return rc;
    f->manifest_cb = cb;
    f->data = data;
    img__fetch_attempt(f);
    if (out != NULL)
        *out = f;
    return 0;
}

int img_registry_fetch_blob(struct img_registry *r, const struct img_ref *ref,
                            const struct img_blob_req *b, const struct img_auth_config *auth,
                            struct img_fetch **out, struct ag_err *err)
{
    struct img_fetch *f;
    char path[64];
    int rc;

    if (r->content == NULL)
        return ag_err_set(err, -EINVAL, "registry client has no content store");
    if (b->on_done == NULL || img_content_blob_path(r->content, b->digest, path, 1) == -EINVAL)
        return ag_err_set(err, -EINVAL, "blob digest %s: want sha256:<64 hex>",
                          b->digest ? b->digest : "(null)");
    rc = fetch_setup(r, IMG_F_BLOB, ref, b->digest, auth, &f, err);
    if (rc < 0)
        return rc;
    f->blob = *b;
    snprintf(f->blob_digest, sizeof(f->blob_digest), "%s", b->digest);
    f->blob.digest = f->blob_digest;
    if (out != NULL)
        *out = f;
    if (r->active_blobs < r->max_parallel) {
        r->active_blobs++;
        f->has_slot = true;
        img__fetch_attempt(f);
        return 0;
    }
    f->waiting_slot = true;
    if (r->wait_tail)
        r->wait_tail->wait_next = f;
    else
        r->wait_head = f;
    r->wait_tail = f;
    return 0;
}
