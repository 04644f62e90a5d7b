/* agent/image: k3s-style registries.yaml (mirrors with endpoints and
 * rewrites; per-host auth and TLS) and the endpoint list of a pull.
 *
 * The file is read with libyaml's document API into plain structs; unknown
 * keys are errors so that a typo is not silently ignored.  Endpoint order
 * for a registry: its mirror endpoints (rewrites applied to the repository
 * name), then the upstream itself, unrewritten, last.  An `http://`
 * endpoint is plain HTTP; a localhost registry is HTTPS with a plain-HTTP
 * fallback, as containerd does.  Invariant: every img_endpoint produced has
 * a host, a port, an API prefix starting with '/', and a repository that
 * fits its buffer.
 */
#include "image/img_net.h"

#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <yaml.h>

#define DOCKER_HUB "docker.io"
#define DOCKER_HUB_HOST "registry-1.docker.io"

static void rewrite_fini(struct img_rewrite *w)
{
    if (w->pattern != NULL)
        regfree(&w->re);
    free(w->pattern);
    free(w->replace);
}

void img_registries_free(struct img_registries *r)
{
    if (r == NULL)
        return;
    for (size_t i = 0; i < r->mirror_count; i++) {
        struct img_mirror *m = &r->mirrors[i];
        free(m->registry);
        for (size_t j = 0; j < m->endpoint_count; j++)
            free(m->endpoints[j]);
        free(m->endpoints);
        for (size_t j = 0; j < m->rewrite_count; j++)
            rewrite_fini(&m->rewrites[j]);
        free(m->rewrites);
    }
    free(r->mirrors);
    for (size_t i = 0; i < r->config_count; i++) {
        struct img_host_config *h = &r->configs[i];
        free(h->host);
        img_auth_config_fini(&h->auth);
        free(h->ca_file);
        free(h->cert_file);
        free(h->key_file);
    }
    free(r->configs);
    free(r);
}

/* ---- YAML helpers ------------------------------------------------------------ */

struct ctx {
    yaml_document_t *doc;
    struct ag_err *err;
};

static yaml_node_t *node(struct ctx *x, int idx) { return yaml_document_get_node(x->doc, idx); }

static const char *scalar(yaml_node_t *n)
{
    return n != NULL && n->type == YAML_SCALAR_NODE ? (const char *)n->data.scalar.value : NULL;
}

static int want_mapping(struct ctx *x, yaml_node_t *n, const char *what)
{
    if (n == NULL || n->type != YAML_MAPPING_NODE)
        return ag_err_set(x->err, -EINVAL, "%s: expected a mapping", what);
    return 0;
}

static int take_string(struct ctx *x, yaml_node_t *v, const char *what, char **out)
{
    const char *s = scalar(v);

    if (s == NULL)
        return ag_err_set(x->err, -EINVAL, "%s: expected a string", what);
    free(*out);
    *out = strdup(s);
    return *out ? 0 : ag_err_set(x->err, -ENOMEM, "out of memory");
}

static int take_bool(struct ctx *x, yaml_node_t *v, const char *what, bool *out)
{
    const char *s = scalar(v);

    if (s != NULL && (strcasecmp(s, "true") == 0 || strcasecmp(s, "yes") == 0))
        *out = true;
    else if (s != NULL && (strcasecmp(s, "false") == 0 || strcasecmp(s, "no") == 0))
        *out = false;
    else
        return ag_err_set(x->err, -EINVAL, "%s: expected true or false", what);
    return 0;
}

/* ---- mirrors ------------------------------------------------------------------- */

static int parse_rewrites(struct ctx *x, struct img_mirror *m, yaml_node_t *n)
{
    if (want_mapping(x, n, "rewrite") < 0)
        return x->err->code;
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    m->rewrites = calloc(count ? count : 1, sizeof(*m->rewrites));
    if (m->rewrites == NULL)
        return ag_err_set(x->err, -ENOMEM, "out of memory");
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        struct img_rewrite *w = &m->rewrites[m->rewrite_count];
        const char *pat = scalar(node(x, p->key)), *rep = scalar(node(x, p->value));
        if (pat == NULL || rep == NULL)
            return ag_err_set(x->err, -EINVAL, "rewrite: expected \"regex\": \"replacement\"");
        if (regcomp(&w->re, pat, REG_EXTENDED) != 0)
            return ag_err_set(x->err, -EINVAL, "rewrite: bad regular expression %s", pat);
        w->pattern = strdup(pat);
        w->replace = strdup(rep);
        m->rewrite_count++;
        if (w->pattern == NULL || w->replace == NULL)
            return ag_err_set(x->err, -ENOMEM, "out of memory");
    }
    return 0;
}

static int parse_mirror(struct ctx *x, struct img_mirror *m, yaml_node_t *n)
{
    if (want_mapping(x, n, m->registry) < 0)
        return x->err->code;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(x, p->key));
        yaml_node_t *v = node(x, p->value);
        int rc;

        if (k != NULL && strcmp(k, "endpoint") == 0) {
            if (v == NULL || v->type != YAML_SEQUENCE_NODE)
                return ag_err_set(x->err, -EINVAL, "endpoint: expected a list");
            size_t count = (size_t)(v->data.sequence.items.top - v->data.sequence.items.start);
            m->endpoints = calloc(count ? count : 1, sizeof(char *));
            if (m->endpoints == NULL)
                return ag_err_set(x->err, -ENOMEM, "out of memory");
            for (yaml_node_item_t *it = v->data.sequence.items.start;
                 it < v->data.sequence.items.top; it++) {
                rc = take_string(x, node(x, *it), "endpoint", &m->endpoints[m->endpoint_count]);
                if (rc < 0)
                    return rc;
                m->endpoint_count++;
            }
        } else if (k != NULL && strcmp(k, "rewrite") == 0) {
            rc = parse_rewrites(x, m, v);
            if (rc < 0)
                return rc;
        } else {
            return ag_err_set(x->err, -EINVAL, "unknown key %s", k ? k : "(non-scalar)");
        }
    }
    return 0;
}

/* ---- configs ------------------------------------------------------------------- */

static int parse_auth(struct ctx *x, struct img_auth_config *a, yaml_node_t *n)
{
    if (want_mapping(x, n, "auth") < 0)
        return x->err->code;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(x, p->key));
        yaml_node_t *v = node(x, p->value);
        char **dst = NULL;

        if (k == NULL)
            return ag_err_set(x->err, -EINVAL, "auth: non-scalar key");
        if (strcmp(k, "username") == 0)
            dst = &a->username;
        else if (strcmp(k, "password") == 0)
            dst = &a->password;
        else if (strcmp(k, "auth") == 0)
            dst = &a->auth;
        else if (strcmp(k, "token") == 0 || strcmp(k, "registry_token") == 0)
            dst = &a->registry_token;
        else if (strcmp(k, "identity_token") == 0)
            dst = &a->identity_token;
        else
            return ag_err_set(x->err, -EINVAL, "auth: unknown key %s", k);
        if (*dst != NULL)
            img_auth_secret_free(steal_ptr(dst));
        if (take_string(x, v, k, dst) < 0)
            return x->err->code;
    }
    return 0;
}

static int parse_tls(struct ctx *x, struct img_host_config *h, yaml_node_t *n)
{
    if (want_mapping(x, n, "tls") < 0)
        return x->err->code;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(x, p->key));
        yaml_node_t *v = node(x, p->value);
        int rc;

        if (k == NULL)
            return ag_err_set(x->err, -EINVAL, "tls: non-scalar key");
        if (strcmp(k, "ca_file") == 0)
            rc = take_string(x, v, k, &h->ca_file);
        else if (strcmp(k, "cert_file") == 0)
            rc = take_string(x, v, k, &h->cert_file);
        else if (strcmp(k, "key_file") == 0)
            rc = take_string(x, v, k, &h->key_file);
        else if (strcmp(k, "insecure_skip_verify") == 0)
            rc = take_bool(x, v, k, &h->insecure_skip_verify);
        else
            return ag_err_set(x->err, -EINVAL, "tls: unknown key %s", k);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_config(struct ctx *x, struct img_host_config *h, yaml_node_t *n)
{
    if (want_mapping(x, n, h->host) < 0)
        return x->err->code;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(x, p->key));
        yaml_node_t *v = node(x, p->value);
        int rc;

        if (k != NULL && strcmp(k, "auth") == 0)
            rc = parse_auth(x, &h->auth, v);
        else if (k != NULL && strcmp(k, "tls") == 0)
            rc = parse_tls(x, h, v);
        else
            return ag_err_set(x->err, -EINVAL, "unknown key %s", k ? k : "(non-scalar)");
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int parse_section(struct ctx *x, struct img_registries *r, yaml_node_t *n, bool mirrors)
{
    const char *what = mirrors ? "mirrors" : "configs";

    if (n != NULL && n->type == YAML_SCALAR_NODE && scalar(n)[0] == '\0')
        return 0; /* "mirrors:" with nothing under it */
    if (want_mapping(x, n, what) < 0)
        return x->err->code;
    size_t count = (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        const char *k = scalar(node(x, p->key));
        yaml_node_t *v = node(x, p->value);
        int rc;

        if (k == NULL || *k == '\0')
            return ag_err_set(x->err, -EINVAL, "%s: empty registry name", what);
        if (mirrors) {
            if (r->mirrors == NULL && (r->mirrors = calloc(count, sizeof(*r->mirrors))) == NULL)
                return ag_err_set(x->err, -ENOMEM, "out of memory");
            struct img_mirror *m = &r->mirrors[r->mirror_count++];
            if ((m->registry = strdup(k)) == NULL)
                return ag_err_set(x->err, -ENOMEM, "out of memory");
            /* A registry listed with nothing under it is valid (P2P only). */
            rc = v != NULL && v->type == YAML_SCALAR_NODE && scalar(v)[0] == '\0'
                     ? 0
                     : parse_mirror(x, m, v);
        } else {
            if (r->configs == NULL && (r->configs = calloc(count, sizeof(*r->configs))) == NULL)
                return ag_err_set(x->err, -ENOMEM, "out of memory");
            struct img_host_config *h = &r->configs[r->config_count++];
            if ((h->host = strdup(k)) == NULL)
                return ag_err_set(x->err, -ENOMEM, "out of memory");
            rc = parse_config(x, h, v);
        }
        if (rc < 0)
            return ag_err_wrap(x->err, "%s: %s", what, k);
    }
    return 0;
}

static int parse_root(struct ctx *x, struct img_registries *r)
{
    yaml_node_t *root = yaml_document_get_root_node(x->doc);

    if (root == NULL)
        return 0; /* empty file */
    if (root->type == YAML_SCALAR_NODE && scalar(root)[0] == '\0')
        return 0;
    if (want_mapping(x, root, "registries.yaml") < 0)
        return x->err->code;
    for (yaml_node_pair_t *p = root->data.mapping.pairs.start; p < root->data.mapping.pairs.top;
         p++) {
        const char *k = scalar(node(x, p->key));
        int rc;

        if (k != NULL && strcmp(k, "mirrors") == 0 && r->mirrors == NULL)
            rc = parse_section(x, r, node(x, p->value), true);
        else if (k != NULL && strcmp(k, "configs") == 0 && r->configs == NULL)
            rc = parse_section(x, r, node(x, p->value), false);
        else
            return ag_err_set(x->err, -EINVAL, "unknown or repeated key %s", k ? k : "?");
        if (rc < 0)
            return rc;
    }
    return 0;
}

int img_registries_parse(const char *yaml, size_t len, struct img_registries **out,
                         struct ag_err *err)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    struct img_registries *r = calloc(1, sizeof(*r));
    int rc;

    if (r == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    if (!yaml_parser_initialize(&parser)) {
        free(r);
        return ag_err_set(err, -ENOMEM, "yaml parser");
    }
    yaml_parser_set_input_string(&parser, (const unsigned char *)yaml, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = ag_err_set(err, -EINVAL, "line %zu: %s", parser.problem_mark.line + 1,
                        parser.problem ? parser.problem : "syntax error");
        yaml_parser_delete(&parser);
        free(r);
        return rc;
    }
    struct ctx x = {.doc = &doc, .err = err};
    rc = parse_root(&x, r);
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    if (rc < 0) {
        img_registries_free(r);
        return rc;
    }
    *out = r;
    return 0;
}

int img_registries_load(const char *path, struct img_registries **out, struct ag_err *err)
{
    _cleanup_free_ char *text = NULL;
    size_t len = 0;
    int rc = ag_file_read(path, 1 << 20, &text, &len);

    if (rc == -ENOENT)
        return img_registries_parse("", 0, out, err);
    if (rc < 0)
        return ag_err_set(err, rc, "read %s: %s", path, strerror(-rc));
    rc = img_registries_parse(text, len, out, err);
    return rc < 0 ? ag_err_wrap(err, "%s", path) : 0;
}

/* ---- endpoints ------------------------------------------------------------------ */

const struct img_host_config *img_registries_host(const struct img_registries *cfg,
                                                  const char *hostport)
{
    const struct img_host_config *star = NULL;

    if (cfg == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->config_count; i++) {
        if (strcasecmp(cfg->configs[i].host, hostport) == 0)
            return &cfg->configs[i];
        if (strcmp(cfg->configs[i].host, "*") == 0)
            star = &cfg->configs[i];
    }
    return star;
}

static const struct img_mirror *find_mirror(const struct img_registries *cfg, const char *registry)
{
    const struct img_mirror *star = NULL;

    if (cfg == NULL)
        return NULL;
    for (size_t i = 0; i < cfg->mirror_count; i++) {
        if (strcasecmp(cfg->mirrors[i].registry, registry) == 0)
            return &cfg->mirrors[i];
        if (strcmp(cfg->mirrors[i].registry, "*") == 0)
            star = &cfg->mirrors[i];
    }
    return star;
}

/* Applies the first matching rewrite; $0..$9 are groups. */
static int apply_rewrite(const struct img_mirror *m, const char *repo, char *out, size_t out_len)
{
    for (size_t i = 0; i < m->rewrite_count; i++) {
        regmatch_t g[10];
        if (regexec(&m->rewrites[i].re, repo, 10, g, 0) != 0)
            continue;
        size_t o = 0;
        for (const char *s = m->rewrites[i].replace; *s; s++) {
            const char *src = s;
            size_t n = 1;
            if (s[0] == '$' && s[1] >= '0' && s[1] <= '9') {
                int k = s[1] - '0';
                s++;
                if (g[k].rm_so < 0)
                    continue;
                src = repo + g[k].rm_so;
                n = (size_t)(g[k].rm_eo - g[k].rm_so);
            }
            if (o + n >= out_len)
                return -ENAMETOOLONG;
            memcpy(out + o, src, n);
            o += n;
        }
        out[o] = '\0';
        return 1;
    }
    return 0;
}

static bool is_localhost(const char *host)
{
    return strcasecmp(host, "localhost") == 0 || strcmp(host, "::1") == 0 ||
           strncmp(host, "127.", 4) == 0;
}

static int mirror_endpoint(const struct img_registries *cfg, const struct img_mirror *m,
                           const char *spec, const char *repo, struct img_endpoint *e,
                           struct ag_err *err)
{
    char buf[1100];
    struct img_url u;
    char hp[300];

    snprintf(buf, sizeof(buf), "%s%s", strstr(spec, "://") ? "" : "https://", spec);
    if (img_url_parse(buf, NULL, &u) < 0 || strchr(u.path, '?') != NULL)
        return ag_err_set(err, -EINVAL, "mirror endpoint %s: not an http(s) URL", spec);
    memset(e, 0, sizeof(*e));
    e->tls = u.tls;
    e->port = u.port;
    snprintf(e->host, sizeof(e->host), "%s", u.host);
    size_t pl = strlen(u.path);
    while (pl > 0 && u.path[pl - 1] == '/')
        u.path[--pl] = '\0';
    if (snprintf(e->prefix, sizeof(e->prefix), "%s", pl ? u.path : "/v2") >= (int)sizeof(e->prefix))
        return ag_err_set(err, -EINVAL, "mirror endpoint %s: path too long", spec);
    int rc = apply_rewrite(m, repo, e->repo, sizeof(e->repo));
    if (rc == 0 && snprintf(e->repo, sizeof(e->repo), "%s", repo) >= (int)sizeof(e->repo))
        rc = -ENAMETOOLONG;
    if (rc < 0)
        return ag_err_set(err, rc, "rewrite of %s: result too long", repo);
    img_url_hostport(&u, hp, sizeof(hp));
    e->cfg = img_registries_host(cfg, hp);
    return 0;
}

static int upstream_endpoint(const struct img_registries *cfg, const char *registry,
                             const char *repo, struct img_endpoint *e, struct ag_err *err)
{
    char buf[600];
    struct img_url u;

    snprintf(buf, sizeof(buf), "https://%s",
             strcasecmp(registry, DOCKER_HUB) == 0 ? DOCKER_HUB_HOST : registry);
    if (img_url_parse(buf, NULL, &u) < 0 || strcmp(u.path, "/") != 0)
        return ag_err_set(err, -EINVAL, "registry %s: not a host[:port]", registry);
    memset(e, 0, sizeof(*e));
    e->tls = true;
    e->is_upstream = true;
    e->plain_fallback = is_localhost(u.host);
    e->port = u.port;
    snprintf(e->host, sizeof(e->host), "%s", u.host);
    strcpy(e->prefix, "/v2");
    if (snprintf(e->repo, sizeof(e->repo), "%s", repo) >= (int)sizeof(e->repo))
        return ag_err_set(err, -ENAMETOOLONG, "repository name too long");
    e->cfg = img_registries_host(cfg, registry);
    return 0;
}

int img_registries_endpoints(const struct img_registries *cfg, const char *registry,
                             const char *repo, struct img_endpoint **out, size_t *count,
                             struct ag_err *err)
{
    const struct img_mirror *m = find_mirror(cfg, registry);
    size_t n = 0, cap = (m ? m->endpoint_count : 0) + 1;
    struct img_endpoint *eps = calloc(cap, sizeof(*eps));
    struct img_endpoint up;
    int rc;

    if (eps == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    rc = upstream_endpoint(cfg, registry, repo, &up, err);
    for (size_t i = 0; rc == 0 && m != NULL && i < m->endpoint_count; i++) {
        rc = mirror_endpoint(cfg, m, m->endpoints[i], repo, &eps[n], err);
        if (rc < 0)
            break;
        /* The default endpoint itself is not a mirror: it comes last. */
        if (eps[n].tls == up.tls && eps[n].port == up.port &&
            strcasecmp(eps[n].host, up.host) == 0 && strcmp(eps[n].prefix, "/v2") == 0 &&
            strstr(m->endpoints[i], ":443") == NULL)
            continue;
        n++;
    }
    if (rc < 0) {
        free(eps);
        return rc;
    }
    eps[n++] = up;
    *out = eps;
    *count = n;
    return 0;
}
