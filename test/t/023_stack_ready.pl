# test/http/stack.sh start (used by test/demo.sh and the benchmark) waits
# until PostgREST is ready (admin /ready 200: connected, schema cache loaded)
# and nginx answers over HTTPS, and fails, within its bound and with the
# cause, when PostgREST cannot use the database:
#   - a normal start: the first requests after start returns succeed (no 503
#     PGRST002 "Could not query the database for the schema cache"), several
#     times over;
#   - the authenticator refused by pg_hba.conf, a database that does not
#     exist: exit non-zero at once, printing PostgreSQL's message;
#   - a server that is not there: exit non-zero after HK_STACK_TIMEOUT;
# and nothing is left running after a failed start.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Cwd qw(abs_path);
use Time::HiRes qw(time);
use HokusaiTest;

my $stack = abs_path('.') . '/test/http/stack.sh';
my $node = HokusaiTest::new_node('stack');
$node->safe_psql('postgres', 'SELECT hokusai_auth.setup_http_roles()');
my $uid = $node->safe_psql('postgres', "SELECT hokusai_auth.create_user('stack')");

# stack(ENV_HASHREF, ARGS...): runs stack.sh; returns (exit code, stdout, stderr, seconds).
sub stack
{
	my ($env, @args) = @_;
	my ($out, $err) = ('', '');
	local %ENV = (%ENV, %$env);
	my $t0 = time();
	IPC::Run::run([ 'bash', $stack, @args ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(120));
	return ($? >> 8, $out, $err, time() - $t0);
}

sub curl_code
{
	my (@args) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10', @args ],
		'>', \$out, '2>', \$err);
	return $out;
}

# prepare(NAME, DB_URI): a stack directory for the node; returns (dir, %ports).
sub prepare
{
	my ($name, $uri) = @_;
	my $dir = PostgreSQL::Test::Utils::tempdir($name);
	my %p = map { ($_ => PostgreSQL::Test::Cluster::get_free_port()) }
	  qw(HK_HTTPS_PORT HK_HTTP_PORT HK_PGRST_PORT HK_PGRST_ADMIN_PORT);
	my %env = (HK_DB_URI => $uri, %p);
	my ($rc, $out, $err) = stack(\%env, 'prepare', $dir);
	is($rc, 0, "$name: stack.sh prepare") or diag($err);
	like(slurp_file("$dir/postgrest.conf"), qr/^admin-server-port = $p{HK_PGRST_ADMIN_PORT}$/m,
		"$name: postgrest.conf has the admin port");
	return ($dir, \%env);
}

my $uri = "host=" . $node->host . " port=" . $node->port . " dbname=postgres user=hokusai_authenticator";

# (b) A normal start is ready when start returns.
my ($dir, $env) = prepare('ready', $uri);
my $base = "https://127.0.0.1:$env->{HK_HTTPS_PORT}/api/v1/auth";
my $jwt = `bash $stack jwt $dir $uid`;
chomp $jwt;
for my $round (1 .. 5)
{
	my ($rc, $out, $err, $secs) = stack($env, 'start', $dir);
	is($rc, 0, "round $round: stack.sh start exits 0") or diag($err);
	# The very first request after start: through nginx, with a JWT, so
	# that PostgREST must have its schema cache and reach the database.
	is(curl_code('--cacert', "$dir/tls/cert.pem", '-H', "Authorization: Bearer $jwt",
			"$base/keys?select=id"), '200',
		"round $round: the first request after start is 200 (not 503)");
	is(curl_code("http://127.0.0.1:$env->{HK_PGRST_ADMIN_PORT}/ready"), '200',
		"round $round: admin /ready is 200");
	is(curl_code('--cacert', "$dir/tls/cert.pem", "$base/"), '200',
		"round $round: the OpenAPI description answers over HTTPS");
	stack($env, 'stop', $dir);
	is(curl_code("http://127.0.0.1:$env->{HK_PGRST_ADMIN_PORT}/live"), '000',
		"round $round: stop stops PostgREST");
}

# (a) failures: non-zero, within the bound, with the cause; nothing left running.
sub check_failure
{
	my ($name, $uri, $cause, $max_secs, %extra) = @_;
	my ($dir, $env) = prepare($name, $uri);
	my ($rc, $out, $err, $secs) = stack({ %$env, %extra }, 'start', $dir);
	isnt($rc, 0, "$name: stack.sh start exits non-zero");
	cmp_ok($secs, '<', $max_secs, "$name: ... within $max_secs s (took " . sprintf('%.1f', $secs) . " s)");
	note("stack.sh start printed:\n$err");
	like($err, $cause, "$name: ... and prints the cause");
	like($err, qr/\Q$dir\E\/postgrest\.log/, "$name: ... and names PostgREST's log");
	ok(!-e "$dir/postgrest.pid" && !-e "$dir/nginx.master.pid", "$name: ... and stops what it started");
	is(curl_code("http://127.0.0.1:$env->{HK_PGRST_ADMIN_PORT}/live"), '000',
		"$name: ... PostgREST is not running");
	is(curl_code('-k', "https://127.0.0.1:$env->{HK_HTTPS_PORT}/"), '000',
		"$name: ... nginx is not running");
}

# The authenticator refused by pg_hba.conf (Unix socket: "local").
my $hba = $node->data_dir . '/pg_hba.conf';
my $hba_orig = slurp_file($hba);
open(my $fh, '>', $hba) or die $!;
print $fh "local all hokusai_authenticator reject\n", $hba_orig;
close $fh;
$node->reload;
check_failure('rejected', $uri,
	qr/cannot use the database.*\n.*pg_hba\.conf rejects connection for host "\[local\]", user "hokusai_authenticator"/,
	30);
open($fh, '>', $hba) or die $!;
print $fh $hba_orig;
close $fh;
$node->reload;

# A database that does not exist.
(my $nodb = $uri) =~ s/dbname=postgres/dbname=no_such_db/;
check_failure('nodb', $nodb, qr/database "no_such_db" does not exist/, 30);

# Nobody listening: PostgREST retries; start gives up after HK_STACK_TIMEOUT.
my $noport = PostgreSQL::Test::Cluster::get_free_port();
check_failure('noserver', "host=127.0.0.1 port=$noport dbname=postgres user=hokusai_authenticator",
	qr/not ready within 5 s.*\n.*Connection refused/, 15, HK_STACK_TIMEOUT => 5);

# After the failures, the same node works again with a fresh start.
($dir, $env) = prepare('again', $uri);
my ($rc, $out, $err) = stack($env, 'start', $dir);
is($rc, 0, 'after the failures, a start succeeds') or diag($err);
stack($env, 'stop', $dir);

$node->stop;
done_testing();
