/* The launcher: the installed program's first step. Without an installed update it returns at
 * once and the same process runs the daemon. With one, it runs releases/current/bin/tinybms-gw
 * as a child, on trial when the state says so, forwards the stop signals, and follows the
 * decisions of ota__trial_decide: healthy -> good; exits, or not healthy in time -> the
 * previous release comes back (or the installed program, in this very process). */
#define _GNU_SOURCE
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"
#include "ota_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#define KILL_GRACE_MS 15000

struct launcher {
    struct ota_paths paths;
    char **argv;
    sigset_t old_mask;
    int sfd;
    char notice[256];
};

struct child_outcome {
    enum ota_trial_event event;
    int exit_code;
    bool stop_requested;
    char waiting_for[160];
};

static void child_exec(struct launcher *l, const char *run, int notify_fd)
{
    sigprocmask(SIG_SETMASK, &l->old_mask, NULL);
    /* The launcher's death (even SIGKILL) stops the daemon too: never two of them. */
    prctl(PR_SET_PDEATHSIG, SIGTERM);
    setenv(OTA_ENV_SUPERVISED, "1", 1);
    setenv(OTA_ENV_RELEASE, run, 1);
    if (notify_fd >= 0) {
        char num[16];
        ota__fmt(num, sizeof num, "%d", notify_fd);
        setenv(OTA_ENV_NOTIFY_FD, num, 1);
        int fl = fcntl(notify_fd, F_GETFD);
        fcntl(notify_fd, F_SETFD, fl & ~FD_CLOEXEC);
    } else {
        unsetenv(OTA_ENV_NOTIFY_FD);
    }
    if (l->notice[0])
        setenv(OTA_ENV_NOTICE, l->notice, 1);
    else
        unsetenv(OTA_ENV_NOTICE);
    char exe[OTA_DIR_MAX + 160];
    ota__fmt(exe, sizeof exe, "%s/%s/%s", l->paths.releases, run, OTA_DAEMON_PATH);
    execv(exe, l->argv);
    fprintf(stderr, "tinybms-gw: cannot start %s: %s\n", exe, strerror(errno));
    _exit(127);
}

static int exit_code_of(int status)
{
    if (WIFEXITED(status))
        return WEXITSTATUS(status);
    if (WIFSIGNALED(status))
        return 128 + WTERMSIG(status);
    return 1;
}

/* Waits (signals and the child's notifications) until the child ends, reports healthy, or the
 * deadline passes. *healthy_reported keeps "good" from being reported twice. */
static void supervise(struct launcher *l, pid_t pid, int *rfd, uint64_t deadline_ms, bool *stop_requested,
                      char *waiting_for, size_t wcap, struct child_outcome *out)
{
    char line[256];
    size_t line_len = 0;
    for (;;) {
        struct pollfd fds[2] = { { .fd = l->sfd, .events = POLLIN }, { .fd = *rfd, .events = POLLIN } };
        int timeout = -1;
        if (deadline_ms != GW_CLOCK_NEVER) {
            uint64_t now = gw_now_ms();
            if (now >= deadline_ms) {
                out->event = OTA_EV_DEADLINE;
                return;
            }
            uint64_t left = deadline_ms - now;
            timeout = left > 60000 ? 60000 : (int)left;
        }
        int n = poll(fds, *rfd >= 0 ? 2 : 1, timeout);
        if (n < 0 && errno != EINTR)
            GW_LOGW(MOD, "launcher: poll: %s", strerror(errno));
        if (n <= 0)
            continue;
        if (fds[0].revents & POLLIN) {
            struct signalfd_siginfo si;
            if (read(l->sfd, &si, sizeof si) == (ssize_t)sizeof si) {
                int sig = (int)si.ssi_signo;
                if (sig == SIGCHLD) {
                    int status;
                    if (waitpid(pid, &status, WNOHANG) == pid) {
                        out->event = OTA_EV_CHILD_EXIT;
                        out->exit_code = exit_code_of(status);
                        out->stop_requested = *stop_requested;
                        return;
                    }
                } else {
                    if (sig == SIGTERM || sig == SIGINT)
                        *stop_requested = true;
                    kill(pid, sig);
                }
            }
        }
        if (*rfd >= 0 && (fds[1].revents & (POLLIN | POLLHUP | POLLERR))) {
            char buf[128];
            ssize_t r = read(*rfd, buf, sizeof buf);
            if (r <= 0) {
                close(*rfd);
                *rfd = -1;
                continue;
            }
            for (ssize_t i = 0; i < r; i++) {
                if (buf[i] != '\n') {
                    if (line_len < sizeof line - 1)
                        line[line_len++] = buf[i];
                    continue;
                }
                line[line_len] = '\0';
                line_len = 0;
                if (strcmp(line, "good") == 0) {
                    out->event = OTA_EV_HEALTHY;
                    return;
                }
                if (strncmp(line, "wait ", 5) == 0)
                    gw_text_copy(waiting_for, wcap, line + 5);
            }
        }
    }
}

/* SIGTERM, then SIGKILL after the grace time; reaps the child. */
static void stop_child(struct launcher *l, pid_t pid)
{
    kill(pid, SIGTERM);
    uint64_t deadline = gw_now_ms() + KILL_GRACE_MS;
    for (;;) {
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid)
            return;
        uint64_t now = gw_now_ms();
        if (now >= deadline) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            return;
        }
        struct pollfd p = { .fd = l->sfd, .events = POLLIN };
        if (poll(&p, 1, (int)(deadline - now)) > 0) {
            struct signalfd_siginfo si;
            if (read(l->sfd, &si, sizeof si) < 0)
                continue;
        }
    }
}

static void restore(struct launcher *l)
{
    if (l->sfd >= 0)
        close(l->sfd);
    l->sfd = -1;
    sigprocmask(SIG_SETMASK, &l->old_mask, NULL);
}

static void make_notice(struct launcher *l, const struct ota_state *st)
{
    struct gw_text t;
    gw_text_init(&t, l->notice, sizeof l->notice);
    gw_text_put_str(&t, "update to ");
    gw_text_put_str(&t, st->version);
    gw_text_put_str(&t, st->kind == OTA_STATE_FAILED ? " failed, back to " : " rolled back, back to ");
    gw_text_put_str(&t, st->from_version[0] ? st->from_version : "the installed program");
    gw_text_put_str(&t, ": ");
    gw_text_put_str(&t, st->reason);
}

int ota_launcher_main(const char *data_dir, char **argv)
{
    const char *sup = getenv(OTA_ENV_SUPERVISED);
    if (sup && strcmp(sup, "1") == 0)
        return -1;
    struct launcher l = { .argv = argv, .sfd = -1 };
    if (ota__paths(data_dir, &l.paths) != GW_OK)
        return -1;
    /* No update ever installed: nothing to decide, nothing created. */
    char cur[128];
    struct stat sb;
    ota__link_get(&l.paths, "current", cur, sizeof cur);
    if (!cur[0] && stat(l.paths.state, &sb) != 0)
        return -1;

    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGCHLD);
    sigaddset(&mask, SIGTERM);
    sigaddset(&mask, SIGINT);
    sigaddset(&mask, SIGHUP);
    sigaddset(&mask, SIGUSR1);
    sigprocmask(SIG_BLOCK, &mask, &l.old_mask);
    l.sfd = signalfd(-1, &mask, SFD_CLOEXEC);
    if (l.sfd < 0) {
        GW_LOGE(MOD, "launcher: signalfd: %s: running the installed program", strerror(errno));
        restore(&l);
        return -1;
    }

    for (;;) { /* one pass per BOOT */
        int lock = ota__lock(&l.paths);
        if (lock < 0) {
            GW_LOGE(MOD, "launcher: cannot lock %s (%s): running the installed program", l.paths.lock,
                    gw_strerror(lock));
            restore(&l);
            return -1;
        }
        struct ota_state st;
        ota__state_read(&l.paths, &st);
        char run[128];
        ota__reconcile(&l.paths, &st, run, sizeof run);
        ota__cleanup(&l.paths, &st);
        struct ota_trial_input in = { .event = OTA_EV_BOOT,
                                      .run_runnable = !run[0] || ota__release_runnable(&l.paths, run) };
        struct ota_trial_decision d;
        ota__trial_decide(&st, &in, &d);
        bool reboot = false;
        int exit_code = 0;
        bool stop_requested = false;
        while (!reboot) {
            if (d.write_state)
                ota__state_write(&l.paths, &st);
            if (d.action == OTA_ACT_ROLLBACK) {
                if (lock < 0)
                    lock = ota__lock(&l.paths);
                ota__rollback(&l.paths, &st, OTA_STATE_FAILED, d.reason);
                make_notice(&l, &st);
                ota__reconcile(&l.paths, &st, run, sizeof run);
                if (run[0] && !ota__release_runnable(&l.paths, run))
                    run[0] = '\0';
                d.action = OTA_ACT_RUN;
                d.write_state = false;
            }
            if (d.action == OTA_ACT_EXIT) {
                ota__unlock(lock);
                restore(&l);
                return exit_code;
            }
            if (d.action == OTA_ACT_REBOOT) {
                reboot = true;
                break;
            }
            if (d.action != OTA_ACT_RUN && d.action != OTA_ACT_RUN_TRIAL)
                break; /* CONTINUE outside a run: cannot happen */
            if (!run[0]) {
                /* The installed program: this process becomes the daemon. */
                ota__unlock(lock);
                restore(&l);
                if (l.notice[0])
                    setenv(OTA_ENV_NOTICE, l.notice, 1);
                GW_LOGI(MOD, "launcher: running the installed program");
                return -1;
            }
            bool trial = d.action == OTA_ACT_RUN_TRIAL;
            char version[OTA_VERSION_MAX];
            ota__release_version(&l.paths, run, version, sizeof version);
            int pfd[2] = { -1, -1 };
            if (trial && pipe2(pfd, O_CLOEXEC) != 0) {
                GW_LOGE(MOD, "launcher: pipe: %s", strerror(errno));
                pfd[0] = pfd[1] = -1;
            }
            if (trial)
                GW_LOGI(MOD, "launcher: starting %s (%s) on trial, start %u of %u, healthy within %u s", run,
                        version, st.starts, st.max_starts, st.timeout_s);
            else
                GW_LOGI(MOD, "launcher: starting %s (%s)", run, version);
            ota__unlock(lock);
            lock = -1;
            fflush(NULL);
            pid_t pid = fork();
            if (pid == 0)
                child_exec(&l, run, pfd[1]);
            if (pfd[1] >= 0)
                close(pfd[1]);
            if (pid < 0) {
                GW_LOGE(MOD, "launcher: fork: %s", strerror(errno));
                if (pfd[0] >= 0)
                    close(pfd[0]);
                restore(&l);
                return 1;
            }
            l.notice[0] = '\0'; /* told once */
            uint64_t deadline = trial ? gw_now_ms() + (uint64_t)st.timeout_s * 1000u : GW_CLOCK_NEVER;
            char waiting_for[160] = "";
            struct child_outcome oc;
            for (;;) {
                memset(&oc, 0, sizeof oc);
                supervise(&l, pid, &pfd[0], deadline, &stop_requested, waiting_for, sizeof waiting_for, &oc);
                if (oc.event == OTA_EV_DEADLINE) {
                    GW_LOGW(MOD, "launcher: %s not healthy within %u s (%s): stopping it", run, st.timeout_s,
                            waiting_for[0] ? waiting_for : "no report");
                    stop_child(&l, pid);
                    gw_text_copy(oc.waiting_for, sizeof oc.waiting_for, waiting_for);
                }
                lock = ota__lock(&l.paths);
                ota__state_read(&l.paths, &st);
                struct ota_trial_input ci = { .event = oc.event, .exit_code = oc.exit_code,
                                              .stop_requested = oc.stop_requested,
                                              .waiting_for = oc.waiting_for };
                ota__trial_decide(&st, &ci, &d);
                if (oc.event == OTA_EV_HEALTHY) {
                    if (d.write_state) {
                        ota__state_write(&l.paths, &st);
                        GW_LOGI(MOD, "launcher: %s (%s) is healthy: kept", run, version);
                    }
                    ota__unlock(lock);
                    lock = -1;
                    deadline = GW_CLOCK_NEVER;
                    continue;
                }
                break;
            }
            if (pfd[0] >= 0)
                close(pfd[0]);
            exit_code = oc.exit_code;
            if (oc.event == OTA_EV_CHILD_EXIT && oc.exit_code != OTA_EXIT_RESTART && !oc.stop_requested &&
                d.action == OTA_ACT_RUN_TRIAL)
                GW_LOGW(MOD, "launcher: %s ended with code %d during its trial: starting it again", run, oc.exit_code);
            if (d.action == OTA_ACT_RUN_TRIAL)
                ota__reconcile(&l.paths, &st, run, sizeof run);
        }
        ota__unlock(lock);
        (void)reboot;
    }
}
