/* agent/runtime: the security and resource half of config.json generation:
 * capabilities, no_new_privs, masked and read-only paths, seccomp profiles
 * (RuntimeDefault, Localhost, Unconfined), sysctls, resources, the device
 * allow-list, and user/group resolution against the image's own files.
 * Invariant: nothing here widens privileges beyond what the request names;
 * an unknown capability or profile is an error, not a silent default. */
#include "rt_specgen.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

static const char *const all_caps[] = {
    "CAP_CHOWN",          "CAP_DAC_OVERRIDE",   "CAP_DAC_READ_SEARCH", "CAP_FOWNER",
    "CAP_FSETID",         "CAP_KILL",           "CAP_SETGID",          "CAP_SETUID",
    "CAP_SETPCAP",        "CAP_LINUX_IMMUTABLE", "CAP_NET_BIND_SERVICE", "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",      "CAP_NET_RAW",        "CAP_IPC_LOCK",        "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",     "CAP_SYS_RAWIO",      "CAP_SYS_CHROOT",      "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",      "CAP_SYS_ADMIN",      "CAP_SYS_BOOT",        "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",   "CAP_SYS_TIME",       "CAP_SYS_TTY_CONFIG",  "CAP_MKNOD",
    "CAP_LEASE",          "CAP_AUDIT_WRITE",    "CAP_AUDIT_CONTROL",   "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",   "CAP_MAC_ADMIN",      "CAP_SYSLOG",          "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",  "CAP_AUDIT_READ",     "CAP_PERFMON",         "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
};
#define N_CAPS AG_ARRAY_LEN(all_caps)

/* containerd's default set (the Docker/Kubernetes 14). */
static const char *const default_caps[] = {
    "CAP_CHOWN",  "CAP_DAC_OVERRIDE", "CAP_FSETID",           "CAP_FOWNER",     "CAP_MKNOD",
    "CAP_NET_RAW", "CAP_SETGID",      "CAP_SETUID",           "CAP_SETFCAP",    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL",     "CAP_AUDIT_WRITE",
};

static const char *const default_masked[] = {
    "/proc/acpi",         "/proc/asound",     "/proc/kcore",       "/proc/keys",
    "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug",
    "/sys/firmware",      "/sys/devices/virtual/powercap", "/proc/scsi",
};
static const char *const default_readonly[] = {"/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys",
                                               "/proc/sysrq-trigger"};

/* Index of a capability given as "CAP_X" or "X" (any case), or -1. */
static int cap_index(const char *name)
{
    char buf[64];
    size_t n = 0;

    if (strncasecmp(name, "CAP_", 4) != 0)
        n = (size_t)snprintf(buf, sizeof(buf), "CAP_");
    for (const char *p = name; *p && n + 1 < sizeof(buf); p++)
        buf[n++] = (char)((*p >= 'a' && *p <= 'z') ? *p - 32 : *p);
    buf[n] = '\0';
    for (size_t i = 0; i < N_CAPS; i++)
        if (strcmp(buf, all_caps[i]) == 0)
            return (int)i;
    return -1;
}

static bool has_all(char **list, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (strcasecmp(list[i], "ALL") == 0)
            return true;
    return false;
}

/* Computes the capability set as containerd does: ALL in add gives all,
 * ALL in drop clears, then named adds, then named drops. */
static int compute_caps(const runtime_v1_LinuxContainerSecurityContext *sc, bool set[N_CAPS],
                        bool ambient[N_CAPS], struct ag_err *err)
{
    const runtime_v1_Capability *c = sc ? sc->capabilities : NULL;

    memset(set, 0, N_CAPS * sizeof(bool));
    memset(ambient, 0, N_CAPS * sizeof(bool));
    if (sc != NULL && sc->privileged) {
        for (size_t i = 0; i < N_CAPS; i++)
            set[i] = true;
        return 0;
    }
    for (size_t i = 0; i < AG_ARRAY_LEN(default_caps); i++)
        set[cap_index(default_caps[i])] = true;
    if (c == NULL)
        return 0;
    if (has_all(c->add_capabilities, c->add_capabilities_count))
        for (size_t i = 0; i < N_CAPS; i++)
            set[i] = true;
    if (has_all(c->drop_capabilities, c->drop_capabilities_count))
        memset(set, 0, N_CAPS * sizeof(bool));
    for (size_t i = 0; i < c->add_capabilities_count; i++) {
        if (strcasecmp(c->add_capabilities[i], "ALL") == 0)
            continue;
        int k = cap_index(c->add_capabilities[i]);
        if (k < 0)
            return ag_err_set(err, -EINVAL, "unknown capability %s", c->add_capabilities[i]);
        set[k] = true;
    }
    for (size_t i = 0; i < c->drop_capabilities_count; i++) {
        if (strcasecmp(c->drop_capabilities[i], "ALL") == 0)
            continue;
        int k = cap_index(c->drop_capabilities[i]);
        if (k < 0)
            return ag_err_set(err, -EINVAL, "unknown capability %s", c->drop_capabilities[i]);
        set[k] = false;
    }
    for (size_t i = 0; i < c->add_ambient_capabilities_count; i++) {
        int k = cap_index(c->add_ambient_capabilities[i]);
        if (k < 0)
            return ag_err_set(err, -EINVAL, "unknown capability %s",
                              c->add_ambient_capabilities[i]);
        set[k] = ambient[k] = true;
    }
    return 0;
}

static cJSON *cap_array(const bool set[N_CAPS])
{
    cJSON *a = cJSON_CreateArray();
    for (size_t i = 0; a != NULL && i < N_CAPS; i++)
        if (set[i])
            cJSON_AddItemToArray(a, cJSON_CreateString(all_caps[i]));
    return a;
}

static int build_caps(cJSON *process, const bool set[N_CAPS], const bool ambient[N_CAPS])
{
    cJSON *caps = cJSON_AddObjectToObject(process, "capabilities");
    static const char *const sets[] = {"bounding", "effective", "permitted"};

    if (caps == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < AG_ARRAY_LEN(sets); i++)
        if (!cJSON_AddItemToObject(caps, sets[i], cap_array(set)))
            return -ENOMEM;
    /* Ambient capabilities must also be inheritable. */
    if (!cJSON_AddItemToObject(caps, "inheritable", cap_array(ambient)) ||
        !cJSON_AddItemToObject(caps, "ambient", cap_array(ambient)))
        return -ENOMEM;
    return 0;
}

/* The RuntimeDefault profile: allow by default, refuse the syscalls that
 * Docker's and containerd's default profiles keep from unprivileged
 * containers, except those a granted capability legitimately needs. */
struct denied {
    const char *cap; /* NULL: always denied */
    const char *names[16];
};
static const struct denied denied_syscalls[] = {
    {NULL, {"kexec_load", "kexec_file_load", "create_module", "get_kernel_syms",
            "query_module", "nfsservctl", "uselib", "vm86", "vm86old", "lookup_dcookie",
            "userfaultfd", "bpf", "perf_event_open", "open_by_handle_at", NULL}},
    {"CAP_SYS_ADMIN", {"mount", "umount", "umount2", "pivot_root", "unshare", "setns", "fsopen",
                       "fsconfig", "fsmount", "fspick", "move_mount", "open_tree",
                       "mount_setattr", "quotactl", "name_to_handle_at", NULL}},
    {"CAP_SYS_ADMIN", {"add_key", "keyctl", "request_key", "swapon", "swapoff", "sysfs",
                       "_sysctl", "ustat", NULL}},
    {"CAP_SYS_MODULE", {"init_module", "finit_module", "delete_module", NULL}},
    {"CAP_SYS_PTRACE", {"ptrace", "process_vm_readv", "process_vm_writev", "kcmp", NULL}},
    {"CAP_SYS_TIME", {"settimeofday", "stime", "clock_settime", "clock_adjtime", "adjtimex",
                      NULL}},
    {"CAP_SYS_BOOT", {"reboot", NULL}},
    {"CAP_SYS_PACCT", {"acct", NULL}},
    {"CAP_SYS_RAWIO", {"iopl", "ioperm", NULL}},
    {"CAP_SYS_NICE", {"move_pages", "set_mempolicy", "mbind", NULL}},
};

static cJSON *arch_list(void)
{
#if defined(__x86_64__)
    static const char *const a[] = {"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"};
#elif defined(__aarch64__)
    static const char *const a[] = {"SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM"};
#elif defined(__arm__)
    static const char *const a[] = {"SCMP_ARCH_ARM"};
#else
    static const char *const a[] = {"SCMP_ARCH_NATIVE"};
#endif
    return cJSON_CreateStringArray(a, (int)AG_ARRAY_LEN(a));
}

static cJSON *default_seccomp(const bool caps[N_CAPS])
{
    cJSON *s = cJSON_CreateObject();
    cJSON *rules = cJSON_CreateArray();
    cJSON *rule = cJSON_CreateObject();
    cJSON *names = cJSON_CreateArray();

    if (s == NULL || rules == NULL || rule == NULL || names == NULL) {
        cJSON_Delete(s);
        cJSON_Delete(rules);
        cJSON_Delete(rule);
        cJSON_Delete(names);
        return NULL;
    }
    cJSON_AddStringToObject(s, "defaultAction", "SCMP_ACT_ALLOW");
    cJSON_AddItemToObject(s, "architectures", arch_list());
    for (size_t i = 0; i < AG_ARRAY_LEN(denied_syscalls); i++) {
        const struct denied *d = &denied_syscalls[i];
        if (d->cap != NULL && caps[cap_index(d->cap)])
            continue;
        for (size_t k = 0; d->names[k] != NULL; k++)
            cJSON_AddItemToArray(names, cJSON_CreateString(d->names[k]));
    }
    cJSON_AddItemToObject(rule, "names", names);
    cJSON_AddStringToObject(rule, "action", "SCMP_ACT_ERRNO");
    cJSON_AddNumberToObject(rule, "errnoRet", EPERM);
    cJSON_AddItemToArray(rules, rule);
    cJSON_AddItemToObject(s, "syscalls", rules);
    return s;
}

/* The profile the request asks for: the SecurityProfile field, else the
 * deprecated seccomp_profile_path ("runtime/default", "localhost/<path>",
 * "unconfined").  Returns 0 with *out NULL for unconfined. */
static int pick_seccomp(const runtime_v1_LinuxContainerSecurityContext *sc, const bool caps[],
                        cJSON **out, struct ag_err *err)
{
    const char *localhost = NULL;
    bool runtime_default = false;

    *out = NULL;
    if (sc == NULL || sc->privileged)
        return 0;
    if (sc->seccomp != NULL) {
        switch (sc->seccomp->profile_type) {
        case runtime_v1_SecurityProfile_ProfileType_RuntimeDefault:
            runtime_default = true;
            break;
        case runtime_v1_SecurityProfile_ProfileType_Localhost:
            localhost = sc->seccomp->localhost_ref;
            break;
        case runtime_v1_SecurityProfile_ProfileType_Unconfined:
            return 0;
        default:
            return ag_err_set(err, -EINVAL, "unknown seccomp profile type %d",
                              (int)sc->seccomp->profile_type);
        }
    } else if (sc->seccomp_profile_path != NULL && sc->seccomp_profile_path[0] != '\0') {
        const char *p = sc->seccomp_profile_path;
        if (strcmp(p, "runtime/default") == 0 || strcmp(p, "docker/default") == 0)
            runtime_default = true;
        else if (strncmp(p, "localhost/", 10) == 0)
            localhost = p + 9; /* keeps the leading slash */
        else if (strcmp(p, "unconfined") != 0)
            return ag_err_set(err, -EINVAL, "unknown seccomp profile %s", p);
    }
    if (runtime_default) {
        *out = default_seccomp(caps);
        return *out ? 0 : ag_err_set(err, -ENOMEM, "seccomp");
    }
    if (localhost == NULL)
        return 0;
    _cleanup_free_ char *data = NULL;
    size_t len = 0;
    if (localhost[0] != '/' || ag_file_read(localhost, 1 << 20, &data, &len) < 0)
        return ag_err_set(err, -EINVAL, "seccomp profile %s cannot be read", localhost);
    *out = cJSON_ParseWithLength(data, len);
    if (*out == NULL || !cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return ag_err_set(err, -EINVAL, "seccomp profile %s is not a JSON object", localhost);
    }
    return 0;
}

static int add_paths(cJSON *linux_, const char *key, char **given, size_t given_n,
                     const char *const *dflt, size_t dflt_n)
{
    cJSON *a = given_n > 0 ? cJSON_CreateStringArray((const char *const *)given, (int)given_n)
                           : cJSON_CreateStringArray(dflt, (int)dflt_n);
    return (a != NULL && cJSON_AddItemToObject(linux_, key, a)) ? 0 : -ENOMEM;
}

static void add_device_rule(cJSON *list, bool allow, const char *type, int64_t major,
                            int64_t minor, const char *access)
{
    cJSON *r = cJSON_CreateObject();
    if (r == NULL || !cJSON_AddItemToArray(list, r)) {
        cJSON_Delete(r);
        return;
    }
    cJSON_AddBoolToObject(r, "allow", allow);
    if (type != NULL)
        cJSON_AddStringToObject(r, "type", type);
    if (major >= 0)
        cJSON_AddNumberToObject(r, "major", (double)major);
    if (minor >= 0)
        cJSON_AddNumberToObject(r, "minor", (double)minor);
    cJSON_AddStringToObject(r, "access", access);
}

/* The usual allow-list: everything denied, then mknod of anything, the
 * standard character devices, ptys, tun; the requested devices; all for
 * privileged containers. */
static void device_rules(cJSON *res, bool privileged)
{
    static const int std_devs[][2] = {{1, 3}, {1, 5}, {1, 7}, {1, 8}, {1, 9}, {5, 0}, {5, 1},
                                      {5, 2}, {10, 200}};
    cJSON *list = cJSON_AddArrayToObject(res, "devices");

    if (privileged) {
        add_device_rule(list, true, "a", -1, -1, "rwm");
        return;
    }
    add_device_rule(list, false, "a", -1, -1, "rwm");
    add_device_rule(list, true, "c", -1, -1, "m");
    add_device_rule(list, true, "b", -1, -1, "m");
    for (size_t i = 0; i < AG_ARRAY_LEN(std_devs); i++)
        add_device_rule(list, true, "c", std_devs[i][0], std_devs[i][1], "rwm");
    add_device_rule(list, true, "c", 136, -1, "rwm");
}

static void requested_device_rules(cJSON *res, cJSON *linux_, const struct rt_specgen_in *in)
{
    cJSON *list = cJSON_GetObjectItemCaseSensitive(res, "devices");
    const cJSON *d;
    size_t i = 0;

    cJSON_ArrayForEach(d, cJSON_GetObjectItemCaseSensitive(linux_, "devices"))
    {
        const char *perm = in->ctr->devices[i].permissions;
        add_device_rule(list, true, cJSON_GetObjectItem(d, "type")->valuestring,
                        (int64_t)cJSON_GetObjectItem(d, "major")->valuedouble,
                        (int64_t)cJSON_GetObjectItem(d, "minor")->valuedouble,
                        perm && perm[0] ? perm : "rwm");
        i++;
    }
}

static int build_resources(cJSON *linux_, cJSON *process, const struct rt_specgen_in *in,
                           bool privileged)
{
    const runtime_v1_LinuxContainerResources *r =
        in->ctr->linux != NULL ? in->ctr->linux->resources : NULL;
    cJSON *res = cJSON_AddObjectToObject(linux_, "resources");

    if (res == NULL)
        return -ENOMEM;
    device_rules(res, privileged);
    requested_device_rules(res, linux_, in);
    if (r == NULL)
        return 0;
    cJSON *cpu = cJSON_AddObjectToObject(res, "cpu");
    if (r->cpu_shares > 0)
        cJSON_AddNumberToObject(cpu, "shares", (double)r->cpu_shares);
    if (r->cpu_quota > 0)
        cJSON_AddNumberToObject(cpu, "quota", (double)r->cpu_quota);
    if (r->cpu_period > 0)
        cJSON_AddNumberToObject(cpu, "period", (double)r->cpu_period);
    if (r->cpuset_cpus != NULL && r->cpuset_cpus[0] != '\0')
        cJSON_AddStringToObject(cpu, "cpus", r->cpuset_cpus);
    if (r->cpuset_mems != NULL && r->cpuset_mems[0] != '\0')
        cJSON_AddStringToObject(cpu, "mems", r->cpuset_mems);
    cJSON *mem = cJSON_AddObjectToObject(res, "memory");
    if (r->memory_limit_in_bytes > 0)
        cJSON_AddNumberToObject(mem, "limit", (double)r->memory_limit_in_bytes);
    if (r->memory_swap_limit_in_bytes > 0)
        cJSON_AddNumberToObject(mem, "swap", (double)r->memory_swap_limit_in_bytes);
    if (r->hugepage_limits_count > 0) {
        cJSON *h = cJSON_AddArrayToObject(res, "hugepageLimits");
        for (size_t i = 0; i < r->hugepage_limits_count; i++) {
            cJSON *o = cJSON_CreateObject();
            cJSON_AddItemToArray(h, o);
            cJSON_AddStringToObject(o, "pageSize", r->hugepage_limits[i].page_size
                                                       ? r->hugepage_limits[i].page_size
                                                       : "");
            cJSON_AddNumberToObject(o, "limit", (double)r->hugepage_limits[i].limit);
        }
    }
    if (r->unified_count > 0) {
        cJSON *u = cJSON_AddObjectToObject(res, "unified");
        for (size_t i = 0; i < r->unified_count; i++)
            if (r->unified[i].key != NULL)
                cJSON_AddStringToObject(u, r->unified[i].key,
                                        r->unified[i].value ? r->unified[i].value : "");
    }
    if (r->oom_score_adj != 0)
        cJSON_AddNumberToObject(process, "oomScoreAdj", (double)r->oom_score_adj);
    return 0;
}

static int build_sysctls(cJSON *linux_, const struct rt_specgen_in *in)
{
    const runtime_v1_LinuxPodSandboxConfig *pl = in->pod->linux;
    cJSON *s;

    if (pl == NULL || pl->sysctls_count == 0)
        return 0;
    s = cJSON_AddObjectToObject(linux_, "sysctl");
    for (size_t i = 0; s != NULL && i < pl->sysctls_count; i++)
        if (pl->sysctls[i].key != NULL)
            cJSON_AddStringToObject(s, pl->sysctls[i].key,
                                    pl->sysctls[i].value ? pl->sysctls[i].value : "");
    return s ? 0 : -ENOMEM;
}

int rt__specgen_security(cJSON *spec, cJSON *process, const struct rt_specgen_in *in,
                         struct ag_err *err)
{
    const runtime_v1_LinuxContainerSecurityContext *sc =
        in->ctr->linux != NULL ? in->ctr->linux->security_context : NULL;
    cJSON *linux_ = cJSON_GetObjectItemCaseSensitive(spec, "linux");
    bool caps[N_CAPS], ambient[N_CAPS];
    bool privileged = sc != NULL && sc->privileged;
    cJSON *seccomp = NULL;
    int rc;

    if ((rc = compute_caps(sc, caps, ambient, err)) < 0)
        return rc;
    if (build_caps(process, caps, ambient) < 0)
        return ag_err_set(err, -ENOMEM, "capabilities");
    cJSON_AddBoolToObject(process, "noNewPrivileges", sc != NULL && sc->no_new_privs);
    if ((rc = pick_seccomp(sc, caps, &seccomp, err)) < 0)
        return rc;
    if (seccomp != NULL)
        cJSON_AddItemToObject(linux_, "seccomp", seccomp);
    if (!privileged &&
        (add_paths(linux_, "maskedPaths", sc ? sc->masked_paths : NULL,
                   sc ? sc->masked_paths_count : 0, default_masked,
                   AG_ARRAY_LEN(default_masked)) < 0 ||
         add_paths(linux_, "readonlyPaths", sc ? sc->readonly_paths : NULL,
                   sc ? sc->readonly_paths_count : 0, default_readonly,
                   AG_ARRAY_LEN(default_readonly)) < 0))
        return ag_err_set(err, -ENOMEM, "masked paths");
    if (build_resources(linux_, process, in, privileged) < 0 || build_sysctls(linux_, in) < 0)
        return ag_err_set(err, -ENOMEM, "resources");
    return 0;
}

/* ---- identity --------------------------------------------------------------- */

/* Without openat2 (kernels before 5.6, qemu-user): walk the components with
 * O_NOFOLLOW, so any symlink on the way is refused rather than followed. */
static int open_no_links(int root, const char *path)
{
    char buf[256];
    int dir = dup(root);

    if (dir < 0 || snprintf(buf, sizeof(buf), "%s", path) >= (int)sizeof(buf)) {
        if (dir >= 0)
            close(dir);
        return -1;
    }
    char *save = NULL, *next;
    for (char *part = strtok_r(buf, "/", &save); part != NULL; part = next) {
        next = strtok_r(NULL, "/", &save);
        int flags = O_CLOEXEC | O_NOFOLLOW | (next != NULL ? O_PATH | O_DIRECTORY : O_RDONLY);
        int fd = strcmp(part, "..") == 0 ? -1 : openat(dir, part, flags);
        close(dir);
        if (fd < 0)
            return -1;
        dir = fd;
    }
    return dir;
}

/* Opens <rootfs>/<path> with every component resolved inside the rootfs, so
 * a symlink in an (untrusted) image cannot make us read a host file. */
static FILE *open_in_root(const char *rootfs, const char *path)
{
    struct open_how how = {.flags = O_RDONLY | O_CLOEXEC,
                           .resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS};
    _cleanup_close_ int root = open(rootfs, O_PATH | O_DIRECTORY | O_CLOEXEC);
    int fd;

    if (root < 0)
        return NULL;
    fd = (int)syscall(SYS_openat2, root, path, &how, sizeof(how));
    if (fd < 0 && errno == ENOSYS)
        fd = open_no_links(root, path);
    if (fd < 0)
        return NULL;
    FILE *f = fdopen(fd, "re");
    if (f == NULL)
        close(fd);
    return f;
}

static bool all_digits(const char *s)
{
    if (*s == '\0')
        return false;
    for (; *s; s++)
        if (*s < '0' || *s > '9')
            return false;
    return true;
}

/* Finds a passwd/group line by name (or by id when name is NULL).  Fields
 * are split in place in line; returns true when found. */
static bool find_entry(FILE *f, const char *name, long id, char *line, size_t len, char **fields,
                       int nfields)
{
    if (f == NULL)
        return false;
    rewind(f);
    for (int guard = 0; guard < 100000 && fgets(line, (int)len, f) != NULL; guard++) {
        char *rest = line, *tok;
        int n = 0;
        line[strcspn(line, "\n")] = '\0';
        while (n < nfields && (tok = strsep(&rest, ":")) != NULL)
            fields[n++] = tok;
        if (n < nfields)
            continue;
        if (name != NULL ? strcmp(fields[0], name) == 0 : atol(fields[2]) == id)
            return true;
    }
    return false;
}

static void add_member_groups(FILE *group, const char *user, gid_t primary, struct rt_ident *out)
{
    char line[4096], *f[4];

    if (group == NULL || user == NULL)
        return;
    rewind(group);
    while (fgets(line, sizeof(line), group) != NULL && out->extra_count < 64) {
        line[strcspn(line, "\n")] = '\0';
        char *save = line;
        int n = 0;
        char *tok;
        while (n < 4 && (tok = strsep(&save, ":")) != NULL)
            f[n++] = tok;
        if (n < 4 || (gid_t)atol(f[2]) == primary)
            continue;
        for (char *m = strtok_r(f[3], ",", &save); m != NULL; m = strtok_r(NULL, ",", &save))
            if (strcmp(m, user) == 0)
                out->extra[out->extra_count++] = (gid_t)atol(f[2]);
    }
}

int rt_specgen_resolve_user(const char *rootfs, const runtime_v1_LinuxContainerSecurityContext *sc,
                            const char *image_user, struct rt_ident *out, struct ag_err *err)
{
    char spec[256], line[4096], *f[7];
    const char *user = NULL, *group = NULL;
    FILE *passwd = open_in_root(rootfs, "/etc/passwd");
    FILE *groupf = open_in_root(rootfs, "/etc/group");
    const char *username = NULL;
    char namebuf[256] = "";
    int rc = 0;

    memset(out, 0, sizeof(*out));
    snprintf(spec, sizeof(spec), "%s", image_user ? image_user : "");
    if (sc != NULL && sc->run_as_user != NULL) {
        snprintf(spec, sizeof(spec), "%lld", (long long)sc->run_as_user->value);
    } else if (sc != NULL && sc->run_as_username != NULL && sc->run_as_username[0] != '\0') {
        snprintf(spec, sizeof(spec), "%s", sc->run_as_username);
    }
    char *colon = strchr(spec, ':');
    if (colon != NULL) {
        *colon = '\0';
        group = colon + 1;
    }
    user = spec;
    if (user[0] == '\0') {
        username = "root";
        if (find_entry(passwd, NULL, 0, line, sizeof(line), f, 7))
            snprintf(namebuf, sizeof(namebuf), "%s", f[0]), username = namebuf;
    } else if (all_digits(user)) {
        out->uid = (uid_t)atol(user);
        if (find_entry(passwd, NULL, (long)out->uid, line, sizeof(line), f, 7)) {
            out->gid = (gid_t)atol(f[3]);
            snprintf(namebuf, sizeof(namebuf), "%s", f[0]);
            username = namebuf;
        }
    } else if (find_entry(passwd, user, 0, line, sizeof(line), f, 7)) {
        out->uid = (uid_t)atol(f[2]);
        out->gid = (gid_t)atol(f[3]);
        username = user;
    } else {
        rc = ag_err_set(err, -EINVAL, "user %s not found in the image's /etc/passwd", user);
        goto out;
    }
    if (sc != NULL && sc->run_as_group != NULL) {
        out->gid = (gid_t)sc->run_as_group->value;
    } else if (group != NULL && group[0] != '\0') {
        if (all_digits(group)) {
            out->gid = (gid_t)atol(group);
        } else if (find_entry(groupf, group, 0, line, sizeof(line), f, 4)) {
            out->gid = (gid_t)atol(f[2]);
        } else {
            rc = ag_err_set(err, -EINVAL, "group %s not found in the image's /etc/group", group);
            goto out;
        }
    }
    if (sc == NULL || sc->supplemental_groups_policy !=
                          runtime_v1_SupplementalGroupsPolicy_Strict)
        add_member_groups(groupf, username, out->gid, out);
    for (size_t i = 0; sc != NULL && i < sc->supplemental_groups_count && out->extra_count < 64;
         i++)
        out->extra[out->extra_count++] = (gid_t)sc->supplemental_groups[i];
out:
    if (passwd != NULL)
        fclose(passwd);
    if (groupf != NULL)
        fclose(groupf);
    return rc;
}

int rt_specgen_signal(runtime_v1_Signal cri, const char *image_stop_signal)
{
    static const struct {
        const char *name;
        int sig;
    } names[] = {{"ABRT", SIGABRT}, {"ALRM", SIGALRM}, {"BUS", SIGBUS},   {"CHLD", SIGCHLD},
                 {"CONT", SIGCONT}, {"FPE", SIGFPE},   {"HUP", SIGHUP},   {"ILL", SIGILL},
                 {"INT", SIGINT},   {"IO", SIGIO},     {"KILL", SIGKILL}, {"PIPE", SIGPIPE},
                 {"PROF", SIGPROF}, {"PWR", SIGPWR},   {"QUIT", SIGQUIT}, {"SEGV", SIGSEGV},
                 {"STOP", SIGSTOP}, {"SYS", SIGSYS},   {"TERM", SIGTERM}, {"TRAP", SIGTRAP},
                 {"TSTP", SIGTSTP}, {"TTIN", SIGTTIN}, {"TTOU", SIGTTOU}, {"URG", SIGURG},
                 {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"VTALRM", SIGVTALRM},
                 {"WINCH", SIGWINCH}, {"XCPU", SIGXCPU}, {"XFSZ", SIGXFSZ}};
    /* The CRI enum is ordinal: SIGABRT=1 ... in this order of names. */
    static const int cri_order[] = {0,       SIGABRT, SIGALRM, SIGBUS,  SIGCHLD, SIGCHLD,
                                    SIGCONT, SIGFPE,  SIGHUP,  SIGILL,  SIGINT,  SIGIO,
                                    SIGABRT, SIGKILL, SIGPIPE, SIGIO,   SIGPROF, SIGPWR,
                                    SIGQUIT, SIGSEGV, SIGSTKFLT, SIGSTOP, SIGSYS, SIGTERM,
                                    SIGTRAP, SIGTSTP, SIGTTIN, SIGTTOU, SIGURG,  SIGUSR1,
                                    SIGUSR2, SIGVTALRM, SIGWINCH, SIGXCPU, SIGXFSZ};
    int c = (int)cri;

    if (c > 0 && (size_t)c < AG_ARRAY_LEN(cri_order))
        return cri_order[c];
    if (c >= 35 && c <= 50)
        return SIGRTMIN + (c - 35);
    if (c >= 51 && c <= 65)
        return SIGRTMAX - (65 - c);
    if (image_stop_signal == NULL || image_stop_signal[0] == '\0')
        return 0;
    if (all_digits(image_stop_signal))
        return atoi(image_stop_signal);
    const char *n = strncasecmp(image_stop_signal, "SIG", 3) == 0 ? image_stop_signal + 3
                                                                   : image_stop_signal;
    for (size_t i = 0; i < AG_ARRAY_LEN(names); i++)
        if (strcasecmp(n, names[i].name) == 0)
            return names[i].sig;
    return 0;
}
