/* agent/image: OCI / Docker schema 2 manifests, indexes and image configs.
 * Turns untrusted JSON (from a registry, a peer or an image layout) into
 * owned C structs with every digest, size and count checked, so later code
 * (platform selection, pulling, the runtime's spec generation) never sees
 * raw JSON.  Invariants: input is bounded (IMG_MANIFEST_MAX_BYTES) before
 * cJSON sees it; arrays are bounded (IMG_MANIFEST_MAX_ENTRIES); every digest
 * in a returned struct passed img_digest_validate(); sizes are >= 0; on error
 * nothing is returned and nothing leaks. */
#include "image/image.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <string.h>

/* ---- media types ---------------------------------------------------------- */

/* Copies the media type without parameters ("; charset=...") or spaces. */
static void mt_base(const char *mt, char *out, size_t out_len)
{
    size_t n = 0;

    while (*mt == ' ' || *mt == '\t')
        mt++;
    while (mt[n] && mt[n] != ';' && mt[n] != ' ' && mt[n] != '\t' && n + 1 < out_len)
        n++;
    memcpy(out, mt, n);
    out[n] = '\0';
}

static bool mt_is_schema1(const char *mt)
{
    return strncmp(mt, "application/vnd.docker.distribution.manifest.v1+", 48) == 0;
}

enum img_doc_kind img_media_type_kind(const char *media_type)
{
    char mt[128];

    if (media_type == NULL)
        return IMG_DOC_UNKNOWN;
    mt_base(media_type, mt, sizeof(mt));
    if (strcmp(mt, IMG_MT_OCI_INDEX) == 0 || strcmp(mt, IMG_MT_DOCKER_LIST) == 0)
        return IMG_DOC_INDEX;
    if (strcmp(mt, IMG_MT_OCI_MANIFEST) == 0 || strcmp(mt, IMG_MT_DOCKER_MANIFEST) == 0)
        return IMG_DOC_MANIFEST;
    if (strcmp(mt, IMG_MT_OCI_CONFIG) == 0 || strcmp(mt, IMG_MT_DOCKER_CONFIG) == 0)
        return IMG_DOC_CONFIG;
    return IMG_DOC_UNKNOWN;
}

int img_media_type_layer(const char *media_type, enum img_compression *comp, bool *encrypted,
                         struct ag_err *err)
{
    static const struct {
        const char *mt;
        enum img_compression comp;
    } table[] = {
        {"application/vnd.oci.image.layer.v1.tar", IMG_COMP_NONE},
        {"application/vnd.oci.image.layer.v1.tar+gzip", IMG_COMP_GZIP},
        {"application/vnd.oci.image.layer.v1.tar+zstd", IMG_COMP_ZSTD},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar", IMG_COMP_NONE},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar+gzip", IMG_COMP_GZIP},
        {"application/vnd.oci.image.layer.nondistributable.v1.tar+zstd", IMG_COMP_ZSTD},
        {"application/vnd.docker.image.rootfs.diff.tar.gzip", IMG_COMP_GZIP},
        {"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip", IMG_COMP_GZIP},
    };
    char mt[160];
    size_t n;

    mt_base(media_type ? media_type : "", mt, sizeof(mt));
    n = strlen(mt);
    *encrypted = false;
    if (n > 10 && strcmp(mt + n - 10, "+encrypted") == 0) {
        *encrypted = true;
        mt[n - 10] = '\0';
    }
    for (size_t i = 0; i < AG_ARRAY_LEN(table); i++) {
        if (strcmp(mt, table[i].mt) == 0) {
            *comp = table[i].comp;
            return 0;
        }
    }
    char esc[96];
    ag_str_escape(esc, sizeof(esc), media_type ? media_type : "", 80);
    return ag_err_set(err, -ENOTSUP, "unsupported layer media type \"%s\"", esc);
}

/* ---- JSON helpers ----------------------------------------------------------- */

static bool absent(const cJSON *j) { return j == NULL || cJSON_IsNull(j); }

static const cJSON *field(const cJSON *obj, const char *key)
{
    return cJSON_GetObjectItemCaseSensitive(obj, key);
}

/* Optional string: absent/null -> *out stays NULL. */
static int get_str(const cJSON *obj, const char *key, bool required, char **out, struct ag_err *err)
{
    const cJSON *j = field(obj, key);

    if (absent(j)) {
        if (required)
            return ag_err_set(err, -EINVAL, "missing \"%s\"", key);
        return 0;
    }
    if (!cJSON_IsString(j))
        return ag_err_set(err, -EINVAL, "\"%s\" must be a string", key);
    *out = strdup(j->valuestring);
    return *out ? 0 : ag_err_set(err, -ENOMEM, "out of memory");
}

static int get_fixed(const cJSON *obj, const char *key, bool required, char *out, size_t out_len,
                     struct ag_err *err)
{
    const cJSON *j = field(obj, key);

    if (absent(j))
        return required ? ag_err_set(err, -EINVAL, "missing \"%s\"", key) : 0;
    if (!cJSON_IsString(j))
        return ag_err_set(err, -EINVAL, "\"%s\" must be a string", key);
    if (strlen(j->valuestring) >= out_len)
        return ag_err_set(err, -EINVAL, "\"%s\" longer than %zu characters", key, out_len - 1);
    strcpy(out, j->valuestring);
    return 0;
}

static int check_count(const cJSON *arr, const char *key, size_t *n, struct ag_err *err)
{
    int c = cJSON_GetArraySize(arr);

    if (c < 0 || (size_t)c > IMG_MANIFEST_MAX_ENTRIES)
        return ag_err_set(err, -EFBIG, "\"%s\" has more than %d entries", key,
                          IMG_MANIFEST_MAX_ENTRIES);
    *n = (size_t)c;
    return 0;
}

static void free_strv(char **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        free(v[i]);
    free(v);
}

static void free_kv(struct img_kv *kv, size_t n)
{
    for (size_t i = 0; kv && i < n; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

/* Array of strings; *present tells absent from empty. */
static int get_strv(const cJSON *obj, const char *key, char ***out, size_t *count, bool *present,
                    struct ag_err *err)
{
    const cJSON *j = field(obj, key);
    const cJSON *it;
    size_t n = 0, i = 0;
    int rc;

    if (absent(j))
        return 0;
    if (!cJSON_IsArray(j))
        return ag_err_set(err, -EINVAL, "\"%s\" must be an array of strings", key);
    if ((rc = check_count(j, key, &n, err)) < 0)
        return rc;
    if (present)
        *present = true;
    *out = calloc(n + 1, sizeof(char *));
    if (*out == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, j)
    {
        if (!cJSON_IsString(it))
            return ag_err_set(err, -EINVAL, "\"%s\"[%zu] must be a string", key, i);
        (*out)[i] = strdup(it->valuestring);
        if ((*out)[i] == NULL)
            return ag_err_set(err, -ENOMEM, "out of memory");
        *count = ++i;
    }
    return 0;
}

/* Object -> key/value pairs (values must be strings), or keys only when
 * keys_only (ExposedPorts, Volumes: values are {}). */
static int get_map(const cJSON *obj, const char *key, struct img_kv **kv, char ***keys,
                   size_t *count, struct ag_err *err)
{
    const cJSON *j = field(obj, key);
    const cJSON *it;
    size_t n = 0, i = 0;
    int rc;

    if (absent(j))
        return 0;
    if (!cJSON_IsObject(j))
        return ag_err_set(err, -EINVAL, "\"%s\" must be an object", key);
    if ((rc = check_count(j, key, &n, err)) < 0)
        return rc;
    if (kv)
        *kv = calloc(n + 1, sizeof(**kv));
    else
        *keys = calloc(n + 1, sizeof(char *));
    if (kv ? *kv == NULL : *keys == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, j)
    {
        if (it->string == NULL)
            return ag_err_set(err, -EINVAL, "\"%s\" has a key-less member", key);
        if (kv) {
            if (!cJSON_IsString(it))
                return ag_err_set(err, -EINVAL, "\"%s\" values must be strings", key);
            (*kv)[i].key = strdup(it->string);
            (*kv)[i].value = strdup(it->valuestring);
            *count = i + 1;
            if ((*kv)[i].key == NULL || (*kv)[i].value == NULL)
                return ag_err_set(err, -ENOMEM, "out of memory");
        } else {
            (*keys)[i] = strdup(it->string);
            *count = i + 1;
            if ((*keys)[i] == NULL)
                return ag_err_set(err, -ENOMEM, "out of memory");
        }
        i++;
    }
    return 0;
}

/* ---- descriptors ------------------------------------------------------------ */

static void descriptor_fini(struct img_descriptor *d)
{
    free(d->media_type);
    free(d->artifact_type);
    free_strv(d->urls, d->urls_count);
    free_kv(d->annotations, d->annotations_count);
    memset(d, 0, sizeof(*d));
}

static int parse_platform(const cJSON *j, struct img_platform *p, struct ag_err *err)
{
    int rc;

    if (!cJSON_IsObject(j))
        return ag_err_set(err, -EINVAL, "\"platform\" must be an object");
    if ((rc = get_fixed(j, "architecture", true, p->architecture, sizeof(p->architecture), err)) <
            0 ||
        (rc = get_fixed(j, "os", true, p->os, sizeof(p->os), err)) < 0 ||
        (rc = get_fixed(j, "variant", false, p->variant, sizeof(p->variant), err)) < 0 ||
        (rc = get_fixed(j, "os.version", false, p->os_version, sizeof(p->os_version), err)) < 0)
        return ag_err_wrap(err, "platform");
    return 0;
}

static int parse_size(const cJSON *j, int64_t *out, struct ag_err *err)
{
    double v;

    if (absent(j))
        return ag_err_set(err, -EINVAL, "missing \"size\"");
    if (!cJSON_IsNumber(j))
        return ag_err_set(err, -EINVAL, "\"size\" must be a number");
    v = j->valuedouble;
    /* JSON numbers are doubles in cJSON: integers are exact up to 2^53. */
    if (!(v >= 0) || v > 9007199254740992.0 || (double)(int64_t)v != v)
        return ag_err_set(err, -EINVAL, "\"size\" must be a non-negative integer");
    *out = (int64_t)v;
    return 0;
}

static int parse_descriptor(const cJSON *j, struct img_descriptor *d, struct ag_err *err)
{
    const cJSON *p;
    int rc;

    if (!cJSON_IsObject(j))
        return ag_err_set(err, -EINVAL, "descriptor must be an object");
    if ((rc = get_str(j, "mediaType", true, &d->media_type, err)) < 0 ||
        (rc = get_fixed(j, "digest", true, d->digest, sizeof(d->digest), err)) < 0 ||
        (rc = img_digest_validate(d->digest, err)) < 0 ||
        (rc = parse_size(field(j, "size"), &d->size, err)) < 0 ||
        (rc = get_str(j, "artifactType", false, &d->artifact_type, err)) < 0 ||
        (rc = get_strv(j, "urls", &d->urls, &d->urls_count, NULL, err)) < 0 ||
        (rc = get_map(j, "annotations", &d->annotations, NULL, &d->annotations_count, err)) < 0)
        return rc;
    p = field(j, "platform");
    if (!absent(p)) {
        if ((rc = parse_platform(p, &d->platform, err)) < 0)
            return rc;
        d->has_platform = true;
    }
    return 0;
}

static int parse_descriptors(const cJSON *obj, const char *key, bool required,
                             struct img_descriptor **out, size_t *count, struct ag_err *err)
{
    const cJSON *j = field(obj, key);
    const cJSON *it;
    size_t n = 0, i = 0;
    int rc;

    if (absent(j))
        return required ? ag_err_set(err, -EINVAL, "missing \"%s\"", key) : 0;
    if (!cJSON_IsArray(j))
        return ag_err_set(err, -EINVAL, "\"%s\" must be an array", key);
    if ((rc = check_count(j, key, &n, err)) < 0)
        return rc;
    *out = calloc(n + 1, sizeof(**out));
    if (*out == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, j)
    {
        *count = i + 1;
        if ((rc = parse_descriptor(it, &(*out)[i], err)) < 0)
            return ag_err_wrap(err, "%s[%zu]", key, i);
        i++;
    }
    return 0;
}

/* ---- documents ---------------------------------------------------------------- */

static int parse_json(const void *data, size_t len, cJSON **out, struct ag_err *err)
{
    if (len > IMG_MANIFEST_MAX_BYTES)
        return ag_err_set(err, -EFBIG, "document of %zu bytes exceeds the %u byte limit", len,
                          IMG_MANIFEST_MAX_BYTES);
    *out = cJSON_ParseWithLength(data, len);
    if (*out == NULL)
        return ag_err_set(err, -EINVAL, "invalid JSON");
    if (!cJSON_IsObject(*out)) {
        cJSON_Delete(*out);
        *out = NULL;
        return ag_err_set(err, -EINVAL, "document is not a JSON object");
    }
    return 0;
}

static void json_deletep(cJSON **j) { cJSON_Delete(*j); }

/* Resolves the media type from Content-Type and the body; checks agreement. */
static int doc_media_type(const cJSON *root, const char *content_type, char *out, size_t out_len,
                          struct ag_err *err)
{
    const cJSON *mt = field(root, "mediaType");
    char ct[128] = "";

    if (content_type)
        mt_base(content_type, ct, sizeof(ct));
    if (!absent(mt) && !cJSON_IsString(mt))
        return ag_err_set(err, -EINVAL, "\"mediaType\" must be a string");
    if (!absent(mt) && ct[0] && strcmp(ct, mt->valuestring) != 0 &&
        strcmp(ct, "application/json") != 0 && strcmp(ct, "application/octet-stream") != 0)
        return ag_err_set(err, -EINVAL, "Content-Type %s disagrees with body mediaType", ct);
    if (!absent(mt))
        snprintf(out, out_len, "%s", mt->valuestring);
    else if (strcmp(ct, "application/json") == 0 || strcmp(ct, "application/octet-stream") == 0)
        out[0] = '\0';
    else
        snprintf(out, out_len, "%s", ct);
    return 0;
}

static int doc_kind(const cJSON *root, const char *content_type, enum img_doc_kind *kind, char *mt,
                    size_t mt_len, struct ag_err *err)
{
    const cJSON *sv;
    int rc;

    if ((rc = doc_media_type(root, content_type, mt, mt_len, err)) < 0)
        return rc;
    if (mt_is_schema1(mt))
        return ag_err_set(err, -ENOTSUP, "Docker schema 1 manifests are not supported");
    sv = field(root, "schemaVersion");
    if (!cJSON_IsNumber(sv))
        return ag_err_set(err, -EINVAL, "missing or non-numeric \"schemaVersion\"");
    if (sv->valuedouble == 1)
        return ag_err_set(err, -ENOTSUP, "Docker schema 1 manifests are not supported");
    if (sv->valuedouble != 2)
        return ag_err_set(err, -ENOTSUP, "unsupported schemaVersion %g", sv->valuedouble);
    if (mt[0] == '\0') {
        /* No media type anywhere (allowed for OCI): decide by shape. */
        if (field(root, "manifests") != NULL) {
            snprintf(mt, mt_len, "%s", IMG_MT_OCI_INDEX);
        } else if (field(root, "config") != NULL) {
            snprintf(mt, mt_len, "%s", IMG_MT_OCI_MANIFEST);
        } else {
            return ag_err_set(err, -EINVAL, "document is neither an index nor a manifest");
        }
    }
    *kind = img_media_type_kind(mt);
    if (*kind != IMG_DOC_INDEX && *kind != IMG_DOC_MANIFEST) {
        char esc[96];
        ag_str_escape(esc, sizeof(esc), mt, 80);
        return ag_err_set(err, -ENOTSUP, "unsupported manifest media type \"%s\"", esc);
    }
    return 0;
}

int img_doc_detect(const void *data, size_t len, const char *content_type, enum img_doc_kind *kind,
                   struct ag_err *err)
{
    _cleanup_(json_deletep) cJSON *root = NULL;
    char mt[128];
    int rc;

    *kind = IMG_DOC_UNKNOWN;
    if ((rc = parse_json(data, len, &root, err)) < 0)
        return rc;
    return doc_kind(root, content_type, kind, mt, sizeof(mt), err);
}

void img_index_free(struct img_index *idx)
{
    if (idx == NULL)
        return;
    for (size_t i = 0; i < idx->manifests_count; i++)
        descriptor_fini(&idx->manifests[i]);
    free(idx->manifests);
    free_kv(idx->annotations, idx->annotations_count);
    free(idx->media_type);
    free(idx);
}

int img_index_parse(const void *data, size_t len, const char *content_type, struct img_index **out,
                    struct ag_err *err)
{
    _cleanup_(json_deletep) cJSON *root = NULL;
    _cleanup_(img_index_freep) struct img_index *idx = NULL;
    enum img_doc_kind kind;
    char mt[128];
    int rc = -EIO;

    *out = NULL;
    if ((rc = parse_json(data, len, &root, err)) < 0 ||
        (rc = doc_kind(root, content_type, &kind, mt, sizeof(mt), err)) < 0)
        return ag_err_wrap(err, "image index");
    if (kind != IMG_DOC_INDEX)
        return ag_err_set(err, -EINVAL, "image index: document is a manifest, not an index");
    idx = calloc(1, sizeof(*idx));
    if (idx == NULL || (idx->media_type = strdup(mt)) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    if ((rc = parse_descriptors(root, "manifests", true, &idx->manifests, &idx->manifests_count,
                                err)) < 0 ||
        (rc = get_map(root, "annotations", &idx->annotations, NULL, &idx->annotations_count, err)) <
            0)
        return ag_err_wrap(err, "image index");
    *out = steal_ptr(&idx);
    return 0;
}

void img_manifest_free(struct img_manifest *m)
{
    if (m == NULL)
        return;
    descriptor_fini(&m->config);
    descriptor_fini(&m->subject);
    for (size_t i = 0; i < m->layers_count; i++)
        descriptor_fini(&m->layers[i]);
    free(m->layers);
    free_kv(m->annotations, m->annotations_count);
    free(m->media_type);
    free(m->artifact_type);
    free(m);
}

static int parse_manifest_body(const cJSON *root, struct img_manifest *m, struct ag_err *err)
{
    const cJSON *j;
    int rc;

    j = field(root, "config");
    if (absent(j))
        return ag_err_set(err, -EINVAL, "missing \"config\"");
    if ((rc = parse_descriptor(j, &m->config, err)) < 0)
        return ag_err_wrap(err, "config");
    if ((rc = parse_descriptors(root, "layers", false, &m->layers, &m->layers_count, err)) < 0)
        return rc;
    j = field(root, "subject");
    if (!absent(j)) {
        if ((rc = parse_descriptor(j, &m->subject, err)) < 0)
            return ag_err_wrap(err, "subject");
        m->has_subject = true;
    }
    if ((rc = get_str(root, "artifactType", false, &m->artifact_type, err)) < 0)
        return rc;
    return get_map(root, "annotations", &m->annotations, NULL, &m->annotations_count, err);
}

int img_manifest_parse(const void *data, size_t len, const char *content_type,
                       struct img_manifest **out, struct ag_err *err)
{
    _cleanup_(json_deletep) cJSON *root = NULL;
    _cleanup_(img_manifest_freep) struct img_manifest *m = NULL;
    enum img_doc_kind kind;
    char mt[128];
    int rc = -EIO;

    *out = NULL;
    if ((rc = parse_json(data, len, &root, err)) < 0 ||
        (rc = doc_kind(root, content_type, &kind, mt, sizeof(mt), err)) < 0)
        return ag_err_wrap(err, "image manifest");
    if (kind != IMG_DOC_MANIFEST)
        return ag_err_set(err, -EINVAL, "image manifest: document is an index, not a manifest");
    m = calloc(1, sizeof(*m));
    if (m == NULL || (m->media_type = strdup(mt)) == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    if ((rc = parse_manifest_body(root, m, err)) < 0)
        return ag_err_wrap(err, "image manifest");
    *out = steal_ptr(&m);
    return 0;
}

/* ---- image config ---------------------------------------------------------------- */

void img_config_free(struct img_config *c)
{
    if (c == NULL)
        return;
    free(c->created);
    free(c->author);
    free(c->user);
    free_strv(c->env, c->env_count);
    free_strv(c->entrypoint, c->entrypoint_count);
    free_strv(c->cmd, c->cmd_count);
    free(c->working_dir);
    free_kv(c->labels, c->labels_count);
    free(c->stop_signal);
    free_strv(c->exposed_ports, c->exposed_ports_count);
    free_strv(c->volumes, c->volumes_count);
    free_strv(c->diff_ids, c->diff_ids_count);
    for (size_t i = 0; c->history && i < c->history_count; i++) {
        free(c->history[i].created);
        free(c->history[i].created_by);
        free(c->history[i].author);
        free(c->history[i].comment);
    }
    free(c->history);
    free(c);
}

static int parse_exec_config(const cJSON *j, struct img_config *c, struct ag_err *err)
{
    int rc;

    if (absent(j))
        return 0;
    if (!cJSON_IsObject(j))
        return ag_err_set(err, -EINVAL, "\"config\" must be an object");
    if ((rc = get_str(j, "User", false, &c->user, err)) < 0 ||
        (rc = get_strv(j, "Env", &c->env, &c->env_count, NULL, err)) < 0 ||
        (rc = get_strv(j, "Entrypoint", &c->entrypoint, &c->entrypoint_count, &c->has_entrypoint,
                       err)) < 0 ||
        (rc = get_strv(j, "Cmd", &c->cmd, &c->cmd_count, &c->has_cmd, err)) < 0 ||
        (rc = get_str(j, "WorkingDir", false, &c->working_dir, err)) < 0 ||
        (rc = get_map(j, "Labels", &c->labels, NULL, &c->labels_count, err)) < 0 ||
        (rc = get_str(j, "StopSignal", false, &c->stop_signal, err)) < 0 ||
        (rc = get_map(j, "ExposedPorts", NULL, &c->exposed_ports, &c->exposed_ports_count, err)) <
            0 ||
        (rc = get_map(j, "Volumes", NULL, &c->volumes, &c->volumes_count, err)) < 0)
        return ag_err_wrap(err, "config");
    return 0;
}

static int parse_rootfs(const cJSON *j, struct img_config *c, struct ag_err *err)
{
    const cJSON *type;
    int rc;

    if (absent(j) || !cJSON_IsObject(j))
        return ag_err_set(err, -EINVAL, "missing or invalid \"rootfs\"");
    type = field(j, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "layers") != 0)
        return ag_err_set(err, -EINVAL, "rootfs.type must be \"layers\"");
    if ((rc = get_strv(j, "diff_ids", &c->diff_ids, &c->diff_ids_count, NULL, err)) < 0)
        return ag_err_wrap(err, "rootfs");
    for (size_t i = 0; i < c->diff_ids_count; i++) {
        if ((rc = img_digest_validate(c->diff_ids[i], err)) < 0)
            return ag_err_wrap(err, "rootfs.diff_ids[%zu]", i);
    }
    return 0;
}

static int parse_history(const cJSON *root, struct img_config *c, struct ag_err *err)
{
    const cJSON *j = field(root, "history");
    const cJSON *it;
    size_t n = 0, i = 0;
    int rc;

    if (absent(j))
        return 0;
    if (!cJSON_IsArray(j))
        return ag_err_set(err, -EINVAL, "\"history\" must be an array");
    if ((rc = check_count(j, "history", &n, err)) < 0)
        return rc;
    c->history = calloc(n + 1, sizeof(*c->history));
    if (c->history == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    cJSON_ArrayForEach(it, j)
    {
        struct img_history *h = &c->history[i];
        const cJSON *e;
        c->history_count = ++i;
        if (!cJSON_IsObject(it))
            return ag_err_set(err, -EINVAL, "history[%zu] must be an object", i - 1);
        if ((rc = get_str(it, "created", false, &h->created, err)) < 0 ||
            (rc = get_str(it, "created_by", false, &h->created_by, err)) < 0 ||
            (rc = get_str(it, "author", false, &h->author, err)) < 0 ||
            (rc = get_str(it, "comment", false, &h->comment, err)) < 0)
            return ag_err_wrap(err, "history[%zu]", i - 1);
        e = field(it, "empty_layer");
        if (!absent(e) && !cJSON_IsBool(e))
            return ag_err_set(err, -EINVAL, "history[%zu].empty_layer must be a boolean", i - 1);
        h->empty_layer = cJSON_IsTrue(e);
    }
    return 0;
}

static int parse_config_body(const cJSON *root, struct img_config *c, struct ag_err *err)
{
    struct img_platform *p = &c->platform;
    int rc;

    if ((rc = get_fixed(root, "architecture", true, p->architecture, sizeof(p->architecture),
                        err)) < 0 ||
        (rc = get_fixed(root, "os", true, p->os, sizeof(p->os), err)) < 0 ||
        (rc = get_fixed(root, "variant", false, p->variant, sizeof(p->variant), err)) < 0 ||
        (rc = get_fixed(root, "os.version", false, p->os_version, sizeof(p->os_version), err)) <
            0 ||
        (rc = get_str(root, "created", false, &c->created, err)) < 0 ||
        (rc = get_str(root, "author", false, &c->author, err)) < 0 ||
        (rc = parse_exec_config(field(root, "config"), c, err)) < 0 ||
        (rc = parse_rootfs(field(root, "rootfs"), c, err)) < 0)
        return rc;
    return parse_history(root, c, err);
}

int img_config_parse(const void *data, size_t len, struct img_config **out, struct ag_err *err)
{
    _cleanup_(json_deletep) cJSON *root = NULL;
    _cleanup_(img_config_freep) struct img_config *c = NULL;
    int rc = -EIO;

    *out = NULL;
    if ((rc = parse_json(data, len, &root, err)) < 0)
        return ag_err_wrap(err, "image config");
    c = calloc(1, sizeof(*c));
    if (c == NULL)
        return ag_err_set(err, -ENOMEM, "out of memory");
    if ((rc = parse_config_body(root, c, err)) < 0)
        return ag_err_wrap(err, "image config");
    *out = steal_ptr(&c);
    return 0;
}

int img_manifest_check_config(const struct img_manifest *m, const struct img_config *c,
                              struct ag_err *err)
{
    if (m->layers_count != c->diff_ids_count)
        return ag_err_set(err, -EINVAL, "manifest has %zu layers but config has %zu diff_ids",
                          m->layers_count, c->diff_ids_count);
    return 0;
}
