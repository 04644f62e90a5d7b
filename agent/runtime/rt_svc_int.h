/* agent/runtime internal: the runtime service's shared state (rt_svc*.c).
 *
 * Per-object serialisation: every pod or container that has an operation
 * in flight, a monitor watch or exit waiters has a struct svc_obj.  Its
 * queue's head is the running operation; svc_op_done() starts the next.
 * Objects are freed when idle (empty queue, no watch, no waiters).
 */
#ifndef RT_SVC_INT_H
#define RT_SVC_INT_H

#include "rt_svc.h"

#include <limits.h>
#include <pb_decode.h>

#include "runtime.h"
#include "store/store.h"

#define SVC_PATH 4096
#define SVC_MON_TIMEOUT_MS 10000   /* one monitor request */
#define SVC_SPAWN_TIMEOUT_MS 60000 /* monitor spawn: container create */
#define SVC_CNI_TIMEOUT_MS 60000   /* one CNI plugin */
#define SVC_KILL_WAIT_MS 10000     /* after SIGKILL, for the monitor to report */
#define SVC_TERM_MSG_MAX 4096

/* Best-effort calls whose failure is logged by the callee or irrelevant
 * (warn_unused_result is not silenced by a (void) cast). */
#define svc_ignore(expr)                                                                           \
    do {                                                                                           \
        if ((expr) < 0) {                                                                          \
        }                                                                                          \
    } while (0)
/* snprintf for paths whose truncation cannot happen (sizes checked). */
#define svc_fmt(buf, ...) svc_ignore(snprintf((buf), sizeof(buf), __VA_ARGS__) >= 0 ? 0 : -1)

struct svc_obj;
struct svc_op;

typedef void (*svc_op_run_cb)(struct svc_op *op);
struct svc_op {
    struct svc_op *next;
    struct svc_obj *obj;
    svc_op_run_cb run;
};

/* Called once when a container becomes EXITED (or UNKNOWN), or with
 * -ECANCELED when the service shuts down. */
typedef void (*svc_exit_cb)(void *arg, int status);
struct svc_waiter {
    struct svc_waiter *next;
    svc_exit_cb cb;
    void *arg;
};

struct svc_obj {
    struct svc_obj *next;
    struct rt_svc *svc;
    enum st_kind kind;
    char id[ST_ID_HEX_LEN + 1];
    struct svc_op *head, *tail;
    /* Containers: the monitor watch (pidfd readable = monitor exited). */
    uv_poll_t *poll; /* heap, freed in its close callback */
    int pidfd;
    bool exit_reading;
    struct svc_waiter *waiters;
};

struct rt_svc {
    uv_loop_t *loop;
    struct st_store *st;
    const struct ag_config *cfg;
    const char *ns;
    char exe[SVC_PATH];
    char state_root[SVC_PATH];  /* executor state: <state>/runtime */
    char pods_dir[SVC_PATH];    /* <state>/pods/<id> */
    char bundles_dir[SVC_PATH]; /* <state>/containers/<id>: config.json, rootfs, exit.json */
    char layers_root[SVC_PATH]; /* <root>/containers/<id>: upper, work */
    char content_dir[SVC_PATH]; /* <root>/content/blobs/sha256 */
    bool systemd;
    bool cgroup_v2;
    struct svc_obj *objs;
    size_t busy;
};

/* ---- rt_svc.c: objects, operations, workers, records ------------------------ */
struct svc_obj *svc__obj(struct rt_svc *svc, enum st_kind kind, const char *id);
void svc__obj_idle(struct svc_obj *o);
/* Queues op on obj (obj's queue): runs now if the object is idle. */
void svc__op_submit(struct svc_obj *o, struct svc_op *op, svc_op_run_cb run);
/* The head operation finished: starts the next one.  Does not free op. */
void svc__op_done(struct svc_op *op);

typedef void (*svc_work_cb)(void *ctx);
typedef void (*svc_after_cb)(void *ctx, int status);
/* Runs work(ctx) on the thread pool, then after(ctx, status) on the loop
 * (status < 0 only when libuv cancelled it).  Returns 0 or -errno. */
int svc__work(struct rt_svc *svc, void *ctx, svc_work_cb work, svc_after_cb after) AG_WUR;

/* Borrowed records (valid until the next change of that record). */
const picocri_store_PodRecord *svc__pod(struct rt_svc *svc, const char *ref, struct ag_err *err);
const picocri_store_ContainerRecord *svc__ctr(struct rt_svc *svc, const char *ref,
                                              struct ag_err *err);
/* Deep copies for editing; put them back with svc__pod_put/svc__ctr_put
 * (which take the contents and release the copy either way). */
int svc__pod_copy(struct rt_svc *svc, const char *id, picocri_store_PodRecord *out) AG_WUR;
int svc__ctr_copy(struct rt_svc *svc, const char *id, picocri_store_ContainerRecord *out) AG_WUR;
int svc__pod_put(struct rt_svc *svc, picocri_store_PodRecord *rec, struct ag_err *err) AG_WUR;
int svc__ctr_put(struct rt_svc *svc, picocri_store_ContainerRecord *rec, struct ag_err *err) AG_WUR;
char *svc__strdup(const char *s);
/* Deep copy of a nanopb message through encode/decode; dst must be zeroed
 * (pb_release frees it).  Returns 0, -EINVAL, -ENOMEM. */
int svc__msg_copy(const pb_msgdesc_t *fields, const void *src, void *dst) AG_WUR;
/* Container ids of a pod (owned array of owned strings, NULL-terminated). */
char **svc__pod_ctr_ids(struct rt_svc *svc, const char *pod_id);
void svc__strv_free(char **v);
/* Label selector match: every given pair present with the same value.
 * Entries are {char *key; char *value;} pairs. */
struct svc_kv {
    char *key, *value;
};
bool svc__labels_match(const struct svc_kv *have, size_t have_count, const struct svc_kv *want,
                       size_t want_count);
/* Paths of a container's files. */
int svc__ctr_paths(struct rt_svc *svc, const char *id, char *bundle, char *exit_file,
                   char *upper_base) AG_WUR;

/* The CRI log file of a container: the pod's log_directory joined with the
 * container's log_path (an absolute log_path alone when there is no
 * directory).  Returns 1 (out set), 0 (no log file: out ""), -EINVAL (a
 * ".." component, or a directory without a file name), -ENAMETOOLONG. */
int svc__log_path_join(const char *dir, const char *log_path, char *out, size_t out_len) AG_WUR;

/* rm -rf that does not cross mount points; ENOENT is success. */
int svc__rm_rf(const char *path);

/* ---- rt_svc_watch.c: monitor exits ------------------------------------------ */
/* Starts watching a running container's monitor.  If the monitor is
 * already gone, exit processing starts at once. */
void svc__watch(struct rt_svc *svc, const char *id, int monitor_pid);
/* Registers cb for the container's exit; runs cb(0) at once if it is not
 * running (EXITED/UNKNOWN/CREATED). */
void svc__wait_exit(struct rt_svc *svc, const char *id, svc_exit_cb cb, void *arg);
/* Removes a waiter registered with svc__wait_exit (no call happens). */
void svc__wait_cancel(struct rt_svc *svc, const char *id, svc_exit_cb cb, void *arg);
/* Forces exit processing (e.g. the monitor is known gone). */
void svc__exit_check(struct rt_svc *svc, const char *id);

/* ---- rt_svc_ctr.c: internal container ops used by pod stop/remove ----------- */
int svc__ctr_stop(struct rt_svc *svc, const char *id, int64_t timeout_s, rt_svc_done_cb cb,
                  void *arg) AG_WUR;
int svc__ctr_remove(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg) AG_WUR;

/* ---- rt_svc_cgroup.c: the pod cgroup and network counters ------------------ */
/* cgroupsPath (executor syntax) of a container, or of anything placed like
 * one, with id in a pod: below the kubelet's cgroup_parent (systemd
 * "x.slice:picocri:<id>" when systemd and parent is a slice, else
 * "<parent>/<id>"), else below pod_cgroup.  Returns 1 (out set), 0 (no
 * path: the executor's default), -ENAMETOOLONG. */
int svc__ctr_cgroups_path(bool systemd, const char *parent, const char *pod_cgroup, const char *id,
                          char *out, size_t out_len) AG_WUR;
/* The pod cgroup below the cgroup mount ("/kubepods/burstable/pod<uid>",
 * "/kubepods.slice/.../kubepods-burstable-pod<uid>.slice", or
 * "/picocri/pod-<id>" without a parent).  0, -EINVAL, -ENAMETOOLONG. */
int svc__pod_cgroup_path(bool systemd, const char *parent, const char *pod_id, char *out,
                         size_t out_len) AG_WUR;
/* The leaf of the infra process below the pod cgroup. */
int svc__pod_infra_cgroup_path(const char *pod_cgroup, char *out, size_t out_len) AG_WUR;
/* Pod resources + overhead as executor resources (page sizes borrowed from
 * lc, hp is the storage for up to hp_max hugepage limits).  Returns the
 * number of settings made (0: nothing to apply). */
size_t svc__pod_resources(const runtime_v1_LinuxPodSandboxConfig *lc, struct rt_resources *out,
                          struct rt_hugepage_limit *hp, size_t hp_max);
/* Blocking (thread pool): create + apply; join (creates the leaf); remove
 * (infra leaf then pod cgroup; absent = success); read counters (-ENOENT
 * when the cgroup does not exist). */
int svc__pod_cgroup_create(const char *path, const runtime_v1_LinuxPodSandboxConfig *lc,
                           struct ag_err *err) AG_WUR;
int svc__pod_cgroup_enter(const char *leaf, pid_t pid, struct ag_err *err) AG_WUR;
int svc__pod_cgroup_remove(const char *path, const char *infra_leaf) AG_WUR;
int svc__pod_cgroup_stats(const char *path, struct rt_cgroup_stats *out) AG_WUR;

struct svc_netdev {
    char name[32];
    uint64_t rx_bytes, rx_errors, tx_bytes, tx_errors;
};
/* Interfaces (except lo) of /proc/net/dev text, at most max. */
size_t svc__net_dev_parse(const char *text, struct svc_netdev *out, size_t max);
/* Blocking (thread pool): the counters of the network namespace pinned at
 * netns_path, read by this thread inside it. */
int svc__netns_dev_read(const char *netns_path, struct svc_netdev *out, size_t max,
                        size_t *count) AG_WUR;

/* ---- rt_svc_recover.c ----------------------------------------------------- */
int svc__recover(struct rt_svc *svc, struct ag_err *err) AG_WUR;

#endif
