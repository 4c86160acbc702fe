/*-------------------------------------------------------------------------
 *
 * forwarded.h
 *	  The client address behind trusted proxies: the X-Forwarded-For walk.
 *	  Plain C, no server headers (see key_format.h).
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_COMMON_FORWARDED_H
#define HK_COMMON_FORWARDED_H

#include "common/cidr.h"

#define HK_XFF_MAX_LEN		8192	/* longer headers are refused */

/* Result of hk_forwarded_client(). */
typedef enum HkForwarded
{
	HK_XFF_FOUND,				/* *client set */
	HK_XFF_EMPTY,				/* no addresses in the header */
	HK_XFF_INVALID				/* unparsable entry before the client, or too long */
} HkForwarded;

extern HkForwarded hk_forwarded_client(const char *xff, size_t len,
									   const HkCidr *trusted, int ntrusted,
									   HkCidr *client);

#endif							/* HK_COMMON_FORWARDED_H */
