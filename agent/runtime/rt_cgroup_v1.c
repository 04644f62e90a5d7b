/* agent/runtime: cgroup v1 backend (also the hybrid layout).
 *
 * One directory per mounted controller hierarchy, found in
 * /proc/self/mountinfo (so combined mounts such as cpu,cpuacct and a
 * controller-less cgroup2 at .../unified are handled without guessing).
 * Invariant: a resource asked for whose controller is not mounted is an
 * error, never silently dropped; removal only rmdirs the leaf we created.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "rt_internal.h"

static const char *const controllers[] = {
    "cpu", "cpuacct", "cpuset", "memory", "devices", "freezer", "blkio", "pids",
    "hugetlb", "net_cls", "net_prio", "perf_event", "rdma", "misc", "name=systemd",
};
#define N_CTRL AG_ARRAY_LEN(controllers)

static char mounts[N_CTRL][256];
static bool mounts_loaded;

static bool has_opt(const char *opts, const char *name)
{
    size_t n = strlen(name);
    for (const char *p = opts; p && *p;) {
        if (!strncmp(p, name, n) && (p[n] == ',' || p[n] == 0 || p[n] == ' ' || p[n] == '\n'))
            return true;
        p = strchr(p, ',');
        p = p ? p + 1 : NULL;
    }
    return false;
}

static void load_mounts(void)
{
    char line[1024];
    FILE *f;
    if (mounts_loaded)
        return;
    mounts_loaded = true;
    f = fopen("/proc/self/mountinfo", "re");
    if (!f)
        return;
    while (fgets(line, sizeof(line), f)) {
        char mp[256], *sep = strstr(line, " - "), fstype[32], src[64], opts[512];
        if (!sep || sscanf(line, "%*s %*s %*s %*s %255s", mp) != 1 ||
            sscanf(sep + 3, "%31s %63s %511s", fstype, src, opts) != 3 || strcmp(fstype, "cgroup"))
            continue;
        for (size_t i = 0; i < N_CTRL; i++)
            if (!mounts[i][0] && has_opt(opts, controllers[i]))
                snprintf(mounts[i], sizeof(mounts[i]), "%s", mp);
    }
    fclose(f);
}

const char *rt__cgroup_v1_mount(const char *controller)
{
    load_mounts();
    for (size_t i = 0; i < N_CTRL; i++)
        if (!strcmp(controllers[i], controller))
            return mounts[i][0] ? mounts[i] : NULL;
    return NULL;
}

/* Directory of cg in a controller's hierarchy; NULL when not mounted. */
static const char *dir_of(const struct rt_cgroup *cg, const char *ctrl, char *buf, size_t len)
{
    const char *m = rt__cgroup_v1_mount(ctrl);
    if (!m || snprintf(buf, len, "%s%s", m, cg->path) >= (int)len)
        return NULL;
    return buf;
}

/* A new cpuset cgroup starts with empty cpus/mems: copy from the parent at
 * each level so tasks can join. */
static int cpuset_fill(const char *mount, const char *path)
{
    char dir[1536], parent[1536], val[4096];
    static const char *const files[] = {"cpuset.cpus", "cpuset.mems"};
    snprintf(parent, sizeof(parent), "%s", mount);
    for (const char *p = path + 1;; p++) {
        if (*p != '/' && *p)
            continue;
        snprintf(dir, sizeof(dir), "%s%.*s", mount, (int)(p - path), path);
        for (int i = 0; i < 2; i++) {
            char cur[16];
            FILE *f;
            snprintf(val, sizeof(val), "%s/%s", dir, files[i]);
            f = fopen(val, "re");
            if (!f)
                return -errno;
            bool empty = !fgets(cur, sizeof(cur), f) || cur[0] == '\n';
            fclose(f);
            if (!empty)
                continue;
            snprintf(val, sizeof(val), "%s/%s", parent, files[i]);
            f = fopen(val, "re");
            if (!f)
                return -errno;
            if (!fgets(val, sizeof(val), f))
                val[0] = 0;
            fclose(f);
            int rc = rt__cgroup_write(dir, files[i], val);
            if (rc < 0)
                return rc;
        }
        snprintf(parent, sizeof(parent), "%s", dir);
        if (!*p)
            return 0;
    }
}

static int v1_create(struct rt_cgroup *cg, struct ag_err *err)
{
    char dir[1536];
    for (size_t i = 0; i < N_CTRL; i++) {
        if (!dir_of(cg, controllers[i], dir, sizeof(dir)))
            continue;
        int rc = ag_mkdir_p(dir, 0755);
        if (rc < 0)
            return ag_err_set(err, rc, "cgroup mkdir %s: %s", dir, strerror(-rc));
        if (!strcmp(controllers[i], "cpuset") &&
            (rc = cpuset_fill(rt__cgroup_v1_mount("cpuset"), cg->path)) < 0)
            return ag_err_set(err, rc, "cgroup cpuset init %s: %s", dir, strerror(-rc));
    }
    return 0;
}

static int v1_enter(struct rt_cgroup *cg, pid_t pid, struct ag_err *err)
{
    char dir[1536], v[24];
    snprintf(v, sizeof(v), "%d", (int)pid);
    for (size_t i = 0; i < N_CTRL; i++) {
        if (!dir_of(cg, controllers[i], dir, sizeof(dir)))
            continue;
        int rc = rt__cgroup_write(dir, "cgroup.procs", v);
        if (rc < 0)
            return ag_err_set(err, rc, "cgroup join %s: %s", dir, strerror(-rc));
    }
    return 0;
}

/* Writes one value; a missing controller is an error naming the field. */
static int put(struct rt_cgroup *cg, const char *ctrl, const char *file, const char *val,
               struct ag_err *err)
{
    char dir[1536];
    if (!dir_of(cg, ctrl, dir, sizeof(dir)))
        return ag_err_set(err, -ENOTSUP, "cgroup v1 controller %s is not mounted (for %s)",
                          ctrl, file);
    int rc = rt__cgroup_write(dir, file, val);
    if (rc < 0)
        return ag_err_set(err, rc, "cgroup write %s=%s: %s", file, val, strerror(-rc));
    return 0;
}

static int put_i64(struct rt_cgroup *cg, const char *ctrl, const char *file, int64_t v,
                   struct ag_err *err)
{
    char buf[32];
    snprintf(buf, sizeof(buf), "%lld", (long long)v);
    return put(cg, ctrl, file, buf, err);
}

static int v1_apply_devices(struct rt_cgroup *cg, const struct rt_resources *r, struct ag_err *err)
{
    for (size_t i = 0; i < r->devices_count; i++) {
        const struct rt_dev_rule *d = &r->devices[i];
        char line[64], maj[24] = "*", min[24] = "*";
        if (d->major >= 0)
            snprintf(maj, sizeof(maj), "%lld", (long long)d->major);
        if (d->minor >= 0)
            snprintf(min, sizeof(min), "%lld", (long long)d->minor);
        if (d->type == 'a')
            snprintf(line, sizeof(line), "a");
        else
            snprintf(line, sizeof(line), "%c %s:%s %s", d->type, maj, min, d->access);
        if (put(cg, "devices", d->allow ? "devices.allow" : "devices.deny", line, err) < 0)
            return err->code;
    }
    return 0;
}

static int v1_apply_memory(struct rt_cgroup *cg, const struct rt_resources *r, struct ag_err *err)
{
    if (r->has_mem_reservation &&
        put_i64(cg, "memory", "memory.soft_limit_in_bytes", r->mem_reservation, err) < 0)
        return err->code;
    /* memsw must stay >= limit: raise the limit first when swap grows, else
     * write swap last.  Try both orders, as runc does. */
    if (r->has_mem_limit && r->has_mem_swap && r->mem_swap != 0) {
        struct ag_err e2;
        if (put_i64(cg, "memory", "memory.memsw.limit_in_bytes", r->mem_swap, &e2) < 0) {
            if (put_i64(cg, "memory", "memory.limit_in_bytes", r->mem_limit, err) < 0 ||
                put_i64(cg, "memory", "memory.memsw.limit_in_bytes", r->mem_swap, err) < 0)
                return err->code;
        } else if (put_i64(cg, "memory", "memory.limit_in_bytes", r->mem_limit, err) < 0)
            return err->code;
    } else if (r->has_mem_limit &&
               put_i64(cg, "memory", "memory.limit_in_bytes", r->mem_limit, err) < 0)
        return err->code;
    if (r->has_swappiness && put_i64(cg, "memory", "memory.swappiness", (int64_t)r->swappiness,
                                     err) < 0)
        return err->code;
    if (r->disable_oom_killer && put(cg, "memory", "memory.oom_control", "1", err) < 0)
        return err->code;
    return 0;
}

static int v1_apply(struct rt_cgroup *cg, const struct rt_resources *r, struct ag_err *err)
{
    if ((r->has_cpu_shares && put_i64(cg, "cpu", "cpu.shares", (int64_t)r->cpu_shares, err) < 0) ||
        (r->has_cpu_period &&
         put_i64(cg, "cpu", "cpu.cfs_period_us", (int64_t)r->cpu_period, err) < 0) ||
        (r->has_cpu_quota && put_i64(cg, "cpu", "cpu.cfs_quota_us", r->cpu_quota, err) < 0) ||
        (r->has_cpu_burst &&
         put_i64(cg, "cpu", "cpu.cfs_burst_us", (int64_t)r->cpu_burst, err) < 0) ||
        (r->has_cpu_idle && put_i64(cg, "cpu", "cpu.idle", r->cpu_idle, err) < 0) ||
        (r->has_rt_period &&
         put_i64(cg, "cpu", "cpu.rt_period_us", (int64_t)r->rt_period, err) < 0) ||
        (r->has_rt_runtime && put_i64(cg, "cpu", "cpu.rt_runtime_us", r->rt_runtime, err) < 0) ||
        (r->cpus && r->cpus[0] && put(cg, "cpuset", "cpuset.cpus", r->cpus, err) < 0) ||
        (r->mems && r->mems[0] && put(cg, "cpuset", "cpuset.mems", r->mems, err) < 0))
        return err->code;
    if (v1_apply_memory(cg, r, err) < 0)
        return err->code;
    if (r->has_pids_limit && (r->pids_limit < 0 ? put(cg, "pids", "pids.max", "max", err)
                                                : put_i64(cg, "pids", "pids.max",
                                                          r->pids_limit, err)) < 0)
        return err->code;
    if (r->has_blkio_weight && put_i64(cg, "blkio", "blkio.weight", r->blkio_weight, err) < 0)
        return err->code;
    for (size_t i = 0; i < r->hugepages_count; i++) {
        char file[64];
        snprintf(file, sizeof(file), "hugetlb.%s.limit_in_bytes", r->hugepages[i].page_size);
        if (put_i64(cg, "hugetlb", file, (int64_t)r->hugepages[i].limit, err) < 0)
            return err->code;
    }
    if (r->unified_count)
        return ag_err_set(err, -ENOTSUP, "resources.unified needs cgroup v2");
    return v1_apply_devices(cg, r, err);
}

static int v1_pids(struct rt_cgroup *cg, pid_t **pids, size_t *count)
{
    char dir[1536];
    static const char *const pref[] = {"pids", "memory", "freezer", "cpu", "name=systemd"};
    for (size_t i = 0; i < AG_ARRAY_LEN(pref); i++)
        if (dir_of(cg, pref[i], dir, sizeof(dir)))
            return rt__cgroup_read_procs(dir, pids, count);
    return -ENOTSUP;
}

static int v1_freeze(struct rt_cgroup *cg, bool frozen)
{
    char dir[1536], state[32];
    if (!dir_of(cg, "freezer", dir, sizeof(dir)))
        return -ENOTSUP;
    int rc = rt__cgroup_write(dir, "freezer.state", frozen ? "FROZEN" : "THAWED");
    /* Freezing is asynchronous: wait (bounded) until the state says so. */
    for (int i = 0; rc == 0 && frozen && i < 1000; i++) {
        char path[1600];
        snprintf(path, sizeof(path), "%s/freezer.state", dir);
        FILE *f = fopen(path, "re");
        if (!f)
            return -errno;
        bool done = fgets(state, sizeof(state), f) && !strncmp(state, "FROZEN", 6);
        fclose(f);
        if (done)
            return 0;
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
    return rc;
}

static int v1_kill_all(struct rt_cgroup *cg, int sig)
{
    _cleanup_free_ pid_t *pids = NULL;
    size_t n = 0;
    bool frozen = v1_freeze(cg, true) == 0;
    int rc = v1_pids(cg, &pids, &n);
    for (size_t i = 0; rc == 0 && i < n; i++)
        if (kill(pids[i], sig) < 0 && errno != ESRCH)
            rc = -errno;
    if (frozen)
        (void)v1_freeze(cg, false);
    return rc;
}

static int v1_remove(struct rt_cgroup *cg)
{
    char dir[1536];
    int rc = 0;
    for (size_t i = 0; i < N_CTRL; i++) {
        if (!dir_of(cg, controllers[i], dir, sizeof(dir)))
            continue;
        /* Exiting tasks leave the cgroup asynchronously: retry EBUSY briefly. */
        for (int t = 0; t < 200; t++) {
            if (rmdir(dir) == 0 || errno == ENOENT)
                break;
            if (errno != EBUSY) {
                rc = -errno;
                break;
            }
            nanosleep(&(struct timespec){0, 5000000}, NULL);
            if (t == 199)
                rc = -EBUSY;
        }
    }
    return rc;
}

static int v1_stats(struct rt_cgroup *cg, struct rt_cgroup_stats *s)
{
    char dir[1536];
    uint64_t v = 0;
    memset(s, 0, sizeof(*s));
    if (dir_of(cg, "cpuacct", dir, sizeof(dir)))
        (void)rt__cgroup_read_u64(dir, "cpuacct.usage", &s->cpu_usage_ns);
    if (dir_of(cg, "memory", dir, sizeof(dir))) {
        uint64_t inactive = 0;
        (void)rt__cgroup_read_u64(dir, "memory.usage_in_bytes", &s->memory_usage);
        if (rt__cgroup_read_keyed(dir, "memory.stat", "total_inactive_file", &inactive) < 0)
            (void)rt__cgroup_read_keyed(dir, "memory.stat", "inactive_file", &inactive);
        s->memory_working_set = s->memory_usage > inactive ? s->memory_usage - inactive : 0;
        if (rt__cgroup_read_keyed(dir, "memory.stat", "total_rss", &s->memory_rss) < 0)
            (void)rt__cgroup_read_keyed(dir, "memory.stat", "rss", &s->memory_rss);
        if (rt__cgroup_read_u64(dir, "memory.limit_in_bytes", &v) == 0 && v < (1ull << 62))
            s->memory_limit = v;
        (void)rt__cgroup_read_keyed(dir, "memory.oom_control", "oom_kill", &s->oom_kills);
    }
    if (dir_of(cg, "pids", dir, sizeof(dir)))
        (void)rt__cgroup_read_u64(dir, "pids.current", &s->pids_current);
    return 0;
}

const struct rt_cgroup_ops rt__cgroup_v1_ops = {
    .name = "v1",
    .create = v1_create,
    .apply = v1_apply,
    .enter = v1_enter,
    .pids = v1_pids,
    .freeze = v1_freeze,
    .kill_all = v1_kill_all,
    .remove = v1_remove,
    .stats = v1_stats,
};
