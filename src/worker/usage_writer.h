/*-------------------------------------------------------------------------
 *
 * usage_writer.h
 *	  Bulk appends to a partition of hokusai_auth.api_key_usage for the worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_USAGE_WRITER_H
#define HK_USAGE_WRITER_H

#include "usage/usage_queue.h"

/*
 * Insert one row per event (all of this database, all with existing keys,
 * all in the range of partition part of api_key_usage, locked) in the
 * current transaction.  Returns the number of rows, or -1 when the table
 * is no longer as the extension created it (write through SQL then).
 */
extern int64 hk_usage_append(Oid part, HkUsageEvent **events, int n);

#endif							/* HK_USAGE_WRITER_H */
