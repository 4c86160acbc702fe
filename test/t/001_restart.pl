# Keys, their hashes and the audit chain survive a server restart, and a
# revocation made before the restart still holds after it.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $node = HokusaiTest::new_node('restart');
my ($uid, $kid, $key) = HokusaiTest::new_key($node, 'alice');
my (undef, $kid2, $key2) = HokusaiTest::new_key($node, 'bob');

is(HokusaiTest::status($node, $key), 'ok', 'new key validates');
$node->safe_psql('postgres', "SELECT hokusai_auth.revoke_key('$kid2')");
is(HokusaiTest::status($node, $key2), 'revoked', 'revoked key is refused');

$node->restart;

is(HokusaiTest::status($node, $key), 'ok', 'key validates after restart');
is(HokusaiTest::status($node, $key2), 'revoked', 'revocation holds after restart');
is($node->safe_psql('postgres', 'SELECT hokusai_auth.verify_audit_chain() IS NULL'),
	't', 'audit chain intact after restart');

# An immediate stop is a crash: recovery must bring back the same state.
$node->stop('immediate');
$node->start;
is(HokusaiTest::status($node, $key), 'ok', 'key validates after crash recovery');
is(HokusaiTest::status($node, $key2), 'revoked', 'revocation holds after crash recovery');
is($node->safe_psql('postgres', 'SELECT count(*) FROM hokusai_auth.audit_log'),
	'3', 'audit rows survive crash recovery');

$node->stop;
done_testing();
