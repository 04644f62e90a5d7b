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

#include <pb_encode.h>

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

CRI_QUERY_HANDLER(cri_ctr_status, runtime_v1_ContainerStatusRequest,
                  runtime_v1_ContainerStatusResponse,
                  rt_svc_ctr_status(svc, req->container_id, req->verbose, &resp, &err),
                  rt_svc_ctr_status_fini)

CRI_QUERY_HANDLER(cri_ctr_list, runtime_v1_ListContainersRequest, runtime_v1_ListContainersResponse,
                  rt_svc_ctr_list(svc, req->filter, &resp, &err), rt_svc_ctr_list_fini)

/* ---- ExecSync ------------------------------------------------------------------- */

static void on_exec_cancel(struct cri_call *call, void *data)
{
    (void)call;
    rt_svc_exec_cancel(data);
}

/* ExecSync output may be up to 16 MiB per stream: more than a pointer bytes
 * field of Debian's nanopb can hold, so it is encoded from a view. */
struct byte_view {
    const uint8_t *data;
    size_t len;
};

static bool encode_view(pb_ostream_t *stream, const pb_field_t *field, void *const *arg)
{
    const struct byte_view *v = *arg;

    if (v->len == 0)
        return true; /* proto3: an empty field is absent */
    return pb_encode_tag_for_field(stream, field) && pb_encode_string(stream, v->data, v->len);
}

static void on_exec_done(void *arg, const struct ag_err *err, int exit_code, const uint8_t *out,
                         size_t out_len, const uint8_t *errb, size_t err_len)
{
    struct cri_call *call = arg;
    runtime_v1_ExecSyncResponse resp = {.exit_code = exit_code};
    struct byte_view o = {out, out_len}, e = {errb, err_len};

    cri_call_on_cancel(call, NULL, NULL);
    if (err->code < 0) {
        cri_call_fail(call, err);
        return;
    }
    resp.stdout.funcs.encode = encode_view;
    resp.stdout.arg = &o;
    resp.stderr.funcs.encode = encode_view;
    resp.stderr.arg = &e;
    cri_call_reply(call, &resp);
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
