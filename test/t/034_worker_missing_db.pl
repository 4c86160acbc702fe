# hokusai_auth.database names a database that does not exist: the worker
# says so once, with what to do, instead of every time the postmaster
# starts it again, and connects as soon as the database is there.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $node = HokusaiTest::new_node('missing_db', create => 0,
	extra_conf => "hokusai_auth.database = 'hk_not_yet'\n");

# Three restarts of the worker (one every 5 seconds).
sleep 16;
my $log = slurp_file($node->logfile);
my @said = ($log =~ /database "hk_not_yet" does not exist/g);
is(scalar(@said), 1, 'the missing database is reported once, not at every restart');
like($log, qr/HINT:  The hokusai_auth worker connects to hokusai_auth\.database\. Create that database/,
	'... with what to do');
my @exits = ($log =~ /background worker "hokusai_auth usage worker" \(PID \d+\) exited/g);
is(scalar(@exits), 1, 'the worker then waits: the postmaster does not restart it every few seconds');

# The database appears: the worker connects at its next start.
$node->safe_psql('postgres', 'CREATE DATABASE hk_not_yet');
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM pg_stat_activity
		  WHERE backend_type = 'hokusai_auth usage worker' AND datname = 'hk_not_yet'"),
	'the worker connects once the database exists');
$node->safe_psql('hk_not_yet', 'CREATE EXTENSION hokusai_auth CASCADE');
$node->safe_psql('hk_not_yet', "SELECT hokusai_auth.record_usage(
	(SELECT id FROM hokusai_auth.create_key(hokusai_auth.create_user('mona'), 'k')), '/x', 1, 200)");
ok( $node->poll_query_until('hk_not_yet', 'SELECT count(*) = 1 FROM hokusai_auth.api_key_usage'),
	'and writes usage there');

# Dropped again (after the worker is stopped): said once more.
$node->safe_psql('postgres', "ALTER DATABASE hk_not_yet ALLOW_CONNECTIONS false");
$node->safe_psql('postgres', "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = 'hk_not_yet'");
$node->safe_psql('postgres', 'DROP DATABASE hk_not_yet WITH (FORCE)');
sleep 12;
$log = slurp_file($node->logfile);
@said = ($log =~ /database "hk_not_yet" does not exist/g);
is(scalar(@said), 2, 'a database that goes missing again is reported once more');
@exits = ($log =~ /background worker "hokusai_auth usage worker" \(PID \d+\) exited/g);
cmp_ok(scalar(@exits), '<=', 4, '... and the worker waits again (no exit every few seconds)');

done_testing();
