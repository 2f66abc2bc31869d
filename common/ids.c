/* ids.c: time-ordered posting ids (see ids.h). */
#include "ids.h"

#include <errno.h>
#include <string.h>
#include <sys/random.h>

void ids_init(struct ids *g)
{
    memset(g, 0, sizeof(*g));
}

static void increment(uint8_t id[16])
{
    for (int i = 15; i >= 6; i--) {
        if (++id[i] != 0)
            return;
    }
}

int ids_next(struct ids *g, uint64_t now_ms, uint8_t out[16])
{
    if (now_ms <= g->last_ms && g->last_ms != 0) {
        increment(g->last);
        memcpy(out, g->last, 16);
        return 0;
    }
    uint8_t id[16];
    for (int i = 0; i < 6; i++)
        id[i] = (uint8_t)(now_ms >> (40 - 8 * i));
    ssize_t n = getrandom(id + 6, 10, 0);
    if (n != 10)
        return n < 0 ? -errno : -EIO;
    g->last_ms = now_ms;
    memcpy(g->last, id, 16);
    memcpy(out, id, 16);
    return 0;
}

void ids_format(const uint8_t id[16], char out[33])
{
    static const char hex[] = "0123456789abcdef";
    for (int i = 0; i < 16; i++) {
        out[2 * i] = hex[id[i] >> 4];
        out[2 * i + 1] = hex[id[i] & 15];
    }
    out[32] = '\0';
}

static int nibble(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int ids_parse(const char *s, uint8_t out[16])
{
    if (strlen(s) != 32)
        return -1;
    for (int i = 0; i < 16; i++) {
        int hi = nibble(s[2 * i]), lo = nibble(s[2 * i + 1]);
        if (hi < 0 || lo < 0)
            return -1;
        out[i] = (uint8_t)(hi << 4 | lo);
    }
    return 0;
}
