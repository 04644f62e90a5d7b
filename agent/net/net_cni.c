/* agent/net: CNI configuration lists, plugin stdin and plugin results.
 * Sans-I/O except net_cni_conf_load_dir(), which reads a few small files.
 * Invariant: a struct net_cni_conf that parsed has a valid name, a version
 * and a non-empty plugins array whose entries all have a string "type". */
#include "net.h"

#include <dirent.h>
#include <stdio.h>
#include <string.h>

static bool valid_name(const char *s)
{
    if (s == NULL || !((s[0] >= 'a' && s[0] <= 'z') || (s[0] >= 'A' && s[0] <= 'Z') ||
                       (s[0] >= '0' && s[0] <= '9')))
        return false;
    for (const char *p = s; *p; p++) {
        char c = *p;
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
              c == '_' || c == '.' || c == '-'))
            return false;
    }
    return strlen(s) <= 253;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

void net_cni_conf_free(struct net_cni_conf *conf)
{
    if (conf == NULL)
        return;
    free(conf->file);
    free(conf->name);
    free(conf->cni_version);
    cJSON_Delete(conf->plugins);
    free(conf);
}

/* The highest of cniVersions we know, else cniVersion. */
static const char *pick_version(const cJSON *root)
{
    static const char *const known[] = {"1.1.0", "1.0.0", "0.4.0", "0.3.1", "0.3.0"};
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(root, "cniVersions");

    if (cJSON_IsArray(list)) {
        for (size_t k = 0; k < AG_ARRAY_LEN(known); k++) {
            const cJSON *v;
            cJSON_ArrayForEach(v, list)
            {
                if (cJSON_IsString(v) && strcmp(v->valuestring, known[k]) == 0)
                    return known[k];
            }
        }
    }
    const cJSON *v = cJSON_GetObjectItemCaseSensitive(root, "cniVersion");
    return cJSON_IsString(v) ? v->valuestring : NULL;
}

static int check_plugins(const cJSON *plugins, struct ag_err *err)
{
    const cJSON *p;
    int n = 0;

    if (!cJSON_IsArray(plugins) || cJSON_GetArraySize(plugins) == 0)
        return ag_err_set(err, -EINVAL, "no plugins");
    cJSON_ArrayForEach(p, plugins)
    {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(p, "type");
        if (!cJSON_IsObject(p) || !cJSON_IsString(type) || !valid_name(type->valuestring))
            return ag_err_set(err, -EINVAL, "plugin %d has no valid \"type\"", n);
        n++;
    }
    return 0;
}

int net_cni_conf_parse(const char *data, size_t len, const char *filename,
                       struct net_cni_conf **out, struct ag_err *err)
{
    cJSON *root = cJSON_ParseWithLength(data, len);
    struct net_cni_conf *conf = NULL;
    int rc = -EINVAL;

    if (root == NULL || !cJSON_IsObject(root)) {
        rc = ag_err_set(err, -EINVAL, "%s: not a JSON object", filename);
        goto out;
    }
    const cJSON *name = cJSON_GetObjectItemCaseSensitive(root, "name");
    const char *version = pick_version(root);
    if (!cJSON_IsString(name) || !valid_name(name->valuestring)) {
        rc = ag_err_set(err, -EINVAL, "%s: missing or invalid \"name\"", filename);
        goto out;
    }
    if (version == NULL) {
        rc = ag_err_set(err, -EINVAL, "%s: missing \"cniVersion\"", filename);
        goto out;
    }
    conf = calloc(1, sizeof(*conf));
    if (conf == NULL || (conf->file = strdup(filename)) == NULL ||
        (conf->name = strdup(name->valuestring)) == NULL ||
        (conf->cni_version = strdup(version)) == NULL) {
        rc = ag_err_set(err, -ENOMEM, "%s", filename);
        goto out;
    }
    conf->disable_check = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "disableCheck"));
    if (cJSON_HasObjectItem(root, "plugins")) {
        conf->plugins = cJSON_DetachItemFromObjectCaseSensitive(root, "plugins");
    } else if (!ends_with(filename, ".conflist")) {
        /* A legacy single-plugin .conf: the whole object is the plugin. */
        conf->plugins = cJSON_CreateArray();
        if (conf->plugins == NULL || !cJSON_AddItemToArray(conf->plugins, root)) {
            rc = ag_err_set(err, -ENOMEM, "%s", filename);
            goto out;
        }
        root = NULL;
    }
    rc = check_plugins(conf->plugins, err);
    if (rc < 0) {
        ag_err_wrap(err, "%s", filename);
        goto out;
    }
    *out = steal_ptr(&conf);
    rc = 0;
out:
    cJSON_Delete(root);
    net_cni_conf_free(conf);
    return rc;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Sorted configuration file names of dir (at most max). */
static size_t list_conf_files(DIR *d, char **names, size_t max)
{
    struct dirent *de;
    size_t n = 0;

    while (n < max && (de = readdir(d)) != NULL) {
        if (de->d_name[0] == '.' ||
            !(ends_with(de->d_name, ".conf") || ends_with(de->d_name, ".conflist") ||
              ends_with(de->d_name, ".json")))
            continue;
        names[n] = strdup(de->d_name);
        if (names[n] != NULL)
            n++;
    }
    qsort(names, n, sizeof(*names), compare_names);
    return n;
}

int net_cni_conf_load_dir(const char *dir, struct net_cni_conf **out, struct ag_err *err)
{
    char *names[64];
    DIR *d = opendir(dir);
    int rc;

    if (d == NULL)
        return ag_err_set(err, -ENOENT, "no CNI configuration: %s: %s", dir, strerror(errno));
    size_t n = list_conf_files(d, names, AG_ARRAY_LEN(names));
    closedir(d);
    rc = ag_err_set(err, -ENOENT, "no CNI configuration found in %s", dir);
    for (size_t i = 0; i < n; i++) {
        char path[4096];
        _cleanup_free_ char *data = NULL;
        size_t len = 0;
        struct ag_err one;

        ag_err_init(&one);
        if (rc < 0 && ag_path_join(path, sizeof(path), dir, names[i]) == 0 &&
            ag_file_read(path, NET_CNI_MAX_CONF, &data, &len) == 0) {
            if (net_cni_conf_parse(data, len, path, out, &one) == 0)
                rc = 0;
            else
                ag_err_set(err, one.code, "no valid CNI configuration in %s (last: %s)", dir,
                           one.msg);
        }
        free(names[i]);
    }
    if (rc == 0)
        ag_err_init(err); /* the "none found" default no longer applies */
    return rc;
}

int net_cni_args_format(const struct net_attach *att, char *out, size_t out_len)
{
    int n = snprintf(out, out_len,
                     "IgnoreUnknown=1;K8S_POD_NAMESPACE=%s;K8S_POD_NAME=%s;"
                     "K8S_POD_INFRA_CONTAINER_ID=%s;K8S_POD_UID=%s",
                     att->pod_namespace ? att->pod_namespace : "",
                     att->pod_name ? att->pod_name : "", att->container_id,
                     att->pod_uid ? att->pod_uid : "");
    return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : 0;
}

static cJSON *port_mappings_json(const struct net_attach *att)
{
    cJSON *arr = cJSON_CreateArray();

    for (size_t i = 0; arr != NULL && i < att->port_count; i++) {
        const struct net_port_mapping *pm = &att->ports[i];
        cJSON *o = cJSON_CreateObject();
        if (o == NULL || !cJSON_AddItemToArray(arr, o)) {
            cJSON_Delete(o);
            cJSON_Delete(arr);
            return NULL;
        }
        cJSON_AddNumberToObject(o, "hostPort", pm->host_port);
        cJSON_AddNumberToObject(o, "containerPort", pm->container_port);
        cJSON_AddStringToObject(o, "protocol", pm->protocol ? pm->protocol : "tcp");
        if (pm->host_ip != NULL && pm->host_ip[0] != '\0')
            cJSON_AddStringToObject(o, "hostIP", pm->host_ip);
    }
    return arr;
}

/* runtimeConfig: the declared capabilities we have values for. */
static int add_runtime_config(cJSON *plugin, const struct net_attach *att)
{
    cJSON *caps = cJSON_DetachItemFromObjectCaseSensitive(plugin, "capabilities");
    int rc = 0;

    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(caps, "portMappings")) &&
        att->port_count > 0) {
        cJSON *rt = cJSON_CreateObject();
        cJSON *pm = port_mappings_json(att);
        if (rt == NULL || pm == NULL || !cJSON_AddItemToObject(rt, "portMappings", pm)) {
            cJSON_Delete(pm);
            cJSON_Delete(rt);
            rc = -ENOMEM;
        } else {
            cJSON_DeleteItemFromObjectCaseSensitive(plugin, "runtimeConfig");
            cJSON_AddItemToObject(plugin, "runtimeConfig", rt);
        }
    }
    cJSON_Delete(caps);
    return rc;
}

int net_cni_plugin_stdin(const struct net_cni_conf *conf, size_t index, const char *command,
                         const struct net_attach *att, const cJSON *prev_result, char **out,
                         struct ag_err *err)
{
    const cJSON *src = cJSON_GetArrayItem(conf->plugins, (int)index);
    cJSON *p = src ? cJSON_Duplicate(src, true) : NULL;
    int rc = -ENOMEM;

    if (src == NULL)
        return ag_err_set(err, -EINVAL, "plugin %zu out of range", index);
    if (p == NULL)
        return ag_err_set(err, -ENOMEM, "plugin stdin");
    cJSON_DeleteItemFromObjectCaseSensitive(p, "cniVersion");
    cJSON_DeleteItemFromObjectCaseSensitive(p, "name");
    cJSON_DeleteItemFromObjectCaseSensitive(p, "prevResult");
    if (cJSON_AddStringToObject(p, "cniVersion", conf->cni_version) == NULL ||
        cJSON_AddStringToObject(p, "name", conf->name) == NULL)
        goto fail;
    if (strcmp(command, "VERSION") != 0 && add_runtime_config(p, att) < 0)
        goto fail;
    if (prev_result != NULL) {
        cJSON *copy = cJSON_Duplicate(prev_result, true);
        if (copy == NULL || !cJSON_AddItemToObject(p, "prevResult", copy)) {
            cJSON_Delete(copy);
            goto fail;
        }
    }
    *out = cJSON_PrintUnformatted(p);
    if (*out == NULL)
        goto fail;
    rc = 0;
fail:
    cJSON_Delete(p);
    return rc < 0 ? ag_err_set(err, rc, "plugin stdin") : 0;
}

/* 0.2.0 results carry ip4/ip6 objects: turn them into ips[] (interface
 * unknown, so they count for any interface). */
static void convert_legacy_ips(cJSON *res)
{
    static const char *const keys[] = {"ip4", "ip6"};
    cJSON *ips = NULL;

    if (cJSON_HasObjectItem(res, "ips"))
        return;
    for (size_t i = 0; i < AG_ARRAY_LEN(keys); i++) {
        const cJSON *o = cJSON_GetObjectItemCaseSensitive(res, keys[i]);
        const cJSON *ip = cJSON_GetObjectItemCaseSensitive(o, "ip");
        if (!cJSON_IsString(ip))
            continue;
        if (ips == NULL && (ips = cJSON_AddArrayToObject(res, "ips")) == NULL)
            return;
        cJSON *e = cJSON_CreateObject();
        if (e == NULL || !cJSON_AddItemToArray(ips, e)) {
            cJSON_Delete(e);
            return;
        }
        cJSON_AddStringToObject(e, "address", ip->valuestring);
        const cJSON *gw = cJSON_GetObjectItemCaseSensitive(o, "gateway");
        if (cJSON_IsString(gw))
            cJSON_AddStringToObject(e, "gateway", gw->valuestring);
    }
}

int net_cni_result_parse(const char *data, size_t len, int status, const char *plugin,
                         cJSON **out, struct ag_err *err)
{
    cJSON *res = len > 0 ? cJSON_ParseWithLength(data, len) : NULL;

    if (status != 0) {
        const cJSON *code = cJSON_GetObjectItemCaseSensitive(res, "code");
        const cJSON *msg = cJSON_GetObjectItemCaseSensitive(res, "msg");
        const cJSON *details = cJSON_GetObjectItemCaseSensitive(res, "details");
        char m[256];
        ag_str_escape(m, sizeof(m), cJSON_IsString(msg) ? msg->valuestring : "no error message",
                      200);
        ag_err_set(err, -EIO, "CNI plugin %s failed (exit %d, code %d): %s%s%.200s", plugin,
                   status, cJSON_IsNumber(code) ? code->valueint : 0, m,
                   cJSON_IsString(details) ? ": " : "",
                   cJSON_IsString(details) ? details->valuestring : "");
        cJSON_Delete(res);
        return err->code;
    }
    if (res == NULL || !cJSON_IsObject(res)) {
        cJSON_Delete(res);
        return ag_err_set(err, -EPROTO, "CNI plugin %s: result is not a JSON object", plugin);
    }
    convert_legacy_ips(res);
    *out = res;
    return 0;
}

/* Index of the interface named ifname that lives in a sandbox, or -1. */
static int sandbox_iface(const cJSON *result, const char *ifname)
{
    const cJSON *ifs = cJSON_GetObjectItemCaseSensitive(result, "interfaces");
    const cJSON *it;
    int i = 0;

    cJSON_ArrayForEach(it, ifs)
    {
        const cJSON *name = cJSON_GetObjectItemCaseSensitive(it, "name");
        if (cJSON_IsString(name) && strcmp(name->valuestring, ifname) == 0)
            return i;
        i++;
    }
    return -1;
}

size_t net_cni_result_ips(const cJSON *result, const char *ifname, char (*ips)[64], size_t max)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(result, "ips");
    const cJSON *ip;
    int want = sandbox_iface(result, ifname);
    size_t n = 0;

    cJSON_ArrayForEach(ip, list)
    {
        const cJSON *addr = cJSON_GetObjectItemCaseSensitive(ip, "address");
        const cJSON *iface = cJSON_GetObjectItemCaseSensitive(ip, "interface");
        if (n >= max || !cJSON_IsString(addr))
            continue;
        /* An address bound to another interface is not the pod's. */
        if (want >= 0 && cJSON_IsNumber(iface) && iface->valueint != want)
            continue;
        snprintf(ips[n], sizeof(ips[n]), "%s", addr->valuestring);
        char *slash = strchr(ips[n], '/');
        if (slash != NULL)
            *slash = '\0';
        if (ips[n][0] != '\0')
            n++;
    }
    return n;
}
