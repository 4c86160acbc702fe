# Shared set-up for hokusai_auth's TAP tests.
#
#   use lib 'test/perl';
#   use HokusaiTest;
#   my $node = HokusaiTest::new_node('main');           # started, extension created
#   my $node = HokusaiTest::new_node('x', preload => 0); # without shared_preload_libraries
package HokusaiTest;

use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;

# A started cluster with hokusai_auth preloaded (unless preload => 0), a
# low bcrypt cost so tests run quickly, no default burst limit (tests that
# hammer a key are not about bursts; rate-limit tests set their own), and
# the extension created in the "postgres" database (unless create => 0).
# extra_conf is appended to postgresql.conf; init is a hash of options for
# PostgreSQL::Test::Cluster's init (allows_streaming => 1 for a primary).
sub new_node
{
	my ($name, %opt) = @_;
	my $preload = exists $opt{preload} ? $opt{preload} : 1;
	my $create = exists $opt{create} ? $opt{create} : 1;

	my $node = PostgreSQL::Test::Cluster->new($name);
	$node->init(%{ $opt{init} || {} });
	$node->append_conf('postgresql.conf',
		"shared_preload_libraries = 'hokusai_auth'\n") if $preload;
	$node->append_conf('postgresql.conf', "hokusai_auth.bcrypt_cost = 4\n");
	$node->append_conf('postgresql.conf', "hokusai_auth.default_burst_limit = 0\n");
	$node->append_conf('postgresql.conf', $opt{extra_conf}) if $opt{extra_conf};
	$node->start;
	$node->safe_psql('postgres', 'CREATE EXTENSION hokusai_auth CASCADE')
	  if $create;
	return $node;
}

# Create a user and a key; returns (user_id, key_id, key).
sub new_key
{
	my ($node, $username, %opt) = @_;
	my $args = $opt{args} ? ", $opt{args}" : '';
	my $uid = $node->safe_psql('postgres',
		"SELECT hokusai_auth.create_user('$username')");
	my $row = $node->safe_psql('postgres',
		"SELECT id || ' ' || key FROM hokusai_auth.create_key('$uid', 'test key'$args)");
	my ($kid, $key) = split / /, $row;
	return ($uid, $kid, $key);
}

# validate_key's status for a key, as a string.
sub status
{
	my ($node, $key, $ip) = @_;
	my $ipsql = defined $ip ? "'$ip'" : 'NULL';
	return $node->safe_psql('postgres',
		"SELECT status FROM hokusai_auth.validate_key('$key', $ipsql)");
}

1;
