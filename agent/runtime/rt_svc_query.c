/* agent/runtime: the read-only answers of the runtime service —
 * PodSandboxStatus, ListPodSandbox, ContainerStatus, ListContainers — built
 * from the records in memory on the loop thread, without I/O.
 *
 * Invariant: labels, annotations and metadata are the stored CRI structs
 * themselves (borrowed), so they round-trip byte-identical; only the
 * containers of the answers (arrays, wrappers, the verbose JSON) are
 * allocated here and freed by the matching _fini.
 */
#include "rt_svc_int.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* Every CRI map entry is {char *key; char *value;}: the stored config's
 * entries are handed out as the response's entry type. */
#define KV_CAST(type, ptr) ((type *)(void *)(ptr))
_Static_assert(sizeof(runtime_v1_PodSandboxConfig_LabelsEntry) == sizeof(struct svc_kv),
               "map entry layout");
_Static_assert(sizeof(runtime_v1_ContainerConfig_LabelsEntry) == sizeof(struct svc_kv),
               "map entry layout");

static bool id_matches(const char *id, const char *want)
{
    return want == NULL || want[0] == '\0' || strncmp(id, want, strlen(want)) == 0;
}

static runtime_v1_PodSandboxState pod_state(const picocri_store_PodRecord *r)
{
    return r->state == picocri_store_PodState_POD_STATE_READY
               ? runtime_v1_PodSandboxState_SANDBOX_READY
               : runtime_v1_PodSandboxState_SANDBOX_NOTREADY;
}

static runtime_v1_ContainerState ctr_state(const picocri_store_ContainerRecord *r)
{
    switch (r->state) {
    case picocri_store_ContainerState_CONTAINER_STATE_CREATED:
        return runtime_v1_ContainerState_CONTAINER_CREATED;
    case picocri_store_ContainerState_CONTAINER_STATE_RUNNING:
        return runtime_v1_ContainerState_CONTAINER_RUNNING;
    case picocri_store_ContainerState_CONTAINER_STATE_EXITED:
        return runtime_v1_ContainerState_CONTAINER_EXITED;
    default:
        return runtime_v1_ContainerState_CONTAINER_UNKNOWN;
    }
}

static const runtime_v1_NamespaceOption *pod_ns(const runtime_v1_PodSandboxConfig *c)
{
    if (c != NULL && c->linux != NULL && c->linux->security_context != NULL)
        return c->linux->security_context->namespace_options;
    return NULL;
}

/* ---- pods ---------------------------------------------------------------------------- */

static char *pod_info_json(const picocri_store_PodRecord *r)
{
    cJSON *o = cJSON_CreateObject();
    char *out = NULL;

    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "state",
                            r->state == picocri_store_PodState_POD_STATE_READY      ? "ready"
                            : r->state == picocri_store_PodState_POD_STATE_CREATING ? "creating"
                                                                                    : "notready");
    cJSON_AddStringToObject(o, "stateDir", r->state_dir ? r->state_dir : "");
    cJSON_AddStringToObject(o, "cgroupParent", r->cgroup_parent ? r->cgroup_parent : "");
    cJSON_AddNumberToObject(o, "infraPid", r->infra_pid);
    cJSON_AddStringToObject(o, "cniNetwork", r->cni_network ? r->cni_network : "");
    cJSON_AddBoolToObject(o, "networkReleased", r->network_released);
    if (r->cni_result != NULL) {
        cJSON *res = cJSON_ParseWithLength((const char *)r->cni_result->bytes, r->cni_result->size);
        if (res != NULL)
            cJSON_AddItemToObject(o, "cniResult", res);
    }
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

static int pod_fill(const picocri_store_PodRecord *r, runtime_v1_PodSandboxStatus *st)
{
    const runtime_v1_PodSandboxConfig *c = r->config;
    const runtime_v1_NamespaceOption *o = pod_ns(c);

    st->id = r->id;
    st->metadata = c ? c->metadata : NULL;
    st->state = pod_state(r);
    st->created_at = r->created_at_ns;
    st->runtime_handler = r->runtime_handler;
    if (c != NULL) {
        st->labels_count = c->labels_count;
        st->labels = KV_CAST(runtime_v1_PodSandboxStatus_LabelsEntry, c->labels);
        st->annotations_count = c->annotations_count;
        st->annotations = KV_CAST(runtime_v1_PodSandboxStatus_AnnotationsEntry, c->annotations);
    }
    if (o == NULL || o->network != runtime_v1_NamespaceMode_NODE) {
        if ((st->network = calloc(1, sizeof(*st->network))) == NULL)
            return -ENOMEM;
        st->network->ip = r->ips_count > 0 ? r->ips[0] : (char *)"";
        if (r->ips_count > 1) {
            st->network->additional_ips = calloc(r->ips_count - 1, sizeof(runtime_v1_PodIP));
            if (st->network->additional_ips == NULL)
                return -ENOMEM;
            for (pb_size_t i = 1; i < r->ips_count; i++)
                st->network->additional_ips[i - 1].ip = r->ips[i];
            st->network->additional_ips_count = r->ips_count - 1;
        }
    }
    if ((st->linux = calloc(1, sizeof(*st->linux))) == NULL ||
        (st->linux->namespaces = calloc(1, sizeof(*st->linux->namespaces))) == NULL)
        return -ENOMEM;
    st->linux->namespaces->options = (runtime_v1_NamespaceOption *)o;
    return 0;
}

static void pod_status_free(runtime_v1_PodSandboxStatus *st)
{
    if (st == NULL)
        return;
    if (st->network != NULL)
        free(st->network->additional_ips);
    free(st->network);
    if (st->linux != NULL)
        free(st->linux->namespaces);
    free(st->linux);
}

void rt_svc_pod_status_fini(runtime_v1_PodSandboxStatusResponse *out)
{
    pod_status_free(out->status);
    free(out->status);
    for (pb_size_t i = 0; i < out->info_count; i++)
        free(out->info[i].value);
    free(out->info);
    memset(out, 0, sizeof(*out));
}

int rt_svc_pod_status(struct rt_svc *svc, const char *id, bool verbose,
                      runtime_v1_PodSandboxStatusResponse *out, struct ag_err *err)
{
    const picocri_store_PodRecord *r = svc__pod(svc, id, err);

    memset(out, 0, sizeof(*out));
    if (r == NULL)
        return err->code;
    out->timestamp = ag_now_ns();
    if ((out->status = calloc(1, sizeof(*out->status))) == NULL || pod_fill(r, out->status) < 0)
        goto oom;
    if (verbose) {
        if ((out->info = calloc(1, sizeof(*out->info))) == NULL)
            goto oom;
        out->info[0].key = (char *)"info";
        if ((out->info[0].value = pod_info_json(r)) == NULL)
            goto oom;
        out->info_count = 1;
    }
    return 0;
oom:
    rt_svc_pod_status_fini(out);
    return ag_err_set(err, -ENOMEM, "out of memory");
}

static bool pod_filter_ok(const picocri_store_PodRecord *r, const runtime_v1_PodSandboxFilter *f)
{
    if (f == NULL)
        return true;
    if (!id_matches(r->id, f->id))
        return false;
    if (f->state != NULL && f->state->state != pod_state(r))
        return false;
    const runtime_v1_PodSandboxConfig *c = r->config;
    return svc__labels_match(KV_CAST(struct svc_kv, c ? c->labels : NULL), c ? c->labels_count : 0,
                             KV_CAST(struct svc_kv, f->label_selector), f->label_selector_count);
}

int rt_svc_pod_list(struct rt_svc *svc, const runtime_v1_PodSandboxFilter *filter,
                    runtime_v1_ListPodSandboxResponse *out, struct ag_err *err)
{
    size_t cap = st_count(svc->st, svc->ns, ST_KIND_POD);
    const picocri_store_PodRecord *r;
    struct st_iter it;

    memset(out, 0, sizeof(*out));
    if (cap == 0)
        return 0;
    if ((out->items = calloc(cap, sizeof(*out->items))) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    st_iter_init(&it, svc->st, svc->ns, ST_KIND_POD);
    while ((r = st_iter_next(&it)) != NULL && out->items_count < cap) {
        if (!pod_filter_ok(r, filter))
            continue;
        runtime_v1_PodSandbox *p = &out->items[out->items_count++];
        const runtime_v1_PodSandboxConfig *c = r->config;
        p->id = r->id;
        p->metadata = c ? c->metadata : NULL;
        p->state = pod_state(r);
        p->created_at = r->created_at_ns;
        p->runtime_handler = r->runtime_handler;
        if (c != NULL) {
            p->labels_count = c->labels_count;
            p->labels = KV_CAST(runtime_v1_PodSandbox_LabelsEntry, c->labels);
            p->annotations_count = c->annotations_count;
            p->annotations = KV_CAST(runtime_v1_PodSandbox_AnnotationsEntry, c->annotations);
        }
    }
    return 0;
}

void rt_svc_pod_list_fini(runtime_v1_ListPodSandboxResponse *out)
{
    free(out->items);
    memset(out, 0, sizeof(*out));
}

/* ---- containers ----------------------------------------------------------------------- */

static char *ctr_info_json(const picocri_store_ContainerRecord *r)
{
    cJSON *o = cJSON_CreateObject();
    char *out = NULL;

    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "id", r->id);
    cJSON_AddStringToObject(o, "sandboxID", r->pod_id ? r->pod_id : "");
    cJSON_AddNumberToObject(o, "pid", r->pid);
    cJSON_AddNumberToObject(o, "monitorPid", r->monitor_pid);
    cJSON_AddStringToObject(o, "monitorSocket", r->monitor_socket ? r->monitor_socket : "");
    cJSON_AddStringToObject(o, "bundle", r->bundle_path ? r->bundle_path : "");
    cJSON_AddStringToObject(o, "rootfs", r->rootfs_path ? r->rootfs_path : "");
    cJSON_AddStringToObject(o, "upperDir", r->upper_dir ? r->upper_dir : "");
    cJSON_AddStringToObject(o, "cgroupsPath", r->cgroup_path ? r->cgroup_path : "");
    cJSON_AddStringToObject(o, "exitFile", r->exit_file ? r->exit_file : "");
    cJSON_AddNumberToObject(o, "stopSignal", r->stop_signal);
    cJSON *layers = cJSON_AddArrayToObject(o, "lowerLayers");
    for (pb_size_t i = 0; layers != NULL && i < r->lower_layers_count; i++)
        cJSON_AddItemToArray(layers, cJSON_CreateString(r->lower_layers[i]));
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

void rt_svc_ctr_status_fini(runtime_v1_ContainerStatusResponse *out)
{
    if (out->status != NULL)
        free(out->status->resources);
    free(out->status);
    for (pb_size_t i = 0; i < out->info_count; i++)
        free(out->info[i].value);
    free(out->info);
    memset(out, 0, sizeof(*out));
}

static void ctr_fill(const picocri_store_ContainerRecord *r, runtime_v1_ContainerStatus *st)
{
    const runtime_v1_ContainerConfig *c = r->config;

    st->id = r->id;
    st->state = ctr_state(r);
    st->created_at = r->created_at_ns;
    st->started_at = r->started_at_ns;
    st->finished_at = r->finished_at_ns;
    st->exit_code = r->exit_code;
    st->image_ref = r->image_ref;
    st->image_id = r->image_id;
    st->reason = r->reason;
    st->message = r->message;
    st->log_path = r->log_path;
    if (c == NULL)
        return;
    st->metadata = c->metadata;
    st->image = c->image;
    st->labels_count = c->labels_count;
    st->labels = KV_CAST(runtime_v1_ContainerStatus_LabelsEntry, c->labels);
    st->annotations_count = c->annotations_count;
    st->annotations = KV_CAST(runtime_v1_ContainerStatus_AnnotationsEntry, c->annotations);
    st->mounts_count = c->mounts_count;
    st->mounts = c->mounts;
    st->stop_signal = c->stop_signal;
}

int rt_svc_ctr_status(struct rt_svc *svc, const char *id, bool verbose,
                      runtime_v1_ContainerStatusResponse *out, struct ag_err *err)
{
    const picocri_store_ContainerRecord *r = svc__ctr(svc, id, err);

    memset(out, 0, sizeof(*out));
    if (r == NULL)
        return err->code;
    if ((out->status = calloc(1, sizeof(*out->status))) == NULL)
        goto oom;
    ctr_fill(r, out->status);
    if (r->config != NULL && r->config->linux != NULL && r->config->linux->resources != NULL) {
        if ((out->status->resources = calloc(1, sizeof(*out->status->resources))) == NULL)
            goto oom;
        out->status->resources->linux = r->config->linux->resources;
    }
    if (verbose) {
        if ((out->info = calloc(1, sizeof(*out->info))) == NULL)
            goto oom;
        out->info[0].key = (char *)"info";
        if ((out->info[0].value = ctr_info_json(r)) == NULL)
            goto oom;
        out->info_count = 1;
    }
    return 0;
oom:
    rt_svc_ctr_status_fini(out);
    return ag_err_set(err, -ENOMEM, "out of memory");
}

static bool ctr_filter_ok(const picocri_store_ContainerRecord *r,
                          const runtime_v1_ContainerFilter *f)
{
    if (f == NULL)
        return true;
    if (!id_matches(r->id, f->id) || !id_matches(r->pod_id ? r->pod_id : "", f->pod_sandbox_id))
        return false;
    if (f->state != NULL && f->state->state != ctr_state(r))
        return false;
    const runtime_v1_ContainerConfig *c = r->config;
    return svc__labels_match(KV_CAST(struct svc_kv, c ? c->labels : NULL), c ? c->labels_count : 0,
                             KV_CAST(struct svc_kv, f->label_selector), f->label_selector_count);
}

int rt_svc_ctr_list(struct rt_svc *svc, const runtime_v1_ContainerFilter *filter,
                    runtime_v1_ListContainersResponse *out, struct ag_err *err)
{
    size_t cap = st_count(svc->st, svc->ns, ST_KIND_CONTAINER);
    const picocri_store_ContainerRecord *r;
    struct st_iter it;

    memset(out, 0, sizeof(*out));
    if (cap == 0)
        return 0;
    if ((out->containers = calloc(cap, sizeof(*out->containers))) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    st_iter_init(&it, svc->st, svc->ns, ST_KIND_CONTAINER);
    while ((r = st_iter_next(&it)) != NULL && out->containers_count < cap) {
        if (!ctr_filter_ok(r, filter))
            continue;
        runtime_v1_Container *o = &out->containers[out->containers_count++];
        const runtime_v1_ContainerConfig *c = r->config;
        o->id = r->id;
        o->pod_sandbox_id = r->pod_id;
        o->state = ctr_state(r);
        o->created_at = r->created_at_ns;
        o->image_ref = r->image_ref;
        o->image_id = r->image_id;
        if (c != NULL) {
            o->metadata = c->metadata;
            o->image = c->image;
            o->labels_count = c->labels_count;
            o->labels = KV_CAST(runtime_v1_Container_LabelsEntry, c->labels);
            o->annotations_count = c->annotations_count;
            o->annotations = KV_CAST(runtime_v1_Container_AnnotationsEntry, c->annotations);
        }
    }
    return 0;
}

void rt_svc_ctr_list_fini(runtime_v1_ListContainersResponse *out)
{
    free(out->containers);
    memset(out, 0, sizeof(*out));
}

/* ---- lookups for streaming ---------------------------------------------------------------- */

int rt_svc_ctr_running(struct rt_svc *svc, const char *ref, char *id_out, struct ag_err *err)
{
    const picocri_store_ContainerRecord *r = svc__ctr(svc, ref, err);

    if (r == NULL)
        return err->code;
    if (r->state != picocri_store_ContainerState_CONTAINER_STATE_RUNNING)
        return ag_err_set(err, -EBUSY, "container %.12s is not running", r->id);
    snprintf(id_out, ST_ID_HEX_LEN + 1, "%s", r->id);
    return 0;
}

const char *rt_svc_ctr_monitor_socket(struct rt_svc *svc, const char *id)
{
    const picocri_store_ContainerRecord *r = svc__ctr(svc, id, NULL);
    return r != NULL ? r->monitor_socket : NULL;
}

const char *rt_svc_ctr_bundle(struct rt_svc *svc, const char *id)
{
    const picocri_store_ContainerRecord *r = svc__ctr(svc, id, NULL);
    return r != NULL ? r->bundle_path : NULL;
}

int rt_svc_ctr_stdio(struct rt_svc *svc, const char *ref, struct rt_svc_stdio *out,
                     struct ag_err *err)
{
    const picocri_store_ContainerRecord *r = svc__ctr(svc, ref, err);
    const runtime_v1_ContainerConfig *c;

    memset(out, 0, sizeof(*out));
    if (r == NULL)
        return err->code;
    c = r->config;
    out->stdin_open = c != NULL && c->stdin;
    /* StdinOnce means nothing without stdin (the kubelet sets both). */
    out->stdin_once = out->stdin_open && c->stdin_once;
    out->tty = c != NULL && c->tty;
    return 0;
}
