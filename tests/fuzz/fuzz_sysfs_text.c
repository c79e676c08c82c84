/* libFuzzer target: the parsers of text read from sysfs (attribute values,
 * link targets that must be PCI addresses) and the id escaping for messages. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text.h"
#include "xevf_sysfs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *text = malloc(size + 1);
	struct xevf_pci_addr a;
	long v;

	if (!text)
		return 0;
	memcpy(text, data, size);
	text[size] = '\0';
	if (xevf_pci_addr_parse(text, &a) == 0) {
		char again[XEVF_PCI_ADDR_SIZE];
		struct xevf_pci_addr b;
		xevf_pci_addr_format(&a, again);
		/* a parsed address formats back to one that parses to the same */
		if (xevf_pci_addr_parse(again, &b) || memcmp(&a, &b, sizeof(a)))
			abort();
	}
	(void)xevf_parse_long(text, 0, &v);
	(void)xevf_parse_long(text, 16, &v);
	free(printable_id(text));
	free(text);
	return 0;
}
