/* cri/: the CRI front.  Public API for the RPC handlers (cri_runtime.c,
 * cri_image.c and whoever adds one), for main() and for client
 * subcommands.
 *
 * A handler is one function, called on the loop thread with a struct
 * cri_call that owns the decoded request.  It completes the call exactly
 * once, now or later, with cri_call_reply(), cri_call_fail(),
 * cri_call_fail_code() or (server-streaming) cri_call_finish().  A call
 * may be cancelled before that (client RST_STREAM, deadline, connection
 * lost, daemon drain): the cancel callback runs once, the call is then
 * detached from its stream, and the handler's completion becomes a no-op
 * that only frees the call.  So a handler never needs to know whether the
 * client is still there, and a call pointer is valid until the handler
 * completes it.
 */
#ifndef CRI_H
#define CRI_H

#include "ag_core.h"

#include <pb.h>

struct uv_loop_s;
struct cri_call;
struct st_store;
struct rt_svc;
struct strm_server;

/* gRPC status codes (grpc statuscodes.md). */
enum cri_code {
    CRI_OK = 0,
    CRI_CANCELLED = 1,
    CRI_UNKNOWN = 2,
    CRI_INVALID_ARGUMENT = 3,
    CRI_DEADLINE_EXCEEDED = 4,
    CRI_NOT_FOUND = 5,
    CRI_ALREADY_EXISTS = 6,
    CRI_PERMISSION_DENIED = 7,
    CRI_RESOURCE_EXHAUSTED = 8,
    CRI_FAILED_PRECONDITION = 9,
    CRI_ABORTED = 10,
    CRI_OUT_OF_RANGE = 11,
    CRI_UNIMPLEMENTED = 12,
    CRI_INTERNAL = 13,
    CRI_UNAVAILABLE = 14,
    CRI_DATA_LOSS = 15,
    CRI_UNAUTHENTICATED = 16,
};

/* The daemon state handlers see.  Owned by `picocri serve` (or a test);
 * borrowed by every connection and call. */
struct cri_daemon {
    struct ag_config *cfg;     /* borrowed */
    struct uv_loop_s *loop;    /* NULL: handlers do blocking work inline (tests, fuzzing) */
    char *pod_cidr;            /* owned; from UpdateRuntimeConfig, NULL until known */
    const char *cgroup_driver; /* "systemd" or "cgroupfs", fixed at start */
    struct st_store *store;    /* owned by serve: the records, shared by both services */
    struct rt_svc *rt;         /* owned by serve: pods and containers (agent/runtime/rt_svc.h) */
    struct strm_server *strm;  /* owned by serve: Exec/Attach/PortForward URLs (agent/stream) */
    struct img_svc *images;    /* images (agent/image/img_service.h); started at the first
                                * image RPC by cri_image_service(), closed on SIGTERM */
};

/* Fills the run-time parts of d (cgroup driver, stored pod CIDR) from
 * d->cfg; the caller sets cfg and loop first.  Blocking (start-up). */
void cri_daemon_init(struct cri_daemon *d);
void cri_daemon_fini(struct cri_daemon *d);

/* ---- handlers ----------------------------------------------------------- */

/* req is the decoded request, owned by the call and valid until the call
 * is completed.  A handler may steal pointer fields from it (set them to
 * NULL), pb_release() frees the rest. */
typedef void (*cri_handler_cb)(struct cri_call *call, void *req);
/* Runs at most once, when the call is cancelled before completion. */
typedef void (*cri_cancel_cb)(struct cri_call *call, void *data);

struct cri_method {
    const char *path; /* "/runtime.v1.RuntimeService/Version" */
    const char *name; /* "Version" */
    const pb_msgdesc_t *req_fields;
    size_t req_size;
    const pb_msgdesc_t *resp_fields;
    size_t resp_size;
    bool server_stream;
    cri_handler_cb handler;
};

/* The 41 CRI v1 methods (cri_methods.c). */
extern const struct cri_method cri_methods[];
extern const size_t cri_method_count;
/* Returns the method for a path (exact, case-sensitive), or NULL. */
const struct cri_method *cri_method_find(const struct cri_method *methods, size_t count,
                                         const char *path, size_t path_len);

/* Completes a unary call with one response message (or, for a
 * server-streaming call, sends it and finishes with OK).  Borrows resp:
 * it is encoded before this returns.  An encoding failure is reported to
 * the client as INTERNAL.  No-op apart from freeing if cancelled. */
void cri_call_reply(struct cri_call *call, const void *resp);
/* Completes with the status mapped from err->code (cri_code_from_errno)
 * and err->msg as grpc-message. */
void cri_call_fail(struct cri_call *call, const struct ag_err *err);
void cri_call_fail_code(struct cri_call *call, enum cri_code code, const char *fmt, ...)
    AG_PRINTF(3, 4);
/* Server-streaming: queues one message.  Returns 0, -ECANCELED when the
 * call was cancelled (stop producing, then finish), -ENOMEM, or -EIO if the
 * message does not encode.  Borrows msg. */
int cri_call_send(struct cri_call *call, const void *msg) AG_WUR;
/* Server-streaming: completes the call; err NULL or err->code 0 = OK. */
void cri_call_finish(struct cri_call *call, const struct ag_err *err);

/* Registers (or with cb NULL clears) the cancel callback.  If the call is
 * already cancelled, cb runs now. */
void cri_call_on_cancel(struct cri_call *call, cri_cancel_cb cb, void *data);
bool cri_call_cancelled(const struct cri_call *call);
struct cri_daemon *cri_call_daemon(const struct cri_call *call);
const struct cri_method *cri_call_method(const struct cri_call *call);
/* Monotonic deadline in ns (CLOCK_MONOTONIC), 0 = none. */
int64_t cri_call_deadline(const struct cri_call *call);

/* Answers UNIMPLEMENTED "picocri: <Method> is not implemented yet". */
void cri_unimplemented(struct cri_call *call, void *req);

/* ---- status mapping, gRPC text helpers (cri_grpc.c) ---------------------- */

/* One table: negative errno -> gRPC status (ENOENT NOT_FOUND, ...). */
enum cri_code cri_code_from_errno(int neg_errno);
/* And back, for the client side: a negative errno for a gRPC code. */
int cri_errno_from_code(enum cri_code code);
/* "NotFound" etc.; "Code(N)" style for unknown values is "Unknown". */
const char *cri_code_name(enum cri_code code);

/* ---- server (cri_server.c) ------------------------------------------------ */

/* Listens on d->cfg->socket and serves until SIGTERM/SIGINT, then drains.
 * Returns 0 after a clean drain, negative errno with err set if it could
 * not listen. */
int cri_serve(struct cri_daemon *d, struct ag_err *err) AG_WUR;

/* ---- client (cri_client.c) ------------------------------------------------ */

/* One blocking unary call over a fresh connection to sock_path.  Borrows
 * req; resp is decoded into (caller pb_release()s it, also on failure).
 * timeout_ms <= 0 means no deadline.  Returns 0, or a negative errno:
 * -ECONNREFUSED/-ENOENT when nothing listens, -ETIMEDOUT, or
 * cri_errno_from_code() of a non-OK status, with err->msg saying
 * "<CodeName>: <grpc-message>". */
int cri_client_call(const char *sock_path, const char *path, const pb_msgdesc_t *req_fields,
                    const void *req, const pb_msgdesc_t *resp_fields, void *resp, int timeout_ms,
                    struct ag_err *err) AG_WUR;
/* Default socket: $PICOCRI_SOCKET, else /run/picocri/picocri.sock. */
const char *cri_client_default_socket(void);

#endif
