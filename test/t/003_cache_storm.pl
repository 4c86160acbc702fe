# The key cache under parallel clients: once revoke_key() (or a rotation
# without grace) has committed, no session validates the key again, not
# once, while other sessions hammer it; and without
# shared_preload_libraries validation refuses to run.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $node = HokusaiTest::new_node('storm');
my $clients = 4;

# A log the storm clients write: when each validation started, and its result.
$node->safe_psql('postgres',
	'CREATE UNLOGGED TABLE storm_log (client int, started timestamptz, status text)');

# Start $clients sessions validating $key in a loop for $seconds.
sub storm
{
	my ($key, $seconds) = @_;
	my @runs;
	for my $c (1 .. $clients)
	{
		my $sql = qq{
DO \$\$
DECLARE t0 timestamptz; s text; stop timestamptz := clock_timestamp() + interval '$seconds seconds';
BEGIN
	WHILE clock_timestamp() < stop LOOP
		t0 := clock_timestamp();
		SELECT status INTO s FROM hokusai_auth.validate_key('$key');
		INSERT INTO storm_log VALUES ($c, t0, s);
	END LOOP;
END \$\$;};
		my ($out, $err) = ('', '');
		push @runs,
		  IPC::Run::start(
			[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
			'>', \$out, '2>', \$err);
	}
	return @runs;
}

sub finish
{
	for my $r (@_)
	{
		ok($r->finish, 'storm client finished cleanly');
	}
}

for my $how ('revoke', 'rotate')
{
	my (undef, $kid, $key) = HokusaiTest::new_key($node, "storm_$how",
		args => 'rate_limit_per_hour => 1000000000');
	$node->safe_psql('postgres', 'TRUNCATE storm_log');
	is(HokusaiTest::status($node, $key), 'ok', "$how: key validates (and is now cached)");

	my @runs = storm($key, 3);
	sleep 1;
	my $stmt = $how eq 'revoke'
	  ? "SELECT hokusai_auth.revoke_key('$kid')"
	  : "SELECT id FROM hokusai_auth.rotate_key('$kid')";
	# The commit has returned when this psql call returns; take the time after.
	$node->safe_psql('postgres', $stmt);
	my $committed = $node->safe_psql('postgres', 'SELECT clock_timestamp()');
	finish(@runs);

	my $before = $node->safe_psql('postgres',
		"SELECT count(*) FROM storm_log WHERE status = 'ok' AND started < '$committed'");
	my $after_ok = $node->safe_psql('postgres',
		"SELECT count(*) FROM storm_log WHERE status = 'ok' AND started >= '$committed'");
	my $after_revoked = $node->safe_psql('postgres',
		"SELECT count(*) FROM storm_log WHERE status = 'revoked' AND started >= '$committed'");
	cmp_ok($before, '>', 100, "$how: the storm validated the key many times before ($before)");
	is($after_ok, '0', "$how: no validation succeeded after the commit");
	cmp_ok($after_revoked, '>', 100, "$how: many validations refused after the commit ($after_revoked)");
	my $hits = $node->safe_psql('postgres', 'SELECT hits FROM hokusai_auth.cache_stats');
	cmp_ok($hits, '>', 100, "$how: the storm was served from the cache");
}

# Without shared_preload_libraries: a clear error with a hint.
$node->stop;
my $bare = HokusaiTest::new_node('bare', preload => 0);
my ($ret, $stdout, $stderr) = $bare->psql('postgres',
	"SELECT * FROM hokusai_auth.validate_key('hk_live_x')");
isnt($ret, 0, 'validate_key fails without shared_preload_libraries');
like($stderr, qr/hokusai_auth must be loaded via shared_preload_libraries/, 'error says why');
like($stderr, qr/HINT:.*shared_preload_libraries/, 'error has a hint');
($ret, $stdout, $stderr) = $bare->psql('postgres',
	'\set VERBOSITY verbose' . "\n" . 'SELECT * FROM hokusai_auth.cache_stats');
like($stderr, qr/55000/, 'SQLSTATE is object_not_in_prerequisite_state');
# Key management itself does not need shared memory.
my (undef, undef, $k) = HokusaiTest::new_key($bare, 'bare_user');
like($k, qr/^hk_live_[0-9A-Za-z]{46}$/, 'keys can still be created without preloading');
$bare->stop;

done_testing();
