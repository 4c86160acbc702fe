/*-------------------------------------------------------------------------
 *
 * post.c
 *	  Delivering one event to the webhook receiver: a POST of its JSON,
 *	  signed, retried until the receiver takes it or refuses it for good.
 *
 * The request:
 *
 *	POST <url>
 *	Content-Type: application/json
 *	Hokusai-Event-Id: <id>
 *	Hokusai-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256>
 *
 *	<the event as JSON, byte for byte as signed>
 *
 * v1 is HMAC-SHA256, keyed by the secret, of "<t>.<body>" (libsodium).  t
 * is the time of each attempt, so a receiver can refuse old signatures
 * (replays) and still accept a retry.
 *
 * Outcomes: 2xx is delivered.  A failure to connect or to finish in time
 * (TLS too), 408, 429 and 5xx are retried: after 0.5 s, then twice as long
 * each time up to 30 s, each wait randomised to between half and all of
 * it (jitter), longer when the receiver asks with Retry-After (up to 5
 * minutes), for as long as it takes: delivery is at least once.  Any
 * other answer (a redirect, which is not followed, or a 4xx) means the
 * receiver will never take it: the event is given up, with a line on
 * stderr, and not sent again.
 *
 * Neither the secret nor the URL (which may hold a credential) is ever
 * printed: messages name the receiver by scheme, host and port.  No
 * response body is kept.  Certificates are verified (the system's CA
 * bundle, --cacert, or CURL_CA_BUNDLE).
 *
 * src/bin/hokusai/post.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>
#include <sodium.h>

#include "post.h"
#include "report.h"
#include "stream.h"

#define POST_TIMEOUT_MS			10000
#define POST_CONNECT_TIMEOUT_MS 5000
#define BACKOFF_FIRST_MS		500
#define BACKOFF_MAX_MS			30000
#define RETRY_AFTER_MAX_S		300

static CURL *curl = NULL;
static const unsigned char *key = NULL;
static size_t key_len = 0;
static char origin[300];
static char errbuf[CURL_ERROR_SIZE];

/* Response bodies are not kept */
static size_t
discard(char *ptr, size_t size, size_t nmemb, void *userdata)
{
	(void) ptr;
	(void) userdata;
	return size * nmemb;
}

/* "scheme://host[:port]" of the URL, for messages */
static void
set_origin(const char *url)
{
	CURLU	   *u = curl_url();
	char	   *scheme = NULL;
	char	   *host = NULL;
	char	   *port = NULL;

	if (u == NULL || curl_url_set(u, CURLUPART_URL, url, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) != CURLUE_OK ||
		curl_url_get(u, CURLUPART_HOST, &host, 0) != CURLUE_OK)
		fail(EXIT_USAGE, "webhook: --url is not a URL that can be parsed");
	if (curl_url_get(u, CURLUPART_PORT, &port, 0) == CURLUE_OK)
		snprintf(origin, sizeof(origin), "%s://%s:%s", scheme, host, port);
	else
		snprintf(origin, sizeof(origin), "%s://%s", scheme, host);
	curl_free(scheme);
	curl_free(host);
	curl_free(port);
	curl_url_cleanup(u);
}

/* The receiver's scheme, host and port */
const char *
receiver_origin(void)
{
	return origin;
}

/* Set up delivery to url (checked by the caller) with the secret */
void
receiver_open(const char *url, const char *cacert, const unsigned char *secret,
			  size_t secret_len)
{
	if (sodium_init() < 0)
		fail(EXIT_SERVER, "webhook: libsodium could not be initialised");
	if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK ||
		(curl = curl_easy_init()) == NULL)
		fail(EXIT_SERVER, "webhook: libcurl could not be initialised");
	set_origin(url);
	key = secret;
	key_len = secret_len;
	curl_easy_setopt(curl, CURLOPT_URL, url);
#if LIBCURL_VERSION_NUM >= 0x075500
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
#else
	curl_easy_setopt(curl, CURLOPT_PROTOCOLS, (long) (CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
	curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
	curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long) POST_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long) POST_CONNECT_TIMEOUT_MS);
	curl_easy_setopt(curl, CURLOPT_USERAGENT, "hokusai-webhook/" HOKUSAI_VERSION);
	curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, discard);
	curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, errbuf);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(curl, CURLOPT_SSL_VERIFYHOST, 2L);
	if (cacert != NULL)
		curl_easy_setopt(curl, CURLOPT_CAINFO, cacert);
}

/*
 * "t=<t>,v1=<hex HMAC-SHA256 of "<t>.<body>">" into out (at least 100
 * bytes).
 */
void
webhook_signature(const unsigned char *secret, size_t secret_len, long long t,
				  const char *body, size_t body_len, char *out, size_t out_size)
{
	crypto_auth_hmacsha256_state st;
	unsigned char mac[crypto_auth_hmacsha256_BYTES];
	char		hex[2 * crypto_auth_hmacsha256_BYTES + 1];
	char		ts[24];

	snprintf(ts, sizeof(ts), "%lld", t);
	crypto_auth_hmacsha256_init(&st, secret, secret_len);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *) ts, strlen(ts));
	crypto_auth_hmacsha256_update(&st, (const unsigned char *) ".", 1);
	crypto_auth_hmacsha256_update(&st, (const unsigned char *) body, body_len);
	crypto_auth_hmacsha256_final(&st, mac);
	sodium_memzero(&st, sizeof(st));
	sodium_bin2hex(hex, sizeof(hex), mac, sizeof(mac));
	snprintf(out, out_size, "t=%s,v1=%s", ts, hex);
}

typedef enum PostOutcome
{
	POST_DELIVERED,
	POST_RETRY,
	POST_GIVE_UP
} PostOutcome;

/* One attempt; *status is the HTTP status (0: none), why says what failed */
static PostOutcome
post_once(const char *id, const char *body, long *status, long *retry_after,
		  char *why, size_t why_size)
{
	struct curl_slist *headers = NULL;
	char		line[200];
	CURLcode	rc;
	curl_off_t	ra = 0;

	headers = curl_slist_append(headers, "Content-Type: application/json");
	snprintf(line, sizeof(line), "Hokusai-Event-Id: %s", id);
	headers = curl_slist_append(headers, line);
	strcpy(line, "Hokusai-Signature: ");
	webhook_signature(key, key_len, (long long) time(NULL), body, strlen(body),
					  line + strlen(line), sizeof(line) - strlen(line));
	headers = curl_slist_append(headers, line);
	/* no "Expect: 100-continue" round trip */
	headers = curl_slist_append(headers, "Expect:");
	if (headers == NULL)
		fail(EXIT_SERVER, "out of memory");

	curl_easy_setopt(curl, CURLOPT_HTTPHEADER, headers);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDS, body);
	curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t) strlen(body));
	errbuf[0] = '\0';
	rc = curl_easy_perform(curl);
	curl_slist_free_all(headers);
	*status = 0;
	*retry_after = 0;
	if (rc != CURLE_OK)
	{
		snprintf(why, why_size, "could not reach the receiver: %s",
				 errbuf[0] ? errbuf : curl_easy_strerror(rc));
		return POST_RETRY;
	}
	curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, status);
	if (curl_easy_getinfo(curl, CURLINFO_RETRY_AFTER, &ra) == CURLE_OK && ra > 0)
		*retry_after = ra > RETRY_AFTER_MAX_S ? RETRY_AFTER_MAX_S : (long) ra;
	snprintf(why, why_size, "the receiver answered %ld", *status);
	if (*status >= 200 && *status < 300)
		return POST_DELIVERED;
	if (*status == 408 || *status == 429 || *status >= 500)
		return POST_RETRY;
	return POST_GIVE_UP;
}

/*
 * Deliver one event: true once the receiver took it, false when it refused
 * it for good (given up; said on stderr).  Retries as long as it takes.
 */
bool
deliver_event(const char *id, const char *kind, const char *body)
{
	long		backoff = BACKOFF_FIRST_MS;
	char		why[CURL_ERROR_SIZE + 64];

	for (int attempt = 1;; attempt++)
	{
		long		status;
		long		retry_after;
		long		wait;

		switch (post_once(id, body, &status, &retry_after, why, sizeof(why)))
		{
			case POST_DELIVERED:
				if (attempt > 1)
					note("webhook: event %s (%s) delivered to %s at attempt %d",
						 id, kind, origin, attempt);
				return true;
			case POST_GIVE_UP:
				note("webhook: giving up on event %s (%s): %s%s, which is not retried; it will not be sent again (--after %lld sends it and those after it again)",
					 id, kind, why, status >= 300 && status < 400 ? " (redirects are not followed)" : "",
					 strtoll(id, NULL, 10) - 1);
				return false;
			case POST_RETRY:
				break;
		}
		/* equal jitter: between half and all of the backoff */
		wait = backoff / 2 + (long) randombytes_uniform((uint32_t) (backoff / 2 + 1));
		if (retry_after * 1000 > wait)
			wait = retry_after * 1000;
		note("webhook: event %s (%s) to %s: %s; retrying in %.1f s (attempt %d)",
			 id, kind, origin, why, wait / 1000.0, attempt + 1);
		sleep_ms(wait);
		backoff = backoff * 2 > BACKOFF_MAX_MS ? BACKOFF_MAX_MS : backoff * 2;
	}
}
