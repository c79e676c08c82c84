#include "inventory.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct inventory_private {
	struct inventory pub;        /* first: the public part */
	atomic_uint refs;
	char **resources;            /* owned copies, one per VF */
};

void inventory_notes_free(struct inventory_note *notes, size_t n)
{
	for (size_t i = 0; notes && i < n; i++) {
		free(notes[i].addr);
		free(notes[i].reason);
	}
	free(notes);
}

struct inventory *inventory_new(struct xevf_host *host, struct inventory_note *notes, size_t nnotes)
{
	struct inventory_private *p = calloc(1, sizeof(*p));
	size_t total = 0, k = 0;

	for (size_t i = 0; host && i < host->npfs; i++)
		total += host->pfs[i].nvfs;
	if (p) {
		p->pub.vfs = calloc(total + 1, sizeof(*p->pub.vfs));
		p->resources = calloc(total + 1, sizeof(*p->resources));
	}
	if (!p || !p->pub.vfs || !p->resources) {
		if (p) {
			free(p->pub.vfs);
			free(p->resources);
		}
		free(p);
		xevf_host_free(host);
		inventory_notes_free(notes, nnotes);
		return NULL;
	}
	atomic_init(&p->refs, 1);
	p->pub.host = host;
	p->pub.notes = notes;
	p->pub.nnotes = nnotes;
	for (size_t i = 0; host && i < host->npfs; i++)
		for (size_t j = 0; j < host->pfs[i].nvfs; j++)
			p->pub.vfs[k++] = (struct inventory_vf){&host->pfs[i].vfs[j], &host->pfs[i], NULL, false};
	p->pub.nvfs = total;
	return &p->pub;
}

struct inventory *inventory_ref(struct inventory *inv)
{
	if (inv)
		atomic_fetch_add(&((struct inventory_private *)inv)->refs, 1);
	return inv;
}

void inventory_unref(struct inventory *inv)
{
	struct inventory_private *p = (struct inventory_private *)inv;

	if (!p || atomic_fetch_sub(&p->refs, 1) != 1)
		return;
	for (size_t i = 0; i < inv->nvfs; i++)
		free(p->resources[i]);
	free(p->resources);
	free(inv->vfs);
	inventory_notes_free(inv->notes, inv->nnotes);
	xevf_host_free(inv->host);
	free(p);
}

int inventory_set_resource(struct inventory *inv, size_t i, const char *resource)
{
	struct inventory_private *p = (struct inventory_private *)inv;

	if (i >= inv->nvfs)
		return -EINVAL;
	free(p->resources[i]);
	p->resources[i] = resource ? strdup(resource) : NULL;
	inv->vfs[i].resource = p->resources[i];
	return resource && !p->resources[i] ? -ENOMEM : 0;
}

const struct inventory_vf *inventory_find(const struct inventory *inv, const char *addr)
{
	for (size_t i = 0; inv && i < inv->nvfs; i++)
		if (strcmp(inv->vfs[i].vf->addr, addr) == 0)
			return &inv->vfs[i];
	return NULL;
}

const char *inventory_note_for(const struct inventory *inv, const char *addr)
{
	for (size_t i = 0; inv && i < inv->nnotes; i++)
		if (inv->notes[i].addr && strcmp(inv->notes[i].addr, addr) == 0)
			return inv->notes[i].reason;
	return NULL;
}
