# Plaintext keys never reach the server log or pg_stat_statements through
# the documented call paths, with every statement logged
# (log_statement = 'all') and log_parameter_max_length = 0 as
# docs/security/api-keys.md tells operators to set it.  As a control, the
# same call with parameter logging left at its default does leak, so the
# test would notice if the setting stopped mattering.
use strict;
use warnings;

use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $node = HokusaiTest::new_node('logs',
	extra_conf => "shared_preload_libraries = 'hokusai_auth,pg_stat_statements'\n"
	  . "log_statement = 'all'\nlog_min_error_statement = 'error'\n"
	  . "log_parameter_max_length = 0\nlog_parameter_max_length_on_error = 0\n");
$node->safe_psql('postgres', 'CREATE EXTENSION pg_stat_statements');

my $pgbench = $ENV{PG_BIN} ? "$ENV{PG_BIN}/pgbench" : 'pgbench';
my $cli = `pg_config --bindir`;
chomp $cli;
$cli .= '/hokusai';

# Validate a key with a bind parameter, as an application driver does.
sub validate_with_bind
{
	my ($key) = @_;
	my $script = "$PostgreSQL::Test::Utils::tmp_check/validate.sql";
	open my $fh, '>', $script or die;
	print $fh "SELECT status FROM hokusai_auth.validate_key(:key, NULL, '/v1/logs');\n";
	close $fh;
	my ($ret, $out, $err) = $node->psql('postgres', 'SELECT 1');    # warm up
	my @cmd = ('pgbench', '-n', '-M', 'extended', '-t', '3', '-D', "key=$key",
		'-f', $script, '-h', $node->host, '-p', $node->port, 'postgres');
	my $rc = system(@cmd);
	is($rc, 0, 'pgbench validated the key with bind parameters');
}

my $offset = -s $node->logfile;
my ($uid, $kid, $key) = HokusaiTest::new_key($node, 'logs');
like($key, qr/^hk_live_/, 'key created');
validate_with_bind($key);

# The CLI: create a key and rotate it; the keys go to stdout only.
my @env = (PGHOST => $node->host, PGPORT => $node->port, PGDATABASE => 'postgres');
my $cli_key = '';
{
	local %ENV = (%ENV, @env);
	$cli_key = `$cli auth create-key --user logs --name cli-logs 2>/dev/null`;
	chomp $cli_key;
}
like($cli_key, qr/^hk_live_[0-9A-Za-z]{46}$/, 'CLI printed a key');
validate_with_bind($cli_key);

# A failing statement: the error path logs the statement, not parameters.
$node->psql('postgres', "SELECT hokusai_auth.create_key(NULL, 'x')");

my $log = slurp_file($node->logfile, $offset);
for my $k ([ 'SQL', $key ], [ 'CLI', $cli_key ])
{
	unlike($log, qr/\Q$k->[1]\E/, "$k->[0] key not in the server log");
	my $secret = substr($k->[1], 16, 32);
	unlike($log, qr/\Q$secret\E/, "$k->[0] key's secret part not in the server log");
}
like($log, qr/validate_key\(\$1/, 'the validations were logged, with $1 in place of the key');

my $pgss = $node->safe_psql('postgres', q{SELECT string_agg(query, E'\n') FROM pg_stat_statements});
unlike($pgss, qr/\Q$key\E/, 'no key in pg_stat_statements');
unlike($pgss, qr/hk_(live|test)_[0-9A-Za-z]{46}/, 'nothing shaped like a key in pg_stat_statements');

# No key-shaped string in any table.
is($node->safe_psql('postgres',
		q{SELECT count(*) FROM hokusai_auth.api_keys k, hokusai_auth.audit_log a
		   WHERE k::text ~ 'hk_(live|test)_[0-9A-Za-z]{46}' OR a::text ~ 'hk_(live|test)_[0-9A-Za-z]{46}'}),
	'0', 'no key-shaped text stored in any row');

# Control: with parameter logging at its default, a bind parameter is logged.
$node->append_conf('postgresql.conf', "log_parameter_max_length = -1\n");
$node->reload;
$offset = -s $node->logfile;
validate_with_bind($key);
$log = slurp_file($node->logfile, $offset);
like($log, qr/\Q$key\E/, 'control: without log_parameter_max_length = 0 the key is logged');

$node->stop;
done_testing();
