# Events noted on a hot standby's request path (rate_limit.exceeded,
# credits.low, credits.exhausted) reach the primary's hokusai_auth.events
# exactly once (DESIGN.md sections 12 and 13, docs/scaling.md): the
# standby never writes, its worker ships the notes over libpq with their
# queue positions (hokusai_auth._receive_events()), keeps them queued while
# the primary is unreachable, and counts what a full queue drops.
#
#  1. A key rate-limited on the standby, and credits spent down to 10% and
#     to zero there: one event each on the primary, with the standby's
#     figures.  A key rate-limited on the primary and on the standby within
#     the same minute: one rate_limit.exceeded in all.
#  2. The primary stopped: notes stay queued on the standby; two keys'
#     3 notes and 4150 more keys refused there overfill the 4096-note
#     queue: 57 are dropped, counted; after the restart every queued note
#     is an event, once.
#  3. _receive_events() itself: a repeat is skipped, only the three
#     request-path kinds are taken, not on a standby, and the shipping role
#     needs EXECUTE on the two functions and nothing else.
#  4. Promotion: what the old primary had taken (the shipping state the
#     standby replayed) is not written again by the promoted worker.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $primary = HokusaiTest::new_node('primary',
	init => { allows_streaming => 1 },
	extra_conf => "hokusai_auth.flush_interval = 200\n");
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

sub sql { my ($node, $q) = @_; return $node->safe_psql('postgres', $q); }

sub catch_up
{
	$primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert'));
}

# The standby ships as a role that may run the two receiving functions only.
sql($primary, "CREATE ROLE shipper LOGIN;
	GRANT USAGE ON SCHEMA hokusai_auth TO shipper;
	GRANT EXECUTE ON FUNCTION hokusai_auth._receive_usage(uuid, bigint, bigint[], uuid[],
		text[], bigint[], integer[], integer[], uuid[], bigint[]) TO shipper;
	GRANT EXECUTE ON FUNCTION hokusai_auth._receive_events(uuid, bigint, bigint[], text[],
		uuid[], bigint[], bigint[]) TO shipper");
sql($standby, "ALTER SYSTEM SET hokusai_auth.primary_conninfo = 'port=" . $primary->port
	  . ' host=' . $primary->host . " user=shipper'");
$standby->reload;

# Events of a key on the primary: "kind value" in id order, value being
# retry_after or credits_remaining.
sub events_of
{
	my ($kid) = @_;
	return sql($primary, "SELECT coalesce(string_agg(kind || ' ' ||
			coalesce(data->>'credits_remaining', data->>'retry_after'), ', ' ORDER BY id), '')
		FROM hokusai_auth.events WHERE api_key_id = '$kid'
		 AND kind IN ('rate_limit.exceeded', 'credits.low', 'credits.exhausted')");
}

sub statuses
{
	my ($node, $key, $n, $cost) = @_;
	$cost //= 1;
	return sql($node, "SELECT string_agg(v.status, ',' ORDER BY i) FROM generate_series(1, $n) i,
		LATERAL hokusai_auth.validate_key('$key' || left(i::text, 0), cost => $cost) v");
}

# ---------------------------------------------------------------------------
# 1. Events from the standby, once.
# ---------------------------------------------------------------------------
my ($uid_r, $kid_r, $key_r) = HokusaiTest::new_key($primary, 'rita', args => 'rate_limit_per_hour => 2');
my (undef, $kid_c, $key_c) = HokusaiTest::new_key($primary, 'carl', args => 'credits => 10');
my (undef, $kid_b, $key_b) = HokusaiTest::new_key($primary, 'bea', args => 'rate_limit_per_hour => 1');
catch_up();

is(statuses($standby, $key_r, 5), 'ok,ok,rate_limited,rate_limited,rate_limited',
	'standby: a key allowed 2 an hour is refused from the third call');
is(statuses($standby, $key_c, 1, 9) . ' ' . statuses($standby, $key_c, 2),
	'ok ok,credits_exhausted', 'standby: 9 credits of 10 spent, then the last one, then refused');
ok($primary->poll_query_until('postgres',
		"SELECT count(*) = 3 FROM hokusai_auth.events WHERE api_key_id IN ('$kid_r', '$kid_c')
		   AND kind IN ('rate_limit.exceeded', 'credits.low', 'credits.exhausted')"),
	'the three events reach the primary');
is(events_of($kid_r) =~ s/ \d+$//r, 'rate_limit.exceeded',
	'one rate_limit.exceeded for the key refused three times on the standby');
is(sql($primary, "SELECT user_id = '$uid_r' AND (data->>'retry_after')::int > 0
		AND data->>'key_prefix' = (SELECT key_prefix FROM hokusai_auth.api_keys WHERE id = '$kid_r')
		FROM hokusai_auth.events WHERE api_key_id = '$kid_r' AND kind = 'rate_limit.exceeded'"), 't',
	'with its user, key_prefix and the standby\'s retry_after');
is(events_of($kid_c), 'credits.low 1, credits.exhausted 0',
	'credits.low (1 left) and credits.exhausted (0 left), as the standby spent them');
is(sql($standby, 'SELECT events_shipped FROM hokusai_auth.replica_stats'), '3',
	'replica_stats: the standby shipped 3 events');
is(sql($standby, 'SELECT queued || \' \' || written || \' \' || dropped FROM hokusai_auth.event_queue_stats()'),
	'0 0 0', 'the standby\'s event queue is empty and it wrote nothing itself');

# One limit window per key across servers: refused on the primary, then
# on the standby within the minute: one event.
is(statuses($primary, $key_b, 2), 'ok,rate_limited', 'primary: a key allowed 1 an hour is refused');
ok($primary->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM hokusai_auth.events WHERE api_key_id = '$kid_b' AND kind = 'rate_limit.exceeded'"),
	'the primary writes its rate_limit.exceeded');
is(statuses($standby, $key_b, 2), 'ok,rate_limited', 'standby: refused there too (its own count)');
ok($standby->poll_query_until('postgres', 'SELECT events_shipped = 4 FROM hokusai_auth.replica_stats'),
	'the standby ships its note');
sleep(1);
is(events_of($kid_b) =~ s/ \d+//gr, 'rate_limit.exceeded',
	'still one rate_limit.exceeded: at most one per key per minute, across servers');
sleep(1);
is(sql($primary, "SELECT count(*) FROM hokusai_auth.events WHERE api_key_id IN ('$kid_r', '$kid_c', '$kid_b')
		AND kind IN ('rate_limit.exceeded', 'credits.low', 'credits.exhausted')"), '4',
	'no event twice after more shipping cycles');

# ---------------------------------------------------------------------------
# 2. The primary stopped: queued, full queue drops counted, then once.
# ---------------------------------------------------------------------------
my $uid_many = sql($primary, "SELECT hokusai_auth.create_user('many')");
sql($primary, "CREATE TABLE many_keys AS SELECT k.id, k.key FROM generate_series(1, 4150) i,
	LATERAL hokusai_auth.create_key('$uid_many', 'k' || i, rate_limit_per_hour => 1) k");
my (undef, $kid_x, $key_x) = HokusaiTest::new_key($primary, 'xena', args => 'rate_limit_per_hour => 1');
my (undef, $kid_y, $key_y) = HokusaiTest::new_key($primary, 'yann', args => 'credits => 4');
catch_up();

$primary->stop('fast');
is(statuses($standby, $key_x, 3), 'ok,rate_limited,rate_limited', 'primary stopped: standby refuses key x');
is(statuses($standby, $key_y, 1, 4), 'ok', 'primary stopped: standby spends key y\'s 4 credits');
ok($standby->poll_query_until('postgres',
		'SELECT ship_failures > 0 AND NOT primary_reachable FROM hokusai_auth.replica_stats'),
	'the standby counts its failures to reach the primary');
is(sql($standby, 'SELECT queued || \' \' || dropped FROM hokusai_auth.event_queue_stats()'), '3 0',
	'the three notes stay queued on the standby');
is(sql($standby, "SELECT count(*) FILTER (WHERE v.status = 'rate_limited')
		FROM many_keys m, generate_series(1, 2) i,
		LATERAL hokusai_auth.validate_key(m.key || left(i::text, 0)) v"), '4150',
	'4150 more keys refused on the standby');
is(sql($standby, 'SELECT queued || \' \' || dropped FROM hokusai_auth.event_queue_stats()'), '4096 57',
	'the queue is full at 4096 notes and counts the 57 it dropped');
sleep(2);
$primary->start;
ok($standby->poll_query_until('postgres',
		'SELECT queued = 0 AND primary_reachable FROM hokusai_auth.event_queue_stats(), hokusai_auth.replica_stats'),
	'after the outage the standby\'s queue drains');
ok($primary->poll_query_until('postgres',
		"SELECT count(*) = 4093 FROM hokusai_auth.events e JOIN many_keys m ON m.id = e.api_key_id
		  WHERE e.kind = 'rate_limit.exceeded'"),
	'the queued notes of the many keys arrive');
sleep(1);
is(events_of($kid_x) =~ s/ \d+//gr, 'rate_limit.exceeded', 'key x: its rate_limit.exceeded arrived once');
is(events_of($kid_y), 'credits.low 0, credits.exhausted 0', 'key y: credits.low and credits.exhausted once each');
is(sql($primary, "SELECT count(*) || ' ' || count(DISTINCT e.api_key_id) FROM hokusai_auth.events e
		JOIN many_keys m ON m.id = e.api_key_id WHERE e.kind = 'rate_limit.exceeded'"), '4093 4093',
	'4093 of the 4150 keys have their event (4096 queued less x and y\'s 3), each once');
is(sql($standby, 'SELECT events_shipped FROM hokusai_auth.replica_stats'), 4 + 4096,
	'replica_stats: 4096 more events shipped');

# ---------------------------------------------------------------------------
# 3. _receive_events() itself.
# ---------------------------------------------------------------------------
my $now_us = sql($primary, "SELECT ((extract(epoch FROM now()) - 946684800) * 1000000)::bigint");
my (undef, $kid_d, $key_d) = HokusaiTest::new_key($primary, 'dora');
my $land = "SELECT hokusai_auth._receive_events('00000000-0000-4000-8000-0000000000e1', 2,
	'{0,1}', '{credits.low,credits.exhausted}', '{$kid_d,$kid_d}', '{1,0}', '{$now_us,$now_us}')";
is(sql($primary, $land), '2', 'a first call is taken up to position 2');
is(sql($primary, $land), '2', 'the same call again answers the same position');
is(events_of($kid_d), 'credits.low 1, credits.exhausted 0', 'its two events are written, once');
my ($ret, $out, $err) = $primary->psql('postgres',
	"SELECT hokusai_auth._receive_events('00000000-0000-4000-8000-0000000000e2', 1,
		'{0}', '{key.revoked}', '{$kid_d}', '{0}', '{$now_us}')");
like($err, qr/ships rate_limit.exceeded, credits.low and credits.exhausted only/,
	'another kind is refused');
($ret, $out, $err) = $primary->psql('postgres',
	"SELECT hokusai_auth._receive_events('00000000-0000-4000-8000-0000000000e3', 1,
		'{0}', '{credits.low}', '{$kid_d}', '{0}', NULL)");
like($err, qr/the event arrays must have the same length/, 'arrays of different lengths are refused');
catch_up();
($ret, $out, $err) = $standby->psql('postgres', $land);
like($err, qr/cannot receive events on a server in recovery/, 'a standby refuses to receive');
($ret, $out, $err) = $primary->psql('postgres', 'SELECT count(*) FROM hokusai_auth.events',
	extra_params => [ '-U', 'shipper' ]);
like($err, qr/permission denied/, 'the shipping role cannot read the events');

# ---------------------------------------------------------------------------
# 4. Promotion after an answer that never came back: the promoted worker
#    writes only what the replayed shipping state says the old primary had
#    not taken.  The standby is made unable to ship events (EXECUTE on
#    _receive_events() revoked: the call fails, the notes stay queued);
#    then the primary's row for its run is moved over the first two of its
#    three queued notes, as a call that committed but whose answer was lost
#    would have moved it.
# ---------------------------------------------------------------------------
my $run = sql($primary, "SELECT run_id FROM hokusai_auth.usage_shipments
	WHERE run_id::text NOT LIKE '00000000-%' AND events_received_until > 0");
like($run, qr/^[0-9a-f-]{36}$/, 'the standby\'s run is in usage_shipments');
my $until = sql($primary, "SELECT events_received_until FROM hokusai_auth.usage_shipments WHERE run_id = '$run'");
sql($primary, "REVOKE EXECUTE ON FUNCTION hokusai_auth._receive_events(uuid, bigint, bigint[], text[],
	uuid[], bigint[], bigint[]) FROM shipper");
my (undef, $kid_z, $key_z) = HokusaiTest::new_key($primary, 'zoe', args => 'rate_limit_per_hour => 1');
my (undef, $kid_w, $key_w) = HokusaiTest::new_key($primary, 'walt', args => 'credits => 4');
catch_up();
my $failures = sql($standby, 'SELECT ship_failures FROM hokusai_auth.replica_stats');
is(statuses($standby, $key_z, 2) . ' ' . statuses($standby, $key_w, 1, 4), 'ok,rate_limited ok',
	'standby: key z refused (1 note), key w\'s 4 credits spent (2 notes)');
ok($standby->poll_query_until('postgres', "SELECT ship_failures > $failures FROM hokusai_auth.replica_stats"),
	'the standby cannot ship them');
is(sql($standby, 'SELECT queued FROM hokusai_auth.event_queue_stats()'), '3', 'its 3 notes stay queued');
sql($primary, "UPDATE hokusai_auth.usage_shipments SET events_received_until = $until + 2 WHERE run_id = '$run'");
catch_up();
$standby->promote;
$standby->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
ok($standby->poll_query_until('postgres', 'SELECT queued = 0 FROM hokusai_auth.event_queue_stats()'),
	'promoted: its worker empties the event queue');
ok($standby->poll_query_until('postgres', "SELECT count(*) > 0 FROM hokusai_auth.events WHERE api_key_id = '$kid_w'
		AND kind LIKE 'credits.%'"), 'promoted: it writes events itself');
sleep(1);
is(sql($standby, "SELECT string_agg(e.kind || ' ' || coalesce(e.data->>'credits_remaining', e.data->>'retry_after'), ', ' ORDER BY e.id)
		FROM hokusai_auth.events e WHERE e.api_key_id IN ('$kid_z', '$kid_w')
		 AND e.kind IN ('rate_limit.exceeded', 'credits.low', 'credits.exhausted')"), 'credits.exhausted 0',
	'promoted: only the note the old primary had not taken is written (its replayed row covered the first two)');
like(slurp_file($standby->logfile), qr/promoted: the old primary had taken this server's usage up to queue position \d+ and its noted events up to \d+/,
	'the worker logs the positions it took over');

$standby->stop;
$primary->stop;
done_testing();
