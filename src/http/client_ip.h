/*-------------------------------------------------------------------------
 *
 * client_ip.h
 *	  The client address of a request behind hokusai_auth.trusted_proxies.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_CLIENT_IP_H
#define HK_CLIENT_IP_H

#include "postgres.h"

#include "utils/guc.h"

#include "common/cidr.h"

#define HK_MAX_TRUSTED		64	/* entries in trusted_proxies */

extern bool hk_client_from_forwarded_for(const char *xff, size_t len,
										 HkCidr *client);

/* GUC hooks for hokusai_auth.trusted_proxies (guc.c). */
extern bool hk_trusted_proxies_check(char **newval, void **extra, GucSource source);
extern void hk_trusted_proxies_assign(const char *newval, void *extra);

#endif							/* HK_CLIENT_IP_H */
