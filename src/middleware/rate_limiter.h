/*-------------------------------------------------------------------------
 *
 * rate_limiter.h
 *	  Per-key sliding-window rate limits (hourly quota and per-second burst)
 *	  kept in dynamic shared memory.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_RATE_LIMITER_H
#define HK_RATE_LIMITER_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/uuid.h"

/* Each window is split into this many sub-buckets; one more is kept. */
#define HK_RL_SUBBUCKETS	60
#define HK_RL_RING			(HK_RL_SUBBUCKETS + 1)

/*
 * The counting state of one key: a ring of sub-bucket counts per window.
 * Pure data, so the same code runs on shared entries and in simulations.
 */
typedef struct HkLimiterState
{
	int64		hour_bucket;	/* index of the newest hour sub-bucket */
	int64		burst_bucket;	/* index of the newest burst sub-bucket */
	uint32		hour_total;		/* sum of hour[] */
	uint32		burst_total;	/* sum of burst[] */
	uint32		hour[HK_RL_RING];
	uint16		burst[HK_RL_RING];
} HkLimiterState;

/* The outcome of one admission check. */
typedef struct HkLimiterDecision
{
	bool		admitted;
	int32		limit;			/* hourly limit */
	int32		remaining;		/* hourly quota left after this request */
	int32		reset_seconds;	/* until one more request will be admitted */
	int32		retry_after;	/* seconds to wait, when not admitted */
} HkLimiterDecision;

extern void hk_limiter_state_init(HkLimiterState *st);
extern void hk_limiter_decide(HkLimiterState *st, TimestampTz now,
							  int32 per_hour, int32 burst,
							  HkLimiterDecision *d);

extern Size hk_limiter_shmem_size(void);
extern void hk_limiter_shmem_request(void);
extern void hk_limiter_shmem_startup(void);

/* Check and count one request for a key; burst <= 0 means no burst limit. */
extern void hk_limiter_admit(const pg_uuid_t *key_id, int32 per_hour, int32 burst,
							 HkLimiterDecision *d);

#endif							/* HK_RATE_LIMITER_H */
