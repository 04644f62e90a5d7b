/* agent/runtime: the pod cgroup and pod network counters of the runtime
 * service.
 *
 * Each pod gets one cgroup, made at RunPodSandbox: the kubelet's
 * cgroup_parent itself (cgroupfs "/kubepods/burstable/pod<uid>" or systemd
 * "kubepods-burstable-pod<uid>.slice", mapped to a cgroupfs path exactly as
 * the executor maps its containers' cgroupsPath, systemd is not contacted),
 * or "/picocri/pod-<id>" when the kubelet gave none.  The pod's resources
 * plus its overhead are applied there through the executor's cgroup
 * backends (v1 or v2, rt_cgroup_v*.c: no second cgroup writer), containers
 * and the infra process live in leaves below it (cgroup v2 allows no
 * processes in an inner node with controllers), and it is removed with the
 * pod.  PodSandboxStats reads it back; the pod's network counters come
 * from /proc/thread-self/net/dev read by a worker thread that entered the
 * pod's pinned network namespace for the read.
 *
 * Invariant: every path handed to a cgroup backend comes from
 * rt_cgroup_path_resolve (starts with '/', no "..").  Everything except
 * the path and resource computations blocks: thread pool only.
 */
#include "rt_svc_int.h"

#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "rt_internal.h"

#define POD_CG_DEFAULT "/picocri/pod-"
#define CPU_SHARES_MIN 2
#define CPU_SHARES_MAX 262144
#define CPU_QUOTA_MIN 1000
#define CPU_PERIOD_DEFAULT 100000

/* ---- paths (pure) ------------------------------------------------------------------ */

static bool systemd_parent(bool systemd, const char *parent, size_t n)
{
    return systemd && n > 6 && strcmp(parent + n - 6, ".slice") == 0;
}

int svc__ctr_cgroups_path(bool systemd, const char *parent, const char *pod_cgroup, const char *id,
                          char *out, size_t out_len)
{
    size_t n = parent != NULL ? strlen(parent) : 0;
    int w;

    if (n > 0 && systemd_parent(systemd, parent, n))
        w = snprintf(out, out_len, "%s:picocri:%s", parent, id);
    else if (n > 0)
        w = snprintf(out, out_len, "%s%s%s", parent, parent[n - 1] == '/' ? "" : "/", id);
    else if (pod_cgroup != NULL && pod_cgroup[0] != '\0')
        w = snprintf(out, out_len, "%s/%s", pod_cgroup, id);
    else
        return 0;
    if (w < 0 || (size_t)w >= out_len)
        return -ENAMETOOLONG;
    return 1;
}

int svc__pod_cgroup_path(bool systemd, const char *parent, const char *pod_id, char *out,
                         size_t out_len)
{
    char leaf[SVC_PATH], resolved[SVC_PATH];
    int rc;

    if (parent == NULL || parent[0] == '\0') {
        rc = snprintf(out, out_len, POD_CG_DEFAULT "%s", pod_id);
        return rc < 0 || (size_t)rc >= out_len ? -ENAMETOOLONG : 0;
    }
    /* The directory a container of this pod would be placed in: the same
     * mapping as the executor's, by construction. */
    if ((rc = svc__ctr_cgroups_path(systemd, parent, NULL, pod_id, leaf, sizeof(leaf))) < 0 ||
        (rc = rt_cgroup_path_resolve(leaf, pod_id, resolved, sizeof(resolved))) < 0)
        return rc == -ENAMETOOLONG ? rc : -EINVAL;
    char *slash = strrchr(resolved, '/');
    if (slash == NULL || slash == resolved)
        return -EINVAL; /* the pod cgroup would be the root */
    *slash = '\0';
    rc = snprintf(out, out_len, "%s", resolved);
    return rc < 0 || (size_t)rc >= out_len ? -ENAMETOOLONG : 0;
}

int svc__pod_infra_cgroup_path(const char *pod_cgroup, char *out, size_t out_len)
{
    int rc = snprintf(out, out_len, "%s/infra", pod_cgroup);
    return rc < 0 || (size_t)rc >= out_len ? -ENAMETOOLONG : 0;
}

/* ---- resources (pure) --------------------------------------------------------------- */

static int64_t pos(int64_t v) { return v > 0 ? v : 0; }

static int64_t clamp64(int64_t v, int64_t lo, int64_t hi) { return v < lo ? lo : v > hi ? hi : v; }

/* resources + overhead, the way the kubelet sizes a pod cgroup: requests
 * (shares) always add up; limits (quota, memory, hugepages) exist only when
 * the pod's containers are all limited (resources carries the limit), and
 * then the overhead is added to them. */
size_t svc__pod_resources(const runtime_v1_LinuxPodSandboxConfig *lc, struct rt_resources *out,
                          struct rt_hugepage_limit *hp, size_t hp_max)
{
    const runtime_v1_LinuxContainerResources *r = lc ? lc->resources : NULL;
    const runtime_v1_LinuxContainerResources *o = lc ? lc->overhead : NULL;
    static const runtime_v1_LinuxContainerResources none;
    size_t set = 0;

    memset(out, 0, sizeof(*out));
    if (r == NULL)
        r = &none;
    if (o == NULL)
        o = &none;
    int64_t shares = pos(r->cpu_shares) + pos(o->cpu_shares);
    if (shares > 0) {
        out->has_cpu_shares = true;
        out->cpu_shares = (uint64_t)clamp64(shares, CPU_SHARES_MIN, CPU_SHARES_MAX);
        set++;
    }
    if (r->cpu_quota > 0) {
        int64_t period = r->cpu_period > 0 ? r->cpu_period : CPU_PERIOD_DEFAULT;
        int64_t extra = 0;
        if (o->cpu_quota > 0) /* rescaled to the pod's period */
            extra =
                o->cpu_quota * period / (o->cpu_period > 0 ? o->cpu_period : CPU_PERIOD_DEFAULT);
        out->has_cpu_quota = out->has_cpu_period = true;
        out->cpu_period = (uint64_t)period;
        out->cpu_quota = clamp64(r->cpu_quota + extra, CPU_QUOTA_MIN, INT64_MAX / 2);
        set++;
    }
    if (r->memory_limit_in_bytes > 0) {
        out->has_mem_limit = true;
        out->mem_limit = r->memory_limit_in_bytes + pos(o->memory_limit_in_bytes);
        set++;
    }
    for (pb_size_t i = 0; i < r->hugepage_limits_count && out->hugepages_count < hp_max; i++) {
        const runtime_v1_HugepageLimit *h = &r->hugepage_limits[i];
        if (h->page_size == NULL || h->page_size[0] == '\0' || h->limit == 0)
            continue;
        struct rt_hugepage_limit *d = &hp[out->hugepages_count++];
        d->page_size = h->page_size; /* borrowed */
        d->limit = h->limit;
        for (pb_size_t k = 0; k < o->hugepage_limits_count; k++)
            if (o->hugepage_limits[k].page_size != NULL &&
                strcmp(o->hugepage_limits[k].page_size, h->page_size) == 0)
                d->limit += o->hugepage_limits[k].limit;
        set++;
    }
    out->hugepages = out->hugepages_count ? hp : NULL;
    return set;
}

/* ---- cgroup operations (blocking) ----------------------------------------------------- */

int svc__pod_cgroup_create(const char *path, const runtime_v1_LinuxPodSandboxConfig *lc,
                           struct ag_err *err)
{
    struct rt_hugepage_limit hp[8];
    struct rt_resources res;
    struct rt_cgroup cg;
    int rc;

    if ((rc = rt__cgroup_init(&cg, path, err)) < 0)
        return ag_err_wrap(err, "pod cgroup %s", path);
    if ((rc = cg.ops->create(&cg, err)) < 0)
        return ag_err_wrap(err, "create pod cgroup");
    if (svc__pod_resources(lc, &res, hp, AG_ARRAY_LEN(hp)) > 0 &&
        (rc = cg.ops->apply(&cg, &res, err)) < 0) {
        svc_ignore(cg.ops->remove(&cg));
        return ag_err_wrap(err, "apply pod resources to cgroup %s", path);
    }
    return 0;
}

int svc__pod_cgroup_enter(const char *leaf, pid_t pid, struct ag_err *err)
{
    struct rt_cgroup cg;

    if (rt__cgroup_init(&cg, leaf, err) < 0 || cg.ops->create(&cg, err) < 0 ||
        cg.ops->enter(&cg, pid, err) < 0)
        return ag_err_wrap(err, "put pod infra process %d in cgroup %s", (int)pid, leaf);
    return 0;
}

/* The infra leaf, then the pod cgroup.  Absent directories (reboot, never
 * made) are success; so is a kernel without any cgroup hierarchy. */
int svc__pod_cgroup_remove(const char *path, const char *infra_leaf)
{
    struct rt_cgroup cg;
    struct ag_err e;
    int rc = 0;

    ag_err_init(&e);
    if (infra_leaf != NULL && infra_leaf[0] != '\0' && rt__cgroup_init(&cg, infra_leaf, &e) == 0)
        rc = cg.ops->remove(&cg);
    if (path != NULL && path[0] != '\0' && rt__cgroup_init(&cg, path, &e) == 0) {
        int rc2 = cg.ops->remove(&cg);
        if (rc == 0)
            rc = rc2;
    }
    return rc;
}

int svc__pod_cgroup_stats(const char *path, struct rt_cgroup_stats *out)
{
    struct rt_cgroup cg;
    struct ag_err e;
    char probe[SVC_PATH];
    int rc;

    memset(out, 0, sizeof(*out));
    ag_err_init(&e);
    if ((rc = rt__cgroup_init(&cg, path, &e)) < 0)
        return rc;
    /* An absent cgroup (after a reboot) has no counters, not zeros. */
    const char *base =
        cg.ops == &rt__cgroup_v2_ops ? "/sys/fs/cgroup" : rt__cgroup_v1_mount("cpuacct");
    if (base == NULL)
        base = rt__cgroup_v1_mount("memory");
    if (base != NULL) {
        svc_fmt(probe, "%s%s", base, path);
        if (access(probe, F_OK) < 0)
            return -ENOENT;
    }
    return cg.ops->stats(&cg, out);
}

/* ---- network counters ------------------------------------------------------------------- */

/* One line of /proc/net/dev: "  eth0: rx_bytes rx_packets rx_errs ... (8
 * receive fields) tx_bytes tx_packets tx_errs ...".  Kernel-made text;
 * parsed with bounds anyway. */
static int parse_dev_line(const char *line, struct svc_netdev *d)
{
    unsigned long long v[16];
    const char *colon = strchr(line, ':');
    const char *name = line;

    if (colon == NULL)
        return -EINVAL;
    while (*name == ' ')
        name++;
    size_t n = (size_t)(colon - name);
    if (n == 0 || n >= sizeof(d->name))
        return -EINVAL;
    if (sscanf(colon + 1,
               "%llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu %llu "
               "%llu %llu %llu",
               &v[0], &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7], &v[8], &v[9], &v[10], &v[11],
               &v[12], &v[13], &v[14], &v[15]) != 16)
        return -EINVAL;
    memcpy(d->name, name, n);
    d->name[n] = '\0';
    d->rx_bytes = v[0];
    d->rx_errors = v[2];
    d->tx_bytes = v[8];
    d->tx_errors = v[10];
    return 0;
}

size_t svc__net_dev_parse(const char *text, struct svc_netdev *out, size_t max)
{
    size_t count = 0;

    for (const char *line = text; line != NULL && *line != '\0' && count < max;) {
        const char *nl = strchr(line, '\n');
        char buf[512];
        size_t len = nl ? (size_t)(nl - line) : strlen(line);
        if (len < sizeof(buf)) {
            memcpy(buf, line, len);
            buf[len] = '\0';
            if (parse_dev_line(buf, &out[count]) == 0 && strcmp(out[count].name, "lo") != 0)
                count++;
        }
        line = nl ? nl + 1 : NULL;
    }
    return count;
}

static int read_fd_text(int fd, char *buf, size_t len)
{
    size_t off = 0;

    while (off + 1 < len) {
        ssize_t n = read(fd, buf + off, len - 1 - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -errno;
        if (n == 0)
            break;
        off += (size_t)n;
    }
    buf[off] = '\0';
    return 0;
}

/* Enters netns_path with this (worker) thread only, reads its
 * /proc/thread-self/net/dev, and goes back.  setns(CLONE_NEWNET) is
 * per-thread; going back cannot fail while we hold the old namespace's fd
 * and CAP_SYS_ADMIN, and if it ever did, this thread would run later jobs
 * in the pod's network: that is a bug worth an abort. */
int svc__netns_dev_read(const char *netns_path, struct svc_netdev *out, size_t max, size_t *count)
{
    char buf[8192];
    int rc;

    *count = 0;
    _cleanup_close_ int self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
    if (self < 0)
        return -errno;
    _cleanup_close_ int target = open(netns_path, O_RDONLY | O_CLOEXEC);
    if (target < 0)
        return -errno;
    if (setns(target, CLONE_NEWNET) < 0)
        return -errno;
    int fd = open("/proc/thread-self/net/dev", O_RDONLY | O_CLOEXEC);
    rc = fd < 0 ? -errno : read_fd_text(fd, buf, sizeof(buf));
    if (fd >= 0)
        close(fd);
    ag_assert(setns(self, CLONE_NEWNET) == 0);
    if (rc == 0)
        *count = svc__net_dev_parse(buf, out, max);
    return rc;
}
