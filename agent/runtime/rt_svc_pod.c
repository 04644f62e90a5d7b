/* agent/runtime: pod sandboxes of the runtime service — RunPodSandbox,
 * StopPodSandbox and RemovePodSandbox as operations on the pod's queue.
 *
 * Run: the record is stored first as CREATING (it reserves the name and
 * lets a restart clean up a half-made pod), then a worker makes the pod
 * cgroup (resources + overhead applied, rt_svc_cgroup.c), the pod
 * directory, pinned namespaces, files and the infra process (in a leaf of
 * the pod cgroup), then CNI ADD runs on the loop, then the record becomes
 * READY and the call returns.
 * Any failure undoes everything in reverse (CNI DEL after a failed ADD too)
 * and deletes the record.
 * Stop: containers stopped (their grace), CNI DEL with the saved result
 * (skipped once released), infra process stopped, record NOTREADY.
 * Remove: stop, then every container removed, pins unmounted, pod cgroup
 * removed, record gone.
 * Both succeed for unknown ids and after a reboot (nothing left to undo).
 */
#include "rt_svc_int.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "net/net.h"
#include "rt_pod.h"

#define GRACE_ANNOTATION "io.kubernetes.pod.terminationGracePeriod"
#define GRACE_MAX_S 30

enum pod_kind { POD_RUN, POD_STOP, POD_REMOVE };

struct pod_op {
    struct svc_op op;
    struct rt_svc *svc;
    enum pod_kind kind;
    char id[ST_ID_HEX_LEN + 1];
    rt_svc_done_cb cb;
    void *arg;
    struct ag_err err;
    int pending; /* containers being stopped/removed */
    /* run */
    runtime_v1_PodSandboxConfig *config; /* owned copy */
    char dir[SVC_PATH];
    char netns[SVC_PATH];
    char cgroup[SVC_PATH], infra_cgroup[SVC_PATH + 8]; /* "" when none */
    bool cgroup_made;
    bool host_net, host_ipc, shared_pid;
    int infra_pid;
    struct net_cni_conf *cni; /* owned */
    char *cni_result;         /* owned */
    bool cni_added;
    /* stop */
    bool need_del;
    char *saved_result; /* owned */
};

static void pod_finish(struct pod_op *p)
{
    if (p->cb != NULL)
        p->cb(p->arg, &p->err, p->err.code == 0 && p->kind == POD_RUN ? p->id : NULL);
    if (p->config != NULL) {
        pb_release(runtime_v1_PodSandboxConfig_fields, p->config);
        free(p->config);
    }
    net_cni_conf_free(p->cni);
    p->config = NULL;
    free(p->cni_result);
    free(p->saved_result);
    svc__op_done(&p->op);
    free(p);
}

static const runtime_v1_NamespaceOption *pod_ns_opts(const runtime_v1_PodSandboxConfig *c)
{
    if (c != NULL && c->linux != NULL && c->linux->security_context != NULL)
        return c->linux->security_context->namespace_options;
    return NULL;
}

static int copy_config(const runtime_v1_PodSandboxConfig *in, runtime_v1_PodSandboxConfig **out)
{
    picocri_store_PodRecord tmp = {.config = (runtime_v1_PodSandboxConfig *)in};
    picocri_store_PodRecord copy = {0};
    static char fake_id[] = "0000000000000000000000000000000000000000000000000000000000000000";

    /* Deep copy through the store's record codec (encode/decode). */
    tmp.id = fake_id;
    int rc = st_record_copy(ST_KIND_POD, &tmp, &copy);
    if (rc < 0)
        return rc;
    *out = steal_ptr(&copy.config);
    st_record_release(ST_KIND_POD, &copy);
    return *out != NULL ? 0 : -EINVAL;
}

/* ---- run ---------------------------------------------------------------------------- */

static void run_undo_after(void *ctx, int status)
{
    struct pod_op *p = ctx;
    struct ag_err e;

    ag_err_init(&e);
    if (st_delete(p->svc->st, p->svc->ns, ST_KIND_POD, p->id, NULL, NULL, &e) < 0 &&
        e.code != -ENOENT)
        ag_log(AG_WARN, "pod=%.12s delete record: %s", p->id, e.msg);
    ag_log(AG_INFO, "pod run failed pod=%.12s err=\"%s\"", p->id, p->err.msg);
    pod_finish(p);
}

static void run_undo_work(void *ctx)
{
    struct pod_op *p = ctx;
    struct ag_err e;

    ag_err_init(&e);
    if (p->infra_pid > 0 && rt_pod_pause_stop(p->infra_pid) < 0)
        ag_log(AG_WARN, "pod=%.12s stop infra pid=%d failed", p->id, p->infra_pid);
    if (p->dir[0] != '\0' && rt_pod_remove(p->dir, &e) < 0)
        ag_log(AG_WARN, "pod=%.12s remove %s: %s", p->id, p->dir, e.msg);
    if (p->cgroup_made && svc__pod_cgroup_remove(p->cgroup, p->infra_cgroup) < 0)
        ag_log(AG_WARN, "pod=%.12s remove cgroup %s failed", p->id, p->cgroup);
}

static void run_undo(struct pod_op *p)
{
    if (svc__work(p->svc, p, run_undo_work, run_undo_after) < 0) {
        run_undo_work(p);
        run_undo_after(p, 0);
    }
}

static void fill_attach(struct pod_op *p, const runtime_v1_PodSandboxConfig *c, const char *netns,
                        struct net_attach *att, struct net_port_mapping *ports, size_t max)
{
    static const char *const protos[] = {"tcp", "udp", "sctp"};
    const runtime_v1_PodSandboxMetadata *m = c ? c->metadata : NULL;

    memset(att, 0, sizeof(*att));
    att->container_id = p->id;
    att->netns = netns;
    att->ifname = "eth0";
    att->pod_namespace = m && m->namespace ? m->namespace : "";
    att->pod_name = m && m->name ? m->name : "";
    att->pod_uid = m && m->uid ? m->uid : "";
    for (pb_size_t i = 0; c != NULL && i < c->port_mappings_count && att->port_count < max; i++) {
        const runtime_v1_PortMapping *pm = &c->port_mappings[i];
        if (pm->host_port <= 0)
            continue;
        struct net_port_mapping *o = &ports[att->port_count++];
        o->host_port = pm->host_port;
        o->container_port = pm->container_port;
        o->protocol = (unsigned)pm->protocol < 3 ? protos[pm->protocol] : "tcp";
        o->host_ip = pm->host_ip;
    }
    att->ports = ports;
}

static void run_ready(struct pod_op *p)
{
    picocri_store_PodRecord rec = {0};
    char ips[8][64];

    if (svc__pod_copy(p->svc, p->id, &rec) < 0) {
        ag_err_set(&p->err, -EIO, "pod %s record vanished", p->id);
        run_undo(p);
        return;
    }
    rec.state = picocri_store_PodState_POD_STATE_READY;
    rec.infra_pid = p->infra_pid;
    if (p->cni_result != NULL) {
        size_t n = 0, len = strlen(p->cni_result);
        cJSON *res = cJSON_Parse(p->cni_result);
        if (res != NULL)
            n = net_cni_result_ips(res, "eth0", ips, 8);
        cJSON_Delete(res);
        rec.ips = calloc(n ? n : 1, sizeof(char *));
        for (size_t i = 0; rec.ips != NULL && i < n; i++)
            if ((rec.ips[i] = strdup(ips[i])) != NULL)
                rec.ips_count++;
        rec.cni_result = malloc(PB_BYTES_ARRAY_T_ALLOCSIZE(len));
        if (rec.cni_result != NULL) {
            rec.cni_result->size = (pb_size_t)len;
            memcpy(rec.cni_result->bytes, p->cni_result, len);
        }
        rec.cni_network = svc__strdup(p->cni->name);
        rec.cni_ifname = strdup("eth0");
    }
    if (svc__pod_put(p->svc, &rec, &p->err) < 0) {
        run_undo(p);
        return;
    }
    ag_log(AG_INFO, "pod ready pod=%.12s ip=%s", p->id, p->cni_result ? "yes" : "host");
    pod_finish(p);
}

static void on_cni_undo_del(void *arg, int status, const char *json, const struct ag_err *err)
{
    struct pod_op *p = arg;
    if (status < 0)
        ag_log(AG_WARN, "pod=%.12s CNI DEL after failed ADD: %s", p->id, err ? err->msg : "");
    run_undo(p);
}

static void on_cni_add(void *arg, int status, const char *json, const struct ag_err *err)
{
    struct pod_op *p = arg;
    struct net_attach att;
    struct net_port_mapping ports[64];

    if (status == 0 && (p->cni_result = strdup(json ? json : "{}")) != NULL) {
        run_ready(p);
        return;
    }
    if (status == 0)
        ag_err_set(&p->err, -ENOMEM, "CNI ADD: out of memory");
    else
        p->err = *err;
    ag_err_wrap(&p->err, "set up pod network (CNI ADD)");
    /* CNI: always DEL after an ADD, even a failed one. */
    fill_attach(p, p->config, p->netns, &att, ports, AG_ARRAY_LEN(ports));
    const char *bins = p->svc->cfg->cni_bin_dirs ? p->svc->cfg->cni_bin_dirs : "/opt/cni/bin";
    if (net_cni_del(p->svc->loop, p->cni, bins, &att, NULL, SVC_CNI_TIMEOUT_MS, on_cni_undo_del,
                    p) < 0)
        run_undo(p);
}

static void run_work(void *ctx)
{
    struct pod_op *p = ctx;
    const runtime_v1_PodSandboxConfig *c = p->config;
    struct rt_pod_setup setup = {
        .dir = p->dir,
        .hostname = c->hostname && c->hostname[0] ? c->hostname : NULL,
        .host_network = p->host_net,
        .host_ipc = p->host_ipc,
        .dns = c->dns_config,
        .linux = c->linux,
    };
    int rc;

    if (!p->host_net) {
        const char *dir = p->svc->cfg->cni_conf_dir ? p->svc->cfg->cni_conf_dir : "/etc/cni/net.d";
        struct ag_err e; /* net_cni_conf_load_dir may leave e set on success */
        ag_err_init(&e);
        if ((rc = net_cni_conf_load_dir(dir, &p->cni, &e)) < 0) {
            /* Not NOT_FOUND: the kubelet must retry, not forget the pod. */
            ag_err_set(&p->err, -EAGAIN, "pod network not ready: %s", e.msg);
            return;
        }
    }
    /* Made before anything that runs in it; the undo removes it. */
    p->cgroup_made = true;
    if ((rc = svc__pod_cgroup_create(p->cgroup, c->linux, &p->err)) < 0)
        return;
    if ((rc = rt_pod_create(&setup, &p->err)) < 0)
        return; /* the undo removes whatever exists */
    if (p->shared_pid) {
        pid_t pid = 0;
        if ((rc = rt_pod_pause_start(p->svc->exe, p->dir, &pid, &p->err)) < 0)
            return;
        p->infra_pid = pid;
        if ((rc = svc__pod_cgroup_enter(p->infra_cgroup, pid, &p->err)) < 0)
            return;
    }
    if (!p->host_net && rt_pod_ns_path(p->dir, RT_POD_NETNS, p->netns, sizeof(p->netns)) < 0)
        ag_err_set(&p->err, -EIO, "pod network namespace was not pinned");
}

static void run_after(void *ctx, int status)
{
    struct pod_op *p = ctx;
    struct net_attach att;
    struct net_port_mapping ports[64];

    if (status < 0 && p->err.code == 0)
        ag_err_set(&p->err, status, "pod setup cancelled");
    if (p->err.code < 0) {
        run_undo(p);
        return;
    }
    if (p->host_net) {
        run_ready(p);
        return;
    }
    fill_attach(p, p->config, p->netns, &att, ports, AG_ARRAY_LEN(ports));
    const char *bins = p->svc->cfg->cni_bin_dirs ? p->svc->cfg->cni_bin_dirs : "/opt/cni/bin";
    int rc = net_cni_add(p->svc->loop, p->cni, bins, &att, SVC_CNI_TIMEOUT_MS, on_cni_add, p);
    if (rc < 0) {
        ag_err_set(&p->err, rc, "CNI ADD: %s", strerror(-rc));
        run_undo(p);
    }
}

static void run_start(struct svc_op *op)
{
    struct pod_op *p = ag_container_of(op, struct pod_op, op);
    int rc = svc__work(p->svc, p, run_work, run_after);

    if (rc < 0) {
        ag_err_set(&p->err, rc, "queue pod setup: %s", strerror(-rc));
        run_undo(p);
    }
}

static int run_validate(const runtime_v1_PodSandboxConfig *c, const char *handler,
                        struct ag_err *err)
{
    if (handler != NULL && handler[0] != '\0')
        return ag_err_set(err, -EINVAL,
                          "unknown runtime handler \"%.64s\" (only the default "
                          "handler \"\" exists)",
                          handler);
    if (c == NULL || c->metadata == NULL)
        return ag_err_set(err, -EINVAL, "config.metadata is required");
    if (c->metadata->name == NULL || c->metadata->name[0] == '\0' ||
        c->metadata->namespace == NULL || c->metadata->namespace[0] == '\0' ||
        c->metadata->uid == NULL || c->metadata->uid[0] == '\0')
        return ag_err_set(err, -EINVAL, "config.metadata needs name, namespace and uid");
    return 0;
}

static void pod_op_free(struct pod_op *p)
{
    if (p->config != NULL) {
        pb_release(runtime_v1_PodSandboxConfig_fields, p->config);
        free(p->config);
    }
    free(p);
}

/* The CREATING record reserves the name before anything is made. */
static int run_reserve(struct rt_svc *svc, struct pod_op *p, struct ag_err *err)
{
    const runtime_v1_PodSandboxConfig *c = p->config;
    picocri_store_PodRecord rec = {0};
    int rc = -ENOMEM;

    rec.id = strdup(p->id);
    rec.runtime_handler = strdup("");
    rec.created_at_ns = ag_now_ns();
    rec.state_dir = strdup(p->dir);
    rec.state = picocri_store_PodState_POD_STATE_CREATING;
    if (c->linux != NULL && c->linux->cgroup_parent != NULL &&
        (rec.cgroup_parent = strdup(c->linux->cgroup_parent)) == NULL)
        goto fail;
    if ((rec.cgroup_path = strdup(p->cgroup)) == NULL)
        goto fail;
    if (rec.id == NULL || rec.runtime_handler == NULL || rec.state_dir == NULL ||
        copy_config(c, &rec.config) < 0)
        goto fail;
    return svc__pod_put(svc, &rec, err);
fail:
    st_record_release(ST_KIND_POD, &rec);
    return ag_err_set(err, rc, "out of memory");
}

int rt_svc_pod_run(struct rt_svc *svc, const runtime_v1_PodSandboxConfig *config,
                   const char *handler, rt_svc_done_cb cb, void *arg, struct ag_err *err)
{
    struct pod_op *p;
    struct svc_obj *obj;
    int rc;

    if ((rc = run_validate(config, handler, err)) < 0)
        return rc;
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    p->svc = svc;
    p->kind = POD_RUN;
    p->cb = cb;
    p->arg = arg;
    ag_err_init(&p->err);
    if ((rc = st_id_new(p->id)) < 0 || (rc = copy_config(config, &p->config)) < 0) {
        pod_op_free(p);
        return ag_err_set(err, rc, "new pod: %s", strerror(-rc));
    }
    const runtime_v1_NamespaceOption *o = pod_ns_opts(p->config);
    p->host_net = o != NULL && o->network == runtime_v1_NamespaceMode_NODE;
    p->host_ipc = o != NULL && o->ipc == runtime_v1_NamespaceMode_NODE;
    p->shared_pid = o != NULL && o->pid == runtime_v1_NamespaceMode_POD;
    if (snprintf(p->dir, sizeof(p->dir), "%s/%s", svc->pods_dir, p->id) >= (int)sizeof(p->dir)) {
        pod_op_free(p);
        return ag_err_set(err, -ENAMETOOLONG, "pod directory path too long");
    }
    const char *parent = p->config->linux ? p->config->linux->cgroup_parent : NULL;
    if ((rc = svc__pod_cgroup_path(svc->systemd, parent, p->id, p->cgroup, sizeof(p->cgroup))) <
            0 ||
        (rc = svc__pod_infra_cgroup_path(p->cgroup, p->infra_cgroup, sizeof(p->infra_cgroup))) <
            0) {
        pod_op_free(p);
        return ag_err_set(err, -EINVAL, "linux.cgroup_parent \"%.200s\" is not a usable cgroup",
                          parent ? parent : "");
    }
    if ((rc = run_reserve(svc, p, err)) < 0) {
        pod_op_free(p);
        return rc;
    }
    if ((obj = svc__obj(svc, ST_KIND_POD, p->id)) == NULL) {
        struct ag_err e;
        ag_err_init(&e);
        svc_ignore(st_delete(svc->st, svc->ns, ST_KIND_POD, p->id, NULL, NULL, &e));
        pod_op_free(p);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    ag_log(AG_INFO, "pod run pod=%.12s name=%s/%s attempt=%u", p->id, config->metadata->namespace,
           config->metadata->name, config->metadata->attempt);
    svc__op_submit(obj, &p->op, run_start);
    return 0;
}

/* ---- stop ----------------------------------------------------------------------------- */

static void stop_step_record(struct pod_op *p);
static void remove_containers(struct pod_op *p);

static void stop_work(void *ctx)
{
    struct pod_op *p = ctx;
    struct stat st;

    if (p->infra_pid > 0 && rt_pod_pause_stop(p->infra_pid) < 0)
        ag_log(AG_WARN, "pod=%.12s stop infra pid=%d failed", p->id, p->infra_pid);
    if (p->need_del) {
        const char *dir = p->svc->cfg->cni_conf_dir ? p->svc->cfg->cni_conf_dir : "/etc/cni/net.d";
        struct ag_err e;
        ag_err_init(&e);
        if (net_cni_conf_load_dir(dir, &p->cni, &e) < 0) {
            ag_log(AG_WARN, "pod=%.12s CNI DEL skipped: %s", p->id, e.msg);
            p->need_del = false;
        }
        /* After a reboot the pinned namespace is gone: DEL without it. */
        if (p->netns[0] != '\0' && stat(p->netns, &st) < 0)
            p->netns[0] = '\0';
    }
}

static void on_cni_del(void *arg, int status, const char *json, const struct ag_err *err)
{
    struct pod_op *p = arg;

    if (status < 0) {
        /* Kept unreleased: the next StopPodSandbox retries. */
        p->err = *err;
        ag_err_wrap(&p->err, "tear down pod network (CNI DEL)");
        ag_log(AG_WARN, "pod=%.12s %s", p->id, p->err.msg);
        p->need_del = false;
        pod_finish(p);
        return;
    }
    stop_step_record(p);
}

static void stop_after(void *ctx, int status)
{
    struct pod_op *p = ctx;
    const picocri_store_PodRecord *rec = svc__pod(p->svc, p->id, NULL);
    struct net_attach att;
    struct net_port_mapping ports[64];

    if (!p->need_del || rec == NULL) {
        stop_step_record(p);
        return;
    }
    fill_attach(p, rec->config, p->netns, &att, ports, AG_ARRAY_LEN(ports));
    const char *bins = p->svc->cfg->cni_bin_dirs ? p->svc->cfg->cni_bin_dirs : "/opt/cni/bin";
    int rc = net_cni_del(p->svc->loop, p->cni, bins, &att, p->saved_result, SVC_CNI_TIMEOUT_MS,
                         on_cni_del, p);
    if (rc < 0) {
        ag_err_set(&p->err, rc, "CNI DEL: %s", strerror(-rc));
        pod_finish(p);
    }
}

static void stop_step_record(struct pod_op *p)
{
    picocri_store_PodRecord rec = {0};

    if (svc__pod_copy(p->svc, p->id, &rec) == 0) {
        rec.state = picocri_store_PodState_POD_STATE_NOTREADY;
        if (rec.stopped_at_ns == 0)
            rec.stopped_at_ns = ag_now_ns();
        rec.network_released = true;
        rec.infra_pid = 0;
        if (svc__pod_put(p->svc, &rec, &p->err) < 0) {
            pod_finish(p);
            return;
        }
    }
    if (p->kind == POD_REMOVE) {
        remove_containers(p);
        return;
    }
    ag_log(AG_INFO, "pod stopped pod=%.12s", p->id);
    pod_finish(p);
}

static void stop_network_and_infra(struct pod_op *p)
{
    const picocri_store_PodRecord *rec = svc__pod(p->svc, p->id, NULL);

    if (rec == NULL) {
        pod_finish(p);
        return;
    }
    p->infra_pid = rec->infra_pid;
    p->need_del = !rec->network_released && rec->cni_result != NULL;
    snprintf(p->netns, sizeof(p->netns), "%s/%s", rec->state_dir ? rec->state_dir : "",
             RT_POD_NETNS);
    if (p->need_del) {
        /* Bytes, not a C string: copy with an explicit terminator. */
        size_t n = rec->cni_result->size;
        if ((p->saved_result = malloc(n + 1)) == NULL) {
            p->need_del = false;
        } else {
            memcpy(p->saved_result, rec->cni_result->bytes, n);
            p->saved_result[n] = '\0';
        }
    }
    if (svc__work(p->svc, p, stop_work, stop_after) < 0) {
        ag_err_set(&p->err, -ENOMEM, "queue pod stop");
        pod_finish(p);
    }
}

static void on_ctr_stopped(void *arg, const struct ag_err *err, const char *id)
{
    struct pod_op *p = arg;

    if (err->code < 0 && p->err.code == 0)
        p->err = *err;
    if (--p->pending > 0)
        return;
    if (p->err.code < 0) {
        ag_err_wrap(&p->err, "stop pod %.12s", p->id);
        pod_finish(p);
        return;
    }
    stop_network_and_infra(p);
}

static int64_t grace_of(const picocri_store_ContainerRecord *c)
{
    const runtime_v1_ContainerConfig *cc = c->config;

    for (pb_size_t i = 0; cc != NULL && i < cc->annotations_count; i++) {
        if (cc->annotations[i].key && strcmp(cc->annotations[i].key, GRACE_ANNOTATION) == 0) {
            long v = atol(cc->annotations[i].value ? cc->annotations[i].value : "0");
            return v < 0 ? 0 : v > GRACE_MAX_S ? GRACE_MAX_S : v;
        }
    }
    return 0;
}

static void stop_start(struct svc_op *op)
{
    struct pod_op *p = ag_container_of(op, struct pod_op, op);
    char **ids;

    if (svc__pod(p->svc, p->id, NULL) == NULL) {
        pod_finish(p); /* gone: success (idempotent) */
        return;
    }
    if ((ids = svc__pod_ctr_ids(p->svc, p->id)) == NULL) {
        ag_err_set(&p->err, -ENOMEM, "out of memory");
        pod_finish(p);
        return;
    }
    p->pending = 1;
    for (size_t i = 0; ids[i] != NULL; i++) {
        const picocri_store_ContainerRecord *c = svc__ctr(p->svc, ids[i], NULL);
        if (c == NULL)
            continue;
        p->pending++;
        if (svc__ctr_stop(p->svc, ids[i], grace_of(c), on_ctr_stopped, p) < 0)
            p->pending--;
    }
    svc__strv_free(ids);
    struct ag_err ok;
    ag_err_init(&ok);
    on_ctr_stopped(p, &ok, NULL);
}

/* ---- remove ----------------------------------------------------------------------------- */

static void remove_after(void *ctx, int status)
{
    struct pod_op *p = ctx;
    struct ag_err e;

    ag_err_init(&e);
    if (p->err.code == 0 &&
        st_delete(p->svc->st, p->svc->ns, ST_KIND_POD, p->id, NULL, NULL, &e) < 0 &&
        e.code != -ENOENT)
        p->err = e;
    if (p->err.code == 0)
        ag_log(AG_INFO, "pod removed pod=%.12s", p->id);
    pod_finish(p);
}

static void remove_work(void *ctx)
{
    struct pod_op *p = ctx;

    if (p->dir[0] != '\0' && rt_pod_remove(p->dir, &p->err) < 0) {
        ag_err_wrap(&p->err, "remove pod %.12s", p->id);
        return;
    }
    /* Not fatal: the kubelet owns the pod cgroup too and removes it again;
     * a failure here is a busy cgroup, logged with its path. */
    if (p->cgroup[0] != '\0' && svc__pod_cgroup_remove(p->cgroup, p->infra_cgroup) < 0)
        ag_log(AG_WARN, "pod=%.12s remove pod cgroup %s: still busy", p->id, p->cgroup);
}

static void on_ctr_removed(void *arg, const struct ag_err *err, const char *id)
{
    struct pod_op *p = arg;
    const picocri_store_PodRecord *rec;

    if (err->code < 0 && p->err.code == 0)
        p->err = *err;
    if (--p->pending > 0)
        return;
    if (p->err.code < 0 || (rec = svc__pod(p->svc, p->id, NULL)) == NULL) {
        pod_finish(p);
        return;
    }
    snprintf(p->dir, sizeof(p->dir), "%s", rec->state_dir ? rec->state_dir : "");
    /* Records from before pod cgroups existed have none. */
    snprintf(p->cgroup, sizeof(p->cgroup), "%s", rec->cgroup_path ? rec->cgroup_path : "");
    if (p->cgroup[0] != '\0' &&
        svc__pod_infra_cgroup_path(p->cgroup, p->infra_cgroup, sizeof(p->infra_cgroup)) < 0)
        p->infra_cgroup[0] = '\0';
    if (svc__work(p->svc, p, remove_work, remove_after) < 0) {
        ag_err_set(&p->err, -ENOMEM, "queue pod removal");
        pod_finish(p);
    }
}

static void remove_containers(struct pod_op *p)
{
    char **ids = svc__pod_ctr_ids(p->svc, p->id);
    struct ag_err ok;

    if (ids == NULL) {
        ag_err_set(&p->err, -ENOMEM, "out of memory");
        pod_finish(p);
        return;
    }
    p->pending = 1;
    for (size_t i = 0; ids[i] != NULL; i++) {
        p->pending++;
        if (svc__ctr_remove(p->svc, ids[i], on_ctr_removed, p) < 0)
            p->pending--;
    }
    svc__strv_free(ids);
    ag_err_init(&ok);
    on_ctr_removed(p, &ok, NULL);
}

static int pod_submit(struct rt_svc *svc, enum pod_kind kind, const char *ref, rt_svc_done_cb cb,
                      void *arg, struct ag_err *err)
{
    const picocri_store_PodRecord *rec;
    struct ag_err lookup;
    struct pod_op *p;

    if (ref == NULL || ref[0] == '\0')
        return ag_err_set(err, -EINVAL, "pod_sandbox_id is required");
    ag_err_init(&lookup);
    if ((rec = svc__pod(svc, ref, &lookup)) == NULL) {
        if (lookup.code != -ENOENT) {
            *err = lookup;
            return err->code;
        }
        struct ag_err ok;
        ag_err_init(&ok);
        cb(arg, &ok, NULL); /* already gone: success */
        return 0;
    }
    if ((p = calloc(1, sizeof(*p))) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    p->svc = svc;
    p->kind = kind;
    p->cb = cb;
    p->arg = arg;
    ag_err_init(&p->err);
    snprintf(p->id, sizeof(p->id), "%s", rec->id);
    struct svc_obj *obj = svc__obj(svc, ST_KIND_POD, p->id);
    if (obj == NULL) {
        free(p);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    svc__op_submit(obj, &p->op, stop_start);
    return 0;
}

int rt_svc_pod_stop(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg,
                    struct ag_err *err)
{
    return pod_submit(svc, POD_STOP, id, cb, arg, err);
}

int rt_svc_pod_remove(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg,
                      struct ag_err *err)
{
    return pod_submit(svc, POD_REMOVE, id, cb, arg, err);
}

int rt_svc_pod_netns(struct rt_svc *svc, const char *ref, char *out, size_t out_len,
                     struct ag_err *err)
{
    const picocri_store_PodRecord *rec = svc__pod(svc, ref, err);

    if (rec == NULL)
        return err->code;
    if (rec->state != picocri_store_PodState_POD_STATE_READY)
        return ag_err_set(err, -EBUSY, "pod sandbox %.12s is not ready", rec->id);
    const runtime_v1_NamespaceOption *o = pod_ns_opts(rec->config);
    if (o != NULL && o->network == runtime_v1_NamespaceMode_NODE) {
        snprintf(out, out_len, "%s", "");
        return 0;
    }
    if (snprintf(out, out_len, "%s/%s", rec->state_dir ? rec->state_dir : "", RT_POD_NETNS) >=
        (int)out_len)
        return ag_err_set(err, -ENAMETOOLONG, "netns path too long");
    return 0;
}
