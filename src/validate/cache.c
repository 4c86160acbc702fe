/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  A fixed-size shared-memory cache of validated keys.
 *
 * Layout.  One HkCacheShared struct followed by nsets * HK_CACHE_WAYS
 * entries.  An entry is found by a keyed BLAKE2b-256 digest of the whole key
 * (hk_key_digest; the 32-byte digest key is drawn at server start and lives
 * only in shared memory, so digests mean nothing outside this server run).  The digest picks
 * a set of HK_CACHE_WAYS entries; a set belongs to one of HK_CACHE_PARTITIONS
 * partitions.  A full set evicts its least recently used entry.  Entries
 * are tagged with the database and the hokusai_auth schema they came from:
 * the cache is shared by every database on the server.  An entry lives for
 * hokusai_auth.cache_ttl; expiry and the active flag are checked on every
 * hit by the caller (validate/pipeline.c), not here.
 *
 * Negative entries remember a digest whose secret failed bcrypt, so a
 * repeated wrong key costs no bcrypt until the entry ages out.
 *
 * Entries also pace last_used_at: a hit asks the usage queue to note the
 * key as used at most once per HK_TOUCH_INTERVAL seconds (the first backend
 * to swap last_touch wins), so the worker writes last_used_at about once a
 * minute per busy key however many requests it serves.
 *
 * Generation.  A counter that invalidation advances at commit before it
 * clears entries (validate/invalidate.c explains the race it closes).  A
 * fill reads it before the key's row is read and inserts only if it is
 * unchanged once the partition lock is held.
 *
 * Reading without writing.  A lookup writes nothing shared on a hit: no
 * lock word, no counter (validate/stats.c counts per backend), and
 * last_used only when its one-second tick has moved.  It reads a set
 * optimistically, as a seqlock reader: each entry has a change count,
 * odd while a writer is changing the entry; a reader notes it, reads what
 * it needs, and checks that the count has not moved.  A torn read falls
 * back to the locked lookup, and so does a hit whose last_used_at touch
 * is due (once per HK_TOUCH_INTERVAL per key), so that the touch is
 * swapped on the entry it was decided on.
 *
 * The layout is in cache_entry.h, the read path in cache_lookup.c.
 *
 * Locking rules:
 *
 *	- An entry is written only while holding its partition's LWLock
 *	  exclusively (insert, evict, clear), between entry_begin_write() and
 *	  entry_end_write(), which make its change count odd, then even again.
 *	- An entry is read either under its partition's LWLock (shared or
 *	  exclusive), or without it as above: change count read, read barrier,
 *	  the fields, read barrier, change count read again and compared.
 *	  Fields read that way are used only once the count has been found
 *	  unchanged (a count still odd, or moved, means: take the lock).
 *	- last_used is an atomic that readers set with or without the lock; it
 *	  only steers eviction, so a lost update is harmless.  last_touch is an
 *	  atomic swapped under the shared lock by the one backend that wins it.
 *	- limiter_hint is an atomic that an admission writes without the lock
 *	  (ratelimit/admit.c) and a fill resets; it is read alone, not as part
 *	  of the entry, and only as a hint that the rate limiter checks against
 *	  its slot's owner, so a write that lands on an entry filled again
 *	  meanwhile is harmless.
 *	- No code holds more than one partition lock at a time, and no partition
 *	  lock is held while doing anything but copying or clearing entries (no
 *	  catalog or table access, no bcrypt, no elog above DEBUG), so there is
 *	  no deadlock and no lock is held across an ERROR.
 *	- No other hokusai_auth lock (the throttle's, the limiter's, the usage
 *	  queue's) is ever taken while a partition lock is held.
 *	- generation is an atomic and needs no lock; the digest key and nsets
 *	  are written once at start-up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "catalog/namespace.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/inval.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "validate/cache.h"
#include "validate/cache_entry.h"
#include "validate/stats.h"

HkCacheShared *hk_cache_shm = NULL;
LWLockPadded *hk_cache_locks = NULL;

/* This database's hokusai_auth schema, looked up once per backend. */
static Oid	my_nspid = InvalidOid;

/* Sets for hokusai_auth.cache_size entries: a whole number per partition. */
static uint32
cache_nsets(void)
{
	uint32		sets = (hk_cache_size + HK_CACHE_WAYS - 1) / HK_CACHE_WAYS;

	return ((sets + HK_CACHE_PARTITIONS - 1) / HK_CACHE_PARTITIONS) * HK_CACHE_PARTITIONS;
}

/* Bytes of main shared memory the cache takes. */
Size
hk_cache_shmem_size(void)
{
	return add_size(offsetof(HkCacheShared, entries),
					mul_size(mul_size(cache_nsets(), HK_CACHE_WAYS),
							 sizeof(HkCacheEntry)));
}

/* From shmem_request_hook: the cache and its partition locks. */
void
hk_cache_shmem_request(void)
{
	RequestAddinShmemSpace(hk_cache_shmem_size());
	RequestNamedLWLockTranche(HK_LOCK_TRANCHE, HK_CACHE_PARTITIONS);
}

/* Create or attach to the cache.  Called with AddinShmemInitLock held. */
void
hk_cache_shmem_startup(void)
{
	bool		found;
	int			i;

	hk_cache_shm = ShmemInitStruct("hokusai_auth key cache", hk_cache_shmem_size(), &found);
	hk_cache_locks = GetNamedLWLockTranche(HK_LOCK_TRANCHE);
	if (found)
		return;

	memset(hk_cache_shm, 0, hk_cache_shmem_size());
	crypto_generichash_keygen(hk_cache_shm->digest_key);
	hk_cache_shm->started_at = GetCurrentTimestamp();
	hk_cache_shm->nsets = cache_nsets();
	pg_atomic_init_u64(&hk_cache_shm->generation, 1);
	for (i = 0; i < (int) (hk_cache_shm->nsets * HK_CACHE_WAYS); i++)
	{
		pg_atomic_init_u32(&hk_cache_shm->entries[i].changes, 0);
		pg_atomic_init_u32(&hk_cache_shm->entries[i].last_used, 0);
		pg_atomic_init_u32(&hk_cache_shm->entries[i].last_touch, 0);
		pg_atomic_init_u32(&hk_cache_shm->entries[i].limiter_hint, 0);
	}
}

/* The schema may have been dropped and created again: look it up anew. */
static void
schema_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	my_nspid = InvalidOid;
}

/* Per-backend set-up, from _PG_init. */
void
hk_cache_init(void)
{
	static bool registered = false;

	if (!registered)
	{
		CacheRegisterSyscacheCallback(NAMESPACEOID, schema_inval_callback, (Datum) 0);
		registered = true;
	}
}

/* This database's hokusai_auth schema, which tags entries. */
Oid
hk_cache_nspid(void)
{
	if (!OidIsValid(my_nspid))
		my_nspid = get_namespace_oid(HK_SCHEMA, false);
	return my_nspid;
}

/*
 * The cache's lookup key for a key: its BLAKE2b-256 digest keyed by the
 * server's secret, as a prefix: BLAKE2b-256(digest_key || key).  BLAKE2b
 * has no length extension, so a secret prefix makes it a keyed function
 * as its keyed mode does; but the keyed mode compresses the key as a block
 * of its own, while the 32-byte secret and a 54-byte key fit in one
 * 128-byte block: one compression per call instead of two (this was more
 * than half of what a cache hit cost in the backend).
 */
void
hk_key_digest(const char *key, size_t len, uint8 *digest)
{
	unsigned char buf[128];
	const size_t klen = sizeof(hk_cache_shm->digest_key);

	if (len <= sizeof(buf) - klen)
	{
		memcpy(buf, hk_cache_shm->digest_key, klen);
		memcpy(buf + klen, key, len);
		crypto_generichash(digest, HK_DIGEST_LEN, buf, klen + len, NULL, 0);
		sodium_memzero(buf, klen + len);
	}
	else
	{
		crypto_generichash_state state;

		crypto_generichash_init(&state, NULL, 0, HK_DIGEST_LEN);
		crypto_generichash_update(&state, hk_cache_shm->digest_key, klen);
		crypto_generichash_update(&state, (const unsigned char *) key, len);
		crypto_generichash_final(&state, digest, HK_DIGEST_LEN);
		sodium_memzero(&state, sizeof(state));
	}
}

/* The generation a fill must still see when it inserts. */
uint64
hk_cache_generation(void)
{
	return pg_atomic_read_u64(&hk_cache_shm->generation);
}

/* Invalidation at commit: refuse every fill that began before now. */
void
hk_cache_advance_generation(void)
{
	pg_atomic_fetch_add_u64(&hk_cache_shm->generation, 1);
}

/*
 * Pick the slot for digest in its set: the entry with the same digest, an
 * empty or stale one, or else the least recently used.  Caller holds the
 * set's partition lock exclusively.
 */
static HkCacheEntry *
choose_slot(uint32 set, const uint8 *digest, TimestampTz now)
{
	HkCacheEntry *base = &hk_cache_shm->entries[set * HK_CACHE_WAYS];
	HkCacheEntry *victim = NULL;
	uint32		oldest = PG_UINT32_MAX;
	int			i;

	for (i = 0; i < HK_CACHE_WAYS; i++)
	{
		HkCacheEntry *e = &base[i];
		uint32		used;

		if (!(e->flags & HKE_USED) ||
			(memcmp(e->digest, digest, HK_DIGEST_LEN) == 0 &&
			 e->dbid == MyDatabaseId) ||
			!entry_fresh(e, now))
			return e;
		used = pg_atomic_read_u32(&e->last_used);
		if (used < oldest)
		{
			oldest = used;
			victim = e;
		}
	}
	hk_stat_add(HK_STAT_EVICTIONS);
	return victim;
}

/*
 * Insert a key's state (st), or a negative entry (st NULL), unless the
 * generation has moved since the fill read it.
 */
static void
insert_entry(const uint8 *digest, const HkKeyState *st, uint64 generation)
{
	uint32		set = digest_set(digest);
	Oid			nspid = hk_cache_nspid();
	TimestampTz now = GetCurrentTimestamp();
	HkCacheEntry *e;

	LWLockAcquire(set_lock(set), LW_EXCLUSIVE);
	/* A key or user changed since this fill began: its data may be stale. */
	if (pg_atomic_read_u64(&hk_cache_shm->generation) != generation)
	{
		LWLockRelease(set_lock(set));
		return;
	}
	e = choose_slot(set, digest, now);
	entry_begin_write(e);
	memcpy(e->digest, digest, HK_DIGEST_LEN);
	e->dbid = MyDatabaseId;
	e->nspid = nspid;
	e->filled_at = now;
	pg_atomic_write_u32(&e->last_used, now_tick(now));
	/* The fill itself is noted as a use by the caller. */
	pg_atomic_write_u32(&e->last_touch, now_tick(now));
	pg_atomic_write_u32(&e->limiter_hint, 0);
	if (st == NULL)
	{
		e->flags = HKE_USED | HKE_NEGATIVE;
		memset(&e->key_id, 0, sizeof(e->key_id));
		memset(&e->user_id, 0, sizeof(e->user_id));
		e->n_allowed = 0;
		e->n_scopes = 0;
		e->scopes_len = 0;
	}
	else
	{
		e->flags = HKE_USED;
		if (st->active)
			e->flags |= HKE_ACTIVE;
		if (st->revoked)
			e->flags |= HKE_REVOKED;
		if (st->has_expiry)
			e->flags |= HKE_HAS_EXPIRY;
		if (st->has_allowed_ips)
			e->flags |= HKE_HAS_IPS;
		e->key_id = st->key_id;
		e->user_id = st->user_id;
		e->expires_at = st->expires_at;
		e->rate_limit_per_hour = st->rate_limit_per_hour;
		e->burst_limit = st->burst_limit;
		if (st->n_allowed > HK_CACHE_MAX_CIDRS)
		{
			e->flags |= HKE_IPS_OVERFLOW;
			e->n_allowed = 0;
		}
		else
		{
			e->n_allowed = st->n_allowed;
			if (st->n_allowed > 0)
				memcpy(e->allowed, st->allowed, sizeof(HkCidr) * st->n_allowed);
		}
		if (st->disabled)
			e->flags |= HKE_DISABLED;
		e->n_scopes = (uint8) Min(st->n_scopes, PG_UINT8_MAX);
		e->scopes_len = st->scopes_len <= HK_CACHE_SCOPE_BYTES ? st->scopes_len : 0;
		if (e->scopes_len > 0)
			memcpy(e->scopes, st->scopes, e->scopes_len);
		/* metering */
		e->has_credits = st->has_credits;
		e->credits_key = st->credits_key;
		e->refill_amount = st->refill_amount;
		e->refill_interval = st->refill_interval;
		e->user_rate_limit_per_hour = st->user_rate_limit_per_hour;
		e->user_burst_limit = st->user_burst_limit;
	}
	entry_end_write(e);
	LWLockRelease(set_lock(set));
}

/* Remember a verified key, read at generation. */
void
hk_cache_insert(const uint8 *digest, const HkKeyState *st, uint64 generation)
{
	insert_entry(digest, st, generation);
}

/* Remember a digest whose secret failed bcrypt, read at generation. */
void
hk_cache_insert_negative(const uint8 *digest, uint64 generation)
{
	insert_entry(digest, NULL, generation);
}

/* Visits one entry in use; returns whether it counts. */
typedef bool (*EntryVisitor) (HkCacheEntry *e, void *arg);

/*
 * Call visit on every entry in use, partition by partition, holding each
 * partition's lock in mode while its entries are visited.  Returns how
 * many visits returned true.
 */
static int64
visit_entries(LWLockMode mode, EntryVisitor visit, void *arg)
{
	int64		n = 0;
	uint32		set;
	int			part;

	for (part = 0; part < HK_CACHE_PARTITIONS; part++)
	{
		LWLockAcquire(&hk_cache_locks[part].lock, mode);
		for (set = part; set < hk_cache_shm->nsets; set += HK_CACHE_PARTITIONS)
		{
			HkCacheEntry *e = &hk_cache_shm->entries[set * HK_CACHE_WAYS];
			int			i;

			for (i = 0; i < HK_CACHE_WAYS; i++, e++)
				if ((e->flags & HKE_USED) && visit(e, arg))
					n++;
		}
		LWLockRelease(&hk_cache_locks[part].lock);
	}
	return n;
}

/* What clear_visitor forgets. */
typedef struct ClearTarget
{
	HkCacheScope scope;
	const pg_uuid_t *id;
} ClearTarget;

/* EntryVisitor: forget the entry if it is this database's and matches. */
static bool
clear_visitor(HkCacheEntry *e, void *arg)
{
	ClearTarget *t = (ClearTarget *) arg;

	if (e->dbid != MyDatabaseId)
		return false;
	/* Negative entries carry no ids: they survive key changes. */
	if (t->scope != HK_SCOPE_ALL &&
		((e->flags & HKE_NEGATIVE) ||
		 memcmp(t->scope == HK_SCOPE_KEY ? &e->key_id : &e->user_id,
				t->id, sizeof(pg_uuid_t)) != 0))
		return false;
	entry_begin_write(e);
	e->flags = 0;
	entry_end_write(e);
	return true;
}

/*
 * Forget this database's entries of one key (HK_SCOPE_KEY), of one user's
 * keys (HK_SCOPE_USER), or all of them (HK_SCOPE_ALL, id unused).
 */
void
hk_cache_clear(HkCacheScope scope, const pg_uuid_t *id)
{
	ClearTarget t = {scope, id};

	(void) visit_entries(LW_EXCLUSIVE, clear_visitor, &t);
}

/* EntryVisitor: count every entry. */
static bool
count_visitor(HkCacheEntry *e, void *arg)
{
	return true;
}

/* How many entries are in use, in every database. */
int64
hk_cache_count_entries(void)
{
	return visit_entries(LW_SHARED, count_visitor, NULL);
}

/* How many entries the cache holds at most. */
int64
hk_cache_capacity(void)
{
	return (int64) hk_cache_shm->nsets * HK_CACHE_WAYS;
}
