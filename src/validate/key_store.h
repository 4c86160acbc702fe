/*-------------------------------------------------------------------------
 *
 * key_store.h
 *	  What validation knows about a key, and reading it from the tables.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_KEY_STORE_H
#define HK_KEY_STORE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "port/atomics.h"
#include "utils/uuid.h"

#include "common/cidr.h"
#include "validate/scopes.h"

#define HK_CACHE_MAX_CIDRS	4	/* allowed_ips kept inline in a cache entry */

/* Everything validation needs to know about one key, read from its row. */
typedef struct HkKeyState
{
	pg_uuid_t	key_id;
	pg_uuid_t	user_id;
	bool		active;			/* is_active, not revoked, owner active */
	bool		revoked;		/* revoked_at set, or owner inactive */
	bool		has_expiry;
	TimestampTz expires_at;
	int32		rate_limit_per_hour;
	int32		burst_limit;	/* -1: NULL, use default_burst_limit */
	bool		has_allowed_ips;
	int			n_allowed;
	HkCidr	   *allowed;		/* n_allowed entries */
	HkCidr		allowed_buf[HK_CACHE_MAX_CIDRS];	/* storage for cache hits */
	/* metering */
	bool		has_credits;	/* credits_remaining is not NULL */
	pg_uuid_t	credits_key;	/* the key whose balance it spends: its
								 * credits_key_id, else itself */
	int64		refill_amount;	/* 0 without a refill */
	uint8		refill_interval;	/* HkRefillInterval */
	int32		user_rate_limit_per_hour;	/* the owner's; 0: none */
	int32		user_burst_limit;	/* the owner's; 0: none */
	/* authorization */
	bool		disabled;		/* disabled_at set */
	int			n_scopes;		/* scopes granted; 0: none (unrestricted) */
	bool		scopes_unread;	/* cache hit, too long to keep: scopes not set */
	int			scopes_len;		/* bytes at scopes (packed, see scopes.h) */
	char	   *scopes;
	char		scopes_buf[HK_CACHE_SCOPE_BYTES];	/* storage for cache hits */
	/* rate limiter: where its state is believed to be (cache hits only) */
	uint32		limiter_hint;	/* 0: unknown */
	pg_atomic_uint32 *limiter_hint_at;	/* the cache entry's; NULL: none */
} HkKeyState;

/* A credit balance as its row has it (metering/credits.c loads it). */
typedef struct HkCreditRow
{
	int64		balance;		/* credits_remaining */
	int64		initial;		/* credits_initial, else the balance */
	TimestampTz refilled_at;	/* credits_refilled_at; 0 when NULL */
	uint8		refill_interval;	/* HkRefillInterval of refilled_at */
} HkCreditRow;

extern char *hk_key_store_lookup(const char *key, HkKeyState *st, bool *own_write);
extern void hk_key_store_allowed_ips(HkKeyState *st);
extern void hk_key_store_scopes(HkKeyState *st);
extern bool hk_user_is_active(const pg_uuid_t *user_id);
extern bool hk_key_store_credits(const pg_uuid_t *key_id, HkCreditRow *row);

#endif							/* HK_KEY_STORE_H */
