# Metering under load and across restarts (docs/metering.md):
#   - parallel clients on one key never spend more than its balance and are
#     never refused while credits remain; a user's limit holds across its
#     keys, and what it refuses spends no credit;
#   - add_credits() left open in a transaction blocks no validation;
#   - the worker writes balances back, and an idle transaction holding one
#     key's row delays that key only;
#   - the worker writes credits.low and credits.exhausted, once per
#     crossing, spends and add_credits() alike;
#   - a clean restart loses nothing, even with clients running;
#   - after a crash (a backend killed with SIGKILL; an immediate stop) at
#     most one flush_interval of spending is lost: measured and printed.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);
use HokusaiTest;

# restart_after_crash (off in TAP tests): a backend killed with SIGKILL
# makes the postmaster restart everything, as in production.
my $node = HokusaiTest::new_node('metering', extra_conf => "restart_after_crash = on\n");
my $clients = 4;
sub sql { return $node->safe_psql('postgres', shift); }

sql('CREATE UNLOGGED TABLE m_log (client int, key_no int, cost int, status text, credits bigint)');

# Each client validates every key in @keys, round robin, $rounds times,
# with the cost $cost (0: random 1 to 5), and logs each answer.
sub hammer
{
	my ($rounds, $cost, @keys) = @_;
	my $list = join(',', map { "'$_'" } @keys);
	my $c_expr = $cost ? $cost : '1 + floor(random() * 5)::int';
	my @runs;
	for my $c (1 .. $clients)
	{
		my $sql = qq{
DO \$\$
DECLARE ks text[] := ARRAY[$list]; v hokusai_auth.validation; c int;
BEGIN
	FOR r IN 1..$rounds LOOP
		FOR i IN 1..array_length(ks, 1) LOOP
			c := $c_expr;
			v := hokusai_auth.validate_key(ks[i], cost => c);
			INSERT INTO m_log VALUES ($c, i, c, v.status, v.credits_remaining);
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

sub balance
{
	my ($id) = @_;
	return sql("SELECT credits_remaining FROM hokusai_auth.rate_limit_status('$id')");
}

###########################################################################
# Exact under concurrency
###########################################################################

# One key, 300 credits, 4 clients x 200 calls of cost 1.
my (undef, $kid, $key) = HokusaiTest::new_key($node, 'one_key',
	args => 'rate_limit_per_hour => 100000, burst_limit => 0, credits => 300');
hammer(200, 1, $key);
is(sql("SELECT count(*) FROM m_log WHERE status = 'ok'"), '300',
	'4 clients, 800 calls, 300 credits: exactly 300 admitted');
is(sql("SELECT count(*) FROM m_log WHERE status = 'credits_exhausted'"), '500',
	'... the 500 others refused as credits_exhausted');
is(sql("SELECT count(*) FROM m_log WHERE status = 'credits_exhausted' AND credits >= cost"), '0',
	'... each refusal saw fewer credits than its cost (none while credits remained)');
is(balance($kid), '0', '... and the balance is 0');

# Costs 1 to 5 at random, 1000 credits.
sql('TRUNCATE m_log');
(undef, $kid, $key) = HokusaiTest::new_key($node, 'costly',
	args => 'rate_limit_per_hour => 100000, burst_limit => 0, credits => 1000');
hammer(150, 0, $key);
my ($spent, $refused_with_room, $ok) = split /\|/, sql(
	"SELECT sum(cost) FILTER (WHERE status = 'ok'), "
	  . "count(*) FILTER (WHERE status = 'credits_exhausted' AND credits >= cost), "
	  . "count(*) FILTER (WHERE status = 'ok') FROM m_log");
cmp_ok($spent, '<=', 1000, "random costs: $ok calls admitted, $spent credits spent, not more than 1000");
cmp_ok($spent, '>=', 996, '... and at most 4 left unspent (no call of cost 5 could pass then)');
is($refused_with_room, '0', '... no refusal while the balance covered the cost');
is(balance($kid), 1000 - $spent, '... the balance is 1000 minus exactly what was admitted');

# A user's limit across its keys: 4 keys, one per client, of one user with
# 250 an hour; each key 1000 credits.  Exactly 250 admitted, and the calls
# the user's limit refused spent no credit and no unit of the keys' limits.
sql('TRUNCATE m_log');
my $uid = sql("SELECT hokusai_auth.create_user('shared')");
sql("SELECT hokusai_auth.set_user_limits('$uid', 250, NULL)");
my @ukeys = split /\n/, sql(
	"SELECT id || ' ' || key FROM generate_series(1, 4) i, "
	  . "LATERAL hokusai_auth.create_key('$uid', 'k' || i, rate_limit_per_hour => 1000, "
	  . "burst_limit => 0, credits => 1000) ORDER BY i");
hammer(100, 1, map { (split / /)[1] } @ukeys);
is(sql("SELECT count(*) FROM m_log WHERE status = 'ok'"), '250',
	'4 keys of one user limited to 250 an hour, 1600 calls: exactly 250 admitted');
is(sql("SELECT count(*) FROM m_log WHERE status NOT IN ('ok', 'rate_limited')"), '0',
	'... the others rate_limited');
my ($credits_left, $units) = (0, 0);
for my $k (@ukeys)
{
	my ($id) = split / /, $k;
	my ($c, $u) = split /\|/, sql(
		"SELECT credits_remaining, requests_last_hour FROM hokusai_auth.rate_limit_status('$id')");
	$credits_left += $c;
	$units += $u;
}
is($credits_left, 4000 - 250, '... the keys spent 250 credits between them: refused calls none');
is($units, 250, "... and their own hourly windows hold 250: refused calls counted nowhere");

###########################################################################
# add_credits() in an open transaction blocks no validation
###########################################################################

# A session left open: IPC::Run with a pipe, statements sent one at a time.
sub session
{
	my %s = (in => '', out => '', err => '');
	$s{h} = IPC::Run::start([ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
			'-d', $node->connstr('postgres') ],
		'<', \$s{in}, '>', \$s{out}, '2>', \$s{err});
	return \%s;
}

sub send_wait
{
	my ($s, $stmt, $re) = @_;
	$s->{in} .= "$stmt\n";
	my $deadline = time() + 30;
	while ($s->{out} !~ $re && time() < $deadline)
	{
		$s->{h}->pump_nb;
		usleep(10_000);
	}
	return $s->{out} =~ $re;
}

(undef, $kid, $key) = HokusaiTest::new_key($node, 'topped_up',
	args => 'burst_limit => 0, credits => 10');
my $a = session();
ok(send_wait($a, "BEGIN; SELECT 'added:' || hokusai_auth.add_credits('$kid', 100);", qr/added:110/),
	'add_credits() in an open transaction');
my $t0 = time();
is(sql("SET statement_timeout = '5s'; SELECT status || ' ' || credits_remaining "
	  . "FROM hokusai_auth.validate_key('$key', cost => 4)"), 'ok 6',
	'... validations of the key go on, on the committed balance');
cmp_ok(time() - $t0, '<', 2, '... without waiting');
ok(send_wait($a, "COMMIT; SELECT 'committed';", qr/committed/), '... then it commits');
is(balance($kid), '106', '... and the balance has the 100 credits');

###########################################################################
# Write-back by the worker; an idle transaction holding a key row
###########################################################################

my (undef, $k1, $key1) = HokusaiTest::new_key($node, 'held',
	args => 'burst_limit => 0, credits => 1000');
my (undef, $k2, $key2) = HokusaiTest::new_key($node, 'free',
	args => 'burst_limit => 0, credits => 1000');
my $h = session();
ok(send_wait($h, "BEGIN; SELECT 'locked:' || name FROM hokusai_auth.api_keys "
	  . "WHERE id = '$k1' FOR UPDATE;", qr/locked:/),
	'an idle transaction holds the row of one key');
sql("SELECT hokusai_auth.validate_key('$key1', cost => 10)");
sql("SELECT hokusai_auth.validate_key('$key2', cost => 20)");
ok($node->poll_query_until('postgres',
		"SELECT credits_remaining = 980 FROM hokusai_auth.api_keys WHERE id = '$k2'"),
	'the worker writes back the other key\'s balance');
is(sql("SELECT credits_remaining FROM hokusai_auth.api_keys WHERE id = '$k1'"), '1000',
	'... and skips the held one without waiting for it');
ok(send_wait($h, "ROLLBACK; SELECT 'released';", qr/released/), 'the idle transaction ends');
ok($node->poll_query_until('postgres',
		"SELECT credits_remaining = 990 FROM hokusai_auth.api_keys WHERE id = '$k1'"),
	'... and the held key is written back at the next cycle');
$_->{h}->finish for ($a, $h);

###########################################################################
# credits.low and credits.exhausted: noted on the request path, written to
# hokusai_auth.events by the worker, once per crossing
###########################################################################

my ($eu, $ek, $ekey) = HokusaiTest::new_key($node, 'events',
	args => 'burst_limit => 0, credits => 10');
sql("SELECT hokusai_auth.validate_key('$ekey', cost => 8)");    # 10 to 2: above 1
sql("SELECT hokusai_auth.validate_key('$ekey', cost => 1)");    # to 1: low
sql("SELECT hokusai_auth.validate_key('$ekey', cost => 1)");    # to 0: exhausted
sql("SELECT hokusai_auth.validate_key('$ekey', cost => 1)");    # refused
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 2 FROM hokusai_auth.events WHERE api_key_id = '$ek'"
		  . " AND kind IN ('credits.low', 'credits.exhausted')"),
	'the worker writes credits.low and credits.exhausted');
is(sql("SELECT string_agg(kind || ' ' || (data->>'credits_remaining') || ' '"
		  . " || (user_id = '$eu') || ' ' || (data->>'key_prefix' = (SELECT key_prefix"
		  . " FROM hokusai_auth.api_keys WHERE id = '$ek')), ', ' ORDER BY id)"
		  . " FROM hokusai_auth.events WHERE api_key_id = '$ek'"
		  . " AND kind LIKE 'credits.%' AND kind <> 'credits.added'"),
	'credits.low 1 true true, credits.exhausted 0 true true',
	'... once each, with the key, its owner, its prefix and the credits left');
# A negative add_credits() crossing both, on a balance with a refill: 10%
# of the refill amount.
my (undef, $ak) = HokusaiTest::new_key($node, 'events_add',
	args => "burst_limit => 0, credits => 100, refill_amount => 100, refill_interval => 'month'");
sql("SELECT hokusai_auth.add_credits('$ak', -95)");
sql("SELECT hokusai_auth.add_credits('$ak', -5)");
ok($node->poll_query_until('postgres',
		"SELECT string_agg(kind || ' ' || (data->>'credits_remaining'), ', ' ORDER BY id)"
		  . " = 'credits.low 5, credits.exhausted 0' FROM hokusai_auth.events"
		  . " WHERE api_key_id = '$ak' AND kind IN ('credits.low', 'credits.exhausted')"),
	'a negative add_credits() is written as credits.low, then credits.exhausted');

###########################################################################
# Durability: clean restarts, crashes
###########################################################################

sql('CREATE TABLE spend_log (at timestamptz, remaining bigint)');
my $bench_dir = PostgreSQL::Test::Utils::tempdir('metering_bench');

# pgbench clients spending one credit per transaction, each logging what it
# was admitted with in the same (durable) transaction.
sub spenders
{
	my ($key, $seconds) = @_;
	open(my $f, '>', "$bench_dir/spend.sql") or die $!;
	print $f "INSERT INTO spend_log SELECT clock_timestamp(), credits_remaining "
	  . "FROM hokusai_auth.validate_key('$key') WHERE valid;\n";
	close $f;
	return IPC::Run::start(
		[ 'pgbench', '-n', '-c', '2', '-j', '2', '-T', $seconds, '-f', "$bench_dir/spend.sql",
		  '-h', $node->host, '-p', $node->port, 'postgres' ],
		'>', \my $out, '2>', \my $err);
}

# The balance the server starts with (read from the table) against the
# committed log: positive = credits spent and lost, negative = charged for
# transactions that did not commit.
sub check_balance
{
	my ($kid, $initial, $what) = @_;
	my ($logged, $secs) = split /\|/, sql(
		"SELECT count(*), extract(epoch FROM max(at) - min(at)) FROM spend_log");
	my $table = sql("SELECT credits_remaining FROM hokusai_auth.api_keys WHERE id = '$kid'");
	my $live = balance($kid);
	is($live, $table, "$what: the live balance after the restart is the table's");
	my $loss = $table - ($initial - $logged);
	my $rate = $secs > 0 ? $logged / $secs : 0;
	return ($loss, $rate, $logged);
}

my $initial = 100_000_000;
my $flush_ms = sql("SELECT setting FROM pg_settings WHERE name = 'hokusai_auth.flush_interval'");

# Clean restart with no client: nothing lost.
(undef, $kid, $key) = HokusaiTest::new_key($node, 'durable',
	args => "rate_limit_per_hour => 2147483647, burst_limit => 0, credits => $initial");
my $bench = spenders($key, 3);
$bench->finish;
$node->restart;
my ($loss, $rate, $logged) = check_balance($kid, $initial, 'clean restart');
cmp_ok($logged, '>', 100, "clean restart: $logged credits spent before it");
is($loss, 0, '... none lost: the worker wrote the balance back at shutdown');

# Clean (fast) restart while clients spend: transactions cut short give
# their credits back, committed ones keep them, the last write-back waits
# for the sessions.
sql('TRUNCATE spend_log');
(undef, $kid, $key) = HokusaiTest::new_key($node, 'busy_restart',
	args => "rate_limit_per_hour => 2147483647, burst_limit => 0, credits => $initial");
$bench = spenders($key, 30);
sleep 3;
$node->restart;
$bench->finish;
($loss, $rate, $logged) = check_balance($kid, $initial, 'restart under load');
cmp_ok($logged, '>', 100, "restart under load: $logged credits spent (about $rate a second)");
is($loss, 0, '... the balance after the restart is exactly the initial one minus the committed spends');

# Crashes: a backend killed with SIGKILL (the postmaster restarts every
# process and reinitializes shared memory), and an immediate stop.
for my $how ('SIGKILL of a backend', 'immediate stop')
{
	sql('TRUNCATE spend_log');
	(undef, $kid, $key) = HokusaiTest::new_key($node, $how =~ /SIGKILL/ ? 'crash_kill' : 'crash_stop',
		args => "rate_limit_per_hour => 2147483647, burst_limit => 0, credits => $initial");
	$bench = spenders($key, 60);
	sleep 4;
	if ($how =~ /SIGKILL/)
	{
		ok($node->poll_query_until('postgres',
				"SELECT count(*) > 0 FROM pg_stat_activity WHERE query LIKE 'INSERT INTO spend_log%'"),
			"$how: the clients are connected");
		my $pid = sql("SELECT pid FROM pg_stat_activity WHERE query LIKE 'INSERT INTO spend_log%' "
			  . "AND pid <> pg_backend_pid() LIMIT 1");
		kill 'KILL', $pid;
		ok($node->poll_query_until('postgres', 'SELECT true'), "$how: the server is back");
	}
	else
	{
		$node->stop('immediate');
		$node->start;
	}
	$bench->kill_kill;
	$bench->finish;
	($loss, $rate, $logged) = check_balance($kid, $initial, $how);
	my $lost_ms = $rate > 0 ? 1000 * $loss / $rate : 0;
	diag(sprintf("crash loss (%s): %d credits spent before the crash were not written back, "
		  . "%.0f ms of spending at %.0f credits/s (flush_interval %d ms); %d spent in all",
		$how, $loss, $lost_ms, $rate, $flush_ms, $logged));
	cmp_ok($logged, '>', 100, "$how: $logged credits spent before the crash");
	cmp_ok($loss, '>=', -2, "$how: charged for at most the 2 transactions the crash cut short");
	cmp_ok($lost_ms, '<=', $flush_ms * 1.5,
		"$how: at most one flush_interval of spending lost (" . sprintf('%.0f', $lost_ms) . " ms)");
}

$node->stop;
done_testing();
