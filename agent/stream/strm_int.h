/* agent/stream: internal header shared by the server's files: the
 * connection (strm_server.c), remote-command sessions (strm_session.c) and
 * port-forward sessions (strm_pf.c).  Not for other folders. */
#ifndef STRM_INT_H
#define STRM_INT_H

#include "strm.h"

enum strm_conn_state {
    STRM_C_HEAD,    /* reading the HTTP request head */
    STRM_C_SPDY,    /* upgraded: SPDY/3.1 frames */
    STRM_C_WS,      /* upgraded: WebSocket frames */
    STRM_C_CLOSING, /* flushing, then closing; input ignored */
};

/* Remote-command channels, numbered as the WebSocket channel bytes. */
enum strm_chan { STRM_CH_STDIN, STRM_CH_STDOUT, STRM_CH_STDERR, STRM_CH_ERROR, STRM_CH_RESIZE,
                 STRM_CH_COUNT };

struct strm_rc;
struct strm_pf;

struct strm_conn {
    uv_tcp_t tcp;
    uv_timer_t timer;
    int handles_open; /* freed when both handles are closed */
    struct strm_server *srv;
    struct strm_conn *prev, *next;
    enum strm_conn_state state;
    struct strm_http_req *req; /* while reading the head */
    struct strm_spdy *spdy;
    struct strm_ws ws;
    bool ws_init, ws_base64, ws_pf;
    int version; /* remote command: 1..5 */
    enum strm_kind kind;
    struct strm_params params;
    void *request; /* owned, from the ticket */
    void (*free_request)(void *);
    size_t out_pending;  /* bytes in uv_write requests not completed */
    int in_blocks;       /* reasons to stop reading the socket */
    bool reading, out_paused, close_after_flush;
    uint64_t last_io_ms;
    struct strm_rc *rc;
    struct strm_pf *pf;
};

struct strm_server {
    uv_loop_t *loop;
    uv_tcp_t listener;
    bool stopping;
    const struct strm_backend_ops *ops;
    void *ctx;
    struct strm_tokens tokens;
    char host[64];
    int port;
    struct strm_conn *conns;
    size_t conn_count;
};

/* ---- conn services for the sessions (strm_server.c) ---- */
/* Sends bytes on a stream (SPDY id) or channel (WebSocket); fin half-closes
 * (SPDY only).  Returns 0 or a negative errno (the connection is closing). */
int strm__send(struct strm_conn *c, uint32_t id, const void *data, size_t len, bool fin);
/* Accepts a client-opened SPDY stream (SYN_REPLY). */
int strm__reply(struct strm_conn *c, uint32_t id);
int strm__reset(struct strm_conn *c, uint32_t id);
/* Closes the connection once everything queued is written. */
void strm__finish(struct strm_conn *c);
/* Counted: stop (true) or resume (false) reading the socket. */
void strm__block_input(struct strm_conn *c, bool block);
/* Whether the socket's write queue is over STRM_OUT_HIGH. */
bool strm__out_full(const struct strm_conn *c);

/* The session has its streams: the idle timeout applies from now on. */
void strm__started(struct strm_conn *c);

/* ---- fd procs (strm_fdproc.c) ---- */
/* A proc whose fds are not known yet (start in the thread pool): stdin is
 * held (bounded) and resize remembered until strm__fdproc_start. */
int strm__fdproc_new_pending(uv_loop_t *loop, const struct strm_proc_sink *sink, bool tty,
                             struct strm_proc **out);
/* Gives the fds (owned, -1 = none; tty: out_fd is the master).  After a
 * release the fds are closed and -ECANCELED returned. */
int strm__fdproc_start(struct strm_proc *p, int in_fd, int out_fd, int err_fd);
bool strm__fdproc_released(struct strm_proc *p);

/* ---- remote command (strm_session.c) ---- */
int strm__rc_new(struct strm_conn *c, struct strm_rc **out);
void strm__rc_free(struct strm_rc *rc); /* releases the proc */
/* SPDY: a client stream of streamtype type. */
int strm__rc_stream(struct strm_rc *rc, uint32_t id, const char *type);
int strm__rc_data(struct strm_rc *rc, uint32_t id, const uint8_t *data, size_t len, bool fin);
void strm__rc_pause(struct strm_rc *rc, bool paused);
/* The stream-creation deadline passed. */
void strm__rc_timeout(struct strm_rc *rc);
bool strm__rc_started(const struct strm_rc *rc);
/* Writes the remote-command status for the protocol version into out
 * (exit_code >= 0, or -1 with error).  Returns the length (0 = nothing to
 * write: success on v1-v3) or -ENOSPC. */
int strm__rc_status(int version, int exit_code, const char *error, char *out, size_t out_len);
/* Parses as many complete resize JSON objects from buf as there are and
 * consumes them; the last one is in w and h.  Returns the count, or -EINVAL
 * for bad JSON (or a buffer over 4 KiB). */
int strm__resize_parse(struct ag_buf *buf, uint16_t *w, uint16_t *h);

/* ---- port forward (strm_pf.c) ---- */
int strm__pf_new(struct strm_conn *c, struct strm_pf **out, struct ag_err *err);
void strm__pf_free(struct strm_pf *pf);
int strm__pf_stream(struct strm_pf *pf, uint32_t id, const char *type, const char *port,
                    const char *request_id);
int strm__pf_data(struct strm_pf *pf, uint32_t id, const uint8_t *data, size_t len, bool fin);
/* WebSocket: one forwarded connection per port, channels 2i and 2i+1. */
int strm__pf_ws_ports(struct strm_pf *pf, const uint16_t *ports, size_t count);
void strm__pf_pause(struct strm_pf *pf, bool paused);
/* Parses "ddd" as a TCP port 1..65535.  Returns 0 or -EINVAL. */
int strm__port_parse(const char *s, uint16_t *out);

#endif
