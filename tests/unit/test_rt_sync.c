/* Unit tests for the parent side of the create/exec sync protocol
 * (rt__parent_sync, agent/runtime/rt_container.c), played against a fake
 * child on a socketpair.  The intermediate process reports the init's pid
 * and the init may only begin after the parent's GO: a READY that arrives
 * first must fail the create, never succeed with no pid (the cleanup would
 * then signal pid 0, the caller's own process group). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>

#include "runtime/rt_container.h"

struct peer {
    struct rt_create_ctx c;
    int child_end;
    pid_t mid; /* a real, already exiting child: the parent reaps it */
};

static int setup(void **state)
{
    struct peer *p = calloc(1, sizeof(*p));
    int sv[2];

    if (p == NULL || socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) < 0)
        return -1;
    p->c.psync = sv[0];
    p->child_end = sv[1];
    p->mid = fork();
    if (p->mid == 0)
        _exit(0);
    *state = p;
    return p->mid > 0 ? 0 : -1;
}

static int teardown(void **state)
{
    struct peer *p = *state;

    close(p->c.psync);
    close(p->child_end);
    waitpid(p->mid, NULL, WNOHANG);
    free(p);
    return 0;
}

static void test_ready_before_pid_fails(void **state)
{
    struct peer *p = *state;
    struct ag_err err;
    pid_t init_pid = 0;

    ag_err_init(&err);
    assert_int_equal(rt__sync_send(p->child_end, RT_SYNC_READY, 0, NULL), 0);
    assert_int_equal(rt__parent_sync(&p->c, p->mid, &init_pid, false, &err), -EPROTO);
    assert_int_equal(init_pid, 0);
    assert_non_null(strstr(err.msg, "ready before pid"));
}

static void test_pid_then_go_then_ready(void **state)
{
    struct peer *p = *state;
    struct rt_sync_msg m;
    struct ag_err err;
    pid_t init_pid = 0;

    ag_err_init(&err);
    assert_int_equal(rt__sync_send(p->child_end, RT_SYNC_PID, 4242, NULL), 0);
    assert_int_equal(rt__sync_send(p->child_end, RT_SYNC_READY, 0, NULL), 0);
    assert_int_equal(rt__parent_sync(&p->c, p->mid, &init_pid, false, &err), 0);
    assert_int_equal(init_pid, 4242);
    /* The init was let go only after its pid was known. */
    assert_int_equal(rt__sync_recv(p->child_end, &m, 1000), 0);
    assert_int_equal(m.type, RT_SYNC_GO);
}

static void test_bad_pid_fails(void **state)
{
    struct peer *p = *state;
    struct ag_err err;
    pid_t init_pid = 0;

    ag_err_init(&err);
    assert_int_equal(rt__sync_send(p->child_end, RT_SYNC_PID, 0, NULL), 0);
    assert_int_equal(rt__parent_sync(&p->c, p->mid, &init_pid, false, &err), -EPROTO);
    assert_int_equal(init_pid, 0);
}

static void test_child_error_reported(void **state)
{
    struct peer *p = *state;
    struct ag_err err;
    pid_t init_pid = 0;

    ag_err_init(&err);
    assert_int_equal(rt__sync_send(p->child_end, RT_SYNC_ERROR, -ENOENT, "no such thing"), 0);
    assert_int_equal(rt__parent_sync(&p->c, p->mid, &init_pid, false, &err), -ENOENT);
    assert_non_null(strstr(err.msg, "no such thing"));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_ready_before_pid_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pid_then_go_then_ready, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_pid_fails, setup, teardown),
        cmocka_unit_test_setup_teardown(test_child_error_reported, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
