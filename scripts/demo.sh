#!/usr/bin/env bash
# The main job on the built-in example: installs what is missing, builds, trains a model and
# prints recommendations. Arguments go to hearth-demo (try --help).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build -c release --product hearth-demo >&2
exec .build/release/hearth-demo "$@"
