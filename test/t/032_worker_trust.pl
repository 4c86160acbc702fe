# The background worker against what others put in its way (issue 13):
#
# A. a database owner's search_path: operators and functions planted in a
#    schema the owner puts before pg_catalog (ALTER DATABASE ... SET
#    search_path) never run in the worker, which is a superuser, whatever it
#    does (bulk and SQL writes, last_used_at, expiry, discarded events);
# B. DROP EXTENSION while the worker writes: every DROP succeeds, the worker
#    never waits for the DDL's locks, and the events of a DROP that is rolled
#    back are all written afterwards, none counted as failed;
# C. constraints an operator adds to api_key_usage (NOT NULL, CHECK): the
#    worker never writes a row an INSERT would refuse; what it cannot write is
#    counted as failed, and the queue moves on.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use HokusaiTest;

my $FLUSH_MS = 200;

# The test's own sessions must not run the planted code: options a client
# sends outrank ALTER DATABASE ... SET, and pg_catalog, not named here, is
# searched first.  Only the worker takes the database's settings as they are.
$ENV{PGOPTIONS} = '-c search_path=public';

my $node = HokusaiTest::new_node('trust', create => 0,
	extra_conf => "hokusai_auth.flush_interval = ${FLUSH_MS}ms\n");

sub q1 { return $node->safe_psql('shop', $_[0]); }
sub as_mallory
{
	return $node->safe_psql('shop', $_[0], extra_params => [ '-U', 'mallory' ]);
}
sub usage_stat { return q1("SELECT $_[0] FROM hokusai_auth.usage_queue_stats"); }
sub worker_pid
{
	return $node->safe_psql('postgres',
		"SELECT pid FROM pg_stat_activity WHERE backend_type = 'hokusai_auth usage worker'");
}
sub log_since { return slurp_file($node->logfile, $_[0]); }

# The log from offset $from has no line matching $re (the first few shown).
sub log_lacks
{
	my ($from, $re, $name) = @_;
	my @hits = grep { /$re/ } split(/\n/, log_since($from));
	ok(!@hits, $name) or diag(join("\n", @hits[ 0 .. ($#hits < 4 ? $#hits : 4) ]));
}

# (user id, key id, key) of a new key in the database "shop".
sub new_key
{
	my ($name, $args) = @_;
	my $uid = q1("SELECT hokusai_auth.create_user('$name')");
	my $row = q1("SELECT id || ' ' || key FROM hokusai_auth.create_key('$uid', 'k'"
		  . ($args ? ", $args" : '') . ')');
	return ($uid, split(/ /, $row));
}

sub wait_queue_empty
{
	ok($node->poll_query_until('shop',
			'SELECT queued = 0 FROM hokusai_auth.usage_queue_stats'),
		$_[0]);
}

# mallory owns the database the worker writes to, and nothing else.
$node->safe_psql('postgres', 'CREATE ROLE mallory LOGIN');
$node->safe_psql('postgres', 'CREATE DATABASE shop OWNER mallory');
$node->safe_psql('shop', 'CREATE EXTENSION hokusai_auth CASCADE');
$node->safe_psql('postgres', "ALTER SYSTEM SET hokusai_auth.database = 'shop'");

###########################################################################
# A. The database owner's search_path.
###########################################################################

# Every planted object calls evil.trap(), which records that it ran (a
# WARNING in the log and a row in evil.ran) and makes mallory a superuser
# when it runs as one.  The operators return the right answer, so a worker
# that runs them carries on and commits.
as_mallory(<<'EOSQL');
CREATE SCHEMA evil;
CREATE TABLE evil.ran (tag text, who name, backend text, at timestamptz);
CREATE FUNCTION evil.trap(tag text) RETURNS void LANGUAGE plpgsql AS $$
BEGIN
	RAISE WARNING 'planted code % ran as %', tag, current_user;
	INSERT INTO evil.ran VALUES (tag, current_user,
		(SELECT a.backend_type FROM pg_catalog.pg_stat_activity a
		  WHERE a.pid OPERATOR(pg_catalog.=) pg_catalog.pg_backend_pid()),
		pg_catalog.clock_timestamp());
	BEGIN
		ALTER ROLE mallory SUPERUSER;
	EXCEPTION WHEN insufficient_privilege THEN
		NULL;
	END;
END
$$;

-- Look-alike comparison operators for the types the worker handles.
DO $do$
DECLARE
	t	text;
	op	text;
	i	integer := 0;
BEGIN
	FOREACH t IN ARRAY ARRAY['uuid', 'text', 'timestamptz', 'timestamp', 'integer',
		'bigint', 'smallint', 'numeric', 'boolean', 'name', 'oid', 'bytea', 'jsonb',
		'inet', 'interval', 'double precision', 'uuid[]', 'text[]', 'timestamptz[]',
		'integer[]', 'bigint[]']
	LOOP
		FOREACH op IN ARRAY ARRAY['=', '<>', '<', '<=', '>', '>=']
		LOOP
			i := i + 1;
			EXECUTE format($f$
				CREATE FUNCTION evil.op_%s(a %s, b %s) RETURNS boolean
				LANGUAGE plpgsql AS $b$
				DECLARE
					r boolean;
				BEGIN
					PERFORM evil.trap(%L);
					EXECUTE 'SELECT $1 OPERATOR(pg_catalog.%s) $2' INTO r USING a, b;
					RETURN r;
				END
				$b$$f$, i, t, t, t || ' ' || op || ' ' || t, op);
			EXECUTE format('CREATE OPERATOR evil.%s (LEFTARG = %s, RIGHTARG = %s,
				FUNCTION = evil.op_%s)', op, t, t, i);
		END LOOP;
	END LOOP;
END
$do$;

-- Look-alike functions for what the worker might call unqualified.
CREATE FUNCTION evil.now() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.trap('now()'); RETURN pg_catalog.now(); END $$;
CREATE FUNCTION evil.clock_timestamp() RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.trap('clock_timestamp()'); RETURN pg_catalog.clock_timestamp(); END $$;
CREATE FUNCTION evil.to_regprocedure(text) RETURNS regprocedure LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.trap('to_regprocedure()'); RETURN pg_catalog.to_regprocedure($1); END $$;
CREATE FUNCTION evil.to_regclass(text) RETURNS regclass LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.trap('to_regclass()'); RETURN pg_catalog.to_regclass($1); END $$;
CREATE FUNCTION evil.unnest(anyarray) RETURNS SETOF anyelement LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.trap('unnest()'); RETURN QUERY SELECT pg_catalog.unnest($1); END $$;
CREATE FUNCTION evil.gen_random_uuid() RETURNS uuid LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.trap('gen_random_uuid()'); RETURN pg_catalog.gen_random_uuid(); END $$;
CREATE FUNCTION evil.date_trunc(text, timestamptz, text) RETURNS timestamptz LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.trap('date_trunc()'); RETURN pg_catalog.date_trunc($1, $2, $3); END $$;
CREATE FUNCTION evil.current_setting(text, boolean) RETURNS text LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.trap('current_setting()'); RETURN pg_catalog.current_setting($1, $2); END $$;
CREATE FUNCTION evil.nextval(regclass) RETURNS bigint LANGUAGE plpgsql AS $$
BEGIN PERFORM evil.trap('nextval()'); RETURN pg_catalog.nextval($1); END $$;
EOSQL

# The trap works: a superuser who evaluates uuid = uuid under that
# search_path makes mallory a superuser (rolled back here).
is( q1( "BEGIN;
		SET LOCAL search_path = evil, pg_catalog;
		SELECT gen_random_uuid() = gen_random_uuid();
		SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = 'mallory';
		ROLLBACK;"),
	"f\nt", 'the planted operator escalates a superuser who runs it');
is(q1("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"), 'f',
	'mallory is not a superuser');

as_mallory('ALTER DATABASE shop SET search_path = evil, pg_catalog');
# The worker takes the database's settings when it connects.
$node->restart;
my $log_from = -s $node->logfile;
ok( $node->poll_query_until('postgres',
		"SELECT datname = 'shop' FROM pg_stat_activity
		  WHERE backend_type = 'hokusai_auth usage worker'"),
	'the worker runs in the database mallory owns');
my $wpid = worker_pid();

# Everything the worker does: bulk rows, rows through SQL (late events),
# events of an unknown key, last_used_at, expiry.
my ($uid, $kid, $key) = new_key('ann', 'rate_limit_per_hour => 1000000');
my (undef, $kid2, $key2) = new_key('bob');
my $ekid = q1("SELECT id FROM hokusai_auth.create_key('$uid', 'short',
	expires_at => clock_timestamp() + interval '1 second')");
is( q1( "SELECT count(*) FROM generate_series(1, 50) i,
		hokusai_auth.validate_key('$key', endpoint => '/a/' || i) v WHERE v.valid"),
	'50', '50 validations with an endpoint');
is(q1("SELECT status FROM hokusai_auth.validate_key('$key2')"), 'ok',
	'a validation without endpoint');
q1("SELECT hokusai_auth.record_usage('$kid', NULL, NULL, NULL)");
q1("SELECT hokusai_auth.record_usage(gen_random_uuid(), '/nobody', 1, 200)");
ok( $node->poll_query_until('shop',
		"SELECT count(*) = 51 FROM hokusai_auth.api_key_usage WHERE api_key_id = '$kid'"),
	'the worker writes the events');
is(q1("SELECT sum(requests) FROM hokusai_auth.api_key_usage_minutely WHERE api_key_id = '$kid'")
	  . ' ' . q1("SELECT sum(requests) FROM hokusai_auth.api_key_usage_daily WHERE api_key_id = '$kid'"),
	'51 51', '... and counts them in the aggregates');
ok( $node->poll_query_until('shop',
		"SELECT last_used_at IS NOT NULL FROM hokusai_auth.api_keys WHERE id = '$kid2'"),
	'the worker sets last_used_at');
ok( $node->poll_query_until('shop',
		"SELECT NOT is_active FROM hokusai_auth.api_keys WHERE id = '$ekid'"),
	'the worker expires a key');

# None of it ran the planted code.
sub nothing_planted_ran
{
	my $what = shift;
	is(q1("SELECT rolsuper FROM pg_roles WHERE rolname = 'mallory'"), 'f',
		"$what: mallory is not a superuser");
	is(q1("SELECT count(*) FROM evil.ran"), '0', "$what: no planted code ran")
	  or diag(q1("SELECT string_agg(tag || ' as ' || who || ' in ' || backend, E'\n')
		FROM evil.ran"));
	log_lacks($log_from, qr/planted code/, "$what: nothing planted in the log");
}
nothing_planted_ran('A');
is(worker_pid(), $wpid, 'the same worker runs');

###########################################################################
# B. DROP EXTENSION while the worker writes.
###########################################################################

# A feeder keeps the worker busy: validations with an endpoint, one
# transaction each, with the key the test publishes in public.feed_key.
# While the extension is absent its calls fail and it waits a little.
q1(<<'EOSQL');
CREATE TABLE public.feed_key (key text);
INSERT INTO public.feed_key VALUES (NULL);
CREATE TABLE public.feed_stop ();
CREATE PROCEDURE public.feed(seconds double precision) LANGUAGE plpgsql AS $$
DECLARE
	k		text;
	stop_at	timestamptz := clock_timestamp() + make_interval(secs => seconds);
BEGIN
	WHILE clock_timestamp() < stop_at LOOP
		EXIT WHEN EXISTS (SELECT FROM public.feed_stop);
		BEGIN
			SELECT f.key INTO k FROM public.feed_key f;
			PERFORM hokusai_auth.validate_key(k, endpoint => '/feed');
			PERFORM pg_sleep(0.001);
		EXCEPTION WHEN OTHERS THEN
			PERFORM pg_sleep(0.01);
		END;
		COMMIT;
	END LOOP;
END
$$;
EOSQL

my $feed_key = (new_key('feed0', 'rate_limit_per_hour => 100000000'))[2];
q1("UPDATE public.feed_key SET key = '$feed_key'");
q1('SELECT hokusai_auth.usage_queue_stats_reset()');
my $log_b = -s $node->logfile;
my ($fin, $fout, $ferr) = ('', '', '');
my $feeder = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('shop'), '-c', 'CALL public.feed(180)' ],
	'<', \$fin, '>', \$fout, '2>', \$ferr);
ok( $node->poll_query_until('shop',
		"SELECT count(*) > 0 FROM hokusai_auth.api_key_usage WHERE endpoint = '/feed'"),
	'the feeder runs');

my $ROUNDS = 20;
my $dropped = 0;
my @drop_errors;
for my $round (1 .. $ROUNDS)
{
	# Anywhere in the worker's cycle.
	usleep(int(rand(2 * $FLUSH_MS * 1000)));
	my ($ret, $out, $err) = $node->psql('shop', 'DROP EXTENSION hokusai_auth', timeout => 120);
	if ($ret == 0)
	{
		$dropped++;
	}
	else
	{
		push @drop_errors, "round $round: $err";
		$node->safe_psql('shop', 'DROP EXTENSION hokusai_auth', timeout => 120);
	}
	usleep(int(rand($FLUSH_MS * 1000)));
	q1('CREATE EXTENSION hokusai_auth');
	$feed_key = (new_key("feed$round", 'rate_limit_per_hour => 100000000'))[2];
	q1("UPDATE public.feed_key SET key = '$feed_key'");
	ok( $node->poll_query_until('shop',
			"SELECT count(*) > 0 FROM hokusai_auth.api_key_usage WHERE endpoint = '/feed'"),
		"round $round: events flow again") or last;
}
is($dropped, $ROUNDS, "all $ROUNDS DROP EXTENSION succeeded while the worker wrote")
  or diag(join("\n", @drop_errors));
q1('INSERT INTO public.feed_stop DEFAULT VALUES');
$feeder->finish;
is(worker_pid(), $wpid, 'the same worker runs after the DROP/CREATE rounds');
log_lacks($log_b, qr/deadlock detected/, 'no deadlock');
log_lacks($log_b, qr/hokusai_auth worker could not write/, 'no batch failed');
is(usage_stat('failed'), '0', 'nothing counted as failed');

# The deadlock of issue 13, made to happen: the worker used to share-lock
# usage_rollup_state and then wait for api_keys, while DROP EXTENSION, holding
# api_keys, waited for usage_rollup_state.  (1.6 has no such row: the worker
# takes every lock up front without waiting, usage partitions included.)  A
# transaction holding a lock on a usage table keeps the worker yielding
# while the DROP takes its first locks and waits for that transaction.
wait_queue_empty('the queue is empty before the forced deadlock');
q1('SELECT hokusai_auth.usage_queue_stats_reset()');
$log_b = -s $node->logfile;
my (undef, $dkid) = new_key('dora');
my ($xin, $xout, $xerr) = ('', '', '');
my $holder = IPC::Run::start(
	[ 'psql', '-X', '-q', '-A', '-t', '-d', $node->connstr('shop') ],
	'<', \$xin, '>', \$xout, '2>', \$xerr,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$xin .= "BEGIN; LOCK TABLE hokusai_auth.api_key_usage_minutely IN SHARE MODE; SELECT 'held';\n";
$holder->pump until $xout =~ /held/;
q1("SELECT hokusai_auth.record_usage('$dkid', '/d', 1, 200) FROM generate_series(1, 10)");
usleep(3 * $FLUSH_MS * 1000);
my ($dout, $derr) = ('', '');
my $dropper = IPC::Run::start(
	[ 'psql', '-X', '-q', '-d', $node->connstr('shop'), '-c', 'DROP EXTENSION hokusai_auth' ],
	'>', \$dout, '2>', \$derr,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
usleep(3 * $FLUSH_MS * 1000);
$xin .= "COMMIT;\n\\q\n";
$holder->finish;
$dropper->finish;
is($dropper->result(0), 0, 'DROP EXTENSION succeeds against the worker') or diag($derr);
log_lacks($log_b, qr/deadlock detected/, 'no deadlock');
log_lacks($log_b, qr/hokusai_auth worker could not write/, 'no batch failed');
q1('CREATE EXTENSION hokusai_auth') if q1("SELECT count(*) FROM pg_extension WHERE extname = 'hokusai_auth'") eq '0';

# A DROP EXTENSION that is rolled back: while it holds its locks the worker
# takes none of its tables (it never waits for the DDL), the events stay
# queued, and after the rollback they are all written.
wait_queue_empty('the queue is empty');
q1('SELECT hokusai_auth.usage_queue_stats_reset()');
my (undef, $rkid, $rkey) = new_key('rita', 'rate_limit_per_hour => 1000000');
is( q1( "SELECT count(*) FROM generate_series(1, 200) i,
		hokusai_auth.validate_key('$rkey', endpoint => '/before-drop/' || i) v WHERE v.valid"),
	'200', '200 validations before the DROP');
my $din = '';
($dout, $derr) = ('', '');
my $ddl = IPC::Run::start(
	[ 'psql', '-X', '-q', '-A', '-t', '-d', $node->connstr('shop') ],
	'<', \$din, '>', \$dout, '2>', \$derr,
	IPC::Run::timeout($PostgreSQL::Test::Utils::timeout_default));
$din .= "BEGIN; DROP EXTENSION hokusai_auth; SELECT 'dropped';\n";
$ddl->pump until $dout =~ /dropped/;
# Events queued while the DROP holds its locks.  Not by validate_key(): its
# result type, hokusai_auth.validation, is a composite type whose relation
# the DROP has locked, so a validation waits for the DROP like any query of
# the extension's tables.  track_request() (a void C function) queues an
# event at the end of each transaction and reads no table.
my $track = join('', map { "SELECT hokusai_auth.track_request('$rkid', '/during-drop/$_');\n" } 1 .. 300);
is( $node->safe_psql('shop', "SET statement_timeout = '30s';\n\\o /dev/null\n$track\\o\nSELECT 'tracked';"),
	'tracked', '300 requests tracked while the DROP holds its locks');
my $waits = 0;
my $queued_min = 1e9;
for (1 .. 15)
{
	usleep($FLUSH_MS * 1000);
	$waits += $node->safe_psql('postgres',
		"SELECT count(*) FROM pg_locks l JOIN pg_stat_activity a USING (pid)
		  WHERE a.backend_type = 'hokusai_auth usage worker' AND NOT l.granted");
	# The function: the view is locked by the DROP.
	my $q = q1('SELECT queued FROM hokusai_auth.usage_queue_stats()');
	$queued_min = $q if $q < $queued_min;
}
is($waits, 0, 'the worker never waited for a lock the DROP held');
cmp_ok($queued_min, '>=', 300, 'the events stayed queued');
$din .= "ROLLBACK;\n\\q\n";
$ddl->finish;
ok( $node->poll_query_until('shop',
		"SELECT count(*) = 500 FROM hokusai_auth.api_key_usage WHERE api_key_id = '$rkid'"),
	'after the rollback all 500 events are written')
  or diag(q1("SELECT count(*) FROM hokusai_auth.api_key_usage WHERE api_key_id = '$rkid'"));
is(usage_stat('failed'), '0', 'a cycle that yielded to the DROP is no failure');
is(worker_pid(), $wpid, 'the same worker runs');

###########################################################################
# C. Constraints an operator adds to api_key_usage.
###########################################################################

# NOT NULL on endpoint: events without one are refused, as an INSERT would
# refuse them, and counted as failed; the queue moves on.
wait_queue_empty('the queue is empty before NOT NULL');
q1('SELECT hokusai_auth.usage_queue_stats_reset()');
my $log_c = -s $node->logfile;
q1('ALTER TABLE hokusai_auth.api_key_usage ALTER COLUMN endpoint SET NOT NULL');
q1("SELECT hokusai_auth.record_usage('$rkid', NULL, 7, 200) FROM generate_series(1, 3)");
ok( $node->poll_query_until('shop',
		'SELECT failed = 3 FROM hokusai_auth.usage_queue_stats'),
	'three events without endpoint are counted as failed')
  or diag(q1('SELECT row(s.*) FROM hokusai_auth.usage_queue_stats s'));
is(q1('SELECT count(*) FROM hokusai_auth.api_key_usage WHERE endpoint IS NULL'), '0',
	'no row without endpoint was written');
like(log_since($log_c), qr/could not write 3 usage events: null value in column "endpoint"/,
	'the refusal is logged');
q1("SELECT hokusai_auth.record_usage('$rkid', '/with-endpoint', 7, 200)");
ok( $node->poll_query_until('shop',
		"SELECT count(*) = 1 FROM hokusai_auth.api_key_usage WHERE endpoint = '/with-endpoint'"),
	'events with an endpoint are written');

# NOT NULL on response_time_ms: validate_key's events have none.
wait_queue_empty('the queue is empty before the second NOT NULL');
q1('SELECT hokusai_auth.usage_queue_stats_reset()');
q1('DELETE FROM hokusai_auth.api_key_usage WHERE response_time_ms IS NULL');
q1('ALTER TABLE hokusai_auth.api_key_usage ALTER COLUMN endpoint DROP NOT NULL,
	ALTER COLUMN response_time_ms SET NOT NULL');
is( q1( "SELECT count(*) FROM generate_series(1, 4) i,
		hokusai_auth.validate_key('$rkey', endpoint => '/no-time/' || i) v WHERE v.valid"),
	'4', 'four validations (no response time)');
ok( $node->poll_query_until('shop',
		'SELECT failed = 4 FROM hokusai_auth.usage_queue_stats'),
	'their events are counted as failed');
is(q1('SELECT count(*) FROM hokusai_auth.api_key_usage WHERE response_time_ms IS NULL'), '0',
	'no row without response time was written');
q1('ALTER TABLE hokusai_auth.api_key_usage ALTER COLUMN response_time_ms DROP NOT NULL');

# A CHECK constraint likewise.
wait_queue_empty('the queue is empty before CHECK');
q1('SELECT hokusai_auth.usage_queue_stats_reset()');
q1("ALTER TABLE hokusai_auth.api_key_usage
	ADD CONSTRAINT no_teapots CHECK (status_code IS DISTINCT FROM 418)");
q1("SELECT hokusai_auth.record_usage('$rkid', '/teapot', 1, 418) FROM generate_series(1, 2)");
ok( $node->poll_query_until('shop',
		'SELECT failed = 2 FROM hokusai_auth.usage_queue_stats'),
	'events the CHECK refuses are counted as failed');
is(q1('SELECT count(*) FROM hokusai_auth.api_key_usage WHERE status_code = 418'), '0',
	'no row the CHECK refuses was written');
q1("SELECT hokusai_auth.record_usage('$rkid', '/coffee', 1, 200)");
ok( $node->poll_query_until('shop',
		"SELECT count(*) = 1 FROM hokusai_auth.api_key_usage WHERE endpoint = '/coffee'"),
	'rows the CHECK accepts are written');
q1('ALTER TABLE hokusai_auth.api_key_usage DROP CONSTRAINT no_teapots');

# Back to the table as created: the bulk path again, NULLs as given.
$log_c = -s $node->logfile;
q1("SELECT hokusai_auth.record_usage('$rkid', NULL, NULL, NULL)");
ok( $node->poll_query_until('shop',
		"SELECT count(*) = 1 FROM hokusai_auth.api_key_usage
		  WHERE api_key_id = '$rkid' AND endpoint IS NULL AND response_time_ms IS NULL"),
	'without the constraints NULLs are written again');
is(worker_pid(), $wpid, 'the same worker runs');

# And through all of B and C the planted code never ran.
nothing_planted_ran('A to C');

$node->stop;
done_testing();
