/* agent/image: platforms.  Normalises os/architecture/variant the way
 * containerd does, detects the running machine's platform, and picks the
 * manifest for a platform from an image index with containerd's down-level
 * fallbacks (arm64 -> arm/v8..v5, arm/v7 -> v6 -> v5, amd64 -> 386).
 * Invariant: comparisons are made only between normalised platforms. */
#include "image/image.h"

#include <ctype.h>
#include <stdio.h>
#include <string.h>
#include <sys/utsname.h>

#define PREF_MAX 24

static void lower(char *s)
{
    for (; *s; s++)
        *s = (char)tolower((unsigned char)*s);
}

static void set(char *dst, size_t n, const char *src) { snprintf(dst, n, "%s", src); }
#define SET(field, v) set((field), sizeof(field), (v))

static bool eq(const char *a, const char *b) { return strcmp(a, b) == 0; }

void img_platform_normalize(struct img_platform *p)
{
    char *a = p->architecture, *v = p->variant;

    lower(p->os);
    lower(a);
    lower(v);
    if (p->os[0] == '\0')
        SET(p->os, "linux");
    else if (eq(p->os, "macos"))
        SET(p->os, "darwin");
    if (eq(a, "i386")) {
        SET(p->architecture, "386");
        v[0] = '\0';
    } else if (eq(a, "x86_64") || eq(a, "x86-64") || eq(a, "amd64")) {
        SET(p->architecture, "amd64");
        if (eq(v, "v1"))
            v[0] = '\0';
    } else if (eq(a, "aarch64") || eq(a, "arm64")) {
        SET(p->architecture, "arm64");
        if (eq(v, "8") || eq(v, "v8") || eq(v, "v8.0"))
            v[0] = '\0';
        else if (eq(v, "9") || eq(v, "9.0") || eq(v, "v9.0"))
            SET(p->variant, "v9");
    } else if (eq(a, "armhf")) {
        SET(p->architecture, "arm");
        SET(p->variant, "v7");
    } else if (eq(a, "armel")) {
        SET(p->architecture, "arm");
        SET(p->variant, "v6");
    } else if (eq(a, "arm")) {
        if (v[0] == '\0' || eq(v, "7"))
            SET(p->variant, "v7");
        else if (eq(v, "5") || eq(v, "6") || eq(v, "8")) {
            char t[4] = {'v', v[0], '\0', '\0'};
            SET(p->variant, t);
        }
    }
}

int img_platform_parse(const char *s, struct img_platform *out, struct ag_err *err)
{
    char buf[128];
    char *parts[4] = {0};
    size_t n = 0;
    char *save = NULL;

    memset(out, 0, sizeof(*out));
    if (s == NULL || strlen(s) >= sizeof(buf))
        return ag_err_set(err, -EINVAL, "invalid platform");
    strcpy(buf, s);
    for (char *t = strtok_r(buf, "/", &save); t; t = strtok_r(NULL, "/", &save)) {
        if (n == 3)
            return ag_err_set(err, -EINVAL, "platform \"%s\": want os/arch[/variant]", s);
        parts[n++] = t;
    }
    if (n < 2)
        return ag_err_set(err, -EINVAL, "platform \"%s\": want os/arch[/variant]", s);
    if (strlen(parts[0]) >= sizeof(out->os) || strlen(parts[1]) >= sizeof(out->architecture) ||
        (parts[2] && strlen(parts[2]) >= sizeof(out->variant)))
        return ag_err_set(err, -EINVAL, "platform \"%s\": field too long", s);
    SET(out->os, parts[0]);
    SET(out->architecture, parts[1]);
    if (parts[2])
        SET(out->variant, parts[2]);
    img_platform_normalize(out);
    return 0;
}

int img_platform_format(const struct img_platform *p, char *out, size_t out_len)
{
    int n = snprintf(out, out_len, "%s/%s%s%s", p->os, p->architecture, p->variant[0] ? "/" : "",
                     p->variant);

    return (n < 0 || (size_t)n >= out_len) ? -ENAMETOOLONG : n;
}

/* The value of a "key : value" line of /proc/cpuinfo (first occurrence). */
static bool cpuinfo_value(const char *cpuinfo, const char *key, char *out, size_t out_len)
{
    size_t klen = strlen(key);

    for (const char *line = cpuinfo; line && *line;) {
        const char *end = strchr(line, '\n');
        size_t len = end ? (size_t)(end - line) : strlen(line);
        if (len > klen && strncmp(line, key, klen) == 0 &&
            (line[klen] == ' ' || line[klen] == '\t' || line[klen] == ':')) {
            const char *c = memchr(line, ':', len);
            if (c) {
                c++;
                while (*c == ' ' || *c == '\t')
                    c++;
                size_t n = (size_t)(line + len - c);
                if (n >= out_len)
                    n = out_len - 1;
                memcpy(out, c, n);
                out[n] = '\0';
                while (n > 0 && isspace((unsigned char)out[n - 1]))
                    out[--n] = '\0';
                return true;
            }
        }
        line = end ? end + 1 : NULL;
    }
    return false;
}

/* containerd cpuinfo_linux.go: "CPU architecture" value -> ARM version. */
static int arm_version(const char *v)
{
    if (eq(v, "8") || eq(v, "AArch64"))
        return 8;
    if (eq(v, "7") || eq(v, "7M") || eq(v, "?(12)") || eq(v, "?(13)") || eq(v, "?(14)") ||
        eq(v, "?(15)") || eq(v, "?(16)") || eq(v, "?(17)"))
        return 7;
    if (eq(v, "6") || eq(v, "6TEJ"))
        return 6;
    if (eq(v, "5") || eq(v, "5T") || eq(v, "5TE") || eq(v, "5TEJ"))
        return 5;
    return 0;
}

static int arm_version_from_machine(const char *m)
{
    if (strncmp(m, "armv", 4) == 0 && m[4] >= '5' && m[4] <= '8')
        return m[4] - '0';
    if (eq(m, "aarch64") || eq(m, "arm64"))
        return 8;
    return 0;
}

int img_platform_from_machine(const char *machine, const char *cpuinfo, struct img_platform *out,
                              struct ag_err *err)
{
    char val[64], model[64];
    int ver = 0;

    memset(out, 0, sizeof(*out));
    SET(out->os, "linux");
    if (eq(machine, "x86_64") || eq(machine, "amd64")) {
        SET(out->architecture, "amd64");
    } else if (eq(machine, "i386") || eq(machine, "i486") || eq(machine, "i586") ||
               eq(machine, "i686")) {
        SET(out->architecture, "386");
    } else if (eq(machine, "aarch64") || eq(machine, "arm64") || strncmp(machine, "arm", 3) == 0) {
        bool is64 = eq(machine, "aarch64") || eq(machine, "arm64");
        if (cpuinfo && cpuinfo_value(cpuinfo, "CPU architecture", val, sizeof(val)))
            ver = arm_version(val);
        if (ver == 0)
            ver = arm_version_from_machine(machine);
        if (ver == 0)
            return ag_err_set(err, -ENOTSUP, "cannot tell the ARM version of \"%s\"", machine);
        /* Raspberry Pi 1/Zero: the kernel reports 7 for an ARMv6 core. */
        if (!is64 && ver == 7 && cpuinfo &&
            cpuinfo_value(cpuinfo, "model name", model, sizeof(model)) &&
            strncmp(model, "ARMv6-compatible", 16) == 0)
            ver = 6;
        SET(out->architecture, is64 ? "arm64" : "arm");
        snprintf(out->variant, sizeof(out->variant), "v%d", ver);
    } else if (eq(machine, "ppc64le") || eq(machine, "s390x") || eq(machine, "riscv64") ||
               eq(machine, "mips64") || eq(machine, "loong64")) {
        SET(out->architecture, machine);
    } else {
        return ag_err_set(err, -ENOTSUP, "unknown machine \"%s\"", machine);
    }
    img_platform_normalize(out);
    return 0;
}

static const char *compile_time_machine(void)
{
#if defined(__x86_64__)
    return "x86_64";
#elif defined(__aarch64__)
    return "aarch64";
#elif defined(__arm__) && defined(__ARM_ARCH) && __ARM_ARCH >= 7
    return "armv7l";
#elif defined(__arm__)
    return "armv6l";
#elif defined(__i386__)
    return "i686";
#else
    return "unknown";
#endif
}

int img_platform_host(struct img_platform *out, struct ag_err *err)
{
    struct utsname u;
    _cleanup_free_ char *cpuinfo = NULL;
    size_t len;
    struct ag_err tmp;

    ag_err_init(&tmp);
    if (uname(&u) < 0)
        snprintf(u.machine, sizeof(u.machine), "%s", compile_time_machine());
    /* Absent /proc (early boot, some sandboxes): derive from uname only. */
    if (ag_file_read("/proc/cpuinfo", 1 << 20, &cpuinfo, &len) < 0)
        cpuinfo = NULL;
    if (img_platform_from_machine(u.machine, cpuinfo, out, &tmp) == 0)
        return 0;
    return img_platform_from_machine(compile_time_machine(), cpuinfo, out, err);
}

bool img_platform_match(const struct img_platform *want, const struct img_platform *candidate)
{
    struct img_platform c = *candidate;

    img_platform_normalize(&c);
    return eq(c.os, want->os) && eq(c.architecture, want->architecture) &&
           eq(c.variant, want->variant);
}

static void add(struct img_platform *prefs, size_t *n, const char *os, const char *arch,
                const char *variant)
{
    if (*n >= PREF_MAX)
        return;
    memset(&prefs[*n], 0, sizeof(prefs[*n]));
    SET(prefs[*n].os, os);
    SET(prefs[*n].architecture, arch);
    SET(prefs[*n].variant, variant);
    (*n)++;
}

static void add_arm32(struct img_platform *prefs, size_t *n, const char *os, int from)
{
    char v[16];

    for (int i = from; i >= 5; i--) {
        snprintf(v, sizeof(v), "v%d", i);
        add(prefs, n, os, "arm", v);
    }
}

/* Parses "v<major>[.<minor>]" -> major, minor; false when not of that form. */
static bool variant_num(const char *v, int *major, int *minor)
{
    *minor = 0;
    return sscanf(v, "v%d.%d", major, minor) >= 1 && *major > 0 && *major < 100 && *minor >= 0 &&
           *minor < 100;
}

/* The fact sheet's "Only" matcher preference list for a normalised host. */
static size_t preferences(const struct img_platform *w, unsigned flags, struct img_platform *prefs)
{
    size_t n = 0;
    int major, minor;
    char v[16];

    add(prefs, &n, w->os, w->architecture, w->variant);
    if (flags & IMG_PLATFORM_STRICT)
        return n;
    if (eq(w->architecture, "amd64")) {
        if (variant_num(w->variant, &major, &minor))
            for (int i = major - 1; i >= 2; i--) {
                snprintf(v, sizeof(v), "v%d", i);
                add(prefs, &n, w->os, "amd64", v);
            }
        if (w->variant[0])
            add(prefs, &n, w->os, "amd64", "");
        add(prefs, &n, w->os, "386", "");
    } else if (eq(w->architecture, "arm64")) {
        if (variant_num(w->variant, &major, &minor)) {
            int m8 = 0;
            if (major == 9) {
                for (int i = minor - 1; i >= 0; i--) {
                    snprintf(v, sizeof(v), i ? "v9.%d" : "v9", i);
                    add(prefs, &n, w->os, "arm64", v);
                }
                m8 = minor + 5 > 9 ? 9 : minor + 5;
            } else if (major == 8) {
                m8 = minor - 1;
            }
            for (int i = m8; i >= 1; i--) {
                snprintf(v, sizeof(v), "v8.%d", i);
                add(prefs, &n, w->os, "arm64", v);
            }
            add(prefs, &n, w->os, "arm64", "");
        }
        if (!(flags & IMG_PLATFORM_NO_ARM32))
            add_arm32(prefs, &n, w->os, 8);
    } else if (eq(w->architecture, "arm") && variant_num(w->variant, &major, &minor)) {
        add_arm32(prefs, &n, w->os, major - 1);
    }
    return n;
}

static bool skip_entry(const struct img_descriptor *d)
{
    enum img_doc_kind k = img_media_type_kind(d->media_type);

    if (k != IMG_DOC_INDEX && k != IMG_DOC_MANIFEST)
        return true; /* unknown entry types are skipped, not errors */
    if (!d->has_platform)
        return true;
    return eq(d->platform.architecture, "unknown") && eq(d->platform.os, "unknown");
}

static int not_found(const struct img_index *idx, const struct img_platform *want,
                     struct ag_err *err)
{
    char have[256] = "", w[96], one[96];
    size_t used = 0, shown = 0;

    if (img_platform_format(want, w, sizeof(w)) < 0)
        SET(w, "?");
    for (size_t i = 0; i < idx->manifests_count && shown < 8; i++) {
        if (skip_entry(&idx->manifests[i]) ||
            img_platform_format(&idx->manifests[i].platform, one, sizeof(one)) < 0)
            continue;
        int k = snprintf(have + used, sizeof(have) - used, "%s%s", shown ? ", " : "", one);
        if (k < 0 || (size_t)k >= sizeof(have) - used)
            break;
        used += (size_t)k;
        shown++;
    }
    return ag_err_set(err, -ENOENT, "no manifest for platform %s (image has: %s)", w,
                      shown ? have : "none");
}

int img_index_select(const struct img_index *idx, const struct img_platform *want, unsigned flags,
                     struct ag_err *err)
{
    struct img_platform prefs[PREF_MAX];
    struct img_platform w = *want;
    size_t n;

    img_platform_normalize(&w);
    n = preferences(&w, flags, prefs);
    for (size_t p = 0; p < n; p++) {
        for (size_t i = 0; i < idx->manifests_count; i++) {
            const struct img_descriptor *d = &idx->manifests[i];
            if (!skip_entry(d) && img_platform_match(&prefs[p], &d->platform))
                return (int)i;
        }
    }
    return not_found(idx, &w, err);
}
