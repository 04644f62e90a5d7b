/* Fuzz target: SPDY/3.1 frame parser and header-block inflation
 * (agent/stream).  Input is split in chunks whose sizes come from the
 * input, so frame reassembly across reads is exercised too. */
#include <stdint.h>
#include <stdlib.h>

#include "stream/strm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int on_frame(void *arg, const struct strm_spdy_frame *f)
{
    size_t *n = arg;
    /* Touch what the server would read. */
    for (size_t i = 0; i < f->header_count; i++)
        *n += (size_t)(f->headers[i].name[0] + f->headers[i].value[0]);
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct strm_spdy *s;
    size_t sink = 0, off = 1;

    if (size < 1 || strm_spdy_new(&s) < 0)
        return 0;
    size_t chunk = (size_t)data[0] + 1;
    while (off < size) {
        size_t n = size - off < chunk ? size - off : chunk;
        if (strm_spdy_recv(s, data + off, n, on_frame, &sink) < 0)
            break;
        off += n;
    }
    strm_spdy_free(s);
    return 0;
}
