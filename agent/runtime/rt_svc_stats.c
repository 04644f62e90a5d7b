/* agent/runtime: ContainerStats, ListContainerStats, PodSandboxStats and
 * ListPodSandboxStats of the runtime service.
 *
 * The loop picks the containers (filters, ids, upper directories); one
 * worker reads their cgroup counters with the executor and walks each
 * writable layer (bytes and inodes, bounded); back on the loop the answer
 * is built with attributes borrowed from the records that still exist.
 * Pod stats come from the pod cgroup (rt_svc_cgroup.c: CPU, memory,
 * process count; the sum of the containers' for pods recorded before pod
 * cgroups existed) and from the counters of the pod's network namespace
 * (read by the worker inside it), with the containers listed.
 */
#include "rt_svc_int.h"

#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "rt_pod.h"
#include "runtime.h"

#define KV_CAST(type, ptr) ((type *)(void *)(ptr))
#define DU_MAX_ENTRIES 200000

struct cstat {
    char id[ST_ID_HEX_LEN + 1];
    char pod_id[ST_ID_HEX_LEN + 1];
    char upper[SVC_PATH];
    bool running, has_cg, has_fs;
    struct rt_cgroup_stats cg;
    uint64_t fs_bytes, fs_inodes;
    int64_t ts;
};

/* Response pieces of one container, pointed to by its ContainerStats. */
struct cstat_out {
    runtime_v1_ContainerAttributes attr;
    runtime_v1_CpuUsage cpu;
    runtime_v1_MemoryUsage mem;
    runtime_v1_FilesystemUsage fs;
    runtime_v1_FilesystemIdentifier fsid;
    runtime_v1_UInt64Value v[8];
};

#define POD_IF_MAX 8

/* One pod as the worker sees it: inputs from the record, counters read. */
struct pstat {
    char id[ST_ID_HEX_LEN + 1];
    char cgroup[SVC_PATH]; /* "" for records without a pod cgroup */
    char netns[SVC_PATH];  /* "" for host network or a pod not READY */
    char ifname[32];
    bool has_cg, has_net;
    struct rt_cgroup_stats cg;
    struct svc_netdev net[POD_IF_MAX];
    size_t net_count;
    int64_t ts;
};

struct pstat_out {
    runtime_v1_PodSandboxAttributes attr;
    runtime_v1_LinuxPodSandboxStats linux;
    runtime_v1_CpuUsage cpu;
    runtime_v1_MemoryUsage mem;
    runtime_v1_ProcessUsage proc;
    runtime_v1_NetworkUsage netu;
    runtime_v1_NetworkInterfaceUsage ifs[POD_IF_MAX];
    runtime_v1_UInt64Value v[8 + 4 * POD_IF_MAX];
};

enum stats_kind { SK_CTR, SK_CTR_LIST, SK_POD, SK_POD_LIST };

struct stats_job {
    struct rt_svc *svc;
    enum stats_kind kind;
    rt_svc_stats_cb cb;
    void *arg;
    struct ag_err err;
    struct cstat *c;
    size_t count;
    struct pstat *pods; /* pod kinds: the pods answered (owned) */
    size_t pod_count;
};

/* ---- worker ------------------------------------------------------------------------- */

static __thread uint64_t du_bytes, du_inodes, du_entries;

static int du_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)path;
    (void)type;
    (void)ftw;
    if (ftw->level > 0) {
        du_bytes += (uint64_t)st->st_blocks * 512;
        du_inodes++;
    }
    return ++du_entries > DU_MAX_ENTRIES ? 1 : 0;
}

static void stats_work(void *ctx)
{
    struct stats_job *j = ctx;
    struct ag_err e;

    for (size_t i = 0; i < j->count; i++) {
        struct cstat *c = &j->c[i];
        c->ts = ag_now_ns();
        ag_err_init(&e);
        if (c->running && rt_container_stats(j->svc->state_root, c->id, &c->cg, &e) == 0)
            c->has_cg = true;
        if (c->upper[0] != '\0') {
            du_bytes = du_inodes = du_entries = 0;
            if (nftw(c->upper, du_entry, 16, FTW_PHYS | FTW_MOUNT) >= 0) {
                c->has_fs = true;
                c->fs_bytes = du_bytes;
                c->fs_inodes = du_inodes;
            }
        }
    }
    for (size_t i = 0; i < j->pod_count; i++) {
        struct pstat *p = &j->pods[i];
        p->ts = ag_now_ns();
        if (p->cgroup[0] != '\0' && svc__pod_cgroup_stats(p->cgroup, &p->cg) == 0)
            p->has_cg = true;
        if (p->netns[0] != '\0' &&
            svc__netns_dev_read(p->netns, p->net, POD_IF_MAX, &p->net_count) == 0)
            p->has_net = true;
    }
}

/* ---- building answers ----------------------------------------------------------------- */

static runtime_v1_UInt64Value *u64(struct cstat_out *o, int *n, uint64_t v)
{
    o->v[*n].value = v;
    return &o->v[(*n)++];
}

static void fill_ctr(struct rt_svc *svc, const struct cstat *c, runtime_v1_ContainerStats *s,
                     struct cstat_out *o)
{
    const picocri_store_ContainerRecord *r = svc__ctr(svc, c->id, NULL);
    const runtime_v1_ContainerConfig *cfg = r ? r->config : NULL;
    int n = 0;

    s->attributes = &o->attr;
    o->attr.id = (char *)c->id;
    if (cfg != NULL) {
        o->attr.metadata = cfg->metadata;
        o->attr.labels_count = cfg->labels_count;
        o->attr.labels = KV_CAST(runtime_v1_ContainerAttributes_LabelsEntry, cfg->labels);
        o->attr.annotations_count = cfg->annotations_count;
        o->attr.annotations =
            KV_CAST(runtime_v1_ContainerAttributes_AnnotationsEntry, cfg->annotations);
    }
    s->cpu = &o->cpu;
    o->cpu.timestamp = c->ts;
    s->memory = &o->mem;
    o->mem.timestamp = c->ts;
    if (c->has_cg) {
        o->cpu.usage_core_nano_seconds = u64(o, &n, c->cg.cpu_usage_ns);
        o->mem.working_set_bytes = u64(o, &n, c->cg.memory_working_set);
        o->mem.usage_bytes = u64(o, &n, c->cg.memory_usage);
        o->mem.rss_bytes = u64(o, &n, c->cg.memory_rss);
        if (c->cg.memory_limit > 0 && c->cg.memory_limit > c->cg.memory_working_set)
            o->mem.available_bytes = u64(o, &n, c->cg.memory_limit - c->cg.memory_working_set);
    } else {
        o->cpu.usage_core_nano_seconds = u64(o, &n, 0);
        o->mem.working_set_bytes = u64(o, &n, 0);
    }
    s->writable_layer = &o->fs;
    o->fs.timestamp = c->ts;
    o->fs.fs_id = &o->fsid;
    o->fsid.mountpoint = (char *)svc->layers_root;
    o->fs.used_bytes = u64(o, &n, c->has_fs ? c->fs_bytes : 0);
    o->fs.inodes_used = u64(o, &n, c->has_fs ? c->fs_inodes : 0);
}

static void add_u64(runtime_v1_UInt64Value **slot, runtime_v1_UInt64Value *store,
                    const runtime_v1_UInt64Value *v)
{
    if (v == NULL)
        return;
    if (*slot == NULL) {
        store->value = 0;
        *slot = store;
    }
    (*slot)->value += v->value;
}

static runtime_v1_UInt64Value *pv(struct pstat_out *o, int *n, uint64_t v)
{
    o->v[*n].value = v;
    return &o->v[(*n)++];
}

static void fill_pod_net(const struct pstat *p, struct pstat_out *o, int *n)
{
    o->linux.network = &o->netu;
    o->netu.timestamp = p->ts;
    o->netu.interfaces = o->ifs;
    o->netu.interfaces_count = (pb_size_t)p->net_count;
    for (size_t i = 0; i < p->net_count; i++) {
        runtime_v1_NetworkInterfaceUsage *u = &o->ifs[i];
        u->name = (char *)p->net[i].name;
        u->rx_bytes = pv(o, n, p->net[i].rx_bytes);
        u->rx_errors = pv(o, n, p->net[i].rx_errors);
        u->tx_bytes = pv(o, n, p->net[i].tx_bytes);
        u->tx_errors = pv(o, n, p->net[i].tx_errors);
        if (strcmp(p->net[i].name, p->ifname) == 0)
            o->netu.default_interface = u;
    }
}

static void fill_pod(struct rt_svc *svc, const struct pstat *p, runtime_v1_ContainerStats *cs,
                     size_t count, runtime_v1_PodSandboxStats *s, struct pstat_out *o)
{
    const picocri_store_PodRecord *r = svc__pod(svc, p->id, NULL);
    const runtime_v1_PodSandboxConfig *cfg = r ? r->config : NULL;
    int n = 0;

    s->attributes = &o->attr;
    o->attr.id = r ? r->id : (char *)p->id;
    if (cfg != NULL) {
        o->attr.metadata = cfg->metadata;
        o->attr.labels_count = cfg->labels_count;
        o->attr.labels = KV_CAST(runtime_v1_PodSandboxAttributes_LabelsEntry, cfg->labels);
        o->attr.annotations_count = cfg->annotations_count;
        o->attr.annotations =
            KV_CAST(runtime_v1_PodSandboxAttributes_AnnotationsEntry, cfg->annotations);
    }
    s->linux = &o->linux;
    o->linux.cpu = &o->cpu;
    o->linux.memory = &o->mem;
    o->cpu.timestamp = o->mem.timestamp = p->ts;
    o->linux.containers = cs;
    o->linux.containers_count = (pb_size_t)count;
    if (p->has_cg) {
        o->cpu.usage_core_nano_seconds = pv(o, &n, p->cg.cpu_usage_ns);
        o->mem.working_set_bytes = pv(o, &n, p->cg.memory_working_set);
        o->mem.usage_bytes = pv(o, &n, p->cg.memory_usage);
        o->mem.rss_bytes = pv(o, &n, p->cg.memory_rss);
        if (p->cg.memory_limit > 0 && p->cg.memory_limit > p->cg.memory_working_set)
            o->mem.available_bytes = pv(o, &n, p->cg.memory_limit - p->cg.memory_working_set);
        o->linux.process = &o->proc;
        o->proc.timestamp = p->ts;
        o->proc.process_count = pv(o, &n, p->cg.pids_current);
    } else {
        /* No pod cgroup: the containers' sum. */
        n = 4;
        for (size_t i = 0; i < count; i++) {
            add_u64(&o->cpu.usage_core_nano_seconds, &o->v[0], cs[i].cpu->usage_core_nano_seconds);
            add_u64(&o->mem.working_set_bytes, &o->v[1], cs[i].memory->working_set_bytes);
            add_u64(&o->mem.usage_bytes, &o->v[2], cs[i].memory->usage_bytes);
            add_u64(&o->mem.rss_bytes, &o->v[3], cs[i].memory->rss_bytes);
        }
    }
    if (p->has_net)
        fill_pod_net(p, o, &n);
}

static void reply_ctrs(struct stats_job *j)
{
    runtime_v1_ContainerStats *cs = calloc(j->count ? j->count : 1, sizeof(*cs));
    struct cstat_out *co = calloc(j->count ? j->count : 1, sizeof(*co));
    size_t n = 0;

    if (cs == NULL || co == NULL) {
        ag_err_set(&j->err, -ENOMEM, "out of memory");
        j->cb(j->arg, &j->err, NULL);
        goto out;
    }
    for (size_t i = 0; i < j->count; i++) {
        if (svc__ctr(j->svc, j->c[i].id, NULL) == NULL)
            continue;
        fill_ctr(j->svc, &j->c[i], &cs[n], &co[n]);
        n++;
    }
    if (j->kind == SK_CTR) {
        runtime_v1_ContainerStatsResponse r = {.stats = n ? &cs[0] : NULL};
        if (n == 0)
            ag_err_set(&j->err, -ENOENT, "container not found");
        j->cb(j->arg, &j->err, &r);
    } else {
        runtime_v1_ListContainerStatsResponse r = {.stats_count = (pb_size_t)n, .stats = cs};
        j->cb(j->arg, &j->err, &r);
    }
out:
    free(cs);
    free(co);
}

static void reply_pods(struct stats_job *j)
{
    runtime_v1_ContainerStats *cs = calloc(j->count ? j->count : 1, sizeof(*cs));
    struct cstat_out *co = calloc(j->count ? j->count : 1, sizeof(*co));
    runtime_v1_PodSandboxStats *ps = calloc(j->pod_count ? j->pod_count : 1, sizeof(*ps));
    struct pstat_out *po = calloc(j->pod_count ? j->pod_count : 1, sizeof(*po));
    size_t np = 0, used = 0;

    if (cs == NULL || co == NULL || ps == NULL || po == NULL) {
        ag_err_set(&j->err, -ENOMEM, "out of memory");
        j->cb(j->arg, &j->err, NULL);
        goto out;
    }
    for (size_t p = 0; p < j->pod_count; p++) {
        if (svc__pod(j->svc, j->pods[p].id, NULL) == NULL)
            continue;
        size_t first = used;
        for (size_t i = 0; i < j->count; i++)
            if (strcmp(j->c[i].pod_id, j->pods[p].id) == 0 && svc__ctr(j->svc, j->c[i].id, NULL)) {
                fill_ctr(j->svc, &j->c[i], &cs[used], &co[used]);
                used++;
            }
        fill_pod(j->svc, &j->pods[p], &cs[first], used - first, &ps[np], &po[np]);
        np++;
    }
    if (j->kind == SK_POD) {
        runtime_v1_PodSandboxStatsResponse r = {.stats = np ? &ps[0] : NULL};
        if (np == 0)
            ag_err_set(&j->err, -ENOENT, "pod sandbox not found");
        j->cb(j->arg, &j->err, &r);
    } else {
        runtime_v1_ListPodSandboxStatsResponse r = {.stats_count = (pb_size_t)np, .stats = ps};
        j->cb(j->arg, &j->err, &r);
    }
out:
    free(cs);
    free(co);
    free(ps);
    free(po);
}

static void job_free(struct stats_job *j)
{
    free(j->c);
    free(j->pods);
    free(j);
}

static void stats_after(void *ctx, int status)
{
    struct stats_job *j = ctx;

    if (j->kind == SK_CTR || j->kind == SK_CTR_LIST)
        reply_ctrs(j);
    else
        reply_pods(j);
    job_free(j);
}

/* ---- selection ------------------------------------------------------------------------- */

static bool prefix_ok(const char *id, const char *want)
{
    return want == NULL || want[0] == '\0' || strncmp(id, want, strlen(want)) == 0;
}

static void add_ctr(struct stats_job *j, const picocri_store_ContainerRecord *r)
{
    struct cstat *c = &j->c[j->count++];

    snprintf(c->id, sizeof(c->id), "%s", r->id);
    snprintf(c->pod_id, sizeof(c->pod_id), "%s", r->pod_id ? r->pod_id : "");
    if (snprintf(c->upper, sizeof(c->upper), "%s", r->upper_dir ? r->upper_dir : "") >=
        (int)sizeof(c->upper))
        c->upper[0] = '\0';
    c->running = r->state == picocri_store_ContainerState_CONTAINER_STATE_RUNNING;
}

static struct stats_job *job_new(struct rt_svc *svc, enum stats_kind kind, rt_svc_stats_cb cb,
                                 void *arg)
{
    struct stats_job *j = calloc(1, sizeof(*j));
    size_t n = st_count(svc->st, svc->ns, ST_KIND_CONTAINER);

    if (j == NULL || (j->c = calloc(n ? n : 1, sizeof(*j->c))) == NULL) {
        free(j);
        return NULL;
    }
    j->svc = svc;
    j->kind = kind;
    j->cb = cb;
    j->arg = arg;
    ag_err_init(&j->err);
    return j;
}

static int job_submit(struct stats_job *j, struct ag_err *err)
{
    int rc = svc__work(j->svc, j, stats_work, stats_after);

    if (rc < 0) {
        job_free(j);
        return ag_err_set(err, rc, "queue stats: %s", strerror(-rc));
    }
    return 0;
}

static bool ctr_selected(const picocri_store_ContainerRecord *r, const char *id, const char *pod,
                         const struct svc_kv *sel, size_t sel_count)
{
    const runtime_v1_ContainerConfig *c = r->config;

    return prefix_ok(r->id, id) && prefix_ok(r->pod_id ? r->pod_id : "", pod) &&
           svc__labels_match(KV_CAST(struct svc_kv, c ? c->labels : NULL), c ? c->labels_count : 0,
                             sel, sel_count);
}

static int ctr_select(struct rt_svc *svc, enum stats_kind kind, const char *id, const char *pod,
                      const struct svc_kv *sel, size_t sel_count, rt_svc_stats_cb cb, void *arg,
                      struct ag_err *err)
{
    struct stats_job *j = job_new(svc, kind, cb, arg);
    const picocri_store_ContainerRecord *r;
    struct st_iter it;
    size_t cap = st_count(svc->st, svc->ns, ST_KIND_CONTAINER);

    if (j == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    st_iter_init(&it, svc->st, svc->ns, ST_KIND_CONTAINER);
    while ((r = st_iter_next(&it)) != NULL && j->count < cap)
        /* The kubelet asks for stats of live containers only. */
        if (r->state != picocri_store_ContainerState_CONTAINER_STATE_EXITED &&
            ctr_selected(r, id, pod, sel, sel_count))
            add_ctr(j, r);
    return job_submit(j, err);
}

int rt_svc_ctr_stats(struct rt_svc *svc, const char *id, rt_svc_stats_cb cb, void *arg,
                     struct ag_err *err)
{
    const picocri_store_ContainerRecord *r = svc__ctr(svc, id, err);
    struct stats_job *j;

    if (r == NULL)
        return err->code;
    if ((j = job_new(svc, SK_CTR, cb, arg)) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    add_ctr(j, r);
    return job_submit(j, err);
}

int rt_svc_ctr_stats_list(struct rt_svc *svc, const runtime_v1_ContainerStatsFilter *f,
                          rt_svc_stats_cb cb, void *arg, struct ag_err *err)
{
    return ctr_select(svc, SK_CTR_LIST, f ? f->id : NULL, f ? f->pod_sandbox_id : NULL,
                      KV_CAST(struct svc_kv, f ? f->label_selector : NULL),
                      f ? f->label_selector_count : 0, cb, arg, err);
}

static void add_pod(struct stats_job *j, const picocri_store_PodRecord *r)
{
    struct pstat *p = &j->pods[j->pod_count++];
    const runtime_v1_NamespaceOption *o =
        r->config && r->config->linux && r->config->linux->security_context
            ? r->config->linux->security_context->namespace_options
            : NULL;

    snprintf(p->id, sizeof(p->id), "%s", r->id);
    if (snprintf(p->cgroup, sizeof(p->cgroup), "%s", r->cgroup_path ? r->cgroup_path : "") >=
        (int)sizeof(p->cgroup))
        p->cgroup[0] = '\0';
    snprintf(p->ifname, sizeof(p->ifname), "%s",
             r->cni_ifname && r->cni_ifname[0] ? r->cni_ifname : "eth0");
    /* The pin exists while the pod is READY (host network: the node's). */
    if (r->state == picocri_store_PodState_POD_STATE_READY &&
        !(o != NULL && o->network == runtime_v1_NamespaceMode_NODE) && r->state_dir != NULL &&
        snprintf(p->netns, sizeof(p->netns), "%s/%s", r->state_dir, RT_POD_NETNS) >=
            (int)sizeof(p->netns))
        p->netns[0] = '\0';
}

static int pod_select(struct rt_svc *svc, enum stats_kind kind, const char *id,
                      const struct svc_kv *sel, size_t sel_count, rt_svc_stats_cb cb, void *arg,
                      struct ag_err *err)
{
    struct stats_job *j = job_new(svc, kind, cb, arg);
    size_t cap = st_count(svc->st, svc->ns, ST_KIND_POD) + 1;
    const picocri_store_PodRecord *p;
    const picocri_store_ContainerRecord *r;
    struct st_iter it;

    if (j == NULL || (j->pods = calloc(cap, sizeof(*j->pods))) == NULL) {
        if (j != NULL)
            job_free(j);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    st_iter_init(&it, svc->st, svc->ns, ST_KIND_POD);
    while ((p = st_iter_next(&it)) != NULL && j->pod_count + 1 < cap) {
        const runtime_v1_PodSandboxConfig *c = p->config;
        if ((kind == SK_POD ? strcmp(p->id, id) != 0 : !prefix_ok(p->id, id)) ||
            (kind == SK_POD_LIST && p->state != picocri_store_PodState_POD_STATE_READY) ||
            !svc__labels_match(KV_CAST(struct svc_kv, c ? c->labels : NULL),
                               c ? c->labels_count : 0, sel, sel_count))
            continue;
        add_pod(j, p);
    }
    size_t ccap = st_count(svc->st, svc->ns, ST_KIND_CONTAINER);
    st_iter_init(&it, svc->st, svc->ns, ST_KIND_CONTAINER);
    while ((r = st_iter_next(&it)) != NULL && j->count < ccap) {
        if (r->state == picocri_store_ContainerState_CONTAINER_STATE_EXITED)
            continue;
        for (size_t i = 0; i < j->pod_count; i++)
            if (r->pod_id && strcmp(r->pod_id, j->pods[i].id) == 0) {
                add_ctr(j, r);
                break;
            }
    }
    return job_submit(j, err);
}

int rt_svc_pod_stats(struct rt_svc *svc, const char *id, rt_svc_stats_cb cb, void *arg,
                     struct ag_err *err)
{
    const picocri_store_PodRecord *p = svc__pod(svc, id, err);

    if (p == NULL)
        return err->code;
    return pod_select(svc, SK_POD, p->id, NULL, 0, cb, arg, err);
}

int rt_svc_pod_stats_list(struct rt_svc *svc, const runtime_v1_PodSandboxStatsFilter *f,
                          rt_svc_stats_cb cb, void *arg, struct ag_err *err)
{
    return pod_select(svc, SK_POD_LIST, f ? f->id : NULL,
                      KV_CAST(struct svc_kv, f ? f->label_selector : NULL),
                      f ? f->label_selector_count : 0, cb, arg, err);
}
