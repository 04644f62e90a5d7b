/* agent/runtime: config.json from a CRI ContainerConfig, the pod's
 * PodSandboxConfig and the image config (process, mounts, namespaces,
 * annotations).  Security (capabilities, seccomp, masked paths), identity
 * and resources are in rt_specgen_sec.c.  Invariant: the output is a
 * complete runtime-spec document or nothing: every failure frees what was
 * built and says which field was wrong. */
#include "rt_specgen.h"

#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#define DEFAULT_PATH "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

static const char *str_or(const char *s, const char *dflt)
{
    return (s != NULL && s[0] != '\0') ? s : dflt;
}

int rt_specgen_args(const runtime_v1_ContainerConfig *ctr, const struct rt_image_cfg *image,
                    const char ***args)
{
    /* containerd's rule (from moby): the CRI command replaces Entrypoint;
     * Cmd is used only when neither command nor args are given. */
    char **cmd = ctr->command, **arg = ctr->args;
    size_t cmd_n = ctr->command_count, arg_n = ctr->args_count;

    if (cmd_n == 0) {
        if (arg_n == 0) {
            arg = image->cmd;
            arg_n = image->cmd_count;
        }
        if (!(image->entrypoint_count == 1 && image->entrypoint[0][0] == '\0')) {
            cmd = image->entrypoint;
            cmd_n = image->entrypoint_count;
        }
    }
    if (cmd_n + arg_n == 0)
        return -EINVAL;
    const char **out = calloc(cmd_n + arg_n + 1, sizeof(*out));
    if (out == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < cmd_n; i++)
        out[i] = cmd[i];
    for (size_t i = 0; i < arg_n; i++)
        out[cmd_n + i] = arg[i];
    *args = out;
    return (int)(cmd_n + arg_n);
}

static bool env_has_key(const cJSON *env, const char *kv, size_t key_len)
{
    const cJSON *e;
    cJSON_ArrayForEach(e, env)
    {
        if (strncmp(e->valuestring, kv, key_len) == 0 && e->valuestring[key_len] == '=')
            return true;
    }
    return false;
}

/* Image env, overridden key by key by the CRI envs; PATH and HOSTNAME as
 * containerd provides them. */
static int build_env(cJSON *process, const struct rt_specgen_in *in)
{
    cJSON *env = cJSON_AddArrayToObject(process, "env");
    char buf[512];

    if (env == NULL)
        return -ENOMEM;
    for (size_t i = in->ctr->envs_count; i-- > 0;) {
        const runtime_v1_KeyValue *kv = &in->ctr->envs[i];
        if (kv->key == NULL || kv->key[0] == '\0' || env_has_key(env, kv->key, strlen(kv->key)))
            continue;
        size_t vlen = kv->value ? kv->value->size : 0;
        size_t klen = strlen(kv->key);
        char *s = malloc(klen + vlen + 2);
        if (s == NULL)
            return -ENOMEM;
        memcpy(s, kv->key, klen);
        s[klen] = '=';
        if (vlen > 0)
            memcpy(s + klen + 1, kv->value->bytes, vlen);
        s[klen + 1 + vlen] = '\0';
        cJSON *item = cJSON_CreateString(s);
        free(s);
        if (item == NULL || !cJSON_AddItemToArray(env, item))
            return -ENOMEM;
    }
    for (size_t i = 0; i < in->image->env_count; i++) {
        const char *kv = in->image->env[i];
        const char *eq = strchr(kv, '=');
        if (eq == NULL || env_has_key(env, kv, (size_t)(eq - kv)))
            continue;
        if (!cJSON_AddItemToArray(env, cJSON_CreateString(kv)))
            return -ENOMEM;
    }
    if (!env_has_key(env, "PATH", 4) &&
        !cJSON_AddItemToArray(env, cJSON_CreateString(DEFAULT_PATH)))
        return -ENOMEM;
    if (in->pod->hostname != NULL && !env_has_key(env, "HOSTNAME", 8)) {
        snprintf(buf, sizeof(buf), "HOSTNAME=%s", in->pod->hostname);
        if (!cJSON_AddItemToArray(env, cJSON_CreateString(buf)))
            return -ENOMEM;
    }
    return 0;
}

static int build_process(cJSON *spec, const struct rt_specgen_in *in, cJSON **out,
                         struct ag_err *err)
{
    cJSON *p = cJSON_AddObjectToObject(spec, "process");
    const char **args = NULL;
    int n;

    if (p == NULL)
        return ag_err_set(err, -ENOMEM, "process");
    n = rt_specgen_args(in->ctr, in->image, &args);
    if (n < 0)
        return ag_err_set(err, n, n == -EINVAL ? "no command specified: the container has "
                                                 "no command and its image no Entrypoint/Cmd"
                                               : "process args");
    cJSON *a = cJSON_CreateStringArray(args, n);
    free(args);
    if (a == NULL || !cJSON_AddItemToObject(p, "args", a))
        return ag_err_set(err, -ENOMEM, "process args");
    cJSON_AddBoolToObject(p, "terminal", in->ctr->tty);
    if (build_env(p, in) < 0)
        return ag_err_set(err, -ENOMEM, "process env");
    const char *cwd = str_or(in->ctr->working_dir, str_or(in->image->working_dir, "/"));
    if (cwd[0] != '/')
        return ag_err_set(err, -EINVAL, "working directory %s is not absolute", cwd);
    cJSON_AddStringToObject(p, "cwd", cwd);
    cJSON *user = cJSON_AddObjectToObject(p, "user");
    cJSON_AddNumberToObject(user, "uid", in->ident->uid);
    cJSON_AddNumberToObject(user, "gid", in->ident->gid);
    if (in->ident->extra_count > 0) {
        cJSON *g = cJSON_AddArrayToObject(user, "additionalGids");
        for (size_t i = 0; i < in->ident->extra_count; i++)
            cJSON_AddItemToArray(g, cJSON_CreateNumber(in->ident->extra[i]));
    }
    *out = p;
    return 0;
}

static cJSON *add_mount(cJSON *mounts, const char *dest, const char *type, const char *src,
                        const char *const *opts)
{
    cJSON *m = cJSON_CreateObject();
    cJSON *o = cJSON_CreateArray();

    if (m == NULL || o == NULL || !cJSON_AddItemToArray(mounts, m)) {
        cJSON_Delete(m);
        cJSON_Delete(o);
        return NULL;
    }
    cJSON_AddStringToObject(m, "destination", dest);
    cJSON_AddStringToObject(m, "type", type);
    cJSON_AddStringToObject(m, "source", src);
    for (size_t i = 0; opts != NULL && opts[i] != NULL; i++)
        cJSON_AddItemToArray(o, cJSON_CreateString(opts[i]));
    cJSON_AddItemToObject(m, "options", o);
    return m;
}

static bool cri_mounts(const struct rt_specgen_in *in, const char *dest)
{
    for (size_t i = 0; i < in->ctr->mounts_count; i++) {
        const char *p = in->ctr->mounts[i].container_path;
        if (p != NULL && strcmp(p, dest) == 0)
            return true;
    }
    return false;
}

static int default_mounts(cJSON *mounts, const struct rt_specgen_in *in)
{
    static const char *const dev[] = {"nosuid", "strictatime", "mode=755", "size=65536k", NULL};
    static const char *const pts[] = {"nosuid",     "noexec", "newinstance", "ptmxmode=0666",
                                      "mode=0620", "gid=5",  NULL};
    static const char *const mq[] = {"nosuid", "noexec", "nodev", NULL};
    static const char *const sys[] = {"nosuid", "noexec", "nodev", "ro", NULL};
    static const char *const cg[] = {"nosuid", "noexec", "nodev", "relatime", "ro", NULL};
    static const char *const shm[] = {"nosuid", "noexec", "nodev", "mode=1777", "size=65536k",
                                      NULL};
    static const char *const shm_bind[] = {"rbind", "rprivate", NULL};

    if (add_mount(mounts, "/proc", "proc", "proc", NULL) == NULL ||
        add_mount(mounts, "/dev", "tmpfs", "tmpfs", dev) == NULL ||
        add_mount(mounts, "/dev/pts", "devpts", "devpts", pts) == NULL ||
        add_mount(mounts, "/dev/mqueue", "mqueue", "mqueue", mq) == NULL ||
        add_mount(mounts, "/sys", "sysfs", "sysfs", sys) == NULL ||
        add_mount(mounts, "/sys/fs/cgroup", in->cgroup_v2 ? "cgroup2" : "cgroup", "cgroup",
                  cg) == NULL)
        return -ENOMEM;
    if (cri_mounts(in, "/dev/shm"))
        return 0;
    if (in->shm_path != NULL)
        return add_mount(mounts, "/dev/shm", "bind", in->shm_path, shm_bind) ? 0 : -ENOMEM;
    return add_mount(mounts, "/dev/shm", "tmpfs", "shm", shm) ? 0 : -ENOMEM;
}

/* /etc/hostname, /etc/resolv.conf and /etc/hosts of the pod, unless the
 * kubelet mounts its own (it manages /etc/hosts for pod-network pods). */
static int pod_file_mounts(cJSON *mounts, const struct rt_specgen_in *in)
{
    static const char *const files[] = {"hostname", "resolv.conf", "hosts"};
    bool ro = false;

    if (in->pod_dir == NULL)
        return 0;
    if (in->ctr->linux != NULL && in->ctr->linux->security_context != NULL)
        ro = in->ctr->linux->security_context->readonly_rootfs;
    for (size_t i = 0; i < AG_ARRAY_LEN(files); i++) {
        char dest[64], src[PATH_MAX];
        const char *opts[] = {"rbind", "rprivate", ro ? "ro" : NULL, NULL};
        struct stat st;
        snprintf(dest, sizeof(dest), "/etc/%s", files[i]);
        if (cri_mounts(in, dest) || ag_path_join(src, sizeof(src), in->pod_dir, files[i]) < 0 ||
            stat(src, &st) < 0)
            continue;
        if (add_mount(mounts, dest, "bind", src, opts) == NULL)
            return -ENOMEM;
    }
    return 0;
}

static size_t path_depth(const char *p)
{
    size_t n = 0;
    for (; *p; p++)
        n += *p == '/' && p[1] != '/' && p[1] != '\0';
    return n;
}

/* The CRI mounts, parents before children (stable by depth). */
static int cri_mount_list(cJSON *mounts, const struct rt_specgen_in *in, struct ag_err *err)
{
    size_t n = in->ctr->mounts_count, max_depth = 0;

    for (size_t i = 0; i < n; i++) {
        const runtime_v1_Mount *m = &in->ctr->mounts[i];
        if (m->container_path == NULL || m->container_path[0] != '/')
            return ag_err_set(err, -EINVAL, "mount %zu: container path %s is not absolute", i,
                              m->container_path ? m->container_path : "(empty)");
        if (m->image != NULL && m->image->image != NULL && m->image->image[0] != '\0')
            return ag_err_set(err, -EOPNOTSUPP, "mount %s: image volumes are not supported",
                              m->container_path);
        if (m->host_path == NULL || m->host_path[0] != '/')
            return ag_err_set(err, -EINVAL, "mount %s: host path %s is not absolute",
                              m->container_path, m->host_path ? m->host_path : "(empty)");
        size_t d = path_depth(m->container_path);
        max_depth = d > max_depth ? d : max_depth;
    }
    for (size_t depth = 0; depth <= max_depth; depth++) {
        for (size_t i = 0; i < n; i++) {
            const runtime_v1_Mount *m = &in->ctr->mounts[i];
            char src[PATH_MAX];
            if (path_depth(m->container_path) != depth)
                continue;
            /* The kubelet expects a missing host path to fail the create;
             * symlinks in the host path are followed. */
            if (realpath(m->host_path, src) == NULL)
                return ag_err_set(err, -errno, "mount %s: host path %s: %s", m->container_path,
                                  m->host_path, strerror(errno));
            const char *prop = m->propagation == runtime_v1_MountPropagation_PROPAGATION_BIDIRECTIONAL
                                   ? "rshared"
                               : m->propagation ==
                                       runtime_v1_MountPropagation_PROPAGATION_HOST_TO_CONTAINER
                                   ? "rslave"
                                   : "rprivate";
            /* Recursive read-only needs read-only: a NULL ends the list. */
            const char *opts[] = {"rbind", prop, m->readonly ? "ro" : NULL,
                                  m->recursive_read_only ? "rro" : NULL, NULL};
            if (add_mount(mounts, m->container_path, "bind", src, opts) == NULL)
                return ag_err_set(err, -ENOMEM, "mounts");
        }
    }
    return 0;
}

static int add_ns(cJSON *list, const char *type, const char *path)
{
    cJSON *ns = cJSON_CreateObject();

    if (ns == NULL || !cJSON_AddItemToArray(list, ns)) {
        cJSON_Delete(ns);
        return -ENOMEM;
    }
    cJSON_AddStringToObject(ns, "type", type);
    if (path != NULL)
        cJSON_AddStringToObject(ns, "path", path);
    return 0;
}

static const runtime_v1_NamespaceOption *ns_options(const struct rt_specgen_in *in)
{
    const runtime_v1_LinuxContainerConfig *l = in->ctr->linux;
    if (l != NULL && l->security_context != NULL)
        return l->security_context->namespace_options;
    return NULL;
}

static int build_namespaces(cJSON *linux_, const struct rt_specgen_in *in, struct ag_err *err)
{
    const runtime_v1_NamespaceOption *o = ns_options(in);
    runtime_v1_NamespaceMode net = o ? o->network : runtime_v1_NamespaceMode_POD;
    runtime_v1_NamespaceMode pid = o ? o->pid : runtime_v1_NamespaceMode_CONTAINER;
    runtime_v1_NamespaceMode ipc = o ? o->ipc : runtime_v1_NamespaceMode_POD;
    cJSON *list = cJSON_AddArrayToObject(linux_, "namespaces");
    int rc = list ? add_ns(list, "mount", NULL) : -ENOMEM;

    if (rc == 0 && net != runtime_v1_NamespaceMode_NODE) {
        rc = add_ns(list, "network", in->ns.net);
        /* The hostname belongs to the pod; host-network pods use the host's. */
        if (rc == 0)
            rc = add_ns(list, "uts", in->ns.uts);
    }
    if (rc == 0 && ipc != runtime_v1_NamespaceMode_NODE)
        rc = add_ns(list, "ipc", in->ns.ipc);
    if (rc == 0 && pid != runtime_v1_NamespaceMode_NODE) {
        bool shared = pid == runtime_v1_NamespaceMode_POD || pid == runtime_v1_NamespaceMode_TARGET;
        if (shared && in->ns.pid == NULL)
            return ag_err_set(err, -EINVAL, "pid namespace mode %s needs the %s's namespace",
                              pid == runtime_v1_NamespaceMode_POD ? "POD" : "TARGET",
                              pid == runtime_v1_NamespaceMode_POD ? "pod" : "target container");
        rc = add_ns(list, "pid", shared ? in->ns.pid : NULL);
    }
    if (rc == 0 && in->cgroup_v2)
        rc = add_ns(list, "cgroup", NULL);
    if (rc == 0 && o != NULL && o->userns_options != NULL &&
        o->userns_options->mode != runtime_v1_NamespaceMode_NODE)
        return ag_err_set(err, -EOPNOTSUPP, "user namespaces for pods are not supported yet");
    return rc < 0 ? ag_err_set(err, rc, "namespaces") : 0;
}

static int add_string_map(cJSON *obj, const char *key, const char *value)
{
    return cJSON_AddStringToObject(obj, key, value ? value : "") ? 0 : -ENOMEM;
}

static int build_annotations(cJSON *spec, const struct rt_specgen_in *in)
{
    cJSON *a = cJSON_AddObjectToObject(spec, "annotations");
    int rc = a ? 0 : -ENOMEM;

    for (size_t i = 0; rc == 0 && i < in->ctr->annotations_count; i++)
        rc = add_string_map(a, in->ctr->annotations[i].key, in->ctr->annotations[i].value);
    if (rc == 0)
        rc = add_string_map(a, "io.kubernetes.cri.container-type", "container");
    if (rc == 0)
        rc = add_string_map(a, "io.kubernetes.cri.sandbox-id", in->pod_id);
    if (rc == 0 && in->ctr->metadata != NULL)
        rc = add_string_map(a, "io.kubernetes.cri.container-name", in->ctr->metadata->name);
    if (rc == 0 && in->ctr->image != NULL)
        rc = add_string_map(a, "io.kubernetes.cri.image-name", in->ctr->image->image);
    if (rc == 0 && in->pod->metadata != NULL) {
        rc = add_string_map(a, "io.kubernetes.cri.sandbox-name", in->pod->metadata->name);
        if (rc == 0)
            rc = add_string_map(a, "io.kubernetes.cri.sandbox-namespace",
                                in->pod->metadata->namespace);
        if (rc == 0)
            rc = add_string_map(a, "io.kubernetes.cri.sandbox-uid", in->pod->metadata->uid);
    }
    return rc;
}

static int build_devices(cJSON *linux_, const struct rt_specgen_in *in, struct ag_err *err)
{
    cJSON *devs = cJSON_AddArrayToObject(linux_, "devices");

    if (devs == NULL)
        return ag_err_set(err, -ENOMEM, "devices");
    for (size_t i = 0; i < in->ctr->devices_count; i++) {
        const runtime_v1_Device *d = &in->ctr->devices[i];
        struct stat st;
        if (d->host_path == NULL || stat(d->host_path, &st) < 0)
            return ag_err_set(err, -ENOENT, "device %s: %s", d->host_path ? d->host_path : "",
                              strerror(errno));
        if (!S_ISCHR(st.st_mode) && !S_ISBLK(st.st_mode))
            return ag_err_set(err, -EINVAL, "device %s is not a device node", d->host_path);
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_AddItemToArray(devs, o))
            return ag_err_set(err, -ENOMEM, "devices");
        cJSON_AddStringToObject(o, "path", str_or(d->container_path, d->host_path));
        cJSON_AddStringToObject(o, "type", S_ISCHR(st.st_mode) ? "c" : "b");
        cJSON_AddNumberToObject(o, "major", major(st.st_rdev));
        cJSON_AddNumberToObject(o, "minor", minor(st.st_rdev));
        cJSON_AddNumberToObject(o, "fileMode", st.st_mode & 07777);
        cJSON_AddNumberToObject(o, "uid", 0);
        cJSON_AddNumberToObject(o, "gid", 0);
    }
    return 0;
}

int rt_specgen_container(const struct rt_specgen_in *in, cJSON **out, struct ag_err *err)
{
    cJSON *spec = cJSON_CreateObject();
    cJSON *process = NULL, *linux_, *root, *mounts;
    int rc = -ENOMEM;

    if (spec == NULL)
        return ag_err_set(err, -ENOMEM, "config.json");
    cJSON_AddStringToObject(spec, "ociVersion", "1.2.0");
    rc = build_process(spec, in, &process, err);
    if (rc < 0)
        goto fail;
    root = cJSON_AddObjectToObject(spec, "root");
    cJSON_AddStringToObject(root, "path", in->rootfs);
    const runtime_v1_NamespaceOption *o = ns_options(in);
    if (in->pod->hostname != NULL && in->pod->hostname[0] != '\0' &&
        !(o != NULL && o->network == runtime_v1_NamespaceMode_NODE))
        cJSON_AddStringToObject(spec, "hostname", in->pod->hostname);
    mounts = cJSON_AddArrayToObject(spec, "mounts");
    if (mounts == NULL || default_mounts(mounts, in) < 0 || pod_file_mounts(mounts, in) < 0) {
        rc = ag_err_set(err, -ENOMEM, "mounts");
        goto fail;
    }
    if ((rc = cri_mount_list(mounts, in, err)) < 0)
        goto fail;
    if (build_annotations(spec, in) < 0) {
        rc = ag_err_set(err, -ENOMEM, "annotations");
        goto fail;
    }
    linux_ = cJSON_AddObjectToObject(spec, "linux");
    if (linux_ == NULL) {
        rc = ag_err_set(err, -ENOMEM, "linux");
        goto fail;
    }
    if (in->cgroups_path != NULL)
        cJSON_AddStringToObject(linux_, "cgroupsPath", in->cgroups_path);
    if ((rc = build_namespaces(linux_, in, err)) < 0 || (rc = build_devices(linux_, in, err)) < 0)
        goto fail;
    if ((rc = rt__specgen_security(spec, process, in, err)) < 0)
        goto fail;
    cJSON_AddBoolToObject(root, "readonly",
                          in->ctr->linux && in->ctr->linux->security_context &&
                              in->ctr->linux->security_context->readonly_rootfs);
    *out = spec;
    return 0;
fail:
    cJSON_Delete(spec);
    return rc;
}
