/* libFuzzer target: the OCI config.json loader (agent/runtime rt_spec_parse)
 * on arbitrary bytes, plus the process and resources parsers.  Invariant
 * checked: a successful parse yields a validated spec (root path absolute,
 * args non-empty and NULL-terminated, mount destinations absolute). */
#include <stdint.h>
#include <string.h>

#include "ag_core.h"
#include "runtime/runtime.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct rt_spec *s = NULL;
    struct rt_process *p = NULL;
    struct rt_resources r;
    struct ag_err err;
    ag_err_init(&err);
    if (rt_spec_parse((const char *)data, size, "/bundle", false, &s, &err) == 0) {
        if (s->root_path[0] != '/')
            __builtin_trap();
        if (s->process && (!s->process->args_count || s->process->args[s->process->args_count]))
            __builtin_trap();
        for (size_t i = 0; i < s->mounts_count; i++)
            if (s->mounts[i].destination[0] != '/')
                __builtin_trap();
        rt_spec_free(s);
    } else if (!err.msg[0] || err.code >= 0) {
        __builtin_trap();
    }
    if (rt_process_parse((const char *)data, size, &p, &err) == 0)
        rt_process_free(p);
    if (rt_resources_parse((const char *)data, size, &r, &err) == 0)
        rt_resources_fini(&r);
    return 0;
}
