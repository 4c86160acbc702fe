/*-------------------------------------------------------------------------
 *
 * window.h
 *	  The sliding-window algorithm of the rate limits: an hourly quota and
 *	  a per-second burst, decided on a key's counting state.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WINDOW_H
#define HK_WINDOW_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* Each window is split into this many sub-buckets; one more is kept. */
#define HK_RL_SUBBUCKETS	60
#define HK_RL_RING			(HK_RL_SUBBUCKETS + 1)
#define HK_RL_TAG_BYTES		22

/*
 * The counting state of one key (or one user): a ring of sub-bucket counts
 * per window.  Pure data, so the same code runs on shared entries and in
 * simulations.  Counts are 32-bit: a window never holds more than its
 * limit, and every limit the columns accept (up to 2^31 - 1) is enforced
 * exactly.  The ring slot of each window's oldest non-empty sub-bucket
 * (meaningful while its total is not zero) is kept, so the reset time of a
 * window is found without walking its ring.
 */
typedef struct HkLimiterState
{
	/* What every call reads, together at the start, beside the entry's key. */
	int64		hour_bucket;	/* index of the newest hour sub-bucket */
	int64		burst_bucket;	/* index of the newest burst sub-bucket */
	uint32		hour_total;		/* sum of hour[] */
	uint32		burst_total;	/* sum of burst[] */
	uint8		hour_oldest;	/* ring slot of the oldest non-empty one */
	uint8		burst_oldest;

	/*
	 * Room for whoever keeps the state to put what it reads together with
	 * the fields above; the algorithm never reads it.  The rate limiter
	 * keeps the state's owner here (limiter.c), so that a slot's lock, its
	 * owner and these fields share one cache line.
	 */
	uint8		tag[HK_RL_TAG_BYTES];
	/* Of the rings, a call touches a slot or two of each. */
	uint32		hour[HK_RL_RING];
	uint32		burst[HK_RL_RING];
} HkLimiterState;

/* Which limit refused a request. */
typedef enum HkLimitKind
{
	HK_LIMIT_NONE,				/* admitted */
	HK_LIMIT_HOURLY,			/* the hourly quota is used up */
	HK_LIMIT_BURST				/* the hourly quota is not, the burst is */
} HkLimitKind;

/* The outcome of one admission check, or of a look without one. */
typedef struct HkLimiterDecision
{
	bool		admitted;
	int32		limit;			/* hourly limit */
	int32		remaining;		/* hourly quota left after this request */
	int32		reset_seconds;	/* until one more request will be admitted */
	int32		retry_after;	/* seconds to wait, when not admitted */

	/*
	 * For the HTTP headers (docs/http.md): what each window holds and when
	 * its remaining quota next goes up, i.e. when its oldest counted
	 * sub-bucket leaves it (now when it holds nothing; at most one window
	 * plus one sub-bucket after the newest count).
	 */
	HkLimitKind limited_by;
	TimestampTz now;			/* the time of the decision */
	int32		hour_used;		/* requests counted in the hourly ring */
	TimestampTz hour_reset_at;
	int32		burst_limit;	/* in force; 0: none */
	int32		burst_used;		/* requests counted in the burst ring */
	int32		burst_remaining;	/* 0 without a burst limit */
	TimestampTz burst_reset_at;
} HkLimiterDecision;

extern void hk_limiter_state_init(HkLimiterState *st);

/*
 * The steps of one admission (ratelimit/admit.c): bring both windows to
 * time now and say which one has no room for cost more units; count them;
 * fill in the figures.  per_hour <= 0 means no hourly limit (users' limits
 * only: a key always has one), burst <= 0 no burst limit.
 */
extern HkLimitKind hk_limiter_check(HkLimiterState *st, TimestampTz now,
									int32 per_hour, int32 burst, int32 cost);
extern void hk_limiter_count(HkLimiterState *st, int32 cost);
extern void hk_limiter_report(HkLimiterState *st, TimestampTz now,
							  int32 per_hour, int32 burst, int32 cost,
							  bool admitted, bool headers, HkLimiterDecision *d);

extern void hk_limiter_decide(HkLimiterState *st, TimestampTz now,
							  int32 per_hour, int32 burst,
							  HkLimiterDecision *d);
extern void hk_limiter_peek(HkLimiterState *st, TimestampTz now,
							int32 per_hour, int32 burst,
							HkLimiterDecision *d);
extern bool hk_limiter_state_idle(const HkLimiterState *st, TimestampTz now);
extern void hk_limiter_state_prefetch(const HkLimiterState *st, TimestampTz now);

#endif							/* HK_WINDOW_H */
