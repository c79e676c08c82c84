/* Reservation steering for GetPreferredAllocation, as a pure function.
 *
 * A VF reserved for a migration goes to the migrating VM's target pod: while
 * its target pod has not got it (pending), it is made a must-include for an
 * allocation that may be that pod's, and reserved VFs are kept out of other
 * allocations while enough unreserved VFs remain. Whether an allocation may be
 * the target pod's: with the API server's list of pods waiting on this node,
 * yes when one of them runs the reservation's VM; without the list (no API
 * server, or it did not answer), yes: virt-controller creates the target pod
 * right after Reserve, so the next allocation is taken to be its. */
#ifndef XEVF_DP_STEERING_H
#define XEVF_DP_STEERING_H

#include <stdbool.h>
#include <stddef.h>

#include "kube.h"

struct steer_reservation {
	const char *vf;
	bool pending;                 /* its target pod has not got it yet */
	const char *vm_namespace, *vm_name;
};

struct steer_input {
	char *const *avail;           /* the kubelet's available ids */
	size_t navail;
	char *const *must;            /* the kubelet's must-include ids */
	size_t nmust;
	size_t size;                  /* allocation_size */
	const struct steer_reservation *res; /* reservations among avail[] */
	size_t nres;
	const struct kube_pod *pods;  /* pending pods that want the resource */
	size_t npods;
	bool pods_known;              /* pods[] is the API server's answer */
};

struct steer_output {
	const char **avail;           /* malloc'd arrays of borrowed strings */
	size_t navail;
	const char **must;
	size_t nmust;
};

enum steer_verdict {
	STEER_NOT_PENDING,    /* its pod has it, or no room: treated as any reserved VF */
	STEER_OFFERED,        /* made a must-include */
	STEER_WITHHELD,       /* pods wait, none of them the reservation's VM */
};

struct steer_note {
	enum steer_verdict verdict;
	const struct kube_pod *pod;   /* OFFERED: the target pod, when known; WITHHELD: the first waiting pod */
};

/* Fills out and notes[] (one per reservation). 0 or -ENOMEM. */
int steer(const struct steer_input *in, struct steer_output *out, struct steer_note *notes);
void steer_output_free(struct steer_output *out);

#endif
