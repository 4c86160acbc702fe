# pg_cron housekeeping with the real pg_cron: schedule_housekeeping() installs
# the jobs, the rollup job rolls raw usage up into hourly rows, the prune job
# deletes raw rows older than the retention, and usage_summary() gives the
# same answer before and after.  pg_cron 1.4 runs jobs at most once a
# minute, so this test takes one to two minutes.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $node = HokusaiTest::new_node('cron',
	extra_conf => "shared_preload_libraries = 'pg_cron,hokusai_auth'\n"
	  . "cron.database_name = 'postgres'\n"
	  . "cron.use_background_workers = on\n"
	  . "max_worker_processes = 16\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

my ($uid, $kid, $key) = HokusaiTest::new_key($node, 'carl');

# Without pg_cron installed in the database: a clear error.
my ($ret, $out, $err) = $node->psql('postgres', 'SELECT hokusai_auth.schedule_housekeeping()');
like($err, qr/pg_cron is not installed in this database/, 'schedule_housekeeping needs pg_cron');

q1('CREATE EXTENSION pg_cron');

# Raw events over the last 6 hours.
q1("INSERT INTO hokusai_auth.api_key_usage
		(api_key_id, endpoint, \"timestamp\", response_time_ms, status_code)
	SELECT '$kid', '/e' || (i % 3), now() - i * interval '1 minute', i % 50,
		   CASE WHEN i % 10 = 0 THEN 500 ELSE 200 END
	  FROM generate_series(1, 360) i");
my $before = q1("SELECT row(s.*)::text FROM hokusai_auth.usage_summary('$kid',
	date_trunc('hour', now()) - interval '5 hours', date_trunc('hour', now())) s");

is( q1( "SELECT string_agg(jobname || ' ' || schedule || ' ' || command, E'\\n' ORDER BY jobname)
		   FROM hokusai_auth.schedule_housekeeping(retention => '2 hours',
				rollup_schedule => '* * * * *', prune_schedule => '* * * * *')"),
	"hokusai_auth.prune * * * * * SELECT hokusai_auth.prune_usage(CAST('02:00:00' AS pg_catalog.interval))\n"
	  . "hokusai_auth.rollup * * * * * SELECT hokusai_auth.rollup_usage()",
	'one call installs both jobs');
q1("SELECT count(*) FROM hokusai_auth.schedule_housekeeping(retention => '2 hours',
	rollup_schedule => '* * * * *', prune_schedule => '* * * * *')");
is(q1("SELECT count(*) FROM cron.job WHERE jobname LIKE 'hokusai_auth.%'"),
	'2', 'calling it again replaces the jobs');

ok( $node->poll_query_until('postgres',
		"SELECT count(DISTINCT j.jobname) = 2 FROM cron.job_run_details d
		   JOIN cron.job j USING (jobid)
		  WHERE j.jobname LIKE 'hokusai_auth.%' AND d.status = 'succeeded'"),
	'both jobs ran and succeeded');
is(q1("SELECT count(*) FROM cron.job_run_details WHERE status = 'failed'"), '0', 'no failed runs');
is(q1("SELECT rolled_until = date_trunc('hour', now(), 'UTC') FROM hokusai_auth.usage_rollup_state"),
	't', 'the rollup job rolled up every whole hour');
ok(q1("SELECT count(*) > 0 FROM hokusai_auth.api_key_usage_hourly WHERE api_key_id = '$kid'") eq 't',
	'hourly rows exist');
# Measured from when the last successful prune started, not from now: a row
# crosses the two-hour line every minute.
is(q1("SELECT count(*) FROM hokusai_auth.api_key_usage
		WHERE \"timestamp\" < least(
			(SELECT max(d.start_time) FROM cron.job_run_details d JOIN cron.job j USING (jobid)
			  WHERE j.jobname = 'hokusai_auth.prune' AND d.status = 'succeeded') - interval '2 hours',
			(SELECT rolled_until FROM hokusai_auth.usage_rollup_state))"),
	'0', 'the prune job deleted raw rows older than the retention');
cmp_ok(q1("SELECT count(*) FROM hokusai_auth.api_key_usage"), '<', 360,
	'... and it did delete some');
is( q1( "SELECT row(s.*)::text FROM hokusai_auth.usage_summary('$kid',
		date_trunc('hour', now()) - interval '5 hours', date_trunc('hour', now())) s"),
	$before, 'usage_summary gives the same answer from rollups');

is(q1('SELECT hokusai_auth.unschedule_housekeeping()'), '2', 'unschedule removes both jobs');
is(q1("SELECT count(*) FROM cron.job WHERE jobname LIKE 'hokusai_auth.%'"), '0', 'no jobs left');

$node->stop;
# pg_cron without background workers connects over TCP: schedule_housekeeping()
# says that every job will fail without a password it can find.
my $tcp = HokusaiTest::new_node('cron_tcp',
	extra_conf => "shared_preload_libraries = 'pg_cron,hokusai_auth'\n"
	  . "cron.database_name = 'postgres'\n"
	  . "cron.use_background_workers = off\n");
$tcp->safe_psql('postgres', 'CREATE EXTENSION pg_cron');
($ret, $out, $err) = $tcp->psql('postgres',
	"SELECT count(*) FROM hokusai_auth.schedule_housekeeping(rollup_schedule => '0 0 1 1 *', prune_schedule => '0 0 1 1 *')");
is($ret, 0, 'schedule_housekeeping() without background workers still installs the jobs');
like($err, qr/WARNING:  pg_cron will run these jobs over a TCP connection to localhost/,
	'... and warns that they connect over TCP');
like($err, qr/HINT:  Set cron\.use_background_workers = on/, '... with what to do');
$tcp->stop;

done_testing();
