/*-------------------------------------------------------------------------
 *
 * pipeline.c
 *	  The validation of one key, as validate_key() and pre_request() run
 *	  it.
 *
 * Order of checks, cheapest first, and nothing about a key is revealed
 * before its secret has been proven:
 *
 *	1. shape and checksum (common/key_format.c, no table or bcrypt work):
 *	   "malformed";
 *	2. the shared-memory cache (cache.c), by a keyed digest of the whole
 *	   key: a hit proves the secret; a negative hit is "unknown";
 *	3. on a miss, the per-prefix failure throttle (throttle.c), then the
 *	   row by key_prefix (key_store.c) and a bcrypt verification
 *	   (keys/bcrypt.c): "unknown" when either fails.  The result, good or
 *	   bad, goes into the cache, unless this transaction wrote the row;
 *	4. active flag, revocation and the owner's active flag: "revoked";
 *	5. expiry, against the wall clock on every call: "expired";
 *	6. disable_key(): "disabled";
 *	7. client address against allowed_ips: "ip_denied".  A key with an
 *	   allow-list is denied when the caller gives no address;
 *	8. the scopes the caller requires (validate_key()'s required_scopes,
 *	   the route's in pre_request()) against the key's (scopes.c):
 *	   "insufficient_scope";
 *	9. the key's credits and rate limits and its owner's limits, all or
 *	   nothing (ratelimit/admit.c): "credits_exhausted" when fewer credits
 *	   are left than the call's cost, else "rate_limited".  Only a call that
 *	   gets this far spends anything, its cost on every one of them, and
 *	   only if all of them admit it.
 *
 * An admitted key's use is then noted for last_used_at and, with an
 * endpoint, queued as a usage event (usage/usage_queue.c).  Nothing here
 * writes a table.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "events/event_queue.h"
#include "keys/bcrypt.h"
#include "ratelimit/admit.h"
#include "replica/walinval.h"
#include "usage/usage_queue.h"
#include "validate/cache.h"
#include "validate/invalidate.h"
#include "validate/key_store.h"
#include "validate/pipeline.h"
#include "validate/stats.h"
#include "validate/throttle.h"

const char *const hk_status_names[] = {
	[HK_STATUS_OK] = "ok",
	[HK_STATUS_MALFORMED] = "malformed",
	[HK_STATUS_UNKNOWN] = "unknown",
	[HK_STATUS_REVOKED] = "revoked",
	[HK_STATUS_EXPIRED] = "expired",
	[HK_STATUS_IP_DENIED] = "ip_denied",
	[HK_STATUS_RATE_LIMITED] = "rate_limited",
	[HK_STATUS_DISABLED] = "disabled",
	[HK_STATUS_INSUFFICIENT_SCOPE] = "insufficient_scope",
	[HK_STATUS_CREDITS_EXHAUSTED] = "credits_exhausted",
};

/*
 * Steps 2 and 3 of the banner: is this the secret of one of our keys?  On
 * true, *st describes the key, and *touch_due says whether this use should
 * be noted for last_used_at (always after a cache miss; after a hit, once
 * per HK_TOUCH_INTERVAL per key).  *now is the call's clock reading; a
 * miss reads the clock again after its bcrypt.
 */
static bool
key_authenticate(const char *key, TimestampTz *now, HkKeyState *st,
				 bool *touch_due)
{
	uint8		digest[HK_DIGEST_LEN];
	bool		use_cache = hk_cache_usable();
	bool		ips_overflow = false;
	uint64		generation = 0;
	char	   *hash;
	bool		verified;
	bool		own_write;

	hk_key_digest(key, HK_KEY_LEN, digest);
	if (use_cache)
	{
		/* On a standby: invalidations replayed from the primary first. */
		hk_walinval_sync();
		*touch_due = false;
		switch (hk_cache_lookup(digest, *now, st, &ips_overflow, touch_due))
		{
			case HK_CACHE_HIT:
				if (ips_overflow)
					hk_key_store_allowed_ips(st);
				return true;
			case HK_CACHE_NEGATIVE:
				return false;
			case HK_CACHE_MISS:
				break;
		}
		/* Read before the row's snapshot is taken: see invalidate.c. */
		generation = hk_cache_generation();
	}

	if (!hk_throttle_admit(key))
		return false;
	*touch_due = true;
	hash = hk_key_store_lookup(key, st, &own_write);
	if (hash == NULL)
	{
		hk_throttle_release(key);
		return false;
	}
	hk_stat_add(HK_STAT_BCRYPT);
	verified = hk_bcrypt_verify(key, hash);
	*now = GetCurrentTimestamp();
	if (verified)
		hk_throttle_release(key);
	if (use_cache && !own_write)
	{
		if (verified)
			hk_cache_insert(digest, st, generation);
		else
			hk_cache_insert_negative(digest, generation);
	}
	return verified;
}

/* Steps 4 to 7 of the banner, for a key whose secret has been proven. */
static HkStatus
key_check(const HkKeyState *st, const HkCidr *client, TimestampTz now)
{
	if (st->revoked)
		return HK_STATUS_REVOKED;
	/* Expired before inactive: the worker deactivates keys that expire. */
	if (st->has_expiry && st->expires_at <= now)
		return HK_STATUS_EXPIRED;
	if (!st->active)
		return HK_STATUS_REVOKED;
	if (st->disabled)
		return HK_STATUS_DISABLED;
	/* An IPv4-mapped client matches IPv4 networks (hk_cidrs_allow). */
	if (st->has_allowed_ips &&
		(client == NULL || !hk_cidrs_allow(st->allowed, st->n_allowed, client)))
		return HK_STATUS_IP_DENIED;
	return HK_STATUS_OK;
}

/*
 * Step 8 of the banner: every scope required by the caller, and every
 * scope the route demands, is granted by the key's.  A key-management
 * route's scope (restricted_only) is not demanded of a key with no scopes.
 * On a refusal, res->missing_scope names the first scope missing.
 */
static HkStatus
scope_check(HkKeyState *st, const HkRequest *req, HkValidation *res)
{
	const char *missing = NULL;
	int			missing_len = 0;

	if (st->scopes_unread)
		hk_key_store_scopes(st);
	if (req->required_scopes != NULL)
		(void) hk_scopes_first_missing(st->scopes, st->scopes_len,
									   req->required_scopes,
									   &missing, &missing_len);
	for (int i = 0; missing == NULL && i < req->n_route_scopes; i++)
	{
		const HkRouteScope *r = &req->route_scopes[i];

		if (r->restricted_only && st->n_scopes == 0)
			continue;
		if (!hk_scopes_grant(st->scopes, st->scopes_len, r->name, r->len))
		{
			missing = r->name;
			missing_len = r->len;
		}
	}
	if (missing == NULL)
		return HK_STATUS_OK;
	missing_len = Min(missing_len, HK_SCOPE_MAX_LEN);
	memcpy(res->missing_scope, missing, missing_len);
	res->missing_scope[missing_len] = '\0';
	return HK_STATUS_INSUFFICIENT_SCOPE;
}

/*
 * Validate the key of *req for its client address: the checks of the
 * banner, in order.  When the key is admitted, notes its use and, when
 * req->endpoint is not NULL, queues a usage event for it.  Never raises for
 * a bad key: every rejection is a status in *res.
 */
void
hk_validate(const HkRequest *req, HkValidation *res)
{
	const char *key_text = req->key;
	size_t		key_len = req->key_len;
	const HkCidr *client = req->client;
	const text *endpoint = req->endpoint;
	HkStatus	status;
	HkKeyState	st;
	HkAdmitResult limit;
	bool		known = false;
	bool		touch_due = false;
	TimestampTz now = 0;		/* the call's one clock reading */

	hk_require_preload();

	memset(res, 0, sizeof(*res));
	if (key_text == NULL)
		status = HK_STATUS_MALFORMED;
	else
	{
		HkEnvironment env;

		if (hk_key_parse(key_text, key_len, &env) != HK_KEY_OK)
			status = HK_STATUS_MALFORMED;
		else
		{
			char		key[HK_KEY_LEN + 1];

			memcpy(res->prefix, key_text, HK_PREFIX_LEN);
			res->prefix[HK_PREFIX_LEN] = '\0';
			memcpy(key, key_text, HK_KEY_LEN);
			key[HK_KEY_LEN] = '\0';
			now = GetCurrentTimestamp();
			known = key_authenticate(key, &now, &st, &touch_due);
			sodium_memzero(key, sizeof(key));
			if (!known)
				status = HK_STATUS_UNKNOWN;
			else
				status = key_check(&st, client, now);
			if (status == HK_STATUS_OK &&
				(req->required_scopes != NULL || req->n_route_scopes > 0))
				status = scope_check(&st, req, res);
			if (status == HK_STATUS_OK)
			{
				HkAdmission a;

				/* burst_limit NULL (-1) follows the default; 0 is none. */
				a.key_id = st.key_id;
				a.user_id = st.user_id;
				a.key.per_hour = st.rate_limit_per_hour;
				a.key.burst = st.burst_limit >= 0 ? st.burst_limit : hk_default_burst_limit;
				a.user.per_hour = st.user_rate_limit_per_hour;
				a.user.burst = st.user_burst_limit;
				a.metered = st.has_credits;
				a.credits_key = st.credits_key;
				a.refill.amount = st.refill_amount;
				a.refill.interval = (HkRefillInterval) st.refill_interval;
				a.cost = req->cost;
				a.key_hint = st.limiter_hint;
				a.key_hint_at = st.limiter_hint_at;
				hk_admit(&a, now, &limit);
				if (!limit.admitted)
					status = limit.refused_by == HK_REFUSED_CREDITS ?
						HK_STATUS_CREDITS_EXHAUSTED : HK_STATUS_RATE_LIMITED;
			}
		}
	}

	if (status == HK_STATUS_MALFORMED)
		hk_stat_add(HK_STAT_MALFORMED);
	else if (status == HK_STATUS_OK && (endpoint != NULL || touch_due))
		hk_usage_note_valid(&st.key_id, endpoint, now);
	else if (status == HK_STATUS_RATE_LIMITED)
		hk_event_note(HK_EVENT_RATE_LIMIT_EXCEEDED, &st.key_id, &st.user_id, limit.retry_after);

	if (status == HK_STATUS_OK && req->want_scopes)
	{
		if (st.scopes_unread)
			hk_key_store_scopes(&st);
		res->has_scopes = true;
		res->n_scopes = st.n_scopes;
		res->scopes_len = st.scopes_len;
		res->scopes = palloc(Max(st.scopes_len, 1));
		if (st.scopes_len > 0)
			memcpy(res->scopes, st.scopes, st.scopes_len);
	}

	res->status = status;
	res->known = known;
	if (known)
	{
		res->key_id = st.key_id;
		res->user_id = st.user_id;
		res->rate_limit = st.rate_limit_per_hour;
	}
	res->has_limits = (status == HK_STATUS_OK || status == HK_STATUS_RATE_LIMITED ||
					   status == HK_STATUS_CREDITS_EXHAUSTED);
	if (res->has_limits)
	{
		res->remaining = limit.remaining;
		res->reset_seconds = limit.reset_seconds;
		res->retry_after = limit.retry_after;
		res->has_credits = limit.has_credits;
		res->credits_remaining = limit.credits_remaining;
	}
}
