/* agent/runtime: the namespaces and files of a pod sandbox.
 *
 * picocri runs no pause container by default: a pod's network, IPC and UTS
 * namespaces are created once and pinned by bind mounts of their nsfs files
 * under the pod's state directory; containers join them by path.  Only a pod
 * that shares one PID namespace gets an infra process (`picocri pause`), the
 * PID 1 that reaps the pod's orphans.  The pod directory also holds the
 * files the containers see as /etc/hostname, /etc/resolv.conf, /etc/hosts,
 * and the pod's /dev/shm (a tmpfs), so all of them survive daemon restarts.
 *
 * Every function blocks (fork, mount): thread pool or start-up only.
 */
#ifndef RT_POD_H
#define RT_POD_H

#include "ag_core.h"

#include <sys/types.h>

#include "api.pb.h"

/* Paths inside the pod directory. */
#define RT_POD_NETNS "netns"
#define RT_POD_IPCNS "ipcns"
#define RT_POD_UTSNS "utsns"
#define RT_POD_SHM "shm"

struct rt_pod_setup {
    const char *dir;      /* the pod's state directory (created) */
    const char *hostname; /* may be NULL */
    bool host_network, host_ipc;
    const runtime_v1_DNSConfig *dns; /* NULL: the host's resolv.conf */
    const runtime_v1_LinuxPodSandboxConfig *linux; /* sysctls; may be NULL */
};

/* Creates the pod directory, its namespaces (pinned), hostname, sysctls
 * (inside the new namespaces), loopback up, resolv.conf, hosts, hostname
 * files and the shm tmpfs.  On failure everything made is undone. */
int rt_pod_create(const struct rt_pod_setup *setup, struct ag_err *err) AG_WUR;

/* Path of a pinned namespace of the pod (RT_POD_NETNS, ...) into out.
 * Returns 0, -ENOENT when the pod has no such pin (host namespace). */
int rt_pod_ns_path(const char *dir, const char *which, char *out, size_t out_len) AG_WUR;

/* Unmounts the pins and the shm tmpfs and removes the pod directory.
 * Idempotent: succeeds when already gone. */
int rt_pod_remove(const char *dir, struct ag_err *err) AG_WUR;

/* Starts the infra process for a pod that shares one PID namespace: it joins
 * the pod's pinned namespaces, becomes PID 1 of a new PID namespace, and is
 * detached from the caller (it survives daemon restarts).  *pid is its pid
 * in the caller's namespace. */
int rt_pod_pause_start(const char *self_exe, const char *dir, pid_t *pid,
                       struct ag_err *err) AG_WUR;
/* Stops the infra process (SIGKILL, then waits up to a bound for it). */
int rt_pod_pause_stop(pid_t pid) AG_WUR;
/* True while pid is the pod's infra process (checks /proc/pid/cmdline). */
bool rt_pod_pause_alive(pid_t pid);

/* `picocri pause --dir DIR`: the infra process's entry point. */
int rt_pause_main(int argc, char **argv);

#endif
