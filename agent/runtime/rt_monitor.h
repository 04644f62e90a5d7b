/* agent/runtime: the container monitor (`picocri monitor`), its CRI log
 * writer, its control protocol and the daemon-side client.
 *
 * One monitor process runs per container.  It is the container init's
 * parent (and a child subreaper), holds the container's stdio, writes the
 * CRI log file, serves attach on a unix control socket, and records the exit
 * status in an exit file before it exits.  The daemon is not its parent, so
 * a daemon restart or crash loses neither log lines nor exit statuses: a
 * restarted daemon reconnects to the socket, or reads the exit file when the
 * monitor is gone.
 *
 * This header will be merged into runtime.h.  Everything here except the
 * sans-I/O parts (log writer core, frame codec, status and exit-status
 * format/parse) blocks: the daemon calls the client functions from the libuv
 * thread pool, never from the loop thread.
 */
#ifndef RT_MONITOR_H
#define RT_MONITOR_H

#include "ag_core.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* ---- CRI log writer (rt_log.c) -------------------------------------------
 * Turns the byte streams of a container into CRI log records:
 *   <YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ> <stdout|stderr> <P|F> <content>\n
 * A line longer than RT_LOG_LINE_MAX bytes becomes P records of exactly
 * RT_LOG_LINE_MAX bytes followed by one F record with the rest (1 to
 * RT_LOG_LINE_MAX bytes); an unterminated fragment is held until its newline
 * arrives or until rt_log_writer_flush() (container exit), which writes it
 * as F.  The core does no I/O: records go to a sink through writev-style
 * iovecs, so it is unit-testable in memory. */
#define RT_LOG_LINE_MAX 16384
/* Length of "2006-01-02T15:04:05.000000000Z". */
#define RT_LOG_TIME_LEN 30

enum rt_log_stream { RT_LOG_STDOUT = 0, RT_LOG_STDERR = 1 };

struct rt_log_sink_ops {
    /* Writes one whole record (all iovecs).  Returns 0 or a negative errno;
     * a sink must not write a partial record and then succeed. */
    int (*write)(void *ctx, const struct iovec *iov, int iov_count);
};

struct rt_log_writer {
    const struct rt_log_sink_ops *ops; /* borrowed */
    void *ctx;                         /* borrowed */
    char *part[2];                     /* owned, RT_LOG_LINE_MAX each, lazily allocated */
    size_t part_len[2];
    uint64_t record_count;  /* records written */
    uint64_t dropped_bytes; /* content bytes the sink refused */
    int last_err;           /* last sink error, 0 if none */
};

/* Cannot fail; ops/ctx are borrowed for the writer's lifetime. */
void rt_log_writer_init(struct rt_log_writer *w, const struct rt_log_sink_ops *ops, void *ctx);
/* Frees the line buffers (does not flush).  Idempotent. */
void rt_log_writer_fini(struct rt_log_writer *w);
/* Feeds bytes read from one stream; now_ns stamps the records completed by
 * this call.  Returns 0, or the sink's negative errno (the records that
 * failed are counted in dropped_bytes and the writer stays usable). */
int rt_log_writer_feed(struct rt_log_writer *w, enum rt_log_stream stream, const void *data,
                       size_t len, int64_t now_ns) AG_WUR;
/* Writes a held fragment of one stream (or both with stream < 0) as F. */
int rt_log_writer_flush(struct rt_log_writer *w, int stream, int64_t now_ns) AG_WUR;
/* Formats ns since the epoch as RT_LOG_TIME_LEN chars plus NUL into out
 * (at least RT_LOG_TIME_LEN + 1 bytes).  Returns 0 or -EOVERFLOW. */
int rt_log_format_time(int64_t ns, char *out) AG_WUR;

/* The file sink: one append-mode fd on a path; reopen closes it and opens
 * (creates) the path again, for the kubelet's ReopenContainerLog. */
struct rt_log_file {
    int fd;
    char *path; /* owned */
};
extern const struct rt_log_sink_ops rt_log_file_ops;
void rt_log_file_init(struct rt_log_file *f); /* fd = -1 */
/* Opens (creating, mode 0640) path for append.  Returns 0 or -errno. */
int rt_log_file_open(struct rt_log_file *f, const char *path) AG_WUR;
/* Opens the same path again; on failure the old fd stays in use. */
int rt_log_file_reopen(struct rt_log_file *f) AG_WUR;
void rt_log_file_fini(struct rt_log_file *f); /* idempotent */

/* ---- control protocol (rt_monitor_proto.c) --------------------------------
 * Frames on the monitor's unix stream socket, both directions:
 *   u8 type, u32 big-endian payload length, payload (<= RT_MON_PAYLOAD_MAX).
 * Requests (client -> monitor), each answered by one OK/ERR frame:
 *   'S' start           'T' status            'K' signal "<n>[ all]"
 *   'R' reopen-log      'W' resize "<rows> <cols>"
 *   'A' attach ["stdin"] -> OK, then the connection is an attach stream.
 * On an attach stream:
 *   client -> monitor: 'I' stdin bytes, 'C' close the container's stdin,
 *                      'W' resize (no reply on an attach stream)
 *   monitor -> client: 'O' stdout bytes, 'E' stderr bytes (tty: 'O' only),
 *                      'X' exited (payload: status text), then close.
 * Replies: 'Y' OK (payload: text, e.g. status), 'N' error "<errno> <message>".
 * Status text is "key=value" pairs separated by spaces (rt_mon_status_*). */
#define RT_MON_HDR_LEN 5
#define RT_MON_PAYLOAD_MAX 16384

enum rt_mon_type {
    RT_MON_START = 'S',
    RT_MON_STATUS = 'T',
    RT_MON_SIGNAL = 'K',
    RT_MON_REOPEN = 'R',
    RT_MON_RESIZE = 'W',
    RT_MON_ATTACH = 'A',
    RT_MON_STDIN = 'I',
    RT_MON_CLOSE_STDIN = 'C',
    RT_MON_STDOUT = 'O',
    RT_MON_STDERR = 'E',
    RT_MON_EXITED = 'X',
    RT_MON_OK = 'Y',
    RT_MON_ERR = 'N',
};

struct rt_mon_frame {
    uint8_t type;
    const uint8_t *payload; /* view into the parsed buffer */
    size_t len;
};

/* Parses one frame at the start of buf.  Returns the bytes it used (> 0),
 * 0 when buf holds only part of a frame, -EPROTO for an unknown type,
 * -EMSGSIZE for a payload over RT_MON_PAYLOAD_MAX.  Errors are fatal for
 * the connection. */
int rt_mon_frame_parse(const uint8_t *buf, size_t len, struct rt_mon_frame *out) AG_WUR;
/* Writes the 5-byte header of a frame into hdr. */
void rt_mon_frame_header(uint8_t hdr[RT_MON_HDR_LEN], uint8_t type, size_t len);
/* "<n>" or "<n> all", n in 1..64.  Returns 0 or -EINVAL. */
int rt_mon_parse_signal(const uint8_t *p, size_t len, int *sig, bool *all) AG_WUR;
/* "<rows> <cols>", each 0..65535.  Returns 0 or -EINVAL. */
int rt_mon_parse_resize(const uint8_t *p, size_t len, unsigned *rows, unsigned *cols) AG_WUR;

enum rt_mon_state { RT_MON_CREATED = 0, RT_MON_RUNNING = 1, RT_MON_EXITED_STATE = 2 };

/* What a monitor reports: the container's state and, once exited, how. */
struct rt_mon_status {
    enum rt_mon_state state;
    int monitor_pid;
    int pid; /* container init, as seen from the host */
    int exit_code; /* 128 + signal when killed by a signal */
    int signal;    /* 0 unless killed by a signal */
    bool oom_killed;
    int64_t created_at, started_at, finished_at; /* ns since the epoch, 0 = not yet */
};

/* Formats as "state=running monitor_pid=.. pid=.. ..." into out.  Returns
 * the length, or -ENOSPC. */
int rt_mon_status_format(const struct rt_mon_status *st, char *out, size_t out_len) AG_WUR;
/* Parses status text (unknown keys ignored, state and pid required).
 * Returns 0 or -EINVAL. */
int rt_mon_status_parse(const char *text, size_t len, struct rt_mon_status *out) AG_WUR;

/* ---- exit file (rt_monitor_exit.c) ------------------------------------------
 * Written atomically by the monitor when the container exits (or when the
 * monitor fails after the daemon's spawn returned), then the monitor exits:
 *   {"pid":N,"exit_code":N,"signal":N,"oom_killed":bool,"created_at":ns,
 *    "started_at":ns,"finished_at":ns,"error":"..."}
 * error is present only when the monitor itself failed (the container was
 * then killed); exit_code is then -1 if it never ran. */
struct rt_exit_status {
    struct rt_mon_status st; /* state is RT_MON_EXITED_STATE */
    char error[256];         /* empty when none */
};

/* Returns the JSON length, or -ENOSPC. */
int rt_exit_status_format(const struct rt_exit_status *es, char *out, size_t out_len) AG_WUR;
/* Parses the JSON above.  Returns 0 or -EINVAL (missing/mistyped field). */
int rt_exit_status_parse(const char *json, size_t len, struct rt_exit_status *out) AG_WUR;

/* ---- the monitor process (rt_monitor.c) ------------------------------------ */
/* `picocri monitor --id ID --bundle DIR --state-root DIR --exit-file FILE
 *  --log-path FILE [--socket PATH] [--tty] [--stdin] [--foreground]
 *  [--ready-fd N] [--debug-log FILE]`.
 * Without --foreground the command detaches (fork, setsid, fork: the monitor
 * is reparented to init or the nearest subreaper, so the daemon must not be
 * a subreaper itself), and the first process prints
 * "ok <monitor-pid> <container-pid>\n" on stdout once the container is
 * created (not started) and the socket listens, or "error <errno> <msg>\n"
 * and exits 1.  The socket defaults to <state-root>/<id>/monitor.sock (the
 * executor's state directory, created by rt_container_create); the exit file
 * must live outside it (rt_container_delete removes that directory).
 *
 * Life: created -> ('S') running -> init exits -> output drained (at most
 * MON_DRAIN_MS more while other processes hold the pipes) -> partial lines
 * flushed as F -> exit file written -> socket closed and unlinked -> attach
 * clients get 'X' -> the monitor exits 0.  The monitor never deletes the
 * container: the daemon calls rt_container_delete.
 *
 * Daemon restart: for every container it knows, rt_monitor_status() on the
 * socket; -ENOENT/-ECONNREFUSED/-ECONNRESET means the monitor is gone, and
 * the exit file (always written before the socket goes) has the status.
 * No socket and no exit file means the monitor was killed (SIGKILL/OOM):
 * report the container as UNKNOWN.
 *
 * Limits: MON_MAX_CLIENTS connections; a client more than 1 MiB behind is
 * dropped; 'C' (close stdin) is ignored for tty containers.  Returns the
 * process exit code. */
int rt_monitor_main(int argc, char **argv);

/* ---- daemon-side client (rt_monitor_client.c) -------------------------------
 * All blocking, each bounded by timeout_ms: call from the thread pool. */
struct rt_monitor_opts {
    const char *id, *bundle, *state_root; /* borrowed */
    const char *exit_file, *log_path, *socket_path;
    bool tty, stdin_open;
    const char *exe; /* NULL = /proc/self/exe */
};

/* Starts `<exe> monitor ...` detached and waits (at most timeout_ms) until
 * it reports the container created.  *monitor_pid and *ctr_pid get the pids.
 * Errors: the monitor's message (e.g. the executor's create error),
 * -ETIMEDOUT.  The monitor is not our child afterwards (double fork). */
int rt_monitor_spawn(const struct rt_monitor_opts *o, int timeout_ms, pid_t *monitor_pid,
                     pid_t *ctr_pid, struct ag_err *err) AG_WUR;
/* Connects to a monitor's socket (paths longer than sun_path are handled).
 * Returns an owned fd (close it) or -ECONNREFUSED/-ENOENT when the monitor is
 * gone (then read the exit file). */
int rt_monitor_connect(const char *socket_path, int timeout_ms, struct ag_err *err) AG_WUR;
/* One request/reply on a connected fd; reply text (NUL-terminated, OK
 * payload) is copied into out if out_len > 0.  A monitor 'N' reply becomes its
 * errno and message. */
int rt_monitor_request(int fd, uint8_t type, const char *payload, char *out, size_t out_len,
                       int timeout_ms, struct ag_err *err) AG_WUR;
/* Convenience wrappers: each connects, sends one request, closes. */
int rt_monitor_start(const char *socket_path, int timeout_ms, struct ag_err *err) AG_WUR;
int rt_monitor_signal(const char *socket_path, int sig, bool all, int timeout_ms,
                      struct ag_err *err) AG_WUR;
int rt_monitor_reopen_log(const char *socket_path, int timeout_ms, struct ag_err *err) AG_WUR;
int rt_monitor_resize(const char *socket_path, unsigned rows, unsigned cols, int timeout_ms,
                      struct ag_err *err) AG_WUR;
int rt_monitor_status(const char *socket_path, struct rt_mon_status *out, int timeout_ms,
                      struct ag_err *err) AG_WUR;
/* Opens an attach stream: returns an owned connected fd after the monitor's
 * OK; then read frames ('O','E','X') and write 'I'/'C'/'W' frames on it. */
int rt_monitor_attach(const char *socket_path, bool with_stdin, int timeout_ms,
                      struct ag_err *err) AG_WUR;
/* Writes one whole frame (blocking, bounded by timeout_ms). */
int rt_monitor_send_frame(int fd, uint8_t type, const void *payload, size_t len,
                          int timeout_ms) AG_WUR;
/* Fills addr for a unix socket path.  Paths too long for sun_path go
 * through "/proc/self/fd/<dirfd>/<name>": *dirfd_out then holds an O_PATH fd
 * of the directory that the caller closes after bind/connect (else -1).
 * Returns the address length, or -ENAMETOOLONG / -errno. */
struct sockaddr_un;
int rt_monitor_sockaddr(const char *path, struct sockaddr_un *addr, int *dirfd_out) AG_WUR;
/* Reads the exit file.  -ENOENT while the container has not exited. */
int rt_monitor_read_exit(const char *exit_file, struct rt_exit_status *out,
                         struct ag_err *err) AG_WUR;

#endif
