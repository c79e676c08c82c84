#include "steering.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

static bool listed(const char *const *v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (v[i] == s || (v[i] && s && strcmp(v[i], s) == 0))
			return true;
	return false;
}

static const struct steer_reservation *reservation_of(const struct steer_input *in, const char *id, size_t *index)
{
	for (size_t i = 0; i < in->nres; i++)
		if (strcmp(in->res[i].vf, id) == 0) {
			*index = i;
			return &in->res[i];
		}
	return NULL;
}

/* May this allocation be the reservation's target pod's? */
static enum steer_verdict judge(const struct steer_input *in, const struct steer_reservation *r,
				const struct kube_pod **pod)
{
	*pod = NULL;
	if (!in->pods_known || in->npods == 0)
		return STEER_OFFERED;
	for (size_t i = 0; i < in->npods; i++)
		if (kube_pod_runs_vm(&in->pods[i], r->vm_namespace, r->vm_name)) {
			*pod = &in->pods[i];
			return STEER_OFFERED;
		}
	*pod = &in->pods[0];
	return STEER_WITHHELD;
}

int steer(const struct steer_input *in, struct steer_output *out, struct steer_note *notes)
{
	const char **reserved = calloc(in->navail + 1, sizeof(*reserved));
	size_t nreserved = 0, added = 0;

	memset(out, 0, sizeof(*out));
	out->avail = calloc(in->navail + in->nmust + 1, sizeof(*out->avail));
	out->must = calloc(in->nmust + in->navail + 1, sizeof(*out->must));
	if (!reserved || !out->avail || !out->must) {
		free(reserved);
		steer_output_free(out);
		return -ENOMEM;
	}
	for (size_t i = 0; i < in->nmust; i++)
		out->must[out->nmust++] = in->must[i];
	for (size_t i = 0; i < in->nres; i++)
		notes[i] = (struct steer_note){STEER_NOT_PENDING, NULL};
	for (size_t i = 0; i < in->navail; i++) {
		size_t k = 0;
		const struct steer_reservation *r = reservation_of(in, in->avail[i], &k);
		if (!r) {
			out->avail[out->navail++] = in->avail[i];
			continue;
		}
		reserved[nreserved++] = in->avail[i];
		if (!r->pending || listed(out->must, out->nmust, in->avail[i]) || out->nmust >= in->size)
			continue;
		notes[k].verdict = judge(in, r, &notes[k].pod);
		if (notes[k].verdict == STEER_OFFERED) {
			out->must[out->nmust++] = in->avail[i];
			added++;
		}
	}
	if (out->navail + added < in->size) {
		/* reserved VFs only when the unreserved ones do not suffice */
		for (size_t i = 0; i < nreserved; i++)
			out->avail[out->navail++] = reserved[i];
	} else {
		for (size_t i = 0; i < out->nmust; i++)
			if (!listed(out->avail, out->navail, out->must[i]))
				out->avail[out->navail++] = out->must[i];
	}
	free(reserved);
	return 0;
}

void steer_output_free(struct steer_output *out)
{
	free(out->avail);
	free(out->must);
	memset(out, 0, sizeof(*out));
}
