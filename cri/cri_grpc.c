/* cri/: gRPC wire helpers that do no I/O: length-prefixed message
 * reassembly, grpc-timeout parsing, grpc-message percent-encoding,
 * response encoding, and the one errno <-> gRPC status table.
 *
 * Invariant: the framer never allocates more than the bytes that actually
 * arrived (plus doubling slack) and never more than max_len for one
 * message; an announced length is checked before any allocation.
 */
#include "cri_internal.h"

#include <pb_encode.h>
#include <string.h>
#include <time.h>

void cri_framer_init(struct cri_framer *f, size_t max_len)
{
    memset(f, 0, sizeof(*f));
    f->max_len = max_len;
}

void cri_framer_fini(struct cri_framer *f)
{
    free(f->buf);
    f->buf = NULL;
    f->buf_len = f->buf_cap = 0;
    f->hdr_len = 0;
}

bool cri_framer_partial(const struct cri_framer *f) { return f->hdr_len > 0; }

size_t cri_framer_buffered(const struct cri_framer *f) { return f->hdr_len + f->buf_len; }

static int framer_grow(struct cri_framer *f, size_t need)
{
    size_t cap = f->buf_cap ? f->buf_cap : 256;

    while (cap < need)
        cap *= 2;
    if (cap > f->msg_len)
        cap = f->msg_len;
    uint8_t *p = realloc(f->buf, cap);
    if (p == NULL)
        return -ENOMEM;
    f->buf = p;
    f->buf_cap = cap;
    return 0;
}

static void framer_take(struct cri_framer *f, struct cri_message *out)
{
    out->data = f->buf;
    out->len = f->buf_len;
    out->compressed = f->compressed;
    f->buf = NULL;
    f->buf_len = f->buf_cap = 0;
    f->hdr_len = 0;
}

int cri_framer_feed(struct cri_framer *f, const uint8_t *data, size_t len, size_t *consumed,
                    struct cri_message *out)
{
    size_t pos = 0;

    *consumed = 0;
    memset(out, 0, sizeof(*out));
    while (f->hdr_len < 5) {
        if (pos == len) {
            *consumed = pos;
            return 0;
        }
        f->hdr[f->hdr_len++] = data[pos++];
        if (f->hdr_len == 5) {
            f->compressed = f->hdr[0] != 0;
            f->msg_len = (uint32_t)f->hdr[1] << 24 | (uint32_t)f->hdr[2] << 16 |
                         (uint32_t)f->hdr[3] << 8 | f->hdr[4];
            if (f->msg_len > f->max_len) {
                *consumed = pos;
                return -EMSGSIZE;
            }
        }
    }
    size_t want = f->msg_len - f->buf_len;
    size_t n = len - pos < want ? len - pos : want;
    if (n > 0) {
        if (f->buf_len + n > f->buf_cap && framer_grow(f, f->buf_len + n) < 0) {
            *consumed = pos;
            return -ENOMEM;
        }
        memcpy(f->buf + f->buf_len, data + pos, n);
        f->buf_len += n;
        pos += n;
    }
    *consumed = pos;
    if (f->buf_len < f->msg_len)
        return 0;
    framer_take(f, out);
    return 1;
}

int cri_grpc_timeout_parse(const char *v, size_t len, int64_t *out_ns)
{
    static const struct {
        char unit;
        int64_t ns;
    } units[] = {{'H', 3600000000000LL}, {'M', 60000000000LL}, {'S', 1000000000LL},
                 {'m', 1000000LL},       {'u', 1000LL},        {'n', 1LL}};
    int64_t value = 0;

    if (len < 2 || len > 9)
        return -EINVAL;
    for (size_t i = 0; i + 1 < len; i++) {
        if (v[i] < '0' || v[i] > '9')
            return -EINVAL;
        value = value * 10 + (v[i] - '0');
    }
    for (size_t i = 0; i < AG_ARRAY_LEN(units); i++) {
        if (units[i].unit != v[len - 1])
            continue;
        /* At most 8 digits, so value < 1e8; only the hour and minute
         * units can overflow int64 nanoseconds. */
        if (value > INT64_MAX / units[i].ns)
            *out_ns = INT64_MAX;
        else
            *out_ns = value * units[i].ns;
        return 0;
    }
    return -EINVAL;
}

size_t cri_grpc_percent_encode(char *out, size_t out_len, const char *msg)
{
    static const char hex[] = "0123456789ABCDEF";
    size_t n = 0;

    if (out_len == 0)
        return 0;
    for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
        if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
            if (n + 1 >= out_len)
                break;
            out[n++] = (char)*p;
        } else {
            if (n + 3 >= out_len)
                break;
            out[n++] = '%';
            out[n++] = hex[*p >> 4];
            out[n++] = hex[*p & 15];
        }
    }
    out[n] = '\0';
    return n;
}

static int hexval(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

size_t cri_grpc_percent_decode(char *out, size_t out_len, const char *in, size_t in_len)
{
    size_t n = 0;

    if (out_len == 0)
        return 0;
    for (size_t i = 0; i < in_len && n + 1 < out_len; i++) {
        int hi, lo;
        if (in[i] == '%' && i + 2 < in_len && (hi = hexval(in[i + 1])) >= 0 &&
            (lo = hexval(in[i + 2])) >= 0) {
            out[n++] = (char)(hi << 4 | lo);
            i += 2;
        } else {
            out[n++] = in[i];
        }
    }
    out[n] = '\0';
    return n;
}

int cri_grpc_encode(const pb_msgdesc_t *fields, const void *msg, uint8_t **out, size_t *out_len)
{
    size_t size = 0;

    if (!pb_get_encoded_size(&size, fields, msg))
        return -EIO;
    if (size > UINT32_MAX - 5)
        return -EMSGSIZE;
    uint8_t *buf = malloc(size + 5);
    if (buf == NULL)
        return -ENOMEM;
    buf[0] = 0;
    buf[1] = (uint8_t)(size >> 24);
    buf[2] = (uint8_t)(size >> 16);
    buf[3] = (uint8_t)(size >> 8);
    buf[4] = (uint8_t)size;
    pb_ostream_t os = pb_ostream_from_buffer(buf + 5, size);
    if (!pb_encode(&os, fields, msg) || os.bytes_written != size) {
        free(buf);
        return -EIO;
    }
    *out = buf;
    *out_len = size + 5;
    return 0;
}

/* ---- status table ------------------------------------------------------- */

static const struct {
    int err; /* positive errno */
    enum cri_code code;
} errno_codes[] = {
    {ENOENT, CRI_NOT_FOUND},
    {EEXIST, CRI_ALREADY_EXISTS},
    {EINVAL, CRI_INVALID_ARGUMENT},
    {ETIMEDOUT, CRI_DEADLINE_EXCEEDED},
    {ENOMEM, CRI_RESOURCE_EXHAUSTED},
    {ENOSPC, CRI_RESOURCE_EXHAUSTED},
    {EMSGSIZE, CRI_RESOURCE_EXHAUSTED},
    {EOPNOTSUPP, CRI_UNIMPLEMENTED},
    {ENOSYS, CRI_UNIMPLEMENTED},
    /* EBUSY: the object is in a state that forbids the operation (kubelet
     * should not blindly retry).  EAGAIN: transient, retry later. */
    {EBUSY, CRI_FAILED_PRECONDITION},
    {EAGAIN, CRI_UNAVAILABLE},
    {ECONNREFUSED, CRI_UNAVAILABLE},
    {ECANCELED, CRI_CANCELLED},
    {EPERM, CRI_PERMISSION_DENIED},
    {EACCES, CRI_PERMISSION_DENIED},
};

enum cri_code cri_code_from_errno(int neg_errno)
{
    int e = neg_errno < 0 ? -neg_errno : neg_errno;

    for (size_t i = 0; i < AG_ARRAY_LEN(errno_codes); i++)
        if (errno_codes[i].err == e)
            return errno_codes[i].code;
    return CRI_INTERNAL;
}

int cri_errno_from_code(enum cri_code code)
{
    if (code == CRI_OK)
        return 0;
    for (size_t i = 0; i < AG_ARRAY_LEN(errno_codes); i++)
        if (errno_codes[i].code == code)
            return -errno_codes[i].err;
    return -EIO;
}

const char *cri_code_name(enum cri_code code)
{
    static const char *const names[] = {
        "OK",       "Canceled",       "Unknown",          "InvalidArgument",   "DeadlineExceeded",
        "NotFound", "AlreadyExists",  "PermissionDenied", "ResourceExhausted", "FailedPrecondition",
        "Aborted",  "OutOfRange",     "Unimplemented",    "Internal",          "Unavailable",
        "DataLoss", "Unauthenticated"};
    return (unsigned)code < AG_ARRAY_LEN(names) ? names[code] : "Unknown";
}

int64_t cri__now_mono(void)
{
    struct timespec ts;

    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}
