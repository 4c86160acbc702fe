/*-------------------------------------------------------------------------
 *
 * endpoint.h
 *	  The endpoint text of a usage event: checked on the way in, cut to
 *	  what the queue keeps.
 *
 *-------------------------------------------------------------------------
 */
#ifndef HK_ENDPOINT_H
#define HK_ENDPOINT_H

#include "postgres.h"

/* Longest endpoint record_usage() and track_request() accept. */
#define HK_ENDPOINT_MAX_CHARS	2048

extern int	hk_usage_endpoint_arg(const text *t, char *buf);
extern int	hk_usage_clean_endpoint(const char *src, int len, char *buf);

#endif							/* HK_ENDPOINT_H */
