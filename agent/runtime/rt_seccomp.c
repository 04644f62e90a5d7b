/* agent/runtime: linux.seccomp compiled with libseccomp.
 *
 * The filter is compiled in the child before it drops privileges (so
 * errors surface at create) and loaded as late as possible, right before
 * execve, so it never blocks the runtime's own setup syscalls.
 * Invariant: syscall names unknown on this architecture are skipped (as
 * runc and crun do); everything else that libseccomp refuses is an error.
 */
#include <seccomp.h>
#include <string.h>

#include "rt_internal.h"

struct rt_seccomp_filter {
    scmp_filter_ctx ctx;
};

static int add_rule(scmp_filter_ctx ctx, uint32_t def, const struct rt_seccomp_rule *r,
                    struct ag_err *err)
{
    struct scmp_arg_cmp cmp[6];
    for (size_t i = 0; i < r->args_count; i++)
        cmp[i] = (struct scmp_arg_cmp){r->args[i].index, (enum scmp_compare)r->args[i].op,
                                       r->args[i].value, r->args[i].value_two};
    if (r->action == def)
        return 0; /* libseccomp refuses rules equal to the default action. */
    for (size_t n = 0; n < r->names_count; n++) {
        int nr = seccomp_syscall_resolve_name(r->names[n]);
        if (nr == __NR_SCMP_ERROR)
            continue;
        int rc = seccomp_rule_add_array(ctx, r->action, nr, (unsigned)r->args_count, cmp);
        if (rc == -EINVAL && r->args_count > 1) {
            /* Several conditions on one argument cannot be ANDed in one rule:
             * add them as separate rules (OR), as runc does for MASKED_EQ lists. */
            for (size_t i = 0; i < r->args_count && rc; i++)
                rc = seccomp_rule_add_array(ctx, r->action, nr, 1, &cmp[i]);
        }
        if (rc < 0)
            return ag_err_set(err, rc, "seccomp rule for %.64s: %s", r->names[n],
                              strerror(-rc));
    }
    return 0;
}

int rt__seccomp_compile(const struct rt_seccomp *sc, struct rt_seccomp_filter **out,
                        struct ag_err *err)
{
    struct rt_seccomp_filter *f = calloc(1, sizeof(*f));
    int rc;
    *out = NULL;
    if (!f)
        return ag_err_set(err, -ENOMEM, "seccomp: out of memory");
    f->ctx = seccomp_init(sc->default_action);
    if (!f->ctx) {
        free(f);
        return ag_err_set(err, -EINVAL, "seccomp_init failed");
    }
    for (size_t i = 0; i < sc->arches_count; i++) {
        rc = seccomp_arch_add(f->ctx, sc->arches[i]);
        if (rc < 0 && rc != -EEXIST) {
            rt__seccomp_free(f);
            return ag_err_set(err, rc, "seccomp arch: %s", strerror(-rc));
        }
    }
    /* No-new-privileges is set (or not) by the process spec, not libseccomp. */
    (void)seccomp_attr_set(f->ctx, SCMP_FLTATR_CTL_NNP, 0);
    if (sc->flags & 2)
        (void)seccomp_attr_set(f->ctx, SCMP_FLTATR_CTL_LOG, 1);
    if (sc->flags & 4)
        (void)seccomp_attr_set(f->ctx, SCMP_FLTATR_CTL_SSB, 1);
    for (size_t i = 0; i < sc->rules_count; i++)
        if (add_rule(f->ctx, sc->default_action, &sc->rules[i], err) < 0) {
            rt__seccomp_free(f);
            return err->code;
        }
    *out = f;
    return 0;
}

int rt__seccomp_load(struct rt_seccomp_filter *f, struct ag_err *err)
{
    int rc = seccomp_load(f->ctx);
    return rc < 0 ? ag_err_set(err, rc, "seccomp_load: %s", strerror(-rc)) : 0;
}

void rt__seccomp_free(struct rt_seccomp_filter *f)
{
    if (!f)
        return;
    seccomp_release(f->ctx);
    free(f);
}
