# The OpenAPI description at /api/v1/auth/ (docs/openapi.json, served by
# nginx): the file as served, valid by a real validator
# (@apidevtools/swagger-parser), in step with the routes nginx.conf.in
# serves both ways, and usable: openapi-typescript generates types from the
# served document, tsc type-checks and compiles test/http/openapi_client.ts
# (an openapi-fetch client) against them, and the client runs against the
# live stack, each status one the document lists (docs/http.md#openapi).
#
# The npm packages: HK_NODE_MODULES, default node_modules at the top of the
# tree (npm ci --ignore-scripts, package.json).
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Copy qw(copy);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use HokusaiTest;
use HokusaiHttp;

my $top = File::Spec->rel2abs(File::Spec->catdir(dirname(__FILE__), File::Spec->updir, File::Spec->updir));
my $nm = $ENV{HK_NODE_MODULES} || "$top/node_modules";
for my $pkg ('@apidevtools/swagger-parser', 'openapi-typescript', 'openapi-fetch', 'typescript')
{
	ok(-f "$nm/$pkg/package.json", "npm package $pkg installed in $nm")
	  or BAIL_OUT("no $pkg: run npm ci --ignore-scripts (package.json)");
}

my $node = HokusaiTest::new_node('openapi',
	extra_conf => "hokusai_auth.trusted_proxies = '127.0.0.1/32'\n");
$node->safe_psql('postgres', "SELECT hokusai_auth.setup_http_roles()");
my $http = HokusaiHttp->start($node, 'openapi');
my ($base, $cacert) = @$http{qw(base cacert)};
my $user = $node->safe_psql('postgres', "SELECT hokusai_auth.create_user('openapi')");
my $jwt = $http->jwt($user);
my $tmp = PostgreSQL::Test::Utils::tempdir('openapi_client');

# curl(method, url, [headers], body): { status, headers, body, json }
sub curl
{
	my ($method, $url, $headers, $body) = @_;
	my @cmd = ('curl', '-s', '-i', '--max-time', '20', '--cacert', $cacert);
	push @cmd, $method eq 'HEAD' ? ('-I') : ('-X', $method);
	push @cmd, '-H', $_ for @{ $headers || [] };
	push @cmd, '--data-binary', $body if defined $body;
	push @cmd, $url;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my ($head, $b) = split /\r\n\r\n/, $out, 2;
	my ($statusline, @lines) = split /\r\n/, $head // '';
	my %h;
	for (@lines) { my ($n, $v) = /^([^:]+):\s*(.*)$/ or next; $h{ lc $n } = $v; }
	my $r = { status => ((($statusline // '') =~ m{^HTTP/\S+ (\d+)})[0] // 0), headers => \%h, body => $b // '' };
	$r->{json} = eval { decode_json($r->{body}) } if length $r->{body};
	return $r;
}

sub run_cmd
{
	my ($cmd, %env) = @_;
	local %ENV = (%ENV, %env);
	my ($out, $err) = ('', '');
	IPC::Run::run($cmd, '>', \$out, '2>', \$err);
	return ($? == 0, $out, $err);
}

###########################################################################
# The document as served
###########################################################################

my $r = curl('GET', "$base/");
is($r->{status}, 200, 'GET /api/v1/auth/: 200 without credentials');
like($r->{headers}{'content-type'} // '', qr{^application/openapi\+json\b}, '... Content-Type: application/openapi+json');
like($r->{headers}{'strict-transport-security'} // '', qr/max-age/, '... with HSTS');
is($r->{body}, slurp_file("$top/docs/openapi.json"), '... the bytes of docs/openapi.json');
my $doc = $r->{json};
is($doc->{openapi}, '3.0.3', '... OpenAPI 3.0.3');
is($doc->{info}{title}, 'hokusai_auth API', '... title hokusai_auth API');
my $ext_version = ($node->safe_psql('postgres',
	"SELECT extversion FROM pg_extension WHERE extname = 'hokusai_auth'"));
is($doc->{info}{version}, $ext_version, "... version $ext_version, the extension's");
is($doc->{servers}[0]{url}, '/api/v1/auth', '... server /api/v1/auth');
is_deeply([ sort keys %{ $doc->{components}{securitySchemes} } ],
	[qw(ApiKey ApiKeyQuery BearerJwt BearerKey)], '... security schemes ApiKey, ApiKeyQuery, BearerJwt, BearerKey');
like($doc->{components}{securitySchemes}{ApiKeyQuery}{description}, qr/^Discouraged/, '... api_key in the query discouraged');
ok(!grep({ m{/rpc/} } keys %{ $doc->{paths} }), '... no PostgREST-internal /rpc/ path');
unlike($r->{body}, qr/key_hash"\s*:\s*\{/, '... no key_hash property');
open(my $fh, '>', "$tmp/openapi.json") or die $!;
print $fh $r->{body};
close $fh;

$r = curl('HEAD', "$base/");
is($r->{status}, 200, 'HEAD /api/v1/auth/: 200');
like($r->{headers}{'content-type'} // '', qr{^application/openapi\+json\b}, '... Content-Type: application/openapi+json');
$r = curl('POST', "$base/");
is($r->{status}, 405, 'POST /api/v1/auth/: 405');
is($r->{headers}{allow}, 'GET, HEAD', '... Allow: GET, HEAD');

###########################################################################
# A real validator
###########################################################################

my ($ok, $out, $err) = run_cmd([ 'node', "$top/test/http/openapi_check.mjs", 'validate', "$tmp/openapi.json" ],
	HK_NODE_MODULES => $nm);
ok($ok, 'swagger-parser validates the served document') or diag($out . $err);
like($out, qr/^valid: hokusai_auth API /, '... and names it');
# The validator does fail: a broken copy is refused.
{
	my $broken = decode_json(slurp_file("$tmp/openapi.json"));
	$broken->{paths}{'/keys'}{post}{responses}{201}{content}{'application/json'}{schema} =
	  { '$ref' => '#/components/schemas/NoSuchSchema' };
	open(my $bf, '>', "$tmp/broken.json") or die $!;
	print $bf encode_json($broken);
	close $bf;
	($ok, $out, $err) = run_cmd([ 'node', "$top/test/http/openapi_check.mjs", 'validate', "$tmp/broken.json" ],
		HK_NODE_MODULES => $nm);
	ok(!$ok && $err =~ /invalid/, 'a document with a dangling $ref is refused') or diag($out . $err);
}

###########################################################################
# The document and nginx.conf.in, both ways
###########################################################################

# Routes nginx serves: each location under /api/v1/auth/ with the methods
# its Allow header names.  { '/keys/{key_id}' => [ 'DELETE' ], ... }
my %nginx;
{
	my $conf = slurp_file("$top/test/http/nginx.conf.in");
	while ($conf =~ /^\t\tlocation (= |~ ")(\S+?)"? \{\n(.*?)^\t\t\}/msg)
	{
		my ($kind, $loc, $blockbody) = ($1, $2, $3);
		my ($allow) = $blockbody =~ /add_header Allow "([^"]+)"/ or next;
		my $path = $loc;
		if ($kind =~ /^~/)
		{
			$path =~ s/^\^//;
			$path =~ s/\$\z//;
			$path =~ s/\(\?<hk_key_id>[^)]*\)/{key_id}/;
		}
		next unless $path =~ s{^/api/v1/auth(?=/)}{};
		$nginx{$path} = [ split /,\s*/, $allow ];
	}
}
is_deeply([ sort keys %nginx ], [ sort keys %{ $doc->{paths} } ],
	'the document has exactly the paths nginx.conf.in serves')
  or diag(explain([ [ sort keys %nginx ], [ sort keys %{ $doc->{paths} } ] ]));
for my $path (sort keys %nginx)
{
	for my $m (@{ $nginx{$path} })
	{
		ok($doc->{paths}{$path}{ lc $m }, "nginx serves $m $path: in the document");
	}
	for my $m (grep { /^(get|head|post|put|patch|delete|options|trace)$/ } sort keys %{ $doc->{paths}{$path} || {} })
	{
		ok(grep({ lc($_) eq $m } @{ $nginx{$path} }), "document's \U$m\E $path: in nginx.conf.in's Allow");
	}
}

# Every operation of the document answers (without credentials: no side
# effects), not nginx's 404 and not a 405; each status is listed.
my $some_id = '00000000-0000-4000-8000-000000000000';
for my $path (sort keys %{ $doc->{paths} })
{
	(my $url = "$base$path") =~ s/\{key_id\}/$some_id/;
	for my $m (grep { /^(get|head|post|patch|delete)$/ } sort keys %{ $doc->{paths}{$path} })
	{
		my $res = curl(uc $m, $url, [ 'Content-Type: application/json' ], $m =~ /post|patch|delete/ ? '{}' : undef);
		my $name = "\U$m\E $path";
		ok(!($res->{status} == 404 && ($res->{json}{message} // '') eq 'no such route'), "$name: not nginx's 404");
		isnt($res->{status}, 405, "$name: not 405");
		ok(exists $doc->{paths}{$path}{$m}{responses}{ $res->{status} },
			"$name: status $res->{status} is listed");
	}
}

# Other methods: 405 with Allow, as the document's path descriptions say.
$r = curl('PATCH', "$base/keys", [ "Authorization: Bearer $jwt" ]);
is($r->{status}, 405, 'PATCH /keys: 405');
is($r->{json}{code}, 'method_not_allowed', '... method_not_allowed');
ok(exists $doc->{components}{responses}{MethodNotAllowed}, '... the MethodNotAllowed response of the document');

# 415 for a body that is not JSON.
$r = curl('POST', "$base/keys", [ "Authorization: Bearer $jwt", 'Content-Type: text/plain' ], '{"name":"x"}');
ok(exists $doc->{paths}{'/keys'}{post}{responses}{415}, 'POST /keys lists 415');
is($r->{status}, 415, 'POST /keys with Content-Type: text/plain: 415') or diag($r->{body});

###########################################################################
# A generated client against the live stack
###########################################################################

($ok, $out, $err) = run_cmd([ 'node', "$nm/openapi-typescript/bin/cli.js", "$tmp/openapi.json", '-o', "$tmp/api.d.ts" ]);
ok($ok && -s "$tmp/api.d.ts", 'openapi-typescript generates types from the served document') or diag($out . $err);
copy("$top/test/http/openapi_client.ts", "$tmp/client.ts") or die $!;
symlink($nm, "$tmp/node_modules") or die "symlink: $!";
open(my $tf, '>', "$tmp/tsconfig.json") or die $!;
print $tf encode_json({ compilerOptions => { target => 'ES2022', module => 'NodeNext', moduleResolution => 'NodeNext',
	strict => JSON::PP::true, noEmitOnError => JSON::PP::true, types => [], lib => [ 'ES2022', 'DOM' ], outDir => 'out' },
	files => ['client.ts'] });
close $tf;
($ok, $out, $err) = run_cmd([ 'node', "$nm/typescript/bin/tsc", '-p', $tmp ]);
ok($ok && -f "$tmp/out/client.js", 'tsc type-checks (strict) and compiles the client against the generated types')
  or diag($out . $err);

($ok, $out, $err) = run_cmd([ 'node', "$tmp/out/client.js" ],
	HK_BASE => $base, HK_JWT => $jwt, NODE_EXTRA_CA_CERTS => $cacert);
ok($ok, 'the generated client runs') or diag($err);
my $checks = 0;
for my $line (split /\n/, $out)
{
	my $c = eval { decode_json($line) } or next;
	$checks++;
	ok($c->{ok}, "client: $c->{name}") or diag(explain($c->{diag}));
}
cmp_ok($checks, '>=', 20, "the client made its checks ($checks)") or diag($out . $err);

$http->stop;
done_testing();
