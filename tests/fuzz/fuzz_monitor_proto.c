/* libFuzzer target for the monitor's control protocol (rt_monitor_proto.c)
 * and exit file (rt_monitor_exit.c): the input is a byte stream as read
 * from a control connection; every frame is parsed and its payload run
 * through the request or reply parser of its type.  Status and exit
 * records that parse are formatted and parsed again and must round-trip.
 * The whole input is also tried as an exit file. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "runtime/rt_monitor.h"

static void check_status(const uint8_t *p, size_t len)
{
    struct rt_mon_status a, b;
    char text[512];

    if (rt_mon_status_parse((const char *)p, len, &a) != 0)
        return;
    int n = rt_mon_status_format(&a, text, sizeof(text));
    if (n < 0 || rt_mon_status_parse(text, (size_t)n, &b) != 0 || memcmp(&a, &b, sizeof(a)) != 0)
        abort();
}

static void check_exit(const uint8_t *p, size_t len)
{
    struct rt_exit_status a, b;
    char json[4096];

    if (rt_exit_status_parse((const char *)p, len, &a) != 0)
        return;
    int n = rt_exit_status_format(&a, json, sizeof(json));
    if (n < 0 || rt_exit_status_parse(json, (size_t)n, &b) != 0)
        abort();
    if (memcmp(&a.st, &b.st, sizeof(a.st)) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    size_t off = 0;

    for (int i = 0; i < 1000 && off < size; i++) {
        struct rt_mon_frame f;
        int n = rt_mon_frame_parse(data + off, size - off, &f);
        if (n <= 0)
            break;
        if ((size_t)n > size - off || f.len > RT_MON_PAYLOAD_MAX ||
            f.payload + f.len > data + size)
            abort();
        int sig;
        bool all;
        unsigned rows, cols;
        switch (f.type) {
        case RT_MON_SIGNAL:
            if (rt_mon_parse_signal(f.payload, f.len, &sig, &all) == 0 && (sig < 1 || sig > 64))
                abort();
            break;
        case RT_MON_RESIZE:
            if (rt_mon_parse_resize(f.payload, f.len, &rows, &cols) == 0 &&
                (rows > 65535 || cols > 65535))
                abort();
            break;
        case RT_MON_OK:
        case RT_MON_EXITED:
            check_status(f.payload, f.len);
            break;
        default:
            break;
        }
        off += (size_t)n;
    }
    check_exit(data, size);
    return 0;
}
