/*-------------------------------------------------------------------------
 *
 * ship.h
 *	  Usage recorded on a hot standby, shipped to the primary by the
 *	  standby's worker (ship.c) and received there (receive.c).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_SHIP_H
#define HK_SHIP_H

#include "postgres.h"

#include <signal.h>

#include "lib/stringinfo.h"
#include "utils/uuid.h"

/* Counters for replica_stats(), in its column order. */
typedef enum HkShipStat
{
	HK_SSTAT_SHIPPED,			/* standby: usage events the primary took */
	HK_SSTAT_TOUCHES_SHIPPED,	/* standby: last_used_at touches sent */
	HK_SSTAT_BATCHES,			/* standby: calls that succeeded */
	HK_SSTAT_FAILURES,			/* standby: connections or calls that failed */
	HK_SSTAT_LAST_SHIP_AT,		/* standby: TimestampTz of the last success */
	HK_SSTAT_RECEIVED,			/* primary: events received and queued */
	HK_SSTAT_DUPLICATES,		/* primary: events received again, skipped */
	HK_SSTAT_DEFERRED,			/* primary: events refused for lack of room */
	HK_SSTAT_EVENTS_SHIPPED,	/* standby: noted events the primary took */
	HK_NUM_SSTATS
} HkShipStat;

/* Shared memory (shmem.c). */
extern Size hk_ship_shmem_size(void);
extern void hk_ship_shmem_request(void);
extern void hk_ship_shmem_startup(void);

extern uint64 hk_ship_stat(HkShipStat which);
extern void hk_ship_stat_add(HkShipStat which, uint64 n);
extern void hk_ship_stat_set(HkShipStat which, uint64 v);
extern bool hk_ship_primary_reachable(void);
extern void hk_ship_set_reachable(bool reachable);
extern const pg_uuid_t *hk_ship_run_id(void);

/*
 * The worker, each cycle while the server is in recovery: send the queued
 * events and touches to the primary.  hk_ship_disconnect() once it is not.
 */
extern void hk_ship_cycle(const volatile sig_atomic_t *stop, bool final);
extern void hk_ship_disconnect(void);

/* For ship_events.c: a call on the worker's connection (see ship.c). */
extern int64 hk_ship_call(const char *sql, int nparams, const Oid *types,
						  const char *const *params, const char *refused);
extern void hk_ship_succeeded(void);
extern void hk_ship_append_uuid(StringInfo s, const pg_uuid_t *u);

/*
 * For the calls of ship.c and ship_events.c: n array literals built element
 * by element (hk_ship_arrays_start(), hk_ship_add_sep() before each
 * element), sent as parameters 3 and on after the run id and upto.
 */
extern void hk_ship_arrays_start(StringInfo a, int n);
extern void hk_ship_add_sep(StringInfo a);
extern int64 hk_ship_send_arrays(const char *sql, StringInfo a, int n, const Oid *types,
								 uint64 upto, const char *refused);

/*
 * ship_events.c: are notes of the request path queued, and ship them (from
 * hk_ship_cycle(), connected); false when the call failed.
 */
extern bool hk_ship_events_pending(void);
extern bool hk_ship_events(void);

/*
 * promoted.c: the worker ran a cycle in recovery; and at its first cycles
 * after the promotion (in the database, extension ready), drop from the
 * queues what the old primary had taken (replayed shipping state).
 */
extern void hk_ship_note_standby(void);
extern void hk_ship_after_promotion(void);

#endif							/* HK_SHIP_H */
