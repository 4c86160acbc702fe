/*-------------------------------------------------------------------------
 *
 * parse.c
 *	  The command line of one command: its options, its arguments and the
 *	  checks of their values, all made before anything reaches the server.
 *
 * A command reads its options with start_options() and a loop over
 * next_option(), which handles the options every command accepts (--dsn,
 * --json, --help) and every malformed option the same way, then takes its
 * positional arguments with one_argument() or no_arguments().
 *
 * Durations, counts, key references and CIDR lists are checked here, so a
 * typo is a usage error (exit 2) and nothing is sent.  Key references are
 * either a key id (uuid) or a key_prefix (hk_live_ + 8 base62 characters);
 * a full plaintext key is refused without being echoed.
 *
 * src/bin/hokusai/parse.c
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "help.h"
#include "key_shape.h"
#include "parse.h"
#include "report.h"

#define MAX_DURATION_SECS	(100LL * 366 * 86400)	/* about a century */

/*
 * The next option that is specific to the command; --dsn, --json and
 * --help are handled here, as are unknown options and missing arguments.
 */
int
next_option(int argc, char **argv, const struct option *opts,
			CommonOptions *common)
{
	for (;;)
	{
		int			c = getopt_long(argc, argv, ":h", opts, NULL);

		switch (c)
		{
			case OPT_DSN:
				common->dsn = optarg;
				break;
			case OPT_JSON:
				common->json = true;
				break;
			case 'h':
				print_command_help(argv[0]);
				exit(EXIT_OK);
			case ':':
				fail(EXIT_USAGE, "%s: option \"%s\" requires an argument",
					 argv[0], argv[optind - 1]);
			case '?':
				if (optopt && optopt < 256)
					fail(EXIT_USAGE, "%s: unrecognized option \"-%c\" (see \"hokusai auth %s --help\")",
						 argv[0], optopt, argv[0]);
				/* without any "=value": it might be a password */
				fail(EXIT_USAGE, "%s: unrecognized option \"%.*s\" (see \"hokusai auth %s --help\")",
					 argv[0], (int) strcspn(argv[optind - 1], "="),
					 argv[optind - 1], argv[0]);
			default:
				return c;
		}
	}
}

/* Before a command's first next_option(): getopt starts afresh, quietly */
void
start_options(void)
{
	opterr = 0;
	optind = 0;					/* glibc: start afresh */
}

/* Exactly one positional argument, named what in messages */
const char *
one_argument(int argc, char **argv, const char *what)
{
	if (optind >= argc)
		fail(EXIT_USAGE, "%s: missing %s argument (see \"hokusai auth %s --help\")",
			 argv[0], what, argv[0]);
	if (optind + 1 < argc)
		fail(EXIT_USAGE, "%s: too many arguments (see \"hokusai auth %s --help\")",
			 argv[0], argv[0]);
	return argv[optind];
}

/* No positional argument at all */
void
no_arguments(int argc, char **argv)
{
	if (optind < argc)
		fail(EXIT_USAGE, "%s: unexpected argument (see \"hokusai auth %s --help\")",
			 argv[0], argv[0]);
}

/* An option the command cannot do without */
void
require_option(const char *command, const char *value, const char *option)
{
	if (value == NULL)
		fail(EXIT_USAGE, "%s: %s is required (see \"hokusai auth %s --help\")",
			 command, option, command);
}

/* Is s a uuid in its text form (8-4-4-4-12 hex digits)? */
bool
looks_like_uuid(const char *s)
{
	if (strlen(s) != 36)
		return false;
	for (int i = 0; i < 36; i++)
	{
		if (i == 8 || i == 13 || i == 18 || i == 23)
		{
			if (s[i] != '-')
				return false;
		}
		else if (!isxdigit((unsigned char) s[i]))
			return false;
	}
	return true;
}

/*
 * Classify a KEY_ID_OR_PREFIX argument, or end the program with a usage
 * error.  Neither message repeats the argument: it might be a secret.
 */
KeyRefKind
parse_key_ref(const char *command, const char *arg)
{
	if (looks_like_uuid(arg))
		return KEYREF_ID;
	if (key_shape_span(arg) >= KEY_SHAPE_PREFIX_LEN)
	{
		if (strlen(arg) == KEY_SHAPE_PREFIX_LEN)
			return KEYREF_PREFIX;
		fail(EXIT_USAGE,
			 "%s: a full API key was given where a key id or key_prefix is expected; use its key_prefix %.*s",
			 command, KEY_SHAPE_PREFIX_LEN, arg);
	}
	fail(EXIT_USAGE,
		 "%s: invalid key reference: expected a key id (uuid) or a key_prefix such as hk_live_AbCd1234",
		 command);
}

/*
 * A duration: a whole number followed by one unit, s, m, h, d or w.
 */
bool
parse_duration(const char *s, long long *seconds)
{
	long long	n = 0;
	long long	unit;
	size_t		digits = 0;

	while (isdigit((unsigned char) s[digits]))
	{
		if (digits >= 12)
			return false;
		n = n * 10 + (s[digits] - '0');
		digits++;
	}
	if (digits == 0 || s[digits] == '\0' || s[digits + 1] != '\0')
		return false;
	switch (s[digits])
	{
		case 's':
			unit = 1;
			break;
		case 'm':
			unit = 60;
			break;
		case 'h':
			unit = 3600;
			break;
		case 'd':
			unit = 86400;
			break;
		case 'w':
			unit = 7 * 86400;
			break;
		default:
			return false;
	}
	*seconds = n * unit;
	return true;
}

/* A duration option's value in seconds, or a usage error */
long long
duration_option(const char *option, const char *value, bool allow_zero)
{
	long long	seconds;

	if (!parse_duration(value, &seconds))
		fail(EXIT_USAGE,
			 "invalid duration \"%s\" for %s: use a whole number followed by s, m, h, d or w (e.g. 90m, 12h, 30d)",
			 value, option);
	if (seconds > MAX_DURATION_SECS)
		fail(EXIT_USAGE, "duration \"%s\" for %s is too long", value, option);
	if (seconds == 0 && !allow_zero)
		fail(EXIT_USAGE, "duration for %s must be greater than zero", option);
	return seconds;
}

/* The text of an interval parameter: "N seconds" */
char *
interval_param(long long seconds)
{
	char	   *buf = malloc(32);

	if (buf == NULL)
		fail(EXIT_SERVER, "out of memory");
	snprintf(buf, 32, "%lld seconds", seconds);
	return buf;
}

/* A positive int option, or a usage error */
int
positive_int_option(const char *option, const char *value)
{
	char	   *end;
	long		n;

	errno = 0;
	n = strtol(value, &end, 10);
	if (!isdigit((unsigned char) value[0]) || *end != '\0' || errno != 0 ||
		n <= 0 || n > INT_MAX)
		fail(EXIT_USAGE, "invalid value \"%s\" for %s: expected a positive integer",
			 value, option);
	return (int) n;
}

/*
 * Append one element to a PostgreSQL array literal, quoted, so that any
 * text stays one element; the server then checks it as a cidr.
 */
void
append_array_element(char **array, const char *element)
{
	size_t		oldlen = *array ? strlen(*array) : 0;
	char	   *buf = malloc(oldlen + 2 * strlen(element) + 5);
	size_t		o;

	if (buf == NULL)
		fail(EXIT_SERVER, "out of memory");
	if (*array)
	{
		memcpy(buf, *array, oldlen - 1);	/* drop the closing brace */
		o = oldlen - 1;
		buf[o++] = ',';
	}
	else
	{
		o = 0;
		buf[o++] = '{';
	}
	buf[o++] = '"';
	for (const char *p = element; *p; p++)
	{
		if (*p == '"' || *p == '\\')
			buf[o++] = '\\';
		buf[o++] = *p;
	}
	buf[o++] = '"';
	buf[o++] = '}';
	buf[o] = '\0';
	free(*array);
	*array = buf;
}
