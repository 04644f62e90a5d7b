/* cri/: the gRPC server engine on an nghttp2 server session, sans I/O.
 * Bytes in through cri_conn_recv() (nghttp2_session_mem_recv), bytes out
 * through cri_conn_send() (nghttp2_session_mem_send); the adapter owns the
 * socket and the timer.  Per stream it collects the request headers,
 * reassembles exactly one length-prefixed request message, decodes it
 * with nanopb and dispatches it to the method's handler; responses and
 * errors go out as HEADERS + DATA + trailers or Trailers-Only.
 *
 * Ownership invariant: a stream (struct cri_stream) belongs to the engine
 * and lives until nghttp2 closes it; a call (struct cri_call) belongs to
 * its handler until the handler completes it.  While both live they point
 * at each other; whichever ends first clears both links, so neither side
 * ever touches freed memory.  A stream that closes first cancels the call.
 */
#include "cri_internal.h"

#include <nghttp2/nghttp2.h>
#include <pb_decode.h>
#include <stdio.h>
#include <string.h>

enum resp_state {
    RESP_NONE,      /* nothing submitted */
    RESP_STREAMING, /* response HEADERS + data provider submitted */
    RESP_FINISHING, /* trailers go out once the queue drains */
    RESP_DONE,      /* final HEADERS submitted */
};

struct obuf {
    struct obuf *next;
    size_t len;
    size_t off;
    uint8_t *data; /* owned */
};

struct cri_stream {
    struct cri_stream *prev, *next;
    struct cri_conn *conn;
    int32_t id;
    const struct cri_method *method;
    char *bad_path; /* owned: the unknown :path, for the error text */
    bool is_post, ctype_ok, timeout_bad, has_encoding, identity;
    size_t header_bytes;
    int64_t deadline;
    struct cri_framer framer;
    struct cri_message msg;
    unsigned msg_count;
    size_t in_acct; /* bytes counted in conn->in_bytes */
    enum resp_state resp;
    bool deferred;
    struct obuf *out_head, *out_tail;
    enum cri_code finish_code;
    char *finish_msg; /* owned, percent-encoded */
    struct cri_call *call;
};

struct cri_call {
    const struct cri_method *method;
    struct cri_daemon *daemon;
    struct cri_stream *stream; /* NULL once detached */
    void *req;                 /* owned */
    cri_cancel_cb cancel_cb;
    void *cancel_data;
    bool cancelled;
    int64_t deadline;
};

struct cri_conn {
    nghttp2_session *session;
    struct cri_conn_config cfg;
    struct cri_stream *streams;
    size_t stream_count;
    size_t in_bytes;
    size_t out_bytes;
    int busy; /* > 0 while inside nghttp2: no wake, no send */
    /* Input frame filter (see cri_conn_recv). */
    size_t preface_left;
    uint8_t fh[9];
    size_t fh_len;
    size_t payload_left;
    bool dropping;
    uint32_t max_client_stream;
};

#define NV(n, v, vl)                                                                               \
    {                                                                                              \
        (uint8_t *)(n), (uint8_t *)(v), sizeof(n) - 1, (vl), NGHTTP2_NV_FLAG_NONE                  \
    }

/* ---- response side ------------------------------------------------------ */

static void stream_drop_output(struct cri_stream *s)
{
    while (s->out_head != NULL) {
        struct obuf *b = s->out_head;
        s->out_head = b->next;
        s->conn->out_bytes -= b->len - b->off;
        free(b->data);
        free(b);
    }
    s->out_tail = NULL;
}

static void stream_reset(struct cri_stream *s, uint32_t h2_error)
{
    stream_drop_output(s);
    s->resp = RESP_DONE;
    /* Out of memory here leaves the stream to the connection's fate: the
     * peer's deadline or the connection closing ends it. */
    (void)nghttp2_submit_rst_stream(s->conn->session, NGHTTP2_FLAG_NONE, s->id, h2_error);
}

static int submit_trailers(struct cri_stream *s, bool trailers_only)
{
    char status[16];
    int n = snprintf(status, sizeof(status), "%d", (int)s->finish_code);
    const char *msg = s->finish_msg ? s->finish_msg : "";
    nghttp2_nv nva[] = {
        NV(":status", "200", 3),
        NV("content-type", "application/grpc", 16),
        NV("grpc-status", status, (size_t)n),
        NV("grpc-message", msg, strlen(msg)),
    };
    nghttp2_nv *first = trailers_only ? nva : nva + 2;
    size_t count = (trailers_only ? 4 : 2) - (msg[0] == '\0' ? 1 : 0);

    if (trailers_only)
        return nghttp2_submit_response(s->conn->session, s->id, first, count, NULL);
    return nghttp2_submit_trailer(s->conn->session, s->id, first, count);
}

static ssize_t read_cb(nghttp2_session *session, int32_t stream_id, uint8_t *buf, size_t length,
                       uint32_t *flags, nghttp2_data_source *source, void *user)
{
    struct cri_stream *s = source->ptr;
    size_t n = 0;

    while (n < length && s->out_head != NULL) {
        struct obuf *b = s->out_head;
        size_t k = b->len - b->off < length - n ? b->len - b->off : length - n;
        memcpy(buf + n, b->data + b->off, k);
        b->off += k;
        n += k;
        if (b->off == b->len) {
            s->out_head = b->next;
            if (s->out_head == NULL)
                s->out_tail = NULL;
            free(b->data);
            free(b);
        }
    }
    s->conn->out_bytes -= n;
    if (s->out_head == NULL && s->resp == RESP_FINISHING) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        s->resp = RESP_DONE;
        if (submit_trailers(s, false) != 0)
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        return (ssize_t)n;
    }
    if (n == 0) {
        s->deferred = true;
        return NGHTTP2_ERR_DEFERRED;
    }
    return (ssize_t)n;
}

static void stream_resume(struct cri_stream *s)
{
    if (s->deferred) {
        s->deferred = false;
        if (nghttp2_session_resume_data(s->conn->session, s->id) != 0)
            stream_reset(s, NGHTTP2_INTERNAL_ERROR);
    }
}

static int stream_start_response(struct cri_stream *s)
{
    nghttp2_nv nva[] = {NV(":status", "200", 3), NV("content-type", "application/grpc", 16)};
    nghttp2_data_provider prd = {.source = {.ptr = s}, .read_callback = read_cb};

    if (nghttp2_submit_response(s->conn->session, s->id, nva, 2, &prd) != 0) {
        stream_reset(s, NGHTTP2_INTERNAL_ERROR);
        return -ENOMEM;
    }
    s->resp = RESP_STREAMING;
    return 0;
}

/* Takes ownership of data. */
static int stream_queue(struct cri_stream *s, uint8_t *data, size_t len)
{
    struct obuf *b = malloc(sizeof(*b));

    if (b == NULL) {
        free(data);
        return -ENOMEM;
    }
    *b = (struct obuf){.len = len, .data = data};
    if (s->out_tail != NULL)
        s->out_tail->next = b;
    else
        s->out_head = b;
    s->out_tail = b;
    s->conn->out_bytes += len;
    if (s->resp == RESP_NONE)
        return stream_start_response(s);
    stream_resume(s);
    return 0;
}

/* Ends the response with a status.  Before any message this is a
 * Trailers-Only response; after, trailers follow the queued messages. */
static void stream_finish(struct cri_stream *s, enum cri_code code, const char *msg)
{
    char enc[3 * AG_ERR_MSG_LEN + 1];

    if (s->resp == RESP_FINISHING || s->resp == RESP_DONE)
        return;
    s->deadline = 0;
    s->finish_code = code;
    free(s->finish_msg);
    s->finish_msg = NULL;
    if (msg != NULL && msg[0] != '\0') {
        cri_grpc_percent_encode(enc, sizeof(enc), msg);
        s->finish_msg = strdup(enc); /* on failure the status goes without text */
    }
    if (s->resp == RESP_NONE) {
        s->resp = RESP_DONE;
        if (submit_trailers(s, true) != 0)
            stream_reset(s, NGHTTP2_INTERNAL_ERROR);
        return;
    }
    s->resp = RESP_FINISHING;
    if (s->deferred)
        stream_resume(s);
}

/* Detaches the call from its stream; with cancel, runs its cancel callback
 * (which may complete, and so free, the call). */
static void call_detach(struct cri_call *call, bool cancel)
{
    struct cri_stream *s = call->stream;

    if (s != NULL)
        s->call = NULL;
    call->stream = NULL;
    if (!cancel)
        return;
    call->cancelled = true;
    cri_cancel_cb cb = call->cancel_cb;
    call->cancel_cb = NULL;
    if (cb != NULL)
        cb(call, call->cancel_data);
}

static void stream_fail(struct cri_stream *s, enum cri_code code, const char *fmt, ...)
    AG_PRINTF(3, 4);
static void stream_fail(struct cri_stream *s, enum cri_code code, const char *fmt, ...)
{
    char msg[AG_ERR_MSG_LEN];
    va_list ap;

    if (s->call != NULL)
        call_detach(s->call, true);
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (s->resp == RESP_STREAMING)
        stream_drop_output(s);
    stream_finish(s, code, msg);
}

static void http_error(struct cri_stream *s, const char *status)
{
    nghttp2_nv nva[] = {NV(":status", status, 3), NV("content-type", "text/plain", 10)};

    s->resp = RESP_DONE;
    if (nghttp2_submit_response(s->conn->session, s->id, nva, 2, NULL) != 0)
        stream_reset(s, NGHTTP2_INTERNAL_ERROR);
}

/* ---- calls ----------------------------------------------------------- */

static void call_free(struct cri_call *call)
{
    if (call->req != NULL) {
        pb_release(call->method->req_fields, call->req);
        free(call->req);
    }
    free(call);
}

/* Frees a completed call and lets the adapter know output is pending. */
static void call_done(struct cri_call *call, struct cri_conn *conn)
{
    call_free(call);
    if (conn != NULL && conn->busy == 0 && conn->cfg.ops.wake != NULL)
        conn->cfg.ops.wake(conn->cfg.user);
}

static void call_complete(struct cri_call *call, enum cri_code code, const char *msg)
{
    struct cri_stream *s = call->stream;
    struct cri_conn *conn = s ? s->conn : NULL;

    if (s != NULL) {
        call_detach(call, false);
        stream_finish(s, code, msg);
    }
    call_done(call, conn);
}

void cri_call_reply(struct cri_call *call, const void *resp)
{
    struct cri_stream *s = call->stream;
    struct cri_conn *conn = s ? s->conn : NULL;
    uint8_t *buf;
    size_t len;

    if (s == NULL) {
        call_done(call, NULL);
        return;
    }
    call_detach(call, false);
    if (cri_grpc_encode(call->method->resp_fields, resp, &buf, &len) < 0) {
        stream_fail(s, CRI_INTERNAL, "picocri: cannot encode %s response", call->method->name);
    } else if (stream_queue(s, buf, len) < 0) {
        stream_fail(s, CRI_RESOURCE_EXHAUSTED, "picocri: out of memory");
    } else {
        stream_finish(s, CRI_OK, NULL);
    }
    call_done(call, conn);
}

int cri_call_send(struct cri_call *call, const void *msg)
{
    struct cri_stream *s = call->stream;
    uint8_t *buf;
    size_t len;
    int rc;

    if (s == NULL)
        return -ECANCELED;
    rc = cri_grpc_encode(call->method->resp_fields, msg, &buf, &len);
    if (rc < 0)
        return rc == -ENOMEM ? rc : -EIO;
    rc = stream_queue(s, buf, len);
    if (rc < 0)
        return rc;
    if (s->conn->busy == 0 && s->conn->cfg.ops.wake != NULL)
        s->conn->cfg.ops.wake(s->conn->cfg.user);
    return 0;
}

void cri_call_finish(struct cri_call *call, const struct ag_err *err)
{
    if (err == NULL || err->code == 0)
        call_complete(call, CRI_OK, NULL);
    else
        cri_call_fail(call, err);
}

void cri_call_fail(struct cri_call *call, const struct ag_err *err)
{
    enum cri_code code = err->code < 0 ? cri_code_from_errno(err->code) : CRI_UNKNOWN;

    call_complete(call, code, err->msg);
}

void cri_call_fail_code(struct cri_call *call, enum cri_code code, const char *fmt, ...)
{
    char msg[AG_ERR_MSG_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    call_complete(call, code, msg);
}

void cri_call_on_cancel(struct cri_call *call, cri_cancel_cb cb, void *data)
{
    if (call->cancelled) {
        if (cb != NULL)
            cb(call, data);
        return;
    }
    call->cancel_cb = cb;
    call->cancel_data = data;
}

bool cri_call_cancelled(const struct cri_call *call) { return call->cancelled; }
struct cri_daemon *cri_call_daemon(const struct cri_call *call) { return call->daemon; }
const struct cri_method *cri_call_method(const struct cri_call *call) { return call->method; }
int64_t cri_call_deadline(const struct cri_call *call) { return call->deadline; }

void cri_unimplemented(struct cri_call *call, void *req)
{
    cri_call_fail_code(call, CRI_UNIMPLEMENTED, "picocri: %s is not implemented yet",
                       call->method->name);
}

/* ---- request side --------------------------------------------------------- */

static void stream_account(struct cri_stream *s)
{
    size_t now = cri_framer_buffered(&s->framer) + s->msg.len;

    s->conn->in_bytes = s->conn->in_bytes - s->in_acct + now;
    s->in_acct = now;
}

static void dispatch(struct cri_stream *s)
{
    const struct cri_method *m = s->method;
    struct cri_call *call = calloc(1, sizeof(*call));
    void *req = calloc(1, m->req_size ? m->req_size : 1);

    if (call == NULL || req == NULL) {
        free(call);
        free(req);
        stream_fail(s, CRI_RESOURCE_EXHAUSTED, "picocri: out of memory");
        return;
    }
    pb_istream_t is = pb_istream_from_buffer(s->msg.data, s->msg.len);
    if (!pb_decode(&is, m->req_fields, req)) {
        free(req);
        free(call);
        stream_fail(s, CRI_INVALID_ARGUMENT, "picocri: cannot decode %s request: %s", m->name,
                    PB_GET_ERROR(&is));
        return;
    }
    free(s->msg.data);
    s->msg = (struct cri_message){0};
    stream_account(s);
    *call = (struct cri_call){.method = m,
                              .daemon = s->conn->cfg.daemon,
                              .stream = s,
                              .req = req,
                              .deadline = s->deadline};
    s->call = call;
    m->handler(call, req);
}

static void end_of_request(struct cri_stream *s)
{
    if (s->resp != RESP_NONE || s->call != NULL)
        return;
    if (cri_framer_partial(&s->framer)) {
        stream_fail(s, CRI_INTERNAL, "picocri: request ended inside a message");
        return;
    }
    if (s->msg_count != 1) {
        stream_fail(s, CRI_UNIMPLEMENTED, "picocri: %s expects one request message, got %u",
                    s->method->name, s->msg_count);
        return;
    }
    dispatch(s);
}

static void on_message(struct cri_stream *s, struct cri_message *m)
{
    if (++s->msg_count > 1) {
        free(m->data);
        stream_fail(s, CRI_UNIMPLEMENTED, "picocri: %s expects one request message, got more",
                    s->method->name);
        return;
    }
    if (m->compressed) {
        free(m->data);
        if (!s->has_encoding || s->identity)
            stream_fail(s, CRI_INTERNAL, "picocri: compressed message without grpc-encoding");
        else
            stream_fail(s, CRI_UNIMPLEMENTED, "picocri: grpc-encoding is not supported");
        return;
    }
    s->msg = *m;
}

static int on_data_chunk_recv(nghttp2_session *session, uint8_t flags, int32_t stream_id,
                              const uint8_t *data, size_t len, void *user)
{
    struct cri_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);

    if (s == NULL || s->resp != RESP_NONE || s->call != NULL || s->method == NULL)
        return 0; /* already answered: discard (flow control is automatic) */
    if (s->conn->in_bytes + len > CRI_MAX_CONN_INPUT) {
        stream_fail(s, CRI_RESOURCE_EXHAUSTED, "picocri: too much request data in flight");
        return 0;
    }
    while (len > 0 && s->resp == RESP_NONE) {
        struct cri_message m;
        size_t used = 0;
        int rc = cri_framer_feed(&s->framer, data, len, &used, &m);
        data += used;
        len -= used;
        if (rc == -EMSGSIZE) {
            stream_fail(s, CRI_RESOURCE_EXHAUSTED,
                        "picocri: received message larger than max (%u vs. %u)", s->framer.msg_len,
                        CRI_MAX_RECV_MSG);
        } else if (rc < 0) {
            stream_fail(s, CRI_RESOURCE_EXHAUSTED, "picocri: out of memory");
        } else if (rc == 1) {
            on_message(s, &m);
        }
    }
    stream_account(s);
    return 0;
}

static bool content_type_ok(const uint8_t *v, size_t len)
{
    static const char prefix[] = "application/grpc";
    size_t n = sizeof(prefix) - 1;

    return len >= n && memcmp(v, prefix, n) == 0 && (len == n || v[n] == '+' || v[n] == ';');
}

static int on_header(nghttp2_session *session, const nghttp2_frame *frame, const uint8_t *name,
                     size_t namelen, const uint8_t *value, size_t valuelen, uint8_t flags,
                     void *user)
{
    struct cri_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

    if (s == NULL || frame->hd.type != NGHTTP2_HEADERS ||
        frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    s->header_bytes += namelen + valuelen + 32;
    if (s->header_bytes > 64 * 1024)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
#define IS(lit) (namelen == sizeof(lit) - 1 && memcmp(name, lit, namelen) == 0)
    if (IS(":method")) {
        s->is_post = valuelen == 4 && memcmp(value, "POST", 4) == 0;
    } else if (IS(":path")) {
        s->method = cri_method_find(s->conn->cfg.methods, s->conn->cfg.method_count,
                                    (const char *)value, valuelen);
        if (s->method == NULL && s->bad_path == NULL)
            s->bad_path = strndup((const char *)value, valuelen < 200 ? valuelen : 200);
    } else if (IS("content-type")) {
        s->ctype_ok = content_type_ok(value, valuelen);
    } else if (IS("grpc-timeout")) {
        int64_t ns;
        if (cri_grpc_timeout_parse((const char *)value, valuelen, &ns) < 0) {
            s->timeout_bad = true;
        } else {
            int64_t now = cri__now_mono();
            s->deadline = ns > INT64_MAX - now ? INT64_MAX : now + ns;
        }
    } else if (IS("grpc-encoding")) {
        s->has_encoding = true;
        s->identity = valuelen == 8 && memcmp(value, "identity", 8) == 0;
    }
#undef IS
    return 0;
}

static void request_headers_done(struct cri_stream *s)
{
    char esc[256];

    if (!s->is_post) {
        http_error(s, "405");
    } else if (!s->ctype_ok) {
        http_error(s, "415");
    } else if (s->method == NULL) {
        ag_str_escape(esc, sizeof(esc), s->bad_path ? s->bad_path : "", 200);
        stream_fail(s, CRI_UNIMPLEMENTED, "picocri: unknown method %s", esc);
    } else if (s->timeout_bad) {
        stream_fail(s, CRI_INTERNAL, "picocri: malformed grpc-timeout");
    }
}

static int on_frame_recv(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    struct cri_stream *s = nghttp2_session_get_stream_user_data(session, frame->hd.stream_id);

    if (s == NULL)
        return 0;
    if (frame->hd.type == NGHTTP2_HEADERS && frame->headers.cat == NGHTTP2_HCAT_REQUEST)
        request_headers_done(s);
    if ((frame->hd.type == NGHTTP2_HEADERS || frame->hd.type == NGHTTP2_DATA) &&
        (frame->hd.flags & NGHTTP2_FLAG_END_STREAM))
        end_of_request(s);
    return 0;
}

static int on_begin_headers(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    struct cri_conn *c = user;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST)
        return 0;
    uint32_t max = c->cfg.max_streams ? c->cfg.max_streams : CRI_MAX_STREAMS;
    if (c->stream_count >= max)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    struct cri_stream *s = calloc(1, sizeof(*s));
    if (s == NULL)
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    s->conn = c;
    s->id = frame->hd.stream_id;
    cri_framer_init(&s->framer, CRI_MAX_RECV_MSG);
    s->next = c->streams;
    if (c->streams != NULL)
        c->streams->prev = s;
    c->streams = s;
    c->stream_count++;
    nghttp2_session_set_stream_user_data(session, s->id, s);
    return 0;
}

static void stream_free(struct cri_stream *s)
{
    struct cri_conn *c = s->conn;

    stream_drop_output(s);
    cri_framer_fini(&s->framer);
    free(s->msg.data);
    s->msg = (struct cri_message){0};
    stream_account(s);
    free(s->bad_path);
    free(s->finish_msg);
    if (s->prev != NULL)
        s->prev->next = s->next;
    else
        c->streams = s->next;
    if (s->next != NULL)
        s->next->prev = s->prev;
    c->stream_count--;
    free(s);
}

static int on_stream_close(nghttp2_session *session, int32_t stream_id, uint32_t error_code,
                           void *user)
{
    struct cri_stream *s = nghttp2_session_get_stream_user_data(session, stream_id);

    if (s == NULL)
        return 0;
    if (s->call != NULL)
        call_detach(s->call, true);
    stream_free(s);
    return 0;
}

/* Early server closure: after our END_STREAM, reset a stream the client
 * is still sending on, with NO_ERROR. */
static int on_frame_send(nghttp2_session *session, const nghttp2_frame *frame, void *user)
{
    if (frame->hd.type == NGHTTP2_HEADERS && (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) &&
        nghttp2_session_get_stream_remote_close(session, frame->hd.stream_id) == 0)
        return nghttp2_submit_rst_stream(session, NGHTTP2_FLAG_NONE, frame->hd.stream_id,
                                         NGHTTP2_NO_ERROR) == 0
                   ? 0
                   : NGHTTP2_ERR_CALLBACK_FAILURE;
    return 0;
}

/* ---- connection ----------------------------------------------------------- */

int cri_conn_new(struct cri_conn **out, const struct cri_conn_config *cfg)
{
    nghttp2_session_callbacks *cbs = NULL;
    nghttp2_option *opt = NULL;
    struct cri_conn *c = calloc(1, sizeof(*c));
    int rc = -ENOMEM;

    if (c == NULL)
        return -ENOMEM;
    c->cfg = *cfg;
    c->preface_left = NGHTTP2_CLIENT_MAGIC_LEN;
    if (nghttp2_session_callbacks_new(&cbs) != 0 || nghttp2_option_new(&opt) != 0)
        goto out;
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame_recv);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data_chunk_recv);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_stream_close);
    nghttp2_session_callbacks_set_on_frame_send_callback(cbs, on_frame_send);
    /* Closed streams need no priority bookkeeping; keep memory flat. */
    nghttp2_option_set_no_closed_streams(opt, 1);
    if (nghttp2_session_server_new2(&c->session, cbs, c, opt) != 0)
        goto out;
    nghttp2_settings_entry iv[] = {
        {NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS,
         cfg->max_streams ? cfg->max_streams : CRI_MAX_STREAMS},
        {NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE, 64 * 1024},
    };
    if (nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, iv, AG_ARRAY_LEN(iv)) != 0)
        goto out;
    *out = steal_ptr(&c);
    rc = 0;
out:
    nghttp2_option_del(opt);
    nghttp2_session_callbacks_del(cbs);
    if (c != NULL) {
        nghttp2_session_del(c->session);
        free(c);
    }
    return rc;
}

void cri_conn_free(struct cri_conn *c)
{
    if (c == NULL)
        return;
    c->busy++;
    /* Cancel first: a cancel callback may complete other calls of this
     * connection, which only queue output on streams that still exist. */
    for (struct cri_stream *s = c->streams; s != NULL; s = s->next)
        if (s->call != NULL)
            call_detach(s->call, true);
    nghttp2_session_del(c->session);
    while (c->streams != NULL)
        stream_free(c->streams);
    free(c);
}

static int feed(struct cri_conn *c, const uint8_t *data, size_t len)
{
    ssize_t n = len ? nghttp2_session_mem_recv(c->session, data, len) : 0;

    return n < 0 ? (int)n : 0;
}

/* Decides what to do with one complete frame header. */
static int frame_header(struct cri_conn *c)
{
    uint32_t length = (uint32_t)c->fh[0] << 16 | (uint32_t)c->fh[1] << 8 | c->fh[2];
    uint8_t type = c->fh[3];
    uint32_t sid =
        ((uint32_t)c->fh[5] << 24 | (uint32_t)c->fh[6] << 16 | (uint32_t)c->fh[7] << 8 | c->fh[8]) &
        0x7fffffffu;

    c->fh_len = 0;
    c->payload_left = length;
    if (type == NGHTTP2_HEADERS && sid > c->max_client_stream)
        c->max_client_stream = sid;
    c->dropping = type == NGHTTP2_RST_STREAM && sid != 0 && sid > c->max_client_stream;
    return c->dropping ? 0 : feed(c, c->fh, sizeof(c->fh));
}

/* grpc-core clients may cancel a call whose stream id they allocated but
 * whose HEADERS they never sent, with RST_STREAM on an idle stream.  RFC
 * 9113 makes that a connection error, which nghttp2 enforces by killing
 * every call on the connection; grpc-go servers ignore such frames.  So
 * frame headers are tracked here and those RST_STREAM frames dropped. */
int cri_conn_recv(struct cri_conn *c, const uint8_t *data, size_t len)
{
    size_t pos = 0;
    int rc = 0;

    c->busy++;
    while (pos < len && rc == 0) {
        size_t n;
        if (c->preface_left > 0) {
            n = len - pos < c->preface_left ? len - pos : c->preface_left;
            c->preface_left -= n;
            rc = feed(c, data + pos, n);
            pos += n;
            continue;
        }
        if (c->payload_left > 0) {
            n = len - pos < c->payload_left ? len - pos : c->payload_left;
            c->payload_left -= n;
            if (!c->dropping)
                rc = feed(c, data + pos, n);
            pos += n;
            continue;
        }
        n = sizeof(c->fh) - c->fh_len < len - pos ? sizeof(c->fh) - c->fh_len : len - pos;
        memcpy(c->fh + c->fh_len, data + pos, n);
        c->fh_len += n;
        pos += n;
        if (c->fh_len == sizeof(c->fh))
            rc = frame_header(c);
    }
    c->busy--;
    return rc;
}

ssize_t cri_conn_send(struct cri_conn *c, const uint8_t **data)
{
    c->busy++;
    ssize_t n = nghttp2_session_mem_send(c->session, data);
    c->busy--;
    return n;
}

bool cri_conn_alive(struct cri_conn *c)
{
    return nghttp2_session_want_read(c->session) || nghttp2_session_want_write(c->session);
}

int64_t cri_conn_next_deadline(struct cri_conn *c)
{
    int64_t best = 0;

    for (struct cri_stream *s = c->streams; s != NULL; s = s->next)
        if (s->deadline != 0 && s->resp < RESP_FINISHING && (best == 0 || s->deadline < best))
            best = s->deadline;
    return best;
}

void cri_conn_expire(struct cri_conn *c, int64_t now_ns)
{
    c->busy++;
    for (struct cri_stream *s = c->streams; s != NULL; s = s->next) {
        if (s->deadline == 0 || s->deadline > now_ns || s->resp >= RESP_FINISHING)
            continue;
        s->deadline = 0;
        stream_fail(s, CRI_DEADLINE_EXCEEDED, "picocri: deadline exceeded");
    }
    c->busy--;
}

void cri_conn_shutdown(struct cri_conn *c)
{
    c->busy++;
    if (nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                              nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR,
                              NULL, 0) != 0)
        nghttp2_session_terminate_session(c->session, NGHTTP2_NO_ERROR);
    c->busy--;
}

size_t cri_conn_buffered(const struct cri_conn *c) { return c->out_bytes; }
size_t cri_conn_stream_count(const struct cri_conn *c) { return c->stream_count; }
