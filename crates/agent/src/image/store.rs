//! The on-disk image store.
//!
//! Layout under the root (the node's `DATA_DIR/agent/images`):
//!
//! ```text
//! oci-layout                      {"imageLayoutVersion":"1.0.0"}
//! index.json                      OCI index; each manifest descriptor carries
//!                                 org.opencontainers.image.ref.name = the full
//!                                 normalized reference
//! blobs/sha256/<hex>              manifests, configs, layer blobs
//! layers/sha256/<diff-id hex>/    each layer unpacked once, whiteouts converted
//!                                 to overlayfs form
//! flat/sha256/<chain-id hex>/     images flattened into one directory, used only
//!                                 when overlay whiteouts cannot be created
//! tmp/                            staging; everything lands by rename
//! index.lock                      flock serialising writers
//! ```
//!
//! Readers never lock: blobs, layer directories and `index.json` appear by
//! atomic rename, and `index.json` is re-read on every call. Writers (import,
//! [`ImageStore::add_manifest`], remove) hold an exclusive `flock` on
//! `index.lock`, so a `skiff image import` process and the agent can share a
//! store.
//!
//! Whiteouts: `.wh.name` becomes an overlayfs whiteout (a 0/0 character
//! device). An opaque marker (`.wh..wh..opq`) needs the
//! `trusted.overlay.opaque` xattr, which the agent cannot set yet (no xattr
//! API among its dependencies); such images, and any image whose whiteouts
//! cannot be created, are flattened into one directory under `flat/` with a
//! warning, so [`Image::layers`] then has a single entry.

use super::reference::{Reference, try_normalize};
use super::{Image, ImageConfig, ImageError, ImageSummary};
use flate2::read::MultiGzDecoder;
use nix::fcntl::{Flock, FlockArg};
use nix::sys::stat::{Mode, SFlag, makedev, mknod};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// The annotation holding an index entry's reference.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
/// containerd's annotation for the full image name in exported archives.
const CONTAINERD_NAME: &str = "io.containerd.image.name";

const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MT_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MT_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

const OPAQUE_MARKER: &str = ".wh..wh..opq";
const WHITEOUT_PREFIX: &str = ".wh.";
const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

/// An OCI content descriptor.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    media_type: String,
    digest: String,
    size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Platform {
    architecture: String,
    os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Index {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    media_type: String,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

impl Default for Index {
    fn default() -> Self {
        Index {
            schema_version: 2,
            media_type: MT_OCI_INDEX.to_string(),
            manifests: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Manifest {
    schema_version: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    media_type: String,
    config: Descriptor,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

/// One entry of a `docker save` manifest.json.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerSaveEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    #[serde(default)]
    layers: Vec<String>,
}

/// The parts of an image config file we read.
#[derive(Debug, Default, Deserialize)]
struct ConfigFile {
    #[serde(default)]
    config: Option<ContainerConfig>,
    #[serde(default)]
    rootfs: Option<RootFs>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ContainerConfig {
    #[serde(default)]
    entrypoint: Option<Vec<String>>,
    #[serde(default)]
    cmd: Option<Vec<String>>,
    #[serde(default)]
    env: Option<Vec<String>>,
    #[serde(default)]
    working_dir: Option<String>,
    #[serde(default)]
    user: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct RootFs {
    #[serde(default)]
    diff_ids: Vec<String>,
}

/// How a layer is applied to its destination directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Apply {
    /// Into its own directory, whiteouts converted to overlayfs form.
    Overlay,
    /// On top of the lower layers in one directory, whiteouts applied.
    Flatten,
}

/// Why unpacking failed: overlay whiteouts unsupported, or a real error.
enum UnpackError {
    Whiteout(String),
    Other(ImageError),
}

impl From<ImageError> for UnpackError {
    fn from(e: ImageError) -> Self {
        UnpackError::Other(e)
    }
}

fn io_err(context: impl Into<String>) -> impl FnOnce(io::Error) -> ImageError {
    let context = context.into();
    move |source| ImageError::Io { context, source }
}

fn invalid(msg: impl Into<String>) -> ImageError {
    ImageError::Invalid(msg.into())
}

/// The image store of one node.
#[derive(Debug, Clone)]
pub struct ImageStore {
    root: PathBuf,
    force_flatten: bool,
}

static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// A staging path removed on drop unless it was renamed into place.
struct TempPath(PathBuf);

impl Drop for TempPath {
    fn drop(&mut self) {
        match fs::symlink_metadata(&self.0) {
            Ok(m) if m.is_dir() => {
                let _ = fs::remove_dir_all(&self.0);
            }
            Ok(_) => {
                let _ = fs::remove_file(&self.0);
            }
            Err(_) => {}
        }
    }
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Self, ImageError> {
        for dir in ["", "blobs/sha256", "layers/sha256", "flat/sha256", "tmp"] {
            let d = root.join(dir);
            fs::create_dir_all(&d).map_err(io_err(format!("creating {}", d.display())))?;
        }
        let store = Self {
            root: root.to_path_buf(),
            force_flatten: false,
        };
        let layout = root.join("oci-layout");
        if !layout.exists() {
            store.write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(store)
    }

    /// Always flatten images into one directory instead of stacking layers
    /// (what happens automatically when overlay whiteouts cannot be made).
    pub fn with_flatten(mut self, flatten: bool) -> Self {
        self.force_flatten = flatten;
        self
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Imports an OCI or `docker save` archive (plain or gzip); returns the
    /// normalized references imported (the config digest for an untagged image).
    pub fn import(&self, archive: &Path) -> Result<Vec<String>, ImageError> {
        let _lock = self.lock()?;
        let staging = self.temp_path("import");
        fs::create_dir(&staging.0).map_err(io_err("creating staging dir"))?;
        let file = File::open(archive).map_err(io_err(format!("opening {}", archive.display())))?;
        let reader = decompress(BufReader::new(file))?;
        extract_archive(reader, &staging.0)?;
        let dir = &staging.0;
        if dir.join("index.json").is_file() {
            self.import_oci(dir)
        } else if dir.join("manifest.json").is_file() {
            self.import_docker(dir)
        } else {
            Err(invalid(format!(
                "{}: neither an OCI archive (index.json) nor a docker save archive (manifest.json)",
                archive.display()
            )))
        }
    }

    /// Every image, one summary per manifest, sorted by reference.
    pub fn list(&self) -> Result<Vec<ImageSummary>, ImageError> {
        let index = self.read_index()?;
        let mut out: Vec<(String, ImageSummary)> = Vec::new();
        for desc in &index.manifests {
            let manifest = self.read_manifest(&desc.digest)?;
            let reference = desc.annotations.get(REF_NAME).cloned();
            if let Some((_, s)) = out.iter_mut().find(|(d, _)| *d == desc.digest) {
                s.references.extend(reference);
                s.references.sort();
                continue;
            }
            out.push((
                desc.digest.clone(),
                ImageSummary {
                    references: reference.into_iter().collect(),
                    id: manifest.config.digest.clone(),
                    size: manifest.layers.iter().map(|l| l.size).sum(),
                },
            ));
        }
        let mut out: Vec<ImageSummary> = out.into_iter().map(|(_, s)| s).collect();
        out.sort_by(|a, b| (&a.references, &a.id).cmp(&(&b.references, &b.id)));
        Ok(out)
    }

    /// The image a reference names, unpacked and ready to run. Also accepts a
    /// config digest (`sha256:…`, the image ID).
    pub fn resolve(&self, reference: &str) -> Result<Image, ImageError> {
        let (desc, name) = self.find(reference)?;
        self.image_for(&desc.digest, name)
    }

    /// Removes the index entries a reference names (by reference, or by image
    /// ID for every reference of that image) and then every blob and unpacked
    /// layer no remaining image uses. Returns the references removed.
    pub fn remove(&self, reference: &str) -> Result<Vec<String>, ImageError> {
        let _lock = self.lock()?;
        let (desc, _) = self.find(reference)?;
        let by_id = reference.starts_with("sha256:");
        let mut index = self.read_index()?;
        let mut removed = Vec::new();
        let target_name = desc.annotations.get(REF_NAME).cloned();
        index.manifests.retain(|d| {
            let gone = if by_id {
                d.digest == desc.digest
            } else {
                d.digest == desc.digest && d.annotations.get(REF_NAME) == target_name.as_ref()
            };
            if gone {
                removed.push(
                    d.annotations
                        .get(REF_NAME)
                        .cloned()
                        .unwrap_or_else(|| d.digest.clone()),
                );
            }
            !gone
        });
        self.write_index(&index)?;
        self.collect_garbage(&index)?;
        Ok(removed)
    }

    /// Stores a pulled image: its manifest (OCI or Docker schema 2), config and
    /// layer blobs (each `(digest, bytes)`), all verified, then tags it as
    /// `reference` and returns it resolved.
    pub fn add_manifest(
        &self,
        reference: &str,
        manifest: &[u8],
        config: &[u8],
        layers: Vec<(String, Vec<u8>)>,
    ) -> Result<Image, ImageError> {
        let name = try_normalize(reference)?;
        let _lock = self.lock()?;
        let parsed: Manifest = serde_json::from_slice(manifest)
            .map_err(|e| invalid(format!("invalid image manifest: {e}")))?;
        self.write_blob_bytes(config, Some(&parsed.config.digest))?;
        for want in &parsed.layers {
            let (_, blob) = layers
                .iter()
                .find(|(d, _)| *d == want.digest)
                .ok_or_else(|| invalid(format!("layer {} not supplied", want.digest)))?;
            self.write_blob_bytes(blob, Some(&want.digest))?;
        }
        let digest = self.write_blob_bytes(manifest, None)?;
        let media_type = if parsed.media_type.is_empty() {
            MT_OCI_MANIFEST.to_string()
        } else {
            parsed.media_type.clone()
        };
        let desc = Descriptor {
            media_type,
            digest,
            size: manifest.len() as u64,
            platform: None,
            annotations: BTreeMap::new(),
        };
        // Unpack (and so verify the diff IDs) before the image becomes visible.
        self.image_for(&desc.digest, name.clone())?;
        self.tag(&desc, Some(&name))?;
        self.image_for(&desc.digest, name)
    }

    // ----- import -----

    fn import_oci(&self, dir: &Path) -> Result<Vec<String>, ImageError> {
        let index: Index = read_json(&dir.join("index.json"))?;
        let mut imported = Vec::new();
        for top in &index.manifests {
            let name = top
                .annotations
                .get(CONTAINERD_NAME)
                .or_else(|| top.annotations.get(REF_NAME))
                .map(|n| try_normalize(n))
                .transpose()?;
            let manifest_desc = self.pick_manifest(dir, top)?;
            let manifest_bytes = read_archive_blob(dir, &manifest_desc.digest)?;
            let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
                .map_err(|e| invalid(format!("invalid image manifest: {e}")))?;
            self.copy_archive_blob(dir, &manifest.config.digest)?;
            for layer in &manifest.layers {
                self.copy_archive_blob(dir, &layer.digest)?;
            }
            let digest = self.write_blob_bytes(&manifest_bytes, Some(&manifest_desc.digest))?;
            let desc = Descriptor {
                media_type: if manifest.media_type.is_empty() {
                    MT_OCI_MANIFEST.to_string()
                } else {
                    manifest.media_type.clone()
                },
                digest,
                size: manifest_bytes.len() as u64,
                platform: None,
                annotations: BTreeMap::new(),
            };
            self.image_for(&desc.digest, name.clone().unwrap_or_default())?;
            self.tag(&desc, name.as_deref())?;
            imported.push(name.unwrap_or_else(|| manifest.config.digest.clone()));
        }
        Ok(imported)
    }

    /// Follows nested indexes to the manifest for this host's platform.
    fn pick_manifest(&self, dir: &Path, desc: &Descriptor) -> Result<Descriptor, ImageError> {
        let mut desc = desc.clone();
        for _ in 0..4 {
            if desc.media_type != MT_OCI_INDEX && desc.media_type != MT_DOCKER_LIST {
                return Ok(desc);
            }
            let bytes = read_archive_blob(dir, &desc.digest)?;
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| invalid(format!("invalid image index: {e}")))?;
            desc = choose_platform(&index.manifests)?;
        }
        Err(invalid("image indexes nested too deeply"))
    }

    fn import_docker(&self, dir: &Path) -> Result<Vec<String>, ImageError> {
        let entries: Vec<DockerSaveEntry> = read_json(&dir.join("manifest.json"))?;
        let mut imported = Vec::new();
        for entry in entries {
            let config_path = archive_member(dir, &entry.config)?;
            let config =
                fs::read(&config_path).map_err(io_err(format!("reading {}", entry.config)))?;
            let config_digest =
                self.write_blob_bytes(&config, named_digest(&entry.config).as_deref())?;
            let mut layers = Vec::new();
            for layer in &entry.layers {
                let path = archive_member(dir, layer)?;
                let (digest, size) = self.write_blob_file(&path, named_digest(layer).as_deref())?;
                let media_type = if is_gzip_file(&path)? {
                    MT_OCI_LAYER_GZIP
                } else {
                    MT_OCI_LAYER
                };
                layers.push(Descriptor {
                    media_type: media_type.to_string(),
                    digest,
                    size,
                    platform: None,
                    annotations: BTreeMap::new(),
                });
            }
            let manifest = Manifest {
                schema_version: 2,
                media_type: MT_OCI_MANIFEST.to_string(),
                config: Descriptor {
                    media_type: MT_OCI_CONFIG.to_string(),
                    digest: config_digest.clone(),
                    size: config.len() as u64,
                    platform: None,
                    annotations: BTreeMap::new(),
                },
                layers,
            };
            let bytes = serde_json::to_vec(&manifest).map_err(|e| invalid(e.to_string()))?;
            let digest = self.write_blob_bytes(&bytes, None)?;
            let desc = Descriptor {
                media_type: MT_OCI_MANIFEST.to_string(),
                digest,
                size: bytes.len() as u64,
                platform: None,
                annotations: BTreeMap::new(),
            };
            let names = entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(|t| try_normalize(t))
                .collect::<Result<Vec<_>, _>>()?;
            self.image_for(&desc.digest, names.first().cloned().unwrap_or_default())?;
            if names.is_empty() {
                self.tag(&desc, None)?;
                imported.push(config_digest);
            }
            for name in names {
                self.tag(&desc, Some(&name))?;
                imported.push(name);
            }
        }
        Ok(imported)
    }

    fn copy_archive_blob(&self, dir: &Path, digest: &str) -> Result<(), ImageError> {
        let path = dir.join(blob_rel_path(digest)?);
        self.write_blob_file(&path, Some(digest))?;
        Ok(())
    }

    // ----- resolve -----

    /// Finds the index entry for a reference or image ID.
    fn find(&self, reference: &str) -> Result<(Descriptor, String), ImageError> {
        let index = self.read_index()?;
        if reference.starts_with("sha256:") {
            for desc in &index.manifests {
                let manifest = self.read_manifest(&desc.digest)?;
                if manifest.config.digest == reference {
                    let name = desc.annotations.get(REF_NAME).cloned().unwrap_or_default();
                    return Ok((desc.clone(), name));
                }
            }
            return Err(ImageError::NotFound(reference.to_string()));
        }
        let parsed = Reference::parse(reference)?;
        let name = parsed.normalized();
        if let Some(desc) = index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME) == Some(&name))
        {
            return Ok((desc.clone(), name));
        }
        // name@digest: any entry of that repository whose manifest has the digest.
        if let Some(digest) = &parsed.digest {
            let repo = parsed.name();
            if let Some(desc) = index.manifests.iter().find(|d| {
                &d.digest == digest
                    && d.annotations
                        .get(REF_NAME)
                        .and_then(|n| Reference::parse(n).ok())
                        .is_some_and(|r| r.name() == repo)
            }) {
                return Ok((desc.clone(), name));
            }
        }
        Err(ImageError::NotFound(reference.to_string()))
    }

    fn image_for(&self, manifest_digest: &str, reference: String) -> Result<Image, ImageError> {
        let manifest = self.read_manifest(manifest_digest)?;
        let config_bytes = self.read_blob(&manifest.config.digest)?;
        let config: ConfigFile = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid(format!("invalid image config: {e}")))?;
        let diff_ids = config
            .rootfs
            .as_ref()
            .map(|r| r.diff_ids.clone())
            .unwrap_or_default();
        if diff_ids.len() != manifest.layers.len() {
            return Err(invalid(format!(
                "image config lists {} layers, the manifest {}",
                diff_ids.len(),
                manifest.layers.len()
            )));
        }
        let layers = self.prepare_layers(&manifest.layers, &diff_ids)?;
        let c = config.config.unwrap_or_default();
        Ok(Image {
            id: manifest.config.digest.clone(),
            reference,
            config: ImageConfig {
                entrypoint: c.entrypoint.unwrap_or_default(),
                cmd: c.cmd.unwrap_or_default(),
                env: c.env.unwrap_or_default(),
                working_dir: c.working_dir.unwrap_or_default(),
                user: c.user.unwrap_or_default(),
            },
            layers,
            size: manifest.layers.iter().map(|l| l.size).sum(),
        })
    }

    /// Makes sure every layer is unpacked; returns the directories, lowest first.
    fn prepare_layers(
        &self,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<Vec<PathBuf>, ImageError> {
        // An image already flattened (forced, or whiteouts unsupported) stays so.
        let flat = self.digest_dir("flat", &chain_id(diff_ids))?;
        if flat.is_dir() {
            return Ok(vec![flat]);
        }
        if !self.force_flatten {
            match self.prepare_overlay(layers, diff_ids) {
                Ok(dirs) => return Ok(dirs),
                Err(UnpackError::Other(e)) => return Err(e),
                Err(UnpackError::Whiteout(why)) => {
                    tracing::warn!(
                        "cannot create overlay whiteouts ({why}); flattening the image into one directory"
                    );
                }
            }
        }
        self.prepare_flat(layers, diff_ids).map(|d| vec![d])
    }

    fn prepare_overlay(
        &self,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<Vec<PathBuf>, UnpackError> {
        let mut dirs = Vec::new();
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let dir = self.digest_dir("layers", diff_id)?;
            if !dir.is_dir() {
                let staging = self.temp_path("layer");
                fs::create_dir(&staging.0).map_err(io_err("creating layer staging dir"))?;
                let mut written = HashSet::new();
                self.apply_layer(layer, diff_id, &staging.0, Apply::Overlay, &mut written)?;
                place_dir(&staging.0, &dir)?;
            }
            dirs.push(dir);
        }
        Ok(dirs)
    }

    fn prepare_flat(
        &self,
        layers: &[Descriptor],
        diff_ids: &[String],
    ) -> Result<PathBuf, ImageError> {
        let chain = chain_id(diff_ids);
        let dir = self.digest_dir("flat", &chain)?;
        if dir.is_dir() {
            return Ok(dir);
        }
        let staging = self.temp_path("flat");
        fs::create_dir(&staging.0).map_err(io_err("creating flat staging dir"))?;
        for (layer, diff_id) in layers.iter().zip(diff_ids) {
            let mut written = HashSet::new();
            match self.apply_layer(layer, diff_id, &staging.0, Apply::Flatten, &mut written) {
                Ok(()) => {}
                Err(UnpackError::Other(e)) => return Err(e),
                Err(UnpackError::Whiteout(w)) => return Err(invalid(w)),
            }
        }
        place_dir(&staging.0, &dir)?;
        Ok(dir)
    }

    /// Unpacks one layer blob into `dest`, checking its diff ID.
    fn apply_layer(
        &self,
        layer: &Descriptor,
        diff_id: &str,
        dest: &Path,
        mode: Apply,
        written: &mut HashSet<PathBuf>,
    ) -> Result<(), UnpackError> {
        let path = self.root.join(blob_rel_path(&layer.digest)?);
        let file = File::open(&path).map_err(io_err(format!("opening layer {}", layer.digest)))?;
        let reader = HashingReader::new(decompress(BufReader::new(file))?);
        let mut archive = tar::Archive::new(reader);
        archive.set_preserve_permissions(true);
        archive.set_preserve_ownerships(true);
        archive.set_preserve_mtime(true);
        archive.set_unpack_xattrs(true);
        archive.set_overwrite(true);
        unpack_entries(&mut archive, dest, mode, written)
            .map_err(|e| prefix_unpack(e, &layer.digest))?;
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink())
            .map_err(io_err(format!("reading layer {}", layer.digest)))?;
        let actual = rest.digest();
        if actual != diff_id {
            return Err(ImageError::Digest {
                expected: diff_id.to_string(),
                actual,
            }
            .into());
        }
        Ok(())
    }

    // ----- blobs and index -----

    fn read_index(&self) -> Result<Index, ImageError> {
        let path = self.root.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| invalid(format!("{}: {e}", path.display()))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Index::default()),
            Err(e) => Err(io_err("reading index.json")(e)),
        }
    }

    fn write_index(&self, index: &Index) -> Result<(), ImageError> {
        let bytes = serde_json::to_vec_pretty(index).map_err(|e| invalid(e.to_string()))?;
        self.write_atomic(&self.root.join("index.json"), &bytes)
    }

    /// Points `name` at `desc` (replacing what it named before), under the lock.
    fn tag(&self, desc: &Descriptor, name: Option<&str>) -> Result<(), ImageError> {
        let mut index = self.read_index()?;
        let mut desc = desc.clone();
        match name {
            Some(name) => {
                desc.annotations
                    .insert(REF_NAME.to_string(), name.to_string());
                let named =
                    |d: &Descriptor| d.annotations.get(REF_NAME).map(String::as_str) == Some(name);
                if let Some(existing) = index.manifests.iter_mut().find(|d| named(d)) {
                    if *existing == desc {
                        return Ok(());
                    }
                    *existing = desc;
                    return self.write_index(&index);
                }
            }
            None => {
                if index.manifests.iter().any(|d| d.digest == desc.digest) {
                    return Ok(());
                }
            }
        }
        index.manifests.push(desc);
        self.write_index(&index)
    }

    fn read_manifest(&self, digest: &str) -> Result<Manifest, ImageError> {
        let bytes = self.read_blob(digest)?;
        serde_json::from_slice(&bytes)
            .map_err(|e| invalid(format!("invalid image manifest {digest}: {e}")))
    }

    /// Reads and verifies a blob.
    fn read_blob(&self, digest: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.root.join(blob_rel_path(digest)?);
        let bytes = fs::read(&path).map_err(io_err(format!("reading blob {digest}")))?;
        check_digest(digest, &sha256_digest(&bytes))?;
        Ok(bytes)
    }

    fn write_blob_bytes(&self, bytes: &[u8], expected: Option<&str>) -> Result<String, ImageError> {
        let digest = sha256_digest(bytes);
        if let Some(expected) = expected {
            check_digest(expected, &digest)?;
        }
        let path = self.root.join(blob_rel_path(&digest)?);
        if !path.exists() {
            self.write_atomic(&path, bytes)?;
        }
        Ok(digest)
    }

    fn write_blob_file(
        &self,
        src: &Path,
        expected: Option<&str>,
    ) -> Result<(String, u64), ImageError> {
        let mut file = File::open(src).map_err(io_err(format!("opening {}", src.display())))?;
        let mut hasher = HashingReader::new(&mut file);
        let size = io::copy(&mut hasher, &mut io::sink())
            .map_err(io_err(format!("reading {}", src.display())))?;
        let digest = hasher.digest();
        if let Some(expected) = expected {
            check_digest(expected, &digest)?;
        }
        let path = self.root.join(blob_rel_path(&digest)?);
        if !path.exists() {
            let tmp = self.temp_path("blob");
            fs::copy(src, &tmp.0).map_err(io_err(format!("copying {}", src.display())))?;
            File::open(&tmp.0)
                .and_then(|f| f.sync_all())
                .map_err(io_err("syncing blob"))?;
            // The copy might differ if the source changed under us.
            let mut check = HashingReader::new(File::open(&tmp.0).map_err(io_err("reading blob"))?);
            io::copy(&mut check, &mut io::sink()).map_err(io_err("reading blob"))?;
            check_digest(&digest, &check.digest())?;
            fs::rename(&tmp.0, &path).map_err(io_err(format!("placing blob {digest}")))?;
        }
        Ok((digest, size))
    }

    /// Writes a file by temp file + fsync + rename.
    fn write_atomic(&self, path: &Path, bytes: &[u8]) -> Result<(), ImageError> {
        let tmp = self.temp_path("write");
        let mut f = File::create(&tmp.0).map_err(io_err("creating temp file"))?;
        f.write_all(bytes)
            .and_then(|()| f.sync_all())
            .map_err(io_err(format!("writing {}", path.display())))?;
        fs::rename(&tmp.0, path).map_err(io_err(format!("renaming into {}", path.display())))
    }

    /// `root/<area>/sha256/<hex>` for a digest.
    fn digest_dir(&self, area: &str, digest: &str) -> Result<PathBuf, ImageError> {
        let rel = blob_rel_path(digest)?;
        let rel = rel.strip_prefix("blobs").unwrap_or(&rel);
        Ok(self.root.join(area).join(rel))
    }

    fn temp_path(&self, kind: &str) -> TempPath {
        let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        TempPath(
            self.root
                .join("tmp")
                .join(format!("{kind}-{}-{n}-{nanos}", std::process::id())),
        )
    }

    fn lock(&self) -> Result<Flock<File>, ImageError> {
        let path = self.root.join("index.lock");
        let file = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(io_err("opening index.lock"))?;
        Flock::lock(file, FlockArg::LockExclusive).map_err(|(_, errno)| ImageError::Io {
            context: "locking index.lock".into(),
            source: io::Error::from(errno),
        })
    }

    /// Deletes blobs and unpacked layers no index entry uses (caller holds the lock).
    fn collect_garbage(&self, index: &Index) -> Result<(), ImageError> {
        let mut blobs = HashSet::new();
        let mut layer_dirs = HashSet::new();
        let mut flat_dirs = HashSet::new();
        for desc in &index.manifests {
            blobs.insert(hex_of(&desc.digest).to_string());
            let manifest = self.read_manifest(&desc.digest)?;
            blobs.insert(hex_of(&manifest.config.digest).to_string());
            for layer in &manifest.layers {
                blobs.insert(hex_of(&layer.digest).to_string());
            }
            let config: ConfigFile =
                serde_json::from_slice(&self.read_blob(&manifest.config.digest)?)
                    .map_err(|e| invalid(format!("invalid image config: {e}")))?;
            let diff_ids = config.rootfs.map(|r| r.diff_ids).unwrap_or_default();
            for d in &diff_ids {
                layer_dirs.insert(hex_of(d).to_string());
            }
            flat_dirs.insert(hex_of(&chain_id(&diff_ids)).to_string());
        }
        for (dir, keep) in [
            ("blobs/sha256", &blobs),
            ("layers/sha256", &layer_dirs),
            ("flat/sha256", &flat_dirs),
        ] {
            let dir = self.root.join(dir);
            let entries =
                fs::read_dir(&dir).map_err(io_err(format!("listing {}", dir.display())))?;
            for entry in entries.flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                if keep.contains(&name) {
                    continue;
                }
                let path = entry.path();
                let result = if path.is_dir() {
                    fs::remove_dir_all(&path)
                } else {
                    fs::remove_file(&path)
                };
                result.map_err(io_err(format!("removing {}", path.display())))?;
            }
        }
        Ok(())
    }
}

// ----- helpers -----

/// Wraps a reader, hashing everything read through it.
struct HashingReader<R> {
    inner: R,
    hasher: Sha256,
}

impl<R: Read> HashingReader<R> {
    fn new(inner: R) -> Self {
        Self {
            inner,
            hasher: Sha256::new(),
        }
    }
    fn digest(&self) -> String {
        format!("sha256:{}", hex::encode(self.hasher.clone().finalize()))
    }
}

impl<R: Read> Read for HashingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hasher.update(&buf[..n]);
        Ok(n)
    }
}

fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn check_digest(expected: &str, actual: &str) -> Result<(), ImageError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ImageError::Digest {
            expected: expected.to_string(),
            actual: actual.to_string(),
        })
    }
}

fn hex_of(digest: &str) -> &str {
    digest.strip_prefix("sha256:").unwrap_or(digest)
}

/// `blobs/sha256/<hex>` for a valid sha256 digest.
fn blob_rel_path(digest: &str) -> Result<PathBuf, ImageError> {
    match digest.strip_prefix("sha256:") {
        Some(hex)
            if hex.len() == 64
                && hex
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
        {
            Ok(Path::new("blobs/sha256").join(hex))
        }
        _ => Err(invalid(format!("unsupported or invalid digest {digest:?}"))),
    }
}

/// The digest a `docker save` member's name states (`blobs/sha256/<hex>`,
/// `<hex>.json`), if any.
fn named_digest(member: &str) -> Option<String> {
    let file = Path::new(member).file_name()?.to_str()?;
    let hex = file.strip_suffix(".json").unwrap_or(file);
    let parent_is_sha = Path::new(member)
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|p| p == "sha256");
    let is_hex = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit());
    (is_hex && (parent_is_sha || file.ends_with(".json")))
        .then(|| format!("sha256:{}", hex.to_lowercase()))
}

/// OCI chain ID of a stack of diff IDs.
fn chain_id(diff_ids: &[String]) -> String {
    let mut chain = String::new();
    for d in diff_ids {
        chain = if chain.is_empty() {
            d.clone()
        } else {
            sha256_digest(format!("{chain} {d}").as_bytes())
        };
    }
    chain
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

fn choose_platform(manifests: &[Descriptor]) -> Result<Descriptor, ImageError> {
    choose_platform_for(manifests, host_arch())
}

/// linux/`arch`, else linux/amd64, else the only entry.
fn choose_platform_for(manifests: &[Descriptor], arch: &str) -> Result<Descriptor, ImageError> {
    let is = |d: &&Descriptor, want: &str| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == "linux" && p.architecture == want)
    };
    manifests
        .iter()
        .find(|d| is(d, arch))
        .or_else(|| manifests.iter().find(|d| is(d, "amd64")))
        .or_else(|| (manifests.len() == 1).then(|| &manifests[0]))
        .cloned()
        .ok_or_else(|| invalid(format!("no image for linux/{arch} in the image index")))
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, ImageError> {
    let bytes = fs::read(path).map_err(io_err(format!("reading {}", path.display())))?;
    serde_json::from_slice(&bytes).map_err(|e| invalid(format!("{}: {e}", path.display())))
}

/// Reads and verifies a blob of an unpacked OCI archive.
fn read_archive_blob(dir: &Path, digest: &str) -> Result<Vec<u8>, ImageError> {
    let bytes = fs::read(dir.join(blob_rel_path(digest)?))
        .map_err(io_err(format!("reading blob {digest}")))?;
    check_digest(digest, &sha256_digest(&bytes))?;
    Ok(bytes)
}

/// A member path of an unpacked archive, which must stay inside it.
fn archive_member(dir: &Path, member: &str) -> Result<PathBuf, ImageError> {
    let rel = safe_relative(Path::new(member))?;
    Ok(dir.join(rel))
}

/// Rejects absolute paths and `..`; drops `.` components.
fn safe_relative(path: &Path) -> Result<PathBuf, ImageError> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) | Component::ParentDir => {
                return Err(invalid(format!(
                    "archive entry {:?} escapes the destination (absolute or `..` path)",
                    path.display().to_string()
                )));
            }
        }
    }
    Ok(out)
}

fn is_gzip_file(path: &Path) -> Result<bool, ImageError> {
    let mut magic = [0u8; 2];
    let mut f = File::open(path).map_err(io_err(format!("opening {}", path.display())))?;
    let n = f
        .read(&mut magic)
        .map_err(io_err(format!("reading {}", path.display())))?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

/// Gzip or plain, by the magic bytes.
fn decompress<R: BufRead + 'static>(mut reader: R) -> Result<Box<dyn Read>, ImageError> {
    let head = reader.fill_buf().map_err(io_err("reading archive"))?;
    if head.starts_with(&[0x1f, 0x8b]) {
        Ok(Box::new(MultiGzDecoder::new(reader)))
    } else if head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Err(invalid(
            "zstd-compressed archives and layers are not supported",
        ))
    } else {
        Ok(Box::new(reader))
    }
}

/// Extracts an image archive (not a layer) into a staging directory.
fn extract_archive(reader: Box<dyn Read>, dest: &Path) -> Result<(), ImageError> {
    let mut archive = tar::Archive::new(reader);
    let entries = archive.entries().map_err(io_err("reading archive"))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("reading archive"))?;
        let path = entry
            .path()
            .map_err(io_err("reading archive entry path"))?
            .into_owned();
        safe_relative(&path)?;
        if let Some(link) = entry.link_name().map_err(io_err("reading link name"))?
            && entry.header().entry_type().is_hard_link()
        {
            safe_relative(&link)?;
        }
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir() || kind.is_symlink() || kind.is_hard_link()) {
            continue;
        }
        entry
            .unpack_in(dest)
            .map_err(io_err(format!("extracting {}", path.display())))?;
    }
    Ok(())
}

fn prefix_unpack(e: UnpackError, digest: &str) -> UnpackError {
    match e {
        UnpackError::Other(ImageError::Invalid(m)) => {
            UnpackError::Other(invalid(format!("layer {digest}: {m}")))
        }
        other => other,
    }
}

/// Applies a layer's tar entries to `dest`.
fn unpack_entries<R: Read>(
    archive: &mut tar::Archive<R>,
    dest: &Path,
    mode: Apply,
    written: &mut HashSet<PathBuf>,
) -> Result<(), UnpackError> {
    let entries = archive.entries().map_err(io_err("reading layer"))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err("reading layer"))?;
        let raw = entry
            .path()
            .map_err(io_err("reading layer entry path"))?
            .into_owned();
        let rel = safe_relative(&raw)?;
        let kind = entry.header().entry_type();
        if kind.is_hard_link() {
            let link = entry
                .link_name()
                .map_err(io_err("reading link name"))?
                .ok_or_else(|| invalid("hard link without a target"))?;
            safe_relative(&link)?;
        }
        if rel.as_os_str().is_empty() {
            continue;
        }
        let name = rel
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        let parent_rel = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if name == OPAQUE_MARKER {
            let dir = ensure_dir(dest, &parent_rel)?;
            match mode {
                Apply::Overlay => set_opaque(&dir).map_err(UnpackError::Whiteout)?,
                Apply::Flatten => clear_lower(&dir, &parent_rel, written)?,
            }
            continue;
        }
        if let Some(target) = name.strip_prefix(WHITEOUT_PREFIX) {
            if target.is_empty() || target == "." || target == ".." {
                return Err(invalid(format!("invalid whiteout {}", rel.display())).into());
            }
            let dir = ensure_dir(dest, &parent_rel)?;
            let victim = dir.join(target);
            remove_any(&victim)?;
            if mode == Apply::Overlay {
                mknod(
                    &victim,
                    SFlag::S_IFCHR,
                    Mode::from_bits_truncate(0o000),
                    makedev(0, 0),
                )
                .map_err(|e| UnpackError::Whiteout(format!("mknod {}: {e}", victim.display())))?;
            }
            written.insert(parent_rel.join(target));
            continue;
        }
        let target = dest.join(&rel);
        // A new entry replaces what is there, except a directory over a directory.
        if let Ok(meta) = fs::symlink_metadata(&target)
            && !(kind.is_dir() && meta.is_dir())
        {
            remove_any(&target)?;
        }
        if kind.is_character_special() || kind.is_block_special() || kind.is_fifo() {
            ensure_dir(dest, &parent_rel)?;
            make_special(&mut entry, &target)?;
        } else {
            entry
                .unpack_in(dest)
                .map_err(io_err(format!("unpacking {}", rel.display())))?;
        }
        written.insert(rel);
    }
    Ok(())
}

/// Creates `rel` (and parents) under `dest`, refusing to follow a symlink out.
fn ensure_dir(dest: &Path, rel: &Path) -> Result<PathBuf, ImageError> {
    let dir = dest.join(rel);
    fs::create_dir_all(&dir).map_err(io_err(format!("creating {}", dir.display())))?;
    let canon = dir.canonicalize().map_err(io_err("canonicalizing"))?;
    let root = dest.canonicalize().map_err(io_err("canonicalizing"))?;
    if !canon.starts_with(&root) {
        return Err(invalid(format!("{} escapes the layer", rel.display())));
    }
    Ok(dir)
}

fn remove_any(path: &Path) -> Result<(), ImageError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(_) => Ok(()),
    }
    .map_err(io_err(format!("removing {}", path.display())))
}

/// Flatten mode's opaque directory: drop what lower layers put there.
fn clear_lower(dir: &Path, rel: &Path, written: &HashSet<PathBuf>) -> Result<(), ImageError> {
    let entries = fs::read_dir(dir).map_err(io_err(format!("listing {}", dir.display())))?;
    for entry in entries.flatten() {
        if !written.contains(&rel.join(entry.file_name())) {
            remove_any(&entry.path())?;
        }
    }
    Ok(())
}

/// Marks a directory opaque for overlayfs (`trusted.overlay.opaque=y`).
///
/// The agent has no xattr API yet (std has none, nix 0.32 has none, and the
/// `xattr` crate is not a workspace dependency; the tar crate only sets xattrs
/// on files, not directories), so this reports the marker as unsupported and
/// the image is flattened instead.
fn set_opaque(dir: &Path) -> Result<(), String> {
    xattr::set(dir, OPAQUE_XATTR, b"y")
        .map_err(|e| format!("cannot set {OPAQUE_XATTR} on {}: {e}", dir.display()))
}

/// Creates a device node or FIFO from a tar entry.
fn make_special<R: Read>(entry: &mut tar::Entry<'_, R>, target: &Path) -> Result<(), ImageError> {
    let header = entry.header();
    let kind = header.entry_type();
    let mode = header.mode().map_err(io_err("reading mode"))?;
    let (major, minor) = (
        header.device_major().ok().flatten().unwrap_or(0),
        header.device_minor().ok().flatten().unwrap_or(0),
    );
    let flag = if kind.is_character_special() {
        SFlag::S_IFCHR
    } else if kind.is_block_special() {
        SFlag::S_IFBLK
    } else {
        SFlag::S_IFIFO
    };
    mknod(
        target,
        flag,
        Mode::from_bits_truncate(mode & 0o7777),
        makedev(major.into(), minor.into()),
    )
    .map_err(|e| ImageError::Io {
        context: format!("creating device {}", target.display()),
        source: io::Error::from(e),
    })?;
    let uid = header.uid().unwrap_or(0);
    let gid = header.gid().unwrap_or(0);
    std::os::unix::fs::lchown(target, Some(uid as u32), Some(gid as u32))
        .map_err(io_err(format!("chown {}", target.display())))?;
    fs::set_permissions(target, fs::Permissions::from_mode(mode & 0o7777))
        .map_err(io_err(format!("chmod {}", target.display())))
}

/// Renames a staged directory into place; losing a race to another unpacker
/// of the same content is fine.
fn place_dir(staging: &Path, dir: &Path) -> Result<(), ImageError> {
    if let Some(parent) = dir.parent() {
        fs::create_dir_all(parent).map_err(io_err(format!("creating {}", parent.display())))?;
    }
    match fs::rename(staging, dir) {
        Ok(()) => Ok(()),
        Err(_) if dir.is_dir() => Ok(()),
        Err(e) => Err(io_err(format!("placing {}", dir.display()))(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn safe_relative_table() {
        let cases = [
            ("a/b", Some("a/b")),
            ("./a/./b/", Some("a/b")),
            (".", Some("")),
            ("/etc/passwd", None),
            ("../x", None),
            ("a/../../x", None),
            ("a/..", None),
        ];
        for (input, want) in cases {
            let got = safe_relative(Path::new(input)).ok();
            assert_eq!(got.as_deref(), want.map(Path::new), "{input}");
        }
    }

    #[test]
    fn named_digest_table() {
        let h = "a".repeat(64);
        let cases = [
            (format!("blobs/sha256/{h}"), Some(format!("sha256:{h}"))),
            (format!("{h}.json"), Some(format!("sha256:{h}"))),
            (format!("{h}/layer.tar"), None),
            ("abc.json".to_string(), None),
        ];
        for (input, want) in cases {
            assert_eq!(named_digest(&input), want, "{input}");
        }
    }

    #[test]
    fn chain_id_follows_the_oci_definition() {
        let a = sha256_digest(b"a");
        let b = sha256_digest(b"b");
        assert_eq!(chain_id(std::slice::from_ref(&a)), a);
        assert_eq!(
            chain_id(&[a.clone(), b.clone()]),
            sha256_digest(format!("{a} {b}").as_bytes())
        );
        assert_eq!(chain_id(&[]), "");
    }

    #[test]
    fn platform_choice() {
        let d = |arch: &str, digest: &str| Descriptor {
            media_type: MT_OCI_MANIFEST.into(),
            digest: digest.into(),
            size: 1,
            platform: Some(Platform {
                architecture: arch.into(),
                os: "linux".into(),
                variant: None,
            }),
            annotations: BTreeMap::new(),
        };
        let list = [d("s390x", "s"), d("amd64", "x"), d("arm64", "a")];
        assert_eq!(choose_platform_for(&list, "arm64").unwrap().digest, "a");
        assert_eq!(choose_platform_for(&list, "s390x").unwrap().digest, "s");
        assert_eq!(choose_platform_for(&list, "riscv64").unwrap().digest, "x");
        let err = choose_platform_for(&[d("s390x", "s"), d("arm64", "a")], "riscv64").unwrap_err();
        assert_eq!(
            err.to_string(),
            "no image for linux/riscv64 in the image index"
        );
        assert_eq!(
            choose_platform_for(&[d("s390x", "s")], "riscv64")
                .unwrap()
                .digest,
            "s"
        );
    }
}
