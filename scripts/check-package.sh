#!/usr/bin/env bash
# The packages' structural check (scripts/test.sh runs it): builds hearth-agent and
# hearth-aggregator .debs from already built binaries (default: the debug binaries `swift build
# --build-tests` leaves in .build/debug; a debug package is only good for this check), then
#   - dpkg-deb --info / --contents: fields, Depends, conffiles, every expected path and mode;
#   - installs both into a temporary root with dpkg -x and compares the binaries;
#   - runs the installed hearth-agent --check-config on the installed default agent.toml (as
#     shipped, and with the enrolment keys set), and the installed hearth-aggregator on its
#     default aggregator.toml (state redirected into the temporary root);
#   - systemd-sysusers --root on the installed sysusers.d files (group hearth, user
#     hearth-aggregator), then (as root) systemd-tmpfiles --root: /run/hearth root:hearth 0750;
#   - systemd-analyze verify on the installed units, ExecStart pointing into the temporary root
#     (any output fails);
#   - sh -n on the maintainer scripts.
#
#   scripts/check-package.sh [BIN_DIR]      (default .build/debug)
set -euo pipefail
cd "$(dirname "$0")/.."
bin_dir="${1:-.build/debug}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
fail() { echo "check-package: $*" >&2; exit 1; }

scripts/package.sh --bin-dir "$bin_dir" --allow-toolchain-libraries --compression none --out "$work/out" --version 0.0.0~check
arch="$(dpkg-deb --field "$work"/out/hearth-agent_*.deb Architecture)"
agent_deb="$work/out/hearth-agent_0.0.0~check_${arch}.deb"
aggregator_deb="$work/out/hearth-aggregator_0.0.0~check_${arch}.deb"
[ -f "$agent_deb" ] && [ -f "$aggregator_deb" ] || fail "the packages were not built"

echo "-- dpkg-deb --info hearth-agent"
dpkg-deb --info "$agent_deb" | sed -n '/Package:/,$p'
depends="$(dpkg-deb --field "$agent_deb" Depends)"
for package in libsqlite3-0 libcurl4 libc6; do
    grep -Eq "(^|, )$package( |,|$)" <<<"$depends" || fail "hearth-agent Depends lacks $package: $depends"
done
grep -q libsqlite3-0 <<<"$(dpkg-deb --field "$aggregator_deb" Depends)" || fail "hearth-aggregator Depends lacks libsqlite3-0"
[ "$(dpkg-deb --ctrl-tarfile "$agent_deb" | tar -xOf - ./conffiles)" = "/etc/hearth/agent.toml" ] || fail "hearth-agent conffiles"
[ "$(dpkg-deb --ctrl-tarfile "$aggregator_deb" | tar -xOf - ./conffiles)" = "/etc/hearth-aggregator/aggregator.toml" ] || fail "hearth-aggregator conffiles"

echo "-- dpkg-deb --contents hearth-agent"
dpkg-deb --contents "$agent_deb" | awk '{ print $1, $2, $NF }' | tee "$work/agent.contents"
dpkg-deb --contents "$aggregator_deb" | awk '{ print $1, $2, $NF }' > "$work/aggregator.contents"
expect() { # listing, mode, path
    grep -qx -- "$2 root/root ./$3" "$1" || fail "$(basename "$1" .contents): expected $2 root/root ./$3"
}
expect "$work/agent.contents" -rwxr-xr-x usr/bin/hearth-agent
expect "$work/agent.contents" -rwxr-xr-x usr/bin/hearthctl
expect "$work/agent.contents" -rwxr-xr-x usr/lib/hearth/hearth-fetch
expect "$work/agent.contents" -rw-r--r-- usr/lib/systemd/system/hearth-agent.service
expect "$work/agent.contents" -rw-r--r-- usr/lib/systemd/system/hearth-agent.socket
expect "$work/agent.contents" -rw-r--r-- usr/lib/sysusers.d/hearth-agent.conf
expect "$work/agent.contents" -rw-r--r-- usr/lib/tmpfiles.d/hearth-agent.conf
expect "$work/agent.contents" drwxr-x--- etc/hearth/
expect "$work/agent.contents" -rw-r----- etc/hearth/agent.toml
expect "$work/agent.contents" -rw-r--r-- usr/share/doc/hearth/operations.md
expect "$work/aggregator.contents" -rwxr-xr-x usr/bin/hearth-aggregator
expect "$work/aggregator.contents" -rw-r--r-- usr/lib/systemd/system/hearth-aggregator.service
expect "$work/aggregator.contents" -rw-r--r-- usr/lib/sysusers.d/hearth-aggregator.conf
expect "$work/aggregator.contents" drwxr-x--- etc/hearth-aggregator/
expect "$work/aggregator.contents" -rw-r----- etc/hearth-aggregator/aggregator.toml

echo "-- installed into a temporary root (dpkg -x)"
root="$work/root"
dpkg -x "$agent_deb" "$root"
dpkg -x "$aggregator_deb" "$root"
cmp "$bin_dir/hearth-agent" "$root/usr/bin/hearth-agent"
cmp "$bin_dir/hearthctl" "$root/usr/bin/hearthctl"
cmp "$bin_dir/hearth-fetch" "$root/usr/lib/hearth/hearth-fetch"
# The helper refuses anything that is not a request frame (exit 2) without touching the network.
if printf 'GET / HTTP/1.1\r\n\r\n' | "$root/usr/lib/hearth/hearth-fetch" 2>/dev/null; then
    fail "the installed hearth-fetch accepted a malformed request frame"
fi
cmp "$bin_dir/hearth-aggregator" "$root/usr/bin/hearth-aggregator"
"$root/usr/bin/hearth-agent" --check-config --config "$root/etc/hearth/agent.toml"
"$root/usr/bin/hearth-agent" --check-config --config "$root/etc/hearth/agent.toml" \
    --set upload.aggregator_url='"https://aggregator.example:8443"' \
    --set upload.model_public_key='"AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="'
# The enrolment keys are not checked for content by --check-config (a missing credential file
# only stops uploads, with a warning); a typo in a key name is:
if "$root/usr/bin/hearth-agent" --check-config --config "$root/etc/hearth/agent.toml" --set upload.aggregator_ulr='"x"' 2>/dev/null; then
    fail "hearth-agent --check-config accepted an unknown key"
fi
mkdir -p "$work/aggregator-state"
"$root/usr/bin/hearth-aggregator" devices list --config "$root/etc/hearth-aggregator/aggregator.toml" \
    --set server.state_directory="\"$work/aggregator-state\"" \
    --set server.signing_key="\"$work/aggregator-state/signing.key\""
echo "hearth-aggregator: default aggregator.toml accepted"

if command -v systemd-sysusers >/dev/null; then
    systemd-sysusers --root="$root"
    grep -q '^hearth:' "$root/etc/group" || fail "sysusers.d did not create the group hearth"
    grep -q '^hearth-aggregator:' "$root/etc/passwd" || fail "sysusers.d did not create the user hearth-aggregator"
    echo "systemd-sysusers: group hearth, user hearth-aggregator"
    if [ "$(id -u)" -eq 0 ] && command -v systemd-tmpfiles >/dev/null; then
        systemd-tmpfiles --root="$root" --create hearth-agent.conf
        gid="$(sed -n 's/^hearth:x:\([0-9]*\):.*/\1/p' "$root/etc/group")"
        [ "$(stat -c '%a %u %g' "$root/run/hearth")" = "750 0 $gid" ] || fail "tmpfiles.d: /run/hearth is $(stat -c '%a %u %g' "$root/run/hearth"), expected 750 0 $gid"
        echo "systemd-tmpfiles: /run/hearth 0750 root:hearth"
    fi
else
    echo "systemd-sysusers not installed: skipped"
fi

for script in postinst prerm postrm; do
    for deb in "$agent_deb" "$aggregator_deb"; do
        dpkg-deb --ctrl-tarfile "$deb" | tar -xOf - "./$script" > "$work/$script"
        sh -n "$work/$script" || fail "$script of $(basename "$deb") does not parse"
    done
done

echo "-- systemd-analyze verify on the installed units (any output fails)"
if command -v systemd-analyze >/dev/null; then
    units="$root/usr/lib/systemd/system"
    sed -i "s|^ExecStart=/usr/bin/|ExecStart=$root/usr/bin/|" "$units/hearth-agent.service" "$units/hearth-aggregator.service"
    grep -q "^ExecStart=$root/usr/bin/hearth-agent " "$units/hearth-agent.service" || fail "ExecStart not redirected"
    grep -q "^ExecStart=$root/usr/bin/hearth-aggregator " "$units/hearth-aggregator.service" || fail "ExecStart not redirected"
    verify="$(systemd-analyze verify "$units/hearth-agent.service" "$units/hearth-agent.socket" "$units/hearth-aggregator.service" 2>&1)" \
        || { echo "$verify"; exit 1; }
    if [ -n "$verify" ]; then echo "$verify"; exit 1; fi
    echo "clean"
else
    echo "systemd-analyze not installed: skipped"
fi
