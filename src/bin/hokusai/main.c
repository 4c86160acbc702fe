/*-------------------------------------------------------------------------
 *
 * main.c
 *	  hokusai: the command-line tool of hokusai_auth.
 *
 *	  hokusai [--dsn DSN] [--json] auth COMMAND [OPTIONS] [ARGS]
 *
 * This file reads the options that come before the command and dispatches
 * to the command (commands.c).  Failures are reported by fail() (report.c).
 *
 * src/bin/hokusai/main.c
 *
 *-------------------------------------------------------------------------
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hokusai.h"

typedef struct Command
{
	const char *name;
	int			(*run) (int argc, char **argv, CommonOptions *common);
} Command;

static const Command commands[] = {
	{"create-user", cmd_create_user},
	{"create-key", cmd_create_key},
	{"list-keys", cmd_list_keys},
	{"show-key", cmd_show_key},
	{"revoke-key", cmd_revoke_key},
	{"rotate-key", cmd_rotate_key},
	{"usage", cmd_usage},
	{NULL, NULL}
};

int
main(int argc, char **argv)
{
	static const struct option long_options[] = {
		{"dsn", required_argument, NULL, 'd'},
		{"json", no_argument, NULL, 'j'},
		{"help", no_argument, NULL, 'h'},
		{"version", no_argument, NULL, 'V'},
		{NULL, 0, NULL, 0}
	};
	CommonOptions common = {NULL, false};
	const char *group;
	const char *name;
	int			c;

	opterr = 0;
	/* '+': stop at the first non-option, the command group */
	while ((c = getopt_long(argc, argv, "+:hV", long_options, NULL)) != -1)
	{
		switch (c)
		{
			case 'd':
				common.dsn = optarg;
				break;
			case 'j':
				common.json = true;
				break;
			case 'h':
				print_main_help();
				return EXIT_OK;
			case 'V':
				printf("hokusai (hokusai_auth) %s\n", HOKUSAI_VERSION);
				return EXIT_OK;
			case ':':
				fail(EXIT_USAGE, "option \"%s\" requires an argument",
					 argv[optind - 1]);
			default:
				if (optopt)
					fail(EXIT_USAGE, "unrecognized option \"-%c\" (see \"hokusai --help\")",
						 optopt);
				fail(EXIT_USAGE, "unrecognized option \"%.*s\" (see \"hokusai --help\")",
					 (int) strcspn(argv[optind - 1], "="), argv[optind - 1]);
		}
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
	if (strcmp(name, "--help") == 0 || strcmp(name, "-h") == 0 ||
		strcmp(name, "help") == 0)
	{
		print_auth_help();
		return EXIT_OK;
	}

	for (const Command *cmd = commands; cmd->name; cmd++)
	{
		if (strcmp(cmd->name, name) == 0)
		{
			int			rc;

			/* the command parses argv[optind..], its name as argv[0] */
			rc = cmd->run(argc - optind, argv + optind, &common);
			disconnect_db();
			if (fflush(stdout) != 0 || ferror(stdout))
				fail(EXIT_SERVER, "could not write to standard output");
			return rc;
		}
	}
	fail(EXIT_USAGE, "unknown command \"%s\" (see \"hokusai auth --help\")", name);
}
