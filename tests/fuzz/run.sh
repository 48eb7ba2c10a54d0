#!/bin/sh
# Runs every libFuzzer target of a fuzz build for a number of seconds each, on a scratch copy of
# its seed corpus (tests/fuzz/corpus/<target>/), so the checked-in corpus never changes.
# Prints the executions of each target and any crash with its reproducer; exits 1 on a crash.
#
#   tests/fuzz/run.sh BUILD_DIR SECONDS
set -u

build=${1:?usage: run.sh BUILD_DIR SECONDS}
seconds=${2:?usage: run.sh BUILD_DIR SECONDS}
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/imapq-fuzz-run-XXXXXX")
failed=0

for src in "$here"/fuzz_*.c; do
	name=$(basename "$src" .c)
	bin="$build/fuzz/$name"
	if [ ! -x "$bin" ]; then
		echo "fuzz: $name: $bin is missing (build with -DIMAPQ_FUZZ=ON)"
		failed=1
		continue
	fi
	work="$scratch/$name"
	mkdir -p "$work/corpus"
	if [ -d "$here/corpus/$name" ]; then
		cp "$here/corpus/$name"/* "$work/corpus/" 2>/dev/null
	fi
	seeds=$(ls "$work/corpus" | wc -l)
	# A dictionary <word>.dict serves every target named fuzz_<word>_*.
	dict=""
	for d in "$here"/*.dict; do
		case "$name" in fuzz_"$(basename "$d" .dict)"_*) dict="-dict=$d" ;; esac
	done
	# -timeout catches hangs; leaks are checked after every input (detect_leaks).
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	"$bin" -max_total_time="$seconds" -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 \
		-artifact_prefix="$work/" $dict "$work/corpus" >"$work/log" 2>&1
	status=$?
	runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log")
	rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$work/log")
	corpus=$(ls "$work/corpus" | wc -l)
	crash=$(ls "$work" | grep -E '^(crash|leak|timeout|oom|slow-unit)-' | head -n 1)
	if [ "$status" -ne 0 ] || [ -n "$crash" ]; then
		failed=1
		echo "fuzz: $name: FAILED after ${runs:-?} executions (exit $status)"
		grep -E 'ERROR|invariant failed|SUMMARY|runtime error' "$work/log" | head -n 20
		if [ -n "$crash" ]; then
			echo "fuzz: $name: reproduce with: $bin $work/$crash"
		fi
		echo "fuzz: $name: log in $work/log"
	else
		echo "fuzz: $name: ${runs:-0} executions in ${seconds} s (${rate:-0}/s), corpus $seeds -> $corpus inputs, no crash"
	fi
done

if [ "$failed" -eq 0 ]; then
	rm -rf "$scratch"
	echo "fuzz: every target passed"
else
	echo "fuzz: failures kept in $scratch"
fi
exit "$failed"
