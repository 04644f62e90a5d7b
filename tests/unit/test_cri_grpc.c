/* Unit tests of cri/cri_grpc.c: length-prefix reassembly, grpc-timeout
 * parsing, grpc-message percent-encoding, the errno <-> status table. */
#include "test_cri_harness.h"

static void test_timeout_table(void **state)
{
    static const struct {
        const char *in;
        int rc;
        int64_t ns;
    } cases[] = {
        {"1H", 0, 3600000000000LL},
        {"2M", 0, 120000000000LL},
        {"3S", 0, 3000000000LL},
        {"3999993m", 0, 3999993000000LL},
        {"119999785u", -EINVAL, 0}, /* 9 digits: over the limit of 8 */
        {"11999978u", 0, 11999978000LL},
        {"5n", 0, 5},
        {"0S", 0, 0},
        {"99999999H", 0, INT64_MAX}, /* clamped */
        {"99999999M", 0, 5999999940000000000LL},
        {"", -EINVAL, 0},
        {"S", -EINVAL, 0},
        {"10", -EINVAL, 0},
        {"10s", -EINVAL, 0},
        {"-1S", -EINVAL, 0},
        {"1 S", -EINVAL, 0},
        {"10x", -EINVAL, 0},
    };
    for (size_t i = 0; i < AG_ARRAY_LEN(cases); i++) {
        int64_t ns = -1;
        int rc = cri_grpc_timeout_parse(cases[i].in, strlen(cases[i].in), &ns);
        if (rc != cases[i].rc)
            fail_msg("case %s: rc %d", cases[i].in, rc);
        if (rc == 0 && ns != cases[i].ns)
            fail_msg("case %s: ns %lld", cases[i].in, (long long)ns);
    }
}

static void test_percent(void **state)
{
    static const struct {
        const char *in, *out;
    } cases[] = {
        {"plain text ~!", "plain text ~!"}, {"100%", "100%25"}, {"a\nb\tc", "a%0Ab%09c"},
        {"caf\xc3\xa9", "caf%C3%A9"},       {"\x7f", "%7F"},    {"", ""},
    };
    char out[64], back[64];
    for (size_t i = 0; i < AG_ARRAY_LEN(cases); i++) {
        cri_grpc_percent_encode(out, sizeof(out), cases[i].in);
        assert_string_equal(out, cases[i].out);
        cri_grpc_percent_decode(back, sizeof(back), out, strlen(out));
        assert_string_equal(back, cases[i].in);
    }
    /* Truncation keeps whole escapes. */
    cri_grpc_percent_encode(out, 6, "ab%%%");
    assert_string_equal(out, "ab%25");
    /* Bad escapes decode literally. */
    cri_grpc_percent_decode(back, sizeof(back), "%G1%4", 5);
    assert_string_equal(back, "%G1%4");
}

static void test_errno_table(void **state)
{
    assert_int_equal(cri_code_from_errno(-ENOENT), CRI_NOT_FOUND);
    assert_int_equal(cri_code_from_errno(-EEXIST), CRI_ALREADY_EXISTS);
    assert_int_equal(cri_code_from_errno(-EINVAL), CRI_INVALID_ARGUMENT);
    assert_int_equal(cri_code_from_errno(-ETIMEDOUT), CRI_DEADLINE_EXCEEDED);
    assert_int_equal(cri_code_from_errno(-ENOMEM), CRI_RESOURCE_EXHAUSTED);
    assert_int_equal(cri_code_from_errno(-ENOSPC), CRI_RESOURCE_EXHAUSTED);
    assert_int_equal(cri_code_from_errno(-EOPNOTSUPP), CRI_UNIMPLEMENTED);
    assert_int_equal(cri_code_from_errno(-ENOSYS), CRI_UNIMPLEMENTED);
    assert_int_equal(cri_code_from_errno(-EBUSY), CRI_FAILED_PRECONDITION);
    assert_int_equal(cri_code_from_errno(-EAGAIN), CRI_UNAVAILABLE);
    assert_int_equal(cri_code_from_errno(-ECANCELED), CRI_CANCELLED);
    assert_int_equal(cri_code_from_errno(-EPERM), CRI_PERMISSION_DENIED);
    assert_int_equal(cri_code_from_errno(-EACCES), CRI_PERMISSION_DENIED);
    assert_int_equal(cri_code_from_errno(-EIO), CRI_INTERNAL);
    assert_int_equal(cri_errno_from_code(CRI_NOT_FOUND), -ENOENT);
    assert_int_equal(cri_errno_from_code(CRI_OK), 0);
    assert_string_equal(cri_code_name(CRI_UNIMPLEMENTED), "Unimplemented");
}

/* Feeds buf in pieces of `step` bytes; returns messages found. */
static unsigned feed_all(const uint8_t *buf, size_t len, size_t step, struct cri_message *out,
                         unsigned max, int *last_rc)
{
    struct cri_framer f;
    unsigned n = 0;

    cri_framer_init(&f, 1000);
    *last_rc = 0;
    for (size_t off = 0; off < len && *last_rc >= 0;) {
        size_t piece = len - off < step ? len - off : step;
        const uint8_t *p = buf + off;
        off += piece;
        while (piece > 0) {
            size_t used;
            struct cri_message m;
            int rc = cri_framer_feed(&f, p, piece, &used, &m);
            assert_true(used <= piece);
            p += used;
            piece -= used;
            if (rc < 0) {
                *last_rc = rc;
                break;
            }
            if (rc == 1) {
                assert_true(n < max);
                out[n++] = m;
            }
        }
    }
    cri_framer_fini(&f);
    return n;
}

static void test_framer(void **state)
{
    static const uint8_t stream[] = {0, 0, 0, 0, 3, 'a', 'b', 'c', /* msg 1 */
                                     0, 0, 0, 0, 0,                /* empty msg */
                                     1, 0, 0, 0, 1, 'z'};          /* compressed */
    for (size_t step = 1; step <= sizeof(stream); step++) {
        struct cri_message m[4];
        int rc;
        unsigned n = feed_all(stream, sizeof(stream), step, m, 4, &rc);
        assert_int_equal(rc, 0);
        assert_int_equal(n, 3);
        assert_int_equal(m[0].len, 3);
        assert_memory_equal(m[0].data, "abc", 3);
        assert_int_equal(m[1].len, 0);
        assert_true(m[2].compressed);
        assert_false(m[0].compressed);
        for (unsigned i = 0; i < n; i++)
            free(m[i].data);
    }
    /* Over the limit: refused at the prefix, before any payload. */
    static const uint8_t big[] = {0, 0, 0, 0x03, 0xe9};
    struct cri_message m[1];
    int rc;
    assert_int_equal(feed_all(big, sizeof(big), 1, m, 1, &rc), 0);
    assert_int_equal(rc, -EMSGSIZE);
    /* At the limit: fine. A huge announced length allocates nothing yet. */
    struct cri_framer f;
    size_t used;
    struct cri_message out;
    cri_framer_init(&f, CRI_MAX_RECV_MSG);
    static const uint8_t huge[] = {0, 0x01, 0, 0, 0, 'x'};
    assert_int_equal(cri_framer_feed(&f, huge, sizeof(huge), &used, &out), 0);
    assert_int_equal(used, sizeof(huge));
    assert_true(cri_framer_partial(&f));
    assert_true(f.buf_cap <= 256);
    cri_framer_fini(&f);
}

static void test_encode(void **state)
{
    runtime_v1_VersionResponse r = {.version = (char *)"0.1.0"};
    uint8_t *buf;
    size_t len;
    assert_int_equal(cri_grpc_encode(runtime_v1_VersionResponse_fields, &r, &buf, &len), 0);
    assert_int_equal(len, 5 + 7);
    static const uint8_t want[] = {0, 0, 0, 0, 7, 0x0a, 5, '0', '.', '1', '.', '0'};
    assert_memory_equal(buf, want, len);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_timeout_table), cmocka_unit_test(test_percent),
        cmocka_unit_test(test_errno_table),   cmocka_unit_test(test_framer),
        cmocka_unit_test(test_encode),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
