/* Configuration costs: JSON parse+validate of a whole document (vs a bare cJSON parse),
 * serialisation, a full save through the manager (backup + config.json, both fsync'ed; vs one
 * bare atomic write), and the PBKDF2 web password hash. Prints medians; never fails on speed. */
#define _POSIX_C_SOURCE 200809L
#include "atomic_file.h"
#include "config_manager.h"
#include "gw_error.h"
#include "gw_log.h"

#include <cjson/cJSON.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include "bench_util.h"

#define RUNS 7

int main(void)
{
    gw_log_set_level(GW_LOG_ERROR);
    struct gw_config cfg;
    gw_config_set_defaults(&cfg);
    strcpy(cfg.web.password_hash, "pbkdf2-sha256$100000$AAAAAAAAAAAAAAAAAAAAAA==$"
                                  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=");
    char *doc = NULL;
    if (gw_config_to_json(&cfg, CONFIG_JSON_STORAGE, true, &doc) != GW_OK)
        return 1;
    size_t len = strlen(doc);

    /* Parse + validate vs bare parse, per document, 200 documents per run. */
    const int per_run = 200;
    double parse[RUNS], bare[RUNS], emit[RUNS];
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now_us();
        for (int i = 0; i < per_run; i++) {
            struct gw_config c;
            gw_config_set_defaults(&c);
            if (gw_config_from_json(doc, len, &c, NULL) != GW_OK)
                return 1;
        }
        double t1 = bench_now_us();
        for (int i = 0; i < per_run; i++)
            cJSON_Delete(cJSON_ParseWithLength(doc, len));
        double t2 = bench_now_us();
        for (int i = 0; i < per_run; i++) {
            char *out = NULL;
            gw_config_to_json(&cfg, CONFIG_JSON_MASKED, false, &out);
            free(out);
        }
        double t3 = bench_now_us();
        parse[r] = (t1 - t0) / per_run;
        bare[r] = (t2 - t1) / per_run;
        emit[r] = (t3 - t2) / per_run;
    }
    double mp = bench_median(parse, RUNS), mb = bench_median(bare, RUNS), me = bench_median(emit, RUNS);
    printf("config document: %zu bytes\n", len);
    printf("config parse+validate: %.1f us (bare cJSON parse %.1f us, ratio %.2f)\n", mp, mb, mp / mb);
    printf("config to_json (masked): %.1f us\n", me);

    /* Saves through the manager vs one bare atomic write of the same size. */
    char dir[] = "/tmp/gw_bench_config_XXXXXX";
    if (!mkdtemp(dir))
        return 1;
    struct config_manager_options o = { .data_dir = dir };
    struct config_manager *cm = NULL;
    double t_create = bench_now_us();
    if (config_manager_create(&o, &cm) != GW_OK)
        return 1;
    double create_ms = (bench_now_us() - t_create) / 1000.0;
    double save[RUNS], raw[RUNS];
    char path[128], update[64];
    snprintf(path, sizeof path, "%s/raw.json", dir);
    for (int r = 0; r < RUNS; r++) {
        snprintf(update, sizeof update, "{\"bms\":{\"poll_interval_ms\":%d}}", 200 + r);
        double t0 = bench_now_us();
        if (config_manager_update_json(cm, update, strlen(update), NULL) != GW_OK)
            return 1;
        double t1 = bench_now_us();
        if (atomic_file_write(path, doc, len, 0600) != GW_OK)
            return 1;
        double t2 = bench_now_us();
        save[r] = (t1 - t0) / 1000.0;
        raw[r] = (t2 - t1) / 1000.0;
    }
    double ms = bench_median(save, RUNS), mr = bench_median(raw, RUNS);
    printf("config save (update_json: validate, backup + config.json fsync'ed): %.2f ms (one atomic write %.2f ms, "
           "ratio %.2f)\n", ms, mr, ms / mr);
    printf("config first start (defaults + generated password hash + write): %.1f ms\n", create_ms);

    double hash[RUNS];
    char h[160];
    for (int r = 0; r < RUNS; r++) {
        double t0 = bench_now_us();
        config_password_hash("bench-password", h, sizeof h);
        hash[r] = (bench_now_us() - t0) / 1000.0;
    }
    printf("web password PBKDF2-SHA256 (%d iterations): %.1f ms\n", CONFIG_PBKDF2_ITERATIONS, bench_median(hash, RUNS));

    config_manager_destroy(cm);
    free(doc);
    DIR *d = opendir(dir);
    struct dirent *e;
    char p[512];
    while (d && (e = readdir(d))) {
        if (e->d_name[0] == '.' && (e->d_name[1] == 0 || e->d_name[1] == '.'))
            continue;
        snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
        unlink(p);
    }
    if (d)
        closedir(d);
    rmdir(dir);
    return 0;
}
