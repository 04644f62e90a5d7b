/* cri/: RuntimeService handlers, one function per RPC (see cri.h for the
 * handler contract and cri_methods.c for the table).  Implemented here:
 * Version, Status, RuntimeConfig and UpdateRuntimeConfig; the daemon state
 * they share (cgroup driver, pod CIDR) is set up by cri_daemon_init().
 *
 * Invariant: the cgroup driver is decided once at start and never changes
 * while the daemon runs (the kubelet builds its cgroup tree to match).
 */
#include "cri_handlers.h"

#include <api.pb.h>
#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <uv.h>

#define POD_CIDR_FILE "meta/pod-cidr"
#define POD_CIDR_MAX 256

/* ---- daemon state ------------------------------------------------------- */

static const char *detect_cgroup_driver(const struct ag_config *cfg)
{
    struct stat st;

    if (cfg != NULL && cfg->cgroup_driver != NULL)
        return strcmp(cfg->cgroup_driver, "systemd") == 0 ? "systemd" : "cgroupfs";
    if (stat("/run/systemd/system", &st) == 0 && S_ISDIR(st.st_mode))
        return "systemd";
    return "cgroupfs";
}

static void load_pod_cidr(struct cri_daemon *d)
{
    char path[4096];
    char *data = NULL;
    size_t len = 0;

    if (d->cfg == NULL || d->cfg->root == NULL ||
        ag_path_join(path, sizeof(path), d->cfg->root, POD_CIDR_FILE) < 0)
        return;
    if (ag_file_read(path, POD_CIDR_MAX, &data, &len) < 0)
        return;
    while (len > 0 && (data[len - 1] == '\n' || data[len - 1] == ' '))
        data[--len] = '\0';
    if (len == 0) {
        free(data);
        return;
    }
    d->pod_cidr = data;
    ag_log(AG_INFO, "pod-cidr restored cidr=%s", data);
}

void cri_daemon_init(struct cri_daemon *d)
{
    d->cgroup_driver = detect_cgroup_driver(d->cfg);
    load_pod_cidr(d);
}

void cri_daemon_fini(struct cri_daemon *d)
{
    free(d->pod_cidr);
    d->pod_cidr = NULL;
}

/* ---- Version ------------------------------------------------------------ */

void cri_runtime_version(struct cri_call *call, void *req)
{
    runtime_v1_VersionResponse resp = {
        .version = (char *)"0.1.0",
        .runtime_name = (char *)"picocri",
        .runtime_version = (char *)PICOCRI_VERSION,
        .runtime_api_version = (char *)"v1",
    };

    cri_call_reply(call, &resp);
}

/* ---- Status --------------------------------------------------------------- */

struct cni_state {
    char dir[4096];
    uint64_t sig;
    bool valid;
    bool ready;
    char msg[4200]; /* the config file when ready, else why not */
};

/* Cached result: the directory is re-read only when the names, sizes or
 * times of its candidate files change, so Status stays cheap. */
static struct cni_state cni_cache;

static bool cni_candidate(const char *name)
{
    static const char *const exts[] = {".conf", ".conflist", ".json"};
    size_t n = strlen(name);

    for (size_t i = 0; i < AG_ARRAY_LEN(exts); i++) {
        size_t e = strlen(exts[i]);
        if (n > e && strcmp(name + n - e, exts[i]) == 0)
            return true;
    }
    return false;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;

    for (size_t i = 0; i < n; i++)
        h = (h ^ b[i]) * 1099511628211ULL;
    return h;
}

/* Returns true if path holds a loadable CNI network config. */
static bool cni_file_ok(const char *path)
{
    char *data = NULL;
    size_t len = 0;
    bool ok = false;

    if (ag_file_read(path, 1024 * 1024, &data, &len) < 0)
        return false;
    cJSON *root = cJSON_ParseWithLength(data, len);
    if (root != NULL && cJSON_IsObject(root)) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(root, "type");
        const cJSON *plugins = cJSON_GetObjectItemCaseSensitive(root, "plugins");
        ok = (cJSON_IsString(type) && type->valuestring[0] != '\0') ||
             (cJSON_IsArray(plugins) && cJSON_GetArraySize(plugins) > 0);
    }
    cJSON_Delete(root);
    free(data);
    return ok;
}

static int name_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Lists candidate names (sorted, owned) and a signature of their stats. */
static size_t cni_scan(const char *dir, char **names, size_t max, uint64_t *sig)
{
    char path[4096];
    struct stat st;
    size_t n = 0;
    DIR *d = opendir(dir);

    *sig = fnv(14695981039346656037ULL, dir, strlen(dir));
    if (d == NULL)
        return 0;
    struct dirent *e;
    for (int guard = 0; guard < 4096 && n < max && (e = readdir(d)) != NULL; guard++) {
        if (e->d_name[0] == '.' || !cni_candidate(e->d_name))
            continue;
        if (ag_path_join(path, sizeof(path), dir, e->d_name) < 0 || stat(path, &st) < 0 ||
            !S_ISREG(st.st_mode))
            continue;
        char *copy = strdup(e->d_name);
        if (copy == NULL)
            break;
        names[n++] = copy;
        *sig = fnv(*sig, e->d_name, strlen(e->d_name));
        *sig = fnv(*sig, &st.st_mtim, sizeof(st.st_mtim));
        *sig = fnv(*sig, &st.st_size, sizeof(st.st_size));
        *sig = fnv(*sig, &st.st_ino, sizeof(st.st_ino));
    }
    closedir(d);
    qsort(names, n, sizeof(names[0]), name_cmp);
    return n;
}

static void cni_check(const char *dir, bool *ready, const char **msg)
{
    char *names[256];
    char path[4096];
    uint64_t sig;
    size_t n = cni_scan(dir, names, AG_ARRAY_LEN(names), &sig);

    if (!(cni_cache.valid && cni_cache.sig == sig && strcmp(cni_cache.dir, dir) == 0)) {
        snprintf(cni_cache.dir, sizeof(cni_cache.dir), "%s", dir);
        cni_cache.sig = sig;
        cni_cache.valid = true;
        cni_cache.ready = false;
        snprintf(cni_cache.msg, sizeof(cni_cache.msg), "no CNI configuration found in %s", dir);
        for (size_t i = 0; i < n; i++) {
            if (ag_path_join(path, sizeof(path), dir, names[i]) == 0 && cni_file_ok(path)) {
                cni_cache.ready = true;
                snprintf(cni_cache.msg, sizeof(cni_cache.msg), "%s", path);
                break;
            }
        }
    }
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    *ready = cni_cache.ready;
    *msg = cni_cache.msg;
}

static char *status_config_json(const struct cri_daemon *d, const char *cni_file)
{
    const struct ag_config *cfg = d->cfg;
    cJSON *o = cJSON_CreateObject();
    char *out = NULL;

    if (o == NULL)
        return NULL;
    cJSON_AddStringToObject(o, "version", PICOCRI_VERSION);
    if (cfg != NULL) {
        cJSON_AddStringToObject(o, "socket", cfg->socket ? cfg->socket : "");
        cJSON_AddStringToObject(o, "root", cfg->root ? cfg->root : "");
        cJSON_AddStringToObject(o, "state", cfg->state ? cfg->state : "");
        cJSON_AddStringToObject(o, "cniConfDir", cfg->cni_conf_dir ? cfg->cni_conf_dir : "");
        cJSON_AddStringToObject(o, "cniBinDirs", cfg->cni_bin_dirs ? cfg->cni_bin_dirs : "");
        cJSON_AddStringToObject(o, "registries", cfg->registries ? cfg->registries : "");
        cJSON_AddStringToObject(o, "logLevel", ag_log_level_name(cfg->log_level));
    }
    cJSON_AddStringToObject(o, "cgroupDriver", d->cgroup_driver ? d->cgroup_driver : "");
    cJSON_AddStringToObject(o, "podCIDR", d->pod_cidr ? d->pod_cidr : "");
    cJSON_AddStringToObject(o, "cniConfig", cni_file ? cni_file : "");
    out = cJSON_PrintUnformatted(o);
    cJSON_Delete(o);
    return out;
}

void cri_runtime_status(struct cri_call *call, void *reqp)
{
    const runtime_v1_StatusRequest *req = reqp;
    const struct cri_daemon *d = cri_call_daemon(call);
    const char *dir = d->cfg && d->cfg->cni_conf_dir ? d->cfg->cni_conf_dir : "/etc/cni/net.d";
    const char *net_msg = "";
    bool net_ready = false;

    cni_check(dir, &net_ready, &net_msg);
    runtime_v1_RuntimeCondition conds[2] = {
        {.type = (char *)"RuntimeReady", .status = true},
        {.type = (char *)"NetworkReady", .status = net_ready},
    };
    if (!net_ready) {
        conds[1].reason = (char *)"NetworkPluginNotReady";
        conds[1].message = (char *)net_msg;
    }
    runtime_v1_RuntimeStatus status = {.conditions_count = 2, .conditions = conds};
    runtime_v1_RuntimeHandlerFeatures features = {0};
    runtime_v1_RuntimeHandler handler = {.name = (char *)"", .features = &features};
    runtime_v1_StatusResponse_InfoEntry info = {.key = (char *)"config"};
    runtime_v1_StatusResponse resp = {
        .status = &status, .runtime_handlers_count = 1, .runtime_handlers = &handler};
    if (req->verbose) {
        info.value = status_config_json(d, net_ready ? net_msg : NULL);
        if (info.value == NULL) {
            cri_call_fail_code(call, CRI_RESOURCE_EXHAUSTED, "picocri: out of memory");
            return;
        }
        resp.info_count = 1;
        resp.info = &info;
    }
    cri_call_reply(call, &resp);
    free(info.value);
}

/* ---- RuntimeConfig, UpdateRuntimeConfig ------------------------------------ */

void cri_runtime_config(struct cri_call *call, void *req)
{
    const struct cri_daemon *d = cri_call_daemon(call);
    runtime_v1_LinuxRuntimeConfiguration linux_cfg = {
        .cgroup_driver = d->cgroup_driver && strcmp(d->cgroup_driver, "systemd") == 0
                             ? runtime_v1_CgroupDriver_SYSTEMD
                             : runtime_v1_CgroupDriver_CGROUPFS};
    runtime_v1_RuntimeConfigResponse resp = {.linux = &linux_cfg};

    cri_call_reply(call, &resp);
}

struct cidr_write {
    uv_work_t work;
    struct cri_call *call;
    char path[4096];
    char data[POD_CIDR_MAX + 2];
    struct ag_err err;
};

/* Blocking: thread pool (or inline without a loop). */
static void cidr_write_run(struct cidr_write *w)
{
    char dir[4096];
    int rc;

    snprintf(dir, sizeof(dir), "%s", w->path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL)
        *slash = '\0';
    rc = ag_mkdir_p(dir, 0700);
    if (rc < 0) {
        ag_err_set(&w->err, rc, "persist pod CIDR: mkdir %s: %s", dir, strerror(-rc));
        return;
    }
    rc = ag_file_write_atomic(w->path, w->data, strlen(w->data), 0644);
    if (rc < 0)
        ag_err_set(&w->err, rc, "persist pod CIDR: write %s: %s", w->path, strerror(-rc));
}

static void cidr_write_complete(struct cidr_write *w)
{
    if (w->err.code < 0) {
        ag_log(AG_ERROR, "%s", w->err.msg);
        cri_call_fail(w->call, &w->err);
    } else {
        runtime_v1_UpdateRuntimeConfigResponse resp = {0};
        cri_call_reply(w->call, &resp);
    }
    free(w);
}

static void on_cidr_work(uv_work_t *req)
{
    cidr_write_run(ag_container_of(req, struct cidr_write, work));
}

static void on_cidr_done(uv_work_t *req, int status)
{
    cidr_write_complete(ag_container_of(req, struct cidr_write, work));
}

static bool cidr_text_ok(const char *s)
{
    size_t n = strlen(s);

    if (n == 0 || n > POD_CIDR_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!(s[i] >= '0' && s[i] <= '9') && !(s[i] >= 'a' && s[i] <= 'f') &&
            !(s[i] >= 'A' && s[i] <= 'F') && strchr(".:/,", s[i]) == NULL)
            return false;
    return true;
}

void cri_runtime_update_config(struct cri_call *call, void *reqp)
{
    const runtime_v1_UpdateRuntimeConfigRequest *req = reqp;
    struct cri_daemon *d = cri_call_daemon(call);
    const char *cidr = NULL;
    char esc[POD_CIDR_MAX + 1];

    if (req->runtime_config && req->runtime_config->network_config)
        cidr = req->runtime_config->network_config->pod_cidr;
    if (cidr == NULL || cidr[0] == '\0' || (d->pod_cidr && strcmp(cidr, d->pod_cidr) == 0)) {
        runtime_v1_UpdateRuntimeConfigResponse resp = {0};
        cri_call_reply(call, &resp);
        return;
    }
    if (!cidr_text_ok(cidr)) {
        ag_str_escape(esc, sizeof(esc), cidr, 64);
        cri_call_fail_code(call, CRI_INVALID_ARGUMENT, "picocri: pod_cidr %s is not a CIDR list",
                           esc);
        return;
    }
    struct cidr_write *w = calloc(1, sizeof(*w));
    char *copy = strdup(cidr);
    if (w == NULL || copy == NULL || d->cfg == NULL || d->cfg->root == NULL ||
        ag_path_join(w->path, sizeof(w->path), d->cfg->root, POD_CIDR_FILE) < 0) {
        free(w);
        free(copy);
        cri_call_fail_code(call, CRI_INTERNAL, "picocri: cannot store pod CIDR");
        return;
    }
    free(d->pod_cidr);
    d->pod_cidr = copy;
    ag_log(AG_INFO, "pod-cidr updated cidr=%s", copy);
    snprintf(w->data, sizeof(w->data), "%s\n", copy);
    w->call = call;
    if (d->loop != NULL && uv_queue_work(d->loop, &w->work, on_cidr_work, on_cidr_done) == 0)
        return;
    cidr_write_run(w);
    cidr_write_complete(w);
}
