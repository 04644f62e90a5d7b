/* agent/runtime internal header: shared between the rt_*.c files only. */
#ifndef RT_INTERNAL_H
#define RT_INTERNAL_H

#include <cjson/cJSON.h>

#include "runtime.h"

#define RT_CONFIG_MAX (4u << 20) /* config.json size limit */
#define RT_STATE_MAX (1u << 20)

/* ---- JSON helpers (rt_spec.c) ---- */
int rt__json_str(const cJSON *obj, const char *key, bool required, char **out,
                 struct ag_err *err) AG_WUR;
int rt__json_strv(const cJSON *obj, const char *key, char ***out, size_t *count,
                  struct ag_err *err) AG_WUR;
int rt__json_u64(const cJSON *obj, const char *key, bool *has, uint64_t *out,
                 struct ag_err *err) AG_WUR;
int rt__json_i64(const cJSON *obj, const char *key, bool *has, int64_t *out,
                 struct ag_err *err) AG_WUR;
int rt__json_bool(const cJSON *obj, const char *key, bool *out, struct ag_err *err) AG_WUR;
int rt__json_kv(const cJSON *obj, const char *key, struct rt_kv **out, size_t *count,
                struct ag_err *err) AG_WUR;
void rt__strv_free(char **v);
void rt__kv_free(struct rt_kv *kv, size_t count);

/* rt_spec_linux.c */
int rt__spec_linux_parse(const cJSON *linux, struct rt_spec *spec, struct ag_err *err) AG_WUR;
void rt__spec_linux_free(struct rt_spec *spec);
int rt__resources_parse_obj(const cJSON *obj, struct rt_resources *res, struct ag_err *err) AG_WUR;
int rt__cap_parse(const char *name); /* -EINVAL when unknown */
const char *rt__ns_name(enum rt_ns_type t);
int rt__process_parse_obj(const cJSON *obj, struct rt_process *p, struct ag_err *err) AG_WUR;
void rt__process_fini(struct rt_process *p);

/* ---- cgroups (rt_cgroup*.c) ---- */
struct rt_cgroup_ops;
struct rt_cgroup {
    const struct rt_cgroup_ops *ops;
    char path[1024]; /* below the mount, starts with '/' */
};

struct rt_cgroup_ops {
    const char *name; /* "v1", "v2" */
    int (*create)(struct rt_cgroup *cg, struct ag_err *err);
    int (*apply)(struct rt_cgroup *cg, const struct rt_resources *res, struct ag_err *err);
    int (*enter)(struct rt_cgroup *cg, pid_t pid, struct ag_err *err);
    int (*pids)(struct rt_cgroup *cg, pid_t **pids, size_t *count);
    int (*freeze)(struct rt_cgroup *cg, bool frozen);
    int (*kill_all)(struct rt_cgroup *cg, int sig);
    int (*remove)(struct rt_cgroup *cg);
    int (*stats)(struct rt_cgroup *cg, struct rt_cgroup_stats *out);
};

extern const struct rt_cgroup_ops rt__cgroup_v1_ops;
extern const struct rt_cgroup_ops rt__cgroup_v2_ops;

/* Detects the cgroup layout and fills cg for path (already resolved). */
int rt__cgroup_init(struct rt_cgroup *cg, const char *path, struct ag_err *err) AG_WUR;
/* Writes a value into a file of a cgroup directory. */
int rt__cgroup_write(const char *dir, const char *file, const char *value);
int rt__cgroup_read_u64(const char *dir, const char *file, uint64_t *out);
/* Looks up "key value" in a flat keyed file (memory.stat, memory.events). */
int rt__cgroup_read_keyed(const char *dir, const char *file, const char *key, uint64_t *out);
int rt__cgroup_read_procs(const char *dir, pid_t **pids, size_t *count) AG_WUR;
/* v1: mount point of a controller ("memory"), NULL when not mounted. */
const char *rt__cgroup_v1_mount(const char *controller);

/* ---- child-side setup (rt_rootfs.c, rt_init.c, rt_seccomp.c) ----
 * These run in the container init or exec child, between fork and execve. */
int rt__rootfs_setup(const struct rt_spec *spec, struct ag_err *err) AG_WUR;
int rt__rootfs_pivot(const struct rt_spec *spec, struct ag_err *err) AG_WUR;
int rt__rootfs_finish(const struct rt_spec *spec, struct ag_err *err) AG_WUR;
int rt__console_setup(int console_socket, const struct rt_process *p, struct ag_err *err) AG_WUR;
int rt__process_prepare(const struct rt_process *p, struct ag_err *err) AG_WUR;
int rt__process_creds(const struct rt_process *p, struct ag_err *err) AG_WUR;
/* Resolves args[0] with the process env's PATH; *out owned. */
int rt__process_find_exe(const struct rt_process *p, char **out, struct ag_err *err) AG_WUR;
int rt__oom_score_adj_write(pid_t pid, int value, struct ag_err *err) AG_WUR;

struct rt_seccomp_filter;
int rt__seccomp_compile(const struct rt_seccomp *sc, struct rt_seccomp_filter **out,
                        struct ag_err *err) AG_WUR;
int rt__seccomp_load(struct rt_seccomp_filter *f, struct ag_err *err) AG_WUR;
void rt__seccomp_free(struct rt_seccomp_filter *f);

/* ---- hooks (rt_hooks.c) ---- */
/* Runs the hooks of one kind with state JSON on stdin.  Stops at the first
 * failure unless warn_only. */
int rt__hooks_run(const struct rt_spec *spec, enum rt_hook_kind kind, const char *state_json,
                  bool warn_only, struct ag_err *err) AG_WUR;

/* ---- state (rt_state.c) ---- */
struct rt_state {
    char id[256];
    char bundle[4096];
    char cgroup[1024];
    pid_t pid;
    unsigned long long start_time; /* /proc/<pid>/stat field 22 */
    int64_t created_ns;
    bool started;
};

int rt__id_check(const char *id, struct ag_err *err) AG_WUR;
int rt__state_dir(const char *root, const char *id, char *out, size_t out_len) AG_WUR;
int rt__state_write(const char *dir, const struct rt_state *st, struct ag_err *err) AG_WUR;
int rt__state_read(const char *dir, struct rt_state *st, struct ag_err *err) AG_WUR;
/* Current status from the record and the process table. */
const char *rt__state_status(const char *dir, const struct rt_state *st);
int rt__proc_start_time(pid_t pid, unsigned long long *out) AG_WUR;
/* Formats the OCI state JSON; returns owned string or NULL (ENOMEM). */
char *rt__state_json(const struct rt_state *st, const char *status,
                     const struct rt_kv *ann, size_t ann_count);

/* ---- sync messages between parent and child ---- */
enum rt_sync_type {
    RT_SYNC_GO = 1,     /* parent -> child: proceed */
    RT_SYNC_USERMAP,    /* child -> parent: write my uid/gid maps */
    RT_SYNC_PID,        /* intermediate -> parent: the init's pid in .code */
    RT_SYNC_HOOKS,      /* init -> parent: run prestart/createRuntime */
    RT_SYNC_READY,      /* init -> parent: set up, waiting for start */
    RT_SYNC_ERROR,      /* child -> parent: failed, message follows */
};

struct rt_sync_msg {
    int type;
    int code;
    char msg[AG_ERR_MSG_LEN];
};

int rt__sync_send(int fd, int type, int code, const char *msg);
int rt__sync_recv(int fd, struct rt_sync_msg *m, int timeout_ms);
/* Writes `text` to fd fully. */
int rt__write_all(int fd, const void *buf, size_t len);

#endif
