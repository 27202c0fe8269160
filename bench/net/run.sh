#!/usr/bin/env bash
# Builds release skiff, skiff-bench-net and the dnsperf example, then runs the
# network benchmark (root: runc, CNI, nftables) inside a private network
# namespace, so the host's links, routes and nftables are never touched.
# Extra arguments go to the benchmark (see --help), e.g.
#   sudo bench/net/run.sh
#   sudo bench/net/run.sh --runs 5 --requests 50000 --concurrency 32 --flips 20
# Run from the repository root. CARGO_TARGET_DIR is honoured (default: the
# workspace's target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p skiff -p skiff-bench-net -p skiff-net --bins --example dnsperf
# The benchmark deletes its pods, stops its server, removes its temp dirs and
# any mount left under them on exit, Ctrl-C and SIGTERM; the namespace goes
# with its last process.
exec unshare --net -- sh -c 'ip link set lo up && exec "$@"' sh \
    "$target/release/skiff-bench-net" --skiff "$target/release/skiff" \
    --dnsperf "$target/release/examples/dnsperf" "$@"
