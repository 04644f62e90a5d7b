/* agent/net: runs CNI plugin chains as child processes on the libuv loop.
 * ADD calls the plugins in order, each getting the previous result; DEL
 * calls them in reverse order with the saved ADD result and goes on past
 * failures (DEL is best effort and must be idempotent).  Each plugin has a
 * deadline; a plugin that hangs is killed and the chain fails with
 * -ETIMEDOUT.  Invariant: the op is freed only after every handle of the
 * current plugin has been closed, and the callback runs exactly once. */
#include "net.h"

#include <signal.h>
#include <stdio.h>
#include <string.h>

#define STDERR_KEEP 512

enum op_kind { OP_ADD, OP_DEL };

struct net_cni_op {
    uv_loop_t *loop;
    enum op_kind kind;
    struct net_cni_conf conf; /* deep copy: the caller may reload its own */
    char *bin_dirs;
    char *container_id, *netns, *ifname, *pod_ns, *pod_name, *pod_uid;
    struct net_port_mapping *ports;
    size_t port_count;
    cJSON *prev; /* ADD: result so far; DEL: the saved ADD result */
    unsigned timeout_ms;
    net_cni_done_cb cb;
    void *arg;
    struct ag_err err; /* first failure */
    int remaining;     /* plugins still to run */
    int index;         /* current plugin */
    /* The current plugin's process. */
    uv_process_t proc;
    uv_pipe_t in, out, errp;
    uv_timer_t timer;
    uv_write_t write_req;
    uv_shutdown_t shutdown_req;
    int spawn_rc; /* uv_spawn's failure, reported by plugin_done */
    char *stdin_json;
    char *output;
    size_t output_len;
    char errbuf[STDERR_KEEP];
    size_t err_len;
    int64_t exit_status;
    int64_t started_ns; /* for the debug log: plugins dominate pod start */
    int term_signal;
    bool exited, out_eof, err_eof, timed_out, overflow;
    int open_handles;
};

static void run_next(struct net_cni_op *op);

static char *dup_or_empty(const char *s) { return strdup(s ? s : ""); }

static void op_free(struct net_cni_op *op)
{
    free(op->conf.name);
    free(op->conf.cni_version);
    free(op->conf.file);
    cJSON_Delete(op->conf.plugins);
    free(op->bin_dirs);
    free(op->container_id);
    free(op->netns);
    free(op->ifname);
    free(op->pod_ns);
    free(op->pod_name);
    free(op->pod_uid);
    for (size_t i = 0; op->ports != NULL && i < op->port_count; i++) {
        free((char *)op->ports[i].protocol);
        free((char *)op->ports[i].host_ip);
    }
    free(op->ports);
    cJSON_Delete(op->prev);
    free(op->stdin_json);
    free(op->output);
    free(op);
}

static struct net_cni_op *op_new(uv_loop_t *loop, enum op_kind kind,
                                 const struct net_cni_conf *conf, const char *bin_dirs,
                                 const struct net_attach *att, unsigned timeout_ms)
{
    struct net_cni_op *op = calloc(1, sizeof(*op));

    if (op == NULL)
        return NULL;
    op->loop = loop;
    op->kind = kind;
    op->timeout_ms = timeout_ms;
    ag_err_init(&op->err);
    op->conf.name = strdup(conf->name);
    op->conf.cni_version = strdup(conf->cni_version);
    op->conf.file = strdup(conf->file ? conf->file : "");
    op->conf.plugins = cJSON_Duplicate(conf->plugins, true);
    op->bin_dirs = strdup(bin_dirs);
    op->container_id = dup_or_empty(att->container_id);
    op->netns = dup_or_empty(att->netns);
    op->ifname = dup_or_empty(att->ifname ? att->ifname : "eth0");
    op->pod_ns = dup_or_empty(att->pod_namespace);
    op->pod_name = dup_or_empty(att->pod_name);
    op->pod_uid = dup_or_empty(att->pod_uid);
    bool ok = op->conf.name && op->conf.cni_version && op->conf.file && op->conf.plugins &&
              op->bin_dirs && op->container_id && op->netns && op->ifname && op->pod_ns &&
              op->pod_name && op->pod_uid;
    if (ok && att->port_count > 0) {
        op->ports = calloc(att->port_count, sizeof(*op->ports));
        ok = op->ports != NULL;
        for (size_t i = 0; ok && i < att->port_count; i++) {
            op->ports[i] = att->ports[i];
            op->ports[i].protocol = dup_or_empty(att->ports[i].protocol);
            op->ports[i].host_ip = dup_or_empty(att->ports[i].host_ip);
            op->port_count = i + 1;
            ok = op->ports[i].protocol && op->ports[i].host_ip;
        }
    }
    if (!ok) {
        op_free(op);
        return NULL;
    }
    return op;
}

static struct net_attach op_attach(const struct net_cni_op *op)
{
    return (struct net_attach){.container_id = op->container_id,
                               .netns = op->netns,
                               .ifname = op->ifname,
                               .pod_namespace = op->pod_ns,
                               .pod_name = op->pod_name,
                               .pod_uid = op->pod_uid,
                               .ports = op->ports,
                               .port_count = op->port_count};
}

static const char *plugin_type(const struct net_cni_op *op)
{
    const cJSON *p = cJSON_GetArrayItem(op->conf.plugins, op->index);
    const cJSON *t = cJSON_GetObjectItemCaseSensitive(p, "type");
    return cJSON_IsString(t) ? t->valuestring : "?";
}

static void finish(struct net_cni_op *op)
{
    _cleanup_free_ char *json = NULL;

    if (op->err.code == 0 && op->kind == OP_ADD && op->prev != NULL)
        json = cJSON_PrintUnformatted(op->prev);
    if (op->err.code == 0 && op->kind == OP_ADD && json == NULL)
        ag_err_set(&op->err, -ENOMEM, "CNI result");
    op->cb(op->arg, op->err.code, json, &op->err);
    op_free(op);
}

/* The current plugin is over and all its handles are closed. */
static void plugin_done(struct net_cni_op *op)
{
    struct ag_err one;
    cJSON *result = NULL;
    int status = op->exited ? (int)op->exit_status : -1;

    ag_err_init(&one);
    if (op->spawn_rc < 0) {
        ag_err_set(&one, op->spawn_rc, "CNI plugin %s: spawn: %s", plugin_type(op),
                   uv_strerror(op->spawn_rc));
    } else if (op->timed_out) {
        ag_err_set(&one, -ETIMEDOUT, "CNI plugin %s timed out after %u ms", plugin_type(op),
                   op->timeout_ms);
    } else if (op->overflow) {
        ag_err_set(&one, -EFBIG, "CNI plugin %s: output over %d bytes", plugin_type(op),
                   NET_CNI_MAX_OUTPUT);
    } else if (op->term_signal != 0) {
        ag_err_set(&one, -EIO, "CNI plugin %s killed by signal %d", plugin_type(op),
                   op->term_signal);
    } else if (net_cni_result_parse(op->output, op->output_len, status, plugin_type(op),
                                    &result, &one) == 0) {
        if (op->kind == OP_ADD) {
            cJSON_Delete(op->prev);
            op->prev = result;
        } else {
            cJSON_Delete(result);
        }
    } else if (op->kind == OP_DEL && status == 0 && op->output_len == 0) {
        ag_err_init(&one); /* DEL may print nothing */
    } else if (op->err_len > 0 && status != 0) {
        ag_err_wrap(&one, "%.*s", (int)op->err_len, op->errbuf);
    }
    ag_log(AG_DEBUG, "CNI %s plugin=%s container=%.12s status=%d ms=%.1f",
           op->kind == OP_ADD ? "ADD" : "DEL", plugin_type(op), op->container_id, status,
           (double)(ag_now_ns() - op->started_ns) / 1e6);
    if (one.code != 0 && op->err.code == 0)
        op->err = one;
    free(op->output);
    op->output = NULL;
    op->output_len = 0;
    free(op->stdin_json);
    op->stdin_json = NULL;
    if (op->err.code != 0 && op->kind == OP_ADD)
        op->remaining = 0; /* ADD stops at the first error */
    run_next(op);
}

static void on_close(uv_handle_t *h)
{
    struct net_cni_op *op = h->data;

    if (--op->open_handles == 0)
        plugin_done(op);
}

static void maybe_close(struct net_cni_op *op)
{
    if (!op->exited || !op->out_eof || !op->err_eof)
        return;
    uv_close((uv_handle_t *)&op->proc, on_close);
    uv_close((uv_handle_t *)&op->in, on_close);
    uv_close((uv_handle_t *)&op->out, on_close);
    uv_close((uv_handle_t *)&op->errp, on_close);
    uv_close((uv_handle_t *)&op->timer, on_close);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig)
{
    struct net_cni_op *op = p->data;

    op->exited = true;
    op->exit_status = status;
    op->term_signal = op->timed_out ? 0 : sig;
    uv_timer_stop(&op->timer);
    maybe_close(op);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    static char scratch[4096]; /* single-threaded loop: reads never overlap */

    (void)h;
    (void)suggested;
    *buf = uv_buf_init(scratch, sizeof(scratch));
}

static void on_read_out(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct net_cni_op *op = s->data;

    if (n > 0) {
        if (op->output_len + (size_t)n > NET_CNI_MAX_OUTPUT) {
            op->overflow = true;
            uv_process_kill(&op->proc, SIGKILL);
        } else {
            char *nb = realloc(op->output, op->output_len + (size_t)n + 1);
            if (nb == NULL) {
                op->overflow = true;
                uv_process_kill(&op->proc, SIGKILL);
            } else {
                op->output = nb;
                memcpy(op->output + op->output_len, buf->base, (size_t)n);
                op->output_len += (size_t)n;
                op->output[op->output_len] = '\0';
            }
        }
    } else if (n < 0) {
        uv_read_stop(s);
        op->out_eof = true;
        maybe_close(op);
    }
}

static void on_read_err(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    struct net_cni_op *op = s->data;

    if (n > 0) {
        /* Keep the first bytes: they usually say what went wrong. */
        size_t room = sizeof(op->errbuf) - op->err_len;
        size_t take = (size_t)n < room ? (size_t)n : room;
        memcpy(op->errbuf + op->err_len, buf->base, take);
        op->err_len += take;
    } else if (n < 0) {
        uv_read_stop(s);
        op->err_eof = true;
        maybe_close(op);
    }
}

static void on_timeout(uv_timer_t *t)
{
    struct net_cni_op *op = t->data;

    op->timed_out = true;
    uv_process_kill(&op->proc, SIGKILL);
}

static void on_written(uv_write_t *req, int status)
{
    struct net_cni_op *op = req->data;

    /* End of stdin.  A plugin that did not read it fails on its own, so a
     * write error needs no handling of its own. */
    if (status == 0)
        uv_shutdown(&op->shutdown_req, (uv_stream_t *)&op->in, NULL);
}

/* Finds type in the colon-separated dirs.  Returns 0 with path filled. */
static int find_plugin(const char *dirs, const char *type, char *path, size_t path_len)
{
    const char *p = dirs;

    while (*p != '\0') {
        const char *end = strchr(p, ':');
        size_t n = end ? (size_t)(end - p) : strlen(p);
        if (n > 0 && snprintf(path, path_len, "%.*s/%s", (int)n, p, type) < (int)path_len &&
            access(path, X_OK) == 0)
            return 0;
        p += n + (end ? 1 : 0);
    }
    return -ENOENT;
}

static int spawn_plugin(struct net_cni_op *op, const char *path, char **env)
{
    uv_process_options_t o;
    uv_stdio_container_t stdio[3];
    char *args[] = {(char *)path, NULL};
    int rc;

    uv_pipe_init(op->loop, &op->in, 0);
    uv_pipe_init(op->loop, &op->out, 0);
    uv_pipe_init(op->loop, &op->errp, 0);
    uv_timer_init(op->loop, &op->timer);
    op->in.data = op->out.data = op->errp.data = op->timer.data = op->proc.data = op;
    memset(&o, 0, sizeof(o));
    stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
    stdio[0].data.stream = (uv_stream_t *)&op->in;
    stdio[1].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[1].data.stream = (uv_stream_t *)&op->out;
    stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
    stdio[2].data.stream = (uv_stream_t *)&op->errp;
    o.file = path;
    o.args = args;
    o.env = env;
    o.stdio = stdio;
    o.stdio_count = 3;
    o.exit_cb = on_exit_cb;
    rc = uv_spawn(op->loop, &op->proc, &o);
    op->open_handles = 5;
    if (rc < 0) {
        /* The handles exist and must be closed; plugin_done reports it. */
        op->spawn_rc = rc;
        op->exited = op->out_eof = op->err_eof = true;
        maybe_close(op);
        return 0;
    }
    uv_read_start((uv_stream_t *)&op->out, on_alloc, on_read_out);
    uv_read_start((uv_stream_t *)&op->errp, on_alloc, on_read_err);
    if (op->timeout_ms > 0)
        uv_timer_start(&op->timer, on_timeout, op->timeout_ms, 0);
    uv_buf_t b = uv_buf_init(op->stdin_json, (unsigned)strlen(op->stdin_json));
    op->write_req.data = op;
    /* On failure the plugin sees no stdin and fails by itself. */
    (void)uv_write(&op->write_req, (uv_stream_t *)&op->in, &b, 1, on_written);
    return 0;
}

/* Starts the current plugin.  Returns 0 when it runs (plugin_done will
 * follow), or a negative errno with one set when it could not start. */
static int start_plugin(struct net_cni_op *op, struct ag_err *one)
{
    struct net_attach att = op_attach(op);
    char path[4096], args[1024];
    char env_cmd[32], env_id[512], env_netns[4200], env_if[64], env_args[1100];
    char env_path[4200];
    char *env[] = {env_cmd, env_id, env_netns, env_if, env_args, env_path,
                   (char *)"PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                   NULL};
    const char *command = op->kind == OP_ADD ? "ADD" : "DEL";

    if (find_plugin(op->bin_dirs, plugin_type(op), path, sizeof(path)) < 0)
        return ag_err_set(one, -ENOENT, "CNI plugin %s not found in %s", plugin_type(op),
                          op->bin_dirs);
    if (net_cni_args_format(&att, args, sizeof(args)) < 0)
        return ag_err_set(one, -EINVAL, "CNI_ARGS too long");
    if (net_cni_plugin_stdin(&op->conf, (size_t)op->index, command, &att, op->prev,
                             &op->stdin_json, one) < 0)
        return one->code;
    snprintf(env_cmd, sizeof(env_cmd), "CNI_COMMAND=%s", command);
    snprintf(env_id, sizeof(env_id), "CNI_CONTAINERID=%s", op->container_id);
    snprintf(env_netns, sizeof(env_netns), "CNI_NETNS=%s", op->netns);
    snprintf(env_if, sizeof(env_if), "CNI_IFNAME=%s", op->ifname);
    snprintf(env_args, sizeof(env_args), "CNI_ARGS=%s", args);
    snprintf(env_path, sizeof(env_path), "CNI_PATH=%s", op->bin_dirs);
    op->exited = op->out_eof = op->err_eof = op->timed_out = op->overflow = false;
    op->err_len = 0;
    op->term_signal = 0;
    op->spawn_rc = 0;
    op->started_ns = ag_now_ns();
    return spawn_plugin(op, path, env);
}

static void run_next(struct net_cni_op *op)
{
    while (op->remaining > 0) {
        struct ag_err one;

        op->remaining--;
        op->index += op->kind == OP_ADD ? 1 : -1;
        ag_err_init(&one);
        if (start_plugin(op, &one) == 0)
            return; /* plugin_done() continues the chain */
        if (op->err.code == 0)
            op->err = one;
        if (op->kind == OP_ADD)
            break;
    }
    finish(op);
}

static int start(struct net_cni_op *op, net_cni_done_cb cb, void *arg)
{
    int n = cJSON_GetArraySize(op->conf.plugins);

    op->cb = cb;
    op->arg = arg;
    op->remaining = n;
    op->index = op->kind == OP_ADD ? -1 : n;
    run_next(op);
    return 0;
}

int net_cni_add(uv_loop_t *loop, const struct net_cni_conf *conf, const char *bin_dirs,
                const struct net_attach *att, unsigned timeout_ms, net_cni_done_cb cb, void *arg)
{
    struct net_cni_op *op = op_new(loop, OP_ADD, conf, bin_dirs, att, timeout_ms);

    if (op == NULL)
        return -ENOMEM;
    return start(op, cb, arg);
}

int net_cni_del(uv_loop_t *loop, const struct net_cni_conf *conf, const char *bin_dirs,
                const struct net_attach *att, const char *prev_result_json, unsigned timeout_ms,
                net_cni_done_cb cb, void *arg)
{
    struct net_cni_op *op = op_new(loop, OP_DEL, conf, bin_dirs, att, timeout_ms);

    if (op == NULL)
        return -ENOMEM;
    if (prev_result_json != NULL && (op->prev = cJSON_Parse(prev_result_json)) == NULL) {
        op_free(op);
        return -EINVAL;
    }
    return start(op, cb, arg);
}
