/* Unit tests for the daemon side of the monitor (rt_monitor_client.c),
 * without root: rt_monitor_spawn against stand-in executables (scripts that
 * print a readiness line, fail, stay silent, or hang), and the request path
 * against a forked stand-in monitor that answers from a script of frames. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>

#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "runtime/rt_monitor.h"

static char dir[64];

static int setup(void **state)
{
    (void)state;
    snprintf(dir, sizeof(dir), "/tmp/test_rt_monclient.XXXXXX");
    return mkdtemp(dir) != NULL ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];

    (void)state;
    snprintf(cmd, sizeof(cmd), "rm -rf %s", dir);
    return system(cmd) == 0 ? 0 : -1;
}

static void write_script(const char *path, const char *body)
{
    char text[512];
    int n = snprintf(text, sizeof(text), "#!/bin/sh\n%s\n", body);

    assert_int_equal(ag_file_write_atomic(path, text, (size_t)n, 0700), 0);
}

static int spawn_with(const char *body, int timeout_ms, pid_t *m, pid_t *c, struct ag_err *err)
{
    char exe[128];
    struct rt_monitor_opts o = {.id = "c1", .bundle = "/b", .state_root = "/s",
                                .exit_file = "/e", .log_path = "/l", .exe = exe};

    snprintf(exe, sizeof(exe), "%s/fake-picocri", dir);
    write_script(exe, body);
    return rt_monitor_spawn(&o, timeout_ms, m, c, err);
}

static void test_spawn_ok_and_argv(void **state)
{
    char body[256], argfile[128], *args = NULL;
    size_t len;
    pid_t m = 0, c = 0;
    struct ag_err err;

    (void)state;
    ag_err_init(&err);
    snprintf(argfile, sizeof(argfile), "%s/args", dir);
    snprintf(body, sizeof(body), "echo \"$*\" > %s; echo ok 123 456", argfile);
    assert_int_equal(spawn_with(body, 5000, &m, &c, &err), 0);
    assert_int_equal(m, 123);
    assert_int_equal(c, 456);
    assert_int_equal(ag_file_read(argfile, 4096, &args, &len), 0);
    assert_string_equal(args, "monitor --id c1 --bundle /b --state-root /s --exit-file /e "
                              "--log-path /l\n");
    free(args);
}

static void test_spawn_reports_monitor_error(void **state)
{
    pid_t m, c;
    struct ag_err err;

    (void)state;
    ag_err_init(&err);
    assert_int_equal(spawn_with("echo 'error 2 create container c1: no such bundle'; exit 1",
                                5000, &m, &c, &err),
                     -ENOENT);
    assert_non_null(strstr(err.msg, "no such bundle"));
    ag_err_init(&err);
    assert_int_equal(spawn_with("exit 1", 5000, &m, &c, &err), -EIO);
    ag_err_init(&err);
    assert_int_equal(spawn_with("echo garbage", 5000, &m, &c, &err), -EIO);
}

static void test_spawn_timeout(void **state)
{
    pid_t m, c;
    struct ag_err err;
    int64_t t0 = ag_now_ns();

    (void)state;
    ag_err_init(&err);
    assert_int_equal(spawn_with("exec sleep 20", 200, &m, &c, &err), -ETIMEDOUT);
    assert_true(ag_now_ns() - t0 < 5000000000LL);
}

/* A stand-in monitor: accepts one connection, reads one frame, answers
 * with the given reply frame. */
static pid_t fake_monitor(const char *path, uint8_t type, const char *payload)
{
    struct sockaddr_un a = {.sun_family = AF_UNIX};
    int l = socket(AF_UNIX, SOCK_STREAM, 0);

    snprintf(a.sun_path, sizeof(a.sun_path), "%s", path);
    assert_int_equal(bind(l, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(l, 1), 0);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        uint8_t buf[64];
        size_t got = 0;
        struct rt_mon_frame f;
        int fd = accept(l, NULL, NULL);
        alarm(5);
        while (fd >= 0 && rt_mon_frame_parse(buf, got, &f) == 0) {
            ssize_t n = read(fd, buf + got, sizeof(buf) - got);
            if (n <= 0)
                _exit(1);
            got += (size_t)n;
        }
        if (payload != NULL && (rt_monitor_send_frame(fd, type, payload, strlen(payload), 1000) < 0))
            _exit(1);
        _exit(0);
    }
    close(l);
    return pid;
}

static void test_request_replies(void **state)
{
    char path[128], out[256];
    struct ag_err err;
    struct rt_mon_status st;
    int ws;

    (void)state;
    snprintf(path, sizeof(path), "%s/m.sock", dir);
    pid_t pid = fake_monitor(path, RT_MON_OK, "state=running monitor_pid=9 pid=10");
    ag_err_init(&err);
    assert_int_equal(rt_monitor_status(path, &st, 2000, &err), 0);
    assert_int_equal(st.state, RT_MON_RUNNING);
    assert_int_equal(st.pid, 10);
    waitpid(pid, &ws, 0);
    assert_int_equal(ws, 0);

    unlink(path);
    pid = fake_monitor(path, RT_MON_ERR, "22 container already started");
    ag_err_init(&err);
    assert_int_equal(rt_monitor_start(path, 2000, &err), -EINVAL);
    assert_string_equal(err.msg, "container already started");
    waitpid(pid, &ws, 0);

    unlink(path);
    pid = fake_monitor(path, RT_MON_OK, NULL); /* closes without a reply */
    ag_err_init(&err);
    int fd = rt_monitor_connect(path, 2000, &err);
    assert_true(fd >= 0);
    assert_int_equal(rt_monitor_request(fd, RT_MON_REOPEN, NULL, out, sizeof(out), 2000, &err),
                     -ECONNRESET);
    close(fd);
    waitpid(pid, &ws, 0);

    unlink(path);
    ag_err_init(&err);
    assert_int_equal(rt_monitor_signal(path, 9, false, 500, &err), -ENOENT);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_spawn_ok_and_argv, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spawn_reports_monitor_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_spawn_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_request_replies, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
