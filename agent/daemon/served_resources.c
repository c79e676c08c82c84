#include "served_resources.h"

#include <stdlib.h>
#include <string.h>

#include "xevf_util.h"

void served_resources_init(struct served_resources *s)
{
	pthread_mutex_init(&s->lock, NULL);
	s->names = NULL;
	s->n = 0;
}

void served_resources_destroy(struct served_resources *s)
{
	xevf_strv_free(s->names, s->n);
	pthread_mutex_destroy(&s->lock);
}

void served_resources_set(struct served_resources *s, char *const *names, size_t n)
{
	char **copy = xevf_strv_dup(names, n);

	pthread_mutex_lock(&s->lock);
	xevf_strv_free(s->names, s->n);
	s->names = copy;
	s->n = copy ? n : 0;
	pthread_mutex_unlock(&s->lock);
}

char *served_resources_first(struct served_resources *s, char *const *wanted, size_t n)
{
	char *found = NULL;

	pthread_mutex_lock(&s->lock);
	for (size_t i = 0; i < n && !found; i++)
		if (xevf_strv_index(s->names, s->n, wanted[i]) >= 0)
			found = strdup(wanted[i]);
	pthread_mutex_unlock(&s->lock);
	return found;
}
