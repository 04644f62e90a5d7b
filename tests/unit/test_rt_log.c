/* Unit tests for the CRI log writer (agent/runtime/rt_log.c): timestamp
 * format, record format, P/F splitting at exactly 16 KiB, fragments held
 * across reads and flushed at exit, the two streams kept apart, sink
 * errors, and the file sink's reopen. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "runtime/rt_monitor.h"

/* ---- a memory sink --------------------------------------------------------- */

struct mem_sink {
    char *buf;
    size_t len, cap;
    int fail_next; /* error to return for the next write, 0 = none */
    int writes;
};

static int mem_write(void *ctx, const struct iovec *iov, int n)
{
    struct mem_sink *s = ctx;

    s->writes++;
    if (s->fail_next) {
        int rc = s->fail_next;
        s->fail_next = 0;
        return rc;
    }
    for (int i = 0; i < n; i++) {
        if (s->len + iov[i].iov_len + 1 > s->cap) {
            s->cap = (s->len + iov[i].iov_len + 1) * 2;
            s->buf = realloc(s->buf, s->cap);
            assert_non_null(s->buf);
        }
        memcpy(s->buf + s->len, iov[i].iov_base, iov[i].iov_len);
        s->len += iov[i].iov_len;
        s->buf[s->len] = '\0';
    }
    return 0;
}

static const struct rt_log_sink_ops mem_ops = {.write = mem_write};

#define T0 1704164645123456789LL /* 2024-01-02T03:04:05.123456789Z */
#define TS "2024-01-02T03:04:05.123456789Z"

struct fixture {
    struct mem_sink sink;
    struct rt_log_writer w;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    rt_log_writer_init(&f->w, &mem_ops, &f->sink);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    rt_log_writer_fini(&f->w);
    rt_log_writer_fini(&f->w); /* idempotent */
    free(f->sink.buf);
    free(f);
    return 0;
}

static void feed(struct fixture *f, int stream, const char *s, size_t len)
{
    assert_int_equal(rt_log_writer_feed(&f->w, stream, s, len, T0), 0);
}

/* Splits the sink's text into records and checks each one's tag and
 * content length, returning the number of records. */
static size_t check_records(struct mem_sink *s, const char *stream, const char *tags,
                            const size_t *lens, char fill)
{
    const char *p = s->buf;
    size_t i = 0, hdr = strlen(TS) + 1 + strlen(stream) + 3;

    while (p != NULL && p < s->buf + s->len) {
        const char *nl = memchr(p, '\n', (size_t)(s->buf + s->len - p));
        assert_non_null(nl);
        assert_true(tags[i] != '\0');
        assert_memory_equal(p, TS " ", strlen(TS) + 1);
        assert_memory_equal(p + strlen(TS) + 1, stream, strlen(stream));
        assert_int_equal(p[hdr - 2], tags[i]);
        assert_int_equal(p[hdr - 1], ' ');
        assert_int_equal((size_t)(nl - p) - hdr, lens[i]);
        for (const char *c = p + hdr; c < nl; c++)
            assert_int_equal(*c, fill);
        p = nl + 1;
        i++;
    }
    assert_int_equal(tags[i], '\0');
    return i;
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_time_format(void **state)
{
    char out[RT_LOG_TIME_LEN + 1];

    (void)state;
    assert_int_equal(rt_log_format_time(0, out), 0);
    assert_string_equal(out, "1970-01-01T00:00:00.000000000Z");
    assert_int_equal(rt_log_format_time(T0, out), 0);
    assert_string_equal(out, TS);
    assert_int_equal(rt_log_format_time(1000000001LL, out), 0);
    assert_string_equal(out, "1970-01-01T00:00:01.000000001Z");
    assert_int_equal(rt_log_format_time(-1, out), -EOVERFLOW);
    assert_int_equal(strlen(out), RT_LOG_TIME_LEN);
}

static void test_full_lines(void **state)
{
    struct fixture *f = *state;

    feed(f, RT_LOG_STDOUT, "hello world\nsecond\n", 19);
    assert_string_equal(f->sink.buf, TS " stdout F hello world\n" TS " stdout F second\n");
    assert_int_equal(f->w.record_count, 2);
}

static void test_empty_line_and_no_newline_in_content(void **state)
{
    struct fixture *f = *state;

    feed(f, RT_LOG_STDERR, "\n\n", 2);
    assert_string_equal(f->sink.buf, TS " stderr F \n" TS " stderr F \n");
}

static void test_fragment_held_across_reads(void **state)
{
    struct fixture *f = *state;

    feed(f, RT_LOG_STDOUT, "hel", 3);
    assert_null(f->sink.buf);
    feed(f, RT_LOG_STDOUT, "lo", 2);
    assert_null(f->sink.buf);
    feed(f, RT_LOG_STDOUT, "\nnext", 5);
    assert_string_equal(f->sink.buf, TS " stdout F hello\n");
    assert_int_equal(rt_log_writer_flush(&f->w, -1, T0), 0);
    assert_string_equal(f->sink.buf, TS " stdout F hello\n" TS " stdout F next\n");
    /* Nothing left: a second flush writes nothing. */
    assert_int_equal(rt_log_writer_flush(&f->w, -1, T0), 0);
    assert_int_equal(f->w.record_count, 2);
}

static void test_streams_kept_apart(void **state)
{
    struct fixture *f = *state;

    feed(f, RT_LOG_STDOUT, "a", 1);
    feed(f, RT_LOG_STDERR, "b\n", 2);
    feed(f, RT_LOG_STDOUT, "c\n", 2);
    assert_string_equal(f->sink.buf, TS " stderr F b\n" TS " stdout F ac\n");
}

static void long_line(struct fixture *f, size_t len, size_t chunk, const char *tags,
                      const size_t *lens)
{
    char *line = malloc(len + 1);

    memset(line, 'x', len);
    line[len] = '\n';
    for (size_t off = 0; off < len + 1; off += chunk)
        feed(f, RT_LOG_STDOUT, line + off, off + chunk > len + 1 ? len + 1 - off : chunk);
    check_records(&f->sink, "stdout", tags, lens, 'x');
    free(line);
}

static void test_split_exact_max_is_one_f(void **state)
{
    long_line(*state, RT_LOG_LINE_MAX, 100000, "F", (size_t[]){RT_LOG_LINE_MAX});
}

static void test_split_max_plus_one(void **state)
{
    long_line(*state, RT_LOG_LINE_MAX + 1, 100000, "PF", (size_t[]){RT_LOG_LINE_MAX, 1});
}

static void test_split_two_p_in_small_chunks(void **state)
{
    /* Fed in 1000-byte reads: the held buffer fills to exactly 16 KiB. */
    long_line(*state, 2 * RT_LOG_LINE_MAX + 5, 1000, "PPF",
              (size_t[]){RT_LOG_LINE_MAX, RT_LOG_LINE_MAX, 5});
}

static void test_split_byte_by_byte_boundary(void **state)
{
    /* Byte by byte up to 2 x 16 KiB exactly: P then F of 16 KiB. */
    long_line(*state, 2 * RT_LOG_LINE_MAX, 1, "PF", (size_t[]){RT_LOG_LINE_MAX, RT_LOG_LINE_MAX});
}

static void test_split_fragment_flushed_at_exit(void **state)
{
    struct fixture *f = *state;
    char *buf = malloc(RT_LOG_LINE_MAX + 10);

    memset(buf, 'y', RT_LOG_LINE_MAX + 10);
    feed(f, RT_LOG_STDOUT, buf, RT_LOG_LINE_MAX + 10);
    assert_int_equal(rt_log_writer_flush(&f->w, RT_LOG_STDOUT, T0), 0);
    check_records(&f->sink, "stdout", "PF", (size_t[]){RT_LOG_LINE_MAX, 10}, 'y');
    free(buf);
}

static void test_held_then_long_continuation(void **state)
{
    struct fixture *f = *state;
    char *buf = malloc(3 * RT_LOG_LINE_MAX);

    memset(buf, 'z', 3 * RT_LOG_LINE_MAX);
    feed(f, RT_LOG_STDOUT, buf, 7);
    buf[RT_LOG_LINE_MAX * 2] = '\n';
    /* 7 held + 2*16384 more + newline = 32775 bytes: P P F(7). */
    feed(f, RT_LOG_STDOUT, buf, 2 * RT_LOG_LINE_MAX + 1);
    check_records(&f->sink, "stdout", "PPF", (size_t[]){RT_LOG_LINE_MAX, RT_LOG_LINE_MAX, 7}, 'z');
    free(buf);
}

static void test_sink_error_counts_and_continues(void **state)
{
    struct fixture *f = *state;

    f->sink.fail_next = -ENOSPC;
    assert_int_equal(rt_log_writer_feed(&f->w, RT_LOG_STDOUT, "lost\nkept\n", 10, T0), -ENOSPC);
    assert_int_equal(f->w.dropped_bytes, 4);
    assert_int_equal(f->w.last_err, -ENOSPC);
    assert_string_equal(f->sink.buf, TS " stdout F kept\n");
}

static void test_file_sink_and_reopen(void **state)
{
    char dir[] = "/tmp/test_rt_log.XXXXXX";
    char path[128], rotated[128];
    struct rt_log_file lf;
    struct rt_log_writer w;
    char *data = NULL;
    size_t len = 0;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/0.log", dir);
    snprintf(rotated, sizeof(rotated), "%s/0.log.20240102-030405", dir);
    rt_log_file_init(&lf);
    assert_int_equal(rt_log_file_reopen(&lf), -EBADF); /* never opened */
    assert_int_equal(rt_log_file_open(&lf, path), 0);
    rt_log_writer_init(&w, &rt_log_file_ops, &lf);
    assert_int_equal(rt_log_writer_feed(&w, RT_LOG_STDOUT, "one\ntw", 6, T0), 0);
    /* The kubelet renames the file, then asks for a reopen. */
    assert_int_equal(rename(path, rotated), 0);
    assert_int_equal(rt_log_file_reopen(&lf), 0);
    assert_int_equal(rt_log_writer_feed(&w, RT_LOG_STDOUT, "o\n", 2, T0), 0);
    assert_int_equal(rt_log_writer_flush(&w, -1, T0), 0);

    assert_int_equal(ag_file_read(rotated, 4096, &data, &len), 0);
    assert_string_equal(data, TS " stdout F one\n");
    free(data);
    assert_int_equal(ag_file_read(path, 4096, &data, &len), 0);
    assert_string_equal(data, TS " stdout F two\n");
    free(data);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);

    /* Append mode: a reopened existing file keeps its content. */
    assert_int_equal(rt_log_file_reopen(&lf), 0);
    assert_int_equal(rt_log_writer_feed(&w, RT_LOG_STDERR, "3\n", 2, T0), 0);
    assert_int_equal(ag_file_read(path, 4096, &data, &len), 0);
    assert_string_equal(data, TS " stdout F two\n" TS " stderr F 3\n");
    free(data);

    rt_log_writer_fini(&w);
    rt_log_file_fini(&lf);
    rt_log_file_fini(&lf);
    unlink(path);
    unlink(rotated);
    rmdir(dir);
}

static void test_reopen_failure_keeps_old_fd(void **state)
{
    char dir[] = "/tmp/test_rt_log.XXXXXX";
    char path[128];
    struct rt_log_file lf;
    struct rt_log_writer w;

    (void)state;
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/sub/0.log", dir);
    rt_log_file_init(&lf);
    assert_int_equal(rt_log_file_open(&lf, path), -ENOENT);
    snprintf(path, sizeof(path), "%s/0.log", dir);
    assert_int_equal(rt_log_file_open(&lf, path), 0);
    int old = lf.fd;
    /* Make the path unopenable: a directory in its place. */
    assert_int_equal(unlink(path), 0);
    assert_int_equal(mkdir(path, 0700), 0);
    assert_true(rt_log_file_reopen(&lf) < 0);
    assert_int_equal(lf.fd, old);
    rt_log_writer_init(&w, &rt_log_file_ops, &lf);
    assert_int_equal(rt_log_writer_feed(&w, RT_LOG_STDOUT, "x\n", 2, T0), 0);
    rt_log_file_fini(&lf);
    rmdir(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_time_format),
        cmocka_unit_test_setup_teardown(test_full_lines, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_line_and_no_newline_in_content, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fragment_held_across_reads, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streams_kept_apart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_exact_max_is_one_f, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_max_plus_one, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_two_p_in_small_chunks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_byte_by_byte_boundary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_fragment_flushed_at_exit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_held_then_long_continuation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sink_error_counts_and_continues, setup, teardown),
        cmocka_unit_test(test_file_sink_and_reopen),
        cmocka_unit_test(test_reopen_failure_keeps_old_fd),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
