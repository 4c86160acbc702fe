/*-------------------------------------------------------------------------
 *
 * usage_writer.c
 *	  Appends usage events to a partition of hokusai_auth.api_key_usage the
 *	  way COPY FROM does: heap multi-inserts (one WAL record per page of
 *	  rows) and direct index insertions, without planning and executing an
 *	  INSERT ... SELECT over arrays.
 *
 * Only the background worker calls this, inside a transaction it started,
 * after it has checked that the events' keys exist, routed them to this
 * partition and locked it (worker/partitions.c).
 *
 * This path must never write a row that an INSERT would refuse, so it is
 * taken only while the partition and its parent are as the extension made
 * them, all of whose rules for a new row are known here (table_is_plain()):
 * a plain table attached as a partition, without rules; the six columns
 * with their types, none generated, NOT NULL only where the extension put
 * it (id, api_key_id, "timestamp", which every row here has); no CHECK
 * constraint, no foreign key and no trigger, on the partition or its
 * parent.  (The partition's range holds every row: the worker routed them.)
 * Unique and exclusion constraints are checked by ExecInsertIndexTuples()
 * here as in an INSERT (a deferrable one needs a trigger, so it makes the
 * table altered).  Anything else an operator adds (NOT NULL on another
 * column, a CHECK, a trigger, a rule, a column, a foreign key) makes
 * hk_usage_append() return -1, and the worker writes the raw rows through
 * SQL (hokusai_auth._usage_insert_raw()), whose INSERT into the parent
 * checks every row as any INSERT does: a row it refuses fails the batch,
 * which the worker retries and then drops and counts as failed.  (That
 * INSERT runs with session_replication_role = replica, so of the triggers
 * only ENABLE ALWAYS and ENABLE REPLICA ones fire there, and a foreign key
 * an operator adds is not checked on either path.)
 *
 * Why not check NOT NULL and CHECK here per row with ExecConstraints()
 * instead?  INSERT stays the only judge of a row: whatever it checks, now
 * or in a later release, applies without a copy of the rules here, while
 * ExecConstraints() covers only some of them.  And a refused row fails its
 * batch either way, so per-row checks would only keep the faster path for a
 * table an operator has changed.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/table.h"
#include "access/tableam.h"
#include "access/xact.h"
#include "catalog/namespace.h"
#include "catalog/partition.h"
#include "catalog/pg_class.h"
#include "catalog/pg_type.h"
#include "executor/executor.h"
#include "nodes/makefuncs.h"
#include "utils/builtins.h"
#include "utils/lsyscache.h"
#include "utils/memutils.h"
#include "utils/rel.h"
#include "utils/relcache.h"

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
	bool		notnull;		/* may be NOT NULL: every row here has one */
}			usage_cols[NUM_COLS] =
{
	{"id", UUIDOID, true},
	{"api_key_id", UUIDOID, true},
	{"endpoint", TEXTOID, false},
	{"timestamp", TIMESTAMPTZOID, true},
	{"response_time_ms", INT4OID, false},
	{"status_code", INT4OID, false},
};

/* No rule, trigger or foreign key: nothing an INSERT would run or check. */
static bool
nothing_attached(Relation rel)
{
	return rel->rd_rules == NULL && rel->trigdesc == NULL &&
		RelationGetFKeyList(rel) == NIL;
}

/*
 * Is part still the partition the extension made, under the parent it
 * made, so that a row an INSERT would refuse cannot be written here (see
 * the banner)?
 */
static bool
table_is_plain(Relation rel)
{
	TupleDesc	desc = RelationGetDescr(rel);
	Relation	parent;
	bool		parent_plain;
	int			col = 0;
	int			i;

	if (rel->rd_rel->relkind != RELKIND_RELATION || !rel->rd_rel->relispartition)
		return false;
	if (!nothing_attached(rel))
		return false;
	if (desc->constr != NULL && desc->constr->num_check > 0)
		return false;
	for (i = 0; i < desc->natts; i++)
	{
		Form_pg_attribute att = TupleDescAttr(desc, i);

		if (att->attisdropped)
			continue;
		if (col >= NUM_COLS ||
			att->attgenerated != '\0' ||
			att->atttypid != usage_cols[col].type ||
			(att->attnotnull && !usage_cols[col].notnull) ||
			strcmp(NameStr(att->attname), usage_cols[col].name) != 0)
			return false;
		col++;
	}
	if (col != NUM_COLS)
		return false;
	/* the parent, locked by the worker's transaction */
	parent = table_open(get_partition_parent(RelationGetRelid(rel), false), NoLock);
	parent_plain = nothing_attached(parent) &&
		strcmp(RelationGetRelationName(parent), "api_key_usage") == 0 &&
		RelationGetNamespace(parent) == RelationGetNamespace(rel);
	table_close(parent, NoLock);
	return parent_plain;
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

/* Append the events in bulk, as COPY does; -1 when the table is altered. */
int64
hk_usage_append(Oid part, HkUsageEvent **events, int n)
{
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

	rel = table_open(part, NoLock);		/* locked by partitions.c */
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
