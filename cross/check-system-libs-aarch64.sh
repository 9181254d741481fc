#!/usr/bin/env bash
# Cross-checks the C system-library targets for aarch64: builds cross/system_libs_check.c, which
# calls every shim of Sources/CHearthSQLite and Sources/CHearthCurl, with aarch64-linux-gnu-gcc
# against Debian's arm64 libsqlite3 and libcurl (multiarch: libsqlite3-dev:arm64,
# libcurl4-openssl-dev:arm64, flags from their pkg-config files), runs it under
# qemu-aarch64 -cpu cortex-a53, and builds and runs the same driver natively.
# Usage: cross/check-system-libs-aarch64.sh [--out DIR]   (default .build-cross/system-libs)
# Needs: scripts/install-deps.sh (adds the arm64 architecture and the two -dev packages).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
OUT=.build-cross/system-libs
while (($#)); do
    case "$1" in
    --out) OUT=${2:?--out needs a directory}; shift 2 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "check-system-libs: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

run() {
    printf '+ %s\n' "$*" >&2
    "$@"
}

missing=()
command -v aarch64-linux-gnu-gcc >/dev/null || missing+=("gcc-aarch64-linux-gnu")
command -v qemu-aarch64 >/dev/null || missing+=("qemu-user")
command -v pkg-config >/dev/null || missing+=("pkg-config")
for package in libsqlite3-dev:arm64 libcurl4-openssl-dev:arm64; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ((${#missing[@]})); then
    echo "check-system-libs: missing: ${missing[*]}; run scripts/install-deps.sh" >&2
    exit 2
fi
mkdir -p "$OUT"

# The arm64 .pc files only (never the host's).
arm64_pkg_config() {
    PKG_CONFIG_PATH='' PKG_CONFIG_LIBDIR=/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig pkg-config "$@"
}
read -r -a arm_flags <<<"$(arm64_pkg_config --cflags --libs sqlite3 libcurl)"
read -r -a host_flags <<<"$(pkg-config --cflags --libs sqlite3 libcurl)"
CFLAGS=(-O2 -Wall -Wextra -Werror -I Sources)

echo "== aarch64: build against the arm64 libraries ($(arm64_pkg_config --modversion sqlite3) / $(arm64_pkg_config --modversion libcurl))"
BIN="$OUT/system-libs-check-aarch64"
run aarch64-linux-gnu-gcc "${CFLAGS[@]}" -march=armv8-a cross/system_libs_check.c "${arm_flags[@]}" -o "$BIN"
needed=$(aarch64-linux-gnu-readelf -d "$BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p' | tr '\n' ' ')
echo "$(aarch64-linux-gnu-readelf -h "$BIN" | sed -n 's/^ *Machine: *//p'), needs: $needed"

echo "== aarch64: run under qemu-aarch64 -cpu cortex-a53"
# -L: the cross toolchain's loader and libc; the arm64 libsqlite3/libcurl (and what they need)
# are found in the multiarch directories /usr/lib/aarch64-linux-gnu.
run qemu-aarch64 -L /usr/aarch64-linux-gnu -cpu cortex-a53 "$BIN"

echo "== x86-64: the same driver natively"
run cc "${CFLAGS[@]}" cross/system_libs_check.c "${host_flags[@]}" -o "$OUT/system-libs-check-native"
run "$OUT/system-libs-check-native"
echo "check-system-libs: OK"
