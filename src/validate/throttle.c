/*-------------------------------------------------------------------------
 *
 * throttle.c
 *	  Per-key_prefix throttling of failed verifications, so that a flood
 *	  of wrong secrets for one key costs bounded bcrypt work.
 *
 * Each key_prefix may cost at most hokusai_auth.max_failures_per_prefix
 * bcrypt verifications that fail in any one second.  An attempt that
 * missed the cache takes a unit before bcrypt runs (hk_throttle_admit) and
 * gives it back if the secret was right or there was no such key
 * (hk_throttle_release), so concurrent attackers cannot overshoot.  Keys
 * in the cache are not affected: a cache hit never reaches the throttle.
 *
 * Layout.  A fixed table of HK_THROTTLE_SLOTS slots in the main shared
 * memory, each a count for one second.  A prefix's slot is picked by a
 * hash seeded with a secret drawn at server start, so nobody can choose a
 * prefix that collides with another on purpose; prefixes that do collide
 * share the slot's count for the second, which only makes the throttle
 * stricter for them.
 *
 * Locking rules:
 *
 *	- One LWLock, in a tranche of its own, guards every slot; it is held
 *	  exclusively for a few instructions (read, reset, count) and never
 *	  together with any other lock, so it cannot deadlock and is never
 *	  held across an ERROR.
 *	- The seed is written once at start-up and read without a lock.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sodium.h>

#include "common/hashfn.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "common/key_format.h"
#include "validate/stats.h"
#include "validate/throttle.h"

#define HK_THROTTLE_SLOTS	4096
#define THROTTLE_TRANCHE	"hokusai_auth throttle"

typedef struct HkThrottleSlot
{
	uint64		prefix_hash;
	int64		second;
	int32		count;
} HkThrottleSlot;

typedef struct HkThrottleShared
{
	uint64		seed;			/* per server start, never shown */
	HkThrottleSlot slots[HK_THROTTLE_SLOTS];
} HkThrottleShared;

static HkThrottleShared *throttle = NULL;
static LWLock *throttle_lock = NULL;

/* From shmem_request_hook: the table and our own lock tranche. */
void
hk_throttle_shmem_request(void)
{
	RequestAddinShmemSpace(sizeof(HkThrottleShared));
	RequestNamedLWLockTranche(THROTTLE_TRANCHE, 1);
}

/* Create or attach to the table.  Called with AddinShmemInitLock held. */
void
hk_throttle_shmem_startup(void)
{
	bool		found;

	throttle = ShmemInitStruct("hokusai_auth throttle", sizeof(HkThrottleShared), &found);
	throttle_lock = &(GetNamedLWLockTranche(THROTTLE_TRANCHE))->lock;
	if (found)
		return;
	memset(throttle, 0, sizeof(*throttle));
	randombytes_buf(&throttle->seed, sizeof(throttle->seed));
}

/* The slot of a key_prefix (its first HK_PREFIX_LEN bytes), and its hash. */
static HkThrottleSlot *
throttle_slot(const char *prefix, uint64 *hash)
{
	*hash = hash_bytes_extended((const unsigned char *) prefix, HK_PREFIX_LEN,
								throttle->seed);
	return &throttle->slots[*hash % HK_THROTTLE_SLOTS];
}

/*
 * May a verification for this key_prefix run now?  Takes a unit of this
 * second's allowance when it may; counts a throttled attempt when not.
 */
bool
hk_throttle_admit(const char *prefix)
{
	int64		second = GetCurrentTimestamp() / USECS_PER_SEC;
	uint64		hash;
	HkThrottleSlot *slot = throttle_slot(prefix, &hash);
	bool		admit;

	LWLockAcquire(throttle_lock, LW_EXCLUSIVE);
	if (slot->second != second)
	{
		slot->second = second;
		slot->count = 0;
	}
	slot->prefix_hash = hash;
	admit = slot->count < hk_max_failures_per_prefix;
	if (admit)
		slot->count++;
	LWLockRelease(throttle_lock);

	if (!admit)
		hk_stat_add(HK_STAT_THROTTLED);
	return admit;
}

/* Give back the unit hk_throttle_admit took: the attempt did not fail. */
void
hk_throttle_release(const char *prefix)
{
	uint64		hash;
	HkThrottleSlot *slot = throttle_slot(prefix, &hash);

	LWLockAcquire(throttle_lock, LW_EXCLUSIVE);
	if (slot->second == GetCurrentTimestamp() / USECS_PER_SEC && slot->count > 0)
		slot->count--;
	LWLockRelease(throttle_lock);
}
