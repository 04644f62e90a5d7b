/* agent/image: one HTTP exchange of a registry fetch (img_registry.c owns
 * the fetch): the request with the right credentials for the host it goes
 * to, the response head and body (bounded buffers, or the blob's ingest),
 * registry error bodies turned into messages, redirects, and the 401 ->
 * Bearer token / Basic flow.  Everything from the registry is untrusted:
 * bodies are bounded before they are buffered, error text is escaped, and
 * Authorization never follows a redirect to another host.
 */
#include "image/img_net.h"

#include <cjson/cJSON.h>
#include <mbedtls/platform_util.h>
#include <mbedtls/sha256.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define MAX_REDIRECTS 5
#define ERROR_BODY_MAX 65536
#define TOKEN_BODY_MAX (1u << 20)

static const struct img_conn_ops fetch_conn_ops;

/* ---- requests ------------------------------------------------------------------------ */

/* The credentials for the current endpoint: the caller's for the upstream,
 * the configured ones of the host actually contacted otherwise. */
static const struct img_auth_config *cur_creds(const struct img_fetch *f)
{
    const struct img_endpoint *e = img__fetch_ep(f);

    if (e->is_upstream && !img_auth_config_empty(&f->auth))
        return &f->auth;
    return e->cfg != NULL && !img_auth_config_empty(&e->cfg->auth) ? &e->cfg->auth : NULL;
}

static void identity_of(const struct img_auth_config *a, char *out, size_t len)
{
    const char *secret = a ? (a->auth ? a->auth : a->identity_token) : NULL;

    if (a != NULL && a->username != NULL) {
        snprintf(out, len, "user:%s", a->username);
    } else if (secret != NULL) {
        uint8_t sum[32];
        mbedtls_sha256_ret((const unsigned char *)secret, strlen(secret), sum, 0);
        snprintf(out, len, "secret:%02x%02x%02x%02x%02x%02x%02x%02x", sum[0], sum[1], sum[2],
                 sum[3], sum[4], sum[5], sum[6], sum[7]);
    } else {
        snprintf(out, len, "anonymous");
    }
}

static void default_scope(const struct img_fetch *f, char *out, size_t len)
{
    snprintf(out, len, "repository:%s:pull", img__fetch_ep(f)->repo);
}

/* An Authorization value for a first request (owned): a configured
 * registry token or a cached bearer token for this host and repository. */
static char *preemptive_auth(struct img_fetch *f)
{
    const struct img_auth_config *a = cur_creds(f);
    const char *realm, *service, *tok;
    char hp[300], scope[600], id[128], *out = NULL;

    if (a != NULL && a->registry_token != NULL)
        return asprintf(&out, "Bearer %s", a->registry_token) < 0 ? NULL : out;
    img_url_hostport(&f->url, hp, sizeof(hp));
    if (!img_token_cache_host(f->r->tokens, hp, &realm, &service))
        return NULL;
    default_scope(f, scope, sizeof(scope));
    identity_of(a, id, sizeof(id));
    tok = img_token_cache_get(f->r->tokens, realm, service, scope, id, ag_now_ns());
    if (tok == NULL || asprintf(&out, "Bearer %s", tok) < 0)
        return NULL;
    return out;
}

static int format_token_body(struct img_fetch *f, char **body)
{
    const struct img_auth_config *a = f->parent ? cur_creds(f->parent) : NULL;
    char svc[800], scope[3200];
    size_t tok_len = a && a->identity_token ? 3 * strlen(a->identity_token) + 1 : 0;
    char *tok = tok_len ? malloc(tok_len) : NULL;
    int rc = tok_len && !tok ? -ENOMEM : -EINVAL;

    if (tok != NULL && img_url_escape(f->token_key_service, svc, sizeof(svc)) == 0 &&
        img_url_escape(f->token_scope, scope, sizeof(scope)) == 0 &&
        img_url_escape(a->identity_token, tok, tok_len) == 0)
        rc = asprintf(body,
                      "grant_type=refresh_token&client_id=picocri&service=%s&scope=%s&"
                      "refresh_token=%s",
                      svc, scope, tok) < 0
                 ? -ENOMEM
                 : 0;
    img_auth_secret_free(tok);
    return rc;
}

static int format_request(struct img_fetch *f, char **out, size_t *out_len)
{
    char hp[300], range[64] = "";
    const char *accept = "";
    char *body = NULL, *pre = NULL;
    const char *auth = NULL;
    int n;

    img_url_hostport(&f->url, hp, sizeof(hp));
    if (f->send_auth)
        auth = f->auth_header ? f->auth_header : (pre = preemptive_auth(f));
    if (f->kind == IMG_F_MANIFEST)
        accept = "Accept: " IMG_MANIFEST_ACCEPT "\r\n";
    if (f->kind == IMG_F_BLOB && f->ing != NULL && img_ingest_offset(f->ing) > 0)
        snprintf(range, sizeof(range), "Range: bytes=%llu-\r\n",
                 (unsigned long long)img_ingest_offset(f->ing));
    if (f->token_post) {
        n = format_token_body(f, &body);
        if (n < 0)
            return n;
        n = asprintf(out,
                     "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: picocri/" PICOCRI_VERSION
                     "\r\nContent-Type: application/x-www-form-urlencoded\r\n"
                     "Content-Length: %zu\r\n\r\n%s",
                     f->url.path, hp, strlen(body), body);
        img_auth_secret_free(body);
    } else {
        n = asprintf(out,
                     "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: picocri/" PICOCRI_VERSION
                     "\r\n%s%s%s%s%s\r\n",
                     f->url.path, hp, accept, range, auth ? "Authorization: " : "",
                     auth ? auth : "", auth ? "\r\n" : "");
    }
    img_auth_secret_free(pre);
    if (n < 0)
        return -ENOMEM;
    *out_len = (size_t)n;
    return 0;
}

void img__fetch_describe(const struct img_fetch *f, char *out, size_t len)
{
    char hp[300];

    img_url_hostport(&f->url, hp, sizeof(hp));
    snprintf(out, len, "%s %s://%s%s", f->token_post ? "POST" : "GET",
             f->url.tls ? "https" : "http", hp, f->url.path);
}

/* "CODE: message" of the first entry of a registry error body, escaped. */
static void registry_error_text(const struct img_fetch *f, char *out, size_t len)
{
    cJSON *root = f->buf_len ? cJSON_ParseWithLength((const char *)f->buf, f->buf_len) : NULL;
    const cJSON *errs = cJSON_GetObjectItemCaseSensitive(root, "errors");
    const cJSON *e0 = cJSON_IsArray(errs) ? cJSON_GetArrayItem(errs, 0) : NULL;
    const cJSON *code = cJSON_GetObjectItemCaseSensitive(e0, "code");
    const cJSON *msg = cJSON_GetObjectItemCaseSensitive(e0, "message");
    char c[80] = "", m[200] = "";

    out[0] = '\0';
    if (cJSON_IsString(code))
        ag_str_escape(c, sizeof(c), code->valuestring, 64);
    if (cJSON_IsString(msg))
        ag_str_escape(m, sizeof(m), msg->valuestring, 160);
    if (c[0] || m[0])
        snprintf(out, len, " %s%s%s", c, c[0] && m[0] ? ": " : "", m);
    cJSON_Delete(root);
}

static int status_errno(int status)
{
    switch (status) {
    case 401:
        return -EACCES;
    case 403:
        return -EPERM;
    case 404:
        return -ENOENT;
    case 429:
        return -EAGAIN;
    default:
        return status >= 500 ? -EIO : -EPROTO;
    }
}

static int error_from_response(struct img_fetch *f)
{
    char where[2400], detail[300];

    img__fetch_describe(f, where, sizeof(where));
    registry_error_text(f, detail, sizeof(detail));
    return ag_err_set(&f->err, status_errno(f->http_status), "%s: HTTP %d%s", where, f->http_status,
                      detail);
}

void img__request_send(struct img_fetch *f)
{
    struct img_conn_key key = {.tls = f->url.tls, .port = f->url.port};
    _cleanup_free_ char *req = NULL;
    size_t len = 0;
    int rc;

    snprintf(key.host, sizeof(key.host), "%s", f->url.host);
    key.tls_cfg = key.tls ? img__tls_for(f->r, &f->url) : NULL;
    f->paused = false;
    rc = format_request(f, &req, &len);
    if (rc == 0)
        rc = img_conn_pool_send(f->r->pool, &key, req, len, false, &fetch_conn_ops, f, &f->conn);
    if (req != NULL)
        mbedtls_platform_zeroize(req, len);
    if (rc < 0) {
        ag_err_set(&f->err, rc, "request %s: %s", f->url.host, strerror(-rc));
        img__fetch_retry(f);
    }
}

/* ---- responses ------------------------------------------------------------------ */

static void collect_challenges(struct img_fetch *f, const struct img_http_resp *r)
{
    size_t idx = 0;
    const char *v;

    f->chal_count = 0;
    while ((v = img_http_resp_header_next(r, "www-authenticate", &idx)) != NULL &&
           f->chal_count < IMG_FETCH_CHALLENGES_MAX) {
        int n = img_http_auth_parse(v, f->chal + f->chal_count,
                                    (size_t)(IMG_FETCH_CHALLENGES_MAX - f->chal_count));
        if (n > 0)
            f->chal_count += n > IMG_FETCH_CHALLENGES_MAX - f->chal_count
                                 ? IMG_FETCH_CHALLENGES_MAX - f->chal_count
                                 : n;
    }
}

/* Content-Range: bytes <start>-<end>/<total|*>: the start offset. */
static int64_t range_start(const struct img_http_resp *r)
{
    const char *v = img_http_resp_header(r, "content-range");
    char *end;

    if (v == NULL || strncasecmp(v, "bytes ", 6) != 0)
        return -1;
    unsigned long long s = strtoull(v + 6, &end, 10);
    return end != v + 6 && *end == '-' ? (int64_t)s : -1;
}

static void blob_head(struct img_fetch *f, struct img_conn *c, const struct img_http_resp *r)
{
    uint64_t have = img_ingest_offset(f->ing);

    f->mode = IMG_BODY_INGEST;
    if (r->status == 206 && range_start(r) == (int64_t)have)
        return;
    if (r->status == 206 || have > 0) {
        /* Range ignored (200) or answered for another offset: start over. */
        if (img_ingest_reset(f->ing) < 0) {
            img_conn_abort(c);
            f->conn = NULL;
            ag_err_set(&f->err, -EIO, "blob %s: cannot restart the download", f->blob_digest);
            img__fetch_finish(f, -EIO);
            return;
        }
        if (r->status == 206) {
            img_conn_abort(c);
            f->conn = NULL;
            ag_err_set(&f->err, -EPROTO, "blob %s: bad Content-Range", f->blob_digest);
            img__fetch_retry(f);
        }
    }
}

static void on_head(struct img_conn *c, const struct img_http_resp *r, void *data)
{
    struct img_fetch *f = data;
    const char *v;

    f->http_status = r->status;
    f->buf_len = 0;
    f->buf_overflow = false;
    f->retry_after_ms = 0;
    v = img_http_resp_header(r, "content-type");
    snprintf(f->content_type, sizeof(f->content_type), "%.*s", v ? (int)strcspn(v, "; ") : 0,
             v ? v : "");
    v = img_http_resp_header(r, "docker-content-digest");
    snprintf(f->header_digest, sizeof(f->header_digest), "%s", v ? v : "");
    v = img_http_resp_header(r, "location");
    snprintf(f->location, sizeof(f->location), "%s", v ? v : "");
    v = img_http_resp_header(r, "retry-after");
    if (v != NULL && v[0] >= '0' && v[0] <= '9')
        f->retry_after_ms =
            (uint32_t)(strtoul(v, NULL, 10) > 30 ? 30000 : strtoul(v, NULL, 10) * 1000);
    if (r->status == 401)
        collect_challenges(f, r);
    if (r->status / 100 != 2) {
        f->mode = IMG_BODY_COLLECT;
        f->buf_max = ERROR_BODY_MAX;
        return;
    }
    if (f->kind == IMG_F_BLOB) {
        blob_head(f, c, r);
        return;
    }
    f->mode = IMG_BODY_COLLECT;
    f->buf_max = f->kind == IMG_F_MANIFEST ? IMG_MANIFEST_MAX_BYTES : TOKEN_BODY_MAX;
}

static void on_body(struct img_conn *c, const uint8_t *p, size_t n, void *data)
{
    struct img_fetch *f = data;
    int rc;

    if (f->mode == IMG_BODY_INGEST) {
        rc = img_ingest_write(f->ing, p, n);
        if (rc < 0) {
            img_conn_abort(c);
            f->conn = NULL;
            if (rc == -EFBIG) {
                ag_err_set(&f->err, -EFBIG, "blob %s: server sent more than %lld bytes",
                           f->blob_digest, (long long)f->blob.size);
                if (img_ingest_reset(f->ing) == 0) {
                    img__fetch_next(f);
                    return;
                }
            }
            ag_err_set(&f->err, rc, "blob %s: store: %s", f->blob_digest, strerror(-rc));
            img__fetch_finish(f, rc);
            return;
        }
        if (!f->paused && img_ingest_backlog(f->ing) > IMG_FETCH_PAUSE_BACKLOG) {
            f->paused = true;
            img_conn_pause(c);
        }
        return;
    }
    if (f->mode != IMG_BODY_COLLECT || f->buf_overflow)
        return;
    if (f->buf_len + n > f->buf_max) {
        if (f->http_status / 100 != 2) {
            f->buf_overflow = true; /* an error body: its start is enough */
            return;
        }
        img_conn_abort(c);
        f->conn = NULL;
        char where[2400];
        img__fetch_describe(f, where, sizeof(where));
        ag_err_set(&f->err, -EFBIG, "%s: response larger than %zu bytes", where, f->buf_max);
        img__fetch_next(f);
        return;
    }
    if (f->buf_len + n > 0) {
        uint8_t *nb = realloc(f->buf, f->buf_len + n + 1);
        if (nb == NULL) {
            img_conn_abort(c);
            f->conn = NULL;
            img__fetch_finish(f, -ENOMEM);
            return;
        }
        f->buf = nb;
        memcpy(f->buf + f->buf_len, p, n);
        f->buf_len += n;
        f->buf[f->buf_len] = 0;
    }
}

static void manifest_done(struct img_fetch *f)
{
    char where[2400], got[IMG_DIGEST_MAX];
    bool by_digest = strchr(f->object, ':') != NULL;
    struct ag_err e;

    img__fetch_describe(f, where, sizeof(where));
    ag_err_init(&e);
    if (by_digest && img_digest_verify(f->object, f->buf, f->buf_len, &e) < 0) {
        ag_err_set(&f->err, -EBADMSG, "%s: manifest does not match its digest (%s)", where, e.msg);
        img__fetch_next(f);
        return;
    }
    if (!by_digest && strncmp(f->header_digest, "sha256:", 7) == 0) {
        img_digest_sha256(f->buf, f->buf_len, got);
        if (strcmp(got, f->header_digest) != 0) {
            ag_err_set(&f->err, -EBADMSG, "%s: Docker-Content-Digest %s does not match body %s",
                       where, f->header_digest, got);
            img__fetch_next(f);
            return;
        }
    }
    img__fetch_finish(f, 0);
}

static void token_body_done(struct img_fetch *f)
{
    char *tok = NULL, where[2400];
    int64_t expires = 60;
    struct img_fetch *p = f->parent;
    int rc = img_auth_token_parse((const char *)f->buf, f->buf_len, &tok, &expires);

    if (rc < 0) {
        img__fetch_describe(f, where, sizeof(where));
        ag_err_set(&f->err, rc, "%s: token response without a token", where);
        img__fetch_finish(f, rc);
        return;
    }
    if (img_token_cache_put(f->r->tokens, f->token_key_realm, f->token_key_service, f->token_scope,
                            f->token_id, tok, ag_now_ns() + expires * 1000000000LL) < 0)
        ag_log(AG_DEBUG, "registry token not cached (out of memory)");
    if (p != NULL) {
        img_auth_secret_free(p->auth_header);
        p->auth_header = NULL;
        if (asprintf(&p->auth_header, "Bearer %s", tok) < 0)
            p->auth_header = NULL;
    }
    img_auth_secret_free(tok);
    img__fetch_finish(f, p != NULL && p->auth_header == NULL ? -ENOMEM : 0);
}

static void on_redirect(struct img_fetch *f)
{
    struct img_url nu;
    char where[2400];

    img__fetch_describe(f, where, sizeof(where));
    if (f->location[0] == '\0' || ++f->redirects > MAX_REDIRECTS ||
        img_url_parse(f->location, &f->url, &nu) < 0) {
        ag_err_set(&f->err, -EPROTO, "%s: HTTP %d: %s", where, f->http_status,
                   f->redirects > MAX_REDIRECTS ? "too many redirects" : "bad Location");
        img__fetch_next(f);
        return;
    }
    /* Credentials stay with the registry: blob storage gets signed URLs. */
    if (strcasecmp(nu.host, f->url.host) != 0 || nu.port != f->url.port || nu.tls != f->url.tls)
        f->send_auth = false;
    f->url = nu;
    img__request_send(f);
}

static int start_token(struct img_fetch *f, const struct img_auth_challenge *ch)
{
    const struct img_auth_config *creds = cur_creds(f);
    struct img_fetch *t;
    char hp[300], svc[800], scope[3200], url[4500];
    int rc;

    img_url_hostport(&f->url, hp, sizeof(hp));
    rc = img__fetch_new(f->r, IMG_F_TOKEN, &t);
    if (rc < 0)
        return rc;
    t->parent = f;
    f->child = t;
    snprintf(t->token_key_realm, sizeof(t->token_key_realm), "%s", ch->realm);
    snprintf(t->token_key_service, sizeof(t->token_key_service), "%s", ch->service);
    if (ch->scope[0])
        snprintf(t->token_scope, sizeof(t->token_scope), "%s", ch->scope);
    else
        default_scope(f, t->token_scope, sizeof(t->token_scope));
    identity_of(creds, t->token_id, sizeof(t->token_id));
    img_token_cache_drop(f->r->tokens, ch->realm, ch->service, t->token_scope, t->token_id);
    if (img_token_cache_note_host(f->r->tokens, hp, ch->realm, ch->service) < 0)
        return -ENOMEM;
    t->token_post = creds != NULL && creds->identity_token != NULL && creds->username == NULL;
    if (t->token_post)
        snprintf(url, sizeof(url), "%s", ch->realm);
    else if (img_url_escape(ch->service, svc, sizeof(svc)) < 0 ||
             img_url_escape(t->token_scope, scope, sizeof(scope)) < 0 ||
             snprintf(url, sizeof(url), "%s%sservice=%s&scope=%s", ch->realm,
                      strchr(ch->realm, '?') ? "&" : "?", svc, scope) >= (int)sizeof(url))
        return -ENAMETOOLONG;
    if (img_url_parse(url, NULL, &t->url) < 0)
        return -EINVAL;
    if (!t->token_post && img_auth_basic_header(creds, &t->auth_header) == -ENOMEM)
        return -ENOMEM;
    t->send_auth = t->auth_header != NULL;
    img__request_send(t);
    return 0;
}

static void on_unauthorized(struct img_fetch *f)
{
    const struct img_auth_challenge *bearer = NULL, *basic = NULL;

    error_from_response(f);
    if (f->kind == IMG_F_TOKEN) {
        img__fetch_finish(f, -EACCES);
        return;
    }
    if (f->auth_retried || !f->send_auth) {
        img__fetch_next(f);
        return;
    }
    f->auth_retried = true;
    for (int i = 0; i < f->chal_count && i < IMG_FETCH_CHALLENGES_MAX; i++) {
        if (f->chal[i].scheme == IMG_AUTH_BEARER && bearer == NULL && f->chal[i].realm[0])
            bearer = &f->chal[i];
        if (f->chal[i].scheme == IMG_AUTH_BASIC && basic == NULL)
            basic = &f->chal[i];
    }
    if (bearer != NULL) {
        int rc = start_token(f, bearer);
        if (rc < 0) {
            if (f->child != NULL) {
                struct img_fetch *c = f->child;
                f->child = NULL;
                c->parent = NULL;
                img__fetch_finish(c, rc);
            }
            ag_err_wrap(&f->err, "token request for realm %s failed (%s)", bearer->realm,
                        strerror(-rc));
            img__fetch_next(f);
        }
        return;
    }
    img_auth_secret_free(f->auth_header);
    f->auth_header = NULL;
    if (basic != NULL && img_auth_basic_header(cur_creds(f), &f->auth_header) == 0) {
        img__request_send(f);
        return;
    }
    img__fetch_next(f);
}

void img__token_done(struct img_fetch *f, int status, const struct ag_err *err)
{
    if (f->finished || f->timer_for_finish)
        return;
    if (status < 0) {
        ag_err_set(&f->err, status, "token: %s", err->msg);
        if (status == -EACCES || status == -EPERM)
            img__fetch_next(f);
        else
            img__fetch_retry(f);
        return;
    }
    img__request_send(f);
}

static void on_done(struct img_conn *c, const struct img_conn_result *res, void *data)
{
    struct img_fetch *f = data;
    int st = f->http_status;
    char where[2400];

    f->conn = NULL;
    if (res->status < 0) {
        img__fetch_describe(f, where, sizeof(where));
        ag_err_set(&f->err, res->status, "%s: %s", where, res->err->msg);
        /* localhost: plain HTTP when TLS failed, as containerd does, but
         * not when the server spoke TLS with a certificate we refused. */
        if (res->tls_failed && res->status != -EKEYREJECTED && f->kind != IMG_F_TOKEN &&
            img__fetch_ep(f)->plain_fallback && !f->plain_now && f->redirects == 0) {
            f->plain_now = true;
            img__fetch_attempt(f);
            return;
        }
        if (res->status == -EKEYREJECTED)
            img__fetch_next(f); /* retrying cannot change the certificate */
        else
            img__fetch_retry(f);
        return;
    }
    if (st / 100 == 2) {
        if (f->kind == IMG_F_MANIFEST)
            manifest_done(f);
        else if (f->kind == IMG_F_TOKEN)
            token_body_done(f);
        else
            img__blob_done(f);
    } else if (st == 301 || st == 302 || st == 303 || st == 307 || st == 308) {
        on_redirect(f);
    } else if (st == 401) {
        on_unauthorized(f);
    } else if (st == 408 || st == 429 || st >= 500) {
        error_from_response(f);
        img__fetch_retry(f);
    } else {
        error_from_response(f);
        if (f->kind == IMG_F_TOKEN)
            img__fetch_finish(f, f->err.code);
        else
            img__fetch_next(f);
    }
}

static const struct img_conn_ops fetch_conn_ops = {on_head, on_body, on_done};
