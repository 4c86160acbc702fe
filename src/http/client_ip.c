/*-------------------------------------------------------------------------
 *
 * client_ip.c
 *	  hokusai_auth.trusted_proxies (its GUC hooks keep it parsed) and the
 *	  client address behind those proxies: for pre_request() and for the
 *	  SQL function hokusai_auth.client_ip().
 *
 * The X-Forwarded-For walk itself is common/forwarded.c.  When a peer
 * address is known and it is not a trusted proxy, the header is not
 * believed at all.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include "fmgr.h"
#include "utils/builtins.h"
#include "utils/guc.h"
#include "utils/inet.h"

#include "common/forwarded.h"
#include "http/client_ip.h"
#include "validate/cidr_datum.h"

PG_FUNCTION_INFO_V1(hk_sql_client_ip);

/* The parsed hokusai_auth.trusted_proxies, kept by the GUC machinery. */
typedef struct HkTrusted
{
	int			n;
	HkCidr		nets[HK_MAX_TRUSTED];
} HkTrusted;

static HkTrusted *trusted = NULL;

/* check_hook: parse the list into the setting's "extra". */
bool
hk_trusted_proxies_check(char **newval, void **extra, GucSource source)
{
	/* GUC "extra" must be malloc'd: the GUC machinery frees it. */
	HkTrusted  *t = (HkTrusted *) malloc(sizeof(HkTrusted));

	if (t == NULL)
		return false;
	t->n = hk_parse_cidr_list(*newval ? *newval : "", t->nets, HK_MAX_TRUSTED);
	if (t->n < 0)
	{
		free(t);
		GUC_check_errdetail("List must contain at most %d comma-separated IPv4 or IPv6 addresses or CIDRs.",
							HK_MAX_TRUSTED);
		return false;
	}
	*extra = t;
	return true;
}

/* assign_hook: the parsed list in effect. */
void
hk_trusted_proxies_assign(const char *newval, void *extra)
{
	trusted = (HkTrusted *) extra;
}

/* The trusted proxies in effect, as an array and its length. */
static const HkCidr *
trusted_nets(int *n)
{
	*n = trusted ? trusted->n : 0;
	return trusted ? trusted->nets : NULL;
}

/*
 * The client address from an X-Forwarded-For value and
 * hokusai_auth.trusted_proxies, with no peer address: what
 * hokusai_auth.client_ip(forwarded_for) returns.  False when there is none.
 */
bool
hk_client_from_forwarded_for(const char *xff, size_t len, HkCidr *client)
{
	int			n;
	const HkCidr *nets = trusted_nets(&n);

	return hk_forwarded_client(xff, len, nets, n, client) == HK_XFF_FOUND;
}

/*
 * hokusai_auth.client_ip(forwarded_for text, peer inet DEFAULT NULL)
 *	returns inet
 *
 * The client address for a request that reached the database through
 * proxies: peer when it is given and not a trusted proxy (the header is not
 * believed) or when the header is empty; otherwise the right-most
 * X-Forwarded-For entry outside hokusai_auth.trusted_proxies; NULL when the
 * header is malformed before that entry or longer than 8192 bytes.
 */
Datum
hk_sql_client_ip(PG_FUNCTION_ARGS)
{
	HkCidr		peer;
	HkCidr		client;
	bool		have_peer = !PG_ARGISNULL(1);
	int			n;
	const HkCidr *nets = trusted_nets(&n);
	text	   *xff;

	if (have_peer)
	{
		hk_cidr_from_inet(PG_GETARG_INET_PP(1), &peer);
		if (!hk_cidrs_allow(nets, n, &peer))
			PG_RETURN_DATUM(PG_GETARG_DATUM(1));
	}
	if (PG_ARGISNULL(0))
	{
		if (have_peer)
			PG_RETURN_DATUM(PG_GETARG_DATUM(1));
		PG_RETURN_NULL();
	}
	xff = PG_GETARG_TEXT_PP(0);
	switch (hk_forwarded_client(VARDATA_ANY(xff), VARSIZE_ANY_EXHDR(xff), nets, n, &client))
	{
		case HK_XFF_FOUND:
			PG_RETURN_DATUM(hk_cidr_to_inet_datum(&client));
		case HK_XFF_EMPTY:
			if (have_peer)
				PG_RETURN_DATUM(PG_GETARG_DATUM(1));
			PG_RETURN_NULL();
		case HK_XFF_INVALID:
			break;
	}
	PG_RETURN_NULL();
}
