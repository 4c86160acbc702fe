# Metering over HTTP (docs/metering.md#over-http): credits set when a key is
# created and shown with it, spent by every request of the key, given back
# when the request fails after authentication; 402 credits_exhausted with
# Retry-After for the next refill; the credits of the usage summary; the
# limits a user's keys share, 429 naming user_hourly.
use strict;
use warnings;

use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;
use HokusaiHttp;

my $node = HokusaiTest::new_node('http_metering',
	extra_conf => "hokusai_auth.trusted_proxies = '127.0.0.1/32'\n");
sub sql { return $node->safe_psql('postgres', shift); }
sql("SELECT hokusai_auth.setup_http_roles()");
my $http = HokusaiHttp->start($node, 'http_metering');
my ($base, $cacert) = @$http{qw(base cacert)};

# curl(method, path, headers => [...], body => text): { status, headers, json }
sub api
{
	my ($method, $path, %opt) = @_;
	my @cmd = ('curl', '-s', '-i', '--max-time', '20', '-X', $method, '--cacert', $cacert);
	push @cmd, '-H', $_ for @{ $opt{headers} || [] };
	push @cmd, '-H', 'Content-Type: application/json', '--data-binary', $opt{body}
	  if defined $opt{body};
	push @cmd, "$base$path";
	my ($out, $err) = ('', '');
	IPC::Run::run(\@cmd, '>', \$out, '2>', \$err);
	my ($head, $body) = split /\r\n\r\n/, $out, 2;
	my ($statusline, @lines) = split /\r\n/, $head // '';
	my %h;
	for (@lines) { my ($n, $v) = /^([^:]+):\s*(.*)$/ or next; $h{ lc $n } = $v; }
	my $r = { status => ((($statusline // '') =~ m{^HTTP/\S+ (\d+)})[0] // 0), headers => \%h,
		body => $body // '' };
	$r->{json} = eval { decode_json($r->{body}) } if length $r->{body};
	return $r;
}
sub xkey { return ("X-API-Key: $_[0]"); }
sub bearer { return ('Authorization: Bearer ' . $http->jwt($_[0])); }
sub credits { return sql("SELECT credits_remaining FROM hokusai_auth.rate_limit_status('$_[0]')"); }

my $alice = sql("SELECT hokusai_auth.create_user('alice')");

# Create with credits and a refill: the key shows them.
my $r = api('POST', '/keys', headers => [ bearer($alice) ],
	body => '{"name": "metered", "credits": 4, "refill_amount": 100, "refill_interval": "day"}');
is($r->{status}, 201, 'POST /keys with credits: 201') or diag($r->{body});
my ($key, $kid) = ($r->{json}{key}, $r->{json}{id});
is($r->{json}{credits_remaining}, 4, '... credits_remaining in the response');
is($r->{json}{refill_amount}, 100, '... refill_amount');
is($r->{json}{refill_interval}, 'day', '... refill_interval');

# Bad credits: 400, no key.
for my $bad (['{"name": "x", "credits": -1}', qr/credits must be between 0/],
	['{"name": "x", "credits": 1.5}', qr/credits must be an integer/],
	['{"name": "x", "refill_amount": 5}', qr/refill_amount and refill_interval must be given together/],
	['{"name": "x", "refill_amount": 5, "refill_interval": "hour"}', qr/refill_interval must be/])
{
	$r = api('POST', '/keys', headers => [ bearer($alice) ], body => $bad->[0]);
	is($r->{status}, 400, "POST /keys $bad->[0]: 400");
	like($r->{json}{message} // '', $bad->[1], '... with the reason');
}
is(sql("SELECT count(*) FROM hokusai_auth.api_keys"), '1', 'no key was made by the bad requests');

# Each request of the key costs one credit; one that fails after
# authentication costs nothing (its transaction aborts).
$r = api('GET', '/keys', headers => [ xkey($key) ]);
is($r->{status}, 200, 'GET /keys with the metered key: 200');
is(credits($kid), '3', '... one credit spent');
$r = api('POST', '/keys', headers => [ xkey($key) ], body => '{"name": ""}');
is($r->{status}, 400, 'a request that fails after authentication (a bad body): 400');
is(credits($kid), '3', '... costs nothing: the credit was given back at abort');
$r = api('GET', "/keys/$kid/usage?since=2999-01-01T00:00:00Z&until=2000-01-01T00:00:00Z",
	headers => [ xkey($key) ]);
is($r->{status}, 400, 'another failing request (since after until): 400');
is(credits($kid), '3', '... costs nothing either');

# The usage summary has the live credits.
$r = api('GET', "/keys/$kid/usage", headers => [ bearer($alice) ]);
is($r->{status}, 200, 'GET /keys/{id}/usage with a JWT: 200') or diag($r->{body});
is($r->{json}{credits}{remaining}, 3, '... credits.remaining, live');
is($r->{json}{credits}{refill_amount}, 100, '... credits.refill_amount');
is($r->{json}{credits}{refill_interval}, 'day', '... credits.refill_interval');
like($r->{json}{credits}{next_refill_at} // '', qr/T00:00:00/, '... credits.next_refill_at, a midnight');

# Spend the rest, then 402 with Retry-After (the refill).
is(api('GET', '/keys', headers => [ xkey($key) ])->{status}, 200, 'credit 3 of 4');
is(api('GET', '/keys', headers => [ xkey($key) ])->{status}, 200, 'credit 2 of 4');
is(api('GET', '/keys', headers => [ xkey($key) ])->{status}, 200, 'credit 1 of 4');
$r = api('GET', '/keys', headers => [ xkey($key) ]);
is($r->{status}, 402, 'no credits left: 402');
is($r->{json}{code}, 'credits_exhausted', '... code credits_exhausted');
ok(exists $r->{json}{details} && exists $r->{json}{hint}, '... PostgREST error shape');
like($r->{headers}{'retry-after'} // '', qr/^\d+$/, '... Retry-After');
cmp_ok($r->{headers}{'retry-after'} // 0, '<=', 86400, '... at most a day: the next midnight UTC');
is(credits($kid), '0', '... and nothing was spent');

# Without a refill: no Retry-After (waiting does not help).
$r = api('POST', '/keys', headers => [ bearer($alice) ], body => '{"name": "one credit", "credits": 1}');
my $key1 = $r->{json}{key};
is(api('GET', '/keys', headers => [ xkey($key1) ])->{status}, 200, 'a key with one credit: 200');
$r = api('GET', '/keys', headers => [ xkey($key1) ]);
is($r->{status}, 402, '... then 402');
ok(!exists $r->{headers}{'retry-after'}, '... without Retry-After: no refill is coming');
like($r->{json}{hint} // '', qr/no refill/, '... the hint says so');

# An operator adds credits: the key works again.
sql("SELECT hokusai_auth.add_credits('$kid', 10)");
is(api('GET', '/keys', headers => [ xkey($key) ])->{status}, 200, 'after add_credits(): 200 again');

# Limits shared by the user's keys: 429 naming user_hourly.
$r = api('POST', '/keys', headers => [ bearer($alice) ], body => '{"name": "unmetered"}');
my $key2 = $r->{json}{key};
sql("SELECT hokusai_auth.set_user_limits('$alice', 2, NULL)");
is(api('GET', '/keys', headers => [ xkey($key2) ])->{status}, 200, 'user limit 2 an hour: first request');
is(api('GET', '/keys', headers => [ xkey($key) ])->{status}, 200, '... second, with another of the user\'s keys');
$r = api('GET', '/keys', headers => [ xkey($key2) ]);
is($r->{status}, 429, '... the third: 429');
is($r->{headers}{'x-ratelimit-resource'}, 'user_hourly', '... X-RateLimit-Resource: user_hourly');
is($r->{headers}{'x-ratelimit-limit'}, '2', '... X-RateLimit-Limit: the user\'s limit');
like($r->{json}{message} // '', qr/user's hourly rate limit/, '... the message names the user\'s limit');
my $before = credits($kid);
is(api('GET', '/keys', headers => [ xkey($key) ])->{status}, 429, 'the metered key is refused too');
is(credits($kid), $before, '... and spends no credit (all or nothing)');

$http->stop;
$node->stop;
done_testing();
