#!/usr/bin/env bash
# The whole test suite: what CI runs (.ci/run calls this). Installs what is missing, checks the
# aarch64 kernels under qemu, the core + kernels as an aarch64 Embedded Swift executable and the
# C system-library shims for aarch64 under qemu (docs/cross.md), the quantisation cost on
# MovieLens, then runs every Swift test, and every Swift test again under AddressSanitizer.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh

echo "== aarch64 kernels under qemu (and the x86-64 kernels natively)"
cross/check-kernels-aarch64.sh

echo "== the core + kernels as an aarch64 Embedded Swift executable under qemu (A53, A76), compared with x86-64"
cross/build-aarch64.sh

echo "== the SQLite and libcurl shims against the arm64 libraries, under qemu"
cross/check-system-libs-aarch64.sh

echo "== systemd unit hardening (exposure must be 1.5 or less)"
if command -v systemd-analyze >/dev/null; then
    for unit in systemd/hearth-agent.service systemd/hearth-aggregator.service; do
        systemd-analyze security --offline=true --threshold=15 "$unit" | tail -n 1
    done
else
    echo "systemd-analyze not installed: skipped"
fi

echo "== parsers under fuzzing (libFuzzer + ASan, 30 s per target; docs/reliability.md)"
scripts/fuzz.sh 30

echo "== quantisation cost on MovieLens (int8 vs float32 HR@10, must be within 0.005)"
swift build -c release --product hearth-bench
datasets="${HEARTH_DATASETS:-../shared/datasets}"
.build/release/hearth-bench quantization --dataset "$datasets/movielens-small-dslabs/ratings.csv"

echo "== swift test"
swift build --build-tests

echo "== systemd-analyze verify (units copied with ExecStart pointing at the built binaries; any output fails)"
if command -v systemd-analyze >/dev/null; then
    units="$(mktemp -d)"
    cp systemd/hearth-agent.service systemd/hearth-agent.socket systemd/hearth-aggregator.service "$units/"
    sed -i "s|^ExecStart=/usr/bin/hearth-agent |ExecStart=$PWD/.build/debug/hearth-agent |" "$units/hearth-agent.service"
    sed -i "s|^ExecStart=/usr/bin/hearth-aggregator |ExecStart=$PWD/.build/debug/hearth-aggregator |" "$units/hearth-aggregator.service"
    grep -q "^ExecStart=$PWD/.build/debug/hearth-agent " "$units/hearth-agent.service"
    grep -q "^ExecStart=$PWD/.build/debug/hearth-aggregator " "$units/hearth-aggregator.service"
    verify="$(systemd-analyze verify "$units/hearth-agent.service" "$units/hearth-agent.socket" "$units/hearth-aggregator.service" 2>&1)" || { echo "$verify"; exit 1; }
    if [ -n "$verify" ]; then echo "$verify"; exit 1; fi
    rm -rf "$units"
    echo "clean"
else
    echo "systemd-analyze not installed: skipped"
fi

echo "== Debian packages of the debug binaries: contents, dpkg -x, --check-config, sysusers, systemd-analyze verify"
scripts/check-package.sh .build/debug

swift test --skip-build

# The whole suite again under AddressSanitizer (every target, the C kernels and the agent,
# aggregator and helper children included; any report or failing test fails the run):
# scripts/sanitize.sh, docs/reliability.md ("The test suite under sanitizers"). HEARTH_SANITIZE
# picks the passes: address (the default), address,thread (ThreadSanitizer too: opt-in, about
# 24 more minutes here), or none.
sanitizers="${HEARTH_SANITIZE-address}"
[ "$sanitizers" = none ] && sanitizers=""
for kind in ${sanitizers//,/ }; do echo "== swift test under the $kind sanitizer"; scripts/sanitize.sh "$kind"; done
