/* One line per event on stderr: ts=... level=... event=... key=value ...
 * Values that may hold spaces are written quoted by the caller ("reason=\"%s\""). */
#ifndef XEVF_LOG_H
#define XEVF_LOG_H

#include <stdbool.h>

enum log_level { XLOG_DEBUG, XLOG_INFO, XLOG_WARN, XLOG_ERROR };

/* Parses "debug", "info", "warn"/"warning", "error"; false when unknown. */
bool log_level_parse(const char *name, enum log_level *out);
void log_set_level(enum log_level level);
bool log_enabled(enum log_level level);

void xlog(enum log_level level, const char *event, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

#define log_debug(ev, ...) xlog(XLOG_DEBUG, ev, __VA_ARGS__)
#define log_info(ev, ...) xlog(XLOG_INFO, ev, __VA_ARGS__)
#define log_warn(ev, ...) xlog(XLOG_WARN, ev, __VA_ARGS__)
#define log_error(ev, ...) xlog(XLOG_ERROR, ev, __VA_ARGS__)

#endif
