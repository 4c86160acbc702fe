/*-------------------------------------------------------------------------
 *
 * admin.h
 *	  The "hokusai auth" commands that operators needed SQL for before:
 *	  update-key, list-users, deactivate-user, audit, rate-limit-reset.
 *
 * src/bin/hokusai/admin.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_ADMIN_H
#define HOKUSAI_ADMIN_H

#include "parse.h"

extern void update_key(const CommandLine *cl);
extern void list_users(const CommandLine *cl);
extern void deactivate_user(const CommandLine *cl);
extern void audit(const CommandLine *cl);
extern void rate_limit_reset(const CommandLine *cl);

#endif							/* HOKUSAI_ADMIN_H */
