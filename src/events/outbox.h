/*-------------------------------------------------------------------------
 *
 * outbox.h
 *	  Event ids for hokusai_auth.events, and the delivery horizon: the
 *	  lowest id a reader may not yet pass because its transaction may still
 *	  commit.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_EVENTS_OUTBOX_H
#define HK_EVENTS_OUTBOX_H

#include "postgres.h"

extern void hk_outbox_init(void);
extern void hk_outbox_shmem_request(void);
extern void hk_outbox_shmem_startup(void);

/*
 * The next event id (nextval of hokusai_auth.events_id_seq), with the first
 * id of each transaction published as in flight until the transaction ends.
 */
extern int64 hk_outbox_next_id(void);

/*
 * Every event with an id below the returned one has committed (and is
 * visible to any snapshot taken after this returns) or never will.
 */
extern int64 hk_outbox_horizon(void);

#endif							/* HK_EVENTS_OUTBOX_H */
