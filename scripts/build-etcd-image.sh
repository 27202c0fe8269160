#!/usr/bin/env bash
# Builds an etcd image from the host's Debian etcd-server and etcd-client
# (/usr/bin/etcd, /usr/bin/etcdctl and the libraries they link), on top of the
# busybox test image (sh, nslookup, wget), and writes it as an OCI archive for
# `skiff image import`. Nothing is downloaded.
#
#   scripts/build-etcd-image.sh OUT.tar [TAG]     # TAG defaults to etcd:3.4
set -euo pipefail
if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 OUT.tar [TAG]" >&2
  exit 2
fi
for bin in /usr/bin/etcd /usr/bin/etcdctl; do
  [[ -x $bin ]] || { echo "$0: $bin not found (apt-get install etcd-server etcd-client)" >&2; exit 1; }
done
EXTRA_BINARIES="/usr/bin/etcd /usr/bin/etcdctl" \
  exec "$(dirname "$0")/build-busybox-image.sh" "$1" "${2:-etcd:3.4}"
