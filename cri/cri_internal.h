/* cri/ internal header: the sans-I/O gRPC framing helpers (cri_grpc.c) and
 * the HTTP/2 + gRPC server engine (cri_h2.c) that the libuv adapter
 * (cri_server.c), the client and the tests drive. */
#ifndef CRI_INTERNAL_H
#define CRI_INTERNAL_H

#include "cri.h"

#include <sys/types.h>

/* Largest request message accepted (bytes after the 5-byte prefix). */
#define CRI_MAX_RECV_MSG (16u * 1024 * 1024)
/* Streams open at once on one connection (advertised in SETTINGS). */
#define CRI_MAX_STREAMS 1024
/* Request bytes buffered across all streams of one connection. */
#define CRI_MAX_CONN_INPUT (64u * 1024 * 1024)

/* ---- length-prefixed message reassembly (cri_grpc.c) ----------------------
 * Feed it the DATA payload of one stream in any split; it yields whole
 * messages.  The buffer grows as bytes arrive, so a large announced length
 * costs nothing until the bytes come. */
struct cri_framer {
    uint8_t hdr[5];
    size_t hdr_len;
    uint32_t msg_len;
    bool compressed;
    uint8_t *buf; /* owned */
    size_t buf_len;
    size_t buf_cap;
    size_t max_len;
};

struct cri_message {
    uint8_t *data; /* owned (may be NULL when len is 0) */
    size_t len;
    bool compressed;
};

void cri_framer_init(struct cri_framer *f, size_t max_len);
void cri_framer_fini(struct cri_framer *f);
/* Consumes bytes from data until one message completes.  Returns 1 with
 * *out filled (owned by the caller) and *consumed set, 0 when all bytes
 * were consumed without completing a message, -EMSGSIZE when a message
 * announces more than max_len (checked before allocating), -ENOMEM. */
int cri_framer_feed(struct cri_framer *f, const uint8_t *data, size_t len, size_t *consumed,
                    struct cri_message *out) AG_WUR;
/* True when a message has started but not completed. */
bool cri_framer_partial(const struct cri_framer *f);
/* Bytes currently buffered. */
size_t cri_framer_buffered(const struct cri_framer *f);

/* Parses a grpc-timeout value ("1-8 digits" + H M S m u n) into ns.
 * Returns 0 or -EINVAL.  Results are clamped to INT64_MAX. */
int cri_grpc_timeout_parse(const char *v, size_t len, int64_t *out_ns) AG_WUR;
/* Percent-encodes a grpc-message: 0x20-0x7E except '%' literal, all other
 * bytes %XX.  Always NUL-terminates; truncates at a whole escape.
 * Returns the length written. */
size_t cri_grpc_percent_encode(char *out, size_t out_len, const char *msg);
/* Decodes %XX escapes (lenient: a bad escape is kept literally). */
size_t cri_grpc_percent_decode(char *out, size_t out_len, const char *in, size_t in_len);
/* Encodes msg as a length-prefixed message; *out is owned. */
int cri_grpc_encode(const pb_msgdesc_t *fields, const void *msg, uint8_t **out,
                    size_t *out_len) AG_WUR;

/* ---- the server engine (cri_h2.c) ------------------------------------------ */

struct cri_conn;

struct cri_conn_ops {
    /* Output became pending outside of cri_conn_recv/send/expire (an
     * asynchronous completion): the adapter should pump soon.  Never
     * called while the engine itself is running. */
    void (*wake)(void *user);
};

struct cri_conn_config {
    const struct cri_method *methods; /* borrowed, usually cri_methods */
    size_t method_count;
    struct cri_daemon *daemon; /* borrowed */
    struct cri_conn_ops ops;
    void *user;
    uint32_t max_streams; /* 0 = CRI_MAX_STREAMS */
};

/* Creates a server session and queues its SETTINGS. */
int cri_conn_new(struct cri_conn **out, const struct cri_conn_config *cfg) AG_WUR;
/* Cancels every call still attached (cancel callbacks run), frees all.
 * Accepts NULL. */
void cri_conn_free(struct cri_conn *c);
/* Feeds received bytes.  Returns 0, or a negative nghttp2 error when the
 * connection must be closed (bad preface, protocol error, ...). */
int cri_conn_recv(struct cri_conn *c, const uint8_t *data, size_t len) AG_WUR;
/* Next chunk of output bytes; *data is valid until the next engine call.
 * Returns its length, 0 when nothing is pending, negative when fatal. */
ssize_t cri_conn_send(struct cri_conn *c, const uint8_t **data) AG_WUR;
/* False once the session is finished (GOAWAY exchanged, nothing active,
 * nothing to write): the adapter closes the connection. */
bool cri_conn_alive(struct cri_conn *c);
/* Earliest deadline (CLOCK_MONOTONIC ns) of an open stream, 0 if none. */
int64_t cri_conn_next_deadline(struct cri_conn *c);
/* Fails every stream whose deadline is <= now_ns with DEADLINE_EXCEEDED
 * (cancelling its call). */
void cri_conn_expire(struct cri_conn *c, int64_t now_ns);
/* Graceful shutdown: GOAWAY with the last processed stream; existing
 * streams finish. */
void cri_conn_shutdown(struct cri_conn *c);
/* Response bytes queued in streams, not yet taken by nghttp2. */
size_t cri_conn_buffered(const struct cri_conn *c);
size_t cri_conn_stream_count(const struct cri_conn *c);

int64_t cri__now_mono(void);

#endif
