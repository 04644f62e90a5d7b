/* agent/runtime: cgroup v2 backend (unified hierarchy at /sys/fs/cgroup).
 *
 * Creates the directory, enables the needed controllers top-down in each
 * ancestor's cgroup.subtree_control, converts v1-style OCI values (shares to
 * weight, quota/period to cpu.max, swap total to swap.max) and reads back
 * cpu.stat, memory.current/stat/events and pids.current.
 * Invariant: a resource whose controller is not available is an error that
 * names the controller; the device allow-list has no file interface on v2
 * (it needs an eBPF program, not implemented): it is reported, not faked.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "rt_internal.h"

#define V2_MOUNT "/sys/fs/cgroup"

static void dir_of(const struct rt_cgroup *cg, char *buf, size_t len)
{
    snprintf(buf, len, V2_MOUNT "%s", cg->path);
}

/* Enables in `dir`'s subtree_control each controller of `want` that the
 * directory offers.  Each is written alone so one refusal (a controller
 * bound to a v1 hierarchy) does not block the others. */
static void enable_controllers(const char *dir, const char *const *want)
{
    char avail[512] = "";
    char path[1600];
    snprintf(path, sizeof(path), "%s/cgroup.controllers", dir);
    FILE *f = fopen(path, "re");
    if (!f)
        return;
    if (!fgets(avail, sizeof(avail), f))
        avail[0] = 0;
    fclose(f);
    for (; *want; want++) {
        char tok[40];
        size_t n = strlen(*want);
        const char *p = strstr(avail, *want);
        if (!p || (p != avail && p[-1] != ' ') || (p[n] && p[n] != ' ' && p[n] != '\n'))
            continue;
        snprintf(tok, sizeof(tok), "+%s", *want);
        (void)rt__cgroup_write(dir, "cgroup.subtree_control", tok);
    }
}

static int v2_create(struct rt_cgroup *cg, struct ag_err *err)
{
    static const char *const want[] = {"cpu",     "cpuset", "memory", "pids", "io",
                                       "hugetlb", "rdma",   "misc",   NULL};
    char dir[1536];
    size_t base = strlen(V2_MOUNT);
    dir_of(cg, dir, sizeof(dir));
    int rc = ag_mkdir_p(dir, 0755);
    if (rc < 0)
        return ag_err_set(err, rc, "cgroup mkdir %s: %s", dir, strerror(-rc));
    /* Walk from the mount down to the parent of the leaf. */
    for (size_t i = base; dir[i]; i++) {
        if (dir[i] != '/')
            continue;
        dir[i] = 0;
        enable_controllers(dir, want);
        dir[i] = '/';
    }
    return 0;
}

static int v2_enter(struct rt_cgroup *cg, pid_t pid, struct ag_err *err)
{
    char dir[1536], v[24];
    dir_of(cg, dir, sizeof(dir));
    snprintf(v, sizeof(v), "%d", (int)pid);
    int rc = rt__cgroup_write(dir, "cgroup.procs", v);
    if (rc < 0)
        return ag_err_set(err, rc, "cgroup join %s: %s", dir, strerror(-rc));
    return 0;
}

static int put(struct rt_cgroup *cg, const char *file, const char *val, struct ag_err *err)
{
    char dir[1536];
    dir_of(cg, dir, sizeof(dir));
    int rc = rt__cgroup_write(dir, file, val);
    if (rc == -ENOENT || rc == -EACCES)
        return ag_err_set(err, -ENOTSUP, "cgroup v2: %s not available (controller not enabled "
                                         "for %s)", file, cg->path);
    if (rc < 0)
        return ag_err_set(err, rc, "cgroup write %s=%s: %s", file, val, strerror(-rc));
    return 0;
}

static int put_limit(struct rt_cgroup *cg, const char *file, int64_t v, struct ag_err *err)
{
    char buf[32];
    if (v < 0)
        snprintf(buf, sizeof(buf), "max");
    else
        snprintf(buf, sizeof(buf), "%lld", (long long)v);
    return put(cg, file, buf, err);
}

static int v2_apply_cpu(struct rt_cgroup *cg, const struct rt_resources *r, struct ag_err *err)
{
    char buf[64];
    if (r->has_cpu_shares) {
        snprintf(buf, sizeof(buf), "%llu",
                 (unsigned long long)rt_cgroup_shares_to_weight(r->cpu_shares));
        if (put(cg, "cpu.weight", buf, err) < 0)
            return err->code;
    }
    if (r->has_cpu_quota || r->has_cpu_period) {
        if (rt_cgroup_cpu_max_format(r->has_cpu_quota, r->cpu_quota, r->has_cpu_period,
                                     r->cpu_period, buf, sizeof(buf)) < 0 ||
            put(cg, "cpu.max", buf, err) < 0)
            return err->code;
    }
    if (r->has_cpu_burst && put_limit(cg, "cpu.max.burst", (int64_t)r->cpu_burst, err) < 0)
        return err->code;
    if (r->has_cpu_idle && put_limit(cg, "cpu.idle", r->cpu_idle, err) < 0)
        return err->code;
    if (r->has_rt_runtime || r->has_rt_period)
        return ag_err_set(err, -ENOTSUP, "cpu.realtimeRuntime/Period: not supported on "
                                         "cgroup v2");
    if ((r->cpus && r->cpus[0] && put(cg, "cpuset.cpus", r->cpus, err) < 0) ||
        (r->mems && r->mems[0] && put(cg, "cpuset.mems", r->mems, err) < 0))
        return err->code;
    return 0;
}

static int v2_apply_memory(struct rt_cgroup *cg, const struct rt_resources *r, struct ag_err *err)
{
    if (r->has_mem_limit && put_limit(cg, "memory.max", r->mem_limit, err) < 0)
        return err->code;
    if (r->has_mem_reservation && put_limit(cg, "memory.low", r->mem_reservation, err) < 0)
        return err->code;
    if (r->has_mem_swap) {
        int64_t swap = r->mem_swap;
        if (swap > 0) {
            if (!r->has_mem_limit || r->mem_limit <= 0)
                return ag_err_set(err, -EINVAL, "memory.swap needs memory.limit on cgroup v2");
            swap -= r->mem_limit; /* OCI swap is memory+swap; v2 wants swap alone. */
        }
        if (put_limit(cg, "memory.swap.max", swap, err) < 0)
            return err->code;
    }
    if (r->has_swappiness || r->disable_oom_killer)
        ag_log(AG_WARN, "cgroup v2 has no swappiness/oom_control: ignored cg=%s", cg->path);
    return 0;
}

static int v2_apply(struct rt_cgroup *cg, const struct rt_resources *r, struct ag_err *err)
{
    char buf[64];
    if (v2_apply_cpu(cg, r, err) < 0 || v2_apply_memory(cg, r, err) < 0)
        return err->code;
    if (r->has_pids_limit && put_limit(cg, "pids.max", r->pids_limit, err) < 0)
        return err->code;
    if (r->has_blkio_weight) {
        snprintf(buf, sizeof(buf), "%u", r->blkio_weight);
        struct ag_err e2;
        if (put(cg, "io.bfq.weight", buf, &e2) < 0) {
            snprintf(buf, sizeof(buf), "default %u", 1 + (r->blkio_weight - 10) * 9999 / 990);
            if (put(cg, "io.weight", buf, err) < 0)
                return err->code;
        }
    }
    for (size_t i = 0; i < r->hugepages_count; i++) {
        char file[64];
        snprintf(file, sizeof(file), "hugetlb.%s.max", r->hugepages[i].page_size);
        if (put_limit(cg, file, (int64_t)r->hugepages[i].limit, err) < 0)
            return err->code;
    }
    for (size_t i = 0; i < r->unified_count; i++)
        if (put(cg, r->unified[i].key, r->unified[i].value, err) < 0)
            return err->code;
    if (r->devices_count)
        ag_log(AG_WARN, "cgroup v2 device rules need an eBPF filter, not implemented: "
                        "%zu rules not enforced cg=%s", r->devices_count, cg->path);
    return 0;
}

static int v2_pids(struct rt_cgroup *cg, pid_t **pids, size_t *count)
{
    char dir[1536];
    dir_of(cg, dir, sizeof(dir));
    return rt__cgroup_read_procs(dir, pids, count);
}

static int v2_freeze(struct rt_cgroup *cg, bool frozen)
{
    char dir[1536];
    dir_of(cg, dir, sizeof(dir));
    int rc = rt__cgroup_write(dir, "cgroup.freeze", frozen ? "1" : "0");
    for (int i = 0; rc == 0 && frozen && i < 1000; i++) {
        uint64_t f = 0;
        if (rt__cgroup_read_keyed(dir, "cgroup.events", "frozen", &f) < 0 || f == 1)
            return 0;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return rc;
}

static int v2_kill_all(struct rt_cgroup *cg, int sig)
{
    char dir[1536];
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    dir_of(cg, dir, sizeof(dir));
    if (sig == SIGKILL && rt__cgroup_write(dir, "cgroup.kill", "1") == 0)
        return 0;
    bool frozen = v2_freeze(cg, true) == 0;
    int rc = rt__cgroup_read_procs(dir, &pids, &n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (kill(pids[i], sig) < 0 && errno != ESRCH)
            rc = -errno;
    if (frozen)
        (void)v2_freeze(cg, false);
    return rc;
}

static int v2_remove(struct rt_cgroup *cg)
{
    char dir[1536];
    dir_of(cg, dir, sizeof(dir));
    for (int t = 0; t < 200; t++) {
        if (rmdir(dir) == 0 || errno == ENOENT)
            return 0;
        if (errno != EBUSY)
            return -errno;
        nanosleep(&(struct timespec){0, 5000000}, NULL);
    }
    return -EBUSY;
}

static int v2_stats(struct rt_cgroup *cg, struct rt_cgroup_stats *s)
{
    char dir[1536];
    uint64_t v = 0, inactive = 0;
    memset(s, 0, sizeof(*s));
    dir_of(cg, dir, sizeof(dir));
    if (rt__cgroup_read_keyed(dir, "cpu.stat", "usage_usec", &v) == 0)
        s->cpu_usage_ns = v * 1000;
    (void)rt__cgroup_read_u64(dir, "memory.current", &s->memory_usage);
    (void)rt__cgroup_read_keyed(dir, "memory.stat", "inactive_file", &inactive);
    s->memory_working_set = s->memory_usage > inactive ? s->memory_usage - inactive : 0;
    (void)rt__cgroup_read_keyed(dir, "memory.stat", "anon", &s->memory_rss);
    if (rt__cgroup_read_u64(dir, "memory.max", &v) == 0 && v != UINT64_MAX)
        s->memory_limit = v;
    (void)rt__cgroup_read_keyed(dir, "memory.events", "oom_kill", &s->oom_kills);
    (void)rt__cgroup_read_u64(dir, "pids.current", &s->pids_current);
    return 0;
}

const struct rt_cgroup_ops rt__cgroup_v2_ops = {
    .name = "v2",
    .create = v2_create,
    .apply = v2_apply,
    .enter = v2_enter,
    .pids = v2_pids,
    .freeze = v2_freeze,
    .kill_all = v2_kill_all,
    .remove = v2_remove,
    .stats = v2_stats,
};
