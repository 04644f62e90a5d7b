/* cri/: Exec, Attach and PortForward.  Each RPC checks its target with the
 * runtime service, stores a copy of what the session needs under a
 * one-time token of the streaming server (agent/stream) and answers its
 * URL.  The server calls back into the backend below when the client
 * connects: exec runs the command with the container's process settings
 * (from its config.json) through strm_container_exec, attach goes through
 * the container's monitor, port-forward dials inside the pod's network
 * namespace.  The server listens on the configured stream-address
 * (`serve --stream-address HOST:PORT`, default 127.0.0.1:0).
 *
 * Invariant: a request is looked up again when the client connects (the
 * container may have exited or been removed in between).
 */
#include "cri_handlers.h"

#include <api.pb.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

#include "runtime/rt_svc.h"
#include "runtime/runtime.h"
#include "stream/strm.h"

struct stream_req {
    struct rt_svc *svc;
    char id[65];
    char **argv; /* exec: NULL-terminated, owned */
    bool stdin_once;
};

static void stream_req_free(void *p)
{
    struct stream_req *r = p;

    if (r == NULL)
        return;
    for (size_t i = 0; r->argv != NULL && r->argv[i] != NULL; i++)
        free(r->argv[i]);
    free(r->argv);
    free(r);
}

/* ---- backend -------------------------------------------------------------------- */

static int be_exec(void *ctx, uv_loop_t *loop, void *request, const struct strm_params *params,
                   const struct strm_proc_sink *sink, struct strm_proc **out, struct ag_err *err)
{
    struct stream_req *r = request;
    struct rt_spec *spec = NULL;
    char id[65];
    int rc;

    (void)ctx;
    if ((rc = rt_svc_ctr_running(r->svc, r->id, id, err)) < 0)
        return rc;
    /* config.json lives on the state tmpfs: a small, non-blocking read. */
    if ((rc = rt_spec_load(rt_svc_ctr_bundle(r->svc, id), &spec, err)) < 0)
        return rc;
    struct rt_process *proc = steal_ptr(&spec->process);
    rt_spec_free(spec);
    if (proc == NULL)
        return ag_err_set(err, -EINVAL, "container %.12s has no process", id);
    for (size_t i = 0; proc->args != NULL && proc->args[i] != NULL; i++)
        free(proc->args[i]);
    free(proc->args);
    proc->args = steal_ptr(&r->argv);
    proc->args_count = 0;
    while (proc->args[proc->args_count] != NULL)
        proc->args_count++;
    return strm_container_exec(loop, rt_svc_state_root(r->svc), id, proc, params, sink, out, err);
}

static int be_attach(void *ctx, uv_loop_t *loop, void *request, const struct strm_params *params,
                     const struct strm_proc_sink *sink, struct strm_proc **out, struct ag_err *err)
{
    struct stream_req *r = request;
    char id[65];
    int rc;

    (void)ctx;
    if ((rc = rt_svc_ctr_running(r->svc, r->id, id, err)) < 0)
        return rc;
    return strm_monitor_attach(loop, rt_svc_ctr_monitor_socket(r->svc, id), params, r->stdin_once,
                               sink, out, err);
}

static int be_netns(void *ctx, void *request, char *path, size_t path_len, struct ag_err *err)
{
    struct stream_req *r = request;

    (void)ctx;
    return rt_svc_pod_netns(r->svc, r->id, path, path_len, err);
}

static const struct strm_backend_ops backend = {
    .exec = be_exec,
    .attach = be_attach,
    .portforward_netns = be_netns,
};

int cri_stream_start(struct cri_daemon *d, struct ag_err *err);
void cri_stream_stop(struct cri_daemon *d);

/* The streaming server's listener would keep the loop (and so cri_serve's
 * drain) alive: it is stopped as soon as SIGTERM/SIGINT arrives, by an
 * unreferenced signal watcher beside the server's own. */
static uv_signal_t stop_signals[2];
static struct cri_daemon *stop_daemon;

static void on_stop_signal(uv_signal_t *h, int signum)
{
    (void)h;
    (void)signum;
    if (stop_daemon != NULL && stop_daemon->strm != NULL) {
        strm_server_stop(stop_daemon->strm);
        stop_daemon->strm = NULL;
    }
}

static void on_signal_closed(uv_handle_t *h) { (void)h; }

int cri_stream_start(struct cri_daemon *d, struct ag_err *err)
{
    static const int sigs[2] = {SIGTERM, SIGINT};
    const char *address = d->cfg != NULL ? d->cfg->stream_address : NULL;
    int rc = strm_server_start(d->loop, address, &backend, NULL, &d->strm, err);

    if (rc < 0)
        return rc;
    stop_daemon = d;
    for (int i = 0; i < 2; i++) {
        if (uv_signal_init(d->loop, &stop_signals[i]) == 0 &&
            uv_signal_start(&stop_signals[i], on_stop_signal, sigs[i]) == 0)
            uv_unref((uv_handle_t *)&stop_signals[i]);
    }
    ag_log(AG_INFO, "streaming server address=%s port=%d", address ? address : "127.0.0.1:0",
           strm_server_port(d->strm));
    return 0;
}

void cri_stream_stop(struct cri_daemon *d)
{
    strm_server_stop(d->strm);
    d->strm = NULL;
    if (stop_daemon == d) {
        for (int i = 0; i < 2; i++)
            if (stop_signals[i].loop != NULL && !uv_is_closing((uv_handle_t *)&stop_signals[i]))
                uv_close((uv_handle_t *)&stop_signals[i], on_signal_closed);
        stop_daemon = NULL;
    }
}

/* ---- handlers --------------------------------------------------------------------- */

static void issue(struct cri_call *call, enum strm_kind kind, const struct strm_params *params,
                  struct stream_req *r)
{
    struct cri_daemon *d = cri_call_daemon(call);
    runtime_v1_ExecResponse resp = {0}; /* Exec/Attach/PortForward: {string url = 1} */
    char url[256];
    struct ag_err err;

    ag_err_init(&err);
    if (d->strm == NULL) {
        stream_req_free(r);
        cri_call_fail_code(call, CRI_UNAVAILABLE, "picocri: the streaming server is not running");
        return;
    }
    if (strm_server_issue(d->strm, kind, params, r, stream_req_free, url, sizeof(url), &err) < 0) {
        cri_call_fail(call, &err);
        return;
    }
    resp.url = url;
    cri_call_reply(call, &resp);
}

static struct stream_req *req_new(struct cri_call *call, const char *ref, bool pod)
{
    struct cri_daemon *d = cri_call_daemon(call);
    struct stream_req *r;
    struct ag_err err;
    char path[4096];
    int rc;

    ag_err_init(&err);
    if (d->rt == NULL) {
        cri_call_fail_code(call, CRI_UNAVAILABLE, "picocri: the runtime service is not running");
        return NULL;
    }
    if ((r = calloc(1, sizeof(*r))) == NULL) {
        cri_call_fail_code(call, CRI_RESOURCE_EXHAUSTED, "picocri: out of memory");
        return NULL;
    }
    r->svc = d->rt;
    rc = pod ? rt_svc_pod_netns(d->rt, ref, path, sizeof(path), &err)
             : rt_svc_ctr_running(d->rt, ref, r->id, &err);
    if (rc < 0) {
        free(r);
        cri_call_fail(call, &err);
        return NULL;
    }
    if (pod)
        snprintf(r->id, sizeof(r->id), "%s", ref);
    return r;
}

void cri_ctr_exec(struct cri_call *call, void *reqp)
{
    const runtime_v1_ExecRequest *req = reqp;
    struct strm_params p = {.tty = req->tty,
                            .stdin = req->stdin,
                            .stdout = req->stdout,
                            .stderr = req->stderr && !req->tty};
    struct stream_req *r;

    if (req->cmd_count == 0 || req->cmd[0] == NULL || req->cmd[0][0] == '\0') {
        cri_call_fail_code(call, CRI_INVALID_ARGUMENT, "picocri: cmd is required");
        return;
    }
    if (!req->stdin && !req->stdout && !req->stderr) {
        cri_call_fail_code(call, CRI_INVALID_ARGUMENT,
                           "picocri: one of stdin, stdout, stderr must be set");
        return;
    }
    if ((r = req_new(call, req->container_id, false)) == NULL)
        return;
    if ((r->argv = calloc(req->cmd_count + 1u, sizeof(char *))) == NULL) {
        stream_req_free(r);
        cri_call_fail_code(call, CRI_RESOURCE_EXHAUSTED, "picocri: out of memory");
        return;
    }
    for (pb_size_t i = 0; i < req->cmd_count; i++) {
        if ((r->argv[i] = strdup(req->cmd[i] ? req->cmd[i] : "")) == NULL) {
            stream_req_free(r);
            cri_call_fail_code(call, CRI_RESOURCE_EXHAUSTED, "picocri: out of memory");
            return;
        }
    }
    issue(call, STRM_EXEC, &p, r);
}

void cri_ctr_attach(struct cri_call *call, void *reqp)
{
    const runtime_v1_AttachRequest *req = reqp;
    struct strm_params p = {.tty = req->tty,
                            .stdin = req->stdin,
                            .stdout = req->stdout,
                            .stderr = req->stderr && !req->tty};
    struct stream_req *r;

    if (!req->stdin && !req->stdout && !req->stderr) {
        cri_call_fail_code(call, CRI_INVALID_ARGUMENT,
                           "picocri: one of stdin, stdout, stderr must be set");
        return;
    }
    if ((r = req_new(call, req->container_id, false)) == NULL)
        return;
    /* The container's own stdin_once decides whether its stdin closes
     * when this attach session ends. */
    struct rt_svc_stdio io;
    struct ag_err ignored;
    ag_err_init(&ignored);
    if (rt_svc_ctr_stdio(r->svc, r->id, &io, &ignored) == 0)
        r->stdin_once = io.stdin_once;
    issue(call, STRM_ATTACH, &p, r);
}

void cri_pod_port_forward(struct cri_call *call, void *reqp)
{
    const runtime_v1_PortForwardRequest *req = reqp;
    struct strm_params p = {0};
    struct stream_req *r;

    if ((r = req_new(call, req->pod_sandbox_id, true)) == NULL)
        return;
    issue(call, STRM_PORTFORWARD, &p, r);
}
