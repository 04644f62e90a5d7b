/* Fuzz target: CNI configuration lists and plugin results (agent/net).
 * The first byte picks the parser; configurations that parse must also
 * produce plugin stdin for every plugin. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/net.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void fuzz_conf(const char *s, size_t n, const char *name)
{
    struct net_cni_conf *c = NULL;
    struct ag_err err;
    struct net_port_mapping pm = {.host_port = 80, .container_port = 8080, .protocol = "tcp"};
    struct net_attach att = {.container_id = "id", .netns = "/x", .ifname = "eth0",
                             .ports = &pm, .port_count = 1};

    ag_err_init(&err);
    if (net_cni_conf_parse(s, n, name, &c, &err) != 0)
        return;
    for (int i = 0; i < cJSON_GetArraySize(c->plugins); i++) {
        char *out = NULL;
        if (net_cni_plugin_stdin(c, (size_t)i, "ADD", &att, NULL, &out, &err) == 0)
            free(out);
    }
    net_cni_conf_free(c);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct ag_err err;
    cJSON *res = NULL;
    char ips[8][64];

    if (size < 1)
        return 0;
    const char *s = (const char *)data + 1;
    size_t n = size - 1;
    ag_err_init(&err);
    switch (data[0] % 4) {
    case 0:
        fuzz_conf(s, n, "x.conflist");
        break;
    case 1:
        fuzz_conf(s, n, "x.conf");
        break;
    default:
        if (net_cni_result_parse(s, n, data[0] % 4 == 2 ? 0 : 1, "p", &res, &err) == 0) {
            net_cni_result_ips(res, "eth0", ips, 8);
            cJSON_Delete(res);
        }
        break;
    }
    return 0;
}
