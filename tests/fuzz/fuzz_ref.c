/* libFuzzer target: image references.  Invariant checked: whatever parses
 * formats to a canonical string that parses back to the same struct. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/image.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct img_ref a, b;
    struct ag_err err;
    char in[1100], out[600], out2[600];

    if (size >= sizeof(in))
        return 0;
    memcpy(in, data, size);
    in[size] = '\0';
    ag_err_init(&err);
    if (img_ref_parse(in, &a, &err) != 0) {
        if (err.code >= 0 || err.msg[0] == '\0')
            abort();
        return 0;
    }
    if (img_ref_format(&a, out, sizeof(out)) < 0)
        abort();
    if (img_ref_parse(out, &b, &err) != 0 || memcmp(&a, &b, sizeof(a)) != 0)
        abort();
    if (img_ref_format(&b, out2, sizeof(out2)) < 0 || strcmp(out, out2) != 0)
        abort();
    if (img_ref_api_host(&a)[0] == '\0' || img_ref_object(&a)[0] == '\0')
        abort();
    return 0;
}
