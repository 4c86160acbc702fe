/*-------------------------------------------------------------------------
 *
 * walinval.c
 *	  The standby's half of cache invalidation through the WAL: reading the
 *	  invalidation log (replica/inval_log.c) and clearing what it names.
 *
 * When a hot standby replays the commit of a transaction that changed keys
 * or users, the commit's relcache invalidation of the log table reaches
 * every standby backend of that database (after the commit is visible).
 * The backend's relcache callback only notes that the log must be read
 * (hk_walinval_pending); its next validation, before it looks in the
 * cache, reads the log rows it had not seen, advances the cache generation
 * and clears those keys and users (hk_walinval_catch_up).  Validation also
 * takes in pending invalidation messages first (walinval.h), so even a
 * session inside a long transaction refuses a revoked key once its commit
 * has replayed.
 *
 * What a backend "has not seen" is kept per database in shared memory, so
 * that one backend reads each change once for all: a slot holds the
 * snapshot of the last completed read ("published"), as the 64-bit ids
 * xmin, xmax and the transactions running then (replica/xidsnap.c).  A row is new to it when
 * its transaction was running or not yet started then, that is, not
 * visible in it.  Transaction ids and not a sequence: rows do not become
 * visible in the order they were written.  A read:
 *
 *	1. r = ++read_seq; copy the published snapshot P;
 *	2. take the latest snapshot S (after 1);
 *	3. read the rows with xid >= P.xmin and keep those not visible in P;
 *	4. if any: advance the generation, then clear each key or user (or the
 *	   whole database), as the primary does at commit (validate/invalidate.c:
 *	   a fill that read a row before S either sees the generation change or
 *	   is cleared; one that begins after step 4 reads after S); a credit
 *	   balance this server keeps for one of the keys takes in the change of
 *	   its row (add_credits(): metering/credits.c,
 *	   hk_credits_replica_sync());
 *	5. publish S with r, unless a read with a larger r published first.
 *
 * A backend whose callback fired when read_seq was v needs a completed read
 * with r > v: that read took its snapshot after the callback, so after the
 * commit became visible.  If the published r is that large already, the
 * backend reads nothing.  The first validation of a backend asks the same
 * (a change replayed while no backend of the database was connected is
 * found that way).  A slot is created, or taken from the database that used
 * its slot least recently, by a read that clears the whole database's
 * entries instead of reading the log: before a database has a slot nothing
 * tells which of its entries are current.  Relcache invalidations with no
 * relation (a backend's invalidation queue overflowed) count as the log's.
 *
 * Pruning.  The worker deletes rows older than an hour on the primary and
 * appends a row of kind 'p' listing the transactions whose rows it deleted.
 * A read that finds such a row new checks each listed transaction: one that
 * is not visible in P had rows this server never read, so the database's
 * entries are all cleared.
 *
 * Promotion.  After recovery ends, commits clear the cache themselves.  The
 * first validation in each database after promotion reads once more (with
 * a snapshot taken after recovery ended), then never again.  A server that
 * never validated during recovery reads nothing.
 *
 * Locking rules:
 *
 *	- slots_lock guards every field of every slot except read_seq: held
 *	  shared to copy a slot's published snapshot, exclusive to claim a slot
 *	  or publish.  It is held only to copy these fields, never across a
 *	  snapshot, a query, the cache's locks, or anything that can raise an
 *	  ERROR.
 *	- read_seq, the counters and recovery_validated are atomics.
 *	- A backend caches its slot's index and incarnation; a slot taken for
 *	  another database gets a new incarnation, and the backend looks again.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"
#include "access/xact.h"
#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/array.h"
#include "utils/snapmgr.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"
#include "utils/xid8.h"

#include "hokusai_auth.h"
#include "metering/credits.h"
#include "replica/inval_log.h"
#include "replica/walinval.h"
#include "replica/xidsnap.h"
#include "validate/cache.h"

#define HK_WALINVAL_TRANCHE "hokusai_auth_replica"
#define HK_INVAL_SLOTS		32	/* databases tracked at once */
#define HK_APPLY_MAX		256 /* more keys and users than this: clear all */

typedef struct HkInvalSlot
{
	Oid			dbid;			/* InvalidOid: free */
	uint32		incarnation;	/* changes when the slot is claimed */
	bool		valid;			/* a snapshot has been published */
	bool		primary_synced; /* read once after recovery ended */
	uint64		applied;		/* read_seq of the published read */
	TimestampTz last_used;
	HkXidSnap	snap;
	pg_atomic_uint64 read_seq;
} HkInvalSlot;

typedef struct HkWalinvalShared
{
	pg_atomic_uint32 recovery_validated;	/* 1: validated during recovery */
	pg_atomic_uint64 stats[HK_NUM_WSTATS];
	HkInvalSlot slots[HK_INVAL_SLOTS];
} HkWalinvalShared;

static HkWalinvalShared *shared = NULL;
static LWLock *slots_lock = NULL;

/* Per backend. */
bool		hk_walinval_pending = true;
static uint64 my_need = 0;		/* a read with r >= this is needed; 0: unknown */
static uint32 my_callbacks = 0; /* callbacks seen, to tell one during a read */
static int	my_slot = -1;
static uint32 my_incarnation = 0;
static Oid	my_log_relid = InvalidOid;
static bool my_primary_done = false;

Size
hk_walinval_shmem_size(void)
{
	return sizeof(HkWalinvalShared);
}

void
hk_walinval_shmem_request(void)
{
	RequestAddinShmemSpace(hk_walinval_shmem_size());
	RequestNamedLWLockTranche(HK_WALINVAL_TRANCHE, 1);
}

/* Called with AddinShmemInitLock held. */
void
hk_walinval_shmem_startup(void)
{
	bool		found;
	int			i;

	shared = ShmemInitStruct("hokusai_auth replica invalidation",
							 hk_walinval_shmem_size(), &found);
	slots_lock = &GetNamedLWLockTranche(HK_WALINVAL_TRANCHE)[0].lock;
	if (found)
		return;
	memset(shared, 0, sizeof(*shared));
	pg_atomic_init_u32(&shared->recovery_validated, 0);
	for (i = 0; i < HK_NUM_WSTATS; i++)
		pg_atomic_init_u64(&shared->stats[i], 0);
	for (i = 0; i < HK_INVAL_SLOTS; i++)
		pg_atomic_init_u64(&shared->slots[i].read_seq, 0);
}

uint64
hk_walinval_stat(HkWalinvalStat which)
{
	return shared == NULL ? 0 : pg_atomic_read_u64(&shared->stats[which]);
}

static void
stat_add(HkWalinvalStat which, uint64 n)
{
	pg_atomic_fetch_add_u64(&shared->stats[which], n);
}

/* Is my cached slot still this database's? */
static inline bool
my_slot_current(void)
{
	return my_slot >= 0 && shared->slots[my_slot].incarnation == my_incarnation &&
		shared->slots[my_slot].dbid == MyDatabaseId;
}

/*
 * Relcache callback: the invalidation log (or, with no relation, anything)
 * may have new rows.  Only notes it: see the banner.
 */
static void
relcache_callback(Datum arg, Oid relid)
{
	if (OidIsValid(relid) && OidIsValid(my_log_relid) && relid != my_log_relid)
		return;
	my_callbacks++;
	hk_walinval_pending = true;
	if (shared == NULL)
		return;
	/* Unlocked reads: a stale slot is caught by hk_walinval_catch_up. */
	if (my_slot_current())
		my_need = Max(my_need, pg_atomic_read_u64(&shared->slots[my_slot].read_seq) + 1);
	else
		my_need = 0;
}

/* The schema may have been made anew: the log table too. */
static void
namespace_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	my_log_relid = InvalidOid;
	my_callbacks++;
	hk_walinval_pending = true;
}

void
hk_walinval_init(void)
{
	static bool registered = false;

	if (!registered)
	{
		CacheRegisterRelcacheCallback(relcache_callback, (Datum) 0);
		CacheRegisterSyscacheCallback(NAMESPACEOID, namespace_callback, (Datum) 0);
		registered = true;
	}
}

/* One read of the log: its input and what it found. */
typedef struct LogRead
{
	const HkXidSnap *prev;
	Snapshot	snap;
	bool		clear_all;
	int			nids;
	HkCacheScope scopes[HK_APPLY_MAX];
	pg_uuid_t	ids[HK_APPLY_MAX];
} LogRead;

/* Note one new row of kind k/u/a/p. */
static void
note_row(LogRead *lr, char kind, bool id_null, Datum id, bool pruned_null, Datum pruned)
{
	if (kind == 'p')
	{
		ArrayType  *a;
		Datum	   *xids;
		int			n;
		int			i;

		if (pruned_null)
		{
			lr->clear_all = true;
			return;
		}
		a = DatumGetArrayTypeP(pruned);
		deconstruct_array(a, XID8OID, sizeof(uint64), FLOAT8PASSBYVAL, TYPALIGN_DOUBLE,
						  &xids, NULL, &n);
		for (i = 0; i < n; i++)
			if (!hk_xidsnap_visible(lr->prev, DatumGetUInt64(xids[i])))
				lr->clear_all = true;
		return;
	}
	if (kind == 'a' || id_null || lr->nids >= HK_APPLY_MAX)
	{
		lr->clear_all = true;
		return;
	}
	lr->scopes[lr->nids] = kind == 'u' ? HK_SCOPE_USER : HK_SCOPE_KEY;
	memcpy(&lr->ids[lr->nids], DatumGetUUIDP(id), sizeof(pg_uuid_t));
	lr->nids++;
}

/* hk_spi_as_schema_owner callback: the rows not visible in lr->prev. */
static void
read_log(void *arg)
{
	static SPIPlanPtr plan = NULL;
	LogRead    *lr = (LogRead *) arg;
	Datum		from = UInt64GetDatum(lr->prev->xmin);
	uint64		r;
	int			ret;

	if (plan == NULL)
	{
		Oid			type = XID8OID;
		SPIPlanPtr	p = SPI_prepare("SELECT c.xid, c.kind, c.id, c.pruned"
									"  FROM " HK_SCHEMA "." HK_INVAL_LOG_TABLE " c"
									" WHERE c.xid OPERATOR(pg_catalog.>=) $1",
									1, &type);

		if (p == NULL)
			elog(ERROR, "SPI_prepare failed: %s", SPI_result_code_string(SPI_result));
		SPI_keepplan(p);
		plan = p;
	}
	ret = SPI_execute_snapshot(plan, &from, NULL, lr->snap, InvalidSnapshot,
							   true, false, 0);
	if (ret != SPI_OK_SELECT)
		elog(ERROR, "could not read %s.%s: %s", HK_SCHEMA, HK_INVAL_LOG_TABLE,
			 SPI_result_code_string(ret));
	for (r = 0; r < SPI_processed && !lr->clear_all; r++)
	{
		HeapTuple	tup = SPI_tuptable->vals[r];
		TupleDesc	desc = SPI_tuptable->tupdesc;
		bool		isnull,
					id_null,
					pruned_null;
		uint64		xid = DatumGetUInt64(SPI_getbinval(tup, desc, 1, &isnull));
		char		kind = DatumGetChar(SPI_getbinval(tup, desc, 2, &isnull));
		Datum		id = SPI_getbinval(tup, desc, 3, &id_null);
		Datum		pruned = SPI_getbinval(tup, desc, 4, &pruned_null);

		if (!hk_xidsnap_visible(lr->prev, xid))
			note_row(lr, kind, id_null, id, pruned_null, pruned);
	}
}

/* Find this database's slot, or claim one (free, else least recently used). */
static void
attach_slot(void)
{
	int			i;
	int			victim = -1;

	LWLockAcquire(slots_lock, LW_EXCLUSIVE);
	for (i = 0; i < HK_INVAL_SLOTS; i++)
	{
		HkInvalSlot *s = &shared->slots[i];

		if (s->dbid == MyDatabaseId)
		{
			victim = i;
			break;
		}
		if (victim < 0 || (OidIsValid(shared->slots[victim].dbid) &&
						   (!OidIsValid(s->dbid) || s->last_used < shared->slots[victim].last_used)))
			victim = i;
	}
	if (shared->slots[victim].dbid != MyDatabaseId)
	{
		HkInvalSlot *s = &shared->slots[victim];

		s->dbid = MyDatabaseId;
		s->incarnation++;
		s->valid = false;
		s->primary_synced = false;
		s->applied = 0;
	}
	my_slot = victim;
	my_incarnation = shared->slots[victim].incarnation;
	LWLockRelease(slots_lock);
	my_need = 0;
}

/*
 * One read (steps 1 to 5 of the banner), or, when the slot has no
 * published snapshot yet, a creation: clear the database, publish a
 * snapshot.
 */
static void
read_and_apply(void)
{
	HkInvalSlot *s;
	LogRead    *lr = palloc0(sizeof(LogRead));
	HkXidSnap  *prev = palloc(sizeof(HkXidSnap));
	HkXidSnap  *cur = palloc(sizeof(HkXidSnap));
	bool		create;
	bool		after_recovery;
	uint64		r;
	int			i;

	for (;;)
	{
		bool		mine;

		s = &shared->slots[my_slot];
		r = pg_atomic_fetch_add_u64(&s->read_seq, 1) + 1;
		LWLockAcquire(slots_lock, LW_SHARED);
		mine = my_slot_current();
		create = !s->valid;
		if (mine && !create)
			memcpy(prev, &s->snap, sizeof(HkXidSnap));
		LWLockRelease(slots_lock);
		if (mine)
			break;
		/* Taken for another database meanwhile: claim one again. */
		attach_slot();
	}

	after_recovery = !RecoveryInProgress();
	lr->snap = RegisterSnapshot(GetLatestSnapshot());
	lr->prev = prev;
	if (create)
		lr->clear_all = true;
	else if (OidIsValid(my_log_relid))
		hk_spi_as_schema_owner(read_log, lr);

	if (lr->clear_all || lr->nids > 0)
	{
		hk_cache_advance_generation();
		if (lr->clear_all)
		{
			hk_cache_clear(HK_SCOPE_ALL, NULL);
			stat_add(HK_WSTAT_CLEARED_ALL, 1);
		}
		else
		{
			for (i = 0; i < lr->nids; i++)
				hk_cache_clear(lr->scopes[i], &lr->ids[i]);
			stat_add(HK_WSTAT_APPLIED, lr->nids);
			/* Credit balances kept here take in the primary's changes. */
			if (!after_recovery)
				for (i = 0; i < lr->nids; i++)
					if (lr->scopes[i] == HK_SCOPE_KEY)
						hk_credits_replica_sync(&lr->ids[i]);
		}
	}
	stat_add(HK_WSTAT_PASSES, 1);
	hk_xidsnap_from(lr->snap, cur);
	UnregisterSnapshot(lr->snap);

	LWLockAcquire(slots_lock, LW_EXCLUSIVE);
	if (s->dbid == MyDatabaseId && s->incarnation == my_incarnation)
	{
		if (r > s->applied)
		{
			memcpy(&s->snap, cur, sizeof(HkXidSnap));
			s->applied = r;
			s->valid = true;
		}
		if (after_recovery)
			s->primary_synced = true;
		s->last_used = GetCurrentTimestamp();
	}
	LWLockRelease(slots_lock);
	pfree(lr);
	pfree(prev);
	pfree(cur);
}

/* Has this database's slot been read once since recovery ended? */
static bool
slot_primary_synced(void)
{
	bool		synced;

	LWLockAcquire(slots_lock, LW_SHARED);
	synced = my_slot_current() && shared->slots[my_slot].valid &&
		shared->slots[my_slot].primary_synced;
	LWLockRelease(slots_lock);
	return synced;
}

/*
 * The log may have rows this backend has not had applied: make sure a read
 * that began after they became visible has completed (see the banner).
 * On an error the backend stays pending and tries again next time.
 */
void
hk_walinval_catch_up(void)
{
	uint32		start = my_callbacks;
	bool		in_recovery;

	if (shared == NULL)
		return;
	if (!OidIsValid(my_log_relid))
		my_log_relid = hk_inval_log_relid();

	in_recovery = RecoveryInProgress();
	if (in_recovery)
	{
		/* Set before looking again: see "Promotion" in the banner. */
		pg_atomic_write_u32(&shared->recovery_validated, 1);
		pg_memory_barrier();
		in_recovery = RecoveryInProgress();
	}

	if (!in_recovery)
	{
		/* A primary: commits clear the cache themselves. */
		if (!my_primary_done &&
			pg_atomic_read_u32(&shared->recovery_validated) != 0)
		{
			if (!my_slot_current())
				attach_slot();
			if (!slot_primary_synced())
				read_and_apply();
		}
		my_primary_done = true;
	}
	else
	{
		if (!my_slot_current())
			attach_slot();
		if (my_need == 0)
			my_need = pg_atomic_read_u64(&shared->slots[my_slot].read_seq) + 1;
		LWLockAcquire(slots_lock, LW_SHARED);
		if (shared->slots[my_slot].valid && shared->slots[my_slot].applied >= my_need)
			my_need = 0;
		LWLockRelease(slots_lock);
		if (my_need != 0)
			read_and_apply();
	}

	if (my_callbacks == start)
	{
		hk_walinval_pending = false;
		my_need = 0;
	}
}
