/* agent/runtime: start, state, kill, delete, pids, stats and update of an
 * existing container.
 *
 * Each call loads the record under state_root/<id>, derives the status
 * from the process table (rt_state.c) and acts on the init pid or the
 * cgroup.  Invariant: operations are refused in the wrong state with
 * -EINVAL (the spec's "error, no effect"); delete removes only what create
 * made (the leaf cgroup and the state directory).
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>

#include "rt_container.h"

int rt__load(const char *state_root, const char *id, struct rt_loaded *l, struct ag_err *err)
{
    char cfg[4200];
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    struct ag_err e2;
    memset(l, 0, sizeof(*l));
    if (rt__id_check(id, err) < 0)
        return err->code;
    if (rt__state_dir(state_root, id, l->dir, sizeof(l->dir)) < 0)
        return ag_err_set(err, -ENAMETOOLONG, "state path too long");
    if (rt__state_read(l->dir, &l->st, err) < 0)
        return ag_err_wrap(err, "container %s", id);
    l->status = rt__state_status(l->dir, &l->st);
    snprintf(cfg, sizeof(cfg), "%s/config.json", l->dir);
    if (ag_file_read(cfg, RT_CONFIG_MAX, &buf, &len) == 0 &&
        rt_spec_parse(buf, len, l->st.bundle, false, &l->spec, &e2) < 0)
        l->spec = NULL;
    if (l->st.cgroup[0] && rt__cgroup_init(&l->cg, l->st.cgroup, &e2) == 0)
        l->has_cg = true;
    return 0;
}

void rt__loaded_fini(struct rt_loaded *l)
{
    rt_spec_free(l->spec);
    l->spec = NULL;
}

static char *state_json(struct rt_loaded *l, const char *status)
{
    return rt__state_json(&l->st, status, l->spec ? l->spec->annotations : NULL,
                          l->spec ? l->spec->annotations_count : 0);
}

int rt_container_start(const char *state_root, const char *id, struct ag_err *err)
{
    struct rt_loaded l;
    char fifo[4200];
    int rc = rt__load(state_root, id, &l, err);
    if (rc < 0)
        return rc;
    if (strcmp(l.status, RT_STATUS_CREATED)) {
        rc = ag_err_set(err, -EINVAL, "start %s: container is %s, not created", id, l.status);
        goto out;
    }
    snprintf(fifo, sizeof(fifo), "%s/exec.fifo", l.dir);
    /* Non-blocking: a missing reader means the init is gone. */
    int fd = open(fifo, O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        rc = ag_err_set(err, errno == ENXIO ? -ESRCH : -errno, "start %s: %s", id,
                        errno == ENXIO ? "container init is not waiting" : strerror(errno));
        goto out;
    }
    rc = rt__write_all(fd, "0", 1);
    close(fd);
    if (rc < 0) {
        ag_err_set(err, rc, "start %s: write exec fifo: %s", id, strerror(-rc));
        goto out;
    }
    (void)unlink(fifo);
    l.st.started = true;
    if (rt__state_write(l.dir, &l.st, err) < 0)
        ag_log(AG_WARN, "start ctr=%s: %s", id, err->msg);
    ag_err_init(err);
    if (l.spec && l.spec->hooks_count[RT_HOOK_POSTSTART]) {
        _cleanup_free_ char *js = state_json(&l, RT_STATUS_RUNNING);
        if (!js)
            rc = ag_err_set(err, -ENOMEM, "out of memory");
        else if ((rc = rt__hooks_run(l.spec, RT_HOOK_POSTSTART, js, false, err)) < 0)
            ag_err_wrap(err, "start %s", id);
    }
out:
    rt__loaded_fini(&l);
    return rc;
}

int rt_container_status(const char *state_root, const char *id, const char **status_out,
                        pid_t *pid_out, struct ag_err *err)
{
    struct rt_loaded l;
    int rc = rt__load(state_root, id, &l, err);
    if (rc < 0)
        return rc;
    *status_out = l.status;
    if (pid_out)
        *pid_out = l.st.pid;
    rt__loaded_fini(&l);
    return 0;
}

int rt_container_state(const char *state_root, const char *id, char **json_out,
                       struct ag_err *err)
{
    struct rt_loaded l;
    int rc = rt__load(state_root, id, &l, err);
    if (rc < 0)
        return rc;
    *json_out = state_json(&l, l.status);
    rt__loaded_fini(&l);
    return *json_out ? 0 : ag_err_set(err, -ENOMEM, "out of memory");
}

int rt_container_kill(const char *state_root, const char *id, int sig, bool all,
                      struct ag_err *err)
{
    struct rt_loaded l;
    int rc = rt__load(state_root, id, &l, err);
    if (rc < 0)
        return rc;
    if (!strcmp(l.status, RT_STATUS_STOPPED) && !all)
        rc = ag_err_set(err, -EINVAL, "kill %s: container is stopped", id);
    else if (all && l.has_cg)
        rc = l.cg.ops->kill_all(&l.cg, sig);
    else if (kill(l.st.pid, sig) < 0)
        rc = -errno;
    if (rc < 0 && !err->code)
        ag_err_set(err, rc, "kill %s: %s", id, strerror(-rc));
    rt__loaded_fini(&l);
    return rc;
}

/* Waits (bounded) until the init pid is gone. */
static void wait_gone(struct rt_loaded *l)
{
    for (int i = 0; i < 2000 && strcmp(rt__state_status(l->dir, &l->st), RT_STATUS_STOPPED);
         i++) {
        /* Our own child (run, monitor) would stay a zombie: reap it. */
        (void)waitpid(l->st.pid, NULL, WNOHANG);
        nanosleep(&(struct timespec){0, 1000000}, NULL);
    }
}

int rt_container_delete(const char *state_root, const char *id, bool force, struct ag_err *err)
{
    struct rt_loaded l;
    int rc = rt__load(state_root, id, &l, err);
    if (rc == -EAGAIN && force) {
        /* A create that died half-way: clean up what it left. */
        char dir[4096];
        ag_err_init(err);
        if (rt__state_dir(state_root, id, dir, sizeof(dir)) == 0)
            rt__state_dir_remove(dir);
        return 0;
    }
    if (rc < 0)
        return rc;
    if (strcmp(l.status, RT_STATUS_STOPPED)) {
        if (!force) {
            rc = ag_err_set(err, -EINVAL, "delete %s: container is %s (use force)", id,
                            l.status);
            goto out;
        }
        if (l.has_cg)
            (void)l.cg.ops->kill_all(&l.cg, SIGKILL);
        kill(l.st.pid, SIGKILL);
        wait_gone(&l);
    }
    if (l.has_cg) {
        /* Processes that outlived the init (no PID namespace) go with it. */
        (void)l.cg.ops->kill_all(&l.cg, SIGKILL);
        if ((rc = l.cg.ops->remove(&l.cg)) < 0) {
            ag_err_set(err, rc, "delete %s: remove cgroup %s: %s", id, l.cg.path,
                       strerror(-rc));
            goto out;
        }
    }
    rt__state_dir_remove(l.dir);
    if (l.spec && l.spec->hooks_count[RT_HOOK_POSTSTOP]) {
        _cleanup_free_ char *js = state_json(&l, RT_STATUS_STOPPED);
        if (js)
            if (rt__hooks_run(l.spec, RT_HOOK_POSTSTOP, js, true, err) < 0)
                ag_log(AG_WARN, "delete ctr=%s: %s", id, err->msg);
    }
    rc = 0;
out:
    rt__loaded_fini(&l);
    return rc;
}

int rt_container_pids(const char *state_root, const char *id, pid_t **pids_out,
                      size_t *count_out, struct ag_err *err)
{
    struct rt_loaded l;
    int rc = rt__load(state_root, id, &l, err);
    if (rc < 0)
        return rc;
    if (!l.has_cg)
        rc = ag_err_set(err, -ENOENT, "container %s: no cgroup", id);
    else if ((rc = l.cg.ops->pids(&l.cg, pids_out, count_out)) < 0)
        ag_err_set(err, rc, "container %s: read cgroup procs: %s", id, strerror(-rc));
    rt__loaded_fini(&l);
    return rc;
}

int rt_container_stats(const char *state_root, const char *id, struct rt_cgroup_stats *out,
                       struct ag_err *err)
{
    struct rt_loaded l;
    int rc = rt__load(state_root, id, &l, err);
    if (rc < 0)
        return rc;
    if (!l.has_cg)
        rc = ag_err_set(err, -ENOENT, "container %s: no cgroup", id);
    else
        rc = l.cg.ops->stats(&l.cg, out);
    rt__loaded_fini(&l);
    return rc;
}

int rt_container_update(const char *state_root, const char *id, const struct rt_resources *res,
                        struct ag_err *err)
{
    struct rt_loaded l;
    int rc = rt__load(state_root, id, &l, err);
    if (rc < 0)
        return rc;
    if (!l.has_cg)
        rc = ag_err_set(err, -ENOENT, "container %s: no cgroup", id);
    else if ((rc = l.cg.ops->apply(&l.cg, res, err)) < 0)
        ag_err_wrap(err, "update %s", id);
    rt__loaded_fini(&l);
    return rc;
}
