/*-------------------------------------------------------------------------
 *
 * post.h
 *	  Signed POSTs of events to a webhook receiver, with libcurl.
 *
 * src/bin/hokusai/post.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_POST_H
#define HOKUSAI_POST_H

#include <stdbool.h>
#include <stddef.h>

/* Longest secret accepted, in bytes */
#define WEBHOOK_SECRET_MAX	1024

extern void receiver_open(const char *url, const char *cacert,
						  const unsigned char *secret, size_t secret_len);
extern const char *receiver_origin(void);
extern bool deliver_event(const char *id, const char *kind, const char *body);
extern void webhook_signature(const unsigned char *secret, size_t secret_len,
							  long long t, const char *body, size_t body_len,
							  char *out, size_t out_size);

#endif							/* HOKUSAI_POST_H */
