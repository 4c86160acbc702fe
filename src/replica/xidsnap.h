/*-------------------------------------------------------------------------
 *
 * xidsnap.h
 *	  A snapshot as far as the invalidation log's rows go: 64-bit ids.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_XIDSNAP_H
#define HK_XIDSNAP_H

#include "postgres.h"

#include "utils/snapshot.h"

#define HK_SNAP_XIDS		256 /* running transactions kept per snapshot */

/* A snapshot, as far as the log's rows go: 64-bit transaction ids. */
typedef struct HkXidSnap
{
	uint64		xmin;			/* below: finished */
	uint64		xmax;			/* at or above: not yet started */
	int			nrunning;
	uint64		running[HK_SNAP_XIDS];
} HkXidSnap;

extern void hk_xidsnap_from(Snapshot snap, HkXidSnap *out);
extern bool hk_xidsnap_visible(const HkXidSnap *p, uint64 xid);

#endif							/* HK_XIDSNAP_H */
