# The client examples in docs/examples/ run: curl.sh, python_example.py and
# node_example.mjs, against a real PostgreSQL, PostgREST and nginx started
# here as in 020_http.pl.  Each is run with a JWT of a fresh user and
# must exit 0 and print: a created key of the right shape, 200s, a 429 with
# Retry-After, a rotation, the new key working and the old one refused
# (no grace) or still valid (with a grace period).  The keys they store in
# HOKUSAI_KEY_FILE are then checked independently with curl and SQL.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Cwd qw(abs_path);
use HokusaiTest;
use HokusaiHttp;

my $top = abs_path('.');
my $examples = "$top/docs/examples";
my $key_re = qr/hk_live_[0-9A-Za-z]{46}/;
my $prefix_re = qr/hk_live_[0-9A-Za-z]{8}/;
my $uuid_re = qr/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}/;

for my $f (qw(curl.sh python_example.py node_example.mjs README.md))
{
	ok(-f "$examples/$f", "docs/examples/$f exists") or BAIL_OUT("docs/examples/$f missing");
}

for my $tool (qw(curl python3 node))
{
	my ($path) = grep { -x "$_/$tool" } split /:/, $ENV{PATH};
	ok(defined $path, "$tool found") or BAIL_OUT("no $tool");
}

my $node = HokusaiTest::new_node('examples');
sub sql { return $node->safe_psql('postgres', shift); }
sql("SELECT hokusai_auth.setup_http_roles()");

my $http = HokusaiHttp->start($node, 'examples');
my ($dir, $https_port, $http_port, $pgrst_port) = @$http{qw(dir https_port http_port pgrst_port)};
my $base = $http->{base};
my $cacert = $http->{cacert};

# HTTP status of a GET /keys with an API key.
sub status_with_key
{
	my ($key) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '20',
			'--cacert', $cacert, '-H', "X-API-Key: $key", "$base/keys?select=id" ],
		'>', \$out, '2>', \$err);
	return $out;
}

# run_example(name, command, grace): runs one example as a new user; returns
# (exit code, stdout, stderr, user id, key file).
my $n = 0;
sub run_example
{
	my ($cmd, %env) = @_;
	$n++;
	my $uid = sql("SELECT hokusai_auth.create_user('example$n')");
	my $jwt = $http->jwt($uid);
	chomp $jwt;
	my $keyfile = "$dir/keys$n";
	my ($out, $err) = ('', '');
	local %ENV = (%ENV,
		HOKUSAI_API_URL => $base,
		HOKUSAI_CA_CERT => $cacert,
		HOKUSAI_JWT => $jwt,
		HOKUSAI_KEY_FILE => $keyfile,
		%env);
	delete $ENV{NODE_EXTRA_CA_CERTS};
	IPC::Run::run($cmd, '<', \undef, '>', \$out, '2>', \$err, IPC::Run::timeout(120));
	return ($? >> 8, $out, $err, $uid, $keyfile);
}

# check_example(name, command, grace_seconds): every documented step.
sub check_example
{
	my ($name, $cmd, $grace) = @_;
	my ($rc, $out, $err, $uid, $keyfile) = run_example($cmd,
		HOKUSAI_RATE_LIMIT => 3, HOKUSAI_GRACE_SECONDS => $grace);
	my $what = "$name (grace $grace)";
	is($rc, 0, "$what: exits 0") or diag("stdout:\n$out\nstderr:\n$err");
	note($out);

	like($out, qr/^created key $prefix_re \(id $uuid_re\), 3 requests per hour$/m,
		"$what: created a key, prints its prefix and id");
	for my $i (1 .. 3)
	{
		my $left = 3 - $i;
		like($out, qr/^request $i: 200, X-RateLimit-Remaining $left$/m,
			"$what: request $i is 200 with X-RateLimit-Remaining");
	}
	like($out, qr/^request 4: 429 rate_limited: Retry-After [1-9]\d* s; would wait [1-9]\d* s before retrying$/m,
		"$what: request 4 is 429 and Retry-After is read");
	like($out, qr/^rotated: new key $prefix_re \(id $uuid_re\), old key ends at \d{4}-\d\d-\d\dT/m,
		"$what: rotated");
	like($out, qr/^new key: 200$/m, "$what: the new key works");
	if ($grace == 0)
	{
		like($out, qr/^old key: 401 revoked: the key is refused; stop using it and get a new one$/m,
			"$what: the old key is refused with 401 revoked");
	}
	else
	{
		like($out, qr/^old key: 429: still valid during the grace period, but out of requests \(Retry-After [1-9]\d* s\)$/m,
			"$what: the old key is still valid during the grace period");
	}
	like($out, qr/\ndone\n\z/, "$what: ran to the end");
	unlike($out . $err, qr/$key_re/, "$what: no whole key printed");

	# The keys it stored, checked independently.
	my @lines = -f $keyfile ? split(/\n/, slurp_file($keyfile)) : ();
	is(scalar(@lines), 2, "$what: stored two keys in HOKUSAI_KEY_FILE");
	is((stat $keyfile)[2] & 0777, 0600, "$what: key file has mode 0600") if -f $keyfile;
	my ($old_id, $old_key) = split / /, $lines[0] // '';
	my ($new_id, $new_key) = split / /, $lines[1] // '';
	like($old_key // '', qr/\A$key_re\z/, "$what: created key has the documented shape");
	like($new_key // '', qr/\A$key_re\z/, "$what: rotated key has the documented shape");
	return unless ($old_key // '') =~ /\A$key_re\z/ && ($new_key // '') =~ /\A$key_re\z/
	  && ($old_id // '') =~ /\A$uuid_re\z/ && ($new_id // '') =~ /\A$uuid_re\z/;
	my $old_prefix = substr($old_key // '', 0, 16);
	my $old_id_q = $old_id // 'none';
	like($out, qr/^created key \Q$old_prefix\E \(id \Q$old_id_q\E\)/m,
		"$what: printed prefix and id are the stored key's");
	is(sql("SELECT user_id = '$uid' AND rotated_from = '$old_id' AND is_active "
		  . "FROM hokusai_auth.api_keys WHERE id = '$new_id'"), 't',
		"$what: the new key belongs to the user and replaced the old one");
	is(status_with_key($new_key), '200', "$what: the new key works (curl)");
	if ($grace == 0)
	{
		is(status_with_key($old_key), '401', "$what: the old key is refused (curl)");
		is(sql("SELECT status FROM hokusai_auth.validate_key('$old_key')"), 'revoked',
			"$what: validate_key says the old key is revoked");
	}
	else
	{
		is(sql("SELECT status FROM hokusai_auth.validate_key('$old_key')"), 'rate_limited',
			"$what: the old key is still valid (rate limited, not revoked) during the grace period");
		my $lo = $grace - 60;
		is(sql("SELECT expires_at BETWEEN now() + interval '$lo seconds' "
			  . "AND now() + interval '$grace seconds' FROM hokusai_auth.api_keys WHERE id = '$old_id'"),
			't', "$what: the old key ends after the grace period");
	}
}

my %cmds = (
	'curl.sh' => [ 'bash', "$examples/curl.sh" ],
	'python_example.py' => [ 'python3', "$examples/python_example.py" ],
	'node_example.mjs' => [ 'node', "$examples/node_example.mjs" ],);
for my $name (sort keys %cmds)
{
	check_example($name, $cmds{$name}, 0);
	check_example($name, $cmds{$name}, 300);
}

# Missing configuration, an untrusted certificate and an http:// URL are
# failures, not silent successes, each reported in one line (no stack
# trace): no example skips TLS verification or sends a key in clear.
for my $name (sort keys %cmds)
{
	my ($rc, $out, $err) = run_example($cmds{$name}, HOKUSAI_JWT => '');
	isnt($rc, 0, "$name: without HOKUSAI_JWT it fails");
	like($err, qr/HOKUSAI_JWT/, "$name: ... naming the variable");
	($rc, $out, $err) = run_example($cmds{$name}, HOKUSAI_CA_CERT => '');
	isnt($rc, 0, "$name: without the CA certificate the self-signed server is refused");
	unlike($out, qr/^created key/m, "$name: ... before any key is created");
	# One clear line on stderr, no stack trace.
	like($err, qr/\A\Q$base\E: the server's certificate is not trusted \([^\n]+\); set HOKUSAI_CA_CERT to the CA certificate \(PEM\) that signed it\n\z/,
		"$name: ... with one line saying the certificate is not trusted and what to set")
	  or diag("stderr:\n$err");

	# http:// is refused before anything is sent.
	(my $plain = $base) =~ s{^https://127\.0\.0\.1:$https_port}{http://127.0.0.1:$http_port};
	($rc, $out, $err) = run_example($cmds{$name}, HOKUSAI_API_URL => $plain);
	isnt($rc, 0, "$name: an http:// URL is refused");
	is($out, '', "$name: ... before any request");
	is($err, "HOKUSAI_API_URL must be an https:// URL: keys are never sent in clear\n",
		"$name: ... with one line saying why");
}

$http->stop;
$node->stop;
done_testing();
