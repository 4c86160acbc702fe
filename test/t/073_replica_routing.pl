# The scale recipe of docs/scaling.md, end to end: a primary and two
# streaming hot standbys, a PostgREST on each, and one nginx in front whose
# upstream is the recipe's block, read from docs/scaling.md (hash
# $hk_api_key consistent over the three PostgRESTs, writes to the
# primary's).  Which server counted a request is read from each server's
# shared memory (rate_limit_status(): requests_last_hour).
#
#  1. Each key lands on one server, whether it is sent in X-API-Key or as
#     Authorization: Bearer, and the keys are spread over the servers.
#  2. A key's hourly limit is one limit through nginx (4 admitted, then
#     429), counted on its server alone; so is its burst limit (8 parallel
#     requests of a key allowed 3 a second: some refused, the admitted
#     ones all counted on one server).
#  3. A write (POST) goes to the primary.
#  4. One server's PostgREST stopped: every key still gets 200; that
#     server's keys move, each to one other server, and the other keys stay.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Cwd qw(abs_path);
use HokusaiTest;
use HokusaiHttp;

my $primary = HokusaiTest::new_node('primary',
	init => { allows_streaming => 1 },
	extra_conf => "hokusai_auth.trusted_proxies = '127.0.0.1/32'\n"
	  # PostgREST's pool of 10 beside the test's own sessions (the
	  # standbys inherit it from the base backup).
	  . "max_connections = 40\n");
$primary->safe_psql('postgres', 'SELECT hokusai_auth.setup_http_roles()');
$primary->backup('base');
my @nodes = ($primary);
for my $name ('standby1', 'standby2')
{
	my $s = PostgreSQL::Test::Cluster->new($name);
	$s->init_from_backup($primary, 'base', has_streaming => 1);
	$s->start;
	push @nodes, $s;
}
sub catch_up
{
	$primary->wait_for_catchup($_, 'replay', $primary->lsn('insert')) for @nodes[ 1, 2 ];
}
sub sql { my ($node, $q) = @_; return $node->safe_psql('postgres', $q); }

# A PostgREST (and its own nginx, unused) per server.
my @stacks = map { HokusaiHttp->start($nodes[$_], 'srv' . $_) } 0 .. 2;

# The recipe, from the docs.
my $doc = slurp_file(abs_path('.') . '/docs/scaling.md');
my ($recipe) = $doc =~ /<!-- scaling-recipe:[^>]*-->\s*```nginx\n(.*?)```/s;
ok(defined $recipe && $recipe =~ /hash \$hk_api_key consistent;/,
	'docs/scaling.md has the recipe, hashing on $hk_api_key');
my @doc_addr = ('10.0.0.11:3000', '10.0.0.12:3000', '10.0.0.13:3000');
for my $i (0 .. 2)
{
	my $port = $stacks[$i]{pgrst_port};
	$recipe =~ s/\Q$doc_addr[$i]\E/127.0.0.1:$port/g;
}
unlike($recipe, qr/10\.0\.0\./, 'every address of the recipe is replaced');

# nginx: the primary's stack configuration in a directory of its own, with
# new ports, the recipe in place of its upstream, proxy_pass through it.
my $src = $stacks[0]{dir};
my $dir = PostgreSQL::Test::Utils::tempdir('front');
system('cp', '-a', "$src/tls", "$src/openapi.json", "$src/console", $dir) == 0 or die 'cp failed';
mkdir "$dir/nginx-tmp";
my ($https, $http) = map { PostgreSQL::Test::Cluster::get_free_port() } 1 .. 2;
my $conf = slurp_file("$src/nginx.conf");
$conf =~ s/\Q$src\E/$dir/g;
$conf =~ s/:$stacks[0]{https_port}\b/:$https/g;
$conf =~ s/:$stacks[0]{http_port}\b/:$http/g;
my $n_up = ($conf =~ s/\tupstream postgrest \{.*?\}\n/$recipe/s);
is($n_up, 1, 'the stack\'s upstream block is replaced by the recipe');
my $n_pass = ($conf =~ s{proxy_pass http://postgrest}{proxy_pass http://\$hk_upstream}g);
cmp_ok($n_pass, '>=', 6, "every proxy_pass goes through \$hk_upstream ($n_pass)");
open(my $fh, '>', "$dir/nginx.conf") or die;
print $fh $conf;
close $fh;
my $nginx = -x '/usr/sbin/nginx' ? '/usr/sbin/nginx' : `command -v nginx`;
chomp $nginx;
my $front = IPC::Run::start([ $nginx, '-p', $dir, '-c', "$dir/nginx.conf", '-e', "$dir/nginx-error.log" ],
	'>', "$dir/nginx.out", '2>&1');
END { $front->kill_kill if $front; }
my $base = "https://127.0.0.1:$https/api/v1/auth";
my $cacert = "$dir/tls/cert.pem";
is(HokusaiHttp::wait_200("$base/", $cacert, time() + 30), '200', 'the front nginx answers')
  or BAIL_OUT(slurp_file("$dir/nginx-error.log") . slurp_file("$dir/nginx.out"));

# A request through the front nginx; returns the status.
sub get_keys
{
	my ($key, $how) = @_;
	my $h = $how eq 'bearer' ? "Authorization: Bearer $key" : "X-API-Key: $key";
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '20',
			'--cacert', $cacert, '-H', $h, "$base/keys" ], '>', \$out, '2>', \$err);
	return $out;
}

# requests_last_hour of a key on each server, "p s1 s2".
sub counts
{
	my ($kid) = @_;
	return join(' ', map { sql($_, "SELECT requests_last_hour FROM hokusai_auth.rate_limit_status('$kid')") } @nodes);
}

# ---------------------------------------------------------------------------
# 1. Each key on one server.
# ---------------------------------------------------------------------------
my @keys = map { [ (HokusaiTest::new_key($primary, "user$_", args => 'rate_limit_per_hour => 1000'))[ 1, 2 ] ] } 1 .. 12;
catch_up();
my %home;	# key id -> index of the server that counts it
my %per_server;
for my $k (@keys)
{
	my ($kid, $key) = @$k;
	my $st = get_keys($key, 'header') . ' ' . get_keys($key, 'bearer');
	my $c = counts($kid);
	my @c = split / /, $c;
	my @at = grep { $c[$_] > 0 } 0 .. 2;
	ok($st eq '200 200' && @at == 1 && $c[ $at[0] ] == 2,
		"key $kid: X-API-Key and Bearer both answered 200 and counted on one server ($c)");
	$home{$kid} = $at[0] // -1;
	$per_server{ $at[0] // -1 }++;
}
cmp_ok(scalar(grep { $_ >= 0 } keys %per_server), '>=', 2,
	'the keys are spread over the servers (' . join(', ', map { "server $_: $per_server{$_}" } sort keys %per_server) . ')');

# ---------------------------------------------------------------------------
# 2. One limit per key through nginx.
# ---------------------------------------------------------------------------
my ($out, $err);
my (undef, $kid_l, $key_l) = HokusaiTest::new_key($primary, 'limited', args => 'rate_limit_per_hour => 4');
catch_up();
is(join(',', map { get_keys($key_l, $_ % 2 ? 'bearer' : 'header') } 1 .. 7), '200,200,200,200,429,429,429',
	'a key allowed 4 an hour: 4 answers of 200 through nginx, then 429');
like(counts($kid_l), qr/^(?:4 0 0|0 4 0|0 0 4)$/, 'all counted on one server: ' . counts($kid_l));

# The burst limit the same way: 8 requests at once (curl --parallel) of a
# key allowed 3 in any second.  Through nginx all 8 reach the key's one
# server, which admits 3 per rolling second: some are refused, and every
# admitted one is counted there.  (Spread over the three servers, each
# with its own 3 a second, all 8 would be admitted.)
my (undef, $kid_u, $key_u) = HokusaiTest::new_key($primary, 'bursty',
	args => 'rate_limit_per_hour => 1000, burst_limit => 3');
catch_up();
($out, $err) = ('', '');
IPC::Run::run([ 'curl', '-s', '--parallel', '--parallel-immediate', '--parallel-max', '8',
		'--max-time', '20', '--cacert', $cacert, '-H', "X-API-Key: $key_u",
		map { ('-o', '/dev/null', '-w', '%{http_code}\n', "$base/keys") } 1 .. 8 ],
	'>', \$out, '2>', \$err);
my @codes = split /\n/, $out;
my $ok200 = grep { $_ eq '200' } @codes;
my $n429 = grep { $_ eq '429' } @codes;
is(scalar(@codes), 8, '8 answers to 8 parallel requests (' . join(',', sort @codes) . ')');
ok($ok200 >= 3 && $n429 >= 1 && $ok200 + $n429 == 8,
	"a key allowed 3 a second: $ok200 admitted, $n429 refused with 429");
like(counts($kid_u), qr/^(?:$ok200 0 0|0 $ok200 0|0 0 $ok200)$/,
	'every admitted request counted on one server: ' . counts($kid_u));

# ---------------------------------------------------------------------------
# 3. Writes go to the primary.
# ---------------------------------------------------------------------------
my ($kid_w, $key_w) = @{ $keys[0] };
($out, $err) = ('', '');
IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '20', '--cacert', $cacert,
		'-X', 'POST', '-H', "X-API-Key: $key_w", '-H', 'Content-Type: application/json',
		'--data-binary', '{"name":"made through the front"}', "$base/keys" ], '>', \$out, '2>', \$err);
is($out, '201', 'POST /keys through the front nginx creates a key (on the primary)');
is(sql($primary, "SELECT count(*) FROM hokusai_auth.api_keys WHERE name = 'made through the front'"), '1',
	'the key is in the primary\'s table');

# ---------------------------------------------------------------------------
# 4. One upstream down.
# ---------------------------------------------------------------------------
my ($down) = sort { ($per_server{$b} // 0) <=> ($per_server{$a} // 0) || $a <=> $b } 0 .. 2;
$stacks[$down]->stop;
note("stopped the PostgREST of server $down ($per_server{$down} keys)");
my $moved_ok = 1;
my %moved_to;
for my $k (@keys)
{
	my ($kid, $key) = @$k;
	my @before = split / /, counts($kid);
	my $st = join(' ', get_keys($key, 'header'), get_keys($key, 'bearer'), get_keys($key, 'header'));
	my @after = split / /, counts($kid);
	my @grew = grep { $after[$_] > $before[$_] } 0 .. 2;
	my $desc = "key $kid (server $home{$kid}): $st, counts " . join(' ', @before) . ' -> ' . join(' ', @after);
	if ($home{$kid} == $down)
	{
		ok($st eq '200 200 200' && @grew == 1 && $grew[0] != $down
			  && $after[ $grew[0] ] - $before[ $grew[0] ] == 3,
			"moved: $desc");
		$moved_to{ $grew[0] // -1 }++;
	}
	else
	{
		ok($st eq '200 200 200' && @grew == 1 && $grew[0] == $home{$kid}
			  && $after[ $grew[0] ] - $before[ $grew[0] ] == 3,
			"stayed: $desc");
	}
}
note('moved keys went to: ' . join(', ', map { "server $_: $moved_to{$_}" } sort keys %moved_to));

$_->stop for @stacks;
$front->kill_kill;
$_->stop for reverse @nodes;
done_testing();
