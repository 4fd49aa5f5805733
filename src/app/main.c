/* tinybms-gw: the daemon. Parses the command line, loads the configuration, starts the
 * services, waits for SIGINT/SIGTERM and stops everything cleanly (every thread joined, history
 * and energy counters flushed). */
#define _GNU_SOURCE
#include "app.h"
#include "ota_update.h"

#include "gw_error.h"
#include "gw_log.h"
#include "watchdog.h"

#include <errno.h>
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void usage(FILE *f)
{
    fprintf(f,
            "Usage: tinybms-gw [OPTIONS]\n"
            "Bridges a TinyBMS battery (UART) to Victron (CAN-bus BMS), MQTT and a web UI.\n"
            "\n"
            "  -u, --uart DEV        serial device of a TinyBMS (e.g. /dev/ttyUSB0); repeat it for packs in\n"
            "                        parallel, one TinyBMS each (at most 16)\n"
            "  -s, --simulate[=N]    run the built-in TinyBMS simulator on a pseudo-terminal; N simulated\n"
            "                        packs in parallel (default 1, at most 16)\n"
            "      --sim-arg ARG     pass ARG to the simulator (repeatable), e.g. --sim-arg=--scenario=charge\n"
            "      --can SPEC        CAN output: IFACE (SocketCAN, e.g. can0), slcan:/dev/ttyACM0[@BAUD],\n"
            "                        or log:FILE (candump -l format, dry run)\n"
            "      --mqtt URI        MQTT broker, mqtt://host[:port] or mqtts://host[:port]\n"
            "      --dbus            Venus OS D-Bus battery service (com.victronenergy.battery.*) on the\n"
            "                        session bus when DBUS_SESSION_BUS_ADDRESS is set, else the system bus\n"
            "      --probe           only check that a TinyBMS answers on --uart DEV: exit 0 when one does\n"
            "                        (within 3 s), 1 when none does (for Venus OS's serial-starter)\n"
            "  -c, --config FILE     configuration file (default DATA_DIR/config.json)\n"
            "      --allow-defaults  start on the defaults when the configuration and its recovery\n"
            "                        copies are all unusable (refused otherwise)\n"
            "  -d, --data-dir DIR    data directory (default /var/lib/tinybms-gw)\n"
            "      --poll-ms N       BMS poll interval, 100..10000 ms (overrides the configuration)\n"
            "      --http PORT       web UI and API port (default web.http_port, 8080; 0 = no web server)\n"
            "      --set-password    read a new web password from standard input, store its salted hash in\n"
            "                        the data directory's configuration, and exit\n"
            "  -q, --quiet           no live summary line per sample on stdout\n"
            "      --metrics-dump FILE  on SIGUSR2, also write the metrics (Prometheus text) to FILE\n"
            "  -v, --verbose         more logs: -v the BMS poll cycle and state changes, -vv also every\n"
            "                        frame to and from the BMS (hex and its meaning)\n"
            "\n"
            "Updates (docs/updates.md):\n"
            "      --install-update BUNDLE  check a signed update bundle and switch to it (BUNDLE.sig is its\n"
            "                        signature unless --signature FILE); a gateway running on the data\n"
            "                        directory restarts into it; --force accepts the running version\n"
            "      --rollback        go back to the previous release\n"
            "      --update-status   print the update state (JSON)\n"
            "  -h, --help            this help\n"
            "  -V, --version         version\n"
            "\n"
            "Command-line values override the configuration file for this run only; they are never\n"
            "written to it. Documentation: docs/ in the source tree.\n");
}

int main(int argc, char **argv)
{
    struct app_options opts;
    app_default_options(&opts);
    int verbosity = 0;
    bool probe = false;

    enum { OPT_SIM_ARG = 1000, OPT_CAN, OPT_MQTT, OPT_POLL, OPT_ALLOW_DEFAULTS, OPT_HTTP, OPT_SET_PASSWORD,
           OPT_INSTALL, OPT_SIGNATURE, OPT_FORCE, OPT_ROLLBACK, OPT_UPDATE_STATUS,
           OPT_METRICS_DUMP, OPT_DBUS, OPT_PROBE };
    struct ota_cli_options update = { 0 };
    static const struct option long_opts[] = {
        { "uart", required_argument, NULL, 'u' },
        { "simulate", optional_argument, NULL, 's' },
        { "sim-arg", required_argument, NULL, OPT_SIM_ARG },
        { "can", required_argument, NULL, OPT_CAN },
        { "mqtt", required_argument, NULL, OPT_MQTT },
        { "dbus", no_argument, NULL, OPT_DBUS },
        { "probe", no_argument, NULL, OPT_PROBE },
        { "config", required_argument, NULL, 'c' },
        { "allow-defaults", no_argument, NULL, OPT_ALLOW_DEFAULTS },
        { "data-dir", required_argument, NULL, 'd' },
        { "poll-ms", required_argument, NULL, OPT_POLL },
        { "http", required_argument, NULL, OPT_HTTP },
        { "set-password", no_argument, NULL, OPT_SET_PASSWORD },
        { "install-update", required_argument, NULL, OPT_INSTALL },
        { "signature", required_argument, NULL, OPT_SIGNATURE },
        { "force", no_argument, NULL, OPT_FORCE },
        { "rollback", no_argument, NULL, OPT_ROLLBACK },
        { "update-status", no_argument, NULL, OPT_UPDATE_STATUS },
        { "quiet", no_argument, NULL, 'q' },
        { "metrics-dump", required_argument, NULL, OPT_METRICS_DUMP },
        { "verbose", no_argument, NULL, 'v' },
        { "help", no_argument, NULL, 'h' },
        { "version", no_argument, NULL, 'V' },
        { NULL, 0, NULL, 0 },
    };
    bool set_password = false;
    int c;
    while ((c = getopt_long(argc, argv, "u:sc:d:qvhV", long_opts, NULL)) != -1) {
        switch (c) {
        case 'u':
            if (opts.uart_count >= APP_MAX_PACKS) {
                fprintf(stderr, "tinybms-gw: too many --uart (at most %d packs)\n", APP_MAX_PACKS);
                return 2;
            }
            opts.uart_devices[opts.uart_count++] = optarg;
            break;
        case 's': {
            opts.simulate = true;
            opts.simulate_packs = 1;
            /* "--simulate=N", or "--simulate N" when the next word is a number. */
            const char *n = optarg;
            if (!n && optind < argc && argv[optind][0] >= '0' && argv[optind][0] <= '9')
                n = argv[optind++];
            if (n) {
                char *end;
                long packs = strtol(n, &end, 10);
                if (*end || packs < 1 || packs > APP_MAX_PACKS) {
                    fprintf(stderr, "tinybms-gw: --simulate takes 1..%d packs, got '%s'\n", APP_MAX_PACKS, n);
                    return 2;
                }
                opts.simulate_packs = (int)packs;
            }
            break;
        }
        case OPT_SIM_ARG:
            if (opts.sim_argc >= APP_MAX_SIM_ARGS) {
                fprintf(stderr, "tinybms-gw: too many --sim-arg (at most %d)\n", APP_MAX_SIM_ARGS);
                return 2;
            }
            opts.sim_args[opts.sim_argc++] = optarg;
            break;
        case OPT_CAN: opts.can_spec = optarg; break;
        case OPT_MQTT: opts.mqtt_uri = optarg; break;
        case OPT_DBUS: opts.dbus = true; break;
        case OPT_PROBE: probe = true; break;
        case OPT_ALLOW_DEFAULTS: opts.allow_defaults = true; break;
        case OPT_INSTALL: update.bundle = optarg; break;
        case OPT_SIGNATURE: update.signature = optarg; break;
        case OPT_FORCE: update.force = true; break;
        case OPT_ROLLBACK: update.rollback = true; break;
        case OPT_UPDATE_STATUS: update.status = true; break;
        case OPT_METRICS_DUMP: opts.metrics_dump = optarg; break;
        case OPT_POLL: {
            char *end;
            long ms = strtol(optarg, &end, 10);
            if (*end || ms < 100 || ms > 10000) {
                fprintf(stderr, "tinybms-gw: --poll-ms needs 100..10000, got '%s'\n", optarg);
                return 2;
            }
            opts.poll_ms = (int)ms;
            break;
        }
        case OPT_HTTP: {
            char *end;
            long port = strtol(optarg, &end, 10);
            if (*end || !*optarg || port < 0 || port > 65535) {
                fprintf(stderr, "tinybms-gw: --http needs a port 1..65535 (0 = no web server), got '%s'\n", optarg);
                return 2;
            }
            opts.http_port = (int)port;
            break;
        }
        case OPT_SET_PASSWORD: set_password = true; break;
        case 'c': opts.config_file = optarg; break;
        case 'd': opts.data_dir = optarg; break;
        case 'q': opts.summary = false; break;
        case 'v': verbosity++; break;
        case 'h': usage(stdout); return 0;
        case 'V': printf("tinybms-gw %s\n", GW_VERSION); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (optind < argc) {
        fprintf(stderr, "tinybms-gw: unexpected argument '%s' (see --help)\n", argv[optind]);
        return 2;
    }
    if (opts.simulate && opts.uart_count) {
        fprintf(stderr, "tinybms-gw: --uart and --simulate exclude each other\n");
        return 2;
    }
    /* -v: the debug level (the BMS poll cycle, state changes); -vv: also every UART frame. */
    gw_log_set_level(verbosity >= 1 ? GW_LOG_DEBUG : GW_LOG_INFO);
    opts.verbose = verbosity;
    if (probe)
        return app_probe(&opts, 3000);
    if (set_password)
        return app_set_password(&opts);
    if ((update.bundle != NULL) + update.rollback + update.status > 1) {
        fprintf(stderr, "tinybms-gw: --install-update, --rollback and --update-status exclude each other\n");
        return 2;
    }
    if (update.bundle || update.rollback || update.status)
        return app_update_cli(&opts, &update);
    /* An installed update runs as a supervised child (its trial, the rollback); -1: run here. */
    int code = ota_launcher_main(opts.data_dir, argv);
    if (code >= 0)
        return code;
    /* systemd (Type=notify, WatchdogSec=): read and cleared before any thread exists; without
     * $NOTIFY_SOCKET (a shell, Venus OS) it does nothing. */
    struct watchdog *wd = NULL;
    if (watchdog_create(&wd) == GW_ERR_NOMEM)
        return 1;
    opts.watchdog = wd;
    if (watchdog_start(wd) != GW_OK) {
        watchdog_destroy(wd);
        return 1;
    }
    code = app_run(&opts);
    watchdog_destroy(wd);
    if (code == APP_EXIT_RESTART && !getenv("GW_OTA_SUPERVISED")) {
        /* Started by hand or by systemd, not by a launcher: everything is stopped and flushed;
         * start afresh with the same command line (same PID, so systemd keeps following it),
         * which also becomes the launcher of a release just installed. */
        fflush(NULL);
        execv("/proc/self/exe", argv);
        fprintf(stderr, "tinybms-gw: cannot restart into the new release: %s\n", strerror(errno));
        return 1;
    }
    return code;
}
