/*-------------------------------------------------------------------------
 *
 * caller.h
 *	  The authenticated caller of the current HTTP request, as
 *	  pre_request() found it, for current_key_id(), current_user_id(),
 *	  current_scopes() and has_scope().
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_CALLER_H
#define HK_CALLER_H

#include "postgres.h"

#include "utils/uuid.h"

extern void hk_caller_reset(void);
extern void hk_caller_set_key(const pg_uuid_t *key_id, const pg_uuid_t *user_id,
							  const char *scopes, int scopes_len);
extern void hk_caller_set_user(const pg_uuid_t *user_id);

#endif							/* HK_CALLER_H */
