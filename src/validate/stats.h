/*-------------------------------------------------------------------------
 *
 * stats.h
 *	  Counters of the request path, kept per backend and summed on read:
 *	  cache_stats(), rate_limit_stats() and usage_queue_stats() show them.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_VALIDATE_STATS_H
#define HK_VALIDATE_STATS_H

#include "postgres.h"

#include "datatype/timestamp.h"

typedef enum HkCacheStat
{
	/* cache_stats(), in its column order */
	HK_STAT_HITS,
	HK_STAT_MISSES,
	HK_STAT_NEGATIVE_HITS,
	HK_STAT_EVICTIONS,
	HK_STAT_BCRYPT,
	HK_STAT_THROTTLED,
	HK_STAT_INVALIDATIONS,
	HK_STAT_MALFORMED,
	/*
	 * rate_limit_stats() and metering_stats() (ratelimit/limiter.c): the
	 * admissions, then the refusals in the order of HkRefusal
	 * (ratelimit/limiter.h), so HK_STAT_RL_ADMITTED + refusal counts it.
	 */
	HK_STAT_RL_ADMITTED,
	HK_STAT_RL_REJECTED_CREDITS,
	HK_STAT_RL_REJECTED_HOURLY,	/* the key's own limits */
	HK_STAT_RL_REJECTED_BURST,
	HK_STAT_RL_REJECTED_USER_HOURLY,	/* the limits shared by its owner's keys */
	HK_STAT_RL_REJECTED_USER_BURST,
	HK_STAT_RL_CREATED,
	HK_STAT_RL_RECLAIMED,
	/* the producers' counters of usage_queue_stats() (usage/usage_queue.c) */
	HK_STAT_USAGE_ENQUEUED,
	HK_STAT_USAGE_DROPPED,
	HK_STAT_USAGE_OTHER_DB,
	HK_STAT_USAGE_TOUCHES_DROPPED,
	HK_NUM_COUNTERS
} HkCacheStat;

/* The counters cache_stats() shows and cache_stats_reset() zeroes. */
#define HK_NUM_STATS	(HK_STAT_MALFORMED + 1)

extern void hk_stats_shmem_request(void);
extern void hk_stats_shmem_startup(void);

/* Hot path: add to this process's own counters (no shared write). */
extern void hk_stat_add_n(HkCacheStat which, uint64 n);
static inline void
hk_stat_add(HkCacheStat which)
{
	hk_stat_add_n(which, 1);
}

/* Readers: a counter summed over every process, less its value at the last reset. */
extern uint64 hk_stat_read(HkCacheStat which);
/* Zero counters first .. last - 1 (as seen by hk_stat_read). */
extern void hk_stats_reset_range(HkCacheStat first, HkCacheStat last);

#endif							/* HK_VALIDATE_STATS_H */
