/*-------------------------------------------------------------------------
 *
 * postgrest.h
 *	  Speaking PostgREST from C: request settings, transaction-local
 *	  settings, response headers and custom HTTP errors.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_POSTGREST_H
#define HK_POSTGREST_H

#include "postgres.h"

#include "utils/jsonb.h"

/*
 * HTTP response headers of an error or a success, in the order jsonb keeps
 * object keys (by length, then bytes), which is how 1.3 sent them.
 */
typedef enum HkHeader
{
	HK_HDR_RATELIMIT,			/* RateLimit */
	HK_HDR_RETRY_AFTER,			/* Retry-After */
	HK_HDR_POLICY,				/* RateLimit-Policy */
	HK_HDR_WWW_AUTHENTICATE,	/* WWW-Authenticate */
	HK_HDR_USED,				/* X-RateLimit-Used */
	HK_HDR_LIMIT,				/* X-RateLimit-Limit */
	HK_HDR_RESET,				/* X-RateLimit-Reset */
	HK_HDR_RESOURCE,			/* X-RateLimit-Resource */
	HK_HDR_REMAINING,			/* X-RateLimit-Remaining */
	HK_HDR_COUNT
} HkHeader;

typedef struct HkHeaders
{
	const char *value[HK_HDR_COUNT];	/* NULL: not sent */
} HkHeaders;

extern const HkHeaders hk_no_headers;

extern char *hk_setting(const char *name);
extern void hk_set_local(const char *name, const char *value);
extern Jsonb *hk_setting_jsonb(const char *name, const char *value);
extern char *hk_member_text(Jsonb *j, const char *key, int *len);
extern void hk_add_response_headers(const HkHeaders *h);
extern void hk_http_error(int status, const char *code, const char *message,
						  const char *details, const char *hint,
						  const HkHeaders *headers) pg_attribute_noreturn();

#endif							/* HK_POSTGREST_H */
