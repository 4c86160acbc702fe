/*-------------------------------------------------------------------------
 *
 * usage_writer.c
 *	  Appends usage events to hokusai_auth.api_key_usage the way COPY FROM
 *	  does: heap multi-inserts (one WAL record per page of rows) and direct
 *	  index insertions, without planning and executing an INSERT ... SELECT
 *	  over arrays.
 *
 * Only the background worker calls this, inside a transaction it started,
 * after it has checked that the events' keys exist (the foreign key's
 * trigger is not fired here, as it was not in the SQL path, which ran with
 * session_replication_role = replica).  The relation is used this way only
 * while its definition is the one the extension created: the six columns
 * with their types, no check constraints, no generated columns and no
 * triggers except the foreign key's internal ones.  Otherwise
 * hk_usage_append() returns -1 and the worker writes through SQL, so a
 * trigger or column someone added still sees every row.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/memutils.h"
#include "utils/rel.h"

#include "hokusai_auth.h"
#include "usage/uuid7.h"
#include "worker/usage_writer.h"

/* Rows per table_multi_insert() call, as COPY buffers them. */
#define HK_MULTI_INSERT_ROWS	1000

/* The columns, in the order the extension created them. */
enum
{
	COL_ID,
	COL_KEY,
	COL_ENDPOINT,
	COL_TIMESTAMP,
	COL_RESPONSE_TIME,
	COL_STATUS,
	NUM_COLS
};

static const struct
{
	const char *name;
	Oid			type;
}			usage_cols[NUM_COLS] =
{
	{"id", UUIDOID},
	{"api_key_id", UUIDOID},
	{"endpoint", TEXTOID},
	{"timestamp", TIMESTAMPTZOID},
	{"response_time_ms", INT4OID},
	{"status_code", INT4OID},
};

/* Is rel still the table the extension created? */
static bool
table_is_plain(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			col = 0;
	int			i;

	if (rel->rd_rel->relkind != RELKIND_RELATION)
		return false;
	if (desc->constr != NULL && desc->constr->num_check > 0)
		return false;
	if (rel->trigdesc != NULL)
	{
		for (i = 0; i < rel->trigdesc->numtriggers; i++)
			if (!rel->trigdesc->triggers[i].tgisinternal)
				return false;
	}
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (col >= NUM_COLS ||
			att->attgenerated != '\0' ||
			att->atttypid != usage_cols[col].type ||
			strcmp(NameStr(att->attname), usage_cols[col].name) != 0)
			return false;
		col++;
	}
	return col == NUM_COLS;
}

/* Fill a slot with one event; the id comes from ids[]. */
static void
fill_slot(TupleTableSlot *slot, Relation rel, const HkUsageEvent *e, pg_uuid_t *id)
{
	TupleDesc	desc = RelationGetDescr(rel);
	int			col = 0;
	int			i;

	ExecClearTuple(slot);
	for (i = 0; i < desc->natts; i++)
	{
		Datum		value = (Datum) 0;
		bool		isnull = false;

		if (TupleDescAttr(desc, i)->attisdropped)
		{
			slot->tts_values[i] = (Datum) 0;
			slot->tts_isnull[i] = true;
			continue;
		}
		switch (col++)
		{
			case COL_ID:
				hk_uuid_v7(e->at, id);
				value = UUIDPGetDatum(id);
				break;
			case COL_KEY:
				value = UUIDPGetDatum(&e->key_id);
				break;
			case COL_ENDPOINT:
				isnull = !(e->flags & HK_EV_HAS_ENDPOINT);
				if (!isnull)
					value = PointerGetDatum(cstring_to_text_with_len(e->endpoint,
																	 e->endpoint_len));
				break;
			case COL_TIMESTAMP:
				value = TimestampTzGetDatum(e->at);
				break;
			case COL_RESPONSE_TIME:
				isnull = e->response_time_ms == HK_EV_NONE;
				value = Int32GetDatum(e->response_time_ms);
				break;
			case COL_STATUS:
				isnull = e->status_code == HK_EV_NONE;
				value = Int32GetDatum(e->status_code);
				break;
		}
		slot->tts_values[i] = value;
		slot->tts_isnull[i] = isnull;
	}
	ExecStoreVirtualTuple(slot);
}

int64
hk_usage_append(HkUsageEvent **events, int n)
{
	Oid			relid;
	Relation	rel;
	EState	   *estate;
	ResultRelInfo *rri;
	BulkInsertState bistate;
	TupleTableSlot **slots;
	pg_uuid_t  *ids;
	CommandId	cid;
	MemoryContext rows_cxt;
	MemoryContext oldcxt;
	int			nslots;
	int			done = 0;
	int			i;

	if (n == 0)
		return 0;

	relid = RangeVarGetRelid(makeRangeVar(HK_SCHEMA, "api_key_usage", -1),
							 RowExclusiveLock, false);
	rel = table_open(relid, NoLock);
	if (!table_is_plain(rel))
	{
		table_close(rel, NoLock);
		return -1;
	}

	estate = CreateExecutorState();
	rri = makeNode(ResultRelInfo);
	InitResultRelInfo(rri, rel, 1, NULL, 0);
	ExecOpenIndices(rri, false);
	bistate = GetBulkInsertState();
	cid = GetCurrentCommandId(true);

	nslots = Min(n, HK_MULTI_INSERT_ROWS);
	slots = palloc(sizeof(TupleTableSlot *) * nslots);
	for (i = 0; i < nslots; i++)
		slots[i] = table_slot_create(rel, NULL);
	ids = palloc(sizeof(pg_uuid_t) * nslots);
	rows_cxt = AllocSetContextCreate(CurrentMemoryContext,
									 "hokusai_auth usage rows",
									 ALLOCSET_DEFAULT_SIZES);

	while (done < n)
	{
		int			chunk = Min(n - done, nslots);

		oldcxt = MemoryContextSwitchTo(rows_cxt);
		for (i = 0; i < chunk; i++)
			fill_slot(slots[i], rel, events[done + i], &ids[i]);
		table_multi_insert(rel, slots, chunk, cid, 0, bistate);
		MemoryContextSwitchTo(oldcxt);

		for (i = 0; i < chunk; i++)
		{
			ExprContext *econtext = GetPerTupleExprContext(estate);

			oldcxt = MemoryContextSwitchTo(econtext->ecxt_per_tuple_memory);
			econtext->ecxt_scantuple = slots[i];
			(void) ExecInsertIndexTuples(rri, slots[i], estate, false, false, NULL, NIL);
			MemoryContextSwitchTo(oldcxt);
			ResetPerTupleExprContext(estate);
			ExecClearTuple(slots[i]);
		}
		MemoryContextReset(rows_cxt);
		done += chunk;
	}

	for (i = 0; i < nslots; i++)
		ExecDropSingleTupleTableSlot(slots[i]);
	MemoryContextDelete(rows_cxt);
	FreeBulkInsertState(bistate);
	ExecCloseIndices(rri);
	FreeExecutorState(estate);
	table_close(rel, NoLock);
	return n;
}
