/* TinyBMS reply payload helpers: register words, scalars, events, versions. */
#include <string.h>

#include "tinybms.h"
#include "tinybms_internal.h"

/* The reply is a data frame of cmd with a payload of at least min_len bytes. */
static int expect(const struct tinybms_reply *r, uint8_t cmd, size_t min_len)
{
    if (!r)
        return GW_ERR_INVAL;
    if (r->kind != TINYBMS_REPLY_DATA || r->cmd != cmd || r->payload_len < min_len)
        return GW_ERR_PROTO;
    return GW_OK;
}

int tinybms_reply_registers(const struct tinybms_reply *r, uint16_t *regs, size_t max,
                            size_t *count)
{
    if (!r || !count || (!regs && max))
        return GW_ERR_INVAL;
    *count = 0;
    bool big_endian;
    switch (r->cmd) {
    case TINYBMS_CMD_READ_MODBUS: big_endian = true; break;
    case TINYBMS_CMD_READ_BLOCK:
    case TINYBMS_CMD_CELLS:
    case TINYBMS_CMD_SETTINGS: big_endian = false; break;
    default: return GW_ERR_PROTO;
    }
    if (r->kind != TINYBMS_REPLY_DATA || r->payload_len % 2)
        return GW_ERR_PROTO;
    size_t words = r->payload_len / 2;
    size_t n = words < max ? words : max;
    for (size_t i = 0; i < n; i++)
        regs[i] = big_endian ? tinybms__be16(r->payload + 2 * i)
                             : tinybms__le16(r->payload + 2 * i);
    *count = n;
    return words > max ? GW_ERR_OVERFLOW : GW_OK;
}

int tinybms_reply_individual(const struct tinybms_reply *r, uint16_t *addrs, uint16_t *values,
                             size_t max, size_t *count)
{
    if (!r || !count || ((!addrs || !values) && max))
        return GW_ERR_INVAL;
    *count = 0;
    int rc = expect(r, TINYBMS_CMD_READ_INDIVIDUAL, 0);
    if (rc)
        return rc;
    if (r->payload_len % 4)
        return GW_ERR_PROTO;
    size_t pairs = r->payload_len / 4;
    size_t n = pairs < max ? pairs : max;
    for (size_t i = 0; i < n; i++) {
        addrs[i] = tinybms__le16(r->payload + 4 * i);
        values[i] = tinybms__le16(r->payload + 4 * i + 2);
    }
    *count = n;
    return pairs > max ? GW_ERR_OVERFLOW : GW_OK;
}

int tinybms_reply_write_echo(const struct tinybms_reply *r, uint16_t *addr, uint8_t *count)
{
    if (!addr || !count)
        return GW_ERR_INVAL;
    int rc = expect(r, TINYBMS_CMD_WRITE_MODBUS, 4);
    if (rc)
        return rc;
    *addr = tinybms__be16(r->payload);
    *count = r->payload[3];
    return GW_OK;
}

int tinybms_reply_float(const struct tinybms_reply *r, float *out)
{
    if (!r || !out)
        return GW_ERR_INVAL;
    if (r->cmd != TINYBMS_CMD_PACK_VOLTAGE && r->cmd != TINYBMS_CMD_PACK_CURRENT)
        return GW_ERR_PROTO;
    int rc = expect(r, r->cmd, 4);
    if (rc)
        return rc;
    *out = tinybms__f32_from_bits(tinybms__le32(r->payload));
    return GW_OK;
}

int tinybms_reply_u16(const struct tinybms_reply *r, uint16_t *out)
{
    if (!r || !out)
        return GW_ERR_INVAL;
    if (r->cmd < TINYBMS_CMD_MAX_CELL || r->cmd > TINYBMS_CMD_STATUS)
        return GW_ERR_PROTO;
    int rc = expect(r, r->cmd, 2);
    if (rc)
        return rc;
    *out = tinybms__le16(r->payload);
    return GW_OK;
}

int tinybms_reply_u32(const struct tinybms_reply *r, uint32_t *out)
{
    if (!r || !out)
        return GW_ERR_INVAL;
    if (r->cmd != TINYBMS_CMD_LIFETIME && r->cmd != TINYBMS_CMD_SOC)
        return GW_ERR_PROTO;
    int rc = expect(r, r->cmd, 4);
    if (rc)
        return rc;
    *out = tinybms__le32(r->payload);
    return GW_OK;
}

int tinybms_reply_temperatures(const struct tinybms_reply *r, int16_t dc[BMS_TEMP_SENSORS],
                               bool present[BMS_TEMP_SENSORS])
{
    if (!dc || !present)
        return GW_ERR_INVAL;
    int rc = expect(r, TINYBMS_CMD_TEMPERATURES, 2 * BMS_TEMP_SENSORS);
    if (rc)
        return rc;
    for (int i = 0; i < BMS_TEMP_SENSORS; i++) {
        int16_t v = (int16_t)tinybms__le16(r->payload + 2 * i);
        present[i] = v != BMS_TEMP_ABSENT_RAW;
        dc[i] = present[i] ? v : 0;
    }
    return GW_OK;
}

int tinybms_reply_motion(const struct tinybms_reply *r, struct tinybms_motion *out)
{
    if (!out)
        return GW_ERR_INVAL;
    int rc = expect(r, TINYBMS_CMD_SPEED_DISTANCE, 12);
    if (rc)
        return rc;
    out->speed_kmh = tinybms__f32_from_bits(tinybms__le32(r->payload));
    out->distance_left_km = tinybms__le32(r->payload + 4);
    out->time_left_s = tinybms__le32(r->payload + 8);
    return GW_OK;
}

int tinybms_reply_version(const struct tinybms_reply *r, struct tinybms_fw_version *out)
{
    if (!r || !out)
        return GW_ERR_INVAL;
    bool extended = r->cmd == TINYBMS_CMD_VERSION_EXT;
    if (r->cmd != TINYBMS_CMD_VERSION && !extended)
        return GW_ERR_PROTO;
    int rc = expect(r, r->cmd, extended ? 7 : 5);
    if (rc)
        return rc;
    memset(out, 0, sizeof *out);
    out->hw_version = r->payload[0];
    out->hw_changes = r->payload[1];
    out->fw_public = r->payload[2];
    out->fw_internal = tinybms__le16(r->payload + 3);
    out->extended = extended;
    if (extended) {
        out->bootloader_version = r->payload[5];
        out->register_map_version = r->payload[6];
    }
    return GW_OK;
}

int tinybms_reply_events(const struct tinybms_reply *r, uint32_t *bms_time_s,
                         struct bms_event *events, size_t max, size_t *count)
{
    if (!r || !bms_time_s || !count || (!events && max))
        return GW_ERR_INVAL;
    *count = 0;
    if (r->cmd != TINYBMS_CMD_EVENTS_NEWEST && r->cmd != TINYBMS_CMD_EVENTS_ALL)
        return GW_ERR_PROTO;
    int rc = expect(r, r->cmd, 4);
    if (rc)
        return rc;
    if ((r->payload_len - 4) % 4)
        return GW_ERR_PROTO;
    *bms_time_s = tinybms__le32(r->payload);
    size_t total = (r->payload_len - 4u) / 4u;
    size_t n = total < max ? total : max;
    for (size_t i = 0; i < n; i++) {
        const uint8_t *p = r->payload + 4 + 4 * i;
        events[i].timestamp_s = (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16);
        events[i].id = p[3];
    }
    *count = n;
    return total > max ? GW_ERR_OVERFLOW : GW_OK;
}
