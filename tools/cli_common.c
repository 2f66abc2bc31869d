/* cli_common.c: shared helpers of the command-line programs (see cli_common.h). */
#include "cli_common.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "calendar.h"
#include "ids.h"

bool cli_parse_u64(const char *s, uint64_t *out)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0 || *end != '\0')
        return false;
    *out = v;
    return true;
}

bool cli_parse_time(const char *s, uint64_t now_ms, uint64_t *out)
{
    if (s != NULL && strcmp(s, "now") == 0) {
        *out = now_ms;
        return true;
    }
    return calendar_parse(s, out) == 0;
}

bool cli_parse_duration(const char *s, uint64_t *out_ms)
{
    if (s == NULL || *s < '0' || *s > '9')
        return false;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno != 0)
        return false;
    uint64_t unit;
    if (strcmp(end, "ms") == 0 || *end == '\0')
        unit = 1;
    else if (strcmp(end, "s") == 0)
        unit = 1000;
    else if (strcmp(end, "m") == 0)
        unit = 60000;
    else if (strcmp(end, "h") == 0)
        unit = 3600000;
    else if (strcmp(end, "d") == 0)
        unit = 86400000;
    else
        return false;
    if (v > UINT64_MAX / unit)
        return false;
    *out_ms = v * unit;
    return true;
}

bool cli_parse_id(const char *s, uint8_t out[16])
{
    if (s != NULL && strlen(s) == 32)
        return ids_parse(s, out) == 0;
    uint64_t n;
    if (!cli_parse_u64(s, &n))
        return false;
    memset(out, 0, 16);
    for (int i = 0; i < 8; i++)
        out[15 - i] = (uint8_t)(n >> (8 * i));
    return true;
}

void cli_format_id(const uint8_t id[16], char out[33])
{
    ids_format(id, out);
}

uint64_t cli_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

void cli_print_json(cJSON *doc)
{
    char *text = cJSON_PrintUnformatted(doc);
    if (text != NULL) {
        fputs(text, stdout);
        fputc('\n', stdout);
        cJSON_free(text);
    }
    cJSON_Delete(doc);
}

void cli_json_add_u64(cJSON *obj, const char *name, uint64_t v)
{
    if (v <= (UINT64_C(1) << 53)) {
        cJSON_AddNumberToObject(obj, name, (double)v);
    } else {
        char buf[24];
        snprintf(buf, sizeof(buf), "%llu", (unsigned long long)v);
        cJSON_AddStringToObject(obj, name, buf);
    }
}

void cli_json_add_i64(cJSON *obj, const char *name, int64_t v)
{
    int64_t lim = (int64_t)1 << 53;
    if (v <= lim && v >= -lim) {
        cJSON_AddNumberToObject(obj, name, (double)v);
    } else {
        char buf[24];
        snprintf(buf, sizeof(buf), "%lld", (long long)v);
        cJSON_AddStringToObject(obj, name, buf);
    }
}

void cli_json_add_time(cJSON *obj, const char *name, uint64_t t)
{
    if (t == 0) {
        cJSON_AddNullToObject(obj, name);
    } else if (t == UINT64_MAX) {
        cJSON_AddStringToObject(obj, name, "never");
    } else {
        char buf[32];
        calendar_format(t, buf);
        cJSON_AddStringToObject(obj, name, buf);
    }
}
