/*-------------------------------------------------------------------------
 *
 * hokusai_auth.c
 *	  Module entry point.  _PG_init only delegates: configuration lives in
 *	  guc.c, shared memory in shmem.c, each subsystem owns its own start-up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"

#include "hokusai_auth.h"
#include "events/outbox.h"
#include "replica/walinval.h"
#include "validate/cache.h"
#include "validate/call_scan.h"
#include "validate/invalidate.h"
#include "worker/worker.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

/* Module load: per-process set-up; shared memory and worker when preloaded. */
void
_PG_init(void)
{
	hk_crypto_init();
	hk_define_gucs();
	hk_cache_init();
	hk_call_scan_init();
	hk_outbox_init();
	hk_invalidate_init();
	hk_walinval_init();
	if (process_shared_preload_libraries_in_progress)
	{
		hk_shmem_init();
		hk_worker_register();
	}
}
