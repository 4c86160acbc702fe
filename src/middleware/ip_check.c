/*-------------------------------------------------------------------------
 *
 * ip_check.c
 *	  Is a client address inside one of a key's allowed CIDRs?
 *
 * Addresses are compared as bit prefixes.  An IPv4 address that arrives
 * IPv4-mapped (::ffff:a.b.c.d) is treated as the IPv4 address it carries,
 * so a key allowed 203.0.113.0/24 works for clients seen either way.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "catalog/pg_type.h"
#include "utils/lsyscache.h"

#include "middleware/ip_check.h"

static const uint8 v4_mapped_head[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};

void
hk_cidr_from_inet(const inet *src, HkCidr *dst)
{
	const inet_struct *in = (const inet_struct *) VARDATA_ANY(src);

	memset(dst, 0, sizeof(*dst));
	dst->family = in->family;
	dst->bits = in->bits;
	memcpy(dst->addr, in->ipaddr, in->family == PGSQL_AF_INET ? 4 : 16);

	/* Unwrap IPv4-mapped IPv6 (::ffff:0:0/96 and longer prefixes). */
	if (dst->family == PGSQL_AF_INET6 && dst->bits >= 96 &&
		memcmp(dst->addr, v4_mapped_head, sizeof(v4_mapped_head)) == 0)
	{
		dst->family = PGSQL_AF_INET;
		dst->bits -= 96;
		memmove(dst->addr, dst->addr + 12, 4);
		memset(dst->addr + 4, 0, 12);
	}
}

/* Does the network net contain the address (or network) addr? */
bool
hk_cidr_contains(const HkCidr *net, const HkCidr *addr)
{
	int			whole = net->bits / 8;
	int			rest = net->bits % 8;

	if (net->family != addr->family || addr->bits < net->bits)
		return false;
	if (memcmp(net->addr, addr->addr, whole) != 0)
		return false;
	if (rest != 0)
	{
		uint8		mask = (uint8) (0xff << (8 - rest));

		if ((net->addr[whole] & mask) != (addr->addr[whole] & mask))
			return false;
	}
	return true;
}

bool
hk_cidrs_allow(const HkCidr *nets, int n, const HkCidr *addr)
{
	int			i;

	for (i = 0; i < n; i++)
		if (hk_cidr_contains(&nets[i], addr))
			return true;
	return false;
}

/*
 * Convert a cidr[] (or inet[]) into a palloc'd HkCidr array; returns the
 * count.  NULL elements are skipped (create_key refuses them anyway).
 */
int
hk_cidrs_from_array(ArrayType *arr, HkCidr **out)
{
	Datum	   *elems;
	bool	   *nulls;
	int			nelems;
	int16		typlen;
	bool		typbyval;
	char		typalign;
	int			i,
				n = 0;

	get_typlenbyvalalign(ARR_ELEMTYPE(arr), &typlen, &typbyval, &typalign);
	deconstruct_array(arr, ARR_ELEMTYPE(arr), typlen, typbyval, typalign,
					  &elems, &nulls, &nelems);
	*out = palloc0(sizeof(HkCidr) * Max(nelems, 1));
	for (i = 0; i < nelems; i++)
	{
		if (nulls[i])
			continue;
		hk_cidr_from_inet(DatumGetInetPP(elems[i]), &(*out)[n++]);
	}
	return n;
}
