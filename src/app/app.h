/* The daemon's wiring: which services run, in which order they start and stop. */
#ifndef APP_H
#define APP_H

#include <stdbool.h>
#include <stdint.h>

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
    bool dbus;                   /* --dbus: the Venus OS D-Bus battery service (dbus.enabled) */
    int poll_ms;                 /* 0: from the configuration */
    int http_port;               /* --http: -1 from the configuration, 0 web server off, else the port */
    const char *config_file;     /* NULL: DATA_DIR/config.json */
    bool allow_defaults;         /* --allow-defaults: see config_manager_options */
    const char *data_dir;
    bool summary;                /* one line per sample on stdout */
    const char *metrics_dump;    /* --metrics-dump: SIGUSR1 also writes the Prometheus text here */
    int verbose;
    struct watchdog *watchdog;   /* systemd readiness and keep-alives (may be NULL); borrowed */
};

void app_default_options(struct app_options *opts);

/* app_run's answer when a restart was asked (web API, or SIGUSR1 after an update was
 * installed): everything is stopped and flushed; main re-executes the program (or, under the
 * update launcher, exits with it so the launcher starts the current release). Equal to
 * OTA_EXIT_RESTART. */
#define APP_EXIT_RESTART 75

/* Runs until SIGINT/SIGTERM (SIGHUP reloads the configuration, SIGUSR2 logs the task stats).
 * Returns the process exit code (0 clean stop, 1 start failure) or
 * APP_EXIT_RESTART. */
int app_run(const struct app_options *opts);

/* --set-password: reads a new web password from standard input (asked twice without echo on a
 * terminal; the first line otherwise), stores its salted hash in the configuration of the data
 * directory, prints no secret. Returns the exit code (0 set, 1 refused or not saved). */
int app_set_password(const struct app_options *opts);

/* --install-update / --rollback / --update-status: fills cli from the configuration (keyring,
 * trial settings) and runs ota_update_cli. Returns the process exit code. */
struct ota_cli_options;
int app_update_cli(const struct app_options *opts, struct ota_cli_options *cli);

/* --probe: is a TinyBMS answering on the one --uart device? For Venus OS's serial-starter, which
 * tries one driver after the other on a port. Returns 0 when a valid live sample arrived within
 * timeout_ms (one line on stdout says what answered), 1 when none did (absent device at once),
 * 2 for a bad command line. */
int app_probe(const struct app_options *opts, uint32_t timeout_ms);

#endif
