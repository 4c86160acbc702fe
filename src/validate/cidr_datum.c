/*-------------------------------------------------------------------------
 *
 * cidr_datum.c
 *	  HkCidr to and from PostgreSQL's inet and cidr values: a key's
 *	  allowed_ips, validate_key()'s client_ip, client_ip()'s arguments and
 *	  result, and the text hokusai.client_ip holds.
 *
 * Every inet or cidr converted here is unwrapped from IPv4-mapped form
 * (hk_cidr_unmap_v4), so allow-lists written either way match.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "utils/builtins.h"
#include "utils/lsyscache.h"

#include "validate/cidr_datum.h"

/* An inet or cidr value as an HkCidr, IPv4-mapped networks unwrapped. */
void
hk_cidr_from_inet(const inet *src, HkCidr *dst)
{
	const inet_struct *in = (const inet_struct *) VARDATA_ANY(src);

	memset(dst, 0, sizeof(*dst));
	dst->family = in->family == PGSQL_AF_INET ? HK_AF_INET : HK_AF_INET6;
	dst->bits = in->bits;
	memcpy(dst->addr, in->ipaddr, in->family == PGSQL_AF_INET ? 4 : 16);
	hk_cidr_unmap_v4(dst);
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

/* The inet value of c, palloc'd. */
Datum
hk_cidr_to_inet_datum(const HkCidr *c)
{
	inet	   *res = (inet *) palloc0(sizeof(inet));

	ip_family(res) = c->family == HK_AF_INET ? PGSQL_AF_INET : PGSQL_AF_INET6;
	ip_bits(res) = c->bits;
	memcpy(ip_addr(res), c->addr, c->family == HK_AF_INET ? 4 : 16);
	SET_INET_VARSIZE(res);
	return InetPGetDatum(res);
}

/*
 * The address of c as host(inet) prints it (no prefix length), palloc'd:
 * the same call to pg_inet_net_ntop that network_host makes.
 */
char *
hk_cidr_host_text(const HkCidr *c)
{
	char		tmp[sizeof("xxxx:xxxx:xxxx:xxxx:xxxx:xxxx:255.255.255.255/128")];
	char	   *slash;
	bool		v4 = c->family == HK_AF_INET;

	if (pg_inet_net_ntop(v4 ? PGSQL_AF_INET : PGSQL_AF_INET6, c->addr,
						 v4 ? 32 : 128, tmp, sizeof(tmp)) == NULL)
		ereport(ERROR,
				(errcode(ERRCODE_INVALID_BINARY_REPRESENTATION),
				 errmsg("could not format inet value: %m")));
	if ((slash = strchr(tmp, '/')) != NULL)
		*slash = '\0';
	return pstrdup(tmp);
}
