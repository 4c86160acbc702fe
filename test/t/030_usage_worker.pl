# The usage queue and the background worker: events from many sessions all
# arrive, in the aggregates (which answer what the raw log does) and the raw
# log, track_request() in read-only transactions, expiry within two flush
# intervals, the worker skips a database without the extension, a clean
# shutdown and a terminated worker lose nothing, the worker comes back after
# SIGKILL, a backend crash leaves keys and tables intact, a full queue drops
# and counts, a late event for a dropped partition is counted and written
# nowhere, raw rows are sampled, endpoints are cut at a character boundary
# with control characters made '?', and a standby's worker stays idle.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use HokusaiTest;

my $FLUSH_MS = 500;
my $node = HokusaiTest::new_node('usage',
	extra_conf => "hokusai_auth.flush_interval = ${FLUSH_MS}ms\n"
	  . "hokusai_auth.database = 'postgres'\n"
	  . "wal_level = replica\nmax_wal_senders = 4\n"
	  . "restart_after_crash = on\n");
my ($uid, $kid, $key) = HokusaiTest::new_key($node, 'ursula',
	args => 'rate_limit_per_hour => 1000000, burst_limit => 100000');

sub q1 { return $node->safe_psql('postgres', $_[0]); }
sub usage_rows { return q1('SELECT count(*) FROM hokusai_auth.api_key_usage'); }
sub worker_pid
{
	my $n = shift // $node;
	return $n->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'hokusai_auth usage worker'");
}
sub wait_rows
{
	my ($want, $what) = @_;
	ok($node->poll_query_until('postgres',
			"SELECT count(*) = $want FROM hokusai_auth.api_key_usage"),
		$what) or diag('rows: ' . usage_rows());
}

ok(worker_pid() =~ /^\d+$/, 'the worker runs');

# 1. Many sessions: 8 clients x 250 transactions, each one validate_key with
# an endpoint and one record_usage.
my $script = $node->basedir . '/usage.sql';
PostgreSQL::Test::Utils::append_to_file($script,
	"SELECT status FROM hokusai_auth.validate_key('$key', endpoint => '/v/' || :client_id);\n"
	  . "SELECT hokusai_auth.record_usage('$kid', '/r/' || :client_id, :client_id, 200);\n");
$node->command_ok(
	[ 'pgbench', '-n', '-c', '8', '-j', '4', '-t', '250', '-f', $script, 'postgres' ],
	'pgbench from 8 sessions');
wait_rows(4000, 'all 4000 events from 8 sessions arrive');
is(q1("SELECT count(DISTINCT endpoint) || ' ' || min(n) || ' ' || max(n) FROM
		(SELECT endpoint, count(*) n FROM hokusai_auth.api_key_usage GROUP BY 1) s"),
	'16 250 250', '250 events for each session and path');
is(q1("SELECT count(*) FROM hokusai_auth.api_key_usage
		WHERE endpoint LIKE '/r/%' AND response_time_ms = substr(endpoint, 4)::int
		  AND status_code = 200"),
	'2000', 'record_usage values arrive as given');
is(q1('SELECT dropped FROM hokusai_auth.usage_queue_stats'), '0', 'nothing dropped');
ok($node->poll_query_until('postgres',
		"SELECT last_used_at > now() - interval '1 minute' FROM hokusai_auth.api_keys WHERE id = '$kid'"),
	'last_used_at is set');

# Every event is in the aggregates, and with nothing sampled (the default
# usage_raw_sample = 1) the summary and the time series answer what the raw
# log does.
is(q1('SELECT aggregated FROM hokusai_auth.usage_queue_stats'), '4000', 'every event aggregated');
is( q1( "SELECT (s.requests, s.errors, s.avg_response_ms, s.max_response_ms, s.by_status, s.by_endpoint)::text
		   FROM hokusai_auth.usage_summary('$kid') s"),
	q1( "WITH u AS (SELECT * FROM hokusai_auth.api_key_usage WHERE api_key_id = '$kid')
		 SELECT (count(*), count(*) FILTER (WHERE status_code >= 400), round(avg(response_time_ms), 1),
				 max(response_time_ms),
				 (SELECT jsonb_agg(jsonb_build_object('status_code', s, 'requests', n) ORDER BY s NULLS LAST)
					FROM (SELECT status_code s, count(*) n FROM u GROUP BY 1) x),
				 (SELECT jsonb_agg(jsonb_build_object('endpoint', e, 'requests', n, 'errors', er,
													   'avg_response_ms', a) ORDER BY n DESC, e NULLS LAST)
					FROM (SELECT endpoint e, count(*) n, count(*) FILTER (WHERE status_code >= 400) er,
								 round(avg(response_time_ms), 1) a FROM u GROUP BY 1) y))::text
		   FROM u"),
	'usage_summary from the aggregates is the raw log\'s');
is( q1( "SELECT count(*) FROM (
			SELECT period_start, requests, errors, avg_response_ms, max_response_ms
			  FROM hokusai_auth.usage_timeseries('$kid', 'minute')
			EXCEPT
			SELECT date_trunc('minute', \"timestamp\"), count(*), count(*) FILTER (WHERE status_code >= 400),
				   round(avg(response_time_ms), 1), max(response_time_ms)
			  FROM hokusai_auth.api_key_usage WHERE api_key_id = '$kid' GROUP BY 1) d"),
	'0', 'the minute time series is the raw log\'s');

# A validation without endpoint only touches last_used_at.
my (undef, $kid2, $key2) = HokusaiTest::new_key($node, 'vera');
is(HokusaiTest::status($node, $key2), 'ok', 'second key validates');
ok($node->poll_query_until('postgres',
		"SELECT last_used_at IS NOT NULL FROM hokusai_auth.api_keys WHERE id = '$kid2'"),
	'a validation without endpoint sets last_used_at');
is(q1("SELECT count(*) FROM hokusai_auth.api_key_usage WHERE api_key_id = '$kid2'"),
	'0', '... and writes no usage row');

# 2. track_request(): read-only transactions, commit and abort.
q1("BEGIN READ ONLY;
	SELECT hokusai_auth.track_request('$kid2', '/rpc/ok');
	SELECT set_config('response.status', '201', true), pg_sleep(0.2);
	COMMIT;");
q1("BEGIN READ ONLY;
	SELECT hokusai_auth.track_request('$kid2', '/rpc/plain');
	COMMIT;");
$node->psql('postgres',
	"BEGIN READ ONLY; SELECT hokusai_auth.track_request('$kid2', '/rpc/fail'); SELECT 1/0;");
$node->psql('postgres',
	"BEGIN READ ONLY; SELECT hokusai_auth.track_request('$kid2', '/rpc/teapot');
	 SELECT set_config('response.status', '418', true); SELECT 1/0;");
q1("BEGIN; SELECT hokusai_auth.track_request('$kid2', '/rpc/bogus');
	SELECT set_config('response.status', 'abc', true); COMMIT;");
wait_rows(4005, 'one event per tracked transaction');
is( q1( "SELECT string_agg(endpoint || '=' || status_code, ' ' ORDER BY endpoint)
		   FROM hokusai_auth.api_key_usage WHERE api_key_id = '$kid2'"),
	'/rpc/bogus=200 /rpc/fail=500 /rpc/ok=201 /rpc/plain=200 /rpc/teapot=418',
	'status: response.status, else 200 on commit and 500 on abort');
ok( q1( "SELECT response_time_ms BETWEEN 190 AND 5000 FROM hokusai_auth.api_key_usage
		  WHERE endpoint = '/rpc/ok'") eq 't',
	'response_time_ms covers the transaction');

# 3. Expiry within two flush intervals, with an audit row.
my $ekid = q1("SELECT id FROM hokusai_auth.create_key('$uid', 'short',
	expires_at => clock_timestamp() + interval '1 second')");
ok( $node->poll_query_until('postgres',
		"SELECT NOT is_active FROM hokusai_auth.api_keys WHERE id = '$ekid'"),
	'the worker expires the key');
my $delay = q1("SELECT round(1000 * extract(epoch FROM a.at - k.expires_at))
	FROM hokusai_auth.audit_log a JOIN hokusai_auth.api_keys k ON k.id = a.api_key_id
	WHERE a.api_key_id = '$ekid' AND a.action = 'expire'");
ok($delay >= 0 && $delay <= 2 * $FLUSH_MS,
	"expired ${delay} ms after expires_at (at most 2 x flush_interval)");
is(q1('SELECT hokusai_auth.verify_audit_chain() IS NULL'), 't', 'audit chain intact');

# 4. Without the extension the worker waits, and resumes when it returns.
my $pid = worker_pid();
q1('DROP EXTENSION hokusai_auth');
usleep(3 * $FLUSH_MS * 1000);
is(worker_pid(), $pid, 'the worker keeps running while the extension is absent');
q1('CREATE EXTENSION hokusai_auth');
($uid, $kid, $key) = HokusaiTest::new_key($node, 'ursula',
	args => 'rate_limit_per_hour => 1000000, burst_limit => 100000');
q1("SELECT hokusai_auth.record_usage('$kid', '/back', 1, 200)");
wait_rows(1, 'events flow again after CREATE EXTENSION');
is(worker_pid(), $pid, 'same worker');

# 4b. An error in a cycle outside a batch (here the last_used_at step) is
# logged, and the same worker carries on.
my $touch_def = q1("SELECT pg_get_functiondef('hokusai_auth._usage_touch(uuid[], timestamptz[])'::regprocedure)");
q1(q{CREATE OR REPLACE FUNCTION hokusai_auth._usage_touch(key_ids uuid[], ats timestamptz[])
	RETURNS integer LANGUAGE plpgsql AS $$BEGIN RAISE EXCEPTION 'touch step broken on purpose'; END$$});
my $log_at = -s $node->logfile;
q1("SELECT hokusai_auth.record_usage('$kid', '/broken-touch', 1, 200)");
wait_rows(2, 'events are written although the last_used_at step fails');
ok($node->wait_for_log(qr/ERROR:  touch step broken on purpose/, $log_at),
	'the failing step is logged');
q1($touch_def);
usleep(2 * $FLUSH_MS * 1000);
is(worker_pid(), $pid, 'the same worker runs after the error');
q1("SELECT hokusai_auth.record_usage('$kid', '/fixed-touch', 1, 200)");
wait_rows(3, 'and keeps writing');

# 5. A clean shutdown and a terminated worker write what is queued.  A long
# interval keeps the worker from flushing on its own.
q1("ALTER SYSTEM SET hokusai_auth.flush_interval = '1h'; SELECT pg_reload_conf()");
usleep(3 * $FLUSH_MS * 1000);
q1("SELECT count(hokusai_auth.record_usage('$kid', '/shutdown', i, 200))
	FROM generate_series(1, 1000) i");
usleep(300_000);
is(q1('SELECT queued FROM hokusai_auth.usage_queue_stats') . ' ' . usage_rows(),
	'1000 3', 'events wait in the queue');
$node->stop('fast');
$node->start;
is(usage_rows(), '1003', 'a clean shutdown flushed all 1000 queued events');

q1("SELECT count(hokusai_auth.record_usage('$kid', '/terminate', i, 200))
	FROM generate_series(1, 500) i");
$pid = worker_pid();
q1("SELECT pg_terminate_backend($pid)");
wait_rows(1503, 'a terminated worker flushes before it exits');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'hokusai_auth usage worker' AND pid <> $pid"),
	'the worker is restarted after pg_terminate_backend');
q1("ALTER SYSTEM RESET hokusai_auth.flush_interval; SELECT pg_reload_conf()");

# 6. SIGKILL of the worker: the server restarts its processes, the worker
# comes back and works.
$pid = worker_pid();
kill 'KILL', $pid;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'hokusai_auth usage worker' AND pid <> $pid"),
	'the worker is back after SIGKILL');
is(HokusaiTest::status($node, $key), 'ok', 'keys validate after the crash restart');
q1("SELECT hokusai_auth.record_usage('$kid', '/after-kill', 1, 200)");
wait_rows(1504, 'events flow after SIGKILL');

# 7. A backend crash: every process restarts, keys and tables are intact.
my $counts = q1('SELECT (SELECT count(*) FROM hokusai_auth.api_keys) || \' \'
	|| (SELECT count(*) FROM hokusai_auth.api_key_usage) || \' \'
	|| (SELECT count(*) FROM hokusai_auth.audit_log)');
my ($in, $out, $err) = ('', '', '');
my $h = IPC::Run::start(
	[ 'psql', '-X', '-q', '-A', '-t', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err);
$in .= "SELECT pg_backend_pid();\n";
$h->pump until $out =~ /^(\d+)$/m;
my $bpid = $1;
kill 'KILL', $bpid;
$h->finish;
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'hokusai_auth usage worker'"),
	'the worker is back after a backend crash');
is( q1('SELECT (SELECT count(*) FROM hokusai_auth.api_keys) || \' \'
	|| (SELECT count(*) FROM hokusai_auth.api_key_usage) || \' \'
	|| (SELECT count(*) FROM hokusai_auth.audit_log)'),
	$counts, 'keys, usage and audit rows intact after the crash');
is(q1('SELECT hokusai_auth.verify_audit_chain() IS NULL'), 't', 'audit chain intact after the crash');
is(HokusaiTest::status($node, $key), 'ok', 'keys validate after the backend crash');
q1("SELECT hokusai_auth.record_usage('$kid', '/after-crash', 1, 200)");
wait_rows(1505, 'events flow after the backend crash');

# Sampling: usage_raw_sample = 0 keeps no raw row, 0.05 about one in
# twenty; the aggregates count every event either way.
q1("ALTER SYSTEM SET hokusai_auth.usage_raw_sample = 0; SELECT pg_reload_conf()");
usleep(3 * $FLUSH_MS * 1000);
q1('SELECT hokusai_auth.usage_queue_stats_reset()');
my $raw_before = usage_rows();
q1("SELECT hokusai_auth.record_usage('$kid', '/unsampled', i % 50, 200) FROM generate_series(1, 3000) i");
ok($node->poll_query_until('postgres', 'SELECT aggregated = 3000 FROM hokusai_auth.usage_queue_stats'),
	'raw sample 0: every event aggregated');
is(q1("SELECT sum(requests) || ' ' || sum(response_ms_sum) FROM hokusai_auth.api_key_usage_minutely
		WHERE endpoint = '/unsampled'"), '3000 73500', '... into the minute aggregates');
is(usage_rows() . ' ' . q1('SELECT flushed FROM hokusai_auth.usage_queue_stats'), "$raw_before 0",
	'... and no raw row');
q1("ALTER SYSTEM SET hokusai_auth.usage_raw_sample = 0.05; SELECT pg_reload_conf()");
usleep(3 * $FLUSH_MS * 1000);
q1("SELECT hokusai_auth.record_usage('$kid', '/sampled', 1, 200) FROM generate_series(1, 20000) i");
ok($node->poll_query_until('postgres',
		"SELECT sum(requests) = 20000 FROM hokusai_auth.api_key_usage_minutely WHERE endpoint = '/sampled'"),
	'raw sample 0.05: every event aggregated');
my $sampled = q1("SELECT count(*) FROM hokusai_auth.api_key_usage WHERE endpoint = '/sampled'");
ok($sampled > 800 && $sampled < 1200, "... and about one in twenty kept raw ($sampled of 20000)");
q1("ALTER SYSTEM RESET hokusai_auth.usage_raw_sample; SELECT pg_reload_conf()");
usleep(3 * $FLUSH_MS * 1000);

# 8. Overflow: a 1024-event queue, the worker held off by a lock on the
# minute aggregates (its batches yield while a session holds one that
# conflicts with writing), 2000 events.
$node->append_conf('postgresql.conf', "hokusai_auth.usage_queue_size = 1024\n");
$node->restart;
($in, $out, $err) = ('', '', '');
$h = IPC::Run::start(
	[ 'psql', '-X', '-q', '-A', '-t', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err);
$in .= "BEGIN; LOCK TABLE hokusai_auth.api_key_usage_minutely IN SHARE MODE; SELECT 'locked';\n";
$h->pump until $out =~ /locked/;
my $rows_before_flood = usage_rows();
is( q1( "SELECT count(*) FILTER (WHERE NOT hokusai_auth.record_usage('$kid', '/flood', i, 200))
		   FROM generate_series(1, 2000) i"),
	'976', 'a full queue refuses events: 2000 - 1024 dropped');
is(q1('SELECT dropped || \' \' || enqueued FROM hokusai_auth.usage_queue_stats'),
	'976 1024', 'drops are counted');
$in .= "COMMIT;\n\\q\n";
$h->finish;
wait_rows($rows_before_flood + 1024, 'the 1024 queued events arrive once the worker can write');

# 8b. How the worker writes.  Bulk path: every column as given, ids that
# are version 7 and grow in insertion order; events of a key that does not
# exist are discarded and counted.
q1('SELECT hokusai_auth.usage_queue_stats_reset()');
my $before = usage_rows();
q1("SELECT hokusai_auth.record_usage('$kid', '/bulk', i, 200 + i % 3) FROM generate_series(1, 300) i");
q1("SELECT hokusai_auth.record_usage(gen_random_uuid(), '/no-such-key', 1, 200)");
q1("SELECT hokusai_auth.record_usage('$kid', NULL, NULL, NULL)");
wait_rows($before + 301, 'bulk-written events arrive');
ok($node->poll_query_until('postgres',
		'SELECT discarded = 1 FROM hokusai_auth.usage_queue_stats'),
	'the event of a key that does not exist is discarded and counted');
is(q1("SELECT count(*) || ' ' || sum(response_time_ms) || ' ' || count(*) FILTER (WHERE status_code = 202)
		FROM hokusai_auth.api_key_usage WHERE endpoint = '/bulk'"),
	'300 45150 100', 'bulk rows keep endpoint, response time and status');
is(q1("SELECT count(*) FROM hokusai_auth.api_key_usage
		WHERE endpoint IS NULL AND response_time_ms IS NULL AND status_code IS NULL
		  AND \"timestamp\" > now() - interval '1 minute'"),
	'1', 'NULL endpoint, response time and status stay NULL');
is(q1("SELECT count(*) FILTER (WHERE substr(id::text, 15, 1) = '7'
				AND substr(id::text, 20, 1) IN ('8', '9', 'a', 'b'))
			|| ' ' || bool_and(id > prev)
		 FROM (SELECT id, lag(id) OVER (ORDER BY ctid) AS prev
				 FROM hokusai_auth.api_key_usage WHERE endpoint = '/bulk') s"),
	'300 true', 'ids are version 7 and grow in insertion order');
is(q1("SELECT count(*) FROM hokusai_auth.api_key_usage
		WHERE endpoint = '/bulk'
		  AND abs(extract(epoch FROM \"timestamp\") * 1000
				  - ('x' || translate(substr(id::text, 1, 13), '-', ''))::bit(48)::bigint) > 1"),
	'0', 'an id carries the millisecond of its event');

# A late event: its day's partitions were dropped while it waited in the
# queue.  It is counted as late_discarded and written nowhere, never an
# error; the batch's other work goes on.
q1('SELECT hokusai_auth.usage_queue_stats_reset()');
($in, $out, $err) = ('', '', '');
$h = IPC::Run::start(
	[ 'psql', '-X', '-q', '-A', '-t', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err);
$in .= "BEGIN; LOCK TABLE hokusai_auth.api_key_usage_minutely IN SHARE MODE; SELECT 'held';\n";
$h->pump until $out =~ /held/;
# The partitions of the events' time, not of now() when they are dropped
# (a day may have begun meanwhile).
my $late_at = q1("SELECT now() FROM (SELECT count(hokusai_auth.record_usage('$kid', '/late', i, 200))
	FROM generate_series(1, 5) i) x");
$in .= "SELECT pg_catalog.format('DROP TABLE %s', partition) FROM hokusai_auth.usage_partitions
		 WHERE table_name::text IN ('hokusai_auth.api_key_usage', 'hokusai_auth.api_key_usage_minutely')
		   AND from_time <= '$late_at' AND until_time > '$late_at' \\gexec\n"
  . "SELECT 'dropped ' || count(*) FROM hokusai_auth.usage_partitions\n"
  . "  WHERE from_time <= '$late_at' AND until_time > '$late_at';\n"
  . "COMMIT;\n\\q\n";
$h->finish;
like($out, qr/dropped 2/, "today's raw and minute partitions dropped with events queued (the month's and the year's are left)");
ok($node->poll_query_until('postgres',
		"SELECT late_discarded = 5 AND queued = 0 FROM hokusai_auth.usage_queue_stats"),
	'the late events are counted as late_discarded and leave the queue');
is(q1("SELECT (SELECT count(*) FROM hokusai_auth.api_key_usage_hourly WHERE endpoint = '/late')
			 + (SELECT count(*) FROM hokusai_auth.api_key_usage WHERE endpoint = '/late')"),
	'0', '... and are written nowhere');
is(q1("SELECT failed FROM hokusai_auth.usage_queue_stats"), '0', '... without a failed batch');
q1('SELECT hokusai_auth.create_usage_partitions()');
q1("SELECT hokusai_auth.record_usage('$kid', '/after-late', 1, 200)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM hokusai_auth.api_key_usage WHERE endpoint = '/after-late'"),
	'events flow again once the partitions are back');

# A table someone altered (here: a trigger of their own) is written
# through SQL, so the trigger sees every row.
q1("CREATE TABLE usage_seen (endpoint text);
	CREATE FUNCTION note_usage() RETURNS trigger LANGUAGE plpgsql AS
		\$\$BEGIN INSERT INTO public.usage_seen VALUES (NEW.endpoint); RETURN NEW; END\$\$;
	CREATE TRIGGER note_usage AFTER INSERT ON hokusai_auth.api_key_usage
		FOR EACH ROW EXECUTE FUNCTION note_usage();
	ALTER TABLE hokusai_auth.api_key_usage ENABLE ALWAYS TRIGGER note_usage;");
$before = usage_rows();
q1("SELECT hokusai_auth.record_usage('$kid', '/with-trigger', i, 200) FROM generate_series(1, 20) i");
wait_rows($before + 20, 'events arrive in a table with a trigger');
is(q1("SELECT count(*) FROM usage_seen WHERE endpoint = '/with-trigger'"),
	'20', 'the trigger saw every row');
q1('DROP TRIGGER note_usage ON hokusai_auth.api_key_usage');
$before = usage_rows();
q1("SELECT hokusai_auth.record_usage('$kid', '/after-trigger', 1, 200)");
wait_rows($before + 1, 'events arrive again once the trigger is gone');

# 8d. Endpoints as validate_key() queues them: cut to 127 bytes at a
# character boundary, control characters (C0, DEL, C1) made '?', whether
# they come first, after printable ASCII or after other characters.
$before = usage_rows();
my @cases = (
	[ "repeat('/x', 100)", "left(repeat('/x', 100), 127)", '200 bytes of ASCII: the first 127' ],
	[ "'/c' || repeat('a', 124) || 'éz'", "'/c' || repeat('a', 124)",
		'a 2-byte character across byte 127 is left out' ],
	[ "'/d' || repeat('a', 123) || 'éz'", "'/d' || repeat('a', 123) || 'é'",
		'a 2-byte character ending at byte 127 is kept' ],
	[ "'/e' || chr(9) || 'b' || chr(127) || 'c'", "'/e?b?c'", 'C0 and DEL after ASCII become ?' ],
	[ "chr(10) || '/f'", "'?/f'", 'a control character first becomes ?' ],
	[ "'/gé' || chr(133) || 'x' || chr(1)", "'/gé?x?'", 'C1 and C0 after a 2-byte character become ?' ],
	[ "'/h' || repeat('é', 70)", "'/h' || repeat('é', 62)", '2-byte characters cut at a boundary' ]);
for my $c (@cases)
{
	is(q1("SELECT status FROM hokusai_auth.validate_key('$key', endpoint => $c->[0])"),
		'ok', "validate_key with endpoint: $c->[2]");
}
wait_rows($before + scalar(@cases), 'the endpoint events arrive');
for my $c (@cases)
{
	is( q1( "SELECT count(*) FROM hokusai_auth.api_key_usage
			  WHERE api_key_id = '$kid' AND endpoint = $c->[1] AND octet_length(endpoint) <= 127
				AND \"timestamp\" > now() - interval '1 minute'"),
		'1', "stored: $c->[2]");
}

# 8c. A database at 1.5 under the 1.6 library: the worker writes it the 1.5
# way until ALTER EXTENSION UPDATE, then into the 1.6 tables, without a
# restart.
q1('DROP EXTENSION hokusai_auth');
q1("CREATE EXTENSION hokusai_auth VERSION '1.5'");
(undef, $kid) = HokusaiTest::new_key($node, 'lena');
q1("SELECT hokusai_auth.record_usage('$kid', '/on-1.5', 1, 200) FROM generate_series(1, 10)");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 10 FROM hokusai_auth.api_key_usage WHERE endpoint = '/on-1.5'"),
	'the worker writes a 1.5 database the 1.5 way');
q1("ALTER EXTENSION hokusai_auth UPDATE TO '1.6'");
q1("SELECT hokusai_auth.record_usage('$kid', '/on-1.6', 1, 200) FROM generate_series(1, 10)");
ok($node->poll_query_until('postgres',
		"SELECT sum(requests) = 10 FROM hokusai_auth.api_key_usage_minutely WHERE endpoint = '/on-1.6'"),
	'... and, once updated, into the 1.6 aggregates');
is(q1("SELECT sum(requests) FROM hokusai_auth.api_key_usage_minutely WHERE endpoint = '/on-1.5'"),
	'10', '... with the events of 1.5 moved by the update');

# 9. A standby: the worker starts there, writes nothing itself while in
# recovery, and ships the event to the primary (docs/scaling.md).
$node->backup('b');
my $standby = PostgreSQL::Test::Cluster->new('standby');
$standby->init_from_backup($node, 'b', has_streaming => 1);
$standby->start;
ok($standby->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity WHERE backend_type = 'hokusai_auth usage worker'"),
	'the worker runs on the standby');
is($standby->safe_psql('postgres',
		"SELECT hokusai_auth.record_usage('$kid', '/standby', 1, 200)"),
	't', 'record_usage works on a standby');
ok($standby->poll_query_until('postgres', 'SELECT queued = 0 FROM hokusai_auth.usage_queue_stats'),
	'the standby worker empties its queue');
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM hokusai_auth.api_key_usage WHERE endpoint = '/standby'"),
	'by shipping the event to the primary, which writes it once');
$standby->stop;

my $log = PostgreSQL::Test::Utils::slurp_file($node->logfile);
unlike($log, qr/hokusai_auth worker could not write/, 'no failed batches in the log');

$node->stop;
done_testing();
