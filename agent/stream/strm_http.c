/* agent/stream: the HTTP/1.1 request-head parser for upgrade requests,
 * sans-I/O.  The head is copied into a fixed buffer and split in place;
 * the parser never allocates.  Invariant: after a successful parse, method,
 * target and every header name and value are NUL-terminated views into
 * req->buf; names are lower-cased. */
#include "strm.h"

#include <ctype.h>
#include <string.h>
#include <strings.h>

static bool token_char(char c)
{
    return c > 0x20 && c < 0x7f && strchr("()<>@,;:\\\"/[]?={}", c) == NULL;
}

/* Splits the request line "METHOD SP TARGET SP HTTP/1.x". */
static int parse_request_line(struct strm_http_req *req, char *line)
{
    char *sp1 = strchr(line, ' ');
    char *sp2 = sp1 ? strchr(sp1 + 1, ' ') : NULL;

    if (sp1 == NULL || sp2 == NULL || sp1 == line || sp2 == sp1 + 1)
        return -EBADMSG;
    *sp1 = *sp2 = '\0';
    for (char *p = line; *p; p++)
        if (!token_char(*p))
            return -EBADMSG;
    if (strcmp(sp2 + 1, "HTTP/1.1") != 0 && strcmp(sp2 + 1, "HTTP/1.0") != 0)
        return -EBADMSG;
    for (char *p = sp1 + 1; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p == 0x7f)
            return -EBADMSG;
    req->method = line;
    req->target = sp1 + 1;
    return 0;
}

static int parse_header_line(struct strm_http_req *req, char *line)
{
    char *colon = strchr(line, ':');

    if (colon == NULL || colon == line)
        return -EBADMSG;
    if (req->header_count == STRM_HTTP_MAX_HEADERS)
        return -E2BIG;
    *colon = '\0';
    for (char *p = line; *p; p++) {
        if (!token_char(*p))
            return -EBADMSG; /* also refuses obsolete line folding */
        *p = (char)tolower((unsigned char)*p);
    }
    char *v = colon + 1;
    while (*v == ' ' || *v == '\t')
        v++;
    char *end = v + strlen(v);
    while (end > v && (end[-1] == ' ' || end[-1] == '\t'))
        *--end = '\0';
    for (char *p = v; *p; p++)
        if (((unsigned char)*p < 0x20 && *p != '\t') || *p == 0x7f)
            return -EBADMSG;
    req->headers[req->header_count].name = line;
    req->headers[req->header_count].value = v;
    req->header_count++;
    return 0;
}

/* Splits the complete head buf[0..len) (ending with CRLF CRLF). */
static int split_head(struct strm_http_req *req, size_t len)
{
    char *p = req->buf, *end = req->buf + len;
    bool first = true;

    if (memchr(req->buf, '\0', len) != NULL)
        return -EBADMSG;
    while (p < end) {
        char *eol = strstr(p, "\r\n");
        if (eol == NULL)
            return -EBADMSG;
        *eol = '\0';
        if (eol == p)
            return first ? -EBADMSG : 0; /* the blank line ends the head */
        int rc = first ? parse_request_line(req, p) : parse_header_line(req, p);
        if (rc < 0)
            return rc;
        first = false;
        p = eol + 2;
    }
    return -EBADMSG;
}

int strm_http_req_parse(struct strm_http_req *req, const uint8_t *data, size_t len)
{
    size_t old = req->len;
    size_t take = len < STRM_HTTP_MAX_HEAD - old ? len : STRM_HTTP_MAX_HEAD - old;

    memcpy(req->buf + old, data, take);
    req->len += take;
    req->buf[req->len] = '\0';
    /* Search from a little before the new bytes: the terminator may straddle. */
    size_t from = old > 3 ? old - 3 : 0;
    for (size_t i = from; i + 4 <= req->len; i++) {
        if (memcmp(req->buf + i, "\r\n\r\n", 4) == 0) {
            size_t head = i + 4;
            req->len = head;
            req->header_count = 0;
            int rc = split_head(req, head);
            return rc < 0 ? rc : (int)(head - old);
        }
    }
    return req->len >= STRM_HTTP_MAX_HEAD ? -E2BIG : 0;
}

const char *strm_http_header(const struct strm_http_req *req, const char *name)
{
    for (size_t i = 0; i < req->header_count; i++)
        if (strcasecmp(req->headers[i].name, name) == 0)
            return req->headers[i].value;
    return NULL;
}

bool strm_http_header_has(const struct strm_http_req *req, const char *name, const char *token)
{
    size_t tl = strlen(token);

    for (size_t i = 0; i < req->header_count; i++) {
        if (strcasecmp(req->headers[i].name, name) != 0)
            continue;
        for (const char *p = req->headers[i].value; *p;) {
            while (*p == ' ' || *p == ',' || *p == '\t')
                p++;
            size_t n = strcspn(p, ", \t");
            if (n == tl && strncasecmp(p, token, tl) == 0)
                return true;
            p += n;
        }
    }
    return false;
}
