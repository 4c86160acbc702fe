/*-------------------------------------------------------------------------
 *
 * track.h
 *	  One usage event per request, queued when the transaction ends.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_TRACK_H
#define HK_TRACK_H

#include "postgres.h"

#include "utils/uuid.h"

extern void hk_track_request(const pg_uuid_t *key_id, const text *endpoint);

#endif							/* HK_TRACK_H */
