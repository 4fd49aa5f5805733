/* The web server without a socket (fuzz_web.h). */
#define _GNU_SOURCE
#include "fuzz_web.h"

#include "alert_manager.h"
#include "battery_service.h"
#include "config_manager.h"
#include "event_bus.h"
#include "fuzz_support.h"
#include "gw_clock.h"
#include "gw_config.h"
#include "gw_error.h"
#include "gw_log.h"
#include "history_logger.h"
#include "support/sample.h"
#include "web_server_internal.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

/* Secrets of the configuration: no answer may carry them (unless the request did). */
#define MQTT_SECRET "mqtt-secret-42"
#define WIFI_SECRET "wifi-secret-42"

/* ---------------------------------------------------------------- the connection */

struct mg_connection {
    struct mg_request_info ri;
    const uint8_t *body;
    size_t body_len, body_pos;
    char *out;
    size_t out_len, out_cap;
    unsigned writes;
};

static struct mg_connection conn;

const struct mg_request_info *mg_get_request_info(const struct mg_connection *c)
{
    FUZZ_ASSERT(c == &conn);
    return &c->ri;
}

const char *mg_get_header(const struct mg_connection *c, const char *name)
{
    FUZZ_ASSERT(c == &conn && name);
    for (int i = 0; i < c->ri.num_headers; i++)
        if (strcasecmp(c->ri.http_headers[i].name, name) == 0)
            return c->ri.http_headers[i].value;
    return NULL;
}

int mg_read(struct mg_connection *c, void *buf, size_t len)
{
    FUZZ_ASSERT(c == &conn && buf);
    size_t n = c->body_len - c->body_pos;
    if (n > len)
        n = len;
    /* CivetWeb returns what is there, never more than asked: in pieces here, as a socket would. */
    if (n > 4000)
        n = 4000;
    memcpy(buf, c->body + c->body_pos, n);
    c->body_pos += n;
    return (int)n;
}

static void append(struct mg_connection *c, const void *buf, size_t len)
{
    if (c->out_len + len + 1 > c->out_cap) {
        size_t cap = (c->out_len + len + 1) * 2;
        c->out = realloc(c->out, cap);
        FUZZ_ASSERT(c->out);
        c->out_cap = cap;
    }
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    c->out[c->out_len] = '\0';
}

int mg_write(struct mg_connection *c, const void *buf, size_t len)
{
    FUZZ_ASSERT(c == &conn && (buf || len == 0));
    append(c, buf, len);
    c->writes++;
    return (int)len;
}

int mg_send_chunk(struct mg_connection *c, const char *chunk, unsigned int chunk_len)
{
    FUZZ_ASSERT(c == &conn && (chunk || chunk_len == 0));
    char head[24];
    int n = snprintf(head, sizeof head, "%x\r\n", chunk_len);
    append(c, head, (size_t)n);
    append(c, chunk, chunk_len);
    append(c, "\r\n", 2);
    return (int)chunk_len;
}

/* ---------------------------------------------------------------- the server and its services */

static struct web_server ws;
static struct event_bus *bus;
static struct battery_service *battery;
static struct alert_manager *alerts;
static struct history_logger *history;
static char data_dir[300], config_path[340], ui_dir[GW_PATH_MAX];
static char *pristine;            /* config.json as written at start */
static struct gw_config pristine_cfg;
static char csrf[WEB_CSRF_TOKEN_MAX];

static int alerts_config(void *ctx, struct gw_config_alerts *out)
{
    (void)ctx;
    struct gw_config *c = malloc(sizeof *c);
    FUZZ_ASSERT(c);
    config_manager_get(ws.config, c);
    *out = c->alerts;
    free(c);
    return GW_OK;
}

static int history_config(void *ctx, struct gw_config_history *out)
{
    (void)ctx;
    struct gw_config *c = malloc(sizeof *c);
    FUZZ_ASSERT(c);
    config_manager_get(ws.config, c);
    *out = c->history;
    free(c);
    return GW_OK;
}

/* PBKDF2 of FUZZ_WEB_PASSWORD with the fewest iterations the verifier accepts: a login that
 * misses the cache costs a millisecond, not a tenth of a second. */
static void password_hash(char *out, size_t cap)
{
    static const unsigned char salt[16] = "fuzz-salt-16byte";
    unsigned char hash[32];
    FUZZ_ASSERT(PKCS5_PBKDF2_HMAC(FUZZ_WEB_PASSWORD, (int)strlen(FUZZ_WEB_PASSWORD), salt, sizeof salt, 1000,
                                  EVP_sha256(), sizeof hash, hash) == 1);
    char salt_b64[32], hash_b64[48];
    EVP_EncodeBlock((unsigned char *)salt_b64, salt, sizeof salt);
    EVP_EncodeBlock((unsigned char *)hash_b64, hash, sizeof hash);
    snprintf(out, cap, "pbkdf2-sha256$1000$%s$%s", salt_b64, hash_b64);
}

static void write_pristine(void)
{
    /* Only config.json: backups and the applied copy of a previous input go. */
    DIR *d = opendir(data_dir);
    FUZZ_ASSERT(d);
    struct dirent *e;
    while ((e = readdir(d))) {
        if (strncmp(e->d_name, "config.json", 11) == 0) {
            char p[sizeof data_dir + 300];
            snprintf(p, sizeof p, "%s/%s", data_dir, e->d_name);
            unlink(p);
        }
    }
    closedir(d);
    FILE *f = fopen(config_path, "w");
    FUZZ_ASSERT(f && fputs(pristine, f) >= 0 && fclose(f) == 0);
}

static void open_config(void)
{
    write_pristine();
    struct config_manager_options o = { .data_dir = data_dir, .bus = bus };
    FUZZ_ASSERT(config_manager_create(&o, &ws.config) == GW_OK);
    FUZZ_ASSERT(config_manager_load_status(ws.config, NULL, 0) == CONFIG_LOAD_OK);
    config_manager_get(ws.config, &pristine_cfg);
}

static struct bms_live_data sample(uint8_t id)
{
    struct bms_live_data s = test_sample(id, 3.3f, 12.5f);
    for (unsigned i = 0; i < 16; i++)
        s.cell_mv_x10[i] = (uint16_t)(33000 + 20 * i + 100 * id);
    s.pack_voltage_v = 53.1f;
    s.soc_ppm = 71u * 1000000u;
    s.temp_dc[BMS_TEMP_EXT1] = 215;
    s.online_status = BMS_STATUS_CHARGING;
    return s;
}

void fuzz_web_init(const char *name)
{
    if (ws.config)
        return;
    fuzz_quiet_logs();
    const char *dir = fuzz_scratch_dir(name);
    snprintf(data_dir, sizeof data_dir, "%s/data", dir);
    snprintf(config_path, sizeof config_path, "%s/config.json", data_dir);
    FUZZ_ASSERT(mkdir(data_dir, 0700) == 0);

    /* The configuration: a password (fast hash), two packs, secrets to look for in answers. */
    struct gw_config *cfg = calloc(1, sizeof *cfg);
    FUZZ_ASSERT(cfg);
    gw_config_set_defaults(cfg);
    password_hash(cfg->web.password_hash, sizeof cfg->web.password_hash);
    snprintf(cfg->mqtt.username, sizeof cfg->mqtt.username, "tinybms");
    snprintf(cfg->mqtt.password, sizeof cfg->mqtt.password, MQTT_SECRET);
    snprintf(cfg->network.wifi_ssid, sizeof cfg->network.wifi_ssid, "home");
    snprintf(cfg->network.wifi_password, sizeof cfg->network.wifi_password, WIFI_SECRET);
    cfg->web.csrf_ttl_s = 86400;
    FUZZ_ASSERT(gw_config_validate(cfg, NULL) == GW_OK);
    FUZZ_ASSERT(gw_config_to_json(cfg, CONFIG_JSON_STORAGE, true, &pristine) == GW_OK);
    FUZZ_ASSERT(event_bus_create(NULL, &bus) == GW_OK);
    open_config();

    /* A battery service with a view of two packs. */
    struct battery_service_options bo = { .bus = bus };
    battery_engine_default_config(&bo.engine);
    bo.engine.pack_count = 2;
    for (unsigned i = 0; i < 2; i++) {
        bo.engine.packs[i].id = (uint8_t)i;
        bo.engine.packs[i].capacity_ah = 280.0f;
    }
    FUZZ_ASSERT(battery_service_create(&bo, &battery) == GW_OK);
    FUZZ_ASSERT(battery_service_start(battery) == GW_OK);
    battery_service_set_limit_outputs(battery, BATTERY_OUTPUT_CAN);
    struct battery_view *v = malloc(sizeof *v);
    FUZZ_ASSERT(v);
    for (unsigned tries = 0; tries < 500; tries++) {
        for (uint8_t id = 0; id < 2; id++) {
            struct bms_live_data s = sample(id);
            s.lifetime_s += tries;
            event_bus_publish(bus, EVENT_BMS_DATA_UPDATE, &s, sizeof s, 1000);
        }
        event_bus_flush(bus, 1000);
        if (battery_service_get_view(battery, v) == GW_OK && v->seq > 0 && v->pack_count == 2)
            break;
        gw_sleep_ms(10);
    }
    FUZZ_ASSERT(v->seq > 0);
    free(v);

    struct alert_manager_options ao = { .bus = bus, .config = cfg->alerts, .get_config = alerts_config };
    FUZZ_ASSERT(alert_manager_create(&ao, &alerts) == GW_OK);
    FUZZ_ASSERT(alert_manager_raise(alerts, "FUZZ_TEST", ALERT_LEVEL_WARNING, "an alert to acknowledge") == GW_OK);
    char hist_dir[sizeof data_dir + 16];
    snprintf(hist_dir, sizeof hist_dir, "%s/history", data_dir);
    struct history_logger_options ho = { .bus = bus, .data_dir = hist_dir, .config = cfg->history,
                                         .get_config = history_config };
    FUZZ_ASSERT(history_logger_create(&ho, &history) == GW_OK);
    struct bms_live_data s = sample(0);
    s.wall_time_ms = gw_wall_ms() - 60000;
    FUZZ_ASSERT(history_logger_record(history, &s) == GW_OK);
    FUZZ_ASSERT(history_logger_flush(history, 5000) == GW_OK);

    /* The server as web_server_create makes it, without CivetWeb (GW_WEB_SOURCE_DIR: the UI). */
    ws.bus = bus;
    ws.battery = battery;
    ws.alerts = alerts;
    ws.history = history;
    ws.port = cfg->web.http_port;
    ws.started_ms = gw_now_ms();
    ws.request_timeout_ms = cfg->web.request_timeout_ms;
    ws.ws_max = cfg->web.ws_max_clients;
    ws.ws_queue_len = cfg->web.ws_queue_len;
    snprintf(ui_dir, sizeof ui_dir, "%s", getenv("GW_FUZZ_UI_DIR") ? getenv("GW_FUZZ_UI_DIR") : GW_FUZZ_UI_DIR);
    snprintf(ws.ui_dir, sizeof ws.ui_dir, "%s", ui_dir);
    static const unsigned char key[32] = "fuzz-key-fuzz-key-fuzz-key-fuzz";
    web_csrf_init(&ws.csrf, key);
    web_auth_cache_init(&ws.cache, key);
    pthread_mutex_init(&ws.auth_lock, NULL);
    pthread_mutex_init(&ws.ws_lock, NULL);
    FUZZ_ASSERT(web_csrf_issue(&ws.csrf, FUZZ_WEB_USER, gw_now_ms(), 86400ull * 1000, csrf, sizeof csrf) == GW_OK);
    free(cfg);
}

const char *fuzz_web_csrf_token(void)
{
    return csrf;
}

/* ---------------------------------------------------------------- the answer */

static bool carried(const uint8_t *input, size_t len, const char *secret)
{
    return memmem(input, len, secret, strlen(secret)) != NULL;
}

/* Checks the collected answer; returns its status. */
static int check_answer(bool head, const uint8_t *input, size_t input_len)
{
    FUZZ_ASSERT(conn.out_len > 0);                      /* every request is answered */
    FUZZ_ASSERT(strncmp(conn.out, "HTTP/1.1 ", 9) == 0);
    int status = atoi(conn.out + 9);
    FUZZ_ASSERT(status >= 200 && status <= 599);
    FUZZ_ASSERT(status != 500);
    char *end = strstr(conn.out, "\r\n\r\n");
    FUZZ_ASSERT(end != NULL);
    size_t head_len = (size_t)(end - conn.out) + 4;
    /* The header block: no NUL, no bare line feed, the security headers. */
    FUZZ_ASSERT(memchr(conn.out, '\0', head_len) == NULL);
    for (size_t i = 0; i < head_len; i++)
        FUZZ_ASSERT(conn.out[i] != '\n' || (i > 0 && conn.out[i - 1] == '\r'));
    char *headers = strndup(conn.out, head_len);
    FUZZ_ASSERT(headers);
    FUZZ_ASSERT(strstr(headers, "\r\nX-Content-Type-Options: nosniff\r\n"));
    FUZZ_ASSERT(strstr(headers, "\r\nContent-Security-Policy: "));
    size_t body_len = conn.out_len - head_len;
    const char *cl = strcasestr(headers, "\r\nContent-Length: ");
    bool chunked = strcasestr(headers, "\r\nTransfer-Encoding: chunked\r\n") != NULL;
    if (cl && !chunked && status != 304 && !head) {
        long long n = atoll(cl + 18);
        if (n != (long long)body_len)
            fprintf(stderr, "fuzz_web: Content-Length %lld, body %zu bytes\n", n, body_len);
        FUZZ_ASSERT(n == (long long)body_len);
    } else if (head || status == 304) {
        FUZZ_ASSERT(body_len == 0);
    } else {
        /* Without a length: chunked, or (HTTP/1.0 CSV export) delimited by the close. */
        FUZZ_ASSERT(chunked || strcasestr(headers, "\r\nConnection: close\r\n"));
    }
    if (!head && !chunked && strcasestr(headers, "\r\nContent-Type: application/json") && body_len) {
        cJSON *doc = cJSON_ParseWithLength(conn.out + head_len, body_len);
        FUZZ_ASSERT(doc != NULL);
        if (status >= 400) {
            const cJSON *e = cJSON_GetObjectItemCaseSensitive(doc, "error");
            FUZZ_ASSERT(cJSON_IsString(e));
        }
        cJSON_Delete(doc);
    }
    free(headers);
    /* Secrets never leave: not the stored ones, not the hash, not the login's password. */
    if (!carried(input, input_len, MQTT_SECRET))
        FUZZ_ASSERT(!memmem(conn.out, conn.out_len, MQTT_SECRET, strlen(MQTT_SECRET)));
    if (!carried(input, input_len, WIFI_SECRET))
        FUZZ_ASSERT(!memmem(conn.out, conn.out_len, WIFI_SECRET, strlen(WIFI_SECRET)));
    if (!carried(input, input_len, "pbkdf2-sha256$"))
        FUZZ_ASSERT(!memmem(conn.out, conn.out_len, "pbkdf2-sha256$", 14));
    if (!carried(input, input_len, FUZZ_WEB_PASSWORD))
        FUZZ_ASSERT(!memmem(conn.out, conn.out_len, FUZZ_WEB_PASSWORD, strlen(FUZZ_WEB_PASSWORD)));
    return status;
}

int fuzz_web_request(struct mg_request_info *ri, const uint8_t *body, size_t body_len, const uint8_t *input,
                     size_t input_len)
{
    conn.ri = *ri;
    snprintf(conn.ri.remote_addr, sizeof conn.ri.remote_addr, FUZZ_WEB_REMOTE_ADDR);
    conn.body = body;
    conn.body_len = body_len;
    conn.body_pos = 0;
    conn.out_len = 0;
    conn.writes = 0;

    /* Every input starts from the same state: nobody locked out, the harness's login cached,
     * no restart asked for. */
    pthread_mutex_lock(&ws.auth_lock);
    struct gw_config *c = malloc(sizeof *c);
    FUZZ_ASSERT(c);
    config_manager_get(ws.config, c);
    web_auth_limiter_init(&ws.limiter, c->web.auth_max_attempts, (uint64_t)c->web.auth_lockout_s * 1000u);
    web_auth_cache_clear(&ws.cache);
    web_auth_cache_store(&ws.cache, FUZZ_WEB_AUTH, strlen(FUZZ_WEB_AUTH), gw_now_ms());
    pthread_mutex_unlock(&ws.auth_lock);
    atomic_store(&ws.restart_requested, false);
    if (alert_manager_active_count(alerts) == 0) /* cleared by the previous input */
        FUZZ_ASSERT(alert_manager_raise(alerts, "FUZZ_TEST", ALERT_LEVEL_WARNING, "an alert to acknowledge") == GW_OK);

    (void)web__on_request(&conn, &ws);
    int status = check_answer(ri->request_method && strcmp(ri->request_method, "HEAD") == 0, input, input_len);
    if (getenv("GW_FUZZ_VERBOSE"))
        fprintf(stderr, "fuzz_web: %s %s%s%s -> %.*s\n", ri->request_method, ri->local_uri_raw,
                ri->query_string ? "?" : "", ri->query_string ? ri->query_string : "",
                (int)strcspn(conn.out + 9, "\r") + 9 > 120 ? 120 : (int)strcspn(conn.out + 9, "\r"), conn.out + 9);

    /* A request that changed the configuration: back to the pristine one. */
    config_manager_get(ws.config, c);
    if (gw_config_diff(c, &pristine_cfg, NULL, 0, NULL) != 0) {
        event_bus_flush(bus, 5000); /* the services' handlers of the change read ws.config */
        config_manager_destroy(ws.config);
        ws.config = NULL;
        open_config();
    }
    free(c);
    return status;
}
