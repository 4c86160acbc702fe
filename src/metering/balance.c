/*-------------------------------------------------------------------------
 *
 * balance.c
 *	  The arithmetic of a credit balance: spending, giving back, adding,
 *	  and refills at the start of each UTC day, week or month.
 *
 * Refills.  A key with refill_amount and refill_interval gets its balance
 * set to refill_amount at the start of each UTC period (a day; a week from
 * Monday; a month from its first day).  A balance remembers the start of
 * the period it was last refilled in (refilled_at); the next refill is due
 * at the start of the following period, and is applied, lazily, by the
 * first operation on the balance after that moment.  A refill sets, it
 * does not add, so a key that was idle across several periods gets one
 * refill, not several.  A balance that has never been refilled counts as
 * refilled in the period it is first seen in (the credits it was created
 * with are that period's), and so does one whose refill interval changes:
 * the new schedule starts with the next period.
 *
 * Events.  A spend (or a negative add) that takes the balance from above
 * 10% of refill_amount (of the first balance, without a refill) to 10% or
 * less crosses HK_CREDIT_EVENT_LOW; one that takes it from above zero to
 * zero crosses HK_CREDIT_EVENT_EXHAUSTED.  The crossings are returned to
 * the caller, which notes them as events (ratelimit/admit.c,
 * metering/credits_xact.c); nothing is kept in the balance.
 *
 * Everything here is pure: no locks, no shared memory.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/datetime.h"

#include "metering/balance.h"

/* Whole days since 2000-01-01 of t, rounded down. */
static int64
days_of(TimestampTz t)
{
	int64		days = t / USECS_PER_DAY;

	if (t < 0 && t % USECS_PER_DAY != 0)
		days--;
	return days;
}

/* The start (UTC) of the period of interval iv that t falls in. */
TimestampTz
hk_refill_period_start(TimestampTz t, HkRefillInterval iv)
{
	int64		days = days_of(t);
	int			y,
				m,
				d;

	switch (iv)
	{
		case HK_REFILL_DAY:
			return days * USECS_PER_DAY;
		case HK_REFILL_WEEK:
			/* j2day(): 0 is Sunday; weeks start on Monday. */
			return (days - (j2day((int) (days + POSTGRES_EPOCH_JDATE)) + 6) % 7) *
				USECS_PER_DAY;
		case HK_REFILL_MONTH:
			j2date((int) (days + POSTGRES_EPOCH_JDATE), &y, &m, &d);
			return (int64) (date2j(y, m, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
		case HK_REFILL_NONE:
			break;
	}
	return t;
}

/* The start of the period after the one that begins at start. */
TimestampTz
hk_refill_period_next(TimestampTz start, HkRefillInterval iv)
{
	int64		days = days_of(start);
	int			y,
				m,
				d;

	switch (iv)
	{
		case HK_REFILL_DAY:
			return (days + 1) * USECS_PER_DAY;
		case HK_REFILL_WEEK:
			return (days + 7) * USECS_PER_DAY;
		case HK_REFILL_MONTH:
			j2date((int) (days + POSTGRES_EPOCH_JDATE), &y, &m, &d);
			if (m == 12)
			{
				y++;
				m = 1;
			}
			else
				m++;
			return (int64) (date2j(y, m, 1) - POSTGRES_EPOCH_JDATE) * USECS_PER_DAY;
		case HK_REFILL_NONE:
			break;
	}
	return DT_NOEND;
}

/* refill_interval's text: 'day', 'week' or 'month'; false for anything else. */
bool
hk_refill_parse(const char *s, HkRefillInterval *iv)
{
	if (strcmp(s, "day") == 0)
		*iv = HK_REFILL_DAY;
	else if (strcmp(s, "week") == 0)
		*iv = HK_REFILL_WEEK;
	else if (strcmp(s, "month") == 0)
		*iv = HK_REFILL_MONTH;
	else
		return false;
	return true;
}

/* The text of an interval; NULL for none. */
const char *
hk_refill_name(HkRefillInterval iv)
{
	switch (iv)
	{
		case HK_REFILL_DAY:
			return "day";
		case HK_REFILL_WEEK:
			return "week";
		case HK_REFILL_MONTH:
			return "month";
		case HK_REFILL_NONE:
			break;
	}
	return NULL;
}

/*
 * A balance as read from its row: refilled_at 0 when NULL; interval the
 * row's refill_interval, whose schedule the row's refilled_at is on.
 */
void
hk_balance_init(HkBalance *b, int64 balance, int64 initial, TimestampTz refilled_at,
				HkRefillInterval interval)
{
	memset(b, 0, sizeof(*b));
	b->balance = Max(balance, 0);
	b->initial = Max(initial, 0);
	b->refilled_at = refilled_at;
	b->next_interval = HK_REFILL_NONE;
	if (interval != HK_REFILL_NONE && refilled_at != 0)
	{
		b->next_refill_at =
			hk_refill_period_next(hk_refill_period_start(refilled_at, interval), interval);
		b->next_interval = (uint8) interval;
	}
}

/*
 * Apply a refill that is due at time now (see the banner).  Returns whether
 * the balance changed (a refill, or the anchoring of refilled_at), which the
 * write-back must then record.
 *
 * A balance first seen with a refill (refilled_at unset), or whose refill
 * interval has changed since, is anchored in the current period without a
 * refill: a new schedule starts with the next period.
 */
bool
hk_balance_refill(HkBalance *b, const HkRefill *r, TimestampTz now)
{
	bool		changed = false;

	if (r->interval == HK_REFILL_NONE || r->amount <= 0)
	{
		b->next_interval = HK_REFILL_NONE;
		return false;
	}
	if (b->next_interval != (uint8) r->interval)
	{
		b->refilled_at = hk_refill_period_start(now, r->interval);
		b->next_refill_at = hk_refill_period_next(b->refilled_at, r->interval);
		b->next_interval = (uint8) r->interval;
		changed = true;
	}
	if (now >= b->next_refill_at)
	{
		b->balance = r->amount;
		b->refilled_at = hk_refill_period_start(now, r->interval);
		b->next_refill_at = hk_refill_period_next(b->refilled_at, r->interval);
		b->refill_seq++;
		changed = true;
	}
	return changed;
}

/* "Low": 10% of refill_amount, or of the first balance without a refill. */
int64
hk_balance_threshold(const HkBalance *b, const HkRefill *r)
{
	if (r->interval != HK_REFILL_NONE && r->amount > 0)
		return r->amount / 10;
	return b->initial / 10;
}

/* The crossings (HK_CREDIT_EVENT_*) of a decrease from old to the balance. */
static uint8
crossings(const HkBalance *b, const HkRefill *r, int64 old)
{
	int64		low = hk_balance_threshold(b, r);
	uint8		ev = 0;

	if (old > low && b->balance <= low)
		ev |= HK_CREDIT_EVENT_LOW;
	if (old > 0 && b->balance == 0)
		ev |= HK_CREDIT_EVENT_EXHAUSTED;
	return ev;
}

/*
 * Of the crossings in crossed, those the balance is still past: after an
 * aborted spend is given back, another spend may keep it below 10% or at
 * zero.
 */
uint8
hk_balance_crossings_held(const HkBalance *b, const HkRefill *r, uint8 crossed)
{
	uint8		held = 0;

	if (b->balance <= hk_balance_threshold(b, r))
		held |= HK_CREDIT_EVENT_LOW;
	if (b->balance == 0)
		held |= HK_CREDIT_EVENT_EXHAUSTED;
	return crossed & held;
}

/*
 * Spend cost credits (0 <= cost <= balance: the caller checked); returns
 * the crossings it made (HK_CREDIT_EVENT_*).
 */
uint8
hk_balance_spend(HkBalance *b, const HkRefill *r, int64 cost)
{
	int64		old = b->balance;

	Assert(cost >= 0 && cost <= b->balance);
	b->balance -= cost;
	return crossings(b, r, old);
}

/* Give back credits spent by a transaction that aborted. */
void
hk_balance_give_back(HkBalance *b, int64 amount)
{
	if (amount <= 0)
		return;
	b->balance = (b->balance > PG_INT64_MAX - amount) ? PG_INT64_MAX :
		b->balance + amount;
}

/*
 * Add delta (negative: take away, never below zero; the sum is capped at
 * the largest bigint).  Returns the change actually made; *crossed gets the
 * crossings a decrease made (HK_CREDIT_EVENT_*).
 */
int64
hk_balance_add(HkBalance *b, const HkRefill *r, int64 delta, uint8 *crossed)
{
	int64		old = b->balance;

	*crossed = 0;
	if (delta >= 0)
		b->balance = (old > PG_INT64_MAX - delta) ? PG_INT64_MAX : old + delta;
	else
	{
		b->balance = (delta < -old) ? 0 : old + delta;
		*crossed = crossings(b, r, old);
	}
	return b->balance - old;
}
