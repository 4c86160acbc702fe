# update_key(credits => N) and update_key(clear_credits => true) on a
# primary reach a hot standby that has the keys cached and keeps balances
# of its own (docs/metering.md): once it has replayed the commit, a key
# made unmetered spends nothing there (its balance is dropped), a key made
# metered spends from the balance of the replicated row, and a metered key
# whose balance was set takes in the difference of the rows on top of what
# the standby had spent, as for add_credits().
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $primary = HokusaiTest::new_node('meter_primary',
	init => { allows_streaming => 1 },
	extra_conf => "hokusai_auth.cache_ttl = 3600\n"
	  . "hokusai_auth.flush_interval = 200\n");
$primary->backup('base');
my $standby = PostgreSQL::Test::Cluster->new('meter_standby');
$standby->init_from_backup($primary, 'base', has_streaming => 1);
$standby->start;

sub sql { return $_[0]->safe_psql('postgres', $_[1]); }
sub catch_up { $primary->wait_for_catchup($standby, 'replay', $primary->lsn('insert')); }
sub spend
{
	my ($node, $key, $cost) = @_;
	return sql($node, "SELECT status || ' ' || coalesce(credits_remaining::text, 'unmetered')"
		  . " FROM hokusai_auth.validate_key('$key', cost => $cost)");
}

my (undef, $a_id, $a_key) = HokusaiTest::new_key($primary, 'to_clear', args => 'credits => 10');
my (undef, $b_id, $b_key) = HokusaiTest::new_key($primary, 'to_meter');
my (undef, $c_id, $c_key) = HokusaiTest::new_key($primary, 'to_set', args => 'credits => 10');
catch_up();

# The standby caches the three keys and keeps balances of its own.
is(spend($standby, $a_key, 3), 'ok 7', 'the standby spends from its balance of the metered key');
is(spend($standby, $b_key, 3), 'ok unmetered', 'the unmetered key spends nothing there');
is(spend($standby, $c_key, 2), 'ok 8', 'the standby spends from its balance of the key to set');

# The changes on the primary, each in its own transaction.
sql($primary, "SELECT count(*) FROM hokusai_auth.update_key('$a_id', clear_credits => true)");
sql($primary, "SELECT count(*) FROM hokusai_auth.update_key('$b_id', credits => 4)");
sql($primary, "SELECT count(*) FROM hokusai_auth.update_key('$c_id', credits => 50)");
catch_up();

is(spend($standby, $a_key, 3), 'ok unmetered',
	'made unmetered on the primary: the standby spends nothing once it has replayed it');
is(sql($standby, "SELECT credits_remaining IS NULL FROM hokusai_auth.rate_limit_status('$a_id')"),
	't', '... and shows no balance for it');
is(spend($standby, $b_key, 3), 'ok 1', 'made metered on the primary: the standby spends from the row\'s 4');
is(spend($standby, $b_key, 3), 'credits_exhausted 1', '... and refuses what it does not have');
is(spend($standby, $c_key, 1), 'ok 47',
	'set to 50 on the primary: the standby\'s 8 take in the rows\' difference of 40');
is(spend($primary, $c_key, 1), 'ok 49', 'the primary spends from its own 50');

done_testing();
