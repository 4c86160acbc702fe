/*-------------------------------------------------------------------------
 *
 * trust.h
 *	  The settings the worker pins against its database's owner.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WORKER_TRUST_H
#define HK_WORKER_TRUST_H

/* Pin the settings, right after connecting and before any statement. */
extern void hk_worker_pin_settings(void);
extern void hk_worker_brief_lock_waits(bool brief);

#endif							/* HK_WORKER_TRUST_H */
