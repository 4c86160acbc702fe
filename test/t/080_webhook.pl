# hokusai auth webhook against a local HTTPS receiver (test/lib/
# webhook_receiver.py, a certificate made here with openssl) that answers
# 500 to the first deliveries and 400 to one event, and is killed and
# restarted, while the relay is killed and restarted and the server
# restarted.  In the end every event has arrived, in id order, each signed
# (HMAC-SHA256 of "<t>.<body>" with the secret), the body byte for byte the
# event's JSON, with no repeat beyond what at-least-once allows (the event
# in flight when the relay was killed); the refused event was given up with
# a line on stderr; an event whose transaction commits late holds back the
# later ones; the cursor is in the database.  Also: bad input, a second
# relay for the same URL, an untrusted certificate, CURL_CA_BUNDLE, and the
# secret in no output or log.
use strict;
use warnings;

use Cwd qw(abs_path);
use Digest::SHA qw(hmac_sha256_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use JSON::PP;
use Time::HiRes qw(usleep);
use HokusaiTest;

my $node = HokusaiTest::new_node('webhook',
	extra_conf => "hokusai_auth.flush_interval = 100ms\n"
	  . "hokusai_auth.database = 'postgres'\n");
sub q1 { return $node->safe_psql('postgres', $_[0]); }

my $bindir = `pg_config --bindir`;
chomp $bindir;
my $bin = "$bindir/hokusai";
ok(-x $bin, "hokusai is installed in $bindir") or BAIL_OUT("no $bin");
my @conn = ('-h', $node->host, '-p', $node->port, '-d', 'postgres');
my $receiver = abs_path('test/lib/webhook_receiver.py');
my $dir = PostgreSQL::Test::Utils::tempdir('webhook');

# A self-signed certificate for 127.0.0.1, and the secret.
my ($ossl_out, $ossl_err) = ('', '');
IPC::Run::run([ 'openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '2',
		'-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1',
		'-keyout', "$dir/key.pem", '-out', "$dir/cert.pem" ], '<', \undef, '>', \$ossl_out, '2>', \$ossl_err)
  or BAIL_OUT("openssl could not make a certificate: $ossl_err");
my $secret = 'whsec_' . join('', map { ('a' .. 'z', 0 .. 9)[ int(rand(36)) ] } 1 .. 32);
open(my $fh, '>', "$dir/secret") or die;
print $fh "$secret\n";
close $fh;
chmod 0600, "$dir/secret";

my $port = PostgreSQL::Test::Cluster::get_free_port();
my $url = "https://127.0.0.1:$port/hooks/in?token=T0K3Nabc";
my $log = "$dir/deliveries.jsonl";

# The receiver, and what it got.
my $recv;
sub start_receiver
{
	my @opt = @_;
	my $out = '';
	$recv = IPC::Run::start([ 'python3', $receiver, $port, "$dir/cert.pem", "$dir/key.pem", $log, @opt ],
		'<', \undef, '>', \$out, '2>', "$dir/receiver.err");
	my $t = IPC::Run::timer(30);
	$t->start;
	$recv->pump_nb, usleep(50_000) until $out =~ /listening/ || $t->is_expired;
	ok($out =~ /listening/, "receiver listening (@opt)");
}
sub deliveries
{
	return [] unless -e $log;
	return [ map { decode_json($_) } split /\n/, slurp_file($log) ];
}
sub accepted { return [ map { $_->{id} } grep { $_->{status} == 200 } @{ deliveries() } ]; }
sub event_ids { return [ split /\n/, q1('SELECT id FROM hokusai_auth.events ORDER BY id') ]; }

# The relay; its stderr accumulates in one file across runs.
my $relay;
my $relay_err = "$dir/relay.err";
sub start_relay
{
	$relay = IPC::Run::start([ $bin, @conn, 'auth', 'webhook', '--url', $url,
			'--secret-file', "$dir/secret", '--cacert', "$dir/cert.pem", @_ ],
		'<', \undef, '>>', "$dir/relay.out", '2>>', $relay_err);
}
sub relay_said { return -e $relay_err ? slurp_file($relay_err) : ''; }

# wait_for(cond, name): poll until cond() holds (or the timeout)
sub wait_for
{
	my ($cond, $name) = @_;
	my $t = IPC::Run::timer($PostgreSQL::Test::Utils::timeout_default);
	$t->start;
	usleep(100_000) until $cond->() || $t->is_expired;
	ok($cond->(), $name);
}
# Every committed event (but the refused one) has been taken.
my $refused;
sub all_taken
{
	my %got = map { $_ => 1 } @{ accepted() };
	return !grep { !$got{$_} && (!defined $refused || $_ != $refused) } @{ event_ids() };
}

###########################################################################
# Deliveries: the first three answered 500, one event refused with 400
###########################################################################

my ($uid, $k1) = HokusaiTest::new_key($node, 'hana');
my (undef, $k2) = HokusaiTest::new_key($node, 'ivo');
q1("SELECT name FROM hokusai_auth.update_key('$k1', name => 'renamed')");
q1("SELECT hokusai_auth.revoke_key('$k2', 'done')");
$refused = q1("SELECT id FROM hokusai_auth.events WHERE kind = 'key.updated'");
start_receiver('--fail-first', '3', '--refuse-id', $refused);
start_relay();
wait_for(\&all_taken, 'every event taken despite the 500s');
wait_for(sub { relay_said() =~ /giving up/ }, 'the refused event is given up');
my @first = grep { $_->{id} eq '1' } @{ deliveries() };
is(join(',', map { $_->{status} } @first), '500,500,500,200', 'event 1: three 500s, then taken');
like(relay_said(), qr/^hokusai: webhook: delivering the events after 0 to https:\/\/127\.0\.0\.1:$port$/m,
	'relay: says where it starts, naming the receiver by origin');
like(relay_said(), qr/^hokusai: webhook: event 1 \(key\.created\) to https:\/\/127\.0\.0\.1:$port: the receiver answered 500; retrying in \d+\.\d s \(attempt 2\)$/m,
	'relay: one line per failed attempt');
like(relay_said(), qr/^hokusai: webhook: giving up on event $refused \(key\.updated\): the receiver answered 400, which is not retried; it will not be sent again \(--after \d+ sends it and those after it again\)$/m,
	'relay: the give-up line');
is(scalar(grep { $_->{id} eq $refused } @{ deliveries() }), 1, 'the refused event is not sent again');

###########################################################################
# The receiver is killed, events pile up, the relay is killed too; both
# restart
###########################################################################

$recv->kill_kill;
my (undef, $k3) = HokusaiTest::new_key($node, 'jon');
q1("SELECT hokusai_auth.revoke_key('$k3')");
wait_for(sub { relay_said() =~ /could not reach the receiver/ }, 'relay: the receiver is unreachable');
$relay->kill_kill;
# The receiver takes the rotation but is slow to say so: the relay is
# killed in between, and sends it again when it starts (at least once).
start_receiver('--slow-kind', 'key.rotated');
q1("SELECT id FROM hokusai_auth.rotate_key('$k1', grace => '1 hour')");
start_relay();
wait_for(sub { grep { $_->{status} == 200 && $_->{body} =~ /"key\.rotated"/ } @{ deliveries() } },
	'the receiver took the rotation');
$relay->kill_kill;
start_relay();
wait_for(\&all_taken, 'after both restarted, every event taken');
wait_for(sub { (grep { $_->{status} == 200 && $_->{body} =~ /"key\.rotated"/ } @{ deliveries() }) == 2 },
	'the rotation, taken when the relay was killed, is sent again');

###########################################################################
# The server restarts under the relay
###########################################################################

$node->restart;
q1("SELECT id FROM hokusai_auth.create_key('$uid', 'after the server restart')");
wait_for(\&all_taken, 'the events after a server restart are taken');
like(relay_said(), qr/^hokusai: webhook: lost the connection to the server; reconnecting$/m,
	'relay: says it lost the database');
like(relay_said(), qr/^hokusai: webhook: reconnected; resuming after event \d+$/m,
	'relay: and that it is back');

###########################################################################
# A late commit holds back the events after it
###########################################################################

my ($in, $iout, $ierr) = ('', '', '');
my $open = IPC::Run::start([ 'psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
		'-d', $node->connstr('postgres') ], '<', \$in, '>', \$iout, '2>', \$ierr);
$in .= "BEGIN;\nSELECT id FROM hokusai_auth.create_key('$uid', 'late');\nSELECT 'idle now';\n";
$open->pump until $iout =~ /idle now/ || $ierr ne '';
my $before = scalar(@{ accepted() });
q1("SELECT id FROM hokusai_auth.create_key('$uid', 'after the late one')");
sleep 3;
is(scalar(@{ accepted() }), $before, 'nothing delivered while an earlier event may still commit');
$in .= "COMMIT;\n\\q\n";
$open->finish;
wait_for(\&all_taken, 'both delivered once the late one committed');

###########################################################################
# What arrived
###########################################################################

my @acc = @{ accepted() };
my ($dups, $max, $bad_dups) = (0, undef, 0);
for my $id (@acc)
{
	if (defined $max && $id <= $max)
	{
		$dups++;
		# at least once: only the last event taken before the relay was
		# killed (its cursor not written yet) may come again
		$bad_dups++ unless $id == $max;
	}
	$max = $id if !defined $max || $id > $max;
}
is($dups, 1, 'one repeat: the event taken when the relay was killed');
is($bad_dups, 0, 'a repeat can only be the last event taken before the kill');
my %seen;
my @first_seen = grep { !$seen{$_}++ } @acc;
is_deeply(\@first_seen, [ sort { $a <=> $b } @first_seen ], 'taken in id order');
is_deeply([ sort { $a <=> $b } (@first_seen, $refused) ], event_ids(),
	'no gap: every event taken, but the refused one');

my %json = map { split /\t/, $_, 2 } split /\n/,
  q1("SET timezone = 'UTC'; SELECT id || E'\\t' || to_jsonb(e)::text FROM hokusai_auth.events e");
my ($bad_sig, $bad_body, $stale, $bad_type) = (0, 0, 0, 0);
for my $d (@{ deliveries() })
{
	my ($t, $v1) = ($d->{signature} // '') =~ /^t=(\d+),v1=([0-9a-f]{64})$/;
	$bad_sig++ unless defined $v1 && hmac_sha256_hex("$t.$d->{body}", $secret) eq $v1;
	$stale++ unless defined $t && abs(time() - $t) < 600;
	$bad_body++ unless ($json{ $d->{id} } // '') eq $d->{body} && decode_json($d->{body})->{id} == $d->{id};
	$bad_type++ unless ($d->{content_type} // '') eq 'application/json';
}
cmp_ok(scalar(@{ deliveries() }), '>', 10, 'the receiver got deliveries');
is($bad_sig, 0, 'every signature is the HMAC-SHA256 of "<t>.<body>" with the secret');
is($stale, 0, 'every t is the time of its attempt');
is($bad_body, 0, 'every body is the event\'s JSON, byte for byte, with the id of Hokusai-Event-Id');
is($bad_type, 0, 'Content-Type: application/json');
is(q1("SELECT hokusai_auth.webhook_cursor('$url')"), event_ids()->[-1], 'the cursor is the last event');

###########################################################################
# One relay per URL; bad input; certificates
###########################################################################

my ($rc, $out, $err);
sub cli
{
	my ($env, @args) = @_;
	($out, $err) = ('', '');
	local %ENV = (%ENV, %$env);
	delete $ENV{CURL_CA_BUNDLE} unless exists $env->{CURL_CA_BUNDLE};
	IPC::Run::run([ $bin, @conn, 'auth', 'webhook', @args ], '<', \undef, '>', \$out, '2>', \$err,
		IPC::Run::timeout(60));
	$rc = $? >> 8;
}
cli({}, '--url', $url, '--secret-file', "$dir/secret", '--cacert', "$dir/cert.pem");
is($rc, 1, 'a second relay for the URL: exit 1');
like($err, qr/^hokusai: webhook: another hokusai auth webhook is delivering to this URL \(https:\/\/127\.0\.0\.1:$port\)$/m,
	'a second relay: says why');
$relay->kill_kill;

open($fh, '>', "$dir/empty") or die;
close $fh;
for my $case (
	[ 'no --url', '--secret-file', "$dir/secret" ],
	[ 'no --secret-file', '--url', $url ],
	[ 'ftp URL', '--url', 'ftp://127.0.0.1/x', '--secret-file', "$dir/secret" ],
	[ 'URL with a blank', '--url', 'https://127.0.0.1/a b', '--secret-file', "$dir/secret" ],
	[ 'missing secret file', '--url', $url, '--secret-file', "$dir/nope" ],
	[ 'empty secret file', '--url', $url, '--secret-file', "$dir/empty" ],
	[ 'missing --cacert', '--url', $url, '--secret-file', "$dir/secret", '--cacert', "$dir/nope.pem" ],
	[ 'bad --after', '--url', $url, '--secret-file', "$dir/secret", '--after', '-5' ],
	[ '--follow', '--url', $url, '--secret-file', "$dir/secret", '--follow' ])
{
	my ($name, @args) = @$case;
	cli({}, @args);
	is($rc, 2, "webhook, $name: exit 2");
	is(scalar(split /\n/, $err), 1, "webhook, $name: one line on stderr");
	is($out, '', "webhook, $name: nothing on stdout");
}

# A certificate nobody vouches for: retried, never taken.
my $before_n = scalar(@{ deliveries() });
my $untrusted = IPC::Run::start([ $bin, @conn, 'auth', 'webhook', '--url', "$url&untrusted",
		'--secret-file', "$dir/secret", '--after', event_ids()->[-1] - 1 ],
	'<', \undef, '>', \$out, '2>', "$dir/untrusted.err",
	init => sub { delete $ENV{CURL_CA_BUNDLE}; });
wait_for(sub { -e "$dir/untrusted.err" && slurp_file("$dir/untrusted.err") =~ /retrying/ },
	'an untrusted certificate: retried');
$untrusted->kill_kill;
like(slurp_file("$dir/untrusted.err"), qr/could not reach the receiver: SSL certificate problem/,
	'an untrusted certificate: says why');
is(scalar(@{ deliveries() }), $before_n, 'an untrusted certificate: nothing delivered');

# CURL_CA_BUNDLE is the CA bundle when there is no --cacert.
my $last = event_ids()->[-1];
my $taken_before = grep { $_ == $last } @{ accepted() };
my $bundled = IPC::Run::start([ $bin, @conn, 'auth', 'webhook', '--url', "$url&bundle",
		'--secret-file', "$dir/secret", '--after', event_ids()->[-1] - 1 ],
	'<', \undef, '>', \$out, '2>', "$dir/bundle.err",
	init => sub { $ENV{CURL_CA_BUNDLE} = "$dir/cert.pem"; });
wait_for(sub { (grep { $_ == $last } @{ accepted() }) == $taken_before + 1 },
	'CURL_CA_BUNDLE: delivered');
$bundled->kill_kill;

# The secret: in no output of the relay and nowhere in the server's log.
my $said = relay_said() . slurp_file("$dir/untrusted.err") . slurp_file("$dir/bundle.err")
  . slurp_file("$dir/relay.out");
unlike($said, qr/\Q$secret\E/, 'the secret is in no output of the relay');
unlike($said, qr/T0K3N/, 'the URL\'s token is in no output of the relay');
unlike(slurp_file($node->logfile), qr/\Q$secret\E/, 'the secret is not in the server log');

$recv->kill_kill;
$node->stop;
done_testing();
