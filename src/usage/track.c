/*-------------------------------------------------------------------------
 *
 * track.c
 *	  Request tracking: one usage event for the current request, queued
 *	  when its transaction ends, with the request's duration and status.
 *	  Used by track_request() (usage_sql.c) and pre_request()
 *	  (http/pre_request.c).
 *
 * hk_track_request(key_id, endpoint) remembers, in this backend, the key,
 * the endpoint and the time of the call.  When the transaction ends, a
 * transaction callback (registered on first use) queues one event:
 * response_time_ms is the time from the call to the end of the
 * transaction, and status_code is the transaction's setting response.status
 * when that is an integer from 100 to 599, otherwise 200 on commit and 500
 * on abort.  Calling it again in the same transaction replaces the key and
 * endpoint and keeps the first start time, so a request is counted once.
 *
 * The state is per backend and lives for one transaction; nothing is
 * shared until the event is queued (usage_queue.c).  Queuing writes no
 * table, so this works in PostgREST's read-only transactions and whether
 * the transaction commits or aborts.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "access/xact.h"
#include "utils/guc.h"
#include "utils/timestamp.h"

#include "hokusai_auth.h"
#include "usage/endpoint.h"
#include "usage/track.h"
#include "usage/usage_queue.h"

/* The tracked request of this backend's current transaction. */
static bool track_active = false;
static bool track_callback_registered = false;
static pg_uuid_t track_key_id;
static TimestampTz track_start;
static bool track_has_endpoint;
static int	track_endpoint_len;
static char track_endpoint[HK_USAGE_ENDPOINT_LEN];

/* response.status as a valid HTTP status, or -1. */
static int32
response_status_setting(void)
{
	const char *v = GetConfigOption("response.status", true, false);
	char	   *end;
	long		n;

	if (v == NULL)
		return -1;
	while (*v == ' ')
		v++;
	if (*v == '\0')
		return -1;
	errno = 0;
	n = strtol(v, &end, 10);
	while (*end == ' ')
		end++;
	if (errno != 0 || *end != '\0' || n < 100 || n > 599)
		return -1;
	return (int32) n;
}

/* At the end of a transaction with a tracked request, queue its event. */
static void
track_xact_callback(XactEvent event, void *arg)
{
	int32		status;
	int64		elapsed_us;
	int32		elapsed_ms;

	if (!track_active)
		return;
	switch (event)
	{
		case XACT_EVENT_COMMIT:
		case XACT_EVENT_PARALLEL_COMMIT:
		case XACT_EVENT_PREPARE:
			status = 200;
			break;
		case XACT_EVENT_ABORT:
		case XACT_EVENT_PARALLEL_ABORT:
			status = 500;
			break;
		default:
			return;
	}
	track_active = false;

	/* SET LOCAL values are still in place: AtEOXact_GUC runs later. */
	{
		int32		set = response_status_setting();

		if (set > 0)
			status = set;
	}
	elapsed_us = GetCurrentTimestamp() - track_start;
	if (elapsed_us < 0)
		elapsed_us = 0;
	elapsed_ms = (int32) Min((elapsed_us + 500) / 1000, (int64) PG_INT32_MAX);

	hk_usage_enqueue(&track_key_id, track_start,
					 track_has_endpoint ? track_endpoint : NULL,
					 track_endpoint_len, elapsed_ms, status);
}

/*
 * Queue one usage event for this request when the transaction ends (see the
 * banner); endpoint NULL for none.
 */
void
hk_track_request(const pg_uuid_t *key_id, const text *endpoint)
{
	char		buf[HK_USAGE_ENDPOINT_LEN];
	int			len = 0;

	hk_require_preload();
	if (endpoint != NULL)
		len = hk_usage_endpoint_arg(endpoint, buf);

	if (!track_callback_registered)
	{
		RegisterXactCallback(track_xact_callback, NULL);
		track_callback_registered = true;
	}
	if (!track_active)
		track_start = GetCurrentTimestamp();
	track_key_id = *key_id;
	track_has_endpoint = endpoint != NULL;
	track_endpoint_len = len;
	if (track_has_endpoint)
		memcpy(track_endpoint, buf, len + 1);
	track_active = true;
}
