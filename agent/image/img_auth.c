/* agent/image: registry credentials and bearer tokens.
 *
 * Credentials arrive in CRI AuthConfig shape (username/password, auth =
 * base64 "user:pass", identity_token, registry_token) from the PullImage
 * request or registries.yaml; they are copied, never logged, and zeroized
 * with mbedtls_platform_zeroize before they are freed.  Tokens from a token
 * endpoint are cached per (realm, service, scope, identity) until they
 * expire (minus a 10 s margin); the cache is bounded (CACHE_MAX entries,
 * oldest evicted).  The token response is untrusted JSON: only "token" /
 * "access_token" (strings, bounded) and "expires_in" (clamped) are read.
 */
#include "image/img_net.h"

#include <cjson/cJSON.h>
#include <mbedtls/base64.h>
#include <mbedtls/platform_util.h>
#include <stdio.h>
#include <string.h>

#define CACHE_MAX 64
#define HOSTS_MAX 64
#define TOKEN_MAX 16384
#define MARGIN_NS (10LL * 1000000000LL)

void img_auth_secret_free(char *s)
{
    if (s == NULL)
        return;
    mbedtls_platform_zeroize(s, strlen(s));
    free(s);
}

void img_auth_config_fini(struct img_auth_config *a)
{
    img_auth_secret_free(a->username);
    img_auth_secret_free(a->password);
    img_auth_secret_free(a->auth);
    img_auth_secret_free(a->identity_token);
    img_auth_secret_free(a->registry_token);
    memset(a, 0, sizeof(*a));
}

static int dup_field(char **dst, const char *src)
{
    *dst = NULL;
    if (src == NULL || *src == '\0')
        return 0;
    *dst = strdup(src);
    return *dst ? 0 : -ENOMEM;
}

int img_auth_config_copy(struct img_auth_config *dst, const struct img_auth_config *src)
{
    memset(dst, 0, sizeof(*dst));
    if (src == NULL)
        return 0;
    if (dup_field(&dst->username, src->username) < 0 ||
        dup_field(&dst->password, src->password) < 0 || dup_field(&dst->auth, src->auth) < 0 ||
        dup_field(&dst->identity_token, src->identity_token) < 0 ||
        dup_field(&dst->registry_token, src->registry_token) < 0) {
        img_auth_config_fini(dst);
        return -ENOMEM;
    }
    return 0;
}

bool img_auth_config_empty(const struct img_auth_config *a)
{
    return a == NULL || (a->username == NULL && a->password == NULL && a->auth == NULL &&
                         a->identity_token == NULL && a->registry_token == NULL);
}

int img_auth_basic_header(const struct img_auth_config *a, char **out)
{
    size_t olen = 0;
    char *plain = NULL, *hdr = NULL;
    int rc;

    *out = NULL;
    if (a == NULL)
        return -ENOENT;
    if (a->auth != NULL) {
        if (asprintf(&hdr, "Basic %s", a->auth) < 0)
            return -ENOMEM;
        *out = hdr;
        return 0;
    }
    if (a->username == NULL)
        return -ENOENT;
    if (asprintf(&plain, "%s:%s", a->username, a->password ? a->password : "") < 0)
        return -ENOMEM;
    size_t plen = strlen(plain), cap = 6 + 4 * ((plen + 2) / 3) + 1;
    hdr = malloc(cap);
    if (hdr == NULL) {
        img_auth_secret_free(plain);
        return -ENOMEM;
    }
    memcpy(hdr, "Basic ", 6);
    rc = mbedtls_base64_encode((unsigned char *)hdr + 6, cap - 6, &olen,
                               (const unsigned char *)plain, plen);
    img_auth_secret_free(plain);
    if (rc != 0) {
        free(hdr);
        return -EINVAL;
    }
    hdr[6 + olen] = '\0';
    *out = hdr;
    return 0;
}

int img_auth_token_parse(const char *json, size_t len, char **token, int64_t *expires_in_s)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    const cJSON *t, *e;
    int rc = -EBADMSG;

    *token = NULL;
    *expires_in_s = 60;
    if (root == NULL || !cJSON_IsObject(root))
        goto out;
    t = cJSON_GetObjectItemCaseSensitive(root, "token");
    if (!cJSON_IsString(t) || t->valuestring[0] == '\0')
        t = cJSON_GetObjectItemCaseSensitive(root, "access_token");
    if (!cJSON_IsString(t) || t->valuestring[0] == '\0' || strlen(t->valuestring) > TOKEN_MAX)
        goto out;
    for (const char *p = t->valuestring; *p; p++)
        if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
            goto out; /* it goes into a header line */
    e = cJSON_GetObjectItemCaseSensitive(root, "expires_in");
    if (cJSON_IsNumber(e) && e->valuedouble >= 1 && e->valuedouble < 86400.0 * 365)
        *expires_in_s = (int64_t)e->valuedouble;
    *token = strdup(t->valuestring);
    rc = *token ? 0 : -ENOMEM;
out:
    cJSON_Delete(root);
    return rc;
}

/* ---- token cache ----------------------------------------------------------- */

struct token_entry {
    char *key; /* realm \n service \n scope \n identity */
    char *token;
    int64_t expires_at_ns;
    uint64_t seq;
};

struct host_entry {
    char *host;
    char *realm;
    char *service;
};

struct img_token_cache {
    struct token_entry entries[CACHE_MAX];
    struct host_entry hosts[HOSTS_MAX];
    uint64_t seq;
};

int img_token_cache_new(struct img_token_cache **out)
{
    *out = calloc(1, sizeof(**out));
    return *out ? 0 : -ENOMEM;
}

static void entry_clear(struct token_entry *e)
{
    free(e->key);
    img_auth_secret_free(e->token);
    memset(e, 0, sizeof(*e));
}

void img_token_cache_free(struct img_token_cache *c)
{
    if (c == NULL)
        return;
    for (size_t i = 0; i < CACHE_MAX; i++)
        entry_clear(&c->entries[i]);
    for (size_t i = 0; i < HOSTS_MAX; i++) {
        free(c->hosts[i].host);
        free(c->hosts[i].realm);
        free(c->hosts[i].service);
    }
    free(c);
}

static char *make_key(const char *realm, const char *service, const char *scope,
                      const char *identity)
{
    char *k = NULL;

    if (asprintf(&k, "%s\n%s\n%s\n%s", realm, service ? service : "", scope ? scope : "",
                 identity ? identity : "") < 0)
        return NULL;
    return k;
}

static struct token_entry *find(struct img_token_cache *c, const char *key)
{
    for (size_t i = 0; i < CACHE_MAX; i++)
        if (c->entries[i].key != NULL && strcmp(c->entries[i].key, key) == 0)
            return &c->entries[i];
    return NULL;
}

const char *img_token_cache_get(struct img_token_cache *c, const char *realm, const char *service,
                                const char *scope, const char *identity, int64_t now_ns)
{
    char *key = make_key(realm, service, scope, identity);
    struct token_entry *e = key ? find(c, key) : NULL;

    free(key);
    if (e == NULL)
        return NULL;
    if (now_ns + MARGIN_NS >= e->expires_at_ns) {
        entry_clear(e);
        return NULL;
    }
    return e->token;
}

int img_token_cache_put(struct img_token_cache *c, const char *realm, const char *service,
                        const char *scope, const char *identity, const char *token,
                        int64_t expires_at_ns)
{
    char *key = make_key(realm, service, scope, identity);
    struct token_entry *e;

    if (key == NULL)
        return -ENOMEM;
    e = find(c, key);
    if (e == NULL) {
        e = &c->entries[0];
        for (size_t i = 0; i < CACHE_MAX; i++) {
            if (c->entries[i].key == NULL) {
                e = &c->entries[i];
                break;
            }
            if (c->entries[i].seq < e->seq)
                e = &c->entries[i];
        }
    }
    entry_clear(e);
    e->key = key;
    e->token = strdup(token);
    if (e->token == NULL) {
        entry_clear(e);
        return -ENOMEM;
    }
    e->expires_at_ns = expires_at_ns;
    e->seq = ++c->seq;
    return 0;
}

void img_token_cache_drop(struct img_token_cache *c, const char *realm, const char *service,
                          const char *scope, const char *identity)
{
    char *key = make_key(realm, service, scope, identity);
    struct token_entry *e = key ? find(c, key) : NULL;

    free(key);
    if (e != NULL)
        entry_clear(e);
}

int img_token_cache_note_host(struct img_token_cache *c, const char *host, const char *realm,
                              const char *service)
{
    struct host_entry *slot = NULL;

    for (size_t i = 0; i < HOSTS_MAX; i++) {
        if (c->hosts[i].host != NULL && strcmp(c->hosts[i].host, host) == 0) {
            slot = &c->hosts[i];
            break;
        }
        if (slot == NULL && c->hosts[i].host == NULL)
            slot = &c->hosts[i];
    }
    if (slot == NULL)
        slot = &c->hosts[c->seq % HOSTS_MAX];
    free(slot->host);
    free(slot->realm);
    free(slot->service);
    slot->host = strdup(host);
    slot->realm = strdup(realm);
    slot->service = strdup(service ? service : "");
    if (!slot->host || !slot->realm || !slot->service) {
        free(slot->host);
        free(slot->realm);
        free(slot->service);
        memset(slot, 0, sizeof(*slot));
        return -ENOMEM;
    }
    return 0;
}

bool img_token_cache_host(struct img_token_cache *c, const char *host, const char **realm,
                          const char **service)
{
    for (size_t i = 0; i < HOSTS_MAX; i++)
        if (c->hosts[i].host != NULL && strcmp(c->hosts[i].host, host) == 0) {
            *realm = c->hosts[i].realm;
            *service = c->hosts[i].service;
            return true;
        }
    return false;
}
