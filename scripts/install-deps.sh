#!/usr/bin/env bash
# Installs the Debian packages Hearth needs to build and test, when any is missing (and always
# under CI, which starts from a clean machine). Product: libsqlite3-dev, libcurl4-openssl-dev.
# Tests only: gcc-aarch64-linux-gnu and qemu-user (the aarch64 kernel check).
set -euo pipefail
packages=(libsqlite3-dev libcurl4-openssl-dev pkg-config gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
missing=()
for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ] && [ "${CI:-}" != "true" ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
echo "install-deps: installing ${missing[*]:-${packages[*]}}" >&2
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
