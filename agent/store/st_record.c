/* agent/store: the record file format and per-kind record facts.  A record
 * file is a 24-byte header (magic, version, kind, seq, payload length, CRC32)
 * followed by the nanopb-encoded record.  st_record_decode() is the one
 * parser of bytes read back from disk: it treats them as untrusted (a torn
 * write, a bad SD card sector, a hand-edited file) and either returns a
 * well-formed record whose id has the right shape or -EBADMSG, never
 * crashing; it is fuzzed by tests/fuzz/fuzz_store_record.c. */
#include "st_internal.h"
#ifndef ST_STORE_UNAVAILABLE

#include <pb_decode.h>
#include <pb_encode.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <zlib.h>

#define ST_MAGIC "PCST"
#define ST_VERSION 1

static const struct {
    const pb_msgdesc_t *desc;
    size_t size;
    const char *dir;
} kinds[ST_KIND_COUNT] = {
    [ST_KIND_IMAGE] = {&picocri_store_ImageRecord_msg, sizeof(picocri_store_ImageRecord), "images"},
    [ST_KIND_POD] = {&picocri_store_PodRecord_msg, sizeof(picocri_store_PodRecord), "pods"},
    [ST_KIND_CONTAINER] = {&picocri_store_ContainerRecord_msg,
                           sizeof(picocri_store_ContainerRecord), "containers"},
};

const pb_msgdesc_t *st__kind_desc(enum st_kind kind) { return kinds[kind].desc; }
size_t st__kind_size(enum st_kind kind) { return kinds[kind].size; }
const char *st__kind_dir(enum st_kind kind) { return kinds[kind].dir; }

bool st_id_valid(const char *s)
{
    size_t i;

    if (s == NULL)
        return false;
    for (i = 0; i < ST_ID_HEX_LEN; i++) {
        char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f')))
            return false;
    }
    return s[i] == '\0';
}

const char *st__id_file(enum st_kind kind, const char *id)
{
    if (id == NULL)
        return NULL;
    if (kind == ST_KIND_IMAGE) {
        if (strncmp(id, "sha256:", 7) != 0)
            return NULL;
        id += 7;
    }
    return st_id_valid(id) ? id : NULL;
}

const char *st_record_id(enum st_kind kind, const void *rec)
{
    switch (kind) {
    case ST_KIND_IMAGE:
        return ((const picocri_store_ImageRecord *)rec)->id;
    case ST_KIND_POD:
        return ((const picocri_store_PodRecord *)rec)->id;
    case ST_KIND_CONTAINER:
        return ((const picocri_store_ContainerRecord *)rec)->id;
    default:
        return NULL;
    }
}

int st_id_new(char out[ST_ID_HEX_LEN + 1])
{
    static const char hex[] = "0123456789abcdef";
    uint8_t raw[ST_ID_HEX_LEN / 2];
    size_t got = 0;

    while (got < sizeof(raw)) {
        ssize_t n = getrandom(raw + got, sizeof(raw) - got, 0);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return -errno;
        }
        got += (size_t)n;
    }
    for (size_t i = 0; i < sizeof(raw); i++) {
        out[2 * i] = hex[raw[i] >> 4];
        out[2 * i + 1] = hex[raw[i] & 15];
    }
    out[ST_ID_HEX_LEN] = '\0';
    return 0;
}

static void put_le(uint8_t *p, uint64_t v, int n)
{
    for (int i = 0; i < n; i++)
        p[i] = (uint8_t)(v >> (8 * i));
}

static uint64_t get_le(const uint8_t *p, int n)
{
    uint64_t v = 0;

    for (int i = n - 1; i >= 0; i--)
        v = (v << 8) | p[i];
    return v;
}

static uint32_t record_crc(const uint8_t *hdr, const uint8_t *payload, size_t len)
{
    uLong c = crc32(0L, Z_NULL, 0);

    c = crc32(c, hdr, 20);
    /* zlib takes uInt lengths; records are bounded by ST_RECORD_MAX. */
    c = crc32(c, payload, (uInt)len);
    return (uint32_t)c;
}

int st_record_encode(enum st_kind kind, uint64_t seq, const void *rec, uint8_t **out,
                     size_t *out_len)
{
    _cleanup_free_ uint8_t *buf = NULL;
    size_t size = 0;

    if ((unsigned)kind >= ST_KIND_COUNT)
        return -EINVAL;
    if (!pb_get_encoded_size(&size, kinds[kind].desc, rec))
        return -EINVAL;
    if (size > ST_RECORD_MAX - ST_HDR_LEN)
        return -EFBIG;
    buf = malloc(ST_HDR_LEN + size + 1);
    if (buf == NULL)
        return -ENOMEM;
    pb_ostream_t os = pb_ostream_from_buffer(buf + ST_HDR_LEN, size);
    if (!pb_encode(&os, kinds[kind].desc, rec) || os.bytes_written != size)
        return -EINVAL;
    memcpy(buf, ST_MAGIC, 4);
    put_le(buf + 4, ST_VERSION, 2);
    buf[6] = (uint8_t)kind;
    buf[7] = 0;
    put_le(buf + 8, seq, 8);
    put_le(buf + 16, size, 4);
    put_le(buf + 20, record_crc(buf, buf + ST_HDR_LEN, size), 4);
    *out = steal_ptr(&buf);
    *out_len = ST_HDR_LEN + size;
    return 0;
}

int st_record_decode(enum st_kind kind, const uint8_t *data, size_t len, void *rec, uint64_t *seq)
{
    if ((unsigned)kind >= ST_KIND_COUNT)
        return -EINVAL;
    memset(rec, 0, kinds[kind].size);
    if (len > ST_RECORD_MAX)
        return -EFBIG;
    if (len < ST_HDR_LEN || memcmp(data, ST_MAGIC, 4) != 0)
        return -EBADMSG;
    if (get_le(data + 4, 2) != ST_VERSION || data[6] != (uint8_t)kind || data[7] != 0)
        return -EBADMSG;
    size_t plen = (size_t)get_le(data + 16, 4);
    if (plen != len - ST_HDR_LEN)
        return -EBADMSG; /* torn: the length is checked before the CRC */
    if (get_le(data + 20, 4) != record_crc(data, data + ST_HDR_LEN, plen))
        return -EBADMSG;
    pb_istream_t is = pb_istream_from_buffer(data + ST_HDR_LEN, plen);
    if (!pb_decode(&is, kinds[kind].desc, rec)) {
        pb_release(kinds[kind].desc, rec);
        memset(rec, 0, kinds[kind].size);
        return errno == ENOMEM ? -ENOMEM : -EBADMSG;
    }
    if (st__id_file(kind, st_record_id(kind, rec)) == NULL) {
        st_record_release(kind, rec);
        return -EBADMSG;
    }
    if (seq != NULL)
        *seq = get_le(data + 8, 8);
    return 0;
}

void st_record_release(enum st_kind kind, void *rec)
{
    if (rec == NULL || (unsigned)kind >= ST_KIND_COUNT)
        return;
    pb_release(kinds[kind].desc, rec);
    memset(rec, 0, kinds[kind].size);
}

int st_record_copy(enum st_kind kind, const void *src, void *dst)
{
    _cleanup_free_ uint8_t *buf = NULL;
    size_t len = 0;
    int rc = st_record_encode(kind, 0, src, &buf, &len);

    if (rc < 0) {
        memset(dst, 0, kinds[kind].size);
        return rc;
    }
    return st_record_decode(kind, buf, len, dst, NULL);
}

/* ---- unique names ---- */

static struct st_name *name_new(const char *fmt, ...) AG_PRINTF(1, 2);
static struct st_name *name_new(const char *fmt, ...)
{
    va_list ap;
    char probe[1];

    va_start(ap, fmt);
    int n = vsnprintf(probe, sizeof(probe), fmt, ap);
    va_end(ap);
    if (n < 0)
        return NULL;
    struct st_name *nm = calloc(1, sizeof(*nm) + (size_t)n + 1);
    if (nm == NULL)
        return NULL;
    va_start(ap, fmt);
    vsnprintf(nm->key, (size_t)n + 1, fmt, ap);
    va_end(ap);
    nm->node.key = nm->key;
    return nm;
}

void st__names_free(struct st_name **names, size_t count)
{
    for (size_t i = 0; i < count; i++)
        free(names[i]);
    free(names);
}

static const char *nz(const char *s) { return s != NULL ? s : ""; }

/* Key shapes (0x1f separates fields no Kubernetes name contains):
 *   'i' name                           image repo tag or digest
 *   'p' name 0x1f namespace 0x1f uid 0x1f attempt
 *   'c' pod_id 0x1f name 0x1f attempt */
static int names_image(const picocri_store_ImageRecord *img, struct st_name **names, size_t *n)
{
    for (pb_size_t i = 0; i < img->repo_tags_count; i++)
        if (img->repo_tags[i] != NULL && img->repo_tags[i][0] != '\0')
            if ((names[(*n)++] = name_new("i%s", img->repo_tags[i])) == NULL)
                return -ENOMEM;
    for (pb_size_t i = 0; i < img->repo_digests_count; i++)
        if (img->repo_digests[i] != NULL && img->repo_digests[i][0] != '\0')
            if ((names[(*n)++] = name_new("i%s", img->repo_digests[i])) == NULL)
                return -ENOMEM;
    return 0;
}

int st__names_build(enum st_kind kind, const void *rec, struct st_name ***out, size_t *out_count)
{
    size_t cap = 1, n = 0;
    int rc = 0;

    if (kind == ST_KIND_IMAGE) {
        const picocri_store_ImageRecord *img = rec;
        cap = (size_t)img->repo_tags_count + img->repo_digests_count;
    }
    struct st_name **names = calloc(cap ? cap : 1, sizeof(*names));
    if (names == NULL)
        return -ENOMEM;
    if (kind == ST_KIND_IMAGE) {
        rc = names_image(rec, names, &n);
    } else if (kind == ST_KIND_POD) {
        const picocri_store_PodRecord *pod = rec;
        const runtime_v1_PodSandboxMetadata *md = pod->config ? pod->config->metadata : NULL;
        if (md != NULL &&
            (names[n++] = name_new("p%s\x1f%s\x1f%s\x1f%u", nz(md->name), nz(md->namespace),
                                   nz(md->uid), (unsigned)md->attempt)) == NULL)
            rc = -ENOMEM;
    } else {
        const picocri_store_ContainerRecord *ctr = rec;
        const runtime_v1_ContainerMetadata *md = ctr->config ? ctr->config->metadata : NULL;
        if (md != NULL && (names[n++] = name_new("c%s\x1f%s\x1f%u", nz(ctr->pod_id), nz(md->name),
                                                 (unsigned)md->attempt)) == NULL)
            rc = -ENOMEM;
    }
    if (rc < 0) {
        st__names_free(names, n);
        return rc;
    }
    *out = names;
    *out_count = n;
    return 0;
}

static void drop_from(char **arr, pb_size_t *count, const char *name)
{
    pb_size_t w = 0;

    for (pb_size_t r = 0; r < *count; r++) {
        if (arr[r] != NULL && strcmp(arr[r], name) == 0)
            free(arr[r]);
        else
            arr[w++] = arr[r];
    }
    *count = w;
}

void st__image_drop_name(picocri_store_ImageRecord *img, const char *name)
{
    drop_from(img->repo_tags, &img->repo_tags_count, name);
    drop_from(img->repo_digests, &img->repo_digests_count, name);
}
#endif /* ST_STORE_UNAVAILABLE */
