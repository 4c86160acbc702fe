/*-------------------------------------------------------------------------
 *
 * usage_writer.h
 *	  Bulk appends to hokusai_auth.api_key_usage for the worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_USAGE_WRITER_H
#define HK_USAGE_WRITER_H

#include "usage/usage_queue.h"

/*
 * Insert one row per event (all of this database, all with existing keys)
 * in the current transaction.  Returns the number of rows, or -1 when the
 * table is no longer as the extension created it (write through SQL then).
 */
extern int64 hk_usage_append(HkUsageEvent **events, int n);

#endif							/* HK_USAGE_WRITER_H */
