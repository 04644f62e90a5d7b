/* agent/runtime internal: the fork protocol shared by create and exec
 * (rt_container.c, rt_exec.c). */
#ifndef RT_CONTAINER_H
#define RT_CONTAINER_H

#include "rt_internal.h"

struct rt_create_ctx {
    const char *id;
    const struct rt_stdio *stdio;
    int console_socket;
    struct rt_spec *spec;              /* owned */
    const struct rt_process *proc;     /* exec: the process to run */
    char dir[4096];                    /* state directory */
    char fifo_path[4200];
    int fifo_fd;                       /* create: exec.fifo opened O_RDWR by P */
    bool dir_made, cg_made;
    struct rt_cgroup cg;
    const char *ns_paths[RT_NS_COUNT]; /* join these */
    bool ns_new[RT_NS_COUNT];          /* create these */
    int sync, psync;                   /* child and parent ends */
};

int rt__ns_flag(enum rt_ns_type t);
__attribute__((noreturn)) void rt__child_fail(int sync_fd, struct ag_err *err);
int rt__child_stdio(const struct rt_stdio *io, struct ag_err *err) AG_WUR;
int rt__join_ns(const int fds[RT_NS_COUNT], struct ag_err *err) AG_WUR;
int rt__write_id_maps(pid_t pid, const struct rt_spec *s, struct ag_err *err) AG_WUR;
__attribute__((noreturn)) void rt__intermediate_main(struct rt_create_ctx *c,
                                                     void (*child)(struct rt_create_ctx *));
int rt__parent_sync(struct rt_create_ctx *c, pid_t mid, pid_t *init_pid, bool until_eof,
                    struct ag_err *err) AG_WUR;
int rt__spawn(struct rt_create_ctx *c, struct rt_cgroup *cg,
              void (*child)(struct rt_create_ctx *), bool until_eof, pid_t *pid_out,
              struct ag_err *err) AG_WUR;
void rt__state_dir_remove(const char *dir);

/* Loads a container's record, its saved spec and cgroup (rt_lifecycle.c). */
struct rt_loaded {
    char dir[4096];
    struct rt_state st;
    struct rt_spec *spec; /* owned; may be NULL if the saved config is gone */
    struct rt_cgroup cg;
    bool has_cg;
    const char *status;
};
int rt__load(const char *state_root, const char *id, struct rt_loaded *l,
             struct ag_err *err) AG_WUR;
void rt__loaded_fini(struct rt_loaded *l);

#endif
