/*-------------------------------------------------------------------------
 *
 * event_queue.c
 *	  The shared-memory queue of events raised on the request path, filled
 *	  by hk_event_note() and drained by the background worker, which writes
 *	  them to hokusai_auth.events (worker/events_step.c).  A request never
 *	  writes a table, never waits for the worker and never fails because of
 *	  an event.
 *
 * Layout.  One HkEventQueueShared struct: counters, a direct-mapped table
 * of the last note per (database, key, kind) for the kinds that have a
 * window, and a ring of HK_EVENT_QUEUE_SIZE notes.  head and tail are
 * positions that only grow; a note lives in ring[pos % HK_EVENT_QUEUE_SIZE].
 * When head - tail == HK_EVENT_QUEUE_SIZE the ring is full: a new note is
 * dropped and counted, never waited for.
 *
 * Windows.  rate_limit.exceeded is noted at most once per key per minute:
 * a note whose slot in the window table holds the same database, key and
 * kind less than HK_EVENT_WINDOW apart is counted as deduplicated and not
 * queued.  Two keys can share a slot, and then the table lets a second
 * note through: the worker enforces the rule exactly against the events
 * already written (hokusai_auth._events_from_notes()).  credits.low and
 * credits.exhausted have no window: the metering code notes them when a
 * balance crosses the threshold, once per crossing.
 *
 * Locking rules:
 *
 *	- queue_lock (exclusive) guards head, tail, the writing of the window
 *	  table and of a ring slot.  A producer takes it, checks the window,
 *	  checks for room, copies its note into ring[head], advances head and
 *	  releases: a few dozen bytes of copying, no allocation, no elog.
 *	- A window slot is also read without the lock first, so that a key
 *	  refused many times a second takes no lock for the repeats: each slot
 *	  has a change counter (a seqlock) that the writer, holding queue_lock,
 *	  makes odd before it writes the slot and even after (atomic adds, full
 *	  barriers); a reader that sees the same even value before and after
 *	  reading the slot read it whole, and otherwise takes the lock.
 *	- The worker is the only consumer.  It reads head and tail under the
 *	  lock (shared), then copies slots [tail, head) without it: producers
 *	  never write there until tail moves past them, and only the worker
 *	  moves tail (exclusive), after the transaction that wrote those notes
 *	  has committed.  An error in between leaves them queued for the next
 *	  cycle.
 *	- The counters are atomics and need no lock.
 *
 * The queue is server-wide; the worker writes the notes of its own
 * database (hokusai_auth.database) and discards the others, counted.  On a
 * hot standby the worker ships them to the primary instead, with their
 * positions (tail and head), which only grow while the server runs
 * (replica/ship_events.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "common/hashfn.h"
#include "miscadmin.h"
#include "port/atomics.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "events/event_queue.h"

#define HK_EVENT_QUEUE_TRANCHE	"hokusai_auth_event_queue"
#define HK_EVENT_WINDOW_SLOTS	4096
/* rate_limit.exceeded: at most one per key in this many microseconds. */
#define HK_EVENT_WINDOW			(60 * USECS_PER_SEC)

static const char *const kind_names[HK_NUM_EVENT_KINDS] = {
	[HK_EVENT_RATE_LIMIT_EXCEEDED] = "rate_limit.exceeded",
	[HK_EVENT_CREDITS_LOW] = "credits.low",
	[HK_EVENT_CREDITS_EXHAUSTED] = "credits.exhausted",
};

/* Does a kind have a window (see the banner)? */
static const bool kind_windowed[HK_NUM_EVENT_KINDS] = {
	[HK_EVENT_RATE_LIMIT_EXCEEDED] = true,
};

typedef struct HkWindowSlot
{
	pg_atomic_uint32 changes;	/* odd while being written (see the banner) */
	pg_uuid_t	key_id;
	TimestampTz at;
	Oid			dbid;			/* InvalidOid: free */
	uint8		kind;
} HkWindowSlot;

typedef struct HkEventQueueShared
{
	uint64		head;			/* queue_lock */
	uint64		tail;			/* queue_lock; moved only by the worker */
	pg_atomic_uint64 stats[HK_NUM_ESTATS];
	HkWindowSlot window[HK_EVENT_WINDOW_SLOTS]; /* queue_lock */
	HkEventNote ring[HK_EVENT_QUEUE_SIZE];
} HkEventQueueShared;

static HkEventQueueShared *queue = NULL;
static LWLock *queue_lock = NULL;

/* From shmem_request_hook. */
void
hk_event_queue_shmem_request(void)
{
	RequestAddinShmemSpace(sizeof(HkEventQueueShared));
	RequestNamedLWLockTranche(HK_EVENT_QUEUE_TRANCHE, 1);
}

/* Called with AddinShmemInitLock held. */
void
hk_event_queue_shmem_startup(void)
{
	bool		found;
	int			i;

	queue = ShmemInitStruct("hokusai_auth event queue", sizeof(HkEventQueueShared), &found);
	queue_lock = &(GetNamedLWLockTranche(HK_EVENT_QUEUE_TRANCHE))->lock;
	if (found)
		return;
	memset(queue, 0, sizeof(HkEventQueueShared));
	for (i = 0; i < HK_NUM_ESTATS; i++)
		pg_atomic_init_u64(&queue->stats[i], 0);
	for (i = 0; i < HK_EVENT_WINDOW_SLOTS; i++)
		pg_atomic_init_u32(&queue->window[i].changes, 0);
}

const char *
hk_event_kind_name(HkEventKind kind)
{
	Assert(kind >= 0 && kind < HK_NUM_EVENT_KINDS);
	return kind_names[kind];
}

/* Add n to a counter; nothing happens without shared memory. */
void
hk_event_stat_add(HkEventStat which, uint64 n)
{
	if (queue != NULL && n > 0)
		pg_atomic_fetch_add_u64(&queue->stats[which], n);
}

/* Does the window slot hold this key's note of this kind from the last minute? */
static inline bool
window_holds(const HkWindowSlot *slot, HkEventKind kind, const pg_uuid_t *key_id,
			 TimestampTz now)
{
	return slot->dbid == MyDatabaseId && slot->kind == kind &&
		memcmp(&slot->key_id, key_id, sizeof(pg_uuid_t)) == 0 &&
		now - slot->at < HK_EVENT_WINDOW && now >= slot->at;
}

/* The same without the lock: false when a writer was busy with the slot. */
static bool
window_holds_unlocked(HkWindowSlot *slot, HkEventKind kind, const pg_uuid_t *key_id,
					  TimestampTz now)
{
	uint32		before = pg_atomic_read_u32(&slot->changes);
	bool		held;

	if (before & 1)
		return false;
	pg_read_barrier();
	held = window_holds(slot, kind, key_id, now);
	pg_read_barrier();
	return held && pg_atomic_read_u32(&slot->changes) == before;
}

/* Note an event (see event_queue.h and the banner). */
void
hk_event_note(HkEventKind kind, const pg_uuid_t *key_id,
			  const pg_uuid_t *user_id, int64 value)
{
	TimestampTz now;
	HkWindowSlot *slot = NULL;
	HkEventNote *note;
	HkEventStat outcome = HK_ESTAT_NOTED;

	if (queue == NULL || kind < 0 || kind >= HK_NUM_EVENT_KINDS)
		return;
	now = GetCurrentTimestamp();
	if (kind_windowed[kind])
	{
		uint32		h = hash_bytes(key_id->data, UUID_LEN) ^
		hash_uint32(MyDatabaseId) ^ hash_uint32((uint32) kind);

		slot = &queue->window[h % HK_EVENT_WINDOW_SLOTS];
		/* A refused key is refused again and again: no lock for the repeats. */
		if (window_holds_unlocked(slot, kind, key_id, now))
		{
			pg_atomic_fetch_add_u64(&queue->stats[HK_ESTAT_DEDUPLICATED], 1);
			return;
		}
	}

	LWLockAcquire(queue_lock, LW_EXCLUSIVE);
	if (slot != NULL && window_holds(slot, kind, key_id, now))
		outcome = HK_ESTAT_DEDUPLICATED;
	if (outcome == HK_ESTAT_NOTED && queue->head - queue->tail >= HK_EVENT_QUEUE_SIZE)
		outcome = HK_ESTAT_DROPPED;
	if (outcome == HK_ESTAT_NOTED)
	{
		note = &queue->ring[queue->head % HK_EVENT_QUEUE_SIZE];
		note->key_id = *key_id;
		if (user_id != NULL)
			note->user_id = *user_id;
		else
			memset(&note->user_id, 0, sizeof(pg_uuid_t));
		note->at = now;
		note->value = value;
		note->dbid = MyDatabaseId;
		note->kind = (uint8) kind;
		queue->head++;
		/* Only a queued note starts a window: a dropped one may come again. */
		if (slot != NULL)
		{
			pg_atomic_fetch_add_u32(&slot->changes, 1);	/* odd: being written */
			slot->key_id = *key_id;
			slot->at = now;
			slot->dbid = MyDatabaseId;
			slot->kind = (uint8) kind;
			pg_atomic_fetch_add_u32(&slot->changes, 1);	/* even: done */
		}
	}
	LWLockRelease(queue_lock);

	pg_atomic_fetch_add_u64(&queue->stats[outcome], 1);
}

/* Copy up to max notes from the tail, without consuming them. */
int
hk_event_queue_peek(HkEventNote *buf, int max)
{
	uint64		tail;
	uint64		n;
	uint64		i;

	LWLockAcquire(queue_lock, LW_SHARED);
	tail = queue->tail;
	n = queue->head - tail;
	LWLockRelease(queue_lock);

	if (n > (uint64) max)
		n = max;
	/* Slots in [tail, head) are written by nobody until tail moves. */
	for (i = 0; i < n; i++)
		memcpy(&buf[i], &queue->ring[(tail + i) % HK_EVENT_QUEUE_SIZE], sizeof(HkEventNote));
	return (int) n;
}

/* Consume n notes that hk_event_queue_peek() returned. */
void
hk_event_queue_advance(int n)
{
	LWLockAcquire(queue_lock, LW_EXCLUSIVE);
	Assert(queue->tail + n <= queue->head);
	queue->tail += n;
	LWLockRelease(queue_lock);
}

/* The position of the oldest note queued (of the next one when none is). */
uint64
hk_event_queue_tail_position(void)
{
	uint64		tail;

	LWLockAcquire(queue_lock, LW_SHARED);
	tail = queue->tail;
	LWLockRelease(queue_lock);
	return tail;
}

/* Capacity, notes waiting, and the counters (HK_NUM_ESTATS of them). */
void
hk_event_queue_state(uint32 *capacity, uint64 *queued, uint64 *stats)
{
	int			i;

	LWLockAcquire(queue_lock, LW_SHARED);
	*capacity = HK_EVENT_QUEUE_SIZE;
	*queued = queue->head - queue->tail;
	LWLockRelease(queue_lock);
	for (i = 0; i < HK_NUM_ESTATS; i++)
		stats[i] = pg_atomic_read_u64(&queue->stats[i]);
}
