/* agent/runtime: the monitor's control protocol, sans-I/O.  Frames are a
 * type byte, a big-endian u32 length and a payload of at most
 * RT_MON_PAYLOAD_MAX bytes; request payloads and the status reply are short
 * ASCII texts.  Both ends use this file: the monitor parses what the daemon
 * (or anything that can open the 0600 socket) sends, the daemon parses what
 * the monitor sends, so every parser here is bounded and fuzzed
 * (tests/fuzz/fuzz_monitor_proto.c).
 *
 * Invariant: a parser never reads past len and never allocates; on any
 * malformed input it returns a negative errno and leaves *out unspecified.
 */
#include "rt_monitor.h"

#include <stdio.h>
#include <string.h>

static bool known_type(uint8_t t)
{
    switch (t) {
    case RT_MON_START:
    case RT_MON_STATUS:
    case RT_MON_SIGNAL:
    case RT_MON_REOPEN:
    case RT_MON_RESIZE:
    case RT_MON_ATTACH:
    case RT_MON_STDIN:
    case RT_MON_CLOSE_STDIN:
    case RT_MON_STDOUT:
    case RT_MON_STDERR:
    case RT_MON_EXITED:
    case RT_MON_OK:
    case RT_MON_ERR:
        return true;
    default:
        return false;
    }
}

int rt_mon_frame_parse(const uint8_t *buf, size_t len, struct rt_mon_frame *out)
{
    uint32_t plen;

    if (len < 1)
        return 0;
    if (!known_type(buf[0]))
        return -EPROTO;
    if (len < RT_MON_HDR_LEN)
        return 0;
    plen = (uint32_t)buf[1] << 24 | (uint32_t)buf[2] << 16 | (uint32_t)buf[3] << 8 | buf[4];
    if (plen > RT_MON_PAYLOAD_MAX)
        return -EMSGSIZE;
    if (len - RT_MON_HDR_LEN < plen)
        return 0;
    out->type = buf[0];
    out->payload = buf + RT_MON_HDR_LEN;
    out->len = plen;
    return (int)(RT_MON_HDR_LEN + plen);
}

void rt_mon_frame_header(uint8_t hdr[RT_MON_HDR_LEN], uint8_t type, size_t len)
{
    hdr[0] = type;
    hdr[1] = (uint8_t)(len >> 24);
    hdr[2] = (uint8_t)(len >> 16);
    hdr[3] = (uint8_t)(len >> 8);
    hdr[4] = (uint8_t)len;
}

/* Parses a decimal number of at most 19 digits at *p (< end), <= max. */
static int parse_num(const uint8_t **p, const uint8_t *end, int64_t max, int64_t *out)
{
    int64_t v = 0;
    bool neg = false;
    int digits = 0;

    if (*p < end && **p == '-') {
        neg = true;
        (*p)++;
    }
    while (*p < end && **p >= '0' && **p <= '9') {
        if (++digits > 19 || v > (max - (**p - '0')) / 10)
            return -EINVAL;
        v = v * 10 + (**p - '0');
        (*p)++;
    }
    if (digits == 0)
        return -EINVAL;
    *out = neg ? -v : v;
    return 0;
}

int rt_mon_parse_signal(const uint8_t *p, size_t len, int *sig, bool *all)
{
    const uint8_t *end = p + len;
    int64_t v;

    if (parse_num(&p, end, 64, &v) < 0 || v < 1)
        return -EINVAL;
    *sig = (int)v;
    *all = false;
    if (p == end)
        return 0;
    if (end - p == 4 && memcmp(p, " all", 4) == 0) {
        *all = true;
        return 0;
    }
    return -EINVAL;
}

int rt_mon_parse_resize(const uint8_t *p, size_t len, unsigned *rows, unsigned *cols)
{
    const uint8_t *end = p + len;
    int64_t r, c;

    if (parse_num(&p, end, 65535, &r) < 0 || r < 0)
        return -EINVAL;
    if (p == end || *p != ' ')
        return -EINVAL;
    p++;
    if (parse_num(&p, end, 65535, &c) < 0 || c < 0 || p != end)
        return -EINVAL;
    *rows = (unsigned)r;
    *cols = (unsigned)c;
    return 0;
}

static const char *const state_names[] = {"created", "running", "exited"};

int rt_mon_status_format(const struct rt_mon_status *st, char *out, size_t out_len)
{
    unsigned s = (unsigned)st->state < AG_ARRAY_LEN(state_names) ? (unsigned)st->state : 0;
    int n = snprintf(out, out_len,
                     "state=%s monitor_pid=%d pid=%d exit_code=%d signal=%d oom_killed=%d "
                     "created_at=%lld started_at=%lld finished_at=%lld",
                     state_names[s], st->monitor_pid, st->pid, st->exit_code, st->signal,
                     st->oom_killed ? 1 : 0, (long long)st->created_at,
                     (long long)st->started_at, (long long)st->finished_at);
    return (n < 0 || (size_t)n >= out_len) ? -ENOSPC : n;
}

static bool key_is(const uint8_t *k, size_t k_len, const char *name)
{
    return strlen(name) == k_len && memcmp(k, name, k_len) == 0;
}

/* The numeric status keys, their ranges and where they go. */
struct num_key {
    const char *name;
    int64_t lo, hi;
    size_t off;
    bool is_int; /* int field (else int64_t) */
    unsigned seen_bit;
};

#define NUM_KEY(n, lo, hi, field, is_int, bit)                                                     \
    {n, lo, hi, offsetof(struct rt_mon_status, field), is_int, bit}
static const struct num_key num_keys[] = {
    NUM_KEY("pid", 0, INT32_MAX, pid, true, 2),
    NUM_KEY("monitor_pid", 0, INT32_MAX, monitor_pid, true, 0),
    NUM_KEY("exit_code", INT32_MIN, INT32_MAX, exit_code, true, 0),
    NUM_KEY("signal", 0, 64, signal, true, 0),
    NUM_KEY("created_at", 0, INT64_MAX, created_at, false, 0),
    NUM_KEY("started_at", 0, INT64_MAX, started_at, false, 0),
    NUM_KEY("finished_at", 0, INT64_MAX, finished_at, false, 0),
};

static int status_field(struct rt_mon_status *out, const uint8_t *k, size_t k_len,
                        const uint8_t *v, const uint8_t *v_end, unsigned *seen)
{
    int64_t n;
    const uint8_t *p = v;
    bool num_ok = parse_num(&p, v_end, INT64_MAX, &n) == 0 && p == v_end;

    if (key_is(k, k_len, "state")) {
        for (unsigned i = 0; i < AG_ARRAY_LEN(state_names); i++) {
            if (key_is(v, (size_t)(v_end - v), state_names[i])) {
                out->state = (enum rt_mon_state)i;
                *seen |= 1;
                return 0;
            }
        }
        return -EINVAL;
    }
    if (key_is(k, k_len, "oom_killed")) {
        if (!num_ok || (n != 0 && n != 1))
            return -EINVAL;
        out->oom_killed = n == 1;
        return 0;
    }
    for (unsigned i = 0; i < AG_ARRAY_LEN(num_keys); i++) {
        const struct num_key *nk = &num_keys[i];
        if (!key_is(k, k_len, nk->name))
            continue;
        if (!num_ok || n < nk->lo || n > nk->hi)
            return -EINVAL;
        if (nk->is_int)
            *(int *)((char *)out + nk->off) = (int)n;
        else
            *(int64_t *)((char *)out + nk->off) = n;
        *seen |= nk->seen_bit;
        return 0;
    }
    return 0; /* a key from a newer monitor */
}

int rt_mon_status_parse(const char *text, size_t len, struct rt_mon_status *out)
{
    const uint8_t *p = (const uint8_t *)text, *end = p + len;
    unsigned seen = 0;

    memset(out, 0, sizeof(*out));
    while (p < end) {
        const uint8_t *tok = p, *eq;
        while (p < end && *p != ' ')
            p++;
        eq = memchr(tok, '=', (size_t)(p - tok));
        if (eq == NULL || eq == tok)
            return -EINVAL;
        if (status_field(out, tok, (size_t)(eq - tok), eq + 1, p, &seen) < 0)
            return -EINVAL;
        if (p < end)
            p++;
    }
    return seen == 3 ? 0 : -EINVAL;
}
