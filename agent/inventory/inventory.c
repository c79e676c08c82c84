#include "inventory.h"

#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

struct inventory_private {
	struct inventory pub;        /* first: the public part */
	atomic_uint refs;
	char **resources;            /* owned copies, one per VF */
	const struct inventory_vf **by_addr; /* the VFs in address order: look-ups are binary searches */
};

static int cmp_note(const void *a, const void *b)
{
	const struct inventory_note *x = a, *y = b;

	if (!x->addr || !y->addr)
		return !x->addr - !y->addr; /* notes without an address last */
	return strcmp(x->addr, y->addr);
}

static int cmp_vf_addr(const void *a, const void *b)
{
	return strcmp((*(const struct inventory_vf *const *)a)->vf->addr, (*(const struct inventory_vf *const *)b)->vf->addr);
}

static int cmp_addr_vf(const void *addr, const void *vf)
{
	return strcmp(addr, (*(const struct inventory_vf *const *)vf)->vf->addr);
}

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
		p->by_addr = calloc(total + 1, sizeof(*p->by_addr)); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
	}
	if (!p || !p->pub.vfs || !p->resources || !p->by_addr) {
		if (p) {
			free(p->pub.vfs);
			free(p->resources);
			free(p->by_addr);
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
			p->pub.vfs[k++] = (struct inventory_vf){&host->pfs[i].vfs[j], &host->pfs[i], NULL};
	p->pub.nvfs = total;
	for (size_t i = 0; i < total; i++)
		p->by_addr[i] = &p->pub.vfs[i];
	qsort(p->by_addr, total, sizeof(*p->by_addr), cmp_vf_addr); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
	if (nnotes > 1)
		qsort(notes, nnotes, sizeof(*notes), cmp_note);
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
	free(p->by_addr);
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
	const struct inventory_private *p = (const struct inventory_private *)inv;
	const struct inventory_vf *const *found = inv && inv->nvfs ? bsearch(addr, p->by_addr, inv->nvfs, sizeof(*p->by_addr), cmp_addr_vf) : NULL; /* NOLINT(bugprone-sizeof-expression) */

	return found ? *found : NULL;
}

const char *inventory_note_for(const struct inventory *inv, const char *addr)
{
	const struct inventory_note key = {(char *)addr, NULL};
	const struct inventory_note *found = inv && inv->nnotes ? bsearch(&key, inv->notes, inv->nnotes, sizeof(key), cmp_note) : NULL;

	return found ? found->reason : NULL;
}
