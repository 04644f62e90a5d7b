/* agent/runtime: the OCI mount option table.
 *
 * Maps each option string of a config.json mount to MS_* flags, a
 * propagation change, MOUNT_ATTR_* recursive attributes, or the data string
 * handed to mount(2) (mode=, size=, newinstance, ...).  Pure and allocation
 * bounded by the input, so it is unit-tested and fuzzed with the loader.
 */
#include <string.h>
#include <sys/mount.h>

#include "rt_internal.h"

#ifndef MS_LAZYTIME
#define MS_LAZYTIME (1 << 25)
#endif
#ifndef MS_NOSYMFOLLOW
#define MS_NOSYMFOLLOW 256
#endif

#define ATTR_RDONLY 0x1ull
#define ATTR_NOSUID 0x2ull
#define ATTR_NODEV 0x4ull
#define ATTR_NOEXEC 0x8ull
#define ATTR_NOATIME 0x10ull
#define ATTR_STRICTATIME 0x20ull
#define ATTR_NODIRATIME 0x80ull
#define ATTR_NOSYMFOLLOW 0x200000ull

enum kind { FLAG, CLEAR, PROP, ATTR_SET, ATTR_CLR };

static const struct {
    const char *name;
    enum kind kind;
    unsigned long long value;
} table[] = {
    {"ro", FLAG, MS_RDONLY},
    {"rw", CLEAR, MS_RDONLY},
    {"nosuid", FLAG, MS_NOSUID},
    {"suid", CLEAR, MS_NOSUID},
    {"nodev", FLAG, MS_NODEV},
    {"dev", CLEAR, MS_NODEV},
    {"noexec", FLAG, MS_NOEXEC},
    {"exec", CLEAR, MS_NOEXEC},
    {"sync", FLAG, MS_SYNCHRONOUS},
    {"async", CLEAR, MS_SYNCHRONOUS},
    {"dirsync", FLAG, MS_DIRSYNC},
    {"remount", FLAG, MS_REMOUNT},
    {"mand", FLAG, MS_MANDLOCK},
    {"nomand", CLEAR, MS_MANDLOCK},
    {"atime", CLEAR, MS_NOATIME},
    {"noatime", FLAG, MS_NOATIME},
    {"diratime", CLEAR, MS_NODIRATIME},
    {"nodiratime", FLAG, MS_NODIRATIME},
    {"relatime", FLAG, MS_RELATIME},
    {"norelatime", CLEAR, MS_RELATIME},
    {"strictatime", FLAG, MS_STRICTATIME},
    {"nostrictatime", CLEAR, MS_STRICTATIME},
    {"lazytime", FLAG, MS_LAZYTIME},
    {"nolazytime", CLEAR, MS_LAZYTIME},
    {"iversion", FLAG, MS_I_VERSION},
    {"noiversion", CLEAR, MS_I_VERSION},
    {"silent", FLAG, MS_SILENT},
    {"loud", CLEAR, MS_SILENT},
    {"nosymfollow", FLAG, MS_NOSYMFOLLOW},
    {"symfollow", CLEAR, MS_NOSYMFOLLOW},
    {"bind", FLAG, MS_BIND},
    {"rbind", FLAG, MS_BIND | MS_REC},
    {"private", PROP, MS_PRIVATE},
    {"rprivate", PROP, MS_PRIVATE | MS_REC},
    {"shared", PROP, MS_SHARED},
    {"rshared", PROP, MS_SHARED | MS_REC},
    {"slave", PROP, MS_SLAVE},
    {"rslave", PROP, MS_SLAVE | MS_REC},
    {"unbindable", PROP, MS_UNBINDABLE},
    {"runbindable", PROP, MS_UNBINDABLE | MS_REC},
    {"rro", ATTR_SET, ATTR_RDONLY},
    {"rrw", ATTR_CLR, ATTR_RDONLY},
    {"rnosuid", ATTR_SET, ATTR_NOSUID},
    {"rsuid", ATTR_CLR, ATTR_NOSUID},
    {"rnodev", ATTR_SET, ATTR_NODEV},
    {"rdev", ATTR_CLR, ATTR_NODEV},
    {"rnoexec", ATTR_SET, ATTR_NOEXEC},
    {"rexec", ATTR_CLR, ATTR_NOEXEC},
    {"rnoatime", ATTR_SET, ATTR_NOATIME},
    {"ratime", ATTR_CLR, ATTR_NOATIME},
    {"rstrictatime", ATTR_SET, ATTR_STRICTATIME},
    {"rnodiratime", ATTR_SET, ATTR_NODIRATIME},
    {"rdiratime", ATTR_CLR, ATTR_NODIRATIME},
    {"rnosymfollow", ATTR_SET, ATTR_NOSYMFOLLOW},
    {"rsymfollow", ATTR_CLR, ATTR_NOSYMFOLLOW},
};

static int data_append(char **data, size_t *len, const char *opt)
{
    size_t n = strlen(opt);
    char *d = realloc(*data, *len + n + 2);
    if (!d)
        return -ENOMEM;
    if (*len)
        d[(*len)++] = ',';
    memcpy(d + *len, opt, n + 1);
    *len += n;
    *data = d;
    return 0;
}

int rt_mount_options_parse(const char *const *options, size_t count, struct rt_mount_opts *o)
{
    size_t data_len = 0;
    memset(o, 0, sizeof(*o));
    for (size_t i = 0; i < count; i++) {
        const char *opt = options[i];
        size_t k;
        for (k = 0; k < AG_ARRAY_LEN(table); k++)
            if (!strcmp(table[k].name, opt))
                break;
        if (k == AG_ARRAY_LEN(table)) {
            if (!strcmp(opt, "tmpcopyup"))
                o->tmpcopyup = true;
            else if (!strcmp(opt, "idmap") || !strcmp(opt, "ridmap"))
                o->idmap = true;
            else if (opt[0] && data_append(&o->data, &data_len, opt) < 0) {
                rt_mount_opts_fini(o);
                return -ENOMEM;
            }
            continue;
        }
        switch (table[k].kind) {
        case FLAG:
            o->flags |= table[k].value;
            o->clear &= ~table[k].value;
            break;
        case CLEAR:
            o->flags &= ~table[k].value;
            o->clear |= table[k].value;
            break;
        case PROP:
            o->propagation = table[k].value;
            break;
        case ATTR_SET:
            o->attr_set |= table[k].value;
            o->attr_clr &= ~table[k].value;
            break;
        case ATTR_CLR:
            o->attr_clr |= table[k].value;
            o->attr_set &= ~table[k].value;
            break;
        }
    }
    if (o->flags & MS_BIND) {
        o->bind = true;
        o->recursive = (o->flags & MS_REC) != 0;
        o->flags &= ~(unsigned long)(MS_BIND | MS_REC);
    }
    return 0;
}

void rt_mount_opts_fini(struct rt_mount_opts *o)
{
    free(o->data);
    o->data = NULL;
}
