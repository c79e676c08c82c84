#include "preferred.h"

#include <errno.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

struct pf_group {
	const char *pf;
	size_t *members; /* indexes into the candidate array, in address order */
	size_t n;
	size_t taken;
	bool used_by_must;
};

struct picker {
	const struct pref_candidate *avail;
	const char **out;
	size_t nout;
};

static bool already_out(const struct picker *p, const char *id)
{
	for (size_t i = 0; i < p->nout; i++)
		if (strcmp(p->out[i], id) == 0)
			return true;
	return false;
}

static int cmp_str_ptr(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int cmp_idx_by_id(const void *a, const void *b, void *ctx)
{
	const struct pref_candidate *c = ctx;
	return strcmp(c[*(const size_t *)a].id, c[*(const size_t *)b].id);
}

/* Groups the chosen candidates by PF, PFs in address order. */
static int group_by_pf(const struct pref_candidate *c, const size_t *idx, size_t n,
		       struct pf_group **groups, size_t *ngroups)
{
	*groups = calloc(n ? n : 1, sizeof(**groups));
	*ngroups = 0;
	if (!*groups)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		struct pf_group *g = NULL;
		for (size_t j = 0; j < *ngroups; j++)
			if (strcmp((*groups)[j].pf, c[idx[i]].pf) == 0)
				g = &(*groups)[j];
		if (!g) {
			size_t at = *ngroups;
			while (at > 0 && strcmp((*groups)[at - 1].pf, c[idx[i]].pf) > 0) {
				(*groups)[at] = (*groups)[at - 1];
				at--;
			}
			g = &(*groups)[at];
			memset(g, 0, sizeof(*g));
			g->pf = c[idx[i]].pf;
			(*ngroups)++; /* counted first, so that the caller frees it on failure */
			g->members = calloc(n, sizeof(size_t));
			if (!g->members)
				return -ENOMEM;
		}
		g->members[g->n++] = idx[i];
	}
	for (size_t j = 0; j < *ngroups; j++)
		qsort_r((*groups)[j].members, (*groups)[j].n, sizeof(size_t), cmp_idx_by_id, (void *)c);
	return 0;
}

static void take_from(struct picker *p, struct pf_group *g, size_t *need)
{
	while (*need > 0 && g->taken < g->n) {
		p->out[p->nout++] = p->avail[g->members[g->taken++]].id;
		(*need)--;
	}
}

static void pick_pack(struct picker *p, struct pf_group *g, size_t ng, size_t need)
{
	/* PFs that the must-include devices already occupy cost nothing more. */
	for (size_t i = 0; i < ng && need > 0; i++)
		if (g[i].used_by_must)
			take_from(p, &g[i], &need);
	while (need > 0) {
		struct pf_group *best_fit = NULL, *largest = NULL;
		for (size_t i = 0; i < ng; i++) {
			size_t left = g[i].n - g[i].taken;
			if (left == 0)
				continue;
			if (left >= need && (!best_fit || left < best_fit->n - best_fit->taken))
				best_fit = &g[i];
			if (!largest || left > largest->n - largest->taken)
				largest = &g[i];
		}
		if (!largest)
			return;
		take_from(p, best_fit ? best_fit : largest, &need);
	}
}

static void pick_spread(struct picker *p, struct pf_group *g, size_t ng, size_t need)
{
	/* Order: PFs the must-include devices do not use first, then most free first. */
	struct pf_group **order = calloc(ng ? ng : 1, sizeof(*order)); /* NOLINT(bugprone-sizeof-expression): an array of pointers */
	size_t no = 0;

	if (!order)
		return;
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < ng; i++)
			if (g[i].used_by_must == (pass == 1))
				order[no++] = &g[i];
	for (size_t i = 1; i < no; i++) { /* stable insertion sort by free count, desc */
		struct pf_group *x = order[i];
		size_t j = i;
		while (j > 0 && order[j - 1]->used_by_must == x->used_by_must && order[j - 1]->n < x->n) {
			order[j] = order[j - 1];
			j--;
		}
		order[j] = x;
	}
	while (need > 0) {
		bool progress = false;
		for (size_t i = 0; i < no && need > 0; i++) {
			if (order[i]->taken < order[i]->n) {
				size_t one = 1;
				take_from(p, order[i], &one);
				need--;
				progress = true;
			}
		}
		if (!progress)
			break;
	}
	free(order);
}

/* The NUMA node to pick from: the must-include devices' node when it can hold
 * the rest, else the lowest node that can; -4: none can, take from all. One
 * pass counts every node (a node has few distinct values). */
static int best_numa_node(const struct pref_candidate *avail, const size_t *pool, size_t npool, size_t need,
			  int must_numa)
{
	struct node_count {
		int node;
		size_t n;
	} *counts = calloc(npool + 1, sizeof(*counts));
	size_t ncounts = 0;
	int best = -4;

	for (size_t i = 0; counts && i < npool; i++) {
		size_t k = 0;
		while (k < ncounts && counts[k].node != avail[pool[i]].numa_node)
			k++;
		if (k == ncounts)
			counts[ncounts++] = (struct node_count){avail[pool[i]].numa_node, 0};
		counts[k].n++;
	}
	for (size_t k = 0; k < ncounts; k++) {
		int node = counts[k].node;
		if (counts[k].n < need)
			continue;
		if (best == -4 || (node == must_numa && best != must_numa) || (best != must_numa && node < best))
			best = node;
	}
	free(counts);
	return best;
}

int preferred_pick(const struct pref_candidate *avail, size_t navail,
		   const struct pref_candidate *must, size_t nmust, size_t size,
		   enum alloc_policy policy, const char ***out, size_t *nout)
{
	struct picker p = {.avail = avail};
	size_t *pool = NULL, npool = 0, *chosen = NULL, nchosen = 0, need;
	struct pf_group *groups = NULL;
	size_t ngroups = 0;
	int must_numa = -2; /* -2: no must-include device; -3: several nodes */
	int rc = -ENOMEM;

	*out = NULL;
	*nout = 0;
	p.out = calloc(nmust + navail + 1, sizeof(*p.out));
	pool = calloc(navail + 1, sizeof(*pool));
	chosen = calloc(navail + 1, sizeof(*chosen));
	if (!p.out || !pool || !chosen)
		goto done;
	for (size_t i = 0; i < nmust; i++) {
		if (already_out(&p, must[i].id))
			continue;
		p.out[p.nout++] = must[i].id;
		if (must_numa == -2)
			must_numa = must[i].numa_node;
		else if (must_numa != must[i].numa_node)
			must_numa = -3;
	}
	/* the must-include ids, sorted, so that each available one is looked up
	 * in log time (avail[] holds no id twice: the caller refuses that) */
	qsort(p.out, p.nout, sizeof(*p.out), cmp_str_ptr);
	for (size_t i = 0; i < navail; i++)
		if (!p.nout || !bsearch(&avail[i].id, p.out, p.nout, sizeof(*p.out), cmp_str_ptr))
			pool[npool++] = i;
	need = size > p.nout ? size - p.nout : 0;

	if (need > 0) {
		int best = best_numa_node(avail, pool, npool, need, must_numa);
		for (size_t i = 0; i < npool; i++)
			if (best == -4 || avail[pool[i]].numa_node == best)
				chosen[nchosen++] = pool[i];
		if (group_by_pf(avail, chosen, nchosen, &groups, &ngroups))
			goto done;
		for (size_t i = 0; i < ngroups; i++)
			for (size_t j = 0; j < nmust; j++)
				if (strcmp(groups[i].pf, must[j].pf) == 0)
					groups[i].used_by_must = true;
		if (policy == ALLOC_SPREAD)
			pick_spread(&p, groups, ngroups, need);
		else
			pick_pack(&p, groups, ngroups, need);
	}
	qsort(p.out, p.nout, sizeof(*p.out), cmp_str_ptr);
	*out = p.out;
	*nout = p.nout;
	p.out = NULL;
	rc = 0;
done:
	for (size_t i = 0; i < ngroups; i++)
		free(groups[i].members);
	free(groups);
	free(chosen);
	free(pool);
	free(p.out);
	return rc;
}
