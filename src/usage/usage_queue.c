/*-------------------------------------------------------------------------
 *
 * usage_queue.c
 *	  The shared-memory queue of usage events and the table of last_used_at
 *	  touches, filled on the request path and drained by the background
 *	  worker (worker/worker.c).
 *
 * Layout.  One HkUsageShared struct: counters, the touch table and a ring
 * of hokusai_auth.usage_queue_size fixed-size events (HkUsageEvent, 168
 * bytes: the endpoint is cut to HK_USAGE_ENDPOINT_LEN - 1 bytes at a
 * character boundary).  head and tail are positions that only grow; an
 * event lives in ring[pos % capacity].  The ring is full when
 * head - tail == capacity: a new event is then dropped and counted, never
 * waited for.
 *
 * Touches.  A validation without an endpoint only records that the key was
 * used.  Such touches go to a small open-addressed table (HK_TOUCH_SLOTS
 * slots, keyed by database and key id, keeping the latest time), so a hot
 * key takes one slot however often it is used; when its probe window is
 * full the touch goes into the ring as an event without endpoint.  The
 * worker derives touches from usage events too, and applies all of them as
 * one UPDATE per key per flush.
 *
 * Locking rules:
 *
 *	- ring_lock (exclusive) guards head, tail, the worker fields and the
 *	  writing of a slot.  A producer takes it, checks for room, copies its
 *	  event into ring[head], advances head and releases: a few hundred
 *	  bytes of copying, nothing else (no allocation, no elog).
 *	- The worker is the only consumer.  It reads head and tail under the
 *	  lock (shared), then copies slots [tail, head) WITHOUT the lock:
 *	  producers never write there until tail moves past them, and only the
 *	  worker moves tail.  It moves tail (exclusive) after the transaction
 *	  that wrote those events has committed, so an error in the worker
 *	  loses nothing: the worker catches it and reads the same events again
 *	  in its next cycle (after HK_MAX_RETRIES failed cycles it drops the
 *	  batch and counts it as failed; see worker/flush.c).
 *	- touch_lock (exclusive) guards the touch table; producers hold it to
 *	  probe at most HK_TOUCH_PROBE slots, the worker to copy and clear it.
 *	- The two locks are never held together, and no lock is held across
 *	  anything that can raise an ERROR.
 *	- The worker's counters and gauges are atomics and need no lock.  The
 *	  producers' counters (enqueued, dropped, other_database,
 *	  touches_dropped) are per-backend counters summed on read
 *	  (validate/stats.c): no call writes a shared counter.
 *
 * Database.  The queue is server-wide but the worker writes to one database
 * (hokusai_auth.database).  Once the worker has connected it publishes its
 * database; events from other databases are then refused at once (counted
 * as other_database) instead of filling the ring.  Events queued before
 * that are discarded by the worker.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "mb/pg_wchar.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "usage/endpoint.h"
#include "usage/usage_queue.h"
#include "validate/stats.h"

#define HK_USAGE_TRANCHE	"hokusai_auth_usage"
#define HK_TOUCH_PROBE		16

StaticAssertDecl(sizeof(HkUsageEvent) <= 168, "usage event must fit in 168 bytes");

typedef struct HkTouchSlot
{
	pg_uuid_t	key_id;
	Oid			dbid;			/* InvalidOid: free */
	TimestampTz at;
} HkTouchSlot;

typedef struct HkUsageShared
{
	uint32		capacity;
	uint64		head;			/* ring_lock */
	uint64		tail;			/* ring_lock; moved only by the worker */
	Latch	   *worker_latch;	/* ring_lock; NULL when no worker */
	int			worker_pid;		/* ring_lock */
	pg_atomic_uint32 worker_dbid;	/* InvalidOid until the worker connects */
	pg_atomic_uint32 missing_db_reported;	/* 1: the worker said its database is missing */
	pg_atomic_uint64 stats[HK_NUM_USTATS];
	HkTouchSlot touches[HK_TOUCH_SLOTS];
	HkUsageEvent ring[FLEXIBLE_ARRAY_MEMBER];
} HkUsageShared;

static HkUsageShared *usage = NULL;
static LWLock *ring_lock = NULL;
static LWLock *touch_lock = NULL;

/* Bytes of main shared memory the queue takes: the struct and the ring. */
Size
hk_usage_shmem_size(void)
{
	return add_size(offsetof(HkUsageShared, ring),
					mul_size(hk_usage_queue_size, sizeof(HkUsageEvent)));
}

/* From shmem_request_hook: the queue and its two locks. */
void
hk_usage_shmem_request(void)
{
	RequestAddinShmemSpace(hk_usage_shmem_size());
	RequestNamedLWLockTranche(HK_USAGE_TRANCHE, 2);
}

/* The worker is exiting: nobody is there to wake any more. */
static void
worker_detach(int code, Datum arg)
{
	LWLockAcquire(ring_lock, LW_EXCLUSIVE);
	if (usage->worker_pid == MyProcPid)
	{
		usage->worker_latch = NULL;
		usage->worker_pid = 0;
	}
	LWLockRelease(ring_lock);
}

/* Called with AddinShmemInitLock held. */
void
hk_usage_shmem_startup(void)
{
	bool		found;
	LWLockPadded *locks;
	int			i;

	usage = ShmemInitStruct("hokusai_auth usage queue", hk_usage_shmem_size(), &found);
	locks = GetNamedLWLockTranche(HK_USAGE_TRANCHE);
	ring_lock = &locks[0].lock;
	touch_lock = &locks[1].lock;
	if (found)
		return;

	memset(usage, 0, offsetof(HkUsageShared, ring));
	usage->capacity = hk_usage_queue_size;
	pg_atomic_init_u32(&usage->worker_dbid, InvalidOid);
	pg_atomic_init_u32(&usage->missing_db_reported, 0);
	for (i = 0; i < HK_NUM_USTATS; i++)
		pg_atomic_init_u64(&usage->stats[i], 0);
	pg_atomic_write_u64(&usage->stats[HK_USTAT_RESET_AT], (uint64) GetCurrentTimestamp());
}

/*
 * The producers' counters live in validate/stats.c, per backend; -1 for
 * the worker's, which are here.
 */
static inline int
producer_counter(HkUsageStat which)
{
	switch (which)
	{
		case HK_USTAT_ENQUEUED:
			return HK_STAT_USAGE_ENQUEUED;
		case HK_USTAT_DROPPED:
			return HK_STAT_USAGE_DROPPED;
		case HK_USTAT_OTHER_DB:
			return HK_STAT_USAGE_OTHER_DB;
		case HK_USTAT_TOUCHES_DROPPED:
			return HK_STAT_USAGE_TOUCHES_DROPPED;
		default:
			return -1;
	}
}

/* One counter. */
uint64
hk_usage_stat(HkUsageStat which)
{
	int			c = producer_counter(which);

	if (c >= 0)
		return hk_stat_read((HkCacheStat) c);
	return pg_atomic_read_u64(&usage->stats[which]);
}

/* Add n to a counter; nothing happens without shared memory. */
void
hk_usage_stat_add(HkUsageStat which, uint64 n)
{
	int			c = producer_counter(which);

	if (usage == NULL || n == 0)
		return;
	if (c >= 0)
		hk_stat_add_n((HkCacheStat) c, n);
	else
		pg_atomic_fetch_add_u64(&usage->stats[which], n);
}

/* Set a gauge (lags, last flush time). */
void
hk_usage_stat_set(HkUsageStat which, uint64 v)
{
	pg_atomic_write_u64(&usage->stats[which], v);
}

/* Zero the counters, keeping the time of the last flush. */
void
hk_usage_stats_reset(void)
{
	int			i;

	for (i = 0; i < HK_NUM_USTATS; i++)
		if (i != HK_USTAT_LAST_FLUSH_AT)
			pg_atomic_write_u64(&usage->stats[i], 0);
	hk_stats_reset_range(HK_STAT_USAGE_ENQUEUED, HK_STAT_USAGE_TOUCHES_DROPPED + 1);
	pg_atomic_write_u64(&usage->stats[HK_USTAT_RESET_AT], (uint64) GetCurrentTimestamp());
}

/* The ring's capacity and fill, and the worker's pid (0: none). */
void
hk_usage_queue_state(uint32 *capacity, uint64 *queued, int *worker_pid)
{
	LWLockAcquire(ring_lock, LW_SHARED);
	*capacity = usage->capacity;
	*queued = usage->head - usage->tail;
	*worker_pid = usage->worker_pid;
	LWLockRelease(ring_lock);
}

/* Is an event from this database wanted? */
static inline bool
wanted_here(void)
{
	Oid			dbid = pg_atomic_read_u32(&usage->worker_dbid);

	return !OidIsValid(dbid) || dbid == MyDatabaseId;
}

/* Put one event in the ring; false when full.  Wakes the worker early. */
static bool
ring_put(const HkUsageEvent *ev)
{
	uint64		used;
	Latch	   *wake = NULL;

	LWLockAcquire(ring_lock, LW_EXCLUSIVE);
	used = usage->head - usage->tail;
	if (used >= usage->capacity)
	{
		LWLockRelease(ring_lock);
		return false;
	}
	memcpy(&usage->ring[usage->head % usage->capacity], ev, sizeof(HkUsageEvent));
	usage->head++;
	/* A quarter full: flush now rather than at the next interval. */
	if (used + 1 == Max(usage->capacity / 4, 1))
		wake = usage->worker_latch;
	LWLockRelease(ring_lock);

	if (wake != NULL)
		SetLatch(wake);
	return true;
}

/* Queue one usage event (see usage_queue.h); false when it was dropped. */
bool
hk_usage_enqueue(const pg_uuid_t *key_id, TimestampTz at,
				 const char *endpoint, int endpoint_len,
				 int32 response_time_ms, int32 status_code)
{
	HkUsageEvent ev;

	if (usage == NULL)
		return false;
	if (!wanted_here())
	{
		hk_usage_stat_add(HK_USTAT_OTHER_DB, 1);
		return false;
	}

	ev.key_id = *key_id;
	ev.at = at;
	ev.dbid = MyDatabaseId;
	ev.response_time_ms = response_time_ms;
	ev.status_code = (int16) status_code;
	ev.flags = HK_EV_USAGE;
	ev.endpoint_len = 0;
	if (endpoint != NULL)
	{
		Assert(endpoint_len >= 0 && endpoint_len < HK_USAGE_ENDPOINT_LEN);
		ev.flags |= HK_EV_HAS_ENDPOINT;
		ev.endpoint_len = (uint8) endpoint_len;
		memcpy(ev.endpoint, endpoint, endpoint_len);
	}
	ev.endpoint[ev.endpoint_len] = '\0';

	if (!ring_put(&ev))
	{
		hk_usage_stat_add(HK_USTAT_DROPPED, 1);
		return false;
	}
	hk_usage_stat_add(HK_USTAT_ENQUEUED, 1);
	return true;
}

/* Where a key's touch starts probing the touch table. */
static inline uint32
touch_hash(const pg_uuid_t *key_id, Oid dbid)
{
	return hash_bytes(key_id->data, UUID_LEN) ^ hash_uint32(dbid);
}

/* Remember that a key was used now; never fails. */
static void
touch_note(const pg_uuid_t *key_id, TimestampTz at)
{
	uint32		h = touch_hash(key_id, MyDatabaseId);
	bool		done = false;
	int			i;

	LWLockAcquire(touch_lock, LW_EXCLUSIVE);
	for (i = 0; i < HK_TOUCH_PROBE; i++)
	{
		HkTouchSlot *s = &usage->touches[(h + i) % HK_TOUCH_SLOTS];

		if (s->dbid == MyDatabaseId && memcmp(&s->key_id, key_id, sizeof(pg_uuid_t)) == 0)
		{
			if (s->at < at)
				s->at = at;
			done = true;
			break;
		}
		if (!OidIsValid(s->dbid))
		{
			s->dbid = MyDatabaseId;
			s->key_id = *key_id;
			s->at = at;
			done = true;
			break;
		}
	}
	LWLockRelease(touch_lock);

	if (!done)
	{
		/* The probe window is full: send it through the ring. */
		HkUsageEvent ev;

		memset(&ev, 0, offsetof(HkUsageEvent, endpoint) + 1);
		ev.key_id = *key_id;
		ev.at = at;
		ev.dbid = MyDatabaseId;
		ev.response_time_ms = HK_EV_NONE;
		ev.status_code = HK_EV_NONE;
		if (!ring_put(&ev))
			hk_usage_stat_add(HK_USTAT_TOUCHES_DROPPED, 1);
	}
}

/*
 * A key was admitted at time now: queue an event (with endpoint) or note a
 * touch.
 */
void
hk_usage_note_valid(const pg_uuid_t *key_id, const text *endpoint,
					TimestampTz now)
{
	if (usage == NULL)
		return;
	if (endpoint != NULL)
	{
		char		buf[HK_USAGE_ENDPOINT_LEN];
		int			len;

		len = hk_usage_clean_endpoint(VARDATA_ANY(endpoint),
									  VARSIZE_ANY_EXHDR(endpoint), buf);
		/* A dropped event still marks the key as used. */
		if (!hk_usage_enqueue(key_id, now, buf, len, HK_EV_NONE, HK_EV_NONE) &&
			wanted_here())
			touch_note(key_id, now);
	}
	else if (wanted_here())
		touch_note(key_id, now);
}

/*
 * The worker has connected: publish its latch and database, and forget them
 * when it exits.
 */
void
hk_usage_worker_attach(void)
{
	LWLockAcquire(ring_lock, LW_EXCLUSIVE);
	usage->worker_latch = MyLatch;
	usage->worker_pid = MyProcPid;
	LWLockRelease(ring_lock);
	pg_atomic_write_u32(&usage->worker_dbid, MyDatabaseId);
	before_shmem_exit(worker_detach, (Datum) 0);
}

/*
 * The worker's database is missing: true the first time since the worker
 * last connected (say so then), false after that (stay quiet).
 */
bool
hk_usage_missing_db_first_report(void)
{
	uint32		expected = 0;

	return pg_atomic_compare_exchange_u32(&usage->missing_db_reported, &expected, 1);
}

/* Has the worker said its database is missing (and not connected since)? */
bool
hk_usage_missing_db_reported(void)
{
	return pg_atomic_read_u32(&usage->missing_db_reported) != 0;
}

/* The worker has connected: a database that goes missing later is said again. */
void
hk_usage_missing_db_clear(void)
{
	pg_atomic_write_u32(&usage->missing_db_reported, 0);
}

/* Copy up to max events from the tail, without consuming them. */
int
hk_usage_peek(HkUsageEvent *buf, int max)
{
	uint64		tail;
	uint64		n;
	uint64		i;

	LWLockAcquire(ring_lock, LW_SHARED);
	tail = usage->tail;
	n = usage->head - tail;
	LWLockRelease(ring_lock);

	if (n > (uint64) max)
		n = max;
	/* Slots in [tail, head) are written by nobody until tail moves. */
	for (i = 0; i < n; i++)
		memcpy(&buf[i], &usage->ring[(tail + i) % usage->capacity], sizeof(HkUsageEvent));
	return (int) n;
}

/* Consume n events that hk_usage_peek() returned. */
void
hk_usage_advance(int n)
{
	LWLockAcquire(ring_lock, LW_EXCLUSIVE);
	Assert(usage->tail + n <= usage->head);
	usage->tail += n;
	LWLockRelease(ring_lock);
}

/* Copy and clear the touch table; returns how many were copied. */
int
hk_usage_take_touches(HkUsageTouch *buf, int max)
{
	int			n = 0;
	int			i;

	LWLockAcquire(touch_lock, LW_EXCLUSIVE);
	for (i = 0; i < HK_TOUCH_SLOTS && n < max; i++)
	{
		HkTouchSlot *s = &usage->touches[i];

		if (!OidIsValid(s->dbid))
			continue;
		buf[n].dbid = s->dbid;
		buf[n].key_id = s->key_id;
		buf[n].at = s->at;
		n++;
		s->dbid = InvalidOid;
	}
	LWLockRelease(touch_lock);
	return n;
}

/* For shipping from a standby: the queue position of the event at the tail. */
uint64
hk_usage_tail_position(void)
{
	uint64		tail;

	LWLockAcquire(ring_lock, LW_SHARED);
	tail = usage->tail;
	LWLockRelease(ring_lock);
	return tail;
}

/* Note that a key was used at "at" (usage received from a standby). */
void
hk_usage_touch_at(const pg_uuid_t *key_id, TimestampTz at)
{
	if (usage != NULL && wanted_here())
		touch_note(key_id, at);
}

/* The database the worker writes to, InvalidOid before it has connected. */
Oid
hk_usage_worker_database(void)
{
	return usage == NULL ? InvalidOid : pg_atomic_read_u32(&usage->worker_dbid);
}
