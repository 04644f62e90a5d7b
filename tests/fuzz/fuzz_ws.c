/* Fuzz target: WebSocket frame parser with message reassembly
 * (agent/stream), server side (masked frames) and client side. */
#include <stdint.h>
#include <stdlib.h>

#include "stream/strm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_msg(void *arg, enum strm_ws_opcode op, const uint8_t *d, size_t len)
{
    size_t *n = arg;
    *n += len + (size_t)op + (len ? d[0] : 0);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct strm_ws ws;
    size_t sink = 0;

    if (size < 1)
        return 0;
    strm_ws_init(&ws, data[0] & 1);
    size_t chunk = (size_t)(data[0] >> 1) + 1, off = 1;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (strm_ws_recv(&ws, data + off, n, on_msg, &sink) < 0)
            break;
        off += n;
    }
    strm_ws_fini(&ws);
    return 0;
}
