# Trust over HTTP (DESIGN.md section 11; issue 13, item 1): curl -> nginx ->
# PostgREST -> hokusai_auth.pre_request(), with a schema of an unprivileged
# role on every search_path a request can run with.  The schema holds
# look-alikes of the operators, functions and types the extension compares
# and calls; each, when it runs, tries to make that role a superuser and
# raises "WARNING:  planted ... ran as <role> (...) in: <top-level
# statement>", which the server logs.  Key and JWT requests go through
# every route (a validation that misses the cache, one that hits it, a key
# with more than 4 allowed_ips, refusals, create, list, rotate, usage,
# events, revoke, scopes, PATCH).  Then:
#   - the planting role is not a superuser;
#   - nothing planted ran as a superuser (the extension's owner);
#   - nothing planted ran in PostgREST's db-pre-request statement
#     (hokusai_auth.pre_request()), whatever the role.
# PostgREST's own statements (its set_config() calls, the schema cache, the
# wrapper around each route's statement) resolve built-in names through
# search_path too, so they do run planted objects, as the authenticator or
# the role of the request: that is PostgREST's, and the reason never to put a
# schema that another role can write on those roles' search_path.  They are
# counted in the test's output, not failed.
#
# Where the planted schema is put:
#   - the database's and the authenticator's default search_path (ALTER
#     DATABASE / ALTER ROLE hokusai_authenticator SET search_path): what
#     PostgREST's connections start with;
#   - PostgREST's roles' settings (ALTER ROLE hokusai_anon / hokusai_api_user
#     SET search_path): PostgREST 11 and later apply the settings of the role
#     it switches to in each request's transaction, after its own
#     search_path (db-schemas, db-extra-search-path), so pre_request() runs
#     with the planted schema before pg_catalog.
use strict;
use warnings;

use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use Compress::Zlib qw(crc32);
use IPC::Run;
use JSON::PP;
use HokusaiTest;
use HokusaiHttp;

my $json = JSON::PP->new->canonical;
my $key_re = qr/\Ahk_(?:live|test)_[0-9A-Za-z]{46}\z/;

# Every statement logged, so that a planted object that runs shows next to
# the statement that ran it.
my $node = HokusaiTest::new_node('http_trust',
	extra_conf => "hokusai_auth.trusted_proxies = '127.0.0.1/32'\n"
	  . "log_statement = 'all'\nlog_parameter_max_length = 0\n");
# The test's own statements never search the planted schema.
sub sql
{
	return $node->safe_psql('postgres', 'SET search_path = pg_catalog, public; ' . shift);
}
sql("SELECT hokusai_auth.setup_http_roles()");

###########################################################################
# The planted schema
###########################################################################

$node->safe_psql('postgres', slurp_file('test/lib/plant_operator.sql') . <<'EOSQL');
CREATE ROLE regress_http_evil LOGIN;
CREATE SCHEMA http_evil AUTHORIZATION regress_http_evil;
SET ROLE regress_http_evil;
GRANT USAGE ON SCHEMA http_evil TO PUBLIC;
-- What every planted object does when it runs.
CREATE FUNCTION http_evil.ran(what text) RETURNS boolean
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $$
DECLARE
	outcome text := 'ALTER ROLE regress_http_evil SUPERUSER succeeded';
BEGIN
	BEGIN
		ALTER ROLE regress_http_evil SUPERUSER;
	EXCEPTION WHEN OTHERS THEN
		outcome := format('ALTER ROLE failed: %s', SQLERRM);
	END;
	RAISE WARNING 'planted % ran as % (%) in: %', what, current_user, outcome,
		left(regexp_replace(current_query(), '\s+', ' ', 'g'), 100);
	RETURN true;
END
$$;
-- name(args): reports, then answers as pg_catalog.name(args)
CREATE FUNCTION http_evil.plant_function(name text, args text, result text) RETURNS void
	LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $plant$
DECLARE
	n integer := coalesce(array_length(string_to_array(nullif(args, ''), ','), 1), 0);
	params text := (SELECT coalesce(string_agg(format('$%s', i), ', '), '') FROM generate_series(1, n) i);
BEGIN
	EXECUTE format($f$CREATE FUNCTION http_evil.%I(%s) RETURNS %s
		LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $b$
BEGIN
	PERFORM http_evil.ran(%L);
	RETURN pg_catalog.%I(%s);
END
$b$$f$, name, args, result, format('function %s(%s)', name, args), name, params);
END
$plant$;
DO $$
BEGIN
	-- comparisons for every type the extension compares (the C code's
	-- key_prefix = $1 and id = $1 among them); cidr and cidr[] match better
	-- than the built-ins (inet, anyarray) even behind pg_catalog
	PERFORM pg_temp.hk_plant_operator('http_evil', o, t, t)
	   FROM unnest(ARRAY['=', '<>', '<', '<=', '>', '>=']) o,
			unnest(ARRAY['text', 'uuid', 'inet', 'cidr', 'timestamptz', 'bigint', 'integer',
						 'boolean', 'jsonb', 'interval', 'cidr[]']) t;
	PERFORM pg_temp.hk_plant_operator('http_evil', o, l, r)
	   FROM (VALUES ('~', 'text', 'text'), ('~*', 'text', 'text'), ('!~', 'text', 'text'),
					('!~*', 'text', 'text'), ('||', 'text', 'text'), ('||', 'jsonb', 'jsonb'),
					('->', 'jsonb', 'text'), ('->>', 'jsonb', 'text'), ('#>>', 'jsonb', 'text[]'),
					('?', 'jsonb', 'text'), ('@>', 'jsonb', 'jsonb'),
					('<<=', 'inet', 'inet'), ('>>=', 'inet', 'inet'), ('&&', 'inet', 'inet'),
					('<<=', 'cidr', 'cidr'), ('>>=', 'cidr', 'cidr'), ('&&', 'cidr', 'cidr'),
					('||', 'cidr[]', 'cidr'), ('+', 'timestamptz', 'interval'),
					('-', 'timestamptz', 'interval'), ('+', 'bigint', 'bigint'),
					('+', 'integer', 'integer')) v(o, l, r);
	-- functions the extension calls by name (format(text, text),
	-- jsonb_build_object(text, text) and cardinality(cidr[]) match better
	-- than the VARIADIC "any" and polymorphic built-ins)
	PERFORM http_evil.plant_function(name, args, result)
	   FROM (VALUES ('now', '', 'timestamptz'), ('clock_timestamp', '', 'timestamptz'),
					('gen_random_uuid', '', 'uuid'), ('lower', 'text', 'text'),
					('btrim', 'text', 'text'), ('length', 'text', 'integer'),
					('left', 'text, integer', 'text'), ('format', 'text, text', 'text'),
					('host', 'inet', 'text'), ('set_config', 'text, text, boolean', 'text'),
					('current_setting', 'text, boolean', 'text'),
					('current_setting', 'text', 'text'),
					('jsonb_build_object', 'text, text', 'jsonb'),
					('jsonb_typeof', 'jsonb', 'text'), ('to_jsonb', 'timestamptz', 'jsonb'),
					('cardinality', 'cidr[]', 'integer'),
					('array_length', 'cidr[], integer', 'integer')) v(name, args, result);
END
$$;
-- types named by identifiers (::uuid, ::text, ...): domains whose CHECK reports
DO $$
DECLARE
	t text;
BEGIN
	FOREACH t IN ARRAY ARRAY['text', 'uuid', 'inet', 'cidr', 'jsonb', 'timestamptz', 'int4', 'bool'] LOOP
		EXECUTE format('CREATE DOMAIN http_evil.%I AS pg_catalog.%I CHECK (http_evil.ran(%L))',
			t, t, format('type %s', t));
	END LOOP;
END
$$;
RESET ROLE;
EOSQL

# Users and keys, made before the planted schema is on any search_path.
my $alice = sql("SELECT hokusai_auth.create_user('alice')");
my $six = "'{127.0.0.0/8, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16, 2001:db8::/32, 198.51.100.0/24}'";
my ($k_plain, $k_plain_id) = split / /, sql(
	"SELECT key || ' ' || id FROM hokusai_auth.create_key('$alice', 'plain', burst_limit => 1000)");
my ($k_six, $k_six_id) = split / /, sql(
	"SELECT key || ' ' || id FROM hokusai_auth.create_key('$alice', 'six networks', "
	  . "burst_limit => 1000, allowed_ips => $six)");
my ($k_far) = split / /, sql(
	"SELECT key || ' ' || id FROM hokusai_auth.create_key('$alice', 'elsewhere', "
	  . "allowed_ips => '{203.0.113.0/24, 198.51.100.0/24, 10.0.0.0/8, 172.16.0.0/12, 192.168.0.0/16}')");
my ($k_once) = split / /, sql(
	"SELECT key || ' ' || id FROM hokusai_auth.create_key('$alice', 'once', rate_limit_per_hour => 1)");
# A real prefix with another secret, and a valid checksum (CRC-32 of the
# first 48 characters in 6 base62 digits): looked up, then refused.
my $head = substr($k_plain, 0, 16) . ('a' x 32);
my ($crc, $sum) = (crc32($head), '');
for (1 .. 6)
{
	$sum = substr('0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz', $crc % 62, 1) . $sum;
	$crc = int($crc / 62);
}
my $k_wrong = $head . $sum;
is(sql("SELECT hokusai_auth.key_is_well_formed('$k_wrong')"), 't', 'a wrong secret, well formed');

my @superusers = split /\n/, sql("SELECT rolname FROM pg_roles WHERE rolsuper ORDER BY 1");
ok(scalar(@superusers) >= 1, 'the superusers: ' . join(', ', @superusers));

# Then it is put on every search_path (PostgREST connects after this).
$node->safe_psql('postgres', <<'EOSQL');
ALTER DATABASE postgres SET search_path = http_evil, pg_catalog, public;
ALTER ROLE hokusai_authenticator SET search_path = http_evil, pg_catalog, public;
ALTER ROLE hokusai_anon SET search_path = http_evil, pg_catalog, public;
ALTER ROLE hokusai_api_user SET search_path = http_evil, pg_catalog, public;
EOSQL

my $log_offset = -s $node->logfile;

###########################################################################
# Requests
###########################################################################

my $http = HokusaiHttp->start($node, 'http_trust', pgrst_log => 'info');
my $base = $http->{base};

sub api
{
	my ($method, $path, %opt) = @_;
	my @cmd = ('curl', '-s', '-i', '--max-time', '20', '-X', $method, '--cacert', $http->{cacert});
	push @cmd, '-H', $_ for @{ $opt{headers} || [] };
	push @cmd, '-H', 'Content-Type: application/json', '--data-binary', $opt{body}
	  if defined $opt{body};
	push @cmd, "$base$path";
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my ($head, $body) = split /\r\n\r\n/, $out, 2;
	my ($status) = ($head // '') =~ m{^HTTP/\S+ (\d+)};
	my $r = { status => $status // 0, body => $body // '' };
	$r->{json} = eval { decode_json($r->{body}) } if length $r->{body};
	return $r;
}
sub xkey { return ("X-API-Key: $_[0]"); }
sub bearer { return ("Authorization: Bearer $_[0]"); }
sub status_is
{
	my ($r, $status, $name) = @_;
	is($r->{status}, $status, "$name: HTTP $status") or diag($r->{body});
}

my $jwt = $http->jwt($alice);

# JWT: create a key with six networks (more than a cache entry keeps).
my $r = api('POST', '/keys', headers => [ bearer($jwt) ],
	body => $json->encode({ name => 'over http', expires_at => '2999-01-01T00:00:00Z',
		allowed_ips => [ '127.0.0.0/8', '10.0.0.0/8', '172.16.0.0/12', '192.168.0.0/16',
			'2001:db8::/32', '198.51.100.0/24' ], metadata => { via => 'http' } }));
status_is($r, 201, 'POST /keys with a JWT');
my $h_key = $r->{json}{key} // '';
my $h_id = $r->{json}{id} // '';
like($h_key, $key_re, '... the new key');

# API keys: a cache miss, then hits; the six-network keys re-read allowed_ips on a hit.
for my $k ([ 'plain', $k_plain ], [ 'six networks', $k_six ], [ 'created over http', $h_key ])
{
	status_is(api('GET', '/keys', headers => [ xkey($k->[1]) ]), 200, "GET /keys, $k->[0] key, miss");
	status_is(api('GET', '/keys', headers => [ xkey($k->[1]) ]), 200, "GET /keys, $k->[0] key, hit");
	status_is(api('GET', '/keys', headers => [ bearer($k->[1]) ]), 200,
		"GET /keys, $k->[0] key as Bearer, hit");
}
# JWT only: the user is looked up as the owner.
status_is(api('GET', '/keys', headers => [ bearer($jwt) ]), 200, 'GET /keys with a JWT');

# Refusals.
status_is(api('GET', '/keys', headers => [ xkey($k_wrong) ]), 401, 'a wrong secret (miss)');
status_is(api('GET', '/keys', headers => [ xkey($k_wrong) ]), 401, 'a wrong secret (negative cache)');
status_is(api('GET', '/keys', headers => [ xkey($k_far) ]), 403, 'an address outside allowed_ips (miss)');
status_is(api('GET', '/keys', headers => [ xkey($k_far) ]), 403, 'an address outside allowed_ips (hit)');
status_is(api('GET', '/keys', headers => [ xkey($k_once) ]), 200, 'a key allowed one request an hour');
status_is(api('GET', '/keys', headers => [ xkey($k_once) ]), 429, '... rate limited');
status_is(api('GET', '/keys', headers => [ xkey('hk_live_short') ]), 401, 'a malformed key');
status_is(api('GET', '/keys'), 401, 'no credentials');

# Writes authenticated by API key (read-write transactions).
$r = api('POST', '/keys', headers => [ xkey($k_six) ], body => '{"name": "by key"}');
status_is($r, 201, 'POST /keys with an API key');
$r = api('POST', "/keys/$h_id/rotate", headers => [ xkey($k_plain) ], body => '{"grace_seconds": 60}');
status_is($r, 201, 'POST /keys/{id}/rotate with an API key');
my $rot_key = $r->{json}{key} // '';
my $rot_id = $r->{json}{id} // '';
status_is(api('GET', '/keys', headers => [ xkey($rot_key) ]), 200, 'the rotated key (miss)');
status_is(api('GET', '/keys', headers => [ xkey($rot_key) ]), 200, 'the rotated key (hit)');
status_is(api('GET', "/keys/$h_id/usage", headers => [ xkey($k_six) ]), 200,
	'GET /keys/{id}/usage with an API key');
status_is(api('GET', "/keys/$h_id/usage?since=2000-01-01T00:00:00Z", headers => [ bearer($jwt) ]),
	200, 'GET /keys/{id}/usage with a JWT');
status_is(api('GET', '/events?after=0&limit=5', headers => [ bearer($jwt) ]), 200, 'GET /events with a JWT');
status_is(api('GET', '/events', headers => [ xkey($k_six) ]), 200, 'GET /events with an API key');
status_is(api('DELETE', "/keys/$rot_id", headers => [ xkey($k_plain) ]), 200,
	'DELETE /keys/{id} with an API key');
status_is(api('GET', '/keys', headers => [ xkey($rot_key) ]), 401, 'the revoked key');
status_is(api('DELETE', "/keys/$h_id", headers => [ bearer($jwt) ]), 200, 'DELETE /keys/{id} with a JWT');

# Scopes (the route scopes read by pre_request() and matched), PATCH, a
# disabled key.
$r = api('POST', '/keys', headers => [ bearer($jwt) ], body => '{"name": "scoped", "scopes": ["keys:read"]}');
status_is($r, 201, 'POST /keys with scopes');
my $s_key = $r->{json}{key} // '';
my $s_id = $r->{json}{id} // '';
status_is(api('GET', '/keys', headers => [ xkey($s_key) ]), 200, 'a key with keys:read: GET /keys (miss)');
status_is(api('GET', '/keys', headers => [ xkey($s_key) ]), 200, 'a key with keys:read: GET /keys (hit)');
status_is(api('POST', '/keys', headers => [ xkey($s_key) ], body => '{"name": "x"}'), 403,
	'a key without keys:write: POST /keys');
status_is(api('PATCH', "/keys/$s_id", headers => [ xkey($k_six) ],
	body => '{"name": "patched", "scopes": ["keys:read", "usage:read"], "disabled": true}'), 200,
	'PATCH /keys/{id} with an API key');
status_is(api('GET', '/keys', headers => [ xkey($s_key) ]), 403, 'the disabled key');
status_is(api('PATCH', "/keys/$s_id", headers => [ bearer($jwt) ], body => '{"disabled": false}'), 200,
	'PATCH /keys/{id} with a JWT');
status_is(api('GET', "/keys/$s_id/usage", headers => [ xkey($s_key) ]), 200, 'the enabled key, usage:read');

$http->stop;

###########################################################################
# Nothing planted ran
###########################################################################

# The search_path pre_request() ran with (the planted schema first) is in
# the log: PostgREST's set_config('search_path', ...) and the role settings.
is(sql("SELECT rolsuper FROM pg_roles WHERE rolname OPERATOR(pg_catalog.=) 'regress_http_evil'"),
	'f', 'the planting role did not become a superuser');
my $log = slurp_file($node->logfile, $log_offset);
like($log, qr/"hokusai_auth"\."pre_request"\(\)/, 'pre_request() ran (the log has its statement)');
my @ran = map { /planted (.*) ran as (\S+) \((.*)\) in: (.*)$/ ? [ $1, $2, $3, $4 ] : () }
  $log =~ /(WARNING:  planted [^\n]*)/g;
my %super = map { ($_ => 1) } @superusers;
my @as_super = grep { $super{ $_->[1] } } @ran;
my @in_pre_request = grep { $_->[3] =~ /pre_request/ } @ran;
sub show
{
	my %n;
	$n{"$_->[0] ran as $_->[1] ($_->[2]) in: $_->[3]"}++ for @_;
	return join("\n", map { "$n{$_} x $_" } sort keys %n);
}
is(scalar(@as_super), 0, 'nothing planted ran as a superuser') or diag(show(@as_super));
is(scalar(@in_pre_request), 0, 'nothing planted ran in the db-pre-request statement')
  or diag(show(@in_pre_request));
my %others;
$others{ $_->[1] }++ for grep { !$super{ $_->[1] } && $_->[3] !~ /pre_request/ } @ran;
note("planted objects run by PostgREST's own statements (not the extension's): "
	  . (join(', ', map { "$others{$_} as $_" } sort keys %others) || 'none'));

$node->safe_psql('postgres', <<'EOSQL');
ALTER DATABASE postgres RESET search_path;
EOSQL
$node->stop;
done_testing();
