/* agent/runtime: internal state of the monitor process, shared by
 * rt_monitor.c (command line, detach, set-up, exit) and rt_monitor_loop.c
 * (the poll loop: container output, control clients, attach, stdin). */
#ifndef RT_MONITOR_INT_H
#define RT_MONITOR_INT_H

#include "rt_monitor.h"
#include "runtime.h"

#define MON_MAX_CLIENTS 32
#define MON_READ_CHUNK 8192
/* Pending bytes for one client before it is dropped as too slow. */
#define MON_CLIENT_QUEUE_MAX (1u << 20)
/* Pending stdin bytes before attach clients stop being read. */
#define MON_STDIN_QUEUE_MAX (64u << 10)
/* After the init exits: how long to keep reading output held open by
 * other processes before the exit is recorded. */
#define MON_DRAIN_MS 2000
/* malloc: allocations of this size and more are separate mappings. */
#define MON_MMAP_THRESHOLD (16u << 10)

struct mon_client {
    int fd;     /* -1 = free slot */
    bool attach;
    bool attach_stdin;
    bool blocked; /* a stdin frame waits for room in the stdin queue */
    uint8_t *in;  /* RT_MON_HDR_LEN + RT_MON_PAYLOAD_MAX */
    size_t in_len;
    uint8_t *out; /* pending outbound bytes */
    size_t out_len, out_cap;
};

struct monitor {
    /* options (borrowed from argv) */
    const char *id, *bundle, *state_root, *exit_file, *log_path, *socket_path;
    bool tty, want_stdin, foreground;
    const char *debug_log;
    int ready_fd;

    struct rt_mon_status st;
    uint64_t oom_base; /* oom_kills of the cgroup at create */
    bool oom_known;
    int64_t drain_deadline_ns; /* 0 until the init exited */

    int sig_fd, listen_fd;
    int out_fd, err_fd; /* pipe read ends, or the pty master as out_fd */
    int in_fd;          /* stdin pipe write end, or a dup of the pty master */
    uint8_t *stdin_q;
    size_t stdin_q_len;

    struct rt_log_file log_file;
    struct rt_log_writer log;
    struct mon_client clients[MON_MAX_CLIENTS];
};

/* rt_monitor_loop.c */
void rt__mon_init_clients(struct monitor *m);
/* Runs until the container exited and its output is drained (or a fatal
 * error).  Returns 0 or a negative errno. */
int rt__mon_loop(struct monitor *m) AG_WUR;
/* Sends the exit frame to attach clients and flushes them, bounded. */
void rt__mon_clients_finish(struct monitor *m);
/* Reaps children; records the container's exit.  Returns true when the
 * container init was reaped by this call. */
bool rt__mon_reap(struct monitor *m);

/* rt_monitor.c */
/* Drops memory touched only by set-up (freed heap, stack below the
 * current frame, clean code pages) after the executor's create and start. */
void rt__mon_release_memory(void);
/* After rt__mon_release_memory(): drops the stack pages below the caller's
 * frame (but one).  Called by the loop just before it sleeps. */
void rt__mon_trim_stack(void);
/* Records the exit status of the container init (wait status). */
void rt__mon_record_exit(struct monitor *m, int wstatus);

#endif
