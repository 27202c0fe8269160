//! `skiff`: Kubernetes in one small binary. Glue only: flags in, components started in order.

mod local_node;
mod migrate;
mod node_net;

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::time::Instant;

#[derive(Parser)]
#[command(name = "skiff", version, about = "Kubernetes in one small binary")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the control plane (API server on an embedded store) and, unless disabled, a node agent.
    Server(Box<ServerArgs>),
    /// Run a node agent that joins a server.
    Agent(AgentArgs),
    /// Run N hollow nodes (fake runtime: pods run at once) that join a server, for capacity and scheduler tests.
    Sim(SimArgs),
    /// Manage the images of a node.
    #[command(subcommand)]
    Image(ImageCommand),
    /// Copy a cluster kept in SQLite into etcd (stop the server first).
    Migrate(migrate::MigrateArgs),
    /// The per-container shim the agent starts (internal).
    #[command(hide = true)]
    Shim {
        /// Arguments for the shim.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

#[derive(clap::Args)]
struct AgentArgs {
    /// The server to join, https://HOST:PORT; several, comma-separated, for a cluster
    /// of servers: the agent then reaches whichever of them answers.
    #[arg(long, short = 's', env = "SKIFF_URL")]
    server: String,
    /// The join token from the server's DATA_DIR/token.
    #[arg(
        long,
        short = 't',
        env = "SKIFF_TOKEN",
        required_unless_present = "token_file"
    )]
    token: Option<String>,
    /// A file holding the join token (e.g. a copy of the server's DATA_DIR/token).
    #[arg(long, env = "SKIFF_TOKEN_FILE", conflicts_with = "token")]
    token_file: Option<PathBuf>,
    /// Where the agent keeps containers, images and logs.
    #[arg(long, short = 'd', default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// This node's name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// The address the node advertises (default: its first non-loopback IPv4 address).
    #[arg(long)]
    node_ip: Option<IpAddr>,
    /// The longest crash-loop back-off between container restarts.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    crashloop_backoff_max: std::time::Duration,
    /// The port of this node's kubelet endpoint, which the server calls for logs,
    /// exec and port-forward (agents sharing a machine need distinct ports).
    #[arg(long, default_value_t = 10250)]
    kubelet_port: u16,
}

#[derive(clap::Args)]
struct SimArgs {
    /// The server to join, https://HOST:PORT; several, comma-separated, for a cluster
    /// of servers: the agent then reaches whichever of them answers.
    #[arg(long, short = 's', env = "SKIFF_URL")]
    server: String,
    /// The join token from the server's DATA_DIR/token.
    #[arg(long, short = 't', env = "SKIFF_TOKEN")]
    token: String,
    /// How many hollow nodes to run.
    #[arg(long, default_value_t = 100)]
    nodes: usize,
    /// Node names are PREFIX0, PREFIX1, …
    #[arg(long, default_value = "hollow-node-")]
    name_prefix: String,
    /// CPUs each node offers.
    #[arg(long, default_value_t = 4)]
    cpu: u64,
    /// Memory each node offers (bytes, or with a Ki/Mi/Gi/Ti suffix).
    #[arg(long, default_value = "32Gi", value_parser = skiff_agent::hollow::parse_memory_kib)]
    memory: u64,
    /// Pods each node takes.
    #[arg(long, default_value_t = 110)]
    max_pods: u32,
    /// Requests in flight at most.
    #[arg(long, default_value_t = 128)]
    concurrency: usize,
    /// How often each node renews its Lease (spread over the interval across nodes).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    lease_interval: std::time::Duration,
    /// How often each node posts its status when nothing changed (spread likewise).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    status_interval: std::time::Duration,
    /// Delete the hollow nodes and their Leases on exit.
    #[arg(long)]
    delete_nodes_on_exit: bool,
}

async fn sim(args: SimArgs) -> Result<()> {
    use skiff_agent::hollow::{HollowConfig, validate};
    let cfg = HollowConfig {
        count: args.nodes,
        name_prefix: args.name_prefix,
        cpus: args.cpu,
        memory_kib: args.memory,
        max_pods: args.max_pods,
        lease_interval: args.lease_interval,
        status_interval: args.status_interval,
        concurrency: args.concurrency,
        delete_nodes_on_exit: args.delete_nodes_on_exit,
        ..HollowConfig::default()
    };
    validate(&cfg).map_err(anyhow::Error::msg)?;
    // The hollow nodes share the join token's identity, as kubemark's share one kubeconfig.
    let trusted = trust_server(&args.server, &args.token).await?;
    let client = trusted.client(&args.token)?;
    client
        .request_text(
            http::Request::get("/api")
                .body(Vec::new())
                .expect("valid request"),
        )
        .await
        .map_err(|e| refused(&args.server, e))?;
    eprintln!(
        "skiff sim: starting {} hollow nodes against {}",
        cfg.count, args.server
    );
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    let mut task = tokio::spawn(skiff_agent::hollow::run(client, cfg, shutdown));
    tokio::select! {
        _ = shutdown_signal() => {}
        r = &mut task => {
            r.context("sim task")??;
            return Ok(());
        }
    }
    let _ = stop.send(true);
    task.await.context("sim task")??;
    Ok(())
}

/// What a node gets when it joins: its own credentials, and the
/// certificate of its kubelet endpoint.
struct Joined {
    /// The cluster's network settings.
    network: skiff_agent::network::ClusterNetwork,
    serving_cert: String,
    serving_key: String,
    /// The node's own bearer token.
    node_token: String,
    /// The server it joined through.
    trusted: Trusted,
}

/// A server whose CA the join token's pin vouched for.
struct Trusted {
    url: http::Uri,
    ca_pem: String,
    ca_der: Vec<Vec<u8>>,
}

impl Trusted {
    /// A client of the server that trusts only its CA and sends `token`.
    fn client(&self, token: &str) -> Result<kube::Client> {
        self.client_at(self.url.clone(), token)
    }

    /// A client of the cluster at `url` (another server of it, or the node's
    /// balancer in front of them) that trusts only the CA and sends `token`.
    fn client_at(&self, url: http::Uri, token: &str) -> Result<kube::Client> {
        let mut cfg = kube::Config::new(url);
        cfg.root_cert = Some(self.ca_der.clone());
        cfg.auth_info.token = Some(token.to_string().into());
        kube::Client::try_from(cfg).context("building a client")
    }
}

/// The error for a request the server answered with 401.
fn refused(server: &str, e: kube::Error) -> anyhow::Error {
    match e {
        kube::Error::Api(s) if s.code == 401 => {
            anyhow::anyhow!("the server at {server} refused the token (401 Unauthorized)")
        }
        other => anyhow::anyhow!("joining {server}: {other}"),
    }
}

/// Fetches a server's CA and checks it against the token's pin before any
/// credential is sent.
async fn trust_server(server: &str, token: &str) -> Result<Trusted> {
    let url: http::Uri = server
        .parse()
        .with_context(|| format!("--server {server:?} is not a URL"))?;
    let (pin, _secret) = skiff_apiserver::bootstrap_data::parse_token(token);
    // Fetch /cacerts without trusting anything yet, and without credentials.
    let mut probe = kube::Config::new(url.clone());
    probe.accept_invalid_certs = true;
    let probe = kube::Client::try_from(probe).context("building a client")?;
    let ca = probe
        .request_text(
            http::Request::get("/cacerts")
                .body(Vec::new())
                .expect("valid request"),
        )
        .await
        .with_context(|| format!("cannot reach the server at {server}"))?;
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(ca.as_bytes()))
    };
    match pin {
        Some(p) if p != hash => bail!(
            "the server at {server} presents a CA that does not match the token (token pins sha256 {p}, server has {hash}); refusing to send credentials"
        ),
        Some(_) => {}
        None => eprintln!(
            "skiff: warning: the token pins no CA hash; trusting the server's CA on first use"
        ),
    }
    let der: Vec<Vec<u8>> = rustls_pemfile::certs(&mut ca.as_bytes())
        .filter_map(|c| c.ok())
        .map(|c| c.to_vec())
        .collect();
    if der.is_empty() {
        bail!("the server at {server} sent no CA certificate");
    }
    Ok(Trusted {
        url,
        ca_pem: ca,
        ca_der: der,
    })
}

/// Joins a server: checks its CA against the token's pin, then trades the
/// join token for the node's own token and kubelet serving certificate, and
/// connects with those.
async fn join(server: &str, token: &str, node_name: &str, address: &str) -> Result<Joined> {
    let trusted = trust_server(server, token).await?;
    let body = serde_json::json!({"nodeName": node_name, "addresses": [address]});
    let creds: serde_json::Value = trusted
        .client(token)?
        .request(
            http::Request::post("/v1-skiff/node-credentials")
                .header(http::header::CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(&body)?)
                .expect("valid request"),
        )
        .await
        .map_err(|e| refused(server, e))?;
    let field = |k: &str| -> Result<String> {
        creds[k]
            .as_str()
            .map(str::to_string)
            .with_context(|| format!("the server at {server} sent node credentials without {k}"))
    };
    // Servers before networking sent no settings: their nodes keep loopback-only pods.
    let network = serde_json::from_value(creds["network"].clone()).unwrap_or_else(|_| {
        skiff_agent::network::ClusterNetwork {
            pod_network: false,
            service_proxy: false,
            cluster_dns: None,
            ..Default::default()
        }
    });
    Ok(Joined {
        network,
        serving_cert: field("servingCert")?,
        serving_key: field("servingKey")?,
        node_token: field("token")?,
        trusted,
    })
}

/// Joins the first of `servers` that answers (all servers of a cluster
/// share its CA and tokens, so any will do).
async fn join_any(
    servers: &[String],
    token: &str,
    node_name: &str,
    address: &str,
) -> Result<Joined> {
    let mut last = None;
    for server in servers {
        match join(server, token, node_name, address).await {
            Ok(j) => return Ok(j),
            Err(e) => {
                if servers.len() > 1 {
                    eprintln!("skiff agent: {e:#}; trying the next server");
                }
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("--server lists no server")))
}

/// The `host:port` of each server URL, for the balancer.
fn server_authorities(servers: &[String]) -> Result<Vec<String>> {
    servers
        .iter()
        .map(|s| {
            let url: http::Uri = s
                .parse()
                .with_context(|| format!("--server {s:?} is not a URL"))?;
            let host = url
                .host()
                .with_context(|| format!("--server {s:?} has no host"))?;
            Ok(format!("{host}:{}", url.port_u16().unwrap_or(6443)))
        })
        .collect()
}

/// A node's runtime: runc itself when it runs here (for logs and exec), the
/// runtime the kubelet drives, and the runtime's version or why it cannot run.
struct NodeRuntime {
    runc: Option<std::sync::Arc<skiff_agent::runtime::runc::RuncRuntime>>,
    runtime: std::sync::Arc<dyn skiff_agent::runtime::Runtime>,
    status: Result<String, String>,
}

/// The node's container runtime: runc when this machine can run it, else a
/// runtime that says why not.
fn node_runtime(
    agent_dir: &std::path::Path,
    node_name: &str,
    network: &std::sync::Arc<skiff_agent::network::PodNetwork>,
) -> Result<NodeRuntime> {
    use skiff_agent::runtime::{Runtime, Unavailable, runc::RuncRuntime};
    use std::sync::Arc;
    let exe = std::env::current_exe().context("locating the skiff binary for the shim")?;
    let status = RuncRuntime::check();
    let runc: Result<Arc<RuncRuntime>, String> = match &status {
        Ok(_) => RuncRuntime::new(
            agent_dir.join("containers"),
            vec![exe.to_string_lossy().into_owned(), "shim".into()],
        )
        .map(|r| Arc::new(r.with_network(network.clone())))
        .map_err(|e| e.to_string()),
        Err(why) => Err(why.clone()),
    };
    let runtime: Arc<dyn Runtime> = match &runc {
        Ok(r) => r.clone(),
        Err(why) => {
            eprintln!("skiff agent: cannot run containers: {why}; node {node_name} stays NotReady");
            Arc::new(Unavailable(why.clone()))
        }
    };
    let version = match (&runc, status) {
        (Ok(_), Ok(v)) => Ok(format!(
            "runc://{}",
            v.trim_start_matches("runc version ")
                .split_whitespace()
                .next()
                .unwrap_or("")
        )),
        (Err(why), _) => Err(why.clone()),
        (_, Err(why)) => Err(why),
    };
    Ok(NodeRuntime {
        runc: runc.ok(),
        runtime,
        status: version,
    })
}

async fn agent(args: AgentArgs) -> Result<()> {
    use std::sync::Arc;
    let node_name = args.node_name.clone().unwrap_or_else(hostname);
    let address = args
        .node_ip
        .or_else(|| {
            skiff_apiserver::bootstrap::advertise_address(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
        })
        .map(|a| a.to_string())
        .unwrap_or_else(|| "127.0.0.1".into());
    let token = match (&args.token, &args.token_file) {
        (Some(t), _) => t.trim().to_string(),
        (None, Some(f)) => std::fs::read_to_string(f)
            .with_context(|| format!("reading --token-file {}", f.display()))?
            .trim()
            .to_string(),
        (None, None) => bail!("give the join token with --token or --token-file"),
    };
    let servers: Vec<String> = args
        .server
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    let joined = join_any(&servers, &token, &node_name, &address).await?;
    let (stop, shutdown) = tokio::sync::watch::channel(false);
    // With several servers, the node's clients go through a local balancer
    // that moves to another server when one stops answering (k3s' agent
    // load balancer); every server's certificate names 127.0.0.1.
    let url: http::Uri = if servers.len() > 1 {
        let balancer = skiff_net::balancer::Balancer::start(
            std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            server_authorities(&servers)?,
            shutdown.clone(),
        )
        .await
        .context("starting the API server balancer")?;
        eprintln!(
            "skiff agent: reaching the servers {} through {}",
            servers.join(", "),
            balancer.local_addr()
        );
        format!("https://{}", balancer.local_addr()).parse()?
    } else {
        joined.trusted.url.clone()
    };
    let client = joined.trusted.client_at(url, &joined.node_token)?;
    let agent_dir = args.data_dir.join("agent");
    std::fs::create_dir_all(&agent_dir)
        .with_context(|| format!("creating {}", agent_dir.display()))?;
    let network = node_net::pod_network(joined.network.clone(), &agent_dir);
    // Kept as k3s keeps them, for inspection; every start asks afresh.
    for (file, contents) in [
        ("server-ca.crt", &joined.trusted.ca_pem),
        ("serving-kubelet.crt", &joined.serving_cert),
        ("serving-kubelet.key", &joined.serving_key),
    ] {
        let path = agent_dir.join(file);
        skiff_apiserver::tls::write_private(&path, contents.as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    let NodeRuntime {
        runc,
        runtime,
        status: runtime_status,
    } = node_runtime(&agent_dir, &node_name, &network)?;

    // The kubelet endpoint the server reaches for logs, exec and port-forward.
    let bind: IpAddr = args.node_ip.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let listener = tokio::net::TcpListener::bind((bind, args.kubelet_port))
        .await
        .with_context(|| {
            format!(
                "listening on {bind}:{} for the kubelet endpoint (another agent on this machine? give each its own --kubelet-port)",
                args.kubelet_port
            )
        })?;
    let tls = skiff_apiserver::tls::kubelet_server_config(
        &joined.trusted.ca_pem,
        &joined.serving_cert,
        &joined.serving_key,
    )
    .context("the kubelet serving certificate")?;
    let pods: skiff_apiserver::node_server::PodLookup = {
        let client = client.clone();
        Arc::new(move |ns: String, name: String| {
            let client = client.clone();
            Box::pin(async move { get_pod(&client, &ns, &name).await })
        })
    };
    let node_server = skiff_apiserver::node_server::NodeServer {
        node_name: node_name.clone(),
        proxy: Arc::new(local_node::LocalNode {
            agent_dir: agent_dir.clone(),
            node_name: node_name.clone(),
            runc,
        }),
        pods,
    };
    let images = skiff_agent::image::ImageStore::open(&agent_dir.join("images"))?;
    let config = skiff_agent::kubelet::AgentConfig {
        node_name: node_name.clone(),
        data_dir: agent_dir,
        address,
        roles: Vec::new(),
        crashloop_backoff_max: args.crashloop_backoff_max,
        self_assign: false,
        runtime_status,
        kubelet_port: listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(args.kubelet_port),
        network: Some(network.clone()),
    };
    eprintln!(
        "skiff agent: node {node_name} joined {}",
        joined.trusted.url
    );
    tokio::spawn(skiff_apiserver::node_server::serve(
        listener,
        tls,
        node_server,
        shutdown.clone(),
    ));
    let node_ip = config.address.parse().ok();
    let services = node_net::start_services(
        client.clone(),
        network,
        &node_name,
        node_ip,
        shutdown.clone(),
    )
    .await?;
    let task = tokio::spawn(skiff_agent::kubelet::run(
        client, runtime, images, config, shutdown,
    ));
    tokio::select! {
        _ = shutdown_signal() => {}
        r = task => {
            r.context("agent task")??;
            return Ok(());
        }
    }
    eprintln!("skiff agent: shutting down (containers keep running)");
    let _ = stop.send(true);
    // The proxy's rules and the DNS address go; the pods' own network stays.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures::future::join_all(services),
    )
    .await;
    Ok(())
}

/// A pod as the API has it, for the kubelet endpoint.
async fn get_pod(
    client: &kube::Client,
    ns: &str,
    name: &str,
) -> Result<serde_json::Value, skiff_apiserver::error::ApiError> {
    let path = format!("/api/v1/namespaces/{ns}/pods/{name}");
    client
        .request::<serde_json::Value>(
            http::Request::get(path)
                .body(Vec::new())
                .expect("valid request"),
        )
        .await
        .map_err(|e| match e {
            kube::Error::Api(s) => skiff_apiserver::error::ApiError::from_status(
                s.code,
                &serde_json::json!({"message": s.message, "reason": s.reason}),
            ),
            other => skiff_apiserver::error::ApiError::unavailable(other.to_string()),
        })
}

#[derive(Subcommand)]
enum ImageCommand {
    /// Import an OCI or `docker save` archive into a node's image store.
    Import {
        /// The archive (tar, optionally gzip-compressed).
        file: PathBuf,
        /// The node's data dir.
        #[arg(long, short = 'd', default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
    /// List the images of a node.
    Ls {
        /// The node's data dir.
        #[arg(long, short = 'd', default_value_os_t = default_data_dir())]
        data_dir: PathBuf,
    },
}

#[derive(clap::Args)]
struct ServerArgs {
    /// Where the server keeps its state, certificates, token and kubeconfig.
    #[arg(long, short = 'd', default_value_os_t = default_data_dir())]
    data_dir: PathBuf,
    /// HTTPS port of the API server.
    #[arg(long, default_value_t = 6443)]
    https_listen_port: u16,
    /// Address the API server listens on.
    #[arg(long, default_value = "127.0.0.1")]
    bind_address: IpAddr,
    /// Write the admin kubeconfig here (default DATA_DIR/kubeconfig.yaml).
    #[arg(long, short = 'o')]
    write_kubeconfig: Option<PathBuf>,
    /// Shared secret agents join with (generated and kept in the data dir when absent).
    #[arg(long, short = 't', env = "SKIFF_TOKEN")]
    token: Option<String>,
    /// This node's name (default: the hostname).
    #[arg(long)]
    node_name: Option<String>,
    /// Run the control plane only, without the embedded node agent.
    #[arg(long)]
    disable_agent: bool,
    /// Do not run the scheduler (pods stay Pending unless something else binds them).
    #[arg(long)]
    disable_scheduler: bool,
    /// Datastore: sqlite://PATH (default DATA_DIR/server/db/state.db), or etcd: http(s)://HOST:PORT[,…].
    #[arg(long)]
    datastore_endpoint: Option<String>,
    #[command(flatten)]
    datastore_tls: migrate::DatastoreTlsArgs,
    /// Pod network range.
    #[arg(long, default_value = "10.42.0.0/16")]
    cluster_cidr: String,
    /// Service cluster IP range.
    #[arg(long, default_value = "10.43.0.0/16")]
    service_cidr: String,
    /// Cluster DNS service IP.
    #[arg(long, default_value = "10.43.0.10")]
    cluster_dns: Ipv4Addr,
    /// Cluster domain.
    #[arg(long, default_value = "cluster.local")]
    cluster_domain: String,
    /// Pod network between nodes: host-gw (a route per node; nodes share one network) or
    /// none (pods get a network namespace with loopback only).
    #[arg(long, default_value = "host-gw")]
    flannel_backend: String,
    /// Do not run the service proxy on the nodes.
    #[arg(long)]
    disable_kube_proxy: bool,
    /// Components not to run, comma-separated: coredns (the cluster DNS on every node).
    #[arg(long, value_delimiter = ',')]
    disable: Vec<String>,
    /// More host names or addresses for the API server's certificate.
    #[arg(long, value_delimiter = ',')]
    tls_san: Vec<String>,
    /// Where the built-in local-path provisioner puts volumes on each node.
    #[arg(long, default_value = "/var/lib/skiff/storage")]
    default_local_storage_path: PathBuf,
    /// How often nodes' resource usage is scraped for metrics.k8s.io (`kubectl top`, the HPA).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    metric_resolution: std::time::Duration,
    /// How often the HorizontalPodAutoscaler controller syncs each HPA.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    horizontal_pod_autoscaler_sync_period: std::time::Duration,
    /// The HPA's tolerance: usage within this fraction of the target changes nothing.
    #[arg(long, default_value_t = 0.1)]
    horizontal_pod_autoscaler_tolerance: f64,
    /// How long after a pod starts its CPU samples may be skipped as not yet representative.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    horizontal_pod_autoscaler_cpu_initialization_period: std::time::Duration,
    /// How long after a pod starts a readiness change still counts as its initial one.
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    horizontal_pod_autoscaler_initial_readiness_delay: std::time::Duration,
    /// How far back the HPA looks for the highest recommendation before scaling down.
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    horizontal_pod_autoscaler_downscale_stabilization: std::time::Duration,
    /// The longest crash-loop back-off between container restarts.
    #[arg(long, default_value = "300s", value_parser = parse_duration)]
    crashloop_backoff_max: std::time::Duration,
    /// How long a candidate waits, after it last saw the leader renew its lease, before
    /// taking over the controllers' or the scheduler's lease.
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    leader_elect_lease_duration: std::time::Duration,
    /// How long the leader keeps trying to renew before it stops its controllers or scheduler.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    leader_elect_renew_deadline: std::time::Duration,
    /// How often leases are renewed, or tried for.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    leader_elect_retry_period: std::time::Duration,
    /// How long a node may go unheard (no Lease renewal, no status) before it is marked Unknown.
    #[arg(long, default_value = "40s", value_parser = parse_duration)]
    node_monitor_grace_period: std::time::Duration,
    /// How often the node lifecycle controller checks node health.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    node_monitor_period: std::time::Duration,
    /// tolerationSeconds of the node.kubernetes.io/not-ready:NoExecute toleration admission adds to every pod.
    #[arg(long, default_value_t = 300)]
    default_not_ready_toleration_seconds: i64,
    /// tolerationSeconds of the node.kubernetes.io/unreachable:NoExecute toleration admission adds to every pod.
    #[arg(long, default_value_t = 300)]
    default_unreachable_toleration_seconds: i64,
}

fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(s).map_err(|e| format!("{s:?}: {e}"))
}

fn images_dir(data_dir: &std::path::Path) -> PathBuf {
    data_dir.join("agent").join("images")
}

fn image_command(cmd: ImageCommand) -> Result<()> {
    match cmd {
        ImageCommand::Import { file, data_dir } => {
            let store = skiff_agent::image::ImageStore::open(&images_dir(&data_dir))?;
            for r in store
                .import(&file)
                .with_context(|| format!("importing {}", file.display()))?
            {
                println!("imported {r}");
            }
        }
        ImageCommand::Ls { data_dir } => {
            let store = skiff_agent::image::ImageStore::open(&images_dir(&data_dir))?;
            println!("{:<60} {:<20} {:>10}", "IMAGE", "IMAGE ID", "SIZE");
            for img in store.list()? {
                let id = img
                    .id
                    .trim_start_matches("sha256:")
                    .chars()
                    .take(12)
                    .collect::<String>();
                let names = if img.references.is_empty() {
                    vec!["<none>".to_string()]
                } else {
                    img.references.clone()
                };
                for n in names {
                    println!("{n:<60} {id:<20} {:>10}", human_size(img.size));
                }
            }
        }
    }
    Ok(())
}

fn human_size(b: u64) -> String {
    const UNITS: [&str; 4] = ["B", "kB", "MB", "GB"];
    let mut v = b as f64;
    let mut u = 0;
    while v >= 1000.0 && u < UNITS.len() - 1 {
        v /= 1000.0;
        u += 1;
    }
    if u == 0 {
        format!("{b}B")
    } else {
        format!("{v:.1}{}", UNITS[u])
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

/// Starts the embedded node agent against the in-process apiserver.
fn start_agent(
    running: &skiff_apiserver::Running,
    data_dir: &std::path::Path,
    node_name: String,
    address: String,
    backoff_max: std::time::Duration,
    cluster: skiff_agent::network::ClusterNetwork,
    shutdown: tokio::sync::watch::Receiver<bool>,
) -> Result<tokio::task::JoinHandle<()>> {
    use std::sync::Arc;
    let agent_dir = data_dir.join("agent");
    std::fs::create_dir_all(&agent_dir)
        .with_context(|| format!("creating {}", agent_dir.display()))?;
    let network = node_net::pod_network(cluster, &agent_dir);
    let NodeRuntime {
        runc,
        runtime,
        status: runtime_status,
    } = node_runtime(&agent_dir, &node_name, &network)?;
    running.server.set_node_proxy(
        &node_name,
        Arc::new(local_node::LocalNode {
            agent_dir: agent_dir.clone(),
            node_name: node_name.clone(),
            runc,
        }),
    );
    let images = skiff_agent::image::ImageStore::open(&agent_dir.join("images"))?;
    let client = kube::Client::new(
        skiff_apiserver::inproc::InProcess(running.server.clone()),
        "default",
    );
    let config = skiff_agent::kubelet::AgentConfig {
        node_name,
        data_dir: agent_dir,
        address,
        roles: vec!["control-plane".into(), "master".into()],
        crashloop_backoff_max: backoff_max,
        self_assign: false,
        runtime_status,
        kubelet_port: 10250,
        network: Some(network.clone()),
    };
    let node_ip = config.address.parse().ok();
    let services = kube::Client::new(
        skiff_apiserver::inproc::InProcess(running.server.clone()),
        "default",
    );
    let node = config.node_name.clone();
    let stop = shutdown.clone();
    Ok(tokio::spawn(async move {
        let services = match node_net::start_services(services, network, &node, node_ip, stop).await
        {
            Ok(s) => s,
            Err(e) => {
                eprintln!("skiff: {e:#}");
                Vec::new()
            }
        };
        if let Err(e) = skiff_agent::kubelet::run(client, runtime, images, config, shutdown).await {
            eprintln!("skiff agent: {e}");
        }
        futures::future::join_all(services).await;
    }))
}

/// This server's leader-election identity, `<node name>_<id>`: the id is made
/// once and kept in `DATA_DIR/server/id`, so a restart keeps the identity
/// and two servers on one machine differ.
fn leader_identity(data_dir: &std::path::Path, node_name: &str) -> Result<String> {
    let path = data_dir.join("server").join("id");
    let id = match std::fs::read_to_string(&path) {
        Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
        _ => {
            let id = uuid::Uuid::new_v4().to_string();
            skiff_apiserver::tls::write_private(&path, format!("{id}\n").as_bytes())
                .with_context(|| format!("writing {}", path.display()))?;
            id
        }
    };
    Ok(format!("{node_name}_{id}"))
}

fn default_data_dir() -> PathBuf {
    if std::env::var_os("HOME").is_none() || is_root() {
        PathBuf::from("/var/lib/skiff")
    } else {
        PathBuf::from(std::env::var_os("HOME").expect("checked")).join(".skiff")
    }
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn parse_cidr(s: &str, flag: &str) -> Result<(Ipv4Addr, u8)> {
    let (ip, bits) = s
        .split_once('/')
        .with_context(|| format!("--{flag} {s:?}: expected ADDRESS/BITS"))?;
    let ip: Ipv4Addr = ip
        .parse()
        .with_context(|| format!("--{flag} {s:?}: bad address"))?;
    let bits: u8 = bits
        .parse()
        .with_context(|| format!("--{flag} {s:?}: bad prefix length"))?;
    if !(8..=30).contains(&bits) {
        bail!("--{flag} {s:?}: prefix length must be between 8 and 30");
    }
    let mask = u32::MAX << (32 - bits as u32);
    Ok((Ipv4Addr::from(u32::from(ip) & mask), bits))
}

async fn server(args: ServerArgs) -> Result<()> {
    let started = Instant::now();
    let mut config = skiff_apiserver::Config::new(&args.data_dir);
    config.bind_address = args.bind_address;
    config.port = args.https_listen_port;
    config.token = args.token;
    config.write_kubeconfig = args.write_kubeconfig;
    config.datastore_endpoint = args.datastore_endpoint;
    config.datastore_tls = args.datastore_tls.tls();
    config.cluster_cidr = parse_cidr(&args.cluster_cidr, "cluster-cidr")?;
    config.service_cidr = parse_cidr(&args.service_cidr, "service-cidr")?;
    config.cluster_dns = args.cluster_dns;
    config.cluster_domain = args.cluster_domain.clone();
    let cluster = node_net::cluster_network(
        config.cluster_cidr,
        config.service_cidr,
        args.cluster_dns,
        &args.cluster_domain,
        &args.flannel_backend,
        args.disable_kube_proxy,
        &args.disable,
    )?;
    config.cluster_dns_enabled = cluster.dns_server;
    config.node_network = Some(serde_json::to_value(&cluster)?);
    config.tls_san = args.tls_san.clone();
    config.metric_resolution = args.metric_resolution;
    config.default_toleration_seconds = skiff_api::defaults::DefaultTolerationSeconds {
        not_ready: args.default_not_ready_toleration_seconds,
        unreachable: args.default_unreachable_toleration_seconds,
    };
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let running = skiff_apiserver::start(config)
        .await
        .context("starting the server")?;
    let join_host = if args.bind_address.is_unspecified() {
        skiff_apiserver::bootstrap::advertise_address(args.bind_address)
            .unwrap_or(args.bind_address)
    } else {
        args.bind_address
    };
    eprintln!(
        "skiff server ready in {} ms on https://{}\n  export KUBECONFIG={}\n  nodes join with: skiff agent --server https://{} --token-file {}",
        started.elapsed().as_millis(),
        running.addr,
        running.kubeconfig.display(),
        std::net::SocketAddr::new(join_host, running.addr.port()),
        args.data_dir.join("token").display(),
    );
    let (stop_agent, agent_shutdown) = tokio::sync::watch::channel(false);
    let node_name = args.node_name.clone().unwrap_or_else(hostname);
    // Controllers and the scheduler run on one server of a cluster at a time,
    // each under its Lease in kube-system, as kube-controller-manager's and
    // kube-scheduler's do. The identity is stable across restarts, so a
    // restarted server takes its own lease back at once.
    let identity = leader_identity(&args.data_dir, &node_name)?;
    let election = |lease: &str| skiff_controllers::leader::ElectionConfig {
        lease_duration: args.leader_elect_lease_duration,
        renew_deadline: args.leader_elect_renew_deadline,
        retry_period: args.leader_elect_retry_period,
        ..skiff_controllers::leader::ElectionConfig::new(lease, &identity)
    };
    let in_process = || {
        kube::Client::new(
            skiff_apiserver::inproc::InProcess(running.server.clone()),
            "default",
        )
    };
    let mut elected = Vec::new();
    if !args.disable_scheduler {
        let client = in_process();
        elected.push(tokio::spawn(skiff_controllers::leader::run_elected(
            in_process(),
            election("kube-scheduler"),
            agent_shutdown.clone(),
            move |stop| {
                eprintln!("skiff server: this server now runs the scheduler (it holds the lease kube-system/kube-scheduler)");
                skiff_scheduler::run::run(client.clone(), stop)
            },
        )));
    }
    let controllers = skiff_controllers::Config {
        node_monitor_period: args.node_monitor_period,
        node_monitor_grace_period: args.node_monitor_grace_period,
        cluster_cidr: parse_cidr(&args.cluster_cidr, "cluster-cidr")?,
        storage_node_path: args.default_local_storage_path.clone(),
        hpa_sync_period: args.horizontal_pod_autoscaler_sync_period,
        hpa_tolerance: args.horizontal_pod_autoscaler_tolerance,
        hpa_cpu_initialization_period: args.horizontal_pod_autoscaler_cpu_initialization_period,
        hpa_initial_readiness_delay: args.horizontal_pod_autoscaler_initial_readiness_delay,
        hpa_downscale_stabilization: args.horizontal_pod_autoscaler_downscale_stabilization,
        ..Default::default()
    };
    let client = in_process();
    elected.push(tokio::spawn(skiff_controllers::leader::run_elected(
        in_process(),
        election("kube-controller-manager"),
        agent_shutdown.clone(),
        move |stop| {
            eprintln!("skiff server: this server now runs the controllers (it holds the lease kube-system/kube-controller-manager)");
            skiff_controllers::run(client.clone(), controllers.clone(), stop)
        },
    )));
    let agent = if args.disable_agent {
        None
    } else {
        let address = skiff_apiserver::bootstrap::advertise_address(args.bind_address)
            .map(|a| a.to_string())
            .unwrap_or_else(|| args.bind_address.to_string());
        Some(start_agent(
            &running,
            &args.data_dir,
            node_name,
            address,
            args.crashloop_backoff_max,
            cluster,
            agent_shutdown,
        )?)
    };
    shutdown_signal().await;
    eprintln!("skiff server: shutting down (containers keep running)");
    let _ = stop_agent.send(true);
    // The leases are released, so another server takes over at once.
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(5),
        futures::future::join_all(elected),
    )
    .await;
    if let Some(a) = agent {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(5), a).await;
    }
    running.stop().await;
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

fn main() {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                // The CA-pinning probe of `skiff agent` deliberately skips verification; kube warns about it.
                .unwrap_or_else(|_| {
                    tracing_subscriber::EnvFilter::new("warn,kube_client::client::tls=error")
                }),
        )
        .with_writer(std::io::stderr)
        .init();
    if let Err(e) = run(cli) {
        eprintln!("skiff: {e:#}");
        std::process::exit(1);
    }
}

fn run(cli: Cli) -> Result<()> {
    if let Command::Shim { args } = &cli.command {
        std::process::exit(skiff_agent::runtime::shim::shim_main(args));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Server(args) => rt.block_on(server(*args)),
        Command::Agent(args) => rt.block_on(agent(args)),
        Command::Sim(args) => rt.block_on(sim(args)),
        Command::Image(cmd) => image_command(cmd),
        Command::Migrate(args) => rt.block_on(migrate::migrate(args)),
        Command::Shim { .. } => unreachable!("handled above"),
    }
}
