/* agent/image: streaming layer decompression.  Compressed bytes in (any
 * chunking), uncompressed bytes out to a sink, for gzip (zlib, every member
 * of a multi-member stream), zstd (libzstd, every frame) and identity.  The
 * uncompressed stream is hashed with SHA-256 as it passes (the layer's
 * DiffID).  Invariants: the sink never receives more than max_out bytes in
 * total (decompression bomb bound, checked before the sink is called); a
 * stream that ends inside a member/frame is an error; after an error the
 * object refuses further input. */
#include "image/image.h"

#include <stdio.h>
#include <string.h>
#include <zlib.h>
#include <zstd.h>

/* Output piece size: each piece is one hash update and one tar feed. */
#define OUT_CHUNK (256 * 1024)

struct img_decomp {
    enum img_compression comp;
    uint64_t max_out, total_out, total_in;
    img_sink_cb sink;
    void *ud;
    bool failed;
    bool member_done; /* gzip: last member complete; zstd: last frame complete */
    z_stream z;
    bool z_init;
    ZSTD_DStream *zs;
    struct img_sha256 sha;
    uint8_t out[OUT_CHUNK];
};

int img_decomp_new(enum img_compression comp, uint64_t max_out, img_sink_cb sink, void *ud,
                   struct img_decomp **out)
{
    struct img_decomp *d;

    *out = NULL;
    if (comp != IMG_COMP_NONE && comp != IMG_COMP_GZIP && comp != IMG_COMP_ZSTD)
        return -EINVAL;
    d = calloc(1, sizeof(*d));
    if (d == NULL)
        return -ENOMEM;
    d->comp = comp;
    d->max_out = max_out ? max_out : IMG_DECOMP_DEFAULT_MAX;
    d->sink = sink;
    d->ud = ud;
    img_sha256_init(&d->sha);
    if (comp == IMG_COMP_GZIP) {
        /* 16 + MAX_WBITS: gzip wrapper only, no raw deflate or zlib. */
        if (inflateInit2(&d->z, 16 + MAX_WBITS) != Z_OK)
            goto fail;
        d->z_init = true;
    } else if (comp == IMG_COMP_ZSTD) {
        d->zs = ZSTD_createDStream();
        if (d->zs == NULL || ZSTD_isError(ZSTD_initDStream(d->zs)))
            goto fail;
    }
    *out = d;
    return 0;
fail:
    img_decomp_free(d);
    return -ENOMEM;
}

void img_decomp_free(struct img_decomp *d)
{
    if (d == NULL)
        return;
    if (d->z_init)
        inflateEnd(&d->z);
    ZSTD_freeDStream(d->zs);
    img_sha256_fini(&d->sha);
    free(d);
}

uint64_t img_decomp_total_out(const struct img_decomp *d) { return d->total_out; }

static int emit(struct img_decomp *d, const uint8_t *p, size_t n, struct ag_err *err)
{
    int rc;

    if (n == 0)
        return 0;
    if (n > d->max_out - d->total_out)
        return ag_err_set(err, -EFBIG,
                          "layer decompresses to more than %llu bytes (the configured limit)",
                          (unsigned long long)d->max_out);
    d->total_out += n;
    if ((rc = img_sha256_update(&d->sha, p, n)) < 0)
        return ag_err_set(err, rc, "sha256 update failed: %s", strerror(-rc));
    return d->sink(d->ud, p, n, err);
}

static int feed_gzip(struct img_decomp *d, const uint8_t *in, size_t len, struct ag_err *err)
{
    int rc;

    d->z.next_in = (Bytef *)in;
    d->z.avail_in = (uInt)len;
    /* Bounded: each pass either consumes input or produces output. */
    while (d->z.avail_in > 0) {
        if (d->member_done) {
            /* Another gzip member follows the previous one. */
            if (inflateReset(&d->z) != Z_OK)
                return ag_err_set(err, -EBADMSG, "gzip: reset failed");
            d->member_done = false;
        }
        d->z.next_out = d->out;
        d->z.avail_out = sizeof(d->out);
        int zr = inflate(&d->z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
            return ag_err_set(err, -EBADMSG, "gzip: %s", d->z.msg ? d->z.msg : "corrupt data");
        if ((rc = emit(d, d->out, sizeof(d->out) - d->z.avail_out, err)) < 0)
            return rc;
        if (zr == Z_STREAM_END)
            d->member_done = true;
        else if (zr == Z_BUF_ERROR && d->z.avail_out != 0)
            return ag_err_set(err, -EBADMSG, "gzip: no progress");
    }
    /* Drain output that did not fit while input ran out exactly. */
    while (!d->member_done && d->z.avail_out == 0) {
        d->z.next_out = d->out;
        d->z.avail_out = sizeof(d->out);
        int zr = inflate(&d->z, Z_NO_FLUSH);
        if (zr != Z_OK && zr != Z_STREAM_END && zr != Z_BUF_ERROR)
            return ag_err_set(err, -EBADMSG, "gzip: %s", d->z.msg ? d->z.msg : "corrupt data");
        if ((rc = emit(d, d->out, sizeof(d->out) - d->z.avail_out, err)) < 0)
            return rc;
        if (zr == Z_STREAM_END)
            d->member_done = true;
        if (zr == Z_BUF_ERROR)
            break;
    }
    return 0;
}

static int feed_zstd(struct img_decomp *d, const uint8_t *in, size_t len, struct ag_err *err)
{
    ZSTD_inBuffer ib = {in, len, 0};
    int rc;

    for (;;) {
        ZSTD_outBuffer ob = {d->out, sizeof(d->out), 0};
        size_t zr = ZSTD_decompressStream(d->zs, &ob, &ib);
        if (ZSTD_isError(zr))
            return ag_err_set(err, -EBADMSG, "zstd: %s", ZSTD_getErrorName(zr));
        if ((rc = emit(d, d->out, ob.pos, err)) < 0)
            return rc;
        /* 0 means a frame just ended and everything was flushed. */
        d->member_done = zr == 0;
        if (ib.pos == ib.size && ob.pos < ob.size)
            return 0;
    }
}

int img_decomp_feed(struct img_decomp *d, const uint8_t *in, size_t len, struct ag_err *err)
{
    int rc;

    if (d->failed)
        return ag_err_set(err, -EINVAL, "decompressor used after an error");
    if (len == 0)
        return 0;
    d->total_in += len;
    rc = 0;
    /* zlib counts in uInt: hand it at most 1 GiB at a time. */
    while (len > 0 && rc == 0) {
        size_t n = len > (1u << 30) ? (1u << 30) : len;
        switch (d->comp) {
        case IMG_COMP_GZIP:
            rc = feed_gzip(d, in, n, err);
            break;
        case IMG_COMP_ZSTD:
            rc = feed_zstd(d, in, n, err);
            break;
        default:
            rc = emit(d, in, n, err);
            break;
        }
        in += n;
        len -= n;
    }
    if (rc < 0)
        d->failed = true;
    return rc;
}

int img_decomp_finish(struct img_decomp *d, char diff_id[IMG_DIGEST_MAX], struct ag_err *err)
{
    int rc;

    if (d->failed)
        return ag_err_set(err, -EINVAL, "decompressor used after an error");
    if (d->comp != IMG_COMP_NONE && !d->member_done) {
        d->failed = true;
        return ag_err_set(err, -EBADMSG, "%s stream truncated after %llu bytes",
                          d->comp == IMG_COMP_GZIP ? "gzip" : "zstd",
                          (unsigned long long)d->total_in);
    }
    d->failed = true; /* finished: no more input */
    if ((rc = img_sha256_finish_hex(&d->sha, diff_id)) < 0)
        return ag_err_set(err, rc, "sha256 finish failed: %s", strerror(-rc));
    return 0;
}
