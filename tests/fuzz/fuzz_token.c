/* libFuzzer target: the token endpoint's JSON response (img_auth.c).
 * Invariant: a token is returned only as a printable, non-empty string
 * with a positive lifetime. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "image/img_net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *tok = NULL;
    int64_t exp = 0;

    if (size > (1u << 20))
        return 0;
    if (img_auth_token_parse((const char *)data, size, &tok, &exp) == 0) {
        if (tok == NULL || tok[0] == '\0' || exp <= 0)
            abort();
        for (const char *p = tok; *p; p++)
            if ((unsigned char)*p < 0x21 || (unsigned char)*p > 0x7e)
                abort();
        img_auth_secret_free(tok);
    } else if (tok != NULL) {
        abort();
    }
    return 0;
}
