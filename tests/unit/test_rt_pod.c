/* Unit tests for pod namespaces and files (agent/runtime/rt_pod.c).
 * Creating namespaces needs root: without it the namespace cases skip. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "runtime/rt_pod.h"

static char base[64];

static int setup(void **state)
{
    snprintf(base, sizeof(base), "/tmp/picocri-pod-XXXXXX");
    return mkdtemp(base) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    return system(cmd) == 0 ? 0 : -1;
}

static bool mounted_under(const char *dir)
{
    char *info = NULL;
    bool found;
    assert_int_equal(ag_file_read("/proc/self/mountinfo", 1 << 22, &info, NULL), 0);
    found = strstr(info, dir) != NULL;
    free(info);
    return found;
}

/* Runs fn in a child that joined the pod's namespaces; returns its status. */
static int in_pod(const char *dir, int (*fn)(void))
{
    pid_t pid = fork();
    if (pid == 0) {
        static const char *const pins[] = {RT_POD_NETNS, RT_POD_UTSNS, RT_POD_IPCNS};
        for (size_t i = 0; i < 3; i++) {
            char p[256];
            snprintf(p, sizeof(p), "%s/%s", dir, pins[i]);
            int fd = open(p, O_RDONLY);
            if (fd < 0 || setns(fd, 0) < 0)
                _exit(100);
            close(fd);
        }
        _exit(fn());
    }
    int status = 0;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 99;
}

static int check_inside(void)
{
    char host[64] = "", *v = NULL;
    gethostname(host, sizeof(host));
    if (strcmp(host, "pod-a") != 0)
        return 1;
    if (ag_file_read("/proc/sys/net/ipv4/ip_unprivileged_port_start", 64, &v, NULL) < 0)
        return 2;
    int ok = atoi(v) == 80;
    free(v);
    return ok ? 0 : 3;
}

static void test_pod_namespaces(void **state)
{
    char dir[128], *resolv = NULL;
    struct ag_err err;
    char *servers[] = {(char *)"10.0.0.10"}, *search[] = {(char *)"svc.local"},
         *opts[] = {(char *)"ndots:5"};
    runtime_v1_DNSConfig dns = {.servers = servers, .servers_count = 1, .searches = search,
                                .searches_count = 1, .options = opts, .options_count = 1};
    runtime_v1_LinuxPodSandboxConfig_SysctlsEntry sys = {
        .key = (char *)"net.ipv4.ip_unprivileged_port_start", .value = (char *)"80"};
    runtime_v1_LinuxPodSandboxConfig lin = {.sysctls = &sys, .sysctls_count = 1};
    struct rt_pod_setup s = {.dir = dir, .hostname = "pod-a", .dns = &dns, .linux = &lin};

    if (geteuid() != 0)
        skip();
    snprintf(dir, sizeof(dir), "%s/pods/p1", base);
    ag_err_init(&err);
    assert_int_equal(rt_pod_create(&s, &err), 0);
    assert_int_equal(in_pod(dir, check_inside), 0);
    snprintf(dir + strlen(dir), sizeof(dir) - strlen(dir), "/resolv.conf");
    assert_int_equal(ag_file_read(dir, 4096, &resolv, NULL), 0);
    assert_string_equal(resolv, "search svc.local\nnameserver 10.0.0.10\noptions ndots:5\n");
    free(resolv);
    snprintf(dir, sizeof(dir), "%s/pods/p1", base);
    assert_true(mounted_under(dir));
    assert_int_equal(rt_pod_remove(dir, &err), 0);
    assert_false(mounted_under(dir));
    assert_int_equal(access(dir, F_OK), -1);
    /* Idempotent. */
    assert_int_equal(rt_pod_remove(dir, &err), 0);
}

static void test_pod_bad_sysctl(void **state)
{
    char dir[128];
    struct ag_err err;
    runtime_v1_LinuxPodSandboxConfig_SysctlsEntry sys = {.key = (char *)"kernel.panic",
                                                         .value = (char *)"1"};
    runtime_v1_LinuxPodSandboxConfig lin = {.sysctls = &sys, .sysctls_count = 1};
    struct rt_pod_setup s = {.dir = dir, .hostname = "x", .linux = &lin};

    snprintf(dir, sizeof(dir), "%s/pods/p2", base);
    ag_err_init(&err);
    assert_int_equal(rt_pod_create(&s, &err), -EINVAL);
    assert_non_null(strstr(err.msg, "kernel.panic"));
    assert_int_equal(access(dir, F_OK), -1);
    /* A net sysctl for a host-network pod is refused too. */
    sys.key = (char *)"net.ipv4.ip_forward";
    s.host_network = true;
    assert_int_equal(rt_pod_create(&s, &err), -EINVAL);
}

static void test_pod_host_namespaces(void **state)
{
    char dir[128], p[160];
    struct ag_err err;
    struct rt_pod_setup s = {.dir = dir, .hostname = "h", .host_network = true,
                             .host_ipc = true};

    snprintf(dir, sizeof(dir), "%s/pods/p3", base);
    ag_err_init(&err);
    assert_int_equal(rt_pod_create(&s, &err), 0);
    assert_int_equal(rt_pod_ns_path(dir, RT_POD_NETNS, p, sizeof(p)), -ENOENT);
    assert_false(mounted_under(dir));
    assert_int_equal(rt_pod_remove(dir, &err), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_pod_namespaces, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pod_bad_sysctl, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pod_host_namespaces, setup, teardown),
    };
    return cmocka_run_group_tests_name("rt_pod", tests, NULL, NULL);
}
