//! The skiff API server: the Kubernetes API over HTTPS, backed by a
//! revisioned store and an in-memory watch cache.
//!
//! # Layout
//! - this file: [`Config`], [`Server`] (shared state), [`start`] (store →
//!   cache → bootstrap → listener, in that order) and the TLS accept loop.
//! - [`registry`]: Kubernetes' write semantics (create/update/patch/delete,
//!   subresources, graceful deletion, finalizers, allocation).
//! - [`handlers`]: request parsing, lists, tables and watch streams.
//! - [`cache`]: the watch cache.
//! - [`discovery`], [`openapi`]: what clients read to learn the API.
//! - [`table`]: Table and PartialObjectMetadata negotiation.
//! - [`node`]: reaching a pod's node for logs and exec (the [`node::NodeProxy`] boundary).
//! - [`protobuf`]: decoding of the protobuf request bodies kubectl's typed clients send.
//! - [`bootstrap`]: built-in objects and the namespace controller.
//! - [`tls`]: the CA and serving certificate.
//! - [`error`]: `Status` errors.

pub mod bootstrap;
pub mod cache;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod inproc;
pub mod node;
pub mod openapi;
pub mod portforward;
mod proto_schema;
pub mod protobuf;
pub mod registry;
pub mod table;
pub mod tls;

use axum::body::Body;
use http::{Request, Response};
use skiff_store::Store;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use tokio::net::TcpListener;

/// Server settings, from `skiff server`'s flags.
#[derive(Debug, Clone)]
pub struct Config {
    /// `--data-dir`.
    pub data_dir: PathBuf,
    /// `--bind-address`.
    pub bind_address: IpAddr,
    /// `--https-listen-port` (0 picks a free port, for tests).
    pub port: u16,
    /// `--token`: the cluster secret agents join with; generated when absent.
    pub token: Option<String>,
    /// `--write-kubeconfig`; default `DATA_DIR/kubeconfig.yaml`.
    pub write_kubeconfig: Option<PathBuf>,
    /// `--service-cidr`.
    pub service_cidr: (Ipv4Addr, u8),
    /// `--cluster-cidr`.
    pub cluster_cidr: (Ipv4Addr, u8),
    /// `--cluster-dns`.
    pub cluster_dns: Ipv4Addr,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// `--datastore-endpoint`; default `sqlite://DATA_DIR/server/db/state.db`.
    pub datastore_endpoint: Option<String>,
    /// How many revisions of history the store keeps for watches.
    pub retain_revisions: i64,
    /// How often the store compacts history.
    pub compact_interval: std::time::Duration,
    /// `--default-not-ready-toleration-seconds` and
    /// `--default-unreachable-toleration-seconds`: the NoExecute tolerations
    /// admission gives every pod.
    pub default_toleration_seconds: skiff_api::defaults::DefaultTolerationSeconds,
}

impl Config {
    /// Defaults as `skiff server` has them, for a data dir.
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: data_dir.into(),
            bind_address: IpAddr::V4(Ipv4Addr::LOCALHOST),
            port: 6443,
            token: None,
            write_kubeconfig: None,
            service_cidr: (Ipv4Addr::new(10, 43, 0, 0), 16),
            cluster_cidr: (Ipv4Addr::new(10, 42, 0, 0), 16),
            cluster_dns: Ipv4Addr::new(10, 43, 0, 10),
            cluster_domain: "cluster.local".into(),
            datastore_endpoint: None,
            retain_revisions: 10_000,
            compact_interval: std::time::Duration::from_secs(60),
            default_toleration_seconds: Default::default(),
        }
    }

    /// The kubeconfig path.
    pub fn kubeconfig_path(&self) -> PathBuf {
        self.write_kubeconfig
            .clone()
            .unwrap_or_else(|| self.data_dir.join("kubeconfig.yaml"))
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The data dir or a file in it.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The datastore.
    #[error("datastore: {0}")]
    Store(#[from] skiff_store::StoreError),
    /// The datastore endpoint is not one skiff knows.
    #[error("datastore endpoint {0:?} is not supported (use sqlite://PATH)")]
    Endpoint(String),
    /// Certificates.
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    /// Binding the listener.
    #[error("listening on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Creating the built-in objects.
    #[error("bootstrap: {0}")]
    Bootstrap(String),
}

/// Shared server state.
pub struct Server {
    registry: registry::Registry,
    openapi: OnceLock<openapi::OpenApi>,
    ready: AtomicBool,
    tokens: HashSet<String>,
    ca_pem: String,
    node_proxy: std::sync::RwLock<Option<Arc<dyn node::NodeProxy>>>,
    /// `host:port` clients reach the server at.
    pub address: String,
}

impl Server {
    /// The registry.
    pub fn registry(&self) -> &registry::Registry {
        &self.registry
    }

    /// The OpenAPI documents, built on first use.
    pub fn openapi(&self) -> &openapi::OpenApi {
        self.openapi.get_or_init(openapi::OpenApi::build)
    }

    /// Plugs in the way to reach nodes (the embedded agent, remote agents).
    pub fn set_node_proxy(&self, proxy: Arc<dyn node::NodeProxy>) {
        *self.node_proxy.write().expect("node proxy lock") = Some(proxy);
    }

    /// The way to reach nodes, if any.
    pub fn node_proxy(&self) -> Option<Arc<dyn node::NodeProxy>> {
        self.node_proxy.read().expect("node proxy lock").clone()
    }

    /// The cluster CA (PEM), served at `/cacerts` for agents to pin.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Whether bootstrap finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    fn authenticated(&self, req: &Request<Body>) -> bool {
        let Some(h) = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
        else {
            return false;
        };
        match h.strip_prefix("Bearer ") {
            Some(t) => self.tokens.contains(t.trim()),
            None => false,
        }
    }
}

/// Paths anyone may read, as Kubernetes' system:public-info-viewer allows.
fn public_path(path: &str) -> bool {
    matches!(
        path,
        "/healthz" | "/livez" | "/readyz" | "/version" | "/cacerts"
    ) || path.starts_with("/healthz/")
        || path.starts_with("/livez/")
        || path.starts_with("/readyz/")
}

/// A running server.
pub struct Running {
    /// The shared state (also the in-process entry point).
    pub server: Arc<Server>,
    /// The address the listener is bound to.
    pub addr: SocketAddr,
    /// The admin kubeconfig path.
    pub kubeconfig: PathBuf,
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The admin bearer token.
    pub admin_token: String,
    shutdown: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stops accepting connections and waits for the accept loop to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.task.await;
    }
}

fn read_or_create_secret(path: &Path, make: impl FnOnce() -> String) -> Result<String, StartError> {
    match std::fs::read_to_string(path) {
        Ok(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
        _ => {
            let s = make();
            tls::write_private(path, format!("{s}\n").as_bytes()).map_err(|source| {
                StartError::Io {
                    path: path.to_path_buf(),
                    source,
                }
            })?;
            Ok(s)
        }
    }
}

fn random_hex(bytes: usize) -> String {
    let v: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    hex::encode(v)
}

/// Opens the datastore named by the config.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let default_db = config.data_dir.join("server").join("db").join("state.db");
    let path = match config.datastore_endpoint.as_deref() {
        None | Some("") => default_db,
        Some(e) if e.starts_with("sqlite://") => PathBuf::from(&e["sqlite://".len()..]),
        Some(e) => return Err(StartError::Endpoint(e.to_string())),
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| StartError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    let opts = skiff_store::sqlite::SqliteOptions {
        retain_revisions: config.retain_revisions,
        compact_interval: Some(config.compact_interval),
        ..Default::default()
    };
    Ok(Arc::new(skiff_store::SqliteStore::open(&path, opts)?))
}

/// Starts the server: opens the store, loads the cache, creates the built-in
/// objects, writes the kubeconfig and token, and starts serving HTTPS.
pub async fn start(config: Config) -> Result<Running, StartError> {
    let store = open_store(&config)?;
    start_with_store(config, store).await
}

/// [`start`] on a given store (tests pass the in-memory one).
pub async fn start_with_store(
    config: Config,
    store: Arc<dyn Store>,
) -> Result<Running, StartError> {
    let server_dir = config.data_dir.join("server");
    std::fs::create_dir_all(&server_dir).map_err(|source| StartError::Io {
        path: server_dir.clone(),
        source,
    })?;

    let addr = SocketAddr::new(config.bind_address, config.port);
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| StartError::Listen { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| StartError::Listen { addr, source })?;

    let host = if config.bind_address.is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        config.bind_address
    };
    let mut names: Vec<String> = vec![
        "localhost".into(),
        "127.0.0.1".into(),
        "::1".into(),
        host.to_string(),
    ];
    if let Ok(h) = std::fs::read_to_string("/proc/sys/kernel/hostname") {
        names.push(h.trim().to_string());
    }
    let kube_svc_ip = Ipv4Addr::from(u32::from(config.service_cidr.0) + 1);
    names.push(kube_svc_ip.to_string());
    for n in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
        names.push(n.into());
    }
    names.push(format!("kubernetes.default.svc.{}", config.cluster_domain));
    let pki = tls::load_or_create(&server_dir.join("tls"), &names)?;

    let admin_token = read_or_create_secret(&server_dir.join("admin.token"), || random_hex(32))?;
    let secret = match &config.token {
        Some(t) => t.clone(),
        None => read_or_create_secret(&server_dir.join("token.secret"), || random_hex(16))?,
    };
    let join_token = format!("K10{}::server:{secret}", tls::ca_hash(&pki.ca_pem));
    let token_path = config.data_dir.join("token");
    tls::write_private(&token_path, format!("{join_token}\n").as_bytes()).map_err(|source| {
        StartError::Io {
            path: token_path.clone(),
            source,
        }
    })?;

    let cache = cache::Cache::start(store.clone()).await?;
    let reg_config = registry::RegistryConfig {
        service_cidr: config.service_cidr,
        default_toleration_seconds: config.default_toleration_seconds,
        ..Default::default()
    };
    let mut tokens = HashSet::new();
    tokens.insert(admin_token.clone());
    // Agents present the join token (or its secret part, as k3s allows).
    tokens.insert(join_token.clone());
    tokens.insert(secret.clone());
    let address = format!("{}:{}", host, local.port());
    let server = Arc::new(Server {
        registry: registry::Registry::new(store, cache, reg_config),
        openapi: OnceLock::new(),
        ready: AtomicBool::new(false),
        tokens,
        ca_pem: pki.ca_pem.clone(),
        node_proxy: std::sync::RwLock::new(None),
        address: address.clone(),
    });

    let kubeconfig = config.kubeconfig_path();
    let url_host = if host.is_ipv6() {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    write_kubeconfig(
        &kubeconfig,
        &format!("https://{url_host}:{}", local.port()),
        &pki.ca_pem,
        &admin_token,
    )
    .map_err(|source| StartError::Io {
        path: kubeconfig.clone(),
        source,
    })?;

    let (shutdown, shutdown_rx) = tokio::sync::watch::channel(false);
    let task = tokio::spawn(accept_loop(
        server.clone(),
        listener,
        pki.server_config.clone(),
        shutdown_rx.clone(),
    ));

    bootstrap::ensure_builtin(&server, kube_svc_ip, local.port(), host)
        .await
        .map_err(|e| StartError::Bootstrap(e.message))?;
    bootstrap::spawn_namespace_controller(server.clone(), shutdown_rx);
    server.ready.store(true, Ordering::Release);
    // Warm the OpenAPI documents off the request path.
    let s2 = server.clone();
    tokio::task::spawn_blocking(move || {
        s2.openapi();
    });
    Ok(Running {
        server,
        addr: local,
        kubeconfig,
        ca_pem: pki.ca_pem,
        admin_token,
        shutdown,
        task,
    })
}

/// Writes an admin kubeconfig that the real kubectl uses as it is.
pub fn write_kubeconfig(
    path: &Path,
    server_url: &str,
    ca_pem: &str,
    token: &str,
) -> std::io::Result<()> {
    let ca = base64::Engine::encode(
        &base64::engine::general_purpose::STANDARD,
        ca_pem.as_bytes(),
    );
    let text = format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- cluster:\n    certificate-authority-data: {ca}\n    server: {server_url}\n  name: default\ncontexts:\n- context:\n    cluster: default\n    user: default\n  name: default\ncurrent-context: default\npreferences: {{}}\nusers:\n- name: default\n  user:\n    token: {token}\n"
    );
    tls::write_private(path, text.as_bytes())
}

/// Serves one request in-process (no TLS, no authentication): the entry
/// point for components inside the binary.
pub async fn serve_request(server: Arc<Server>, req: Request<Body>) -> Response<Body> {
    handlers::handle(server, req).await
}

async fn serve_authenticated(server: Arc<Server>, req: Request<Body>) -> Response<Body> {
    if !public_path(req.uri().path()) && !server.authenticated(&req) {
        return axum::response::IntoResponse::into_response(error::ApiError::unauthorized());
    }
    handlers::handle(server, req).await
}

async fn accept_loop(
    server: Arc<Server>,
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let (tcp, _peer) = tokio::select! {
            r = listener.accept() => match r {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!("accept: {e}");
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let server = server.clone();
        let mut conn_shutdown = shutdown.clone();
        tokio::spawn(async move {
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let server = server.clone();
                async move {
                    let req = req.map(Body::new);
                    Ok::<_, std::convert::Infallible>(serve_authenticated(server, req).await)
                }
            });
            let builder =
                hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
            let conn = builder.serve_connection_with_upgrades(io, svc);
            tokio::pin!(conn);
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = conn_shutdown.changed() => {
                    conn.as_mut().graceful_shutdown();
                    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), conn).await;
                }
            }
        });
    }
}
