/* libFuzzer target: the JSON configuration parser (a file an operator or a
 * Helm value writes). */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct agent_config cfg;
	char *error = NULL;

	if (config_parse_json((const char *)data, size, &cfg, &error) == 0) {
		if (config_finish(&cfg, &error) == 0 && cfg.npools == 0)
			abort(); /* finish always yields at least one pool */
		config_free(&cfg);
	} else if (!error) {
		abort(); /* every refusal says why */
	}
	free(error);
	return 0;
}
