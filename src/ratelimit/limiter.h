/*-------------------------------------------------------------------------
 *
 * limiter.h
 *	  Rate-limit state in dynamic shared memory: per key, and per user for
 *	  the limits shared by a user's keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_LIMITER_H
#define HK_LIMITER_H

#include "postgres.h"

#include "utils/uuid.h"

#include "ratelimit/window.h"

/* Whose windows: a key's own limits, or the limits of its owner. */
typedef enum HkLimiterKind
{
	HK_LIMITER_KEY,
	HK_LIMITER_USER
} HkLimiterKind;

#define HK_LIMITER_KINDS 2

/* What refused a call (ratelimit/admit.c); in the order they are reported. */
typedef enum HkRefusal
{
	HK_REFUSED_NONE,			/* admitted */
	HK_REFUSED_CREDITS,			/* fewer credits left than the cost */
	HK_REFUSED_KEY_HOURLY,
	HK_REFUSED_KEY_BURST,
	HK_REFUSED_USER_HOURLY,
	HK_REFUSED_USER_BURST
} HkRefusal;

#define HK_REFUSAL_KINDS (HK_REFUSED_USER_BURST + 1)

/* What rate_limit_stats() and metering_stats() show. */
typedef struct HkLimiterStats
{
	uint64		admitted;
	uint64		rejected[HK_REFUSAL_KINDS]; /* [HK_REFUSED_NONE] unused */
	int64		entries;		/* keys tracked now */
	int64		user_entries;	/* users tracked now */
	uint64		created;
	uint64		reclaimed;
	int32		entry_bytes;	/* size of one tracked key */
} HkLimiterStats;

extern void hk_limiter_shmem_request(void);
extern void hk_limiter_shmem_startup(void);

/*
 * Admission (ratelimit/admit.c): attach and sweep, then lock the states a
 * call needs (the key's, then the user's: ratelimit/admit.c), creating
 * them on first use.  A hint is where the caller believes the state is
 * (limiter.c's banner): the key cache keeps the key's, a key's slot its
 * owner's; 0 when unknown.
 */
extern void hk_limiter_prepare(TimestampTz now);
extern HkLimiterState *hk_limiter_lock(HkLimiterKind kind, const pg_uuid_t *id,
									   uint32 *hint);
extern void hk_limiter_unlock(HkLimiterState *st);
extern uint32 *hk_limiter_user_hint(HkLimiterState *key_state);
extern void hk_limiter_prefetch(uint32 hint, TimestampTz now);
extern void hk_limiter_note(HkRefusal refusal);

extern bool hk_limiter_lookup(HkLimiterKind kind, const pg_uuid_t *id,
							  HkLimiterState *st);
extern bool hk_limiter_forget(HkLimiterKind kind, const pg_uuid_t *id);
extern void hk_limiter_stats(HkLimiterStats *stats);

#endif							/* HK_LIMITER_H */
