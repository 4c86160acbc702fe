/*-------------------------------------------------------------------------
 *
 * help.c
 *	  The --help texts of the hokusai tool: of the program, of the "auth"
 *	  group and of each command.  docs/cli.md says the same at more length,
 *	  and test/t/051_reference.pl holds docs/reference.md to the synopses.
 *
 * src/bin/hokusai/help.c
 *
 *-------------------------------------------------------------------------
 */
#include <stdio.h>
#include <string.h>

#include "help.h"

static const char common_help[] =
"Connection options (before or after the command; like psql's):\n"
"  -h, --host=HOST          database server host or socket directory\n"
"  -p, --port=PORT          database server port\n"
"  -U, --username=USER      database user name\n"
"  -d, --dbname=DBNAME      database name, or a connection string or URI\n"
"  --dsn=DSN                the same as -d\n"
"  -w, --no-password        never ask for a password\n"
"  -W, --password           ask for a password before connecting\n"
"What they leave out comes from the libpq environment (PGHOST, PGPORT,\n"
"PGDATABASE, PGUSER, PGPASSWORD, PGSERVICE, PGPASSFILE, ...).  Without -w,\n"
"a password is asked for on the terminal when the server wants one.\n\n"
"Options every command accepts:\n"
"  --json                   print the result as JSON on stdout, for scripts\n"
"  -?, --help               show this help and exit\n";

static const char exit_help[] =
"Exit codes: 0 ok, 1 server error, 2 usage error, 3 cannot connect (or no\n"
"hokusai_auth in the database), 4 permission denied, 5 unknown user or key,\n"
"6 invalid value, 7 not confirmed, 8 audit chain broken.\n";

static const char commands_help[] =
"Commands:\n"
"  create-user USERNAME [--email EMAIL]\n"
"  create-key  --user USER --name NAME [--env live|test]\n"
"              [--expires-in DURATION | --expires-at TIME] [--rate-limit N]\n"
"              [--burst N] [--allow-ip CIDR ...] [--metadata JSON]\n"
"              [--scope SCOPE ...] [--credits N] [--refill N/day|week|month]\n"
"  list-keys   [--user USER] [--all]\n"
"  show-key    KEY_ID_OR_PREFIX\n"
"  revoke-key  KEY_ID_OR_PREFIX [--reason TEXT] [--yes]\n"
"  rotate-key  KEY_ID_OR_PREFIX [--grace DURATION]\n"
"  usage       KEY_ID_OR_PREFIX [--since TIME] [--until TIME]\n"
"  update-key  KEY_ID_OR_PREFIX [--name NAME] [--expires-at TIME | --no-expiry]\n"
"              [--rate-limit N] [--burst N | --no-burst]\n"
"              [--allowed-ips CIDR,... | --no-allowed-ips]\n"
"              [--scope SCOPE ... | --no-scopes]\n"
"              [--refill N/day|week|month | --no-refill]\n"
"              [--credits N | --no-credits]\n"
"  disable-key KEY_ID_OR_PREFIX [--reason TEXT]\n"
"  enable-key  KEY_ID_OR_PREFIX\n"
"  list-users\n"
"  deactivate-user USER\n"
"  audit       [--key KEY_ID_OR_PREFIX] [--limit N] [--verify]\n"
"  rate-limit-reset KEY_ID_OR_PREFIX\n"
"  add-credits KEY_ID_OR_PREFIX --credits N\n"
"  set-user-limits USER [--rate-limit N] [--burst N]\n"
"  events      [--after ID] [--follow]\n"
"  webhook     --url URL --secret-file FILE [--after ID] [--cacert FILE]\n";

/* hokusai --help */
void
print_main_help(void)
{
	printf("hokusai manages hokusai_auth API keys in a PostgreSQL database.\n\n"
		   "Usage:\n"
		   "  hokusai [CONNECTION OPTIONS] [--json] auth COMMAND [OPTIONS] [ARGUMENTS]\n"
		   "  hokusai auth COMMAND --help\n"
		   "  hokusai -? | --help | --version\n\n"
		   "%s\n%s\n%s", commands_help, common_help, exit_help);
}

/* hokusai auth --help */
void
print_auth_help(void)
{
	printf("Usage: hokusai auth COMMAND [OPTIONS] [ARGUMENTS]\n\n%s\n"
		   "Run \"hokusai auth COMMAND --help\" for a command's options.\n",
		   commands_help);
}

typedef struct CommandHelp
{
	const char *name;
	const char *text;
} CommandHelp;

static const CommandHelp command_help[] = {
	{"create-user",
		"Usage: hokusai auth create-user USERNAME [--email EMAIL]\n\n"
		"Create an owner of API keys and print its id.\n\n"
		"  --email EMAIL     the user's email address\n"},
	{"create-key",
		"Usage: hokusai auth create-key --user USER --name NAME [OPTIONS]\n\n"
		"Create an API key and print it on stdout.  The key is shown only this once.\n\n"
		"  --user USER            owner: a username or a user id\n"
		"  --name NAME            what the key is for\n"
		"  --env live|test        environment (default live)\n"
		"  --expires-in DURATION  lifetime: a whole number with s, m, h, d or w (30d)\n"
		"  --expires-at TIME      expiry as a timestamp (2030-01-01 00:00:00+00)\n"
		"  --rate-limit N         requests per hour (default: the server's\n"
		"                         hokusai_auth.default_rate_limit_per_hour)\n"
		"  --burst N              requests per rolling second (0: no burst limit)\n"
		"  --allow-ip CIDR        allow only this network; repeat for more\n"
		"  --metadata JSON        a JSON object stored with the key\n"
		"  --scope SCOPE          what the key may do (keys:read, models:*); repeat\n"
		"                         for more (docs/authorization.md)\n"
		"  --credits N            a balance of N credits, which calls spend\n"
		"                         (default: not metered)\n"
		"  --refill N/INTERVAL    set the balance to N at the start of each UTC\n"
		"                         day, week (Monday) or month: 1000/day\n"},
	{"list-keys",
		"Usage: hokusai auth list-keys [--user USER] [--all]\n\n"
		"List active and disabled keys (never their hashes), of one user or of\n"
		"everyone.\n\n"
		"  --user USER       only this user's keys (username or user id)\n"
		"  --all             include revoked and expired keys\n"},
	{"show-key",
		"Usage: hokusai auth show-key KEY_ID_OR_PREFIX\n\n"
		"Show one key's settings and status.  KEY_ID_OR_PREFIX is the key's id\n"
		"(a uuid) or its key_prefix (hk_live_AbCd1234), never the full key.\n"},
	{"revoke-key",
		"Usage: hokusai auth revoke-key KEY_ID_OR_PREFIX [--reason TEXT] [--yes]\n\n"
		"Revoke a key: it stops working at once.  Asks for confirmation on a\n"
		"terminal; without a terminal --yes is required.\n\n"
		"  --reason TEXT     recorded in the audit log\n"
		"  --yes             do not ask\n"},
	{"rotate-key",
		"Usage: hokusai auth rotate-key KEY_ID_OR_PREFIX [--grace DURATION]\n\n"
		"Replace a key with a new one with the same settings, printed on stdout\n"
		"only this once.  The old key keeps working for the grace period.\n\n"
		"  --grace DURATION  how long the old key still works (default 0s, at most 30d)\n"},
	{"usage",
		"Usage: hokusai auth usage KEY_ID_OR_PREFIX [--since TIME] [--until TIME]\n\n"
		"Summarise a key's requests with hokusai_auth.usage_summary(), as SQL and\n"
		"HTTP do: requests, errors, average, p50/p95/p99 and max response times,\n"
		"by status and by endpoint.\n\n"
		"  --since TIME      from this timestamp, or this long ago (7d)\n"
		"  --until TIME      up to (not including) this timestamp, or this long ago\n"},
	{"update-key",
		"Usage: hokusai auth update-key KEY_ID_OR_PREFIX [OPTIONS]\n\n"
		"Change an active key's settings (hokusai_auth.update_key()); what is not\n"
		"given stays as it is.  Prints the key as show-key does.\n\n"
		"  --name NAME             what the key is for\n"
		"  --expires-at TIME       new expiry (a timestamp in the future)\n"
		"  --no-expiry             remove the expiry\n"
		"  --rate-limit N          requests per hour\n"
		"  --burst N               requests per rolling second (0: no burst limit)\n"
		"  --no-burst              follow the server's default burst limit again\n"
		"  --allowed-ips CIDR,...  allow only these networks (replaces the list)\n"
		"  --no-allowed-ips        allow every address\n"
		"  --scope SCOPE           what the key may do; repeat for more (replaces\n"
		"                          the list)\n"
		"  --no-scopes             remove every scope\n"
		"  --refill N/INTERVAL     refill the credits to N each UTC day, week or\n"
		"                          month, from the next one (a key without credits\n"
		"                          gets N now)\n"
		"  --no-refill             stop refilling (the balance stays)\n"
		"  --credits N             set the balance to N (a key without credits\n"
		"                          becomes metered)\n"
		"  --no-credits            no credits: the key (and the keys sharing its\n"
		"                          balance) is no longer metered, no refill either\n"},
	{"disable-key",
		"Usage: hokusai auth disable-key KEY_ID_OR_PREFIX [--reason TEXT]\n\n"
		"Switch a key off: from now on it is refused (status disabled) until\n"
		"enable-key.  Its settings stay; a revoked or expired key cannot be disabled.\n\n"
		"  --reason TEXT     recorded in the audit log\n"},
	{"enable-key",
		"Usage: hokusai auth enable-key KEY_ID_OR_PREFIX\n\n"
		"Switch a disabled key on again.  A revoked or expired key cannot be\n"
		"enabled.\n"},
	{"list-users",
		"Usage: hokusai auth list-users\n\n"
		"List the owners of API keys: active or inactive, and how many active keys\n"
		"each has.\n"},
	{"deactivate-user",
		"Usage: hokusai auth deactivate-user USER\n\n"
		"Deactivate a user (a username or a user id).  Its keys are not revoked, but\n"
		"every one of them is refused while the user is inactive, and the user\n"
		"cannot get new keys.\n"},
	{"audit",
		"Usage: hokusai auth audit [--key KEY_ID_OR_PREFIX] [--limit N] [--verify]\n\n"
		"Show the newest rows of the audit log, oldest first; or check its hash chain.\n\n"
		"  --key KEY_ID_OR_PREFIX  only this key's rows\n"
		"  --limit N               at most N rows (default 50)\n"
		"  --verify                seal the committed rows, then check the whole\n"
		"                          chain: exit 0 when intact, 8 naming the first\n"
		"                          broken row\n"},
	{"rate-limit-reset",
		"Usage: hokusai auth rate-limit-reset KEY_ID_OR_PREFIX\n\n"
		"Clear a key's rate-limit windows: it can use its full quota again.\n"},
	{"add-credits",
		"Usage: hokusai auth add-credits KEY_ID_OR_PREFIX --credits N\n\n"
		"Add N credits to a key's balance (negative N takes credits away, never\n"
		"below zero) and print the new balance.  The key must have credits.\n\n"
		"  --credits N       how many\n"},
	{"set-user-limits",
		"Usage: hokusai auth set-user-limits USER [--rate-limit N] [--burst N]\n\n"
		"Set the limits all of a user's keys share (a username or a user id),\n"
		"checked with each key's own: exactly those given, a limit left out is\n"
		"none.\n\n"
		"  --rate-limit N    requests per hour for all the keys together\n"
		"  --burst N         requests per rolling second for all the keys together\n"},
	{"events",
		"Usage: hokusai auth events [--after ID] [--follow] [--json]\n\n"
		"Print events (hokusai_auth.events) in id order, one line each: id, time\n"
		"(UTC), kind, key, data.  With --json, one JSON object per line.\n\n"
		"  --after ID        only events with a higher id (default: all kept)\n"
		"  --follow          then print each new event as it commits, until stopped;\n"
		"                    reconnects after a server restart and resumes after the\n"
		"                    last event printed\n"},
	{"webhook",
		"Usage: hokusai auth webhook --url URL --secret-file FILE [--after ID]\n"
		"                            [--cacert FILE]\n\n"
		"Deliver every event, in id order, as a POST of its JSON to URL, signed with\n"
		"Hokusai-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of \"<t>.<body>\">.\n"
		"Runs until stopped.  Retries timeouts, 408, 429 and 5xx with exponential\n"
		"backoff; gives up an event on any other answer.  Resumes after a restart\n"
		"from the cursor kept in the database for URL.\n\n"
		"  --url URL          the receiver (https://; http:// only for tests)\n"
		"  --secret-file FILE the signing secret (a trailing newline is ignored)\n"
		"  --after ID         start after this event id, not at the cursor\n"
		"  --cacert FILE      trust these CA certificates (default: the system's,\n"
		"                     or CURL_CA_BUNDLE)\n"},
	{NULL, NULL}
};

/* hokusai auth COMMAND --help; false for an unknown command */
bool
print_command_help(const char *command)
{
	for (const CommandHelp *h = command_help; h->name; h++)
	{
		if (strcmp(h->name, command) == 0)
		{
			printf("%s\n%s\n%s", h->text, common_help, exit_help);
			return true;
		}
	}
	return false;
}
