/* agent/image internal: the registry client's network layers, shared by
 * img_http.c, img_tls.c, img_conn.c, img_auth.c, img_mirror.c and
 * img_registry.c.  Other folders use image.h instead.
 *
 * Layering, bottom up: the HTTP/1.1 response parser and the TLS engine are
 * sans-I/O (bytes in, events or bytes out); img_conn owns sockets, timers
 * and the keep-alive pool; img_registry speaks the distribution protocol
 * (auth, redirects, retries, mirrors) on top.
 */
#ifndef IMG_NET_H
#define IMG_NET_H

#include "ag_core.h"
#include "image/image.h"

#include <sys/types.h>
#include <uv.h>

/* ---- HTTP/1.1 response parser (img_http.c) --------------------------------
 * Untrusted input.  Limits: the status line and headers together at most
 * IMG_HTTP_HEAD_MAX bytes and IMG_HTTP_HEADERS_MAX headers; a chunk-size or
 * trailer line at most IMG_HTTP_LINE_MAX bytes; trailers at most
 * IMG_HTTP_HEAD_MAX bytes in total; sizes at most 2^60. */
#define IMG_HTTP_HEAD_MAX 32768
#define IMG_HTTP_HEADERS_MAX 100
#define IMG_HTTP_LINE_MAX 4096

enum img_http_state {
    IMG_HTTP_S_HEAD,
    IMG_HTTP_S_NOBODY,
    IMG_HTTP_S_BODY_LEN,
    IMG_HTTP_S_BODY_CLOSE,
    IMG_HTTP_S_CHUNK_SIZE,
    IMG_HTTP_S_CHUNK_DATA,
    IMG_HTTP_S_CHUNK_END,
    IMG_HTTP_S_TRAILER,
    IMG_HTTP_S_DONE,
};

enum img_http_event {
    IMG_HTTP_EV_NONE, /* all input consumed, more needed */
    IMG_HTTP_EV_HEAD, /* status and headers are available */
    IMG_HTTP_EV_BODY, /* *body, *body_len: a slice of the input */
    IMG_HTTP_EV_DONE, /* the response is complete; later input is not consumed */
};

struct img_http_hdr {
    uint16_t name; /* offsets of NUL-terminated strings in head[] */
    uint16_t value;
};

struct img_http_resp {
    enum img_http_state state;
    bool no_body; /* response to HEAD (or a successful CONNECT) */
    int status;
    int minor;       /* HTTP/1.<minor> */
    bool keep_alive; /* the connection may carry another request */
    bool chunked;
    int64_t content_length; /* -1 when absent */
    uint64_t left;          /* body or chunk bytes still expected */
    size_t head_len;
    size_t line_start; /* where the current head line starts in head[] */
    size_t hdr_count;
    struct img_http_hdr hdrs[IMG_HTTP_HEADERS_MAX];
    size_t line_len;
    size_t trailer_total;
    char line[IMG_HTTP_LINE_MAX];
    char head[IMG_HTTP_HEAD_MAX];
};

/* Prepares r for one response; no_body for responses to HEAD or CONNECT. */
void img_http_resp_init(struct img_http_resp *r, bool no_body);
/* Consumes a prefix of in (*used bytes) and returns the next event, or
 * -EPROTO (malformed), -EMSGSIZE (a limit exceeded), -EOVERFLOW (a size too
 * large).  Call again until it returns IMG_HTTP_EV_NONE or DONE (a body-less
 * response reports DONE on the next call with no input needed). */
int img_http_resp_parse(struct img_http_resp *r, const uint8_t *in, size_t len, size_t *used,
                        const uint8_t **body, size_t *body_len) AG_WUR;
/* The peer closed the connection: returns IMG_HTTP_EV_DONE when that ends a
 * close-delimited body, else -EPIPE (truncated response). */
int img_http_resp_eof(struct img_http_resp *r) AG_WUR;
/* The value of the first header named name (case-insensitive), or NULL.
 * img_http_resp_header_at iterates over all of them: *idx starts at 0. */
const char *img_http_resp_header(const struct img_http_resp *r, const char *name);
const char *img_http_resp_header_next(const struct img_http_resp *r, const char *name, size_t *idx);

/* WWW-Authenticate challenges (RFC 9110 §11.6.1, RFC 6750 §3). */
enum img_auth_scheme { IMG_AUTH_OTHER, IMG_AUTH_BASIC, IMG_AUTH_BEARER };

struct img_auth_challenge {
    enum img_auth_scheme scheme;
    char realm[512];
    char service[256];
    char scope[1024];
};

/* Parses a header value holding one or more challenges into out[0..max);
 * returns the number of challenges found (may exceed max: the rest are
 * parsed and dropped), -EPROTO when malformed, -EMSGSIZE for a value longer
 * than its field. */
int img_http_auth_parse(const char *value, struct img_auth_challenge *out, size_t max) AG_WUR;

/* An absolute http(s) URL split for a request. */
struct img_url {
    bool tls;
    uint16_t port;
    char host[256];  /* without brackets for IPv6 literals */
    char path[2048]; /* path and query, starts with '/' */
};

/* Parses "http[s]://host[:port][/path[?query]]"; -EINVAL when malformed or
 * too long.  With base != NULL, a reference starting with '/' is resolved
 * against base (redirect Location). */
int img_url_parse(const char *s, const struct img_url *base, struct img_url *out) AG_WUR;
/* "host" or "host:port" (port omitted when default) as for Host:, with
 * brackets for IPv6. */
void img_url_hostport(const struct img_url *u, char *out, size_t out_len);
/* Percent-encodes s (RFC 3986 unreserved kept) into out; -ENAMETOOLONG. */
int img_url_escape(const char *s, char *out, size_t out_len) AG_WUR;

/* ---- TLS engine (img_tls.c) ------------------------------------------------
 * A shared configuration per registry host (CA chain, client certificate,
 * verification mode) and a sans-I/O session per connection: ciphertext is
 * fed in with img_tls_feed and taken out with img_tls_out. */
struct img_tls_cfg;
struct img_tls;

struct img_tls_opts {
    const char *ca_file;   /* NULL: the system bundle */
    const char *cert_file; /* client certificate (mTLS), with key_file */
    const char *key_file;
    bool insecure_skip_verify;
};

#define IMG_TLS_SYSTEM_CA "/etc/ssl/certs/ca-certificates.crt"

/* Blocking (reads files): start-up or thread pool.  Returns owned *out. */
int img_tls_cfg_new(const struct img_tls_opts *o, struct img_tls_cfg **out,
                    struct ag_err *err) AG_WUR;
void img_tls_cfg_free(struct img_tls_cfg *cfg);

/* cfg is borrowed and must outlive the session; server_name sets SNI and
 * the name verified in the certificate. */
int img_tls_new(struct img_tls_cfg *cfg, const char *server_name, struct img_tls **out) AG_WUR;
void img_tls_free(struct img_tls *t);
/* True if the certificate has an iPAddress subjectAltName equal to ip
 * (ip_len 4 or 16 octets, network order).  Used by the verify callback that
 * lets registries addressed by IP verify (mbedTLS 2.28 matches DNS names
 * only); exposed for tests. */
struct mbedtls_x509_crt;
bool img_tls__cert_has_ip(const struct mbedtls_x509_crt *crt, const uint8_t *ip, size_t ip_len);
/* Appends received ciphertext (copied); -ENOBUFS past 1 MiB unread. */
int img_tls_feed(struct img_tls *t, const uint8_t *in, size_t len) AG_WUR;
/* Advances the handshake: 0 when complete, -EAGAIN when more input is
 * needed, -EKEYREJECTED when the peer's certificate did not verify (err
 * names why), else -EPROTO with err set. */
int img_tls_handshake(struct img_tls *t, struct ag_err *err) AG_WUR;
/* Plaintext out: bytes read (> 0), 0 at close_notify, -EAGAIN when more
 * ciphertext is needed, -EPROTO on a TLS error. */
ssize_t img_tls_read(struct img_tls *t, uint8_t *buf, size_t len) AG_WUR;
/* Encrypts all of plain into the output queue. */
int img_tls_write(struct img_tls *t, const uint8_t *plain, size_t len) AG_WUR;
/* Ciphertext waiting to be sent: returns its length and points *data at it;
 * img_tls_out_consume drops n sent bytes. */
size_t img_tls_out(struct img_tls *t, const uint8_t **data);
void img_tls_out_consume(struct img_tls *t, size_t n);
/* Bytes fed but not yet consumed by the engine. */
size_t img_tls_in_pending(const struct img_tls *t);

/* ---- connections and the keep-alive pool (img_conn.c) ---------------------- */
struct img_conn;
struct img_conn_pool;

struct img_conn_key {
    bool tls;
    uint16_t port;
    char host[256];
    struct img_tls_cfg *tls_cfg; /* borrowed; required when tls */
};

struct img_conn_result {
    int status;         /* 0: response complete; else negative errno */
    bool tls_failed;    /* the TLS handshake failed (plain-HTTP fallback) */
    bool got_response;  /* some response bytes arrived */
    struct ag_err *err; /* message when status < 0 */
};

struct img_conn_ops {
    /* The status line and headers are parsed; r stays valid until on_done. */
    void (*on_head)(struct img_conn *c, const struct img_http_resp *r, void *data);
    void (*on_body)(struct img_conn *c, const uint8_t *p, size_t n, void *data);
    /* Last callback of an exchange; the connection no longer belongs to the
     * caller (it went back to the pool or is closing). */
    void (*on_done)(struct img_conn *c, const struct img_conn_result *res, void *data);
};

struct img_proxy_cfg {
    char *https_proxy; /* URL or NULL */
    char *http_proxy;
    char *no_proxy; /* comma-separated hosts, .domains, host:port, or "*" */
};

/* Reads HTTPS_PROXY/HTTP_PROXY/NO_PROXY (and lower-case forms). */
void img_proxy_cfg_from_env(struct img_proxy_cfg *p);
void img_proxy_cfg_fini(struct img_proxy_cfg *p);
/* True when host (with port) must be reached directly per no_proxy. */
bool img_proxy_bypass(const char *no_proxy, const char *host, uint16_t port);

int img_conn_pool_new(uv_loop_t *loop, const struct img_proxy_cfg *proxy, uint32_t connect_ms,
                      uint32_t stall_ms, struct img_conn_pool **out) AG_WUR;
/* Closes every connection; exchanges in flight get no more callbacks (the
 * caller cancels its own requests first).  The pool is freed once all
 * handles are closed. */
void img_conn_pool_close(struct img_conn_pool *pool);
/* Sends req (copied) on an idle connection for key, or on a new one, and
 * reports the response through ops.  no_body: the request is HEAD.  *out
 * (optional) names the exchange for img_conn_pause/resume/abort. */
int img_conn_pool_send(struct img_conn_pool *pool, const struct img_conn_key *key, const char *req,
                       size_t req_len, bool no_body, const struct img_conn_ops *ops, void *data,
                       struct img_conn **out) AG_WUR;
/* Flow control of the body: stop and restart reading from the socket. */
void img_conn_pause(struct img_conn *c);
void img_conn_resume(struct img_conn *c);
/* Abandons the exchange without callbacks; the connection is closed. */
void img_conn_abort(struct img_conn *c);
size_t img_conn_pool_idle_count(const struct img_conn_pool *pool);

/* ---- credentials and tokens (img_auth.c) ------------------------------------ */
/* "Basic base64(user:pass)" from username/password or auth; -ENOENT when
 * the credentials hold neither.  *out is owned (zeroize with
 * img_auth_secret_free). */
int img_auth_basic_header(const struct img_auth_config *a, char **out) AG_WUR;
void img_auth_secret_free(char *s);
/* Token response JSON (untrusted, bounded by the caller to 1 MiB): takes
 * "token" or else "access_token", "expires_in" (default 60 s).  Returns
 * owned *token; -EBADMSG when neither is present or the JSON is invalid. */
int img_auth_token_parse(const char *json, size_t len, char **token, int64_t *expires_in_s) AG_WUR;

struct img_token_cache;
int img_token_cache_new(struct img_token_cache **out) AG_WUR;
void img_token_cache_free(struct img_token_cache *c);
/* Returns a borrowed token for (realm, service, scope, identity) still
 * valid at now_ns (10 s margin), or NULL. */
const char *img_token_cache_get(struct img_token_cache *c, const char *realm, const char *service,
                                const char *scope, const char *identity, int64_t now_ns);
int img_token_cache_put(struct img_token_cache *c, const char *realm, const char *service,
                        const char *scope, const char *identity, const char *token,
                        int64_t expires_at_ns) AG_WUR;
void img_token_cache_drop(struct img_token_cache *c, const char *realm, const char *service,
                          const char *scope, const char *identity);
/* Remembers the last Bearer challenge of a host so later requests attach a
 * cached token pre-emptively. */
int img_token_cache_note_host(struct img_token_cache *c, const char *host, const char *realm,
                              const char *service) AG_WUR;
bool img_token_cache_host(struct img_token_cache *c, const char *host, const char **realm,
                          const char **service);

/* Copies every set field; -ENOMEM. */
int img_auth_config_copy(struct img_auth_config *dst, const struct img_auth_config *src) AG_WUR;
bool img_auth_config_empty(const struct img_auth_config *a);

/* ---- fetches (img_registry.c, img_exchange.c) -------------------------------
 * A fetch is one manifest, blob or token request with its endpoint list,
 * retries, auth state and result.  img_registry.c owns its lifetime and the
 * attempts; img_exchange.c runs one HTTP exchange of it. */
#define IMG_FETCH_CHALLENGES_MAX 4
#define IMG_FETCH_PAUSE_BACKLOG (8u << 20)  /* stop reading the socket above */
#define IMG_FETCH_RESUME_BACKLOG (2u << 20) /* and read again below */

enum img_fetch_kind { IMG_F_MANIFEST, IMG_F_BLOB, IMG_F_TOKEN };
enum img_body_mode { IMG_BODY_DISCARD, IMG_BODY_COLLECT, IMG_BODY_INGEST };

struct img_tls_entry {
    const struct img_host_config *hc;
    struct img_tls_cfg *cfg;
};

struct img_registry {
    uv_loop_t *loop;
    struct img_content *content;
    const struct img_registries *cfg;
    struct img_conn_pool *pool;
    struct img_token_cache *tokens;
    struct img_tls_cfg *tls_default;
    struct img_tls_entry *tls;
    size_t tls_count;
    unsigned max_parallel, max_retries, active_blobs;
    uint32_t retry_base_ms;
    struct img_fetch *fetches;
    struct img_fetch *wait_head, *wait_tail;
    bool closing;
};

struct img_fetch {
    struct img_registry *r;
    struct img_fetch *next, *prev, *wait_next;
    enum img_fetch_kind kind;
    char registry[IMG_REF_NAME_MAX + 1];
    char object[IMG_DIGEST_MAX > IMG_REF_TAG_MAX ? IMG_DIGEST_MAX : IMG_REF_TAG_MAX + 1];
    struct img_auth_config auth;
    struct img_endpoint *eps;
    size_t ep_count, ep_idx;
    bool plain_now;
    unsigned attempt;
    uv_timer_t timer;
    bool timer_for_finish;
    /* The request in flight. */
    struct img_url url;
    unsigned redirects;
    bool send_auth;
    bool auth_retried;
    char *auth_header; /* "Bearer x" / "Basic x" for this endpoint */
    struct img_conn *conn;
    bool paused;
    int http_status;
    enum img_body_mode mode;
    char content_type[128];
    char header_digest[IMG_DIGEST_MAX];
    char location[2048];
    uint32_t retry_after_ms;
    struct img_auth_challenge chal[IMG_FETCH_CHALLENGES_MAX];
    int chal_count;
    uint8_t *buf;
    size_t buf_len, buf_max;
    bool buf_overflow;
    /* Blobs. */
    struct img_blob_req blob;
    char blob_digest[IMG_DIGEST_MAX];
    struct img_ingest *ing;
    bool waiting_slot, has_slot;
    /* Tokens: the fetch waiting for this one, and its request. */
    struct img_fetch *parent, *child;
    char token_scope[1024];
    char token_key_realm[512], token_key_service[256];
    char token_id[128];
    bool token_post;
    /* Result. */
    bool finished;
    struct ag_err err;
    img_manifest_cb manifest_cb;
    void *data;
};

static inline const struct img_endpoint *img__fetch_ep(const struct img_fetch *f)
{
    return &f->eps[f->ep_idx];
}

/* img_registry.c */
int img__fetch_new(struct img_registry *r, enum img_fetch_kind kind, struct img_fetch **out) AG_WUR;
/* Reports the result (once), stops everything and frees the fetch later. */
void img__fetch_finish(struct img_fetch *f, int status);
/* Starts an attempt on the current endpoint (opening the blob ingest first). */
void img__fetch_attempt(struct img_fetch *f);
/* After a transient failure (f->err set): backoff and retry, or next endpoint. */
void img__fetch_retry(struct img_fetch *f);
/* After a failure of this endpoint (f->err set): the next one, or finish. */
void img__fetch_next(struct img_fetch *f);
/* A blob's body ended: commit, or resume if it was short. */
void img__blob_done(struct img_fetch *f);
struct img_tls_cfg *img__tls_for(struct img_registry *r, const struct img_url *u);

/* img_exchange.c */
/* Sends f's request for f->url (errors go through img__fetch_retry). */
void img__request_send(struct img_fetch *f);
/* The token request of f finished (f->auth_header holds the token on 0). */
void img__token_done(struct img_fetch *f, int status, const struct ag_err *err);
/* "GET https://host/path" of the request in flight. */
void img__fetch_describe(const struct img_fetch *f, char *out, size_t len);

#endif
