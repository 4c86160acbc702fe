/*-------------------------------------------------------------------------
 *
 * key_cache.h
 *	  The shared-memory cache of validated keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_KEY_CACHE_H
#define HK_KEY_CACHE_H

#include "postgres.h"

#include "middleware/auth.h"

#define HK_DIGEST_LEN		32
#define HK_TOUCH_INTERVAL	60	/* seconds between last_used_at notes per key */

/* What a cache lookup found. */
typedef enum HkCacheResult
{
	HK_CACHE_MISS,
	HK_CACHE_HIT,				/* *st filled in */
	HK_CACHE_NEGATIVE			/* known wrong secret */
} HkCacheResult;

/* Shared memory set-up (shmem.c calls these). */
extern Size hk_cache_shmem_size(void);
extern void hk_cache_shmem_request(void);
extern void hk_cache_shmem_startup(void);
extern void hk_cache_init(void);

/* Hot path. */
extern void hk_key_digest(const char *key, size_t len, uint8 *digest);
extern uint64 hk_cache_generation(void);
extern bool hk_cache_usable(void);
extern HkCacheResult hk_cache_lookup(const uint8 *digest, HkKeyState *st,
									 bool *ips_overflow, bool *touch_due);
extern void hk_cache_insert(const uint8 *digest, const HkKeyState *st,
							uint64 generation);
extern void hk_cache_insert_negative(const uint8 *digest, uint64 generation);

/* Failure throttling per key_prefix. */
extern bool hk_throttle_admit(const char *prefix);
extern void hk_throttle_release(const char *prefix);

/* Statistics. */
typedef enum HkCacheStat
{
	HK_STAT_HITS,
	HK_STAT_MISSES,
	HK_STAT_NEGATIVE_HITS,
	HK_STAT_EVICTIONS,
	HK_STAT_BCRYPT,
	HK_STAT_THROTTLED,
	HK_STAT_INVALIDATIONS,
	HK_STAT_MALFORMED,
	HK_NUM_STATS
} HkCacheStat;

extern void hk_stat_add(HkCacheStat which);
extern uint64 hk_stat_read(HkCacheStat which);
extern TimestampTz hk_stats_reset_time(void);
extern void hk_stats_reset(void);
extern int64 hk_cache_count_entries(void);
extern int64 hk_cache_capacity(void);

/* Invalidation, applied when the registering transaction commits. */
extern void hk_invalidate_key_at_commit(const pg_uuid_t *key_id);
extern void hk_invalidate_user_at_commit(const pg_uuid_t *user_id);
extern void hk_invalidate_all_at_commit(void);

#endif							/* HK_KEY_CACHE_H */
