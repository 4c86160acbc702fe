/*-------------------------------------------------------------------------
 *
 * events_step.c
 *	  The background worker's part in events (docs/events.md): the notes
 *	  that the request path queued (rate_limit.exceeded, credits.low,
 *	  credits.exhausted; events/event_queue.c) written to
 *	  hokusai_auth.events, key.expiring notices, and retention.
 *
 * Notes.  Each cycle takes the notes queued when it begins, those of this
 * database, and writes them with hokusai_auth._events_from_notes(), which
 * drops a rate_limit.exceeded within a minute of the key's last one and
 * the notes of keys that are gone.  One transaction, begun as locks.c says;
 * the notes leave the queue only once it has committed.  A batch that
 * fails HK_MAX_TRIES cycles in a row is dropped and counted as discarded.
 * Notes of other databases, and all notes while the extension here is
 * older than 1.6, are discarded and counted.
 *
 * Housekeeping.  A full cycle, at most every HK_EVENTS_HOUSEKEEPING_MS,
 * runs hokusai_auth.note_expiring_keys() (key.expiring 7 days and 1 day
 * before expires_at, once each) and, unless hokusai_auth.events_retention
 * is 0, hokusai_auth.prune_events(events_retention).
 *
 * Like the rest of the worker, every statement names its functions with
 * their schema, and the settings that decide what they resolve to are
 * pinned (trust.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "executor/spi.h"
#include "miscadmin.h"
#include "nodes/value.h"
#include "parser/parse_func.h"
#include "utils/array.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "events/event_queue.h"
#include "worker/events_step.h"
#include "worker/locks.h"

#define HK_MAX_TRIES				3
#define HK_EVENTS_HOUSEKEEPING_MS	(10 * 1000)

static HkEventNote *notes = NULL;
static SPIPlanPtr notes_plan = NULL;
static SPIPlanPtr prune_plan = NULL;
/* Cycles in a row that began writing the batch at the tail and failed. */
static int	tries = 0;
static TimestampTz last_housekeeping = 0;

/* Once, at start: the buffer the notes are copied into. */
void
hk_worker_events_init(void)
{
	notes = MemoryContextAlloc(TopMemoryContext, sizeof(HkEventNote) * HK_EVENT_QUEUE_SIZE);
}

/* Does hokusai_auth._events_from_notes(...) exist (1.6 and later)? */
static bool
events_installed(void)
{
	Oid			argtypes[4] = {TEXTARRAYOID, UUIDARRAYOID, INT8ARRAYOID,
	TIMESTAMPTZARRAYOID};
	List	   *name = list_make2(makeString(pstrdup(HK_SCHEMA)),
								  makeString(pstrdup("_events_from_notes")));

	return OidIsValid(LookupFuncName(name, 4, argtypes, true));
}

/* The notes of this database as the four arrays of _events_from_notes(). */
static int
note_arrays(int n, Datum *args)
{
	Datum	   *kinds = palloc(sizeof(Datum) * n);
	Datum	   *keys = palloc(sizeof(Datum) * n);
	Datum	   *values = palloc(sizeof(Datum) * n);
	Datum	   *ats = palloc(sizeof(Datum) * n);
	int			mine = 0;
	int			i;

	for (i = 0; i < n; i++)
	{
		if (notes[i].dbid != MyDatabaseId)
			continue;
		kinds[mine] = CStringGetTextDatum(hk_event_kind_name((HkEventKind) notes[i].kind));
		keys[mine] = UUIDPGetDatum(&notes[i].key_id);
		values[mine] = Int64GetDatum(notes[i].value);
		ats[mine] = TimestampTzGetDatum(notes[i].at);
		mine++;
	}
	args[0] = PointerGetDatum(construct_array(kinds, mine, TEXTOID, -1, false, TYPALIGN_INT));
	args[1] = PointerGetDatum(construct_array(keys, mine, UUIDOID, UUID_LEN, false,
											  TYPALIGN_CHAR));
	args[2] = PointerGetDatum(construct_array(values, mine, INT8OID, sizeof(int64),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	args[3] = PointerGetDatum(construct_array(ats, mine, TIMESTAMPTZOID, sizeof(TimestampTz),
											  FLOAT8PASSBYVAL, TYPALIGN_DOUBLE));
	return mine;
}

/* Write the queued notes; they leave the queue once that has committed. */
static void
write_notes(void)
{
	int			n = hk_event_queue_peek(notes, HK_EVENT_QUEUE_SIZE);
	Datum		args[4];
	int			mine;
	int32		written = 0;
	bool		isnull;

	if (n == 0)
		return;
	if (tries >= HK_MAX_TRIES)
	{
		ereport(WARNING,
				(errmsg("hokusai_auth worker dropped %d noted events after %d failed attempts to write them",
						n, tries)));
		hk_event_stat_add(HK_ESTAT_DISCARDED, n);
		hk_event_queue_advance(n);
		tries = 0;
		return;
	}
	mine = note_arrays(n, args);
	if (mine > 0)
	{
		if (!hk_worker_begin_xact("hokusai_auth: writing events"))
			return;
		if (events_installed())
		{
			tries++;
			if (notes_plan == NULL)
			{
				Oid			argtypes[4] = {TEXTARRAYOID, UUIDARRAYOID, INT8ARRAYOID,
				TIMESTAMPTZARRAYOID};

				notes_plan = hk_worker_keep_plan("SELECT " HK_SCHEMA "._events_from_notes($1, $2, $3, $4)",
												 4, argtypes);
			}
			written = DatumGetInt32(hk_worker_one_value(SPI_execute_plan(notes_plan, args, NULL, false, 1),
														"_events_from_notes failed", &isnull));
		}
		hk_worker_end_xact();
	}
	tries = 0;
	hk_event_stat_add(HK_ESTAT_WRITTEN, written);
	hk_event_stat_add(HK_ESTAT_DISCARDED, n - written);
	hk_event_queue_advance(n);
}

/* key.expiring notices and retention. */
static void
housekeeping(void)
{
	int			ret;
	bool		isnull;
	int32		notices;

	if (!hk_worker_begin_xact("hokusai_auth: events housekeeping"))
		return;
	if (!events_installed())
	{
		hk_worker_end_xact();
		return;
	}
	ret = SPI_execute("SELECT " HK_SCHEMA ".note_expiring_keys()", false, 1);
	notices = DatumGetInt32(hk_worker_one_value(ret, "note_expiring_keys failed", &isnull));
	if (notices > 0)
		ereport(DEBUG1,
				(errmsg_internal("hokusai_auth worker gave %d key.expiring notices", notices)));
	if (hk_events_retention > 0)
	{
		Interval   *retention = palloc0(sizeof(Interval));
		Datum		arg;
		int64		pruned;

		retention->time = (int64) hk_events_retention * USECS_PER_SEC;
		arg = IntervalPGetDatum(retention);
		if (prune_plan == NULL)
		{
			Oid			argtype = INTERVALOID;

			prune_plan = hk_worker_keep_plan("SELECT " HK_SCHEMA ".prune_events($1)", 1, &argtype);
		}
		pruned = DatumGetInt64(hk_worker_one_value(SPI_execute_plan(prune_plan, &arg, NULL, false, 1),
												   "prune_events failed", &isnull));
		if (pruned > 0)
			ereport(DEBUG1,
					(errmsg_internal("hokusai_auth worker pruned %lld events",
									 (long long) pruned)));
	}
	hk_worker_end_xact();
	last_housekeeping = GetCurrentTimestamp();
}

/* See events_step.h. */
void
hk_worker_events(bool full_cycle)
{
	write_notes();
	if (full_cycle &&
		TimestampDifferenceExceeds(last_housekeeping, GetCurrentTimestamp(),
								   HK_EVENTS_HOUSEKEEPING_MS))
		housekeeping();
}
