# The last_used_at touch table is sized from hokusai_auth.cache_size (the
# next power of two at least 2 x cache_size): with more keys used between
# two flushes than the former fixed 4096 slots, every touch still lands in
# the table, none goes through the usage queue as an event, none is
# dropped, and the worker writes every key's last_used_at.
#
# Then a busy key: every validation with an endpoint queues an event that
# marks its key, but the worker writes last_used_at only when that moves it
# on by a minute or more (docs/usage.md), so the key's row is not written
# again at every flush; once its last_used_at is more than a minute old, the
# next use writes it.
#
# The worker's flush_interval is raised to an hour while the keys are used,
# then lowered again by a reload: the shorter interval applies at once, not
# once the hour has run out (the busy key's events are written).
#
# The worker writes each row once when no other transaction holds it: no row
# lock before the update (pg_walinspect counts the records); and it does not
# JIT-compile its statements (pg_stat_statements counts the functions).
#
# The worker is stopped (SIGSTOP) while the keys are used, so nothing is
# taken from the table or the queue meanwhile; a 1024-event queue makes a
# touch that overflowed into it visible (queued) and one that did not fit
# there either counted (touches_dropped).
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use HokusaiTest;

my $NKEYS = 6000;
# JIT for every statement of the worker (jit_above_cost = 0 below), not for
# the test's own sessions (their cache misses would each compile).
$ENV{PGOPTIONS} = '-c jit=off';
my $node = HokusaiTest::new_node('touch',
	extra_conf => "hokusai_auth.flush_interval = 200ms\n"
	  . "hokusai_auth.database = 'postgres'\n"
	  . "hokusai_auth.usage_queue_size = 1024\n"
	  . "hokusai_auth.cache_size = 16384\n"
	  . "shared_preload_libraries = 'hokusai_auth, pg_stat_statements'\n"
	  . "pg_stat_statements.track = all\n"
	  . "jit_above_cost = 0\n");

sub q1 { return $node->safe_psql('postgres', $_[0]); }

my $uid = q1("SELECT hokusai_auth.create_user('tina')");
q1("CREATE TABLE touch_keys AS
	SELECT k.id, k.key FROM generate_series(1, $NKEYS) i,
		LATERAL hokusai_auth.create_key('$uid', 'touch ' || i) k");
is(q1('SELECT count(*) FROM hokusai_auth.api_keys WHERE last_used_at IS NULL'),
	$NKEYS, "$NKEYS keys, none used yet");

my $pid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'hokusai_auth usage worker'");
ok($pid =~ /^\d+$/, 'the worker runs');

# Hold the worker off: a long interval (it goes back to sleep), then stopped.
q1("ALTER SYSTEM SET hokusai_auth.flush_interval = '1h'; SELECT pg_reload_conf()");
usleep(1_000_000);
ok(kill('STOP', $pid), 'the worker is stopped');
q1('SELECT hokusai_auth.usage_queue_stats_reset()');

is(q1("SELECT count(*) FILTER (WHERE (hokusai_auth.validate_key(key)).valid) FROM touch_keys"),
	$NKEYS, "every one of the $NKEYS keys is valid");
is(q1('SELECT queued || \' \' || enqueued || \' \' || touches_dropped || \' \' || dropped
		FROM hokusai_auth.usage_queue_stats'),
	'0 0 0 0', "the $NKEYS touches fit in the touch table: no event queued, none dropped");

q1('CREATE EXTENSION pg_walinspect; CREATE EXTENSION pg_stat_statements');
my $lsn0 = q1('SELECT pg_current_wal_insert_lsn()');
ok(kill('CONT', $pid), 'the worker goes on');
q1("ALTER SYSTEM SET hokusai_auth.flush_interval = '200ms'; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM hokusai_auth.api_keys WHERE last_used_at IS NULL'),
	"the worker writes last_used_at of all $NKEYS keys")
  or diag(q1('SELECT count(*) FROM hokusai_auth.api_keys WHERE last_used_at IS NULL')
	  . ' keys without last_used_at');
is(q1('SELECT keys_touched FROM hokusai_auth.usage_queue_stats'),
	$NKEYS, 'one last_used_at update per key');

# With no row held by anyone, the worker writes each key's row once: one
# update record in the WAL per key, and no row lock taken before it
# (SELECT ... FOR NO KEY UPDATE: a lock record per row).  The only lock
# records are those of updates that move a row to another page, which mark
# the old version locked meanwhile; the table's fillfactor leaves room for
# many of them in place (HOT), which is diag()ed (docs/usage.md).
my $lsn1 = q1('SELECT pg_current_wal_flush_lsn()');
my $walrecs = "FROM pg_get_wal_records_info('$lsn0', '$lsn1') w
	WHERE w.resource_manager = 'Heap'
	  AND w.block_ref ~ ('/' || pg_relation_filenode('hokusai_auth.api_keys') || ' ')";
is(q1("SELECT count(*) FILTER (WHERE w.record_type LIKE '%UPDATE%') || ' updates, '
			|| count(*) FILTER (WHERE w.record_type LIKE 'LOCK%')
			   - count(*) FILTER (WHERE w.record_type LIKE 'UPDATE%') || ' row locks'
		 $walrecs"),
	"$NKEYS updates, 0 row locks",
	"the worker's WAL for api_keys: one update per key, no row lock taken first");
# JIT compiles every statement here (jit_above_cost = 0), but the worker
# pins jit = off (worker/trust.c): its statements would be compiled again
# at every cycle.
q1("SET jit = on; SELECT count(*) AS jit_probe FROM generate_series(1, 10)");
is(q1("SELECT sum(jit_functions) > 0 FROM pg_stat_statements
		WHERE query LIKE '%jit_probe%'"),
	't', 'a statement with jit on is JIT-compiled');
is(q1("SELECT count(*) > 0 AND sum(jit_functions) = 0 FROM pg_stat_statements
		WHERE query ~ '_usage_touch|last_used_at = t\\.at'"),
	't', 'the worker\'s last_used_at statements are not');
diag("api_keys heap records of the worker's touches: "
	  . q1("SELECT string_agg(n || ' ' || t, ', ' ORDER BY t)
			  FROM (SELECT w.record_type AS t, count(*) AS n $walrecs GROUP BY 1) x"));

# A busy key: five uses with an endpoint, a flush apart.
my ($busy_id, $busy_key) = split /\|/, q1('SELECT id, key FROM touch_keys ORDER BY id LIMIT 1');
my $row = "SELECT xmin || ' ' || last_used_at FROM hokusai_auth.api_keys WHERE id = '$busy_id'";
my $before = q1($row);
my $aggregated = q1('SELECT aggregated FROM hokusai_auth.usage_queue_stats');
for my $i (1 .. 5)
{
	is(q1("SELECT status FROM hokusai_auth.validate_key('$busy_key', endpoint => '/busy')"),
		'ok', "busy key, use $i");
	usleep(300_000);
}
ok($node->poll_query_until('postgres',
		'SELECT aggregated = ' . ($aggregated + 5) . ' FROM hokusai_auth.usage_queue_stats'),
	'the five events are written: the lowered flush_interval applies at once');
is(q1($row), $before,
	'the busy key\'s row is not written again within the minute (same xmin, same last_used_at)');

# Its last_used_at more than a minute old: the next use writes it.
q1("UPDATE hokusai_auth.api_keys SET last_used_at = last_used_at - interval '2 minutes'
	WHERE id = '$busy_id'");
my $old = q1("SELECT last_used_at FROM hokusai_auth.api_keys WHERE id = '$busy_id'");
is(q1("SELECT status FROM hokusai_auth.validate_key('$busy_key', endpoint => '/busy')"),
	'ok', 'busy key, a use after a minute');
ok($node->poll_query_until('postgres',
		"SELECT last_used_at > '$old'::timestamptz + interval '1 minute'
		   FROM hokusai_auth.api_keys WHERE id = '$busy_id'"),
	'a use more than a minute after last_used_at writes it');

$node->stop;
done_testing();
