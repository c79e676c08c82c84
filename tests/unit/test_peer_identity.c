/* Who a TLS caller of the Migration service is (peer_identity.h): the
 * certificate profile and the allowed identities, on certificates the openssl
 * tool makes (the same ones an operator would). */
#include "testutil.h"

#include <errno.h>

#include "config.h"
#include "peer_identity.h"

static char *dir;

static void openssl(const char *args)
{
	char *cmd = pathf("cd %s && openssl %s >/dev/null 2>&1", dir, args);
	assert_int_equal(system(cmd), 0);
	free(cmd);
}

/* A certificate signed by the test CA: its PEM text (caller frees). */
static char *leaf(const char *name, const char *extensions)
{
	char *ext = pathf("%s/%s.ext", dir, name), *args, *path, *pem;
	FILE *f;
	long n;

	write_file(ext, extensions, strlen(extensions));
	args = pathf("req -newkey rsa:2048 -nodes -keyout %s.key -out %s.csr -subj /CN=%s", name, name, name);
	openssl(args);
	free(args);
	args = pathf("x509 -req -in %s.csr -CA ca.crt -CAkey ca.key -CAcreateserial -out %s.crt -days 1 -extfile %s.ext",
		     name, name, name);
	openssl(args);
	free(args);
	path = pathf("%s/%s.crt", dir, name);
	assert_non_null(f = fopen(path, "r"));
	fseek(f, 0, SEEK_END);
	n = ftell(f);
	rewind(f);
	assert_non_null(pem = calloc(1, (size_t)n + 1));
	assert_int_equal(fread(pem, 1, (size_t)n, f), (size_t)n);
	fclose(f);
	free(path);
	free(ext);
	return pem;
}

static int setup(void **state)
{
	(void)state;
	dir = temp_dir();
	openssl("req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 1 -subj /CN=test-ca");
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	rm_tree(dir);
	free(dir);
	return 0;
}

static void policy_parse_refuses_what_would_let_anyone_in(void **state)
{
	struct peer_policy p;
	char *error = NULL;

	(void)state;
	assert_int_equal(peer_policy_parse(XEVF_DEFAULT_PEER_IDENTITIES, &p, &error), 0);
	assert_int_equal(p.nallowed, 3);
	peer_policy_free(&p);
	assert_int_equal(peer_policy_parse("urn:a,,urn:b*,", &p, &error), 0);
	assert_int_equal(p.nallowed, 2);
	assert_string_equal(p.allowed[1], "urn:b*");
	peer_policy_free(&p);
	static const char *const bad[] = {"", ",", "*", "urn:a,*", "urn:*:b", "local", "urn:a b", "urn:\"x\""};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(peer_policy_parse(bad[i], &p, &error), -EINVAL);
		assert_non_null(error);
		free(error);
		error = NULL;
		assert_int_equal(p.nallowed, 0);
	}
}

static void check(const char *allowed, const char *pem, int want, const char *want_text)
{
	struct peer_policy p;
	char *error = NULL, *identity = NULL, *why = NULL;

	assert_int_equal(peer_policy_parse(allowed, &p, &error), 0);
	assert_int_equal(peer_identify(&p, pem, &identity, &why), want);
	if (want == 0) {
		assert_string_equal(identity, want_text);
		assert_null(why);
	} else {
		assert_null(identity);
		assert_non_null(why);
		if (!strstr(why, want_text))
			fail_msg("'%s' does not say '%s'", why, want_text);
	}
	free(identity);
	free(why);
	peer_policy_free(&p);
}

static void an_agent_certificate_names_its_identity(void **state)
{
	char *node = leaf("node-x", "subjectAltName=DNS:localhost,URI:urn:other,URI:urn:xevf:node:worker-7\n"
				    "extendedKeyUsage=serverAuth,clientAuth\n");

	(void)state;
	/* the first URI an allowed identity matches; prefixes end in '*' */
	check(XEVF_DEFAULT_PEER_IDENTITIES, node, 0, "urn:xevf:node:worker-7");
	check("urn:xevf:node:worker-7", node, 0, "urn:xevf:node:worker-7");
	check("urn:other,urn:xevf:*", node, 0, "urn:other");
	/* exact means exact */
	check("urn:xevf:node:worker", node, -EACCES, "/CN=node-x names no allowed identity");
	free(node);
}

static void certificates_outside_the_profile_are_refused(void **state)
{
	char *server_only = leaf("server-only", "subjectAltName=URI:urn:xevf:agent\nextendedKeyUsage=serverAuth\n");
	char *no_eku = leaf("no-eku", "subjectAltName=URI:urn:xevf:agent\n");
	char *no_uri = leaf("no-uri", "subjectAltName=DNS:urn.xevf.agent\nextendedKeyUsage=clientAuth\n");
	char *sub_ca = leaf("sub-ca", "basicConstraints=critical,CA:TRUE\nsubjectAltName=URI:urn:xevf:agent\n"
				      "extendedKeyUsage=clientAuth\n");
	char *ca = NULL, *path = pathf("%s/ca.crt", dir);
	FILE *f = fopen(path, "r");

	(void)state;
	assert_non_null(f);
	assert_non_null(ca = calloc(1, 8192));
	assert_true(fread(ca, 1, 8191, f) > 0);
	fclose(f);
	check(XEVF_DEFAULT_PEER_IDENTITIES, server_only, -EACCES, "/CN=server-only lacks the extended key usage clientAuth");
	check(XEVF_DEFAULT_PEER_IDENTITIES, no_eku, -EACCES, "lacks the extended key usage clientAuth");
	check(XEVF_DEFAULT_PEER_IDENTITIES, no_uri, -EACCES, "has no URI subject alternative name");
	check(XEVF_DEFAULT_PEER_IDENTITIES, sub_ca, -EACCES, "/CN=sub-ca is a CA's certificate");
	check(XEVF_DEFAULT_PEER_IDENTITIES, ca, -EACCES, "/CN=test-ca is a CA's certificate");
	check(XEVF_DEFAULT_PEER_IDENTITIES, "not a certificate", -EACCES, "could not be read");
	check(XEVF_DEFAULT_PEER_IDENTITIES, NULL, -EACCES, "could not be read");
	free(server_only);
	free(no_eku);
	free(no_uri);
	free(sub_ca);
	free(ca);
	free(path);
}

static void identities_kept_in_the_state_file_are_plain(void **state)
{
	(void)state;
	assert_true(peer_identity_valid("local"));
	assert_true(peer_identity_valid("urn:xevf:node:worker-7.example_a/b"));
	assert_false(peer_identity_valid(""));
	assert_false(peer_identity_valid(NULL));
	assert_false(peer_identity_valid("urn:x y"));
	assert_false(peer_identity_valid("urn:x\ny"));
	char long_one[PEER_IDENTITY_MAX + 2];
	memset(long_one, 'a', sizeof(long_one) - 1);
	long_one[sizeof(long_one) - 1] = '\0';
	assert_false(peer_identity_valid(long_one));
	long_one[PEER_IDENTITY_MAX] = '\0';
	assert_true(peer_identity_valid(long_one));
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(policy_parse_refuses_what_would_let_anyone_in),
		cmocka_unit_test(an_agent_certificate_names_its_identity),
		cmocka_unit_test(certificates_outside_the_profile_are_refused),
		cmocka_unit_test(identities_kept_in_the_state_file_are_plain),
	};
	return cmocka_run_group_tests(tests, setup, teardown);
}
