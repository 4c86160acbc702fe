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

###########################################################################
# PATCH refill_amount and refill_interval (docs/http.md#patch-apiv1authkeyskey_id)
###########################################################################

my $bob = sql("SELECT hokusai_auth.create_user('bob')");
$r = api('POST', '/keys', headers => [ bearer($bob) ], body => '{"name": "refill later"}');
my $rk = $r->{json}{id};
sub refill_row
{
	return sql("SELECT concat_ws(' ', name, coalesce(refill_amount::text, '-'), coalesce(refill_interval, '-'), "
		  . "coalesce(credits_remaining::text, '-')) FROM hokusai_auth.api_keys WHERE id = '$_[0]'");
}
sub audit_count { return sql("SELECT count(*) FROM hokusai_auth.audit_log WHERE api_key_id = '$_[0]'"); }
is(refill_row($rk), 'refill later - - -', 'a key without credits or refill');

# A key without a refill needs both members.
my $audits = audit_count($rk);
for my $bad ([ '{"refill_amount": 5}', qr/^refill_amount and refill_interval must be given together$/ ],
	[ '{"refill_interval": "day"}', qr/^refill_amount and refill_interval must be given together$/ ])
{
	$r = api('PATCH', "/keys/$rk", headers => [ bearer($bob) ], body => $bad->[0]);
	is($r->{status}, 400, "PATCH refill on a key without one, $bad->[0]: 400");
	is($r->{json}{code}, 'invalid_field', '... invalid_field');
	like($r->{json}{message} // '', $bad->[1], '... the reason');
	like($r->{json}{hint} // '', qr/has no refill yet/, '... the hint');
}
is(refill_row($rk), 'refill later - - -', '... nothing changed');
is(audit_count($rk), $audits, '... nothing audited');

$r = api('PATCH', "/keys/$rk", headers => [ bearer($bob) ], body => '{"refill_amount": 50, "refill_interval": "week"}');
is($r->{status}, 200, 'PATCH refill: 200') or diag($r->{body});
is($r->{json}{refill_amount}, 50, '... refill_amount in the response');
is($r->{json}{refill_interval}, 'week', '... refill_interval');
is($r->{json}{credits_remaining}, 50, '... an unmetered key given a refill starts full');
is(refill_row($rk), 'refill later 50 week 50', '... in the database');
is(sql("SELECT details->'changes' FROM hokusai_auth.audit_log WHERE api_key_id = '$rk' AND action = 'update' ORDER BY id DESC LIMIT 1"),
	'{"refill_amount": 50, "refill_interval": "week"}', '... audited');

$r = api('PATCH', "/keys/$rk", headers => [ bearer($bob) ], body => '{"refill_amount": 70}');
is($r->{status}, 200, 'PATCH refill_amount alone on a key with a refill: 200') or diag($r->{body});
is(refill_row($rk), 'refill later 70 week 50', '... the amount changed, the interval and balance kept');
$r = api('PATCH', "/keys/$rk", headers => [ bearer($bob) ], body => '{"refill_interval": "month", "name": "monthly"}');
is($r->{status}, 200, 'PATCH refill_interval with name: 200') or diag($r->{body});
is(refill_row($rk), 'monthly 70 month 50', '... both changed');

# Bad refills: 400 in PostgREST's error shape, nothing changed.
$audits = audit_count($rk);
for my $bad ([ '{"refill_amount": 0}', qr/^refill_amount must be between 1 and 9223372036854775807$/ ],
	[ '{"refill_amount": -5}', qr/^refill_amount must be between 1 and/ ],
	[ '{"refill_amount": 1.5}', qr/^refill_amount must be an integer$/ ],
	[ '{"refill_amount": "10"}', qr/^refill_amount must be an integer$/ ],
	[ '{"refill_amount": 9223372036854775808}', qr/^refill_amount must be between 1 and/ ],
	[ '{"refill_interval": "hour"}', qr/^refill_interval must be "day", "week" or "month"$/ ],
	[ '{"refill_interval": 7}', qr/^refill_interval must be a string$/ ],
	[ '{"refill_interval": ""}', qr/^refill_interval must not be empty$/ ],
	[ '{"refill_amount": null}', qr/^refill_amount and refill_interval are cleared together$/ ],
	[ '{"refill_interval": null}', qr/^refill_amount and refill_interval are cleared together$/ ],
	[ '{"refill_amount": null, "refill_interval": "day"}', qr/^refill_amount and refill_interval are cleared together$/ ],
	[ '{"name": "renamed", "refill_interval": "year"}', qr/^refill_interval must be/ ],
	[ '{"name": "renamed", "refill_amount": 5, "refill_every": "day"}', qr/^unknown field in the request body: refill_every$/ ])
{
	$r = api('PATCH', "/keys/$rk", headers => [ bearer($bob) ], body => $bad->[0]);
	is($r->{status}, 400, "PATCH $bad->[0]: 400");
	is_deeply([ sort keys %{ $r->{json} || {} } ], [qw(code details hint message)], '... PostgREST\'s error shape');
	like($r->{json}{message} // '', $bad->[1], "... $r->{json}{code}: the reason");
}
is(refill_row($rk), 'monthly 70 month 50', 'after the bad requests: nothing changed');
is(audit_count($rk), $audits, '... nothing audited');

# Someone else's key: 404, unchanged.
$r = api('PATCH', "/keys/$rk", headers => [ bearer($alice) ], body => '{"refill_amount": 1, "refill_interval": "day"}');
is($r->{status}, 404, 'PATCH refill of another user\'s key: 404');
is(refill_row($rk), 'monthly 70 month 50', '... unchanged');

# Both null: no more refills, the balance stays.
$r = api('PATCH', "/keys/$rk", headers => [ bearer($bob) ], body => '{"refill_amount": null, "refill_interval": null}');
is($r->{status}, 200, 'PATCH refill_amount and refill_interval null: 200') or diag($r->{body});
ok(!defined $r->{json}{refill_amount} && !defined $r->{json}{refill_interval}, '... the response has no refill');
is(refill_row($rk), 'monthly - - 50', '... no refill in the database, the balance kept');

###########################################################################
# The usage route's hourly series (docs/http.md#get-apiv1authkeyskey_idusage)
###########################################################################

# Usage of bob's key over the last 3 days, through the worker's write step
# in SQL, into partitions made for those days: in the hour that started h
# hours ago (h = 0..71, every third hour left out), h % 5 + 1 requests.
sql(<<"SQL");
SELECT hokusai_auth._usage_make_partition(p, now() - d * interval '1 day')
  FROM unnest('{hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely,
				hokusai_auth.api_key_usage_hourly, hokusai_auth.api_key_usage_daily}'::regclass[]) p,
	   generate_series(0, 4) d;
SELECT hokusai_auth._usage_flush(array_agg(k), array_agg(e), array_agg(t), array_agg(r), array_agg(c))
  FROM (SELECT '$rk'::uuid AS k, 'GET /keys'::text AS e,
			   date_trunc('hour', now()) - h * interval '1 hour' + (i * 7 % 60) * interval '1 minute' AS t,
			   3 * h + 11 * i AS r,
			   CASE WHEN i = 2 THEN 429 WHEN i = 4 THEN 500 ELSE 200 END AS c
		  FROM generate_series(1, 71) h, generate_series(0, h % 5) i
		 WHERE h % 3 <> 0) ev;
SQL
sub utc { return sql("SELECT to_char(($_[0]) AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"')"); }
my $hour0 = utc("date_trunc('hour', now(), 'UTC') - interval '72 hours'");
my $hour1 = utc("date_trunc('hour', now(), 'UTC') + interval '1 hour'");
sub series_sql
{
	my ($since, $until) = @_;
	return sql("SELECT coalesce(string_agg(extract(epoch FROM period_start)::bigint || '/' || requests || '/' || errors || '/' "
		  . "|| coalesce(p95_response_ms::float8::text, '-'), ' ' ORDER BY period_start), '') "
		  . "FROM hokusai_auth.usage_timeseries('$rk', 'hour', '$since', '$until')");
}
sub series_got
{
	my ($json) = @_;
	my @p = @{ $json->{series} || [] };
	return '' unless @p;
	my @epochs = split / /, sql("SELECT string_agg(extract(epoch FROM t)::bigint::text, ' ' ORDER BY o) FROM unnest('{"
		  . join(',', map { "\"$_->{period_start}\"" } @p) . "}'::timestamptz[]) WITH ORDINALITY u(t, o)");
	return join ' ', map { "$epochs[$_]/$p[$_]{requests}/$p[$_]{errors}/" . ($p[$_]{p95_response_ms} // '-') } 0 .. $#p;
}
for my $range ([ $hour0, $hour1, '72 hours' ],
	[ utc("'$hour0'::timestamptz + interval '90 minutes'"), utc("'$hour1'::timestamptz - interval '150 minutes'"),
	  'hours cut at both ends' ])
{
	my ($since, $until, $what) = @$range;
	$r = api('GET', "/keys/$rk/usage?since=$since&until=$until&series=hour", headers => [ bearer($bob) ]);
	is($r->{status}, 200, "usage series=hour, $what: 200") or diag($r->{body});
	is($r->{json}{series_period}, 'hour', '... series_period hour');
	my $want = series_sql($since, $until);
	ok(length $want > 100, '... the key has usage in the range');
	is(series_got($r->{json}), $want, '... each point is usage_timeseries(\'hour\')\'s (requests, errors, p95)');
	my $sum = 0;
	$sum += $_->{requests} for @{ $r->{json}{series} || [] };
	is($sum, $r->{json}{requests}, "... the points add up to the summary's requests ($sum)");
	is(sql("SELECT requests FROM hokusai_auth.usage_summary('$rk', '$since', '$until')"), $sum,
		'... which is usage_summary()\'s');
}
$r = api('GET', "/keys/$rk/usage?since=$hour0&until=$hour1", headers => [ bearer($bob) ]);
is($r->{status}, 200, 'usage without series: 200');
ok(!exists $r->{json}{series} && !exists $r->{json}{series_period}, '... and no series');

# At most 31 days.
my $d31 = utc("'$hour1'::timestamptz - interval '31 days'");
$r = api('GET', "/keys/$rk/usage?since=$d31&until=$hour1&series=hour", headers => [ bearer($bob) ]);
is($r->{status}, 200, 'usage series over exactly 31 days: 200') or diag($r->{body});
is(series_got($r->{json}), series_sql($d31, $hour1), '... the points are usage_timeseries(\'hour\')\'s');

# Bad series requests: 400 in PostgREST's error shape.
my $d32 = utc("'$hour1'::timestamptz - interval '31 days 1 second'");
my $d32now = utc("now() - interval '31 days 1 minute'");
for my $bad ([ "since=$d32&until=$hour1&series=hour", 'invalid_field', qr/^a series covers at most 31 days$/, '31 days and a second' ],
	[ "since=$d32now&series=hour", 'invalid_field', qr/^a series covers at most 31 days$/, 'since 31 days and a minute ago, until now' ],
	[ "until=$hour1&series=hour", 'invalid_field', qr/^since is required with series$/, 'no since' ],
	[ 'series=hour', 'invalid_field', qr/^since is required with series$/, 'no since or until' ],
	[ "since=$hour0&until=$hour1&series=day", 'invalid_field', qr/^series must be "hour"$/, 'series=day' ],
	[ "since=$hour0&until=$hour1&series=", 'invalid_field', qr/^series must be "hour"$/, 'series empty' ],
	[ "since=$hour1&until=$hour0&series=hour", 'invalid_field', qr/^since must not be later than until$/, 'since after until' ],
	[ "since=yesterday&series=hour", 'invalid_field', qr/^since must be an ISO 8601 timestamp$/, 'since not a timestamp' ],
	[ "since=$hour0&period=hour", 'invalid_query', qr/^unknown query parameter$/, 'an unknown parameter (period)' ])
{
	$r = api('GET', "/keys/$rk/usage?$bad->[0]", headers => [ bearer($bob) ]);
	is($r->{status}, 400, "usage series: $bad->[3]: 400");
	is_deeply([ sort keys %{ $r->{json} || {} } ], [qw(code details hint message)], '... PostgREST\'s error shape');
	is($r->{json}{code}, $bad->[1], "... $bad->[1]");
	like($r->{json}{message} // '', $bad->[2], '... the reason');
}
$r = api('GET', "/keys/$rk/usage?since=$hour0&until=$hour1&series=hour", headers => [ bearer($alice) ]);
is($r->{status}, 404, 'usage series of another user\'s key: 404');

$http->stop;
$node->stop;
done_testing();
