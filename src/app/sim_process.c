#define _GNU_SOURCE
#include "sim_process.h"

#include "gw_error.h"
#include "gw_log.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

extern char **environ;

static int executable(const char *path) { return access(path, X_OK) == 0; }

int sim_process_find(char *out, size_t cap)
{
    const char *env = getenv("TINYBMS_SIM");
    if (env && *env) {
        snprintf(out, cap, "%s", env);
        return executable(out) ? GW_OK : GW_ERR_NOT_FOUND;
    }
    char self[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    if (n > 0) {
        self[n] = '\0';
        char *dir = dirname(self);
        static const char *const candidates[] = { "tinybms-sim", "tools/tinybms-sim/tinybms-sim",
                                                  "../tools/tinybms-sim/tinybms-sim" };
        for (size_t i = 0; i < sizeof candidates / sizeof candidates[0]; i++) {
            snprintf(out, cap, "%s/%s", dir, candidates[i]);
            if (executable(out))
                return GW_OK;
        }
    }
    const char *path = getenv("PATH");
    if (path) {
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", path);
        char *save = NULL;
        for (char *d = strtok_r(copy, ":", &save); d; d = strtok_r(NULL, ":", &save)) {
            snprintf(out, cap, "%s/tinybms-sim", d);
            if (executable(out))
                return GW_OK;
        }
    }
    return GW_ERR_NOT_FOUND;
}

int sim_process_start(struct sim_process *sp, const char *const *extra_args, unsigned timeout_ms)
{
    memset(sp, 0, sizeof *sp);
    sp->pid = -1;
    sp->stdin_fd = sp->stdout_fd = -1;
    char exe[PATH_MAX];
    if (sim_process_find(exe, sizeof exe)) {
        GW_LOGE(MOD, "tinybms-sim not found (build it with `make`, or set TINYBMS_SIM)");
        return GW_ERR_NOT_FOUND;
    }
    const char *argv[64];
    size_t argc = 0;
    argv[argc++] = exe;
    argv[argc++] = "--exit-on-eof"; /* a crashed parent must not leave a simulator behind */
    for (size_t i = 0; extra_args && extra_args[i] && argc < 63; i++)
        argv[argc++] = extra_args[i];
    argv[argc] = NULL;

    int in_pipe[2], out_pipe[2];
    if (pipe2(in_pipe, O_CLOEXEC) != 0)
        return GW_ERR_IO;
    if (pipe2(out_pipe, O_CLOEXEC) != 0) {
        close(in_pipe[0]);
        close(in_pipe[1]);
        return GW_ERR_IO;
    }
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_adddup2(&fa, in_pipe[0], STDIN_FILENO);
    posix_spawn_file_actions_adddup2(&fa, out_pipe[1], STDOUT_FILENO);
    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
    int rc = posix_spawn(&sp->pid, exe, &fa, &attr, (char *const *)argv, environ);
    posix_spawn_file_actions_destroy(&fa);
    posix_spawnattr_destroy(&attr);
    close(in_pipe[0]);
    close(out_pipe[1]);
    if (rc != 0) {
        GW_LOGE(MOD, "cannot start %s: %s", exe, strerror(rc));
        close(in_pipe[1]);
        close(out_pipe[0]);
        sp->pid = -1;
        return GW_ERR_IO;
    }
    sp->stdin_fd = in_pipe[1];
    sp->stdout_fd = out_pipe[0];

    /* The first line is the pty path. */
    size_t len = 0;
    struct timespec start;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        long elapsed = (now.tv_sec - start.tv_sec) * 1000 + (now.tv_nsec - start.tv_nsec) / 1000000;
        if (elapsed >= (long)timeout_ms) {
            GW_LOGE(MOD, "simulator did not print its pty path within %u ms", timeout_ms);
            sim_process_stop(sp);
            return GW_ERR_TIMEOUT;
        }
        struct pollfd pfd = { .fd = sp->stdout_fd, .events = POLLIN };
        if (poll(&pfd, 1, (int)(timeout_ms - (unsigned)elapsed)) <= 0)
            continue;
        char c;
        ssize_t n = read(sp->stdout_fd, &c, 1);
        if (n <= 0) {
            GW_LOGE(MOD, "simulator exited before printing its pty path");
            sim_process_stop(sp);
            return GW_ERR_IO;
        }
        if (c == '\n')
            break;
        if (len + 1 < sizeof sp->pty_path)
            sp->pty_path[len++] = c;
    }
    sp->pty_path[len] = '\0';
    GW_LOGI(MOD, "TinyBMS simulator (pid %d) on %s", (int)sp->pid, sp->pty_path);
    return GW_OK;
}

void sim_process_stop(struct sim_process *sp)
{
    if (sp->pid <= 0)
        return;
    if (sp->stdin_fd >= 0) {
        ssize_t ignored = write(sp->stdin_fd, "quit\n", 5);
        (void)ignored;
        close(sp->stdin_fd);
        sp->stdin_fd = -1;
    }
    int status;
    for (int i = 0; i < 40; i++) { /* up to 2 s for a clean exit */
        if (waitpid(sp->pid, &status, WNOHANG) == sp->pid)
            goto reaped;
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
    }
    kill(sp->pid, SIGTERM);
    for (int i = 0; i < 40; i++) {
        if (waitpid(sp->pid, &status, WNOHANG) == sp->pid)
            goto reaped;
        struct timespec ts = { 0, 50 * 1000000L };
        nanosleep(&ts, NULL);
    }
    kill(sp->pid, SIGKILL);
    waitpid(sp->pid, &status, 0);
reaped:
    if (sp->stdout_fd >= 0)
        close(sp->stdout_fd);
    sp->stdout_fd = -1;
    sp->pid = -1;
}
