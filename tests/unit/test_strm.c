/* Unit tests for the streaming codecs: HTTP/1.1 request heads, SPDY/3.1
 * frames and header compression, WebSocket frames, one-time tokens. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "stream/strm.h"

/* ---- HTTP ---------------------------------------------------------------------- */
static const char upgrade_req[] = "POST /exec/abc HTTP/1.1\r\nHost: 127.0.0.1:1234\r\n"
                                  "Connection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
                                  "X-Stream-Protocol-Version: v4.channel.k8s.io\r\n"
                                  "X-Stream-Protocol-Version: v3.channel.k8s.io\r\n\r\nSPDYBYTES";

static void test_http_split_everywhere(void **state)
{
    size_t total = strlen(upgrade_req), head = total - strlen("SPDYBYTES");

    for (size_t cut = 0; cut <= total; cut++) {
        struct strm_http_req *req = calloc(1, sizeof(*req));
        int a = strm_http_req_parse(req, (const uint8_t *)upgrade_req, cut);
        int b = a == 0 ? strm_http_req_parse(req, (const uint8_t *)upgrade_req + cut,
                                              total - cut)
                       : 0;
        /* Consumed bytes end exactly at the head. */
        assert_int_equal((size_t)(a > 0 ? a : (int)cut + b), head);
        assert_string_equal(req->method, "POST");
        assert_string_equal(req->target, "/exec/abc");
        assert_string_equal(strm_http_header(req, "UPGRADE"), "SPDY/3.1");
        assert_string_equal(strm_http_header(req, "x-stream-protocol-version"),
                            "v4.channel.k8s.io");
        assert_true(strm_http_header_has(req, "connection", "upgrade"));
        assert_false(strm_http_header_has(req, "connection", "close"));
        free(req);
    }
}

static void test_http_bad(void **state)
{
    static const char *const bad[] = {
        "GET\r\n\r\n", "GET / HTTP/2.0\r\n\r\n", "GET / HTTP/1.1\r\nNoColon\r\n\r\n",
        "GET / HTTP/1.1\r\n folded: x\r\n\r\n", "\r\n\r\n", "GET / HTTP/1.1\r\nA: b\x01\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct strm_http_req *req = calloc(1, sizeof(*req));
        assert_int_equal(strm_http_req_parse(req, (const uint8_t *)bad[i], strlen(bad[i])),
                         -EBADMSG);
        free(req);
    }
    struct strm_http_req *req = calloc(1, sizeof(*req));
    char big[STRM_HTTP_MAX_HEAD + 10];
    memset(big, 'a', sizeof(big));
    assert_int_equal(strm_http_req_parse(req, (const uint8_t *)big, sizeof(big)), -E2BIG);
    free(req);
}

/* ---- SPDY ------------------------------------------------------------------------- */
struct seen {
    int frames;
    struct strm_spdy_frame last;
    char names[8][32], values[8][64];
    char data[64];
};

static int on_frame(void *arg, const struct strm_spdy_frame *f)
{
    struct seen *s = arg;
    s->frames++;
    s->last = *f;
    for (size_t i = 0; i < f->header_count && i < 8; i++) {
        snprintf(s->names[i], sizeof(s->names[i]), "%s", f->headers[i].name);
        snprintf(s->values[i], sizeof(s->values[i]), "%s", f->headers[i].value);
    }
    if (f->type == STRM_SPDY_DATA)
        snprintf(s->data, sizeof(s->data), "%.*s", (int)f->data_len, f->data);
    return 0;
}

static void test_spdy_roundtrip(void **state)
{
    struct strm_spdy *client, *server;
    struct ag_buf out;
    struct strm_header h[] = {{"streamType", "error"}, {"port", "8080"}};
    struct seen seen = {0};

    assert_int_equal(strm_spdy_new(&client), 0);
    assert_int_equal(strm_spdy_new(&server), 0);
    ag_buf_init(&out);
    assert_int_equal(strm_spdy_syn_stream(client, &out, 1, h, 2, 0), 0);
    /* zlib header (2 bytes) then the dictionary id: adler32 of the SPDY/3
     * dictionary, proving it is byte-exact. */
    const uint8_t *z = out.data + 8 + 10;
    assert_true(z[1] & 0x20); /* FDICT */
    assert_int_equal((uint32_t)z[2] << 24 | (uint32_t)z[3] << 16 | (uint32_t)z[4] << 8 | z[5],
                     0xe3c6a7c2u);
    assert_int_equal(strm_spdy_syn_stream(client, &out, 3, h, 1, STRM_SPDY_FLAG_FIN), 0);
    assert_int_equal(strm_spdy_data(&out, 1, "hello", 5, STRM_SPDY_FLAG_FIN), 0);
    assert_int_equal(strm_spdy_ping(&out, 7), 0);
    assert_int_equal(strm_spdy_rst_stream(&out, 3, 5), 0);
    assert_int_equal(strm_spdy_goaway(&out, 3, 0), 0);
    /* Fed one byte at a time. */
    for (size_t i = 0; i < out.len; i++)
        assert_int_equal(strm_spdy_recv(server, out.data + i, 1, on_frame, &seen), 0);
    assert_int_equal(seen.frames, 6);
    assert_int_equal(seen.last.type, STRM_SPDY_GOAWAY);
    assert_string_equal(seen.data, "hello");
    /* Names arrive lower-cased; the second SYN used the shared context. */
    out.len = 0;
    seen.frames = 0;
    assert_int_equal(strm_spdy_syn_reply(server, &out, 1, h, 2, 0), 0);
    assert_int_equal(strm_spdy_recv(client, out.data, out.len, on_frame, &seen), 0);
    assert_int_equal(seen.last.type, STRM_SPDY_SYN_REPLY);
    assert_string_equal(seen.names[0], "streamtype");
    assert_string_equal(seen.values[1], "8080");
    ag_buf_fini(&out);
    strm_spdy_free(client);
    strm_spdy_free(server);
}

static void test_spdy_bad(void **state)
{
    struct strm_spdy *s;
    struct seen seen = {0};
    /* Version 2 control frame; unknown type 0x0f skipped; oversized frame. */
    const uint8_t v2[] = {0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1};
    const uint8_t unknown[] = {0x80, 3, 0, 0x0f, 0, 0, 0, 2, 1, 2};
    const uint8_t huge[] = {0, 0, 0, 1, 0, 0xff, 0xff, 0xff};
    const uint8_t garbage_block[] = {0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4};

    assert_int_equal(strm_spdy_new(&s), 0);
    assert_int_equal(strm_spdy_recv(s, v2, sizeof(v2), on_frame, &seen), -EPROTO);
    strm_spdy_free(s);
    assert_int_equal(strm_spdy_new(&s), 0);
    assert_int_equal(strm_spdy_recv(s, unknown, sizeof(unknown), on_frame, &seen), 0);
    assert_int_equal(seen.frames, 0);
    assert_int_equal(strm_spdy_recv(s, huge, sizeof(huge), on_frame, &seen), -E2BIG);
    strm_spdy_free(s);
    assert_int_equal(strm_spdy_new(&s), 0);
    assert_int_equal(strm_spdy_recv(s, garbage_block, sizeof(garbage_block), on_frame, &seen),
                     -EPROTO);
    strm_spdy_free(s);
}

/* ---- WebSocket --------------------------------------------------------------------- */
struct msgs {
    int count;
    enum strm_ws_opcode op[8];
    char text[8][64];
};

static int on_msg(void *arg, enum strm_ws_opcode op, const uint8_t *data, size_t len)
{
    struct msgs *m = arg;
    if (m->count < 8) {
        m->op[m->count] = op;
        snprintf(m->text[m->count], sizeof(m->text[0]), "%.*s", (int)len, data);
    }
    m->count++;
    return 0;
}

static void test_ws(void **state)
{
    char key[29];
    struct strm_ws ws;
    struct ag_buf out;
    struct msgs m = {0};

    assert_int_equal(strm_ws_accept_key("dGhlIHNhbXBsZSBub25jZQ==", key), 0);
    assert_string_equal(key, "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="); /* RFC 6455 §1.3 */
    assert_int_equal(strm_ws_accept_key("short", key), -EINVAL);

    strm_ws_init(&ws, true);
    ag_buf_init(&out);
    /* A fragmented text message with a ping in the middle, masked. */
    assert_int_equal(strm_ws_frame(&out, STRM_WS_TEXT, "hel", 3, true, 0x11223344), 0);
    out.data[0] &= 0x7f; /* clear FIN: first fragment */
    assert_int_equal(strm_ws_frame(&out, STRM_WS_PING, "p", 1, true, 0x55667788), 0);
    assert_int_equal(strm_ws_frame(&out, STRM_WS_CONT, "lo", 2, true, 0x99aabbcc), 0);
    char big[300];
    memset(big, 'x', sizeof(big));
    assert_int_equal(strm_ws_frame(&out, STRM_WS_BINARY, big, sizeof(big), true, 1), 0);
    for (size_t i = 0; i < out.len; i++)
        assert_int_equal(strm_ws_recv(&ws, out.data + i, 1, on_msg, &m), 0);
    assert_int_equal(m.count, 3);
    assert_int_equal(m.op[0], STRM_WS_PING);
    assert_string_equal(m.text[1], "hello");
    assert_int_equal(m.op[2], STRM_WS_BINARY);
    /* An unmasked client frame is a protocol error. */
    out.len = 0;
    assert_int_equal(strm_ws_frame(&out, STRM_WS_TEXT, "x", 1, false, 0), 0);
    assert_int_equal(strm_ws_recv(&ws, out.data, out.len, on_msg, &m), -EPROTO);
    strm_ws_fini(&ws);
    /* Too big. */
    strm_ws_init(&ws, true);
    const uint8_t huge[] = {0x82, 0xff, 0, 0, 0, 0, 0x10, 0, 0, 0};
    assert_int_equal(strm_ws_recv(&ws, huge, sizeof(huge), on_msg, &m), -E2BIG);
    strm_ws_fini(&ws);
    ag_buf_fini(&out);
}

/* ---- tokens ------------------------------------------------------------------------ */
static int freed;
static void free_req(void *p)
{
    freed++;
    free(p);
}

static void test_tokens(void **state)
{
    struct strm_tokens t;
    struct strm_ticket k;
    char tok[STRM_TOKEN_LEN + 1], tok2[STRM_TOKEN_LEN + 1];

    strm_tokens_init(&t);
    freed = 0;
    assert_int_equal(strm_tokens_issue(&t, STRM_EXEC, malloc(4), free_req, 1000, tok), 0);
    assert_int_equal(strlen(tok), STRM_TOKEN_LEN);
    assert_int_equal(strspn(tok, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     STRM_TOKEN_LEN);
    assert_int_equal(strm_tokens_issue(&t, STRM_ATTACH, malloc(4), free_req, 1000, tok2), 0);
    assert_string_not_equal(tok, tok2);
    /* Wrong kind keeps it; the right kind takes it once. */
    assert_int_equal(strm_tokens_take(&t, tok, STRM_ATTACH, 1001, &k), -EINVAL);
    assert_int_equal(strm_tokens_take(&t, tok, STRM_EXEC, 1001, &k), 0);
    k.free_request(k.request);
    assert_int_equal(strm_tokens_take(&t, tok, STRM_EXEC, 1002, &k), -ENOENT);
    /* Expiry frees the request. */
    assert_int_equal(strm_tokens_take(&t, tok2, STRM_ATTACH, 1000 + STRM_TOKEN_TTL_MS, &k),
                     -ENOENT);
    assert_int_equal(freed, 2);
    for (int i = 0; i < STRM_TOKEN_MAX; i++)
        assert_int_equal(strm_tokens_issue(&t, STRM_EXEC, malloc(1), free_req, 5000, tok), 0);
    assert_int_equal(strm_tokens_issue(&t, STRM_EXEC, malloc(1), free_req, 5000, tok), -EAGAIN);
    strm_tokens_fini(&t);
    assert_int_equal(freed, 2 + STRM_TOKEN_MAX + 1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_http_split_everywhere), cmocka_unit_test(test_http_bad),
        cmocka_unit_test(test_spdy_roundtrip),        cmocka_unit_test(test_spdy_bad),
        cmocka_unit_test(test_ws),                    cmocka_unit_test(test_tokens),
    };
    return cmocka_run_group_tests_name("strm", tests, NULL, NULL);
}
