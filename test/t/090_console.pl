# The console (/console/, docs/console.md) in a real browser: Debian's
# headless Chromium, driven by test/http/console_check.mjs (playwright-core,
# the system Chromium, no browser download), against nginx + PostgREST +
# hokusai_auth started here as in 020_http.pl.  The browser signs in with a
# JWT and with an API key, creates a key (validated here by SQL), rotates it
# with a grace period, disables and enables it, revokes it after a
# confirmation, edits the name, scopes, limits and refill of a key from the
# keyboard (checked here by SQL), and draws the hourly usage charts (24,
# 168 and 720 points) of a key whose usage rows this test wrote with known
# counts; it reports what it saw, and this test checks it: no Content-Security-Policy violation, nothing written to the
# browser's console, no key left in the page after the dialog that shows it
# closes, none in a URL or nginx's log, no horizontal scrolling at 375 and
# 1440 px.  Screenshots of each screen at both widths go to
# tmp_check/console_screens/ (the ones in docs/console/ come from there).
use strict;
use warnings;

use Cwd qw(abs_path);
use Encode qw(encode_utf8);
use File::Path qw(make_path rmtree);
use IPC::Run;
use JSON::PP;
use PostgreSQL::Test::Cluster;
use PostgreSQL::Test::Utils;
use Test::More;
use HokusaiTest;
use HokusaiHttp;

my $top = abs_path('.');
my $nm = $ENV{HK_NODE_MODULES} || "$top/node_modules";
my $chromium = $ENV{HK_CHROMIUM} || '/usr/bin/chromium';
my $key_re = qr/\Ahk_(?:live|test)_[0-9A-Za-z]{46}\z/;

# What the browser test needs; the set-up installs all of it
# (test/lib/setup.sh: chromium from Debian, the npm packages).
ok(-x $chromium, "Chromium found ($chromium)") or BAIL_OUT('no chromium: run test/lib/setup.sh (apt-get install chromium)');
my ($nodejs) = grep { -x "$_/node" } split /:/, $ENV{PATH};
ok($nodejs, 'node found') or BAIL_OUT('no node');
for my $pkg (qw(playwright-core uplot))
{
	ok(-f "$nm/$pkg/package.json", "npm package $pkg installed in $nm")
	  or BAIL_OUT("$pkg missing: run npm ci --ignore-scripts (test/lib/setup.sh does)");
}

# Every statement logged, with log_parameter_max_length = 0 as
# docs/security/api-keys.md asks: the end checks the log holds no key.
my $node = HokusaiTest::new_node('console', extra_conf => "hokusai_auth.trusted_proxies = '127.0.0.1/32'\n"
	  . "log_statement = 'all'\nlog_parameter_max_length = 0\n");
sub sql { return $node->safe_psql('postgres', shift); }
sql("SELECT hokusai_auth.setup_http_roles()");
my $http = HokusaiHttp->start($node, 'console');
my $origin = "https://127.0.0.1:$http->{https_port}";
my $cacert = $http->{cacert};

###########################################################################
# What nginx serves at /console/
###########################################################################

sub fetch
{
	my ($method, $path) = @_;
	my ($out, $err) = ('', '');
	IPC::Run::run([ 'curl', '-s', '-i', '--max-time', '20', '--cacert', $cacert, '-X', $method,
			($method eq 'HEAD' ? ('-I') : ()), "$origin$path" ], '>', \$out, '2>', \$err);
	my ($head, $body) = split /\r\n\r\n/, $out, 2;
	my ($statusline, @lines) = split /\r\n/, $head // '';
	my ($status) = ($statusline // '') =~ m{^HTTP/\S+ (\d+)};
	my %h;
	for (@lines) { my ($n, $v) = /^([^:]+):\s*(.*)$/ or next; $h{ lc $n } = $v; }
	return { status => $status // 0, headers => \%h, body => $body // '' };
}

my $r = fetch('GET', '/console/');
is($r->{status}, 200, 'GET /console/: 200');
like($r->{headers}{'content-type'} // '', qr{^text/html; charset=utf-8$}, '... text/html');
like($r->{body}, qr/<title>API keys/, '... the console page');
my $csp = $r->{headers}{'content-security-policy'} // '';
for my $d ("default-src 'self'", "script-src 'self'", "style-src 'self'", "connect-src 'self'",
	"object-src 'none'", "base-uri 'none'", "form-action 'none'", "frame-ancestors 'none'")
{
	like($csp, qr/(?:^|; )\Q$d\E(?:;|$)/, "Content-Security-Policy: $d");
}
unlike($csp, qr/unsafe-inline|unsafe-eval|\*|data:|http:/, '... no unsafe-inline, unsafe-eval, wildcard, data: or http:');
is($r->{headers}{'x-content-type-options'}, 'nosniff', 'X-Content-Type-Options: nosniff');
is($r->{headers}{'x-frame-options'}, 'DENY', 'X-Frame-Options: DENY');
is($r->{headers}{'referrer-policy'}, 'no-referrer', 'Referrer-Policy: no-referrer');
like($r->{headers}{'strict-transport-security'} // '', qr/max-age=/, 'Strict-Transport-Security');
unlike($r->{body}, qr/<script(?![^>]*\bsrc=)[^>]*>|\sstyle=|\son[a-z]+=/i,
	'the page has no inline script, style attribute or event handler attribute');
for my $f ([ '/console/app.js', qr{^text/javascript} ], [ '/console/style.css', qr{^text/css} ],
	[ '/console/vendor/uPlot.iife.min.js', qr{^text/javascript} ], [ '/console/vendor/uPlot.min.css', qr{^text/css} ],
	[ '/console/favicon.svg', qr{^image/svg\+xml} ])
{
	$r = fetch('GET', $f->[0]);
	is($r->{status}, 200, "GET $f->[0]: 200");
	like($r->{headers}{'content-type'} // '', $f->[1], "... $r->{headers}{'content-type'}");
	ok(defined $r->{headers}{'content-security-policy'}, '... with the Content-Security-Policy');
}
$r = fetch('GET', '/console');
is($r->{status}, 301, 'GET /console: 301');
is($r->{headers}{location}, "$origin/console/", '... to /console/');
$r = fetch('GET', '/console/nothing.js');
is($r->{status}, 404, 'a file the console does not have: 404');
like($r->{body}, qr/^\{"code":"not_found",/, '... with the API\'s error shape');
$r = fetch('POST', '/console/');
is($r->{status}, 405, 'POST /console/: 405');
is($r->{headers}{allow}, 'GET, HEAD', '... Allow: GET, HEAD');
# The code without its comments.
my $code = join "\n", grep { !m{^\s*//} } split /\n/, slurp_file("$top/console/app.js");
unlike($code, qr/\bconsole\s*\.\s*[a-z]+\s*\(/, 'app.js never calls console.* (nothing logged to the browser console)');
unlike($code, qr/localStorage|document\.cookie|innerHTML|outerHTML\s*=|insertAdjacentHTML|\beval\(|new Function/,
	'app.js uses no localStorage, cookie, innerHTML or eval');

###########################################################################
# A user, keys, and usage rows with known counts
###########################################################################

my $alice = sql("SELECT hokusai_auth.create_user('alice')");
my $bob = sql("SELECT hokusai_auth.create_user('bob')");
my $jwt = $http->jwt($alice);
sub new_key
{
	my ($user, $name, $args) = @_;
	my $row = sql("SELECT id || ' ' || key FROM hokusai_auth.create_key('$user', '$name'"
		  . ($args ? ", $args" : '') . ")");
	return split / /, $row;
}
my ($main_id, $main_key) = new_key($alice, 'main');
my ($lim_id, $lim_key) = new_key($alice, 'three an hour', 'rate_limit_per_hour => 3');
my ($ip_id, $ip_key) = new_key($alice, 'office only', "allowed_ips => '{10.0.0.0/8}'");
my ($use_id) = new_key($alice, 'with usage');
my ($metered_id) = new_key($alice, 'metered',
	"scopes => '{usage:read,keys:read}', credits => 40, refill_amount => 100, refill_interval => 'day'");
my ($scoped_id, $scoped_key) = new_key($alice, 'scoped', "scopes => '{keys:read,keys:write}'");
my ($bob_id) = new_key($bob, 'bob main');
my $unknown = sql("SELECT (hokusai_auth._new_key('live')).key");

# validate_key's (valid, status) for a key the browser was shown.  Only a
# key-shaped string goes into the SQL, the statement is not logged, and
# psql's errors (which could quote it) are not printed.
sub check_key
{
	my ($key) = @_;
	return 'not a key' unless ($key // '') =~ $key_re;
	my ($rc, $stdout, $stderr) = $node->psql('postgres',
		"SET log_statement = 'none';\nSELECT valid || ' ' || status FROM hokusai_auth.validate_key('$key')");
	return $rc == 0 ? $stdout : 'error';
}

# Usage of "with usage": in the hour that started h hours ago (h = 0..23),
# h + 1 requests; on the day that started d days ago (d = 2..29, at the
# same minute as now minus d days), d requests.  Response times and
# statuses vary so that p95 and the status breakdown mean something.
# The usage route reads the aggregates the worker writes (docs/usage.md):
# the events go through the worker's write step in SQL, into partitions
# made for each of the 30 days (the worker makes only today's and later).
sql(<<"SQL");
SELECT hokusai_auth._usage_make_partition(p, now() - d * interval '1 day')
  FROM unnest('{hokusai_auth.api_key_usage, hokusai_auth.api_key_usage_minutely,
				hokusai_auth.api_key_usage_hourly, hokusai_auth.api_key_usage_daily}'::regclass[]) p,
	   generate_series(0, 30) d;
SELECT hokusai_auth._usage_flush(array_agg(k), array_agg(e), array_agg(t), array_agg(r), array_agg(c))
  FROM (SELECT '$use_id'::uuid AS k, 'GET /keys'::text AS e,
			   date_trunc('hour', now()) - h * interval '1 hour' AS t,
			   10 * (h + 1) + i AS r,
			   CASE WHEN i % 5 = 4 THEN 429 WHEN i % 7 = 6 THEN 500 ELSE 200 END AS c
		  FROM generate_series(0, 23) h, generate_series(0, h) i
		UNION ALL
		SELECT '$use_id'::uuid, 'POST /rpc/create_key',
			   date_trunc('hour', now()) - d * interval '1 day' - interval '30 minutes',
			   5 * d + i, CASE WHEN i % 3 = 2 THEN 401 ELSE 201 END
		  FROM generate_series(2, 29) d, generate_series(1, d) i) ev;
SQL
my $seeded = sql("SELECT count(*) FROM hokusai_auth.api_key_usage WHERE api_key_id = '$use_id'");
is($seeded, 300 + 434, "usage rows written for the chart ($seeded)");

###########################################################################
# The browser
###########################################################################

my $shots = "$PostgreSQL::Test::Utils::tmp_check/console_screens";
rmtree($shots);
make_path($shots);
chmod 0755, $shots;
my $input = encode_json({
	url => "$origin/console/", cacert => $cacert, shots => $shots, sync => JSON::PP::true,
	jwt => $jwt, key => $main_key, limited_key => $lim_key, ip_key => $ip_key,
	unknown_key => $unknown, usage_key_id => $use_id, scoped_key => $scoped_key });
# The script stops at each checkpoint (a key was shown, its dialog closed)
# until it gets another line: the key is checked by SQL meanwhile, while
# it is as the console left it.  Its standard error has progress lines
# only (never a key); its output has the keys it was shown, and stays in
# memory.
my ($in, $out, $err) = ("$input\n", '', '');
my $browser = IPC::Run::start([ 'node', "$top/test/http/console_check.mjs", 'full' ],
	'<', \$in, '>', \$out, '2>', \$err, IPC::Run::timeout(600));
my %at;
sub checkpoint
{
	my ($name) = @_;
	my $line;
	eval {
		$browser->pump until $out =~ s/^(\{"checkpoint":"\Q$name\E".*)\n//m and $line = $1;
		1;
	} or diag("the browser script stopped before checkpoint $name: $@");
	$at{$name} = $line ? decode_json($line) : {};
	return $at{$name};
}
my $c = checkpoint('created');
is(check_key($c->{key}), 'true ok', 'create: the key the console showed validates by SQL');
$in .= "continue\n";
$c = checkpoint('rotated');
is(check_key($c->{key}), 'true ok', 'rotate: the new key the console showed validates by SQL');
is(check_key($c->{old_key}), 'true ok', '... and the old one still does (grace period)');
$in .= "continue\n";
# The rotated key as the edit dialog left it, then without its refill.
my $edit_sql = "SELECT concat_ws(' | ', name, array_to_string(ARRAY(SELECT unnest(scopes) ORDER BY 1), ' '), "
  . "rate_limit_per_hour, coalesce(burst_limit::text, '-'), coalesce(refill_amount::text, '-'), "
  . "coalesce(refill_interval, '-'), coalesce(credits_remaining::text, '-')) FROM hokusai_auth.keys "
  . "WHERE key_prefix = '%s'";
$c = checkpoint('edited');
my %edited = (after_edit => sql(sprintf($edit_sql, substr($at{rotated}{key} // '', 0, 16))));
$in .= "continue\n";
$c = checkpoint('refill_stopped');
$edited{after_stop} = sql(sprintf($edit_sql, substr($at{rotated}{key} // '', 0, 16)));
$in .= "continue\n";
# The scoped key is signed in, its edit form open: revoked now.
checkpoint('revoke_scoped');
sql("SELECT hokusai_auth.revoke_key('$scoped_id', 'console test: 401 while editing')");
$in .= "continue\n";
my $ran = eval { $browser->finish };
note($err);
ok($ran, 'the browser script ran to the end') or diag("exit status $? $@");
my $res = eval { decode_json((split /\n/, $out)[-1] // '') } || {};
diag('the browser script\'s output could not be read: ' . ($@ =~ s/hk_(?:live|test)_\w+/hk_(redacted)/gr) . ' (' . length($out) . ' bytes)')
  if !%$res;
ok(ref $res->{steps} eq 'ARRAY', 'it reported what it saw') or BAIL_OUT('no result from the browser script');
my %step = map { ($_->{name} => $_) } @{ $res->{steps} };
for my $s (@{ $res->{steps} })
{
	ok($s->{ok}, "browser step ran: $s->{name}") or diag($s->{error});
}

# The page
my $s = $step{load};
is($s->{status}, 200, 'the console loads');
is($s->{view}, 'signin', '... on the sign-in screen');
is($s->{focused}, 'credential', '... with the focus on the credential field');
is_deeply($s->{unlabelled}, [], 'every form field has a label');
like($s->{csp} // '', qr/default-src 'self'/, 'the browser got the Content-Security-Policy');

$s = $step{'sign in with a bad JWT'};
is($s->{view}, 'signin', 'a bad JWT: still signed out');
like($s->{notice} // '', qr/^Not signed in: the server refused your credentials \(PGRST301/, '... and told why (401)');

# JWT
$s = $step{'sign in with a JWT, by keyboard'};
is($s->{view}, 'keys', 'signed in with a JWT, typing it and pressing Enter');
like($s->{whoami} // '', qr/\Q$alice\E/, '... as alice');
is_deeply([ sort map { $_->{id} } @{ $s->{rows} || [] } ], [ sort($main_id, $lim_id, $ip_id, $use_id, $metered_id, $scoped_id) ],
	'... the keys table lists her keys, not bob\'s');
is_deeply($s->{rows}[0]{cells}, [ 'Prefix', 'Name', 'Environment', 'Status', 'Scopes', 'Limits', 'Credits',
		'Created', 'Expires', 'Last used', 'Actions' ],
	'... with prefix, name, environment, status, scopes, limits, credits, created, expires, last used');
is($s->{storage}{session_storage_items} + $s->{storage}{local_storage_items}, 0,
	'... the JWT is not stored (memory only unless asked)');
{
	my %row = map { ($_->{id} => $_) } @{ $s->{rows} || [] };
	my $m = $row{$metered_id} || {};
	is(join(' ', @{ $m->{scopes} || [] }), sql("SELECT array_to_string(scopes, ' ') FROM hokusai_auth.keys WHERE id = '$metered_id'"),
		'... a key\'s scopes are in its row, as in the database');
	is(encode_utf8($m->{text}{Credits} // ''), sql("SELECT credits_remaining || ' left · refills to ' || refill_amount || ' every ' || refill_interval "
		  . "FROM hokusai_auth.keys WHERE id = '$metered_id'"), '... its credits: what is left and the refill, as in the database');
	is(encode_utf8($m->{text}{Credits} // ''), '40 left · refills to 100 every day', '... (40 left · refills to 100 every day)');
	is($row{$main_id}{text}{Credits}, 'unlimited', '... a key without credits: unlimited');
	is($row{$main_id}{text}{Scopes}, 'all', '... a key without scopes: all');
	(my $hourly = sql("SELECT rate_limit_per_hour FROM hokusai_auth.keys WHERE id = '$metered_id'")) =~ s/(\d)(?=(\d{3})+$)/$1,/g;
	is($m->{text}{Limits}, "$hourly/h", "... its limits ($hourly/h)");
	ok(scalar(grep { $_ eq 'edit' } @{ $m->{actions} || [] }), '... and an Edit button');
}
is($s->{storage}{in_dom}, 0, '... nor in the page');

# Create
$s = $step{'create a key'};
my $created = $s->{key} // '';
like($created, qr/\Ahk_test_[0-9A-Za-z]{46}\z/, 'create: the dialog shows a new test key');
is($at{created}{key} // '', $created, '... the key checked by SQL at the checkpoint');
is(sql("SELECT name || ' ' || environment || ' ' || rate_limit_per_hour || ' ' || user_id FROM hokusai_auth.api_keys "
	  . "WHERE key_prefix = '" . substr($created, 0, 16) . "'"), "made in the console test 500 $alice",
	'... with the name, environment and limit of the form, for alice');
like($s->{warning} // '', qr/^Store it now\. This is the only time the key is shown/, '... with a clear "store it now"');
is($s->{copied}, 'Copied to the clipboard.', '... the copy button copies it');
ok($s->{clipboard_matches}, '... the clipboard holds the key');
is($s->{while_open}{in_dom}, 1, '... it is in the page while the dialog is open');
is($s->{after_close}{in_dom}, 0, 'after the dialog closes, the key is not in the page');
ok(!$s->{after_close}{key_shaped_in_dom}, '... nor anything shaped like a key');
is($s->{row}{status}, 'active', 'the new key is in the table, active');
is($s->{on_create}, 'new-key', 'keyboard: Tab from Refresh reaches Create key');
is($s->{focus_in_dialog}, 'c-name', '... Enter opens the form with the focus on Name');
is($s->{focus_back}, 'new-key', '... Escape closes it and the focus goes back');
is($s->{focus_after}, 'new-key', '... so does closing the key dialog');

# Rotate
$s = $step{'rotate with grace'};
my $rotated = $s->{key} // '';
like($rotated, qr/\Ahk_test_[0-9A-Za-z]{46}\z/, 'rotate: the dialog shows the new key');
isnt($rotated, $created, '... a different one');
# (The browser has done everything by now: the old key was revoked after
# the rotation, the new one was disabled and enabled again.)
is($at{rotated}{key} // '', $rotated, '... the key checked by SQL at the checkpoint');
is(check_key($rotated), 'true ok', '... which still validates at the end (disabled and enabled again)');
is(sql("SELECT expires_at BETWEEN now() + interval '55 minutes' AND now() + interval '61 minutes' "
	  . "FROM hokusai_auth.api_keys WHERE key_prefix = '" . substr($created, 0, 16) . "'"), 't',
	'... the old key got the grace chosen: it expires in one hour');
like($s->{notice} // '', qr/Key rotated: \Q${\ substr($rotated, 0, 16)}\E replaces \Q${\ substr($created, 0, 16)}\E\. The old key .* works until /,
	'... and the page says so');
is($s->{after_close}{in_dom}, 0, '... no key in the page after the dialog closes');

# Disable and enable: the routes come with issue 18 (authorization);
# api.setDisabled in console/app.js: PATCH /api/v1/auth/keys/{id} with
# {"disabled": true} or false.
my $rp = substr($rotated, 0, 16);
{
	$s = $step{disable} || {};
	ok($s->{ok}, 'browser step ran: disable') or diag($s->{error});
	is($s->{row}{status}, 'disabled', 'disable: the key shows as disabled');
	# The browser has run every step by now (the key was enabled again
	# since): the audit trail shows the disable, made through PATCH.
	is(sql("SELECT string_agg(a.action, ',' ORDER BY a.id) FROM hokusai_auth.audit_log a
			  JOIN hokusai_auth.api_keys k ON k.id = a.api_key_id
			 WHERE k.key_prefix = '$rp' AND a.action IN ('disable', 'enable')"), 'disable,enable',
		'... and was disabled, then enabled, in the database');
	$s = $step{enable} || {};
	ok($s->{ok} && $s->{enable_button}, 'enable: the Enable button is there') or diag($s->{error});
	is($s->{row}{status}, 'active', 'enable: the key shows as active again');
	is(sql("SELECT disabled_at IS NULL FROM hokusai_auth.api_keys WHERE key_prefix = '$rp'"), 't',
		'... and is enabled in the database');
}
like($step{disable}{notice} // '', qr/disabled: it is refused/, 'disable: the page says what happened');

# Revoke: the old key, in its grace period.
my $cp = substr($created, 0, 16);
$s = $step{'revoke, cancelled then confirmed'};
is($s->{focus}, 'Cancel', 'revoke: the confirmation opens with the focus on Cancel');
is($s->{after_cancel}{status}, 'active', '... Enter there cancels: still active');
is($s->{after}{status}, 'revoked', 'confirmed: the table shows it revoked');
is(check_key($created), 'false revoked', '... and it is revoked by SQL');
is(sql("SELECT string_agg(details->>'reason', ',') FROM hokusai_auth.audit_log "
	  . "WHERE action LIKE 'revoke%' AND details->>'key_prefix' = '$cp'"), 'console test',
	'... the reason given is in the audit log');
like($s->{notice} // '', qr/^Key \Q$cp\E revoked\.$/, '... the page says so');

# Edit: every field, from the keyboard, checked by SQL at the checkpoint.
$s = $step{edit};
is($s->{focus}, 'e-name', 'edit: Enter on the Edit button opens the form with the focus on Name');
is_deeply($s->{before}, { name => 'made in the console', scopes => '', hourly => '500', burst => '',
		refill_interval => '', refill_amount => '' }, '... filled with the key\'s settings');
is_deeply($s->{order}, [qw(e-name e-scopes e-hourly e-burst e-refill-interval e-refill-amount)],
	'... Tab goes from field to field in order');
is($edited{after_edit}, 'edited in the console | keys:read keys:write usage:read | 1200 | 7 | 250 | week | 250',
	'... Enter saved name, scopes, requests per hour and second, and the refill (the database)');
like($s->{notice} // '', qr/^Key \Q$rp\E updated: name, scopes, requests per hour, requests per second, refill\.$/,
	'... the page says what changed');
is($s->{focus_after}, 'edit', '... the focus is back on the key\'s Edit button');
is($s->{row}{text}{Name}, 'edited in the console', '... the table shows the new name');
is(join(' ', @{ $s->{row}{scopes} || [] }), 'keys:read keys:write usage:read', '... the scopes');
is(encode_utf8($s->{row}{text}{Limits} // ''), '1,200/h · 7/s', '... the limits');
is(encode_utf8($s->{row}{text}{Credits} // ''), '250 left · refills to 250 every week', '... and the credits: an unmetered key given a refill starts full');
is(sql("SELECT details->'changes' FROM hokusai_auth.audit_log a JOIN hokusai_auth.api_keys k ON k.id = a.api_key_id "
	  . "WHERE k.key_prefix = '$rp' AND a.action = 'update' ORDER BY a.id LIMIT 1"),
	'{"name": "edited in the console", "scopes": ["keys:read", "keys:write", "usage:read"], "burst_limit": 7, '
	  . '"refill_amount": 250, "refill_interval": "week", "rate_limit_per_hour": 1200}',
	'... one PATCH, one audited update');

$s = $step{'edit: bad input'};
like($s->{local} // '', qr/^"Bad" is not a scope name: 1 to 64 of a-z, 0-9, _ \. : - \(and \* at the end\)\.$/,
	'edit, a bad scope: refused in the page with the rule');
is($s->{empty_hourly}, 'Requests per hour cannot be empty.', '... an empty requests per hour too');
is($s->{local_requests}, 0, '... without a request');
like($s->{server} // '', qr/^Error 400 \(invalid_field\): scopes must have at most 64 entries/,
	'65 scopes: the server\'s 400, in words, in the dialog');
is($s->{server_requests}, 1, '... one request');
is($s->{focus_back}, 'edit', '... Escape closes the dialog, the focus back on Edit');

$s = $step{'edit: stop the refill'};
is($edited{after_stop}, 'edited in the console | keys:read keys:write usage:read | 1200 | 7 | - | - | 250',
	'edit, "no refill": the refill is gone, the balance and the rest kept (the database)');
like($s->{notice} // '', qr/^Key \Q$rp\E updated: refill\.$/, '... the page says so');
is($s->{row}{text}{Credits}, '250 left', '... and the table');

# Usage: the points against SQL, for each range.
for my $range ([ '24h', 24 ], [ '7d', 168 ], [ '30d', 720 ])
{
	my ($name, $n) = @$range;
	$s = $step{"usage $name"};
	is($s->{state}, 'ready', "usage $name: shown");
	is($s->{points}, $n, "... $n points, one per hour");
	is($s->{chart}, 'uplot', '... drawn by uPlot');
	is($s->{chart_points}, $n, "... whose data has $n points");
	ok($s->{canvas} && $s->{canvas}{width} > 100 && $s->{canvas}{height} > 100, '... on a canvas');
	is(scalar @{ $s->{series} || [] }, $n, "... and a table of $n rows");
	my @t = map { $_->{t} / 1000 } @{ $s->{series} || [] };
	my $start = $t[0] // 0;
	my $end = ($t[-1] // 0) + 3600;
	is($end - $start, $n * 3600, '... consecutive hours');
	# usage_timeseries('hour') over the range, zero for the hours it leaves
	# out; and the raw log's count per hour (every request is a raw row here).
	my $want = sql(<<"SQL");
SELECT string_agg(coalesce(ts.requests, 0) || '/' || coalesce(ts.errors, 0) || '/' || coalesce(ts.p95_response_ms::float8::text, '-'), ' ' ORDER BY g)
  FROM generate_series(to_timestamp($start), to_timestamp($end) - interval '1 hour', interval '1 hour') g
  LEFT JOIN hokusai_auth.usage_timeseries('$use_id', 'hour', to_timestamp($start), to_timestamp($end)) ts ON ts.period_start = g
SQL
	my $got = join ' ', map { "$_->{requests}/$_->{errors}/" . ($_->{p95} // '-') } @{ $s->{series} || [] };
	is($got, $want, "... each point's requests, errors and p95 are usage_timeseries('hour')'s");
	my $raw = sql(<<"SQL");
SELECT string_agg((SELECT count(*) FROM hokusai_auth.api_key_usage
					WHERE api_key_id = '$use_id' AND "timestamp" >= g AND "timestamp" < g + interval '1 hour')::text, ' ' ORDER BY g)
  FROM generate_series(to_timestamp($start), to_timestamp($end) - interval '1 hour', interval '1 hour') g
SQL
	is(join(' ', map { $_->{requests} } @{ $s->{series} || [] }), $raw, '... and the requests are the raw log\'s count of each hour');
	is(sql("SELECT extract(epoch FROM date_trunc('hour', now()) + interval '1 hour') BETWEEN $end AND $end + 3600"), 't',
		'... ending with the current hour');
	my $st = sql("SELECT string_agg(coalesce(status_code::text, 'unknown') || '=' || n, ' ' ORDER BY status_code) "
		  . "FROM (SELECT status_code, count(*) n FROM hokusai_auth.api_key_usage WHERE api_key_id = '$use_id' "
		  . "AND \"timestamp\" >= to_timestamp($start) AND \"timestamp\" < to_timestamp($end) GROUP BY 1) s");
	is(join(' ', map { "$_->{status_code}=$_->{requests}" } sort { $a->{status_code} <=> $b->{status_code} } @{ $s->{by_status} || [] }),
		$st, "... the status-code breakdown is the database's ($st)");
}
# 300 rows in the last 24 hours; at most 24 fewer if an hour began since
# they were written (the points are checked against SQL above either way).
my $sum = 0;
$sum += $_->{requests} for @{ $step{'usage 24h'}{series} || [] };
cmp_ok($sum, '>=', 276, "the 24 h chart shows the rows written ($sum requests)");

# API key, kept in sessionStorage when asked
$s = $step{'sign in with an API key'};
is($s->{after_jwt_sign_out}{in_dom} + $s->{after_jwt_sign_out}{session_storage_items}, 0,
	'signing out leaves the JWT nowhere');
is($s->{view}, 'keys', 'signed in with an API key');
is($s->{whoami}, 'Signed in with key ' . substr($main_key, 0, 16), '... named by its prefix only');
is(scalar @{ $s->{rows} || [] }, 8, '... the owner\'s keys (6, and the created and rotated ones)');
is($s->{stored}{in_session_storage}, 1, '"keep me signed in": the key is in this tab\'s sessionStorage');
is($s->{stored}{local_storage_items}, 0, '... never in localStorage');
is($s->{stored}{in_dom}, 0, '... not in the page');
is($s->{after_reload}, 'keys', '... a reload keeps the session');
is($s->{after_sign_out}{session_storage_items}, 0, '... signing out removes it');

# Errors
like($step{'401: a key nobody issued'}{notice} // '', qr/^Not signed in: the server refused your credentials \(unknown: /,
	'401: a clear message');
like($step{'403: a key used from outside its allowed_ips'}{notice} // '',
	qr/^Refused \(403\): this key may not be used from your network address/, '403: a clear message');
$s = $step{'429: a key over its hourly limit'};
is($s->{first}{view}, 'keys', '429: signed in with a key allowed 3 requests an hour');
like(($s->{refreshes} || [])->[-1] // '',
	qr/^Too many requests \(429\): hourly rate limit exceeded\. Try again in (?:\d+ seconds?|about \d+ minutes)\.$/,
	'... the 4th request: a clear message with the wait');
like($s->{edit} // '', qr/^Too many requests \(429\): hourly rate limit exceeded\. Try again in /,
	'... the edit dialog says so too');
$s = $step{'403: giving scopes the signed-in key lacks'};
is($s->{first}{view}, 'keys', '403 in the edit dialog: signed in with a key that has scopes keys:read and keys:write');
like($s->{edit} // '', qr/^Not allowed \(403, insufficient_scope\): /, '... giving a scope it lacks: a clear message');
is(sql("SELECT array_to_string(scopes, ' ') FROM hokusai_auth.api_keys WHERE id = '$scoped_id'"), 'keys:read keys:write',
	'... and the scopes are unchanged');
$s = $step{'401: the signed-in key revoked while editing'};
is($s->{view}, 'signin', '401: the key signed in with, revoked while its edit form was open: saving signs out');
like($s->{notice} // '', qr/^Not signed in: the server refused your credentials \(revoked: .*\)\. Sign in again with a valid JWT or API key\.$/,
	'... with a clear message');
ok(!$s->{dialog_open}, '... the form is closed');
is($s->{storage}{in_dom} + $s->{storage}{session_storage_items}, 0, '... the key is nowhere in the page');
is(sql("SELECT name FROM hokusai_auth.api_keys WHERE id = '$scoped_id'"), 'scoped', '... and the name is unchanged');

# The whole run
is_deeply($res->{violations}, [], 'no Content-Security-Policy violation')
  or diag(explain($res->{violations}));
is_deeply($res->{page_errors}, [], 'no uncaught error in the page');
# The browser reports refused requests itself ("Failed to load resource:
# ... 401"; 400: the 65 scopes of the edit step); the page writes nothing.
my @logged = grep { $_->{text} !~ /^Failed to load resource: the server responded with a status of (?:400|401|403|404|429) / }
  @{ $res->{console} || [] };
is_deeply(\@logged, [], 'nothing written to the browser console') or diag(explain(\@logged));
ok(!grep({ $_->{text} =~ /Content Security Policy/i } @{ $res->{console} || [] }), '... no CSP report there either');
is_deeply($res->{requests_with_key_in_url}, [], 'no request had a key in its URL');
is_deeply([ grep { $_->{scroll_width} > $_->{inner_width} } @{ $res->{overflow} || [] } ], [],
	'no screen scrolls sideways at 375 or 1440 px');
my %shots = map { ($_ => 1) } @{ $res->{shots} || [] };
is(scalar(grep { -s $_ } keys %shots), 2 * 15, 'screenshots of 15 screens at 375 and 1440 px')
  or diag(join "\n", sort keys %shots);
$s = $step{end};
is($s->{storage}{in_dom} + $s->{storage}{session_storage_items} + $s->{storage}{local_storage_items}, 0,
	'at the end nothing is left in the page or the storages');

# No key in nginx's logs (the console never puts one in a URL).
my $logs = slurp_file("$http->{dir}/nginx-access.log") . slurp_file("$http->{dir}/nginx-error.log");
for my $k ([ 'created', $created ], [ 'rotated', $rotated ], [ 'sign-in', $main_key ], [ 'limited', $lim_key ])
{
	my $secret = substr($k->[1], 8);
	ok(length($secret) == 46 && index($logs, $secret) < 0, "the $k->[0] key is not in nginx's logs");
}
like($logs, qr{"GET /console/app\.js" 200 }, 'nginx logged the console\'s requests');
unlike(slurp_file("$http->{dir}/postgrest.log") . slurp_file($node->logfile), qr/hk_(?:live|test)_[0-9A-Za-z]{46}/,
	'no key in PostgREST\'s log or the PostgreSQL log (log_statement = all)');
like(slurp_file($node->logfile), qr/execute .*request\.headers/, '... (the server did log PostgREST\'s statements)');

$http->stop;
done_testing();
