//! The node's pod network: the CNI bridge on the node's pod CIDR, routes to
//! other nodes' pod CIDRs (host-gw, as flannel's backend of that name), the
//! masquerade of pod traffic leaving the cluster, and the address the cluster
//! DNS answers on.
//!
//! The runtime asks [`PodNetwork::attachment`] for the network when it creates
//! a sandbox; until the node has a pod CIDR (the server's node IPAM controller
//! assigns one at registration) the network is not ready, as a kubelet's
//! `NetworkReady=false` says.

pub mod cni;
pub mod pod_files;

use cni::BridgeNetwork;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::watcher;
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use tokio::sync::watch;

/// The nftables table holding the node's pod masquerade rules.
pub const TABLE: &str = "skiff-podnet";

/// The dummy interface carrying the cluster DNS address on each node.
pub const DNS_INTERFACE: &str = "skiff-dns";

/// The cluster's network settings, as the server hands them to nodes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ClusterNetwork {
    /// `--cluster-cidr`: every pod address, all nodes.
    pub cluster_cidr: (Ipv4Addr, u8),
    /// `--service-cidr`.
    pub service_cidr: (Ipv4Addr, u8),
    /// `--cluster-dns`: the nameserver of ClusterFirst pods (None: not configured,
    /// pods then resolve as their node does).
    pub cluster_dns: Option<Ipv4Addr>,
    /// Whether each node answers on the cluster DNS address (false with
    /// `--disable=coredns`: pods still point there, for a DNS the user runs).
    #[serde(default = "yes")]
    pub dns_server: bool,
    /// `--cluster-domain`.
    pub cluster_domain: String,
    /// False with `--flannel-backend=none`: pods get a network namespace with
    /// loopback only, and no address.
    pub pod_network: bool,
    /// False with `--disable-kube-proxy`.
    pub service_proxy: bool,
}

impl ClusterNetwork {
    /// skiff's defaults: 10.42.0.0/16 pods, 10.43.0.0/16 services, DNS at 10.43.0.10.
    pub fn new() -> Self {
        Self {
            cluster_cidr: (Ipv4Addr::new(10, 42, 0, 0), 16),
            service_cidr: (Ipv4Addr::new(10, 43, 0, 0), 16),
            cluster_dns: Some(Ipv4Addr::new(10, 43, 0, 10)),
            cluster_domain: "cluster.local".into(),
            dns_server: true,
            pod_network: true,
            service_proxy: true,
        }
    }
}

impl Default for ClusterNetwork {
    fn default() -> Self {
        Self::new()
    }
}

fn yes() -> bool {
    true
}

/// Parses "A.B.C.D/N" into the network address and prefix length.
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, bits) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let bits: u8 = bits.parse().ok()?;
    if bits > 32 {
        return None;
    }
    let mask = if bits == 0 {
        0
    } else {
        u32::MAX << (32 - bits as u32)
    };
    Some((Ipv4Addr::from(u32::from(ip) & mask), bits))
}

/// Why a pod cannot be attached yet.
pub const NOT_READY: &str = "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:Network plugin returns error: cni plugin not initialized";

/// The node's pod network, shared by the runtime and the agent.
#[derive(Debug)]
pub struct PodNetwork {
    cluster: ClusterNetwork,
    dir: PathBuf,
    bin_dirs: Vec<PathBuf>,
    bridge: RwLock<Option<Arc<BridgeNetwork>>>,
    /// Why configuring the network last failed, shown in the node's Ready condition.
    failure: RwLock<Option<String>>,
}

impl PodNetwork {
    /// The network of a node whose agent keeps its state in `dir` (`DATA_DIR/agent/cni`).
    pub fn new(cluster: ClusterNetwork, dir: PathBuf) -> Self {
        Self {
            cluster,
            dir,
            bin_dirs: cni::DEFAULT_BIN_DIRS.iter().map(PathBuf::from).collect(),
            bridge: RwLock::new(None),
            failure: RwLock::new(None),
        }
    }

    /// The cluster settings.
    pub fn cluster(&self) -> &ClusterNetwork {
        &self.cluster
    }

    /// What a sandbox attaches to: None when pods get loopback only (no pod
    /// network configured); an error until the node has its pod CIDR.
    pub fn attachment(&self) -> Result<Option<Arc<BridgeNetwork>>, String> {
        if !self.cluster.pod_network {
            return Ok(None);
        }
        match self.bridge.read().expect("lock").clone() {
            Some(b) => Ok(Some(b)),
            None => Err(match self.failure.read().expect("lock").as_deref() {
                Some(why) => format!(
                    "container runtime network not ready: NetworkReady=false reason:NetworkPluginNotReady message:{why}"
                ),
                None => NOT_READY.to_string(),
            }),
        }
    }

    /// Whether pods can be attached (for the node's Ready condition).
    pub fn ready(&self) -> Result<(), String> {
        self.attachment().map(|_| ())
    }

    /// The network last configured, whatever the readiness (for teardown).
    pub fn configured(&self) -> Option<Arc<BridgeNetwork>> {
        self.bridge.read().expect("lock").clone()
    }

    /// Configures the node for its pod CIDR: forwarding on, the CNI
    /// configuration written, pod traffic leaving the cluster masqueraded.
    /// Calling it again with the same CIDR does nothing.
    pub async fn set_pod_cidr(&self, cidr: (Ipv4Addr, u8)) -> Result<(), String> {
        if !self.cluster.pod_network {
            return Ok(());
        }
        if self.configured().is_some_and(|b| b.subnet == cidr) {
            return Ok(());
        }
        let result = self.configure(cidr).await;
        *self.failure.write().expect("lock") = result.clone().err();
        result
    }

    async fn configure(&self, cidr: (Ipv4Addr, u8)) -> Result<(), String> {
        for plugin in ["bridge", "host-local", "portmap"] {
            if !self.bin_dirs.iter().any(|d| d.join(plugin).is_file()) {
                return Err(format!(
                    "CNI plugin {plugin:?} not found in {} (apt-get install containernetworking-plugins)",
                    self.bin_dirs
                        .iter()
                        .map(|d| d.display().to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        let bridge = BridgeNetwork {
            name: "skiff".into(),
            bridge: "cni0".into(),
            subnet: cidr,
            ipam_dir: self.dir.join("networks"),
            mtu: None,
            bin_dirs: self.bin_dirs.clone(),
        };
        std::fs::create_dir_all(self.dir.join("net.d"))
            .map_err(|e| format!("creating {}: {e}", self.dir.display()))?;
        // For people and tools looking: the configuration skiff executes.
        let text = serde_json::to_string_pretty(&bridge.conflist()).expect("JSON");
        std::fs::write(self.dir.join("net.d").join("10-skiff.conflist"), text)
            .map_err(|e| format!("writing the CNI configuration: {e}"))?;
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
            .map_err(|e| format!("enabling IPv4 forwarding: {e}"))?;
        nft(&masquerade_rules(cidr, self.cluster.cluster_cidr)).await?;
        *self.bridge.write().expect("lock") = Some(Arc::new(bridge));
        Ok(())
    }

    /// Puts the cluster DNS address on the node's dummy interface, so the DNS
    /// server can bind it and pods reach it through their gateway.
    pub async fn add_dns_address(&self) -> Result<Option<Ipv4Addr>, String> {
        let Some(ip) = self.cluster.cluster_dns.filter(|_| self.cluster.dns_server) else {
            return Ok(None);
        };
        let dev = self.dns_device().await;
        let addr = format!("{ip}/32");
        if let Err(e) = ip_cmd(&["addr", "add", &addr, "dev", dev]).await
            && !e.contains("File exists")
        {
            return Err(e);
        }
        ip_cmd(&["link", "set", dev, "up"]).await?;
        Ok(Some(ip))
    }

    /// The interface for the DNS address: a dummy one, or loopback on kernels
    /// without dummy links (a local address is reachable on any interface).
    async fn dns_device(&self) -> &'static str {
        if ip_cmd(&["link", "show", DNS_INTERFACE]).await.is_ok()
            || ip_cmd(&["link", "add", DNS_INTERFACE, "type", "dummy"])
                .await
                .is_ok()
        {
            DNS_INTERFACE
        } else {
            "lo"
        }
    }

    /// Removes what [`add_dns_address`](Self::add_dns_address) and the
    /// masquerade added (at agent shutdown). Routes and the bridge stay, so
    /// running pods keep their network while the agent restarts.
    pub async fn cleanup(&self) {
        if let Some(ip) = self.cluster.cluster_dns.filter(|_| self.cluster.dns_server)
            && ip_cmd(&["link", "del", DNS_INTERFACE]).await.is_err()
        {
            let _ = ip_cmd(&["addr", "del", &format!("{ip}/32"), "dev", "lo"]).await;
        }
    }

    /// Keeps a route to every other node's pod CIDR through that node's
    /// address (host-gw) until shutdown.
    pub async fn run_routes(
        self: Arc<Self>,
        client: kube::Client,
        node_name: String,
        mut shutdown: watch::Receiver<bool>,
    ) {
        if !self.cluster.pod_network {
            return;
        }
        let nodes: Api<Node> = Api::all(client);
        let mut stream = watcher(nodes, watcher::Config::default()).boxed();
        // CIDR → gateway as installed.
        let mut installed: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
        let mut all: BTreeMap<String, Node> = BTreeMap::new();
        let mut listing: Option<BTreeMap<String, Node>> = None;
        loop {
            let event = tokio::select! {
                e = stream.next() => e,
                _ = shutdown.changed() => return,
            };
            let Some(event) = event else { return };
            match event {
                Ok(watcher::Event::Init) => listing = Some(BTreeMap::new()),
                Ok(watcher::Event::InitApply(n)) => {
                    if let Some(l) = listing.as_mut() {
                        l.insert(n.metadata.name.clone().unwrap_or_default(), n);
                    }
                    continue;
                }
                Ok(watcher::Event::InitDone) => all = listing.take().unwrap_or_default(),
                Ok(watcher::Event::Apply(n)) => {
                    all.insert(n.metadata.name.clone().unwrap_or_default(), n);
                }
                Ok(watcher::Event::Delete(n)) => {
                    all.remove(n.metadata.name.as_deref().unwrap_or_default());
                }
                Err(e) => {
                    tracing::debug!("node watch for routes: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            }
            if listing.is_some() {
                continue;
            }
            let desired = routes(&all, &node_name);
            for (cidr, gw) in &desired {
                if installed.get(cidr) == Some(gw) {
                    continue;
                }
                match ip_cmd(&["route", "replace", cidr, "via", &gw.to_string()]).await {
                    Ok(()) => {
                        installed.insert(cidr.clone(), *gw);
                    }
                    Err(e) => tracing::warn!(
                        "no route to pod network {cidr} via {gw} (host-gw needs the nodes on one network): {e}"
                    ),
                }
            }
            let stale: Vec<String> = installed
                .keys()
                .filter(|c| !desired.contains_key(*c))
                .cloned()
                .collect();
            for cidr in stale {
                let gw = installed.remove(&cidr).expect("present");
                let _ = ip_cmd(&["route", "del", &cidr, "via", &gw.to_string()]).await;
            }
        }
    }
}

/// Routes to the other nodes' pod CIDRs: CIDR → the node's InternalIP.
pub fn routes(nodes: &BTreeMap<String, Node>, me: &str) -> BTreeMap<String, Ipv4Addr> {
    let mut out = BTreeMap::new();
    for (name, node) in nodes {
        if name == me {
            continue;
        }
        let Some(cidr) = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(parse_cidr)
        else {
            continue;
        };
        let ip = node
            .status
            .as_ref()
            .and_then(|s| s.addresses.as_ref())
            .and_then(|a| a.iter().find(|a| a.type_ == "InternalIP"))
            .and_then(|a| a.address.parse::<Ipv4Addr>().ok());
        if let Some(ip) = ip {
            out.insert(format!("{}/{}", cidr.0, cidr.1), ip);
        }
    }
    out
}

/// The masquerade table: pod traffic to anything outside the cluster's pod
/// network leaves with the node's address; pod-to-pod traffic keeps its source.
pub fn masquerade_rules(pod_cidr: (Ipv4Addr, u8), cluster_cidr: (Ipv4Addr, u8)) -> String {
    let pods = format!("{}/{}", pod_cidr.0, pod_cidr.1);
    let cluster = format!("{}/{}", cluster_cidr.0, cluster_cidr.1);
    format!(
        "table ip {TABLE}\ndelete table ip {TABLE}\ntable ip {TABLE} {{\n\
         \tchain postrouting {{\n\t\ttype nat hook postrouting priority srcnat; policy accept;\n\
         \t\tip saddr {pods} ip daddr != {cluster} ip daddr != 224.0.0.0/4 masquerade fully-random\n\t}}\n\
         \tchain forward {{\n\t\ttype filter hook forward priority filter; policy accept;\n\
         \t\tip saddr {cluster} accept\n\t\tip daddr {cluster} accept\n\t}}\n}}\n"
    )
}

async fn nft(script: &str) -> Result<(), String> {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new("nft")
        .args(["-f", "-"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .map_err(|e| format!("nft: {e}"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(script.as_bytes())
            .await
            .map_err(|e| format!("nft: {e}"))?;
    }
    let out = child
        .wait_with_output()
        .await
        .map_err(|e| format!("nft: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "nft: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

async fn ip_cmd(args: &[&str]) -> Result<(), String> {
    let out = tokio::process::Command::new("ip")
        .args(args)
        .output()
        .await
        .map_err(|e| format!("ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Removes the node's masquerade table (for tests and `skiff` uninstall paths).
pub async fn remove_masquerade() {
    let _ = nft(&format!("delete table ip {TABLE}\n")).await;
}

/// The directory a node keeps CNI state in.
pub fn state_dir(agent_dir: &Path) -> PathBuf {
    agent_dir.join("cni")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: &str) -> (String, Node) {
        let mut n = json!({"metadata": {"name": name}, "spec": {},
            "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}]}});
        if let Some(c) = cidr {
            n["spec"]["podCIDR"] = json!(c);
        }
        (name.to_string(), serde_json::from_value(n).unwrap())
    }

    #[test]
    fn routes_go_to_every_other_node_with_a_cidr_and_an_address() {
        let nodes: BTreeMap<String, Node> = [
            node("a", Some("10.42.0.0/24"), "10.99.0.1"),
            node("b", Some("10.42.1.0/24"), "10.99.0.2"),
            node("c", None, "10.99.0.3"),
            node("d", Some("10.42.3.0/24"), "not-an-ip"),
        ]
        .into_iter()
        .collect();
        let r = routes(&nodes, "a");
        assert_eq!(
            r,
            BTreeMap::from([("10.42.1.0/24".to_string(), Ipv4Addr::new(10, 99, 0, 2))])
        );
    }

    #[test]
    fn masquerade_spares_pod_to_pod_traffic() {
        let rules = masquerade_rules(
            (Ipv4Addr::new(10, 42, 1, 0), 24),
            (Ipv4Addr::new(10, 42, 0, 0), 16),
        );
        assert!(rules.contains(
            "ip saddr 10.42.1.0/24 ip daddr != 10.42.0.0/16 ip daddr != 224.0.0.0/4 masquerade"
        ));
        assert!(rules.starts_with("table ip skiff-podnet\ndelete table ip skiff-podnet\n"));
    }

    #[test]
    fn cidrs_parse_to_their_network() {
        assert_eq!(
            parse_cidr("10.42.3.7/24"),
            Some((Ipv4Addr::new(10, 42, 3, 0), 24))
        );
        assert_eq!(parse_cidr("10.42.3.7"), None);
        assert_eq!(parse_cidr("10.42.3.0/33"), None);
    }
}
