/* Unit tests of agent/image/img_http.c: the HTTP/1.1 response parser
 * (table-driven, each case also fed split at every byte and one byte at a
 * time), WWW-Authenticate challenges and URL parsing. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "image/img_net.h"

struct result {
    int rc; /* 0, or the first negative return */
    int heads;
    int dones;
    int status;
    bool keep_alive;
    char body[256];
    size_t body_len;
};

/* Feeds in as pieces split at `split` (0 = one piece), or byte by byte. */
static void run(const char *in, size_t len, bool no_body, bool eof, size_t split, bool bytewise,
                struct result *res)
{
    struct img_http_resp *r = malloc(sizeof(*r));
    size_t off = 0;

    memset(res, 0, sizeof(*res));
    img_http_resp_init(r, no_body);
    while (off < len || (off == len && res->dones == 0 && res->rc == 0)) {
        size_t n = bytewise ? 1 : (split && off < split ? split - off : len - off);
        if (off + n > len)
            n = len - off;
        const uint8_t *p = (const uint8_t *)in + off;
        size_t rest = n;
        bool progressed = false;
        for (int guard = 0; guard < 10000; guard++) {
            size_t used;
            const uint8_t *body;
            size_t blen;
            int rc = img_http_resp_parse(r, p, rest, &used, &body, &blen);
            if (rc < 0) {
                res->rc = rc;
                goto out;
            }
            p += used;
            rest -= used;
            if (rc == IMG_HTTP_EV_NONE)
                break;
            progressed = true;
            if (rc == IMG_HTTP_EV_HEAD) {
                res->heads++;
                res->status = r->status;
                res->keep_alive = r->keep_alive;
            } else if (rc == IMG_HTTP_EV_BODY) {
                assert_true(res->body_len + blen < sizeof(res->body));
                memcpy(res->body + res->body_len, body, blen);
                res->body_len += blen;
            } else {
                res->dones++;
                goto out;
            }
        }
        off += n;
        if (n == 0 && !progressed)
            break;
    }
    if (eof && res->dones == 0) {
        int rc = img_http_resp_eof(r);
        if (rc < 0)
            res->rc = rc;
        else
            res->dones++;
    }
out:
    free(r);
}

struct http_case {
    const char *name;
    const char *in;
    bool no_body;
    bool eof;
    int rc;
    int status;
    const char *body;
    bool keep_alive;
};

static const struct http_case cases[] = {
    {"content-length", "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", false, false, 0, 200,
     "hello", true},
    {"chunked ext trailers",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1;q=\"a b\"\r\nhello\r\n"
     "6 \r\n world\r\n0\r\nX-Trailer: a\r\nY: b\r\n\r\n",
     false, false, 0, 200, "hello world", true},
    {"chunked upper hex",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\nA\r\n0123456789\r\n0\r\n\r\n",
     false, false, 0, 200, "0123456789", true},
    {"bare LF", "HTTP/1.1 200 OK\nContent-Length: 2\n\nhi", false, false, 0, 200, "hi", true},
    {"100 continue",
     "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 404 Not Found\r\nContent-Length: 1\r\n\r\nx", false,
     false, 0, 404, "x", true},
    {"204", "HTTP/1.1 204 No Content\r\n\r\n", false, false, 0, 204, "", true},
    {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n", true, false, 0, 200, "", true},
    {"close delimited", "HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nabc", false, true, 0, 200,
     "abc", false},
    {"http/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 1\r\n\r\nz", false, false, 0, 200, "z", false},
    {"empty reason", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", false, false, 0, 200, "", true},
    {"same content-length twice",
     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\ncontent-length: 1\r\n\r\nq", false, false, 0, 200,
     "q", true},
    {"bad chunk size", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", false, false,
     -EPROTO, 0, NULL, false},
    {"chunk size overflow",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFF\r\n", false, false,
     -EOVERFLOW, 0, NULL, false},
    {"chunk size junk", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5 x\r\nhello\r\n",
     false, false, -EPROTO, 0, NULL, false},
    {"missing chunk CRLF", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n",
     false, false, -EPROTO, 0, NULL, false},
    {"conflicting content-length",
     "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", false, false, -EPROTO, 0,
     NULL, false},
    {"bad content-length", "HTTP/1.1 200 OK\r\nContent-Length: 1x\r\n\r\n", false, false, -EPROTO,
     0, NULL, false},
    {"huge content-length", "HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n",
     false, false, -EOVERFLOW, 0, NULL, false},
    {"obs-fold", "HTTP/1.1 200 OK\r\nX: a\r\n b\r\n\r\n", false, false, -EPROTO, 0, NULL, false},
    {"space before colon", "HTTP/1.1 200 OK\r\nX : a\r\n\r\n", false, false, -EPROTO, 0, NULL,
     false},
    {"http/2 status", "HTTP/2 200\r\n\r\n", false, false, -EPROTO, 0, NULL, false},
    {"short status", "HTTP/1.1 20\r\n\r\n", false, false, -EPROTO, 0, NULL, false},
    {"101", "HTTP/1.1 101 Switching\r\n\r\n", false, false, -EPROTO, 0, NULL, false},
    {"truncated body", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", false, true, -EPIPE, 200,
     "abc", true},
    {"truncated head", "HTTP/1.1 200 OK\r\nContent-", false, true, -EPIPE, 0, "", false},
    {"trailer without colon",
     "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nbad\r\n\r\n", false, false, -EPROTO,
     200, "", true},
};

static void check_case(const struct http_case *c, const struct result *res)
{
    if (res->rc != c->rc)
        fail_msg("%s: rc %d, want %d", c->name, res->rc, c->rc);
    if (c->rc != 0) {
        assert_int_equal(res->dones, 0);
        return;
    }
    if (res->heads != 1 || res->dones != 1)
        fail_msg("%s: heads %d dones %d", c->name, res->heads, res->dones);
    assert_int_equal(res->status, c->status);
    assert_int_equal(res->keep_alive, c->keep_alive);
    assert_int_equal(res->body_len, strlen(c->body));
    assert_memory_equal(res->body, c->body, res->body_len);
}

static void test_table(void **state)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(cases); i++) {
        const struct http_case *c = &cases[i];
        size_t len = strlen(c->in);
        struct result res;

        run(c->in, len, c->no_body, c->eof, 0, false, &res);
        check_case(c, &res);
        run(c->in, len, c->no_body, c->eof, 0, true, &res);
        check_case(c, &res);
        for (size_t split = 1; split < len; split++) {
            run(c->in, len, c->no_body, c->eof, split, false, &res);
            check_case(c, &res);
        }
    }
}

static void test_headers_lookup(void **state)
{
    static const char in[] = "HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"a\"\r\n"
                             "Docker-Content-Digest:   sha256:abc  \r\n"
                             "www-authenticate: Bearer realm=\"b\"\r\nContent-Length: 0\r\n\r\n";
    struct img_http_resp *r = malloc(sizeof(*r));
    size_t used, blen, idx = 0;
    const uint8_t *body;

    img_http_resp_init(r, false);
    assert_int_equal(
        img_http_resp_parse(r, (const uint8_t *)in, sizeof(in) - 1, &used, &body, &blen),
        IMG_HTTP_EV_HEAD);
    assert_int_equal(used, sizeof(in) - 1);
    assert_string_equal(img_http_resp_header(r, "docker-content-digest"), "sha256:abc");
    assert_string_equal(img_http_resp_header_next(r, "WWW-Authenticate", &idx),
                        "Basic realm=\"a\"");
    assert_string_equal(img_http_resp_header_next(r, "WWW-Authenticate", &idx),
                        "Bearer realm=\"b\"");
    assert_null(img_http_resp_header_next(r, "WWW-Authenticate", &idx));
    assert_null(img_http_resp_header(r, "x-missing"));
    assert_int_equal(img_http_resp_parse(r, NULL, 0, &used, &body, &blen), IMG_HTTP_EV_DONE);
    free(r);
}

static void test_limits(void **state)
{
    struct result res;
    size_t big = IMG_HTTP_HEAD_MAX + 100;
    char *in = malloc(big + 64);

    /* One header line longer than the whole head buffer. */
    int n = sprintf(in, "HTTP/1.1 200 OK\r\nX: ");
    memset(in + n, 'a', big);
    strcpy(in + n + big, "\r\n\r\n");
    run(in, strlen(in), false, false, 0, false, &res);
    assert_int_equal(res.rc, -EMSGSIZE);

    /* Too many headers. */
    n = sprintf(in, "HTTP/1.1 200 OK\r\n");
    for (int i = 0; i < IMG_HTTP_HEADERS_MAX + 1; i++)
        n += sprintf(in + n, "H%d: v\r\n", i);
    n += sprintf(in + n, "\r\n");
    run(in, (size_t)n, false, false, 0, false, &res);
    assert_int_equal(res.rc, -EMSGSIZE);

    /* A chunk-size line with endless extensions. */
    n = sprintf(in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;");
    memset(in + n, 'e', IMG_HTTP_LINE_MAX + 10);
    strcpy(in + n + IMG_HTTP_LINE_MAX + 10, "\r\n");
    run(in, strlen(in), false, false, 0, false, &res);
    assert_int_equal(res.rc, -EMSGSIZE);

    /* Trailers beyond their total bound. */
    n = sprintf(in, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n");
    while ((size_t)n < big)
        n += sprintf(in + n, "T: %0100d\r\n", 1);
    n += sprintf(in + n, "\r\n");
    run(in, (size_t)n, false, false, 0, false, &res);
    assert_int_equal(res.rc, -EMSGSIZE);
    free(in);
}

static void test_bytes_after_done(void **state)
{
    static const char in[] = "HTTP/1.1 200 OK\r\nContent-Length: 1\r\n\r\nxEXTRA";
    struct img_http_resp *r = malloc(sizeof(*r));
    size_t used, blen, total = 0;
    const uint8_t *body;
    int rc;

    img_http_resp_init(r, false);
    do {
        rc = img_http_resp_parse(r, (const uint8_t *)in + total, sizeof(in) - 1 - total, &used,
                                 &body, &blen);
        total += used;
    } while (rc != IMG_HTTP_EV_DONE && rc > 0);
    assert_int_equal(rc, IMG_HTTP_EV_DONE);
    assert_int_equal(sizeof(in) - 1 - total, 5); /* "EXTRA" is left for the caller */
    free(r);
}

/* ---- WWW-Authenticate ---------------------------------------------------- */

static void test_auth_bearer(void **state)
{
    struct img_auth_challenge c[4];

    assert_int_equal(img_http_auth_parse("Bearer realm=\"https://auth.docker.io/token\","
                                         "service=\"registry.docker.io\","
                                         "scope=\"repository:library/busybox:pull\"",
                                         c, 4),
                     1);
    assert_int_equal(c[0].scheme, IMG_AUTH_BEARER);
    assert_string_equal(c[0].realm, "https://auth.docker.io/token");
    assert_string_equal(c[0].service, "registry.docker.io");
    assert_string_equal(c[0].scope, "repository:library/busybox:pull");

    assert_int_equal(img_http_auth_parse("bearer realm=\"r\", scope=\"repository:a/b:pull,push\" ,"
                                         "error=\"insufficient_scope\"",
                                         c, 4),
                     1);
    assert_string_equal(c[0].scope, "repository:a/b:pull,push");
    assert_string_equal(c[0].service, "");

    assert_int_equal(img_http_auth_parse("Bearer realm=tok,service=svc", c, 4), 1);
    assert_string_equal(c[0].realm, "tok");
    assert_string_equal(c[0].service, "svc");

    assert_int_equal(img_http_auth_parse("Bearer realm=\"a\\\"b\\\\c\"", c, 4), 1);
    assert_string_equal(c[0].realm, "a\"b\\c");
}

static void test_auth_multi(void **state)
{
    struct img_auth_challenge c[4];

    assert_int_equal(img_http_auth_parse("Basic realm=\"Registry Realm\", Bearer realm=\"y\","
                                         "service=\"s\"",
                                         c, 4),
                     2);
    assert_int_equal(c[0].scheme, IMG_AUTH_BASIC);
    assert_string_equal(c[0].realm, "Registry Realm");
    assert_int_equal(c[1].scheme, IMG_AUTH_BEARER);
    assert_string_equal(c[1].realm, "y");
    assert_string_equal(c[1].service, "s");

    assert_int_equal(img_http_auth_parse("Negotiate abc/+==, Bearer realm=\"z\"", c, 4), 2);
    assert_int_equal(c[0].scheme, IMG_AUTH_OTHER);
    assert_string_equal(c[1].realm, "z");

    /* More challenges than room: counted, not stored. */
    assert_int_equal(img_http_auth_parse("Basic, Basic, Bearer realm=\"q\"", c, 1), 3);
    assert_int_equal(img_http_auth_parse("", c, 4), 0);
}

static void test_auth_bad(void **state)
{
    struct img_auth_challenge c[2];
    char longv[2000];

    assert_int_equal(img_http_auth_parse("Bearer realm=\"unterminated", c, 2), -EPROTO);
    assert_int_equal(img_http_auth_parse("Bearer realm=\"x\" junk", c, 2), -EPROTO);
    assert_int_equal(img_http_auth_parse("\"quoted\"", c, 2), -EPROTO);
    snprintf(longv, sizeof(longv), "Bearer realm=\"%01500d\"", 7);
    assert_int_equal(img_http_auth_parse(longv, c, 2), -EMSGSIZE);
}

/* ---- URLs ------------------------------------------------------------------ */

static void test_url(void **state)
{
    struct img_url u, v;
    char hp[300];

    assert_int_equal(img_url_parse("https://reg.example:5000/v2/x?y=1", NULL, &u), 0);
    assert_true(u.tls);
    assert_int_equal(u.port, 5000);
    assert_string_equal(u.host, "reg.example");
    assert_string_equal(u.path, "/v2/x?y=1");
    img_url_hostport(&u, hp, sizeof(hp));
    assert_string_equal(hp, "reg.example:5000");

    assert_int_equal(img_url_parse("http://[::1]/", NULL, &u), 0);
    assert_false(u.tls);
    assert_int_equal(u.port, 80);
    assert_string_equal(u.host, "::1");
    img_url_hostport(&u, hp, sizeof(hp));
    assert_string_equal(hp, "[::1]");

    assert_int_equal(img_url_parse("https://auth.io?x=1", NULL, &u), 0);
    assert_string_equal(u.path, "/?x=1");
    assert_int_equal(img_url_parse("/blobs/abc", &u, &v), 0);
    assert_string_equal(v.host, "auth.io");
    assert_string_equal(v.path, "/blobs/abc");

    assert_int_equal(img_url_parse("ftp://x/", NULL, &u), -EINVAL);
    assert_int_equal(img_url_parse("https://x:99999/", NULL, &u), -EINVAL);
    assert_int_equal(img_url_parse("https://user@x/", NULL, &u), -EINVAL);
    assert_int_equal(img_url_parse("https:///p", NULL, &u), -EINVAL);
    assert_int_equal(img_url_parse("https://x/a b", NULL, &u), -EINVAL);

    char esc[64];
    assert_int_equal(img_url_escape("repository:a/b:pull,push", esc, sizeof(esc)), 0);
    assert_string_equal(esc, "repository%3Aa%2Fb%3Apull%2Cpush");
    assert_int_equal(img_url_escape("abcdef", esc, 4), -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_table),       cmocka_unit_test(test_headers_lookup),
        cmocka_unit_test(test_limits),      cmocka_unit_test(test_bytes_after_done),
        cmocka_unit_test(test_auth_bearer), cmocka_unit_test(test_auth_multi),
        cmocka_unit_test(test_auth_bad),    cmocka_unit_test(test_url),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
