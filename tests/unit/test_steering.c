/* Reservation steering as a pure function: which VFs a preferred allocation
 * may choose from, given the reservations and the pods waiting on the node. */
#include "testutil.h"

#include "steering.h"

static char *avail[] = {(char *)"0000:03:00.1", (char *)"0000:03:00.2", (char *)"0000:03:00.3"};

static bool has(const char **v, size_t n, const char *s)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(v[i], s) == 0)
			return true;
	return false;
}

static void test_nothing_reserved_changes_nothing(void **state)
{
	struct steer_input in = {avail, 3, NULL, 0, 1, NULL, 0, NULL, 0, false};
	struct steer_output out;
	(void)state;

	assert_int_equal(steer(&in, &out, NULL), 0);
	assert_int_equal(out.navail, 3);
	assert_int_equal(out.nmust, 0);
	steer_output_free(&out);
}

static void test_pending_reservation_goes_to_the_next_allocation_when_nobody_can_tell(void **state)
{
	struct steer_reservation res = {"0000:03:00.2", true, "prod", "db"};
	struct steer_input in = {avail, 3, NULL, 0, 1, &res, 1, NULL, 0, false};
	struct steer_output out;
	struct steer_note note;
	(void)state;

	assert_int_equal(steer(&in, &out, &note), 0);
	assert_int_equal(note.verdict, STEER_OFFERED);
	assert_null(note.pod);
	assert_int_equal(out.nmust, 1);
	assert_string_equal(out.must[0], "0000:03:00.2");
	assert_true(has(out.avail, out.navail, "0000:03:00.2"));
	steer_output_free(&out);
}

static void test_target_pod_gets_it_and_other_pods_do_not(void **state)
{
	struct steer_reservation res = {"0000:03:00.2", true, "prod", "db"};
	struct kube_pod web = {(char *)"prod", (char *)"web-7d9f", NULL};
	struct kube_pod launcher = {(char *)"prod", (char *)"virt-launcher-db-abcde", (char *)"db"};
	struct kube_pod pods[] = {web, launcher};
	struct steer_input in = {avail, 3, NULL, 0, 1, &res, 1, pods, 2, true};
	struct steer_output out;
	struct steer_note note;
	(void)state;

	assert_int_equal(steer(&in, &out, &note), 0);
	assert_int_equal(note.verdict, STEER_OFFERED);
	assert_string_equal(note.pod->name, "virt-launcher-db-abcde");
	assert_int_equal(out.nmust, 1);
	steer_output_free(&out);

	/* only the web pod waits: the reserved VF is withheld while others suffice */
	in.npods = 1;
	assert_int_equal(steer(&in, &out, &note), 0);
	assert_int_equal(note.verdict, STEER_WITHHELD);
	assert_string_equal(note.pod->name, "web-7d9f");
	assert_int_equal(out.nmust, 0);
	assert_false(has(out.avail, out.navail, "0000:03:00.2"));
	steer_output_free(&out);
}

static void test_reserved_vfs_only_when_the_others_do_not_suffice(void **state)
{
	struct steer_reservation res[] = {{"0000:03:00.1", false, "a", "x"}, {"0000:03:00.3", false, "b", "y"}};
	struct steer_input in = {avail, 3, NULL, 0, 1, res, 2, NULL, 0, false};
	struct steer_output out;
	struct steer_note notes[2];
	(void)state;

	assert_int_equal(steer(&in, &out, notes), 0);
	assert_int_equal(out.navail, 1);
	assert_string_equal(out.avail[0], "0000:03:00.2");
	assert_int_equal(notes[0].verdict, STEER_NOT_PENDING);
	steer_output_free(&out);

	in.size = 2;
	assert_int_equal(steer(&in, &out, notes), 0);
	assert_int_equal(out.navail, 3);
	steer_output_free(&out);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_nothing_reserved_changes_nothing),
		cmocka_unit_test(test_pending_reservation_goes_to_the_next_allocation_when_nobody_can_tell),
		cmocka_unit_test(test_target_pod_gets_it_and_other_pods_do_not),
		cmocka_unit_test(test_reserved_vfs_only_when_the_others_do_not_suffice),
	};
	return cmocka_run_group_tests_name("steering", tests, NULL, NULL);
}
