/*-------------------------------------------------------------------------
 *
 * ship_events.c
 *	  A hot standby's worker sends the events noted on the request path
 *	  (rate_limit.exceeded, credits.low, credits.exhausted: the event queue
 *	  of events/event_queue.c) to the primary, which writes them to its
 *	  hokusai_auth.events exactly once (hokusai_auth._receive_events(),
 *	  sql/install/usage.sql).
 *
 * As for usage (ship.c), a note is named by the standby's run id and its
 * position in the event queue, which only grows while the server runs.
 * Each cycle, connected (ship.c), the worker sends the notes queued from
 * the tail with their positions and "upto", the position after the last
 * one it looked at; the primary, in one transaction, writes the notes at or
 * above the run's events_received_until in hokusai_auth.usage_shipments
 * (through _events_from_notes(), which also keeps rate_limit.exceeded to
 * one per key per minute across all servers) and moves it to upto, and
 * returns it.  The worker then consumes its queue up to that position: a
 * lost answer costs a repeat, which the primary skips, never a duplicate
 * or a gap.  When the call fails the notes stay queued, and the queue,
 * once full, drops new ones and counts them (event_queue_stats.dropped),
 * as on a primary whose worker cannot write.
 *
 * Notes of databases other than the worker's are consumed unsent and
 * counted as discarded, as the primary's worker discards them.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "lib/stringinfo.h"
#include "miscadmin.h"
#include "utils/memutils.h"

#include "hokusai_auth.h"
#include "events/event_queue.h"
#include "replica/ship.h"

enum
{
	E_POS, E_KIND, E_KEY, E_VAL, E_AT, NUM_EARRAYS
};

static HkEventNote *notes = NULL;

/* Are notes queued? */
bool
hk_ship_events_pending(void)
{
	uint32		capacity;
	uint64		queued;
	uint64		stats[HK_NUM_ESTATS];

	hk_event_queue_state(&capacity, &queued, stats);
	return queued > 0;
}

/* Of the first n notes, how many are of this database. */
static int
count_mine(int n)
{
	int			k = 0;
	int			i;

	for (i = 0; i < n; i++)
		if (notes[i].dbid == MyDatabaseId)
			k++;
	return k;
}

/* Send the queued notes (see the banner); false when the call failed. */
bool
hk_ship_events(void)
{
	StringInfoData a[NUM_EARRAYS];
	Oid			types[2 + NUM_EARRAYS] = {UUIDOID, INT8OID, INT8ARRAYOID, TEXTARRAYOID,
	UUIDARRAYOID, INT8ARRAYOID, INT8ARRAYOID};
	uint64		first;
	int64		upto;
	int64		consumed;
	int			n;
	int			mine;
	int			i;

	if (notes == NULL)
		notes = MemoryContextAlloc(TopMemoryContext, sizeof(HkEventNote) * HK_EVENT_QUEUE_SIZE);
	/* The worker is the only consumer: the tail does not move meanwhile. */
	first = hk_event_queue_tail_position();
	n = hk_event_queue_peek(notes, HK_EVENT_QUEUE_SIZE);
	if (n == 0)
		return true;

	hk_ship_arrays_start(a, NUM_EARRAYS);
	for (i = 0; i < n; i++)
	{
		HkEventNote *e = &notes[i];

		if (e->dbid != MyDatabaseId)
			continue;
		hk_ship_add_sep(&a[E_POS]);
		appendStringInfo(&a[E_POS], UINT64_FORMAT, first + i);
		hk_ship_add_sep(&a[E_KIND]);
		appendStringInfoString(&a[E_KIND], hk_event_kind_name((HkEventKind) e->kind));
		hk_ship_add_sep(&a[E_KEY]);
		hk_ship_append_uuid(&a[E_KEY], &e->key_id);
		hk_ship_add_sep(&a[E_VAL]);
		appendStringInfo(&a[E_VAL], INT64_FORMAT, e->value);
		hk_ship_add_sep(&a[E_AT]);
		appendStringInfo(&a[E_AT], INT64_FORMAT, (int64) e->at);
	}
	upto = hk_ship_send_arrays("SELECT hokusai_auth._receive_events($1, $2, $3, $4, $5, $6, $7)",
							   a, NUM_EARRAYS, types, first + n, "the primary refused the events");
	if (upto < 0)
		return false;

	consumed = Min(Max(upto - (int64) first, 0), n);
	if (consumed > 0)
	{
		mine = count_mine((int) consumed);
		hk_event_queue_advance((int) consumed);
		hk_ship_stat_add(HK_SSTAT_EVENTS_SHIPPED, mine);
		hk_event_stat_add(HK_ESTAT_DISCARDED, consumed - mine);
	}
	hk_ship_succeeded();
	return true;
}
