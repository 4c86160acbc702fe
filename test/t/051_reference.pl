# docs/reference.md lists exactly what is installed.
#
# The first column of each table in docs/reference.md is an exact name in
# backticks.  This test reads those tables and compares them, both ways,
# with the installed extension and tools:
#   ## SQL functions: schema.name(pg_get_function_arguments) of every function in
#                     hokusai_auth and hokusai_api whose name does not start with _
#   ## Views:         schema.name of every view in those schemas (pg_views)
#   ## Settings:      every pg_settings name LIKE 'hokusai_auth.%' (library preloaded)
#   ## HTTP routes:   the route table of docs/http.md
#   ## CLI commands:  the Commands section of `hokusai --help`, synopsis and all
# Anything missing from either side fails, named in the test output.
use strict;
use warnings;

use File::Basename qw(dirname);
use File::Spec;
use PostgreSQL::Test::Utils;
use Test::More;
use IPC::Run;
use HokusaiTest;

my $top = File::Spec->rel2abs(File::Spec->catdir(dirname(__FILE__), File::Spec->updir, File::Spec->updir));
my $reference = "$top/docs/reference.md";
ok(-f $reference, 'docs/reference.md exists') or BAIL_OUT('no docs/reference.md');

# The first-column names of the tables under each "## " heading:
# { heading => [ name, ... ] }.  `\|` in a cell is a literal |.
sub tables_by_section
{
	my ($path) = @_;
	my (%sections, $section, $fence);
	open(my $fh, '<', $path) or die "could not open $path: $!";
	while (my $line = <$fh>)
	{
		if ($line =~ /^(`{3,})/)
		{
			$fence = defined $fence ? undef : $1;
			next;
		}
		next if defined $fence;
		if ($line =~ /^## (.+?)\s*$/)
		{
			$section = $1;
			$sections{$section} ||= [];
			next;
		}
		next unless defined $section;
		if ($line =~ /^\|\s*`((?:[^`])+)`\s*\|/)
		{
			(my $name = $1) =~ s/\\\|/|/g;
			push @{ $sections{$section} }, $name;
		}
	}
	close $fh;
	return \%sections;
}

# compare(what, documented list, installed list): one test per side.
sub compare
{
	my ($what, $doc, $installed) = @_;
	my %doc = map { $_ => 1 } @$doc;
	my %inst = map { $_ => 1 } @$installed;
	my @undocumented = grep { !$doc{$_} } sort keys %inst;
	my @stale = grep { !$inst{$_} } sort keys %doc;
	ok(scalar(@$installed) > 0, "$what: something is installed");
	is(scalar(@undocumented), 0, "$what: every installed one is in docs/reference.md")
	  or diag("missing from docs/reference.md:\n  " . join("\n  ", @undocumented));
	is(scalar(@stale), 0, "$what: every documented one is installed")
	  or diag("in docs/reference.md but not installed:\n  " . join("\n  ", @stale));
	my %seen;
	my @dups = grep { $seen{$_}++ == 1 } @$doc;
	is(scalar(@dups), 0, "$what: listed once each") or diag("listed twice: @dups");
}

my $doc = tables_by_section($reference);
for my $section ('SQL functions', 'Views', 'Settings', 'HTTP routes', 'CLI commands')
{
	ok(@{ $doc->{$section} || [] } > 0, "docs/reference.md has a '## $section' table");
}

my $node = HokusaiTest::new_node('reference');
sub rows { return grep { length } split /\n/, $node->safe_psql('postgres', shift); }

compare('SQL functions', $doc->{'SQL functions'}, [ rows(q{
	SELECT n.nspname || '.' || p.proname || '(' || pg_get_function_arguments(p.oid) || ')'
	  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
	 WHERE n.nspname IN ('hokusai_auth', 'hokusai_api') AND p.proname NOT LIKE '\_%'
	 ORDER BY 1}) ]);

compare('views', $doc->{'Views'}, [ rows(q{
	SELECT schemaname || '.' || viewname FROM pg_views
	 WHERE schemaname IN ('hokusai_auth', 'hokusai_api') ORDER BY 1}) ]);

compare('settings', $doc->{'Settings'}, [ rows(q{
	SELECT name FROM pg_settings WHERE name LIKE 'hokusai_auth.%' ORDER BY 1}) ]);

# The defaults shown for the settings are the compiled-in ones.
my %boot = map { split /\t/, $_, 2 } rows(q{
	SELECT name || E'\t' || boot_val FROM pg_settings WHERE name LIKE 'hokusai_auth.%'});
open(my $fh, '<', $reference) or die;
my @bad_default;
while (<$fh>)
{
	next unless /^\|\s*`(hokusai_auth\.[a-z_]+)`\s*\|[^|]*\|\s*`([^`]*)`/;
	push @bad_default, "$1: documented $2, is $boot{$1}"
	  if defined $boot{$1} && $boot{$1} ne $2;
}
close $fh;
is(scalar(@bad_default), 0, 'settings: documented defaults are the real ones')
  or diag(join("\n", @bad_default));

# HTTP routes: the same as the route table of docs/http.md (which
# test/t/020_http.pl exercises).
my $http = tables_by_section("$top/docs/http.md");
compare('HTTP routes', $doc->{'HTTP routes'},
	[ grep { m{^[A-Z]+ /api/v1/auth/} } @{ $http->{Routes} || [] } ]);

# CLI: `hokusai --help` lists each command with its synopsis, continued on
# more deeply indented lines.
my $bindir = `pg_config --bindir`;
chomp $bindir;
my $bin = "$bindir/hokusai";
ok(-x $bin, "hokusai is installed in $bindir") or BAIL_OUT("no $bin");
my ($out, $err) = ('', '');
IPC::Run::run([ $bin, '--help' ], '>', \$out, '2>', \$err);
is($?, 0, 'hokusai --help exits 0');
my (@help, $in_commands);
for my $line (split /\n/, $out)
{
	if ($line =~ /^Commands:/) { $in_commands = 1; next; }
	next unless $in_commands;
	last if $line =~ /^\S/ || $line eq '';
	if ($line =~ /^  (\S.*)$/) { push @help, $1; }
	elsif ($line =~ /^\s+(\S.*)$/ && @help) { $help[-1] .= " $1"; }
}
s/\s+/ /g for @help;
my @doc_cli = map { (my $s = $_) =~ s/\s+/ /g; $s } @{ $doc->{'CLI commands'} || [] };
compare('CLI commands (names)', [ map { (split / /)[0] } @doc_cli ], [ map { (split / /)[0] } @help ]);
compare('CLI commands (synopses as in hokusai --help)', \@doc_cli, \@help);
for my $cmd (map { (split / /)[0] } @help)
{
	IPC::Run::run([ $bin, 'auth', $cmd, '--help' ], '>', \$out, '2>', \$err);
	is($?, 0, "hokusai auth $cmd --help exits 0");
}

$node->stop;
done_testing();
