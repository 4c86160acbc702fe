/*-------------------------------------------------------------------------
 *
 * cache.h
 *	  The shared-memory cache of validated keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_CACHE_H
#define HK_CACHE_H

#include "postgres.h"

#include "utils/uuid.h"

#include "validate/key_store.h"

#define HK_DIGEST_LEN		32
#define HK_TOUCH_INTERVAL	60	/* seconds between last_used_at notes per key */

/* What a cache lookup found. */
typedef enum HkCacheResult
{
	HK_CACHE_MISS,
	HK_CACHE_HIT,				/* *st filled in */
	HK_CACHE_NEGATIVE			/* known wrong secret */
} HkCacheResult;

/* Which entries hk_cache_clear forgets. */
typedef enum HkCacheScope
{
	HK_SCOPE_KEY,				/* the entries of one key id */
	HK_SCOPE_USER,				/* the entries of one user's keys */
	HK_SCOPE_ALL				/* every entry of this database */
} HkCacheScope;

/* Shared memory set-up (shmem.c) and per-backend set-up (_PG_init). */
extern Size hk_cache_shmem_size(void);
extern void hk_cache_shmem_request(void);
extern void hk_cache_shmem_startup(void);
extern void hk_cache_init(void);

/* Hot path. */
extern void hk_key_digest(const char *key, size_t len, uint8 *digest);
extern uint64 hk_cache_generation(void);
extern HkCacheResult hk_cache_lookup(const uint8 *digest, TimestampTz now,
									 HkKeyState *st, bool *ips_overflow,
									 bool *touch_due);
extern void hk_cache_insert(const uint8 *digest, const HkKeyState *st,
							uint64 generation);
extern void hk_cache_insert_negative(const uint8 *digest, uint64 generation);

/* Invalidation at commit (invalidate.c). */
extern void hk_cache_advance_generation(void);
extern void hk_cache_clear(HkCacheScope scope, const pg_uuid_t *id);

/* For cache_stats(). */
extern int64 hk_cache_count_entries(void);
extern int64 hk_cache_capacity(void);

#endif							/* HK_CACHE_H */
