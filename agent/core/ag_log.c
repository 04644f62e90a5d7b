/* agent/core: the one logger.  A line is "<RFC3339 time> <level> <message>";
 * the sink is pluggable (stderr by default).  Lines are built in a stack
 * buffer and written with one write(2), so concurrent writers do not
 * interleave within a line. */
#include "ag_core.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

enum ag_log_level ag__log_level = AG_INFO;
static ag_log_sink_cb log_sink;

static const char *const level_names[] = {"error", "warn", "info", "debug", "trace"};

const char *ag_log_level_name(enum ag_log_level level)
{
    return (unsigned)level < AG_ARRAY_LEN(level_names) ? level_names[level] : "?";
}

int ag_log_level_parse(const char *name, enum ag_log_level *out)
{
    for (size_t i = 0; i < AG_ARRAY_LEN(level_names); i++) {
        if (strcmp(name, level_names[i]) == 0) {
            *out = (enum ag_log_level)i;
            return 0;
        }
    }
    return -EINVAL;
}

void ag_log_set_level(enum ag_log_level level) { ag__log_level = level; }

void ag_log_set_sink(ag_log_sink_cb sink) { log_sink = sink; }

void ag__log(enum ag_log_level level, const char *fmt, ...)
{
    char line[1024];
    struct timespec ts;
    struct tm tm;
    size_t n;
    va_list ap;
    int saved = errno;

    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    n = strftime(line, sizeof(line), "%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%06ldZ %-5s ", ts.tv_nsec / 1000,
                          ag_log_level_name(level));
    va_start(ap, fmt);
    int m = vsnprintf(line + n, sizeof(line) - n, fmt, ap);
    va_end(ap);
    if (m < 0)
        m = 0;
    n += (size_t)m;
    if (n > sizeof(line) - 2)
        n = sizeof(line) - 2; /* truncated: keep the newline */
    line[n++] = '\n';
    line[n] = '\0';
    if (log_sink != NULL) {
        log_sink(level, line, n);
    } else {
        ssize_t w = write(STDERR_FILENO, line, n);
        (void)w; /* nowhere to report a failed log write */
    }
    errno = saved;
}
