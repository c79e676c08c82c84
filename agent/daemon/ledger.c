#include "ledger.h"

#include <stdlib.h>
#include <string.h>

#include "xevf_util.h"

static struct ledger_entry *find(const struct ledger *l, const char *id)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->entries[i].id, id) == 0)
			return &l->entries[i];
	return NULL;
}

void ledger_init(struct ledger *l)
{
	memset(l, 0, sizeof(*l));
	pthread_mutex_init(&l->lock, NULL);
}

void ledger_record(struct ledger *l, const char *id, int64_t now)
{
	char *copy = strdup(id);
	struct ledger_entry *e, *grown;

	pthread_mutex_lock(&l->lock);
	if (!(e = find(l, id))) {
		grown = copy ? realloc(l->entries, (l->n + 1) * sizeof(*grown)) : NULL;
		if (grown) {
			l->entries = grown;
			e = &l->entries[l->n++];
			e->id = copy;
			copy = NULL;
		}
	}
	if (e)
		e->at_ms = now;
	pthread_mutex_unlock(&l->lock);
	free(copy);
}

bool ledger_recent(struct ledger *l, const char *id, int64_t now)
{
	const struct ledger_entry *e;
	bool recent;

	pthread_mutex_lock(&l->lock);
	e = find(l, id);
	recent = e && now - e->at_ms < LEDGER_GRACE_MS;
	pthread_mutex_unlock(&l->lock);
	return recent;
}

static void remove_at(struct ledger *l, size_t i)
{
	free(l->entries[i].id);
	l->entries[i] = l->entries[--l->n];
}

void ledger_forget(struct ledger *l, const char *id)
{
	struct ledger_entry *e;

	pthread_mutex_lock(&l->lock);
	if ((e = find(l, id)))
		remove_at(l, (size_t)(e - l->entries));
	pthread_mutex_unlock(&l->lock);
}

void ledger_prune(struct ledger *l, const struct inventory *inv)
{
	pthread_mutex_lock(&l->lock);
	for (size_t i = 0; i < l->n;) {
		if (!inventory_find(inv, l->entries[i].id))
			remove_at(l, i);
		else
			i++;
	}
	pthread_mutex_unlock(&l->lock);
}

char **ledger_recent_ids(struct ledger *l, int64_t now, size_t *n)
{
	char **ids;
	bool failed = false;

	*n = 0;
	pthread_mutex_lock(&l->lock);
	ids = calloc(l->n + 1, sizeof(*ids));
	for (size_t i = 0; ids && i < l->n && !failed; i++)
		if (now - l->entries[i].at_ms < LEDGER_GRACE_MS)
			failed = !(ids[(*n)++] = strdup(l->entries[i].id));
	pthread_mutex_unlock(&l->lock);
	if (failed) {
		xevf_strv_free(ids, *n);
		*n = 0;
		return NULL;
	}
	return ids;
}

void ledger_free(struct ledger *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->entries[i].id);
	free(l->entries);
	pthread_mutex_destroy(&l->lock);
	l->entries = NULL;
	l->n = 0;
}
