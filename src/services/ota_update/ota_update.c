/* The update service: upload sessions (push API over the pull reader), file installs, manual
 * rollback, status, and the health watch of a daemon on trial. */
#define _GNU_SOURCE
#include "ota_update.h"

#include "app_events.h"
#include "bms_data.h"
#include "event_bus.h"
#include "gw_clock.h"
#include "gw_error.h"
#include "gw_log.h"
#include "gw_text.h"
#include "ota_internal.h"

#include <arpa/inet.h>
#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#define PUBLISH_TIMEOUT_MS 200

struct health {
    pthread_t thread;
    bool running, stop;
    int fd;                   /* the launcher's pipe, -1 when not on trial */
    uint32_t packs_seen;
    uint64_t can_first_ms, can_last_ms;
    bool reported;
    char last_missing[160];
};

struct ota_update {
    struct ota_update_options o;
    struct ota_paths paths;
    char keyring[OTA_DIR_MAX];
    char release[128];        /* the release this process runs from ("" = the installed program) */
    char running_version[OTA_VERSION_MAX];
    char notice[256];
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct ota_session *session;
    struct ota_result last;
    bool have_last;
    bool switching;           /* installed or rolled back: this process restarts into it */
    struct health h;
};

struct ota_session {
    struct ota_update *ota;
    unsigned flags;
    pthread_t thread;
    bool thread_started;
    /* hand-over between ota_update_write (producer) and the reader thread (consumer), under ota->mu */
    const uint8_t *chunk;
    size_t chunk_len, chunk_off;
    bool eof, reader_done;
    bool waiting;             /* the reader asked for more data: everything given so far is processed */
    int rc;
    uint64_t bytes_in;
    uint64_t total;           /* the size the uploader announced (0: unknown) */
    const char *phase;        /* "receiving", "verifying", "installing" (under ota->mu) */
    uint64_t t0_ms;
    struct ota_result res;
    struct ota_extract x;
    struct ota_signature sig;
    bool have_sig;
    char *sig_text;
    size_t sig_len;
};

/* dst = a + b, cut to cap (a cut is fine for an event text). */
static void join(char *dst, size_t cap, const char *a, const char *b)
{
    struct gw_text t;
    gw_text_init(&t, dst, cap);
    gw_text_put_str(&t, a);
    gw_text_put_str(&t, b);
}

static void publish_text(struct ota_update *ota, int id, const char *text)
{
    if (!ota->o.bus)
        return;
    struct app_text t;
    memset(&t, 0, sizeof t);
    gw_text_copy(t.text, sizeof t.text, text);
    int rc = event_bus_publish(ota->o.bus, id, &t, sizeof t, PUBLISH_TIMEOUT_MS);
    if (rc != GW_OK) /* the update's state file and its log line stay the record of it */
        GW_LOGW(MOD, "event %s not published: %s", app_event_name(id), gw_strerror(rc));
}

const char *ota_update_rollback_notice(const struct ota_update *ota)
{
    return ota ? ota->notice : "";
}

const char *ota_update_running_version(const struct ota_update *ota)
{
    return ota && ota->running_version[0] ? ota->running_version : GW_VERSION;
}

void ota_update_set_http_port(struct ota_update *ota, uint16_t port)
{
    if (!ota)
        return;
    pthread_mutex_lock(&ota->mu);
    ota->o.http_port = port;
    pthread_cond_broadcast(&ota->cv);
    pthread_mutex_unlock(&ota->mu);
}

uint64_t ota_update_max_bundle_bytes(const struct ota_update *ota)
{
    if (!ota)
        return 0;
    return ota->o.max_bundle_bytes ? ota->o.max_bundle_bytes : OTA_DEFAULT_MAX_BUNDLE;
}

/* ---- health watch (on trial only) --------------------------------------------------------- */

static void on_bms(const struct gw_event *ev, void *ctx)
{
    struct ota_update *ota = ctx;
    const struct bms_live_data *d = EVENT_PAYLOAD(ev, struct bms_live_data);
    if (!d)
        return;
    if (!d->valid || d->battery_id >= 32)
        return;
    pthread_mutex_lock(&ota->mu);
    ota->h.packs_seen |= 1u << d->battery_id;
    pthread_cond_broadcast(&ota->cv);
    pthread_mutex_unlock(&ota->mu);
}

static void on_can(const struct gw_event *ev, void *ctx)
{
    struct ota_update *ota = ctx;
    const struct app_can_tx *c = EVENT_PAYLOAD(ev, struct app_can_tx);
    if (!c)
        return;
    if (!c->frames_ok)
        return;
    pthread_mutex_lock(&ota->mu);
    uint64_t now = gw_now_ms();
    if (!ota->h.can_first_ms)
        ota->h.can_first_ms = now ? now : 1;
    ota->h.can_last_ms = now;
    pthread_cond_broadcast(&ota->cv);
    pthread_mutex_unlock(&ota->mu);
}

/* GET /api/status on the loopback: any HTTP answer below 500 (401 with authentication on) means
 * the web server answers. */
static bool http_probe(uint16_t port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    if (fd < 0)
        return false;
    struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons(port) };
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bool ok = false;
    int r = connect(fd, (struct sockaddr *)&a, sizeof a);
    struct pollfd p = { .fd = fd, .events = POLLOUT };
    if (r != 0 && errno == EINPROGRESS && poll(&p, 1, 1000) == 1) {
        int err = 0;
        socklen_t l = sizeof err;
        getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
        r = err ? -1 : 0;
    }
    if (r == 0) {
        static const char req[] = "GET /api/status HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n";
        if (send(fd, req, sizeof req - 1, MSG_NOSIGNAL) == (ssize_t)(sizeof req - 1)) {
            char buf[16] = "";
            size_t got = 0;
            p.events = POLLIN;
            while (got < 12 && poll(&p, 1, 2000) == 1) {
                ssize_t n = recv(fd, buf + got, 12 - got, 0);
                if (n <= 0)
                    break;
                got += (size_t)n;
            }
            buf[got] = '\0';
            ok = got >= 12 && strncmp(buf, "HTTP/1.", 7) == 0 && buf[9] >= '1' && buf[9] <= '4';
        }
    }
    close(fd);
    return ok;
}

static void notify_launcher(struct ota_update *ota, const char *line)
{
    char buf[200];
    int n = snprintf(buf, sizeof buf, "%s\n", line);
    if (n > 0 && ota->h.fd >= 0 && write(ota->h.fd, buf, (size_t)n) < 0)
        GW_LOGW(MOD, "cannot tell the launcher \"%s\": %s", line, strerror(errno));
}

static void *health_thread(void *arg)
{
    struct ota_update *ota = arg;
    pthread_setname_np(pthread_self(), "ota-health");
    bool http_ok = false;
    pthread_mutex_lock(&ota->mu);
    while (!ota->h.stop) {
        if (ota->o.http_port && !http_ok) {
            pthread_mutex_unlock(&ota->mu);
            http_ok = http_probe(ota->o.http_port);
            pthread_mutex_lock(&ota->mu);
        }
        struct ota_health_input in = {
            .config_loaded = ota->o.config_loaded, .packs_required = ota->o.pack_count,
            .packs_seen = ota->h.packs_seen, .can_required = ota->o.can_enabled,
            .can_first_ms = ota->h.can_first_ms, .can_last_ms = ota->h.can_last_ms,
            .can_ok_ms = (ota->o.health_can_s ? ota->o.health_can_s : OTA_DEFAULT_CAN_S) * 1000u,
            .http_required = ota->o.http_port != 0, .http_ok = http_ok,
        };
        char missing[160];
        if (ota__health_eval(&in, missing, sizeof missing)) {
            ota->h.reported = true;
            pthread_mutex_unlock(&ota->mu);
            GW_LOGI(MOD, "release %s is healthy (configuration, BMS%s%s): confirmed to the launcher",
                    ota->running_version, ota->o.can_enabled ? ", CAN" : "", ota->o.http_port ? ", HTTP" : "");
            notify_launcher(ota, "good");
            char text[160];
            ota__fmt(text, sizeof text, "version %s is running and healthy", ota->running_version);
            publish_text(ota, EVENT_OTA_UPDATE_COMPLETED, text);
            if (ota->o.healthy)
                ota->o.healthy(ota->o.restart_ctx);
            return NULL;
        }
        if (strcmp(missing, ota->h.last_missing) != 0) {
            memcpy(ota->h.last_missing, missing, sizeof missing);
            char line[180];
            ota__fmt(line, sizeof line, "wait %s", missing);
            pthread_mutex_unlock(&ota->mu);
            notify_launcher(ota, line);
            pthread_mutex_lock(&ota->mu);
        }
        gw_clock_wait(&ota->cv, &ota->mu, gw_now_ms() + 1000);
    }
    pthread_mutex_unlock(&ota->mu);
    return NULL;
}

/* ---- create / destroy --------------------------------------------------------------------- */

static void resolve_running(struct ota_update *ota)
{
    const char *rel = getenv(OTA_ENV_RELEASE);
    const char *sup = getenv(OTA_ENV_SUPERVISED);
    char name[128] = "";
    if (rel && sup && strcmp(sup, "1") == 0)
        gw_text_copy(name, sizeof name, rel);
    else if (!sup) {
        /* command line or the installed program: what the launcher would run */
        ota__link_get(&ota->paths, "current", name, sizeof name);
        if (name[0] && !ota__release_runnable(&ota->paths, name))
            name[0] = '\0';
    }
    gw_text_copy(ota->release, sizeof ota->release, name);
    ota->running_version[0] = '\0';
    if (name[0])
        ota__release_version(&ota->paths, name, ota->running_version, sizeof ota->running_version);
    if (!ota->running_version[0])
        gw_text_copy(ota->running_version, sizeof ota->running_version, GW_VERSION);
}

int ota_update_create(const struct ota_update_options *opts, struct ota_update **out)
{
    if (out)
        *out = NULL;
    if (!opts || !out || !opts->data_dir)
        return GW_ERR_INVAL;
    struct ota_update *ota = calloc(1, sizeof *ota);
    if (!ota)
        return GW_ERR_NOMEM;
    ota->o = *opts;
    ota->h.fd = -1;
    if (ota__paths(opts->data_dir, &ota->paths) != GW_OK) {
        free(ota);
        return GW_ERR_INVAL;
    }
    int n = opts->keyring_dir && opts->keyring_dir[0]
                ? snprintf(ota->keyring, sizeof ota->keyring, "%s", opts->keyring_dir)
                : snprintf(ota->keyring, sizeof ota->keyring, "%s/keys", opts->data_dir);
    if (n < 0 || (size_t)n >= sizeof ota->keyring) {
        free(ota);
        return GW_ERR_INVAL;
    }
    ota->o.keyring_dir = ota->keyring;
    ota->o.data_dir = ota->paths.data;
    pthread_mutex_init(&ota->mu, NULL);
    if (gw_clock_cond_init(&ota->cv) != GW_OK) {
        pthread_mutex_destroy(&ota->mu);
        free(ota);
        return GW_ERR_NOMEM;
    }
    resolve_running(ota);

    const char *notice = getenv(OTA_ENV_NOTICE);
    if (notice && notice[0]) {
        gw_text_copy(ota->notice, sizeof ota->notice, notice);
        unsetenv(OTA_ENV_NOTICE);
        GW_LOGW(MOD, "%s", ota->notice);
        publish_text(ota, EVENT_OTA_UPDATE_ROLLED_BACK, ota->notice);
    }
    const char *fd_text = getenv(OTA_ENV_NOTIFY_FD);
    if (fd_text && opts->bus) {
        char *end;
        long fd = strtol(fd_text, &end, 10);
        if (*end == '\0' && fd > 2 && fd < 65536 && fcntl((int)fd, F_GETFD) >= 0) {
            ota->h.fd = (int)fd;
            fcntl(ota->h.fd, F_SETFD, FD_CLOEXEC); /* not for the simulator or a re-exec */
        }
        unsetenv(OTA_ENV_NOTIFY_FD);
    }
    if (ota->h.fd >= 0) {
        GW_LOGI(MOD, "running %s on trial: waiting to be healthy", ota->running_version);
        int rc = event_bus_subscribe(opts->bus, EVENT_BMS_DATA_UPDATE, on_bms, ota, "ota health");
        if (!rc)
            rc = event_bus_subscribe(opts->bus, EVENT_CAN_TX_SUCCESS, on_can, ota, "ota health");
        if (!rc && pthread_create(&ota->h.thread, NULL, health_thread, ota) == 0)
            ota->h.running = true;
        else
            GW_LOGE(MOD, "cannot watch the health of this trial: the launcher will roll it back");
    }
    *out = ota;
    return GW_OK;
}

void ota_update_destroy(struct ota_update *ota)
{
    if (!ota)
        return;
    if (ota->session)
        ota_update_abort(ota->session);
    if (ota->o.bus && ota->h.fd >= 0) {
        event_bus_unsubscribe(ota->o.bus, EVENT_BMS_DATA_UPDATE, on_bms, ota);
        event_bus_unsubscribe(ota->o.bus, EVENT_CAN_TX_SUCCESS, on_can, ota);
    }
    if (ota->h.running) {
        pthread_mutex_lock(&ota->mu);
        ota->h.stop = true;
        pthread_cond_broadcast(&ota->cv);
        pthread_mutex_unlock(&ota->mu);
        pthread_join(ota->h.thread, NULL);
    }
    if (ota->h.fd >= 0)
        close(ota->h.fd);
    pthread_cond_destroy(&ota->cv);
    pthread_mutex_destroy(&ota->mu);
    free(ota);
}

/* ---- sessions ----------------------------------------------------------------------------- */

static long pull_session(void *ctx, void *buf, size_t cap)
{
    struct ota_session *s = ctx;
    struct ota_update *ota = s->ota;
    pthread_mutex_lock(&ota->mu);
    while (!s->eof && (!s->chunk || s->chunk_off >= s->chunk_len)) {
        if (!s->waiting) {
            s->waiting = true;
            pthread_cond_broadcast(&ota->cv);
        }
        pthread_cond_wait(&ota->cv, &ota->mu);
    }
    long n = 0;
    if (s->chunk && s->chunk_off < s->chunk_len) {
        size_t left = s->chunk_len - s->chunk_off;
        n = (long)(left < cap ? left : cap);
        memcpy(buf, s->chunk + s->chunk_off, (size_t)n);
        s->chunk_off += (size_t)n;
        if (s->chunk_off >= s->chunk_len)
            pthread_cond_broadcast(&ota->cv);
    }
    pthread_mutex_unlock(&ota->mu);
    return n;
}

static void *reader_thread(void *arg)
{
    struct ota_session *s = arg;
    pthread_setname_np(pthread_self(), "ota-reader");
    int rc = ota__extract(&s->x, pull_session, s, &s->res);
    pthread_mutex_lock(&s->ota->mu);
    s->rc = rc;
    s->reader_done = true;
    pthread_cond_broadcast(&s->ota->cv);
    pthread_mutex_unlock(&s->ota->mu);
    return NULL;
}

static bool on_trial(struct ota_update *ota, char *version, size_t cap)
{
    struct ota_state st;
    ota__state_read(&ota->paths, &st);
    gw_text_copy(version, cap, st.version);
    return st.kind == OTA_STATE_PENDING || st.kind == OTA_STATE_TRIAL;
}

static int session_new(struct ota_update *ota, unsigned flags, struct ota_session **out)
{
    *out = NULL;
    char v[OTA_VERSION_MAX];
    if (on_trial(ota, v, sizeof v)) {
        GW_LOGW(MOD, "update refused: version %s is on trial", v);
        return GW_ERR_BUSY;
    }
    pthread_mutex_lock(&ota->mu);
    if (ota->session) {
        pthread_mutex_unlock(&ota->mu);
        GW_LOGW(MOD, "update refused: another update is being received");
        return GW_ERR_BUSY;
    }
    struct ota_session *s = calloc(1, sizeof *s);
    if (!s) {
        pthread_mutex_unlock(&ota->mu);
        return GW_ERR_NOMEM;
    }
    ota->session = s;
    pthread_mutex_unlock(&ota->mu);
    s->ota = ota;
    s->flags = flags;
    s->phase = "receiving";
    s->t0_ms = gw_now_ms();
    s->x.staging_fd = -1;
    s->x.releases_dir = ota->paths.releases;
    s->x.keyring_dir = ota->keyring;
    s->x.running_version = ota->running_version;
    s->x.force = (flags & OTA_INSTALL_FORCE) != 0;
    s->x.max_bundle_bytes = ota->o.max_bundle_bytes ? ota->o.max_bundle_bytes : OTA_DEFAULT_MAX_BUNDLE;
    s->x.reserve_bytes = ota->o.reserve_bytes ? ota->o.reserve_bytes : OTA_DEFAULT_RESERVE;
    if (mkdir(ota->paths.releases, 0755) != 0 && errno != EEXIST)
        GW_LOGW(MOD, "cannot create %s: %s", ota->paths.releases, strerror(errno));
    *out = s;
    return GW_OK;
}

static int session_set_sig(struct ota_session *s, const void *sig, size_t len)
{
    free(s->sig_text);
    s->sig_text = NULL;
    s->have_sig = false;
    if (!sig || !len || len > OTA_SIG_MAX)
        return GW_ERR_INVAL;
    s->sig_text = malloc(len + 1);
    if (!s->sig_text)
        return GW_ERR_NOMEM;
    memcpy(s->sig_text, sig, len);
    s->sig_text[len] = '\0';
    s->sig_len = len;
    char why[200];
    if (ota__signature_parse(s->sig_text, len, &s->sig, why, sizeof why) != GW_OK) {
        ota__refuse(&s->res, GW_ERR_AUTH, 403, "%s", why);
        return GW_ERR_AUTH;
    }
    s->have_sig = true;
    return GW_OK;
}

static void session_free(struct ota_session *s, bool keep_staging)
{
    struct ota_update *ota = s->ota;
    if (s->thread_started) {
        pthread_mutex_lock(&ota->mu);
        s->eof = true;
        pthread_cond_broadcast(&ota->cv);
        pthread_mutex_unlock(&ota->mu);
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
    ota__extract_free(&s->x, keep_staging);
    free(s->sig_text);
    pthread_mutex_lock(&ota->mu);
    if (ota->session == s)
        ota->session = NULL;
    pthread_mutex_unlock(&ota->mu);
    free(s);
}

int ota_update_begin(struct ota_update *ota, const void *sig, size_t sig_len, unsigned flags, struct ota_session **out)
{
    if (out)
        *out = NULL;
    if (!ota || !out)
        return GW_ERR_INVAL;
    struct ota_session *s;
    int rc = session_new(ota, flags, &s);
    if (rc)
        return rc;
    GW_LOGI(MOD, "receiving an update bundle");
    publish_text(ota, EVENT_OTA_UPDATE_STARTED, "receiving an update bundle");
    if (sig && sig_len) {
        rc = session_set_sig(s, sig, sig_len);
        if (rc) {
            s->rc = rc; /* sticky: nothing is read, finish gives the reason */
            s->reader_done = true;
            *out = s;
            return GW_OK;
        }
        s->x.sig = &s->sig;
    }
    if (pthread_create(&s->thread, NULL, reader_thread, s) != 0) {
        session_free(s, false);
        return GW_ERR_IO;
    }
    s->thread_started = true;
    *out = s;
    return GW_OK;
}

int ota_update_set_signature(struct ota_session *s, const void *sig, size_t len)
{
    if (!s || !sig || !len || len > OTA_SIG_MAX)
        return GW_ERR_INVAL;
    pthread_mutex_lock(&s->ota->mu);
    bool refused = s->reader_done && s->rc;
    pthread_mutex_unlock(&s->ota->mu);
    if (refused)
        return GW_ERR_STATE;
    if (s->x.sig) /* given at begin: the reader may be using it */
        return GW_ERR_STATE;
    int rc = session_set_sig(s, sig, len);
    return rc == GW_ERR_AUTH ? GW_OK : rc; /* a bad file is reported at finish */
}

void ota_update_set_total(struct ota_session *s, uint64_t total_bytes)
{
    if (!s)
        return;
    pthread_mutex_lock(&s->ota->mu);
    s->total = total_bytes;
    pthread_mutex_unlock(&s->ota->mu);
}

int ota_update_write(struct ota_session *s, const void *chunk, size_t len)
{
    if (!s || (!chunk && len))
        return GW_ERR_INVAL;
    struct ota_update *ota = s->ota;
    pthread_mutex_lock(&ota->mu);
    if (s->reader_done) {
        int rc = s->rc;
        pthread_mutex_unlock(&ota->mu);
        return rc;
    }
    s->bytes_in += len;
    s->chunk = chunk;
    s->chunk_len = len;
    s->chunk_off = 0;
    s->waiting = false;
    pthread_cond_broadcast(&ota->cv);
    /* Back-pressure: return once the reader has processed this chunk and asks for more, so the
     * refusal it causes is this call's answer. */
    while (!s->reader_done && !(s->chunk_off >= s->chunk_len && s->waiting))
        pthread_cond_wait(&ota->cv, &ota->mu);
    s->chunk = NULL;
    s->chunk_len = s->chunk_off = 0;
    int rc = s->reader_done ? s->rc : GW_OK;
    pthread_mutex_unlock(&ota->mu);
    return rc;
}

static void remember(struct ota_update *ota, const struct ota_result *r)
{
    pthread_mutex_lock(&ota->mu);
    ota->last = *r;
    ota->have_last = true;
    ota->switching = r->error == GW_OK;
    pthread_mutex_unlock(&ota->mu);
}

int ota_update_finish(struct ota_session *s, struct ota_result *res)
{
    if (!s) {
        if (res) {
            memset(res, 0, sizeof *res);
            res->error = GW_ERR_INVAL;
            res->http_status = 500;
        }
        return GW_ERR_INVAL;
    }
    struct ota_update *ota = s->ota;
    pthread_mutex_lock(&ota->mu);
    s->eof = true;
    s->phase = "verifying";
    pthread_cond_broadcast(&ota->cv);
    while (!s->reader_done)
        pthread_cond_wait(&ota->cv, &ota->mu);
    pthread_mutex_unlock(&ota->mu);
    if (s->thread_started) {
        pthread_join(s->thread, NULL);
        s->thread_started = false;
    }
    int rc = s->rc;
    if (!rc && !s->x.manifest_verified) {
        if (!s->have_sig) {
            if (s->sig_text) /* set but unparsable: the reason is in res already */
                rc = s->res.error ? s->res.error : GW_ERR_AUTH;
            else {
                ota__refuse(&s->res, GW_ERR_AUTH, 403, "bundle is not signed (no signature file)");
                rc = GW_ERR_AUTH;
            }
        } else {
            rc = ota__extract_verify_late(&s->x, &s->sig, &s->res);
        }
    }
    if (!rc) {
        rc = ota__write_signature(s->x.staging, s->sig_text, s->sig_len);
        if (rc)
            ota__refuse(&s->res, rc, rc == GW_ERR_STORAGE ? 507 : 500, "cannot write the signature into %s",
                        s->x.staging);
    }
    char name[128] = "";
    if (!rc) {
        uint8_t h[32];
        char hex[65];
        ota__sha256(s->x.manifest_text, s->x.manifest_len, h);
        ota__hex(h, 4, hex);
        ota__fmt(name, sizeof name, "%s-%s", s->x.manifest->version, hex);
        uint32_t timeout = ota->o.trial_timeout_s ? ota->o.trial_timeout_s : OTA_DEFAULT_TIMEOUT_S;
        uint32_t starts = ota->o.trial_max_starts ? ota->o.trial_max_starts : OTA_DEFAULT_MAX_STARTS;
        pthread_mutex_lock(&ota->mu);
        s->phase = "installing";
        pthread_mutex_unlock(&ota->mu);
        rc = ota__switch_to(&ota->paths, s->x.staging, name, s->x.manifest->version, ota->running_version, timeout,
                            starts, &s->res);
    }
    s->res.bytes = s->bytes_in;
    s->res.verify_ms = gw_now_ms() - s->t0_ms;
    if (!rc) {
        s->res.error = GW_OK;
        s->res.http_status = 200;
        ota__fmt(s->res.reason, sizeof s->res.reason, "version %s installed (signed by key %s): restarting into it",
                 s->x.manifest->version, s->sig.key_id);
        GW_LOGI(MOD, "%s; %llu bytes verified in %llu ms", s->res.reason, (unsigned long long)s->res.bytes,
                (unsigned long long)s->res.verify_ms);
    } else {
        if (!s->res.error) {
            s->res.error = rc;
            s->res.http_status = 500;
        }
        char text[160];
        join(text, sizeof text, "update refused: ", s->res.reason);
        publish_text(ota, EVENT_OTA_UPDATE_FAILED, text);
    }
    struct ota_result r = s->res;
    bool restart = !(s->flags & OTA_INSTALL_NO_RESTART);
    if (r.error == GW_OK)
        s->x.staging[0] = '\0'; /* moved into releases/ */
    session_free(s, false);
    remember(ota, &r);
    if (res)
        *res = r;
    if (r.error == GW_OK && restart && ota->o.restart)
        ota->o.restart(ota->o.restart_ctx);
    return r.error;
}

void ota_update_abort(struct ota_session *s)
{
    if (!s)
        return;
    GW_LOGI(MOD, "update upload aborted");
    session_free(s, false);
}

/* ---- file install ------------------------------------------------------------------------- */

struct file_src {
    int fd;
};

static long pull_file(void *ctx, void *buf, size_t cap)
{
    struct file_src *f = ctx;
    for (;;) {
        ssize_t n = read(f->fd, buf, cap);
        if (n >= 0)
            return (long)n;
        if (errno != EINTR)
            return GW_ERR_IO;
    }
}

static int read_small(const char *path, char **out, size_t *len)
{
    *out = NULL;
    *len = 0;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return errno == ENOENT ? GW_ERR_NOT_FOUND : GW_ERR_IO;
    char *buf = malloc(OTA_SIG_MAX + 1);
    ssize_t n = buf ? read(fd, buf, OTA_SIG_MAX + 1) : -1;
    close(fd);
    if (n < 0 || (size_t)n > OTA_SIG_MAX) {
        free(buf);
        return n < 0 ? GW_ERR_IO : GW_ERR_OVERFLOW;
    }
    buf[n] = '\0';
    *out = buf;
    *len = (size_t)n;
    return GW_OK;
}

int ota_update_install_file(struct ota_update *ota, const char *bundle_path, const char *sig_path, unsigned flags,
                            struct ota_result *res)
{
    struct ota_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    if (!ota || !bundle_path) {
        res->error = GW_ERR_INVAL;
        res->http_status = 500;
        return GW_ERR_INVAL;
    }
    char sp[OTA_DIR_MAX + 8];
    if (!sig_path) {
        ota__fmt(sp, sizeof sp, "%s.sig", bundle_path);
        sig_path = sp;
    }
    int fd = open(bundle_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ota__refuse(res, GW_ERR_NOT_FOUND, 400, "cannot open %s: %s", bundle_path, strerror(errno));
        return res->error;
    }
    char *sig = NULL;
    size_t sig_len = 0;
    int src = read_small(sig_path, &sig, &sig_len);
    struct ota_session *s;
    int rc = session_new(ota, flags, &s);
    if (rc) {
        close(fd);
        free(sig);
        ota__refuse(res, rc, 409, "%s", rc == GW_ERR_BUSY ? "another update is in progress or on trial" : gw_strerror(rc));
        return rc;
    }
    if (src == GW_OK) {
        rc = session_set_sig(s, sig, sig_len);
        if (!rc)
            s->x.sig = &s->sig;
    } else {
        ota__refuse(&s->res, GW_ERR_AUTH, 403, "bundle is not signed: %s %s", sig_path,
                    src == GW_ERR_NOT_FOUND ? "does not exist" : "cannot be read");
        rc = GW_ERR_AUTH;
    }
    free(sig);
    if (!rc) {
        struct file_src f = { .fd = fd };
        rc = ota__extract(&s->x, pull_file, &f, &s->res);
    }
    close(fd);
    s->rc = rc;
    s->reader_done = true;
    s->bytes_in = s->x.bytes;
    return ota_update_finish(s, res);
}

/* ---- rollback by hand --------------------------------------------------------------------- */

int ota_update_rollback(struct ota_update *ota, const char *who, unsigned flags, struct ota_result *res)
{
    struct ota_result local;
    if (!res)
        res = &local;
    memset(res, 0, sizeof *res);
    if (!ota) {
        res->error = GW_ERR_INVAL;
        return GW_ERR_INVAL;
    }
    pthread_mutex_lock(&ota->mu);
    bool busy = ota->session != NULL;
    pthread_mutex_unlock(&ota->mu);
    if (busy) {
        ota__refuse(res, GW_ERR_BUSY, 409, "an update is being received");
        return GW_ERR_BUSY;
    }
    int lock = ota__lock(&ota->paths);
    if (lock < 0) {
        ota__refuse(res, lock, 500, "cannot lock %s", ota->paths.lock);
        return lock;
    }
    struct ota_state st;
    ota__state_read(&ota->paths, &st);
    int rc;
    if (st.kind != OTA_STATE_GOOD && st.kind != OTA_STATE_TRIAL && st.kind != OTA_STATE_PENDING) {
        ota__refuse(res, GW_ERR_NOT_FOUND, 409, "no previous release to roll back to (update state: %s)",
                    ota__state_name(st.kind));
        rc = GW_ERR_NOT_FOUND;
    } else {
        char reason[160];
        ota__fmt(reason, sizeof reason, "rolled back by hand (%s)", who ? who : "unknown");
        rc = ota__rollback(&ota->paths, &st, OTA_STATE_ROLLED_BACK, reason);
        if (rc) {
            ota__refuse(res, rc, 500, "rollback failed: %s", gw_strerror(rc));
        } else {
            res->http_status = 200;
            gw_text_copy(res->version, sizeof res->version, st.from_version);
            ota__fmt(res->reason, sizeof res->reason, "rolled back from %s to %s: restarting into it", st.version,
                     st.from_version[0] ? st.from_version : "the installed program");
            char text[160];
            ota__fmt(text, sizeof text, "update to %s rolled back by hand (%s)", st.version, who ? who : "unknown");
            publish_text(ota, EVENT_OTA_UPDATE_ROLLED_BACK, text);
        }
    }
    ota__unlock(lock);
    remember(ota, res);
    if (!rc && !(flags & OTA_INSTALL_NO_RESTART) && ota->o.restart)
        ota->o.restart(ota->o.restart_ctx);
    return rc;
}

/* ---- switch ------------------------------------------------------------------------------- */

bool ota_update_launched_on_trial(void)
{
    const char *fd = getenv(OTA_ENV_NOTIFY_FD);
    return fd && fd[0];
}

bool ota_update_switch_pending(struct ota_update *ota)
{
    if (!ota)
        return false;
    pthread_mutex_lock(&ota->mu);
    bool switching = ota->switching;
    pthread_mutex_unlock(&ota->mu);
    if (switching)
        return true;
    struct ota_state st;
    ota__state_read(&ota->paths, &st);
    return st.kind == OTA_STATE_PENDING;
}

/* ---- status ------------------------------------------------------------------------------- */

int ota_update_status_json(struct ota_update *ota, char **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!ota)
        return GW_ERR_INVAL;
    struct ota_state st;
    ota__state_read(&ota->paths, &st);
    char cur[128], prev[128], prev_version[OTA_VERSION_MAX] = "";
    ota__link_get(&ota->paths, "current", cur, sizeof cur);
    ota__link_get(&ota->paths, "previous", prev, sizeof prev);
    if (prev[0])
        ota__release_version(&ota->paths, prev, prev_version, sizeof prev_version);
    cJSON *o = cJSON_CreateObject();
    if (!o)
        return GW_ERR_NOMEM;
    cJSON_AddStringToObject(o, "running_version", ota->running_version);
    cJSON_AddStringToObject(o, "running_release", ota->release[0] ? ota->release : "installed");
    cJSON_AddStringToObject(o, "architecture", ota__arch());
    cJSON_AddStringToObject(o, "platform", ota__platform());
    cJSON_AddStringToObject(o, "current", cur[0] ? cur : "installed");
    cJSON_AddStringToObject(o, "previous", prev[0] ? prev : (st.kind == OTA_STATE_GOOD ? "installed" : ""));
    cJSON_AddStringToObject(o, "previous_version",
                            prev[0] ? prev_version : (st.kind == OTA_STATE_GOOD ? st.from_version : ""));
    cJSON_AddBoolToObject(o, "can_roll_back",
                          st.kind == OTA_STATE_GOOD || st.kind == OTA_STATE_TRIAL || st.kind == OTA_STATE_PENDING);
    cJSON *t = cJSON_AddObjectToObject(o, "update");
    if (t) {
        cJSON_AddStringToObject(t, "state", ota__state_name(st.kind));
        cJSON_AddStringToObject(t, "version", st.version);
        cJSON_AddStringToObject(t, "from_version", st.from_version);
        cJSON_AddNumberToObject(t, "starts", st.starts);
        cJSON_AddNumberToObject(t, "max_starts", st.max_starts);
        cJSON_AddNumberToObject(t, "timeout_s", st.timeout_s);
        cJSON_AddStringToObject(t, "reason", st.reason);
    }
    pthread_mutex_lock(&ota->mu);
    /* One word for where an update is, for a page that follows it: the session's step while one
     * runs, then what this process did last, then the trial state on disk. */
    const char *phase = "idle", *phase_reason = "";
    if (ota->session)
        phase = ota->session->phase;
    else if (ota->have_last && ota->last.error != GW_OK)
        phase = "refused", phase_reason = ota->last.reason;
    else if (ota->switching)
        phase = "switching", phase_reason = ota->last.reason;
    else if (st.kind == OTA_STATE_PENDING || st.kind == OTA_STATE_TRIAL)
        phase = "trial";
    else if (st.kind == OTA_STATE_GOOD)
        phase = "done";
    else if (st.kind == OTA_STATE_FAILED || st.kind == OTA_STATE_ROLLED_BACK)
        phase = "rolled_back", phase_reason = st.reason;
    cJSON_AddStringToObject(o, "phase", phase);
    cJSON_AddStringToObject(o, "phase_reason", phase_reason);
    if (ota->session) {
        cJSON *p = cJSON_AddObjectToObject(o, "upload");
        if (p) {
            cJSON_AddStringToObject(p, "phase", ota->session->phase);
            cJSON_AddNumberToObject(p, "bytes", (double)ota->session->bytes_in);
            cJSON_AddNumberToObject(p, "total", (double)ota->session->total);
            cJSON_AddNumberToObject(p, "files_verified", ota->session->x.files_done);
            cJSON_AddNumberToObject(p, "files", ota->session->x.manifest ? ota->session->x.manifest->file_count : 0);
        }
    }
    if (ota->have_last) {
        cJSON *l = cJSON_AddObjectToObject(o, "last_result");
        if (l) {
            cJSON_AddBoolToObject(l, "ok", ota->last.error == GW_OK);
            cJSON_AddNumberToObject(l, "http_status", ota->last.http_status);
            cJSON_AddStringToObject(l, "reason", ota->last.reason);
            cJSON_AddStringToObject(l, "version", ota->last.version);
            cJSON_AddStringToObject(l, "key_id", ota->last.key_id);
        }
    }
    if (ota->notice[0])
        cJSON_AddStringToObject(o, "rollback_notice", ota->notice);
    pthread_mutex_unlock(&ota->mu);
    *out = cJSON_Print(o);
    cJSON_Delete(o);
    return *out ? GW_OK : GW_ERR_NOMEM;
}

/* ---- command line ------------------------------------------------------------------------- */

/* Tells a gateway running on this data directory to restart into the new `current`. */
static void signal_running(void *ctx)
{
    const char *data_dir = ctx;
    char path[OTA_DIR_MAX + 32];
    ota__fmt(path, sizeof path, "%s/tinybms-gw.lock", data_dir);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        printf("no gateway runs on %s: the new release starts with the next start of the gateway\n", data_dir);
        return;
    }
    if (flock(fd, LOCK_SH | LOCK_NB) == 0) {
        close(fd);
        printf("no gateway runs on %s: the new release starts with the next start of the gateway\n", data_dir);
        return;
    }
    char pid_text[24] = "";
    ssize_t n = pread(fd, pid_text, sizeof pid_text - 1, 0);
    close(fd);
    pid_text[n > 0 ? n : 0] = '\0';
    long pid = strtol(pid_text, NULL, 10);
    if (pid <= 1 || kill((pid_t)pid, SIGUSR1) != 0) {
        printf("the running gateway (PID %s) could not be told: restart it to start the new release\n",
               pid_text[0] ? pid_text : "unknown");
        return;
    }
    printf("the running gateway (PID %ld) restarts into it\n", pid);
}

int ota_update_cli(const struct ota_cli_options *c)
{
    if (!c || !c->data_dir)
        return 2;
    struct ota_update_options o = { .data_dir = c->data_dir, .keyring_dir = c->keyring_dir,
                                    .trial_timeout_s = c->trial_timeout_s, .trial_max_starts = c->trial_max_starts,
                                    .health_can_s = c->health_can_s, .restart = signal_running,
                                    .restart_ctx = (void *)c->data_dir, .config_loaded = true };
    struct ota_update *ota;
    int rc = ota_update_create(&o, &ota);
    if (rc) {
        fprintf(stderr, "tinybms-gw: %s\n", gw_strerror(rc));
        return 1;
    }
    int code = 0;
    struct ota_result r;
    if (c->status) {
        char *json;
        if (ota_update_status_json(ota, &json) == GW_OK) {
            printf("%s\n", json);
            free(json);
        } else {
            code = 1;
        }
    } else if (c->rollback) {
        rc = ota_update_rollback(ota, "command line", 0, &r);
        if (rc) {
            fprintf(stderr, "tinybms-gw: rollback refused: %s\n", r.reason);
            code = 1;
        } else {
            printf("%s\n", r.reason);
        }
    } else if (c->bundle) {
        rc = ota_update_install_file(ota, c->bundle, c->signature, c->force ? OTA_INSTALL_FORCE : 0, &r);
        if (rc) {
            fprintf(stderr, "tinybms-gw: update refused: %s\n", r.reason);
            code = 1;
        } else {
            printf("%s (%llu bytes verified in %llu ms)\n", r.reason, (unsigned long long)r.bytes,
                   (unsigned long long)r.verify_ms);
        }
    }
    ota_update_destroy(ota);
    return code;
}
