/* agent/core: the pieces every other folder uses: errors with context,
 * the logger, ownership helpers (cleanup attributes), atomic file writes,
 * time, and the daemon configuration.
 *
 * Depends on libc and libuv only (the configuration reader also uses
 * libyaml, the one format the core reads).  Nothing here blocks except the
 * file helpers, which callers run from the thread pool or at start-up.
 */
#ifndef AG_CORE_H
#define AG_CORE_H

#include <errno.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#define AG_WUR __attribute__((warn_unused_result))
#define AG_PRINTF(a, b) __attribute__((format(printf, a, b)))

#ifndef PICOCRI_VERSION
#define PICOCRI_VERSION "0.1.0"
#endif

#define ag_container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))
#define AG_ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- errors -------------------------------------------------------------
 * Fallible functions return int: >= 0 success, negative errno on failure.
 * Across folder boundaries a caller-owned struct ag_err carries a message;
 * ag_err_wrap() puts context in front ("pull x: fetch y: connection reset").
 * No allocation, so it is usable on any path including out-of-memory. */
#define AG_ERR_MSG_LEN 512

struct ag_err {
    int code; /* negative errno, 0 when clear */
    char msg[AG_ERR_MSG_LEN];
};

void ag_err_init(struct ag_err *err);
/* Sets code and message; returns code (which must be negative). */
int ag_err_set(struct ag_err *err, int code, const char *fmt, ...) AG_PRINTF(3, 4);
/* Prefixes the existing message with "<context>: "; returns err->code. */
int ag_err_wrap(struct ag_err *err, const char *fmt, ...) AG_PRINTF(2, 3);

/* Our own bugs only; bad input is returned, never asserted. */
#define ag_assert(cond)                                                                            \
    do {                                                                                           \
        if (!(cond))                                                                               \
            ag__assert_fail(#cond, __FILE__, __LINE__);                                            \
    } while (0)
void ag__assert_fail(const char *expr, const char *file, int line) __attribute__((noreturn));

/* ---- logging ------------------------------------------------------------
 * ag_log(AG_INFO, "event key=value ...").  The level is checked before the
 * arguments are evaluated.  Lines go to the current sink (stderr by default)
 * as "time level message". */
enum ag_log_level { AG_ERROR, AG_WARN, AG_INFO, AG_DEBUG, AG_TRACE };

typedef void (*ag_log_sink_cb)(enum ag_log_level level, const char *line, size_t len);

extern enum ag_log_level ag__log_level;
void ag__log(enum ag_log_level level, const char *fmt, ...) AG_PRINTF(2, 3);
#define ag_log(level, ...)                                                                         \
    do {                                                                                           \
        if ((level) <= ag__log_level)                                                              \
            ag__log((level), __VA_ARGS__);                                                         \
    } while (0)
/* Returns 0, or -EINVAL for an unknown level name. */
int ag_log_level_parse(const char *name, enum ag_log_level *out) AG_WUR;
const char *ag_log_level_name(enum ag_log_level level);
void ag_log_set_level(enum ag_log_level level);
/* NULL restores the stderr sink. */
void ag_log_set_sink(ag_log_sink_cb sink);

/* ---- ownership helpers ---------------------------------------------------
 * Owning locals carry a cleanup attribute; steal_ptr()/steal_fd() hand the
 * value out and reset the local so the cleanup does nothing. */
#define _cleanup_(f) __attribute__((cleanup(f)))
#define _cleanup_free_ _cleanup_(ag__freep)
#define _cleanup_close_ _cleanup_(ag__closep)
static inline void ag__freep(void *p) { free(*(void **)p); }
static inline void ag__closep(int *fd)
{
    if (*fd >= 0) {
        int saved = errno;
        close(*fd);
        errno = saved;
    }
}
#define steal_ptr(pp)                                                                              \
    ({                                                                                             \
        __typeof__(*(pp)) steal__tmp = *(pp);                                                      \
        *(pp) = NULL;                                                                              \
        steal__tmp;                                                                                \
    })
static inline int steal_fd(int *fd)
{
    int v = *fd;
    *fd = -1;
    return v;
}

/* Aborting allocation, for start-up code only. */
void *ag_xmalloc(size_t n);
char *ag_xstrdup(const char *s);

/* ---- byte buffers -----------------------------------------------------------
 * A growable buffer for protocol output.  Growth may fail (-ENOMEM) and is
 * bounded by the caller's own limits, never by the buffer. */
struct ag_buf {
    uint8_t *data;
    size_t len, cap;
};
void ag_buf_init(struct ag_buf *b);
void ag_buf_fini(struct ag_buf *b); /* idempotent */
int ag_buf_reserve(struct ag_buf *b, size_t extra) AG_WUR;
int ag_buf_append(struct ag_buf *b, const void *data, size_t len) AG_WUR;
/* Drops the first n bytes (n <= len). */
void ag_buf_consume(struct ag_buf *b, size_t n);

/* ---- files, time, strings -------------------------------------------------
 * Blocking: start-up or thread pool only. */
/* Writes data to path atomically: temp file, fsync, rename, fsync dir. */
int ag_file_write_atomic(const char *path, const void *data, size_t len, int mode) AG_WUR;
/* The same rename, without the fsyncs: survives a crash of the process, not
 * of the machine (state-directory files, discarded after a reboot). */
int ag_file_replace(const char *path, const void *data, size_t len, int mode) AG_WUR;
/* Reads a whole file (at most max_len bytes, else -EFBIG); *out is owned,
 * NUL-terminated. */
int ag_file_read(const char *path, size_t max_len, char **out, size_t *out_len) AG_WUR;
/* mkdir -p with the given mode for created components. */
int ag_mkdir_p(const char *path, int mode) AG_WUR;
/* Wall-clock time in nanoseconds since the Unix epoch. */
int64_t ag_now_ns(void);
/* snprintf that reports truncation: returns -ENAMETOOLONG if out too small. */
int ag_path_join(char *out, size_t out_len, const char *a, const char *b) AG_WUR;
/* Copies s into out with control and non-ASCII bytes escaped as \xNN and
 * at most max_in input bytes: for logging untrusted strings. */
void ag_str_escape(char *out, size_t out_len, const char *s, size_t max_in);

/* ---- configuration --------------------------------------------------------
 * Paths and settings of `picocri serve`.  Defaults, then the YAML file named
 * by --config, then command-line flags.  Every path is absolute after
 * ag_config_finish(). */
struct ag_config {
    char *socket;      /* CRI socket */
    char *root;        /* persistent data */
    char *state;       /* runtime state */
    char *cni_conf_dir;
    char *cni_bin_dirs; /* colon-separated */
    char *registries;  /* k3s-style registries.yaml */
    char *cgroup_driver; /* "cgroupfs" or "systemd"; NULL = detect */
    char *stream_address; /* "HOST:PORT" of the streaming server; port 0 = random */
    enum ag_log_level log_level;
};

void ag_config_init(struct ag_config *cfg); /* defaults */
void ag_config_fini(struct ag_config *cfg);
/* Loads a YAML mapping of "key: value" settings (socket, root, state,
 * log-level, cni-conf-dir, cni-bin-dir, registries, cgroup-driver,
 * stream-address).
 * Unknown keys are an error, so a typo is not silently ignored. */
int ag_config_load(struct ag_config *cfg, const char *path, struct ag_err *err) AG_WUR;
/* Sets one setting by its key (as in the file and as the --flag name). */
int ag_config_set(struct ag_config *cfg, const char *key, const char *value,
                  struct ag_err *err) AG_WUR;

#endif
