/* agent/image: HTTP/1.1 client connections on libuv, with optional TLS and
 * an HTTP CONNECT proxy, and the keep-alive pool that reuses them per
 * (scheme, host, port, TLS configuration).
 *
 * A connection goes RESOLVING -> CONNECTING -> [PROXY] -> [HANDSHAKE] ->
 * BUSY (one request/response exchange) -> IDLE (reusable) and finally
 * CLOSING.  It owns a TCP handle and two timers; it is freed only from the
 * last close callback (and after a pending DNS request returned).  One timer
 * is the deadline: connect (DNS to TLS), stall (no byte while a response is
 * expected) or idle expiry; the other defers work out of callers' stacks.
 * Invariants: an exchange gets exactly one on_done unless the caller
 * aborted it; a connection is reused only after a complete response that
 * allows keep-alive with no stray bytes after it.
 */
#include "image/img_net.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>

#define READ_BUF 65536
#define IDLE_MS 30000

enum conn_state { C_RESOLVING, C_CONNECTING, C_PROXY, C_HANDSHAKE, C_BUSY, C_IDLE, C_CLOSING };

struct img_conn {
    struct img_conn_pool *pool;
    struct img_conn *next, *prev;
    struct img_conn_key key;
    enum conn_state state;
    uv_tcp_t tcp;
    uv_timer_t timer;
    uv_timer_t kick;
    uv_getaddrinfo_t gai;
    uv_connect_t creq;
    struct addrinfo *addrs, *addr_next;
    int open_handles;
    bool gai_active;
    bool tcp_init;
    bool via_proxy;
    bool paused;
    bool pumping;
    bool got_bytes;
    int pending_fail;
    struct img_tls *tls;
    const struct img_conn_ops *ops;
    void *data;
    char *req;
    size_t req_len;
    bool no_body;
    struct img_http_resp *resp;
    struct ag_err err;
    uint8_t buf[READ_BUF];
};

struct img_conn_pool {
    uv_loop_t *loop;
    struct img_conn *conns;
    struct img_proxy_cfg proxy;
    uint32_t connect_ms, stall_ms;
    bool closing;
};

struct write_req {
    uv_write_t req;
    size_t len;
    char data[];
};

static void conn_fail(struct img_conn *c, int status, bool tls_failed);
static void conn_process(struct img_conn *c, const uint8_t *p, size_t n);
static void conn_pump_tls(struct img_conn *c);
static void arm_deadline(struct img_conn *c);
static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

/* ---- proxy configuration ------------------------------------------------ */

static char *env_dup(const char *upper, const char *lower)
{
    const char *v = getenv(upper);

    if (v == NULL || *v == '\0')
        v = getenv(lower);
    return v != NULL && *v != '\0' ? strdup(v) : NULL;
}

void img_proxy_cfg_from_env(struct img_proxy_cfg *p)
{
    p->https_proxy = env_dup("HTTPS_PROXY", "https_proxy");
    p->http_proxy = env_dup("HTTP_PROXY", "http_proxy");
    p->no_proxy = env_dup("NO_PROXY", "no_proxy");
}

void img_proxy_cfg_fini(struct img_proxy_cfg *p)
{
    free(p->https_proxy);
    free(p->http_proxy);
    free(p->no_proxy);
    p->https_proxy = p->http_proxy = p->no_proxy = NULL;
}

bool img_proxy_bypass(const char *no_proxy, const char *host, uint16_t port)
{
    size_t hl = strlen(host);

    if (no_proxy == NULL)
        return false;
    for (const char *p = no_proxy; *p;) {
        while (*p == ',' || *p == ' ')
            p++;
        size_t n = strcspn(p, ", ");
        const char *e = p;
        size_t elen = n;
        unsigned long eport = 0;
        const char *colon = memrchr(e, ':', elen);
        if (n == 1 && *p == '*')
            return true;
        if (colon != NULL && memchr(e, ']', elen) == NULL && memchr(e, ':', elen) == colon) {
            eport = strtoul(colon + 1, NULL, 10);
            elen = (size_t)(colon - e);
        }
        if (elen > 0 && e[0] == '.') {
            e++;
            elen--;
        }
        if (elen > 0 && (eport == 0 || eport == port)) {
            if (hl == elen && strncasecmp(host, e, elen) == 0)
                return true;
            if (hl > elen && host[hl - elen - 1] == '.' &&
                strncasecmp(host + hl - elen, e, elen) == 0)
                return true;
        }
        p += n;
    }
    return false;
}

/* ---- lifetime ---------------------------------------------------------- */

static void pool_maybe_free(struct img_conn_pool *pool)
{
    if (pool->closing && pool->conns == NULL) {
        img_proxy_cfg_fini(&pool->proxy);
        free(pool);
    }
}

static void conn_maybe_free(struct img_conn *c)
{
    if (c->open_handles > 0 || c->gai_active)
        return;
    struct img_conn_pool *pool = c->pool;
    if (c->prev)
        c->prev->next = c->next;
    else
        pool->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    if (c->addrs)
        uv_freeaddrinfo(c->addrs);
    img_tls_free(c->tls);
    free(c->req);
    free(c->resp);
    free(c);
    pool_maybe_free(pool);
}

static void on_handle_closed(uv_handle_t *h)
{
    struct img_conn *c = h->data;

    c->open_handles--;
    conn_maybe_free(c);
}

static void conn_close(struct img_conn *c)
{
    if (c->state == C_CLOSING)
        return;
    c->state = C_CLOSING;
    c->ops = NULL;
    if (c->gai_active)
        uv_cancel((uv_req_t *)&c->gai);
    if (c->tcp_init)
        uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
    uv_close((uv_handle_t *)&c->kick, on_handle_closed);
}

/* Ends the exchange: detaches the caller, then reports. */
static void conn_finish(struct img_conn *c, int status, bool tls_failed, bool reuse)
{
    const struct img_conn_ops *ops = c->ops;
    void *data = c->data;
    struct img_conn_result res = {
        .status = status, .tls_failed = tls_failed, .got_response = c->got_bytes, .err = &c->err};

    c->ops = NULL;
    if (reuse && c->state == C_BUSY) {
        c->state = C_IDLE;
        arm_deadline(c);
        if (c->paused) {
            /* Idle connections keep reading to notice the peer closing. */
            c->paused = false;
            uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
        }
    }
    if (!reuse)
        conn_close(c);
    if (ops != NULL)
        ops->on_done(c, &res, data);
}

static void conn_fail(struct img_conn *c, int status, bool tls_failed)
{
    if (c->err.code == 0)
        ag_err_set(&c->err, status, "%s", uv_strerror(status));
    conn_finish(c, status, tls_failed, false);
}

/* ---- timers -------------------------------------------------------------- */

static void on_deadline(uv_timer_t *t)
{
    struct img_conn *c = t->data;

    if (c->state == C_IDLE) {
        conn_close(c);
        return;
    }
    if (c->state == C_BUSY)
        ag_err_set(&c->err, -ETIMEDOUT, "%s:%u: no data for %u ms", c->key.host, c->key.port,
                   c->pool->stall_ms);
    else
        ag_err_set(&c->err, -ETIMEDOUT, "%s:%u: connect timed out after %u ms", c->key.host,
                   c->key.port, c->pool->connect_ms);
    conn_fail(c, -ETIMEDOUT, c->state == C_HANDSHAKE);
}

static void arm_deadline(struct img_conn *c)
{
    uint32_t ms = c->state == C_IDLE   ? IDLE_MS
                  : c->state == C_BUSY ? c->pool->stall_ms
                                       : c->pool->connect_ms;
    uv_timer_start(&c->timer, on_deadline, ms, 0);
}

/* ---- writing ------------------------------------------------------------- */

static void on_written(uv_write_t *req, int status)
{
    struct write_req *w = ag_container_of(req, struct write_req, req);
    struct img_conn *c = req->handle->data;

    free(w);
    if (status < 0 && status != UV_ECANCELED && c->state != C_CLOSING && c->ops != NULL) {
        ag_err_set(&c->err, -ECONNRESET, "%s:%u: write: %s", c->key.host, c->key.port,
                   uv_strerror(status));
        conn_fail(c, -ECONNRESET, false);
    }
}

static int write_raw(struct img_conn *c, const void *p, size_t n)
{
    struct write_req *w = malloc(sizeof(*w) + n);

    if (w == NULL)
        return -ENOMEM;
    memcpy(w->data, p, n);
    w->len = n;
    uv_buf_t b = uv_buf_init(w->data, (unsigned)n);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written);
    if (rc < 0)
        free(w);
    return rc;
}

static int flush_tls(struct img_conn *c)
{
    const uint8_t *p;
    size_t n = img_tls_out(c->tls, &p);
    int rc = 0;

    if (n > 0) {
        rc = write_raw(c, p, n);
        img_tls_out_consume(c->tls, n);
    }
    return rc;
}

static int conn_write(struct img_conn *c, const char *p, size_t n)
{
    if (c->tls == NULL || c->state == C_PROXY)
        return write_raw(c, p, n);
    int rc = img_tls_write(c->tls, (const uint8_t *)p, n);
    return rc < 0 ? rc : flush_tls(c);
}

static void send_request(struct img_conn *c)
{
    c->state = C_BUSY;
    c->got_bytes = false;
    img_http_resp_init(c->resp, c->no_body);
    arm_deadline(c);
    int rc = conn_write(c, c->req, c->req_len);
    if (rc < 0) {
        ag_err_set(&c->err, -ECONNRESET, "%s:%u: send request failed", c->key.host, c->key.port);
        conn_fail(c, -ECONNRESET, false);
    }
}

/* ---- reading ------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    struct img_conn *c = h->data;

    *buf = uv_buf_init((char *)c->buf, sizeof(c->buf));
}

static void start_handshake(struct img_conn *c)
{
    c->state = C_HANDSHAKE;
    int rc = img_tls_handshake(c->tls, &c->err);
    if (flush_tls(c) < 0 && rc == -EAGAIN)
        rc = ag_err_set(&c->err, -ECONNRESET, "tls: write failed");
    if (rc == -EAGAIN)
        return;
    if (rc < 0) {
        ag_err_wrap(&c->err, "%s:%u", c->key.host, c->key.port);
        conn_fail(c, rc, true);
        return;
    }
    send_request(c);
}

static void proxy_connected(struct img_conn *c, const uint8_t *p, size_t n)
{
    size_t used;
    const uint8_t *body;
    size_t blen;
    int rc = img_http_resp_parse(c->resp, p, n, &used, &body, &blen);

    if (rc == IMG_HTTP_EV_NONE)
        return;
    if (rc < 0 || c->resp->status / 100 != 2 || used != n) {
        ag_err_set(&c->err, -ECONNREFUSED, "proxy CONNECT %s:%u: %s %d", c->key.host, c->key.port,
                   rc < 0 ? "bad response" : "status", rc < 0 ? rc : c->resp->status);
        conn_fail(c, -ECONNREFUSED, false);
        return;
    }
    if (c->tls != NULL)
        start_handshake(c);
    else
        send_request(c);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    struct img_conn *c = s->data;

    if (nread == 0 || c->state == C_CLOSING)
        return;
    if (nread < 0 || c->state == C_IDLE) {
        if (c->state == C_IDLE) {
            conn_close(c);
            return;
        }
        if (nread == UV_EOF && c->state == C_BUSY && c->tls == NULL) {
            if (img_http_resp_eof(c->resp) == IMG_HTTP_EV_DONE) {
                conn_finish(c, 0, false, false);
                return;
            }
        }
        if (nread == UV_EOF && c->state == C_BUSY && c->tls != NULL) {
            /* Let the engine report close_notify or a truncation. */
            conn_pump_tls(c);
            if (c->state != C_BUSY)
                return;
            if (img_http_resp_eof(c->resp) == IMG_HTTP_EV_DONE) {
                /* No close_notify; the body was close-delimited anyway. */
                conn_finish(c, 0, false, false);
                return;
            }
        }
        ag_err_set(&c->err, -ECONNRESET, "%s:%u: connection %s%s", c->key.host, c->key.port,
                   nread == UV_EOF ? "closed" : "error: ",
                   nread == UV_EOF ? (c->got_bytes ? " mid-response" : " before response")
                                   : uv_strerror((int)nread));
        conn_fail(c, -ECONNRESET, c->state == C_HANDSHAKE);
        return;
    }
    if (c->state == C_BUSY)
        arm_deadline(c);
    if (c->state == C_PROXY) {
        proxy_connected(c, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    if (c->tls == NULL) {
        c->got_bytes = true;
        conn_process(c, (const uint8_t *)buf->base, (size_t)nread);
        return;
    }
    if (img_tls_feed(c->tls, (const uint8_t *)buf->base, (size_t)nread) < 0) {
        ag_err_set(&c->err, -ENOBUFS, "%s:%u: tls input over limit", c->key.host, c->key.port);
        conn_fail(c, -ENOBUFS, false);
        return;
    }
    if (c->state == C_HANDSHAKE)
        start_handshake(c);
    else
        conn_pump_tls(c);
}

static void conn_pump_tls(struct img_conn *c)
{
    uint8_t plain[16384];

    if (c->pumping)
        return;
    c->pumping = true;
    for (int i = 0; i < 256 && c->state == C_BUSY && !c->paused; i++) {
        ssize_t n = img_tls_read(c->tls, plain, sizeof(plain));
        if (n == -EAGAIN)
            break;
        if (n == 0 || n < 0) {
            if (n == 0 && img_http_resp_eof(c->resp) == IMG_HTTP_EV_DONE) {
                c->pumping = false;
                conn_finish(c, 0, false, false);
                return;
            }
            ag_err_set(&c->err, -ECONNRESET, "%s:%u: tls %s", c->key.host, c->key.port,
                       n == 0 ? "closed mid-response" : "record error");
            c->pumping = false;
            conn_fail(c, -ECONNRESET, false);
            return;
        }
        c->got_bytes = true;
        conn_process(c, plain, (size_t)n);
    }
    c->pumping = false;
    flush_tls(c);
}

/* Feeds plaintext to the response parser and reports its events. */
static void conn_process(struct img_conn *c, const uint8_t *p, size_t n)
{
    for (int guard = 0; guard < 100000 && c->state == C_BUSY && c->ops != NULL; guard++) {
        size_t used;
        const uint8_t *body;
        size_t blen;
        int rc = img_http_resp_parse(c->resp, p, n, &used, &body, &blen);

        if (rc < 0) {
            ag_err_set(&c->err, -EPROTO, "%s:%u: malformed HTTP response (%s)", c->key.host,
                       c->key.port, strerror(-rc));
            conn_fail(c, -EPROTO, false);
            return;
        }
        p += used;
        n -= used;
        if (rc == IMG_HTTP_EV_NONE)
            return;
        if (rc == IMG_HTTP_EV_HEAD)
            c->ops->on_head(c, c->resp, c->data);
        else if (rc == IMG_HTTP_EV_BODY)
            c->ops->on_body(c, body, blen, c->data);
        else {
            bool clean = n == 0 && (c->tls == NULL || img_tls_in_pending(c->tls) == 0);
            conn_finish(c, 0, false, clean && c->resp->keep_alive);
            return;
        }
    }
}

/* ---- connecting ------------------------------------------------------------- */

static void try_connect(struct img_conn *c);
static void on_tcp_closed_retry(uv_handle_t *h);

static void on_connect(uv_connect_t *req, int status)
{
    struct img_conn *c = req->data;

    if (c->state == C_CLOSING)
        return;
    if (status < 0) {
        if (c->addr_next != NULL) {
            /* Another address (IPv4 after IPv6): a fresh handle after close. */
            uv_close((uv_handle_t *)&c->tcp, on_tcp_closed_retry);
            return;
        }
        ag_err_set(&c->err, -ECONNREFUSED, "connect %s:%u: %s", c->key.host, c->key.port,
                   uv_strerror(status));
        conn_fail(c, -ECONNREFUSED, false);
        return;
    }
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    if (c->via_proxy) {
        char req_buf[700];
        int n = snprintf(req_buf, sizeof(req_buf),
                         "CONNECT %s:%u HTTP/1.1\r\nHost: %s:%u\r\nUser-Agent: picocri\r\n\r\n",
                         c->key.host, c->key.port, c->key.host, c->key.port);
        c->state = C_PROXY;
        img_http_resp_init(c->resp, true);
        if (write_raw(c, req_buf, (size_t)n) < 0)
            conn_fail(c, -ECONNRESET, false);
        return;
    }
    if (c->tls != NULL)
        start_handshake(c);
    else
        send_request(c);
}

static void on_tcp_closed_retry(uv_handle_t *h)
{
    struct img_conn *c = h->data;

    c->open_handles--;
    c->tcp_init = false;
    if (c->state == C_CLOSING)
        conn_maybe_free(c);
    else
        try_connect(c);
}

static void try_connect(struct img_conn *c)
{
    struct addrinfo *ai = c->addr_next;
    int rc;

    c->addr_next = ai->ai_next;
    rc = uv_tcp_init(c->pool->loop, &c->tcp);
    if (rc < 0) {
        conn_fail(c, rc, false);
        return;
    }
    c->tcp.data = c;
    c->tcp_init = true;
    c->open_handles++;
    uv_tcp_nodelay(&c->tcp, 1);
    c->creq.data = c;
    rc = uv_tcp_connect(&c->creq, &c->tcp, ai->ai_addr, on_connect);
    if (rc < 0) {
        ag_err_set(&c->err, -ECONNREFUSED, "connect %s:%u: %s", c->key.host, c->key.port,
                   uv_strerror(rc));
        conn_fail(c, -ECONNREFUSED, false);
    }
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res)
{
    struct img_conn *c = req->data;

    c->gai_active = false;
    if (c->state == C_CLOSING) {
        if (res)
            uv_freeaddrinfo(res);
        conn_maybe_free(c);
        return;
    }
    if (status < 0 || res == NULL) {
        ag_err_set(&c->err, -EHOSTUNREACH, "resolve %s: %s", c->key.host, uv_strerror(status));
        conn_fail(c, -EHOSTUNREACH, false);
        return;
    }
    c->addrs = c->addr_next = res;
    c->state = C_CONNECTING;
    try_connect(c);
}

static int start_resolve(struct img_conn *c)
{
    struct img_conn_pool *pool = c->pool;
    const char *proxy = c->key.tls ? pool->proxy.https_proxy : pool->proxy.http_proxy;
    char host[256], port[8];
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};

    snprintf(host, sizeof(host), "%s", c->key.host);
    snprintf(port, sizeof(port), "%u", c->key.port);
    if (proxy != NULL && !img_proxy_bypass(pool->proxy.no_proxy, c->key.host, c->key.port)) {
        struct img_url u;
        char tmp[1100];
        snprintf(tmp, sizeof(tmp), "%s%s", strstr(proxy, "://") ? "" : "http://", proxy);
        if (img_url_parse(tmp, NULL, &u) < 0 || u.tls)
            return ag_err_set(&c->err, -EINVAL, "proxy %s: only http:// proxies are supported",
                              proxy);
        snprintf(host, sizeof(host), "%s", u.host);
        snprintf(port, sizeof(port), "%u", u.port);
        c->via_proxy = true;
    }
    c->gai.data = c;
    int rc = uv_getaddrinfo(pool->loop, &c->gai, on_resolved, host, port, &hints);
    if (rc < 0)
        return ag_err_set(&c->err, -EHOSTUNREACH, "resolve %s: %s", host, uv_strerror(rc));
    c->gai_active = true;
    return 0;
}

static void on_kick(uv_timer_t *t)
{
    struct img_conn *c = t->data;

    if (c->pending_fail < 0 && c->state != C_CLOSING) {
        conn_fail(c, c->pending_fail, false);
        return;
    }
    if (c->state == C_BUSY && c->tls != NULL)
        conn_pump_tls(c);
}

static int conn_new(struct img_conn_pool *pool, const struct img_conn_key *key,
                    struct img_conn **out)
{
    struct img_conn *c = calloc(1, sizeof(*c));

    if (c == NULL)
        return -ENOMEM;
    c->resp = malloc(sizeof(*c->resp));
    if (c->resp == NULL) {
        free(c);
        return -ENOMEM;
    }
    c->pool = pool;
    c->key = *key;
    c->state = C_RESOLVING;
    ag_err_init(&c->err);
    uv_timer_init(pool->loop, &c->timer);
    uv_timer_init(pool->loop, &c->kick);
    c->timer.data = c->kick.data = c;
    c->open_handles = 2;
    c->next = pool->conns;
    if (pool->conns)
        pool->conns->prev = c;
    pool->conns = c;
    if (key->tls) {
        if (key->tls_cfg == NULL || img_tls_new(key->tls_cfg, key->host, &c->tls) < 0) {
            conn_close(c);
            return -ENOMEM;
        }
    }
    *out = c;
    return 0;
}

/* ---- pool --------------------------------------------------------------------- */

int img_conn_pool_new(uv_loop_t *loop, const struct img_proxy_cfg *proxy, uint32_t connect_ms,
                      uint32_t stall_ms, struct img_conn_pool **out)
{
    struct img_conn_pool *pool = calloc(1, sizeof(*pool));

    if (pool == NULL)
        return -ENOMEM;
    pool->loop = loop;
    pool->connect_ms = connect_ms;
    pool->stall_ms = stall_ms;
    if (proxy != NULL) {
        pool->proxy.https_proxy = proxy->https_proxy ? strdup(proxy->https_proxy) : NULL;
        pool->proxy.http_proxy = proxy->http_proxy ? strdup(proxy->http_proxy) : NULL;
        pool->proxy.no_proxy = proxy->no_proxy ? strdup(proxy->no_proxy) : NULL;
    }
    *out = pool;
    return 0;
}

void img_conn_pool_close(struct img_conn_pool *pool)
{
    pool->closing = true;
    for (struct img_conn *c = pool->conns; c != NULL; c = c->next)
        conn_close(c);
    pool_maybe_free(pool);
}

size_t img_conn_pool_idle_count(const struct img_conn_pool *pool)
{
    size_t n = 0;

    for (struct img_conn *c = pool->conns; c != NULL; c = c->next)
        n += c->state == C_IDLE;
    return n;
}

static bool key_eq(const struct img_conn_key *a, const struct img_conn_key *b)
{
    return a->tls == b->tls && a->port == b->port && a->tls_cfg == b->tls_cfg &&
           strcasecmp(a->host, b->host) == 0;
}

int img_conn_pool_send(struct img_conn_pool *pool, const struct img_conn_key *key, const char *req,
                       size_t req_len, bool no_body, const struct img_conn_ops *ops, void *data,
                       struct img_conn **out)
{
    struct img_conn *c = NULL;
    char *copy = malloc(req_len);
    int rc;

    if (copy == NULL)
        return -ENOMEM;
    memcpy(copy, req, req_len);
    for (struct img_conn *it = pool->conns; it != NULL; it = it->next)
        if (it->state == C_IDLE && key_eq(&it->key, key)) {
            c = it;
            break;
        }
    if (c == NULL) {
        rc = conn_new(pool, key, &c);
        if (rc < 0) {
            free(copy);
            return rc;
        }
    }
    free(c->req);
    c->req = copy;
    c->req_len = req_len;
    c->no_body = no_body;
    c->ops = ops;
    c->data = data;
    c->paused = false;
    ag_err_init(&c->err);
    if (out != NULL)
        *out = c;
    if (c->state == C_IDLE) {
        send_request(c);
        return 0;
    }
    rc = start_resolve(c);
    if (rc < 0) {
        /* Reported through on_done, later, like any connection failure. */
        c->pending_fail = rc;
        uv_timer_start(&c->kick, on_kick, 0, 0);
    }
    arm_deadline(c);
    return 0;
}

void img_conn_pause(struct img_conn *c)
{
    if (c->paused || c->state != C_BUSY)
        return;
    c->paused = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    uv_timer_stop(&c->timer);
}

void img_conn_resume(struct img_conn *c)
{
    if (!c->paused || c->state != C_BUSY)
        return;
    c->paused = false;
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
    arm_deadline(c);
    if (c->tls != NULL && img_tls_in_pending(c->tls) > 0)
        uv_timer_start(&c->kick, on_kick, 0, 0);
}

void img_conn_abort(struct img_conn *c)
{
    c->ops = NULL;
    conn_close(c);
}
