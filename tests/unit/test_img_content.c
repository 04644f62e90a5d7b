/* Unit tests of agent/image/img_content.c: layout creation, ingest with
 * verification, mismatch rejected with nothing published, resume from a
 * partial file, stat/read/delete.  Runs a private uv loop per test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <sys/stat.h>

#include "image/img_net.h"

struct fx {
    uv_loop_t loop;
    char dir[64];
    struct img_content *c;
    /* callback records */
    int open_calls, open_status, commit_calls, commit_status;
    uint64_t open_offset, next_written;
    int written_calls;
    bool written_in_order;
    char commit_msg[AG_ERR_MSG_LEN];
};

static uint8_t blob[200000];
static char blob_digest[IMG_DIGEST_MAX];

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static int setup(void **state)
{
    struct fx *x = calloc(1, sizeof(*x));
    struct ag_err err;

    for (size_t i = 0; i < sizeof(blob); i++)
        blob[i] = (uint8_t)(i * 7 + (i >> 9));
    img_digest_sha256(blob, sizeof(blob), blob_digest);
    strcpy(x->dir, "/tmp/picocri-content-XXXXXX");
    assert_non_null(mkdtemp(x->dir));
    assert_int_equal(uv_loop_init(&x->loop), 0);
    ag_err_init(&err);
    assert_int_equal(img_content_open(x->dir, &x->c, &err), 0);
    *state = x;
    return 0;
}

static int teardown(void **state)
{
    struct fx *x = *state;

    img_content_free(x->c);
    assert_int_equal(uv_run(&x->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&x->loop), 0);
    nftw(x->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(x);
    return 0;
}

static void on_open(struct img_ingest *ing, int status, uint64_t offset, void *data)
{
    struct fx *x = data;

    x->open_calls++;
    x->open_status = status;
    x->open_offset = offset;
    x->next_written = offset;
    x->written_in_order = true;
}

static void on_written(struct img_ingest *ing, uint64_t off, const uint8_t *p, size_t n, void *data)
{
    struct fx *x = data;

    x->written_calls++;
    if (off != x->next_written || memcmp(p, blob + off, n) != 0)
        x->written_in_order = false;
    x->next_written = off + n;
}

static void on_commit(struct img_ingest *ing, int status, const struct ag_err *err, void *data)
{
    struct fx *x = data;

    x->commit_calls++;
    x->commit_status = status;
    snprintf(x->commit_msg, sizeof(x->commit_msg), "%s", err->msg);
}

static struct img_ingest *open_ingest(struct fx *x, const char *digest, int64_t size)
{
    struct img_ingest *ing = NULL;

    x->open_calls = 0;
    assert_int_equal(img_ingest_open(&x->loop, x->c, digest, size, on_open, x, &ing), 0);
    img_ingest_set_written_cb(ing, on_written);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(x->open_calls, 1);
    return ing;
}

static void write_range(struct img_ingest *ing, size_t from, size_t to)
{
    for (size_t off = from; off < to;) {
        size_t n = to - off < 7001 ? to - off : 7001;
        assert_int_equal(img_ingest_write(ing, blob + off, n), 0);
        off += n;
    }
}

static void commit(struct fx *x, struct img_ingest *ing)
{
    x->commit_calls = 0;
    assert_int_equal(img_ingest_commit(ing, on_commit), 0);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(x->commit_calls, 1);
}

static bool exists(const char *path) { return access(path, F_OK) == 0; }

static void paths(struct fx *x, char *final, char *partial)
{
    assert_int_equal(img_content_blob_path(x->c, blob_digest, final, PATH_MAX), 0);
    snprintf(partial, PATH_MAX, "%s/content/ingest/%s.partial", x->dir, blob_digest + 7);
}

static void test_layout(void **state)
{
    struct fx *x = *state;
    char p[PATH_MAX], *text = NULL;

    snprintf(p, sizeof(p), "%s/content/oci-layout", x->dir);
    assert_int_equal(ag_file_read(p, 4096, &text, NULL), 0);
    assert_non_null(strstr(text, "\"imageLayoutVersion\":\"1.0.0\""));
    free(text);
    snprintf(p, sizeof(p), "%s/content/index.json", x->dir);
    assert_true(exists(p));
    assert_int_equal(img_content_blob_path(x->c, "sha256:abc", p, sizeof(p)), -EINVAL);
    assert_int_equal(img_content_blob_path(x->c, "md5:00", p, sizeof(p)), -EINVAL);
}

static void stat_cb(int status, int64_t size, void *data)
{
    int64_t *out = data;
    *out = status < 0 ? status : size;
}

static void read_cb(int status, uint8_t *bytes, size_t len, void *data)
{
    int64_t *out = data;
    *out = status < 0 ? status : (int64_t)len;
    if (status == 0 && memcmp(bytes, blob, len) != 0)
        *out = -1000;
    free(bytes);
}

static void done_cb(int status, void *data) { *(int *)data = status; }

static void test_ingest_ok(void **state)
{
    struct fx *x = *state;
    char final[PATH_MAX], partial[PATH_MAX];
    int64_t got = 0;
    int del = 1;

    paths(x, final, partial);
    struct img_ingest *ing = open_ingest(x, blob_digest, sizeof(blob));
    assert_int_equal(x->open_status, 0);
    assert_int_equal(x->open_offset, 0);
    write_range(ing, 0, sizeof(blob));
    assert_int_equal(img_ingest_offset(ing), sizeof(blob));
    assert_int_equal(img_ingest_write(ing, blob, 1), -EFBIG);
    commit(x, ing);
    assert_int_equal(x->commit_status, 0);
    assert_true(x->written_in_order);
    assert_int_equal(x->next_written, sizeof(blob));
    assert_int_equal(img_ingest_backlog(ing), 0);
    img_ingest_free(ing);
    assert_true(exists(final));
    assert_false(exists(partial));

    assert_int_equal(img_content_stat(&x->loop, x->c, blob_digest, stat_cb, &got), 0);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(got, sizeof(blob));
    assert_int_equal(img_content_read(&x->loop, x->c, blob_digest, 1 << 20, read_cb, &got), 0);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(got, sizeof(blob));
    assert_int_equal(img_content_read(&x->loop, x->c, blob_digest, 100, read_cb, &got), 0);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(got, -EFBIG);

    /* Already published: nothing to fetch. */
    ing = open_ingest(x, blob_digest, sizeof(blob));
    assert_int_equal(x->open_status, 1);
    img_ingest_free(ing);

    assert_int_equal(img_content_delete(&x->loop, x->c, blob_digest, done_cb, &del), 0);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(del, 0);
    assert_false(exists(final));
    assert_int_equal(img_content_delete(&x->loop, x->c, blob_digest, done_cb, &del), 0);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(del, -ENOENT);
    assert_int_equal(img_content_stat(&x->loop, x->c, blob_digest, stat_cb, &got), 0);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(got, -ENOENT);
}

static void test_mismatch(void **state)
{
    struct fx *x = *state;
    char final[PATH_MAX], partial[PATH_MAX];

    paths(x, final, partial);
    struct img_ingest *ing = open_ingest(x, blob_digest, sizeof(blob));
    write_range(ing, 0, sizeof(blob) - 1);
    uint8_t wrong = blob[sizeof(blob) - 1] ^ 1;
    assert_int_equal(img_ingest_write(ing, &wrong, 1), 0);
    commit(x, ing);
    assert_int_equal(x->commit_status, -EBADMSG);
    assert_non_null(strstr(x->commit_msg, "digest mismatch"));
    img_ingest_free(ing);
    assert_false(exists(final));
    assert_false(exists(partial));

    /* Short: size mismatch, nothing published either. */
    ing = open_ingest(x, blob_digest, sizeof(blob));
    write_range(ing, 0, 1000);
    commit(x, ing);
    assert_int_equal(x->commit_status, -EBADMSG);
    assert_non_null(strstr(x->commit_msg, "size mismatch"));
    img_ingest_free(ing);
    assert_false(exists(final));
}

static void write_partial(const char *path, size_t n)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, blob, n), (ssize_t)n);
    close(fd);
}

static void test_resume(void **state)
{
    struct fx *x = *state;
    char final[PATH_MAX], partial[PATH_MAX];

    paths(x, final, partial);
    write_partial(partial, 123457);
    struct img_ingest *ing = open_ingest(x, blob_digest, sizeof(blob));
    assert_int_equal(x->open_status, 0);
    assert_int_equal(x->open_offset, 123457);
    assert_int_equal(img_ingest_offset(ing), 123457);
    write_range(ing, 123457, sizeof(blob));
    commit(x, ing);
    assert_int_equal(x->commit_status, 0);
    assert_true(x->written_in_order);
    img_ingest_free(ing);
    assert_true(exists(final));
    unlink(final);

    /* A partial longer than the blob is useless: start from zero. */
    write_partial(partial, sizeof(blob));
    int fd = open(partial, O_WRONLY | O_APPEND);
    assert_int_equal(write(fd, "xx", 2), 2);
    close(fd);
    ing = open_ingest(x, blob_digest, sizeof(blob));
    assert_int_equal(x->open_offset, 0);
    img_ingest_free(ing);

    /* Server ignored Range: reset, then the whole blob. */
    write_partial(partial, 5000);
    ing = open_ingest(x, blob_digest, sizeof(blob));
    assert_int_equal(x->open_offset, 5000);
    assert_int_equal(img_ingest_reset(ing), 0);
    assert_int_equal(img_ingest_offset(ing), 0);
    x->next_written = 0;
    write_range(ing, 0, sizeof(blob));
    commit(x, ing);
    assert_int_equal(x->commit_status, 0);
    assert_true(x->written_in_order);
    img_ingest_free(ing);
    assert_true(exists(final));
}

static void test_busy_and_free_inflight(void **state)
{
    struct fx *x = *state;
    struct img_ingest *a = NULL, *b = NULL;
    char final[PATH_MAX], partial[PATH_MAX];

    paths(x, final, partial);
    char ipath[PATH_MAX];
    assert_int_equal(img_content_ingest_path(x->c, blob_digest, ipath, sizeof(ipath)), 0);
    assert_string_equal(ipath, partial);
    assert_int_equal(img_content_ingest_path(x->c, "sha256:zz", ipath, sizeof(ipath)), -EINVAL);
    assert_int_equal(img_content_open_ingests(x->c), 0);
    assert_int_equal(img_ingest_open(&x->loop, x->c, blob_digest, sizeof(blob), on_open, x, &a), 0);
    assert_int_equal(img_content_open_ingests(x->c), 1);
    assert_int_equal(img_ingest_open(&x->loop, x->c, blob_digest, sizeof(blob), on_open, x, &b),
                     -EBUSY);
    assert_int_equal(img_ingest_open(&x->loop, x->c, "sha256:zz", 1, on_open, x, &b), -EINVAL);
    /* Freed while its open is on the thread pool: no callback, no leak;
     * it counts as open (the store must stay) until that work ended. */
    x->open_calls = 0;
    img_ingest_free(a);
    assert_int_equal(img_content_open_ingests(x->c), 1);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    assert_int_equal(x->open_calls, 0);
    assert_int_equal(img_content_open_ingests(x->c), 0);
    /* Partial data written before an interruption survives for a resume. */
    a = open_ingest(x, blob_digest, sizeof(blob));
    write_range(a, 0, 50000);
    img_ingest_free(a);
    uv_run(&x->loop, UV_RUN_DEFAULT);
    struct stat st;
    assert_int_equal(stat(partial, &st), 0);
    assert_true(st.st_size <= 50000);
    a = open_ingest(x, blob_digest, sizeof(blob));
    assert_int_equal(x->open_offset, (uint64_t)st.st_size);
    img_ingest_free(a);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_layout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_ingest_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_mismatch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_resume, setup, teardown),
        cmocka_unit_test_setup_teardown(test_busy_and_free_inflight, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
