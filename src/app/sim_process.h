/* Runs tinybms-sim as a child process for --simulate and `make run`: the simulator prints the
 * pseudo-terminal path on its first line; the gateway then opens it like a real serial port. */
#ifndef SIM_PROCESS_H
#define SIM_PROCESS_H

#include <stddef.h>
#include <sys/types.h>

struct sim_process {
    pid_t pid;
    int stdin_fd;          /* control channel (commands, see docs/simulator.md) */
    int stdout_fd;
    char pty_path[256];
};

/* Finds the simulator: $TINYBMS_SIM, next to this executable, the build tree, then PATH.
 * Writes the path into out. @retval GW_OK, GW_ERR_NOT_FOUND */
int sim_process_find(char *out, size_t cap);

/* Starts the simulator with extra arguments (argv-style, NULL-terminated, may be NULL) and waits
 * up to timeout_ms for the pty path. @retval GW_OK, GW_ERR_NOT_FOUND, GW_ERR_IO, GW_ERR_TIMEOUT */
int sim_process_start(struct sim_process *sp, const char *const *extra_args, unsigned timeout_ms);

/* Asks the simulator to quit, then terminates it if needed, and reaps it. */
void sim_process_stop(struct sim_process *sp);

#endif
