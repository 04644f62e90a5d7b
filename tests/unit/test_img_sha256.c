/* Unit tests of agent/image/img_sha256.c: FIPS 180-2 vectors and random
 * inputs split at random points, for the engine picked for this CPU and the
 * mbedTLS one, each compared with mbedTLS's one-shot SHA-256.  Covers every
 * buffering path (partial block, exact blocks, many blocks, padding into a
 * second block). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "image/image.h"

static void hex_of(const char *in, size_t len, bool software, char out[IMG_DIGEST_MAX])
{
    struct img_sha256 h;

    if (software)
        img_sha256_init_software(&h);
    else
        img_sha256_init(&h);
    assert_int_equal(img_sha256_update(&h, in, len), 0);
    assert_int_equal(img_sha256_finish_hex(&h, out), 0);
    img_sha256_fini(&h);
}

static void test_vectors(void **state)
{
    static const struct {
        const char *in, *hex;
    } v[] = {
        {"", "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"},
        {"abc", "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"},
        {"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
         "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"},
        {"abcdefghbcdefghicdefghijdefghijkefghijklfghijklmghijklmnhijklmnoijklmnopjklmnopqklmnopqrl"
         "mnopqrsmnopqrstnopqrstu",
         "cf5b16a778af8380036ce59e7b0492370b249b11e8f07a51afac45037afee9d1"},
    };
    char got[IMG_DIGEST_MAX];

    (void)state;
    for (size_t i = 0; i < sizeof(v) / sizeof(v[0]); i++)
        for (int sw = 0; sw < 2; sw++) {
            hex_of(v[i].in, strlen(v[i].in), sw, got);
            assert_string_equal(got + 7, v[i].hex);
        }
}

static void test_million_a(void **state)
{
    char *a = malloc(1000000);
    char got[IMG_DIGEST_MAX];

    (void)state;
    assert_non_null(a);
    memset(a, 'a', 1000000);
    for (int sw = 0; sw < 2; sw++) {
        hex_of(a, 1000000, sw, got);
        assert_string_equal(got + 7,
                            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    }
    free(a);
}

/* Every length 0..300 and random larger ones, fed in random pieces. */
static void test_random_split(void **state)
{
    enum { MAX = 70000 };
    uint8_t *buf = malloc(MAX), want[32], got[32];
    unsigned seed = 12345;

    (void)state;
    assert_non_null(buf);
    for (size_t i = 0; i < MAX; i++)
        buf[i] = (uint8_t)rand_r(&seed);
    for (int iter = 0; iter < 600; iter++) {
        size_t len = iter <= 300 ? (size_t)iter : (size_t)rand_r(&seed) % MAX;
        assert_int_equal(mbedtls_sha256_ret(buf, len, want, 0), 0);
        for (int sw = 0; sw < 2; sw++) {
            struct img_sha256 h;
            size_t off = 0;
            if (sw)
                img_sha256_init_software(&h);
            else
                img_sha256_init(&h);
            while (off < len) {
                size_t n = (size_t)rand_r(&seed) % (iter % 3 == 0 ? 7 : 200) + 1;
                if (n > len - off)
                    n = len - off;
                assert_int_equal(img_sha256_update(&h, buf + off, n), 0);
                off += n;
            }
            assert_int_equal(img_sha256_finish(&h, got), 0);
            assert_memory_equal(got, want, 32);
            /* Finished: more input is refused, not silently hashed. */
            assert_int_equal(img_sha256_update(&h, buf, 1), -EINVAL);
            img_sha256_fini(&h);
        }
    }
    free(buf);
}

static void test_engine_reported(void **state)
{
    struct img_sha256 h;

    (void)state;
    img_sha256_init_software(&h);
    assert_false(img_sha256_is_hardware(&h));
    img_sha256_fini(&h);
    img_sha256_init(&h);
    /* Either engine is valid here; print which one the vectors covered. */
    print_message("sha256 engine: %s\n",
                  img_sha256_is_hardware(&h) ? "CPU instructions" : "mbedTLS");
    img_sha256_fini(&h);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_vectors),
        cmocka_unit_test(test_million_a),
        cmocka_unit_test(test_random_split),
        cmocka_unit_test(test_engine_reported),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
