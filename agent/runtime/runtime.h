/* agent/runtime: picocri's own OCI runtime (executor).
 *
 * Loads an OCI bundle's config.json into struct rt_spec, creates the
 * container init in its namespaces with its cgroup applied (the caller
 * becomes its parent), releases it to exec the user process, reports the
 * spec's state JSON, signals, deletes, execs extra processes in a running
 * container, and reads and updates its cgroup (v1 or v2).
 *
 * Every function here blocks (fork, waitpid, file I/O): call it from a
 * dedicated process (the monitor, the `picocri oci` CLI) or the thread pool.
 * Errors: negative errno, with the message in the caller's struct ag_err.
 */
#ifndef RT_RUNTIME_H
#define RT_RUNTIME_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "ag_core.h"

/* ---- the spec data model (parsed config.json) ---------------------------- */

enum rt_ns_type {
    RT_NS_USER, /* first: joined or created before the others */
    RT_NS_MOUNT,
    RT_NS_PID,
    RT_NS_NET,
    RT_NS_IPC,
    RT_NS_UTS,
    RT_NS_CGROUP,
    RT_NS_TIME,
    RT_NS_COUNT
};

struct rt_ns {
    bool enabled; /* listed in linux.namespaces */
    char *path;   /* join this one; NULL = create a new one */
};

struct rt_idmap {
    uint32_t container_id, host_id, size;
};

struct rt_rlimit {
    int type; /* RLIMIT_* */
    uint64_t soft, hard;
};

/* Capability sets as bit masks (bit n = capability n). */
struct rt_caps {
    uint64_t bounding, effective, inheritable, permitted, ambient;
};

struct rt_process {
    bool terminal;
    unsigned cons_height, cons_width;
    char *cwd;
    char **env; /* NULL-terminated */
    size_t env_count;
    char **args; /* NULL-terminated, args_count >= 1 */
    size_t args_count;
    uint32_t uid, gid;
    bool has_umask;
    uint32_t umask;
    uint32_t *gids; /* additionalGids */
    size_t gids_count;
    bool has_caps; /* capabilities object present; absent = keep none */
    struct rt_caps caps;
    bool no_new_privs;
    struct rt_rlimit *rlimits;
    size_t rlimits_count;
    bool has_oom_score_adj;
    int oom_score_adj;
    char *apparmor_profile;
    char *selinux_label;
};

/* One mount, with its options already parsed (rt_mount_options_parse). */
struct rt_mount_opts {
    unsigned long flags;       /* MS_* to set */
    unsigned long clear;       /* MS_* explicitly cleared (rw, suid, ...) */
    unsigned long propagation; /* MS_PRIVATE|MS_REC ..., 0 = none */
    unsigned long long attr_set, attr_clr; /* MOUNT_ATTR_* for rro, rnosuid ... */
    bool bind, recursive, tmpcopyup, idmap;
    char *data; /* unknown options, comma-joined; NULL when none */
};

struct rt_mount {
    char *destination; /* absolute, inside the container */
    char *source;      /* absolute (bundle-relative resolved) or fs source */
    char *type;        /* may be NULL for bind mounts */
    struct rt_mount_opts opts;
};

struct rt_device {
    char type; /* 'c', 'b', 'u', 'p' */
    char *path;
    int64_t major, minor;
    uint32_t file_mode; /* permission bits; 0666 when absent */
    uint32_t uid, gid;
};

struct rt_dev_rule {
    bool allow;
    char type;            /* 'a', 'c', 'b' */
    int64_t major, minor; /* -1 = any */
    char access[4];       /* subset of "rwm" */
};

struct rt_hugepage_limit {
    char *page_size; /* "2MB", "1GB" */
    uint64_t limit;
};

struct rt_kv {
    char *key, *value;
};

/* linux.resources.  A has_* flag says the field was given. */
struct rt_resources {
    bool has_cpu_shares, has_cpu_quota, has_cpu_period, has_cpu_burst, has_cpu_idle;
    uint64_t cpu_shares, cpu_period, cpu_burst;
    int64_t cpu_quota, cpu_idle;
    bool has_rt_runtime, has_rt_period;
    int64_t rt_runtime;
    uint64_t rt_period;
    char *cpus, *mems;
    bool has_mem_limit, has_mem_reservation, has_mem_swap, has_swappiness;
    int64_t mem_limit, mem_reservation, mem_swap;
    uint64_t swappiness;
    bool disable_oom_killer;
    bool has_pids_limit;
    int64_t pids_limit;
    bool has_blkio_weight;
    uint16_t blkio_weight;
    struct rt_hugepage_limit *hugepages;
    size_t hugepages_count;
    struct rt_dev_rule *devices;
    size_t devices_count;
    struct rt_kv *unified;
    size_t unified_count;
};

struct rt_seccomp_arg {
    unsigned index;
    uint64_t value, value_two;
    int op; /* enum scmp_compare */
};

struct rt_seccomp_rule {
    char **names;
    size_t names_count;
    uint32_t action; /* SCMP_ACT_* value, errno folded in */
    struct rt_seccomp_arg args[6];
    size_t args_count;
};

struct rt_seccomp {
    uint32_t default_action;
    uint32_t *arches; /* SCMP_ARCH_* */
    size_t arches_count;
    unsigned flags; /* SECCOMP_FILTER_FLAG_* */
    struct rt_seccomp_rule *rules;
    size_t rules_count;
};

enum rt_hook_kind {
    RT_HOOK_PRESTART,
    RT_HOOK_CREATE_RUNTIME,
    RT_HOOK_CREATE_CONTAINER,
    RT_HOOK_START_CONTAINER,
    RT_HOOK_POSTSTART,
    RT_HOOK_POSTSTOP,
    RT_HOOK_COUNT
};

struct rt_hook {
    char *path;
    char **args; /* NULL-terminated; may be NULL (then argv = {path}) */
    char **env;  /* NULL-terminated; may be NULL (empty environment) */
    int timeout; /* seconds, 0 = none */
};

struct rt_spec {
    char *oci_version;
    char *bundle;    /* absolute */
    char *root_path; /* absolute */
    bool root_readonly;
    char *hostname, *domainname;
    struct rt_kv *annotations;
    size_t annotations_count;
    struct rt_process *process; /* NULL when absent */
    struct rt_mount *mounts;
    size_t mounts_count;
    struct rt_hook *hooks[RT_HOOK_COUNT];
    size_t hooks_count[RT_HOOK_COUNT];
    /* linux */
    struct rt_ns ns[RT_NS_COUNT];
    struct rt_idmap *uid_maps, *gid_maps;
    size_t uid_maps_count, gid_maps_count;
    struct rt_device *devices;
    size_t devices_count;
    char *cgroups_path; /* NULL = picocri/<id> */
    struct rt_resources resources;
    struct rt_kv *sysctl;
    size_t sysctl_count;
    char **masked_paths, **readonly_paths;
    size_t masked_count, readonly_count;
    unsigned long rootfs_propagation; /* MS_* or 0 */
    struct rt_seccomp *seccomp;     /* NULL when absent */
};

/* Parses and validates <bundle>/config.json.  *out is owned (rt_spec_free).
 * Errors: -ENOENT (no bundle/config/root), -EINVAL (not JSON, bad field:
 * the message names the field). */
int rt_spec_load(const char *bundle, struct rt_spec **out, struct ag_err *err) AG_WUR;
/* Same on a buffer; bundle is used to resolve relative paths and need not
 * exist when check_root is false (tests, fuzzing). */
int rt_spec_parse(const char *json, size_t len, const char *bundle, bool check_root,
                  struct rt_spec **out, struct ag_err *err) AG_WUR;
void rt_spec_free(struct rt_spec *spec);
/* Parses a process object (runc `exec --process` file). *out owned. */
int rt_process_parse(const char *json, size_t len, struct rt_process **out,
                     struct ag_err *err) AG_WUR;
void rt_process_free(struct rt_process *proc);

/* Parses one mount's options array (strings) into opts.  Unknown options
 * become the data string.  Returns 0 or -ENOMEM. */
int rt_mount_options_parse(const char *const *options, size_t count,
                           struct rt_mount_opts *opts) AG_WUR;
void rt_mount_opts_fini(struct rt_mount_opts *opts);

/* ---- container lifecycle --------------------------------------------------- */

struct rt_stdio {
    int in, out, err;   /* dup'ed to 0,1,2 of the process; -1 = inherit caller's */
    int console_socket; /* connected AF_UNIX socket for terminal mode; -1 unused */
};

#define RT_STATUS_CREATING "creating"
#define RT_STATUS_CREATED "created"
#define RT_STATUS_RUNNING "running"
#define RT_STATUS_STOPPED "stopped"

/* Forks the container init in its namespaces with its cgroup applied; the
 * caller becomes its parent (and must reap it).  Runs prestart,
 * createRuntime and createContainer hooks.  The init waits on
 * state_root/id/exec.fifo before exec'ing the user process.  Writes
 * state_root/id/state.json.  On failure nothing is left behind (no state
 * dir, no cgroup, no process).  Errors: -EEXIST (id in use), -EINVAL (bad
 * id or spec), others from the kernel. */
int rt_container_create(const char *state_root, const char *id, const char *bundle,
                        const struct rt_stdio *stdio, pid_t *pid_out, struct ag_err *err) AG_WUR;
/* Releases a created container's init to exec the user process; runs
 * poststart hooks.  -EINVAL when the container is not "created". */
int rt_container_start(const char *state_root, const char *id, struct ag_err *err) AG_WUR;
/* The spec's state JSON (returns owned string in *json_out). -ENOENT when
 * unknown. */
int rt_container_state(const char *state_root, const char *id, char **json_out,
                       struct ag_err *err) AG_WUR;
/* Status string constant (RT_STATUS_*) and init pid of a container. */
int rt_container_status(const char *state_root, const char *id, const char **status_out,
                        pid_t *pid_out, struct ag_err *err) AG_WUR;
/* Sends sig to the init (all: to every process in its cgroup). */
int rt_container_kill(const char *state_root, const char *id, int sig, bool all,
                      struct ag_err *err) AG_WUR;
/* Deletes a stopped container (force: kills it first): cgroup and state
 * removed, then poststop hooks (warnings only). */
int rt_container_delete(const char *state_root, const char *id, bool force,
                        struct ag_err *err) AG_WUR;
/* Starts proc inside a running container (joins its namespaces and cgroup,
 * applies the process spec with the container's seccomp filter); the caller
 * becomes its parent. */
int rt_container_exec(const char *state_root, const char *id, const struct rt_process *proc,
                      const struct rt_stdio *stdio, pid_t *pid_out, struct ag_err *err) AG_WUR;
/* Pids (host view) of every process in the container's cgroup; *pids_out
 * owned. */
int rt_container_pids(const char *state_root, const char *id, pid_t **pids_out,
                      size_t *count_out, struct ag_err *err) AG_WUR;

/* ---- cgroups --------------------------------------------------------------- */

struct rt_cgroup_stats {
    uint64_t cpu_usage_ns;
    uint64_t memory_usage;       /* bytes, including cache */
    uint64_t memory_working_set; /* usage - inactive_file (kubelet's definition) */
    uint64_t memory_rss;
    uint64_t memory_limit; /* 0 = unlimited */
    uint64_t oom_kills;
    uint64_t pids_current;
};

/* Reads the container's cgroup counters.  A controller that is not
 * available leaves its fields 0. */
int rt_container_stats(const char *state_root, const char *id, struct rt_cgroup_stats *out,
                       struct ag_err *err) AG_WUR;
/* Applies new resource limits to a container's cgroup (UpdateContainerResources). */
int rt_container_update(const char *state_root, const char *id, const struct rt_resources *res,
                        struct ag_err *err) AG_WUR;
/* Parses a linux.resources JSON object (runc `update --resources`). */
int rt_resources_parse(const char *json, size_t len, struct rt_resources *out,
                       struct ag_err *err) AG_WUR;
void rt_resources_fini(struct rt_resources *res);

/* Conversions, exposed for tests and the CRI layer. */
/* cpu.shares -> cpu.weight (crun >= 1.23 / runc >= 1.3.2 formula); 0 -> 0. */
uint64_t rt_cgroup_shares_to_weight(uint64_t shares);
/* cpu.max line for quota/period ("max 100000", "50000 100000"). */
int rt_cgroup_cpu_max_format(bool has_quota, int64_t quota, bool has_period, uint64_t period,
                             char *out, size_t out_len) AG_WUR;
/* Maps a cgroupsPath (absolute, relative, or systemd "slice:prefix:name")
 * to the path below the cgroup mount, always starting with '/'. */
int rt_cgroup_path_resolve(const char *cgroups_path, const char *id, char *out,
                           size_t out_len) AG_WUR;

/* ---- command line ------------------------------------------------------------ */

/* `picocri oci create|start|state|kill|delete|run|exec|ps ...` (runc-compatible). */
int rt_oci_main(int argc, char **argv);

#endif
