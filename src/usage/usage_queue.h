/*-------------------------------------------------------------------------
 *
 * usage_queue.h
 *	  The shared-memory queue of usage events, drained by the worker.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_USAGE_QUEUE_H
#define HK_USAGE_QUEUE_H

#include "postgres.h"

#include "utils/uuid.h"

extern Size hk_usage_shmem_size(void);
extern void hk_usage_shmem_request(void);
extern void hk_usage_shmem_startup(void);

/*
 * A validation succeeded: note the key as used (for last_used_at) and, when
 * endpoint is not NULL, queue a usage event.  Never blocks, never fails the
 * request.
 */
extern void hk_usage_note_valid(const pg_uuid_t *key_id, const text *endpoint);

#endif							/* HK_USAGE_QUEUE_H */
