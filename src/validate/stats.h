/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Counters of validation, shown by hokusai_auth.cache_stats().
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_VALIDATE_STATS_H
#define HK_VALIDATE_STATS_H

#include "postgres.h"

/* In cache_stats()'s column order. */
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

extern void hk_stats_shmem_request(void);
extern void hk_stats_shmem_startup(void);

extern void hk_stat_add(HkCacheStat which);

#endif							/* HK_VALIDATE_STATS_H */
