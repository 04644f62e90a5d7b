/* cri/: a small blocking gRPC client over HTTP/2 (nghttp2 client session)
 * on a unix socket, for the client subcommands (`picocri version`, `info`,
 * and later `pull`, `images`, `ps`).  One call per connection: prior
 * knowledge h2c, one request message, one response message.
 *
 * Invariant: every wait is bounded by the caller's timeout, and the
 * response message is bounded by CRI_MAX_RECV_MSG before allocation.
 * Never used inside the daemon (it blocks).
 */
#include "cri_internal.h"

#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <pb_decode.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

struct client {
    nghttp2_session *session;
    int fd;
    int32_t stream_id;
    uint8_t *req;
    size_t req_len, req_off;
    struct cri_framer framer;
    struct cri_message msg;
    unsigned msg_count;
    int framing_error;
    int http_status;
    int grpc_status; /* -1 until seen */
    char grpc_message[AG_ERR_MSG_LEN];
    bool closed;
    uint32_t rst_code;
};

static ssize_t req_read(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                        uint32_t *flags, nghttp2_data_source *source, void *user)
{
    struct client *cl = user;
    size_t n = cl->req_len - cl->req_off < length ? cl->req_len - cl->req_off : length;

    memcpy(buf, cl->req + cl->req_off, n);
    cl->req_off += n;
    if (cl->req_off == cl->req_len)
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    return (ssize_t)n;
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct client *cl = user;
    char v[16];

    if (frame->hd.stream_id != cl->stream_id)
        return 0;
    if (namelen == 7 && memcmp(name, ":status", 7) == 0) {
        snprintf(v, sizeof(v), "%.*s", (int)(valuelen < 15 ? valuelen : 15), value);
        cl->http_status = atoi(v);
    } else if (namelen == 11 && memcmp(name, "grpc-status", 11) == 0) {
        snprintf(v, sizeof(v), "%.*s", (int)(valuelen < 15 ? valuelen : 15), value);
        cl->grpc_status = atoi(v);
    } else if (namelen == 12 && memcmp(name, "grpc-message", 12) == 0) {
        cri_grpc_percent_decode(cl->grpc_message, sizeof(cl->grpc_message), (const char *)value,
                                valuelen);
    }
    return 0;
}

static int on_data(nghttp2_session *session, uint8_t flags, int32_t stream_id, const uint8_t *data,
                   size_t len, void *user)
{
    struct client *cl = user;

    while (stream_id == cl->stream_id && len > 0 && cl->framing_error == 0) {
        struct cri_message m;
        size_t used = 0;
        int rc = cri_framer_feed(&cl->framer, data, len, &used, &m);
        data += used;
        len -= used;
        if (rc < 0) {
            cl->framing_error = rc;
        } else if (rc == 1) {
            if (cl->msg_count++ == 0)
                cl->msg = m;
            else
                free(m.data);
        }
    }
    return 0;
}

static int on_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code, void *user)
{
    struct client *cl = user;

    if (stream_id == cl->stream_id) {
        cl->closed = true;
        cl->rst_code = error_code;
    }
    return 0;
}

static int client_connect(const char *sock, struct ag_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};

    if (strlen(sock) >= sizeof(sa.sun_path))
        return ag_err_set(err, -ENAMETOOLONG, "socket path %s is too long", sock);
    snprintf(sa.sun_path, sizeof(sa.sun_path), "%s", sock);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return ag_err_set(err, -errno, "socket: %s", strerror(errno));
    if (connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        close(fd);
        return ag_err_set(err, -e, "connect %s: %s (is `picocri serve` running?)", sock,
                          strerror(e));
    }
    return fd;
}

static int flush_out(struct client *cl, struct ag_err *err)
{
    for (int guard = 0; guard < 100000; guard++) {
        const uint8_t *p;
        ssize_t n = nghttp2_session_mem_send(cl->session, &p);
        if (n < 0)
            return ag_err_set(err, -EPROTO, "http2: %s", nghttp2_strerror((int)n));
        if (n == 0)
            return 0;
        while (n > 0) {
            ssize_t w = send(cl->fd, p, (size_t)n, MSG_NOSIGNAL);
            if (w < 0 && errno == EINTR)
                continue;
            if (w < 0)
                return ag_err_set(err, -errno, "send: %s", strerror(errno));
            p += w;
            n -= w;
        }
    }
    return ag_err_set(err, -EPROTO, "http2: output does not end");
}

static int run(struct client *cl, int timeout_ms, struct ag_err *err)
{
    uint8_t buf[16384];
    int64_t deadline = timeout_ms > 0 ? cri__now_mono() + (int64_t)timeout_ms * 1000000 : 0;

    while (!cl->closed) {
        int rc = flush_out(cl, err);
        if (rc < 0)
            return rc;
        int wait = -1;
        if (deadline != 0) {
            int64_t left = deadline - cri__now_mono();
            if (left <= 0)
                return ag_err_set(err, -ETIMEDOUT, "no answer within %d ms", timeout_ms);
            wait = (int)(left / 1000000) + 1;
        }
        struct pollfd pfd = {.fd = cl->fd, .events = POLLIN};
        rc = poll(&pfd, 1, wait);
        if (rc < 0 && errno == EINTR)
            continue;
        if (rc < 0)
            return ag_err_set(err, -errno, "poll: %s", strerror(errno));
        if (rc == 0)
            continue;
        ssize_t n = recv(cl->fd, buf, sizeof(buf), 0);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return ag_err_set(err, -errno, "recv: %s", strerror(errno));
        if (n == 0)
            return ag_err_set(err, -ECONNRESET, "the daemon closed the connection");
        ssize_t used = nghttp2_session_mem_recv(cl->session, buf, (size_t)n);
        if (used < 0)
            return ag_err_set(err, -EPROTO, "http2: %s", nghttp2_strerror((int)used));
    }
    return 0;
}

static int result(struct client *cl, const pb_msgdesc_t *resp_fields, void *resp,
                  struct ag_err *err)
{
    if (cl->grpc_status < 0) {
        if (cl->rst_code != 0)
            return ag_err_set(err, -ECONNRESET, "stream reset by the daemon (http2 code %u)",
                              cl->rst_code);
        return ag_err_set(err, -EPROTO, "no grpc-status (http status %d)", cl->http_status);
    }
    if (cl->grpc_status != 0) {
        enum cri_code code = (enum cri_code)cl->grpc_status;
        return ag_err_set(err, cri_errno_from_code(code), "%s: %s", cri_code_name(code),
                          cl->grpc_message);
    }
    if (cl->framing_error < 0)
        return ag_err_set(err, cl->framing_error, "bad response framing");
    if (cl->msg_count != 1 || cl->msg.compressed)
        return ag_err_set(err, -EPROTO, "expected one uncompressed response message, got %u",
                          cl->msg_count);
    pb_istream_t is = pb_istream_from_buffer(cl->msg.data, cl->msg.len);
    if (!pb_decode(&is, resp_fields, resp))
        return ag_err_set(err, -EBADMSG, "cannot decode response: %s", PB_GET_ERROR(&is));
    return 0;
}

static int start(struct client *cl, const char *path, const pb_msgdesc_t *req_fields,
                 const void *req, struct ag_err *err)
{
    nghttp2_session_callbacks *cbs;

    if (cri_grpc_encode(req_fields, req, &cl->req, &cl->req_len) < 0)
        return ag_err_set(err, -EINVAL, "cannot encode the request");
    if (nghttp2_session_callbacks_new(&cbs) != 0)
        return ag_err_set(err, -ENOMEM, "out of memory");
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
    int rc = nghttp2_session_client_new(&cl->session, cbs, cl);
    nghttp2_session_callbacks_del(cbs);
    if (rc != 0)
        return ag_err_set(err, -ENOMEM, "out of memory");
    if (nghttp2_submit_settings(cl->session, NGHTTP2_FLAG_NONE, NULL, 0) != 0)
        return ag_err_set(err, -ENOMEM, "out of memory");
    nghttp2_nv nva[] = {
        {(uint8_t *)":method", (uint8_t *)"POST", 7, 4, 0},
        {(uint8_t *)":scheme", (uint8_t *)"http", 7, 4, 0},
        {(uint8_t *)":path", (uint8_t *)path, 5, strlen(path), 0},
        {(uint8_t *)":authority", (uint8_t *)"localhost", 10, 9, 0},
        {(uint8_t *)"content-type", (uint8_t *)"application/grpc", 12, 16, 0},
        {(uint8_t *)"te", (uint8_t *)"trailers", 2, 8, 0},
        {(uint8_t *)"user-agent", (uint8_t *)"picocri/" PICOCRI_VERSION, 10,
         sizeof("picocri/" PICOCRI_VERSION) - 1, 0},
    };
    nghttp2_data_provider prd = {.read_callback = req_read};
    cl->stream_id = nghttp2_submit_request(cl->session, NULL, nva, AG_ARRAY_LEN(nva), &prd, cl);
    if (cl->stream_id < 0)
        return ag_err_set(err, -ENOMEM, "submit request: %s", nghttp2_strerror(cl->stream_id));
    return 0;
}

int cri_client_call(const char *sock_path, const char *path, const pb_msgdesc_t *req_fields,
                    const void *req, const pb_msgdesc_t *resp_fields, void *resp, int timeout_ms,
                    struct ag_err *err)
{
    struct client cl = {.fd = -1, .grpc_status = -1};
    int rc;

    cri_framer_init(&cl.framer, CRI_MAX_RECV_MSG);
    rc = client_connect(sock_path, err);
    if (rc >= 0) {
        cl.fd = rc;
        rc = start(&cl, path, req_fields, req, err);
    }
    if (rc >= 0)
        rc = run(&cl, timeout_ms, err);
    if (rc >= 0)
        rc = result(&cl, resp_fields, resp, err);
    if (rc < 0)
        ag_err_wrap(err, "%s", path);
    nghttp2_session_del(cl.session);
    if (cl.fd >= 0)
        close(cl.fd);
    cri_framer_fini(&cl.framer);
    free(cl.msg.data);
    free(cl.req);
    return rc < 0 ? rc : 0;
}

const char *cri_client_default_socket(void)
{
    const char *env = getenv("PICOCRI_SOCKET");

    return env != NULL && env[0] != '\0' ? env : "/run/picocri/picocri.sock";
}
