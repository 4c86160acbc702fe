/*-------------------------------------------------------------------------
 *
 * key_shape.c
 *	  The one place in the hokusai tool that looks inside an API key: a
 *	  key-shaped run is a head of the format (src/common/key_format.h,
 *	  shared with the server) followed by base62 characters.
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

#include "common/key_format.h"

#include "key_shape.h"

/*
 * The length of the key-shaped run at the start of s: the head hk_live_ or
 * hk_test_ and every base62 character after it; 0 when s has no such head.
 * A run of KEY_SHAPE_PREFIX_LEN is a key_prefix, a longer one holds secret.
 */
size_t
key_shape_span(const char *s)
{
	size_t		n = HK_HEAD_LEN;

	if (strncmp(s, hk_key_head(HK_ENV_LIVE), HK_HEAD_LEN) != 0 &&
		strncmp(s, hk_key_head(HK_ENV_TEST), HK_HEAD_LEN) != 0)
		return 0;
	while (hk_is_base62(s[n]))
		n++;
	return n;
}
