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

#endif
