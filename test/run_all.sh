#!/usr/bin/env bash
# Every hokusai_auth test: installs what is missing, builds and installs the
# extension, then runs the pg_regress suites, the isolation specs and the TAP
# tests against throwaway clusters, and the libFuzzer harnesses for a bounded
# time (HK_FUZZ_SECONDS, default 20 per harness).  Exit status 0 only when all pass.
#
#   bash test/run_all.sh
#
# As root the tests run as the unprivileged "postgres" user (PostgreSQL
# refuses to run as root) in a copy of the tree that user owns.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/setup.sh"
hk_setup

KEEP_WORK=0
if [ "$(id -u)" -eq 0 ]; then
	WORK=$(mktemp -d /tmp/hokusai-test.XXXXXX)
	# The copy goes when the script ends, unless a stage failed (KEEP_WORK,
	# set below): then its logs and diffs stay there for a look.
	trap '[ "$KEEP_WORK" = 1 ] || rm -rf "$WORK"' EXIT
	tar -C "$HK_TOP" --exclude=./.git --exclude=./node_modules -cf - . | tar -C "$WORK" -xf -
	chown -R "$HK_RUN_AS" "$WORK"
	[ -d "$HK_TOP/node_modules" ] && ln -s "$HK_TOP/node_modules" "$WORK/node_modules"
else
	WORK=$HK_TOP
fi
hk_log "running tests in $WORK as $HK_RUN_AS"

passed=0
failed=0
failures=()

# run_stage NAME COMMAND...: run one kind of test, count its results.
run_stage()
{
	local name=$1 log rc
	shift
	log=$(mktemp)
	hk_log "$name"
	set +e
	hk_as_user "$@" 2>&1 | tee "$log"
	rc=${PIPESTATUS[0]}
	set -e
	local ok bad
	case "$name" in
		fuzz)
			ok=$(grep -cE '^ok - ' "$log" || true)
			bad=$(grep -cE '^not ok - ' "$log" || true)
			;;
		tap)
			ok=$(grep -cE '^test/t/[^ ]+ \.+ ok' "$log" || true)
			bad=$(grep -cE '^test/t/[^ ]+ \.+ ' "$log" || true)
			bad=$((bad - ok))
			;;
		*)
			ok=$(grep -cE '\.\.\. ok' "$log" || true)
			bad=$(grep -cE '\.\.\. FAILED|\.\.\. failed' "$log" || true)
			;;
	esac
	if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
		bad=1
	fi
	passed=$((passed + ok))
	failed=$((failed + bad))
	if [ "$rc" -ne 0 ]; then
		failures+=("$name")
		for diffs in "$WORK/regression.diffs" "$WORK/output_iso/regression.diffs"; do
			if [ -s "$diffs" ]; then
				echo "---- $diffs ----"
				head -c 20000 "$diffs"
			fi
		done
		if [ "$name" = tap ] && [ -d "$WORK/tmp_check/log" ]; then
			for f in "$WORK"/tmp_check/log/regress_log_*; do
				echo "---- $f (last 60 lines) ----"
				tail -n 60 "$f"
			done
		fi
	fi
	rm -f "$log"
}

run_stage regress make -C "$WORK" -s installcheck-regress
run_stage isolation make -C "$WORK" -s installcheck-isolation
run_stage tap make -C "$WORK" -s installcheck-tap
run_stage fuzz bash "$WORK/test/fuzz/run.sh" "${HK_FUZZ_SECONDS:-20}"

echo
if [ "${#failures[@]}" -gt 0 ]; then
	echo "failed stages: ${failures[*]}"
fi
if [ "$WORK" != "$HK_TOP" ] && { [ "$failed" -gt 0 ] || [ "${#failures[@]}" -gt 0 ]; }; then
	KEEP_WORK=1
	echo "the test tree, with its logs and diffs, is kept in $WORK (rm -rf $WORK when done)"
fi
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
