/* agent/stream: the streaming server behind CRI Exec, Attach and
 * PortForward (kubelet proxies kubectl to it; crictl connects directly).
 *
 * This header holds the sans-I/O protocol codecs, each fuzzed:
 *   - the HTTP/1.1 request parser for the upgrade request,
 *   - SPDY/3.1 framing with zlib-compressed header blocks (the protocol
 *     kubelet and crictl use, through moby/spdystream),
 *   - WebSocket (RFC 6455) framing for the channel protocols,
 *   - one-time tokens binding a URL to the request it was issued for.
 * Nothing here owns a socket or a timer; every input is untrusted.
 */
#ifndef STRM_H
#define STRM_H

#include "ag_core.h"

struct rt_process; /* agent/runtime/runtime.h */

/* ---- HTTP/1.1 requests -------------------------------------------------------- */
#define STRM_HTTP_MAX_HEAD 8192
#define STRM_HTTP_MAX_HEADERS 64

struct strm_header {
    const char *name; /* views into the parser's buffer (or the caller's) */
    const char *value;
};

struct strm_http_req {
    char buf[STRM_HTTP_MAX_HEAD + 1]; /* the request head, split in place */
    size_t len;
    const char *method, *target;
    struct strm_header headers[STRM_HTTP_MAX_HEADERS];
    size_t header_count;
};

/* Feeds bytes of a request head.  Returns the number of bytes consumed once
 * the head is complete (bytes after it belong to the upgraded protocol), 0
 * when more bytes are needed, -E2BIG for a head over the limit, -EBADMSG for
 * a malformed one. */
int strm_http_req_parse(struct strm_http_req *req, const uint8_t *data, size_t len) AG_WUR;
/* The first value of a header (case-insensitive name), or NULL. */
const char *strm_http_header(const struct strm_http_req *req, const char *name);
/* Whether a comma-separated header contains token (case-insensitive). */
bool strm_http_header_has(const struct strm_http_req *req, const char *name, const char *token);

/* ---- SPDY/3.1 ------------------------------------------------------------------- */
#define STRM_SPDY_MAX_FRAME (1u << 20)   /* payload bytes we accept in one frame */
#define STRM_SPDY_MAX_HEADER_BLOCK 16384 /* decompressed header block */
#define STRM_SPDY_MAX_HEADERS 64

enum strm_spdy_type {
    STRM_SPDY_DATA = 0,
    STRM_SPDY_SYN_STREAM = 1,
    STRM_SPDY_SYN_REPLY = 2,
    STRM_SPDY_RST_STREAM = 3,
    STRM_SPDY_SETTINGS = 4,
    STRM_SPDY_PING = 6,
    STRM_SPDY_GOAWAY = 7,
    STRM_SPDY_HEADERS = 8,
    STRM_SPDY_WINDOW_UPDATE = 9,
};
#define STRM_SPDY_FLAG_FIN 0x01
#define STRM_SPDY_FLAG_UNIDIRECTIONAL 0x02

struct strm_spdy_frame {
    enum strm_spdy_type type;
    uint8_t flags;
    uint32_t stream_id;    /* DATA, SYN_*, RST, HEADERS, WINDOW_UPDATE */
    uint32_t associated;   /* SYN_STREAM */
    uint32_t value;        /* RST/GOAWAY status, PING id, window delta, GOAWAY last id */
    const uint8_t *data;   /* DATA payload (view, valid for the callback) */
    size_t data_len;
    struct strm_header headers[STRM_SPDY_MAX_HEADERS]; /* lower-case names */
    size_t header_count;
};

struct strm_spdy;
/* Called for each complete frame; return < 0 to stop (passed through). */
typedef int (*strm_spdy_frame_cb)(void *arg, const struct strm_spdy_frame *frame);

int strm_spdy_new(struct strm_spdy **out) AG_WUR;
void strm_spdy_free(struct strm_spdy *s);
/* Feeds received bytes; calls cb for each complete frame.  Returns 0, or a
 * negative errno when the connection must be closed (-EPROTO malformed,
 * -E2BIG over a limit, or what cb returned).  Unknown control frame types
 * are skipped, as the protocol requires. */
int strm_spdy_recv(struct strm_spdy *s, const uint8_t *data, size_t len, strm_spdy_frame_cb cb,
                   void *arg) AG_WUR;

/* Encoders append one frame to out.  Header blocks share the connection's
 * compression context, so frames must be sent in the order encoded. */
int strm_spdy_syn_stream(struct strm_spdy *s, struct ag_buf *out, uint32_t id,
                         const struct strm_header *h, size_t n, uint8_t flags) AG_WUR;
int strm_spdy_syn_reply(struct strm_spdy *s, struct ag_buf *out, uint32_t id,
                        const struct strm_header *h, size_t n, uint8_t flags) AG_WUR;
int strm_spdy_data(struct ag_buf *out, uint32_t id, const void *data, size_t len,
                   uint8_t flags) AG_WUR;
int strm_spdy_rst_stream(struct ag_buf *out, uint32_t id, uint32_t status) AG_WUR;
int strm_spdy_ping(struct ag_buf *out, uint32_t ping_id) AG_WUR;
int strm_spdy_goaway(struct ag_buf *out, uint32_t last_id, uint32_t status) AG_WUR;

/* ---- WebSocket -------------------------------------------------------------------- */
#define STRM_WS_MAX_MESSAGE (1u << 20)

enum strm_ws_opcode {
    STRM_WS_CONT = 0x0,
    STRM_WS_TEXT = 0x1,
    STRM_WS_BINARY = 0x2,
    STRM_WS_CLOSE = 0x8,
    STRM_WS_PING = 0x9,
    STRM_WS_PONG = 0xA,
};

struct strm_ws {
    struct ag_buf in;      /* unparsed input */
    struct ag_buf message; /* a fragmented message being reassembled */
    enum strm_ws_opcode message_op;
    bool in_message;
    bool require_mask; /* servers require masked client frames */
};

/* A complete message (data frames reassembled) or a control frame. */
typedef int (*strm_ws_message_cb)(void *arg, enum strm_ws_opcode op, const uint8_t *data,
                                  size_t len);

void strm_ws_init(struct strm_ws *ws, bool server);
void strm_ws_fini(struct strm_ws *ws);
/* Returns 0 or a negative errno when the connection must be failed
 * (-EPROTO, -E2BIG, or what cb returned). */
int strm_ws_recv(struct strm_ws *ws, const uint8_t *data, size_t len, strm_ws_message_cb cb,
                 void *arg) AG_WUR;
/* Appends one unfragmented frame; masked with mask_key when mask is true
 * (clients). */
int strm_ws_frame(struct ag_buf *out, enum strm_ws_opcode op, const void *data, size_t len,
                  bool mask, uint32_t mask_key) AG_WUR;
/* Sec-WebSocket-Accept for a client's Sec-WebSocket-Key: out gets 28
 * characters and a NUL.  -EINVAL for a key that is not 16 bytes base64. */
int strm_ws_accept_key(const char *client_key, char out[29]) AG_WUR;

/* ---- one-time tokens -------------------------------------------------------------- */
#define STRM_TOKEN_LEN 43 /* 32 random bytes, URL-safe base64 without padding */
#define STRM_TOKEN_MAX 1024
#define STRM_TOKEN_TTL_MS 60000

enum strm_kind { STRM_EXEC, STRM_ATTACH, STRM_PORTFORWARD };

/* What a token stands for: the kind and an owned request copy. */
struct strm_ticket {
    char token[STRM_TOKEN_LEN + 1];
    enum strm_kind kind;
    void *request;              /* owned; freed with free_request */
    void (*free_request)(void *);
    uint64_t expires_ms;
};

struct strm_tokens {
    struct strm_ticket *tickets;
    size_t count;
};

void strm_tokens_init(struct strm_tokens *t);
void strm_tokens_fini(struct strm_tokens *t);
/* Issues a token for request (ownership moves in, also on failure: it is
 * freed then).  -EAGAIN when STRM_TOKEN_MAX tickets are outstanding. */
int strm_tokens_issue(struct strm_tokens *t, enum strm_kind kind, void *request,
                      void (*free_request)(void *), uint64_t now_ms,
                      char out[STRM_TOKEN_LEN + 1]) AG_WUR;
/* Takes the ticket of token (once): 0 and *out filled (caller frees
 * out->request), -ENOENT for an unknown, used or expired token, -EINVAL when
 * the kind differs (the ticket is then kept: a wrong path must not burn it). */
int strm_tokens_take(struct strm_tokens *t, const char *token, enum strm_kind kind,
                     uint64_t now_ms, struct strm_ticket *out) AG_WUR;
/* Drops expired tickets. */
void strm_tokens_expire(struct strm_tokens *t, uint64_t now_ms);

/* ---- the server (strm_server.c, strm_session.c, strm_pf.c) --------------------------
 * One HTTP/1.1 listener on the daemon's loop.  CRI Exec/Attach/PortForward
 * store their request with strm_server_issue() and return the URL; the
 * client (kubelet's proxy or crictl) connects, the token is taken once, the
 * connection is upgraded (SPDY/3.1 or WebSocket) and a session runs the
 * request through the backend below.  Loop thread only, never blocks. */
#include <uv.h>

#define STRM_STREAM_CREATION_TIMEOUT_MS 30000   /* client opens its streams */
#define STRM_IDLE_TIMEOUT_MS (4ull * 3600 * 1000) /* no byte either way */
#define STRM_OUT_HIGH (1u << 20) /* socket write queue: stop reading outputs above */
#define STRM_OUT_LOW (256u << 10) /* ... and resume below */
#define STRM_IN_HIGH (1u << 20)  /* process stdin / forwarded socket queue bound */

/* What the client may open (from the CRI request, never from the URL). */
struct strm_params {
    bool tty, stdin, stdout, stderr;
};

/* A process (exec) or an attachment (attach) as the session sees it.  A
 * backend implements the ops; the session calls them on the loop thread. */
struct strm_proc;
struct strm_proc_ops {
    /* Queues stdin bytes.  Returns 0, 1 when accepted but the queue is now
     * over STRM_IN_HIGH (the session stops reading the socket until
     * sink->stdin_drained), or a negative errno (stdin gone: dropped). */
    int (*write_stdin)(struct strm_proc *p, const uint8_t *data, size_t len);
    /* The client half-closed stdin: close the process's stdin after the
     * queued bytes. */
    void (*close_stdin)(struct strm_proc *p);
    /* Terminal size (TIOCSWINSZ); -ENOTTY without a terminal. */
    int (*resize)(struct strm_proc *p, uint16_t width, uint16_t height);
    /* Stops (true) or resumes reading the process's output. */
    void (*pause_output)(struct strm_proc *p, bool paused);
    /* The session is over: close our ends of the process's stdio (the
     * process itself is not killed), free asynchronously.  No sink call
     * happens after this returns. */
    void (*release)(struct strm_proc *p);
};
struct strm_proc {
    const struct strm_proc_ops *ops;
};

/* What a proc reports, on the loop thread.  Output is 1 (stdout; also the
 * terminal) or 2 (stderr); the bytes are a view valid for the call.
 * exited comes once, after the last output: exit_code >= 0, or -1 with
 * error set (could not start, attach lost). */
struct strm_proc_sink {
    void (*output)(void *arg, int fd, const uint8_t *data, size_t len);
    void (*stdin_drained)(void *arg);
    void (*exited)(void *arg, int exit_code, const char *error);
    void *arg;
};

/* The backend: implemented by the runtime service (cri/), and by
 * strm_host_backend for tests.  request is the pointer given to
 * strm_server_issue (borrowed).  exec and attach return a started (or
 * starting) proc in *out that reports through sink; a setup failure after
 * return is reported with sink->exited(-1, message).  portforward_netns
 * names the pod's network namespace file ("" = the daemon's own). */
struct strm_backend_ops {
    int (*exec)(void *ctx, uv_loop_t *loop, void *request, const struct strm_params *params,
                const struct strm_proc_sink *sink, struct strm_proc **out, struct ag_err *err);
    int (*attach)(void *ctx, uv_loop_t *loop, void *request, const struct strm_params *params,
                  const struct strm_proc_sink *sink, struct strm_proc **out, struct ag_err *err);
    int (*portforward_netns)(void *ctx, void *request, char *path, size_t path_len,
                             struct ag_err *err);
};

struct strm_server;

/* Listens on address "HOST:PORT" (port 0 = random; NULL = 127.0.0.1:0).
 * ops and ctx are borrowed for the server's lifetime.  *out owned, released
 * with strm_server_stop.  Errors: -EINVAL (address), bind/listen errors. */
int strm_server_start(uv_loop_t *loop, const char *address, const struct strm_backend_ops *ops,
                      void *ctx, struct strm_server **out, struct ag_err *err) AG_WUR;
/* The bound port. */
int strm_server_port(const struct strm_server *s);
/* Stores request (ownership moves in, also on failure: freed with
 * free_request, which may be NULL) under a one-time token and writes
 * "http://HOST:PORT/{exec|attach|portforward}/TOKEN" into url.
 * Errors: -EAGAIN (too many outstanding tokens), -ENAMETOOLONG, -ENOMEM. */
int strm_server_issue(struct strm_server *s, enum strm_kind kind,
                      const struct strm_params *params, void *request,
                      void (*free_request)(void *), char *url, size_t url_len,
                      struct ag_err *err) AG_WUR;
/* Closes the listener and every connection (sessions release their procs:
 * processes keep running), drops outstanding tokens.  The memory is freed
 * from close callbacks: run the loop afterwards.  NULL is accepted. */
void strm_server_stop(struct strm_server *s);
/* Number of open connections (tests, metrics). */
size_t strm_server_conn_count(const struct strm_server *s);

/* ---- procs over file descriptors (strm_fdproc.c) ----------------------------------
 * The generic proc for a process whose stdio the daemon holds: pipes, or a
 * pty master (tty: stdout_fd == stdin_fd == master, no stderr).  Takes
 * ownership of the fds (also on failure).  The exit comes from
 * strm_fdproc_exited() or a watched pidfd; it is reported after stdout and
 * stderr reach EOF, or at most STRM_DRAIN_MS after the exit (a background
 * process may keep them open). */
#define STRM_DRAIN_MS 2000
int strm_fdproc_new(uv_loop_t *loop, const struct strm_proc_sink *sink, bool tty, int stdin_fd,
                    int stdout_fd, int stderr_fd, struct strm_proc **out) AG_WUR;
/* Reaps the child through pidfd (owned) with waitid(P_PIDFD) when it
 * becomes readable: for processes libuv did not spawn. */
int strm_fdproc_watch_pidfd(struct strm_proc *p, int pidfd) AG_WUR;
/* The exit code (128 + signal for a signal), or -1 with error. */
void strm_fdproc_exited(struct strm_proc *p, int exit_code, const char *error);

/* ---- backends (strm_exec.c, strm_attach.c; strm_host_exec in strm_fdproc.c) ------ */
/* Exec in a running container (rt_container_exec in a thread-pool worker;
 * the process is the daemon's child, reaped through a pidfd).  Takes
 * ownership of process (a fresh rt_process built for this exec: args, env,
 * cwd, user from the container's spec; its terminal flag is set from
 * params->tty).  tty: a pty through the executor's console socket. */
int strm_container_exec(uv_loop_t *loop, const char *state_root, const char *id,
                        struct rt_process *process, const struct strm_params *params,
                        const struct strm_proc_sink *sink, struct strm_proc **out,
                        struct ag_err *err) AG_WUR;
/* Attach through the container monitor's socket (rt_monitor_attach in a
 * worker, then the monitor's frames on the loop).  stdin_once (the
 * container's StdinOnce): the container's stdin is closed when the client
 * closes its stdin or the session ends.  The session ends with Success
 * when the container exits (kubelet's attach reports no exit code). */
int strm_monitor_attach(uv_loop_t *loop, const char *socket_path,
                        const struct strm_params *params, bool stdin_once,
                        const struct strm_proc_sink *sink, struct strm_proc **out,
                        struct ag_err *err) AG_WUR;
/* A host process (uv_spawn of argv, NULL-terminated, copied): tests and the
 * stream-test harness only. */
int strm_host_exec(uv_loop_t *loop, char *const *argv, const struct strm_params *params,
                   const struct strm_proc_sink *sink, struct strm_proc **out,
                   struct ag_err *err) AG_WUR;

/* `picocri stream-test` (test-only harness, see README). */
int strm_test_main(int argc, char **argv);

#endif
