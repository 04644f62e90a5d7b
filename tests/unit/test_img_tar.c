/* tests/unit: the streaming tar reader and the decompressor, with archives
 * built in memory (img_test_tar.h). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <stdio.h>
#include <string.h>

#include "image/image.h"
#include "img_test_tar.h"

struct rec {
    enum img_tar_type type;
    char path[IMG_TAR_PATH_MAX + 1], link[IMG_TAR_PATH_MAX + 1];
    uint32_t mode, uid, gid, major, minor;
    int64_t mtime;
    uint32_t nsec;
    uint64_t size;
    struct tw data;
    size_t ends;
    char xname[4][64];
    uint8_t xval[4][16];
    size_t xlen[4], xcount;
};

struct coll {
    struct rec recs[16];
    size_t n;
};

static int on_entry(void *ud, const struct img_tar_entry *e, struct ag_err *err)
{
    struct coll *c = ud;
    struct rec *r;

    if (c->n == AG_ARRAY_LEN(c->recs))
        return ag_err_set(err, -E2BIG, "too many entries for the test");
    r = &c->recs[c->n++];
    memset(r, 0, sizeof(*r));
    r->type = e->type;
    snprintf(r->path, sizeof(r->path), "%s", e->path);
    snprintf(r->link, sizeof(r->link), "%s", e->linkname);
    r->mode = e->mode;
    r->uid = e->uid;
    r->gid = e->gid;
    r->mtime = e->mtime_sec;
    r->nsec = e->mtime_nsec;
    r->size = e->size;
    r->major = e->dev_major;
    r->minor = e->dev_minor;
    for (size_t i = 0; i < e->xattrs_count && i < 4; i++) {
        snprintf(r->xname[i], sizeof(r->xname[i]), "%s", e->xattrs[i].name);
        r->xlen[i] = e->xattrs[i].value_len < 16 ? e->xattrs[i].value_len : 16;
        memcpy(r->xval[i], e->xattrs[i].value, r->xlen[i]);
        r->xcount++;
    }
    return 0;
}

static int on_data(void *ud, const uint8_t *d, size_t n, struct ag_err *err)
{
    struct coll *c = ud;
    (void)err;
    tw_put(&c->recs[c->n - 1].data, d, n);
    return 0;
}

static int on_end(void *ud, struct ag_err *err)
{
    struct coll *c = ud;
    (void)err;
    c->recs[c->n - 1].ends++;
    return 0;
}

static void coll_free(struct coll *c)
{
    for (size_t i = 0; i < c->n; i++)
        tw_free(&c->recs[i].data);
    c->n = 0;
}

/* Reads buf in chunks of `chunk` bytes; returns the first error. */
static int read_tar(const struct tw *buf, size_t chunk, struct coll *c, struct ag_err *err)
{
    static const struct img_tar_cbs cbs = {on_entry, on_data, on_end};
    struct img_tar *t;
    int rc = 0;

    memset(c, 0, sizeof(*c));
    assert_int_equal(img_tar_new(&cbs, c, &t), 0);
    for (size_t off = 0; off < buf->len && rc == 0; off += chunk) {
        size_t n = buf->len - off < chunk ? buf->len - off : chunk;
        rc = img_tar_feed(t, buf->buf + off, n, err);
    }
    if (rc == 0)
        rc = img_tar_finish(t, err);
    img_tar_free(t);
    return rc;
}

static const size_t chunks[] = {1, 7, 511, 512, 513, 100000};

static void test_basic(void **state)
{
    struct tw w = {0};
    struct coll c;
    struct ag_err err;
    struct tw_hdr dev = {.name = "dev/null", .type = '3', .major = 1, .minor = 3, .mode = 0666};
    struct tw_hdr pre = {.name = "file", .type = '0', .prefix = "some/prefix/dir"};
    struct tw_hdr suid = {.name = "bin/su", .type = '0', .mode = 04755, .uid = 0, .gid = 0};

    (void)state;
    ag_err_init(&err);
    tw_entry(&w, "etc/", '5', NULL);
    tw_file(&w, "etc/hello", "hello world\n");
    tw_entry(&w, "etc/link", '2', "hello");
    tw_entry(&w, "etc/hard", '1', "etc/hello");
    tw_header(&w, &dev);
    tw_entry(&w, "run/fifo", '6', NULL);
    tw_header(&w, &pre);
    tw_header(&w, &suid);
    tw_end(&w);
    for (size_t k = 0; k < AG_ARRAY_LEN(chunks); k++) {
        assert_int_equal(read_tar(&w, chunks[k], &c, &err), 0);
        assert_int_equal(c.n, 8);
        assert_int_equal(c.recs[0].type, IMG_TAR_DIR);
        assert_int_equal(c.recs[0].mode, 0755);
        assert_int_equal(c.recs[1].type, IMG_TAR_REG);
        assert_int_equal(c.recs[1].size, 12);
        assert_int_equal(c.recs[1].data.len, 12);
        assert_memory_equal(c.recs[1].data.buf, "hello world\n", 12);
        assert_int_equal(c.recs[1].ends, 1);
        assert_int_equal(c.recs[1].mtime, 1700000000);
        assert_int_equal(c.recs[2].type, IMG_TAR_SYMLINK);
        assert_string_equal(c.recs[2].link, "hello");
        assert_int_equal(c.recs[3].type, IMG_TAR_HARDLINK);
        assert_string_equal(c.recs[3].link, "etc/hello");
        assert_int_equal(c.recs[4].type, IMG_TAR_CHR);
        assert_int_equal(c.recs[4].major, 1);
        assert_int_equal(c.recs[4].minor, 3);
        assert_int_equal(c.recs[5].type, IMG_TAR_FIFO);
        assert_string_equal(c.recs[6].path, "some/prefix/dir/file");
        assert_int_equal(c.recs[7].mode, 04755);
        for (size_t i = 0; i < c.n; i++)
            assert_int_equal(c.recs[i].ends, 1);
        coll_free(&c);
    }
    tw_free(&w);
}

static void test_long_names(void **state)
{
    struct tw w = {0}, rec = {0};
    struct coll c;
    struct ag_err err;
    char longname[300], longlink[400], paxname[1000];
    static const uint8_t cap[] = {1, 0, 0, 2, 0x20, 0, 0, 0, 0, 0, 0, 0};

    (void)state;
    ag_err_init(&err);
    memset(longname, 'n', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    longname[50] = '/';
    memset(longlink, 'l', sizeof(longlink) - 1);
    longlink[sizeof(longlink) - 1] = '\0';
    memset(paxname, 'p', sizeof(paxname) - 1);
    paxname[sizeof(paxname) - 1] = '\0';
    /* GNU L + K */
    tw_gnu_long(&w, 'L', longname);
    tw_gnu_long(&w, 'K', longlink);
    tw_entry(&w, "truncated-name", '2', "truncated-link");
    /* PAX path, uid, gid, mtime, size, xattrs */
    tw_pax_record(&rec, "path", paxname, strlen(paxname));
    tw_pax_record(&rec, "uid", "3000000000", 10);
    tw_pax_record(&rec, "gid", "42", 2);
    tw_pax_record(&rec, "mtime", "1700000001.5", 12);
    tw_pax_record(&rec, "size", "5", 1);
    tw_pax_record(&rec, "SCHILY.xattr.security.capability", cap, sizeof(cap));
    tw_pax_record(&rec, "SCHILY.xattr.user.k", "v\0w", 3);
    tw_pax_record(&rec, "atime", "1.0", 3);
    tw_pax(&w, 'x', &rec);
    {
        struct tw_hdr h = {.name = "short", .type = '0', .size = 99 /* overridden */};
        tw_header(&w, &h);
        tw_put(&w, "12345", 5);
        tw_pad(&w);
    }
    /* A global header is skipped and does not apply. */
    tw_free(&rec);
    tw_pax_record(&rec, "path", "global", 6);
    tw_pax(&w, 'g', &rec);
    tw_file(&w, "after-global", "x");
    /* PAX linkpath for a hardlink */
    tw_free(&rec);
    tw_pax_record(&rec, "linkpath", paxname, strlen(paxname));
    tw_pax(&w, 'x', &rec);
    tw_entry(&w, "hl", '1', "ignored");
    tw_end(&w);
    for (size_t k = 0; k < AG_ARRAY_LEN(chunks); k++) {
        assert_int_equal(read_tar(&w, chunks[k], &c, &err), 0);
        assert_int_equal(c.n, 4);
        assert_string_equal(c.recs[0].path, longname);
        assert_string_equal(c.recs[0].link, longlink);
        assert_string_equal(c.recs[1].path, paxname);
        assert_int_equal(c.recs[1].uid, 3000000000u);
        assert_int_equal(c.recs[1].gid, 42);
        assert_int_equal(c.recs[1].mtime, 1700000001);
        assert_int_equal(c.recs[1].nsec, 500000000);
        assert_int_equal(c.recs[1].size, 5);
        assert_memory_equal(c.recs[1].data.buf, "12345", 5);
        assert_int_equal(c.recs[1].xcount, 2);
        assert_string_equal(c.recs[1].xname[0], "security.capability");
        assert_int_equal(c.recs[1].xlen[0], sizeof(cap));
        assert_memory_equal(c.recs[1].xval[0], cap, sizeof(cap));
        assert_int_equal(c.recs[1].xlen[1], 3);
        assert_memory_equal(c.recs[1].xval[1], "v\0w", 3);
        assert_string_equal(c.recs[2].path, "after-global");
        assert_int_equal(c.recs[2].xcount, 0);
        assert_string_equal(c.recs[3].path, "hl");
        assert_string_equal(c.recs[3].link, paxname);
        coll_free(&c);
    }
    tw_free(&rec);
    tw_free(&w);
}

static void test_base256(void **state)
{
    struct tw w = {0};
    struct coll c;
    struct ag_err err;
    struct tw_hdr h = {.name = "b256", .type = '0', .size = 3, .base256_size = 1};

    (void)state;
    ag_err_init(&err);
    tw_header(&w, &h);
    tw_put(&w, "abc", 3);
    tw_pad(&w);
    tw_end(&w);
    assert_int_equal(read_tar(&w, 512, &c, &err), 0);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.recs[0].size, 3);
    coll_free(&c);
    tw_free(&w);
}

struct bad {
    const char *what;
    int rc;
    const char *msg;
};

static void build_bad(int i, struct tw *w)
{
    struct tw rec = {0};
    char huge[IMG_TAR_PATH_MAX + 10];

    switch (i) {
    case 0: { /* bad checksum */
        struct tw_hdr h = {.name = "x", .bad_checksum = 1};
        tw_header(w, &h);
        tw_end(w);
        break;
    }
    case 1: /* truncated inside data */
        tw_file(w, "x", "0123456789");
        w->len -= 512 - 5;
        break;
    case 2: { /* a PAX header claiming 2 MiB: refused before allocating */
        struct tw_hdr h = {.name = "p", .type = 'x', .size = 2u << 20};
        tw_header(w, &h);
        break;
    }
    case 3: /* GNU long name longer than the path bound */
        memset(huge, 'a', sizeof(huge) - 1);
        huge[sizeof(huge) - 1] = '\0';
        tw_gnu_long(w, 'L', huge);
        tw_file(w, "x", "");
        break;
    case 4: /* sparse */
        tw_entry(w, "s", 'S', NULL);
        tw_end(w);
        break;
    case 5: /* malformed PAX record */
        tw_put(&rec, "99 path=x\n", 10);
        tw_pax(w, 'x', &rec);
        tw_file(w, "x", "");
        tw_end(w);
        break;
    case 6: /* huge size, short data: no allocation, truncation error */
    {
        struct tw_hdr h = {
            .name = "big", .type = '0', .size = (uint64_t)1 << 40, .base256_size = 1};
        tw_header(w, &h);
        tw_put(w, "abc", 3);
        break;
    }
    case 7: /* unknown type */
        tw_entry(w, "q", 'Q', NULL);
        break;
    case 8: /* lone zero block followed by a header */
        tw_put(w, (const uint8_t[512]){0}, 512);
        tw_file(w, "x", "y");
        break;
    case 9: /* PAX path with a NUL */
        tw_pax_record(&rec, "path", "a\0b", 3);
        tw_pax(w, 'x', &rec);
        tw_file(w, "x", "");
        break;
    case 10: /* too many xattrs */
        for (int k = 0; k < IMG_TAR_XATTR_MAX + 1; k++) {
            char key[64];
            snprintf(key, sizeof(key), "SCHILY.xattr.user.%d", k);
            tw_pax_record(&rec, key, "v", 1);
        }
        tw_pax(w, 'x', &rec);
        tw_file(w, "x", "");
        break;
    case 11: /* bad octal */
    {
        struct tw_hdr h = {.name = "o", .type = '0'};
        tw_header(w, &h);
        memcpy(w->buf + w->len - 512 + 100, "0009", 4); /* mode field, breaks checksum too */
        break;
    }
    case 12: /* empty name */
    {
        struct tw_hdr h = {.name = "", .type = '0'};
        tw_header(w, &h);
        tw_end(w);
        break;
    }
    }
    tw_free(&rec);
}

static const struct bad bads[] = {
    {"checksum", -EINVAL, "checksum"},     {"truncated", -EINVAL, "truncated"},
    {"pax size", -EFBIG, "PAX header"},    {"long name", -EFBIG, "GNU long name"},
    {"sparse", -ENOTSUP, "sparse"},        {"pax record", -EINVAL, "malformed PAX"},
    {"huge size", -EINVAL, "truncated"},   {"type", -ENOTSUP, "unsupported tar entry type"},
    {"zero", -EINVAL, "zero block"},       {"nul", -EINVAL, "NUL"},
    {"xattrs", -EFBIG, "xattrs"},          {"octal", -EINVAL, "checksum"},
    {"empty name", -EINVAL, "empty name"},
};

static void test_bad(void **state)
{
    struct ag_err err;
    struct coll c;

    (void)state;
    for (size_t i = 0; i < AG_ARRAY_LEN(bads); i++) {
        for (size_t k = 0; k < AG_ARRAY_LEN(chunks); k++) {
            struct tw w = {0};
            ag_err_init(&err);
            build_bad((int)i, &w);
            int rc = read_tar(&w, chunks[k], &c, &err);
            if (rc != bads[i].rc || strstr(err.msg, bads[i].msg) == NULL)
                fail_msg("%s (chunk %zu): rc %d \"%s\"", bads[i].what, chunks[k], rc, err.msg);
            coll_free(&c);
            tw_free(&w);
        }
    }
}

/* ---- decompression ---------------------------------------------------------- */

static int sink(void *ud, const uint8_t *d, size_t n, struct ag_err *err)
{
    (void)err;
    tw_put(ud, d, n);
    return 0;
}

static int decompress(enum img_compression comp, const struct tw *in, size_t chunk, uint64_t max,
                      struct tw *out, char *diff_id, struct ag_err *err)
{
    struct img_decomp *d;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    assert_int_equal(img_decomp_new(comp, max, sink, out, &d), 0);
    for (size_t off = 0; off < in->len && rc == 0; off += chunk) {
        size_t n = in->len - off < chunk ? in->len - off : chunk;
        rc = img_decomp_feed(d, in->buf + off, n, err);
    }
    if (rc == 0)
        rc = img_decomp_finish(d, diff_id, err);
    img_decomp_free(d);
    return rc;
}

static void test_decompress(void **state)
{
    struct tw plain = {0}, gz = {0}, zs = {0}, out;
    char want[IMG_DIGEST_MAX], got[IMG_DIGEST_MAX];
    struct ag_err err;

    (void)state;
    ag_err_init(&err);
    for (int i = 0; i < 20000; i++) {
        char line[32];
        int n = snprintf(line, sizeof(line), "line %d\n", i);
        tw_put(&plain, line, (size_t)n);
    }
    img_digest_sha256(plain.buf, plain.len, want);
    /* gzip in two members, zstd in one frame */
    tw_gzip(&gz, plain.buf, plain.len / 3);
    tw_gzip(&gz, plain.buf + plain.len / 3, plain.len - plain.len / 3);
    tw_zstd(&zs, plain.buf, plain.len);
    for (size_t k = 0; k < AG_ARRAY_LEN(chunks); k++) {
        assert_int_equal(decompress(IMG_COMP_GZIP, &gz, chunks[k], 0, &out, got, &err), 0);
        assert_int_equal(out.len, plain.len);
        assert_memory_equal(out.buf, plain.buf, plain.len);
        assert_string_equal(got, want);
        tw_free(&out);
        assert_int_equal(decompress(IMG_COMP_ZSTD, &zs, chunks[k], 0, &out, got, &err), 0);
        assert_int_equal(out.len, plain.len);
        assert_string_equal(got, want);
        tw_free(&out);
        assert_int_equal(decompress(IMG_COMP_NONE, &plain, chunks[k], 0, &out, got, &err), 0);
        assert_string_equal(got, want);
        tw_free(&out);
    }
    /* The bomb bound: one byte short of the output size. */
    assert_int_equal(decompress(IMG_COMP_GZIP, &gz, 4096, plain.len - 1, &out, got, &err), -EFBIG);
    assert_non_null(strstr(err.msg, "limit"));
    assert_true(out.len <= plain.len - 1);
    tw_free(&out);
    assert_int_equal(decompress(IMG_COMP_ZSTD, &zs, 4096, plain.len - 1, &out, got, &err), -EFBIG);
    tw_free(&out);
    assert_int_equal(decompress(IMG_COMP_NONE, &plain, 4096, 10, &out, got, &err), -EFBIG);
    tw_free(&out);
    assert_int_equal(decompress(IMG_COMP_GZIP, &gz, 4096, plain.len, &out, got, &err), 0);
    tw_free(&out);
    /* Truncated and corrupt streams. */
    gz.len -= 10;
    assert_int_equal(decompress(IMG_COMP_GZIP, &gz, 4096, 0, &out, got, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "truncated"));
    tw_free(&out);
    gz.len += 10;
    tw_put(&gz, "garbage!", 8);
    assert_int_equal(decompress(IMG_COMP_GZIP, &gz, 4096, 0, &out, got, &err), -EBADMSG);
    tw_free(&out);
    zs.len -= 3;
    assert_int_equal(decompress(IMG_COMP_ZSTD, &zs, 4096, 0, &out, got, &err), -EBADMSG);
    tw_free(&out);
    assert_int_equal(decompress(IMG_COMP_ZSTD, &plain, 4096, 0, &out, got, &err), -EBADMSG);
    tw_free(&out);
    /* Empty input is a truncated stream for gzip, fine for identity. */
    struct tw empty = {0};
    assert_int_equal(decompress(IMG_COMP_GZIP, &empty, 1, 0, &out, got, &err), -EBADMSG);
    assert_int_equal(decompress(IMG_COMP_NONE, &empty, 1, 0, &out, got, &err), 0);
    assert_string_equal(got,
                        "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    tw_free(&plain);
    tw_free(&gz);
    tw_free(&zs);
}

/* A real bomb: 64 MiB of zeros compresses to ~64 KiB; the 1 MiB bound
 * stops it early. */
static void test_bomb(void **state)
{
    size_t n = 64u << 20;
    uint8_t *zeros = calloc(1, n);
    struct tw gz = {0}, out;
    char got[IMG_DIGEST_MAX];
    struct ag_err err;

    (void)state;
    ag_err_init(&err);
    tw_gzip(&gz, zeros, n);
    free(zeros);
    assert_true(gz.len < n / 100);
    assert_int_equal(decompress(IMG_COMP_GZIP, &gz, gz.len, 1u << 20, &out, got, &err), -EFBIG);
    assert_true(out.len <= 1u << 20);
    tw_free(&out);
    tw_free(&gz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_basic),      cmocka_unit_test(test_long_names),
        cmocka_unit_test(test_base256),    cmocka_unit_test(test_bad),
        cmocka_unit_test(test_decompress), cmocka_unit_test(test_bomb),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
