//! `skiff`: Kubernetes in one small binary. Glue only: flags in, components started in order.

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
    /// Run the control plane (API server on an embedded store).
    Server(ServerArgs),
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
    /// Datastore: sqlite://PATH (default DATA_DIR/server/db/state.db).
    #[arg(long)]
    datastore_endpoint: Option<String>,
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
    config.cluster_cidr = parse_cidr(&args.cluster_cidr, "cluster-cidr")?;
    config.service_cidr = parse_cidr(&args.service_cidr, "service-cidr")?;
    config.cluster_dns = args.cluster_dns;
    config.cluster_domain = args.cluster_domain;
    let _ = args.node_name;
    std::fs::create_dir_all(&args.data_dir)
        .with_context(|| format!("creating {}", args.data_dir.display()))?;
    let running = skiff_apiserver::start(config)
        .await
        .context("starting the server")?;
    eprintln!(
        "skiff server ready in {} ms on https://{}\n  export KUBECONFIG={}\n  agents join with the token in {}",
        started.elapsed().as_millis(),
        running.addr,
        running.kubeconfig.display(),
        args.data_dir.join("token").display(),
    );
    if !args.disable_agent {
        eprintln!(
            "  note: this build has no node agent yet; pods stay Pending (as with --disable-agent)"
        );
    }
    shutdown_signal().await;
    eprintln!("skiff server: shutting down");
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

fn main() -> Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SKIFF_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    match cli.command {
        Command::Server(args) => rt.block_on(server(args)),
    }
}
