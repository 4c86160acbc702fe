/*-------------------------------------------------------------------------
 *
 * parse.c
 *	  The command line of one command: its options, its arguments and the
 *	  checks of their values, all made before anything reaches the server.
 *
 * Each command says what it accepts (a CommandSyntax: a set of the options
 * in option_table below, and at most one positional argument), and
 * parse_command_line() reads argv by it into a CommandLine.  The options
 * every command accepts (--dsn, --json, --help) and every malformed option
 * are handled here, the same way for all commands.
 *
 * Durations, counts, key references and CIDR lists are checked here, so a
 * typo is a usage error (exit 2) and nothing is sent; an option that is
 * checked "at once" is checked where it stands on the command line, so the
 * first mistake is the one reported.  Key references are either a key id
 * (uuid) or a key_prefix (hk_live_ + 8 base62 characters); a full
 * plaintext key is refused without being echoed.
 *
 * src/bin/hokusai/parse.c
 *
 *-------------------------------------------------------------------------
 */
#include <ctype.h>
#include <errno.h>
#include <getopt.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/text.h"

#include "help.h"
#include "key_shape.h"
#include "parse.h"
#include "report.h"

#define MAX_DURATION_SECS	(100LL * 366 * 86400)	/* about a century */

/* How an option's value is checked and kept in CommandLine.value */
typedef enum OptionKind
{
	OPTION_FLAG,				/* no value; kept as "true" once given */
	OPTION_TEXT,				/* kept as given; the last one counts */
	OPTION_LIST,				/* each one kept, as a quoted array literal */
	OPTION_CSV,					/* comma-separated, each element kept as
								 * OPTION_LIST does */
	OPTION_COUNT,				/* a positive integer, checked at once */
	OPTION_COUNT_OR_ZERO,		/* the same, or 0 */
	OPTION_INTERVAL,			/* a duration, zero allowed, checked at once;
								 * kept as an interval ("N seconds") */
	OPTION_ID					/* an event id: 0 or a positive bigint,
								 * checked at once */
} OptionKind;

/* Every command option: its name after "--" and its kind */
static const struct
{
	const char *name;
	OptionKind	kind;
}			option_table[NUM_COMMAND_OPTIONS] = {
	[OPT_USER] = {"user", OPTION_TEXT},
	[OPT_NAME] = {"name", OPTION_TEXT},
	[OPT_EMAIL] = {"email", OPTION_TEXT},
	[OPT_ENV] = {"env", OPTION_TEXT},
	[OPT_EXPIRES_IN] = {"expires-in", OPTION_TEXT},	/* create-key checks it */
	[OPT_EXPIRES_AT] = {"expires-at", OPTION_TEXT},
	[OPT_RATE_LIMIT] = {"rate-limit", OPTION_COUNT},
	[OPT_BURST] = {"burst", OPTION_COUNT_OR_ZERO},	/* 0: no burst limit */
	[OPT_ALLOW_IP] = {"allow-ip", OPTION_LIST},
	[OPT_METADATA] = {"metadata", OPTION_TEXT},
	[OPT_ALL] = {"all", OPTION_FLAG},
	[OPT_REASON] = {"reason", OPTION_TEXT},
	[OPT_YES] = {"yes", OPTION_FLAG},
	[OPT_GRACE] = {"grace", OPTION_INTERVAL},
	[OPT_SINCE] = {"since", OPTION_TEXT},
	[OPT_UNTIL] = {"until", OPTION_TEXT},
	[OPT_NO_EXPIRY] = {"no-expiry", OPTION_FLAG},
	[OPT_NO_BURST] = {"no-burst", OPTION_FLAG},
	[OPT_ALLOWED_IPS] = {"allowed-ips", OPTION_CSV},
	[OPT_NO_ALLOWED_IPS] = {"no-allowed-ips", OPTION_FLAG},
	[OPT_KEY] = {"key", OPTION_TEXT},
	[OPT_LIMIT] = {"limit", OPTION_COUNT},
	[OPT_VERIFY] = {"verify", OPTION_FLAG},
	[OPT_CREDITS] = {"credits", OPTION_TEXT},	/* metering.c checks it */
	[OPT_REFILL] = {"refill", OPTION_TEXT},	/* metering.c checks it */
	[OPT_NO_REFILL] = {"no-refill", OPTION_FLAG},
	[OPT_AFTER] = {"after", OPTION_ID},
	[OPT_FOLLOW] = {"follow", OPTION_FLAG},
	[OPT_URL] = {"url", OPTION_TEXT},	/* webhook checks it */
	[OPT_SECRET_FILE] = {"secret-file", OPTION_TEXT},
	[OPT_CACERT] = {"cacert", OPTION_TEXT},
	[OPT_SCOPE] = {"scope", OPTION_LIST},
	[OPT_NO_SCOPES] = {"no-scopes", OPTION_FLAG},
	[OPT_NO_CREDITS] = {"no-credits", OPTION_FLAG},
};

/*
 * Classify a KEY_ID_OR_PREFIX argument, or end the program with a usage
 * error.  Neither message repeats the argument: it might be a secret.
 */
KeyRefKind
parse_key_ref(const char *command, const char *arg)
{
	if (hk_looks_like_uuid(arg))
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
static bool
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

/*
 * A duration option's value as an interval parameter ("N seconds"), or a
 * usage error.
 */
char *
duration_param(const char *option, const char *value, bool allow_zero)
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
	return interval_param(seconds);
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

/*
 * A --since or --until value: a duration ago (*ago, as an interval) or
 * else a timestamp (*timestamp).  Both NULL when value is NULL.
 */
void
time_param(const char *value, const char **timestamp, const char **ago)
{
	long long	seconds;

	*timestamp = NULL;
	*ago = NULL;
	if (value == NULL)
		return;
	if (parse_duration(value, &seconds))
		*ago = interval_param(seconds);
	else
		*timestamp = value;
}

/* --since after --until: a usage error */
void
fail_empty_range(const char *command, const char *since, const char *until)
{
	fail(EXIT_USAGE, "%s: --since %s is after --until %s: the range is empty",
		 command, since, until);
}

/*
 * --since after --until is a usage error: checked here when both are
 * durations; the caller asks the server when either is a timestamp.
 */
void
check_time_range(const char *command, const char *since, const char *until)
{
	long long	since_ago;
	long long	until_ago;

	if (since && until && parse_duration(since, &since_ago) &&
		parse_duration(until, &until_ago) && since_ago < until_ago)
		fail_empty_range(command, since, until);
}

/* A count option: a positive int (or 0 if allowed), kept as its decimal text */
static char *
count_param(const char *option, const char *value, bool allow_zero)
{
	char	   *end;
	long		n;
	char	   *buf;

	errno = 0;
	n = strtol(value, &end, 10);
	if (!isdigit((unsigned char) value[0]) || *end != '\0' || errno != 0 ||
		n < (allow_zero ? 0 : 1) || n > INT_MAX)
		fail(EXIT_USAGE, "invalid value \"%s\" for %s: expected a %s integer",
			 value, option, allow_zero ? "non-negative" : "positive");
	buf = malloc(16);
	if (buf == NULL)
		fail(EXIT_SERVER, "out of memory");
	snprintf(buf, 16, "%ld", n);
	return buf;
}

/* An event id option: 0 to 2^63 - 1, kept as its decimal text */
static char *
id_param(const char *option, const char *value)
{
	char	   *end;
	long long	n;
	char	   *buf;

	errno = 0;
	n = strtoll(value, &end, 10);
	if (!isdigit((unsigned char) value[0]) || *end != '\0' || errno != 0 || n < 0)
		fail(EXIT_USAGE, "invalid value \"%s\" for %s: expected an event id (0 or a positive integer)",
			 value, option);
	buf = malloc(24);
	if (buf == NULL)
		fail(EXIT_SERVER, "out of memory");
	snprintf(buf, 24, "%lld", n);
	return buf;
}

/*
 * Append one element to a PostgreSQL array literal, quoted, so that any
 * text stays one element; the server then checks it as a cidr.
 */
static void
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

/*
 * Keep one of the options every command accepts (COMMON_LONG_OPTIONS),
 * also before the command group; false when c is not one of them.  A
 * connection option may not be empty: libpq would take that as "not given".
 */
static bool
common_option(int c, CommonOptions *common)
{
	const char **slot;

	switch (c)
	{
		case 'h':
			slot = &common->host;
			break;
		case 'p':
			slot = &common->port;
			break;
		case 'U':
			slot = &common->username;
			break;
		case 'd':
		case OPT_DSN:
			slot = &common->dbname;
			break;
		case 'w':
			common->prompt = PROMPT_NEVER;
			return true;
		case 'W':
			common->prompt = PROMPT_ALWAYS;
			return true;
		case OPT_JSON:
			common->json = true;
			return true;
		default:
			return false;
	}
	if (optarg[0] == '\0')
		fail(EXIT_USAGE, "option %s requires a non-empty value",
			 c == 'h' ? "-h/--host" : c == 'p' ? "-p/--port" :
			 c == 'U' ? "-U/--username" : c == 'd' ? "-d/--dbname" : "--dsn");
	if (c == 'p')
	{
		char	   *end;
		long		port;

		errno = 0;
		port = strtol(optarg, &end, 10);
		if (!isdigit((unsigned char) optarg[0]) || *end != '\0' || errno != 0 ||
			port < 1 || port > 65535)
			fail(EXIT_USAGE, "invalid port \"%s\": expected a number from 1 to 65535",
				 optarg);
	}
	*slot = optarg;
	return true;
}

/*
 * End with a usage error for what getopt_long returned as c (':' or '?'):
 * a missing value or an unknown option.  context is "" or "COMMAND: ",
 * help the command that shows the options.
 */
void
bad_option(int c, char **argv, const char *context, const char *help)
{
	if (c == ':' && optopt == 'h')
		fail(EXIT_USAGE, "%soption \"-h\" requires a host name: -h is --host, as in psql; for help use -? or --help",
			 context);
	if (c == ':')
		fail(EXIT_USAGE, "%soption \"%s\" requires an argument",
			 context, argv[optind - 1]);
	if (c == '?' && optopt >= 256)
		fail(EXIT_USAGE, "%soption \"%.*s\" does not take a value",
			 context, (int) strcspn(argv[optind - 1], "="), argv[optind - 1]);
	if (optopt && optopt < 256)
		fail(EXIT_USAGE, "%sunrecognized option \"-%c\" (see \"%s --help\")",
			 context, optopt, help);
	/* without any "=value": it might be a password */
	fail(EXIT_USAGE, "%sunrecognized option \"%.*s\" (see \"%s --help\")",
		 context, (int) strcspn(argv[optind - 1], "="), argv[optind - 1], help);
}

/*
 * The next option getopt_long finds in argv by shortopts (at least
 * COMMON_SHORT_OPTIONS) and opts (at least COMMON_LONG_OPTIONS), after keeping the common ones in *common: -1 at the end, ':' or
 * '?' for a mistake (see bad_option()), or another option's code.  *help
 * is set and '?' returned for -? and --help.
 */
int
next_common_option(int argc, char **argv, const char *shortopts,
				   const struct option *opts, CommonOptions *common, bool *help)
{
	int			c;

	*help = false;
	do
	{
		optopt = 0;				/* glibc leaves it alone for a known option */
		c = getopt_long(argc, argv, shortopts, opts, NULL);
	} while (common_option(c, common));
	/* "-?" is a known option; an unknown one sets optopt, or starts "--" */
	if (c == OPT_HELP ||
		(c == '?' && optopt == 0 && strncmp(argv[optind - 1], "--", 2) != 0))
	{
		*help = true;
		return '?';
	}
	return c;
}

/*
 * The next option that is specific to the command; the common options,
 * -?/--help, unknown options and missing arguments are handled here.
 */
static int
next_option(int argc, char **argv, const struct option *opts,
			CommonOptions *common)
{
	bool		help;
	int			c = next_common_option(argc, argv, COMMON_SHORT_OPTIONS, opts,
									   common, &help);
	char		context[128];
	char		usage[128];

	if (help)
	{
		print_command_help(argv[0]);
		exit(EXIT_OK);
	}
	if (c == ':' || c == '?')
	{
		snprintf(context, sizeof(context), "%s: ", argv[0]);
		snprintf(usage, sizeof(usage), "hokusai auth %s", argv[0]);
		bad_option(c, argv, context, usage);
	}
	return c;
}

/* Exactly one positional argument, named what in messages */
static const char *
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
static void
no_arguments(int argc, char **argv)
{
	if (optind < argc)
		fail(EXIT_USAGE, "%s: unexpected argument (see \"hokusai auth %s --help\")",
			 argv[0], argv[0]);
}

/* "--name" of an option, for messages */
static const char *
option_label(CommandOption opt)
{
	static char label[32];

	snprintf(label, sizeof(label), "--%s", option_table[opt].name);
	return label;
}

/* Check one occurrence of a command option and keep it as its kind says */
static void
keep_option(CommandLine *cl, CommandOption opt, char *arg)
{
	char	  **value = &cl->value[opt];
	static char given[] = "true";

	switch (option_table[opt].kind)
	{
		case OPTION_FLAG:
			*value = given;
			break;
		case OPTION_TEXT:
			*value = arg;
			break;
		case OPTION_LIST:
			append_array_element(value, arg);
			break;
		case OPTION_CSV:
			if (arg[0] == '\0' || arg[0] == ',' || arg[strlen(arg) - 1] == ',' ||
				strstr(arg, ",,"))
				fail(EXIT_USAGE, "invalid value for %s: expected CIDR,CIDR,... without empty elements",
					 option_label(opt));
			for (char *elem = strtok(arg, ","); elem; elem = strtok(NULL, ","))
				append_array_element(value, elem);
			break;
		case OPTION_COUNT:
			*value = count_param(option_label(opt), arg, false);
			break;
		case OPTION_COUNT_OR_ZERO:
			*value = count_param(option_label(opt), arg, true);
			break;
		case OPTION_INTERVAL:
			*value = duration_param(option_label(opt), arg, true);
			break;
		case OPTION_ID:
			*value = id_param(option_label(opt), arg);
			break;
	}
}

/*
 * Read a command's options and its argument (argv[0] is its name) by what
 * its syntax accepts, into cl; cl->common comes in with what was given
 * before the command.  Any mistake ends the program with a usage error.
 */
void
parse_command_line(int argc, char **argv, const CommandSyntax *syntax,
				   CommandLine *cl)
{
	struct option opts[NUM_COMMON_LONG_OPTIONS + NUM_COMMAND_OPTIONS + 1] = {
		COMMON_LONG_OPTIONS
	};
	int			n = NUM_COMMON_LONG_OPTIONS;
	int			c;

	for (int opt = 0; opt < NUM_COMMAND_OPTIONS; opt++)
	{
		if ((syntax->options & OPTION_SET(opt)) == 0)
			continue;
		opts[n].name = option_table[opt].name;
		opts[n].has_arg = option_table[opt].kind == OPTION_FLAG ?
			no_argument : required_argument;
		opts[n++].val = OPT_FIRST + opt;
	}
	/* opts[n] is all zero: the end of the table */

	cl->command = argv[0];
	opterr = 0;
	optind = 0;					/* glibc: start afresh */
	while ((c = next_option(argc, argv, opts, &cl->common)) != -1)
		keep_option(cl, c - OPT_FIRST, optarg);
	if (syntax->argument == NULL)
		no_arguments(argc, argv);
	else
		cl->argument = one_argument(argc, argv, syntax->argument);
	if (syntax->argument && strcmp(syntax->argument, KEY_ARGUMENT) == 0)
		cl->key_kind = parse_key_ref(cl->command, cl->argument);
}

/* An option the command cannot do without */
void
require_option(const CommandLine *cl, CommandOption opt)
{
	if (cl->value[opt] == NULL)
		fail(EXIT_USAGE, "%s: %s is required (see \"hokusai auth %s --help\")",
			 cl->command, option_label(opt), cl->command);
}
