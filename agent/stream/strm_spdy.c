/* agent/stream: SPDY/3.1 framing, sans-I/O.  Frames are parsed from a byte
 * stream and header blocks inflated with the connection's zlib context,
 * seeded with the SPDY/3 dictionary; encoders deflate with the other
 * context.  Invariant: every header block of the connection passes through
 * the shared context in order, whether or not its frame is then accepted,
 * so the two sides' dictionaries never diverge.
 *
 * This server never sends SETTINGS or WINDOW_UPDATE: moby/spdystream, the
 * client kubelet and crictl use, fails the connection on frame types it does
 * not handle.  Flow control is left to TCP. */
#include "strm.h"

#include <ctype.h>
#include <string.h>
#include <zlib.h>

/* The SPDY/3 header dictionary is built from its definition: length-prefixed
 * words, then a literal tail (1423 bytes, adler32 0xe3c6a7c2). */
static const char *const dict_words[] = {
    "options", "head", "post", "put", "delete", "trace", "accept", "accept-charset",
    "accept-encoding", "accept-language", "accept-ranges", "age", "allow", "authorization",
    "cache-control", "connection", "content-base", "content-encoding", "content-language",
    "content-length", "content-location", "content-md5", "content-range", "content-type", "date",
    "etag", "expect", "expires", "from", "host", "if-match", "if-modified-since",
    "if-none-match", "if-range", "if-unmodified-since", "last-modified", "location",
    "max-forwards", "pragma", "proxy-authenticate", "proxy-authorization", "range", "referer",
    "retry-after", "server", "te", "trailer", "transfer-encoding", "upgrade", "user-agent",
    "vary", "via", "warning", "www-authenticate", "method", "get", "status", "200 OK",
    "version", "HTTP/1.1", "url", "public", "set-cookie", "keep-alive", "origin"};
static const char dict_tail[] =
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505"
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request401 "
    "Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented503 "
    "Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 Mon, Tue, "
    "Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,"
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age="
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.";
#define DICT_LEN 1423

struct strm_spdy {
    z_stream inflate, deflate;
    bool inflate_ok, deflate_ok;
    struct ag_buf in;
    uint8_t dict[DICT_LEN];
    uint8_t block[STRM_SPDY_MAX_HEADER_BLOCK];     /* inflated header block */
    char names[STRM_SPDY_MAX_HEADER_BLOCK + 256];  /* NUL-terminated copies */
};

static void build_dict(uint8_t *d)
{
    size_t n = 0;

    for (size_t i = 0; i < AG_ARRAY_LEN(dict_words); i++) {
        size_t len = strlen(dict_words[i]);
        d[n++] = 0;
        d[n++] = 0;
        d[n++] = 0;
        d[n++] = (uint8_t)len;
        memcpy(d + n, dict_words[i], len);
        n += len;
    }
    memcpy(d + n, dict_tail, sizeof(dict_tail) - 1);
    ag_assert(n + sizeof(dict_tail) - 1 == DICT_LEN);
}

int strm_spdy_new(struct strm_spdy **out)
{
    struct strm_spdy *s = calloc(1, sizeof(*s));

    if (s == NULL)
        return -ENOMEM;
    build_dict(s->dict);
    ag_buf_init(&s->in);
    s->inflate_ok = inflateInit(&s->inflate) == Z_OK;
    s->deflate_ok = deflateInit(&s->deflate, Z_DEFAULT_COMPRESSION) == Z_OK &&
                    deflateSetDictionary(&s->deflate, s->dict, DICT_LEN) == Z_OK;
    if (!s->inflate_ok || !s->deflate_ok) {
        strm_spdy_free(s);
        return -ENOMEM;
    }
    *out = s;
    return 0;
}

void strm_spdy_free(struct strm_spdy *s)
{
    if (s == NULL)
        return;
    if (s->inflate_ok)
        inflateEnd(&s->inflate);
    if (s->deflate_ok)
        deflateEnd(&s->deflate);
    ag_buf_fini(&s->in);
    free(s);
}

static uint32_t be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

/* Inflates one header block into s->block; returns its length or -errno. */
static int inflate_block(struct strm_spdy *s, const uint8_t *data, size_t len)
{
    z_stream *z = &s->inflate;

    z->next_in = (Bytef *)data;
    z->avail_in = (uInt)len;
    z->next_out = s->block;
    z->avail_out = sizeof(s->block);
    while (z->avail_in > 0) {
        int rc = inflate(z, Z_SYNC_FLUSH);
        if (rc == Z_NEED_DICT) {
            if (inflateSetDictionary(z, s->dict, DICT_LEN) != Z_OK)
                return -EPROTO;
            continue;
        }
        if (rc == Z_BUF_ERROR && z->avail_out == 0)
            return -E2BIG;
        if (rc != Z_OK)
            return -EPROTO;
        if (z->avail_out == 0 && z->avail_in > 0)
            return -E2BIG;
    }
    return (int)(sizeof(s->block) - z->avail_out);
}

/* Splits an inflated block into NUL-terminated, lower-cased headers. */
static int parse_block(struct strm_spdy *s, size_t len, struct strm_spdy_frame *f)
{
    const uint8_t *p = s->block, *end = s->block + len;
    size_t o = 0;

    if (len < 4)
        return -EPROTO;
    uint32_t count = be32(p);
    p += 4;
    if (count > STRM_SPDY_MAX_HEADERS)
        return -E2BIG;
    for (uint32_t i = 0; i < count; i++) {
        const char *kv[2];
        for (int k = 0; k < 2; k++) {
            if (end - p < 4)
                return -EPROTO;
            uint32_t n = be32(p);
            p += 4;
            if (n > (size_t)(end - p) || o + n + 1 > sizeof(s->names) || (k == 0 && n == 0))
                return -EPROTO;
            kv[k] = s->names + o;
            for (uint32_t j = 0; j < n; j++) {
                char c = (char)p[j];
                s->names[o++] = k == 0 ? (char)tolower((unsigned char)c) : c;
            }
            s->names[o++] = '\0';
            p += n;
        }
        f->headers[f->header_count].name = kv[0];
        f->headers[f->header_count].value = kv[1];
        f->header_count++;
    }
    return p == end ? 0 : -EPROTO;
}

static int header_frame(struct strm_spdy *s, struct strm_spdy_frame *f, const uint8_t *block,
                        size_t len)
{
    int n = inflate_block(s, block, len);

    return n < 0 ? n : parse_block(s, (size_t)n, f);
}

/* Parses one control frame's payload into f.  Returns 1 to deliver, 0 to
 * skip (unknown type), negative to fail the connection.  A bad header block
 * is fatal: it desynchronises the shared compression context. */
static int control_frame(struct strm_spdy *s, struct strm_spdy_frame *f, const uint8_t *p,
                         size_t len)
{
    switch (f->type) {
    case STRM_SPDY_SYN_STREAM:
        if (len < 10)
            return -EPROTO;
        f->stream_id = be32(p) & 0x7fffffff;
        f->associated = be32(p + 4) & 0x7fffffff;
        return header_frame(s, f, p + 10, len - 10) < 0 ? -EPROTO : 1;
    case STRM_SPDY_SYN_REPLY:
    case STRM_SPDY_HEADERS:
        if (len < 4)
            return -EPROTO;
        f->stream_id = be32(p) & 0x7fffffff;
        return header_frame(s, f, p + 4, len - 4) < 0 ? -EPROTO : 1;
    case STRM_SPDY_RST_STREAM:
    case STRM_SPDY_WINDOW_UPDATE:
        if (len != 8)
            return -EPROTO;
        f->stream_id = be32(p) & 0x7fffffff;
        f->value = be32(p + 4) & (f->type == STRM_SPDY_WINDOW_UPDATE ? 0x7fffffff : 0xffffffff);
        return 1;
    case STRM_SPDY_SETTINGS:
        if (len < 4 || (len - 4) / 8 < be32(p) || (len - 4) % 8 != 0)
            return -EPROTO;
        f->value = be32(p);
        return 1;
    case STRM_SPDY_PING:
        if (len != 4)
            return -EPROTO;
        f->value = be32(p);
        return 1;
    case STRM_SPDY_GOAWAY:
        if (len != 8)
            return -EPROTO;
        f->stream_id = be32(p) & 0x7fffffff;
        f->value = be32(p + 4);
        return 1;
    default:
        return 0;
    }
}

int strm_spdy_recv(struct strm_spdy *s, const uint8_t *data, size_t len, strm_spdy_frame_cb cb,
                   void *arg)
{
    int rc = ag_buf_append(&s->in, data, len);
    size_t off = 0;

    if (rc < 0)
        return rc;
    /* Bounded per call: a frame at most per 8 bytes of input. */
    while (rc >= 0 && s->in.len - off >= 8) {
        const uint8_t *h = s->in.data + off;
        uint32_t flen = (uint32_t)h[5] << 16 | (uint32_t)h[6] << 8 | h[7];
        struct strm_spdy_frame frame, *f = &frame;

        if (flen > STRM_SPDY_MAX_FRAME) {
            rc = -E2BIG;
            break;
        }
        if (s->in.len - off < 8 + (size_t)flen)
            break;
        memset(f, 0, sizeof(*f));
        f->flags = h[4];
        if (h[0] & 0x80) {
            uint16_t version = (uint16_t)((h[0] & 0x7f) << 8 | h[1]);
            f->type = (enum strm_spdy_type)((uint16_t)h[2] << 8 | h[3]);
            rc = version != 3 ? -EPROTO : control_frame(s, f, h + 8, flen);
        } else {
            f->type = STRM_SPDY_DATA;
            f->stream_id = be32(h) & 0x7fffffff;
            f->data = h + 8;
            f->data_len = flen;
            rc = 1;
        }
        if (rc > 0)
            rc = cb(arg, f);
        off += 8 + (size_t)flen;
    }
    ag_buf_consume(&s->in, off);
    if (s->in.len > 8 + (size_t)STRM_SPDY_MAX_FRAME)
        return -E2BIG;
    return rc < 0 ? rc : 0;
}

/* ---- encoding ------------------------------------------------------------------- */

static int frame_header(struct ag_buf *out, bool control, uint32_t type_or_id, uint8_t flags,
                        size_t len)
{
    uint8_t h[8];

    if (len > 0xffffff)
        return -E2BIG;
    if (control) {
        h[0] = 0x80;
        h[1] = 3;
        h[2] = (uint8_t)(type_or_id >> 8);
        h[3] = (uint8_t)type_or_id;
    } else {
        put32(h, type_or_id & 0x7fffffff);
    }
    h[4] = flags;
    h[5] = (uint8_t)(len >> 16);
    h[6] = (uint8_t)(len >> 8);
    h[7] = (uint8_t)len;
    return ag_buf_append(out, h, 8);
}

static int append32(struct ag_buf *b, uint32_t v)
{
    uint8_t p[4];
    put32(p, v);
    return ag_buf_append(b, p, 4);
}

/* Appends a frame whose payload is `prefix` then a compressed header block. */
static int header_block_frame(struct strm_spdy *s, struct ag_buf *out, enum strm_spdy_type type,
                              const uint8_t *prefix, size_t prefix_len,
                              const struct strm_header *h, size_t n, uint8_t flags)
{
    struct ag_buf raw;
    size_t start = out->len;
    int rc;

    ag_buf_init(&raw);
    rc = append32(&raw, (uint32_t)n);
    for (size_t i = 0; rc == 0 && i < n; i++) {
        size_t nl = strlen(h[i].name), vl = strlen(h[i].value);
        rc = append32(&raw, (uint32_t)nl);
        if (rc == 0)
            rc = ag_buf_append(&raw, h[i].name, nl);
        if (rc == 0)
            rc = append32(&raw, (uint32_t)vl);
        if (rc == 0)
            rc = ag_buf_append(&raw, h[i].value, vl);
    }
    if (rc == 0)
        rc = frame_header(out, true, type, flags, 0);
    if (rc == 0)
        rc = ag_buf_append(out, prefix, prefix_len);
    /* deflateBound is an upper bound for one flush of this input. */
    if (rc == 0)
        rc = ag_buf_reserve(out, deflateBound(&s->deflate, raw.len) + 16);
    if (rc == 0) {
        z_stream *z = &s->deflate;
        z->next_in = raw.data;
        z->avail_in = (uInt)raw.len;
        z->next_out = out->data + out->len;
        z->avail_out = (uInt)(out->cap - out->len);
        if (deflate(z, Z_SYNC_FLUSH) != Z_OK || z->avail_in != 0)
            rc = -EIO;
        else
            out->len = out->cap - z->avail_out;
    }
    if (rc == 0) {
        size_t len = out->len - start - 8;
        uint8_t *p = out->data + start;
        p[5] = (uint8_t)(len >> 16);
        p[6] = (uint8_t)(len >> 8);
        p[7] = (uint8_t)len;
    } else {
        out->len = start;
    }
    ag_buf_fini(&raw);
    return rc;
}

int strm_spdy_syn_stream(struct strm_spdy *s, struct ag_buf *out, uint32_t id,
                         const struct strm_header *h, size_t n, uint8_t flags)
{
    uint8_t prefix[10] = {0};

    put32(prefix, id & 0x7fffffff);
    return header_block_frame(s, out, STRM_SPDY_SYN_STREAM, prefix, sizeof(prefix), h, n, flags);
}

int strm_spdy_syn_reply(struct strm_spdy *s, struct ag_buf *out, uint32_t id,
                        const struct strm_header *h, size_t n, uint8_t flags)
{
    uint8_t prefix[4];

    put32(prefix, id & 0x7fffffff);
    return header_block_frame(s, out, STRM_SPDY_SYN_REPLY, prefix, sizeof(prefix), h, n, flags);
}

int strm_spdy_data(struct ag_buf *out, uint32_t id, const void *data, size_t len, uint8_t flags)
{
    int rc = frame_header(out, false, id, flags, len);

    return rc < 0 ? rc : ag_buf_append(out, data, len);
}

static int fixed_frame(struct ag_buf *out, enum strm_spdy_type type, const uint32_t *v, size_t n)
{
    int rc = frame_header(out, true, type, 0, n * 4);

    for (size_t i = 0; rc == 0 && i < n; i++)
        rc = append32(out, v[i]);
    return rc;
}

int strm_spdy_rst_stream(struct ag_buf *out, uint32_t id, uint32_t status)
{
    uint32_t v[2] = {id & 0x7fffffff, status};
    return fixed_frame(out, STRM_SPDY_RST_STREAM, v, 2);
}

int strm_spdy_ping(struct ag_buf *out, uint32_t ping_id)
{
    return fixed_frame(out, STRM_SPDY_PING, &ping_id, 1);
}

int strm_spdy_goaway(struct ag_buf *out, uint32_t last_id, uint32_t status)
{
    uint32_t v[2] = {last_id & 0x7fffffff, status};
    return fixed_frame(out, STRM_SPDY_GOAWAY, v, 2);
}
