/*-------------------------------------------------------------------------
 *
 * cache_lookup.c
 *	  The read path of the key cache: a lookup that writes nothing shared
 *	  on a hit.  The layout and the locking rules are in cache.c's banner.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "ratelimit/limiter.h"
#include "validate/cache_entry.h"
#include "validate/stats.h"

/*
 * Look digest up in its set without the lock (see the banner).  Returns
 * false ("take the lock") when a read was torn or a touch is due, else
 * true with the outcome in *result.
 */
static bool
lookup_unlocked(uint32 set, const uint8 *digest, Oid nspid, TimestampTz now,
				HkKeyState *st, bool *ips_overflow, HkCacheResult *result)
{
	HkCacheEntry *e = &hk_cache_shm->entries[set * HK_CACHE_WAYS];
	bool		torn = false;
	int			i;

	for (i = 0; i < HK_CACHE_WAYS; i++, e++)
	{
		uint32		before = pg_atomic_read_u32(&e->changes);
		bool		fresh;
		uint32		tick;

		pg_read_barrier();
		if (before & 1)
		{
			/* Being written: it may be ours, and a miss costs a bcrypt. */
			torn = true;
			continue;
		}
		if (!entry_matches(e, digest, nspid))
			continue;
		fresh = entry_fresh(e, now);
		if (e->flags & HKE_NEGATIVE)
			*result = HK_CACHE_NEGATIVE;
		else
		{
			entry_to_state(e, st, ips_overflow);
			*result = HK_CACHE_HIT;
		}
		pg_read_barrier();
		if (pg_atomic_read_u32(&e->changes) != before)
			return false;
		if (!fresh)
		{
			*result = HK_CACHE_MISS;
			return true;
		}
		tick = now_tick(now);
		if (*result == HK_CACHE_HIT &&
			tick - pg_atomic_read_u32(&e->last_touch) >= HK_TOUCH_INTERVAL)
			return false;
		/* Written once per second at most, not on every hit. */
		if (pg_atomic_read_u32(&e->last_used) != tick)
			pg_atomic_write_u32(&e->last_used, tick);
		return true;
	}
	*result = HK_CACHE_MISS;
	return !torn;
}

/*
 * Look a digest up at time now.  On a hit, *st describes the key (allowed
 * CIDRs copied into st->allowed_buf; *ips_overflow when there were too
 * many to keep), and *touch_due says whether this hit should note the key
 * as used.
 */
HkCacheResult
hk_cache_lookup(const uint8 *digest, TimestampTz now, HkKeyState *st,
				bool *ips_overflow, bool *touch_due)
{
	uint32		set = digest_set(digest);
	HkCacheEntry *e = &hk_cache_shm->entries[set * HK_CACHE_WAYS];
	Oid			nspid = hk_cache_nspid();
	HkCacheResult result;
	int			i;

	*touch_due = false;
	if (lookup_unlocked(set, digest, nspid, now, st, ips_overflow, &result))
		goto done;

	result = HK_CACHE_MISS;
	LWLockAcquire(set_lock(set), LW_SHARED);
	for (i = 0; i < HK_CACHE_WAYS; i++, e++)
	{
		if (!entry_matches(e, digest, nspid))
			continue;
		if (!entry_fresh(e, now))
			break;
		pg_atomic_write_u32(&e->last_used, now_tick(now));
		if (e->flags & HKE_NEGATIVE)
		{
			result = HK_CACHE_NEGATIVE;
			break;
		}
		{
			uint32		tick = now_tick(now);
			uint32		last = pg_atomic_read_u32(&e->last_touch);

			*touch_due = tick - last >= HK_TOUCH_INTERVAL &&
				pg_atomic_compare_exchange_u32(&e->last_touch, &last, tick);
		}
		entry_to_state(e, st, ips_overflow);
		result = HK_CACHE_HIT;
		break;
	}
	LWLockRelease(set_lock(set));

done:
	/* With many keys, the hit's limiter state's lines are misses. */
	if (result == HK_CACHE_HIT)
		hk_limiter_prefetch(st->limiter_hint, now);
	hk_stat_add(result == HK_CACHE_HIT ? HK_STAT_HITS :
				result == HK_CACHE_NEGATIVE ? HK_STAT_NEGATIVE_HITS :
				HK_STAT_MISSES);
	return result;
}
