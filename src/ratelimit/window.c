/*-------------------------------------------------------------------------
 *
 * window.c
 *	  The sliding-window algorithm of the rate limits, written once and
 *	  used for both windows: the hourly quota over any rolling 3600 seconds
 *	  and the burst limit over any rolling second.
 *
 * Each window is cut into 60 sub-buckets and a key keeps a ring of 61
 * counts per window: the current sub-bucket and the 60 before it.  A
 * request is admitted when the sum of the ring is below the limit.  The
 * ring always covers the whole rolling window ending now, plus at most one
 * sub-bucket of older requests, so the limiter never admits more than the
 * limit in any rolling window, and it may refuse early by at most one
 * sub-bucket (1/60 of the window).  Rejected requests are not counted.
 * Checking and counting are separate steps (hk_limiter_check(),
 * hk_limiter_count()) so that ratelimit/admit.c can check every limit of a
 * call before it counts any.
 *
 * A request may cost more than one unit (validate_key()'s cost): it is
 * admitted when the sum plus its cost stays within the limit, and counts
 * its cost.  Counts are 32-bit, so every limit up to 2^31 - 1 is enforced
 * exactly (1.5 kept burst counts in 16 bits and silently enforced burst
 * limits above 65535 as 65535).
 *
 * The two windows differ only in the length of a sub-bucket (60 s, and
 * 1/60 s, which is not a whole number of microseconds: lengths are kept as
 * fractions); HkWindow views either one of a HkLimiterState the same way.
 *
 * Everything here is pure: the same code decides live requests on shared
 * entries (limiter.c) and, for tests, replays timestamps on a private state
 * (_rate_limit_replay(), _admission_replay()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "hokusai_auth.h"
#include "ratelimit/window.h"

/*
 * One window of a HkLimiterState.  A sub-bucket lasts sub_num / sub_den
 * microseconds; sub-bucket b covers [ceil(b * sub_num / sub_den), ...).
 */
typedef struct HkWindow
{
	int64		sub_num;
	int64		sub_den;
	int64	   *newest;			/* index of the newest sub-bucket */
	uint32	   *total;			/* sum of the ring */
	uint8	   *oldest;			/* ring slot of the oldest non-empty one */
	uint32	   *ring;			/* the counts */
} HkWindow;

/* The hourly window of st: 60-second sub-buckets. */
static HkWindow
hour_window(HkLimiterState *st)
{
	HkWindow	w = {
		.sub_num = INT64CONST(3600) * USECS_PER_SEC / HK_RL_SUBBUCKETS,
		.sub_den = 1,
		.newest = &st->hour_bucket,
		.total = &st->hour_total,
		.oldest = &st->hour_oldest,
		.ring = st->hour,
	};

	return w;
}

/* The one-second window of st: 1/60-second sub-buckets. */
static HkWindow
burst_window(HkLimiterState *st)
{
	HkWindow	w = {
		.sub_num = USECS_PER_SEC,
		.sub_den = HK_RL_SUBBUCKETS,
		.newest = &st->burst_bucket,
		.total = &st->burst_total,
		.oldest = &st->burst_oldest,
		.ring = st->burst,
	};

	return w;
}

/*
 * The sub-bucket that time now falls in.  As in ring_slot(), times since
 * 2000 take the cheaper unsigned division.
 */
static inline int64
window_bucket(const HkWindow *w, TimestampTz now)
{
	if (likely(now >= 0))
		return (int64) ((uint64) now * (uint64) w->sub_den / (uint64) w->sub_num);
	return now * w->sub_den / w->sub_num;
}

/* When sub-bucket b begins. */
static inline TimestampTz
bucket_start(const HkWindow *w, int64 b)
{
	if (likely(b >= 0))
		return (TimestampTz) (((uint64) b * (uint64) w->sub_num + (uint64) w->sub_den - 1) /
							  (uint64) w->sub_den);
	return (b * w->sub_num + w->sub_den - 1) / w->sub_den;
}

/*
 * Where sub-bucket b is kept in the ring.  Sub-buckets of times since 2000
 * are not negative: one unsigned remainder, a few instructions fewer on
 * every call than the signed one that earlier times need.
 */
static inline int
ring_slot(int64 b)
{
	if (likely(b >= 0))
		return (int) ((uint64) b % HK_RL_RING);
	return (int) (((b % HK_RL_RING) + HK_RL_RING) % HK_RL_RING);
}

/* The count of sub-bucket b. */
static inline uint32
count_get(const HkWindow *w, int64 b)
{
	return w->ring[ring_slot(b)];
}

/* Set the count of sub-bucket b. */
static inline void
count_set(HkWindow *w, int64 b, uint32 v)
{
	w->ring[ring_slot(b)] = v;
}

/* The count in ring slot s. */
static inline uint32
slot_get(const HkWindow *w, int s)
{
	return w->ring[s];
}

/*
 * Move the ring forward to sub-bucket b, dropping what fell out.
 *
 * Only the sub-buckets from the oldest non-empty one to the newest can hold
 * counts (the rest of the ring is zero), so only those of them that leave
 * are read and cleared: a key called once a second clears one slot of its
 * burst ring, not all 61 (with many keys, each slot line written was a
 * cache miss).
 */
static void
window_advance(HkWindow *w, int64 b)
{
	int64		i;

	if (b <= *w->newest)
		return;
	if (*w->total > 0)
	{
		int			age = (ring_slot(*w->newest) - *w->oldest + HK_RL_RING) % HK_RL_RING;

		/*
		 * Moving to sub-bucket i reuses the slot of i - 61, which holds a
		 * count only if i - 61 is not older than the oldest non-empty one
		 * (newest - age) and not newer than the newest.
		 */
		for (i = *w->newest - age + HK_RL_RING;
			 i <= b && i <= *w->newest + HK_RL_RING; i++)
		{
			*w->total -= count_get(w, i);
			count_set(w, i, 0);
		}
	}
	*w->newest = b;

	/* The oldest non-empty sub-bucket fell out: find the next one. */
	if (*w->total > 0 && slot_get(w, *w->oldest) == 0)
	{
		int			s = *w->oldest;

		for (i = 0; i < HK_RL_RING && slot_get(w, s) == 0; i++)
			s = (s + 1) % HK_RL_RING;
		*w->oldest = (uint8) s;
	}
}

/*
 * Count cost admitted units in the newest sub-bucket.  Admission checked
 * that the total stays within the limit (< 2^31), so nothing overflows.
 */
static void
window_count(HkWindow *w, int32 cost)
{
	if (*w->total == 0)
		*w->oldest = (uint8) ring_slot(*w->newest);
	count_set(w, *w->newest, count_get(w, *w->newest) + (uint32) cost);
	*w->total += (uint32) cost;
}

/* Is there room for cost more units under limit (limit > 0)? */
static inline bool
window_room(const HkWindow *w, int32 limit, int32 cost)
{
	return (int64) *w->total + cost <= (int64) limit;
}

/*
 * Microseconds until enough of the oldest sub-buckets leave the window for
 * cost more units to fit under limit.  Sub-bucket i leaves when sub-bucket
 * i + 61 begins.  A cost above the limit never fits: the wait is then until
 * the window is empty.
 */
static int64
window_wait(const HkWindow *w, int64 limit, int32 cost, TimestampTz now)
{
	int64		freed = 0;
	int64		i;

	for (i = *w->newest - HK_RL_SUBBUCKETS; i <= *w->newest; i++)
	{
		freed += count_get(w, i);
		if ((int64) *w->total - freed + cost <= limit)
			return bucket_start(w, i + HK_RL_RING) - now;
	}
	return bucket_start(w, *w->newest + HK_RL_RING) - now;
}

/*
 * When the window's total next goes down: when its oldest non-empty
 * sub-bucket leaves (sub-bucket i leaves when i + 61 begins); now when it
 * holds nothing.  On every call: the oldest non-empty sub-bucket is kept
 * (*w->oldest), not searched for.
 */
static TimestampTz
window_next_drop(const HkWindow *w, TimestampTz now)
{
	int			age;

	if (*w->total == 0)
		return now;
	/* How many sub-buckets before the newest one the oldest is. */
	age = (ring_slot(*w->newest) - *w->oldest + HK_RL_RING) % HK_RL_RING;
	Assert(slot_get(w, *w->oldest) > 0);
	return Max(bucket_start(w, *w->newest - age + HK_RL_RING), now);
}

/* Microseconds as whole seconds, rounded up; 0 for none. */
static inline int32
usecs_to_seconds_ceil(int64 us)
{
	if (us <= 0)
		return 0;
	return (int32) Min((us + USECS_PER_SEC - 1) / USECS_PER_SEC, PG_INT32_MAX);
}

/* An empty state: nothing counted in either window. */
void
hk_limiter_state_init(HkLimiterState *st)
{
	memset(st, 0, sizeof(*st));
}

/*
 * Bring both windows to time now and say which one, if any, has no room for
 * cost more units: the hourly quota first.  Counts nothing.  A clock that
 * stepped back counts into the newest sub-bucket.  per_hour <= 0 means no
 * hourly limit (a user's limits may have a burst limit alone).
 */
HkLimitKind
hk_limiter_check(HkLimiterState *st, TimestampTz now, int32 per_hour,
				 int32 burst, int32 cost)
{
	HkWindow	hour = hour_window(st);
	HkWindow	second = burst_window(st);

	window_advance(&hour, window_bucket(&hour, now));
	window_advance(&second, window_bucket(&second, now));
	if (per_hour > 0 && !window_room(&hour, per_hour, cost))
		return HK_LIMIT_HOURLY;
	if (burst > 0 && !window_room(&second, burst, cost))
		return HK_LIMIT_BURST;
	return HK_LIMIT_NONE;
}

/*
 * Count cost units in both windows, right after hk_limiter_check() found
 * room for them (at the same time now).
 */
void
hk_limiter_count(HkLimiterState *st, int32 cost)
{
	HkWindow	hour = hour_window(st);
	HkWindow	second = burst_window(st);

	window_count(&hour, cost);
	window_count(&second, cost);
}

/*
 * The figures of both windows after a decision at time now (the windows
 * already brought to now by hk_limiter_check()): the quota left, the wait
 * until cost more units would fit, and the per-window figures of the HTTP
 * headers.  admitted is the decision of the whole call, which other limits
 * may have refused; limited_by is then this state's own verdict (none when
 * the call was admitted).  Without headers, the two reset times are left
 * at now.
 */
void
hk_limiter_report(HkLimiterState *st, TimestampTz now, int32 per_hour,
				  int32 burst, int32 cost, bool admitted, bool headers,
				  HkLimiterDecision *d)
{
	HkWindow	hour = hour_window(st);
	HkWindow	second = burst_window(st);
	bool		hour_room = per_hour <= 0 || window_room(&hour, per_hour, cost);
	bool		burst_room = burst <= 0 || window_room(&second, burst, cost);
	int64		wait = 0;

	/* How long until cost more units would be admitted. */
	if (!hour_room)
		wait = window_wait(&hour, per_hour, cost, now);
	if (!burst_room)
		wait = Max(wait, window_wait(&second, burst, cost, now));

	d->admitted = admitted;
	d->limit = per_hour;
	d->remaining = per_hour > 0 ?
		(int32) Max((int64) per_hour - (int64) st->hour_total, 0) : 0;
	d->reset_seconds = usecs_to_seconds_ceil(wait);
	d->retry_after = admitted ? 0 : Max(d->reset_seconds, 1);

	/* The same figures per window, for the HTTP headers. */
	d->limited_by = admitted || (hour_room && burst_room) ? HK_LIMIT_NONE :
		!hour_room ? HK_LIMIT_HOURLY : HK_LIMIT_BURST;
	d->now = now;
	d->hour_used = (int32) Min(st->hour_total, (uint32) PG_INT32_MAX);
	d->hour_reset_at = headers ? window_next_drop(&hour, now) : now;
	d->burst_limit = Max(burst, 0);
	d->burst_used = (int32) Min(st->burst_total, (uint32) PG_INT32_MAX);
	d->burst_remaining = burst > 0 ?
		(int32) Max((int64) burst - (int64) st->burst_total, 0) : 0;
	d->burst_reset_at = headers ? window_next_drop(&second, now) : now;
}

/*
 * Decide one request of one unit at time now, counting it when admitted.
 * per_hour > 0; burst <= 0 means no burst limit.
 */
void
hk_limiter_decide(HkLimiterState *st, TimestampTz now, int32 per_hour,
				  int32 burst, HkLimiterDecision *d)
{
	bool		admitted = hk_limiter_check(st, now, per_hour, burst, 1) == HK_LIMIT_NONE;

	if (admitted)
		hk_limiter_count(st, 1);
	hk_limiter_report(st, now, per_hour, burst, 1, admitted, true, d);
}

/*
 * The figures at time now without counting anything: whether a request
 * would be admitted, the quota left and the wait for one more.
 */
void
hk_limiter_peek(HkLimiterState *st, TimestampTz now, int32 per_hour,
				int32 burst, HkLimiterDecision *d)
{
	bool		admitted = hk_limiter_check(st, now, per_hour, burst, 1) == HK_LIMIT_NONE;

	hk_limiter_report(st, now, per_hour, burst, 1, admitted, true, d);
}

/* Have all of the state's counts left both windows by time now? */
bool
hk_limiter_state_idle(const HkLimiterState *st, TimestampTz now)
{
	HkWindow	hour = hour_window((HkLimiterState *) st);
	HkWindow	second = burst_window((HkLimiterState *) st);

	return st->hour_bucket + HK_RL_RING <= window_bucket(&hour, now) &&
		st->burst_bucket + HK_RL_RING <= window_bucket(&second, now);
}

/*
 * Start loading the ring slots a call at time now counts in (the newest
 * sub-bucket of each window), before the state is locked: see
 * hk_limiter_prefetch().  Reads nothing.
 */
void
hk_limiter_state_prefetch(const HkLimiterState *st, TimestampTz now)
{
	HkWindow	hour = hour_window((HkLimiterState *) st);
	HkWindow	burst = burst_window((HkLimiterState *) st);

	hk_prefetch(&st->hour[ring_slot(window_bucket(&hour, now))]);
	hk_prefetch(&st->burst[ring_slot(window_bucket(&burst, now))]);
}
