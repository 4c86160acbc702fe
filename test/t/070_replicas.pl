# Replicas (DESIGN.md section 13): a primary and two streaming hot standbys.
#
#  1. Cache invalidation travels in the WAL: a key revoked, rotated or updated
#     (or its user deactivated) on the primary is refused on a standby whose
#     cache holds it as soon as the standby has replayed the commit.
#     cache_ttl is an hour here, so nothing but the WAL can clear an entry.
#     Both kinds of standby session are tried: a new connection per call
#     (no session of the database was connected when the commit replayed)
#     and a session that stays connected.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $primary = HokusaiTest::new_node('primary',
	init => { allows_streaming => 1 },
	extra_conf => "hokusai_auth.cache_ttl = 3600\n"
	  . "hokusai_auth.flush_interval = 200\n");
$primary->backup('base');

my @standbys;
for my $name ('standby1', 'standby2')
{
	my $s = PostgreSQL::Test::Cluster->new($name);
	$s->init_from_backup($primary, 'base', has_streaming => 1);
	$s->start;
	push @standbys, $s;
}
my ($s1, $s2) = @standbys;

sub catch_up
{
	$primary->wait_for_catchup($_, 'replay', $primary->lsn('insert')) for @standbys;
}

sub sql
{
	my ($node, $sql) = @_;
	return $node->safe_psql('postgres', $sql);
}

# Statuses of a key on each standby, "s1 s2".
sub on_standbys
{
	my ($key, $ip) = @_;
	return join(' ', map { HokusaiTest::status($_, $key, $ip) } @standbys);
}

# Bring a key into both standbys' caches: two validations, the second a hit.
sub warm
{
	my ($key, $ip, $what) = @_;
	for my $s (@standbys)
	{
		sql($s, 'SELECT hokusai_auth.cache_stats_reset()');
		HokusaiTest::status($s, $key, $ip) for 1 .. 2;
		is(sql($s, 'SELECT hits >= 1 FROM hokusai_auth.cache_stats'), 't',
			$s->name . ": $what is cached");
	}
}

my ($uid, $kid, $key) = HokusaiTest::new_key($primary, 'alice');
my (undef, $kid_rot, $key_rot) = HokusaiTest::new_key($primary, 'bob');
my (undef, $kid_ips, $key_ips) = HokusaiTest::new_key($primary, 'carol');
my ($uid_off, $kid_off, $key_off) = HokusaiTest::new_key($primary, 'dave');
my (undef, $kid_live, $key_live) = HokusaiTest::new_key($primary, 'erin');
catch_up();

is(on_standbys($key), 'ok ok', 'a key created on the primary validates on both standbys');

# ---------------------------------------------------------------------------
# 1. Revocation, rotation, update, user deactivation: refused right after replay.
# ---------------------------------------------------------------------------
warm($key, undef, 'the key');
sql($primary, "SELECT hokusai_auth.revoke_key('$kid')");
catch_up();
is(on_standbys($key), 'revoked revoked',
	'revoked on the primary: refused on both standbys right after replay (no cache_ttl wait)');

warm($key_rot, undef, 'the key to rotate');
my $new_key = sql($primary, "SELECT key FROM hokusai_auth.rotate_key('$kid_rot')");
catch_up();
is(on_standbys($key_rot), 'revoked revoked', 'rotated without grace: the old key is refused on both standbys');
is(on_standbys($new_key), 'ok ok', 'the new key validates on both standbys');

warm($key_ips, '192.0.2.1', 'the key to update');
sql($primary, "SELECT 1 FROM hokusai_auth.update_key('$kid_ips', allowed_ips => '{198.51.100.0/24}')");
catch_up();
is(on_standbys($key_ips, '192.0.2.1'), 'ip_denied ip_denied',
	'allowed_ips updated on the primary: the old network is refused on both standbys');
is(on_standbys($key_ips, '198.51.100.7'), 'ok ok', 'and the new one admitted');

warm($key_off, undef, 'the key of the user to deactivate');
sql($primary, "UPDATE hokusai_auth.users SET is_active = false WHERE id = '$uid_off'");
catch_up();
is(on_standbys($key_off), 'revoked revoked',
	'user deactivated on the primary: the key is refused on both standbys');

# A session that stays connected, with the key in the cache, in the middle
# of a transaction: the next validation after the replay refuses the key.
my $bg = $s1->background_psql('postgres', on_error_stop => 1);
$bg->query_safe('BEGIN');
is($bg->query_safe("SELECT status FROM hokusai_auth.validate_key('$key_live')"), 'ok',
	'a connected standby session validates the key');
is($bg->query_safe("SELECT status FROM hokusai_auth.validate_key('$key_live')"), 'ok',
	'again (from the cache)');
sql($primary, "SELECT hokusai_auth.revoke_key('$kid_live')");
catch_up();
is($bg->query_safe("SELECT status FROM hokusai_auth.validate_key('$key_live')"), 'revoked',
	'the same session, inside its open transaction, refuses it right after replay');
$bg->query_safe('COMMIT');
$bg->quit;

done_testing();
