#!/usr/bin/env bash
# Build the libFuzzer harnesses with clang and run each for a bounded time
# over its corpus (test/fuzz/corpus/<name>/).  New inputs the fuzzer finds go
# to a scratch directory, not into the repository.  Exit status non-zero when
# a harness finds a crash.
#
#   bash test/fuzz/run.sh [seconds per harness, default 20]
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
TOP=$(cd "$HERE/../.." && pwd)
SECS=${1:-20}
OUT=$(mktemp -d /tmp/hokusai-fuzz.XXXXXX)
trap 'rm -rf "$OUT"' EXIT

build()
{
	local name=$1
	shift
	if ! clang -g -O1 -Wno-ignored-attributes -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=undefined -I"$TOP/src" \
		-o "$OUT/$name" "$HERE/$name.c" "$@" >"$OUT/build-$name.log" 2>&1; then
		cat "$OUT/build-$name.log"
		echo "not ok - $name does not build"
		exit 1
	fi
}

# The parsers are plain C in src/common, free of server headers and state:
# each harness is built from them alone, the same sources the server runs.
build key_parse_fuzz "$TOP/src/common/key_format.c" "$TOP/src/common/crc32.c"
build forwarded_fuzz "$TOP/src/common/forwarded.c" "$TOP/src/common/cidr.c" \
	"$TOP/src/common/text.c"

status=0
for h in key_parse_fuzz forwarded_fuzz; do
	corpus=$HERE/corpus/${h%_fuzz}
	mkdir -p "$OUT/new_$h"
	echo "fuzzing $h for ${SECS}s over $(ls "$corpus" | wc -l) seed inputs"
	if "$OUT/$h" -max_total_time="$SECS" -print_final_stats=1 \
		-artifact_prefix="$OUT/" "$OUT/new_$h" "$corpus" >"$OUT/$h.log" 2>&1; then
		grep -E 'stat::number_of_executed_units|Done' "$OUT/$h.log" | tail -2
		echo "ok - $h: no crash"
	else
		tail -40 "$OUT/$h.log"
		echo "not ok - $h found a crash"
		status=1
	fi
done
exit $status
