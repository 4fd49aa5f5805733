#define _POSIX_C_SOURCE 200809L
#include "gw_log.h"

#include "gw_clock.h"

#include <stdbool.h>

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>

static atomic_int current_level = GW_LOG_INFO;
static pthread_mutex_t limit_lock = PTHREAD_MUTEX_INITIALIZER; /* every struct gw_log_limit */

void gw_log_set_level(enum gw_log_level level) { atomic_store(&current_level, (int)level); }
enum gw_log_level gw_log_get_level(void) { return (enum gw_log_level)atomic_load(&current_level); }

static const char *level_name(enum gw_log_level level)
{
    switch (level) {
    case GW_LOG_ERROR: return "ERROR";
    case GW_LOG_WARN: return "WARN ";
    case GW_LOG_INFO: return "INFO ";
    default: return "DEBUG";
    }
}

/* syslog priorities (sd-daemon(3) "<N>" prefixes), so `journalctl -p warning` filters. */
static int level_priority(enum gw_log_level level)
{
    switch (level) {
    case GW_LOG_ERROR: return 3;
    case GW_LOG_WARN: return 4;
    case GW_LOG_INFO: return 6;
    default: return 7;
    }
}

/* True when stderr is the journal's stream (systemd sets JOURNAL_STREAM to its device:inode):
 * the journal then stamps each line itself and reads the priority prefix. Decided once. */
static bool stderr_is_journal(void)
{
    static atomic_int decided; /* 0 unknown, 1 no, 2 yes */
    int d = atomic_load(&decided);
    if (d)
        return d == 2;
    bool yes = false;
    const char *env = getenv("JOURNAL_STREAM");
    struct stat st;
    unsigned long long dev, ino;
    if (env && sscanf(env, "%llu:%llu", &dev, &ino) == 2 && fstat(2, &st) == 0)
        yes = (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
    atomic_store(&decided, yes ? 2 : 1);
    return yes;
}

static void vlog(enum gw_log_level level, const char *module, const char *suffix, const char *fmt,
                 va_list ap) __attribute__((format(printf, 4, 0)));
static void vlog(enum gw_log_level level, const char *module, const char *suffix, const char *fmt,
                 va_list ap)
{
    char msg[1024];
    vsnprintf(msg, sizeof msg, fmt, ap);
    /* One fprintf per line: stdio locks the stream, so lines from threads never interleave. */
    if (stderr_is_journal()) {
        fprintf(stderr, "<%d>%s %s: %s%s\n", level_priority(level), level_name(level), module, msg,
                suffix ? suffix : "");
        return;
    }
    /* Local time with its offset, the time zone of every line the gateway prints. */
    int64_t wall = gw_wall_ms();
    time_t secs = (time_t)(wall / 1000);
    struct tm tm;
    localtime_r(&secs, &tm);
    char stamp[32], zone[8];
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    strftime(zone, sizeof zone, "%z", &tm);
    fprintf(stderr, "%s.%03d%s %s %s: %s%s\n", stamp, (int)(wall % 1000), zone, level_name(level), module,
            msg, suffix ? suffix : "");
}

void gw_log(enum gw_log_level level, const char *module, const char *fmt, ...)
{
    if ((int)level > atomic_load(&current_level))
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(level, module, NULL, fmt, ap);
    va_end(ap);
}

void gw_log_ratelimited(struct gw_log_limit *limit, uint32_t interval_ms, enum gw_log_level level,
                        const char *module, const char *fmt, ...)
{
    if ((int)level > atomic_load(&current_level))
        return;
    uint64_t now = gw_now_ms();
    /* One lock for every site: a site shared by threads (a static limit in a function that
     * several threads call) must neither lose counts nor log twice in a window. */
    pthread_mutex_lock(&limit_lock);
    if (limit->window_start_ms != 0 && now - limit->window_start_ms < interval_ms) {
        limit->suppressed++;
        pthread_mutex_unlock(&limit_lock);
        return;
    }
    uint32_t suppressed = limit->suppressed;
    limit->window_start_ms = now ? now : 1;
    limit->suppressed = 0;
    pthread_mutex_unlock(&limit_lock);
    char suffix[64] = "";
    if (suppressed)
        snprintf(suffix, sizeof suffix, " (%u similar suppressed)", suppressed);
    va_list ap;
    va_start(ap, fmt);
    vlog(level, module, suffix, fmt, ap);
    va_end(ap);
}
