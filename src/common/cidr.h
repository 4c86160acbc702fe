/*-------------------------------------------------------------------------
 *
 * cidr.h
 *	  IPv4 and IPv6 addresses and networks in a fixed 18 bytes (HkCidr):
 *	  parsing, and matching an address against a list of networks.
 *
 * Plain C, no server headers (see key_format.h).  Conversions from and to
 * PostgreSQL's inet and cidr are in validate/cidr_datum.c.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_COMMON_CIDR_H
#define HK_COMMON_CIDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define HK_AF_INET		4
#define HK_AF_INET6		6

/* A CIDR or address in a fixed 18 bytes: fits in shared memory as is. */
typedef struct HkCidr
{
	uint8_t		family;			/* HK_AF_INET or HK_AF_INET6 */
	uint8_t		bits;			/* prefix length */
	uint8_t		addr[16];		/* network order; IPv4 in the first 4 */
} HkCidr;

extern bool hk_parse_addr(const char *s, size_t len, HkCidr *out);
extern bool hk_parse_cidr(const char *s, size_t len, HkCidr *out);
extern int	hk_parse_cidr_list(const char *list, HkCidr *out, int max);
extern void hk_cidr_unmap_v4(HkCidr *c);
extern bool hk_cidr_contains(const HkCidr *net, const HkCidr *addr);
extern bool hk_cidrs_allow(const HkCidr *nets, int n, const HkCidr *addr);

#endif							/* HK_COMMON_CIDR_H */
