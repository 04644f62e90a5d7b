/* Unit tests for the runtime service (agent/runtime/rt_svc*.c) without
 * root: request validation, NOT_FOUND versus idempotent success, list
 * filters and byte-identical labels from stored records, wrong-state
 * errors, name reservation, recovery of records whose monitors and pod
 * namespaces are gone (the reboot case), and removal that tolerates
 * missing pieces.  Everything lives in a temporary directory; each test
 * runs its own loop to completion and closes it cleanly. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/store.h"

#ifdef ST_STORE_UNAVAILABLE
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "test_rt_svc: store.pb.h was not generated\n");
    return 1;
}
#else

#include <ftw.h>
#include <stdio.h>
#include <string.h>

#include "runtime/rt_svc.h"

struct fx {
    char dir[64], root[96], state[96];
    struct ag_config cfg;
    uv_loop_t loop;
    struct st_store *st;
    struct rt_svc *svc;
    struct ag_err err;
    int done_count;
    int last_code;
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static void open_svc(struct fx *f)
{
    struct rt_svc_opts o = {.loop = &f->loop,
                            .store = f->st,
                            .cfg = &f->cfg,
                            .cgroup_driver = "cgroupfs",
                            .exe = "/bin/false"};
    ag_err_init(&f->err);
    assert_int_equal(rt_svc_new(&o, &f->svc, &f->err), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    assert_non_null(f);
    snprintf(f->dir, sizeof(f->dir), "/tmp/rtsvc-test-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof(f->root), "%s/root", f->dir);
    snprintf(f->state, sizeof(f->state), "%s/state", f->dir);
    ag_log_set_level(AG_ERROR);
    ag_config_init(&f->cfg);
    free(f->cfg.root);
    free(f->cfg.state);
    free(f->cfg.cni_conf_dir);
    f->cfg.root = strdup(f->root);
    f->cfg.state = strdup(f->state);
    f->cfg.cni_conf_dir = strdup(f->dir); /* no CNI config there */
    assert_int_equal(uv_loop_init(&f->loop), 0);
    assert_int_equal(st_store_open(f->root, &f->loop, &f->st, &f->err), 0);
    *state = f;
    return 0;
}

static void close_svc(struct fx *f)
{
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(rt_svc_busy(f->svc), 0);
    rt_svc_free(f->svc);
    f->svc = NULL;
    uv_run(&f->loop, UV_RUN_DEFAULT);
}

static int teardown(void **state)
{
    struct fx *f = *state;

    if (f->svc != NULL)
        close_svc(f);
    assert_int_equal(st_store_pending(f->st), 0);
    st_store_close(f->st);
    assert_int_equal(uv_loop_close(&f->loop), 0);
    ag_config_fini(&f->cfg);
    nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void on_done(void *arg, const struct ag_err *err, const char *id)
{
    struct fx *f = arg;

    (void)id;
    f->done_count++;
    f->last_code = err->code;
}

/* ---- fixtures: records as a previous daemon left them ------------------------- */

static char *xstrdup(const char *s)
{
    char *p = strdup(s);
    assert_non_null(p);
    return p;
}

static void put_pod(struct fx *f, const char *id, picocri_store_PodState state, const char *app)
{
    picocri_store_PodRecord r = {0};
    runtime_v1_PodSandboxConfig *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->metadata = calloc(1, sizeof(*c->metadata));
    c->metadata->name = xstrdup(id + 60);
    c->metadata->namespace = xstrdup("ns");
    c->metadata->uid = xstrdup(id);
    c->labels_count = 1;
    c->labels = calloc(1, sizeof(*c->labels));
    c->labels[0].key = xstrdup("app");
    c->labels[0].value = xstrdup(app);
    r.id = xstrdup(id);
    r.config = c;
    r.state = state;
    r.created_at_ns = 1;
    r.state_dir = xstrdup("/nonexistent/pod");
    assert_int_equal(st_pod_put(f->st, ST_DEFAULT_NS, &r, NULL, NULL, &f->err), 0);
}

static void put_ctr(struct fx *f, const char *id, const char *pod, const char *name,
                    picocri_store_ContainerState state)
{
    picocri_store_ContainerRecord r = {0};
    runtime_v1_ContainerConfig *c = calloc(1, sizeof(*c));

    assert_non_null(c);
    c->metadata = calloc(1, sizeof(*c->metadata));
    c->metadata->name = xstrdup(name);
    c->labels_count = 1;
    c->labels = calloc(1, sizeof(*c->labels));
    c->labels[0].key = xstrdup("io.kubernetes.container.name");
    c->labels[0].value = xstrdup(name);
    c->annotations_count = 1;
    c->annotations = calloc(1, sizeof(*c->annotations));
    c->annotations[0].key = xstrdup("x");
    c->annotations[0].value = xstrdup(" bytes\twith\nodd chars ");
    r.id = xstrdup(id);
    r.pod_id = xstrdup(pod);
    r.config = c;
    r.state = state;
    r.created_at_ns = 2;
    r.image_id = xstrdup("sha256:0000000000000000000000000000000000000000000000000000000000000001");
    r.image_ref = xstrdup(r.image_id);
    r.monitor_socket = xstrdup("/nonexistent/monitor.sock");
    r.exit_file = xstrdup("/nonexistent/exit.json");
    assert_int_equal(st_container_put(f->st, ST_DEFAULT_NS, &r, NULL, NULL, &f->err), 0);
}

#define POD_A "aaaa000000000000000000000000000000000000000000000000000000000001"
#define POD_B "bbbb000000000000000000000000000000000000000000000000000000000002"
#define CTR_1 "cccc000000000000000000000000000000000000000000000000000000000003"
#define CTR_2 "dddd000000000000000000000000000000000000000000000000000000000004"

/* ---- tests --------------------------------------------------------------------- */

static void test_validation_and_not_found(void **state)
{
    struct fx *f = *state;
    runtime_v1_PodSandboxMetadata md = {
        .name = (char *)"p", .namespace = (char *)"n", .uid = (char *)"u"};
    runtime_v1_PodSandboxConfig pc = {.metadata = &md};
    runtime_v1_PodSandboxStatusResponse ps;
    runtime_v1_ContainerStatusResponse cs;
    char *argv[] = {(char *)"true", NULL};

    open_svc(f);
    assert_int_equal(rt_svc_pod_run(f->svc, &pc, "runc", on_done, f, &f->err), -EINVAL);
    assert_non_null(strstr(f->err.msg, "runtime handler"));
    md.uid = NULL;
    assert_int_equal(rt_svc_pod_run(f->svc, &pc, "", on_done, f, &f->err), -EINVAL);
    assert_int_equal(rt_svc_pod_status(f->svc, POD_A, false, &ps, &f->err), -ENOENT);
    assert_int_equal(rt_svc_ctr_status(f->svc, CTR_1, false, &cs, &f->err), -ENOENT);
    assert_int_equal(rt_svc_ctr_stop(f->svc, CTR_1, 0, on_done, f, &f->err), -ENOENT);
    assert_int_equal(rt_svc_ctr_start(f->svc, CTR_1, on_done, f, &f->err), -ENOENT);
    assert_int_equal(rt_svc_exec_sync(f->svc, CTR_1, argv, 1, 0, NULL, NULL, NULL, &f->err),
                     -ENOENT);
    assert_int_equal(rt_svc_exec_sync(f->svc, CTR_1, argv, 0, 0, NULL, NULL, NULL, &f->err),
                     -EINVAL);
    assert_int_equal(f->done_count, 0);
    /* Idempotent calls succeed for unknown ids. */
    assert_int_equal(rt_svc_pod_stop(f->svc, POD_A, on_done, f, &f->err), 0);
    assert_int_equal(rt_svc_pod_remove(f->svc, POD_A, on_done, f, &f->err), 0);
    assert_int_equal(rt_svc_ctr_remove(f->svc, CTR_1, on_done, f, &f->err), 0);
    assert_int_equal(f->done_count, 3);
    assert_int_equal(f->last_code, 0);
    assert_int_equal(rt_svc_pod_stop(f->svc, "", on_done, f, &f->err), -EINVAL);
}

static void test_create_checks(void **state)
{
    struct fx *f = *state;
    runtime_v1_ContainerMetadata cm = {.name = (char *)"web"};
    runtime_v1_ImageSpec img = {.image = (char *)"busybox"};
    runtime_v1_ContainerConfig cc = {.metadata = &cm, .image = &img};

    put_pod(f, POD_A, picocri_store_PodState_POD_STATE_READY, "a");
    put_pod(f, POD_B, picocri_store_PodState_POD_STATE_NOTREADY, "b");
    put_ctr(f, CTR_1, POD_A, "web", picocri_store_ContainerState_CONTAINER_STATE_EXITED);
    /* Recovery marks POD_A NOTREADY (its namespaces are gone): make it
     * READY again afterwards by re-putting it. */
    open_svc(f);
    put_pod(f, POD_A, picocri_store_PodState_POD_STATE_READY, "a");
    assert_int_equal(rt_svc_ctr_create(f->svc, "ffff", &cc, NULL, on_done, f, &f->err), -ENOENT);
    assert_int_equal(rt_svc_ctr_create(f->svc, POD_B, &cc, NULL, on_done, f, &f->err), -EBUSY);
    assert_int_equal(rt_svc_ctr_create(f->svc, POD_A, &cc, NULL, on_done, f, &f->err), -EEXIST);
    assert_non_null(strstr(f->err.msg, "reserved"));
    cm.attempt = 1;
    assert_int_equal(rt_svc_ctr_create(f->svc, POD_A, &cc, NULL, on_done, f, &f->err), -ENOENT);
    assert_non_null(strstr(f->err.msg, "image"));
    cm.name = NULL;
    assert_int_equal(rt_svc_ctr_create(f->svc, POD_A, &cc, NULL, on_done, f, &f->err), -EINVAL);
    assert_int_equal(f->done_count, 0);
}

static void test_lists_and_labels(void **state)
{
    struct fx *f = *state;
    runtime_v1_ListPodSandboxResponse pl;
    runtime_v1_ListContainersResponse cl;
    runtime_v1_ContainerStatusResponse cs;
    runtime_v1_PodSandboxFilter_LabelSelectorEntry sel = {.key = (char *)"app",
                                                          .value = (char *)"b"};
    runtime_v1_PodSandboxFilter pf = {.label_selector_count = 1, .label_selector = &sel};
    runtime_v1_ContainerStateValue exited = {.state = runtime_v1_ContainerState_CONTAINER_EXITED};
    /* (Recovery turned the CREATED one, whose bundle is gone, EXITED too.) */
    runtime_v1_ContainerFilter cf = {.state = &exited, .pod_sandbox_id = (char *)"aaaa"};

    put_pod(f, POD_A, picocri_store_PodState_POD_STATE_NOTREADY, "a");
    put_pod(f, POD_B, picocri_store_PodState_POD_STATE_NOTREADY, "b");
    put_ctr(f, CTR_1, POD_A, "one", picocri_store_ContainerState_CONTAINER_STATE_EXITED);
    put_ctr(f, CTR_2, POD_B, "two", picocri_store_ContainerState_CONTAINER_STATE_CREATED);
    open_svc(f);
    assert_int_equal(rt_svc_pod_list(f->svc, NULL, &pl, &f->err), 0);
    assert_int_equal(pl.items_count, 2);
    rt_svc_pod_list_fini(&pl);
    assert_int_equal(rt_svc_pod_list(f->svc, &pf, &pl, &f->err), 0);
    assert_int_equal(pl.items_count, 1);
    assert_string_equal(pl.items[0].id, POD_B);
    assert_string_equal(pl.items[0].labels[0].value, "b");
    rt_svc_pod_list_fini(&pl);
    pf.label_selector_count = 0;
    pf.id = (char *)"aaaa";
    assert_int_equal(rt_svc_pod_list(f->svc, &pf, &pl, &f->err), 0);
    assert_int_equal(pl.items_count, 1);
    rt_svc_pod_list_fini(&pl);

    assert_int_equal(rt_svc_ctr_list(f->svc, &cf, &cl, &f->err), 0);
    assert_int_equal(cl.containers_count, 1);
    assert_string_equal(cl.containers[0].id, CTR_1);
    assert_string_equal(cl.containers[0].annotations[0].value, " bytes\twith\nodd chars ");
    rt_svc_ctr_list_fini(&cl);
    cf.state = NULL;
    cf.pod_sandbox_id = (char *)POD_B;
    assert_int_equal(rt_svc_ctr_list(f->svc, &cf, &cl, &f->err), 0);
    assert_int_equal(cl.containers_count, 1);
    assert_string_equal(cl.containers[0].id, CTR_2);
    rt_svc_ctr_list_fini(&cl);

    assert_int_equal(rt_svc_ctr_status(f->svc, "cccc", true, &cs, &f->err), 0);
    assert_string_equal(cs.status->id, CTR_1);
    assert_int_equal(cs.status->created_at, 2);
    assert_int_equal(cs.info_count, 1);
    assert_non_null(strstr(cs.info[0].value, "\"sandboxID\""));
    rt_svc_ctr_status_fini(&cs);
}

static void test_recovery_after_reboot(void **state)
{
    struct fx *f = *state;
    runtime_v1_PodSandboxStatusResponse ps;
    runtime_v1_ContainerStatusResponse cs;

    put_pod(f, POD_A, picocri_store_PodState_POD_STATE_READY, "a");
    put_ctr(f, CTR_1, POD_A, "run", picocri_store_ContainerState_CONTAINER_STATE_RUNNING);
    put_ctr(f, CTR_2, POD_A, "new", picocri_store_ContainerState_CONTAINER_STATE_CREATED);
    open_svc(f);
    uv_run(&f->loop, UV_RUN_DEFAULT); /* exit processing of CTR_1 */
    assert_int_equal(rt_svc_pod_status(f->svc, POD_A, false, &ps, &f->err), 0);
    assert_int_equal(ps.status->state, runtime_v1_PodSandboxState_SANDBOX_NOTREADY);
    rt_svc_pod_status_fini(&ps);
    assert_int_equal(rt_svc_ctr_status(f->svc, CTR_1, false, &cs, &f->err), 0);
    assert_int_equal(cs.status->state, runtime_v1_ContainerState_CONTAINER_EXITED);
    assert_string_equal(cs.status->reason, "Unknown");
    assert_true(cs.status->finished_at > 0);
    rt_svc_ctr_status_fini(&cs);
    assert_int_equal(rt_svc_ctr_status(f->svc, CTR_2, false, &cs, &f->err), 0);
    assert_int_equal(cs.status->state, runtime_v1_ContainerState_CONTAINER_EXITED);
    rt_svc_ctr_status_fini(&cs);

    /* Stop and remove tolerate the missing pins, monitors and bundles. */
    assert_int_equal(rt_svc_ctr_stop(f->svc, CTR_1, 10, on_done, f, &f->err), 0);
    assert_int_equal(rt_svc_pod_stop(f->svc, POD_A, on_done, f, &f->err), 0);
    assert_int_equal(rt_svc_pod_remove(f->svc, POD_A, on_done, f, &f->err), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done_count, 3);
    assert_int_equal(f->last_code, 0);
    assert_int_equal(rt_svc_pod_status(f->svc, POD_A, false, &ps, &f->err), -ENOENT);
    assert_int_equal(rt_svc_ctr_status(f->svc, CTR_2, false, &cs, &f->err), -ENOENT);
    assert_int_equal(st_count(f->st, ST_DEFAULT_NS, ST_KIND_CONTAINER), 0);
}

static void test_run_pod_without_cni_fails_cleanly(void **state)
{
    struct fx *f = *state;
    runtime_v1_PodSandboxMetadata md = {
        .name = (char *)"p", .namespace = (char *)"n", .uid = (char *)"u"};
    runtime_v1_PodSandboxConfig pc = {.metadata = &md};

    open_svc(f);
    assert_int_equal(rt_svc_pod_run(f->svc, &pc, NULL, on_done, f, &f->err), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done_count, 1);
    assert_int_equal(f->last_code, -EAGAIN); /* network not ready: retry */
    assert_int_equal(st_count(f->st, ST_DEFAULT_NS, ST_KIND_POD), 0);
}

static void on_pod_stats(void *arg, const struct ag_err *err, const void *resp)
{
    struct fx *f = arg;
    const runtime_v1_PodSandboxStatsResponse *r = resp;

    f->done_count++;
    f->last_code = err->code;
    assert_int_equal(err->code, 0);
    assert_non_null(r->stats);
    assert_string_equal(r->stats->attributes->id, POD_A);
    /* The pod cgroup is gone (reboot): no process count from it, the
     * containers' (none running) sum, and no network of a NOTREADY pod. */
    assert_null(r->stats->linux->process);
    assert_null(r->stats->linux->network);
    assert_non_null(r->stats->linux->cpu);
    assert_int_equal(r->stats->linux->containers_count, 0);
}

/* Pod records with a pod cgroup that no longer exists; container stdio
 * settings for attach. */
static void test_pod_cgroup_absent_and_stdio(void **state)
{
    struct fx *f = *state;
    picocri_store_PodRecord pr = {0};
    picocri_store_ContainerRecord cr = {0};
    struct rt_svc_stdio io;

    put_pod(f, POD_A, picocri_store_PodState_POD_STATE_NOTREADY, "a");
    put_ctr(f, CTR_1, POD_A, "tty", picocri_store_ContainerState_CONTAINER_STATE_EXITED);
    put_ctr(f, CTR_2, POD_A, "plain", picocri_store_ContainerState_CONTAINER_STATE_EXITED);
    /* A pod cgroup that no longer exists; a container with stdin and tty. */
    {
        const picocri_store_PodRecord *r = NULL;
        const picocri_store_ContainerRecord *c = NULL;
        assert_int_equal(st_pod_get(f->st, ST_DEFAULT_NS, POD_A, &r, &f->err), 0);
        assert_int_equal(st_record_copy(ST_KIND_POD, r, &pr), 0);
        pr.cgroup_path = xstrdup("/picocri-unit-test-absent/pod-" POD_A);
        assert_int_equal(st_pod_put(f->st, ST_DEFAULT_NS, &pr, NULL, NULL, &f->err), 0);
        assert_int_equal(st_container_get(f->st, ST_DEFAULT_NS, CTR_1, &c, &f->err), 0);
        assert_int_equal(st_record_copy(ST_KIND_CONTAINER, c, &cr), 0);
        cr.config->stdin = cr.config->stdin_once = cr.config->tty = true;
        assert_int_equal(st_container_put(f->st, ST_DEFAULT_NS, &cr, NULL, NULL, &f->err), 0);
    }
    open_svc(f);
    assert_int_equal(rt_svc_ctr_stdio(f->svc, "cccc", &io, &f->err), 0);
    assert_true(io.stdin_open && io.stdin_once && io.tty);
    assert_int_equal(rt_svc_ctr_stdio(f->svc, CTR_2, &io, &f->err), 0);
    assert_false(io.stdin_open || io.stdin_once || io.tty);
    assert_int_equal(rt_svc_ctr_stdio(f->svc, "eeee", &io, &f->err), -ENOENT);

    assert_int_equal(rt_svc_pod_stats(f->svc, POD_A, on_pod_stats, f, &f->err), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done_count, 1);
    /* Removal tolerates the absent pod cgroup. */
    assert_int_equal(rt_svc_pod_remove(f->svc, POD_A, on_done, f, &f->err), 0);
    uv_run(&f->loop, UV_RUN_DEFAULT);
    assert_int_equal(f->done_count, 2);
    assert_int_equal(f->last_code, 0);
    assert_int_equal(st_count(f->st, ST_DEFAULT_NS, ST_KIND_POD), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_validation_and_not_found, setup, teardown),
        cmocka_unit_test_setup_teardown(test_create_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lists_and_labels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_recovery_after_reboot, setup, teardown),
        cmocka_unit_test_setup_teardown(test_run_pod_without_cni_fails_cleanly, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pod_cgroup_absent_and_stdio, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif
