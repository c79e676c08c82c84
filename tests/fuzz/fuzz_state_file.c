/* libFuzzer target: the migration state file (<state dir>/migrations.json),
 * which a crash, a full disk or a hand edit may leave in any shape. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "migration.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	size_t n;
	char *why = NULL;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = 0;
	if (migration_state_parse(text, &n, &why) != 0 && !why)
		abort(); /* every refusal says why */
	free(why);
	free(text);
	return 0;
}
