/*-------------------------------------------------------------------------
 *
 * worker.c
 *	  Placeholder until the background worker lands: registers nothing.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "worker/worker.h"

void
hk_worker_register(void)
{
}
