/* monitoring: the Prometheus text against the exposition rules (names, units, HELP/TYPE once per
 * family, label escaping, duplicates), a golden of a fixed snapshot, the JSON shape, the /proc
 * parsers, the per-thread-name CPU table, and the service (sources, refresh, bad input). */
#define _GNU_SOURCE
#include "monitoring.h"
#include "monitoring_internal.h"

#include "gw_error.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ a rule checker */

/* Checks a whole exposition text: every line is a comment (# HELP / # TYPE) or a sample; every
 * family has exactly one HELP and one TYPE, before its samples, and its samples are contiguous;
 * names and label names are valid; counters end in _total; label values are properly escaped;
 * no series twice. Returns the number of problems (printed). */
static int check_exposition(const char *text)
{
    int problems = 0;
    char seen_families[512][96];
    size_t nfam = 0;
    char current[96] = "";
    char current_type[16] = "";
    bool have_help = false;
    char series[2048][160];
    size_t nseries = 0;
    const char *p = text;
    int lineno = 0;
    while (*p) {
        const char *nl = strchr(p, '\n');
        if (!nl) {
            fprintf(stderr, "exposition: last line without a newline\n");
            return problems + 1;
        }
        char line[1024];
        size_t n = (size_t)(nl - p);
        if (n >= sizeof line)
            n = sizeof line - 1;
        memcpy(line, p, n);
        line[n] = '\0';
        p = nl + 1;
        lineno++;
#define BAD(...)                                                                                                  \
    do {                                                                                                          \
        fprintf(stderr, "exposition line %d: ", lineno);                                                         \
        fprintf(stderr, __VA_ARGS__);                                                                             \
        fprintf(stderr, ": %s\n", line);                                                                          \
        problems++;                                                                                               \
    } while (0)
        if (strncmp(line, "# HELP ", 7) == 0 || strncmp(line, "# TYPE ", 7) == 0) {
            char name[96];
            if (sscanf(line + 7, "%95s", name) != 1) {
                BAD("no family name");
                continue;
            }
            if (!monitoring__valid_metric_name(name))
                BAD("bad family name");
            if (line[2] == 'H') {
                /* "x_total" (counter) and "x" (gauge) are one family name for a parser */
                size_t bl = strlen(name);
                if (bl > 6 && strcmp(name + bl - 6, "_total") == 0)
                    bl -= 6;
                for (size_t i = 0; i < nfam; i++) {
                    size_t il = strlen(seen_families[i]);
                    if (il > 6 && strcmp(seen_families[i] + il - 6, "_total") == 0)
                        il -= 6;
                    if (il == bl && strncmp(seen_families[i], name, bl) == 0)
                        BAD("family written twice (or a gauge and a counter of one name)");
                }
                if (nfam < 512)
                    snprintf(seen_families[nfam++], sizeof seen_families[0], "%s", name);
                snprintf(current, sizeof current, "%s", name);
                current_type[0] = '\0';
                have_help = true;
            } else {
                if (!have_help || strcmp(name, current) != 0)
                    BAD("TYPE without its HELP just before");
                const char *type = line + 7 + strlen(name) + 1;
                if (strcmp(type, "counter") && strcmp(type, "gauge"))
                    BAD("unknown type");
                snprintf(current_type, sizeof current_type, "%s", type);
                size_t len = strlen(name);
                bool total = len > 6 && strcmp(name + len - 6, "_total") == 0;
                if (strcmp(type, "counter") == 0 && !total)
                    BAD("counter without _total");
                if (strcmp(type, "gauge") == 0 && total)
                    BAD("gauge with _total");
            }
            continue;
        }
        if (line[0] == '#') {
            BAD("unexpected comment");
            continue;
        }
        /* sample: name{labels} value */
        size_t nl_len = strcspn(line, "{ ");
        char name[96];
        snprintf(name, sizeof name, "%.*s", (int)nl_len, line);
        if (strcmp(name, current) != 0 || !current_type[0])
            BAD("sample outside its family block (or before HELP/TYPE)");
        const char *q = line + nl_len;
        if (*q == '{') {
            q++;
            while (*q && *q != '}') {
                size_t ln = strcspn(q, "=");
                char lname[64];
                snprintf(lname, sizeof lname, "%.*s", (int)ln, q);
                if (!monitoring__valid_label_name(lname))
                    BAD("bad label name '%s'", lname);
                q += ln;
                if (q[0] != '=' || q[1] != '"') {
                    BAD("label without a quoted value");
                    break;
                }
                q += 2;
                while (*q && *q != '"') {
                    if (*q == '\\') {
                        if (q[1] != '\\' && q[1] != '"' && q[1] != 'n')
                            BAD("bad escape");
                        q++;
                    }
                    if (*q)
                        q++;
                }
                if (*q != '"') {
                    BAD("unterminated label value");
                    break;
                }
                q++;
                if (*q == ',')
                    q++;
            }
            if (*q != '}') {
                BAD("unterminated labels");
                continue;
            }
            q++;
        }
        if (*q != ' ') {
            BAD("no space before the value");
            continue;
        }
        q++;
        char *end;
        double v = strtod(q, &end);
        (void)v;
        if (end == q && strcmp(q, "NaN") && strcmp(q, "+Inf") && strcmp(q, "-Inf"))
            BAD("value is not a number");
        else if (end != q && *end)
            BAD("junk after the value");
        char key[160];
        snprintf(key, sizeof key, "%.*s", (int)(q - line), line);
        for (size_t i = 0; i < nseries; i++)
            if (strcmp(series[i], key) == 0)
                BAD("series written twice");
        if (nseries < 2048)
            snprintf(series[nseries++], sizeof series[0], "%s", key);
#undef BAD
    }
    return problems;
}

/* ------------------------------------------------------------------ fixtures */

static const struct monitoring_family F_FRAMES = { "tinybms_gw_uart_frames_total", "Frames answered.",
                                                   MONITORING_COUNTER, NULL };
static const struct monitoring_family F_CYCLE = { "tinybms_gw_uart_poll_cycle_seconds", "Last poll cycle.",
                                                  MONITORING_GAUGE, NULL };
static const struct monitoring_family F_DEPTH = { "tinybms_gw_event_bus_queue_depth", "Events waiting.",
                                                  MONITORING_GAUGE, "depth" };
static const struct monitoring_family F_SUB = { "tinybms_gw_event_bus_handler_seconds_total",
                                                "Time in a subscriber's handler.\nSecond \\ line.",
                                                MONITORING_COUNTER, NULL };
static const struct monitoring_family F_BAD_MS = { "tinybms_gw_uart_cycle_ms", "Milliseconds.", MONITORING_GAUGE,
                                                   NULL };
static const struct monitoring_family F_BAD_COUNTER = { "tinybms_gw_uart_errors", "A counter without _total.",
                                                        MONITORING_COUNTER, NULL };
/* another definition with the same name as F_FRAMES: rendered in the same family */
static const struct monitoring_family F_FRAMES2 = { "tinybms_gw_uart_frames_total", "Frames answered.",
                                                    MONITORING_COUNTER, NULL };

static struct monitoring_snapshot *fixed_snapshot(void)
{
    struct monitoring_snapshot *s = calloc(1, sizeof *s);
    s->cap = 32;
    s->samples = calloc(s->cap, sizeof *s->samples);
    s->period_ms = 5000;
    s->module_count = 3;
    snprintf(s->modules[0], sizeof s->modules[0], "uart");
    snprintf(s->modules[1], sizeof s->modules[1], "uart");
    snprintf(s->modules[2], sizeof s->modules[2], "event_bus");
    struct monitoring_system *y = &s->sys;
    y->wall_ms = 1764000000000;
    y->uptime_s = 3600;
    y->start_time_s = 1763996400;
    y->cpu_seconds = 12.5;
    y->cpu_ratio = 0.0035;
    y->rss_bytes = 8u << 20;
    y->rss_peak_bytes = 9u << 20;
    y->vm_bytes = 200u << 20;
    y->open_fds = 17;
    y->max_fds = 1024;
    y->thread_total = 3;
    y->load[0] = 0.5;
    y->load[1] = 0.25;
    y->load[2] = 0.125;
    y->system_uptime_s = 86400;
    y->mem_total_bytes = 1u << 30;
    y->mem_free_bytes = 1u << 29;
    y->disk_known = true;
    y->disk_free_bytes = 5ull << 30;
    y->disk_total_bytes = 16ull << 30;
    y->thread_count = 2;
    snprintf(y->threads[0].name, sizeof y->threads[0].name, "tinybms-gw");
    y->threads[0].count = 2;
    y->threads[0].cpu_seconds = 10;
    y->threads[0].cpu_ratio = 0.002;
    snprintf(y->threads[1].name, sizeof y->threads[1].name, "bms-poll-0");
    y->threads[1].count = 1;
    y->threads[1].cpu_seconds = 2.5;
    y->threads[1].cpu_ratio = 0.0015;
    y->collections = 720;
    y->collect_last_s = 0.00004;
    y->collect_total_s = 0.0288;

    struct monitoring_sink a = { .snap = s, .module = 0 }, b = { .snap = s, .module = 1 },
                           c = { .snap = s, .module = 2 };
    /* two packs, interleaved families: each family must come out whole */
    CHECK_EQ_INT(monitoring_put_pack(&a, &F_FRAMES, 0, 1200), GW_OK);
    CHECK_EQ_INT(monitoring_put_pack(&a, &F_CYCLE, 0, 0.0136), GW_OK);
    CHECK_EQ_INT(monitoring_put_pack(&b, &F_FRAMES2, 1, 1190), GW_OK);
    CHECK_EQ_INT(monitoring_put_pack(&b, &F_CYCLE, 1, NAN), GW_OK);
    CHECK_EQ_INT(monitoring_put(&c, &F_DEPTH, 3), GW_OK);
    struct monitoring_label l1[] = { { "subscriber", "mqtt \"gw\"\\x\nnext" }, { "event", "battery_update" } };
    CHECK_EQ_INT(monitoring_put_labels(&c, &F_SUB, l1, 2, 0.25), GW_OK);
    struct monitoring_label l2[] = { { "event", "battery_update" }, { "subscriber", "mqtt \"gw\"\\x\nnext" } };
    CHECK_EQ_INT(monitoring_put_labels(&c, &F_SUB, l2, 2, 0.5), GW_OK); /* same series: dropped */
    CHECK_EQ_INT(monitoring_put(&a, &F_BAD_MS, 13), GW_OK);
    CHECK_EQ_INT(monitoring_put(&a, &F_BAD_COUNTER, 1), GW_OK);
    CHECK_EQ_INT(monitoring_put(&c, &F_DEPTH, INFINITY), GW_OK); /* duplicate of the unlabeled one */
    CHECK_EQ_INT(monitoring_put_text(&a, "device", "/dev/ttyUSB0 \"x\""), GW_OK);
    CHECK_EQ_INT(monitoring_put_text(&a, "Bad-Key", "x"), GW_ERR_INVAL);
    return s;
}

static void free_snapshot(struct monitoring_snapshot *s)
{
    free(s->samples);
    free(s);
}

static char *render(const struct monitoring_snapshot *s, size_t *rejected)
{
    struct monitoring_text t;
    monitoring__text_init(&t, NULL, 0);
    monitoring__render_prometheus(s, &t);
    char *buf = malloc(t.len + 1);
    monitoring__text_init(&t, buf, t.len + 1);
    size_t r = monitoring__render_prometheus(s, &t);
    CHECK(!t.truncated);
    if (rejected)
        *rejected = r;
    return buf;
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    size_t got = fread(buf, 1, (size_t)n, f);
    buf[got] = '\0';
    fclose(f);
    return buf;
}

/* ------------------------------------------------------------------ tests */

static void test_text_builder_bounds(void)
{
    char buf[8];
    struct monitoring_text t;
    monitoring__text_init(&t, buf, sizeof buf);
    monitoring__text_add(&t, "abc", 3);
    monitoring__text_printf(&t, "%d", 1234);
    CHECK_STR(buf, "abc1234");
    CHECK(!t.truncated);
    monitoring__text_add(&t, "x", 1); /* 8 characters + NUL do not fit */
    CHECK(t.truncated);
    CHECK_STR(buf, "abc1234");
    CHECK_EQ_INT(t.len, 8);
    monitoring__text_printf(&t, "%s", "0123456789012345678901234567890123456789");
    CHECK_EQ_INT(t.len, 48); /* still counts what a second pass needs */
    monitoring__text_init(&t, NULL, 100); /* measuring pass */
    monitoring__text_add(&t, "hello", 5);
    CHECK_EQ_INT(t.len, 5);
    CHECK(t.truncated);
}

static void test_family_rules(void)
{
    static const struct {
        struct monitoring_family f;
        bool ok;
    } cases[] = {
        { { "tinybms_gw_uart_frames_total", "h", MONITORING_COUNTER, NULL }, true },
        { { "tinybms_gw_uart_poll_cycle_seconds", "h", MONITORING_GAUGE, NULL }, true },
        { { "process_resident_memory_bytes", "h", MONITORING_GAUGE, NULL }, true },
        { { "a:b_c", "h", MONITORING_GAUGE, NULL }, true },
        { { "tinybms_gw_uart_frames", "h", MONITORING_COUNTER, NULL }, false },
        { { "tinybms_gw_uart_frames_total", "h", MONITORING_GAUGE, NULL }, false },
        { { "tinybms_gw_cycle_ms", "h", MONITORING_GAUGE, NULL }, false },
        { { "tinybms_gw_cycle_us_total", "h", MONITORING_COUNTER, NULL }, false },
        { { "tinybms_gw_cpu_percent", "h", MONITORING_GAUGE, NULL }, false },
        { { "tinybms_gw_rss_kb", "h", MONITORING_GAUGE, NULL }, false },
        { { "tinybms_gw_network_wifi_signal_dbm", "h", MONITORING_GAUGE, NULL }, true }, /* as node_exporter */
        { { "tinybms_gw_items", "h", MONITORING_GAUGE, NULL }, true }, /* "ms" only as a word */
        { { "1abc", "h", MONITORING_GAUGE, NULL }, false },
        { { "tinybms-gw", "h", MONITORING_GAUGE, NULL }, false },
        { { "", "h", MONITORING_GAUGE, NULL }, false },
        { { NULL, "h", MONITORING_GAUGE, NULL }, false },
        { { "tinybms_gw_x", "", MONITORING_GAUGE, NULL }, false },
        { { "tinybms_gw_x", NULL, MONITORING_GAUGE, NULL }, false },
        { { "tinybms_gw_x", "h", (enum monitoring_kind)7, NULL }, false },
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const char *why = monitoring__family_problem(&cases[i].f);
        if ((why == NULL) != cases[i].ok)
            fprintf(stderr, "case %zu (%s): %s\n", i, cases[i].f.name ? cases[i].f.name : "(null)",
                    why ? why : "accepted");
        CHECK((why == NULL) == cases[i].ok);
    }
    CHECK(monitoring__valid_label_name("pack"));
    CHECK(!monitoring__valid_label_name("__name__"));
    CHECK(!monitoring__valid_label_name("a:b"));
    CHECK(!monitoring__valid_label_name("9a"));
    CHECK(!monitoring__valid_label_name(""));
}

static void test_prometheus_rules_and_escaping(void)
{
    struct monitoring_snapshot *s = fixed_snapshot();
    size_t rejected = 0;
    char *text = render(s, &rejected);
    CHECK_EQ_INT(check_exposition(text), 0);
    CHECK_EQ_INT(rejected, 4); /* _ms gauge, counter without _total, two duplicate series */
    /* one family, both packs, in the order given */
    const char *a = strstr(text, "# HELP tinybms_gw_uart_frames_total Frames answered.\n"
                                 "# TYPE tinybms_gw_uart_frames_total counter\n"
                                 "tinybms_gw_uart_frames_total{pack=\"0\"} 1200\n"
                                 "tinybms_gw_uart_frames_total{pack=\"1\"} 1190\n");
    CHECK(a != NULL);
    CHECK(strstr(text, "tinybms_gw_uart_poll_cycle_seconds{pack=\"0\"} 0.0136\n") != NULL);
    CHECK(strstr(text, "tinybms_gw_uart_poll_cycle_seconds{pack=\"1\"} NaN\n") != NULL);
    /* escaping: HELP (backslash, newline), label values (backslash, quote, newline) */
    CHECK(strstr(text, "# HELP tinybms_gw_event_bus_handler_seconds_total Time in a subscriber's handler.\\n"
                       "Second \\\\ line.\n") != NULL);
    CHECK(strstr(text, "tinybms_gw_event_bus_handler_seconds_total{subscriber=\"mqtt \\\"gw\\\"\\\\x\\nnext\","
                       "event=\"battery_update\"} 0.25\n") != NULL);
    CHECK(strstr(text, "battery_update\"} 0.5\n") == NULL);
    CHECK(strstr(text, "tinybms_gw_event_bus_queue_depth 3\n") != NULL);
    CHECK(strstr(text, "+Inf") == NULL);
    CHECK(strstr(text, "cycle_ms") == NULL);
    CHECK(strstr(text, "ttyUSB0") == NULL); /* texts are for JSON only */
    CHECK(strstr(text, "tinybms_gw_uart_errors") == NULL);
    /* process figures in base units */
    CHECK(strstr(text, "process_resident_memory_bytes 8388608\n") != NULL);
    CHECK(strstr(text, "process_cpu_seconds_total 12.5\n") != NULL);
    CHECK(strstr(text, "tinybms_gw_thread_cpu_seconds_total{thread=\"bms-poll-0\"} 2.5\n") != NULL);
    CHECK(strstr(text, "tinybms_gw_data_dir_free_bytes 5368709120\n") != NULL);
    free(text);
    free_snapshot(s);
}

static void test_prometheus_golden(void)
{
    struct monitoring_snapshot *s = fixed_snapshot();
    char *text = render(s, NULL);
    /* the version changes with releases: the golden holds a placeholder */
    char vers[64];
    snprintf(vers, sizeof vers, "version=\"%s\"", GW_VERSION);
    char *v = strstr(text, vers);
    CHECK(v != NULL);
    char *norm = malloc(strlen(text) + 64);
    if (v) {
        snprintf(norm, strlen(text) + 64, "%.*sversion=\"X\"%s", (int)(v - text), text, v + strlen(vers));
    } else {
        strcpy(norm, text);
    }
    char path[512];
    snprintf(path, sizeof path, "%s/tests/unit/test_monitoring_golden.prom",
             getenv("GW_SOURCE_DIR") ? getenv("GW_SOURCE_DIR") : ".");
    if (getenv("GW_REGENERATE_GOLDEN")) {
        FILE *f = fopen(path, "wb");
        CHECK(f != NULL);
        if (f) {
            fputs(norm, f);
            fclose(f);
        }
    }
    char *golden = read_file(path);
    CHECK(golden != NULL);
    if (golden && strcmp(golden, norm) != 0) {
        fprintf(stderr, "golden mismatch (%s); got:\n%s\n", path, norm);
        CHECK(0);
    }
    free(golden);
    free(norm);
    free(text);
    free_snapshot(s);
}

static void test_json_shape(void)
{
    struct monitoring_snapshot *s = fixed_snapshot();
    char *json = monitoring__render_json(s);
    CHECK(json != NULL);
    cJSON *root = cJSON_Parse(json);
    CHECK(root != NULL);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(root, "version")), GW_VERSION);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(root, "sample_period_ms")), 5000, 0);
    cJSON *p = cJSON_GetObjectItem(root, "process");
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "cpu_percent")), 0.35, 1e-9);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "rss_bytes")), 8u << 20, 0);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "rss_peak_bytes")), 9u << 20, 0);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "open_fds")), 17, 0);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "uptime_s")), 3600, 0);
    cJSON *sy = cJSON_GetObjectItem(root, "system");
    CHECK_EQ_INT(cJSON_GetArraySize(cJSON_GetObjectItem(sy, "load")), 3);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(sy, "data_dir_free_bytes")), 5368709120.0, 0);
    cJSON *th = cJSON_GetObjectItem(root, "threads");
    CHECK_EQ_INT(cJSON_GetArraySize(th), 2);
    cJSON *t1 = cJSON_GetArrayItem(th, 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(t1, "name")), "bms-poll-0");
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(t1, "cpu_percent")), 0.15, 1e-9);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(t1, "count")), 1, 0);
    cJSON *mon = cJSON_GetObjectItem(root, "monitoring");
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(mon, "collect_us_per_s")), 8.0, 1e-6);
    cJSON *mods = cJSON_GetObjectItem(root, "modules");
    CHECK_EQ_INT(cJSON_GetArraySize(mods), 2); /* uart (two sources) and event_bus */
    cJSON *uart = cJSON_GetObjectItem(mods, "uart");
    cJSON *frames = cJSON_GetObjectItem(uart, "frames");
    CHECK(cJSON_IsArray(frames));
    CHECK_EQ_INT(cJSON_GetArraySize(frames), 2);
    cJSON *f1 = cJSON_GetArrayItem(frames, 1);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(f1, "pack")), "1");
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(f1, "value")), 1190, 0);
    cJSON *cyc = cJSON_GetArrayItem(cJSON_GetObjectItem(uart, "poll_cycle_seconds"), 1);
    CHECK(cJSON_IsNull(cJSON_GetObjectItem(cyc, "value"))); /* NaN is null in JSON */
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(uart, "device")), "/dev/ttyUSB0 \"x\"");
    cJSON *bus = cJSON_GetObjectItem(mods, "event_bus");
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(bus, "depth")), 3, 0); /* json_key, first one */
    cJSON *h = cJSON_GetArrayItem(cJSON_GetObjectItem(bus, "handler_seconds"), 0);
    CHECK_STR(cJSON_GetStringValue(cJSON_GetObjectItem(h, "event")), "battery_update");
    cJSON_Delete(root);
    free(json);
    free_snapshot(s);
}

static void test_json_key(void)
{
    char k[64];
    monitoring__json_key(&F_FRAMES, "uart", k, sizeof k);
    CHECK_STR(k, "frames");
    monitoring__json_key(&F_FRAMES, "can", k, sizeof k);
    CHECK_STR(k, "uart_frames");
    monitoring__json_key(&F_DEPTH, "event_bus", k, sizeof k);
    CHECK_STR(k, "depth");
    static const struct monitoring_family other = { "process_open_fds", "h", MONITORING_GAUGE, NULL };
    monitoring__json_key(&other, "x", k, sizeof k);
    CHECK_STR(k, "process_open_fds");
}

static void test_proc_parsers(void)
{
    uint64_t a = 0, b = 0;
    CHECK_EQ_INT(monitoring__parse_statm("5113 2179 1646 5 0 376 0\n", &a, &b), GW_OK);
    CHECK_EQ_INT(a, 5113);
    CHECK_EQ_INT(b, 2179);
    CHECK_EQ_INT(monitoring__parse_statm("5113", &a, &b), GW_ERR_PROTO);
    CHECK_EQ_INT(monitoring__parse_statm("", &a, &b), GW_ERR_PROTO);
    CHECK_EQ_INT(monitoring__parse_statm(NULL, &a, &b), GW_ERR_PROTO);

    const char *stat = "4242 (tiny (gw) x) S 1 4242 4242 0 -1 4194560 1146 0 0 0 3 1 0 0 20 0 9 0 "
                       "987654 220000000 2179 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 1 0 0 0 0 0\n";
    uint64_t ticks = 0;
    CHECK_EQ_INT(monitoring__parse_stat_starttime(stat, &ticks), GW_OK);
    CHECK_EQ_INT(ticks, 987654);
    /* truncated at every length: never a crash, never a wrong value */
    size_t n = strlen(stat);
    for (size_t cut = 0; cut < n; cut++) {
        char buf[512];
        memcpy(buf, stat, cut);
        buf[cut] = '\0';
        uint64_t t = 0;
        int rc = monitoring__parse_stat_starttime(buf, &t);
        CHECK(rc == GW_ERR_PROTO || (rc == GW_OK && (t == 987654 || t < 987654)));
        /* a cut inside the number yields a prefix of it; before it, an error */
        const char *num = strstr(stat, " 987654 ");
        if ((size_t)(num - stat) + 1 >= cut)
            CHECK_EQ_INT(rc, GW_ERR_PROTO);
    }
    CHECK_EQ_INT(monitoring__parse_stat_starttime("no parenthesis", &ticks), GW_ERR_PROTO);
}

static void test_thread_table(void)
{
    static struct monitoring_thread_table tt;
    memset(&tt, 0, sizeof tt);
    monitoring__threads_begin(&tt);
    monitoring__threads_add(&tt, 100, "tinybms-gw", 1.0);
    monitoring__threads_add(&tt, 101, "bms-poll-0", 0.5);
    monitoring__threads_add(&tt, 102, "bms-poll-0", 0.25);
    monitoring__threads_end(&tt, 0);
    CHECK_EQ_INT(tt.name_count, 2);
    CHECK_STR(tt.names[1].name, "bms-poll-0");
    CHECK_EQ_INT(tt.names[1].count, 2);
    CHECK_NEAR(tt.names[1].cpu_seconds, 0.75, 1e-12);
    CHECK_NEAR(tt.names[1].cpu_ratio, 0, 0);

    /* 10 s later: 102 exited, 100 renamed itself, a new thread with an old name */
    monitoring__threads_begin(&tt);
    monitoring__threads_add(&tt, 100, "main", 2.0);
    monitoring__threads_add(&tt, 101, "bms-poll-0", 1.5);
    monitoring__threads_add(&tt, 103, "bms-poll-0", 0.1);
    monitoring__threads_end(&tt, 10);
    CHECK_EQ_INT(tt.name_count, 3);
    CHECK_NEAR(tt.names[0].cpu_seconds, 1.0, 1e-12); /* tinybms-gw keeps what 100 used under it */
    CHECK_EQ_INT(tt.names[0].count, 0);
    CHECK_NEAR(tt.names[2].cpu_seconds, 1.0, 1e-12); /* main: 2.0 - 1.0 since the rename */
    /* bms-poll-0: 101 at 1.5, 102 gone at 0.25, 103 new at 0.1 */
    CHECK_NEAR(tt.names[1].cpu_seconds, 1.85, 1e-12);
    CHECK_EQ_INT(tt.names[1].count, 2);
    CHECK_NEAR(tt.names[1].cpu_ratio, (1.85 - 0.75) / 10, 1e-12);
    /* a reading that goes backwards (never should) does not make the counter go back */
    monitoring__threads_begin(&tt);
    monitoring__threads_add(&tt, 101, "bms-poll-0", 1.0);
    monitoring__threads_end(&tt, 5);
    CHECK(tt.names[1].cpu_seconds >= 1.85 - 1e-12);
    CHECK(tt.names[1].cpu_ratio >= 0);
}

/* ------------------------------------------------------------------ the service */

static const struct monitoring_family F_CALLS = { "tinybms_gw_test_calls_total", "Source calls.",
                                                  MONITORING_COUNTER, NULL };
static atomic_int source_calls;

static void test_source(struct monitoring_sink *sink, void *ctx)
{
    int n = atomic_fetch_add(&source_calls, 1) + 1;
    monitoring_put(sink, &F_CALLS, n);
    monitoring_put_pack(sink, &F_FRAMES, *(unsigned *)ctx, n * 10);
}

static void greedy_source(struct monitoring_sink *sink, void *ctx)
{
    (void)ctx;
    for (unsigned i = 0; i < 100; i++)
        monitoring_put_pack(sink, &F_FRAMES, i, i);
}

static atomic_bool worker_stop, worker_named;
static void *named_worker(void *arg)
{
    (void)arg;
    pthread_setname_np(pthread_self(), "test-worker");
    atomic_store(&worker_named, true);
    volatile double x = 0;
    while (!atomic_load(&worker_stop))
        for (int i = 0; i < 10000; i++)
            x += i;
    (void)x;
    return NULL;
}

static void test_service_bad_input(void)
{
    struct monitoring *m = (struct monitoring *)0x1;
    struct monitoring_options o = { .period_ms = 999 };
    CHECK_EQ_INT(monitoring_create(&o, &m), GW_ERR_RANGE);
    CHECK(m == NULL);
    o.period_ms = 3600001;
    CHECK_EQ_INT(monitoring_create(&o, &m), GW_ERR_RANGE);
    CHECK_EQ_INT(monitoring_create(NULL, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_create(NULL, &m), GW_OK);
    CHECK_EQ_INT(monitoring_add_source(m, "Bad-Name", test_source, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_add_source(m, "", test_source, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_add_source(m, "a_very_long_module_name_x", test_source, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_add_source(m, "ok", NULL, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_add_source(NULL, "ok", test_source, NULL), GW_ERR_INVAL);
    for (int i = 0; i < MONITORING_MAX_SOURCES; i++)
        CHECK_EQ_INT(monitoring_add_source(m, "greedy", greedy_source, NULL), GW_OK);
    CHECK_EQ_INT(monitoring_add_source(m, "greedy", greedy_source, NULL), GW_ERR_FULL);
    /* 32 x 100 values into 1024: the rest is dropped and counted, nothing breaks */
    CHECK_EQ_INT(monitoring_refresh(m, 1000), GW_OK);
    char *json = NULL;
    CHECK_EQ_INT(monitoring_get_system_metrics_json_alloc(m, &json), GW_OK);
    cJSON *root = cJSON_Parse(json);
    CHECK_NEAR(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "monitoring"), "dropped")),
               32 * 100 - 1024, 0);
    cJSON_Delete(root);
    free(json);
    char *text = NULL;
    size_t len = 0;
    CHECK_EQ_INT(monitoring_render_prometheus_alloc(m, &text, &len), GW_OK);
    CHECK_EQ_INT(strlen(text), len);
    CHECK_EQ_INT(check_exposition(text), 0); /* 32 sources put the same series: rendered once */
    free(text);
    /* buffers too small: an error and an empty string, never a cut document */
    char small[64];
    CHECK_EQ_INT(monitoring_render_prometheus(m, small, sizeof small, &len), GW_ERR_OVERFLOW);
    CHECK_STR(small, "");
    CHECK_EQ_INT(len, 0);
    CHECK_EQ_INT(monitoring_get_system_metrics_json(m, small, sizeof small, &len), GW_ERR_OVERFLOW);
    CHECK_STR(small, "");
    CHECK_EQ_INT(monitoring_render_prometheus(m, NULL, 10, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_render_prometheus_alloc(NULL, &text, NULL), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_write_prometheus_file(m, ""), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_write_prometheus_file(m, "/nonexistent-dir/x/metrics.prom") != GW_OK, 1);
    /* sink misuse */
    struct monitoring_snapshot snap = { .cap = 1, .samples = calloc(1, sizeof(struct monitoring_sample)) };
    struct monitoring_sink sink = { .snap = &snap };
    struct monitoring_label four[4] = { { "a", "1" }, { "b", "2" }, { "c", "3" }, { "d", "4" } };
    CHECK_EQ_INT(monitoring_put_labels(&sink, &F_CALLS, four, 4, 1), GW_ERR_INVAL);
    struct monitoring_label nul[1] = { { "a", NULL } };
    CHECK_EQ_INT(monitoring_put_labels(&sink, &F_CALLS, nul, 1, 1), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_put_labels(&sink, &F_CALLS, NULL, 1, 1), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_put(NULL, &F_CALLS, 1), GW_ERR_INVAL);
    CHECK_EQ_INT(monitoring_put(&sink, NULL, 1), GW_ERR_INVAL);
    struct monitoring_label longv[1] = { { "a", "0123456789012345678901234567890123456789" } };
    CHECK_EQ_INT(monitoring_put_labels(&sink, &F_CALLS, longv, 1, 1), GW_OK);
    CHECK_EQ_INT(strlen(snap.samples[0].label_values[0]), MONITORING_LABEL_VALUE_MAX - 1);
    CHECK_EQ_INT(monitoring_put(&sink, &F_CALLS, 1), GW_ERR_FULL);
    CHECK_EQ_INT(sink.dropped, 1);
    free(snap.samples);
    monitoring_destroy(m);
    monitoring_destroy(NULL);
}

static void test_service_collects(void)
{
    char dir[] = "/tmp/test-monitoring-XXXXXX";
    CHECK(mkdtemp(dir) != NULL);
    struct monitoring_options o = { .data_dir = dir, .period_ms = 3600000 };
    struct monitoring *m = NULL;
    CHECK_EQ_INT(monitoring_create(&o, &m), GW_OK);
    static unsigned pack3 = 3;
    atomic_store(&source_calls, 0);
    CHECK_EQ_INT(monitoring_add_source(m, "test", test_source, &pack3), GW_OK);
    CHECK_EQ_INT(monitoring_start(m), GW_OK);
    CHECK_EQ_INT(monitoring_start(m), GW_ERR_STATE);
    atomic_store(&worker_stop, false);
    pthread_t worker;
    CHECK_EQ_INT(pthread_create(&worker, NULL, named_worker, NULL), 0);
    while (!atomic_load(&worker_named))
        sched_yield(); /* its name is set before the collections below read it */
    /* the period is an hour: only refreshes collect (the first collection at start, then ours) */
    CHECK_EQ_INT(monitoring_refresh(m, 10000), GW_OK);
    CHECK_EQ_INT(monitoring_refresh(m, 10000), GW_OK);
    int calls = atomic_load(&source_calls);
    CHECK(calls >= 2 && calls <= 3);
    char *json = NULL;
    CHECK_EQ_INT(monitoring_get_system_metrics_json_alloc(m, &json), GW_OK);
    cJSON *root = cJSON_Parse(json);
    cJSON *p = cJSON_GetObjectItem(root, "process");
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "rss_bytes")) > 1e5);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "rss_peak_bytes")) >=
          cJSON_GetNumberValue(cJSON_GetObjectItem(p, "rss_bytes")) * 0.5);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "open_fds")) >= 3);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "threads")) >= 3); /* main, sampler, worker */
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(p, "start_time_s")) > 1.5e9);
    CHECK(cJSON_GetNumberValue(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "system"), "data_dir_free_bytes")) > 0);
    bool have_worker = false, have_sampler = false;
    cJSON *t;
    cJSON_ArrayForEach(t, cJSON_GetObjectItem(root, "threads"))
    {
        const char *name = cJSON_GetStringValue(cJSON_GetObjectItem(t, "name"));
        if (name && strcmp(name, "test-worker") == 0)
            have_worker = cJSON_GetNumberValue(cJSON_GetObjectItem(t, "count")) == 1;
        if (name && strcmp(name, "monitoring") == 0)
            have_sampler = true;
    }
    CHECK(have_worker);
    CHECK(have_sampler);
    cJSON *calls_v = cJSON_GetObjectItem(cJSON_GetObjectItem(cJSON_GetObjectItem(root, "modules"), "test"), "calls");
    CHECK_NEAR(cJSON_GetNumberValue(calls_v), calls, 0);
    cJSON_Delete(root);
    free(json);

    /* the worker burns CPU: its counter moves between two collections */
    char *t1 = NULL, *t2 = NULL;
    CHECK_EQ_INT(monitoring_render_prometheus_alloc(m, &t1, NULL), GW_OK);
    CHECK_EQ_INT(check_exposition(t1), 0);
    const char *key = "tinybms_gw_thread_cpu_seconds_total{thread=\"test-worker\"} ";
    const char *w1 = strstr(t1, key);
    CHECK(w1 != NULL);
    struct timespec ts0;
    clock_gettime(CLOCK_MONOTONIC, &ts0);
    double before = w1 ? strtod(w1 + strlen(key), NULL) : 0, after = before;
    /* wait for a condition, not a time: the counter moves once the worker has run */
    for (int i = 0; i < 2000 && after <= before; i++) {
        CHECK_EQ_INT(monitoring_refresh(m, 10000), GW_OK);
        free(t2);
        t2 = NULL;
        CHECK_EQ_INT(monitoring_render_prometheus_alloc(m, &t2, NULL), GW_OK);
        const char *w2 = strstr(t2, key);
        after = w2 ? strtod(w2 + strlen(key), NULL) : 0;
    }
    CHECK(after > before);
    CHECK(strstr(t2, "tinybms_gw_uart_frames_total{pack=\"3\"}") != NULL);
    free(t1);
    free(t2);

    /* the dump file */
    char path[512];
    snprintf(path, sizeof path, "%s/metrics.prom", dir);
    CHECK_EQ_INT(monitoring_write_prometheus_file(m, path), GW_OK);
    char *file = read_file(path);
    CHECK(file != NULL && strstr(file, "# TYPE process_cpu_seconds_total counter\n") != NULL);
    CHECK_EQ_INT(file ? check_exposition(file) : 1, 0);
    free(file);
    monitoring_log_task_stats(m);

    struct monitoring_cost cost;
    monitoring_get_cost(m, &cost);
    CHECK(cost.collections >= 3);
    CHECK(cost.last_us > 0);

    atomic_store(&worker_stop, true);
    pthread_join(worker, NULL);
    monitoring_stop(m);
    monitoring_stop(m);
    /* stopped: a refresh collects on the caller, and the exited worker's CPU stays counted */
    int before_calls = atomic_load(&source_calls);
    CHECK_EQ_INT(monitoring_refresh(m, 1000), GW_OK);
    CHECK_EQ_INT(atomic_load(&source_calls), before_calls + 1);
    char *t3 = NULL;
    CHECK_EQ_INT(monitoring_render_prometheus_alloc(m, &t3, NULL), GW_OK);
    const char *w3 = strstr(t3, key);
    CHECK(w3 != NULL && strtod(w3 + strlen(key), NULL) >= after);
    CHECK(strstr(t3, "tinybms_gw_thread_count{thread=\"test-worker\"} 0\n") != NULL);
    free(t3);
    monitoring_destroy(m);
    unlink(path);
    rmdir(dir);
}

TEST_MAIN(TEST_CASE(test_text_builder_bounds), TEST_CASE(test_family_rules),
          TEST_CASE(test_prometheus_rules_and_escaping), TEST_CASE(test_prometheus_golden), TEST_CASE(test_json_shape),
          TEST_CASE(test_json_key), TEST_CASE(test_proc_parsers), TEST_CASE(test_thread_table),
          TEST_CASE(test_service_bad_input), TEST_CASE(test_service_collects))
