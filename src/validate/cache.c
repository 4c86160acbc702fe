/*-------------------------------------------------------------------------
 *
 * cache.c
 *	  A fixed-size shared-memory cache of validated keys.
 *
 * Layout.  One HkCacheShared struct followed by nsets * HK_CACHE_WAYS
 * entries.  An entry is found by a keyed BLAKE2b-256 digest of the whole key
 * (the 32-byte digest key is drawn at server start and lives only in shared
 * memory, so digests mean nothing outside this server run).  The digest picks
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
 * Locking rules:
 *
 *	- An entry is read or written only while holding its partition's LWLock:
 *	  shared to read, exclusive to insert, evict or clear.  The one exception
 *	  is last_used, an atomic that readers bump under the shared lock; it only
 *	  steers eviction, so a lost update is harmless.  last_touch is an
 *	  atomic swapped under the shared lock by the one backend that wins it.
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
#include "validate/stats.h"

#define HK_CACHE_WAYS		16
#define HK_CACHE_PARTITIONS 128
#define HK_LOCK_TRANCHE		"hokusai_auth"

/* Entry flags */
#define HKE_USED			0x01
#define HKE_NEGATIVE		0x02
#define HKE_ACTIVE			0x04
#define HKE_HAS_EXPIRY		0x08
#define HKE_HAS_IPS			0x10
#define HKE_IPS_OVERFLOW	0x20
#define HKE_REVOKED			0x40
#define HKE_DISABLED		0x80

typedef struct HkCacheEntry
{
	uint8		digest[HK_DIGEST_LEN];
	Oid			dbid;
	Oid			nspid;
	pg_uuid_t	key_id;
	pg_uuid_t	user_id;
	TimestampTz expires_at;
	TimestampTz filled_at;
	pg_atomic_uint32 last_used; /* seconds since cache start */
	pg_atomic_uint32 last_touch;	/* last usage touch, same clock */
	int32		rate_limit_per_hour;
	int32		burst_limit;
	uint8		flags;
	uint8		n_allowed;
	HkCidr		allowed[HK_CACHE_MAX_CIDRS];
	/* authorization: the key's scopes, packed, when they fit */
	uint8		n_scopes;		/* how many the key has */
	uint8		scopes_len;		/* bytes in scopes; 0 with n_scopes > 0: too long */
	char		scopes[HK_CACHE_SCOPE_BYTES];
} HkCacheEntry;

StaticAssertDecl(sizeof(HkCacheEntry) <= 256, "cache entry must fit in 256 bytes");

typedef struct HkCacheShared
{
	uint8		digest_key[crypto_generichash_KEYBYTES];
	TimestampTz started_at;
	uint32		nsets;
	pg_atomic_uint64 generation;
	HkCacheEntry entries[FLEXIBLE_ARRAY_MEMBER];
} HkCacheShared;

static HkCacheShared *cache = NULL;
static LWLockPadded *cache_locks = NULL;

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

	cache = ShmemInitStruct("hokusai_auth key cache", hk_cache_shmem_size(), &found);
	cache_locks = GetNamedLWLockTranche(HK_LOCK_TRANCHE);
	if (found)
		return;

	memset(cache, 0, hk_cache_shmem_size());
	crypto_generichash_keygen(cache->digest_key);
	cache->started_at = GetCurrentTimestamp();
	cache->nsets = cache_nsets();
	pg_atomic_init_u64(&cache->generation, 1);
	for (i = 0; i < (int) (cache->nsets * HK_CACHE_WAYS); i++)
	{
		pg_atomic_init_u32(&cache->entries[i].last_used, 0);
		pg_atomic_init_u32(&cache->entries[i].last_touch, 0);
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
static Oid
current_nspid(void)
{
	if (!OidIsValid(my_nspid))
		my_nspid = get_namespace_oid(HK_SCHEMA, false);
	return my_nspid;
}

/* The cache's lookup key for a key: its keyed BLAKE2b-256 digest. */
void
hk_key_digest(const char *key, size_t len, uint8 *digest)
{
	crypto_generichash(digest, HK_DIGEST_LEN, (const unsigned char *) key, len,
					   cache->digest_key, sizeof(cache->digest_key));
}

/* The generation a fill must still see when it inserts. */
uint64
hk_cache_generation(void)
{
	return pg_atomic_read_u64(&cache->generation);
}

/* Invalidation at commit: refuse every fill that began before now. */
void
hk_cache_advance_generation(void)
{
	pg_atomic_fetch_add_u64(&cache->generation, 1);
}

/* Seconds since the cache was made, the clock of last_used and last_touch. */
static inline uint32
now_tick(TimestampTz now)
{
	return (uint32) ((now - cache->started_at) / USECS_PER_SEC);
}

/* The set a digest belongs to. */
static inline uint32
digest_set(const uint8 *digest)
{
	uint64		h;

	memcpy(&h, digest, sizeof(h));
	return (uint32) (h % cache->nsets);
}

/* The partition lock of a set. */
static inline LWLock *
set_lock(uint32 set)
{
	return &cache_locks[set % HK_CACHE_PARTITIONS].lock;
}

/* Is the entry younger than hokusai_auth.cache_ttl? */
static inline bool
entry_fresh(const HkCacheEntry *e, TimestampTz now)
{
	TimestampTz ttl = (TimestampTz) hk_cache_ttl * USECS_PER_SEC;

	return now - e->filled_at < ttl;
}

/*
 * Look a digest up.  On a hit, *st describes the key (allowed CIDRs copied
 * into st->allowed_buf; *ips_overflow when there were too many to keep;
 * scopes into st->scopes_buf, st->scopes_unread when they were too long),
 * and *touch_due says whether this hit should note the key as used.
 */
HkCacheResult
hk_cache_lookup(const uint8 *digest, HkKeyState *st, bool *ips_overflow,
				bool *touch_due)
{
	uint32		set = digest_set(digest);
	HkCacheEntry *e = &cache->entries[set * HK_CACHE_WAYS];
	Oid			nspid = current_nspid();
	TimestampTz now = GetCurrentTimestamp();
	HkCacheResult result = HK_CACHE_MISS;
	int			i;

	LWLockAcquire(set_lock(set), LW_SHARED);
	for (i = 0; i < HK_CACHE_WAYS; i++, e++)
	{
		if (!(e->flags & HKE_USED) ||
			memcmp(e->digest, digest, HK_DIGEST_LEN) != 0 ||
			e->dbid != MyDatabaseId || e->nspid != nspid)
			continue;
		if (!entry_fresh(e, now))
			break;
		pg_atomic_write_u32(&e->last_used, now_tick(now));
		if (!(e->flags & HKE_NEGATIVE))
		{
			uint32		tick = now_tick(now);
			uint32		last = pg_atomic_read_u32(&e->last_touch);

			*touch_due = tick - last >= HK_TOUCH_INTERVAL &&
				pg_atomic_compare_exchange_u32(&e->last_touch, &last, tick);
		}
		if (e->flags & HKE_NEGATIVE)
		{
			result = HK_CACHE_NEGATIVE;
			break;
		}
		st->key_id = e->key_id;
		st->user_id = e->user_id;
		st->active = (e->flags & HKE_ACTIVE) != 0;
		st->revoked = (e->flags & HKE_REVOKED) != 0;
		st->has_expiry = (e->flags & HKE_HAS_EXPIRY) != 0;
		st->expires_at = e->expires_at;
		st->rate_limit_per_hour = e->rate_limit_per_hour;
		st->burst_limit = e->burst_limit;
		st->has_allowed_ips = (e->flags & HKE_HAS_IPS) != 0;
		st->n_allowed = e->n_allowed;
		st->allowed = st->allowed_buf;
		if (st->n_allowed > 0)
			memcpy(st->allowed, e->allowed, sizeof(HkCidr) * e->n_allowed);
		*ips_overflow = (e->flags & HKE_IPS_OVERFLOW) != 0;
		st->disabled = (e->flags & HKE_DISABLED) != 0;
		st->n_scopes = e->n_scopes;
		st->scopes_unread = e->n_scopes > 0 && e->scopes_len == 0;
		st->scopes_len = e->scopes_len;
		st->scopes = st->scopes_buf;
		if (e->scopes_len > 0)
			memcpy(st->scopes_buf, e->scopes, e->scopes_len);
		result = HK_CACHE_HIT;
		break;
	}
	LWLockRelease(set_lock(set));

	hk_stat_add(result == HK_CACHE_HIT ? HK_STAT_HITS :
				result == HK_CACHE_NEGATIVE ? HK_STAT_NEGATIVE_HITS :
				HK_STAT_MISSES);
	return result;
}

/*
 * Pick the slot for digest in its set: the entry with the same digest, an
 * empty or stale one, or else the least recently used.  Caller holds the
 * set's partition lock exclusively.
 */
static HkCacheEntry *
choose_slot(uint32 set, const uint8 *digest, TimestampTz now)
{
	HkCacheEntry *base = &cache->entries[set * HK_CACHE_WAYS];
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
	Oid			nspid = current_nspid();
	TimestampTz now = GetCurrentTimestamp();
	HkCacheEntry *e;

	LWLockAcquire(set_lock(set), LW_EXCLUSIVE);
	/* A key or user changed since this fill began: its data may be stale. */
	if (pg_atomic_read_u64(&cache->generation) != generation)
	{
		LWLockRelease(set_lock(set));
		return;
	}
	e = choose_slot(set, digest, now);
	memcpy(e->digest, digest, HK_DIGEST_LEN);
	e->dbid = MyDatabaseId;
	e->nspid = nspid;
	e->filled_at = now;
	pg_atomic_write_u32(&e->last_used, now_tick(now));
	/* The fill itself is noted as a use by the caller. */
	pg_atomic_write_u32(&e->last_touch, now_tick(now));
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
	}
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
		LWLockAcquire(&cache_locks[part].lock, mode);
		for (set = part; set < cache->nsets; set += HK_CACHE_PARTITIONS)
		{
			HkCacheEntry *e = &cache->entries[set * HK_CACHE_WAYS];
			int			i;

			for (i = 0; i < HK_CACHE_WAYS; i++, e++)
				if ((e->flags & HKE_USED) && visit(e, arg))
					n++;
		}
		LWLockRelease(&cache_locks[part].lock);
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
	e->flags = 0;
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
	return (int64) cache->nsets * HK_CACHE_WAYS;
}
