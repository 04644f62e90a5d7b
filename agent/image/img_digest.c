/* agent/image: content digests.  Validates the "algorithm:hex" strings that
 * arrive in manifests and references, computes SHA-256 (img_sha256.c) and
 * SHA-512 (mbedTLS) and
 * derives ChainIDs.  Invariant: a digest accepted by img_digest_validate()
 * is one we can verify (sha256 or sha512, lowercase hex of exact length). */
#include "image/image.h"

#include <mbedtls/sha256.h>
#include <mbedtls/sha512.h>
#include <stdio.h>
#include <string.h>

static const char hexdig[] = "0123456789abcdef";

static void hex_encode(const uint8_t *in, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++) {
        out[2 * i] = hexdig[in[i] >> 4];
        out[2 * i + 1] = hexdig[in[i] & 15];
    }
    out[2 * n] = '\0';
}

static bool is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return s[n] == '\0';
}

int img_digest_validate(const char *s, struct ag_err *err)
{
    const char *hex;
    size_t want;

    if (s == NULL || *s == '\0')
        return ag_err_set(err, -EINVAL, "empty digest");
    if (strncmp(s, "sha256:", 7) == 0) {
        hex = s + 7;
        want = 64;
    } else if (strncmp(s, "sha512:", 7) == 0) {
        hex = s + 7;
        want = 128;
    } else {
        return ag_err_set(err, -EINVAL, "digest algorithm not supported (want sha256: or sha512:)");
    }
    if (strnlen(hex, want + 1) != want || !is_lower_hex(hex, want))
        return ag_err_set(err, -EINVAL, "digest must be %.6s followed by %zu lowercase hex digits",
                          s, want);
    return 0;
}

void img_digest_sha256(const void *data, size_t len, char out[IMG_DIGEST_MAX])
{
    struct img_sha256 h;

    /* Neither engine can fail on a fresh context. */
    img_sha256_init(&h);
    if (img_sha256_update(&h, data, len) < 0 || img_sha256_finish_hex(&h, out) < 0)
        ag_assert(!"sha256 failed");
    img_sha256_fini(&h);
}

int img_digest_verify(const char *digest, const void *data, size_t len, struct ag_err *err)
{
    char got[IMG_DIGEST_MAX];
    uint8_t sum[64];
    int rc = img_digest_validate(digest, err);

    if (rc < 0)
        return rc;
    if (strncmp(digest, "sha256:", 7) == 0) {
        img_digest_sha256(data, len, got);
    } else {
        (void)mbedtls_sha512_ret(data, len, sum, 0);
        memcpy(got, "sha512:", 7);
        hex_encode(sum, sizeof(sum), got + 7);
    }
    if (strcmp(got, digest) != 0)
        return ag_err_set(err, -EBADMSG, "digest mismatch: expected %s, got %s", digest, got);
    return 0;
}

int img_digest_chain_id(char *const *diff_ids, size_t count, char out[IMG_DIGEST_MAX],
                        struct ag_err *err)
{
    char buf[2 * IMG_DIGEST_MAX];

    if (count == 0)
        return ag_err_set(err, -EINVAL, "chain id of zero layers");
    for (size_t i = 0; i < count; i++) {
        if (strncmp(diff_ids[i], "sha256:", 7) != 0 || img_digest_validate(diff_ids[i], err) < 0)
            return ag_err_set(err, -EINVAL, "diff_id %zu is not a sha256 digest", i);
    }
    snprintf(out, IMG_DIGEST_MAX, "%s", diff_ids[0]);
    for (size_t i = 1; i < count; i++) {
        int n = snprintf(buf, sizeof(buf), "%s %s", out, diff_ids[i]);
        img_digest_sha256(buf, (size_t)n, out);
    }
    return 0;
}
