/* cri/: the RPC handlers the method table (cri_methods.c) points at.
 * One function per RPC, in cri_runtime.c (RuntimeService) or cri_image.c
 * (ImageService); see cri.h for the handler contract. */
#ifndef CRI_HANDLERS_H
#define CRI_HANDLERS_H

#include "cri.h"

/* RuntimeService (cri_runtime.c) */
void cri_runtime_version(struct cri_call *call, void *req);
void cri_runtime_status(struct cri_call *call, void *req);
void cri_runtime_config(struct cri_call *call, void *req);
void cri_runtime_update_config(struct cri_call *call, void *req);

/* RuntimeService, pods (cri_pod.c) */
void cri_pod_run(struct cri_call *call, void *req);
void cri_pod_stop(struct cri_call *call, void *req);
void cri_pod_remove(struct cri_call *call, void *req);
void cri_pod_status(struct cri_call *call, void *req);
void cri_pod_list(struct cri_call *call, void *req);
void cri_pod_stats(struct cri_call *call, void *req);
void cri_pod_stats_list(struct cri_call *call, void *req);

/* RuntimeService, containers (cri_container.c) */
void cri_ctr_create(struct cri_call *call, void *req);
void cri_ctr_start(struct cri_call *call, void *req);
void cri_ctr_stop(struct cri_call *call, void *req);
void cri_ctr_remove(struct cri_call *call, void *req);
void cri_ctr_list(struct cri_call *call, void *req);
void cri_ctr_status(struct cri_call *call, void *req);
void cri_ctr_update(struct cri_call *call, void *req);
void cri_ctr_reopen_log(struct cri_call *call, void *req);
void cri_ctr_exec_sync(struct cri_call *call, void *req);
void cri_ctr_stats(struct cri_call *call, void *req);
void cri_ctr_stats_list(struct cri_call *call, void *req);

/* RuntimeService, streaming (cri_stream.c) */
void cri_ctr_exec(struct cri_call *call, void *req);
void cri_ctr_attach(struct cri_call *call, void *req);
void cri_pod_port_forward(struct cri_call *call, void *req);

/* ImageService (cri_image.c) */
void cri_image_list(struct cri_call *call, void *req);
void cri_image_status(struct cri_call *call, void *req);
void cri_image_pull(struct cri_call *call, void *req);
void cri_image_remove(struct cri_call *call, void *req);
void cri_image_fsinfo(struct cri_call *call, void *req);
struct img_svc;
/* The daemon's image service, started on first use (blocking once: opens
 * the content store, reads registries.yaml and CA files).  Needs d->store. */
int cri_image_service(struct cri_daemon *d, struct img_svc **out, struct ag_err *err) AG_WUR;


/* A handler that answers at once from the runtime service's memory: `query`
 * fills resp (and err on failure), `fini` frees resp after the reply.  The
 * including file provides svc_of(). */
#define CRI_QUERY_HANDLER(name, req_type, resp_type, query, fini)                                  \
    void name(struct cri_call *call, void *reqp)                                                   \
    {                                                                                              \
        const req_type *req = reqp;                                                                \
        struct rt_svc *svc = svc_of(call);                                                         \
        resp_type resp;                                                                            \
        struct ag_err err;                                                                         \
        if (svc == NULL)                                                                           \
            return;                                                                                \
        ag_err_init(&err);                                                                         \
        if ((query) < 0) {                                                                         \
            cri_call_fail(call, &err);                                                             \
            return;                                                                                \
        }                                                                                          \
        cri_call_reply(call, &resp);                                                               \
        fini(&resp);                                                                               \
    }

#endif
