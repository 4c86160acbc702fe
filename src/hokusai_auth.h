/*-------------------------------------------------------------------------
 *
 * hokusai_auth.h
 *	  Declarations shared by the parts of hokusai_auth: configuration
 *	  variables, the init entry points that _PG_init delegates to, and the
 *	  check that the library was preloaded.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_AUTH_H
#define HOKUSAI_AUTH_H

#include "postgres.h"

/* Configuration (guc.c) */
extern int	hk_bcrypt_cost;
extern int	hk_cache_size;
extern int	hk_cache_ttl;
extern int	hk_max_failures_per_prefix;
extern int	hk_default_rate_limit_per_hour;
extern int	hk_default_burst_limit;
extern int	hk_flush_interval;
extern int	hk_usage_queue_size;
extern int	hk_events_retention;
extern double hk_usage_raw_sample;
extern bool hk_require_https;
extern bool hk_enable_call_scan;
extern char *hk_trusted_proxies;
extern char *hk_database;
extern char *hk_primary_conninfo;

extern void hk_define_gucs(void);

/* libsodium set-up (keys/generate.c) */
extern void hk_crypto_init(void);

/* Shared memory hooks (shmem.c) */
extern void hk_shmem_init(void);
extern bool hk_shmem_ready(void);
extern void hk_require_preload(void);

/* Schema names used in queries the C code runs. */
#define HK_SCHEMA "hokusai_auth"

/* Ask the CPU to start loading the line at p; reads nothing, never faults. */
#if defined(__GNUC__) || defined(__clang__)
#define hk_prefetch(p) __builtin_prefetch(p)
#else
#define hk_prefetch(p) ((void) (p))
#endif

#endif							/* HOKUSAI_AUTH_H */
