/*-------------------------------------------------------------------------
 *
 * invalidate.h
 *	  Forgetting cached keys when the transaction that changed them commits.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_INVALIDATE_H
#define HK_INVALIDATE_H

#include "postgres.h"

#include "utils/uuid.h"

extern void hk_invalidate_init(void);
extern bool hk_cache_usable(void);

extern void hk_invalidate_key_at_commit(const pg_uuid_t *key_id);
extern void hk_invalidate_user_at_commit(const pg_uuid_t *user_id);
extern void hk_invalidate_all_at_commit(void);

#endif							/* HK_INVALIDATE_H */
