/* agent/runtime: the CRI container log writer.  The core turns the raw byte
 * streams of a container into CRI log records ("<time> <stream> <P|F>
 * <content>\n") without doing I/O itself; records go to a sink (the file
 * sink below, or memory in the unit tests).  It runs inside the monitor, so
 * it allocates at most one RT_LOG_LINE_MAX buffer per stream, and only when
 * a fragment must be held.
 *
 * Invariants: every byte fed is written exactly once, in order, per stream;
 * a P record always carries exactly RT_LOG_LINE_MAX bytes and is followed by
 * more content of the same line; a complete line (or the fragment flushed at
 * exit) ends with an F record.  If the line buffer cannot be allocated the
 * fragment is written at once as P rather than lost.
 */
#include "rt_monitor.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

static const char *const stream_names[2] = {"stdout", "stderr"};

int rt_log_format_time(int64_t ns, char *out)
{
    struct tm tm;
    time_t sec;
    int64_t frac;

    if (ns < 0)
        return -EOVERFLOW;
    sec = (time_t)(ns / 1000000000LL);
    frac = ns % 1000000000LL;
    if (gmtime_r(&sec, &tm) == NULL || tm.tm_year + 1900 > 9999)
        return -EOVERFLOW;
    int n = snprintf(out, RT_LOG_TIME_LEN + 1, "%04d-%02d-%02dT%02d:%02d:%02d.%09lldZ",
                     tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min,
                     tm.tm_sec, (long long)frac);
    return n == RT_LOG_TIME_LEN ? 0 : -EOVERFLOW;
}

void rt_log_writer_init(struct rt_log_writer *w, const struct rt_log_sink_ops *ops, void *ctx)
{
    memset(w, 0, sizeof(*w));
    w->ops = ops;
    w->ctx = ctx;
}

void rt_log_writer_fini(struct rt_log_writer *w)
{
    for (int i = 0; i < 2; i++) {
        free(w->part[i]);
        w->part[i] = NULL;
        w->part_len[i] = 0;
    }
}

/* One record: the header (time, stream, tag) and up to two content pieces
 * (a held fragment and its continuation are written without joining). */
static int emit(struct rt_log_writer *w, int stream, char tag, const void *a, size_t a_len,
                const void *b, size_t b_len, int64_t now_ns)
{
    char hdr[RT_LOG_TIME_LEN + 16];
    struct iovec iov[4];
    int n = 0, rc;

    rc = rt_log_format_time(now_ns, hdr);
    if (rc < 0)
        rc = rt_log_format_time(0, hdr); /* a clock before 1970: still write the bytes */
    if (rc < 0)
        return rc;
    snprintf(hdr + RT_LOG_TIME_LEN, sizeof(hdr) - RT_LOG_TIME_LEN, " %s %c ",
             stream_names[stream], tag);
    iov[n++] = (struct iovec){hdr, strlen(hdr)};
    if (a_len > 0)
        iov[n++] = (struct iovec){(void *)a, a_len};
    if (b_len > 0)
        iov[n++] = (struct iovec){(void *)b, b_len};
    iov[n++] = (struct iovec){(void *)"\n", 1};
    rc = w->ops->write(w->ctx, iov, n);
    if (rc < 0) {
        w->dropped_bytes += a_len + b_len;
        w->last_err = rc;
        return rc;
    }
    w->record_count++;
    return 0;
}

/* Holds a fragment (len <= RT_LOG_LINE_MAX - part_len).  Without a buffer,
 * writes it as P at once: a shorter P record beats losing bytes. */
static int hold(struct rt_log_writer *w, int s, const char *p, size_t len, int64_t now_ns)
{
    if (w->part[s] == NULL) {
        w->part[s] = malloc(RT_LOG_LINE_MAX);
        if (w->part[s] == NULL)
            return emit(w, s, 'P', p, len, NULL, 0, now_ns);
    }
    memcpy(w->part[s] + w->part_len[s], p, len);
    w->part_len[s] += len;
    return 0;
}

/* A piece of one line: seg_len content bytes, then a newline if has_nl. */
static int segment(struct rt_log_writer *w, int s, const char *p, size_t seg_len, bool has_nl,
                   int64_t now_ns)
{
    int rc = 0, r;

    for (;;) {
        size_t held = w->part_len[s];

        if (held == RT_LOG_LINE_MAX && seg_len > 0) {
            /* A full buffer with more content behind it: that is a P. */
            r = emit(w, s, 'P', w->part[s], held, NULL, 0, now_ns);
            rc = rc < 0 ? rc : r;
            w->part_len[s] = 0;
            continue;
        }
        if (held == 0 && seg_len > RT_LOG_LINE_MAX) {
            r = emit(w, s, 'P', p, RT_LOG_LINE_MAX, NULL, 0, now_ns);
            rc = rc < 0 ? rc : r;
            p += RT_LOG_LINE_MAX;
            seg_len -= RT_LOG_LINE_MAX;
            continue;
        }
        size_t room = RT_LOG_LINE_MAX - held;
        if (has_nl && seg_len <= room) {
            r = emit(w, s, 'F', w->part[s], held, p, seg_len, now_ns);
            w->part_len[s] = 0;
            return rc < 0 ? rc : r;
        }
        if (!has_nl && seg_len <= room) {
            if (seg_len > 0)
                r = hold(w, s, p, seg_len, now_ns);
            else
                r = 0;
            return rc < 0 ? rc : r;
        }
        /* More than fits: fill the held buffer to exactly one P record. */
        r = emit(w, s, 'P', w->part[s], held, p, room, now_ns);
        rc = rc < 0 ? rc : r;
        w->part_len[s] = 0;
        p += room;
        seg_len -= room;
    }
}

int rt_log_writer_feed(struct rt_log_writer *w, enum rt_log_stream stream, const void *data,
                       size_t len, int64_t now_ns)
{
    const char *p = data;
    int s = stream == RT_LOG_STDERR ? 1 : 0;
    int rc = 0, r;

    while (len > 0) {
        const char *nl = memchr(p, '\n', len);
        size_t seg = nl != NULL ? (size_t)(nl - p) : len;

        r = segment(w, s, p, seg, nl != NULL, now_ns);
        rc = rc < 0 ? rc : r;
        if (nl == NULL)
            break;
        p = nl + 1;
        len -= seg + 1;
    }
    return rc;
}

int rt_log_writer_flush(struct rt_log_writer *w, int stream, int64_t now_ns)
{
    int rc = 0;

    for (int s = 0; s < 2; s++) {
        if ((stream >= 0 && s != stream) || w->part_len[s] == 0)
            continue;
        int r = emit(w, s, 'F', w->part[s], w->part_len[s], NULL, 0, now_ns);
        w->part_len[s] = 0;
        rc = rc < 0 ? rc : r;
    }
    return rc;
}

/* ---- file sink ------------------------------------------------------------ */

static int file_write(void *ctx, const struct iovec *iov, int iov_count)
{
    struct rt_log_file *f = ctx;
    struct iovec v[4];
    int n = iov_count;

    if (f->fd < 0)
        return -EBADF;
    if (n > 4)
        return -EINVAL;
    memcpy(v, iov, sizeof(v[0]) * (size_t)n);
    /* O_APPEND makes each writev land at the end; a short write (disk full
     * at the edge) is continued so a record is never left half-written
     * unless the disk refuses the rest. */
    struct iovec *cur = v;
    while (n > 0) {
        ssize_t w = writev(f->fd, cur, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        size_t done = (size_t)w;
        while (n > 0 && done >= cur->iov_len) {
            done -= cur->iov_len;
            cur++;
            n--;
        }
        if (n > 0) {
            cur->iov_base = (char *)cur->iov_base + done;
            cur->iov_len -= done;
        }
    }
    return 0;
}

const struct rt_log_sink_ops rt_log_file_ops = {.write = file_write};

void rt_log_file_init(struct rt_log_file *f)
{
    f->fd = -1;
    f->path = NULL;
}

static int open_log(const char *path)
{
    int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);

    return fd < 0 ? -errno : fd;
}

int rt_log_file_open(struct rt_log_file *f, const char *path)
{
    char *copy = strdup(path);
    int fd;

    if (copy == NULL)
        return -ENOMEM;
    fd = open_log(path);
    if (fd < 0) {
        free(copy);
        return fd;
    }
    rt_log_file_fini(f);
    f->fd = fd;
    f->path = copy;
    return 0;
}

int rt_log_file_reopen(struct rt_log_file *f)
{
    int fd;

    if (f->path == NULL)
        return -EBADF;
    fd = open_log(f->path);
    if (fd < 0)
        return fd;
    if (f->fd >= 0)
        close(f->fd);
    f->fd = fd;
    return 0;
}

void rt_log_file_fini(struct rt_log_file *f)
{
    if (f->fd >= 0)
        close(f->fd);
    f->fd = -1;
    free(f->path);
    f->path = NULL;
}
