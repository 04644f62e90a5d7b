/* agent/runtime: CreateContainer and StartContainer of the runtime service.
 *
 * Create: the record is stored first (CREATED; it reserves (pod, name,
 * attempt)), then a worker reads the image config from the content store,
 * mounts the rootfs (overlayfs: the image's unpacked layers as lower dirs,
 * a per-container upper and work dir under <root>/containers/<id>),
 * resolves the user in the image's /etc/passwd, generates config.json with
 * rt_specgen into the bundle <state>/containers/<id>.  On failure the
 * worker undoes its mounts and directories and the record is deleted.
 * Start: a worker spawns the monitor (which creates the container with the
 * executor) and tells it to start; the record becomes RUNNING and the
 * monitor's pidfd is watched for the exit.
 */
#include "rt_svc_int.h"

#include <signal.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>

#include "image/image.h"
#include "rt_monitor.h"
#include "rt_pod.h"
#include "rt_specgen.h"

struct ctr_create {
    struct svc_op op;
    struct rt_svc *svc;
    char id[ST_ID_HEX_LEN + 1];
    char pod_id[ST_ID_HEX_LEN + 1];
    rt_svc_done_cb cb;
    void *arg;
    struct ag_err err;
    runtime_v1_ContainerConfig *config;   /* owned copy */
    runtime_v1_PodSandboxConfig *pod_cfg; /* owned copy (the pod's stored config) */
    /* inputs gathered on the loop */
    char **lowers; /* owned, top layer first */
    size_t lower_count;
    char config_blob[SVC_PATH];
    char pod_dir[SVC_PATH];
    char pid_ns[64];
    char cgroups_path[SVC_PATH];
    bool has_cgroups_path;
    /* made by the worker */
    char bundle[SVC_PATH], rootfs[SVC_PATH + 16], upper_base[SVC_PATH];
    char upper[SVC_PATH + 16], work[SVC_PATH + 16];
    bool mounted;
    int stop_signal;
};

static void create_free(struct ctr_create *c)
{
    if (c->config != NULL) {
        pb_release(runtime_v1_ContainerConfig_fields, c->config);
        free(c->config);
    }
    if (c->pod_cfg != NULL) {
        pb_release(runtime_v1_PodSandboxConfig_fields, c->pod_cfg);
        free(c->pod_cfg);
    }
    for (size_t i = 0; i < c->lower_count; i++)
        free(c->lowers[i]);
    free(c->lowers);
    free(c);
}

static void create_finish(struct ctr_create *c)
{
    c->cb(c->arg, &c->err, c->err.code == 0 ? c->id : NULL);
    svc__op_done(&c->op);
    create_free(c);
}

/* ---- worker ---------------------------------------------------------------------------- */

static int rm_rf(const char *path);

static void image_cfg_from(const struct img_config *ic, struct rt_image_cfg *out)
{
    memset(out, 0, sizeof(*out));
    if (ic == NULL)
        return;
    out->entrypoint = ic->entrypoint;
    out->entrypoint_count = ic->entrypoint_count;
    out->cmd = ic->cmd;
    out->cmd_count = ic->cmd_count;
    out->env = ic->env;
    out->env_count = ic->env_count;
    out->working_dir = ic->working_dir;
    out->user = ic->user;
    out->stop_signal = ic->stop_signal;
}

static int mount_rootfs(struct ctr_create *c)
{
    size_t len = 64;
    int rc;

    for (size_t i = 0; i < c->lower_count; i++)
        len += strlen(c->lowers[i]) + 1;
    _cleanup_free_ char *opts = malloc(len + 2 * SVC_PATH + 64);
    if (opts == NULL)
        return ag_err_set(&c->err, -ENOMEM, "out of memory");
    char *p = opts + sprintf(opts, "lowerdir=");
    for (size_t i = 0; i < c->lower_count; i++)
        p += sprintf(p, "%s%s", i ? ":" : "", c->lowers[i]);
    sprintf(p, ",upperdir=%s,workdir=%s", c->upper, c->work);
    if ((rc = ag_mkdir_p(c->upper, 0755)) < 0 || (rc = ag_mkdir_p(c->work, 0700)) < 0 ||
        (rc = ag_mkdir_p(c->rootfs, 0755)) < 0)
        return ag_err_set(&c->err, rc, "create container directories: %s", strerror(-rc));
    if (c->lower_count == 0)
        return ag_err_set(&c->err, -EINVAL, "image has no unpacked layers");
    if (mount("overlay", c->rootfs, "overlay", 0, opts) < 0)
        return ag_err_set(&c->err, -errno, "mount overlay rootfs at %s: %s", c->rootfs,
                          strerror(errno));
    c->mounted = true;
    return 0;
}

static int pod_ns_paths(struct ctr_create *c, struct rt_pod_ns *ns, char paths[3][SVC_PATH])
{
    static const char *const names[3] = {RT_POD_NETNS, RT_POD_IPCNS, RT_POD_UTSNS};
    const char **slots[3] = {&ns->net, &ns->ipc, &ns->uts};

    memset(ns, 0, sizeof(*ns));
    for (int i = 0; i < 3; i++)
        if (rt_pod_ns_path(c->pod_dir, names[i], paths[i], SVC_PATH) == 0)
            *slots[i] = paths[i];
    if (c->pid_ns[0] != '\0')
        ns->pid = c->pid_ns;
    return 0;
}

static int write_spec(struct ctr_create *c, const struct rt_image_cfg *img)
{
    const runtime_v1_LinuxContainerSecurityContext *sc =
        c->config->linux ? c->config->linux->security_context : NULL;
    struct rt_ident ident;
    char paths[3][SVC_PATH], shm[SVC_PATH + 8], file[SVC_PATH + 16];
    struct stat st;
    cJSON *spec = NULL;
    int rc;

    if ((rc = rt_specgen_resolve_user(c->rootfs, sc, img->user, &ident, &c->err)) < 0)
        return ag_err_wrap(&c->err, "resolve user");
    snprintf(shm, sizeof(shm), "%s/%s", c->pod_dir, RT_POD_SHM);
    struct rt_specgen_in in = {
        .pod = c->pod_cfg,
        .ctr = c->config,
        .image = img,
        .ident = &ident,
        .rootfs = c->rootfs,
        .pod_dir = c->pod_dir,
        .shm_path = stat(shm, &st) == 0 ? shm : NULL,
        .cgroups_path = c->has_cgroups_path ? c->cgroups_path : NULL,
        .container_id = c->id,
        .pod_id = c->pod_id,
        .cgroup_v2 = c->svc->cgroup_v2,
    };
    pod_ns_paths(c, &in.ns, paths);
    if ((rc = rt_specgen_container(&in, &spec, &c->err)) < 0)
        return ag_err_wrap(&c->err, "generate OCI config");
    /* The executor resolves root.path against the bundle. */
    _cleanup_free_ char *json = cJSON_Print(spec);
    cJSON_Delete(spec);
    if (json == NULL)
        return ag_err_set(&c->err, -ENOMEM, "out of memory");
    snprintf(file, sizeof(file), "%s/config.json", c->bundle);
    if ((rc = ag_file_replace(file, json, strlen(json), 0600)) < 0)
        return ag_err_set(&c->err, rc, "write %s: %s", file, strerror(-rc));
    return 0;
}

static void create_work(void *ctx)
{
    struct ctr_create *c = ctx;
    _cleanup_free_ char *blob = NULL;
    struct img_config *ic = NULL;
    struct rt_image_cfg img;
    size_t len = 0;
    int rc;

    if ((rc = ag_file_read(c->config_blob, 4u << 20, &blob, &len)) < 0) {
        ag_err_set(&c->err, rc, "read image config %s: %s", c->config_blob, strerror(-rc));
        return;
    }
    if ((rc = img_config_parse(blob, len, &ic, &c->err)) < 0) {
        ag_err_wrap(&c->err, "image config");
        return;
    }
    image_cfg_from(ic, &img);
    c->stop_signal = rt_specgen_signal(c->config->stop_signal, img.stop_signal);
    if (c->stop_signal <= 0)
        c->stop_signal = SIGTERM;
    if ((rc = ag_mkdir_p(c->bundle, 0700)) < 0)
        ag_err_set(&c->err, rc, "create %s: %s", c->bundle, strerror(-rc));
    else if (mount_rootfs(c) == 0)
        (void)write_spec(c, &img);
    img_config_free(ic);
    if (c->err.code == 0)
        return;
    /* Undo: nothing of this container stays behind. */
    if (c->mounted && umount2(c->rootfs, MNT_DETACH) < 0)
        ag_log(AG_WARN, "ctr=%.12s umount %s: %s", c->id, c->rootfs, strerror(errno));
    rm_rf(c->bundle);
    rm_rf(c->upper_base);
}

/* ---- loop side ---------------------------------------------------------------------------- */

static void create_after(void *ctx, int status)
{
    struct ctr_create *c = ctx;
    picocri_store_ContainerRecord rec = {0};
    struct ag_err e;

    if (status < 0 && c->err.code == 0)
        ag_err_set(&c->err, status, "container setup cancelled");
    if (c->err.code == 0 && svc__ctr_copy(c->svc, c->id, &rec) < 0)
        ag_err_set(&c->err, -EIO, "container %s record vanished", c->id);
    if (c->err.code == 0) {
        rec.rootfs_path = strdup(c->rootfs);
        rec.upper_dir = strdup(c->upper);
        rec.work_dir = strdup(c->work);
        rec.bundle_path = strdup(c->bundle);
        rec.stop_signal = c->stop_signal;
        if (svc__ctr_put(c->svc, &rec, &c->err) == 0) {
            ag_log(AG_INFO, "container created ctr=%.12s pod=%.12s", c->id, c->pod_id);
            create_finish(c);
            return;
        }
    }
    ag_err_init(&e);
    if (st_delete(c->svc->st, c->svc->ns, ST_KIND_CONTAINER, c->id, NULL, NULL, &e) < 0 &&
        e.code != -ENOENT)
        ag_log(AG_WARN, "ctr=%.12s delete record: %s", c->id, e.msg);
    create_finish(c);
}

static void create_start(struct svc_op *op)
{
    struct ctr_create *c = ag_container_of(op, struct ctr_create, op);
    int rc = svc__work(c->svc, c, create_work, create_after);

    if (rc < 0) {
        ag_err_set(&c->err, rc, "queue container setup: %s", strerror(-rc));
        create_after(c, 0);
    }
}

static const picocri_store_ImageRecord *find_image(struct rt_svc *svc, const char *name)
{
    const picocri_store_ImageRecord *img = NULL;
    struct img_ref ref;
    char full[IMG_REF_NAME_MAX + IMG_REF_TAG_MAX + 160];
    struct ag_err e;

    ag_err_init(&e);
    if (st_image_get(svc->st, svc->ns, name, &img, &e) == 0)
        return img;
    if (img_ref_parse(name, &ref, &e) == 0 && img_ref_format(&ref, full, sizeof(full)) > 0 &&
        st_image_get(svc->st, svc->ns, full, &img, &e) == 0)
        return img;
    return NULL;
}

/* Below the pod cgroup (rt_svc_cgroup.c); records of pods made before pod
 * cgroups existed keep the executor's default placement. */
static void cgroups_path_for(struct rt_svc *svc, const picocri_store_PodRecord *pod,
                             struct ctr_create *c)
{
    c->has_cgroups_path =
        svc__ctr_cgroups_path(svc->systemd, pod->cgroup_parent, pod->cgroup_path, c->id,
                              c->cgroups_path, sizeof(c->cgroups_path)) > 0;
}

static int gather_image(struct ctr_create *c, const picocri_store_ImageRecord *img,
                        struct ag_err *err)
{
    const char *hex = img->config_digest ? strchr(img->config_digest, ':') : NULL;

    if (hex == NULL)
        return ag_err_set(err, -EINVAL, "image %s has no config digest", img->id);
    if (snprintf(c->config_blob, sizeof(c->config_blob), "%s/%s", c->svc->content_dir, hex + 1) >=
        (int)sizeof(c->config_blob))
        return ag_err_set(err, -ENAMETOOLONG, "content path too long");
    c->lowers = calloc(img->layers_count + 1, sizeof(char *));
    if (c->lowers == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    /* overlayfs lists the top layer first. */
    for (pb_size_t i = img->layers_count; i-- > 0;) {
        const picocri_store_LayerRecord *l = &img->layers[i];
        if (l->unpacked_dir == NULL || l->unpacked_dir[0] == '\0')
            return ag_err_set(err, -ENOENT, "image %s: layer %s is not unpacked", img->id,
                              l->digest ? l->digest : "?");
        if ((c->lowers[c->lower_count] = strdup(l->unpacked_dir)) == NULL)
            return ag_err_set(err, -ENOMEM, "out of memory");
        c->lower_count++;
    }
    return 0;
}

static int create_record(struct ctr_create *c, const picocri_store_PodRecord *pod,
                         const picocri_store_ImageRecord *img, struct ag_err *err)
{
    picocri_store_ContainerRecord rec = {0};
    const char *dir = pod->config ? pod->config->log_directory : NULL;
    const char *lp = c->config->log_path;
    char exit_file[SVC_PATH], log_path[SVC_PATH];
    int lrc = svc__log_path_join(dir, lp, log_path, sizeof(log_path));

    if (lrc < 0)
        return ag_err_set(err, lrc, "log_path \"%.200s\" in log_directory \"%.200s\": %s",
                          lp ? lp : "", dir ? dir : "",
                          lrc == -EINVAL ? "must name a file below the directory"
                                         : "path too long");
    if (svc__ctr_paths(c->svc, c->id, c->bundle, exit_file, c->upper_base) < 0)
        return ag_err_set(err, -ENAMETOOLONG, "state path too long");
    snprintf(c->rootfs, sizeof(c->rootfs), "%s/rootfs", c->bundle);
    snprintf(c->upper, sizeof(c->upper), "%s/upper", c->upper_base);
    snprintf(c->work, sizeof(c->work), "%s/work", c->upper_base);
    rec.id = strdup(c->id);
    rec.pod_id = strdup(c->pod_id);
    rec.image_id = strdup(img->id);
    rec.image_ref = strdup(img->repo_digests_count ? img->repo_digests[0] : img->id);
    rec.created_at_ns = ag_now_ns();
    rec.state = picocri_store_ContainerState_CONTAINER_STATE_CREATED;
    rec.exit_file = strdup(exit_file);
    if (lrc > 0)
        rec.log_path = strdup(log_path);
    rec.lower_layers = calloc(img->layers_count + 1, sizeof(char *));
    for (pb_size_t i = 0; rec.lower_layers != NULL && i < img->layers_count; i++)
        if (img->layers[i].chain_id != NULL &&
            (rec.lower_layers[rec.lower_layers_count] = strdup(img->layers[i].chain_id)))
            rec.lower_layers_count++;
    rec.cgroup_path = c->has_cgroups_path ? strdup(c->cgroups_path) : NULL;
    rec.config = calloc(1, sizeof(*rec.config));
    if (rec.id == NULL || rec.pod_id == NULL || rec.image_id == NULL || rec.image_ref == NULL ||
        rec.exit_file == NULL || rec.config == NULL || (lrc > 0 && rec.log_path == NULL) ||
        svc__msg_copy(runtime_v1_ContainerConfig_fields, c->config, rec.config) < 0) {
        st_record_release(ST_KIND_CONTAINER, &rec);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    return svc__ctr_put(c->svc, &rec, err);
}

static int create_prepare(struct rt_svc *svc, struct ctr_create *c, const char *pod_ref,
                          const runtime_v1_ContainerConfig *config, struct ag_err *err)
{
    const picocri_store_PodRecord *pod = svc__pod(svc, pod_ref, err);
    const picocri_store_ImageRecord *img;
    const picocri_store_ContainerRecord *other;
    int rc;

    if (pod == NULL)
        return err->code;
    if (pod->state != picocri_store_PodState_POD_STATE_READY)
        return ag_err_set(err, -EBUSY, "pod sandbox %.12s is not ready", pod->id);
    snprintf(c->pod_id, sizeof(c->pod_id), "%s", pod->id);
    if (st_container_find_name(svc->st, svc->ns, pod->id, config->metadata->name,
                               config->metadata->attempt, &other) == 0)
        return ag_err_set(err, -EEXIST, "container name \"%.64s\" attempt %u is reserved for %s",
                          config->metadata->name, config->metadata->attempt, other->id);
    if ((img = find_image(svc, config->image->image)) == NULL)
        return ag_err_set(err, -ENOENT, "image \"%.200s\" not found: pull it first",
                          config->image->image);
    if ((rc = st_id_new(c->id)) < 0)
        return ag_err_set(err, rc, "new container id: %s", strerror(-rc));
    snprintf(c->pod_dir, sizeof(c->pod_dir), "%s", pod->state_dir ? pod->state_dir : "");
    if (pod->infra_pid > 0)
        snprintf(c->pid_ns, sizeof(c->pid_ns), "/proc/%d/ns/pid", pod->infra_pid);
    cgroups_path_for(svc, pod, c);
    if ((c->config = calloc(1, sizeof(*c->config))) == NULL ||
        (c->pod_cfg = calloc(1, sizeof(*c->pod_cfg))) == NULL ||
        svc__msg_copy(runtime_v1_ContainerConfig_fields, config, c->config) < 0 ||
        svc__msg_copy(runtime_v1_PodSandboxConfig_fields, pod->config, c->pod_cfg) < 0)
        return ag_err_set(err, -ENOMEM, "out of memory");
    if ((rc = gather_image(c, img, err)) < 0)
        return rc;
    return create_record(c, pod, img, err);
}

int rt_svc_ctr_create(struct rt_svc *svc, const char *pod_id,
                      const runtime_v1_ContainerConfig *config,
                      const runtime_v1_PodSandboxConfig *pod_config, rt_svc_done_cb cb, void *arg,
                      struct ag_err *err)
{
    struct ctr_create *c;
    struct svc_obj *obj;
    int rc;

    (void)pod_config; /* the pod's stored config is authoritative */
    if (pod_id == NULL || pod_id[0] == '\0')
        return ag_err_set(err, -EINVAL, "pod_sandbox_id is required");
    if (config == NULL || config->metadata == NULL || config->metadata->name == NULL ||
        config->metadata->name[0] == '\0')
        return ag_err_set(err, -EINVAL, "config.metadata.name is required");
    if (config->image == NULL || config->image->image == NULL || config->image->image[0] == '\0')
        return ag_err_set(err, -EINVAL, "config.image.image is required");
    if ((c = calloc(1, sizeof(*c))) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    c->svc = svc;
    c->cb = cb;
    c->arg = arg;
    ag_err_init(&c->err);
    if ((rc = create_prepare(svc, c, pod_id, config, err)) < 0) {
        create_free(c);
        return rc;
    }
    if ((obj = svc__obj(svc, ST_KIND_CONTAINER, c->id)) == NULL) {
        struct ag_err e;
        ag_err_init(&e);
        svc_ignore(st_delete(svc->st, svc->ns, ST_KIND_CONTAINER, c->id, NULL, NULL, &e));
        create_free(c);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    svc__op_submit(obj, &c->op, create_start);
    return 0;
}

/* ---- start ------------------------------------------------------------------------------------ */

struct ctr_start {
    struct svc_op op;
    struct rt_svc *svc;
    char id[ST_ID_HEX_LEN + 1];
    rt_svc_done_cb cb;
    void *arg;
    struct ag_err err;
    char bundle[SVC_PATH], exit_file[SVC_PATH], log_path[SVC_PATH], socket[SVC_PATH + 128];
    bool tty, stdin_open;
    pid_t monitor_pid, ctr_pid;
    bool spawned;
    int64_t started_at;
};

static void start_work(void *ctx)
{
    struct ctr_start *s = ctx;
    char dir[SVC_PATH];
    struct rt_monitor_opts o = {
        .id = s->id,
        .bundle = s->bundle,
        .state_root = s->svc->state_root,
        .exit_file = s->exit_file,
        .log_path = s->log_path,
        .socket_path = s->socket,
        .tty = s->tty,
        .stdin_open = s->stdin_open,
        .exe = s->svc->exe,
    };

    /* The kubelet makes the log directory; make it anyway (crictl, or a
     * directory cleaned up meanwhile). */
    snprintf(dir, sizeof(dir), "%s", s->log_path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        int rc = ag_mkdir_p(dir, 0755);
        if (rc < 0) {
            ag_err_set(&s->err, rc, "create log directory %s: %s", dir, strerror(-rc));
            return;
        }
    }
    unlink(s->exit_file);
    if (rt_monitor_spawn(&o, SVC_SPAWN_TIMEOUT_MS, &s->monitor_pid, &s->ctr_pid, &s->err) < 0)
        return;
    s->spawned = true;
    if (rt_monitor_start(s->socket, SVC_MON_TIMEOUT_MS, &s->err) < 0) {
        struct ag_err e;
        ag_err_init(&e);
        svc_ignore(rt_monitor_signal(s->socket, SIGKILL, true, SVC_MON_TIMEOUT_MS, &e));
        return;
    }
    s->started_at = ag_now_ns();
}

static void start_after(void *ctx, int status)
{
    struct ctr_start *s = ctx;
    picocri_store_ContainerRecord rec = {0};
    struct ag_err e;

    if (status < 0 && s->err.code == 0)
        ag_err_set(&s->err, status, "start cancelled");
    if (svc__ctr_copy(s->svc, s->id, &rec) == 0) {
        free(rec.monitor_socket);
        rec.monitor_socket = strdup(s->socket);
        if (s->spawned) {
            /* Even a failed start has a monitor that reports the exit. */
            rec.state = picocri_store_ContainerState_CONTAINER_STATE_RUNNING;
            rec.monitor_pid = s->monitor_pid;
            rec.pid = s->ctr_pid;
            rec.started_at_ns = s->started_at ? s->started_at : ag_now_ns();
        } else {
            rec.state = picocri_store_ContainerState_CONTAINER_STATE_EXITED;
            rec.exit_code = 128;
            rec.finished_at_ns = ag_now_ns();
            free(rec.reason);
            free(rec.message);
            rec.reason = strdup("StartError");
            rec.message = strdup(s->err.msg);
        }
        ag_err_init(&e);
        if (svc__ctr_put(s->svc, &rec, &e) < 0 && s->err.code == 0)
            s->err = e;
    }
    if (s->spawned)
        svc__watch(s->svc, s->id, s->monitor_pid);
    if (s->err.code < 0)
        ag_log(AG_WARN, "container start failed ctr=%.12s err=\"%s\"", s->id, s->err.msg);
    else
        ag_log(AG_INFO, "container started ctr=%.12s pid=%d", s->id, (int)s->ctr_pid);
    s->cb(s->arg, &s->err, NULL);
    svc__op_done(&s->op);
    free(s);
}

static void start_run(struct svc_op *op)
{
    struct ctr_start *s = ag_container_of(op, struct ctr_start, op);
    const picocri_store_ContainerRecord *rec = svc__ctr(s->svc, s->id, &s->err);

    if (rec == NULL || rec->state != picocri_store_ContainerState_CONTAINER_STATE_CREATED) {
        if (rec != NULL)
            ag_err_set(&s->err, -EBUSY, "container %.12s is not in state CREATED", s->id);
        s->cb(s->arg, &s->err, NULL);
        svc__op_done(&s->op);
        free(s);
        return;
    }
    snprintf(s->bundle, sizeof(s->bundle), "%s", rec->bundle_path ? rec->bundle_path : "");
    snprintf(s->exit_file, sizeof(s->exit_file), "%s", rec->exit_file ? rec->exit_file : "");
    snprintf(s->log_path, sizeof(s->log_path), "%s",
             rec->log_path && rec->log_path[0] ? rec->log_path : "/dev/null");
    snprintf(s->socket, sizeof(s->socket), "%s/%s/monitor.sock", s->svc->state_root, s->id);
    s->tty = rec->config && rec->config->tty;
    s->stdin_open = rec->config && rec->config->stdin;
    int rc = svc__work(s->svc, s, start_work, start_after);
    if (rc < 0) {
        ag_err_set(&s->err, rc, "queue start: %s", strerror(-rc));
        s->cb(s->arg, &s->err, NULL);
        svc__op_done(&s->op);
        free(s);
    }
}

int rt_svc_ctr_start(struct rt_svc *svc, const char *id, rt_svc_done_cb cb, void *arg,
                     struct ag_err *err)
{
    const picocri_store_ContainerRecord *rec = svc__ctr(svc, id, err);
    struct ctr_start *s;
    struct svc_obj *obj;

    if (rec == NULL)
        return err->code;
    if ((s = calloc(1, sizeof(*s))) == NULL ||
        (obj = svc__obj(svc, ST_KIND_CONTAINER, rec->id)) == NULL) {
        free(s);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    s->svc = svc;
    s->cb = cb;
    s->arg = arg;
    ag_err_init(&s->err);
    snprintf(s->id, sizeof(s->id), "%s", rec->id);
    svc__op_submit(obj, &s->op, start_run);
    return 0;
}

/* ---- helpers --------------------------------------------------------------------------------- */

static int rm_entry(const char *path, const struct stat *st, int type, struct FTW *ftw)
{
    (void)st;
    (void)ftw;
    /* Best effort: go on past entries that cannot be removed. */
    if (type == FTW_DP)
        (void)rmdir(path);
    else
        (void)unlink(path);
    return 0;
}

/* rm -rf without crossing mount points (a still-mounted rootfs stays). */
static int rm_rf(const char *path)
{
    if (path == NULL || path[0] == '\0')
        return 0;
    int rc = nftw(path, rm_entry, 32, FTW_DEPTH | FTW_PHYS | FTW_MOUNT);
    return rc < 0 && errno != ENOENT ? -errno : 0;
}

int svc__rm_rf(const char *path) { return rm_rf(path); }
