/*-------------------------------------------------------------------------
 *
 * key_shape.c
 *	  The one place in the hokusai tool that knows what an API key looks
 *	  like: "hk_live_" or "hk_test_" followed by base62 characters.
 *
 * parse.c uses it to tell a key_prefix from a full key given by mistake,
 * report.c to cut every key-shaped run in a message down to its
 * key_prefix.  Nothing else in the tool looks inside a key.
 *
 * src/bin/hokusai/key_shape.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdbool.h>
#include <string.h>

#include "key_shape.h"

#define KEY_HEAD_LEN	8		/* "hk_live_" or "hk_test_" */

/* Is c one of the base62 digits 0-9, a-z, A-Z? */
static bool
is_base62(char c)
{
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		(c >= 'A' && c <= 'Z');
}

/*
 * The length of the key-shaped run at the start of s: the head hk_live_ or
 * hk_test_ and every base62 character after it; 0 when s has no such head.
 * A run of KEY_SHAPE_PREFIX_LEN is a key_prefix, a longer one holds secret.
 */
size_t
key_shape_span(const char *s)
{
	size_t		n = KEY_HEAD_LEN;

	if (strncmp(s, "hk_live_", KEY_HEAD_LEN) != 0 &&
		strncmp(s, "hk_test_", KEY_HEAD_LEN) != 0)
		return 0;
	while (is_base62(s[n]))
		n++;
	return n;
}
