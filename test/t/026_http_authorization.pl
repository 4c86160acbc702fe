# Authorization over HTTP, end to end (curl -> nginx -> PostgREST ->
# hokusai_auth, docs/authorization.md): the key-management routes' scopes
# (a read-only key, what a key with scopes may hand on, keys without scopes
# as before), 403 insufficient_scope naming the scope, PATCH
# /keys/{key_id} (settings, scopes, disabled), 403 disabled, and the
# row-level security example of docs/authorization.md run as written: its
# SQL block and its nginx location, with PostgREST serving the schema app.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use HokusaiTest;
use HokusaiHttp;

my $top = File::Spec->rel2abs(File::Spec->catdir(dirname(__FILE__), File::Spec->updir, File::Spec->updir));
my $json = JSON::PP->new->canonical;

my $node = HokusaiTest::new_node('authz_http',
	extra_conf => "hokusai_auth.trusted_proxies = '127.0.0.1/32'\n");
sub sql { return $node->safe_psql('postgres', shift); }

###########################################################################
# The worked example of docs/authorization.md: its SQL block (the one after
# the marker comment) before PostgREST starts, its nginx location
###########################################################################

my $doc = slurp_file("$top/docs/authorization.md");
my ($setup) = $doc =~ /<!-- test\/t\/026_http_authorization\.pl runs the next block[^\n]*-->\n```sql\n(.*?)\n```\n/s;
ok(defined $setup && $setup =~ /CREATE POLICY/, 'docs/authorization.md has the example\'s SQL block');
my ($location) = $doc =~ /```text\n(location = \/api\/v1\/notes \{\n.*?\n\})\n```\n/s;
ok(defined $location && $location =~ /Accept-Profile app/, 'docs/authorization.md has the example\'s nginx location');
sql($setup);

my $http;
{
	local $ENV{HK_DB_SCHEMAS} = 'hokusai_api, app';
	local $ENV{HK_EXTRA_LOCATIONS} = join("\n", map { "\t\t$_" } split /\n/, $location);
	$http = HokusaiHttp->start($node, 'authz_http');
}
my ($base, $cacert) = @$http{qw(base cacert)};
(my $origin = $base) =~ s{/api/v1/auth$}{};

# curl(method, url, headers => [...], body => text, type => content type)
sub curl
{
	my ($method, $url, %opt) = @_;
	my @cmd = ('curl', '-s', '-i', '--max-time', '20', '-X', $method, '--cacert', $cacert);
	push @cmd, '-H', $_ for @{ $opt{headers} || [] };
	if (defined $opt{body})
	{
		push @cmd, '-H', 'Content-Type: ' . ($opt{type} // 'application/json');
		push @cmd, '--data-binary', $opt{body};
	}
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
sub api { my ($m, $path, %opt) = @_; return curl($m, "$base$path", %opt); }
sub xkey { return ("X-API-Key: $_[0]"); }
sub bearer { return ("Authorization: Bearer $_[0]"); }

sub is_error
{
	my ($r, $status, $code, $name) = @_;
	is($r->{status}, $status, "$name: HTTP $status") or diag($r->{body});
	is(ref $r->{json} eq 'HASH' ? $r->{json}{code} : undef, $code, "$name: code $code");
	ok(ref $r->{json} eq 'HASH' && exists $r->{json}{message} && exists $r->{json}{details}
		  && exists $r->{json}{hint}, "$name: PostgREST error shape");
}

# A 403 insufficient_scope naming the scope, in the message and WWW-Authenticate.
sub is_missing_scope
{
	my ($r, $scope, $name) = @_;
	is_error($r, 403, 'insufficient_scope', $name);
	like($r->{json}{message} // '', qr/\Q$scope\E/, "$name: the message names $scope");
	is($r->{headers}{'www-authenticate'}, qq{Bearer error="insufficient_scope", scope="$scope"},
		"$name: WWW-Authenticate names $scope");
}

sub new_key
{
	my ($auth, $name, @scopes) = @_;
	my $r = api('POST', '/keys', headers => [$auth],
		body => $json->encode({ name => $name, (@scopes ? (scopes => \@scopes) : ()) }));
	is($r->{status}, 201, "create key '$name'") or diag($r->{body});
	return ($r->{json}{key}, $r->{json}{id});
}

my $ana = sql("SELECT hokusai_auth.create_user('ana')");
my $ben = sql("SELECT hokusai_auth.create_user('ben')");
my $ana_jwt = $http->jwt($ana);
my $ben_jwt = $http->jwt($ben);

###########################################################################
# The key-management routes' scopes
###########################################################################

my ($plain, $plain_id) = new_key(bearer($ana_jwt), 'no scopes');
my ($ro, $ro_id) = new_key(bearer($ana_jwt), 'read-only', 'keys:read', 'usage:read');
my ($writer, $writer_id) = new_key(bearer($ana_jwt), 'writer', 'keys:*');
my ($notes_only, $notes_only_id) = new_key(bearer($ana_jwt), 'notes only', 'notes:read');
my $r = api('GET', "/keys/$ro_id", headers => [ bearer($ana_jwt) ]);
is_deeply($r->{json}{scopes}, [ 'keys:read', 'usage:read' ], 'the key shows its scopes');
is($r->{json}{disabled_at}, undef, '... and disabled_at');

# A read-only key: reads, and nothing else.
$r = api('GET', '/keys', headers => [ xkey($ro) ]);
is($r->{status}, 200, 'read-only key: GET /keys 200');
is(scalar @{ $r->{json} || [] }, 4, "... ana's four keys");
is(api('GET', "/keys/$plain_id", headers => [ xkey($ro) ])->{status}, 200, 'read-only key: GET /keys/{id} 200');
is(api('GET', "/keys/$plain_id/usage", headers => [ xkey($ro) ])->{status}, 200, 'read-only key: usage 200');
my $spent = sql("SELECT requests_last_hour FROM hokusai_auth.rate_limit_status('$ro_id')");
is_missing_scope(api('POST', '/keys', headers => [ xkey($ro) ], body => '{"name": "x"}'),
	'keys:write', 'read-only key: POST /keys');
is_missing_scope(api('DELETE', "/keys/$plain_id", headers => [ xkey($ro) ]), 'keys:write',
	'read-only key: DELETE /keys/{id}');
is_missing_scope(api('POST', "/keys/$plain_id/rotate", headers => [ xkey($ro) ]), 'keys:write',
	'read-only key: rotate');
is_missing_scope(api('PATCH', "/keys/$plain_id", headers => [ xkey($ro) ], body => '{"name": "x"}'),
	'keys:write', 'read-only key: PATCH');
is(sql("SELECT requests_last_hour FROM hokusai_auth.rate_limit_status('$ro_id')"), $spent,
	'... the refusals spent nothing of the key\'s hourly quota');
is(sql("SELECT count(*) FROM hokusai_auth.api_keys WHERE user_id = '$ana' AND revoked_at IS NOT NULL"), '0',
	'... and changed nothing');
is_missing_scope(api('GET', '/keys', headers => [ xkey($notes_only) ]), 'keys:read',
	'a key with other scopes: GET /keys');
is_missing_scope(api('GET', "/keys/$plain_id/usage", headers => [ xkey($notes_only) ]), 'usage:read',
	'a key with other scopes: usage');

# A key without scopes manages keys as before 1.6.
my ($made_by_plain, $made_by_plain_id) = new_key(xkey($plain), 'made by a key without scopes');
ok(defined $made_by_plain, 'a key without scopes: POST /keys 201');

# What a key with scopes may hand on: only scopes it has, never none.
my ($sub, $sub_id) = new_key(xkey($writer), 'made by the writer', 'keys:read');
ok(defined $sub, 'keys:* may give keys:read');
is_error(api('POST', '/keys', headers => [ xkey($writer) ], body => '{"name": "wider", "scopes": ["usage:read"]}'),
	403, 'insufficient_scope', 'keys:* may not give usage:read');
is_error(api('POST', '/keys', headers => [ xkey($writer) ], body => '{"name": "unrestricted"}'),
	403, 'insufficient_scope', 'a key with scopes may not make a key without scopes');
is_error(api('POST', "/keys/$plain_id/rotate", headers => [ xkey($writer) ]),
	403, 'insufficient_scope', 'a key with scopes may not rotate a key without scopes (it would get its secret)');
is_error(api('POST', "/keys/$ro_id/rotate", headers => [ xkey($writer) ]),
	403, 'insufficient_scope', '... nor a key with scopes it does not have');
$r = api('POST', "/keys/$sub_id/rotate", headers => [ xkey($writer) ], body => '{"grace_seconds": 0}');
is($r->{status}, 201, '... but one whose scopes it has') or diag($r->{body});
is_deeply($r->{json}{scopes}, ['keys:read'], '... and the new key has the same scopes');

###########################################################################
# PATCH /keys/{key_id}
###########################################################################

$r = api('PATCH', "/keys/$notes_only_id", headers => [ bearer($ana_jwt) ],
	body => $json->encode({ name => 'notes reader', scopes => [ 'notes:read', 'keys:read' ],
		rate_limit_per_hour => 50, burst_limit => 5, allowed_ips => ['127.0.0.0/8'],
		expires_at => '2099-01-01T00:00:00Z', metadata => { team => 'notes' } }));
is($r->{status}, 200, 'PATCH with a JWT: 200') or diag($r->{body});
is($r->{json}{name}, 'notes reader', '... name');
is_deeply($r->{json}{scopes}, [ 'notes:read', 'keys:read' ], '... scopes');
is($r->{json}{rate_limit_per_hour}, 50, '... rate limit');
is($r->{json}{burst_limit}, 5, '... burst limit');
is_deeply($r->{json}{allowed_ips}, ['127.0.0.0/8'], '... allowed_ips');
like($r->{json}{expires_at} // '', qr/^2099-01-01/, '... expires_at');
is_deeply($r->{json}{metadata}, { team => 'notes' }, '... metadata');
# The key was cached with its old scopes: the change applies at once.
is(api('GET', '/keys', headers => [ xkey($notes_only) ])->{status}, 200,
	'the new scope works on the next request');
$r = api('PATCH', "/keys/$notes_only_id", headers => [ xkey($writer) ],
	body => '{"burst_limit": null, "allowed_ips": null, "expires_at": null}');
is($r->{status}, 200, 'PATCH with a key: null clears burst_limit, allowed_ips, expires_at') or diag($r->{body});
ok(!defined $r->{json}{burst_limit} && !defined $r->{json}{allowed_ips} && !defined $r->{json}{expires_at},
	'... cleared');

# Disable and enable.
$r = api('PATCH', "/keys/$notes_only_id", headers => [ bearer($ana_jwt) ],
	body => '{"disabled": true, "reason": "holiday"}');
is($r->{status}, 200, 'PATCH disabled: true: 200') or diag($r->{body});
is($r->{json}{status}, 'disabled', '... status disabled');
ok(defined $r->{json}{disabled_at}, '... disabled_at set');
$r = api('GET', '/keys', headers => [ xkey($notes_only) ]);
is_error($r, 403, 'disabled', 'a disabled key');
like($r->{json}{details} // '', qr/disabled by its owner/, '... details say why');
ok(!exists $r->{headers}{'www-authenticate'}, '... no WWW-Authenticate (keep the key, it is not invalid)');
$r = api('PATCH', "/keys/$notes_only_id", headers => [ xkey($writer) ], body => '{"disabled": false}');
is($r->{status}, 200, 'PATCH disabled: false with a key: 200') or diag($r->{body});
is($r->{json}{status}, 'active', '... active again');
is(api('GET', '/keys', headers => [ xkey($notes_only) ])->{status}, 200, 'the enabled key works again');
is(sql("SELECT string_agg(action || ':' || coalesce(details->>'reason', '') || ':'"
		. " || (actor_sub IS NOT NULL)::text || ':' || (actor_key_id IS NOT NULL)::text, ',' ORDER BY id)"
		. " FROM hokusai_auth.audit_log WHERE api_key_id = '$notes_only_id' AND action IN ('disable', 'enable')"),
	'disable:holiday:true:false,enable::false:true', 'disable and enable are audited with the HTTP caller');

# PATCH errors.
is_error(api('PATCH', "/keys/$notes_only_id", headers => [ bearer($ana_jwt) ]), 400, 'invalid_body', 'PATCH without a body');
is_error(api('PATCH', "/keys/$notes_only_id", headers => [ bearer($ana_jwt) ], body => '{"nmae": "x"}'),
	400, 'unknown_field', 'PATCH with an unknown field');
is_error(api('PATCH', "/keys/$notes_only_id", headers => [ bearer($ana_jwt) ], body => '{"scopes": ["Bad"]}'),
	400, 'invalid_field', 'PATCH with a bad scope name');
is_error(api('PATCH', "/keys/$notes_only_id", headers => [ bearer($ana_jwt) ], body => '{"disabled": "yes"}'),
	400, 'invalid_field', 'PATCH disabled not a boolean');
is_error(api('PATCH', "/keys/$notes_only_id", headers => [ bearer($ana_jwt) ], body => '{"name": null}'),
	400, 'invalid_field', 'PATCH name null');
is_error(api('PATCH', "/keys/$notes_only_id", headers => [ bearer($ben_jwt) ], body => '{"name": "mine"}'),
	404, 'not_found', "PATCH another user's key");
is_error(api('PATCH', "/keys/$notes_only_id", headers => [ xkey($writer) ], body => '{"scopes": ["notes:*"]}'),
	403, 'insufficient_scope', 'PATCH: a key may not give scopes it does not have');
is(api('PATCH', "/keys/$notes_only_id", headers => [ bearer($ana_jwt) ], body => '{"name": "x"}',
	type => 'text/plain')->{status}, 415, 'PATCH with a form body: 415');
api('DELETE', "/keys/$made_by_plain_id", headers => [ bearer($ana_jwt) ]);
is_error(api('PATCH', "/keys/$made_by_plain_id", headers => [ bearer($ana_jwt) ], body => '{"disabled": false}'),
	409, 'conflict', 'PATCH enabling a revoked key');
$r = api('PUT', "/keys/$notes_only_id", headers => [ bearer($ana_jwt) ], body => '{}');
is($r->{status}, 405, 'PUT /keys/{id}: 405');
is($r->{headers}{allow}, 'GET, HEAD, PATCH, DELETE', '... Allow: GET, HEAD, PATCH, DELETE');

###########################################################################
# Row-level security: the worked example of docs/authorization.md
###########################################################################

my ($w, $w_id) = new_key(bearer($ana_jwt), 'notes writer', 'notes:write', 'notes:read');
my ($rd) = new_key(bearer($ana_jwt), 'notes reader', 'notes:read');
my ($aud) = new_key(bearer($ana_jwt), 'notes auditor', 'notes:read', 'notes:read_all');
my ($ben_aud) = new_key(bearer($ben_jwt), 'ben auditor', 'notes:read', 'notes:read_all');
sub notes { my ($m, %opt) = @_; return curl($m, "$origin/api/v1/notes", %opt); }
sub bodies { my ($r) = @_; return [ map { $_->{body} } @{ ref $r->{json} eq 'ARRAY' ? $r->{json} : [] } ]; }

$r = notes('POST', headers => [ xkey($w), 'Prefer: return=representation' ], body => '{"body": "first"}');
is($r->{status}, 201, 'POST /api/v1/notes with notes:write: 201') or diag($r->{body});
is($r->{json}[0]{key_id}, $w_id, '... the row has the calling key (current_key_id() as default)');
is($r->{json}[0]{user_id}, $ana, '... and its user (current_user_id())');
$r = notes('GET', headers => [ xkey($w) ]);
is($r->{status}, 200, 'GET /api/v1/notes by the writer: 200') or diag($r->{body});
is_deeply(bodies($r), ['first'], '... its own note');
is_deeply(bodies(notes('GET', headers => [ xkey($rd) ])), [], 'another key of the user without notes:read_all: none');
is_deeply(bodies(notes('GET', headers => [ xkey($aud) ])), ['first'], 'a key with notes:read_all: the user\'s notes');
is_deeply(bodies(notes('GET', headers => [ bearer($ana_jwt) ])), ['first'], 'the user\'s JWT: the user\'s notes');
is_deeply(bodies(notes('GET', headers => [ xkey($ben_aud) ])), [], 'another user\'s key with notes:read_all: none');
is_missing_scope(notes('GET', headers => [ xkey($plain) ]), 'notes:read', 'GET /api/v1/notes with a key without scopes');
is_missing_scope(notes('POST', headers => [ xkey($rd) ], body => '{"body": "x"}'), 'notes:write',
	'POST /api/v1/notes without notes:write');
$r = notes('POST', headers => [ xkey($w) ], body => $json->encode({ body => 'forged', user_id => $ben }));
isnt($r->{status}, 201, 'a key cannot write a row for another user') or diag($r->{body});
is(sql("SELECT count(*) FROM app.notes"), '1', '... one note in the table');
is(notes('GET')->{status}, 401, 'no credentials: 401');

$http->stop;
done_testing();
