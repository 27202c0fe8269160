#!/usr/bin/env bash
# Builds release skiff and skiff-bench-autoscale, then runs the metrics and
# autoscaling benchmark (root: runc, CNI, nftables) inside a private network
# namespace, so the host's links, routes and nftables are never touched. The
# namespace gets loopback, which also carries the node's address (10.99.0.1),
# which the separate agent advertises and serves its kubelet endpoint on. Extra arguments go to the benchmark (see --help), e.g.
#   sudo bench/autoscale/run.sh
#   sudo bench/autoscale/run.sh --runs 5 --scrapes 500 --pods 100
# Run from the repository root. CARGO_TARGET_DIR is honoured (default: the
# workspace's target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p skiff -p skiff-bench-autoscale --bins
# The benchmark deletes its workloads, stops its agent and server, removes its
# temp dirs and any mount left under them on exit, Ctrl-C and SIGTERM; the
# namespace goes with its last process.
exec unshare --net -- sh -c 'ip link set lo up &&
    ip addr add 10.99.0.1/32 dev lo && exec "$@"' sh \
    "$target/release/skiff-bench-autoscale" --skiff "$target/release/skiff" \
    --node-ip 10.99.0.1 "$@"
