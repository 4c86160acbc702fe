/*-------------------------------------------------------------------------
 *
 * id_hash.h
 *	  Hash and compare functions for the dshash tables keyed by a small
 *	  fixed struct of OIDs and a UUID (the rate limiter's entries, the
 *	  credit balances).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_COMMON_ID_HASH_H
#define HK_COMMON_ID_HASH_H

#include "postgres.h"

#include "lib/dshash.h"

extern dshash_hash hk_id_hash(const void *key, size_t size, void *arg);
extern int	hk_id_compare(const void *a, const void *b, size_t size, void *arg);

#endif							/* HK_COMMON_ID_HASH_H */
