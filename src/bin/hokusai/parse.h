/*-------------------------------------------------------------------------
 *
 * parse.h
 *	  The command line of one command: its options, its arguments and the
 *	  checks of their values, all made before anything reaches the server.
 *
 * src/bin/hokusai/parse.h
 *
 *-------------------------------------------------------------------------
 */
#ifndef HOKUSAI_PARSE_H
#define HOKUSAI_PARSE_H

#include <getopt.h>
#include <stdbool.h>

#include "report.h"

/* When to ask for a password (-w, -W, neither) */
typedef enum PasswordPrompt
{
	PROMPT_IF_NEEDED,			/* on a terminal, when the server asks */
	PROMPT_NEVER,				/* -w, --no-password */
	PROMPT_ALWAYS				/* -W, --password */
} PasswordPrompt;

/* Options every command accepts, also before the command group */
typedef struct CommonOptions
{
	const char *host;			/* -h, --host */
	const char *port;			/* -p, --port */
	const char *username;		/* -U, --username */
	const char *dbname;			/* -d, --dbname, --dsn: a name or a
								 * connection string; NULL: libpq's default */
	PasswordPrompt prompt;		/* -w, -W */
	bool		json;			/* --json */
} CommonOptions;

/* getopt_long codes of the common options that have no short form */
enum
{
	OPT_DSN = 256,
	OPT_JSON,
	OPT_HELP,
	OPT_FIRST					/* OPT_FIRST + CommandOption: command options */
};

/* The common options for getopt_long: short ones, then long ones */
#define COMMON_SHORT_OPTIONS ":h:p:U:d:wW?"
#define COMMON_LONG_OPTIONS \
	{"host", required_argument, NULL, 'h'}, \
	{"port", required_argument, NULL, 'p'}, \
	{"username", required_argument, NULL, 'U'}, \
	{"dbname", required_argument, NULL, 'd'}, \
	{"dsn", required_argument, NULL, OPT_DSN}, \
	{"no-password", no_argument, NULL, 'w'}, \
	{"password", no_argument, NULL, 'W'}, \
	{"json", no_argument, NULL, OPT_JSON}, \
	{"help", no_argument, NULL, OPT_HELP}
#define NUM_COMMON_LONG_OPTIONS 9

/* The options of the commands besides the common ones (names in parse.c) */
typedef enum CommandOption
{
	OPT_USER,
	OPT_NAME,
	OPT_EMAIL,
	OPT_ENV,
	OPT_EXPIRES_IN,
	OPT_EXPIRES_AT,
	OPT_RATE_LIMIT,
	OPT_BURST,
	OPT_ALLOW_IP,
	OPT_METADATA,
	OPT_ALL,
	OPT_REASON,
	OPT_YES,
	OPT_GRACE,
	OPT_SINCE,
	OPT_UNTIL,
	OPT_NO_EXPIRY,
	OPT_NO_BURST,
	OPT_ALLOWED_IPS,
	OPT_NO_ALLOWED_IPS,
	OPT_KEY,
	OPT_LIMIT,
	OPT_VERIFY,
	OPT_CREDITS,
	OPT_REFILL,
	OPT_NO_REFILL,
	OPT_AFTER,
	OPT_FOLLOW,
	OPT_URL,
	OPT_SECRET_FILE,
	OPT_CACERT,
	OPT_SCOPE,
	OPT_NO_SCOPES,
	OPT_NO_CREDITS,
	NUM_COMMAND_OPTIONS
} CommandOption;

/* A set of CommandOptions, for CommandSyntax.options (up to 64) */
#define OPTION_SET(opt)		(1ull << (opt))

/* The argument that names a key: checked and classified by parse.c */
#define KEY_ARGUMENT		"KEY_ID_OR_PREFIX"

/* What a command accepts after its name */
typedef struct CommandSyntax
{
	const char *name;			/* the command, as typed after "hokusai auth" */
	unsigned long long options; /* OPTION_SET()s of its own options */
	const char *argument;		/* its one positional argument, NULL for none */
} CommandSyntax;

/* What a KEY_ARGUMENT is */
typedef enum KeyRefKind
{
	KEYREF_ID,					/* a uuid */
	KEYREF_PREFIX				/* a 16-character key_prefix */
} KeyRefKind;

/* A command's command line, checked */
typedef struct CommandLine
{
	const char *command;		/* the command's name */
	CommonOptions common;		/* before or after it */
	const char *argument;		/* the positional argument, if it takes one */
	KeyRefKind	key_kind;		/* what it is, if it is a KEY_ARGUMENT */
	char	   *value[NUM_COMMAND_OPTIONS]; /* each option as parse.c keeps
											 * it; NULL when not given */
} CommandLine;

extern int	next_common_option(int argc, char **argv, const char *shortopts,
							   const struct option *opts, CommonOptions *common,
							   bool *help);
extern void bad_option(int c, char **argv, const char *context,
					   const char *help) NORETURN;
extern KeyRefKind parse_key_ref(const char *command, const char *arg);
extern void parse_command_line(int argc, char **argv,
							   const CommandSyntax *syntax, CommandLine *cl);
extern void require_option(const CommandLine *cl, CommandOption opt);
extern char *duration_param(const char *option, const char *value,
							bool allow_zero);
extern char *interval_param(long long seconds);
extern void fail_empty_range(const char *command, const char *since,
							 const char *until) NORETURN;
extern void check_time_range(const char *command, const char *since,
							 const char *until);
extern void time_param(const char *value, const char **timestamp,
					   const char **ago);

#endif							/* HOKUSAI_PARSE_H */
