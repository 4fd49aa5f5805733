/* config_manager with a real event bus and real files: first start, partial updates, rejected
 * updates, secrets, password hashing, overrides, reset, recovery from a corrupt file. */
#define _POSIX_C_SOURCE 200809L
#include "app_events.h"
#include "atomic_file.h"
#include "config_manager.h"
#include "event_bus.h"
#include "gw_error.h"
#include "test.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <pthread.h>
#include <signal.h>
#include <sys/resource.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

/* ---- helpers ---------------------------------------------------------------------------- */

struct recorder {
    pthread_mutex_t lock;
    int config_events;
    struct app_config_change last_change;
    int storage_events;
    int storage_ok_events;
    struct app_storage_error last_storage;
};

static void on_config(const struct gw_event *ev, void *ctx)
{
    struct recorder *r = ctx;
    pthread_mutex_lock(&r->lock);
    r->config_events++;
    memcpy(&r->last_change, ev->payload, sizeof r->last_change);
    pthread_mutex_unlock(&r->lock);
}

static void on_storage(const struct gw_event *ev, void *ctx)
{
    struct recorder *r = ctx;
    pthread_mutex_lock(&r->lock);
    if (ev->id == EVENT_STORAGE_OK)
        r->storage_ok_events++;
    else
        r->storage_events++;
    memcpy(&r->last_storage, ev->payload, sizeof r->last_storage);
    pthread_mutex_unlock(&r->lock);
}

struct fixture {
    char dir[64];
    char path[128];
    char bak[128];
    char applied[128];
    bool allow_defaults;
    struct event_bus *bus;
    struct recorder rec;
    struct config_manager *cm;
};

static void fx_open(struct fixture *fx)
{
    struct config_manager_options o = { .data_dir = fx->dir, .bus = fx->bus, .allow_defaults = fx->allow_defaults };
    fx->cm = NULL;
    CHECK_EQ_INT(config_manager_create(&o, &fx->cm), GW_OK);
}

static void fx_setup(struct fixture *fx, bool open_manager)
{
    memset(fx, 0, sizeof *fx);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/gw_cfgmgr_XXXXXX");
    if (!mkdtemp(fx->dir))
        abort();
    snprintf(fx->path, sizeof fx->path, "%s/config.json", fx->dir);
    snprintf(fx->bak, sizeof fx->bak, "%s/config.json.bak", fx->dir);
    snprintf(fx->applied, sizeof fx->applied, "%s/config.json.applied", fx->dir);
    pthread_mutex_init(&fx->rec.lock, NULL);
    CHECK_EQ_INT(event_bus_create(NULL, &fx->bus), GW_OK);
    CHECK_EQ_INT(event_bus_subscribe(fx->bus, EVENT_CONFIG_UPDATED, on_config, &fx->rec, "test"), GW_OK);
    CHECK_EQ_INT(event_bus_subscribe(fx->bus, EVENT_STORAGE_ERROR, on_storage, &fx->rec, "test"), GW_OK);
    CHECK_EQ_INT(event_bus_subscribe(fx->bus, EVENT_STORAGE_OK, on_storage, &fx->rec, "test"), GW_OK);
    if (open_manager)
        fx_open(fx);
}

static void fx_close(struct fixture *fx)
{
    config_manager_destroy(fx->cm);
    fx->cm = NULL;
}

static void fx_teardown(struct fixture *fx)
{
    fx_close(fx);
    event_bus_destroy(fx->bus);
    DIR *d = opendir(fx->dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
            continue;
        snprintf(p, sizeof p, "%s/%s", fx->dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(fx->dir);
    pthread_mutex_destroy(&fx->rec.lock);
}

static struct recorder snapshot(struct fixture *fx)
{
    CHECK(event_bus_flush(fx->bus, 10000) == GW_OK);
    pthread_mutex_lock(&fx->rec.lock);
    struct recorder r = fx->rec;
    pthread_mutex_unlock(&fx->rec.lock);
    return r;
}

static char *read_text(const char *path)
{
    static char buf[256 * 1024];
    size_t len;
    if (atomic_file_read(path, buf, sizeof buf - 1, &len) != GW_OK)
        return NULL;
    buf[len] = 0;
    return buf;
}

static int update(struct fixture *fx, const char *doc, struct config_errors *errors)
{
    return config_manager_update_json(fx->cm, doc, strlen(doc), errors);
}

static bool has_error(const struct config_errors *e, const char *path)
{
    for (uint32_t i = 0; i < e->count; i++)
        if (strcmp(e->items[i].path, path) == 0)
            return true;
    return false;
}

static int count_prefix(const char *dir, const char *prefix)
{
    int n = 0;
    DIR *d = opendir(dir);
    struct dirent *e;
    while (d && (e = readdir(d)))
        if (strncmp(e->d_name, prefix, strlen(prefix)) == 0)
            n++;
    if (d)
        closedir(d);
    return n;
}

/* ---- tests ------------------------------------------------------------------------------ */

static void test_first_start_writes_defaults_without_a_password(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    char reason[256];
    CHECK_EQ_INT(config_manager_load_status(fx.cm, reason, sizeof reason), CONFIG_LOAD_CREATED);
    struct stat st;
    CHECK_EQ_INT(stat(fx.path, &st), 0);
    CHECK_EQ_INT(st.st_mode & 0777, 0600);
    struct gw_config cfg, defaults;
    config_manager_get(fx.cm, &cfg);
    gw_config_set_defaults(&defaults);
    CHECK_EQ_INT(gw_config_diff(&cfg, &defaults, NULL, 0, NULL), 0);
    /* No password is generated (nothing to print): the web server's first-run flow sets one. */
    CHECK_STR(cfg.web.password_hash, "");
    CHECK(!config_manager_has_web_password(fx.cm));
    CHECK(!config_manager_verify_web_password(fx.cm, "admin", ""));
    CHECK(!config_manager_announce_load_status(fx.cm));
    /* Second start: same file, status OK, still no password. */
    fx_close(&fx);
    fx_open(&fx);
    CHECK_EQ_INT(config_manager_load_status(fx.cm, NULL, 0), CONFIG_LOAD_OK);
    CHECK(!config_manager_has_web_password(fx.cm));
    CHECK_EQ_INT(snapshot(&fx).storage_events, 0);
    fx_teardown(&fx);
}

static void test_first_password_is_accepted_once(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    CHECK_EQ_INT(config_manager_set_first_web_password(fx.cm, "short"), GW_ERR_INVAL);
    CHECK(!config_manager_has_web_password(fx.cm));
    CHECK_EQ_INT(config_manager_set_first_web_password(fx.cm, "first-pass-123"), GW_OK);
    CHECK(config_manager_has_web_password(fx.cm));
    CHECK(config_manager_verify_web_password(fx.cm, "admin", "first-pass-123"));
    /* A second first-run request is refused, the first password stays. */
    CHECK_EQ_INT(config_manager_set_first_web_password(fx.cm, "second-pass-456"), GW_ERR_STATE);
    CHECK(config_manager_verify_web_password(fx.cm, "admin", "first-pass-123"));
    CHECK(!config_manager_verify_web_password(fx.cm, "admin", "second-pass-456"));
    /* Stored as a hash, never in clear, and it survives a restart. */
    char *text = read_text(fx.path);
    CHECK(text && strstr(text, "first-pass-123") == NULL && strstr(text, "pbkdf2-sha256$100000$") != NULL);
    fx_close(&fx);
    fx_open(&fx);
    CHECK(config_manager_verify_web_password(fx.cm, "admin", "first-pass-123"));
    CHECK_EQ_INT(config_manager_set_first_web_password(fx.cm, "third-pass-789"), GW_ERR_STATE);
    /* The ordinary change still works. */
    CHECK_EQ_INT(config_manager_set_web_password(fx.cm, "changed-pass-1"), GW_OK);
    CHECK(config_manager_verify_web_password(fx.cm, "admin", "changed-pass-1"));
    fx_teardown(&fx);
}

static void test_partial_update_merges_saves_and_publishes(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    struct config_errors errors;
    char *before = strdup(read_text(fx.path));
    CHECK_EQ_INT(update(&fx, "{\"bms\":{\"poll_interval_ms\":500},\"mqtt\":{\"keepalive_s\":30}}", &errors), GW_OK);
    struct gw_config cfg;
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 500);
    CHECK_EQ_INT(cfg.mqtt.keepalive_s, 30);
    CHECK_EQ_INT(cfg.bms.comm_timeout_ms, 30000); /* untouched */
    CHECK_STR(cfg.mqtt.topic_prefix, "tinybms");
    struct recorder r = snapshot(&fx);
    CHECK_EQ_INT(r.config_events, 1);
    CHECK_EQ_INT(r.last_change.sections, CONFIG_SECTION_BMS | CONFIG_SECTION_MQTT);
    CHECK_STR(r.last_change.changed, "bms.poll_interval_ms,mqtt.keepalive_s");
    CHECK(!r.last_change.restart_required);
    /* The previous good file became the backup; the new one is on disk. */
    char *bak = read_text(fx.bak);
    CHECK(bak && strcmp(bak, before) == 0);
    struct gw_config on_disk;
    gw_config_set_defaults(&on_disk);
    char *text = read_text(fx.path);
    CHECK_EQ_INT(gw_config_from_json(text, strlen(text), &on_disk, NULL), GW_OK);
    CHECK_EQ_INT(on_disk.bms.poll_interval_ms, 500);
    free(before);
    /* A field that only applies after a restart says so. */
    CHECK_EQ_INT(update(&fx, "{\"can\":{\"bitrate\":250000}}", &errors), GW_OK);
    r = snapshot(&fx);
    CHECK_EQ_INT(r.config_events, 2);
    CHECK_EQ_INT(r.last_change.sections, CONFIG_SECTION_CAN);
    CHECK(r.last_change.restart_required);
    /* No change: no event, no rewrite. */
    CHECK_EQ_INT(update(&fx, "{\"can\":{\"bitrate\":250000}}", &errors), GW_OK);
    CHECK_EQ_INT(snapshot(&fx).config_events, 2);
    CHECK_EQ_INT(update(&fx, "{}", &errors), GW_OK);
    /* Survives a restart. */
    fx_close(&fx);
    fx_open(&fx);
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 500);
    CHECK_EQ_INT(cfg.can.bitrate, 250000);
    fx_teardown(&fx);
}

/* A save refused by the file size limit (a full disk, a quota: EFBIG with SIGXFSZ ignored, as the
 * daemon does) publishes STORAGE_ERROR {config}; the next save that works publishes STORAGE_OK,
 * which clears the alert. Saves that work with no error before publish nothing. */
static void test_storage_error_cleared_by_a_good_save(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    struct config_errors errors;
    CHECK_EQ_INT(update(&fx, "{\"bms\":{\"poll_interval_ms\":500}}", &errors), GW_OK);
    CHECK_EQ_INT(snapshot(&fx).storage_ok_events, 0);
    void (*old)(int) = signal(SIGXFSZ, SIG_IGN);
    struct rlimit saved, tiny = { .rlim_cur = 16, .rlim_max = RLIM_INFINITY };
    CHECK_EQ_INT(getrlimit(RLIMIT_FSIZE, &saved), 0);
    tiny.rlim_max = saved.rlim_max;
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &tiny), 0);
    int rc = update(&fx, "{\"bms\":{\"poll_interval_ms\":700}}", &errors);
    CHECK_EQ_INT(setrlimit(RLIMIT_FSIZE, &saved), 0);
    signal(SIGXFSZ, old);
    CHECK(rc != GW_OK);
    struct recorder r = snapshot(&fx);
    CHECK_EQ_INT(r.storage_events, 1);
    CHECK_EQ_INT(r.storage_ok_events, 0);
    struct gw_config cfg;
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 500); /* refused whole */
    CHECK_EQ_INT(update(&fx, "{\"bms\":{\"poll_interval_ms\":700}}", &errors), GW_OK);
    r = snapshot(&fx);
    CHECK_EQ_INT(r.storage_events, 1);
    CHECK_EQ_INT(r.storage_ok_events, 1);
    CHECK_STR(r.last_storage.module, "config");
    CHECK_EQ_INT(r.last_storage.error, GW_OK);
    CHECK_EQ_INT(update(&fx, "{\"bms\":{\"poll_interval_ms\":800}}", &errors), GW_OK);
    CHECK_EQ_INT(snapshot(&fx).storage_ok_events, 1); /* once per recovery */
    fx_teardown(&fx);
}

static void test_rejected_update_changes_nothing(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    struct config_errors errors;
    char *before = strdup(read_text(fx.path));
    struct gw_config cfg_before, cfg_after;
    config_manager_get(fx.cm, &cfg_before);
    /* Valid fields mixed with invalid ones: nothing of it is applied. */
    const char *doc = "{\"bms\":{\"poll_interval_ms\":500,\"soc_full_percent\":20},"
                      "\"mqtt\":{\"broker_uri\":\"mqtt://host:99999\",\"keepalive_s\":30},"
                      "\"web\":{\"password_hash\":\"pbkdf2-sha256$1$AAAA$AAAA\"},"
                      "\"charge\":{\"float_cell_v\":3.5}}";
    CHECK_EQ_INT(update(&fx, doc, &errors), GW_ERR_INVAL);
    CHECK(has_error(&errors, "bms.soc_full_percent"));
    CHECK(has_error(&errors, "bms.soc_empty_percent") || has_error(&errors, "bms.soc_full_percent"));
    CHECK(has_error(&errors, "mqtt.broker_uri"));
    CHECK(has_error(&errors, "web.password_hash"));
    CHECK(has_error(&errors, "charge.float_cell_v"));
    config_manager_get(fx.cm, &cfg_after);
    CHECK_EQ_INT(gw_config_diff(&cfg_before, &cfg_after, NULL, 0, NULL), 0);
    CHECK_STR(read_text(fx.path), before);
    CHECK_EQ_INT(snapshot(&fx).config_events, 0);
    CHECK_EQ_INT(update(&fx, "{\"bms\":", &errors), GW_ERR_INVAL);
    CHECK(has_error(&errors, ""));
    CHECK_EQ_INT(update(&fx, "\"text\"", &errors), GW_ERR_INVAL);
    CHECK_EQ_INT(config_manager_update_json(fx.cm, NULL, 0, &errors), GW_ERR_INVAL);
    CHECK_EQ_INT(update(&fx, "{\"bms\":{\"poll_interval_ms\":5}}", NULL), GW_ERR_INVAL); /* NULL errors ok */
    CHECK_STR(read_text(fx.path), before);
    free(before);
    fx_teardown(&fx);
}

static void test_masked_secrets_round_trip(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    struct config_errors errors;
    CHECK_EQ_INT(update(&fx, "{\"mqtt\":{\"username\":\"gw\",\"password\":\"broker-secret\"},"
                             "\"network\":{\"wifi_ssid\":\"home\",\"wifi_password\":\"wifi-secret\"}}",
                        &errors),
                 GW_OK);
    char *masked = NULL;
    CHECK_EQ_INT(config_manager_to_json(fx.cm, CONFIG_JSON_MASKED, &masked), GW_OK);
    CHECK(strstr(masked, "broker-secret") == NULL);
    CHECK(strstr(masked, "wifi-secret") == NULL);
    CHECK(strstr(masked, "pbkdf2") == NULL);
    CHECK(strstr(masked, "\"password\":\"********\"") != NULL);
    /* The UI sends the whole masked document back with one change: secrets are kept. */
    cJSON *root = cJSON_Parse(masked);
    cJSON_ReplaceItemInObject(cJSON_GetObjectItem(root, "bms"), "poll_interval_ms", cJSON_CreateNumber(700));
    char *edited = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    CHECK_EQ_INT(update(&fx, edited, &errors), GW_OK);
    struct gw_config cfg;
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 700);
    CHECK_STR(cfg.mqtt.password, "broker-secret");
    CHECK_STR(cfg.network.wifi_password, "wifi-secret");
    struct recorder r = snapshot(&fx);
    CHECK_STR(r.last_change.changed, "bms.poll_interval_ms");
    /* The secrets are on disk (0600) for the services, never in a read. */
    CHECK(strstr(read_text(fx.path), "broker-secret") != NULL);
    free(masked);
    CHECK_EQ_INT(config_manager_to_json(fx.cm, CONFIG_JSON_STORAGE, &masked), GW_ERR_INVAL);
    CHECK(masked == NULL);
    free(edited);
    fx_teardown(&fx);
}

static void test_export_import_without_secrets(void)
{
    struct fixture src, dst;
    fx_setup(&src, true);
    fx_setup(&dst, true);
    struct config_errors errors;
    CHECK_EQ_INT(update(&src, "{\"mqtt\":{\"username\":\"gw\",\"password\":\"src-secret\",\"topic_prefix\":\"site1\"},"
                              "\"charge\":{\"max_charge_a\":80},\"bms\":{\"cell_order\":\"reversed\"}}",
                        &errors),
                 GW_OK);
    CHECK_EQ_INT(update(&dst, "{\"mqtt\":{\"username\":\"x\",\"password\":\"dst-secret\"}}", &errors), GW_OK);
    struct gw_config dst_before;
    config_manager_get(dst.cm, &dst_before);
    char *exported = NULL;
    CHECK_EQ_INT(config_manager_export_json(src.cm, &exported), GW_OK);
    CHECK(strstr(exported, "src-secret") == NULL);
    CHECK(strstr(exported, "password") == NULL); /* neither secret keys nor the hash */
    CHECK_EQ_INT(config_manager_import_json(dst.cm, exported, strlen(exported), &errors), GW_OK);
    struct gw_config s, d;
    config_manager_get(src.cm, &s);
    config_manager_get(dst.cm, &d);
    CHECK_STR(d.mqtt.topic_prefix, "site1");
    CHECK_STR(d.mqtt.username, "gw");
    CHECK_EQ_INT(d.bms.cell_order, 1);
    CHECK_NEAR(d.charge.max_charge_a, 80, 1e-6);
    CHECK_STR(d.mqtt.password, "dst-secret");                       /* target's secret kept */
    CHECK_STR(d.web.password_hash, dst_before.web.password_hash);   /* target's login kept */
    /* Everything else equals the source. */
    strcpy(d.mqtt.password, s.mqtt.password);
    strcpy(d.web.password_hash, s.web.password_hash);
    CHECK_EQ_INT(gw_config_diff(&s, &d, NULL, 0, NULL), 0);
    free(exported);
    fx_teardown(&src);
    fx_teardown(&dst);
}

static void test_web_password_hash_and_verify(void)
{
    char hash[160];
    CHECK_EQ_INT(config_password_hash("correct horse", hash, sizeof hash), GW_OK);
    /* pbkdf2-sha256$100000$<24 chars b64 of 16 bytes>$<44 chars b64 of 32 bytes> */
    CHECK(strncmp(hash, "pbkdf2-sha256$100000$", 21) == 0);
    const char *salt = hash + 21;
    const char *sep = strchr(salt, '$');
    CHECK(sep && sep - salt == 24);
    CHECK(sep && strlen(sep + 1) == 44);
    CHECK(config_password_verify(hash, "correct horse"));
    CHECK(!config_password_verify(hash, "correct horsE"));
    CHECK(!config_password_verify(hash, ""));
    char hash2[160];
    CHECK_EQ_INT(config_password_hash("correct horse", hash2, sizeof hash2), GW_OK);
    CHECK(strcmp(hash, hash2) != 0); /* fresh salt each time */
    CHECK_EQ_INT(config_password_hash("short", hash2, sizeof hash2), GW_ERR_INVAL);
    CHECK_EQ_INT(config_password_hash("long enough", hash2, 40), GW_ERR_OVERFLOW);
    CHECK(!config_password_verify("plain", "plain"));
    CHECK(!config_password_verify("pbkdf2-sha256$10$AAAAAAAAAAAAAAAAAAAAAA==$AAAA", "x"));
    CHECK(!config_password_verify("pbkdf2-sha256$100000$!!!$AAAA", "x"));
    CHECK(!config_password_verify("pbkdf2-sha256$100000$", "x"));

    struct fixture fx;
    fx_setup(&fx, true);
    CHECK(!config_manager_verify_web_password(fx.cm, "admin", "guess-guess"));
    CHECK_EQ_INT(config_manager_set_web_password(fx.cm, "s3cret-pass"), GW_OK);
    CHECK(config_manager_verify_web_password(fx.cm, "admin", "s3cret-pass"));
    CHECK(!config_manager_verify_web_password(fx.cm, "admin", "s3cret-pasS"));
    CHECK(!config_manager_verify_web_password(fx.cm, "Admin", "s3cret-pass"));
    CHECK(!config_manager_verify_web_password(fx.cm, "admin2", "s3cret-pass"));
    CHECK(!config_manager_verify_web_password(fx.cm, "", "s3cret-pass"));
    CHECK_EQ_INT(config_manager_set_web_password(fx.cm, "1234567"), GW_ERR_INVAL);
    CHECK(strstr(read_text(fx.path), "s3cret-pass") == NULL);
    /* Through JSON: hashed, never stored in clear; the mask leaves it unchanged. */
    struct config_errors errors;
    CHECK_EQ_INT(update(&fx, "{\"web\":{\"username\":\"root\",\"password\":\"via-json-123\"}}", &errors), GW_OK);
    CHECK(config_manager_verify_web_password(fx.cm, "root", "via-json-123"));
    CHECK(!config_manager_verify_web_password(fx.cm, "admin", "via-json-123"));
    CHECK(strstr(read_text(fx.path), "via-json-123") == NULL);
    CHECK_EQ_INT(update(&fx, "{\"web\":{\"password\":\"********\"}}", &errors), GW_OK);
    CHECK(config_manager_verify_web_password(fx.cm, "root", "via-json-123"));
    CHECK_EQ_INT(update(&fx, "{\"web\":{\"password\":\"short\"}}", &errors), GW_ERR_INVAL);
    CHECK(has_error(&errors, "web.password"));
    CHECK_EQ_INT(update(&fx, "{\"web\":{\"password\":12345678}}", &errors), GW_ERR_INVAL);
    CHECK(config_manager_verify_web_password(fx.cm, "root", "via-json-123"));
    /* Persisted. */
    fx_close(&fx);
    fx_open(&fx);
    CHECK(config_manager_verify_web_password(fx.cm, "root", "via-json-123"));
    fx_teardown(&fx);
}

static void test_overrides_never_persisted(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    CHECK_EQ_INT(config_manager_set_override_json(
                     fx.cm, "{\"bms\":{\"uart_device\":\"/dev/ttyUSB7\"},\"can\":{\"enabled\":true,\"interface\":\"vcan0\"}}"),
                 GW_OK);
    CHECK_EQ_INT(config_manager_set_override_json(fx.cm, "{\"web\":{\"http_port\":18080}}"), GW_OK);
    struct gw_config cfg;
    config_manager_get(fx.cm, &cfg);
    CHECK_STR(cfg.bms.uart_device, "/dev/ttyUSB7");
    CHECK(cfg.can.enabled);
    CHECK_STR(cfg.can.interface, "vcan0");
    CHECK_EQ_INT(cfg.web.http_port, 18080);
    CHECK(strstr(read_text(fx.path), "ttyUSB7") == NULL);
    struct recorder r = snapshot(&fx);
    CHECK_EQ_INT(r.config_events, 2);
    CHECK_STR(r.last_change.changed, "web.http_port");
    /* An update of other fields: saved without the overrides, overrides still effective. */
    struct config_errors errors;
    CHECK_EQ_INT(update(&fx, "{\"bms\":{\"poll_interval_ms\":400},\"web\":{\"http_port\":9000}}", &errors), GW_OK);
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 400);
    CHECK_EQ_INT(cfg.web.http_port, 18080); /* the CLI wins over the stored value */
    CHECK_STR(cfg.bms.uart_device, "/dev/ttyUSB7");
    char *text = read_text(fx.path);
    CHECK(strstr(text, "ttyUSB7") == NULL);
    CHECK(strstr(text, "vcan0") == NULL);
    CHECK(strstr(text, "9000") != NULL);
    /* Reads show the effective values. */
    char *masked = NULL;
    CHECK_EQ_INT(config_manager_to_json(fx.cm, CONFIG_JSON_MASKED, &masked), GW_OK);
    CHECK(strstr(masked, "/dev/ttyUSB7") != NULL);
    free(masked);
    /* An update incoherent with the overrides is refused. */
    CHECK_EQ_INT(update(&fx, "{\"can\":{\"interface\":\"\"}}", &errors), GW_OK); /* stored: can disabled, fine */
    config_manager_get(fx.cm, &cfg);
    CHECK_STR(cfg.can.interface, "vcan0");
    /* Reset keeps the overrides. */
    CHECK_EQ_INT(config_manager_reset_defaults(fx.cm), GW_OK);
    config_manager_get(fx.cm, &cfg);
    CHECK_STR(cfg.bms.uart_device, "/dev/ttyUSB7");
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 1000);
    /* Invalid overrides are refused and change nothing. */
    CHECK_EQ_INT(config_manager_set_override_json(fx.cm, "{\"bms\":{\"uart_device\":\"ttyUSB0\"}}"), GW_ERR_INVAL);
    CHECK_EQ_INT(config_manager_set_override_json(fx.cm, "{\"mqtt\":{\"password\":\"x\"}}"), GW_ERR_INVAL);
    CHECK_EQ_INT(config_manager_set_override_json(fx.cm, "{\"web\":{\"password\":\"abcdefgh1\"}}"), GW_ERR_INVAL);
    CHECK_EQ_INT(config_manager_set_override_json(fx.cm, "{\"mqtt\":{\"broker_uri\":\"tcp://x\"}}"), GW_ERR_INVAL);
    CHECK_EQ_INT(config_manager_set_override_json(fx.cm, "not json"), GW_ERR_INVAL);
    config_manager_get(fx.cm, &cfg);
    CHECK_STR(cfg.bms.uart_device, "/dev/ttyUSB7");
    /* Gone after a restart. */
    fx_close(&fx);
    fx_open(&fx);
    config_manager_get(fx.cm, &cfg);
    CHECK_STR(cfg.bms.uart_device, "");
    CHECK_EQ_INT(cfg.web.http_port, 8080);
    fx_teardown(&fx);
}

/* SIGHUP: the file edited by hand is applied when valid as a whole, refused otherwise. */
static void test_reload_applies_a_valid_file_and_refuses_a_bad_one(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    CHECK_EQ_INT(config_manager_set_override_json(fx.cm, "{\"bms\":{\"uart_device\":\"/dev/ttyUSB3\"}}"), GW_OK);
    CHECK_EQ_INT(config_manager_set_web_password(fx.cm, "reload-pass-1"), GW_OK);
    struct gw_config before;
    config_manager_get(fx.cm, &before);
    char hash[sizeof before.web.password_hash];
    memcpy(hash, before.web.password_hash, sizeof hash);
    int events_before = snapshot(&fx).config_events;

    /* A hand edit: a new poll interval and alert threshold, no password hash in it. */
    const char *edited = "{\"bms\":{\"poll_interval_ms\":750},\"alerts\":{\"cell_v_high\":{\"value\":3.58}}}";
    CHECK_EQ_INT(atomic_file_write(fx.path, edited, strlen(edited), 0600), GW_OK);
    char reason[160];
    CHECK_EQ_INT(config_manager_reload(fx.cm, reason, sizeof reason), GW_OK);
    CHECK_STR(reason, "reloaded");
    struct gw_config cfg;
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 750);
    CHECK_NEAR(cfg.alerts.cell_v_high.value, 3.58, 1e-6);
    CHECK_STR(cfg.bms.uart_device, "/dev/ttyUSB3");          /* the override still wins */
    CHECK_STR(cfg.web.password_hash, hash);                  /* the credential survives */
    struct recorder r = snapshot(&fx);
    CHECK_EQ_INT(r.config_events, events_before + 1);
    CHECK(strstr(r.last_change.changed, "bms.poll_interval_ms") != NULL);
    CHECK(strstr(read_text(fx.path), "ttyUSB3") == NULL);     /* overrides never written */

    /* Invalid values or broken JSON: refused, nothing changes, the file is left for the user. */
    const char *bad = "{\"bms\":{\"poll_interval_ms\":5}}";
    CHECK_EQ_INT(atomic_file_write(fx.path, bad, strlen(bad), 0600), GW_OK);
    CHECK(config_manager_reload(fx.cm, reason, sizeof reason) != GW_OK);
    CHECK(strstr(reason, "poll_interval_ms") != NULL);
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 750);
    CHECK_STR(read_text(fx.path), bad);
    CHECK_EQ_INT(atomic_file_write(fx.path, "{\"bms\":", 7, 0600), GW_OK);
    CHECK(config_manager_reload(fx.cm, NULL, 0) != GW_OK);
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 750);
    CHECK_EQ_INT(snapshot(&fx).config_events, events_before + 1);
    fx_teardown(&fx);
}

static void test_reset_defaults_keeps_credentials(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    struct config_errors errors;
    CHECK_EQ_INT(update(&fx, "{\"web\":{\"username\":\"owner\",\"password\":\"keep-me-123\"},"
                             "\"mqtt\":{\"enabled\":true},\"history\":{\"period_s\":60}}",
                        &errors),
                 GW_OK);
    CHECK_EQ_INT(config_manager_reset_defaults(fx.cm), GW_OK);
    struct gw_config cfg, defaults;
    config_manager_get(fx.cm, &cfg);
    gw_config_set_defaults(&defaults);
    CHECK(!cfg.mqtt.enabled);
    CHECK_EQ_INT(cfg.history.period_s, 5);
    CHECK_STR(cfg.web.username, "owner");
    CHECK(config_manager_verify_web_password(fx.cm, "owner", "keep-me-123"));
    strcpy(defaults.web.username, cfg.web.username);
    strcpy(defaults.web.password_hash, cfg.web.password_hash);
    CHECK_EQ_INT(gw_config_diff(&cfg, &defaults, NULL, 0, NULL), 0);
    struct recorder r = snapshot(&fx);
    CHECK(r.last_change.sections & CONFIG_SECTION_MQTT);
    CHECK(r.last_change.sections & CONFIG_SECTION_HISTORY);
    fx_teardown(&fx);
}

static void test_chemistry_change_brings_its_defaults(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    struct config_errors errors;
    CHECK_EQ_INT(update(&fx, "{\"charge\":{\"chemistry\":\"nmc\",\"max_charge_a\":50}}", &errors), GW_OK);
    struct gw_config cfg;
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.charge.chemistry, GW_CHEM_NMC);
    CHECK_NEAR(cfg.charge.target_cell_v, 4.10, 1e-5);
    CHECK_NEAR(cfg.charge.max_charge_a, 50, 1e-6); /* fields of the same document still win */
    /* Same chemistry again: no reset of tuned values. */
    CHECK_EQ_INT(update(&fx, "{\"charge\":{\"target_cell_v\":4.05}}", &errors), GW_OK);
    CHECK_EQ_INT(update(&fx, "{\"charge\":{\"chemistry\":\"nmc\"}}", &errors), GW_OK);
    config_manager_get(fx.cm, &cfg);
    CHECK_NEAR(cfg.charge.target_cell_v, 4.05, 1e-5);
    fx_teardown(&fx);
}

static void test_corrupt_file_recovers_from_backup_and_alerts(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    struct config_errors errors;
    CHECK_EQ_INT(update(&fx, "{\"bms\":{\"poll_interval_ms\":600}}", &errors), GW_OK);
    CHECK_EQ_INT(update(&fx, "{\"bms\":{\"poll_interval_ms\":700}}", &errors), GW_OK); /* .bak has 600 */
    /* What runs is what comes back: 700, the last applied document, not the .bak's 600. */
    fx_close(&fx);
    const char garbage[] = "{\"bms\":{\"poll_interval_ms\":7";
    CHECK_EQ_INT(atomic_file_write(fx.path, garbage, strlen(garbage), 0600), GW_OK);
    fx_open(&fx);
    char reason[512];
    CHECK_EQ_INT(config_manager_load_status(fx.cm, reason, sizeof reason), CONFIG_LOAD_FROM_BACKUP);
    CHECK(strstr(reason, "invalid JSON") != NULL);
    CHECK(strstr(reason, "config.json.applied") != NULL);
    struct gw_config cfg;
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 700);
    struct recorder r = snapshot(&fx);
    CHECK_EQ_INT(r.storage_events, 1);
    CHECK_STR(r.last_storage.module, "config");
    CHECK_EQ_INT(r.last_storage.error, GW_ERR_STORAGE);
    CHECK(strstr(r.last_storage.message, "recovered") != NULL);
    /* The corrupt file is kept for inspection; config.json now holds the recovered document. */
    CHECK_EQ_INT(count_prefix(fx.dir, "config.json.corrupt-"), 1);
    gw_config_set_defaults(&cfg);
    char *text = read_text(fx.path);
    CHECK_EQ_INT(gw_config_from_json(text, strlen(text), &cfg, NULL), GW_OK);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 700);
    /* Re-announce for late subscribers. */
    CHECK(config_manager_announce_load_status(fx.cm));
    CHECK_EQ_INT(snapshot(&fx).storage_events, 2);
    fx_close(&fx);

    /* Valid JSON with an invalid value is corrupt too (a hand edit gone wrong). */
    const char bad_value[] = "{\"bms\":{\"poll_interval_ms\":5}}";
    CHECK_EQ_INT(atomic_file_write(fx.path, bad_value, strlen(bad_value), 0600), GW_OK);
    fx_open(&fx);
    CHECK_EQ_INT(config_manager_load_status(fx.cm, reason, sizeof reason), CONFIG_LOAD_FROM_BACKUP);
    CHECK(strstr(reason, "bms.poll_interval_ms") != NULL);
    CHECK(count_prefix(fx.dir, "config.json.corrupt-") >= 1);
    fx_close(&fx);

    /* config.json deleted: the recovery copy, not defaults. */
    unlink(fx.path);
    fx_open(&fx);
    CHECK_EQ_INT(config_manager_load_status(fx.cm, reason, sizeof reason), CONFIG_LOAD_FROM_BACKUP);
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 700);
    fx_close(&fx);

    /* No usable recovery copy: the one before it (.bak, 600), said so. */
    unlink(fx.path);
    CHECK_EQ_INT(atomic_file_write(fx.applied, "[]", 2, 0600), GW_OK);
    fx_open(&fx);
    CHECK_EQ_INT(config_manager_load_status(fx.cm, reason, sizeof reason), CONFIG_LOAD_FROM_BACKUP);
    CHECK(strstr(reason, "config.json.bak") != NULL);
    config_manager_get(fx.cm, &cfg);
    CHECK_EQ_INT(cfg.bms.poll_interval_ms, 600);
    fx_teardown(&fx);
}

/* The review's path: a good edit reloaded (40 A runs), a later hand edit with a typo (refused,
 * 40 A keeps running), a restart: 40 A comes back, not the 100 A of the document before it. */
static void test_restart_after_a_refused_edit_keeps_what_ran(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    const char good[] = "{\"charge\":{\"max_charge_a\":40}}";
    CHECK_EQ_INT(atomic_file_write(fx.path, good, strlen(good), 0600), GW_OK);
    char reason[512];
    CHECK_EQ_INT(config_manager_reload(fx.cm, reason, sizeof reason), GW_OK);
    const char typo[] = "{\"charge\":{\"max_charge_a\":400000}}";
    CHECK_EQ_INT(atomic_file_write(fx.path, typo, strlen(typo), 0600), GW_OK);
    CHECK(config_manager_reload(fx.cm, reason, sizeof reason) != GW_OK);
    struct gw_config cfg;
    config_manager_get(fx.cm, &cfg);
    CHECK_NEAR(cfg.charge.max_charge_a, 40, 1e-6);
    fx_close(&fx);
    fx_open(&fx);
    CHECK(fx.cm != NULL);
    if (!fx.cm) {
        fx_teardown(&fx);
        return;
    }
    CHECK_EQ_INT(config_manager_load_status(fx.cm, reason, sizeof reason), CONFIG_LOAD_FROM_BACKUP);
    config_manager_get(fx.cm, &cfg);
    CHECK_NEAR(cfg.charge.max_charge_a, 40, 1e-6);
    fx_teardown(&fx);
}

static void test_nothing_readable_falls_back_to_defaults_loudly(void)
{
    struct fixture fx;
    fx_setup(&fx, false);
    CHECK_EQ_INT(atomic_file_write(fx.path, "\x01\x02garbage", 9, 0600), GW_OK);
    CHECK_EQ_INT(atomic_file_write(fx.bak, "[]", 2, 0600), GW_OK);
    /* A configuration existed: no silent start on the defaults. */
    struct config_manager *cm = NULL;
    struct config_manager_options o = { .data_dir = fx.dir, .bus = fx.bus };
    CHECK_EQ_INT(config_manager_create(&o, &cm), GW_ERR_STORAGE);
    CHECK(cm == NULL);
    CHECK_EQ_INT(atomic_file_write(fx.path, "\x01\x02garbage", 9, 0600), GW_OK); /* was set aside */
    /* Unless the owner asks for them. */
    fx.allow_defaults = true;
    fx_open(&fx);
    char reason[512];
    CHECK_EQ_INT(config_manager_load_status(fx.cm, reason, sizeof reason), CONFIG_LOAD_DEFAULTS);
    CHECK(strstr(reason, "using defaults") != NULL);
    struct gw_config cfg, defaults;
    config_manager_get(fx.cm, &cfg);
    gw_config_set_defaults(&defaults);
    strcpy(defaults.web.password_hash, cfg.web.password_hash);
    CHECK_EQ_INT(gw_config_diff(&cfg, &defaults, NULL, 0, NULL), 0);
    CHECK_STR(cfg.web.password_hash, ""); /* no password made up: the first-run flow sets one */
    struct recorder r = snapshot(&fx);
    CHECK_EQ_INT(r.storage_events, 1);
    CHECK(strstr(r.last_storage.message, "defaults") != NULL);
    CHECK_EQ_INT(count_prefix(fx.dir, "config.json.corrupt-"), 2); /* refused start, then this one */
    fx_close(&fx);

    /* An oversized file is unreadable too. */
    size_t big = 300 * 1024;
    char *huge = malloc(big);
    memset(huge, ' ', big);
    huge[0] = '{';
    huge[big - 1] = '}';
    CHECK_EQ_INT(atomic_file_write(fx.path, huge, big, 0600), GW_OK);
    free(huge);
    unlink(fx.bak);
    unlink(fx.applied);
    fx_open(&fx);
    CHECK_EQ_INT(config_manager_load_status(fx.cm, reason, sizeof reason), CONFIG_LOAD_DEFAULTS);
    CHECK(strstr(reason, "larger than") != NULL);
    fx_teardown(&fx);
}

static void test_create_arguments(void)
{
    struct config_manager *cm = (struct config_manager *)1;
    CHECK_EQ_INT(config_manager_create(NULL, &cm), GW_ERR_INVAL);
    CHECK(cm == NULL);
    /* A directory that could not be created: an unsaved run on the defaults, said so. */
    struct config_manager_options o = { .data_dir = "/nonexistent/dir/for/test" };
    CHECK_EQ_INT(config_manager_create(&o, &cm), GW_OK);
    char reason[200];
    CHECK_EQ_INT(config_manager_load_status(cm, reason, sizeof reason), CONFIG_LOAD_DEFAULTS);
    CHECK(strstr(reason, "running unsaved") != NULL);
    config_manager_destroy(cm);
    o.data_dir = "/etc/hostname"; /* a file */
    CHECK_EQ_INT(config_manager_create(&o, &cm), GW_ERR_INVAL);
    config_manager_destroy(NULL);
}

struct reader_ctx {
    struct config_manager *cm;
    atomic_int stop;
    int torn;
};

static void *reader(void *arg)
{
    struct reader_ctx *c = arg;
    struct gw_config cfg;
    while (!atomic_load(&c->stop)) {
        config_manager_get(c->cm, &cfg);
        /* Updates write poll_interval and comm_timeout together: a reader never sees a mix. */
        if (cfg.bms.comm_timeout_ms != cfg.bms.poll_interval_ms * 10)
            c->torn++;
    }
    return NULL;
}

static void test_concurrent_readers_see_whole_updates(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    struct config_errors errors;
    CHECK_EQ_INT(update(&fx, "{\"bms\":{\"poll_interval_ms\":1000,\"comm_timeout_ms\":10000}}", &errors), GW_OK);
    struct reader_ctx ctx = { .cm = fx.cm };
    pthread_t th;
    CHECK_EQ_INT(pthread_create(&th, NULL, reader, &ctx), 0);
    char doc[128];
    for (int i = 0; i < 30; i++) {
        unsigned p = 200 + (unsigned)i * 10;
        snprintf(doc, sizeof doc, "{\"bms\":{\"poll_interval_ms\":%u,\"comm_timeout_ms\":%u}}", p, p * 10);
        CHECK_EQ_INT(update(&fx, doc, &errors), GW_OK);
    }
    atomic_store(&ctx.stop, 1);
    pthread_join(th, NULL);
    CHECK_EQ_INT(ctx.torn, 0);
    fx_teardown(&fx);
}


/* Regression: an update / import document (a web request body) had no size bound: cJSON would
 * allocate for whatever arrived. Now it is refused above the size of the largest config file
 * the loader accepts, before parsing. */
static void test_oversized_document_refused(void)
{
    struct fixture fx;
    fx_setup(&fx, true);
    char *before = strdup(read_text(fx.path));
    size_t big = 300u * 1024u;
    char *doc = malloc(big + 64);
    CHECK(doc != NULL);
    if (!doc) {
        free(before);
        fx_teardown(&fx);
        return;
    }
    int n = snprintf(doc, 64, "{\"bms\":{\"poll_interval_ms\":500}");
    memset(doc + n, ' ', big - (size_t)n);
    doc[big] = '}';
    doc[big + 1] = '\0';
    struct config_errors errors;
    CHECK_EQ_INT(config_manager_update_json(fx.cm, doc, big + 1, &errors), GW_ERR_INVAL);
    CHECK(errors.count >= 1 && strstr(errors.items[0].message, "larger than") != NULL);
    CHECK_EQ_INT(config_manager_import_json(fx.cm, doc, big + 1, &errors), GW_ERR_INVAL);
    CHECK_EQ_INT(config_manager_set_override_json(fx.cm, doc), GW_ERR_INVAL);
    CHECK_STR(read_text(fx.path), before);
    /* The same document without the padding is fine. */
    const char *small = "{\"bms\":{\"poll_interval_ms\":500}}";
    CHECK_EQ_INT(config_manager_update_json(fx.cm, small, strlen(small), &errors), GW_OK);
    free(doc);
    free(before);
    fx_teardown(&fx);
}

TEST_MAIN(TEST_CASE(test_first_start_writes_defaults_without_a_password), TEST_CASE(test_first_password_is_accepted_once), TEST_CASE(test_reload_applies_a_valid_file_and_refuses_a_bad_one), TEST_CASE(test_oversized_document_refused),
          TEST_CASE(test_partial_update_merges_saves_and_publishes), TEST_CASE(test_rejected_update_changes_nothing),
          TEST_CASE(test_storage_error_cleared_by_a_good_save),
          TEST_CASE(test_masked_secrets_round_trip), TEST_CASE(test_export_import_without_secrets),
          TEST_CASE(test_web_password_hash_and_verify), TEST_CASE(test_overrides_never_persisted),
          TEST_CASE(test_reset_defaults_keeps_credentials), TEST_CASE(test_chemistry_change_brings_its_defaults),
          TEST_CASE(test_corrupt_file_recovers_from_backup_and_alerts),
          TEST_CASE(test_restart_after_a_refused_edit_keeps_what_ran), TEST_CASE(test_nothing_readable_falls_back_to_defaults_loudly), TEST_CASE(test_create_arguments),
          TEST_CASE(test_concurrent_readers_see_whole_updates))
