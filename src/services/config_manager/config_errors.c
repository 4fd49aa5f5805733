/* The error list of a configuration check (config_errors_*) and the bounded message format of
 * the module. */
#define _POSIX_C_SOURCE 200809L
#include "config_internal.h"
#include "gw_error.h"
#include "gw_text.h"

#include <cjson/cJSON.h>
#include <stdarg.h>
#include <stdio.h>

/* ---------------------------------------------------------------------------------------------
 * Error list
 * ------------------------------------------------------------------------------------------- */

void config__format(char *buf, size_t cap, const char *fmt, ...)
{
    if (!buf || cap == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
    if (n < 0)
        buf[0] = '\0';
}

void config_errors_clear(struct config_errors *errors)
{
    if (!errors)
        return;
    errors->count = 0;
    errors->dropped = 0;
}

void config_errors_add(struct config_errors *errors, const char *path, const char *fmt, ...)
{
    if (!errors)
        return;
    if (errors->count >= CONFIG_ERRORS_MAX) {
        errors->dropped++;
        return;
    }
    struct config_error *e = &errors->items[errors->count++];
    gw_text_copy(e->path, sizeof e->path, path);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(e->message, sizeof e->message, fmt, ap);
    va_end(ap);
    if (n < 0)
        gw_text_copy(e->message, sizeof e->message, "invalid");
}

int config_errors_to_json(const struct config_errors *errors, char **out)
{
    if (!out)
        return GW_ERR_INVAL;
    *out = NULL;
    if (!errors)
        return GW_ERR_INVAL;
    cJSON *root = cJSON_CreateObject();
    cJSON *arr = root ? cJSON_AddArrayToObject(root, "errors") : NULL;
    if (!arr)
        goto nomem;
    for (uint32_t i = 0; i < errors->count && i < CONFIG_ERRORS_MAX; i++) {
        cJSON *e = cJSON_CreateObject();
        if (!e)
            goto nomem;
        cJSON_AddItemToArray(arr, e);
        if (!cJSON_AddStringToObject(e, "path", errors->items[i].path) ||
            !cJSON_AddStringToObject(e, "message", errors->items[i].message))
            goto nomem;
    }
    if (!cJSON_AddNumberToObject(root, "dropped", errors->dropped))
        goto nomem;
    *out = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *out ? GW_OK : GW_ERR_NOMEM;
nomem:
    cJSON_Delete(root);
    return GW_ERR_NOMEM;
}
