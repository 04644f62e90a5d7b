/* agent/runtime: config.json loader, top level.
 *
 * Turns an OCI bundle's config.json (untrusted bytes: it comes from the CRI
 * layer or a user) into struct rt_spec: root, hostname, annotations,
 * process, mounts and hooks here; the linux object in rt_spec_linux.c.
 * Invariant: a returned spec is fully validated (every required field
 * present, every enum known, paths absolute), so the executor never
 * re-checks; any error frees everything and names the offending field.
 */
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include "rt_internal.h"

/* ---- JSON helpers ----------------------------------------------------------- */

int rt__json_str(const cJSON *obj, const char *key, bool required, char **out,
                 struct ag_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    *out = NULL;
    if (!v || cJSON_IsNull(v)) {
        if (required)
            return ag_err_set(err, -EINVAL, "%s: required", key);
        return 0;
    }
    if (!cJSON_IsString(v))
        return ag_err_set(err, -EINVAL, "%s: not a string", key);
    *out = strdup(v->valuestring);
    return *out ? 0 : ag_err_set(err, -ENOMEM, "%s: out of memory", key);
}

void rt__strv_free(char **v)
{
    if (!v)
        return;
    for (char **p = v; *p; p++)
        free(*p);
    free(v);
}

int rt__json_strv(const cJSON *obj, const char *key, char ***out, size_t *count,
                  struct ag_err *err)
{
    const cJSON *v = key ? cJSON_GetObjectItemCaseSensitive(obj, key) : obj;
    const cJSON *e;
    size_t n = 0, i = 0;
    *out = NULL;
    if (count)
        *count = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsArray(v))
        return ag_err_set(err, -EINVAL, "%s: not an array", key ? key : "value");
    cJSON_ArrayForEach(e, v) n++;
    char **r = calloc(n + 1, sizeof(*r));
    if (!r)
        return ag_err_set(err, -ENOMEM, "%s: out of memory", key);
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsString(e)) {
            rt__strv_free(r);
            return ag_err_set(err, -EINVAL, "%s[%zu]: not a string", key ? key : "value", i);
        }
        r[i] = strdup(e->valuestring);
        if (!r[i]) {
            rt__strv_free(r);
            return ag_err_set(err, -ENOMEM, "%s: out of memory", key);
        }
        i++;
    }
    *out = r;
    if (count)
        *count = n;
    return 0;
}

/* cJSON keeps numbers as doubles: accept only integral values in range. */
static int json_num(const cJSON *v, const char *key, double lo, double hi, double *out,
                    struct ag_err *err)
{
    if (!cJSON_IsNumber(v))
        return ag_err_set(err, -EINVAL, "%s: not a number", key);
    double d = v->valuedouble;
    if (d != d || d < lo || d > hi || d != (double)(long long)d)
        return ag_err_set(err, -EINVAL, "%s: out of range or not an integer", key);
    *out = d;
    return 0;
}

int rt__json_u64(const cJSON *obj, const char *key, bool *has, uint64_t *out, struct ag_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    double d;
    if (has)
        *has = false;
    if (!v || cJSON_IsNull(v))
        return 0;
    /* Integers above 2^63 cannot round-trip through a double: refuse them. */
    if (json_num(v, key, 0, 9.2e18, &d, err) < 0)
        return err->code;
    *out = (uint64_t)d;
    if (has)
        *has = true;
    return 0;
}

int rt__json_i64(const cJSON *obj, const char *key, bool *has, int64_t *out, struct ag_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    double d;
    if (has)
        *has = false;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (json_num(v, key, -9.2e18, 9.2e18, &d, err) < 0)
        return err->code;
    *out = (int64_t)d;
    if (has)
        *has = true;
    return 0;
}

int rt__json_bool(const cJSON *obj, const char *key, bool *out, struct ag_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(obj, key);
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsBool(v))
        return ag_err_set(err, -EINVAL, "%s: not a boolean", key);
    *out = cJSON_IsTrue(v);
    return 0;
}

void rt__kv_free(struct rt_kv *kv, size_t count)
{
    for (size_t i = 0; kv && i < count; i++) {
        free(kv[i].key);
        free(kv[i].value);
    }
    free(kv);
}

int rt__json_kv(const cJSON *obj, const char *key, struct rt_kv **out, size_t *count,
                struct ag_err *err)
{
    const cJSON *v = key ? cJSON_GetObjectItemCaseSensitive(obj, key) : obj;
    const cJSON *e;
    size_t n = 0, i = 0;
    *out = NULL;
    *count = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsObject(v))
        return ag_err_set(err, -EINVAL, "%s: not an object", key);
    cJSON_ArrayForEach(e, v) n++;
    struct rt_kv *r = calloc(n ? n : 1, sizeof(*r));
    if (!r)
        return ag_err_set(err, -ENOMEM, "%s: out of memory", key);
    cJSON_ArrayForEach(e, v)
    {
        if (!cJSON_IsString(e) || !e->string) {
            rt__kv_free(r, n);
            return ag_err_set(err, -EINVAL, "%s: values must be strings", key);
        }
        r[i].key = strdup(e->string);
        r[i].value = strdup(e->valuestring);
        if (!r[i].key || !r[i].value) {
            rt__kv_free(r, n);
            return ag_err_set(err, -ENOMEM, "%s: out of memory", key);
        }
        i++;
    }
    *out = r;
    *count = n;
    return 0;
}

/* ---- process ---------------------------------------------------------------- */

static const struct {
    const char *name;
    int type;
} rlimit_names[] = {
    {"RLIMIT_AS", RLIMIT_AS},         {"RLIMIT_CORE", RLIMIT_CORE},
    {"RLIMIT_CPU", RLIMIT_CPU},       {"RLIMIT_DATA", RLIMIT_DATA},
    {"RLIMIT_FSIZE", RLIMIT_FSIZE},   {"RLIMIT_LOCKS", RLIMIT_LOCKS},
    {"RLIMIT_MEMLOCK", RLIMIT_MEMLOCK}, {"RLIMIT_MSGQUEUE", RLIMIT_MSGQUEUE},
    {"RLIMIT_NICE", RLIMIT_NICE},     {"RLIMIT_NOFILE", RLIMIT_NOFILE},
    {"RLIMIT_NPROC", RLIMIT_NPROC},   {"RLIMIT_RSS", RLIMIT_RSS},
    {"RLIMIT_RTPRIO", RLIMIT_RTPRIO}, {"RLIMIT_RTTIME", RLIMIT_RTTIME},
    {"RLIMIT_SIGPENDING", RLIMIT_SIGPENDING}, {"RLIMIT_STACK", RLIMIT_STACK},
};

static int parse_rlimits(const cJSON *arr, struct rt_process *p, struct ag_err *err)
{
    const cJSON *e;
    size_t n = 0;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return ag_err_set(err, -EINVAL, "process.rlimits: not an array");
    cJSON_ArrayForEach(e, arr) n++;
    p->rlimits = calloc(n ? n : 1, sizeof(*p->rlimits));
    if (!p->rlimits)
        return ag_err_set(err, -ENOMEM, "process.rlimits: out of memory");
    cJSON_ArrayForEach(e, arr)
    {
        _cleanup_free_ char *type = NULL;
        struct rt_rlimit *r = &p->rlimits[p->rlimits_count];
        bool hs = false, hh = false;
        if (!cJSON_IsObject(e))
            return ag_err_set(err, -EINVAL, "process.rlimits: entry not an object");
        if (rt__json_str(e, "type", true, &type, err) < 0 ||
            rt__json_u64(e, "soft", &hs, &r->soft, err) < 0 ||
            rt__json_u64(e, "hard", &hh, &r->hard, err) < 0)
            return ag_err_wrap(err, "process.rlimits");
        r->type = -1;
        for (size_t i = 0; i < AG_ARRAY_LEN(rlimit_names); i++)
            if (!strcmp(rlimit_names[i].name, type))
                r->type = rlimit_names[i].type;
        if (r->type < 0)
            return ag_err_set(err, -EINVAL, "process.rlimits: unknown type %.64s", type);
        if (!hs || !hh)
            return ag_err_set(err, -EINVAL, "process.rlimits: %s needs soft and hard", type);
        for (size_t i = 0; i < p->rlimits_count; i++)
            if (p->rlimits[i].type == r->type)
                return ag_err_set(err, -EINVAL, "process.rlimits: duplicate %s", type);
        p->rlimits_count++;
    }
    return 0;
}

static int parse_capset(const cJSON *caps, const char *key, uint64_t *out, struct ag_err *err)
{
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(caps, key), *e;
    *out = 0;
    if (!v || cJSON_IsNull(v))
        return 0;
    if (!cJSON_IsArray(v))
        return ag_err_set(err, -EINVAL, "capabilities.%s: not an array", key);
    cJSON_ArrayForEach(e, v)
    {
        int c = cJSON_IsString(e) ? rt__cap_parse(e->valuestring) : -EINVAL;
        if (c < 0) {
            char esc[80];
            ag_str_escape(esc, sizeof(esc), cJSON_IsString(e) ? e->valuestring : "?", 64);
            return ag_err_set(err, -EINVAL, "capabilities.%s: unknown capability %s", key, esc);
        }
        *out |= 1ull << c;
    }
    return 0;
}

static int parse_user(const cJSON *u, struct rt_process *p, struct ag_err *err)
{
    uint64_t v = 0;
    bool has = false;
    const cJSON *g, *e;
    if (!u || cJSON_IsNull(u))
        return 0;
    if (!cJSON_IsObject(u))
        return ag_err_set(err, -EINVAL, "process.user: not an object");
    if (rt__json_u64(u, "uid", &has, &v, err) < 0 || v > UINT32_MAX - 1)
        return ag_err_set(err, -EINVAL, "process.user.uid: invalid");
    p->uid = (uint32_t)v;
    v = 0;
    if (rt__json_u64(u, "gid", &has, &v, err) < 0 || v > UINT32_MAX - 1)
        return ag_err_set(err, -EINVAL, "process.user.gid: invalid");
    p->gid = (uint32_t)v;
    if (rt__json_u64(u, "umask", &p->has_umask, &v, err) < 0 || (p->has_umask && v > 0777))
        return ag_err_set(err, -EINVAL, "process.user.umask: invalid");
    p->umask = (uint32_t)v;
    g = cJSON_GetObjectItemCaseSensitive(u, "additionalGids");
    if (!g || cJSON_IsNull(g))
        return 0;
    if (!cJSON_IsArray(g) || cJSON_GetArraySize(g) > 65536)
        return ag_err_set(err, -EINVAL, "process.user.additionalGids: not an array");
    p->gids = calloc((size_t)cJSON_GetArraySize(g) + 1, sizeof(uint32_t));
    if (!p->gids)
        return ag_err_set(err, -ENOMEM, "additionalGids: out of memory");
    cJSON_ArrayForEach(e, g)
    {
        double d;
        if (json_num(e, "process.user.additionalGids", 0, UINT32_MAX - 1, &d, err) < 0)
            return err->code;
        p->gids[p->gids_count++] = (uint32_t)d;
    }
    return 0;
}

int rt__process_parse_obj(const cJSON *obj, struct rt_process *p, struct ag_err *err)
{
    const cJSON *caps, *cs;
    if (!cJSON_IsObject(obj))
        return ag_err_set(err, -EINVAL, "process: not an object");
    if (rt__json_bool(obj, "terminal", &p->terminal, err) < 0 ||
        rt__json_str(obj, "cwd", true, &p->cwd, err) < 0 ||
        rt__json_strv(obj, "env", &p->env, &p->env_count, err) < 0 ||
        rt__json_strv(obj, "args", &p->args, &p->args_count, err) < 0 ||
        rt__json_bool(obj, "noNewPrivileges", &p->no_new_privs, err) < 0 ||
        rt__json_str(obj, "apparmorProfile", false, &p->apparmor_profile, err) < 0 ||
        rt__json_str(obj, "selinuxLabel", false, &p->selinux_label, err) < 0)
        return ag_err_wrap(err, "process");
    if (p->cwd[0] != '/')
        return ag_err_set(err, -EINVAL, "process.cwd: must be absolute");
    if (p->args_count == 0)
        return ag_err_set(err, -EINVAL, "process.args: at least one entry required");
    for (size_t i = 0; i < p->env_count; i++)
        if (!strchr(p->env[i], '='))
            return ag_err_set(err, -EINVAL, "process.env[%zu]: not KEY=VALUE", i);
    cs = cJSON_GetObjectItemCaseSensitive(obj, "consoleSize");
    if (cJSON_IsObject(cs)) {
        uint64_t h = 0, w = 0;
        if (rt__json_u64(cs, "height", NULL, &h, err) < 0 ||
            rt__json_u64(cs, "width", NULL, &w, err) < 0 || h > 65535 || w > 65535)
            return ag_err_set(err, -EINVAL, "process.consoleSize: invalid");
        p->cons_height = (unsigned)h;
        p->cons_width = (unsigned)w;
    }
    if (parse_user(cJSON_GetObjectItemCaseSensitive(obj, "user"), p, err) < 0)
        return err->code;
    caps = cJSON_GetObjectItemCaseSensitive(obj, "capabilities");
    if (caps && !cJSON_IsNull(caps)) {
        if (!cJSON_IsObject(caps))
            return ag_err_set(err, -EINVAL, "process.capabilities: not an object");
        p->has_caps = true;
        if (parse_capset(caps, "bounding", &p->caps.bounding, err) < 0 ||
            parse_capset(caps, "effective", &p->caps.effective, err) < 0 ||
            parse_capset(caps, "inheritable", &p->caps.inheritable, err) < 0 ||
            parse_capset(caps, "permitted", &p->caps.permitted, err) < 0 ||
            parse_capset(caps, "ambient", &p->caps.ambient, err) < 0)
            return ag_err_wrap(err, "process");
    }
    int64_t oom = 0;
    if (rt__json_i64(obj, "oomScoreAdj", &p->has_oom_score_adj, &oom, err) < 0 || oom < -1000 ||
        oom > 1000)
        return ag_err_set(err, -EINVAL, "process.oomScoreAdj: must be -1000..1000");
    p->oom_score_adj = (int)oom;
    return parse_rlimits(cJSON_GetObjectItemCaseSensitive(obj, "rlimits"), p, err);
}

void rt__process_fini(struct rt_process *p)
{
    free(p->cwd);
    rt__strv_free(p->env);
    rt__strv_free(p->args);
    free(p->gids);
    free(p->rlimits);
    free(p->apparmor_profile);
    free(p->selinux_label);
    memset(p, 0, sizeof(*p));
}

void rt_process_free(struct rt_process *p)
{
    if (!p)
        return;
    rt__process_fini(p);
    free(p);
}

int rt_process_parse(const char *json, size_t len, struct rt_process **out, struct ag_err *err)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    struct rt_process *p;
    *out = NULL;
    if (!root)
        return ag_err_set(err, -EINVAL, "process: not valid JSON");
    p = calloc(1, sizeof(*p));
    if (!p) {
        cJSON_Delete(root);
        return ag_err_set(err, -ENOMEM, "process: out of memory");
    }
    int rc = rt__process_parse_obj(root, p, err);
    cJSON_Delete(root);
    if (rc < 0) {
        rt_process_free(p);
        return rc;
    }
    *out = p;
    return 0;
}

/* ---- mounts and hooks ------------------------------------------------------------ */

static int join_bundle(const char *bundle, const char *path, char **out)
{
    if (path[0] == '/')
        *out = strdup(path);
    else if (asprintf(out, "%s/%s", bundle, path) < 0)
        *out = NULL;
    return *out ? 0 : -ENOMEM;
}

static bool has_dotdot(const char *p)
{
    size_t n = strlen(p);
    return strstr(p, "/../") || (n >= 3 && !strcmp(p + n - 3, "/.."));
}

static int parse_mount(const cJSON *e, const char *bundle, struct rt_mount *m, struct ag_err *err)
{
    char **opts = NULL;
    size_t n = 0;
    _cleanup_free_ char *src = NULL;
    if (!cJSON_IsObject(e))
        return ag_err_set(err, -EINVAL, "not an object");
    if (rt__json_str(e, "destination", true, &m->destination, err) < 0 ||
        rt__json_str(e, "type", false, &m->type, err) < 0 ||
        rt__json_str(e, "source", false, &src, err) < 0 ||
        rt__json_strv(e, "options", &opts, &n, err) < 0)
        return err->code;
    int rc = rt_mount_options_parse((const char *const *)opts, n, &m->opts);
    rt__strv_free(opts);
    if (rc < 0)
        return ag_err_set(err, rc, "options: out of memory");
    if (m->destination[0] != '/') {
        /* Deprecated relative form: relative to "/". */
        char *d;
        if (asprintf(&d, "/%s", m->destination) < 0)
            return ag_err_set(err, -ENOMEM, "out of memory");
        free(m->destination);
        m->destination = d;
    }
    if (has_dotdot(m->destination))
        return ag_err_set(err, -EINVAL, "destination %.200s: contains ..", m->destination);
    if (src) {
        /* Bind sources are host paths, relative to the bundle. */
        if (m->opts.bind && join_bundle(bundle, src, &m->source) < 0)
            return ag_err_set(err, -ENOMEM, "out of memory");
        if (!m->opts.bind)
            m->source = steal_ptr(&src);
    }
    if (m->opts.bind && !m->source)
        return ag_err_set(err, -EINVAL, "%.200s: bind mount without source", m->destination);
    if (!m->opts.bind && !m->type)
        return ag_err_set(err, -EINVAL, "%.200s: type required", m->destination);
    return 0;
}

static int parse_mounts(const cJSON *root, struct rt_spec *s, struct ag_err *err)
{
    const cJSON *arr = cJSON_GetObjectItemCaseSensitive(root, "mounts"), *e;
    size_t n = 0;
    if (!arr || cJSON_IsNull(arr))
        return 0;
    if (!cJSON_IsArray(arr))
        return ag_err_set(err, -EINVAL, "mounts: not an array");
    cJSON_ArrayForEach(e, arr) n++;
    s->mounts = calloc(n ? n : 1, sizeof(*s->mounts));
    if (!s->mounts)
        return ag_err_set(err, -ENOMEM, "mounts: out of memory");
    cJSON_ArrayForEach(e, arr)
    {
        if (parse_mount(e, s->bundle, &s->mounts[s->mounts_count++], err) < 0)
            return ag_err_wrap(err, "mounts[%zu]", s->mounts_count - 1);
    }
    return 0;
}

static const char *const hook_names[RT_HOOK_COUNT] = {
    "prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop",
};

static int parse_hooks(const cJSON *root, struct rt_spec *s, struct ag_err *err)
{
    const cJSON *hooks = cJSON_GetObjectItemCaseSensitive(root, "hooks");
    if (!hooks || cJSON_IsNull(hooks))
        return 0;
    if (!cJSON_IsObject(hooks))
        return ag_err_set(err, -EINVAL, "hooks: not an object");
    for (int k = 0; k < RT_HOOK_COUNT; k++) {
        const cJSON *arr = cJSON_GetObjectItemCaseSensitive(hooks, hook_names[k]), *e;
        size_t n = 0;
        if (!arr || cJSON_IsNull(arr))
            continue;
        if (!cJSON_IsArray(arr))
            return ag_err_set(err, -EINVAL, "hooks.%s: not an array", hook_names[k]);
        cJSON_ArrayForEach(e, arr) n++;
        s->hooks[k] = calloc(n ? n : 1, sizeof(struct rt_hook));
        if (!s->hooks[k])
            return ag_err_set(err, -ENOMEM, "hooks: out of memory");
        cJSON_ArrayForEach(e, arr)
        {
            struct rt_hook *h = &s->hooks[k][s->hooks_count[k]++];
            int64_t t = 0;
            bool has = false;
            if (!cJSON_IsObject(e) || rt__json_str(e, "path", true, &h->path, err) < 0 ||
                rt__json_strv(e, "args", &h->args, NULL, err) < 0 ||
                rt__json_strv(e, "env", &h->env, NULL, err) < 0 ||
                rt__json_i64(e, "timeout", &has, &t, err) < 0)
                return ag_err_set(err, -EINVAL, "hooks.%s[%zu]: invalid", hook_names[k],
                                  s->hooks_count[k] - 1);
            if (h->path[0] != '/')
                return ag_err_set(err, -EINVAL, "hooks.%s: path must be absolute",
                                  hook_names[k]);
            if (has && (t <= 0 || t > 86400))
                return ag_err_set(err, -EINVAL, "hooks.%s: timeout must be > 0",
                                  hook_names[k]);
            h->timeout = (int)t;
        }
    }
    return 0;
}

/* ---- top level -------------------------------------------------------------------- */

static int parse_root(const cJSON *root, struct rt_spec *s, bool check_root, struct ag_err *err)
{
    const cJSON *r = cJSON_GetObjectItemCaseSensitive(root, "root");
    _cleanup_free_ char *path = NULL;
    struct stat st;
    if (!cJSON_IsObject(r))
        return ag_err_set(err, -EINVAL, "root: required object missing");
    if (rt__json_str(r, "path", true, &path, err) < 0 ||
        rt__json_bool(r, "readonly", &s->root_readonly, err) < 0)
        return ag_err_wrap(err, "root");
    if (join_bundle(s->bundle, path, &s->root_path) < 0)
        return ag_err_set(err, -ENOMEM, "out of memory");
    if (check_root && (stat(s->root_path, &st) < 0 || !S_ISDIR(st.st_mode)))
        return ag_err_set(err, -ENOENT, "root.path %.300s: not a directory", s->root_path);
    return 0;
}

static int parse_doc(const cJSON *root, struct rt_spec *s, bool check_root, struct ag_err *err)
{
    const cJSON *proc, *lx;
    if (!cJSON_IsObject(root))
        return ag_err_set(err, -EINVAL, "config.json: not a JSON object");
    if (rt__json_str(root, "ociVersion", true, &s->oci_version, err) < 0 ||
        rt__json_str(root, "hostname", false, &s->hostname, err) < 0 ||
        rt__json_str(root, "domainname", false, &s->domainname, err) < 0 ||
        rt__json_kv(root, "annotations", &s->annotations, &s->annotations_count, err) < 0)
        return err->code;
    if (strncmp(s->oci_version, "1.", 2))
        return ag_err_set(err, -EINVAL, "ociVersion %.32s: unsupported (want 1.x)",
                          s->oci_version);
    if (parse_root(root, s, check_root, err) < 0)
        return err->code;
    proc = cJSON_GetObjectItemCaseSensitive(root, "process");
    if (proc && !cJSON_IsNull(proc)) {
        s->process = calloc(1, sizeof(*s->process));
        if (!s->process)
            return ag_err_set(err, -ENOMEM, "out of memory");
        if (rt__process_parse_obj(proc, s->process, err) < 0)
            return err->code;
    }
    if (parse_mounts(root, s, err) < 0 || parse_hooks(root, s, err) < 0)
        return err->code;
    lx = cJSON_GetObjectItemCaseSensitive(root, "linux");
    if (lx && !cJSON_IsNull(lx) && rt__spec_linux_parse(lx, s, err) < 0)
        return ag_err_wrap(err, "linux");
    if (s->hostname && s->hostname[0] && !s->ns[RT_NS_UTS].enabled)
        return ag_err_set(err, -EINVAL, "hostname: needs a private uts namespace");
    return 0;
}

int rt_spec_parse(const char *json, size_t len, const char *bundle, bool check_root,
                  struct rt_spec **out, struct ag_err *err)
{
    struct rt_spec *s;
    cJSON *root;
    int rc;
    *out = NULL;
    if (len > RT_CONFIG_MAX)
        return ag_err_set(err, -EFBIG, "config.json: larger than %u bytes", RT_CONFIG_MAX);
    root = cJSON_ParseWithLength(json, len);
    if (!root)
        return ag_err_set(err, -EINVAL, "config.json: not valid JSON (near byte %zu)",
                          cJSON_GetErrorPtr() ? (size_t)(cJSON_GetErrorPtr() - json) : 0);
    s = calloc(1, sizeof(*s));
    if (!s || !(s->bundle = strdup(bundle))) {
        free(s);
        cJSON_Delete(root);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    rc = parse_doc(root, s, check_root, err);
    cJSON_Delete(root);
    if (rc < 0) {
        rt_spec_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

int rt_spec_load(const char *bundle, struct rt_spec **out, struct ag_err *err)
{
    char path[PATH_MAX], abs[PATH_MAX];
    _cleanup_free_ char *buf = NULL;
    size_t len = 0;
    int rc;
    *out = NULL;
    if (!realpath(bundle, abs))
        return ag_err_set(err, -errno, "bundle %.300s: %s", bundle, strerror(errno));
    if (ag_path_join(path, sizeof(path), abs, "config.json") < 0)
        return ag_err_set(err, -ENAMETOOLONG, "bundle path too long");
    rc = ag_file_read(path, RT_CONFIG_MAX, &buf, &len);
    if (rc < 0)
        return ag_err_set(err, rc, "read %.300s: %s", path, strerror(-rc));
    return rt_spec_parse(buf, len, abs, true, out, err);
}

void rt_spec_free(struct rt_spec *s)
{
    if (!s)
        return;
    free(s->oci_version);
    free(s->bundle);
    free(s->root_path);
    free(s->hostname);
    free(s->domainname);
    rt__kv_free(s->annotations, s->annotations_count);
    rt_process_free(s->process);
    for (size_t i = 0; i < s->mounts_count; i++) {
        free(s->mounts[i].destination);
        free(s->mounts[i].source);
        free(s->mounts[i].type);
        rt_mount_opts_fini(&s->mounts[i].opts);
    }
    free(s->mounts);
    for (int k = 0; k < RT_HOOK_COUNT; k++) {
        for (size_t i = 0; i < s->hooks_count[k]; i++) {
            free(s->hooks[k][i].path);
            rt__strv_free(s->hooks[k][i].args);
            rt__strv_free(s->hooks[k][i].env);
        }
        free(s->hooks[k]);
    }
    rt__spec_linux_free(s);
    free(s);
}
