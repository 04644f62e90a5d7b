/* agent/stream: WebSocket (RFC 6455) framing, sans-I/O: the opening
 * handshake's accept key, frame parsing with message reassembly, and frame
 * encoding.  Invariant: a message is delivered only whole and within
 * STRM_WS_MAX_MESSAGE; control frames are delivered as they come, even in
 * the middle of a fragmented message, as the RFC allows. */
#include "strm.h"

#include <mbedtls/base64.h>
#include <mbedtls/sha1.h>
#include <string.h>

#define WS_GUID "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

void strm_ws_init(struct strm_ws *ws, bool server)
{
    memset(ws, 0, sizeof(*ws));
    ag_buf_init(&ws->in);
    ag_buf_init(&ws->message);
    ws->require_mask = server;
}

void strm_ws_fini(struct strm_ws *ws)
{
    ag_buf_fini(&ws->in);
    ag_buf_fini(&ws->message);
}

int strm_ws_accept_key(const char *client_key, char out[29])
{
    unsigned char raw[32], digest[20], buf[128];
    size_t n = 0, klen = strlen(client_key);

    if (klen != 24 || mbedtls_base64_decode(raw, sizeof(raw), &n, (const unsigned char *)client_key,
                                            klen) != 0 ||
        n != 16)
        return -EINVAL;
    memcpy(buf, client_key, klen);
    memcpy(buf + klen, WS_GUID, sizeof(WS_GUID) - 1);
    if (mbedtls_sha1_ret(buf, klen + sizeof(WS_GUID) - 1, digest) != 0)
        return -EIO;
    if (mbedtls_base64_encode((unsigned char *)out, 29, &n, digest, sizeof(digest)) != 0 ||
        n != 28)
        return -EIO;
    out[28] = '\0';
    return 0;
}

/* Handles one parsed frame.  payload is unmasked in place. */
static int on_frame(struct strm_ws *ws, bool fin, enum strm_ws_opcode op, const uint8_t *payload,
                    size_t len, strm_ws_message_cb cb, void *arg)
{
    if (op >= 0x8) {
        /* Control frames: never fragmented, at most 125 bytes. */
        if (!fin || len > 125 || (op != STRM_WS_CLOSE && op != STRM_WS_PING && op != STRM_WS_PONG))
            return -EPROTO;
        return cb(arg, op, payload, len);
    }
    if (op == STRM_WS_CONT) {
        if (!ws->in_message)
            return -EPROTO;
    } else if (op == STRM_WS_TEXT || op == STRM_WS_BINARY) {
        if (ws->in_message)
            return -EPROTO;
        if (fin)
            return cb(arg, op, payload, len); /* the common case: no copy */
        ws->in_message = true;
        ws->message_op = op;
        ws->message.len = 0;
    } else {
        return -EPROTO;
    }
    if (ws->message.len + len > STRM_WS_MAX_MESSAGE)
        return -E2BIG;
    int rc = ag_buf_append(&ws->message, payload, len);
    if (rc < 0 || !fin)
        return rc;
    ws->in_message = false;
    rc = cb(arg, ws->message_op, ws->message.data, ws->message.len);
    ws->message.len = 0;
    return rc;
}

/* Parses one frame at p (avail bytes).  Returns the frame's size, 0 when
 * incomplete, or a negative errno. */
static long parse_one(struct strm_ws *ws, uint8_t *p, size_t avail, strm_ws_message_cb cb,
                      void *arg)
{
    if (avail < 2)
        return 0;
    bool fin = p[0] & 0x80, masked = p[1] & 0x80;
    enum strm_ws_opcode op = (enum strm_ws_opcode)(p[0] & 0x0f);
    uint64_t len = p[1] & 0x7f;
    size_t hdr = 2;

    if (p[0] & 0x70)
        return -EPROTO; /* no extension was negotiated */
    if (masked != ws->require_mask)
        return -EPROTO;
    if (len == 126) {
        if (avail < 4)
            return 0;
        len = (uint64_t)p[2] << 8 | p[3];
        hdr = 4;
    } else if (len == 127) {
        if (avail < 10)
            return 0;
        len = 0;
        for (int i = 0; i < 8; i++)
            len = len << 8 | p[2 + i];
        hdr = 10;
    }
    if (len > STRM_WS_MAX_MESSAGE)
        return -E2BIG;
    size_t mask_at = hdr;
    hdr += masked ? 4 : 0;
    if (avail < hdr + len)
        return 0;
    uint8_t *payload = p + hdr;
    if (masked)
        for (size_t i = 0; i < len; i++)
            payload[i] ^= p[mask_at + (i & 3)];
    int rc = on_frame(ws, fin, op, payload, (size_t)len, cb, arg);
    return rc < 0 ? rc : (long)(hdr + len);
}

int strm_ws_recv(struct strm_ws *ws, const uint8_t *data, size_t len, strm_ws_message_cb cb,
                 void *arg)
{
    int rc = ag_buf_append(&ws->in, data, len);
    size_t off = 0;

    if (rc < 0)
        return rc;
    for (;;) {
        long n = parse_one(ws, ws->in.data + off, ws->in.len - off, cb, arg);
        if (n < 0) {
            rc = (int)n;
            break;
        }
        if (n == 0)
            break;
        off += (size_t)n;
    }
    ag_buf_consume(&ws->in, off);
    if (rc == 0 && ws->in.len > STRM_WS_MAX_MESSAGE + 14)
        rc = -E2BIG;
    return rc;
}

int strm_ws_frame(struct ag_buf *out, enum strm_ws_opcode op, const void *data, size_t len,
                  bool mask, uint32_t mask_key)
{
    uint8_t h[14];
    size_t n = 0;
    int rc;

    h[n++] = (uint8_t)(0x80 | op);
    if (len < 126) {
        h[n++] = (uint8_t)((mask ? 0x80 : 0) | len);
    } else if (len <= 0xffff) {
        h[n++] = (uint8_t)((mask ? 0x80 : 0) | 126);
        h[n++] = (uint8_t)(len >> 8);
        h[n++] = (uint8_t)len;
    } else {
        h[n++] = (uint8_t)((mask ? 0x80 : 0) | 127);
        for (int i = 7; i >= 0; i--)
            h[n++] = (uint8_t)((uint64_t)len >> (8 * i));
    }
    uint8_t key[4] = {(uint8_t)(mask_key >> 24), (uint8_t)(mask_key >> 16),
                      (uint8_t)(mask_key >> 8), (uint8_t)mask_key};
    if (mask) {
        memcpy(h + n, key, 4);
        n += 4;
    }
    if ((rc = ag_buf_reserve(out, n + len)) < 0)
        return rc;
    memcpy(out->data + out->len, h, n);
    if (len > 0)
        memcpy(out->data + out->len + n, data, len);
    if (mask)
        for (size_t i = 0; i < len; i++)
            out->data[out->len + n + i] ^= key[i & 3];
    out->len += n + len;
    return 0;
}
