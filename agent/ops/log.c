#include "log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

static enum log_level min_level = XLOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

bool log_level_parse(const char *name, enum log_level *out)
{
	for (size_t i = 0; i < sizeof(level_names) / sizeof(level_names[0]); i++) {
		if (strcasecmp(name, level_names[i]) == 0) {
			*out = (enum log_level)i;
			return true;
		}
	}
	if (strcasecmp(name, "warning") == 0) {
		*out = XLOG_WARN;
		return true;
	}
	return false;
}

void log_set_level(enum log_level level)
{
	min_level = level;
}

bool log_enabled(enum log_level level)
{
	return level >= min_level;
}

/* At most LOG_BURST lines of one event per second; the rest are counted and
 * said in one line when the next second starts, so that a client repeating a
 * bad call cannot flood the log. */
#define LOG_BURST 20
#define LOG_TRACKED 64

static struct {
	const char *event; /* the callers' string literals */
	time_t second;
	unsigned lines, suppressed;
} rate[LOG_TRACKED];
static unsigned rate_next;
static pthread_mutex_t rate_lock = PTHREAD_MUTEX_INITIALIZER;

/* Under rate_lock: may this line go out? *dropped: lines of the event dropped
 * in the second that just ended, to say now. */
static bool rate_allows(const char *event, time_t second, unsigned *dropped)
{
	unsigned i;

	for (i = 0; i < LOG_TRACKED && !(rate[i].event && strcmp(rate[i].event, event) == 0); i++)
		;
	if (i == LOG_TRACKED) {
		i = rate_next++ % LOG_TRACKED;
		rate[i].event = event;
		rate[i].second = second;
		rate[i].lines = rate[i].suppressed = 0;
	}
	*dropped = 0;
	if (rate[i].second != second) {
		*dropped = rate[i].suppressed;
		rate[i].second = second;
		rate[i].lines = rate[i].suppressed = 0;
	}
	if (++rate[i].lines <= LOG_BURST)
		return true;
	rate[i].suppressed++;
	return false;
}

/* One event, one line, no terminal control: whatever came from outside is
 * written as \xNN where it is not printable (newlines, ESC, ...). */
static char *escaped(const char *body)
{
	size_t n = strlen(body), at = 0;
	char *out = malloc(n * 4 + 1);

	if (!out)
		return NULL;
	for (const unsigned char *p = (const unsigned char *)body; *p; p++) {
		if (*p < 0x20 || *p == 0x7f)
			at += (size_t)sprintf(out + at, "\\x%02x", *p);
		else
			out[at++] = (char)*p;
	}
	out[at] = '\0';
	return out;
}

static void emit(enum log_level level, const struct timespec *now, const char *event, const char *body)
{
	struct tm tm;
	char stamp[32];

	gmtime_r(&now->tv_sec, &tm);
	strftime(stamp, sizeof(stamp), "%Y-%m-%dT%H:%M:%S", &tm);
	fprintf(stderr, "ts=%s.%03ldZ level=%s event=%s%s%s\n", stamp, now->tv_nsec / 1000000L, level_names[level], event,
		body && *body ? " " : "", body ? body : "");
}

void xlog(enum log_level level, const char *event, const char *fmt, ...)
{
	struct timespec now;
	char *body = NULL, *clean;
	unsigned dropped;
	bool allowed;
	va_list ap;

	if (!log_enabled(level))
		return;
	clock_gettime(CLOCK_REALTIME, &now);
	pthread_mutex_lock(&rate_lock);
	allowed = rate_allows(event, now.tv_sec, &dropped);
	pthread_mutex_unlock(&rate_lock);
	if (dropped) {
		char note[96];
		snprintf(note, sizeof(note), "of=%s lines=%u seconds=1", event, dropped);
		emit(XLOG_WARN, &now, "log_suppressed", note);
	}
	if (!allowed)
		return;
	va_start(ap, fmt);
	if (vasprintf(&body, fmt, ap) < 0)
		body = NULL;
	va_end(ap);
	clean = body ? escaped(body) : NULL;
	emit(level, &now, event, clean);
	free(clean);
	free(body);
}
