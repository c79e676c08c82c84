/* The Migration service's records: phases, the one transition function, the
 * bounded history; and the method table against protoc-c's descriptor. */
#include "testutil.h"

#include <errno.h>

#include "migration.h"
#include "registry.h"

static void test_phase_names_round_trip(void **state)
{
	(void)state;
	for (int p = 0; p < PHASE_COUNT; p++) {
		enum phase back;
		assert_true(phase_parse(phase_name((enum phase)p), &back));
		assert_int_equal(back, p);
	}
	enum phase none;
	assert_false(phase_parse("aborting", &none));
	assert_string_equal(phase_name(PHASE_RESERVED), "reserved");
}

static void test_transitions_follow_the_table(void **state)
{
	struct registry reg = {0};
	struct record *t = record_new("m-1", ROLE_TARGET, "0000:03:00.1", PHASE_RESERVED);
	struct record *s = record_new("m-2", ROLE_SOURCE, "0000:03:00.2", PHASE_SAVING);
	(void)state;

	registry_add(&reg, t);
	registry_add(&reg, s);
	/* a reservation never becomes a source phase; it may be committed as it is
	 * (QEMU moved the state; finish.c requires that its pod got the VF) */
	assert_int_equal(record_move(&reg, t, PHASE_SAVED), -EINVAL);
	struct record *h = record_new("m-3", ROLE_SOURCE, "0000:03:00.3", PHASE_HANDED_OVER);
	registry_add(&reg, h);
	assert_int_equal(record_move(&reg, h, PHASE_SAVING), -EINVAL); /* QEMU's VF is never opened */
	assert_int_equal(record_move(&reg, h, PHASE_RESTORING), -EINVAL);
	assert_int_equal(record_move(&reg, h, PHASE_COMMITTED), 0);
	assert_int_equal(record_move(&reg, t, PHASE_RESTORING), 0);
	assert_int_equal(record_move(&reg, t, PHASE_RESTORED), 0);
	assert_int_equal(record_move(&reg, s, PHASE_RESTORED), -EINVAL);
	assert_int_equal(record_move(&reg, s, PHASE_SAVED), 0);
	assert_int_equal(record_move(&reg, t, PHASE_COMMITTED), 0);
	/* ended: in the history, and it stays ended */
	assert_null(registry_find(&reg, "m-1"));
	assert_ptr_equal(registry_find_ended(&reg, "m-1"), t);
	assert_int_equal(record_move(&reg, t, PHASE_RESERVED), -EINVAL);
	assert_ptr_equal(registry_find_vf(&reg, "0000:03:00.2", ROLE_SOURCE), s);
	assert_null(registry_find_vf(&reg, "0000:03:00.2", ROLE_TARGET));
	registry_free(&reg);
}

static void test_history_is_bounded(void **state)
{
	struct registry reg = {0};
	(void)state;

	for (int i = 0; i < REGISTRY_ENDED_MAX + 10; i++) {
		char id[16];
		snprintf(id, sizeof(id), "m-%d", i);
		struct record *r = record_new(id, ROLE_TARGET, "0000:03:00.1", PHASE_RESERVED);
		registry_add(&reg, r);
		assert_int_equal(record_move(&reg, r, PHASE_RELEASED), 0);
	}
	assert_int_equal(reg.nended, REGISTRY_ENDED_MAX);
	assert_non_null(registry_find_ended(&reg, "m-73"));
	assert_null(registry_find_ended(&reg, "m-0"));
	registry_free(&reg);
}

static void test_migration_ids(void **state)
{
	char longest[MIGRATION_ID_MAX + 2];
	(void)state;

	assert_true(migration_id_valid("mig-1.a_B"));
	assert_false(migration_id_valid(""));
	assert_false(migration_id_valid("a b"));
	assert_false(migration_id_valid(NULL));
	memset(longest, 'a', sizeof(longest) - 1);
	longest[sizeof(longest) - 1] = '\0';
	assert_false(migration_id_valid(longest));
	longest[MIGRATION_ID_MAX] = '\0';
	assert_true(migration_id_valid(longest));
}

static void test_every_rpc_has_a_row(void **state)
{
	char *error = NULL;
	(void)state;

	assert_int_equal(migration_methods_check(&error), 0);
	assert_null(error);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_phase_names_round_trip),
		cmocka_unit_test(test_transitions_follow_the_table),
		cmocka_unit_test(test_history_is_bounded),
		cmocka_unit_test(test_migration_ids),
		cmocka_unit_test(test_every_rpc_has_a_row),
	};
	return cmocka_run_group_tests_name("registry", tests, NULL, NULL);
}
