#!/usr/bin/env bash
# Installs the Debian packages Hearth needs to build and test, when any is missing (and always
# under CI, which starts from a clean machine). Product: libsqlite3-dev, libcurl4-openssl-dev.
# Tests only: gcc-aarch64-linux-gnu and qemu-user (the aarch64 checks), and the arm64 builds of
# the two -dev packages (Debian multiarch) that the aarch64 shim check links against.
set -euo pipefail
packages=(libsqlite3-dev libcurl4-openssl-dev pkg-config gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
arm64_packages=(libsqlite3-dev:arm64 libcurl4-openssl-dev:arm64)
missing=()
for p in "${packages[@]}" "${arm64_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ] && [ "${CI:-}" != "true" ]; then
    exit 0
fi
sudo=""
if [ "$(id -u)" -ne 0 ]; then sudo="sudo"; fi
# Only what is missing; under CI with nothing missing, everything (apt-get leaves it as it is).
install=("${missing[@]}")
if [ "${#install[@]}" -eq 0 ]; then install=("${packages[@]}" "${arm64_packages[@]}"); fi
echo "install-deps: installing ${install[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    echo "install-deps: adding the arm64 architecture (dpkg --add-architecture arm64)" >&2
    $sudo dpkg --add-architecture arm64
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${install[@]}" >/dev/null
