/*-------------------------------------------------------------------------
 *
 * admit.c
 *	  The admission of one call, all or nothing: its credits, its key's
 *	  hourly and burst limits and its owner's hourly and burst limits are
 *	  all checked first, and only when every one has room for the call's
 *	  cost is anything counted, on all of them.  A refused call spends
 *	  nothing on any limit (DESIGN.md section 12).
 *
 * Locks.  The states a call needs are locked together, in a fixed order:
 * the key's limiter entry, the key's credit balance (when it is metered),
 * then the owner's limiter entry (when the owner has limits); see the
 * banners of limiter.c and metering/credits.c.  The owner's entry, which
 * all the owner's keys share, is taken last and released first: it is held
 * only while the call is decided and the owner's figures are read.  So
 * concurrent calls that share any of the states are serialised: two
 * clients on one key never spend more than its balance and are never
 * refused while credits remain, and the keys of one user never pass the
 * user's limits together.  A balance is loaded from its row (SQL) only with
 * no lock held; on the hot path it is in memory and a call costs one more
 * partition lock for a metered key, one more for a user with limits, and
 * nothing more for others.
 *
 * Credits spent are noted for the transaction (metering/credits_xact.c),
 * which gives them back if it aborts; rate-limit units are not given back:
 * they protect capacity, which the call used either way.
 *
 * The decision itself (hk_admit_decide) is pure, so the tests replay it on
 * private states (_admission_replay()).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/timestamp.h"

#include "metering/credits.h"
#include "metering/credits_xact.h"
#include "ratelimit/admit.h"

#define HK_ADMIT_TRIES 3

/* Seconds from now to t, rounded up; 0 when t is not later. */
static int32
seconds_until(TimestampTz t, TimestampTz now)
{
	if (t <= now)
		return 0;
	return (int32) Min((t - now + USECS_PER_SEC - 1) / USECS_PER_SEC, PG_INT32_MAX);
}

/*
 * Check every limit of a call on the given states at time now, then (only
 * if all have room) count the cost on every one: r's admitted, refused_by,
 * refilled and crossed.  s->key must be set; s->user and s->credits may be
 * NULL.
 */
static void
admit_commit(const HkAdmission *a, HkAdmitStates *s, TimestampTz now,
			 HkAdmitResult *r)
{
	HkRefusal	refused = HK_REFUSED_NONE;
	HkLimitKind kind;

	memset(r, 0, sizeof(*r));

	/* Check all: credits first (a refill due is applied first). */
	if (s->credits != NULL)
	{
		r->refilled = hk_balance_refill(s->credits, &a->refill, now);
		if (s->credits->balance < a->cost)
			refused = HK_REFUSED_CREDITS;
	}
	kind = hk_limiter_check(s->key, now, a->key.per_hour, a->key.burst, a->cost);
	if (refused == HK_REFUSED_NONE && kind != HK_LIMIT_NONE)
		refused = kind == HK_LIMIT_HOURLY ? HK_REFUSED_KEY_HOURLY : HK_REFUSED_KEY_BURST;
	if (s->user != NULL)
	{
		kind = hk_limiter_check(s->user, now, a->user.per_hour, a->user.burst, a->cost);
		if (refused == HK_REFUSED_NONE && kind != HK_LIMIT_NONE)
			refused = kind == HK_LIMIT_HOURLY ? HK_REFUSED_USER_HOURLY : HK_REFUSED_USER_BURST;
	}

	/* Then commit all, or nothing. */
	r->admitted = refused == HK_REFUSED_NONE;
	r->refused_by = refused;
	if (r->admitted)
	{
		hk_limiter_count(s->key, a->cost);
		if (s->user != NULL)
			hk_limiter_count(s->user, a->cost);
		if (s->credits != NULL)
			r->crossed = hk_balance_spend(s->credits, &a->refill, a->cost);
	}
}

/*
 * The figures of the owner's windows after a decision admit_commit() made,
 * from the state as it left it (or a copy of it): r->user.
 */
static void
report_user(const HkAdmission *a, HkAdmitStates *s, TimestampTz now,
			HkAdmitResult *r)
{
	if (s->user == NULL)
		return;
	r->has_user = true;
	/* The HTTP headers show the user's windows only when they refused. */
	hk_limiter_report(s->user, now, a->user.per_hour, a->user.burst, a->cost,
					  r->admitted, r->refused_by == HK_REFUSED_USER_HOURLY ||
					  r->refused_by == HK_REFUSED_USER_BURST, &r->user);
}

/*
 * The rest of the figures of the decision, from the key's state and the
 * balance as admit_commit() left them (or copies), and r->user when
 * report_user() filled it in.
 */
static void
report_rest(const HkAdmission *a, HkAdmitStates *s, TimestampTz now,
			HkAdmitResult *r)
{
	HkRefusal	refused = r->refused_by;

	hk_limiter_report(s->key, now, a->key.per_hour, a->key.burst, a->cost,
					  r->admitted, true, &r->key);
	r->remaining = r->key.remaining;
	r->reset_seconds = r->key.reset_seconds;
	if (r->has_user)
	{
		if (a->user.per_hour > 0)
			r->remaining = Min(r->remaining, r->user.remaining);
		r->reset_seconds = Max(r->reset_seconds, r->user.reset_seconds);
	}
	if (s->credits != NULL)
	{
		r->has_credits = true;
		r->credits_remaining = s->credits->balance;
		r->refill_seq = s->credits->refill_seq;
		if (a->refill.interval != HK_REFILL_NONE)
			r->next_refill_at = s->credits->next_refill_at;
		if (s->credits->balance < a->cost)
			r->reset_seconds = Max(r->reset_seconds, r->next_refill_at != 0 ?
								   seconds_until(r->next_refill_at, now) : 0);
	}
	if (r->admitted)
		r->retry_after = 0;
	else if (refused == HK_REFUSED_CREDITS && r->next_refill_at == 0)
		r->retry_after = 0;		/* waiting does not help: add credits */
	else
		r->retry_after = Max(r->reset_seconds, 1);
}

/*
 * Decide a call on the given states at time now: check every limit, then
 * (only if all have room) count the cost on every one, and fill in *r.
 * s->key must be set; s->user and s->credits may be NULL.
 */
void
hk_admit_decide(const HkAdmission *a, HkAdmitStates *s, TimestampTz now,
				HkAdmitResult *r)
{
	admit_commit(a, s, now, r);
	report_user(a, s, now, r);
	report_rest(a, s, now, r);
}

/* This backend's latest admission (hk_admit_last()). */
static bool last_valid = false;
static pg_uuid_t last_key_id;
static HkAdmitResult last_result;

/*
 * Decide a metered call whose balance cannot be found (its row gone) with
 * an empty one: credits fail closed.  Its limits are locked in the usual
 * order; the call is refused unless its cost is 0, so nothing is counted.
 */
static void
fail_closed(const HkAdmission *a, bool has_user, TimestampTz now,
			HkAdmitResult *r)
{
	HkAdmission closed = *a;
	HkBalance	empty;
	HkAdmitStates s;
	uint32		key_hint = a->key_hint;

	hk_balance_init(&empty, 0, 0, 0, HK_REFILL_NONE);
	closed.refill.interval = HK_REFILL_NONE;
	s.key = hk_limiter_lock(HK_LIMITER_KEY, &a->key_id, &key_hint);
	s.credits = &empty;
	s.user = has_user ? hk_limiter_lock(HK_LIMITER_USER, &a->user_id,
										hk_limiter_user_hint(s.key)) : NULL;
	hk_admit_decide(&closed, &s, now, r);
	if (s.user != NULL)
		hk_limiter_unlock(s.user);
	hk_limiter_unlock(s.key);
	hk_limiter_note(r->refused_by);
}

/*
 * Decide a call at time now (the caller's one clock reading for the call),
 * on the shared states (see the banner for the locks), and note credits
 * spent for the transaction.  A metered key whose balance cannot be found
 * (its row gone) is refused: credits fail closed.
 */
void
hk_admit(const HkAdmission *a, TimestampTz now, HkAdmitResult *r)
{
	bool		has_user = a->user.per_hour > 0 || a->user.burst > 0;
	HkAdmitStates s;
	HkCreditEntry *ce = NULL;
	HkCreditKey credit_key;
	HkAdmitStates copies = {NULL, NULL, NULL};
	HkLimiterState key_copy;
	HkLimiterState user_copy;
	HkBalance	balance_copy;
	int			tries = 0;
	uint32		key_hint = a->key_hint;

	hk_limiter_prepare(now);
	for (;;)
	{
		s.key = hk_limiter_lock(HK_LIMITER_KEY, &a->key_id, &key_hint);
		s.credits = NULL;
		if (a->metered)
		{
			ce = hk_credits_lock(&a->credits_key);
			if (ce == NULL)
			{
				/* Not in memory: load it with no lock held, then start again. */
				hk_limiter_unlock(s.key);
				if (++tries >= HK_ADMIT_TRIES || !hk_credits_ensure(&a->credits_key))
				{
					fail_closed(a, has_user, now, r);
					goto done;
				}
				continue;
			}
			s.credits = &ce->b;
		}
		s.user = has_user ? hk_limiter_lock(HK_LIMITER_USER, &a->user_id,
											hk_limiter_user_hint(s.key)) : NULL;
		break;
	}

	/*
	 * Under the locks the decision, and the figures of an admitted call,
	 * which take a few reads; the user's lock, the one most shared (by
	 * all the user's keys), is released first.  The figures of a refused
	 * call (the waits) walk the windows' rings: they are worked out from
	 * copies once the locks are released, so that a flood of refused calls
	 * holds them as briefly as it can.
	 */
	admit_commit(a, &s, now, r);
	if (r->admitted)
		report_user(a, &s, now, r);
	else if (s.user != NULL)
	{
		user_copy = *s.user;
		copies.user = &user_copy;
	}
	if (s.user != NULL)
		hk_limiter_unlock(s.user);
	if (ce != NULL)
	{
		if (r->refilled || (r->admitted && a->cost > 0))
			hk_credits_changed(ce, now);
		if (r->admitted && a->cost > 0)
		{
			ce->charged++;
			ce->spent += (uint64) a->cost;
		}
		credit_key = ce->key;
	}
	if (r->admitted)
		report_rest(a, &s, now, r);
	else
	{
		key_copy = *s.key;
		copies.key = &key_copy;
		if (s.credits != NULL)
		{
			balance_copy = *s.credits;
			copies.credits = &balance_copy;
		}
	}
	if (ce != NULL)
		hk_credits_unlock(ce);
	hk_limiter_unlock(s.key);
	if (key_hint != a->key_hint && a->key_hint_at != NULL)
		pg_atomic_write_u32(a->key_hint_at, key_hint);
	if (!r->admitted)
	{
		report_user(a, &copies, now, r);
		report_rest(a, &copies, now, r);
	}

	/* No lock held: count, and note the spend for the transaction. */
	hk_limiter_note(r->refused_by);
	if (a->metered)
	{
		if (r->refilled)
			hk_credits_stat_add(HK_CSTAT_REFILLS, 1);
		if (r->refused_by == HK_REFUSED_CREDITS)
			hk_credits_stat_add(HK_CSTAT_REFUSED, 1);
		if (r->crossed != 0)
			hk_credits_note_crossing(&credit_key, &a->refill, r->crossed,
									 &a->key_id, &a->user_id,
									 r->credits_remaining);
		if (r->admitted && a->cost > 0)
			hk_credits_note_spend(&credit_key, a->cost, r->refill_seq);
	}

done:
	last_key_id = a->key_id;
	last_result = *r;
	last_valid = true;
}

/*
 * The result of this backend's latest hk_admit() when it was for key_id:
 * how pre_request() gets the figures of every limit for its headers after
 * validation (validate/pipeline.c) decided the request.
 */
bool
hk_admit_last(const pg_uuid_t *key_id, HkAdmitResult *r)
{
	if (!last_valid || memcmp(&last_key_id, key_id, sizeof(pg_uuid_t)) != 0)
		return false;
	*r = last_result;
	return true;
}
