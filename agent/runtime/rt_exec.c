/* agent/runtime: exec of an extra process in a running container.
 *
 * Same fork protocol as create (rt_container.c): an intermediate process
 * placed in the container's cgroup joins the init's namespaces through
 * /proc/PID/ns/ entries (only those that differ from ours), then clones the
 * process with CLONE_PARENT so the caller is its parent.  The process gets
 * the container's seccomp filter and its own process spec.
 * Invariant: success is reported only once execve has happened (the sync
 * socket is close-on-exec, so EOF means exec, a message means failure).
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>

#include "rt_container.h"

static void exec_child(struct rt_create_ctx *c)
{
    struct ag_err err;
    const struct rt_process *p = c->proc;
    struct rt_seccomp_filter *filter = NULL;
    _cleanup_free_ char *exe = NULL;
    ag_err_init(&err);
    if (rt__child_stdio(c->stdio, &err) < 0 ||
        (p->terminal && rt__console_setup(c->console_socket, p, &err) < 0) ||
        rt__process_prepare(p, &err) < 0 || rt__process_find_exe(p, &exe, &err) < 0)
        rt__child_fail(c->sync, &err);
    if (chdir(p->cwd) < 0) {
        ag_err_set(&err, -errno, "chdir %.200s: %s", p->cwd, strerror(errno));
        rt__child_fail(c->sync, &err);
    }
    if (c->spec && c->spec->seccomp && rt__seccomp_compile(c->spec->seccomp, &filter, &err) < 0)
        rt__child_fail(c->sync, &err);
    if (filter && !p->no_new_privs && rt__seccomp_load(filter, &err) < 0)
        rt__child_fail(c->sync, &err);
    if (rt__process_creds(p, &err) < 0)
        rt__child_fail(c->sync, &err);
    if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        ag_err_set(&err, -errno, "no_new_privs: %s", strerror(errno));
        rt__child_fail(c->sync, &err);
    }
    if (filter && p->no_new_privs && rt__seccomp_load(filter, &err) < 0)
        rt__child_fail(c->sync, &err);
    execve(exe, p->args, p->env ? p->env : (char *[]){NULL});
    ag_err_set(&err, -errno, "exec %.200s: %s", exe, strerror(errno));
    rt__child_fail(c->sync, &err);
}

static const char *const proc_ns[RT_NS_COUNT] = {
    [RT_NS_USER] = "user", [RT_NS_MOUNT] = "mnt", [RT_NS_PID] = "pid",
    [RT_NS_NET] = "net",   [RT_NS_IPC] = "ipc",   [RT_NS_UTS] = "uts",
    [RT_NS_CGROUP] = "cgroup", [RT_NS_TIME] = "time",
};

/* Fills paths with /proc/<pid>/ns/<x> for each namespace that differs from ours. */
static int target_ns(pid_t pid, char paths[RT_NS_COUNT][64], struct rt_create_ctx *c)
{
    for (int i = 0; i < RT_NS_COUNT; i++) {
        char self[64];
        struct stat a, b;
        snprintf(paths[i], 64, "/proc/%d/ns/%s", (int)pid, proc_ns[i]);
        snprintf(self, sizeof(self), "/proc/self/ns/%s", proc_ns[i]);
        if (stat(paths[i], &a) < 0) {
            if (errno == ENOENT && i == RT_NS_TIME)
                continue;
            return -errno;
        }
        if (stat(self, &b) == 0 && a.st_ino == b.st_ino && a.st_dev == b.st_dev)
            continue;
        c->ns_paths[i] = paths[i];
    }
    return 0;
}

int rt_container_exec(const char *state_root, const char *id, const struct rt_process *proc,
                      const struct rt_stdio *stdio, pid_t *pid_out, struct ag_err *err)
{
    struct rt_loaded l;
    struct rt_create_ctx c = {.id = id, .stdio = stdio, .proc = proc, .console_socket = -1};
    char paths[RT_NS_COUNT][64];
    int rc = rt__load(state_root, id, &l, err);
    if (rc < 0)
        return rc;
    if (!strcmp(l.status, RT_STATUS_STOPPED)) {
        rc = ag_err_set(err, -EINVAL, "exec in %s: container is stopped", id);
        goto out;
    }
    if (stdio)
        c.console_socket = stdio->console_socket;
    c.spec = l.spec;
    if ((rc = target_ns(l.st.pid, paths, &c)) < 0) {
        ag_err_set(err, rc, "exec in %s: namespaces of pid %d: %s", id, (int)l.st.pid,
                   strerror(-rc));
        goto out;
    }
    rc = rt__spawn(&c, l.has_cg ? &l.cg : NULL, exec_child, true, pid_out, err);
    if (rc < 0)
        ag_err_wrap(err, "exec in %s", id);
out:
    rt__loaded_fini(&l);
    return rc;
}
