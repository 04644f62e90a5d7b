/* cri/: the image client subcommands, `picocri pull IMAGE` and
 * `picocri images`, speaking CRI to the daemon's socket.
 *
 * Progress: PullImage is one unary call, so `pull` runs it on a second
 * thread and, meanwhile, polls ImageStatus(verbose) for the same reference
 * every POLL_MS: while a pull of that reference runs in the daemon, the
 * answer carries info["pullProgress"], the daemon's live per-layer state
 * (bytes done and total, waiting/downloading/unpacking/done) kept in memory
 * — no files, no extra RPC.  On a terminal each layer gets a bar redrawn in
 * place; otherwise one plain line is printed per layer when it completes.
 * The exit status is that of the PullImage call.
 */
#include "cri.h"

#include <api.pb.h>
#include <cjson/cJSON.h>
#include <pb_decode.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PULL_TIMEOUT_MS (60 * 60 * 1000)
#define LIST_TIMEOUT_MS 10000
#define POLL_MS 250
#define MAX_LAYERS 128

int cri_cli_image_main(int argc, char **argv);

struct pull_job {
    const char *sock;
    const char *image;
    runtime_v1_PullImageResponse resp;
    struct ag_err err;
    int rc;
    volatile int done;
};

static void *pull_thread(void *arg)
{
    struct pull_job *j = arg;
    runtime_v1_ImageSpec spec = {.image = (char *)j->image};
    runtime_v1_PullImageRequest req = {.image = &spec};

    ag_err_init(&j->err);
    j->rc = cri_client_call(j->sock, "/runtime.v1.ImageService/PullImage",
                            runtime_v1_PullImageRequest_fields, &req,
                            runtime_v1_PullImageResponse_fields, &j->resp, PULL_TIMEOUT_MS,
                            &j->err);
    __atomic_store_n(&j->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

static void human(double n, char *out, size_t len)
{
    const char *u[] = {"B", "KiB", "MiB", "GiB", "TiB"};
    size_t i = 0;

    while (n >= 1024 && i + 1 < AG_ARRAY_LEN(u)) {
        n /= 1024;
        i++;
    }
    snprintf(out, len, i == 0 ? "%.0f %s" : "%.1f %s", n, u[i]);
}

struct view {
    bool tty;
    int drawn;                    /* lines drawn last time (tty) */
    bool reported[MAX_LAYERS];    /* plain mode: "done" printed */
};

static void draw_layer(struct view *v, int i, const char *digest, double done, double total,
                       const char *state)
{
    char d[32], t[32], bar[41];
    int width = 40, fill = total > 0 ? (int)(done * width / total) : 0;
    const char *hex = strchr(digest, ':');

    hex = hex ? hex + 1 : digest;
    human(done, d, sizeof(d));
    human(total, t, sizeof(t));
    if (v->tty) {
        fill = fill > width ? width : fill;
        memset(bar, '=', (size_t)fill);
        memset(bar + fill, ' ', (size_t)(width - fill));
        bar[width] = '\0';
        printf("\r\033[K%.12s [%s] %10s / %-10s %s\n", hex, bar, d, t, state);
    } else if (strcmp(state, "done") == 0 && i < MAX_LAYERS && !v->reported[i]) {
        v->reported[i] = true;
        printf("layer %.12s done %s\n", hex, t);
    }
}

static void show_progress(struct view *v, const char *json)
{
    cJSON *j = cJSON_Parse(json), *layers, *l;
    int i = 0;

    if (j == NULL)
        return;
    layers = cJSON_GetObjectItemCaseSensitive(j, "layers");
    if (v->tty && v->drawn > 0)
        printf("\033[%dA", v->drawn);
    cJSON_ArrayForEach(l, layers)
    {
        const cJSON *dg = cJSON_GetObjectItemCaseSensitive(l, "digest");
        const cJSON *dn = cJSON_GetObjectItemCaseSensitive(l, "done");
        const cJSON *tt = cJSON_GetObjectItemCaseSensitive(l, "total");
        const cJSON *st = cJSON_GetObjectItemCaseSensitive(l, "state");
        if (!cJSON_IsString(dg) || !cJSON_IsNumber(dn) || !cJSON_IsNumber(tt) ||
            !cJSON_IsString(st))
            continue;
        draw_layer(v, i++, dg->valuestring, dn->valuedouble, tt->valuedouble, st->valuestring);
    }
    if (v->tty)
        v->drawn = i;
    fflush(stdout);
    cJSON_Delete(j);
}

static void poll_progress(const char *sock, const char *image, struct view *v)
{
    runtime_v1_ImageSpec spec = {.image = (char *)image};
    runtime_v1_ImageStatusRequest req = {.image = &spec, .verbose = true};
    runtime_v1_ImageStatusResponse resp = runtime_v1_ImageStatusResponse_init_zero;
    struct ag_err err;

    ag_err_init(&err);
    if (cri_client_call(sock, "/runtime.v1.ImageService/ImageStatus",
                        runtime_v1_ImageStatusRequest_fields, &req,
                        runtime_v1_ImageStatusResponse_fields, &resp, 2000, &err) == 0)
        for (pb_size_t i = 0; i < resp.info_count; i++)
            if (resp.info[i].key && strcmp(resp.info[i].key, "pullProgress") == 0 &&
                resp.info[i].value)
                show_progress(v, resp.info[i].value);
    pb_release(runtime_v1_ImageStatusResponse_fields, &resp);
}

static int cmd_pull(const char *sock, const char *image)
{
    struct pull_job j = {.sock = sock, .image = image};
    struct view v = {.tty = isatty(STDOUT_FILENO) == 1};
    pthread_t th;
    int rc;

    if (pthread_create(&th, NULL, pull_thread, &j) != 0) {
        fprintf(stderr, "picocri pull: cannot start a thread\n");
        return 1;
    }
    if (!v.tty)
        printf("pulling %s\n", image);
    while (!__atomic_load_n(&j.done, __ATOMIC_ACQUIRE)) {
        struct timespec ts = {0, POLL_MS * 1000000L};
        nanosleep(&ts, NULL);
        if (!__atomic_load_n(&j.done, __ATOMIC_ACQUIRE))
            poll_progress(sock, image, &v);
    }
    pthread_join(th, NULL);
    if (j.rc < 0) {
        fprintf(stderr, "picocri pull: %s\n", j.err.msg);
        rc = 1;
    } else {
        printf("pulled %s: %s\n", image, j.resp.image_ref ? j.resp.image_ref : "?");
        rc = 0;
    }
    pb_release(runtime_v1_PullImageResponse_fields, &j.resp);
    return rc;
}

static int cmd_images(const char *sock, bool quiet)
{
    runtime_v1_ListImagesRequest req = runtime_v1_ListImagesRequest_init_zero;
    runtime_v1_ListImagesResponse resp = runtime_v1_ListImagesResponse_init_zero;
    struct ag_err err;
    char size[32];

    ag_err_init(&err);
    if (cri_client_call(sock, "/runtime.v1.ImageService/ListImages",
                        runtime_v1_ListImagesRequest_fields, &req,
                        runtime_v1_ListImagesResponse_fields, &resp, LIST_TIMEOUT_MS, &err) < 0) {
        fprintf(stderr, "picocri images: %s\n", err.msg);
        pb_release(runtime_v1_ListImagesResponse_fields, &resp);
        return 1;
    }
    if (!quiet)
        printf("%-60s %-13s %s\n", "IMAGE", "IMAGE ID", "SIZE");
    for (pb_size_t i = 0; i < resp.images_count; i++) {
        const runtime_v1_Image *im = &resp.images[i];
        const char *id = im->id ? im->id : "";
        const char *hex = strchr(id, ':') ? strchr(id, ':') + 1 : id;
        if (quiet) {
            printf("%s\n", id);
            continue;
        }
        human((double)im->size, size, sizeof(size));
        if (im->repo_tags_count == 0)
            printf("%-60s %-13.13s %s\n", "<none>", hex, size);
        for (pb_size_t t = 0; t < im->repo_tags_count; t++)
            printf("%-60s %-13.13s %s\n", im->repo_tags[t], hex, size);
    }
    pb_release(runtime_v1_ListImagesResponse_fields, &resp);
    return 0;
}

int cri_cli_image_main(int argc, char **argv)
{
    const char *sock = cri_client_default_socket();
    const char *image = NULL;
    bool quiet = false;
    bool pull = strcmp(argv[0], "pull") == 0;

    for (int i = 1; i < argc; i++) {
        if ((strcmp(argv[i], "--socket") == 0 || strcmp(argv[i], "-s") == 0) && i + 1 < argc)
            sock = argv[++i];
        else if (strncmp(argv[i], "--socket=", 9) == 0)
            sock = argv[i] + 9;
        else if (!pull && (strcmp(argv[i], "-q") == 0 || strcmp(argv[i], "--quiet") == 0))
            quiet = true;
        else if (pull && image == NULL && argv[i][0] != '-')
            image = argv[i];
        else {
            fprintf(stderr, "usage: picocri pull [--socket PATH] IMAGE\n"
                            "       picocri images [--socket PATH] [-q]\n");
            return 2;
        }
    }
    if (pull && image == NULL) {
        fprintf(stderr, "usage: picocri pull [--socket PATH] IMAGE\n");
        return 2;
    }
    return pull ? cmd_pull(sock, image) : cmd_images(sock, quiet);
}
