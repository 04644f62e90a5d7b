/* agent/net: pod networking through CNI plugins (spec 1.1.0).
 *
 * Two layers.  The configuration and result code (net_cni.c) is sans-I/O:
 * it parses network configuration lists, builds each plugin's stdin and
 * parses plugin output; all of it is fuzzed.  The runner (net_cni_run.c)
 * executes plugin chains as child processes on the libuv loop: ADD in order,
 * DEL in reverse order, each plugin with a deadline, never blocking the loop.
 *
 * Trust: configuration files are trusted (root-owned), plugin output is
 * parsed defensively (bounded size, validated shape).
 */
#ifndef NET_H
#define NET_H

#include "ag_core.h"

#include <cjson/cJSON.h>
#include <uv.h>

#define NET_CNI_MAX_CONF (1 << 20)   /* a configuration file */
#define NET_CNI_MAX_OUTPUT (1 << 20) /* one plugin's stdout */
#define NET_CNI_VERSION "1.1.0"

/* A loaded network configuration list (a .conf is wrapped as a one-plugin
 * list, as libcni does). */
struct net_cni_conf {
    char *file;         /* where it came from */
    char *name;         /* network name */
    char *cni_version;  /* version the plugins are called with */
    cJSON *plugins;     /* array of plugin objects, as in the file */
    bool disable_check;
};

struct net_port_mapping {
    int host_port;
    int container_port;
    const char *protocol; /* "tcp", "udp", "sctp" */
    const char *host_ip;  /* may be NULL or "" */
};

/* One attachment of a pod to the network.  Borrowed strings. */
struct net_attach {
    const char *container_id; /* the sandbox id */
    const char *netns;        /* path of the pinned network namespace */
    const char *ifname;       /* "eth0" */
    const char *pod_namespace, *pod_name, *pod_uid;
    const struct net_port_mapping *ports;
    size_t port_count;
};

/* Parses one configuration file's bytes.  filename decides .conf (single
 * plugin) versus .conflist.  Returns 0 with *out owned, or -EINVAL with a
 * message. */
int net_cni_conf_parse(const char *data, size_t len, const char *filename,
                       struct net_cni_conf **out, struct ag_err *err) AG_WUR;
/* Loads the first valid configuration of dir (files *.conf, *.conflist,
 * *.json sorted by name, as kubelet and containerd do).  Blocking but small:
 * reads at most a few files.  -ENOENT with a message when none is usable. */
int net_cni_conf_load_dir(const char *dir, struct net_cni_conf **out, struct ag_err *err) AG_WUR;
void net_cni_conf_free(struct net_cni_conf *conf);

/* Builds the stdin of plugin `index` for command (ADD, DEL, CHECK):
 * the plugin object plus cniVersion, name, runtimeConfig (the capabilities
 * the plugin declares that we have args for) and prevResult (may be NULL).
 * Returns 0 with *out an owned NUL-terminated JSON string. */
int net_cni_plugin_stdin(const struct net_cni_conf *conf, size_t index, const char *command,
                         const struct net_attach *att, const cJSON *prev_result, char **out,
                         struct ag_err *err) AG_WUR;
/* Builds the CNI_ARGS value for Kubernetes pods.  Returns -ENAMETOOLONG if
 * out is too small. */
int net_cni_args_format(const struct net_attach *att, char *out, size_t out_len) AG_WUR;
/* Parses a plugin's stdout after exit status `status`.  For a non-zero exit
 * the CNI error object (code, msg, details) becomes the message.  On
 * success *out is the owned result object (0.2.0-style ip4/ip6 results are
 * converted to the ips[] shape). */
int net_cni_result_parse(const char *data, size_t len, int status, const char *plugin,
                         cJSON **out, struct ag_err *err) AG_WUR;
/* Collects the addresses (without prefix length) of the container-side
 * interface ifname from a result, at most max.  Returns the count. */
size_t net_cni_result_ips(const cJSON *result, const char *ifname, char (*ips)[64], size_t max);

/* ---- running plugin chains (libuv) ---------------------------------------- */
struct net_cni_op;

/* Called once when the chain finishes: status 0 with result_json (owned by
 * the callee, valid for the call) for ADD, or negative with err. */
typedef void (*net_cni_done_cb)(void *arg, int status, const char *result_json,
                                const struct ag_err *err);

/* Runs ADD through every plugin of conf, each with timeout_ms.  bin_dirs is
 * a colon-separated search path.  The op copies what it needs; the caller's
 * arguments need not outlive the call.  Returns 0 (cb will be called) or a
 * negative errno (cb will not be called). */
int net_cni_add(uv_loop_t *loop, const struct net_cni_conf *conf, const char *bin_dirs,
                const struct net_attach *att, unsigned timeout_ms, net_cni_done_cb cb,
                void *arg) AG_WUR;
/* Runs DEL in reverse order with prev_result_json (the saved ADD result; may
 * be NULL).  Best effort: every plugin is called even if one fails; the
 * first failure is reported. */
int net_cni_del(uv_loop_t *loop, const struct net_cni_conf *conf, const char *bin_dirs,
                const struct net_attach *att, const char *prev_result_json,
                unsigned timeout_ms, net_cni_done_cb cb, void *arg) AG_WUR;

#endif
