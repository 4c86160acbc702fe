# The rate limiter under parallel clients: sessions hammering one key, or
# many keys at once, never get more than the limit admitted; the limiter's
# state starts empty after a restart.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $node = HokusaiTest::new_node('ratelimit');
my $clients = 4;

$node->safe_psql('postgres',
	'CREATE UNLOGGED TABLE rl_log (client int, key_no int, status text)');

# Each client validates every key in @keys, round robin, $rounds times.
sub hammer
{
	my ($rounds, @keys) = @_;
	my $pause = $rounds < 0 ? 0.01 : 0;
	$rounds = abs($rounds);
	my $list = join(',', map { "'$_'" } @keys);
	my @runs;
	for my $c (1 .. $clients)
	{
		my $sql = qq{
DO \$\$
DECLARE ks text[] := ARRAY[$list]; s text;
BEGIN
	FOR r IN 1..$rounds LOOP
		FOR i IN 1..array_length(ks, 1) LOOP
			SELECT status INTO s FROM hokusai_auth.validate_key(ks[i]);
			INSERT INTO rl_log VALUES ($c, i, s);
			PERFORM pg_sleep($pause);
		END LOOP;
	END LOOP;
END \$\$;};
		push @runs,
		  IPC::Run::start(
			[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', $sql ],
			'>', \my $out, '2>', \my $err);
	}
	ok($_->finish, 'client finished cleanly') for @runs;
}

# One key, limit 300 an hour, 4 clients x 200 requests.
my (undef, $kid, $key) = HokusaiTest::new_key($node, 'one_key',
	args => 'rate_limit_per_hour => 300');
hammer(200, $key);
is($node->safe_psql('postgres', "SELECT count(*) FROM rl_log WHERE status = 'ok'"),
	'300', 'exactly the hourly limit was admitted across 4 clients');
is($node->safe_psql('postgres', "SELECT count(*) FROM rl_log WHERE status = 'rate_limited'"),
	'500', 'every other request was refused as rate_limited');

# Many keys at once: 40 keys with limit 25, 4 clients x 10 rounds each.
$node->safe_psql('postgres', 'TRUNCATE rl_log');
my $uid = $node->safe_psql('postgres', "SELECT hokusai_auth.create_user('many')");
my @keys = split /\n/, $node->safe_psql('postgres',
	"SELECT key FROM generate_series(1, 40) i, "
	  . "LATERAL hokusai_auth.create_key('$uid', 'k' || i, rate_limit_per_hour => 25) ORDER BY i");
is(scalar(@keys), 40, 'created 40 keys');

# Meanwhile a fifth session churns the limiter's slots: it resets 20 other
# keys (their slots go on the free list, the last freed first), then
# validates them in the same order, so that each takes the slot another
# one had while the key cache still names the old one (the hint of
# src/ratelimit/limiter.c).  Each round ends with every churned key counted
# once, on its own state: a call that trusted a stale hint would count on
# another key's.
my $cuid = $node->safe_psql('postgres', "SELECT hokusai_auth.create_user('churn')");
$node->safe_psql('postgres',
	"CREATE TABLE churn_keys AS SELECT i, id, key FROM generate_series(1, 20) i, "
	  . "LATERAL hokusai_auth.create_key('$cuid', 'c' || i, rate_limit_per_hour => 1000000) ORDER BY i");
my $churner = IPC::Run::start(
	[ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres'), '-c', q{
DO $$
DECLARE s text; k record;
BEGIN
	FOR r IN 1..40 LOOP
		PERFORM hokusai_auth.rate_limit_reset(id) FROM churn_keys;
		FOR k IN SELECT key FROM churn_keys ORDER BY i LOOP
			SELECT status INTO s FROM hokusai_auth.validate_key(k.key);
			IF s <> 'ok' THEN RAISE EXCEPTION 'churned key: %', s; END IF;
		END LOOP;
	END LOOP;
END $$;} ],
	'>', \my $churn_out, '2>', \my $churn_err);
hammer(10, @keys);
ok($churner->finish, 'the slot churner finished cleanly') or diag($churn_err);
is($node->safe_psql('postgres',
		"SELECT count(*) FROM churn_keys c, LATERAL hokusai_auth.rate_limit_status(c.id) s "
		  . "WHERE s.tracked AND s.requests_last_hour = 1"),
	'20', 'every churned key holds exactly its own last call');
is($node->safe_psql('postgres',
		"SELECT count(*) FROM (SELECT key_no FROM rl_log WHERE status = 'ok' GROUP BY key_no HAVING count(*) <> 25) x"),
	'0', 'every one of 40 keys got exactly its 25 requests');
is($node->safe_psql('postgres', "SELECT count(*) FROM rl_log WHERE status NOT IN ('ok', 'rate_limited')"),
	'0', 'no other statuses');
cmp_ok($node->safe_psql('postgres', 'SELECT entries FROM hokusai_auth.rate_limit_stats()'),
	'>=', 41, 'the limiter tracks every key used');

# A burst limit holds under parallel clients too: burst 5, 4 clients x 150
# requests 10 ms apart (a negative round count asks hammer() to pause).
$node->safe_psql('postgres', 'TRUNCATE rl_log');
my (undef, $bid, $bkey) = HokusaiTest::new_key($node, 'bursty',
	args => 'rate_limit_per_hour => 1000000, burst_limit => 5');
my $t0 = time;
hammer(-150, $bkey);
my $secs = time - $t0 + 1;
my $ok = $node->safe_psql('postgres', "SELECT count(*) FROM rl_log WHERE status = 'ok'");
cmp_ok($ok, '<=', 5 * ($secs + 1), "burst: $ok admitted in about $secs s, at most 5 per second");
cmp_ok($ok, '>=', 5 * ($secs - 2), 'burst: about 5 per second were admitted throughout');

# State starts empty after a restart.
is(HokusaiTest::status($node, $key), 'rate_limited', 'the one key is still limited');
$node->restart;
is(HokusaiTest::status($node, $key), 'ok', 'after a restart the key has a fresh window');
is($node->safe_psql('postgres', 'SELECT entries FROM hokusai_auth.rate_limit_stats()'),
	'1', 'only the key used since the restart is tracked');

$node->stop;
done_testing();
