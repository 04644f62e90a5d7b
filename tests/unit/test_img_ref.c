/* tests/unit: image references and digests (table-driven). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "image/image.h"

#define D64 "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define D128 D64 D64

struct ok_case {
    const char *in, *domain, *path, *tag, *digest, *canonical, *api_host;
};

static const struct ok_case ok_cases[] = {
    {"busybox", "docker.io", "library/busybox", "latest", "", "docker.io/library/busybox:latest",
     "registry-1.docker.io"},
    {"busybox:1.36", "docker.io", "library/busybox", "1.36", "", "docker.io/library/busybox:1.36",
     "registry-1.docker.io"},
    {"docker.io/nginx", "docker.io", "library/nginx", "latest", "",
     "docker.io/library/nginx:latest", "registry-1.docker.io"},
    {"index.docker.io/busybox", "docker.io", "library/busybox", "latest", "",
     "docker.io/library/busybox:latest", "registry-1.docker.io"},
    {"myuser/app", "docker.io", "myuser/app", "latest", "", "docker.io/myuser/app:latest",
     "registry-1.docker.io"},
    {"docker.io/x/y", "docker.io", "x/y", "latest", "", "docker.io/x/y:latest",
     "registry-1.docker.io"},
    {"localhost/foo", "localhost", "foo", "latest", "", "localhost/foo:latest", "localhost"},
    {"localhost:5000/a/b:v1", "localhost:5000", "a/b", "v1", "", "localhost:5000/a/b:v1",
     "localhost:5000"},
    {"ghcr.io/org/img:1.0-rc_1", "ghcr.io", "org/img", "1.0-rc_1", "", "ghcr.io/org/img:1.0-rc_1",
     "ghcr.io"},
    {"host:5000/repo", "host:5000", "repo", "latest", "", "host:5000/repo:latest", "host:5000"},
    {"[::1]:5000/repo:tag", "[::1]:5000", "repo", "tag", "", "[::1]:5000/repo:tag", "[::1]:5000"},
    {"[fe80::1]/r", "[fe80::1]", "r", "latest", "", "[fe80::1]/r:latest", "[fe80::1]"},
    {"busybox@sha256:" D64, "docker.io", "library/busybox", "", "sha256:" D64,
     "docker.io/library/busybox@sha256:" D64, "registry-1.docker.io"},
    {"busybox:1.36@sha256:" D64, "docker.io", "library/busybox", "1.36", "sha256:" D64,
     "docker.io/library/busybox:1.36@sha256:" D64, "registry-1.docker.io"},
    {"r.example.com/a@sha512:" D128, "r.example.com", "a", "", "sha512:" D128,
     "r.example.com/a@sha512:" D128, "r.example.com"},
    {"a/b__c/d-e.f---g", "docker.io", "a/b__c/d-e.f---g", "latest", "",
     "docker.io/a/b__c/d-e.f---g:latest", "registry-1.docker.io"},
    {"Registry.Example.com/x", "Registry.Example.com", "x", "latest", "",
     "Registry.Example.com/x:latest", "Registry.Example.com"},
};

static void test_ref_ok(void **state)
{
    (void)state;
    for (size_t i = 0; i < AG_ARRAY_LEN(ok_cases); i++) {
        const struct ok_case *c = &ok_cases[i];
        struct img_ref r, r2;
        struct ag_err err;
        char buf[512], buf2[512];
        ag_err_init(&err);
        if (img_ref_parse(c->in, &r, &err) != 0)
            fail_msg("case %zu \"%s\": %s", i, c->in, err.msg);
        assert_string_equal(r.domain, c->domain);
        assert_string_equal(r.path, c->path);
        assert_string_equal(r.tag, c->tag);
        assert_string_equal(r.digest, c->digest);
        assert_true(img_ref_format(&r, buf, sizeof(buf)) > 0);
        assert_string_equal(buf, c->canonical);
        assert_string_equal(img_ref_api_host(&r), c->api_host);
        assert_string_equal(img_ref_object(&r), c->digest[0] ? c->digest : c->tag);
        /* The canonical form is a fixed point. */
        assert_int_equal(img_ref_parse(buf, &r2, &err), 0);
        /* Zero-padded fields: equal references are equal structs (fuzz_ref seed). */
        assert_memory_equal(&r, &r2, sizeof(r));
        assert_true(img_ref_format(&r2, buf2, sizeof(buf2)) > 0);
        assert_string_equal(buf, buf2);
    }
}

struct bad_case {
    const char *in, *why;
};

static char long_name[300];
static char long_tag[200];

static const struct bad_case bad_cases[] = {
    {"", "empty"},
    {"Busybox", "lowercase"},
    {"docker.io/Library/busybox", "lowercase"},
    {D64, "image ID"},
    {"busybox:", "tag must"},
    {"busybox:-bad", "tag must start"},
    {"busybox:a+b", "invalid character in tag"},
    {"busybox@sha256:abc", "lowercase hex"},
    {"busybox@md5:0123", "not supported"},
    {"busybox@sha256:"
     "0123456789ABCDEF0123456789abcdef0123456789abcdef0123456789abcdef",
     "lowercase hex"},
    {"a//b", "invalid repository path"},
    {"a/b_", "invalid repository path"},
    {"a/.b", "invalid repository path"},
    {"a/b___c", "invalid repository path"},
    {"host:port/x", "port"},
    {"host:123456/x", "port"},
    {"[::1/x", "IPv6"},
    {"[zz]:5000/x", "IPv6"},
    {"-bad.com/x", "registry host"},
    {"bad-.com/x", "registry host"},
    {"@sha256:" D64, "missing repository"},
    {"x/", "invalid repository path"},
    {long_name, "longer than"},
    {long_tag, "tag"},
    {"busybox latest", "invalid"},
};

static void test_ref_bad(void **state)
{
    (void)state;
    memset(long_name, 'a', 256);
    memcpy(long_name + 100, "/", 1);
    long_name[256] = '\0';
    snprintf(long_tag, sizeof(long_tag), "x:%0129d", 1);
    for (size_t i = 0; i < AG_ARRAY_LEN(bad_cases); i++) {
        struct img_ref r;
        struct ag_err err;
        ag_err_init(&err);
        int rc = img_ref_parse(bad_cases[i].in, &r, &err);
        if (rc != -EINVAL)
            fail_msg("case %zu \"%s\": rc %d (%s)", i, bad_cases[i].in, rc, r.path);
        if (strstr(err.msg, bad_cases[i].why) == NULL)
            fail_msg("case %zu \"%s\": message \"%s\" lacks \"%s\"", i, bad_cases[i].in, err.msg,
                     bad_cases[i].why);
        assert_string_equal(r.domain, "");
    }
}

static void test_ref_name_limit(void **state)
{
    char in[300];
    struct img_ref r;
    struct ag_err err;

    (void)state;
    /* docker.io/ + path of exactly 245 = 255 total: accepted. */
    memset(in, 'a', 245);
    in[3] = '/';
    in[245] = '\0';
    ag_err_init(&err);
    assert_int_equal(img_ref_parse(in, &r, &err), 0);
    in[245] = 'a';
    in[246] = '\0';
    assert_int_equal(img_ref_parse(in, &r, &err), -EINVAL);
}

static void test_digest(void **state)
{
    struct ag_err err;
    char d[IMG_DIGEST_MAX];
    char *ids[2];
    char chain[IMG_DIGEST_MAX];

    (void)state;
    ag_err_init(&err);
    img_digest_sha256("{}", 2, d);
    assert_string_equal(d,
                        "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a");
    assert_int_equal(img_digest_verify(d, "{}", 2, &err), 0);
    assert_int_equal(img_digest_verify(d, "{ }", 3, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "mismatch"));
    assert_int_equal(img_digest_validate("sha256:" D64, &err), 0);
    assert_int_equal(img_digest_validate("sha512:" D128, &err), 0);
    assert_int_equal(img_digest_validate("sha512:" D64, &err), -EINVAL);
    assert_int_equal(img_digest_validate("blake3:" D64, &err), -EINVAL);
    assert_int_equal(img_digest_validate("sha256:" D64 "0", &err), -EINVAL);
    /* sha512 verification of "abc" (FIPS 180-2 example). */
    assert_int_equal(img_digest_verify("sha512:ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9"
                                       "eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643c"
                                       "e80e2a9ac94fa54ca49f",
                                       "abc", 3, &err),
                     0);
    /* ChainID: one layer is its DiffID; two is sha256("a b"). */
    char id0[] = "sha256:" D64;
    char id1[] = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a";
    ids[0] = id0;
    ids[1] = id1;
    assert_int_equal(img_digest_chain_id(ids, 1, chain, &err), 0);
    assert_string_equal(chain, ids[0]);
    assert_int_equal(img_digest_chain_id(ids, 2, chain, &err), 0);
    char buf[200];
    snprintf(buf, sizeof(buf), "%s %s", ids[0], ids[1]);
    img_digest_sha256(buf, strlen(buf), d);
    assert_string_equal(chain, d);
    assert_int_equal(img_digest_chain_id(ids, 0, chain, &err), -EINVAL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ref_ok),
        cmocka_unit_test(test_ref_bad),
        cmocka_unit_test(test_ref_name_limit),
        cmocka_unit_test(test_digest),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
