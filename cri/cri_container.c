/* cri/: RuntimeService handlers for containers — CreateContainer,
 * StartContainer, StopContainer, RemoveContainer, ListContainers,
 * ContainerStatus, UpdateContainerResources, ReopenContainerLog, ExecSync,
 * ContainerStats, ListContainerStats.  Validation here, work in the runtime
 * service (agent/runtime/rt_svc.h), errno -> gRPC status by cri_call_fail.
 *
 * Invariant: every handler completes its call exactly once; an ExecSync
 * whose call is cancelled kills its process.
 */
#include "cri_handlers.h"

#include <api.pb.h>
#include <string.h>

#include "runtime/rt_svc.h"

void cri__done_empty(void *arg, const struct ag_err *err, const char *id);
void cri__stats_done(void *arg, const struct ag_err *err, const void *resp);

static struct rt_svc *svc_of(struct cri_call *call)
{
    struct rt_svc *svc = cri_call_daemon(call)->rt;

    if (svc == NULL)
        cri_call_fail_code(call, CRI_UNAVAILABLE, "picocri: the runtime service is not running");
    return svc;
}

static void on_created(void *arg, const struct ag_err *err, const char *id)
{
    struct cri_call *call = arg;
    runtime_v1_CreateContainerResponse resp = {.container_id = (char *)id};

    if (err->code < 0)
        cri_call_fail(call, err);
    else
        cri_call_reply(call, &resp);
}

void cri_ctr_create(struct cri_call *call, void *reqp)
{
    const runtime_v1_CreateContainerRequest *req = reqp;
    struct rt_svc *svc = svc_of(call);
    struct ag_err err;

    if (svc == NULL)
        return;
    ag_err_init(&err);
    if (req->config == NULL) {
        cri_call_fail_code(call, CRI_INVALID_ARGUMENT, "picocri: config is required");
        return;
    }
    if (rt_svc_ctr_create(svc, req->pod_sandbox_id, req->config, req->sandbox_config, on_created,
                          call, &err) < 0)
        cri_call_fail(call, &err);
}

#define SIMPLE_HANDLER(name, type, expr)                                                           \
    void name(struct cri_call *call, void *reqp)                                                   \
    {                                                                                              \
        const type *req = reqp;                                                                    \
        struct rt_svc *svc = svc_of(call);                                                         \
        struct ag_err err;                                                                         \
        if (svc == NULL)                                                                           \
            return;                                                                                \
        ag_err_init(&err);                                                                         \
        if ((expr) < 0)                                                                            \
            cri_call_fail(call, &err);                                                             \
    }

SIMPLE_HANDLER(cri_ctr_start, runtime_v1_StartContainerRequest,
               rt_svc_ctr_start(svc, req->container_id, cri__done_empty, call, &err))
SIMPLE_HANDLER(cri_ctr_stop, runtime_v1_StopContainerRequest,
               rt_svc_ctr_stop(svc, req->container_id, req->timeout, cri__done_empty, call, &err))
SIMPLE_HANDLER(cri_ctr_remove, runtime_v1_RemoveContainerRequest,
               rt_svc_ctr_remove(svc, req->container_id, cri__done_empty, call, &err))
SIMPLE_HANDLER(cri_ctr_reopen_log, runtime_v1_ReopenContainerLogRequest,
               rt_svc_ctr_reopen_log(svc, req->container_id, cri__done_empty, call, &err))
SIMPLE_HANDLER(cri_ctr_update, runtime_v1_UpdateContainerResourcesRequest,
               rt_svc_ctr_update(svc, req->container_id, req->linux, cri__done_empty, call, &err))
SIMPLE_HANDLER(cri_ctr_stats, runtime_v1_ContainerStatsRequest,
               rt_svc_ctr_stats(svc, req->container_id, cri__stats_done, call, &err))
SIMPLE_HANDLER(cri_ctr_stats_list, runtime_v1_ListContainerStatsRequest,
               rt_svc_ctr_stats_list(svc, req->filter, cri__stats_done, call, &err))

void cri_ctr_status(struct cri_call *call, void *reqp)
{
    const runtime_v1_ContainerStatusRequest *req = reqp;
    struct rt_svc *svc = svc_of(call);
    runtime_v1_ContainerStatusResponse resp;
    struct ag_err err;

    if (svc == NULL)
        return;
    ag_err_init(&err);
    if (rt_svc_ctr_status(svc, req->container_id, req->verbose, &resp, &err) < 0) {
        cri_call_fail(call, &err);
        return;
    }
    cri_call_reply(call, &resp);
    rt_svc_ctr_status_fini(&resp);
}

void cri_ctr_list(struct cri_call *call, void *reqp)
{
    const runtime_v1_ListContainersRequest *req = reqp;
    struct rt_svc *svc = svc_of(call);
    runtime_v1_ListContainersResponse resp;
    struct ag_err err;

    if (svc == NULL)
        return;
    ag_err_init(&err);
    if (rt_svc_ctr_list(svc, req->filter, &resp, &err) < 0) {
        cri_call_fail(call, &err);
        return;
    }
    cri_call_reply(call, &resp);
    rt_svc_ctr_list_fini(&resp);
}

/* ---- ExecSync ------------------------------------------------------------------- */

static void on_exec_cancel(struct cri_call *call, void *data)
{
    (void)call;
    rt_svc_exec_cancel(data);
}

static void on_exec_done(void *arg, const struct ag_err *err, int exit_code, const uint8_t *out,
                         size_t out_len, const uint8_t *errb, size_t err_len)
{
    struct cri_call *call = arg;
    runtime_v1_ExecSyncResponse resp = {.exit_code = exit_code};

    cri_call_on_cancel(call, NULL, NULL);
    if (err->code < 0) {
        cri_call_fail(call, err);
        return;
    }
    resp.stdout = malloc(PB_BYTES_ARRAY_T_ALLOCSIZE(out_len));
    resp.stderr = malloc(PB_BYTES_ARRAY_T_ALLOCSIZE(err_len));
    if (resp.stdout == NULL || resp.stderr == NULL) {
        free(resp.stdout);
        free(resp.stderr);
        cri_call_fail_code(call, CRI_RESOURCE_EXHAUSTED, "picocri: out of memory");
        return;
    }
    resp.stdout->size = (pb_size_t)out_len;
    if (out_len > 0)
        memcpy(resp.stdout->bytes, out, out_len);
    resp.stderr->size = (pb_size_t)err_len;
    if (err_len > 0)
        memcpy(resp.stderr->bytes, errb, err_len);
    cri_call_reply(call, &resp);
    free(resp.stdout);
    free(resp.stderr);
}

void cri_ctr_exec_sync(struct cri_call *call, void *reqp)
{
    const runtime_v1_ExecSyncRequest *req = reqp;
    struct rt_svc *svc = svc_of(call);
    struct rt_svc_exec *x = NULL;
    struct ag_err err;

    if (svc == NULL)
        return;
    ag_err_init(&err);
    if (req->timeout < 0) {
        cri_call_fail_code(call, CRI_INVALID_ARGUMENT, "picocri: timeout must be >= 0");
        return;
    }
    if (rt_svc_exec_sync(svc, req->container_id, req->cmd, req->cmd_count, req->timeout,
                         on_exec_done, call, &x, &err) < 0) {
        cri_call_fail(call, &err);
        return;
    }
    cri_call_on_cancel(call, on_exec_cancel, x);
}
