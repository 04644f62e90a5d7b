/* agent/stream: port-forward sessions.  Over SPDY the client opens a pair
 * of streams (streamType error, then data) per forwarded TCP connection,
 * both with the same requestID and a port header; over WebSocket each port
 * of the URL's port parameters gets data channel 2i and error channel 2i+1,
 * each starting with the port (uint16 little-endian).  For each pair the
 * server dials localhost:port inside the pod's network namespace and copies
 * bytes both ways; a dial error is written on the error stream.
 *
 * The dial runs in a thread-pool worker that setns()es into the pod's
 * network namespace, connects, and setns()es back to the thread's own
 * namespace (saved first).  Chosen over a forked helper: no process per
 * connection, no fd passing, and a failure to return to the original
 * namespace is impossible in practice (we hold its fd); should it happen
 * anyway the daemon aborts rather than run later work in a pod's
 * namespace.
 *
 * Invariants: a request is freed only when its dial is done and its socket
 * closed; bytes toward the target are bounded by STRM_IN_HIGH (socket reads
 * stop above it); nothing touches the connection after strm__pf_free. */
#include "strm_int.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#define DIAL_TIMEOUT_MS 10000
#define PF_MAX_REQUESTS 1024

struct pf_req {
    struct strm_pf *pf; /* NULL once the session is gone */
    struct pf_req *next;
    char request_id[32];
    uint16_t port;
    uint32_t err_id, data_id;
    bool have_err, have_data, dialing, open, released, done;
    bool client_fin, target_eof, blocked;
    uv_tcp_t sock;
    bool sock_open;    /* the handle exists (until its close callback) */
    bool sock_closing;
    uv_shutdown_t shut;
    size_t pending;
    struct ag_buf early; /* client bytes before the dial completed */
    uv_work_t w;
    int dial_fd;
    char dial_msg[512];
};

struct strm_pf {
    struct strm_conn *c;
    char netns[512];
    struct pf_req *reqs;
    size_t count;
    bool paused;
};

struct pwr {
    uv_write_t w;
    struct pf_req *r;
    size_t len;
    uint8_t data[];
};

int strm__port_parse(const char *s, uint16_t *out)
{
    unsigned long v = 0;

    if (s == NULL || *s == 0 || strlen(s) > 5)
        return -EINVAL;
    for (const char *p = s; *p; p++) {
        if (*p < '0' || *p > '9')
            return -EINVAL;
        v = v * 10 + (unsigned long)(*p - '0');
    }
    if (v == 0 || v > 65535)
        return -EINVAL;
    *out = (uint16_t)v;
    return 0;
}

/* ---- dialing (thread pool) ---------------------------------------------------------- */

static int connect_to(int family, uint16_t port)
{
    struct sockaddr_storage ss = {0};
    socklen_t len;

    if (family == AF_INET) {
        struct sockaddr_in *a = (struct sockaddr_in *)&ss;
        a->sin_family = AF_INET;
        a->sin_port = htons(port);
        a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        len = sizeof(*a);
    } else {
        struct sockaddr_in6 *a = (struct sockaddr_in6 *)&ss;
        a->sin6_family = AF_INET6;
        a->sin6_port = htons(port);
        a->sin6_addr = in6addr_loopback;
        len = sizeof(*a);
    }
    int fd = socket(family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return -errno;
    if (connect(fd, (struct sockaddr *)&ss, len) < 0 && errno != EINPROGRESS) {
        int e = -errno;
        close(fd);
        return e;
    }
    struct pollfd p = {fd, POLLOUT, 0};
    int soerr = 0;
    socklen_t sl = sizeof(soerr);
    int n = poll(&p, 1, DIAL_TIMEOUT_MS);
    if (n <= 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &sl) < 0 || soerr != 0) {
        close(fd);
        return n == 0 ? -ETIMEDOUT : soerr ? -soerr : -EIO;
    }
    return fd;
}

static void dial_work(uv_work_t *w)
{
    struct pf_req *r = ag_container_of(w, struct pf_req, w);
    const char *netns = r->dial_msg; /* the path travels in dial_msg */
    int self = -1, target = -1, rc;
    char path[512];

    snprintf(path, sizeof(path), "%s", netns);
    r->dial_msg[0] = 0;
    if (path[0]) {
        self = open("/proc/thread-self/ns/net", O_RDONLY | O_CLOEXEC);
        target = open(path, O_RDONLY | O_CLOEXEC);
        if (self < 0 || target < 0 || setns(target, CLONE_NEWNET) < 0) {
            rc = -errno;
            snprintf(r->dial_msg, sizeof(r->dial_msg), "enter network namespace %.200s: %s", path,
                     strerror(-rc));
            r->dial_fd = rc;
            goto out;
        }
    }
    rc = connect_to(AF_INET, r->port);
    if (rc == -ECONNREFUSED || rc == -ENETUNREACH || rc == -EADDRNOTAVAIL) {
        int rc6 = connect_to(AF_INET6, r->port);
        if (rc6 >= 0)
            rc = rc6;
    }
    r->dial_fd = rc;
    if (rc < 0)
        snprintf(r->dial_msg, sizeof(r->dial_msg), "dial tcp4 127.0.0.1:%u: connect: %s",
                 (unsigned)r->port, strerror(-rc));
    if (path[0] && setns(self, CLONE_NEWNET) < 0)
        ag_assert(!"cannot return to the daemon's network namespace");
out:
    if (self >= 0)
        close(self);
    if (target >= 0)
        close(target);
}

/* ---- requests -------------------------------------------------------------------------- */

static void req_maybe_free(struct pf_req *r)
{
    if (!r->released || r->dialing || r->sock_open)
        return;
    ag_buf_fini(&r->early);
    free(r);
}

static void on_sock_closed(uv_handle_t *h)
{
    struct pf_req *r = h->data;

    r->sock_open = false;
    req_maybe_free(r);
}

static void req_close_sock(struct pf_req *r)
{
    if (r->sock_open && !r->sock_closing) {
        r->sock_closing = true;
        uv_close((uv_handle_t *)&r->sock, on_sock_closed);
    }
}

static void unblock(struct pf_req *r)
{
    if (r->blocked) {
        r->blocked = false;
        if (r->pf)
            strm__block_input(r->pf->c, false);
    }
}

static bool all_done(const struct strm_pf *pf)
{
    for (const struct pf_req *r = pf->reqs; r; r = r->next)
        if (!r->done)
            return false;
    return true;
}

/* Ends a forwarded connection: error text (if any) on the error stream,
 * both streams half-closed, the socket closed. */
static void req_end(struct pf_req *r, const char *error)
{
    struct strm_pf *pf = r->pf;

    if (r->done)
        return;
    r->done = true;
    unblock(r);
    req_close_sock(r);
    if (pf == NULL)
        return;
    struct strm_conn *c = pf->c;
    if (r->have_err && (error || c->state == STRM_C_SPDY))
        (void)strm__send(c, r->err_id, error ? error : "", error ? strlen(error) : 0, true);
    if (r->have_data && !r->target_eof)
        (void)strm__send(c, r->data_id, NULL, 0, true);
    if (c->state == STRM_C_WS && all_done(pf))
        strm__finish(c);
}

static void maybe_complete(struct pf_req *r)
{
    if (r->client_fin && r->target_eof && r->pending == 0)
        req_end(r, NULL);
}

static void on_sock_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    static char slab[65536];

    buf->base = slab;
    buf->len = sizeof(slab);
}

static void on_sock_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct pf_req *r = s->data;

    if (n == 0 || r->pf == NULL)
        return;
    if (n < 0) {
        uv_read_stop(s);
        if (n != UV_EOF) {
            req_end(r, NULL);
            return;
        }
        r->target_eof = true;
        if (r->pf->c->state == STRM_C_SPDY)
            (void)strm__send(r->pf->c, r->data_id, NULL, 0, true);
        maybe_complete(r);
        return;
    }
    (void)strm__send(r->pf->c, r->data_id, buf->base, (size_t)n, false);
}

static void set_sock_reading(struct pf_req *r)
{
    if (!r->open || !r->sock_open || r->sock_closing || r->target_eof)
        return;
    if (r->pf && r->pf->paused)
        uv_read_stop((uv_stream_t *)&r->sock);
    else
        uv_read_start((uv_stream_t *)&r->sock, on_sock_alloc, on_sock_read);
}

static void on_shutdown(uv_shutdown_t *s, int status) { (void)s; }

static void on_sock_write(uv_write_t *w, int status)
{
    struct pwr *x = ag_container_of(w, struct pwr, w);
    struct pf_req *r = x->r;

    r->pending -= x->len;
    free(x);
    if (status < 0) {
        if (status != UV_ECANCELED)
            req_end(r, NULL);
        return;
    }
    if (r->pending < STRM_IN_HIGH / 4)
        unblock(r);
    maybe_complete(r);
}

static int to_target(struct pf_req *r, const uint8_t *data, size_t len)
{
    struct pwr *x = malloc(sizeof(*x) + len);

    if (x == NULL)
        return -ENOMEM;
    x->r = r;
    x->len = len;
    memcpy(x->data, data, len);
    uv_buf_t b = uv_buf_init((char *)x->data, (unsigned)len);
    int rc = uv_write(&x->w, (uv_stream_t *)&r->sock, &b, 1, on_sock_write);
    if (rc < 0) {
        free(x);
        return rc;
    }
    r->pending += len;
    if (r->pending > STRM_IN_HIGH && !r->blocked && r->pf) {
        r->blocked = true;
        strm__block_input(r->pf->c, true);
    }
    return 0;
}

static void client_fin(struct pf_req *r)
{
    r->client_fin = true;
    if (r->open && r->sock_open && !r->sock_closing)
        uv_shutdown(&r->shut, (uv_stream_t *)&r->sock, on_shutdown);
    maybe_complete(r);
}

static void after_dial(uv_work_t *w, int status)
{
    struct pf_req *r = ag_container_of(w, struct pf_req, w);
    char msg[400];

    r->dialing = false;
    if (r->released || r->done) {
        if (r->dial_fd >= 0)
            close(r->dial_fd);
        req_maybe_free(r);
        return;
    }
    if (status < 0 || r->dial_fd < 0) {
        snprintf(msg, sizeof(msg), "error forwarding port %u to pod: %.300s", (unsigned)r->port,
                 status < 0 ? "cancelled" : r->dial_msg);
        req_end(r, msg);
        return;
    }
    uv_tcp_init(r->pf->c->srv->loop, &r->sock);
    r->sock.data = r;
    r->sock_open = true;
    if (uv_tcp_open(&r->sock, r->dial_fd) < 0) {
        close(r->dial_fd);
        req_end(r, "error forwarding port: cannot use the socket");
        return;
    }
    r->open = true;
    set_sock_reading(r);
    if (r->early.len > 0) {
        (void)to_target(r, r->early.data, r->early.len);
        ag_buf_fini(&r->early);
    }
    if (r->client_fin)
        client_fin(r);
}

static void dial(struct pf_req *r)
{
    snprintf(r->dial_msg, sizeof(r->dial_msg), "%s", r->pf->netns);
    r->dial_fd = -1;
    r->dialing = true;
    if (uv_queue_work(r->pf->c->srv->loop, &r->w, dial_work, after_dial) < 0) {
        r->dialing = false;
        req_end(r, "error forwarding port: cannot queue the dial");
    }
}

static struct pf_req *req_new(struct strm_pf *pf)
{
    if (pf->count >= PF_MAX_REQUESTS)
        return NULL;
    struct pf_req *r = calloc(1, sizeof(*r));
    if (r == NULL)
        return NULL;
    r->pf = pf;
    r->dial_fd = -1;
    ag_buf_init(&r->early);
    r->next = pf->reqs;
    pf->reqs = r;
    pf->count++;
    return r;
}

/* ---- session ----------------------------------------------------------------------------- */

int strm__pf_new(struct strm_conn *c, struct strm_pf **out, struct ag_err *err)
{
    const struct strm_backend_ops *ops = c->srv->ops;
    struct strm_pf *pf = calloc(1, sizeof(*pf));

    if (pf == NULL)
        return ag_err_set(err, -ENOMEM, "port forward: out of memory");
    pf->c = c;
    int rc = ops->portforward_netns
                 ? ops->portforward_netns(c->srv->ctx, c->request, pf->netns, sizeof(pf->netns),
                                          err)
                 : ag_err_set(err, -ENOTSUP, "port forward is not supported by this runtime");
    if (rc < 0) {
        free(pf);
        return rc;
    }
    *out = pf;
    strm__started(c);
    return 0;
}

void strm__pf_free(struct strm_pf *pf)
{
    if (pf == NULL)
        return;
    for (struct pf_req *r = pf->reqs, *next; r; r = next) {
        next = r->next;
        r->pf = NULL;
        r->blocked = false;
        r->released = true;
        req_close_sock(r);
        req_maybe_free(r);
    }
    free(pf);
}

void strm__pf_pause(struct strm_pf *pf, bool paused)
{
    pf->paused = paused;
    for (struct pf_req *r = pf->reqs; r; r = r->next)
        set_sock_reading(r);
}

static struct pf_req *find_by_id(struct strm_pf *pf, uint32_t id, bool *is_data)
{
    for (struct pf_req *r = pf->reqs; r; r = r->next) {
        if (r->have_data && r->data_id == id) {
            *is_data = true;
            return r;
        }
        if (r->have_err && r->err_id == id) {
            *is_data = false;
            return r;
        }
    }
    return NULL;
}

int strm__pf_stream(struct strm_pf *pf, uint32_t id, const char *type, const char *port,
                    const char *request_id)
{
    bool data = strcmp(type, "data") == 0;
    uint16_t p;
    struct pf_req *r = NULL;

    if ((!data && strcmp(type, "error") != 0) || strm__port_parse(port, &p) < 0 ||
        request_id == NULL || strlen(request_id) >= sizeof(r->request_id))
        return strm__reset(pf->c, id);
    for (r = pf->reqs; r; r = r->next)
        if (strcmp(r->request_id, request_id) == 0 && !r->done)
            break;
    if (r == NULL) {
        r = req_new(pf);
        if (r == NULL)
            return strm__reset(pf->c, id);
        snprintf(r->request_id, sizeof(r->request_id), "%s", request_id);
        r->port = p;
    }
    if ((data && r->have_data) || (!data && r->have_err) || r->port != p)
        return strm__reset(pf->c, id);
    if (data) {
        r->have_data = true;
        r->data_id = id;
    } else {
        r->have_err = true;
        r->err_id = id;
    }
    int rc = strm__reply(pf->c, id);
    if (rc == 0 && r->have_data && r->have_err)
        dial(r);
    return rc;
}

int strm__pf_data(struct strm_pf *pf, uint32_t id, const uint8_t *data, size_t len, bool fin)
{
    bool is_data;
    struct pf_req *r = find_by_id(pf, id, &is_data);

    if (r == NULL || r->done)
        return 0;
    if (!is_data)
        return 0; /* clients half-close the error stream at once; nothing is read from it */
    if (len > 0) {
        if (r->open) {
            if (to_target(r, data, len) < 0)
                req_end(r, NULL);
        } else {
            if (ag_buf_append(&r->early, data, len) < 0)
                return -ENOMEM;
            if (r->early.len > STRM_IN_HIGH && !r->blocked) {
                r->blocked = true;
                strm__block_input(pf->c, true);
            }
        }
    }
    if (fin && !r->client_fin)
        client_fin(r);
    return 0;
}

int strm__pf_ws_ports(struct strm_pf *pf, const uint16_t *ports, size_t count)
{
    for (size_t i = 0; i < count; i++) {
        struct pf_req *r = req_new(pf);
        uint8_t prefix[2] = {(uint8_t)(ports[i] & 0xff), (uint8_t)(ports[i] >> 8)};
        if (r == NULL)
            return -ENOMEM;
        snprintf(r->request_id, sizeof(r->request_id), "%zu", i);
        r->port = ports[i];
        r->have_data = r->have_err = true;
        r->data_id = (uint32_t)(2 * i);
        r->err_id = (uint32_t)(2 * i + 1);
        int rc = strm__send(pf->c, r->data_id, prefix, 2, false);
        if (rc == 0)
            rc = strm__send(pf->c, r->err_id, prefix, 2, false);
        if (rc < 0)
            return rc;
        dial(r);
    }
    return 0;
}
