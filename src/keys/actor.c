/*-------------------------------------------------------------------------
 *
 * actor.c
 *	  Who is acting, for the audit log.
 *
 * Key-management functions run as SECURITY DEFINER, where current_user is
 * the function's owner.  The audit log wants the role that called them:
 * the session's SET ROLE identity (for PostgREST, the role it switched to
 * for the request), which security-definer calls do not change.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "miscadmin.h"
#include "utils/builtins.h"

PG_FUNCTION_INFO_V1(hk_sql_caller_role);

/* hokusai_auth._caller_role() returns text */
Datum
hk_sql_caller_role(PG_FUNCTION_ARGS)
{
	PG_RETURN_TEXT_P(cstring_to_text(GetUserNameFromId(GetOuterUserId(), false)));
}
