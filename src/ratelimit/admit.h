/*-------------------------------------------------------------------------
 *
 * admit.h
 *	  One call's admission, all or nothing, across its credits, its key's
 *	  hourly and burst limits and its owner's hourly and burst limits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_ADMIT_H
#define HK_ADMIT_H

#include "postgres.h"

#include "port/atomics.h"
#include "utils/uuid.h"

#include "metering/balance.h"
#include "ratelimit/limiter.h"
#include "ratelimit/window.h"

/* A pair of limits: per_hour <= 0 means none, burst <= 0 none. */
typedef struct HkLimits
{
	int32		per_hour;
	int32		burst;
} HkLimits;

/* What one call asks for. */
typedef struct HkAdmission
{
	pg_uuid_t	key_id;
	pg_uuid_t	user_id;
	HkLimits	key;			/* the key's own: per_hour > 0 */
	HkLimits	user;			/* the owner's; both <= 0: none */
	bool		metered;		/* the key spends credits */
	pg_uuid_t	credits_key;	/* whose balance */
	HkRefill	refill;
	int32		cost;			/* credits and units of each limit, >= 0 */
	/* Where the key's limiter state is believed to be (limiter.c), and
	 * where to remember it when it turns out elsewhere (NULL: nowhere). */
	uint32		key_hint;
	pg_atomic_uint32 *key_hint_at;
} HkAdmission;

/* The states one decision works on; NULL for what does not apply. */
typedef struct HkAdmitStates
{
	HkLimiterState *key;
	HkLimiterState *user;
	HkBalance  *credits;
} HkAdmitStates;

/* How a call was decided. */
typedef struct HkAdmitResult
{
	bool		admitted;
	HkRefusal	refused_by;		/* the first of the limits without room */
	HkLimiterDecision key;		/* the key's windows after the decision */
	bool		has_user;
	HkLimiterDecision user;		/* the owner's windows after the decision */
	bool		has_credits;
	int64		credits_remaining;	/* after the decision */
	TimestampTz next_refill_at; /* 0: no refill */
	uint32		refill_seq;		/* of the balance, for a give-back */
	bool		refilled;		/* this decision applied a refill */
	uint8		crossed;		/* HK_CREDIT_EVENT_* this spend made */
	/* For validate_key(): all limits together. */
	int32		remaining;		/* hourly quota left: the key's, or the
								 * owner's when smaller */
	int32		reset_seconds;	/* until a call of this cost fits again;
								 * 0 with no refill to wait for */
	int32		retry_after;
} HkAdmitResult;

extern void hk_admit_decide(const HkAdmission *a, HkAdmitStates *s,
							TimestampTz now, HkAdmitResult *r);
extern void hk_admit(const HkAdmission *a, TimestampTz now, HkAdmitResult *r);
extern bool hk_admit_last(const pg_uuid_t *key_id, HkAdmitResult *r);

#endif							/* HK_ADMIT_H */
