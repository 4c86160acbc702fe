# pg_cron housekeeping with the real pg_cron: schedule_housekeeping() installs
# the prune job (and removes the rollup job of earlier versions), the job
# drops the raw and minute partitions older than the retention, the hourly
# aggregates stay and usage_summary() over whole hours gives the same answer
# before and after; prune_usage() never waits for a lock on a usage table.
# pg_cron 1.4 runs jobs at most once a minute, so this test takes one to two
# minutes.
use strict;
use warnings;

use IPC::Run;
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

# Usage over the last four days, through the worker's write step in SQL,
# into partitions made for those days.
q1("SELECT hokusai_auth._usage_make_partition(p, now() - d * interval '1 day')
	  FROM unnest('{hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely,
					hokusai_auth.api_key_usage_hourly}'::regclass[]) p, generate_series(0, 4) d");
q1("SELECT hokusai_auth._usage_flush(array_agg('$kid'::uuid), array_agg('/e' || (i % 3)),
		array_agg(now() - i * interval '20 minutes'), array_agg(i % 50),
		array_agg(CASE WHEN i % 10 = 0 THEN 500 ELSE 200 END))
	  FROM generate_series(1, 4 * 72) i");
# The range is fixed here, not now() at each query: the test takes a minute
# or two, and a range that moved across an hour boundary between the two
# summaries compared them over different hours.
my ($lo, $hi) = split /\|/,
  q1("SELECT date_trunc('hour', now()) - interval '90 hours', date_trunc('hour', now())");
my $range = "'$lo'::timestamptz, '$hi'::timestamptz";
my $before = q1("SELECT row(s.*)::text FROM hokusai_auth.usage_summary('$kid', $range) s");
# A job of an earlier version, which schedule_housekeeping() replaces.
q1("SELECT cron.schedule('hokusai_auth.rollup', '*/5 * * * *', 'SELECT hokusai_auth.rollup_usage()')");

is( q1( "SELECT string_agg(jobname || ' ' || schedule || ' ' || command, E'\\n' ORDER BY jobname)
		   FROM hokusai_auth.schedule_housekeeping(retention => '2 days',
				prune_schedule => '* * * * *', minute_retention => '2 days')"),
	"hokusai_auth.prune * * * * * SELECT hokusai_auth.prune_usage(CAST('2 days' AS pg_catalog.interval), "
	  . "CAST('2 days' AS pg_catalog.interval), CAST(NULL AS pg_catalog.interval))",
	'one call installs the prune job');
is(q1("SELECT string_agg(jobname, ' ') FROM cron.job WHERE jobname LIKE 'hokusai_auth.%'"),
	'hokusai_auth.prune', 'the rollup job of earlier versions is gone');
q1("SELECT count(*) FROM hokusai_auth.schedule_housekeeping(retention => '2 days',
	prune_schedule => '* * * * *', minute_retention => '2 days')");
is(q1("SELECT count(*) FROM cron.job WHERE jobname LIKE 'hokusai_auth.%'"),
	'1', 'calling it again replaces the job');

ok( $node->poll_query_until('postgres',
		"SELECT count(*) > 0 FROM cron.job_run_details d JOIN cron.job j USING (jobid)
		  WHERE j.jobname = 'hokusai_auth.prune' AND d.status = 'succeeded'"),
	'the prune job ran and succeeded');
is(q1("SELECT count(*) FROM cron.job_run_details WHERE status = 'failed'"), '0', 'no failed runs');
is( q1( "SELECT count(*) FROM hokusai_auth.usage_partitions
		  WHERE table_name::text NOT LIKE '%hourly' AND until_time <= now() - interval '2 days'"),
	'0', 'raw and minute partitions older than the retention were dropped');
cmp_ok(q1("SELECT count(*) FROM hokusai_auth.api_key_usage"), '<', 4 * 72,
	'... with their raw rows');
is(q1("SELECT row(s.*)::text FROM hokusai_auth.usage_summary('$kid', $range) s"),
	$before, 'usage_summary over whole hours answers as before: the hourly aggregates are kept');

# An open transaction that read a usage table: prune_usage() does not wait
# for it (nor make everyone else wait behind it): it drops nothing of that
# table, with a WARNING, and the next run drops it.
q1("SELECT cron.unschedule('hokusai_auth.prune')");
q1("SELECT hokusai_auth._usage_make_partition('hokusai_auth.api_key_usage', now() - interval '10 days')");
my ($in, $err2) = ("", "");
$out = "";
my $h = IPC::Run::start(
	[ 'psql', '-X', '-q', '-A', '-t', '-d', $node->connstr('postgres') ],
	'<', \$in, '>', \$out, '2>', \$err2);
$in .= "BEGIN; SELECT 'reading ' || count(*) FROM hokusai_auth.api_key_usage;\n";
$h->pump until $out =~ /reading/;
my $t0 = time;
($ret, $out, $err) = $node->psql('postgres', "SELECT hokusai_auth.prune_usage('2 days', '2 days')");
cmp_ok(time - $t0, '<', 5, 'prune_usage() returns at once while a transaction holds the table');
like($err, qr/WARNING:  could not drop usage partition hokusai_auth\.api_key_usage_p\d+: the table is in use/,
	'... with a WARNING naming the partition');
is(q1("SELECT count(*) FROM hokusai_auth.usage_partitions WHERE until_time <= now() - interval '2 days'
		AND table_name = 'hokusai_auth.api_key_usage'::regclass"), '1', '... which is still there');
is($node->safe_psql('postgres', 'SET statement_timeout = 2000; SELECT count(*) >= 0 FROM hokusai_auth.api_key_usage'),
	't', 'and nobody queues behind it');
$in .= "COMMIT;\n\\q\n";
$h->finish;
is(q1("SELECT hokusai_auth.prune_usage('2 days', '2 days')"), '1', 'the next run drops it');

is(q1('SELECT hokusai_auth.unschedule_housekeeping()'), '0', 'nothing left to unschedule');
q1("SELECT count(*) FROM hokusai_auth.schedule_housekeeping()");
is(q1('SELECT hokusai_auth.unschedule_housekeeping()'), '1', 'unschedule removes the job');
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
