/* Unit tests for config.json generation from CRI requests (no root). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/rt_specgen.h"

static char *s_(const char *s) { return (char *)s; }

static void test_args_merge(void **state)
{
    char *ep[] = {s_("/ep")}, *cmd[] = {s_("c1"), s_("c2")}, *ccmd[] = {s_("/bin/x")},
         *cargs[] = {s_("a")}, *empty_ep[] = {s_("")};
    struct rt_image_cfg img = {.entrypoint = ep, .entrypoint_count = 1, .cmd = cmd,
                               .cmd_count = 2};
    runtime_v1_ContainerConfig c = runtime_v1_ContainerConfig_init_zero;
    const char **args = NULL;

    /* Nothing given: Entrypoint + Cmd. */
    assert_int_equal(rt_specgen_args(&c, &img, &args), 3);
    assert_string_equal(args[0], "/ep");
    assert_string_equal(args[2], "c2");
    free(args);
    /* Args only: Entrypoint + args. */
    c.args = cargs;
    c.args_count = 1;
    assert_int_equal(rt_specgen_args(&c, &img, &args), 2);
    assert_string_equal(args[1], "a");
    free(args);
    /* Command only: the image's Cmd is not used. */
    c.args_count = 0;
    c.command = ccmd;
    c.command_count = 1;
    assert_int_equal(rt_specgen_args(&c, &img, &args), 1);
    assert_string_equal(args[0], "/bin/x");
    free(args);
    /* An Entrypoint of [""] means none. */
    c.command_count = 0;
    img.entrypoint = empty_ep;
    assert_int_equal(rt_specgen_args(&c, &img, &args), 2);
    assert_string_equal(args[0], "c1");
    free(args);
    img.cmd_count = 0;
    assert_int_equal(rt_specgen_args(&c, &img, &args), -EINVAL);
}

static void test_signal(void **state)
{
    assert_int_equal(rt_specgen_signal(runtime_v1_Signal_SIGKILL, NULL), SIGKILL);
    assert_int_equal(rt_specgen_signal(runtime_v1_Signal_SIGTERM, "SIGINT"), SIGTERM);
    assert_int_equal(rt_specgen_signal(runtime_v1_Signal_SIGUSR2, NULL), SIGUSR2);
    assert_int_equal(rt_specgen_signal(runtime_v1_Signal_SIGRTMIN, NULL), SIGRTMIN);
    assert_int_equal(rt_specgen_signal(runtime_v1_Signal_SIGRTMAX, NULL), SIGRTMAX);
    assert_int_equal(rt_specgen_signal(runtime_v1_Signal_RUNTIME_DEFAULT, "SIGQUIT"), SIGQUIT);
    assert_int_equal(rt_specgen_signal(runtime_v1_Signal_RUNTIME_DEFAULT, "hup"), SIGHUP);
    assert_int_equal(rt_specgen_signal(runtime_v1_Signal_RUNTIME_DEFAULT, "9"), 9);
    assert_int_equal(rt_specgen_signal(runtime_v1_Signal_RUNTIME_DEFAULT, "BOGUS"), 0);
}

/* ---- a rootfs with /etc/passwd and /etc/group -------------------------------- */
static char root[64];

static void put(const char *rel, const char *data)
{
    char p[256];
    snprintf(p, sizeof(p), "%s/%s", root, rel);
    FILE *f = fopen(p, "w");
    assert_non_null(f);
    fputs(data, f);
    fclose(f);
}

static int setup_root(void **state)
{
    char p[256];
    snprintf(root, sizeof(root), "/tmp/picocri-specgen-XXXXXX");
    if (mkdtemp(root) == NULL)
        return -1;
    snprintf(p, sizeof(p), "%s/etc", root);
    mkdir(p, 0755);
    put("etc/passwd", "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\n"
                      "web:x:33:33::/var/www:/bin/sh\n");
    put("etc/group", "root:x:0:\napp:x:1000:\nweb:x:33:\nextra:x:2000:app,web\n"
                     "audio:x:29:app\n");
    return 0;
}

static int teardown_root(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", root);
    return system(cmd) == 0 ? 0 : -1;
}

static void test_user_resolution(void **state)
{
    struct rt_ident id;
    struct ag_err err;
    runtime_v1_Int64Value uid = {.value = 33}, gid = {.value = 7};
    runtime_v1_LinuxContainerSecurityContext sc = runtime_v1_LinuxContainerSecurityContext_init_zero;
    int64_t sup[] = {4242};

    ag_err_init(&err);
    assert_int_equal(rt_specgen_resolve_user(root, NULL, "", &id, &err), 0);
    assert_int_equal(id.uid, 0);
    assert_int_equal(rt_specgen_resolve_user(root, NULL, "app", &id, &err), 0);
    assert_int_equal(id.uid, 1000);
    assert_int_equal(id.gid, 1000);
    assert_int_equal(id.extra_count, 2); /* extra, audio */
    assert_int_equal(rt_specgen_resolve_user(root, NULL, "app:web", &id, &err), 0);
    assert_int_equal(id.gid, 33);
    assert_int_equal(rt_specgen_resolve_user(root, NULL, "1000:5", &id, &err), 0);
    assert_int_equal(id.uid, 1000);
    assert_int_equal(id.gid, 5);
    assert_int_equal(rt_specgen_resolve_user(root, NULL, "nobody", &id, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "nobody"));
    assert_int_equal(rt_specgen_resolve_user(root, NULL, "app:nogroup", &id, &err), -EINVAL);
    /* The security context wins over the image, with Strict groups. */
    sc.run_as_user = &uid;
    sc.run_as_group = &gid;
    sc.supplemental_groups = sup;
    sc.supplemental_groups_count = 1;
    sc.supplemental_groups_policy = runtime_v1_SupplementalGroupsPolicy_Strict;
    assert_int_equal(rt_specgen_resolve_user(root, &sc, "app", &id, &err), 0);
    assert_int_equal(id.uid, 33);
    assert_int_equal(id.gid, 7);
    assert_int_equal(id.extra_count, 1);
    assert_int_equal(id.extra[0], 4242);
}

static void test_user_symlink_stays_in_root(void **state)
{
    char p[256], host[128];
    struct rt_ident id;
    struct ag_err err;

    /* An image whose /etc/passwd points at a host file: resolution must read
     * <root>/<target>, which does not exist, never the host file. */
    snprintf(host, sizeof(host), "%s-host", root);
    FILE *f = fopen(host, "w");
    assert_non_null(f);
    fputs("evil:x:4321:4321::/:/bin/sh\n", f);
    fclose(f);
    snprintf(p, sizeof(p), "%s/etc/passwd", root);
    unlink(p);
    assert_int_equal(symlink(host, p), 0);
    ag_err_init(&err);
    assert_int_equal(rt_specgen_resolve_user(root, NULL, "evil", &id, &err), -EINVAL);
    unlink(host);
}

/* ---- whole documents ------------------------------------------------------------ */
static cJSON *gen(runtime_v1_ContainerConfig *c, runtime_v1_PodSandboxConfig *pod,
                  struct rt_pod_ns ns, int want_rc)
{
    char *cmd[] = {s_("/bin/sh")}, *env[] = {s_("A=image"), s_("B=image")};
    struct rt_image_cfg img = {.cmd = cmd, .cmd_count = 1, .env = env, .env_count = 2};
    struct rt_ident id = {.uid = 0, .gid = 0};
    struct rt_specgen_in in = {.pod = pod, .ctr = c, .image = &img, .ident = &id,
                               .rootfs = "/r", .cgroups_path = "/kubepods/x",
                               .container_id = "cid", .pod_id = "pid", .ns = ns};
    cJSON *out = NULL;
    struct ag_err err;

    ag_err_init(&err);
    assert_int_equal(rt_specgen_container(&in, &out, &err), want_rc);
    return out;
}

static bool array_has(const cJSON *a, const char *s)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, a) if (cJSON_IsString(e) && strcmp(e->valuestring, s) == 0) return true;
    return false;
}

static void test_document_defaults(void **state)
{
    runtime_v1_PodSandboxConfig pod = runtime_v1_PodSandboxConfig_init_zero;
    runtime_v1_ContainerConfig c = runtime_v1_ContainerConfig_init_zero;
    pb_bytes_array_t *v = malloc(PB_BYTES_ARRAY_T_ALLOCSIZE(3));
    runtime_v1_KeyValue kv = {.key = s_("A"), .value = v};
    struct rt_pod_ns ns = {.net = "/run/netns/p", .ipc = "/run/ipc/p", .uts = "/run/uts/p"};

    v->size = 3;
    memcpy(v->bytes, "cri", 3);
    pod.hostname = s_("web-0");
    c.envs = &kv;
    c.envs_count = 1;
    cJSON *d = gen(&c, &pod, ns, 0);
    cJSON *p = cJSON_GetObjectItem(d, "process");
    assert_string_equal(cJSON_GetArrayItem(cJSON_GetObjectItem(p, "args"), 0)->valuestring,
                        "/bin/sh");
    cJSON *env = cJSON_GetObjectItem(p, "env");
    assert_true(array_has(env, "A=cri"));
    assert_false(array_has(env, "A=image"));
    assert_true(array_has(env, "B=image"));
    assert_true(array_has(env, "HOSTNAME=web-0"));
    cJSON *caps = cJSON_GetObjectItem(cJSON_GetObjectItem(p, "capabilities"), "bounding");
    assert_int_equal(cJSON_GetArraySize(caps), 14);
    assert_false(array_has(caps, "CAP_SYS_ADMIN"));
    cJSON *lx = cJSON_GetObjectItem(d, "linux");
    assert_true(array_has(cJSON_GetObjectItem(lx, "maskedPaths"), "/proc/kcore"));
    assert_null(cJSON_GetObjectItem(lx, "seccomp")); /* unconfined unless asked */
    assert_string_equal(cJSON_GetObjectItem(d, "hostname")->valuestring, "web-0");
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(lx, "namespaces"));
    assert_non_null(strstr(s, "{\"type\":\"network\",\"path\":\"/run/netns/p\"}"));
    assert_non_null(strstr(s, "{\"type\":\"pid\"}"));
    free(s);
    cJSON_Delete(d);
    free(v);
}

static void test_document_security(void **state)
{
    runtime_v1_PodSandboxConfig pod = runtime_v1_PodSandboxConfig_init_zero;
    runtime_v1_ContainerConfig c = runtime_v1_ContainerConfig_init_zero;
    runtime_v1_LinuxContainerConfig lc = runtime_v1_LinuxContainerConfig_init_zero;
    runtime_v1_LinuxContainerSecurityContext sc = runtime_v1_LinuxContainerSecurityContext_init_zero;
    runtime_v1_Capability cap = runtime_v1_Capability_init_zero;
    runtime_v1_SecurityProfile prof = {.profile_type =
                                           runtime_v1_SecurityProfile_ProfileType_RuntimeDefault};
    char *add[] = {s_("sys_admin")}, *drop[] = {s_("ALL")}, *bad[] = {s_("CAP_NOPE")};
    struct rt_pod_ns ns = {0};

    c.linux = &lc;
    lc.security_context = &sc;
    sc.capabilities = &cap;
    sc.seccomp = &prof;
    cap.drop_capabilities = drop;
    cap.drop_capabilities_count = 1;
    cap.add_capabilities = add;
    cap.add_capabilities_count = 1;
    cJSON *d = gen(&c, &pod, ns, 0);
    cJSON *caps = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(d, "process"), "capabilities"), "effective");
    assert_int_equal(cJSON_GetArraySize(caps), 1);
    assert_true(array_has(caps, "CAP_SYS_ADMIN"));
    cJSON *sec = cJSON_GetObjectItem(cJSON_GetObjectItem(d, "linux"), "seccomp");
    char *s = cJSON_PrintUnformatted(sec);
    assert_non_null(strstr(s, "kexec_load"));
    assert_null(strstr(s, "\"mount\"")); /* granted by CAP_SYS_ADMIN */
    assert_non_null(strstr(s, "\"ptrace\""));
    free(s);
    cJSON_Delete(d);
    cap.add_capabilities = bad;
    assert_null(gen(&c, &pod, ns, -EINVAL));
    /* Privileged: everything, no masks, no seccomp. */
    cap.add_capabilities_count = 0;
    sc.privileged = true;
    d = gen(&c, &pod, ns, 0);
    caps = cJSON_GetObjectItem(
        cJSON_GetObjectItem(cJSON_GetObjectItem(d, "process"), "capabilities"), "bounding");
    assert_true(array_has(caps, "CAP_SYS_ADMIN"));
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "linux"), "maskedPaths"));
    assert_null(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "linux"), "seccomp"));
    cJSON_Delete(d);
}

static void test_document_mounts_and_ns(void **state)
{
    runtime_v1_PodSandboxConfig pod = runtime_v1_PodSandboxConfig_init_zero;
    runtime_v1_ContainerConfig c = runtime_v1_ContainerConfig_init_zero;
    runtime_v1_LinuxContainerConfig lc = runtime_v1_LinuxContainerConfig_init_zero;
    runtime_v1_LinuxContainerSecurityContext sc = runtime_v1_LinuxContainerSecurityContext_init_zero;
    runtime_v1_NamespaceOption no = runtime_v1_NamespaceOption_init_zero;
    runtime_v1_Mount m[3] = {{.container_path = s_("/data/sub"), .host_path = s_("/tmp")},
                             {.container_path = s_("/data"), .host_path = s_("/tmp"),
                              .readonly = true,
                              .propagation =
                                  runtime_v1_MountPropagation_PROPAGATION_HOST_TO_CONTAINER},
                             {.container_path = s_("/x"), .host_path = s_("/no/such/path")}};
    struct rt_pod_ns ns = {0};

    c.mounts = m;
    c.mounts_count = 2;
    cJSON *d = gen(&c, &pod, ns, 0);
    char *s = cJSON_PrintUnformatted(cJSON_GetObjectItem(d, "mounts"));
    char *parent = strstr(s, "\"/data\""), *child = strstr(s, "\"/data/sub\"");
    assert_non_null(parent);
    assert_non_null(child);
    assert_true(parent < child);
    assert_non_null(strstr(s, "\"rslave\",\"ro\""));
    free(s);
    cJSON_Delete(d);
    c.mounts_count = 3;
    assert_null(gen(&c, &pod, ns, -ENOENT));
    c.mounts_count = 0;
    /* Host network and IPC: no such namespaces; POD pid needs a path. */
    c.linux = &lc;
    lc.security_context = &sc;
    sc.namespace_options = &no;
    no.network = runtime_v1_NamespaceMode_NODE;
    no.ipc = runtime_v1_NamespaceMode_NODE;
    no.pid = runtime_v1_NamespaceMode_POD;
    assert_null(gen(&c, &pod, ns, -EINVAL));
    ns.pid = "/proc/42/ns/pid";
    d = gen(&c, &pod, ns, 0);
    s = cJSON_PrintUnformatted(cJSON_GetObjectItem(cJSON_GetObjectItem(d, "linux"), "namespaces"));
    assert_null(strstr(s, "network"));
    assert_null(strstr(s, "ipc"));
    assert_non_null(strstr(s, "/proc/42/ns/pid"));
    free(s);
    cJSON_Delete(d);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_args_merge),
        cmocka_unit_test(test_signal),
        cmocka_unit_test_setup_teardown(test_user_resolution, setup_root, teardown_root),
        cmocka_unit_test_setup_teardown(test_user_symlink_stays_in_root, setup_root,
                                        teardown_root),
        cmocka_unit_test(test_document_defaults),
        cmocka_unit_test(test_document_security),
        cmocka_unit_test(test_document_mounts_and_ns),
    };
    return cmocka_run_group_tests_name("rt_specgen", tests, NULL, NULL);
}
