/*-------------------------------------------------------------------------
 *
 * ip_check.h
 *	  Matching a client address against a key's allowed CIDRs.
 *
 *-------------------------------------------------------------------------
 */
#ifndef IP_CHECK_H
#define IP_CHECK_H

#include "postgres.h"

#include <sys/socket.h>

#include "utils/array.h"
#include "utils/inet.h"

/* A CIDR or address in a fixed 18 bytes: fits in shared memory as is. */
typedef struct HkCidr
{
	uint8		family;			/* PGSQL_AF_INET or PGSQL_AF_INET6 */
	uint8		bits;			/* prefix length */
	uint8		addr[16];
} HkCidr;

extern void hk_cidr_from_inet(const inet *src, HkCidr *dst);
extern bool hk_cidr_contains(const HkCidr *net, const HkCidr *addr);
extern bool hk_cidrs_allow(const HkCidr *nets, int n, const HkCidr *addr);
extern int	hk_cidrs_from_array(ArrayType *arr, HkCidr **out);

#endif							/* IP_CHECK_H */
