#!/usr/bin/env bash
# The main job: installs what is missing, builds, then runs the federation end to end on
# loopback: one hearth-aggregator and 16 hearth-agent kiosks as real processes, fed from
# MovieLens in ../shared/datasets when it is there (else the built-in example shop), printing
# HR@10 after each published model version and the epsilon spent.
# Arguments go to `hearth-demo federated` (try --help); `scripts/demo.sh central ...` trains the
# same model centrally instead.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
swift build --product hearth-demo >&2
swift build --product hearth-agent >&2
swift build --product hearth-fetch >&2   # the agent runs its aggregator exchanges in it
swift build --product hearth-aggregator >&2
demo=.build/debug/hearth-demo
movielens="${HEARTH_DATASETS:-../shared/datasets}/movielens-small-dslabs/ratings.csv"
if [ "$#" -eq 0 ] && [ -r "$movielens" ]; then
    exec "$demo" federated --dataset "$movielens"
fi
exec "$demo" "$@"
