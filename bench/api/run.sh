#!/usr/bin/env bash
# Builds release skiff and skiff-bench-api, then runs the control-plane
# benchmark: skiff on SQLite, then a 1-member and a 3-member local etcd
# (their raw write floor, then skiff on each). Extra arguments go to the
# benchmark (see --help), e.g.
#   bench/api/run.sh --pods 2000 --skip-etcd
#   bench/api/run.sh --etcd-members 3 --disable-scheduler
# CARGO_TARGET_DIR is honoured (default: the workspace's target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p skiff -p skiff-bench-api
command -v etcd >/dev/null || echo "note: etcd not found (Debian package etcd-server); add --skip-etcd" >&2
# The benchmark kills its own servers and etcd members and removes its temp
# dirs on exit, Ctrl-C and SIGTERM.
exec "$target/release/skiff-bench-api" --skiff "$target/release/skiff" "$@"
