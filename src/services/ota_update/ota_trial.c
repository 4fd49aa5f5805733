/* The launcher's trial decisions and the health rule of a daemon on trial. Pure: no OS call,
 * no clock, no allocation (tests/unit/test_ota_trial.c walks every row). */
#include "gw_text.h"
#include "ota_internal.h"

#include <string.h>

static void say(char *dst, size_t cap, const char *a, const char *b, const char *c, const char *d)
{
    struct gw_text t;
    gw_text_init(&t, dst, cap);
    gw_text_put_str(&t, a);
    gw_text_put_str(&t, b ? b : "");
    gw_text_put_str(&t, c ? c : "");
    gw_text_put_str(&t, d ? d : "");
}

static void starts_text(char *dst, size_t cap, const char *what, uint32_t starts, int last_code)
{
    struct gw_text t;
    gw_text_init(&t, dst, cap);
    gw_text_put_str(&t, what);
    gw_text_put_uint(&t, starts);
    gw_text_put_str(&t, starts == 1 ? " start" : " starts");
    if (last_code >= 0) {
        if (last_code > 128) {
            gw_text_put_str(&t, " (last one killed by signal ");
            gw_text_put_uint(&t, (uint64_t)(last_code - 128));
        } else {
            gw_text_put_str(&t, " (last one exited with code ");
            gw_text_put_uint(&t, (uint64_t)last_code);
        }
        gw_text_put_char(&t, ')');
    }
}

static void rollback(struct ota_trial_decision *d)
{
    d->action = OTA_ACT_ROLLBACK;
    d->write_state = false; /* ota__rollback writes it */
}

static void run_trial(struct ota_state *st, struct ota_trial_decision *d)
{
    st->kind = OTA_STATE_TRIAL;
    st->starts++;
    d->action = OTA_ACT_RUN_TRIAL;
    d->write_state = true; /* before the start: a crash during it counts */
}

void ota__trial_decide(struct ota_state *st, const struct ota_trial_input *in, struct ota_trial_decision *d)
{
    memset(d, 0, sizeof *d);
    uint32_t max = st->max_starts ? st->max_starts : OTA_DEFAULT_MAX_STARTS;
    bool on_trial = st->kind == OTA_STATE_PENDING || st->kind == OTA_STATE_TRIAL;
    switch (in->event) {
    case OTA_EV_BOOT:
        switch (st->kind) {
        case OTA_STATE_NONE:
        case OTA_STATE_FAILED:
        case OTA_STATE_ROLLED_BACK:
            d->action = OTA_ACT_RUN;
            return;
        case OTA_STATE_GOOD:
            if (!in->run_runnable) {
                say(d->reason, sizeof d->reason, "release ", st->release, " is missing or damaged", NULL);
                rollback(d);
                return;
            }
            d->action = OTA_ACT_RUN;
            return;
        case OTA_STATE_PENDING:
        case OTA_STATE_TRIAL:
            if (!in->run_runnable) {
                say(d->reason, sizeof d->reason, "release ", st->release, " is missing or damaged", NULL);
                rollback(d);
                return;
            }
            if (st->kind == OTA_STATE_PENDING)
                st->starts = 0;
            if (st->starts >= max) {
                starts_text(d->reason, sizeof d->reason, "did not become healthy in ", st->starts, -1);
                rollback(d);
                return;
            }
            run_trial(st, d);
            return;
        }
        d->action = OTA_ACT_RUN;
        return;
    case OTA_EV_HEALTHY:
        if (st->kind == OTA_STATE_TRIAL) {
            st->kind = OTA_STATE_GOOD;
            st->reason[0] = '\0';
            d->write_state = true;
        }
        d->action = OTA_ACT_CONTINUE;
        return;
    case OTA_EV_CHILD_EXIT:
        if (in->exit_code == OTA_EXIT_RESTART) {
            d->action = OTA_ACT_REBOOT;
            return;
        }
        if (in->stop_requested || !on_trial) {
            d->action = OTA_ACT_EXIT;
            return;
        }
        if (st->starts >= max) {
            starts_text(d->reason, sizeof d->reason, "failed to start: ", st->starts, in->exit_code);
            rollback(d);
            return;
        }
        run_trial(st, d);
        return;
    case OTA_EV_DEADLINE:
        if (!on_trial) {
            d->action = OTA_ACT_CONTINUE;
            return;
        }
        {
            struct gw_text t;
            gw_text_init(&t, d->reason, sizeof d->reason);
            gw_text_put_str(&t, "not healthy within ");
            gw_text_put_uint(&t, st->timeout_s ? st->timeout_s : OTA_DEFAULT_TIMEOUT_S);
            gw_text_put_str(&t, " s");
            if (in->waiting_for && in->waiting_for[0]) {
                gw_text_put_str(&t, " (");
                gw_text_put_str(&t, in->waiting_for);
                gw_text_put_char(&t, ')');
            }
        }
        rollback(d);
        return;
    }
    d->action = OTA_ACT_CONTINUE;
}

bool ota__health_eval(const struct ota_health_input *in, char *missing, size_t cap)
{
    struct gw_text t;
    gw_text_init(&t, missing, cap);
    bool ok = true;
#define MISSING(text)                                                                                        \
    do {                                                                                                     \
        if (!ok)                                                                                             \
            gw_text_put_str(&t, ", ");                                                                       \
        gw_text_put_str(&t, text);                                                                           \
        ok = false;                                                                                          \
    } while (0)
    if (!in->config_loaded)
        MISSING("configuration not loaded");
    unsigned n = in->packs_required > 32 ? 32 : in->packs_required;
    for (unsigned i = 0; i < n; i++) {
        if (!(in->packs_seen & (1u << i))) {
            if (!ok)
                gw_text_put_str(&t, ", ");
            gw_text_put_str(&t, "BMS not answering (pack ");
            gw_text_put_uint(&t, i + 1);
            gw_text_put_char(&t, ')');
            ok = false;
            break;
        }
    }
    if (in->can_required) {
        if (!in->can_first_ms)
            MISSING("no CAN frame sent");
        else if (in->can_last_ms - in->can_first_ms < in->can_ok_ms)
            MISSING("CAN frames not going out long enough yet");
    }
    if (in->http_required && !in->http_ok)
        MISSING("HTTP not answering");
#undef MISSING
    return ok;
}
