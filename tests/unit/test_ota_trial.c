/* ota_update: the launcher's trial decisions (every row of ota__trial_decide), the health rule,
 * the state file, and the links repaired after a switch interrupted at each step. */
#define _GNU_SOURCE
#include "gw_error.h"
#include "gw_log.h"
#include "ota_internal.h"
#include "test.h"

#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static struct ota_state st_of(enum ota_state_kind k, uint32_t starts)
{
    struct ota_state s = { .kind = k, .starts = starts, .max_starts = 3, .timeout_s = 120 };
    strcpy(s.release, "0.2.0-aaaa");
    strcpy(s.version, "0.2.0");
    strcpy(s.from_release, "0.1.0-bbbb");
    strcpy(s.from_version, "0.1.0");
    return s;
}

static void test_trial_table(void)
{
    static const struct {
        enum ota_state_kind kind;
        uint32_t starts;
        enum ota_trial_event ev;
        int exit_code;
        bool stop, runnable;
        enum ota_trial_action act;
        enum ota_state_kind after;
        uint32_t starts_after;
        bool write;
        const char *reason;
    } rows[] = {
        /* boot */
        { OTA_STATE_NONE, 0, OTA_EV_BOOT, 0, false, true, OTA_ACT_RUN, OTA_STATE_NONE, 0, false, NULL },
        { OTA_STATE_GOOD, 1, OTA_EV_BOOT, 0, false, true, OTA_ACT_RUN, OTA_STATE_GOOD, 1, false, NULL },
        { OTA_STATE_GOOD, 1, OTA_EV_BOOT, 0, false, false, OTA_ACT_ROLLBACK, OTA_STATE_GOOD, 1, false, "missing" },
        { OTA_STATE_FAILED, 3, OTA_EV_BOOT, 0, false, true, OTA_ACT_RUN, OTA_STATE_FAILED, 3, false, NULL },
        { OTA_STATE_ROLLED_BACK, 1, OTA_EV_BOOT, 0, false, true, OTA_ACT_RUN, OTA_STATE_ROLLED_BACK, 1, false, NULL },
        { OTA_STATE_PENDING, 0, OTA_EV_BOOT, 0, false, true, OTA_ACT_RUN_TRIAL, OTA_STATE_TRIAL, 1, true, NULL },
        { OTA_STATE_PENDING, 0, OTA_EV_BOOT, 0, false, false, OTA_ACT_ROLLBACK, OTA_STATE_PENDING, 0, false, "missing" },
        /* a start that ended without "good" (power cut, launcher killed) counts */
        { OTA_STATE_TRIAL, 1, OTA_EV_BOOT, 0, false, true, OTA_ACT_RUN_TRIAL, OTA_STATE_TRIAL, 2, true, NULL },
        { OTA_STATE_TRIAL, 3, OTA_EV_BOOT, 0, false, true, OTA_ACT_ROLLBACK, OTA_STATE_TRIAL, 3, false,
          "did not become healthy in 3 starts" },
        /* healthy */
        { OTA_STATE_TRIAL, 1, OTA_EV_HEALTHY, 0, false, true, OTA_ACT_CONTINUE, OTA_STATE_GOOD, 1, true, NULL },
        { OTA_STATE_GOOD, 1, OTA_EV_HEALTHY, 0, false, true, OTA_ACT_CONTINUE, OTA_STATE_GOOD, 1, false, NULL },
        /* the child ends */
        { OTA_STATE_TRIAL, 1, OTA_EV_CHILD_EXIT, 1, false, true, OTA_ACT_RUN_TRIAL, OTA_STATE_TRIAL, 2, true, NULL },
        { OTA_STATE_TRIAL, 2, OTA_EV_CHILD_EXIT, 139, false, true, OTA_ACT_RUN_TRIAL, OTA_STATE_TRIAL, 3, true, NULL },
        { OTA_STATE_TRIAL, 3, OTA_EV_CHILD_EXIT, 1, false, true, OTA_ACT_ROLLBACK, OTA_STATE_TRIAL, 3, false,
          "failed to start: 3 starts (last one exited with code 1)" },
        { OTA_STATE_TRIAL, 3, OTA_EV_CHILD_EXIT, 137, false, true, OTA_ACT_ROLLBACK, OTA_STATE_TRIAL, 3, false,
          "killed by signal 9" },
        { OTA_STATE_TRIAL, 1, OTA_EV_CHILD_EXIT, 0, true, true, OTA_ACT_EXIT, OTA_STATE_TRIAL, 1, false, NULL },
        { OTA_STATE_TRIAL, 1, OTA_EV_CHILD_EXIT, OTA_EXIT_RESTART, false, true, OTA_ACT_REBOOT, OTA_STATE_TRIAL, 1,
          false, NULL },
        { OTA_STATE_GOOD, 1, OTA_EV_CHILD_EXIT, 1, false, true, OTA_ACT_EXIT, OTA_STATE_GOOD, 1, false, NULL },
        { OTA_STATE_GOOD, 1, OTA_EV_CHILD_EXIT, OTA_EXIT_RESTART, false, true, OTA_ACT_REBOOT, OTA_STATE_GOOD, 1,
          false, NULL },
        { OTA_STATE_NONE, 0, OTA_EV_CHILD_EXIT, 0, true, true, OTA_ACT_EXIT, OTA_STATE_NONE, 0, false, NULL },
        /* the deadline */
        { OTA_STATE_TRIAL, 1, OTA_EV_DEADLINE, 0, false, true, OTA_ACT_ROLLBACK, OTA_STATE_TRIAL, 1, false,
          "not healthy within 120 s (BMS not answering (pack 1))" },
        { OTA_STATE_GOOD, 1, OTA_EV_DEADLINE, 0, false, true, OTA_ACT_CONTINUE, OTA_STATE_GOOD, 1, false, NULL },
    };
    for (size_t i = 0; i < sizeof rows / sizeof rows[0]; i++) {
        struct ota_state s = st_of(rows[i].kind, rows[i].starts);
        struct ota_trial_input in = { .event = rows[i].ev, .exit_code = rows[i].exit_code,
                                      .stop_requested = rows[i].stop, .run_runnable = rows[i].runnable,
                                      .waiting_for = "BMS not answering (pack 1)" };
        struct ota_trial_decision d;
        ota__trial_decide(&s, &in, &d);
        if (d.action != rows[i].act || s.kind != rows[i].after || s.starts != rows[i].starts_after ||
            d.write_state != rows[i].write)
            fprintf(stderr, "row %zu: action %d kind %d starts %u write %d\n", i, d.action, s.kind, s.starts,
                    d.write_state);
        CHECK_EQ_INT(d.action, rows[i].act);
        CHECK_EQ_INT(s.kind, rows[i].after);
        CHECK_EQ_INT(s.starts, rows[i].starts_after);
        CHECK_EQ_INT(d.write_state, rows[i].write);
        if (rows[i].reason) {
            if (!strstr(d.reason, rows[i].reason))
                fprintf(stderr, "row %zu: reason \"%s\"\n", i, d.reason);
            CHECK(strstr(d.reason, rows[i].reason) != NULL);
        }
    }
}

/* A release that exits at once: three starts, then the rollback. */
static void test_three_failed_starts_roll_back(void)
{
    struct ota_state s = st_of(OTA_STATE_PENDING, 0);
    struct ota_trial_decision d;
    struct ota_trial_input boot = { .event = OTA_EV_BOOT, .run_runnable = true };
    ota__trial_decide(&s, &boot, &d);
    unsigned starts = 0;
    while (d.action == OTA_ACT_RUN_TRIAL) {
        starts++;
        struct ota_trial_input ex = { .event = OTA_EV_CHILD_EXIT, .exit_code = 1 };
        ota__trial_decide(&s, &ex, &d);
        CHECK(starts <= 3);
        if (starts > 3)
            break;
    }
    CHECK_EQ_INT(starts, 3);
    CHECK_EQ_INT(d.action, OTA_ACT_ROLLBACK);
}

static void test_health(void)
{
    char why[160];
    struct ota_health_input in = { .config_loaded = true, .packs_required = 2, .packs_seen = 1, .can_required = true,
                                   .can_ok_ms = 5000, .http_required = true };
    CHECK(!ota__health_eval(&in, why, sizeof why));
    CHECK_STR(why, "BMS not answering (pack 2), no CAN frame sent, HTTP not answering");
    in.packs_seen = 3;
    in.can_first_ms = 1000;
    in.can_last_ms = 5999;
    in.http_ok = true;
    CHECK(!ota__health_eval(&in, why, sizeof why));
    CHECK_STR(why, "CAN frames not going out long enough yet");
    in.can_last_ms = 6000;
    CHECK(ota__health_eval(&in, why, sizeof why));
    in.config_loaded = false;
    CHECK(!ota__health_eval(&in, why, sizeof why));
    CHECK_STR(why, "configuration not loaded");
    /* no pack, no CAN, no web: healthy once the configuration is loaded */
    struct ota_health_input none = { .config_loaded = true };
    CHECK(ota__health_eval(&none, why, sizeof why));
}

static void test_state_file(void)
{
    struct ota_state s = st_of(OTA_STATE_FAILED, 3), back;
    strcpy(s.reason, "not healthy within 120 s");
    char *json = NULL;
    CHECK_EQ_INT(ota__state_to_json(&s, &json), GW_OK);
    CHECK_EQ_INT(ota__state_from_json(json, strlen(json), &back), GW_OK);
    CHECK_EQ_INT(back.kind, OTA_STATE_FAILED);
    CHECK_STR(back.release, s.release);
    CHECK_STR(back.from_version, "0.1.0");
    CHECK_EQ_INT(back.starts, 3);
    CHECK_STR(back.reason, s.reason);
    /* cut at every length: refused whole, never half-read */
    for (size_t cut = 0; cut < strlen(json); cut++)
        CHECK_EQ_INT(ota__state_from_json(json, cut, &back), GW_ERR_INVAL);
    free(json);
    static const char *bad[] = {
        "{\"state\":\"bogus\",\"release\":\"a\",\"version\":\"\",\"from_release\":\"\",\"from_version\":\"\"}",
        "{\"state\":\"good\",\"release\":\"../x\",\"version\":\"\",\"from_release\":\"\",\"from_version\":\"\"}",
        "{\"state\":\"good\",\"release\":\"\",\"version\":\"\",\"from_release\":\"\",\"from_version\":\"\"}",
        NULL,
    };
    for (int i = 0; bad[i]; i++)
        CHECK_EQ_INT(ota__state_from_json(bad[i], strlen(bad[i]), &back), GW_ERR_INVAL);
    /* Found by fuzz_ota_manifest: a changed_ms no int64 holds was converted anyway (undefined
     * behaviour; INT64_MIN on x86). It reads as 0, the rest of the file as written. */
    static const char *huge[] = { "1e300", "-5", "9.3e18", "17001e3000000" };
    for (size_t i = 0; i < sizeof huge / sizeof huge[0]; i++) {
        char doc[256];
        snprintf(doc, sizeof doc,
                 "{\"state\":\"good\",\"release\":\"0.2.0-1a2b\",\"version\":\"0.2.0\",\"from_release\":\"\","
                 "\"from_version\":\"0.1.0\",\"changed_ms\":%s}",
                 huge[i]);
        CHECK_EQ_INT(ota__state_from_json(doc, strlen(doc), &back), GW_OK);
        CHECK_EQ_INT(back.changed_wall_ms, 0);
        CHECK_EQ_INT(back.kind, OTA_STATE_GOOD);
    }
    const char *ok = "{\"state\":\"good\",\"release\":\"r\",\"version\":\"\",\"from_release\":\"\","
                     "\"from_version\":\"\",\"changed_ms\":1700000000123}";
    CHECK_EQ_INT(ota__state_from_json(ok, strlen(ok), &back), GW_OK);
    CHECK_EQ_INT(back.changed_wall_ms, 1700000000123LL);
}

static int rm_cb(const char *p, const struct stat *s, int f, struct FTW *w)
{
    (void)s;
    (void)f;
    (void)w;
    return remove(p);
}

static void make_release(const struct ota_paths *p, const char *name)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/%s", p->releases, name);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/bin", p->releases, name);
    mkdir(path, 0755);
    snprintf(path, sizeof path, "%s/%s/bin/tinybms-gw", p->releases, name);
    FILE *f = fopen(path, "w");
    fputs("#!/bin/sh\n", f);
    fclose(f);
    chmod(path, 0755);
}

/* The switch in its steps (state first, then previous, then current); a crash after any step
 * is repaired by reconcile to what the state says, and there is always a runnable release. */
static void test_reconcile_after_each_step(void)
{
    char dir[] = "/tmp/test_ota_trial_XXXXXX";
    if (!mkdtemp(dir))
        return;
    struct ota_paths p;
    ota__paths(dir, &p);
    mkdir(p.releases, 0755);
    make_release(&p, "0.1.0-bbbb");
    make_release(&p, "0.2.0-aaaa");
    for (int step = 0; step <= 3; step++) {
        /* before: 0.1.0 is current and good */
        struct ota_state good = st_of(OTA_STATE_GOOD, 1);
        strcpy(good.release, "0.1.0-bbbb");
        strcpy(good.version, "0.1.0");
        good.from_release[0] = good.from_version[0] = '\0';
        ota__state_write(&p, &good);
        ota__link_set(&p, "current", "0.1.0-bbbb");
        ota__link_set(&p, "previous", "");
        struct ota_state next = st_of(OTA_STATE_PENDING, 0);
        if (step >= 1)
            ota__state_write(&p, &next);
        if (step >= 2)
            ota__link_set(&p, "previous", "0.1.0-bbbb");
        if (step >= 3)
            ota__link_set(&p, "current", "0.2.0-aaaa");
        struct ota_state st;
        ota__state_read(&p, &st);
        char run[128], cur[128], prev[128];
        ota__reconcile(&p, &st, run, sizeof run);
        ota__link_get(&p, "current", cur, sizeof cur);
        ota__link_get(&p, "previous", prev, sizeof prev);
        CHECK(ota__release_runnable(&p, run));
        CHECK_STR(cur, run);
        if (step == 0) {
            CHECK_STR(run, "0.1.0-bbbb");
        } else {
            CHECK_STR(run, "0.2.0-aaaa");
            CHECK_STR(prev, "0.1.0-bbbb");
        }
    }
    /* rollback: back to 0.1.0, previous gone, the failed release kept until the next update */
    struct ota_state st;
    ota__state_read(&p, &st);
    CHECK_EQ_INT(ota__rollback(&p, &st, OTA_STATE_FAILED, "test"), GW_OK);
    char cur[128], prev[128];
    ota__link_get(&p, "current", cur, sizeof cur);
    ota__link_get(&p, "previous", prev, sizeof prev);
    CHECK_STR(cur, "0.1.0-bbbb");
    CHECK_STR(prev, "");
    CHECK_EQ_INT(ota__rollback(&p, &st, OTA_STATE_FAILED, "again"), GW_ERR_NOT_FOUND);
    /* a leftover staging directory and an unreferenced release are cleaned up */
    char path[1024];
    snprintf(path, sizeof path, "%s/.staging-zzzz", p.releases);
    mkdir(path, 0755);
    make_release(&p, "0.0.1-cccc");
    CHECK_EQ_INT(ota__cleanup(&p, &st), 2);
    CHECK(ota__release_runnable(&p, "0.1.0-bbbb"));
    CHECK(!ota__release_runnable(&p, "0.0.1-cccc"));
    /* a broken current link (release deleted by hand) is not runnable */
    CHECK(!ota__release_runnable(&p, "9.9.9-dead"));
    nftw(dir, rm_cb, 16, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    gw_log_set_level(GW_LOG_ERROR);
    static const struct test_case_ cases[] = {
        TEST_CASE(test_trial_table),
        TEST_CASE(test_three_failed_starts_roll_back),
        TEST_CASE(test_health),
        TEST_CASE(test_state_file),
        TEST_CASE(test_reconcile_after_each_step),
    };
    return test_run_(cases, sizeof cases / sizeof cases[0]);
}
