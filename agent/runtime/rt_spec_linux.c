/* agent/runtime: config.json loader, the "linux" object.
 *
 * Namespaces, id mappings, devices, cgroupsPath and resources, sysctl,
 * masked/read-only paths, rootfs propagation and seccomp, plus the
 * capability name table.  Same invariant as rt_spec.c: everything returned
 * is validated; enums are mapped to kernel/libseccomp constants here so the
 * child between fork and exec only does syscalls.
 */
#include <seccomp.h>
#include <string.h>
#include <sys/mount.h>

#include "rt_internal.h"

static const char *const ns_names[RT_NS_COUNT] = {
    [RT_NS_USER] = "user", [RT_NS_MOUNT] = "mount", [RT_NS_PID] = "pid",
    [RT_NS_NET] = "network", [RT_NS_IPC] = "ipc",  [RT_NS_UTS] = "uts",
    [RT_NS_CGROUP] = "cgroup", [RT_NS_TIME] = "time",
};

const char *rt__ns_name(enum rt_ns_type t) { return ns_names[t]; }

static const char *const cap_names[] = {
    "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_DAC_READ_SEARCH", "CAP_FOWNER", "CAP_FSETID",
    "CAP_KILL", "CAP_SETGID", "CAP_SETUID", "CAP_SETPCAP", "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST", "CAP_NET_ADMIN", "CAP_NET_RAW",
    "CAP_IPC_LOCK", "CAP_IPC_OWNER", "CAP_SYS_MODULE", "CAP_SYS_RAWIO", "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE", "CAP_SYS_PACCT", "CAP_SYS_ADMIN", "CAP_SYS_BOOT", "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE", "CAP_SYS_TIME", "CAP_SYS_TTY_CONFIG", "CAP_MKNOD", "CAP_LEASE",
    "CAP_AUDIT_WRITE", "CAP_AUDIT_CONTROL", "CAP_SETFCAP", "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN", "CAP_SYSLOG", "CAP_WAKE_ALARM", "CAP_BLOCK_SUSPEND", "CAP_AUDIT_READ",
    "CAP_PERFMON", "CAP_BPF", "CAP_CHECKPOINT_RESTORE",
};

int rt__cap_parse(const char *name)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(cap_names); i++)
        if (!strcmp(cap_names[i], name))
            return (int)i;
    return -EINVAL;
}

static int parse_namespaces(const cJSON *arr, struct rt_spec *s, struct ag_err *err)
{
    const cJSON *e;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return ag_err_set(err, -EINVAL, "namespaces: not an array");
    cJSON_ArrayForEach(e, arr)
    {
        _cleanup_free_ char *type = NULL, *path = NULL;
        int t = -1;
        if (!cJSON_IsObject(e) || rt__json_str(e, "type", true, &type, err) < 0 ||
            rt__json_str(e, "path", false, &path, err) < 0)
            return ag_err_set(err, -EINVAL, "namespaces: entry needs a string type");
        for (int i = 0; i < RT_NS_COUNT; i++)
            if (!strcmp(ns_names[i], type))
                t = i;
        if (t < 0) {
            char esc[80];
            ag_str_escape(esc, sizeof(esc), type, 64);
            return ag_err_set(err, -EINVAL, "namespaces: unknown type \"%s\"", esc);
        }
        if (s->ns[t].enabled)
            return ag_err_set(err, -EINVAL, "namespaces: duplicate type %s", type);
        if (path && path[0] != '/')
            return ag_err_set(err, -EINVAL, "namespaces: %s path must be absolute", type);
        s->ns[t].enabled = true;
        s->ns[t].path = (path && path[0]) ? steal_ptr(&path) : NULL;
    }
    return 0;
}

static int parse_idmaps(const cJSON *obj, const char *key, struct rt_idmap **out, size_t *count,
                        struct ag_err *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(obj, key), *e;
    size_t n = 0;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > 340)
        return ag_err_set(err, -EINVAL, "%s: not an array of at most 340 entries", key);
    cJSON_ArrayForEach(e, arr) n++;
    *out = calloc(n ? n : 1, sizeof(**out));
    if (!*out)
        return ag_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(e, arr)
    {
        uint64_t c = 0, h = 0, sz = 0;
        bool hc = false, hh = false, hs = false;
        if (!cJSON_IsObject(e) || rt__json_u64(e, "containerID", &hc, &c, err) < 0 ||
            rt__json_u64(e, "hostID", &hh, &h, err) < 0 ||
            rt__json_u64(e, "size", &hs, &sz, err) < 0 || !hc || !hh || !hs ||
            c > UINT32_MAX || h > UINT32_MAX || sz == 0 || sz > UINT32_MAX)
            return ag_err_set(err, -EINVAL, "%s[%zu]: invalid mapping", key, *count);
        (*out)[*count] = (struct rt_idmap){(uint32_t)c, (uint32_t)h, (uint32_t)sz};
        (*count)++;
    }
    return 0;
}

static int parse_devices(const cJSON *arr, struct rt_spec *s, struct ag_err *err)
{
    const cJSON *e;
    size_t n = 0;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return ag_err_set(err, -EINVAL, "devices: not an array");
    cJSON_ArrayForEach(e, arr) n++;
    s->devices = calloc(n ? n : 1, sizeof(*s->devices));
    if (!s->devices)
        return ag_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(e, arr)
    {
        struct rt_device *d = &s->devices[s->devices_count++];
        _cleanup_free_ char *type = NULL;
        uint64_t mode = 0666, uid = 0, gid = 0;
        bool hmaj = false, hmin = false;
        if (!cJSON_IsObject(e) || rt__json_str(e, "type", true, &type, err) < 0 ||
            rt__json_str(e, "path", true, &d->path, err) < 0 ||
            rt__json_i64(e, "major", &hmaj, &d->major, err) < 0 ||
            rt__json_i64(e, "minor", &hmin, &d->minor, err) < 0 ||
            rt__json_u64(e, "fileMode", NULL, &mode, err) < 0 ||
            rt__json_u64(e, "uid", NULL, &uid, err) < 0 ||
            rt__json_u64(e, "gid", NULL, &gid, err) < 0)
            return ag_err_set(err, -EINVAL, "devices[%zu]: invalid", s->devices_count - 1);
        if (strlen(type) != 1 || !strchr("cbup", type[0]))
            return ag_err_set(err, -EINVAL, "devices[%zu]: type must be c, b, u or p",
                              s->devices_count - 1);
        d->type = type[0] == 'u' ? 'c' : type[0];
        if (d->type != 'p' && (!hmaj || !hmin || d->major < 0 || d->minor < 0))
            return ag_err_set(err, -EINVAL, "devices[%zu]: major and minor required",
                              s->devices_count - 1);
        if (d->path[0] != '/' || strstr(d->path, ".."))
            return ag_err_set(err, -EINVAL, "devices[%zu]: path must be absolute",
                              s->devices_count - 1);
        d->file_mode = (uint32_t)(mode & 07777);
        d->uid = (uint32_t)uid;
        d->gid = (uint32_t)gid;
    }
    return 0;
}

/* ---- resources ------------------------------------------------------------------ */

static int parse_dev_rules(const cJSON *arr, struct rt_resources *r, struct ag_err *err)
{
    const cJSON *e;
    size_t n = 0;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return ag_err_set(err, -EINVAL, "resources.devices: not an array");
    cJSON_ArrayForEach(e, arr) n++;
    r->devices = calloc(n ? n : 1, sizeof(*r->devices));
    if (!r->devices)
        return ag_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(e, arr)
    {
        struct rt_dev_rule *d = &r->devices[r->devices_count++];
        _cleanup_free_ char *type = NULL, *access = NULL;
        bool hmaj = false, hmin = false;
        const cJSON *allow = cJSON_GetObjectItemCaseSensitive(e, "allow");
        if (!cJSON_IsBool(allow) || rt__json_str(e, "type", false, &type, err) < 0 ||
            rt__json_str(e, "access", false, &access, err) < 0 ||
            rt__json_i64(e, "major", &hmaj, &d->major, err) < 0 ||
            rt__json_i64(e, "minor", &hmin, &d->minor, err) < 0)
            return ag_err_set(err, -EINVAL, "resources.devices[%zu]: invalid",
                              r->devices_count - 1);
        d->allow = cJSON_IsTrue(allow);
        d->type = type ? type[0] : 'a';
        if ((type && strlen(type) != 1) || !strchr("acb", d->type))
            return ag_err_set(err, -EINVAL, "resources.devices: type must be a, c or b");
        if (!hmaj || d->major < 0)
            d->major = -1;
        if (!hmin || d->minor < 0)
            d->minor = -1;
        if (!access)
            strcpy(d->access, "rwm");
        else if (strlen(access) > 3 || strspn(access, "rwm") != strlen(access))
            return ag_err_set(err, -EINVAL, "resources.devices: access must be within rwm");
        else
            strcpy(d->access, access);
    }
    return 0;
}

static int parse_cpu(const cJSON *cpu, struct rt_resources *r, struct ag_err *err)
{
    if (!cpu || cJSON_IsNull(cpu))
        return 0;
    if (!cJSON_IsObject(cpu))
        return ag_err_set(err, -EINVAL, "resources.cpu: not an object");
    if (rt__json_u64(cpu, "shares", &r->has_cpu_shares, &r->cpu_shares, err) < 0 ||
        rt__json_i64(cpu, "quota", &r->has_cpu_quota, &r->cpu_quota, err) < 0 ||
        rt__json_u64(cpu, "period", &r->has_cpu_period, &r->cpu_period, err) < 0 ||
        rt__json_u64(cpu, "burst", &r->has_cpu_burst, &r->cpu_burst, err) < 0 ||
        rt__json_i64(cpu, "idle", &r->has_cpu_idle, &r->cpu_idle, err) < 0 ||
        rt__json_i64(cpu, "realtimeRuntime", &r->has_rt_runtime, &r->rt_runtime, err) < 0 ||
        rt__json_u64(cpu, "realtimePeriod", &r->has_rt_period, &r->rt_period, err) < 0 ||
        rt__json_str(cpu, "cpus", false, &r->cpus, err) < 0 ||
        rt__json_str(cpu, "mems", false, &r->mems, err) < 0)
        return ag_err_wrap(err, "resources.cpu");
    if (r->has_cpu_shares && r->cpu_shares == 0)
        r->has_cpu_shares = false;
    if (r->has_cpu_period && r->cpu_period == 0)
        r->has_cpu_period = false;
    if (r->has_cpu_quota && r->cpu_quota == 0)
        r->has_cpu_quota = false;
    return 0;
}

static int parse_memory(const cJSON *mem, struct rt_resources *r, struct ag_err *err)
{
    if (!mem || cJSON_IsNull(mem))
        return 0;
    if (!cJSON_IsObject(mem))
        return ag_err_set(err, -EINVAL, "resources.memory: not an object");
    if (rt__json_i64(mem, "limit", &r->has_mem_limit, &r->mem_limit, err) < 0 ||
        rt__json_i64(mem, "reservation", &r->has_mem_reservation, &r->mem_reservation, err) < 0 ||
        rt__json_i64(mem, "swap", &r->has_mem_swap, &r->mem_swap, err) < 0 ||
        rt__json_u64(mem, "swappiness", &r->has_swappiness, &r->swappiness, err) < 0 ||
        rt__json_bool(mem, "disableOOMKiller", &r->disable_oom_killer, err) < 0)
        return ag_err_wrap(err, "resources.memory");
    if (r->has_swappiness && r->swappiness > 100)
        return ag_err_set(err, -EINVAL, "resources.memory.swappiness: 0..100");
    if ((r->has_mem_limit && r->mem_limit < -1) || (r->has_mem_swap && r->mem_swap < -1))
        return ag_err_set(err, -EINVAL, "resources.memory: negative limit");
    if (r->has_mem_swap && r->mem_swap > 0 && r->has_mem_limit && r->mem_limit > 0 &&
        r->mem_swap < r->mem_limit)
        return ag_err_set(err, -EINVAL, "resources.memory.swap: must be >= limit");
    return 0;
}

static int parse_hugepages(const cJSON *arr, struct rt_resources *r, struct ag_err *err)
{
    const cJSON *e;
    size_t n = 0;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return ag_err_set(err, -EINVAL, "resources.hugepageLimits: not an array");
    cJSON_ArrayForEach(e, arr) n++;
    r->hugepages = calloc(n ? n : 1, sizeof(*r->hugepages));
    if (!r->hugepages)
        return ag_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(e, arr)
    {
        struct rt_hugepage_limit *h = &r->hugepages[r->hugepages_count++];
        bool has = false;
        if (!cJSON_IsObject(e) || rt__json_str(e, "pageSize", true, &h->page_size, err) < 0 ||
            rt__json_u64(e, "limit", &has, &h->limit, err) < 0 || !has ||
            strspn(h->page_size, "0123456789KMGB") != strlen(h->page_size))
            return ag_err_set(err, -EINVAL, "resources.hugepageLimits: invalid entry");
    }
    return 0;
}

int rt__resources_parse_obj(const cJSON *res, struct rt_resources *r, struct ag_err *err)
{
    const cJSON *pids, *blk;
    if (!cJSON_IsObject(res))
        return ag_err_set(err, -EINVAL, "resources: not an object");
    if (parse_cpu(cJSON_GetObjectItemCaseSensitive(res, "cpu"), r, err) < 0 ||
        parse_memory(cJSON_GetObjectItemCaseSensitive(res, "memory"), r, err) < 0 ||
        parse_hugepages(cJSON_GetObjectItemCaseSensitive(res, "hugepageLimits"), r, err) < 0 ||
        parse_dev_rules(cJSON_GetObjectItemCaseSensitive(res, "devices"), r, err) < 0 ||
        rt__json_kv(res, "unified", &r->unified, &r->unified_count, err) < 0)
        return err->code;
    pids = cJSON_GetObjectItemCaseSensitive(res, "pids");
    if (cJSON_IsObject(pids) &&
        rt__json_i64(pids, "limit", &r->has_pids_limit, &r->pids_limit, err) < 0)
        return ag_err_wrap(err, "resources.pids");
    if (r->has_pids_limit && r->pids_limit < -1)
        r->pids_limit = -1;
    blk = cJSON_GetObjectItemCaseSensitive(res, "blockIO");
    if (cJSON_IsObject(blk)) {
        uint64_t w = 0;
        if (rt__json_u64(blk, "weight", &r->has_blkio_weight, &w, err) < 0 ||
            (r->has_blkio_weight && (w < 10 || w > 1000)))
            return ag_err_set(err, -EINVAL, "resources.blockIO.weight: 10..1000");
        r->blkio_weight = (uint16_t)w;
    }
    for (size_t i = 0; i < r->unified_count; i++)
        if (strchr(r->unified[i].key, '/') || r->unified[i].key[0] == '.')
            return ag_err_set(err, -EINVAL, "resources.unified: bad key");
    return 0;
}

void rt_resources_fini(struct rt_resources *r)
{
    free(r->cpus);
    free(r->mems);
    for (size_t i = 0; i < r->hugepages_count; i++)
        free(r->hugepages[i].page_size);
    free(r->hugepages);
    free(r->devices);
    rt__kv_free(r->unified, r->unified_count);
    memset(r, 0, sizeof(*r));
}

int rt_resources_parse(const char *json, size_t len, struct rt_resources *out, struct ag_err *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    memset(out, 0, sizeof(*out));
    if (!root)
        return ag_err_set(err, -EINVAL, "resources: not valid JSON");
    int rc = rt__resources_parse_obj(root, out, err);
    cJSON_Delete(root);
    if (rc < 0)
        rt_resources_fini(out);
    return rc;
}

/* ---- seccomp --------------------------------------------------------------------- */

static const struct {
    const char *name;
    uint32_t value;
} scmp_actions[] = {
    {"SCMP_ACT_KILL", SCMP_ACT_KILL},           {"SCMP_ACT_KILL_THREAD", SCMP_ACT_KILL_THREAD},
    {"SCMP_ACT_KILL_PROCESS", SCMP_ACT_KILL_PROCESS}, {"SCMP_ACT_TRAP", SCMP_ACT_TRAP},
    {"SCMP_ACT_ERRNO", SCMP_ACT_ERRNO(0)},      {"SCMP_ACT_TRACE", SCMP_ACT_TRACE(0)},
    {"SCMP_ACT_ALLOW", SCMP_ACT_ALLOW},         {"SCMP_ACT_LOG", SCMP_ACT_LOG},
};

static int parse_action(const cJSON *obj, const char *key, const char *errkey, uint32_t *out,
                        struct ag_err *err)
{
    _cleanup_free_ char *name = NULL;
    uint64_t eno = 1;
    bool has = false;
    if (rt__json_str(obj, key, true, &name, err) < 0 ||
        rt__json_u64(obj, errkey, &has, &eno, err) < 0 || eno > 4095)
        return ag_err_set(err, -EINVAL, "seccomp: %s invalid", key);
    for (size_t i = 0; i < AG_ARRAY_LEN(scmp_actions); i++) {
        if (strcmp(scmp_actions[i].name, name))
            continue;
        *out = scmp_actions[i].value;
        if (!strcmp(name, "SCMP_ACT_ERRNO"))
            *out = SCMP_ACT_ERRNO((uint32_t)eno);
        else if (!strcmp(name, "SCMP_ACT_TRACE"))
            *out = SCMP_ACT_TRACE((uint32_t)eno);
        return 0;
    }
    if (!strcmp(name, "SCMP_ACT_NOTIFY"))
        return ag_err_set(err, -ENOTSUP, "seccomp: SCMP_ACT_NOTIFY is not supported");
    return ag_err_set(err, -EINVAL, "seccomp: unknown action %.40s", name);
}

static int parse_scmp_args(const cJSON *arr, struct rt_seccomp_rule *r, struct ag_err *err)
{
    static const char *const ops[] = {"", "SCMP_CMP_NE", "SCMP_CMP_LT", "SCMP_CMP_LE",
                                      "SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT",
                                      "SCMP_CMP_MASKED_EQ"};
    const cJSON *e;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr) || cJSON_GetArraySize(arr) > 6)
        return ag_err_set(err, -EINVAL, "seccomp: args must be an array of at most 6");
    cJSON_ArrayForEach(e, arr)
    {
        struct rt_seccomp_arg *a = &r->args[r->args_count++];
        _cleanup_free_ char *op = NULL;
        uint64_t idx = 0;
        bool hi = false;
        if (!cJSON_IsObject(e) || rt__json_u64(e, "index", &hi, &idx, err) < 0 || !hi ||
            idx > 5 || rt__json_u64(e, "value", NULL, &a->value, err) < 0 ||
            rt__json_u64(e, "valueTwo", NULL, &a->value_two, err) < 0 ||
            rt__json_str(e, "op", true, &op, err) < 0)
            return ag_err_set(err, -EINVAL, "seccomp: invalid syscall argument");
        a->index = (unsigned)idx;
        a->op = 0;
        for (int i = 1; i < (int)AG_ARRAY_LEN(ops); i++)
            if (!strcmp(ops[i], op))
                a->op = i; /* matches enum scmp_compare */
        if (!a->op)
            return ag_err_set(err, -EINVAL, "seccomp: unknown op %.40s", op);
    }
    return 0;
}

static int parse_scmp_arches(const cJSON *sc, struct rt_seccomp *s, struct ag_err *err)
{
    char **names = NULL;
    size_t n = 0;
    if (rt__json_strv(sc, "architectures", &names, &n, err) < 0)
        return ag_err_wrap(err, "seccomp");
    s->arches = calloc(n + 1, sizeof(uint32_t));
    if (!s->arches) {
        rt__strv_free(names);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    for (size_t i = 0; i < n; i++) {
        const char *a = names[i];
        char lower[32];
        size_t j = 0;
        if (strncmp(a, "SCMP_ARCH_", 10) || strlen(a) - 10 >= sizeof(lower)) {
            rt__strv_free(names);
            return ag_err_set(err, -EINVAL, "seccomp: bad architecture");
        }
        for (a += 10; *a; a++)
            lower[j++] = (char)(*a >= 'A' && *a <= 'Z' ? *a + 32 : *a);
        lower[j] = 0;
        uint32_t v = seccomp_arch_resolve_name(lower);
        if (!v) {
            ag_err_set(err, -EINVAL, "seccomp: unknown architecture %.40s", names[i]);
            rt__strv_free(names);
            return err->code;
        }
        s->arches[s->arches_count++] = v;
    }
    rt__strv_free(names);
    return 0;
}

static int parse_seccomp(const cJSON *sc, struct rt_spec *spec, struct ag_err *err)
{
    const cJSON *arr, *e;
    char **flags = NULL;
    size_t n = 0;
    if (!sc || cJSON_IsNull(sc))
        return 0;
    if (!cJSON_IsObject(sc))
        return ag_err_set(err, -EINVAL, "seccomp: not an object");
    struct rt_seccomp *s = spec->seccomp = calloc(1, sizeof(*s));
    if (!s)
        return ag_err_set(err, -ENOMEM, "out of memory");
    if (parse_action(sc, "defaultAction", "defaultErrnoRet", &s->default_action, err) < 0 ||
        parse_scmp_arches(sc, s, err) < 0 || rt__json_strv(sc, "flags", &flags, &n, err) < 0)
        return err->code;
    for (size_t i = 0; i < n; i++) {
        if (!strcmp(flags[i], "SECCOMP_FILTER_FLAG_LOG"))
            s->flags |= 2;
        else if (!strcmp(flags[i], "SECCOMP_FILTER_FLAG_SPEC_ALLOW"))
            s->flags |= 4;
        else if (strcmp(flags[i], "SECCOMP_FILTER_FLAG_TSYNC")) {
            rt__strv_free(flags);
            return ag_err_set(err, -EINVAL, "seccomp: unsupported flag");
        }
    }
    rt__strv_free(flags);
    arr = cJSON_GetObjectItemCaseSensitive(sc, "syscalls");
    n = 0;
    if (arr && !cJSON_IsArray(arr))
        return ag_err_set(err, -EINVAL, "seccomp.syscalls: not an array");
    cJSON_ArrayForEach(e, arr) n++;
    s->rules = calloc(n ? n : 1, sizeof(*s->rules));
    if (!s->rules)
        return ag_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(e, arr)
    {
        struct rt_seccomp_rule *r = &s->rules[s->rules_count++];
        if (!cJSON_IsObject(e) || rt__json_strv(e, "names", &r->names, &r->names_count, err) < 0 ||
            parse_action(e, "action", "errnoRet", &r->action, err) < 0 ||
            parse_scmp_args(cJSON_GetObjectItemCaseSensitive(e, "args"), r, err) < 0)
            return ag_err_wrap(err, "seccomp.syscalls[%zu]", s->rules_count - 1);
    }
    return 0;
}

/* ---- linux object ---------------------------------------------------------------- */

static int parse_propagation(const char *v, unsigned long *out, struct ag_err *err)
{
    static const struct {
        const char *name;
        unsigned long flags;
    } t[] = {{"shared", MS_SHARED | MS_REC},     {"rshared", MS_SHARED | MS_REC},
             {"slave", MS_SLAVE | MS_REC},       {"rslave", MS_SLAVE | MS_REC},
             {"private", MS_PRIVATE | MS_REC},   {"rprivate", MS_PRIVATE | MS_REC},
             {"unbindable", MS_UNBINDABLE | MS_REC}, {"runbindable", MS_UNBINDABLE | MS_REC}};
    for (size_t i = 0; i < AG_ARRAY_LEN(t); i++)
        if (!strcmp(t[i].name, v)) {
            *out = t[i].flags;
            return 0;
        }
    return ag_err_set(err, -EINVAL, "rootfsPropagation: unknown value %.32s", v);
}

static int check_abs_paths(char **v, size_t n, const char *key, struct ag_err *err)
{
    for (size_t i = 0; i < n; i++)
        if (v[i][0] != '/' || strstr(v[i], "/../") || !strcmp(v[i], "/"))
            return ag_err_set(err, -EINVAL, "%s[%zu]: must be an absolute path", key, i);
    return 0;
}

int rt__spec_linux_parse(const cJSON *lx, struct rt_spec *s, struct ag_err *err)
{
    const cJSON *res;
    _cleanup_free_ char *prop = NULL;
    if (!cJSON_IsObject(lx))
        return ag_err_set(err, -EINVAL, "not an object");
    if (parse_namespaces(cJSON_GetObjectItemCaseSensitive(lx, "namespaces"), s, err) < 0 ||
        parse_idmaps(lx, "uidMappings", &s->uid_maps, &s->uid_maps_count, err) < 0 ||
        parse_idmaps(lx, "gidMappings", &s->gid_maps, &s->gid_maps_count, err) < 0 ||
        parse_devices(cJSON_GetObjectItemCaseSensitive(lx, "devices"), s, err) < 0 ||
        rt__json_str(lx, "cgroupsPath", false, &s->cgroups_path, err) < 0 ||
        rt__json_kv(lx, "sysctl", &s->sysctl, &s->sysctl_count, err) < 0 ||
        rt__json_strv(lx, "maskedPaths", &s->masked_paths, &s->masked_count, err) < 0 ||
        rt__json_strv(lx, "readonlyPaths", &s->readonly_paths, &s->readonly_count, err) < 0 ||
        rt__json_str(lx, "rootfsPropagation", false, &prop, err) < 0 ||
        parse_seccomp(cJSON_GetObjectItemCaseSensitive(lx, "seccomp"), s, err) < 0)
        return err->code;
    if (check_abs_paths(s->masked_paths, s->masked_count, "maskedPaths", err) < 0 ||
        check_abs_paths(s->readonly_paths, s->readonly_count, "readonlyPaths", err) < 0)
        return err->code;
    if (prop && parse_propagation(prop, &s->rootfs_propagation, err) < 0)
        return err->code;
    res = cJSON_GetObjectItemCaseSensitive(lx, "resources");
    if (res && !cJSON_IsNull(res) && rt__resources_parse_obj(res, &s->resources, err) < 0)
        return err->code;
    if ((s->uid_maps_count || s->gid_maps_count) && !s->ns[RT_NS_USER].enabled)
        return ag_err_set(err, -EINVAL, "uidMappings: need a user namespace");
    if (s->ns[RT_NS_USER].enabled && !s->ns[RT_NS_USER].path &&
        (!s->uid_maps_count || !s->gid_maps_count))
        return ag_err_set(err, -EINVAL, "namespaces: a new user namespace needs "
                                        "uidMappings and gidMappings");
    for (size_t i = 0; i < s->sysctl_count; i++)
        if (strstr(s->sysctl[i].key, "..") || strchr(s->sysctl[i].key, '/'))
            return ag_err_set(err, -EINVAL, "sysctl: bad key");
    return 0;
}

void rt__spec_linux_free(struct rt_spec *s)
{
    for (int i = 0; i < RT_NS_COUNT; i++)
        free(s->ns[i].path);
    free(s->uid_maps);
    free(s->gid_maps);
    for (size_t i = 0; i < s->devices_count; i++)
        free(s->devices[i].path);
    free(s->devices);
    free(s->cgroups_path);
    rt_resources_fini(&s->resources);
    rt__kv_free(s->sysctl, s->sysctl_count);
    rt__strv_free(s->masked_paths);
    rt__strv_free(s->readonly_paths);
    if (s->seccomp) {
        for (size_t i = 0; i < s->seccomp->rules_count; i++)
            rt__strv_free(s->seccomp->rules[i].names);
        free(s->seccomp->rules);
        free(s->seccomp->arches);
        free(s->seccomp);
    }
}
