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

/* Options every command accepts */
typedef struct CommonOptions
{
	const char *dsn;			/* --dsn, or NULL for the libpq environment */
	bool		json;			/* --json */
} CommonOptions;

/* getopt_long codes of the common options; a command's own start at OPT_COMMAND */
enum
{
	OPT_DSN = 256,
	OPT_JSON,
	OPT_COMMAND
};

/* The first entries of every command's option table */
#define COMMON_OPTIONS \
	{"dsn", required_argument, NULL, OPT_DSN}, \
	{"json", no_argument, NULL, OPT_JSON}, \
	{"help", no_argument, NULL, 'h'}

/* What a KEY_ID_OR_PREFIX argument is */
typedef enum KeyRefKind
{
	KEYREF_ID,					/* a uuid */
	KEYREF_PREFIX				/* a 16-character key_prefix */
} KeyRefKind;

/* Options and arguments */
extern void start_options(void);
extern int	next_option(int argc, char **argv, const struct option *opts,
						CommonOptions *common);
extern const char *one_argument(int argc, char **argv, const char *what);
extern void no_arguments(int argc, char **argv);
extern void require_option(const char *command, const char *value,
						   const char *option);

/* Values */
extern bool looks_like_uuid(const char *s);
extern KeyRefKind parse_key_ref(const char *command, const char *arg);
extern bool parse_duration(const char *s, long long *seconds);
extern long long duration_option(const char *option, const char *value,
								 bool allow_zero);
extern char *interval_param(long long seconds);
extern int	positive_int_option(const char *option, const char *value);
extern void append_array_element(char **array, const char *element);

#endif							/* HOKUSAI_PARSE_H */
