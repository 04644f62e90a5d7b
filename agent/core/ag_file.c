/* agent/core: blocking file helpers (start-up or thread pool only), time and
 * string helpers.  ag_file_write_atomic() is how every record reaches disk:
 * write a temporary beside the target, fsync it, rename it over the target,
 * fsync the directory, so a crash leaves either the old or the new file.
 * ag_file_replace() skips both fsyncs, for files of the state directory
 * that a reboot discards anyway (each costs milliseconds on a disk). */
#include "ag_core.h"

#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

static int write_all(int fd, const void *data, size_t len)
{
    const char *p = data;

    while (len > 0) {
        ssize_t n = write(fd, p, len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        p += n;
        len -= (size_t)n;
    }
    return 0;
}

static int fsync_parent(const char *path)
{
    char dir[PATH_MAX];
    _cleanup_close_ int fd = -1;

    if (snprintf(dir, sizeof(dir), "%s", path) >= (int)sizeof(dir))
        return -ENAMETOOLONG;
    fd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -errno;
    return fsync(fd) < 0 ? -errno : 0;
}

static int write_replace(const char *path, const void *data, size_t len, int mode, bool durable)
{
    char tmp[PATH_MAX];
    _cleanup_close_ int fd = -1;
    int rc = -EIO;

    if (snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, (int)getpid()) >= (int)sizeof(tmp))
        return -ENAMETOOLONG;
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0)
        return -errno;
    rc = write_all(fd, data, len);
    if (rc == 0 && durable && fsync(fd) < 0)
        rc = -errno;
    if (rc == 0 && rename(tmp, path) < 0)
        rc = -errno;
    if (rc < 0) {
        unlink(tmp);
        return rc;
    }
    return durable ? fsync_parent(path) : 0;
}

int ag_file_write_atomic(const char *path, const void *data, size_t len, int mode)
{
    return write_replace(path, data, len, mode, true);
}

int ag_file_replace(const char *path, const void *data, size_t len, int mode)
{
    return write_replace(path, data, len, mode, false);
}

int ag_file_read(const char *path, size_t max_len, char **out, size_t *out_len)
{
    _cleanup_close_ int fd = open(path, O_RDONLY | O_CLOEXEC);
    _cleanup_free_ char *buf = NULL;
    size_t len = 0, cap = 4096;

    if (fd < 0)
        return -errno;
    buf = malloc(cap + 1);
    if (buf == NULL)
        return -ENOMEM;
    for (;;) {
        if (len == cap) {
            if (cap >= max_len)
                return -EFBIG;
            cap = cap * 2 > max_len ? max_len : cap * 2;
            char *nb = realloc(buf, cap + 1);
            if (nb == NULL)
                return -ENOMEM;
            buf = nb;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        if (n == 0)
            break;
        len += (size_t)n;
    }
    buf[len] = '\0';
    *out = steal_ptr(&buf);
    if (out_len != NULL)
        *out_len = len;
    return 0;
}

int ag_mkdir_p(const char *path, int mode)
{
    char buf[PATH_MAX];
    size_t n = strlen(path);

    if (n == 0 || n >= sizeof(buf))
        return n == 0 ? -EINVAL : -ENAMETOOLONG;
    memcpy(buf, path, n + 1);
    for (char *p = buf + 1; ; p++) {
        if (*p == '/' || *p == '\0') {
            char c = *p;
            *p = '\0';
            if (mkdir(buf, (mode_t)mode) < 0 && errno != EEXIST)
                return -errno;
            *p = c;
            if (c == '\0')
                break;
        }
    }
    struct stat st;
    if (stat(path, &st) < 0)
        return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
}

int64_t ag_now_ns(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int ag_path_join(char *out, size_t out_len, const char *a, const char *b)
{
    int n = snprintf(out, out_len, "%s/%s", a, b);

    return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : 0;
}

void ag_str_escape(char *out, size_t out_len, const char *s, size_t max_in)
{
    size_t o = 0;

    if (out_len == 0)
        return;
    for (size_t i = 0; s[i] != '\0' && i < max_in && o + 5 < out_len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c < 0x7f && c != '\\')
            out[o++] = (char)c;
        else
            o += (size_t)snprintf(out + o, out_len - o, "\\x%02x", c);
    }
    out[o] = '\0';
}
