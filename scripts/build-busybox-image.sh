#!/usr/bin/env bash
# Builds a one-layer busybox test image from the host's /bin/busybox (Debian's
# busybox-static; nothing is downloaded) and writes it as an OCI image archive.
#
#   scripts/build-busybox-image.sh OUT.tar [TAG]
#
# TAG defaults to busybox:latest (normalized docker.io/library/busybox:latest).
# The archive is an OCI image layout in a tar: oci-layout, index.json and
# blobs/sha256/*. The index entry carries the full normalized name in
# io.containerd.image.name and the tag in org.opencontainers.image.ref.name,
# as `ctr image export` writes them; `skiff image import` reads it.
#
# The rootfs: /bin/busybox, every applet (`busybox --list`) as a symlink to it
# in /bin, /usr/bin/env, /etc/passwd and /etc/group (root, nobody), /tmp
# (1777), /root, and /etc/skiff-image-tag holding TAG, so that every tag gives
# an image with a distinct digest. Output is deterministic: the same busybox
# and TAG always give the same digests. Config: Cmd ["sh"], the usual PATH.
#
# EXTRA_BINARIES="/usr/bin/etcd /usr/bin/etcdctl" adds host binaries at the
# same paths, with the shared libraries `ldd` lists for them (and the dynamic
# loader), so dynamically linked programs run in the image
# (scripts/build-etcd-image.sh uses it).
#
# Needs only bash, coreutils and python3 (and ldd for EXTRA_BINARIES).
set -euo pipefail

if [[ $# -lt 1 || $# -gt 2 ]]; then
  echo "usage: $0 OUT.tar [TAG]" >&2
  exit 2
fi
out=$1
tag=${2:-busybox:latest}
busybox=${BUSYBOX:-/bin/busybox}

if [[ ! -x $busybox ]]; then
  echo "$0: $busybox not found (apt-get install busybox-static)" >&2
  exit 1
fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

"$busybox" --list | grep -v -x -e busybox -e linuxrc | sort >"$work/applets"
: >"$work/extra"
for bin in ${EXTRA_BINARIES:-}; do
  [[ -x $bin ]] || { echo "$0: $bin not found" >&2; exit 1; }
  echo "$bin" >>"$work/extra"
  # "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x…)" and "/lib64/ld-linux-x86-64.so.2 (0x…)"
  ldd "$bin" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}' >>"$work/extra" || true
done
sort -u -o "$work/extra" "$work/extra"

python3 - "$busybox" "$work/applets" "$tag" "$out" "$work/extra" <<'PY'
import gzip
import hashlib
import io
import json
import os
import platform
import sys
import tarfile

busybox, applets_file, tag, out, extra_file = sys.argv[1:6]
applets = [a for a in open(applets_file).read().split() if a]
extra = [p for p in open(extra_file).read().split() if p]


def normalize(ref):
    """docker.io/library/ for bare names, :latest when untagged."""
    first, sep, rest = ref.partition("/")
    if not sep or not ("." in first or ":" in first or first == "localhost"):
        registry, path = "docker.io", ref
    else:
        registry, path = first, rest
    if registry == "docker.io" and "/" not in path:
        path = "library/" + path
    if "@" not in path and ":" not in path.rsplit("/", 1)[-1]:
        path += ":latest"
    return registry + "/" + path


name = normalize(tag)
ref_tag = name.rsplit(":", 1)[-1] if "@" not in name else name.split("@", 1)[1]


def info(path, kind, mode, size=0, link=""):
    ti = tarfile.TarInfo(path)
    ti.type = kind
    ti.mode = mode
    ti.size = size
    ti.linkname = link
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = "root"
    ti.mtime = 0
    return ti


layer = io.BytesIO()
with tarfile.open(fileobj=layer, mode="w", format=tarfile.PAX_FORMAT) as t:
    def add_dir(path, mode=0o755):
        t.addfile(info(path, tarfile.DIRTYPE, mode))

    def add_file(path, data, mode=0o644):
        t.addfile(info(path, tarfile.REGTYPE, mode, len(data)), io.BytesIO(data))

    def add_link(path, target):
        t.addfile(info(path, tarfile.SYMTYPE, 0o777, link=target))

    for d in ["bin", "etc", "root", "usr", "usr/bin", "usr/sbin", "var"]:
        add_dir(d, 0o700 if d == "root" else 0o755)
    add_dir("tmp", 0o1777)
    add_dir("var/tmp", 0o1777)
    add_file("bin/busybox", open(busybox, "rb").read(), 0o755)
    for applet in applets:
        add_link("bin/" + applet, "busybox")
    add_link("usr/bin/env", "../../bin/busybox")
    add_file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n"
             b"nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n")
    add_file("etc/group", b"root:x:0:\nnogroup:x:65534:\nnobody:x:65534:\n")
    add_file("etc/skiff-image-tag", (tag + "\n").encode())
    made = {"bin", "etc", "root", "usr", "usr/bin", "usr/sbin", "var", "tmp", "var/tmp"}
    for path in extra:
        real = os.path.realpath(path)
        rel = path.lstrip("/")
        parts = rel.split("/")[:-1]
        for i in range(1, len(parts) + 1):
            d = "/".join(parts[:i])
            if d not in made:
                add_dir(d)
                made.add(d)
        add_file(rel, open(real, "rb").read(), 0o755)
layer_tar = layer.getvalue()
diff_id = "sha256:" + hashlib.sha256(layer_tar).hexdigest()
layer_gz = gzip.compress(layer_tar, mtime=0)

arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
config = {
    "architecture": arch,
    "os": "linux",
    "config": {
        "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
        "Cmd": ["sh"],
        "Labels": {"io.skiff.image.tag": tag},
    },
    "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    "history": [{"created_by": "scripts/build-busybox-image.sh " + tag}],
}
blobs = {}


def blob(data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return digest, len(data)


config_bytes = json.dumps(config, separators=(",", ":")).encode()
config_digest, config_size = blob(config_bytes)
layer_digest, layer_size = blob(layer_gz)
manifest = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.manifest.v1+json",
    "config": {
        "mediaType": "application/vnd.oci.image.config.v1+json",
        "digest": config_digest,
        "size": config_size,
    },
    "layers": [{
        "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
        "digest": layer_digest,
        "size": layer_size,
    }],
}
manifest_digest, manifest_size = blob(json.dumps(manifest, separators=(",", ":")).encode())
index = {
    "schemaVersion": 2,
    "mediaType": "application/vnd.oci.image.index.v1+json",
    "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": manifest_digest,
        "size": manifest_size,
        "platform": {"architecture": arch, "os": "linux"},
        "annotations": {
            "io.containerd.image.name": name,
            "org.opencontainers.image.ref.name": ref_tag,
        },
    }],
}

tmp_out = out + ".tmp"
with tarfile.open(tmp_out, mode="w", format=tarfile.PAX_FORMAT) as t:
    def add(path, data):
        ti = info(path, tarfile.REGTYPE, 0o644, len(data))
        t.addfile(ti, io.BytesIO(data))

    for d in ["blobs", "blobs/sha256"]:
        t.addfile(info(d, tarfile.DIRTYPE, 0o755))
    add("oci-layout", b'{"imageLayoutVersion":"1.0.0"}')
    add("index.json", json.dumps(index, separators=(",", ":")).encode())
    for digest in sorted(blobs):
        add("blobs/sha256/" + digest.split(":", 1)[1], blobs[digest])
os.replace(tmp_out, out)
print(f"{out}: {name} manifest {manifest_digest} config {config_digest}")
PY
