# The rate limiter's sweep (docs/ratelimit.md, "Where the state lives"): a
# key's or user's state whose counts have all left both windows (an hour
# and a minute after its last call) is freed and its slot reused; a state
# that still counts is kept.  The server's clock is moved forward with
# libfaketime (Debian's libfaketime, preloaded into the server only), since
# the sweep needs an hour of idleness.  A freed slot is taken by another
# key while the cache entries of the swept keys still name it: each call
# must then count on a state of its own (the slot's owner is checked), as
# the ratelimit regression suite checks for rate_limit_reset().
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my ($faketime) = glob('/usr/lib/*/faketime/libfaketime.so.1');
die 'libfaketime is not installed (test/lib/debian-packages.txt lists it)'
  unless defined $faketime && -e $faketime;

# The offset of the server's clock, read by libfaketime on every call.
my $clock = "$PostgreSQL::Test::Utils::tmp_check/limiter_sweep_clock";
sub set_clock
{
	my ($seconds) = @_;
	open my $fh, '>', "$clock.new" or die "$clock.new: $!";
	print $fh "+$seconds\n";
	close $fh;
	rename "$clock.new", $clock or die "$clock: $!";
}
set_clock(0);

my $node;
{
	local $ENV{LD_PRELOAD} = $faketime;
	local $ENV{FAKETIME_TIMESTAMP_FILE} = $clock;
	local $ENV{FAKETIME_NO_CACHE} = '1';
	# Latches and timeouts keep the real monotonic clock.
	local $ENV{FAKETIME_DONT_FAKE_MONOTONIC} = '1';
	local $ENV{DONT_FAKE_MONOTONIC} = '1';
	# Cache entries outlive the jumps, so that the swept keys' entries
	# still name their old slots.
	$node = HokusaiTest::new_node('limiter_sweep',
		extra_conf => "hokusai_auth.cache_ttl = 86400\n");
}

sub q1 { return $node->safe_psql('postgres', $_[0]); }

# The server's clock, less ours, in seconds.
sub skew { return q1('SELECT round(extract(epoch FROM now()) - ' . time() . ')'); }
cmp_ok(abs(skew()), '<=', 5, 'the server starts on the real time');

# Keys (1,000 an hour, no burst limit), made without audit rows, their
# plaintext in a table of this throwaway cluster.
q1(q{
CREATE TABLE test_keys (name text PRIMARY KEY, id uuid NOT NULL, key text NOT NULL);
CREATE FUNCTION make_keys(prefix text, n integer, owner uuid) RETURNS void
LANGUAGE sql AS $$
	WITH g AS MATERIALIZED (
		SELECT i, hokusai_auth._new_key('live') AS k FROM generate_series(1, n) i),
	ins AS (
		INSERT INTO hokusai_auth.api_keys
			(key_hash, key_prefix, user_id, name, rate_limit_per_hour, burst_limit)
		SELECT (k).key_hash, (k).key_prefix, owner, prefix || i, 1000, 0 FROM g
		RETURNING id, name)
	INSERT INTO test_keys SELECT ins.name, ins.id, (g.k).key FROM g JOIN ins ON ins.name = prefix || g.i
$$;
SELECT make_keys('a', 20, hokusai_auth.create_user('swept'));
});
# A user with limits of its own and one key: its state is swept too.
q1(q{
SELECT hokusai_auth.create_user('limited') AS uid \gset
SELECT hokusai_auth.set_user_limits(:'uid', 5000, 100);
SELECT make_keys('u', 1, :'uid');
});

# The helpers take a regular expression that the names of the keys they
# look at match whole: validate() says how many of those keys validate
# 'ok', counts() the distinct requests_last_hour among them, tracked() how
# many the limiter tracks.
sub validate
{
	my ($pattern) = @_;
	return q1("SELECT count(*) FILTER (WHERE v.status = 'ok') FROM test_keys t,
		LATERAL hokusai_auth.validate_key(t.key) v WHERE t.name ~ '^($pattern)\$'");
}
sub counts
{
	my ($pattern) = @_;
	return q1("SELECT string_agg(DISTINCT coalesce(s.requests_last_hour, 0)::text, ' ')
		FROM test_keys t, LATERAL hokusai_auth.rate_limit_status(t.id) s
		WHERE t.name ~ '^($pattern)\$'");
}
sub tracked
{
	my ($pattern) = @_;
	return q1("SELECT count(*) FILTER (WHERE s.tracked) FROM test_keys t,
		LATERAL hokusai_auth.rate_limit_status(t.id) s WHERE t.name ~ '^($pattern)\$'");
}
sub stats
{
	return q1('SELECT entries || \' \' || created || \' \' || reclaimed
		FROM hokusai_auth.rate_limit_stats()');
}

# 1. Twenty keys and the limited user's key, twice each: 22 states, the
# user's among them (rate_limit_stats().entries counts the keys';
# created and reclaimed count both kinds).
is(validate('a\d+'), 20, 'the 20 keys validate');
is(validate('u1'), 1, 'the limited user\'s key validates');
# Their second calls are cache hits, which remember the slots in the entries.
is(validate('a\d+|u1'), 21, 'and all validate again');
is(q1(q{SELECT hits || ' ' || misses FROM hokusai_auth.cache_stats}), '21 21',
	'the second calls were cache hits');
is(stats(), '21 22 0', '22 states: 21 keys and the user');
is(counts('a\d+'), '2', 'each key counted its calls');

# 2. Forty minutes later the sweep runs (a minute has passed since the
# last) and keeps them all: their calls are still in the hour.
set_clock(2400);
cmp_ok(abs(skew() - 2400), '<=', 5, 'the server\'s clock moved on by forty minutes');
q1(q{SELECT make_keys('c', 1, (SELECT user_id FROM hokusai_auth.api_keys WHERE name = 'a1'))});
is(validate('c1'), 1, 'a key made then validates');
is(stats(), '22 23 0', 'nothing swept while the calls are in the hour');
is(counts('a\d+'), '2', 'the keys still count their calls');
is(q1(q{SELECT user_requests_last_hour FROM test_keys t,
	hokusai_auth.rate_limit_status(t.id) s WHERE t.name = 'u1'}), '2',
	'the user still counts its calls');

# 3. An hour and a half after the first calls they have all left the
# windows: the next admission sweeps those 22 states, not the one made 50
# minutes ago (idle only after 61, so ten minutes of margin for a slow
# machine).
set_clock(5400);
q1(q{SELECT make_keys('d', 1, (SELECT user_id FROM hokusai_auth.api_keys WHERE name = 'a1'))});
is(validate('d1'), 1, 'a key made then validates');
is(stats(), '2 24 22', 'the 22 idle states are swept, the other two kept');
is(tracked('a\d+') . ' ' . tracked('u1'), '0 0', 'the swept keys are not tracked');
is(tracked('c1') . ' ' . counts('c1'), '1 1', 'the key called 50 minutes ago keeps its count');

# 4. The swept keys' cache entries still name their freed slots.  Half of
# them call first, then twenty new keys take slots, then the other half
# call, when their slots belong to others.  Each key must count on a state
# of its own (a freed slot's owner is cleared; a taken one names another).
is(validate('a[1-9]|a10'), 10, 'ten of the swept keys validate again');
is(tracked('a[1-9]|a10'), 10, 'each has a state of its own again');
is(counts('a[1-9]|a10'), '1', 'counting only its new call');
q1(q{SELECT make_keys('b', 20, (SELECT user_id FROM hokusai_auth.api_keys WHERE name = 'a1'))});
is(validate('b\d+'), 20, 'twenty new keys validate');
is(q1(q{SELECT misses FROM hokusai_auth.cache_stats}), '43',
	'so far only the keys\' first calls missed the cache');
is(validate('a1[1-9]|a20'), 10, 'the other ten swept keys validate again');
is(validate('u1'), 1, 'and the limited user\'s key');
is(q1(q{SELECT misses FROM hokusai_auth.cache_stats}), '43',
	'the swept keys were cache hits: their entries named the freed slots');
is(tracked('a\d+') . ' ' . counts('a\d+'), '20 1', 'each swept key counts only its new call');
is(tracked('b\d+') . ' ' . counts('b\d+'), '20 1', 'each new key counts only its own call');
is(q1(q{SELECT user_requests_last_hour FROM test_keys t,
	hokusai_auth.rate_limit_status(t.id) s WHERE t.name = 'u1'}), '1',
	'the user counts only the new call');
is(stats(), '43 66 22', 'states: 2 kept, 20 new keys, the 21 swept keys and the user again');

# 5. A refused call counts nothing but its key gets a state; an hour and
# two minutes later every state is idle, and the next admission sweeps
# them all (then makes its own caller's again).
q1(q{SELECT make_keys('r', 1, (SELECT user_id FROM hokusai_auth.api_keys WHERE name = 'a1'))});
is(q1(q{SELECT status FROM test_keys t, hokusai_auth.validate_key(t.key, cost => 5000) v
	WHERE t.name = 'r1'}), 'rate_limited', 'a call costing more than the limit is refused');
is(q1(q{SELECT coalesce(requests_last_hour, 0) FROM test_keys t,
	hokusai_auth.rate_limit_status(t.id) s WHERE t.name = 'r1'}), '0', 'and counts nothing');
set_clock(5400 + 3600 + 120);
is(validate('d1'), 1, 'an hour and two minutes later, a call');
is(stats(), '1 68 67', 'all 45 states are swept, and the caller\'s made again');

$node->stop;
done_testing();
