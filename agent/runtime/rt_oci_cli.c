/* agent/runtime: `picocri oci`, a runc-compatible command line over the
 * executor.
 *
 *   picocri oci [--root DIR] create [--bundle DIR] [--pid-file F] [--console-socket P] ID
 *   picocri oci [--root DIR] start|state|ps ID
 *   picocri oci [--root DIR] kill [--all] ID [SIGNAL]
 *   picocri oci [--root DIR] delete [--force] ID
 *   picocri oci [--root DIR] run [--bundle DIR] [--pid-file F] [--console-socket P] ID
 *   picocri oci [--root DIR] exec [--process F] [--tty] [--console-socket P] [--cwd D]
 *                                 [--env K=V] [--user UID[:GID]] [--detach] ID [ARGS...]
 *
 * `run` is create + start + wait + delete and exits with the container's
 * exit code (128+signal when killed), as runc does.  Errors go to stderr as
 * one line "picocri oci: <message>" with exit status 1.
 */
#include <fcntl.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>

#include "rt_internal.h"

#define DEFAULT_ROOT "/run/picocri/oci"

struct cli {
    const char *root, *bundle, *pid_file, *console, *process;
    const char *cwd, *user;
    char **env;
    size_t env_count;
    bool force, all, detach, tty;
};

static int fail(struct ag_err *err)
{
    fprintf(stderr, "picocri oci: %s\n", err->msg);
    return 1;
}

static int usage(void)
{
    fprintf(stderr, "usage: picocri oci [--root DIR] create|start|state|kill|delete|run|exec|ps "
                    "[options] ID\n");
    return 2;
}

static int write_pid_file(const char *path, pid_t pid, struct ag_err *err)
{
    char buf[24];
    int n = snprintf(buf, sizeof(buf), "%d", (int)pid);
    int rc = ag_file_write_atomic(path, buf, (size_t)n, 0644);
    return rc < 0 ? ag_err_set(err, rc, "pid file %s: %s", path, strerror(-rc)) : 0;
}

static int connect_console(const char *path, struct ag_err *err)
{
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    if (strlen(path) >= sizeof(sa.sun_path))
        return ag_err_set(err, -ENAMETOOLONG, "console socket path too long");
    strcpy(sa.sun_path, path);
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        int e = errno;
        if (fd >= 0)
            close(fd);
        return ag_err_set(err, -e, "console socket %s: %s", path, strerror(e));
    }
    return fd;
}

static int parse_signal(const char *s)
{
    static const struct {
        const char *name;
        int sig;
    } t[] = {{"HUP", SIGHUP},   {"INT", SIGINT},   {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
             {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"STOP", SIGSTOP},
             {"CONT", SIGCONT}, {"ALRM", SIGALRM}, {"WINCH", SIGWINCH}, {"PIPE", SIGPIPE}};
    char *end;
    long v = strtol(s, &end, 10);
    if (*s && !*end)
        return v > 0 && v < 65 ? (int)v : -EINVAL;
    if (!strncmp(s, "SIG", 3))
        s += 3;
    for (size_t i = 0; i < AG_ARRAY_LEN(t); i++)
        if (!strcmp(t[i].name, s))
            return t[i].sig;
    return -EINVAL;
}

static int wait_exit(pid_t pid)
{
    int status;
    while (waitpid(pid, &status, 0) < 0)
        if (errno != EINTR)
            return 255;
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    return 128 + WTERMSIG(status);
}

static int do_create(struct cli *o, const char *id, bool run)
{
    struct ag_err err;
    struct rt_stdio io = {-1, -1, -1, -1};
    pid_t pid = 0;
    ag_err_init(&err);
    if (o->console && (io.console_socket = connect_console(o->console, &err)) < 0)
        return fail(&err);
    int rc = rt_container_create(o->root, id, o->bundle ? o->bundle : ".", &io, &pid, &err);
    if (io.console_socket >= 0)
        close(io.console_socket);
    if (rc < 0)
        return fail(&err);
    if (o->pid_file && write_pid_file(o->pid_file, pid, &err) < 0) {
        (void)!rt_container_delete(o->root, id, true, &err);
        return fail(&err);
    }
    if (!run)
        return 0;
    /* Signals for the container, not for us, while it runs. */
    signal(SIGINT, SIG_IGN);
    signal(SIGTERM, SIG_IGN);
    if (rt_container_start(o->root, id, &err) < 0) {
        int code = fail(&err);
        (void)!rt_container_delete(o->root, id, true, &err);
        return code;
    }
    if (o->detach)
        return 0;
    int code = wait_exit(pid);
    if (rt_container_delete(o->root, id, true, &err) < 0)
        (void)fail(&err);
    return code;
}

static int build_process(struct cli *o, int argc, char **argv, struct rt_process **out,
                         struct ag_err *err)
{
    if (o->process) {
        _cleanup_free_ char *buf = NULL;
        size_t len = 0;
        int rc = ag_file_read(o->process, RT_CONFIG_MAX, &buf, &len);
        if (rc < 0)
            return ag_err_set(err, rc, "process file %s: %s", o->process, strerror(-rc));
        return rt_process_parse(buf, len, out, err);
    }
    if (argc < 1)
        return ag_err_set(err, -EINVAL, "exec: a command or --process is required");
    struct rt_process *p = calloc(1, sizeof(*p));
    if (!p)
        return ag_err_set(err, -ENOMEM, "out of memory");
    p->args = calloc((size_t)argc + 1, sizeof(char *));
    p->env = calloc(o->env_count + 2, sizeof(char *));
    p->cwd = strdup(o->cwd ? o->cwd : "/");
    if (!p->args || !p->env || !p->cwd) {
        rt_process_free(p);
        return ag_err_set(err, -ENOMEM, "out of memory");
    }
    for (int i = 0; i < argc; i++)
        p->args[p->args_count++] = strdup(argv[i]);
    p->env[p->env_count++] = strdup("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for (size_t i = 0; i < o->env_count; i++)
        p->env[p->env_count++] = strdup(o->env[i]);
    p->terminal = o->tty;
    if (o->user) {
        unsigned uid = 0, gid = 0;
        int n = sscanf(o->user, "%u:%u", &uid, &gid);
        if (n < 1) {
            rt_process_free(p);
            return ag_err_set(err, -EINVAL, "--user: want UID[:GID]");
        }
        p->uid = uid;
        p->gid = n == 2 ? gid : 0;
    }
    /* Root's default set when no process file says otherwise. */
    p->has_caps = true;
    p->caps.bounding = p->caps.effective = p->caps.permitted = ~0ull;
    *out = p;
    return 0;
}

static int do_exec(struct cli *o, const char *id, int argc, char **argv)
{
    struct ag_err err;
    struct rt_process *p = NULL;
    struct rt_stdio io = {-1, -1, -1, -1};
    pid_t pid = 0;
    ag_err_init(&err);
    if (build_process(o, argc, argv, &p, &err) < 0)
        return fail(&err);
    if (o->console && (io.console_socket = connect_console(o->console, &err)) < 0) {
        rt_process_free(p);
        return fail(&err);
    }
    int rc = rt_container_exec(o->root, id, p, &io, &pid, &err);
    rt_process_free(p);
    if (io.console_socket >= 0)
        close(io.console_socket);
    if (rc < 0)
        return fail(&err);
    if (o->pid_file && write_pid_file(o->pid_file, pid, &err) < 0)
        return fail(&err);
    return o->detach ? 0 : wait_exit(pid);
}

static int do_simple(const char *cmd, struct cli *o, const char *id, int argc, char **argv)
{
    struct ag_err err;
    ag_err_init(&err);
    if (!strcmp(cmd, "start"))
        return rt_container_start(o->root, id, &err) < 0 ? fail(&err) : 0;
    if (!strcmp(cmd, "delete"))
        return rt_container_delete(o->root, id, o->force, &err) < 0 ? fail(&err) : 0;
    if (!strcmp(cmd, "state")) {
        char *js = NULL;
        if (rt_container_state(o->root, id, &js, &err) < 0)
            return fail(&err);
        printf("%s\n", js);
        free(js);
        return 0;
    }
    if (!strcmp(cmd, "kill")) {
        int sig = argc > 0 ? parse_signal(argv[0]) : SIGTERM;
        if (sig < 0) {
            ag_err_set(&err, -EINVAL, "kill: unknown signal %s", argv[0]);
            return fail(&err);
        }
        return rt_container_kill(o->root, id, sig, o->all, &err) < 0 ? fail(&err) : 0;
    }
    if (!strcmp(cmd, "ps")) {
        pid_t *pids = NULL;
        size_t n = 0;
        if (rt_container_pids(o->root, id, &pids, &n, &err) < 0)
            return fail(&err);
        printf("[");
        for (size_t i = 0; i < n; i++)
            printf("%s%d", i ? "," : "", (int)pids[i]);
        printf("]\n");
        free(pids);
        return 0;
    }
    return usage();
}

int rt_oci_main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"root", required_argument, NULL, 'r'},  {"bundle", required_argument, NULL, 'b'},
        {"pid-file", required_argument, NULL, 'p'}, {"console-socket", required_argument, NULL, 'c'},
        {"force", no_argument, NULL, 'f'},       {"all", no_argument, NULL, 'a'},
        {"detach", no_argument, NULL, 'd'},      {"tty", no_argument, NULL, 't'},
        {"process", required_argument, NULL, 'P'}, {"cwd", required_argument, NULL, 'w'},
        {"env", required_argument, NULL, 'e'},   {"user", required_argument, NULL, 'u'},
        {"log", required_argument, NULL, 'L'},   {"log-format", required_argument, NULL, 'F'},
        {"format", required_argument, NULL, 'F'}, {"systemd-cgroup", no_argument, NULL, 'S'},
        {"debug", no_argument, NULL, 'D'},       {NULL, 0, NULL, 0},
    };
    struct cli o = {.root = DEFAULT_ROOT};
    _cleanup_free_ char **env = calloc((size_t)argc + 1, sizeof(char *));
    const char *cmd = NULL;
    int c;
    o.env = env;
    /* Options may come before and after the subcommand; '+' stops at the
     * first operand after the subcommand (ID), so exec's ARGS stay intact. */
    optind = 0; /* 0 makes glibc reinitialise getopt (we may be called after others) */
    for (int pass = 0; pass < 2; pass++) {
        while ((c = getopt_long(argc, argv, "+r:b:p:c:fadtP:w:e:u:", opts, NULL)) != -1) {
            switch (c) {
            case 'r': o.root = optarg; break;
            case 'b': o.bundle = optarg; break;
            case 'p': o.pid_file = optarg; break;
            case 'c': o.console = optarg; break;
            case 'f': o.force = true; break;
            case 'a': o.all = true; break;
            case 'd': o.detach = true; break;
            case 't': o.tty = true; break;
            case 'P': o.process = optarg; break;
            case 'w': o.cwd = optarg; break;
            case 'e': if (env) env[o.env_count++] = optarg; break;
            case 'u': o.user = optarg; break;
            case 'L': case 'F': case 'S': case 'D': break;
            default: return usage();
            }
        }
        if (pass == 0) {
            if (optind >= argc)
                return usage();
            cmd = argv[optind++];
            optind--; /* getopt treats argv[optind - 1] as the program name */
            argv += optind;
            argc -= optind;
            optind = 0;
        }
    }
    if (optind >= argc)
        return usage();
    const char *id = argv[optind];
    int rest = argc - optind - 1;
    char **rargv = argv + optind + 1;
    if (!strcmp(cmd, "create") || !strcmp(cmd, "run"))
        return do_create(&o, id, !strcmp(cmd, "run"));
    if (!strcmp(cmd, "exec"))
        return do_exec(&o, id, rest, rargv);
    return do_simple(cmd, &o, id, rest, rargv);
}
