#!/usr/bin/env bash
# Compiles the pure core (HearthCore) as Embedded Swift for aarch64-none-none-elf, the way a
# later cross build links it into an aarch64 Linux binary. Fails on any construct Embedded Swift
# rejects (untyped throws, existentials, key paths, Foundation, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
sysroot_include=/usr/aarch64-linux-gnu/include
if [ ! -d "$sysroot_include" ]; then
    echo "check-embedded-core: $sysroot_include missing; install libc6-dev-arm64-cross" >&2
    exit 1
fi
modules=(HearthCore)
if [ -d Sources/HearthPrivacy ]; then modules+=(HearthPrivacy); fi
for module in "${modules[@]}"; do
    set -x
    swiftc -enable-experimental-feature Embedded -wmo -Osize \
        -target aarch64-none-none-elf -parse-as-library -module-name "$module" -package-name Hearth \
        -I Sources/CHearthKernels/include -I Sources/CHearthMath/include -I "$out" \
        -Xcc -D__linux__ -Xcc -D__unix__ -Xcc -D__gnu_linux__ -Xcc -I"$sysroot_include" \
        -emit-module -emit-module-path "$out/$module.swiftmodule" \
        -c Sources/"$module"/*.swift -o "$out/$module.o"
    { set +x; } 2>/dev/null
    echo "check-embedded-core: $module -> $(stat -c %s "$out/$module.o") bytes of aarch64 object code"
done
