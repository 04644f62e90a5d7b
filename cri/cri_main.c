/* cri/: main() of the one picocri binary and its subcommand table.  To add
 * a subcommand, write `int cmd_<name>(int argc, char **argv)` (argv[0] is
 * the subcommand name; return the exit status), declare it below and add
 * one line to subcommands[].
 *
 * `serve` is the daemon; `version` and `info` are clients of its socket.
 */
#include "cri.h"

#include <api.pb.h>
#include <cjson/cJSON.h>
#include <getopt.h>
#include <pb_decode.h>
#include <stdio.h>
#include <string.h>
#include <uv.h>

struct subcommand {
    const char *name;
    int (*run)(int argc, char **argv);
    const char *help;
};

static int cmd_serve(int argc, char **argv);
static int cmd_version(int argc, char **argv);
static int cmd_info(int argc, char **argv);
static int cmd_help(int argc, char **argv);
int rt_monitor_main(int argc, char **argv); /* agent/runtime/rt_monitor.c */
int rt_oci_main(int argc, char **argv);     /* agent/runtime/rt_oci_cli.c */
int rt_pause_main(int argc, char **argv);   /* agent/runtime/rt_pod.c */
int rt_svc_import_main(int argc, char **argv); /* agent/runtime/rt_svc_import.c */
int cri_services_start(struct cri_daemon *d, struct ag_err *err); /* cri/cri_cli.c */
void cri_services_stop(struct cri_daemon *d);                     /* cri/cri_cli.c */
int cri_cli_main(int argc, char **argv);                          /* cri/cri_cli.c */
int cri_cli_image_main(int argc, char **argv); /* cri/cri_cli_image.c */

static const struct subcommand subcommands[] = {
    {"serve", cmd_serve, "run the CRI daemon"},
    {"version", cmd_version, "print client and daemon versions"},
    {"info", cmd_info, "print the daemon's status conditions and configuration"},
    {"monitor", rt_monitor_main, "per-container monitor (started by the daemon)"},
    {"oci", rt_oci_main, "runc-compatible OCI runtime (create, start, run, exec, ...)"},
    {"pause", rt_pause_main, "pod infra process for a shared PID namespace (daemon-started)"},
    {"pods", cri_cli_main, "list pod sandboxes"},
    {"ps", cri_cli_main, "list containers (-a: also exited ones)"},
    {"logs", cri_cli_main, "print a container's log (-f: follow)"},
    {"exec", cri_cli_main, "run a command in a container (ExecSync)"},
    {"inspect", cri_cli_main, "print the verbose status of a pod or container"},
    {"stop", cri_cli_main, "stop a container or pod"},
    {"rm", cri_cli_main, "remove a container or pod"},
    {"run", cri_cli_main, "run a pod with one container: run [opts] IMAGE [CMD...]"},
    {"import", rt_svc_import_main, "import an OCI layout as an image (daemon stopped)"},
    {"pull", cri_cli_image_main, "pull an image, with per-layer progress"},
    {"images", cri_cli_image_main, "list images (-q: ids only)"},
    {"help", cmd_help, "list subcommands"},
};

#define CLIENT_TIMEOUT_MS 10000

/* ---- serve ---------------------------------------------------------------- */

static void serve_usage(FILE *f)
{
    fprintf(f,
            "usage: picocri serve [--config FILE] [--socket PATH] [--root DIR] [--state DIR]\n"
            "                     [--log-level LEVEL] [--cni-conf-dir DIR] [--cni-bin-dir DIRS]\n"
            "                     [--registries FILE] [--cgroup-driver cgroupfs|systemd]\n"
            "                     [--stream-address HOST:PORT (default 127.0.0.1:0)]\n");
}

static int serve_configure(struct ag_config *cfg, int argc, char **argv, struct ag_err *err)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"socket", required_argument, NULL, 0},
        {"root", required_argument, NULL, 0},
        {"state", required_argument, NULL, 0},
        {"log-level", required_argument, NULL, 0},
        {"cni-conf-dir", required_argument, NULL, 0},
        {"cni-bin-dir", required_argument, NULL, 0},
        {"registries", required_argument, NULL, 0},
        {"cgroup-driver", required_argument, NULL, 0},
        {"stream-address", required_argument, NULL, 0},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *keys[AG_ARRAY_LEN(opts)];
    const char *values[AG_ARRAY_LEN(opts)];
    const char *config = NULL;
    size_t n = 0;
    int idx, c;

    optind = 1;
    while ((c = getopt_long(argc, argv, "c:h", opts, &idx)) != -1) {
        if (c == 'c') {
            config = optarg;
        } else if (c == 'h') {
            serve_usage(stdout);
            exit(0);
        } else if (c == 0 && n < AG_ARRAY_LEN(keys)) {
            /* The last occurrence wins; earlier ones are applied first. */
            keys[n] = opts[idx].name;
            values[n++] = optarg;
        } else {
            serve_usage(stderr);
            return ag_err_set(err, -EINVAL, "bad arguments");
        }
    }
    if (optind < argc)
        return ag_err_set(err, -EINVAL, "unexpected argument %s", argv[optind]);
    /* The file first, then flags, so flags override it. */
    if (config != NULL && ag_config_load(cfg, config, err) < 0)
        return err->code;
    for (size_t i = 0; i < n; i++)
        if (ag_config_set(cfg, keys[i], values[i], err) < 0)
            return err->code;
    return 0;
}

static int cmd_serve(int argc, char **argv)
{
    struct ag_config cfg;
    struct ag_err err;
    struct cri_daemon d = {0};
    int rc;

    ag_err_init(&err);
    ag_config_init(&cfg);
    rc = serve_configure(&cfg, argc, argv, &err);
    if (rc < 0) {
        fprintf(stderr, "picocri serve: %s\n", err.msg);
        ag_config_fini(&cfg);
        return 2;
    }
    ag_log_set_level(cfg.log_level);
    if ((rc = ag_mkdir_p(cfg.root, 0700)) < 0 || (rc = ag_mkdir_p(cfg.state, 0711)) < 0) {
        ag_log(AG_ERROR, "create root=%s state=%s: %s", cfg.root, cfg.state, strerror(-rc));
        ag_config_fini(&cfg);
        return 1;
    }
    d.cfg = &cfg;
    d.loop = uv_default_loop();
    cri_daemon_init(&d);
    rc = cri_services_start(&d, &err);
    if (rc == 0)
        rc = cri_serve(&d, &err);
    if (rc < 0)
        ag_log(AG_ERROR, "serve: %s", err.msg);
    cri_services_stop(&d);
    uv_loop_close(d.loop);
    cri_daemon_fini(&d);
    ag_config_fini(&cfg);
    return rc < 0 ? 1 : 0;
}

/* ---- clients ---------------------------------------------------------------- */

/* Parses the common client flags (--socket PATH); returns the socket. */
static const char *client_socket(int argc, char **argv)
{
    const char *sock = cri_client_default_socket();

    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--socket") == 0 || strcmp(argv[i], "-s") == 0) && i + 1 < argc) {
            sock = argv[++i];
        } else if (strncmp(argv[i], "--socket=", 9) == 0) {
            sock = argv[i] + 9;
        } else {
            fprintf(stderr, "picocri %s: unknown argument %s (use --socket PATH)\n", argv[0],
                    argv[i]);
            return NULL;
        }
    }
    return sock;
}

static int cmd_version(int argc, char **argv)
{
    runtime_v1_VersionRequest req = {.version = (char *)"0.1.0"};
    runtime_v1_VersionResponse resp = runtime_v1_VersionResponse_init_zero;
    const char *sock = client_socket(argc, argv);
    struct ag_err err;

    if (sock == NULL)
        return 2;
    ag_err_init(&err);
    printf("Client: picocri %s\n", PICOCRI_VERSION);
    int rc = cri_client_call(sock, "/runtime.v1.RuntimeService/Version",
                             runtime_v1_VersionRequest_fields, &req,
                             runtime_v1_VersionResponse_fields, &resp, CLIENT_TIMEOUT_MS, &err);
    if (rc < 0) {
        fprintf(stderr, "picocri version: daemon at %s: %s\n", sock, err.msg);
        pb_release(runtime_v1_VersionResponse_fields, &resp);
        return 1;
    }
    printf("Server: %s %s (CRI %s, API version %s)\n", resp.runtime_name ? resp.runtime_name : "?",
           resp.runtime_version ? resp.runtime_version : "?",
           resp.runtime_api_version ? resp.runtime_api_version : "?",
           resp.version ? resp.version : "?");
    pb_release(runtime_v1_VersionResponse_fields, &resp);
    return 0;
}

static void print_info_value(const char *key, const char *value)
{
    cJSON *j = cJSON_Parse(value);
    char *pretty = j ? cJSON_Print(j) : NULL;

    printf("%s: %s\n", key, pretty ? pretty : value);
    free(pretty);
    cJSON_Delete(j);
}

static int cmd_info(int argc, char **argv)
{
    runtime_v1_StatusRequest req = {.verbose = true};
    runtime_v1_StatusResponse resp = runtime_v1_StatusResponse_init_zero;
    const char *sock = client_socket(argc, argv);
    struct ag_err err;

    if (sock == NULL)
        return 2;
    ag_err_init(&err);
    int rc =
        cri_client_call(sock, "/runtime.v1.RuntimeService/Status", runtime_v1_StatusRequest_fields,
                        &req, runtime_v1_StatusResponse_fields, &resp, CLIENT_TIMEOUT_MS, &err);
    if (rc < 0) {
        fprintf(stderr, "picocri info: daemon at %s: %s\n", sock, err.msg);
        pb_release(runtime_v1_StatusResponse_fields, &resp);
        return 1;
    }
    printf("Conditions:\n");
    for (pb_size_t i = 0; resp.status && i < resp.status->conditions_count; i++) {
        const runtime_v1_RuntimeCondition *c = &resp.status->conditions[i];
        printf("  %-14s %s", c->type ? c->type : "?", c->status ? "true" : "false");
        if (c->reason && c->reason[0])
            printf("  reason=%s", c->reason);
        if (c->message && c->message[0])
            printf("  message=\"%s\"", c->message);
        printf("\n");
    }
    for (pb_size_t i = 0; i < resp.runtime_handlers_count; i++) {
        const runtime_v1_RuntimeHandler *h = &resp.runtime_handlers[i];
        printf("Runtime handler: \"%s\"%s%s\n", h->name ? h->name : "",
               h->features && h->features->recursive_read_only_mounts ? " rro-mounts" : "",
               h->features && h->features->user_namespaces ? " user-namespaces" : "");
    }
    for (pb_size_t i = 0; i < resp.info_count; i++)
        print_info_value(resp.info[i].key ? resp.info[i].key : "?",
                         resp.info[i].value ? resp.info[i].value : "");
    pb_release(runtime_v1_StatusResponse_fields, &resp);
    return 0;
}

/* ---- main ------------------------------------------------------------------- */

static void usage(FILE *f)
{
    fprintf(f,
            "picocri %s: a small Kubernetes CRI runtime\n\nusage: picocri <subcommand> "
            "[options]\n\nsubcommands:\n",
            PICOCRI_VERSION);
    for (size_t i = 0; i < AG_ARRAY_LEN(subcommands); i++)
        fprintf(f, "  %-10s %s\n", subcommands[i].name, subcommands[i].help);
    fprintf(f, "\nclient subcommands take --socket PATH (default $PICOCRI_SOCKET or "
               "/run/picocri/picocri.sock)\n");
}

static int cmd_help(int argc, char **argv)
{
    usage(stdout);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)
        return cmd_help(argc - 1, argv + 1);
    if (strcmp(argv[1], "--version") == 0) {
        printf("picocri %s\n", PICOCRI_VERSION);
        return 0;
    }
    for (size_t i = 0; i < AG_ARRAY_LEN(subcommands); i++)
        if (strcmp(argv[1], subcommands[i].name) == 0)
            return subcommands[i].run(argc - 1, argv + 1);
    fprintf(stderr, "picocri: unknown subcommand %s\n\n", argv[1]);
    usage(stderr);
    return 2;
}
