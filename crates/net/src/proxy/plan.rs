//! The pure half of the proxy: from a [`ClusterView`] to the desired nftables
//! [`Ruleset`] (kube-proxy's nftables mode, IPv4).
//!
//! Every Service port gets stable, deterministic chain names (a hash plus a
//! readable name, as kube-proxy does), so a change to one Service touches only
//! that Service's chains and map elements when [`super::transaction`] diffs two
//! rulesets.

use super::ProxyConfig;
use crate::view::ClusterView;
use k8s_openapi::api::core::v1::{Service, ServicePort};
use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

/// The mark that asks `masquerading` (nat postrouting) to SNAT a connection.
pub const MASQUERADE_MARK: &str = "0x4000";
/// The default ClientIP session affinity timeout, in seconds (Kubernetes' default).
pub const DEFAULT_AFFINITY_TIMEOUT: i32 = 10800;

/// Name of the map from ClusterIP . protocol . port to the Service chain.
pub const SERVICE_IPS: &str = "service-ips";
/// Name of the map from protocol . nodePort to the external chain.
pub const SERVICE_NODEPORTS: &str = "service-nodeports";
/// Name of the map rejecting or dropping ClusterIP traffic of Services without endpoints.
pub const NO_ENDPOINT_SERVICES: &str = "no-endpoint-services";
/// Name of the map rejecting or dropping NodePort traffic of Services without endpoints.
pub const NO_ENDPOINT_NODEPORTS: &str = "no-endpoint-nodeports";
/// Name of the set of active ClusterIPs (traffic to other ports is rejected).
pub const CLUSTER_IPS: &str = "cluster-ips";
/// Name of the set of addresses that accept NodePort traffic, when the config names them.
pub const NODEPORT_IPS: &str = "nodeport-ips";

/// A set or a verdict map declaration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Set {
    /// True for a map (`add map`), false for a set (`add set`).
    pub map: bool,
    /// The declaration body between the braces, e.g. `type ipv4_addr ;`.
    pub spec: String,
}

/// One chain: its hook (for base chains) and its rules, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Chain {
    /// For a base chain, e.g. `type nat hook output priority -100 ;`.
    pub hook: Option<String>,
    /// The rules, as nft syntax without the `add rule ip TABLE CHAIN` prefix.
    pub rules: Vec<String>,
}

/// The desired contents of the proxy's table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    /// The table name (family `ip`).
    pub table: String,
    /// Sets and maps by name.
    pub sets: BTreeMap<String, Set>,
    /// Chains by name.
    pub chains: BTreeMap<String, Chain>,
    /// Elements by set name: key, and for maps the value (empty for sets).
    pub elements: BTreeMap<String, BTreeMap<String, String>>,
}

impl Ruleset {
    /// The rules of `chain`, if it exists.
    pub fn rules(&self, chain: &str) -> Option<&[String]> {
        self.chains.get(chain).map(|c| c.rules.as_slice())
    }

    /// The value of `key` in map `set` (empty for a set member), if present.
    pub fn element(&self, set: &str, key: &str) -> Option<&str> {
        self.elements.get(set)?.get(key).map(String::as_str)
    }

    /// Names of the chains that belong to Services (everything that is not a fixed chain).
    pub fn service_chains(&self) -> impl Iterator<Item = &str> {
        self.chains
            .keys()
            .map(String::as_str)
            .filter(|c| is_service_object(c))
    }

    fn chain(&mut self, name: &str, hook: Option<&str>, rules: Vec<String>) {
        self.chains.insert(
            name.to_string(),
            Chain {
                hook: hook.map(str::to_string),
                rules,
            },
        );
    }

    fn set(&mut self, name: &str, map: bool, spec: &str) {
        self.sets.insert(
            name.to_string(),
            Set {
                map,
                spec: spec.to_string(),
            },
        );
        self.elements.entry(name.to_string()).or_default();
    }

    fn add(&mut self, set: &str, key: String, value: String) {
        self.elements
            .entry(set.to_string())
            .or_default()
            .insert(key, value);
    }
}

/// True for chains and sets created per Service port or endpoint (their
/// readable part, `ns/name/proto/port`, has slashes; fixed names have none).
fn is_service_object(name: &str) -> bool {
    name.contains('/')
        && ["service-", "local-", "external-", "endpoint-", "affinity-"]
            .iter()
            .any(|p| name.starts_with(p))
}

/// The desired ruleset for `view` on this node.
pub fn plan(view: &ClusterView, config: &ProxyConfig) -> Ruleset {
    let mut rs = base(config);
    for (key, svc) in &view.services {
        let Some(svc_plan) = ServiceInfo::of(svc, config) else {
            continue;
        };
        let slices: Vec<_> = view.slices_of(&key.namespace, &key.name).collect();
        for port in &svc_plan.ports {
            let eps = endpoints_for(&slices, port);
            plan_port(
                &mut rs,
                config,
                &svc_plan,
                port,
                &eps,
                &key.namespace,
                &key.name,
            );
        }
    }
    rs
}

/// The fixed chains, sets and maps, as kube-proxy lays them out.
fn base(config: &ProxyConfig) -> Ruleset {
    let mut rs = Ruleset {
        table: config.table.clone(),
        ..Ruleset::default()
    };
    let svc_key = "type ipv4_addr . inet_proto . inet_service : verdict ;";
    let port_key = "type inet_proto . inet_service : verdict ;";
    rs.set(CLUSTER_IPS, false, "type ipv4_addr ;");
    rs.set(SERVICE_IPS, true, svc_key);
    rs.set(SERVICE_NODEPORTS, true, port_key);
    rs.set(NO_ENDPOINT_SERVICES, true, svc_key);
    rs.set(NO_ENDPOINT_NODEPORTS, true, port_key);
    let nodeport_match = if config.node_ips.is_empty() {
        "fib daddr type local ip daddr != 127.0.0.0/8".to_string()
    } else {
        rs.set(NODEPORT_IPS, false, "type ipv4_addr ;");
        for ip in &config.node_ips {
            rs.add(NODEPORT_IPS, ip.to_string(), String::new());
        }
        format!("ip daddr @{NODEPORT_IPS}")
    };

    let r = |s: &str| s.to_string();
    rs.chain(
        "nat-prerouting",
        Some("type nat hook prerouting priority dstnat ;"),
        vec![r("jump services")],
    );
    rs.chain(
        "nat-output",
        Some("type nat hook output priority -100 ;"),
        vec![r("jump services")],
    );
    rs.chain(
        "nat-postrouting",
        Some("type nat hook postrouting priority srcnat ;"),
        vec![r("jump masquerading")],
    );
    rs.chain(
        "filter-input",
        Some("type filter hook input priority filter ;"),
        vec![
            r("ct state new jump nodeport-endpoints-check"),
            r("ct state new jump service-endpoints-check"),
        ],
    );
    for hook in ["forward", "output"] {
        rs.chain(
            &format!("filter-{hook}"),
            Some(&format!("type filter hook {hook} priority filter ;")),
            vec![
                r("ct state new jump service-endpoints-check"),
                r("ct state new jump cluster-ips-check"),
            ],
        );
    }
    rs.chain(
        "services",
        None,
        vec![
            format!("ip daddr . meta l4proto . th dport vmap @{SERVICE_IPS}"),
            format!("{nodeport_match} meta l4proto . th dport vmap @{SERVICE_NODEPORTS}"),
        ],
    );
    rs.chain(
        "service-endpoints-check",
        None,
        vec![format!(
            "ip daddr . meta l4proto . th dport vmap @{NO_ENDPOINT_SERVICES}"
        )],
    );
    rs.chain(
        "nodeport-endpoints-check",
        None,
        vec![format!(
            "{nodeport_match} meta l4proto . th dport vmap @{NO_ENDPOINT_NODEPORTS}"
        )],
    );
    rs.chain(
        "cluster-ips-check",
        None,
        vec![format!("ip daddr @{CLUSTER_IPS} reject")],
    );
    rs.chain(
        "mark-for-masquerade",
        None,
        vec![format!("mark set mark or {MASQUERADE_MARK}")],
    );
    rs.chain(
        "masquerading",
        None,
        vec![
            format!("mark and {MASQUERADE_MARK} == 0 return"),
            format!("mark set mark xor {MASQUERADE_MARK}"),
            r("masquerade fully-random"),
        ],
    );
    rs.chain(
        "reject-chain",
        None,
        vec![r("meta l4proto tcp reject with tcp reset"), r("reject")],
    );
    rs
}

/// What the planner needs from a Service, or None when it gets no rules.
struct ServiceInfo {
    cluster_ips: Vec<Ipv4Addr>,
    ports: Vec<PortInfo>,
    internal_local: bool,
    external_local: bool,
    affinity: Option<i32>,
}

struct PortInfo {
    name: String,
    /// Lower case, as nft spells it: tcp, udp, sctp.
    proto: String,
    port: i32,
    node_port: Option<i32>,
}

impl ServiceInfo {
    fn of(svc: &Service, config: &ProxyConfig) -> Option<Self> {
        let spec = svc.spec.as_ref()?;
        let ty = spec.type_.as_deref().unwrap_or("ClusterIP");
        if ty == "ExternalName" {
            return None;
        }
        let mut ips: Vec<&String> = spec.cluster_ips.iter().flatten().collect();
        if ips.is_empty() {
            ips.extend(spec.cluster_ip.iter());
        }
        // "None" (headless) and IPv6 addresses do not parse as IPv4.
        let mut cluster_ips: Vec<Ipv4Addr> = ips.iter().filter_map(|s| s.parse().ok()).collect();
        cluster_ips.dedup();
        if cluster_ips.is_empty() {
            return None;
        }
        if config
            .cluster_dns
            .is_some_and(|dns| cluster_ips.contains(&dns))
        {
            return None;
        }
        let exposes_nodeports = ty == "NodePort" || ty == "LoadBalancer";
        let ports = spec
            .ports
            .iter()
            .flatten()
            .map(|p: &ServicePort| PortInfo {
                name: p.name.clone().unwrap_or_default(),
                proto: p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase(),
                port: p.port,
                node_port: p.node_port.filter(|n| exposes_nodeports && *n > 0),
            })
            .collect();
        let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .unwrap_or(DEFAULT_AFFINITY_TIMEOUT)
        });
        Some(Self {
            cluster_ips,
            ports,
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            external_local: exposes_nodeports
                && spec.external_traffic_policy.as_deref() == Some("Local"),
            affinity,
        })
    }
}

/// One endpoint of one Service port, with its conditions resolved as kube-proxy does.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    ip: Ipv4Addr,
    port: i32,
    ready: bool,
    serving: bool,
    terminating: bool,
    node: Option<String>,
}

/// The endpoints of the slices for `port`: IPv4 slices whose port entry has the
/// Service port's name and protocol (named target ports are already resolved
/// to numbers in the slice). Sorted and without duplicates.
fn endpoints_for(
    slices: &[&k8s_openapi::api::discovery::v1::EndpointSlice],
    port: &PortInfo,
) -> Vec<Endpoint> {
    let mut out: BTreeMap<(Ipv4Addr, i32), Endpoint> = BTreeMap::new();
    for slice in slices {
        if slice.address_type != "IPv4" {
            continue;
        }
        let Some(number) = slice.ports.iter().flatten().find_map(|p| {
            let name = p.name.as_deref().unwrap_or("");
            let proto = p.protocol.as_deref().unwrap_or("TCP").to_ascii_lowercase();
            (name == port.name && proto == port.proto)
                .then_some(p.port)
                .flatten()
        }) else {
            continue;
        };
        for ep in &slice.endpoints {
            let Some(ip) = ep.addresses.first().and_then(|a| a.parse().ok()) else {
                continue;
            };
            let c = ep.conditions.clone().unwrap_or_default();
            let ready = c.ready.unwrap_or(true);
            out.entry((ip, number)).or_insert(Endpoint {
                ip,
                port: number,
                ready,
                serving: c.serving.unwrap_or(ready),
                terminating: c.terminating.unwrap_or(false),
                node: ep.node_name.clone(),
            });
        }
    }
    out.into_values().collect()
}

/// kube-proxy's choice among `eps` (those passing `keep`): the ready ones, or
/// when none is ready, the serving and terminating ones.
fn usable(eps: &[Endpoint], keep: impl Fn(&Endpoint) -> bool) -> Vec<&Endpoint> {
    let ready: Vec<_> = eps.iter().filter(|e| keep(e) && e.ready).collect();
    if !ready.is_empty() {
        return ready;
    }
    eps.iter()
        .filter(|e| keep(e) && e.serving && e.terminating)
        .collect()
}

/// FNV-1a, base32-encoded to 8 characters: the stable part of a chain name.
fn hash8(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";
    (0..8)
        .map(|i| ALPHABET[((h >> (59 - 5 * i)) & 31) as usize] as char)
        .collect()
}

/// `prefix-HASH-readable`, e.g. `service-ULMVA6XW-ns1/svc1/tcp/p80`.
pub(crate) fn object_name(prefix: &str, readable: &str) -> String {
    format!("{prefix}-{}-{readable}", hash8(readable))
}

/// An affinity set's name: its timeout is part of the hash, so that a new
/// timeout makes a new set (a set in use cannot be redeclared in place).
fn affinity_name(readable: &str, timeout: i32) -> String {
    format!(
        "affinity-{}-{readable}",
        hash8(&format!("{readable}@{timeout}s"))
    )
}

fn plan_port(
    rs: &mut Ruleset,
    config: &ProxyConfig,
    svc: &ServiceInfo,
    port: &PortInfo,
    eps: &[Endpoint],
    namespace: &str,
    name: &str,
) {
    let base_name = format!("{namespace}/{name}/{}/{}", port.proto, port.name);
    let local = |e: &Endpoint| e.node.as_deref() == Some(config.node_name.as_str());
    let external = port.node_port.is_some();
    // Cluster endpoints are needed when either policy is Cluster, and for an
    // external Local policy too (pod and host traffic short-circuits to them).
    let cluster_eps = if !svc.internal_local || external {
        usable(eps, |_| true)
    } else {
        Vec::new()
    };
    let local_eps = if svc.internal_local || svc.external_local {
        usable(eps, local)
    } else {
        Vec::new()
    };
    let internal_eps = if svc.internal_local {
        &local_eps
    } else {
        &cluster_eps
    };
    let external_eps = if svc.external_local {
        &local_eps
    } else {
        &cluster_eps
    };
    let has_endpoints = !internal_eps.is_empty() || (external && !external_eps.is_empty());

    let cluster_chain = object_name("service", &base_name);
    let local_chain = object_name("local", &base_name);
    let external_chain = object_name("external", &base_name);
    let internal_chain = if svc.internal_local {
        &local_chain
    } else {
        &cluster_chain
    };
    let proto = &port.proto;

    // Endpoint chains, and their affinity sets.
    let mut ep_chains: BTreeMap<(Ipv4Addr, i32), (String, String)> = BTreeMap::new();
    for ep in cluster_eps.iter().chain(local_eps.iter()) {
        let readable = format!("{base_name}__{}/{}", ep.ip, ep.port);
        let chain = object_name("endpoint", &readable);
        let affinity = affinity_name(&readable, svc.affinity.unwrap_or_default());
        let mut rules = vec![format!("ip saddr {} jump mark-for-masquerade", ep.ip)];
        if let Some(timeout) = svc.affinity {
            rs.set(
                &affinity,
                false,
                &format!("type ipv4_addr ; flags dynamic,timeout ; timeout {timeout}s ;"),
            );
            rules.push(format!("update @{affinity} {{ ip saddr }}"));
        }
        rules.push(format!(
            "meta l4proto {proto} dnat to {}:{}",
            ep.ip, ep.port
        ));
        rs.chain(&chain, None, rules);
        ep_chains.insert((ep.ip, ep.port), (chain, affinity));
    }

    // The chains that pick an endpoint.
    let pick = |eps: &[&Endpoint], masquerade_off_cluster: bool| -> Vec<String> {
        let mut rules = Vec::new();
        if masquerade_off_cluster && let Some((net, len)) = config.cluster_cidr {
            for ip in &svc.cluster_ips {
                rules.push(format!(
                    "ip daddr {ip} ip saddr != {net}/{len} jump mark-for-masquerade"
                ));
            }
        }
        let chains: Vec<&(String, String)> =
            eps.iter().map(|e| &ep_chains[&(e.ip, e.port)]).collect();
        if svc.affinity.is_some() {
            for (chain, set) in &chains {
                rules.push(format!("ip saddr @{set} goto {chain}"));
            }
        }
        let arms: Vec<String> = chains
            .iter()
            .enumerate()
            .map(|(i, (chain, _))| format!("{i} : goto {chain}"))
            .collect();
        rules.push(format!(
            "numgen random mod {} vmap {{ {} }}",
            chains.len(),
            arms.join(" , ")
        ));
        rules
    };
    if !cluster_eps.is_empty() {
        let rules = pick(&cluster_eps, !svc.internal_local);
        rs.chain(&cluster_chain, None, rules);
    }
    if !local_eps.is_empty() {
        let rules = pick(&local_eps, svc.internal_local);
        rs.chain(&local_chain, None, rules);
    }
    if external && !external_eps.is_empty() {
        let mut rules = Vec::new();
        if svc.external_local {
            if !cluster_eps.is_empty() {
                if let Some((net, len)) = config.cluster_cidr {
                    rules.push(format!(
                        "ip saddr {net}/{len} goto {cluster_chain} comment \"short-circuit pod traffic\""
                    ));
                }
                rules.push(
                    "fib saddr type local jump mark-for-masquerade comment \"masquerade local traffic\""
                        .to_string(),
                );
                rules.push(format!(
                    "fib saddr type local goto {cluster_chain} comment \"short-circuit local traffic\""
                ));
            }
            rules.push(format!("goto {local_chain}"));
        } else {
            rules.push("jump mark-for-masquerade".to_string());
            rules.push(format!("goto {cluster_chain}"));
        }
        rs.chain(&external_chain, None, rules);
    }

    // Map elements.
    let missing = if has_endpoints {
        "drop".to_string()
    } else {
        "goto reject-chain".to_string()
    };
    for ip in &svc.cluster_ips {
        rs.add(CLUSTER_IPS, ip.to_string(), String::new());
        let key = format!("{ip} . {proto} . {}", port.port);
        if internal_eps.is_empty() {
            rs.add(NO_ENDPOINT_SERVICES, key, missing.clone());
        } else {
            rs.add(SERVICE_IPS, key, format!("goto {internal_chain}"));
        }
    }
    if let Some(node_port) = port.node_port {
        let key = format!("{proto} . {node_port}");
        if external_eps.is_empty() {
            rs.add(NO_ENDPOINT_NODEPORTS, key, missing);
        } else {
            rs.add(SERVICE_NODEPORTS, key, format!("goto {external_chain}"));
        }
    }
}

/// Names of the chains and sets a Service port owns, for tests and tools.
pub fn owned_by(rs: &Ruleset, namespace: &str, name: &str) -> BTreeSet<String> {
    let needle = format!("-{namespace}/{name}/");
    rs.chains
        .keys()
        .chain(rs.sets.keys())
        .filter(|n| is_service_object(n) && n.contains(&needle))
        .cloned()
        .collect()
}
