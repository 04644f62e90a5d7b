/* tests/unit: manifests, indexes, configs, media types and platform
 * selection. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "image/image.h"

#define H(c)                                                                                       \
#c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c #c
#define DA "sha256:" H(a)
#define DB "sha256:" H(b)
#define DC "sha256:" H(c)
#define DD "sha256:" H(d)
#define DE "sha256:" H(e)
#define DF "sha256:" H(f)

static struct ag_err err;

static int setup(void **state)
{
    (void)state;
    ag_err_init(&err);
    return 0;
}

#define ENTRY(dg, arch, extra)                                                                     \
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"digest\":\"" dg               \
    "\",\"size\":100,\"platform\":{\"architecture\":\"" arch "\",\"os\":\"linux\"" extra "}}"

static const char multi_index[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":[" ENTRY(DA, "amd64", "") "," ENTRY(DB, "arm", ",\"variant\":\"v6\"") "," ENTRY(
        DC, "arm",
        ",\"variant\":\"v7\"") "," ENTRY(DD, "arm64",
                                         ",\"variant\":\"v8\"") ","
                                                                "{\"mediaType\":\"application/"
                                                                "vnd.oci.image.manifest.v1+json\","
                                                                "\"digest\":\"" DE "\","
                                                                "\"size\":5,\"platform\":{"
                                                                "\"architecture\":\"unknown\","
                                                                "\"os\":\"unknown\"}}],"
                                                                "\"annotations\":{\"k\":\"v\"}}";

static void test_index_parse(void **state)
{
    _cleanup_(img_index_freep) struct img_index *idx = NULL;

    (void)state;
    assert_int_equal(
        img_index_parse(multi_index, strlen(multi_index), IMG_MT_OCI_INDEX, &idx, &err), 0);
    assert_int_equal(idx->manifests_count, 5);
    assert_string_equal(idx->media_type, IMG_MT_OCI_INDEX);
    assert_string_equal(idx->manifests[1].platform.variant, "v6");
    assert_string_equal(idx->manifests[0].digest, DA);
    assert_int_equal(idx->manifests[0].size, 100);
    assert_int_equal(idx->annotations_count, 1);
    assert_string_equal(idx->annotations[0].value, "v");
}

static int select_for(const char *json, const char *plat, unsigned flags)
{
    _cleanup_(img_index_freep) struct img_index *idx = NULL;
    struct img_platform p;

    assert_int_equal(img_index_parse(json, strlen(json), NULL, &idx, &err), 0);
    assert_int_equal(img_platform_parse(plat, &p, &err), 0);
    return img_index_select(idx, &p, flags, &err);
}

static void test_platform_select(void **state)
{
    static const char only_arm[] = "{\"schemaVersion\":2,\"manifests\":[" ENTRY(
        DA, "amd64", "") "," ENTRY(DB, "arm", ",\"variant\":\"v6\"") "," ENTRY(DC, "arm", "") "]}";
    static const char only_v5[] = "{\"schemaVersion\":2,\"manifests\":[" ENTRY(
        DA, "arm", ",\"variant\":\"v5\"") "," ENTRY(DB, "386", "") "]}";
    static const char docker_list[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" IMG_MT_DOCKER_LIST "\",\"manifests\":["
        "{\"mediaType\":\"" IMG_MT_DOCKER_MANIFEST "\",\"digest\":\"" DA "\",\"size\":1,"
        "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
        "{\"mediaType\":\"" IMG_MT_DOCKER_MANIFEST "\",\"digest\":\"" DB "\",\"size\":1,"
        "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\",\"features\":[\"sse4\"]}}]}";

    (void)state;
    /* Explicit platforms, whatever the host is. */
    assert_int_equal(select_for(multi_index, "linux/amd64", 0), 0);
    assert_int_equal(select_for(multi_index, "linux/arm64", 0), 3);
    assert_int_equal(select_for(multi_index, "linux/arm64/v8", 0), 3);
    assert_int_equal(select_for(multi_index, "linux/aarch64", 0), 3);
    assert_int_equal(select_for(multi_index, "linux/arm/v7", 0), 2);
    assert_int_equal(select_for(multi_index, "linux/armhf", 0), 2);
    assert_int_equal(select_for(multi_index, "linux/arm", 0), 2);
    assert_int_equal(select_for(multi_index, "linux/arm/v6", 0), 1);
    assert_int_equal(select_for(multi_index, "linux/armel", 0), 1);
    /* Fallbacks: arm64 -> arm/v7 (empty arm variant means v7); v7 -> v6. */
    assert_int_equal(select_for(only_arm, "linux/arm64", 0), 2);
    assert_int_equal(select_for(only_arm, "linux/arm64", IMG_PLATFORM_NO_ARM32), -ENOENT);
    assert_non_null(strstr(err.msg, "linux/arm64"));
    assert_non_null(strstr(err.msg, "linux/arm/v6"));
    assert_int_equal(select_for(only_v5, "linux/arm/v7", 0), 0);
    assert_int_equal(select_for(only_v5, "linux/arm/v7", IMG_PLATFORM_STRICT), -ENOENT);
    assert_int_equal(select_for(only_v5, "linux/amd64", 0), 1);
    assert_int_equal(select_for(only_v5, "linux/arm64/v8.2", 0), 0);
    assert_int_equal(select_for(only_arm, "linux/arm/v5", 0), -ENOENT);
    assert_int_equal(select_for(docker_list, "linux/arm64", 0), 0);
    assert_int_equal(select_for(docker_list, "linux/amd64", 0), 1);
    assert_int_equal(select_for(docker_list, "linux/ppc64le", 0), -ENOENT);
    /* attestation entries (unknown/unknown) never match */
    assert_int_equal(select_for(multi_index, "unknown/unknown", 0), -ENOENT);
}

static void test_platform_normalize(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"linux/x86_64", "linux/amd64"},
        {"linux/amd64/v1", "linux/amd64"},
        {"linux/i386", "linux/386"},
        {"linux/aarch64/8", "linux/arm64"},
        {"linux/arm64/v9.0", "linux/arm64/v9"},
        {"linux/armhf", "linux/arm/v7"},
        {"linux/armel", "linux/arm/v6"},
        {"linux/arm/7", "linux/arm/v7"},
        {"linux/arm/5", "linux/arm/v5"},
        {"macos/arm64", "darwin/arm64"},
        {"Linux/ARM64", "linux/arm64"},
    };
    char buf[64];
    struct img_platform p;

    (void)state;
    for (size_t i = 0; i < AG_ARRAY_LEN(cases); i++) {
        assert_int_equal(img_platform_parse(cases[i].in, &p, &err), 0);
        assert_true(img_platform_format(&p, buf, sizeof(buf)) > 0);
        assert_string_equal(buf, cases[i].out);
    }
    assert_int_equal(img_platform_parse("linux", &p, &err), -EINVAL);
    assert_int_equal(img_platform_parse("a/b/c/d", &p, &err), -EINVAL);
}

static void test_platform_host(void **state)
{
    static const struct {
        const char *machine, *cpuinfo, *want;
    } cases[] = {
        {"x86_64", NULL, "linux/amd64"},
        {"aarch64", "processor\t: 0\nCPU architecture: 8\n", "linux/arm64"},
        {"aarch64", NULL, "linux/arm64"},
        {"armv7l", "processor : 0\nmodel name : ARMv7 Processor rev 4 (v7l)\nCPU architecture: 7\n",
         "linux/arm/v7"},
        {"armv7l", NULL, "linux/arm/v7"},
        {"armv6l", NULL, "linux/arm/v6"},
        /* Raspberry Pi 1 / Zero: kernel says 7, the core is ARMv6. */
        {"armv7l", "model name\t: ARMv6-compatible processor rev 7 (v6l)\nCPU architecture: 7\n",
         "linux/arm/v6"},
        {"armv7l", "CPU architecture: 6TEJ\n", "linux/arm/v6"},
        {"armv5tel", "CPU architecture: 5TE\n", "linux/arm/v5"},
        {"armv8l", "CPU architecture: 8\n", "linux/arm/v8"},
        {"i686", NULL, "linux/386"},
    };
    struct img_platform p;
    char buf[64];

    (void)state;
    for (size_t i = 0; i < AG_ARRAY_LEN(cases); i++) {
        if (img_platform_from_machine(cases[i].machine, cases[i].cpuinfo, &p, &err) != 0)
            fail_msg("case %zu: %s", i, err.msg);
        assert_true(img_platform_format(&p, buf, sizeof(buf)) > 0);
        assert_string_equal(buf, cases[i].want);
    }
    assert_int_equal(img_platform_from_machine("vax", NULL, &p, &err), -ENOTSUP);
    /* The running machine is one of the supported ones. */
    assert_int_equal(img_platform_host(&p, &err), 0);
    assert_string_equal(p.os, "linux");
#if defined(__x86_64__)
    assert_string_equal(p.architecture, "amd64");
#endif
}

static const char oci_manifest[] =
    "{\"schemaVersion\":2,\"mediaType\":\"" IMG_MT_OCI_MANIFEST "\","
    "\"config\":{\"mediaType\":\"" IMG_MT_OCI_CONFIG "\",\"digest\":\"" DA "\",\"size\":7023},"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"digest\":\"" DB
    "\",\"size\":32654,\"annotations\":{\"containerd.io/snapshot/stargz/toc.digest\":\"" DC "\"}},"
    "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"digest\":\"" DC
    "\",\"size\":0,\"urls\":[\"https://example.com/x\"]}],"
    "\"subject\":{\"mediaType\":\"" IMG_MT_OCI_MANIFEST "\",\"digest\":\"" DD "\",\"size\":1},"
    "\"annotations\":{\"a\":\"b\"}}";

static void test_manifest_parse(void **state)
{
    _cleanup_(img_manifest_freep) struct img_manifest *m = NULL;
    enum img_doc_kind kind;

    (void)state;
    assert_int_equal(img_manifest_parse(oci_manifest, strlen(oci_manifest),
                                        IMG_MT_OCI_MANIFEST "; charset=utf-8", &m, &err),
                     0);
    assert_string_equal(m->config.digest, DA);
    assert_int_equal(m->config.size, 7023);
    assert_int_equal(m->layers_count, 2);
    assert_int_equal(m->layers[1].urls_count, 1);
    assert_string_equal(m->layers[1].urls[0], "https://example.com/x");
    assert_int_equal(m->layers[0].annotations_count, 1);
    assert_true(m->has_subject);
    assert_string_equal(m->subject.digest, DD);
    assert_int_equal(img_doc_detect(oci_manifest, strlen(oci_manifest), NULL, &kind, &err), 0);
    assert_int_equal(kind, IMG_DOC_MANIFEST);
    assert_int_equal(img_doc_detect(multi_index, strlen(multi_index), NULL, &kind, &err), 0);
    assert_int_equal(kind, IMG_DOC_INDEX);
    /* An index handed to the manifest parser and vice versa. */
    img_manifest_free(m);
    m = NULL;
    assert_int_equal(img_manifest_parse(multi_index, strlen(multi_index), NULL, &m, &err), -EINVAL);
    assert_null(m);
    struct img_index *idx = NULL;
    assert_int_equal(img_index_parse(oci_manifest, strlen(oci_manifest), NULL, &idx, &err),
                     -EINVAL);
    assert_null(idx);
}

static void test_docker_manifest(void **state)
{
    static const char docker[] =
        "{\"schemaVersion\":2,\"mediaType\":\"" IMG_MT_DOCKER_MANIFEST "\","
        "\"config\":{\"mediaType\":\"" IMG_MT_DOCKER_CONFIG "\",\"size\":1469,\"digest\":\"" DA
        "\"},"
        "\"layers\":[{\"mediaType\":\"application/vnd.docker.image.rootfs.diff.tar.gzip\","
        "\"size\":2479,\"digest\":\"" DB "\"}]}";
    _cleanup_(img_manifest_freep) struct img_manifest *m = NULL;
    enum img_compression comp;
    bool enc;

    (void)state;
    assert_int_equal(img_manifest_parse(docker, strlen(docker), IMG_MT_DOCKER_MANIFEST, &m, &err),
                     0);
    assert_string_equal(m->media_type, IMG_MT_DOCKER_MANIFEST);
    assert_int_equal(img_media_type_layer(m->layers[0].media_type, &comp, &enc, &err), 0);
    assert_int_equal(comp, IMG_COMP_GZIP);
    assert_false(enc);
    assert_int_equal(img_media_type_layer("application/vnd.oci.image.layer.v1.tar+zstd+encrypted",
                                          &comp, &enc, &err),
                     0);
    assert_int_equal(comp, IMG_COMP_ZSTD);
    assert_true(enc);
    assert_int_equal(
        img_media_type_layer("application/vnd.oci.image.layer.v1.tar", &comp, &enc, &err), 0);
    assert_int_equal(comp, IMG_COMP_NONE);
    assert_int_equal(
        img_media_type_layer("application/vnd.oci.image.layer.v1.tar+bzip2", &comp, &enc, &err),
        -ENOTSUP);
    assert_int_equal(img_media_type_kind(IMG_MT_DOCKER_LIST), IMG_DOC_INDEX);
    assert_int_equal(img_media_type_kind("application/vnd.docker.distribution.manifest.v1+json"),
                     IMG_DOC_UNKNOWN);
}

struct bad_doc {
    const char *json, *ct, *why;
    int rc;
};

static const struct bad_doc bad_manifests[] = {
    {"{\"schemaVersion\":1,\"name\":\"x\",\"fsLayers\":[]}", NULL, "schema 1", -ENOTSUP},
    {"{\"schemaVersion\":2}", "application/vnd.docker.distribution.manifest.v1+prettyjws",
     "schema 1", -ENOTSUP},
    {"{\"schemaVersion\":2,\"mediaType\":\"application/x-other\",\"config\":{}}", NULL,
     "unsupported manifest media type", -ENOTSUP},
    {"{\"schemaVersion\":3,\"config\":{}}", NULL, "schemaVersion", -ENOTSUP},
    {"{\"schemaVersion\":2,\"mediaType\":\"" IMG_MT_OCI_MANIFEST "\",\"config\":{}}",
     IMG_MT_DOCKER_MANIFEST, "disagrees", -EINVAL},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"sha256:abc\",\"size\":1}}",
     NULL, "digest", -EINVAL},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":-1}}",
     NULL, "non-negative", -EINVAL},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":1.5}}",
     NULL, "non-negative integer", -EINVAL},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" DA "\"}}", NULL,
     "missing \"size\"", -EINVAL},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":1},"
     "\"layers\":[{\"mediaType\":\"x\",\"digest\":\"md5:00\",\"size\":1}]}",
     NULL, "layers[0]", -EINVAL},
    {"{\"schemaVersion\":2,\"config\":{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":1},"
     "\"layers\":{}}",
     NULL, "must be an array", -EINVAL},
    {"[1,2]", NULL, "not a JSON object", -EINVAL},
    {"{\"schemaVersion\":2,", NULL, "invalid JSON", -EINVAL},
    {"{\"foo\":1}", NULL, "schemaVersion", -EINVAL},
};

static void test_manifest_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < AG_ARRAY_LEN(bad_manifests); i++) {
        const struct bad_doc *b = &bad_manifests[i];
        struct img_manifest *m = NULL;
        int rc = img_manifest_parse(b->json, strlen(b->json), b->ct, &m, &err);
        if (rc != b->rc || strstr(err.msg, b->why) == NULL)
            fail_msg("case %zu: rc %d msg \"%s\" (want %d \"%s\")", i, rc, err.msg, b->rc, b->why);
        assert_null(m);
    }
}

static void test_bounds(void **state)
{
    struct img_manifest *m = NULL;
    struct img_index *idx = NULL;
    size_t n = IMG_MANIFEST_MAX_BYTES + 1;
    char *big = malloc(n + 1);
    char *p;

    (void)state;
    memset(big, ' ', n);
    big[0] = '{';
    big[n - 1] = '}';
    big[n] = '\0';
    assert_int_equal(img_manifest_parse(big, n, NULL, &m, &err), -EFBIG);
    free(big);
    /* Too many index entries. */
    size_t cap = (IMG_MANIFEST_MAX_ENTRIES + 2) * 200 + 100;
    big = malloc(cap);
    p = big + sprintf(big, "{\"schemaVersion\":2,\"manifests\":[");
    for (int i = 0; i < IMG_MANIFEST_MAX_ENTRIES + 1; i++)
        p += sprintf(p, "%s{\"mediaType\":\"x\",\"digest\":\"" DA "\",\"size\":1}", i ? "," : "");
    strcpy(p, "]}");
    assert_int_equal(img_index_parse(big, strlen(big), NULL, &idx, &err), -EFBIG);
    assert_non_null(strstr(err.msg, "more than"));
    free(big);
}

static const char config_json[] =
    "{\"created\":\"2024-01-01T00:00:00Z\",\"architecture\":\"arm\",\"variant\":\"v7\","
    "\"os\":\"linux\",\"config\":{\"User\":\"1000:1000\",\"Env\":[\"PATH=/bin\",\"A=b=c\"],"
    "\"Entrypoint\":[\"/bin/sh\",\"-c\"],\"Cmd\":null,\"WorkingDir\":\"/srv\","
    "\"Labels\":{\"l1\":\"v1\"},\"StopSignal\":\"SIGRTMIN+3\",\"ExposedPorts\":{\"80/tcp\":{},"
    "\"53/udp\":{}},\"Volumes\":{\"/data\":{}},\"ArgsEscaped\":true,\"Hostname\":\"\"},"
    "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[\"" DA "\",\"" DB "\"]},"
    "\"history\":[{\"created_by\":\"ADD x\"},{\"created_by\":\"ENV\",\"empty_layer\":true},"
    "{\"created_by\":\"RUN y\",\"comment\":\"c\"}],\"container_config\":{\"x\":1}}";

static void test_config_parse(void **state)
{
    _cleanup_(img_config_freep) struct img_config *c = NULL;
    _cleanup_(img_manifest_freep) struct img_manifest *m = NULL;

    (void)state;
    assert_int_equal(img_config_parse(config_json, strlen(config_json), &c, &err), 0);
    assert_string_equal(c->platform.architecture, "arm");
    assert_string_equal(c->platform.variant, "v7");
    assert_string_equal(c->user, "1000:1000");
    assert_int_equal(c->env_count, 2);
    assert_string_equal(c->env[1], "A=b=c");
    assert_true(c->has_entrypoint);
    assert_int_equal(c->entrypoint_count, 2);
    assert_false(c->has_cmd);
    assert_null(c->cmd);
    assert_string_equal(c->working_dir, "/srv");
    assert_int_equal(c->labels_count, 1);
    assert_string_equal(c->stop_signal, "SIGRTMIN+3");
    assert_int_equal(c->exposed_ports_count, 2);
    assert_string_equal(c->exposed_ports[1], "53/udp");
    assert_int_equal(c->volumes_count, 1);
    assert_int_equal(c->diff_ids_count, 2);
    assert_string_equal(c->diff_ids[1], DB);
    assert_int_equal(c->history_count, 3);
    assert_true(c->history[1].empty_layer);
    assert_string_equal(c->history[2].comment, "c");
    assert_int_equal(img_manifest_parse(oci_manifest, strlen(oci_manifest), NULL, &m, &err), 0);
    assert_int_equal(img_manifest_check_config(m, c, &err), 0);
    c->diff_ids_count = 1; /* count is only read by the check; free uses the array */
    assert_int_equal(img_manifest_check_config(m, c, &err), -EINVAL);
    c->diff_ids_count = 2;
}

static const struct bad_doc bad_configs[] = {
    {"{\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}", NULL, "architecture",
     -EINVAL},
    {"{\"architecture\":\"amd64\",\"os\":\"linux\"}", NULL, "rootfs", -EINVAL},
    {"{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"x\",\"diff_ids\":[]}}",
     NULL, "layers", -EINVAL},
    {"{\"architecture\":\"amd64\",\"os\":\"linux\",\"rootfs\":{\"type\":\"layers\","
     "\"diff_ids\":[\"sha256:x\"]}}",
     NULL, "diff_ids[0]", -EINVAL},
    {"{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Env\":[1]},"
     "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}",
     NULL, "Env", -EINVAL},
    {"{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"Labels\":{\"a\":1}},"
     "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}",
     NULL, "Labels", -EINVAL},
    {"{\"architecture\":\"amd64\",\"os\":\"linux\",\"history\":[{\"empty_layer\":1}],"
     "\"rootfs\":{\"type\":\"layers\",\"diff_ids\":[]}}",
     NULL, "empty_layer", -EINVAL},
};

static void test_config_bad(void **state)
{
    (void)state;
    for (size_t i = 0; i < AG_ARRAY_LEN(bad_configs); i++) {
        const struct bad_doc *b = &bad_configs[i];
        struct img_config *c = NULL;
        int rc = img_config_parse(b->json, strlen(b->json), &c, &err);
        if (rc != b->rc || strstr(err.msg, b->why) == NULL)
            fail_msg("case %zu: rc %d msg \"%s\" (want %d \"%s\")", i, rc, err.msg, b->rc, b->why);
        assert_null(c);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup(test_index_parse, setup),
        cmocka_unit_test_setup(test_platform_select, setup),
        cmocka_unit_test_setup(test_platform_normalize, setup),
        cmocka_unit_test_setup(test_platform_host, setup),
        cmocka_unit_test_setup(test_manifest_parse, setup),
        cmocka_unit_test_setup(test_docker_manifest, setup),
        cmocka_unit_test_setup(test_manifest_bad, setup),
        cmocka_unit_test_setup(test_bounds, setup),
        cmocka_unit_test_setup(test_config_parse, setup),
        cmocka_unit_test_setup(test_config_bad, setup),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
