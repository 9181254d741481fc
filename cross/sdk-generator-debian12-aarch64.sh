#!/usr/bin/env bash
# The full hearth-agent (and hearthctl) for Debian 12 aarch64 boards (Raspberry Pi 4/5 class),
# cross-built with a Swift SDK made by swift-sdk-generator whose sysroot holds the arm64
# libsqlite3-dev and libcurl4-openssl-dev. docs/cross.md, "Full agent for real boards".
#
# NOT RUN TO COMPLETION HERE: the development machines cannot download the Swift 6.3.1 aarch64
# toolchain, the swift:6.3.1-bookworm image or the generator, and have no docker. The commands
# are the generator's documented options; each step checks what it needs and stops with a
# message naming what is missing instead of pretending.
#
#   cross/sdk-generator-debian12-aarch64.sh generate --generator DIR
#       once, on a machine with docker, network and this toolchain: builds the arm64 sysroot
#       image (swift:6.3.1-bookworm + the two -dev packages), runs
#       swift-sdk-generator make-linux-sdk from the checkout DIR, installs the bundle.
#   cross/sdk-generator-debian12-aarch64.sh build [--out DIR] [--scratch DIR]
#       the release binaries (static Swift stdlib, -Osize, --no-export-dynamic, stripped):
#       DIR/hearth-agent, DIR/hearth-fetch, DIR/hearthctl (default out/aarch64-debian12).
#   cross/sdk-generator-debian12-aarch64.sh package [--out DIR] [--scratch DIR]
#       build, then the arm64 hearth-agent .deb (scripts/package.sh --no-aggregator).
set -euo pipefail
cd "$(dirname "$0")/.."

swift_version="6.3.1-RELEASE"           # must equal `swift --version` (no host toolchain in the SDK)
sdk_id="hearth-6.3.1-debian12-aarch64"  # --sdk-name: the ID `swift build --swift-sdk` takes
target="aarch64-unknown-linux-gnu"
base_image="swift:6.3.1-bookworm"       # the official Debian 12 image of this release
sysroot_image="hearth-swift-sysroot:6.3.1-bookworm-arm64"
sdks_dir="${SWIFT_SDKS_DIR:-$HOME/.swiftpm/swift-sdks}"

die() { echo "sdk-generator-debian12-aarch64: $*" >&2; exit 1; }
usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }

check_toolchain() {
    swift --version 2>&1 | grep -q "swift-${swift_version}" \
        || die "this recipe is for Swift ${swift_version}; \`swift --version\` says: $(swift --version 2>&1 | head -n 1)"
}

generate() {
    local generator=""
    while [ $# -gt 0 ]; do
        case "$1" in
            --generator) generator="$2"; shift 2 ;;
            *) die "generate: unknown option $1" ;;
        esac
    done
    check_toolchain
    [ -n "$generator" ] || die "generate: --generator DIR (a checkout of https://github.com/swiftlang/swift-sdk-generator; record its commit in docs/cross.md when you run this)"
    [ -f "$generator/Package.swift" ] && [ -d "$generator/Sources/GeneratorCLI" ] \
        || die "generate: $generator is not a swift-sdk-generator checkout"
    command -v docker >/dev/null || die "generate: docker is required (the generator copies the sysroot out of a container image)"
    docker info >/dev/null 2>&1 || die "generate: docker is installed but not usable by $(id -un)"

    context="$(mktemp -d)"
    trap 'rm -rf "$context"' EXIT
    cat > "$context/Dockerfile" <<EOF
FROM ${base_image}
RUN apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends libsqlite3-dev libcurl4-openssl-dev \\
 && rm -rf /var/lib/apt/lists/*
EOF
    echo "== arm64 sysroot image ${sysroot_image} (${base_image} + libsqlite3-dev libcurl4-openssl-dev)"
    # Running the arm64 image's apt-get on an x86-64 host needs qemu's binfmt handlers
    # (docker run --privileged --rm tonistiigi/binfmt --install arm64): docker says
    # "exec format error" without them.
    docker build --platform linux/arm64 --tag "$sysroot_image" "$context"

    echo "== swift-sdk-generator make-linux-sdk"
    swift run --package-path "$generator" swift-sdk-generator make-linux-sdk \
        --swift-version "$swift_version" \
        --distribution-name debian --distribution-version 12 \
        --target "$target" \
        --with-docker --from-container-image "$sysroot_image" \
        --sdk-name "$sdk_id"

    local bundle="$generator/Bundles/${sdk_id}.artifactbundle"
    [ -d "$bundle" ] || die "generate: the generator finished but $bundle does not exist"
    swift sdk install "$bundle"
    swift sdk list
}

# The installed SDK's sysroot (the directory with usr/lib/aarch64-linux-gnu).
sysroot_of_sdk() {
    swift sdk list 2>/dev/null | grep -qx "$sdk_id" \
        || die "the Swift SDK ${sdk_id} is not installed (\`swift sdk list\`). Make it with \`$0 generate --generator DIR\` on a machine with docker and network access; the development machines cannot download it."
    local sysroot
    sysroot="$(find "$sdks_dir" -path "*${sdk_id}*" -type d -name '*.sdk' -print -quit 2>/dev/null || true)"
    [ -n "$sysroot" ] && [ -d "$sysroot/usr/lib/aarch64-linux-gnu" ] \
        || die "cannot find the aarch64 sysroot of ${sdk_id} under ${sdks_dir} (set SWIFT_SDKS_DIR)"
    for pc in sqlite3 libcurl; do
        [ -f "$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig/$pc.pc" ] \
            || die "the SDK's sysroot has no $pc.pc: it was not generated from ${sysroot_image} (libsqlite3-dev, libcurl4-openssl-dev); run generate again"
    done
    echo "$sysroot"
}

build() {
    local out="out/aarch64-debian12" scratch=".build-aarch64-debian12"
    while [ $# -gt 0 ]; do
        case "$1" in
            --out) out="$2"; shift 2 ;;
            --scratch) scratch="$2"; shift 2 ;;
            *) die "build: unknown option $1" ;;
        esac
    done
    check_toolchain
    local sysroot
    sysroot="$(sysroot_of_sdk)"
    # SwiftPM reads the system-library targets' .pc files itself and, since 6.0, prefixes their
    # paths with PKG_CONFIG_SYSROOT_DIR (swift-package-manager#7409); without these it would
    # take the host's x86-64 sqlite3.pc and libcurl.pc.
    export PKG_CONFIG_SYSROOT_DIR="$sysroot"
    export PKG_CONFIG_PATH="$sysroot/usr/lib/aarch64-linux-gnu/pkgconfig:$sysroot/usr/share/pkgconfig"
    export PKG_CONFIG_LIBDIR="$PKG_CONFIG_PATH"
    local strip_tool
    strip_tool="$(command -v aarch64-linux-gnu-strip || command -v llvm-strip || true)"
    mkdir -p "$out"
    for product in hearth-agent hearth-fetch hearthctl; do
        swift build --swift-sdk "$sdk_id" --static-swift-stdlib -c release \
            --scratch-path "$scratch" --product "$product" \
            -Xswiftc -Osize -Xlinker --no-export-dynamic
        local bin
        bin="$(swift build --swift-sdk "$sdk_id" -c release --scratch-path "$scratch" --show-bin-path)/$product"
        if [ -n "$strip_tool" ]; then
            "$strip_tool" -o "$out/$product" "$bin"
        else
            echo "no aarch64 strip (apt-get install binutils-aarch64-linux-gnu): $product left unstripped" >&2
            cp "$bin" "$out/$product"
        fi
        [ "$(od -An -tu2 -j18 -N2 "$out/$product" | tr -d ' ')" = "183" ] || die "$out/$product is not an aarch64 ELF file"
        stat -c '%s bytes: %n' "$out/$product"
    done
}

command="${1:-}"
[ $# -gt 0 ] && shift
case "$command" in
    generate) generate "$@" ;;
    build) build "$@" ;;
    package)
        out="out/aarch64-debian12"
        args=("$@")
        while [ $# -gt 0 ]; do
            case "$1" in
                --out) out="$2"; shift 2 ;;
                *) shift ;;
            esac
        done
        build "${args[@]}"
        scripts/package.sh --agent "$out/hearth-agent" --fetch "$out/hearth-fetch" --ctl "$out/hearthctl" --no-aggregator --out "$out/packages"
        ;;
    -h|--help|"") usage ;;
    *) die "unknown command $command (generate, build, package; --help)" ;;
esac
