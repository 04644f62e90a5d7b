/* cri/: RuntimeService handlers for pod sandboxes — RunPodSandbox,
 * StopPodSandbox, RemovePodSandbox, PodSandboxStatus, ListPodSandbox,
 * PodSandboxStats, ListPodSandboxStats.  Each validates the request,
 * calls the runtime service (agent/runtime/rt_svc.h) and maps its errno to
 * a gRPC status through cri_call_fail.
 *
 * Invariant: every handler completes its call exactly once, either inline
 * (queries, immediate errors) or from the service's completion callback.
 */
#include "cri_handlers.h"

#include <api.pb.h>
#include <string.h>

#include "runtime/rt_svc.h"

/* Shared with cri_container.c. */
void cri__done_empty(void *arg, const struct ag_err *err, const char *id);
void cri__stats_done(void *arg, const struct ag_err *err, const void *resp);

static struct rt_svc *svc_of(struct cri_call *call)
{
    struct rt_svc *svc = cri_call_daemon(call)->rt;

    if (svc == NULL)
        cri_call_fail_code(call, CRI_UNAVAILABLE, "picocri: the runtime service is not running");
    return svc;
}

/* Completion for calls whose answer is an empty message. */
void cri__done_empty(void *arg, const struct ag_err *err, const char *id)
{
    struct cri_call *call = arg;
    /* Every empty response encodes the same: any empty message works. */
    runtime_v1_StopPodSandboxResponse resp = {0};

    (void)id;
    if (err->code < 0)
        cri_call_fail(call, err);
    else
        cri_call_reply(call, &resp);
}

static void on_pod_run(void *arg, const struct ag_err *err, const char *id)
{
    struct cri_call *call = arg;
    runtime_v1_RunPodSandboxResponse resp = {.pod_sandbox_id = (char *)id};

    if (err->code < 0)
        cri_call_fail(call, err);
    else
        cri_call_reply(call, &resp);
}

void cri_pod_run(struct cri_call *call, void *reqp)
{
    const runtime_v1_RunPodSandboxRequest *req = reqp;
    struct rt_svc *svc = svc_of(call);
    struct ag_err err;

    if (svc == NULL)
        return;
    ag_err_init(&err);
    if (req->config == NULL) {
        cri_call_fail_code(call, CRI_INVALID_ARGUMENT, "picocri: config is required");
        return;
    }
    if (rt_svc_pod_run(svc, req->config, req->runtime_handler, on_pod_run, call, &err) < 0)
        cri_call_fail(call, &err);
}

void cri_pod_stop(struct cri_call *call, void *reqp)
{
    const runtime_v1_StopPodSandboxRequest *req = reqp;
    struct rt_svc *svc = svc_of(call);
    struct ag_err err;

    if (svc == NULL)
        return;
    ag_err_init(&err);
    if (rt_svc_pod_stop(svc, req->pod_sandbox_id, cri__done_empty, call, &err) < 0)
        cri_call_fail(call, &err);
}

void cri_pod_remove(struct cri_call *call, void *reqp)
{
    const runtime_v1_RemovePodSandboxRequest *req = reqp;
    struct rt_svc *svc = svc_of(call);
    struct ag_err err;

    if (svc == NULL)
        return;
    ag_err_init(&err);
    if (rt_svc_pod_remove(svc, req->pod_sandbox_id, cri__done_empty, call, &err) < 0)
        cri_call_fail(call, &err);
}

CRI_QUERY_HANDLER(cri_pod_status, runtime_v1_PodSandboxStatusRequest,
                  runtime_v1_PodSandboxStatusResponse,
                  rt_svc_pod_status(svc, req->pod_sandbox_id, req->verbose, &resp, &err),
                  rt_svc_pod_status_fini)

CRI_QUERY_HANDLER(cri_pod_list, runtime_v1_ListPodSandboxRequest, runtime_v1_ListPodSandboxResponse,
                  rt_svc_pod_list(svc, req->filter, &resp, &err), rt_svc_pod_list_fini)

/* ---- stats ---------------------------------------------------------------------- */

void cri__stats_done(void *arg, const struct ag_err *err, const void *resp)
{
    struct cri_call *call = arg;

    if (err->code < 0 || resp == NULL) {
        if (err->code < 0) {
            cri_call_fail(call, err);
        } else {
            cri_call_fail_code(call, CRI_INTERNAL, "picocri: stats failed");
        }
        return;
    }
    cri_call_reply(call, resp);
}

void cri_pod_stats(struct cri_call *call, void *reqp)
{
    const runtime_v1_PodSandboxStatsRequest *req = reqp;
    struct rt_svc *svc = svc_of(call);
    struct ag_err err;

    if (svc == NULL)
        return;
    ag_err_init(&err);
    if (rt_svc_pod_stats(svc, req->pod_sandbox_id, cri__stats_done, call, &err) < 0)
        cri_call_fail(call, &err);
}

void cri_pod_stats_list(struct cri_call *call, void *reqp)
{
    const runtime_v1_ListPodSandboxStatsRequest *req = reqp;
    struct rt_svc *svc = svc_of(call);
    struct ag_err err;

    if (svc == NULL)
        return;
    ag_err_init(&err);
    if (rt_svc_pod_stats_list(svc, req->filter, cri__stats_done, call, &err) < 0)
        cri_call_fail(call, &err);
}
