/* agent/image: the public interface of the image folder.
 *
 * One section per topic.  The parsers (references, digests, manifests,
 * platforms, tar, decompression, unpack) are sans-I/O or run on the thread
 * pool; the registry client sections own sockets and the content store.
 * Every fallible function returns 0 (or a count) on success and a negative
 * errno on failure; functions taking struct ag_err * fill it with a message.
 */
#ifndef IMG_IMAGE_H
#define IMG_IMAGE_H

#include "ag_core.h"

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* ==== digests (img_digest.c) ================================================
 * "sha256:<64 lowercase hex>" or "sha512:<128 lowercase hex>".  Other
 * well-formed algorithms are refused: we cannot verify them. */
#define IMG_DIGEST_MAX 136 /* "sha512:" + 128 hex + NUL, rounded */

/* Returns 0 if s is a supported, well-formed digest, else -EINVAL with a
 * message saying why. */
int img_digest_validate(const char *s, struct ag_err *err) AG_WUR;
/* Writes "sha256:<hex>" of data into out (IMG_DIGEST_MAX bytes). */
void img_digest_sha256(const void *data, size_t len, char out[IMG_DIGEST_MAX]);
/* Returns 0 if data hashes to digest (sha256 or sha512), -EBADMSG if not,
 * -EINVAL if digest is malformed. */
int img_digest_verify(const char *digest, const void *data, size_t len, struct ag_err *err) AG_WUR;
/* ChainID of diff_ids[0..count-1] ("sha256:<hex>"); -EINVAL if count is 0
 * or a diff_id is not a sha256 digest. */
int img_digest_chain_id(char *const *diff_ids, size_t count, char out[IMG_DIGEST_MAX],
                        struct ag_err *err) AG_WUR;

/* ==== streaming SHA-256 (img_sha256.c) ======================================
 * For blob digests and DiffIDs.  Uses the CPU's SHA-256 instructions (x86
 * SHA extensions, ARMv8 SHA2) when present, else mbedTLS (also when
 * PICOCRI_SHA256_SOFTWARE is set in the environment).  Pure computation:
 * large inputs belong on the thread pool. */
#include <mbedtls/sha256.h>

struct img_sha256 {
    void (*blocks)(uint32_t state[8], const uint8_t *p, size_t blocks); /* NULL: mbedTLS */
    int failed;
    uint32_t state[8];
    uint8_t buf[64];
    size_t buf_len;
    uint64_t total;
    mbedtls_sha256_context soft;
};

/* Starts a context (cannot fail). */
void img_sha256_init(struct img_sha256 *h);
/* Starts a context that always uses mbedTLS (tests, reference). */
void img_sha256_init_software(struct img_sha256 *h);
/* True when the context uses the CPU's SHA-256 instructions. */
bool img_sha256_is_hardware(const struct img_sha256 *h);
/* Feeds bytes (borrowed for the call).  Returns 0 or a negative errno; an
 * error sticks and is returned again by img_sha256_finish. */
int img_sha256_update(struct img_sha256 *h, const void *data, size_t len) AG_WUR;
/* Writes the digest; the context then refuses input (-EINVAL) until it is
 * finalized (img_sha256_fini) and started again. */
int img_sha256_finish(struct img_sha256 *h, uint8_t sum[32]) AG_WUR;
/* img_sha256_finish formatted as "sha256:<hex>" (IMG_DIGEST_MAX bytes). */
int img_sha256_finish_hex(struct img_sha256 *h, char out[IMG_DIGEST_MAX]) AG_WUR;
/* Releases the context; idempotent after init. */
void img_sha256_fini(struct img_sha256 *h);

/* ==== references (img_ref.c) ================================================
 * Docker-style image references, fully normalised:
 *   busybox            -> docker.io/library/busybox:latest
 *   host:5000/a/b@sha256:... , [::1]:5000/x:tag , localhost/x
 * Fixed-size fields: a struct img_ref owns nothing and can be copied. */
#define IMG_REF_NAME_MAX 255 /* domain + "/" + path */
#define IMG_REF_TAG_MAX 128

struct img_ref {
    char domain[IMG_REF_NAME_MAX + 1]; /* "docker.io", "host:5000", "[::1]:5000" */
    char path[IMG_REF_NAME_MAX + 1];   /* "library/busybox" */
    char tag[IMG_REF_TAG_MAX + 1];     /* "" when absent (only when a digest is given) */
    char digest[IMG_DIGEST_MAX];       /* "" when absent */
};

/* Parses and normalises s.  Returns 0, or -EINVAL with the reason in err
 * (empty, too long, uppercase repository, bad tag, bad digest, image ID). */
int img_ref_parse(const char *s, struct img_ref *out, struct ag_err *err) AG_WUR;
/* Canonical form "domain/path[:tag][@digest]".  Returns the length, or
 * -ENAMETOOLONG if out is too small. */
int img_ref_format(const struct img_ref *ref, char *out, size_t out_len) AG_WUR;
/* "domain/path" (the repository name without tag or digest). */
int img_ref_format_name(const struct img_ref *ref, char *out, size_t out_len) AG_WUR;
/* The host[:port] to contact for the registry API: registry-1.docker.io for
 * docker.io, the domain itself otherwise.  Borrowed from ref or static. */
const char *img_ref_api_host(const struct img_ref *ref);
/* The string to put after /manifests/: the digest if set, else the tag. */
const char *img_ref_object(const struct img_ref *ref);

/* ==== media types, manifests, configs (img_manifest.c) =====================
 * Parsed from untrusted JSON with cJSON.  Every string and array is owned by
 * the parsed object and freed with its _free().  Inputs larger than
 * IMG_MANIFEST_MAX_BYTES are refused before parsing. */
#define IMG_MANIFEST_MAX_BYTES (4u << 20)
#define IMG_MANIFEST_MAX_ENTRIES 4096 /* manifests[], layers[], history[], env ... */

#define IMG_MT_OCI_INDEX "application/vnd.oci.image.index.v1+json"
#define IMG_MT_OCI_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define IMG_MT_OCI_CONFIG "application/vnd.oci.image.config.v1+json"
#define IMG_MT_DOCKER_LIST "application/vnd.docker.distribution.manifest.list.v2+json"
#define IMG_MT_DOCKER_MANIFEST "application/vnd.docker.distribution.manifest.v2+json"
#define IMG_MT_DOCKER_CONFIG "application/vnd.docker.container.image.v1+json"
/* The Accept header value for manifest GET/HEAD, in preference order. */
#define IMG_MANIFEST_ACCEPT                                                                        \
    IMG_MT_OCI_INDEX ", " IMG_MT_DOCKER_LIST ", " IMG_MT_OCI_MANIFEST ", " IMG_MT_DOCKER_MANIFEST

enum img_doc_kind {
    IMG_DOC_UNKNOWN = 0,
    IMG_DOC_INDEX,    /* OCI index or Docker manifest list */
    IMG_DOC_MANIFEST, /* OCI manifest or Docker schema 2 */
    IMG_DOC_CONFIG,   /* OCI or Docker image config */
};

enum img_compression {
    IMG_COMP_NONE = 0,
    IMG_COMP_GZIP,
    IMG_COMP_ZSTD,
};

/* Classifies a media type ("; charset=..." parameters ignored).  Schema 1
 * and unknown types are IMG_DOC_UNKNOWN. */
enum img_doc_kind img_media_type_kind(const char *media_type);
/* Layer media type -> compression.  *encrypted is set for "+encrypted"
 * types (the compression is then that of the decrypted stream).  Returns
 * -ENOTSUP with a message for non-layer or unknown types. */
int img_media_type_layer(const char *media_type, enum img_compression *comp, bool *encrypted,
                         struct ag_err *err) AG_WUR;
/* Decides what a fetched manifest document is, from the HTTP Content-Type
 * (may be NULL) and the body's mediaType / shape.  Returns 0 with *kind set
 * to IMG_DOC_INDEX or IMG_DOC_MANIFEST; -ENOTSUP for schema 1 or unknown
 * types, -EINVAL when Content-Type and body disagree or JSON is invalid. */
int img_doc_detect(const void *data, size_t len, const char *content_type, enum img_doc_kind *kind,
                   struct ag_err *err) AG_WUR;

struct img_kv {
    char *key;
    char *value;
};

struct img_platform {
    char os[32];
    char architecture[32];
    char variant[32];
    char os_version[64];
};

struct img_descriptor {
    char *media_type;
    char digest[IMG_DIGEST_MAX];
    int64_t size;
    char *artifact_type; /* NULL when absent */
    char **urls;         /* NULL when absent */
    size_t urls_count;
    struct img_kv *annotations; /* NULL when absent */
    size_t annotations_count;
    bool has_platform;
    struct img_platform platform; /* raw, not normalised */
};

struct img_index {
    char *media_type; /* IMG_MT_OCI_INDEX or IMG_MT_DOCKER_LIST */
    struct img_descriptor *manifests;
    size_t manifests_count;
    struct img_kv *annotations;
    size_t annotations_count;
};

struct img_manifest {
    char *media_type; /* IMG_MT_OCI_MANIFEST or IMG_MT_DOCKER_MANIFEST */
    char *artifact_type;
    struct img_descriptor config;
    struct img_descriptor *layers;
    size_t layers_count;
    bool has_subject;
    struct img_descriptor subject;
    struct img_kv *annotations;
    size_t annotations_count;
};

struct img_history {
    char *created;
    char *created_by;
    char *author;
    char *comment;
    bool empty_layer;
};

struct img_config {
    char *created; /* top level, NULL when absent */
    char *author;
    struct img_platform platform; /* architecture, os, variant, os.version */
    /* config.* (all NULL / 0 when absent) */
    char *user;
    char **env;
    size_t env_count;
    char **entrypoint;
    size_t entrypoint_count;
    bool has_entrypoint; /* present (possibly empty) vs absent */
    char **cmd;
    size_t cmd_count;
    bool has_cmd;
    char *working_dir;
    struct img_kv *labels;
    size_t labels_count;
    char *stop_signal;
    char **exposed_ports; /* keys of ExposedPorts: "80/tcp" */
    size_t exposed_ports_count;
    char **volumes; /* keys of Volumes */
    size_t volumes_count;
    /* rootfs (type "layers") */
    char **diff_ids;
    size_t diff_ids_count;
    struct img_history *history;
    size_t history_count;
};

/* Parsers: data is borrowed; *out is owned by the caller (free with the
 * matching _free, which accepts NULL).  content_type / media_type may be NULL
 * (then the body's mediaType decides).  Errors: -EINVAL malformed or invalid
 * (message names the field), -ENOTSUP unsupported media type or schema
 * version, -EFBIG input or count over the bounds, -ENOMEM. */
int img_index_parse(const void *data, size_t len, const char *content_type, struct img_index **out,
                    struct ag_err *err) AG_WUR;
void img_index_free(struct img_index *idx);
int img_manifest_parse(const void *data, size_t len, const char *content_type,
                       struct img_manifest **out, struct ag_err *err) AG_WUR;
void img_manifest_free(struct img_manifest *m);
int img_config_parse(const void *data, size_t len, struct img_config **out,
                     struct ag_err *err) AG_WUR;
void img_config_free(struct img_config *c);
/* Checks a manifest against its config: same layer count as diff_ids. */
int img_manifest_check_config(const struct img_manifest *m, const struct img_config *c,
                              struct ag_err *err) AG_WUR;
static inline void img_index_freep(struct img_index **p) { img_index_free(*p); }
static inline void img_manifest_freep(struct img_manifest **p) { img_manifest_free(*p); }
static inline void img_config_freep(struct img_config **p) { img_config_free(*p); }

/* ==== platforms (img_platform.c) ============================================
 * containerd-compatible normalisation and matching with the down-level
 * fallbacks of the fact sheet (amd64 -> 386, arm64 -> arm/v8..v5,
 * arm/v7 -> v6 -> v5). */
enum {
    IMG_PLATFORM_STRICT = 1 << 0,   /* no down-level fallback at all */
    IMG_PLATFORM_NO_ARM32 = 1 << 1, /* arm64 host without AArch32: no 32-bit arm fallback */
};

/* Normalises in place (lower-case, aliases, default variants). */
void img_platform_normalize(struct img_platform *p);
/* "os/arch[/variant]" (e.g. "linux/arm/v7", "linux/arm64") -> normalised. */
int img_platform_parse(const char *s, struct img_platform *out, struct ag_err *err) AG_WUR;
/* "os/arch[/variant]"; returns length or -ENAMETOOLONG. */
int img_platform_format(const struct img_platform *p, char *out, size_t out_len) AG_WUR;
/* Host platform from a `uname -m` machine string and the text of
 * /proc/cpuinfo (may be NULL): pure, for tests.  -ENOTSUP unknown machine. */
int img_platform_from_machine(const char *machine, const char *cpuinfo, struct img_platform *out,
                              struct ag_err *err) AG_WUR;
/* The running machine's platform (uname, /proc/cpuinfo; compile-time arch
 * when uname's machine is unknown).  Blocking read of /proc: start-up. */
int img_platform_host(struct img_platform *out, struct ag_err *err) AG_WUR;
/* True if candidate (raw) equals want (normalised) after normalisation. */
bool img_platform_match(const struct img_platform *want, const struct img_platform *candidate);
/* Picks the manifest for `want` from idx: for each acceptable platform in
 * preference order, the first entry that matches.  Entries without a
 * platform and unknown/unknown attestation entries are skipped.  Returns the
 * entry index (>= 0), or -ENOENT with a message listing what the index has. */
int img_index_select(const struct img_index *idx, const struct img_platform *want, unsigned flags,
                     struct ag_err *err) AG_WUR;

/* ==== tar reader (img_tar.c) ================================================
 * Sans-I/O streaming: bytes in (any chunking), entries out through
 * callbacks.  ustar, GNU long names/links (L/K), PAX extended headers
 * (path, linkpath, size, uid, gid, mtime, SCHILY.xattr.*), base-256
 * numbers, checksum verification.  Global PAX headers are ignored (as
 * Docker/moby does).  Nothing is allocated from a size field beyond the
 * limits below. */
#define IMG_TAR_PATH_MAX 4096
#define IMG_TAR_PAX_MAX (1u << 20)
#define IMG_TAR_XATTR_MAX 64
#define IMG_TAR_XATTR_VALUE_MAX 65536

enum img_tar_type {
    IMG_TAR_REG = 1,
    IMG_TAR_HARDLINK,
    IMG_TAR_SYMLINK,
    IMG_TAR_CHR,
    IMG_TAR_BLK,
    IMG_TAR_DIR,
    IMG_TAR_FIFO,
};

struct img_tar_xattr {
    char *name; /* "security.capability" (SCHILY.xattr. prefix removed) */
    uint8_t *value;
    size_t value_len;
};

/* path and linkname stay valid until the entry's on_entry_end; the struct
 * itself and xattrs only during on_entry. */
struct img_tar_entry {
    enum img_tar_type type;
    const char *path;     /* as in the archive (not sanitised) */
    const char *linkname; /* symlink / hardlink target, "" otherwise */
    uint32_t mode;        /* permission bits incl. suid/sgid/sticky (07777) */
    uint32_t uid, gid;
    int64_t mtime_sec;
    uint32_t mtime_nsec;
    uint64_t size; /* data bytes that follow (regular files) */
    uint32_t dev_major, dev_minor;
    const struct img_tar_xattr *xattrs;
    size_t xattrs_count;
};

/* Callbacks return 0 to continue or a negative errno (with err set) to stop
 * the stream; the reader then stays failed. */
struct img_tar_cbs {
    int (*on_entry)(void *ud, const struct img_tar_entry *e, struct ag_err *err);
    int (*on_data)(void *ud, const uint8_t *data, size_t len, struct ag_err *err);
    int (*on_entry_end)(void *ud, struct ag_err *err);
};

struct img_tar;
int img_tar_new(const struct img_tar_cbs *cbs, void *ud, struct img_tar **out) AG_WUR;
void img_tar_free(struct img_tar *t);
/* Feeds the next bytes.  Returns 0 or the first error (-EINVAL malformed
 * archive, -ENOTSUP unsupported entry type, -EFBIG over a bound, or a
 * callback's error). */
int img_tar_feed(struct img_tar *t, const uint8_t *data, size_t len, struct ag_err *err) AG_WUR;
/* End of input: -EINVAL if the archive stopped inside an entry. */
int img_tar_finish(struct img_tar *t, struct ag_err *err) AG_WUR;
/* Number of entries delivered so far. */
uint64_t img_tar_entries(const struct img_tar *t);

/* ==== decompression (img_decompress.c) ======================================
 * Streaming gzip (multi-member), zstd (multi-frame) or identity; hashes the
 * uncompressed stream with SHA-256 (the DiffID) and refuses to produce more
 * than max_out bytes (decompression bomb bound). */
#define IMG_DECOMP_DEFAULT_MAX ((uint64_t)2 << 30) /* 2 GiB */

typedef int (*img_sink_cb)(void *ud, const uint8_t *data, size_t len, struct ag_err *err);
struct img_decomp;
/* max_out 0 means IMG_DECOMP_DEFAULT_MAX. */
int img_decomp_new(enum img_compression comp, uint64_t max_out, img_sink_cb sink, void *ud,
                   struct img_decomp **out) AG_WUR;
void img_decomp_free(struct img_decomp *d);
/* Feeds compressed bytes; uncompressed bytes go to the sink.  -EBADMSG
 * corrupt stream, -EFBIG over max_out, or the sink's error. */
int img_decomp_feed(struct img_decomp *d, const uint8_t *in, size_t len, struct ag_err *err) AG_WUR;
/* End of input: -EBADMSG if truncated.  Writes the DiffID. */
int img_decomp_finish(struct img_decomp *d, char diff_id[IMG_DIGEST_MAX],
                      struct ag_err *err) AG_WUR;
uint64_t img_decomp_total_out(const struct img_decomp *d);

/* ==== unpack (img_unpack.c) =================================================
 * Applies one layer (compressed bytes in) to a directory that becomes an
 * overlayfs lower dir.  Blocking filesystem work: call from the thread pool.
 * Every path is resolved beneath the layer directory (openat2
 * RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS|RESOLVE_NO_SYMLINKS, or an O_NOFOLLOW
 * walk); absolute paths, "..", writes through symlinks and hardlinks to
 * anything outside the layer fail the whole layer. */
enum {
    /* Behave as unprivileged even as root: no mknod, lchown, trusted.* or
     * security.* xattrs (for rootless and tests). */
    IMG_UNPACK_UNPRIVILEGED = 1 << 0,
    /* Rootless overlay (mount option userxattr): whiteouts and opaque dirs
     * use user.overlay.* xattrs. */
    IMG_UNPACK_USERXATTR = 1 << 1,
    /* Tests: resolve with the O_NOFOLLOW walk as on kernels without openat2. */
    IMG_UNPACK_NO_OPENAT2 = 1 << 2,
};

struct img_unpack_opts {
    enum img_compression compression;
    uint64_t max_uncompressed;    /* 0 = IMG_DECOMP_DEFAULT_MAX */
    uint64_t max_entries;         /* 0 = 1,000,000 */
    const char *expected_diff_id; /* NULL = not verified */
    unsigned flags;
};

struct img_unpack;
/* dir must exist and be empty-ish; it is borrowed by path and opened once.
 * opts is copied (expected_diff_id too). */
int img_unpack_new(const char *dir, const struct img_unpack_opts *opts, struct img_unpack **out,
                   struct ag_err *err) AG_WUR;
void img_unpack_free(struct img_unpack *u);
/* Feeds compressed layer bytes (any chunking). */
int img_unpack_feed(struct img_unpack *u, const uint8_t *data, size_t len,
                    struct ag_err *err) AG_WUR;
/* Ends the stream: checks the archive is complete, fixes directory modes
 * and mtimes, verifies the DiffID (-EBADMSG on mismatch), writes it to
 * diff_id (may be NULL). */
int img_unpack_finish(struct img_unpack *u, char diff_id[IMG_DIGEST_MAX],
                      struct ag_err *err) AG_WUR;
/* Skipped operations (device nodes, ownership, xattrs when not permitted):
 * count and the first message ("" when none). */
size_t img_unpack_warnings(const struct img_unpack *u, const char **first);
/* Unpacks the blob file at blob_path into dest (which must not exist):
 * extracts into "<dest>.tmp-XXXXXX", then renames; on any failure the
 * temporary tree is removed.  -EEXIST if dest exists. */
int img_unpack_blob(const char *blob_path, const char *dest, const struct img_unpack_opts *opts,
                    char diff_id[IMG_DIGEST_MAX], struct ag_err *err) AG_WUR;

/* ==== registry client (img_http*, img_tls*, img_registry*, img_auth*,
 * img_mirror*, img_content*) =================================================
 * The registry client, the mirror/auth configuration and the content store.
 * Everything here runs on the libuv loop thread and never blocks it, except
 * the functions marked "blocking", which are for start-up (or the thread
 * pool).  Asynchronous operations report exactly once through their
 * callback, also when cancelled (status -ECANCELED). */
#include <regex.h>
#include <uv.h>

/* ---- credentials --------------------------------------------------------
 * The shape of CRI's AuthConfig.  Every field is an owned string or NULL.
 * img_auth_config_fini zeroizes the secrets before freeing them. */
struct img_auth_config {
    char *username;
    char *password;
    char *auth;           /* base64("user:pass") */
    char *identity_token; /* OAuth2 refresh token for the token endpoint */
    char *registry_token; /* bearer token sent as is */
};

void img_auth_config_fini(struct img_auth_config *a);

/* ---- registries.yaml (k3s format) ----------------------------------------- */
struct img_rewrite {
    char *pattern; /* POSIX extended regex on the repository name */
    char *replace; /* $1..$9 name the groups */
    regex_t re;
};

struct img_mirror {
    char *registry; /* "docker.io", "host:5000" or "*" */
    char **endpoints;
    size_t endpoint_count;
    struct img_rewrite *rewrites;
    size_t rewrite_count;
};

struct img_host_config {
    char *host; /* registry or mirror host[:port], or "*" */
    struct img_auth_config auth;
    char *ca_file;
    char *cert_file;
    char *key_file;
    bool insecure_skip_verify;
};

struct img_registries {
    struct img_mirror *mirrors;
    size_t mirror_count;
    struct img_host_config *configs;
    size_t config_count;
};

/* Parses registries.yaml text (untrusted shape, trusted origin).  Returns
 * owned *out; -EINVAL with err naming the key that is wrong. */
int img_registries_parse(const char *yaml, size_t len, struct img_registries **out,
                         struct ag_err *err) AG_WUR;
/* Blocking.  A missing file gives an empty configuration. */
int img_registries_load(const char *path, struct img_registries **out, struct ag_err *err) AG_WUR;
void img_registries_free(struct img_registries *r);

/* One place to try, in order: mirrors first, the upstream last. */
struct img_endpoint {
    bool tls;
    bool plain_fallback; /* https, but retry over http if TLS fails (localhost) */
    bool is_upstream;
    uint16_t port;
    char host[256];
    char prefix[256];    /* API root path, e.g. "/v2" */
    char repo[256];      /* repository name after rewrites */
    const struct img_host_config *cfg; /* borrowed from the registries, or NULL */
};

/* The endpoints for registry/repo (cfg may be NULL).  Returns owned *out
 * (free()); -EINVAL for a malformed endpoint URL. */
int img_registries_endpoints(const struct img_registries *cfg, const char *registry,
                             const char *repo, struct img_endpoint **out, size_t *count,
                             struct ag_err *err) AG_WUR;
/* The configs entry for host[:port] (exact, then "*"), or NULL. */
const struct img_host_config *img_registries_host(const struct img_registries *cfg,
                                                  const char *hostport);

/* ---- content store ---------------------------------------------------------
 * <root>/content is an OCI image layout: oci-layout, index.json,
 * blobs/sha256/<hex>; downloads in progress live in ingest/<hex>.partial.
 * A blob appears under blobs/ only after its digest and size were verified
 * (fsync, rename, fsync of the directory). */
struct img_content;
struct img_ingest;

/* Blocking (start-up): creates the layout if missing.  Returns owned *out. */
int img_content_open(const char *root, struct img_content **out, struct ag_err *err) AG_WUR;
/* Requires that no ingest is open. */
void img_content_free(struct img_content *c);
/* Path of a blob (which may not exist); -EINVAL for a digest that is not
 * "sha256:<64 lowercase hex>", -ENAMETOOLONG. */
int img_content_blob_path(const struct img_content *c, const char *digest, char *out,
                          size_t out_len) AG_WUR;

/* Path of a blob's ingest file, ingest/<hex>.partial (which may not
 * exist); errors as img_content_blob_path. */
int img_content_ingest_path(const struct img_content *c, const char *digest, char *out,
                            size_t out_len) AG_WUR;
/* Ingests not yet freed: each may still have thread-pool work that uses
 * the store, so img_content_free must wait for 0. */
size_t img_content_open_ingests(const struct img_content *c);

typedef void (*img_content_stat_cb)(int status, int64_t size, void *data);
typedef void (*img_content_read_cb)(int status, uint8_t *bytes, size_t len, void *data);
typedef void (*img_content_done_cb)(int status, void *data);

/* Thread-pool operations.  stat: status 0 and the size when present,
 * -ENOENT when absent.  read: the whole blob (at most max_len bytes, else
 * -EFBIG), verified against its digest (-EBADMSG); bytes are owned by the
 * callback.  delete: -ENOENT when absent. */
int img_content_stat(uv_loop_t *loop, struct img_content *c, const char *digest,
                     img_content_stat_cb cb, void *data) AG_WUR;
int img_content_read(uv_loop_t *loop, struct img_content *c, const char *digest, size_t max_len,
                     img_content_read_cb cb, void *data) AG_WUR;
int img_content_delete(uv_loop_t *loop, struct img_content *c, const char *digest,
                       img_content_done_cb cb, void *data) AG_WUR;

/* Ingest: the writer of one blob.
 * open: on the thread pool, opens (or resumes) ingest/<hex>.partial and
 *   re-hashes what it holds; calls cb with the resume offset, or status 1
 *   when the blob is already published (nothing to fetch), or -EBUSY when
 *   another ingest of the same digest is open.
 * write: copies and queues bytes; they are written and hashed in order on
 *   the thread pool; on_written (optional) then reports each chunk on the
 *   loop with its offset.  -EFBIG past the expected size.
 * reset: drops everything (server ignored Range), in order with writes.
 * commit: after the queued writes, checks size and digest and publishes;
 *   on a mismatch the partial file is deleted and nothing is published
 *   (-EBADMSG).
 * free: closes; the partial file stays for a later resume unless it was
 *   committed or found corrupt.  Safe while work is in flight. */
typedef void (*img_ingest_open_cb)(struct img_ingest *ing, int status, uint64_t offset,
                                   void *data);
typedef void (*img_ingest_written_cb)(struct img_ingest *ing, uint64_t offset,
                                      const uint8_t *p, size_t n, void *data);
typedef void (*img_ingest_commit_cb)(struct img_ingest *ing, int status, const struct ag_err *err,
                                     void *data);

int img_ingest_open(uv_loop_t *loop, struct img_content *c, const char *digest, int64_t size,
                    img_ingest_open_cb cb, void *data, struct img_ingest **out) AG_WUR;
void img_ingest_set_written_cb(struct img_ingest *ing, img_ingest_written_cb cb);
int img_ingest_write(struct img_ingest *ing, const uint8_t *p, size_t n) AG_WUR;
int img_ingest_reset(struct img_ingest *ing) AG_WUR;
/* Bytes accepted so far (the offset the next write lands at) and bytes
 * queued but not yet on disk. */
uint64_t img_ingest_offset(const struct img_ingest *ing);
size_t img_ingest_backlog(const struct img_ingest *ing);
int img_ingest_commit(struct img_ingest *ing, img_ingest_commit_cb cb) AG_WUR;
void img_ingest_free(struct img_ingest *ing);

/* ---- registry client --------------------------------------------------- */
struct img_registry;
struct img_fetch;

struct img_registry_opts {
    uv_loop_t *loop;
    struct img_content *content;          /* borrowed; for blob fetches */
    const struct img_registries *registries; /* borrowed; NULL = no mirrors/configs */
    unsigned max_parallel_blobs;  /* 0 = 3 */
    unsigned max_retries;         /* per endpoint; 0 = 4 */
    uint32_t connect_timeout_ms;  /* DNS + TCP + proxy + TLS; 0 = 30 s */
    uint32_t stall_timeout_ms;    /* no byte received; 0 = 60 s */
    uint32_t retry_base_ms;       /* first backoff; doubles; 0 = 500 ms */
    bool proxy_from_env;          /* honour HTTPS_PROXY/HTTP_PROXY/NO_PROXY */
};

/* Blocking (reads CA files): start-up.  Returns owned *out. */
int img_registry_new(const struct img_registry_opts *o, struct img_registry **out,
                     struct ag_err *err) AG_WUR;
/* Cancels every fetch (callbacks run with -ECANCELED) and frees the
 * client once its handles are closed. */
void img_registry_close(struct img_registry *r);

struct img_manifest_data {
    uint8_t *data; /* owned by the fetch; steal_ptr() it to keep it */
    size_t len;
    char media_type[128];
    char digest[IMG_DIGEST_MAX]; /* of data; verified when fetched by digest */
};

typedef void (*img_manifest_cb)(int status, struct img_manifest_data *m, const struct ag_err *err,
                                void *data);
typedef void (*img_progress_cb)(uint64_t done, int64_t total, void *data);
/* A chunk of the blob as written to the ingest file (offset first byte);
 * the blob is verified only when on_done reports 0. */
typedef void (*img_blob_data_cb)(uint64_t offset, const uint8_t *p, size_t n, void *data);
typedef void (*img_blob_done_cb)(int status, const struct ag_err *err, void *data);

/* Fetches /v2/<ref->path>/manifests/<digest or tag> from ref->domain
 * through its mirrors, with the Accept header of IMG_MANIFEST_ACCEPT, at
 * most IMG_MANIFEST_MAX_BYTES.  auth (optional) is copied.  status 0: m is
 * valid for the callback.  Errors name the registry's code, e.g.
 * "GET https://host/v2/x/manifests/1: 404 MANIFEST_UNKNOWN: manifest unknown". */
int img_registry_fetch_manifest(struct img_registry *r, const struct img_ref *ref,
                                const struct img_auth_config *auth, img_manifest_cb cb,
                                void *data, struct img_fetch **out, struct ag_err *err) AG_WUR;

struct img_blob_req {
    const char *digest; /* "sha256:<hex>" */
    int64_t size;       /* from the descriptor; -1 if unknown */
    img_progress_cb on_progress;
    img_blob_data_cb on_data;
    img_blob_done_cb on_done; /* required */
    void *data;
};

/* Fetches a blob into the content store, resuming a partial download with
 * Range, verifying digest and size before it is published.  At most
 * max_parallel_blobs run at once; others wait their turn.  Only
 * ref->domain and ref->path are used. */
int img_registry_fetch_blob(struct img_registry *r, const struct img_ref *ref,
                            const struct img_blob_req *b, const struct img_auth_config *auth,
                            struct img_fetch **out, struct ag_err *err) AG_WUR;

/* Cancels a fetch whose callback has not run yet: the callback runs later
 * with -ECANCELED.  The handle is invalid after its callback. */
void img_fetch_cancel(struct img_fetch *f);


#endif
