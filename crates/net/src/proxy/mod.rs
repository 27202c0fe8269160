//! The service proxy: kube-proxy's model, programmed as nftables rules.
//!
//! # Layout
//! - [`plan()`] (pure): the desired [`Ruleset`] for a [`ClusterView`]: one
//!   `ip` table holding kube-proxy's nftables-mode chains and maps (IPv4).
//! - [`transaction()`] (pure): the `nft -f` script from the ruleset the table
//!   holds to the next one: the whole table on the first sync, afterwards only
//!   what changed (kube-proxy's partial sync).
//! - [`Proxier`]: carries a plan out through an [`Nft`] (the real one runs
//!   `nft -f -`) and remembers what the table holds; [`run`] syncs on every
//!   view change and deletes the table on shutdown.
//!
//! # The table
//! `nat-prerouting` (dstnat) and `nat-output` (-100) jump to `services`, which
//! looks `daddr . l4proto . dport` up in `@service-ips` (and, on local
//! addresses, `l4proto . dport` in `@service-nodeports`). A Service port's
//! chain `service-HASH-ns/name/proto/port` picks an endpoint chain with
//! `numgen random`, after the ClientIP affinity sets if any; the endpoint
//! chain DNATs. Ports without usable endpoints are rejected (or dropped, when
//! endpoints exist but the traffic policy rules them out) from the filter
//! hooks through `@no-endpoint-services` / `@no-endpoint-nodeports`.
//! Connections marked by `mark-for-masquerade` are masqueraded in
//! `nat-postrouting` (srcnat).

mod plan;
mod transaction;

pub use plan::{
    CLUSTER_IPS, Chain, DEFAULT_AFFINITY_TIMEOUT, MASQUERADE_MARK, NO_ENDPOINT_NODEPORTS,
    NO_ENDPOINT_SERVICES, NODEPORT_IPS, Ruleset, SERVICE_IPS, SERVICE_NODEPORTS, Set, owned_by,
    plan,
};
pub use transaction::{delete_table, transaction};

use crate::view::ClusterView;
use std::io::Write as _;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How long a failed sync waits before it is retried without a view change.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);

/// What the proxy needs to know about its node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyConfig {
    /// This node's name: endpoints with this `nodeName` are local.
    pub node_name: String,
    /// Addresses that accept NodePort traffic (kube-proxy's
    /// `--nodeport-addresses`); empty means every local address but loopback.
    pub node_ips: Vec<Ipv4Addr>,
    /// The pod network: ClusterIP traffic from outside it is masqueraded,
    /// and pod traffic to an external-Local NodePort short-circuits to all
    /// endpoints. None: no such masquerade.
    pub cluster_cidr: Option<(Ipv4Addr, u8)>,
    /// Services at this IP are served node-locally by skiff's DNS; they get no rules.
    pub cluster_dns: Option<Ipv4Addr>,
    /// The nftables table (family `ip`) the proxy owns.
    pub table: String,
    /// The `nft` binary.
    pub nft: PathBuf,
}

impl ProxyConfig {
    /// A config for `node_name` with the defaults: table `skiff`, `nft` from PATH.
    pub fn new(node_name: impl Into<String>) -> Self {
        Self {
            node_name: node_name.into(),
            node_ips: Vec::new(),
            cluster_cidr: None,
            cluster_dns: None,
            table: "skiff".to_string(),
            nft: PathBuf::from("nft"),
        }
    }
}

/// The proxy's errors.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// `nft` could not be started or fed its script.
    #[error("running {nft}: {source}")]
    Spawn {
        /// The binary.
        nft: PathBuf,
        /// What failed.
        #[source]
        source: std::io::Error,
    },
    /// `nft -f -` rejected the script.
    #[error("{nft} -f - failed ({status}): {stderr}")]
    Apply {
        /// The binary.
        nft: PathBuf,
        /// Its exit status.
        status: String,
        /// What it printed (nft names the failing line of the script).
        stderr: String,
    },
    /// The blocking sync task did not finish.
    #[error("sync task: {0}")]
    Task(String),
}

/// The boundary with nftables: applies one script atomically.
pub trait Nft: Send + Sync {
    /// Applies `script` as one transaction.
    fn apply(&self, script: &str) -> Result<(), Error>;
}

/// The real [`Nft`]: runs `nft -f -` with the script on stdin.
#[derive(Debug, Clone)]
pub struct NftCommand {
    /// The binary.
    pub nft: PathBuf,
}

impl Nft for NftCommand {
    fn apply(&self, script: &str) -> Result<(), Error> {
        let spawn = |source| Error::Spawn {
            nft: self.nft.clone(),
            source,
        };
        let mut child = Command::new(&self.nft)
            .args(["-f", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(spawn)?;
        let written = child
            .stdin
            .take()
            .map(|mut stdin| stdin.write_all(script.as_bytes()))
            .unwrap_or(Ok(()));
        let out = child.wait_with_output().map_err(spawn)?;
        if !out.status.success() {
            return Err(Error::Apply {
                nft: self.nft.clone(),
                status: out.status.to_string(),
                stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            });
        }
        written.map_err(spawn)
    }
}

/// One successful sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncInfo {
    /// When the rules were in the kernel.
    pub at: Instant,
    /// How long planning and applying took.
    pub took: Duration,
    /// True when the whole table was written (first sync, or after a failure).
    pub full: bool,
    /// Lines of nft script applied (0: nothing changed).
    pub lines: usize,
}

/// Programs the table and remembers what it holds.
pub struct Proxier {
    config: ProxyConfig,
    nft: Arc<dyn Nft>,
    applied: Option<Ruleset>,
    synced: watch::Sender<Option<SyncInfo>>,
}

impl Proxier {
    /// A proxier that runs the config's `nft` binary.
    pub fn new(config: ProxyConfig) -> Self {
        let nft = Arc::new(NftCommand {
            nft: config.nft.clone(),
        });
        Self::with_nft(config, nft)
    }

    /// A proxier applying through `nft` (tests pass a recording fake).
    pub fn with_nft(config: ProxyConfig, nft: Arc<dyn Nft>) -> Self {
        Self {
            config,
            nft,
            applied: None,
            synced: watch::Sender::new(None),
        }
    }

    /// The last successful sync, updated after each one: a benchmark waits on
    /// it to measure how long a change takes to be programmed.
    pub fn synced(&self) -> watch::Receiver<Option<SyncInfo>> {
        self.synced.subscribe()
    }

    /// The ruleset the table holds, as far as the proxier knows.
    pub fn applied(&self) -> Option<&Ruleset> {
        self.applied.as_ref()
    }

    /// Brings the table to the plan for `view`. After a failure the next sync
    /// rewrites the whole table, since what it holds is then unknown.
    pub fn sync(&mut self, view: &ClusterView) -> Result<SyncInfo, Error> {
        let start = Instant::now();
        let desired = plan(view, &self.config);
        let full = self.applied.is_none();
        let script = transaction(self.applied.as_ref(), &desired);
        if !script.is_empty() {
            self.applied = None;
            self.nft.apply(&script)?;
        }
        self.applied = Some(desired);
        let at = Instant::now();
        let info = SyncInfo {
            at,
            took: at - start,
            full,
            lines: script.lines().count(),
        };
        self.synced.send_replace(Some(info));
        Ok(info)
    }

    /// Deletes the table.
    pub fn cleanup(&mut self) -> Result<(), Error> {
        self.applied = None;
        self.nft.apply(&delete_table(&self.config.table))
    }

    /// Syncs on every view change (retrying failures every [`RETRY_AFTER`])
    /// until `shutdown` turns true or its sender goes away, then deletes the table.
    pub async fn run(
        mut self,
        mut view_rx: watch::Receiver<Arc<ClusterView>>,
        mut shutdown: watch::Receiver<bool>,
    ) -> Result<(), Error> {
        let mut view_open = true;
        let mut dirty = true;
        while !*shutdown.borrow() {
            let mut retry = None;
            if dirty {
                let view = view_rx.borrow_and_update().clone();
                let (me, result) = tokio::task::spawn_blocking(move || {
                    let r = self.sync(&view);
                    (self, r)
                })
                .await
                .map_err(|e| Error::Task(e.to_string()))?;
                self = me;
                match result {
                    Ok(info) => tracing::debug!(
                        full = info.full,
                        lines = info.lines,
                        took = ?info.took,
                        "service proxy synced"
                    ),
                    Err(e) => {
                        tracing::warn!("service proxy sync failed: {e}");
                        retry = Some(RETRY_AFTER);
                    }
                }
            }
            dirty = retry.is_some();
            tokio::select! {
                r = view_rx.changed(), if view_open => match r {
                    Ok(()) => dirty = true,
                    Err(_) => view_open = false,
                },
                r = shutdown.changed() => if r.is_err() { break },
                _ = tokio::time::sleep(retry.unwrap_or_default()), if retry.is_some() => {}
            }
        }
        tokio::task::spawn_blocking(move || self.cleanup())
            .await
            .map_err(|e| Error::Task(e.to_string()))?
    }
}

/// Runs a [`Proxier`] for `config` (see [`Proxier::run`]). To watch its syncs,
/// build the [`Proxier`] and take [`Proxier::synced`] before running it.
pub async fn run(
    view_rx: watch::Receiver<Arc<ClusterView>>,
    config: ProxyConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    Proxier::new(config).run(view_rx, shutdown).await
}

#[cfg(test)]
mod tests;
