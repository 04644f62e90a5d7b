/* cri/: the libuv adapter of the gRPC engine.  It owns the listening unix
 * socket, the accepted connections, their write queues and deadline
 * timers, and the signal handling that drains the daemon on SIGTERM or
 * SIGINT.  All protocol work is in cri_h2.c.
 *
 * Invariants: a connection is freed only from its last close callback;
 * reading stops while more than OUT_LIMIT bytes wait to be written; a
 * connection's timer runs only while one of its streams has a deadline,
 * so an idle daemon has no timers and no wake-ups.
 */
#include "cri_internal.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <uv.h>

#define READ_BUF_SIZE (32 * 1024)
#define WRITE_CHUNK (64 * 1024)
#define OUT_LIMIT (1024 * 1024)
#define MAX_CONNS 256
#define DRAIN_MS 10000

struct server;

struct sconn {
    uv_pipe_t pipe;
    uv_timer_t timer;
    struct server *srv;
    struct cri_conn *engine;
    struct sconn *prev, *next;
    size_t out_pending;
    int handles;
    unsigned id;
    bool closing, reading, pumping, repump;
};

struct server {
    uv_loop_t *loop;
    struct cri_daemon *daemon;
    uv_pipe_t listener;
    uv_signal_t sigterm, sigint;
    uv_timer_t drain_timer;
    struct sconn *conns;
    size_t conn_count;
    unsigned next_id;
    bool draining, listening;
    uint8_t *rbuf; /* shared: reads complete one at a time on the loop */
};

struct wreq {
    uv_write_t req;
    struct sconn *conn;
    size_t len;
    uint8_t data[];
};

static void sconn_close(struct sconn *c);
static void pump(struct sconn *c);

static void maybe_finish(struct server *s)
{
    if (!s->draining || s->conn_count > 0)
        return;
    ag_log(AG_INFO, "drained, exiting");
    if (!uv_is_closing((uv_handle_t *)&s->drain_timer))
        uv_close((uv_handle_t *)&s->drain_timer, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->sigterm))
        uv_close((uv_handle_t *)&s->sigterm, NULL);
    if (!uv_is_closing((uv_handle_t *)&s->sigint))
        uv_close((uv_handle_t *)&s->sigint, NULL);
}

static void on_conn_close(uv_handle_t *h)
{
    struct sconn *c = h->data;

    if (--c->handles > 0)
        return;
    struct server *s = c->srv;
    cri_conn_free(c->engine);
    if (c->prev != NULL)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next != NULL)
        c->next->prev = c->prev;
    s->conn_count--;
    ag_log(AG_DEBUG, "cri connection closed conn=%u", c->id);
    free(c);
    maybe_finish(s);
}

static void sconn_close(struct sconn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_read_stop((uv_stream_t *)&c->pipe);
    uv_close((uv_handle_t *)&c->pipe, on_conn_close);
    uv_close((uv_handle_t *)&c->timer, on_conn_close);
}

static void on_write(uv_write_t *req, int status)
{
    struct wreq *w = ag_container_of(req, struct wreq, req);
    struct sconn *c = w->conn;

    c->out_pending -= w->len;
    free(w);
    if (status < 0) {
        sconn_close(c);
        return;
    }
    pump(c);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    struct sconn *c = h->data;

    if (c->srv->rbuf == NULL)
        c->srv->rbuf = malloc(READ_BUF_SIZE);
    *buf = uv_buf_init((char *)c->srv->rbuf, c->srv->rbuf ? READ_BUF_SIZE : 0);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    struct sconn *c = stream->data;

    if (nread < 0) {
        if (nread != UV_EOF)
            ag_log(AG_DEBUG, "cri read conn=%u: %s", c->id, uv_strerror((int)nread));
        sconn_close(c);
        return;
    }
    if (nread == 0)
        return;
    if (cri_conn_recv(c->engine, (const uint8_t *)buf->base, (size_t)nread) < 0) {
        ag_log(AG_DEBUG, "cri protocol error conn=%u, closing", c->id);
        sconn_close(c);
        return;
    }
    pump(c);
}

static void on_timer(uv_timer_t *t)
{
    struct sconn *c = t->data;

    cri_conn_expire(c->engine, cri__now_mono());
    pump(c);
}

static void rearm_timer(struct sconn *c)
{
    int64_t d = cri_conn_next_deadline(c->engine);

    if (d == 0) {
        uv_timer_stop(&c->timer);
        return;
    }
    int64_t left = d - cri__now_mono();
    uint64_t ms = left <= 0 ? 0 : (uint64_t)(left / 1000000) + 1;
    uv_timer_start(&c->timer, on_timer, ms, 0);
}

/* Moves up to WRITE_CHUNK bytes of engine output into one uv_write.
 * Returns 1 if it wrote, 0 if nothing was pending, negative if fatal. */
static int write_some(struct sconn *c)
{
    struct wreq *w = NULL;
    size_t cap = 0;
    size_t len = 0;

    while (len < WRITE_CHUNK) {
        const uint8_t *p;
        ssize_t n = cri_conn_send(c->engine, &p);
        if (n < 0) {
            free(w);
            return (int)n;
        }
        if (n == 0)
            break;
        if (len + (size_t)n > cap) {
            size_t ncap = len + (size_t)n > WRITE_CHUNK ? len + (size_t)n : WRITE_CHUNK;
            struct wreq *nw = realloc(w, sizeof(*w) + ncap);
            if (nw == NULL) {
                free(w);
                return -ENOMEM;
            }
            w = nw;
            cap = ncap;
        }
        memcpy(w->data + len, p, (size_t)n);
        len += (size_t)n;
    }
    if (len == 0)
        return 0;
    w->conn = c;
    w->len = len;
    uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)len);
    int rc = uv_write(&w->req, (uv_stream_t *)&c->pipe, &b, 1, on_write);
    if (rc < 0) {
        free(w);
        return rc;
    }
    c->out_pending += len;
    return 1;
}

static void pump(struct sconn *c)
{
    if (c->closing)
        return;
    if (c->pumping) {
        c->repump = true;
        return;
    }
    c->pumping = true;
    do {
        c->repump = false;
        while (c->out_pending < OUT_LIMIT) {
            int rc = write_some(c);
            if (rc < 0) {
                c->pumping = false;
                sconn_close(c);
                return;
            }
            if (rc == 0)
                break;
        }
    } while (c->repump);
    c->pumping = false;
    rearm_timer(c);
    if (c->out_pending >= OUT_LIMIT && c->reading) {
        uv_read_stop((uv_stream_t *)&c->pipe);
        c->reading = false;
    } else if (c->out_pending < OUT_LIMIT && !c->reading) {
        if (uv_read_start((uv_stream_t *)&c->pipe, on_alloc, on_read) == 0)
            c->reading = true;
    }
    if (!cri_conn_alive(c->engine) && c->out_pending == 0)
        sconn_close(c);
}

static void on_wake(void *user) { pump(user); }

static void on_connection(uv_stream_t *listener, int status)
{
    struct server *s = listener->data;
    struct sconn *c;

    if (status < 0) {
        ag_log(AG_WARN, "cri accept: %s", uv_strerror(status));
        return;
    }
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return; /* the pending connection stays queued until memory returns */
    c->srv = s;
    c->id = ++s->next_id;
    uv_pipe_init(s->loop, &c->pipe, 0);
    uv_timer_init(s->loop, &c->timer);
    c->pipe.data = c->timer.data = c;
    c->handles = 2;
    c->next = s->conns;
    if (s->conns != NULL)
        s->conns->prev = c;
    s->conns = c;
    s->conn_count++;
    if (uv_accept(listener, (uv_stream_t *)&c->pipe) < 0) {
        sconn_close(c);
        return;
    }
    struct cri_conn_config cfg = {
        .methods = cri_methods,
        .method_count = cri_method_count,
        .daemon = s->daemon,
        .ops = {.wake = on_wake},
        .user = c,
    };
    if (s->draining || s->conn_count > MAX_CONNS || cri_conn_new(&c->engine, &cfg) < 0) {
        ag_log(AG_WARN, "cri refusing connection conn=%u (connections=%zu)", c->id, s->conn_count);
        sconn_close(c);
        return;
    }
    ag_log(AG_DEBUG, "cri connection opened conn=%u", c->id);
    pump(c); /* sends our SETTINGS and starts reading */
}

static void on_drain_timeout(uv_timer_t *t)
{
    struct server *s = t->data;

    ag_log(AG_WARN, "drain timeout: closing %zu connections", s->conn_count);
    for (struct sconn *c = s->conns; c != NULL; c = c->next)
        sconn_close(c);
}

static void start_drain(struct server *s)
{
    s->draining = true;
    ag_log(AG_INFO, "draining connections=%zu", s->conn_count);
    if (s->listening) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        s->listening = false;
        unlink(s->daemon->cfg->socket);
    }
    for (struct sconn *c = s->conns; c != NULL; c = c->next) {
        if (c->engine != NULL && !c->closing) {
            cri_conn_shutdown(c->engine);
            pump(c);
        }
    }
    uv_timer_start(&s->drain_timer, on_drain_timeout, DRAIN_MS, 0);
    maybe_finish(s);
}

static void on_signal(uv_signal_t *h, int signum)
{
    struct server *s = h->data;

    if (s->draining) {
        ag_log(AG_WARN, "second signal %d: closing all connections", signum);
        on_drain_timeout(&s->drain_timer);
        return;
    }
    ag_log(AG_INFO, "signal %d received", signum);
    start_drain(s);
}

/* Refuses to take over a socket another daemon still serves; removes a
 * stale socket file left by a crash. */
static int remove_stale(const char *path, struct ag_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    struct stat st;

    if (lstat(path, &st) < 0)
        return errno == ENOENT ? 0 : ag_err_set(err, -errno, "stat %s: %s", path, strerror(errno));
    if (!S_ISSOCK(st.st_mode))
        return ag_err_set(err, -EEXIST, "%s exists and is not a socket", path);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd >= 0) {
        int rc = connect(fd, (struct sockaddr *)&sa, sizeof(sa));
        close(fd);
        if (rc == 0)
            return ag_err_set(err, -EADDRINUSE, "%s: another daemon is serving it", path);
    }
    if (unlink(path) < 0 && errno != ENOENT)
        return ag_err_set(err, -errno, "unlink %s: %s", path, strerror(errno));
    return 0;
}

static int listen_socket(struct server *s, struct ag_err *err)
{
    const char *path = s->daemon->cfg->socket;
    char dir[sizeof(((struct sockaddr_un *)0)->sun_path)];
    int rc;

    if (strlen(path) >= sizeof(dir))
        return ag_err_set(err, -ENAMETOOLONG, "socket path %s is too long", path);
    snprintf(dir, sizeof(dir), "%s", path);
    char *slash = strrchr(dir, '/');
    if (slash != NULL && slash != dir) {
        *slash = '\0';
        rc = ag_mkdir_p(dir, 0755);
        if (rc < 0)
            return ag_err_set(err, rc, "mkdir %s: %s", dir, strerror(-rc));
    }
    rc = remove_stale(path, err);
    if (rc < 0)
        return rc;
    uv_pipe_init(s->loop, &s->listener, 0);
    s->listener.data = s;
    mode_t old = umask(0117);
    rc = uv_pipe_bind(&s->listener, path);
    umask(old);
    if (rc == 0 && chmod(path, 0660) < 0)
        rc = -errno;
    if (rc == 0)
        rc = uv_listen((uv_stream_t *)&s->listener, 128, on_connection);
    if (rc < 0) {
        uv_close((uv_handle_t *)&s->listener, NULL);
        return ag_err_set(err, rc, "listen %s: %s", path, strerror(-rc));
    }
    s->listening = true;
    return 0;
}

int cri_serve(struct cri_daemon *d, struct ag_err *err)
{
    struct server s = {.loop = d->loop, .daemon = d};
    int rc;

    signal(SIGPIPE, SIG_IGN);
    uv_timer_init(s.loop, &s.drain_timer);
    uv_signal_init(s.loop, &s.sigterm);
    uv_signal_init(s.loop, &s.sigint);
    s.drain_timer.data = s.sigterm.data = s.sigint.data = &s;
    rc = listen_socket(&s, err);
    if (rc < 0) {
        uv_close((uv_handle_t *)&s.drain_timer, NULL);
        uv_close((uv_handle_t *)&s.sigterm, NULL);
        uv_close((uv_handle_t *)&s.sigint, NULL);
        uv_run(s.loop, UV_RUN_DEFAULT);
        return rc;
    }
    uv_signal_start(&s.sigterm, on_signal, SIGTERM);
    uv_signal_start(&s.sigint, on_signal, SIGINT);
    ag_log(AG_INFO, "serving socket=%s version=%s cgroup-driver=%s", d->cfg->socket,
           PICOCRI_VERSION, d->cgroup_driver);
    uv_run(s.loop, UV_RUN_DEFAULT);
    free(s.rbuf);
    return 0;
}
