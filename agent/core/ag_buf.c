/* agent/core: growable byte buffers for protocol output and reassembly.
 * Invariant: data is NULL exactly when cap is 0; len <= cap. */
#include "ag_core.h"

#include <string.h>

void ag_buf_init(struct ag_buf *b)
{
    b->data = NULL;
    b->len = b->cap = 0;
}

void ag_buf_fini(struct ag_buf *b)
{
    free(b->data);
    ag_buf_init(b);
}

int ag_buf_reserve(struct ag_buf *b, size_t extra)
{
    if (extra > SIZE_MAX / 2 - b->len)
        return -ENOMEM;
    if (b->len + extra <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + extra)
        cap *= 2;
    uint8_t *d = realloc(b->data, cap);
    if (d == NULL)
        return -ENOMEM;
    b->data = d;
    b->cap = cap;
    return 0;
}

int ag_buf_append(struct ag_buf *b, const void *data, size_t len)
{
    int rc = ag_buf_reserve(b, len);

    if (rc < 0)
        return rc;
    if (len > 0)
        memcpy(b->data + b->len, data, len);
    b->len += len;
    return 0;
}

void ag_buf_consume(struct ag_buf *b, size_t n)
{
    ag_assert(n <= b->len);
    memmove(b->data, b->data + n, b->len - n);
    b->len -= n;
}
