# Events from the CLI, the worker and HTTP (docs/events.md):
#   - hokusai auth events: the lines, --json, --after, bad input;
#   - events --follow prints each event as it commits, holds back ids after
#     an open transaction's until it commits, and survives a server restart
#     without skipping or repeating an event;
#   - the worker writes rate_limit.exceeded (at most once per key per
#     minute) and key.expiring (once each), and prunes by
#     hokusai_auth.events_retention;
#   - GET /api/v1/auth/events through nginx and PostgREST: the caller's own
#     events, paging by after and limit, bad parameters, other methods.
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

my $node = HokusaiTest::new_node('events',
	extra_conf => "hokusai_auth.flush_interval = 100ms\n"
	  . "hokusai_auth.database = 'postgres'\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $bin = "$bindir/hokusai";
ok(-x $bin, "hokusai is installed in $bindir") or BAIL_OUT("no $bin");
my @conn = ('-h', $node->host, '-p', $node->port, '-d', 'postgres');

# cli(args...): (exit code, stdout, stderr)
sub cli
{
	my ($out, $err) = ('', '');
	IPC::Run::run([ $bin, @conn, 'auth', @_ ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(60));
	return ($? >> 8, $out, $err);
}

# The ids of hokusai_auth.events, in order.
sub event_ids { return [ split /\n/, q1('SELECT id FROM hokusai_auth.events ORDER BY id') ]; }

###########################################################################
# events, without --follow
###########################################################################

my ($uid, $kid) = HokusaiTest::new_key($node, 'ella');
q1("SELECT hokusai_auth.revoke_key('$kid', 'gone')");
my $prefix = q1("SELECT key_prefix FROM hokusai_auth.api_keys WHERE id = '$kid'");

my ($rc, $out, $err) = cli('events');
is($rc, 0, 'events: exit 0');
is($err, '', 'events: nothing on stderr');
my @lines = split /\n/, $out;
is(scalar(@lines), 2, 'events: one line per event');
like($lines[0], qr/^1  \d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?\+00  key\.created  \Q$prefix\E  \{.*"name": "test key".*\}$/,
	'events: id, time in UTC, kind, key_prefix, data');
like($lines[1], qr/^2  \S+ \S+  key\.revoked  \Q$prefix\E  \{"reason": "gone", "key_prefix": "\Q$prefix\E"\}$/,
	'events: the revocation with its reason');

($rc, $out, $err) = cli('events', '--json');
is($rc, 0, 'events --json: exit 0');
my @json = map { decode_json($_) } split /\n/, $out;
is_deeply([ map { $_->{id} } @json ], [ 1, 2 ], 'events --json: one object per line, in id order');
is_deeply([ sort keys %{ $json[1] } ], [ sort qw(id at kind api_key_id user_id data) ],
	'events --json: the event\'s columns');
is($json[1]{api_key_id}, $kid, 'events --json: api_key_id');
is($json[1]{user_id}, $uid, 'events --json: user_id');
like($json[1]{at}, qr/\+00:00$/, 'events --json: at in UTC');

($rc, $out) = cli('events', '--after', '1', '--json');
is(scalar(split /\n/, $out), 1, 'events --after 1: only the later event');
($rc, $out) = cli('events', '--after', '2');
is($out, '', 'events --after the last: nothing');

for my $bad ([ '--after', '-1' ], [ '--after', 'x' ], [ '--after', '99999999999999999999' ],
	[ '--after' ], [ 'extra' ], [ '--follow=yes' ], [ '--url', 'https://x' ])
{
	($rc, $out, $err) = cli('events', @$bad);
	is($rc, 2, "events @$bad: usage error, exit 2");
	is(scalar(split /\n/, $err), 1, "events @$bad: one line on stderr");
	is($out, '', "events @$bad: nothing on stdout");
}

###########################################################################
# events --follow: as they commit, in id order, across a server restart
###########################################################################

my ($fout, $ferr) = ('', '');
my $follow = IPC::Run::start([ $bin, @conn, 'auth', 'events', '--follow', '--json' ],
	'<', \undef, '>', \$fout, '2>', \$ferr);

# pump the follower until cond() or the timeout
sub follow_until
{
	my ($cond, $what) = @_;
	my $t = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
	$t->start;
	$follow->pump_nb, usleep(50_000) until $cond->() || $t->is_expired;
	ok($cond->(), $what);
}
sub followed { return [ map { decode_json($_)->{id} } grep { /^\{/ } split /\n/, $fout ]; }

follow_until(sub { @{ followed() } == 2 }, 'follow: the events so far');
my (undef, $k2) = HokusaiTest::new_key($node, 'fred');
follow_until(sub { @{ followed() } == 3 }, 'follow: a new event as it commits');

# An open transaction's event holds back the later ones.
my ($in, $iout, $ierr) = ('', '', '');
my $open = IPC::Run::start([ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr('postgres') ], '<', \$in, '>', \$iout, '2>', \$ierr);
$in .= "BEGIN;\nSELECT hokusai_auth.revoke_key('$k2', 'late');\nSELECT 'idle now';\n";
$open->pump until $iout =~ /idle now/ || $ierr ne '';
q1("SELECT id FROM hokusai_auth.create_key('$uid', 'after the open one')");
q1("SELECT id FROM hokusai_auth.create_key('$uid', 'and another')");
sleep 3;
$follow->pump_nb;
is(scalar(@{ followed() }), 3, 'follow: nothing after an open transaction\'s event while it is open');
$in .= "COMMIT;\n\\q\n";
$open->finish;
follow_until(sub { @{ followed() } == 6 }, 'follow: all three once it committed');
is_deeply(followed(), event_ids(), 'follow: in id order, the late one first');

# The server restarts; events committed before the follower reconnects
# are printed once it does.
$node->restart;
q1("SELECT id FROM hokusai_auth.create_key('$uid', 'after the restart')");
q1("SELECT hokusai_auth.revoke_key(id) FROM hokusai_auth.api_keys WHERE name = 'and another'");
follow_until(sub { @{ followed() } == 8 }, 'follow: the events after the restart');
q1("SELECT id FROM hokusai_auth.create_key('$uid', 'later still')");
follow_until(sub { @{ followed() } == 9 }, 'follow: and new ones');
is_deeply(followed(), event_ids(), 'follow: every event once, in id order, across the restart');
like($ferr, qr/^hokusai: events: lost the connection to the server; reconnecting$/m,
	'follow: says it lost the connection');
like($ferr, qr/^hokusai: events: reconnected; resuming after event 6$/m,
	'follow: says where it resumes');
$follow->kill_kill;

###########################################################################
# The worker: rate_limit.exceeded, key.expiring, retention
###########################################################################

my ($u3, $k3, $key3) = HokusaiTest::new_key($node, 'gina', args => 'rate_limit_per_hour => 1');
is(HokusaiTest::status($node, $key3), 'ok', 'the key\'s one request an hour');
is(HokusaiTest::status($node, $key3), 'rate_limited', 'then refused') for 1 .. 3;
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM hokusai_auth.events WHERE kind = 'rate_limit.exceeded' AND api_key_id = '$k3'"),
	'worker: rate_limit.exceeded written');
is(q1("SELECT data->>'key_prefix' = k.key_prefix AND (data->>'retry_after')::int > 0 AND e.user_id = '$u3'
	     FROM hokusai_auth.events e JOIN hokusai_auth.api_keys k ON k.id = e.api_key_id
	    WHERE e.kind = 'rate_limit.exceeded' AND e.api_key_id = '$k3'"),
	't', 'worker: with key_prefix, retry_after and the owner');
my $dedup = q1('SELECT deduplicated FROM hokusai_auth.event_queue_stats()');
is(HokusaiTest::status($node, $key3), 'rate_limited', 'refused again') for 1 .. 2;
is(q1('SELECT deduplicated FROM hokusai_auth.event_queue_stats()'), $dedup + 2,
	'the refusals within the minute are not queued');
sleep 1;
ok($node->poll_query_until('postgres', 'SELECT queued = 0 FROM hokusai_auth.event_queue_stats()'),
	'worker: the queue is empty');
is(q1("SELECT count(*) FROM hokusai_auth.events WHERE kind = 'rate_limit.exceeded' AND api_key_id = '$k3'"),
	'1', 'worker: still one rate_limit.exceeded within the minute');

my $soon = q1("SELECT id FROM hokusai_auth.create_key('$u3', 'in three days', expires_at => now() + interval '3 days')");
ok($node->poll_query_until('postgres',
		"SELECT count(*) = 1 FROM hokusai_auth.events WHERE kind = 'key.expiring' AND api_key_id = '$soon'"),
	'worker: key.expiring for a key 3 days from expiry');
is(q1("SELECT data->>'days' FROM hokusai_auth.events WHERE kind = 'key.expiring' AND api_key_id = '$soon'"),
	'7', 'worker: the 7-day notice');
sleep 12;    # the worker looks every 10 seconds
is(q1("SELECT count(*) FROM hokusai_auth.events WHERE kind = 'key.expiring' AND api_key_id = '$soon'"),
	'1', 'worker: given once');

q1("UPDATE hokusai_auth.events SET at = now() - interval '31 days' WHERE id = 1");
ok($node->poll_query_until('postgres', 'SELECT count(*) = 0 FROM hokusai_auth.events WHERE id = 1'),
	'worker: an event older than events_retention (30d) is pruned');
q1("ALTER SYSTEM SET hokusai_auth.events_retention = 0");
$node->reload;
q1("UPDATE hokusai_auth.events SET at = now() - interval '400 days' WHERE id = 2");
sleep 12;
is(q1('SELECT count(*) FROM hokusai_auth.events WHERE id = 2'), '1', 'worker: events_retention = 0 keeps it');

###########################################################################
# GET /api/v1/auth/events
###########################################################################

q1('SELECT hokusai_auth.setup_http_roles()');
my $http = HokusaiHttp->start($node, 'events_http');
my ($base, $cacert) = @$http{qw(base cacert)};
my $jwt = $http->jwt($uid);
chomp $jwt;

sub get
{
	my ($path, @headers) = @_;
	my ($o, $e) = ('', '');
	IPC::Run::run([ 'curl', '-s', '-w', '\n%{http_code}', '--max-time', '20', '--cacert', $cacert,
			(map { ('-H', $_) } @headers), "$base$path" ], '>', \$o, '2>', \$e);
	my ($body, $status) = $o =~ /^(.*)\n(\d+)$/s;
	return ($status // 0, $body // '');
}
my ($status, $body) = get('/events', "Authorization: Bearer $jwt");
is($status, 200, 'GET /events: 200');
my $mine = decode_json($body);
my $expected = q1("SELECT string_agg(id::text, ',' ORDER BY id) FROM hokusai_auth.events WHERE user_id = '$uid'");
is(join(',', map { $_->{id} } @$mine), $expected, 'GET /events: the caller\'s events, in id order');
ok(!grep({ $_->{user_id} ne $uid } @$mine), 'GET /events: no other user\'s');
cmp_ok(q1("SELECT count(*) FROM hokusai_auth.events WHERE user_id <> '$uid'"), '>', 0,
	'(other users have events)');
($status, $body) = get("/events?after=$mine->[0]{id}&limit=2", "Authorization: Bearer $jwt");
is($status, 200, 'GET /events?after=&limit=: 200');
is(join(',', map { $_->{id} } @{ decode_json($body) }), join(',', map { $_->{id} } @$mine[ 1 .. 2 ]),
	'GET /events?after=&limit=: the next page');
for my $bad ('?after=x', '?order=id.desc', '?after=1&select=id', '?limit=-1')
{
	($status, $body) = get("/events$bad", "Authorization: Bearer $jwt");
	is($status, 400, "GET /events$bad: 400");
	like($body, qr/"code":"invalid_query"/, "GET /events$bad: invalid_query");
}
($status, $body) = get('/events');
is($status, 401, 'GET /events without credentials: 401');
my ($o, $e) = ('', '');
IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '-X', 'POST', '--cacert', $cacert,
		'-H', "Authorization: Bearer $jwt", "$base/events" ], '>', \$o, '2>', \$e);
is($o, '405', 'POST /events: 405');

$http->stop;
$node->stop;
done_testing();
