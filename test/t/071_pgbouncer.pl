# pgbouncer (Debian's, transaction pooling) between PostgREST and the
# database (docs/scaling.md, "Connection poolers"): PostgREST's 10
# connections share 2 server connections, so consecutive requests, and
# the statements of one request's neighbours, run on whichever server
# session is free.  pre_request() must still authenticate each request
# by its own key or JWT, count rate limits per key (not per session),
# refuse revoked keys, keep one request's identity out of the next, and
# record usage.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use HokusaiTest;
use HokusaiHttp;

my $pgbouncer = -x '/usr/sbin/pgbouncer' ? '/usr/sbin/pgbouncer' : `command -v pgbouncer`;
chomp $pgbouncer;
ok(-x $pgbouncer, 'pgbouncer found') or BAIL_OUT('no pgbouncer: run test/lib/setup.sh');

my $node = HokusaiTest::new_node('bouncer',
	extra_conf => "hokusai_auth.trusted_proxies = '127.0.0.1/32'\n"
	  . "hokusai_auth.flush_interval = 200\n");
sub sql { return $node->safe_psql('postgres', shift); }
sql("SELECT hokusai_auth.setup_http_roles()");

# pgbouncer: transaction pooling, two server connections for the database.
my $bdir = PostgreSQL::Test::Utils::tempdir('pgbouncer');
my $bport = PostgreSQL::Test::Cluster::get_free_port();
open(my $ul, '>', "$bdir/userlist.txt") or die;
print $ul qq{"hokusai_authenticator" ""\n};
close $ul;
open(my $cf, '>', "$bdir/pgbouncer.ini") or die;
print $cf "[databases]\n"
  . "postgres = host=" . $node->host . " port=" . $node->port . " dbname=postgres\n"
  . "[pgbouncer]\n"
  . "listen_addr = 127.0.0.1\nlisten_port = $bport\nunix_socket_dir =\n"
  . "auth_type = trust\nauth_file = $bdir/userlist.txt\n"
  . "pool_mode = transaction\ndefault_pool_size = 2\nmin_pool_size = 0\n"
  . "max_client_conn = 100\nlogfile = $bdir/pgbouncer.log\n";
close $cf;
my $bouncer = IPC::Run::start([ $pgbouncer, "$bdir/pgbouncer.ini" ],
	'>', "$bdir/pgbouncer.out", '2>&1');
END { $bouncer->kill_kill if $bouncer; }
my $up = 0;
for (1 .. 100)
{
	my ($ret) = $node->psql('postgres', 'SELECT 1',
		connstr => "host=127.0.0.1 port=$bport dbname=postgres user=hokusai_authenticator");
	if ($ret == 0) { $up = 1; last; }
	select(undef, undef, undef, 0.1);
}
ok($up, 'pgbouncer accepts connections') or BAIL_OUT(slurp_file("$bdir/pgbouncer.out"));

# PostgREST through pgbouncer: no prepared statements (transaction mode).
my $http = HokusaiHttp->start($node, 'bouncer',
	db_uri => "host=127.0.0.1 port=$bport dbname=postgres user=hokusai_authenticator",
	pgrst_conf => "db-prepared-statements = false");
my $base = $http->{base};

sub curl
{
	my ($method, $path, @headers) = @_;
	my @cmd = ('curl', '-s', '-i', '--max-time', '20', '-X', $method, '--cacert', $http->{cacert});
	push @cmd, '-H', $_ for @headers;
	push @cmd, "$base$path";
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my ($head, $body) = split /\r\n\r\n/, $out, 2;
	my ($statusline, @lines) = split /\r\n/, $head // '';
	my %h;
	for (@lines) { my ($n, $v) = /^([^:]+):\s*(.*)$/ or next; $h{ lc $n } = $v; }
	my ($status) = ($statusline // '') =~ m{^HTTP/\S+ (\d+)};
	my $json = eval { decode_json($body // '') };
	return { status => $status // 0, headers => \%h, body => $body // '', json => $json };
}

my $alice = sql("SELECT hokusai_auth.create_user('alice')");
my $bob = sql("SELECT hokusai_auth.create_user('bob')");
my ($akid, $akey) = split / /, sql("SELECT id || ' ' || key FROM hokusai_auth.create_key('$alice', 'alice',
	rate_limit_per_hour => 1000000, burst_limit => 100000)");
my ($bkid, $bkey) = split / /, sql("SELECT id || ' ' || key FROM hokusai_auth.create_key('$bob', 'bob',
	rate_limit_per_hour => 5, burst_limit => 100000)");
my ($rkid, $rkey) = split / /, sql("SELECT id || ' ' || key FROM hokusai_auth.create_key('$bob', 'to revoke')");

# Each request is its own key's, whichever server session runs it.
my @seen;
for my $i (1 .. 6)
{
	my ($key, $who) = $i % 2 ? ($akey, $akid) : ($bkey, $bkid);
	my $r = curl('GET', '/keys', "X-API-Key: $key");
	is($r->{status}, 200, "request $i: 200") or diag($r->{body});
	my @ids = map { $_->{id} } @{ $r->{json} || [] };
	my $want = $i % 2 ? "$akid" : join(',', sort ($bkid, $rkid));
	is(join(',', sort @ids), $want, "request $i: only its own user's keys (no identity left from the previous request)");
	push @seen, $r->{headers}{'x-ratelimit-remaining'} if $i % 2 == 0;
}
is(join(' ', @seen), '4 3 2', "bob's hourly limit of 5 counts down across requests, whichever session served them");
is(curl('GET', '/keys', "X-API-Key: $bkey")->{status}, 200, 'bob: the 4th request');
is(curl('GET', '/keys', "X-API-Key: $bkey")->{status}, 200, 'bob: the 5th');
my $r = curl('GET', '/keys', "X-API-Key: $bkey");
is($r->{status}, 429, 'bob: the 6th is refused with 429');
like($r->{headers}{'retry-after'} // '', qr/^\d+$/, '... with Retry-After');

is(curl('GET', '/keys', "X-API-Key: $rkey")->{status}, 200, 'a key validates');
sql("SELECT hokusai_auth.revoke_key('$rkid')");
is(curl('GET', '/keys', "X-API-Key: $rkey")->{status}, 401, 'revoked: 401 at once through the pooler');
is(curl('GET', '/keys', 'X-API-Key: hk_live_short')->{status}, 401, 'malformed key: 401');

my $jwt = $http->jwt($alice);
$r = curl('GET', '/keys', "Authorization: Bearer $jwt");
is($r->{status}, 200, 'a JWT request: 200');
is(join(',', map { $_->{id} } @{ $r->{json} || [] }), $akid, '... alice\'s keys only');

# Many requests at once: PostgREST's pool is larger than pgbouncer's two
# server sessions, so they are multiplexed.
my @procs;
my $n = 60;
for my $i (1 .. $n)
{
	my $out = '';
	push @procs, [ IPC::Run::start([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}',
				'--max-time', '30', '--cacert', $http->{cacert}, '-H', "X-API-Key: $akey",
				"$base/keys" ], '>', \$out), \$out ];
}
my %codes;
for my $p (@procs) { $p->[0]->finish; $codes{ ${ $p->[1] } }++; }
is(join(' ', map { "$_=$codes{$_}" } sort keys %codes), "200=$n", "$n concurrent requests: all 200");
cmp_ok(sql("SELECT count(*) FROM pg_stat_activity WHERE usename = 'hokusai_authenticator'"), '<=', 2,
	'the database saw at most two sessions of the authenticator (pgbouncer multiplexed them)');

# Usage: pre_request() records each key-authenticated request.
ok($node->poll_query_until('postgres',
		"SELECT count(*) >= 3 + $n FROM hokusai_auth.api_key_usage WHERE api_key_id = '$akid'"),
	'usage of every request through the pooler is recorded');

$http->stop;
$bouncer->kill_kill;
$node->stop;
done_testing();
