/* monitoring: the sampler thread, the process/system readings and the public API.
 *
 * Cost: descriptors of /proc/self/statm, /proc/self/fd, /proc/self/task and the data directory
 * stay open and are re-read in place; thread CPU comes from each thread's CPU clock
 * (clock_gettime, no /proc read). What changes slowly (the thread list, open descriptors and
 * their limit, the peak RSS, the free space) is read on a "full" collection only: every
 * FULL_EVERY-th, and every one asked for by monitoring_refresh; in between, the known threads
 * are read by id (an exited one fails its clock). Thread names are read when a thread appears,
 * on the next full collections until read NAME_READS times (a thread may name itself late), and
 * all again every NAME_REFRESH collections. */
#define _GNU_SOURCE
#include "monitoring.h"
#include "monitoring_internal.h"

#include "atomic_file.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/statvfs.h>
#include <sys/sysinfo.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_PERIOD_MS 5000
#define DEFAULT_MAX_SAMPLES 1024
#define FULL_EVERY 6            /* a full collection every 6 (30 s at the default period) */
#define NAME_READS 3
#define NAME_REFRESH 60         /* collections between two reads of every thread's name */

struct source {
    monitoring_source_fn fn;
    void *ctx;
    char module[MONITORING_MODULE_MAX];
};

#define CHECKED_SLOTS 512      /* families whose name was checked (open addressing on the address) */

struct monitoring {
    uint32_t period_ms;
    char data_dir[4096];

    pthread_mutex_t lock;           /* sources, snapshots (front), flags, counters */
    pthread_cond_t cond;
    pthread_t thread;
    bool running, stop, refresh_req;
    uint64_t gen_started, gen_done;
    struct source sources[MONITORING_MAX_SOURCES];
    size_t source_count;
    struct monitoring_snapshot *front;  /* newest complete snapshot, read under lock */
    struct monitoring_snapshot *back;   /* being built by the collector */

    /* collector state: only the thread holding collect_lock touches it */
    pthread_mutex_t collect_lock;
    struct monitoring_thread_table threads;
    uint64_t start_ms;              /* gw_now_ms() at create */
    double start_time_s;
    double last_real_s;             /* CLOCK_MONOTONIC of the previous collection */
    double last_cpu_s;
    double collect_total_s;
    uint64_t collections;
    uint64_t dropped_total;
    uint64_t rejected_total;
    bool rejected_logged;
    bool full_req;                  /* the next collection is a full one (refresh) */
    /* what a full collection read, carried over the others */
    uint32_t open_fds;
    uint64_t max_fds, rusage_peak;
    bool disk_known;
    uint64_t disk_free, disk_total;
    struct {
        const struct monitoring_family *family;
        bool bad;
    } checked[CHECKED_SLOTS];
    int statm_fd;
    DIR *fd_dir;
    DIR *task_dir;
    int data_fd;
    long page_size;
};

/* ------------------------------------------------------------------ sink */

static int put(struct monitoring_sink *sink, const struct monitoring_family *family,
               const struct monitoring_label *labels, size_t n, double value)
{
    if (!sink || !family || n > MONITORING_MAX_LABELS || (n && !labels))
        return GW_ERR_INVAL;
    for (size_t i = 0; i < n; i++)
        if (!labels[i].name || !labels[i].value)
            return GW_ERR_INVAL;
    struct monitoring_snapshot *s = sink->snap;
    if (s->count >= s->cap) {
        sink->dropped++;
        return GW_ERR_FULL;
    }
    struct monitoring_sample *x = &s->samples[s->count++];
    x->family = family;
    x->module = sink->module;
    x->nlabels = (uint8_t)n;
    x->value = value;
    for (size_t i = 0; i < n; i++) {
        x->label_names[i] = labels[i].name;
        size_t len = strnlen(labels[i].value, MONITORING_LABEL_VALUE_MAX - 1);
        memcpy(x->label_values[i], labels[i].value, len);
        x->label_values[i][len] = '\0';
    }
    return GW_OK;
}

int monitoring_put(struct monitoring_sink *sink, const struct monitoring_family *family, double value)
{
    return put(sink, family, NULL, 0, value);
}

int monitoring_put_labels(struct monitoring_sink *sink, const struct monitoring_family *family,
                          const struct monitoring_label *labels, size_t n, double value)
{
    return put(sink, family, labels, n, value);
}

int monitoring_put_pack(struct monitoring_sink *sink, const struct monitoring_family *family, unsigned pack,
                        double value)
{
    char v[12], *p = v + sizeof v - 1;
    *p = '\0';
    do {
        *--p = (char)('0' + pack % 10);
        pack /= 10;
    } while (pack && p > v);
    struct monitoring_label l = { "pack", p };
    return put(sink, family, &l, 1, value);
}

int monitoring_put_text(struct monitoring_sink *sink, const char *key, const char *text)
{
    if (!sink || !key || !text || !key[0] || strlen(key) >= MONITORING_TEXT_KEY)
        return GW_ERR_INVAL;
    for (const char *k = key; *k; k++)
        if (!((*k >= 'a' && *k <= 'z') || (*k >= '0' && *k <= '9') || *k == '_'))
            return GW_ERR_INVAL;
    struct monitoring_snapshot *s = sink->snap;
    if (s->text_count >= MONITORING_MAX_TEXTS) {
        sink->dropped++;
        return GW_ERR_FULL;
    }
    struct monitoring_text_value *t = &s->texts[s->text_count++];
    t->module = sink->module;
    snprintf(t->key, sizeof t->key, "%s", key);
    snprintf(t->value, sizeof t->value, "%s", text);
    return GW_OK;
}

/* ------------------------------------------------------------------ readings */

static double ts_s(const struct timespec *ts) { return (double)ts->tv_sec + (double)ts->tv_nsec / 1e9; }

static double clock_s(clockid_t id)
{
    struct timespec ts;
    if (clock_gettime(id, &ts) != 0)
        return -1;
    return ts_s(&ts);
}

/* The CPU clock of thread tid of this process (what pthread_getcpuclockid builds from a tid:
 * ~tid << 3 | CPUCLOCK_PERTHREAD_MASK | CPUCLOCK_SCHED). Computed unsigned: shifting a negative
 * value is undefined. */
static clockid_t thread_clock(int tid)
{
    unsigned v = ((~(unsigned)tid) << 3) | 6u;
    clockid_t id;
    memcpy(&id, &v, sizeof id);
    return id;
}

static ssize_t pread_text(int fd, char *buf, size_t cap)
{
    ssize_t n = pread(fd, buf, cap - 1, 0);
    if (n < 0)
        return -1;
    buf[n] = '\0';
    return n;
}

static void read_thread_name(int task_fd, int tid, char *out, size_t cap)
{
    char path[32];
    snprintf(path, sizeof path, "%d/comm", tid);
    int fd = openat(task_fd, path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return;
    char buf[MONITORING_THREAD_NAME_MAX + 2];
    ssize_t n = pread_text(fd, buf, sizeof buf);
    close(fd);
    if (n <= 0)
        return;
    size_t len = strcspn(buf, "\n");
    if (len >= cap)
        len = cap - 1;
    memcpy(out, buf, len);
    out[len] = '\0';
}

static struct monitoring_tid *find_tid(struct monitoring_thread_table *tt, int tid)
{
    for (size_t i = 0; i < tt->tid_count; i++)
        if (tt->tids[i].tid == tid)
            return &tt->tids[i];
    return NULL;
}

/* One thread of the reading: its CPU clock, its name when due. Returns false when it is gone. */
static bool read_thread(struct monitoring *m, int tid, bool full)
{
    struct monitoring_thread_table *tt = &m->threads;
    double cpu = clock_s(thread_clock(tid));
    if (cpu < 0)
        return false; /* exited */
    struct monitoring_tid *known = find_tid(tt, tid);
    char name[MONITORING_THREAD_NAME_MAX] = "";
    bool reread = !known || (full && known->name_reads < NAME_READS) || m->collections % NAME_REFRESH == 0;
    if (known)
        memcpy(name, known->name, sizeof name);
    if (reread && m->task_dir)
        read_thread_name(dirfd(m->task_dir), tid, name, sizeof name);
    if (!name[0])
        memcpy(name, "unknown", sizeof "unknown");
    monitoring__threads_add(tt, tid, name, cpu);
    if (reread && (known = find_tid(tt, tid)) != NULL)
        known->name_reads++;
    return true;
}

static void read_threads(struct monitoring *m, struct monitoring_system *sys, double interval_s, bool full)
{
    struct monitoring_thread_table *tt = &m->threads;
    monitoring__threads_begin(tt);
    uint32_t total = 0;
    if (full && m->task_dir) {
        rewinddir(m->task_dir);
        struct dirent *de;
        while ((de = readdir(m->task_dir)) != NULL)
            if (de->d_name[0] >= '0' && de->d_name[0] <= '9')
                total += read_thread(m, atoi(de->d_name), true);
    } else {
        int tids[sizeof tt->tids / sizeof tt->tids[0]];
        size_t n = tt->tid_count;
        for (size_t i = 0; i < n; i++)
            tids[i] = tt->tids[i].tid;
        for (size_t i = 0; i < n; i++)
            total += read_thread(m, tids[i], false);
    }
    monitoring__threads_end(tt, interval_s);
    sys->thread_total = total;
    sys->thread_count = tt->name_count;
    memcpy(sys->threads, tt->names, tt->name_count * sizeof tt->names[0]);
}

static uint32_t count_fds(DIR *d)
{
    if (!d)
        return 0;
    rewinddir(d);
    uint32_t n = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL)
        if (de->d_name[0] != '.')
            n++;
    return n;
}

static void read_system(struct monitoring *m, struct monitoring_system *s, double interval_s, bool full)
{
    s->cpu_seconds = clock_s(CLOCK_PROCESS_CPUTIME_ID);
    s->cpu_ratio = interval_s > 0 ? (s->cpu_seconds - m->last_cpu_s) / interval_s : 0;
    if (s->cpu_ratio < 0)
        s->cpu_ratio = 0;
    m->last_cpu_s = s->cpu_seconds;

    char buf[128];
    uint64_t size_pages, rss_pages;
    if (m->statm_fd >= 0 && pread_text(m->statm_fd, buf, sizeof buf) > 0 &&
        monitoring__parse_statm(buf, &size_pages, &rss_pages) == GW_OK) {
        s->vm_bytes = size_pages * (uint64_t)m->page_size;
        s->rss_bytes = rss_pages * (uint64_t)m->page_size;
    }
    struct sysinfo si;
    if (sysinfo(&si) == 0) {
        for (int i = 0; i < 3; i++)
            s->load[i] = (double)si.loads[i] / (double)(1u << SI_LOAD_SHIFT);
        s->system_uptime_s = (double)si.uptime;
        s->mem_total_bytes = (uint64_t)si.totalram * si.mem_unit;
        s->mem_free_bytes = (uint64_t)si.freeram * si.mem_unit;
    }
    if (full) {
        struct rusage ru;
        if (getrusage(RUSAGE_SELF, &ru) == 0)
            m->rusage_peak = (uint64_t)ru.ru_maxrss * 1024u;
        m->open_fds = count_fds(m->fd_dir);
        struct rlimit rl;
        if (getrlimit(RLIMIT_NOFILE, &rl) == 0)
            m->max_fds = rl.rlim_cur == RLIM_INFINITY ? 0 : (uint64_t)rl.rlim_cur;
        if (m->data_fd < 0 && m->data_dir[0])
            m->data_fd = open(m->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        struct statvfs vfs;
        m->disk_known = m->data_fd >= 0 && fstatvfs(m->data_fd, &vfs) == 0;
        if (m->disk_known) {
            m->disk_free = (uint64_t)vfs.f_bavail * vfs.f_frsize;
            m->disk_total = (uint64_t)vfs.f_blocks * vfs.f_frsize;
        }
    }
    /* the kernel's high-water mark moves lazily; ours follows every reading */
    if (m->rusage_peak < s->rss_bytes)
        m->rusage_peak = s->rss_bytes;
    s->rss_peak_bytes = m->rusage_peak;
    s->open_fds = m->open_fds;
    s->max_fds = m->max_fds;
    s->disk_known = m->disk_known;
    s->disk_free_bytes = m->disk_free;
    s->disk_total_bytes = m->disk_total;
    s->start_time_s = m->start_time_s;
}

/* One collection into m->back, then the swap. Called with collect_lock held. */
static void collect(struct monitoring *m, bool full)
{
    full = full || m->collections % FULL_EVERY == 0;
    double cpu0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
    double real = clock_s(CLOCK_MONOTONIC);
    double interval = m->last_real_s > 0 ? real - m->last_real_s : 0;
    m->last_real_s = real;

    struct source sources[MONITORING_MAX_SOURCES];
    pthread_mutex_lock(&m->lock);
    size_t nsrc = m->source_count;
    memcpy(sources, m->sources, nsrc * sizeof sources[0]);
    pthread_mutex_unlock(&m->lock);

    struct monitoring_snapshot *s = m->back;
    memset(&s->sys, 0, sizeof s->sys);
    s->count = 0;
    s->text_count = 0;
    s->period_ms = m->period_ms;
    s->module_count = nsrc;
    for (size_t i = 0; i < nsrc; i++)
        memcpy(s->modules[i], sources[i].module, sizeof s->modules[i]);

    struct monitoring_system *sys = &s->sys;
    sys->wall_ms = gw_wall_ms();
    sys->mono_ms = gw_now_ms();
    sys->interval_s = interval;
    sys->uptime_s = (double)(sys->mono_ms - m->start_ms) / 1000.0;
    read_system(m, sys, interval, full);
    read_threads(m, sys, interval, full);
    double t = clock_s(CLOCK_MONOTONIC);
    s->system_s = t - real;

    for (size_t i = 0; i < nsrc; i++) {
        struct monitoring_sink sink = { .snap = s, .module = (uint8_t)i };
        sources[i].fn(&sink, sources[i].ctx);
        m->dropped_total += sink.dropped;
        double t2 = clock_s(CLOCK_MONOTONIC);
        s->source_s[i] = t2 - t;
        t = t2;
    }
    /* bad families are found once per collection here, so the log says it and the renderers
     * stay pure */
    size_t rejected = 0;
    for (size_t i = 0; i < s->count; i++) {
        const struct monitoring_family *f = s->samples[i].family;
        size_t h = ((uintptr_t)f >> 4) % CHECKED_SLOTS, probes = 0;
        while (m->checked[h].family && m->checked[h].family != f && probes++ < CHECKED_SLOTS)
            h = (h + 1) % CHECKED_SLOTS;
        const char *why = NULL;
        if (m->checked[h].family == f) {
            if (!m->checked[h].bad)
                continue;
            why = "see above";
        } else {
            why = monitoring__family_problem(f);
            if (!m->checked[h].family) { /* a full table only means checking again */
                m->checked[h].family = f;
                m->checked[h].bad = why != NULL;
            }
            if (!why)
                continue;
        }
        rejected++;
        if (!m->rejected_logged) {
            m->rejected_logged = true;
            GW_LOGW(MOD, "metric '%s' of module %s left out: %s",
                    s->samples[i].family->name ? s->samples[i].family->name : "(null)",
                    s->modules[s->samples[i].module], why);
        }
    }
    m->rejected_total += rejected;

    m->collections++;
    double cost = clock_s(CLOCK_THREAD_CPUTIME_ID) - cpu0;
    if (cost < 0)
        cost = 0;
    m->collect_total_s += cost;
    sys->collections = m->collections;
    sys->collect_last_s = cost;
    sys->collect_total_s = m->collect_total_s;
    sys->samples_dropped = m->dropped_total;
    sys->rejected = m->rejected_total;

    pthread_mutex_lock(&m->lock);
    m->back = m->front;
    m->front = s;
    pthread_mutex_unlock(&m->lock);
}

void monitoring__collect(struct monitoring *m, bool full)
{
    pthread_mutex_lock(&m->collect_lock);
    collect(m, full);
    pthread_mutex_unlock(&m->collect_lock);
}

/* ------------------------------------------------------------------ sampler thread */

static void *sampler_main(void *arg)
{
    struct monitoring *m = arg;
    pthread_setname_np(pthread_self(), "monitoring");
    pthread_mutex_lock(&m->lock);
    uint64_t next = 0; /* collect at once */
    while (!m->stop) {
        uint64_t now = gw_now_ms();
        if (m->refresh_req || now >= next) {
            bool full = m->refresh_req;
            m->refresh_req = false;
            uint64_t gen = ++m->gen_started;
            pthread_mutex_unlock(&m->lock);
            pthread_mutex_lock(&m->collect_lock);
            collect(m, full);
            pthread_mutex_unlock(&m->collect_lock);
            pthread_mutex_lock(&m->lock);
            m->gen_done = gen;
            pthread_cond_broadcast(&m->cond);
            next = gw_now_ms() + m->period_ms;
            continue;
        }
        gw_clock_wait(&m->cond, &m->lock, next);
    }
    pthread_mutex_unlock(&m->lock);
    return NULL;
}

/* ------------------------------------------------------------------ life cycle */

static double process_start_time(void)
{
    /* starttime (clock ticks since boot) against CLOCK_BOOTTIME, then to wall time */
    int fd = open("/proc/self/stat", O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    char buf[1024];
    ssize_t n = pread_text(fd, buf, sizeof buf);
    close(fd);
    uint64_t ticks;
    long hz = sysconf(_SC_CLK_TCK);
    if (n <= 0 || hz <= 0 || monitoring__parse_stat_starttime(buf, &ticks) != GW_OK)
        return 0;
    double boot_now = clock_s(CLOCK_BOOTTIME);
    double wall_now = clock_s(CLOCK_REALTIME);
    return wall_now - (boot_now - (double)ticks / (double)hz);
}

static struct monitoring_snapshot *snapshot_new(size_t cap)
{
    struct monitoring_snapshot *s = calloc(1, sizeof *s);
    if (!s)
        return NULL;
    s->samples = calloc(cap, sizeof *s->samples);
    if (!s->samples) {
        free(s);
        return NULL;
    }
    s->cap = cap;
    return s;
}

static void snapshot_free(struct monitoring_snapshot *s)
{
    if (s)
        free(s->samples);
    free(s);
}

int monitoring_create(const struct monitoring_options *opts, struct monitoring **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    uint32_t period = opts && opts->period_ms ? opts->period_ms : DEFAULT_PERIOD_MS;
    if (period < 1000 || period > 3600000) {
        GW_LOGE(MOD, "sampling period %u ms out of range 1000..3600000", period);
        return GW_ERR_RANGE;
    }
    size_t cap = opts && opts->max_samples ? opts->max_samples : DEFAULT_MAX_SAMPLES;
    struct monitoring *m = calloc(1, sizeof *m);
    if (!m)
        return GW_ERR_NOMEM;
    m->statm_fd = -1;
    m->data_fd = -1;
    m->period_ms = period;
    if (opts && opts->data_dir)
        snprintf(m->data_dir, sizeof m->data_dir, "%s", opts->data_dir);
    pthread_mutex_init(&m->lock, NULL);
    pthread_mutex_init(&m->collect_lock, NULL);
    if (gw_clock_cond_init(&m->cond) != GW_OK)
        goto err_sync;
    m->front = snapshot_new(cap);
    m->back = snapshot_new(cap);
    if (!m->front || !m->back)
        goto err;
    m->front->period_ms = period;
    m->start_ms = gw_now_ms();
    m->start_time_s = process_start_time();
    m->page_size = sysconf(_SC_PAGESIZE);
    if (m->page_size <= 0)
        m->page_size = 4096;
    m->statm_fd = open("/proc/self/statm", O_RDONLY | O_CLOEXEC);
    m->fd_dir = opendir("/proc/self/fd");
    m->task_dir = opendir("/proc/self/task");
    if (m->statm_fd < 0 || !m->fd_dir || !m->task_dir)
        GW_LOGW(MOD, "no /proc (%s): process figures are reported as 0", strerror(errno));
    if (m->data_dir[0]) {
        m->data_fd = open(m->data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (m->data_fd < 0)
            GW_LOGW(MOD, "cannot open data directory %s: %s: its free space is not reported until it exists",
                    m->data_dir, strerror(errno));
    }
    *out = m;
    return GW_OK;

err:
    snapshot_free(m->front);
    snapshot_free(m->back);
    pthread_cond_destroy(&m->cond);
err_sync:
    pthread_mutex_destroy(&m->collect_lock);
    pthread_mutex_destroy(&m->lock);
    free(m);
    return GW_ERR_NOMEM;
}

static bool valid_module(const char *s)
{
    size_t n = s ? strlen(s) : 0;
    if (n == 0 || n >= MONITORING_MODULE_MAX)
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9') || s[i] == '_'))
            return false;
    return true;
}

int monitoring_add_source(struct monitoring *m, const char *module, monitoring_source_fn fn, void *ctx)
{
    if (!m || !fn || !valid_module(module))
        return GW_ERR_INVAL;
    pthread_mutex_lock(&m->lock);
    int rc = GW_ERR_FULL;
    if (m->source_count < MONITORING_MAX_SOURCES) {
        struct source *s = &m->sources[m->source_count++];
        s->fn = fn;
        s->ctx = ctx;
        snprintf(s->module, sizeof s->module, "%s", module);
        rc = GW_OK;
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

int monitoring_start(struct monitoring *m)
{
    if (!m)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&m->lock);
    if (m->running) {
        pthread_mutex_unlock(&m->lock);
        return GW_ERR_STATE;
    }
    m->stop = false;
    m->running = true;
    pthread_mutex_unlock(&m->lock);
    int err = pthread_create(&m->thread, NULL, sampler_main, m);
    if (err) {
        GW_LOGE(MOD, "cannot start the sampler thread: %s", strerror(err));
        pthread_mutex_lock(&m->lock);
        m->running = false;
        pthread_mutex_unlock(&m->lock);
        return GW_ERR_IO;
    }
    return GW_OK;
}

void monitoring_stop(struct monitoring *m)
{
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    bool running = m->running;
    m->stop = true;
    pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
    if (!running)
        return;
    pthread_join(m->thread, NULL);
    pthread_mutex_lock(&m->lock);
    m->running = false;
    pthread_cond_broadcast(&m->cond); /* refresh waiters */
    pthread_mutex_unlock(&m->lock);
}

void monitoring_destroy(struct monitoring *m)
{
    if (!m)
        return;
    monitoring_stop(m);
    if (m->statm_fd >= 0)
        close(m->statm_fd);
    if (m->data_fd >= 0)
        close(m->data_fd);
    if (m->fd_dir)
        closedir(m->fd_dir);
    if (m->task_dir)
        closedir(m->task_dir);
    snapshot_free(m->front);
    snapshot_free(m->back);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->collect_lock);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

int monitoring_refresh(struct monitoring *m, uint32_t timeout_ms)
{
    if (!m)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&m->lock);
    if (!m->running || m->stop) {
        pthread_mutex_unlock(&m->lock);
        pthread_mutex_lock(&m->collect_lock);
        collect(m, true);
        pthread_mutex_unlock(&m->collect_lock);
        return GW_OK;
    }
    uint64_t want = m->gen_started + 1;
    m->refresh_req = true;
    pthread_cond_broadcast(&m->cond);
    int rc = GW_OK;
    while (m->gen_done < want && m->running && !m->stop) {
        if (gw_clock_wait_real(&m->cond, &m->lock, timeout_ms) == GW_ERR_TIMEOUT) {
            rc = m->gen_done >= want ? GW_OK : GW_ERR_TIMEOUT;
            break;
        }
    }
    pthread_mutex_unlock(&m->lock);
    return rc;
}

/* ------------------------------------------------------------------ rendering */

int monitoring_get_system_metrics_json_alloc(struct monitoring *m, char **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!m)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&m->lock);
    char *json = monitoring__render_json(m->front);
    pthread_mutex_unlock(&m->lock);
    if (!json)
        return GW_ERR_NOMEM;
    *out = json;
    return GW_OK;
}

int monitoring_get_system_metrics_json(struct monitoring *m, char *buf, size_t size, size_t *len)
{
    if (len)
        *len = 0;
    if (!m || !buf || size == 0)
        return GW_ERR_INVAL;
    buf[0] = '\0';
    char *json;
    int rc = monitoring_get_system_metrics_json_alloc(m, &json);
    if (rc)
        return rc;
    size_t n = strlen(json);
    if (n >= size) {
        free(json);
        return GW_ERR_OVERFLOW;
    }
    memcpy(buf, json, n + 1);
    free(json);
    if (len)
        *len = n;
    return GW_OK;
}

int monitoring_render_prometheus(struct monitoring *m, char *buf, size_t size, size_t *len)
{
    if (len)
        *len = 0;
    if (!m || !buf || size == 0)
        return GW_ERR_INVAL;
    struct monitoring_text t;
    monitoring__text_init(&t, buf, size);
    pthread_mutex_lock(&m->lock);
    monitoring__render_prometheus(m->front, &t);
    pthread_mutex_unlock(&m->lock);
    if (t.truncated) {
        buf[0] = '\0';
        return GW_ERR_OVERFLOW;
    }
    if (len)
        *len = t.len;
    return GW_OK;
}

int monitoring_render_prometheus_alloc(struct monitoring *m, char **out, size_t *len)
{
    if (len)
        *len = 0;
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!m)
        return GW_ERR_INVAL;
    size_t cap = 65536; /* the daemon writes ~30 KB: one pass */
    for (int attempt = 0; attempt < 4; attempt++) {
        char *buf = malloc(cap);
        if (!buf)
            return GW_ERR_NOMEM;
        struct monitoring_text t;
        monitoring__text_init(&t, buf, cap);
        pthread_mutex_lock(&m->lock);
        monitoring__render_prometheus(m->front, &t);
        pthread_mutex_unlock(&m->lock);
        if (!t.truncated) {
            *out = buf;
            if (len)
                *len = t.len;
            return GW_OK;
        }
        free(buf);
        cap = t.len + 4096; /* the snapshot may have grown between two passes */
    }
    return GW_ERR_NOMEM;
}

int monitoring_write_prometheus_file(struct monitoring *m, const char *path)
{
    if (!m || !path || !path[0])
        return GW_ERR_INVAL;
    char *text;
    size_t len;
    int rc = monitoring_render_prometheus_alloc(m, &text, &len);
    if (rc)
        return rc;
    rc = atomic_file_write(path, text, len, 0644);
    free(text);
    if (rc)
        GW_LOGW(MOD, "cannot write the metrics to %s: %s", path, gw_strerror(rc));
    return rc;
}

void monitoring_get_cost(struct monitoring *m, struct monitoring_cost *out)
{
    memset(out, 0, sizeof *out);
    if (!m)
        return;
    pthread_mutex_lock(&m->lock);
    const struct monitoring_system *s = &m->front->sys;
    out->collections = s->collections;
    out->last_us = s->collect_last_s * 1e6;
    out->total_us = s->collect_total_s * 1e6;
    out->us_per_second = s->uptime_s > 0 ? out->total_us / s->uptime_s : 0;
    pthread_mutex_unlock(&m->lock);
}

/* ------------------------------------------------------------------ task-stats dump */

static const char *human_bytes(double v, char *buf, size_t cap)
{
    static const char *const unit[] = { "B", "KiB", "MiB", "GiB", "TiB" };
    int u = 0;
    while (v >= 1024 && u < 4) {
        v /= 1024;
        u++;
    }
    snprintf(buf, cap, u ? "%.1f %s" : "%.0f %s", v, unit[u]);
    return buf;
}

void monitoring_log_task_stats(struct monitoring *m)
{
    if (!m)
        return;
    if (monitoring_refresh(m, 2000) != GW_OK)
        GW_LOGW(MOD, "task stats: no fresh collection within 2 s, showing the previous one");
    pthread_mutex_lock(&m->lock);
    const struct monitoring_snapshot *snap = m->front;
    const struct monitoring_system *s = &snap->sys;
    char rss[24], peak[24], disk[24];
    GW_LOGI(MOD, "process: cpu %.2f%% (%.2f s), rss %s (peak %s), fds %u/%llu, threads %u, up %.0f s, "
                 "load %.2f %.2f %.2f, data dir free %s; collection %.0f us (%.1f us per second)",
            s->cpu_ratio * 100, s->cpu_seconds, human_bytes((double)s->rss_bytes, rss, sizeof rss),
            human_bytes((double)s->rss_peak_bytes, peak, sizeof peak), s->open_fds, (unsigned long long)s->max_fds,
            s->thread_total, s->uptime_s, s->load[0], s->load[1], s->load[2],
            s->disk_known ? human_bytes((double)s->disk_free_bytes, disk, sizeof disk) : "unknown",
            s->collect_last_s * 1e6, s->uptime_s > 0 ? s->collect_total_s * 1e6 / s->uptime_s : 0);
    for (size_t i = 0; i < s->thread_count; i++) {
        const struct monitoring_thread *t = &s->threads[i];
        GW_LOGI(MOD, "thread %-15s x%u: cpu %6.2f%%, %.2f s total", t->name, t->count, t->cpu_ratio * 100,
                t->cpu_seconds);
    }
    for (size_t mi = 0; mi < snap->module_count; mi++) {
        bool first_of_name = true;
        for (size_t k = 0; k < mi && first_of_name; k++)
            first_of_name = strcmp(snap->modules[k], snap->modules[mi]) != 0;
        if (!first_of_name)
            continue;
        char line[1024];
        struct monitoring_text t;
        monitoring__text_init(&t, line, sizeof line);
        for (size_t i = 0; i < snap->count; i++) {
            const struct monitoring_sample *x = &snap->samples[i];
            if (strcmp(snap->modules[x->module], snap->modules[mi]) != 0)
                continue;
            char key[64];
            monitoring__json_key(x->family, snap->modules[mi], key, sizeof key);
            monitoring__text_printf(&t, " %s", key);
            for (unsigned l = 0; l < x->nlabels; l++)
                monitoring__text_printf(&t, "%s%s=%s", l ? "," : "{", x->label_names[l], x->label_values[l]);
            monitoring__text_printf(&t, "%s=%.6g", x->nlabels ? "}" : "", x->value);
        }
        for (size_t i = 0; i < snap->text_count; i++)
            if (strcmp(snap->modules[snap->texts[i].module], snap->modules[mi]) == 0)
                monitoring__text_printf(&t, " %s=\"%s\"", snap->texts[i].key, snap->texts[i].value);
        GW_LOGI(MOD, "module %s:%s%s", snap->modules[mi], line, t.truncated ? " ..." : "");
    }
    pthread_mutex_unlock(&m->lock);
}
