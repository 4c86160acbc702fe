# The last_used_at touch table is sized from hokusai_auth.cache_size (the
# next power of two at least 2 x cache_size): with more keys used between
# two flushes than the former fixed 4096 slots, every touch still lands in
# the table, none goes through the usage queue as an event, none is
# dropped, and the worker writes every key's last_used_at.
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
my $node = HokusaiTest::new_node('touch',
	extra_conf => "hokusai_auth.flush_interval = 200ms\n"
	  . "hokusai_auth.database = 'postgres'\n"
	  . "hokusai_auth.usage_queue_size = 1024\n"
	  . "hokusai_auth.cache_size = 16384\n");

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

ok(kill('CONT', $pid), 'the worker goes on');
q1("ALTER SYSTEM SET hokusai_auth.flush_interval = '200ms'; SELECT pg_reload_conf()");
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM hokusai_auth.api_keys WHERE last_used_at IS NULL'),
	"the worker writes last_used_at of all $NKEYS keys")
  or diag(q1('SELECT count(*) FROM hokusai_auth.api_keys WHERE last_used_at IS NULL')
	  . ' keys without last_used_at');
is(q1('SELECT keys_touched FROM hokusai_auth.usage_queue_stats'),
	$NKEYS, 'one last_used_at update per key');

$node->stop;
done_testing();
