//! Node IPAM (kube-controller-manager's `nodeipam` range allocator): every
//! Node without `spec.podCIDR` gets the next free subnet of the cluster CIDR
//! (`--cluster-cidr`, subnets of `--node-cidr-mask-size` bits), written to
//! `spec.podCIDR` and `spec.podCIDRs`.
//!
//! - At start, the CIDRs nodes already carry mark their subnets used (CIDRs
//!   outside the range, e.g. ones a hollow node chose, are left alone).
//! - Allocation goes round the range as Kubernetes' `cidrset` does: the search
//!   for a free subnet starts after the last one handed out, so a released
//!   subnet is handed out again only after the others.
//! - A deleted node's subnet is released.
//! - When none is left, the node gets a Normal Event with reason
//!   `CIDRNotAvailable` ("Node NAME status is now: CIDRNotAvailable"), and is
//!   retried when a subnet is released.
//!
//! IPv4 only; dual-stack (a second `podCIDRs` entry) is not done.

use crate::cache::Cache;
use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::{BTreeSet, HashMap};
use std::net::Ipv4Addr;
use tokio::sync::watch;

/// Why a [`CidrSet`] cannot be made or cannot give a subnet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The node mask is shorter than the cluster CIDR's prefix or longer than 32.
    #[error(
        "invalid --node-cidr-mask-size {node}: must be between the cluster CIDR mask size {cluster} and 32"
    )]
    BadMask {
        /// The cluster CIDR's prefix length.
        cluster: u8,
        /// The node mask asked for.
        node: u8,
    },
    /// More than 2^24 subnets would be tracked.
    #[error("New CIDR set failed; the node CIDR size is too big")]
    TooBig,
    /// Every subnet is in use.
    #[error(
        "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
    )]
    Exhausted,
}

/// The subnets of one cluster CIDR and which of them are in use.
#[derive(Debug, Clone)]
pub struct CidrSet {
    base: u32,
    cluster_prefix: u8,
    node_prefix: u8,
    used: Vec<bool>,
    next: usize,
}

/// Parses `a.b.c.d/n` (IPv4 only).
pub fn parse_cidr(s: &str) -> Option<(Ipv4Addr, u8)> {
    let (ip, len) = s.split_once('/')?;
    let ip: Ipv4Addr = ip.parse().ok()?;
    let len: u8 = len.parse().ok()?;
    (len <= 32).then_some((ip, len))
}

fn mask(prefix: u8) -> u32 {
    if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    }
}

impl CidrSet {
    /// The subnets of `cluster` with `node_prefix` bits each.
    pub fn new(cluster: (Ipv4Addr, u8), node_prefix: u8) -> Result<Self, Error> {
        let (ip, cluster_prefix) = cluster;
        if cluster_prefix > 32 || node_prefix > 32 || node_prefix < cluster_prefix {
            return Err(Error::BadMask {
                cluster: cluster_prefix,
                node: node_prefix,
            });
        }
        if node_prefix - cluster_prefix > 24 {
            return Err(Error::TooBig);
        }
        let count = 1usize << (node_prefix - cluster_prefix);
        Ok(Self {
            base: u32::from(ip) & mask(cluster_prefix),
            cluster_prefix,
            node_prefix,
            used: vec![false; count],
            next: 0,
        })
    }

    fn cidr(&self, i: usize) -> String {
        let ip = self.base + ((i as u32) << (32 - self.node_prefix as u32));
        format!("{}/{}", Ipv4Addr::from(ip), self.node_prefix)
    }

    /// The index of `cidr` when it is exactly one of this set's subnets.
    fn index(&self, cidr: &str) -> Option<usize> {
        let (ip, len) = parse_cidr(cidr)?;
        let ip = u32::from(ip);
        if len != self.node_prefix
            || ip & mask(self.cluster_prefix) != self.base
            || ip & !mask(len) != 0
        {
            return None;
        }
        Some(((ip - self.base) >> (32 - self.node_prefix as u32)) as usize)
    }

    /// Hands out the next free subnet after the last one handed out.
    pub fn allocate_next(&mut self) -> Result<String, Error> {
        let n = self.used.len();
        let found = (0..n)
            .map(|k| (self.next + k) % n)
            .find(|&i| !self.used[i])
            .ok_or(Error::Exhausted)?;
        self.used[found] = true;
        self.next = (found + 1) % n;
        Ok(self.cidr(found))
    }

    /// Marks `cidr` used; false when it is not one of this set's subnets.
    pub fn occupy(&mut self, cidr: &str) -> bool {
        match self.index(cidr) {
            Some(i) => {
                self.used[i] = true;
                true
            }
            None => false,
        }
    }

    /// Frees `cidr`; false when it is not one of this set's subnets.
    pub fn release(&mut self, cidr: &str) -> bool {
        match self.index(cidr) {
            Some(i) => {
                self.used[i] = false;
                true
            }
            None => false,
        }
    }
}

fn pod_cidr(node: &Node) -> Option<&str> {
    node.spec
        .as_ref()
        .and_then(|s| s.pod_cidr.as_deref())
        .filter(|c| !c.is_empty())
}

/// Runs the allocator until `shutdown` turns true. An invalid CIDR
/// configuration is logged and the controller does not run.
pub async fn run(client: kube::Client, config: crate::Config, mut shutdown: watch::Receiver<bool>) {
    let mut set = match CidrSet::new(config.cluster_cidr, config.node_cidr_mask) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("node ipam: {e}");
            return;
        }
    };
    let api: Api<Node> = Api::all(client.clone());
    let mut stream = watcher(api.clone(), watcher::Config::default()).boxed();
    let mut nodes: Cache<Node> = Cache::new();
    // Subnets handed out whose patch the watch has not shown yet, by node.
    let mut pending: HashMap<String, String> = HashMap::new();
    // What each node's subnet is, to release it on delete.
    let mut owned: HashMap<String, String> = HashMap::new();
    // Nodes told CIDRNotAvailable, waiting for a release.
    let mut starved: BTreeSet<String> = BTreeSet::new();
    let mut started = false;
    loop {
        let ev = tokio::select! {
            _ = shutdown.changed() => return,
            ev = stream.next() => ev,
        };
        let ev = match ev {
            Some(Ok(ev)) => ev,
            Some(Err(e)) => {
                tracing::debug!("node ipam: node watch: {e}");
                continue;
            }
            None => return,
        };
        let mut todo: Vec<String> = Vec::new();
        match &ev {
            watcher::Event::Delete(n) => {
                let name = n.metadata.name.clone().unwrap_or_default();
                pending.remove(&name);
                starved.remove(&name);
                if let Some(c) = owned.remove(&name) {
                    set.release(&c);
                    todo.extend(starved.iter().cloned());
                }
            }
            watcher::Event::Apply(n) if started => {
                let name = n.metadata.name.clone().unwrap_or_default();
                match pod_cidr(n) {
                    Some(c) => {
                        pending.remove(&name);
                        if !owned.contains_key(&name) && set.occupy(c) {
                            owned.insert(name, c.to_string());
                        }
                    }
                    None if !pending.contains_key(&name) && !starved.contains(&name) => {
                        todo.push(name)
                    }
                    None => {}
                }
            }
            _ => {}
        }
        let relisted = matches!(ev, watcher::Event::InitDone);
        nodes.apply(ev);
        if relisted {
            // The first list, or a re-list after the watch broke: deletes may
            // have been missed, so what is used is worked out again.
            started = true;
            let present: HashMap<String, Option<String>> = nodes
                .values()
                .map(|n| {
                    (
                        n.metadata.name.clone().unwrap_or_default(),
                        pod_cidr(n).map(str::to_string),
                    )
                })
                .collect();
            pending.retain(|name, _| present.contains_key(name));
            owned.retain(|name, c| {
                // Gone, or gone and back under the same name without a CIDR.
                let keep = pending.contains_key(name)
                    || present.get(name).is_some_and(|p| p.as_deref() == Some(c));
                if !keep {
                    set.release(c);
                }
                keep
            });
            starved.retain(|name| present.contains_key(name));
            for (name, c) in &present {
                if let Some(c) = c
                    && !owned.contains_key(name)
                    && set.occupy(c)
                {
                    owned.insert(name.clone(), c.clone());
                }
            }
            let mut names: Vec<String> = present
                .into_iter()
                .filter(|(_, c)| c.is_none())
                .map(|(n, _)| n)
                .collect();
            names.sort();
            todo.extend(names);
        }
        for name in todo {
            let Some(node) = nodes.get(&format!("/{name}")) else {
                continue;
            };
            if pod_cidr(node).is_some() || pending.contains_key(&name) {
                continue;
            }
            let cidr = match set.allocate_next() {
                Ok(c) => c,
                Err(_) => {
                    if starved.insert(name.clone()) {
                        crate::events::record(
                            &client,
                            "cidrAllocator",
                            &crate::events::Involved {
                                kind: "Node",
                                api_version: "",
                                namespace: "",
                                name: &name,
                                uid: Some(&name),
                            },
                            "Normal",
                            "CIDRNotAvailable",
                            &format!("Node {name} status is now: CIDRNotAvailable"),
                        )
                        .await;
                    }
                    continue;
                }
            };
            starved.remove(&name);
            let patch = json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
            match api
                .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
            {
                Ok(n) => {
                    tracing::info!("node ipam: {name} gets pod CIDR {cidr}");
                    owned.insert(name.clone(), cidr.clone());
                    pending.insert(name, cidr);
                    nodes.put(n);
                }
                Err(e) => {
                    tracing::warn!("node ipam: setting {name}'s pod CIDR: {e}");
                    set.release(&cidr);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(cluster: &str, node: u8) -> CidrSet {
        CidrSet::new(parse_cidr(cluster).unwrap(), node).unwrap()
    }

    #[test]
    fn subnets_are_handed_out_in_order_round_the_range() {
        let cases: &[(&str, u8, &[&str])] = &[
            (
                "10.42.0.0/16",
                24,
                &["10.42.0.0/24", "10.42.1.0/24", "10.42.2.0/24"],
            ),
            (
                "10.0.0.0/8",
                16,
                &["10.0.0.0/16", "10.1.0.0/16", "10.2.0.0/16"],
            ),
            (
                "192.168.0.0/24",
                26,
                &["192.168.0.0/26", "192.168.0.64/26", "192.168.0.128/26"],
            ),
            // The host bits of the cluster CIDR do not matter.
            ("10.42.7.9/16", 24, &["10.42.0.0/24", "10.42.1.0/24"]),
            ("10.1.2.3/32", 32, &["10.1.2.3/32"]),
        ];
        for (cluster, node, want) in cases {
            let mut s = set(cluster, *node);
            let got: Vec<String> = want.iter().map(|_| s.allocate_next().unwrap()).collect();
            assert_eq!(&got, want, "{cluster} /{node}");
        }
    }

    #[test]
    fn released_subnets_come_back_after_the_others() {
        let mut s = set("10.0.0.0/30", 31); // two subnets
        assert_eq!(s.allocate_next().unwrap(), "10.0.0.0/31");
        assert_eq!(s.allocate_next().unwrap(), "10.0.0.2/31");
        assert_eq!(s.allocate_next(), Err(Error::Exhausted));
        assert!(s.release("10.0.0.0/31"));
        assert_eq!(s.allocate_next().unwrap(), "10.0.0.0/31");
        assert_eq!(s.allocate_next(), Err(Error::Exhausted));

        let mut s = set("10.42.0.0/16", 18); // four subnets
        let a = s.allocate_next().unwrap();
        let b = s.allocate_next().unwrap();
        assert!(s.release(&a));
        // The search goes on after b before coming back to a.
        assert_eq!(s.allocate_next().unwrap(), "10.42.128.0/18");
        assert_eq!(s.allocate_next().unwrap(), "10.42.192.0/18");
        assert_eq!(s.allocate_next().unwrap(), a);
        assert_eq!(b, "10.42.64.0/18");
    }

    #[test]
    fn exhaustion_says_what_kubernetes_says() {
        let mut s = set("10.0.0.0/24", 24);
        s.allocate_next().unwrap();
        assert_eq!(
            s.allocate_next().unwrap_err().to_string(),
            "CIDR allocation failed; there are no remaining CIDRs left to allocate in the accepted range"
        );
    }

    #[test]
    fn existing_cidrs_inside_the_range_are_skipped_and_others_ignored() {
        let mut s = set("10.42.0.0/16", 24);
        let cases = [
            ("10.42.0.0/24", true),
            ("10.42.2.0/24", true),
            ("10.128.7.0/24", false), // a hollow node's own
            ("10.42.3.0/25", false),  // another size
            ("10.42.3.1/24", false),  // host bits set
            ("fd00::/64", false),
            ("garbage", false),
        ];
        for (cidr, inside) in cases {
            assert_eq!(s.occupy(cidr), inside, "{cidr}");
        }
        assert_eq!(s.allocate_next().unwrap(), "10.42.1.0/24");
        assert_eq!(s.allocate_next().unwrap(), "10.42.3.0/24");
        assert!(!s.release("10.128.7.0/24"));
    }

    #[test]
    fn bad_mask_sizes_are_refused() {
        let ip: Ipv4Addr = "10.42.0.0".parse().unwrap();
        let cases = [
            (
                16,
                15,
                Some(Error::BadMask {
                    cluster: 16,
                    node: 15,
                }),
            ),
            (
                16,
                33,
                Some(Error::BadMask {
                    cluster: 16,
                    node: 33,
                }),
            ),
            (
                33,
                33,
                Some(Error::BadMask {
                    cluster: 33,
                    node: 33,
                }),
            ),
            (0, 32, Some(Error::TooBig)),
            (8, 32, None),
            (16, 16, None),
        ];
        for (cluster, node, want) in cases {
            let got = CidrSet::new((ip, cluster), node).err();
            assert_eq!(got, want, "/{cluster} into /{node}");
        }
        assert_eq!(
            Error::BadMask {
                cluster: 16,
                node: 15
            }
            .to_string(),
            "invalid --node-cidr-mask-size 15: must be between the cluster CIDR mask size 16 and 32"
        );
    }
}
