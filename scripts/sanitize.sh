#!/usr/bin/env bash
# The Swift test suite under AddressSanitizer or ThreadSanitizer (issue 8; docs/reliability.md).
#
# Builds every target and test (the C targets too: SwiftPM passes -fsanitize to clang) with
# `swift build --sanitize=KIND` in its own scratch directory, then runs `swift test --skip-build`.
# The end-to-end tests start `hearth-agent` and `hearth-aggregator` found next to the test
# binary (HearthProcess.builtExecutable), so those child processes are the sanitized builds of
# the same scratch directory and inherit the sanitizer options below.
#
# Every process (the test runner and every child) writes its sanitizer reports to
# $OUT/reports/KIND.<pid> (log_path); the script prints them and fails if there is any, even
# when the tests themselves passed (a child's report does not fail a test by itself).
# Suppressions: Tests/sanitizers/KIND.supp, one justified entry each.
#
# Usage: scripts/sanitize.sh [address|thread] [--filter REGEX]... [--skip REGEX]...
#                            [--scratch DIR] [--build-only]
#   address|thread   the sanitizer (default address)
#   --filter REGEX   run only matching tests (repeatable; passed to swift test)
#   --skip REGEX     skip matching tests (repeatable; passed to swift test)
#   --scratch DIR    SwiftPM scratch path (default .build-asan / .build-tsan)
#   --build-only     build, do not run
# Prints build and test wall times, the tests' summary line and the reports.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

kind=address
scratch=""
build_only=0
test_args=()
while (($#)); do
    case "$1" in
    address | thread) kind=$1; shift ;;
    --filter | --skip) test_args+=("$1" "${2:?$1 needs a regular expression}"); shift 2 ;;
    --scratch) scratch=${2:?--scratch needs a directory}; shift 2 ;;
    --build-only) build_only=1; shift ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "sanitize: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
case "$kind" in
address) scratch=${scratch:-.build-asan} ;;
thread) scratch=${scratch:-.build-tsan} ;;
esac
[[ "$scratch" = /* ]] || scratch="$PWD/$scratch"
suppressions="$PWD/Tests/sanitizers/$kind.supp"
reports="$scratch/sanitizer-reports"

start=$(date +%s)
swift build --scratch-path "$scratch" --build-tests --sanitize="$kind"
built=$(date +%s)
echo "sanitize $kind: build $((built - start)) s"
((build_only)) && exit 0

rm -rf "$reports"
mkdir -p "$reports"
common="log_path=$reports/$kind:abort_on_error=0"
# detect_leaks=0: LeakSanitizer reports the Swift runtime's metadata caches and the test
# runner's never-freed globals at exit (not bugs); heap overflows and use-after-free still stop
# the process. halt_on_error=1 makes a ThreadSanitizer report fail the process at once.
export ASAN_OPTIONS="$common:detect_leaks=0:suppressions=$suppressions"
export TSAN_OPTIONS="$common:halt_on_error=1:suppressions=$suppressions"
# A crash in a sanitized process: the sanitizer's report, not the Swift backtracer's.
export SWIFT_BACKTRACE=enable=no
# Tests that bound time, throughput or memory widen those bounds under a sanitizer
# (HearthTestSupport.TestBounds: the quarantine keeps freed memory, every process is slower).
export HEARTH_SANITIZER="$kind"

status=0
log="$scratch/sanitize-test.log"
swift test --scratch-path "$scratch" --skip-build --sanitize="$kind" ${test_args[@]+"${test_args[@]}"} 2>&1 |
    tee "$log" || status=$?
finished=$(date +%s)
echo "sanitize $kind: tests $((finished - built)) s (exit status $status)"
grep -E "Test run with [0-9]+ tests? .* (passed|failed)" "$log" | tail -n 1 || true

shopt -s nullglob
found=("$reports"/*)
if ((${#found[@]})); then
    echo "sanitize $kind: ${#found[@]} report file(s):"
    for report in "${found[@]}"; do
        echo "---- $report"
        cat "$report"
    done
    exit 1
fi
echo "sanitize $kind: no sanitizer reports"
exit "$status"
