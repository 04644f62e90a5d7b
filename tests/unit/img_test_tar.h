/* tests/unit: a tiny in-memory tar writer and gzip/zstd helpers for the
 * image tests, so archives are built in C without external tools. */
#ifndef IMG_TEST_TAR_H
#define IMG_TEST_TAR_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

struct tw {
    uint8_t *buf;
    size_t len, cap;
};

static void tw_put(struct tw *w, const void *p, size_t n)
{
    if (n == 0)
        return;
    if (w->len + n > w->cap) {
        w->cap = (w->len + n) * 2 + 4096;
        w->buf = realloc(w->buf, w->cap);
        if (w->buf == NULL)
            abort();
    }
    memcpy(w->buf + w->len, p, n);
    w->len += n;
}

static void tw_pad(struct tw *w)
{
    static const uint8_t zero[512];
    size_t pad = (512 - w->len % 512) % 512;
    tw_put(w, zero, pad);
}

static void tw_octal(uint8_t *f, size_t n, uint64_t v)
{
    char tmp[32];
    snprintf(tmp, sizeof(tmp), "%0*llo", (int)(n - 1), (unsigned long long)v);
    memcpy(f, tmp, n - 1);
    f[n - 1] = 0;
}

static void tw_base256(uint8_t *f, size_t n, uint64_t v)
{
    memset(f, 0, n);
    for (size_t i = n; i-- > 1;) {
        f[i] = (uint8_t)(v & 0xff);
        v >>= 8;
    }
    f[0] = 0x80;
}

struct tw_hdr {
    const char *name;
    char type;
    uint64_t size;
    unsigned mode;
    const char *link;
    unsigned uid, gid;
    uint64_t mtime;
    unsigned major, minor;
    const char *prefix; /* ustar prefix field */
    int base256_size;
    int bad_checksum;
    int gnu_magic;
};

static void tw_header(struct tw *w, const struct tw_hdr *h)
{
    uint8_t b[512];
    unsigned sum = 0;

    memset(b, 0, sizeof(b));
    strncpy((char *)b, h->name, 100);
    tw_octal(b + 100, 8, h->mode ? h->mode : 0644);
    tw_octal(b + 108, 8, h->uid);
    tw_octal(b + 116, 8, h->gid);
    if (h->base256_size)
        tw_base256(b + 124, 12, h->size);
    else
        tw_octal(b + 124, 12, h->size);
    tw_octal(b + 136, 12, h->mtime ? h->mtime : 1700000000);
    b[156] = (uint8_t)(h->type ? h->type : '0');
    if (h->link)
        strncpy((char *)b + 157, h->link, 100);
    if (h->gnu_magic)
        memcpy(b + 257, "ustar  \0", 8);
    else
        memcpy(b + 257,
               "ustar\0"
               "00",
               8);
    tw_octal(b + 329, 8, h->major);
    tw_octal(b + 337, 8, h->minor);
    if (h->prefix)
        strncpy((char *)b + 345, h->prefix, 155);
    memset(b + 148, ' ', 8);
    for (size_t i = 0; i < 512; i++)
        sum += b[i];
    if (h->bad_checksum)
        sum++;
    tw_octal(b + 148, 7, sum);
    b[155] = ' ';
    tw_put(w, b, 512);
}

static void tw_file(struct tw *w, const char *name, const char *data)
{
    size_t n = data ? strlen(data) : 0;
    struct tw_hdr h = {.name = name, .type = '0', .size = n};
    tw_header(w, &h);
    tw_put(w, data, n);
    tw_pad(w);
}

static void tw_entry(struct tw *w, const char *name, char type, const char *link)
{
    struct tw_hdr h = {.name = name, .type = type, .link = link, .mode = type == '5' ? 0755 : 0};
    tw_header(w, &h);
}

/* One PAX record "len key=value\n"; value may hold NUL bytes (vlen). */
static void tw_pax_record(struct tw *rec, const char *key, const void *val, size_t vlen)
{
    size_t base = strlen(key) + vlen + 3; /* ' ' '=' '\n' */
    size_t digits = 1, total;
    char num[24];
    for (;;) {
        total = base + digits;
        snprintf(num, sizeof(num), "%zu", total);
        if (strlen(num) == digits)
            break;
        digits++;
    }
    tw_put(rec, num, strlen(num));
    tw_put(rec, " ", 1);
    tw_put(rec, key, strlen(key));
    tw_put(rec, "=", 1);
    tw_put(rec, val, vlen);
    tw_put(rec, "\n", 1);
}

static void tw_pax(struct tw *w, char type, const struct tw *rec)
{
    struct tw_hdr h = {.name = "PaxHeaders/x", .type = type, .size = rec->len};
    tw_header(w, &h);
    tw_put(w, rec->buf, rec->len);
    tw_pad(w);
}

static void tw_gnu_long(struct tw *w, char type, const char *name)
{
    struct tw_hdr h = {
        .name = "././@LongLink", .type = type, .size = strlen(name) + 1, .gnu_magic = 1};
    tw_header(w, &h);
    tw_put(w, name, strlen(name) + 1);
    tw_pad(w);
}

static void tw_end(struct tw *w)
{
    static const uint8_t zero[1024];
    tw_put(w, zero, sizeof(zero));
}

static void tw_free(struct tw *w)
{
    free(w->buf);
    memset(w, 0, sizeof(*w));
}

/* Appends one gzip member of in to out. */
static void tw_gzip(struct tw *out, const void *in, size_t n)
{
    z_stream z;
    uint8_t buf[16384];
    int rc;

    memset(&z, 0, sizeof(z));
    if (deflateInit2(&z, 6, Z_DEFLATED, 16 + MAX_WBITS, 8, Z_DEFAULT_STRATEGY) != Z_OK)
        abort();
    z.next_in = (Bytef *)in;
    z.avail_in = (uInt)n;
    do {
        z.next_out = buf;
        z.avail_out = sizeof(buf);
        rc = deflate(&z, Z_FINISH);
        tw_put(out, buf, sizeof(buf) - z.avail_out);
    } while (rc == Z_OK);
    if (rc != Z_STREAM_END)
        abort();
    deflateEnd(&z);
}

static void tw_zstd(struct tw *out, const void *in, size_t n)
{
    size_t cap = ZSTD_compressBound(n);
    uint8_t *buf = malloc(cap);
    size_t r = ZSTD_compress(buf, cap, in, n, 3);
    if (ZSTD_isError(r))
        abort();
    tw_put(out, buf, r);
    free(buf);
}

#endif
