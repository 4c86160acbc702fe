# No API key reaches a log or an error body, wherever a client puts it
# (docs/security/api-keys.md, docs/http.md): a real key is sent in every
# casing, percent-encoding and position we could think of, through nginx
# (TLS) -> PostgREST 12 -> PostgreSQL with every statement logged.  The one
# legitimate query slot (the api_key parameter, its name in any case)
# authenticates; elsewhere in the URI, or in a header PostgREST repeats in
# its errors, the key is a 4xx in PostgREST's error shape; in a header
# that PostgREST only logs (Referer, User-Agent) or ignores, the request
# goes through (authenticated by X-API-Key).  No HTTPS response repeats
# the key.  At the end nginx's access and error logs, PostgREST's log
# (level info: one line per request) and PostgreSQL's log (log_statement =
# all) are percent-decoded until nothing changes and searched,
# case-insensitively, for the keys' secret parts.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use HokusaiTest;
use HokusaiHttp;

my $node = HokusaiTest::new_node('leaks',
	extra_conf => "log_statement = 'all'\nlog_parameter_max_length = 0\n");
sub sql { return $node->safe_psql('postgres', shift); }
sql("SELECT hokusai_auth.setup_http_roles()");

my $http = HokusaiHttp->start($node, 'leaks', pgrst_log => 'info');
my ($dir, $https_port, $http_port) = @$http{qw(dir https_port http_port)};
my $origin = "https://127.0.0.1:$https_port";
my $cacert = $http->{cacert};

# req(method, target, headers => [...], body => text, origin => url): the
# request target is sent exactly as given (curl --request-target), so
# nothing is normalised or encoded on the way.  Returns { status, raw
# (status line, headers and body), body, json }.
sub req
{
	my ($method, $target, %opt) = @_;
	my @cmd = ('curl', '-s', '-i', '--max-time', '20', '--cacert', $cacert, '--path-as-is',
		'-X', $method, '--request-target', $target);
	push @cmd, '-H', $_ for @{ $opt{headers} || [] };
	push @cmd, '--data-binary', $opt{body} if defined $opt{body};
	push @cmd, ($opt{origin} // $origin) . '/';
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my ($head, $body) = split /\r\n\r\n/, $out, 2;
	my ($status) = ($head // '') =~ m{^HTTP/\S+ (\d+)};
	my $r = { status => $status // 0, raw => $out, body => $body // '' };
	$r->{json} = eval { decode_json($r->{body}) } if length $r->{body};
	return $r;
}

# Percent-decoded until nothing changes (so %2568 counts as h), lower case.
sub decoded
{
	my ($s) = @_;
	for (1 .. 10)
	{
		my $before = $s;
		$s =~ s/%([0-9A-Fa-f]{2})/chr(hex($1))/ge;
		last if $s eq $before;
	}
	return lc $s;
}

# Every character of s percent-encoded, upper- or lower-case hex.
sub enc_all { my ($s, $fmt) = @_; return join '', map { sprintf($fmt // '%%%02x', ord) } split //, $s; }

###########################################################################
# A user, a JWT, two real keys (live and test) made over HTTP
###########################################################################

my $uid = sql("SELECT hokusai_auth.create_user('leaky')");
my $jwt = $http->jwt($uid);
my $r = req('POST', '/api/v1/auth/keys', headers => [ "Authorization: Bearer $jwt",
		'Content-Type: application/json' ], body => '{"name": "leak test"}');
is($r->{status}, 201, 'a live key made over HTTP') or diag($r->{body});
my ($key, $kid) = @{ $r->{json} }{qw(key id)};
$r = req('POST', '/api/v1/auth/keys', headers => [ "Authorization: Bearer $jwt",
		'Content-Type: application/json' ], body => '{"name": "leak test 2", "environment": "test"}');
my $tkey = $r->{json}{key};
like($key // '', qr/\Ahk_live_[0-9A-Za-z]{46}\z/, '... live key');
like($tkey // '', qr/\Ahk_test_[0-9A-Za-z]{46}\z/, '... test key');
my $body = substr($key, 8);        # the 46 characters after hk_live_
my @secrets = map { substr($_, 16, 32) } ($key, $tkey);
my @env = qw(live test);

my $keys = '/api/v1/auth/keys';
my $usage = "$keys/$kid/usage";
my $xkey = "X-API-Key: $key";

###########################################################################
# Every variant: [name, method, target, headers, expected]
#   expected 'auth': 200 and the caller's keys; [status, code]: that error
###########################################################################

my $misplaced = [ 400, 'misplaced_key' ];
my @variants = (
	# The query parameter nginx takes: its name in any case.
	[ '?api_key=', 'GET', "$keys?api_key=$key", [], 'auth' ],
	[ '?API_KEY=', 'GET', "$keys?API_KEY=$key", [], 'auth' ],
	[ '?Api_Key= first, then select', 'GET', "$keys?Api_Key=$key&select=id", [], 'auth' ],
	[ 'select, then ?aPi_kEy=', 'GET', "$keys?select=id&aPi_kEy=$key", [], 'auth' ],
	[ '?API_KEY= on the usage route', 'GET', "$usage?API_KEY=$key&since=2020-01-01T00:00:00Z", [], 'auth' ],
	[ '?Api_Key= on a path with a double slash', 'GET', "/$keys?Api_Key=$key", [], 'auth' ],
	[ '?api_key= then a raw #fragment', 'GET', "$keys?api_key=$key#x", [], 'auth' ],

	# Given twice, in mixed case.
	[ '?API_KEY= and ?api_key=', 'GET', "$keys?API_KEY=$key&api_key=$key", [], [ 400, 'invalid_query' ] ],
	[ '?api_key= and ?Api_Key=', 'GET', "$keys?api_key=$key&Api_Key=$key", [], [ 400, 'invalid_query' ] ],
	[ '?API_KEY= twice on the usage route', 'GET', "$usage?API_KEY=$key&API_KEY=$key", [], [ 400, 'invalid_query' ] ],

	# The parameter's name percent-encoded or mangled: not the key slot.
	[ '?api%5Fkey=', 'GET', "$keys?api%5Fkey=$key", [], $misplaced ],
	[ '?%61pi_key=', 'GET', "$keys?%61pi_key=$key", [], $misplaced ],
	[ '?API%5fKEY=', 'GET', "$keys?API%5fKEY=$key", [], $misplaced ],
	[ '?api_key[]=', 'GET', "$keys?api_key[]=$key", [], $misplaced ],
	[ '?xapi_key=', 'GET', "$keys?xapi_key=$key", [], $misplaced ],
	[ '?select=id;api_key= (semicolon)', 'GET', "$keys?select=id;api_key=$key", [], $misplaced ],
	[ '?x=1#api_key= (raw fragment)', 'GET', "$keys?x=1#api_key=$key", [ $xkey ], $misplaced ],
	[ '?x=1%23api_key=', 'GET', "$keys?x=1%23api_key=$key", [ $xkey ], $misplaced ],

	# The value percent-encoded in the key slot: not a key (401 malformed).
	[ '?api_key=hk%5Flive%5F...', 'GET', "$keys?api_key=hk%5Flive%5F$body", [], [ 401, 'malformed' ] ],
	[ '?api_key=%68%6B_live_...', 'GET', "$keys?api_key=%68%6B_live_$body", [], [ 401, 'malformed' ] ],

	# The key as another parameter's value.
	[ '?select=key', 'GET', "$keys?select=$key", [], $misplaced ],
	[ '?select=key with X-API-Key', 'GET', "$keys?select=$key", [ $xkey ], $misplaced ],
	[ '?order=key', 'GET', "$keys?select=id&order=$key", [ $xkey ], $misplaced ],
	[ '?key_prefix=eq.key', 'GET', "$keys?key_prefix=eq.$key", [ $xkey ], $misplaced ],
	[ '?api_key= and ?select=key', 'GET', "$keys?api_key=$key&select=$key", [], $misplaced ],
	[ '?select=hk%5Flive%5F...', 'GET', "$keys?select=hk%5Flive%5F$body", [ $xkey ], $misplaced ],
	[ '?select= every prefix character encoded', 'GET',
		"$keys?select=" . enc_all('hk_live_', '%%%02X') . $body, [ $xkey ], $misplaced ],
	[ '?select= the whole key encoded', 'GET', "$keys?select=" . enc_all($key), [ $xkey ], $misplaced ],
	[ '?select=hk%255Flive%255F... (encoded twice)', 'GET', "$keys?select=hk%255Flive%255F$body",
		[ $xkey ], $misplaced ],
	[ '?select=HK_LIVE_... (upper case)', 'GET', "$keys?select=HK_LIVE_$body", [ $xkey ], $misplaced ],
	[ '?select=test key', 'GET', "$keys?select=$tkey", [ $xkey ], $misplaced ],
	[ '?since=key on the usage route', 'GET', "$usage?since=$key", [ $xkey ], $misplaced ],
	[ 'OpenAPI route ?key', 'GET', "/api/v1/auth/?$key", [], $misplaced ],

	# The key in the path.
	[ 'DELETE /keys/{key}', 'DELETE', "$keys/$key", [ $xkey ], $misplaced ],
	[ 'POST /keys/{key}/rotate', 'POST', "$keys/$key/rotate", [ $xkey ], $misplaced ],
	[ 'GET /keys/{key}/usage', 'GET', "$keys/$key/usage", [ $xkey ], $misplaced ],
	[ 'DELETE /keys/{key, prefix encoded}', 'DELETE', "$keys/%68%6b%5f%6c%69%76%65%5f$body", [ $xkey ], $misplaced ],
	[ 'DELETE /keys/{key, every character encoded}', 'DELETE', "$keys/" . enc_all($key, '%%%02X'), [ $xkey ],
		$misplaced ],
	[ 'DELETE /keys/{key, encoded twice}', 'DELETE', "$keys/%2568%256b_live_$body", [ $xkey ], $misplaced ],
	[ '/keys%3Fapi_key=', 'GET', "$keys%3Fapi_key=$key", [], $misplaced ],
	[ '/keys%3FAPI_KEY= with X-API-Key', 'GET', "$keys%3FAPI_KEY=$key", [ $xkey ], $misplaced ],
	[ '/keys%23key', 'GET', "$keys%23$key", [ $xkey ], $misplaced ],
	[ '/keys#key (raw fragment)', 'GET', "$keys#$key", [ $xkey ], $misplaced ],
	[ '/keys#x?api_key= (fragment before the query)', 'GET', "$keys#x?api_key=$key", [ $xkey ], $misplaced ],
	[ '/api/v1/auth/{key}', 'GET', "/api/v1/auth/$key", [], $misplaced ],
	[ '/{key}', 'GET', "/$key", [], $misplaced ],
	[ '/{test key}?api_key=', 'GET', "/$tkey?api_key=$key", [], $misplaced ],
	[ 'absolute-form request target', 'GET', "$origin$keys?select=$key", [ $xkey ], $misplaced ],

	# Headers PostgREST logs (Referer, User-Agent): not forwarded.
	[ 'Referer with ?api_key=', 'GET', $keys, [ $xkey, "Referer: https://app.example/?api_key=$key" ], 'auth' ],
	[ 'User-Agent with the key', 'GET', $keys, [ $xkey, "User-Agent: agent/1 $key" ], 'auth' ],
	[ 'Host with the key', 'GET', $keys, [ $xkey, "Host: $key" ], 'auth' ],
	[ 'X-Forwarded-For with the key', 'GET', $keys, [ $xkey, "X-Forwarded-For: $key" ], 'auth' ],
	[ 'Cookie with the key', 'GET', $keys, [ $xkey, "Cookie: session=$key" ], 'auth' ],
	[ 'a second Prefer header with the key', 'GET', $keys,
		[ $xkey, 'Prefer: handling=strict', "Prefer: $key" ], 'auth' ],
	[ 'Authorization: Basic key', 'GET', $keys, [ "Authorization: Basic $key" ],
		[ 401, 'missing_credentials' ] ],
	[ 'Authorization: Bearer x.key.y (not a JWT)', 'GET', $keys, [ "Authorization: Bearer x.$key.y" ],
		[ 401, 'PGRST301' ] ],
	# Headers PostgREST repeats in its errors.
	[ 'Accept: key', 'GET', $keys, [ $xkey, "Accept: $key" ], $misplaced ],
	[ 'Prefer: handling=strict, key', 'GET', $keys, [ $xkey, "Prefer: handling=strict, $key" ], $misplaced ],
);

my %ok;
for my $v (@variants)
{
	my ($name, $method, $target, $headers, $want) = @$v;
	my $r = req($method, $target, headers => $headers);
	my $pass;
	if (!ref $want)
	{
		$pass = is($r->{status}, 200, "$name: 200");
		ok(ref $r->{json} eq 'ARRAY' || (ref $r->{json} eq 'HASH' && $r->{json}{key_id}),
			"$name: authenticated, the caller's data") or diag($r->{body});
	}
	else
	{
		$pass = is($r->{status}, $want->[0], "$name: HTTP $want->[0]");
		is(ref $r->{json} eq 'HASH' ? $r->{json}{code} : undef, $want->[1], "$name: code $want->[1]")
		  or diag($r->{body});
		ok(ref $r->{json} eq 'HASH' && exists $r->{json}{message} && exists $r->{json}{details}
			  && exists $r->{json}{hint}, "$name: PostgREST error shape");
	}
	my $raw = decoded($r->{raw});
	ok(!grep({ index($raw, lc $_) >= 0 } @secrets), "$name: the response does not repeat the key")
	  or diag($r->{raw});
}

# A body the server parses, with Content-Type holding the key.
$r = req('POST', $keys, headers => [ $xkey, "Content-Type: $key" ], body => '{"name": "x"}');
is($r->{status}, 400, 'Content-Type: key: HTTP 400');
is($r->{json}{code}, 'misplaced_key', 'Content-Type: key: code misplaced_key') or diag($r->{body});
ok(index(decoded($r->{raw}), lc $secrets[0]) < 0, 'Content-Type: key: the response does not repeat the key');

# Request bodies: nginx cannot look into them; the SQL behind the routes
# quotes what the client sent in its errors (an unknown field's name, an
# allowed_ips item), and replaces anything key-shaped before raising.
for my $b (
	[ 'a body field named like the key', qq({"name": "x", "$key": 1}), 'unknown_field' ],
	[ 'allowed_ips holding the key', qq({"name": "x", "allowed_ips": ["$key"]}), 'invalid_field' ],
	[ 'allowed_ips holding the key in upper case', qq({"name": "x", "allowed_ips": ["\U$key\E"]}), 'invalid_field' ])
{
	my ($name, $json, $code) = @$b;
	$r = req('POST', $keys, headers => [ $xkey, 'Content-Type: application/json' ], body => $json);
	is($r->{status}, 400, "body, $name: HTTP 400");
	is(ref $r->{json} eq 'HASH' ? $r->{json}{code} : undef, $code, "body, $name: code $code")
	  or diag($r->{body});
	ok(!grep({ index(decoded($r->{raw}), lc $_) >= 0 } @secrets),
		"body, $name: the response does not repeat the key") or diag($r->{raw});
}

# Plain HTTP: redirected (the key went over the network in clear; the
# redirect is the client's business), but not logged.
$r = req('GET', "$keys?API_KEY=$key", origin => "http://127.0.0.1:$http_port");
is($r->{status}, 301, 'plain HTTP with ?API_KEY=: redirected');
$r = req('DELETE', "$keys/$key", origin => "http://127.0.0.1:$http_port");
is($r->{status}, 301, 'plain HTTP with the key in the path: redirected');

# A key prefix is not a key: filtering on it works.
$r = req('GET', "$keys?select=id&key_prefix=eq." . substr($key, 0, 16), headers => [$xkey]);
is($r->{status}, 200, '?key_prefix=eq.<key prefix> is allowed');
is_deeply([ map { $_->{id} } @{ $r->{json} || [] } ], [$kid], '... and finds the key');

# A normal revoke, so that the access log shows a real path.
$r = req('POST', $keys, headers => [ "Authorization: Bearer $jwt", 'Content-Type: application/json' ],
	body => '{"name": "to revoke"}');
my $rev_id = $r->{json}{id};
is(req('DELETE', "$keys/$rev_id", headers => [$xkey])->{status}, 200, 'DELETE /keys/{uuid}: 200');

###########################################################################
# The logs
###########################################################################

$http->stop;
$node->stop;

my %logs = (
	'nginx access log' => "$dir/nginx-access.log",
	'nginx error log' => "$dir/nginx-error.log",
	"PostgREST's log" => "$dir/postgrest.log",
	"PostgreSQL's log" => $node->logfile);
for my $name (sort keys %logs)
{
	my $text = -f $logs{$name} ? slurp_file($logs{$name}) : '';
	my $d = decoded($text);
	for my $i (0 .. $#secrets)
	{
		my @hits = grep { index(decoded($_), lc $secrets[$i]) >= 0 } split /^/m, $text;
		ok(!@hits, "$name: not the $env[$i] key's secret part, in any case or encoding")
		  or diag(join '', @hits[ 0 .. ($#hits < 4 ? $#hits : 4) ]);
	}
	unlike($d, qr/hk_(?:live|test)_[0-9a-z]{46}/, "$name: nothing shaped like a key");
}
my $access = slurp_file("$dir/nginx-access.log");
like($access, qr{"DELETE /api/v1/auth/keys/\Q$rev_id\E" 200 }, 'the access log records paths');
like($access, qr{"GET /\(path not logged\)" 400 }, '... except those that might hold a key');
cmp_ok(scalar(() = $access =~ /^/mg), '>=', scalar(@variants), '... one line per request');
like(slurp_file("$dir/postgrest.log"), qr{"GET /keys}, "PostgREST's log has its request lines");
like(slurp_file($node->logfile), qr/execute .*request\.headers/, "PostgreSQL's log has PostgREST's statements");

done_testing();
