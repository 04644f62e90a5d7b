/* agent/runtime: generating an OCI runtime config.json from a CRI request.
 *
 * The daemon turns a kubelet's PodSandboxConfig + ContainerConfig and the
 * image's config into the config.json the executor runs, as containerd's CRI
 * plugin does (process args from Entrypoint/Cmd, env merge, user from the
 * image resolved against the image's own /etc/passwd and /etc/group, default
 * mounts, capabilities, masked paths, seccomp, namespaces of the pod).
 * Pure functions of their inputs except user resolution, which reads two
 * files inside the rootfs (blocking: thread pool).
 */
#ifndef RT_SPECGEN_H
#define RT_SPECGEN_H

#include "ag_core.h"

#include <cjson/cJSON.h>
#include <sys/types.h>

#include "api.pb.h"

/* What a container inherits from its image's config.  Borrowed. */
struct rt_image_cfg {
    char **entrypoint;
    size_t entrypoint_count;
    char **cmd;
    size_t cmd_count;
    char **env; /* KEY=VALUE */
    size_t env_count;
    const char *working_dir;
    const char *user;        /* "", "uid", "uid:gid", "name", "name:group" */
    const char *stop_signal; /* "SIGTERM", "15", NULL */
};

/* Namespaces a container joins: paths of the pod's pinned namespaces (or
 * of a target container).  NULL means: not shared (new for pid, host for
 * the rest when the NamespaceOption says NODE). */
struct rt_pod_ns {
    const char *net, *ipc, *uts, *pid;
};

/* A resolved process identity. */
struct rt_ident {
    uid_t uid;
    gid_t gid;
    gid_t extra[64];
    size_t extra_count;
};

struct rt_specgen_in {
    const runtime_v1_PodSandboxConfig *pod; /* required */
    const runtime_v1_ContainerConfig *ctr;  /* required */
    const struct rt_image_cfg *image;       /* required (may be all empty) */
    const struct rt_ident *ident;           /* from rt_specgen_resolve_user() */
    const char *rootfs;                     /* absolute path of the mounted rootfs */
    const char *pod_dir;     /* holds hosts, resolv.conf, hostname (may be NULL) */
    const char *shm_path;    /* the pod's /dev/shm to bind (may be NULL: own tmpfs) */
    const char *cgroups_path;
    const char *container_id;
    const char *pod_id;
    struct rt_pod_ns ns;
    bool cgroup_v2;
};

/* Builds config.json.  Returns 0 with *out owned, or -EINVAL with a message
 * for a request that cannot run (no command, bad capability name, unknown
 * seccomp profile type, relative mount path, ...). */
int rt_specgen_container(const struct rt_specgen_in *in, cJSON **out, struct ag_err *err) AG_WUR;

/* Process args as containerd computes them (Entrypoint/Cmd merge).  Returns
 * the count, or -EINVAL when there is nothing to run.  *args is owned (a
 * NULL-terminated array whose strings are borrowed from the inputs). */
int rt_specgen_args(const runtime_v1_ContainerConfig *ctr, const struct rt_image_cfg *image,
                    const char ***args) AG_WUR;

/* Resolves the identity of a container: the security context's run_as_user /
 * run_as_username / run_as_group, else the image's User, against
 * <rootfs>/etc/passwd and <rootfs>/etc/group, read without following links
 * out of the rootfs.  Supplemental groups: the user's groups in /etc/group
 * (unless the policy is Strict) plus the context's supplemental_groups.
 * Blocking.  -EINVAL with a message for an unknown user or group. */
int rt_specgen_resolve_user(const char *rootfs, const runtime_v1_LinuxContainerSecurityContext *sc,
                            const char *image_user, struct rt_ident *out,
                            struct ag_err *err) AG_WUR;

/* Maps a CRI Signal enum value or an image StopSignal string ("SIGTERM",
 * "TERM", "15") to a signal number; 0 when unknown or unset. */
int rt_specgen_signal(runtime_v1_Signal cri, const char *image_stop_signal);

/* Internal, shared by the two rt_specgen files. */
int rt__specgen_security(cJSON *spec, cJSON *process, const struct rt_specgen_in *in,
                         struct ag_err *err);
#endif
