/* Pure parts of monitoring: the text builder, the name rules, the Prometheus and JSON
 * renderers of a snapshot, the /proc parsers and the per-thread-name CPU table. No OS calls. */
#include "monitoring_internal.h"

#include "gw_error.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ text builder */

void monitoring__text_init(struct monitoring_text *t, char *buf, size_t cap)
{
    t->buf = buf;
    t->cap = buf ? cap : 0;
    t->len = 0;
    t->truncated = false;
    if (t->cap)
        t->buf[0] = '\0';
}

void monitoring__text_add(struct monitoring_text *t, const char *s, size_t n)
{
    if (t->len + n < t->cap) {
        memcpy(t->buf + t->len, s, n);
        t->buf[t->len + n] = '\0';
    } else {
        if (t->cap && t->len < t->cap)
            t->buf[t->len] = '\0'; /* keep only whole pieces */
        t->truncated = true;
    }
    t->len += n;
}

void monitoring__text_printf(struct monitoring_text *t, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        monitoring__text_add(t, tmp, (size_t)n);
        return;
    }
    char *big = malloc((size_t)n + 1);
    if (!big) {
        t->truncated = true;
        t->len += (size_t)n;
        return;
    }
    va_start(ap, fmt);
    vsnprintf(big, (size_t)n + 1, fmt, ap);
    va_end(ap);
    monitoring__text_add(t, big, (size_t)n);
    free(big);
}

/* ------------------------------------------------------------------ name rules */

static bool name_char(char c, bool first, bool colon)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_')
        return true;
    if (colon && c == ':')
        return true;
    return !first && c >= '0' && c <= '9';
}

bool monitoring__valid_metric_name(const char *name)
{
    if (!name || !name[0])
        return false;
    for (size_t i = 0; name[i]; i++)
        if (!name_char(name[i], i == 0, true))
            return false;
    return true;
}

bool monitoring__valid_label_name(const char *name)
{
    if (!name || !name[0] || (name[0] == '_' && name[1] == '_'))
        return false; /* "__" is reserved for Prometheus itself */
    for (size_t i = 0; name[i]; i++)
        if (!name_char(name[i], i == 0, false))
            return false;
    return true;
}

static bool ends_with(const char *s, const char *suffix)
{
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && memcmp(s + a - b, suffix, b) == 0;
}

static bool contains_word(const char *name, const char *word)
{
    /* word as a whole "_word_" or "_word" at the end */
    size_t n = strlen(word);
    for (const char *p = strstr(name, word); p; p = strstr(p + 1, word)) {
        bool left = p > name && p[-1] == '_';
        bool right = p[n] == '\0' || p[n] == '_';
        if (left && right)
            return true;
    }
    return false;
}

const char *monitoring__family_problem(const struct monitoring_family *f)
{
    if (!f || !f->name)
        return "no name";
    if (!monitoring__valid_metric_name(f->name))
        return "name is not [a-zA-Z_:][a-zA-Z0-9_:]*";
    if (!f->help || !f->help[0])
        return "no help text";
    if (f->kind != MONITORING_GAUGE && f->kind != MONITORING_COUNTER)
        return "unknown kind";
    bool total = ends_with(f->name, "_total");
    if (f->kind == MONITORING_COUNTER && !total)
        return "a counter's name must end in _total";
    if (f->kind == MONITORING_GAUGE && total)
        return "only counters end in _total";
    static const char *const not_base[] = { "ms", "us", "ns", "millis", "milliseconds", "microseconds",
                                            "kb", "kib", "mb", "mib", "percent", "pct", "mv", "ma" };
    for (size_t i = 0; i < sizeof not_base / sizeof not_base[0]; i++)
        if (contains_word(f->name, not_base[i]))
            return "not a base unit (seconds, bytes, volts, amperes, ratio)";
    return NULL;
}

/* ------------------------------------------------------------------ Prometheus text */

static void add_str(struct monitoring_text *t, const char *s) { monitoring__text_add(t, s, strlen(s)); }

/* HELP: backslash and newline escaped. Label values: backslash, double quote and newline. */
static void add_escaped(struct monitoring_text *t, const char *s, bool quote)
{
    const char *run = s;
    for (; *s; s++) {
        const char *esc = NULL;
        if (*s == '\\')
            esc = "\\\\";
        else if (*s == '\n')
            esc = "\\n";
        else if (quote && *s == '"')
            esc = "\\\"";
        if (esc) {
            monitoring__text_add(t, run, (size_t)(s - run));
            add_str(t, esc);
            run = s + 1;
        }
    }
    monitoring__text_add(t, run, (size_t)(s - run));
}

static void add_value(struct monitoring_text *t, double v)
{
    if (isnan(v))
        add_str(t, "NaN");
    else if (isinf(v))
        add_str(t, v > 0 ? "+Inf" : "-Inf");
    else if (v == floor(v) && fabs(v) < 9.007199254740992e15)
        monitoring__text_printf(t, "%.0f", v);
    else
        monitoring__text_printf(t, "%.9g", v);
}

static bool same_family(const struct monitoring_family *a, const struct monitoring_family *b)
{
    return a == b || (a->name && b->name && strcmp(a->name, b->name) == 0);
}

static bool same_labels(const struct monitoring_sample *a, const struct monitoring_sample *b)
{
    if (a->nlabels != b->nlabels)
        return false;
    for (unsigned i = 0; i < a->nlabels; i++) {
        bool found = false;
        for (unsigned k = 0; k < b->nlabels && !found; k++)
            found = strcmp(a->label_names[i], b->label_names[k]) == 0 &&
                    strcmp(a->label_values[i], b->label_values[k]) == 0;
        if (!found)
            return false;
    }
    return true;
}

static void add_series(struct monitoring_text *t, const char *name, const char *const *lnames,
                       const char (*lvalues)[MONITORING_LABEL_VALUE_MAX], unsigned n, double v)
{
    add_str(t, name);
    if (n) {
        add_str(t, "{");
        for (unsigned i = 0; i < n; i++) {
            if (i)
                add_str(t, ",");
            add_str(t, lnames[i]);
            add_str(t, "=\"");
            add_escaped(t, lvalues[i], true);
            add_str(t, "\"");
        }
        add_str(t, "}");
    }
    add_str(t, " ");
    add_value(t, v);
    add_str(t, "\n");
}

static void add_header(struct monitoring_text *t, const char *name, const char *help, enum monitoring_kind kind)
{
    add_str(t, "# HELP ");
    add_str(t, name);
    add_str(t, " ");
    add_escaped(t, help, false);
    add_str(t, "\n# TYPE ");
    add_str(t, name);
    add_str(t, kind == MONITORING_COUNTER ? " counter\n" : " gauge\n");
}

static void add_simple(struct monitoring_text *t, const char *name, const char *help, enum monitoring_kind kind,
                       double v)
{
    add_header(t, name, help, kind);
    add_series(t, name, NULL, NULL, 0, v);
}

static void render_system(const struct monitoring_snapshot *snap, struct monitoring_text *t)
{
    const struct monitoring_system *s = &snap->sys;
    const enum monitoring_kind G = MONITORING_GAUGE, C = MONITORING_COUNTER;
    add_header(t, "tinybms_gw_build_info", "Version of the running gateway (always 1).", G);
    {
        static const char *const ln[] = { "version" };
        static const char lv[1][MONITORING_LABEL_VALUE_MAX] = { GW_VERSION };
        add_series(t, "tinybms_gw_build_info", ln, lv, 1, 1);
    }
    add_simple(t, "process_cpu_seconds_total", "User and system CPU time of the gateway process.", C, s->cpu_seconds);
    add_simple(t, "tinybms_gw_process_cpu_usage_ratio",
               "CPU use of the process over the last sampling interval, fraction of one core.", G, s->cpu_ratio);
    add_simple(t, "process_resident_memory_bytes", "Resident memory (RSS) of the process.", G,
               (double)s->rss_bytes);
    add_simple(t, "tinybms_gw_process_resident_memory_peak_bytes", "Highest resident memory since start.", G,
               (double)s->rss_peak_bytes);
    add_simple(t, "process_virtual_memory_bytes", "Virtual memory size of the process.", G, (double)s->vm_bytes);
    add_simple(t, "process_open_fds", "Open file descriptors.", G, s->open_fds);
    add_simple(t, "process_max_fds", "Limit of open file descriptors (RLIMIT_NOFILE).", G, (double)s->max_fds);
    add_simple(t, "process_start_time_seconds", "Start time of the process, seconds since the Unix epoch.", G,
               s->start_time_s);
    add_simple(t, "tinybms_gw_uptime_seconds", "Time since the gateway started.", G, s->uptime_s);
    add_simple(t, "tinybms_gw_process_threads", "Threads of the process.", G, s->thread_total);

    add_header(t, "tinybms_gw_thread_cpu_seconds_total",
               "CPU time of the threads with this name (exited ones included).", C);
    static const char *const tl[] = { "thread" };
    for (size_t i = 0; i < s->thread_count; i++) {
        char v[1][MONITORING_LABEL_VALUE_MAX];
        snprintf(v[0], sizeof v[0], "%s", s->threads[i].name);
        add_series(t, "tinybms_gw_thread_cpu_seconds_total", tl, (const char(*)[MONITORING_LABEL_VALUE_MAX])v, 1,
                   s->threads[i].cpu_seconds);
    }
    add_header(t, "tinybms_gw_thread_cpu_usage_ratio",
               "CPU use of the threads with this name over the last interval, fraction of one core.", G);
    for (size_t i = 0; i < s->thread_count; i++) {
        char v[1][MONITORING_LABEL_VALUE_MAX];
        snprintf(v[0], sizeof v[0], "%s", s->threads[i].name);
        add_series(t, "tinybms_gw_thread_cpu_usage_ratio", tl, (const char(*)[MONITORING_LABEL_VALUE_MAX])v, 1,
                   s->threads[i].cpu_ratio);
    }
    add_header(t, "tinybms_gw_thread_count", "Threads alive with this name.", G);
    for (size_t i = 0; i < s->thread_count; i++) {
        char v[1][MONITORING_LABEL_VALUE_MAX];
        snprintf(v[0], sizeof v[0], "%s", s->threads[i].name);
        add_series(t, "tinybms_gw_thread_count", tl, (const char(*)[MONITORING_LABEL_VALUE_MAX])v, 1,
                   s->threads[i].count);
    }

    add_simple(t, "tinybms_gw_system_load1", "System load average over 1 minute.", G, s->load[0]);
    add_simple(t, "tinybms_gw_system_load5", "System load average over 5 minutes.", G, s->load[1]);
    add_simple(t, "tinybms_gw_system_load15", "System load average over 15 minutes.", G, s->load[2]);
    add_simple(t, "tinybms_gw_system_uptime_seconds", "Time since the machine booted.", G, s->system_uptime_s);
    add_simple(t, "tinybms_gw_system_memory_total_bytes", "Memory of the machine.", G, (double)s->mem_total_bytes);
    add_simple(t, "tinybms_gw_system_memory_free_bytes", "Memory of the machine not used at all.", G,
               (double)s->mem_free_bytes);
    if (s->disk_known) {
        add_simple(t, "tinybms_gw_data_dir_free_bytes",
                   "Space the gateway may still use on the data directory's file system.", G,
                   (double)s->disk_free_bytes);
        add_simple(t, "tinybms_gw_data_dir_size_bytes", "Size of the data directory's file system.", G,
                   (double)s->disk_total_bytes);
    }
    add_simple(t, "tinybms_gw_monitoring_collections_total", "Collections made by the monitoring sampler.", C,
               (double)s->collections);
    add_simple(t, "tinybms_gw_monitoring_collect_seconds_total", "Time spent collecting the metrics.", C,
               s->collect_total_s);
    add_simple(t, "tinybms_gw_monitoring_collect_last_seconds", "Duration of the last collection.", G,
               s->collect_last_s);
    add_header(t, "tinybms_gw_monitoring_source_last_seconds",
               "Time the last collection spent in each module's figures (system: process and machine).", G);
    {
        static const char *const ml[] = { "module" };
        char v[1][MONITORING_LABEL_VALUE_MAX] = { "system" };
        add_series(t, "tinybms_gw_monitoring_source_last_seconds", ml, (const char(*)[MONITORING_LABEL_VALUE_MAX])v,
                   1, snap->system_s);
        /* one series per module name (several sources of one module are summed) */
        for (size_t i = 0; i < snap->module_count; i++) {
            bool first = true;
            for (size_t k = 0; k < i && first; k++)
                first = strcmp(snap->modules[k], snap->modules[i]) != 0;
            if (!first)
                continue;
            double sum = 0;
            for (size_t k = i; k < snap->module_count; k++)
                if (strcmp(snap->modules[k], snap->modules[i]) == 0)
                    sum += snap->source_s[k];
            snprintf(v[0], sizeof v[0], "%s", snap->modules[i]);
            add_series(t, "tinybms_gw_monitoring_source_last_seconds", ml,
                       (const char(*)[MONITORING_LABEL_VALUE_MAX])v, 1, sum);
        }
    }
    add_simple(t, "tinybms_gw_monitoring_sample_period_seconds", "Period of the monitoring sampler.", G,
               snap->period_ms / 1000.0);
    add_simple(t, "tinybms_gw_monitoring_dropped_total", "Values dropped because the snapshot was full.", C,
               (double)s->samples_dropped);
    add_simple(t, "tinybms_gw_monitoring_rejected_total",
               "Values left out because their metric name breaks the naming rules (see the log).", C,
               (double)s->rejected);
}

size_t monitoring__render_prometheus(const struct monitoring_snapshot *snap, struct monitoring_text *t)
{
    size_t rejected = 0;
    render_system(snap, t);
    if (snap->count == 0)
        return 0;
    /* fam[i]: index of the first sample of sample i's family (by address, else by name), so each
     * family is written once, whole, where it first appeared */
    size_t *fam = malloc(snap->count * sizeof *fam);
    size_t *heads = malloc(snap->count * sizeof *heads);
    if (!fam || !heads) {
        free(fam);
        free(heads);
        t->truncated = true;
        return 0;
    }
    size_t nheads = 0;
    for (size_t i = 0; i < snap->count; i++) {
        const struct monitoring_family *f = snap->samples[i].family;
        size_t h = SIZE_MAX;
        for (size_t k = 0; k < nheads && h == SIZE_MAX; k++)
            if (snap->samples[heads[k]].family == f)
                h = heads[k];
        for (size_t k = 0; k < nheads && h == SIZE_MAX; k++)
            if (same_family(snap->samples[heads[k]].family, f))
                h = heads[k];
        if (h == SIZE_MAX) {
            h = i;
            heads[nheads++] = i;
        }
        fam[i] = h;
    }
    for (size_t hi = 0; hi < nheads; hi++) {
        size_t i = heads[hi];
        const struct monitoring_family *f = snap->samples[i].family;
        if (monitoring__family_problem(f)) {
            rejected++;
            continue;
        }
        add_header(t, f->name, f->help, f->kind);
        for (size_t k = i; k < snap->count; k++) {
            const struct monitoring_sample *s = &snap->samples[k];
            if (fam[k] != i)
                continue;
            bool bad = s->family->kind != f->kind;
            for (size_t j = i; j < k && !bad; j++)
                bad = fam[j] == i && same_labels(&snap->samples[j], s);
            for (unsigned l = 0; l < s->nlabels && !bad; l++)
                bad = !monitoring__valid_label_name(s->label_names[l]);
            if (bad) {
                rejected++; /* a duplicate series, a kind clash or a bad label name */
                continue;
            }
            add_series(t, f->name, s->label_names, (const char(*)[MONITORING_LABEL_VALUE_MAX])s->label_values,
                       s->nlabels, s->value);
        }
    }
    free(fam);
    free(heads);
    return rejected;
}

/* ------------------------------------------------------------------ JSON */

void monitoring__json_key(const struct monitoring_family *f, const char *module, char *out, size_t cap)
{
    if (f->json_key) {
        snprintf(out, cap, "%s", f->json_key);
        return;
    }
    const char *n = f->name ? f->name : "";
    if (strncmp(n, "tinybms_gw_", 11) == 0)
        n += 11;
    size_t ml = strlen(module);
    if (ml && strncmp(n, module, ml) == 0 && n[ml] == '_')
        n += ml + 1;
    size_t len = strlen(n);
    if (len > 6 && strcmp(n + len - 6, "_total") == 0)
        len -= 6;
    snprintf(out, cap, "%.*s", (int)len, n);
}

static cJSON *json_number(double v)
{
    return isfinite(v) ? cJSON_CreateNumber(v) : cJSON_CreateNull();
}

static void add_num(cJSON *o, const char *key, double v) { cJSON_AddItemToObject(o, key, json_number(v)); }

char *monitoring__render_json(const struct monitoring_snapshot *snap)
{
    const struct monitoring_system *s = &snap->sys;
    cJSON *root = cJSON_CreateObject();
    if (!root)
        return NULL;
    cJSON_AddStringToObject(root, "version", GW_VERSION);
    add_num(root, "timestamp_ms", (double)s->wall_ms);
    add_num(root, "sample_period_ms", snap->period_ms);

    cJSON *p = cJSON_AddObjectToObject(root, "process");
    add_num(p, "cpu_percent", s->cpu_ratio * 100.0);
    add_num(p, "cpu_seconds", s->cpu_seconds);
    add_num(p, "rss_bytes", (double)s->rss_bytes);
    add_num(p, "rss_peak_bytes", (double)s->rss_peak_bytes);
    add_num(p, "virtual_bytes", (double)s->vm_bytes);
    add_num(p, "open_fds", s->open_fds);
    add_num(p, "max_fds", (double)s->max_fds);
    add_num(p, "threads", s->thread_total);
    add_num(p, "uptime_s", s->uptime_s);
    add_num(p, "start_time_s", s->start_time_s);

    cJSON *sy = cJSON_AddObjectToObject(root, "system");
    cJSON *load = cJSON_AddArrayToObject(sy, "load");
    for (int i = 0; i < 3; i++)
        cJSON_AddItemToArray(load, json_number(s->load[i]));
    add_num(sy, "uptime_s", s->system_uptime_s);
    add_num(sy, "memory_total_bytes", (double)s->mem_total_bytes);
    add_num(sy, "memory_free_bytes", (double)s->mem_free_bytes);
    if (s->disk_known) {
        add_num(sy, "data_dir_free_bytes", (double)s->disk_free_bytes);
        add_num(sy, "data_dir_size_bytes", (double)s->disk_total_bytes);
    } else {
        cJSON_AddNullToObject(sy, "data_dir_free_bytes");
        cJSON_AddNullToObject(sy, "data_dir_size_bytes");
    }

    cJSON *th = cJSON_AddArrayToObject(root, "threads");
    for (size_t i = 0; i < s->thread_count; i++) {
        cJSON *o = cJSON_CreateObject();
        cJSON_AddStringToObject(o, "name", s->threads[i].name);
        add_num(o, "count", s->threads[i].count);
        add_num(o, "cpu_percent", s->threads[i].cpu_ratio * 100.0);
        add_num(o, "cpu_seconds", s->threads[i].cpu_seconds);
        cJSON_AddItemToArray(th, o);
    }

    cJSON *mon = cJSON_AddObjectToObject(root, "monitoring");
    add_num(mon, "collections", (double)s->collections);
    add_num(mon, "collect_last_us", s->collect_last_s * 1e6);
    add_num(mon, "collect_us_per_s", s->uptime_s > 0 ? s->collect_total_s * 1e6 / s->uptime_s : 0);
    add_num(mon, "values", (double)snap->count);
    add_num(mon, "dropped", (double)s->samples_dropped);
    add_num(mon, "rejected", (double)s->rejected);

    cJSON *mods = cJSON_AddObjectToObject(root, "modules");
    for (size_t m = 0; m < snap->module_count; m++) {
        if (cJSON_GetObjectItemCaseSensitive(mods, snap->modules[m]))
            continue;
        cJSON *mo = cJSON_AddObjectToObject(mods, snap->modules[m]);
        /* every sample of every source registered under this module name */
        for (size_t i = 0; i < snap->count; i++) {
            const struct monitoring_sample *x = &snap->samples[i];
            if (strcmp(snap->modules[x->module], snap->modules[m]) != 0)
                continue;
            char key[64];
            monitoring__json_key(x->family, snap->modules[m], key, sizeof key);
            cJSON *cur = cJSON_GetObjectItemCaseSensitive(mo, key);
            if (x->nlabels == 0) {
                if (!cur)
                    cJSON_AddItemToObject(mo, key, json_number(x->value));
                continue;
            }
            if (!cur)
                cur = cJSON_AddArrayToObject(mo, key);
            if (!cJSON_IsArray(cur))
                continue;
            cJSON *row = cJSON_CreateObject();
            for (unsigned l = 0; l < x->nlabels; l++)
                cJSON_AddStringToObject(row, x->label_names[l], x->label_values[l]);
            cJSON_AddItemToObject(row, "value", json_number(x->value));
            cJSON_AddItemToArray(cur, row);
        }
        for (size_t i = 0; i < snap->text_count; i++) {
            const struct monitoring_text_value *x = &snap->texts[i];
            if (strcmp(snap->modules[x->module], snap->modules[m]) == 0 &&
                !cJSON_GetObjectItemCaseSensitive(mo, x->key))
                cJSON_AddStringToObject(mo, x->key, x->value);
        }
    }
    char *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return out;
}

/* ------------------------------------------------------------------ /proc parsers */

int monitoring__parse_statm(const char *text, uint64_t *size_pages, uint64_t *resident_pages)
{
    unsigned long long a, b;
    if (!text || sscanf(text, "%llu %llu", &a, &b) != 2)
        return GW_ERR_PROTO;
    *size_pages = a;
    *resident_pages = b;
    return GW_OK;
}

int monitoring__parse_stat_starttime(const char *text, uint64_t *ticks)
{
    /* "pid (comm) state ppid ...": comm may hold spaces and parentheses, so fields are counted
     * after the last ')'. starttime is field 22 overall, the 20th after the comm. */
    const char *p = text ? strrchr(text, ')') : NULL;
    if (!p)
        return GW_ERR_PROTO;
    p++;
    for (int field = 3; field <= 22; field++) {
        while (*p == ' ')
            p++;
        if (!*p)
            return GW_ERR_PROTO;
        if (field == 22) {
            char *end;
            unsigned long long v = strtoull(p, &end, 10);
            if (end == p)
                return GW_ERR_PROTO;
            *ticks = v;
            return GW_OK;
        }
        while (*p && *p != ' ')
            p++;
    }
    return GW_ERR_PROTO;
}

/* ------------------------------------------------------------------ thread table */

void monitoring__threads_begin(struct monitoring_thread_table *tt)
{
    for (size_t i = 0; i < tt->tid_count; i++)
        tt->tids[i].seen = false;
}

/* base_s: CPU the thread had when it took its current name (kept in the tid's cpu via the
 * exited counter of its former name, see threads_add). */
static size_t name_slot(struct monitoring_thread_table *tt, const char *name)
{
    for (size_t i = 0; i < tt->name_count; i++)
        if (strcmp(tt->names[i].name, name) == 0)
            return i;
    if (tt->name_count < MONITORING_MAX_THREADS) {
        size_t i = tt->name_count++;
        memset(&tt->names[i], 0, sizeof tt->names[i]);
        snprintf(tt->names[i].name, sizeof tt->names[i].name, "%s", name);
        tt->exited_s[i] = 0;
        tt->prev_total_s[i] = 0;
        return i;
    }
    return MONITORING_MAX_THREADS - 1; /* table full: the last name takes the rest */
}

void monitoring__threads_add(struct monitoring_thread_table *tt, int tid, const char *name, double cpu_s)
{
    struct monitoring_tid *t = NULL;
    for (size_t i = 0; i < tt->tid_count && !t; i++)
        if (tt->tids[i].tid == tid)
            t = &tt->tids[i];
    if (!t) {
        if (tt->tid_count >= sizeof tt->tids / sizeof tt->tids[0])
            return;
        t = &tt->tids[tt->tid_count++];
        memset(t, 0, sizeof *t);
        t->tid = tid;
        snprintf(t->name, sizeof t->name, "%s", name);
        /* a thread seen for the first time counts from 0 under its name */
    } else if (strcmp(t->name, name) != 0) {
        /* renamed: what it used so far stays with the old name; the new one counts from here */
        size_t old = name_slot(tt, t->name);
        tt->exited_s[old] += t->cpu_s;
        size_t neu = name_slot(tt, name);
        tt->exited_s[neu] -= t->cpu_s;
        snprintf(t->name, sizeof t->name, "%s", name);
    }
    if (cpu_s < t->cpu_s)
        cpu_s = t->cpu_s; /* never backwards */
    t->cpu_s = cpu_s;
    t->seen = true;
    name_slot(tt, t->name);
}

void monitoring__threads_end(struct monitoring_thread_table *tt, double interval_s)
{
    /* threads gone: their CPU stays with their name */
    size_t w = 0;
    for (size_t i = 0; i < tt->tid_count; i++) {
        if (tt->tids[i].seen) {
            tt->tids[w++] = tt->tids[i];
            continue;
        }
        tt->exited_s[name_slot(tt, tt->tids[i].name)] += tt->tids[i].cpu_s;
    }
    tt->tid_count = w;
    for (size_t n = 0; n < tt->name_count; n++) {
        tt->names[n].count = 0;
        tt->names[n].cpu_seconds = tt->exited_s[n];
    }
    for (size_t i = 0; i < tt->tid_count; i++) {
        size_t n = name_slot(tt, tt->tids[i].name);
        tt->names[n].count++;
        tt->names[n].cpu_seconds += tt->tids[i].cpu_s;
    }
    for (size_t n = 0; n < tt->name_count; n++) {
        double d = tt->names[n].cpu_seconds - tt->prev_total_s[n];
        if (d < 0)
            d = 0;
        tt->names[n].cpu_ratio = interval_s > 0 ? d / interval_s : 0;
        tt->prev_total_s[n] = tt->names[n].cpu_seconds;
    }
}
