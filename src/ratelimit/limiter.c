/*-------------------------------------------------------------------------
 *
 * limiter.c
 *	  Where the rate limits' counting state lives: one entry per key, and
 *	  one per user with limits shared by the user's keys, in two dshash
 *	  tables in a DSA area, decided by ratelimit/window.c and
 *	  ratelimit/admit.c.
 *
 * Storage.  Entries live in dshash tables in a DSA area, so memory follows
 * the keys and users in use, not all of them.  The area and the tables are
 * created by the first backend that needs them; their handles sit in a
 * small fixed struct in the main shared memory.  An entry is created on
 * first use and removed by a periodic sweep once all its counts have left
 * both windows.  State starts empty at every server start.
 *
 * Locking rules:
 *
 *	- HkLimiterShared.lock (its own named tranche) is taken exclusively
 *	  only to create the area and tables, or to read their handles; never
 *	  together with a dshash lock.
 *	- An entry is read and changed only while dshash holds its partition
 *	  lock: exclusively for admission, reset and the sweep, shared for
 *	  inspection.  Concurrent requests on one key (or user) are therefore
 *	  serialised and cannot over-admit.
 *	- An admission holds at most one lock of each table, taken in this
 *	  order: the key table's, a credit balance's (metering/credits.c),
 *	  then the user table's (ratelimit/admit.c).  Everything else takes one partition lock at a
 *	  time and nothing more, so there is no deadlock.  Two locks of the
 *	  same table are never held at once (dshash forbids it: a resize takes
 *	  them all).
 *	- Nothing that can raise an ERROR is done while a partition lock is
 *	  held, except dshash_find_or_insert() running out of shared memory when
 *	  an entry is created: then the abort releases the locks, and nothing
 *	  has been counted yet.
 *	- The sweep time is an atomic.  The statistics are per-backend
 *	  counters summed on read (validate/stats.c), so that no call writes a
 *	  shared line of its own besides the entries it locks.
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
#include "common/id_hash.h"
#include "ratelimit/limiter.h"
#include "validate/stats.h"

#define SWEEP_INTERVAL		(60 * USECS_PER_SEC)
#define LIMITER_TRANCHE		"hokusai_auth rate limiter"

typedef struct HkLimiterKey
{
	Oid			dbid;
	pg_uuid_t	id;				/* key id, or user id */
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
	dshash_table_handle table_handles[HK_LIMITER_KINDS];
	pg_atomic_uint64 last_sweep;
} HkLimiterShared;

static HkLimiterShared *limiter = NULL;
static dsa_area *limiter_area = NULL;
static dshash_table *limiter_tables[HK_LIMITER_KINDS];

static const dshash_parameters limiter_params = {
	.key_size = sizeof(HkLimiterKey),
	.entry_size = sizeof(HkLimiterEntry),
	.compare_function = hk_id_compare,
	.hash_function = hk_id_hash,
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

/* Attach this backend to the area and tables, creating them on first use. */
static void
limiter_attach(void)
{
	dshash_parameters params = limiter_params;
	MemoryContext old;
	int			i;

	if (limiter_tables[HK_LIMITER_KEY] != NULL)
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
		for (i = 0; i < HK_LIMITER_KINDS; i++)
		{
			limiter_tables[i] = dshash_create(limiter_area, &params, NULL);
			limiter->table_handles[i] = dshash_get_hash_table_handle(limiter_tables[i]);
		}
		limiter->area_handle = dsa_get_handle(limiter_area);
	}
	else
	{
		limiter_area = dsa_attach(limiter->area_handle);
		dsa_pin_mapping(limiter_area);
		for (i = 0; i < HK_LIMITER_KINDS; i++)
			limiter_tables[i] = dshash_attach(limiter_area, &params,
											  limiter->table_handles[i], NULL);
	}
	LWLockRelease(limiter->lock);
	MemoryContextSwitchTo(old);
}

/* The table key of a key id (or user id) in this database. */
static void
limiter_key(const pg_uuid_t *id, HkLimiterKey *key)
{
	memset(key, 0, sizeof(*key));
	key->dbid = MyDatabaseId;
	key->id = *id;
}

/* Remove a table's entries whose counts have all left both windows. */
static void
limiter_sweep(dshash_table *table, TimestampTz now)
{
	dshash_seq_status status;
	HkLimiterEntry *e;
	uint64		removed = 0;

	dshash_seq_init(&status, table, true);
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

/*
 * Before an admission: attach, and sweep at most once per SWEEP_INTERVAL,
 * in whichever backend wins.  Takes no lock when it returns.
 */
void
hk_limiter_prepare(TimestampTz now)
{
	uint64		last;

	limiter_attach();
	last = pg_atomic_read_u64(&limiter->last_sweep);
	if ((uint64) now - last < (uint64) SWEEP_INTERVAL)
		return;
	/* One backend wins the right to sweep. */
	if (pg_atomic_compare_exchange_u64(&limiter->last_sweep, &last, (uint64) now))
	{
		limiter_sweep(limiter_tables[HK_LIMITER_KEY], now);
		limiter_sweep(limiter_tables[HK_LIMITER_USER], now);
	}
}

/*
 * Lock the entry of a key (or user) exclusively, creating it empty on
 * first use, and return its state; hk_limiter_unlock() releases it.  See
 * the banner for the order of locks.
 */
HkLimiterState *
hk_limiter_lock(HkLimiterKind kind, const pg_uuid_t *id)
{
	HkLimiterKey key;
	HkLimiterEntry *e;
	bool		found;

	limiter_key(id, &key);
	e = dshash_find_or_insert(limiter_tables[kind], &key, &found);
	if (!found)
	{
		hk_limiter_state_init(&e->state);
		hk_stat_add(HK_STAT_RL_CREATED);
	}
	return &e->state;
}

/* Release the lock of hk_limiter_lock(). */
void
hk_limiter_unlock(HkLimiterKind kind, HkLimiterState *st)
{
	HkLimiterEntry *e = (HkLimiterEntry *) ((char *) st - offsetof(HkLimiterEntry, state));

	dshash_release_lock(limiter_tables[kind], e);
}

/* Count an admission's outcome. */
void
hk_limiter_note(HkRefusal refusal)
{
	StaticAssertStmt(HK_STAT_RL_ADMITTED + HK_REFUSED_USER_BURST ==
					 HK_STAT_RL_REJECTED_USER_BURST,
					 "the refusal counters follow HkRefusal");
	hk_stat_add((HkCacheStat) (HK_STAT_RL_ADMITTED + refusal));
}

/*
 * Copy a key's (or user's) state into *st, without counting anything;
 * false (and an empty *st) when it is not tracked.
 */
bool
hk_limiter_lookup(HkLimiterKind kind, const pg_uuid_t *id, HkLimiterState *st)
{
	HkLimiterKey key;
	HkLimiterEntry *e;

	limiter_attach();
	limiter_key(id, &key);
	hk_limiter_state_init(st);
	e = dshash_find(limiter_tables[kind], &key, false);
	if (e == NULL)
		return false;
	*st = e->state;
	dshash_release_lock(limiter_tables[kind], e);
	return true;
}

/* Forget a key's (or user's) state; false when it was not tracked. */
bool
hk_limiter_forget(HkLimiterKind kind, const pg_uuid_t *id)
{
	HkLimiterKey key;

	limiter_attach();
	limiter_key(id, &key);
	return dshash_delete_key(limiter_tables[kind], &key);
}

/* Entries of a table, in every database. */
static int64
count_entries(dshash_table *table)
{
	dshash_seq_status status;
	int64		n = 0;

	dshash_seq_init(&status, table, false);
	while (dshash_seq_next(&status) != NULL)
		n++;
	dshash_seq_term(&status);
	return n;
}

/* The counters, the number of keys and users tracked and an entry's size. */
void
hk_limiter_stats(HkLimiterStats *stats)
{
	int			i;

	limiter_attach();
	stats->entries = count_entries(limiter_tables[HK_LIMITER_KEY]);
	stats->user_entries = count_entries(limiter_tables[HK_LIMITER_USER]);
	stats->admitted = hk_stat_read(HK_STAT_RL_ADMITTED);
	stats->rejected[HK_REFUSED_NONE] = 0;
	for (i = HK_REFUSED_CREDITS; i < HK_REFUSAL_KINDS; i++)
		stats->rejected[i] = hk_stat_read((HkCacheStat) (HK_STAT_RL_ADMITTED + i));
	stats->created = hk_stat_read(HK_STAT_RL_CREATED);
	stats->reclaimed = hk_stat_read(HK_STAT_RL_RECLAIMED);
	stats->entry_bytes = (int32) sizeof(HkLimiterEntry);
}
