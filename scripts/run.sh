#!/usr/bin/env bash
# The main job, for now: the deterministic simulator over a range of seeds
# (R=3 replicas x N=2 groups, every fault). Pass your own arguments to
# override, e.g. ./scripts/run.sh --seed 7 --faults network
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --profile sim --bin toasty-sim
if [ $# -eq 0 ]; then
  set -- --seeds 1..21
fi
exec ./target/sim/toasty-sim "$@"
