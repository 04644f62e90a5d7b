/* agent/runtime: container create (and the container init until execve).
 *
 * The caller P forks an intermediate process I, places it in the cgroup,
 * and I joins the namespaces given by path (user first, mount last),
 * unshares the new ones (a new user namespace first, its id maps written by
 * P), then clones the init C with CLONE_PARENT, so C is P's child, PID 1 of
 * a new PID namespace, reports C's pid to P and exits.  C waits for P's GO
 * (sent once P has that pid), builds the rootfs, asks P to run the
 * runtime-side hooks, runs createContainer hooks, pivots, applies the
 * process spec, reports READY and blocks on exec.fifo until `start`.
 * Invariant: on any failure P kills and reaps what it forked, removes the
 * cgroup and the state directory, and returns the child's message: the
 * environment is as if create had never been called.
 */
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#include "rt_container.h"

#define SYNC_TIMEOUT_MS 60000

static const int ns_flags[RT_NS_COUNT] = {
    [RT_NS_USER] = CLONE_NEWUSER, [RT_NS_MOUNT] = CLONE_NEWNS,  [RT_NS_PID] = CLONE_NEWPID,
    [RT_NS_NET] = CLONE_NEWNET,   [RT_NS_IPC] = CLONE_NEWIPC,   [RT_NS_UTS] = CLONE_NEWUTS,
    [RT_NS_CGROUP] = CLONE_NEWCGROUP, [RT_NS_TIME] = CLONE_NEWTIME,
};

int rt__ns_flag(enum rt_ns_type t) { return ns_flags[t]; }

/* Child-side failure: report to the parent, then exit. */
__attribute__((noreturn)) void rt__child_fail(int sync_fd, struct ag_err *err)
{
    (void)rt__sync_send(sync_fd, RT_SYNC_ERROR, err->code ? err->code : -EIO, err->msg);
    _exit(1);
}

int rt__child_stdio(const struct rt_stdio *io, struct ag_err *err)
{
    int fds[3] = {io ? io->in : -1, io ? io->out : -1, io ? io->err : -1};
    for (int i = 0; i < 3; i++)
        if (fds[i] >= 0 && (fds[i] == i ? fcntl(i, F_SETFD, 0) : dup2(fds[i], i)) < 0)
            return ag_err_set(err, -errno, "dup2 stdio: %s", strerror(errno));
    /* Nothing but stdio crosses into the container. */
    if (syscall(SYS_close_range, 3, ~0u, 4 /* CLOSE_RANGE_CLOEXEC */) < 0)
        for (int fd = 3; fd < 1024; fd++)
            (void)fcntl(fd, F_SETFD, FD_CLOEXEC);
    return 0;
}

/* Joins namespaces by open fds: user first, mount last (a mount namespace
 * changes how the other paths would resolve, so all are opened first). */
int rt__join_ns(const int fds[RT_NS_COUNT], struct ag_err *err)
{
    static const enum rt_ns_type order[] = {RT_NS_USER, RT_NS_PID, RT_NS_NET, RT_NS_IPC,
                                            RT_NS_UTS, RT_NS_CGROUP, RT_NS_TIME, RT_NS_MOUNT};
    for (size_t i = 0; i < AG_ARRAY_LEN(order); i++) {
        enum rt_ns_type t = order[i];
        if (fds[t] >= 0 && setns(fds[t], ns_flags[t]) < 0)
            return ag_err_set(err, -errno, "join %s namespace: %s", rt__ns_name(t),
                              strerror(errno));
    }
    return 0;
}

static int write_map(pid_t pid, const char *file, const struct rt_idmap *m, size_t n,
                     struct ag_err *err)
{
    char path[64], buf[340 * 36];
    size_t off = 0;
    for (size_t i = 0; i < n; i++)
        off += (size_t)snprintf(buf + off, sizeof(buf) - off, "%u %u %u\n", m[i].container_id,
                                m[i].host_id, m[i].size);
    snprintf(path, sizeof(path), "/proc/%d/%s", (int)pid, file);
    int fd = open(path, O_WRONLY | O_CLOEXEC);
    if (fd < 0 || write(fd, buf, off) != (ssize_t)off) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return ag_err_set(err, -e, "write %s: %s", path, strerror(e));
    }
    close(fd);
    return 0;
}

int rt__write_id_maps(pid_t pid, const struct rt_spec *s, struct ag_err *err)
{
    if (write_map(pid, "uid_map", s->uid_maps, s->uid_maps_count, err) < 0)
        return err->code;
    return write_map(pid, "gid_map", s->gid_maps, s->gid_maps_count, err);
}

/* ---- the container init (C) ------------------------------------------------------- */

static void init_exec(struct rt_create_ctx *c, struct rt_seccomp_filter *filter, const char *exe,
                      int fifo)
{
    struct ag_err err;
    const struct rt_process *p = c->spec->process;
    char byte;
    ag_err_init(&err);
    ssize_t n;
    do
        n = read(fifo, &byte, 1);
    while (n < 0 && errno == EINTR);
    close(fifo);
    if (n != 1)
        _exit(1);
    if (c->spec->hooks_count[RT_HOOK_START_CONTAINER]) {
        struct rt_state st = {.pid = 1};
        snprintf(st.id, sizeof(st.id), "%s", c->id);
        snprintf(st.bundle, sizeof(st.bundle), "%s", c->spec->bundle);
        _cleanup_free_ char *js = rt__state_json(&st, RT_STATUS_RUNNING, c->spec->annotations,
                                                 c->spec->annotations_count);
        if (!js || rt__hooks_run(c->spec, RT_HOOK_START_CONTAINER, js, false, &err) < 0)
            goto fail;
    }
    if (p->no_new_privs && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0) {
        ag_err_set(&err, -errno, "no_new_privs: %s", strerror(errno));
        goto fail;
    }
    if (filter && p->no_new_privs && rt__seccomp_load(filter, &err) < 0)
        goto fail;
    execve(exe, p->args, p->env ? p->env : (char *[]){NULL});
    ag_err_set(&err, -errno, "exec %s: %s", exe, strerror(errno));
fail:
    dprintf(2, "picocri: %s\n", err.msg);
    _exit(127);
}

static void init_main(struct rt_create_ctx *c)
{
    struct ag_err err;
    struct rt_sync_msg m;
    const struct rt_spec *s = c->spec;
    struct rt_seccomp_filter *filter = NULL;
    char *exe = NULL;
    ag_err_init(&err);
    if (rt__rootfs_setup(s, &err) < 0)
        rt__child_fail(c->sync, &err);
    if (s->ns[RT_NS_UTS].enabled && !s->ns[RT_NS_UTS].path &&
        ((s->hostname && sethostname(s->hostname, strlen(s->hostname)) < 0) ||
         (s->domainname && setdomainname(s->domainname, strlen(s->domainname)) < 0))) {
        ag_err_set(&err, -errno, "set hostname: %s", strerror(errno));
        rt__child_fail(c->sync, &err);
    }
    if (s->hooks_count[RT_HOOK_PRESTART] || s->hooks_count[RT_HOOK_CREATE_RUNTIME]) {
        if (rt__sync_send(c->sync, RT_SYNC_HOOKS, 0, NULL) < 0 ||
            rt__sync_recv(c->sync, &m, SYNC_TIMEOUT_MS) < 0 || m.type != RT_SYNC_GO)
            _exit(1);
    }
    if (s->hooks_count[RT_HOOK_CREATE_CONTAINER]) {
        struct rt_state st = {.pid = 1};
        snprintf(st.id, sizeof(st.id), "%s", c->id);
        snprintf(st.bundle, sizeof(st.bundle), "%s", s->bundle);
        _cleanup_free_ char *js =
            rt__state_json(&st, RT_STATUS_CREATING, s->annotations, s->annotations_count);
        if (!js || rt__hooks_run(s, RT_HOOK_CREATE_CONTAINER, js, false, &err) < 0)
            rt__child_fail(c->sync, &err);
    }
    /* The fifo was opened by P (a user namespace's root may not reach the
     * state directory); O_RDWR, so this open never blocks and the read
     * below waits for `start`. */
    int fifo = c->fifo_fd;
    if (rt__rootfs_pivot(s, &err) < 0 ||
        (s->process->terminal && rt__console_setup(c->console_socket, s->process, &err) < 0) ||
        rt__rootfs_finish(s, &err) < 0 || rt__process_prepare(s->process, &err) < 0 ||
        rt__process_find_exe(s->process, &exe, &err) < 0)
        rt__child_fail(c->sync, &err);
    if (chdir(s->process->cwd) < 0) {
        ag_err_set(&err, -errno, "chdir %.200s: %s", s->process->cwd, strerror(errno));
        rt__child_fail(c->sync, &err);
    }
    if (s->seccomp && rt__seccomp_compile(s->seccomp, &filter, &err) < 0)
        rt__child_fail(c->sync, &err);
    /* Without no_new_privs loading a filter needs CAP_SYS_ADMIN: load it
     * now, before the capabilities are dropped. */
    if (filter && !s->process->no_new_privs && rt__seccomp_load(filter, &err) < 0)
        rt__child_fail(c->sync, &err);
    if (rt__process_creds(s->process, &err) < 0)
        rt__child_fail(c->sync, &err);
    if (rt__sync_send(c->sync, RT_SYNC_READY, 0, NULL) < 0)
        _exit(1);
    close(c->sync);
    init_exec(c, filter, exe, fifo);
}

/* ---- the intermediate (I) ---------------------------------------------------------- */

__attribute__((noreturn)) void rt__intermediate_main(struct rt_create_ctx *c,
                                                     void (*child)(struct rt_create_ctx *))
{
    struct ag_err err;
    struct rt_sync_msg m;
    int fds[RT_NS_COUNT], flags = 0;
    ag_err_init(&err);
    for (int i = 0; i < RT_NS_COUNT; i++)
        fds[i] = -1;
    if (rt__sync_recv(c->sync, &m, SYNC_TIMEOUT_MS) < 0 || m.type != RT_SYNC_GO)
        _exit(1);
    for (int i = 0; i < RT_NS_COUNT; i++) {
        const char *path = c->ns_paths[i];
        if (path && (fds[i] = open(path, O_RDONLY | O_CLOEXEC)) < 0) {
            ag_err_set(&err, -errno, "open %s namespace %.200s: %s", rt__ns_name(i), path,
                       strerror(errno));
            rt__child_fail(c->sync, &err);
        }
        if (!path && c->ns_new[i])
            flags |= ns_flags[i];
    }
    if (rt__join_ns(fds, &err) < 0)
        rt__child_fail(c->sync, &err);
    if (flags & CLONE_NEWUSER) {
        if (unshare(CLONE_NEWUSER) < 0) {
            ag_err_set(&err, -errno, "unshare user namespace: %s", strerror(errno));
            rt__child_fail(c->sync, &err);
        }
        if (rt__sync_send(c->sync, RT_SYNC_USERMAP, 0, NULL) < 0 ||
            rt__sync_recv(c->sync, &m, SYNC_TIMEOUT_MS) < 0 || m.type != RT_SYNC_GO)
            _exit(1);
        (void)!syscall(SYS_setresgid, 0, 0, 0);
        (void)!syscall(SYS_setresuid, 0, 0, 0);
        flags &= ~CLONE_NEWUSER;
    }
    if (flags && unshare(flags) < 0) {
        ag_err_set(&err, -errno, "unshare namespaces: %s", strerror(errno));
        rt__child_fail(c->sync, &err);
    }
    /* CLONE_PARENT: the child belongs to P, not to us. */
    long pid = syscall(SYS_clone, CLONE_PARENT | SIGCHLD, 0, 0, 0, 0);
    if (pid < 0) {
        ag_err_set(&err, -errno, "clone init: %s", strerror(errno));
        rt__child_fail(c->sync, &err);
    }
    if (pid == 0) {
        /* C and I share the sync socket: C waits until P has I's report of
         * its pid, so none of C's messages can overtake it (P would take
         * READY with no pid, and clean up with kill(0, ...)). */
        if (rt__sync_recv(c->sync, &m, SYNC_TIMEOUT_MS) < 0 || m.type != RT_SYNC_GO)
            _exit(1);
        child(c);
        _exit(1);
    }
    (void)rt__sync_send(c->sync, RT_SYNC_PID, (int)pid, NULL);
    _exit(0);
}

static void init_entry(struct rt_create_ctx *c)
{
    struct ag_err err;
    ag_err_init(&err);
    if (rt__child_stdio(c->stdio, &err) < 0)
        rt__child_fail(c->sync, &err);
    init_main(c);
}

/* ---- the parent (P) ----------------------------------------------------------------- */

/* Runs the parent side of the sync protocol until READY (create) or EOF
 * (exec).  Fills *init_pid as soon as it is known, so the caller can clean
 * up even on failure. */
int rt__parent_sync(struct rt_create_ctx *c, pid_t mid, pid_t *init_pid, bool until_eof,
                    struct ag_err *err)
{
    struct rt_sync_msg m;
    for (int steps = 0; steps < 16; steps++) {
        int rc = rt__sync_recv(c->psync, &m, SYNC_TIMEOUT_MS);
        if (rc == -EPIPE && until_eof && *init_pid > 0)
            return 0;
        if (rc < 0)
            return ag_err_set(err, rc, "container setup: %s",
                              rc == -EPIPE ? "child exited without a message" : strerror(-rc));
        switch (m.type) {
        case RT_SYNC_USERMAP:
            if (rt__write_id_maps(mid, c->spec, err) < 0)
                return err->code;
            break;
        case RT_SYNC_PID:
            if (m.code <= 0)
                return ag_err_set(err, -EPROTO, "container setup: bad init pid %d", m.code);
            *init_pid = m.code;
            while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
                ;
            break; /* the GO below lets the init begin */
        case RT_SYNC_HOOKS: {
            struct rt_state st = {.pid = *init_pid};
            snprintf(st.id, sizeof(st.id), "%s", c->id);
            snprintf(st.bundle, sizeof(st.bundle), "%s", c->spec->bundle);
            _cleanup_free_ char *js = rt__state_json(&st, RT_STATUS_CREATING,
                                                     c->spec->annotations,
                                                     c->spec->annotations_count);
            if (!js || rt__hooks_run(c->spec, RT_HOOK_PRESTART, js, false, err) < 0 ||
                rt__hooks_run(c->spec, RT_HOOK_CREATE_RUNTIME, js, false, err) < 0)
                return js ? err->code : ag_err_set(err, -ENOMEM, "out of memory");
            break;
        }
        case RT_SYNC_READY:
            return *init_pid > 0 ? 0
                                 : ag_err_set(err, -EPROTO, "container setup: ready before pid");
        case RT_SYNC_ERROR:
            return ag_err_set(err, m.code < 0 ? m.code : -EIO, "%s", m.msg);
        default:
            return ag_err_set(err, -EPROTO, "container setup: unexpected message %d", m.type);
        }
        if (rt__sync_send(c->psync, RT_SYNC_GO, 0, NULL) < 0)
            return ag_err_set(err, -EPIPE, "container setup: child gone");
    }
    return ag_err_set(err, -EPROTO, "container setup: too many messages");
}

/* Forks I in the cgroup and runs the protocol.  Reaps everything on failure. */
int rt__spawn(struct rt_create_ctx *c, struct rt_cgroup *cg, void (*child)(struct rt_create_ctx *),
              bool until_eof, pid_t *pid_out, struct ag_err *err)
{
    int sv[2];
    pid_t init_pid = 0;
    if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return ag_err_set(err, -errno, "socketpair: %s", strerror(errno));
    c->psync = sv[0];
    c->sync = sv[1];
    pid_t mid = fork();
    if (mid < 0) {
        close(sv[0]);
        close(sv[1]);
        return ag_err_set(err, -errno, "fork: %s", strerror(errno));
    }
    if (mid == 0) {
        close(sv[0]);
        rt__intermediate_main(c, child);
    }
    close(sv[1]);
    int rc = cg ? cg->ops->enter(cg, mid, err) : 0;
    if (rc == 0 && rt__sync_send(c->psync, RT_SYNC_GO, 0, NULL) < 0)
        rc = ag_err_set(err, -EPIPE, "container setup: intermediate process died");
    if (rc == 0)
        rc = rt__parent_sync(c, mid, &init_pid, until_eof, err);
    close(c->psync);
    if (rc < 0) {
        kill(mid, SIGKILL);
        while (waitpid(mid, NULL, 0) < 0 && errno == EINTR)
            ;
        if (init_pid > 0) {
            kill(init_pid, SIGKILL);
            while (waitpid(init_pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
        return rc;
    }
    *pid_out = init_pid;
    return 0;
}

static void remove_state_dir(const char *dir)
{
    static const char *const files[] = {"exec.fifo", "state.json", "config.json"};
    char path[4200];
    for (size_t i = 0; i < AG_ARRAY_LEN(files); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        (void)unlink(path);
    }
    (void)rmdir(dir);
}

static int prepare(struct rt_create_ctx *c, const char *state_root, const char *bundle,
                   struct ag_err *err)
{
    char cfg[4200];
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int rc = rt_spec_load(bundle, &c->spec, err);
    if (rc < 0)
        return rc;
    if (!c->spec->process)
        return ag_err_set(err, -EINVAL, "config.json: process is required");
    if (!c->spec->ns[RT_NS_MOUNT].enabled || c->spec->ns[RT_NS_MOUNT].path)
        return ag_err_set(err, -EINVAL, "config.json: a new mount namespace is required");
    if ((rc = ag_mkdir_p(state_root, 0711)) < 0)
        return ag_err_set(err, rc, "state root %.300s: %s", state_root, strerror(-rc));
    if (mkdir(c->dir, 0700) < 0)
        return ag_err_set(err, -errno, "container %s: %s", c->id,
                          errno == EEXIST ? "already exists" : strerror(errno));
    c->dir_made = true;
    /* Keep the config as it was: later bundle edits have no effect. */
    snprintf(cfg, sizeof(cfg), "%s/config.json", c->spec->bundle);
    if ((rc = ag_file_read(cfg, RT_CONFIG_MAX, &buf, &len)) < 0)
        return ag_err_set(err, rc, "read %s: %s", cfg, strerror(-rc));
    snprintf(cfg, sizeof(cfg), "%s/config.json", c->dir);
    if ((rc = ag_file_replace(cfg, buf, len, 0600)) < 0)
        return ag_err_set(err, rc, "write %s: %s", cfg, strerror(-rc));
    snprintf(c->fifo_path, sizeof(c->fifo_path), "%s/exec.fifo", c->dir);
    if (mkfifo(c->fifo_path, 0600) < 0)
        return ag_err_set(err, -errno, "mkfifo: %s", strerror(errno));
    return 0;
}

static int setup_cgroup(struct rt_create_ctx *c, struct ag_err *err)
{
    char path[1024];
    int rc = rt_cgroup_path_resolve(c->spec->cgroups_path, c->id, path, sizeof(path));
    if (rc < 0)
        return ag_err_set(err, rc, "linux.cgroupsPath %.200s: invalid",
                          c->spec->cgroups_path ? c->spec->cgroups_path : "");
    if (rt__cgroup_init(&c->cg, path, err) < 0)
        return err->code;
    if (c->cg.ops->create(&c->cg, err) < 0)
        return err->code;
    c->cg_made = true;
    return c->cg.ops->apply(&c->cg, &c->spec->resources, err);
}

int rt_container_create(const char *state_root, const char *id, const char *bundle,
                        const struct rt_stdio *stdio, pid_t *pid_out, struct ag_err *err)
{
    struct rt_create_ctx c = {.id = id, .stdio = stdio, .console_socket = -1, .fifo_fd = -1};
    pid_t pid = 0;
    int rc = rt__id_check(id, err);
    if (rc < 0)
        return rc;
    if (rt__state_dir(state_root, id, c.dir, sizeof(c.dir)) < 0)
        return ag_err_set(err, -ENAMETOOLONG, "state path too long");
    if (stdio)
        c.console_socket = stdio->console_socket;
    rc = prepare(&c, state_root, bundle, err);
    if (rc == 0)
        rc = setup_cgroup(&c, err);
    for (int i = 0; rc == 0 && i < RT_NS_COUNT; i++) {
        c.ns_paths[i] = c.spec->ns[i].path;
        c.ns_new[i] = c.spec->ns[i].enabled && !c.spec->ns[i].path;
    }
    if (rc == 0 && (c.fifo_fd = open(c.fifo_path, O_RDWR | O_CLOEXEC)) < 0)
        rc = ag_err_set(err, -errno, "open exec fifo: %s", strerror(errno));
    if (rc == 0)
        rc = rt__spawn(&c, &c.cg, init_entry, false, &pid, err);
    if (c.fifo_fd >= 0)
        close(c.fifo_fd);
    if (rc == 0) {
        struct rt_state st = {.pid = pid, .created_ns = ag_now_ns()};
        snprintf(st.id, sizeof(st.id), "%s", id);
        snprintf(st.bundle, sizeof(st.bundle), "%s", c.spec->bundle);
        snprintf(st.cgroup, sizeof(st.cgroup), "%s", c.cg.path);
        if (rt__proc_start_time(pid, &st.start_time) < 0 || rt__state_write(c.dir, &st, err) < 0) {
            rc = err->code ? err->code : ag_err_set(err, -ESRCH, "container init died");
            kill(pid, SIGKILL);
            while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
                ;
        }
    }
    if (rc < 0) {
        if (c.cg_made) {
            (void)c.cg.ops->kill_all(&c.cg, SIGKILL);
            (void)c.cg.ops->remove(&c.cg);
        }
        if (c.dir_made)
            remove_state_dir(c.dir);
        rt_spec_free(c.spec);
        return ag_err_wrap(err, "create %s", id);
    }
    rt_spec_free(c.spec);
    *pid_out = pid;
    return 0;
}

void rt__state_dir_remove(const char *dir) { remove_state_dir(dir); }
