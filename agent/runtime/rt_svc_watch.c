/* agent/runtime: noticing container exits.  Each running container's
 * monitor is watched through a pidfd in a uv_poll handle: the fd becomes
 * readable when the monitor process ends, which it does right after writing
 * the exit file.  Then a worker reads the exit file and the termination
 * message, and the loop marks the record EXITED and wakes the waiters
 * (StopContainer, RemoveContainer, StopPodSandbox).
 *
 * Invariant: no timer or polling loop while idle; a RUNNING record either
 * has a watch or has exit processing in flight.
 */
#include "rt_svc_int.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/syscall.h>

#include "rt_monitor.h"

#define TERM_PATH_ANNOTATION "io.kubernetes.container.terminationMessagePath"
#define TERM_PATH_DEFAULT "/dev/termination-log"

static void on_poll_closed(uv_handle_t *h)
{
    struct svc_obj *o = h->data;

    free(h);
    if (o != NULL) {
        o->poll = NULL;
        svc__obj_idle(o);
    }
}

static void watch_stop(struct svc_obj *o)
{
    if (o->poll != NULL) {
        uv_poll_stop(o->poll);
        /* exit_reading or the poll keeps o alive until the close callback. */
        uv_close((uv_handle_t *)o->poll, on_poll_closed);
    }
    if (o->pidfd >= 0) {
        close(o->pidfd);
        o->pidfd = -1;
    }
}

static void on_monitor_exit(uv_poll_t *p, int status, int events)
{
    struct svc_obj *o = p->data;
    char id[ST_ID_HEX_LEN + 1];

    snprintf(id, sizeof(id), "%s", o->id);
    struct rt_svc *svc = o->svc;
    o->exit_reading = true; /* keep o while the poll closes */
    watch_stop(o);
    o->exit_reading = false;
    svc__exit_check(svc, id);
}

void svc__watch(struct rt_svc *svc, const char *id, int monitor_pid)
{
    struct svc_obj *o = svc__obj(svc, ST_KIND_CONTAINER, id);
    int fd = monitor_pid > 0 ? (int)syscall(SYS_pidfd_open, monitor_pid, 0) : -1;

    if (o == NULL || fd < 0) {
        if (fd >= 0)
            close(fd);
        ag_log(AG_DEBUG, "watch ctr=%.12s monitor_pid=%d gone: checking exit", id, monitor_pid);
        svc__exit_check(svc, id);
        return;
    }
    if (o->poll != NULL) {
        close(fd);
        return;
    }
    o->poll = calloc(1, sizeof(*o->poll));
    if (o->poll == NULL || uv_poll_init(svc->loop, o->poll, fd) < 0) {
        free(o->poll);
        o->poll = NULL;
        close(fd);
        ag_log(AG_ERROR, "watch ctr=%.12s: cannot poll the monitor; exits will be missed", id);
        return;
    }
    o->poll->data = o;
    o->pidfd = fd;
    if (uv_poll_start(o->poll, UV_READABLE, on_monitor_exit) < 0) {
        watch_stop(o);
        ag_log(AG_ERROR, "watch ctr=%.12s: uv_poll_start failed", id);
        return;
    }
    /* Watches never keep the daemon alive: containers outlive it. */
    uv_unref((uv_handle_t *)o->poll);
}

/* ---- exit processing ------------------------------------------------------------- */

struct exit_job {
    struct rt_svc *svc;
    char id[ST_ID_HEX_LEN + 1];
    char exit_file[SVC_PATH];
    char socket[SVC_PATH];
    char term_path[SVC_PATH]; /* host file of the termination-message mount, or "" */
    /* results */
    int rc; /* 0 exit read; 1 monitor still alive; -ENOENT lost */
    struct rt_exit_status es;
    int alive_monitor_pid;
    char message[SVC_TERM_MSG_MAX + 1];
};

static const char *annotation(const runtime_v1_ContainerConfig *c, const char *key)
{
    for (pb_size_t i = 0; c != NULL && i < c->annotations_count; i++)
        if (c->annotations[i].key && strcmp(c->annotations[i].key, key) == 0)
            return c->annotations[i].value;
    return NULL;
}

static void term_host_path(const runtime_v1_ContainerConfig *c, char *out)
{
    const char *want = annotation(c, TERM_PATH_ANNOTATION);

    out[0] = '\0';
    if (want == NULL || want[0] == '\0')
        want = TERM_PATH_DEFAULT;
    for (pb_size_t i = 0; c != NULL && i < c->mounts_count; i++) {
        const runtime_v1_Mount *m = &c->mounts[i];
        if (m->container_path && m->host_path && strcmp(m->container_path, want) == 0) {
            snprintf(out, SVC_PATH, "%s", m->host_path);
            return;
        }
    }
}

static void read_term_message(struct exit_job *j)
{
    if (j->term_path[0] == '\0')
        return;
    int fd = open(j->term_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
    if (fd < 0)
        return;
    ssize_t n = read(fd, j->message, SVC_TERM_MSG_MAX);
    close(fd);
    j->message[n > 0 ? n : 0] = '\0';
}

static void exit_work(void *ctx)
{
    struct exit_job *j = ctx;
    struct ag_err err;
    struct rt_mon_status st;

    ag_err_init(&err);
    j->rc = rt_monitor_read_exit(j->exit_file, &j->es, &err);
    if (j->rc == -ENOENT && j->socket[0] != '\0' &&
        rt_monitor_status(j->socket, &st, SVC_MON_TIMEOUT_MS, &err) == 0 &&
        st.state != RT_MON_EXITED_STATE) {
        j->rc = 1;
        j->alive_monitor_pid = st.monitor_pid;
        return;
    }
    if (j->rc == 0)
        read_term_message(j);
}

static void notify(struct svc_obj *o, int status)
{
    while (o->waiters != NULL) {
        struct svc_waiter *w = o->waiters;
        o->waiters = w->next;
        w->cb(w->arg, status);
        free(w);
    }
}

static void exit_record(struct rt_svc *svc, struct exit_job *j)
{
    picocri_store_ContainerRecord rec = {0};
    struct ag_err err;
    const struct rt_mon_status *s = &j->es.st;

    if (svc__ctr_copy(svc, j->id, &rec) < 0)
        return;
    free(rec.reason);
    free(rec.message);
    rec.reason = rec.message = NULL;
    if (j->rc == 0) {
        rec.state = picocri_store_ContainerState_CONTAINER_STATE_EXITED;
        rec.exit_code = s->exit_code;
        rec.finished_at_ns = s->finished_at > 0 ? s->finished_at : ag_now_ns();
        if (rec.started_at_ns == 0 && s->started_at > 0)
            rec.started_at_ns = s->started_at;
        rec.reason = strdup(s->oom_killed       ? "OOMKilled"
                            : s->exit_code == 0 ? "Completed"
                                                : "Error");
        if (j->es.error[0] != '\0')
            rec.message = strdup(j->es.error);
        else if (j->message[0] != '\0')
            rec.message = strdup(j->message);
    } else {
        /* Monitor gone without an exit file (killed, or a reboot). */
        rec.state = picocri_store_ContainerState_CONTAINER_STATE_EXITED;
        rec.exit_code = 255;
        rec.finished_at_ns = ag_now_ns();
        rec.reason = strdup("Unknown");
        rec.message = strdup("the container's monitor is gone; exit status unknown");
    }
    rec.pid = 0;
    ag_err_init(&err);
    if (svc__ctr_put(svc, &rec, &err) < 0)
        ag_log(AG_ERROR, "ctr=%.12s exit record: %s", j->id, err.msg);
    ag_log(AG_INFO, "container exited ctr=%.12s exit_code=%d oom=%d", j->id,
           j->rc == 0 ? s->exit_code : 255, j->rc == 0 && s->oom_killed);
}

static void exit_after(void *ctx, int status)
{
    struct exit_job *j = ctx;
    struct rt_svc *svc = j->svc;
    struct svc_obj *o = svc__obj(svc, ST_KIND_CONTAINER, j->id);

    if (o != NULL)
        o->exit_reading = false;
    if (j->rc == 1) {
        /* The monitor still runs (a forced check): watch it again. */
        int pid = j->alive_monitor_pid;
        char id[ST_ID_HEX_LEN + 1];
        snprintf(id, sizeof(id), "%s", j->id);
        free(j);
        if (pid > 0)
            svc__watch(svc, id, pid);
        return;
    }
    exit_record(svc, j);
    free(j);
    if (o != NULL) {
        /* A waiter may finish an operation, which would free an idle o. */
        o->exit_reading = true;
        notify(o, 0);
        o->exit_reading = false;
        svc__obj_idle(o);
    }
}

void svc__exit_check(struct rt_svc *svc, const char *id)
{
    const picocri_store_ContainerRecord *rec = svc__ctr(svc, id, NULL);
    struct svc_obj *o = svc__obj(svc, ST_KIND_CONTAINER, id);
    struct exit_job *j;

    if (rec == NULL || o == NULL || o->exit_reading)
        return;
    if ((j = calloc(1, sizeof(*j))) == NULL)
        return;
    j->svc = svc;
    snprintf(j->id, sizeof(j->id), "%s", rec->id);
    snprintf(j->exit_file, sizeof(j->exit_file), "%s", rec->exit_file ? rec->exit_file : "");
    snprintf(j->socket, sizeof(j->socket), "%s", rec->monitor_socket ? rec->monitor_socket : "");
    term_host_path(rec->config, j->term_path);
    o->exit_reading = true;
    if (svc__work(svc, j, exit_work, exit_after) < 0) {
        o->exit_reading = false;
        free(j);
        ag_log(AG_ERROR, "ctr=%.12s: cannot queue exit processing", id);
    }
}

void svc__wait_exit(struct rt_svc *svc, const char *id, svc_exit_cb cb, void *arg)
{
    const picocri_store_ContainerRecord *rec = svc__ctr(svc, id, NULL);
    struct svc_obj *o;
    struct svc_waiter *w;

    if (rec == NULL || rec->state != picocri_store_ContainerState_CONTAINER_STATE_RUNNING ||
        (o = svc__obj(svc, ST_KIND_CONTAINER, id)) == NULL || (w = calloc(1, sizeof(*w))) == NULL) {
        cb(arg, 0);
        return;
    }
    w->cb = cb;
    w->arg = arg;
    w->next = o->waiters;
    o->waiters = w;
}

void svc__wait_cancel(struct rt_svc *svc, const char *id, svc_exit_cb cb, void *arg)
{
    for (struct svc_obj *o = svc->objs; o != NULL; o = o->next) {
        if (o->kind != ST_KIND_CONTAINER || strcmp(o->id, id) != 0)
            continue;
        for (struct svc_waiter **pp = &o->waiters; *pp != NULL; pp = &(*pp)->next) {
            if ((*pp)->cb == cb && (*pp)->arg == arg) {
                struct svc_waiter *w = *pp;
                *pp = w->next;
                free(w);
                return;
            }
        }
    }
}
