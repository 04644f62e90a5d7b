/* Unit tests of the cri/ gRPC server engine, driven in memory by an
 * nghttp2 client session: unary success, Trailers-Only errors, framing,
 * limits, deadlines, cancellation, asynchronous and streaming calls, many
 * concurrent streams. */
#include "test_cri_harness.h"

/* ---- test handlers -------------------------------------------------------- */

static struct cri_call *pending[2048];
static unsigned pending_count;
static unsigned cancel_count;

static void on_test_cancel(struct cri_call *call, void *data)
{
    cancel_count++;
    assert_true(cri_call_cancelled(call));
}

static void h_async(struct cri_call *call, void *req)
{
    assert_true(pending_count < AG_ARRAY_LEN(pending));
    pending[pending_count++] = call;
    cri_call_on_cancel(call, on_test_cancel, NULL);
}

static void h_fail(struct cri_call *call, void *req)
{
    struct ag_err err;
    ag_err_init(&err);
    ag_err_set(&err, -ENOENT, "pod 100%% gone: caf\xc3\xa9\n");
    cri_call_fail(call, &err);
}

static void h_stream3(struct cri_call *call, void *req)
{
    static const char *const v[] = {"one", "two", "three"};
    for (int i = 0; i < 3; i++) {
        runtime_v1_VersionResponse r = {.version = (char *)v[i]};
        assert_int_equal(cri_call_send(call, &r), 0);
    }
    cri_call_finish(call, NULL);
}

static void h_big(struct cri_call *call, void *req)
{
    size_t n = 3 * 1024 * 1024;
    char *v = malloc(n + 1);
    assert_non_null(v);
    memset(v, 'b', n);
    v[n] = '\0';
    runtime_v1_VersionResponse r = {.version = v};
    cri_call_reply(call, &r);
    free(v);
}

static const struct cri_method test_methods[] = {
    {"/t.S/Version", "Version", runtime_v1_VersionRequest_fields, sizeof(runtime_v1_VersionRequest),
     runtime_v1_VersionResponse_fields, sizeof(runtime_v1_VersionResponse), false,
     cri_runtime_version},
    {"/t.S/Async", "Async", runtime_v1_VersionRequest_fields, sizeof(runtime_v1_VersionRequest),
     runtime_v1_VersionResponse_fields, sizeof(runtime_v1_VersionResponse), false, h_async},
    {"/t.S/Fail", "Fail", runtime_v1_VersionRequest_fields, sizeof(runtime_v1_VersionRequest),
     runtime_v1_VersionResponse_fields, sizeof(runtime_v1_VersionResponse), false, h_fail},
    {"/t.S/Stream", "Stream", runtime_v1_VersionRequest_fields, sizeof(runtime_v1_VersionRequest),
     runtime_v1_VersionResponse_fields, sizeof(runtime_v1_VersionResponse), true, h_stream3},
    {"/t.S/Big", "Big", runtime_v1_VersionRequest_fields, sizeof(runtime_v1_VersionRequest),
     runtime_v1_VersionResponse_fields, sizeof(runtime_v1_VersionResponse), false, h_big},
    {"/t.S/Unimpl", "Unimpl", runtime_v1_VersionRequest_fields, sizeof(runtime_v1_VersionRequest),
     runtime_v1_VersionResponse_fields, sizeof(runtime_v1_VersionResponse), false,
     cri_unimplemented},
};

static int setup(void **state)
{
    struct harness *h = malloc(sizeof(*h));
    h_init(h, test_methods, AG_ARRAY_LEN(test_methods));
    pending_count = 0;
    cancel_count = 0;
    *state = h;
    return 0;
}

static int teardown(void **state)
{
    h_fini(*state);
    free(*state);
    return 0;
}

static int32_t version_call(struct harness *h, const char *path, const char *const *extra)
{
    runtime_v1_VersionRequest req = {.version = (char *)"0.1.0"};
    return h_request(h, path, runtime_v1_VersionRequest_fields, &req, extra);
}

/* ---- tests ------------------------------------------------------------------ */

static void test_unary_ok(void **state)
{
    struct harness *h = *state;
    int32_t id = version_call(h, "/t.S/Version", NULL);
    h_pump(h);
    struct h_stream *st = h_stream(h, id);
    assert_true(st->closed);
    assert_int_equal(st->http_status, 200);
    assert_int_equal(st->grpc_status, 0);
    assert_int_equal(st->headers_frames, 2); /* headers + trailers */
    assert_int_equal(st->msg_count, 1);
    runtime_v1_VersionResponse r = runtime_v1_VersionResponse_init_zero;
    h_decode(st, 0, runtime_v1_VersionResponse_fields, &r);
    assert_string_equal(r.runtime_name, "picocri");
    assert_string_equal(r.runtime_api_version, "v1");
    assert_string_equal(r.version, "0.1.0");
    pb_release(runtime_v1_VersionResponse_fields, &r);
    assert_int_equal(cri_conn_stream_count(h->srv), 0);
}

static void test_trailers_only_error(void **state)
{
    struct harness *h = *state;
    int32_t id = version_call(h, "/t.S/Fail", NULL);
    h_pump(h);
    struct h_stream *st = h_stream(h, id);
    assert_true(st->closed);
    assert_int_equal(st->headers_frames, 1);
    assert_int_equal(st->data_bytes, 0);
    assert_int_equal(st->http_status, 200);
    assert_int_equal(st->grpc_status, CRI_NOT_FOUND);
    assert_string_equal(st->grpc_message, "pod 100%25 gone: caf%C3%A9%0A");
}

static void test_unimplemented_names_rpc(void **state)
{
    struct harness *h = *state;
    int32_t id = version_call(h, "/t.S/Unimpl", NULL);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, CRI_UNIMPLEMENTED);
    assert_string_equal(h_stream(h, id)->grpc_message, "picocri: Unimpl is not implemented yet");
}

static void test_unknown_method(void **state)
{
    struct harness *h = *state;
    int32_t id = version_call(h, "/t.S/Nope", NULL);
    h_pump(h);
    struct h_stream *st = h_stream(h, id);
    assert_int_equal(st->grpc_status, CRI_UNIMPLEMENTED);
    assert_non_null(strstr(st->grpc_message, "/t.S/Nope"));
    assert_int_equal(st->headers_frames, 1);
}

static void test_undecodable(void **state)
{
    struct harness *h = *state;
    static const uint8_t body[] = {0, 0, 0, 0, 3, 0xff, 0xff, 0xff};
    int32_t id = h_request_raw(h, "/t.S/Version", body, sizeof(body), 0, true, NULL);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, CRI_INVALID_ARGUMENT);
}

static void test_over_limit(void **state)
{
    struct harness *h = *state;
    uint32_t big = CRI_MAX_RECV_MSG + 1;
    uint8_t body[5 + 100] = {0, (uint8_t)(big >> 24), (uint8_t)(big >> 16), (uint8_t)(big >> 8),
                             (uint8_t)big};
    /* The client has not finished: expect Trailers-Only + RST(NO_ERROR). */
    int32_t id = h_request_raw(h, "/t.S/Version", body, sizeof(body), 0, false, NULL);
    h_pump(h);
    struct h_stream *st = h_stream(h, id);
    assert_int_equal(st->grpc_status, CRI_RESOURCE_EXHAUSTED);
    assert_true(st->rst_received);
    assert_int_equal(st->rst_code, NGHTTP2_NO_ERROR);
    assert_true(st->closed);
}

static void test_split_across_frames(void **state)
{
    struct harness *h = *state;
    char *v = malloc(100001);
    memset(v, 'a', 100000);
    v[100000] = '\0';
    runtime_v1_VersionRequest req = {.version = v};
    uint8_t *buf;
    size_t len;
    assert_int_equal(cri_grpc_encode(runtime_v1_VersionRequest_fields, &req, &buf, &len), 0);
    int32_t id = h_request_raw(h, "/t.S/Version", buf, len, 7, true, NULL);
    int32_t id2 = h_request_raw(h, "/t.S/Version", buf, 5 + 1, 1, true, NULL); /* truncated */
    free(buf);
    free(v);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, CRI_OK);
    assert_int_equal(h_stream(h, id)->msg_count, 1);
    assert_int_equal(h_stream(h, id2)->grpc_status, CRI_INTERNAL);
}

static void test_cardinality(void **state)
{
    struct harness *h = *state;
    static const uint8_t two[] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0};
    int32_t id = h_request_raw(h, "/t.S/Version", two, sizeof(two), 0, true, NULL);
    int32_t id0 = h_request_raw(h, "/t.S/Version", NULL, 0, 0, true, NULL);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, CRI_UNIMPLEMENTED);
    assert_int_equal(h_stream(h, id0)->grpc_status, CRI_UNIMPLEMENTED);
}

static void test_empty_message_ok(void **state)
{
    struct harness *h = *state;
    static const uint8_t empty[] = {0, 0, 0, 0, 0};
    int32_t id = h_request_raw(h, "/t.S/Version", empty, sizeof(empty), 0, true, NULL);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, CRI_OK);
}

static void test_http_errors(void **state)
{
    struct harness *h = *state;
    static const char *const get[] = {":method", "GET", NULL};
    static const char *const json[] = {"content-type", "application/json", NULL};
    static const char *const plus[] = {"content-type", "application/grpc+proto", NULL};
    int32_t a = version_call(h, "/t.S/Version", get);
    int32_t b = version_call(h, "/t.S/Version", json);
    int32_t c = version_call(h, "/t.S/Version", plus);
    h_pump(h);
    assert_int_equal(h_stream(h, a)->http_status, 405);
    assert_int_equal(h_stream(h, b)->http_status, 415);
    assert_int_equal(h_stream(h, c)->grpc_status, CRI_OK);
}

static void test_compression(void **state)
{
    struct harness *h = *state;
    static const uint8_t body[] = {1, 0, 0, 0, 0};
    static const char *const gz[] = {"grpc-encoding", "gzip", NULL};
    int32_t a = h_request_raw(h, "/t.S/Version", body, sizeof(body), 0, true, NULL);
    int32_t b = h_request_raw(h, "/t.S/Version", body, sizeof(body), 0, true, gz);
    h_pump(h);
    assert_int_equal(h_stream(h, a)->grpc_status, CRI_INTERNAL);
    assert_int_equal(h_stream(h, b)->grpc_status, CRI_UNIMPLEMENTED);
}

static void test_bad_timeout(void **state)
{
    struct harness *h = *state;
    static const char *const t[] = {"grpc-timeout", "123456789S", NULL};
    int32_t id = version_call(h, "/t.S/Version", t);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, CRI_INTERNAL);
}

static void test_deadline_cancels(void **state)
{
    struct harness *h = *state;
    static const char *const t[] = {"grpc-timeout", "100m", NULL};
    int32_t id = version_call(h, "/t.S/Async", t);
    h_pump(h);
    assert_int_equal(pending_count, 1);
    int64_t d = cri_conn_next_deadline(h->srv);
    assert_true(d > 0);
    assert_int_equal(cri_call_deadline(pending[0]), d);
    cri_conn_expire(h->srv, d - 1);
    assert_int_equal(cancel_count, 0);
    cri_conn_expire(h->srv, d);
    assert_int_equal(cancel_count, 1);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, CRI_DEADLINE_EXCEEDED);
    assert_int_equal(cri_conn_next_deadline(h->srv), 0);
    /* The handler completes late: a no-op that frees the call. */
    runtime_v1_VersionResponse r = {.version = (char *)"late"};
    unsigned wakes = h->wakes;
    cri_call_reply(pending[0], &r);
    assert_int_equal(h->wakes, wakes);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->msg_count, 0);
}

static void test_client_cancel(void **state)
{
    struct harness *h = *state;
    int32_t id = version_call(h, "/t.S/Async", NULL);
    h_pump(h);
    assert_int_equal(pending_count, 1);
    assert_false(cri_call_cancelled(pending[0]));
    assert_int_equal(nghttp2_submit_rst_stream(h->cli, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL), 0);
    h_pump(h);
    assert_int_equal(cancel_count, 1);
    assert_true(cri_call_cancelled(pending[0]));
    runtime_v1_VersionResponse r = {0};
    assert_int_equal(cri_call_send(pending[0], &r), -ECANCELED);
    cri_call_fail_code(pending[0], CRI_ABORTED, "too late");
    assert_int_equal(cri_conn_stream_count(h->srv), 0);
}

static void test_async_after_others(void **state)
{
    struct harness *h = *state;
    int32_t a = version_call(h, "/t.S/Async", NULL);
    int32_t b = version_call(h, "/t.S/Async", NULL);
    int32_t v = version_call(h, "/t.S/Version", NULL);
    h_pump(h);
    assert_int_equal(pending_count, 2);
    assert_int_equal(h_stream(h, v)->grpc_status, CRI_OK);
    assert_false(h_stream(h, a)->closed);
    unsigned wakes = h->wakes;
    runtime_v1_VersionResponse r = {.version = (char *)"second"};
    cri_call_reply(pending[1], &r);
    assert_int_equal(h->wakes, wakes + 1);
    h_pump(h);
    assert_int_equal(h_stream(h, b)->grpc_status, CRI_OK);
    assert_false(h_stream(h, a)->closed);
    struct ag_err err;
    ag_err_init(&err);
    ag_err_set(&err, -EEXIST, "exists");
    cri_call_fail(pending[0], &err);
    h_pump(h);
    assert_int_equal(h_stream(h, a)->grpc_status, CRI_ALREADY_EXISTS);
    runtime_v1_VersionResponse got = runtime_v1_VersionResponse_init_zero;
    h_decode(h_stream(h, b), 0, runtime_v1_VersionResponse_fields, &got);
    assert_string_equal(got.version, "second");
    pb_release(runtime_v1_VersionResponse_fields, &got);
}

static void test_streaming(void **state)
{
    struct harness *h = *state;
    int32_t id = version_call(h, "/t.S/Stream", NULL);
    h_pump(h);
    struct h_stream *st = h_stream(h, id);
    assert_int_equal(st->grpc_status, CRI_OK);
    assert_int_equal(st->msg_count, 3);
    runtime_v1_VersionResponse r = runtime_v1_VersionResponse_init_zero;
    h_decode(st, 2, runtime_v1_VersionResponse_fields, &r);
    assert_string_equal(r.version, "three");
    pb_release(runtime_v1_VersionResponse_fields, &r);
}

static void test_conn_free_cancels(void **state)
{
    struct harness *h = *state;
    version_call(h, "/t.S/Async", NULL);
    version_call(h, "/t.S/Async", NULL);
    h_pump(h);
    assert_int_equal(pending_count, 2);
    cri_conn_free(h->srv);
    h->srv = NULL;
    assert_int_equal(cancel_count, 2);
    runtime_v1_VersionResponse r = {0};
    cri_call_reply(pending[0], &r);
    cri_call_finish(pending[1], NULL);
}

static void test_many_streams(void **state)
{
    struct harness *h = *state;
    int32_t ids[1000];
    for (int i = 0; i < 1000; i++)
        ids[i] = version_call(h, i % 2 ? "/t.S/Async" : "/t.S/Version", NULL);
    h_pump(h);
    assert_int_equal(pending_count, 500);
    assert_int_equal(cri_conn_stream_count(h->srv), 500);
    for (unsigned i = 0; i < pending_count; i++) {
        runtime_v1_VersionResponse r = {.runtime_name = (char *)"x"};
        cri_call_reply(pending[i], &r);
    }
    h_pump(h);
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(h_stream(h, ids[i])->grpc_status, CRI_OK);
        assert_int_equal(h_stream(h, ids[i])->msg_count, 1);
    }
    assert_int_equal(cri_conn_stream_count(h->srv), 0);
}

static void test_shutdown(void **state)
{
    struct harness *h = *state;
    int32_t id = version_call(h, "/t.S/Async", NULL);
    h_pump(h);
    cri_conn_shutdown(h->srv);
    h_pump(h);
    assert_true(cri_conn_alive(h->srv)); /* one call still in flight */
    runtime_v1_VersionResponse r = {0};
    cri_call_reply(pending[0], &r);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, CRI_OK);
    assert_false(cri_conn_alive(h->srv));
}

static void test_large_response_flow_control(void **state)
{
    struct harness *h = *state;
    int32_t a = version_call(h, "/t.S/Big", NULL);
    int32_t b = version_call(h, "/t.S/Big", NULL);
    h_pump(h);
    for (int32_t id = a; id <= b; id += 2) {
        struct h_stream *st = h_stream(h, id);
        assert_int_equal(st->grpc_status, CRI_OK);
        assert_int_equal(st->msg_count, 1);
        assert_true(st->msgs[0].len > 3 * 1024 * 1024);
    }
    assert_int_equal(cri_conn_buffered(h->srv), 0);
}

static void test_rst_on_idle_stream_ignored(void **state)
{
    struct harness *h = *state;
    /* RST_STREAM(CANCEL) for stream 99, never opened, split across calls. */
    static const uint8_t rst[] = {0, 0, 4, 3, 0, 0, 0, 0, 99, 0, 0, 0, 8};
    h_pump(h);
    assert_int_equal(cri_conn_recv(h->srv, rst, 5), 0);
    assert_int_equal(cri_conn_recv(h->srv, rst + 5, sizeof(rst) - 5), 0);
    int32_t id = version_call(h, "/t.S/Version", NULL);
    h_pump(h);
    assert_int_equal(h_stream(h, id)->grpc_status, CRI_OK);
    assert_true(cri_conn_alive(h->srv));
}

static void test_garbage_preface(void **state)
{
    struct cri_conn *c;
    struct cri_daemon d = {0};
    struct cri_conn_config cfg = {.methods = test_methods, .method_count = 1, .daemon = &d};
    static const char http1[] = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";

    assert_int_equal(cri_conn_new(&c, &cfg), 0);
    assert_true(cri_conn_recv(c, (const uint8_t *)http1, sizeof(http1) - 1) < 0);
    cri_conn_free(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_unary_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_trailers_only_error, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unimplemented_names_rpc, setup, teardown),
        cmocka_unit_test_setup_teardown(test_unknown_method, setup, teardown),
        cmocka_unit_test_setup_teardown(test_undecodable, setup, teardown),
        cmocka_unit_test_setup_teardown(test_over_limit, setup, teardown),
        cmocka_unit_test_setup_teardown(test_split_across_frames, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cardinality, setup, teardown),
        cmocka_unit_test_setup_teardown(test_empty_message_ok, setup, teardown),
        cmocka_unit_test_setup_teardown(test_http_errors, setup, teardown),
        cmocka_unit_test_setup_teardown(test_compression, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bad_timeout, setup, teardown),
        cmocka_unit_test_setup_teardown(test_deadline_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_client_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async_after_others, setup, teardown),
        cmocka_unit_test_setup_teardown(test_streaming, setup, teardown),
        cmocka_unit_test_setup_teardown(test_conn_free_cancels, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many_streams, setup, teardown),
        cmocka_unit_test_setup_teardown(test_shutdown, setup, teardown),
        cmocka_unit_test_setup_teardown(test_rst_on_idle_stream_ignored, setup, teardown),
        cmocka_unit_test_setup_teardown(test_large_response_flow_control, setup, teardown),
        cmocka_unit_test(test_garbage_preface),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
