/* Who a TLS caller of the Migration service is, judged from its certificate.
 *
 * The certificate profile (docs/certificates.md): an end-entity certificate
 * (never a CA's), with extended key usage clientAuth, carrying a URI subject
 * alternative name that an allowed identity matches. The caller's identity is
 * that URI; it owns the reservations it makes. */
#ifndef XEVF_MIG_PEER_IDENTITY_H
#define XEVF_MIG_PEER_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>

#define PEER_IDENTITY_MAX 128

struct peer_policy {
	char **allowed;   /* exact URIs, or a prefix ending in '*' */
	size_t nallowed;
};

/* "a,b*,c" -> the policy; 0, or -EINVAL naming the bad entry in *error. */
int peer_policy_parse(const char *list, struct peer_policy *p, char **error);
void peer_policy_free(struct peer_policy *p);

/* 0 and the caller's identity (malloc'd), or -EACCES and why (malloc'd,
 * names the certificate's subject). cert_pem: the leaf certificate, already
 * verified against the CA by the TLS handshake. */
int peer_identify(const struct peer_policy *p, const char *cert_pem, char **identity, char **why);

/* An identity as kept in the state file: "local" or a URI of
 * [A-Za-z0-9:._/-], 1..PEER_IDENTITY_MAX characters. */
bool peer_identity_valid(const char *identity);

#endif
