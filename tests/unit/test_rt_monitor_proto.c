/* Unit tests for the monitor's control protocol and exit file
 * (agent/runtime/rt_monitor_proto.c, rt_monitor_exit.c): frame parsing
 * (complete, partial, oversized, unknown), request payloads, status text
 * and exit JSON round trips and their rejections. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/un.h>

#include "runtime/rt_monitor.h"

static void test_frame_roundtrip(void **state)
{
    uint8_t buf[64];
    struct rt_mon_frame f;

    (void)state;
    rt_mon_frame_header(buf, RT_MON_SIGNAL, 2);
    memcpy(buf + RT_MON_HDR_LEN, "15", 2);
    /* Every prefix is "incomplete", the whole frame parses. */
    for (size_t i = 0; i < RT_MON_HDR_LEN + 2; i++)
        assert_int_equal(rt_mon_frame_parse(buf, i, &f), 0);
    assert_int_equal(rt_mon_frame_parse(buf, RT_MON_HDR_LEN + 2, &f), RT_MON_HDR_LEN + 2);
    assert_int_equal(f.type, RT_MON_SIGNAL);
    assert_int_equal(f.len, 2);
    assert_memory_equal(f.payload, "15", 2);
    /* Trailing bytes of the next frame are not consumed. */
    assert_int_equal(rt_mon_frame_parse(buf, sizeof(buf), &f), RT_MON_HDR_LEN + 2);
}

static void test_frame_errors(void **state)
{
    uint8_t buf[RT_MON_HDR_LEN] = {'?', 0, 0, 0, 0};
    struct rt_mon_frame f;

    (void)state;
    assert_int_equal(rt_mon_frame_parse(buf, 1, &f), -EPROTO);
    rt_mon_frame_header(buf, RT_MON_STDIN, RT_MON_PAYLOAD_MAX + 1);
    assert_int_equal(rt_mon_frame_parse(buf, sizeof(buf), &f), -EMSGSIZE);
    rt_mon_frame_header(buf, RT_MON_STDIN, 0xffffffffu);
    assert_int_equal(rt_mon_frame_parse(buf, sizeof(buf), &f), -EMSGSIZE);
    rt_mon_frame_header(buf, RT_MON_STATUS, 0);
    assert_int_equal(rt_mon_frame_parse(buf, sizeof(buf), &f), RT_MON_HDR_LEN);
    assert_int_equal(f.len, 0);
    assert_int_equal(rt_mon_frame_parse(buf, 0, &f), 0);
}

static int sig(const char *s, int *n, bool *all)
{
    return rt_mon_parse_signal((const uint8_t *)s, strlen(s), n, all);
}

static void test_signal_payload(void **state)
{
    int n;
    bool all;

    (void)state;
    assert_int_equal(sig("9", &n, &all), 0);
    assert_int_equal(n, 9);
    assert_false(all);
    assert_int_equal(sig("15 all", &n, &all), 0);
    assert_int_equal(n, 15);
    assert_true(all);
    assert_int_equal(sig("64", &n, &all), 0);
    const char *bad[] = {"", "0", "65", "-9", "9x", "9 ", "9 al", "9 all ", " 9", "all",
                         "99999999999999999999999"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(sig(bad[i], &n, &all), -EINVAL);
}

static void test_resize_payload(void **state)
{
    unsigned r, c;

    (void)state;
    assert_int_equal(rt_mon_parse_resize((const uint8_t *)"24 80", 5, &r, &c), 0);
    assert_int_equal(r, 24);
    assert_int_equal(c, 80);
    assert_int_equal(rt_mon_parse_resize((const uint8_t *)"0 65535", 7, &r, &c), 0);
    assert_int_equal(c, 65535);
    const char *bad[] = {"", "24", "24 ", "24  80", "65536 1", "1 -1", "a b", "24 80 1"};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rt_mon_parse_resize((const uint8_t *)bad[i], strlen(bad[i]), &r, &c),
                         -EINVAL);
}

static void test_status_roundtrip(void **state)
{
    struct rt_mon_status in, out;
    char text[512];

    (void)state;
    /* memset: the padding must compare equal too (the parser memsets). */
    memset(&in, 0, sizeof(in));
    in.state = RT_MON_EXITED_STATE;
    in.monitor_pid = 10;
    in.pid = 11;
    in.exit_code = 137;
    in.signal = 9;
    in.oom_killed = true;
    in.created_at = 1;
    in.started_at = 1704164645123456789LL;
    in.finished_at = 1704164646000000000LL;
    int n = rt_mon_status_format(&in, text, sizeof(text));
    assert_true(n > 0);
    assert_int_equal(rt_mon_status_parse(text, (size_t)n, &out), 0);
    assert_memory_equal(&in, &out, sizeof(in));
    assert_int_equal(rt_mon_status_format(&in, text, 10), -ENOSPC);
}

static int status(const char *s)
{
    struct rt_mon_status st;
    return rt_mon_status_parse(s, strlen(s), &st);
}

static void test_status_parse_rules(void **state)
{
    (void)state;
    assert_int_equal(status("state=running pid=5"), 0);
    assert_int_equal(status("state=created pid=5 future=abc"), 0); /* unknown keys skipped */
    assert_int_equal(status("pid=5"), -EINVAL);                    /* state required */
    assert_int_equal(status("state=running"), -EINVAL);            /* pid required */
    assert_int_equal(status("state=bogus pid=5"), -EINVAL);
    assert_int_equal(status("state=running pid=x"), -EINVAL);
    assert_int_equal(status("state=running pid=-1"), -EINVAL);
    assert_int_equal(status("state=running pid=5 =3"), -EINVAL);
    assert_int_equal(status("state=running pid=5 junk"), -EINVAL);
    assert_int_equal(status("state=running pid=5 signal=65"), -EINVAL);
    assert_int_equal(status("state=running pid=5 oom_killed=2"), -EINVAL);
    assert_int_equal(status(""), -EINVAL);
}

static void test_exit_roundtrip(void **state)
{
    struct rt_exit_status in, out;
    char json[1024];

    (void)state;
    memset(&in, 0, sizeof(in));
    in.st.state = RT_MON_EXITED_STATE;
    in.st.pid = 42;
    in.st.exit_code = 3;
    in.st.created_at = 5;
    in.st.started_at = 6;
    in.st.finished_at = 1704164646000000000LL;
    int n = rt_exit_status_format(&in, json, sizeof(json));
    assert_true(n > 0);
    assert_string_equal(json, "{\"pid\":42,\"exit_code\":3,\"signal\":0,\"oom_killed\":false,"
                              "\"created_at\":5,\"started_at\":6,"
                              "\"finished_at\":1704164646000000000}\n");
    assert_int_equal(rt_exit_status_parse(json, (size_t)n, &out), 0);
    assert_memory_equal(&in, &out, sizeof(in));

    snprintf(in.error, sizeof(in.error), "quote \" backslash \\ nl \n end");
    in.st.oom_killed = true;
    in.st.signal = 9;
    n = rt_exit_status_format(&in, json, sizeof(json));
    assert_true(n > 0);
    assert_int_equal(rt_exit_status_parse(json, (size_t)n, &out), 0);
    assert_string_equal(out.error, in.error);
    assert_true(out.st.oom_killed);
    assert_int_equal(out.st.signal, 9);
}

static void test_exit_parse_rejects(void **state)
{
    struct rt_exit_status out;
    const char *bad[] = {
        "",
        "[]",
        "{\"pid\":1}",
        "{\"pid\":1,\"exit_code\":0,\"signal\":0,\"oom_killed\":0,\"created_at\":0,"
        "\"started_at\":0,\"finished_at\":0}",
        "{\"pid\":1.5,\"exit_code\":0,\"signal\":0,\"oom_killed\":false,\"created_at\":0,"
        "\"started_at\":0,\"finished_at\":0}",
        "{\"pid\":1,\"exit_code\":0,\"signal\":99,\"oom_killed\":false,\"created_at\":0,"
        "\"started_at\":0,\"finished_at\":0}",
        "{\"pid\":1,\"exit_code\":0,\"signal\":0,\"oom_killed\":false,\"created_at\":0,"
        "\"started_at\":0,\"finished_at\":0,\"error\":3}",
        "{\"pid\":1,\"exit_code\":0,\"signal\":0,\"oom_killed\":false,\"created_at\":0,"
        "\"started_at\":0,\"finished_at\":-4}",
    };

    (void)state;
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_int_equal(rt_exit_status_parse(bad[i], strlen(bad[i]), &out), -EINVAL);
}

static void test_read_exit_file(void **state)
{
    char dir[] = "/tmp/test_rt_monitor.XXXXXX";
    char path[128];
    struct rt_exit_status in = {.st = {.pid = 7, .exit_code = 1, .finished_at = 9}}, out;
    struct ag_err err;
    char json[512];

    (void)state;
    ag_err_init(&err);
    assert_non_null(mkdtemp(dir));
    snprintf(path, sizeof(path), "%s/exit.json", dir);
    assert_int_equal(rt_monitor_read_exit(path, &out, &err), -ENOENT);
    int n = rt_exit_status_format(&in, json, sizeof(json));
    assert_true(n > 0);
    assert_int_equal(ag_file_write_atomic(path, json, (size_t)n, 0600), 0);
    assert_int_equal(rt_monitor_read_exit(path, &out, &err), 0);
    assert_int_equal(out.st.pid, 7);
    assert_int_equal(out.st.exit_code, 1);
    assert_int_equal(out.st.state, RT_MON_EXITED_STATE);
    assert_int_equal(ag_file_write_atomic(path, "{", 1, 0600), 0);
    assert_int_equal(rt_monitor_read_exit(path, &out, &err), -EINVAL);
    unlink(path);
    rmdir(dir);
}

static void test_sockaddr_long_path(void **state)
{
    char dir[] = "/tmp/test_rt_monitor.XXXXXX";
    char path[400];
    struct sockaddr_un addr;
    int dirfd;

    (void)state;
    assert_non_null(mkdtemp(dir));
    /* short: used as is */
    int len = rt_monitor_sockaddr("/run/x.sock", &addr, &dirfd);
    assert_true(len > 0);
    assert_int_equal(dirfd, -1);
    assert_string_equal(addr.sun_path, "/run/x.sock");
    /* long: through /proc/self/fd */
    memset(path, 0, sizeof(path));
    snprintf(path, sizeof(path), "%s/%0200d.sock", dir, 0);
    len = rt_monitor_sockaddr(path, &addr, &dirfd);
    assert_int_equal(len, -ENAMETOOLONG); /* basename itself too long */
    snprintf(path, sizeof(path), "%s/%0100d/m.sock", dir, 0);
    len = rt_monitor_sockaddr(path, &addr, &dirfd);
    assert_int_equal(len, -ENOENT); /* directory missing */
    path[strlen(path) - 7] = '\0';
    assert_int_equal(mkdir(path, 0700), 0);
    path[strlen(path)] = '/';
    len = rt_monitor_sockaddr(path, &addr, &dirfd);
    assert_true(len > 0);
    assert_true(dirfd >= 0);
    assert_true(strncmp(addr.sun_path, "/proc/self/fd/", 14) == 0);
    close(dirfd);
    path[strlen(path) - 7] = '\0';
    rmdir(path);
    rmdir(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_frame_roundtrip),    cmocka_unit_test(test_frame_errors),
        cmocka_unit_test(test_signal_payload),     cmocka_unit_test(test_resize_payload),
        cmocka_unit_test(test_status_roundtrip),   cmocka_unit_test(test_status_parse_rules),
        cmocka_unit_test(test_exit_roundtrip),     cmocka_unit_test(test_exit_parse_rejects),
        cmocka_unit_test(test_read_exit_file),     cmocka_unit_test(test_sockaddr_long_path),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
