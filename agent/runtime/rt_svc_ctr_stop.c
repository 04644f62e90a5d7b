/* agent/runtime: StopContainer, RemoveContainer, UpdateContainerResources
 * and ReopenContainerLog of the runtime service.
 *
 * Stop: the stop signal (resolved at create: config, image, SIGTERM) goes
 * through the monitor; a timer of `timeout` seconds escalates to SIGKILL of
 * every process in the container's cgroup; the operation completes when the
 * monitor's exit is processed (rt_svc_watch.c).  A timeout of 0 kills at
 * once.  Stopping an EXITED container succeeds at once; a CREATED one
 * becomes EXITED.  Remove = stop with timeout 0, then the executor's
 * delete, the rootfs unmount, bundle and upper directory removal, and the
 * record deletion; every step tolerates what a reboot already removed.
 */
#include "rt_svc_int.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>

#include "rt_monitor.h"
#include "runtime.h"

enum cop_kind { COP_STOP, COP_REMOVE, COP_UPDATE, COP_REOPEN };
enum cop_phase { PH_TERM, PH_KILL };

struct ctr_op {
    struct svc_op op;
    struct rt_svc *svc;
    enum cop_kind kind;
    char id[ST_ID_HEX_LEN + 1];
    rt_svc_done_cb cb;
    void *arg;
    struct ag_err err;
    int64_t timeout_s;
    uv_timer_t *timer;
    enum cop_phase phase;
    int sig;
    int kill_rounds;
    bool waiting;
    char socket[SVC_PATH + 128];
    char rootfs[SVC_PATH + 16], bundle[SVC_PATH], upper_base[SVC_PATH];
    runtime_v1_LinuxContainerResources *res; /* update: owned copy */
    bool running;
};

static void on_timer_closed(uv_handle_t *h) { free(h); }

static void cop_finish(struct ctr_op *c)
{
    if (c->timer != NULL)
        uv_close((uv_handle_t *)c->timer, on_timer_closed);
    if (c->res != NULL) {
        pb_release(runtime_v1_LinuxContainerResources_fields, c->res);
        free(c->res);
    }
    c->cb(c->arg, &c->err, NULL);
    svc__op_done(&c->op);
    free(c);
}

static void remove_phase(struct ctr_op *c);

static void stopped(struct ctr_op *c)
{
    if (c->kind == COP_REMOVE) {
        remove_phase(c);
        return;
    }
    if (c->err.code == 0)
        ag_log(AG_INFO, "container stopped ctr=%.12s", c->id);
    cop_finish(c);
}

/* ---- stop ---------------------------------------------------------------------------------- */

static void on_exited(void *arg, int status)
{
    struct ctr_op *c = arg;

    c->waiting = false;
    if (c->timer != NULL)
        uv_timer_stop(c->timer);
    if (status < 0 && c->err.code == 0)
        ag_err_set(&c->err, status, "stop %.12s: cancelled", c->id);
    stopped(c);
}

static void signal_work(void *ctx)
{
    struct ctr_op *c = ctx;
    struct ag_err e;
    int rc;

    ag_err_init(&e);
    rc = rt_monitor_signal(c->socket, c->sig, c->sig == SIGKILL, SVC_MON_TIMEOUT_MS, &e);
    if (rc < 0 && c->sig == SIGKILL) {
        /* The monitor is gone or stuck: kill the cgroup directly. */
        struct ag_err e2;
        ag_err_init(&e2);
        svc_ignore(rt_container_kill(c->svc->state_root, c->id, SIGKILL, true, &e2));
    }
    if (rc < 0)
        ag_log(AG_DEBUG, "ctr=%.12s signal %d: %s", c->id, c->sig, e.msg);
}

static void on_timer(uv_timer_t *t);

static void signal_after(void *ctx, int status)
{
    struct ctr_op *c = ctx;
    uint64_t ms = c->sig == SIGKILL ? SVC_KILL_WAIT_MS : (uint64_t)c->timeout_s * 1000;

    if (c->timer == NULL) {
        if ((c->timer = calloc(1, sizeof(*c->timer))) == NULL ||
            uv_timer_init(c->svc->loop, c->timer) < 0) {
            free(c->timer);
            c->timer = NULL;
        } else {
            c->timer->data = c;
        }
    }
    if (c->timer != NULL)
        uv_timer_start(c->timer, on_timer, ms, 0);
    if (!c->waiting) {
        c->waiting = true;
        /* May call on_exited at once when the exit was already processed. */
        svc__wait_exit(c->svc, c->id, on_exited, c);
    }
}

static void send_signal(struct ctr_op *c, int sig)
{
    c->sig = sig;
    if (svc__work(c->svc, c, signal_work, signal_after) < 0) {
        ag_err_set(&c->err, -ENOMEM, "queue signal");
        if (c->waiting)
            return; /* the pending wait completes the operation */
        cop_finish(c);
    }
}

static void on_timer(uv_timer_t *t)
{
    struct ctr_op *c = t->data;

    if (c->sig != SIGKILL) {
        ag_log(AG_INFO, "ctr=%.12s did not stop in %llds: SIGKILL", c->id, (long long)c->timeout_s);
        send_signal(c, SIGKILL);
        return;
    }
    /* Still no exit from the monitor: look at the exit file ourselves,
     * a bounded number of times. */
    ag_log(AG_WARN, "ctr=%.12s no exit %dms after SIGKILL; checking", c->id, SVC_KILL_WAIT_MS);
    if (++c->kill_rounds < 3) {
        svc__exit_check(c->svc, c->id);
        uv_timer_start(c->timer, on_timer, SVC_KILL_WAIT_MS, 0);
        return;
    }
    svc__wait_cancel(c->svc, c->id, on_exited, c);
    c->waiting = false;
    ag_err_set(&c->err, -ETIMEDOUT, "container %.12s did not exit after SIGKILL", c->id);
    stopped(c);
}

static void mark_exited(struct ctr_op *c, int exit_code, const char *reason)
{
    picocri_store_ContainerRecord rec = {0};

    if (svc__ctr_copy(c->svc, c->id, &rec) < 0)
        return;
    rec.state = picocri_store_ContainerState_CONTAINER_STATE_EXITED;
    rec.finished_at_ns = ag_now_ns();
    rec.exit_code = exit_code;
    free(rec.reason);
    rec.reason = strdup(reason);
    svc_ignore(svc__ctr_put(c->svc, &rec, &c->err));
}

static void unknown_kill_work(void *ctx)
{
    struct ctr_op *c = ctx;
    struct ag_err e;

    ag_err_init(&e);
    svc_ignore(rt_container_kill(c->svc->state_root, c->id, SIGKILL, true, &e));
}

static void unknown_kill_after(void *ctx, int status)
{
    struct ctr_op *c = ctx;

    mark_exited(c, 137, "Error");
    stopped(c);
}

static void stop_run(struct svc_op *op)
{
    struct ctr_op *c = ag_container_of(op, struct ctr_op, op);
    const picocri_store_ContainerRecord *rec = svc__ctr(c->svc, c->id, NULL);

    if (rec == NULL) {
        cop_finish(c); /* removed meanwhile: nothing to stop */
        return;
    }
    snprintf(c->socket, sizeof(c->socket), "%s", rec->monitor_socket ? rec->monitor_socket : "");
    snprintf(c->rootfs, sizeof(c->rootfs), "%s", rec->rootfs_path ? rec->rootfs_path : "");
    snprintf(c->bundle, sizeof(c->bundle), "%s", rec->bundle_path ? rec->bundle_path : "");
    switch (rec->state) {
    case picocri_store_ContainerState_CONTAINER_STATE_CREATED:
        mark_exited(c, 0, "Completed");
        stopped(c);
        return;
    case picocri_store_ContainerState_CONTAINER_STATE_RUNNING:
        send_signal(c, c->timeout_s <= 0      ? SIGKILL
                       : rec->stop_signal > 0 ? rec->stop_signal
                                              : SIGTERM);
        return;
    case picocri_store_ContainerState_CONTAINER_STATE_UNKNOWN:
        if (svc__work(c->svc, c, unknown_kill_work, unknown_kill_after) < 0)
            unknown_kill_after(c, 0);
        return;
    default:
        stopped(c);
        return;
    }
}

/* ---- remove ---------------------------------------------------------------------------------- */

static void remove_work(void *ctx)
{
    struct ctr_op *c = ctx;
    struct ag_err e;

    ag_err_init(&e);
    int rc = rt_container_delete(c->svc->state_root, c->id, true, &e);
    if (rc < 0 && rc != -ENOENT)
        ag_log(AG_WARN, "ctr=%.12s executor delete: %s", c->id, e.msg);
    if (c->rootfs[0] != '\0' && umount2(c->rootfs, MNT_DETACH) < 0 && errno != EINVAL &&
        errno != ENOENT)
        ag_log(AG_WARN, "ctr=%.12s umount %s: %s", c->id, c->rootfs, strerror(errno));
    if (c->bundle[0] != '\0')
        svc_ignore(svc__rm_rf(c->bundle));
    if (c->upper_base[0] != '\0')
        svc_ignore(svc__rm_rf(c->upper_base));
}

static void remove_after(void *ctx, int status)
{
    struct ctr_op *c = ctx;
    struct ag_err e;

    ag_err_init(&e);
    if (st_delete(c->svc->st, c->svc->ns, ST_KIND_CONTAINER, c->id, NULL, NULL, &e) < 0 &&
        e.code != -ENOENT)
        c->err = e;
    else
        ag_log(AG_INFO, "container removed ctr=%.12s", c->id);
    cop_finish(c);
}

static void remove_phase(struct ctr_op *c)
{
    if (svc__ctr(c->svc, c->id, NULL) == NULL) {
        cop_finish(c);
        return;
    }
    /* A failed stop does not block removal: delete forces the kill. */
    ag_err_init(&c->err);
    if (svc__ctr_paths(c->svc, c->id, NULL, NULL, c->upper_base) < 0)
        c->upper_base[0] = '\0';
    if (svc__work(c->svc, c, remove_work, remove_after) < 0) {
        ag_err_set(&c->err, -ENOMEM, "queue removal");
        cop_finish(c);
    }
}

/* ---- update, reopen ------------------------------------------------------------------------------ */

static void fill_resources(const runtime_v1_LinuxContainerResources *r, struct rt_resources *o)
{
    memset(o, 0, sizeof(*o));
    if (r->cpu_shares > 0) {
        o->has_cpu_shares = true;
        o->cpu_shares = (uint64_t)r->cpu_shares;
    }
    if (r->cpu_quota != 0) {
        o->has_cpu_quota = true;
        o->cpu_quota = r->cpu_quota;
    }
    if (r->cpu_period > 0) {
        o->has_cpu_period = true;
        o->cpu_period = (uint64_t)r->cpu_period;
    }
    if (r->memory_limit_in_bytes > 0) {
        o->has_mem_limit = true;
        o->mem_limit = r->memory_limit_in_bytes;
    }
    if (r->memory_swap_limit_in_bytes > 0) {
        o->has_mem_swap = true;
        o->mem_swap = r->memory_swap_limit_in_bytes;
    }
    o->cpus = r->cpuset_cpus && r->cpuset_cpus[0] ? r->cpuset_cpus : NULL;
    o->mems = r->cpuset_mems && r->cpuset_mems[0] ? r->cpuset_mems : NULL;
}

static void update_work(void *ctx)
{
    struct ctr_op *c = ctx;
    struct rt_resources res;

    if (!c->running)
        return;
    fill_resources(c->res, &res);
    /* Borrowed strings: not rt_resources_fini'd. */
    if (rt_container_update(c->svc->state_root, c->id, &res, &c->err) < 0)
        ag_err_wrap(&c->err, "update resources of %.12s", c->id);
}

static void update_after(void *ctx, int status)
{
    struct ctr_op *c = ctx;
    picocri_store_ContainerRecord rec = {0};

    if (c->err.code == 0 && svc__ctr_copy(c->svc, c->id, &rec) == 0) {
        if (rec.config->linux == NULL)
            rec.config->linux = calloc(1, sizeof(*rec.config->linux));
        if (rec.config->linux != NULL) {
            if (rec.config->linux->resources != NULL) {
                pb_release(runtime_v1_LinuxContainerResources_fields, rec.config->linux->resources);
                free(rec.config->linux->resources);
            }
            rec.config->linux->resources = steal_ptr(&c->res);
        }
        svc_ignore(svc__ctr_put(c->svc, &rec, &c->err));
    }
    cop_finish(c);
}

static void reopen_work(void *ctx)
{
    struct ctr_op *c = ctx;

    if (rt_monitor_reopen_log(c->socket, SVC_MON_TIMEOUT_MS, &c->err) < 0)
        ag_err_wrap(&c->err, "reopen log of %.12s", c->id);
}

static void simple_after(void *ctx, int status) { cop_finish(ctx); }

static void misc_run(struct svc_op *op)
{
    struct ctr_op *c = ag_container_of(op, struct ctr_op, op);
    const picocri_store_ContainerRecord *rec = svc__ctr(c->svc, c->id, &c->err);
    int rc;

    if (rec == NULL) {
        cop_finish(c);
        return;
    }
    c->running = rec->state == picocri_store_ContainerState_CONTAINER_STATE_RUNNING;
    snprintf(c->socket, sizeof(c->socket), "%s", rec->monitor_socket ? rec->monitor_socket : "");
    if (c->kind == COP_REOPEN && !c->running) {
        ag_err_set(&c->err, -EBUSY, "container %.12s is not running", c->id);
        cop_finish(c);
        return;
    }
    if (c->kind == COP_UPDATE && rec->config == NULL) {
        ag_err_set(&c->err, -EIO, "container %.12s has no config", c->id);
        cop_finish(c);
        return;
    }
    rc = svc__work(c->svc, c, c->kind == COP_UPDATE ? update_work : reopen_work,
                   c->kind == COP_UPDATE ? update_after : simple_after);
    if (rc < 0) {
        ag_err_set(&c->err, rc, "queue: %s", strerror(-rc));
        cop_finish(c);
    }
}

/* ---- submission ---------------------------------------------------------------------------------- */

static int cop_submit(struct rt_svc *svc, enum cop_kind kind, const char *ref, int64_t timeout_s,
                      bool missing_ok, rt_svc_done_cb cb, void *arg, struct ctr_op **out,
                      struct ag_err *err)
{
    struct ag_err lookup;
    const picocri_store_ContainerRecord *rec;
    struct ctr_op *c;
    struct svc_obj *obj;

    ag_err_init(&lookup);
    if ((rec = svc__ctr(svc, ref, &lookup)) == NULL) {
        if (lookup.code == -ENOENT && missing_ok) {
            struct ag_err ok;
            ag_err_init(&ok);
            cb(arg, &ok, NULL);
            return 0;
        }
        *err = lookup;
        return err->code;
    }
    if ((c = calloc(1, sizeof(*c))) == NULL ||
        (obj = svc__obj(svc, ST_KIND_CONTAINER, rec->id)) == NULL) {
        free(c);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    c->svc = svc;
    c->kind = kind;
    c->cb = cb;
    c->arg = arg;
    c->timeout_s = timeout_s;
    ag_err_init(&c->err);
    snprintf(c->id, sizeof(c->id), "%s", rec->id);
    if (out != NULL) {
        *out = c;
        return 0;
    }
    svc__op_submit(obj, &c->op, kind == COP_STOP || kind == COP_REMOVE ? stop_run : misc_run);
    return 0;
}

int rt_svc_ctr_stop(struct rt_svc *svc, const char *id, int64_t timeout_s, rt_svc_done_cb cb,
                    void *arg, struct ag_err *err)
{
    if (id == NULL || id[0] == '\0')
        return ag_err_set(err, -EINVAL, "container_id is required");
    return cop_submit(svc, COP_STOP, id, timeout_s, false, cb, arg, NULL, err);
}

int rt_svc_ctr_remove(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg,
                      struct ag_err *err)
{
    if (id == NULL || id[0] == '\0')
        return ag_err_set(err, -EINVAL, "container_id is required");
    return cop_submit(svc, COP_REMOVE, id, 0, true, cb, arg, NULL, err);
}

int svc__ctr_stop(struct rt_svc *svc, const char *id, int64_t timeout_s, rt_svc_done_cb cb,
                  void *arg)
{
    struct ag_err err;
    ag_err_init(&err);
    return cop_submit(svc, COP_STOP, id, timeout_s, true, cb, arg, NULL, &err);
}

int svc__ctr_remove(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg)
{
    struct ag_err err;
    ag_err_init(&err);
    return cop_submit(svc, COP_REMOVE, id, 0, true, cb, arg, NULL, &err);
}

int rt_svc_ctr_update(struct rt_svc *svc, const char *id,
                      const runtime_v1_LinuxContainerResources *res, rt_svc_done_cb cb, void *arg,
                      struct ag_err *err)
{
    struct ctr_op *c = NULL;
    int rc;

    if (id == NULL || id[0] == '\0')
        return ag_err_set(err, -EINVAL, "container_id is required");
    if (res == NULL)
        return ag_err_set(err, -EINVAL, "linux resources are required");
    if ((rc = cop_submit(svc, COP_UPDATE, id, 0, false, cb, arg, &c, err)) < 0)
        return rc;
    if ((c->res = calloc(1, sizeof(*c->res))) == NULL ||
        svc__msg_copy(runtime_v1_LinuxContainerResources_fields, res, c->res) < 0) {
        if (c->res != NULL)
            pb_release(runtime_v1_LinuxContainerResources_fields, c->res);
        free(c->res);
        free(c);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    svc__op_submit(svc__obj(svc, ST_KIND_CONTAINER, c->id), &c->op, misc_run);
    return 0;
}

int rt_svc_ctr_reopen_log(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg,
                          struct ag_err *err)
{
    if (id == NULL || id[0] == '\0')
        return ag_err_set(err, -EINVAL, "container_id is required");
    return cop_submit(svc, COP_REOPEN, id, 0, false, cb, arg, NULL, err);
}
