//! Registry pulls end to end: a real `docker-registry` (Debian's distribution
//! 2.8) on a free 127.0.0.1 port, filled by a small push helper, and an
//! in-test fake registry for the bearer-token flow and tampered blobs.
//!
//! Skips loudly when `/usr/bin/docker-registry`, `/bin/busybox` or python3's
//! `crypt` are missing; fails instead when `CI` is set.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use skiff_agent::image::ImageStore;
use skiff_agent::image::pull::{Credentials, PullError, Puller};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

const REGISTRY_BIN: &str = "/usr/bin/docker-registry";
const MT_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
const MT_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

fn sha(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn b64(s: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(s)
}

/// Skips (returns false) with a loud message, or panics under CI.
fn require(ok: bool, what: &str) -> bool {
    if !ok {
        if std::env::var_os("CI").is_some() {
            panic!("{what} is missing, and CI must not skip registry pull tests");
        }
        eprintln!("SKIPPED: {what} is missing; registry pull tests not run");
    }
    ok
}

fn have_tools() -> bool {
    require(Path::new(REGISTRY_BIN).exists(), REGISTRY_BIN)
        && require(
            Path::new("/bin/busybox").exists(),
            "/bin/busybox (busybox-static)",
        )
}

fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

// ----- the test image -----

/// The busybox test image's blobs.
#[derive(Clone)]
struct TestImage {
    manifest: Value,
    config: Vec<u8>,
    layer_digest: String,
    layer: Vec<u8>,
}

impl TestImage {
    fn config_digest(&self) -> String {
        sha(&self.config)
    }
}

/// Built once by scripts/build-busybox-image.sh and read back from its OCI layout.
fn busybox() -> &'static TestImage {
    static IMAGE: OnceLock<TestImage> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = tempfile::tempdir().unwrap();
        let tar_path = dir.path().join("busybox.tar");
        let status = Command::new("bash")
            .arg(root.join("scripts/build-busybox-image.sh"))
            .arg(&tar_path)
            .arg("busybox:1.36")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "build-busybox-image.sh failed");
        let mut files: HashMap<String, Vec<u8>> = HashMap::new();
        let mut archive = tar::Archive::new(std::fs::File::open(&tar_path).unwrap());
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().to_string_lossy().into_owned();
            let mut data = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut data).unwrap();
            files.insert(name.trim_start_matches("./").to_string(), data);
        }
        let blob = |digest: &str| {
            files[&format!("blobs/sha256/{}", digest.trim_start_matches("sha256:"))].clone()
        };
        let index: Value = serde_json::from_slice(&files["index.json"]).unwrap();
        let manifest: Value =
            serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap()))
                .unwrap();
        let config = blob(manifest["config"]["digest"].as_str().unwrap());
        let layer_digest = manifest["layers"][0]["digest"]
            .as_str()
            .unwrap()
            .to_string();
        let layer = blob(&layer_digest);
        TestImage {
            manifest,
            config,
            layer_digest,
            layer,
        }
    })
}

/// The image's manifest as a Docker schema 2 manifest.
fn docker_manifest(image: &TestImage) -> Value {
    let mut m = image.manifest.clone();
    m["mediaType"] = json!(MT_DOCKER_MANIFEST);
    m["config"]["mediaType"] = json!("application/vnd.docker.container.image.v1+json");
    m["layers"][0]["mediaType"] = json!("application/vnd.docker.image.rootfs.diff.tar.gzip");
    m
}

// ----- a tiny HTTP client -----

struct Reply {
    status: StatusCode,
    headers: http::HeaderMap,
    body: Bytes,
}

async fn request(method: &str, url: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
    let uri: http::Uri = url.parse().unwrap();
    let authority = uri.authority().unwrap().to_string();
    let stream = tokio::net::TcpStream::connect(&authority).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = Request::builder()
        .method(method)
        .uri(uri.path_and_query().unwrap().as_str())
        .header("host", &authority);
    for (k, v) in headers {
        req = req.header(*k, v);
    }
    let resp = sender
        .send_request(req.body(Full::new(Bytes::from(body))).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        headers,
        body,
    }
}

/// Pushes blobs and manifests with the registry API.
struct Pusher {
    base: String,
    auth: Option<String>,
}

impl Pusher {
    fn headers(&self, extra: &[(&'static str, String)]) -> Vec<(&'static str, String)> {
        let mut h = extra.to_vec();
        if let Some(a) = &self.auth {
            h.push(("authorization", a.clone()));
        }
        h
    }

    /// POST /v2/<name>/blobs/uploads/ then PUT <location>?digest=….
    async fn blob(&self, name: &str, data: &[u8]) -> String {
        let digest = sha(data);
        let url = format!("{}/v2/{name}/blobs/uploads/", self.base);
        let r = request("POST", &url, &self.headers(&[]), Vec::new()).await;
        assert_eq!(
            r.status,
            StatusCode::ACCEPTED,
            "starting upload: {:?}",
            r.body
        );
        let location = r.headers["location"].to_str().unwrap().to_string();
        let location = if location.starts_with('/') {
            format!("{}{location}", self.base)
        } else {
            location
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        let url = format!("{location}{sep}digest={digest}");
        let r = request(
            "PUT",
            &url,
            &self.headers(&[("content-type", "application/octet-stream".into())]),
            data.to_vec(),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "uploading blob: {:?}",
            r.body
        );
        digest
    }

    /// PUT /v2/<name>/manifests/<tag or digest>; returns the manifest's bytes.
    async fn manifest(&self, name: &str, reference: &str, manifest: &Value) -> Vec<u8> {
        let bytes = serde_json::to_vec(manifest).unwrap();
        let media_type = manifest["mediaType"].as_str().unwrap().to_string();
        let url = format!("{}/v2/{name}/manifests/{reference}", self.base);
        let r = request(
            "PUT",
            &url,
            &self.headers(&[("content-type", media_type)]),
            bytes.clone(),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::CREATED,
            "putting manifest: {:?}",
            r.body
        );
        bytes
    }

    /// Pushes the busybox image's blobs and `manifest` under `tag`.
    async fn image(&self, name: &str, tag: &str, manifest: &Value) -> Vec<u8> {
        let image = busybox();
        self.blob(name, &image.config).await;
        self.blob(name, &image.layer).await;
        self.manifest(name, tag, manifest).await
    }
}

// ----- the real registry -----

struct Registry {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Registry {
    /// Starts docker-registry on a free port; with `htpasswd`, basic auth for
    /// that one user.
    async fn start(htpasswd: Option<(&str, &str)>) -> Registry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let mut config = format!(
            "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            dir.path().join("data").display()
        );
        if let Some((user, password)) = htpasswd {
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{}\n", bcrypt(password))).unwrap();
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: skiff-test\n    path: {}\n",
                file.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let child = Command::new(REGISTRY_BIN)
            .arg("serve")
            .arg(&config_path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let registry = Registry {
            child,
            port,
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        while tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
        {
            assert!(Instant::now() < deadline, "docker-registry did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        registry
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn pusher(&self, auth: Option<(&str, &str)>) -> Pusher {
        Pusher {
            base: format!("http://{}", self.host()),
            auth: auth.map(|(u, p)| format!("Basic {}", b64(&format!("{u}:{p}")))),
        }
    }
}

/// A bcrypt hash by python3's `crypt` (libxcrypt), which the registry's
/// htpasswd reader accepts.
fn bcrypt(password: &str) -> String {
    let out = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt,sys; print(crypt.crypt(sys.argv[1], crypt.mksalt(crypt.METHOD_BLOWFISH)))",
            password,
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "python3 crypt: {out:?}");
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$2"), "not a bcrypt hash: {hash}");
    hash
}

fn have_bcrypt() -> bool {
    let ok = Command::new("python3")
        .args([
            "-W",
            "ignore",
            "-c",
            "import crypt; assert crypt.METHOD_BLOWFISH in crypt.methods",
        ])
        .status()
        .is_ok_and(|s| s.success());
    require(
        ok,
        "python3 with crypt.METHOD_BLOWFISH (for the htpasswd file)",
    )
}

fn new_store() -> (tempfile::TempDir, ImageStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = ImageStore::open(&dir.path().join("images")).unwrap();
    (dir, store)
}

/// Whether some layer of the image has `bin/sh`.
fn has_sh(layers: &[PathBuf]) -> bool {
    layers
        .iter()
        .any(|l| std::fs::symlink_metadata(l.join("bin/sh")).is_ok())
}

// ----- tests against docker-registry -----

#[tokio::test]
async fn pulls_oci_image_by_tag_and_by_digest() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start(None).await;
    let image = busybox();
    let manifest = registry
        .pusher(None)
        .image("library/busybox", "1.36", &image.manifest)
        .await;
    let (_dir, store) = new_store();
    let puller = Puller::new(vec![]);

    let reference = format!("{}/library/busybox:1.36", registry.host());
    let pulled = puller.pull(&store, &reference, None).await.unwrap();
    assert_eq!(pulled.id, image.config_digest());
    assert_eq!(pulled.reference, reference);
    assert!(has_sh(&pulled.layers), "no bin/sh in {:?}", pulled.layers);
    assert_eq!(pulled.size, image.layer.len() as u64);
    let resolved = store.resolve(&reference).unwrap();
    assert_eq!(resolved.id, image.config_digest());
    assert!(has_sh(&resolved.layers));
    assert_eq!(resolved.config.cmd, vec!["sh".to_string()]);

    // By digest, into a fresh store.
    let (_dir2, store2) = new_store();
    let by_digest = format!("{}/library/busybox@{}", registry.host(), sha(&manifest));
    let pulled = puller.pull(&store2, &by_digest, None).await.unwrap();
    assert_eq!(pulled.id, image.config_digest());
    assert_eq!(
        store2.resolve(&by_digest).unwrap().id,
        image.config_digest()
    );
}

#[tokio::test]
async fn pulls_docker_schema2_manifest() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start(None).await;
    let image = busybox();
    registry
        .pusher(None)
        .image("tools/busybox", "docker", &docker_manifest(image))
        .await;
    let (_dir, store) = new_store();
    let reference = format!("{}/tools/busybox:docker", registry.host());
    let pulled = Puller::new(vec![])
        .pull(&store, &reference, None)
        .await
        .unwrap();
    assert_eq!(pulled.id, image.config_digest());
    assert!(has_sh(&store.resolve(&reference).unwrap().layers));
}

#[tokio::test]
async fn picks_host_platform_from_index_and_manifest_list() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start(None).await;
    let image = busybox();
    let pusher = registry.pusher(None);
    let name = "library/multi";
    pusher.image(name, "base", &image.manifest).await;

    // Another platform's image: same layer, a config naming another arch.
    let other_arch = if host_arch() == "amd64" {
        "s390x"
    } else {
        "amd64"
    };
    let mut other_config: Value = serde_json::from_slice(&image.config).unwrap();
    other_config["architecture"] = json!(other_arch);
    let other_config = serde_json::to_vec(&other_config).unwrap();
    let other_config_digest = pusher.blob(name, &other_config).await;

    for (tag, list_type, manifest) in [
        ("oci", MT_OCI_INDEX, image.manifest.clone()),
        ("docker", MT_DOCKER_LIST, docker_manifest(image)),
    ] {
        let mut other = manifest.clone();
        other["config"]["digest"] = json!(other_config_digest);
        other["config"]["size"] = json!(other_config.len());
        let other_digest = sha(&serde_json::to_vec(&other).unwrap());
        let other_bytes = pusher.manifest(name, &other_digest, &other).await;
        let host_digest = sha(&serde_json::to_vec(&manifest).unwrap());
        let host_bytes = pusher.manifest(name, &host_digest, &manifest).await;
        let entry_type = manifest["mediaType"].clone();
        let index = json!({
            "schemaVersion": 2,
            "mediaType": list_type,
            "manifests": [
                {"mediaType": entry_type, "digest": other_digest, "size": other_bytes.len(),
                 "platform": {"architecture": other_arch, "os": "linux"}},
                {"mediaType": entry_type, "digest": host_digest, "size": host_bytes.len(),
                 "platform": {"architecture": host_arch(), "os": "linux"}},
            ],
        });
        pusher.manifest(name, tag, &index).await;

        let (_dir, store) = new_store();
        let reference = format!("{}/{name}:{tag}", registry.host());
        let pulled = Puller::new(vec![])
            .pull(&store, &reference, None)
            .await
            .unwrap();
        assert_eq!(pulled.id, image.config_digest(), "{tag}");
        assert!(has_sh(&pulled.layers), "{tag}");
    }

    // An index with no entry for this platform.
    let only_other = json!({
        "schemaVersion": 2,
        "mediaType": MT_OCI_INDEX,
        "manifests": [{"mediaType": MT_OCI_MANIFEST, "digest": sha(&serde_json::to_vec(&{
            let mut o = image.manifest.clone();
            o["config"]["digest"] = json!(other_config_digest);
            o["config"]["size"] = json!(other_config.len());
            o
        }).unwrap()), "size": 1, "platform": {"architecture": other_arch, "os": "linux"}}],
    });
    pusher.manifest(name, "foreign", &only_other).await;
    let (_dir, store) = new_store();
    let err = Puller::new(vec![])
        .pull(&store, &format!("{}/{name}:foreign", registry.host()), None)
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::NotFound { .. }), "{err}");
    assert!(err.to_string().contains("no match for platform"), "{err}");
}

#[tokio::test]
async fn missing_tag_and_repository_are_not_found() {
    if !have_tools() {
        return;
    }
    let registry = Registry::start(None).await;
    registry
        .pusher(None)
        .image("library/busybox", "1.36", &busybox().manifest)
        .await;
    let (_dir, store) = new_store();
    let puller = Puller::new(vec![]);
    for reference in [
        format!("{}/library/busybox:9.99", registry.host()),
        format!("{}/library/nothing:1", registry.host()),
    ] {
        let err = puller.pull(&store, &reference, None).await.unwrap_err();
        assert!(matches!(err, PullError::NotFound { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!(
                "failed to pull and unpack image {reference:?}: failed to resolve reference \
                 {reference:?}: {reference}: not found"
            )
        );
        assert!(store.resolve(&reference).is_err());
    }
}

#[tokio::test]
async fn unreachable_registry_is_a_network_error_and_bad_reference_invalid() {
    let free = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_dir, store) = new_store();
    let puller = Puller::new(vec![]);
    let err = puller
        .pull(&store, &format!("127.0.0.1:{free}/library/busybox:1"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Network { .. }), "{err:?}");
    let err = puller.pull(&store, "Bad:Ref!", None).await.unwrap_err();
    assert!(matches!(err, PullError::Invalid { .. }), "{err:?}");
    assert!(
        err.to_string().contains("invalid reference format"),
        "{err}"
    );
}

#[tokio::test]
async fn basic_auth_with_htpasswd() {
    if !have_tools() || !have_bcrypt() {
        return;
    }
    let registry = Registry::start(Some(("alice", "s3cret"))).await;
    let image = busybox();
    registry
        .pusher(Some(("alice", "s3cret")))
        .image("private/busybox", "1.36", &image.manifest)
        .await;
    let reference = format!("{}/private/busybox:1.36", registry.host());
    let puller = Puller::new(vec![]);

    // The credentials come from an imagePullSecret.
    let secret = format!(
        r#"{{"auths":{{"{}":{{"auth":"{}"}}}}}}"#,
        registry.host(),
        b64("alice:s3cret")
    );
    let creds = skiff_agent::image::pull::credentials_from_docker_config(
        secret.as_bytes(),
        &registry.host(),
    )
    .unwrap();
    let (_dir, store) = new_store();
    let pulled = puller.pull(&store, &reference, Some(&creds)).await.unwrap();
    assert_eq!(pulled.id, image.config_digest());
    assert!(has_sh(&pulled.layers));

    let wrong = Credentials {
        username: "alice".into(),
        password: "wrong".into(),
    };
    for creds in [Some(&wrong), None] {
        let (_dir, store) = new_store();
        let err = puller.pull(&store, &reference, creds).await.unwrap_err();
        assert!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
        assert!(err.to_string().contains("pull access denied"), "{err}");
        assert!(store.resolve(&reference).is_err());
    }
}

// ----- a fake registry: bearer-token flow and tampered blobs -----

#[derive(Default)]
struct FakeState {
    /// Scopes the token endpoint was asked for, with the credentials' validity.
    token_requests: Vec<(String, bool)>,
}

struct Fake {
    port: u16,
    state: Arc<Mutex<FakeState>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Fake {
    fn drop(&mut self) {
        self.task.abort();
    }
}

const TOKEN: &str = "tok-123";

/// Serves the busybox image as `library/busybox:1.36` behind the token flow
/// for user alice / s3cret; with `tamper`, the layer blob has one byte changed.
async fn fake_registry(tamper: bool) -> Fake {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let state = Arc::new(Mutex::new(FakeState::default()));
    let image = busybox();
    let manifest = serde_json::to_vec(&image.manifest).unwrap();
    let mut blobs: HashMap<String, Vec<u8>> = HashMap::new();
    blobs.insert(image.config_digest(), image.config.clone());
    let mut layer = image.layer.clone();
    if tamper {
        let mid = layer.len() / 2;
        layer[mid] ^= 0xff;
    }
    blobs.insert(image.layer_digest.clone(), layer);
    let shared = Arc::new((manifest, blobs, state.clone()));
    let task = tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let shared = shared.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                    let shared = shared.clone();
                    async move { Ok::<_, std::convert::Infallible>(fake_handle(port, &shared, req)) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    Fake { port, state, task }
}

type Shared = (Vec<u8>, HashMap<String, Vec<u8>>, Arc<Mutex<FakeState>>);

fn fake_handle(port: u16, shared: &Shared, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let (manifest, blobs, state) = shared;
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    let reply = |status: StatusCode, headers: &[(&str, String)], body: Vec<u8>| {
        let mut r = Response::builder().status(status);
        for (k, v) in headers {
            r = r.header(*k, v);
        }
        r.body(Full::new(Bytes::from(body))).unwrap()
    };
    let challenge =
        format!(r#"Bearer realm="http://127.0.0.1:{port}/token",service="fake-registry""#);
    let denied = || {
        reply(
            StatusCode::UNAUTHORIZED,
            &[
                ("www-authenticate", challenge.clone()),
                ("content-type", "application/json".into()),
            ],
            br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#.to_vec(),
        )
    };
    let path = req.uri().path().to_string();
    if path == "/token" {
        let query = req.uri().query().unwrap_or_default().to_string();
        let scope = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("scope="))
            .unwrap_or_default()
            .replace("%3A", ":")
            .replace("%2F", "/");
        let valid = header("authorization") == format!("Basic {}", b64("alice:s3cret"));
        state.lock().unwrap().token_requests.push((scope, valid));
        return if valid {
            reply(
                StatusCode::OK,
                &[("content-type", "application/json".into())],
                json!({"token": TOKEN}).to_string().into_bytes(),
            )
        } else {
            reply(StatusCode::UNAUTHORIZED, &[], b"bad credentials".to_vec())
        };
    }
    if header("authorization") != format!("Bearer {TOKEN}") {
        return denied();
    }
    if path == "/v2/" {
        return reply(StatusCode::OK, &[], b"{}".to_vec());
    }
    if path == "/v2/library/busybox/manifests/1.36" {
        return reply(
            StatusCode::OK,
            &[
                ("content-type", MT_OCI_MANIFEST.into()),
                ("docker-content-digest", sha(manifest)),
            ],
            manifest.clone(),
        );
    }
    if let Some(digest) = path.strip_prefix("/v2/library/busybox/blobs/")
        && let Some(blob) = blobs.get(digest)
    {
        return reply(
            StatusCode::OK,
            &[("content-type", "application/octet-stream".into())],
            blob.clone(),
        );
    }
    reply(
        StatusCode::NOT_FOUND,
        &[("content-type", "application/json".into())],
        br#"{"errors":[{"code":"MANIFEST_UNKNOWN","message":"unknown"}]}"#.to_vec(),
    )
}

#[tokio::test]
async fn bearer_token_flow_with_basic_credentials() {
    if !require(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox (busybox-static)",
    ) {
        return;
    }
    let fake = fake_registry(false).await;
    let reference = format!("127.0.0.1:{}/library/busybox:1.36", fake.port);
    let puller = Puller::new(vec![]);
    let alice = Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    let (_dir, store) = new_store();
    let pulled = puller.pull(&store, &reference, Some(&alice)).await.unwrap();
    assert_eq!(pulled.id, busybox().config_digest());
    assert!(has_sh(&pulled.layers));
    let requests = fake.state.lock().unwrap().token_requests.clone();
    assert!(
        requests.contains(&("repository:library/busybox:pull".to_string(), true)),
        "{requests:?}"
    );

    let wrong = Credentials {
        username: "alice".into(),
        password: "nope".into(),
    };
    for creds in [Some(&wrong), None] {
        let (_dir, store) = new_store();
        let err = puller.pull(&store, &reference, creds).await.unwrap_err();
        assert!(matches!(err, PullError::Unauthorized { .. }), "{err:?}");
    }
}

#[tokio::test]
async fn tampered_blob_is_rejected() {
    if !require(
        Path::new("/bin/busybox").exists(),
        "/bin/busybox (busybox-static)",
    ) {
        return;
    }
    let fake = fake_registry(true).await;
    let reference = format!("127.0.0.1:{}/library/busybox:1.36", fake.port);
    let alice = Credentials {
        username: "alice".into(),
        password: "s3cret".into(),
    };
    let (_dir, store) = new_store();
    let err = Puller::new(vec![])
        .pull(&store, &reference, Some(&alice))
        .await
        .unwrap_err();
    assert!(matches!(err, PullError::Invalid { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&busybox().layer_digest), "{text}");
    assert!(text.to_lowercase().contains("digest"), "{text}");
    assert!(store.resolve(&reference).is_err());
    assert!(store.list().unwrap().is_empty());
}
