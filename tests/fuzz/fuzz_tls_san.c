/* libFuzzer target: the subjectAltName walk behind IP-address certificate
 * matching (img_tls__cert_has_ip in img_tls.c), fed arbitrary bytes as a
 * certificate's v3 extensions.  The first byte picks the address (IPv4
 * 127.0.0.1 or IPv6 ::1).  Invariant: no read outside the input (ASan),
 * and a match is reported only if the address's octets occur in the input.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <mbedtls/x509_crt.h>

#include "image/img_net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const uint8_t v4[4] = {127, 0, 0, 1};
    static const uint8_t v6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    mbedtls_x509_crt crt;
    uint8_t *copy;
    const uint8_t *ip;
    size_t ip_len;

    if (size < 1 || size > 65536)
        return 0;
    ip = (data[0] & 1) ? v6 : v4;
    ip_len = (data[0] & 1) ? sizeof(v6) : sizeof(v4);
    /* An exact-size heap copy, so ASan sees any over-read. */
    copy = malloc(size - 1 ? size - 1 : 1);
    if (copy == NULL)
        return 0;
    memcpy(copy, data + 1, size - 1);
    memset(&crt, 0, sizeof(crt));
    crt.v3_ext.p = copy;
    crt.v3_ext.len = size - 1;
    if (img_tls__cert_has_ip(&crt, ip, ip_len) && memmem(copy, size - 1, ip, ip_len) == NULL)
        abort();
    free(copy);
    return 0;
}
