//! Pod volumes on the node: emptyDir, hostPath, configMap, secret,
//! downwardAPI and projected, set up under the pod's directory;
//! persistentVolumeClaim (and generic ephemeral) volumes, resolved through
//! their bound PersistentVolume to its `hostPath` or `local.path`; and the
//! bind mounts containers get from their volumeMounts.
//!
//! Files of configMap, secret, downwardAPI and projected volumes are written
//! as the kubelet writes them: into a timestamped directory, published by
//! swapping a `..data` symlink, with one symlink per key, so a reader never
//! sees a half-written update.

use crate::runtime::Mount;
use k8s_openapi::api::core::v1::{Container, PersistentVolume, PersistentVolumeClaim, Pod, Volume};
use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

/// Why a volume could not be set up; the text is what `FailedMount` events say.
#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    /// A referenced ConfigMap or Secret is missing and not optional.
    #[error("{kind} \"{name}\" not found")]
    SourceNotFound {
        /// "configmap" or "secret".
        kind: &'static str,
        /// Its name.
        name: String,
    },
    /// An item names a key the source lacks.
    #[error("configmap references non-existent config key: {0}")]
    MissingKey(String),
    /// hostPath type check failed.
    #[error("hostPath type check failed: {path} is not a {expected}")]
    HostPathType {
        /// The path.
        path: String,
        /// What it should have been.
        expected: &'static str,
    },
    /// A claim the pod uses cannot be used yet (missing, not bound, its
    /// volume missing): the pod waits, as the kubelet's volume manager does.
    #[error("error processing PVC {namespace}/{claim}: {reason}")]
    Claim {
        /// The pod's namespace.
        namespace: String,
        /// The claim's name.
        claim: String,
        /// Why, in the kubelet's words.
        reason: String,
    },
    /// A `local` volume's path does not exist on the node.
    #[error("path \"{0}\" does not exist")]
    LocalPathMissing(String),
    /// The volume kind is not supported on this node yet.
    #[error("volume type of {0:?} is not supported")]
    Unsupported(String),
    /// Filesystem error.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> VolumeError {
    let context = context.into();
    move |source| VolumeError::Io { context, source }
}

/// The data of the ConfigMaps and Secrets a pod references, and the claims
/// and volumes behind its persistentVolumeClaim volumes, fetched by the caller.
#[derive(Debug, Default, Clone)]
pub struct Sources {
    /// ConfigMap name → key → bytes (data and binaryData).
    pub config_maps: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Secret name → key → bytes.
    pub secrets: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
    /// Claim name → the claim, for the claims that exist.
    pub claims: BTreeMap<String, PersistentVolumeClaim>,
    /// PersistentVolume name → the volume, for the bound claims' volumes that exist.
    pub persistent_volumes: BTreeMap<String, PersistentVolume>,
}

/// The claim a volume uses: `persistentVolumeClaim.claimName`, or
/// `<pod>-<volume>` for a generic ephemeral volume.
pub fn claim_name(pod: &Pod, volume: &Volume) -> Option<String> {
    if let Some(c) = &volume.persistent_volume_claim {
        return Some(c.claim_name.clone());
    }
    volume.ephemeral.as_ref().map(|_| {
        format!(
            "{}-{}",
            pod.metadata.name.as_deref().unwrap_or(""),
            volume.name
        )
    })
}

/// Where a claimed volume lives on the node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedPath {
    /// The PersistentVolume's name.
    pub volume: String,
    /// The host path.
    pub path: String,
    /// The hostPath `type` to check (or create), `""` for none.
    pub type_: String,
    /// Whether the path must already exist (a `local` volume).
    pub must_exist: bool,
}

/// Resolves a claim to the host path of its volume: the claim must exist
/// and be Bound, its PersistentVolume must exist and be a `hostPath` or
/// `local` volume. Errors carry the kubelet's words.
pub fn resolve_claim(
    namespace: &str,
    claim: &str,
    sources: &Sources,
) -> Result<ClaimedPath, VolumeError> {
    let fail = |reason: String| VolumeError::Claim {
        namespace: namespace.to_string(),
        claim: claim.to_string(),
        reason,
    };
    let Some(pvc) = sources.claims.get(claim) else {
        return Err(fail(format!(
            "failed to fetch PVC from API server: persistentvolumeclaims \"{claim}\" not found"
        )));
    };
    let pv_name = pvc
        .spec
        .as_ref()
        .and_then(|s| s.volume_name.as_deref())
        .unwrap_or("");
    let phase = pvc.status.as_ref().and_then(|s| s.phase.as_deref());
    if pv_name.is_empty() || phase != Some("Bound") {
        return Err(fail("PVC is not bound".into()));
    }
    let Some(pv) = sources.persistent_volumes.get(pv_name) else {
        return Err(fail(format!(
            "failed to fetch PV {pv_name} from API server: persistentvolumes \"{pv_name}\" not found"
        )));
    };
    let spec = pv.spec.as_ref();
    if let Some(hp) = spec.and_then(|s| s.host_path.as_ref()) {
        return Ok(ClaimedPath {
            volume: pv_name.to_string(),
            path: hp.path.clone(),
            type_: hp.type_.clone().unwrap_or_default(),
            must_exist: false,
        });
    }
    if let Some(local) = spec.and_then(|s| s.local.as_ref()) {
        return Ok(ClaimedPath {
            volume: pv_name.to_string(),
            path: local.path.clone(),
            type_: String::new(),
            must_exist: true,
        });
    }
    Err(VolumeError::Unsupported(pv_name.to_string()))
}

/// The pod's volumes mounted read-only in every container: claims with `readOnly: true`.
pub fn read_only_volumes(pod: &Pod) -> BTreeSet<String> {
    pod.spec
        .as_ref()
        .and_then(|s| s.volumes.as_ref())
        .into_iter()
        .flatten()
        .filter(|v| {
            v.persistent_volume_claim
                .as_ref()
                .is_some_and(|c| c.read_only == Some(true))
        })
        .map(|v| v.name.clone())
        .collect()
}

/// One file to write: relative path, content, mode.
type File = (String, Vec<u8>, u32);

/// The host directory of a pod's volume.
pub fn volume_dir(pod_dir: &Path, volume: &Volume) -> PathBuf {
    let plugin = if volume.empty_dir.is_some() {
        "kubernetes.io~empty-dir"
    } else if volume.config_map.is_some() {
        "kubernetes.io~configmap"
    } else if volume.secret.is_some() {
        "kubernetes.io~secret"
    } else if volume.downward_api.is_some() {
        "kubernetes.io~downward-api"
    } else if volume.projected.is_some() {
        "kubernetes.io~projected"
    } else {
        "other"
    };
    pod_dir.join("volumes").join(plugin).join(&volume.name)
}

fn items_files(
    kind: &'static str,
    name: &str,
    data: Option<&BTreeMap<String, Vec<u8>>>,
    items: Option<&Vec<k8s_openapi::api::core::v1::KeyToPath>>,
    default_mode: u32,
    optional: bool,
) -> Result<Vec<File>, VolumeError> {
    let Some(data) = data else {
        return if optional {
            Ok(Vec::new())
        } else {
            Err(VolumeError::SourceNotFound {
                kind,
                name: name.to_string(),
            })
        };
    };
    match items {
        Some(items) if !items.is_empty() => {
            let mut out = Vec::new();
            for it in items {
                match data.get(&it.key) {
                    Some(v) => out.push((
                        it.path.clone(),
                        v.clone(),
                        it.mode.map(|m| m as u32).unwrap_or(default_mode),
                    )),
                    None if optional => {}
                    None => return Err(VolumeError::MissingKey(it.key.clone())),
                }
            }
            Ok(out)
        }
        _ => Ok(data
            .iter()
            .map(|(k, v)| (k.clone(), v.clone(), default_mode))
            .collect()),
    }
}

/// `key="value"` lines, sorted, as the downward API renders labels and annotations.
fn render_map(m: Option<&BTreeMap<String, String>>) -> Vec<u8> {
    let mut s = String::new();
    for (k, v) in m.into_iter().flatten() {
        s.push_str(&format!("{k}={v:?}\n"));
    }
    s.trim_end_matches('\n').as_bytes().to_vec()
}

/// The value of a downward API field path.
pub fn field_path_value(pod: &Pod, path: &str) -> Option<String> {
    let md = &pod.metadata;
    Some(match path {
        "metadata.name" => md.name.clone().unwrap_or_default(),
        "metadata.namespace" => md.namespace.clone().unwrap_or_default(),
        "metadata.uid" => md.uid.clone().unwrap_or_default(),
        "metadata.labels" => String::from_utf8(render_map(md.labels.as_ref())).ok()?,
        "metadata.annotations" => String::from_utf8(render_map(md.annotations.as_ref())).ok()?,
        "spec.nodeName" => pod.spec.as_ref()?.node_name.clone().unwrap_or_default(),
        "spec.serviceAccountName" => pod
            .spec
            .as_ref()?
            .service_account_name
            .clone()
            .unwrap_or_default(),
        "status.hostIP" => pod.status.as_ref()?.host_ip.clone().unwrap_or_default(),
        "status.podIP" => pod.status.as_ref()?.pod_ip.clone().unwrap_or_default(),
        other => {
            let inner = |prefix: &str| {
                other
                    .strip_prefix(prefix)
                    .and_then(|r| r.strip_suffix("']"))
                    .map(str::to_string)
            };
            if let Some(k) = inner("metadata.labels['") {
                md.labels.as_ref()?.get(&k).cloned().unwrap_or_default()
            } else if let Some(k) = inner("metadata.annotations['") {
                md.annotations
                    .as_ref()?
                    .get(&k)
                    .cloned()
                    .unwrap_or_default()
            } else {
                return None;
            }
        }
    })
}

fn downward_files(
    pod: &Pod,
    items: &[k8s_openapi::api::core::v1::DownwardAPIVolumeFile],
    default_mode: u32,
) -> Vec<File> {
    items
        .iter()
        .filter_map(|it| {
            let value = if let Some(f) = &it.field_ref {
                field_path_value(pod, &f.field_path)?
            } else if let Some(r) = &it.resource_field_ref {
                resource_field_value(
                    pod,
                    r.container_name.as_deref(),
                    &r.resource,
                    r.divisor.as_ref().map(|d| d.0.as_str()),
                )?
            } else {
                return None;
            };
            Some((
                it.path.clone(),
                value.into_bytes(),
                it.mode.map(|m| m as u32).unwrap_or(default_mode),
            ))
        })
        .collect()
}

/// A container's resource value (`limits.cpu`, `requests.memory`, …) divided by `divisor`, rounded up.
pub fn resource_field_value(
    pod: &Pod,
    container: Option<&str>,
    resource: &str,
    divisor: Option<&str>,
) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    let c = match container {
        Some(n) if !n.is_empty() => spec.containers.iter().find(|c| c.name == n)?,
        _ => spec.containers.first()?,
    };
    let (kind, name) = resource.split_once('.')?;
    let r = c.resources.as_ref();
    let q = match kind {
        "limits" => r
            .and_then(|r| r.limits.as_ref())
            .and_then(|m| m.get(name))
            .map(|q| q.0.clone()),
        "requests" => r
            .and_then(|r| r.requests.as_ref())
            .and_then(|m| m.get(name))
            .map(|q| q.0.clone()),
        _ => return None,
    };
    // An unset limit reports the node's allocatable; without it, report 0 for requests.
    let nanos = q
        .and_then(|q| skiff_api::validation::parse_quantity(&q).ok())
        .map(|q| q.nanos)
        .unwrap_or(0);
    let div = divisor
        .and_then(|d| skiff_api::validation::parse_quantity(d).ok())
        .map(|d| d.nanos)
        .filter(|d| *d > 0)
        .unwrap_or(1_000_000_000);
    Some(((nanos + div - 1) / div).to_string())
}

/// Writes `files` into `dir` atomically: a fresh timestamped directory,
/// published by renaming a `..data` symlink over the old one.
pub fn write_atomic(dir: &Path, files: &[File]) -> Result<(), VolumeError> {
    std::fs::create_dir_all(dir).map_err(io(format!("creating {}", dir.display())))?;
    let stamp = format!("..{}", jiff::Timestamp::now().as_nanosecond());
    let ts_dir = dir.join(&stamp);
    std::fs::create_dir_all(&ts_dir).map_err(io(format!("creating {}", ts_dir.display())))?;
    for (rel, content, mode) in files {
        if rel.starts_with('/') || rel.split('/').any(|p| p == "..") {
            return Err(VolumeError::Io {
                context: format!("volume item path {rel:?}"),
                source: std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    "must be relative and may not contain '..'",
                ),
            });
        }
        let p = ts_dir.join(rel);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)
                .map_err(io(format!("creating {}", parent.display())))?;
        }
        std::fs::write(&p, content).map_err(io(format!("writing {}", p.display())))?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(*mode))
            .map_err(io(format!("chmod {}", p.display())))?;
    }
    let tmp_link = dir.join("..data_tmp");
    let _ = std::fs::remove_file(&tmp_link);
    std::os::unix::fs::symlink(&stamp, &tmp_link).map_err(io("linking ..data"))?;
    let old = std::fs::read_link(dir.join("..data")).ok();
    std::fs::rename(&tmp_link, dir.join("..data")).map_err(io("publishing ..data"))?;
    // Top-level names point through ..data.
    let mut tops: Vec<String> = files
        .iter()
        .map(|(rel, _, _)| rel.split('/').next().unwrap_or(rel).to_string())
        .collect();
    tops.sort();
    tops.dedup();
    for top in &tops {
        let link = dir.join(top);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(top), &link)
                .map_err(io(format!("linking {top}")))?;
        }
    }
    // Drop names that are gone and the previous generation.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.starts_with("..") && !tops.contains(&name) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old
        && old != Path::new(&stamp)
    {
        let _ = std::fs::remove_dir_all(dir.join(old));
    }
    Ok(())
}

fn mode(m: Option<i32>) -> u32 {
    m.map(|m| m as u32).unwrap_or(0o644)
}

/// Sets up one volume and returns its host path.
pub fn set_up(
    pod: &Pod,
    pod_dir: &Path,
    volume: &Volume,
    sources: &Sources,
) -> Result<PathBuf, VolumeError> {
    let dir = volume_dir(pod_dir, volume);
    if let Some(ed) = &volume.empty_dir {
        std::fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
            .map_err(io("chmod emptyDir"))?;
        if ed.medium.as_deref() == Some("Memory") && !is_mount_point(&dir) {
            let size = ed
                .size_limit
                .as_ref()
                .and_then(|q| skiff_api::validation::parse_quantity(&q.0).ok())
                .map(|q| format!(",size={}", q.nanos / 1_000_000_000))
                .unwrap_or_default();
            let opts = format!("mode=1777{size}");
            nix::mount::mount(
                Some("tmpfs"),
                &dir,
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                Some(opts.as_str()),
            )
            .map_err(|e| VolumeError::Io {
                context: "mounting tmpfs for emptyDir".into(),
                source: e.into(),
            })?;
        }
        return Ok(dir);
    }
    if let Some(hp) = &volume.host_path {
        return host_path(&hp.path, hp.type_.as_deref().unwrap_or(""));
    }
    if let Some(claim) = claim_name(pod, volume) {
        let ns = pod.metadata.namespace.as_deref().unwrap_or("");
        let c = resolve_claim(ns, &claim, sources)?;
        if c.must_exist && std::fs::symlink_metadata(&c.path).is_err() {
            return Err(VolumeError::LocalPathMissing(c.path));
        }
        return host_path(&c.path, &c.type_);
    }
    let files = if let Some(cm) = &volume.config_map {
        items_files(
            "configmap",
            &cm.name,
            sources.config_maps.get(&cm.name),
            cm.items.as_ref(),
            mode(cm.default_mode),
            cm.optional == Some(true),
        )?
    } else if let Some(s) = &volume.secret {
        let name = s.secret_name.clone().unwrap_or_default();
        items_files(
            "secret",
            &name,
            sources.secrets.get(&name),
            s.items.as_ref(),
            mode(s.default_mode),
            s.optional == Some(true),
        )?
    } else if let Some(d) = &volume.downward_api {
        downward_files(
            pod,
            d.items.as_deref().unwrap_or_default(),
            mode(d.default_mode),
        )
    } else if let Some(p) = &volume.projected {
        let dm = mode(p.default_mode);
        let mut files = Vec::new();
        for src in p.sources.iter().flatten() {
            if let Some(cm) = &src.config_map {
                files.extend(items_files(
                    "configmap",
                    &cm.name,
                    sources.config_maps.get(&cm.name),
                    cm.items.as_ref(),
                    dm,
                    cm.optional == Some(true),
                )?);
            }
            if let Some(s) = &src.secret {
                files.extend(items_files(
                    "secret",
                    &s.name,
                    sources.secrets.get(&s.name),
                    s.items.as_ref(),
                    dm,
                    s.optional == Some(true),
                )?);
            }
            if let Some(d) = &src.downward_api {
                files.extend(downward_files(
                    pod,
                    d.items.as_deref().unwrap_or_default(),
                    dm,
                ));
            }
        }
        files
    } else {
        return Err(VolumeError::Unsupported(volume.name.clone()));
    };
    write_atomic(&dir, &files)?;
    Ok(dir)
}

fn is_mount_point(dir: &Path) -> bool {
    let s = dir.to_string_lossy();
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|m| m.lines().any(|l| l.split_whitespace().nth(4) == Some(&s)))
        .unwrap_or(false)
}

fn host_path(path: &str, type_: &str) -> Result<PathBuf, VolumeError> {
    use std::os::unix::fs::FileTypeExt;
    let p = PathBuf::from(path);
    let meta = std::fs::metadata(&p);
    let check = |ok: bool, expected: &'static str| {
        if ok {
            Ok(p.clone())
        } else {
            Err(VolumeError::HostPathType {
                path: path.to_string(),
                expected,
            })
        }
    };
    match type_ {
        "" => Ok(p),
        "DirectoryOrCreate" => {
            if meta.is_err() {
                std::fs::create_dir_all(&p).map_err(io(format!("creating {path}")))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755))
                    .map_err(io("chmod"))?;
                return Ok(p);
            }
            check(meta.map(|m| m.is_dir()).unwrap_or(false), "directory")
        }
        "Directory" => check(meta.map(|m| m.is_dir()).unwrap_or(false), "directory"),
        "FileOrCreate" => {
            if meta.is_err() {
                std::fs::OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&p)
                    .map_err(io(format!("creating {path}")))?;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))
                    .map_err(io("chmod"))?;
                return Ok(p);
            }
            check(meta.map(|m| m.is_file()).unwrap_or(false), "file")
        }
        "File" => check(meta.map(|m| m.is_file()).unwrap_or(false), "file"),
        "Socket" => check(
            meta.map(|m| m.file_type().is_socket()).unwrap_or(false),
            "socket",
        ),
        "CharDevice" => check(
            meta.map(|m| m.file_type().is_char_device())
                .unwrap_or(false),
            "character device",
        ),
        "BlockDevice" => check(
            meta.map(|m| m.file_type().is_block_device())
                .unwrap_or(false),
            "block device",
        ),
        _ => Ok(p),
    }
}

/// Tears down a pod's volumes (unmounting tmpfs emptyDirs) and removes its directory.
pub fn tear_down(pod_dir: &Path) {
    let ed = pod_dir.join("volumes").join("kubernetes.io~empty-dir");
    if let Ok(rd) = std::fs::read_dir(&ed) {
        for e in rd.flatten() {
            if is_mount_point(&e.path()) {
                let _ = nix::mount::umount2(&e.path(), nix::mount::MntFlags::MNT_DETACH);
            }
        }
    }
    let _ = std::fs::remove_dir_all(pod_dir);
}

/// The bind mounts a container gets from its volumeMounts; a mount is
/// read-only when it says so or its volume is in `read_only` (see [`read_only_volumes`]).
pub fn container_mounts(
    container: &Container,
    volumes: &BTreeMap<String, PathBuf>,
    read_only: &BTreeSet<String>,
    env: &BTreeMap<String, String>,
) -> Result<Vec<Mount>, VolumeError> {
    let mut out = Vec::new();
    for vm in container.volume_mounts.iter().flatten() {
        let Some(base) = volumes.get(&vm.name) else {
            return Err(VolumeError::Unsupported(vm.name.clone()));
        };
        let sub = match (&vm.sub_path, &vm.sub_path_expr) {
            (Some(s), _) if !s.is_empty() => s.clone(),
            (_, Some(e)) if !e.is_empty() => crate::spec::expand(e, env),
            _ => String::new(),
        };
        let source = if sub.is_empty() {
            base.clone()
        } else {
            let p = base.join(&sub);
            if std::fs::symlink_metadata(&p).is_err() {
                std::fs::create_dir_all(&p)
                    .map_err(io(format!("creating subPath {}", p.display())))?;
            }
            p
        };
        let mut options = vec!["rbind".to_string(), "rprivate".to_string()];
        if vm.read_only == Some(true) || read_only.contains(&vm.name) {
            options.push("ro".into());
        }
        out.push(Mount {
            destination: vm.mount_path.clone(),
            source: source.to_string_lossy().into_owned(),
            kind: "bind".into(),
            options,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Pod {
        serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "labels": {"app": "web", "tier": "fe"}},
            "spec": {"containers": [{"name": "c", "image": "i", "resources": {"limits": {"cpu": "500m", "memory": "64Mi"}}}]}
        }))
        .unwrap()
    }

    fn vol(v: serde_json::Value) -> Volume {
        serde_json::from_value(v).unwrap()
    }

    fn read(p: &Path) -> String {
        std::fs::read_to_string(p).unwrap()
    }

    #[test]
    fn config_map_items_modes_and_atomic_update() {
        let dir = tempfile::tempdir().unwrap();
        let mut sources = Sources::default();
        sources.config_maps.insert(
            "cfg".into(),
            BTreeMap::from([("a".into(), b"1".to_vec()), ("b".into(), b"2".to_vec())]),
        );
        let v = vol(json!({"name": "cfg", "configMap": {"name": "cfg", "defaultMode": 0o600}}));
        let p = set_up(&pod(), dir.path(), &v, &sources).unwrap();
        assert_eq!(read(&p.join("a")), "1");
        assert_eq!(
            std::fs::metadata(p.join("..data/a"))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // An update swaps ..data; a key that went away disappears.
        sources.config_maps.insert(
            "cfg".into(),
            BTreeMap::from([("a".into(), b"new".to_vec())]),
        );
        set_up(&pod(), dir.path(), &v, &sources).unwrap();
        assert_eq!(read(&p.join("a")), "new");
        assert!(std::fs::symlink_metadata(p.join("b")).is_err());
        let gens = std::fs::read_dir(&p)
            .unwrap()
            .filter(|e| {
                e.as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .starts_with("..2")
                    || e.as_ref()
                        .unwrap()
                        .file_name()
                        .to_string_lossy()
                        .starts_with("..1")
            })
            .count();
        assert_eq!(gens, 1, "old generations are removed");

        let items = vol(
            json!({"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "a", "path": "sub/x.conf", "mode": 0o400}]}}),
        );
        let p = set_up(&pod(), &dir.path().join("other"), &items, &sources).unwrap();
        assert_eq!(read(&p.join("sub/x.conf")), "new");
        let missing = vol(
            json!({"name": "cfg", "configMap": {"name": "cfg", "items": [{"key": "zzz", "path": "z"}]}}),
        );
        let e = set_up(&pod(), &dir.path().join("third"), &missing, &sources).unwrap_err();
        assert_eq!(
            e.to_string(),
            "configmap references non-existent config key: zzz"
        );
    }

    #[test]
    fn missing_sources_fail_unless_optional() {
        let dir = tempfile::tempdir().unwrap();
        let s = vol(json!({"name": "s", "secret": {"secretName": "nope"}}));
        assert_eq!(
            set_up(&pod(), dir.path(), &s, &Sources::default())
                .unwrap_err()
                .to_string(),
            "secret \"nope\" not found"
        );
        let s = vol(json!({"name": "s", "secret": {"secretName": "nope", "optional": true}}));
        assert!(set_up(&pod(), dir.path(), &s, &Sources::default()).is_ok());
    }

    #[test]
    fn downward_api_renders_labels_and_resources() {
        let dir = tempfile::tempdir().unwrap();
        let v = vol(json!({"name": "info", "downwardAPI": {"items": [
            {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            {"path": "name", "fieldRef": {"fieldPath": "metadata.name"}},
            {"path": "app", "fieldRef": {"fieldPath": "metadata.labels['app']"}},
            {"path": "cpu", "resourceFieldRef": {"containerName": "c", "resource": "limits.cpu", "divisor": "1m"}},
            {"path": "mem", "resourceFieldRef": {"containerName": "c", "resource": "limits.memory", "divisor": "1Mi"}}
        ]}}));
        let p = set_up(&pod(), dir.path(), &v, &Sources::default()).unwrap();
        assert_eq!(read(&p.join("labels")), "app=\"web\"\ntier=\"fe\"");
        assert_eq!(read(&p.join("name")), "web");
        assert_eq!(read(&p.join("app")), "web");
        assert_eq!(read(&p.join("cpu")), "500");
        assert_eq!(read(&p.join("mem")), "64");
    }

    #[test]
    fn host_path_types_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().join("made");
        assert!(host_path(d.to_str().unwrap(), "DirectoryOrCreate").is_ok());
        assert!(d.is_dir());
        let e = host_path(d.to_str().unwrap(), "File").unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("hostPath type check failed: {} is not a file", d.display())
        );
        let f = dir.path().join("f");
        assert!(host_path(f.to_str().unwrap(), "FileOrCreate").is_ok());
        assert!(f.is_file());
        assert!(host_path(dir.path().join("nope").to_str().unwrap(), "Directory").is_err());
    }

    #[test]
    fn volume_mounts_become_bind_mounts_with_sub_paths() {
        let dir = tempfile::tempdir().unwrap();
        let vols = BTreeMap::from([("work".to_string(), dir.path().to_path_buf())]);
        let c: Container = serde_json::from_value(json!({"name": "c", "volumeMounts": [
            {"name": "work", "mountPath": "/w"},
            {"name": "work", "mountPath": "/ro", "readOnly": true, "subPath": "sub"}
        ]}))
        .unwrap();
        let m = container_mounts(&c, &vols, &BTreeSet::new(), &BTreeMap::new()).unwrap();
        assert_eq!(m[0].destination, "/w");
        assert_eq!(m[0].options, vec!["rbind", "rprivate"]);
        assert_eq!(m[1].options, vec!["rbind", "rprivate", "ro"]);
        assert!(
            dir.path().join("sub").is_dir(),
            "a missing subPath is created"
        );
    }

    fn claimed(claims: serde_json::Value, volumes: serde_json::Value) -> Sources {
        let mut s = Sources::default();
        for c in claims.as_array().unwrap() {
            let c: PersistentVolumeClaim = serde_json::from_value(c.clone()).unwrap();
            s.claims.insert(c.metadata.name.clone().unwrap(), c);
        }
        for v in volumes.as_array().unwrap() {
            let v: PersistentVolume = serde_json::from_value(v.clone()).unwrap();
            s.persistent_volumes
                .insert(v.metadata.name.clone().unwrap(), v);
        }
        s
    }

    #[test]
    fn claims_resolve_to_their_bound_volumes_path_or_say_why_not() {
        let bound = |name: &str, pv: &str| json!({"metadata": {"name": name}, "spec": {"volumeName": pv}, "status": {"phase": "Bound"}});
        let sources = claimed(
            json!([
                bound("data", "pvc-1"),
                bound("disk", "local-1"),
                bound("lost", "pvc-gone"),
                bound("nfs", "nfs-1"),
                {"metadata": {"name": "pending"}, "spec": {}, "status": {"phase": "Pending"}},
                {"metadata": {"name": "half"}, "spec": {"volumeName": "pvc-1"}, "status": {"phase": "Pending"}},
            ]),
            json!([
                {"metadata": {"name": "pvc-1"}, "spec": {"hostPath": {"path": "/s/pvc-1_default_data", "type": "DirectoryOrCreate"}}},
                {"metadata": {"name": "local-1"}, "spec": {"local": {"path": "/mnt/disk1"}}},
                {"metadata": {"name": "nfs-1"}, "spec": {"nfs": {"server": "x", "path": "/"}}},
            ]),
        );
        let ok = |volume: &str, path: &str, type_: &str, must_exist| {
            Ok::<_, String>(ClaimedPath {
                volume: volume.into(),
                path: path.into(),
                type_: type_.into(),
                must_exist,
            })
        };
        let cases = [
            ("data", ok("pvc-1", "/s/pvc-1_default_data", "DirectoryOrCreate", false)),
            ("disk", ok("local-1", "/mnt/disk1", "", true)),
            ("missing", Err("error processing PVC default/missing: failed to fetch PVC from API server: persistentvolumeclaims \"missing\" not found".into())),
            ("pending", Err("error processing PVC default/pending: PVC is not bound".into())),
            ("half", Err("error processing PVC default/half: PVC is not bound".into())),
            ("lost", Err("error processing PVC default/lost: failed to fetch PV pvc-gone from API server: persistentvolumes \"pvc-gone\" not found".into())),
            ("nfs", Err("volume type of \"nfs-1\" is not supported".into())),
        ];
        for (claim, want) in cases {
            let got = resolve_claim("default", claim, &sources).map_err(|e| e.to_string());
            assert_eq!(got, want, "{claim}");
        }
    }

    #[test]
    fn a_claim_volume_is_the_volumes_host_directory_mounted_read_only_when_asked() {
        let dir = tempfile::tempdir().unwrap();
        let host = dir.path().join("storage").join("pvc-1_default_data");
        let local = dir.path().join("disk");
        let sources = claimed(
            json!([
                {"metadata": {"name": "data"}, "spec": {"volumeName": "pvc-1"}, "status": {"phase": "Bound"}},
                {"metadata": {"name": "web-scratch"}, "spec": {"volumeName": "local-1"}, "status": {"phase": "Bound"}},
            ]),
            json!([
                {"metadata": {"name": "pvc-1"}, "spec": {"hostPath": {"path": host, "type": "DirectoryOrCreate"}}},
                {"metadata": {"name": "local-1"}, "spec": {"local": {"path": local}}},
            ]),
        );
        let p: Pod = serde_json::from_value(json!({
            "metadata": {"name": "web", "namespace": "default", "uid": "u1"},
            "spec": {"containers": [{"name": "c", "image": "i", "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "data", "mountPath": "/logs", "subPath": "logs"},
                {"name": "shared", "mountPath": "/shared"},
                {"name": "scratch", "mountPath": "/scratch"}
            ]}],
            "volumes": [
                {"name": "data", "persistentVolumeClaim": {"claimName": "data"}},
                {"name": "shared", "persistentVolumeClaim": {"claimName": "data", "readOnly": true}},
                {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}
            ]}
        }))
        .unwrap();
        let pod_dir = dir.path().join("pod");
        let mut vols = BTreeMap::new();
        let spec = p.spec.clone().unwrap();
        let volumes = spec.volumes.unwrap();
        // The local volume's path must exist first.
        let e = set_up(&p, &pod_dir, &volumes[2], &sources).unwrap_err();
        assert_eq!(
            e.to_string(),
            format!("path {:?} does not exist", local.display().to_string())
        );
        std::fs::create_dir_all(&local).unwrap();
        for v in &volumes {
            vols.insert(v.name.clone(), set_up(&p, &pod_dir, v, &sources).unwrap());
        }
        assert!(
            host.is_dir(),
            "DirectoryOrCreate makes the provisioned directory"
        );
        assert_eq!(vols["data"], host);
        assert_eq!(vols["scratch"], local);
        let ro = read_only_volumes(&p);
        assert_eq!(ro, BTreeSet::from(["shared".to_string()]));
        let m = container_mounts(&spec.containers[0], &vols, &ro, &BTreeMap::new()).unwrap();
        let got: Vec<(&str, &str, bool)> = m
            .iter()
            .map(|m| {
                (
                    m.destination.as_str(),
                    m.source.as_str(),
                    m.options.contains(&"ro".to_string()),
                )
            })
            .collect();
        let logs = host.join("logs");
        assert_eq!(
            got,
            vec![
                ("/data", host.to_str().unwrap(), false),
                ("/logs", logs.to_str().unwrap(), false),
                ("/shared", host.to_str().unwrap(), true),
                ("/scratch", local.to_str().unwrap(), false),
            ]
        );
        assert!(
            logs.is_dir(),
            "a subPath inside the claim's directory is created"
        );
    }
}
