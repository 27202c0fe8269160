//! Hollow nodes: many simulated nodes in one process, for capacity and scheduler tests
//! (`skiff sim`, Kubernetes' kubemark idea).
//!
//! Every hollow node is a real Node object with a real Lease: registration, status heartbeats
//! and Lease renewals are ordinary API traffic, built by the same functions the real agent uses
//! ([`crate::node`]). What is fake is the runtime: a pod bound to a hollow node is reported
//! `Running` and Ready at once (its status computed by the real kubelet's [`pod_status`] from a
//! runtime where every container started), with an IP from the node's /24; a pod being deleted
//! is confirmed at once (deleted with `gracePeriodSeconds=0`, as the kubelet does once its
//! containers stopped).
//!
//! Built for scale: one shared client, one watch on every bound pod (`spec.nodeName!=`)
//! dispatched to the node it names, bounded concurrency, and heartbeats spread evenly over
//! their interval ([`Spread`]) so N nodes make a steady N/interval writes per second, never a
//! burst of N.
//!
//! The pure parts (names, addresses, the IP pool, the spreading schedule, the Node and pod
//! status, what to do for a pod) are plain functions with table tests; [`run`] is the thin
//! async shell that carries them out.

use crate::node::{self, Machine, NodeConfig};
use crate::pod::plan::{ContainerProbes, ObservedContainer, ObservedPod, ProbeResult};
use crate::pod::status::{Addresses, pod_status};
use crate::runtime::{ContainerState, Sandbox};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, Preconditions};
use kube::runtime::watcher;
use serde_json::{Value, json};
use sha2::Digest;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};
use tokio::sync::{Semaphore, mpsc, watch};

/// The label every hollow node carries (value `"true"`).
pub const HOLLOW_LABEL: &str = "skiff.io/hollow";

/// The most hollow nodes one simulation runs: each gets a /24 of [`POD_NETWORK`].
pub const MAX_NODES: usize = 32_768;

/// Pod addresses: node `i` gets the `i`-th /24 of this /9 (10.128.0.0/24, 10.128.1.0/24, …).
pub const POD_NETWORK: Ipv4Addr = Ipv4Addr::new(10, 128, 0, 0);

/// Node addresses: node `i` is `NODE_NETWORK + i + 1` (10.64.0.1, 10.64.0.2, …).
pub const NODE_NETWORK: Ipv4Addr = Ipv4Addr::new(10, 64, 0, 0);

/// Pod IPs per node: host numbers 1..=254 of its /24.
pub const IPS_PER_NODE: usize = 254;

/// What the hollow nodes look like and how they behave.
#[derive(Debug, Clone, PartialEq)]
pub struct HollowConfig {
    /// How many nodes.
    pub count: usize,
    /// Node names are `<prefix><index>`, index from 0.
    pub name_prefix: String,
    /// CPUs each node offers.
    pub cpus: u64,
    /// Memory each node offers, KiB.
    pub memory_kib: u64,
    /// Pods each node takes (`capacity.pods`).
    pub max_pods: u32,
    /// How often each Lease is renewed.
    pub lease_interval: Duration,
    /// The Lease's `leaseDurationSeconds`.
    pub lease_duration: Duration,
    /// How often each node posts its status when nothing changed.
    pub status_interval: Duration,
    /// Requests in flight at most (registration and pods; heartbeats have a quarter of this
    /// on their own, so a flood of pods cannot starve the Leases).
    pub concurrency: usize,
    /// Delete the nodes and their Leases when the simulation stops.
    pub delete_nodes_on_exit: bool,
}

impl Default for HollowConfig {
    /// The node of Kubernetes' scheduler_perf template (cpu 4, memory 32Gi, pods 110) and the
    /// kubelet's intervals (Lease renewed every 10 s for 40 s, status every 5 min when
    /// nothing changes).
    fn default() -> Self {
        Self {
            count: 1,
            name_prefix: "hollow-node-".into(),
            cpus: 4,
            memory_kib: 32 * 1024 * 1024,
            max_pods: 110,
            lease_interval: Duration::from_secs(10),
            lease_duration: Duration::from_secs(40),
            status_interval: Duration::from_secs(300),
            concurrency: 128,
            delete_nodes_on_exit: false,
        }
    }
}

/// Why a configuration cannot run.
pub fn validate(cfg: &HollowConfig) -> Result<(), String> {
    if cfg.count == 0 || cfg.count > MAX_NODES {
        return Err(format!(
            "--nodes {}: must be between 1 and {MAX_NODES}",
            cfg.count
        ));
    }
    if cfg.max_pods == 0 || cfg.max_pods as usize > IPS_PER_NODE {
        return Err(format!(
            "--max-pods {}: must be between 1 and {IPS_PER_NODE} (one /24 of pod IPs per node)",
            cfg.max_pods
        ));
    }
    if cfg.concurrency == 0 {
        return Err("--concurrency must be at least 1".into());
    }
    if cfg.lease_interval.is_zero() || cfg.status_interval.is_zero() {
        return Err("heartbeat intervals must be longer than 0".into());
    }
    Ok(())
}

/// A memory size (`32Gi`, `512Mi`, `1048576Ki`, `1T`, bytes) in KiB, as a flag parser.
pub fn parse_memory_kib(s: &str) -> Result<u64, String> {
    let units: [(&str, u64); 8] = [
        ("Ki", 1 << 10),
        ("Mi", 1 << 20),
        ("Gi", 1 << 30),
        ("Ti", 1 << 40),
        ("k", 1_000),
        ("M", 1_000_000),
        ("G", 1_000_000_000),
        ("T", 1_000_000_000_000),
    ];
    let (digits, mult) = units
        .iter()
        .find_map(|(suffix, m)| s.strip_suffix(suffix).map(|d| (d, *m)))
        .unwrap_or((s, 1));
    let n: u64 = digits
        .parse()
        .map_err(|_| format!("{s:?}: expected a size like 32Gi, 512Mi or 1073741824"))?;
    let kib = n.checked_mul(mult).map(|b| b / 1024).unwrap_or(0);
    if kib == 0 {
        return Err(format!("{s:?}: must be at least 1Ki"));
    }
    Ok(kib)
}

/// The name of hollow node `i`.
pub fn node_name(prefix: &str, i: usize) -> String {
    format!("{prefix}{i}")
}

/// The index of the hollow node called `name`, if it is one of the `count` nodes of `prefix`.
pub fn node_index(prefix: &str, count: usize, name: &str) -> Option<usize> {
    let digits = name.strip_prefix(prefix)?;
    let i: usize = digits.parse().ok()?;
    // Only the canonical spelling: "hollow-node-01" is somebody else's node.
    (i < count && digits == i.to_string()).then_some(i)
}

/// The InternalIP of hollow node `i`.
pub fn node_ip(i: usize) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(NODE_NETWORK) + i as u32 + 1)
}

/// The pod CIDR of hollow node `i` (a /24 of [`POD_NETWORK`]).
pub fn pod_cidr(i: usize) -> String {
    format!(
        "{}/24",
        Ipv4Addr::from(u32::from(POD_NETWORK) + ((i as u32) << 8))
    )
}

/// Pod IP number `slot` (1..=254) of hollow node `i`.
pub fn pod_ip(i: usize, slot: u8) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(POD_NETWORK) + ((i as u32) << 8) + slot as u32)
}

/// The slot of `ip` if it is a pod IP of hollow node `i`.
pub fn slot_of(i: usize, ip: &str) -> Option<u8> {
    let ip: Ipv4Addr = ip.parse().ok()?;
    let base = u32::from(POD_NETWORK) + ((i as u32) << 8);
    let off = u32::from(ip).checked_sub(base)?;
    (1..=IPS_PER_NODE as u32)
        .contains(&off)
        .then_some(off as u8)
}

/// The pod IPs of one node in use: lowest free first, as a bitmap (32 bytes a node).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IpPool {
    used: [u64; 4],
}

impl IpPool {
    /// Takes the lowest free slot, None when all 254 are in use.
    pub fn take(&mut self) -> Option<u8> {
        let slot = (1..=IPS_PER_NODE).find(|&s| !self.is_used(s as u8))? as u8;
        self.mark(slot);
        Some(slot)
    }

    /// Marks a slot used (a pod that already had this IP).
    pub fn mark(&mut self, slot: u8) {
        self.used[slot as usize / 64] |= 1 << (slot % 64);
    }

    /// Frees a slot.
    pub fn give(&mut self, slot: u8) {
        self.used[slot as usize / 64] &= !(1 << (slot % 64));
    }

    /// Whether a slot is in use.
    pub fn is_used(&self, slot: u8) -> bool {
        self.used[slot as usize / 64] & (1 << (slot % 64)) != 0
    }
}

/// Heartbeats of `count` nodes spread evenly over `interval`: node `i` beats at
/// `i * interval / count` into every cycle, so the writes per second are steady.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Spread {
    /// How many nodes.
    pub count: usize,
    /// The period of each node's heartbeat.
    pub interval: Duration,
}

impl Spread {
    /// Node `i`'s offset into each cycle.
    pub fn offset(&self, i: usize) -> Duration {
        Duration::from_nanos(
            (self.interval.as_nanos() * i as u128 / self.count.max(1) as u128) as u64,
        )
    }

    /// The nodes whose heartbeat falls in `(from, to]` (times since the schedule started),
    /// in order. A window longer than a cycle yields every node once.
    pub fn due(&self, from: Duration, to: Duration) -> impl Iterator<Item = usize> + use<> {
        let count = self.count.max(1) as u128;
        let period = self.interval.as_nanos().max(1);
        // Beat number s (node s % count, cycle s / count) happens at s * period / count:
        // those with from < t <= to are s in (floor(from*count/period), floor(to*count/period)].
        let beats = |t: Duration| t.as_nanos() * count / period;
        let (a, b) = (beats(from), beats(to.max(from)));
        let n = (b - a).min(count);
        let first = b - n + 1;
        (0..n).map(move |k| ((first + k) % count) as usize)
    }
}

/// The machine hollow node `i` pretends to be.
pub fn machine(cfg: &HollowConfig, i: usize) -> Machine {
    let id = hex::encode(sha2::Sha256::digest(node_name(&cfg.name_prefix, i)))[..32].to_string();
    Machine {
        cpus: cfg.cpus,
        memory_kib: cfg.memory_kib,
        ephemeral_storage: 100 * 1024 * 1024 * 1024,
        kernel: "hollow".into(),
        os_image: "skiff hollow node".into(),
        machine_id: id.clone(),
        boot_id: id,
        arch: "amd64".into(),
    }
}

/// How hollow node `i` describes itself to [`node::node_status`] and [`node::node_object`].
pub fn node_config(cfg: &HollowConfig, i: usize) -> NodeConfig {
    NodeConfig {
        name: node_name(&cfg.name_prefix, i),
        address: node_ip(i).to_string(),
        roles: Vec::new(),
        runtime: Ok("hollow://0.1.0".into()),
        // Nothing listens there: logs and exec of hollow pods fail as for an unreachable node.
        kubelet_port: 10250,
        network: None,
    }
}

/// The Node object hollow node `i` registers: the agent's, plus [`HOLLOW_LABEL`] and its
/// pod CIDR.
pub fn node_object(cfg: &HollowConfig, i: usize) -> Value {
    let mut obj = node::node_object(&machine(cfg, i), &node_config(cfg, i));
    obj["metadata"]["labels"][HOLLOW_LABEL] = json!("true");
    obj["spec"] = json!({"podCIDR": pod_cidr(i), "podCIDRs": [pod_cidr(i)]});
    obj
}

/// Hollow node `i`'s status at `now`, Ready since `since`: the agent's, with the configured
/// pod capacity.
pub fn node_status(cfg: &HollowConfig, i: usize, now: Timestamp, since: Timestamp) -> Value {
    let since = since.round(jiff::Unit::Second).unwrap_or(since).to_string();
    // Every condition has held its status since registration.
    let previous = json!({"conditions": [
        {"type": "MemoryPressure", "status": "False", "lastTransitionTime": since},
        {"type": "DiskPressure", "status": "False", "lastTransitionTime": since},
        {"type": "PIDPressure", "status": "False", "lastTransitionTime": since},
        {"type": "Ready", "status": "True", "lastTransitionTime": since},
    ]});
    let mut status =
        node::node_status(&machine(cfg, i), &node_config(cfg, i), now, Some(&previous));
    let pods = json!(cfg.max_pods.to_string());
    status["capacity"]["pods"] = pods.clone();
    status["allocatable"]["pods"] = pods;
    status
}

/// A pod's status on a hollow node at `now`: what the kubelet reports for a pod whose
/// sandbox is up, whose app containers (and sidecars) run and passed their probes, and whose
/// init containers exited 0. Container ids are `hollow://…`.
pub fn running_status(pod: &Pod, host_ip: &str, pod_ip: Option<&str>, now: Timestamp) -> Value {
    let uid = pod.metadata.uid.clone().unwrap_or_default();
    let short: String = uid.chars().filter(|c| *c != '-').take(12).collect();
    let spec = pod.spec.clone().unwrap_or_default();
    let started = pod
        .status
        .as_ref()
        .and_then(|s| s.start_time.as_ref())
        .map_or(now, |t| t.0);
    let sandbox = Sandbox {
        id: format!("{short}-sandbox"),
        netns: None,
        ipc: PathBuf::new(),
        uts: PathBuf::new(),
        labels: BTreeMap::new(),
        attempt: 0,
        ip: None,
    };
    let mut containers = Vec::new();
    let mut probes = BTreeMap::new();
    let inits = spec.init_containers.iter().flatten().map(|c| (c, true));
    for (c, init) in inits.chain(spec.containers.iter().map(|c| (c, false))) {
        let id = format!("{short}-{}", c.name);
        let image = c.image.clone().unwrap_or_default();
        let sidecar = init && c.restart_policy.as_deref() == Some("Always");
        let state = if init && !sidecar {
            ContainerState::Exited {
                exit_code: 0,
                signal: None,
                started_at: Some(started),
                finished_at: started,
                oom_killed: false,
            }
        } else {
            ContainerState::Running {
                pid: 0,
                started_at: started,
            }
        };
        probes.insert(
            id.clone(),
            ContainerProbes {
                liveness: Some(ProbeResult::Success),
                readiness: Some(ProbeResult::Success),
                startup: Some(ProbeResult::Success),
            },
        );
        containers.push(ObservedContainer {
            id,
            name: c.name.clone(),
            sandbox_id: sandbox.id.clone(),
            attempt: 0,
            image_id: format!("sha256:{}", hex::encode(sha2::Sha256::digest(&image))),
            image,
            hash: String::new(),
            state,
        });
    }
    let observed = ObservedPod {
        sandbox: Some(sandbox),
        sandbox_ready: true,
        containers,
    };
    let host_network = spec.host_network.unwrap_or(false);
    let addresses = Addresses {
        host_ip: Some(host_ip.to_string()),
        pod_ip: if host_network {
            Some(host_ip.to_string())
        } else {
            pod_ip.map(str::to_string)
        },
    };
    let status = pod_status(pod, &observed, &probes, &BTreeMap::new(), &addresses, now);
    let mut v = serde_json::to_value(status).unwrap_or_default();
    for key in ["initContainerStatuses", "containerStatuses"] {
        for cs in v
            .get_mut(key)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            hollow_id(cs.get_mut("containerID"));
            let terminated = cs
                .get_mut("state")
                .and_then(|st| st.get_mut("terminated"))
                .and_then(|t| t.get_mut("containerID"));
            hollow_id(terminated);
        }
    }
    v
}

/// Renames a `runc://` container id (what [`pod_status`] writes) to `hollow://`.
fn hollow_id(v: Option<&mut Value>) {
    if let Some(v) = v
        && let Some(id) = v.as_str().and_then(|s| s.strip_prefix("runc://"))
    {
        *v = json!(format!("hollow://{id}"));
    }
}

/// What a hollow node does about a pod bound to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodAction {
    /// Nothing to do.
    Nothing,
    /// Report it Running and Ready.
    Run,
    /// It is being deleted: confirm (delete with grace period 0).
    Confirm,
}

/// What the sim already did for a pod.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PodMemo {
    /// Its Running status was written (or found written).
    pub written: bool,
    /// A confirming delete is in flight.
    pub deleting: bool,
}

/// What to do about `pod` given what was done before. A Running status is written once;
/// a pod that already runs (a previous simulation's) or has finished is left alone.
pub fn plan_pod(pod: &Pod, memo: PodMemo) -> PodAction {
    if pod.metadata.deletion_timestamp.is_some() {
        return if memo.deleting {
            PodAction::Nothing
        } else {
            PodAction::Confirm
        };
    }
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if memo.written || matches!(phase, Some("Running" | "Succeeded" | "Failed")) {
        return PodAction::Nothing;
    }
    PodAction::Run
}

/// Counters of what the simulation did.
#[derive(Debug, Default)]
pub struct Stats {
    /// Nodes registered.
    pub registered: AtomicU64,
    /// Lease renewals that succeeded.
    pub leases: AtomicU64,
    /// Lease renewals that failed.
    pub lease_errors: AtomicU64,
    /// Node status posts that succeeded.
    pub statuses: AtomicU64,
    /// Node status posts that failed.
    pub status_errors: AtomicU64,
    /// Pods reported Running.
    pub pods_running: AtomicU64,
    /// Pod deletions confirmed.
    pub pods_deleted: AtomicU64,
    /// Pod writes that failed (after retries).
    pub pod_errors: AtomicU64,
}

impl Stats {
    fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }

    /// One line for the log.
    pub fn summary(&self) -> String {
        format!(
            "{} nodes registered, {} pods Running, {} deletions confirmed, {} Lease renewals ({} failed), {} status posts ({} failed), {} pod writes failed",
            Self::get(&self.registered),
            Self::get(&self.pods_running),
            Self::get(&self.pods_deleted),
            Self::get(&self.leases),
            Self::get(&self.lease_errors),
            Self::get(&self.statuses),
            Self::get(&self.status_errors),
            Self::get(&self.pod_errors),
        )
    }
}

/// Per-node runtime state shared by the tasks.
#[derive(Default)]
struct NodeSlot {
    registered_at: OnceLock<Timestamp>,
    lease_busy: AtomicBool,
    status_busy: AtomicBool,
}

struct Shared {
    client: kube::Client,
    cfg: HollowConfig,
    nodes: Vec<NodeSlot>,
    stats: Stats,
}

/// Why the simulation stopped.
#[derive(Debug, thiserror::Error)]
pub enum SimError {
    /// The configuration cannot run.
    #[error("{0}")]
    Config(String),
}

/// Runs `cfg.count` hollow nodes until `shutdown` turns true. Prints one line when every
/// node is registered and Ready, and a summary at the end.
pub async fn run(
    client: kube::Client,
    cfg: HollowConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), SimError> {
    validate(&cfg).map_err(SimError::Config)?;
    let shared = Arc::new(Shared {
        client,
        nodes: (0..cfg.count).map(|_| NodeSlot::default()).collect(),
        cfg,
        stats: Stats::default(),
    });
    let work = Arc::new(Semaphore::new(shared.cfg.concurrency));
    let beats = Arc::new(Semaphore::new((shared.cfg.concurrency / 4).max(8)));
    let mut tasks = tokio::task::JoinSet::new();
    tasks.spawn(pods_loop(shared.clone(), work.clone()));
    tasks.spawn(heartbeats(shared.clone(), beats));
    tasks.spawn(register_all(shared.clone(), work));
    let _ = shutdown.wait_for(|s| *s).await;
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
    if shared.cfg.delete_nodes_on_exit {
        delete_nodes(&shared).await;
    }
    eprintln!("skiff sim: stopped: {}", shared.stats.summary());
    Ok(())
}

fn is_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Registers every node (bounded concurrency, each retried until it works), then checks
/// through the API that all are Ready and says how long it took.
async fn register_all(shared: Arc<Shared>, work: Arc<Semaphore>) {
    let started = Instant::now();
    let n = shared.cfg.count;
    futures::stream::iter(0..n)
        .for_each_concurrent(shared.cfg.concurrency, |i| {
            let shared = shared.clone();
            let work = work.clone();
            async move {
                let mut delay = Duration::from_millis(200);
                loop {
                    let result = {
                        let _permit = work.acquire().await;
                        register_one(&shared, i).await
                    };
                    match result {
                        Ok(()) => break,
                        Err(e) => {
                            tracing::warn!(
                                "registering {}: {e}",
                                node_name(&shared.cfg.name_prefix, i)
                            );
                            tokio::time::sleep(delay).await;
                            delay = (delay * 2).min(Duration::from_secs(5));
                        }
                    }
                }
            }
        })
        .await;
    let registered = started.elapsed();
    // Confirm from the API's side: every node of ours listed and Ready.
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let lp = ListParams::default().labels(&format!("{HOLLOW_LABEL}=true"));
    let prefix = &shared.cfg.name_prefix;
    loop {
        let ready = match nodes.list(&lp).await {
            Ok(list) => list
                .items
                .iter()
                .filter(|node| {
                    node_index(prefix, n, node.metadata.name.as_deref().unwrap_or("")).is_some()
                })
                .filter(|node| is_ready(node))
                .count(),
            Err(e) => {
                tracing::warn!("listing nodes: {e}");
                0
            }
        };
        if ready >= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    eprintln!(
        "skiff sim: {n} hollow nodes registered and Ready in {:.2} s ({:.0} nodes/s)",
        started.elapsed().as_secs_f64(),
        n as f64 / registered.as_secs_f64().max(1e-9),
    );
}

/// Registers hollow node `i`: creates the Node (or refreshes its labels), posts its status,
/// creates its Lease.
async fn register_one(shared: &Shared, i: usize) -> Result<(), kube::Error> {
    let cfg = &shared.cfg;
    let name = node_name(&cfg.name_prefix, i);
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let obj = node_object(cfg, i);
    let node: Node = serde_json::from_value(obj.clone()).expect("valid node");
    match nodes.create(&PostParams::default(), &node).await {
        Ok(_) => {}
        Err(kube::Error::Api(s)) if s.code == 409 => {
            let patch = json!({"metadata": {"labels": obj["metadata"]["labels"]}});
            nodes
                .patch(&name, &PatchParams::default(), &Patch::Merge(patch))
                .await?;
        }
        Err(e) => return Err(e),
    }
    let now = Timestamp::now();
    let since = *shared.nodes[i].registered_at.get().unwrap_or(&now);
    let status = node_status(cfg, i, now, since);
    nodes
        .patch_status(
            &name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await?;
    node::renew_lease(&shared.client, &name, cfg.lease_duration)
        .await
        .map_err(|node::NodeError::Api { source, .. }| source)?;
    if shared.nodes[i].registered_at.set(since).is_ok() {
        shared.stats.registered.fetch_add(1, Ordering::Relaxed);
    }
    Ok(())
}

/// How often the heartbeat loop wakes up.
const TICK: Duration = Duration::from_millis(20);

/// Renews Leases and posts node statuses on their [`Spread`] schedules. A node gets its
/// heartbeats once registered; a beat is skipped while the node's previous one is in flight.
async fn heartbeats(shared: Arc<Shared>, permits: Arc<Semaphore>) {
    let leases = Spread {
        count: shared.cfg.count,
        interval: shared.cfg.lease_interval,
    };
    let statuses = Spread {
        count: shared.cfg.count,
        interval: shared.cfg.status_interval,
    };
    let start = Instant::now();
    let mut last = Duration::ZERO;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = start.elapsed();
        for i in leases.due(last, now) {
            let slot = &shared.nodes[i];
            if slot.registered_at.get().is_none() || slot.lease_busy.swap(true, Ordering::AcqRel) {
                continue;
            }
            let shared = shared.clone();
            let permits = permits.clone();
            tokio::spawn(async move {
                let name = node_name(&shared.cfg.name_prefix, i);
                let result = {
                    let _permit = permits.acquire().await;
                    node::renew_lease(&shared.client, &name, shared.cfg.lease_duration).await
                };
                match result {
                    Ok(()) => shared.stats.leases.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!("renewing the Lease of {name}: {e}");
                        shared.stats.lease_errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
                shared.nodes[i].lease_busy.store(false, Ordering::Release);
            });
        }
        for i in statuses.due(last, now) {
            let slot = &shared.nodes[i];
            let Some(&since) = slot.registered_at.get() else {
                continue;
            };
            if slot.status_busy.swap(true, Ordering::AcqRel) {
                continue;
            }
            let shared = shared.clone();
            let permits = permits.clone();
            tokio::spawn(async move {
                let name = node_name(&shared.cfg.name_prefix, i);
                let status = node_status(&shared.cfg, i, Timestamp::now(), since);
                let nodes: Api<Node> = Api::all(shared.client.clone());
                let result = {
                    let _permit = permits.acquire().await;
                    nodes
                        .patch_status(
                            &name,
                            &PatchParams::default(),
                            &Patch::Merge(json!({"status": status})),
                        )
                        .await
                };
                match result {
                    Ok(_) => shared.stats.statuses.fetch_add(1, Ordering::Relaxed),
                    Err(e) => {
                        tracing::warn!("posting the status of {name}: {e}");
                        shared.stats.status_errors.fetch_add(1, Ordering::Relaxed)
                    }
                };
                shared.nodes[i].status_busy.store(false, Ordering::Release);
            });
        }
        last = now;
    }
}

/// What the pods loop keeps per pod bound to one of its nodes.
#[derive(Debug, Clone, Copy)]
struct Tracked {
    node: usize,
    slot: Option<u8>,
    memo: PodMemo,
}

/// The outcome of a pod write, reported back to the pods loop.
enum Done {
    /// The Running status could not be written (uid).
    RunFailed(String),
    /// The confirming delete failed (uid).
    ConfirmFailed(String),
}

/// How often a failed pod write is tried.
const POD_ATTEMPTS: u32 = 5;

/// Follows every bound pod; for those on our nodes, plans and carries out what to do.
async fn pods_loop(shared: Arc<Shared>, work: Arc<Semaphore>) {
    let pods: Api<Pod> = Api::all(shared.client.clone());
    let mut stream = watcher(pods, watcher::Config::default().fields("spec.nodeName!=")).boxed();
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Done>();
    let mut tracked: HashMap<String, Tracked> = HashMap::new();
    let mut ips: Vec<IpPool> = vec![IpPool::default(); shared.cfg.count];
    // Uids seen during a relist; those tracked but not seen are gone.
    let mut relist: Option<HashSet<String>> = None;
    let prefix = shared.cfg.name_prefix.clone();
    let count = shared.cfg.count;
    loop {
        let event = tokio::select! {
            Some(done) = done_rx.recv() => {
                match done {
                    Done::RunFailed(uid) => {
                        if let Some(t) = tracked.get_mut(&uid) {
                            t.memo.written = false;
                        }
                    }
                    Done::ConfirmFailed(uid) => {
                        if let Some(t) = tracked.get_mut(&uid) {
                            t.memo.deleting = false;
                        }
                    }
                }
                continue;
            }
            e = stream.next() => e,
        };
        let pod = match event {
            None => return,
            Some(Err(e)) => {
                tracing::warn!("sim pod watch: {e}");
                continue;
            }
            Some(Ok(watcher::Event::Init)) => {
                relist = Some(HashSet::new());
                continue;
            }
            Some(Ok(watcher::Event::InitDone)) => {
                if let Some(seen) = relist.take() {
                    tracked.retain(|uid, t| {
                        let keep = seen.contains(uid);
                        if !keep && let Some(s) = t.slot {
                            ips[t.node].give(s);
                        }
                        keep
                    });
                }
                continue;
            }
            Some(Ok(watcher::Event::Delete(pod))) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(t) = tracked.remove(&uid)
                    && let Some(s) = t.slot
                {
                    ips[t.node].give(s);
                }
                continue;
            }
            Some(Ok(watcher::Event::Apply(pod) | watcher::Event::InitApply(pod))) => pod,
        };
        let node = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        let Some(i) = node_index(&prefix, count, node) else {
            continue;
        };
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        if let Some(seen) = relist.as_mut() {
            seen.insert(uid.clone());
        }
        let t = tracked.entry(uid.clone()).or_insert_with(|| {
            // A pod that already has an IP of this node keeps it.
            let slot = pod
                .status
                .as_ref()
                .and_then(|s| s.pod_ip.as_deref())
                .and_then(|ip| slot_of(i, ip));
            if let Some(s) = slot {
                ips[i].mark(s);
            }
            Tracked {
                node: i,
                slot,
                memo: PodMemo::default(),
            }
        });
        let action = plan_pod(&pod, t.memo);
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        match action {
            PodAction::Nothing => continue,
            PodAction::Run => {
                let host_network = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false);
                if t.slot.is_none() && !host_network {
                    t.slot = ips[i].take();
                    if t.slot.is_none() {
                        tracing::warn!("node {node}: no pod IP left for {ns}/{name}");
                    }
                }
                t.memo.written = true;
                let status = running_status(
                    &pod,
                    &node_ip(i).to_string(),
                    t.slot.map(|s| pod_ip(i, s).to_string()).as_deref(),
                    Timestamp::now(),
                );
                let Ok(permit) = work.clone().acquire_owned().await else {
                    return;
                };
                let shared = shared.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
                    let patch = Patch::Merge(json!({"status": status}));
                    let mut last = None;
                    for attempt in 0..POD_ATTEMPTS {
                        match pods
                            .patch_status(&name, &PatchParams::default(), &patch)
                            .await
                        {
                            Ok(_) => {
                                shared.stats.pods_running.fetch_add(1, Ordering::Relaxed);
                                return;
                            }
                            // Gone: nothing to report.
                            Err(kube::Error::Api(s)) if s.code == 404 => return,
                            Err(e) => last = Some(e),
                        }
                        tokio::time::sleep(Duration::from_millis(100 << attempt)).await;
                    }
                    tracing::warn!(
                        "reporting {ns}/{name} Running: {}",
                        last.map(|e| e.to_string()).unwrap_or_default()
                    );
                    shared.stats.pod_errors.fetch_add(1, Ordering::Relaxed);
                    let _ = done.send(Done::RunFailed(uid));
                });
            }
            PodAction::Confirm => {
                t.memo.deleting = true;
                let Ok(permit) = work.clone().acquire_owned().await else {
                    return;
                };
                let shared = shared.clone();
                let done = done_tx.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    let pods: Api<Pod> = Api::namespaced(shared.client.clone(), &ns);
                    let dp = DeleteParams {
                        grace_period_seconds: Some(0),
                        preconditions: Some(Preconditions {
                            uid: Some(uid.clone()),
                            resource_version: None,
                        }),
                        ..Default::default()
                    };
                    match pods.delete(&name, &dp).await {
                        Ok(_) => {
                            shared.stats.pods_deleted.fetch_add(1, Ordering::Relaxed);
                        }
                        // Already gone (or replaced by a pod of the same name).
                        Err(kube::Error::Api(s)) if s.code == 404 || s.code == 409 => {}
                        Err(e) => {
                            tracing::warn!("confirming the deletion of {ns}/{name}: {e}");
                            shared.stats.pod_errors.fetch_add(1, Ordering::Relaxed);
                            let _ = done.send(Done::ConfirmFailed(uid));
                        }
                    }
                });
            }
        }
    }
}

/// Deletes every hollow node and its Lease (bounded concurrency, at most a minute).
async fn delete_nodes(shared: &Arc<Shared>) {
    let started = Instant::now();
    let nodes: Api<Node> = Api::all(shared.client.clone());
    let leases: Api<Lease> = Api::namespaced(shared.client.clone(), "kube-node-lease");
    let work = futures::stream::iter(0..shared.cfg.count).for_each_concurrent(
        shared.cfg.concurrency,
        |i| {
            let (nodes, leases) = (nodes.clone(), leases.clone());
            let name = node_name(&shared.cfg.name_prefix, i);
            async move {
                let _ = leases.delete(&name, &DeleteParams::default()).await;
                let _ = nodes.delete(&name, &DeleteParams::default()).await;
            }
        },
    );
    if tokio::time::timeout(Duration::from_secs(60), work)
        .await
        .is_err()
    {
        eprintln!("skiff sim: gave up deleting nodes after 60 s");
        return;
    }
    eprintln!(
        "skiff sim: deleted {} hollow nodes and their Leases in {:.1} s",
        shared.cfg.count,
        started.elapsed().as_secs_f64()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn pod(v: Value) -> Pod {
        serde_json::from_value(v).unwrap()
    }

    fn busybox(extra_spec: Value) -> Pod {
        let mut spec = json!({"nodeName": "hollow-node-3", "containers": [
            {"name": "main", "image": "busybox:1.36", "command": ["sleep", "3600"]}]});
        for (k, v) in extra_spec.as_object().unwrap() {
            spec[k] = v.clone();
        }
        pod(json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "namespace": "default", "uid": "0a1b2c3d-4e5f-6789-abcd-ef0123456789"},
            "spec": spec,
            "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2026-11-28T05:00:00Z"}]}}))
    }

    fn cond<'a>(status: &'a Value, type_: &str) -> &'a Value {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == type_)
            .unwrap_or_else(|| panic!("no {type_} condition in {status}"))
    }

    #[test]
    fn node_names_map_back_to_indexes_only_for_our_nodes() {
        let cases = [
            ("hollow-node-0", Some(0)),
            ("hollow-node-4999", Some(4999)),
            ("hollow-node-5000", None),
            ("hollow-node-01", None),
            ("hollow-node-", None),
            ("hollow-node-x", None),
            ("node-1", None),
            ("", None),
        ];
        for (name, want) in cases {
            assert_eq!(node_index("hollow-node-", 5000, name), want, "{name}");
        }
        assert_eq!(node_name("hollow-node-", 42), "hollow-node-42");
    }

    #[test]
    fn each_node_has_its_own_address_and_slash_24_of_pod_ips() {
        let cases = [
            (0, 1, "10.64.0.1", "10.128.0.0/24", "10.128.0.1"),
            (3, 254, "10.64.0.4", "10.128.3.0/24", "10.128.3.254"),
            (255, 7, "10.64.1.0", "10.128.255.0/24", "10.128.255.7"),
            (256, 1, "10.64.1.1", "10.129.0.0/24", "10.129.0.1"),
            (
                MAX_NODES - 1,
                2,
                "10.64.128.0",
                "10.255.255.0/24",
                "10.255.255.2",
            ),
        ];
        for (i, slot, node, cidr, ip) in cases {
            assert_eq!(node_ip(i).to_string(), node, "node {i}");
            assert_eq!(pod_cidr(i), cidr, "node {i}");
            assert_eq!(pod_ip(i, slot).to_string(), ip, "node {i} slot {slot}");
            assert_eq!(slot_of(i, ip), Some(slot), "{ip} on node {i}");
        }
        // Addresses that are not a pod IP of that node.
        for (i, ip) in [
            (3, "10.128.4.1"),
            (3, "10.128.3.0"),
            (3, "10.128.3.255"),
            (3, "10.64.0.4"),
            (3, "not an ip"),
        ] {
            assert_eq!(slot_of(i, ip), None, "{ip} on node {i}");
        }
    }

    #[test]
    fn ip_pool_hands_out_the_lowest_free_ip_and_runs_out_after_254() {
        let mut pool = IpPool::default();
        assert_eq!(pool.take(), Some(1));
        assert_eq!(pool.take(), Some(2));
        pool.mark(3); // an adopted pod's IP
        assert_eq!(pool.take(), Some(4));
        pool.give(2);
        assert_eq!(pool.take(), Some(2));
        let mut full = IpPool::default();
        let all: Vec<u8> = std::iter::from_fn(|| full.take()).collect();
        assert_eq!(all.len(), IPS_PER_NODE);
        assert_eq!((all[0], all[253]), (1, 254));
        full.give(200);
        assert_eq!(full.take(), Some(200));
        assert_eq!(full.take(), None);
    }

    #[test]
    fn heartbeats_are_spread_over_the_interval() {
        let s = Spread {
            count: 4,
            interval: Duration::from_secs(10),
        };
        let ms = Duration::from_millis;
        assert_eq!(s.offset(0), ms(0));
        assert_eq!(s.offset(3), ms(7500));
        let cases: [(u64, u64, &[usize]); 7] = [
            (0, 2000, &[]),
            (0, 2500, &[1]),
            (2500, 7600, &[2, 3]),
            (7600, 10_000, &[0]),
            (0, 10_000, &[1, 2, 3, 0]),
            // A stall longer than a cycle: every node once, oldest first.
            (1000, 26_000, &[3, 0, 1, 2]),
            (5000, 5000, &[]),
        ];
        for (from, to, want) in cases {
            let got: Vec<usize> = s.due(ms(from), ms(to)).collect();
            assert_eq!(got, want, "({from} ms, {to} ms]");
        }
    }

    #[test]
    fn five_thousand_leases_in_20ms_ticks_are_each_renewed_once_per_cycle_ten_at_a_time() {
        let s = Spread {
            count: 5000,
            interval: Duration::from_secs(10),
        };
        let mut renewed = vec![0u32; 5000];
        let mut busiest = 0;
        for tick in 0..500u64 {
            let from = Duration::from_millis(tick * 20);
            let to = Duration::from_millis((tick + 1) * 20);
            let due: Vec<usize> = s.due(from, to).collect();
            busiest = busiest.max(due.len());
            for i in due {
                renewed[i] += 1;
            }
        }
        assert!(renewed.iter().all(|&n| n == 1), "each node once in 10 s");
        assert_eq!(busiest, 10, "5000 nodes / 10 s = 10 per 20 ms tick");
    }

    #[test]
    fn a_bound_pod_is_reported_running_and_ready_with_its_ips() {
        let now = ts("2026-11-28T06:00:00Z");
        let s = running_status(&busybox(json!({})), "10.64.0.4", Some("10.128.3.1"), now);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.128.3.1");
        assert_eq!(s["podIPs"], json!([{"ip": "10.128.3.1"}]));
        assert_eq!(s["hostIP"], "10.64.0.4");
        assert_eq!(s["hostIPs"], json!([{"ip": "10.64.0.4"}]));
        assert_eq!(s["startTime"], "2026-11-28T06:00:00Z");
        assert_eq!(s["qosClass"], "BestEffort");
        let types: Vec<&str> = s["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            types,
            [
                "PodReadyToStartContainers",
                "Initialized",
                "Ready",
                "ContainersReady",
                "PodScheduled"
            ]
        );
        for c in s["conditions"].as_array().unwrap() {
            assert_eq!(c["status"], "True", "{c}");
        }
        // The scheduler's PodScheduled transition time is kept.
        assert_eq!(
            cond(&s, "PodScheduled")["lastTransitionTime"],
            "2026-11-28T05:00:00Z"
        );
        assert_eq!(
            cond(&s, "Ready")["lastTransitionTime"],
            "2026-11-28T06:00:00Z"
        );
        let cs = &s["containerStatuses"][0];
        assert_eq!(cs["name"], "main");
        assert_eq!(cs["image"], "busybox:1.36");
        assert_eq!(cs["ready"], true);
        assert_eq!(cs["started"], true);
        assert_eq!(cs["restartCount"], 0);
        assert_eq!(cs["containerID"], "hollow://0a1b2c3d4e5f-main");
        assert!(cs["imageID"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(
            cs["state"],
            json!({"running": {"startedAt": "2026-11-28T06:00:00Z"}})
        );
        assert!(s.get("initContainerStatuses").is_none());
    }

    #[test]
    fn init_containers_completed_sidecars_running_probes_passed_host_network_uses_node_ip() {
        let now = ts("2026-11-28T06:00:00Z");
        let p = busybox(json!({
            "hostNetwork": true,
            "initContainers": [
                {"name": "setup", "image": "busybox:1.36"},
                {"name": "proxy", "image": "envoy:1", "restartPolicy": "Always",
                 "readinessProbe": {"httpGet": {"port": 9901}}}],
            "containers": [{"name": "main", "image": "busybox:1.36",
                            "readinessProbe": {"httpGet": {"port": 80}},
                            "startupProbe": {"httpGet": {"port": 80}}}],
        }));
        let s = running_status(&p, "10.64.0.4", Some("10.128.3.9"), now);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.64.0.4", "host network: the node's IP");
        assert_eq!(cond(&s, "Ready")["status"], "True");
        assert_eq!(cond(&s, "Initialized")["status"], "True");
        let setup = &s["initContainerStatuses"][0];
        assert_eq!(setup["state"]["terminated"]["reason"], "Completed");
        assert_eq!(setup["state"]["terminated"]["exitCode"], 0);
        assert_eq!(
            setup["state"]["terminated"]["containerID"],
            "hollow://0a1b2c3d4e5f-setup"
        );
        assert_eq!(setup["ready"], true);
        let proxy = &s["initContainerStatuses"][1];
        assert!(proxy["state"]["running"].is_object(), "{proxy}");
        assert_eq!(proxy["ready"], true);
        assert_eq!(s["containerStatuses"][0]["ready"], true);
        assert_eq!(s["containerStatuses"][0]["started"], true);
    }

    #[test]
    fn a_pod_without_an_ip_left_still_runs_and_keeps_its_start_time() {
        let mut p = busybox(json!({}));
        p.status.as_mut().unwrap().start_time = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts("2026-11-28T05:30:00Z")),
        );
        let s = running_status(&p, "10.64.0.4", None, ts("2026-11-28T06:00:00Z"));
        assert_eq!(s["phase"], "Running");
        assert!(s.get("podIP").is_none());
        assert_eq!(s["startTime"], "2026-11-28T05:30:00Z");
    }

    #[test]
    fn what_a_hollow_node_does_about_a_pod() {
        let pending = busybox(json!({}));
        let mut running = busybox(json!({}));
        running.status.as_mut().unwrap().phase = Some("Running".into());
        let mut done = busybox(json!({}));
        done.status.as_mut().unwrap().phase = Some("Succeeded".into());
        let mut deleting = busybox(json!({}));
        deleting.metadata.deletion_timestamp = Some(
            k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(ts("2026-11-28T06:00:00Z")),
        );
        let fresh = PodMemo::default();
        let written = PodMemo {
            written: true,
            deleting: false,
        };
        let confirming = PodMemo {
            written: true,
            deleting: true,
        };
        let cases = [
            ("newly bound", &pending, fresh, PodAction::Run),
            (
                "our write not seen yet",
                &pending,
                written,
                PodAction::Nothing,
            ),
            ("already running", &running, fresh, PodAction::Nothing),
            ("finished", &done, fresh, PodAction::Nothing),
            ("being deleted", &deleting, written, PodAction::Confirm),
            (
                "deleted before it ran",
                &deleting,
                fresh,
                PodAction::Confirm,
            ),
            (
                "confirm in flight",
                &deleting,
                confirming,
                PodAction::Nothing,
            ),
        ];
        for (what, p, memo, want) in cases {
            assert_eq!(plan_pod(p, memo), want, "{what}");
        }
    }

    #[test]
    fn hollow_nodes_are_labelled_and_report_the_configured_capacity() {
        let cfg = HollowConfig {
            max_pods: 30,
            cpus: 8,
            memory_kib: 1024 * 1024,
            ..HollowConfig::default()
        };
        let obj = node_object(&cfg, 7);
        let labels = &obj["metadata"]["labels"];
        assert_eq!(obj["metadata"]["name"], "hollow-node-7");
        assert_eq!(labels["skiff.io/hollow"], "true");
        assert_eq!(labels["kubernetes.io/hostname"], "hollow-node-7");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "amd64");
        assert_eq!(obj["spec"]["podCIDR"], "10.128.7.0/24");
        let since = ts("2026-11-28T05:00:00Z");
        let s = node_status(&cfg, 7, ts("2026-11-28T06:00:00Z"), since);
        assert_eq!(s["capacity"]["cpu"], "8");
        assert_eq!(s["capacity"]["memory"], "1048576Ki");
        assert_eq!(s["capacity"]["pods"], "30");
        assert_eq!(s["allocatable"]["pods"], "30");
        let ready = cond(&s, "Ready");
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["lastTransitionTime"], "2026-11-28T05:00:00Z");
        assert_eq!(ready["lastHeartbeatTime"], "2026-11-28T06:00:00Z");
        assert_eq!(
            s["addresses"],
            json!([{"type": "InternalIP", "address": "10.64.0.8"},
                   {"type": "Hostname", "address": "hollow-node-7"}])
        );
        assert_eq!(s["nodeInfo"]["containerRuntimeVersion"], "hollow://0.1.0");
        assert_ne!(
            machine(&cfg, 7).machine_id,
            machine(&cfg, 8).machine_id,
            "each node its own machine id"
        );
        // The defaults are scheduler_perf's node: cpu 4, memory 32Gi, pods 110.
        let d = node_status(&HollowConfig::default(), 0, since, since);
        assert_eq!(
            (
                &d["capacity"]["cpu"],
                &d["capacity"]["memory"],
                &d["capacity"]["pods"]
            ),
            (&json!("4"), &json!("33554432Ki"), &json!("110"))
        );
    }

    #[test]
    fn memory_flag_takes_kubernetes_quantities() {
        let cases = [
            ("32Gi", Ok(33_554_432)),
            ("512Mi", Ok(524_288)),
            ("1048576Ki", Ok(1_048_576)),
            ("1073741824", Ok(1_048_576)),
            ("2G", Ok(1_953_125)),
            ("0", Err(())),
            ("lots", Err(())),
            ("1.5Gi", Err(())),
        ];
        for (input, want) in cases {
            assert_eq!(parse_memory_kib(input).map_err(|_| ()), want, "{input}");
        }
    }

    #[test]
    fn configurations_that_cannot_run_are_refused() {
        let ok = HollowConfig::default();
        assert_eq!(validate(&ok), Ok(()));
        let cases = [
            HollowConfig {
                count: 0,
                ..ok.clone()
            },
            HollowConfig {
                count: MAX_NODES + 1,
                ..ok.clone()
            },
            HollowConfig {
                max_pods: 255,
                ..ok.clone()
            },
            HollowConfig {
                concurrency: 0,
                ..ok.clone()
            },
            HollowConfig {
                lease_interval: Duration::ZERO,
                ..ok.clone()
            },
        ];
        for c in cases {
            assert!(validate(&c).is_err(), "{c:?}");
        }
    }
}
