/*-------------------------------------------------------------------------
 *
 * report.c
 *	  Everything the hokusai tool says on stderr, and how it ends.
 *
 * fail() is the one way the program reports a failure: "hokusai: <message>"
 * on one line of stderr, then exit with a documented code (report.h).  The
 * connection, if any, is closed on the way out (conn.c registers that with
 * atexit()), so the server rolls back an open transaction.  note() writes an
 * informational line, confirm() asks a question on the terminal.
 *
 * Every line goes through redact_secrets() first, so that a full API key
 * never reaches the terminal or a log, whatever its source: an argument, a
 * server message, a connection string.
 *
 * src/bin/hokusai/report.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "key_shape.h"
#include "report.h"

/* Format one message onto one line of stderr, redacted */
static void
vmessage(const char *prefix, const char *fmt, va_list ap)
{
	char		buf[2048];
	char	   *clean;
	char	   *nl;

	vsnprintf(buf, sizeof(buf), fmt, ap);
	/* one line, always */
	while ((nl = strpbrk(buf, "\r\n")) != NULL)
		*nl = ' ';
	clean = redact_secrets(buf);
	fprintf(stderr, "hokusai: %s%s\n", prefix, clean);
	free(clean);
}

/*
 * Report a failure on one line of stderr and exit with the given code.
 */
void
fail(int code, const char *fmt,...)
{
	va_list		ap;

	fflush(stdout);
	va_start(ap, fmt);
	vmessage("", fmt, ap);
	va_end(ap);
	exit(code);
}

/*
 * An informational line on stderr (never on stdout, which scripts read).
 */
void
note(const char *fmt,...)
{
	va_list		ap;

	fflush(stdout);
	va_start(ap, fmt);
	vmessage("", fmt, ap);
	va_end(ap);
}

/* Ask on the terminal; true for "y" or "yes" */
bool
confirm(const char *question)
{
	char		answer[64];
	char	   *clean = redact_secrets(question);
	size_t		n;

	fprintf(stderr, "%s [y/N] ", clean);
	fflush(stderr);
	free(clean);
	if (fgets(answer, sizeof(answer), stdin) == NULL)
		return false;
	n = strcspn(answer, "\r\n");
	answer[n] = '\0';
	return strcasecmp(answer, "y") == 0 || strcasecmp(answer, "yes") == 0;
}

/*
 * A copy of s in which every run that looks like a full API key is cut
 * down to its key_prefix followed by "...".  The prefix is public; the rest
 * is the secret.
 */
char *
redact_secrets(const char *s)
{
	size_t		len = strlen(s);

	/*
	 * A run of KEY_SHAPE_PREFIX_LEN + 1 or + 2 characters grows by 2 or 1:
	 * at most 2 more bytes for every 17 of s.
	 */
	char	   *out = malloc(2 * len + 1);
	size_t		o = 0;

	if (out == NULL)
	{
		fputs("hokusai: out of memory\n", stderr);
		exit(EXIT_SERVER);
	}
	for (size_t i = 0; i < len;)
	{
		size_t		run = key_shape_span(s + i);

		if (run > KEY_SHAPE_PREFIX_LEN)
		{
			memcpy(out + o, s + i, KEY_SHAPE_PREFIX_LEN);
			o += KEY_SHAPE_PREFIX_LEN;
			memcpy(out + o, "...", 3);
			o += 3;
			i += run;
		}
		else
			out[o++] = s[i++];
	}
	out[o] = '\0';
	return out;
}
