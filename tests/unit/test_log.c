/* Log lines: one event, one line, no terminal control, bounded repetition. */
#include "testutil.h"

#include "log.h"

static char *capture(void (*emit)(void))
{
	char *dir = temp_dir(), *path = pathf("%s/log", dir), *text = NULL;
	int saved = dup(2);
	FILE *f;
	long len;

	assert_non_null(freopen(path, "w", stderr));
	emit();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	f = fopen(path, "r");
	fseek(f, 0, SEEK_END);
	len = ftell(f);
	rewind(f);
	text = calloc(1, (size_t)len + 1);
	assert_int_equal(fread(text, 1, (size_t)len, f), (size_t)len);
	fclose(f);
	rm_tree(dir);
	free(path);
	free(dir);
	return text;
}

static void injected(void)
{
	log_warn("allocate_refused", "reason=\"%s\"", "bad\nts=x level=error event=forged \x1b[31mred");
}

static void test_control_characters_are_escaped(void **state)
{
	char *text = capture(injected);
	(void)state;

	assert_non_null(strstr(text, "reason=\"bad\\x0ats=x level=error event=forged \\x1b[31mred\""));
	assert_int_equal(strchr(text, '\n') - text, (long)strlen(text) - 1); /* one line */
	assert_null(strchr(text, '\x1b'));
	free(text);
}

static void flood(void)
{
	for (int i = 0; i < 100; i++)
		log_info("flood_test", "i=%d", i);
}

static void test_repeated_events_are_rate_limited(void **state)
{
	char *text = capture(flood);
	size_t lines = 0;
	(void)state;

	for (const char *p = text; (p = strstr(p, "event=flood_test")); p++)
		lines++;
	assert_true(lines <= 40); /* 20 a second, and the test may straddle a second */
	free(text);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_control_characters_are_escaped),
		cmocka_unit_test(test_repeated_events_are_rate_limited),
	};
	return cmocka_run_group_tests_name("log", tests, NULL, NULL);
}
