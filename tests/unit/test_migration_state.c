/* The migration state file parser, the state-stream checks and the CLI's
 * state file records. */
#include "testutil.h"

#include <errno.h>

#include "migrate.h"
#include "migration.h"
#include "state_stream.h"

static void test_state_file(void **state)
{
	(void)state;
	size_t n;
	char *why;

	assert_int_equal(migration_state_parse(
				 "{\"version\": 1, \"migrations\": [{\"id\": \"m-1\", \"role\": \"target\", \"vf\": "
				 "\"0000:03:00.1\", \"phase\": \"reserved\", \"expiresUnixMs\": 5}, {\"id\": \"m.2\", "
				 "\"role\": \"source\", \"vf\": \"0000:03:00.2\", \"phase\": \"saved\", \"expiresUnixMs\": 0}]}",
				 &n, &why),
			 0);
	assert_int_equal(n, 2);
	assert_null(why);

	struct {
		const char *text, *why;
	} bad[] = {
		{"", "not a JSON object"},
		{"[]", "not a JSON object"},
		{"{\"migrations\": []}", "no \"version\": 1"},
		{"{\"version\": 2, \"migrations\": []}", "no \"version\": 1"},
		{"{\"version\": 1}", "no \"migrations\" array"},
		{"{\"version\": 1, \"migrations\": [{\"id\": \"m\", \"role\": \"target\", \"vf\": \"nonsense\", "
		 "\"phase\": \"reserved\", \"expiresUnixMs\": 5}]}", "migrations[0] is incomplete or malformed"},
		{"{\"version\": 1, \"migrations\": [{\"id\": \"a b\", \"role\": \"target\", \"vf\": \"0000:03:00.1\", "
		 "\"phase\": \"reserved\", \"expiresUnixMs\": 5}]}", "migrations[0] is incomplete or malformed"},
		{"{\"version\": 1, \"migrations\": [{\"id\": \"m\", \"role\": \"boss\", \"vf\": \"0000:03:00.1\", "
		 "\"phase\": \"reserved\", \"expiresUnixMs\": 5}]}", "migrations[0] is incomplete or malformed"},
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		assert_int_equal(migration_state_parse(bad[i].text, &n, &why), -EINVAL);
		assert_non_null(why);
		assert_string_equal(why, bad[i].why);
		free(why);
	}
}

/* chunks of "abcdef" as a sender would make them */
static Xevf__Migration__V1__StateChunk chunk(uint64_t offset, const char *data, int last, uint64_t total,
					     const char *sha)
{
	Xevf__Migration__V1__StateChunk c = XEVF__MIGRATION__V1__STATE_CHUNK__INIT;
	c.offset = offset;
	c.data.data = (uint8_t *)data;
	c.data.len = strlen(data);
	c.last = last;
	c.total_bytes = total;
	c.sha256 = (char *)(sha ? sha : "");
	return c;
}

static void test_state_stream(void **state)
{
	(void)state;
	struct state_stream tx, rx;
	struct xevf_err err = XEVF_ERR_INIT;
	Xevf__Migration__V1__StateChunk c;

	assert_int_equal(state_stream_init(&tx), 0);
	state_stream_add(&tx, "abc", 3);
	state_stream_add(&tx, "def", 3);
	state_stream_finish(&tx);
	/* SHA-256("abcdef") */
	assert_string_equal(tx.digest, "bef57ec7f53a6d40beb640a780a639c83bc29ac8a9816f1fc6c5c6dcd93c4721");

	/* in order, checksum right */
	assert_int_equal(state_stream_init(&rx), 0);
	c = chunk(0, "abc", 0, 0, NULL);
	assert_int_equal(state_stream_accept(&rx, &c, 16, "m", &err), 0);
	c = chunk(3, "def", 1, 6, tx.digest);
	assert_int_equal(state_stream_accept(&rx, &c, 16, "m", &err), 0);
	assert_true(rx.done);
	c = chunk(6, "x", 0, 0, NULL);
	assert_int_equal(state_stream_accept(&rx, &c, 16, "m", &err), -EALREADY);
	state_stream_free(&rx);

	/* a gap */
	assert_int_equal(state_stream_init(&rx), 0);
	c = chunk(3, "def", 0, 0, NULL);
	assert_int_equal(state_stream_accept(&rx, &c, 16, "m-9", &err), -EPROTO);
	assert_string_equal(xevf_err_msg(&err), "migration m-9: chunk at offset 3, expected 0 (lost or reordered data)");
	state_stream_free(&rx);

	/* too large for the receiver */
	assert_int_equal(state_stream_init(&rx), 0);
	c = chunk(0, "abcdef", 0, 0, NULL);
	assert_int_equal(state_stream_accept(&rx, &c, 4, "m", &err), -EPROTO);
	assert_non_null(strstr(xevf_err_msg(&err), "chunk too large"));
	state_stream_free(&rx);

	/* one byte changed */
	assert_int_equal(state_stream_init(&rx), 0);
	c = chunk(0, "abcdeF", 1, 6, tx.digest);
	assert_int_equal(state_stream_accept(&rx, &c, 16, "m", &err), -EBADMSG);
	assert_non_null(strstr(xevf_err_msg(&err), "corrupted in transit; nothing is resumed"));
	state_stream_free(&rx);

	/* a size that does not add up */
	assert_int_equal(state_stream_init(&rx), 0);
	c = chunk(0, "abcdef", 1, 7, tx.digest);
	assert_int_equal(state_stream_accept(&rx, &c, 16, "m", &err), -EBADMSG);
	assert_string_equal(xevf_err_msg(&err), "migration m: 6 bytes received, the source sent 7");
	state_stream_free(&rx);
	state_stream_free(&tx);
	xevf_err_clear(&err);
}

static void test_state_file_records(void **state)
{
	(void)state;
	uint8_t *buf;
	size_t len;
	char *error = NULL;
	const unsigned char good[] = {0, 0, 0, 3, 'a', 'b', 'c'};
	const unsigned char cut[] = {0, 0, 0, 9, 'a'};
	const unsigned char huge[] = {0x7f, 0, 0, 0};
	const unsigned char half[] = {0, 0};

	FILE *f = fmemopen((void *)good, sizeof(good), "rb");
	assert_int_equal(migrate_read_record(f, &buf, &len, &error), 1);
	assert_int_equal(len, 3);
	assert_memory_equal(buf, "abc", 3);
	free(buf);
	assert_int_equal(migrate_read_record(f, &buf, &len, &error), 0);
	fclose(f);

	f = fmemopen((void *)cut, sizeof(cut), "rb");
	assert_int_equal(migrate_read_record(f, &buf, &len, &error), -1);
	assert_string_equal(error, "the file ends inside a record (truncated)");
	free(error);
	fclose(f);

	f = fmemopen((void *)huge, sizeof(huge), "rb");
	assert_int_equal(migrate_read_record(f, &buf, &len, &error), -1);
	assert_non_null(strstr(error, "not a state file, or corrupted"));
	free(error);
	fclose(f);

	f = fmemopen((void *)half, sizeof(half), "rb");
	assert_int_equal(migrate_read_record(f, &buf, &len, &error), -1);
	assert_string_equal(error, "the file ends inside a record header (truncated)");
	free(error);
	fclose(f);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_state_file),
		cmocka_unit_test(test_state_stream),
		cmocka_unit_test(test_state_file_records),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
