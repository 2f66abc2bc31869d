/* cli_common.h: what the command-line programs share: exit codes, argument parsing, JSON output.
 *
 * Exit codes mean the same thing in every tally program, so scripts can branch on them:
 *   0  success (for `tally`: every posting succeeded; for `tally-audit verify`: everything matched)
 *   1  a posting was rejected, or the audit found a difference (the output says which)
 *   2  usage error: bad command, option or argument (the message says what to type instead)
 *   3  the data directory or cluster could not be used (missing, locked, corrupt, unreachable)
 *   4  internal or system error (I/O, out of memory)
 */
#ifndef TALLY_CLI_COMMON_H
#define TALLY_CLI_COMMON_H

#include <stdbool.h>
#include <stdint.h>

#include <cjson/cJSON.h>

enum cli_exit {
    CLI_EXIT_OK = 0,
    CLI_EXIT_REJECTED = 1,
    CLI_EXIT_USAGE = 2,
    CLI_EXIT_DATA = 3,
    CLI_EXIT_INTERNAL = 4,
};

/* Parse an unsigned decimal number (no sign, no trailing text). Returns false on bad text. */
bool cli_parse_u64(const char *s, uint64_t *out);

/* Parse a time: "now" (gives now_ms), an ISO date or date-time in UTC, or milliseconds. */
bool cli_parse_time(const char *s, uint64_t now_ms, uint64_t *out);

/* Parse a duration: a number with a unit suffix ms, s, m, h, d (e.g. "7d", "15m"). */
bool cli_parse_duration(const char *s, uint64_t *out_ms);

/* Parse a posting id: 32 hex digits, or a decimal number n (the id with n in its low 8 bytes,
 * big-endian, so small ids typed by people stay readable). */
bool cli_parse_id(const char *s, uint8_t out[16]);

/* Format an id as 32 hex digits. */
void cli_format_id(const uint8_t id[16], char out[33]);

/* The wall clock in milliseconds since the epoch (the CLI's default batch timestamp). */
uint64_t cli_now_ms(void);

/* Print a JSON document on stdout followed by a newline, and free it. */
void cli_print_json(cJSON *doc);

/* Add a uint64 to a JSON object: as a number when it fits a double exactly (<= 2^53), else as a
 * decimal string, so no value is ever rounded. */
void cli_json_add_u64(cJSON *obj, const char *name, uint64_t v);
void cli_json_add_i64(cJSON *obj, const char *name, int64_t v);

/* Add a time as an ISO-8601 UTC string ("never" for UINT64_MAX, null for 0). */
void cli_json_add_time(cJSON *obj, const char *name, uint64_t t);

#endif
