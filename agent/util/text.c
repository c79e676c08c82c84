#include "text.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

char *printable_id(const char *id)
{
	enum { LIMIT = 80, SIZE = LIMIT * 4 + 8 };
	size_t n = strnlen(id, LIMIT + 1), at = 0;
	char *out = malloc(SIZE);

	if (!out)
		return NULL;
	/* every character takes at most 4 bytes ("\\xNN"); "..." and NUL fit in 8 */
	for (size_t i = 0; i < n && i < LIMIT; i++) {
		unsigned char c = (unsigned char)id[i];
		if (isprint(c) && c != '\'' && c != '"' && c != '\\')
			out[at++] = (char)c;
		else
			at += (size_t)snprintf(out + at, SIZE - at, "\\x%02x", c);
	}
	if (n > LIMIT)
		at += (size_t)snprintf(out + at, SIZE - at, "...");
	out[at] = '\0';
	return out;
}


bool text_eq(const char *a, const char *b)
{
	return strcmp(a ? a : "", b ? b : "") == 0;
}

bool text_dns_label(const char *s, size_t len)
{
	if (len == 0 || len > 63 || !isalnum((unsigned char)s[0]) || !isalnum((unsigned char)s[len - 1]))
		return false;
	for (size_t i = 0; i < len; i++) {
		unsigned char c = (unsigned char)s[i];
		if (!(islower(c) || isdigit(c) || c == '-'))
			return false;
	}
	return true;
}

bool text_dns_subdomain(const char *s)
{
	size_t len = strlen(s);

	if (len == 0 || len > 253)
		return false;
	for (const char *label = s; label < s + len;) {
		const char *dot = memchr(label, '.', (size_t)(s + len - label));
		size_t n = dot ? (size_t)(dot - label) : (size_t)(s + len - label);
		if (!text_dns_label(label, n) || (dot && dot + 1 == s + len))
			return false;
		label += n + (dot ? 1 : 0);
	}
	return true;
}

void text_free_secret(char *secret)
{
	if (secret) {
		explicit_bzero(secret, strlen(secret)); /* not optimised away, unlike a memset before free */
		free(secret);
	}
}
