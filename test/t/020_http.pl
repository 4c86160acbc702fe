# The HTTP API end to end: curl -> nginx (TLS, 127.0.0.1) -> PostgREST 12 ->
# hokusai_auth, all started here as child processes of this test with the
# configuration test/http/stack.sh writes into a temporary directory.  Every
# route, success and failure (docs/http.md).
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(usleep);
use HokusaiTest;
use HokusaiHttp;

my $json = JSON::PP->new->canonical;
my $key_re = qr/\Ahk_(?:live|test)_[0-9A-Za-z]{46}\z/;
my $uuid_re = qr/\A[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\z/;


# Every statement logged, with the setting docs/security/api-keys.md asks
# for: the end of this test checks the server log holds no key.
my $node = HokusaiTest::new_node('http',
	extra_conf => "hokusai_auth.trusted_proxies = '127.0.0.1/32'\n"
	  . "log_statement = 'all'\nlog_parameter_max_length = 0\n");
sub sql { return $node->safe_psql('postgres', shift); }
sql("SELECT hokusai_auth.setup_http_roles()");
is(sql("SELECT count(*) FROM pg_roles WHERE rolname IN "
	  . "('hokusai_authenticator', 'hokusai_anon', 'hokusai_api_user')"),
	'3', 'setup_http_roles() created the three roles');

###########################################################################
# Start PostgREST and nginx
###########################################################################

my $http = HokusaiHttp->start($node, 'http', pgrst_log => 'info');
my ($dir, $https_port, $http_port, $pgrst_port) = @$http{qw(dir https_port http_port pgrst_port)};
my $base = $http->{base};
my $cacert = $http->{cacert};

# curl(method, url, headers => [...], body => text, tls => 0|1)
# Returns { status, headers => {lower-case name => value}, body, json }.
sub curl
{
	my ($method, $url, %opt) = @_;
	my @cmd = ('curl', '-s', '-i', '--max-time', '20', '-X', $method);
	push @cmd, '--cacert', $cacert;
	push @cmd, '-H', $_ for @{ $opt{headers} || [] };
	if (defined $opt{body})
	{
		push @cmd, '-H', 'Content-Type: application/json' unless $opt{raw_type};
		push @cmd, '--data-binary', $opt{body};
	}
	push @cmd, $url;
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my ($head, $body) = split /\r\n\r\n/, $out, 2;
	my %h;
	my ($statusline, @lines) = split /\r\n/, $head // '';
	my ($status) = ($statusline // '') =~ m{^HTTP/\S+ (\d+)};
	for (@lines)
	{
		my ($n, $v) = /^([^:]+):\s*(.*)$/ or next;
		$h{ lc $n } = $v;
	}
	my $r = { status => $status // 0, headers => \%h, body => $body // '' };
	$r->{json} = eval { decode_json($r->{body}) } if length($r->{body} // '');
	return $r;
}

sub api { my ($method, $path, %opt) = @_; return curl($method, "$base$path", %opt); }
sub xkey { return ("X-API-Key: $_[0]"); }
sub bearer { return ("Authorization: Bearer $_[0]"); }

# status and error code of a response
sub is_error
{
	my ($r, $status, $code, $name) = @_;
	is($r->{status}, $status, "$name: HTTP $status") or diag($r->{body});
	is(ref $r->{json} eq 'HASH' ? $r->{json}{code} : undef, $code, "$name: code $code");
	ok(ref $r->{json} eq 'HASH' && exists $r->{json}{message} && exists $r->{json}{details}
		  && exists $r->{json}{hint},
		"$name: PostgREST error shape") if defined $code;
}

sub jwt { return $http->jwt(@_); }

###########################################################################
# Transport: HTTPS only, OpenAPI description
###########################################################################

my $r = curl('GET', "http://127.0.0.1:$http_port/api/v1/auth/keys");
is($r->{status}, 301, 'plain HTTP is redirected');
is($r->{headers}{location}, "https://127.0.0.1:$https_port/api/v1/auth/keys",
	'... to the same path over HTTPS');

$r = api('GET', '/');
is($r->{status}, 200, 'GET /api/v1/auth/: OpenAPI description, no credentials needed');
# docs/openapi.json, served by nginx (test/t/024_openapi.pl checks it in depth).
like($r->{headers}{'content-type'} // '', qr{^application/openapi\+json}, '... as application/openapi+json');
is($r->{json}{openapi} // '', '3.0.3', '... an OpenAPI 3.0.3 document');
is($r->{json}{servers}[0]{url}, '/api/v1/auth', '... with the public base path');
ok(exists $r->{json}{paths}{'/keys'} && exists $r->{json}{paths}{'/keys/{key_id}'}
	  && exists $r->{json}{paths}{'/keys/{key_id}/rotate'} && exists $r->{json}{paths}{'/keys/{key_id}/usage'}
	  && !grep({ m{^/rpc/} } keys %{ $r->{json}{paths} }),
	'... listing the public routes, not PostgREST\'s /rpc/ paths');
ok(!grep({ /key_hash/ } keys %{ $r->{json}{components}{schemas}{Key}{properties} || {} }),
	'... and no key_hash column');
like($r->{headers}{'strict-transport-security'} // '', qr/max-age/, 'HSTS header');

# PostgREST itself, bypassing nginx: no X-Forwarded-Proto, so refused.
$r = curl('GET', "http://127.0.0.1:$pgrst_port/keys", headers => ['X-API-Key: x']);
is_error($r, 403, 'https_required', 'PostgREST reached without the TLS proxy');

###########################################################################
# Users, a JWT, first keys
###########################################################################

my $alice = sql("SELECT hokusai_auth.create_user('alice')");
my $bob = sql("SELECT hokusai_auth.create_user('bob')");
my $alice_jwt = jwt($alice);
my $bob_jwt = jwt($bob);

$r = api('GET', '/keys');
is_error($r, 401, 'missing_credentials', 'no credentials');
is($r->{headers}{'www-authenticate'}, 'Bearer', '... WWW-Authenticate: Bearer');

$r = api('POST', '/keys', headers => [ bearer($alice_jwt) ],
	body => '{"name": "alice main", "metadata": {"team": "web"}}');
is($r->{status}, 201, 'POST /keys with a JWT: 201') or diag($r->{body});
my $akey = $r->{json}{key};
my $akey_id = $r->{json}{id};
is($r->{headers}{'cache-control'}, 'no-store', '... Cache-Control: no-store (the key is in it)');
is($r->{headers}{location}, "$base/keys/$akey_id", '... Location: the public URL of the new key');
ok(!exists $r->{headers}{'content-range'} && !exists $r->{headers}{'content-location'},
	'... no Content-Range, no Content-Location (PostgREST\'s internal paths)');
like($akey // '', $key_re, '... the plaintext key is in the response');
like($akey_id // '', $uuid_re, '... with the key id');
is($r->{json}{key_prefix}, substr($akey // '', 0, 16), '... and its prefix');
is($r->{json}{environment}, 'live', '... live by default');
is_deeply($r->{json}{metadata}, { team => 'web' }, '... metadata kept');
ok(!exists $r->{json}{key_hash} && !exists $r->{json}{user_id}, '... no key_hash, no user_id');
is(sql("SELECT user_id FROM hokusai_auth.api_keys WHERE id = '$akey_id'"), $alice,
	'... owned by the JWT subject');

$r = api('POST', '/keys', headers => [ bearer($bob_jwt) ], body => '{"name": "bob main"}');
is($r->{status}, 201, 'bob creates a key');
my $bkey = $r->{json}{key};
my $bkey_id = $r->{json}{id};

# A key made with an API key (Bearer hk_...), with every option.
$r = api('POST', '/keys', headers => [ bearer($akey) ],
	body => $json->encode({ name => 'alice ci', environment => 'test',
		expires_at => '2099-01-01T00:00:00Z', rate_limit_per_hour => 500,
		burst_limit => 20, allowed_ips => ['10.0.0.0/8', '2001:db8::/32'] }));
is($r->{status}, 201, 'POST /keys authenticated by API key (Bearer hk_...): 201') or diag($r->{body});
like($r->{json}{key} // '', qr/^hk_test_/, '... test environment');
is($r->{json}{rate_limit_per_hour}, 500, '... rate limit');
is($r->{json}{burst_limit}, 20, '... burst limit');
is_deeply($r->{json}{allowed_ips}, ['10.0.0.0/8', '2001:db8::/32'], '... allowed_ips');
like($r->{json}{expires_at} // '', qr/^2099-01-01/, '... expires_at');
my $aci_id = $r->{json}{id};
my $aci_key = $r->{json}{key};

###########################################################################
# GET /keys: own keys only, three ways to send the key
###########################################################################

for my $way (
	[ 'X-API-Key', [ xkey($akey) ], '' ],
	[ 'Authorization: Bearer hk_', [ bearer($akey) ], '' ],
	[ '?api_key=', [], "?api_key=$akey" ],
	[ 'a JWT', [ bearer($alice_jwt) ], '' ])
{
	my ($name, $h, $qs) = @$way;
	$r = api('GET', "/keys$qs", headers => $h);
	is($r->{status}, 200, "GET /keys with $name: 200") or diag($r->{body});
	is_deeply([ sort map { $_->{id} } @{ $r->{json} || [] } ], [ sort ($akey_id, $aci_id) ],
		"... alice's keys only");
	ok(!grep({ exists $_->{key_hash} || exists $_->{key} } @{ $r->{json} || [] }),
		'... never key_hash or the key');
}
$r = api('GET', '/keys?select=id,name,status&order=name&api_key=' . $akey);
is($r->{status}, 200, 'PostgREST select/order work, api_key removed from the query string');
is_deeply([ map { $_->{name} } @{ $r->{json} } ], [ 'alice ci', 'alice main' ], '... ordered');
is_deeply([ sort keys %{ $r->{json}[0] } ], [qw(id name status)], '... selected columns');

$r = api('GET', "/keys?api_key=$akey&api_key=$akey");
is_error($r, 400, 'invalid_query', 'api_key twice');

$r = api('GET', '/keys', headers => [ xkey($akey) ]);
like($r->{headers}{'x-ratelimit-limit'} // '', qr/^\d+$/, 'X-RateLimit-Limit on a key-authenticated response');
SKIP:
{
	skip 'rate limiter not built yet (remaining is NULL)', 2
	  unless defined $r->{headers}{'x-ratelimit-remaining'};
	like($r->{headers}{'x-ratelimit-remaining'}, qr/^\d+$/, 'X-RateLimit-Remaining');
	like($r->{headers}{'x-ratelimit-reset'} // '', qr/^\d+$/, 'X-RateLimit-Reset');
}
# The rate-limit headers of a 200 (docs/http.md, "Rate-limit headers").
{
	my $h = $r->{headers};
	my $now = time();
	is($h->{'x-ratelimit-resource'}, 'hourly', '200: X-RateLimit-Resource hourly');
	is($h->{'x-ratelimit-used'} + $h->{'x-ratelimit-remaining'}, $h->{'x-ratelimit-limit'},
		'200: X-RateLimit-Used + Remaining = Limit');
	ok($h->{'x-ratelimit-reset'} >= $now && $h->{'x-ratelimit-reset'} <= $now + 3661,
		"200: X-RateLimit-Reset is an epoch time within the window ($h->{'x-ratelimit-reset'}, now $now)");
	like($h->{'ratelimit-policy'} // '', qr/^"hourly";q=\d+;w=3600(?:, "burst";q=\d+;w=1)?$/,
		'200: RateLimit-Policy names the hourly limit (and the burst limit when there is one)');
	like($h->{ratelimit} // '', qr/^"hourly";r=$h->{'x-ratelimit-remaining'};t=\d+(?:, "burst";r=\d+;t=[0-2])?$/,
		'200: RateLimit gives both limits\' remaining and reset');
	my ($t) = ($h->{ratelimit} // '') =~ /t=(\d+)/;
	ok(defined $t && $t > 0 && $t <= 3660, "200: RateLimit's hourly t is within the window ($t)");
}

$r = api('GET', '/keys', headers => [ bearer($bob_jwt) ]);
is_deeply([ map { $_->{id} } @{ $r->{json} } ], [$bkey_id], "bob sees his key only");

###########################################################################
# Bad credentials
###########################################################################

is_error(api('GET', '/keys', headers => [ xkey('hk_live_short') ]), 401, 'malformed', 'malformed key');
my $unknown = sql("SELECT (hokusai_auth._new_key('live')).key");
$r = api('GET', '/keys', headers => [ xkey($unknown) ]);
is_error($r, 401, 'unknown', 'well-formed key nobody issued');
unlike($r->{body}, qr/\Q$unknown\E/, '... the error does not repeat the key');
like($r->{body}, qr/\Q@{[ substr($unknown, 0, 16) ]}\E/, '... only its prefix');
is_error(api('GET', '/keys', headers => [ bearer('not.a.jwt') ]), 401, 'PGRST301', 'a broken JWT');
is_error(api('GET', '/keys', headers => [ bearer(jwt('6f1e2d3c-0000-4000-8000-000000000000')) ]),
	401, 'invalid_token', 'a JWT for a user that does not exist');
is_error(api('GET', '/keys', headers => [ bearer($alice_jwt), xkey($bkey) ]),
	401, 'conflicting_credentials', "alice's JWT with bob's key");

###########################################################################
# Request bodies
###########################################################################

my @bad = (
	[ '{"name": "x",', 400, 'PGRST102', 'invalid JSON' ],
	[ '[{"name": "x"}]', 400, 'invalid_body', 'an array instead of an object' ],
	[ '"x"', 400, 'invalid_body', 'a string instead of an object' ],
	[ '{}', 400, 'invalid_field', 'name missing' ],
	[ '{"name": 5}', 400, 'invalid_field', 'name is a number' ],
	[ '{"name": ""}', 400, 'invalid_field', 'name empty' ],
	[ '{"name": "x", "nmae": "y"}', 400, 'unknown_field', 'unknown field' ],
	[ '{"name": "x", "key_hash": "y"}', 400, 'unknown_field', 'key_hash in the body' ],
	[ '{"name": "x", "environment": "prod"}', 400, 'invalid_field', 'bad environment' ],
	[ '{"name": "x", "rate_limit_per_hour": 0}', 400, 'invalid_field', 'rate limit 0' ],
	[ '{"name": "x", "rate_limit_per_hour": 1.5}', 400, 'invalid_field', 'rate limit not an integer' ],
	[ '{"name": "x", "rate_limit_per_hour": "10"}', 400, 'invalid_field', 'rate limit as a string' ],
	[ '{"name": "x", "burst_limit": 99999999}', 400, 'invalid_field', 'burst limit too large' ],
	[ '{"name": "x", "expires_at": "tomorrow"}', 400, 'invalid_field', 'expires_at not ISO 8601' ],
	[ '{"name": "x", "expires_at": "2001-01-01T00:00:00Z"}', 400, 'invalid_field', 'expires_at in the past' ],
	[ '{"name": "x", "allowed_ips": "10.0.0.0/8"}', 400, 'invalid_field', 'allowed_ips not an array' ],
	[ '{"name": "x", "allowed_ips": []}', 400, 'invalid_field', 'allowed_ips empty' ],
	[ '{"name": "x", "allowed_ips": ["10.1.0.0/8"]}', 400, 'invalid_field', 'allowed_ips host bits set' ],
	[ '{"name": "x", "allowed_ips": ["example.com"]}', 400, 'invalid_field', 'allowed_ips a name' ],
	[ '{"name": "x", "metadata": [1]}', 400, 'invalid_field', 'metadata not an object' ],
);
my $before = sql('SELECT count(*) FROM hokusai_auth.api_keys');
for my $b (@bad)
{
	my ($body, $status, $code, $name) = @$b;
	is_error(api('POST', '/keys', headers => [ bearer($alice_jwt) ], body => $body), $status, $code,
		"POST /keys: $name");
}
is(sql('SELECT count(*) FROM hokusai_auth.api_keys'), $before, 'no bad request created a key');
is_error(api('PUT', '/keys', headers => [ bearer($alice_jwt) ]), 405, 'method_not_allowed', 'PUT /keys');

###########################################################################
# Another user's key, a missing key, a malformed id
###########################################################################

for my $route ([ 'DELETE', "/keys/$bkey_id" ], [ 'POST', "/keys/$bkey_id/rotate" ],
	[ 'GET', "/keys/$bkey_id/usage" ])
{
	is_error(api($route->[0], $route->[1], headers => [ xkey($akey) ]), 404, 'not_found',
		"$route->[0] on another user's key");
}
is(sql("SELECT is_active FROM hokusai_auth.api_keys WHERE id = '$bkey_id'"), 't',
	"bob's key untouched");
is_error(api('DELETE', '/keys/00000000-0000-4000-8000-000000000000', headers => [ xkey($akey) ]),
	404, 'not_found', 'DELETE a key that does not exist');
is_error(api('DELETE', '/keys/not-a-uuid', headers => [ xkey($akey) ]), 400, 'invalid_field',
	'DELETE with a malformed id');
# GET /keys/{id}: the key itself; another user's, or none, is 404.
$r = api('GET', "/keys/$akey_id", headers => [ xkey($akey) ]);
is($r->{status}, 200, 'GET /keys/{id}: 200') or diag($r->{body});
is(ref $r->{json} eq 'HASH' ? $r->{json}{id} : undef, $akey_id, '... one object, the key');
ok(ref $r->{json} eq 'HASH' && !exists $r->{json}{key_hash} && !exists $r->{json}{key},
	'... without key_hash or the key');
is($r->{headers}{'cache-control'}, 'no-store', '... Cache-Control: no-store');
ok(!exists $r->{headers}{'content-range'} && !exists $r->{headers}{'content-location'},
	'... no Content-Range, no Content-Location');
is(api('HEAD', "/keys/$akey_id", headers => [ xkey($akey) ])->{status}, 200, 'HEAD /keys/{id}: 200');
is_error(api('GET', "/keys/$bkey_id", headers => [ xkey($akey) ]), 404, 'not_found',
	"GET /keys/{id} of another user's key");
is_error(api('GET', '/keys/00000000-0000-4000-8000-000000000000', headers => [ bearer($alice_jwt) ]),
	404, 'not_found', 'GET /keys/{id} of a key that does not exist');
is_error(api('GET', '/keys/not-a-uuid', headers => [ xkey($akey) ]), 400, 'invalid_field',
	'GET /keys/{id} with a malformed id');
is_error(api('GET', "/keys/$akey_id"), 401, 'missing_credentials', 'GET /keys/{id} without credentials');
$r = api('PUT', "/keys/$akey_id", headers => [ xkey($akey) ]);
is_error($r, 405, 'method_not_allowed', 'PUT /keys/{id}');
is($r->{headers}{allow}, 'GET, HEAD, PATCH, DELETE', '... Allow: GET, HEAD, PATCH, DELETE');
# The list keeps PostgREST's paging range.
$r = api('GET', '/keys?select=id', headers => [ xkey($akey) ]);
like($r->{headers}{'content-range'} // '', qr{^\d+-\d+/}, 'GET /keys keeps Content-Range (paging)');
ok(!exists $r->{headers}{'content-location'}, '... but not Content-Location');

# Bodies are JSON: curl -d's form type is a 415 with a hint.
$r = api('POST', '/keys', headers => [ bearer($alice_jwt) ], body => 'name=x', raw_type => 1);
is_error($r, 415, 'unsupported_media_type', "POST /keys with curl -d's form Content-Type");
like($r->{json}{hint} // '', qr{Content-Type: application/json}, '... the hint says what to send');
is_error(api('POST', '/keys', headers => [ bearer($alice_jwt), 'Content-Type: text/plain' ],
		body => '{"name": "x"}', raw_type => 1), 415, 'unsupported_media_type', 'POST /keys as text/plain');
is(api('POST', '/keys', headers => [ bearer($alice_jwt), 'Content-Type: application/json; charset=utf-8' ],
		body => '{"name": "charset"}', raw_type => 1)->{status}, 201, 'application/json; charset=utf-8: 201');
is_error(api('POST', "/keys/$akey_id/rotate", headers => [ bearer($alice_jwt) ],
		body => 'grace_seconds=5', raw_type => 1), 415, 'unsupported_media_type', 'rotate with a form body');

###########################################################################
# Rotate, revoke
###########################################################################

$r = api('POST', "/keys/$aci_id/rotate", headers => [ xkey($akey) ], body => '{"grace_seconds": "soon"}');
is_error($r, 400, 'invalid_field', 'rotate: grace_seconds not an integer');
$r = api('POST', "/keys/$aci_id/rotate", headers => [ xkey($akey) ], body => '{"grace": 5}');
is_error($r, 400, 'unknown_field', 'rotate: unknown field');
$r = api('POST', "/keys/$aci_id/rotate", headers => [ xkey($akey) ]);
is($r->{status}, 201, 'rotate without a body: 201') or diag($r->{body});
like($r->{json}{key} // '', qr/^hk_test_/, '... new plaintext key, same environment');
is($r->{headers}{'cache-control'}, 'no-store', '... Cache-Control: no-store');
is($r->{headers}{location}, "$base/keys/$r->{json}{id}", '... Location: the new key');
ok(!exists $r->{headers}{'content-range'} && !exists $r->{headers}{'content-location'},
	'... no Content-Range, no Content-Location');
is($r->{json}{rotated_from}, $aci_id, '... rotated_from the old key');
is($r->{json}{rate_limit_per_hour}, 500, '... same settings');
my $rot_id = $r->{json}{id};
is(sql("SELECT status FROM hokusai_auth.validate_key('$aci_key', '10.0.0.1')"), 'revoked',
	'... the old key stopped (no grace)');
is_error(api('POST', "/keys/$aci_id/rotate", headers => [ xkey($akey) ]), 409, 'conflict',
	'rotating a revoked key');
$r = api('POST', "/keys/$rot_id/rotate", headers => [ xkey($akey) ], body => '{"grace_seconds": 3600}');
is($r->{status}, 201, 'rotate with grace_seconds');
my $rot2_id = $r->{json}{id};
ok(defined $r->{json}{old_key_ends_at}, '... says when the old key ends');
is_error(api('POST', "/keys/$rot_id/rotate", headers => [ xkey($akey) ]), 409, 'conflict',
	'rotating a key twice');

$r = api('DELETE', "/keys/$rot2_id", headers => [ bearer($alice_jwt) ], body => '{"reason": "test"}');
is($r->{status}, 200, 'DELETE /keys/{id} with a reason: 200') or diag($r->{body});
is($r->{json}{revoked}, JSON::PP::true, '... revoked');
is($r->{json}{status}, 'revoked', '... status revoked');
$r = api('DELETE', "/keys/$rot2_id", headers => [ bearer($alice_jwt) ]);
is($r->{status}, 200, 'DELETE again: 200');
is($r->{json}{revoked}, JSON::PP::false, '... revoked false: it already was');
is_error(api('DELETE', "/keys/$rot2_id", headers => [ bearer($alice_jwt) ], body => '{"why": 1}'),
	400, 'unknown_field', 'DELETE with an unknown field');

# A key revokes itself; afterwards it is refused.
my ($x_uid, $x_kid, $x_key) = (undef, undef, undef);
$r = api('POST', '/keys', headers => [ bearer($alice_jwt) ], body => '{"name": "short-lived"}');
($x_kid, $x_key) = ($r->{json}{id}, $r->{json}{key});
is(api('DELETE', "/keys/$x_kid", headers => [ xkey($x_key) ])->{status}, 200, 'a key revokes itself');
is_error(api('GET', '/keys', headers => [ xkey($x_key) ]), 401, 'revoked', 'a revoked key');

# Expired.
$r = api('POST', '/keys', headers => [ bearer($alice_jwt) ], body => '{"name": "expiring"}');
my ($e_kid, $e_key) = ($r->{json}{id}, $r->{json}{key});
sql("UPDATE hokusai_auth.api_keys SET expires_at = now() - interval '1 second' WHERE id = '$e_kid'");
# validate_key says expired, or revoked once the background worker's
# expire_keys() has deactivated the row; both are 401.
$r = api('GET', '/keys', headers => [ xkey($e_key) ]);
is($r->{status}, 401, 'an expired key: 401');
like($r->{json}{code} // '', qr/^(?:expired|revoked)$/, '... code expired (revoked once the worker deactivated it)');

# The audit log knows who did it over HTTP.
is(sql("SELECT actor_key_id = '$akey_id' AND actor_sub IS NULL AND client_addr = '127.0.0.1' "
	  . "FROM hokusai_auth.audit_log WHERE action = 'rotate' AND api_key_id = '$aci_id'"),
	't', 'audit: rotate by API key, with the client address');
is(sql("SELECT actor_sub FROM hokusai_auth.audit_log WHERE action = 'revoke' AND api_key_id = '$rot2_id'"),
	$alice, 'audit: revoke by JWT records the subject');

###########################################################################
# IP allow-lists and X-Forwarded-For
###########################################################################

$r = api('POST', '/keys', headers => [ bearer($alice_jwt) ],
	body => '{"name": "office", "allowed_ips": ["10.0.0.0/8"]}');
my $ip_key = $r->{json}{key};
my $ip_kid = $r->{json}{id};
is_error(api('GET', '/keys', headers => [ xkey($ip_key) ]), 403, 'ip_denied',
	'IP not allowed (client 127.0.0.1)');
$r = api('GET', '/keys', headers => [ xkey($ip_key), 'X-Forwarded-For: 10.1.2.3' ]);
is($r->{status}, 200, 'client 10.1.2.3 behind a trusted proxy (127.0.0.1): allowed');
$r = api('GET', '/keys', headers => [ xkey($ip_key), 'X-Forwarded-For: 10.1.2.3, 192.0.2.1' ]);
is_error($r, 403, 'ip_denied', 'right-most untrusted address counts, not a spoofed left one');
# Trust nobody: X-Forwarded-For from the client no longer helps.
sql("ALTER SYSTEM SET hokusai_auth.trusted_proxies = ''");
sql("SELECT pg_reload_conf()");
usleep(300_000);
is_error(api('GET', '/keys', headers => [ xkey($ip_key), 'X-Forwarded-For: 10.1.2.3' ]), 403,
	'ip_denied', 'no trusted proxies: the nearest address (nginx saw 127.0.0.1) counts');
sql("ALTER SYSTEM RESET hokusai_auth.trusted_proxies");
sql("SELECT pg_reload_conf()");
usleep(300_000);

###########################################################################
# Rate limit: 3 per hour, the 4th is 429
###########################################################################

$r = api('POST', '/keys', headers => [ bearer($alice_jwt) ],
	body => '{"name": "limited", "rate_limit_per_hour": 3}');
my ($l_kid, $l_key) = ($r->{json}{id}, $r->{json}{key});
for my $i (1 .. 3)
{
	$r = api('GET', '/keys?select=id', headers => [ xkey($l_key) ]);
	is($r->{status}, 200, "limited key, request $i: 200");
	is($r->{headers}{'x-ratelimit-limit'}, '3', "... X-RateLimit-Limit 3");
	is($r->{headers}{'x-ratelimit-remaining'}, 3 - $i, "... X-RateLimit-Remaining " . (3 - $i));
}
$r = api('GET', '/keys?select=id', headers => [ xkey($l_key) ]);
is_error($r, 429, 'rate_limited', 'limited key, request 4');
like($r->{headers}{'retry-after'} // '', qr/^[1-9]\d*$/, '... Retry-After in seconds');
is($r->{headers}{'x-ratelimit-limit'}, '3', '... X-RateLimit-Limit');
is($r->{headers}{'x-ratelimit-remaining'}, '0', '... X-RateLimit-Remaining 0');
like($r->{headers}{'x-ratelimit-reset'} // '', qr/^[1-9]\d*$/, '... X-RateLimit-Reset');
{
	my $h = $r->{headers};
	my $now = time();
	is($h->{'x-ratelimit-resource'}, 'hourly', '... X-RateLimit-Resource hourly: the hourly limit refused');
	is($h->{'x-ratelimit-used'}, '3', '... X-RateLimit-Used 3');
	ok($h->{'x-ratelimit-reset'} > $now && $h->{'x-ratelimit-reset'} <= $now + 3661,
		"... X-RateLimit-Reset an epoch time at most the window (+ one sub-bucket) away ($h->{'x-ratelimit-reset'}, now $now)");
	ok($h->{'retry-after'} <= 3660 && $h->{'x-ratelimit-reset'} - $now <= $h->{'retry-after'} + 1,
		'... Retry-After is the hourly wait, when X-RateLimit-Reset is');
	like($h->{ratelimit} // '', qr/^"hourly";r=0;t=\d+(?:, "burst";r=\d+;t=\d)?$/, '... RateLimit: hourly r=0');
	is($r->{json}{message}, 'hourly rate limit exceeded', '... the message names the hourly limit');
	like($r->{json}{details} // '', qr/hourly limit of 3 requests/, '... so do the details');
}
# A burst refusal: one request per second.
$r = api('POST', '/keys', headers => [ bearer($alice_jwt) ],
	body => '{"name": "bursty", "rate_limit_per_hour": 100, "burst_limit": 1}');
my $q_key = $r->{json}{key};
my $q_first = api('GET', '/keys?select=id', headers => [ xkey($q_key) ]);
is($q_first->{headers}{'ratelimit-policy'}, '"hourly";q=100;w=3600, "burst";q=1;w=1',
	'RateLimit-Policy of a key with a burst limit of 1');
my $q_429;
for (1 .. 5)
{
	$r = api('GET', '/keys?select=id', headers => [ xkey($q_key) ]);
	if ($r->{status} == 429) { $q_429 = $r; last; }
}
ok($q_429, 'a second request within a second: 429');
SKIP:
{
	skip 'no burst refusal', 9 unless $q_429;
	my $h = $q_429->{headers};
	my $now = time();
	is($q_429->{json}{code}, 'rate_limited', 'burst 429: code rate_limited');
	is($q_429->{json}{message}, 'burst limit exceeded', 'burst 429: the message names the burst limit');
	like($q_429->{json}{details} // '', qr/burst limit of 1 requests per second/, 'burst 429: so do the details');
	is($h->{'x-ratelimit-resource'}, 'burst', 'burst 429: X-RateLimit-Resource burst');
	is($h->{'x-ratelimit-limit'}, '1', 'burst 429: X-RateLimit-Limit is the burst limit');
	is($h->{'x-ratelimit-remaining'}, '0', 'burst 429: X-RateLimit-Remaining 0 (not the hourly 99)');
	like($h->{'retry-after'} // '', qr/^[12]$/, 'burst 429: Retry-After 1 or 2 seconds');
	ok($h->{'x-ratelimit-reset'} >= $now && $h->{'x-ratelimit-reset'} <= $now + 3,
		"burst 429: X-RateLimit-Reset within the second ($h->{'x-ratelimit-reset'}, now $now)");
	like($h->{ratelimit} // '', qr/^"hourly";r=\d+;t=\d+, "burst";r=0;t=[12]$/, 'burst 429: RateLimit burst r=0');
}
# A write is limited the same way.
is(api('POST', '/keys', headers => [ xkey($l_key) ], body => '{"name": "x"}')->{status}, 429,
	'a POST with the exhausted key: 429');

###########################################################################
# Usage summary
###########################################################################

$r = api('GET', "/keys/$akey_id/usage", headers => [ xkey($akey) ]);
is($r->{status}, 200, 'GET /keys/{id}/usage: 200') or diag($r->{body});
is($r->{json}{key_id}, $akey_id, '... for the key');
like($r->{json}{requests} // '', qr/^\d+$/, '... a request count');
like($r->{json}{p99_response_ms} // 'null', qr/^(?:null|[\d.]+)$/, '... latency percentiles (usage_summary)');
ok(exists $r->{json}{by_status} && exists $r->{json}{by_endpoint}, '... by status and endpoint');
$r = api('GET', "/keys/$akey_id/usage?since=2026-01-01T00:00:00Z&until=2026-01-02T00:00:00Z&api_key=$akey");
is($r->{status}, 200, 'usage with since, until and the key in the query string');
like($r->{json}{since} // '', qr/^2026-01-01T00:00:00/, '... since');
is_error(api('GET', "/keys/$akey_id/usage?since=yesterday", headers => [ xkey($akey) ]), 400,
	'invalid_field', 'usage: since not a timestamp');
is_error(api('GET', "/keys/$akey_id/usage?until=2020-01-01T00:00:00Z&since=2021-01-01T00:00:00Z",
		headers => [ xkey($akey) ]), 400, 'invalid_field', 'usage: since after until');
is_error(api('GET', "/keys/$akey_id/usage?limit=5", headers => [ xkey($akey) ]), 400,
	'invalid_query', 'usage: unknown query parameter');
is_error(api('GET', "/keys/$akey_id/usage"), 401, 'missing_credentials', 'usage without credentials');

###########################################################################
# Refusals: counted in usage, kept out of the server log
###########################################################################

# A 429 storm writes nothing to the PostgreSQL log (log_statement = all
# still logs the statements; no ERROR, DETAIL or STATEMENT line).
my $log_offset = -s $node->logfile;
my $storm = 30;
my $storm_429 = 0;
for (1 .. $storm)
{
	$storm_429++ if api('GET', '/keys?select=id', headers => [ xkey($l_key) ])->{status} == 429;
}
is($storm_429, $storm, "a storm of $storm requests over the limit: all 429");
is_error(api('GET', '/keys', headers => [ xkey($ip_key) ]), 403, 'ip_denied', 'one more ip_denied');
is_error(api('GET', '/keys', headers => [ 'X-API-Key: hk_live_' . ('A' x 46) ]), 401, 'malformed',
	'one more 401');
my $storm_log = substr(slurp_file($node->logfile), $log_offset);
my @storm_errors = grep { /\b(?:ERROR|DETAIL|STATEMENT):/ } split /\n/, $storm_log;
is(scalar @storm_errors, 0, 'the refusals wrote no ERROR, DETAIL or STATEMENT line to the server log')
  or diag(join("\n", @storm_errors[0 .. ($#storm_errors < 5 ? $#storm_errors : 5)]));
like($storm_log, qr/pre_request/, '... (the server did log the statements)');

# Every answered request of a known key is in usage with its status,
# refusals included; the worker writes them within a flush interval.
ok($node->poll_query_until('postgres',
		"SELECT count(*) >= 2 + $storm FROM hokusai_auth.api_key_usage "
		  . "WHERE api_key_id = '$l_kid' AND status_code = 429"),
	'usage: the 429s are recorded with status 429');
is(sql("SELECT string_agg(status_code || ':' || n, ',' ORDER BY status_code) FROM "
		  . "(SELECT status_code, count(*) n FROM hokusai_auth.api_key_usage "
		  . "WHERE api_key_id = '$l_kid' GROUP BY 1) s"),
	'200:3,429:' . (2 + $storm), '... each once: 3 admitted, ' . (2 + $storm) . ' refused');
ok($node->poll_query_until('postgres',
		"SELECT count(*) >= 3 FROM hokusai_auth.api_key_usage "
		  . "WHERE api_key_id = '$ip_kid' AND status_code = 403"),
	'usage: ip_denied requests are recorded with status 403');
$r = api('GET', "/keys/$l_kid/usage", headers => [ bearer($alice_jwt) ]);
is_deeply([ sort map { $_->{status_code} // $_->{status} // '' } @{ $r->{json}{by_status} || [] } ],
	[ 200, 429 ], 'GET /keys/{id}/usage: by_status shows 200 and 429')
  or diag($r->{body});

###########################################################################
# PostgREST or the database unavailable: 503 with Retry-After
###########################################################################

$node->stop;
$r = api('GET', '/keys', headers => [ xkey($akey) ]);
is($r->{status}, 503, 'database stopped: 503') or diag($r->{body});
is($r->{headers}{'retry-after'}, '5', '... Retry-After: 5');
is(ref $r->{json} eq 'HASH' ? $r->{json}{code} : undef, 'unavailable', '... code unavailable');
is($r->{headers}{'cache-control'}, 'no-store', '... Cache-Control: no-store');
$http->{procs}[0]->kill_kill;
$r = api('POST', '/keys', headers => [ bearer($alice_jwt) ], body => '{"name": "x"}');
is($r->{status}, 503, 'PostgREST stopped: 503') or diag($r->{body});
is($r->{headers}{'retry-after'}, '5', '... Retry-After: 5');
is(ref $r->{json} eq 'HASH' ? $r->{json}{code} : undef, 'unavailable', '... code unavailable');
$r = api('DELETE', "/keys/$akey_id", headers => [ xkey($akey) ]);
is($r->{status}, 503, 'PostgREST stopped, DELETE /keys/{id}: 503');
$r = api('GET', "/keys/$akey_id", headers => [ xkey($akey) ]);
is($r->{status}, 503, 'PostgREST stopped, GET /keys/{id}: 503');

###########################################################################
# Nothing leaked into logs
###########################################################################

my $logs = slurp_file("$dir/nginx-access.log") . slurp_file("$dir/postgrest.log");
unlike($logs, qr/hk_(?:live|test)_[0-9A-Za-z]{46}/, 'no plaintext key in the nginx or PostgREST logs');
like(slurp_file("$dir/postgrest.log"), qr{GET /keys}, '... (PostgREST did log requests)');
# PostgREST speaks the extended protocol ("execute" lines, parameters in
# DETAIL lines); this test's own psql calls are simple "statement:" lines,
# some with keys spelt out on purpose, and are left out.
my $server_log = join('', grep { !/ LOG:  statement: / } split(/^/m, slurp_file($node->logfile)));
unlike($server_log, qr/hk_(?:live|test)_[0-9A-Za-z]{46}/,
	'no plaintext key in the PostgreSQL log from PostgREST, with log_statement = all');
like($server_log, qr/execute .*request\.headers/, '... (the server did log PostgREST\'s statements)');

$http->stop;
done_testing();
