/*-------------------------------------------------------------------------
 *
 * uuid7.h
 *	  Time-ordered UUIDs (RFC 9562 version 7) for usage rows.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_UUID7_H
#define HK_UUID7_H

#include "postgres.h"

#include "datatype/timestamp.h"
#include "utils/uuid.h"

extern void hk_uuid_v7(TimestampTz at, pg_uuid_t *out);

#endif							/* HK_UUID7_H */
