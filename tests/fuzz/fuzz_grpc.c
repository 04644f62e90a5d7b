/* Fuzz target: gRPC length-prefixed message reassembly (cri/cri_grpc.c).
 * The first byte picks the chunk size the rest is fed in.  Invariants:
 * no message exceeds the limit, and re-framing the messages found gives
 * back exactly the bytes consumed before any error. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cri_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define LIMIT 4096

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cri_framer f;
    size_t step, off = 0, rebuilt_len = 0, complete_end = 0;
    uint8_t *rebuilt;
    int rc = 0;

    if (size < 1)
        return 0;
    step = (size_t)(data[0] % 64) + 1;
    data++;
    size--;
    rebuilt = malloc(size + 1);
    if (rebuilt == NULL)
        return 0;
    cri_framer_init(&f, LIMIT);
    while (off < size && rc >= 0) {
        size_t piece = size - off < step ? size - off : step;
        const uint8_t *p = data + off;
        while (piece > 0) {
            struct cri_message m;
            size_t used = 0;
            rc = cri_framer_feed(&f, p, piece, &used, &m);
            if (used > piece)
                abort();
            p += used;
            piece -= used;
            off += used;
            if (rc < 0)
                break;
            if (rc == 1) {
                if (m.len > LIMIT || rebuilt_len + 5 + m.len > size)
                    abort();
                rebuilt[rebuilt_len] = m.compressed ? data[rebuilt_len] : 0;
                rebuilt[rebuilt_len + 1] = (uint8_t)(m.len >> 24);
                rebuilt[rebuilt_len + 2] = (uint8_t)(m.len >> 16);
                rebuilt[rebuilt_len + 3] = (uint8_t)(m.len >> 8);
                rebuilt[rebuilt_len + 4] = (uint8_t)m.len;
                if (m.len)
                    memcpy(rebuilt + rebuilt_len + 5, m.data, m.len);
                rebuilt_len += 5 + m.len;
                complete_end = off;
                free(m.data);
            }
        }
    }
    if (rebuilt_len != complete_end || memcmp(rebuilt, data, rebuilt_len) != 0)
        abort();
    if (rc == 0 && off != size)
        abort();
    if (cri_framer_buffered(&f) > LIMIT + 5)
        abort();
    cri_framer_fini(&f);
    free(rebuilt);
    return 0;
}
