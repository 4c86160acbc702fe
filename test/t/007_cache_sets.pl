# The key cache when its sets fill up (docs/cache.md, "Entries and
# sizing"): with more keys than the cache holds, every key still validates,
# entries are evicted and counted, and the entries of the keys in use are
# then found again, wherever in the set eviction put them.  Once every
# entry has aged out, each key is verified again once and then found: a hit
# every time.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(usleep);
use HokusaiTest;

# cache_size 128 is rounded up to 2048 entries: 128 sets of 16 ways.
my $node = HokusaiTest::new_node('cache_sets',
	extra_conf => "hokusai_auth.cache_size = 128\n");
my $nkeys = 3000;
my $nhot = 300;

sub q1 { return $node->safe_psql('postgres', $_[0]); }

is(q1('SELECT capacity FROM hokusai_auth.cache_stats'), '2048',
	'cache_size 128 holds 128 sets of 16 entries');

# The keys, made as the benchmarks make them (bcrypt cost 4, no audit rows);
# their plaintext is kept in a table of this throwaway cluster only.
q1(qq{
CREATE TABLE test_keys (i integer PRIMARY KEY, key text NOT NULL);
SELECT hokusai_auth.create_user('sets') AS uid \\gset
WITH g AS MATERIALIZED (
	SELECT i, hokusai_auth._new_key('live') AS k FROM generate_series(1, $nkeys) i),
ins AS (
	INSERT INTO hokusai_auth.api_keys
		(key_hash, key_prefix, user_id, name, rate_limit_per_hour, burst_limit)
	SELECT (k).key_hash, (k).key_prefix, :'uid', 'sets ' || i, 1000000, 0 FROM g)
INSERT INTO test_keys SELECT i, (k).key FROM g;
});

# validate(first, last): how many of keys first..last validate 'ok'.
sub validate
{
	my ($first, $last) = @_;
	return q1(
		"SELECT count(*) FILTER (WHERE v.status = 'ok') FROM test_keys t,
			LATERAL hokusai_auth.validate_key(t.key) v
		  WHERE t.i BETWEEN $first AND $last");
}
sub stats
{
	return q1('SELECT hits || \' \' || misses || \' \' || evictions || \' \' || entries
		FROM hokusai_auth.cache_stats');
}

# 1. More keys than entries: every one validates, and sets evict.
q1('SELECT hokusai_auth.cache_stats_reset()');
is(validate(1, $nkeys), $nkeys, "all $nkeys keys validate through a cache of 2048");
my ($hits, $misses, $evictions, $entries) = split / /, stats();
is($misses, $nkeys, 'each was a miss (verified by bcrypt)');
cmp_ok($evictions, '>', 0, "full sets evicted ($evictions evictions)");
cmp_ok($entries, '<=', 2048, "entries ($entries) within the capacity");

# 2. The keys in use are cached again and then found: all hits.  Eviction
# is by last use, in whole seconds: wait for a new second, so that filling
# them evicts entries of step 1, never one filled in this step.
usleep(1_100_000);
is(validate(1, $nhot), $nhot, "the first $nhot keys validate again");
q1('SELECT hokusai_auth.cache_stats_reset()');
is(validate(1, $nhot), $nhot, "and once more");
($hits, $misses) = split / /, stats();
is("$hits $misses", "$nhot 0", 'the second time, every call is a hit');

# 3. Every entry ages out: one miss per key, then hits again.
q1('ALTER SYSTEM SET hokusai_auth.cache_ttl = 3');
q1('SELECT pg_reload_conf()');
$node->poll_query_until('postgres', "SELECT current_setting('hokusai_auth.cache_ttl') = '3s'")
  or die 'cache_ttl not reloaded';
usleep(3_500_000);
q1('SELECT hokusai_auth.cache_stats_reset()');
is(validate(1, $nhot), $nhot, "after the TTL the $nhot keys validate");
($hits, $misses) = split / /, stats();
is("$hits $misses", "0 $nhot", 'each was a miss: its entry had aged out');
q1('SELECT hokusai_auth.cache_stats_reset()');
is(validate(1, $nhot), $nhot, 'and validate again at once');
($hits, $misses) = split / /, stats();
is("$hits $misses", "$nhot 0",
	'every call is a hit again');

done_testing();
