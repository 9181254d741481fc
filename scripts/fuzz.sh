#!/usr/bin/env bash
# Builds the libFuzzer targets in Tests/Fuzz and runs each for a bounded time; fails on any crash
# (docs/reliability.md, "Parsers under fuzzing").
#
# No second SwiftPM build: the library modules a target needs are compiled straight from
# Sources/ with swiftc (-O, -sanitize=fuzzer,address, -enable-testing so a harness may reach
# internal layout helpers), in dependency order; the C targets with clang
# -fsanitize=fuzzer-no-link,address. HearthLocalAPI and HearthControl are compiled from their
# files that do not use NIO, libcurl or swift-crypto (the request parsing and the CSV import).
# Each target links Tests/Fuzz/Support/*.swift (the libFuzzer entry points) with its own
# Tests/Fuzz/<target>/*.swift.
#
# Runs each target on a scratch copy of its seed corpus (Tests/Fuzz/corpus/<target>) with
# -max_total_time; crash inputs land in $OUT/artifacts/<target>/. Prints executions, wall and
# CPU time, coverage and features per target.
#
# Usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [--only TARGET]... [--out DIR] [--build-only]
#                        [--write-seeds] [--jobs N]
#   SECONDS_PER_TARGET  fuzzing time per target (default 30)
#   --only TARGET       build and run only this target (repeatable); targets: model-file update
#                       local-api event-csv config plan
#   --out DIR           build and run directory (default .build-fuzz)
#   --build-only        build, do not run
#   --write-seeds       rewrite the seeds (each target's seeds(), the packaged TOML files) into
#                       Tests/Fuzz/corpus
#   --jobs N            compile up to N modules at once (default 2)
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

SECONDS_PER_TARGET=30
OUT=.build-fuzz
BUILD_ONLY=0
WRITE_SEEDS=0
JOBS=2
ALL_TARGETS=(model-file update local-api event-csv config plan)
TARGETS=()
while (($#)); do
    case "$1" in
    --only)
        [[ " ${ALL_TARGETS[*]} " == *" ${2:?--only needs a target} "* ]] ||
            { echo "fuzz: unknown target $2 (targets: ${ALL_TARGETS[*]})" >&2; exit 2; }
        TARGETS+=("$2")
        shift 2
        ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    --build-only) BUILD_ONLY=1; shift ;;
    --write-seeds) WRITE_SEEDS=1; shift ;;
    --jobs) JOBS=${2:?--jobs needs a number}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    [0-9]*) SECONDS_PER_TARGET=$1; shift ;;
    *) echo "fuzz: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done
((${#TARGETS[@]})) || TARGETS=("${ALL_TARGETS[@]}")

# The Swift modules each target links, in dependency order.
modules_of() {
    case "$1" in
    model-file) echo HearthCore ;;
    update) echo HearthCore HearthPrivacy HearthAggregation ;;
    local-api) echo HearthCore HearthLocalAPI ;;
    event-csv) echo HearthCore HearthFiles HearthLocalAPI HearthControl HearthDatasets ;;
    config) echo HearthConfig ;;
    plan) echo HearthCore HearthConfig HearthLocalAPI ;;
    *) echo "fuzz: unknown target $1 (targets: ${ALL_TARGETS[*]})" >&2; return 1 ;;
    esac
}

# Product sources a target compiles in itself, from modules the fuzz build does not build whole
# (HearthAgent pulls in SQLite, libcurl and swift-crypto; ServerPlan.swift imports neither).
extra_sources_of() {
    case "$1" in
    plan) echo Sources/HearthAgent/ServerPlan.swift ;;
    esac
}

# The Swift sources of a module.
sources_of() {
    case "$1" in
    # The request handler, its JSON and limits; not the NIO server (ChannelHandlers, LocalAPIServer).
    HearthLocalAPI) echo Sources/HearthLocalAPI/{Backend,JSON,Limits,RequestHandler}.swift ;;
    # The event CSV import and its error; not the socket client or the commands.
    HearthControl) echo Sources/HearthControl/{ControlError,EventCSV}.swift ;;
    *) echo Sources/"$1"/*.swift ;;
    esac
}

# The Swift modules a module imports.
deps_of() {
    case "$1" in
    HearthAggregation) echo HearthCore HearthPrivacy ;;
    HearthLocalAPI) echo HearthCore ;;
    HearthDatasets) echo HearthCore HearthFiles ;;
    HearthControl) echo HearthCore HearthLocalAPI ;;
    esac
}

# Whether a module needs the C targets' objects (CHearthKernels, CHearthMath) at link time.
uses_c() { [[ "$1" == HearthCore || "$1" == HearthPrivacy || "$1" == HearthAggregation ]]; }

run() {
    printf '+ %s\n' "$*" >&2
    "$@"
}

mkdir -p "$OUT/obj" "$OUT/bin"
OBJ="$OUT/obj"
SWIFTC=(swiftc -O -wmo -sanitize=fuzzer,address -enable-testing -parse-as-library -package-name Hearth
    -I Sources/CHearthKernels/include -I Sources/CHearthMath/include -I "$OBJ")
build_start=$SECONDS

# ---- C targets ---------------------------------------------------------------------------------
needed_modules=()
for target in "${TARGETS[@]}"; do
    for module in $(modules_of "$target"); do
        [[ " ${needed_modules[*]-} " == *" $module "* ]] || needed_modules+=("$module")
    done
done
c_objects=()
if [[ " ${needed_modules[*]} " == *" HearthCore "* || " ${needed_modules[*]} " == *" HearthPrivacy "* ]]; then
    echo "== C targets (clang -fsanitize=fuzzer-no-link,address)"
    for source in Sources/CHearthKernels/*.c Sources/CHearthMath/math.c; do
        object="$OBJ/$(basename "$(dirname "$source")")-$(basename "$source" .c).o"
        c_objects+=("$object")
        newest=$(ls -t "$source" Sources/CHearthKernels/*.h Sources/CHearthKernels/include/*.h Sources/CHearthMath/include/*.h | head -n 1)
        if [[ ! "$object" -nt "$newest" ]]; then
            run clang -O2 -ffp-contract=off -fsanitize=fuzzer-no-link,address -I Sources/CHearthKernels/include \
                -I Sources/CHearthKernels -I Sources/CHearthMath/include -c "$source" -o "$object"
        fi
    done
fi

# ---- Swift modules, in dependency order; independent ones in parallel --------------------------
# Rebuilt when a source, a C header or a module it imports is newer than the object.
stale() {
    local object="$OBJ/$1.o" file
    [[ -f "$object" ]] || return 0
    for file in $(sources_of "$1") Sources/CHearthKernels/include/*.h Sources/CHearthMath/include/*.h; do
        [[ "$file" -nt "$object" ]] && return 0
    done
    for file in $(deps_of "$1"); do [[ "$OBJ/$file.o" -nt "$object" ]] && return 0; done
    return 1
}
build_module() {
    local module=$1 log="$OBJ/$1.log"
    # shellcheck disable=SC2046
    if ! "${SWIFTC[@]}" -module-name "$module" -emit-module -emit-module-path "$OBJ/$module.swiftmodule" \
        -c $(sources_of "$module") -o "$OBJ/$module.o" >"$log" 2>&1; then
        cat "$log" >&2
        echo "fuzz: building $module failed" >&2
        return 1
    fi
    # swiftc leaves an unchanged object file alone; the time stamp says it is up to date.
    touch "$OBJ/$module.o"
}
# Levels: a module depends only on modules of earlier levels.
LEVELS=("HearthCore HearthPrivacy HearthConfig HearthFiles" "HearthAggregation HearthLocalAPI HearthDatasets" "HearthControl")
echo "== Swift modules (swiftc -O -sanitize=fuzzer,address)"
for level in "${LEVELS[@]}"; do
    pids=()
    for module in $level; do
        [[ " ${needed_modules[*]} " == *" $module "* ]] || continue
        if stale "$module"; then
            echo "+ swiftc $module ($(sources_of "$module" | wc -w) files)"
            while (($(jobs -rp | wc -l) >= JOBS)); do wait -n; done
            build_module "$module" &
            pids+=($!)
        fi
    done
    for pid in "${pids[@]}"; do wait "$pid" || exit 1; done
done

# ---- fuzz targets ------------------------------------------------------------------------------
echo "== fuzz targets (linked with -sanitize=fuzzer,address)"
for target in "${TARGETS[@]}"; do
    objects=()
    for module in $(modules_of "$target"); do objects+=("$OBJ/$module.o"); done
    for module in $(modules_of "$target"); do
        if uses_c "$module"; then objects+=("${c_objects[@]}"); break; fi
    done
    # shellcheck disable=SC2046
    run "${SWIFTC[@]}" -module-name "fuzz_${target//-/_}" Tests/Fuzz/Support/*.swift Tests/Fuzz/"$target"/*.swift $(extra_sources_of "$target") \
        "${objects[@]}" -lm -use-ld=lld -o "$OUT/bin/fuzz-$target"
done
echo "built ${#TARGETS[@]} targets in $((SECONDS - build_start)) s"

if ((WRITE_SEEDS)); then
    for target in "${TARGETS[@]}"; do
        mkdir -p Tests/Fuzz/corpus/"$target"
        HEARTH_FUZZ_WRITE_SEEDS="$PWD/Tests/Fuzz/corpus/$target" "$OUT/bin/fuzz-$target"
    done
    if [[ " ${TARGETS[*]} " == *" config "* ]]; then
        cp packaging/hearth-agent/agent.toml Tests/Fuzz/corpus/config/packaged-agent.toml
        cp packaging/hearth-aggregator/aggregator.toml Tests/Fuzz/corpus/config/packaged-aggregator.toml
        echo "copied the packaged agent.toml and aggregator.toml into Tests/Fuzz/corpus/config"
    fi
fi
((BUILD_ONLY)) && exit 0

# ---- runs --------------------------------------------------------------------------------------
summary=()
status=0
for target in "${TARGETS[@]}"; do
    echo "== fuzz $target for ${SECONDS_PER_TARGET} s"
    corpus="$OUT/corpus/$target"
    artifacts="$OUT/artifacts/$target"
    mkdir -p "$corpus" "$artifacts"
    cp Tests/Fuzz/corpus/"$target"/* "$corpus"/
    dict=()
    [[ -f Tests/Fuzz/"$target"/"$target".dict ]] && dict=(-dict=Tests/Fuzz/"$target"/"$target".dict)
    log="$OUT/$target.log"
    start=$SECONDS
    set +e
    # No Swift backtracer: libFuzzer and ASan report the crash, and the backtracer's own memory
    # reads trip ASan. The CPU time (user + system) goes to $OUT/<target>.cpu: on a shared machine
    # it is less than the wall time.
    TIMEFORMAT='%U %S'
    { time SWIFT_BACKTRACE=enable=no "$OUT/bin/fuzz-$target" "$corpus" "${dict[@]}" -max_total_time="$SECONDS_PER_TARGET" \
        -timeout=20 -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" >"$log" 2>&1; } 2>"$OUT/$target.cpu"
    rc=$?
    set -e
    cpu=$(awk '{ printf "%.0f", $1 + $2 }' "$OUT/$target.cpu")
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    last=$(grep -E '^#[0-9]+' "$log" | tail -n 1)
    cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
    ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
    line="$target: ${runs:-?} executions in $((SECONDS - start)) s (${cpu:-?} s CPU), cov ${cov:-?}, ft ${ft:-?}, corpus $(find "$corpus" -type f | wc -l) files"
    if ((rc != 0)); then
        line+=", FAILED (exit $rc): see $log and $artifacts"
        grep -E 'ERROR: (libFuzzer|AddressSanitizer)|^SUMMARY|property violated|Fatal error' "$log" | head -n 5 >&2 || true
        status=1
    fi
    echo "$line"
    summary+=("$line")
done
echo "== fuzz summary"
printf '%s\n' "${summary[@]}"
exit "$status"
