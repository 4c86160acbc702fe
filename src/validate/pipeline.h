/*-------------------------------------------------------------------------
 *
 * pipeline.h
 *	  Validating a key: the request-path check behind validate_key() and
 *	  pre_request().
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_PIPELINE_H
#define HK_PIPELINE_H

#include "postgres.h"

#include "utils/array.h"
#include "utils/uuid.h"

#include "common/cidr.h"
#include "common/key_format.h"
#include "validate/scopes.h"

/* Outcome of a validation; the names are validate_key()'s status column. */
typedef enum HkStatus
{
	HK_STATUS_OK,
	HK_STATUS_MALFORMED,
	HK_STATUS_UNKNOWN,
	HK_STATUS_REVOKED,
	HK_STATUS_EXPIRED,
	HK_STATUS_IP_DENIED,
	HK_STATUS_RATE_LIMITED,
	HK_STATUS_DISABLED,
	HK_STATUS_INSUFFICIENT_SCOPE,
	HK_STATUS_CREDITS_EXHAUSTED
} HkStatus;

#define HK_NUM_STATUSES (HK_STATUS_CREDITS_EXHAUSTED + 1)

extern const char *const hk_status_names[];

/* One validation asked for: validate_key()'s arguments. */
typedef struct HkRequest
{
	const char *key;			/* key_len bytes, not NUL-terminated; NULL: none */
	size_t		key_len;
	const HkCidr *client;		/* NULL when unknown */
	const text *endpoint;		/* NULL: no usage event */
	int32		cost;			/* credits and rate-limit units to spend */
	ArrayType  *required_scopes;	/* text[]; NULL: none required */
	/* authorization, from pre_request() */
	const HkRouteScope *route_scopes;	/* what the route demands */
	int			n_route_scopes;
	bool		want_scopes;	/* an admitted key's scopes into the result */
} HkRequest;

/* What hk_validate() found: validate_key()'s result columns, and more. */
typedef struct HkValidation
{
	HkStatus	status;
	char		prefix[HK_PREFIX_LEN + 1];	/* key_prefix; "" when malformed */
	bool		known;			/* the secret was proven: the next three are set */
	pg_uuid_t	key_id;
	pg_uuid_t	user_id;
	int32		rate_limit;		/* rate_limit_per_hour */
	bool		has_limits;		/* ok or rate_limited: the next three are set */
	int32		remaining;
	int32		reset_seconds;
	int32		retry_after;
	bool		has_credits;	/* the key has a balance: the next is set */
	int64		credits_remaining;
	/* authorization */
	char		missing_scope[HK_SCOPE_MAX_LEN + 1];	/* insufficient_scope */
	bool		has_scopes;		/* ok and want_scopes: the next three are set */
	int			n_scopes;
	int			scopes_len;
	char	   *scopes;			/* packed (scopes.h), palloc'd */
} HkValidation;

extern void hk_validate(const HkRequest *req, HkValidation *res);

#endif							/* HK_PIPELINE_H */
