/* agent/stream: one-time tokens for streaming URLs.  A token is 32 random
 * bytes in URL-safe base64, bound to the kind and the copy of the CRI
 * request it was issued for; it is taken once, expires after a minute, and
 * at most STRM_TOKEN_MAX are outstanding, so a client that never connects
 * cannot grow the table.  Linear search: the table is small and short-lived. */
#include "strm.h"

#include <string.h>
#include <sys/random.h>

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

void strm_tokens_init(struct strm_tokens *t)
{
    t->tickets = NULL;
    t->count = 0;
}

static void drop(struct strm_tokens *t, size_t i)
{
    if (t->tickets[i].free_request != NULL)
        t->tickets[i].free_request(t->tickets[i].request);
    t->tickets[i] = t->tickets[--t->count];
}

void strm_tokens_fini(struct strm_tokens *t)
{
    while (t->count > 0)
        drop(t, t->count - 1);
    free(t->tickets);
    strm_tokens_init(t);
}

void strm_tokens_expire(struct strm_tokens *t, uint64_t now_ms)
{
    for (size_t i = t->count; i-- > 0;)
        if (t->tickets[i].expires_ms <= now_ms)
            drop(t, i);
}

static int make_token(char out[STRM_TOKEN_LEN + 1])
{
    uint8_t raw[33] = {0};
    size_t o = 0;

    if (getrandom(raw, 32, 0) != 32)
        return -EIO;
    for (size_t i = 0; i < 33; i += 3) {
        uint32_t v = (uint32_t)raw[i] << 16 | (uint32_t)raw[i + 1] << 8 | raw[i + 2];
        for (int k = 3; k >= 0 && o < STRM_TOKEN_LEN; k--)
            out[o++] = b64url[(v >> (6 * k)) & 63];
    }
    out[STRM_TOKEN_LEN] = '\0';
    return 0;
}

int strm_tokens_issue(struct strm_tokens *t, enum strm_kind kind, void *request,
                      void (*free_request)(void *), uint64_t now_ms,
                      char out[STRM_TOKEN_LEN + 1])
{
    int rc = 0;

    strm_tokens_expire(t, now_ms);
    if (t->count >= STRM_TOKEN_MAX) {
        rc = -EAGAIN;
    } else if ((rc = make_token(out)) == 0) {
        struct strm_ticket *nt = realloc(t->tickets, (t->count + 1) * sizeof(*nt));
        if (nt == NULL) {
            rc = -ENOMEM;
        } else {
            t->tickets = nt;
            struct strm_ticket *k = &t->tickets[t->count++];
            memcpy(k->token, out, STRM_TOKEN_LEN + 1);
            k->kind = kind;
            k->request = request;
            k->free_request = free_request;
            k->expires_ms = now_ms + STRM_TOKEN_TTL_MS;
            return 0;
        }
    }
    if (free_request != NULL)
        free_request(request);
    return rc;
}

int strm_tokens_take(struct strm_tokens *t, const char *token, enum strm_kind kind,
                     uint64_t now_ms, struct strm_ticket *out)
{
    strm_tokens_expire(t, now_ms);
    for (size_t i = 0; i < t->count; i++) {
        if (strcmp(t->tickets[i].token, token) != 0)
            continue;
        if (t->tickets[i].kind != kind)
            return -EINVAL;
        *out = t->tickets[i];
        t->tickets[i] = t->tickets[--t->count];
        return 0;
    }
    return -ENOENT;
}
