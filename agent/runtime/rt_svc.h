/* agent/runtime: the runtime service — pods and containers for the CRI
 * RuntimeService, on the daemon's libuv loop.
 *
 * It ties the pieces together: records in the store (agent/store), pod
 * namespaces and files (rt_pod.h), CNI (agent/net), config.json generation
 * (rt_specgen.h), one monitor process per started container
 * (rt_monitor.h), the executor (runtime.h) for exec, stats, update and
 * delete.  The CRI message structs are the vocabulary: requests come in as
 * the kubelet sent them and query answers are filled into response structs.
 *
 * Threading: every function here runs on the loop thread and never blocks.
 * Blocking work (mounts, forks, file writes, cgroup reads) runs on the libuv
 * thread pool; CNI plugins are child processes on the loop.  State-changing
 * operations on one pod or container are serialised: at most one is in
 * flight per object, the others wait in its queue in arrival order.
 * Container exits are noticed through a pidfd of the monitor process (no
 * polling, no timers while idle).
 *
 * Errors: negative errno with err->msg; -ENOENT for unknown ids (the CRI
 * layer answers NOT_FOUND), -EEXIST "name is reserved", -EINVAL bad
 * request, -EBUSY wrong state (FAILED_PRECONDITION), -ETIMEDOUT.
 */
#ifndef RT_SVC_H
#define RT_SVC_H

#include "ag_core.h"

#include <uv.h>

#include "api.pb.h"

struct st_store;
struct rt_svc;

struct rt_svc_opts {
    uv_loop_t *loop;             /* required */
    struct st_store *store;      /* borrowed; opened with loop (async writes) */
    const struct ag_config *cfg; /* borrowed: root, state, CNI dirs */
    const char *cgroup_driver;   /* "systemd" or "cgroupfs" (borrowed) */
    const char *exe;             /* picocri binary for monitors and pause; NULL = /proc/self/exe */
};

/* Creates the service and recovers: loads pods and containers from the
 * store, reconnects to running monitors, reads exit files of containers
 * that exited meanwhile, marks pods whose namespaces are gone (reboot)
 * NOTREADY and their containers EXITED.  Blocking (start-up only).
 * Returns 0 with *out owned (rt_svc_free), or negative errno with err. */
int rt_svc_new(const struct rt_svc_opts *opts, struct rt_svc **out, struct ag_err *err) AG_WUR;
/* Stops watching monitors (containers keep running) and frees the service
 * once no operation is in flight; run the loop until rt_svc_busy() is 0
 * first.  Accepts NULL. */
void rt_svc_free(struct rt_svc *svc);
/* Number of operations and worker jobs in flight. */
size_t rt_svc_busy(const struct rt_svc *svc);

/* Completion of an asynchronous operation, on the loop thread: err->code 0
 * on success.  id is the new object's id (Run/Create), else NULL.  Both are
 * valid for the call only. */
typedef void (*rt_svc_done_cb)(void *arg, const struct ag_err *err, const char *id);

/* ---- pods ----------------------------------------------------------------- */

/* RunPodSandbox.  Borrows config for the call (copied).  handler "" or NULL
 * is the default; any other -> -EINVAL.  cb runs once the pod is READY (or
 * when it failed and everything made was undone).  Returns 0 (cb will run)
 * or negative errno with err (cb will not run). */
int rt_svc_pod_run(struct rt_svc *svc, const runtime_v1_PodSandboxConfig *config,
                   const char *handler, rt_svc_done_cb cb, void *arg, struct ag_err *err) AG_WUR;
/* StopPodSandbox: kills its containers (grace from their
 * io.kubernetes.pod.terminationGracePeriod annotation, else at once), CNI
 * DEL with the saved result, stops the infra process.  Idempotent;
 * an unknown id succeeds (kubelet contract). */
int rt_svc_pod_stop(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg,
                    struct ag_err *err) AG_WUR;
/* RemovePodSandbox: stop, remove every container, unpin, delete the record.
 * Idempotent; unknown id succeeds. */
int rt_svc_pod_remove(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg,
                      struct ag_err *err) AG_WUR;
/* PodSandboxStatus into *out.  The strings of *out borrow the record: valid
 * until the next change to the pod; free the containers with
 * rt_svc_pod_status_fini().  verbose adds info["info"] (owned JSON).
 * -ENOENT if unknown. */
int rt_svc_pod_status(struct rt_svc *svc, const char *id, bool verbose,
                      runtime_v1_PodSandboxStatusResponse *out, struct ag_err *err) AG_WUR;
void rt_svc_pod_status_fini(runtime_v1_PodSandboxStatusResponse *out);
/* ListPodSandbox into *out (items borrow the records; fini frees arrays). */
int rt_svc_pod_list(struct rt_svc *svc, const runtime_v1_PodSandboxFilter *filter,
                    runtime_v1_ListPodSandboxResponse *out, struct ag_err *err) AG_WUR;
void rt_svc_pod_list_fini(runtime_v1_ListPodSandboxResponse *out);

/* ---- containers ------------------------------------------------------------ */

/* CreateContainer.  The pod must exist and be READY (-EBUSY otherwise,
 * -ENOENT if unknown); the image must be in the store (-ENOENT). */
int rt_svc_ctr_create(struct rt_svc *svc, const char *pod_id,
                      const runtime_v1_ContainerConfig *config,
                      const runtime_v1_PodSandboxConfig *pod_config, rt_svc_done_cb cb, void *arg,
                      struct ag_err *err) AG_WUR;
/* StartContainer: spawns the monitor, which creates and starts it.  -EBUSY
 * unless CREATED. */
int rt_svc_ctr_start(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg,
                     struct ag_err *err) AG_WUR;
/* StopContainer: stop signal, wait timeout_s, then SIGKILL; 0 = at once.
 * Succeeds for an EXITED container; -ENOENT for an unknown one. */
int rt_svc_ctr_stop(struct rt_svc *svc, const char *id, int64_t timeout_s, rt_svc_done_cb cb,
                    void *arg, struct ag_err *err) AG_WUR;
/* RemoveContainer: kills if running, deletes rootfs, bundle, record.
 * Unknown id succeeds. */
int rt_svc_ctr_remove(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg,
                      struct ag_err *err) AG_WUR;
/* UpdateContainerResources: applies to the live cgroup, then the record. */
int rt_svc_ctr_update(struct rt_svc *svc, const char *id,
                      const runtime_v1_LinuxContainerResources *res, rt_svc_done_cb cb, void *arg,
                      struct ag_err *err) AG_WUR;
/* ReopenContainerLog: through the monitor.  -EBUSY unless RUNNING. */
int rt_svc_ctr_reopen_log(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg,
                          struct ag_err *err) AG_WUR;
/* ContainerStatus, borrowing as rt_svc_pod_status. */
int rt_svc_ctr_status(struct rt_svc *svc, const char *id, bool verbose,
                      runtime_v1_ContainerStatusResponse *out, struct ag_err *err) AG_WUR;
void rt_svc_ctr_status_fini(runtime_v1_ContainerStatusResponse *out);
int rt_svc_ctr_list(struct rt_svc *svc, const runtime_v1_ContainerFilter *filter,
                    runtime_v1_ListContainersResponse *out, struct ag_err *err) AG_WUR;
void rt_svc_ctr_list_fini(runtime_v1_ListContainersResponse *out);

/* ---- exec ------------------------------------------------------------------- */

/* Result of ExecSync: stdout/stderr are owned by the callee, valid for the
 * call.  err->code -ETIMEDOUT when the timeout killed it. */
typedef void (*rt_svc_exec_cb)(void *arg, const struct ag_err *err, int exit_code,
                               const uint8_t *out, size_t out_len, const uint8_t *errb,
                               size_t err_len);
#define RT_SVC_EXEC_MAX (16u << 20) /* per stream; the excess is dropped */
struct rt_svc_exec;
/* ExecSync: runs argv in the running container; timeout_s 0 = none.
 * *handle (may be NULL) allows rt_svc_exec_cancel (the process is killed,
 * cb then runs with -ECANCELED). */
int rt_svc_exec_sync(struct rt_svc *svc, const char *id, char *const *argv, size_t argc,
                     int64_t timeout_s, rt_svc_exec_cb cb, void *arg, struct rt_svc_exec **handle,
                     struct ag_err *err) AG_WUR;
void rt_svc_exec_cancel(struct rt_svc_exec *x);

/* ---- stats ------------------------------------------------------------------- */

/* Completion of a stats query: resp is a ContainerStatsResponse,
 * ListContainerStatsResponse, PodSandboxStatsResponse or
 * ListPodSandboxStatsResponse (per call), borrowed for the call. */
typedef void (*rt_svc_stats_cb)(void *arg, const struct ag_err *err, const void *resp);
int rt_svc_ctr_stats(struct rt_svc *svc, const char *id, rt_svc_stats_cb cb, void *arg,
                     struct ag_err *err) AG_WUR;
int rt_svc_ctr_stats_list(struct rt_svc *svc, const runtime_v1_ContainerStatsFilter *filter,
                          rt_svc_stats_cb cb, void *arg, struct ag_err *err) AG_WUR;
int rt_svc_pod_stats(struct rt_svc *svc, const char *id, rt_svc_stats_cb cb, void *arg,
                     struct ag_err *err) AG_WUR;
int rt_svc_pod_stats_list(struct rt_svc *svc, const runtime_v1_PodSandboxStatsFilter *filter,
                          rt_svc_stats_cb cb, void *arg, struct ag_err *err) AG_WUR;

/* ---- streaming lookups (for the Exec/Attach/PortForward backend) -------------- */

/* The full id of a RUNNING container (prefix accepted) into id_out (65
 * bytes); -ENOENT unknown, -EBUSY not running. */
int rt_svc_ctr_running(struct rt_svc *svc, const char *ref, char *id_out,
                       struct ag_err *err) AG_WUR;
/* The stdio settings a container was created with (ContainerConfig
 * stdin, stdin_once, tty), for Attach: with stdin_once the container's
 * stdin is closed when the first attached client closes its stdin.
 * -ENOENT unknown (prefix accepted). */
struct rt_svc_stdio {
    bool stdin_open, stdin_once, tty;
};
int rt_svc_ctr_stdio(struct rt_svc *svc, const char *ref, struct rt_svc_stdio *out,
                     struct ag_err *err) AG_WUR;
/* The executor state root (borrowed). */
const char *rt_svc_state_root(const struct rt_svc *svc);
/* The monitor socket of a running container (borrowed from the record). */
const char *rt_svc_ctr_monitor_socket(struct rt_svc *svc, const char *id);
/* The bundle directory of a container (borrowed from the record). */
const char *rt_svc_ctr_bundle(struct rt_svc *svc, const char *id);
/* The network namespace file of a READY pod ("" for host network). */
int rt_svc_pod_netns(struct rt_svc *svc, const char *ref, char *out, size_t out_len,
                     struct ag_err *err) AG_WUR;

/* ---- offline import (rt_svc_import.c) ------------------------------------------ */

/* `picocri import [--root DIR] LAYOUT[:TAG] NAME`: imports an image from an
 * OCI layout into the content store, unpacked layers and an ImageRecord,
 * with the daemon stopped (the store is opened in blocking mode).  For
 * preloading images and tests until the image service can import. */
int rt_svc_import_main(int argc, char **argv);

#endif
