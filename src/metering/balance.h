/*-------------------------------------------------------------------------
 *
 * balance.h
 *	  A credit balance and its refills: the pure arithmetic of metering,
 *	  shared by live balances in shared memory (credits.c) and by the
 *	  admission replay of the tests.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_BALANCE_H
#define HK_BALANCE_H

#include "postgres.h"

#include "datatype/timestamp.h"

/* api_keys.refill_interval */
typedef enum HkRefillInterval
{
	HK_REFILL_NONE = 0,
	HK_REFILL_DAY,
	HK_REFILL_WEEK,				/* from Monday */
	HK_REFILL_MONTH
} HkRefillInterval;

/* A key's refill settings: amount > 0 unless interval is HK_REFILL_NONE. */
typedef struct HkRefill
{
	int64		amount;
	HkRefillInterval interval;
} HkRefill;

/* Crossings of a decrease, noted as events (hk_balance_spend(), _add()). */
#define HK_CREDIT_EVENT_LOW			0x01	/* credits.low: 10% left */
#define HK_CREDIT_EVENT_EXHAUSTED	0x02	/* credits.exhausted: none left */

/* One balance.  Plain data: it lives in a shared entry or in a replay. */
typedef struct HkBalance
{
	int64		balance;		/* credits left, >= 0 */
	int64		initial;		/* the first balance; "low" is 10% of it
								 * when there is no refill */
	TimestampTz refilled_at;	/* start of the period of the latest refill;
								 * 0: none yet */
	TimestampTz next_refill_at; /* when the next refill is due, computed
								 * for next_interval */
	uint32		refill_seq;		/* refills so far: a give-back from before
								 * the latest refill is void */
	uint8		next_interval;	/* HkRefillInterval of next_refill_at */
} HkBalance;

extern TimestampTz hk_refill_period_start(TimestampTz t, HkRefillInterval iv);
extern TimestampTz hk_refill_period_next(TimestampTz start, HkRefillInterval iv);
extern bool hk_refill_parse(const char *s, HkRefillInterval *iv);
extern const char *hk_refill_name(HkRefillInterval iv);

extern void hk_balance_init(HkBalance *b, int64 balance, int64 initial,
							TimestampTz refilled_at, HkRefillInterval interval);
extern bool hk_balance_refill(HkBalance *b, const HkRefill *r, TimestampTz now);
extern int64 hk_balance_threshold(const HkBalance *b, const HkRefill *r);
extern uint8 hk_balance_crossings_held(const HkBalance *b, const HkRefill *r,
									   uint8 crossed);
extern uint8 hk_balance_spend(HkBalance *b, const HkRefill *r, int64 cost);
extern void hk_balance_give_back(HkBalance *b, int64 amount);
extern int64 hk_balance_add(HkBalance *b, const HkRefill *r, int64 delta,
							uint8 *crossed);

#endif							/* HK_BALANCE_H */
