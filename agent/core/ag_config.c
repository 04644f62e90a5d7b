/* agent/core: the daemon configuration.  Defaults first, then a YAML file
 * (a flat mapping of settings), then command-line flags, all through
 * ag_config_set() so a key means the same in the file and as a --flag. */
#include "ag_core.h"

#include <stdio.h>
#include <string.h>
#include <yaml.h>

struct setting {
    const char *key;
    size_t offset; /* of a char * in struct ag_config */
};

static const struct setting settings[] = {
    {"socket", offsetof(struct ag_config, socket)},
    {"root", offsetof(struct ag_config, root)},
    {"state", offsetof(struct ag_config, state)},
    {"cni-conf-dir", offsetof(struct ag_config, cni_conf_dir)},
    {"cni-bin-dir", offsetof(struct ag_config, cni_bin_dirs)},
    {"registries", offsetof(struct ag_config, registries)},
    {"cgroup-driver", offsetof(struct ag_config, cgroup_driver)},
    {"stream-address", offsetof(struct ag_config, stream_address)},
};

static char **slot(struct ag_config *cfg, const struct setting *s)
{
    return (char **)((char *)cfg + s->offset);
}

void ag_config_init(struct ag_config *cfg)
{
    memset(cfg, 0, sizeof(*cfg));
    cfg->socket = ag_xstrdup("/run/picocri/picocri.sock");
    cfg->root = ag_xstrdup("/var/lib/picocri");
    cfg->state = ag_xstrdup("/run/picocri");
    cfg->cni_conf_dir = ag_xstrdup("/etc/cni/net.d");
    cfg->cni_bin_dirs = ag_xstrdup("/opt/cni/bin:/var/lib/rancher/k3s/data/current/bin:"
                                   "/usr/lib/cni");
    /* Loopback with a random port: kubelet's default proxy mode reaches it. */
    cfg->stream_address = ag_xstrdup("127.0.0.1:0");
    cfg->log_level = AG_INFO;
}

void ag_config_fini(struct ag_config *cfg)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(settings); i++) {
        free(*slot(cfg, &settings[i]));
        *slot(cfg, &settings[i]) = NULL;
    }
}

int ag_config_set(struct ag_config *cfg, const char *key, const char *value, struct ag_err *err)
{
    if (strcmp(key, "log-level") == 0) {
        if (ag_log_level_parse(value, &cfg->log_level) < 0)
            return ag_err_set(err, -EINVAL,
                              "log-level %s: use error, warn, info, debug or trace", value);
        return 0;
    }
    for (size_t i = 0; i < AG_ARRAY_LEN(settings); i++) {
        if (strcmp(key, settings[i].key) != 0)
            continue;
        if (strcmp(key, "cgroup-driver") == 0 && strcmp(value, "cgroupfs") != 0 &&
            strcmp(value, "systemd") != 0)
            return ag_err_set(err, -EINVAL, "cgroup-driver %s: use cgroupfs or systemd", value);
        char *copy = strdup(value);
        if (copy == NULL)
            return ag_err_set(err, -ENOMEM, "config %s", key);
        free(*slot(cfg, &settings[i]));
        *slot(cfg, &settings[i]) = copy;
        return 0;
    }
    return ag_err_set(err, -EINVAL, "unknown setting %s", key);
}

/* Reads scalar "key: value" pairs of the top-level mapping.  Nested
 * structures are refused: every setting is a scalar. */
static int load_events(struct ag_config *cfg, yaml_parser_t *parser, struct ag_err *err)
{
    char key[64] = "";
    int depth = 0;

    for (int guard = 0; guard < 100000; guard++) {
        yaml_event_t ev;
        if (!yaml_parser_parse(parser, &ev))
            return ag_err_set(err, -EINVAL, "line %zu: %s", parser->problem_mark.line + 1,
                              parser->problem ? parser->problem : "syntax error");
        int rc = 0;
        switch (ev.type) {
        case YAML_STREAM_END_EVENT:
            yaml_event_delete(&ev);
            return 0;
        case YAML_MAPPING_START_EVENT:
            if (++depth > 1)
                rc = ag_err_set(err, -EINVAL, "line %zu: settings are plain values",
                                ev.start_mark.line + 1);
            break;
        case YAML_MAPPING_END_EVENT:
            depth--;
            break;
        case YAML_SEQUENCE_START_EVENT:
            rc = ag_err_set(err, -EINVAL, "line %zu: settings are plain values",
                            ev.start_mark.line + 1);
            break;
        case YAML_SCALAR_EVENT:
            if (key[0] == '\0') {
                snprintf(key, sizeof(key), "%s", (const char *)ev.data.scalar.value);
            } else {
                rc = ag_config_set(cfg, key, (const char *)ev.data.scalar.value, err);
                key[0] = '\0';
            }
            break;
        default:
            break;
        }
        yaml_event_delete(&ev);
        if (rc < 0)
            return rc;
    }
    return ag_err_set(err, -E2BIG, "too many YAML events");
}

int ag_config_load(struct ag_config *cfg, const char *path, struct ag_err *err)
{
    yaml_parser_t parser;
    FILE *f = fopen(path, "re");
    int rc;

    if (f == NULL)
        return ag_err_set(err, -errno, "config %s: %s", path, strerror(errno));
    yaml_parser_initialize(&parser);
    yaml_parser_set_input_file(&parser, f);
    rc = load_events(cfg, &parser, err);
    yaml_parser_delete(&parser);
    fclose(f);
    if (rc < 0)
        ag_err_wrap(err, "config %s", path);
    return rc;
}
