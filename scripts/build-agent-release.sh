#!/usr/bin/env bash
# The release hearth-agent as shipped (docs/benchmarks.md, "Agent footprint"): static Swift
# stdlib, optimised for size, without the dynamic symbol table the Swift driver exports for
# static-stdlib executables (-export-dynamic: ~21,000 symbols, 1.9 MB), stripped.
#
#   scripts/build-agent-release.sh [OUTPUT] [SCRATCH]   (default out/hearth-agent, .build)
set -euo pipefail
cd "$(dirname "$0")/.."
output="${1:-out/hearth-agent}"
scratch="${2:-.build}"
swift build --scratch-path "$scratch" -c release --static-swift-stdlib --product hearth-agent \
    -Xswiftc -Osize -Xlinker --no-export-dynamic
mkdir -p "$(dirname "$output")"
strip -o "$output" "$scratch/release/hearth-agent"
stat -c '%s bytes: %n' "$output"
