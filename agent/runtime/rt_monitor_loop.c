/* agent/runtime: the monitor's poll loop.  One thread, poll(2) over a
 * signalfd (SIGCHLD), the control socket, the container's output (two pipes
 * or one pty master), the container's stdin, and up to MON_MAX_CLIENTS
 * control connections.  Output goes first to the CRI log (rt_log.c), then to
 * every attach client as 'O'/'E' frames.
 *
 * Invariants: the monitor never blocks on a client: replies and output are
 * queued per client and a client whose queue passes MON_CLIENT_QUEUE_MAX is
 * dropped; container output is never dropped from the log.  Stdin is queued
 * up to MON_STDIN_QUEUE_MAX, then attach clients are no longer read
 * (back-pressure instead of loss).  Each wakeup does bounded work.
 */
#include "rt_monitor_int.h"

#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <termios.h>

void rt__mon_init_clients(struct monitor *m)
{
    for (int i = 0; i < MON_MAX_CLIENTS; i++)
        m->clients[i] = (struct mon_client){.fd = -1};
}

static void client_close(struct mon_client *c)
{
    if (c->fd >= 0)
        close(c->fd);
    free(c->in);
    free(c->out);
    *c = (struct mon_client){.fd = -1};
}

/* Sends what is queued; returns -errno when the client is gone. */
static int client_flush(struct mon_client *c)
{
    while (c->out_len > 0) {
        ssize_t n = send(c->fd, c->out, c->out_len, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -errno;
        }
        memmove(c->out, c->out + n, c->out_len - (size_t)n);
        c->out_len -= (size_t)n;
    }
    return 0;
}

/* Queues one frame for a client and tries to send it.  A client over its
 * queue limit, or one that failed, is closed. */
static void client_send(struct mon_client *c, uint8_t type, const void *data, size_t len)
{
    uint8_t hdr[RT_MON_HDR_LEN];
    size_t need;

    if (c->fd < 0)
        return;
    need = c->out_len + sizeof(hdr) + len;
    if (need > MON_CLIENT_QUEUE_MAX) {
        ag_log(AG_WARN, "monitor client too slow: dropped queued=%zu", c->out_len);
        client_close(c);
        return;
    }
    if (need > c->out_cap) {
        size_t cap = c->out_cap ? c->out_cap : 4096;
        while (cap < need)
            cap *= 2;
        uint8_t *nb = realloc(c->out, cap);
        if (nb == NULL) {
            client_close(c);
            return;
        }
        c->out = nb;
        c->out_cap = cap;
    }
    rt_mon_frame_header(hdr, type, len);
    memcpy(c->out + c->out_len, hdr, sizeof(hdr));
    if (len > 0)
        memcpy(c->out + c->out_len + sizeof(hdr), data, len);
    c->out_len = need;
    if (client_flush(c) < 0)
        client_close(c);
}

static void reply_err(struct mon_client *c, int code, const char *msg)
{
    char text[AG_ERR_MSG_LEN + 16];
    int n = snprintf(text, sizeof(text), "%d %s", -code, msg);

    client_send(c, RT_MON_ERR, text, n < (int)sizeof(text) ? (size_t)n : sizeof(text) - 1);
}

static void reply_ok(struct mon_client *c, const char *text)
{
    client_send(c, RT_MON_OK, text, text != NULL ? strlen(text) : 0);
}

/* ---- container stdin -------------------------------------------------------- */

static void stdin_close(struct monitor *m)
{
    if (m->in_fd >= 0)
        close(m->in_fd);
    m->in_fd = -1;
    m->stdin_q_len = 0;
}

static void stdin_flush(struct monitor *m)
{
    while (m->in_fd >= 0 && m->stdin_q_len > 0) {
        ssize_t n = write(m->in_fd, m->stdin_q, m->stdin_q_len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                stdin_close(m); /* the container closed its stdin */
            return;
        }
        memmove(m->stdin_q, m->stdin_q + n, m->stdin_q_len - (size_t)n);
        m->stdin_q_len -= (size_t)n;
    }
}

/* Returns false when the bytes do not fit yet (the caller retries later). */
static bool stdin_push(struct monitor *m, const uint8_t *p, size_t len)
{
    if (m->in_fd < 0)
        return true; /* stdin closed: discard, as a closed pipe would */
    if (m->stdin_q == NULL) {
        m->stdin_q = malloc(MON_STDIN_QUEUE_MAX);
        if (m->stdin_q == NULL)
            return false;
    }
    if (m->stdin_q_len + len > MON_STDIN_QUEUE_MAX)
        return false;
    memcpy(m->stdin_q + m->stdin_q_len, p, len);
    m->stdin_q_len += len;
    stdin_flush(m);
    return true;
}

/* ---- requests ----------------------------------------------------------------- */

static void do_resize(struct monitor *m, struct mon_client *c, const struct rt_mon_frame *f)
{
    unsigned rows, cols;

    if (rt_mon_parse_resize(f->payload, f->len, &rows, &cols) < 0) {
        if (!c->attach)
            reply_err(c, -EINVAL, "resize: want \"<rows> <cols>\"");
        return;
    }
    struct winsize ws = {.ws_row = (unsigned short)rows, .ws_col = (unsigned short)cols};
    int rc = !m->tty || m->out_fd < 0 ? -ENOTTY
             : ioctl(m->out_fd, TIOCSWINSZ, &ws) < 0 ? -errno : 0;
    if (c->attach)
        return;
    if (rc < 0)
        reply_err(c, rc, "resize: container has no terminal");
    else
        reply_ok(c, NULL);
}

static void do_start(struct monitor *m, struct mon_client *c)
{
    struct ag_err err;

    if (m->st.state != RT_MON_CREATED) {
        reply_err(c, -EINVAL, m->st.state == RT_MON_RUNNING ? "container already started"
                                                              : "container has exited");
        return;
    }
    ag_err_init(&err);
    if (rt_container_start(m->state_root, m->id, &err) < 0) {
        reply_err(c, err.code, err.msg);
        return;
    }
    m->st.state = RT_MON_RUNNING;
    m->st.started_at = ag_now_ns();
    reply_ok(c, NULL);
    rt__mon_release_memory();
}

static void do_signal(struct monitor *m, struct mon_client *c, const struct rt_mon_frame *f)
{
    struct ag_err err;
    bool all;
    int sig;

    if (rt_mon_parse_signal(f->payload, f->len, &sig, &all) < 0) {
        reply_err(c, -EINVAL, "signal: want \"<1..64>[ all]\"");
        return;
    }
    if (m->st.state == RT_MON_EXITED_STATE) {
        reply_err(c, -ESRCH, "container has exited");
        return;
    }
    ag_err_init(&err);
    if (rt_container_kill(m->state_root, m->id, sig, all, &err) < 0)
        reply_err(c, err.code, err.msg);
    else
        reply_ok(c, NULL);
}

static void do_request(struct monitor *m, struct mon_client *c, const struct rt_mon_frame *f)
{
    char text[512];

    switch (f->type) {
    case RT_MON_START:
        do_start(m, c);
        break;
    case RT_MON_STATUS:
        m->st.monitor_pid = (int)getpid();
        if (rt_mon_status_format(&m->st, text, sizeof(text)) < 0)
            reply_err(c, -ENOSPC, "status too long");
        else
            reply_ok(c, text);
        break;
    case RT_MON_SIGNAL:
        do_signal(m, c, f);
        break;
    case RT_MON_REOPEN: {
        int rc = rt_log_file_reopen(&m->log_file);
        if (rc < 0)
            reply_err(c, rc, "reopen container log");
        else
            reply_ok(c, NULL);
        break;
    }
    case RT_MON_RESIZE:
        do_resize(m, c, f);
        break;
    case RT_MON_ATTACH:
        if (f->len == 5 && memcmp(f->payload, "stdin", 5) == 0) {
            if (m->in_fd < 0) {
                reply_err(c, -EINVAL, "container stdin is not open");
                break;
            }
            c->attach_stdin = true;
        } else if (f->len != 0) {
            reply_err(c, -EINVAL, "attach: want \"\" or \"stdin\"");
            break;
        }
        c->attach = true;
        reply_ok(c, NULL);
        break;
    default:
        reply_err(c, -EPROTO, "not a request on a control connection");
        break;
    }
}

/* A frame on an attach stream: stdin data, close stdin, resize. Returns
 * false when a stdin frame must wait for room. */
static bool do_attach_frame(struct monitor *m, struct mon_client *c, const struct rt_mon_frame *f)
{
    switch (f->type) {
    case RT_MON_STDIN:
        return !c->attach_stdin || stdin_push(m, f->payload, f->len);
    case RT_MON_CLOSE_STDIN:
        if (c->attach_stdin && !m->tty)
            stdin_close(m);
        return true;
    case RT_MON_RESIZE:
        do_resize(m, c, f);
        return true;
    default:
        return true; /* ignored on an attach stream */
    }
}

/* Handles the complete frames in a client's input buffer. */
static void client_process(struct monitor *m, struct mon_client *c)
{
    size_t off = 0;

    c->blocked = false;
    while (c->fd >= 0 && off < c->in_len) {
        struct rt_mon_frame f;
        int n = rt_mon_frame_parse(c->in + off, c->in_len - off, &f);
        if (n < 0) {
            ag_log(AG_WARN, "monitor ctr=%s bad control frame errno=%d", m->id, -n);
            client_close(c);
            return;
        }
        if (n == 0)
            break;
        if (c->attach) {
            if (!do_attach_frame(m, c, &f)) {
                c->blocked = true;
                break;
            }
        } else {
            do_request(m, c, &f);
        }
        off += (size_t)n;
    }
    if (c->fd >= 0 && off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
}

static void client_read(struct monitor *m, struct mon_client *c)
{
    size_t cap = RT_MON_HDR_LEN + RT_MON_PAYLOAD_MAX;
    ssize_t n;

    do {
        n = recv(c->fd, c->in + c->in_len, cap - c->in_len, MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        client_close(c);
        return;
    }
    c->in_len += (size_t)n;
    client_process(m, c);
}

static void accept_client(struct monitor *m)
{
    int fd = accept4(m->listen_fd, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
    struct ucred cred;
    socklen_t cl = sizeof(cred);

    if (fd < 0)
        return;
    /* The socket is 0600; check the peer anyway (a socket fd can be passed). */
    if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &cl) < 0 || cred.uid != geteuid()) {
        close(fd);
        return;
    }
    for (int i = 0; i < MON_MAX_CLIENTS; i++) {
        struct mon_client *c = &m->clients[i];
        if (c->fd >= 0)
            continue;
        c->in = malloc(RT_MON_HDR_LEN + RT_MON_PAYLOAD_MAX);
        if (c->in == NULL)
            break;
        c->fd = fd;
        return;
    }
    ag_log(AG_WARN, "monitor ctr=%s too many control clients", m->id);
    close(fd);
}

/* ---- container output --------------------------------------------------------- */

static void broadcast(struct monitor *m, uint8_t type, const void *data, size_t len)
{
    for (int i = 0; i < MON_MAX_CLIENTS; i++)
        if (m->clients[i].fd >= 0 && m->clients[i].attach)
            client_send(&m->clients[i], type, data, len);
}

/* Reads one chunk of output; closes the fd at EOF (EIO on a pty whose
 * slave side is gone). */
static void read_output(struct monitor *m, int *fd, enum rt_log_stream stream)
{
    char buf[MON_READ_CHUNK];
    ssize_t n;

    do {
        n = read(*fd, buf, sizeof(buf));
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN)
        return;
    if (n <= 0) {
        close(*fd);
        *fd = -1;
        (void)!rt_log_writer_flush(&m->log, (int)stream, ag_now_ns());
        return;
    }
    int rc = rt_log_writer_feed(&m->log, stream, buf, (size_t)n, ag_now_ns());
    if (rc < 0)
        ag_log(AG_WARN, "monitor ctr=%s log write errno=%d dropped=%llu", m->id, -rc,
               (unsigned long long)m->log.dropped_bytes);
    broadcast(m, stream == RT_LOG_STDERR ? RT_MON_STDERR : RT_MON_STDOUT, buf, (size_t)n);
}

bool rt__mon_reap(struct monitor *m)
{
    bool reaped = false;

    for (int i = 0; i < 1024; i++) {
        int ws;
        pid_t pid = waitpid(-1, &ws, WNOHANG);
        if (pid <= 0)
            break;
        if (pid == m->st.pid && m->st.state != RT_MON_EXITED_STATE) {
            rt__mon_record_exit(m, ws);
            reaped = true;
        }
    }
    return reaped;
}

static void read_signals(struct monitor *m)
{
    struct signalfd_siginfo si;

    while (read(m->sig_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
        if (si.ssi_signo == SIGCHLD)
            rt__mon_reap(m);
        /* SIGTERM, SIGINT, SIGHUP, SIGPIPE: ignored.  Only the container's
         * exit (or SIGKILL) ends the monitor. */
    }
}

/* ---- the loop ----------------------------------------------------------------- */

enum { P_SIG, P_LISTEN, P_OUT, P_ERR, P_IN, P_CLIENT0 };

static int build_pollset(struct monitor *m, struct pollfd *p, int *map)
{
    int n = P_CLIENT0;

    p[P_SIG] = (struct pollfd){.fd = m->sig_fd, .events = POLLIN};
    p[P_LISTEN] = (struct pollfd){.fd = m->listen_fd, .events = POLLIN};
    p[P_OUT] = (struct pollfd){.fd = m->out_fd, .events = POLLIN};
    p[P_ERR] = (struct pollfd){.fd = m->err_fd, .events = POLLIN};
    p[P_IN] = (struct pollfd){.fd = m->stdin_q_len > 0 ? m->in_fd : -1, .events = POLLOUT};
    for (int i = 0; i < MON_MAX_CLIENTS; i++) {
        struct mon_client *c = &m->clients[i];
        if (c->fd < 0)
            continue;
        short ev = c->blocked ? 0 : POLLIN;
        if (c->out_len > 0)
            ev |= POLLOUT;
        p[n] = (struct pollfd){.fd = c->fd, .events = ev};
        map[n++] = i;
    }
    return n;
}

static void handle_clients(struct monitor *m, struct pollfd *p, int *map, int n)
{
    for (int k = P_CLIENT0; k < n; k++) {
        struct mon_client *c = &m->clients[map[k]];
        if (c->fd < 0 || c->fd != p[k].fd)
            continue;
        if (p[k].revents & POLLOUT && client_flush(c) < 0) {
            client_close(c);
            continue;
        }
        if (p[k].revents & (POLLIN | POLLHUP | POLLERR))
            client_read(m, c);
    }
    /* Room in the stdin queue: let blocked attach clients continue. */
    for (int i = 0; i < MON_MAX_CLIENTS; i++)
        if (m->clients[i].fd >= 0 && m->clients[i].blocked)
            client_process(m, &m->clients[i]);
}

int rt__mon_loop(struct monitor *m)
{
    struct pollfd p[P_CLIENT0 + MON_MAX_CLIENTS];
    int map[P_CLIENT0 + MON_MAX_CLIENTS];

    rt__mon_reap(m); /* an exit before the signalfd existed sent no signal we saw */
    for (;;) {
        int timeout = -1;
        if (m->st.state == RT_MON_EXITED_STATE) {
            int64_t left = (m->drain_deadline_ns - ag_now_ns()) / 1000000;
            if ((m->out_fd < 0 && m->err_fd < 0) || left <= 0)
                return 0;
            timeout = (int)left;
        }
        int n = build_pollset(m, p, map);
        rt__mon_trim_stack();
        int r = poll(p, (nfds_t)n, timeout);
        if (r < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (p[P_SIG].revents & POLLIN)
            read_signals(m);
        if (p[P_OUT].revents)
            read_output(m, &m->out_fd, RT_LOG_STDOUT);
        if (p[P_ERR].revents)
            read_output(m, &m->err_fd, RT_LOG_STDERR);
        if (p[P_IN].revents)
            stdin_flush(m);
        if (p[P_LISTEN].revents & POLLIN)
            accept_client(m);
        handle_clients(m, p, map, n);
    }
}

void rt__mon_clients_finish(struct monitor *m)
{
    char text[512];
    int n = rt_mon_status_format(&m->st, text, sizeof(text));
    int64_t deadline = ag_now_ns() + 1000000000LL;

    for (int i = 0; i < MON_MAX_CLIENTS; i++) {
        struct mon_client *c = &m->clients[i];
        if (c->fd >= 0 && c->attach && n > 0)
            client_send(c, RT_MON_EXITED, text, (size_t)n);
    }
    /* Best effort, bounded: give attach clients a second to take the rest. */
    for (int i = 0; i < MON_MAX_CLIENTS; i++) {
        struct mon_client *c = &m->clients[i];
        while (c->fd >= 0 && c->out_len > 0 && ag_now_ns() < deadline) {
            struct pollfd pf = {.fd = c->fd, .events = POLLOUT};
            if (poll(&pf, 1, 100) < 0 || client_flush(c) < 0)
                break;
        }
        client_close(c);
    }
    if (m->listen_fd >= 0)
        close(m->listen_fd);
    m->listen_fd = -1;
    free(m->stdin_q);
    m->stdin_q = NULL;
}
