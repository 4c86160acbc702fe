/*-------------------------------------------------------------------------
 *
 * main.c
 *	  hokusai: the command-line tool of hokusai_auth.
 *
 *	  hokusai [CONNECTION OPTIONS] [--json] auth COMMAND [OPTIONS] [ARGS]
 *
 * The tool is a thin libpq client of the hokusai_auth SQL interface.  Every
 * value travels as a PQexecParams parameter, every operation is one
 * statement or one transaction, and every failure ends the program with one
 * line on stderr and one of the exit codes of report.h (docs/cli.md).
 *
 * This file reads the options that come before the command group (those
 * every command accepts, parse.c, and --version) and hands the command to
 * commands.c.  Each
 * module has one header declaring what it exports, and the modules depend
 * one way only, downwards in this list:
 *
 *	main.c			options before the command group, --version
 *	commands.c		the "auth" commands and their table by name
 *	admin.c			update-key, list-users, deactivate-user, audit, rate-limit-reset
 *	metering.c		add-credits, set-user-limits, --credits and --refill
 *	events.c		events; webhook.c: webhook, delivering with post.c
 *	stream.c		events in id order across lost connections
 *	switch.c		disable-key, enable-key
 *	lookup.c		the connection by the options, the user or key an argument names
 *	conn.c			the connection and the statements sent on it
 *	output.c		tables and records on stdout, and JSON
 *	parse.c			a command's options and arguments, checked before connecting
 *	help.c			the --help texts
 *	report.c		what is said on stderr, and the exit codes
 *	key_shape.c		what an API key looks like
 *
 * src/bin/hokusai/main.c
 *
 *-------------------------------------------------------------------------
 */
#include <getopt.h>
#include <stdio.h>
#include <string.h>

#include "commands.h"
#include "help.h"
#include "report.h"

/* Read the options before "auth", then run the command after it */
int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		COMMON_LONG_OPTIONS,
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	CommonOptions common = {0};
	const char *group;
	const char *name;
	bool		help;
	int			c;
	int			rc;

	opterr = 0;
	/* '+': stop at the first non-option, the command group */
	while ((c = next_common_option(argc, argv, "+" COMMON_SHORT_OPTIONS "V",
								   long_options, &common, &help)) != -1)
	{
		if (help)
		{
			print_main_help();
			return EXIT_OK;
		}
		if (c == 'V')
		{
			printf("hokusai (hokusai_auth) %s\n", HOKUSAI_VERSION);
			return EXIT_OK;
		}
		bad_option(c, argv, "", "hokusai");
	}

	if (optind >= argc)
		fail(EXIT_USAGE, "missing command (see \"hokusai --help\")");
	group = argv[optind];
	if (strcmp(group, "help") == 0)
	{
		print_main_help();
		return EXIT_OK;
	}
	if (strcmp(group, "auth") != 0)
		fail(EXIT_USAGE, "unknown command group \"%s\" (see \"hokusai --help\")",
			 group);
	optind++;

	if (optind >= argc)
		fail(EXIT_USAGE, "missing auth command (see \"hokusai auth --help\")");
	name = argv[optind];
	if (strcmp(name, "--help") == 0 || strcmp(name, "-?") == 0 ||
		strcmp(name, "help") == 0)
	{
		print_auth_help();
		return EXIT_OK;
	}

	/* the command parses argv[optind..], its name as argv[0] */
	rc = run_auth_command(argc - optind, argv + optind, &common);
	if (fflush(stdout) != 0 || ferror(stdout))
		fail(EXIT_SERVER, "could not write to standard output");
	return rc;
}
