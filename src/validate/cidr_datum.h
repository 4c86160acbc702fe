/*-------------------------------------------------------------------------
 *
 * cidr_datum.h
 *	  HkCidr (common/cidr.h) to and from PostgreSQL's inet and cidr.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_CIDR_DATUM_H
#define HK_CIDR_DATUM_H

#include "postgres.h"

#include <sys/socket.h>		/* AF_INET, for utils/inet.h */

#include "utils/array.h"
#include "utils/inet.h"

#include "common/cidr.h"

extern void hk_cidr_from_inet(const inet *src, HkCidr *dst);
extern int	hk_cidrs_from_array(ArrayType *arr, HkCidr **out);
extern Datum hk_cidr_to_inet_datum(const HkCidr *c);
extern char *hk_cidr_host_text(const HkCidr *c);

#endif							/* HK_CIDR_DATUM_H */
