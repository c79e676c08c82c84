/* A reservation on this node's own initiative: a migration's target pod came,
 * the source node's agent describes the VF its pod holds, this node reserves
 * a compatible free VF as Reserve would. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fail.h"
#include "migration_private.h"

#define DESCRIBE_METHOD "/xevf.migration.v1.Migration/Describe"
#define PEER_CALL_TIMEOUT_MS 5000
/* who made it, in the records and the log; no TCP caller has this name, so
 * only the node's own socket ends it early */
#define AUTO_OWNER "kubevirt-target-pod"

/* The source agent's fingerprint of the VF its pod holds, or NULL and *why. */
static Xevf__Migration__V1__Fingerprint *describe_source(struct migration *m, const char *peer,
							  const char *source_namespace, const char *source_pod,
							  const char *resource, char **why)
{
	Xevf__Migration__V1__DescribeRequest req = XEVF__MIGRATION__V1__DESCRIBE_REQUEST__INIT;
	ProtobufCMessage *reply = NULL;
	struct rpc_result res = {0};
	grpc_channel *ch = mig_peer_channel(m, peer);

	if (!ch) {
		agent_fail(why, EHOSTUNREACH, "the source node's agent at %s cannot be reached", peer);
		return NULL;
	}
	req.pod_namespace = (char *)source_namespace;
	req.pod_name = (char *)source_pod;
	req.resource_name = (char *)resource;
	if (rpc_unary(ch, DESCRIBE_METHOD, (const ProtobufCMessage *)&req, &xevf__migration__v1__fingerprint__descriptor,
		      &reply, PEER_CALL_TIMEOUT_MS, &res) < 0 || !reply)
		agent_fail(why, EREMOTEIO, "the source node's agent at %s did not describe the VF of pod %s/%s: %s", peer,
			   source_namespace, source_pod, res.details && *res.details ? res.details : "no details");
	rpc_result_clear(&res);
	grpc_channel_destroy(ch);
	return (Xevf__Migration__V1__Fingerprint *)reply;
}

/* An existing record of this id (the pod was seen again, or the agent
 * restarted): 1 and its VF (malloc'd) when it is this node's reservation,
 * 0 when there is none, -errno and *why otherwise. */
static int reserved_already(struct migration *m, const char *id, char **vf, char **why)
{
	bool found;
	struct record *r = mig_record_copy(m, id, &found);
	int rc = 0;

	if (found && !r)
		rc = agent_fail(why, ENOMEM, "out of memory");
	else if (r && r->role != ROLE_TARGET)
		rc = agent_fail(why, EEXIST, "migration %s is this node's source side", id);
	else if (r)
		rc = (*vf = strdup(r->vf)) ? 1 : agent_fail(why, ENOMEM, "out of memory");
	record_free(r);
	return rc;
}

int migration_reserve_from_peer(struct migration *m, const char *peer, const char *id, const char *vm_namespace,
				const char *vm_name, const char *source_namespace, const char *source_pod,
				const char *resource, char **vf, char **why)
{
	Xevf__Migration__V1__ReserveRequest req = XEVF__MIGRATION__V1__RESERVE_REQUEST__INIT;
	Xevf__Migration__V1__Fingerprint *fp = NULL;
	struct record *r = NULL;
	const char *invalid;
	grpc_status_code code;
	int rc;

	*vf = NULL;
	*why = NULL;
	if ((rc = reserved_already(m, id, vf, why)) != 0)
		return rc < 0 ? rc : 0;
	if (!(fp = describe_source(m, peer, source_namespace, source_pod, resource, why)))
		return -EREMOTEIO;
	if (!fp->migratable) {
		rc = agent_fail(why, EOPNOTSUPP, "the source VF %s on node %s cannot migrate: %s", fp->vf, fp->node,
				*fp->not_migratable_reason ? fp->not_migratable_reason : "no reason given");
		goto out;
	}
	req.migration_id = (char *)id;
	req.vm_namespace = (char *)vm_namespace;
	req.vm_name = (char *)vm_name;
	req.source = fp;
	if ((invalid = mig_reserve_invalid(&req))) {
		rc = agent_fail(why, EINVAL, "migration %s: %s", id, invalid);
		goto out;
	}
	code = mig_reserve(m, &req, AUTO_OWNER, &r, why);
	if (code == GRPC_STATUS_OK && !(*vf = strdup(r->vf)))
		rc = agent_fail(why, ENOMEM, "out of memory");
	else if (code != GRPC_STATUS_OK)
		rc = code == GRPC_STATUS_FAILED_PRECONDITION ? -ESRCH : -EAGAIN;
out:
	record_free(r);
	protobuf_c_message_free_unpacked((ProtobufCMessage *)fp, NULL);
	return rc;
}
