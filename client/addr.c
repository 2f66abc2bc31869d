/* addr.c: parse replica addresses (see addr.h). */
#include "addr.h"

#include <stdbool.h>
#include <string.h>

static bool addr_port_ok(const char *s, size_t n)
{
    if (n == 0 || n >= ADDR_PORT_SIZE)
        return false;
    uint32_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        v = v * 10 + (uint32_t)(s[i] - '0');
    }
    return v >= 1 && v <= 65535;
}

int addr_split(const char *text, char host[ADDR_HOST_SIZE], char port[ADDR_PORT_SIZE])
{
    size_t len = strnlen(text, TALLY_WIRE_ADDRESS_SIZE);
    if (len == 0 || len >= TALLY_WIRE_ADDRESS_SIZE)
        return TALLY_ECONFIG;
    const char *colon, *host_start = text, *host_end;
    if (text[0] == '[') {
        const char *close = memchr(text, ']', len);
        if (close == NULL || close[1] != ':')
            return TALLY_ECONFIG;
        host_start = text + 1;
        host_end = close;
        colon = close + 1;
    } else {
        colon = memrchr(text, ':', len);
        if (colon == NULL || memchr(text, ':', (size_t)(colon - text)) != NULL)
            return TALLY_ECONFIG; /* no port, or an IPv6 literal without brackets */
        host_end = colon;
    }
    size_t host_len = (size_t)(host_end - host_start);
    size_t port_len = len - (size_t)(colon + 1 - text);
    if (host_len == 0 || !addr_port_ok(colon + 1, port_len))
        return TALLY_ECONFIG;
    for (size_t i = 0; i < host_len; i++) {
        unsigned char ch = (unsigned char)host_start[i];
        if (ch < 0x21 || ch > 0x7e || ch == '[' || ch == ']' || ch == ',')
            return TALLY_ECONFIG;
    }
    memcpy(host, host_start, host_len);
    host[host_len] = '\0';
    memcpy(port, colon + 1, port_len);
    port[port_len] = '\0';
    return 0;
}

/* One item of the list, [s, s + n), blanks trimmed. */
static int addr_item(const char *s, size_t n, struct addr *out)
{
    while (n > 0 && (*s == ' ' || *s == '\t')) {
        s++;
        n--;
    }
    while (n > 0 && (s[n - 1] == ' ' || s[n - 1] == '\t'))
        n--;
    if (n == 0 || n >= TALLY_WIRE_ADDRESS_SIZE)
        return TALLY_ECONFIG;
    memset(out->text, 0, sizeof(out->text));
    memcpy(out->text, s, n);
    char host[ADDR_HOST_SIZE], port[ADDR_PORT_SIZE];
    return addr_split(out->text, host, port);
}

int addr_list_parse(const char *text, struct addr *out, uint32_t max, uint32_t *count)
{
    *count = 0;
    if (text == NULL)
        return TALLY_ECONFIG;
    const char *s = text;
    for (;;) {
        const char *comma = strchr(s, ',');
        size_t n = comma != NULL ? (size_t)(comma - s) : strlen(s);
        struct addr a;
        if (addr_item(s, n, &a) != 0)
            return TALLY_ECONFIG;
        bool seen = false;
        for (uint32_t i = 0; i < *count && !seen; i++)
            seen = strcmp(out[i].text, a.text) == 0;
        if (!seen) {
            if (*count == max)
                return TALLY_ECONFIG;
            out[(*count)++] = a;
        }
        if (comma == NULL)
            return 0;
        s = comma + 1;
    }
}

int addr_from_wire(const char field[TALLY_WIRE_ADDRESS_SIZE], struct addr *out)
{
    if (!tally_wire_address_valid(field) || field[0] == '\0')
        return TALLY_ECONFIG;
    memcpy(out->text, field, TALLY_WIRE_ADDRESS_SIZE);
    char host[ADDR_HOST_SIZE], port[ADDR_PORT_SIZE];
    return addr_split(out->text, host, port);
}
