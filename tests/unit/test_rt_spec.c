/* Unit tests of agent/runtime's pure parts: config.json parsing and
 * validation, the mount option table, cgroup value conversions and
 * cgroupsPath mapping.  No root, no namespaces. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/resource.h>

#include <cmocka.h>

#include "runtime/runtime.h"

static const char *const valid_cfg =
    "{\"ociVersion\":\"1.2.0\",\"root\":{\"path\":\"rootfs\",\"readonly\":true},"
    "\"hostname\":\"h\",\"annotations\":{\"a\":\"b\"},"
    "\"process\":{\"cwd\":\"/\",\"args\":[\"sh\",\"-c\",\"true\"],\"env\":[\"PATH=/bin\"],"
    " \"user\":{\"uid\":5,\"gid\":6,\"additionalGids\":[7,8]},\"noNewPrivileges\":true,"
    " \"capabilities\":{\"bounding\":[\"CAP_KILL\",\"CAP_CHOWN\"],\"effective\":[\"CAP_KILL\"]},"
    " \"rlimits\":[{\"type\":\"RLIMIT_NOFILE\",\"soft\":10,\"hard\":20}],\"oomScoreAdj\":-5},"
    "\"mounts\":[{\"destination\":\"/proc\",\"type\":\"proc\",\"source\":\"proc\"},"
    " {\"destination\":\"/data\",\"type\":\"none\",\"source\":\"vol\",\"options\":[\"rbind\",\"ro\"]}],"
    "\"hooks\":{\"prestart\":[{\"path\":\"/bin/true\",\"args\":[\"true\"],\"timeout\":3}]},"
    "\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"mount\"},{\"type\":\"uts\"},"
    " {\"type\":\"network\",\"path\":\"/var/run/netns/x\"}],"
    " \"cgroupsPath\":\"/kubepods/x\",\"maskedPaths\":[\"/proc/kcore\"],"
    " \"readonlyPaths\":[\"/proc/sys\"],\"sysctl\":{\"net.ipv4.ip_forward\":\"1\"},"
    " \"resources\":{\"memory\":{\"limit\":1048576,\"swap\":2097152},"
    "  \"cpu\":{\"shares\":1024,\"quota\":50000,\"period\":100000,\"cpus\":\"0-1\"},"
    "  \"pids\":{\"limit\":0},\"devices\":[{\"allow\":false,\"access\":\"rwm\"},"
    "  {\"allow\":true,\"type\":\"c\",\"major\":1,\"minor\":3,\"access\":\"rw\"}]},"
    " \"seccomp\":{\"defaultAction\":\"SCMP_ACT_ERRNO\",\"defaultErrnoRet\":38,"
    "  \"architectures\":[\"SCMP_ARCH_X86_64\"],\"syscalls\":[{\"names\":[\"read\"],"
    "  \"action\":\"SCMP_ACT_ALLOW\",\"args\":[{\"index\":0,\"value\":1,\"op\":\"SCMP_CMP_EQ\"}]}]}}}";

static void test_parse_valid(void **state)
{
    struct rt_spec *s = NULL;
    struct ag_err err;
    ag_err_init(&err);
    assert_int_equal(rt_spec_parse(valid_cfg, strlen(valid_cfg), "/b", false, &s, &err), 0);
    assert_string_equal(s->root_path, "/b/rootfs");
    assert_true(s->root_readonly);
    assert_string_equal(s->hostname, "h");
    assert_int_equal(s->annotations_count, 1);
    assert_int_equal(s->process->args_count, 3);
    assert_null(s->process->args[3]);
    assert_int_equal(s->process->uid, 5);
    assert_int_equal(s->process->gids_count, 2);
    assert_int_equal(s->process->gids[1], 8);
    assert_int_equal(s->process->caps.bounding, (1ull << 5) | (1ull << 0));
    assert_int_equal(s->process->caps.effective, 1ull << 5);
    assert_int_equal(s->process->rlimits[0].type, RLIMIT_NOFILE);
    assert_int_equal(s->process->rlimits[0].hard, 20);
    assert_int_equal(s->process->oom_score_adj, -5);
    assert_int_equal(s->mounts_count, 2);
    assert_string_equal(s->mounts[1].source, "/b/vol");
    assert_true(s->mounts[1].opts.bind && s->mounts[1].opts.recursive);
    assert_true(s->mounts[1].opts.flags & MS_RDONLY);
    assert_int_equal(s->hooks_count[RT_HOOK_PRESTART], 1);
    assert_int_equal(s->hooks[RT_HOOK_PRESTART][0].timeout, 3);
    assert_true(s->ns[RT_NS_PID].enabled && !s->ns[RT_NS_PID].path);
    assert_string_equal(s->ns[RT_NS_NET].path, "/var/run/netns/x");
    assert_false(s->ns[RT_NS_USER].enabled);
    assert_true(s->resources.has_pids_limit);
    assert_int_equal(s->resources.pids_limit, 0);
    assert_int_equal(s->resources.mem_swap, 2097152);
    assert_int_equal(s->resources.devices_count, 2);
    assert_string_equal(s->resources.devices[1].access, "rw");
    assert_int_equal(s->resources.devices[0].major, -1);
    assert_non_null(s->seccomp);
    assert_int_equal(s->seccomp->rules[0].args_count, 1);
    rt_spec_free(s);
}

static void expect_invalid(const char *json, const char *needle)
{
    struct rt_spec *s = NULL;
    struct ag_err err;
    ag_err_init(&err);
    int rc = rt_spec_parse(json, strlen(json), "/b", false, &s, &err);
    if (rc >= 0 || !strstr(err.msg, needle))
        fail_msg("expected error containing '%s' for %s, got rc=%d msg=%s", needle, json, rc,
                 err.msg);
    assert_null(s);
}

#define BASE "\"ociVersion\":\"1.0.2\",\"root\":{\"path\":\"r\"}"
static void test_parse_invalid(void **state)
{
    expect_invalid("{ not json", "not valid JSON");
    expect_invalid("[]", "not a JSON object");
    expect_invalid("{\"root\":{\"path\":\"r\"}}", "ociVersion");
    expect_invalid("{\"ociVersion\":\"2.0\",\"root\":{\"path\":\"r\"}}", "unsupported");
    expect_invalid("{\"ociVersion\":\"1.0\"}", "root");
    expect_invalid("{" BASE ",\"linux\":{\"namespaces\":[{\"type\":\"bogus\"}]}}",
                   "unknown type \"bogus\"");
    expect_invalid("{" BASE ",\"linux\":{\"namespaces\":[{\"type\":\"pid\"},{\"type\":\"pid\"}]}}",
                   "duplicate");
    expect_invalid("{" BASE ",\"process\":{\"cwd\":\"rel\",\"args\":[\"x\"]}}", "absolute");
    expect_invalid("{" BASE ",\"process\":{\"cwd\":\"/\",\"args\":[]}}", "args");
    expect_invalid("{" BASE ",\"process\":{\"cwd\":\"/\",\"args\":[\"x\"],\"rlimits\":"
                   "[{\"type\":\"RLIMIT_BOGUS\",\"soft\":1,\"hard\":1}]}}", "unknown type");
    expect_invalid("{" BASE ",\"process\":{\"cwd\":\"/\",\"args\":[\"x\"],\"rlimits\":"
                   "[{\"type\":\"RLIMIT_CORE\",\"soft\":1,\"hard\":1},"
                   "{\"type\":\"RLIMIT_CORE\",\"soft\":1,\"hard\":1}]}}", "duplicate");
    expect_invalid("{" BASE ",\"process\":{\"cwd\":\"/\",\"args\":[\"x\"],\"capabilities\":"
                   "{\"bounding\":[\"CAP_NOPE\"]}}}", "unknown capability");
    expect_invalid("{" BASE ",\"hostname\":\"x\"}", "uts");
    expect_invalid("{" BASE ",\"mounts\":[{\"destination\":\"/a/../b\",\"type\":\"tmpfs\"}]}",
                   "..");
    expect_invalid("{" BASE ",\"mounts\":[{\"destination\":\"/a\"}]}", "type required");
    expect_invalid("{" BASE ",\"linux\":{\"uidMappings\":[{\"containerID\":0,\"hostID\":1,"
                   "\"size\":1}]}}", "user namespace");
    expect_invalid("{" BASE ",\"linux\":{\"resources\":{\"memory\":{\"limit\":100,\"swap\":50}}}}",
                   "swap");
    expect_invalid("{" BASE ",\"linux\":{\"seccomp\":{\"defaultAction\":\"SCMP_ACT_NOTIFY\"}}}",
                   "not supported");
    expect_invalid("{" BASE ",\"hooks\":{\"poststop\":[{\"path\":\"rel\"}]}}", "absolute");
    expect_invalid("{" BASE ",\"process\":{\"cwd\":\"/\",\"args\":[\"x\"],\"user\":{\"uid\":1.5}}}",
                   "uid");
}

static void test_mount_options(void **state)
{
    const char *o1[] = {"ro", "nosuid", "nodev", "mode=755", "size=65536k", "rprivate"};
    const char *o2[] = {"rbind", "rw", "rro", "tmpcopyup"};
    const char *o3[] = {"ro", "rw", "noexec", "exec", "unknown"};
    struct rt_mount_opts o;
    assert_int_equal(rt_mount_options_parse(o1, 6, &o), 0);
    assert_int_equal(o.flags, MS_RDONLY | MS_NOSUID | MS_NODEV);
    assert_string_equal(o.data, "mode=755,size=65536k");
    assert_int_equal(o.propagation, MS_PRIVATE | MS_REC);
    assert_false(o.bind);
    rt_mount_opts_fini(&o);
    assert_int_equal(rt_mount_options_parse(o2, 4, &o), 0);
    assert_true(o.bind && o.recursive && o.tmpcopyup);
    assert_int_equal(o.flags, 0);
    assert_int_equal(o.clear, MS_RDONLY);
    assert_int_equal(o.attr_set, 1); /* MOUNT_ATTR_RDONLY */
    assert_null(o.data);
    rt_mount_opts_fini(&o);
    assert_int_equal(rt_mount_options_parse(o3, 5, &o), 0);
    assert_int_equal(o.flags, 0); /* later options win */
    assert_int_equal(o.clear, MS_RDONLY | MS_NOEXEC);
    assert_string_equal(o.data, "unknown");
    rt_mount_opts_fini(&o);
}

static void test_shares_to_weight(void **state)
{
    assert_int_equal(rt_cgroup_shares_to_weight(0), 0);
    assert_int_equal(rt_cgroup_shares_to_weight(2), 1);
    assert_int_equal(rt_cgroup_shares_to_weight(1024), 100);
    assert_int_equal(rt_cgroup_shares_to_weight(262144), 10000);
    assert_int_equal(rt_cgroup_shares_to_weight(1 << 20), 10000);
    /* Monotonic over the whole range. */
    uint64_t prev = 0;
    for (uint64_t s = 2; s <= 262144; s += 37) {
        uint64_t w = rt_cgroup_shares_to_weight(s);
        assert_true(w >= prev && w >= 1 && w <= 10000);
        prev = w;
    }
}

static void test_cpu_max(void **state)
{
    char buf[64];
    assert_int_equal(rt_cgroup_cpu_max_format(true, 50000, true, 100000, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "50000 100000");
    assert_int_equal(rt_cgroup_cpu_max_format(true, -1, true, 200000, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "max 200000");
    assert_int_equal(rt_cgroup_cpu_max_format(true, 25000, false, 0, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "25000 100000");
    assert_int_equal(rt_cgroup_cpu_max_format(false, 0, true, 50000, buf, sizeof(buf)), 0);
    assert_string_equal(buf, "max 50000");
    assert_int_equal(rt_cgroup_cpu_max_format(true, 1, true, 1, buf, 3), -ENAMETOOLONG);
}

static void test_cgroup_path(void **state)
{
    char out[512];
    assert_int_equal(rt_cgroup_path_resolve(NULL, "abc", out, sizeof(out)), 0);
    assert_string_equal(out, "/picocri/abc");
    assert_int_equal(rt_cgroup_path_resolve("/kubepods/pod1/c1/", "x", out, sizeof(out)), 0);
    assert_string_equal(out, "/kubepods/pod1/c1");
    assert_int_equal(rt_cgroup_path_resolve("rel/x", "x", out, sizeof(out)), 0);
    assert_string_equal(out, "/picocri/rel/x");
    assert_int_equal(rt_cgroup_path_resolve("kubepods-burstable-pod12.slice:cri-containerd:ab",
                                            "x", out, sizeof(out)), 0);
    assert_string_equal(out, "/kubepods.slice/kubepods-burstable.slice/"
                             "kubepods-burstable-pod12.slice/cri-containerd-ab.scope");
    assert_int_equal(rt_cgroup_path_resolve(":pfx:name", "x", out, sizeof(out)), 0);
    assert_string_equal(out, "/system.slice/pfx-name.scope");
    assert_int_equal(rt_cgroup_path_resolve("-.slice::c", "x", out, sizeof(out)), 0);
    assert_string_equal(out, "/c.scope");
    assert_int_equal(rt_cgroup_path_resolve("/a/../b", "x", out, sizeof(out)), -EINVAL);
    assert_int_equal(rt_cgroup_path_resolve("../b", "x", out, sizeof(out)), -EINVAL);
    assert_int_equal(rt_cgroup_path_resolve("bad--x.slice:p:n", "x", out, sizeof(out)),
                     -EINVAL);
    assert_int_equal(rt_cgroup_path_resolve("/", "x", out, sizeof(out)), -EINVAL);
    assert_int_equal(rt_cgroup_path_resolve("/x", "x", out, 2), -ENAMETOOLONG);
}

static void test_resources_and_process(void **state)
{
    struct rt_resources r;
    struct rt_process *p = NULL;
    struct ag_err err;
    const char *res = "{\"pids\":{\"limit\":-1},\"hugepageLimits\":[{\"pageSize\":\"2MB\","
                      "\"limit\":4194304}],\"unified\":{\"memory.high\":\"1000\"}}";
    const char *proc = "{\"cwd\":\"/w\",\"args\":[\"ls\"],\"terminal\":true,"
                       "\"consoleSize\":{\"height\":24,\"width\":80}}";
    ag_err_init(&err);
    assert_int_equal(rt_resources_parse(res, strlen(res), &r, &err), 0);
    assert_int_equal(r.pids_limit, -1);
    assert_string_equal(r.hugepages[0].page_size, "2MB");
    assert_string_equal(r.unified[0].key, "memory.high");
    rt_resources_fini(&r);
    assert_true(rt_resources_parse("{\"unified\":{\"../x\":\"1\"}}", 24, &r, &err) < 0);
    assert_int_equal(rt_process_parse(proc, strlen(proc), &p, &err), 0);
    assert_true(p->terminal);
    assert_int_equal(p->cons_width, 80);
    rt_process_free(p);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_valid),     cmocka_unit_test(test_parse_invalid),
        cmocka_unit_test(test_mount_options),   cmocka_unit_test(test_shares_to_weight),
        cmocka_unit_test(test_cpu_max),         cmocka_unit_test(test_cgroup_path),
        cmocka_unit_test(test_resources_and_process),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
