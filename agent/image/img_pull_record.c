/* agent/image: builds the ImageRecord of a pulled (or imported) image.
 *
 * The id is the config digest ("sha256:<hex>", as containerd reports it);
 * names are the tag and repo digest the client asked for, plus the names
 * an existing record of the same id already holds (a second tag of the
 * same image adds a name, it does not replace the first).  Each layer
 * carries its ChainID and its directory <layers>/<chain hex>, which the
 * runtime uses as an overlayfs lower dir.  uid/username come from the
 * config's User the way containerd reads it ("1000", "1000:1000" -> uid;
 * "app", "app:grp" -> username).
 *
 * Invariant: on failure the record is left for the caller to release;
 * nothing is put in the store here.
 */
#include "image/img_service_int.h"

#include <pb_decode.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int add_name(char ***arr, pb_size_t *count, const char *name)
{
    char **n;

    if (name == NULL || name[0] == '\0')
        return 0;
    for (pb_size_t i = 0; i < *count; i++)
        if (strcmp((*arr)[i], name) == 0)
            return 0;
    if ((n = realloc(*arr, (*count + 1) * sizeof(char *))) == NULL)
        return -ENOMEM;
    *arr = n;
    if ((n[*count] = strdup(name)) == NULL)
        return -ENOMEM;
    (*count)++;
    return 0;
}

static char *dup_or_null(const char *s)
{
    return s != NULL && s[0] != '\0' ? strdup(s) : NULL;
}

/* containerd: the part before ':' of User; all digits -> uid. */
static int set_user(picocri_store_ImageRecord *rec, const char *user)
{
    char part[256];
    size_t n;
    bool digits = true;

    if (user == NULL || user[0] == '\0')
        return 0;
    n = strcspn(user, ":");
    if (n == 0 || n >= sizeof(part))
        return 0;
    memcpy(part, user, n);
    part[n] = '\0';
    for (size_t i = 0; i < n; i++)
        digits = digits && part[i] >= '0' && part[i] <= '9';
    if (digits && n <= 18) {
        if ((rec->uid = calloc(1, sizeof(*rec->uid))) == NULL)
            return -ENOMEM;
        rec->uid->value = strtoll(part, NULL, 10);
        return 0;
    }
    return (rec->username = strdup(part)) == NULL ? -ENOMEM : 0;
}

static int64_t parse_created(const char *s)
{
    struct tm tm = {0};
    const char *end;

    if (s == NULL || (end = strptime(s, "%Y-%m-%dT%H:%M:%S", &tm)) == NULL)
        return 0;
    return (int64_t)timegm(&tm) * 1000000000LL;
}

static int fill_layers(const struct img_pull_info *pi, picocri_store_ImageRecord *rec,
                       struct ag_err *err)
{
    const struct img_manifest *m = pi->man;

    rec->layers = calloc(m->layers_count ? m->layers_count : 1, sizeof(*rec->layers));
    if (rec->layers == NULL)
        return -ENOMEM;
    for (size_t i = 0; i < m->layers_count; i++) {
        picocri_store_LayerRecord *l = &rec->layers[i];
        char chain[IMG_DIGEST_MAX], dir[IMG_SVC_PATH_MAX];
        int rc = img_digest_chain_id(pi->cfg->diff_ids, i + 1, chain, err);

        rec->layers_count = (pb_size_t)(i + 1);
        if (rc < 0)
            return rc;
        if (snprintf(dir, sizeof(dir), "%s/%s", pi->layers_dir, chain + strlen("sha256:")) >=
            (int)sizeof(dir))
            return ag_err_set(err, -ENAMETOOLONG, "layer path too long");
        l->digest = strdup(m->layers[i].digest);
        l->media_type = strdup(m->layers[i].media_type ? m->layers[i].media_type : "");
        l->size = m->layers[i].size;
        l->diff_id = strdup(pi->cfg->diff_ids[i]);
        l->chain_id = strdup(chain);
        l->unpacked_dir = strdup(dir);
        if (!l->digest || !l->media_type || !l->diff_id || !l->chain_id || !l->unpacked_dir)
            return -ENOMEM;
        if (l->size > 0)
            rec->size += (uint64_t)l->size;
    }
    return 0;
}

static int fill_platform(const struct img_config *c, picocri_store_ImageRecord *rec)
{
    if ((rec->platform = calloc(1, sizeof(*rec->platform))) == NULL)
        return -ENOMEM;
    rec->platform->os = dup_or_null(c->platform.os);
    rec->platform->architecture = dup_or_null(c->platform.architecture);
    rec->platform->variant = dup_or_null(c->platform.variant);
    rec->platform->os_version = dup_or_null(c->platform.os_version);
    return 0;
}

static int merge_existing(struct img_svc *s, picocri_store_ImageRecord *rec)
{
    const picocri_store_ImageRecord *old = NULL;
    struct ag_err e;
    int rc = 0;

    ag_err_init(&e);
    if (st_image_get(s->st, s->ns, rec->id, &old, &e) < 0 || old == NULL ||
        strcmp(old->id, rec->id) != 0)
        return 0;
    for (pb_size_t i = 0; rc == 0 && i < old->repo_tags_count; i++)
        rc = add_name(&rec->repo_tags, &rec->repo_tags_count, old->repo_tags[i]);
    for (pb_size_t i = 0; rc == 0 && i < old->repo_digests_count; i++)
        rc = add_name(&rec->repo_digests, &rec->repo_digests_count, old->repo_digests[i]);
    rec->pinned = rec->pinned || old->pinned;
    return rc;
}

int img_pull__build_record(struct img_svc *s, const struct img_pull_info *pi,
                           picocri_store_ImageRecord *rec, struct ag_err *err)
{
    int rc = -ENOMEM;

    memset(rec, 0, sizeof(*rec));
    if ((rec->id = strdup(pi->man->config.digest)) == NULL)
        goto oom;
    if (add_name(&rec->repo_tags, &rec->repo_tags_count, pi->tag) < 0 ||
        add_name(&rec->repo_digests, &rec->repo_digests_count, pi->repo_digest) < 0 ||
        merge_existing(s, rec) < 0)
        goto oom;
    rec->manifest_digest = strdup(pi->manifest_digest);
    rec->manifest_media_type = strdup(pi->manifest_media_type ? pi->manifest_media_type : "");
    rec->index_digest = dup_or_null(pi->index_digest);
    rec->config_digest = strdup(pi->man->config.digest);
    rec->config_media_type =
        strdup(pi->man->config.media_type ? pi->man->config.media_type : "");
    rec->source = strdup(pi->source);
    if (!rec->manifest_digest || !rec->manifest_media_type || !rec->config_digest ||
        !rec->config_media_type || !rec->source)
        goto oom;
    if ((rc = fill_layers(pi, rec, err)) < 0) {
        if (rc == -ENOMEM)
            goto oom;
        return rc;
    }
    rec->size += (uint64_t)(pi->manifest_size > 0 ? pi->manifest_size : 0);
    rec->size += (uint64_t)(pi->man->config.size > 0 ? pi->man->config.size : 0);
    rc = -ENOMEM;
    if (set_user(rec, pi->cfg->user) < 0 || fill_platform(pi->cfg, rec) < 0 ||
        img_svc__spec_copy(pi->spec, pi->man->config.digest, &rec->spec) < 0)
        goto oom;
    rec->created_at_ns = parse_created(pi->cfg->created);
    rec->pulled_at_ns = ag_now_ns();
    return 0;
oom:
    return ag_err_set(err, -ENOMEM, "image record: out of memory");
}
