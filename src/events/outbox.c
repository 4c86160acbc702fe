/*-------------------------------------------------------------------------
 *
 * outbox.c
 *	  Ids for hokusai_auth.events, and the horizon below which a reader may
 *	  deliver events in id order without ever skipping one.
 *
 * The problem.  Events are written in the transaction of the change they
 * describe, with ids from a sequence, and take no lock that another key
 * operation would wait for.  So ids are handed out in one order and
 * committed in another: a transaction holding id 5 may commit after the
 * one holding id 6.  A reader (the webhook relay, "hokusai auth events
 * --follow", GET /api/v1/auth/events?after=) that delivered 6 and moved its
 * cursor past it would never deliver 5.
 *
 * The rule.  Each transaction publishes, in shared memory, the first event
 * id it takes (the smallest it will ever hold), and withdraws it when it
 * ends.  hk_outbox_horizon() returns the smallest published id, or, when
 * none is published, the sequence's next value.  Every event with a lower
 * id has either committed before the horizon was read, and is visible to
 * any snapshot taken afterwards, or never will commit.  Readers deliver
 * only ids below the horizon, in a statement that starts after it was
 * read (so never under REPEATABLE READ, whose snapshot may be older:
 * refused), and a transaction that stays open holds back the events after
 * its own until it ends.
 *
 * Why it holds.  Take an event N < horizon H.  N was handed out before H
 * was read (the sequence had passed it), and its transaction published an
 * id <= N first, under the same lock (below).  If that transaction had
 * still been in flight, H would be <= N.  So it had ended: its withdrawal
 * runs from the commit callback, after the commit is visible to new
 * snapshots (ProcArrayEndTransaction), and the NOTIFY sent at that commit
 * reaches listeners later still.
 *
 * Shared memory: one int64 per PGPROC (MaxBackends of them, indexed by
 * the backend's proc number), the first event id of its open transaction,
 * 0 for none.
 *
 * Locking rules:
 *
 *	- outbox_lock (exclusive) is held while a transaction takes its first
 *	  event id and publishes it: nextval() and the store happen together,
 *	  so a horizon is read either before both or after both.  Later ids of
 *	  the same transaction are taken without the lock (they are larger).
 *	- outbox_lock (exclusive) is held to withdraw the id at commit or
 *	  abort, and (shared) while the horizon reads the sequence and the
 *	  slots.
 *	- The heavyweight lock on the sequence is always taken before
 *	  outbox_lock, never while holding it: nothing waits for a heavyweight
 *	  lock while holding ours.  Under outbox_lock run only nextval() and
 *	  the read of the sequence's one buffer; an error there aborts the
 *	  transaction, which releases the lock.
 *	- It is held for microseconds and never to commit: an idle transaction
 *	  that wrote an event delays delivery of later events, never a key
 *	  operation.
 *
 * A transaction that wrote events cannot be prepared (two-phase commit):
 * its withdrawal would come at PREPARE, before its commit.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/heapam.h"
#include "access/htup_details.h"
#include "access/relation.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "catalog/namespace.h"
#include "catalog/pg_class.h"
#include "commands/sequence.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/lmgr.h"
#include "storage/lwlock.h"
#include "storage/proc.h"
#include "storage/shmem.h"
#include "utils/lsyscache.h"
#include "utils/rel.h"

#include "hokusai_auth.h"
#include "events/outbox.h"

#define HK_OUTBOX_TRANCHE	"hokusai_auth_outbox"
#define HK_EVENTS_SEQUENCE	"events_id_seq"

typedef struct HkOutboxShared
{
	int			nslots;
	int64		first_id[FLEXIBLE_ARRAY_MEMBER];	/* per proc; 0: none */
} HkOutboxShared;

static HkOutboxShared *outbox = NULL;
static LWLock *outbox_lock = NULL;

/* This backend's transaction has published its first event id. */
static bool published = false;

static Size
outbox_size(void)
{
	return add_size(offsetof(HkOutboxShared, first_id),
					mul_size(MaxBackends, sizeof(int64)));
}

/* From shmem_request_hook. */
void
hk_outbox_shmem_request(void)
{
	RequestAddinShmemSpace(outbox_size());
	RequestNamedLWLockTranche(HK_OUTBOX_TRANCHE, 1);
}

/* Called with AddinShmemInitLock held. */
void
hk_outbox_shmem_startup(void)
{
	bool		found;

	outbox = ShmemInitStruct("hokusai_auth outbox", outbox_size(), &found);
	outbox_lock = &(GetNamedLWLockTranche(HK_OUTBOX_TRANCHE))->lock;
	if (found)
		return;
	memset(outbox, 0, outbox_size());
	outbox->nslots = MaxBackends;
}

/* This backend's slot. */
static int
my_slot(void)
{
#if PG_VERSION_NUM >= 170000
	int			i = MyProcNumber;
#else
	int			i = MyProc->pgprocno;
#endif

	if (i < 0 || i >= outbox->nslots)
		elog(ERROR, "hokusai_auth: process number %d outside the outbox (%d slots)",
			 i, outbox->nslots);
	return i;
}

/* The transaction ended: its events are visible, or gone. */
static void
withdraw(void)
{
	LWLockAcquire(outbox_lock, LW_EXCLUSIVE);
	outbox->first_id[my_slot()] = 0;
	LWLockRelease(outbox_lock);
	published = false;
}

static void
outbox_xact_callback(XactEvent event, void *arg)
{
	if (!published)
		return;
	switch (event)
	{
		case XACT_EVENT_PRE_PREPARE:
			ereport(ERROR,
					(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
					 errmsg("cannot PREPARE a transaction that wrote hokusai_auth events"),
					 errdetail("Its events would be announced before it commits.")));
			break;
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PARALLEL_ABORT:
			/* After ProcArrayEndTransaction: see the banner. */
			withdraw();
			break;
		default:
			break;
	}
}

/*
 * From _PG_init, before the cache's invalidation registers its own (the
 * last registered runs first: its refusal of PREPARE is the one reported).
 */
void
hk_outbox_init(void)
{
	RegisterXactCallback(outbox_xact_callback, NULL);
}

/* hokusai_auth.events_id_seq, looked up by schema and name. */
static Oid
events_sequence(void)
{
	Oid			nsp = get_namespace_oid(HK_SCHEMA, false);
	Oid			seq = get_relname_relid(HK_EVENTS_SEQUENCE, nsp);

	if (!OidIsValid(seq) || get_rel_relkind(seq) != RELKIND_SEQUENCE)
		ereport(ERROR,
				(errcode(ERRCODE_UNDEFINED_OBJECT),
				 errmsg("sequence %s.%s does not exist", HK_SCHEMA, HK_EVENTS_SEQUENCE),
				 errhint("Update the extension: ALTER EXTENSION hokusai_auth UPDATE.")));
	return seq;
}

/* The next event id; the first of a transaction is published. */
int64
hk_outbox_next_id(void)
{
	Oid			seq = events_sequence();
	int64		id;

	/* Without shared memory there is nothing to publish in. */
	if (outbox == NULL || published)
		return nextval_internal(seq, false);

	/* The lock nextval() takes, first: never wait for it holding ours. */
	LockRelationOid(seq, RowExclusiveLock);
	LWLockAcquire(outbox_lock, LW_EXCLUSIVE);
	id = nextval_internal(seq, false);
	outbox->first_id[my_slot()] = id;
	published = true;
	LWLockRelease(outbox_lock);
	return id;
}

/*
 * The next value the sequence will hand out: every id below it has been
 * handed out.  Read from its one tuple, in place (as nextval() keeps it).
 */
static int64
sequence_next(Relation rel)
{
	Buffer		buf = ReadBuffer(rel, 0);
	ItemId		lp;
	HeapTupleData tuple;
	FormData_pg_sequence_data *seq;
	int64		next;

	LockBuffer(buf, BUFFER_LOCK_SHARE);
	lp = PageGetItemId(BufferGetPage(buf), FirstOffsetNumber);
	if (!ItemIdIsNormal(lp))
		elog(ERROR, "hokusai_auth: sequence %s has no tuple", RelationGetRelationName(rel));
	tuple.t_data = (HeapTupleHeader) PageGetItem(BufferGetPage(buf), lp);
	tuple.t_len = ItemIdGetLength(lp);
	seq = (FormData_pg_sequence_data *) GETSTRUCT(&tuple);
	if (!seq->is_called)
		next = seq->last_value;
	else if (seq->last_value == PG_INT64_MAX)
		next = PG_INT64_MAX;
	else
		next = seq->last_value + 1;
	UnlockReleaseBuffer(buf);
	return next;
}

/* See the banner. */
int64
hk_outbox_horizon(void)
{
	Oid			seq;
	Relation	rel;
	int64		horizon;
	int			i;

	hk_require_preload();
	if (RecoveryInProgress())
		ereport(ERROR,
				(errcode(ERRCODE_READ_ONLY_SQL_TRANSACTION),
				 errmsg("hokusai_auth events cannot be read during recovery"),
				 errdetail("A standby cannot tell which events may still commit on the primary."),
				 errhint("Read events from the primary.")));
	if (IsolationUsesXactSnapshot())
		ereport(ERROR,
				(errcode(ERRCODE_ACTIVE_SQL_TRANSACTION),
				 errmsg("hokusai_auth events must be read in a READ COMMITTED transaction"),
				 errdetail("The transaction's snapshot may be older than the events it would deliver.")));

	seq = events_sequence();
	rel = relation_open(seq, AccessShareLock);
	LWLockAcquire(outbox_lock, LW_SHARED);
	horizon = sequence_next(rel);
	for (i = 0; i < outbox->nslots; i++)
	{
		int64		first = outbox->first_id[i];

		if (first > 0 && first < horizon)
			horizon = first;
	}
	LWLockRelease(outbox_lock);
	relation_close(rel, NoLock);
	return horizon;
}
