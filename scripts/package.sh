#!/usr/bin/env bash
# Builds the Debian packages for a board (hearth-agent: the agent, its hearth-fetch helper and
# hearthctl) and for the
# server (hearth-aggregator), from binaries you name or from a release build. Every file's
# place is in docs/operations.md ("What the packages install").
#
#   scripts/package.sh --release [--scratch DIR]                  # release build for this machine, then package
#   scripts/package.sh --agent out/aarch64/hearth-agent --ctl out/aarch64/hearthctl --no-aggregator
#   scripts/package.sh --bin-dir .build/debug --allow-toolchain-libraries   # CI's structural check
#
# Options:
#   --bin-dir DIR        take hearth-agent, hearth-fetch, hearthctl and hearth-aggregator from DIR
#   --agent/--fetch/--ctl/--aggregator FILE   one binary each (override --bin-dir)
#   --no-aggregator      build only the hearth-agent package
#   --arch ARCH          Debian architecture (default: read from the agent's ELF header; every
#                        binary must match it)
#   --version VERSION    package version (default 0.1.0+git<commit time>.<commit>)
#   --out DIR            where the .deb files and the trees go (default out/packages)
#   --release            build the binaries first: scripts/build-agent-release.sh for the agent
#                        and hearth-fetch (-Osize, --no-export-dynamic, stripped), hearthctl with the same flags,
#                        hearth-aggregator with swift build -c release --static-swift-stdlib
#                        (stripped)
#   --scratch DIR        SwiftPM scratch path for --release (default .build)
#   --compression TYPE   dpkg-deb -Z: xz (default), gzip, zstd or none (the check uses none:
#                        xz takes minutes on debug binaries)
#   --allow-toolchain-libraries
#                        accept binaries that load the Swift runtime from this machine's
#                        toolchain (debug builds): the package is then only good for the
#                        structural check, never for a board
#
# Prints each package's path and size. Needs dpkg-deb, readelf and od.
set -euo pipefail
cd "$(dirname "$0")/.."
repo="$PWD"

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "package.sh: $*" >&2; exit 1; }

bin_dir=""
agent=""
fetch=""
ctl=""
aggregator=""
with_aggregator=1
arch=""
version=""
out="out/packages"
release=0
scratch=".build"
allow_toolchain=0
compression="xz"
while [ $# -gt 0 ]; do
    case "$1" in
        --bin-dir) bin_dir="$2"; shift 2 ;;
        --agent) agent="$2"; shift 2 ;;
        --fetch) fetch="$2"; shift 2 ;;
        --ctl) ctl="$2"; shift 2 ;;
        --aggregator) aggregator="$2"; shift 2 ;;
        --no-aggregator) with_aggregator=0; shift ;;
        --arch) arch="$2"; shift 2 ;;
        --version) version="$2"; shift 2 ;;
        --out) out="$2"; shift 2 ;;
        --release) release=1; shift ;;
        --scratch) scratch="$2"; shift 2 ;;
        --allow-toolchain-libraries) allow_toolchain=1; shift ;;
        --compression) compression="$2"; shift 2 ;;
        -h|--help) usage; exit 0 ;;
        *) die "unknown option $1 (see --help)" ;;
    esac
done
for tool in dpkg-deb readelf od; do
    command -v "$tool" >/dev/null || die "$tool is missing (apt-get install dpkg binutils coreutils)"
done
mkdir -p "$out"
out="$(cd "$out" && pwd)"

if [ "$release" -eq 1 ]; then
    [ -z "$bin_dir$agent$fetch$ctl$aggregator" ] || die "--release builds its own binaries; do not name any"
    bin_dir="$out/bin"
    mkdir -p "$bin_dir"
    # Also builds hearth-fetch, next to the agent.
    scripts/build-agent-release.sh "$bin_dir/hearth-agent" "$scratch"
    # hearthctl goes onto the board too: the agent's size flags (and so the agent's build cache).
    swift build --scratch-path "$scratch" -c release --static-swift-stdlib --product hearthctl \
        -Xswiftc -Osize -Xlinker --no-export-dynamic
    strip -o "$bin_dir/hearthctl" "$scratch/release/hearthctl"
    if [ "$with_aggregator" -eq 1 ]; then
        swift build --scratch-path "$scratch" -c release --static-swift-stdlib --product hearth-aggregator
        strip -o "$bin_dir/hearth-aggregator" "$scratch/release/hearth-aggregator"
    fi
fi
if [ -n "$bin_dir" ]; then
    agent="${agent:-$bin_dir/hearth-agent}"
    fetch="${fetch:-$bin_dir/hearth-fetch}"
    ctl="${ctl:-$bin_dir/hearthctl}"
    aggregator="${aggregator:-$bin_dir/hearth-aggregator}"
fi
[ -n "$agent" ] && [ -n "$fetch" ] && [ -n "$ctl" ] || die "name the binaries: --bin-dir DIR, or --agent FILE --fetch FILE --ctl FILE (or --release)"
binaries=("$agent" "$fetch" "$ctl")
if [ "$with_aggregator" -eq 1 ]; then
    [ -n "$aggregator" ] || die "name --aggregator FILE, or pass --no-aggregator"
    binaries+=("$aggregator")
fi
for binary in "${binaries[@]}"; do
    [ -f "$binary" ] && [ -x "$binary" ] || die "not an executable file: $binary"
done

# The Debian architecture of an ELF executable, from e_machine (offset 18).
elf_arch() {
    [ "$(od -An -tx1 -N4 "$1" | tr -d ' ')" = "7f454c46" ] || die "not an ELF file: $1"
    case "$(od -An -tu2 -j18 -N2 "$1" | tr -d ' ')" in
        62) echo amd64 ;;
        183) echo arm64 ;;
        *) die "unsupported ELF machine in $1 (amd64 and arm64 only)" ;;
    esac
}
binary_arch="$(elf_arch "$agent")"
arch="${arch:-$binary_arch}"
for binary in "${binaries[@]}"; do
    [ "$(elf_arch "$binary")" = "$arch" ] || die "$binary is $(elf_arch "$binary"), the package is $arch"
done

if [ -z "$version" ]; then
    if git -C "$repo" rev-parse --verify -q HEAD >/dev/null; then
        version="0.1.0+git$(git -C "$repo" log -1 --format=%cd --date=format:%Y%m%d%H%M%S).$(git -C "$repo" rev-parse --short=10 HEAD)"
    else
        version="0.1.0"
    fi
fi

# Debian 12 package names of the shared libraries the binaries load (readelf NEEDED), with the
# newest glibc symbol version they use. Anything unknown stops the build: a package must never
# depend on a library nobody installs.
depends_of() {
    local needed=() glibc="" lib package packages=()
    mapfile -t needed < <(readelf -d -W "$@" | sed -n 's/.*(NEEDED).*\[\(.*\)\].*/\1/p' | sort -u)
    glibc="$(readelf -V -W "$@" | grep -o 'GLIBC_[0-9][0-9.]*' | sed 's/GLIBC_//' | sort -V | tail -n 1)"
    # Packed relative relocations (lld -z pack-relative-relocs) need glibc 2.36: the binary then
    # carries the version GLIBC_ABI_DT_RELR instead of a numbered one.
    if readelf -V -W "$@" | grep -q 'GLIBC_ABI_DT_RELR'; then
        glibc="$(printf '%s\n' "${glibc:-0}" 2.36 | sort -V | tail -n 1)"
    fi
    for lib in "${needed[@]}"; do
        case "$lib" in
            libc.so.6|libm.so.6|libpthread.so.0|libdl.so.2|librt.so.1|libutil.so.1|ld-linux-*.so.*) package="libc6${glibc:+ (>= $glibc)}" ;;
            libstdc++.so.6) package="libstdc++6" ;;
            libgcc_s.so.1) package="libgcc-s1" ;;
            libsqlite3.so.0) package="libsqlite3-0" ;;
            libcurl.so.4) package="libcurl4" ;;
            libz.so.1) package="zlib1g" ;;
            libswift*.so|libFoundation*.so|libdispatch.so|libBlocksRuntime.so|lib_Foundation*.so|lib_Testing*.so)
                [ "$allow_toolchain" -eq 1 ] || die "a binary loads $lib from the Swift toolchain (a debug build?): build with --static-swift-stdlib (--release), or pass --allow-toolchain-libraries for a structural check"
                continue ;;
            *) die "no Debian package known for $lib (needed by $*): add it to depends_of in $0" ;;
        esac
        packages+=("$package")
    done
    printf '%s\n' "${packages[@]}" | sort -u | paste -sd, - | sed 's/,/, /g'
}

# Writes DEBIAN/ (control with the long description from stdin, conffiles, the maintainer
# scripts from packaging/NAME/) into the tree the caller filled ($tree) and builds the .deb.
# $1 = package name, $2 = summary, $3 = Depends, $4 = the conffile.
build_deb() {
    local name="$1" summary="$2" depends="$3" conffile="$4"
    local installed_size
    mkdir -p "$tree/DEBIAN"
    installed_size="$(du -sk --exclude=DEBIAN "$tree" | cut -f1)"
    cat > "$tree/DEBIAN/control" <<EOF
Package: $name
Version: $version
Architecture: $arch
Maintainer: Hearth maintainers <hearth@example.invalid>
Installed-Size: $installed_size
Depends: $depends
Section: net
Priority: optional
Description: $summary
EOF
    cat >> "$tree/DEBIAN/control"
    echo "$conffile" > "$tree/DEBIAN/conffiles"
    install -m 0755 "packaging/$name/postinst" "packaging/$name/prerm" "packaging/$name/postrm" "$tree/DEBIAN/"
    local deb="$out/${name}_${version}_${arch}.deb"
    dpkg-deb --root-owner-group -Z"$compression" --build "$tree" "$deb" >/dev/null
    stat -c '%s bytes: %n' "$deb"
}

# hearth-agent: the board's package.
tree="$out/tree/hearth-agent"
rm -rf "$tree"
install -D -m 0755 "$agent" "$tree/usr/bin/hearth-agent"
# The agent's HTTP helper (libcurl lives there, not in the agent): found from the agent as
# ../lib/hearth/hearth-fetch (docs/agent.md, "Processes").
install -D -m 0755 "$fetch" "$tree/usr/lib/hearth/hearth-fetch"
install -D -m 0755 "$ctl" "$tree/usr/bin/hearthctl"
install -D -m 0644 systemd/hearth-agent.service "$tree/usr/lib/systemd/system/hearth-agent.service"
install -D -m 0644 systemd/hearth-agent.socket "$tree/usr/lib/systemd/system/hearth-agent.socket"
install -D -m 0644 packaging/hearth-agent/sysusers.conf "$tree/usr/lib/sysusers.d/hearth-agent.conf"
install -D -m 0644 packaging/hearth-agent/tmpfiles.conf "$tree/usr/lib/tmpfiles.d/hearth-agent.conf"
install -D -m 0640 packaging/hearth-agent/agent.toml "$tree/etc/hearth/agent.toml"
chmod 0750 "$tree/etc/hearth"
install -D -m 0644 docs/operations.md "$tree/usr/share/doc/hearth/operations.md"
install -D -m 0644 docs/agent.md "$tree/usr/share/doc/hearth/agent.md"
install -D -m 0644 docs/local-api.md "$tree/usr/share/doc/hearth/local-api.md"
depends="$(depends_of "$agent" "$fetch" "$ctl")"
build_deb hearth-agent "Hearth on-device recommendation agent" \
    "${depends:+$depends, }systemd | systemd-sysusers" /etc/hearth/agent.toml <<'EOF'
 Private, on-device product recommendations: the agent serves a signed int8 model
 over a local socket, learns from the shoppers' events on the device and uploads
 only differentially private updates to a Hearth aggregator. Includes hearthctl.
 The units are installed but not enabled: enrol the device first (operations.md).
EOF

# hearth-aggregator: the server's package.
if [ "$with_aggregator" -eq 1 ]; then
    tree="$out/tree/hearth-aggregator"
    rm -rf "$tree"
    install -D -m 0755 "$aggregator" "$tree/usr/bin/hearth-aggregator"
    install -D -m 0644 systemd/hearth-aggregator.service "$tree/usr/lib/systemd/system/hearth-aggregator.service"
    install -D -m 0644 packaging/hearth-aggregator/sysusers.conf "$tree/usr/lib/sysusers.d/hearth-aggregator.conf"
    install -D -m 0640 packaging/hearth-aggregator/aggregator.toml "$tree/etc/hearth-aggregator/aggregator.toml"
    chmod 0750 "$tree/etc/hearth-aggregator"
    install -D -m 0644 docs/aggregator.md "$tree/usr/share/doc/hearth-aggregator/aggregator.md"
    install -D -m 0644 docs/operations.md "$tree/usr/share/doc/hearth-aggregator/operations.md"
    depends="$(depends_of "$aggregator")"
    build_deb hearth-aggregator "Hearth federated aggregator" \
        "${depends:+$depends, }systemd | systemd-sysusers" /etc/hearth-aggregator/aggregator.toml <<'EOF'
 Merges the devices' differentially private updates (buffered federated
 averaging), publishes Ed25519-signed model versions and keeps the central
 privacy ledger. HTTPS API, Prometheus metrics.
EOF
fi
