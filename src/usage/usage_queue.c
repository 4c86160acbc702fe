/*-------------------------------------------------------------------------
 *
 * usage_queue.c
 *	  The shared-memory queue of usage events and the table of last_used_at
 *	  touches, filled on the request path and drained by the background
 *	  worker (worker/worker.c).
 *
 * Layout.  One HkUsageShared struct (positions, counters), then the ring
 * of hokusai_auth.usage_queue_size slots (HkRingSlot: a sequence number and
 * a 168-byte HkUsageEvent, padded to 192 bytes, whole cache lines; the
 * endpoint is cut to HK_USAGE_ENDPOINT_LEN - 1 bytes at a character
 * boundary), then the touch table.  head and tail are
 * positions that only grow; the event at position pos lives in
 * ring[pos % capacity].  The ring is full when head - tail == capacity: a
 * new event is then dropped and counted, never waited for.
 *
 * The ring (a bounded multi-producer, single-consumer queue).  Each slot
 * carries seq, a position that only grows and says what the slot holds:
 *
 *	seq == pos			free for the producer of position pos
 *	seq == pos + 1		the event of position pos, published
 *	seq == pos + capacity	consumed: free for position pos + capacity
 *
 * A producer reads head (pos) and the seq of ring[pos % capacity]:
 *	- seq == pos: it tries to move head from pos to pos + 1 with a
 *	  compare-and-swap.  The one that succeeds owns the slot; the others
 *	  try again at the head they read back.  It writes its event straight
 *	  into the slot (the endpoint is cleaned into the slot, no copy on the
 *	  stack), issues a write barrier and sets seq = pos + 1 (published).
 *	- seq < pos: the slot still holds the event of position
 *	  pos - capacity (published or still being written), which the worker
 *	  has not consumed: the ring is full, the event is dropped.  (seq only
 *	  grows, and someone reserving pos would have seen seq == pos, so head
 *	  is still pos: the ring really was full when seq was read.)
 *	- seq > pos: position pos was taken meanwhile; read head again.
 * Between reserving and publishing a producer runs only plain stores and
 * the endpoint cleaning (hk_usage_clean_endpoint(), which cannot fail): no
 * allocation, no elog, no CHECK_FOR_INTERRUPTS.  A slot reserved and never
 * published would stop the consumer at it for good.
 *
 * The worker is the only consumer (flush, and on a standby the shipping and
 * the promotion step, all in the worker process); it alone writes tail.
 * hk_usage_peek_refs() (the flush and the shipping) returns pointers to the
 * events in their slots, from tail on while their seq says published
 * (pos + 1), with a read barrier between reading seq and reading the
 * events, and stops at the first that is not: an event reserved later but
 * published earlier waits for the one before it, so positions stay in
 * order and without gaps.  The pointers stay valid: no producer writes a
 * slot before the consumer has handed it back.
 * hk_usage_advance(), called after the transaction that wrote those events
 * has committed, issues a full barrier (the worker's reads of the slots are
 * done), moves tail, issues a write barrier and only then sets each
 * consumed slot's seq = pos + capacity: a producer that sees a slot free
 * therefore also sees the new tail, so head - tail never exceeds capacity.
 * (On promotion it may consume events never peeked: it waits for each to
 * be published first, a few stores away, so that no producer still writes
 * a slot it hands back.)  An error in the worker loses
 * nothing: it catches it and reads the same events again in its next
 * cycle (after HK_MAX_RETRIES failed cycles it drops the batch and counts
 * it as failed; see worker/flush.c).
 *
 * head is on a cache line of its own (every producer writes it), tail and
 * the wake flag on another (written once per batch); a producer writes
 * only head, its own slot and its backend-local counters.
 *
 * Waking the worker.  A producer that has published reads tail; when the
 * ring holds a quarter of its capacity or more and the wake flag is clear,
 * the one that sets the flag (an atomic exchange) wakes the worker, so a
 * burst is written at once rather than at the next interval.  The worker
 * clears the flag when it consumes (hk_usage_advance) and when it
 * attaches: the next time the ring reaches a quarter it is woken again.
 *
 * Touches.  A validation without an endpoint only records that the key was
 * used.  Such touches go to an open-addressed table, keyed by database and
 * key id, keeping the latest time, so a key takes one slot however often it
 * is used.  It has the next power of two at least 2 x
 * hokusai_auth.cache_size slots (at least 4096), so the keys one flush
 * sees fit at a load of at most a half; it is split into
 * HK_TOUCH_PARTITIONS partitions, each with its own lock and count of used
 * slots, and a key probes at most HK_TOUCH_PROBE slots within its
 * partition.  Each partition also lists the indexes of its used slots, so
 * that the worker visits only those, not the whole table.  When that
 * window is full the touch goes into the ring as an event without
 * endpoint.  The worker derives touches from usage events
 * too, and applies all of them as one UPDATE per key per flush.
 *
 * Locking rules:
 *
 *	- The ring has no lock on the request path (see above).
 *	- ring_lock guards only the worker's latch and pid: exclusive to attach
 *	  and detach, shared to read them (the producer that wakes the worker,
 *	  hk_usage_queue_state()).
 *	- touch_locks[p] (exclusive) guards partition p of the touch table, its
 *	  count and its used-slot list; producers hold it to probe at most
 *	  HK_TOUCH_PROBE slots, the worker to copy and clear at most
 *	  HK_TOUCH_TAKE_CHUNK used slots of that partition at a time.  A backend holds at
 *	  most one of these locks at a time.
 *	- No lock is held together with another or across anything that can
 *	  raise an ERROR.
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
#include "miscadmin.h"
#include "port/atomics.h"
#include "port/pg_bitutils.h"
#include "storage/ipc.h"
#include "storage/latch.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "usage/endpoint.h"
#include "usage/usage_queue.h"
#include "validate/stats.h"

#define HK_USAGE_TRANCHE	"hokusai_auth_usage"
#define HK_TOUCH_TAKE_CHUNK	256
#define HK_TOUCH_PROBE		16
#define HK_TOUCH_PARTITIONS	16
#define HK_TOUCH_MIN_SLOTS	4096

StaticAssertDecl(sizeof(HkUsageEvent) <= 168, "usage event must fit in 168 bytes");

/*
 * One place in the ring: see the banner for what seq says.  Padded to whole
 * cache lines, so that producers writing neighbouring slots at the same
 * time do not share one.
 */
#define HK_RING_SLOT_SIZE	192

typedef struct HkRingSlot
{
	pg_atomic_uint64 seq;
	HkUsageEvent ev;
	char		pad[HK_RING_SLOT_SIZE - sizeof(pg_atomic_uint64) - sizeof(HkUsageEvent)];
} HkRingSlot;

StaticAssertDecl(sizeof(HkRingSlot) == HK_RING_SLOT_SIZE &&
				 HK_RING_SLOT_SIZE % 64 == 0, "a ring slot is whole cache lines");

typedef struct HkTouchSlot
{
	pg_uuid_t	key_id;
	Oid			dbid;			/* InvalidOid: free */
	TimestampTz at;
} HkTouchSlot;

/*
 * A partition of the touch table: how many of its slots are used (under
 * its lock); their indexes are the first "used" entries of the
 * partition's part of the used-slot list.
 */
typedef union HkTouchPart
{
	uint32		used;
	char		pad[PG_CACHE_LINE_SIZE];
} HkTouchPart;

typedef struct HkUsageShared
{
	/* Written by every producer: a cache line of its own. */
	union
	{
		pg_atomic_uint64 head;
		char		pad[PG_CACHE_LINE_SIZE];
	}			h;
	/* Written by the worker, once per batch. */
	union
	{
		struct
		{
			pg_atomic_uint64 tail;
			pg_atomic_uint32 wake_sent; /* 1: woken, not consumed since */
		}			t;
		char		pad[PG_CACHE_LINE_SIZE];
	}			t;
	/* Written when set up, or rarely. */
	uint32		capacity;
	uint32		touch_slots;	/* a power of two */
	Latch	   *worker_latch;	/* ring_lock; NULL when no worker */
	int			worker_pid;		/* ring_lock */
	pg_atomic_uint32 worker_dbid;	/* InvalidOid until the worker connects */
	pg_atomic_uint32 missing_db_reported;	/* 1: the worker said its database is missing */
	/* The worker's counters: off the line above, which producers read. */
	char		pad[PG_CACHE_LINE_SIZE];
	pg_atomic_uint64 stats[HK_NUM_USTATS];
	HkTouchPart touch_parts[HK_TOUCH_PARTITIONS];
	/* then the ring, at ring_offset(), and the touch table, at touch_offset() */
} HkUsageShared;

#define head_pos	h.head
#define tail_pos	t.t.tail
#define wake_flag	t.t.wake_sent

static HkUsageShared *usage = NULL;
static HkRingSlot *ring = NULL;
static HkTouchSlot *touches = NULL;
static uint32 *touch_used = NULL;	/* per partition, its used slots' indexes */
static LWLock *ring_lock = NULL;
static LWLock *touch_locks[HK_TOUCH_PARTITIONS];

/* Slots of the touch table: 2 x cache_size rounded up to a power of two. */
static uint32
touch_slot_count(void)
{
	uint64		want = Max((uint64) hk_cache_size * 2, HK_TOUCH_MIN_SLOTS);

	return (uint32) pg_nextpower2_64(want);
}

/* Where the ring starts, from the struct: on a cache line. */
static Size
ring_offset(void)
{
	return CACHELINEALIGN(sizeof(HkUsageShared));
}

/* Where the touch table starts, from the struct. */
static Size
touch_offset(void)
{
	return MAXALIGN(add_size(ring_offset(),
							 mul_size(hk_usage_queue_size, sizeof(HkRingSlot))));
}

/* Where the used-slot list starts, after the touch table. */
static Size
touch_used_offset(void)
{
	return MAXALIGN(add_size(touch_offset(),
							 mul_size(touch_slot_count(), sizeof(HkTouchSlot))));
}

/*
 * Bytes of main shared memory the queue takes: struct, ring, touch table
 * and its used-slot list.
 */
Size
hk_usage_shmem_size(void)
{
	return add_size(touch_used_offset(),
					mul_size(touch_slot_count(), sizeof(uint32)));
}

/* From shmem_request_hook: the queue and its locks. */
void
hk_usage_shmem_request(void)
{
	RequestAddinShmemSpace(hk_usage_shmem_size());
	RequestNamedLWLockTranche(HK_USAGE_TRANCHE, 1 + HK_TOUCH_PARTITIONS);
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
	uint32		i;

	usage = ShmemInitStruct("hokusai_auth usage queue", hk_usage_shmem_size(), &found);
	locks = GetNamedLWLockTranche(HK_USAGE_TRANCHE);
	ring_lock = &locks[0].lock;
	for (i = 0; i < HK_TOUCH_PARTITIONS; i++)
		touch_locks[i] = &locks[1 + i].lock;
	ring = (HkRingSlot *) ((char *) usage + ring_offset());
	touches = (HkTouchSlot *) ((char *) usage + touch_offset());
	touch_used = (uint32 *) ((char *) usage + touch_used_offset());
	if (found)
		return;

	memset(usage, 0, sizeof(HkUsageShared));
	usage->capacity = hk_usage_queue_size;
	usage->touch_slots = touch_slot_count();
	pg_atomic_init_u64(&usage->head_pos, 0);
	pg_atomic_init_u64(&usage->tail_pos, 0);
	pg_atomic_init_u32(&usage->wake_flag, 0);
	pg_atomic_init_u32(&usage->worker_dbid, InvalidOid);
	pg_atomic_init_u32(&usage->missing_db_reported, 0);
	for (i = 0; i < HK_NUM_USTATS; i++)
		pg_atomic_init_u64(&usage->stats[i], 0);
	pg_atomic_write_u64(&usage->stats[HK_USTAT_RESET_AT], (uint64) GetCurrentTimestamp());
	/* Every slot free for its first position. */
	for (i = 0; i < usage->capacity; i++)
		pg_atomic_init_u64(&ring[i].seq, i);
	memset(touches, 0, sizeof(HkTouchSlot) * (Size) usage->touch_slots);
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

/*
 * Events in the ring (reserved or published, not consumed): head - tail
 * read at one moment, tail read again until it did not move meanwhile.
 */
static uint64
ring_used(void)
{
	uint64		tail;
	uint64		head;

	tail = pg_atomic_read_u64(&usage->tail_pos);
	for (;;)
	{
		uint64		again;

		pg_read_barrier();
		head = pg_atomic_read_u64(&usage->head_pos);
		pg_read_barrier();
		again = pg_atomic_read_u64(&usage->tail_pos);
		if (again == tail)
			break;
		tail = again;
	}
	return head > tail ? Min(head - tail, (uint64) usage->capacity) : 0;
}

/* The ring's capacity and fill, and the worker's pid (0: none). */
void
hk_usage_queue_state(uint32 *capacity, uint64 *queued, int *worker_pid)
{
	*capacity = usage->capacity;
	*queued = ring_used();
	LWLockAcquire(ring_lock, LW_SHARED);
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

/*
 * Reserve the slot at head for an event: NULL when the ring is full.  The
 * caller writes the event into the returned slot and hands it to
 * ring_publish(pos) without raising an error in between.
 */
static inline HkRingSlot *
ring_reserve(uint64 *posp)
{
	uint64		pos = pg_atomic_read_u64(&usage->head_pos);

	for (;;)
	{
		HkRingSlot *slot = &ring[pos % usage->capacity];
		uint64		seq = pg_atomic_read_u64(&slot->seq);

		if (seq == pos)
		{
			/* Free: take it if head is still pos (a full barrier). */
			if (pg_atomic_compare_exchange_u64(&usage->head_pos, &pos, pos + 1))
			{
				*posp = pos;
				return slot;
			}
			/* Taken by another producer: pos is now the head read back. */
		}
		else if (seq < pos)
			return NULL;		/* not consumed since the last lap: full */
		else
			pos = pg_atomic_read_u64(&usage->head_pos);
	}
}

/* Wake the worker, if there is one. */
static void
wake_worker(void)
{
	Latch	   *latch;

	LWLockAcquire(ring_lock, LW_SHARED);
	latch = usage->worker_latch;
	LWLockRelease(ring_lock);
	if (latch != NULL)
		SetLatch(latch);
}

/*
 * The event of position pos is written: publish it, and wake the worker
 * when the ring holds a quarter of its capacity (see the banner).
 */
static inline void
ring_publish(HkRingSlot *slot, uint64 pos)
{
	uint64		used;

	pg_write_barrier();
	pg_atomic_write_u64(&slot->seq, pos + 1);

	used = pos + 1 - Min(pg_atomic_read_u64(&usage->tail_pos), pos + 1);
	if (used >= Max(usage->capacity / 4, 1) &&
		pg_atomic_read_u32(&usage->wake_flag) == 0 &&
		pg_atomic_exchange_u32(&usage->wake_flag, 1) == 0)
		wake_worker();
}

/*
 * Reserve a slot and write the fields of its event before the endpoint;
 * NULL when the ring is full.  The caller writes the endpoint and calls
 * ring_finish(), with nothing that can fail in between.
 */
static inline HkRingSlot *
ring_begin(uint64 *posp, const pg_uuid_t *key_id, TimestampTz at,
		   uint8 flags, int32 response_time_ms, int32 status_code)
{
	HkRingSlot *slot = ring_reserve(posp);

	if (slot == NULL)
		return NULL;
	slot->ev.key_id = *key_id;
	slot->ev.at = at;
	slot->ev.dbid = MyDatabaseId;
	slot->ev.response_time_ms = response_time_ms;
	slot->ev.status_code = (int16) status_code;
	slot->ev.flags = flags;
	return slot;
}

/* The endpoint (endpoint_len bytes) is in the slot: end it and publish. */
static inline void
ring_finish(HkRingSlot *slot, uint64 pos, int endpoint_len)
{
	slot->ev.endpoint_len = (uint8) endpoint_len;
	slot->ev.endpoint[endpoint_len] = '\0';
	ring_publish(slot, pos);
}

/* Queue one usage event (see usage_queue.h); false when it was dropped. */
bool
hk_usage_enqueue(const pg_uuid_t *key_id, TimestampTz at,
				 const char *endpoint, int endpoint_len,
				 int32 response_time_ms, int32 status_code)
{
	HkRingSlot *slot;
	uint64		pos;

	if (usage == NULL)
		return false;
	if (!wanted_here())
	{
		hk_usage_stat_add(HK_USTAT_OTHER_DB, 1);
		return false;
	}

	slot = ring_begin(&pos, key_id, at,
					  endpoint != NULL ? HK_EV_USAGE | HK_EV_HAS_ENDPOINT : HK_EV_USAGE,
					  response_time_ms, status_code);
	if (slot == NULL)
	{
		hk_usage_stat_add(HK_USTAT_DROPPED, 1);
		return false;
	}
	if (endpoint == NULL)
		endpoint_len = 0;
	else
	{
		Assert(endpoint_len >= 0 && endpoint_len < HK_USAGE_ENDPOINT_LEN);
		memcpy(slot->ev.endpoint, endpoint, endpoint_len);
	}
	ring_finish(slot, pos, endpoint_len);

	hk_stat_add(HK_STAT_USAGE_ENQUEUED);	/* HK_USTAT_ENQUEUED, straight */
	return true;
}

/*
 * Queue a validation's event, its endpoint cleaned straight into the slot;
 * false when the ring is full.
 */
static bool
enqueue_validation(const pg_uuid_t *key_id, const text *endpoint, TimestampTz now)
{
	HkRingSlot *slot;
	uint64		pos;

	slot = ring_begin(&pos, key_id, now, HK_EV_USAGE | HK_EV_HAS_ENDPOINT,
					  HK_EV_NONE, HK_EV_NONE);
	if (slot == NULL)
	{
		hk_usage_stat_add(HK_USTAT_DROPPED, 1);
		return false;
	}
	/* Reserved: hk_usage_clean_endpoint() cannot fail. */
	ring_finish(slot, pos,
				hk_usage_clean_endpoint(VARDATA_ANY(endpoint), VARSIZE_ANY_EXHDR(endpoint),
										slot->ev.endpoint));

	hk_stat_add(HK_STAT_USAGE_ENQUEUED);	/* HK_USTAT_ENQUEUED, straight */
	return true;
}

/* Where a key's touch goes: the partition in the low bits, then the slot. */
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
	uint32		part = h % HK_TOUCH_PARTITIONS;
	uint32		per_part = usage->touch_slots / HK_TOUCH_PARTITIONS;
	HkTouchSlot *base = &touches[part * per_part];
	uint32		start = h / HK_TOUCH_PARTITIONS;
	bool		done = false;
	int			i;

	LWLockAcquire(touch_locks[part], LW_EXCLUSIVE);
	for (i = 0; i < HK_TOUCH_PROBE; i++)
	{
		HkTouchSlot *s = &base[(start + i) & (per_part - 1)];

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
			touch_used[part * per_part + usage->touch_parts[part].used++] =
				(start + i) & (per_part - 1);
			done = true;
			break;
		}
	}
	LWLockRelease(touch_locks[part]);

	if (!done)
	{
		/* The probe window is full: send it through the ring. */
		HkRingSlot *slot;
		uint64		pos;

		slot = ring_begin(&pos, key_id, at, 0, HK_EV_NONE, HK_EV_NONE);
		if (slot == NULL)
			hk_usage_stat_add(HK_USTAT_TOUCHES_DROPPED, 1);
		else
			ring_finish(slot, pos, 0);
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
	if (!wanted_here())
	{
		if (endpoint != NULL)
			hk_usage_stat_add(HK_USTAT_OTHER_DB, 1);
		return;
	}
	/* A dropped event still marks the key as used. */
	if (endpoint == NULL || !enqueue_validation(key_id, endpoint, now))
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
	pg_atomic_write_u32(&usage->wake_flag, 0);
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

/*
 * Pointers to up to max published events from the tail, in order, without
 * consuming them (it stops at the first slot not yet published).  A slot
 * is not written again until hk_usage_advance() hands it back, so they stay
 * valid until then (for the worker, the only consumer).
 */
int
hk_usage_peek_refs(HkUsageEvent **refs, int max)
{
	uint64		tail = pg_atomic_read_u64(&usage->tail_pos);
	uint32		idx = (uint32) (tail % usage->capacity);
	int			n;

	for (n = 0; n < max; n++)
	{
		HkRingSlot *slot = &ring[idx];

		if (pg_atomic_read_u64(&slot->seq) != tail + n + 1)
			break;
		refs[n] = &slot->ev;
		if (++idx == usage->capacity)
			idx = 0;
	}
	/* The events are read after their seq. */
	pg_read_barrier();
	return n;
}

/*
 * Consume n events from the tail (after hk_usage_peek_refs() returned them, or
 * on promotion, events another server took).  A slot reserved but not yet
 * published is waited for: its producer is a few stores away from
 * publishing it, and it must not be handed back meanwhile.
 */
void
hk_usage_advance(int n)
{
	uint64		tail = pg_atomic_read_u64(&usage->tail_pos);
	uint32		first = (uint32) (tail % usage->capacity);
	uint32		idx;
	int			i;

	Assert(tail + n <= pg_atomic_read_u64(&usage->head_pos));
	for (i = 0, idx = first; i < n; i++)
	{
		while (pg_atomic_read_u64(&ring[idx].seq) != tail + i + 1)
			pg_spin_delay();
		if (++idx == usage->capacity)
			idx = 0;
	}
	/* The slots are read; tail moves before they are handed back. */
	pg_memory_barrier();
	pg_atomic_write_u64(&usage->tail_pos, tail + n);
	pg_write_barrier();
	for (i = 0, idx = first; i < n; i++)
	{
		pg_atomic_write_u64(&ring[idx].seq, tail + i + usage->capacity);
		if (++idx == usage->capacity)
			idx = 0;
	}
	pg_atomic_write_u32(&usage->wake_flag, 0);
}

/*
 * Copy and clear the touch table, a partition at a time; returns how many
 * were copied (at most max).
 * Only the used slots are visited (the partition's used-slot list, from its
 * end), and a partition's lock is held for at most HK_TOUCH_TAKE_CHUNK
 * slots at a time, so that a partition of many used slots does not keep
 * the request path waiting while it is copied.
 */
static int
take_touches(HkUsageTouch *buf, int max)
{
	uint32		per_part = usage->touch_slots / HK_TOUCH_PARTITIONS;
	int			n = 0;
	int			part;

	for (part = 0; part < HK_TOUCH_PARTITIONS && n < max; part++)
	{
		HkTouchSlot *base = &touches[part * per_part];
		uint32	   *list = &touch_used[part * per_part];
		bool		more = true;

		while (more && n < max)
		{
			int			chunk = 0;

			LWLockAcquire(touch_locks[part], LW_EXCLUSIVE);
			while (usage->touch_parts[part].used > 0 && n < max &&
				   chunk < HK_TOUCH_TAKE_CHUNK)
			{
				HkTouchSlot *s = &base[list[--usage->touch_parts[part].used]];

				Assert(OidIsValid(s->dbid));
				buf[n].dbid = s->dbid;
				buf[n].key_id = s->key_id;
				buf[n].at = s->at;
				n++;
				chunk++;
				s->dbid = InvalidOid;
			}
			more = usage->touch_parts[part].used > 0;
			LWLockRelease(touch_locks[part]);
		}
	}
	return n;
}

/*
 * Take the whole touch table, HK_USAGE_TOUCH_CHUNK entries at a time, and
 * hand each chunk's touches of this backend's database (the worker's: those
 * of another database were made before it connected, and are dropped) to fn
 * with no lock held (fn may raise an ERROR: the chunk's touches are then
 * lost, as a crash would lose them).  The buffer is one chunk, whatever the
 * table's size (2 x cache_size slots).  Touches made meanwhile are taken
 * too, up to the table's size in all: the rest wait for the next call.
 */
void
hk_usage_drain_touches(void (*fn) (const HkUsageTouch *touches, int n, void *arg),
					   void *arg)
{
	static HkUsageTouch *buf = NULL;
	int64		left = usage->touch_slots;

	if (buf == NULL)
		buf = MemoryContextAlloc(TopMemoryContext,
								 sizeof(HkUsageTouch) * HK_USAGE_TOUCH_CHUNK);
	while (left > 0)
	{
		int			n = take_touches(buf, HK_USAGE_TOUCH_CHUNK);
		int			mine = 0;
		int			i;

		for (i = 0; i < n; i++)
			if (buf[i].dbid == MyDatabaseId)
				buf[mine++] = buf[i];
		if (mine > 0)
			fn(buf, mine, arg);
		if (n < HK_USAGE_TOUCH_CHUNK)
			break;
		left -= n;
	}
}

/* For shipping from a standby: the queue position of the event at the tail. */
uint64
hk_usage_tail_position(void)
{
	return pg_atomic_read_u64(&usage->tail_pos);
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
