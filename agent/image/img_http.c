/* agent/image: a sans-I/O HTTP/1.1 response parser for registry traffic,
 * the WWW-Authenticate challenge parser, and URL helpers.
 *
 * Bytes from the network go in, events come out (head, body slices, done);
 * no sockets, no allocation.  Every input is untrusted: the head is kept in
 * a fixed buffer (IMG_HTTP_HEAD_MAX) with at most IMG_HTTP_HEADERS_MAX
 * headers, chunk-size and trailer lines are bounded, and sizes are checked
 * for overflow before use.  Invariant: after any input the parser is either
 * in a valid state or has returned a negative errno, and it never reads
 * outside [in, in + len).
 */
#include "image/img_net.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#define SIZE_LIMIT (1ULL << 60)

void img_http_resp_init(struct img_http_resp *r, bool no_body)
{
    r->state = IMG_HTTP_S_HEAD;
    r->no_body = no_body;
    r->status = 0;
    r->minor = 1;
    r->keep_alive = false;
    r->chunked = false;
    r->content_length = -1;
    r->left = 0;
    r->head_len = 0;
    r->line_start = 0;
    r->hdr_count = 0;
    r->line_len = 0;
    r->trailer_total = 0;
}

static bool is_tchar(int c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           (c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL);
}

/* Copies input up to and including '\n' into buf.  Returns 1 when a line
 * is complete (its '\n' and an optional '\r' before it replaced by NUL and
 * *line_len excluding them), 0 when more input is needed, -EMSGSIZE. */
static int take_line(char *buf, size_t cap, size_t *blen, size_t line_start, const uint8_t *in,
                     size_t len, size_t *used, size_t *line_len)
{
    const uint8_t *nl = memchr(in, '\n', len);
    size_t n = nl != NULL ? (size_t)(nl - in) + 1 : len;

    if (*blen + n > cap)
        return -EMSGSIZE;
    memcpy(buf + *blen, in, n);
    *blen += n;
    *used = n;
    if (nl == NULL)
        return 0;
    buf[*blen - 1] = '\0';
    size_t l = *blen - 1;
    if (l > line_start && buf[l - 1] == '\r')
        buf[--l] = '\0';
    *line_len = l - line_start;
    return 1;
}

static int parse_status_line(struct img_http_resp *r, const char *s, size_t n)
{
    if (n < 12 || memcmp(s, "HTTP/1.", 7) != 0 || !isdigit((unsigned char)s[7]) || s[8] != ' ')
        return -EPROTO;
    for (int i = 9; i < 12; i++)
        if (!isdigit((unsigned char)s[i]))
            return -EPROTO;
    if (n > 12 && s[12] != ' ')
        return -EPROTO;
    for (size_t i = 12; i < n; i++)
        if ((unsigned char)s[i] < 0x20 && s[i] != '\t')
            return -EPROTO;
    r->minor = s[7] - '0';
    r->status = (s[9] - '0') * 100 + (s[10] - '0') * 10 + (s[11] - '0');
    return r->status < 100 ? -EPROTO : 0;
}

/* The line at head[start..start+n) is "name: value"; NUL-terminates both in
 * place and records their offsets. */
static int parse_header_line(struct img_http_resp *r, size_t start, size_t n)
{
    char *s = r->head + start;
    size_t i = 0;

    if (r->hdr_count >= IMG_HTTP_HEADERS_MAX)
        return -EMSGSIZE;
    if (n > 0 && (s[0] == ' ' || s[0] == '\t'))
        return -EPROTO; /* obsolete line folding */
    while (i < n && is_tchar((unsigned char)s[i]))
        i++;
    if (i == 0 || i >= n || s[i] != ':')
        return -EPROTO;
    s[i++] = '\0';
    while (i < n && (s[i] == ' ' || s[i] == '\t'))
        i++;
    size_t v = i, end = n;
    while (end > v && (s[end - 1] == ' ' || s[end - 1] == '\t'))
        end--;
    for (size_t k = v; k < end; k++)
        if (((unsigned char)s[k] < 0x20 && s[k] != '\t') || s[k] == 0x7f)
            return -EPROTO;
    s[end] = '\0';
    r->hdrs[r->hdr_count].name = (uint16_t)start;
    r->hdrs[r->hdr_count].value = (uint16_t)(start + v);
    r->hdr_count++;
    return 0;
}

static int parse_uint(const char *s, uint64_t *out)
{
    uint64_t v = 0;

    if (*s == '\0')
        return -EPROTO;
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s))
            return -EPROTO;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > SIZE_LIMIT)
            return -EOVERFLOW;
    }
    *out = v;
    return 0;
}

static bool has_token(const char *list, const char *tok)
{
    size_t tl = strlen(tok);

    for (const char *p = list; *p;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        const char *e = p;
        while (*e && *e != ',')
            e++;
        const char *t = e;
        while (t > p && (t[-1] == ' ' || t[-1] == '\t'))
            t--;
        if ((size_t)(t - p) == tl && strncasecmp(p, tok, tl) == 0)
            return true;
        p = e;
    }
    return false;
}

/* Decides how the body is delimited (RFC 9112 §6.3). */
static int finish_head(struct img_http_resp *r)
{
    const char *te = NULL, *conn = img_http_resp_header(r, "connection");
    size_t idx = 0;
    const char *v;

    while ((v = img_http_resp_header_next(r, "transfer-encoding", &idx)) != NULL)
        te = v;
    idx = 0;
    while ((v = img_http_resp_header_next(r, "content-length", &idx)) != NULL) {
        uint64_t n;
        int rc = parse_uint(v, &n);
        if (rc < 0)
            return rc;
        if (r->content_length >= 0 && (uint64_t)r->content_length != n)
            return -EPROTO;
        r->content_length = (int64_t)n;
    }
    r->keep_alive = r->minor >= 1 ? !(conn && has_token(conn, "close"))
                                  : (conn && has_token(conn, "keep-alive"));
    if (r->no_body || r->status == 204 || r->status == 304) {
        r->state = IMG_HTTP_S_NOBODY;
        return 0;
    }
    if (te != NULL) {
        const char *last = strrchr(te, ',');
        last = last ? last + 1 : te;
        while (*last == ' ' || *last == '\t')
            last++;
        r->chunked = strcasecmp(last, "chunked") == 0;
        r->content_length = -1;
        if (!r->chunked) {
            r->keep_alive = false;
            r->state = IMG_HTTP_S_BODY_CLOSE;
            return 0;
        }
        r->line_len = 0;
        r->state = IMG_HTTP_S_CHUNK_SIZE;
        return 0;
    }
    if (r->content_length >= 0) {
        r->left = (uint64_t)r->content_length;
        r->state = r->left ? IMG_HTTP_S_BODY_LEN : IMG_HTTP_S_NOBODY;
        return 0;
    }
    r->keep_alive = false;
    r->state = IMG_HTTP_S_BODY_CLOSE;
    return 0;
}

static int parse_head(struct img_http_resp *r, const uint8_t *in, size_t len, size_t *used)
{
    size_t start = r->line_start, n;
    int rc = take_line(r->head, sizeof(r->head) - 1, &r->head_len, start, in, len, used, &n);

    if (rc <= 0)
        return rc;
    r->line_start = r->head_len;
    if (start == 0) {
        rc = parse_status_line(r, r->head, n);
        if (rc < 0)
            return rc;
        if (r->status == 101)
            return -EPROTO; /* we never ask for an upgrade */
        return IMG_HTTP_EV_NONE;
    }
    if (n > 0) {
        rc = parse_header_line(r, start, n);
        return rc < 0 ? rc : IMG_HTTP_EV_NONE;
    }
    if (r->status < 200) {
        /* An interim response (100 Continue): the real one follows. */
        img_http_resp_init(r, r->no_body);
        return IMG_HTTP_EV_NONE;
    }
    rc = finish_head(r);
    return rc < 0 ? rc : IMG_HTTP_EV_HEAD;
}

static int parse_chunk_size(struct img_http_resp *r, const char *s)
{
    uint64_t v = 0;
    size_t digits = 0;

    for (; isxdigit((unsigned char)*s); s++, digits++) {
        if (digits >= 15)
            return -EOVERFLOW;
        int c = tolower((unsigned char)*s);
        v = v * 16 + (uint64_t)(c <= '9' ? c - '0' : c - 'a' + 10);
    }
    if (digits == 0)
        return -EPROTO;
    while (*s == ' ' || *s == '\t')
        s++;
    if (*s != '\0' && *s != ';')
        return -EPROTO;
    for (; *s; s++)
        if (((unsigned char)*s < 0x20 && *s != '\t') || *s == 0x7f)
            return -EPROTO;
    r->left = v;
    r->state = v ? IMG_HTTP_S_CHUNK_DATA : IMG_HTTP_S_TRAILER;
    return 0;
}

static int parse_chunk_line(struct img_http_resp *r, const uint8_t *in, size_t len, size_t *used)
{
    size_t n;
    int rc = take_line(r->line, sizeof(r->line), &r->line_len, 0, in, len, used, &n);

    if (rc <= 0)
        return rc;
    r->line_len = 0;
    switch (r->state) {
    case IMG_HTTP_S_CHUNK_SIZE:
        rc = parse_chunk_size(r, r->line);
        return rc < 0 ? rc : IMG_HTTP_EV_NONE;
    case IMG_HTTP_S_CHUNK_END:
        if (n != 0)
            return -EPROTO;
        r->state = IMG_HTTP_S_CHUNK_SIZE;
        return IMG_HTTP_EV_NONE;
    default: /* trailer */
        r->trailer_total += n + 2;
        if (r->trailer_total > IMG_HTTP_HEAD_MAX)
            return -EMSGSIZE;
        if (n == 0) {
            r->state = IMG_HTTP_S_DONE;
            return IMG_HTTP_EV_DONE;
        }
        if (strchr(r->line, ':') == NULL || r->line[0] == ':' || r->line[0] == ' ')
            return -EPROTO;
        return IMG_HTTP_EV_NONE;
    }
}

int img_http_resp_parse(struct img_http_resp *r, const uint8_t *in, size_t len, size_t *used,
                        const uint8_t **body, size_t *body_len)
{
    *used = 0;
    *body = NULL;
    *body_len = 0;
    for (;;) {
        size_t n = 0;
        int rc;

        switch (r->state) {
        case IMG_HTTP_S_NOBODY:
        case IMG_HTTP_S_DONE:
            r->state = IMG_HTTP_S_DONE;
            return IMG_HTTP_EV_DONE;
        case IMG_HTTP_S_BODY_LEN:
        case IMG_HTTP_S_CHUNK_DATA:
        case IMG_HTTP_S_BODY_CLOSE:
            if (len == 0)
                return IMG_HTTP_EV_NONE;
            n = len;
            if (r->state != IMG_HTTP_S_BODY_CLOSE && n > r->left)
                n = (size_t)r->left;
            *body = in;
            *body_len = n;
            *used += n;
            if (r->state != IMG_HTTP_S_BODY_CLOSE) {
                r->left -= n;
                if (r->left == 0)
                    r->state =
                        r->state == IMG_HTTP_S_BODY_LEN ? IMG_HTTP_S_DONE : IMG_HTTP_S_CHUNK_END;
            }
            return IMG_HTTP_EV_BODY;
        default:
            break;
        }
        if (len == 0)
            return IMG_HTTP_EV_NONE;
        rc = r->state == IMG_HTTP_S_HEAD ? parse_head(r, in, len, &n)
                                         : parse_chunk_line(r, in, len, &n);
        if (rc < 0)
            return rc;
        in += n;
        len -= n;
        *used += n;
        if (rc != IMG_HTTP_EV_NONE)
            return rc;
    }
}

int img_http_resp_eof(struct img_http_resp *r)
{
    if (r->state == IMG_HTTP_S_BODY_CLOSE || r->state == IMG_HTTP_S_DONE) {
        r->state = IMG_HTTP_S_DONE;
        return IMG_HTTP_EV_DONE;
    }
    return -EPIPE;
}

const char *img_http_resp_header_next(const struct img_http_resp *r, const char *name, size_t *idx)
{
    for (; *idx < r->hdr_count; (*idx)++) {
        const struct img_http_hdr *h = &r->hdrs[*idx];
        if (strcasecmp(r->head + h->name, name) == 0) {
            (*idx)++;
            return r->head + h->value;
        }
    }
    return NULL;
}

const char *img_http_resp_header(const struct img_http_resp *r, const char *name)
{
    size_t idx = 0;

    return img_http_resp_header_next(r, name, &idx);
}

/* ---- WWW-Authenticate ------------------------------------------------------ */

static const char *skip_ows(const char *p)
{
    while (*p == ' ' || *p == '\t')
        p++;
    return p;
}

static const char *skip_token(const char *p)
{
    while (is_tchar((unsigned char)*p))
        p++;
    return p;
}

/* A quoted-string at p (after the '"'): copies the unescaped value into
 * out (if not NULL); returns the position after the closing quote. */
static const char *take_quoted(const char *p, char *out, size_t cap, int *rc)
{
    size_t o = 0;

    for (;;) {
        char c = *p++;
        if (c == '\0') {
            *rc = -EPROTO;
            return NULL;
        }
        if (c == '"')
            break;
        if (c == '\\') {
            c = *p++;
            if (c == '\0') {
                *rc = -EPROTO;
                return NULL;
            }
        }
        if (out != NULL) {
            if (o + 1 >= cap) {
                *rc = -EMSGSIZE;
                return NULL;
            }
            out[o++] = c;
        }
    }
    if (out != NULL)
        out[o] = '\0';
    return p;
}

static char *param_field(struct img_auth_challenge *c, const char *name, size_t nlen, size_t *cap)
{
    if (c == NULL)
        return NULL;
#define FIELD(f)                                                                                   \
    if (nlen == sizeof(#f) - 1 && strncasecmp(name, #f, nlen) == 0) {                              \
        *cap = sizeof(c->f);                                                                       \
        return c->f;                                                                               \
    }
    FIELD(realm)
    FIELD(service)
    FIELD(scope)
#undef FIELD
    return NULL;
}

/* Is p at "token OWS = " followed by a value (an auth-param, not token68)? */
static bool at_param(const char *p)
{
    const char *e = skip_token(p);

    if (e == p)
        return false;
    e = skip_ows(e);
    if (*e != '=')
        return false;
    e = skip_ows(e + 1);
    return *e != '=' && *e != ',' && *e != '\0';
}

static const char *parse_param(const char *p, struct img_auth_challenge *c, int *rc)
{
    const char *name = p, *e = skip_token(p);
    size_t nlen = (size_t)(e - name), cap = 0;
    char *field = param_field(c, name, nlen, &cap);

    p = skip_ows(skip_ows(e) + 1);
    if (*p == '"')
        return take_quoted(p + 1, field, cap, rc);
    e = skip_token(p);
    if (e == p) {
        *rc = -EPROTO;
        return NULL;
    }
    if (field != NULL) {
        if ((size_t)(e - p) >= cap) {
            *rc = -EMSGSIZE;
            return NULL;
        }
        memcpy(field, p, (size_t)(e - p));
        field[e - p] = '\0';
    }
    return e;
}

int img_http_auth_parse(const char *value, struct img_auth_challenge *out, size_t max)
{
    const char *p = value;
    int count = 0, rc = -EPROTO;

    for (;;) {
        while (*p == ' ' || *p == '\t' || *p == ',')
            p++;
        if (*p == '\0')
            return count;
        const char *e = skip_token(p);
        if (e == p || (*e != '\0' && *e != ' ' && *e != '\t' && *e != ','))
            return -EPROTO;
        struct img_auth_challenge *c = (size_t)count < max ? &out[count] : NULL;
        if (count == 1000)
            return -EMSGSIZE;
        count++;
        if (c != NULL) {
            memset(c, 0, sizeof(*c));
            c->scheme = (e - p == 6 && strncasecmp(p, "bearer", 6) == 0)  ? IMG_AUTH_BEARER
                        : (e - p == 5 && strncasecmp(p, "basic", 5) == 0) ? IMG_AUTH_BASIC
                                                                          : IMG_AUTH_OTHER;
        }
        p = skip_ows(e);
        if (*p != ',' && *p != '\0' && !at_param(p)) {
            /* token68: the challenge's only argument. */
            while (*p && *p != ',' && *p != ' ' && *p != '\t')
                p++;
            p = skip_ows(p);
            if (*p != ',' && *p != '\0')
                return -EPROTO;
            continue;
        }
        while (at_param(p)) {
            p = parse_param(p, c, &rc);
            if (p == NULL)
                return rc;
            p = skip_ows(p);
            if (*p == '\0')
                break;
            if (*p != ',')
                return -EPROTO;
            while (*p == ',' || *p == ' ' || *p == '\t')
                p++;
        }
    }
}

/* ---- URLs -------------------------------------------------------------------- */

static int parse_authority(const char *s, size_t n, bool tls, struct img_url *out)
{
    const char *port = NULL;
    size_t hlen;
    const char *host = s;

    if (n > 0 && s[0] == '[') {
        const char *rb = memchr(s, ']', n);
        if (rb == NULL)
            return -EINVAL;
        host = s + 1;
        hlen = (size_t)(rb - host);
        if (rb + 1 < s + n) {
            if (rb[1] != ':')
                return -EINVAL;
            port = rb + 2;
        }
    } else {
        const char *colon = memchr(s, ':', n);
        hlen = colon ? (size_t)(colon - s) : n;
        port = colon ? colon + 1 : NULL;
    }
    if (hlen == 0 || hlen >= sizeof(out->host) || memchr(host, '@', hlen) != NULL)
        return -EINVAL;
    memcpy(out->host, host, hlen);
    out->host[hlen] = '\0';
    out->port = tls ? 443 : 80;
    if (port != NULL) {
        unsigned long v = 0;
        const char *end = s + n;
        if (port == end)
            return -EINVAL;
        for (const char *q = port; q < end; q++) {
            if (!isdigit((unsigned char)*q))
                return -EINVAL;
            v = v * 10 + (unsigned long)(*q - '0');
            if (v > 65535)
                return -EINVAL;
        }
        if (v == 0)
            return -EINVAL;
        out->port = (uint16_t)v;
    }
    return 0;
}

static int set_path(struct img_url *out, const char *path)
{
    size_t n = strlen(path);

    for (size_t i = 0; i < n; i++)
        if ((unsigned char)path[i] <= 0x20 || path[i] == 0x7f)
            return -EINVAL;
    if (n == 0) {
        strcpy(out->path, "/");
        return 0;
    }
    if (n >= sizeof(out->path))
        return -EINVAL;
    memcpy(out->path, path, n + 1);
    return 0;
}

int img_url_parse(const char *s, const struct img_url *base, struct img_url *out)
{
    bool tls;

    if (base != NULL && s[0] == '/' && s[1] != '/') {
        *out = *base;
        return set_path(out, s);
    }
    if (strncasecmp(s, "https://", 8) == 0) {
        tls = true;
        s += 8;
    } else if (strncasecmp(s, "http://", 7) == 0) {
        tls = false;
        s += 7;
    } else {
        return -EINVAL;
    }
    size_t alen = strcspn(s, "/?#");
    out->tls = tls;
    int rc = parse_authority(s, alen, tls, out);
    if (rc < 0)
        return rc;
    s += alen;
    if (*s == '?') {
        char tmp[sizeof(out->path)];
        if (snprintf(tmp, sizeof(tmp), "/%s", s) >= (int)sizeof(tmp))
            return -EINVAL;
        return set_path(out, tmp);
    }
    return set_path(out, s);
}

void img_url_hostport(const struct img_url *u, char *out, size_t out_len)
{
    bool v6 = strchr(u->host, ':') != NULL;
    bool dflt = u->port == (u->tls ? 443 : 80);

    if (dflt)
        snprintf(out, out_len, v6 ? "[%s]" : "%s", u->host);
    else
        snprintf(out, out_len, v6 ? "[%s]:%u" : "%s:%u", u->host, u->port);
}

int img_url_escape(const char *s, char *out, size_t out_len)
{
    size_t o = 0;

    for (; *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (isalnum(c) || c == '-' || c == '.' || c == '_' || c == '~') {
            if (o + 1 >= out_len)
                return -ENAMETOOLONG;
            out[o++] = (char)c;
        } else {
            if (o + 3 >= out_len)
                return -ENAMETOOLONG;
            snprintf(out + o, 4, "%%%02X", c);
            o += 3;
        }
    }
    if (o >= out_len)
        return -ENAMETOOLONG;
    out[o] = '\0';
    return 0;
}
