/*-------------------------------------------------------------------------
 *
 * key_cache.c
 *	  A fixed-size shared-memory cache of validated keys, its invalidation
 *	  at commit, and per-prefix throttling of failed verifications.
 *
 * Layout.  One HkCacheShared struct followed by nsets * HK_CACHE_WAYS
 * entries.  An entry is found by a keyed BLAKE2b-256 digest of the whole key
 * (the 32-byte digest key is drawn at server start and lives only in shared
 * memory, so digests mean nothing outside this server run).  The digest picks
 * a set of HK_CACHE_WAYS entries; a set belongs to one of HK_CACHE_PARTITIONS
 * partitions.  A full set evicts its least recently used entry.  Entries
 * are tagged with the database and the hokusai_auth schema they came from:
 * the cache is shared by every database on the server.
 *
 * Negative entries remember a digest whose secret failed bcrypt, so a
 * repeated wrong key costs no bcrypt until the entry ages out.
 *
 * Entries also pace last_used_at: a hit asks the usage queue to note the
 * key as used at most once per HK_TOUCH_INTERVAL seconds (the first backend
 * to swap last_touch wins), so the worker writes last_used_at about once a
 * minute per busy key however many requests it serves.
 *
 * Locking rules:
 *
 *	- An entry is read or written only while holding its partition's LWLock:
 *	  shared to read, exclusive to insert, evict or clear.  The one exception
 *	  is last_used, an atomic that readers bump under the shared lock; it only
 *	  steers eviction, so a lost update is harmless.
 *	- No code holds more than one partition lock at a time, and no partition
 *	  lock is held while doing anything but copying an entry (no catalog or
 *	  table access, no bcrypt, no elog above DEBUG), so there is no deadlock
 *	  and no lock is held across an ERROR.
 *	- The throttle table has its own LWLock, never held together with a
 *	  partition lock.
 *	- generation and the statistics are atomics and need no lock.
 *
 * Invalidation.  Changes to api_keys and users register, through triggers,
 * what they touched (a key, a user, or everything).  Nothing happens to the
 * cache until the transaction commits; then, in the commit callback, this
 * backend first increments generation and then clears every matching
 * entry.  A backend filling the cache reads generation before it takes the
 * snapshot it reads the key's row with, and inserts only if generation is
 * unchanged when it holds the partition lock.  So a fill that read the row
 * before a concurrent change became visible is either refused (the change's
 * increment came first) or cleared (the change's clearing comes after the
 * insert).  The commit callback runs before the client is told the commit
 * succeeded, so once revoke_key() has committed no session can find the
 * key in the cache.  A transaction with pending invalidations neither reads
 * nor fills the cache: what it sees is not yet what others see.  PREPARE
 * TRANSACTION is refused for such a transaction, as the commit would then
 * happen where our callback cannot see it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "access/xact.h"
#include "catalog/namespace.h"
#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/inval.h"
#include "utils/memutils.h"
#include "utils/syscache.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "common/key_format.h"
#include "middleware/key_cache.h"

#define HK_CACHE_WAYS		16
#define HK_CACHE_PARTITIONS 128
#define HK_THROTTLE_SLOTS	4096
#define HK_LOCK_TRANCHE		"hokusai_auth"
#define HK_NUM_LOCKS		(HK_CACHE_PARTITIONS + 1)	/* + throttle */

/* Entry flags */
#define HKE_USED			0x01
#define HKE_NEGATIVE		0x02
#define HKE_ACTIVE			0x04
#define HKE_HAS_EXPIRY		0x08
#define HKE_HAS_IPS			0x10
#define HKE_IPS_OVERFLOW	0x20
#define HKE_REVOKED			0x40

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
} HkCacheEntry;

StaticAssertDecl(sizeof(HkCacheEntry) <= 256, "cache entry must fit in 256 bytes");

typedef struct HkThrottleSlot
{
	uint64		prefix_hash;
	int64		second;
	int32		count;
} HkThrottleSlot;

typedef struct HkCacheShared
{
	uint8		digest_key[crypto_generichash_KEYBYTES];
	TimestampTz started_at;
	uint32		nsets;
	pg_atomic_uint64 generation;
	pg_atomic_uint64 stats[HK_NUM_STATS];
	pg_atomic_uint64 stats_reset;	/* TimestampTz */
	HkThrottleSlot throttle[HK_THROTTLE_SLOTS];
	HkCacheEntry entries[FLEXIBLE_ARRAY_MEMBER];
} HkCacheShared;

static HkCacheShared *cache = NULL;
static LWLockPadded *cache_locks = NULL;

/* Per-backend invalidations waiting for commit. */
#define HK_PENDING_MAX 256
typedef enum HkPendingKind
{
	HK_PENDING_KEY,
	HK_PENDING_USER
} HkPendingKind;
typedef struct HkPending
{
	HkPendingKind kind;
	pg_uuid_t	id;
} HkPending;
static HkPending pending[HK_PENDING_MAX];
static int	npending = 0;
static bool pending_all = false;
static bool xact_callback_registered = false;

/* This database's hokusai_auth schema, looked up once per backend. */
static Oid	my_nspid = InvalidOid;

static uint32
cache_nsets(void)
{
	uint32		sets = (hk_cache_size + HK_CACHE_WAYS - 1) / HK_CACHE_WAYS;

	/* A whole number of sets per partition. */
	return ((sets + HK_CACHE_PARTITIONS - 1) / HK_CACHE_PARTITIONS) * HK_CACHE_PARTITIONS;
}

Size
hk_cache_shmem_size(void)
{
	return add_size(offsetof(HkCacheShared, entries),
					mul_size(mul_size(cache_nsets(), HK_CACHE_WAYS),
							 sizeof(HkCacheEntry)));
}

void
hk_cache_shmem_request(void)
{
	RequestAddinShmemSpace(hk_cache_shmem_size());
	RequestNamedLWLockTranche(HK_LOCK_TRANCHE, HK_NUM_LOCKS);
}

/* Called with AddinShmemInitLock held. */
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
	for (i = 0; i < HK_NUM_STATS; i++)
		pg_atomic_init_u64(&cache->stats[i], 0);
	pg_atomic_init_u64(&cache->stats_reset, (uint64) cache->started_at);
	for (i = 0; i < (int) (cache->nsets * HK_CACHE_WAYS); i++)
	{
		pg_atomic_init_u32(&cache->entries[i].last_used, 0);
		pg_atomic_init_u32(&cache->entries[i].last_touch, 0);
	}
}

void
hk_stat_add(HkCacheStat which)
{
	if (cache != NULL)
		pg_atomic_fetch_add_u64(&cache->stats[which], 1);
}

void
hk_key_digest(const char *key, size_t len, uint8 *digest)
{
	crypto_generichash(digest, HK_DIGEST_LEN, (const unsigned char *) key, len,
					   cache->digest_key, sizeof(cache->digest_key));
}

uint64
hk_cache_generation(void)
{
	return pg_atomic_read_u64(&cache->generation);
}

static void
schema_inval_callback(Datum arg, int cacheid, uint32 hashvalue)
{
	my_nspid = InvalidOid;
}

static Oid
current_nspid(void)
{
	if (!OidIsValid(my_nspid))
		my_nspid = get_namespace_oid(HK_SCHEMA, false);
	return my_nspid;
}

/*
 * May this backend use the cache now?  Not while its transaction has
 * changed keys or users that others cannot see yet.
 */
bool
hk_cache_usable(void)
{
	return cache != NULL && npending == 0 && !pending_all;
}

static inline uint32
now_tick(TimestampTz now)
{
	return (uint32) ((now - cache->started_at) / USECS_PER_SEC);
}

static inline uint32
digest_set(const uint8 *digest)
{
	uint64		h;

	memcpy(&h, digest, sizeof(h));
	return (uint32) (h % cache->nsets);
}

static inline LWLock *
set_lock(uint32 set)
{
	return &cache_locks[set % HK_CACHE_PARTITIONS].lock;
}

static inline bool
entry_fresh(const HkCacheEntry *e, TimestampTz now)
{
	TimestampTz ttl = (TimestampTz) hk_cache_ttl * USECS_PER_SEC;

	return now - e->filled_at < ttl;
}

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
	}
	LWLockRelease(set_lock(set));
}

void
hk_cache_insert(const uint8 *digest, const HkKeyState *st, uint64 generation)
{
	insert_entry(digest, st, generation);
}

void
hk_cache_insert_negative(const uint8 *digest, uint64 generation)
{
	insert_entry(digest, NULL, generation);
}

/*
 * Throttling.  Each key_prefix may cost at most
 * hokusai_auth.max_failures_per_prefix bcrypt verifications that fail in any
 * one second.  An attempt takes a unit before bcrypt runs and gives it back
 * if the secret was right, so concurrent attackers cannot overshoot.
 * Prefixes whose hashes land in the same slot share its count for the
 * second, which only makes the throttle stricter for them; the hash is
 * seeded with the per-server secret, so nobody can choose a colliding
 * prefix on purpose.
 */
static HkThrottleSlot *
throttle_slot(const char *prefix, uint64 *hash)
{
	uint64		seed;

	memcpy(&seed, cache->digest_key, sizeof(seed));
	*hash = hash_bytes_extended((const unsigned char *) prefix, HK_PREFIX_LEN, seed);
	return &cache->throttle[*hash % HK_THROTTLE_SLOTS];
}

bool
hk_throttle_admit(const char *prefix)
{
	LWLock	   *lock = &cache_locks[HK_CACHE_PARTITIONS].lock;
	int64		second = GetCurrentTimestamp() / USECS_PER_SEC;
	uint64		hash;
	HkThrottleSlot *slot = throttle_slot(prefix, &hash);
	bool		admit;

	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (slot->second != second)
	{
		slot->second = second;
		slot->count = 0;
	}
	slot->prefix_hash = hash;
	admit = slot->count < hk_max_failures_per_prefix;
	if (admit)
		slot->count++;
	LWLockRelease(lock);

	if (!admit)
		hk_stat_add(HK_STAT_THROTTLED);
	return admit;
}

void
hk_throttle_release(const char *prefix)
{
	LWLock	   *lock = &cache_locks[HK_CACHE_PARTITIONS].lock;
	uint64		hash;
	HkThrottleSlot *slot = throttle_slot(prefix, &hash);

	LWLockAcquire(lock, LW_EXCLUSIVE);
	if (slot->second == GetCurrentTimestamp() / USECS_PER_SEC && slot->count > 0)
		slot->count--;
	LWLockRelease(lock);
}

/*
 * Clear matching entries of this database in every partition.  kind is
 * HK_PENDING_KEY or HK_PENDING_USER, or all when id is NULL.
 */
static void
clear_entries(HkPendingKind kind, const pg_uuid_t *id)
{
	uint32		set;
	int			part;

	for (part = 0; part < HK_CACHE_PARTITIONS; part++)
	{
		LWLockAcquire(&cache_locks[part].lock, LW_EXCLUSIVE);
		for (set = part; set < cache->nsets; set += HK_CACHE_PARTITIONS)
		{
			HkCacheEntry *e = &cache->entries[set * HK_CACHE_WAYS];
			int			i;

			for (i = 0; i < HK_CACHE_WAYS; i++, e++)
			{
				if (!(e->flags & HKE_USED) || e->dbid != MyDatabaseId)
					continue;
				/* Negative entries carry no ids: they survive key changes. */
				if (id != NULL &&
					((e->flags & HKE_NEGATIVE) ||
					 memcmp(kind == HK_PENDING_KEY ? &e->key_id : &e->user_id,
							id, sizeof(pg_uuid_t)) != 0))
					continue;
				e->flags = 0;
			}
		}
		LWLockRelease(&cache_locks[part].lock);
	}
}

static void
reset_pending(void)
{
	npending = 0;
	pending_all = false;
}

static void
cache_xact_callback(XactEvent event, void *arg)
{
	int			i;

	if (npending == 0 && !pending_all)
		return;

	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
			/* First the generation, then the clearing: see the banner. */
			pg_atomic_fetch_add_u64(&cache->generation, 1);
			if (pending_all || npending >= HK_PENDING_MAX)
				clear_entries(HK_PENDING_KEY, NULL);
			else
				for (i = 0; i < npending; i++)
					clear_entries(pending[i].kind, &pending[i].id);
			hk_stat_add(HK_STAT_INVALIDATIONS);
			reset_pending();
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			reset_pending();
			break;
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that has changed API keys or their users")));
			break;
		default:
			break;
	}
}

static void
add_pending(HkPendingKind kind, const pg_uuid_t *id)
{
	int			i;

	if (cache == NULL || pending_all)
		return;
	for (i = 0; i < npending; i++)
		if (pending[i].kind == kind && memcmp(&pending[i].id, id, sizeof(*id)) == 0)
			return;
	if (npending >= HK_PENDING_MAX)
	{
		pending_all = true;
		return;
	}
	pending[npending].kind = kind;
	pending[npending].id = *id;
	npending++;
}

void
hk_invalidate_key_at_commit(const pg_uuid_t *key_id)
{
	add_pending(HK_PENDING_KEY, key_id);
}

void
hk_invalidate_user_at_commit(const pg_uuid_t *user_id)
{
	add_pending(HK_PENDING_USER, user_id);
}

void
hk_invalidate_all_at_commit(void)
{
	if (cache != NULL)
		pending_all = true;
}

/* Per-backend set-up, from _PG_init. */
void
hk_cache_init(void)
{
	if (!xact_callback_registered)
	{
		RegisterXactCallback(cache_xact_callback, NULL);
		CacheRegisterSyscacheCallback(NAMESPACEOID, schema_inval_callback, (Datum) 0);
		xact_callback_registered = true;
	}
}

int64
hk_cache_capacity(void)
{
	return (int64) cache->nsets * HK_CACHE_WAYS;
}

uint64
hk_stat_read(HkCacheStat which)
{
	return pg_atomic_read_u64(&cache->stats[which]);
}

TimestampTz
hk_stats_reset_time(void)
{
	return (TimestampTz) pg_atomic_read_u64(&cache->stats_reset);
}

void
hk_stats_reset(void)
{
	int			i;

	for (i = 0; i < HK_NUM_STATS; i++)
		pg_atomic_write_u64(&cache->stats[i], 0);
	pg_atomic_write_u64(&cache->stats_reset, (uint64) GetCurrentTimestamp());
}

int64
hk_cache_count_entries(void)
{
	int64		n = 0;
	uint32		set;
	int			part;

	for (part = 0; part < HK_CACHE_PARTITIONS; part++)
	{
		LWLockAcquire(&cache_locks[part].lock, LW_SHARED);
		for (set = part; set < cache->nsets; set += HK_CACHE_PARTITIONS)
		{
			HkCacheEntry *e = &cache->entries[set * HK_CACHE_WAYS];
			int			i;

			for (i = 0; i < HK_CACHE_WAYS; i++, e++)
				if (e->flags & HKE_USED)
					n++;
		}
		LWLockRelease(&cache_locks[part].lock);
	}
	return n;
}
