/* GetPreferredAllocation's choice. */
#include "testutil.h"

#include "preferred.h"

#define PF_A "0000:03:00.0"
#define PF_B "0000:13:00.0"
#define PF_C "0000:23:00.0"

/* PF_A (node 0): a1..a4, PF_B (node 0): b1..b2, PF_C (node 1): c1..c3 */
static const struct pref_candidate all[] = {
	{"0000:03:00.1", PF_A, 0}, {"0000:03:00.2", PF_A, 0}, {"0000:03:00.3", PF_A, 0}, {"0000:03:00.4", PF_A, 0},
	{"0000:13:00.1", PF_B, 0}, {"0000:13:00.2", PF_B, 0},
	{"0000:23:00.1", PF_C, 1}, {"0000:23:00.2", PF_C, 1}, {"0000:23:00.3", PF_C, 1},
};
#define NALL (sizeof(all) / sizeof(all[0]))

static char *pick(const struct pref_candidate *must, size_t nmust, size_t size, enum alloc_policy policy)
{
	const char **out = NULL;
	size_t n = 0;
	char *joined = calloc(1, 512);

	assert_int_equal(preferred_pick(all, NALL, must, nmust, size, policy, &out, &n), 0);
	for (size_t i = 0; i < n; i++) {
		if (i)
			strcat(joined, ",");
		strcat(joined, out[i] + 5); /* drop the "0000:" domain for readability */
	}
	free(out);
	return joined;
}

static void expect(const char *got, const char *want)
{
	if (strcmp(got, want) != 0)
		fail_msg("picked %s, expected %s", got, want);
	free((void *)got);
}

static void test_pack_uses_the_fewest_pfs_with_best_fit(void **state)
{
	(void)state;
	/* Two fit on PF_B exactly: whole PF_A stays free for larger requests. */
	expect(pick(NULL, 0, 2, ALLOC_PACK), "13:00.1,13:00.2");
	/* Three: PF_A can (node 0 has 6), PF_B cannot; PF_A is the best fit. */
	expect(pick(NULL, 0, 3, ALLOC_PACK), "03:00.1,03:00.2,03:00.3");
	/* Five on node 0: PF_A whole plus one of PF_B. */
	expect(pick(NULL, 0, 5, ALLOC_PACK), "03:00.1,03:00.2,03:00.3,03:00.4,13:00.1");
}

static void test_spread_uses_the_most_pfs(void **state)
{
	(void)state;
	expect(pick(NULL, 0, 2, ALLOC_SPREAD), "03:00.1,13:00.1");
	expect(pick(NULL, 0, 3, ALLOC_SPREAD), "03:00.1,03:00.2,13:00.1");
}

static void test_one_numa_node_is_preferred(void **state)
{
	const struct pref_candidate must_c[] = {{"0000:23:00.2", PF_C, 1}};
	(void)state;
	/* With a device of node 1 required, the rest also comes from node 1. */
	expect(pick(must_c, 1, 2, ALLOC_PACK), "23:00.1,23:00.2");
	expect(pick(must_c, 1, 3, ALLOC_SPREAD), "23:00.1,23:00.2,23:00.3");
	/* Seven fit in no single node: both nodes are used. */
	expect(pick(NULL, 0, 7, ALLOC_PACK), "03:00.1,03:00.2,03:00.3,03:00.4,23:00.1,23:00.2,23:00.3");
}

static void test_must_include_is_always_kept(void **state)
{
	const struct pref_candidate must[] = {{"0000:03:00.4", PF_A, 0}, {"0000:03:00.4", PF_A, 0}};
	(void)state;
	/* PF_A is in use already: pack continues there. Duplicates count once. */
	expect(pick(must, 2, 2, ALLOC_PACK), "03:00.1,03:00.4");
	/* spread goes elsewhere first */
	expect(pick(must, 2, 2, ALLOC_SPREAD), "03:00.4,13:00.1");
	/* size smaller than must-include: must-include still wins */
	expect(pick(must, 1, 0, ALLOC_PACK), "03:00.4");
}

static void test_more_than_available_returns_all(void **state)
{
	(void)state;
	expect(pick(NULL, 0, 20, ALLOC_PACK),
	       "03:00.1,03:00.2,03:00.3,03:00.4,13:00.1,13:00.2,23:00.1,23:00.2,23:00.3");
}

static void test_choice_is_deterministic(void **state)
{
	(void)state;
	for (int i = 0; i < 20; i++) {
		expect(pick(NULL, 0, 4, ALLOC_PACK), "03:00.1,03:00.2,03:00.3,03:00.4");
		expect(pick(NULL, 0, 4, ALLOC_SPREAD), "03:00.1,03:00.2,13:00.1,13:00.2");
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_pack_uses_the_fewest_pfs_with_best_fit),
		cmocka_unit_test(test_spread_uses_the_most_pfs),
		cmocka_unit_test(test_one_numa_node_is_preferred),
		cmocka_unit_test(test_must_include_is_always_kept),
		cmocka_unit_test(test_more_than_available_returns_all),
		cmocka_unit_test(test_choice_is_deterministic),
	};
	return cmocka_run_group_tests_name("preferred", tests, NULL, NULL);
}
