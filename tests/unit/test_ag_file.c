/* Unit tests for the file helpers (agent/core/ag_file.c): both atomic
 * writers replace the target whole, keep its mode, and leave no temporary
 * file behind, on success and on failure. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "core/ag_core.h"

typedef int (*writer_fn)(const char *, const void *, size_t, int);

static char base[64];

static int setup(void **state)
{
    snprintf(base, sizeof(base), "/tmp/picocri-file-XXXXXX");
    return mkdtemp(base) ? 0 : -1;
}

static int teardown(void **state)
{
    char cmd[128];
    snprintf(cmd, sizeof(cmd), "rm -rf %s", base);
    return system(cmd) == 0 ? 0 : -1;
}

static size_t entries(const char *dir)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    size_t n = 0;

    assert_non_null(d);
    while ((e = readdir(d)) != NULL)
        n += strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void check_writer(writer_fn write_fn)
{
    char path[PATH_MAX], *data = NULL;
    size_t len = 0;
    struct stat st;

    snprintf(path, sizeof(path), "%s/f", base);
    assert_int_equal(write_fn(path, "first version\n", 14, 0640), 0);
    assert_int_equal(write_fn(path, "second", 6, 0640), 0);
    assert_int_equal(ag_file_read(path, 1024, &data, &len), 0);
    assert_int_equal(len, 6);
    assert_string_equal(data, "second");
    free(data);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0640);
    assert_int_equal(write_fn(path, "", 0, 0600), 0);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_size, 0);
    assert_int_equal(entries(base), 1); /* no temporary left */

    /* A missing directory fails without creating anything. */
    snprintf(path, sizeof(path), "%s/missing/f", base);
    assert_int_equal(write_fn(path, "x", 1, 0600), -ENOENT);
    assert_int_equal(entries(base), 1);
}

static void test_write_atomic(void **state) { check_writer(ag_file_write_atomic); }

static void test_replace(void **state) { check_writer(ag_file_replace); }

static void test_name_too_long(void **state)
{
    char path[PATH_MAX + 16];

    memset(path, 'a', sizeof(path) - 1);
    path[0] = '/';
    path[sizeof(path) - 1] = '\0';
    assert_int_equal(ag_file_write_atomic(path, "x", 1, 0600), -ENAMETOOLONG);
    assert_int_equal(ag_file_replace(path, "x", 1, 0600), -ENAMETOOLONG);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_write_atomic, setup, teardown),
        cmocka_unit_test_setup_teardown(test_replace, setup, teardown),
        cmocka_unit_test(test_name_too_long),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
