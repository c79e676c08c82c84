/* <state dir>/migrations.json: the active records, so that reservations and
 * migrations outlive a restart. Rendered from the registry under the service's
 * lock, written outside it (atomically, in order: a snapshot older than one
 * already written is dropped). A file that does not parse is set aside,
 * never trusted. */
#ifndef XEVF_MIG_STATE_FILE_H
#define XEVF_MIG_STATE_FILE_H

#include <pthread.h>
#include <stddef.h>
#include <stdint.h>

#include "registry.h"

struct state_file {
	char *path;               /* NULL: no state dir, nothing kept */
	pthread_mutex_t write_lock; /* orders writers; guards nothing else */
	uint64_t rendered;        /* snapshots rendered (under the service's lock) */
	uint64_t written;         /* the newest snapshot on disk (under write_lock) */
	char *broken;             /* set at load: why nothing may be written (an unreadable
				     file that could not be moved aside is never overwritten) */
};

/* A snapshot waiting to be written. */
struct state_snapshot {
	char *text;
	uint64_t seq;
};

int state_file_init(struct state_file *f, const char *state_dir);
void state_file_destroy(struct state_file *f);

/* Under the service's lock. */
void state_file_render(struct state_file *f, const struct registry *reg, struct state_snapshot *out);
/* Without it: 0 or -errno and a message naming the file. Frees the text. */
int state_file_write(struct state_file *f, struct state_snapshot *snap, char **error);

/* Reads the file: 0 and its records (the phases a restart cut short moved on:
 * a save stream to interrupted, a restore back to reserved); 0 and none when
 * there is no file; -errno and why when it is unreadable or corrupt: then it
 * has been moved aside (*aside says where), or, when even that failed, every
 * later write is refused so that it is never overwritten. */
int state_file_load(struct state_file *f, struct record **records, char **aside, char **error);

/* The parser behind it: 0 and the records of a file's text, or -EINVAL and why. */
int state_file_parse(const char *text, struct record **records, char **error);

#endif
