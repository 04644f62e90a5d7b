/* Unit tests for the image service (agent/image/img_service*.c,
 * img_pull*.c) without a registry: platform choice of an index for arm64
 * and armhf hosts, the record built for a pulled image (id, names, ChainIDs
 * and layer directories, uid/username), and the service on a real libuv
 * loop with a store: absent image status, empty list, fsinfo, removal of
 * an absent image, removal of a stored image deleting its unused layer
 * directory, a bad reference, and a clean close. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pb_decode.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/img_service_int.h"

static const char INDEX[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.index.v1+json\","
    "\"manifests\":["
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"size\":1,"
    "\"digest\":\"sha256:1111111111111111111111111111111111111111111111111111111111111111\","
    "\"platform\":{\"architecture\":\"amd64\",\"os\":\"linux\"}},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"size\":1,"
    "\"digest\":\"sha256:2222222222222222222222222222222222222222222222222222222222222222\","
    "\"platform\":{\"architecture\":\"arm64\",\"os\":\"linux\",\"variant\":\"v8\"}},"
    "{\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\",\"size\":1,"
    "\"digest\":\"sha256:3333333333333333333333333333333333333333333333333333333333333333\","
    "\"platform\":{\"architecture\":\"arm\",\"os\":\"linux\",\"variant\":\"v7\"}}]}";

static int select_for(const char *machine, const char *cpuinfo)
{
    struct img_index *idx = NULL;
    struct img_platform p;
    struct ag_err e;
    int sel;

    ag_err_init(&e);
    assert_int_equal(img_platform_from_machine(machine, cpuinfo, &p, &e), 0);
    assert_int_equal(img_index_parse(INDEX, strlen(INDEX), NULL, &idx, &e), 0);
    sel = img_index_select(idx, &p, 0, &e);
    img_index_free(idx);
    return sel;
}

static void test_platform_choice(void **state)
{
    (void)state;
    assert_int_equal(select_for("x86_64", NULL), 0);
    assert_int_equal(select_for("aarch64", NULL), 1);
    assert_int_equal(select_for("armv7l", "CPU architecture: 7\n"), 2);
}

static const char MANIFEST[] =
    "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest.v1+json\","
    "\"config\":{\"mediaType\":\"application/vnd.oci.image.config.v1+json\",\"size\":100,"
    "\"digest\":\"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"},"
    "\"layers\":[{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+gzip\",\"size\":10,"
    "\"digest\":\"sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb\"},"
    "{\"mediaType\":\"application/vnd.oci.image.layer.v1.tar+zstd\",\"size\":20,"
    "\"digest\":\"sha256:cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc\"}]}";

static char *config_json(const char *user)
{
    char *s = NULL;

    assert_true(asprintf(&s,
                         "{\"architecture\":\"amd64\",\"os\":\"linux\",\"config\":{\"User\":\"%s\"},"
                         "\"created\":\"2024-01-02T03:04:05Z\",\"rootfs\":{\"type\":\"layers\","
                         "\"diff_ids\":[\"sha256:%064d\",\"sha256:%064d\"]}}",
                         user, 1, 2) > 0);
    return s;
}

struct env {
    char dir[64];
    uv_loop_t loop;
    struct st_store *st;
    struct img_svc *svc;
    int closed;
};

static void on_closed(void *arg) { ((struct env *)arg)->closed++; }

static int env_setup(void **state)
{
    struct env *v = calloc(1, sizeof(*v));
    struct ag_err e;

    ag_err_init(&e);
    strcpy(v->dir, "/tmp/test_img_service.XXXXXX");
    assert_non_null(mkdtemp(v->dir));
    assert_int_equal(uv_loop_init(&v->loop), 0);
    assert_int_equal(st_store_open(v->dir, &v->loop, &v->st, &e), 0);
    struct img_svc_opts o = {.loop = &v->loop, .store = v->st, .root = v->dir,
                             .platform = "linux/amd64"};
    assert_int_equal(img_svc_new(&o, &v->svc, &e), 0);
    *state = v;
    return 0;
}

static int env_teardown(void **state)
{
    struct env *v = *state;

    img_svc_close(v->svc, on_closed, v);
    uv_run(&v->loop, UV_RUN_DEFAULT);
    assert_int_equal(v->closed, 1);
    assert_int_equal(st_store_pending(v->st), 0);
    st_store_close(v->st);
    assert_int_equal(uv_loop_close(&v->loop), 0);
    (void)img_svc__rm_tree(v->dir);
    free(v);
    return 0;
}

static void build(struct env *v, const char *user, picocri_store_ImageRecord *rec)
{
    struct img_manifest *m = NULL;
    struct img_config *c = NULL;
    struct img_ref ref;
    struct ag_err e;
    char *cj = config_json(user);

    ag_err_init(&e);
    assert_int_equal(img_ref_parse("reg.example:5000/app:1", &ref, &e), 0);
    assert_int_equal(img_manifest_parse(MANIFEST, strlen(MANIFEST), NULL, &m, &e), 0);
    assert_int_equal(img_config_parse(cj, strlen(cj), &c, &e), 0);
    struct img_pull_info pi = {
        .ref = &ref, .man = m, .cfg = c, .manifest_digest = "sha256:" "dddddddddddddddd"
        "dddddddddddddddddddddddddddddddddddddddddddddddd", .manifest_media_type =
        IMG_MT_OCI_MANIFEST, .manifest_size = 500, .tag = "reg.example:5000/app:1",
        .repo_digest = "reg.example:5000/app@sha256:dddddddddddddddddddddddddddddddddddddddd"
        "dddddddddddddddddddddddd", .layers_dir = img_svc_layers_dir(v->svc), .source = "test",
    };
    assert_int_equal(img_pull__build_record(v->svc, &pi, rec, &e), 0);
    img_manifest_free(m);
    img_config_free(c);
    free(cj);
}

static void test_record(void **state)
{
    struct env *v = *state;
    picocri_store_ImageRecord rec;
    char chain[IMG_DIGEST_MAX], dir[2048];
    char *ids[2] = {(char *)"sha256:0000000000000000000000000000000000000000000000000000000000000001",
                    (char *)"sha256:0000000000000000000000000000000000000000000000000000000000000002"};
    struct ag_err e;

    ag_err_init(&e);
    build(v, "1000:1000", &rec);
    assert_string_equal(rec.id, "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_int_equal(rec.repo_tags_count, 1);
    assert_int_equal(rec.layers_count, 2);
    assert_int_equal(img_digest_chain_id(ids, 2, chain, &e), 0);
    assert_string_equal(rec.layers[1].chain_id, chain);
    snprintf(dir, sizeof(dir), "%s/%s", img_svc_layers_dir(v->svc), chain + 7);
    assert_string_equal(rec.layers[1].unpacked_dir, dir);
    assert_int_equal(rec.size, 10 + 20 + 100 + 500);
    assert_non_null(rec.uid);
    assert_int_equal(rec.uid->value, 1000);
    assert_null(rec.username);
    assert_true(rec.created_at_ns > 0);
    st_record_release(ST_KIND_IMAGE, &rec);
    build(v, "app:grp", &rec);
    assert_null(rec.uid);
    assert_string_equal(rec.username, "app");
    st_record_release(ST_KIND_IMAGE, &rec);
}

static int done_count;
static int last_code;
static void on_done(void *arg, const struct ag_err *err)
{
    (void)arg;
    done_count++;
    last_code = err ? err->code : 0;
}
static uint64_t fs_inodes;
static void on_fs(void *arg, const struct ag_err *err, const struct img_fs_usage *u)
{
    (void)arg;
    assert_int_equal(err->code, 0);
    fs_inodes = u->inodes;
    done_count++;
}

static void test_records_on_loop(void **state)
{
    struct env *v = *state;
    runtime_v1_ImageStatusResponse st = runtime_v1_ImageStatusResponse_init_zero;
    runtime_v1_ListImagesResponse ls = runtime_v1_ListImagesResponse_init_zero;
    picocri_store_ImageRecord rec;
    struct ag_err e;
    char layer[2048];

    ag_err_init(&e);
    assert_int_equal(img_svc_status(v->svc, "busybox", true, &st, &e), 0);
    assert_null(st.image);
    assert_int_equal(img_svc_list(v->svc, NULL, &ls, &e), 0);
    assert_int_equal(ls.images_count, 0);
    done_count = 0;
    assert_int_equal(img_svc_remove(v->svc, "busybox", on_done, NULL, &e), 0);
    assert_int_equal(done_count, 1);
    assert_int_equal(img_svc_pull(v->svc, "Bad Ref", NULL, NULL, NULL, NULL, NULL, &e), -EINVAL);
    assert_non_null(strstr(e.msg, "invalid image reference"));

    /* A stored image with one unpacked layer directory. */
    build(v, "", &rec);
    snprintf(layer, sizeof(layer), "%s", rec.layers[0].unpacked_dir);
    assert_int_equal(mkdir(layer, 0700), 0);
    assert_int_equal(st_image_put(v->st, v->svc->ns, &rec, NULL, NULL, &e), 0);
    st_record_release(ST_KIND_IMAGE, &rec);
    uv_run(&v->loop, UV_RUN_DEFAULT);
    assert_int_equal(img_svc_status(v->svc, "reg.example:5000/app:1", true, &st, &e), 0);
    assert_non_null(st.image);
    assert_int_equal(st.info_count, 1);
    pb_release(runtime_v1_ImageStatusResponse_fields, &st);
    assert_int_equal(img_svc_fsinfo(v->svc, on_fs, NULL, &e), 0);
    uv_run(&v->loop, UV_RUN_DEFAULT);
    assert_int_equal(done_count, 2);
    assert_true(fs_inodes >= 3);
    assert_int_equal(img_svc_remove(v->svc, "sha256:aaaa", on_done, NULL, &e), 0);
    uv_run(&v->loop, UV_RUN_DEFAULT);
    assert_int_equal(done_count, 3);
    assert_int_equal(last_code, 0);
    assert_int_equal(access(layer, F_OK), -1);
    assert_int_equal(st_count(v->st, v->svc->ns, ST_KIND_IMAGE), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_platform_choice),
        cmocka_unit_test_setup_teardown(test_record, env_setup, env_teardown),
        cmocka_unit_test_setup_teardown(test_records_on_loop, env_setup, env_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
