//! A node's network services, started next to its agent: the pod network
//! (CNI bridge, routes, masquerade), the service proxy and the cluster DNS.

use anyhow::{Context, Result};
use skiff_agent::network::{ClusterNetwork, PodNetwork};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use tokio::sync::watch;

/// The pod network of a node keeping its state under `agent_dir`.
pub fn pod_network(cluster: ClusterNetwork, agent_dir: &Path) -> Arc<PodNetwork> {
    Arc::new(PodNetwork::new(
        cluster,
        skiff_agent::network::state_dir(agent_dir),
    ))
}

/// Starts the service proxy and the cluster DNS of the node at `node_ip`, as
/// the cluster settings ask, until `shutdown`.
pub async fn start_services(
    client: kube::Client,
    network: Arc<PodNetwork>,
    node_name: &str,
    node_ip: Option<Ipv4Addr>,
    shutdown: watch::Receiver<bool>,
) -> Result<Vec<tokio::task::JoinHandle<()>>> {
    let cluster = network.cluster().clone();
    let mut tasks = Vec::new();
    let serve_dns = cluster.dns_server && cluster.cluster_dns.is_some();
    if !cluster.service_proxy && !serve_dns {
        return Ok(tasks);
    }
    let view = skiff_net::view::spawn(client, shutdown.clone());
    if cluster.service_proxy {
        let config = skiff_net::proxy::ProxyConfig {
            node_name: node_name.to_string(),
            node_ips: node_ip.into_iter().collect(),
            cluster_cidr: Some(cluster.cluster_cidr),
            cluster_dns: cluster.cluster_dns,
            table: "skiff".into(),
            nft: "nft".into(),
        };
        let (view, shutdown) = (view.clone(), shutdown.clone());
        tasks.push(tokio::spawn(async move {
            if let Err(e) = skiff_net::proxy::run(view, config, shutdown).await {
                eprintln!("skiff: service proxy stopped: {e}");
            }
        }));
    }
    if serve_dns {
        let ip = network
            .add_dns_address()
            .await
            .map_err(anyhow::Error::msg)
            .context("putting the cluster DNS address on this node")?
            .expect("cluster DNS configured");
        let upstreams = skiff_net::dns::upstreams_from_resolv_conf(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        );
        let config = skiff_net::dns::DnsConfig {
            domain: cluster.cluster_domain.clone(),
            ttl: 5,
            upstreams,
            service_cidr: Some(cluster.service_cidr),
            cluster_cidr: Some(cluster.cluster_cidr),
        };
        let bind = vec![SocketAddr::new(ip.into(), 53)];
        let mut stop = shutdown.clone();
        let net = network.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = skiff_net::dns::serve(bind, view, config, shutdown).await {
                eprintln!("skiff: cluster DNS stopped: {e}");
            }
        }));
        tasks.push(tokio::spawn(async move {
            let _ = stop.changed().await;
            net.cleanup().await;
        }));
    }
    Ok(tasks)
}

/// The cluster settings from `skiff server`'s flags.
pub fn cluster_network(
    cluster_cidr: (Ipv4Addr, u8),
    service_cidr: (Ipv4Addr, u8),
    cluster_dns: Ipv4Addr,
    cluster_domain: &str,
    flannel_backend: &str,
    disable_kube_proxy: bool,
    disable: &[String],
) -> Result<ClusterNetwork> {
    let pod_network = match flannel_backend {
        "host-gw" => true,
        "none" => false,
        other => anyhow::bail!(
            "--flannel-backend {other:?} is not supported: skiff has host-gw (routes between nodes on one network) and none"
        ),
    };
    const KNOWN: [&str; 6] = [
        "coredns",
        "servicelb",
        "traefik",
        "local-storage",
        "metrics-server",
        "runtimes",
    ];
    for d in disable {
        if !KNOWN.contains(&d.as_str()) {
            anyhow::bail!(
                "--disable {d:?}: unknown component (known: {})",
                KNOWN.join(", ")
            );
        }
    }
    Ok(ClusterNetwork {
        cluster_cidr,
        service_cidr,
        cluster_dns: Some(cluster_dns),
        dns_server: !disable.iter().any(|d| d == "coredns"),
        cluster_domain: cluster_domain.to_string(),
        pod_network,
        service_proxy: !disable_kube_proxy,
    })
}
