/*-------------------------------------------------------------------------
 *
 * inval_log.h
 *	  The invalidation log that carries cache invalidations to hot
 *	  standbys through the WAL (written on the primary, read on standbys).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_INVAL_LOG_H
#define HK_INVAL_LOG_H

#include "postgres.h"

#include "utils/uuid.h"

#include "validate/cache.h"

/* The log table, in the hokusai_auth schema. */
#define HK_INVAL_LOG_TABLE	"cache_invalidations"

/*
 * On the primary, in the transaction that changes a key or a user: append
 * (scope, id) to the log (id NULL for HK_SCOPE_ALL) and put a relcache
 * invalidation of the log table into this transaction's commit record.
 * Nothing happens when the extension has no log table (before 1.6).
 */
extern void hk_inval_log_append(HkCacheScope scope, const pg_uuid_t *id);

/* The worker's pruning of the log (and of the shipping state). */
extern void hk_inval_log_prune(void);

/* The log table's OID in this database, InvalidOid when there is none. */
extern Oid	hk_inval_log_relid(void);

/*
 * Run fn(arg) connected to SPI as the owner of the hokusai_auth schema,
 * under SECURITY_RESTRICTED_OPERATION, with search_path pinned to
 * pg_catalog, pg_temp (DESIGN.md section 11).
 */
extern void hk_spi_as_schema_owner(void (*fn) (void *arg), void *arg);

#endif							/* HK_INVAL_LOG_H */
