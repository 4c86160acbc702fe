# Replicas (DESIGN.md section 13): a primary and two streaming hot standbys.
#
#  1. Cache invalidation travels in the WAL: a key revoked, rotated or updated
#     (or its user deactivated) on the primary is refused on a standby whose
#     cache holds it as soon as the standby has replayed the commit.
#     cache_ttl is an hour here, so nothing but the WAL can clear an entry.
#     Both kinds of standby session are tried: a new connection per call
#     (no session of the database was connected when the commit replayed)
#     and a session that stays connected.  Only the changed key is cleared:
#     another cached key keeps being a hit.  add_credits() reaches a
#     standby's balance of the key the same way.
#  2. Usage from both standbys reaches the primary's tables exactly once,
#     also when the primary is stopped for a while (the standbys keep the
#     events queued, count what a full queue drops, and send the rest when
#     it is back), and so does last_used_at.  standby1 ships through its
#     own primary_conninfo, standby2 through hokusai_auth.primary_conninfo
#     as a role that may only run _receive_usage().
#  3. Promotion: standby1 becomes the primary; keys validate, revocations
#     hold, a new revocation takes effect at commit, its worker writes
#     usage locally; rate limits are per server and survive the promotion;
#     credits are per server: a standby's spending is not written back to
#     the primary, and after promotion its balances are written to its own
#     tables, keys it never spent from starting at the old primary's last
#     write-back.
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
	# standby2's queue is small, so that a long outage fills it.
	$s->append_conf('postgresql.conf', "hokusai_auth.usage_queue_size = 1024\n")
	  if $name eq 'standby2';
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

# Targeted, not a storm: a revocation clears that key only.
my (undef, $kid_a, $key_a) = HokusaiTest::new_key($primary, 'frank');
my (undef, $kid_b, $key_b) = HokusaiTest::new_key($primary, 'grace');
catch_up();
warm($key_a, undef, 'key a');
HokusaiTest::status($_, $key_b) for @standbys;
sql($_, 'SELECT hokusai_auth.cache_stats_reset()') for @standbys;
sql($primary, "SELECT hokusai_auth.revoke_key('$kid_a')");
catch_up();
is(on_standbys($key_a), 'revoked revoked', 'key a revoked on both standbys');
is(on_standbys($key_b), 'ok ok', 'key b still validates');
is(join(' ', map { sql($_, 'SELECT bcrypt_verifications FROM hokusai_auth.cache_stats') } @standbys),
	'1 1', 'one bcrypt on each standby (key a refilled as revoked), none for key b: only key a was cleared');
cmp_ok(sql($s1, 'SELECT invalidations_applied FROM hokusai_auth.replica_stats'), '>=', 1,
	'replica_stats counts the invalidations read from the WAL');

# disable_key() and enable_key() change disabled_at, which the invalidation
# trigger watches: they reach the standbys' caches the same way.
warm($key_b, undef, 'key b');
sql($primary, "SELECT hokusai_auth.disable_key('$kid_b')");
catch_up();
is(on_standbys($key_b), 'disabled disabled', 'disabled on the primary: refused on both standbys right after replay');
sql($primary, "SELECT hokusai_auth.enable_key('$kid_b')");
catch_up();
is(on_standbys($key_b), 'ok ok', 'enabled again: admitted on both standbys right after replay');

# add_credits() reaches the standbys: it registers the balance's key in the
# invalidation log, and a balance a standby keeps (spent there, never
# written back) takes in what the primary's row gained or lost, on top of
# what the standby spent.  A change of the key that leaves its credits alone
# gives nothing back.
my (undef, $kid_m, $key_m) = HokusaiTest::new_key($primary, 'mia',
	args => 'burst_limit => 0, credits => 3');
catch_up();
sub spend_on_standbys
{
	my ($cost) = @_;
	return join(', ', map { sql($_, "SELECT status || ' ' || credits_remaining"
		  . " FROM hokusai_auth.validate_key('$key_m', cost => $cost)") } @standbys);
}
is(spend_on_standbys(3), 'ok 0, ok 0', 'each standby spends the 3 credits of its own balance');
is(spend_on_standbys(1), 'credits_exhausted 0, credits_exhausted 0', '... and then refuses');
sql($primary, "SELECT 1 FROM hokusai_auth.update_key('$kid_m', rate_limit_per_hour => 500)");
catch_up();
is(spend_on_standbys(1), 'credits_exhausted 0, credits_exhausted 0',
	'an update of the key on the primary gives the standbys no credits back');
is(sql($primary, "SELECT hokusai_auth.add_credits('$kid_m', 5)"), '8',
	'add_credits(5) on the primary (which spent nothing): 8 there');
catch_up();
is(spend_on_standbys(1), 'ok 4, ok 4',
	'after replay each standby has the 5 added to what it had left, and spends from it');
sql($primary, "SELECT hokusai_auth.add_credits('$kid_m', -100)");
catch_up();
is(spend_on_standbys(1), 'credits_exhausted 0, credits_exhausted 0',
	'a negative add_credits() on the primary takes the standbys\' balances to 0');

# The log pruned before the standbys read a revocation's row: the prune's
# row names the transaction they missed, so they clear the database.
my (undef, $kid_c, $key_c) = HokusaiTest::new_key($primary, 'lena');
catch_up();
warm($key_c, undef, 'key c');
my @cleared = map { sql($_, 'SELECT invalidation_clear_all FROM hokusai_auth.replica_stats') } @standbys;
sql($primary, "SELECT hokusai_auth.revoke_key('$kid_c')");
sql($primary, "SELECT hokusai_auth._prune_replica_state('0 seconds')");
is(sql($primary, "SELECT count(*) FROM hokusai_auth.cache_invalidations WHERE kind <> 'p'"), '0',
	'the primary pruned every row of the log');
catch_up();
is(on_standbys($key_c), 'revoked revoked',
	'a revocation whose log row was pruned before the standbys read it is refused all the same');
is(join(' ', map { sql($standbys[$_], 'SELECT invalidation_clear_all FROM hokusai_auth.replica_stats') - $cleared[$_] } 0 .. 1),
	'1 1', 'each standby cleared that database once');

# ---------------------------------------------------------------------------
# 2. Usage from both standbys, exactly once, across a primary outage.
# ---------------------------------------------------------------------------
sql($primary, "CREATE ROLE shipper LOGIN;
	GRANT USAGE ON SCHEMA hokusai_auth TO shipper;
	GRANT EXECUTE ON FUNCTION hokusai_auth._receive_usage(uuid, bigint, bigint[], uuid[],
		text[], bigint[], integer[], integer[], uuid[], bigint[]) TO shipper");
my $connstr = 'port=' . $primary->port . ' host=' . $primary->host;
sql($s2, "ALTER SYSTEM SET hokusai_auth.primary_conninfo = '$connstr user=shipper'");
$s2->reload;

my (undef, $kid_u, $key_u) = HokusaiTest::new_key($primary, 'heidi',
	args => 'rate_limit_per_hour => 1000000');
my (undef, $kid_t, $key_t) = HokusaiTest::new_key($primary, 'ivan');
catch_up();

# n validations of the key with an endpoint, on one standby.
sub use_key
{
	my ($node, $n, $endpoint) = @_;
	# i in an argument: a function scan without one would be run once.
	return sql($node, "SELECT count(*) FROM generate_series(1, $n) i,
		LATERAL hokusai_auth.validate_key('$key_u', endpoint => '$endpoint' || left(i::text, 0)) v
		WHERE v.valid");
}
sub usage_counts
{
	return sql($primary, "SELECT coalesce(string_agg(endpoint || '=' || n, ' ' ORDER BY endpoint), '')
		FROM (SELECT endpoint, count(*) n FROM hokusai_auth.api_key_usage
			   WHERE api_key_id = '$kid_u' GROUP BY endpoint) c");
}

is(use_key($s1, 30, '/s1'), 30, 'standby1 admits 30 calls');
is(use_key($s2, 20, '/s2'), 20, 'standby2 admits 20 calls');
is(HokusaiTest::status($s2, $key_t), 'ok', 'a key used on standby2 only, without an endpoint');
ok($primary->poll_query_until('postgres', "SELECT count(*) = 50 FROM hokusai_auth.api_key_usage WHERE api_key_id = '$kid_u'"),
	'the 50 events reach the primary');
is(usage_counts(), '/s1=30 /s2=20', 'each standby\'s events, once');
ok($primary->poll_query_until('postgres', "SELECT last_used_at IS NOT NULL FROM hokusai_auth.api_keys WHERE id = '$kid_t'"),
	'last_used_at of a key used only on a standby is set on the primary');
for my $s (@standbys)
{
	ok($s->poll_query_until('postgres', 'SELECT queued = 0 FROM hokusai_auth.usage_queue_stats'),
		$s->name . ': queue empty');
	sql($s, 'SELECT hokusai_auth.usage_queue_stats_reset()');
}

$primary->stop('fast');
is(use_key($s1, 40, '/s1'), 40, 'primary stopped: standby1 still admits 40 calls');
is(use_key($s2, 1100, '/s2'), 1100, 'primary stopped: standby2 admits 1100 calls');
ok($s1->poll_query_until('postgres',
		'SELECT ship_failures > 0 AND NOT primary_reachable FROM hokusai_auth.replica_stats'),
	'standby1 counts failures to reach the primary');
is(sql($s1, 'SELECT queued || \' \' || dropped FROM hokusai_auth.usage_queue_stats'), '40 0',
	'standby1 keeps its 40 events queued');
is(sql($s2, 'SELECT queued || \' \' || dropped FROM hokusai_auth.usage_queue_stats'), '1024 76',
	'standby2 keeps a full queue of 1024 and counts the 76 it dropped');
sleep(2);
$primary->start;
ok($primary->poll_query_until('postgres',
		"SELECT count(*) = 50 + 40 + 1024 FROM hokusai_auth.api_key_usage WHERE api_key_id = '$kid_u'"),
	'after the outage the queued events arrive');
for my $s (@standbys)
{
	ok($s->poll_query_until('postgres', 'SELECT queued = 0 AND primary_reachable FROM hokusai_auth.usage_queue_stats, hokusai_auth.replica_stats'),
		$s->name . ': queue drained');
}
sleep(1);
is(usage_counts(), '/s1=70 /s2=1044', 'exactly once: 70 from standby1, 20 + 1024 from standby2');

# The landing itself: the same call twice takes its events once.  (The
# events are of now: an event of a day without a usage partition, such as
# 2000-01-01, time 0, would be counted as late and written nowhere.)
my $now_us = sql($primary, "SELECT ((extract(epoch FROM now()) - 946684800) * 1000000)::bigint");
my $land = "SELECT hokusai_auth._receive_usage('00000000-0000-4000-8000-000000000001', 3,
	'{0,1,2}', '{$kid_u,$kid_u,$kid_u}', '{/direct,/direct,/direct}', '{$now_us,$now_us,$now_us}',
	'{1,2,3}', '{200,200,500}', NULL, NULL)";
is(sql($primary, $land), '3', 'a first call is taken up to position 3');
is(sql($primary, $land), '3', 'the same call again answers the same position');
ok($primary->poll_query_until('postgres',
		"SELECT count(*) = 3 FROM hokusai_auth.api_key_usage WHERE endpoint = '/direct'"),
	'its three events are written');
sleep(1);
is(sql($primary, "SELECT count(*) FROM hokusai_auth.api_key_usage WHERE endpoint = '/direct'"), '3',
	'once');
cmp_ok(sql($primary, 'SELECT received_duplicates FROM hokusai_auth.replica_stats'), '>=', 3,
	'the repeat is counted as duplicates');
is($primary->psql('postgres', 'SELECT 1', extra_params => [ '-U', 'shipper' ]), 0,
	'the shipping role can connect');
my ($ret, $out, $err) = $primary->psql('postgres', 'SELECT count(*) FROM hokusai_auth.api_keys',
	extra_params => [ '-U', 'shipper' ]);
like($err, qr/permission denied/, 'but it cannot read the keys');

# ---------------------------------------------------------------------------
# 3. Promotion.
# ---------------------------------------------------------------------------
my (undef, $kid_p, $key_p) = HokusaiTest::new_key($primary, 'judy', args => 'rate_limit_per_hour => 5');
my (undef, $kid_q, $key_q) = HokusaiTest::new_key($primary, 'karl');
catch_up();
sub admitted
{
	my ($node, $n) = @_;
	return sql($node, "SELECT string_agg(v.status, ',' ORDER BY i) FROM generate_series(1, $n) i,
		LATERAL hokusai_auth.validate_key('$key_p' || left(i::text, 0)) v");
}
is(admitted($primary, 3), 'ok,ok,ok', 'rate limit 5: 3 calls on the primary');
is(admitted($s1, 6), 'ok,ok,ok,ok,ok,rate_limited',
	'standby1 counts its own calls: 5 admitted there, whatever the primary admitted');
warm($key_q, undef, 'the key to revoke after promotion');

# Credits are per server too (docs/scaling.md, "Failover"): a standby
# spends from its own balance and never writes it back to the primary; a
# write-back of the primary's own spending (no add_credits()) leaves a
# standby's balance alone.
my (undef, $kid_n, $key_n) = HokusaiTest::new_key($primary, 'nina',
	args => 'burst_limit => 0, credits => 10');
my (undef, $kid_o, $key_o) = HokusaiTest::new_key($primary, 'olaf',
	args => 'burst_limit => 0, credits => 10');
catch_up();
sub spend
{
	my ($node, $k, $cost) = @_;
	return sql($node, "SELECT status || ' ' || credits_remaining"
		  . " FROM hokusai_auth.validate_key('$k', cost => $cost)");
}
# "n o": the rows' credits_remaining of keys n and o.
sub balances_row
{
	my ($node) = @_;
	return sql($node, "SELECT string_agg(credits_remaining::text, ' ' ORDER BY id = '$kid_o')"
		  . " FROM hokusai_auth.api_keys WHERE id IN ('$kid_n', '$kid_o')");
}
is(spend($s1, $key_n, 3), 'ok 7', 'standby1 spends 3 of key n\'s 10 credits');
is(spend($primary, $key_n, 2), 'ok 8', 'the primary spends 2 of key n from its own 10');
is(spend($primary, $key_o, 4), 'ok 6', 'the primary spends 4 of key o, which standby1 never uses');
ok($primary->poll_query_until('postgres', "SELECT '8 6' = (SELECT string_agg(credits_remaining::text, ' '"
		  . " ORDER BY id = '$kid_o') FROM hokusai_auth.api_keys WHERE id IN ('$kid_n', '$kid_o'))"),
	'the primary writes its balances back: 8 and 6');
catch_up();
sleep(1);
is(balances_row($primary), '8 6', 'standby1\'s spending is not written back to the primary (key n: 8, not 5)');
is(balances_row($s1), '8 6', 'standby1 has replayed those rows');
is(sql($s1, "SELECT credits_remaining FROM hokusai_auth.rate_limit_status('$kid_n')"), '7',
	'standby1 keeps its own balance of key n (7): the primary\'s write-back is not taken in');

$s1->promote;
$s1->poll_query_until('postgres', 'SELECT NOT pg_is_in_recovery()');
ok($s1->poll_query_until('postgres', "SELECT credits_remaining = 7 FROM hokusai_auth.api_keys WHERE id = '$kid_n'"),
	'promoted: its worker writes the balance it kept as a standby (key n: 7) to its own table');
is(spend($s1, $key_n, 1), 'ok 6', 'promoted: key n spends from that balance');
is(spend($s1, $key_o, 1), 'ok 5',
	'promoted: key o, never used there, starts from the old primary\'s last write-back it replayed (6)');
is(spend($primary, $key_n, 1), 'ok 7', 'the old primary, still running, keeps its own balance of key n (8)');
is(HokusaiTest::status($s1, $new_key), 'ok', 'promoted: a key validates');
is(HokusaiTest::status($s1, $key), 'revoked', 'promoted: a key revoked on the old primary stays revoked');
is(HokusaiTest::status($s1, $key_q), 'ok', 'promoted: the cached key still validates');
sql($s1, "SELECT hokusai_auth.revoke_key('$kid_q')");
is(HokusaiTest::status($s1, $key_q), 'revoked', 'promoted: a revocation there takes effect at commit');
is(admitted($s1, 1), 'rate_limited', 'promoted: the rate limit counted while a standby still holds');
is(admitted($primary, 3), 'ok,ok,rate_limited', 'the old primary kept its own count (3 + 2)');
is(use_key($s1, 7, '/promoted'), 7, 'promoted: 7 calls with an endpoint');
ok($s1->poll_query_until('postgres',
		"SELECT count(*) = 7 FROM hokusai_auth.api_key_usage WHERE endpoint = '/promoted'"),
	'promoted: its worker writes usage to its own tables');
is(sql($s1, 'SELECT in_recovery FROM hokusai_auth.replica_stats'), 'f', 'replica_stats: not in recovery');

$_->stop for ($s2, $s1, $primary);
done_testing();
