/* libFuzzer target: an HTTP answer as `xevf-agent status` reads it from the
 * status socket (http_parse_answer). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "http_unix.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* a copy of exactly size bytes, so that ASan sees any read past them */
	char *answer = malloc(size ? size : 1);
	size_t body_at = 0;
	int code;

	if (!answer)
		return 0;
	memcpy(answer, data, size);
	code = http_parse_answer(answer, size, &body_at);
	if (code >= 0 && (code < 100 || code > 999 || body_at > size))
		abort();
	free(answer);
	return 0;
}
