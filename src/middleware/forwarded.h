/*-------------------------------------------------------------------------
 *
 * forwarded.h
 *	  The client address behind trusted proxies (X-Forwarded-For).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_FORWARDED_H
#define HK_FORWARDED_H

#include "utils/guc.h"

#include "middleware/ip_check.h"

#define HK_XFF_MAX_LEN		8192	/* longer headers are refused */
#define HK_MAX_TRUSTED		64		/* entries in trusted_proxies */

/* Result of hk_forwarded_client(). */
typedef enum HkForwarded
{
	HK_XFF_FOUND,				/* *client set */
	HK_XFF_EMPTY,				/* no addresses in the header */
	HK_XFF_INVALID				/* unparsable entry before the client, or too long */
} HkForwarded;

extern bool hk_parse_addr(const char *s, size_t len, HkCidr *out);
extern bool hk_parse_cidr(const char *s, size_t len, HkCidr *out);
extern int	hk_parse_cidr_list(const char *list, HkCidr *out, int max);
extern HkForwarded hk_forwarded_client(const char *xff, size_t len,
									   const HkCidr *trusted, int ntrusted,
									   HkCidr *client);
extern bool hk_client_from_forwarded_for(const char *xff, size_t len,
										 HkCidr *client);
extern Datum hk_cidr_to_inet_datum(const HkCidr *c);

/* GUC hooks for hokusai_auth.trusted_proxies (guc.c). */
extern bool hk_trusted_proxies_check(char **newval, void **extra, GucSource source);
extern void hk_trusted_proxies_assign(const char *newval, void *extra);

#endif							/* HK_FORWARDED_H */
