#!/usr/bin/env bash
# Builds release skiff and skiff-bench-pods, then runs the pod start-up
# benchmark (needs root, runc, podman, busybox-static). Extra arguments go to
# the benchmark (see --help), e.g.
#   bench/pods/run.sh --pods 50 --skip-podman
# CARGO_TARGET_DIR is honoured (default: the workspace's target/).
set -euo pipefail
root="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$root"
target="${CARGO_TARGET_DIR:-$root/target}"
cargo build --release -p skiff -p skiff-bench-pods
# The benchmark removes its pods, containers, shims, mounts, cgroups, podman
# storage and temp dirs on exit, Ctrl-C and SIGTERM.
exec "$target/release/skiff-bench-pods" --skiff "$target/release/skiff" \
  --image-script "$root/scripts/build-busybox-image.sh" "$@"
