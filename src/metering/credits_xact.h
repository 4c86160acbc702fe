/*-------------------------------------------------------------------------
 *
 * credits_xact.h
 *	  Credits and transactions: spends given back when their transaction
 *	  aborts, add_credits() applied when its transaction commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_CREDITS_XACT_H
#define HK_CREDITS_XACT_H

#include "postgres.h"

#include "utils/uuid.h"

#include "metering/balance.h"
#include "metering/credits.h"

extern void hk_credits_note_spend(const HkCreditKey *key, int64 amount, uint32 seq);
extern void hk_credits_note_crossing(const HkCreditKey *key, const HkRefill *r,
									uint8 crossed, const pg_uuid_t *key_id,
									const pg_uuid_t *user_id, int64 balance);
extern void hk_credits_note_add(const HkCreditKey *key, int64 delta, const HkRefill *r);
extern void hk_credits_note_reset(const HkCreditKey *key, bool metered, int64 balance,
								  const HkRefill *r, TimestampTz refilled_at);

#endif							/* HK_CREDITS_XACT_H */
