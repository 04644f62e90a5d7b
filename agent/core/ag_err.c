/* agent/core: errors with a context chain in a fixed buffer, and the
 * assertion for our own bugs.  Invariant: err->msg is always NUL-terminated
 * and err->code is negative whenever a message was set. */
#include "ag_core.h"

#include <stdio.h>
#include <string.h>

void ag_err_init(struct ag_err *err)
{
    err->code = 0;
    err->msg[0] = '\0';
}

int ag_err_set(struct ag_err *err, int code, const char *fmt, ...)
{
    va_list ap;

    ag_assert(code < 0);
    err->code = code;
    va_start(ap, fmt);
    vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
    va_end(ap);
    return code;
}

int ag_err_wrap(struct ag_err *err, const char *fmt, ...)
{
    char prefix[AG_ERR_MSG_LEN];
    char old[AG_ERR_MSG_LEN];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof(old));
    /* A chain longer than the buffer keeps its outermost context. */
    if (snprintf(err->msg, sizeof(err->msg), "%s: %s", prefix,
                 old[0] != '\0' ? old : strerror(-err->code)) >= (int)sizeof(err->msg))
        memcpy(err->msg + sizeof(err->msg) - 4, "...", 4);
    return err->code;
}

void ag__assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "picocri: assertion failed: %s at %s:%d\n", expr, file, line);
    abort();
}

void *ag_xmalloc(size_t n)
{
    void *p = malloc(n ? n : 1);

    if (p == NULL) {
        fprintf(stderr, "picocri: out of memory at start-up\n");
        abort();
    }
    return p;
}

char *ag_xstrdup(const char *s)
{
    size_t n = strlen(s) + 1;
    char *p = ag_xmalloc(n);

    memcpy(p, s, n);
    return p;
}
