/* agent/image: streaming SHA-256 for blobs and layers (digests and
 * DiffIDs), with the CPU's SHA-256 instructions when it has them (x86 SHA
 * extensions, ARMv8 SHA2) and mbedTLS otherwise.
 *
 * Why: every pulled byte is hashed twice (the compressed blob for its
 * digest, the uncompressed stream for its DiffID).  mbedTLS 2.28 has only a
 * portable C SHA-256 (under 100 MB/s on the benchmark machine, well under
 * on ARM boards), which made hashing the largest cost of a pull; the
 * instructions are 10-20x faster, as Go's crypto/sha256 (containerd) uses
 * them.  Only the 64-byte block function is CPU-specific; padding and
 * buffering are common and the mbedTLS engine is the reference the unit
 * tests compare against.
 *
 * Invariant: a context gives the same digest whichever engine it uses (the
 * engine is chosen once per process, or forced to mbedTLS per context or
 * with PICOCRI_SHA256_SOFTWARE in the environment).  One context is used by
 * one thread at a time; contexts are independent.
 */
#include "image/image.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#include <immintrin.h>
#define HAVE_SHA_X86 1
#elif defined(__aarch64__)
#include <arm_neon.h>
#include <asm/hwcap.h>
#include <sys/auxv.h>
#define HAVE_SHA_ARM64 1
#endif

#if defined(HAVE_SHA_X86) || defined(HAVE_SHA_ARM64)
/* Round constants for the instruction paths (mbedTLS has its own). */
static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};
#endif

static const uint32_t H0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                               0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};

typedef void (*blocks_fn)(uint32_t state[8], const uint8_t *p, size_t blocks);

#ifdef HAVE_SHA_X86
/* The x86 SHA extensions keep the state as ABEF / CDGH and do two rounds
 * per SHA256RNDS2; the message schedule is SHA256MSG1/MSG2. */
__attribute__((target("sha,sse4.1,ssse3"))) static void blocks_x86(uint32_t state[8],
                                                                   const uint8_t *p, size_t blocks)
{
    const __m128i bswap = _mm_set_epi64x(0x0c0d0e0f08090a0bULL, 0x0405060700010203ULL);
    __m128i tmp = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[0]), 0xB1);
    __m128i st1 = _mm_shuffle_epi32(_mm_loadu_si128((const __m128i *)&state[4]), 0x1B);
    __m128i st0 = _mm_alignr_epi8(tmp, st1, 8); /* ABEF */
    st1 = _mm_blend_epi16(st1, tmp, 0xF0);      /* CDGH */

    for (; blocks > 0; blocks--, p += 64) {
        __m128i save0 = st0, save1 = st1, w[16], msg;
        for (int k = 0; k < 16; k++) {
            if (k < 4)
                w[k] = _mm_shuffle_epi8(_mm_loadu_si128((const __m128i *)(p + 16 * k)), bswap);
            else
                w[k] = _mm_sha256msg2_epu32(_mm_add_epi32(_mm_sha256msg1_epu32(w[k - 4], w[k - 3]),
                                                          _mm_alignr_epi8(w[k - 1], w[k - 2], 4)),
                                            w[k - 1]);
            msg = _mm_add_epi32(w[k], _mm_loadu_si128((const __m128i *)&K[4 * k]));
            st1 = _mm_sha256rnds2_epu32(st1, st0, msg);
            st0 = _mm_sha256rnds2_epu32(st0, st1, _mm_shuffle_epi32(msg, 0x0E));
        }
        st0 = _mm_add_epi32(st0, save0);
        st1 = _mm_add_epi32(st1, save1);
    }
    tmp = _mm_shuffle_epi32(st0, 0x1B);                                      /* FEBA */
    st1 = _mm_shuffle_epi32(st1, 0xB1);                                      /* DCHG */
    _mm_storeu_si128((__m128i *)&state[0], _mm_blend_epi16(tmp, st1, 0xF0)); /* DCBA */
    _mm_storeu_si128((__m128i *)&state[4], _mm_alignr_epi8(st1, tmp, 8));    /* HGFE */
}

static blocks_fn detect(void)
{
    unsigned a, b, c, d;

    if (!__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_SSE4_1) || !(c & bit_SSSE3))
        return NULL;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(b & bit_SHA))
        return NULL;
    return blocks_x86;
}
#elif defined(HAVE_SHA_ARM64)
/* ARMv8 SHA2: SHA256H/SHA256H2 do four rounds on ABCD / EFGH, SHA256SU0/SU1
 * extend the message schedule. */
__attribute__((target("+crypto"))) static void blocks_arm64(uint32_t state[8], const uint8_t *p,
                                                            size_t blocks)
{
    uint32x4_t abcd = vld1q_u32(&state[0]), efgh = vld1q_u32(&state[4]);

    for (; blocks > 0; blocks--, p += 64) {
        uint32x4_t save0 = abcd, save1 = efgh, w[16];
        for (int k = 0; k < 16; k++) {
            if (k < 4)
                w[k] = vreinterpretq_u32_u8(vrev32q_u8(vld1q_u8(p + 16 * k)));
            else
                w[k] = vsha256su1q_u32(vsha256su0q_u32(w[k - 4], w[k - 3]), w[k - 2], w[k - 1]);
            uint32x4_t wk = vaddq_u32(w[k], vld1q_u32(&K[4 * k]));
            uint32x4_t prev = abcd;
            abcd = vsha256hq_u32(abcd, efgh, wk);
            efgh = vsha256h2q_u32(efgh, prev, wk);
        }
        abcd = vaddq_u32(abcd, save0);
        efgh = vaddq_u32(efgh, save1);
    }
    vst1q_u32(&state[0], abcd);
    vst1q_u32(&state[4], efgh);
}

static blocks_fn detect(void) { return (getauxval(AT_HWCAP) & HWCAP_SHA2) ? blocks_arm64 : NULL; }
#else
static blocks_fn detect(void) { return NULL; }
#endif

static blocks_fn hw_blocks;
static pthread_once_t hw_once = PTHREAD_ONCE_INIT;

static void hw_setup(void)
{
    if (getenv("PICOCRI_SHA256_SOFTWARE") == NULL)
        hw_blocks = detect();
}

static void start(struct img_sha256 *h, blocks_fn fn)
{
    memset(h, 0, sizeof(*h));
    h->blocks = fn;
    memcpy(h->state, H0, sizeof(H0));
    mbedtls_sha256_init(&h->soft);
    if (fn == NULL && mbedtls_sha256_starts_ret(&h->soft, 0) != 0)
        h->failed = -EIO;
}

void img_sha256_init(struct img_sha256 *h)
{
    (void)pthread_once(&hw_once, hw_setup);
    start(h, hw_blocks);
}

void img_sha256_init_software(struct img_sha256 *h) { start(h, NULL); }

bool img_sha256_is_hardware(const struct img_sha256 *h) { return h->blocks != NULL; }

int img_sha256_update(struct img_sha256 *h, const void *data, size_t len)
{
    const uint8_t *p = data;
    blocks_fn fn = h->blocks;

    if (h->failed)
        return h->failed;
    if (fn == NULL) {
        if (mbedtls_sha256_update_ret(&h->soft, p, len) != 0)
            h->failed = -EIO;
        return h->failed;
    }
    h->total += len;
    if (h->buf_len > 0) {
        size_t n = 64 - h->buf_len < len ? 64 - h->buf_len : len;
        memcpy(h->buf + h->buf_len, p, n);
        h->buf_len += n;
        p += n;
        len -= n;
        if (h->buf_len < 64)
            return 0;
        fn(h->state, h->buf, 1);
        h->buf_len = 0;
    }
    if (len >= 64) {
        fn(h->state, p, len / 64);
        p += len & ~(size_t)63;
        len &= 63;
    }
    memcpy(h->buf, p, len);
    h->buf_len = len;
    return 0;
}

int img_sha256_finish(struct img_sha256 *h, uint8_t sum[32])
{
    blocks_fn fn = h->blocks;
    uint64_t bits;

    if (h->failed)
        return h->failed;
    if (fn == NULL) {
        int rc = mbedtls_sha256_finish_ret(&h->soft, sum) == 0 ? 0 : -EIO;
        h->failed = -EINVAL; /* finished: no more input */
        return rc;
    }
    bits = h->total * 8;
    h->buf[h->buf_len++] = 0x80;
    if (h->buf_len > 56) {
        memset(h->buf + h->buf_len, 0, 64 - h->buf_len);
        fn(h->state, h->buf, 1);
        h->buf_len = 0;
    }
    memset(h->buf + h->buf_len, 0, 56 - h->buf_len);
    for (int i = 0; i < 8; i++)
        h->buf[56 + i] = (uint8_t)(bits >> (56 - 8 * i));
    fn(h->state, h->buf, 1);
    for (int i = 0; i < 8; i++) {
        sum[4 * i] = (uint8_t)(h->state[i] >> 24);
        sum[4 * i + 1] = (uint8_t)(h->state[i] >> 16);
        sum[4 * i + 2] = (uint8_t)(h->state[i] >> 8);
        sum[4 * i + 3] = (uint8_t)h->state[i];
    }
    h->failed = -EINVAL; /* finished: no more input */
    return 0;
}

int img_sha256_finish_hex(struct img_sha256 *h, char out[IMG_DIGEST_MAX])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t sum[32];
    int rc = img_sha256_finish(h, sum);

    if (rc < 0)
        return rc;
    memcpy(out, "sha256:", 7);
    for (size_t i = 0; i < 32; i++) {
        out[7 + 2 * i] = hex[sum[i] >> 4];
        out[8 + 2 * i] = hex[sum[i] & 15];
    }
    out[71] = '\0';
    return 0;
}

void img_sha256_fini(struct img_sha256 *h) { mbedtls_sha256_free(&h->soft); }
