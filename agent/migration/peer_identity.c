/* The Migration service's judge of TLS callers: certificate profile checks
 * and the allowed identities (peer_identity.h). */
#include "peer_identity.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "fail.h"
#include "xevf_util.h"

bool peer_identity_valid(const char *identity)
{
	size_t n = identity ? strlen(identity) : 0;

	if (n == 0 || n > PEER_IDENTITY_MAX)
		return false;
	return strspn(identity, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789:._/-") == n;
}

void peer_policy_free(struct peer_policy *p)
{
	xevf_strv_free(p->allowed, p->nallowed);
	p->allowed = NULL;
	p->nallowed = 0;
}

static int policy_add(struct peer_policy *p, const char *entry, size_t n, char **error)
{
	char *copy = strndup(entry, n), **grown;
	size_t stem = copy && n && copy[n - 1] == '*' ? n - 1 : n;

	if (!copy)
		return agent_fail(error, ENOMEM, "out of memory");
	/* a '*' only at the end, and never alone: "any certificate of the CA" is what this replaces */
	copy[stem] = '\0';
	if (stem == 0 || strcmp(copy, "local") == 0 || !peer_identity_valid(copy)) {
		int rc = agent_fail(error, EINVAL, "peer identity '%.*s' is not a URI of [A-Za-z0-9:._/-] (at most %d "
				    "characters, '*' only at the end after a prefix)", (int)(n < 200 ? n : 200), entry,
				    PEER_IDENTITY_MAX);
		free(copy);
		return rc;
	}
	if (stem < n)
		copy[stem] = '*';
	if (!(grown = realloc(p->allowed, (p->nallowed + 1) * sizeof(*grown)))) {
		free(copy);
		return agent_fail(error, ENOMEM, "out of memory");
	}
	p->allowed = grown;
	p->allowed[p->nallowed++] = copy;
	return 0;
}

int peer_policy_parse(const char *list, struct peer_policy *p, char **error)
{
	const char *at = list ? list : "";

	memset(p, 0, sizeof(*p));
	while (*at) {
		size_t n = strcspn(at, ",");
		if (n && policy_add(p, at, n, error)) {
			peer_policy_free(p);
			return -EINVAL;
		}
		at += n + (at[n] == ',');
	}
	if (!p->nallowed)
		return agent_fail(error, EINVAL, "no peer identity is allowed: other agents could not call at all");
	return 0;
}

static bool allowed(const struct peer_policy *p, const char *uri)
{
	for (size_t i = 0; i < p->nallowed; i++) {
		const char *a = p->allowed[i];
		size_t n = strlen(a);
		if (a[n - 1] == '*' ? strncmp(uri, a, n - 1) == 0 : strcmp(uri, a) == 0)
			return true;
	}
	return false;
}

/* The first URI SAN that is an allowed identity (malloc'd), or NULL; *seen
 * counts the URI SANs. */
static char *allowed_uri(const struct peer_policy *p, X509 *x, int *seen)
{
	GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
	char *found = NULL;

	*seen = 0;
	for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !found; i++) {
		const GENERAL_NAME *gn = sk_GENERAL_NAME_value(names, i);
		if (gn->type != GEN_URI)
			continue;
		(*seen)++;
		const unsigned char *data = ASN1_STRING_get0_data(gn->d.uniformResourceIdentifier);
		int len = ASN1_STRING_length(gn->d.uniformResourceIdentifier);
		char *uri = len > 0 && len <= PEER_IDENTITY_MAX ? strndup((const char *)data, (size_t)len) : NULL;
		/* strndup stops at a NUL: such a name is not the one it claims */
		if (uri && strlen(uri) == (size_t)len && peer_identity_valid(uri) && allowed(p, uri))
			found = uri;
		else
			free(uri);
	}
	GENERAL_NAMES_free(names);
	return found;
}

static int refuse(char **why, X509 *x, const char *what)
{
	char *subject = x ? X509_NAME_oneline(X509_get_subject_name(x), NULL, 0) : NULL;
	int rc = agent_fail(why, EACCES, "certificate %.200s %s", subject ? subject : "(unreadable)", what);

	OPENSSL_free(subject);
	return rc;
}

int peer_identify(const struct peer_policy *p, const char *cert_pem, char **identity, char **why)
{
	BIO *bio = cert_pem ? BIO_new_mem_buf(cert_pem, -1) : NULL;
	X509 *x = bio ? PEM_read_bio_X509(bio, NULL, NULL, NULL) : NULL;
	int seen = 0, rc;

	*identity = NULL;
	BIO_free(bio);
	if (!x)
		rc = refuse(why, NULL, "could not be read from the TLS session");
	else if (X509_check_ca(x) != 0)
		rc = refuse(why, x, "is a CA's certificate; each agent needs its own end-entity certificate");
	else if (!(X509_get_extension_flags(x) & EXFLAG_XKUSAGE) || !(X509_get_extended_key_usage(x) & XKU_SSL_CLIENT))
		rc = refuse(why, x, "lacks the extended key usage clientAuth");
	else if (!(*identity = allowed_uri(p, x, &seen)))
		rc = refuse(why, x, seen ? "names no allowed identity in its URI subject alternative names (see --peer-identities)"
					 : "has no URI subject alternative name to identify the caller (see docs/certificates.md)");
	else
		rc = 0;
	X509_free(x);
	return rc;
}
