/*-------------------------------------------------------------------------
 *
 * promoted.c
 *	  After a promotion, before the worker writes what its queues still
 *	  hold: drop from them what the old primary had already taken.
 *
 * While this server was a standby its worker shipped usage events and
 * noted events to the primary (ship.c, ship_events.c), and consumed its
 * queues up to the positions the primary answered.  An answer lost just
 * before the promotion (the primary took the batch and committed, the
 * standby never heard) leaves those events queued here, and the promoted
 * worker would write them a second time.  But the primary's commit moved
 * this run's row of hokusai_auth.usage_shipments (received_until,
 * events_received_until), and if that commit was replayed here before the
 * promotion, the row says so: so once, at the first cycle after the
 * promotion, the worker reads this run's row and consumes each queue up to
 * its position.  What the row does not show was not replayed, is not in
 * this timeline's tables, and is written here: exactly once either way.
 *
 * The worker is the only consumer of both queues, so the positions cannot
 * move under it.  Nothing to do on a server that never was a standby; a
 * worker that restarts between the promotion and this check (a crash of
 * the worker in that cycle) does not know it was one and skips it.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "events/event_queue.h"
#include "replica/ship.h"
#include "usage/usage_queue.h"
#include "worker/locks.h"

static bool was_standby = false;

/* The worker ran a cycle in recovery (hk_ship_cycle()). */
void
hk_ship_note_standby(void)
{
	was_standby = true;
}

/* Consume a queue up to position "until" (its tail is "tail", n queued). */
static int64
skip_to(uint64 tail, uint64 queued, int64 until)
{
	if (until <= (int64) tail)
		return 0;
	return Min((uint64) until - tail, queued);
}

/* See the banner: once, after the promotion, connected, extension ready. */
void
hk_ship_after_promotion(void)
{
	Oid			type = UUIDOID;
	Datum		run;
	int			ret;
	int64		usage_until = -1;
	int64		events_until = -1;
	uint32		capacity;
	uint64		queued;
	uint64		stats[HK_NUM_ESTATS];
	int			worker_pid;
	int64		n;
	bool		isnull;

	if (!was_standby)
		return;
	if (!hk_worker_begin_xact("hokusai_auth: reading the shipping state after promotion"))
		return;					/* yielded: the next cycle tries again */
	was_standby = false;
	run = UUIDPGetDatum(hk_ship_run_id());
	ret = SPI_execute("SELECT pg_catalog.to_regclass('hokusai_auth.usage_shipments') IS NOT NULL",
					  true, 1);
	if (ret != SPI_OK_SELECT || SPI_processed != 1)
		elog(ERROR, "could not look for the shipping state: %s", SPI_result_code_string(ret));
	if (DatumGetBool(SPI_getbinval(SPI_tuptable->vals[0], SPI_tuptable->tupdesc, 1, &isnull)))
	{
		ret = SPI_execute_with_args("SELECT s.received_until, s.events_received_until"
									"  FROM " HK_SCHEMA ".usage_shipments s"
									" WHERE s.run_id OPERATOR(pg_catalog.=) $1",
									1, &type, &run, NULL, true, 1);
		if (ret != SPI_OK_SELECT)
			elog(ERROR, "could not read the shipping state: %s", SPI_result_code_string(ret));
		if (SPI_processed == 1)
		{
			usage_until = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													  SPI_tuptable->tupdesc, 1, &isnull));
			events_until = DatumGetInt64(SPI_getbinval(SPI_tuptable->vals[0],
													   SPI_tuptable->tupdesc, 2, &isnull));
		}
	}
	hk_worker_end_xact();

	hk_usage_queue_state(&capacity, &queued, &worker_pid);
	n = skip_to(hk_usage_tail_position(), queued, usage_until);
	if (n > 0)
		hk_usage_advance((int) n);
	hk_event_queue_state(&capacity, &queued, stats);
	n = skip_to(hk_event_queue_tail_position(), queued, events_until);
	if (n > 0)
		hk_event_queue_advance((int) n);
	if (usage_until >= 0 || events_until >= 0)
		ereport(LOG,
				(errmsg("hokusai_auth worker, promoted: the old primary had taken this server's usage up to queue position %lld and its noted events up to %lld; what is queued below them is not written again",
						(long long) usage_until, (long long) events_until)));
}
