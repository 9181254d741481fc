#!/usr/bin/env bash
# The full hearth-agent (and hearthctl) as fully static aarch64 executables with the Swift Static
# Linux SDK (musl). docs/cross.md, "Full agent for real boards", variant (b).
#
# NOT RUN TO COMPLETION HERE: the development machines cannot download the SDK bundle or the
# SQLite sources. The steps check what they need and stop with a message naming what is missing.
# The build itself is also known NOT to compile yet: 24 source files import Glibc without a Musl
# branch (docs/cross.md lists the source changes musl needs). `build` says so and stops unless
# HEARTH_MUSL_SOURCES_READY=1.
#
# A static musl executable cannot link Debian's glibc libsqlite3.so / libcurl.so, so:
#   - SQLite: this script builds the amalgamation for aarch64-swift-linux-musl (`deps`);
#   - libcurl: the SDK's own static libcurl.a (built for Foundation, TLS by BoringSSL's libssl.a
#     and libcrypto.a, zlib's libz.a) in its musl sysroot is used;
#   - the system-library targets CHearthSQLite (pkgConfig sqlite3) and CHearthCurl (pkgConfig
#     libcurl) then get their flags from .pc files this script writes, because the SDK's own
#     .pc files (if present) carry the paths of the machine that built the SDK.
#
#   cross/static-linux-sdk.sh install                  # swift sdk install <url> --checksum <sha256>
#   cross/static-linux-sdk.sh deps --sqlite-zip FILE   # SQLite for musl + the two .pc files
#   cross/static-linux-sdk.sh build [--out DIR]        # out/aarch64-musl/{hearth-agent,hearth-fetch,hearthctl}
#
# Checksums to fill in (this script refuses to use a placeholder):
#   STATIC_SDK_CHECKSUM   the sha256 swift.org publishes next to the Static Linux SDK 6.3.1 download
#   SQLITE_ZIP_SHA256     sha256 of sqlite-amalgamation-3400100.zip (sqlite.org publishes SHA3-256:
#                         check that, then record the sha256 here)
set -euo pipefail
cd "$(dirname "$0")/.."

swift_version="6.3.1-RELEASE"
sdk_id="swift-6.3.1-RELEASE_static-linux-0.1.0"
sdk_url="https://download.swift.org/swift-6.3.1-release/static-sdk/swift-6.3.1-RELEASE/${sdk_id}.artifactbundle.tar.gz"
sdk_checksum="${STATIC_SDK_CHECKSUM:-TO-FILL-IN}"
triple="aarch64-swift-linux-musl"
# SQLite 3.40.1: the version Debian 12's libsqlite3-0 carries (3.40.1-2), the one the store is tested with.
sqlite_url="https://www.sqlite.org/2022/sqlite-amalgamation-3400100.zip"
sqlite_sha256="${SQLITE_ZIP_SHA256:-TO-FILL-IN}"
deps_dir="${HEARTH_MUSL_DEPS:-.build-musl-deps/aarch64}"
sdks_dir="${SWIFT_SDKS_DIR:-$HOME/.swiftpm/swift-sdks}"

die() { echo "static-linux-sdk: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

check_toolchain() {
    swift --version 2>&1 | grep -q "swift-${swift_version}" \
        || die "the Static Linux SDK ${sdk_id} needs exactly Swift ${swift_version}; \`swift --version\` says: $(swift --version 2>&1 | head -n 1)"
}

filled() { # name, value
    case "$2" in
        ""|TO-FILL-IN) die "$1 is not filled in: set it (environment or the top of $0) to the published value" ;;
        *[!0-9a-f]*) die "$1 must be 64 lowercase hex digits, got '$2'" ;;
    esac
    [ "${#2}" -eq 64 ] || die "$1 must be 64 hex digits, got ${#2}"
}

# The SDK's aarch64 musl sysroot (swift-sdk.json: sdkRootPath musl-<version>.sdk/aarch64).
musl_sysroot() {
    swift sdk list 2>/dev/null | grep -qx "$sdk_id" \
        || die "the Swift SDK ${sdk_id} is not installed: run \`$0 install\` on a machine with network access (the development machines cannot download it)"
    local sdk
    sdk="$(find "$sdks_dir" -path "*${sdk_id}*" -type d -name 'musl-*.sdk' -print -quit 2>/dev/null || true)"
    [ -n "$sdk" ] && [ -d "$sdk/aarch64/usr/lib" ] || die "cannot find musl-*.sdk/aarch64 of ${sdk_id} under ${sdks_dir} (set SWIFT_SDKS_DIR)"
    echo "$sdk/aarch64"
}

install_sdk() {
    check_toolchain
    filled STATIC_SDK_CHECKSUM "$sdk_checksum"
    swift sdk install "$sdk_url" --checksum "$sdk_checksum"
    swift sdk list
}

deps() {
    local zip=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --sqlite-zip) zip="$2"; shift 2 ;;
            *) die "deps: unknown option $1" ;;
        esac
    done
    check_toolchain
    [ -n "$zip" ] || die "deps: --sqlite-zip FILE (download ${sqlite_url})"
    [ -f "$zip" ] || die "deps: no such file $zip"
    filled SQLITE_ZIP_SHA256 "$sqlite_sha256"
    echo "${sqlite_sha256}  ${zip}" | sha256sum --check --quiet - || die "deps: $zip does not match SQLITE_ZIP_SHA256"
    local sysroot
    sysroot="$(musl_sysroot)"
    for lib in libcurl.a libssl.a libcrypto.a libz.a; do
        [ -f "$sysroot/usr/lib/$lib" ] || die "deps: the SDK's musl sysroot has no usr/lib/$lib; this SDK does not ship the libcurl this recipe relies on: build curl and a TLS library for musl yourself (docs/cross.md)"
    done
    [ -f "$sysroot/usr/include/curl/curl.h" ] || die "deps: the SDK's musl sysroot has no curl headers"

    local toolchain_bin work prefix
    toolchain_bin="$(dirname "$(command -v swift)")"
    work="$(mktemp -d)"
    trap 'rm -rf "$work"' EXIT
    unzip -q "$zip" -d "$work"
    mkdir -p "$deps_dir/include" "$deps_dir/lib/pkgconfig"
    prefix="$(cd "$deps_dir" && pwd)"
    # The toolchain's clang picks up bin/aarch64-swift-linux-musl-clang.cfg for this target.
    "$toolchain_bin/clang" --target="$triple" --sysroot="$sysroot" -O2 -fPIC \
        -DSQLITE_THREADSAFE=1 -DSQLITE_OMIT_LOAD_EXTENSION \
        -c "$work"/sqlite-amalgamation-*/sqlite3.c -o "$work/sqlite3.o"
    "$toolchain_bin/llvm-ar" rcs "$prefix/lib/libsqlite3.a" "$work/sqlite3.o"
    cp "$work"/sqlite-amalgamation-*/sqlite3.h "$prefix/include/"
    cat > "$prefix/lib/pkgconfig/sqlite3.pc" <<EOF
prefix=$prefix
Name: SQLite (amalgamation 3.40.1, aarch64 musl)
Description: SQL database engine
Version: 3.40.1
Libs: -L\${prefix}/lib -lsqlite3
Cflags: -I\${prefix}/include
EOF
    # Libs lists what the static libcurl.a itself needs: SwiftPM reads Libs, not Libs.private.
    cat > "$prefix/lib/pkgconfig/libcurl.pc" <<EOF
sysroot=$sysroot
Name: libcurl (the Static Linux SDK's, BoringSSL)
Description: the SDK's static libcurl
Version: 0
Libs: -L\${sysroot}/usr/lib -lcurl -lssl -lcrypto -lz
Cflags: -I\${sysroot}/usr/include
EOF
    ls -l "$prefix/lib/libsqlite3.a" "$prefix/lib/pkgconfig"
}

build() {
    local out="out/aarch64-musl" scratch=".build-aarch64-musl"
    while [ $# -gt 0 ]; do
        case "$1" in
            --out) out="$2"; shift 2 ;;
            --scratch) scratch="$2"; shift 2 ;;
            *) die "build: unknown option $1" ;;
        esac
    done
    check_toolchain
    musl_sysroot >/dev/null
    [ -f "$deps_dir/lib/libsqlite3.a" ] && [ -f "$deps_dir/lib/pkgconfig/libcurl.pc" ] \
        || die "build: run \`$0 deps --sqlite-zip FILE\` first (no $deps_dir/lib/libsqlite3.a)"
    if [ "${HEARTH_MUSL_SOURCES_READY:-0}" != "1" ]; then
        die "build: the sources do not compile for musl yet (Glibc imports without a Musl branch, glibc-only spellings; docs/cross.md). Set HEARTH_MUSL_SOURCES_READY=1 once they do."
    fi
    local prefix
    prefix="$(cd "$deps_dir" && pwd)"
    export PKG_CONFIG_PATH="$prefix/lib/pkgconfig"
    export PKG_CONFIG_LIBDIR="$PKG_CONFIG_PATH"
    unset PKG_CONFIG_SYSROOT_DIR
    mkdir -p "$out"
    for product in hearth-agent hearth-fetch hearthctl; do
        # The SDK's toolset already passes -static-executable -static-stdlib.
        swift build --swift-sdk "$triple" -c release --scratch-path "$scratch" --product "$product" \
            -Xswiftc -Osize
        local bin
        bin="$(swift build --swift-sdk "$triple" -c release --scratch-path "$scratch" --show-bin-path)/$product"
        "$(dirname "$(command -v swift)")/llvm-objcopy" --strip-all "$bin" "$out/$product"
        [ "$(od -An -tu2 -j18 -N2 "$out/$product" | tr -d ' ')" = "183" ] || die "$out/$product is not an aarch64 ELF file"
        stat -c '%s bytes: %n' "$out/$product"
    done
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
    install) install_sdk "$@" ;;
    deps) deps "$@" ;;
    build) build "$@" ;;
    -h|--help|"") usage ;;
    *) die "unknown command $command (install, deps, build; --help)" ;;
esac
