/* agent/image: image references.  Parses what a user or kubelet typed
 * ("busybox", "ghcr.io/x/y:1.0", "[::1]:5000/a@sha256:...") into domain,
 * repository path, tag and digest with Docker Hub normalisation
 * (distribution/reference normalize.go), and formats the canonical string
 * back.  Pure string code, no allocation.  Invariant: a struct img_ref that
 * img_ref_parse() filled is fully valid (grammar and length limits hold) and
 * its canonical form parses back to the same struct. */
#include "image/image.h"

#include <stdio.h>
#include <string.h>

static bool is_alnum_lower(char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); }
static bool is_alnum(char c) { return is_alnum_lower(c) || (c >= 'A' && c <= 'Z'); }
static bool is_word(char c) { return is_alnum(c) || c == '_'; }
static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

/* One path component: [a-z0-9]+((\.|_|__|-+)[a-z0-9]+)* */
static bool path_component_ok(const char *s, size_t n)
{
    size_t i = 0;

    if (n == 0 || !is_alnum_lower(s[0]) || !is_alnum_lower(s[n - 1]))
        return false;
    while (i < n) {
        if (is_alnum_lower(s[i])) {
            i++;
            continue;
        }
        /* A separator run: ".", "_", "__" or "-+", then an alnum. */
        size_t start = i;
        if (s[i] == '.') {
            i++;
        } else if (s[i] == '_') {
            i++;
            if (i < n && s[i] == '_')
                i++;
        } else if (s[i] == '-') {
            while (i < n && s[i] == '-')
                i++;
        } else {
            return false;
        }
        if (i == start || i >= n || !is_alnum_lower(s[i]))
            return false;
    }
    return true;
}

static int check_path(const char *path, struct ag_err *err)
{
    const char *p = path;

    for (const char *c = path; *c; c++) {
        if (*c >= 'A' && *c <= 'Z')
            return ag_err_set(err, -EINVAL, "repository name must be lowercase");
    }
    for (;;) {
        const char *slash = strchr(p, '/');
        size_t n = slash ? (size_t)(slash - p) : strlen(p);
        if (!path_component_ok(p, n))
            return ag_err_set(err, -EINVAL,
                              "invalid repository path component '%.*s' (want [a-z0-9] "
                              "separated by '.', '_', '__' or '-')",
                              (int)(n > 64 ? 64 : n), p);
        if (slash == NULL)
            return 0;
        p = slash + 1;
    }
}

/* host[:port]: DNS labels separated by dots, or a bracketed IPv6 address. */
static int check_domain(const char *d, struct ag_err *err)
{
    const char *port = NULL;
    const char *p = d;

    if (*p == '[') {
        const char *end = strchr(p, ']');
        if (end == NULL || end == p + 1)
            return ag_err_set(err, -EINVAL, "invalid IPv6 registry host");
        for (const char *c = p + 1; c < end; c++) {
            if (!is_hex(*c) && *c != ':')
                return ag_err_set(err, -EINVAL, "invalid IPv6 registry host");
        }
        p = end + 1;
        if (*p == ':')
            port = p + 1;
        else if (*p != '\0')
            return ag_err_set(err, -EINVAL, "invalid registry host");
    } else {
        const char *colon = strchr(p, ':');
        size_t n = colon ? (size_t)(colon - p) : strlen(p);
        size_t label = 0;
        for (size_t i = 0; i < n; i++) {
            char c = p[i];
            if (c == '.') {
                if (label == 0 || p[i - 1] == '-')
                    return ag_err_set(err, -EINVAL, "invalid registry host");
                label = 0;
            } else if (is_alnum(c) || (c == '-' && label > 0)) {
                label++;
            } else {
                return ag_err_set(err, -EINVAL, "invalid registry host");
            }
        }
        if (n == 0 || label == 0 || p[n - 1] == '-')
            return ag_err_set(err, -EINVAL, "invalid registry host");
        if (colon)
            port = colon + 1;
    }
    if (port) {
        size_t n = strlen(port);
        if (n == 0 || n > 5 || strspn(port, "0123456789") != n)
            return ag_err_set(err, -EINVAL, "invalid registry port");
    }
    return 0;
}

static int check_tag(const char *tag, struct ag_err *err)
{
    size_t n = strlen(tag);

    if (n == 0 || n > IMG_REF_TAG_MAX)
        return ag_err_set(err, -EINVAL, "tag must be 1 to %d characters", IMG_REF_TAG_MAX);
    if (!is_word(tag[0]))
        return ag_err_set(err, -EINVAL, "tag must start with a letter, digit or '_'");
    for (size_t i = 1; i < n; i++) {
        if (!is_word(tag[i]) && tag[i] != '.' && tag[i] != '-')
            return ag_err_set(err, -EINVAL, "invalid character in tag");
    }
    return 0;
}

/* Is the first path component a registry host?  (normalize.go splitDockerDomain) */
static bool looks_like_domain(const char *c, size_t n)
{
    if (n == 9 && memcmp(c, "localhost", 9) == 0)
        return true;
    for (size_t i = 0; i < n; i++) {
        if (c[i] == '.' || c[i] == ':' || (c[i] >= 'A' && c[i] <= 'Z'))
            return true;
    }
    return false;
}

/* Splits "name[:tag]" (digest already removed) into name and tag buffers. */
static int split_tag(char *name, struct img_ref *out, struct ag_err *err)
{
    char *slash = strrchr(name, '/');
    char *colon = strrchr(slash ? slash : name, ':');

    if (colon == NULL)
        return 0;
    *colon = '\0';
    if (strlen(colon + 1) > IMG_REF_TAG_MAX)
        return ag_err_set(err, -EINVAL, "tag longer than %d characters", IMG_REF_TAG_MAX);
    strcpy(out->tag, colon + 1);
    return check_tag(out->tag, err);
}

static int split_domain(const char *name, struct img_ref *out, struct ag_err *err)
{
    const char *slash = strchr(name, '/');
    size_t first = slash ? (size_t)(slash - name) : strlen(name);
    const char *rest = name;

    if (slash && looks_like_domain(name, first)) {
        if (first > IMG_REF_NAME_MAX)
            return ag_err_set(err, -EINVAL, "registry host too long");
        memcpy(out->domain, name, first);
        out->domain[first] = '\0';
        rest = slash + 1;
        if (strcmp(out->domain, "index.docker.io") == 0) {
            /* Keep the struct zero-padded so equal references compare equal. */
            memset(out->domain, 0, sizeof(out->domain));
            strcpy(out->domain, "docker.io");
        }
    } else {
        strcpy(out->domain, "docker.io");
    }
    if (strlen(rest) + 8 > IMG_REF_NAME_MAX)
        return ag_err_set(err, -EINVAL, "repository name longer than %d characters",
                          IMG_REF_NAME_MAX);
    /* Length checked above: path + "library/" fits. */
    size_t off = 0;
    if (strcmp(out->domain, "docker.io") == 0 && strchr(rest, '/') == NULL) {
        memcpy(out->path, "library/", 8);
        off = 8;
    }
    memcpy(out->path + off, rest, strlen(rest) + 1);
    return 0;
}

static int parse(const char *s, struct img_ref *out, struct ag_err *err)
{
    char name[2 * IMG_REF_NAME_MAX];
    const char *at;
    size_t n;
    int rc;

    if (s == NULL || *s == '\0')
        return ag_err_set(err, -EINVAL, "empty image reference");
    n = strnlen(s, 1024);
    if (n >= 1024)
        return ag_err_set(err, -EINVAL, "image reference too long");
    if (n == 64 && strspn(s, "0123456789abcdef") == 64)
        return ag_err_set(err, -EINVAL, "a 64-hex string is an image ID, not a reference");
    at = strchr(s, '@');
    if (at) {
        if (strlen(at + 1) >= IMG_DIGEST_MAX)
            return ag_err_set(err, -EINVAL, "digest too long");
        strcpy(out->digest, at + 1);
        if ((rc = img_digest_validate(out->digest, err)) < 0)
            return rc;
        n = (size_t)(at - s);
    }
    if (n == 0)
        return ag_err_set(err, -EINVAL, "missing repository name");
    if (n >= sizeof(name))
        return ag_err_set(err, -EINVAL, "repository name longer than %d characters",
                          IMG_REF_NAME_MAX);
    memcpy(name, s, n);
    name[n] = '\0';
    if ((rc = split_tag(name, out, err)) < 0)
        return rc;
    if ((rc = split_domain(name, out, err)) < 0)
        return rc;
    if ((rc = check_domain(out->domain, err)) < 0)
        return rc;
    if ((rc = check_path(out->path, err)) < 0)
        return rc;
    if (strlen(out->domain) + 1 + strlen(out->path) > IMG_REF_NAME_MAX)
        return ag_err_set(err, -EINVAL, "repository name longer than %d characters",
                          IMG_REF_NAME_MAX);
    if (out->tag[0] == '\0' && out->digest[0] == '\0')
        strcpy(out->tag, "latest");
    return 0;
}

int img_ref_parse(const char *s, struct img_ref *out, struct ag_err *err)
{
    char esc[80];
    int rc;

    memset(out, 0, sizeof(*out));
    rc = parse(s, out, err);
    if (rc < 0) {
        memset(out, 0, sizeof(*out));
        ag_str_escape(esc, sizeof(esc), s ? s : "", 64);
        return ag_err_wrap(err, "invalid image reference \"%s\"", esc);
    }
    return 0;
}

int img_ref_format_name(const struct img_ref *ref, char *out, size_t out_len)
{
    int n = snprintf(out, out_len, "%s/%s", ref->domain, ref->path);

    return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : n;
}

int img_ref_format(const struct img_ref *ref, char *out, size_t out_len)
{
    int n = snprintf(out, out_len, "%s/%s%s%s%s%s", ref->domain, ref->path, ref->tag[0] ? ":" : "",
                     ref->tag, ref->digest[0] ? "@" : "", ref->digest);

    return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : n;
}

const char *img_ref_api_host(const struct img_ref *ref)
{
    if (strcmp(ref->domain, "docker.io") == 0)
        return "registry-1.docker.io";
    return ref->domain;
}

const char *img_ref_object(const struct img_ref *ref)
{
    return ref->digest[0] ? ref->digest : ref->tag;
}
