/* Golden output of one whole CAN cycle: from fixed inputs (a two-pack LFP bank, online, one
 * warning active), every frame the CAN publisher sends in one live cycle (the 1 s set) and one
 * identity cycle (the 10 s set), in its send order, as `candump -l` lines — the pure encoder
 * (core/victron) and the candump formatter of the log transport (port/can), no thread. The
 * expected lines are checked in beside this test (test_can_golden.log, which `canplayer -I`
 * can replay onto vcan0); any change to what goes on the bus shows up as a diff to review.
 * Regenerate deliberately, never blindly: GW_REGENERATE_GOLDEN=1 ctest -R can_golden. */
#define _POSIX_C_SOURCE 200809L
#include "can_transport.h"
#include "gw_error.h"
#include "test.h"
#include "victron.h"

#include <stdlib.h>

#define GOLDEN_NAME "test_can_golden.log"
#define CYCLE_WALL_US 1700000000000000LL /* both cycles go out in the first tick */
#define IFNAME "can0"

static void golden_inputs(struct victron_inputs *in)
{
    victron_inputs_init(in);
    in->cvl_v = 55.2f;
    in->ccl_a = 100.0f;
    in->dcl_a = 150.0f;
    in->discharge_v = 44.8f;
    in->soc_pct = 85.5f;
    in->soh_pct = 98.0f;
    in->voltage_v = 53.12f;
    in->current_a = -12.5f;
    in->temp_c = 24.3f;
    for (unsigned f = 0; f < VICTRON_FLAG_COUNT; f++)
        in->alarms.alarm[f] = in->alarms.warning[f] = VICTRON_FLAG_OK;
    in->alarms.warning[VICTRON_FLAG_CELL_IMBALANCE] = VICTRON_FLAG_ACTIVE;
    in->alarms.warning[VICTRON_FLAG_GENERAL] = VICTRON_FLAG_ACTIVE;
    in->alarms.online = true;
    in->modules = (struct victron_modules){ .ok = 2 };
    in->min_cell_v = 3.301f;
    in->max_cell_v = 3.342f;
    in->min_temp_c = 18.5f;
    in->max_temp_c = 24.3f;
    strcpy(in->min_cell_id, "P1C07");
    strcpy(in->max_cell_id, "P2C12");
    strcpy(in->min_temp_id, "P1T1");
    strcpy(in->max_temp_id, "P2T2");
    in->energy_in_wh = 123456.7;
    in->energy_out_wh = 98765.4;
    in->capacity_ah = 560.0f;
    in->installed_capacity_ah = 560.0f;
    strcpy(in->identity.manufacturer, "Enepaq");
    strcpy(in->identity.battery_name, "TinyBMS bank");
    strcpy(in->identity.family, "LFP");
    strcpy(in->identity.serial, "0123456789ABCDEF");
    in->identity.model_id = 0x0102;
    in->identity.fw_major = 2;
    in->identity.fw_minor = 7;
    in->identity.hw_version = 3;
}

/* Appends the frames of one set, in the publisher's send order, as candump lines. */
static void append_cycle(unsigned set, const struct victron_inputs *in, char *out, size_t cap,
                         size_t *len)
{
    uint16_t ids[VICTRON_MAX_FRAMES];
    size_t n = victron_set_ids(set, ids, VICTRON_MAX_FRAMES);
    struct victron_frame frames[VICTRON_MAX_FRAMES];
    size_t count = 0;
    CHECK_EQ_INT(victron_encode_set(set, in, frames, VICTRON_MAX_FRAMES, &count), GW_OK);
    CHECK_EQ_INT(count, n); /* online with valid limits: nothing withheld */
    for (size_t i = 0; i < count && i < n; i++) {
        CHECK_EQ_INT(frames[i].id, ids[i]); /* the order the publisher sends */
        struct can_frame_gw f = { .id = frames[i].id, .dlc = frames[i].dlc };
        memcpy(f.data, frames[i].data, sizeof f.data);
        int w = can_log_format(&f, CYCLE_WALL_US, IFNAME, out + *len, cap - *len);
        CHECK(w > 0);
        if (w > 0)
            *len += (size_t)w;
    }
}

static void golden_path(char *path, size_t cap)
{
    const char *src = getenv("GW_SOURCE_DIR");
    if (src) {
        snprintf(path, cap, "%s/tests/unit/" GOLDEN_NAME, src);
        return;
    }
    snprintf(path, cap, "%s", __FILE__); /* run by hand: beside this source file */
    char *slash = strrchr(path, '/');
    size_t at = slash ? (size_t)(slash + 1 - path) : 0;
    snprintf(path + at, cap - at, GOLDEN_NAME);
}

static void test_golden_cycle(void)
{
    struct victron_inputs in;
    golden_inputs(&in);
    static char got[8192];
    size_t len = 0;
    append_cycle(VICTRON_SET_LIVE, &in, got, sizeof got, &len);
    append_cycle(VICTRON_SET_IDENTITY, &in, got, sizeof got, &len);
    CHECK_EQ_INT(victron_set_ids(VICTRON_SET_ALL, NULL, 0), VICTRON_LIVE_FRAMES + VICTRON_IDENTITY_FRAMES);

    char path[1024];
    golden_path(path, sizeof path);
    if (getenv("GW_REGENERATE_GOLDEN")) {
        FILE *w = fopen(path, "w");
        CHECK(w != NULL);
        if (w) {
            fwrite(got, 1, len, w);
            fclose(w);
            printf("wrote %s\n", path);
        }
        return;
    }
    FILE *f = fopen(path, "r");
    CHECK(f != NULL);
    if (!f)
        return;
    static char want[8192];
    size_t wlen = fread(want, 1, sizeof want - 1, f);
    fclose(f);
    want[wlen] = '\0';
    got[len] = '\0';
    CHECK_EQ_INT(len, wlen);
    CHECK(strcmp(got, want) == 0);
    if (strcmp(got, want) == 0)
        return;
    /* Show the first line that differs. */
    const char *g = got, *e = want;
    for (unsigned line = 1; *g || *e; line++) {
        size_t gl = strcspn(g, "\n"), el = strcspn(e, "\n");
        if (gl != el || memcmp(g, e, gl) != 0) {
            fprintf(stderr, "%s:%u: expected \"%.*s\"\n%*s got      \"%.*s\"\n", path, line,
                    (int)el, e, (int)strlen(path), "", (int)gl, g);
            break;
        }
        g += gl + (g[gl] ? 1 : 0);
        e += el + (e[el] ? 1 : 0);
    }
    fprintf(stderr, "if the change is intended: GW_REGENERATE_GOLDEN=1 ctest -R can_golden, and "
                    "review the diff\n");
}

TEST_MAIN(TEST_CASE(test_golden_cycle))
