/*-------------------------------------------------------------------------
 *
 * scopes.h
 *	  Scope names, packed scope lists and the rule that says whether a
 *	  key's scopes grant a required one (docs/authorization.md).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_SCOPES_H
#define HK_SCOPES_H

#include "postgres.h"

#include "utils/array.h"

#define HK_SCOPE_NAME_MAX	64	/* characters before the optional '*' */
#define HK_SCOPE_MAX_LEN	(HK_SCOPE_NAME_MAX + 1)
#define HK_SCOPES_MAX		64	/* scopes per key, per requirement list */

/*
 * Bytes of a key's packed scopes kept inline in a cache entry (32, so that
 * the entry, with metering's fields, still fits in 256 bytes).
 */
#define HK_CACHE_SCOPE_BYTES 32

/*
 * A packed scope list is, for each scope, one byte of length and then its
 * characters, no terminator: a key's 64 scopes of 65 characters fit in
 * HK_SCOPES_MAX * (1 + HK_SCOPE_MAX_LEN) bytes.  A name ending in '*'
 * grants every name that starts with what precedes the '*'.
 */
#define HK_SCOPES_PACKED_MAX (HK_SCOPES_MAX * (1 + HK_SCOPE_MAX_LEN))

/*
 * One scope a route demands of the key that calls it (pre_request(), see
 * http/route_scopes.c).  restricted_only: a key-management route's scope,
 * demanded only of keys that have scopes (a key with none manages its
 * user's keys, as every key did before 1.6).
 */
typedef struct HkRouteScope
{
	const char *name;
	int			len;
	bool		restricted_only;
} HkRouteScope;

extern bool hk_scope_name_valid(const char *s, int len);
extern bool hk_scope_covers(const char *granted, int glen,
							const char *wanted, int wlen);
extern bool hk_scopes_grant(const char *packed, int packed_len,
							const char *wanted, int wlen);

/* A key's scopes column, packed (palloc'd); returns the byte length. */
extern int	hk_scopes_pack(ArrayType *arr, char **packed, int *count);
extern ArrayType *hk_scopes_to_array(const char *packed, int packed_len);

/* A list of required scopes given by a caller (validate_key()'s argument). */
extern void hk_scopes_check_argument(ArrayType *arr, const char *what);
extern bool hk_scopes_first_missing(const char *packed, int packed_len,
									ArrayType *required,
									const char **missing, int *missing_len);

#endif							/* HK_SCOPES_H */
