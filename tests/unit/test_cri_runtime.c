/* Unit tests of the RuntimeService handlers through the real method table:
 * Version, Status (CNI readiness, verbose info), RuntimeConfig,
 * UpdateRuntimeConfig (persisted pod CIDR), UNIMPLEMENTED for the rest. */
#include "test_cri_harness.h"

#include <cjson/cJSON.h>
#include <sys/stat.h>

struct fixture {
    struct harness h;
    char dir[64];
    char cni[96];
    char root[96];
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    snprintf(f->dir, sizeof(f->dir), "/tmp/test_cri_runtime.XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->cni, sizeof(f->cni), "%s/cni", f->dir);
    snprintf(f->root, sizeof(f->root), "%s/root", f->dir);
    assert_int_equal(mkdir(f->cni, 0700), 0);
    h_init(&f->h, cri_methods, cri_method_count);
    assert_int_equal(ag_config_set(&f->h.cfg, "cni-conf-dir", f->cni, NULL), 0);
    assert_int_equal(ag_config_set(&f->h.cfg, "root", f->root, NULL), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    char cmd[128];
    h_fini(&f->h);
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
    assert_int_equal(system(cmd), 0);
    free(f);
    return 0;
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

static runtime_v1_StatusResponse status(struct harness *h, bool verbose)
{
    runtime_v1_StatusRequest req = {.verbose = verbose};
    runtime_v1_StatusResponse resp = runtime_v1_StatusResponse_init_zero;
    int32_t id = h_request(h, "/runtime.v1.RuntimeService/Status", runtime_v1_StatusRequest_fields,
                           &req, NULL);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, CRI_OK);
    h_decode(h_stream(h, id), 0, runtime_v1_StatusResponse_fields, &resp);
    return resp;
}

static void test_version(void **state)
{
    struct fixture *f = *state;
    runtime_v1_VersionRequest req = {.version = (char *)"0.1.0"};
    int32_t id = h_request(&f->h, "/runtime.v1.RuntimeService/Version",
                           runtime_v1_VersionRequest_fields, &req, NULL);
    h_pump(&f->h);
    runtime_v1_VersionResponse r = runtime_v1_VersionResponse_init_zero;
    h_decode(h_stream(&f->h, id), 0, runtime_v1_VersionResponse_fields, &r);
    assert_string_equal(r.version, "0.1.0");
    assert_string_equal(r.runtime_name, "picocri");
    assert_string_equal(r.runtime_version, PICOCRI_VERSION);
    assert_string_equal(r.runtime_api_version, "v1");
    pb_release(runtime_v1_VersionResponse_fields, &r);
}

static void test_status_network(void **state)
{
    struct fixture *f = *state;
    runtime_v1_StatusResponse r = status(&f->h, false);
    assert_int_equal(r.status->conditions_count, 2);
    assert_string_equal(r.status->conditions[0].type, "RuntimeReady");
    assert_true(r.status->conditions[0].status);
    assert_string_equal(r.status->conditions[1].type, "NetworkReady");
    assert_false(r.status->conditions[1].status);
    assert_string_equal(r.status->conditions[1].reason, "NetworkPluginNotReady");
    assert_non_null(strstr(r.status->conditions[1].message, f->cni));
    assert_int_equal(r.info_count, 0);
    pb_release(runtime_v1_StatusResponse_fields, &r);

    /* Not loadable: wrong JSON, wrong extension. */
    write_file(f->cni, "10-bad.conf", "{\"name\": \"x\"}");
    write_file(f->cni, "20-net.txt", "{\"type\": \"bridge\"}");
    r = status(&f->h, false);
    assert_false(r.status->conditions[1].status);
    pb_release(runtime_v1_StatusResponse_fields, &r);

    write_file(f->cni, "30-k.conflist",
               "{\"cniVersion\":\"1.0.0\",\"plugins\":[{\"type\":\"x\"}]}");
    r = status(&f->h, true);
    assert_true(r.status->conditions[1].status);
    assert_int_equal(r.info_count, 1);
    assert_string_equal(r.info[0].key, "config");
    cJSON *j = cJSON_Parse(r.info[0].value);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "cniConfDir")->valuestring, f->cni);
    assert_string_equal(cJSON_GetObjectItem(j, "cgroupDriver")->valuestring, "cgroupfs");
    cJSON_Delete(j);
    pb_release(runtime_v1_StatusResponse_fields, &r);
}

static void test_runtime_config(void **state)
{
    struct fixture *f = *state;
    runtime_v1_RuntimeConfigRequest req = {0};
    runtime_v1_RuntimeConfigResponse r = runtime_v1_RuntimeConfigResponse_init_zero;
    int32_t id = h_request(&f->h, "/runtime.v1.RuntimeService/RuntimeConfig",
                           runtime_v1_RuntimeConfigRequest_fields, &req, NULL);
    h_pump(&f->h);
    h_decode(h_stream(&f->h, id), 0, runtime_v1_RuntimeConfigResponse_fields, &r);
    assert_non_null(r.linux);
    assert_int_equal(r.linux->cgroup_driver, runtime_v1_CgroupDriver_CGROUPFS);
    pb_release(runtime_v1_RuntimeConfigResponse_fields, &r);

    struct cri_daemon d = {.cfg = &f->h.cfg};
    assert_int_equal(ag_config_set(&f->h.cfg, "cgroup-driver", "systemd", NULL), 0);
    cri_daemon_init(&d);
    assert_string_equal(d.cgroup_driver, "systemd");
    cri_daemon_fini(&d);
}

static void update_cidr(struct harness *h, const char *cidr, enum cri_code want)
{
    runtime_v1_NetworkConfig net = {.pod_cidr = (char *)cidr};
    runtime_v1_RuntimeConfig rc = {.network_config = &net};
    runtime_v1_UpdateRuntimeConfigRequest req = {.runtime_config = &rc};
    int32_t id = h_request(h, "/runtime.v1.RuntimeService/UpdateRuntimeConfig",
                           runtime_v1_UpdateRuntimeConfigRequest_fields, &req, NULL);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, want);
}

static void test_update_runtime_config(void **state)
{
    struct fixture *f = *state;
    char path[256], *data = NULL;
    size_t len;

    update_cidr(&f->h, "10.42.0.0/24,fd00::/64", CRI_OK);
    assert_string_equal(f->h.daemon.pod_cidr, "10.42.0.0/24,fd00::/64");
    snprintf(path, sizeof(path), "%s/meta/pod-cidr", f->root);
    assert_int_equal(ag_file_read(path, 1024, &data, &len), 0);
    assert_string_equal(data, "10.42.0.0/24,fd00::/64\n");
    free(data);
    update_cidr(&f->h, "10.42.0.0/24; rm -rf /", CRI_INVALID_ARGUMENT);
    update_cidr(&f->h, "", CRI_OK); /* empty: ignored */
    assert_string_equal(f->h.daemon.pod_cidr, "10.42.0.0/24,fd00::/64");

    runtime_v1_StatusResponse r = status(&f->h, true);
    assert_non_null(strstr(r.info[0].value, "10.42.0.0/24,fd00::/64"));
    pb_release(runtime_v1_StatusResponse_fields, &r);

    /* A restart restores it. */
    struct cri_daemon d = {.cfg = &f->h.cfg};
    cri_daemon_init(&d);
    assert_string_equal(d.pod_cidr, "10.42.0.0/24,fd00::/64");
    cri_daemon_fini(&d);
}

static void test_table_complete(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(cri_method_count, 41);
    for (size_t i = 0; i < cri_method_count; i++) {
        const struct cri_method *m = &cri_methods[i];
        assert_ptr_equal(cri_method_find(cri_methods, cri_method_count, m->path, strlen(m->path)),
                         m);
        assert_non_null(strstr(m->path, m->name));
        if (m->handler != cri_unimplemented)
            continue;
        /* An empty message decodes as any request type. */
        static const uint8_t empty[] = {0, 0, 0, 0, 0};
        int32_t id = h_request_raw(&f->h, m->path, empty, sizeof(empty), 0, true, NULL);
        h_pump(&f->h);
        char want[128];
        snprintf(want, sizeof(want), "picocri: %s is not implemented yet", m->name);
        assert_int_equal(h_stream(&f->h, id)->grpc_status, CRI_UNIMPLEMENTED);
        assert_string_equal(h_stream(&f->h, id)->grpc_message, want);
    }
    assert_null(
        cri_method_find(cri_methods, cri_method_count, "/runtime.v1.RuntimeService/version", 34));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_version, setup, teardown),
        cmocka_unit_test_setup_teardown(test_status_network, setup, teardown),
        cmocka_unit_test_setup_teardown(test_runtime_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_runtime_config, setup, teardown),
        cmocka_unit_test_setup_teardown(test_table_complete, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
