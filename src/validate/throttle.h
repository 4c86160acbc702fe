/*-------------------------------------------------------------------------
 *
 * throttle.h
 *	  Per-key_prefix throttling of failed key verifications.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_THROTTLE_H
#define HK_THROTTLE_H

#include "postgres.h"

extern void hk_throttle_shmem_request(void);
extern void hk_throttle_shmem_startup(void);

extern bool hk_throttle_admit(const char *prefix);
extern void hk_throttle_release(const char *prefix);

#endif							/* HK_THROTTLE_H */
