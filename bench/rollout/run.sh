#!/usr/bin/env bash
# Builds release skiff and skiff-bench-rollout, then runs the rollout
# benchmark. Extra arguments go to the benchmark (see --help), e.g.
#   bench/rollout/run.sh                          # 1,000 replicas on 100 hollow nodes, 3 runs
#   bench/rollout/run.sh --replicas 5000 --nodes 500
#   bench/rollout/run.sh --runc-scale             # 10→100→10 on real runc (root)
# CARGO_TARGET_DIR is honoured (default: the workspace's target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p skiff -p skiff-bench-rollout
# The benchmark kills its own server and sim and removes its temp dirs on
# exit, Ctrl-C and SIGTERM.
exec "$target/release/skiff-bench-rollout" --skiff "$target/release/skiff" "$@"
