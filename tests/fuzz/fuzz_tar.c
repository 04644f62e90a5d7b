/* libFuzzer target: the tar reader and the layer unpacker.
 * Byte 0 picks the chunk size the stream is cut into and whether this run
 * also unpacks; the rest is an uncompressed tar stream.
 *  - reader: checks entry invariants (non-empty NUL-free bounded paths,
 *    data bytes delivered == announced size, one end per entry).
 *  - unpacker (every 4th input): extracts into a fresh
 *    <tmp>/fuzz-tar-XXXXXX/layer, <tmp> = /dev/shm if writable, else /tmp
 *    (unprivileged mode, so no device nodes or
 *    ownership changes on the fuzzing host), then checks that nothing
 *    appeared beside "layer" and removes the tree.  It is slower than the
 *    reader alone, hence only a quarter of the inputs. */
#include <dirent.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

struct st {
    bool in_entry;
    uint64_t want, got;
};

static int on_entry(void *ud, const struct img_tar_entry *e, struct ag_err *err)
{
    struct st *s = ud;
    size_t n = strlen(e->path);

    (void)err;
    if (s->in_entry || n == 0 || n > IMG_TAR_PATH_MAX || strlen(e->linkname) > IMG_TAR_PATH_MAX ||
        e->xattrs_count > IMG_TAR_XATTR_MAX || (e->type != IMG_TAR_REG && e->size != 0))
        abort();
    for (size_t i = 0; i < e->xattrs_count; i++) {
        if (e->xattrs[i].value_len > IMG_TAR_XATTR_VALUE_MAX || e->xattrs[i].name[0] == '\0')
            abort();
    }
    s->in_entry = true;
    s->want = e->size;
    s->got = 0;
    return 0;
}

static int on_data(void *ud, const uint8_t *d, size_t n, struct ag_err *err)
{
    struct st *s = ud;

    (void)d;
    (void)err;
    if (!s->in_entry || n == 0)
        abort();
    s->got += n;
    if (s->got > s->want)
        abort();
    return 0;
}

static int on_end(void *ud, struct ag_err *err)
{
    struct st *s = ud;

    (void)err;
    if (!s->in_entry || s->got != s->want)
        abort();
    s->in_entry = false;
    return 0;
}

static void read_only(const uint8_t *p, size_t n, size_t chunk)
{
    static const struct img_tar_cbs cbs = {on_entry, on_data, on_end};
    struct st s = {0};
    struct img_tar *t;
    struct ag_err err;
    int rc = 0;

    if (img_tar_new(&cbs, &s, &t) != 0)
        return;
    for (size_t off = 0; off < n && rc == 0; off += chunk)
        rc = img_tar_feed(t, p + off, n - off < chunk ? n - off : chunk, &err);
    if (rc == 0 && img_tar_finish(t, &err) == 0 && s.in_entry)
        abort();
    img_tar_free(t);
}

static void rm_rf(int dfd, const char *name)
{
    struct stat st;
    if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return;
    if (S_ISDIR(st.st_mode)) {
        int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
        DIR *d = fd >= 0 ? fdopendir(fd) : NULL;
        struct dirent *de;
        fchmodat(dfd, name, 0700, 0);
        while (d && (de = readdir(d)) != NULL) {
            if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
                rm_rf(dirfd(d), de->d_name);
        }
        if (d)
            closedir(d);
        unlinkat(dfd, name, AT_REMOVEDIR);
    } else {
        unlinkat(dfd, name, 0);
    }
}

static void unpack(const uint8_t *p, size_t n, size_t chunk)
{
    char top[64], layer[96];
    struct img_unpack_opts o = {.flags = IMG_UNPACK_UNPRIVILEGED | IMG_UNPACK_USERXATTR,
                                .max_uncompressed = 16u << 20,
                                .max_entries = 2000};
    struct img_unpack *u;
    struct ag_err err;
    int rc = 0;

    /* tmpfs when there is one: a disk-backed /tmp makes each run ~100x slower. */
    snprintf(top, sizeof(top), "%s/fuzz-tar-XXXXXX",
             access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
    if (mkdtemp(top) == NULL)
        return;
    snprintf(layer, sizeof(layer), "%s/layer", top);
    if (mkdir(layer, 0755) == 0 && img_unpack_new(layer, &o, &u, &err) == 0) {
        for (size_t off = 0; off < n && rc == 0; off += chunk)
            rc = img_unpack_feed(u, p + off, n - off < chunk ? n - off : chunk, &err);
        if (rc == 0)
            (void)img_unpack_finish(u, NULL, &err);
        img_unpack_free(u);
    }
    /* Nothing may appear beside the layer directory. */
    DIR *d = opendir(top);
    struct dirent *de;
    while (d && (de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "layer"))
            abort();
    }
    if (d)
        closedir(d);
    rm_rf(AT_FDCWD, top);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const size_t chunks[] = {1, 3, 17, 100, 511, 512, 513, 4096};
    size_t chunk;

    if (size < 1)
        return 0;
    chunk = chunks[data[0] & 7];
    read_only(data + 1, size - 1, chunk);
    if ((data[0] >> 3) % 4 == 0)
        unpack(data + 1, size - 1, chunk);
    return 0;
}
