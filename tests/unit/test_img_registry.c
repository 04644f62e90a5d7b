/* End-to-end tests of the registry client (img_registry.c, img_conn.c,
 * img_auth.c, img_tls.c, img_content.c) against img_fake_registry.py, a
 * Python registry with fault injection started on 127.0.0.1 per test
 * group (no root, no network).  Covers: manifests by tag (chunked) and by
 * digest, registry error codes, blob fetch with progress and data
 * callbacks, resume after a dropped connection and from a partial file
 * (counting bytes served), servers ignoring Range, digest mismatch, 503
 * retry, the Bearer token flow with Basic credentials, redirects that drop
 * Authorization, cancellation, the parallel-blob limit, TLS with a CA made
 * by openssl, and mirror fallback with the localhost plain-HTTP fallback. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include <fcntl.h>
#include <ftw.h>
#include <signal.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include "image/img_net.h"

extern char **environ;

#define BLOB_SIZE 300000

struct server {
    pid_t pid;
    int port;
};

struct fx {
    char dir[64];
    uv_loop_t loop;
    struct img_content *content;
    struct img_registry *reg;
    struct img_registries *cfg;
    struct server srv, tls_srv, mtls_srv;
    uint8_t blob[BLOB_SIZE];
    char blob_digest[IMG_DIGEST_MAX];
    char manifest_digest[IMG_DIGEST_MAX];
    char *manifest;
    bool have_tls;
};

struct outcome {
    int calls;
    int status;
    char msg[AG_ERR_MSG_LEN];
    /* manifests */
    size_t len;
    char media_type[128];
    char digest[IMG_DIGEST_MAX];
    uint8_t *data;
    /* blobs */
    uint64_t next_off;
    bool ordered;
    uint64_t progress;
    int chunks;
};

static struct fx *g;

/* ---- helpers ------------------------------------------------------------------- */

static int rm_one(const char *p, const struct stat *st, int flag, struct FTW *f)
{
    return remove(p);
}

static void write_file(const char *path, const void *data, size_t len)
{
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, data, len), (ssize_t)len);
    close(fd);
}

static const char *script_path(void)
{
    static char path[PATH_MAX];
    const char *slash = strrchr(__FILE__, '/');

    snprintf(path, sizeof(path), "%.*s/img_fake_registry.py", slash ? (int)(slash - __FILE__) : 1,
             slash ? __FILE__ : ".");
    return path;
}

static int start_server(struct server *s, const char *cert, const char *key, const char *client_ca)
{
    char root[PATH_MAX], stats[PATH_MAX], portf[PATH_MAX];
    const char *tag = client_ca ? "mtls" : cert ? "tls" : "plain";

    snprintf(root, sizeof(root), "%s/srv", g->dir);
    snprintf(stats, sizeof(stats), "%s/stats-%s", g->dir, tag);
    snprintf(portf, sizeof(portf), "%s/port-%s", g->dir, tag);
    char a0[] = "python3", a2[] = "--root", a4[] = "--stats", a6[] = "--port-file";
    char a8[] = "--cert", a10[] = "--key", a12[] = "--client-ca", script[PATH_MAX];
    char c[PATH_MAX] = "", k[PATH_MAX] = "", ca[PATH_MAX] = "";
    snprintf(script, sizeof(script), "%s", script_path());
    if (cert != NULL) {
        snprintf(c, sizeof(c), "%s", cert);
        snprintf(k, sizeof(k), "%s", key);
    }
    if (client_ca != NULL)
        snprintf(ca, sizeof(ca), "%s", client_ca);
    char *argv[] = {a0,
                    script,
                    a2,
                    root,
                    a4,
                    stats,
                    a6,
                    portf,
                    cert ? a8 : NULL,
                    c,
                    a10,
                    k,
                    client_ca ? a12 : NULL,
                    ca,
                    NULL};
    if (posix_spawnp(&s->pid, "python3", NULL, NULL, argv, environ) != 0)
        return -1;
    for (int i = 0; i < 200; i++) {
        char *text = NULL;
        if (ag_file_read(portf, 64, &text, NULL) == 0) {
            s->port = atoi(text);
            free(text);
            return 0;
        }
        usleep(50000);
    }
    return -1;
}

static void stop_server(struct server *s)
{
    if (s->pid > 0) {
        kill(s->pid, SIGTERM);
        waitpid(s->pid, NULL, 0);
        s->pid = 0;
    }
}

static void new_registry_opts(const char *yaml, unsigned parallel, uint32_t stall_ms, bool proxy)
{
    struct img_registry_opts o = {.loop = &g->loop,
                                  .content = g->content,
                                  .max_parallel_blobs = parallel,
                                  .max_retries = 2,
                                  .retry_base_ms = 20,
                                  .connect_timeout_ms = 5000,
                                  .stall_timeout_ms = stall_ms,
                                  .proxy_from_env = proxy};
    struct ag_err err;

    ag_err_init(&err);
    img_registries_free(g->cfg);
    g->cfg = NULL;
    if (yaml != NULL) {
        if (img_registries_parse(yaml, strlen(yaml), &g->cfg, &err) < 0)
            fail_msg("registries.yaml: %s", err.msg);
        o.registries = g->cfg;
    }
    if (img_registry_new(&o, &g->reg, &err) < 0)
        fail_msg("registry: %s", err.msg);
}

static void new_registry(const char *yaml, unsigned parallel)
{
    new_registry_opts(yaml, parallel, 5000, false);
}

static void close_registry(void)
{
    if (g->reg != NULL) {
        img_registry_close(g->reg);
        g->reg = NULL;
    }
    for (int i = 0; i < 200 && uv_run(&g->loop, UV_RUN_NOWAIT) != 0; i++)
        usleep(10000);
}

static void run_until(int *calls, int want)
{
    uint64_t deadline = uv_now(&g->loop) + 20000;

    while (*calls < want && uv_now(&g->loop) < deadline) {
        uv_run(&g->loop, UV_RUN_ONCE);
        uv_update_time(&g->loop);
    }
    assert_int_equal(*calls, want);
}

static void make_certs(void)
{
    char cmd[4096];

    snprintf(cmd, sizeof(cmd),
             "cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem "
             "-days 2 -subj /CN=picocri-test-ca >/dev/null 2>&1 && "
             "openssl req -newkey rsa:2048 -nodes -keyout srv.key -out srv.csr "
             "-subj /CN=localhost >/dev/null 2>&1 && "
             "printf 'subjectAltName=DNS:localhost\\n' > ext.cnf && "
             "openssl x509 -req -in srv.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out srv.pem -days 2 -extfile ext.cnf >/dev/null 2>&1 && "
             "openssl req -newkey rsa:2048 -nodes -keyout cli.key -out cli.csr "
             "-subj /CN=picocri-client >/dev/null 2>&1 && "
             "openssl x509 -req -in cli.csr -CA ca.pem -CAkey ca.key -CAcreateserial "
             "-out cli.pem -days 2 >/dev/null 2>&1",
             g->dir);
    g->have_tls = system(cmd) == 0;
}

static int group_setup(void **state)
{
    char p[PATH_MAX];
    struct ag_err err;

    g = calloc(1, sizeof(*g));
    strcpy(g->dir, "/tmp/picocri-reg-XXXXXX");
    assert_non_null(mkdtemp(g->dir));
    assert_int_equal(uv_loop_init(&g->loop), 0);
    ag_err_init(&err);
    assert_int_equal(img_content_open(g->dir, &g->content, &err), 0);
    for (size_t i = 0; i < BLOB_SIZE; i++)
        g->blob[i] = (uint8_t)((i * 131) ^ (i >> 8));
    img_digest_sha256(g->blob, BLOB_SIZE, g->blob_digest);
    snprintf(p, sizeof(p), "%s/srv", g->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/srv/blobs", g->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/srv/manifests", g->dir);
    assert_int_equal(mkdir(p, 0755), 0);
    snprintf(p, sizeof(p), "%s/srv/blobs/%s", g->dir, g->blob_digest + 7);
    write_file(p, g->blob, BLOB_SIZE);
    assert_true(
        asprintf(&g->manifest,
                 "{\"schemaVersion\":2,\"mediaType\":\"application/vnd.oci.image.manifest."
                 "v1+json\",\"config\":{\"mediaType\":\"application/vnd.oci.image.config."
                 "v1+json\",\"digest\":\"%s\",\"size\":%d},\"layers\":[],\"pad\":\"%0400d\"}",
                 g->blob_digest, BLOB_SIZE, 0) > 0);
    img_digest_sha256(g->manifest, strlen(g->manifest), g->manifest_digest);
    snprintf(p, sizeof(p), "%s/srv/manifests/v1", g->dir);
    write_file(p, g->manifest, strlen(g->manifest));
    snprintf(p, sizeof(p), "%s/srv/manifests/%s", g->dir, g->manifest_digest);
    for (char *c = p + strlen(g->dir); *c; c++)
        if (*c == ':')
            *c = '_';
    write_file(p, g->manifest, strlen(g->manifest));
    if (start_server(&g->srv, NULL, NULL, NULL) < 0) {
        fprintf(stderr, "cannot start the python registry\n");
        return -1;
    }
    make_certs();
    if (g->have_tls) {
        char cert[PATH_MAX], key[PATH_MAX], ca[PATH_MAX];
        snprintf(cert, sizeof(cert), "%s/srv.pem", g->dir);
        snprintf(key, sizeof(key), "%s/srv.key", g->dir);
        snprintf(ca, sizeof(ca), "%s/ca.pem", g->dir);
        g->have_tls = start_server(&g->tls_srv, cert, key, NULL) == 0 &&
                      start_server(&g->mtls_srv, cert, key, ca) == 0;
    }
    *state = g;
    return 0;
}

static int group_teardown(void **state)
{
    stop_server(&g->srv);
    stop_server(&g->tls_srv);
    stop_server(&g->mtls_srv);
    close_registry();
    img_registries_free(g->cfg);
    img_content_free(g->content);
    assert_int_equal(uv_run(&g->loop, UV_RUN_DEFAULT), 0);
    assert_int_equal(uv_loop_close(&g->loop), 0);
    if (getenv("IMG_TEST_KEEP") == NULL)
        nftw(g->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(g->manifest);
    free(g);
    return 0;
}

static int test_setup(void **state)
{
    char p[PATH_MAX], stats[PATH_MAX];

    new_registry(NULL, 3);
    /* Start each test with no published blob, no partial, empty stats. */
    assert_int_equal(img_content_blob_path(g->content, g->blob_digest, p, sizeof(p)), 0);
    unlink(p);
    snprintf(p, sizeof(p), "%s/content/ingest/%s.partial", g->dir, g->blob_digest + 7);
    unlink(p);
    snprintf(stats, sizeof(stats), "%s/stats-plain", g->dir);
    unlink(stats);
    return 0;
}

static int test_teardown(void **state)
{
    close_registry();
    return 0;
}

static struct img_ref ref_of(const char *domain_fmt, int port, const char *path, const char *obj)
{
    struct img_ref r;

    memset(&r, 0, sizeof(r));
    snprintf(r.domain, sizeof(r.domain), domain_fmt, port);
    snprintf(r.path, sizeof(r.path), "%s", path);
    if (strchr(obj, ':'))
        snprintf(r.digest, sizeof(r.digest), "%s", obj);
    else
        snprintf(r.tag, sizeof(r.tag), "%s", obj);
    return r;
}

/* Stats lines of the plain server whose path contains `needle`. */
static int stats_lines(const char *needle, char lines[][512], int max)
{
    char path[PATH_MAX], *text = NULL, *save = NULL;
    int n = 0;

    snprintf(path, sizeof(path), "%s/stats-plain", g->dir);
    if (ag_file_read(path, 1 << 20, &text, NULL) < 0)
        return 0;
    for (char *l = strtok_r(text, "\n", &save); l && n < max; l = strtok_r(NULL, "\n", &save))
        if (strstr(l, needle) != NULL)
            snprintf(lines[n++], 512, "%s", l);
    free(text);
    return n;
}

static long stat_field(const char *line, const char *key)
{
    char k[64];
    snprintf(k, sizeof(k), "\"%s\": ", key);
    const char *p = strstr(line, k);
    return p ? strtol(p + strlen(k), NULL, 10) : -1;
}

/* ---- callbacks -------------------------------------------------------------------- */

static void on_manifest(int status, struct img_manifest_data *m, const struct ag_err *err,
                        void *data)
{
    struct outcome *o = data;

    o->calls++;
    o->status = status;
    snprintf(o->msg, sizeof(o->msg), "%s", err->msg);
    if (status == 0) {
        o->len = m->len;
        snprintf(o->media_type, sizeof(o->media_type), "%s", m->media_type);
        snprintf(o->digest, sizeof(o->digest), "%s", m->digest);
        o->data = steal_ptr(&m->data);
    }
}

static void on_blob_data(uint64_t off, const uint8_t *p, size_t n, void *data)
{
    struct outcome *o = data;

    if (off != o->next_off || memcmp(p, g->blob + off, n) != 0)
        o->ordered = false;
    o->next_off = off + n;
    o->chunks++;
}

static void on_blob_progress(uint64_t done, int64_t total, void *data)
{
    struct outcome *o = data;

    /* Progress may go back to 0 when a server ignores Range. */
    if (total == BLOB_SIZE && done <= BLOB_SIZE)
        o->progress = done;
    else
        o->progress = UINT64_MAX;
}

static void on_blob_done(int status, const struct ag_err *err, void *data)
{
    struct outcome *o = data;

    o->calls++;
    o->status = status;
    snprintf(o->msg, sizeof(o->msg), "%s", err->msg);
}

static void fetch_manifest(const struct img_ref *ref, const struct img_auth_config *auth,
                           struct outcome *o)
{
    struct ag_err err;

    memset(o, 0, sizeof(*o));
    ag_err_init(&err);
    assert_int_equal(img_registry_fetch_manifest(g->reg, ref, auth, on_manifest, o, NULL, &err), 0);
    run_until(&o->calls, 1);
}

static struct img_fetch *start_blob(const struct img_ref *ref, const struct img_auth_config *auth,
                                    struct outcome *o)
{
    struct img_blob_req b = {.digest = g->blob_digest,
                             .size = BLOB_SIZE,
                             .on_progress = on_blob_progress,
                             .on_data = on_blob_data,
                             .on_done = on_blob_done,
                             .data = o};
    struct img_fetch *f = NULL;
    struct ag_err err;

    memset(o, 0, sizeof(*o));
    o->ordered = true;
    ag_err_init(&err);
    if (img_registry_fetch_blob(g->reg, ref, &b, auth, &f, &err) < 0)
        fail_msg("fetch_blob: %s", err.msg);
    return f;
}

static void fetch_blob(const struct img_ref *ref, const struct img_auth_config *auth,
                       struct outcome *o)
{
    start_blob(ref, auth, o);
    run_until(&o->calls, 1);
}

static bool blob_published(void)
{
    char p[PATH_MAX];
    struct stat st;

    assert_int_equal(img_content_blob_path(g->content, g->blob_digest, p, sizeof(p)), 0);
    return stat(p, &st) == 0 && st.st_size == BLOB_SIZE;
}

/* ---- tests ----------------------------------------------------------------------- */

static void test_manifest(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "plain/app", "v1");
    struct outcome o;

    fetch_manifest(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    assert_int_equal(o.len, strlen(g->manifest));
    assert_memory_equal(o.data, g->manifest, o.len);
    assert_string_equal(o.media_type, "application/vnd.oci.image.manifest.v1+json");
    assert_string_equal(o.digest, g->manifest_digest);
    free(o.data);

    ref = ref_of("127.0.0.1:%d", g->srv.port, "plain/app", g->manifest_digest);
    fetch_manifest(&ref, NULL, &o);
    assert_int_equal(o.status, 0);
    assert_string_equal(o.digest, g->manifest_digest);
    free(o.data);

    /* Both came over one kept-alive connection (same client port). */
    char lines[4][512];
    assert_int_equal(stats_lines("/v2/plain/app/manifests/", lines, 4), 2);
    assert_int_equal(stat_field(lines[0], "peer"), stat_field(lines[1], "peer"));

    ref = ref_of("127.0.0.1:%d", g->srv.port, "plain/app", "missing");
    fetch_manifest(&ref, NULL, &o);
    assert_int_equal(o.status, -ENOENT);
    if (strstr(o.msg, "404 MANIFEST_UNKNOWN: manifest unknown") == NULL)
        fail_msg("message: %s", o.msg);
}

static void test_manifest_digest_mismatch(void **state)
{
    char other[IMG_DIGEST_MAX], p[PATH_MAX];
    struct outcome o;

    /* Served under a digest that is not its own. */
    img_digest_sha256("x", 1, other);
    snprintf(p, sizeof(p), "%s/srv/manifests/sha256_%s", g->dir, other + 7);
    write_file(p, g->manifest, strlen(g->manifest));
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "plain/app", other);
    fetch_manifest(&ref, NULL, &o);
    assert_int_equal(o.status, -EBADMSG);
    assert_non_null(strstr(o.msg, "does not match"));
}

static void test_blob(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "plain/app", "v1");
    struct outcome o;

    fetch_blob(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    assert_true(o.ordered);
    assert_int_equal(o.next_off, BLOB_SIZE);
    assert_int_equal(o.progress, BLOB_SIZE);
    assert_true(blob_published());

    /* Present already: no request at all. */
    char lines[8][512];
    int before = stats_lines("/blobs/", lines, 8);
    fetch_blob(&ref, NULL, &o);
    assert_int_equal(o.status, 0);
    assert_int_equal(stats_lines("/blobs/", lines, 8), before);
}

static void test_resume_after_drop(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "drop/app", "v1");
    char lines[8][512];
    struct outcome o;

    fetch_blob(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    assert_true(o.ordered);
    assert_true(blob_published());
    assert_int_equal(stats_lines("/v2/drop/app/blobs/", lines, 8), 2);
    long first = stat_field(lines[0], "bytes");
    assert_int_equal(first, BLOB_SIZE / 2);
    char want[64];
    snprintf(want, sizeof(want), "\"range\": \"bytes=%ld-\"", first);
    assert_non_null(strstr(lines[1], want));
    /* Only the rest was fetched again. */
    assert_int_equal(stat_field(lines[1], "bytes") + first, BLOB_SIZE);
}

static void test_resume_from_partial(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "plain/app", "v1");
    char p[PATH_MAX], lines[8][512];
    struct outcome o;

    snprintf(p, sizeof(p), "%s/content/ingest/%s.partial", g->dir, g->blob_digest + 7);
    write_file(p, g->blob, 100000);
    fetch_blob(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    assert_true(blob_published());
    assert_int_equal(stats_lines("/v2/plain/app/blobs/", lines, 8), 1);
    assert_non_null(strstr(lines[0], "\"range\": \"bytes=100000-\""));
    assert_int_equal(stat_field(lines[0], "bytes"), BLOB_SIZE - 100000);
    assert_int_equal(stat_field(lines[0], "status"), 206);
}

static void test_range_ignored(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "norange/app", "v1");
    char lines[8][512];
    struct outcome o;

    fetch_blob(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    assert_true(blob_published());
    assert_int_equal(stats_lines("/v2/norange/app/blobs/", lines, 8), 2);
    assert_int_equal(stat_field(lines[1], "status"), 200);
    assert_int_equal(stat_field(lines[1], "bytes"), BLOB_SIZE);
}

static void test_digest_mismatch(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "bad/app", "v1");
    char p[PATH_MAX];
    struct outcome o;

    fetch_blob(&ref, NULL, &o);
    assert_int_equal(o.status, -EBADMSG);
    if (strstr(o.msg, "digest mismatch") == NULL)
        fail_msg("message: %s", o.msg);
    assert_false(blob_published());
    snprintf(p, sizeof(p), "%s/content/ingest/%s.partial", g->dir, g->blob_digest + 7);
    assert_int_not_equal(access(p, F_OK), 0);
}

static void test_retry_503(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "flaky/app", "v1");
    char lines[8][512];
    struct outcome o;

    fetch_manifest(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    free(o.data);
    assert_int_equal(stats_lines("/v2/flaky/app/manifests/v1", lines, 8), 2);
    assert_int_equal(stat_field(lines[0], "status"), 503);
}

static void test_bearer_auth(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "auth/app", "v1");
    char user[] = "alice", pass[] = "secret", bad[] = "nope";
    struct img_auth_config auth = {.username = user, .password = pass};
    struct img_auth_config wrong = {.username = user, .password = bad};
    char lines[16][512];
    struct outcome o;

    fetch_manifest(&ref, &auth, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    free(o.data);
    assert_int_equal(stats_lines("/token", lines, 16), 1);
    assert_non_null(strstr(lines[0], "Basic YWxpY2U6c2VjcmV0"));
    assert_non_null(strstr(lines[0], "scope=repository%3Aauth%2Fapp%3Apull"));
    assert_int_equal(stats_lines("/v2/auth/app/manifests/v1", lines, 16), 2);
    assert_int_equal(stat_field(lines[0], "status"), 401);
    assert_non_null(strstr(lines[1], "Bearer tok-"));

    /* The blob reuses the cached token: no new token request, no 401. */
    fetch_blob(&ref, &auth, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    assert_int_equal(stats_lines("/token", lines, 16), 1);
    assert_int_equal(stats_lines("/v2/auth/app/blobs/", lines, 16), 1);

    /* Wrong password: the error says what failed. */
    ref = ref_of("127.0.0.1:%d", g->srv.port, "auth/other", "v1");
    fetch_manifest(&ref, &wrong, &o);
    assert_int_equal(o.status, -EACCES);
    if (strstr(o.msg, "token") == NULL || strstr(o.msg, "401") == NULL)
        fail_msg("message: %s", o.msg);
}

static void test_redirect_drops_auth(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "authredir/app", "v1");
    char user[] = "alice", pass[] = "secret";
    struct img_auth_config auth = {.username = user, .password = pass};
    char lines[8][512];
    struct outcome o;

    fetch_blob(&ref, &auth, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    assert_true(blob_published());
    assert_int_equal(stats_lines("/storage/", lines, 8), 1);
    assert_non_null(strstr(lines[0], "\"auth\": \"\""));
    assert_non_null(strstr(lines[0], "\"host\": \"localhost:"));
}

static void test_stall_timeout(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "stall/app", "v1");
    char lines[8][512];
    struct outcome o;

    close_registry();
    new_registry_opts(NULL, 3, 400, false);
    fetch_blob(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    assert_true(blob_published());
    assert_int_equal(stats_lines("/v2/stall/app/blobs/", lines, 8), 2);
    assert_non_null(strstr(lines[1], "\"range\": \"bytes=150000-\""));
}

static void test_token_variants(void **state)
{
    char idt[] = "idtok-1", stat_tok[] = "static-tok";
    struct img_auth_config by_identity = {.identity_token = idt};
    struct img_auth_config by_token = {.registry_token = stat_tok};
    char lines[8][512];
    struct outcome o;

    /* identity_token: OAuth2 refresh-token grant, POSTed to the realm. */
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "auth/idt", "v1");
    fetch_manifest(&ref, &by_identity, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    free(o.data);
    assert_int_equal(stats_lines("\"method\": \"POST\"", lines, 8), 1);
    assert_non_null(strstr(lines[0], "/token"));

    /* registry_token: sent as the bearer token at once, no challenge. */
    ref = ref_of("127.0.0.1:%d", g->srv.port, "auth/stat", "v1");
    fetch_manifest(&ref, &by_token, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    free(o.data);
    assert_int_equal(stats_lines("/v2/auth/stat/", lines, 8), 1);
    assert_non_null(strstr(lines[0], "Bearer static-tok"));
}

static void test_proxy_connect(void **state)
{
    char proxy[64], lines[8][512];
    struct outcome o;

    close_registry();
    snprintf(proxy, sizeof(proxy), "http://127.0.0.1:%d", g->srv.port);
    setenv("HTTP_PROXY", proxy, 1);
    setenv("HTTPS_PROXY", proxy, 1);
    unsetenv("NO_PROXY");
    unsetenv("no_proxy");
    new_registry_opts(NULL, 3, 5000, true);
    unsetenv("HTTP_PROXY");
    unsetenv("HTTPS_PROXY");
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "plain/app", "v1");
    fetch_manifest(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    free(o.data);
    /* TLS through the tunnel first (refused by the plain server), then plain. */
    assert_int_equal(stats_lines("\"connect\"", lines, 8), 2);
    char want[64];
    snprintf(want, sizeof(want), "\"connect\": \"127.0.0.1:%d\"", g->srv.port);
    assert_non_null(strstr(lines[0], want));
    assert_int_equal(stats_lines("/v2/plain/app/manifests/v1", lines, 8), 1);
}

static void test_cancel(void **state)
{
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "slow/app", "v1");
    struct outcome o;
    struct img_fetch *f = start_blob(&ref, NULL, &o);

    while (o.progress < 4096 && o.calls == 0)
        uv_run(&g->loop, UV_RUN_ONCE);
    img_fetch_cancel(f);
    run_until(&o.calls, 1);
    assert_int_equal(o.status, -ECANCELED);
    assert_false(blob_published());
}

static void test_parallel_limit(void **state)
{
    enum { N = 4 };
    struct outcome o[N];
    uint8_t small[N][6000];
    char digests[N][IMG_DIGEST_MAX], p[PATH_MAX], lines[16][512];
    int done = 0;

    close_registry();
    new_registry(NULL, 2);
    for (int i = 0; i < N; i++) {
        memset(small[i], 'a' + i, sizeof(small[i]));
        img_digest_sha256(small[i], sizeof(small[i]), digests[i]);
        snprintf(p, sizeof(p), "%s/srv/blobs/%s", g->dir, digests[i] + 7);
        write_file(p, small[i], sizeof(small[i]));
    }
    struct img_ref ref = ref_of("127.0.0.1:%d", g->srv.port, "slow/par", "v1");
    for (int i = 0; i < N; i++) {
        struct img_blob_req b = {
            .digest = digests[i], .size = sizeof(small[i]), .on_done = on_blob_done, .data = &o[i]};
        struct ag_err err;
        memset(&o[i], 0, sizeof(o[i]));
        assert_int_equal(img_registry_fetch_blob(g->reg, &ref, &b, NULL, NULL, &err), 0);
    }
    uint64_t deadline = uv_now(&g->loop) + 20000;
    while (done < N && uv_now(&g->loop) < deadline) {
        uv_run(&g->loop, UV_RUN_ONCE);
        done = 0;
        for (int i = 0; i < N; i++)
            done += o[i].calls;
    }
    for (int i = 0; i < N; i++) {
        assert_int_equal(o[i].calls, 1);
        assert_int_equal(o[i].status, 0);
    }
    int n = stats_lines("/v2/slow/par/blobs/", lines, 16);
    assert_int_equal(n, N);
    for (int i = 0; i < n; i++)
        assert_true(stat_field(lines[i], "max_active") <= 2);
}

static void test_tls(void **state)
{
    char yaml[1024];
    struct outcome o;

    if (!g->have_tls)
        skip();
    close_registry();
    snprintf(yaml, sizeof(yaml),
             "configs:\n  \"localhost:%d\":\n    tls:\n      ca_file: %s/ca.pem\n", g->tls_srv.port,
             g->dir);
    new_registry(yaml, 3);
    struct img_ref ref = ref_of("localhost:%d", g->tls_srv.port, "plain/app", "v1");
    fetch_manifest(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    assert_string_equal(o.digest, g->manifest_digest);
    free(o.data);
    fetch_blob(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    assert_true(blob_published());

    /* Without the CA the certificate is refused, with no plain-HTTP
     * fallback, and the message names the verification failure. */
    close_registry();
    new_registry(NULL, 3);
    fetch_manifest(&ref, NULL, &o);
    assert_int_equal(o.status, -EKEYREJECTED);
    if (strstr(o.msg, "certificate verification failed") == NULL)
        fail_msg("message: %s", o.msg);
}

static void test_mtls_and_skip_verify(void **state)
{
    char yaml[1024];
    struct outcome o;

    if (!g->have_tls)
        skip();
    struct img_ref ref = ref_of("localhost:%d", g->mtls_srv.port, "plain/app", "v1");
    /* The server requires a client certificate: without one, refused. */
    close_registry();
    snprintf(yaml, sizeof(yaml),
             "configs:\n  \"localhost:%d\":\n    tls:\n      ca_file: %s/ca.pem\n",
             g->mtls_srv.port, g->dir);
    new_registry(yaml, 3);
    fetch_manifest(&ref, NULL, &o);
    assert_true(o.status < 0);
    /* With cert_file and key_file: accepted. */
    close_registry();
    snprintf(yaml, sizeof(yaml),
             "configs:\n  \"localhost:%d\":\n    tls:\n      ca_file: %s/ca.pem\n"
             "      cert_file: %s/cli.pem\n      key_file: %s/cli.key\n",
             g->mtls_srv.port, g->dir, g->dir, g->dir);
    new_registry(yaml, 3);
    fetch_manifest(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    free(o.data);
    /* No CA but insecure_skip_verify for that host: accepted. */
    close_registry();
    snprintf(yaml, sizeof(yaml),
             "configs:\n  \"localhost:%d\":\n    tls:\n      insecure_skip_verify: true\n",
             g->tls_srv.port);
    new_registry(yaml, 3);
    ref = ref_of("localhost:%d", g->tls_srv.port, "plain/app", "v1");
    fetch_manifest(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    free(o.data);
}

static void test_mirror_fallback(void **state)
{
    char yaml[1024], lines[8][512];
    struct outcome o;

    close_registry();
    /* A dead mirror first, then a working one with a rewrite; the upstream
     * is this same server reached over https first (localhost fallback). */
    snprintf(yaml, sizeof(yaml),
             "mirrors:\n  \"upstream.test\":\n    endpoint:\n      - http://127.0.0.1:1\n"
             "      - http://127.0.0.1:%d\n    rewrite:\n      \"^lib/(.*)$\": \"plain/$1\"\n",
             g->srv.port);
    new_registry(yaml, 3);
    struct img_ref ref = ref_of("upstream.test", 0, "lib/app", "v1");
    fetch_manifest(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    free(o.data);
    assert_int_equal(stats_lines("/v2/plain/app/manifests/v1?ns=upstream.test", lines, 8), 1);

    /* Upstream 127.0.0.1:<port> is tried with TLS, then plain HTTP. */
    close_registry();
    new_registry(NULL, 3);
    ref = ref_of("127.0.0.1:%d", g->srv.port, "plain/app", "v1");
    fetch_manifest(&ref, NULL, &o);
    if (o.status != 0)
        fail_msg("%s", o.msg);
    free(o.data);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_manifest, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_manifest_digest_mismatch, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_blob, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_after_drop, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_resume_from_partial, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_range_ignored, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_digest_mismatch, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_retry_503, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_bearer_auth, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_redirect_drops_auth, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_stall_timeout, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_token_variants, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_proxy_connect, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_cancel, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_parallel_limit, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_tls, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_mtls_and_skip_verify, test_setup, test_teardown),
        cmocka_unit_test_setup_teardown(test_mirror_fallback, test_setup, test_teardown),
    };
    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
