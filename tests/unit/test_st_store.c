/* Unit tests for agent/store: round-trips, restart, crash leftovers (torn
 * records at every length, temporary files, a tag claimed by two images),
 * prefix and name lookups, async writes on a libuv loop, references, and
 * the load time of 10k records.  No root needed: everything lives in a
 * temporary directory removed after each test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "store/store.h"

#ifdef ST_STORE_UNAVAILABLE
#include <stdio.h>
int main(void)
{
    fprintf(stderr, "test_st_store: store.pb.h was not generated from agent/store/store.proto\n");
    return 1;
}
#else

#include <dirent.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#define NS ST_DEFAULT_NS

struct fx {
    char root[64];
    struct st_store *st;
    struct ag_err err;
};

static int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    return remove(p);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    snprintf(f->root, sizeof(f->root), "/tmp/st-test-XXXXXX");
    assert_non_null(mkdtemp(f->root));
    ag_log_set_level(AG_ERROR);
    assert_int_equal(st_store_open(f->root, NULL, &f->st, &f->err), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    st_store_close(f->st);
    nftw(f->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void reopen(struct fx *f)
{
    st_store_close(f->st);
    f->st = NULL;
    assert_int_equal(st_store_open(f->root, NULL, &f->st, &f->err), 0);
}

static char *hexid(char c, int n)
{
    char *s = malloc(ST_ID_HEX_LEN + 1);
    snprintf(s, ST_ID_HEX_LEN + 1, "%c%063x", c, n);
    return s;
}

static char *image_id(char c, int n)
{
    char *h = hexid(c, n), *s = NULL;
    assert_true(asprintf(&s, "sha256:%s", h) > 0);
    free(h);
    return s;
}

static char **strv(int n, ...)
{
    va_list ap;
    char **v = calloc((size_t)n + 1, sizeof(*v));
    va_start(ap, n);
    for (int i = 0; i < n; i++)
        v[i] = strdup(va_arg(ap, const char *));
    va_end(ap);
    return v;
}

static void make_image(picocri_store_ImageRecord *img, char c, int n, const char *tag)
{
    memset(img, 0, sizeof(*img));
    img->id = image_id(c, n);
    if (tag != NULL) {
        img->repo_tags = strv(1, tag);
        img->repo_tags_count = 1;
    }
    img->size = 1234;
    img->layers_count = 2;
    img->layers = calloc(2, sizeof(*img->layers));
    img->layers[0].digest = strdup("sha256:l0");
    img->layers[0].chain_id = strdup("chain0");
    img->layers[1].digest = strdup("sha256:l1");
    img->layers[1].chain_id = strdup("chain1");
}

static void make_pod(picocri_store_PodRecord *pod, char c, int n, const char *name,
                     uint32_t attempt)
{
    memset(pod, 0, sizeof(*pod));
    pod->id = hexid(c, n);
    pod->config = calloc(1, sizeof(*pod->config));
    pod->config->metadata = calloc(1, sizeof(*pod->config->metadata));
    pod->config->metadata->name = strdup(name);
    pod->config->metadata->namespace = strdup("default");
    pod->config->metadata->uid = strdup("uid-1");
    pod->config->metadata->attempt = attempt;
    pod->state = picocri_store_PodState_POD_STATE_READY;
    pod->created_at_ns = 42;
    pod->ips = strv(1, "10.0.0.5");
    pod->ips_count = 1;
}

static void make_ctr(picocri_store_ContainerRecord *ctr, char c, int n, const char *pod_id,
                     const char *name, uint32_t attempt)
{
    memset(ctr, 0, sizeof(*ctr));
    ctr->id = hexid(c, n);
    ctr->pod_id = strdup(pod_id);
    ctr->config = calloc(1, sizeof(*ctr->config));
    ctr->config->metadata = calloc(1, sizeof(*ctr->config->metadata));
    ctr->config->metadata->name = strdup(name);
    ctr->config->metadata->attempt = attempt;
    ctr->lower_layers = strv(1, "chain0");
    ctr->lower_layers_count = 1;
}

static int count_dir(const char *dir)
{
    DIR *d = opendir(dir);
    int n = 0;
    if (d == NULL)
        return 0;
    for (struct dirent *de; (de = readdir(d)) != NULL;)
        n += de->d_name[0] != '.';
    closedir(d);
    return n;
}

static void pod_path(struct fx *f, const char *id, char *out, size_t len)
{
    snprintf(out, len, "%s/meta/%s/pods/%s", f->root, NS, id);
}

static void test_roundtrip(void **state)
{
    struct fx *f = *state;
    picocri_store_PodRecord pod;
    picocri_store_ImageRecord img;
    picocri_store_ContainerRecord ctr;
    const picocri_store_PodRecord *gp;
    const picocri_store_ContainerRecord *gc;
    const picocri_store_ImageRecord *gi;

    make_pod(&pod, 'a', 1, "web", 0);
    char *pid = strdup(pod.id);
    assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);
    assert_null(pod.id); /* moved */
    make_image(&img, 'b', 1, "docker.io/library/nginx:1");
    assert_int_equal(st_image_put(f->st, NS, &img, NULL, NULL, &f->err), 0);
    make_ctr(&ctr, 'c', 1, pid, "app", 0);
    assert_int_equal(st_container_put(f->st, NS, &ctr, NULL, NULL, &f->err), 0);

    assert_int_equal(st_pod_get(f->st, NS, pid, &gp, &f->err), 0);
    assert_string_equal(gp->config->metadata->name, "web");
    assert_string_equal(gp->ips[0], "10.0.0.5");
    assert_int_equal(st_image_get(f->st, NS, "docker.io/library/nginx:1", &gi, &f->err), 0);
    assert_int_equal(gi->size, 1234);
    assert_int_equal(st_count(f->st, NS, ST_KIND_CONTAINER), 1);
    struct st_iter it;
    int n = 0;
    st_iter_init(&it, f->st, NS, ST_KIND_CONTAINER);
    while ((gc = st_iter_next(&it)) != NULL) {
        assert_string_equal(gc->pod_id, pid);
        n++;
    }
    assert_int_equal(n, 1);
    /* Another namespace sees nothing. */
    assert_int_equal(st_pod_get(f->st, "other", pid, &gp, &f->err), -ENOENT);

    assert_int_equal(st_delete(f->st, NS, ST_KIND_POD, pid, NULL, NULL, &f->err), 0);
    assert_int_equal(st_pod_get(f->st, NS, pid, &gp, &f->err), -ENOENT);
    assert_int_equal(st_delete(f->st, NS, ST_KIND_POD, pid, NULL, NULL, &f->err), -ENOENT);
    char path[512];
    pod_path(f, pid, path, sizeof(path));
    assert_int_equal(access(path, F_OK), -1);
    free(pid);
}

static void test_restart(void **state)
{
    struct fx *f = *state;
    char ids[20][ST_ID_HEX_LEN + 1];

    for (int i = 0; i < 20; i++) {
        picocri_store_PodRecord pod;
        char name[16];
        snprintf(name, sizeof(name), "p%d", i);
        make_pod(&pod, 'd', i, name, (uint32_t)i);
        snprintf(ids[i], sizeof(ids[i]), "%s", pod.id);
        assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);
    }
    picocri_store_ImageRecord img;
    make_image(&img, 'e', 1, "busybox:latest");
    assert_int_equal(st_image_put(f->st, NS, &img, NULL, NULL, &f->err), 0);
    reopen(f);
    assert_int_equal(st_count(f->st, NS, ST_KIND_POD), 20);
    for (int i = 0; i < 20; i++) {
        const picocri_store_PodRecord *p;
        assert_int_equal(st_pod_get(f->st, NS, ids[i], &p, &f->err), 0);
        assert_int_equal(p->config->metadata->attempt, (uint32_t)i);
        assert_int_equal(p->created_at_ns, 42);
    }
    const picocri_store_PodRecord *p;
    assert_int_equal(st_pod_find_name(f->st, NS, "p7", "default", "uid-1", 7, &p), 0);
    assert_string_equal(p->id, ids[7]);
    const picocri_store_ImageRecord *im;
    assert_int_equal(st_image_find_name(f->st, NS, "busybox:latest", &im), 0);
    assert_string_equal(st_store_ns_name(f->st, 0), NS);
    assert_null(st_store_ns_name(f->st, 1));
}

/* A record cut at every length, and with one flipped byte, is detected and
 * moved aside: never loaded, never lost, never a crash. */
static void test_torn(void **state)
{
    struct fx *f = *state;
    picocri_store_PodRecord pod;
    char path[512], corrupt[512];
    make_pod(&pod, 'f', 1, "torn", 0);
    char *id = strdup(pod.id);
    assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);
    pod_path(f, id, path, sizeof(path));
    snprintf(corrupt, sizeof(corrupt), "%s/meta/%s/corrupt", f->root, NS);
    char *data = NULL;
    size_t len = 0;
    assert_int_equal(ag_file_read(path, 1 << 20, &data, &len), 0);
    assert_true(len > ST_HDR_LEN);
    const picocri_store_PodRecord *p;

    for (size_t cut = 0; cut <= len; cut++) {
        int moved = count_dir(corrupt);
        bool flip = cut == len;
        if (flip)
            data[len - 1] ^= 0x40;
        assert_int_equal(ag_file_write_atomic(path, data, flip ? len : cut, 0600), 0);
        reopen(f);
        assert_int_equal(st_pod_get(f->st, NS, id, &p, &f->err), -ENOENT);
        assert_int_equal(access(path, F_OK), -1);
        assert_int_equal(count_dir(corrupt), moved + 1);
    }
    free(data);
    free(id);
}

static void test_tmp_cleanup(void **state)
{
    struct fx *f = *state;
    picocri_store_PodRecord pod;
    char path[512], tmp[600], dir[512];
    make_pod(&pod, '1', 1, "keep", 0);
    char *id = strdup(pod.id);
    assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);
    pod_path(f, id, path, sizeof(path));
    snprintf(tmp, sizeof(tmp), "%s.tmp.%d", path, 99999);
    int fd = open(tmp, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "PCST", 4), 4);
    close(fd);
    snprintf(dir, sizeof(dir), "%s/meta/%s/pods", f->root, NS);
    assert_int_equal(count_dir(dir), 2);
    reopen(f);
    assert_int_equal(count_dir(dir), 1);
    const picocri_store_PodRecord *p;
    assert_int_equal(st_pod_get(f->st, NS, id, &p, &f->err), 0);
    free(id);
}

static void test_tag_moves(void **state)
{
    struct fx *f = *state;
    picocri_store_ImageRecord a, b;
    const picocri_store_ImageRecord *g;

    make_image(&a, 'a', 1, "app:latest");
    a.repo_digests = strv(1, "app@sha256:aaa");
    a.repo_digests_count = 1;
    char *aid = strdup(a.id);
    assert_int_equal(st_image_put(f->st, NS, &a, NULL, NULL, &f->err), 0);
    make_image(&b, 'b', 1, "app:latest");
    char *bid = strdup(b.id);
    assert_int_equal(st_image_put(f->st, NS, &b, NULL, NULL, &f->err), 0);

    assert_int_equal(st_image_get(f->st, NS, "app:latest", &g, &f->err), 0);
    assert_string_equal(g->id, bid);
    assert_int_equal(st_image_get(f->st, NS, aid, &g, &f->err), 0);
    assert_int_equal(g->repo_tags_count, 0);
    assert_int_equal(g->repo_digests_count, 1); /* the digest stays with a */
    reopen(f);
    assert_int_equal(st_image_find_name(f->st, NS, "app:latest", &g), 0);
    assert_string_equal(g->id, bid);
    assert_int_equal(st_image_get(f->st, NS, aid, &g, &f->err), 0);
    assert_int_equal(g->repo_tags_count, 0);
    /* Deleting b frees the tag; a can take it back. */
    assert_int_equal(st_delete(f->st, NS, ST_KIND_IMAGE, bid, NULL, NULL, &f->err), 0);
    assert_int_equal(st_image_find_name(f->st, NS, "app:latest", &g), -ENOENT);
    free(aid);
    free(bid);
}

/* A crash between the two writes of a tag move leaves the tag in both files:
 * the next open gives it to the newer write and rewrites the older one. */
static void test_tag_crash_repair(void **state)
{
    struct fx *f = *state;
    picocri_store_ImageRecord a, b, back;
    char path[512];
    uint8_t *buf = NULL;
    size_t len = 0;

    make_image(&a, 'a', 2, "web:1");
    char *aid = strdup(a.id);
    snprintf(path, sizeof(path), "%s/meta/%s/images/%s", f->root, NS, aid + 7);
    /* The old holder, as written before the move (older seq). */
    assert_int_equal(st_record_encode(ST_KIND_IMAGE, 100, &a, &buf, &len), 0);
    st_record_release(ST_KIND_IMAGE, &a);
    make_image(&b, 'b', 2, "web:1");
    char *bid = strdup(b.id);
    assert_int_equal(st_image_put(f->st, NS, &b, NULL, NULL, &f->err), 0);
    assert_int_equal(ag_file_write_atomic(path, buf, len, 0600), 0);
    free(buf);
    reopen(f);
    const picocri_store_ImageRecord *g;
    assert_int_equal(st_image_find_name(f->st, NS, "web:1", &g), 0);
    assert_string_equal(g->id, bid);
    /* a's file was rewritten without the tag. */
    char *data = NULL;
    assert_int_equal(ag_file_read(path, 1 << 20, &data, &len), 0);
    assert_int_equal(st_record_decode(ST_KIND_IMAGE, (uint8_t *)data, len, &back, NULL), 0);
    assert_int_equal(back.repo_tags_count, 0);
    st_record_release(ST_KIND_IMAGE, &back);
    free(data);
    free(aid);
    free(bid);
}

static void test_prefix(void **state)
{
    struct fx *f = *state;
    const picocri_store_PodRecord *p;
    const picocri_store_ImageRecord *g;
    picocri_store_PodRecord pod;
    picocri_store_ImageRecord img;

    make_pod(&pod, 'a', 0x110, "x", 0); /* a000...0110 */
    assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);
    make_pod(&pod, 'a', 0x120, "y", 0);
    assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);
    make_pod(&pod, 'b', 0x1, "z", 0);
    assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);

    assert_int_equal(st_pod_get(f->st, NS, "a", &p, &f->err), -EINVAL);
    assert_non_null(strstr(f->err.msg, "ambiguous"));
    assert_int_equal(st_pod_get(f->st, NS, "b", &p, &f->err), 0);
    assert_string_equal(p->config->metadata->name, "z");
    char pre[ST_ID_HEX_LEN + 1];
    snprintf(pre, sizeof(pre), "a%063x", 0x120);
    pre[63] = '\0';
    assert_int_equal(st_pod_get(f->st, NS, pre, &p, &f->err), 0);
    assert_string_equal(p->config->metadata->name, "y");
    assert_int_equal(st_pod_get(f->st, NS, "c", &p, &f->err), -ENOENT);
    assert_int_equal(st_pod_get(f->st, NS, "", &p, &f->err), -EINVAL);

    make_image(&img, 'e', 7, "nginx");
    assert_int_equal(st_image_put(f->st, NS, &img, NULL, NULL, &f->err), 0);
    assert_int_equal(st_image_get(f->st, NS, "e0", &g, &f->err), 0);
    assert_int_equal(st_image_get(f->st, NS, "sha256:e0", &g, &f->err), 0);
    assert_int_equal(st_image_get(f->st, NS, "nginx", &g, &f->err), 0);
    assert_int_equal(st_image_get(f->st, NS, "ngin", &g, &f->err), -ENOENT);
    char *hex = hexid('e', 7);
    assert_int_equal(st_image_get(f->st, NS, hex, &g, &f->err), 0); /* bare full hex */
    free(hex);
}

static void test_name_conflicts(void **state)
{
    struct fx *f = *state;
    picocri_store_PodRecord pod, dup;
    picocri_store_ContainerRecord ctr;
    const picocri_store_ContainerRecord *gc;

    make_pod(&pod, 'a', 1, "web", 0);
    char *pid = strdup(pod.id);
    assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);
    make_pod(&dup, 'a', 2, "web", 0);
    assert_int_equal(st_pod_put(f->st, NS, &dup, NULL, NULL, &f->err), -EEXIST);
    assert_non_null(strstr(f->err.msg, "reserved"));
    assert_non_null(dup.id); /* not moved on failure */
    dup.config->metadata->attempt = 1;
    assert_int_equal(st_pod_put(f->st, NS, &dup, NULL, NULL, &f->err), 0);
    /* Replacing a pod by its own id keeps its reservation. */
    make_pod(&pod, 'a', 1, "web", 0);
    pod.state = picocri_store_PodState_POD_STATE_NOTREADY;
    assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);

    make_ctr(&ctr, 'c', 1, pid, "app", 0);
    assert_int_equal(st_container_put(f->st, NS, &ctr, NULL, NULL, &f->err), 0);
    make_ctr(&ctr, 'c', 2, pid, "app", 0);
    assert_int_equal(st_container_put(f->st, NS, &ctr, NULL, NULL, &f->err), -EEXIST);
    ctr.config->metadata->attempt = 1;
    assert_int_equal(st_container_put(f->st, NS, &ctr, NULL, NULL, &f->err), 0);
    assert_int_equal(st_container_find_name(f->st, NS, pid, "app", 1, &gc), 0);
    char *c2 = hexid('c', 2);
    assert_string_equal(gc->id, c2);
    assert_int_equal(st_container_find_name(f->st, NS, pid, "app", 2, &gc), -ENOENT);
    /* Removing frees the name. */
    assert_int_equal(st_delete(f->st, NS, ST_KIND_CONTAINER, c2, NULL, NULL, &f->err), 0);
    assert_int_equal(st_container_find_name(f->st, NS, pid, "app", 1, &gc), -ENOENT);

    /* Malformed ids are refused and the record stays the caller's. */
    make_ctr(&ctr, 'c', 3, "not-a-pod", "x", 0);
    assert_int_equal(st_container_put(f->st, NS, &ctr, NULL, NULL, &f->err), -EINVAL);
    free(ctr.id);
    ctr.id = strdup("short");
    free(ctr.pod_id);
    ctr.pod_id = strdup(pid);
    assert_int_equal(st_container_put(f->st, NS, &ctr, NULL, NULL, &f->err), -EINVAL);
    st_record_release(ST_KIND_CONTAINER, &ctr);
    make_pod(&pod, 'a', 9, "bad-ns", 0);
    assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);
    make_pod(&pod, 'a', 10, "bad-ns2", 0);
    assert_int_equal(st_pod_put(f->st, "../etc", &pod, NULL, NULL, &f->err), -EINVAL);
    st_record_release(ST_KIND_POD, &pod);
    free(c2);
    free(pid);
}

static void test_record_checks(void **state)
{
    struct fx *f = *state;
    picocri_store_PodRecord pod, back;
    uint8_t *buf = NULL;
    size_t len = 0;
    uint64_t seq = 0;

    make_pod(&pod, '7', 1, "chk", 0);
    assert_int_equal(st_record_encode(ST_KIND_POD, 77, &pod, &buf, &len), 0);
    assert_int_equal(st_record_decode(ST_KIND_POD, buf, len, &back, &seq), 0);
    assert_int_equal(seq, 77);
    assert_string_equal(back.config->metadata->name, "chk");
    st_record_release(ST_KIND_POD, &back);
    picocri_store_ContainerRecord wrong;
    assert_int_equal(st_record_decode(ST_KIND_CONTAINER, buf, len, &wrong, &seq), -EBADMSG);
    /* A valid record under another record's file name is moved aside. */
    char path[512], dir[512];
    char *other = hexid('8', 1);
    pod_path(f, other, path, sizeof(path));
    snprintf(dir, sizeof(dir), "%s/meta/%s/pods", f->root, NS);
    assert_int_equal(ag_mkdir_p(dir, 0700), 0);
    assert_int_equal(ag_file_write_atomic(path, buf, len, 0600), 0);
    reopen(f);
    assert_int_equal(st_count(f->st, NS, ST_KIND_POD), 0);
    snprintf(dir, sizeof(dir), "%s/meta/%s/corrupt", f->root, NS);
    assert_int_equal(count_dir(dir), 1);
    /* Deep copy. */
    picocri_store_PodRecord copy;
    assert_int_equal(st_record_copy(ST_KIND_POD, &pod, &copy), 0);
    assert_string_equal(copy.ips[0], "10.0.0.5");
    assert_ptr_not_equal(copy.ips[0], pod.ips[0]);
    st_record_release(ST_KIND_POD, &copy);
    st_record_release(ST_KIND_POD, &pod);
    free(buf);
    free(other);
    char id[ST_ID_HEX_LEN + 1], id2[ST_ID_HEX_LEN + 1];
    assert_int_equal(st_id_new(id), 0);
    assert_int_equal(st_id_new(id2), 0);
    assert_true(st_id_valid(id));
    assert_string_not_equal(id, id2);
    assert_false(st_ns_name_valid("a..b"));
    assert_false(st_ns_name_valid("-a"));
    assert_true(st_ns_name_valid("k8s.io"));
    assert_true(st_ns_name_valid("moby_x-1"));
}

static void test_refs(void **state)
{
    struct fx *f = *state;
    picocri_store_ImageRecord img;
    picocri_store_PodRecord pod;
    picocri_store_ContainerRecord ctr;
    struct st_refs *refs = NULL;

    make_image(&img, 'a', 1, "r:1");
    img.config_digest = strdup("sha256:cfg");
    assert_int_equal(st_image_put(f->st, NS, &img, NULL, NULL, &f->err), 0);
    make_image(&img, 'a', 2, "r:2");
    assert_int_equal(st_image_put(f->st, "other", &img, NULL, NULL, &f->err), 0);
    make_pod(&pod, 'b', 1, "p", 0);
    char *pid = strdup(pod.id);
    assert_int_equal(st_pod_put(f->st, NS, &pod, NULL, NULL, &f->err), 0);
    make_ctr(&ctr, 'c', 1, pid, "c", 0);
    assert_int_equal(st_container_put(f->st, NS, &ctr, NULL, NULL, &f->err), 0);

    assert_int_equal(st_refs_build(f->st, &refs), 0);
    assert_int_equal(st_refs_count(refs, ST_REF_LAYER, "chain0"), 3);
    assert_int_equal(st_refs_count(refs, ST_REF_LAYER, "chain1"), 2);
    assert_int_equal(st_refs_count(refs, ST_REF_LAYER, "chain9"), 0);
    assert_int_equal(st_refs_count(refs, ST_REF_BLOB, "sha256:cfg"), 1);
    assert_int_equal(st_refs_count(refs, ST_REF_BLOB, "chain0"), 0);
    const struct st_ref_user *u = st_refs_user(refs, ST_REF_BLOB, "sha256:cfg", 0);
    assert_non_null(u);
    assert_int_equal(u->kind, ST_KIND_IMAGE);
    assert_string_equal(u->ns, NS);
    assert_null(st_refs_user(refs, ST_REF_BLOB, "sha256:cfg", 1));
    st_refs_free(refs);
    free(pid);
}

/* 10k records written directly (no fsync), then timed at open. */
static void test_many(void **state)
{
    struct fx *f = *state;
    char dir[512], path[600];
    snprintf(dir, sizeof(dir), "%s/meta/%s/containers", f->root, NS);
    assert_int_equal(ag_mkdir_p(dir, 0700), 0);
    char *pid = hexid('f', 0);
    for (int i = 0; i < 10000; i++) {
        picocri_store_ContainerRecord ctr;
        char name[16];
        uint8_t *buf = NULL;
        size_t len = 0;
        snprintf(name, sizeof(name), "c%d", i);
        make_ctr(&ctr, '2', i, pid, name, 0);
        snprintf(path, sizeof(path), "%s/%s", dir, ctr.id);
        assert_int_equal(st_record_encode(ST_KIND_CONTAINER, (uint64_t)i + 1, &ctr, &buf, &len), 0);
        int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
        assert_true(fd >= 0);
        assert_int_equal(write(fd, buf, len), (ssize_t)len);
        close(fd);
        free(buf);
        st_record_release(ST_KIND_CONTAINER, &ctr);
    }
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    reopen(f);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double s = (double)(t1.tv_sec - t0.tv_sec) + (double)(t1.tv_nsec - t0.tv_nsec) / 1e9;
    print_message("loaded 10000 records in %.3f s\n", s);
    assert_int_equal(st_count(f->st, NS, ST_KIND_CONTAINER), 10000);
    assert_true(s < 10.0); /* generous: sanitizers and slow CI disks */
    const picocri_store_ContainerRecord *c;
    assert_int_equal(st_container_find_name(f->st, NS, pid, "c9999", 0, &c), 0);
    free(pid);
}

/* ---- async mode ---- */

struct done {
    int calls;
    int last;
};

static void on_done(int status, void *arg)
{
    struct done *d = arg;
    d->calls++;
    d->last = status;
}

static void run_loop(uv_loop_t *loop, struct st_store *st)
{
    for (int i = 0; i < 10000 && st_store_pending(st) > 0; i++)
        uv_run(loop, UV_RUN_ONCE);
    assert_int_equal(st_store_pending(st), 0);
}

static void test_async(void **state)
{
    struct fx *f = *state;
    uv_loop_t loop;
    struct st_store *st = NULL;
    struct done d[5] = {{0}};
    picocri_store_PodRecord pod;

    st_store_close(f->st);
    f->st = NULL;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(st_store_open(f->root, &loop, &st, &f->err), 0);
    make_pod(&pod, '9', 1, "async", 0);
    char *id = strdup(pod.id);
    assert_int_equal(st_pod_put(st, NS, &pod, on_done, &d[0], &f->err), 0);
    /* Three more puts of the same record queue behind the first and are
     * coalesced: all report, the last content wins. */
    for (int i = 1; i <= 3; i++) {
        make_pod(&pod, '9', 1, "async", 0);
        pod.created_at_ns = 100 + i;
        assert_int_equal(st_pod_put(st, NS, &pod, on_done, &d[i], &f->err), 0);
    }
    assert_int_equal(st_store_pending(st), 1);
    picocri_store_ImageRecord a, b;
    make_image(&a, 'a', 5, "tag:x");
    char *aid = strdup(a.id);
    assert_int_equal(st_image_put(st, NS, &a, NULL, NULL, &f->err), 0);
    make_image(&b, 'b', 5, "tag:x");
    assert_int_equal(st_image_put(st, NS, &b, on_done, &d[4], &f->err), 0);
    run_loop(&loop, st);
    for (int i = 0; i < 5; i++) {
        assert_int_equal(d[i].calls, 1);
        assert_int_equal(d[i].last, 0);
    }
    st_store_close(st);
    assert_int_equal(uv_loop_close(&loop), 0);

    assert_int_equal(st_store_open(f->root, NULL, &f->st, &f->err), 0);
    const picocri_store_PodRecord *p;
    assert_int_equal(st_pod_get(f->st, NS, id, &p, &f->err), 0);
    assert_int_equal(p->created_at_ns, 103);
    const picocri_store_ImageRecord *g;
    assert_int_equal(st_image_get(f->st, NS, aid, &g, &f->err), 0);
    assert_int_equal(g->repo_tags_count, 0);

    /* Delete after put in async mode: the file ends up gone. */
    st_store_close(f->st);
    f->st = NULL;
    assert_int_equal(uv_loop_init(&loop), 0);
    assert_int_equal(st_store_open(f->root, &loop, &st, &f->err), 0);
    struct done dd = {0};
    assert_int_equal(st_delete(st, NS, ST_KIND_POD, id, on_done, &dd, &f->err), 0);
    run_loop(&loop, st);
    assert_int_equal(dd.calls, 1);
    assert_int_equal(dd.last, 0);
    char path[512];
    pod_path(f, id, path, sizeof(path));
    assert_int_equal(access(path, F_OK), -1);
    st_store_close(st);
    assert_int_equal(uv_loop_close(&loop), 0);
    assert_int_equal(st_store_open(f->root, NULL, &f->st, &f->err), 0);
    free(id);
    free(aid);
}

/* A write that fails (directory made read-only... as non-root we use a file
 * in place of the namespace directory) reports its error. */
static void test_write_error(void **state)
{
    struct fx *f = *state;
    char path[512];
    snprintf(path, sizeof(path), "%s/meta/blocked", f->root);
    int fd = open(path, O_WRONLY | O_CREAT, 0600);
    assert_true(fd >= 0);
    close(fd);
    picocri_store_PodRecord pod;
    make_pod(&pod, '3', 1, "err", 0);
    assert_true(st_pod_put(f->st, "blocked", &pod, NULL, NULL, &f->err) < 0);
    assert_non_null(strstr(f->err.msg, "write pods"));
    reopen(f); /* a file where a namespace should be is skipped, not fatal */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_restart, setup, teardown),
        cmocka_unit_test_setup_teardown(test_torn, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tmp_cleanup, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_moves, setup, teardown),
        cmocka_unit_test_setup_teardown(test_tag_crash_repair, setup, teardown),
        cmocka_unit_test_setup_teardown(test_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_name_conflicts, setup, teardown),
        cmocka_unit_test_setup_teardown(test_record_checks, setup, teardown),
        cmocka_unit_test_setup_teardown(test_refs, setup, teardown),
        cmocka_unit_test_setup_teardown(test_many, setup, teardown),
        cmocka_unit_test_setup_teardown(test_async, setup, teardown),
        cmocka_unit_test_setup_teardown(test_write_error, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
#endif /* ST_STORE_UNAVAILABLE */
