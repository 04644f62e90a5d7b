/* Unit tests of agent/image/img_mirror.c (registries.yaml, endpoint lists)
 * and img_auth.c (Basic header, token response, token cache, proxy
 * bypass). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "image/img_net.h"

static const char full_yaml[] = "mirrors:\n"
                                "  docker.io:\n"
                                "    endpoint:\n"
                                "      - \"https://mirror.example.com:5000\"\n"
                                "      - \"http://10.0.0.1:5000/custom/v2\"\n"
                                "      - \"https://registry-1.docker.io\"\n"
                                "    rewrite:\n"
                                "      \"^rancher/(.*)\": \"mirrorproject/rancher-images/$1\"\n"
                                "  \"*\":\n"
                                "    endpoint: [\"https://star.example\"]\n"
                                "  registry.local:5000:\n"
                                "configs:\n"
                                "  mirror.example.com:5000:\n"
                                "    auth:\n"
                                "      username: alice\n"
                                "      password: s3cret\n"
                                "    tls:\n"
                                "      ca_file: /etc/ca.pem\n"
                                "      cert_file: /etc/c.pem\n"
                                "      key_file: /etc/k.pem\n"
                                "      insecure_skip_verify: true\n"
                                "  \"docker.io\":\n"
                                "    auth:\n"
                                "      auth: YWxpY2U6czNjcmV0\n"
                                "      token: tok\n";

static void test_parse_full(void **state)
{
    struct img_registries *r = NULL;
    struct ag_err err;

    ag_err_init(&err);
    assert_int_equal(img_registries_parse(full_yaml, strlen(full_yaml), &r, &err), 0);
    assert_int_equal(r->mirror_count, 3);
    assert_string_equal(r->mirrors[0].registry, "docker.io");
    assert_int_equal(r->mirrors[0].endpoint_count, 3);
    assert_string_equal(r->mirrors[0].endpoints[1], "http://10.0.0.1:5000/custom/v2");
    assert_int_equal(r->mirrors[0].rewrite_count, 1);
    assert_string_equal(r->mirrors[1].registry, "*");
    assert_int_equal(r->mirrors[2].endpoint_count, 0);
    assert_int_equal(r->config_count, 2);
    const struct img_host_config *h = img_registries_host(r, "mirror.example.com:5000");
    assert_non_null(h);
    assert_string_equal(h->auth.username, "alice");
    assert_string_equal(h->auth.password, "s3cret");
    assert_string_equal(h->ca_file, "/etc/ca.pem");
    assert_string_equal(h->key_file, "/etc/k.pem");
    assert_true(h->insecure_skip_verify);
    h = img_registries_host(r, "docker.io");
    assert_string_equal(h->auth.auth, "YWxpY2U6czNjcmV0");
    assert_string_equal(h->auth.registry_token, "tok");
    assert_null(img_registries_host(r, "other.io"));
    img_registries_free(r);
}

static void test_endpoints(void **state)
{
    struct img_registries *r = NULL;
    struct img_endpoint *e = NULL;
    size_t n = 0;
    struct ag_err err;

    ag_err_init(&err);
    assert_int_equal(img_registries_parse(full_yaml, strlen(full_yaml), &r, &err), 0);
    assert_int_equal(img_registries_endpoints(r, "docker.io", "rancher/pause", &e, &n, &err), 0);
    /* The listed default endpoint is dropped: two mirrors, then upstream. */
    assert_int_equal(n, 3);
    assert_true(e[0].tls);
    assert_string_equal(e[0].host, "mirror.example.com");
    assert_int_equal(e[0].port, 5000);
    assert_string_equal(e[0].prefix, "/v2");
    assert_string_equal(e[0].repo, "mirrorproject/rancher-images/pause");
    assert_non_null(e[0].cfg);
    assert_false(e[1].tls);
    assert_string_equal(e[1].prefix, "/custom/v2");
    assert_int_equal(e[1].port, 5000);
    assert_true(e[2].is_upstream);
    assert_string_equal(e[2].host, "registry-1.docker.io");
    assert_string_equal(e[2].repo, "rancher/pause"); /* no rewrite upstream */
    assert_non_null(e[2].cfg);                       /* configs keyed by docker.io */
    free(e);

    /* Wildcard mirror for any other registry. */
    assert_int_equal(img_registries_endpoints(r, "quay.io", "a/b", &e, &n, &err), 0);
    assert_int_equal(n, 2);
    assert_string_equal(e[0].host, "star.example");
    assert_string_equal(e[1].host, "quay.io");
    free(e);

    /* Listed without endpoints: upstream only. */
    assert_int_equal(img_registries_endpoints(r, "registry.local:5000", "x", &e, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_int_equal(e[0].port, 5000);
    assert_false(e[0].plain_fallback);
    free(e);
    img_registries_free(r);

    /* No configuration; localhost gets the plain-HTTP fallback. */
    assert_int_equal(img_registries_endpoints(NULL, "localhost:5000", "x/y", &e, &n, &err), 0);
    assert_int_equal(n, 1);
    assert_true(e[0].tls);
    assert_true(e[0].plain_fallback);
    assert_null(e[0].cfg);
    free(e);
    assert_int_equal(img_registries_endpoints(NULL, "127.0.0.1:5000", "x", &e, &n, &err), 0);
    assert_true(e[0].plain_fallback);
    free(e);
}

static void expect_parse_error(const char *yaml, const char *needle)
{
    struct img_registries *r = NULL;
    struct ag_err err;

    ag_err_init(&err);
    assert_int_equal(img_registries_parse(yaml, strlen(yaml), &r, &err), -EINVAL);
    assert_null(r);
    if (strstr(err.msg, needle) == NULL)
        fail_msg("error \"%s\" lacks \"%s\"", err.msg, needle);
}

static void test_parse_errors(void **state)
{
    expect_parse_error("mirors:\n  a: {}\n", "mirors");
    expect_parse_error("mirrors:\n  a:\n    endpoints: [x]\n", "endpoints");
    expect_parse_error("mirrors:\n  a:\n    endpoint: x\n", "list");
    expect_parse_error("configs:\n  a:\n    tls:\n      insecure_skip_verify: maybe\n",
                       "insecure_skip_verify");
    expect_parse_error("configs:\n  a:\n    auth:\n      user: x\n", "user");
    expect_parse_error("mirrors:\n  a:\n    rewrite:\n      \"(\": x\n", "regular expression");
    expect_parse_error("mirrors: [\n", "line");
    expect_parse_error("- a\n- b\n", "mapping");
}

static void test_parse_empty(void **state)
{
    struct img_registries *r = NULL;
    struct ag_err err;

    ag_err_init(&err);
    assert_int_equal(img_registries_parse("", 0, &r, &err), 0);
    assert_int_equal(r->mirror_count + r->config_count, 0);
    img_registries_free(r);
    assert_int_equal(img_registries_load("/nonexistent/registries.yaml", &r, &err), 0);
    img_registries_free(r);
}

static void test_bad_endpoint(void **state)
{
    static const char y[] = "mirrors:\n  docker.io:\n    endpoint: [\"ftp://x\"]\n";
    struct img_registries *r = NULL;
    struct img_endpoint *e = NULL;
    size_t n = 0;
    struct ag_err err;

    ag_err_init(&err);
    assert_int_equal(img_registries_parse(y, strlen(y), &r, &err), 0);
    assert_int_equal(img_registries_endpoints(r, "docker.io", "a", &e, &n, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "ftp://x"));
    img_registries_free(r);
}

/* ---- auth ------------------------------------------------------------------------ */

static void test_basic_header(void **state)
{
    struct img_auth_config a = {0};
    char *h = NULL;

    assert_int_equal(img_auth_basic_header(&a, &h), -ENOENT);
    a.username = strdup("aladdin");
    a.password = strdup("opensesame");
    assert_int_equal(img_auth_basic_header(&a, &h), 0);
    assert_string_equal(h, "Basic YWxhZGRpbjpvcGVuc2VzYW1l");
    img_auth_secret_free(h);
    a.auth = strdup("Zm9vOmJhcg==");
    assert_int_equal(img_auth_basic_header(&a, &h), 0);
    assert_string_equal(h, "Basic Zm9vOmJhcg==");
    img_auth_secret_free(h);

    struct img_auth_config b;
    assert_int_equal(img_auth_config_copy(&b, &a), 0);
    assert_string_equal(b.username, "aladdin");
    assert_false(img_auth_config_empty(&b));
    img_auth_config_fini(&b);
    assert_true(img_auth_config_empty(&b));
    img_auth_config_fini(&a);
}

static void test_token_parse(void **state)
{
    char *t = NULL;
    int64_t exp = 0;
    static const char j1[] = "{\"token\":\"abc.def\",\"expires_in\":300,\"issued_at\":\"x\"}";
    static const char j2[] = "{\"access_token\":\"zzz\"}";
    static const char j3[] = "{\"token\":\"\",\"access_token\":\"fallback\",\"expires_in\":-5}";
    static const char j4[] = "{\"token\":\"bad token\"}";
    static const char j5[] = "{\"expires_in\":10}";
    static const char j6[] = "[\"token\"]";
    static const char j7[] = "{\"token\":\"x\"";

    assert_int_equal(img_auth_token_parse(j1, strlen(j1), &t, &exp), 0);
    assert_string_equal(t, "abc.def");
    assert_int_equal(exp, 300);
    free(t);
    assert_int_equal(img_auth_token_parse(j2, strlen(j2), &t, &exp), 0);
    assert_string_equal(t, "zzz");
    assert_int_equal(exp, 60);
    free(t);
    assert_int_equal(img_auth_token_parse(j3, strlen(j3), &t, &exp), 0);
    assert_string_equal(t, "fallback");
    assert_int_equal(exp, 60);
    free(t);
    assert_int_equal(img_auth_token_parse(j4, strlen(j4), &t, &exp), -EBADMSG);
    assert_int_equal(img_auth_token_parse(j5, strlen(j5), &t, &exp), -EBADMSG);
    assert_int_equal(img_auth_token_parse(j6, strlen(j6), &t, &exp), -EBADMSG);
    assert_int_equal(img_auth_token_parse(j7, strlen(j7), &t, &exp), -EBADMSG);
    assert_null(t);
}

static void test_token_cache(void **state)
{
    struct img_token_cache *c = NULL;
    const char *realm, *service;
    int64_t now = 1000000000000LL;

    assert_int_equal(img_token_cache_new(&c), 0);
    assert_null(img_token_cache_get(c, "r", "s", "sc", "anon", now));
    assert_int_equal(img_token_cache_put(c, "r", "s", "sc", "anon", "T1", now + 60000000000LL), 0);
    assert_string_equal(img_token_cache_get(c, "r", "s", "sc", "anon", now), "T1");
    assert_null(img_token_cache_get(c, "r", "s", "sc", "user:bob", now));
    /* Inside the 10 s safety margin the token counts as expired. */
    assert_null(img_token_cache_get(c, "r", "s", "sc", "anon", now + 55000000000LL));
    assert_int_equal(img_token_cache_put(c, "r", "s", "sc", "anon", "T2", now + 60000000000LL), 0);
    img_token_cache_drop(c, "r", "s", "sc", "anon");
    assert_null(img_token_cache_get(c, "r", "s", "sc", "anon", now));
    /* Bounded: many entries evict the oldest, never grow without limit. */
    for (int i = 0; i < 200; i++) {
        char sc[32];
        snprintf(sc, sizeof(sc), "scope%d", i);
        assert_int_equal(img_token_cache_put(c, "r", "s", sc, "anon", "T", now + 60000000000LL), 0);
    }
    assert_null(img_token_cache_get(c, "r", "s", "scope0", "anon", now));
    assert_string_equal(img_token_cache_get(c, "r", "s", "scope199", "anon", now), "T");
    assert_false(img_token_cache_host(c, "h:5000", &realm, &service));
    assert_int_equal(img_token_cache_note_host(c, "h:5000", "https://auth/token", "svc"), 0);
    assert_true(img_token_cache_host(c, "h:5000", &realm, &service));
    assert_string_equal(realm, "https://auth/token");
    img_token_cache_free(c);
}

static void test_no_proxy(void **state)
{
    assert_false(img_proxy_bypass(NULL, "a.com", 443));
    assert_true(img_proxy_bypass("*", "a.com", 443));
    assert_true(img_proxy_bypass("localhost, .example.com", "reg.example.com", 443));
    assert_true(img_proxy_bypass("example.com", "example.com", 443));
    assert_true(img_proxy_bypass("example.com", "a.example.com", 443));
    assert_false(img_proxy_bypass("example.com", "badexample.com", 443));
    assert_true(img_proxy_bypass("reg:5000", "reg", 5000));
    assert_false(img_proxy_bypass("reg:5000", "reg", 443));
    assert_false(img_proxy_bypass("", "reg", 443));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_full),   cmocka_unit_test(test_endpoints),
        cmocka_unit_test(test_parse_errors), cmocka_unit_test(test_parse_empty),
        cmocka_unit_test(test_bad_endpoint), cmocka_unit_test(test_basic_header),
        cmocka_unit_test(test_token_parse),  cmocka_unit_test(test_token_cache),
        cmocka_unit_test(test_no_proxy),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
