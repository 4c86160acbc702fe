/*-------------------------------------------------------------------------
 *
 * limiter.c
 *	  Where the rate limits' counting state lives: one slot per key, and
 *	  one per user with limits shared by the user's keys, in a DSA area,
 *	  found through two dshash tables and decided by ratelimit/window.c and
 *	  ratelimit/admit.c.
 *
 * Storage.  A key's (or user's) state lives in a slot of a pool kept in a
 * DSA area: chunks of HK_SLOTS_PER_CHUNK slots, allocated as the keys and
 * users in use need them and never given back to the area (a freed slot
 * goes on a free list and is used again: the pool's size is the largest
 * number of keys and users tracked at once since the server started).  Two
 * dshash tables (keys, users) map an id to its slot.  The area, the tables
 * and the pool are created by the first backend that needs them; their
 * handles sit in a small fixed struct in the main shared memory.  A slot
 * is taken on first use and freed by a periodic sweep once all its counts
 * have left both windows.  State starts empty at every server start.
 *
 * Hints.  A slot never moves and is never unmapped, so whoever knows a
 * key's slot number can go straight to it: the key cache remembers it in
 * the key's entry (validate/cache.c), and a key's slot remembers its
 * owner's.  Going straight there skips the table's hash, its partition
 * lock, its bucket and its chain, and lets validation prefetch the slot's
 * lines as soon as the cache entry is read (hk_limiter_prefetch()): with
 * many keys those lines are cache misses, and they then overlap with each
 * other and with the rest of the call.  A hint is only a hint: the slot
 * is locked and its owner compared; a slot freed, or freed and taken by
 * another key, no longer names the key, and the table is asked instead.
 * A slot's first cache line holds its lock, its owner (in the state's tag)
 * and the windows' totals, all a call reads before the ring slots it counts
 * in.  A key has at most one slot at a time: a slot is given its owner, and an
 * owner its slot, under the table's partition lock of that owner, and the
 * sweep clears a slot's owner under the same lock before freeing it.  So a
 * slot whose owner is the key is the key's state.
 *
 * Locking rules:
 *
 *	- HkLimiterShared.lock (its own named tranche) is taken exclusively
 *	  only to create the area, tables and pool, or to read their handles;
 *	  never together with another lock.
 *	- A slot's state is read and changed only under the slot's own LWLock
 *	  (in the slot): exclusively for admission, reset and the sweep, shared
 *	  for inspection.  Concurrent requests on one key (or user) are
 *	  therefore serialised and cannot over-admit.  A slot's owner is set
 *	  and cleared only under both its lock and the table's partition lock
 *	  of that owner; it may be read under either.
 *	- The tables' partition locks are held only briefly, to find, insert
 *	  or delete a mapping; the slot's lock may be taken while one is held
 *	  (the sweep, reset), never the reverse except as the next rule says.
 *	- An admission holds at most one slot lock of each kind, taken in this
 *	  order: the key's slot, a credit balance (metering/credits.c), then
 *	  the user's slot (ratelimit/admit.c); on its way to the user's slot it
 *	  may take the user table's partition lock, which nobody holding a user
 *	  slot waits for.  Two partition locks of one table are never held at
 *	  once (dshash forbids it: a resize takes them all).
 *	- HkLimiterShared.pool_lock guards the free list and the pool's growth;
 *	  it is taken last, with at most a partition lock held, and nothing is
 *	  taken under it.
 *	- Nothing that can raise an ERROR is done while a lock is held, except
 *	  running out of shared memory: a slot (and a new chunk) is taken before
 *	  the table's entry is inserted, with no partition lock held, and
 *	  dshash_find_or_insert() may still fail; then the abort releases the
 *	  locks, nothing has been counted yet, and at worst a slot is lost to
 *	  the pool.
 *	- The sweep time and the pool's size are atomics.  The statistics are
 *	  per-backend counters summed on read (validate/stats.c), so that no
 *	  call writes a shared line of its own besides the slots it locks.
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
#define HK_SLOTS_PER_CHUNK	1024
#define HK_MAX_CHUNKS		8192	/* 8,388,608 keys and users at once */
#define HK_SLOT_LINE		64

typedef struct HkLimiterKey
{
	Oid			dbid;
	pg_uuid_t	id;				/* key id, or user id */
} HkLimiterKey;

/* A table entry: which slot holds an id's state. */
typedef struct HkLimiterEntry
{
	HkLimiterKey key;
	uint32		slot;
} HkLimiterEntry;

/*
 * Who owns a slot, as kept in its state's tag (HkLimiterState.tag): the
 * kind, the database and the id, packed, in the state's first line with
 * the lock.  All zero: free.
 */
typedef struct HkSlotOwner
{
	uint8		bytes[1 + sizeof(Oid) + sizeof(pg_uuid_t)];
} HkSlotOwner;

StaticAssertDecl(sizeof(HkSlotOwner) <= HK_RL_TAG_BYTES,
				 "a slot's owner must fit in its state's tag");

/* The state of one key (or user) and what guards it. */
typedef struct HkLimiterSlot
{
	LWLock		lock;
	HkLimiterState state;		/* its tag names the owner */
	uint32		next_free;		/* free list link (slot number + 1) */
	uint32		user_hint;		/* a key's: its owner's slot, + 1; 0: none */
} HkLimiterSlot;

StaticAssertDecl(offsetof(HkLimiterSlot, state) +
				 offsetof(HkLimiterState, tag) + sizeof(HkSlotOwner) <= 64,
				 "a slot's lock, owner and window totals must share one line");

/* Slots are a whole number of cache lines, and chunks start on one. */
#define HK_SLOT_SIZE	TYPEALIGN(HK_SLOT_LINE, sizeof(HkLimiterSlot))
#define HK_CHUNK_BYTES	(HK_SLOT_SIZE * HK_SLOTS_PER_CHUNK + HK_SLOT_LINE)

typedef struct HkLimiterShared
{
	LWLock	   *lock;
	LWLock	   *pool_lock;
	int			tranche_id;
	dsa_handle	area_handle;
	dshash_table_handle table_handles[HK_LIMITER_KINDS];
	pg_atomic_uint64 last_sweep;
	pg_atomic_uint32 nslots;	/* slots in the pool, all chunks */
	uint32		free_head;		/* first free slot + 1; 0: none */
	dsa_pointer chunks[HK_MAX_CHUNKS];
} HkLimiterShared;

static HkLimiterShared *limiter = NULL;
static dsa_area *limiter_area = NULL;
static dshash_table *limiter_tables[HK_LIMITER_KINDS];
/* This backend's addresses of the chunks it has used. */
static char *chunk_base[HK_MAX_CHUNKS];

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

/* From shmem_request_hook: the handles and their locks. */
void
hk_limiter_shmem_request(void)
{
	RequestAddinShmemSpace(sizeof(HkLimiterShared));
	RequestNamedLWLockTranche(LIMITER_TRANCHE, 2);
}

/* Create or attach to the handles.  Called with AddinShmemInitLock held. */
void
hk_limiter_shmem_startup(void)
{
	bool		found;
	LWLockPadded *locks;

	limiter = ShmemInitStruct("hokusai_auth rate limiter", sizeof(HkLimiterShared), &found);
	if (found)
		return;
	memset(limiter, 0, sizeof(*limiter));
	locks = GetNamedLWLockTranche(LIMITER_TRANCHE);
	limiter->lock = &locks[0].lock;
	limiter->pool_lock = &locks[1].lock;
	limiter->tranche_id = LWLockNewTrancheId();
	limiter->area_handle = DSM_HANDLE_INVALID;
	pg_atomic_init_u64(&limiter->last_sweep, 0);
	pg_atomic_init_u32(&limiter->nslots, 0);
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

/*
 * The slot numbered n, which must exist (n < nslots: a chunk's pointer is
 * written before nslots grows past its slots, and never changes).
 */
static inline HkLimiterSlot *
slot_at(uint32 n)
{
	uint32		c = n / HK_SLOTS_PER_CHUNK;

	if (unlikely(chunk_base[c] == NULL))
	{
		char	   *p;

		/* Pairs with slot_take()'s barrier: nslots was read first. */
		pg_read_barrier();
		p = dsa_get_address(limiter_area, limiter->chunks[c]);

		chunk_base[c] = (char *) TYPEALIGN(HK_SLOT_LINE, p);
	}
	return (HkLimiterSlot *) (chunk_base[c] + (Size) (n % HK_SLOTS_PER_CHUNK) * HK_SLOT_SIZE);
}

/* The slot a hint names, or NULL when it names none. */
static inline HkLimiterSlot *
slot_of_hint(uint32 hint)
{
	if (hint == 0 || limiter_tables[HK_LIMITER_KEY] == NULL ||
		hint > pg_atomic_read_u32(&limiter->nslots))
		return NULL;
	return slot_at(hint - 1);
}

/*
 * Take a free slot, growing the pool by a chunk when none is free.  No
 * lock may be held but a partition lock (see the banner); may raise an
 * ERROR when shared memory runs out.
 */
static uint32
slot_take(void)
{
	uint32		n;

	LWLockAcquire(limiter->pool_lock, LW_EXCLUSIVE);
	if (limiter->free_head != 0)
	{
		n = limiter->free_head - 1;
		limiter->free_head = slot_at(n)->next_free;
	}
	else
	{
		uint32		total = pg_atomic_read_u32(&limiter->nslots);
		uint32		c = total / HK_SLOTS_PER_CHUNK;
		uint32		i;

		if (c >= HK_MAX_CHUNKS)
		{
			LWLockRelease(limiter->pool_lock);
			ereport(ERROR,
					(errcode(ERRCODE_PROGRAM_LIMIT_EXCEEDED),
					 errmsg("hokusai_auth rate limiter tracks too many keys and users at once"),
					 errdetail("At most %d keys and users can be tracked at once.",
							   HK_MAX_CHUNKS * HK_SLOTS_PER_CHUNK)));
		}
		/* An ERROR here releases the lock; nothing has changed yet. */
		limiter->chunks[c] = dsa_allocate_extended(limiter_area, HK_CHUNK_BYTES,
												   DSA_ALLOC_HUGE | DSA_ALLOC_ZERO);
		for (i = 0; i < HK_SLOTS_PER_CHUNK; i++)
		{
			HkLimiterSlot *s = slot_at(total + i);

			LWLockInitialize(&s->lock, limiter->tranche_id);
			s->next_free = i + 1 < HK_SLOTS_PER_CHUNK ? total + i + 2 : 0;
		}
		/* The first of the chunk is ours, the rest free. */
		n = total;
		limiter->free_head = total + 2;
		pg_write_barrier();
		pg_atomic_write_u32(&limiter->nslots, total + HK_SLOTS_PER_CHUNK);
	}
	LWLockRelease(limiter->pool_lock);
	return n;
}

/* Put slot n (its owner cleared) back on the free list. */
static void
slot_free(uint32 n)
{
	LWLockAcquire(limiter->pool_lock, LW_EXCLUSIVE);
	slot_at(n)->next_free = limiter->free_head;
	limiter->free_head = n + 1;
	LWLockRelease(limiter->pool_lock);
}

/* The table key of a key id (or user id) in this database. */
static void
limiter_key(const pg_uuid_t *id, HkLimiterKey *key)
{
	memset(key, 0, sizeof(*key));
	key->dbid = MyDatabaseId;
	key->id = *id;
}

/* The owner tag of key, of kind. */
static inline void
slot_owner(HkLimiterKind kind, const HkLimiterKey *key, HkSlotOwner *o)
{
	o->bytes[0] = (uint8) kind + 1;
	memcpy(&o->bytes[1], &key->dbid, sizeof(Oid));
	memcpy(&o->bytes[1 + sizeof(Oid)], &key->id, sizeof(pg_uuid_t));
}

/* Does slot s hold the state of owner o?  Its lock or the partition's held. */
static inline bool
slot_owned_by(const HkLimiterSlot *s, const HkSlotOwner *o)
{
	return memcmp(s->state.tag, o->bytes, sizeof(HkSlotOwner)) == 0;
}

/*
 * Free the slot of table entry e, whose partition lock is held
 * exclusively, when all its counts have left both windows (or always when
 * force); true when it did, and the caller then deletes e.
 */
static bool
slot_release_if_idle(HkLimiterEntry *e, TimestampTz now, bool force)
{
	HkLimiterSlot *s = slot_at(e->slot);
	bool		freed = false;

	LWLockAcquire(&s->lock, LW_EXCLUSIVE);
	if (force || hk_limiter_state_idle(&s->state, now))
	{
		memset(s->state.tag, 0, sizeof(HkSlotOwner));
		s->user_hint = 0;
		freed = true;
	}
	LWLockRelease(&s->lock);
	if (freed)
		slot_free(e->slot);
	return freed;
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
		if (slot_release_if_idle(e, now, false))
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
 * The slot number of an id, giving it a slot on first use; no lock held
 * on return.  The slot may have been freed again by the time the caller
 * locks it (the caller then asks again).
 */
static uint32
slot_find_or_take(HkLimiterKind kind, const HkLimiterKey *key,
				  const HkSlotOwner *owner)
{
	dshash_table *table = limiter_tables[kind];
	HkLimiterEntry *e;
	uint32		taken;
	uint32		n;
	bool		found;

	e = dshash_find(table, key, false);
	if (e != NULL)
	{
		n = e->slot;
		dshash_release_lock(table, e);
		return n;
	}
	/* First use: a slot first, with no partition lock held. */
	taken = slot_take();
	e = dshash_find_or_insert(table, key, &found);
	if (!found)
	{
		HkLimiterSlot *s = slot_at(taken);

		LWLockAcquire(&s->lock, LW_EXCLUSIVE);
		hk_limiter_state_init(&s->state);
		memcpy(s->state.tag, owner->bytes, sizeof(HkSlotOwner));
		s->user_hint = 0;
		LWLockRelease(&s->lock);
		e->slot = taken;
		hk_stat_add(HK_STAT_RL_CREATED);
	}
	n = e->slot;
	dshash_release_lock(table, e);
	if (found)
		slot_free(taken);		/* another backend was first */
	return n;
}

/*
 * Lock the state of a key (or user) exclusively, creating it empty on
 * first use, and return it; hk_limiter_unlock() releases it.  *hint is
 * the slot the caller believes holds it (+ 1; 0: no idea), and on return
 * the one that does.  See the banner for the order of locks.
 */
HkLimiterState *
hk_limiter_lock(HkLimiterKind kind, const pg_uuid_t *id, uint32 *hint)
{
	HkLimiterKey key;
	HkSlotOwner owner;
	HkLimiterSlot *s;

	limiter_key(id, &key);
	slot_owner(kind, &key, &owner);
	s = slot_of_hint(*hint);
	if (s != NULL)
	{
		LWLockAcquire(&s->lock, LW_EXCLUSIVE);
		if (likely(slot_owned_by(s, &owner)))
			return &s->state;
		LWLockRelease(&s->lock);
	}
	for (;;)
	{
		uint32		n = slot_find_or_take(kind, &key, &owner);

		s = slot_at(n);
		LWLockAcquire(&s->lock, LW_EXCLUSIVE);
		if (slot_owned_by(s, &owner))
		{
			*hint = n + 1;
			return &s->state;
		}
		/* Swept between the two: ask again. */
		LWLockRelease(&s->lock);
	}
}

/* The slot of a state hk_limiter_lock() returned. */
static inline HkLimiterSlot *
slot_of_state(HkLimiterState *st)
{
	return (HkLimiterSlot *) ((char *) st - offsetof(HkLimiterSlot, state));
}

/* Release the lock of hk_limiter_lock(). */
void
hk_limiter_unlock(HkLimiterState *st)
{
	LWLockRelease(&slot_of_state(st)->lock);
}

/*
 * Where a key's slot, locked by hk_limiter_lock(), remembers its owner's
 * slot: the hint for the owner's hk_limiter_lock(), read and written under
 * the key's lock.
 */
uint32 *
hk_limiter_user_hint(HkLimiterState *key_state)
{
	return &slot_of_state(key_state)->user_hint;
}

/*
 * Ask the CPU to start loading the lines an admission at time now will
 * touch of the slot a hint names, so that with many keys their cache
 * misses overlap with each other and with the work before the admission.
 * Reads nothing: a stale hint costs a wasted load.
 */
void
hk_limiter_prefetch(uint32 hint, TimestampTz now)
{
	HkLimiterSlot *s = slot_of_hint(hint);

	if (s == NULL)
		return;
	hk_prefetch(s);				/* the lock, the owner, the totals */
	hk_limiter_state_prefetch(&s->state, now);
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
	HkSlotOwner owner;
	HkLimiterEntry *e;
	HkLimiterSlot *s;
	bool		tracked;

	limiter_attach();
	limiter_key(id, &key);
	slot_owner(kind, &key, &owner);
	hk_limiter_state_init(st);
	e = dshash_find(limiter_tables[kind], &key, false);
	if (e == NULL)
		return false;
	/* The partition lock keeps the slot ours; the slot's guards its state. */
	s = slot_at(e->slot);
	LWLockAcquire(&s->lock, LW_SHARED);
	tracked = slot_owned_by(s, &owner);
	if (tracked)
		*st = s->state;
	LWLockRelease(&s->lock);
	dshash_release_lock(limiter_tables[kind], e);
	return tracked;
}

/* Forget a key's (or user's) state; false when it was not tracked. */
bool
hk_limiter_forget(HkLimiterKind kind, const pg_uuid_t *id)
{
	HkLimiterKey key;
	HkLimiterEntry *e;

	limiter_attach();
	limiter_key(id, &key);
	e = dshash_find(limiter_tables[kind], &key, true);
	if (e == NULL)
		return false;
	slot_release_if_idle(e, 0, true);
	dshash_delete_entry(limiter_tables[kind], e);
	return true;
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
	stats->entry_bytes = (int32) (HK_SLOT_SIZE + sizeof(HkLimiterEntry));
}
