/*-------------------------------------------------------------------------
 *
 * xidsnap.c
 *	  Snapshots kept in shared memory by replica/walinval.c: xmin, xmax and
 *	  the running transactions, as 64-bit ids, and whether a transaction's
 *	  rows were visible in one.
 *
 * The invalidation log's rows carry the 64-bit id of the top-level
 * transaction that wrote them (replica/inval_log.c).  Such a row is visible
 * in a snapshot when its transaction had finished then: below xmin, or
 * below xmax and not among the running ones.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/transam.h"

#include "replica/xidsnap.h"

/* A 32-bit id of a snapshot, made 64-bit against next (no older than 2^31). */
static uint64
widen(TransactionId xid, FullTransactionId next)
{
	uint32		epoch = EpochFromFullTransactionId(next);

	if (xid > XidFromFullTransactionId(next) && epoch > 0)
		epoch--;
	return U64FromFullTransactionId(FullTransactionIdFromEpochAndXid(epoch, xid));
}

/*
 * What of snap the log's rows need.  Transactions that write log rows are
 * top-level ones; a primary's snapshot lists them in xip, a standby's in
 * subxip (with every other known xid), so both are kept.  Too many to keep:
 * treat everything from xmin on as running (more rows count as new).
 */
void
hk_xidsnap_from(Snapshot snap, HkXidSnap *out)
{
	FullTransactionId next = ReadNextFullTransactionId();
	int			nxip = (int) snap->xcnt;
	int			n = nxip + (snap->subxcnt > 0 ? snap->subxcnt : 0);
	int			i;

	out->xmin = widen(snap->xmin, next);
	out->xmax = widen(snap->xmax, next);
	out->nrunning = 0;
	if (n > HK_SNAP_XIDS)
	{
		out->xmax = out->xmin;
		return;
	}
	for (i = 0; i < nxip; i++)
		out->running[out->nrunning++] = widen(snap->xip[i], next);
	for (i = 0; i < snap->subxcnt; i++)
		out->running[out->nrunning++] = widen(snap->subxip[i], next);
}

/* Did this transaction's rows show in snapshot p? */
bool
hk_xidsnap_visible(const HkXidSnap *p, uint64 xid)
{
	int			i;

	if (xid < p->xmin)
		return true;
	if (xid >= p->xmax)
		return false;
	for (i = 0; i < p->nrunning; i++)
		if (p->running[i] == xid)
			return false;
	return true;
}

