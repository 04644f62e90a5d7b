/* Unit tests for the runtime service's pod cgroup helpers and small pure
 * pieces (agent/runtime/rt_svc_cgroup.c, rt_svc.c), without root: the pod
 * cgroup path for the kubelet's cgroupfs and systemd naming (and that
 * containers land below it exactly as the executor maps them), pod
 * resources + overhead, /proc/net/dev parsing, the CRI log path join, and
 * pod cgroup stats of a cgroup that does not exist. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/store.h"

#ifdef ST_STORE_UNAVAILABLE
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "test_rt_svc_cgroup: store.pb.h was not generated\n");
    return 1;
}
#else

#include <stdio.h>
#include <string.h>

#include "runtime/rt_svc_int.h"

#define POD "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
#define CTR "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"

static void test_pod_cgroup_paths(void **state)
{
    char out[SVC_PATH];

    (void)state;
    /* cgroupfs naming, as the kubelet sends it. */
    assert_int_equal(
        svc__pod_cgroup_path(false, "/kubepods/burstable/pod1-2", POD, out, sizeof(out)), 0);
    assert_string_equal(out, "/kubepods/burstable/pod1-2");
    assert_int_equal(svc__pod_cgroup_path(true, "/kubepods/pod9/", POD, out, sizeof(out)), 0);
    assert_string_equal(out, "/kubepods/pod9");
    /* Relative: below the executor's /picocri, like its containers. */
    assert_int_equal(svc__pod_cgroup_path(false, "kubepods/podx", POD, out, sizeof(out)), 0);
    assert_string_equal(out, "/picocri/kubepods/podx");
    /* systemd naming: the slice expanded the way systemd nests units. */
    assert_int_equal(
        svc__pod_cgroup_path(true, "kubepods-burstable-pod1_2.slice", POD, out, sizeof(out)), 0);
    assert_string_equal(out,
                        "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod1_2.slice");
    /* A slice name with the cgroupfs driver is a plain relative path. */
    assert_int_equal(svc__pod_cgroup_path(false, "a-b.slice", POD, out, sizeof(out)), 0);
    assert_string_equal(out, "/picocri/a-b.slice");
    /* No parent: picocri's own. */
    assert_int_equal(svc__pod_cgroup_path(false, NULL, POD, out, sizeof(out)), 0);
    assert_string_equal(out, "/picocri/pod-" POD);
    assert_int_equal(svc__pod_cgroup_path(true, "", POD, out, sizeof(out)), 0);
    assert_string_equal(out, "/picocri/pod-" POD);
    /* Unusable parents. */
    assert_int_equal(svc__pod_cgroup_path(false, "/", POD, out, sizeof(out)), -EINVAL);
    assert_int_equal(svc__pod_cgroup_path(false, "/a/../b", POD, out, sizeof(out)), -EINVAL);
    assert_int_equal(svc__pod_cgroup_path(true, "a--b.slice", POD, out, sizeof(out)), -EINVAL);
    assert_int_equal(svc__pod_cgroup_path(false, "/0123456789", POD, out, 8), -ENAMETOOLONG);
    assert_int_equal(svc__pod_infra_cgroup_path("/kubepods/p", out, sizeof(out)), 0);
    assert_string_equal(out, "/kubepods/p/infra");
}

/* A container's cgroup, mapped by the executor, is a direct child of the
 * pod cgroup for every naming. */
static void test_containers_below_pod_cgroup(void **state)
{
    static const struct {
        bool systemd;
        const char *parent;
    } cases[] = {
        {false, "/kubepods/burstable/podA"},
        {true, "/kubepods/podB"},
        {true, "kubepods-besteffort-podC.slice"},
        {false, "rel/podD"},
        {false, NULL},
        {true, NULL},
    };
    char pod_cg[SVC_PATH], ctr[SVC_PATH], resolved[SVC_PATH];

    (void)state;
    for (size_t i = 0; i < AG_ARRAY_LEN(cases); i++) {
        assert_int_equal(
            svc__pod_cgroup_path(cases[i].systemd, cases[i].parent, POD, pod_cg, sizeof(pod_cg)),
            0);
        assert_int_equal(
            svc__ctr_cgroups_path(cases[i].systemd, cases[i].parent, pod_cg, CTR, ctr, sizeof(ctr)),
            1);
        assert_int_equal(rt_cgroup_path_resolve(ctr, CTR, resolved, sizeof(resolved)), 0);
        size_t n = strlen(pod_cg);
        assert_memory_equal(resolved, pod_cg, n);
        assert_int_equal(resolved[n], '/');
        assert_null(strchr(resolved + n + 1, '/'));
        assert_non_null(strstr(resolved + n + 1, CTR));
    }
    assert_int_equal(svc__ctr_cgroups_path(true, "k-p.slice", NULL, CTR, ctr, sizeof(ctr)), 1);
    assert_string_equal(ctr, "k-p.slice:picocri:" CTR);
    /* Records from before pod cgroups: the executor's default. */
    assert_int_equal(svc__ctr_cgroups_path(false, NULL, NULL, CTR, ctr, sizeof(ctr)), 0);
    assert_int_equal(svc__ctr_cgroups_path(false, "", "", CTR, ctr, sizeof(ctr)), 0);
    assert_int_equal(svc__ctr_cgroups_path(false, "/x", NULL, CTR, ctr, 10), -ENAMETOOLONG);
}

static void test_pod_resources(void **state)
{
    runtime_v1_HugepageLimit hr[2] = {{.page_size = (char *)"2MB", .limit = 4 << 20},
                                      {.page_size = (char *)"1GB", .limit = 0}};
    runtime_v1_HugepageLimit ho[1] = {{.page_size = (char *)"2MB", .limit = 2 << 20}};
    runtime_v1_LinuxContainerResources res = {.cpu_shares = 512,
                                              .cpu_quota = 50000,
                                              .cpu_period = 100000,
                                              .memory_limit_in_bytes = 256 << 20,
                                              .hugepage_limits_count = 2,
                                              .hugepage_limits = hr};
    runtime_v1_LinuxContainerResources ovh = {.cpu_shares = 100,
                                              .cpu_quota = 5000,
                                              .cpu_period = 50000,
                                              .memory_limit_in_bytes = 16 << 20,
                                              .hugepage_limits_count = 1,
                                              .hugepage_limits = ho};
    runtime_v1_LinuxPodSandboxConfig lc = {.resources = &res, .overhead = &ovh};
    struct rt_hugepage_limit hp[4];
    struct rt_resources r;

    (void)state;
    assert_int_equal(svc__pod_resources(&lc, &r, hp, 4), 4);
    assert_true(r.has_cpu_shares);
    assert_int_equal(r.cpu_shares, 612);
    assert_true(r.has_cpu_quota && r.has_cpu_period);
    assert_int_equal(r.cpu_period, 100000);
    assert_int_equal(r.cpu_quota, 50000 + 10000); /* overhead rescaled to the pod's period */
    assert_true(r.has_mem_limit);
    assert_int_equal(r.mem_limit, 272 << 20);
    assert_int_equal(r.hugepages_count, 1);
    assert_string_equal(r.hugepages[0].page_size, "2MB");
    assert_int_equal(r.hugepages[0].limit, 6 << 20);
    assert_false(r.has_mem_swap || r.has_pids_limit || r.cpus != NULL);

    /* Unlimited containers: the overhead adds to requests only. */
    lc.resources = NULL;
    assert_int_equal(svc__pod_resources(&lc, &r, hp, 4), 1);
    assert_int_equal(r.cpu_shares, 100);
    assert_false(r.has_cpu_quota || r.has_mem_limit || r.hugepages_count);
    /* Nothing given: nothing to apply. */
    assert_int_equal(svc__pod_resources(NULL, &r, hp, 4), 0);
    lc.overhead = NULL;
    assert_int_equal(svc__pod_resources(&lc, &r, hp, 4), 0);
    /* Bounds: tiny shares and quota clamped to the kernel's minimum. */
    res = (runtime_v1_LinuxContainerResources){.cpu_shares = 1, .cpu_quota = 10};
    lc.resources = &res;
    assert_int_equal(svc__pod_resources(&lc, &r, hp, 0), 2);
    assert_int_equal(r.cpu_shares, 2);
    assert_int_equal(r.cpu_quota, 1000);
    assert_int_equal(r.cpu_period, 100000);
}

static void test_net_dev_parse(void **state)
{
    static const char text[] =
        "Inter-|   Receive                                                |  Transmit\n"
        " face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets "
        "errs drop fifo colls carrier compressed\n"
        "    lo:     560       8    0    0    0     0          0         0      560       8    "
        "0    0    0     0       0          0\n"
        "  eth0:    9438      77    1    0    0     0          0         0     3018      31    "
        "2    0    0     0       0          0\n"
        "  net1: 18446744073709551615 1 0 0 0 0 0 0 5 1 0 0 0 0 0 0\n"
        "bad: 1 2 3\n"
        "  averyveryveryveryveryveryverylongname0: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16\n";
    struct svc_netdev d[4];

    (void)state;
    assert_int_equal(svc__net_dev_parse(text, d, 4), 2);
    assert_string_equal(d[0].name, "eth0");
    assert_int_equal(d[0].rx_bytes, 9438);
    assert_int_equal(d[0].rx_errors, 1);
    assert_int_equal(d[0].tx_bytes, 3018);
    assert_int_equal(d[0].tx_errors, 2);
    assert_string_equal(d[1].name, "net1");
    assert_true(d[1].rx_bytes == UINT64_MAX);
    assert_int_equal(svc__net_dev_parse(text, d, 1), 1);
    assert_int_equal(svc__net_dev_parse("", d, 4), 0);
}

static void test_log_path_join(void **state)
{
    char out[64];

    (void)state;
    assert_int_equal(svc__log_path_join("/var/log/pods/ns_p_u", "c/0.log", out, sizeof(out)), 1);
    assert_string_equal(out, "/var/log/pods/ns_p_u/c/0.log");
    assert_int_equal(svc__log_path_join("/logs//", "/c/1.log", out, sizeof(out)), 1);
    assert_string_equal(out, "/logs/c/1.log");
    assert_int_equal(svc__log_path_join(NULL, "/abs/c.log", out, sizeof(out)), 1);
    assert_string_equal(out, "/abs/c.log");
    assert_int_equal(svc__log_path_join("", "rel.log", out, sizeof(out)), 0);
    assert_string_equal(out, "");
    assert_int_equal(svc__log_path_join("/logs", "", out, sizeof(out)), 0);
    assert_int_equal(svc__log_path_join("/logs", NULL, out, sizeof(out)), 0);
    assert_int_equal(svc__log_path_join("/logs", "../x.log", out, sizeof(out)), -EINVAL);
    assert_int_equal(svc__log_path_join("/logs", "c/../../x", out, sizeof(out)), -EINVAL);
    assert_int_equal(svc__log_path_join("/logs", "c/..", out, sizeof(out)), -EINVAL);
    assert_int_equal(svc__log_path_join("/logs", "c/..x/0.log", out, sizeof(out)), 1);
    assert_int_equal(svc__log_path_join("/logs", "/", out, sizeof(out)), -EINVAL);
    assert_int_equal(svc__log_path_join("/logs",
                                        "c/0123456789012345678901234567890123456789012345"
                                        "678901234567890.log",
                                        out, sizeof(out)),
                     -ENAMETOOLONG);
    assert_string_equal(out, "");
}

/* A pod cgroup that does not exist (after a reboot) has no counters. */
static void test_stats_of_absent_cgroup(void **state)
{
    struct rt_cgroup_stats s;
    int rc;

    (void)state;
    memset(&s, 0xff, sizeof(s));
    rc = svc__pod_cgroup_stats("/picocri-unit-test-absent/pod-x", &s);
    /* -ENOENT; -ENOTSUP on a machine without any cgroup hierarchy. */
    assert_true(rc == -ENOENT || rc == -ENOTSUP);
    assert_int_equal(svc__pod_cgroup_remove("/picocri-unit-test-absent/pod-x",
                                            "/picocri-unit-test-absent/pod-x/infra"),
                     0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_pod_cgroup_paths), cmocka_unit_test(test_containers_below_pod_cgroup),
        cmocka_unit_test(test_pod_resources),    cmocka_unit_test(test_net_dev_parse),
        cmocka_unit_test(test_log_path_join),    cmocka_unit_test(test_stats_of_absent_cgroup),
    };
    ag_log_set_level(AG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

#endif
