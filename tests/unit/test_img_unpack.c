/* tests/unit: layer unpacking into a directory under a sentinel parent:
 * file types, attributes, whiteouts, every escape attempt (refused, and
 * nothing written outside the layer), diff_id checks and the atomic blob
 * unpack.  Root-only parts are skipped when not root. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <cmocka.h>
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include "image/image.h"
#include "img_test_tar.h"

struct fx {
    char sentinel[64];
    char layer[96];
    char outside[96];
};

static int rm_rf(const char *path)
{
    struct stat st;
    if (lstat(path, &st) < 0)
        return 0;
    if (S_ISDIR(st.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *de;
        chmod(path, 0700);
        while (d && (de = readdir(d)) != NULL) {
            char sub[4096];
            if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
                continue;
            snprintf(sub, sizeof(sub), "%s/%s", path, de->d_name);
            rm_rf(sub);
        }
        if (d)
            closedir(d);
        return rmdir(path);
    }
    return unlink(path);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    strcpy(f->sentinel, "/tmp/img-unpack-XXXXXX");
    if (mkdtemp(f->sentinel) == NULL)
        return -1;
    snprintf(f->layer, sizeof(f->layer), "%s/layer", f->sentinel);
    snprintf(f->outside, sizeof(f->outside), "%s/outside", f->sentinel);
    if (mkdir(f->layer, 0755) < 0)
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;
    rm_rf(f->sentinel);
    free(f);
    return 0;
}

/* The sentinel parent holds only "layer" (and "outside" when present). */
static void assert_sentinel_clean(const struct fx *f)
{
    DIR *d = opendir(f->sentinel);
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        if (strcmp(de->d_name, ".") && strcmp(de->d_name, "..") && strcmp(de->d_name, "layer") &&
            strcmp(de->d_name, "outside"))
            fail_msg("unexpected %s in the sentinel dir", de->d_name);
    }
    closedir(d);
}

static int unpack(const char *dir, const struct tw *blob, struct img_unpack_opts *o, size_t chunk,
                  char *diff_id, size_t *warnings, struct ag_err *err)
{
    struct img_unpack *u;
    int rc;

    ag_err_init(err);
    rc = img_unpack_new(dir, o, &u, err);
    if (rc < 0)
        return rc;
    for (size_t off = 0; off < blob->len && rc == 0; off += chunk) {
        size_t n = blob->len - off < chunk ? blob->len - off : chunk;
        rc = img_unpack_feed(u, blob->buf + off, n, err);
    }
    if (rc == 0)
        rc = img_unpack_finish(u, diff_id, err);
    if (warnings)
        *warnings = img_unpack_warnings(u, NULL);
    img_unpack_free(u);
    return rc;
}

static void path_in(const struct fx *f, const char *rel, char *out)
{
    snprintf(out, 256, "%s/%s", f->layer, rel);
}

static void test_basic(void **state)
{
    struct fx *f = *state;
    struct tw tar = {0}, gz = {0}, rec = {0};
    struct img_unpack_opts o = {.compression = IMG_COMP_GZIP, .flags = IMG_UNPACK_UNPRIVILEGED};
    struct ag_err err;
    char diff_id[IMG_DIGEST_MAX], want[IMG_DIGEST_MAX], p[256], buf[64];
    struct stat st;
    size_t warnings;
    char longname[200];

    struct tw_hdr dir = {.name = "usr/", .type = '5', .mode = 0750, .mtime = 1000};
    struct tw_hdr exe = {
        .name = "usr/bin/tool", .type = '0', .size = 4, .mode = 0711, .mtime = 2000};
    struct tw_hdr dev = {.name = "dev/null", .type = '3', .major = 1, .minor = 3};
    memset(longname, 'x', sizeof(longname) - 1);
    longname[sizeof(longname) - 1] = '\0';
    memcpy(longname, "usr/", 4);

    tw_header(&tar, &dir);
    tw_header(&tar, &exe);
    tw_put(&tar, "#!x\n", 4);
    tw_pad(&tar);
    tw_file(&tar, "./etc/hosts", "127.0.0.1 localhost\n");
    tw_entry(&tar, "etc/hosts.link", '2', "hosts");
    tw_entry(&tar, "etc/abs.link", '2', "/etc/hosts");
    tw_entry(&tar, "etc/hosts.hard", '1', "etc/hosts");
    tw_entry(&tar, "run/fifo", '6', NULL);
    tw_header(&tar, &dev);
    tw_gnu_long(&tar, 'L', longname);
    tw_file(&tar, "ignored", "long");
    tw_pax_record(&rec, "SCHILY.xattr.user.note", "hi", 2);
    tw_pax_record(&rec, "SCHILY.xattr.trusted.overlay.redirect", "/x", 2);
    tw_pax(&tar, 'x', &rec);
    tw_file(&tar, "etc/x", "data");
    tw_end(&tar);
    img_digest_sha256(tar.buf, tar.len, want);
    tw_gzip(&gz, tar.buf, tar.len);

    int rc = unpack(f->layer, &gz, &o, 333, diff_id, &warnings, &err);
    if (rc != 0)
        fail_msg("unpack: %s", err.msg);
    assert_string_equal(diff_id, want);
    path_in(f, "usr/bin/tool", p);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0711);
    assert_int_equal(st.st_mtime, 2000);
    assert_int_equal(st.st_size, 4);
    path_in(f, "usr", p);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0750);
    assert_int_equal(st.st_mtime, 1000); /* set after its children */
    path_in(f, "etc/hosts.link", p);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    assert_int_equal(readlink(p, buf, sizeof(buf)), 5);
    path_in(f, "etc/hosts.hard", p);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_nlink, 2);
    path_in(f, "run/fifo", p);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISFIFO(st.st_mode));
    path_in(f, "dev/null", p);
    assert_int_equal(lstat(p, &st), -1); /* skipped: not permitted */
    path_in(f, longname, p);
    assert_int_equal(stat(p, &st), 0);
    path_in(f, "etc/x", p);
    ssize_t n = getxattr(p, "user.note", buf, sizeof(buf));
    if (n >= 0) {
        assert_int_equal(n, 2);
        assert_memory_equal(buf, "hi", 2);
    }
    assert_int_equal(getxattr(p, "trusted.overlay.redirect", buf, sizeof(buf)), -1);
    assert_true(warnings >= 2); /* device and overlay xattr */
    assert_sentinel_clean(f);
    tw_free(&tar);
    tw_free(&gz);
    tw_free(&rec);
}

static void test_replace_rules(void **state)
{
    struct fx *f = *state;
    struct tw tar = {0};
    struct img_unpack_opts o = {.flags = IMG_UNPACK_UNPRIVILEGED | IMG_UNPACK_NO_OPENAT2};
    struct ag_err err;
    char p[256];
    struct stat st;

    tw_entry(&tar, "a/", '5', NULL);
    tw_file(&tar, "a/child", "1");
    tw_entry(&tar, "a/", '5', NULL); /* dir over dir keeps children */
    tw_file(&tar, "b", "file");
    tw_entry(&tar, "b/", '5', NULL); /* dir replaces file */
    tw_entry(&tar, "c/", '5', NULL);
    tw_file(&tar, "c/x", "1");
    tw_entry(&tar, "c", '2', "a"); /* symlink replaces a dir tree */
    tw_file(&tar, "d", "old");
    tw_file(&tar, "d", "new!"); /* duplicates: last wins */
    tw_end(&tar);
    assert_int_equal(unpack(f->layer, &tar, &o, 512, NULL, NULL, &err), 0);
    path_in(f, "a/child", p);
    assert_int_equal(stat(p, &st), 0);
    path_in(f, "b", p);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISDIR(st.st_mode));
    path_in(f, "c", p);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISLNK(st.st_mode));
    path_in(f, "d", p);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 4);
    tw_free(&tar);
}

/* ---- escapes ----------------------------------------------------------------- */

static void build_escape(int i, const struct fx *f, struct tw *t)
{
    switch (i) {
    case 0:
        tw_file(t, "/etc/passwd", "pwned");
        break;
    case 1:
        tw_file(t, "../outside/x", "pwned");
        break;
    case 2:
        tw_file(t, "a/../../outside/x", "pwned");
        break;
    case 3:
        tw_entry(t, "evil", '2', "../outside");
        tw_file(t, "evil/x", "pwned");
        break;
    case 4:
        tw_entry(t, "evil", '2', f->outside);
        tw_file(t, "evil/x", "pwned");
        break;
    case 5:
        tw_entry(t, "d/", '5', NULL);
        tw_entry(t, "d/evil", '2', "/");
        tw_entry(t, "d/evil/tmp/", '5', NULL);
        break;
    case 6:
        tw_entry(t, "h", '1', "/etc/shadow");
        break;
    case 7:
        tw_entry(t, "h", '1', "../../x");
        break;
    case 8:
        tw_entry(t, "evil", '2', f->outside);
        tw_entry(t, "h", '1', "evil/secret");
        break;
    case 9:
        tw_entry(t, "evil", '2', "../outside");
        tw_entry(t, "evil/.wh.secret", '0', NULL);
        break;
    case 10:
        tw_entry(t, "evil", '2', f->outside);
        tw_entry(t, "evil/.wh..wh..opq", '0', NULL);
        break;
    case 11:
        tw_entry(t, "evil", '2', "../outside");
        tw_entry(t, "evil/sub/", '5', NULL);
        break;
    case 12:
        tw_entry(t, "h", '1', "missing");
        break;
    case 13:
        tw_entry(t, "..", '5', NULL);
        break;
    }
    tw_end(t);
}

static const struct {
    int rc;
    const char *name;
} escapes[] = {
    {-EPERM, "/etc/passwd"},
    {-EPERM, "../outside/x"},
    {-EPERM, "a/../../outside/x"},
    {-EPERM, "evil/x"},
    {-EPERM, "evil/x"},
    {-EPERM, "d/evil/tmp"},
    {-EPERM, "/etc/shadow"},
    {-EPERM, "../../x"},
    {-EPERM, "evil/secret"},
    {-EPERM, "evil/.wh.secret"},
    {-EPERM, "evil/.wh..wh..opq"},
    {-EPERM, "evil/sub"},
    {-EPERM, "missing"},
    {-EPERM, ".."},
};

static void test_escapes(void **state)
{
    struct fx *f = *state;
    char secret[128], p[256];
    struct stat st;

    snprintf(secret, sizeof(secret), "%s/secret", f->outside);
    for (size_t i = 0; i < AG_ARRAY_LEN(escapes); i++) {
        for (unsigned k = 0; k < 4; k++) {
            /* privileged or not, openat2 or the O_NOFOLLOW walk */
            unsigned flags =
                ((k & 1) ? IMG_UNPACK_UNPRIVILEGED : 0) | ((k & 2) ? IMG_UNPACK_NO_OPENAT2 : 0);
            struct tw t = {0};
            struct img_unpack_opts o = {.flags = flags | IMG_UNPACK_USERXATTR};
            struct ag_err err;
            rm_rf(f->layer);
            rm_rf(f->outside);
            mkdir(f->layer, 0755);
            mkdir(f->outside, 0755);
            FILE *fp = fopen(secret, "w");
            fputs("keep", fp);
            fclose(fp);
            build_escape((int)i, f, &t);
            int rc = unpack(f->layer, &t, &o, 512, NULL, NULL, &err);
            if (rc != escapes[i].rc || strstr(err.msg, escapes[i].name) == NULL)
                fail_msg("escape %zu: rc %d \"%s\"", i, rc, err.msg);
            /* Nothing outside the layer changed. */
            DIR *d = opendir(f->outside);
            struct dirent *de;
            int count = 0;
            while ((de = readdir(d)) != NULL)
                count += de->d_name[0] != '.';
            closedir(d);
            assert_int_equal(count, 1);
            assert_int_equal(stat(secret, &st), 0);
            assert_int_equal(st.st_size, 4);
            assert_int_equal(st.st_nlink, 1);
            assert_sentinel_clean(f);
            assert_int_equal(lstat("/x", &st), -1);
            snprintf(p, sizeof(p), "%s/../x", f->sentinel);
            assert_int_equal(lstat(p, &st), -1);
            tw_free(&t);
        }
    }
}

/* ---- whiteouts ------------------------------------------------------------------ */

static void whiteout_tar(struct tw *t)
{
    tw_entry(t, "etc/", '5', NULL);
    tw_file(t, "etc/.wh.passwd", NULL);
    tw_file(t, "etc/keep", "k");
    tw_file(t, "etc/.wh.keep", NULL); /* same layer: keeps the file */
    tw_entry(t, "var/.wh..wh..opq", '0', NULL);
    tw_file(t, "var/new", "n");
    tw_end(t);
}

static void test_whiteout_unprivileged(void **state)
{
    struct fx *f = *state;
    struct tw t = {0};
    struct img_unpack_opts o = {.flags = IMG_UNPACK_UNPRIVILEGED};
    struct ag_err err;

    whiteout_tar(&t);
    assert_int_equal(unpack(f->layer, &t, &o, 512, NULL, NULL, &err), -EPERM);
    assert_non_null(strstr(err.msg, "etc/.wh.passwd"));
    assert_non_null(strstr(err.msg, "userxattr"));
    tw_free(&t);
}

static void test_whiteout_userxattr(void **state)
{
    struct fx *f = *state;
    struct tw t = {0};
    struct img_unpack_opts o = {.flags = IMG_UNPACK_UNPRIVILEGED | IMG_UNPACK_USERXATTR};
    struct ag_err err;
    char p[256], v[4];
    struct stat st;

    path_in(f, "", p);
    if (setxattr(p, "user.probe", "1", 1, 0) < 0)
        skip();
    whiteout_tar(&t);
    if (unpack(f->layer, &t, &o, 100, NULL, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    path_in(f, "etc/passwd", p);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISREG(st.st_mode));
    assert_int_equal(st.st_size, 0);
    assert_int_equal(getxattr(p, "user.overlay.whiteout", v, sizeof(v)), 1);
    path_in(f, "etc", p);
    assert_int_equal(getxattr(p, "user.overlay.opaque", v, sizeof(v)), 1);
    assert_int_equal(v[0], 'x');
    path_in(f, "etc/keep", p);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(st.st_size, 1);
    assert_int_equal(getxattr(p, "user.overlay.whiteout", v, sizeof(v)), -1);
    path_in(f, "etc/.wh.passwd", p);
    assert_int_equal(lstat(p, &st), -1);
    path_in(f, "var", p);
    assert_int_equal(getxattr(p, "user.overlay.opaque", v, sizeof(v)), 1);
    assert_int_equal(v[0], 'y');
    path_in(f, "var/new", p);
    assert_int_equal(stat(p, &st), 0);
    tw_free(&t);
}

static void test_root_only(void **state)
{
    struct fx *f = *state;
    struct tw t = {0}, rec = {0};
    struct img_unpack_opts o = {0};
    struct ag_err err;
    char p[256], v[32];
    struct stat st;
    static const uint8_t cap[20] = {0, 0, 0, 2, 0, 0x20, 0, 0}; /* v2, cap_net_bind_service */
    struct tw_hdr dev = {.name = "dev/null", .type = '3', .major = 1, .minor = 3, .mode = 0666};
    struct tw_hdr own = {.name = "owned", .type = '0', .uid = 1234, .gid = 5678, .mode = 04755};

    if (geteuid() != 0)
        skip();
    whiteout_tar(&t);
    t.len -= 1024; /* reopen the archive: drop the end marker */
    tw_header(&t, &dev);
    tw_header(&t, &own);
    tw_pax_record(&rec, "SCHILY.xattr.security.capability", cap, sizeof(cap));
    tw_pax(&t, 'x', &rec);
    tw_file(&t, "ping", "ELF");
    tw_end(&t);
    if (unpack(f->layer, &t, &o, 4096, NULL, NULL, &err) != 0)
        fail_msg("%s", err.msg);
    path_in(f, "etc/passwd", p);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, makedev(0, 0));
    path_in(f, "var", p);
    assert_int_equal(getxattr(p, "trusted.overlay.opaque", v, sizeof(v)), 1);
    assert_int_equal(v[0], 'y');
    path_in(f, "dev/null", p);
    assert_int_equal(lstat(p, &st), 0);
    assert_true(S_ISCHR(st.st_mode));
    assert_int_equal(st.st_rdev, makedev(1, 3));
    assert_int_equal(st.st_mode & 07777, 0666);
    path_in(f, "owned", p);
    assert_int_equal(lstat(p, &st), 0);
    assert_int_equal(st.st_uid, 1234);
    assert_int_equal(st.st_gid, 5678);
    assert_int_equal(st.st_mode & 07777, 04755); /* setuid survives chown */
    path_in(f, "ping", p);
    assert_int_equal(getxattr(p, "security.capability", v, sizeof(v)), sizeof(cap));
    tw_free(&t);
    tw_free(&rec);
}

/* ---- stream checks --------------------------------------------------------------- */

static void test_diff_id_and_bounds(void **state)
{
    struct fx *f = *state;
    struct tw tar = {0}, zs = {0};
    struct img_unpack_opts o = {.compression = IMG_COMP_ZSTD, .flags = IMG_UNPACK_UNPRIVILEGED};
    struct ag_err err;
    char want[IMG_DIGEST_MAX], got[IMG_DIGEST_MAX], p[256];
    struct stat st;

    for (int i = 0; i < 50; i++) {
        char name[32];
        snprintf(name, sizeof(name), "f%d", i);
        tw_file(&tar, name, "0123456789abcdef");
    }
    tw_end(&tar);
    img_digest_sha256(tar.buf, tar.len, want);
    tw_zstd(&zs, tar.buf, tar.len);
    o.expected_diff_id = want;
    assert_int_equal(unpack(f->layer, &zs, &o, 1000, got, NULL, &err), 0);
    assert_string_equal(got, want);
    path_in(f, "f49", p);
    assert_int_equal(stat(p, &st), 0);
    /* Wrong diff_id */
    rm_rf(f->layer);
    mkdir(f->layer, 0755);
    o.expected_diff_id = "sha256:0000000000000000000000000000000000000000000000000000000000000000";
    assert_int_equal(unpack(f->layer, &zs, &o, 1000, got, NULL, &err), -EBADMSG);
    assert_non_null(strstr(err.msg, "diff_id mismatch"));
    o.expected_diff_id = "md5:00";
    assert_int_equal(unpack(f->layer, &zs, &o, 1000, got, NULL, &err), -EINVAL);
    /* Decompression bound */
    o.expected_diff_id = NULL;
    o.max_uncompressed = tar.len / 2;
    rm_rf(f->layer);
    mkdir(f->layer, 0755);
    assert_int_equal(unpack(f->layer, &zs, &o, 1000, got, NULL, &err), -EFBIG);
    assert_non_null(strstr(err.msg, "limit"));
    /* Entry count bound */
    o.max_uncompressed = 0;
    o.max_entries = 10;
    rm_rf(f->layer);
    mkdir(f->layer, 0755);
    assert_int_equal(unpack(f->layer, &zs, &o, 1000, got, NULL, &err), -EFBIG);
    /* Truncated stream */
    o.max_entries = 0;
    zs.len /= 2;
    rm_rf(f->layer);
    mkdir(f->layer, 0755);
    assert_true(unpack(f->layer, &zs, &o, 1000, got, NULL, &err) < 0);
    tw_free(&tar);
    tw_free(&zs);
}

static void test_blob(void **state)
{
    struct fx *f = *state;
    struct tw tar = {0}, gz = {0};
    struct img_unpack_opts o = {.compression = IMG_COMP_GZIP, .flags = IMG_UNPACK_UNPRIVILEGED};
    struct ag_err err;
    char blob[128], dest[128], p[256], got[IMG_DIGEST_MAX];
    struct stat st;
    FILE *fp;

    ag_err_init(&err);
    tw_file(&tar, "bin/sh", "#!");
    tw_end(&tar);
    tw_gzip(&gz, tar.buf, tar.len);
    snprintf(blob, sizeof(blob), "%s/outside.blob", f->sentinel);
    snprintf(dest, sizeof(dest), "%s/layer/l1", f->sentinel);
    fp = fopen(blob, "w");
    fwrite(gz.buf, 1, gz.len, fp);
    fclose(fp);
    assert_int_equal(img_unpack_blob(blob, dest, &o, got, &err), 0);
    snprintf(p, sizeof(p), "%s/bin/sh", dest);
    assert_int_equal(stat(p, &st), 0);
    assert_int_equal(stat(dest, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0755);
    assert_int_equal(img_unpack_blob(blob, dest, &o, got, &err), -EEXIST);
    /* A failing layer leaves neither dest nor a temporary directory. */
    snprintf(dest, sizeof(dest), "%s/layer/l2", f->sentinel);
    o.expected_diff_id = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
    assert_int_equal(img_unpack_blob(blob, dest, &o, got, &err), -EBADMSG);
    assert_int_equal(lstat(dest, &st), -1);
    DIR *d = opendir(f->layer);
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        assert_null(strstr(de->d_name, "tmp"));
    closedir(d);
    assert_int_equal(img_unpack_blob("/nonexistent/blob", dest, &o, got, &err), -ENOENT);
    assert_int_equal(lstat(dest, &st), -1);
    unlink(blob);
    tw_free(&tar);
    tw_free(&gz);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_basic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace_rules, setup, teardown),
        cmocka_unit_test_setup_teardown(test_escapes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whiteout_unprivileged, setup, teardown),
        cmocka_unit_test_setup_teardown(test_whiteout_userxattr, setup, teardown),
        cmocka_unit_test_setup_teardown(test_root_only, setup, teardown),
        cmocka_unit_test_setup_teardown(test_diff_id_and_bounds, setup, teardown),
        cmocka_unit_test_setup_teardown(test_blob, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
