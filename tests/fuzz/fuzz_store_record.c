/* libFuzzer target for agent/store's record-file parser: arbitrary bytes
 * (a torn, truncated or corrupted record file) go through st_record_decode()
 * for every kind.  Any input must be rejected or yield a record whose id has
 * the right shape; an accepted record must re-encode, and encoding is stable
 * across a decode round-trip (the nanopb do_roundtrips idea).
 * The CRC stops random payloads at the door, so half of the inputs get a
 * valid header built around them (first byte odd: byte 1 picks the kind, the
 * rest is the payload) to reach the protobuf decoder and the id checks. */
#include "store/store.h"

#include <string.h>
#include <zlib.h>

#ifdef ST_STORE_UNAVAILABLE
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    (void)data;
    (void)size;
    abort(); /* store.pb.h was not generated from agent/store/store.proto */
}
#else

static void check_kind(enum st_kind kind, const uint8_t *data, size_t size)
{
    union {
        picocri_store_ImageRecord img;
        picocri_store_PodRecord pod;
        picocri_store_ContainerRecord ctr;
    } rec, again;
    uint8_t *enc = NULL, *enc2 = NULL;
    size_t len = 0, len2 = 0;
    uint64_t seq = 0, seq2 = 0;

    if (st_record_decode(kind, data, size, &rec, &seq) != 0)
        return;
    if (st_record_id(kind, &rec) == NULL)
        __builtin_trap();
    if (st_record_encode(kind, seq, &rec, &enc, &len) != 0)
        __builtin_trap();
    if (st_record_decode(kind, enc, len, &again, &seq2) != 0 || seq2 != seq)
        __builtin_trap();
    if (st_record_encode(kind, seq2, &again, &enc2, &len2) != 0 || len2 != len ||
        memcmp(enc, enc2, len) != 0)
        __builtin_trap();
    free(enc);
    free(enc2);
    st_record_release(kind, &rec);
    st_record_release(kind, &again);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size >= 2 && (data[0] & 1) && size - 2 <= ST_RECORD_MAX - ST_HDR_LEN) {
        size_t plen = size - 2, len = ST_HDR_LEN + plen;
        uint8_t *buf = malloc(len);
        uint8_t kind = data[1] % ST_KIND_COUNT;
        if (buf == NULL)
            return 0;
        memcpy(buf, "PCST\x01\x00", 6);
        buf[6] = kind;
        buf[7] = 0;
        memset(buf + 8, 0x5a, 8);
        for (int i = 0; i < 4; i++)
            buf[16 + i] = (uint8_t)(plen >> (8 * i));
        memcpy(buf + ST_HDR_LEN, data + 2, plen);
        uLong c = crc32(crc32(0L, Z_NULL, 0), buf, 20);
        c = crc32(c, buf + ST_HDR_LEN, (uInt)plen);
        for (int i = 0; i < 4; i++)
            buf[20 + i] = (uint8_t)(c >> (8 * i));
        check_kind((enum st_kind)kind, buf, len);
        free(buf);
        return 0;
    }
    for (int k = 0; k < ST_KIND_COUNT; k++)
        check_kind((enum st_kind)k, data, size);
    return 0;
}
#endif /* ST_STORE_UNAVAILABLE */
