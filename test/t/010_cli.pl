# The hokusai command-line tool, end to end: the installed binary against a
# real cluster, for every command, its --json output, and every error with
# its exit code and its one line on stderr (docs/cli.md).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use HokusaiTest;

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $bin = "$bindir/hokusai";
ok(-x $bin, "hokusai is installed in $bindir") or BAIL_OUT("no $bin");

my $node = HokusaiTest::new_node('cli');
my $osuser = getpwuid($<);
my $key_re = qr/hk_(?:live|test)_[0-9A-Za-z]{46}/;
my $uuid_re = qr/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

# Run the binary with the node's connection in the libpq environment.
# Returns [exit code, stdout, stderr].  %opt: env => {...}, stdin => text.
sub hk_opt
{
	my ($opt, @args) = @_;
	local %ENV = (
		%ENV,
		PGHOST => $node->host,
		PGPORT => $node->port,
		PGDATABASE => 'postgres',
		PGUSER => $osuser,
		%{ $opt->{env} || {} });
	my $in = $opt->{stdin} // '';
	my ($out, $err) = ('', '');
	IPC::Run::run([ $bin, @args ], '<', \$in, '>', \$out, '2>', \$err,
		IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
	return [ $? >> 8, $out, $err ];
}

sub hk { return hk_opt({}, @_); }

sub sql { return $node->safe_psql('postgres', shift); }

# The command succeeded; returns its stdout.
sub ok_run
{
	my ($name, @args) = @_;
	my $r = hk(@args);
	is($r->[0], 0, "$name: exit 0") or diag("stderr: $r->[2]");
	return $r->[1];
}

# The command failed with the given exit code and exactly one stderr line
# matching $re, and printed nothing on stdout.
sub fails_like
{
	my ($r, $code, $re, $name) = @_;
	is($r->[0], $code, "$name: exit $code");
	like($r->[2], qr/\Ahokusai: [^\n]*\n\z/, "$name: one line on stderr");
	like($r->[2], $re, "$name: message");
	is($r->[1], '', "$name: nothing on stdout");
}

sub key_count { return sql('SELECT count(*) FROM hokusai_auth.api_keys'); }

###########################################################################
# help and version
###########################################################################

my $r = hk('--version');
is($r->[0], 0, '--version: exit 0');
my $extversion = sql(q{SELECT extversion FROM pg_catalog.pg_extension WHERE extname = 'hokusai_auth'});
is($r->[1], "hokusai (hokusai_auth) $extversion\n", '--version prints the extension version');

$r = hk('--help');
is($r->[0], 0, '--help: exit 0');
like($r->[1], qr/Usage:.*hokusai \[CONNECTION OPTIONS\].*auth COMMAND/s, '--help shows usage');
like($r->[1], qr/^  -h, --host=HOST .*^  -p, --port=PORT .*^  -U, --username=USER .*^  -d, --dbname=DBNAME .*^  --dsn=DSN .*^  -w, --no-password .*^  -W, --password /ms,
	'--help lists the connection options of psql');
my $help = $r->[1];
$r = hk('-?');
is_deeply($r, [ 0, $help, '' ], '-? is --help');
like($r->[1], qr/Exit codes:/, '--help lists the exit codes');
$r = hk('auth', '--help');
is($r->[0], 0, 'auth --help: exit 0');
for my $cmd (qw(create-user create-key list-keys show-key revoke-key rotate-key usage
	update-key disable-key enable-key list-users deactivate-user audit rate-limit-reset
	add-credits set-user-limits))
{
	like($r->[1], qr/^  \Q$cmd\E(?: |$)/m, "auth --help lists $cmd");
	my $h = hk('auth', $cmd, '--help');
	is($h->[0], 0, "auth $cmd --help: exit 0");
	like($h->[1], qr/\AUsage: hokusai auth \Q$cmd\E/, "auth $cmd --help shows its usage");
	like($h->[1], qr/--json/, "auth $cmd --help mentions --json");
}

###########################################################################
# create-user
###########################################################################

my $alice_id = ok_run('create-user', 'auth', 'create-user', 'alice', '--email', 'alice@example.com');
chomp $alice_id;
like($alice_id, qr/\A$uuid_re\z/, 'create-user prints the new id');
is(sql("SELECT username || ' ' || email FROM hokusai_auth.users WHERE id = '$alice_id'"),
	'alice alice@example.com', 'create-user stored the user');

my $j = decode_json(ok_run('create-user --json', '--json', 'auth', 'create-user', 'bob'));
is($j->{username}, 'bob', 'create-user --json: username');
is($j->{email}, undef, 'create-user --json: email null');
my $bob_id = $j->{id};
is(sql("SELECT id FROM hokusai_auth.users WHERE username = 'bob'"), $bob_id,
	'create-user --json: id');

fails_like(hk('auth', 'create-user', 'alice'), 6, qr/user "alice" already exists/,
	'create-user of an existing user');
fails_like(hk('auth', 'create-user', 'bad name'), 6, qr/invalid username/,
	'create-user with an invalid name');
fails_like(hk('auth', 'create-user'), 2, qr/missing USERNAME argument/,
	'create-user without a name');

###########################################################################
# create-key: the key is printed once, on stdout, and validates in SQL
###########################################################################

$r = hk('auth', 'create-key', '--user', 'alice', '--name', 'ci deploy',
	'--expires-in', '30d', '--rate-limit', '100', '--burst', '5',
	'--allow-ip', '10.0.0.0/8', '--allow-ip', '2001:db8::/32',
	'--metadata', '{"team":"ops"}');
is($r->[0], 0, 'create-key: exit 0') or diag($r->[2]);
like($r->[1], qr/\A$key_re\n\z/, 'create-key prints exactly the key on stdout');
my ($key1) = $r->[1] =~ /($key_re)/;
my $prefix1 = substr($key1, 0, 16);
like($r->[2], qr/will not be shown again/, 'create-key warns on stderr');
like($r->[2], qr/\Q$prefix1\E/, 'create-key names the key_prefix on stderr');
unlike($r->[2], qr/$key_re/, 'the key is not repeated on stderr');
is(HokusaiTest::status($node, $key1, '10.1.2.3'), 'ok', 'created key validates');
is(HokusaiTest::status($node, $key1, '192.168.1.1'), 'ip_denied',
	'--allow-ip is applied');
is(HokusaiTest::status($node, $key1, '2001:db8::1'), 'ok', 'second --allow-ip is applied');
my $key1_id = sql("SELECT id FROM hokusai_auth.keys WHERE key_prefix = '$prefix1'");
is( sql(
		"SELECT format('%s|%s|%s|%s|%s|%s', name, environment, rate_limit_per_hour, burst_limit,
			metadata->>'team', expires_at BETWEEN now() + '29 days 23 hours' AND now() + '30 days 1 hour')
		 FROM hokusai_auth.keys WHERE id = '$key1_id'"),
	'ci deploy|live|100|5|ops|t',
	'create-key stored name, env, limits, metadata and --expires-in 30d');

# by user id, --env test, --expires-at, --json
$j = decode_json(
	ok_run(
		'create-key --json', 'auth', 'create-key', '--user', $alice_id, '--name', 'staging',
		'--env', 'test', '--expires-at', '2099-01-01 00:00:00+00', '--json'));
like($j->{key}, qr/\Ahk_test_/, 'create-key --json: a test key');
is($j->{key_prefix}, substr($j->{key}, 0, 16), 'create-key --json: key_prefix');
is($j->{username}, 'alice', 'create-key --json: username');
is($j->{user_id}, $alice_id, 'create-key --json: user_id');
is($j->{environment}, 'test', 'create-key --json: environment');
like($j->{expires_at}, qr/\A2099-01-01T00:00:00(\+00:00|Z)\z/, 'create-key --json: expires_at');
is_deeply($j->{metadata}, {}, 'create-key --json: metadata');
is(HokusaiTest::status($node, $j->{key}), 'ok', 'key from --json validates');
my $key2 = $j->{key};
my $key2_id = $j->{id};

# a key for bob, used by the lifecycle tests below
$r = hk('auth', 'create-key', '--user', 'bob', '--name', 'bob key');
my ($key3) = $r->[1] =~ /\A($key_re)\n\z/;
ok($key3, 'create-key for bob');
my $prefix3 = substr($key3, 0, 16);

###########################################################################
# list-keys and show-key: readable, JSON, never hashes
###########################################################################

my $out = ok_run('list-keys', 'auth', 'list-keys');
like($out, qr/\APREFIX\s+NAME\s+USER\s+ENV\s+STATUS\s+CREATED\s+EXPIRES\s+LAST USED\s+CREDITS\s+ID\n/,
	'list-keys prints a table header');
like($out, qr/^\Q$prefix1\E\s+ci deploy\s+alice\s+live\s+active\s/m, 'list-keys row for alice');
like($out, qr/^\Q$prefix3\E\s+bob key\s+bob\s+live\s+active\s/m, 'list-keys row for bob');
unlike($out, qr/\$2a\$|$key_re/, 'list-keys shows no hash and no key');

$out = ok_run('list-keys --user --json', 'auth', 'list-keys', '--user', 'alice', '--json');
$j = decode_json($out);
is(scalar @$j, 2, 'list-keys --user alice: two keys');
is_deeply([ map { $_->{name} } @$j ], [ 'ci deploy', 'staging' ], 'list-keys --user: in creation order');
is_deeply($j->[0]{allowed_ips}, [ '10.0.0.0/8', '2001:db8::/32' ], 'list-keys --json: allowed_ips');
is($j->[0]{rate_limit_per_hour}, 100, 'list-keys --json: numbers are numbers');
ok(!exists $j->[0]{key_hash} && !exists $j->[0]{key}, 'list-keys --json: no hash, no key');
unlike($out, qr/\$2a\$|$key_re/, 'list-keys --json shows no hash and no key');

$out = ok_run('show-key', 'auth', 'show-key', $prefix1);
like($out, qr/^key_prefix\s+\Q$prefix1\E$/m, 'show-key by prefix');
like($out, qr/^status\s+active$/m, 'show-key status');
like($out, qr/^allowed_ips\s+\["10.0.0.0\/8","2001:db8::\/32"\]$/m, 'show-key allowed_ips');
unlike($out, qr/\$2a\$|$key_re/, 'show-key shows no hash and no key');
$j = decode_json(ok_run('show-key --json', 'auth', 'show-key', $key1_id, '--json'));
is($j->{key_prefix}, $prefix1, 'show-key --json by id');
is($j->{username}, 'alice', 'show-key --json: username');
is($j->{metadata}{team}, 'ops', 'show-key --json: metadata');

###########################################################################
# usage: one summary of the usage aggregates
###########################################################################

# 100 requests of 2024-01-01, through the worker's write step in SQL, into
# partitions made for that day (the worker makes only today's and later).
sql("SELECT hokusai_auth._usage_make_partition(p, '2024-01-01 00:00:00+00')
	   FROM unnest('{hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely,
					 hokusai_auth.api_key_usage_hourly, hokusai_auth.api_key_usage_daily}'::regclass[]) p");
sql(    "SELECT hokusai_auth._usage_flush(array_agg('$key1_id'::uuid), array_agg('/v1/items'::text),
			array_agg('2024-01-01 00:00:00+00'::timestamptz + g * interval '1 minute'), array_agg(g),
			array_agg(CASE WHEN g % 10 = 0 THEN 500 WHEN g % 10 = 1 THEN 404 ELSE 200 END))
	   FROM generate_series(1, 100) g");
# The CLI prints hokusai_auth.usage_summary(), the function SQL and HTTP
# use: the same numbers under the same names (issue 22 item 6)
my @summary_cols = qw(requests errors client_errors server_errors avg_response_ms p50_response_ms
  p95_response_ms p99_response_ms max_response_ms by_status by_endpoint);
my $summary_json = sub {
	my ($args) = @_;
	return decode_json(sql("SELECT row_to_json(s) FROM hokusai_auth.usage_summary('$key1_id'$args) s"));
};
$j = decode_json(ok_run('usage --json', 'auth', 'usage', $prefix1, '--json'));
is_deeply([ sort keys %$j ], [ sort(qw(key_id key_prefix since until), @summary_cols) ],
	'usage --json: the key, the bounds and the columns of usage_summary()');
my $sql_summary = $summary_json->('');
is_deeply({ map { $_ => $j->{$_} } @summary_cols }, $sql_summary, 'usage: the same values as usage_summary()');
is($j->{requests}, 100, 'usage: requests');
is($j->{errors}, 20, 'usage: errors are status >= 400');
is($j->{client_errors}, 10, 'usage: client errors');
is($j->{server_errors}, 10, 'usage: server errors');
is($j->{avg_response_ms}, 50.5, 'usage: average');
is($j->{max_response_ms}, 100, 'usage: max');
ok(defined $j->{p50_response_ms} && defined $j->{p95_response_ms} && defined $j->{p99_response_ms},
	'usage: percentiles');
is_deeply($j->{by_status}, [ { status_code => 200, requests => 80 }, { status_code => 404, requests => 10 },
		{ status_code => 500, requests => 10 } ], 'usage: by_status');
ok(!exists $j->{avg_response_time_ms}, 'usage: no names of its own any more');
is($j->{since}, undef, 'usage without --since: since is null');
ok(defined $j->{until}, 'usage without --until: until is now, as over HTTP');

$j = decode_json(
	ok_run(
		'usage --since --until', 'auth', 'usage', $key1_id, '--json',
		'--since', '2024-01-01 00:30:00+00', '--until', '2024-01-01 01:00:00+00'));
is($j->{requests}, 30, 'usage --since/--until: [since, until) window');
is_deeply({ map { $_ => $j->{$_} } @summary_cols },
	$summary_json->(", '2024-01-01 00:30:00+00', '2024-01-01 01:00:00+00'"),
	'usage --since/--until: the same values as usage_summary()');
$j = decode_json(ok_run('usage --since 1d', 'auth', 'usage', $prefix1, '--json', '--since', '1d'));
is($j->{requests}, 0, 'usage --since DURATION counts back from now');
is($j->{p50_response_ms}, undef, 'usage with no requests: null percentiles');

$out = ok_run('usage', 'auth', 'usage', $prefix1);
like($out, qr/^requests\s+100$/m, 'usage: readable requests');
ok($out =~ /^p95_response_ms\s+([\d.]+)$/m && $1 == $sql_summary->{p95_response_ms},
	'usage: readable p95 (the value of usage_summary())')
  or diag($out);

fails_like(hk('auth', 'usage', 'hk_live_AAAAAAAA'), 5, qr/api key hk_live_AAAAAAAA does not exist/,
	'usage of an unknown key');
# --since after --until: refused, durations before connecting
fails_like(hk('auth', 'usage', $prefix1, '--since', '1h', '--until', '2h'), 2,
	qr/usage: --since 1h is after --until 2h: the range is empty/, 'usage --since 1h --until 2h');
fails_like(hk_opt({ env => { PGPORT => PostgreSQL::Test::Cluster::get_free_port() } },
		'auth', 'usage', $prefix1, '--since', '30m', '--until', '1d'), 2,
	qr/--since 30m is after --until 1d/, 'usage with an empty range of durations: refused before connecting');
fails_like(hk('auth', 'usage', $prefix1, '--since', '2024-01-02', '--until', '2024-01-01'), 2,
	qr/--since 2024-01-02 is after --until 2024-01-01: the range is empty/,
	'usage with --since after --until as timestamps');
fails_like(hk('auth', 'usage', $prefix1, '--since', '2099-01-01', '--until', '1h'), 2,
	qr/--since 2099-01-01 is after --until 1h/, 'usage with a timestamp after a duration');
$j = decode_json(ok_run('usage --since = --until', 'auth', 'usage', $prefix1, '--json',
		'--since', '2024-01-01 00:30:00+00', '--until', '2024-01-01 00:30:00+00'));
is($j->{requests}, 0, 'usage with --since equal to --until: an empty window, not an error');
fails_like(hk('auth', 'usage', $prefix1, '--since', 'yesterdayish'), 6,
	qr/invalid input syntax for type timestamp/, 'usage with a bad --since');

###########################################################################
# revoke-key: confirmation, --yes, --reason
###########################################################################

my $keys_before = key_count();
fails_like(hk('auth', 'revoke-key', $prefix3), 2, qr/not a terminal.*--yes/,
	'revoke-key without a terminal and without --yes');
is(HokusaiTest::status($node, $key3), 'ok', 'refused revoke-key left the key working');

SKIP:
{
	skip 'IO::Pty is not installed', 8 unless eval { require IO::Pty; 1 };

	# stdin on a pseudo-terminal: the question is asked on stderr
	my $ask = sub {
		my ($answer, @args) = @_;
		local %ENV = (%ENV, PGHOST => $node->host, PGPORT => $node->port,
			PGDATABASE => 'postgres', PGUSER => $osuser);
		my ($in, $o, $e) = ('', '', '');
		my $h = IPC::Run::start([ $bin, @args ], '<pty<', \$in, '>', \$o, '2>', \$e,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		$h->pump while $e !~ /\[y\/N\] / && $h->pumpable;
		$in .= "$answer\n";
		$h->finish;
		return [ $h->result(0), $o, $e ];
	};

	$r = $ask->('n', 'auth', 'revoke-key', $prefix3);
	like($r->[2], qr/\QRevoke api key $prefix3 ("bob key" of user bob)?\E.*\[y\/N\] /,
		'revoke-key asks on a terminal');
	is($r->[0], 7, 'answering no: exit 7');
	like($r->[2], qr/\] hokusai: revoke-key: not confirmed; api key \Q$prefix3\E was not revoked\n\z/,
		'answering no: one line after the question');
	is(HokusaiTest::status($node, $key3), 'ok', 'answering no leaves the key working');

	$r = $ask->('y', 'auth', 'revoke-key', $prefix3, '--reason', 'asked');
	is($r->[0], 0, 'answering yes: exit 0');
	is($r->[1], "revoked api key $prefix3\n", 'answering yes: revoked');
	is(HokusaiTest::status($node, $key3), 'revoked', 'answering yes revokes the key');
	is( sql(
			"SELECT details->>'reason' FROM hokusai_auth.audit_log
			 WHERE action = 'revoke' AND details->>'key_prefix' = '$prefix3'"),
		'asked', 'the reason is in the audit log');
}
# whatever happened above, bob's key is revoked from here on
hk('auth', 'revoke-key', $prefix3, '--yes');

$out = ok_run('revoke-key --yes', 'auth', 'revoke-key', $key2_id, '--yes', '--reason', 'leaked in CI');
is($out, 'revoked api key ' . substr($key2, 0, 16) . "\n", 'revoke-key --yes');
is(HokusaiTest::status($node, $key2), 'revoked', 'revoked key no longer validates');
is( sql(
		"SELECT details->>'reason' FROM hokusai_auth.audit_log
		 WHERE action = 'revoke' AND api_key_id = '$key2_id'"),
	'leaked in CI', 'revoke-key --reason is audited');
$j = decode_json(ok_run('revoke-key again --json', 'auth', 'revoke-key', $key2_id, '--yes', '--json'));
is_deeply($j, { id => $key2_id, key_prefix => substr($key2, 0, 16), revoked => JSON::PP::false },
	'revoking twice: --json says revoked false');
is(key_count(), $keys_before, 'revoke-key deletes nothing');

$out = ok_run('list-keys active only', 'auth', 'list-keys', '--user', 'bob');
unlike($out, qr/\Q$prefix3\E/, 'list-keys hides revoked keys');
$out = ok_run('list-keys --all', 'auth', 'list-keys', '--user', 'bob', '--all');
like($out, qr/^\Q$prefix3\E\s+bob key\s+bob\s+live\s+revoked\s/m, 'list-keys --all shows revoked keys');

fails_like(hk('auth', 'revoke-key', 'hk_live_AAAAAAAA', '--yes'), 5,
	qr/api key hk_live_AAAAAAAA does not exist/, 'revoke-key of an unknown prefix');
fails_like(hk('auth', 'revoke-key', '00000000-0000-0000-0000-000000000000', '--yes'), 5,
	qr/api key 00000000-0000-0000-0000-000000000000 does not exist/, 'revoke-key of an unknown id');
fails_like(hk('auth', 'revoke-key', $prefix1, '--yes', '--reason', ''), 6,
	qr/reason must not be empty/, 'revoke-key with an empty reason');
is(HokusaiTest::status($node, $key1, '10.0.0.1'), 'ok', 'failed revoke-key left the key working');

###########################################################################
# rotate-key
###########################################################################

$r = hk('auth', 'rotate-key', $prefix1, '--grace', '1h');
is($r->[0], 0, 'rotate-key --grace 1h: exit 0') or diag($r->[2]);
like($r->[1], qr/\A$key_re\n\z/, 'rotate-key prints exactly the new key');
my ($key4) = $r->[1] =~ /($key_re)/;
like($r->[2], qr/will not be shown again/, 'rotate-key warns on stderr');
unlike($r->[2], qr/$key_re/, 'rotate-key does not repeat the key on stderr');
is(HokusaiTest::status($node, $key4, '10.0.0.1'), 'ok', 'rotated key validates');
is(HokusaiTest::status($node, $key4, '192.168.0.1'), 'ip_denied', 'rotated key keeps allowed_ips');
is(HokusaiTest::status($node, $key1, '10.0.0.1'), 'ok', 'old key works during the grace period');
is( sql(
		"SELECT expires_at BETWEEN now() + '59 minutes' AND now() + '61 minutes'
		 FROM hokusai_auth.keys WHERE id = '$key1_id'"),
	't', 'old key ends after the grace period');

fails_like(hk('auth', 'rotate-key', $prefix1), 1, qr/has already been rotated/,
	'rotate-key of a rotated key: server refuses');

my $prefix4 = substr($key4, 0, 16);
$j = decode_json(ok_run('rotate-key --json', 'auth', 'rotate-key', $prefix4, '--json'));
like($j->{key}, qr/\A$key_re\z/, 'rotate-key --json: key');
is($j->{key_prefix}, substr($j->{key}, 0, 16), 'rotate-key --json: key_prefix');
is($j->{old_key_prefix}, $prefix4, 'rotate-key --json: old_key_prefix');
ok(defined $j->{old_key_ends_at}, 'rotate-key --json: old_key_ends_at');
is(HokusaiTest::status($node, $j->{key}, '10.0.0.1'), 'ok', 'key from rotate-key --json validates');
is(HokusaiTest::status($node, $key4, '10.0.0.1'), 'revoked', 'without --grace the old key stops at once');
my $key5 = $j->{key};
my $prefix5 = $j->{key_prefix};

$keys_before = key_count();
fails_like(hk('auth', 'rotate-key', $prefix5, '--grace', '31d'), 6,
	qr/grace must be at most 30 days/, 'rotate-key with too long a grace');
is(key_count(), $keys_before, 'refused rotate-key created no key');
is(HokusaiTest::status($node, $key5, '10.0.0.1'), 'ok', 'refused rotate-key left the key working');
fails_like(hk('auth', 'rotate-key', 'hk_test_ZZZZZZZZ'), 5, qr/does not exist/,
	'rotate-key of an unknown key');

###########################################################################
# Usage errors: nothing reaches the server
###########################################################################

$keys_before = key_count();
for my $bad ('10', '5y', '-1h', '1.5h', 'h', '30 d', '')
{
	fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x', '--expires-in', $bad),
		2, qr/invalid duration "\Q$bad\E" for --expires-in/, "bad duration '$bad'");
}
fails_like(hk('auth', 'rotate-key', $prefix5, '--grace', 'soon'), 2,
	qr/invalid duration "soon" for --grace/, 'bad --grace');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x', '--expires-in', '0s'),
	2, qr/must be greater than zero/, 'zero --expires-in');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x', '--expires-in', '1d',
	'--expires-at', '2099-01-01'), 2, qr/cannot be used together/, '--expires-in with --expires-at');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x', '--env', 'prod'),
	2, qr/invalid value "prod" for --env/, 'bad --env');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x', '--rate-limit', 'lots'),
	2, qr/invalid value "lots" for --rate-limit/, 'bad --rate-limit');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x', '--burst', '-1'),
	2, qr/invalid value "-1" for --burst: expected a non-negative integer/, 'bad --burst');
fails_like(hk('auth', 'create-key', '--name', 'x'), 2, qr/--user is required/, 'missing --user');
fails_like(hk('auth', 'create-key', '--user', 'alice'), 2, qr/--name is required/, 'missing --name');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name'), 2,
	qr/option "--name" requires an argument/, 'option without its argument');
fails_like(hk('auth', 'list-keys', '--colour'), 2,
	qr/unrecognized option "--colour" \(see "hokusai auth list-keys --help"\)/, 'unknown long option');
fails_like(hk('auth', 'show-key', '-q', $prefix5), 2, qr/unrecognized option "-q"/, 'unknown short option');
fails_like(hk('--frobnicate', 'auth', 'list-keys'), 2, qr/unrecognized option "--frobnicate"/,
	'unknown global option');
$r = hk('auth', 'list-keys', '--dsnn=postgresql://u:s3cr3tpw@localhost/postgres');
fails_like($r, 2, qr/unrecognized option "--dsnn"/, 'unknown option with a value');
unlike($r->[2], qr/s3cr3tpw/, 'the value of an unknown option is not echoed');
fails_like(hk('auth', 'show-key'), 2, qr/missing KEY_ID_OR_PREFIX argument/, 'missing key argument');
fails_like(hk('auth', 'show-key', $prefix5, $prefix1), 2, qr/too many arguments/, 'extra argument');
fails_like(hk('auth', 'delete-key'), 2, qr/unknown command "delete-key"/, 'unknown command');
fails_like(hk('keys'), 2, qr/unknown command group "keys"/, 'unknown command group');
fails_like(hk(), 2, qr/missing command/, 'no command');
fails_like(hk('auth'), 2, qr/missing auth command/, 'no auth command');
fails_like(hk('auth', 'show-key', 'not-a-key'), 2, qr/invalid key reference/, 'bad key reference');
is(key_count(), $keys_before, 'usage errors created no key');

# A full plaintext key where a prefix is expected: refused, never echoed.
my $secret = substr($key5, 16);
for my $cmd ([ 'show-key', $key5 ], [ 'revoke-key', $key5, '--yes' ], [ 'rotate-key', $key5 ],
	[ 'usage', $key5 ])
{
	$r = hk('auth', @$cmd);
	fails_like($r, 2, qr/a full API key was given.*use its key_prefix \Q$prefix5\E/,
		"$cmd->[0] with a full key");
	unlike($r->[2], qr/\Q$secret\E/, "$cmd->[0] does not echo the secret");
}
$r = hk('auth', 'frob', $key5);
unlike($r->[2], qr/\Q$secret\E/, 'a key given as a command is not echoed');
$r = hk('auth', 'list-keys', "--$key5");
unlike($r->[2], qr/\Q$secret\E/, 'a key given as an option is not echoed');
is(HokusaiTest::status($node, $key5, '10.0.0.1'), 'ok', 'the key given in full was not revoked');

###########################################################################
# Server refusals: not found, invalid input; nothing partial is left
###########################################################################

$keys_before = key_count();
fails_like(hk('auth', 'create-key', '--user', 'nobody', '--name', 'x'), 5,
	qr/user "nobody" does not exist/, 'create-key for an unknown user');
fails_like(hk('auth', 'create-key', '--user', '00000000-0000-0000-0000-000000000000', '--name', 'x'),
	5, qr/does not exist/, 'create-key for an unknown user id');
fails_like(hk('auth', 'list-keys', '--user', 'nobody'), 5, qr/user "nobody" does not exist/,
	'list-keys for an unknown user');
fails_like(hk('auth', 'show-key', 'hk_live_AAAAAAAA'), 5, qr/api key hk_live_AAAAAAAA does not exist/,
	'show-key of an unknown key');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x', '--metadata', '[1]'), 6,
	qr/metadata must be a JSON object/, 'create-key with array metadata');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x', '--metadata', '{oops'), 6,
	qr/invalid input syntax for type json/, 'create-key with malformed metadata');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x', '--allow-ip', 'localhost'), 6,
	qr/invalid input syntax for type cidr/, 'create-key with a bad --allow-ip');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x', '--expires-at', '2001-01-01'), 6,
	qr/expires_at must be in the future/, 'create-key expiring in the past');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', ''), 6,
	qr/name must not be empty/, 'create-key with an empty name');
is(key_count(), $keys_before, 'refused create-key left no key behind');

###########################################################################
# update-key, list-users, deactivate-user, audit, rate-limit-reset: the
# commands that only SQL had.  None of them prints a key.
###########################################################################

ok_run('create-user carol', 'auth', 'create-user', 'carol');
$r = hk('auth', 'create-key', '--user', 'carol', '--name', 'carol key', '--expires-in', '1d',
	'--burst', '5', '--allow-ip', '10.0.0.0/8');
my ($ckey) = $r->[1] =~ /\A($key_re)\n\z/;
ok($ckey, 'create-key for carol');
my $cprefix = substr($ckey, 0, 16);
my $cid = sql("SELECT id FROM hokusai_auth.keys WHERE key_prefix = '$cprefix'");
my $carol_id = sql("SELECT id FROM hokusai_auth.users WHERE username = 'carol'");
my @printed;    # stdout and stderr of every command below

$r = hk('auth', 'update-key', $cprefix, '--name', 'renamed', '--rate-limit', '1000', '--no-burst',
	'--no-expiry', '--allowed-ips', '192.168.0.0/16,2001:db8::/32');
push @printed, @$r[ 1, 2 ];
is($r->[0], 0, 'update-key: exit 0') or diag($r->[2]);
like($r->[1], qr/^key_prefix\s+\Q$cprefix\E$/m, 'update-key prints the key as show-key does');
like($r->[1], qr/^name\s+renamed$/m, 'update-key --name');
like($r->[1], qr/^burst_limit\s+-$/m, 'update-key --no-burst');
like($r->[1], qr/^expires_at\s+-$/m, 'update-key --no-expiry');
is( sql(
		"SELECT format('%s|%s|%s|%s|%s', name, rate_limit_per_hour, burst_limit IS NULL,
			expires_at IS NULL, allowed_ips) FROM hokusai_auth.keys WHERE id = '$cid'"),
	'renamed|1000|t|t|{192.168.0.0/16,2001:db8::/32}', 'update-key stored every setting');
is(HokusaiTest::status($node, $ckey, '10.1.1.1'), 'ip_denied', '--allowed-ips replaces the list');
is(HokusaiTest::status($node, $ckey, '192.168.1.1'), 'ok', '--allowed-ips: a listed network');
$r = hk('auth', 'update-key', $cid, '--json', '--expires-at', '2099-01-01 00:00:00+00',
	'--burst', '7', '--no-allowed-ips', '--rate-limit', '2');
push @printed, @$r[ 1, 2 ];
is($r->[0], 0, 'update-key --json by id: exit 0') or diag($r->[2]);
$j = decode_json($r->[1]);
like($j->{expires_at}, qr/\A2099-01-01T00:00:00/, 'update-key --expires-at');
is($j->{burst_limit}, 7, 'update-key --burst');
is($j->{rate_limit_per_hour}, 2, 'update-key --rate-limit');
is($j->{allowed_ips}, undef, 'update-key --no-allowed-ips');
ok(!exists $j->{key} && !exists $j->{key_hash}, 'update-key --json: no key, no hash');

my $long = 'x' x 100000;
for my $bad (
	[ [], 2, qr/update-key: nothing to change/, 'no change' ],
	[ [ '--burst', '3', '--no-burst' ], 2, qr/--burst and --no-burst cannot be used together/, '--burst with --no-burst' ],
	[ [ '--expires-at', '2099-01-01', '--no-expiry' ], 2, qr/--expires-at and --no-expiry cannot be used together/, '--expires-at with --no-expiry' ],
	[ [ '--allowed-ips', '10.0.0.0/8', '--no-allowed-ips' ], 2, qr/--allowed-ips and --no-allowed-ips cannot/, '--allowed-ips with --no-allowed-ips' ],
	[ [ '--allowed-ips', '' ], 2, qr/invalid value for --allowed-ips/, 'empty --allowed-ips' ],
	[ [ '--allowed-ips', '10.0.0.0/8,,10.1.0.0/16' ], 2, qr/invalid value for --allowed-ips/, 'an empty element in --allowed-ips' ],
	[ [ '--allowed-ips', '10.0.0.0/8,' ], 2, qr/invalid value for --allowed-ips/, 'a trailing comma in --allowed-ips' ],
	[ [ '--rate-limit', '0' ], 2, qr/invalid value "0" for --rate-limit/, '--rate-limit 0' ],
	[ [ '--rate-limit', '2147483648' ], 2, qr/invalid value "2147483648" for --rate-limit/, '--rate-limit over int4' ],
	[ [ '--rate-limit', '9' x 40 ], 2, qr/invalid value "9+" for --rate-limit/, 'a huge --rate-limit' ],
	[ [ '--burst', '-1' ], 2, qr/invalid value "-1" for --burst/, 'a negative --burst' ],
	[ [ '--no-burst=yes' ], 2, qr/update-key: option "--no-burst" does not take a value/, 'a flag with a value' ],
	[ [ '--name', '' ], 6, qr/name must not be empty/, 'an empty --name' ],
	[ [ '--name', $long ], 6, qr/name is too long/, 'a huge --name' ],
	[ [ '--allowed-ips', 'not-a-cidr' ], 6, qr/invalid input syntax for type cidr/, 'a bad CIDR' ],
	[ [ '--expires-at', '' ], 6, qr/invalid input syntax for type timestamp/, 'an empty --expires-at' ],
	[ [ '--expires-at', '2001-01-01' ], 6, qr/expires_at must be in the future/, '--expires-at in the past' ])
{
	$r = hk('auth', 'update-key', $cprefix, @{ $bad->[0] });
	push @printed, @$r[ 1, 2 ];
	fails_like($r, $bad->[1], $bad->[2], "update-key: $bad->[3]");
}
fails_like(hk('auth', 'update-key', 'hk_live_AAAAAAAA', '--name', 'x'), 5,
	qr/api key hk_live_AAAAAAAA does not exist/, 'update-key of an unknown key');
fails_like(hk('auth', 'update-key', 'hk_live_', '--name', 'x'), 2, qr/invalid key reference/,
	'update-key of a malformed key reference');
fails_like(hk('auth', 'update-key', $prefix3, '--name', 'x'), 1, qr/cannot update revoked api key/,
	'update-key of a revoked key');
fails_like(hk('auth', 'update-key', '--name', 'x'), 2, qr/missing KEY_ID_OR_PREFIX argument/,
	'update-key without a key');
is(sql("SELECT name || ' ' || rate_limit_per_hour FROM hokusai_auth.keys WHERE id = '$cid'"),
	'renamed 2', 'refused update-key changed nothing');

# Scopes, disable-key and enable-key (docs/authorization.md), on a key of
# a user of their own.
ok_run('create-user dora', 'auth', 'create-user', 'dora');
$keys_before = key_count();
$r = hk('auth', 'create-key', '--user', 'dora', '--name', 'scoped', '--scope', 'models:*',
	'--scope', 'files:read', '--json');
is($r->[0], 0, 'create-key --scope: exit 0') or diag($r->[2]);
$j = decode_json($r->[1]);
is_deeply($j->{scopes}, [ 'models:*', 'files:read' ], 'create-key --scope, repeated: the scopes, in --json');
my ($skey, $sprefix) = ($j->{key}, $j->{key_prefix});
is(sql("SELECT status FROM hokusai_auth.validate_key('$skey', required_scopes => '{models:predict}')"),
	'ok', '... which grant models:predict');
$r = hk('auth', 'show-key', $sprefix);
push @printed, @$r[ 1, 2 ];
like($r->[1], qr/^scopes\s+\["models:\*","files:read"\]$/m, 'show-key shows the scopes');
like($r->[1], qr/^disabled_at\s+-$/m, '... and disabled_at');
$r = hk('auth', 'update-key', $sprefix, '--scope', 'files:*', '--json');
push @printed, @$r[ 1, 2 ];
is($r->[0], 0, 'update-key --scope: exit 0') or diag($r->[2]);
is_deeply(decode_json($r->[1])->{scopes}, ['files:*'], 'update-key --scope replaces the scopes');
is(sql("SELECT status FROM hokusai_auth.validate_key('$skey', required_scopes => '{models:predict}')"),
	'insufficient_scope', '... from the next validation on');
$r = hk('auth', 'update-key', $sprefix, '--no-scopes', '--json');
push @printed, @$r[ 1, 2 ];
is_deeply(decode_json($r->[1])->{scopes}, [], 'update-key --no-scopes');
fails_like(hk('auth', 'update-key', $sprefix, '--scope', 'a', '--no-scopes'), 2,
	qr/--scope and --no-scopes cannot be used together/, 'update-key: --scope with --no-scopes');
fails_like(hk('auth', 'update-key', $sprefix, '--scope', 'Models:Read'), 6,
	qr/invalid scope name in scopes/, 'update-key: a bad scope name');
fails_like(hk('auth', 'create-key', '--user', 'dora', '--name', 'x', '--scope', 'ok', '--scope', 'not ok'), 6,
	qr/invalid scope name in scopes/, 'create-key: a bad scope name');
fails_like(hk('auth', 'create-key', '--user', 'dora', '--name', 'x', '--scope', 'x' x 100000), 6,
	qr/invalid scope name in scopes/, 'create-key: a huge scope name');
is(key_count(), $keys_before + 1, 'the refused create-key left no key behind');

$r = hk('auth', 'disable-key', $sprefix, '--reason', 'paused');
push @printed, @$r[ 1, 2 ];
is($r->[0], 0, 'disable-key: exit 0') or diag($r->[2]);
is($r->[1], "disabled api key $sprefix: it is refused until enable-key\n", 'disable-key says so');
is(HokusaiTest::status($node, $skey), 'disabled', '... and the key is refused, status disabled');
like(hk('auth', 'list-keys', '--user', 'dora')->[1], qr/^\Q$sprefix\E\s.*\sdisabled\s/m,
	'list-keys (without --all) shows the disabled key');
$r = hk('auth', 'disable-key', $sprefix, '--json');
is_deeply(decode_json($r->[1]), { id => sql("SELECT id FROM hokusai_auth.keys WHERE key_prefix = '$sprefix'"),
	key_prefix => $sprefix, disabled => JSON::PP::false }, 'disable-key --json, already disabled: disabled false');
is(hk('auth', 'disable-key', $sprefix)->[1], "api key $sprefix was already disabled; nothing changed\n",
	'disable-key again: nothing changed');
$r = hk('auth', 'enable-key', $sprefix, '--json');
is($r->[0], 0, 'enable-key --json: exit 0') or diag($r->[2]);
is(decode_json($r->[1])->{enabled}, JSON::PP::true, 'enable-key --json: enabled true');
is(HokusaiTest::status($node, $skey), 'ok', '... and the key works again');
is(hk('auth', 'enable-key', $sprefix)->[1], "api key $sprefix was not disabled; nothing changed\n",
	'enable-key again: nothing changed');
is(sql("SELECT string_agg(action || ':' || coalesce(details->>'reason', ''), ',' ORDER BY id)"
		. " FROM hokusai_auth.audit_log WHERE action IN ('disable', 'enable')"
		. " AND details->>'key_prefix' = '$sprefix'"),
	'disable:paused,enable:', 'disable-key and enable-key are audited');
fails_like(hk('auth', 'enable-key', $prefix3), 1, qr/cannot enable revoked api key/,
	'enable-key of a revoked key');
fails_like(hk('auth', 'disable-key', $prefix3), 1, qr/cannot disable revoked api key/,
	'disable-key of a revoked key');
fails_like(hk('auth', 'disable-key', 'hk_live_AAAAAAAA'), 5, qr/api key hk_live_AAAAAAAA does not exist/,
	'disable-key of an unknown key');
fails_like(hk('auth', 'disable-key', $sprefix, '--reason', ''), 6, qr/reason must not be empty/,
	'disable-key with an empty --reason');
fails_like(hk('auth', 'enable-key'), 2, qr/missing KEY_ID_OR_PREFIX argument/, 'enable-key without a key');
fails_like(hk('auth', 'enable-key', $sprefix, '--reason', 'x'), 2, qr/unrecognized option "--reason"/,
	'enable-key takes no --reason');
fails_like(hk('auth', 'disable-key', $skey), 2, qr/a full API key was given/,
	'disable-key with the full key: refused, not echoed');

# rate-limit-reset: carol's key allows 2 requests an hour now, and one
# (from 192.168.1.1 above) is in the window
is(HokusaiTest::status($node, $ckey), 'ok', 'rate limit: request 2 of 2');
is(HokusaiTest::status($node, $ckey), 'rate_limited', 'rate limit: request 3 is refused');
$r = hk('auth', 'rate-limit-reset', $cprefix);
push @printed, @$r[ 1, 2 ];
is_deeply($r, [ 0, "reset the rate limit of api key $cprefix: it can use its full quota again\n", '' ],
	'rate-limit-reset');
is(HokusaiTest::status($node, $ckey), 'ok', 'after rate-limit-reset the key works again');
$r = hk('auth', 'rate-limit-reset', $cid, '--json');
push @printed, @$r[ 1, 2 ];
is($r->[0], 0, 'rate-limit-reset --json by id: exit 0');
$j = decode_json($r->[1]);
is_deeply([ $j->{id}, $j->{key_prefix}, $j->{had_windows} ], [ $cid, $cprefix, JSON::PP::true ],
	'rate-limit-reset --json');
is( sql(
		"SELECT count(*) FROM hokusai_auth.audit_log
		 WHERE api_key_id = '$cid' AND details->'changes'->>'rate_limit_reset' = 'true'"),
	2, 'rate-limit-reset is audited');
fails_like(hk('auth', 'rate-limit-reset', 'hk_test_ZZZZZZZZ'), 5, qr/does not exist/,
	'rate-limit-reset of an unknown key');
fails_like(hk('auth', 'rate-limit-reset'), 2, qr/missing KEY_ID_OR_PREFIX/, 'rate-limit-reset without a key');
fails_like(hk('auth', 'rate-limit-reset', $cprefix, $prefix5), 2, qr/too many arguments/,
	'rate-limit-reset with two keys');

# list-users
$r = hk('auth', 'list-users');
push @printed, @$r[ 1, 2 ];
is($r->[0], 0, 'list-users: exit 0');
like($r->[1], qr/\AUSERNAME\s+EMAIL\s+STATUS\s+ACTIVE KEYS\s+CREATED\s+ID\n/, 'list-users: header');
like($r->[1], qr/^alice\s+alice\@example\.com\s+active\s+\d+\s+\S+ \S+\s+\Q$alice_id\E$/m, 'list-users: alice');
like($r->[1], qr/^carol\s+-\s+active\s+1\s/m, 'list-users: carol, one active key');
$j = decode_json(ok_run('list-users --json', 'auth', 'list-users', '--json'));
my ($carol) = grep { $_->{username} eq 'carol' } @$j;
is_deeply([ $carol->{id}, $carol->{is_active}, $carol->{active_keys}, $carol->{email} ],
	[ $carol_id, JSON::PP::true, 1, undef ], 'list-users --json: carol');
fails_like(hk('auth', 'list-users', 'carol'), 2, qr/unexpected argument/, 'list-users with an argument');

# deactivate-user: the keys stay, refused
$r = hk('auth', 'deactivate-user', 'carol');
push @printed, @$r[ 1, 2 ];
is_deeply($r, [ 0, "deactivated user carol: its 1 active api keys are refused while the user is inactive (they are not revoked), and it cannot get new keys\n", '' ],
	'deactivate-user says what happens to the keys');
isnt(HokusaiTest::status($node, $ckey), 'ok', 'the key of an inactive user is refused');
is(sql("SELECT revoked_at IS NULL FROM hokusai_auth.api_keys WHERE id = '$cid'"), 't',
	'deactivate-user revokes nothing');
fails_like(hk('auth', 'create-key', '--user', 'carol', '--name', 'x'), 1, qr/is not active/,
	'no new key for an inactive user');
$j = decode_json(ok_run('deactivate-user again --json', 'auth', 'deactivate-user', $carol_id, '--json'));
is_deeply($j, { id => $carol_id, username => 'carol', deactivated => JSON::PP::false, active_keys => 1 },
	'deactivate-user twice: --json says deactivated false');
is(hk('auth', 'deactivate-user', 'carol')->[1],
	"user carol was already inactive; nothing changed (its 1 active api keys are refused)\n",
	'deactivate-user twice: nothing changed');
like(ok_run('list-users after', 'auth', 'list-users'), qr/^carol\s+-\s+inactive\s/m, 'list-users: carol inactive');
for my $bad ([ 'nobody', 'an unknown user' ], [ '', 'an empty user' ], [ $long, 'a huge user name' ],
	[ '00000000-0000-0000-0000-000000000000', 'an unknown user id' ])
{
	$r = hk('auth', 'deactivate-user', $bad->[0]);
	my $shown = substr($bad->[0], 0, 100) . (length($bad->[0]) > 100 ? '...' : '');
	fails_like($r, 5, qr/user "\Q$shown\E" does not exist/, "deactivate-user of $bad->[1]");
}
fails_like(hk('auth', 'deactivate-user'), 2, qr/missing USER argument/, 'deactivate-user without a user');
is(sql("SELECT count(*) FROM hokusai_auth.users WHERE NOT is_active"), 1, 'only carol is inactive');

# audit
$r = hk('auth', 'audit', '--key', $cprefix);
push @printed, @$r[ 1, 2 ];
is($r->[0], 0, 'audit --key: exit 0') or diag($r->[2]);
like($r->[1], qr/\AID\s+AT\s+ACTION\s+KEY\s+USER\s+ACTOR\s+DETAILS\n/, 'audit: header');
like($r->[1], qr/^\d+\s+\S+ \S+\s+create\s+\Q$cprefix\E\s+carol\s+\S+\s+\{/m, 'audit: the create row');
is(scalar(() = $r->[1] =~ /^\d+\s/mg), 5, 'audit --key: only that key\'s rows (create, 2 updates, 2 resets)');
$r = hk('auth', 'audit', '--key', $cid, '--limit', '2', '--json');
push @printed, @$r[ 1, 2 ];
$j = decode_json($r->[1]);
is(scalar @$j, 2, 'audit --limit 2');
ok($j->[0]{id} < $j->[1]{id}, 'audit: the newest rows, oldest first');
is_deeply([ map { $_->{api_key_id} } @$j ], [ $cid, $cid ], 'audit --json: api_key_id');
is($j->[1]{details}{changes}{rate_limit_reset}, JSON::PP::true, 'audit --json: details are JSON');
$r = hk('auth', 'audit', '--json');
push @printed, @$r[ 1, 2 ];
$j = decode_json($r->[1]);
ok(@$j > 5 && @$j <= 50, 'audit: at most 50 rows by default');
for my $bad ([ [ '--limit', '0' ], 2, qr/invalid value "0" for --limit/, '--limit 0' ],
	[ [ '--limit', '-5' ], 2, qr/invalid value "-5" for --limit/, 'a negative --limit' ],
	[ [ '--limit', '9' x 30 ], 2, qr/invalid value "9+" for --limit/, 'a huge --limit' ],
	[ [ '--limit', '' ], 2, qr/invalid value "" for --limit/, 'an empty --limit' ],
	[ [ '--key', '' ], 2, qr/invalid key reference/, 'an empty --key' ],
	[ [ '--key', 'hk_live_AAAAAAAA' ], 5, qr/api key hk_live_AAAAAAAA does not exist/, 'an unknown --key' ],
	[ [ '--verify', '--key', $cprefix ], 2, qr/--verify checks the whole chain/, '--verify with --key' ],
	[ [ '--verify', '--limit', '3' ], 2, qr/--verify checks the whole chain/, '--verify with --limit' ],
	[ [ 'extra' ], 2, qr/unexpected argument/, 'an argument' ])
{
	$r = hk('auth', 'audit', @{ $bad->[0] });
	push @printed, @$r[ 1, 2 ];
	fails_like($r, $bad->[1], $bad->[2], "audit: $bad->[3]");
}

# audit --verify: seals, then checks; a tampered row is named
$r = hk('auth', 'audit', '--verify');
push @printed, @$r[ 1, 2 ];
is($r->[0], 0, 'audit --verify: exit 0') or diag($r->[2]);
like($r->[1], qr/\Aaudit chain intact \(\d+ rows sealed now\)\n\z/, 'audit --verify: intact');
is(sql('SELECT count(*) FROM hokusai_auth.audit_log WHERE seq IS NULL'), 0, 'audit --verify sealed every row');
$j = decode_json(ok_run('audit --verify --json', 'auth', 'audit', '--verify', '--json'));
is_deeply($j, { intact => JSON::PP::true, sealed_now => 0 }, 'audit --verify --json');
my $victim = sql("SELECT id FROM hokusai_auth.audit_log WHERE api_key_id = '$cid' ORDER BY id LIMIT 1");
my $orig = sql("SELECT details::text FROM hokusai_auth.audit_log WHERE id = $victim");
sql("SET session_replication_role = replica;
	 UPDATE hokusai_auth.audit_log SET details = details || '{\"tampered\": true}' WHERE id = $victim");
fails_like(hk('auth', 'audit', '--verify'), 8,
	qr/audit chain broken: the first row that fails the check is hokusai_auth\.audit_log id $victim\n/,
	'audit --verify of a tampered row');
sql("SET session_replication_role = replica;
	 UPDATE hokusai_auth.audit_log SET details = \$hk\$$orig\$hk\$::jsonb WHERE id = $victim");
ok_run('audit --verify after the repair', 'auth', 'audit', '--verify');

# full keys where a key reference is expected: refused, never echoed
my $csecret = substr($ckey, 16);
for my $cmd ([ 'update-key', $ckey, '--name', 'x' ], [ 'rate-limit-reset', $ckey ], [ 'audit', '--key', $ckey ])
{
	$r = hk('auth', @$cmd);
	push @printed, @$r[ 1, 2 ];
	fails_like($r, 2, qr/a full API key was given.*use its key_prefix \Q$cprefix\E/, "$cmd->[0] with a full key");
}
is(scalar(grep { /$key_re/ } @printed), 0, 'no key printed by the new commands, on stdout or stderr');
is(scalar(grep { /\Q$csecret\E|\$2[aby]\$/ } @printed), 0, 'no secret and no hash printed by the new commands');
$keys_before = key_count();

###########################################################################
# Permission denied: a role without grants
###########################################################################

sql('CREATE ROLE nopriv LOGIN');
my %nopriv = (env => { PGUSER => 'nopriv' });
fails_like(hk_opt(\%nopriv, 'auth', 'list-keys'), 4, qr/permission denied/, 'list-keys without privileges');
fails_like(hk_opt(\%nopriv, 'auth', 'create-key', '--user', 'alice', '--name', 'x'), 4,
	qr/permission denied/, 'create-key without privileges');
fails_like(hk_opt(\%nopriv, 'auth', 'create-user', 'mallory'), 4, qr/permission denied/,
	'create-user without privileges');
fails_like(hk_opt(\%nopriv, 'auth', 'revoke-key', $prefix5, '--yes'), 4, qr/permission denied/,
	'revoke-key without privileges');
fails_like(hk_opt(\%nopriv, 'auth', 'usage', $prefix5), 4, qr/permission denied/,
	'usage without privileges');
for my $cmd ([ 'update-key', $prefix5, '--name', 'x' ], [ 'list-users' ], [ 'deactivate-user', 'alice' ],
	[ 'audit' ], [ 'audit', '--verify' ], [ 'rate-limit-reset', $prefix5 ],
	[ 'add-credits', $prefix5, '--credits', '1' ], [ 'set-user-limits', 'alice', '--rate-limit', '1' ])
{
	fails_like(hk_opt(\%nopriv, 'auth', @$cmd), 4, qr/permission denied/, "$cmd->[0] without privileges");
}
is(sql("SELECT count(*) FROM hokusai_auth.users WHERE NOT is_active"), 1, 'no user deactivated without privileges');
is(key_count(), $keys_before, 'no key created without privileges');
is(HokusaiTest::status($node, $key5, '10.0.0.1'), 'ok', 'no key revoked without privileges');

###########################################################################
# Metering: create-key --credits --refill, add-credits, update-key --refill,
# set-user-limits, credits in list-keys and show-key
###########################################################################

ok_run('create-user dave', 'auth', 'create-user', 'dave');
$r = hk('auth', 'create-key', '--user', 'dave', '--name', 'metered', '--credits', '50',
	'--refill', '1000/day', '--burst', '0');
my ($dkey) = $r->[1] =~ /\A($key_re)\n\z/;
ok($dkey, 'create-key --credits --refill --burst 0') or diag($r->[2]);
my $dprefix = substr($dkey // '', 0, 16);
is(sql("SELECT format('%s|%s|%s|%s', credits_remaining, refill_amount, refill_interval, burst_limit) "
	  . "FROM hokusai_auth.api_keys WHERE key_prefix = '$dprefix'"),
	'50|1000|day|0', '... stored the credits, the refill and no burst limit');
$r = hk('auth', 'list-keys', '--user', 'dave');
like($r->[1], qr/\A[^\n]*CREDITS/, 'list-keys has a CREDITS column');
like($r->[1], qr/^\Q$dprefix\E .* 50 /m, '... showing the balance');
$r = hk('auth', 'show-key', $dprefix);
like($r->[1], qr/^credits_remaining\s+50$/m, 'show-key shows credits_remaining');
like($r->[1], qr/^refill_interval\s+day$/m, '... and the refill');
is(ok_run('add-credits', 'auth', 'add-credits', $dprefix, '--credits', '25'),
	"api key $dprefix has 75 credits\n", 'add-credits prints the new balance');
$j = decode_json(ok_run('add-credits --json', '--json', 'auth', 'add-credits', $dprefix, '--credits', '-100'));
is($j->{credits_remaining}, 0, 'add-credits --json with a negative amount: never below zero');
is($j->{amount}, -100, '... the amount asked for');
$r = hk('auth', 'update-key', $dprefix, '--refill', '20/week');
is($r->[0], 0, 'update-key --refill') or diag($r->[2]);
like($r->[1], qr/^refill_amount\s+20$/m, '... the new amount');
$r = hk('auth', 'update-key', $dprefix, '--no-refill');
like($r->[1], qr/^refill_interval\s+-$/m, 'update-key --no-refill');
$r = hk('auth', 'update-key', $dprefix, '--credits', '40');
is($r->[0], 0, 'update-key --credits') or diag($r->[2]);
is(sql("SELECT credits_remaining FROM hokusai_auth.rate_limit_status("
	  . "(SELECT id FROM hokusai_auth.api_keys WHERE key_prefix = '$dprefix'))"),
	'40', '... sets the live balance');
$r = hk('auth', 'update-key', $dprefix, '--no-credits');
is($r->[0], 0, 'update-key --no-credits') or diag($r->[2]);
like($r->[1], qr/^credits_remaining\s+-$/m, '... the key is no longer metered');
is(sql("SELECT count(*) FROM hokusai_auth.api_keys WHERE key_prefix = '$dprefix'"
	  . " AND credits_remaining IS NULL AND refill_amount IS NULL"), '1', '... nor is its row');
$r = hk('auth', 'update-key', $dprefix, '--credits', '50');
like($r->[1], qr/^credits_remaining\s+50$/m, 'update-key --credits makes it metered again');
$j = decode_json(ok_run('set-user-limits --json', '--json', 'auth', 'set-user-limits', 'dave',
		'--rate-limit', '500', '--burst', '20'));
is($j->{rate_limit_per_hour}, 500, 'set-user-limits --rate-limit');
is(sql("SELECT rate_limit_per_hour || '|' || burst_limit FROM hokusai_auth.users WHERE username = 'dave'"),
	'500|20', '... stored on the user');
is(ok_run('set-user-limits with none', 'auth', 'set-user-limits', 'dave'),
	"the keys of user dave share no hourly limit and no burst limit\n",
	'set-user-limits without limits removes them');
for my $bad (
	[ [ 'create-key', '--user', 'dave', '--name', 'x', '--credits', '-1' ], 2,
		qr/invalid value "-1" for --credits/, 'negative --credits' ],
	[ [ 'create-key', '--user', 'dave', '--name', 'x', '--credits', 'lots' ], 2,
		qr/invalid value "lots" for --credits/, 'non-numeric --credits' ],
	[ [ 'create-key', '--user', 'dave', '--name', 'x', '--credits', '99999999999999999999' ], 2,
		qr/for --credits/, '--credits past a bigint' ],
	[ [ 'create-key', '--user', 'dave', '--name', 'x', '--refill', '100/hour' ], 2,
		qr/invalid value "100\/hour" for --refill: use N\/day, N\/week or N\/month/, 'a bad --refill' ],
	[ [ 'create-key', '--user', 'dave', '--name', 'x', '--refill', '0/day' ], 2,
		qr/for --refill/, 'a zero --refill' ],
	[ [ 'add-credits', $dprefix ], 2, qr/--credits/, 'add-credits without --credits' ],
	[ [ 'add-credits', $dprefix, '--credits', '0' ], 6, qr/amount must not be zero/, 'add-credits 0' ],
	[ [ 'add-credits', $cprefix, '--credits', '5' ], 1, qr/has no credit balance|revoked|expired/,
		'add-credits to a key without credits' ],
	[ [ 'update-key', $dprefix, '--credits', '5', '--no-credits' ], 2,
		qr/--credits and --no-credits cannot be used together/, '--credits with --no-credits' ],
	[ [ 'update-key', $dprefix, '--refill', '5/day', '--no-credits' ], 2,
		qr/--refill and --no-credits cannot be used together/, '--refill with --no-credits' ],
	[ [ 'update-key', $dprefix, '--credits', '-5' ], 2,
		qr/invalid value "-5" for --credits/, 'update-key with negative --credits' ],
	[ [ 'update-key', $dprefix, '--refill', '5/day', '--no-refill' ], 2,
		qr/--refill and --no-refill cannot be used together/, '--refill with --no-refill' ],
	[ [ 'set-user-limits', 'nobody' ], 5, qr/nobody/, 'set-user-limits of an unknown user' ],
	[ [ 'set-user-limits', 'dave', '--burst', '0' ], 6, qr/burst_limit must be positive/,
		'set-user-limits --burst 0' ])
{
	fails_like(hk('auth', @{ $bad->[0] }), $bad->[1], $bad->[2], "metering: $bad->[3]");
}

###########################################################################
# Connection options like psql's: -h -p -U -d (also a connection string),
# -w -W, before or after the command; -h is the host, never help
###########################################################################

# the libpq environment points nowhere: only the options can connect
my $nowhere = PostgreSQL::Test::Cluster::get_free_port();
my %nowhere = (env => { PGHOST => '/nonexistent', PGPORT => $nowhere, PGDATABASE => 'nodb',
		PGUSER => 'nobody' });
my @conn = ('-h', $node->host, '-p', $node->port, '-U', $osuser, '-d', 'postgres');
$r = hk_opt(\%nowhere, @conn, 'auth', 'create-key', '--user', 'alice', '--name', 'from -h');
is($r->[0], 0, '-h -p -U -d before auth: exit 0') or diag($r->[2]);
like($r->[1], qr/\A$key_re\n\z/, 'KEY=$(hokusai -h HOST ... auth create-key): only the key on stdout');
$r = hk_opt(\%nowhere, 'auth', 'list-keys', '--user', 'alice', '--host', $node->host,
	'--port=' . $node->port, '--username', $osuser, '--dbname=postgres');
is($r->[0], 0, '--host --port --username --dbname after the command: exit 0') or diag($r->[2]);
like($r->[1], qr/^\S+\s+from -h\s+alice\s/m, 'long connection options connect');
$r = hk_opt(\%nowhere, '-d', "host=" . $node->host . " port=" . $node->port
	  . " dbname=postgres user=$osuser", 'auth', 'list-keys');
is($r->[0], 0, '-d takes a connection string') or diag($r->[2]);
$r = hk_opt(\%nowhere, '-d', 'postgresql:///postgres?host=' . $node->host . '&port=' . $node->port
	  . "&user=$osuser", '-w', 'auth', 'show-key', $prefix5);
is($r->[0], 0, '-d takes a URI; -w with no password needed') or diag($r->[2]);
$r = hk_opt(\%nowhere, @conn, 'auth', 'list-keys', '-h', '/nonexistent');
fails_like($r, 3, qr/could not connect/, 'the last -h counts, after the command too');

for my $bad ([ [ '-h' ], qr/option "-h" requires a host name: -h is --host, as in psql; for help use -\? or --help/, '-h alone' ],
	[ [ 'auth', 'list-keys', '-h' ], qr/list-keys: option "-h" requires a host name.*-\? or --help/, '-h alone after the command' ],
	[ [ '-h', '', 'auth', 'list-keys' ], qr/option -h\/--host requires a non-empty value/, 'empty -h' ],
	[ [ '-U', '', 'auth', 'list-keys' ], qr/option -U\/--username requires a non-empty value/, 'empty -U' ],
	[ [ 'auth', 'list-keys', '--dbname=' ], qr/option -d\/--dbname requires a non-empty value/, 'empty --dbname' ],
	[ [ '--dsn', '', 'auth', 'list-keys' ], qr/option --dsn requires a non-empty value/, 'empty --dsn' ],
	[ [ '-p', '0', 'auth', 'list-keys' ], qr/invalid port "0"/, 'port 0' ],
	[ [ '-p', '65536', 'auth', 'list-keys' ], qr/invalid port "65536"/, 'port 65536' ],
	[ [ '-p', '99999999999999999999', 'auth', 'list-keys' ], qr/invalid port "9+"/, 'huge port' ],
	[ [ 'auth', 'list-keys', '--port', '5432x' ], qr/invalid port "5432x"/, 'port with junk' ],
	[ [ 'auth', 'list-keys', '-p' ], qr/option "-p" requires an argument/, '-p alone' ])
{
	fails_like(hk_opt(\%nowhere, @{ $bad->[0] }), 2, $bad->[1], $bad->[2]);
}
$r = hk('auth', 'list-keys', '-?');
is($r->[0], 0, 'auth list-keys -?: exit 0');
like($r->[1], qr/\AUsage: hokusai auth list-keys/, 'auth list-keys -? shows its help');
$r = hk('auth', '-?');
like($r->[1], qr/\AUsage: hokusai auth COMMAND/, 'auth -? shows the commands');

# A database without the extension: named, with what to do
sql('CREATE DATABASE cli_noext');
fails_like(hk('-d', 'cli_noext', 'auth', 'list-keys'), 3,
	qr/database "cli_noext" does not have the hokusai_auth extension: run CREATE EXTENSION hokusai_auth CASCADE as a superuser/,
	'a database without hokusai_auth');
unlike(hk('-d', 'cli_noext', 'auth', 'show-key', $prefix5)->[2], qr/relation/,
	'no "relation does not exist" for a missing extension');

# Passwords: a role that must give one over the socket
sql(q{CREATE ROLE regress_cli_pw LOGIN SUPERUSER PASSWORD 'pw-s3cret-value'});
{
	my $hba = $node->data_dir . '/pg_hba.conf';
	my $old = slurp_file($hba);
	open(my $fh, '>', $hba) or die "could not write $hba: $!";
	print $fh "local all regress_cli_pw scram-sha-256\n", $old;
	close $fh;
	$node->reload;
}
my %pw = (env => { PGUSER => 'regress_cli_pw' });
fails_like(hk_opt(\%pw, '-w', 'auth', 'list-keys'), 3,
	qr/could not connect to database "postgres" as user "regress_cli_pw": the server asks for a password, and -w\/--no-password forbids asking; set PGPASSWORD or use a password file/,
	'-w when the server asks for a password');
$r = hk_opt({ env => { PGUSER => 'regress_cli_pw', PGPASSWORD => 'pw-s3cret-value' } },
	'-w', 'auth', 'list-keys');
is($r->[0], 0, '-w with PGPASSWORD: exit 0') or diag($r->[2]);
fails_like(hk_opt({ env => { PGUSER => 'regress_cli_pw', PGPASSWORD => 'wrong' } }, 'auth', 'list-keys'),
	3, qr/password authentication failed for user "regress_cli_pw"/, 'a wrong PGPASSWORD');

SKIP:
{
	skip 'IO::Pty is not installed', 9 unless eval { require IO::Pty; 1 };

	# stdin and stdout on a pseudo-terminal, the controlling terminal: the
	# prompt is written to /dev/tty, so it shows on stdout here
	my $prompted = sub {
		my ($answer, @args) = @_;
		local %ENV = (%ENV, PGHOST => $node->host, PGPORT => $node->port,
			PGDATABASE => 'postgres', PGUSER => 'regress_cli_pw');
		delete $ENV{PGPASSWORD};
		my ($in, $o, $e) = ('', '', '');
		my $h = IPC::Run::start([ $bin, @args ], '<pty<', \$in, '>pty>', \$o, '2>', \$e,
			IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
		$h->pump while $o !~ /Password[^:]*: / && $h->pumpable;
		$in .= "$answer\n";
		$h->finish;
		return [ $h->result(0), $o, $e ];
	};
	$r = $prompted->('pw-s3cret-value', 'auth', 'list-keys', '--user', 'alice');
	is($r->[0], 0, 'asked for the password on the terminal: exit 0') or diag($r->[2]);
	like($r->[1], qr/\APassword for user regress_cli_pw: /, 'the prompt names the user');
	like($r->[1], qr/^\S+\s+from -h\s+alice\s/m, 'connected with the typed password');
	unlike($r->[1], qr/pw-s3cret/, 'the password is not echoed');
	$r = $prompted->('wrong', 'auth', 'list-keys');
	is($r->[0], 3, 'a wrong typed password: exit 3');
	like($r->[2], qr/\Ahokusai: could not connect: .*password authentication failed/, 'a wrong typed password: message');
	$r = $prompted->('pw-s3cret-value', '-W', '-U', 'regress_cli_pw', 'auth', 'show-key', $prefix5);
	is($r->[0], 0, '-W asks before connecting: exit 0') or diag($r->[2]);
	like($r->[1], qr/\APassword for user regress_cli_pw: .*^key_prefix\s+\Q$prefix5\E/ms,
		'-W: the prompt, then the key');
	unlike($r->[1], qr/pw-s3cret/, '-W: the password is not echoed');
}
$keys_before = key_count();

###########################################################################
# --dsn, and a server that is down
###########################################################################

my $dsn = 'host=' . $node->host . ' port=' . $node->port . " dbname=postgres user=$osuser";
$out = ok_run('--dsn', '--dsn', $dsn, 'auth', 'list-keys', '--user', 'alice');
like($out, qr/^\Q$prefix5\E\s/m, '--dsn before the command connects');
$out = ok_run('--dsn after', 'auth', 'show-key', $prefix5, '--dsn', $dsn);
like($out, qr/^key_prefix\s+\Q$prefix5\E$/m, '--dsn after the command connects');

my $dead_port = PostgreSQL::Test::Cluster::get_free_port();
fails_like(hk('--dsn', 'host=' . $node->host . " port=$dead_port dbname=postgres", 'auth', 'list-keys'),
	3, qr/could not connect: .*failed/, 'nothing listening on the port');
fails_like(hk_opt({ env => { PGPORT => $dead_port } }, 'auth', 'show-key', $prefix5),
	3, qr/could not connect/, 'PGPORT of a dead server');

$node->stop;
fails_like(hk('auth', 'list-keys'), 3, qr/could not connect/, 'list-keys with the server down');
fails_like(hk('auth', 'create-key', '--user', 'alice', '--name', 'x'), 3, qr/could not connect/,
	'create-key with the server down');
fails_like(hk('auth', 'revoke-key', $prefix5, '--yes'), 3, qr/could not connect/,
	'revoke-key with the server down');
$node->start;
is(key_count(), $keys_before, 'nothing happened while the server was down');

###########################################################################
# Trust (DESIGN.md section 11): the tool clears search_path on connect, as
# pg_dump does, and qualifies every object and operator it names.  In a
# database whose default search_path puts first a schema of an unprivileged
# role, holding look-alikes of the operators, functions, aggregates and
# types the tool's statements use, each of which reports and tries to make
# that role a superuser, a superuser runs every command: nothing planted
# runs.  (Its own database: the worker's connection to "postgres" plays no
# part.)
###########################################################################

sql('CREATE DATABASE cli_trust');
$node->safe_psql('cli_trust', 'CREATE EXTENSION hokusai_auth CASCADE');
$node->safe_psql('cli_trust', slurp_file('test/lib/plant_operator.sql') . <<'EOSQL');
CREATE ROLE regress_cli_evil LOGIN;
CREATE SCHEMA cli_evil AUTHORIZATION regress_cli_evil;
SET ROLE regress_cli_evil;
GRANT USAGE ON SCHEMA cli_evil TO PUBLIC;
CREATE FUNCTION cli_evil.ran(what text) RETURNS boolean
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	BEGIN
		ALTER ROLE regress_cli_evil SUPERUSER;
	EXCEPTION WHEN OTHERS THEN
		NULL;
	END;
	RAISE WARNING 'planted % ran as %', what, current_user;
	RETURN true;
END
$$;
DO $$
BEGIN
	PERFORM pg_temp.hk_plant_operator('cli_evil', o, t, t)
	   FROM unnest(ARRAY['=', '<>', '<', '<=', '>', '>=']) o,
			unnest(ARRAY['text', 'uuid', 'timestamptz', 'integer', 'bigint', 'boolean',
						 'interval', 'jsonb', 'cidr']) t;
	PERFORM pg_temp.hk_plant_operator('cli_evil', o, l, r)
	   FROM (VALUES ('+', 'timestamptz', 'interval'), ('-', 'timestamptz', 'interval'),
					('-', 'timestamptz', 'timestamptz'), ('||', 'text', 'text'),
					('~', 'text', 'text')) v(o, l, r);
END
$$;
-- functions and aggregates the statements call
CREATE FUNCTION cli_evil.now() RETURNS timestamptz
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM cli_evil.ran('function now()');
	RETURN pg_catalog.now();
END
$$;
CREATE FUNCTION cli_evil.round(numeric, integer) RETURNS numeric
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM cli_evil.ran('function round(numeric, integer)');
	RETURN pg_catalog.round($1, $2);
END
$$;
CREATE FUNCTION cli_evil.to_json(cidr[]) RETURNS json
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM cli_evil.ran('function to_json(cidr[])');
	RETURN pg_catalog.to_json($1);
END
$$;
CREATE FUNCTION cli_evil.count_step(bigint, anyelement) RETURNS bigint
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM cli_evil.ran(format('aggregate count(%s)', pg_typeof($2)));
	RETURN CASE WHEN $2 IS NULL THEN $1 ELSE $1 + 1 END;
END
$$;
CREATE AGGREGATE cli_evil.count(uuid) (SFUNC = cli_evil.count_step, STYPE = bigint, INITCOND = '0');
CREATE FUNCTION cli_evil.pick_step(anyelement, anyelement) RETURNS anyelement
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM cli_evil.ran(format('aggregate min/max(%s)', pg_typeof($2)));
	RETURN greatest($1, $2);
END
$$;
CREATE AGGREGATE cli_evil.min(timestamptz) (SFUNC = cli_evil.pick_step, STYPE = timestamptz);
CREATE AGGREGATE cli_evil.max(timestamptz) (SFUNC = cli_evil.pick_step, STYPE = timestamptz);
CREATE FUNCTION cli_evil.avg_step(numeric[], integer) RETURNS numeric[]
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM cli_evil.ran('aggregate avg(integer)');
	RETURN CASE WHEN $2 IS NULL THEN $1 ELSE ARRAY[$1[1] + $2, $1[2] + 1] END;
END
$$;
CREATE FUNCTION cli_evil.avg_final(numeric[]) RETURNS numeric
	LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$ SELECT $1[1] / nullif($1[2], 0) $$;
CREATE AGGREGATE cli_evil.avg(integer) (SFUNC = cli_evil.avg_step, STYPE = numeric[],
	FINALFUNC = cli_evil.avg_final, INITCOND = '{0,0}');
-- percentile_cont(float8 ORDER BY integer) matches the tool's call better
-- than the built-in's (float8 ORDER BY float8)
CREATE FUNCTION cli_evil.collect(integer[], integer) RETURNS integer[]
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
BEGIN
	PERFORM cli_evil.ran('aggregate percentile_cont(float8 ORDER BY integer)');
	RETURN array_append($1, $2);
END
$$;
CREATE FUNCTION cli_evil.percentile_final(integer[], float8, integer) RETURNS float8
	LANGUAGE sql SET search_path = pg_catalog, pg_temp AS $$
	SELECT percentile_cont($2) WITHIN GROUP (ORDER BY x) FROM unnest($1) x
$$;
CREATE AGGREGATE cli_evil.percentile_cont(float8 ORDER BY integer) (SFUNC = cli_evil.collect,
	STYPE = integer[], FINALFUNC = cli_evil.percentile_final, FINALFUNC_EXTRA);
-- types: ::uuid, ::text, ::timestamptz, ::jsonb, ::cidr[] name these
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['text', 'uuid', 'timestamptz', 'jsonb', 'cidr', 'bool', 'int4'] LOOP
		EXECUTE format('CREATE DOMAIN cli_evil.%I AS pg_catalog.%I CHECK (cli_evil.ran(%L))',
			t, t, format('type %s', t));
	END LOOP;
END
$$;
RESET ROLE;
ALTER DATABASE cli_trust SET search_path = cli_evil, pg_catalog, public;
EOSQL

my %trust = (env => { PGDATABASE => 'cli_trust' });
sub trust_sql
{
	# the check itself resolves nothing through the planted search_path
	return $node->safe_psql('cli_trust', 'SET search_path = pg_catalog; ' . shift);
}
sub trust_ok
{
	my ($name, @args) = @_;
	my $r = hk_opt(\%trust, @args);
	is($r->[0], 0, "planted search_path, $name: exit 0") or diag("stderr: $r->[2]");
	return $r->[1];
}
my $log_offset = -s $node->logfile;
trust_ok('create-user', 'auth', 'create-user', 'trust_user', '--email', 'trust@example.com');
trust_ok('create-key', 'auth', 'create-key', '--user', 'trust_user', '--name', 'trusted',
	'--expires-in', '30d', '--rate-limit', '100', '--burst', '10', '--metadata', '{"a": 1}',
	map { ('--allow-ip', $_) } qw(10.0.0.0/8 192.168.0.0/16 172.16.0.0/12 203.0.113.0/24 2001:db8::/32));
my $trust_prefix = trust_sql(
	"SELECT key_prefix FROM hokusai_auth.api_keys WHERE name OPERATOR(pg_catalog.=) 'trusted'");
like($trust_prefix, qr/\Ahk_live_[0-9A-Za-z]{8}\z/, 'planted search_path: the key was created');
trust_ok('list-keys', 'auth', 'list-keys');
trust_ok('list-keys --user --all --json', '--json', 'auth', 'list-keys', '--user', 'trust_user', '--all');
trust_ok('show-key', 'auth', 'show-key', $trust_prefix);
trust_ok('usage', 'auth', 'usage', $trust_prefix, '--since', '1h');
trust_ok('usage --until', '--json', 'auth', 'usage', $trust_prefix, '--since', '2000-01-01',
	'--until', '1s');
trust_ok('update-key', 'auth', 'update-key', $trust_prefix, '--name', 'trusted 2', '--expires-at',
	'2999-01-01', '--rate-limit', '50', '--no-burst', '--allowed-ips', '10.0.0.0/8,2001:db8::/32');
trust_ok('update-key --no-*', 'auth', 'update-key', $trust_prefix, '--no-expiry', '--burst', '3',
	'--no-allowed-ips');
trust_ok('rate-limit-reset', 'auth', 'rate-limit-reset', $trust_prefix);
trust_ok('update-key --refill', 'auth', 'update-key', $trust_prefix, '--refill', '100/month');
trust_ok('add-credits', 'auth', 'add-credits', $trust_prefix, '--credits', '5');
trust_ok('update-key --no-refill', 'auth', 'update-key', $trust_prefix, '--no-refill');
trust_ok('set-user-limits', 'auth', 'set-user-limits', 'trust_user', '--rate-limit', '100000');
trust_ok('set-user-limits none', 'auth', 'set-user-limits', 'trust_user');
trust_ok('list-users', 'auth', 'list-users');
trust_ok('list-users --json', 'auth', 'list-users', '--json');
trust_ok('audit', 'auth', 'audit');
trust_ok('audit --key --limit --json', 'auth', 'audit', '--key', $trust_prefix, '--limit', '3', '--json');
trust_ok('audit --verify', 'auth', 'audit', '--verify');
trust_ok('rotate-key', 'auth', 'rotate-key', $trust_prefix, '--grace', '1h');
trust_ok('revoke-key', 'auth', 'revoke-key', $trust_prefix, '--yes', '--reason', 'trust test');
trust_ok('create-key by user id', 'auth', 'create-key', '--user',
	trust_sql("SELECT id FROM hokusai_auth.users WHERE username OPERATOR(pg_catalog.=) 'trust_user'"),
	'--name', 'by id', '--env', 'test', '--expires-at', '2999-01-01T00:00:00Z');
trust_ok('deactivate-user', 'auth', 'deactivate-user', 'trust_user');
is(trust_sql("SELECT rolsuper FROM pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'regress_cli_evil'"),
	'f', 'planted search_path: the planting role did not become a superuser');
my $log = slurp_file($node->logfile, $log_offset);
my @ran = $log =~ /(planted [^\n]* ran as [^\n]*)/g;
is(scalar(@ran), 0, 'planted search_path: no planted object ran')
  or diag(join("\n", @ran));

$node->stop;
done_testing();
