# The webhook receivers of docs/examples/ (webhook_receiver.py and
# webhook_receiver.mjs) and the verification code docs/events.md shows:
#   - the ```python and ```js blocks of docs/events.md are the code between
#     "BEGIN verify" and "END verify" in the two receivers, so what the
#     document shows is what runs here;
#   - each receiver takes every event hokusai auth webhook sends it (and
#     handles each id once);
#   - each refuses, with 400, a forged signature, a tampered body, a stale
#     timestamp, a missing header and a signature made with another secret.
use strict;
use warnings;

use Cwd qw(abs_path);
use Digest::SHA qw(hmac_sha256_hex);
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use Time::HiRes qw(usleep);
use HokusaiTest;

my $top = abs_path('.');
my $events_md = slurp_file("$top/docs/events.md");

# The code between the BEGIN verify / END verify lines of an example.
sub verify_part
{
	my ($file) = @_;
	my $src = slurp_file("$top/docs/examples/$file");
	my ($part) = $src =~ /^(?:#|\/\/) BEGIN verify\n(.*?)^(?:#|\/\/) END verify\n/ms;
	return $part;
}
# The fenced blocks of one language in docs/events.md.
sub blocks
{
	my ($lang) = @_;
	return ($events_md =~ /^```\Q$lang\E\n(.*?)^```$/msg);
}
my %lang = ('webhook_receiver.py' => 'python', 'webhook_receiver.mjs' => 'js');
for my $file (sort keys %lang)
{
	my $part = verify_part($file);
	ok(defined $part && length $part > 200, "docs/examples/$file has its verify part");
	ok((grep { $_ eq $part } blocks($lang{$file})),
		"docs/events.md shows the verify part of $file as a ```$lang{$file} block");
}

for my $tool (qw(python3 node))
{
	my ($path) = grep { -x "$_/$tool" } split /:/, $ENV{PATH};
	ok(defined $path, "$tool found") or BAIL_OUT("no $tool");
}

my $node = HokusaiTest::new_node('receivers');
sub q1 { return $node->safe_psql('postgres', $_[0]); }
my $bindir = `pg_config --bindir`;
chomp $bindir;
my $bin = "$bindir/hokusai";
my $dir = PostgreSQL::Test::Utils::tempdir('receivers');
my $secret = 'whsec_receivers_' . int(rand(1e9));
open(my $fh, '>', "$dir/secret") or die;
print $fh "$secret\n";
close $fh;
chmod 0600, "$dir/secret";

my ($uid, $kid) = HokusaiTest::new_key($node, 'kim');
q1("SELECT name FROM hokusai_auth.update_key('$kid', name => 'renamed')");
q1("SELECT hokusai_auth.revoke_key('$kid', 'done')");
my @ids = split /\n/, q1('SELECT id FROM hokusai_auth.events ORDER BY id');
my $body = q1("SET timezone = 'UTC'; SELECT to_jsonb(e)::text FROM hokusai_auth.events e WHERE id = $ids[0]");

# POST a body with a Hokusai-Signature header (undef: none) to the receiver.
sub post
{
	my ($port, $data, $sig) = @_;
	my ($o, $e) = ('', '');
	IPC::Run::run([ 'curl', '-s', '-o', '/dev/null', '-w', '%{http_code}', '--max-time', '10',
			'-H', 'Content-Type: application/json',
			(defined $sig ? ('-H', "Hokusai-Signature: $sig") : ()),
			'--data-binary', $data, "http://127.0.0.1:$port/" ], '>', \$o, '2>', \$e);
	return $o;
}
sub sign { my ($t, $data, $key) = @_; return "t=$t,v1=" . hmac_sha256_hex("$t.$data", $key // $secret); }

for my $file (sort keys %lang)
{
	my $port = PostgreSQL::Test::Cluster::get_free_port();
	my ($out, $err) = ('', '');
	my @cmd = $file =~ /\.py$/ ? ('python3', "$top/docs/examples/$file") : ('node', "$top/docs/examples/$file");
	my $recv = IPC::Run::start(\@cmd, '<', \undef, '>', \$out, '2>', \$err,
		init => sub {
			$ENV{HOKUSAI_WEBHOOK_SECRET_FILE} = "$dir/secret";
			$ENV{HOKUSAI_WEBHOOK_PORT} = $port;
		});
	my $t = IPC::Run::timer(30);
	$t->start;
	$recv->pump_nb, usleep(50_000) until $out =~ /listening/ || $t->is_expired;
	like($out, qr/^listening on 127\.0\.0\.1:$port$/m, "$file: listening");

	# The relay delivers every event; the receiver takes each once.
	my ($rout, $rerr) = ('', '');
	my $relay = IPC::Run::start([ $bin, '-h', $node->host, '-p', $node->port, '-d', 'postgres',
			'auth', 'webhook', '--url', "http://127.0.0.1:$port/$file",
			'--secret-file', "$dir/secret" ], '<', \undef, '>', \$rout, '2>', \$rerr);
	$t->start;
	until ($out =~ /^event $ids[-1] /m || $t->is_expired)
	{
		$recv->pump_nb;
		$relay->pump_nb;
		usleep(50_000);
	}
	$relay->kill_kill;
	my @taken = $out =~ /^event (\d+) \S+$/mg;
	is_deeply(\@taken, \@ids, "$file: took every event the relay sent, in order");
	unlike($rerr, qr/retrying|giving up/, "$file: the relay had nothing refused");

	# A repeated delivery is answered 200 but not handled again.
	my $now = time();
	is(post($port, $body, sign($now, $body)), '200', "$file: a repeated delivery: 200");
	# Refused: 400.
	is(post($port, $body, "t=$now,v1=" . ('0' x 64)), '400', "$file: a forged signature: 400");
	(my $tampered = $body) =~ s/"id": $ids[0]/"id": 999999/;
	is(post($port, $tampered, sign($now, $body)), '400', "$file: a tampered body: 400");
	is(post($port, $body, sign($now - 3600, $body)), '400', "$file: an hour-old signature: 400");
	is(post($port, $body, undef), '400', "$file: no signature: 400");
	is(post($port, $body, 'v1=abc,t=x'), '400', "$file: a malformed header: 400");
	is(post($port, $body, sign($now, $body, 'another secret')), '400', "$file: another secret: 400");
	$recv->pump_nb;
	like($out, qr/^duplicate $ids[0]$/m, "$file: the repeat is recognised");
	is(scalar(() = $out =~ /^rejected: /mg), 6, "$file: six rejections");
	$recv->kill_kill;
}

$node->stop;
done_testing();
