# docs/deployment.md renders the same nginx and PostgREST templates the
# tests use (test/http/*.conf.in, through stack.sh prepare) for a real
# server.  Run the document's own command (paths moved into a temporary
# directory, a throwaway certificate for the real one) and check what it
# wrote: nginx accepts it, the listen address, name, certificate and public
# origin are the ones given, and apart from those the configuration is the
# one the HTTP tests run.
use strict;
use warnings;

use Cwd qw(abs_path);
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;

my $top = abs_path('.');
my $stack = "$top/test/http/stack.sh";
my $tmp = PostgreSQL::Test::Utils::tempdir;

# A certificate standing in for the real one.
system('openssl', 'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1',
	'-nodes', '-keyout', "$tmp/privkey.pem", '-out', "$tmp/fullchain.pem", '-days', '2',
	'-subj', '/CN=api.example.com') == 0
  or die 'openssl failed';

# The document's command: the HK_* lines and the prepare line of its sh block.
my $doc = slurp_file("$top/docs/deployment.md");
my ($block) = $doc =~ /```sh\n(.*?HK_DB_URI=.*?stack\.sh prepare \/etc\/hokusai\n)/s;
ok(defined $block, 'docs/deployment.md has the prepare command');
my @lines = grep { /^HK_|stack\.sh prepare/ } split /\n/, $block;
my $cmd = join("\n", @lines);
$cmd =~ s{/etc/letsencrypt/live/api\.example\.com}{$tmp}g;
$cmd =~ s{/etc/hokusai}{$tmp/etc-hokusai}g;
$cmd =~ s{bash test/http/stack\.sh}{bash $stack};
# nginx -t binds the listen sockets: unprivileged ports on a loopback
# address other than the default (127.0.0.1), so the setting is seen.
my ($https, $http) = split /\n/, `bash $stack free-ports 2`;
$cmd =~ s/HK_LISTEN=0\.0\.0\.0/HK_LISTEN=127.0.0.2/ or die 'no HK_LISTEN in the document';
$cmd =~ s/HK_HTTPS_PORT=443/HK_HTTPS_PORT=$https/ or die 'no HK_HTTPS_PORT=443 in the document';
$cmd =~ s/HK_HTTP_PORT=80/HK_HTTP_PORT=$http/ or die 'no HK_HTTP_PORT=80 in the document';
my ($out, $err) = ('', '');
my $ok = IPC::Run::run([ 'bash', '-ec', $cmd ], '>', \$out, '2>', \$err);
ok($ok, "the document's prepare command succeeds (it runs nginx -t)") or diag($cmd . "\n" . $err);

my $dir = "$tmp/etc-hokusai";
my $nginx = slurp_file("$dir/nginx.conf");
my $pgrst = slurp_file("$dir/postgrest.conf");
unlike(join("\n", grep { !/^\s*#/ } split /\n/, $nginx . "\n" . $pgrst), qr/@[A-Z_]+@/, 'no placeholder left');
like($nginx, qr/^\s*listen 127\.0\.0\.2:$https ssl;$/m, 'nginx listens on the given address and port');
like($nginx, qr/^\s*listen 127\.0\.0\.2:$http;$/m, '... and redirects plain HTTP there');
like($nginx, qr/^\s*server_name api\.example\.com;$/m, 'the server name');
like($nginx, qr/^\s*ssl_certificate \Q$tmp\E\/fullchain\.pem;$/m, 'the real certificate');
like($nginx, qr/^\s*ssl_certificate_key \Q$tmp\E\/privkey\.pem;$/m, '... and its key');
ok(!-e "$dir/tls/cert.pem", 'no self-signed certificate made');
like($nginx, qr{return 301 https://api\.example\.com\$request_uri;}, 'redirects go to the public origin');
like($nginx, qr/^worker_processes auto;$/m, 'worker processes');
like($pgrst, qr{^db-uri = "postgres://hokusai_authenticator:}m, 'PostgREST connects as the authenticator');
like($pgrst, qr/^db-pre-request = "hokusai_auth\.pre_request"$/m, 'PostgREST runs pre_request()');
like($pgrst, qr/^admin-server-port = 3001$/m, 'the admin port for readiness');
like($pgrst, qr{^openapi-server-proxy-uri = "https://api\.example\.com/api/v1/auth"$}m, 'the public origin in PostgREST');

# The same templates rendered as the tests render them: the same file but
# for the lines the deployment sets.
my $test_dir = "$tmp/test-stack";
$ok = IPC::Run::run([ 'bash', $stack, 'prepare', $test_dir ], '>', \$out, '2>', \$err,
	init => sub {
		$ENV{HK_DB_URI} = 'postgres://x@127.0.0.1:5432/y';
		@ENV{qw(HK_HTTPS_PORT HK_HTTP_PORT HK_PGRST_PORT HK_PGRST_ADMIN_PORT)} = ($https, $http, 3000, 3001);
		delete @ENV{qw(HK_LISTEN HK_SERVER_NAME HK_PUBLIC_ORIGIN HK_TLS_CERT HK_TLS_KEY HK_NGINX_WORKERS)};
	});
ok($ok, 'the test rendering succeeds') or diag($err);
my @prod = split /\n/, $nginx;
my @test = split /\n/, slurp_file("$test_dir/nginx.conf");
is(scalar(@prod), scalar(@test), 'as many lines as the test configuration');
my $settable = qr/^\s*(listen|server_name|ssl_certificate|ssl_certificate_key|worker_processes)\b|return 301 |\Q$dir\E|\Q$test_dir\E/;
my @other = grep { $prod[$_] ne $test[$_] && $prod[$_] !~ $settable } 0 .. $#prod;
is_deeply(\@other, [], 'every other line is the one the HTTP tests run')
  or diag(join "\n", map { "$prod[$_]\n$test[$_]" } @other[ 0 .. ($#other < 4 ? $#other : 4) ]);

done_testing();
