/*-------------------------------------------------------------------------
 *
 * key_shape.h
 *	  What the hokusai tool knows of the API key format: enough to recognise
 *	  a key, or a key_prefix, in text.
 *
 * The format itself (src/common/key_format.h, shared with the server) is hk_<env>_ +
 * 8-character lookup id + 32 characters of secret + 6-character checksum,
 * all base62.  The tool never checks a checksum or a length: a mistyped or
 * cut-off key is as secret as a whole one, so anything key-shaped counts.
 *
 * src/bin/hokusai/key_shape.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_KEY_SHAPE_H
#define HOKUSAI_KEY_SHAPE_H

#include <stddef.h>

#include "common/key_format.h"

/* hk_live_ or hk_test_ plus the 8-character lookup id: public, not secret */
#define KEY_SHAPE_PREFIX_LEN	HK_PREFIX_LEN

extern size_t key_shape_span(const char *s);

#endif							/* HOKUSAI_KEY_SHAPE_H */
