/* libFuzzer target: the registry client's HTTP/1.1 response parser
 * (status, headers, content-length, chunked with extensions and trailers,
 * close-delimited bodies), fed in pieces whose size the first input byte
 * picks, then WWW-Authenticate and Location parsing of what it produced.
 * Invariants: body bytes never exceed the input, the parser never reports
 * a second head, and every challenge string is NUL-terminated in bounds. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/img_net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_headers(const struct img_http_resp *r)
{
    struct img_auth_challenge c[4];
    struct img_url base, u;
    size_t idx = 0;
    const char *v;

    while ((v = img_http_resp_header_next(r, "www-authenticate", &idx)) != NULL) {
        int n = img_http_auth_parse(v, c, 4);
        for (int i = 0; i < n && i < 4; i++)
            if (strlen(c[i].realm) >= sizeof(c[i].realm) ||
                strlen(c[i].scope) >= sizeof(c[i].scope))
                abort();
    }
    v = img_http_resp_header(r, "location");
    if (v != NULL && img_url_parse("https://registry.example:5000/v2/", NULL, &base) == 0)
        (void)!img_url_parse(v, &base, &u);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static struct img_http_resp r;
    size_t piece, off = 1, body_total = 0;
    int heads = 0;

    if (size < 1)
        return 0;
    piece = (data[0] & 0x3f) + 1;
    img_http_resp_init(&r, (data[0] & 0x40) != 0);
    while (off <= size) {
        size_t n = size - off < piece ? size - off : piece;
        const uint8_t *p = data + off;
        size_t rest = n;
        for (int guard = 0; guard < 100000; guard++) {
            size_t used;
            const uint8_t *body;
            size_t blen;
            int rc = img_http_resp_parse(&r, p, rest, &used, &body, &blen);
            if (rc < 0 || used > rest)
                goto out;
            if (rc == IMG_HTTP_EV_BODY && (body < p || body + blen > p + rest))
                abort();
            p += used;
            rest -= used;
            if (rc == IMG_HTTP_EV_NONE)
                break;
            if (rc == IMG_HTTP_EV_HEAD) {
                if (++heads > 1)
                    abort();
                check_headers(&r);
            } else if (rc == IMG_HTTP_EV_BODY) {
                body_total += blen;
            } else {
                goto out;
            }
        }
        off += n;
        if (n == 0)
            break;
    }
    if (data[0] & 0x80)
        (void)!img_http_resp_eof(&r);
out:
    if (body_total > size)
        abort();
    /* The whole input as one header value, too. */
    char *s = malloc(size + 1);
    if (s != NULL) {
        struct img_auth_challenge c[2];
        memcpy(s, data, size);
        s[size] = '\0';
        (void)!img_http_auth_parse(s, c, 2);
        free(s);
    }
    return 0;
}
