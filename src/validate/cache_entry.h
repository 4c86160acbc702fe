/*-------------------------------------------------------------------------
 *
 * cache_entry.h
 *	  The shared-memory layout of the key cache, private to cache.c (which
 *	  owns it: layout and locking rules in its banner) and cache_lookup.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_CACHE_ENTRY_H
#define HK_CACHE_ENTRY_H

#include "postgres.h"

#include <sodium.h>

#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "validate/cache.h"

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
	/*
	 * What a probe of a set reads of an entry that is not the one it looks
	 * for, in the entry's first cache line (entries are 256 bytes, cache-line
	 * aligned): with many keys, the set's 16 entries are not in the CPU's
	 * caches, and a probe that touched two or three lines per entry paid a
	 * cache miss for each.
	 */
	pg_atomic_uint32 changes;	/* odd while a writer changes the entry */
	uint8		flags;
	uint8		n_allowed;
	uint8		n_scopes;		/* how many the key has */
	uint8		scopes_len;		/* bytes in scopes; 0 with n_scopes > 0: too long */
	Oid			dbid;
	Oid			nspid;
	uint8		digest[HK_DIGEST_LEN];
	TimestampTz filled_at;
	pg_atomic_uint32 last_used; /* seconds since cache start */
	pg_atomic_uint32 last_touch;	/* last usage touch, same clock */
	/* What every hit reads, in the second line. */
	pg_uuid_t	key_id;
	pg_uuid_t	user_id;
	TimestampTz expires_at;
	int32		rate_limit_per_hour;
	int32		burst_limit;
	int32		user_rate_limit_per_hour;	/* metering: the owner's limits */
	int32		user_burst_limit;
	bool		has_credits;
	uint8		refill_interval;
	/* The rate limiter's slot of the key, + 1; 0: unknown (a hint). */
	pg_atomic_uint32 limiter_hint;
	/* Read only when the key has them. */
	pg_uuid_t	credits_key;	/* metering: whose balance, and its refill */
	int64		refill_amount;
	HkCidr		allowed[HK_CACHE_MAX_CIDRS];
	/* authorization: the key's scopes, packed, when they fit */
	char		scopes[HK_CACHE_SCOPE_BYTES];
} HkCacheEntry;

StaticAssertDecl(sizeof(HkCacheEntry) == 256, "cache entry must be 256 bytes");
/* 64: the line of today's CPUs (PG_CACHE_LINE_SIZE, 128, is the alignment). */
StaticAssertDecl(offsetof(HkCacheEntry, last_touch) + sizeof(pg_atomic_uint32) <= 64,
				 "what a probe reads must fit in the entry's first cache line");
StaticAssertDecl(offsetof(HkCacheEntry, limiter_hint) + sizeof(pg_atomic_uint32) <= 128,
				 "what every hit reads must fit in the entry's second cache line");

typedef struct HkCacheShared
{
	uint8		digest_key[crypto_generichash_KEYBYTES];
	TimestampTz started_at;
	uint32		nsets;
	pg_atomic_uint64 generation;
	/* Cache-line aligned (ShmemInitStruct() returns aligned memory). */
	HkCacheEntry entries[FLEXIBLE_ARRAY_MEMBER] pg_attribute_aligned(PG_CACHE_LINE_SIZE);
} HkCacheShared;

extern HkCacheShared *hk_cache_shm;
extern LWLockPadded *hk_cache_locks;

extern Oid	hk_cache_nspid(void);

/* Seconds since the cache was made, the clock of last_used and last_touch. */
static inline uint32
now_tick(TimestampTz now)
{
	return (uint32) ((now - hk_cache_shm->started_at) / USECS_PER_SEC);
}

/* The set a digest belongs to. */
static inline uint32
digest_set(const uint8 *digest)
{
	uint64		h;

	memcpy(&h, digest, sizeof(h));
	return (uint32) (h % hk_cache_shm->nsets);
}

/* The partition lock of a set. */
static inline LWLock *
set_lock(uint32 set)
{
	return &hk_cache_locks[set % HK_CACHE_PARTITIONS].lock;
}

/* Is the entry younger than hokusai_auth.cache_ttl? */
static inline bool
entry_fresh(const HkCacheEntry *e, TimestampTz now)
{
	TimestampTz ttl = (TimestampTz) hk_cache_ttl * USECS_PER_SEC;

	return now - e->filled_at < ttl;
}

/* A writer (partition lock held exclusively) starts changing e. */
static inline void
entry_begin_write(HkCacheEntry *e)
{
	pg_atomic_write_u32(&e->changes, pg_atomic_read_u32(&e->changes) + 1);
	pg_write_barrier();
}

/* ... and is done: readers that saw the entry meanwhile read again. */
static inline void
entry_end_write(HkCacheEntry *e)
{
	pg_write_barrier();
	pg_atomic_write_u32(&e->changes, pg_atomic_read_u32(&e->changes) + 1);
}

/* Does entry e hold digest for this database's schema nspid? */
static inline bool
entry_matches(const HkCacheEntry *e, const uint8 *digest, Oid nspid)
{
	return (e->flags & HKE_USED) &&
		memcmp(e->digest, digest, HK_DIGEST_LEN) == 0 &&
		e->dbid == MyDatabaseId && e->nspid == nspid;
}

/*
 * Copy a positive entry into *st (allowed CIDRs into st->allowed_buf;
 * *ips_overflow when there were too many to keep; scopes into
 * st->scopes_buf, st->scopes_unread when they were too long).
 */
static inline void
entry_to_state(const HkCacheEntry *e, HkKeyState *st, bool *ips_overflow)
{
	uint8		flags = e->flags;

	st->key_id = e->key_id;
	st->user_id = e->user_id;
	st->active = (flags & HKE_ACTIVE) != 0;
	st->revoked = (flags & HKE_REVOKED) != 0;
	st->has_expiry = (flags & HKE_HAS_EXPIRY) != 0;
	st->expires_at = e->expires_at;
	st->rate_limit_per_hour = e->rate_limit_per_hour;
	st->burst_limit = e->burst_limit;
	st->has_allowed_ips = (flags & HKE_HAS_IPS) != 0;
	/* Bounded even when read torn (the caller then discards it). */
	st->n_allowed = Min(e->n_allowed, HK_CACHE_MAX_CIDRS);
	st->allowed = st->allowed_buf;
	if (st->n_allowed > 0)
		memcpy(st->allowed, e->allowed, sizeof(HkCidr) * st->n_allowed);
	*ips_overflow = (flags & HKE_IPS_OVERFLOW) != 0;
	st->disabled = (flags & HKE_DISABLED) != 0;
	st->n_scopes = e->n_scopes;
	/* Bounded like n_allowed. */
	st->scopes_len = Min(e->scopes_len, HK_CACHE_SCOPE_BYTES);
	st->scopes_unread = st->n_scopes > 0 && st->scopes_len == 0;
	st->scopes = st->scopes_buf;
	if (st->scopes_len > 0)
		memcpy(st->scopes_buf, e->scopes, st->scopes_len);
	st->user_rate_limit_per_hour = e->user_rate_limit_per_hour;
	st->user_burst_limit = e->user_burst_limit;
	st->has_credits = e->has_credits;
	st->refill_interval = e->refill_interval;
	/* Written without the entry's protocol: read alone, as a hint. */
	st->limiter_hint_at = (pg_atomic_uint32 *) &e->limiter_hint;
	st->limiter_hint = pg_atomic_read_u32(st->limiter_hint_at);
	if (st->has_credits)
	{
		st->credits_key = e->credits_key;
		st->refill_amount = e->refill_amount;
	}
	else
	{
		memset(&st->credits_key, 0, sizeof(st->credits_key));
		st->refill_amount = 0;
	}
}

#endif							/* HK_CACHE_ENTRY_H */
