# The examples in docs/*.md run.
#
# Every fenced block marked ```sql in a documentation file is an example
# that must work.  The blocks of one file are concatenated in order and run
# by one psql session (ON_ERROR_STOP=1) in a fresh database where the
# extension has just been created, as a superuser.  Blocks marked anything
# else (```text) are not run.  A few outputs of the examples are checked too,
# so an example that silently changes meaning fails here.
use strict;
use warnings;

use File::Basename qw(basename dirname);
use File::Spec;
use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;

my $docs = File::Spec->rel2abs(
	File::Spec->catdir(dirname(__FILE__), File::Spec->updir, File::Spec->updir, 'docs'));
ok(-d $docs, "docs directory found at $docs") or BAIL_OUT('no docs directory');

# The ```sql blocks of a Markdown file: a list of { line => first line
# number, sql => text }.  Dies on a block that is never closed.
sub sql_blocks
{
	my ($path) = @_;
	open(my $fh, '<', $path) or die "could not open $path: $!";
	my (@blocks, $cur, $fence);
	while (my $line = <$fh>)
	{
		if (!defined $fence)
		{
			if ($line =~ /^(`{3,})sql\s*$/)
			{
				$fence = $1;
				$cur = { line => $. + 1, sql => '' };
			}
			elsif ($line =~ /^(`{3,})/)
			{
				$fence = $1;    # another kind of block: skip its body
			}
		}
		elsif ($line =~ /^\Q$fence\E\s*$/)
		{
			push @blocks, $cur if $cur;
			undef $cur;
			undef $fence;
		}
		elsif ($cur)
		{
			$cur->{sql} .= $line;
		}
	}
	close $fh;
	die "$path: unclosed code block" if defined $fence;
	return @blocks;
}

# Concatenate the blocks; also return, for each line of the result, the
# Markdown line it came from, so a failure can point at the example.
sub script_of
{
	my @blocks = @_;
	my ($sql, @origin) = ('');
	for my $b (@blocks)
	{
		my @lines = split /\n/, $b->{sql}, -1;
		pop @lines if @lines && $lines[-1] eq '';
		for my $i (0 .. $#lines)
		{
			$sql .= "$lines[$i]\n";
			push @origin, $b->{line} + $i;
		}
	}
	return ($sql, \@origin);
}

my $node = HokusaiTest::new_node('docs',
	extra_conf => "hokusai_auth.default_burst_limit = 10\n");  # the documented default

my %stdout;
my %dbname;
for my $path (sort glob("$docs/*.md"))
{
	my $file = basename($path);
	my @blocks = sql_blocks($path);
	next unless @blocks;

	(my $db = "docs_" . basename($path, '.md')) =~ s/[^A-Za-z0-9_]/_/g;
	$node->safe_psql('postgres', qq{CREATE DATABASE "$db"});
	$node->safe_psql($db, 'CREATE EXTENSION hokusai_auth CASCADE');

	my ($sql, $origin) = script_of(@blocks);
	my ($rc, $out, $err) = $node->psql($db, $sql, on_error_stop => 1);
	my $ok = is($rc, 0, "docs/$file: its " . scalar(@blocks) . " sql blocks run");
	if (!$ok)
	{
		my $where = '';
		if ($err =~ /<stdin>:(\d+):/ && defined $origin->[ $1 - 1 ])
		{
			$where = "docs/$file line $origin->[$1 - 1]: ";
		}
		diag("${where}$err");
	}
	$stdout{$file} = $out;
	$dbname{$file} = $db;
}

# Files whose examples this test relies on must keep having some.
for my $file (qw(keys.md audit.md cache.md configuration.md ratelimit.md metering.md events.md
	authorization.md))
{
	ok(exists $stdout{$file}, "docs/$file has sql examples");
}

# output_has(file, regex, name): a line of the file's psql output (unaligned,
# tuples only: columns separated by |) matches.
sub output_has
{
	my ($file, $re, $name) = @_;
	like($stdout{$file} // '', qr/^$re$/m, "docs/$file: $name");
}

# ratelimit.md
output_has('ratelimit.md', qr/4\|rate_limited\|0\|t\|t/, 'the fourth request in an hour is refused');
output_has('ratelimit.md', qr/3\|ok\|0\|t\|f/, 'the third uses the last of the quota');
output_has('ratelimit.md', qr/3\|10\|3\|3\|0\|t\|t/, 'rate_limit_status shows the windows');
output_has('ratelimit.md', qr/ok\|2/, 'after a reset the quota is back');

# metering.md
output_has('metering.md', qr/6\|ok\|1\|0/, 'a call spends its cost');
output_has('metering.md', qr/4\|credits_exhausted\|1\|0/, 'a call costing more than is left is refused, spends nothing');
output_has('metering.md', qr/100\|30/, 'credits given back at rollback, rate-limit units kept');
output_has('metering.md', qr/60\|100\|day\|t/, 'a daily refill, next at midnight UTC');
output_has('metering.md', qr/5\|second\|rate_limited\|0/, "the user's limit refuses a key with room");
output_has('metering.md', qr/2\|4\|4\|0/, "the refused call counted on neither the key nor the user");
output_has('metering.md', qr/new\|40\nold\|30/, 'rotation: old and new key share one balance');
output_has('metering.md', qr/ok\|\n12\nok\|7\n\|\nok\|/,
	'update_key: credits make a key metered, clear_credits unmetered again');
output_has('metering.md', qr/t\|t\|t\|t/, 'the counters move');

# keys.md
output_has('keys.md', qr/t\|hk_test_DOCS0001\|f\|/, 'example key is well formed');
output_has('keys.md', qr/cbf43926\|2CzvMn/, 'SQL CRC-32 matches the C checksum');
output_has('keys.md', qr/hk_live_\|54\|t/, 'created key has the documented shape');
output_has('keys.md', qr/t\|t\|t/, 'stored hash verifies with crypt()');
output_has('keys.md', qr/t\|ok\|t\|t\|1000\|\d+/, 'validate_key example prints status ok');
output_has('keys.md', qr/ci deploys\|live\|active\|t/, 'list_keys shows the active key');
output_has('keys.md', qr/expired\|t/, 'expired example');
output_has('keys.md', qr/203\.0\.114\.1\|ip_denied/, 'address outside the allow-list is denied');
output_has('keys.md', qr/::ffff:203\.0\.113\.9\|ok/, 'IPv4-mapped address is treated as IPv4');
output_has('keys.md', qr/\|ip_denied/, 'no address with an allow-list is denied');
output_has('keys.md', qr/ok\|ok/, 'both keys work during the grace period');
output_has('keys.md', qr/revoked\|ok/, 'rotation without grace revokes the old key');
is($node->safe_psql($dbname{'keys.md'} // 'postgres',
		"SELECT count(*) FROM pg_roles WHERE rolname LIKE 'hokusai_docs%'"),
	'0', 'docs/keys.md: examples drop the roles they create');

# audit.md
output_has('audit.md', qr/3\|rotate\|t\|\w+\|\{"grace": "00:05:00"\}/, 'rotate row details');
output_has('audit.md', qr/create\|hokusai_docs_operator/, 'actor_role is the calling role');
output_has('audit.md', qr/revoke\|t\|t\|198\.51\.100\.23/, 'HTTP actor settings are recorded');
output_has('audit.md', qr/\d+\|t/, 'hand-computed hashes match the stored ones');
output_has('audit.md', qr/t\n+t\n+t\n+t$/, 'chain intact, checkpoint, edit and deletion found');
isnt($node->safe_psql($dbname{'audit.md'} // 'postgres',
		'SELECT hokusai_auth.verify_audit_chain()'),
	'', 'docs/audit.md: the tampering example leaves a broken chain');

# cache.md
output_has('cache.md', qr/2\|1\|0\|1/, 'a miss with one bcrypt, then two hits');
output_has('cache.md', qr/1\|1\|1/, 'a wrong secret is verified once, then a negative hit');
output_has('cache.md', qr/unknown\|40/, 'every attempt of the attack is unknown');
output_has('cache.md', qr/t\|t\nok/, 'throttle bounds bcrypt; the cached key keeps working');
output_has('cache.md', qr/t\nrevoked\nok\n1\|0/,
	'revoking transaction bypasses the cache; a rollback leaves it as it was');
output_has('cache.md', qr/ok\nrenamed\nok\n\{198\.51\.100\.0\/24\}\nip_denied\nok\n3\|1\|1\|1/,
	'rename keeps the key cached; update_key of allowed_ips applies on the next call');
is($node->safe_psql($dbname{'cache.md'} // 'postgres',
		"SELECT count(*) FROM pg_roles WHERE rolname LIKE 'hokusai_docs%'"),
	'0', 'docs/cache.md: examples drop the roles they create');

# events.md
output_has('events.md', qr/key\.created\|t\|\{"name": "billing sync", "environment": "live", "rate_limit_per_hour": 1000\}/,
	'the key\'s creation is an event');
output_has('events.md', qr/key\.revoked\|t\|\{"reason": "retired"\}/, 'so is its revocation, with the reason');
output_has('events.md', qr/1\|0\n1/, 'an open transaction\'s event is delivered once it commits');
output_has('events.md', qr/1\|0\n7\|short contract/, 'key.expiring once, the 7-day notice');
output_has('events.md', qr/41\nhttps:\/\/hooks\.example\.com\|41/, 'the webhook cursor keeps only the origin');
# authorization.md
output_has('authorization.md', qr/model runner\|\{models:\*,files:read\}/, 'a key with scopes');
output_has('authorization.md', qr/\{models:predict\}\|ok/, 'models:* grants models:predict');
output_has('authorization.md', qr/\{files:write\}\|insufficient_scope/, 'a scope the key lacks');
output_has('authorization.md', qr/disabled\|t/, 'a disabled key');
output_has('authorization.md', qr/disable\|invoice overdue/, 'disable_key is audited with its reason');
output_has('authorization.md', qr/t\|\{notes:write,notes:read\}/, 'the caller of a request: key and scopes');
output_has('authorization.md', qr/first\|t/, "row-level security: the auditor reads the writer's note");

# configuration.md
output_has('configuration.md', qr/5000\|\$2a\$11\$/, 'session SETs apply to create_key');
output_has('configuration.md', qr/203\.0\.113\.7/, 'client_ip example skips the trusted hop and the spoofed entry');
output_has('configuration.md', qr/hokusai_auth\.bcrypt_cost\|\d+\|\|superuser\|4\|31\|10/,
	'pg_settings shows bcrypt_cost');

$node->stop;
done_testing();
