/* The daemon's wiring: which services run, in which order they start and stop. */
#ifndef APP_H
#define APP_H

#include <stdbool.h>

struct watchdog;

#define APP_MAX_SIM_ARGS 32
#define APP_MAX_PACKS 16             /* = BATTERY_MAX_PACKS */

struct app_options {
    const char *uart_devices[APP_MAX_PACKS]; /* --uart, repeatable: one TinyBMS (pack) each */
    int uart_count;              /* 0: from the configuration */
    bool simulate;
    int simulate_packs;          /* with simulate: how many simulated packs (1..16) */
    const char *sim_args[APP_MAX_SIM_ARGS + 1];
    int sim_argc;
    const char *can_spec;        /* NULL: from the configuration */
    const char *mqtt_uri;        /* NULL: from the configuration */
    int poll_ms;                 /* 0: from the configuration */
    const char *config_file;     /* NULL: DATA_DIR/config.json */
    bool allow_defaults;         /* --allow-defaults: see config_manager_options */
    const char *data_dir;
    bool summary;                /* one line per sample on stdout */
    int verbose;
    struct watchdog *watchdog;   /* systemd readiness and keep-alives (may be NULL); borrowed */
};

void app_default_options(struct app_options *opts);

/* Runs until SIGINT/SIGTERM. Returns the process exit code (0 clean stop, 1 start failure). */
int app_run(const struct app_options *opts);

#endif
