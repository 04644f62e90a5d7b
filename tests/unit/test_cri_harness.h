/* Test harness for cri/: a server engine (struct cri_conn) and an nghttp2
 * client session wired together in memory, no sockets.  Included by the
 * test_cri_*.c binaries. */
#ifndef TEST_CRI_HARNESS_H
#define TEST_CRI_HARNESS_H

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <nghttp2/nghttp2.h>
#include <pb_decode.h>

#include "cri_handlers.h"
#include "cri_internal.h"
#include <api.pb.h>

#define H_MAX_STREAMS 2048

struct h_stream {
    int http_status;
    int grpc_status;         /* -1 = none */
    char grpc_message[1024]; /* raw, still percent-encoded */
    unsigned headers_frames;
    unsigned data_bytes;
    struct cri_framer framer;
    struct cri_message msgs[8];
    unsigned msg_count;
    bool closed;
    uint32_t close_code;
    bool rst_received;
    uint32_t rst_code;
    /* request body to send */
    uint8_t *body;
    size_t body_len, body_off;
    size_t chunk; /* max bytes per DATA frame, 0 = any */
    bool end_stream;
};

struct harness {
    struct cri_conn *srv;
    nghttp2_session *cli;
    struct cri_daemon daemon;
    struct ag_config cfg;
    struct h_stream *streams; /* indexed by (id - 1) / 2 */
    unsigned wakes;
};

static inline struct h_stream *h_stream(struct harness *h, int32_t id)
{
    assert_true(id > 0 && id % 2 == 1 && (id - 1) / 2 < H_MAX_STREAMS);
    return &h->streams[(id - 1) / 2];
}

static __attribute__((unused)) int h_on_header(nghttp2_session *s, const nghttp2_frame *f,
                                               const uint8_t *name, size_t nl, const uint8_t *value,
                                               size_t vl, uint8_t flags, void *user)
{
    struct h_stream *st = h_stream(user, f->hd.stream_id);
    char v[1024];

    snprintf(v, sizeof(v), "%.*s", (int)vl, value);
    if (nl == 7 && memcmp(name, ":status", 7) == 0)
        st->http_status = atoi(v);
    else if (nl == 11 && memcmp(name, "grpc-status", 11) == 0)
        st->grpc_status = atoi(v);
    else if (nl == 12 && memcmp(name, "grpc-message", 12) == 0)
        snprintf(st->grpc_message, sizeof(st->grpc_message), "%s", v);
    return 0;
}

static __attribute__((unused)) int h_on_frame_recv(nghttp2_session *s, const nghttp2_frame *f,
                                                   void *user)
{
    if (f->hd.stream_id == 0)
        return 0;
    struct h_stream *st = h_stream(user, f->hd.stream_id);
    if (f->hd.type == NGHTTP2_HEADERS)
        st->headers_frames++;
    if (f->hd.type == NGHTTP2_RST_STREAM) {
        st->rst_received = true;
        st->rst_code = f->rst_stream.error_code;
    }
    return 0;
}

static __attribute__((unused)) int h_on_data(nghttp2_session *s, uint8_t flags, int32_t id,
                                             const uint8_t *data, size_t len, void *user)
{
    struct h_stream *st = h_stream(user, id);

    st->data_bytes += (unsigned)len;
    while (len > 0) {
        struct cri_message m;
        size_t used;
        int rc = cri_framer_feed(&st->framer, data, len, &used, &m);
        assert_true(rc >= 0);
        data += used;
        len -= used;
        if (rc == 1) {
            assert_true(st->msg_count < 8);
            st->msgs[st->msg_count++] = m;
        }
    }
    return 0;
}

static __attribute__((unused)) int h_on_close(nghttp2_session *s, int32_t id, uint32_t code,
                                              void *user)
{
    struct h_stream *st = h_stream(user, id);

    st->closed = true;
    st->close_code = code;
    return 0;
}

static __attribute__((unused)) ssize_t h_read(nghttp2_session *s, int32_t id, uint8_t *buf,
                                              size_t length, uint32_t *flags,
                                              nghttp2_data_source *src, void *user)
{
    struct h_stream *st = h_stream(user, id);
    size_t n = st->body_len - st->body_off;

    if (n > length)
        n = length;
    if (st->chunk && n > st->chunk)
        n = st->chunk;
    if (n)
        memcpy(buf, st->body + st->body_off, n);
    st->body_off += n;
    if (st->body_off == st->body_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        if (!st->end_stream)
            *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
    }
    return (ssize_t)n;
}

static __attribute__((unused)) void h_wake(void *user)
{
    struct harness *h = user;
    h->wakes++;
}

static __attribute__((unused)) void h_init(struct harness *h, const struct cri_method *methods,
                                           size_t count)
{
    nghttp2_session_callbacks *cbs;

    memset(h, 0, sizeof(*h));
    h->streams = calloc(H_MAX_STREAMS, sizeof(*h->streams));
    assert_non_null(h->streams);
    ag_config_init(&h->cfg);
    h->daemon.cfg = &h->cfg;
    h->daemon.cgroup_driver = "cgroupfs";
    struct cri_conn_config cfg = {.methods = methods,
                                  .method_count = count,
                                  .daemon = &h->daemon,
                                  .ops = {.wake = h_wake},
                                  .user = h};
    assert_int_equal(cri_conn_new(&h->srv, &cfg), 0);
    assert_int_equal(nghttp2_session_callbacks_new(&cbs), 0);
    nghttp2_session_callbacks_set_on_header_callback(cbs, h_on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, h_on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, h_on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, h_on_close);
    assert_int_equal(nghttp2_session_client_new(&h->cli, cbs, h), 0);
    nghttp2_session_callbacks_del(cbs);
    assert_int_equal(nghttp2_submit_settings(h->cli, NGHTTP2_FLAG_NONE, NULL, 0), 0);
}

/* Moves bytes both ways until neither side has anything to say. */
static __attribute__((unused)) void h_pump(struct harness *h)
{
    for (int round = 0; round < 100000; round++) {
        bool moved = false;
        const uint8_t *p;
        ssize_t n;
        while ((n = nghttp2_session_mem_send(h->cli, &p)) > 0) {
            assert_int_equal(cri_conn_recv(h->srv, p, (size_t)n), 0);
            moved = true;
        }
        assert_true(n == 0);
        while ((n = cri_conn_send(h->srv, &p)) > 0) {
            assert_int_equal(nghttp2_session_mem_recv(h->cli, p, (size_t)n), n);
            moved = true;
        }
        assert_true(n == 0);
        if (!moved)
            return;
    }
    fail_msg("pump does not settle");
}

static __attribute__((unused)) void h_fini(struct harness *h)
{
    cri_conn_free(h->srv);
    nghttp2_session_del(h->cli);
    for (int i = 0; i < H_MAX_STREAMS; i++) {
        struct h_stream *st = &h->streams[i];
        cri_framer_fini(&st->framer);
        for (unsigned k = 0; k < st->msg_count; k++)
            free(st->msgs[k].data);
        free(st->body);
    }
    free(h->streams);
    ag_config_fini(&h->cfg);
    cri_daemon_fini(&h->daemon);
}

/* Submits a request with the given raw body (already length-prefixed).
 * extra: NULL-terminated name/value pairs overriding the defaults. */
static __attribute__((unused)) int32_t h_request_raw(struct harness *h, const char *path,
                                                     const uint8_t *body, size_t len, size_t chunk,
                                                     bool end_stream, const char *const *extra)
{
    nghttp2_nv nva[16];
    size_t n = 0;
    const char *method = "POST", *ctype = "application/grpc";

    for (const char *const *e = extra; e && e[0]; e += 2) {
        if (strcmp(e[0], ":method") == 0)
            method = e[1];
        else if (strcmp(e[0], "content-type") == 0)
            ctype = e[1];
    }
#define H_NV(k, v) nva[n++] = (nghttp2_nv){(uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), 0}
    H_NV(":method", method);
    H_NV(":scheme", "http");
    H_NV(":path", path);
    H_NV(":authority", "localhost");
    H_NV("content-type", ctype);
    H_NV("te", "trailers");
    for (const char *const *e = extra; e && e[0]; e += 2)
        if (e[0][0] != ':' && strcmp(e[0], "content-type") != 0)
            H_NV(e[0], e[1]);
#undef H_NV
    int32_t id;
    if (body == NULL && end_stream) {
        id = nghttp2_submit_request(h->cli, NULL, nva, n, NULL, NULL);
    } else {
        nghttp2_data_provider prd = {.read_callback = h_read};
        id = nghttp2_submit_request(h->cli, NULL, nva, n, &prd, NULL);
    }
    assert_true(id > 0);
    struct h_stream *st = h_stream(h, id);
    st->grpc_status = -1;
    cri_framer_init(&st->framer, CRI_MAX_RECV_MSG);
    if (len) {
        st->body = malloc(len);
        assert_non_null(st->body);
        memcpy(st->body, body, len);
    }
    st->body_len = len;
    st->chunk = chunk;
    st->end_stream = end_stream;
    return id;
}

static __attribute__((unused)) int32_t h_request(struct harness *h, const char *path,
                                                 const pb_msgdesc_t *fields, const void *msg,
                                                 const char *const *extra)
{
    uint8_t *buf;
    size_t len;

    assert_int_equal(cri_grpc_encode(fields, msg, &buf, &len), 0);
    int32_t id = h_request_raw(h, path, buf, len, 0, true, extra);
    free(buf);
    return id;
}

static __attribute__((unused)) void h_decode(struct h_stream *st, unsigned i,
                                             const pb_msgdesc_t *fields, void *out)
{
    assert_true(i < st->msg_count);
    pb_istream_t is = pb_istream_from_buffer(st->msgs[i].data, st->msgs[i].len);
    assert_true(pb_decode(&is, fields, out));
}

#endif
