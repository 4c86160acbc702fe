/*-------------------------------------------------------------------------
 *
 * event_queue.h
 *	  Events raised on the request path (rate_limit.exceeded, and for the
 *	  metering code credits.low and credits.exhausted): noted in shared
 *	  memory, never waited for, written to hokusai_auth.events by the
 *	  background worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_EVENTS_EVENT_QUEUE_H
#define HK_EVENTS_EVENT_QUEUE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/uuid.h"

/* What happened; the names are the events' kinds (hk_event_kind_name()). */
typedef enum HkEventKind
{
	HK_EVENT_RATE_LIMIT_EXCEEDED,	/* value: retry_after, seconds */
	HK_EVENT_CREDITS_LOW,		/* value: credits left */
	HK_EVENT_CREDITS_EXHAUSTED, /* value: credits left */
	HK_NUM_EVENT_KINDS
} HkEventKind;

/* One noted event, as the worker receives it. */
typedef struct HkEventNote
{
	pg_uuid_t	key_id;
	pg_uuid_t	user_id;
	TimestampTz at;
	int64		value;
	Oid			dbid;
	uint8		kind;			/* HkEventKind */
} HkEventNote;

/* Notes the queue holds; when it is full new ones are dropped and counted. */
#define HK_EVENT_QUEUE_SIZE		4096

/* Counters, in the column order of hokusai_auth.event_queue_stats(). */
typedef enum HkEventStat
{
	HK_ESTAT_NOTED,				/* put in the queue */
	HK_ESTAT_DEDUPLICATED,		/* not queued: the same key and kind within its window */
	HK_ESTAT_DROPPED,			/* not queued: the queue was full */
	HK_ESTAT_WRITTEN,			/* events the worker wrote */
	HK_ESTAT_DISCARDED,			/* notes the worker did not write (another database,
								 * a key that is gone, a duplicate within the window) */
	HK_NUM_ESTATS
} HkEventStat;

extern void hk_event_queue_shmem_request(void);
extern void hk_event_queue_shmem_startup(void);

/*
 * Note that something happened to a key, for the worker to write as an
 * event (see event_queue.c for the rules).  Safe on the hot path: no
 * allocation, no error, no waiting beyond a short LWLock; does nothing
 * without shared memory.  rate_limit.exceeded is noted at most once per
 * key per minute; the other kinds every time (call them at the crossing).
 */
extern void hk_event_note(HkEventKind kind, const pg_uuid_t *key_id,
						  const pg_uuid_t *user_id, int64 value);

extern const char *hk_event_kind_name(HkEventKind kind);

/*
 * For the worker (the only consumer): see hk_usage_peek_refs() and
 * hk_usage_advance() for the protocol.
 * Positions only grow while the server runs; a standby's worker ships the
 * notes with them (replica/ship_events.c).
 */
extern int	hk_event_queue_peek(HkEventNote *buf, int max);
extern void hk_event_queue_advance(int n);
extern uint64 hk_event_queue_tail_position(void);

extern void hk_event_stat_add(HkEventStat which, uint64 n);
extern void hk_event_queue_state(uint32 *capacity, uint64 *queued,
								 uint64 *stats);

#endif							/* HK_EVENTS_EVENT_QUEUE_H */
