#!/usr/bin/env bash
# Cross-checks the Hearth int8 kernels (Sources/CHearthKernels) without arm64 hardware:
#   1. builds cross/kernel_check.c + the kernels for baseline arm64 (-march=armv8-a) and runs the
#      driver under qemu-user as Cortex-A53 and A72 (must pick `neon`, must never execute SDOT)
#      and Cortex-A76 (must pick `neondot`), plus HEARTH_KERNEL_ISA overrides;
#   2. checks statically that SDOT/UDOT appear only inside the neondot kernel's two entry points
#      (hearth_dot_neondot and hearth_scan_neondot);
#   3. builds the same driver natively for x86-64 and runs it (avx2; avxvnni when the CPU has it);
#   4. tries the AVX-VNNI kernel under qemu-x86_64 (skipped with a note when the qemu model lacks
#      AVX-VNNI, as Debian bookworm's QEMU 7.2 does) and, always, with vpdpbusd replaced by a
#      scalar model of the instruction (checks the kernel's arithmetic, not the CPU's).
# Usage: cross/check-kernels-aarch64.sh        (from any directory; exits non-zero on failure)
# Output binaries go to .build-cross/ (git-ignored).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
unset HEARTH_KERNEL_ISA

KDIR=Sources/CHearthKernels
OUT=.build-cross
CFLAGS=(-O2 -ffp-contract=off -Wall -Wextra -I"$KDIR/include" -I"$KDIR")
SOURCES=(cross/kernel_check.c "$KDIR"/*.c)

run() {
    printf '+ %s\n' "$*"
    "$@"
}

# ---- tools ------------------------------------------------------------------------------------
missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=("gcc-aarch64-linux-gnu (aarch64-linux-gnu-gcc)")
command -v aarch64-linux-gnu-objdump >/dev/null || missing+=("binutils-aarch64-linux-gnu (aarch64-linux-gnu-objdump)")
command -v qemu-aarch64 >/dev/null || missing+=("qemu-user (qemu-aarch64)")
command -v cc >/dev/null || missing+=("gcc (cc)")
if ((${#missing[@]})); then
    echo "check-kernels: missing tools; install the Debian/Ubuntu packages:" >&2
    printf '  %s\n' "${missing[@]}" >&2
    echo "  e.g. sudo apt-get install gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu qemu-user gcc" >&2
    exit 2
fi
mkdir -p "$OUT"
results=()
note() { results+=("$1"); }

# ---- arm64 ------------------------------------------------------------------------------------
ARM_BIN="$OUT/kernel-check-aarch64"
QEMU_ARM=(qemu-aarch64)
echo "== building for arm64 (baseline Armv8.0-A)"
if ! run aarch64-linux-gnu-gcc "${CFLAGS[@]}" -march=armv8-a -static "${SOURCES[@]}" -lpthread -o "$ARM_BIN"; then
    echo "check-kernels: static link failed (libc6-dev-arm64-cross without libc.a?); trying a dynamic binary"
    run aarch64-linux-gnu-gcc "${CFLAGS[@]}" -march=armv8-a "${SOURCES[@]}" -lpthread -o "$ARM_BIN"
    QEMU_ARM=(qemu-aarch64 -L /usr/aarch64-linux-gnu)
fi

echo "== SDOT/UDOT may appear only in hearth_dot_neondot and hearth_scan_neondot (a baseline CPU must never meet one)"
dot_functions=$(aarch64-linux-gnu-objdump -d "$ARM_BIN" |
    awk '/^[0-9a-f]+ <.*>:$/ { fn = $2 } /\t(sdot|udot)\t/ { print fn }' | sort -u | tr '\n' ' ')
echo "functions containing sdot/udot: ${dot_functions:-none}"
if [[ "$dot_functions" != "<hearth_dot_neondot>: <hearth_scan_neondot>: " ]]; then
    echo "check-kernels: FAIL: expected SDOT only in <hearth_dot_neondot> and <hearth_scan_neondot>, found in: ${dot_functions:-none}" >&2
    exit 1
fi
note "arm64 static check: sdot only in hearth_dot_neondot and hearth_scan_neondot"

for cpu_expect in cortex-a53:neon cortex-a72:neon cortex-a76:neondot; do
    cpu=${cpu_expect%%:*} expect=${cpu_expect#*:}
    echo "== qemu $cpu: every supported kernel vs the oracle; best must be $expect"
    run "${QEMU_ARM[@]}" -cpu "$cpu" "$ARM_BIN" --expect "$expect"
    note "qemu-aarch64 -cpu $cpu: picked $expect, all checks passed"
done

echo "== overrides under cortex-a76"
run env HEARTH_KERNEL_ISA=scalar "${QEMU_ARM[@]}" -cpu cortex-a76 "$ARM_BIN" --expect scalar --quiet
note "qemu-aarch64 -cpu cortex-a76 HEARTH_KERNEL_ISA=scalar: picked scalar"
run env HEARTH_KERNEL_ISA=neon "${QEMU_ARM[@]}" -cpu cortex-a76 "$ARM_BIN" --expect neon --quiet
note "qemu-aarch64 -cpu cortex-a76 HEARTH_KERNEL_ISA=neon: picked neon"

echo "== HEARTH_KERNEL_ISA=neondot on cortex-a72 must be refused (exit 2), not run"
set +e
HEARTH_KERNEL_ISA=neondot "${QEMU_ARM[@]}" -cpu cortex-a72 "$ARM_BIN" --quiet
status=$?
set -e
if [[ $status -ne 2 ]]; then
    echo "check-kernels: FAIL: expected exit 2 for an unsupported override, got $status" >&2
    exit 1
fi
note "qemu-aarch64 -cpu cortex-a72 HEARTH_KERNEL_ISA=neondot: refused (exit 2)"

# ---- x86-64 -----------------------------------------------------------------------------------
if [[ "$(uname -m)" == x86_64 ]]; then
    X86_BIN="$OUT/kernel-check-x86_64"
    echo "== building natively for x86-64"
    run cc "${CFLAGS[@]}" "${SOURCES[@]}" -lpthread -o "$X86_BIN"
    flags=$(grep -m1 '^flags' /proc/cpuinfo || true)
    if [[ " $flags " == *" avx_vnni "* ]]; then
        x86_expect=avxvnni
    elif [[ " $flags " == *" avx2 "* ]]; then
        x86_expect=avx2
    else
        x86_expect=scalar
    fi
    run "$X86_BIN" --expect "$x86_expect"
    note "native x86-64: picked $x86_expect, all checks passed"

    echo "== AVX-VNNI under qemu-x86_64 -cpu max (real vpdpbusd, emulated)"
    if command -v qemu-x86_64 >/dev/null; then
        probe=$(qemu-x86_64 -cpu max "$X86_BIN" --expect avxvnni --quiet 2>&1 | head -1 || true)
        if [[ "$probe" == *"avxvnni(supported)"* ]]; then
            run qemu-x86_64 -cpu max "$X86_BIN" --expect avxvnni --quiet
            run env HEARTH_KERNEL_ISA=avxvnni qemu-x86_64 -cpu max "$X86_BIN" --expect avxvnni --quiet
            note "qemu-x86_64 -cpu max: picked avxvnni, all checks passed"
        else
            echo "NOTE: skipped: $(qemu-x86_64 --version | head -1) does not offer AVX-VNNI"
            echo "      (its TCG lacks CPUID.(7,1):EAX[4] and vpdpbusd; the probe said: $probe)"
            note "qemu-x86_64 AVX-VNNI: SKIPPED (not emulated by this QEMU)"
        fi
    else
        echo "NOTE: skipped: qemu-x86_64 not installed (Debian package qemu-user)"
        note "qemu-x86_64 AVX-VNNI: SKIPPED (no qemu-x86_64)"
    fi

    echo "== avxvnni kernel with vpdpbusd replaced by a scalar model of the instruction"
    # Checks the kernel's arithmetic (xor 0x80, 128*sum(q) correction, loops, tails) bit-exact;
    # it cannot check the CPU's instruction or the detection.
    cat >"$OUT/vnni_model.h" <<'EOF'
/* Scalar model of VEX vpdpbusd (AVX-VNNI, non-saturating): for each int32 lane i,
   acc[i] + sum_j (uint8)a[4i+j] * (int8)b[4i+j], wrapping. Force-included into avxvnni.c. */
#include <immintrin.h>
#include <stdint.h>
#include <string.h>
__attribute__((target("avx2"))) static inline __m256i hearth_model_dpbusd(__m256i acc, __m256i a, __m256i b) {
    uint32_t lanes[8];
    uint8_t ua[32];
    int8_t sb[32];
    memcpy(lanes, &acc, 32);
    memcpy(ua, &a, 32);
    memcpy(sb, &b, 32);
    for (int i = 0; i < 8; i++) {
        int32_t sum = 0;
        for (int j = 0; j < 4; j++) sum += (int32_t)ua[4 * i + j] * (int32_t)sb[4 * i + j];
        lanes[i] += (uint32_t)sum;
    }
    __m256i result;
    memcpy(&result, lanes, 32);
    return result;
}
#define _mm256_dpbusd_avx_epi32 hearth_model_dpbusd
EOF
    MODEL_BIN="$OUT/kernel-check-x86_64-vnni-model"
    model_sources=()
    for f in "${SOURCES[@]}"; do [[ "$f" != "$KDIR/avxvnni.c" ]] && model_sources+=("$f"); done
    run cc "${CFLAGS[@]}" -c -include "$OUT/vnni_model.h" "$KDIR/avxvnni.c" -o "$OUT/avxvnni-model.o"
    run cc "${CFLAGS[@]}" "${model_sources[@]}" "$OUT/avxvnni-model.o" -lpthread -o "$MODEL_BIN"
    if objdump -d "$MODEL_BIN" | grep -q vpdpbusd; then
        echo "check-kernels: FAIL: the model build still contains vpdpbusd" >&2
        exit 1
    fi
    run "$MODEL_BIN" --force avxvnni --quiet
    note "avxvnni kernel with a scalar vpdpbusd model: all checks passed"
else
    echo "NOTE: host is $(uname -m), not x86-64: skipping the native x86-64 checks"
    note "x86-64: SKIPPED (host is $(uname -m))"
fi

echo
echo "check-kernels: summary"
printf '  %s\n' "${results[@]}"
echo "check-kernels: OK"
