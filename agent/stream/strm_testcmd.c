/* agent/stream: `picocri stream-test`, a test-only harness that runs the
 * streaming server with the host backend (processes of the host through
 * uv_spawn; port-forward into a given network namespace), so integration
 * tests and benchmarks can drive the server before and independently of
 * the CRI runtime service.  It is not a daemon feature: it issues URLs only
 * for the commands its parent writes on stdin, one per line, fields
 * separated by tabs:
 *   exec<TAB>TTY<TAB>STDIN<TAB>STDOUT<TAB>STDERR<TAB>ARGV0[<TAB>ARG...]
 *   portforward<TAB>NETNS-PATH (or "-" for the harness's own namespace)
 * and answers each with "url <URL>" or "error <message>".  It prints
 * "port <N>" once listening, and stops at EOF on stdin (or SIGTERM). */
#include "strm_int.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

struct host_req {
    char **argv; /* exec: NULL-terminated */
    char netns[256];
};

struct harness {
    uv_loop_t *loop;
    struct strm_server *srv;
    uv_pipe_t in;
    uv_signal_t sig;
    struct ag_buf line;
};

static void host_req_free(void *p)
{
    struct host_req *r = p;

    if (r == NULL)
        return;
    for (size_t i = 0; r->argv && r->argv[i]; i++)
        free(r->argv[i]);
    free(r->argv);
    free(r);
}

static int host_exec(void *ctx, uv_loop_t *loop, void *request, const struct strm_params *params,
                     const struct strm_proc_sink *sink, struct strm_proc **out,
                     struct ag_err *err)
{
    struct host_req *r = request;

    return strm_host_exec(loop, r->argv, params, sink, out, err);
}

static int host_attach(void *ctx, uv_loop_t *loop, void *request,
                       const struct strm_params *params, const struct strm_proc_sink *sink,
                       struct strm_proc **out, struct ag_err *err)
{
    /* The harness attaches to a fresh host process: enough to exercise the
     * attach path of the server (the monitor side has its own tests). */
    return host_exec(ctx, loop, request, params, sink, out, err);
}

static int host_netns(void *ctx, void *request, char *path, size_t len, struct ag_err *err)
{
    struct host_req *r = request;

    if (strlen(r->netns) >= len)
        return ag_err_set(err, -ENAMETOOLONG, "netns path too long");
    strcpy(path, r->netns);
    return 0;
}

static const struct strm_backend_ops host_ops = {host_exec, host_attach, host_netns};

static void host_req_freep(struct host_req **r) { host_req_free(*r); }

static int parse_command(char *line, enum strm_kind *kind, struct strm_params *p,
                         struct host_req **out)
{
    char *fields[64];
    size_t n = 0;
    _cleanup_(host_req_freep) struct host_req *r = calloc(1, sizeof(*r));

    if (r == NULL)
        return -ENOMEM;
    for (char *save = NULL, *f = strtok_r(line, "\t", &save); f && n < AG_ARRAY_LEN(fields);
         f = strtok_r(NULL, "\t", &save))
        fields[n++] = f;
    if (n == 2 && strcmp(fields[0], "portforward") == 0) {
        *kind = STRM_PORTFORWARD;
        snprintf(r->netns, sizeof(r->netns), "%s", strcmp(fields[1], "-") ? fields[1] : "");
    } else if (n >= 6 && (strcmp(fields[0], "exec") == 0 || strcmp(fields[0], "attach") == 0)) {
        *kind = fields[0][0] == 'e' ? STRM_EXEC : STRM_ATTACH;
        *p = (struct strm_params){fields[1][0] == '1', fields[2][0] == '1', fields[3][0] == '1',
                                  fields[4][0] == '1'};
        r->argv = calloc(n - 4, sizeof(char *));
        if (r->argv == NULL)
            return -ENOMEM;
        for (size_t i = 5; i < n; i++)
            if ((r->argv[i - 5] = strdup(fields[i])) == NULL)
                return -ENOMEM;
    } else {
        return -EINVAL;
    }
    *out = steal_ptr(&r);
    return 0;
}

static void handle_line(struct harness *h, char *line)
{
    struct strm_params p = {0};
    struct host_req *r = NULL;
    enum strm_kind kind;
    char url[256];
    struct ag_err err;

    ag_err_init(&err);
    if (parse_command(line, &kind, &p, &r) < 0) {
        printf("error bad command\n");
    } else if (strm_server_issue(h->srv, kind, &p, r, host_req_free, url, sizeof(url), &err) <
               0) {
        printf("error %s\n", err.msg);
    } else {
        printf("url %s\n", url);
    }
    fflush(stdout);
}

static void stop(struct harness *h)
{
    strm_server_stop(steal_ptr(&h->srv));
    if (!uv_is_closing((uv_handle_t *)&h->in))
        uv_close((uv_handle_t *)&h->in, NULL);
    if (!uv_is_closing((uv_handle_t *)&h->sig))
        uv_close((uv_handle_t *)&h->sig, NULL);
}

static void on_alloc(uv_handle_t *hd, size_t hint, uv_buf_t *buf)
{
    static char slab[4096];

    buf->base = slab;
    buf->len = sizeof(slab);
}

static void on_stdin(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct harness *h = s->data;

    if (n < 0) {
        stop(h);
        return;
    }
    if (ag_buf_append(&h->line, buf->base, (size_t)n) < 0 || h->line.len > 65536) {
        stop(h);
        return;
    }
    uint8_t *nl;
    while ((nl = memchr(h->line.data, '\n', h->line.len)) != NULL) {
        size_t len = (size_t)(nl - h->line.data);
        h->line.data[len] = 0;
        handle_line(h, (char *)h->line.data);
        ag_buf_consume(&h->line, len + 1);
    }
}

static void on_signal(uv_signal_t *s, int signum) { stop(s->data); }

int strm_test_main(int argc, char **argv)
{
    const char *address = "127.0.0.1:0";
    struct harness h = {.loop = uv_default_loop()};
    struct ag_err err;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--address") == 0 && i + 1 < argc) {
            address = argv[++i];
        } else if (strcmp(argv[i], "--log-level") == 0 && i + 1 < argc) {
            enum ag_log_level l;
            if (ag_log_level_parse(argv[++i], &l) == 0)
                ag_log_set_level(l);
        } else {
            fprintf(stderr, "usage: picocri stream-test [--address HOST:PORT] "
                            "[--log-level LEVEL]  (test harness; commands on stdin)\n");
            return strcmp(argv[i], "--help") == 0 ? 0 : 2;
        }
    }
    signal(SIGPIPE, SIG_IGN);
    ag_err_init(&err);
    ag_buf_init(&h.line);
    if (strm_server_start(h.loop, address, &host_ops, NULL, &h.srv, &err) < 0) {
        fprintf(stderr, "stream-test: %s\n", err.msg);
        return 1;
    }
    printf("port %d\n", strm_server_port(h.srv));
    fflush(stdout);
    uv_pipe_init(h.loop, &h.in, 0);
    h.in.data = &h;
    uv_signal_init(h.loop, &h.sig);
    h.sig.data = &h;
    uv_signal_start(&h.sig, on_signal, SIGTERM);
    if (uv_pipe_open(&h.in, 0) < 0 || uv_read_start((uv_stream_t *)&h.in, on_alloc, on_stdin) < 0)
        stop(&h);
    uv_run(h.loop, UV_RUN_DEFAULT);
    ag_buf_fini(&h.line);
    int rc = uv_loop_close(h.loop);
    if (rc < 0)
        ag_log(AG_WARN, "stream-test: loop not empty at exit");
    return 0;
}
