/* log.h: tallyd's structured log: one line per event on stderr, "key=value" pairs.
 *
 *   ts=2026-11-24T23:59:01.123Z level=info event=leader replica=1 term=3
 *
 * Lines are written whole with one write(2), so replicas sharing a terminal do not interleave
 * mid-line. The format string gives the pairs after `event=`.
 */
#ifndef TALLY_SERVER_LOG_H
#define TALLY_SERVER_LOG_H

void log_event(const char *level, const char *event, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define LOG_INFO(event, ...) log_event("info", event, __VA_ARGS__)
#define LOG_WARN(event, ...) log_event("warn", event, __VA_ARGS__)
#define LOG_ERROR(event, ...) log_event("error", event, __VA_ARGS__)

#endif
