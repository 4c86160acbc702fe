/*-------------------------------------------------------------------------
 *
 * shmem.c
 *	  Shared memory hooks, and whether there is shared memory at all.
 *	  Each subsystem sizes and initialises its own part (its own struct and
 *	  LWLock tranche); this file only chains the hooks and calls them in
 *	  order, and answers for them all when the library was not preloaded.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "miscadmin.h"
#include "storage/ipc.h"
#include "storage/lwlock.h"
#include "storage/shmem.h"

#include "hokusai_auth.h"
#include "metering/credits.h"
#include "events/event_queue.h"
#include "events/outbox.h"
#include "ratelimit/limiter.h"
#include "replica/ship.h"
#include "replica/walinval.h"
#include "usage/usage_queue.h"
#include "validate/cache.h"
#include "validate/stats.h"
#include "validate/throttle.h"

static shmem_request_hook_type prev_shmem_request_hook = NULL;
static shmem_startup_hook_type prev_shmem_startup_hook = NULL;

/* Set once our shared memory exists (inherited by forked backends). */
static bool shmem_ready = false;

/* shmem_request_hook: space and lock tranches of every part. */
static void
hk_shmem_request(void)
{
	if (prev_shmem_request_hook)
		prev_shmem_request_hook();
	hk_cache_shmem_request();
	hk_stats_shmem_request();
	hk_throttle_shmem_request();
	hk_limiter_shmem_request();
	hk_credits_shmem_request();
	hk_usage_shmem_request();
	hk_outbox_shmem_request();
	hk_event_queue_shmem_request();
	hk_walinval_shmem_request();
	hk_ship_shmem_request();
}

/* shmem_startup_hook: create or attach to every part. */
static void
hk_shmem_startup(void)
{
	if (prev_shmem_startup_hook)
		prev_shmem_startup_hook();

	LWLockAcquire(AddinShmemInitLock, LW_EXCLUSIVE);
	hk_cache_shmem_startup();
	hk_stats_shmem_startup();
	hk_throttle_shmem_startup();
	hk_limiter_shmem_startup();
	hk_credits_shmem_startup();
	hk_usage_shmem_startup();
	hk_outbox_shmem_startup();
	hk_event_queue_shmem_startup();
	hk_walinval_shmem_startup();
	hk_ship_shmem_startup();
	LWLockRelease(AddinShmemInitLock);
	shmem_ready = true;
}

/* From _PG_init while shared_preload_libraries is being processed. */
void
hk_shmem_init(void)
{
	prev_shmem_request_hook = shmem_request_hook;
	shmem_request_hook = hk_shmem_request;
	prev_shmem_startup_hook = shmem_startup_hook;
	shmem_startup_hook = hk_shmem_startup;
}

/* Does our shared memory exist (was the library preloaded)? */
bool
hk_shmem_ready(void)
{
	return shmem_ready;
}

/*
 * Error out, pg_stat_statements style, when the library was not preloaded
 * and so has no shared memory: every SQL function that needs the cache, the
 * limiter or the usage queue starts with this.
 */
void
hk_require_preload(void)
{
	if (!hk_shmem_ready())
		ereport(ERROR,
				(errcode(ERRCODE_OBJECT_NOT_IN_PREREQUISITE_STATE),
				 errmsg("hokusai_auth must be loaded via shared_preload_libraries"),
				 errhint("Add hokusai_auth to shared_preload_libraries in postgresql.conf and restart the server.")));
}
