/* agent/runtime: the runtime service's core — creation, the per-object
 * operation queues, thread-pool workers and record helpers shared by the
 * pod, container, exec, stats and recovery files.
 *
 * Invariant: at most one state-changing operation per pod or container is
 * running (the head of its object's queue); records are only changed on
 * the loop thread, by get-copy-modify-put, so a worker never touches the
 * store.
 */
#include "rt_svc_int.h"

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <unistd.h>

#ifndef CGROUP2_SUPER_MAGIC
#define CGROUP2_SUPER_MAGIC 0x63677270
#endif

/* ---- objects and operations -------------------------------------------------- */

struct svc_obj *svc__obj(struct rt_svc *svc, enum st_kind kind, const char *id)
{
    for (struct svc_obj *o = svc->objs; o != NULL; o = o->next)
        if (o->kind == kind && strcmp(o->id, id) == 0)
            return o;
    struct svc_obj *o = calloc(1, sizeof(*o));
    if (o == NULL)
        return NULL;
    o->svc = svc;
    o->kind = kind;
    o->pidfd = -1;
    snprintf(o->id, sizeof(o->id), "%s", id);
    o->next = svc->objs;
    svc->objs = o;
    return o;
}

void svc__obj_idle(struct svc_obj *o)
{
    struct rt_svc *svc = o->svc;

    if (o->head != NULL || o->poll != NULL || o->exit_reading || o->waiters != NULL)
        return;
    for (struct svc_obj **pp = &svc->objs; *pp != NULL; pp = &(*pp)->next) {
        if (*pp == o) {
            *pp = o->next;
            break;
        }
    }
    free(o);
}

void svc__op_submit(struct svc_obj *o, struct svc_op *op, svc_op_run_cb run)
{
    op->obj = o;
    op->run = run;
    op->next = NULL;
    o->svc->busy++;
    if (o->head == NULL) {
        o->head = o->tail = op;
        run(op);
        return;
    }
    o->tail->next = op;
    o->tail = op;
}

void svc__op_done(struct svc_op *op)
{
    struct svc_obj *o = op->obj;

    ag_assert(o->head == op);
    o->svc->busy--;
    o->head = op->next;
    if (o->head == NULL) {
        o->tail = NULL;
        svc__obj_idle(o);
        return;
    }
    o->head->run(o->head);
}

/* ---- workers ------------------------------------------------------------------- */

struct svc_job {
    uv_work_t w;
    struct rt_svc *svc;
    void *ctx;
    svc_work_cb work;
    svc_after_cb after;
};

static void on_job(uv_work_t *w)
{
    struct svc_job *j = ag_container_of(w, struct svc_job, w);
    j->work(j->ctx);
}

static void on_job_done(uv_work_t *w, int status)
{
    struct svc_job *j = ag_container_of(w, struct svc_job, w);
    struct rt_svc *svc = j->svc;
    svc_after_cb after = j->after;
    void *ctx = j->ctx;

    free(j);
    svc->busy--;
    after(ctx, status);
}

int svc__work(struct rt_svc *svc, void *ctx, svc_work_cb work, svc_after_cb after)
{
    struct svc_job *j = calloc(1, sizeof(*j));
    int rc;

    if (j == NULL)
        return -ENOMEM;
    j->svc = svc;
    j->ctx = ctx;
    j->work = work;
    j->after = after;
    rc = uv_queue_work(svc->loop, &j->w, on_job, on_job_done);
    if (rc < 0) {
        free(j);
        return rc;
    }
    svc->busy++;
    return 0;
}

/* ---- records ---------------------------------------------------------------------- */

const picocri_store_PodRecord *svc__pod(struct rt_svc *svc, const char *ref, struct ag_err *err)
{
    const picocri_store_PodRecord *rec = NULL;
    struct ag_err local;

    if (err == NULL) {
        ag_err_init(&local);
        err = &local;
    }
    if (ref == NULL || ref[0] == '\0') {
        ag_err_set(err, -EINVAL, "pod sandbox id is empty");
        return NULL;
    }
    int rc = st_pod_get(svc->st, svc->ns, ref, &rec, err);
    if (rc == -ENOENT)
        ag_err_set(err, -ENOENT, "pod sandbox %.80s not found", ref);
    return rc < 0 ? NULL : rec;
}

const picocri_store_ContainerRecord *svc__ctr(struct rt_svc *svc, const char *ref,
                                              struct ag_err *err)
{
    const picocri_store_ContainerRecord *rec = NULL;
    struct ag_err local;

    if (err == NULL) {
        ag_err_init(&local);
        err = &local;
    }
    if (ref == NULL || ref[0] == '\0') {
        ag_err_set(err, -EINVAL, "container id is empty");
        return NULL;
    }
    int rc = st_container_get(svc->st, svc->ns, ref, &rec, err);
    if (rc == -ENOENT)
        ag_err_set(err, -ENOENT, "container %.80s not found", ref);
    return rc < 0 ? NULL : rec;
}

int svc__pod_copy(struct rt_svc *svc, const char *id, picocri_store_PodRecord *out)
{
    const picocri_store_PodRecord *rec = svc__pod(svc, id, NULL);
    return rec == NULL ? -ENOENT : st_record_copy(ST_KIND_POD, rec, out);
}

int svc__ctr_copy(struct rt_svc *svc, const char *id, picocri_store_ContainerRecord *out)
{
    const picocri_store_ContainerRecord *rec = svc__ctr(svc, id, NULL);
    return rec == NULL ? -ENOENT : st_record_copy(ST_KIND_CONTAINER, rec, out);
}

static void on_put_done(int status, void *arg)
{
    if (status < 0)
        ag_log(AG_ERROR, "record write failed: %s", strerror(-status));
}

int svc__pod_put(struct rt_svc *svc, picocri_store_PodRecord *rec, struct ag_err *err)
{
    int rc = st_pod_put(svc->st, svc->ns, rec, on_put_done, NULL, err);
    st_record_release(ST_KIND_POD, rec);
    return rc;
}

int svc__ctr_put(struct rt_svc *svc, picocri_store_ContainerRecord *rec, struct ag_err *err)
{
    int rc = st_container_put(svc->st, svc->ns, rec, on_put_done, NULL, err);
    st_record_release(ST_KIND_CONTAINER, rec);
    return rc;
}

int svc__msg_copy(const pb_msgdesc_t *fields, const void *src, void *dst)
{
    size_t len = 0;
    uint8_t *buf;
    int rc = -EINVAL;

    if (!pb_get_encoded_size(&len, fields, src))
        return -EINVAL;
    if ((buf = malloc(len ? len : 1)) == NULL)
        return -ENOMEM;
    pb_ostream_t os = pb_ostream_from_buffer(buf, len);
    if (pb_encode(&os, fields, src)) {
        pb_istream_t is = pb_istream_from_buffer(buf, os.bytes_written);
        rc = pb_decode(&is, fields, dst) ? 0 : -ENOMEM;
    }
    free(buf);
    return rc;
}

char *svc__strdup(const char *s) { return s == NULL ? NULL : strdup(s); }

char **svc__pod_ctr_ids(struct rt_svc *svc, const char *pod_id)
{
    struct st_iter it;
    const picocri_store_ContainerRecord *c;
    size_t n = 0, cap = st_count(svc->st, svc->ns, ST_KIND_CONTAINER) + 1;
    char **v = calloc(cap, sizeof(*v));

    if (v == NULL)
        return NULL;
    st_iter_init(&it, svc->st, svc->ns, ST_KIND_CONTAINER);
    while ((c = st_iter_next(&it)) != NULL && n + 1 < cap) {
        if (c->pod_id == NULL || strcmp(c->pod_id, pod_id) != 0)
            continue;
        if ((v[n] = strdup(c->id)) == NULL) {
            svc__strv_free(v);
            return NULL;
        }
        n++;
    }
    return v;
}

void svc__strv_free(char **v)
{
    for (size_t i = 0; v != NULL && v[i] != NULL; i++)
        free(v[i]);
    free(v);
}

bool svc__labels_match(const struct svc_kv *have, size_t have_count, const struct svc_kv *want,
                       size_t want_count)
{
    for (size_t i = 0; i < want_count; i++) {
        const char *k = want[i].key ? want[i].key : "";
        const char *v = want[i].value ? want[i].value : "";
        bool found = false;
        for (size_t j = 0; j < have_count && !found; j++)
            found = strcmp(have[j].key ? have[j].key : "", k) == 0 &&
                    strcmp(have[j].value ? have[j].value : "", v) == 0;
        if (!found)
            return false;
    }
    return true;
}

int svc__ctr_paths(struct rt_svc *svc, const char *id, char *bundle, char *exit_file,
                   char *upper_base)
{
    if (bundle != NULL && snprintf(bundle, SVC_PATH, "%s/%s", svc->bundles_dir, id) >= SVC_PATH)
        return -ENAMETOOLONG;
    if (exit_file != NULL &&
        snprintf(exit_file, SVC_PATH, "%s/%s/exit.json", svc->bundles_dir, id) >= SVC_PATH)
        return -ENAMETOOLONG;
    if (upper_base != NULL &&
        snprintf(upper_base, SVC_PATH, "%s/%s", svc->layers_root, id) >= SVC_PATH)
        return -ENAMETOOLONG;
    return 0;
}

/* ---- lifetime ------------------------------------------------------------------------ */

static int set_path(char *out, const char *a, const char *b, struct ag_err *err)
{
    if (snprintf(out, SVC_PATH, "%s/%s", a, b) >= SVC_PATH)
        return ag_err_set(err, -ENAMETOOLONG, "path too long: %s/%s", a, b);
    int rc = ag_mkdir_p(out, 0711);
    if (rc < 0)
        return ag_err_set(err, rc, "create %s: %s", out, strerror(-rc));
    return 0;
}

int rt_svc_new(const struct rt_svc_opts *opts, struct rt_svc **out, struct ag_err *err)
{
    struct rt_svc *svc = calloc(1, sizeof(*svc));
    struct statfs sfs;
    int rc;

    if (svc == NULL)
        return ag_err_set(err, -ENOMEM, "runtime service: out of memory");
    svc->loop = opts->loop;
    svc->st = opts->store;
    svc->cfg = opts->cfg;
    svc->ns = ST_DEFAULT_NS;
    svc->systemd = opts->cgroup_driver != NULL && strcmp(opts->cgroup_driver, "systemd") == 0;
    svc->cgroup_v2 = statfs("/sys/fs/cgroup", &sfs) == 0 && sfs.f_type == CGROUP2_SUPER_MAGIC;
    if (opts->exe != NULL) {
        snprintf(svc->exe, sizeof(svc->exe), "%s", opts->exe);
    } else {
        ssize_t n = readlink("/proc/self/exe", svc->exe, sizeof(svc->exe) - 1);
        if (n <= 0) {
            free(svc);
            return ag_err_set(err, -errno, "readlink /proc/self/exe: %s", strerror(errno));
        }
        svc->exe[n] = '\0';
    }
    if ((rc = set_path(svc->state_root, opts->cfg->state, "runtime", err)) < 0 ||
        (rc = set_path(svc->pods_dir, opts->cfg->state, "pods", err)) < 0 ||
        (rc = set_path(svc->bundles_dir, opts->cfg->state, "containers", err)) < 0 ||
        (rc = set_path(svc->layers_root, opts->cfg->root, "containers", err)) < 0) {
        free(svc);
        return rc;
    }
    snprintf(svc->content_dir, sizeof(svc->content_dir), "%s/content/blobs/sha256",
             opts->cfg->root);
    if ((rc = svc__recover(svc, err)) < 0) {
        rt_svc_free(svc);
        return rc;
    }
    *out = svc;
    return 0;
}

static void on_poll_closed(uv_handle_t *h) { free(h); }

void rt_svc_free(struct rt_svc *svc)
{
    if (svc == NULL)
        return;
    while (svc->objs != NULL) {
        struct svc_obj *o = svc->objs;
        svc->objs = o->next;
        while (o->waiters != NULL) {
            struct svc_waiter *w = o->waiters;
            o->waiters = w->next;
            w->cb(w->arg, -ECANCELED);
            free(w);
        }
        if (o->poll != NULL)
            uv_close((uv_handle_t *)o->poll, on_poll_closed);
        if (o->pidfd >= 0)
            close(o->pidfd);
        free(o);
    }
    free(svc);
}

size_t rt_svc_busy(const struct rt_svc *svc) { return svc->busy; }

const char *rt_svc_state_root(const struct rt_svc *svc) { return svc->state_root; }

int svc__log_path_join(const char *dir, const char *log_path, char *out, size_t out_len)
{
    size_t dl = dir != NULL ? strlen(dir) : 0;
    int n;

    out[0] = '\0';
    if (log_path == NULL || log_path[0] == '\0')
        return 0;
    /* The kubelet never climbs out of the pod's log directory. */
    for (const char *p = log_path; (p = strstr(p, "..")) != NULL; p += 2)
        if ((p == log_path || p[-1] == '/') && (p[2] == '\0' || p[2] == '/'))
            return -EINVAL;
    while (dl > 1 && dir[dl - 1] == '/')
        dl--;
    if (dl == 0) {
        if (log_path[0] != '/')
            return 0; /* relative to nothing: no log file */
        n = snprintf(out, out_len, "%s", log_path);
    } else {
        while (log_path[0] == '/')
            log_path++;
        if (log_path[0] == '\0')
            return -EINVAL;
        n = snprintf(out, out_len, "%.*s/%s", (int)dl, dir, log_path);
    }
    if (n < 0 || (size_t)n >= out_len) {
        out[0] = '\0';
        return -ENAMETOOLONG;
    }
    return 1;
}
