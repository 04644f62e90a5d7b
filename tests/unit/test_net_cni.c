/* Unit tests for agent/net: configuration lists, plugin stdin, results, and
 * the plugin-chain runner driven with small plugin scripts in a temp dir
 * (no root, no network namespace: the scripts only read their input). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "net/net.h"

static const char conflist[] =
    "{\"cniVersion\":\"1.0.0\",\"cniVersions\":[\"0.4.0\",\"1.1.0\"],\"name\":\"pods\","
    "\"plugins\":[{\"type\":\"bridge\",\"bridge\":\"cni0\",\"ipam\":{\"type\":\"host-local\"}},"
    "{\"type\":\"portmap\",\"capabilities\":{\"portMappings\":true}}]}";

static void test_conf_parse_list(void **state)
{
    struct net_cni_conf *c = NULL;
    struct ag_err err;

    ag_err_init(&err);
    assert_int_equal(net_cni_conf_parse(conflist, strlen(conflist), "10-pods.conflist", &c, &err),
                     0);
    assert_string_equal(c->name, "pods");
    assert_string_equal(c->cni_version, "1.1.0"); /* highest of cniVersions */
    assert_int_equal(cJSON_GetArraySize(c->plugins), 2);
    net_cni_conf_free(c);
}

static void test_conf_parse_single(void **state)
{
    static const char conf[] = "{\"cniVersion\":\"0.3.1\",\"name\":\"lo\",\"type\":\"loopback\"}";
    struct net_cni_conf *c = NULL;
    struct ag_err err;

    ag_err_init(&err);
    assert_int_equal(net_cni_conf_parse(conf, strlen(conf), "99-lo.conf", &c, &err), 0);
    assert_int_equal(cJSON_GetArraySize(c->plugins), 1);
    assert_string_equal(c->cni_version, "0.3.1");
    net_cni_conf_free(c);
}

static void test_conf_parse_bad(void **state)
{
    static const char *const bad[] = {
        "", "[]", "{\"name\":\"x\",\"plugins\":[{\"type\":\"b\"}]}", /* no version */
        "{\"cniVersion\":\"1.0.0\",\"name\":\"-x\",\"plugins\":[{\"type\":\"b\"}]}",
        "{\"cniVersion\":\"1.0.0\",\"name\":\"x\",\"plugins\":[]}",
        "{\"cniVersion\":\"1.0.0\",\"name\":\"x\",\"plugins\":[{\"type\":\"../b\"}]}",
        "{\"cniVersion\":\"1.0.0\",\"name\":\"x\",\"plugins\":[{\"notype\":1}]}",
        "{\"cniVersion\":\"1.0.0\",\"name\":\"x\"}",
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        struct net_cni_conf *c = NULL;
        struct ag_err err;
        ag_err_init(&err);
        assert_int_equal(net_cni_conf_parse(bad[i], strlen(bad[i]), "x.conflist", &c, &err),
                         -EINVAL);
        assert_null(c);
        assert_true(err.msg[0] != '\0');
    }
}

static void write_file(const char *path, const char *data, int mode)
{
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs(data, f);
    fclose(f);
    chmod(path, (mode_t)mode);
}

static void test_conf_load_dir(void **state)
{
    char dir[] = "/tmp/picocri-cni-XXXXXX", path[256];
    struct net_cni_conf *c = NULL;
    struct ag_err err;

    assert_non_null(mkdtemp(dir));
    ag_err_init(&err);
    assert_int_equal(net_cni_conf_load_dir(dir, &c, &err), -ENOENT);
    snprintf(path, sizeof(path), "%s/05-broken.conflist", dir);
    write_file(path, "{not json", 0644);
    snprintf(path, sizeof(path), "%s/10-pods.conflist", dir);
    write_file(path, conflist, 0644);
    snprintf(path, sizeof(path), "%s/20-other.conf", dir);
    write_file(path, "{\"cniVersion\":\"0.3.1\",\"name\":\"other\",\"type\":\"bridge\"}", 0644);
    assert_int_equal(net_cni_conf_load_dir(dir, &c, &err), 0);
    assert_string_equal(c->name, "pods"); /* first valid by name */
    net_cni_conf_free(c);
    snprintf(path, sizeof(path), "rm -rf %s", dir);
    assert_int_equal(system(path), 0);
}

static void test_plugin_stdin(void **state)
{
    struct net_cni_conf *c = NULL;
    struct ag_err err;
    struct net_port_mapping pm = {.host_port = 8080, .container_port = 80, .protocol = "tcp"};
    struct net_attach att = {.container_id = "abc", .netns = "/run/netns/x", .ifname = "eth0",
                             .ports = &pm, .port_count = 1};
    char *s = NULL;

    ag_err_init(&err);
    assert_int_equal(net_cni_conf_parse(conflist, strlen(conflist), "a.conflist", &c, &err), 0);
    assert_int_equal(net_cni_plugin_stdin(c, 1, "ADD", &att, NULL, &s, &err), 0);
    cJSON *j = cJSON_Parse(s);
    assert_non_null(j);
    assert_string_equal(cJSON_GetObjectItem(j, "name")->valuestring, "pods");
    assert_string_equal(cJSON_GetObjectItem(j, "cniVersion")->valuestring, "1.1.0");
    assert_null(cJSON_GetObjectItem(j, "capabilities"));
    cJSON *pms = cJSON_GetObjectItem(cJSON_GetObjectItem(j, "runtimeConfig"), "portMappings");
    assert_int_equal(cJSON_GetArraySize(pms), 1);
    assert_int_equal(cJSON_GetObjectItem(cJSON_GetArrayItem(pms, 0), "hostPort")->valueint,
                     8080);
    cJSON_Delete(j);
    free(s);
    /* The bridge declares no capability: no runtimeConfig. */
    assert_int_equal(net_cni_plugin_stdin(c, 0, "ADD", &att, NULL, &s, &err), 0);
    assert_null(strstr(s, "runtimeConfig"));
    free(s);
    assert_int_equal(net_cni_plugin_stdin(c, 2, "ADD", &att, NULL, &s, &err), -EINVAL);
    net_cni_conf_free(c);
}

static void test_args(void **state)
{
    struct net_attach att = {.container_id = "id1", .pod_namespace = "default",
                             .pod_name = "web", .pod_uid = "u-1"};
    char buf[256], small[10];

    assert_int_equal(net_cni_args_format(&att, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "IgnoreUnknown=1;K8S_POD_NAMESPACE=default;K8S_POD_NAME=web;"
                             "K8S_POD_INFRA_CONTAINER_ID=id1;K8S_POD_UID=u-1");
    assert_int_equal(net_cni_args_format(&att, small, sizeof(small)), -ENAMETOOLONG);
}

static void test_result(void **state)
{
    static const char res[] =
        "{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"cni0\"},{\"name\":\"veth1\"},"
        "{\"name\":\"eth0\",\"sandbox\":\"/run/netns/x\"}],\"ips\":[{\"address\":\"10.1.0.1/24\","
        "\"interface\":0},{\"address\":\"10.88.0.5/16\",\"interface\":2},"
        "{\"address\":\"fd00::5/64\",\"interface\":2}]}";
    static const char legacy[] = "{\"cniVersion\":\"0.2.0\",\"ip4\":{\"ip\":\"10.0.0.9/8\"}}";
    static const char failure[] = "{\"cniVersion\":\"1.0.0\",\"code\":7,\"msg\":\"bad\","
                                  "\"details\":\"no subnet\"}";
    cJSON *r = NULL;
    char ips[4][64];
    struct ag_err err;

    ag_err_init(&err);
    assert_int_equal(net_cni_result_parse(res, strlen(res), 0, "bridge", &r, &err), 0);
    assert_int_equal(net_cni_result_ips(r, "eth0", ips, 4), 2);
    assert_string_equal(ips[0], "10.88.0.5");
    assert_string_equal(ips[1], "fd00::5");
    cJSON_Delete(r);
    assert_int_equal(net_cni_result_parse(legacy, strlen(legacy), 0, "x", &r, &err), 0);
    assert_int_equal(net_cni_result_ips(r, "eth0", ips, 4), 1);
    assert_string_equal(ips[0], "10.0.0.9");
    cJSON_Delete(r);
    assert_int_equal(net_cni_result_parse(failure, strlen(failure), 1, "bridge", &r, &err), -EIO);
    assert_non_null(strstr(err.msg, "code 7"));
    assert_non_null(strstr(err.msg, "no subnet"));
    assert_int_equal(net_cni_result_parse("zz", 2, 0, "bridge", &r, &err), -EPROTO);
}

/* ---- the runner, with script plugins --------------------------------------- */
struct run_result {
    int calls;
    int status;
    char json[4096];
    char msg[AG_ERR_MSG_LEN];
};

static void on_done(void *arg, int status, const char *json, const struct ag_err *err)
{
    struct run_result *r = arg;

    r->calls++;
    r->status = status;
    snprintf(r->json, sizeof(r->json), "%s", json ? json : "");
    snprintf(r->msg, sizeof(r->msg), "%s", err->msg);
}

static char plugdir[64];

static void plugin(const char *name, const char *body)
{
    char path[256], script[2048];
    snprintf(path, sizeof(path), "%s/%s", plugdir, name);
    snprintf(script, sizeof(script), "#!/bin/sh\n%s\n", body);
    write_file(path, script, 0755);
}

static int setup_plugins(void **state)
{
    snprintf(plugdir, sizeof(plugdir), "/tmp/picocri-cnibin-XXXXXX");
    if (mkdtemp(plugdir) == NULL)
        return -1;
    /* A main plugin that returns an address and logs what it was given. */
    plugin("good", "cat > \"$(dirname \"$0\")/stdin.$CNI_COMMAND\"\n"
                   "echo \"$CNI_COMMAND $CNI_CONTAINERID $CNI_IFNAME $CNI_ARGS\" >> "
                   "\"$(dirname \"$0\")/calls\"\n"
                   "[ \"$CNI_COMMAND\" = DEL ] && exit 0\n"
                   "echo '{\"cniVersion\":\"1.0.0\",\"interfaces\":[{\"name\":\"eth0\","
                   "\"sandbox\":\"x\"}],\"ips\":[{\"address\":\"10.9.0.2/24\",\"interface\":0}]}'");
    /* A chained plugin that passes prevResult through. */
    plugin("chain", "echo \"chain $CNI_COMMAND\" >> \"$(dirname \"$0\")/calls\"\n"
                    "in=$(cat); [ \"$CNI_COMMAND\" = DEL ] && exit 0\n"
                    "echo \"$in\" | sed 's/.*\"prevResult\"://; s/}$//'");
    plugin("fail", "cat >/dev/null; echo '{\"code\":11,\"msg\":\"try later\"}'; exit 1");
    plugin("hang", "exec sleep 30");
    return 0;
}

static int teardown_plugins(void **state)
{
    char cmd[300];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", plugdir);
    return system(cmd) == 0 ? 0 : -1;
}

static struct net_cni_conf *conf_of(const char *types_json)
{
    char buf[1024];
    struct net_cni_conf *c = NULL;
    struct ag_err err;

    snprintf(buf, sizeof(buf), "{\"cniVersion\":\"1.0.0\",\"name\":\"t\",\"plugins\":%s}",
             types_json);
    ag_err_init(&err);
    assert_int_equal(net_cni_conf_parse(buf, strlen(buf), "t.conflist", &c, &err), 0);
    return c;
}

static void run_op(bool add, const char *types, const char *prev, unsigned timeout,
                   struct run_result *r)
{
    uv_loop_t loop;
    struct net_cni_conf *c = conf_of(types);
    struct net_attach att = {.container_id = "sb1", .netns = "/run/netns/none",
                             .ifname = "eth0", .pod_namespace = "ns", .pod_name = "p",
                             .pod_uid = "u"};

    memset(r, 0, sizeof(*r));
    assert_int_equal(uv_loop_init(&loop), 0);
    if (add)
        assert_int_equal(net_cni_add(&loop, c, plugdir, &att, timeout, on_done, r), 0);
    else
        assert_int_equal(net_cni_del(&loop, c, plugdir, &att, prev, timeout, on_done, r), 0);
    net_cni_conf_free(c); /* the op keeps its own copy */
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(r->calls, 1);
}

static void test_run_add_chain(void **state)
{
    struct run_result r;

    run_op(true, "[{\"type\":\"good\"},{\"type\":\"chain\"}]", NULL, 5000, &r);
    assert_int_equal(r.status, 0);
    assert_non_null(strstr(r.json, "10.9.0.2/24"));
}

static void test_run_add_fails(void **state)
{
    struct run_result r;

    run_op(true, "[{\"type\":\"good\"},{\"type\":\"fail\"},{\"type\":\"chain\"}]", NULL, 5000,
           &r);
    assert_int_equal(r.status, -EIO);
    assert_non_null(strstr(r.msg, "try later"));
    run_op(true, "[{\"type\":\"missing\"}]", NULL, 5000, &r);
    assert_int_equal(r.status, -ENOENT);
    assert_non_null(strstr(r.msg, "missing"));
}

static void test_run_timeout(void **state)
{
    struct run_result r;

    run_op(true, "[{\"type\":\"hang\"}]", NULL, 200, &r);
    assert_int_equal(r.status, -ETIMEDOUT);
}

static void test_run_del_best_effort(void **state)
{
    struct run_result r;
    char path[300], *calls = NULL;

    snprintf(path, sizeof(path), "%s/calls", plugdir);
    unlink(path);
    /* Reverse order, and every plugin runs although one fails. */
    run_op(false, "[{\"type\":\"good\"},{\"type\":\"fail\"},{\"type\":\"chain\"}]",
           "{\"cniVersion\":\"1.0.0\",\"ips\":[]}", 5000, &r);
    assert_int_equal(r.status, -EIO);
    assert_int_equal(ag_file_read(path, 4096, &calls, NULL), 0);
    assert_non_null(strstr(calls, "chain DEL\nDEL sb1 eth0 IgnoreUnknown=1"));
    free(calls);
    snprintf(path, sizeof(path), "%s/stdin.DEL", plugdir);
    assert_int_equal(ag_file_read(path, 4096, &calls, NULL), 0);
    assert_non_null(strstr(calls, "\"prevResult\""));
    free(calls);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_conf_parse_list),
        cmocka_unit_test(test_conf_parse_single),
        cmocka_unit_test(test_conf_parse_bad),
        cmocka_unit_test(test_conf_load_dir),
        cmocka_unit_test(test_plugin_stdin),
        cmocka_unit_test(test_args),
        cmocka_unit_test(test_result),
        cmocka_unit_test_setup_teardown(test_run_add_chain, setup_plugins, teardown_plugins),
        cmocka_unit_test_setup_teardown(test_run_add_fails, setup_plugins, teardown_plugins),
        cmocka_unit_test_setup_teardown(test_run_timeout, setup_plugins, teardown_plugins),
        cmocka_unit_test_setup_teardown(test_run_del_best_effort, setup_plugins,
                                        teardown_plugins),
    };
    return cmocka_run_group_tests_name("net_cni", tests, NULL, NULL);
}
