//! Registry pulls: the Docker Registry HTTP API v2 / OCI distribution
//! protocol, through `oci-client`.
//!
//! [`Puller::pull`] resolves a reference to a manifest (OCI or Docker schema
//! 2), following an image index or Docker manifest list to the entry for
//! linux on this host's architecture, fetches the config and the layer blobs
//! (plain or gzip), checks every digest and size, and hands them to
//! [`ImageStore::add_manifest`], which unpacks and tags the image.
//!
//! Authentication is anonymous, or HTTP basic with [`Credentials`]: when the
//! registry answers `401` with a `WWW-Authenticate: Bearer realm=…` challenge
//! the credentials are sent to the realm for a bearer token (the token flow of
//! Docker Hub and most registries); when it asks for `Basic`, they go with
//! every request. [`credentials_from_docker_config`] picks the credentials for
//! a registry out of an `imagePullSecrets` secret, as the kubelet's keyring does.
//!
//! Registries named in [`Puller::new`]'s list, and `localhost`, `127.0.0.1`
//! and `::1` on any port (as containerd does), are spoken to over plain HTTP;
//! everything else over HTTPS with the system's trust roots (rustls with the
//! ring provider).

use super::reference::Reference;
use super::{Image, ImageError, ImageStore};
use base64::Engine as _;
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::{OciDistributionError, OciErrorCode};
use oci_client::secrets::RegistryAuth;
use serde::Deserialize;
use sha2::{Digest as _, Sha256};
use std::fmt;
use std::time::Duration;

const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_SCHEMA1: &str = "application/vnd.docker.distribution.manifest.v1+json";
const MT_DOCKER_SCHEMA1_SIGNED: &str = "application/vnd.docker.distribution.manifest.v1+prettyjws";

/// What the manifest request accepts, most preferred first.
const ACCEPTED_MANIFESTS: &[&str] = &[
    MT_OCI_INDEX,
    MT_DOCKER_LIST,
    MT_OCI_MANIFEST,
    MT_DOCKER_MANIFEST,
];

/// How many index levels are followed before giving up.
const MAX_INDEX_DEPTH: usize = 4;

/// A user name and password for a registry.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    /// The user name.
    pub username: String,
    /// The password (or identity token used as a password).
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credentials")
            .field("username", &self.username)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Why a pull failed. Every variant displays as a complete message in
/// containerd's words, ready for an `ErrImagePull` status, e.g.
/// `failed to pull and unpack image "docker.io/library/x:1": failed to
/// resolve reference "docker.io/library/x:1": docker.io/library/x:1: not found`.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The repository, tag, manifest or a blob does not exist, or the image
    /// has no entry for this platform.
    #[error("failed to pull and unpack image {reference:?}: {detail}")]
    NotFound {
        /// The normalized reference being pulled.
        reference: String,
        /// What was not found.
        detail: String,
    },
    /// The registry refused access: no or wrong credentials.
    #[error("failed to pull and unpack image {reference:?}: {detail}")]
    Unauthorized {
        /// The normalized reference being pulled.
        reference: String,
        /// The registry's answer.
        detail: String,
    },
    /// The registry could not be reached or failed (connection, TLS,
    /// timeout, 5xx, throttling).
    #[error("failed to pull and unpack image {reference:?}: {detail}")]
    Network {
        /// The normalized reference being pulled.
        reference: String,
        /// What went wrong.
        detail: String,
    },
    /// The reference does not parse, or the registry sent something malformed:
    /// a manifest of an unsupported kind, a blob whose digest or size does not
    /// match, a layer that does not unpack.
    #[error("failed to pull and unpack image {reference:?}: {detail}")]
    Invalid {
        /// The reference being pulled.
        reference: String,
        /// What was wrong.
        detail: String,
    },
    /// The image was fetched but could not be written to the store.
    #[error("failed to pull and unpack image {reference:?}: {source}")]
    Store {
        /// The normalized reference being pulled.
        reference: String,
        /// The store's error.
        #[source]
        source: ImageError,
    },
}

/// How a failure is classified, before the reference is attached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    NotFound,
    Unauthorized,
    Network,
    Invalid,
}

impl Kind {
    fn error(self, reference: &str, detail: String) -> PullError {
        let reference = reference.to_string();
        match self {
            Kind::NotFound => PullError::NotFound { reference, detail },
            Kind::Unauthorized => PullError::Unauthorized { reference, detail },
            Kind::Network => PullError::Network { reference, detail },
            Kind::Invalid => PullError::Invalid { reference, detail },
        }
    }
}

/// Pulls images from registries into an [`ImageStore`].
#[derive(Debug, Clone)]
pub struct Puller {
    insecure: Vec<String>,
}

impl Puller {
    /// A puller that speaks plain HTTP to the registries in
    /// `insecure_registries` (`"host"` for any port, or `"host:port"`) and to
    /// `localhost`, `127.0.0.1` and `::1`; HTTPS to every other.
    ///
    /// Installs rustls' ring provider as the process default if none is set
    /// (the HTTP client needs one and the workspace builds only ring).
    pub fn new(insecure_registries: Vec<String>) -> Self {
        let _ = rustls::crypto::ring::default_provider().install_default();
        Self {
            insecure: insecure_registries,
        }
    }

    /// Whether `registry` (`host[:port]`) is spoken to over plain HTTP.
    pub fn is_insecure(&self, registry: &str) -> bool {
        let host = host_of(registry);
        matches!(host, "localhost" | "127.0.0.1" | "::1")
            || self.insecure.iter().any(|i| i == registry || i == host)
    }

    /// Pulls `reference` (any form `Reference::parse` accepts) into `store`
    /// and returns the image, resolved and unpacked, tagged under the
    /// normalized reference. `creds` are used for the registry when given.
    pub async fn pull(
        &self,
        store: &ImageStore,
        reference: &str,
        creds: Option<&Credentials>,
    ) -> Result<Image, PullError> {
        let parsed = Reference::parse(reference).map_err(|e| PullError::Invalid {
            reference: reference.to_string(),
            detail: e.to_string(),
        })?;
        let name = parsed.normalized();
        let target = match &parsed.digest {
            Some(digest) => oci_client::Reference::with_digest(
                parsed.registry.clone(),
                parsed.repository.clone(),
                digest.clone(),
            ),
            None => oci_client::Reference::with_tag(
                parsed.registry.clone(),
                parsed.repository.clone(),
                parsed.tag.clone().unwrap_or_else(|| "latest".to_string()),
            ),
        };
        // A client per pull: oci-client keeps the first credentials it sees
        // for a registry, and pulls for different pods may carry different
        // secrets.
        let config = ClientConfig {
            protocol: if self.is_insecure(&parsed.registry) {
                ClientProtocol::Http
            } else {
                ClientProtocol::Https
            },
            connect_timeout: Some(Duration::from_secs(30)),
            read_timeout: Some(Duration::from_secs(120)),
            ..ClientConfig::default()
        };
        let client = oci_client::Client::try_from(config).map_err(|e| PullError::Network {
            reference: name.clone(),
            detail: format!("creating the registry client: {}", chain(&e)),
        })?;
        let auth = match creds {
            Some(c) => RegistryAuth::Basic(c.username.clone(), c.password.clone()),
            None => RegistryAuth::Anonymous,
        };

        // Resolve the reference to one image manifest.
        let resolve_err = |e: OciDistributionError| {
            let kind = classify(&e);
            let detail = match kind {
                Kind::NotFound => {
                    format!("failed to resolve reference {name:?}: {name}: not found")
                }
                Kind::Unauthorized => format!(
                    "failed to resolve reference {name:?}: pull access denied, repository does \
                     not exist or may require authorization: {}",
                    chain(&e)
                ),
                Kind::Network => {
                    format!(
                        "failed to resolve reference {name:?}: failed to do request: {}",
                        chain(&e)
                    )
                }
                Kind::Invalid => format!("failed to resolve reference {name:?}: {}", chain(&e)),
            };
            kind.error(&name, detail)
        };
        let (mut bytes, _) = client
            .pull_manifest_raw(&target, &auth, ACCEPTED_MANIFESTS)
            .await
            .map_err(resolve_err)?;
        if let Some(digest) = target.digest() {
            verify(&bytes, digest, None).map_err(|d| Kind::Invalid.error(&name, d))?;
        }
        let mut depth = 0;
        let manifest = loop {
            match parse_manifest(&bytes).map_err(|d| Kind::Invalid.error(&name, d))? {
                Parsed::Image(m) => break m,
                Parsed::Index(index) => {
                    depth += 1;
                    if depth > MAX_INDEX_DEPTH {
                        return Err(
                            Kind::Invalid.error(&name, "image indexes nested too deeply".into())
                        );
                    }
                    let entry = choose_platform(&index.manifests, "linux", host_arch())
                        .ok_or_else(|| {
                            Kind::NotFound.error(
                                &name,
                                format!(
                                    "no match for platform in manifest: linux/{}: not found",
                                    host_arch()
                                ),
                            )
                        })?
                        .clone();
                    let child = target.clone_with_digest(entry.digest.clone());
                    let (child_bytes, _) = client
                        .pull_manifest_raw(&child, &auth, ACCEPTED_MANIFESTS)
                        .await
                        .map_err(resolve_err)?;
                    verify(&child_bytes, &entry.digest, entry.size)
                        .map_err(|d| Kind::Invalid.error(&name, d))?;
                    bytes = child_bytes;
                }
            }
        };

        // Fetch the config and the layers, each verified.
        let config = fetch_blob(&client, &target, &manifest.config, &name).await?;
        let mut layers = Vec::with_capacity(manifest.layers.len());
        for layer in &manifest.layers {
            check_layer_type(&layer.media_type).map_err(|d| Kind::Invalid.error(&name, d))?;
            if layers.iter().any(|(d, _)| *d == layer.digest) {
                continue;
            }
            let blob = fetch_blob(&client, &target, layer, &name).await?;
            layers.push((layer.digest.clone(), blob));
        }

        let store = store.clone();
        let manifest_bytes = bytes.to_vec();
        let stored_name = name.clone();
        tokio::task::spawn_blocking(move || {
            store.add_manifest(&stored_name, &manifest_bytes, &config, layers)
        })
        .await
        .map_err(|e| PullError::Invalid {
            reference: name.clone(),
            detail: format!("storing the image: {e}"),
        })?
        .map_err(|source| match source {
            ImageError::Io { .. } => PullError::Store {
                reference: name.clone(),
                source,
            },
            other => Kind::Invalid.error(&name, other.to_string()),
        })
    }
}

/// Downloads one blob into memory and checks its digest and size.
async fn fetch_blob(
    client: &oci_client::Client,
    target: &oci_client::Reference,
    desc: &Descriptor,
    name: &str,
) -> Result<Vec<u8>, PullError> {
    let mut out = Vec::new();
    client
        .pull_blob(target, desc.digest.as_str(), &mut out)
        .await
        .map_err(|e| {
            let kind = classify(&e);
            kind.error(
                name,
                format!("failed to fetch blob {}: {}", desc.digest, chain(&e)),
            )
        })?;
    verify(&out, &desc.digest, desc.size).map_err(|d| Kind::Invalid.error(name, d))?;
    Ok(out)
}

/// Checks content against the digest (and size) its descriptor named.
fn verify(bytes: &[u8], digest: &str, size: Option<u64>) -> Result<(), String> {
    let Some(want) = digest.strip_prefix("sha256:") else {
        return Err(format!("unsupported digest algorithm in {digest:?}"));
    };
    let got = hex::encode(Sha256::digest(bytes));
    if got != want {
        return Err(format!(
            "digest mismatch for {digest}: content hashes to sha256:{got}"
        ));
    }
    if let Some(size) = size
        && size != bytes.len() as u64
    {
        return Err(format!(
            "size mismatch for {digest}: expected {size} bytes, got {}",
            bytes.len()
        ));
    }
    Ok(())
}

/// Layer media types the store can unpack.
fn check_layer_type(media_type: &str) -> Result<(), String> {
    if media_type.contains("zstd") {
        Err(format!(
            "unsupported layer media type {media_type:?} (zstd)"
        ))
    } else if media_type.contains("encrypted") {
        Err(format!(
            "unsupported layer media type {media_type:?} (encrypted)"
        ))
    } else {
        Ok(())
    }
}

/// Puts a registry error into one of the four classes.
fn classify(e: &OciDistributionError) -> Kind {
    match e {
        OciDistributionError::UnauthorizedError { .. }
        | OciDistributionError::AuthenticationFailure(_) => Kind::Unauthorized,
        OciDistributionError::ImageManifestNotFoundError(_) => Kind::NotFound,
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<&OciErrorCode> = envelope.errors.iter().map(|e| &e.code).collect();
            if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Unauthorized | OciErrorCode::Denied))
            {
                Kind::Unauthorized
            } else if codes.iter().any(|c| {
                matches!(
                    c,
                    OciErrorCode::ManifestUnknown
                        | OciErrorCode::NameUnknown
                        | OciErrorCode::BlobUnknown
                        | OciErrorCode::NotFound
                )
            }) {
                Kind::NotFound
            } else if codes
                .iter()
                .any(|c| matches!(c, OciErrorCode::Toomanyrequests))
            {
                Kind::Network
            } else {
                Kind::Invalid
            }
        }
        OciDistributionError::ServerError { code, .. } => match code {
            401 | 403 => Kind::Unauthorized,
            404 => Kind::NotFound,
            429 | 500..=599 => Kind::Network,
            _ => Kind::Invalid,
        },
        OciDistributionError::RequestError(_) | OciDistributionError::IoError(_) => Kind::Network,
        _ => Kind::Invalid,
    }
}

/// An error and its sources, joined with ": ".
fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}

// ----- manifests -----

/// The parts of a descriptor a pull needs.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "camelCase")]
struct Descriptor {
    #[serde(default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    size: Option<u64>,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
struct Platform {
    #[serde(default)]
    architecture: String,
    #[serde(default)]
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

/// Either kind of manifest document, told apart by `mediaType` (or, when it
/// is absent, by whether it lists `manifests` or has a `config`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct RawManifest {
    #[serde(default)]
    schema_version: u32,
    #[serde(default)]
    media_type: String,
    #[serde(default)]
    manifests: Option<Vec<Descriptor>>,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
}

#[derive(Debug)]
struct ImageManifest {
    config: Descriptor,
    layers: Vec<Descriptor>,
}

#[derive(Debug)]
struct IndexManifest {
    manifests: Vec<Descriptor>,
}

#[derive(Debug)]
enum Parsed {
    Image(ImageManifest),
    Index(IndexManifest),
}

fn parse_manifest(bytes: &[u8]) -> Result<Parsed, String> {
    let raw: RawManifest =
        serde_json::from_slice(bytes).map_err(|e| format!("invalid image manifest: {e}"))?;
    match raw.media_type.as_str() {
        MT_DOCKER_SCHEMA1 | MT_DOCKER_SCHEMA1_SIGNED => {
            return Err(
                "Docker Image Format v1 and Docker Image manifest version 2, schema 1 are not \
                 supported"
                    .to_string(),
            );
        }
        MT_OCI_INDEX | MT_DOCKER_LIST | MT_OCI_MANIFEST | MT_DOCKER_MANIFEST | "" => {}
        other => return Err(format!("unsupported manifest media type {other:?}")),
    }
    if raw.schema_version != 2 {
        return Err(format!(
            "unsupported manifest schema version {}",
            raw.schema_version
        ));
    }
    let is_index = matches!(raw.media_type.as_str(), MT_OCI_INDEX | MT_DOCKER_LIST)
        || (raw.media_type.is_empty() && raw.manifests.is_some() && raw.config.is_none());
    if is_index {
        return Ok(Parsed::Index(IndexManifest {
            manifests: raw.manifests.unwrap_or_default(),
        }));
    }
    let config = raw
        .config
        .ok_or_else(|| "invalid image manifest: no config".to_string())?;
    Ok(Parsed::Image(ImageManifest {
        config,
        layers: raw.layers,
    }))
}

/// This host's architecture in GOARCH spelling.
fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "arm" => "arm",
        other => other,
    }
}

/// The index entry for `os`/`arch`; for arm64 an entry without a variant or
/// with `v8` is preferred over other variants. Attestation entries
/// (`unknown/unknown`) never match.
fn choose_platform<'a>(
    manifests: &'a [Descriptor],
    os: &str,
    arch: &str,
) -> Option<&'a Descriptor> {
    let matching = |d: &&Descriptor| {
        d.platform
            .as_ref()
            .is_some_and(|p| p.os == os && p.architecture == arch)
    };
    let preferred = |d: &&Descriptor| {
        arch != "arm64"
            || d.platform
                .as_ref()
                .and_then(|p| p.variant.as_deref())
                .is_none_or(|v| v.is_empty() || v == "v8")
    };
    manifests
        .iter()
        .filter(matching)
        .find(preferred)
        .or_else(|| manifests.iter().find(matching))
}

// ----- docker config secrets -----

/// Credentials for a registry from an `imagePullSecrets` secret's data:
/// `.dockerconfigjson` (`{"auths": {KEY: ENTRY}}`, type
/// `kubernetes.io/dockerconfigjson`) or `.dockercfg` (`{KEY: ENTRY}`, type
/// `kubernetes.io/dockercfg`). An ENTRY carries `auth` (base64 of
/// `user:password`, which wins when present) or `username` and `password`.
///
/// KEYs match as the kubelet's keyring matches them: the scheme is ignored,
/// `docker.io`, `index.docker.io` and `registry-1.docker.io` are one
/// registry, a host label may be a glob (`*.example.com`), a port must be
/// equal, and a path other than `/` or `/v1/` must be a prefix of the
/// repository path. So `registry` is a registry host (`host[:port]`) or,
/// to honour path-scoped keys, a repository name (`Reference::name()`,
/// `docker.io/library/busybox`). When several keys match, the most specific
/// wins (no glob over glob, then the longest path).
pub fn credentials_from_docker_config(json: &[u8], registry: &str) -> Option<Credentials> {
    let value: serde_json::Value = serde_json::from_slice(json).ok()?;
    let entries = match value.get("auths") {
        Some(auths) => auths.as_object()?,
        None => value.as_object()?,
    };
    let (want_host, want_path) = split_key(registry);
    let mut best: Option<((bool, usize), Credentials)> = None;
    for (key, entry) in entries {
        let (host, path) = split_key(key);
        if !hosts_match(&host, &want_host) || !path_matches(&path, &want_path) {
            continue;
        }
        let Some(creds) = entry_credentials(entry) else {
            continue;
        };
        let rank = (!host.contains(['*', '?']), path.len());
        if best.as_ref().is_none_or(|(r, _)| rank > *r) {
            best = Some((rank, creds));
        }
    }
    best.map(|(_, c)| c)
}

/// One entry's credentials.
fn entry_credentials(entry: &serde_json::Value) -> Option<Credentials> {
    let field = |name: &str| entry.get(name).and_then(|v| v.as_str()).unwrap_or_default();
    let auth = field("auth");
    if !auth.is_empty() {
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(auth.trim())
            .ok()?;
        let decoded = String::from_utf8(decoded).ok()?;
        let (username, password) = decoded.split_once(':')?;
        return Some(Credentials {
            username: username.to_string(),
            password: password.to_string(),
        });
    }
    let (username, password) = (field("username"), field("password"));
    if username.is_empty() && password.is_empty() {
        return None;
    }
    Some(Credentials {
        username: username.to_string(),
        password: password.to_string(),
    })
}

/// A key or name as (lower-case host[:port], path without slashes at the
/// ends); the scheme is dropped and `/v1/` counts as no path.
fn split_key(key: &str) -> (String, String) {
    let rest = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    let (host, path) = rest.split_once('/').unwrap_or((rest, ""));
    let path = path.trim_matches('/');
    let path = if path == "v1" { "" } else { path };
    (host.to_ascii_lowercase(), path.to_string())
}

/// The host of `host[:port]` (brackets of an IPv6 literal removed).
fn host_of(registry: &str) -> &str {
    if let Some(rest) = registry.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    registry.split(':').next().unwrap_or(registry)
}

fn split_port(host: &str) -> (&str, &str) {
    match host.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() && !p.contains(']') => (h, p),
        _ => (host, ""),
    }
}

fn docker_hub_alias(host: &str) -> &str {
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io",
        other => other,
    }
}

/// Whether a key's host (maybe with globbed labels) covers the wanted host.
fn hosts_match(key: &str, want: &str) -> bool {
    let (key_host, key_port) = split_port(key);
    let (want_host, want_port) = split_port(want);
    if key_port != want_port {
        return false;
    }
    let (key_host, want_host) = (docker_hub_alias(key_host), docker_hub_alias(want_host));
    let key_labels: Vec<&str> = key_host.split('.').collect();
    let want_labels: Vec<&str> = want_host.split('.').collect();
    key_labels.len() == want_labels.len()
        && key_labels
            .iter()
            .zip(&want_labels)
            .all(|(k, w)| glob_match(k.as_bytes(), w.as_bytes()))
}

/// A key path is a prefix of the wanted path at a segment boundary.
fn path_matches(key: &str, want: &str) -> bool {
    key.is_empty()
        || want == key
        || want
            .strip_prefix(key)
            .is_some_and(|rest| rest.starts_with('/'))
}

/// `*` (any run) and `?` (one character) within one host label.
fn glob_match(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| glob_match(rest, &text[i..])),
        Some((b'?', rest)) => !text.is_empty() && glob_match(rest, &text[1..]),
        Some((c, rest)) => text.first() == Some(c) && glob_match(rest, &text[1..]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> String {
        base64::engine::general_purpose::STANDARD.encode(s)
    }

    fn creds(u: &str, p: &str) -> Option<Credentials> {
        Some(Credentials {
            username: u.into(),
            password: p.into(),
        })
    }

    #[test]
    fn docker_config_lookup() {
        let config = format!(
            r#"{{"auths": {{
                "https://index.docker.io/v1/": {{"auth": "{hub}"}},
                "registry.example.com": {{"username": "plain", "password": "pw"}},
                "registry.example.com/team-a": {{"auth": "{team}"}},
                "*.corp.example": {{"auth": "{glob}"}},
                "build.corp.example": {{"auth": "{exact}"}},
                "localhost:5000": {{"auth": "{local}"}},
                "http://10.0.0.1:8080/": {{"auth": "{ip}"}},
                "broken.example": {{"auth": "!!!"}},
                "empty.example": {{}}
            }}}}"#,
            hub = b64("hubuser:hub:pass"),
            team = b64("team:tpw"),
            glob = b64("glob:gpw"),
            exact = b64("exact:epw"),
            local = b64("local:lpw"),
            ip = b64("ip:ipw"),
        );
        let cases: &[(&str, Option<Credentials>)] = &[
            ("docker.io", creds("hubuser", "hub:pass")),
            ("index.docker.io", creds("hubuser", "hub:pass")),
            ("docker.io/library/busybox", creds("hubuser", "hub:pass")),
            ("registry.example.com", creds("plain", "pw")),
            ("registry.example.com/team-b/app", creds("plain", "pw")),
            ("registry.example.com/team-a/app", creds("team", "tpw")),
            ("registry.example.com/team-ab/app", creds("plain", "pw")),
            ("ci.corp.example", creds("glob", "gpw")),
            ("build.corp.example", creds("exact", "epw")),
            ("a.b.corp.example", None),
            ("localhost:5000", creds("local", "lpw")),
            ("localhost:5001", None),
            ("localhost", None),
            ("10.0.0.1:8080", creds("ip", "ipw")),
            ("broken.example", None),
            ("empty.example", None),
            ("quay.io", None),
        ];
        for (registry, want) in cases {
            assert_eq!(
                &credentials_from_docker_config(config.as_bytes(), registry),
                want,
                "{registry}"
            );
        }
    }

    #[test]
    fn dockercfg_and_malformed_secrets() {
        let dockercfg = format!(
            r#"{{"quay.io": {{"auth": "{}", "email": "x@y"}}}}"#,
            b64("q:qpw")
        );
        assert_eq!(
            credentials_from_docker_config(dockercfg.as_bytes(), "quay.io"),
            creds("q", "qpw")
        );
        assert_eq!(credentials_from_docker_config(b"not json", "quay.io"), None);
        assert_eq!(credentials_from_docker_config(b"[]", "quay.io"), None);
        assert_eq!(
            credentials_from_docker_config(br#"{"auths": []}"#, "quay.io"),
            None
        );
        // `auth` wins over username/password.
        let both = format!(
            r#"{{"auths": {{"quay.io": {{"auth": "{}", "username": "u", "password": "p"}}}}}}"#,
            b64("a:apw")
        );
        assert_eq!(
            credentials_from_docker_config(both.as_bytes(), "quay.io"),
            creds("a", "apw")
        );
    }

    #[test]
    fn insecure_registries() {
        let puller = Puller::new(vec!["registry.lan".into(), "10.1.2.3:5000".into()]);
        let cases = [
            ("localhost", true),
            ("localhost:5000", true),
            ("127.0.0.1:39999", true),
            ("[::1]:5000", true),
            ("registry.lan", true),
            ("registry.lan:443", true),
            ("10.1.2.3:5000", true),
            ("10.1.2.3:5001", false),
            ("10.1.2.3", false),
            ("docker.io", false),
            ("localhost.example.com", false),
        ];
        for (registry, want) in cases {
            assert_eq!(puller.is_insecure(registry), want, "{registry}");
        }
    }

    fn desc(digest: &str, os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        Descriptor {
            media_type: MT_OCI_MANIFEST.into(),
            digest: digest.into(),
            size: None,
            platform: Some(Platform {
                architecture: arch.into(),
                os: os.into(),
                variant: variant.map(Into::into),
            }),
        }
    }

    #[test]
    fn platform_choice() {
        let index = vec![
            desc("sha256:att", "unknown", "unknown", None),
            desc("sha256:win", "windows", "amd64", None),
            desc("sha256:armv7", "linux", "arm", Some("v7")),
            desc("sha256:arm64v9", "linux", "arm64", Some("v9")),
            desc("sha256:arm64", "linux", "arm64", Some("v8")),
            desc("sha256:amd64", "linux", "amd64", None),
        ];
        let cases = [
            ("amd64", Some("sha256:amd64")),
            ("arm64", Some("sha256:arm64")),
            ("arm", Some("sha256:armv7")),
            ("s390x", None),
            ("unknown", None),
        ];
        for (arch, want) in cases {
            assert_eq!(
                choose_platform(&index, "linux", arch).map(|d| d.digest.as_str()),
                want,
                "{arch}"
            );
        }
        let only_v9 = vec![desc("sha256:v9", "linux", "arm64", Some("v9"))];
        assert_eq!(
            choose_platform(&only_v9, "linux", "arm64").map(|d| d.digest.as_str()),
            Some("sha256:v9")
        );
    }

    #[test]
    fn manifest_kinds() {
        let cases: &[(&str, Result<&str, &str>)] = &[
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}"#,
                Ok("index"),
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.list.v2+json","manifests":[]}"#,
                Ok("index"),
            ),
            (r#"{"schemaVersion":2,"manifests":[]}"#, Ok("index")),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json","config":{"digest":"sha256:c","size":1},"layers":[{"digest":"sha256:l","size":2}]}"#,
                Ok("image"),
            ),
            (
                r#"{"schemaVersion":2,"config":{"digest":"sha256:c"}}"#,
                Ok("image"),
            ),
            (
                r#"{"schemaVersion":1,"mediaType":"application/vnd.docker.distribution.manifest.v1+prettyjws"}"#,
                Err("schema 1 are not supported"),
            ),
            (
                r#"{"schemaVersion":1,"fsLayers":[]}"#,
                Err("schema version 1"),
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json"}"#,
                Err("no config"),
            ),
            (
                r#"{"schemaVersion":2,"mediaType":"text/plain"}"#,
                Err("unsupported manifest media type"),
            ),
            ("{", Err("invalid image manifest")),
        ];
        for (json, want) in cases {
            let got = parse_manifest(json.as_bytes()).map(|p| match p {
                Parsed::Image(_) => "image",
                Parsed::Index(_) => "index",
            });
            match (got, want) {
                (Ok(g), Ok(w)) => assert_eq!(g, *w, "{json}"),
                (Err(g), Err(w)) => assert!(g.contains(w), "{json}: {g}"),
                (g, w) => panic!("{json}: got {g:?}, want {w:?}"),
            }
        }
    }

    #[test]
    fn verify_digest_and_size() {
        let hello = "sha256:2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";
        assert_eq!(verify(b"hello", hello, Some(5)), Ok(()));
        assert_eq!(verify(b"hello", hello, None), Ok(()));
        assert!(
            verify(b"hellO", hello, None)
                .unwrap_err()
                .contains("digest mismatch")
        );
        assert!(
            verify(b"hello", hello, Some(6))
                .unwrap_err()
                .contains("size mismatch")
        );
        assert!(
            verify(b"hello", "sha512:ab", None)
                .unwrap_err()
                .contains("algorithm")
        );
    }

    #[test]
    fn error_classes() {
        use oci_client::errors::{OciEnvelope, OciError};
        let envelope = |code: OciErrorCode| OciDistributionError::RegistryError {
            envelope: OciEnvelope {
                errors: vec![OciError {
                    code,
                    message: String::new(),
                    detail: serde_json::Value::Null,
                }],
            },
            url: "u".into(),
        };
        let server = |code: u16| OciDistributionError::ServerError {
            code,
            url: "u".into(),
            message: String::new(),
        };
        let cases = [
            (envelope(OciErrorCode::ManifestUnknown), Kind::NotFound),
            (envelope(OciErrorCode::NameUnknown), Kind::NotFound),
            (envelope(OciErrorCode::BlobUnknown), Kind::NotFound),
            (envelope(OciErrorCode::Unauthorized), Kind::Unauthorized),
            (envelope(OciErrorCode::Denied), Kind::Unauthorized),
            (envelope(OciErrorCode::Toomanyrequests), Kind::Network),
            (envelope(OciErrorCode::ManifestInvalid), Kind::Invalid),
            (
                OciDistributionError::UnauthorizedError { url: "u".into() },
                Kind::Unauthorized,
            ),
            (
                OciDistributionError::AuthenticationFailure("no".into()),
                Kind::Unauthorized,
            ),
            (server(404), Kind::NotFound),
            (server(403), Kind::Unauthorized),
            (server(503), Kind::Network),
            (server(400), Kind::Invalid),
            (
                OciDistributionError::IoError(std::io::Error::other("reset")),
                Kind::Network,
            ),
            (
                OciDistributionError::SpecViolationError("x".into()),
                Kind::Invalid,
            ),
        ];
        for (err, want) in cases {
            assert_eq!(classify(&err), want, "{err}");
        }
    }

    #[test]
    fn error_text_reads_like_containerd() {
        let e = Kind::NotFound.error(
            "docker.io/library/x:1",
            "failed to resolve reference \"docker.io/library/x:1\": docker.io/library/x:1: not found"
                .into(),
        );
        assert_eq!(
            e.to_string(),
            "failed to pull and unpack image \"docker.io/library/x:1\": failed to resolve \
             reference \"docker.io/library/x:1\": docker.io/library/x:1: not found"
        );
        assert!(matches!(e, PullError::NotFound { .. }));
    }

    #[test]
    fn credentials_debug_hides_password() {
        let c = Credentials {
            username: "u".into(),
            password: "secret".into(),
        };
        assert!(!format!("{c:?}").contains("secret"));
    }

    #[test]
    fn layer_types() {
        for (mt, ok) in [
            ("application/vnd.oci.image.layer.v1.tar+gzip", true),
            ("application/vnd.oci.image.layer.v1.tar", true),
            ("application/vnd.docker.image.rootfs.diff.tar.gzip", true),
            (
                "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
                true,
            ),
            ("application/vnd.oci.image.layer.v1.tar+zstd", false),
            (
                "application/vnd.oci.image.layer.v1.tar+gzip+encrypted",
                false,
            ),
        ] {
            assert_eq!(check_layer_type(mt).is_ok(), ok, "{mt}");
        }
    }
}
