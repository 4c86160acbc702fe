/*-------------------------------------------------------------------------
 *
 * limiter.c
 *	  Where the rate limits' counting state lives: one entry per key in a
 *	  dshash table in a DSA area, decided by ratelimit/window.c.
 *
 * Storage.  Entries live in a dshash table in a DSA area, so memory
 * follows the keys in use, not all keys.  The area and the table are
 * created by the first backend that needs them; their handles sit in a
 * small fixed struct in the main shared memory.  An entry is created on a
 * key's first request and removed by a periodic sweep once all its counts
 * have left both windows.  State starts empty at every server start.
 *
 * Locking rules:
 *
 *	- HkLimiterShared.lock (its own named tranche) is taken exclusively
 *	  only to create the area and table, or to read their handles; never
 *	  together with a dshash lock.
 *	- An entry is read and changed only while dshash holds its partition
 *	  lock: exclusively for admission, reset and the sweep, shared for
 *	  inspection.  Concurrent requests on one key are therefore serialised
 *	  and cannot over-admit.  No other lock is taken, and nothing that can
 *	  raise an ERROR is done, while a partition lock is held.
 *	- The sweep time is an atomic.  The statistics are per-backend
 *	  counters summed on read (validate/stats.c), so that no call writes a
 *	  shared line of its own besides the key's entry and its partition lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "lib/dshash.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/dsa.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "ratelimit/limiter.h"
#include "validate/stats.h"

#define SWEEP_INTERVAL		(60 * USECS_PER_SEC)
#define LIMITER_TRANCHE		"hokusai_auth rate limiter"

typedef struct HkLimiterKey
{
	Oid			dbid;
	pg_uuid_t	key_id;
} HkLimiterKey;

typedef struct HkLimiterEntry
{
	HkLimiterKey key;
	HkLimiterState state;
} HkLimiterEntry;

typedef struct HkLimiterShared
{
	LWLock	   *lock;
	int			tranche_id;
	dsa_handle	area_handle;
	dshash_table_handle table_handle;
	pg_atomic_uint64 last_sweep;
} HkLimiterShared;

static HkLimiterShared *limiter = NULL;
static dsa_area *limiter_area = NULL;
static dshash_table *limiter_table = NULL;

static const dshash_parameters limiter_params = {
	.key_size = sizeof(HkLimiterKey),
	.entry_size = sizeof(HkLimiterEntry),
	.compare_function = dshash_memcmp,
	.hash_function = dshash_memhash,
#if PG_VERSION_NUM >= 170000
	.copy_function = dshash_memcpy,
#endif
	.tranche_id = 0				/* set at attach */
};

/* From shmem_request_hook: the handles and their lock. */
void
hk_limiter_shmem_request(void)
{
	RequestAddinShmemSpace(sizeof(HkLimiterShared));
	RequestNamedLWLockTranche(LIMITER_TRANCHE, 1);
}

/* Create or attach to the handles.  Called with AddinShmemInitLock held. */
void
hk_limiter_shmem_startup(void)
{
	bool		found;

	limiter = ShmemInitStruct("hokusai_auth rate limiter", sizeof(HkLimiterShared), &found);
	if (found)
		return;
	memset(limiter, 0, sizeof(*limiter));
	limiter->lock = &(GetNamedLWLockTranche(LIMITER_TRANCHE))->lock;
	limiter->tranche_id = LWLockNewTrancheId();
	limiter->area_handle = DSM_HANDLE_INVALID;
	pg_atomic_init_u64(&limiter->last_sweep, 0);
}

/* Attach this backend to the area and table, creating them on first use. */
static void
limiter_attach(void)
{
	dshash_parameters params = limiter_params;
	MemoryContext old;

	if (limiter_table != NULL)
		return;
	hk_require_preload();
	if (limiter == NULL)
		elog(ERROR, "hokusai_auth rate limiter shared memory is missing");

	LWLockRegisterTranche(limiter->tranche_id, LIMITER_TRANCHE);
	params.tranche_id = limiter->tranche_id;
	old = MemoryContextSwitchTo(TopMemoryContext);
	LWLockAcquire(limiter->lock, LW_EXCLUSIVE);
	if (limiter->area_handle == DSM_HANDLE_INVALID)
	{
		limiter_area = dsa_create(limiter->tranche_id);
		dsa_pin(limiter_area);
		dsa_pin_mapping(limiter_area);
		limiter_table = dshash_create(limiter_area, &params, NULL);
		limiter->table_handle = dshash_get_hash_table_handle(limiter_table);
		limiter->area_handle = dsa_get_handle(limiter_area);
	}
	else
	{
		limiter_area = dsa_attach(limiter->area_handle);
		dsa_pin_mapping(limiter_area);
		limiter_table = dshash_attach(limiter_area, &params,
									  limiter->table_handle, NULL);
	}
	LWLockRelease(limiter->lock);
	MemoryContextSwitchTo(old);
}

/* The table key of a key id in this database. */
static void
limiter_key(const pg_uuid_t *key_id, HkLimiterKey *key)
{
	memset(key, 0, sizeof(*key));
	key->dbid = MyDatabaseId;
	key->key_id = *key_id;
}

/* Remove entries whose counts have all left both windows. */
static void
limiter_sweep(TimestampTz now)
{
	dshash_seq_status status;
	HkLimiterEntry *e;
	uint64		removed = 0;

	dshash_seq_init(&status, limiter_table, true);
	while ((e = dshash_seq_next(&status)) != NULL)
	{
		if (hk_limiter_state_idle(&e->state, now))
		{
			dshash_delete_current(&status);
			removed++;
		}
	}
	dshash_seq_term(&status);
	hk_stat_add_n(HK_STAT_RL_RECLAIMED, removed);
}

/* Sweep at most once per SWEEP_INTERVAL, in whichever backend wins. */
static void
maybe_sweep(TimestampTz now)
{
	uint64		last = pg_atomic_read_u64(&limiter->last_sweep);

	if ((uint64) now - last < (uint64) SWEEP_INTERVAL)
		return;
	/* One backend wins the right to sweep. */
	if (pg_atomic_compare_exchange_u64(&limiter->last_sweep, &last, (uint64) now))
		limiter_sweep(now);
}

/* This backend's latest decision (hk_limiter_last()). */
static bool last_valid = false;
static pg_uuid_t last_key_id;
static HkLimiterDecision last_decision;

/*
 * Decide one request of a key at time now (the caller's one clock reading
 * for the call), counting it when admitted.
 */
void
hk_limiter_admit(const pg_uuid_t *key_id, int32 per_hour, int32 burst,
				 TimestampTz now, HkLimiterDecision *d)
{
	HkLimiterKey key;
	HkLimiterEntry *e;
	bool		found;

	limiter_attach();
	limiter_key(key_id, &key);

	maybe_sweep(now);

	e = dshash_find_or_insert(limiter_table, &key, &found);
	if (!found)
		hk_limiter_state_init(&e->state);
	hk_limiter_decide(&e->state, now, per_hour, burst, d);
	dshash_release_lock(limiter_table, e);

	if (!found)
		hk_stat_add(HK_STAT_RL_CREATED);
	if (d->admitted)
		hk_stat_add(HK_STAT_RL_ADMITTED);
	else if (d->limited_by == HK_LIMIT_HOURLY)
		hk_stat_add(HK_STAT_RL_REJECTED_HOURLY);
	else
		hk_stat_add(HK_STAT_RL_REJECTED_BURST);

	last_key_id = *key_id;
	last_decision = *d;
	last_valid = true;
}

/*
 * The decision of this backend's latest hk_limiter_admit() when it was for
 * key_id: how pre_request() gets the figures of both windows for its
 * headers after validation (validate/pipeline.c) decided the request.
 */
bool
hk_limiter_last(const pg_uuid_t *key_id, HkLimiterDecision *d)
{
	if (!last_valid || memcmp(&last_key_id, key_id, sizeof(pg_uuid_t)) != 0)
		return false;
	*d = last_decision;
	return true;
}

/*
 * Copy a key's state into *st, without counting anything; false (and an
 * empty *st) when the key is not tracked.
 */
bool
hk_limiter_lookup(const pg_uuid_t *key_id, HkLimiterState *st)
{
	HkLimiterKey key;
	HkLimiterEntry *e;

	limiter_attach();
	limiter_key(key_id, &key);
	hk_limiter_state_init(st);
	e = dshash_find(limiter_table, &key, false);
	if (e == NULL)
		return false;
	*st = e->state;
	dshash_release_lock(limiter_table, e);
	return true;
}

/* Forget a key's state; false when it was not tracked. */
bool
hk_limiter_forget(const pg_uuid_t *key_id)
{
	HkLimiterKey key;

	limiter_attach();
	limiter_key(key_id, &key);
	return dshash_delete_key(limiter_table, &key);
}

/* The counters, the number of keys tracked and the size of an entry. */
void
hk_limiter_stats(HkLimiterStats *stats)
{
	dshash_seq_status status;

	limiter_attach();
	stats->entries = 0;
	dshash_seq_init(&status, limiter_table, false);
	while (dshash_seq_next(&status) != NULL)
		stats->entries++;
	dshash_seq_term(&status);

	stats->admitted = hk_stat_read(HK_STAT_RL_ADMITTED);
	stats->rejected_hourly = hk_stat_read(HK_STAT_RL_REJECTED_HOURLY);
	stats->rejected_burst = hk_stat_read(HK_STAT_RL_REJECTED_BURST);
	stats->created = hk_stat_read(HK_STAT_RL_CREATED);
	stats->reclaimed = hk_stat_read(HK_STAT_RL_RECLAIMED);
	stats->entry_bytes = (int32) sizeof(HkLimiterEntry);
}
