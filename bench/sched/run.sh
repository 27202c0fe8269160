#!/usr/bin/env bash
# Builds release skiff and skiff-bench-sched, then runs the scheduling
# benchmark with hollow nodes. Extra arguments go to the benchmark (see
# --help), e.g.
#   bench/sched/run.sh --nodes 1000 --pods 10000 --runs 3
#   bench/sched/run.sh --nodes 5000 --pods 50000
#   bench/sched/run.sh --nodes 10000 --pods 300000 --timeout 3600
# CARGO_TARGET_DIR is honoured (default: the workspace's target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p skiff -p skiff-bench-sched
# The benchmark kills its own server and sim and removes its temp dirs on
# exit, Ctrl-C and SIGTERM.
exec "$target/release/skiff-bench-sched" --skiff "$target/release/skiff" "$@"
