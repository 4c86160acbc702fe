/*-------------------------------------------------------------------------
 *
 * events_sql.c
 *	  The SQL functions of the events in C: event ids and the delivery
 *	  horizon (outbox.c), noting an event and the queue's counters
 *	  (event_queue.c).
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "funcapi.h"
#include "utils/builtins.h"
#include "utils/uuid.h"

#include "hokusai_auth.h"
#include "events/event_queue.h"
#include "events/outbox.h"

PG_FUNCTION_INFO_V1(hk_sql_event_id);
PG_FUNCTION_INFO_V1(hk_sql_event_horizon);
PG_FUNCTION_INFO_V1(hk_sql_event_note);
PG_FUNCTION_INFO_V1(hk_sql_event_queue_stats);

/*
 * hokusai_auth._event_id() returns bigint: the id of a new event (the
 * default of hokusai_auth.events.id).
 */
Datum
hk_sql_event_id(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(hk_outbox_next_id());
}

/*
 * hokusai_auth._event_horizon() returns bigint: events with a lower id may
 * be delivered (outbox.c).
 */
Datum
hk_sql_event_horizon(PG_FUNCTION_ARGS)
{
	PG_RETURN_INT64(hk_outbox_horizon());
}

/*
 * hokusai_auth._event_note(kind text, key_id uuid, user_id uuid,
 *		value bigint) returns void
 *
 * What the request path does in C (hk_event_note()), from SQL: for tests
 * and for code outside the extension's C that raises such an event.
 */
Datum
hk_sql_event_note(PG_FUNCTION_ARGS)
{
	char	   *kind;
	int			k;

	hk_require_preload();
	if (PG_ARGISNULL(0) || PG_ARGISNULL(1))
		ereport(ERROR,
				(errcode(ERRCODE_NULL_VALUE_NOT_ALLOWED),
				 errmsg("kind and key_id must not be null")));
	kind = text_to_cstring(PG_GETARG_TEXT_PP(0));
	for (k = 0; k < HK_NUM_EVENT_KINDS; k++)
		if (strcmp(kind, hk_event_kind_name((HkEventKind) k)) == 0)
			break;
	if (k == HK_NUM_EVENT_KINDS)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_PARAMETER_VALUE),
				 errmsg("\"%s\" is not a kind of event raised on the request path", kind),
				 errhint("Use rate_limit.exceeded, credits.low or credits.exhausted.")));
	hk_event_note((HkEventKind) k, PG_GETARG_UUID_P(1),
				  PG_ARGISNULL(2) ? NULL : PG_GETARG_UUID_P(2),
				  PG_ARGISNULL(3) ? 0 : PG_GETARG_INT64(3));
	PG_RETURN_VOID();
}

/*
 * hokusai_auth.event_queue_stats() returns (capacity, queued, noted,
 *	deduplicated, dropped, written, discarded), since server start.
 */
Datum
hk_sql_event_queue_stats(PG_FUNCTION_ARGS)
{
	TupleDesc	tupdesc;
	Datum		values[2 + HK_NUM_ESTATS];
	bool		nulls[2 + HK_NUM_ESTATS] = {0};
	uint64		stats[HK_NUM_ESTATS];
	uint32		capacity;
	uint64		queued;
	int			i;

	hk_require_preload();
	if (get_call_result_type(fcinfo, NULL, &tupdesc) != TYPEFUNC_COMPOSITE)
		elog(ERROR, "return type must be a row type");
	hk_event_queue_state(&capacity, &queued, stats);
	values[0] = Int64GetDatum((int64) capacity);
	values[1] = Int64GetDatum((int64) queued);
	for (i = 0; i < HK_NUM_ESTATS; i++)
		values[2 + i] = Int64GetDatum((int64) stats[i]);
	PG_RETURN_DATUM(HeapTupleGetDatum(heap_form_tuple(BlessTupleDesc(tupdesc), values, nulls)));
}
