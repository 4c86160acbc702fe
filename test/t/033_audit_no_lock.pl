# The audit log holds no lock to commit: idle transactions that made key
# operations (and so wrote audit rows) block no other session's key
# operations, not even an emergency revocation; the worker seals committed
# rows in commit order around them, and the chain verifies once they commit.
use strict;
use warnings;

use IPC::Run;
use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $node = HokusaiTest::new_node('audit_idle',
	extra_conf => "hokusai_auth.flush_interval = 200ms\n"
	  . "hokusai_auth.database = 'postgres'\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

my ($uid, $kid, $key) = HokusaiTest::new_key($node, 'ida');
my (undef, $leaked_id, $leaked_key) = HokusaiTest::new_key($node, 'leo');
my (undef, $other_id) = HokusaiTest::new_key($node, 'olga');

# Idle sessions, each inside a transaction that made a key operation.
my @idle;
sub idle_session
{
	my ($sql) = @_;
	my ($in, $out, $err) = ('', '', '');
	my $h = IPC::Run::start(
		[ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1', '-d', $node->connstr('postgres') ],
		'<', \$in, '>', \$out, '2>', \$err);
	$in .= "SET lock_timeout = '3s';\nBEGIN;\n$sql;\nSELECT 'idle now';\n";
	my $t = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
	$t->start;
	$h->pump until $out =~ /idle now/ || $err ne '' || $t->is_expired;
	die "idle session did not start: $err" unless $out =~ /idle now/;
	push @idle, { h => $h, in => \$in, out => \$out };
	return $idle[-1];
}

# Five idle transactions: a create, a rotation, an update, a revocation and
# a rate-limit reset, each with its audit row written and not committed.
my $creator = idle_session("SELECT id FROM hokusai_auth.create_key('$uid', 'idle create')");
my (undef, $k2) = HokusaiTest::new_key($node, 'rita');
my (undef, $k3) = HokusaiTest::new_key($node, 'ulla');
my (undef, $k4) = HokusaiTest::new_key($node, 'vera');
my (undef, $k5) = HokusaiTest::new_key($node, 'willa');
idle_session("SELECT id FROM hokusai_auth.rotate_key('$k2', grace => '1 hour')");
idle_session("SELECT name FROM hokusai_auth.update_key('$k3', name => 'idle update')");
idle_session("SELECT hokusai_auth.revoke_key('$k4', 'idle revoke')");
idle_session("SELECT hokusai_auth.rate_limit_reset('$k5')");
is(q1("SELECT count(*) FROM pg_stat_activity WHERE state = 'idle in transaction'"),
	'5', 'five sessions idle in transaction after key operations');

# Every other session's key operations go through at once: with a lock
# timeout they fail instead of hanging if anything waits for the idle ones.
my $guard = "SET lock_timeout = '3s'; SET statement_timeout = '10s';";
sub op_ok
{
	my ($sql, $what) = @_;
	my ($rc, $out, $err) = $node->psql('postgres', "$guard $sql");
	is($rc, 0, $what) or diag($err);
	return $out;
}
op_ok("SELECT hokusai_auth.revoke_key('$leaked_id', 'leaked')",
	'an emergency revocation does not wait for the idle transactions');
is(HokusaiTest::status($node, $leaked_key), 'revoked', 'the leaked key is refused at once');
op_ok("SELECT id FROM hokusai_auth.create_key('$uid', 'while others idle')",
	'create_key does not wait');
op_ok("SELECT id FROM hokusai_auth.rotate_key('$other_id')", 'rotate_key does not wait');
op_ok("SELECT hokusai_auth.expire_keys()", 'expire_keys does not wait');
op_ok("SELECT hokusai_auth.verify_audit_chain()", 'verify_audit_chain does not wait');
op_ok("SELECT hokusai_auth.seal_audit_log()", 'seal_audit_log does not wait');

# Ten more operations from parallel sessions while the five stay idle.
my $script = $node->basedir . '/create.sql';
PostgreSQL::Test::Utils::append_to_file($script,
	"SET lock_timeout = '3s';\n"
	  . "SELECT id FROM hokusai_auth.create_key('$uid', 'parallel ' || :client_id);\n");
$node->command_ok(
	[ 'pgbench', '-n', '-c', '10', '-j', '2', '-t', '1', '-f', $script, 'postgres' ],
	'ten parallel create_key calls finish while five transactions idle');

# The worker seals what has committed, around the idle transactions' rows,
# which are not visible to it.
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM hokusai_auth.audit_log WHERE seq IS NULL"),
	'the worker seals every committed row while others are still open');
is(q1('SELECT hokusai_auth.verify_audit_chain() IS NULL'), 't', 'the sealed chain verifies');
my $sealed_before = q1('SELECT max(seq) FROM hokusai_auth.audit_log');

# They commit (or roll back) now; their rows join the chain after every
# row that committed before them.
my $i = 0;
for my $s (@idle)
{
	my $end = $i++ == 1 ? 'ROLLBACK' : 'COMMIT';
	${ $s->{in} } .= "$end;\n\\q\n";
	$s->{h}->finish;
}
ok( $node->poll_query_until('postgres',
		"SELECT count(*) = 0 FROM hokusai_auth.audit_log WHERE seq IS NULL"),
	'rows committed later are sealed too');
is( q1("SELECT count(*) FROM hokusai_auth.audit_log WHERE seq > $sealed_before"),
	'4', 'the four committed idle operations were sealed after the rest');
is( q1("SELECT bool_and(seq > $sealed_before) FROM hokusai_auth.audit_log a
		 WHERE a.id < (SELECT max(id) FROM hokusai_auth.audit_log WHERE seq <= $sealed_before)
		   AND a.seq > $sealed_before"),
	't', 'an older id that committed later has a later place in the chain');
is(q1('SELECT hokusai_auth.verify_audit_chain() IS NULL'), 't', 'the chain verifies after they commit');
is( q1("SELECT count(*) FROM hokusai_auth.audit_log WHERE details->>'name' = 'idle create'"),
	'1', 'the idle create is in the log once it committed');

done_testing();
