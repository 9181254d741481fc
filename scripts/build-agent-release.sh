#!/usr/bin/env bash
# The release hearth-agent as shipped (docs/benchmarks.md, "Agent footprint"): static Swift
# stdlib, optimised for size, without the dynamic symbol table the Swift driver exports for
# static-stdlib executables (-export-dynamic: ~21,000 symbols, 1.9 MB), linked with lld and
# DT_RELR, stripped. Its HTTP helper hearth-fetch (libcurl lives there, not in the agent:
# docs/agent.md, "Processes") is built with the same flags and written next to OUTPUT.
#
#   scripts/build-agent-release.sh [OUTPUT] [SCRATCH]   (default out/hearth-agent, .build)
set -euo pipefail
cd "$(dirname "$0")/.."
output="${1:-out/hearth-agent}"
scratch="${2:-.build}"
# lld with packed relative relocations (DT_RELR): the dynamic loader touches far fewer pages to
# relocate the PIE at start-up (idle RSS 24.8 -> 23.9 MB, binary 23.1 -> 21.6 MB, measured in
# docs/benchmarks.md). DT_RELR needs glibc 2.36 or later on the board (Debian 12 has 2.36).
flags=(-c release --static-swift-stdlib -Xswiftc -Osize -Xswiftc -use-ld=lld -Xlinker --no-export-dynamic
       -Xlinker -z -Xlinker pack-relative-relocs)
swift build --scratch-path "$scratch" "${flags[@]}" --product hearth-agent
swift build --scratch-path "$scratch" "${flags[@]}" --product hearth-fetch
mkdir -p "$(dirname "$output")"
strip -o "$output" "$scratch/release/hearth-agent"
strip -o "$(dirname "$output")/hearth-fetch" "$scratch/release/hearth-fetch"
stat -c '%s bytes: %n' "$output" "$(dirname "$output")/hearth-fetch"
