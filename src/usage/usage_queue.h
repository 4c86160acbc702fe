/*-------------------------------------------------------------------------
 *
 * usage_queue.h
 *	  The shared-memory queue of usage events, drained by the worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_USAGE_QUEUE_H
#define HK_USAGE_QUEUE_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "storage/latch.h"
#include "utils/uuid.h"

/* Bytes of endpoint kept per event, including the terminating NUL. */
#define HK_USAGE_ENDPOINT_LEN	128

/* Event flags */
#define HK_EV_USAGE			0x01	/* a usage event; without it only a touch */
#define HK_EV_HAS_ENDPOINT	0x02	/* endpoint is not NULL */

/* Absent response time or status code. */
#define HK_EV_NONE			(-1)

typedef struct HkUsageEvent
{
	pg_uuid_t	key_id;
	TimestampTz at;
	Oid			dbid;
	int32		response_time_ms;	/* HK_EV_NONE when unknown */
	int16		status_code;	/* HK_EV_NONE when unknown */
	uint8		flags;
	uint8		endpoint_len;	/* bytes, without the NUL */
	char		endpoint[HK_USAGE_ENDPOINT_LEN];
} HkUsageEvent;

/* A last_used_at touch, as the worker receives it. */
typedef struct HkUsageTouch
{
	Oid			dbid;
	pg_uuid_t	key_id;
	TimestampTz at;
} HkUsageTouch;

/*
 * Counters, shown by hokusai_auth.usage_queue_stats(); ENQUEUED to
 * KEYS_EXPIRED are in its column order, AGGREGATED and LATE_DISCARDED its
 * last two columns.
 */
typedef enum HkUsageStat
{
	HK_USTAT_ENQUEUED,			/* events put in the queue */
	HK_USTAT_DROPPED,			/* events refused: queue full */
	HK_USTAT_OTHER_DB,			/* events refused: not the worker's database */
	HK_USTAT_TOUCHES_DROPPED,	/* touches lost: table and queue full */
	HK_USTAT_FLUSHED,			/* raw rows written to api_key_usage */
	HK_USTAT_DISCARDED,			/* events whose key no longer exists */
	HK_USTAT_FAILED,			/* events lost to a failed flush */
	HK_USTAT_FLUSHES,			/* batches committed */
	HK_USTAT_KEYS_TOUCHED,		/* last_used_at updates */
	HK_USTAT_KEYS_EXPIRED,		/* keys expired by the worker */
	HK_USTAT_LAST_LAG_US,		/* oldest event of the last batch: age at commit */
	HK_USTAT_MAX_LAG_US,		/* the largest such age since the reset */
	HK_USTAT_LAST_FLUSH_AT,		/* TimestampTz of the last worker cycle */
	HK_USTAT_RESET_AT,			/* TimestampTz of the last reset */
	HK_USTAT_AGGREGATED,		/* events counted in the minute aggregates */
	HK_USTAT_LATE_DISCARDED,	/* events whose minute has no partition */
	HK_NUM_USTATS
} HkUsageStat;

extern Size hk_usage_shmem_size(void);
extern void hk_usage_shmem_request(void);
extern void hk_usage_shmem_startup(void);

/*
 * A validation succeeded: note the key as used (for last_used_at) and, when
 * endpoint is not NULL, queue a usage event.  Never blocks, never fails the
 * request.
 */
extern void hk_usage_note_valid(const pg_uuid_t *key_id, const text *endpoint,
								TimestampTz now);

/*
 * Queue one event (endpoint already checked, at most
 * HK_USAGE_ENDPOINT_LEN - 1 bytes; NULL for none).  Returns false when it
 * was dropped.
 */
extern bool hk_usage_enqueue(const pg_uuid_t *key_id, TimestampTz at,
							 const char *endpoint, int endpoint_len,
							 int32 response_time_ms, int32 status_code);

/* Statistics */
extern uint64 hk_usage_stat(HkUsageStat which);
extern void hk_usage_stat_add(HkUsageStat which, uint64 n);
extern void hk_usage_stat_set(HkUsageStat which, uint64 v);
extern void hk_usage_stats_reset(void);
extern void hk_usage_queue_state(uint32 *capacity, uint64 *queued,
								 int *worker_pid);

/* For the worker (the only consumer). */
extern void hk_usage_worker_attach(void);
extern bool hk_usage_missing_db_first_report(void);
extern bool hk_usage_missing_db_reported(void);
extern void hk_usage_missing_db_clear(void);
extern int	hk_usage_peek_refs(HkUsageEvent **refs, int max);
extern void hk_usage_advance(int n);

/*
 * hk_usage_drain_touches() hands on its database's touches, at most this
 * many at a time.
 */
#define HK_USAGE_TOUCH_CHUNK	4096
extern void hk_usage_drain_touches(void (*fn) (const HkUsageTouch *touches,
											   int n, void *arg),
								   void *arg);

/* For usage shipped from standbys (replica/ship.c, replica/receive.c). */
extern uint64 hk_usage_tail_position(void);
extern void hk_usage_touch_at(const pg_uuid_t *key_id, TimestampTz at);
extern Oid	hk_usage_worker_database(void);

#endif							/* HK_USAGE_QUEUE_H */
