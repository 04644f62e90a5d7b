/* cri/: the runtime services' start/stop in `picocri serve`, and the
 * client subcommands a person uses on the device: pods, ps, logs, exec,
 * inspect, stop, rm, run.  Clients speak CRI to the daemon's socket with
 * cri_client_call (blocking, bounded by a timeout) and never touch the
 * daemon's files except the container log file named by ContainerStatus.
 */
#include "cri.h"

#include <api.pb.h>
#include <cjson/cJSON.h>
#include <getopt.h>
#include <pb_decode.h>
#include <poll.h>
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "runtime/rt_svc.h"
#include "store/store.h"

#define RPC(name) "/runtime.v1.RuntimeService/" #name
#define SHORT_MS 10000
#define LONG_MS 180000
#define SHUTDOWN_ROUNDS 1000 /* x 10 ms */

int cri_services_start(struct cri_daemon *d, struct ag_err *err);
void cri_services_stop(struct cri_daemon *d);
int cri_stream_start(struct cri_daemon *d, struct ag_err *err); /* cri_stream.c */
void cri_stream_stop(struct cri_daemon *d);
int cri_cli_main(int argc, char **argv);

/* ---- daemon side ------------------------------------------------------------------ */

int cri_services_start(struct cri_daemon *d, struct ag_err *err)
{
    int rc;

    if (d->store == NULL && (rc = st_store_open(d->cfg->root, d->loop, &d->store, err)) < 0)
        return ag_err_wrap(err, "open the store");
    struct rt_svc_opts o = {
        .loop = d->loop,
        .store = d->store,
        .cfg = d->cfg,
        .cgroup_driver = d->cgroup_driver,
    };
    if ((rc = rt_svc_new(&o, &d->rt, err)) < 0)
        return ag_err_wrap(err, "start the runtime service");
    if ((rc = cri_stream_start(d, err)) < 0)
        return ag_err_wrap(err, "start the streaming server");
    return 0;
}

void cri_services_stop(struct cri_daemon *d)
{
    int i;

    cri_stream_stop(d);
    /* Let operations and record writes in flight finish, bounded. */
    for (i = 0; i < SHUTDOWN_ROUNDS && d->rt != NULL && rt_svc_busy(d->rt) > 0; i++) {
        uv_run(d->loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    if (d->rt != NULL && rt_svc_busy(d->rt) == 0) {
        rt_svc_free(d->rt); /* monitors keep running the containers */
        d->rt = NULL;
    } else if (d->rt != NULL) {
        ag_log(AG_WARN, "runtime service still busy at exit; not freed");
    }
    for (i = 0; i < SHUTDOWN_ROUNDS && d->store != NULL && st_store_pending(d->store) > 0; i++) {
        uv_run(d->loop, UV_RUN_NOWAIT);
        usleep(10000);
    }
    uv_run(d->loop, UV_RUN_NOWAIT);
    if (d->store != NULL && st_store_pending(d->store) == 0 && d->rt == NULL) {
        st_store_close(d->store);
        d->store = NULL;
    }
}

/* ---- client helpers ----------------------------------------------------------------- */

struct cli {
    const char *sock;
    const char *cmd;
    struct ag_err err;
};

static int call(struct cli *c, const char *path, const pb_msgdesc_t *qf, const void *q,
                const pb_msgdesc_t *rf, void *r, int timeout_ms)
{
    ag_err_init(&c->err);
    int rc = cri_client_call(c->sock, path, qf, q, rf, r, timeout_ms, &c->err);
    if (rc < 0 && rc != -ENOENT)
        fprintf(stderr, "picocri %s: %s\n", c->cmd, c->err.msg);
    return rc;
}

static void fmt_age(int64_t ns, char *out, size_t len)
{
    int64_t s = (ag_now_ns() - ns) / 1000000000LL;

    if (ns <= 0)
        snprintf(out, len, "-");
    else if (s < 120)
        snprintf(out, len, "%llds ago", (long long)s);
    else if (s < 7200)
        snprintf(out, len, "%lldm ago", (long long)(s / 60));
    else
        snprintf(out, len, "%lldh ago", (long long)(s / 3600));
}

static const char *ctr_state_name(runtime_v1_ContainerState s)
{
    static const char *const n[] = {"Created", "Running", "Exited", "Unknown"};
    return (unsigned)s < 4 ? n[s] : "?";
}

/* ---- pods, ps ------------------------------------------------------------------------ */

static int cmd_pods(struct cli *c, int argc, char **argv)
{
    runtime_v1_ListPodSandboxRequest q = {0};
    runtime_v1_ListPodSandboxResponse r = runtime_v1_ListPodSandboxResponse_init_zero;
    char age[32];

    (void)argc;
    (void)argv;
    if (call(c, RPC(ListPodSandbox), runtime_v1_ListPodSandboxRequest_fields, &q,
             runtime_v1_ListPodSandboxResponse_fields, &r, SHORT_MS) < 0)
        return 1;
    printf("%-13s %-12s %-9s %-30s %-20s %s\n", "POD ID", "CREATED", "STATE", "NAME", "NAMESPACE",
           "ATTEMPT");
    for (pb_size_t i = 0; i < r.items_count; i++) {
        const runtime_v1_PodSandbox *p = &r.items[i];
        const runtime_v1_PodSandboxMetadata *m = p->metadata;
        fmt_age(p->created_at, age, sizeof(age));
        printf("%-13.13s %-12s %-9s %-30s %-20s %u\n", p->id ? p->id : "", age,
               p->state == runtime_v1_PodSandboxState_SANDBOX_READY ? "Ready" : "NotReady",
               m && m->name ? m->name : "", m && m->namespace ? m->namespace : "",
               m ? m->attempt : 0);
    }
    pb_release(runtime_v1_ListPodSandboxResponse_fields, &r);
    return 0;
}

static int cmd_ps(struct cli *c, int argc, char **argv)
{
    runtime_v1_ContainerStateValue running = {.state = runtime_v1_ContainerState_CONTAINER_RUNNING};
    runtime_v1_ContainerFilter f = {.state = &running};
    runtime_v1_ListContainersRequest q = {.filter = &f};
    runtime_v1_ListContainersResponse r = runtime_v1_ListContainersResponse_init_zero;
    char age[32];

    for (int i = 1; i < argc; i++)
        if (strcmp(argv[i], "-a") == 0 || strcmp(argv[i], "--all") == 0)
            q.filter = NULL;
    if (call(c, RPC(ListContainers), runtime_v1_ListContainersRequest_fields, &q,
             runtime_v1_ListContainersResponse_fields, &r, SHORT_MS) < 0)
        return 1;
    printf("%-13s %-30s %-12s %-8s %-20s %-7s %s\n", "CONTAINER", "IMAGE", "CREATED", "STATE",
           "NAME", "ATTEMPT", "POD ID");
    for (pb_size_t i = 0; i < r.containers_count; i++) {
        const runtime_v1_Container *k = &r.containers[i];
        fmt_age(k->created_at, age, sizeof(age));
        printf("%-13.13s %-30.30s %-12s %-8s %-20s %-7u %.13s\n", k->id ? k->id : "",
               k->image && k->image->image ? k->image->image : "", age, ctr_state_name(k->state),
               k->metadata && k->metadata->name ? k->metadata->name : "",
               k->metadata ? k->metadata->attempt : 0, k->pod_sandbox_id ? k->pod_sandbox_id : "");
    }
    pb_release(runtime_v1_ListContainersResponse_fields, &r);
    return 0;
}

/* ---- status lookups -------------------------------------------------------------------- */

static int ctr_status(struct cli *c, const char *id, bool verbose,
                      runtime_v1_ContainerStatusResponse *r)
{
    runtime_v1_ContainerStatusRequest q = {.container_id = (char *)id, .verbose = verbose};

    memset(r, 0, sizeof(*r));
    return call(c, RPC(ContainerStatus), runtime_v1_ContainerStatusRequest_fields, &q,
                runtime_v1_ContainerStatusResponse_fields, r, SHORT_MS);
}

static int pod_status(struct cli *c, const char *id, bool verbose,
                      runtime_v1_PodSandboxStatusResponse *r)
{
    runtime_v1_PodSandboxStatusRequest q = {.pod_sandbox_id = (char *)id, .verbose = verbose};

    memset(r, 0, sizeof(*r));
    return call(c, RPC(PodSandboxStatus), runtime_v1_PodSandboxStatusRequest_fields, &q,
                runtime_v1_PodSandboxStatusResponse_fields, r, SHORT_MS);
}

static void print_info(const char *key, const char *value)
{
    cJSON *j = cJSON_Parse(value ? value : "");
    char *s = j ? cJSON_Print(j) : NULL;

    printf("%s: %s\n", key ? key : "info", s ? s : value ? value : "");
    free(s);
    cJSON_Delete(j);
}

static int cmd_inspect(struct cli *c, int argc, char **argv)
{
    runtime_v1_ContainerStatusResponse cr;
    runtime_v1_PodSandboxStatusResponse pr;
    int rc;

    if (argc != 2) {
        fprintf(stderr, "usage: picocri inspect ID\n");
        return 2;
    }
    if ((rc = ctr_status(c, argv[1], true, &cr)) == 0) {
        const runtime_v1_ContainerStatus *s = cr.status;
        printf("container %s\nstate: %s\nexit_code: %d\nreason: %s\nmessage: %s\nimage: %s\n"
               "image_ref: %s\nlog_path: %s\n",
               s && s->id ? s->id : "", s ? ctr_state_name(s->state) : "?", s ? s->exit_code : 0,
               s && s->reason ? s->reason : "", s && s->message ? s->message : "",
               s && s->image && s->image->image ? s->image->image : "",
               s && s->image_ref ? s->image_ref : "", s && s->log_path ? s->log_path : "");
        for (pb_size_t i = 0; i < cr.info_count; i++)
            print_info(cr.info[i].key, cr.info[i].value);
        pb_release(runtime_v1_ContainerStatusResponse_fields, &cr);
        return 0;
    }
    pb_release(runtime_v1_ContainerStatusResponse_fields, &cr);
    if (rc != -ENOENT)
        return 1;
    if ((rc = pod_status(c, argv[1], true, &pr)) == 0) {
        const runtime_v1_PodSandboxStatus *s = pr.status;
        printf("pod %s\nstate: %s\nip: %s\n", s && s->id ? s->id : "",
               s && s->state == runtime_v1_PodSandboxState_SANDBOX_READY ? "Ready" : "NotReady",
               s && s->network && s->network->ip ? s->network->ip : "");
        for (pb_size_t i = 0; i < pr.info_count; i++)
            print_info(pr.info[i].key, pr.info[i].value);
    } else if (rc == -ENOENT) {
        fprintf(stderr, "picocri inspect: no container or pod %s\n", argv[1]);
    }
    pb_release(runtime_v1_PodSandboxStatusResponse_fields, &pr);
    return rc == 0 ? 0 : 1;
}

/* ---- stop, rm ------------------------------------------------------------------------------ */

static int stop_or_rm(struct cli *c, int argc, char **argv, bool rm)
{
    runtime_v1_ContainerStatusResponse cr;
    runtime_v1_PodSandboxStatusResponse pr = runtime_v1_PodSandboxStatusResponse_init_zero;
    runtime_v1_StopPodSandboxResponse empty = {0};
    int64_t timeout = 10;
    const char *id = NULL;
    int rc;

    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "-t") == 0 || strcmp(argv[i], "--timeout") == 0) && i + 1 < argc)
            timeout = atoll(argv[++i]);
        else
            id = argv[i];
    }
    if (id == NULL) {
        fprintf(stderr, "usage: picocri %s [-t SECONDS] ID\n", rm ? "rm" : "stop");
        return 2;
    }
    rc = ctr_status(c, id, false, &cr);
    char full[ST_ID_HEX_LEN + 1];
    snprintf(full, sizeof(full), "%s", rc == 0 && cr.status && cr.status->id ? cr.status->id : id);
    pb_release(runtime_v1_ContainerStatusResponse_fields, &cr);
    if (rc == 0) {
        runtime_v1_StopContainerRequest sq = {.container_id = full, .timeout = timeout};
        runtime_v1_RemoveContainerRequest rq = {.container_id = full};
        rc = rm ? call(c, RPC(RemoveContainer), runtime_v1_RemoveContainerRequest_fields, &rq,
                       runtime_v1_RemoveContainerResponse_fields, &empty, LONG_MS)
                : call(c, RPC(StopContainer), runtime_v1_StopContainerRequest_fields, &sq,
                       runtime_v1_StopContainerResponse_fields, &empty, LONG_MS);
    } else if (rc == -ENOENT && (rc = pod_status(c, id, false, &pr)) == 0) {
        snprintf(full, sizeof(full), "%s", pr.status && pr.status->id ? pr.status->id : id);
        runtime_v1_StopPodSandboxRequest q = {.pod_sandbox_id = full};
        rc = call(c, rm ? RPC(RemovePodSandbox) : RPC(StopPodSandbox),
                  runtime_v1_StopPodSandboxRequest_fields, &q,
                  runtime_v1_StopPodSandboxResponse_fields, &empty, LONG_MS);
    }
    if (rc == -ENOENT)
        fprintf(stderr, "picocri %s: no container or pod %s\n", c->cmd, id);
    pb_release(runtime_v1_PodSandboxStatusResponse_fields, &pr);
    if (rc == 0)
        printf("%s\n", full);
    return rc == 0 ? 0 : 1;
}

/* ---- exec ----------------------------------------------------------------------------------- */

/* ExecSync output arrives through callbacks (it may exceed what a nanopb
 * pointer field holds): copy it straight to our own stdout/stderr. */
static bool decode_to_file(pb_istream_t *stream, const pb_field_t *field, void **arg)
{
    uint8_t buf[4096];

    (void)field;
    while (stream->bytes_left > 0) {
        size_t n = stream->bytes_left < sizeof(buf) ? stream->bytes_left : sizeof(buf);
        if (!pb_read(stream, buf, n))
            return false;
        fwrite(buf, 1, n, (FILE *)*arg);
    }
    return true;
}

static int cmd_exec(struct cli *c, int argc, char **argv)
{
    runtime_v1_ExecSyncRequest q = {0};
    runtime_v1_ExecSyncResponse r = runtime_v1_ExecSyncResponse_init_zero;
    int i = 1;

    r.stdout.funcs.decode = decode_to_file;
    r.stdout.arg = stdout;
    r.stderr.funcs.decode = decode_to_file;
    r.stderr.arg = stderr;

    if (i + 1 < argc && (strcmp(argv[i], "-t") == 0 || strcmp(argv[i], "--timeout") == 0)) {
        q.timeout = atoll(argv[i + 1]);
        i += 2;
    }
    if (argc - i < 2) {
        fprintf(stderr, "usage: picocri exec [-t SECONDS] CONTAINER CMD [ARG...]\n");
        return 2;
    }
    q.container_id = argv[i];
    q.cmd = &argv[i + 1];
    q.cmd_count = (pb_size_t)(argc - i - 1);
    int timeout_ms = q.timeout > 0 ? (int)(q.timeout * 1000 + SHORT_MS) : 24 * 3600 * 1000;
    if (call(c, RPC(ExecSync), runtime_v1_ExecSyncRequest_fields, &q,
             runtime_v1_ExecSyncResponse_fields, &r, timeout_ms) < 0) {
        if (c->err.code == -ENOENT)
            fprintf(stderr, "picocri exec: %s\n", c->err.msg);
        pb_release(runtime_v1_ExecSyncResponse_fields, &r);
        return 126;
    }
    int code = r.exit_code;
    pb_release(runtime_v1_ExecSyncResponse_fields, &r);
    return code;
}

/* ---- logs ----------------------------------------------------------------------------------- */

/* Prints the content of complete CRI log records in buf[0..len); returns
 * the bytes consumed (a trailing partial line stays). */
static size_t print_records(const char *buf, size_t len)
{
    size_t off = 0;

    while (off < len) {
        const char *nl = memchr(buf + off, '\n', len - off);
        if (nl == NULL)
            break;
        const char *p = buf + off;
        bool partial = false;
        /* "<time> <stream> <tags> <content>": skip three fields; the
         * first tag is P (partial: no newline) or F. */
        for (int f = 0; f < 3 && p < nl; f++) {
            const char *sp = memchr(p, ' ', (size_t)(nl - p));
            if (f == 2)
                partial = *p == 'P';
            p = sp != NULL ? sp + 1 : nl;
        }
        fwrite(p, 1, (size_t)(nl - p), stdout);
        if (!partial)
            fputc('\n', stdout);
        off = (size_t)(nl - buf) + 1;
    }
    fflush(stdout);
    return off;
}

static int cmd_logs(struct cli *c, int argc, char **argv)
{
    runtime_v1_ContainerStatusResponse cr;
    bool follow = false;
    const char *id = NULL;
    char path[4096];
    static char buf[65536 * 2];
    size_t have = 0;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-f") == 0 || strcmp(argv[i], "--follow") == 0)
            follow = true;
        else
            id = argv[i];
    }
    if (id == NULL) {
        fprintf(stderr, "usage: picocri logs [-f] CONTAINER\n");
        return 2;
    }
    if (ctr_status(c, id, false, &cr) < 0) {
        if (c->err.code == -ENOENT)
            fprintf(stderr, "picocri logs: %s\n", c->err.msg);
        pb_release(runtime_v1_ContainerStatusResponse_fields, &cr);
        return 1;
    }
    snprintf(path, sizeof(path), "%s", cr.status && cr.status->log_path ? cr.status->log_path : "");
    pb_release(runtime_v1_ContainerStatusResponse_fields, &cr);
    FILE *f = path[0] ? fopen(path, "r") : NULL;
    if (f == NULL) {
        fprintf(stderr, "picocri logs: cannot open log file \"%s\"\n", path);
        return 1;
    }
    for (int idle = 0;;) {
        size_t n = fread(buf + have, 1, sizeof(buf) - have, f);
        have += n;
        size_t used = print_records(buf, have);
        if (used == 0 && have == sizeof(buf)) {
            fwrite(buf, 1, have, stdout); /* a record longer than the buffer */
            used = have;
        }
        memmove(buf, buf + used, have - used);
        have -= used;
        if (n > 0)
            continue;
        if (!follow)
            break;
        clearerr(f);
        poll(NULL, 0, 200);
        /* Stop following once the container is gone or exited. */
        if (++idle % 5 == 0) {
            int rc = ctr_status(c, id, false, &cr);
            bool done = rc < 0 || (cr.status &&
                                   cr.status->state == runtime_v1_ContainerState_CONTAINER_EXITED);
            pb_release(runtime_v1_ContainerStatusResponse_fields, &cr);
            if (done) {
                follow = false;
                continue;
            }
        }
    }
    fclose(f);
    return 0;
}

/* ---- run ------------------------------------------------------------------------------------- */

static int cmd_run(struct cli *c, int argc, char **argv)
{
    static const struct option opts[] = {
        {"name", required_argument, NULL, 'n'},   {"namespace", required_argument, NULL, 'N'},
        {"host-network", no_argument, NULL, 'H'}, {"log-dir", required_argument, NULL, 'l'},
        {"socket", required_argument, NULL, 's'}, {NULL, 0, NULL, 0},
    };
    const char *name = "picocri-run", *ns = "default", *logdir = "/var/log/pods";
    bool host = false;
    int o;
    char uid[40], dir[4096], sid[ST_ID_HEX_LEN + 1] = "", cid[ST_ID_HEX_LEN + 1] = "";
    struct timespec ts;

    optind = 1;
    while ((o = getopt_long(argc, argv, "+n:N:Hl:s:", opts, NULL)) != -1) {
        switch (o) {
        case 'n':
            name = optarg;
            break;
        case 'N':
            ns = optarg;
            break;
        case 'H':
            host = true;
            break;
        case 'l':
            logdir = optarg;
            break;
        case 's':
            c->sock = optarg;
            break;
        default:
            fprintf(stderr, "usage: picocri run [--name N] [--namespace NS] [--host-network] "
                            "[--log-dir DIR] IMAGE [CMD ARG...]\n");
            return 2;
        }
    }
    if (optind >= argc) {
        fprintf(stderr, "picocri run: IMAGE is required\n");
        return 2;
    }
    clock_gettime(CLOCK_REALTIME, &ts);
    snprintf(uid, sizeof(uid), "%08lx-%04x-run", (unsigned long)ts.tv_sec,
             (unsigned)(ts.tv_nsec & 0xffff));
    snprintf(dir, sizeof(dir), "%s/%s_%s_%s", logdir, ns, name, uid);
    runtime_v1_PodSandboxMetadata pm = {.name = (char *)name, .namespace = (char *)ns, .uid = uid};
    runtime_v1_NamespaceOption nso = {.network = host ? runtime_v1_NamespaceMode_NODE
                                                      : runtime_v1_NamespaceMode_POD,
                                      .pid = runtime_v1_NamespaceMode_CONTAINER};
    runtime_v1_LinuxSandboxSecurityContext lsc = {.namespace_options = &nso};
    runtime_v1_LinuxPodSandboxConfig lpc = {.security_context = &lsc};
    runtime_v1_PodSandboxConfig pc = {
        .metadata = &pm, .hostname = (char *)name, .log_directory = dir, .linux = &lpc};
    runtime_v1_RunPodSandboxRequest pq = {.config = &pc};
    runtime_v1_RunPodSandboxResponse pr = runtime_v1_RunPodSandboxResponse_init_zero;
    if (call(c, RPC(RunPodSandbox), runtime_v1_RunPodSandboxRequest_fields, &pq,
             runtime_v1_RunPodSandboxResponse_fields, &pr, LONG_MS) < 0)
        return 1;
    snprintf(sid, sizeof(sid), "%s", pr.pod_sandbox_id ? pr.pod_sandbox_id : "");
    pb_release(runtime_v1_RunPodSandboxResponse_fields, &pr);

    runtime_v1_ContainerMetadata cm = {.name = (char *)name};
    runtime_v1_ImageSpec is = {.image = argv[optind]};
    runtime_v1_ContainerConfig cc = {.metadata = &cm, .image = &is, .log_path = (char *)"0.log"};
    if (optind + 1 < argc) {
        cc.command = &argv[optind + 1];
        cc.command_count = (pb_size_t)(argc - optind - 1);
    }
    runtime_v1_CreateContainerRequest cq = {
        .pod_sandbox_id = sid, .config = &cc, .sandbox_config = &pc};
    runtime_v1_CreateContainerResponse cr = runtime_v1_CreateContainerResponse_init_zero;
    if (call(c, RPC(CreateContainer), runtime_v1_CreateContainerRequest_fields, &cq,
             runtime_v1_CreateContainerResponse_fields, &cr, LONG_MS) < 0) {
        fprintf(stderr, "picocri run: pod %s was created; remove it with: picocri rm %.12s\n", sid,
                sid);
        return 1;
    }
    snprintf(cid, sizeof(cid), "%s", cr.container_id ? cr.container_id : "");
    pb_release(runtime_v1_CreateContainerResponse_fields, &cr);
    runtime_v1_StartContainerRequest sq = {.container_id = cid};
    runtime_v1_StartContainerResponse sr = {0};
    if (call(c, RPC(StartContainer), runtime_v1_StartContainerRequest_fields, &sq,
             runtime_v1_StartContainerResponse_fields, &sr, LONG_MS) < 0)
        return 1;
    printf("pod %s\ncontainer %s\n", sid, cid);
    return 0;
}

/* ---- dispatcher --------------------------------------------------------------------------------- */

int cri_cli_main(int argc, char **argv)
{
    struct cli c = {.sock = cri_client_default_socket(), .cmd = argv[0]};
    char *args[256];
    int n = 0;

    /* --socket PATH anywhere before the command words. */
    for (int i = 0; i < argc && n < (int)AG_ARRAY_LEN(args) - 1; i++) {
        if (strcmp(argv[i], "--socket") == 0 && i + 1 < argc && strcmp(argv[0], "exec") != 0) {
            c.sock = argv[++i];
            continue;
        }
        if (strncmp(argv[i], "--socket=", 9) == 0) {
            c.sock = argv[i] + 9;
            continue;
        }
        args[n++] = argv[i];
    }
    args[n] = NULL;
    if (strcmp(argv[0], "exec") == 0 && argc > 2 && strcmp(argv[1], "--socket") == 0) {
        c.sock = argv[2];
        args[0] = argv[0];
        n = 0;
        for (int i = 0; i < argc; i++)
            if (i != 1 && i != 2)
                args[n++] = argv[i];
        args[n] = NULL;
    }
    if (strcmp(argv[0], "pods") == 0)
        return cmd_pods(&c, n, args);
    if (strcmp(argv[0], "ps") == 0)
        return cmd_ps(&c, n, args);
    if (strcmp(argv[0], "logs") == 0)
        return cmd_logs(&c, n, args);
    if (strcmp(argv[0], "exec") == 0)
        return cmd_exec(&c, n, args);
    if (strcmp(argv[0], "inspect") == 0)
        return cmd_inspect(&c, n, args);
    if (strcmp(argv[0], "stop") == 0)
        return stop_or_rm(&c, n, args, false);
    if (strcmp(argv[0], "rm") == 0)
        return stop_or_rm(&c, n, args, true);
    if (strcmp(argv[0], "run") == 0)
        return cmd_run(&c, n, args);
    fprintf(stderr, "picocri: unknown client command %s\n", argv[0]);
    return 2;
}
