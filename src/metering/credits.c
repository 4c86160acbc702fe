/*-------------------------------------------------------------------------
 *
 * credits.c
 *	  Live credit balances in shared memory: one entry per metered key in
 *	  use, in a dshash table in a DSA area, written back to
 *	  api_keys.credits_remaining by the background worker.
 *
 * Storage.  As for the rate limiter (ratelimit/limiter.c): the area and the
 * table are created by the first backend that needs them, their handles sit
 * in a small fixed struct in the main shared memory, which also holds the
 * counters, the generation and one slot per backend (open_since).  An entry
 * is keyed by database, hokusai_auth schema (a schema dropped and created
 * again, say by a restore, starts afresh) and the key that owns the
 * balance: the key itself, or for a key made by rotate_key() the first key
 * of its chain (api_keys.credits_key_id), so that rotation hands the live
 * balance on and old and new key share it during the grace period.
 *
 * Who changes a balance.  Validation spends (ratelimit/admit.c, with the
 * limiter's entries locked: all-or-nothing); an aborting transaction gives
 * back what it spent (credits_xact.c); add_credits() adjusts it just before
 * its transaction commits, and update_key(credits => N) sets it then
 * (hk_credits_set()); a refill due is applied by whichever of them
 * comes first (balance.c).  Every change bumps the entry's version.
 * update_key(clear_credits => true) removes it once its transaction has
 * committed (hk_credits_remove()).
 *
 * Loading.  A balance is read from its row (validate/key_store.c) the first
 * time it is needed, and never again while it is in memory: the table
 * trails the live balance, so reading it again would resurrect spent
 * credits.  An entry leaves memory only through the sweep below, and a
 * load that raced with the sweep could have read the row before the sweep's
 * last write-back committed: a load therefore reads the generation before
 * it reads the row and inserts only if the generation is unchanged under
 * the partition lock; every removal bumps it while holding that lock.
 *
 * Write-back (worker/credits_writer.c).  The worker copies each entry
 * whose version differs from its flushed version, locks the rows without
 * waiting, writes the absolute balance and refilled_at, and once that has
 * committed records the version it wrote.  A crash loses what changed since
 * the last write-back: at most one flush_interval of spending.
 *
 * Sweep.  An entry whose balance is written back, that no add_credits() has
 * pinned, unchanged for HK_CREDITS_IDLE and since before every transaction
 * still open that has spent credits (open_since[]: an aborting transaction
 * must find the entry to give back to) is removed; so is every entry of a
 * schema that no longer exists.
 *
 * Locking rules:
 *
 *	- HkCreditsShared.lock is taken exclusively only to create the area and
 *	  table or read their handles; never together with a dshash lock.
 *	- An entry is read and changed only while dshash holds its partition
 *	  lock: exclusively for every change, shared to look.
 *	- Lock order: the rate limiter's key entry, then a credit entry, then
 *	  the rate limiter's user entry (ratelimit/admit.c).  Everything else
 *	  here takes one credit partition lock at a time and nothing else
 *	  meanwhile, and no code takes a key entry's lock while holding a credit
 *	  lock or a credit lock while holding a user entry's.  So no cycle.
 *	- Nothing that can raise an ERROR is done while a partition lock is held,
 *	  except dshash_find_or_insert() running out of shared memory in a load
 *	  (no other lock held then, and the entry is not yet initialised:
 *	  loads insert and initialise under one lock hold).
 *	- The counters, the generation and open_since[] are atomics, except
 *	  the calls and credits spent, which the hot path counts in the entry
 *	  it holds locked (one atomic fewer per call); the sweep adds an
 *	  entry's counts to the atomics when it removes it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/namespace.h"
#include "lib/dshash.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/backendid.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/dsa.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "common/id_hash.h"
#include "events/event_queue.h"
#include "metering/credits.h"
#include "metering/credits_internal.h"
#include "validate/key_store.h"

#define CREDITS_TRANCHE		"hokusai_auth credits"
#define HK_LOAD_TRIES		3


HkCreditsShared *hk_credits_sh = NULL;
static dsa_area *credits_area = NULL;
dshash_table *hk_credits_tab = NULL;

/* This database's hokusai_auth schema, looked up once per backend. */
static Oid	my_nspid = InvalidOid;
static bool nsp_callback = false;

static const dshash_parameters credits_params = {
	.key_size = sizeof(HkCreditKey),
	.entry_size = sizeof(HkCreditEntry),
	.compare_function = hk_id_compare,
	.hash_function = hk_id_hash,
#if PG_VERSION_NUM >= 170000
	.copy_function = dshash_memcpy,
#endif
	.tranche_id = 0				/* set at attach */
};

static Size
credits_shmem_size(void)
{
	return add_size(offsetof(HkCreditsShared, open_since),
					mul_size(MaxBackends, sizeof(HkOpenSince)));
}

/* From shmem_request_hook: the fixed struct and its lock. */
void
hk_credits_shmem_request(void)
{
	RequestAddinShmemSpace(credits_shmem_size());
	RequestNamedLWLockTranche(CREDITS_TRANCHE, 1);
}

/* Create or attach to the fixed struct.  Called with AddinShmemInitLock held. */
void
hk_credits_shmem_startup(void)
{
	bool		found;
	int			i;

	hk_credits_sh = ShmemInitStruct("hokusai_auth credits", credits_shmem_size(), &found);
	if (found)
		return;
	memset(hk_credits_sh, 0, credits_shmem_size());
	hk_credits_sh->lock = &(GetNamedLWLockTranche(CREDITS_TRANCHE))->lock;
	hk_credits_sh->tranche_id = LWLockNewTrancheId();
	hk_credits_sh->area_handle = DSM_HANDLE_INVALID;
	pg_atomic_init_u64(&hk_credits_sh->generation, 0);
	for (i = 0; i < HK_CSTAT_COUNT; i++)
		pg_atomic_init_u64(&hk_credits_sh->stats[i], 0);
	hk_credits_sh->nslots = MaxBackends;
	for (i = 0; i < hk_credits_sh->nslots; i++)
		pg_atomic_init_u64(&hk_credits_sh->open_since[i].since, 0);
}

/* Attach this backend to the area and table, creating them on first use. */
void
hk_credits_attach(void)
{
	dshash_parameters params = credits_params;
	MemoryContext old;

	if (hk_credits_tab != NULL)
		return;
	hk_require_preload();
	if (hk_credits_sh == NULL)
		elog(ERROR, "hokusai_auth credits shared memory is missing");

	LWLockRegisterTranche(hk_credits_sh->tranche_id, CREDITS_TRANCHE);
	params.tranche_id = hk_credits_sh->tranche_id;
	old = MemoryContextSwitchTo(TopMemoryContext);
	LWLockAcquire(hk_credits_sh->lock, LW_EXCLUSIVE);
	if (hk_credits_sh->area_handle == DSM_HANDLE_INVALID)
	{
		credits_area = dsa_create(hk_credits_sh->tranche_id);
		dsa_pin(credits_area);
		dsa_pin_mapping(credits_area);
		hk_credits_tab = dshash_create(credits_area, &params, NULL);
		hk_credits_sh->table_handle = dshash_get_hash_table_handle(hk_credits_tab);
		hk_credits_sh->area_handle = dsa_get_handle(credits_area);
	}
	else
	{
		credits_area = dsa_attach(hk_credits_sh->area_handle);
		dsa_pin_mapping(credits_area);
		hk_credits_tab = dshash_attach(credits_area, &params,
									  hk_credits_sh->table_handle, NULL);
	}
	LWLockRelease(hk_credits_sh->lock);
	MemoryContextSwitchTo(old);
}

/*
 * Has any backend made the balances' area yet?  While no key has been
 * metered since the server started, the worker has nothing to do and
 * creates nothing.
 */
bool
hk_credits_exist(void)
{
	return hk_credits_sh != NULL && hk_credits_sh->area_handle != DSM_HANDLE_INVALID;
}

/* The schema may have been dropped and created again: look it up anew. */
static void
nsp_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	my_nspid = InvalidOid;
}

/* This database's hokusai_auth schema (an error when there is none). */
Oid
hk_credits_nspid(void)
{
	/* Known: its callback is registered. */
	if (OidIsValid(my_nspid))
		return my_nspid;
	if (!nsp_callback)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, nsp_inval_callback, (Datum) 0);
		nsp_callback = true;
	}
	my_nspid = get_namespace_oid(HK_SCHEMA, false);
	return my_nspid;
}

/* The table key of a balance. */
void
hk_credit_key(Oid dbid, Oid nspid, const pg_uuid_t *root, HkCreditKey *key)
{
	/* No padding to clear: the table hashes and compares the key's bytes. */
	StaticAssertStmt(sizeof(HkCreditKey) == 2 * sizeof(Oid) + sizeof(pg_uuid_t),
					 "HkCreditKey has no padding");
	key->dbid = dbid;
	key->nspid = nspid;
	key->key_id = *root;
}

/*
 * The table key of a balance of this backend's database (a catalog lookup
 * the first time: not at commit or abort).
 */
void
hk_credits_key_of(const pg_uuid_t *root, HkCreditKey *key)
{
	hk_credit_key(MyDatabaseId, hk_credits_nspid(), root, key);
}

/* Lock the entry of a balance by its key exclusively; NULL when absent. */
static HkCreditEntry *
lock_key(const HkCreditKey *key)
{
	hk_credits_attach();
	return dshash_find(hk_credits_tab, key, true);
}

void
hk_credits_stat_add(HkCreditStat s, uint64 n)
{
	if (n > 0)
		pg_atomic_fetch_add_u64(&hk_credits_sh->stats[s], n);
}

uint64
hk_credits_stat(HkCreditStat s)
{
	return pg_atomic_read_u64(&hk_credits_sh->stats[s]);
}

/* Record a change of an entry (its partition lock held exclusively). */
void
hk_credits_changed(HkCreditEntry *e, TimestampTz now)
{
	e->version++;
	e->changed_at = now;
}

/*
 * Make sure the balance owned by key root is in memory, reading its row if
 * it is not (see "Loading" in the banner).  Takes no lock when it returns;
 * may run SQL, so the caller must hold none.  False when the key has no
 * balance (no row, or credits_remaining NULL).
 */
bool
hk_credits_ensure(const pg_uuid_t *root)
{
	HkCreditKey key;
	int			attempt;

	hk_credits_attach();
	hk_credits_key_of(root, &key);
	for (attempt = 0; attempt < HK_LOAD_TRIES; attempt++)
	{
		uint64		generation = pg_atomic_read_u64(&hk_credits_sh->generation);
		HkCreditEntry *e = dshash_find(hk_credits_tab, &key, false);
		HkCreditRow row;
		bool		found;

		if (e != NULL)
		{
			dshash_release_lock(hk_credits_tab, e);
			return true;
		}
		pg_memory_barrier();
		if (!hk_key_store_credits(root, &row))
			return false;
		e = dshash_find_or_insert(hk_credits_tab, &key, &found);
		if (!found)
		{
			if (pg_atomic_read_u64(&hk_credits_sh->generation) != generation)
			{
				/* Removed meanwhile: the row may predate its last write. */
				dshash_delete_entry(hk_credits_tab, e);
				continue;
			}
			hk_balance_init(&e->b, row.balance, row.initial, row.refilled_at,
							(HkRefillInterval) row.refill_interval);
			e->version = e->flushed = 1;
			e->changed_at = GetCurrentTimestamp();
			e->pins = 0;
			e->charged = e->spent = 0;
			e->row_balance = row.balance;
			e->row_refilled_at = row.refilled_at;
			pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_LOADED], 1);
		}
		dshash_release_lock(hk_credits_tab, e);
		return true;
	}
	ereport(ERROR,
			(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
			 errmsg("could not load a credit balance: it was removed from memory %d times while loading",
					HK_LOAD_TRIES)));
	return false;				/* keep the compiler quiet */
}

/* Lock the entry of a balance exclusively; NULL when it is not in memory. */
HkCreditEntry *
hk_credits_lock(const pg_uuid_t *root)
{
	HkCreditKey key;

	hk_credits_key_of(root, &key);
	return lock_key(&key);
}

void
hk_credits_unlock(HkCreditEntry *e)
{
	dshash_release_lock(hk_credits_tab, e);
}

/*
 * Give back amount credits that an aborting transaction spent, unless the
 * balance was refilled since (refill_seq moved on: the refill replaced it).
 */
void
hk_credits_give_back(const HkCreditKey *key, int64 amount, uint32 seq)
{
	HkCreditEntry *e = lock_key(key);

	if (e == NULL)
		return;					/* cannot happen: the sweep waits for us */
	if (e->b.refill_seq == seq)
	{
		hk_balance_give_back(&e->b, amount);
		hk_credits_changed(e, GetCurrentTimestamp());
		pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_GIVEN_BACK], amount);
	}
	hk_credits_unlock(e);
}

/*
 * Of the crossings in crossed, those a balance (refilled by r) is still
 * past, with its balance in *balance; 0 when it is no longer in memory.
 */
uint8
hk_credits_crossings_held(const HkCreditKey *key, const HkRefill *r,
						  uint8 crossed, int64 *balance)
{
	HkCreditEntry *e = lock_key(key);
	uint8		held;

	if (e == NULL)
		return 0;
	held = hk_balance_crossings_held(&e->b, r, crossed);
	*balance = e->b.balance;
	hk_credits_unlock(e);
	return held;
}

/*
 * For add_credits(): load the balance, pin it in memory until
 * hk_credits_unpin(), apply a refill that is due, and copy it to *b.  False
 * when the key has no balance.
 */
bool
hk_credits_pin(const pg_uuid_t *root, const HkRefill *r, HkBalance *b)
{
	HkCreditEntry *e;
	TimestampTz now = GetCurrentTimestamp();

	if (!hk_credits_ensure(root))
		return false;
	e = hk_credits_lock(root);
	if (e == NULL)
		return false;			/* swept right after loading: improbable */
	e->pins++;
	if (hk_balance_refill(&e->b, r, now))
	{
		hk_credits_changed(e, now);
		pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_REFILLS], 1);
	}
	*b = e->b;
	hk_credits_unlock(e);
	return true;
}

/*
 * A decrease of a balance crossed 10% or zero (HK_CREDIT_EVENT_*): count
 * it and note credits.low or credits.exhausted for the events the worker
 * writes (events/event_queue.c), naming key_id (and user_id when known)
 * with the credits left.  No lock may be held: noting takes one.
 */
void
hk_credits_note_crossings(uint8 crossed, const pg_uuid_t *key_id,
						  const pg_uuid_t *user_id, int64 balance)
{
	if (crossed & HK_CREDIT_EVENT_LOW)
	{
		hk_credits_stat_add(HK_CSTAT_LOW, 1);
		hk_event_note(HK_EVENT_CREDITS_LOW, key_id, user_id, balance);
	}
	if (crossed & HK_CREDIT_EVENT_EXHAUSTED)
	{
		hk_credits_stat_add(HK_CSTAT_EXHAUSTED, 1);
		hk_event_note(HK_EVENT_CREDITS_EXHAUSTED, key_id, user_id, balance);
	}
}

/*
 * Add delta to a pinned balance (see hk_balance_add); the change made.  A
 * decrease that crosses 10% or zero is noted as an event of the balance's
 * key.
 */
int64
hk_credits_adjust(const HkCreditKey *key, int64 delta, const HkRefill *r)
{
	HkCreditEntry *e = lock_key(key);
	TimestampTz now = GetCurrentTimestamp();
	int64		done;
	int64		balance;
	uint8		crossed;

	if (e == NULL)
		return 0;
	done = hk_balance_add(&e->b, r, delta, &crossed);
	balance = e->b.balance;
	hk_credits_changed(e, now);
	hk_credits_unlock(e);
	if (crossed != 0)
		hk_credits_note_crossings(crossed, &key->key_id, NULL, balance);
	return done;
}

/*
 * On a hot standby, the primary changed the row of key root (the
 * invalidation log names it: replica/walinval.c; add_credits() registers
 * the balance's key).  A balance in memory here takes in what the
 * primary's row gained or lost since this server last read it, on top of
 * what was spent here: an add_credits() of 500 adds 500 here too.  When
 * the primary has written a refill since (credits_refilled_at moved), the
 * difference is not applied: this server refills on its own in the same
 * period.  A key whose credits were removed loses its balance here.  Runs
 * SQL (the row is read as the schema's owner) with no lock held.
 */
void
hk_credits_replica_sync(const pg_uuid_t *root)
{
	HkCreditKey key;
	HkCreditEntry *e;
	HkCreditRow row;
	bool		metered;

	if (!hk_credits_exist())
		return;
	hk_credits_attach();
	hk_credits_key_of(root, &key);
	e = dshash_find(hk_credits_tab, &key, false);
	if (e == NULL)
		return;					/* read from the row when next used */
	dshash_release_lock(hk_credits_tab, e);

	metered = hk_key_store_credits(root, &row);
	e = dshash_find(hk_credits_tab, &key, true);
	if (e == NULL)
		return;
	if (!metered)
	{
		dshash_delete_entry(hk_credits_tab, e);
		/* Under the partition lock: see "Loading" in the banner. */
		pg_atomic_fetch_add_u64(&hk_credits_sh->generation, 1);
		return;
	}
	if (row.refilled_at == e->row_refilled_at && row.balance != e->row_balance)
	{
		HkRefill	none = {0, HK_REFILL_NONE};
		uint8		crossed;

		(void) hk_balance_add(&e->b, &none, row.balance - e->row_balance, &crossed);
		hk_credits_changed(e, GetCurrentTimestamp());
	}
	e->row_balance = row.balance;
	e->row_refilled_at = row.refilled_at;
	dshash_release_lock(hk_credits_tab, e);
}

/*
 * update_key(credits => N), at commit (credits_xact.c): the balance of key
 * becomes balance, its first balance (for credits.low) too, after a refill
 * that is due is applied (a set replaces what that refill gave, not the
 * reverse).  A balance not in memory is made from the row's refill anchor
 * (refilled_at, interval), as a load would.  refill_seq moves on: credits
 * spent before the set are not given back to the new balance if their
 * transaction aborts later.  *prev gets the balance as it was and *existed
 * whether there was one, for hk_credits_restore().  May raise an ERROR
 * (out of shared memory) only while inserting, before the entry exists.
 */
void
hk_credits_set(const HkCreditKey *key, int64 balance, const HkRefill *r,
			   TimestampTz refilled_at, HkBalance *prev, bool *existed)
{
	HkCreditEntry *e;
	TimestampTz now = GetCurrentTimestamp();
	bool		found;
	uint32		seq = 0;

	hk_credits_attach();
	e = dshash_find_or_insert(hk_credits_tab, key, &found);
	*existed = found;
	if (found)
	{
		*prev = e->b;
		seq = e->b.refill_seq + 1;
	}
	else
	{
		memset(prev, 0, sizeof(*prev));
		hk_balance_init(&e->b, balance, balance, refilled_at, r->interval);
		e->version = e->flushed = 1;
		e->pins = 0;
		e->charged = e->spent = 0;
		e->row_balance = balance;
		e->row_refilled_at = refilled_at;
		pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_LOADED], 1);
	}
	if (hk_balance_refill(&e->b, r, now))
		pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_REFILLS], 1);
	e->b.balance = Max(balance, 0);
	e->b.initial = Max(balance, 0);
	e->b.refill_seq = seq;
	hk_credits_changed(e, now);
	hk_credits_unlock(e);
}

/* A set whose transaction failed after all: put back what was there. */
void
hk_credits_restore(const HkCreditKey *key, const HkBalance *prev, bool existed)
{
	HkCreditEntry *e;

	if (!existed)
	{
		hk_credits_remove(key);
		return;
	}
	e = lock_key(key);
	if (e == NULL)
		return;
	e->b = *prev;
	hk_credits_changed(e, GetCurrentTimestamp());
	hk_credits_unlock(e);
}

/*
 * update_key(clear_credits => true), once committed: the balance leaves
 * memory.  A load that read the row before the commit cannot put it back
 * (the generation moves on; see "Loading" in the banner).
 */
void
hk_credits_remove(const HkCreditKey *key)
{
	HkCreditEntry *e = lock_key(key);

	if (e == NULL)
		return;
	pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_CHARGED], e->charged);
	pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_SPENT], e->spent);
	dshash_delete_entry(hk_credits_tab, e);
	/* Under the partition lock: see "Loading" in the banner. */
	pg_atomic_fetch_add_u64(&hk_credits_sh->generation, 1);
}

/* Release a pin of hk_credits_pin(). */
void
hk_credits_unpin(const HkCreditKey *key)
{
	HkCreditEntry *e = lock_key(key);

	if (e == NULL)
		return;
	if (e->pins > 0)
		e->pins--;
	hk_credits_unlock(e);
}

/* This backend's transaction has spent credits since "since". */
void
hk_credits_open_spend(TimestampTz since)
{
	if (MyBackendId >= 1 && MyBackendId <= hk_credits_sh->nslots)
		pg_atomic_write_u64(&hk_credits_sh->open_since[MyBackendId - 1].since, (uint64) since);
}

/* This backend's transaction has ended. */
void
hk_credits_close_spend(void)
{
	if (MyBackendId >= 1 && MyBackendId <= hk_credits_sh->nslots)
		pg_atomic_write_u64(&hk_credits_sh->open_since[MyBackendId - 1].since, 0);
}

/*
 * The live balance of key root now, a refill that is due applied, into *b;
 * false when the key has no balance.  May read the row (no lock held).
 */
bool
hk_credits_status(const pg_uuid_t *root, const HkRefill *r, HkBalance *b)
{
	HkCreditEntry *e;
	TimestampTz now = GetCurrentTimestamp();

	if (!hk_credits_ensure(root))
		return false;
	e = hk_credits_lock(root);
	if (e == NULL)
		return false;
	if (hk_balance_refill(&e->b, r, now))
	{
		hk_credits_changed(e, now);
		pg_atomic_fetch_add_u64(&hk_credits_sh->stats[HK_CSTAT_REFILLS], 1);
	}
	*b = e->b;
	hk_credits_unlock(e);
	return true;
}

