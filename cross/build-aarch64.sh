#!/usr/bin/env bash
# Cross-builds the pure core and the kernels for aarch64 Linux and checks them under qemu:
#   1. builds the smoke program (cross/smoke) natively with SwiftPM and writes the seeded model
#      file with it (x86-64 bytes);
#   2. compiles HearthCore, HearthPrivacy and the smoke program as Embedded Swift for
#      aarch64-none-none-elf (clang told it is Linux, glibc's aarch64 headers), the C targets
#      (CHearthKernels, CHearthMath, the smoke's C support) with aarch64-linux-gnu-gcc, and links
#      them with the cross gcc into a PIE glibc executable (plus the toolchain's embedded
#      libswiftUnicodeDataTables.a and cross/aarch64/swift_embedded_linux.c);
#   3. runs it on the x86-written model under qemu-aarch64 as Cortex-A53 (dispatch must pick
#      `neon`) and Cortex-A76 (must pick `neondot`), and natively;
#   4. compares: A53 and A76 identical line for line apart from the kernel name; each against the
#      native x86-64 run with integers exact and floats within the tolerance of docs/cross.md.
# Usage: cross/build-aarch64.sh [--scratch-path DIR] [--out DIR]
#   --scratch-path  SwiftPM scratch path for the native build (default .build)
#   --out           where the aarch64 objects, binary and outputs go (default .build-cross/aarch64)
# Needs: gcc-aarch64-linux-gnu, libc6-dev-arm64-cross, qemu-user (scripts/install-deps.sh).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
unset HEARTH_KERNEL_ISA

SCRATCH=.build
OUT=.build-cross/aarch64
while (($#)); do
    case "$1" in
    --scratch-path) SCRATCH=${2:?--scratch-path needs a directory}; shift 2 ;;
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "build-aarch64: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

# Shows a command (on stderr: some runs' stdout is their result) and runs it.
run() {
    printf '+ %s\n' "$*" >&2
    "$@"
}

# ---- tools ------------------------------------------------------------------------------------
SYSROOT=/usr/aarch64-linux-gnu
EMBEDDED_LIB="$(dirname "$(dirname "$(command -v swiftc)")")/lib/swift/embedded/aarch64-none-none-elf"
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=("gcc-aarch64-linux-gnu (aarch64-linux-gnu-gcc)")
[[ -d "$SYSROOT/include" ]] || missing+=("libc6-dev-arm64-cross ($SYSROOT/include)")
command -v qemu-aarch64 >/dev/null || missing+=("qemu-user (qemu-aarch64)")
[[ -f "$EMBEDDED_LIB/libswiftUnicodeDataTables.a" ]] ||
    missing+=("a Swift toolchain with Embedded Swift for aarch64-none-none-elf ($EMBEDDED_LIB)")
if ((${#missing[@]})); then
    echo "build-aarch64: missing:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    echo "  scripts/install-deps.sh installs the Debian packages" >&2
    exit 2
fi
mkdir -p "$OUT/obj"
rm -f "$OUT"/obj/*.o "$OUT"/obj/*.swiftmodule

# ---- 1. native build and the model file (written on x86-64) ------------------------------------
echo "== native build of the smoke program (SwiftPM, $SCRATCH)"
if ! run swift build --scratch-path "$SCRATCH" --product hearth-cross-smoke >"$OUT/native-build.log" 2>&1; then
    cat "$OUT/native-build.log" >&2
    echo "build-aarch64: the native build failed" >&2
    exit 1
fi
tail -n 1 "$OUT/native-build.log"
NATIVE="$(swift build --scratch-path "$SCRATCH" --show-bin-path)/hearth-cross-smoke"
MODEL="$OUT/smoke-model.hrth"
run "$NATIVE" write-model "$MODEL"
echo "model file: $(sha256sum "$MODEL" | cut -d' ' -f1)  $(stat -c %s "$MODEL") bytes"

# ---- 2. Embedded Swift + C for aarch64, linked with the cross gcc ------------------------------
echo "== Embedded Swift for aarch64-none-none-elf"
# clang (inside swiftc) must see a Linux target to take glibc's headers as they are.
SWIFT_EMBEDDED=(swiftc -enable-experimental-feature Embedded -wmo -Osize -target aarch64-none-none-elf
    -Xfrontend -function-sections
    -Xcc -D__linux__ -Xcc -D__unix__ -Xcc -D__gnu_linux__ -Xcc -I"$SYSROOT/include"
    # glibc's stdint.h redefines __INT64_C/__UINT64_C, which clang predefines for this target
    # with the same expansion: harmless, and noisy once per module.
    -Xcc -Wno-macro-redefined
    -I Sources/CHearthKernels/include -I Sources/CHearthMath/include -I cross/smoke-support/include
    -I "$OUT/obj")
# HearthCore and HearthPrivacy do not import each other: compile them side by side (two cores).
start=$SECONDS
pids=()
for module in HearthCore HearthPrivacy; do
    run "${SWIFT_EMBEDDED[@]}" -parse-as-library -module-name "$module" -package-name Hearth \
        -emit-module -emit-module-path "$OUT/obj/$module.swiftmodule" \
        -c Sources/"$module"/*.swift -o "$OUT/obj/$module.o" >"$OUT/$module.log" 2>&1 &
    pids+=($!)
done
for index in 0 1; do
    module=$([[ $index == 0 ]] && echo HearthCore || echo HearthPrivacy)
    if ! wait "${pids[$index]}"; then
        cat "$OUT/$module.log" >&2
        echo "build-aarch64: Embedded Swift compile of $module failed" >&2
        exit 1
    fi
    cat "$OUT/$module.log"
    echo "$module: $(stat -c %s "$OUT/obj/$module.o") bytes of aarch64 object code, done after $((SECONDS - start)) s"
done
start=$SECONDS
run "${SWIFT_EMBEDDED[@]}" -module-name hearth_cross_smoke -c cross/smoke/*.swift -o "$OUT/obj/hearth_cross_smoke.o"
echo "hearth_cross_smoke: $(stat -c %s "$OUT/obj/hearth_cross_smoke.o") bytes of aarch64 object code, $((SECONDS - start)) s"

echo "== C targets with aarch64-linux-gnu-gcc (baseline Armv8.0-A; per-function target attributes)"
CFLAGS=(-O2 -ffp-contract=off -march=armv8-a -ffunction-sections -fdata-sections -Wall -Wextra
    -I Sources/CHearthKernels/include -I Sources/CHearthKernels -I Sources/CHearthMath/include
    -I cross/smoke-support/include)
C_SOURCES=(Sources/CHearthKernels/*.c Sources/CHearthMath/math.c cross/smoke-support/smoke_support.c
    cross/aarch64/swift_embedded_linux.c)
for source in "${C_SOURCES[@]}"; do
    object="$OUT/obj/$(basename "$(dirname "$source")")-$(basename "$source" .c).o"
    run aarch64-linux-gnu-gcc "${CFLAGS[@]}" -c "$source" -o "$object"
done

echo "== link (PIE, glibc, dynamic)"
BIN="$OUT/hearth-cross-smoke-aarch64"
run aarch64-linux-gnu-gcc -Wl,--gc-sections -o "$BIN" "$OUT"/obj/*.o \
    "$EMBEDDED_LIB/libswiftUnicodeDataTables.a" -lm -lpthread
elf_type=$(aarch64-linux-gnu-readelf -h "$BIN" | sed -n 's/^ *Type: *\([A-Z]*\).*/\1/p')
machine=$(aarch64-linux-gnu-readelf -h "$BIN" | sed -n 's/^ *Machine: *//p')
interpreter=$(aarch64-linux-gnu-readelf -l "$BIN" | sed -n 's/.*Requesting program interpreter: \(.*\)\]/\1/p')
needed=$(aarch64-linux-gnu-readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "$BIN: $machine, ELF type $elf_type (a PIE), interpreter $interpreter, needs: $needed"
if [[ "$machine" != AArch64 || "$elf_type" != DYN ]]; then
    echo "build-aarch64: FAIL: expected an AArch64 PIE executable" >&2
    exit 1
fi
aarch64-linux-gnu-strip -o "$BIN.stripped" "$BIN"
echo "size: $(stat -c %s "$BIN") bytes, $(stat -c %s "$BIN.stripped") stripped"
aarch64-linux-gnu-size "$BIN"

# ---- 3. run: native and under qemu -------------------------------------------------------------
QEMU=(qemu-aarch64 -L "$SYSROOT")
echo "== run natively (x86-64)"
run "$NATIVE" run "$MODEL" >"$OUT/x86_64.txt"
for cpu in cortex-a53 cortex-a76; do
    echo "== run under qemu-aarch64 -cpu $cpu"
    start=$SECONDS
    run "${QEMU[@]}" -cpu "$cpu" "$BIN" run "$MODEL" >"$OUT/$cpu.txt"
    echo "$cpu: $(wc -l <"$OUT/$cpu.txt") result lines in $((SECONDS - start)) s"
done

# ---- 4. checks ---------------------------------------------------------------------------------
kernel_of() { sed -n 's/^kernel info //p' "$1"; }
echo "== dispatch"
status=0
for cpu_expect in x86_64: cortex-a53:neon cortex-a76:neondot; do
    cpu=${cpu_expect%%:*} expect=${cpu_expect#*:}
    picked=$(kernel_of "$OUT/$cpu.txt")
    echo "$cpu: picked '$picked' (supported: $(sed -n 's/^kernels.supported info //p' "$OUT/$cpu.txt"))"
    if [[ -n "$expect" && "$picked" != "$expect" ]]; then
        echo "build-aarch64: FAIL: $cpu must pick '$expect'" >&2
        status=1
    fi
done
((status == 0)) || exit 1

echo "== cortex-a53 vs cortex-a76: identical apart from the info lines (same binary, other kernel)"
results() { grep -v '^[^ ]* info ' "$1"; }
if ! diff <(results "$OUT/cortex-a53.txt") <(results "$OUT/cortex-a76.txt") >/dev/null; then
    echo "build-aarch64: FAIL: the A53 (neon) and A76 (neondot) runs differ:" >&2
    diff <(results "$OUT/cortex-a53.txt") <(results "$OUT/cortex-a76.txt") | cut -c1-200 >&2
    exit 1
fi
echo "identical ($(wc -l <"$OUT/cortex-a53.txt") lines)"

for cpu in cortex-a53 cortex-a76; do
    echo "== x86-64 vs aarch64 $cpu (integers exact, floats within docs/cross.md tolerance)"
    run "$NATIVE" compare "$OUT/x86_64.txt" "$OUT/$cpu.txt"
done

echo "== the comparison must fail on a changed result (a top-K index, an update value, a grid value)"
expect_mismatch() {
    local what=$1 file=$2
    if "$NATIVE" compare "$OUT/x86_64.txt" "$file" >"$file.log" 2>&1; then
        echo "build-aarch64: FAIL: compare accepted $what" >&2
        exit 1
    fi
    echo "rejected $what: $(grep -m1 MISMATCH "$file.log" | cut -c1-160)"
}
# Adds 1 to the first value of the line whose key is $1.
bump_first() {
    awk -v key="$1" '$1 == key { split($3, v, ","); line = $1 " " $2 " " v[1] + 1
        for (i = 2; i in v; i++) line = line "," v[i]; print line; next } { print }' "$OUT/x86_64.txt"
}
bump_first topk.items >"$OUT/perturbed-int.txt"
expect_mismatch "a top-K index off by one" "$OUT/perturbed-int.txt"
bump_first privatized.values >"$OUT/perturbed-derived.txt"
expect_mismatch "a privatized grid value off by one (all floats bit-identical)" "$OUT/perturbed-derived.txt"
first=$(sed -n 's/^train.update f32 \(0x[0-9a-f]*\),.*/\1/p' "$OUT/x86_64.txt")
moved=$(printf '0x%08x' $((first + 0x40000)))
sed "s/^train.update f32 $first,/train.update f32 $moved,/" "$OUT/x86_64.txt" >"$OUT/perturbed-float.txt"
expect_mismatch "train.update[0] moved from $first to $moved" "$OUT/perturbed-float.txt"
echo "build-aarch64: OK"
