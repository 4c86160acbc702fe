/*-------------------------------------------------------------------------
 *
 * hokusai_auth.c
 *	  Module entry point.  _PG_init only delegates: configuration lives in
 *	  guc.c, each subsystem owns its own start-up.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"

#include "hokusai_auth.h"

PG_MODULE_MAGIC;

void		_PG_init(void);

void
_PG_init(void)
{
	hk_crypto_init();
	hk_define_gucs();
}
