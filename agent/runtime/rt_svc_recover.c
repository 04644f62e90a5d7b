/* agent/runtime: recovery at daemon start.  The records say what should
 * exist; the state directory, the monitors and the pinned namespaces say
 * what does.  Running containers whose monitors answer are watched again;
 * those whose monitors exited meanwhile get their exit file's status; with
 * neither (a reboot emptied the state directory) they become EXITED with
 * reason Unknown.  Pods whose pins or infra process are gone become
 * NOTREADY, so the kubelet stops and removes them (which tolerates the
 * missing pieces).  CNI is not touched: the saved ADD result stays for DEL.
 *
 * Blocking (start-up only): monitor status requests are bounded.
 */
#include "rt_svc_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "rt_monitor.h"
#include "rt_pod.h"

#define RECOVER_MON_TIMEOUT_MS 2000

static char **collect_ids(struct rt_svc *svc, enum st_kind kind)
{
    size_t cap = st_count(svc->st, svc->ns, kind) + 1, n = 0;
    char **ids = calloc(cap, sizeof(char *));
    struct st_iter it;
    const void *rec;

    if (ids == NULL)
        return NULL;
    st_iter_init(&it, svc->st, svc->ns, kind);
    while ((rec = st_iter_next(&it)) != NULL && n + 1 < cap) {
        if ((ids[n] = strdup(st_record_id(kind, rec))) == NULL) {
            svc__strv_free(ids);
            return NULL;
        }
        n++;
    }
    return ids;
}

static bool pod_alive(const picocri_store_PodRecord *r)
{
    char path[SVC_PATH];
    struct stat st;
    const runtime_v1_PodSandboxConfig *c = r->config;
    const runtime_v1_NamespaceOption *o = c && c->linux && c->linux->security_context
                                              ? c->linux->security_context->namespace_options
                                              : NULL;

    if (r->state_dir == NULL || stat(r->state_dir, &st) < 0)
        return false;
    if ((o == NULL || o->network != runtime_v1_NamespaceMode_NODE) &&
        rt_pod_ns_path(r->state_dir, RT_POD_NETNS, path, sizeof(path)) < 0)
        return false;
    if (r->infra_pid > 0 && !rt_pod_pause_alive(r->infra_pid))
        return false;
    return true;
}

static void recover_pod(struct rt_svc *svc, const char *id)
{
    const picocri_store_PodRecord *r = svc__pod(svc, id, NULL);
    picocri_store_PodRecord rec = {0};
    struct ag_err err;

    if (r == NULL || r->state == picocri_store_PodState_POD_STATE_NOTREADY)
        return;
    if (r->state == picocri_store_PodState_POD_STATE_READY && pod_alive(r))
        return;
    if (svc__pod_copy(svc, id, &rec) < 0)
        return;
    ag_log(AG_WARN, "recover pod=%.12s: %s, now NOTREADY", id,
           rec.state == picocri_store_PodState_POD_STATE_CREATING ? "creation interrupted"
                                                                  : "namespaces or infra gone");
    rec.state = picocri_store_PodState_POD_STATE_NOTREADY;
    rec.stopped_at_ns = ag_now_ns();
    rec.infra_pid = 0;
    ag_err_init(&err);
    if (svc__pod_put(svc, &rec, &err) < 0)
        ag_log(AG_ERROR, "recover pod=%.12s: %s", id, err.msg);
}

static void mark_lost(struct rt_svc *svc, const char *id, const char *why)
{
    picocri_store_ContainerRecord rec = {0};
    struct ag_err err;

    if (svc__ctr_copy(svc, id, &rec) < 0)
        return;
    rec.state = picocri_store_ContainerState_CONTAINER_STATE_EXITED;
    rec.exit_code = 255;
    rec.finished_at_ns = ag_now_ns();
    rec.pid = 0;
    free(rec.reason);
    free(rec.message);
    rec.reason = strdup("Unknown");
    rec.message = strdup(why);
    ag_err_init(&err);
    if (svc__ctr_put(svc, &rec, &err) < 0)
        ag_log(AG_ERROR, "recover ctr=%.12s: %s", id, err.msg);
    ag_log(AG_WARN, "recover ctr=%.12s: %s, now EXITED", id, why);
}

/* A container whose StartContainer reply raced the daemon's death: its
 * monitor runs (or ran) but the record still says CREATED.  Adopt it as
 * RUNNING from what the monitor reports. */
static bool adopt_started(struct rt_svc *svc, const char *id, const char *socket,
                          const struct rt_mon_status *st)
{
    picocri_store_ContainerRecord rec = {0};
    struct ag_err err;

    if (svc__ctr_copy(svc, id, &rec) < 0)
        return false;
    rec.state = picocri_store_ContainerState_CONTAINER_STATE_RUNNING;
    free(rec.monitor_socket);
    rec.monitor_socket = strdup(socket);
    if (st != NULL) {
        rec.monitor_pid = st->monitor_pid;
        rec.pid = st->pid;
        rec.started_at_ns = st->started_at ? st->started_at : ag_now_ns();
    } else {
        rec.started_at_ns = ag_now_ns();
    }
    ag_err_init(&err);
    if (svc__ctr_put(svc, &rec, &err) < 0) {
        ag_log(AG_ERROR, "recover ctr=%.12s: %s", id, err.msg);
        return false;
    }
    ag_log(AG_INFO, "recover ctr=%.12s: started before the restart, now RUNNING", id);
    return true;
}

static void recover_created(struct rt_svc *svc, const picocri_store_ContainerRecord *r,
                            const char *id, size_t *watched)
{
    char path[SVC_PATH + 128];
    struct rt_mon_status st;
    struct stat sb;
    struct ag_err err;

    ag_err_init(&err);
    if (snprintf(path, sizeof(path), "%s/%s/monitor.sock", svc->state_root, id) <
            (int)sizeof(path) &&
        rt_monitor_status(path, &st, RECOVER_MON_TIMEOUT_MS, &err) == 0 &&
        st.state == RT_MON_RUNNING) {
        if (adopt_started(svc, id, path, &st)) {
            svc__watch(svc, id, st.monitor_pid);
            (*watched)++;
        }
        return;
    }
    /* Started and already exited while the daemon was away: the exit file
     * says how. */
    if (r->exit_file != NULL && stat(r->exit_file, &sb) == 0) {
        if (adopt_started(svc, id, path, NULL))
            svc__exit_check(svc, id);
        return;
    }
    if (snprintf(path, sizeof(path), "%s/config.json", r->bundle_path ? r->bundle_path : "") <
            (int)sizeof(path) &&
        stat(path, &sb) < 0)
        mark_lost(svc, id, "the container's bundle is gone (reboot?)");
}

static void recover_ctr(struct rt_svc *svc, const char *id, size_t *watched)
{
    const picocri_store_ContainerRecord *r = svc__ctr(svc, id, NULL);
    struct rt_mon_status st;
    struct ag_err err;

    if (r == NULL)
        return;
    ag_err_init(&err);
    switch (r->state) {
    case picocri_store_ContainerState_CONTAINER_STATE_CREATED:
        recover_created(svc, r, id, watched);
        return;
    case picocri_store_ContainerState_CONTAINER_STATE_RUNNING:
        if (r->monitor_socket != NULL &&
            rt_monitor_status(r->monitor_socket, &st, RECOVER_MON_TIMEOUT_MS, &err) == 0 &&
            st.state != RT_MON_EXITED_STATE) {
            svc__watch(svc, id, st.monitor_pid);
            (*watched)++;
            return;
        }
        /* Gone: the exit file (or its absence) decides, asynchronously. */
        svc__exit_check(svc, id);
        return;
    default:
        return;
    }
}

int svc__recover(struct rt_svc *svc, struct ag_err *err)
{
    char **pods = collect_ids(svc, ST_KIND_POD);
    char **ctrs = collect_ids(svc, ST_KIND_CONTAINER);
    size_t watched = 0, np = 0, nc = 0;

    if (pods == NULL || ctrs == NULL) {
        svc__strv_free(pods);
        svc__strv_free(ctrs);
        return ag_err_set(err, -ENOMEM, "recover: out of memory");
    }
    for (; pods[np] != NULL; np++)
        recover_pod(svc, pods[np]);
    for (; ctrs[nc] != NULL; nc++)
        recover_ctr(svc, ctrs[nc], &watched);
    svc__strv_free(pods);
    svc__strv_free(ctrs);
    ag_log(AG_INFO, "runtime recovered pods=%zu containers=%zu running=%zu", np, nc, watched);
    return 0;
}
