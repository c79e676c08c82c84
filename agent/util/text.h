/* Small text helpers for values that come from outside. */
#ifndef XEVF_AGENT_TEXT_H
#define XEVF_AGENT_TEXT_H

#include <stdbool.h>

/* A printable, length-limited copy of an untrusted id for messages (malloc'd). */
char *printable_id(const char *id);

/* Equal strings, NULL counting as "" (fingerprint fields may be absent). */
bool text_eq(const char *a, const char *b);

#endif
