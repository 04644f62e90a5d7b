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

/* ImageService (cri_image.c): none implemented yet. */

#endif
