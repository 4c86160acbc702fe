# The background worker holds no lock to commit that an idle transaction
# can turn into an outage: while one key's row is locked by a transaction
# left idle (an open SELECT ... FOR UPDATE, an uncommitted update_key()),
# the worker goes on for every other key, cycle after cycle: usage flush,
# credit write-back, last_used_at touches, expiry (with its audit rows and
# the audit seal).  What concerns the locked key waits for the next cycle
# after the lock is gone, and is then done.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time sleep);
use HokusaiTest;

# lock_timeout is the worker's own (10 s, worker/trust.c): a step that waits
# for the row fails after it, every cycle, for as long as the lock is held.
# The last_used_at step waits 20 ms for a row, once, then locks the rows
# first without waiting (worker/housekeeping.c): its DEBUG1 message says
# when it met a held row, which must be once, not at every cycle.
my $node = HokusaiTest::new_node('worker_row_lock',
	extra_conf => "hokusai_auth.flush_interval = 200ms\n"
	  . "hokusai_auth.database = 'postgres'\n"
	  . "log_min_messages = debug1\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

# Keys whose rows idle transactions will hold: one used (a touch is due),
# one expiring (expiry is due) and metered (a write-back is due).
my (undef, $held_id, $held_key) = HokusaiTest::new_key($node, 'held', args => 'credits => 100');
my (undef, $held2_id, $held2_key) = HokusaiTest::new_key($node, 'held2',
	args => "credits => 100, expires_at => now() + interval '3 seconds'");
# Keys the worker must keep serving meanwhile.
my (undef, $free_id, $free_key) = HokusaiTest::new_key($node, 'free', args => 'credits => 100');
my (undef, $exp_id) = HokusaiTest::new_key($node, 'expiring',
	args => "expires_at => now() + interval '3 seconds'");

# Both held keys are used before the locks: their touches and write-backs
# are due when the locks are taken.  The worker is stopped (SIGSTOP) from
# before these uses until the locks are taken, so that it has applied none.
my $wpid = q1("SELECT pid FROM pg_stat_activity WHERE backend_type = 'hokusai_auth usage worker'");
ok($wpid =~ /^\d+$/ && kill('STOP', $wpid), 'the worker is stopped');
is(q1("SELECT string_agg(v.status || ':' || v.credits_remaining, ',' ORDER BY k.n)
		 FROM (VALUES (1, '$held_key'), (2, '$held2_key')) k(n, key),
			  LATERAL hokusai_auth.validate_key(k.key, endpoint => '/held', cost => 5) v"),
	'ok:95,ok:95', 'the held keys spend before their rows are locked');

my @idle;
sub idle_session
{
	my ($sql) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
		'<', \$in, '>', \$out, '2>', \$err);
	$in .= "BEGIN;\n$sql;\nSELECT 'idle now';\n";
	my $t = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
	$t->start;
	$h->pump until $out =~ /idle now/ || $err ne '' || $t->is_expired;
	die "idle session did not start: $err" unless $out =~ /idle now/;
	push @idle, { h => $h, in => \$in };
	return $idle[-1];
}
idle_session("SELECT id FROM hokusai_auth.api_keys WHERE id = '$held_id' FOR UPDATE");
idle_session("SELECT name FROM hokusai_auth.update_key('$held2_id', name => 'left open')");
is(q1("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"),
	'2', 'two transactions idle, each holding a key row');
ok(kill('CONT', $wpid), 'the worker goes on');

# While they idle, the held keys are used again (touches and spends due
# for locked rows) and so is the free key (usage, a spend, a touch).
q1("SELECT count(*) FROM hokusai_auth.validate_key('$held_key', endpoint => '/held', cost => 5)");
q1("SELECT count(*) FROM hokusai_auth.validate_key('$held2_key', endpoint => '/held', cost => 5)");
is(q1("SELECT string_agg(v.status || ':' || v.credits_remaining, ',' ORDER BY i)
		 FROM generate_series(1, 3) i,
			  LATERAL hokusai_auth.validate_key(left('$free_key' || i, 54), endpoint => '/free', cost => 7) v"),
	'ok:93,ok:86,ok:79', 'the free key spends');

# Within a few cycles, and well within one lock_timeout: the worker waits
# for no row, so a step that did could not pass before 10 s, and would
# fail again on every cycle after.
sub within
{
	my ($secs, $sql) = @_;
	my $end = time + $secs;
	while (time < $end)
	{
		return 1 if q1($sql) eq 't';
		sleep 0.1;
	}
	return 0;
}
my $t0 = time;
ok(within(30, "SELECT count(*) = 3 FROM hokusai_auth.api_key_usage WHERE api_key_id = '$free_id'"),
	'usage events of the free key are flushed');
ok(within(30, "SELECT credits_remaining = 79 FROM hokusai_auth.api_keys WHERE id = '$free_id'"),
	'the free key\'s balance is written back');
ok(within(30, "SELECT last_used_at IS NOT NULL FROM hokusai_auth.api_keys WHERE id = '$free_id'"),
	'the free key\'s last_used_at is set');
ok(within(30, "SELECT NOT is_active FROM hokusai_auth.api_keys WHERE id = '$exp_id'"),
	'the expiring key is expired by the worker');
ok(within(30, "SELECT count(*) = 1 FROM hokusai_auth.audit_log"
	  . " WHERE action = 'expire' AND api_key_id = '$exp_id' AND seq IS NOT NULL"),
	'its audit row is written and sealed');
my $took = time - $t0;
cmp_ok($took, '<', 8, 'all of it in less than one lock_timeout (10 s)')
  or diag(sprintf('took %.1f s', $took));
is(q1("SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'hokusai_auth usage worker'"
	  . " AND wait_event_type = 'Lock'"),
	'0', 'the worker is not waiting for a lock');
ok(!(slurp_file($node->logfile) =~ /canceling statement due to lock timeout/),
	'no worker statement ran into lock_timeout');
is(q1("SELECT is_active FROM hokusai_auth.api_keys WHERE id = '$held2_id'"),
	't', 'the held expired key is not yet expired: its row is locked');
is(q1("SELECT count(*) FROM hokusai_auth.api_key_usage WHERE api_key_id IN ('$held_id', '$held2_id')"),
	'4', 'usage of the held keys is flushed too (usage rows do not lock key rows)');
is(q1("SELECT last_used_at IS NULL FROM hokusai_auth.api_keys WHERE id = '$held_id'"),
	't', 'the held key\'s last_used_at waits for its lock');
my $met = () = slurp_file($node->logfile) =~ /a touched key's row is held by another transaction/g;
ok($met >= 1 && $met <= 2, 'the last_used_at step waited briefly for a held row once (or once per row), not at every cycle')
  or diag("met a held row $met times");

# The locks go: what waited for them is done at the next cycles.
for my $s (@idle)
{
	${ $s->{in} } .= "COMMIT;\n\\q\n";
	$s->{h}->finish;
}
ok(within(30, "SELECT credits_remaining = 90 FROM hokusai_auth.api_keys WHERE id = '$held_id'"),
	'the first held key\'s balance is written back after its lock went');
ok(within(30, "SELECT last_used_at IS NOT NULL FROM hokusai_auth.api_keys WHERE id = '$held_id'"),
	'its last_used_at touch was kept and is applied');
ok(within(30, "SELECT NOT is_active FROM hokusai_auth.api_keys WHERE id = '$held2_id'"),
	'the second held key is expired at a later cycle');
is(q1("SELECT count(*) FROM hokusai_auth.audit_log WHERE action = 'expire' AND api_key_id = '$held2_id'"),
	'1', 'with one audit row');
ok(within(30, "SELECT last_used_at IS NOT NULL AND credits_remaining = 90
				 FROM hokusai_auth.api_keys WHERE id = '$held2_id'"),
	'and its touch and balance are written');

done_testing();
