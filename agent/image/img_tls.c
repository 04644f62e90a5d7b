/* agent/image: the TLS client engine for registry connections, on mbedTLS,
 * sans-I/O.
 *
 * mbedtls_ssl_set_bio connects the session to two byte queues instead of a
 * socket: ciphertext received by img_conn is appended to `in` and consumed
 * by mbedTLS (WANT_READ when it runs dry); ciphertext mbedTLS produces is
 * appended to `out`, which img_conn writes to the socket.  A shared
 * img_tls_cfg holds what is per registry host: the system CA bundle plus an
 * extra CA, the client certificate for mTLS, and whether verification is
 * skipped (only when configured).  mbedTLS 2.28 matches the host name only
 * against dNSName SANs and the CN, so for a registry addressed by an IP
 * literal a verify callback looks for an iPAddress SAN equal to that
 * address in the leaf certificate and clears only the name-mismatch flag
 * when one matches (RFC 6125 / what Go and OpenSSL do); the chain, dates
 * and every other check stay mbedTLS's.  Invariant: a session never reports its
 * handshake done unless the peer's certificate verified (or verification
 * was explicitly disabled), and the queues stay bounded (IN_MAX, OUT_MAX).
 */
#include "image/img_net.h"

#include <arpa/inet.h>
#include <mbedtls/asn1.h>
#include <mbedtls/ctr_drbg.h>
#include <mbedtls/entropy.h>
#include <mbedtls/error.h>
#include <mbedtls/oid.h>
#include <mbedtls/pk.h>
#include <mbedtls/ssl.h>
#include <mbedtls/x509_crt.h>
#include <stdio.h>
#include <string.h>

#define IN_MAX (1u << 20)
#define OUT_MAX (4u << 20)

struct img_tls_cfg {
    mbedtls_ssl_config conf;
    mbedtls_x509_crt ca;
    mbedtls_x509_crt cert;
    mbedtls_pk_context key;
    mbedtls_entropy_context entropy;
    mbedtls_ctr_drbg_context drbg;
};

struct img_tls {
    mbedtls_ssl_context ssl;
    uint8_t ip[16]; /* the server's address when it was given as an IP literal */
    size_t ip_len;  /* 4, 16, or 0 for a DNS name */
    uint8_t *in;
    size_t in_off, in_len, in_cap;
    uint8_t *out;
    size_t out_len, out_cap;
};

static void tls_strerror(int rc, char *buf, size_t len) { mbedtls_strerror(rc, buf, len); }

void img_tls_cfg_free(struct img_tls_cfg *cfg)
{
    if (cfg == NULL)
        return;
    mbedtls_ssl_config_free(&cfg->conf);
    mbedtls_x509_crt_free(&cfg->ca);
    mbedtls_x509_crt_free(&cfg->cert);
    mbedtls_pk_free(&cfg->key);
    mbedtls_ctr_drbg_free(&cfg->drbg);
    mbedtls_entropy_free(&cfg->entropy);
    free(cfg);
}

static int load_certs(struct img_tls_cfg *cfg, const struct img_tls_opts *o, struct ag_err *err)
{
    char msg[128];
    int rc;

    /* The system bundle may hold certificates mbedTLS cannot parse: a
     * positive return counts those, which is fine. */
    rc = mbedtls_x509_crt_parse_file(&cfg->ca, IMG_TLS_SYSTEM_CA);
    (void)rc;
    if (o->ca_file != NULL) {
        rc = mbedtls_x509_crt_parse_file(&cfg->ca, o->ca_file);
        if (rc != 0) {
            tls_strerror(rc, msg, sizeof(msg));
            return ag_err_set(err, -EINVAL, "ca_file %s: %s", o->ca_file, msg);
        }
    }
    if ((o->cert_file == NULL) != (o->key_file == NULL))
        return ag_err_set(err, -EINVAL, "cert_file and key_file must be given together");
    if (o->cert_file != NULL) {
        rc = mbedtls_x509_crt_parse_file(&cfg->cert, o->cert_file);
        if (rc != 0) {
            tls_strerror(rc, msg, sizeof(msg));
            return ag_err_set(err, -EINVAL, "cert_file %s: %s", o->cert_file, msg);
        }
        rc = mbedtls_pk_parse_keyfile(&cfg->key, o->key_file, NULL);
        if (rc != 0) {
            tls_strerror(rc, msg, sizeof(msg));
            return ag_err_set(err, -EINVAL, "key_file %s: %s", o->key_file, msg);
        }
        rc = mbedtls_ssl_conf_own_cert(&cfg->conf, &cfg->cert, &cfg->key);
        if (rc != 0)
            return ag_err_set(err, -EINVAL, "client certificate does not match its key");
    }
    return 0;
}

int img_tls_cfg_new(const struct img_tls_opts *o, struct img_tls_cfg **out, struct ag_err *err)
{
    static const char pers[] = "picocri-registry";
    struct img_tls_cfg *cfg = calloc(1, sizeof(*cfg));
    int rc;

    if (cfg == NULL)
        return ag_err_set(err, -ENOMEM, "tls config: out of memory");
    mbedtls_ssl_config_init(&cfg->conf);
    mbedtls_x509_crt_init(&cfg->ca);
    mbedtls_x509_crt_init(&cfg->cert);
    mbedtls_pk_init(&cfg->key);
    mbedtls_entropy_init(&cfg->entropy);
    mbedtls_ctr_drbg_init(&cfg->drbg);
    rc = mbedtls_ctr_drbg_seed(&cfg->drbg, mbedtls_entropy_func, &cfg->entropy,
                               (const unsigned char *)pers, sizeof(pers) - 1);
    if (rc == 0)
        rc = mbedtls_ssl_config_defaults(&cfg->conf, MBEDTLS_SSL_IS_CLIENT,
                                         MBEDTLS_SSL_TRANSPORT_STREAM, MBEDTLS_SSL_PRESET_DEFAULT);
    if (rc != 0) {
        img_tls_cfg_free(cfg);
        return ag_err_set(err, -EIO, "tls config: mbedTLS setup failed (-0x%04x)", -rc);
    }
    mbedtls_ssl_conf_rng(&cfg->conf, mbedtls_ctr_drbg_random, &cfg->drbg);
    rc = load_certs(cfg, o, err);
    if (rc < 0) {
        img_tls_cfg_free(cfg);
        return rc;
    }
    mbedtls_ssl_conf_ca_chain(&cfg->conf, &cfg->ca, NULL);
    mbedtls_ssl_conf_authmode(&cfg->conf, o->insecure_skip_verify ? MBEDTLS_SSL_VERIFY_NONE
                                                                  : MBEDTLS_SSL_VERIFY_REQUIRED);
    *out = cfg;
    return 0;
}

static int bio_send(void *ctx, const unsigned char *buf, size_t len)
{
    struct img_tls *t = ctx;

    if (t->out_len + len > OUT_MAX)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    if (t->out_len + len > t->out_cap) {
        size_t cap = t->out_cap ? t->out_cap : 16384;
        while (cap < t->out_len + len)
            cap *= 2;
        uint8_t *p = realloc(t->out, cap);
        if (p == NULL)
            return MBEDTLS_ERR_SSL_ALLOC_FAILED;
        t->out = p;
        t->out_cap = cap;
    }
    memcpy(t->out + t->out_len, buf, len);
    t->out_len += len;
    return (int)len;
}

static int bio_recv(void *ctx, unsigned char *buf, size_t len)
{
    struct img_tls *t = ctx;
    size_t avail = t->in_len - t->in_off;

    if (avail == 0)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (len > avail)
        len = avail;
    memcpy(buf, t->in + t->in_off, len);
    t->in_off += len;
    if (t->in_off == t->in_len)
        t->in_off = t->in_len = 0;
    return (int)len;
}

/* ---- IP address SANs ------------------------------------------------------------ */

/* GeneralNames (a SEQUENCE of context-tagged names) in [p, end): true if
 * one is an iPAddress ([7], 4 or 16 octets) equal to ip. */
static bool names_have_ip(unsigned char *p, const unsigned char *end, const uint8_t *ip,
                          size_t ip_len)
{
    size_t len;

    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
        return false;
    end = p + len;
    while (p < end) {
        unsigned char tag = *p++;
        if (mbedtls_asn1_get_len(&p, end, &len) != 0)
            return false;
        if (tag == (MBEDTLS_ASN1_CONTEXT_SPECIFIC | MBEDTLS_X509_SAN_IP_ADDRESS) && len == ip_len &&
            memcmp(p, ip, ip_len) == 0)
            return true;
        p += len;
    }
    return false;
}

/* Walks the certificate's v3 extensions (Extensions ::= SEQUENCE OF
 * SEQUENCE { extnID OID, critical BOOLEAN DEFAULT FALSE, extnValue OCTET
 * STRING }) to the subjectAltName one.  mbedTLS already parsed these bytes;
 * every length is still checked against its enclosing element. */
bool img_tls__cert_has_ip(const mbedtls_x509_crt *crt, const uint8_t *ip, size_t ip_len)
{
    unsigned char *p = crt->v3_ext.p, *end, *ext_end;
    mbedtls_x509_buf oid;
    size_t len;
    int critical;

    if (p == NULL || crt->v3_ext.len == 0 || (ip_len != 4 && ip_len != 16))
        return false;
    end = p + crt->v3_ext.len;
    if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) != 0)
        return false;
    end = p + len;
    while (p < end) {
        if (mbedtls_asn1_get_tag(&p, end, &len, MBEDTLS_ASN1_CONSTRUCTED | MBEDTLS_ASN1_SEQUENCE) !=
            0)
            return false;
        ext_end = p + len;
        if (mbedtls_asn1_get_tag(&p, ext_end, &oid.len, MBEDTLS_ASN1_OID) != 0)
            return false;
        oid.p = p;
        p += oid.len;
        if (p < ext_end && *p == MBEDTLS_ASN1_BOOLEAN &&
            mbedtls_asn1_get_bool(&p, ext_end, &critical) != 0)
            return false;
        if (mbedtls_asn1_get_tag(&p, ext_end, &len, MBEDTLS_ASN1_OCTET_STRING) != 0)
            return false;
        if (MBEDTLS_OID_CMP(MBEDTLS_OID_SUBJECT_ALT_NAME, &oid) == 0)
            return names_have_ip(p, p + len, ip, ip_len);
        p = ext_end;
    }
    return false;
}

/* mbedTLS calls this for each certificate of the verified chain (depth 0 is
 * the server's) with the flags found so far. */
static int verify_ip(void *data, mbedtls_x509_crt *crt, int depth, uint32_t *flags)
{
    struct img_tls *t = data;

    if (depth == 0 && t->ip_len > 0 && (*flags & MBEDTLS_X509_BADCERT_CN_MISMATCH) &&
        img_tls__cert_has_ip(crt, t->ip, t->ip_len))
        *flags &= ~(uint32_t)MBEDTLS_X509_BADCERT_CN_MISMATCH;
    return 0;
}

/* Sets t->ip when name is an IPv4 or IPv6 literal ("[::1]" or "::1"). */
static void parse_ip(struct img_tls *t, const char *name)
{
    char buf[INET6_ADDRSTRLEN + 2];
    size_t n = strlen(name);

    if (inet_pton(AF_INET, name, t->ip) == 1) {
        t->ip_len = 4;
        return;
    }
    if (n >= 2 && name[0] == '[' && name[n - 1] == ']' && n - 2 < sizeof(buf)) {
        memcpy(buf, name + 1, n - 2);
        buf[n - 2] = '\0';
        name = buf;
    }
    if (inet_pton(AF_INET6, name, t->ip) == 1)
        t->ip_len = 16;
}

int img_tls_new(struct img_tls_cfg *cfg, const char *server_name, struct img_tls **out)
{
    struct img_tls *t = calloc(1, sizeof(*t));

    if (t == NULL)
        return -ENOMEM;
    mbedtls_ssl_init(&t->ssl);
    if (mbedtls_ssl_setup(&t->ssl, &cfg->conf) != 0 ||
        mbedtls_ssl_set_hostname(&t->ssl, server_name) != 0) {
        img_tls_free(t);
        return -ENOMEM;
    }
    mbedtls_ssl_set_bio(&t->ssl, t, bio_send, bio_recv, NULL);
    parse_ip(t, server_name);
    if (t->ip_len > 0)
        mbedtls_ssl_set_verify(&t->ssl, verify_ip, t);
    *out = t;
    return 0;
}

void img_tls_free(struct img_tls *t)
{
    if (t == NULL)
        return;
    mbedtls_ssl_free(&t->ssl);
    free(t->in);
    free(t->out);
    free(t);
}

int img_tls_feed(struct img_tls *t, const uint8_t *in, size_t len)
{
    if (t->in_len - t->in_off + len > IN_MAX)
        return -ENOBUFS;
    if (t->in_off > 0 && t->in_len + len > t->in_cap) {
        memmove(t->in, t->in + t->in_off, t->in_len - t->in_off);
        t->in_len -= t->in_off;
        t->in_off = 0;
    }
    if (t->in_len + len > t->in_cap) {
        size_t cap = t->in_cap ? t->in_cap : 16384;
        while (cap < t->in_len + len)
            cap *= 2;
        uint8_t *p = realloc(t->in, cap);
        if (p == NULL)
            return -ENOMEM;
        t->in = p;
        t->in_cap = cap;
    }
    memcpy(t->in + t->in_len, in, len);
    t->in_len += len;
    return 0;
}

size_t img_tls_in_pending(const struct img_tls *t) { return t->in_len - t->in_off; }

int img_tls_handshake(struct img_tls *t, struct ag_err *err)
{
    char msg[160];
    int rc = mbedtls_ssl_handshake(&t->ssl);

    if (rc == 0)
        return 0;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return -EAGAIN;
    if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED) {
        uint32_t flags = mbedtls_ssl_get_verify_result(&t->ssl);
        int n = mbedtls_x509_crt_verify_info(msg, sizeof(msg), "", flags);
        while (n > 0 && (msg[n - 1] == '\n' || msg[n - 1] == ' '))
            msg[--n] = '\0';
        for (char *p = msg; *p; p++)
            if (*p == '\n')
                *p = ';';
        return ag_err_set(err, -EKEYREJECTED, "tls: certificate verification failed: %s", msg);
    }
    tls_strerror(rc, msg, sizeof(msg));
    return ag_err_set(err, -EPROTO, "tls handshake: %s", msg);
}

ssize_t img_tls_read(struct img_tls *t, uint8_t *buf, size_t len)
{
    int rc = mbedtls_ssl_read(&t->ssl, buf, len);

    if (rc > 0)
        return rc;
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY)
        return 0;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return -EAGAIN;
    return -EPROTO;
}

int img_tls_write(struct img_tls *t, const uint8_t *plain, size_t len)
{
    while (len > 0) {
        int rc = mbedtls_ssl_write(&t->ssl, plain, len);
        if (rc <= 0)
            return rc == MBEDTLS_ERR_SSL_WANT_WRITE ? -ENOBUFS : -EPROTO;
        plain += rc;
        len -= (size_t)rc;
    }
    return 0;
}

size_t img_tls_out(struct img_tls *t, const uint8_t **data)
{
    *data = t->out;
    return t->out_len;
}

void img_tls_out_consume(struct img_tls *t, size_t n)
{
    if (n >= t->out_len) {
        t->out_len = 0;
        return;
    }
    memmove(t->out, t->out + n, t->out_len - n);
    t->out_len -= n;
}
