/* Fuzz target: every CRI message type of the method table through nanopb
 * (cri/api.proto).  The first byte picks a request or response type; the
 * rest is decoded, and a message that decodes must survive
 * encode -> decode -> encode with identical bytes. */
#include <pb_decode.h>
#include <pb_encode.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cri_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t *encode(const pb_msgdesc_t *fields, const void *msg, size_t *len)
{
    uint8_t *buf = NULL;

    if (cri_grpc_encode(fields, msg, &buf, len) < 0)
        abort(); /* whatever decoded must encode */
    return buf;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    size_t pick = data[0] % (2 * cri_method_count);
    const struct cri_method *m = &cri_methods[pick / 2];
    const pb_msgdesc_t *fields = pick % 2 ? m->resp_fields : m->req_fields;
    size_t struct_size = pick % 2 ? m->resp_size : m->req_size;
    void *a = calloc(1, struct_size);
    void *b = calloc(1, struct_size);
    size_t len1 = 0, len2 = 0;
    uint8_t *e1 = NULL, *e2 = NULL;

    if (a == NULL || b == NULL)
        goto out;
    pb_istream_t is = pb_istream_from_buffer(data + 1, size - 1);
    if (!pb_decode(&is, fields, a))
        goto out;
    e1 = encode(fields, a, &len1);
    pb_istream_t is2 = pb_istream_from_buffer(e1 + 5, len1 - 5);
    if (!pb_decode(&is2, fields, b))
        abort();
    e2 = encode(fields, b, &len2);
    if (len1 != len2 || memcmp(e1, e2, len1) != 0)
        abort();
    pb_release(fields, a);
    pb_release(fields, b);
out:
    free(e1);
    free(e2);
    free(a);
    free(b);
    return 0;
}
