/*-------------------------------------------------------------------------
 *
 * partition.h
 *	  Which partition of a usage table holds a given time.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_USAGE_PARTITION_H
#define HK_USAGE_PARTITION_H

#include "datatype/timestamp.h"
#include "utils/relcache.h"

/*
 * The partition of parent (a usage table, open and locked) whose range
 * holds t; InvalidOid when none does.  When lo and hi are not NULL they are
 * set to the range's bounds (a default partition's are the infinities).
 */
extern Oid	hk_usage_partition_for(Relation parent, TimestampTz t,
								   TimestampTz *lo, TimestampTz *hi);

/*
 * The end of parent's last range: no partition holds a later time (the
 * next ones are not made yet).  DT_NOBEGIN when there is none.
 */
extern TimestampTz hk_usage_partitions_end(Relation parent);

#endif							/* HK_USAGE_PARTITION_H */
