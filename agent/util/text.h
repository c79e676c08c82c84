/* Small text helpers for values that come from outside. */
#ifndef XEVF_AGENT_TEXT_H
#define XEVF_AGENT_TEXT_H

#include <stdbool.h>
#include <stddef.h>

/* A printable, length-limited copy of untrusted text for messages and log
 * lines (malloc'd): quotes, backslashes and anything unprintable are written
 * as \xNN, so the text can neither end a quoted value nor start a line. */
char *printable_id(const char *id);

/* Frees a credential (a token, an Authorization header) after wiping it, so
 * that it does not linger in freed memory. NULL is fine. */
void text_free_secret(char *secret);

/* Equal strings, NULL counting as "" (fingerprint fields may be absent). */
bool text_eq(const char *a, const char *b);

/* Kubernetes names: an RFC 1123 label (at most 63 characters of [a-z0-9-],
 * alphanumeric at both ends: a namespace), and a subdomain (labels joined by
 * dots, at most 253 characters: most object names). */
bool text_dns_label(const char *s, size_t len);
bool text_dns_subdomain(const char *s);

#endif
