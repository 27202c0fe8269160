//! The image store end to end: importing `docker save` and OCI archives,
//! resolving references, unpacking layers with whiteouts, and concurrency.

use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::json;
use sha2::{Digest, Sha256};
use skiff_agent::image::{ImageError, ImageStore};
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::Command;

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// One entry of a hand-built layer.
enum E<'a> {
    Dir(&'a str, u32),
    File(&'a str, &'a [u8], u32, u64),
    Symlink(&'a str, &'a str),
    Hardlink(&'a str, &'a str),
    /// A raw name, written unchecked (for traversal tests).
    Raw(&'a [u8]),
}

fn layer(entries: &[E]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for e in entries {
        let mut h = tar::Header::new_gnu();
        h.set_mtime(1_700_000_000);
        h.set_uid(0);
        h.set_gid(0);
        match *e {
            E::Dir(p, mode) => {
                h.set_entry_type(tar::EntryType::Directory);
                h.set_mode(mode);
                h.set_size(0);
                b.append_data(&mut h, p, std::io::empty()).unwrap();
            }
            E::File(p, data, mode, owner) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(mode);
                h.set_uid(owner);
                h.set_gid(owner);
                h.set_size(data.len() as u64);
                b.append_data(&mut h, p, data).unwrap();
            }
            E::Symlink(p, target) => {
                h.set_entry_type(tar::EntryType::Symlink);
                h.set_mode(0o777);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::Hardlink(p, target) => {
                h.set_entry_type(tar::EntryType::Link);
                h.set_mode(0o644);
                h.set_size(0);
                b.append_link(&mut h, p, target).unwrap();
            }
            E::Raw(name) => {
                h.set_entry_type(tar::EntryType::Regular);
                h.set_mode(0o644);
                h.set_size(4);
                h.as_mut_bytes()[..100].fill(0);
                h.as_mut_bytes()[..name.len()].copy_from_slice(name);
                h.set_cksum();
                b.append(&h, &b"evil"[..]).unwrap();
            }
        }
    }
    b.into_inner().unwrap()
}

fn config(diff_ids: &[String], tag: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {
            "Entrypoint": ["/bin/app"],
            "Cmd": ["--serve", tag],
            "Env": ["PATH=/bin", "MODE=test"],
            "WorkingDir": "/srv",
            "User": "1000:1000",
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap()
}

/// Writes a tar of named members.
fn archive(path: &Path, members: &[(String, Vec<u8>)]) {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in members {
        let mut h = tar::Header::new_gnu();
        h.set_mode(0o644);
        h.set_size(data.len() as u64);
        b.append_data(&mut h, name, data.as_slice()).unwrap();
    }
    std::fs::write(path, b.into_inner().unwrap()).unwrap();
}

/// A `docker save` archive: `layers` are (uncompressed tar, gzip it?).
fn docker_save(
    path: &Path,
    tags: &[&str],
    layers: &[(Vec<u8>, bool)],
    diff_ids: Option<Vec<String>>,
) {
    let ids = diff_ids.unwrap_or_else(|| layers.iter().map(|(t, _)| sha(t)).collect());
    let cfg = config(&ids, tags.first().copied().unwrap_or("none"));
    let cfg_name = format!("{}.json", &sha(&cfg)[7..]);
    let mut members = vec![(cfg_name.clone(), cfg)];
    let mut layer_names = Vec::new();
    for (i, (tar, gz)) in layers.iter().enumerate() {
        let name = format!("layer{i}/layer.tar");
        members.push((name.clone(), if *gz { gzip(tar) } else { tar.clone() }));
        layer_names.push(name);
    }
    let manifest = json!([{"Config": cfg_name, "RepoTags": tags, "Layers": layer_names}]);
    members.insert(
        0,
        (
            "manifest.json".into(),
            serde_json::to_vec(&manifest).unwrap(),
        ),
    );
    archive(path, &members);
}

fn lower() -> Vec<u8> {
    layer(&[
        E::Dir("etc", 0o755),
        E::File("etc/keep", b"keep\n", 0o640, 1000),
        E::File("etc/gone", b"gone\n", 0o644, 0),
        E::Hardlink("etc/keep-link", "etc/keep"),
        E::Symlink("etc/alias", "keep"),
        E::Dir("opq", 0o750),
        E::File("opq/old", b"old\n", 0o644, 0),
        E::Dir("bin", 0o755),
        E::File("bin/app", b"#!/bin/sh\n", 0o755, 0),
    ])
}

fn upper() -> Vec<u8> {
    layer(&[
        E::Dir("etc", 0o755),
        E::File("etc/.wh.gone", b"", 0o644, 0),
        E::Dir("opq", 0o750),
        E::File("opq/.wh..wh..opq", b"", 0o644, 0),
        E::File("opq/new", b"new\n", 0o600, 0),
    ])
}

fn getxattr(path: &Path, name: &str) -> Option<String> {
    let out = Command::new("python3")
        .arg("-c")
        .arg("import os,sys\ntry: sys.stdout.write(os.getxattr(sys.argv[1], sys.argv[2]).decode())\nexcept OSError: sys.exit(3)")
        .arg(path)
        .arg(name)
        .output()
        .expect("python3");
    out.status
        .success()
        .then(|| String::from_utf8(out.stdout).unwrap())
}

fn build_busybox(dir: &Path, tag: Option<&str>) -> Option<PathBuf> {
    if !Path::new("/bin/busybox").exists() {
        eprintln!("SKIPPED: /bin/busybox missing (apt-get install busybox-static)");
        return None;
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/build-busybox-image.sh");
    let out = dir.join(format!(
        "busybox-{}.tar",
        tag.unwrap_or("default").replace([':', '/'], "_")
    ));
    let mut cmd = Command::new("bash");
    cmd.arg(&script).arg(&out);
    if let Some(tag) = tag {
        cmd.arg(tag);
    }
    let status = cmd.status().expect("bash");
    assert!(status.success(), "build-busybox-image.sh failed");
    Some(out)
}

#[test]
fn busybox_archive_imports_and_resolves() {
    let tmp = tempfile::tempdir().unwrap();
    let Some(latest) = build_busybox(tmp.path(), None) else {
        return;
    };
    let v136 = build_busybox(tmp.path(), Some("busybox:1.36")).unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    assert_eq!(
        store.import(&latest).unwrap(),
        ["docker.io/library/busybox:latest"]
    );
    assert_eq!(
        store.import(&v136).unwrap(),
        ["docker.io/library/busybox:1.36"]
    );

    let a = store.resolve("busybox").unwrap();
    let b = store.resolve("docker.io/library/busybox:latest").unwrap();
    assert_eq!(a, b);
    assert_eq!(a.reference, "docker.io/library/busybox:latest");
    assert!(a.id.starts_with("sha256:"));
    assert_eq!(a.config.cmd, ["sh"]);
    assert!(a.config.entrypoint.is_empty());
    assert!(
        a.config
            .env
            .iter()
            .any(|e| e.starts_with("PATH=") && e.ends_with(":/bin"))
    );
    assert_eq!(a.layers.len(), 1);
    let root = &a.layers[0];
    assert!(root.starts_with(tmp.path().join("store/layers/sha256")));
    let sh = std::fs::symlink_metadata(root.join("bin/sh")).unwrap();
    assert!(sh.file_type().is_symlink());
    assert_eq!(
        std::fs::read_link(root.join("bin/sh")).unwrap(),
        Path::new("busybox")
    );
    assert_eq!(
        std::fs::metadata(root.join("bin/busybox")).unwrap().mode() & 0o7777,
        0o755
    );
    assert_eq!(
        std::fs::metadata(root.join("tmp")).unwrap().mode() & 0o7777,
        0o1777
    );
    assert!(
        std::fs::read_to_string(root.join("etc/passwd"))
            .unwrap()
            .contains("nobody:x:65534")
    );
    assert!(a.size > 500_000);

    let old = store.resolve("busybox:1.36").unwrap();
    assert_ne!(old.id, a.id);
    assert_eq!(
        std::fs::read_to_string(old.layers[0].join("etc/skiff-image-tag")).unwrap(),
        "busybox:1.36\n"
    );
    let list = store.list().unwrap();
    assert_eq!(list.len(), 2);
    assert!(
        list.iter()
            .any(|s| s.id == a.id && s.references == ["docker.io/library/busybox:latest"])
    );
    // By image ID.
    assert_eq!(store.resolve(&old.id).unwrap().id, old.id);

    // Re-import is idempotent.
    let index_before = std::fs::read(tmp.path().join("store/index.json")).unwrap();
    assert_eq!(
        store.import(&latest).unwrap(),
        ["docker.io/library/busybox:latest"]
    );
    assert_eq!(store.list().unwrap(), list);
    let index_after: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tmp.path().join("store/index.json")).unwrap())
            .unwrap();
    let before: serde_json::Value = serde_json::from_slice(&index_before).unwrap();
    assert_eq!(index_after["manifests"].as_array().unwrap().len(), 2);
    assert_eq!(
        index_after["manifests"]
            .as_array()
            .unwrap()
            .iter()
            .collect::<std::collections::HashSet<_>>(),
        before["manifests"].as_array().unwrap().iter().collect()
    );
    assert_eq!(store.resolve("busybox").unwrap(), a);

    // Removing one tag leaves the other image intact.
    assert_eq!(
        store.remove("busybox:1.36").unwrap(),
        ["docker.io/library/busybox:1.36"]
    );
    assert!(matches!(
        store.resolve("busybox:1.36"),
        Err(ImageError::NotFound(_))
    ));
    assert!(!old.layers[0].exists());
    assert!(
        store.resolve("busybox").unwrap().layers[0]
            .join("bin/sh")
            .symlink_metadata()
            .is_ok()
    );
    assert_eq!(store.list().unwrap().len(), 1);
    assert!(matches!(
        store.resolve("nginx"),
        Err(ImageError::NotFound(_))
    ));
    assert!(matches!(
        store.resolve("Bad Name"),
        Err(ImageError::Invalid(_))
    ));
}

fn upper_whiteout_only() -> Vec<u8> {
    layer(&[
        E::Dir("etc", 0o755),
        E::File("etc/.wh.gone", b"", 0o644, 0),
        E::File("etc/added", b"added\n", 0o600, 0),
    ])
}

#[test]
fn docker_save_with_whiteouts_stacks_as_overlay_layers() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("stack.tar");
    // The upper layer is gzip-compressed, the lower plain.
    let up_tar = upper_whiteout_only();
    docker_save(
        &path,
        &["example.com/team/stack:v1"],
        &[(lower(), false), (up_tar.clone(), true)],
        None,
    );
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    assert_eq!(store.import(&path).unwrap(), ["example.com/team/stack:v1"]);
    let img = store.resolve("example.com/team/stack:v1").unwrap();
    assert_eq!(img.config.entrypoint, ["/bin/app"]);
    assert_eq!(img.config.cmd, ["--serve", "example.com/team/stack:v1"]);
    assert_eq!(img.config.env, ["PATH=/bin", "MODE=test"]);
    assert_eq!(img.config.working_dir, "/srv");
    assert_eq!(img.config.user, "1000:1000");
    assert_eq!(img.layers.len(), 2);
    let (lo, up) = (&img.layers[0], &img.layers[1]);
    assert!(lo.ends_with(&sha(&lower())[7..]));
    assert!(up.ends_with(&sha(&up_tar)[7..]));

    // Lower layer: ownership, permissions, hard link, symlink.
    let keep = std::fs::metadata(lo.join("etc/keep")).unwrap();
    assert_eq!(
        (keep.uid(), keep.gid(), keep.mode() & 0o7777),
        (1000, 1000, 0o640)
    );
    assert_eq!(
        std::fs::metadata(lo.join("etc/keep-link")).unwrap().ino(),
        keep.ino()
    );
    assert_eq!(
        std::fs::read_link(lo.join("etc/alias")).unwrap(),
        Path::new("keep")
    );
    assert_eq!(
        std::fs::metadata(lo.join("opq")).unwrap().mode() & 0o7777,
        0o750
    );
    assert!(lo.join("etc/gone").is_file());

    // Upper layer: the whiteout in overlayfs form, a 0/0 character device.
    let wh = std::fs::symlink_metadata(up.join("etc/gone")).unwrap();
    assert!(wh.file_type().is_char_device());
    assert_eq!(wh.rdev(), 0);
    assert!(!up.join("etc/.wh.gone").exists());
    assert_eq!(getxattr(&up.join("etc"), "trusted.overlay.opaque"), None);
    assert_eq!(
        std::fs::metadata(up.join("etc/added")).unwrap().mode() & 0o7777,
        0o600
    );

    // Forced flattening: one directory with the whiteout applied.
    let flat = ImageStore::open(&tmp.path().join("flat-store"))
        .unwrap()
        .with_flatten(true);
    flat.import(&path).unwrap();
    let img = flat.resolve("example.com/team/stack:v1").unwrap();
    assert_eq!(img.layers.len(), 1);
    let root = &img.layers[0];
    assert!(root.join("etc/keep").is_file());
    assert!(root.join("etc/added").is_file());
    assert!(std::fs::symlink_metadata(root.join("etc/gone")).is_err());
    assert!(root.join("opq/old").is_file());
}

#[test]
fn opaque_directories_stack_through_overlayfs() {
    // The opaque marker becomes overlayfs' trusted.overlay.opaque xattr, so the
    // layers stay separate and an overlay mount hides the lower directory.
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("opaque.tar");
    docker_save(
        &path,
        &["example.com/team/opaque:v1"],
        &[(lower(), false), (upper(), true)],
        None,
    );
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    store.import(&path).unwrap();
    let img = store.resolve("example.com/team/opaque:v1").unwrap();
    assert_eq!(img.layers.len(), 2);
    let top = &img.layers[1];
    assert_eq!(
        xattr::get(top.join("opq"), "trusted.overlay.opaque")
            .unwrap()
            .as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join("opq/.wh..wh..opq").exists());
    // Stack them as the runtime does and look through the overlay.
    let (merged, upper, work) = (
        tmp.path().join("m"),
        tmp.path().join("u"),
        tmp.path().join("w"),
    );
    for d in [&merged, &upper, &work] {
        std::fs::create_dir_all(d).unwrap();
    }
    let opts = format!(
        "lowerdir={}:{},upperdir={},workdir={}",
        top.display(),
        img.layers[0].display(),
        upper.display(),
        work.display()
    );
    if nix::mount::mount(
        Some("overlay"),
        &merged,
        Some("overlay"),
        nix::mount::MsFlags::empty(),
        Some(opts.as_str()),
    )
    .is_err()
    {
        eprintln!("SKIPPED overlay check: cannot mount overlayfs here (needs root)");
        return;
    }
    let old_hidden = !merged.join("opq/old").exists();
    let new_seen = std::fs::read(merged.join("opq/new")).ok();
    let gone_hidden = std::fs::symlink_metadata(merged.join("etc/gone")).is_err();
    let app = merged.join("bin/app").is_file();
    nix::mount::umount(&merged).unwrap();
    assert!(
        old_hidden,
        "the opaque directory hides the lower layer's files"
    );
    assert_eq!(new_seen.as_deref(), Some(&b"new\n"[..]));
    assert!(gone_hidden, "the whiteout hides the deleted file");
    assert!(app);
}

#[test]
fn gzip_compressed_archive_and_untagged_image() {
    let tmp = tempfile::tempdir().unwrap();
    let plain = tmp.path().join("plain.tar");
    docker_save(&plain, &[], &[(lower(), true)], None);
    let gz = tmp.path().join("img.tar.gz");
    std::fs::write(&gz, gzip(&std::fs::read(&plain).unwrap())).unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let refs = store.import(&gz).unwrap();
    assert_eq!(refs.len(), 1);
    assert!(refs[0].starts_with("sha256:"), "{refs:?}");
    let img = store.resolve(&refs[0]).unwrap();
    assert_eq!(img.id, refs[0]);
    assert!(img.layers[0].join("bin/app").is_file());
    assert_eq!(store.list().unwrap()[0].references, Vec::<String>::new());
}

#[test]
fn digest_mismatches_are_rejected() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    // docker save: the config's diff ID does not match the layer.
    let path = tmp.path().join("bad.tar");
    docker_save(
        &path,
        &["bad:1"],
        &[(lower(), true)],
        Some(vec![sha(b"something else")]),
    );
    let err = store.import(&path).unwrap_err();
    assert!(matches!(err, ImageError::Digest { .. }), "{err}");
    assert!(matches!(
        store.resolve("bad:1"),
        Err(ImageError::NotFound(_))
    ));

    // OCI: a blob whose content does not match its name.
    let layer_tar = lower();
    let cfg = config(&[sha(&layer_tar)], "x");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&cfg), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": sha(&layer_tar), "size": layer_tar.len()}],
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": sha(&manifest),
            "size": manifest.len(), "annotations": {"org.opencontainers.image.ref.name": "oci/bad:1"}}],
    }))
    .unwrap();
    let mut tampered = layer_tar.clone();
    tampered[600] ^= 1;
    let oci = tmp.path().join("oci.tar");
    archive(
        &oci,
        &[
            (
                "oci-layout".into(),
                br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
            ),
            ("index.json".into(), index),
            (format!("blobs/sha256/{}", &sha(&cfg)[7..]), cfg),
            (format!("blobs/sha256/{}", &sha(&manifest)[7..]), manifest),
            (format!("blobs/sha256/{}", &sha(&layer_tar)[7..]), tampered),
        ],
    );
    let err = store.import(&oci).unwrap_err();
    assert!(matches!(err, ImageError::Digest { .. }), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn path_traversal_is_rejected() {
    for name in [&b"../evil"[..], b"/etc/evil", b"a/../../evil"] {
        let tmp = tempfile::tempdir().unwrap();
        let store = ImageStore::open(&tmp.path().join("store")).unwrap();
        let path = tmp.path().join("evil.tar");
        docker_save(
            &path,
            &["evil:1"],
            &[(layer(&[E::Dir("a", 0o755), E::Raw(name)]), false)],
            None,
        );
        let err = store.import(&path).unwrap_err();
        assert!(matches!(err, ImageError::Invalid(_)), "{err}");
        assert!(err.to_string().contains("escapes"), "{err}");
        assert!(!tmp.path().join("evil").exists());
        assert!(!tmp.path().join("store/evil").exists());
    }
    // A hard link pointing outside.
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let path = tmp.path().join("evil.tar");
    docker_save(
        &path,
        &["evil:1"],
        &[(layer(&[E::Hardlink("passwd", "/etc/passwd")]), false)],
        None,
    );
    assert!(store.import(&path).is_err());
    // The archive itself naming a member outside.
    let outer = tmp.path().join("outer.tar");
    let mut b = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(2);
    h.as_mut_bytes()[..9].copy_from_slice(b"../x.json");
    h.set_mode(0o644);
    h.set_cksum();
    b.append(&h, &b"{}"[..]).unwrap();
    std::fs::write(&outer, b.into_inner().unwrap()).unwrap();
    assert!(
        store
            .import(&outer)
            .unwrap_err()
            .to_string()
            .contains("escapes")
    );
    assert!(!tmp.path().join("x.json").exists());
}

#[test]
fn multi_arch_index_picks_this_host() {
    let tmp = tempfile::tempdir().unwrap();
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    };
    let mut members = vec![(
        "oci-layout".to_string(),
        br#"{"imageLayoutVersion":"1.0.0"}"#.to_vec(),
    )];
    let mut platforms = Vec::new();
    for a in ["s390x", arch] {
        let layer_tar = layer(&[E::File("arch", a.as_bytes(), 0o644, 0)]);
        let layer_gz = gzip(&layer_tar);
        let cfg = config(&[sha(&layer_tar)], a);
        let manifest = serde_json::to_vec(&json!({
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": sha(&cfg), "size": cfg.len()},
            "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": sha(&layer_gz), "size": layer_gz.len()}],
        }))
        .unwrap();
        platforms.push(json!({"mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": sha(&manifest), "size": manifest.len(), "platform": {"os": "linux", "architecture": a}}));
        for blob in [cfg, manifest, layer_gz] {
            members.push((format!("blobs/sha256/{}", &sha(&blob)[7..]), blob));
        }
    }
    let nested = serde_json::to_vec(&json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": platforms,
    }))
    .unwrap();
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{"mediaType": "application/vnd.oci.image.index.v1+json", "digest": sha(&nested),
            "size": nested.len(), "annotations": {"io.containerd.image.name": "docker.io/library/multi:2",
            "org.opencontainers.image.ref.name": "2"}}],
    }))
    .unwrap();
    members.push((format!("blobs/sha256/{}", &sha(&nested)[7..]), nested));
    members.push(("index.json".into(), index));
    let path = tmp.path().join("multi.tar");
    archive(&path, &members);
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    assert_eq!(store.import(&path).unwrap(), ["docker.io/library/multi:2"]);
    let img = store.resolve("multi:2").unwrap();
    assert_eq!(
        std::fs::read_to_string(img.layers[0].join("arch")).unwrap(),
        arch
    );
    assert_eq!(img.config.cmd, ["--serve", arch]);
}

#[test]
fn add_manifest_stores_a_pulled_image() {
    let tmp = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&tmp.path().join("store")).unwrap();
    let layer_tar = lower();
    let layer_gz = gzip(&layer_tar);
    let cfg = config(&[sha(&layer_tar)], "pulled");
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "digest": sha(&cfg), "size": cfg.len()},
        "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "digest": sha(&layer_gz), "size": layer_gz.len()}],
    }))
    .unwrap();
    // A wrong layer blob is refused.
    let err = store
        .add_manifest(
            "quay.io/x/y:1",
            &manifest,
            &cfg,
            vec![(sha(&layer_gz), layer_tar.clone())],
        )
        .unwrap_err();
    assert!(matches!(err, ImageError::Digest { .. }), "{err}");
    let img = store
        .add_manifest(
            "quay.io/x/y:1",
            &manifest,
            &cfg,
            vec![(sha(&layer_gz), layer_gz.clone())],
        )
        .unwrap();
    assert_eq!(img.reference, "quay.io/x/y:1");
    assert_eq!(img.id, sha(&cfg));
    assert_eq!(img.size, layer_gz.len() as u64);
    assert_eq!(store.resolve("quay.io/x/y:1").unwrap(), img);
    // By digest of the manifest.
    let by_digest = store
        .resolve(&format!("quay.io/x/y@{}", sha(&manifest)))
        .unwrap();
    assert_eq!(by_digest.id, img.id);
}

#[test]
fn concurrent_import_while_resolving() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("store");
    let first = tmp.path().join("first.tar");
    docker_save(
        &first,
        &["app:1"],
        &[(lower(), false), (upper_whiteout_only(), true)],
        None,
    );
    let store = ImageStore::open(&root).unwrap();
    store.import(&first).unwrap();
    let want = store.resolve("app:1").unwrap();

    let archives: Vec<PathBuf> = (0..6)
        .map(|i| {
            let p = tmp.path().join(format!("other{i}.tar"));
            let extra = layer(&[E::File("n", format!("{i}").as_bytes(), 0o644, 0)]);
            docker_save(
                &p,
                &[&format!("other:{i}")],
                &[(lower(), false), (extra, i % 2 == 0)],
                None,
            );
            p
        })
        .collect();
    // A second store handle, like a `skiff image import` process.
    let importer = {
        let root = root.clone();
        let archives = archives.clone();
        let first = first.clone();
        std::thread::spawn(move || {
            let other = ImageStore::open(&root).unwrap();
            for a in &archives {
                other.import(a).unwrap();
                other.import(&first).unwrap();
            }
        })
    };
    let mut resolved = 0;
    while !importer.is_finished() || resolved < 20 {
        assert_eq!(store.resolve("app:1").unwrap(), want);
        store.list().unwrap();
        resolved += 1;
    }
    importer.join().unwrap();
    assert_eq!(store.list().unwrap().len(), 7);
    for i in 0..6 {
        let img = store.resolve(&format!("other:{i}")).unwrap();
        assert_eq!(img.layers[0], want.layers[0]);
        assert_eq!(
            std::fs::read_to_string(img.layers[1].join("n")).unwrap(),
            i.to_string()
        );
    }
    // Nothing left behind in staging.
    assert_eq!(std::fs::read_dir(root.join("tmp")).unwrap().count(), 0);
}
