/*-------------------------------------------------------------------------
 *
 * housekeeping.h
 *	  The worker's last_used_at touches, key expiry and audit-log sealing.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WORKER_HOUSEKEEPING_H
#define HK_WORKER_HOUSEKEEPING_H

#include "datatype/timestamp.h"
#include "utils/hsearch.h"
#include "utils/uuid.h"

/* Once, at start: the buffers and the (empty) table of touches. */
extern void hk_worker_housekeeping_init(void);

/* A hash table keyed by key id, entries of entrysize bytes, in cxt. */
extern HTAB *hk_worker_key_table(const char *name, Size entrysize, MemoryContext cxt);

/* Note that a key was used at "at" (the latest time per key is kept). */
extern void hk_worker_note_touch(const pg_uuid_t *key_id, TimestampTz at);

/*
 * A full cycle asks for expiry: it stays due until a call of
 * hk_worker_touch_and_expire() runs it (one that neither yields nor fails).
 */
extern void hk_worker_expiry_due(void);

/*
 * Apply the touches noted so far and those in the queue's touch table; when
 * expiry is due, expire keys and, if can_seal, seal the audit log.  One
 * transaction, which may yield: then everything waits for the next cycle.
 */
extern void hk_worker_touch_and_expire(bool can_seal);

#endif							/* HK_WORKER_HOUSEKEEPING_H */
