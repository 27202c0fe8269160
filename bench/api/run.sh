#!/usr/bin/env bash
# Builds release skiff and skiff-bench-api, then runs the control-plane
# benchmark. Extra arguments go to the benchmark (see --help), e.g.
#   bench/api/run.sh --pods 2000 --skip-etcd
# CARGO_TARGET_DIR is honoured (default: the workspace's target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p skiff -p skiff-bench-api
command -v etcd >/dev/null || echo "note: etcd not found (Debian package etcd-server); add --skip-etcd" >&2
# The benchmark kills its own server and etcd and removes its temp dirs on
# exit, Ctrl-C and SIGTERM.
exec "$target/release/skiff-bench-api" --skiff "$target/release/skiff" "$@"
