/*-------------------------------------------------------------------------
 *
 * worker.h
 *	  The background worker that flushes usage and expires keys.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_WORKER_H
#define HK_WORKER_H

extern void hk_worker_register(void);

#endif							/* HK_WORKER_H */
