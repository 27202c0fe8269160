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
//! - [`node`]: reaching a pod's node for logs and exec (the [`node::NodeProxy`] boundary);
//!   [`node_client`] and [`node_server`]: both ends of the HTTPS protocol to
//!   remote agents' kubelet endpoints.
//! - [`metrics_api`]: `metrics.k8s.io/v1beta1` (NodeMetrics, PodMetrics) from a
//!   scraper of the nodes' cumulative usage, as metrics-server serves it.
//! - [`protobuf`]: decoding of the protobuf request bodies kubectl's typed clients send.
//! - [`bootstrap`]: built-in objects and the namespace controller.
//! - [`bootstrap_data`]: the CA and admin token every server of a cluster
//!   shares, sealed with the token in the datastore.
//! - [`peers`]: the `kubernetes` Service's endpoints, every live server.
//! - [`tls`]: the CA and serving certificate.
//! - [`error`]: `Status` errors.

pub mod bootstrap;
pub mod bootstrap_data;
pub mod cache;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod inproc;
pub mod metrics_api;
pub mod node;
pub mod node_client;
pub mod node_server;
pub mod openapi;
pub mod peers;
pub mod portforward;
mod proto_schema;
pub mod protobuf;
pub mod registry;
pub mod resource_metrics;
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
    /// `--datastore-cafile`, `--datastore-certfile`, `--datastore-keyfile`:
    /// TLS to an `https://` etcd endpoint (none: the system's CA bundle).
    pub datastore_tls: Option<skiff_store::EtcdTls>,
    /// How many revisions of history the store keeps for watches.
    pub retain_revisions: i64,
    /// How often the store compacts history.
    pub compact_interval: std::time::Duration,
    /// `--default-not-ready-toleration-seconds` and
    /// `--default-unreachable-toleration-seconds`: the NoExecute tolerations
    /// admission gives every pod.
    pub default_toleration_seconds: skiff_api::defaults::DefaultTolerationSeconds,
    /// `--tls-san`: more names and addresses for the serving certificate.
    pub tls_san: Vec<String>,
    /// The cluster's network settings handed to joining nodes with their credentials.
    pub node_network: Option<serde_json::Value>,
    /// Whether the cluster runs its DNS (the `kube-dns` Service then holds `cluster_dns`).
    pub cluster_dns_enabled: bool,
    /// `--metric-resolution`: how often the resource metrics API scrapes the
    /// nodes (metrics-server's flag and default, 15 s).
    pub metric_resolution: std::time::Duration,
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
            datastore_tls: None,
            retain_revisions: 10_000,
            compact_interval: std::time::Duration::from_secs(60),
            default_toleration_seconds: Default::default(),
            tls_san: Vec::new(),
            node_network: None,
            cluster_dns_enabled: true,
            metric_resolution: metrics_api::DEFAULT_RESOLUTION,
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
    #[error("datastore")]
    Store(#[from] skiff_store::StoreError),
    /// The datastore endpoint is not one skiff knows.
    #[error(
        "datastore endpoint {0:?} is not supported (use sqlite://PATH, or http(s)://HOST:PORT for etcd)"
    )]
    Endpoint(String),
    /// Datastore TLS files without an etcd endpoint.
    #[error(
        "--datastore-cafile, --datastore-certfile and --datastore-keyfile are for an etcd datastore \
         (--datastore-endpoint https://HOST:PORT), not {0}"
    )]
    DatastoreTls(String),
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
    admin_token: String,
    /// The join token and its secret part: what a new agent presents.
    join_tokens: HashSet<String>,
    /// The key node tokens are derived from.
    node_key: Vec<u8>,
    pki: tls::Pki,
    local_node: std::sync::RwLock<Option<(String, Arc<dyn node::NodeProxy>)>>,
    remote_nodes: Arc<node_client::RemoteNodes>,
    /// `host:port` clients reach the server at.
    pub address: String,
    /// The network settings nodes receive when they join.
    node_network: Option<serde_json::Value>,
    /// The resource metrics the scraper keeps.
    metrics: metrics_api::MetricsStore,
    /// How often the scraper runs.
    metric_resolution: std::time::Duration,
}

impl Server {
    /// The registry.
    pub fn registry(&self) -> &registry::Registry {
        &self.registry
    }

    /// The resource metrics the scraper keeps (`metrics.k8s.io`).
    pub fn metrics(&self) -> &metrics_api::MetricsStore {
        &self.metrics
    }

    /// How often the resource metrics scraper runs.
    pub fn metric_resolution(&self) -> std::time::Duration {
        self.metric_resolution
    }

    /// The OpenAPI documents, built on first use.
    pub fn openapi(&self) -> &openapi::OpenApi {
        self.openapi.get_or_init(openapi::OpenApi::build)
    }

    /// Plugs in the embedded agent, reached in-process for its node `node_name`.
    pub fn set_node_proxy(&self, node_name: &str, proxy: Arc<dyn node::NodeProxy>) {
        *self.local_node.write().expect("node proxy lock") = Some((node_name.to_string(), proxy));
    }

    /// The way to `node`: the embedded agent for its own node, HTTPS to the
    /// kubelet endpoint for every other.
    pub fn node_proxy(&self, node: &str) -> Arc<dyn node::NodeProxy> {
        if let Some((name, proxy)) = self.local_node.read().expect("node proxy lock").as_ref()
            && name == node
        {
            return proxy.clone();
        }
        self.remote_nodes.clone()
    }

    /// The pod target of a logs, exec or port-forward request, with its node's
    /// kubelet endpoint filled in.
    pub async fn pod_target(
        &self,
        pod: &serde_json::Value,
    ) -> Result<node::PodTarget, error::ApiError> {
        let mut target = node::target(pod)?;
        let nodes = skiff_api::catalog::lookup("", "v1", "nodes").expect("nodes");
        if let Ok(n) = self.registry.get(nodes, None, &target.node).await {
            target.kubelet = node::kubelet_endpoint(&n.value);
        }
        Ok(target)
    }

    /// The cluster CA (PEM), served at `/cacerts` for agents to pin.
    pub fn ca_pem(&self) -> &str {
        &self.pki.ca_pem
    }

    /// Whether bootstrap finished.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Who a request's bearer token says it is.
    fn authenticate(&self, req: &Request<Body>) -> Option<Identity> {
        let token = req
            .headers()
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())?
            .strip_prefix("Bearer ")?
            .trim();
        if token == self.admin_token {
            return Some(Identity::Admin);
        }
        if self.join_tokens.contains(token) {
            return Some(Identity::Joining);
        }
        let (name, _) = token.strip_prefix(NODE_TOKEN_PREFIX)?.rsplit_once(':')?;
        (self.node_token(name) == token).then(|| Identity::Node(name.to_string()))
    }

    /// The bearer token of node `name`: `skiff-node:<name>:<HMAC-SHA256 of the
    /// name under the cluster secret>`. Nothing to store; a new cluster secret
    /// revokes them all.
    pub fn node_token(&self, name: &str) -> String {
        use hmac::Mac;
        let mut mac = hmac::Hmac::<sha2::Sha256>::new_from_slice(&self.node_key)
            .expect("HMAC takes any key length");
        mac.update(b"node:");
        mac.update(name.as_bytes());
        format!(
            "{NODE_TOKEN_PREFIX}{name}:{}",
            hex::encode(mac.finalize().into_bytes())
        )
    }

    /// `POST /v1-skiff/node-credentials` (join token only): a node's own
    /// bearer token and the serving certificate of its kubelet endpoint.
    fn node_credentials(&self, body: &[u8]) -> Result<serde_json::Value, error::ApiError> {
        let req: serde_json::Value = serde_json::from_slice(body)
            .map_err(|e| error::ApiError::bad_request(format!("node credentials request: {e}")))?;
        let name = req["nodeName"].as_str().unwrap_or("");
        let errs = skiff_api::validation::is_dns1123_subdomain(name);
        if name.is_empty() || !errs.is_empty() {
            return Err(error::ApiError::bad_request(format!(
                "invalid node name {name:?}: {}",
                errs.join("; ")
            )));
        }
        let mut names = vec![name.to_string()];
        names.extend(
            req["addresses"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|a| a.as_str())
                .filter(|a| a.parse::<IpAddr>().is_ok())
                .map(str::to_string),
        );
        let (cert, key) = self
            .pki
            .issue(
                &format!("system:node:{name}"),
                Some("system:nodes"),
                &names,
                tls::Usage::Server,
            )
            .map_err(|e| error::ApiError::internal(e.to_string()))?;
        Ok(serde_json::json!({
            "token": self.node_token(name),
            "caCert": self.pki.ca_pem,
            "servingCert": cert,
            "servingKey": key,
            "network": self.node_network,
        }))
    }
}

const NODE_TOKEN_PREFIX: &str = "skiff-node:";

/// Who is calling, from the bearer token.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Identity {
    /// The admin kubeconfig.
    Admin,
    /// An agent that has only the join token yet.
    Joining,
    /// A node agent with its own token (`system:node:<name>`).
    Node(String),
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
    /// Keeps this server in the `kubernetes` Service's endpoints.
    peers: Option<tokio::task::JoinHandle<()>>,
}

impl Running {
    /// Takes this server out of the `kubernetes` Service's endpoints, stops
    /// accepting connections and waits for the accept loop to end.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        if let Some(peers) = self.peers {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(2), peers).await;
        }
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

/// The SQLite database of a data dir, when no `--datastore-endpoint` names another.
pub fn default_sqlite_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server").join("db").join("state.db")
}

/// Opens the datastore named by the config.
pub fn open_store(config: &Config) -> Result<Arc<dyn Store>, StartError> {
    let path = match config.datastore_endpoint.as_deref() {
        None | Some("") => default_sqlite_path(&config.data_dir),
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
    let etcd = config
        .datastore_endpoint
        .as_deref()
        .and_then(skiff_store::etcd::parse_endpoints);
    let store: Arc<dyn Store> = match etcd {
        // etcd: `http(s)://host:port`, several separated by commas.
        Some(endpoints) => {
            let tls = config.datastore_tls.as_ref();
            Arc::new(skiff_store::EtcdStore::connect(&endpoints, tls).await?)
        }
        None if config.datastore_tls.is_some() => {
            return Err(StartError::DatastoreTls(
                config
                    .datastore_endpoint
                    .clone()
                    .filter(|e| !e.is_empty())
                    .unwrap_or_else(|| "the default SQLite datastore".into()),
            ));
        }
        None => open_store(&config)?,
    };
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
    if let Some(ip) = bootstrap::advertise_address(config.bind_address) {
        names.push(ip.to_string());
    }
    names.extend(config.tls_san.iter().cloned());
    let kube_svc_ip = Ipv4Addr::from(u32::from(config.service_cidr.0) + 1);
    names.push(kube_svc_ip.to_string());
    for n in ["kubernetes", "kubernetes.default", "kubernetes.default.svc"] {
        names.push(n.into());
    }
    names.push(format!("kubernetes.default.svc.{}", config.cluster_domain));
    // A server's --token may be the full join token; its CA pin is then checked.
    let (pin, secret) = match &config.token {
        Some(t) => bootstrap_data::parse_token(t.trim()),
        None => (
            None,
            read_or_create_secret(&server_dir.join("token.secret"), || random_hex(16))?,
        ),
    };
    let tls_dir = server_dir.join("tls");
    let shared = bootstrap_data::reconcile(
        &*store,
        &secret,
        &tls_dir,
        &server_dir.join("admin.token"),
        || random_hex(32),
    )
    .await?;
    if let Some(pin) = pin
        && pin != tls::ca_hash(&shared.ca_cert)
    {
        return Err(StartError::Bootstrap(format!(
            "the token pins CA sha256 {pin}, but the cluster's CA has sha256 {}",
            tls::ca_hash(&shared.ca_cert)
        )));
    }
    let pki = tls::load_or_create(&tls_dir, &names)?;
    let admin_token = shared.admin_token;
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
    // Agents present the join token (or its secret part, as k3s allows).
    let join_tokens: HashSet<String> = [join_token.clone(), secret.clone()].into();
    let remote_nodes = Arc::new(node_client::RemoteNodes::new(pki.kubelet_client.clone()));
    let ca_pem = pki.ca_pem.clone();
    let address = format!("{}:{}", host, local.port());
    let server = Arc::new(Server {
        registry: registry::Registry::new(store.clone(), cache, reg_config),
        openapi: OnceLock::new(),
        ready: AtomicBool::new(false),
        admin_token: admin_token.clone(),
        join_tokens,
        node_key: secret.clone().into_bytes(),
        pki,
        local_node: std::sync::RwLock::new(None),
        remote_nodes,
        address: address.clone(),
        node_network: config.node_network.clone(),
        metrics: metrics_api::MetricsStore::default(),
        metric_resolution: config
            .metric_resolution
            .max(std::time::Duration::from_millis(100)),
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
        &ca_pem,
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
        server.pki.server_config.clone(),
        shutdown_rx.clone(),
    ));

    let dns = config.cluster_dns_enabled.then_some(config.cluster_dns);
    bootstrap::ensure_builtin(&server, kube_svc_ip, dns, local.port(), host)
        .await
        .map_err(|e| StartError::Bootstrap(e.message))?;
    bootstrap::spawn_namespace_controller(server.clone(), shutdown_rx.clone());
    let peers = bootstrap::advertise_address(host).map(|ip| {
        tokio::spawn(peers::run(
            server.clone(),
            ip,
            local.port(),
            peers::INTERVAL,
            peers::TTL,
            shutdown_rx.clone(),
        ))
    });
    // SQLite compacts itself; etcd is compacted by its clients.
    if config
        .datastore_endpoint
        .as_deref()
        .and_then(skiff_store::etcd::parse_endpoints)
        .is_some()
    {
        spawn_compactor(store, ETCD_COMPACTION_INTERVAL, shutdown_rx.clone());
    }
    metrics_api::spawn_scraper(server.clone(), shutdown_rx);
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
        ca_pem,
        admin_token,
        shutdown,
        task,
        peers,
    })
}

/// How often history in etcd is compacted: kube-apiserver's
/// `--etcd-compaction-interval` default.
pub const ETCD_COMPACTION_INTERVAL: std::time::Duration = std::time::Duration::from_secs(300);

/// Compacts an etcd datastore as kube-apiserver does: at every tick, up to the
/// revision seen at the previous tick, so watches keep one interval of
/// history. Each server of a cluster compacts; a compaction another server
/// already made is a no-op. (SQLite compacts itself.)
pub fn spawn_compactor(
    store: Arc<dyn Store>,
    every: std::time::Duration,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    tokio::spawn(async move {
        let mut previous = None;
        loop {
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.changed() => return,
            }
            if let Some(rev) = previous
                && let Err(e) = store.compact(rev).await
            {
                tracing::warn!("compacting the datastore at revision {rev}: {e}");
            }
            previous = store.current_revision().await.ok();
        }
    });
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
    use axum::response::IntoResponse;
    if public_path(req.uri().path()) {
        return handlers::handle(server, req).await;
    }
    let Some(who) = server.authenticate(&req) else {
        return error::ApiError::unauthorized().into_response();
    };
    if req.uri().path() == "/v1-skiff/node-credentials" {
        if !matches!(who, Identity::Admin | Identity::Joining) || req.method() != http::Method::POST
        {
            return error::ApiError::forbidden_path(req.uri().path()).into_response();
        }
        let body = match http_body_util::BodyExt::collect(http_body_util::Limited::new(
            req.into_body(),
            64 * 1024,
        ))
        .await
        {
            Ok(b) => b.to_bytes(),
            Err(e) => return error::ApiError::bad_request(e.to_string()).into_response(),
        };
        return match server.node_credentials(&body) {
            Ok(v) => axum::Json(v).into_response(),
            Err(e) => e.into_response(),
        };
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
