/* The extended resources the pools serve, as the threads that are not the
 * daemon's (the target-pod watch, the node hooks) read them: one copy under
 * its own lock, set by the daemon's thread whenever the pools change. */
#ifndef XEVF_DAEMON_SERVED_RESOURCES_H
#define XEVF_DAEMON_SERVED_RESOURCES_H

#include <pthread.h>
#include <stddef.h>

struct served_resources {
	pthread_mutex_t lock;  /* never held across I/O */
	char **names;
	size_t n;
};

void served_resources_init(struct served_resources *s);
void served_resources_destroy(struct served_resources *s);
/* Takes a copy of names (out of memory: none served until the next set). */
void served_resources_set(struct served_resources *s, char *const *names, size_t n);
/* The first of wanted that a pool serves (malloc'd), or NULL. */
char *served_resources_first(struct served_resources *s, char *const *wanted, size_t n);

#endif
