/* Metrics sources of the daemon: each copies one service's public stats into the monitoring
 * sink (on the monitoring sampler thread). Names: tinybms_gw_<module>_<what>[_<unit>][_total]. */
#define _GNU_SOURCE
#include "app_metrics.h"

#include "alert_manager.h"
#include "alert_rules.h"
#include "app_events.h"
#include "battery_service.h"
#include "battery_view.h"
#include "can_publisher.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "history_logger.h"
#include "monitoring.h"
#include "mqtt_gateway.h"
#include "net_link.h"
#include "uart_bms.h"

#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_SUBSCRIBERS 96

enum { PHASE_OFFLINE = 3, PHASE_BUCKETS = 4 };
static const char *const phase_label[PHASE_BUCKETS] = { "bulk", "absorption", "float", "offline" };

struct app_metrics;
struct pack_ctx {
    struct app_metrics *owner;
    unsigned pack;
};

struct app_metrics {
    struct event_bus *bus;
    struct app_metrics_services s;
    struct pack_ctx packs[16];
    char history_db[512];

    pthread_mutex_t lock;           /* the bus counters below */
    bool have_limits;
    float cvl_v, ccl_a, dcl_a;
    uint64_t limit_changes[3];      /* cvl, ccl, dcl */
    uint64_t last_view_ms;
    int last_phase;                 /* bucket of the previous view, -1 none */
    double phase_s[PHASE_BUCKETS];
    uint64_t mqtt_connects, mqtt_disconnects;
    bool mqtt_connected;

    /* copies taken by the sources (the sampler thread only; too big for its stack) */
    struct battery_view view;
    struct can_publisher_status can_status;
};

#define G MONITORING_GAUGE
#define C MONITORING_COUNTER
#define FAM(var, name, kind, help) static const struct monitoring_family var = { name, help, kind, NULL }

/* ------------------------------------------------------------------ bus counters */

static int phase_bucket(const struct battery_view *v)
{
    if (!v->limits.valid)
        return PHASE_OFFLINE;
    return v->limits.phase < PHASE_OFFLINE ? v->limits.phase : PHASE_OFFLINE;
}

static void on_view(const struct gw_event *ev, void *ctx)
{
    struct app_metrics *am = ctx;
    const struct battery_view *v = EVENT_PAYLOAD(ev, struct battery_view);
    if (!v)
        return;
    pthread_mutex_lock(&am->lock);
    /* time in a phase: from one view to the next, charged to the phase of the earlier one */
    if (am->last_phase >= 0 && v->timestamp_ms > am->last_view_ms)
        am->phase_s[am->last_phase] += (double)(v->timestamp_ms - am->last_view_ms) / 1000.0;
    am->last_view_ms = v->timestamp_ms;
    am->last_phase = phase_bucket(v);
    /* a change of a limit sent to the chargers (the 0.1 V / 0.1 A of the CAN frames) */
    const struct battery_limits *l = &v->limits;
    if (l->valid) {
        if (am->have_limits) {
            am->limit_changes[0] += (int)(l->cvl_v * 10 + 0.5f) != (int)(am->cvl_v * 10 + 0.5f);
            am->limit_changes[1] += (int)(l->ccl_a * 10 + 0.5f) != (int)(am->ccl_a * 10 + 0.5f);
            am->limit_changes[2] += (int)(l->dcl_a * 10 + 0.5f) != (int)(am->dcl_a * 10 + 0.5f);
        }
        am->have_limits = true;
        am->cvl_v = l->cvl_v;
        am->ccl_a = l->ccl_a;
        am->dcl_a = l->dcl_a;
    }
    pthread_mutex_unlock(&am->lock);
}

static void on_mqtt(const struct gw_event *ev, void *ctx)
{
    struct app_metrics *am = ctx;
    pthread_mutex_lock(&am->lock);
    if (ev->id == EVENT_MQTT_CONNECTED) {
        am->mqtt_connects++;
        am->mqtt_connected = true;
    } else {
        am->mqtt_disconnects += am->mqtt_connected;
        am->mqtt_connected = false;
    }
    pthread_mutex_unlock(&am->lock);
}

/* ------------------------------------------------------------------ event bus */

FAM(F_BUS_PUB, "tinybms_gw_event_bus_published_total", C, "Events queued on the bus.");
FAM(F_BUS_DROP, "tinybms_gw_event_bus_dropped_total", C, "Events dropped: the queue stayed full past the timeout.");
FAM(F_BUS_DISP, "tinybms_gw_event_bus_dispatched_total", C, "Events delivered to their subscribers.");
FAM(F_BUS_DEPTH, "tinybms_gw_event_bus_queue_depth", G, "Events waiting in the queue now.");
FAM(F_BUS_HW, "tinybms_gw_event_bus_queue_high_water", G, "Most events ever waiting at once.");
FAM(F_SUB_CALLS, "tinybms_gw_event_bus_handler_calls_total", C, "Calls of a subscriber's handler.");
FAM(F_SUB_TIME, "tinybms_gw_event_bus_handler_seconds_total", C, "Time spent in a subscriber's handler.");
FAM(F_SUB_MAX, "tinybms_gw_event_bus_handler_max_seconds", G, "Longest single call of a subscriber's handler.");

static void src_bus(struct monitoring_sink *sink, void *ctx)
{
    struct app_metrics *am = ctx;
    struct event_bus_stats st;
    event_bus_get_stats(am->bus, &st);
    monitoring_put(sink, &F_BUS_PUB, (double)st.published);
    monitoring_put(sink, &F_BUS_DROP, (double)st.dropped);
    monitoring_put(sink, &F_BUS_DISP, (double)st.dispatched);
    monitoring_put(sink, &F_BUS_DEPTH, st.queue_depth);
    monitoring_put(sink, &F_BUS_HW, st.queue_high_water);
    struct event_bus_subscriber_stats subs[MAX_SUBSCRIBERS];
    size_t n = event_bus_get_subscriber_stats(am->bus, subs, MAX_SUBSCRIBERS);
    for (size_t i = 0; i < n; i++) {
        struct monitoring_label l[2] = { { "subscriber", subs[i].name[0] ? subs[i].name : "unnamed" },
                                         { "event", app_event_name(subs[i].event_id) } };
        monitoring_put_labels(sink, &F_SUB_CALLS, l, 2, (double)subs[i].calls);
        monitoring_put_labels(sink, &F_SUB_TIME, l, 2, (double)subs[i].total_us / 1e6);
        monitoring_put_labels(sink, &F_SUB_MAX, l, 2, (double)subs[i].max_us / 1e6);
    }
}

/* ------------------------------------------------------------------ uart_bms (one per pack) */

FAM(F_UART_POLLS, "tinybms_gw_uart_polls_total", C, "Live reads attempted.");
FAM(F_UART_SAMPLES, "tinybms_gw_uart_samples_total", C, "Valid live samples decoded.");
FAM(F_UART_FRAMES, "tinybms_gw_uart_transactions_total", C, "Request/answer exchanges with the BMS.");
FAM(F_UART_TIMEOUTS, "tinybms_gw_uart_timeouts_total", C, "Requests unanswered even after the resend.");
FAM(F_UART_RESENDS, "tinybms_gw_uart_resends_total", C, "Requests sent twice (first one unanswered: BMS asleep).");
FAM(F_UART_CRC, "tinybms_gw_uart_crc_errors_total", C, "Answers with a bad CRC.");
FAM(F_UART_NACKS, "tinybms_gw_uart_nacks_total", C, "Negative acknowledgements from the BMS.");
FAM(F_UART_GARBAGE, "tinybms_gw_uart_garbage_bytes_total", C, "Bytes skipped outside any valid frame.");
FAM(F_UART_REOPENS, "tinybms_gw_uart_reopens_total", C, "Times the serial device was reopened.");
FAM(F_UART_CYCLE, "tinybms_gw_uart_poll_cycle_seconds", G, "Duration of the last live read.");
FAM(F_UART_AGE, "tinybms_gw_uart_sample_age_seconds", G, "Age of the last valid sample (NaN before the first).");
FAM(F_UART_OK, "tinybms_gw_uart_comm_ok", G, "1 while valid samples arrive within the communication timeout.");
FAM(F_UART_OPEN, "tinybms_gw_uart_device_open", G, "1 while the serial device is open.");

static void src_uart(struct monitoring_sink *sink, void *ctx)
{
    const struct pack_ctx *pc = ctx;
    struct app_metrics *am = pc->owner;
    unsigned pack = pc->pack;
    struct uart_bms_stats st;
    uart_bms_get_stats(am->s.bms[pack], &st);
    monitoring_put_pack(sink, &F_UART_POLLS, pack, (double)st.polls);
    monitoring_put_pack(sink, &F_UART_SAMPLES, pack, (double)st.samples);
    monitoring_put_pack(sink, &F_UART_FRAMES, pack, (double)st.transactions);
    monitoring_put_pack(sink, &F_UART_TIMEOUTS, pack, (double)st.timeouts);
    monitoring_put_pack(sink, &F_UART_RESENDS, pack, (double)st.resends);
    monitoring_put_pack(sink, &F_UART_CRC, pack, (double)st.crc_errors);
    monitoring_put_pack(sink, &F_UART_NACKS, pack, (double)st.nacks);
    monitoring_put_pack(sink, &F_UART_GARBAGE, pack, (double)st.garbage_bytes);
    monitoring_put_pack(sink, &F_UART_REOPENS, pack, (double)st.reopens);
    monitoring_put_pack(sink, &F_UART_CYCLE, pack, (double)st.last_cycle_us / 1e6);
    uint64_t now = gw_now_ms();
    double age = st.last_valid_ms && now >= st.last_valid_ms ? (double)(now - st.last_valid_ms) / 1000.0 : NAN;
    monitoring_put_pack(sink, &F_UART_AGE, pack, age);
    monitoring_put_pack(sink, &F_UART_OK, pack, st.comm_ok);
    monitoring_put_pack(sink, &F_UART_OPEN, pack, st.device_open);
}

/* ------------------------------------------------------------------ battery service */

FAM(F_BAT_STEPS, "tinybms_gw_battery_steps_total", C, "Steps of the battery engine.");
FAM(F_BAT_TAKEN, "tinybms_gw_battery_samples_taken_total", C, "BMS samples accepted.");
FAM(F_BAT_IMPL, "tinybms_gw_battery_samples_implausible_total", C, "BMS samples refused as implausible.");
FAM(F_BAT_FROZEN, "tinybms_gw_battery_samples_frozen_total", C, "BMS samples refused as frozen.");
FAM(F_BAT_UNKNOWN, "tinybms_gw_battery_samples_unknown_pack_total", C, "Samples of a pack not configured.");
FAM(F_BAT_VDROP, "tinybms_gw_battery_views_dropped_total", C, "Battery views the bus had no room for.");
FAM(F_BAT_SAVES, "tinybms_gw_battery_saves_total", C, "Saves of energy.json.");
FAM(F_BAT_SAVE_ERR, "tinybms_gw_battery_save_errors_total", C, "Failed saves of energy.json.");
FAM(F_BAT_CAPS, "tinybms_gw_battery_caps_applied_total", C, "External charge caps applied.");
FAM(F_BAT_CAPS_NO, "tinybms_gw_battery_caps_without_effect_total", C, "External caps accepted without effect.");
FAM(F_BAT_STEP_AVG, "tinybms_gw_battery_step_seconds", G, "Mean duration of an engine step.");
FAM(F_BAT_STEP_MAX, "tinybms_gw_battery_step_max_seconds", G, "Longest engine step.");
FAM(F_BAT_ONLINE, "tinybms_gw_battery_packs_online", G, "Packs online (or rejoining).");
FAM(F_BAT_PACKS, "tinybms_gw_battery_packs", G, "Packs configured.");
FAM(F_BAT_VALID, "tinybms_gw_battery_limits_valid", G, "1 while the limits may be sent to chargers.");
FAM(F_BAT_CHANGES, "tinybms_gw_battery_limit_changes_total", C,
    "Changes of a limit sent to the chargers (0.1 V / 0.1 A steps).");
FAM(F_BAT_PHASE, "tinybms_gw_battery_phase_seconds_total", C,
    "Time the bank spent in each charge phase (offline: no limits sent).");
FAM(F_BAT_PACK_STATE, "tinybms_gw_battery_pack_online", G, "1 while the pack is online (or rejoining).");
FAM(F_BAT_PACK_BAD, "tinybms_gw_battery_pack_bad_samples_total", C, "Implausible samples of the pack.");

static void src_battery(struct monitoring_sink *sink, void *ctx)
{
    struct app_metrics *am = ctx;
    struct battery_service_stats st;
    battery_service_get_stats(am->s.battery, &st);
    monitoring_put(sink, &F_BAT_STEPS, (double)st.steps);
    monitoring_put(sink, &F_BAT_TAKEN, (double)st.samples_taken);
    monitoring_put(sink, &F_BAT_IMPL, (double)st.samples_implausible);
    monitoring_put(sink, &F_BAT_FROZEN, (double)st.samples_frozen);
    monitoring_put(sink, &F_BAT_UNKNOWN, (double)st.samples_unknown_pack);
    monitoring_put(sink, &F_BAT_VDROP, (double)st.views_dropped);
    monitoring_put(sink, &F_BAT_SAVES, (double)st.saves);
    monitoring_put(sink, &F_BAT_SAVE_ERR, (double)st.save_errors);
    monitoring_put(sink, &F_BAT_CAPS, (double)st.caps_applied);
    monitoring_put(sink, &F_BAT_CAPS_NO, (double)st.caps_without_effect);
    monitoring_put(sink, &F_BAT_STEP_AVG, st.step_us_avg / 1e6);
    monitoring_put(sink, &F_BAT_STEP_MAX, (double)st.step_us_max / 1e6);

    const struct battery_view *v = &am->view;
    if (battery_service_get_view(am->s.battery, &am->view) == GW_OK) {
        monitoring_put(sink, &F_BAT_ONLINE, v->online_count);
        monitoring_put(sink, &F_BAT_PACKS, v->pack_count);
        monitoring_put(sink, &F_BAT_VALID, v->limits.valid);
        for (unsigned i = 0; i < v->pack_count && i < BATTERY_MAX_PACKS; i++) {
            const struct battery_pack *p = &v->packs[i];
            monitoring_put_pack(sink, &F_BAT_PACK_STATE, p->id,
                                p->state == BATTERY_PACK_ONLINE || p->state == BATTERY_PACK_REJOINING);
            monitoring_put_pack(sink, &F_BAT_PACK_BAD, p->id, p->bad_samples);
        }
    }
    pthread_mutex_lock(&am->lock);
    uint64_t changes[3];
    double phase[PHASE_BUCKETS];
    memcpy(changes, am->limit_changes, sizeof changes);
    memcpy(phase, am->phase_s, sizeof phase);
    pthread_mutex_unlock(&am->lock);
    static const char *const lim[3] = { "cvl", "ccl", "dcl" };
    for (int i = 0; i < 3; i++) {
        struct monitoring_label l = { "limit", lim[i] };
        monitoring_put_labels(sink, &F_BAT_CHANGES, &l, 1, (double)changes[i]);
    }
    for (int i = 0; i < PHASE_BUCKETS; i++) {
        struct monitoring_label l = { "phase", phase_label[i] };
        monitoring_put_labels(sink, &F_BAT_PHASE, &l, 1, phase[i]);
    }
}

/* ------------------------------------------------------------------ CAN */

FAM(F_CAN_SENT, "tinybms_gw_can_frames_sent_total", C, "CAN frames sent.");
FAM(F_CAN_FAILED, "tinybms_gw_can_frames_failed_total", C, "CAN frames that could not be sent.");
FAM(F_CAN_LIVE, "tinybms_gw_can_live_cycles_total", C, "Live frame cycles (0x351..0x379).");
FAM(F_CAN_IDENT, "tinybms_gw_can_identity_cycles_total", C, "Identity frame cycles (0x35E..0x382).");
FAM(F_CAN_RX, "tinybms_gw_can_rx_frames_total", C, "Frames received (inverter keep-alives and others).");
FAM(F_CAN_BUSERR, "tinybms_gw_can_bus_errors_total", C, "Bus error frames or adapter error replies.");
FAM(F_CAN_BUSOFF_N, "tinybms_gw_can_bus_off_transitions_total", C, "Transitions to bus-off.");
FAM(F_CAN_BUSOFF, "tinybms_gw_can_bus_off", G, "1 while the controller is bus-off.");
FAM(F_CAN_QFULL, "tinybms_gw_can_tx_queue_full_total", C, "Sends that met a full transmit queue.");
FAM(F_CAN_OPEN, "tinybms_gw_can_transport_open", G, "1 while the CAN device is open.");
FAM(F_CAN_STALE, "tinybms_gw_can_stale", G, "1 while 0x351 and the measurements are withheld.");
FAM(F_CAN_STALE_N, "tinybms_gw_can_stale_transitions_total", C, "Online to withheld transitions.");
FAM(F_CAN_VIEW_AGE, "tinybms_gw_can_view_age_seconds", G, "Age of the battery view the frames are built from.");
FAM(F_CAN_AGE_LE, "tinybms_gw_can_data_age_frames_total", C,
    "Limit and measurement frames sent whose data was at most le_ms old (cumulative buckets).");
FAM(F_CAN_AGE_N, "tinybms_gw_can_data_age_counted_frames_total", C, "Frames counted in the data-age buckets.");
FAM(F_CAN_AGE_SUM, "tinybms_gw_can_data_age_seconds_total", C, "Sum of the data ages of the frames counted.");
FAM(F_CAN_AGE_MAX, "tinybms_gw_can_data_age_max_seconds", G,
    "Oldest data a limit or measurement frame carried when sent, since start.");
FAM(F_CAN_INV, "tinybms_gw_can_inverter_link", G, "1 while the inverter's keep-alives arrive.");
FAM(F_CAN_INV_AGE, "tinybms_gw_can_inverter_last_seen_seconds", G,
    "Time since the last inverter frame (NaN: never).");
FAM(F_CAN_ID_SENT, "tinybms_gw_can_id_frames_sent_total", C, "Frames sent per CAN id.");
FAM(F_CAN_ID_FAILED, "tinybms_gw_can_id_frames_failed_total", C, "Frames failed per CAN id.");

static void src_can(struct monitoring_sink *sink, void *ctx)
{
    struct app_metrics *am = ctx;
    struct can_publisher_status *stp = &am->can_status;
    if (can_publisher_get_status(am->s.can, stp) != GW_OK)
        return;
    monitoring_put(sink, &F_CAN_SENT, (double)stp->frames_sent);
    monitoring_put(sink, &F_CAN_FAILED, (double)stp->frames_failed);
    monitoring_put(sink, &F_CAN_LIVE, (double)stp->live_cycles);
    monitoring_put(sink, &F_CAN_IDENT, (double)stp->identity_cycles);
    monitoring_put(sink, &F_CAN_RX, (double)stp->rx_frames);
    monitoring_put(sink, &F_CAN_BUSERR, (double)stp->transport_stats.bus_errors);
    monitoring_put(sink, &F_CAN_BUSOFF_N, (double)stp->transport_stats.bus_off_count);
    monitoring_put(sink, &F_CAN_BUSOFF, stp->transport_stats.bus_off);
    monitoring_put(sink, &F_CAN_QFULL, (double)stp->transport_stats.tx_queue_full);
    monitoring_put(sink, &F_CAN_OPEN, stp->transport_open);
    monitoring_put(sink, &F_CAN_STALE, stp->stale);
    monitoring_put(sink, &F_CAN_STALE_N, stp->stale_transitions);
    monitoring_put(sink, &F_CAN_VIEW_AGE, stp->have_view ? (double)stp->view_age_ms / 1000.0 : NAN);
    for (size_t i = 0; i < CAN_PUBLISHER_AGE_BUCKETS; i++) {
        char le[16];
        if (can_publisher_age_bounds_ms[i] == UINT32_MAX)
            snprintf(le, sizeof le, "+Inf");
        else
            snprintf(le, sizeof le, "%u", (unsigned)can_publisher_age_bounds_ms[i]);
        struct monitoring_label l = { "le_ms", le };
        monitoring_put_labels(sink, &F_CAN_AGE_LE, &l, 1, (double)stp->data_age_le[i]);
    }
    monitoring_put(sink, &F_CAN_AGE_N, (double)stp->data_age_frames);
    monitoring_put(sink, &F_CAN_AGE_SUM, (double)stp->data_age_sum_ms / 1000.0);
    monitoring_put(sink, &F_CAN_AGE_MAX, (double)stp->data_age_max_ms / 1000.0);
    monitoring_put(sink, &F_CAN_INV, stp->inverter_link);
    uint64_t now = gw_now_ms();
    monitoring_put(sink, &F_CAN_INV_AGE,
                   stp->inverter_last_ms && now >= stp->inverter_last_ms ? (double)(now - stp->inverter_last_ms) / 1000.0
                                                                     : NAN);
    for (size_t i = 0; i < stp->id_count && i < CAN_PUBLISHER_MAX_IDS; i++) {
        char id[8];
        snprintf(id, sizeof id, "0x%03X", stp->ids[i].id);
        struct monitoring_label l = { "id", id };
        monitoring_put_labels(sink, &F_CAN_ID_SENT, &l, 1, (double)stp->ids[i].sent);
        monitoring_put_labels(sink, &F_CAN_ID_FAILED, &l, 1, (double)stp->ids[i].failed);
    }
    monitoring_put_text(sink, "transport", stp->transport);
}

/* ------------------------------------------------------------------ MQTT */

FAM(F_MQTT_CONN, "tinybms_gw_mqtt_connects_total", C, "Connections to the broker (CONNACK received).");
FAM(F_MQTT_DISC, "tinybms_gw_mqtt_disconnects_total", C, "Connections to the broker lost.");
FAM(F_MQTT_UP, "tinybms_gw_mqtt_connected", G, "1 while connected to the broker.");
FAM(F_MQTT_VIEWS, "tinybms_gw_mqtt_views_received_total", C, "Battery views received.");
FAM(F_MQTT_SAMPLES, "tinybms_gw_mqtt_sample_rounds_total", C, "Rounds of the numeric topics published.");
FAM(F_MQTT_STATUS, "tinybms_gw_mqtt_status_published_total", C, "Status documents published.");
FAM(F_MQTT_ALERTS, "tinybms_gw_mqtt_alerts_published_total", C, "Alert documents published.");
FAM(F_MQTT_LIMITS, "tinybms_gw_mqtt_limit_rounds_total", C, "Rounds of the charge limit topics published.");
FAM(F_MQTT_DISCO, "tinybms_gw_mqtt_discovery_rounds_total", C, "Home Assistant discovery rounds.");
FAM(F_MQTT_CMD_OK, "tinybms_gw_mqtt_commands_accepted_total", C, "Commands accepted.");
FAM(F_MQTT_CMD_NO, "tinybms_gw_mqtt_commands_rejected_total", C, "Commands refused.");
FAM(F_MQTT_ERR, "tinybms_gw_mqtt_publish_errors_total", C, "Publishes refused by the client library.");
FAM(F_MQTT_ROUND, "tinybms_gw_mqtt_round_seconds", G, "Mean CPU time of one round of numeric topics.");

static void src_mqtt(struct monitoring_sink *sink, void *ctx)
{
    struct app_metrics *am = ctx;
    struct mqtt_gateway_stats st;
    mqtt_gateway_get_stats(am->s.mqtt, &st);
    pthread_mutex_lock(&am->lock);
    uint64_t conn = am->mqtt_connects, disc = am->mqtt_disconnects;
    bool up = am->mqtt_connected;
    pthread_mutex_unlock(&am->lock);
    monitoring_put(sink, &F_MQTT_CONN, (double)conn);
    monitoring_put(sink, &F_MQTT_DISC, (double)disc);
    monitoring_put(sink, &F_MQTT_UP, up);
    monitoring_put(sink, &F_MQTT_VIEWS, (double)st.views_received);
    monitoring_put(sink, &F_MQTT_SAMPLES, (double)st.samples_published);
    monitoring_put(sink, &F_MQTT_STATUS, (double)st.status_published);
    monitoring_put(sink, &F_MQTT_ALERTS, (double)st.alerts_published);
    monitoring_put(sink, &F_MQTT_LIMITS, (double)st.limits_published);
    monitoring_put(sink, &F_MQTT_DISCO, (double)st.discovery_published);
    monitoring_put(sink, &F_MQTT_CMD_OK, (double)st.commands_accepted);
    monitoring_put(sink, &F_MQTT_CMD_NO, (double)st.commands_rejected);
    monitoring_put(sink, &F_MQTT_ERR, (double)st.publish_errors);
    monitoring_put(sink, &F_MQTT_ROUND, st.us_per_sample_avg / 1e6);
}

/* ------------------------------------------------------------------ history */

FAM(F_HIST_QUEUED, "tinybms_gw_history_samples_queued_total", C, "Samples queued for the database.");
FAM(F_HIST_ROWS, "tinybms_gw_history_rows_written_total", C, "Rows written to history.db.");
FAM(F_HIST_DROP, "tinybms_gw_history_samples_dropped_total", C, "Samples lost while storage was failing.");
FAM(F_HIST_ERR, "tinybms_gw_history_write_errors_total", C, "Failed writes.");
FAM(F_HIST_DEL, "tinybms_gw_history_rows_deleted_total", C, "Rows removed by the retention.");
FAM(F_HIST_DEPTH, "tinybms_gw_history_queue_depth", G, "Samples waiting for the writer.");
FAM(F_HIST_OK, "tinybms_gw_history_storage_ok", G, "1 while the database can be written.");
FAM(F_HIST_SIZE, "tinybms_gw_history_database_bytes", G, "Size of history.db and its write-ahead log.");

static void src_history(struct monitoring_sink *sink, void *ctx)
{
    struct app_metrics *am = ctx;
    struct history_logger_stats st;
    history_logger_get_stats(am->s.history, &st);
    monitoring_put(sink, &F_HIST_QUEUED, (double)st.samples_queued);
    monitoring_put(sink, &F_HIST_ROWS, (double)st.samples_written);
    monitoring_put(sink, &F_HIST_DROP, (double)st.samples_dropped);
    monitoring_put(sink, &F_HIST_ERR, (double)st.write_errors);
    monitoring_put(sink, &F_HIST_DEL, (double)st.rows_deleted);
    monitoring_put(sink, &F_HIST_DEPTH, st.queue_depth);
    monitoring_put(sink, &F_HIST_OK, st.storage_ok);
    double size = 0;
    struct stat sb;
    char wal[sizeof am->history_db + 8];
    if (stat(am->history_db, &sb) == 0)
        size += (double)sb.st_size;
    snprintf(wal, sizeof wal, "%s-wal", am->history_db);
    if (stat(wal, &sb) == 0)
        size += (double)sb.st_size;
    monitoring_put(sink, &F_HIST_SIZE, size);
}

/* ------------------------------------------------------------------ alerts */

FAM(F_ALERT_ACTIVE, "tinybms_gw_alerts_active", G, "Alerts active now.");
FAM(F_ALERT_RAISED, "tinybms_gw_alerts_raised_total", C, "Times each alert was raised (kept across restarts).");

static void src_alerts(struct monitoring_sink *sink, void *ctx)
{
    struct app_metrics *am = ctx;
    monitoring_put(sink, &F_ALERT_ACTIVE, (double)alert_manager_active_count(am->s.alerts));
    for (int code = 0; code < ALERT_CODE_COUNT; code++) {
        struct monitoring_label l = { "code", alert_code_name(code) };
        monitoring_put_labels(sink, &F_ALERT_RAISED, &l, 1, alert_manager_count(am->s.alerts, alert_code_name(code)));
    }
}

/* ------------------------------------------------------------------ network link */

FAM(F_NET_WATCH, "tinybms_gw_network_watching", G, "1 while the link is watched (netlink available).");
FAM(F_NET_UP, "tinybms_gw_network_connected", G, "1 while a watched interface is up with a usable address.");
FAM(F_NET_LINK, "tinybms_gw_network_link_up", G, "1 while a watched interface has its link (carrier).");
FAM(F_NET_ADDRS, "tinybms_gw_network_addresses", G, "Usable addresses on the watched interfaces.");
FAM(F_NET_CONN, "tinybms_gw_network_connects_total", C, "Times the gateway became connected.");
FAM(F_NET_DISC, "tinybms_gw_network_disconnects_total", C, "Times the gateway lost its connection.");
FAM(F_NET_RECONN, "tinybms_gw_network_reconnects_total", C, "Connections after a disconnection.");
FAM(F_NET_DOWNS, "tinybms_gw_network_link_downs_total", C, "Times the link went down.");
FAM(F_NET_CHANGES, "tinybms_gw_network_address_changes_total", C, "Changes of the address in use.");
FAM(F_NET_ERR, "tinybms_gw_network_netlink_errors_total", C, "Lost notifications (re-read) and failed reads.");
FAM(F_NET_WPA, "tinybms_gw_network_wpa_requests_total", C, "Reconnections asked of wpa_supplicant.");
FAM(F_NET_WPA_FAIL, "tinybms_gw_network_wpa_failures_total", C, "Of which failed (not running, refused, no answer).");
FAM(F_NET_SINCE, "tinybms_gw_network_connected_seconds", G, "Time since the connection came up (0: down).");
FAM(F_NET_WIFI, "tinybms_gw_network_wireless", G, "1 when the interface in use is Wi-Fi.");
FAM(F_NET_SIGNAL, "tinybms_gw_network_wifi_signal_dbm", G, "Wi-Fi signal of the access point, dBm.");
FAM(F_NET_RATE, "tinybms_gw_network_wifi_tx_bitrate_bits_per_second", G, "Wi-Fi transmit bit rate.");
FAM(F_NET_FREQ, "tinybms_gw_network_wifi_frequency_hertz", G, "Wi-Fi channel frequency.");

static void src_net(struct monitoring_sink *sink, void *ctx)
{
    struct app_metrics *am = ctx;
    struct net_link_status st;
    if (net_link_get_status(am->s.net, &st) != GW_OK)
        return;
    monitoring_put(sink, &F_NET_WATCH, st.watching);
    monitoring_put(sink, &F_NET_UP, st.connected);
    monitoring_put(sink, &F_NET_LINK, st.link_up);
    monitoring_put(sink, &F_NET_ADDRS, st.addresses);
    monitoring_put(sink, &F_NET_CONN, (double)st.connects);
    monitoring_put(sink, &F_NET_DISC, (double)st.disconnects);
    monitoring_put(sink, &F_NET_RECONN, (double)st.reconnects);
    monitoring_put(sink, &F_NET_DOWNS, (double)st.link_downs);
    monitoring_put(sink, &F_NET_CHANGES, (double)st.address_changes);
    monitoring_put(sink, &F_NET_ERR, (double)st.netlink_errors);
    monitoring_put(sink, &F_NET_WPA, (double)st.wpa_requests);
    monitoring_put(sink, &F_NET_WPA_FAIL, (double)st.wpa_failures);
    uint64_t now = gw_now_ms();
    monitoring_put(sink, &F_NET_SINCE,
                   st.connected_since_ms && now >= st.connected_since_ms
                       ? (double)(now - st.connected_since_ms) / 1000.0
                       : 0);
    monitoring_put(sink, &F_NET_WIFI, st.wireless);
    monitoring_put_text(sink, "interface", st.interface);
    monitoring_put_text(sink, "address", st.address);
    struct net_link_wireless w;
    if (st.wireless && net_link_get_wireless(am->s.net, &w) == GW_OK) {
        monitoring_put(sink, &F_NET_SIGNAL, w.signal_known ? w.signal_dbm : NAN);
        monitoring_put(sink, &F_NET_RATE, (double)w.tx_bitrate_bps);
        monitoring_put(sink, &F_NET_FREQ, w.frequency_mhz * 1e6);
        monitoring_put_text(sink, "ssid", w.ssid);
    }
}

/* ------------------------------------------------------------------ wiring */

int app_metrics_create(struct event_bus *bus, struct app_metrics **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!bus)
        return GW_ERR_INVAL;
    struct app_metrics *am = calloc(1, sizeof *am);
    if (!am)
        return GW_ERR_NOMEM;
    am->bus = bus;
    am->last_phase = -1;
    pthread_mutex_init(&am->lock, NULL);
    int rc = event_bus_subscribe(bus, EVENT_BATTERY_UPDATE, on_view, am, "metrics");
    if (!rc)
        rc = event_bus_subscribe(bus, EVENT_MQTT_CONNECTED, on_mqtt, am, "metrics");
    if (!rc)
        rc = event_bus_subscribe(bus, EVENT_MQTT_DISCONNECTED, on_mqtt, am, "metrics");
    if (rc) {
        app_metrics_destroy(am);
        return rc;
    }
    *out = am;
    return GW_OK;
}

int app_metrics_add_sources(struct app_metrics *am, const struct app_metrics_services *s, struct monitoring *m)
{
    if (!am || !s || !m || s->pack_count > 16)
        return GW_ERR_INVAL;
    am->s = *s;
    snprintf(am->history_db, sizeof am->history_db, "%s/history.db", s->data_dir ? s->data_dir : ".");
    int rc = monitoring_add_source(m, "event_bus", src_bus, am);
    for (unsigned i = 0; !rc && i < s->pack_count; i++) {
        if (!s->bms[i])
            continue;
        am->packs[i].owner = am;
        am->packs[i].pack = i;
        rc = monitoring_add_source(m, "uart", src_uart, &am->packs[i]);
    }
    if (!rc && s->battery)
        rc = monitoring_add_source(m, "battery", src_battery, am);
    if (!rc && s->can)
        rc = monitoring_add_source(m, "can", src_can, am);
    if (!rc && s->mqtt)
        rc = monitoring_add_source(m, "mqtt", src_mqtt, am);
    if (!rc && s->history)
        rc = monitoring_add_source(m, "history", src_history, am);
    if (!rc && s->alerts)
        rc = monitoring_add_source(m, "alerts", src_alerts, am);
    if (!rc && s->net)
        rc = monitoring_add_source(m, "network", src_net, am);
    return rc;
}

void app_metrics_destroy(struct app_metrics *am)
{
    if (!am)
        return;
    event_bus_unsubscribe(am->bus, EVENT_BATTERY_UPDATE, on_view, am);
    event_bus_unsubscribe(am->bus, EVENT_MQTT_CONNECTED, on_mqtt, am);
    event_bus_unsubscribe(am->bus, EVENT_MQTT_DISCONNECTED, on_mqtt, am);
    pthread_mutex_destroy(&am->lock);
    free(am);
}
