/* Unit tests for the streaming server (no root): the remote-command status
 * and resize formats, and whole sessions on a real loop against the host
 * backend, with a client thread speaking SPDY through our own codec:
 * unknown token -> 404, not an upgrade -> 400, an exec with stdout and an
 * exit code, a reused token, stdin half-close, and a port-forward to a
 * listener in the test's own network namespace. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "stream/strm_int.h"

/* ---- formats ---------------------------------------------------------------------- */
static void test_status_formats(void **state)
{
    char out[1024];

    assert_int_equal(strm__rc_status(4, 0, NULL, out, sizeof(out)),
                     strlen("{\"metadata\":{},\"status\":\"Success\"}"));
    assert_string_equal(out, "{\"metadata\":{},\"status\":\"Success\"}");
    assert_true(strm__rc_status(4, 3, NULL, out, sizeof(out)) > 0);
    assert_non_null(strstr(out, "\"status\":\"Failure\""));
    assert_non_null(strstr(out, "\"reason\":\"NonZeroExitCode\""));
    assert_non_null(strstr(out, "\"details\":{\"causes\":[{\"reason\":\"ExitCode\","
                                "\"message\":\"3\"}]}"));
    assert_true(strm__rc_status(5, -1, "boom \"q\"", out, sizeof(out)) > 0);
    assert_non_null(strstr(out, "\"message\":\"boom \\\"q\\\"\""));
    assert_null(strstr(out, "NonZeroExitCode"));
    assert_int_equal(strm__rc_status(2, 0, NULL, out, sizeof(out)), 0);
    assert_true(strm__rc_status(3, 9, NULL, out, sizeof(out)) > 0);
    assert_non_null(strstr(out, "non-zero exit code"));
    assert_int_equal(strm__rc_status(4, 3, NULL, out, 10), -ENOSPC);
}

static void test_resize_parse(void **state)
{
    struct ag_buf b;
    uint16_t w = 0, h = 0;
    const char *in = "{\"Width\":80,\"Height\":24}\n{\"Width\":1";

    ag_buf_init(&b);
    assert_int_equal(ag_buf_append(&b, in, strlen(in)), 0);
    assert_int_equal(strm__resize_parse(&b, &w, &h), 1);
    assert_int_equal(w, 80);
    assert_int_equal(h, 24);
    assert_int_equal(ag_buf_append(&b, "00,\"Height\":50}", 15), 0);
    assert_int_equal(strm__resize_parse(&b, &w, &h), 1);
    assert_int_equal(w, 100);
    assert_int_equal(h, 50);
    assert_int_equal(b.len, 0);
    assert_int_equal(ag_buf_append(&b, "{\"Width\":70000}", 15), 0);
    assert_int_equal(strm__resize_parse(&b, &w, &h), -EINVAL);
    ag_buf_fini(&b);
    ag_buf_init(&b);
    assert_int_equal(ag_buf_append(&b, "[1]", 3), 0);
    assert_int_equal(strm__resize_parse(&b, &w, &h), -EINVAL);
    ag_buf_fini(&b);
}

static void test_port_parse(void **state)
{
    uint16_t p;

    assert_int_equal(strm__port_parse("8080", &p), 0);
    assert_int_equal(p, 8080);
    assert_int_equal(strm__port_parse("0", &p), -EINVAL);
    assert_int_equal(strm__port_parse("65536", &p), -EINVAL);
    assert_int_equal(strm__port_parse("12a", &p), -EINVAL);
    assert_int_equal(strm__port_parse("", &p), -EINVAL);
    assert_int_equal(strm__port_parse(NULL, &p), -EINVAL);
}

/* ---- sessions on a loop ---------------------------------------------------------------- */
struct host_req {
    char *argv[4];
};

static int t_exec(void *ctx, uv_loop_t *loop, void *request, const struct strm_params *params,
                  const struct strm_proc_sink *sink, struct strm_proc **out, struct ag_err *err)
{
    struct host_req *r = request;
    return strm_host_exec(loop, r->argv, params, sink, out, err);
}

static int t_netns(void *ctx, void *request, char *path, size_t len, struct ag_err *err)
{
    path[0] = 0;
    return 0;
}

static const struct strm_backend_ops t_ops = {t_exec, NULL, t_netns};

struct fixture {
    uv_loop_t loop;
    uv_async_t done;
    struct strm_server *srv;
    int port;
    char url[4][256];
    int echo_port;
    int echo_fd;
    /* results from the client thread */
    char out[4][4096];
    int failures;
};

static int dial(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
    return fd;
}

static void send_all(int fd, const void *p, size_t n)
{
    while (n > 0) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w <= 0)
            return;
        p = (const char *)p + w;
        n -= (size_t)w;
    }
}

/* Sends a raw request, returns what the server sends until it closes. */
static void http_raw(int port, const char *req, char *out, size_t out_len)
{
    int fd = dial(port);
    size_t n = 0;
    ssize_t r;

    send_all(fd, req, strlen(req));
    while (n + 1 < out_len && (r = recv(fd, out + n, out_len - 1 - n, 0)) > 0)
        n += (size_t)r;
    out[n] = 0;
    close(fd);
}

struct collect {
    char text[4][2048]; /* by stream id 1, 3, 5, 7 -> 0..3 */
    bool fin[4];
    int frames;
    bool stop_on_pair_fin; /* port-forward: done when streams 1 and 3 ended */
};

static int on_frame(void *arg, const struct strm_spdy_frame *f)
{
    struct collect *c = arg;
    if (f->type != STRM_SPDY_DATA || f->stream_id < 1 || f->stream_id > 7)
        return 0;
    int i = (int)(f->stream_id - 1) / 2;
    strncat(c->text[i], (const char *)f->data, f->data_len < 1000 ? f->data_len : 1000);
    if (f->flags & STRM_SPDY_FLAG_FIN)
        c->fin[i] = true;
    c->frames++;
    return c->stop_on_pair_fin && c->fin[0] && c->fin[1] ? -EALREADY : 0;
}

/* Upgrades, opens the streams (types[i] on id 2i+1 with extra headers),
 * sends stdin (id 3) then FIN, collects until the server closes. */
static int spdy_session(const char *url, const char *proto, const char *const *types,
                        size_t ntypes, const struct strm_header *extra, size_t nextra,
                        const char *stdin_data, struct collect *col)
{
    const char *path = strchr(url + 7, '/');
    int port = atoi(strchr(url + 7, ':') + 1), rc = -1;
    char req[512], head[512];
    struct strm_spdy *s = NULL;
    struct ag_buf out;
    int fd = dial(port);
    size_t n = 0;

    ag_buf_init(&out);
    snprintf(req, sizeof(req),
             "POST %s HTTP/1.1\r\nConnection: Upgrade\r\nUpgrade: SPDY/3.1\r\n"
             "X-Stream-Protocol-Version: %s\r\n\r\n", path, proto);
    send_all(fd, req, strlen(req));
    while (n < sizeof(head) - 1 && recv(fd, head + n, 1, 0) == 1) {
        n++;
        head[n] = 0;
        if (strstr(head, "\r\n\r\n"))
            break;
    }
    if (strncmp(head, "HTTP/1.1 101", 12) != 0 || strm_spdy_new(&s) < 0)
        goto out;
    for (size_t i = 0; i < ntypes; i++) {
        struct strm_header h[4] = {{"streamtype", types[i]}};
        for (size_t k = 0; k < nextra; k++)
            h[1 + k] = extra[k];
        if (strm_spdy_syn_stream(s, &out, (uint32_t)(2 * i + 1), h, 1 + nextra, 0) < 0)
            goto out;
    }
    if (stdin_data && strm_spdy_data(&out, 3, stdin_data, strlen(stdin_data), 0) < 0)
        goto out;
    if (stdin_data && strm_spdy_data(&out, 3, NULL, 0, STRM_SPDY_FLAG_FIN) < 0)
        goto out;
    if (strm_spdy_ping(&out, 1) < 0) /* answered with the same id */
        goto out;
    send_all(fd, out.data, out.len);
    uint8_t buf[8192];
    ssize_t r;
    while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {
        int e = strm_spdy_recv(s, buf, (size_t)r, on_frame, col);
        if (e == -EALREADY)
            break;
        if (e < 0)
            goto out;
    }
    rc = 0;
out:
    ag_buf_fini(&out);
    strm_spdy_free(s);
    close(fd);
    return rc;
}

static void *client_main(void *arg)
{
    struct fixture *fx = arg;
    char resp[4096];
    struct collect col;
    const char *const types[] = {"error", "stdin", "stdout", "stderr"};

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            fprintf(stderr, "client check failed line %d: %s\n", __LINE__, #cond);                \
            fx->failures++;                                                                        \
        }                                                                                          \
    } while (0)

    http_raw(fx->port, "GET /exec/nope HTTP/1.1\r\n\r\n", resp, sizeof(resp));
    CHECK(strncmp(resp, "HTTP/1.1 404", 12) == 0);
    http_raw(fx->port, "GET /bogus/x HTTP/1.1\r\n\r\n", resp, sizeof(resp));
    CHECK(strncmp(resp, "HTTP/1.1 404", 12) == 0);
    snprintf(resp, sizeof(resp), "POST %s HTTP/1.1\r\n\r\n", strchr(fx->url[1] + 7, '/'));
    http_raw(fx->port, resp, resp, sizeof(resp));
    CHECK(strncmp(resp, "HTTP/1.1 400", 12) == 0);

    memset(&col, 0, sizeof(col));
    CHECK(spdy_session(fx->url[0], "v4.channel.k8s.io", types, 4, NULL, 0, "abc", &col) == 0);
    CHECK(strcmp(col.text[2], "hi abc\n") == 0);
    CHECK(strcmp(col.text[3], "err\n") == 0);
    CHECK(strstr(col.text[0], "\"reason\":\"NonZeroExitCode\"") != NULL);
    CHECK(strstr(col.text[0], "\"message\":\"3\"") != NULL);
    CHECK(col.fin[0] && col.fin[2] && col.fin[3]);
    /* reused */
    memset(&col, 0, sizeof(col));
    CHECK(spdy_session(fx->url[0], "v4.channel.k8s.io", types, 4, NULL, 0, NULL, &col) < 0);

    /* port forward (the daemon's own namespace) */
    const char *const pft[] = {"error", "data"};
    char port[16];
    snprintf(port, sizeof(port), "%d", fx->echo_port);
    struct strm_header hh[2] = {{"port", port}, {"requestid", "0"}};
    memset(&col, 0, sizeof(col));
    col.stop_on_pair_fin = true;
    CHECK(spdy_session(fx->url[2], "portforward.k8s.io", pft, 2, hh, 2, "ping", &col) == 0);
    CHECK(strcmp(col.text[1], "pong:ping") == 0);
    CHECK(col.text[0][0] == 0); /* no error */
    uv_async_send(&fx->done);
    return NULL;
}

/* A one-connection target: reads until EOF, answers "pong:<what it read>". */
static void *target_main(void *arg)
{
    struct fixture *fx = arg;
    char buf[256] = "pong:";
    size_t n = 5;
    ssize_t r;
    int c = accept(fx->echo_fd, NULL, NULL);

    if (c < 0)
        return NULL;
    while (n < sizeof(buf) - 1 && (r = recv(c, buf + n, sizeof(buf) - 1 - n, 0)) > 0)
        n += (size_t)r;
    send_all(c, buf, n);
    close(c);
    return NULL;
}

static void on_done(uv_async_t *a)
{
    struct fixture *fx = a->data;
    strm_server_stop(steal_ptr(&fx->srv));
    uv_close((uv_handle_t *)a, NULL);
}

static void test_server_sessions(void **state)
{
    struct fixture *fx = calloc(1, sizeof(*fx));
    struct ag_err err;
    static char sh[] = "/bin/sh", c[] = "-c", cmd[] = "read x; echo hi $x; echo err >&2; exit 3";
    struct strm_params p = {false, true, true, true};
    pthread_t th, target;
    struct sockaddr_in a = {.sin_family = AF_INET};
    socklen_t alen = sizeof(a);

    signal(SIGPIPE, SIG_IGN);
    ag_err_init(&err);
    assert_int_equal(uv_loop_init(&fx->loop), 0);
    assert_int_equal(strm_server_start(&fx->loop, "127.0.0.1:0", &t_ops, NULL, &fx->srv, &err), 0);
    fx->port = strm_server_port(fx->srv);
    assert_true(fx->port > 0);
    for (int i = 0; i < 3; i++) {
        struct host_req *r = calloc(1, sizeof(*r));
        r->argv[0] = sh;
        r->argv[1] = c;
        r->argv[2] = cmd;
        assert_int_equal(strm_server_issue(fx->srv, i == 2 ? STRM_PORTFORWARD : STRM_EXEC, &p, r,
                                           free, fx->url[i], sizeof(fx->url[i]), &err),
                         0);
        assert_non_null(strstr(fx->url[i], i == 2 ? "/portforward/" : "/exec/"));
    }
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    fx->echo_fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_int_equal(bind(fx->echo_fd, (struct sockaddr *)&a, sizeof(a)), 0);
    assert_int_equal(listen(fx->echo_fd, 4), 0);
    assert_int_equal(getsockname(fx->echo_fd, (struct sockaddr *)&a, &alen), 0);
    fx->echo_port = ntohs(a.sin_port);
    assert_int_equal(pthread_create(&target, NULL, target_main, fx), 0);
    uv_async_init(&fx->loop, &fx->done, on_done);
    fx->done.data = fx;
    assert_int_equal(pthread_create(&th, NULL, client_main, fx), 0);
    assert_int_equal(uv_run(&fx->loop, UV_RUN_DEFAULT), 0);
    pthread_join(th, NULL);
    pthread_join(target, NULL);
    close(fx->echo_fd);
    assert_int_equal(fx->failures, 0);
    assert_int_equal(uv_loop_close(&fx->loop), 0);
    free(fx);
}

static void test_bad_address(void **state)
{
    struct strm_server *s = NULL;
    struct ag_err err;
    uv_loop_t loop;

    uv_loop_init(&loop);
    ag_err_init(&err);
    assert_int_equal(strm_server_start(&loop, "nope", &t_ops, NULL, &s, &err), -EINVAL);
    assert_int_equal(strm_server_start(&loop, "localhost:1", &t_ops, NULL, &s, &err), -EINVAL);
    assert_int_equal(strm_server_start(&loop, "127.0.0.1:99999", &t_ops, NULL, &s, &err),
                     -EINVAL);
    assert_int_equal(uv_run(&loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&loop), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_status_formats),  cmocka_unit_test(test_resize_parse),
        cmocka_unit_test(test_port_parse),      cmocka_unit_test(test_server_sessions),
        cmocka_unit_test(test_bad_address),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
