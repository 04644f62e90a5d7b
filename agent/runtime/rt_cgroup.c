/* agent/runtime: cgroup common code.
 *
 * Layout detection (pure v2 when /sys/fs/cgroup is a cgroup2 mount, else v1
 * controllers, which also covers the hybrid layout with a controller-less
 * cgroup2 at /sys/fs/cgroup/unified), cgroupsPath resolution (absolute,
 * relative, systemd "slice:prefix:name"), the v2 value conversions, and the
 * small file helpers both backends (rt_cgroup_v1.c, rt_cgroup_v2.c) use.
 * Invariant: every path handed to a backend starts with '/' and has no
 * ".." component, so it cannot leave the cgroup mount.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/statfs.h>

#include "rt_internal.h"

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

#define RT_CGROUP_BASE "/picocri"

/* ---- conversions -------------------------------------------------------------------
 * Natural log and exp on positive doubles, so the agent needs no libm. */
static double ln_pos(double x)
{
    const double ln2 = 0.69314718055994530942;
    int k = 0;
    while (x >= 2.0) {
        x /= 2.0;
        k++;
    }
    while (x < 1.0) {
        x *= 2.0;
        k--;
    }
    /* ln(x) = 2 atanh((x-1)/(x+1)), |z| <= 1/3 here. */
    double z = (x - 1.0) / (x + 1.0), z2 = z * z, term = z, sum = 0;
    for (int n = 1; n < 60; n += 2) {
        sum += term / n;
        term *= z2;
    }
    return 2.0 * sum + k * ln2;
}

static double exp_pos(double y)
{
    const double ln2 = 0.69314718055994530942;
    int k = (int)(y / ln2);
    double r = y - k * ln2, term = 1, sum = 1;
    for (int n = 1; n < 40; n++) {
        term *= r / n;
        sum += term;
    }
    for (; k > 0; k--)
        sum *= 2.0;
    for (; k < 0; k++)
        sum /= 2.0;
    return sum;
}

uint64_t rt_cgroup_shares_to_weight(uint64_t shares)
{
    if (shares == 0)
        return 0;
    if (shares <= 2)
        return 1;
    if (shares >= 262144)
        return 10000;
    double l = ln_pos((double)shares) / ln_pos(2.0);
    double e = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
    double v = exp_pos(e * ln_pos(10.0));
    /* ceil(), tolerant of the last-bit error so 1024 maps to exactly 100. */
    uint64_t w = (uint64_t)(v - 1e-9);
    if ((double)w < v - 1e-9)
        w++;
    return w < 1 ? 1 : (w > 10000 ? 10000 : w);
}

int rt_cgroup_cpu_max_format(bool has_quota, int64_t quota, bool has_period, uint64_t period,
                             char *out, size_t out_len)
{
    int n;
    if (!has_period || period == 0)
        period = 100000;
    if (!has_quota || quota < 0)
        n = snprintf(out, out_len, "max %llu", (unsigned long long)period);
    else
        n = snprintf(out, out_len, "%lld %llu", (long long)quota, (unsigned long long)period);
    return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : 0;
}

/* ---- path resolution ---------------------------------------------------------------- */

static bool path_ok(const char *p)
{
    size_t n = strlen(p);
    return !strstr(p, "/../") && !strstr(p, "/./") && !(n >= 3 && !strcmp(p + n - 3, "/..")) &&
           strcmp(p, "..") && strncmp(p, "../", 3) && !strchr(p, '\n');
}

/* "a-b-c.slice" -> "/a.slice/a-b.slice/a-b-c.slice" (systemd's unit nesting). */
static int expand_slice(const char *slice, char *out, size_t out_len)
{
    size_t len = strlen(slice), o = 0;
    out[0] = 0;
    if (!strcmp(slice, "-.slice"))
        return 0;
    if (len < 7 || strcmp(slice + len - 6, ".slice") || strchr(slice, '/'))
        return -EINVAL;
    len -= 6;
    for (size_t i = 0; i <= len; i++) {
        if (i < len && slice[i] != '-')
            continue;
        if (i == 0 || (i < len && slice[i + 1] == '-') || slice[i - 1] == '-')
            return -EINVAL;
        int n = snprintf(out + o, out_len - o, "/%.*s.slice", (int)i, slice);
        if (n < 0 || (size_t)n >= out_len - o)
            return -ENAMETOOLONG;
        o += (size_t)n;
    }
    return 0;
}

int rt_cgroup_path_resolve(const char *cg, const char *id, char *out, size_t out_len)
{
    const char *c1, *c2;
    int n;
    if (!cg || !cg[0])
        n = snprintf(out, out_len, RT_CGROUP_BASE "/%s", id);
    else if (cg[0] == '/')
        n = snprintf(out, out_len, "%s", cg);
    else if ((c1 = strchr(cg, ':')) && (c2 = strchr(c1 + 1, ':')) && !strchr(c2 + 1, ':')) {
        char slice[512], spath[768];
        const char *prefix = c1 + 1, *name = c2 + 1;
        size_t slen = (size_t)(c1 - cg);
        if (slen >= sizeof(slice) || !name[0])
            return -EINVAL;
        memcpy(slice, cg, slen);
        slice[slen] = 0;
        if (expand_slice(slen ? slice : "system.slice", spath, sizeof(spath)) < 0)
            return -EINVAL;
        if (c2 == prefix) /* empty prefix */
            n = snprintf(out, out_len, "%s/%s%s", spath, name,
                         strstr(name, ".slice") ? "" : ".scope");
        else
            n = snprintf(out, out_len, "%s/%.*s-%s.scope", spath, (int)(c2 - prefix), prefix,
                         name);
    } else
        n = snprintf(out, out_len, RT_CGROUP_BASE "/%s", cg);
    if (n < 0 || (size_t)n >= out_len)
        return -ENAMETOOLONG;
    /* Drop a trailing slash so rmdir and parents work on the leaf. */
    while (n > 1 && out[n - 1] == '/')
        out[--n] = 0;
    return path_ok(out) && strcmp(out, "/") ? 0 : -EINVAL;
}

/* ---- detection -------------------------------------------------------------------- */

int rt__cgroup_init(struct rt_cgroup *cg, const char *path, struct ag_err *err)
{
    struct statfs sfs;
    if (strlen(path) >= sizeof(cg->path))
        return ag_err_set(err, -ENAMETOOLONG, "cgroup path too long");
    strcpy(cg->path, path);
    if (statfs("/sys/fs/cgroup", &sfs) < 0)
        return ag_err_set(err, -errno, "statfs /sys/fs/cgroup: %s", strerror(errno));
    if (sfs.f_type == CGROUP2_SUPER_MAGIC) {
        cg->ops = &rt__cgroup_v2_ops;
        return 0;
    }
    if (!rt__cgroup_v1_mount("memory") && !rt__cgroup_v1_mount("pids") &&
        !rt__cgroup_v1_mount("cpu"))
        return ag_err_set(err, -ENOTSUP, "no cgroup v2 at /sys/fs/cgroup and no v1 "
                                         "controllers mounted");
    cg->ops = &rt__cgroup_v1_ops;
    return 0;
}

/* ---- file helpers ----------------------------------------------------------------- */

int rt__cgroup_write(const char *dir, const char *file, const char *value)
{
    char path[1536];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    ssize_t n = write(fd, value, strlen(value));
    int rc = n < 0 ? -errno : 0;
    close(fd);
    return rc;
}

static int read_small(const char *dir, const char *file, char *buf, size_t len)
{
    char path[1536];
    if (snprintf(path, sizeof(path), "%s/%s", dir, file) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    size_t off = 0;
    while (off < len - 1) {
        ssize_t n = read(fd, buf + off, len - 1 - off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            break;
        off += (size_t)n;
    }
    close(fd);
    buf[off] = 0;
    return (int)off;
}

int rt__cgroup_read_u64(const char *dir, const char *file, uint64_t *out)
{
    char buf[64];
    int rc = read_small(dir, file, buf, sizeof(buf));
    if (rc < 0)
        return rc;
    if (!strncmp(buf, "max", 3)) {
        *out = UINT64_MAX;
        return 0;
    }
    char *end;
    errno = 0;
    *out = strtoull(buf, &end, 10);
    return (errno || end == buf) ? -EINVAL : 0;
}

int rt__cgroup_read_keyed(const char *dir, const char *file, const char *key, uint64_t *out)
{
    char buf[8192];
    size_t klen = strlen(key);
    int rc = read_small(dir, file, buf, sizeof(buf));
    if (rc < 0)
        return rc;
    for (char *line = buf; line && *line;) {
        char *nl = strchr(line, '\n');
        if (!strncmp(line, key, klen) && line[klen] == ' ') {
            *out = strtoull(line + klen + 1, NULL, 10);
            return 0;
        }
        line = nl ? nl + 1 : NULL;
    }
    return -ENOENT;
}

int rt__cgroup_read_procs(const char *dir, pid_t **pids, size_t *count)
{
    char path[1536];
    size_t cap = 16, n = 0;
    long v;
    *pids = NULL;
    *count = 0;
    if (snprintf(path, sizeof(path), "%s/cgroup.procs", dir) >= (int)sizeof(path))
        return -ENAMETOOLONG;
    FILE *f = fopen(path, "re");
    if (!f)
        return -errno;
    pid_t *r = malloc(cap * sizeof(*r));
    while (r && fscanf(f, "%ld", &v) == 1) {
        if (n == cap) {
            pid_t *nr = realloc(r, (cap *= 2) * sizeof(*r));
            if (!nr) {
                free(r);
                r = NULL;
                break;
            }
            r = nr;
        }
        r[n++] = (pid_t)v;
    }
    fclose(f);
    if (!r)
        return -ENOMEM;
    *pids = r;
    *count = n;
    return 0;
}
