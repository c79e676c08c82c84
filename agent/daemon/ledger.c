#include "ledger.h"

#include <stdlib.h>
#include <string.h>

static struct ledger_entry *find(const struct ledger *l, const char *id)
{
	for (size_t i = 0; i < l->n; i++)
		if (strcmp(l->entries[i].id, id) == 0)
			return &l->entries[i];
	return NULL;
}

void ledger_record(struct ledger *l, const char *id, int64_t now)
{
	struct ledger_entry *e = find(l, id), *grown;

	if (!e) {
		char *copy = strdup(id);
		grown = copy ? realloc(l->entries, (l->n + 1) * sizeof(*grown)) : NULL;
		if (!grown) {
			free(copy);
			return;
		}
		l->entries = grown;
		e = &l->entries[l->n++];
		e->id = copy;
	}
	e->at_ms = now;
}

bool ledger_recent(const struct ledger *l, const char *id, int64_t now)
{
	const struct ledger_entry *e = find(l, id);
	return e && now - e->at_ms < LEDGER_GRACE_MS;
}

static void remove_at(struct ledger *l, size_t i)
{
	free(l->entries[i].id);
	l->entries[i] = l->entries[--l->n];
}

void ledger_forget(struct ledger *l, const char *id)
{
	struct ledger_entry *e = find(l, id);
	if (e)
		remove_at(l, (size_t)(e - l->entries));
}

void ledger_prune(struct ledger *l, const struct inventory *inv)
{
	for (size_t i = 0; i < l->n;) {
		if (!inventory_find(inv, l->entries[i].id))
			remove_at(l, i);
		else
			i++;
	}
}

char **ledger_recent_ids(const struct ledger *l, int64_t now, size_t *n)
{
	char **ids = calloc(l->n + 1, sizeof(*ids));

	*n = 0;
	for (size_t i = 0; ids && i < l->n; i++)
		if (now - l->entries[i].at_ms < LEDGER_GRACE_MS)
			ids[(*n)++] = l->entries[i].id;
	return ids;
}

void ledger_free(struct ledger *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->entries[i].id);
	free(l->entries);
	memset(l, 0, sizeof(*l));
}
