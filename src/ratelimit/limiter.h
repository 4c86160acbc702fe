/*-------------------------------------------------------------------------
 *
 * limiter.h
 *	  Per-key rate-limit state in dynamic shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_LIMITER_H
#define HK_LIMITER_H

#include "postgres.h"

#include "utils/uuid.h"

#include "ratelimit/window.h"

/* What rate_limit_stats() shows. */
typedef struct HkLimiterStats
{
	uint64		admitted;
	uint64		rejected_hourly;
	uint64		rejected_burst;
	int64		entries;		/* keys tracked now */
	uint64		created;
	uint64		reclaimed;
	int32		entry_bytes;	/* size of one tracked key */
} HkLimiterStats;

extern void hk_limiter_shmem_request(void);
extern void hk_limiter_shmem_startup(void);

/* Check and count one request for a key; burst <= 0 means no burst limit. */
extern void hk_limiter_admit(const pg_uuid_t *key_id, int32 per_hour, int32 burst,
							 TimestampTz now, HkLimiterDecision *d);
extern bool hk_limiter_last(const pg_uuid_t *key_id, HkLimiterDecision *d);
extern bool hk_limiter_lookup(const pg_uuid_t *key_id, HkLimiterState *st);
extern bool hk_limiter_forget(const pg_uuid_t *key_id);
extern void hk_limiter_stats(HkLimiterStats *stats);

#endif							/* HK_LIMITER_H */
