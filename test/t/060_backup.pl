# Backups keep everything: pg_dump in every format with pg_restore (or
# psql for plain SQL) into a new database, and pg_dumpall into a new
# cluster.  Every table of the extension comes back row for row; keys of
# every status validate as they did; the audit chain verifies and extends;
# usage, rollups and the audit sequence go on where they were.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use HokusaiTest;

my $node = HokusaiTest::new_node('backup',
	extra_conf => "hokusai_auth.flush_interval = 200ms\n"
	  . "hokusai_auth.database = 'postgres'\n");
sub q1 { my ($sql, $db) = @_; return $node->safe_psql($db // 'postgres', $sql); }

###########################################################################
# Something of everything
###########################################################################

my ($uid, $live_id, $live_key) = HokusaiTest::new_key($node, 'bea',
	args => "rate_limit_per_hour => 100000, allowed_ips => '{127.0.0.0/8,::1/128}',"
	  . " metadata => '{\"team\": \"infra\"}'");
my $row = q1("SELECT id || ' ' || key FROM hokusai_auth.create_key('$uid', 'test env',"
	  . " environment => 'test', burst_limit => 50)");
my ($test_id, $test_key) = split / /, $row;
$row = q1("SELECT id || ' ' || key FROM hokusai_auth.create_key('$uid', 'to revoke')");
my ($revoked_id, $revoked_key) = split / /, $row;
q1("SELECT hokusai_auth.revoke_key('$revoked_id', 'leaked')");
$row = q1("SELECT id || ' ' || key FROM hokusai_auth.create_key('$uid', 'short-lived',"
	  . " expires_at => clock_timestamp() + interval '1 second')");
my ($expired_id, $expired_key) = split / /, $row;
$row = q1("SELECT id || ' ' || key FROM hokusai_auth.create_key('$uid', 'rotated')");
my ($old_id, $old_key) = split / /, $row;
$row = q1("SELECT id || ' ' || key FROM hokusai_auth.rotate_key('$old_id', grace => '1 day')");
my ($new_id, $new_key) = split / /, $row;
q1("SELECT name FROM hokusai_auth.update_key('$new_id', name => 'rotated, renamed')");
my ($uid2, $gone_id, $gone_key) = HokusaiTest::new_key($node, 'cyd');
q1("UPDATE hokusai_auth.users SET is_active = false WHERE id = '$uid2'");

# Events are written with each key operation; a webhook relay's cursor.
my $hook = 'https://hooks.example.com/in/T0K3N';
q1("SELECT hokusai_auth.set_webhook_cursor('$hook', 2)");

# Usage: events through the worker now, and rows of earlier hours rolled up.
for my $i (1 .. 5)
{
	q1("SELECT status FROM hokusai_auth.validate_key('$live_key', '127.0.0.1', '/v1/items')");
}
q1("SELECT hokusai_auth.record_usage('$live_id', '/v1/orders', 42, 201)");
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 6 FROM hokusai_auth.api_key_usage'), 'usage flushed by the worker');
q1("SELECT hokusai_auth._usage_make_partition(p, now() - interval '3 hours')
	  FROM unnest('{hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely,
					hokusai_auth.api_key_usage_hourly}'::regclass[]) p");
q1("SELECT hokusai_auth._usage_flush(array_agg('$live_id'::uuid), array_agg('/v1/old'::text),
		array_agg(now() - interval '3 hours' - i * interval '1 second'), array_agg(i),
		array_agg(200 + (i % 2) * 300))
	  FROM generate_series(1, 40) i");
cmp_ok(q1('SELECT count(*) FROM hokusai_auth.usage_partitions'), '>=', 7,
	'usage is in partitions (raw, minutes, hours)');
ok($node->poll_query_until('postgres',
		"SELECT NOT is_active FROM hokusai_auth.api_keys WHERE id = '$expired_id'"),
	'the short-lived key expired (the worker)');
# Most audit rows sealed by the worker; one more left unsealed on purpose.
ok($node->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM hokusai_auth.audit_log WHERE seq IS NULL'), 'the worker sealed the audit log');
q1("SELECT name FROM hokusai_auth.update_key('$live_id', name => 'renamed before the dump')");
$node->safe_psql('postgres', 'ALTER SYSTEM SET hokusai_auth.flush_interval = 600000');
$node->reload;
q1('SELECT pg_sleep(0.5)');
q1("SELECT name FROM hokusai_auth.update_key('$test_id', name => 'unsealed at dump time')");
is(q1('SELECT count(*) > 0 FROM hokusai_auth.audit_log WHERE seq IS NULL'), 't',
	'an audit row is unsealed at dump time');

# Every row of every table of the extension, as text, and the sequence;
# but the two tables of replication state, which describe this server and
# its standbys only (transaction ids, standbys' queue positions) and are
# left out of dumps on purpose (docs/backup.md).
my $server_local = "'hokusai_auth.cache_invalidations', 'hokusai_auth.usage_shipments'";
my @tables = split /\n/, q1("SELECT c.oid::regclass FROM pg_depend d JOIN pg_class c ON c.oid = d.objid
	 WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'hokusai_auth')
	   AND d.classid = 'pg_class'::regclass AND c.relkind IN ('r', 'p')
	   AND c.oid::regclass::text NOT IN ($server_local) ORDER BY 1");
is(q1("SELECT count(*) FROM pg_extension e, unnest(e.extconfig) t
	 WHERE e.extname = 'hokusai_auth' AND t::regclass::text IN ($server_local)"), '0',
	'the replication state tables are not dumped');
cmp_ok(scalar(@tables), '>=', 8, 'the extension has its tables');
# The usage partitions are not members of the extension: each is compared
# on its own too (a restore must bring back every one, rows and all).
my @partitions = split /\n/, q1("SELECT partition FROM hokusai_auth.usage_partitions
	 WHERE partition::text LIKE 'hokusai_auth.%' ORDER BY 1");
is(q1("SELECT count(*) FROM pg_depend d JOIN hokusai_auth.usage_partitions p ON d.objid = p.partition
		WHERE d.deptype = 'e'"), '0', 'no usage partition is a member of the extension');
push @tables, @partitions;
sub fingerprint
{
	my ($n, $db) = @_;
	my %fp;
	for my $t (@tables)
	{
		$fp{$t} = $n->safe_psql($db,
			"SELECT count(*) || ' ' || coalesce(md5(string_agg(t::text, '|' ORDER BY t::text)), '-') FROM $t t");
	}
	$fp{sequence} = $n->safe_psql($db, 'SELECT last_value FROM hokusai_auth.audit_log_id_seq');
	$fp{event_sequence} = $n->safe_psql($db, 'SELECT last_value FROM hokusai_auth.events_id_seq');
	return \%fp;
}
my $before = fingerprint($node, 'postgres');
for my $t (@tables)
{
	next if grep { $_ eq $t } @partitions;
	unlike($before->{$t}, qr/^0 /, "$t has rows before the dump");
}
cmp_ok(scalar(grep { $before->{$_} !~ /^0 / } @partitions), '>=', 3,
	'usage partitions with rows (raw, minutes, hours) before the dump');
my $partition_bounds = q1("SELECT string_agg(partition::text || ' ' || from_time || ' ' || until_time, ', '
	ORDER BY partition::text) FROM hokusai_auth.usage_partitions");
my $summary_sql = "SELECT requests || ' ' || errors FROM hokusai_auth.usage_summary('$live_id',"
  . " now() - interval '1 day', now() + interval '1 hour')";
my $summary = q1($summary_sql);
is($summary, '46 20', 'usage summary before the dump');

###########################################################################
# What a restored database must show
###########################################################################

sub check_restored
{
	my ($n, $db, $how) = @_;
	my $after = fingerprint($n, $db);
	for my $t (@tables, 'sequence', 'event_sequence')
	{
		is($after->{$t}, $before->{$t}, "$how: $t restored row for row");
	}
	is($n->safe_psql($db, "SELECT string_agg(partition::text || ' ' || from_time || ' ' || until_time, ', '
			ORDER BY partition::text) FROM hokusai_auth.usage_partitions"),
		$partition_bounds, "$how: every usage partition restored, attached with its range");
	my $st = sub {
		my ($key, $ip) = @_;
		return $n->safe_psql($db,
			"SELECT status FROM hokusai_auth.validate_key('$key', " . ($ip ? "'$ip'" : 'NULL') . ')');
	};
	is($st->($live_key, '127.0.0.1'), 'ok', "$how: a live key validates");
	is($st->($live_key, '10.0.0.1'), 'ip_denied', "$how: its allow-list holds");
	is($st->($test_key), 'ok', "$how: a test key validates");
	is($st->($revoked_key), 'revoked', "$how: a revoked key stays revoked");
	is($st->($expired_key), 'expired', "$how: an expired key stays expired");
	is($st->($old_key), 'ok', "$how: a rotated key works through its grace");
	is($st->($new_key), 'ok', "$how: its successor works");
	is($st->($gone_key), 'revoked', "$how: a deactivated user's key stays refused");
	is( $n->safe_psql($db, "SELECT rotated_from FROM hokusai_auth.api_keys WHERE id = '$new_id'"),
		$old_id, "$how: the rotation link is kept");
	is($n->safe_psql($db, $summary_sql), $summary, "$how: usage summary as before");
	is($n->safe_psql($db, 'SELECT hokusai_auth.verify_audit_chain() IS NULL'), 't',
		"$how: the audit chain verifies");
	# It extends: a new operation, sealed after the restored rows.
	$n->safe_psql($db, "SELECT id FROM hokusai_auth.create_key('$uid', 'after the restore')");
	cmp_ok($n->safe_psql($db, 'SELECT hokusai_auth.seal_audit_log()'), '>=', 2,
		"$how: the unsealed rows, restored and new, are sealed");
	is($n->safe_psql($db, 'SELECT hokusai_auth.verify_audit_chain() IS NULL'), 't',
		"$how: the chain verifies after it grew");
	is( $n->safe_psql($db,
			"SELECT a.prev_hash = p.row_hash AND a.id > $before->{sequence}
			   FROM hokusai_auth.audit_log a, hokusai_auth.audit_log p
			  WHERE a.details->>'name' = 'after the restore'
			    AND p.seq = (SELECT max(seq) FROM hokusai_auth.audit_log WHERE seq < a.seq)"),
		't', "$how: the new row links to the restored chain and takes a new id");
	# Events go on from the restored sequence, readable in order; the
	# relay's cursor is there.
	is( $n->safe_psql($db,
			"SELECT min(e.id) > $before->{event_sequence} AND bool_and(e.kind = 'key.created')
			   FROM hokusai_auth.events_after($before->{event_sequence}) e"),
		't', "$how: the new key's event takes a new id, after the restored ones");
	is($n->safe_psql($db, "SELECT hokusai_auth.webhook_cursor('$hook')"), '2',
		"$how: the webhook cursor is restored");
	# The worker-free restored database still takes usage through SQL.
	$n->safe_psql($db, "SELECT hokusai_auth._usage_flush(ARRAY['$live_id']::uuid[],
		ARRAY['/after']::text[], ARRAY[now()]::timestamptz[], ARRAY[1], ARRAY[200])");
	is($n->safe_psql($db, "SELECT count(*) FROM hokusai_auth.api_key_usage WHERE endpoint = '/after'"),
		'1', "$how: usage is written after the restore");
}

my $dir = $node->basedir;
my $pgport = $node->port;
my $host = $node->host;

# pg_dump, each archive format, pg_restore into a new database.
for my $fmt ([ 'c', 'custom' ], [ 'd', 'directory' ], [ 't', 'tar' ])
{
	my ($f, $name) = @$fmt;
	my $db = "restored_$name";
	my $file = "$dir/dump.$f";
	$node->command_ok([ 'pg_dump', '-h', $host, '-p', $pgport, "-F$f", '-f', $file, 'postgres' ],
		"pg_dump -F$f");
	$node->safe_psql('postgres', "CREATE DATABASE $db");
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'pg_restore', '-h', $host, '-p', $pgport, '-d', $db, '--exit-on-error', $file ],
		'>', \$out, '2>', \$err);
	ok($ok, "pg_restore of the $name archive exits 0") or diag($err);
	is($err, '', "pg_restore of the $name archive reports nothing") or diag($err);
	check_restored($node, $db, "pg_dump -F$f");
}

# Plain SQL through psql, stopping at the first error.
$node->command_ok([ 'pg_dump', '-h', $host, '-p', $pgport, '-Fp', '-f', "$dir/dump.sql", 'postgres' ],
	'pg_dump -Fp');
$node->safe_psql('postgres', 'CREATE DATABASE restored_plain');
{
	my ($out, $err) = ('', '');
	my $ok = IPC::Run::run([ 'psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', $host, '-p', $pgport,
			'-d', 'restored_plain', '-f', "$dir/dump.sql" ], '>', \$out, '2>', \$err);
	ok($ok, 'the plain dump loads with ON_ERROR_STOP') or diag($err);
	unlike($err, qr/ERROR/, 'no error loading the plain dump') or diag($err);
}
check_restored($node, 'restored_plain', 'pg_dump -Fp');

# pg_dumpall into a new cluster, which needs nothing but the preload.
$node->command_ok([ 'pg_dumpall', '-h', $host, '-p', $pgport, '-f', "$dir/all.sql" ], 'pg_dumpall');
# Its worker is kept out of the restored database at first (it serves
# template1, which has no extension) so that what was restored is compared
# as it was restored.
my $other = HokusaiTest::new_node('restored', create => 0,
	extra_conf => "hokusai_auth.database = 'template1'\n");
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'psql', '-X', '-q', '-h', $other->host, '-p', $other->port,
			'-d', 'postgres', '-f', "$dir/all.sql" ], '>', \$out, '2>', \$err);
	my @errors = grep { /ERROR/ && !/role "\w+" already exists/ } split /\n/, $err;
	is(scalar(@errors), 0, 'pg_dumpall loads into a new cluster (no error but the existing bootstrap role)')
	  or diag($err);
}
check_restored($other, 'postgres', 'pg_dumpall');
# The new cluster's worker seals there as on the old one.
$other->append_conf('postgresql.conf',
	"hokusai_auth.database = 'postgres'\nhokusai_auth.flush_interval = 200ms\n");
$other->restart;
$other->safe_psql('postgres', "SELECT hokusai_auth.revoke_key('$live_id', 'after moving')");
ok($other->poll_query_until('postgres',
		'SELECT count(*) = 0 FROM hokusai_auth.audit_log WHERE seq IS NULL'),
	"the new cluster's worker seals the audit log");
is($other->safe_psql('postgres', 'SELECT hokusai_auth.verify_audit_chain() IS NULL'), 't',
	'the chain verifies on the new cluster');

done_testing();
