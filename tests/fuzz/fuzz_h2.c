/* Fuzz target: the whole gRPC server engine (cri/cri_h2.c) with the real
 * method table, fed raw bytes in chunks with its output drained after
 * each.  If the first byte is odd, a valid client preface and SETTINGS
 * are put in front so the fuzzer reaches frames and gRPC framing.  At the
 * end every deadline is expired and the connection freed: nothing may
 * leak or crash. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cri_internal.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct ag_config cfg;
static struct cri_daemon daemon_state;

static char root[] = "/tmp/fuzz_h2.XXXXXX";

static void cleanup(void)
{
    char path[64];

    snprintf(path, sizeof(path), "%s/meta/pod-cidr", root);
    unlink(path);
    snprintf(path, sizeof(path), "%s/meta", root);
    rmdir(path);
    rmdir(root);
}

static void init_once(void)
{
    static bool done;

    if (done)
        return;
    done = true;
    ag_log_set_level(AG_ERROR);
    ag_config_init(&cfg);
    if (mkdtemp(root) == NULL)
        abort();
    atexit(cleanup);
    if (ag_config_set(&cfg, "root", root, NULL) < 0 ||
        ag_config_set(&cfg, "cni-conf-dir", "/nonexistent/fuzz-cni", NULL) < 0)
        abort();
    daemon_state.cfg = &cfg;
    daemon_state.cgroup_driver = "cgroupfs";
}

static int drain(struct cri_conn *c)
{
    for (int i = 0; i < 10000; i++) {
        const uint8_t *p;
        ssize_t n = cri_conn_send(c, &p);
        if (n <= 0)
            return (int)n;
    }
    return 0;
}

static const uint8_t preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
                                 "\x00\x00\x00\x04\x00\x00\x00\x00\x00";

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct cri_conn *c;

    init_once();
    if (size < 2)
        return 0;
    struct cri_conn_config cc = {
        .methods = cri_methods, .method_count = cri_method_count, .daemon = &daemon_state};
    if (cri_conn_new(&c, &cc) < 0)
        return 0;
    size_t step = (size_t)(data[1] % 128) * 16 + 1;
    bool ok = true;
    if (data[0] & 1)
        ok = cri_conn_recv(c, preface, sizeof(preface) - 1) == 0 && drain(c) == 0;
    for (size_t off = 2; ok && off < size; off += step) {
        size_t n = size - off < step ? size - off : step;
        ok = cri_conn_recv(c, data + off, n) == 0 && drain(c) == 0;
    }
    if (ok) {
        cri_conn_expire(c, INT64_MAX);
        drain(c);
        cri_conn_shutdown(c);
        drain(c);
    }
    cri_conn_free(c);
    free(daemon_state.pod_cidr);
    daemon_state.pod_cidr = NULL;
    return 0;
}
