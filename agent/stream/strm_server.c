/* agent/stream: the streaming server's listener and connections.  Each
 * accepted TCP connection reads one HTTP/1.1 request head, takes its
 * one-time token, negotiates SPDY/3.1 or WebSocket and the sub-protocol,
 * answers 101 and hands frames to a remote-command session
 * (strm_session.c) or a port-forward session (strm_pf.c); everything else
 * gets an HTTP error and is closed.  This file owns the socket, the write
 * queue and the connection's one timer (request head and stream creation:
 * 30 s; then idle: 4 h).
 *
 * Invariants: a connection's memory is freed only from the close callback
 * of its last handle; the write queue is bounded by telling the sessions to
 * stop reading their sources above STRM_OUT_HIGH; input is bounded by the
 * codecs' limits and by stopping socket reads while a destination is
 * backed up. */
#include "strm_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SPDY_CHUNK 65536

struct issued {
    struct strm_params params;
    void *request;
    void (*free_request)(void *);
};

struct wreq {
    uv_write_t w;
    struct strm_conn *c;
    size_t len;
    uint8_t *data;
};

static const char *const kind_names[] = {"exec", "attach", "portforward"};
static const char *const rc_spdy_protos[] = {"v5.channel.k8s.io", "v4.channel.k8s.io",
                                             "v3.channel.k8s.io", "v2.channel.k8s.io",
                                             "channel.k8s.io"};
static const char *const pf_spdy_protos[] = {"portforward.k8s.io"};
static const char *const rc_ws_protos[] = {"v5.channel.k8s.io", "v4.channel.k8s.io",
                                           "v4.base64.channel.k8s.io", "channel.k8s.io",
                                           "base64.channel.k8s.io"};
static const char *const pf_ws_protos[] = {"v4.binary.portforward.k8s.io",
                                           "v4.base64.portforward.k8s.io", "portforward.k8s.io"};

static void conn_close(struct strm_conn *c);
static void on_timer(uv_timer_t *t);

static uint64_t now_ms(const struct strm_conn *c) { return uv_now(c->srv->loop); }

static void issued_free(void *p)
{
    struct issued *is = p;

    if (is == NULL)
        return;
    if (is->free_request)
        is->free_request(is->request);
    free(is);
}

/* ---- writing ---------------------------------------------------------------------- */

static void set_out_paused(struct strm_conn *c, bool paused)
{
    if (c->out_paused == paused)
        return;
    c->out_paused = paused;
    if (c->rc)
        strm__rc_pause(c->rc, paused);
    if (c->pf)
        strm__pf_pause(c->pf, paused);
}

static void on_write(uv_write_t *w, int status)
{
    struct wreq *r = ag_container_of(w, struct wreq, w);
    struct strm_conn *c = r->c;

    c->out_pending -= r->len;
    free(r->data);
    free(r);
    if (status < 0 && c->state != STRM_C_CLOSING) {
        conn_close(c);
        return;
    }
    c->last_io_ms = now_ms(c);
    if (c->out_paused && c->out_pending < STRM_OUT_LOW)
        set_out_paused(c, false);
    if (c->close_after_flush && c->out_pending == 0)
        conn_close(c);
}

/* Queues b's bytes (taken over: b is left empty). */
static int conn_write(struct strm_conn *c, struct ag_buf *b)
{
    if (c->state == STRM_C_CLOSING && !c->close_after_flush) {
        ag_buf_fini(b);
        return -ECONNRESET;
    }
    if (b->len == 0)
        return 0;
    struct wreq *r = malloc(sizeof(*r));
    if (r == NULL) {
        ag_buf_fini(b);
        return -ENOMEM;
    }
    r->c = c;
    r->len = b->len;
    r->data = b->data;
    ag_buf_init(b);
    uv_buf_t ub = uv_buf_init((char *)r->data, (unsigned)r->len);
    int rc = uv_write(&r->w, (uv_stream_t *)&c->tcp, &ub, 1, on_write);
    if (rc < 0) {
        free(r->data);
        free(r);
        return rc;
    }
    c->out_pending += r->len;
    if (!c->out_paused && c->out_pending > STRM_OUT_HIGH)
        set_out_paused(c, true);
    return 0;
}

static int conn_write_str(struct strm_conn *c, const char *s)
{
    struct ag_buf b;

    ag_buf_init(&b);
    int rc = ag_buf_append(&b, s, strlen(s));
    return rc < 0 ? rc : conn_write(c, &b);
}

static void base64_encode(const uint8_t *in, size_t len, char *out)
{
    static const char t[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    size_t o = 0;

    for (size_t i = 0; i < len; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (i + 1 < len ? (uint32_t)in[i + 1] << 8 : 0) |
                     (i + 2 < len ? in[i + 2] : 0);
        out[o++] = t[v >> 18 & 63];
        out[o++] = t[v >> 12 & 63];
        out[o++] = i + 1 < len ? t[v >> 6 & 63] : '=';
        out[o++] = i + 2 < len ? t[v & 63] : '=';
    }
}

static int ws_send(struct strm_conn *c, uint32_t ch, const void *data, size_t len)
{
    struct ag_buf msg, out;
    int rc;

    ag_buf_init(&msg);
    ag_buf_init(&out);
    if (c->ws_base64) {
        char *p;
        rc = ag_buf_reserve(&msg, 1 + (len + 2) / 3 * 4);
        if (rc < 0)
            return rc;
        msg.data[0] = (uint8_t)('0' + ch);
        p = (char *)msg.data + 1;
        base64_encode(data, len, p);
        msg.len = 1 + (len + 2) / 3 * 4;
    } else {
        uint8_t b = (uint8_t)ch;
        if ((rc = ag_buf_append(&msg, &b, 1)) < 0 || (rc = ag_buf_append(&msg, data, len)) < 0) {
            ag_buf_fini(&msg);
            return rc;
        }
    }
    rc = strm_ws_frame(&out, c->ws_base64 ? STRM_WS_TEXT : STRM_WS_BINARY, msg.data, msg.len,
                       false, 0);
    ag_buf_fini(&msg);
    if (rc < 0) {
        ag_buf_fini(&out);
        return rc;
    }
    return conn_write(c, &out);
}

int strm__send(struct strm_conn *c, uint32_t id, const void *data, size_t len, bool fin)
{
    const uint8_t *p = data;
    struct ag_buf out;
    int rc = 0;

    if (c->state == STRM_C_CLOSING)
        return -ECONNRESET;
    if (c->state == STRM_C_WS) {
        /* A WebSocket channel has no half-close from the server's side. */
        for (size_t off = 0; off < len && rc == 0; off += SPDY_CHUNK)
            rc = ws_send(c, id, p + off, len - off < SPDY_CHUNK ? len - off : SPDY_CHUNK);
        return rc;
    }
    ag_buf_init(&out);
    size_t off = 0;
    do {
        size_t n = len - off < SPDY_CHUNK ? len - off : SPDY_CHUNK;
        bool last = off + n == len;
        rc = strm_spdy_data(&out, id, p + off, n, last && fin ? STRM_SPDY_FLAG_FIN : 0);
        off += n;
    } while (rc == 0 && off < len);
    if (rc < 0) {
        ag_buf_fini(&out);
        return rc;
    }
    return conn_write(c, &out);
}

int strm__reply(struct strm_conn *c, uint32_t id)
{
    struct ag_buf out;

    ag_buf_init(&out);
    int rc = strm_spdy_syn_reply(c->spdy, &out, id, NULL, 0, 0);
    if (rc < 0) {
        ag_buf_fini(&out);
        return rc;
    }
    return conn_write(c, &out);
}

int strm__reset(struct strm_conn *c, uint32_t id)
{
    struct ag_buf out;

    if (c->state != STRM_C_SPDY)
        return 0;
    ag_buf_init(&out);
    int rc = strm_spdy_rst_stream(&out, id, 5 /* CANCEL */);
    return rc < 0 ? (ag_buf_fini(&out), rc) : conn_write(c, &out);
}

void strm__finish(struct strm_conn *c)
{
    if (c->state == STRM_C_CLOSING)
        return;
    if (c->state == STRM_C_WS) {
        struct ag_buf out;
        uint8_t code[2] = {0x03, 0xe8}; /* 1000 normal closure */
        ag_buf_init(&out);
        if (strm_ws_frame(&out, STRM_WS_CLOSE, code, 2, false, 0) == 0)
            (void)conn_write(c, &out);
        ag_buf_fini(&out);
    }
    c->state = STRM_C_CLOSING;
    c->close_after_flush = true;
    uv_read_stop((uv_stream_t *)&c->tcp);
    c->reading = false;
    if (c->out_pending == 0)
        conn_close(c);
}

bool strm__out_full(const struct strm_conn *c) { return c->out_pending > STRM_OUT_HIGH; }

/* ---- reading ----------------------------------------------------------------------- */

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[65536]; /* the loop is single-threaded: one read at a time */

    buf->base = slab;
    buf->len = sizeof(slab);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf);

static void update_reading(struct strm_conn *c)
{
    bool want = c->state != STRM_C_CLOSING && c->in_blocks == 0;

    if (want && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
            c->reading = true;
    } else if (!want && c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
}

void strm__block_input(struct strm_conn *c, bool block)
{
    c->in_blocks += block ? 1 : -1;
    ag_assert(c->in_blocks >= 0);
    update_reading(c);
}

static const char *frame_header(const struct strm_spdy_frame *f, const char *name)
{
    for (size_t i = 0; i < f->header_count; i++)
        if (strcmp(f->headers[i].name, name) == 0)
            return f->headers[i].value;
    return NULL;
}

static int on_syn_stream(struct strm_conn *c, const struct strm_spdy_frame *f)
{
    const char *type = frame_header(f, "streamtype");
    int rc;

    if (f->stream_id == 0)
        return -EPROTO;
    if (c->rc)
        rc = strm__rc_stream(c->rc, f->stream_id, type ? type : "");
    else
        rc = strm__pf_stream(c->pf, f->stream_id, type ? type : "", frame_header(f, "port"),
                             frame_header(f, "requestid"));
    if (rc == 0 && (f->flags & STRM_SPDY_FLAG_FIN)) {
        if (c->rc)
            rc = strm__rc_data(c->rc, f->stream_id, NULL, 0, true);
        else
            rc = strm__pf_data(c->pf, f->stream_id, NULL, 0, true);
    }
    return rc;
}

static int on_spdy_frame(void *arg, const struct strm_spdy_frame *f)
{
    struct strm_conn *c = arg;
    struct ag_buf out;
    bool fin = f->flags & STRM_SPDY_FLAG_FIN;

    if (c->state != STRM_C_SPDY)
        return 0;
    switch (f->type) {
    case STRM_SPDY_SYN_STREAM:
        return on_syn_stream(c, f);
    case STRM_SPDY_DATA:
    case STRM_SPDY_RST_STREAM:
        if (f->type == STRM_SPDY_RST_STREAM)
            fin = true;
        return c->rc ? strm__rc_data(c->rc, f->stream_id, f->data, f->data_len, fin)
                     : strm__pf_data(c->pf, f->stream_id, f->data, f->data_len, fin);
    case STRM_SPDY_PING:
        ag_buf_init(&out);
        if (strm_spdy_ping(&out, f->value) < 0) {
            ag_buf_fini(&out);
            return -ENOMEM;
        }
        return conn_write(c, &out);
    case STRM_SPDY_GOAWAY:
        strm__finish(c);
        return 0;
    default:
        return 0; /* SETTINGS, WINDOW_UPDATE, HEADERS, SYN_REPLY: ignored */
    }
}

static int b64val(uint8_t ch)
{
    if (ch >= 'A' && ch <= 'Z')
        return ch - 'A';
    if (ch >= 'a' && ch <= 'z')
        return ch - 'a' + 26;
    if (ch >= '0' && ch <= '9')
        return ch - '0' + 52;
    return ch == '+' ? 62 : ch == '/' ? 63 : -1;
}

/* Decodes base64 in place; returns the decoded length or -EINVAL. */
static long base64_decode(uint8_t *p, size_t len)
{
    size_t o = 0;
    uint32_t acc = 0;
    int bits = 0;

    while (len > 0 && p[len - 1] == '=')
        len--;
    for (size_t i = 0; i < len; i++) {
        int v = b64val(p[i]);
        if (v < 0)
            return -EINVAL;
        acc = acc << 6 | (uint32_t)v;
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            p[o++] = (uint8_t)(acc >> bits);
        }
    }
    return (long)o;
}

static int on_ws_message(void *arg, enum strm_ws_opcode op, const uint8_t *data, size_t len)
{
    struct strm_conn *c = arg;
    struct ag_buf out;

    if (c->state != STRM_C_WS)
        return 0;
    if (op == STRM_WS_CLOSE) {
        strm__finish(c);
        return 0;
    }
    if (op == STRM_WS_PING) {
        ag_buf_init(&out);
        if (strm_ws_frame(&out, STRM_WS_PONG, data, len, false, 0) < 0) {
            ag_buf_fini(&out);
            return -ENOMEM;
        }
        return conn_write(c, &out);
    }
    if (op != STRM_WS_TEXT && op != STRM_WS_BINARY)
        return 0;
    if (len == 0)
        return 0;
    uint8_t *copy = NULL;
    uint32_t ch = data[0];
    const uint8_t *payload = data + 1;
    size_t plen = len - 1;
    if (c->ws_base64) {
        if (ch < '0' || ch > '9')
            return -EPROTO;
        ch -= '0';
        copy = malloc(plen + 1);
        if (copy == NULL)
            return -ENOMEM;
        memcpy(copy, payload, plen);
        long n = base64_decode(copy, plen);
        if (n < 0) {
            free(copy);
            return -EPROTO;
        }
        payload = copy;
        plen = (size_t)n;
    }
    int rc;
    if (c->rc) {
        /* v5 close signal: [255, channel] half-closes that channel. */
        if (c->version >= 5 && ch == 255 && plen == 1)
            rc = strm__rc_data(c->rc, payload[0], NULL, 0, true);
        else
            rc = strm__rc_data(c->rc, ch, payload, plen, false);
    } else {
        rc = strm__pf_data(c->pf, ch, payload, plen, false);
    }
    free(copy);
    return rc;
}

static int handshake(struct strm_conn *c);

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct strm_conn *c = ag_container_of(s, struct strm_conn, tcp);
    const uint8_t *p = (const uint8_t *)buf->base;
    int rc = 0;

    if (n == 0)
        return;
    if (n < 0) {
        conn_close(c); /* EOF or error: the client is gone */
        return;
    }
    c->last_io_ms = now_ms(c);
    if (c->state == STRM_C_HEAD) {
        rc = strm_http_req_parse(c->req, p, (size_t)n);
        if (rc == 0)
            return;
        if (rc < 0) {
            (void)conn_write_str(c, rc == -E2BIG ? "HTTP/1.1 431 Request Header Fields Too "
                                                   "Large\r\nConnection: close\r\n\r\n"
                                                 : "HTTP/1.1 400 Bad Request\r\n"
                                                   "Connection: close\r\n\r\n");
            strm__finish(c);
            return;
        }
        size_t used = (size_t)rc;
        rc = handshake(c);
        if (rc < 0 || c->state == STRM_C_CLOSING)
            return;
        p += used;
        n -= (ssize_t)used;
    }
    if (n > 0 && c->state == STRM_C_SPDY)
        rc = strm_spdy_recv(c->spdy, p, (size_t)n, on_spdy_frame, c);
    else if (n > 0 && c->state == STRM_C_WS)
        rc = strm_ws_recv(&c->ws, p, (size_t)n, on_ws_message, c);
    if (rc < 0 && c->state != STRM_C_CLOSING) {
        ag_log(AG_DEBUG, "stream conn: protocol error: %s", strerror(-rc));
        conn_close(c);
    }
}

/* ---- the upgrade ------------------------------------------------------------------- */

static int http_error(struct strm_conn *c, int status, const char *reason, const char *msg)
{
    char head[512];

    snprintf(head, sizeof(head),
             "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\n"
             "X-Content-Type-Options: nosniff\r\nContent-Length: %zu\r\nConnection: close\r\n\r\n",
             status, reason, strlen(msg));
    (void)conn_write_str(c, head);
    (void)conn_write_str(c, msg);
    strm__finish(c);
    return -EPROTO;
}

/* Picks the first protocol of the client's (all values of header, comma
 * separated, in order) that is in ours. */
static const char *negotiate(const struct strm_http_req *req, const char *header,
                             const char *const *ours, size_t n, bool *offered)
{
    *offered = false;
    for (size_t i = 0; i < req->header_count; i++) {
        if (strcmp(req->headers[i].name, header) != 0)
            continue;
        const char *v = req->headers[i].value;
        while (*v) {
            while (*v == ' ' || *v == ',' || *v == '\t')
                v++;
            size_t len = strcspn(v, ", \t");
            if (len == 0)
                break;
            *offered = true;
            for (size_t k = 0; k < n; k++)
                if (strlen(ours[k]) == len && strncasecmp(v, ours[k], len) == 0)
                    return ours[k];
            v += len;
        }
    }
    return NULL;
}

static int proto_forbidden(struct strm_conn *c, const char *const *ours, size_t n)
{
    char msg[400];
    size_t o = (size_t)snprintf(msg, sizeof(msg), "unable to upgrade: unable to negotiate "
                                                  "protocol: client supports none of [");
    for (size_t i = 0; i < n && o < sizeof(msg); i++)
        o += (size_t)snprintf(msg + o, sizeof(msg) - o, "%s%s", i ? " " : "", ours[i]);
    if (o < sizeof(msg))
        snprintf(msg + o, sizeof(msg) - o, "]\n");
    return http_error(c, 403, "Forbidden", msg);
}

static int version_of(const char *proto)
{
    if (strncmp(proto, "v", 1) == 0 && proto[1] >= '2' && proto[1] <= '5')
        return proto[1] - '0';
    return 1;
}

static int start_session(struct strm_conn *c, struct ag_err *err)
{
    if (c->kind == STRM_PORTFORWARD)
        return strm__pf_new(c, &c->pf, err);
    int rc = strm__rc_new(c, &c->rc);
    return rc < 0 ? ag_err_set(err, rc, "session: %s", strerror(-rc)) : 0;
}

static int upgrade_spdy(struct strm_conn *c)
{
    bool pf = c->kind == STRM_PORTFORWARD, offered;
    const char *const *ours = pf ? pf_spdy_protos : rc_spdy_protos;
    size_t n = pf ? AG_ARRAY_LEN(pf_spdy_protos) : AG_ARRAY_LEN(rc_spdy_protos);
    const char *proto = negotiate(c->req, "x-stream-protocol-version", ours, n, &offered);
    char head[256];
    struct ag_err err;

    if (proto == NULL)
        return proto_forbidden(c, ours, n);
    c->version = pf ? 0 : version_of(proto);
    int rc = strm_spdy_new(&c->spdy);
    if (rc < 0)
        return http_error(c, 500, "Internal Server Error", "out of memory\n");
    ag_err_init(&err);
    if ((rc = start_session(c, &err)) < 0)
        return http_error(c, 500, "Internal Server Error", err.msg);
    snprintf(head, sizeof(head),
             "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
             "X-Stream-Protocol-Version: %s\r\n\r\n",
             proto);
    c->state = STRM_C_SPDY;
    return conn_write_str(c, head);
}

/* The port query parameters of a WebSocket port-forward ("?port=80&port=443"). */
static int query_ports(const char *target, uint16_t *ports, size_t max, size_t *count)
{
    const char *q = strchr(target, '?');
    char val[16];

    *count = 0;
    while (q && *q) {
        q++;
        size_t len = strcspn(q, "&");
        if (len > 5 && strncmp(q, "port=", 5) == 0) {
            if (len - 5 >= sizeof(val) || *count >= max)
                return -EINVAL;
            memcpy(val, q + 5, len - 5);
            val[len - 5] = 0;
            if (strm__port_parse(val, &ports[*count]) < 0)
                return -EINVAL;
            (*count)++;
        }
        q += len;
    }
    return *count > 0 ? 0 : -EINVAL;
}

static int upgrade_ws(struct strm_conn *c)
{
    bool pf = c->kind == STRM_PORTFORWARD, offered;
    const char *const *ours = pf ? pf_ws_protos : rc_ws_protos;
    size_t n = pf ? AG_ARRAY_LEN(pf_ws_protos) : AG_ARRAY_LEN(rc_ws_protos);
    const char *key = strm_http_header(c->req, "sec-websocket-key");
    const char *ver = strm_http_header(c->req, "sec-websocket-version");
    const char *proto = negotiate(c->req, "sec-websocket-protocol", ours, n, &offered);
    char accept[29], head[400];
    uint16_t ports[32];
    size_t port_count = 0;
    struct ag_err err;

    if (key == NULL || ver == NULL || strcmp(ver, "13") != 0 || strm_ws_accept_key(key, accept) < 0)
        return http_error(c, 400, "Bad Request", "bad WebSocket handshake\n");
    if (proto == NULL && offered)
        return proto_forbidden(c, ours, n);
    if (pf && query_ports(c->req->target, ports, AG_ARRAY_LEN(ports), &port_count) < 0)
        return http_error(c, 400, "Bad Request", "query parameter \"port\" is required\n");
    c->ws_base64 = proto && strstr(proto, "base64") != NULL;
    c->version = pf ? 0 : proto ? version_of(proto) : 1;
    strm_ws_init(&c->ws, true);
    c->ws_init = true;
    c->ws_pf = pf;
    snprintf(head, sizeof(head),
             "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
             "Sec-WebSocket-Accept: %s\r\n%s%s%s\r\n",
             accept, proto ? "Sec-WebSocket-Protocol: " : "", proto ? proto : "",
             proto ? "\r\n" : "");
    int rc = conn_write_str(c, head);
    if (rc < 0)
        return rc;
    c->state = STRM_C_WS;
    ag_err_init(&err);
    if ((rc = start_session(c, &err)) < 0) {
        ag_log(AG_WARN, "stream: %s", err.msg);
        strm__finish(c);
        return rc;
    }
    if (pf && (rc = strm__pf_ws_ports(c->pf, ports, port_count)) < 0)
        strm__finish(c);
    return rc;
}

/* "/exec/TOKEN[?query]" -> kind and token. */
static int parse_target(const char *target, enum strm_kind *kind, char *token, size_t token_len)
{
    for (size_t k = 0; k < AG_ARRAY_LEN(kind_names); k++) {
        size_t n = strlen(kind_names[k]);
        if (target[0] != '/' || strncmp(target + 1, kind_names[k], n) != 0 || target[n + 1] != '/')
            continue;
        const char *t = target + n + 2;
        size_t len = strcspn(t, "?/");
        if (len == 0 || len >= token_len || (t[len] == '/' && t[len + 1] != 0 && t[len + 1] != '?'))
            return -ENOENT;
        memcpy(token, t, len);
        token[len] = 0;
        *kind = (enum strm_kind)k;
        return 0;
    }
    return -ENOENT;
}

static int handshake(struct strm_conn *c)
{
    struct strm_http_req *req = c->req;
    char token[STRM_TOKEN_LEN + 8];
    struct strm_ticket t;
    enum strm_kind kind;

    if (parse_target(req->target, &kind, token, sizeof(token)) < 0)
        return http_error(c, 404, "Not Found", "404 page not found\n");
    if (strcmp(req->method, "GET") != 0 && strcmp(req->method, "POST") != 0)
        return http_error(c, 405, "Method Not Allowed", "method not allowed\n");
    strm_tokens_expire(&c->srv->tokens, now_ms(c));
    if (strm_tokens_take(&c->srv->tokens, token, kind, now_ms(c), &t) < 0)
        return http_error(c, 404, "Not Found",
                          "unknown, expired or already used streaming token\n");
    struct issued *is = t.request;
    c->kind = kind;
    c->params = is->params;
    c->request = is->request;
    c->free_request = is->free_request;
    free(is);
    bool upgrade = strm_http_header_has(req, "connection", "upgrade");
    const char *up = strm_http_header(req, "upgrade");
    int rc;
    if (upgrade && up && strcasecmp(up, "SPDY/3.1") == 0)
        rc = upgrade_spdy(c);
    else if (upgrade && up && strcasecmp(up, "websocket") == 0)
        rc = upgrade_ws(c);
    else
        return http_error(c, 400, "Bad Request",
                          "unable to upgrade: missing upgrade headers in request\n");
    free(steal_ptr(&c->req));
    return rc;
}

/* ---- connection lifecycle ------------------------------------------------------------ */

static void server_maybe_free(struct strm_server *s);

static void on_conn_closed(uv_handle_t *h)
{
    struct strm_conn *c = h->data;

    if (--c->handles_open > 0)
        return;
    struct strm_server *s = c->srv;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->conn_count--;
    if (c->free_request)
        c->free_request(c->request);
    strm_spdy_free(c->spdy);
    if (c->ws_init)
        strm_ws_fini(&c->ws);
    free(c->req);
    free(c);
    server_maybe_free(s);
}

static void conn_close(struct strm_conn *c)
{
    if (uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->state = STRM_C_CLOSING;
    c->close_after_flush = false;
    /* Sessions release their processes and sockets first: no callback
     * reaches this connection afterwards. */
    if (c->rc)
        strm__rc_free(steal_ptr(&c->rc));
    if (c->pf)
        strm__pf_free(steal_ptr(&c->pf));
    uv_close((uv_handle_t *)&c->tcp, on_conn_closed);
    uv_close((uv_handle_t *)&c->timer, on_conn_closed);
}

static void arm_timer(struct strm_conn *c, uint64_t ms) { uv_timer_start(&c->timer, on_timer, ms, 0); }

static void on_timer(uv_timer_t *t)
{
    struct strm_conn *c = t->data;
    uint64_t now = now_ms(c);

    if (c->state == STRM_C_HEAD) {
        conn_close(c);
        return;
    }
    if (c->rc && !strm__rc_started(c->rc)) {
        strm__rc_timeout(c->rc);
        return;
    }
    if (now - c->last_io_ms >= STRM_IDLE_TIMEOUT_MS) {
        ag_log(AG_DEBUG, "stream conn: idle for %llu ms, closing",
               (unsigned long long)(now - c->last_io_ms));
        conn_close(c);
        return;
    }
    arm_timer(c, STRM_IDLE_TIMEOUT_MS - (now - c->last_io_ms));
}

static void on_connection(uv_stream_t *l, int status)
{
    struct strm_server *s = l->data;
    struct strm_conn *c;

    if (status < 0 || s->stopping)
        return;
    c = calloc(1, sizeof(*c));
    if (c == NULL || (c->req = calloc(1, sizeof(*c->req))) == NULL) {
        free(c);
        return; /* the pending connection stays in the backlog */
    }
    c->srv = s;
    uv_tcp_init(s->loop, &c->tcp);
    uv_timer_init(s->loop, &c->timer);
    c->tcp.data = c->timer.data = c;
    c->handles_open = 2;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->conn_count++;
    if (uv_accept(l, (uv_stream_t *)&c->tcp) < 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    c->last_io_ms = now_ms(c);
    /* The head and then the client's streams must come within the stream
     * creation timeout; after that the idle timeout applies. */
    arm_timer(c, STRM_STREAM_CREATION_TIMEOUT_MS);
    update_reading(c);
}

/* Called by the session when it has all its streams: idle timing now. */
static void conn_started(struct strm_conn *c) { arm_timer(c, STRM_IDLE_TIMEOUT_MS); }

/* ---- server ---------------------------------------------------------------------------- */

static int parse_address(const char *address, char *host, size_t host_len, int *port)
{
    const char *colon = strrchr(address, ':');
    const char *h = address;
    size_t hl;
    char *end;

    if (colon == NULL)
        return -EINVAL;
    hl = (size_t)(colon - address);
    if (hl >= 2 && h[0] == '[' && h[hl - 1] == ']') {
        h++;
        hl -= 2;
    }
    if (hl == 0 || hl >= host_len)
        return -EINVAL;
    memcpy(host, h, hl);
    host[hl] = 0;
    long p = strtol(colon + 1, &end, 10);
    if (*end || end == colon + 1 || p < 0 || p > 65535)
        return -EINVAL;
    *port = (int)p;
    return 0;
}

int strm_server_start(uv_loop_t *loop, const char *address, const struct strm_backend_ops *ops,
                      void *ctx, struct strm_server **out, struct ag_err *err)
{
    struct sockaddr_storage ss;
    int namelen = sizeof(ss), rc;
    struct strm_server *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return ag_err_set(err, -ENOMEM, "stream server: out of memory");
    if (address == NULL)
        address = "127.0.0.1:0";
    if (parse_address(address, s->host, sizeof(s->host), &s->port) < 0) {
        free(s);
        return ag_err_set(err, -EINVAL, "stream address %.100s: expected HOST:PORT", address);
    }
    if (uv_ip4_addr(s->host, s->port, (struct sockaddr_in *)&ss) < 0 &&
        uv_ip6_addr(s->host, s->port, (struct sockaddr_in6 *)&ss) < 0) {
        free(s);
        return ag_err_set(err, -EINVAL, "stream address %.100s: not an IP address", address);
    }
    s->loop = loop;
    s->ops = ops;
    s->ctx = ctx;
    strm_tokens_init(&s->tokens);
    uv_tcp_init(loop, &s->listener);
    s->listener.data = s;
    if ((rc = uv_tcp_bind(&s->listener, (struct sockaddr *)&ss, 0)) < 0 ||
        (rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection)) < 0 ||
        (rc = uv_tcp_getsockname(&s->listener, (struct sockaddr *)&ss, &namelen)) < 0) {
        ag_err_set(err, rc, "stream server: listen on %.100s: %s", address, uv_strerror(rc));
        strm_server_stop(s);
        return rc;
    }
    s->port = ntohs(ss.ss_family == AF_INET ? ((struct sockaddr_in *)&ss)->sin_port
                                            : ((struct sockaddr_in6 *)&ss)->sin6_port);
    *out = s;
    return 0;
}

int strm_server_port(const struct strm_server *s) { return s->port; }
size_t strm_server_conn_count(const struct strm_server *s) { return s->conn_count; }

int strm_server_issue(struct strm_server *s, enum strm_kind kind,
                      const struct strm_params *params, void *request,
                      void (*free_request)(void *), char *url, size_t url_len,
                      struct ag_err *err)
{
    char token[STRM_TOKEN_LEN + 1];
    struct issued *is = calloc(1, sizeof(*is));
    bool v6 = strchr(s->host, ':') != NULL;

    if (is == NULL) {
        if (free_request)
            free_request(request);
        return ag_err_set(err, -ENOMEM, "stream token: out of memory");
    }
    is->params = params ? *params : (struct strm_params){0};
    is->request = request;
    is->free_request = free_request;
    strm_tokens_expire(&s->tokens, uv_now(s->loop));
    int rc = strm_tokens_issue(&s->tokens, kind, is, issued_free, uv_now(s->loop), token);
    if (rc < 0)
        return ag_err_set(err, rc, "stream token: %s", rc == -EAGAIN ? "too many outstanding "
                                                                       "streaming requests"
                                                                     : strerror(-rc));
    int n = snprintf(url, url_len, "http://%s%s%s:%d/%s/%s", v6 ? "[" : "", s->host,
                     v6 ? "]" : "", s->port, kind_names[kind], token);
    if (n < 0 || (size_t)n >= url_len)
        return ag_err_set(err, -ENAMETOOLONG, "stream url: buffer too small");
    return 0;
}

static void on_listener_closed(uv_handle_t *h)
{
    struct strm_server *s = h->data;

    s->listener.data = NULL;
    server_maybe_free(s);
}

static void server_maybe_free(struct strm_server *s)
{
    if (s->stopping && s->conn_count == 0 && s->listener.data == NULL)
        free(s);
}

void strm_server_stop(struct strm_server *s)
{
    if (s == NULL || s->stopping)
        return;
    s->stopping = true;
    strm_tokens_fini(&s->tokens);
    for (struct strm_conn *c = s->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&s->listener, on_listener_closed);
}

void strm__started(struct strm_conn *c) { conn_started(c); }
