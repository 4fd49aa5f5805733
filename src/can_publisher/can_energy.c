/* Energy counters for 0x378: integration and persistence in <data_dir>/energy.json. */
#define _POSIX_C_SOURCE 200809L
#include "can_publisher_internal.h"

#include "atomic_file.h"
#include "gw_clock.h"
#include "gw_error.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#define ENERGY_JSON_VERSION 1
#define ENERGY_FILE_MAX 1024

void can_energy__break(struct can_energy *e)
{
    e->have_prev = false;
}

void can_energy__add_sample(struct can_energy *e, uint64_t t_ms, float v, float i, uint32_t max_gap_ms)
{
    double p = (double)v * (double)i;
    if (!isfinite(p)) {
        e->have_prev = false;
        return;
    }
    if (e->have_prev && t_ms > e->prev_ms && t_ms - e->prev_ms <= max_gap_ms) {
        double hours = (double)(t_ms - e->prev_ms) / 3600000.0;
        double avg_w = (e->prev_power_w + p) / 2.0;
        if (avg_w > 0)
            e->in_wh += avg_w * hours;
        else
            e->out_wh += -avg_w * hours;
    }
    if (!e->have_prev || t_ms >= e->prev_ms) {
        e->prev_ms = t_ms;
        e->prev_power_w = p;
        e->have_prev = true;
    }
}

int can_energy__to_json(double in_wh, double out_wh, int64_t wall_ms, char *buf, size_t cap)
{
    int n = snprintf(buf, cap, "{\"version\":%d,\"energy_in_wh\":%.3f,\"energy_out_wh\":%.3f,"
                     "\"saved_at_ms\":%lld}\n", ENERGY_JSON_VERSION, in_wh, out_wh, (long long)wall_ms);
    if (n < 0)
        return GW_ERR_NOMEM;
    if ((size_t)n >= cap)
        return GW_ERR_OVERFLOW;
    return n;
}

int can_energy__from_json(const char *json, double *in_wh, double *out_wh)
{
    cJSON *root = cJSON_Parse(json);
    if (!root)
        return GW_ERR_PROTO;
    int rc = GW_ERR_PROTO;
    const cJSON *ver = cJSON_GetObjectItemCaseSensitive(root, "version");
    const cJSON *in = cJSON_GetObjectItemCaseSensitive(root, "energy_in_wh");
    const cJSON *out = cJSON_GetObjectItemCaseSensitive(root, "energy_out_wh");
    if (cJSON_IsObject(root) && cJSON_IsNumber(ver) && ver->valuedouble == ENERGY_JSON_VERSION &&
        cJSON_IsNumber(in) && cJSON_IsNumber(out) && isfinite(in->valuedouble) &&
        isfinite(out->valuedouble) && in->valuedouble >= 0 && out->valuedouble >= 0) {
        *in_wh = in->valuedouble;
        *out_wh = out->valuedouble;
        rc = GW_OK;
    }
    cJSON_Delete(root);
    return rc;
}

int can_energy__load(const char *path, double *in_wh, double *out_wh)
{
    char buf[ENERGY_FILE_MAX];
    size_t len = 0;
    int rc = atomic_file_read(path, buf, sizeof buf, &len);
    if (rc == GW_ERR_OVERFLOW)
        return GW_ERR_OVERFLOW;
    if (rc != GW_OK)
        return rc;
    if (len >= sizeof buf)
        return GW_ERR_OVERFLOW;
    buf[len] = '\0';
    if (strlen(buf) != len) /* embedded NUL: not our file */
        return GW_ERR_PROTO;
    return can_energy__from_json(buf, in_wh, out_wh);
}

int can_energy__save(const char *path, double in_wh, double out_wh)
{
    char buf[256];
    int n = can_energy__to_json(in_wh, out_wh, gw_wall_ms(), buf, sizeof buf);
    if (n < 0)
        return n;
    return atomic_file_write(path, buf, (size_t)n, 0644);
}
