#!/usr/bin/env bash
# Builds release skiff and skiff-bench-sts, then runs the StatefulSet and
# volume provisioning benchmark (root: runc, CNI, nftables) inside a private
# network namespace, so the host's links, routes and nftables are never
# touched. Extra arguments go to the benchmark (see --help), e.g.
#   sudo bench/sts/run.sh
#   sudo bench/sts/run.sh --runs 5 --claims 20
# Run from the repository root. CARGO_TARGET_DIR is honoured (default: the
# workspace's target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p skiff -p skiff-bench-sts --bins
# The benchmark deletes its StatefulSets, pods, claims and volumes (waiting for
# the agent to remove the volumes' directories), stops its server, removes its
# temp dirs and any mount left under them on exit, Ctrl-C and SIGTERM; the
# namespace goes with its last process.
exec unshare --net -- sh -c 'ip link set lo up && exec "$@"' sh \
    "$target/release/skiff-bench-sts" --skiff "$target/release/skiff" "$@"
