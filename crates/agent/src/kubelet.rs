//! The agent's main loop: register the node, keep its Lease, watch the pods
//! bound to it, and run one worker per pod that observes the runtime,
//! plans with [`crate::pod::plan`], carries the plan out and writes status.
//!
//! One relist task (the kubelet's PLEG) scans the runtime once a second and
//! wakes the workers whose containers changed, so N pods cost one scan, not N.

use crate::events::Recorder;
use crate::image::ImageStore;
use crate::network::pod_files;
use crate::node::{self, Machine, NodeConfig};
use crate::pod::backoff::Backoff;
use crate::pod::plan::{
    self, Action, ContainerProbes, ObservedContainer, ObservedPod, ProbeResult, ProbeResults,
    Waiting,
};
use crate::pod::status::{self, Addresses};
use crate::probe::{self, Kind, ProbeState};
use crate::runtime::{
    ContainerConfig, ContainerInfo, ContainerState, Mount, Runtime, Sandbox, SandboxConfig, labels,
};
use crate::{spec, volume};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, PersistentVolume, PersistentVolumeClaim, Pod, Secret, Service,
};
use kube::api::{Api, DeleteParams, Patch, PatchParams, Preconditions};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Extra labels the agent keeps on containers.
mod extra_labels {
    pub const HASH: &str = "io.skiff.container.hash";
    pub const IMAGE: &str = "io.skiff.container.image";
    pub const IMAGE_ID: &str = "io.skiff.container.image-id";
}

/// How the agent runs.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Node name.
    pub node_name: String,
    /// The agent's state: containers, images, pods, logs.
    pub data_dir: PathBuf,
    /// The node's address.
    pub address: String,
    /// Node roles.
    pub roles: Vec<String>,
    /// Cap of the crash-loop back-off (`--crashloop-backoff-max`).
    pub crashloop_backoff_max: Duration,
    /// Bind pods that have no node to this one (until a scheduler runs).
    pub self_assign: bool,
    /// The runtime's version, or why it cannot run.
    pub runtime_status: Result<String, String>,
    /// The port the node's kubelet endpoint listens on (`--kubelet-port`).
    pub kubelet_port: u16,
    /// The pod network (None: pods get loopback only, and DNS from the host).
    pub network: Option<Arc<crate::network::PodNetwork>>,
}

/// Shared state of a running agent.
pub struct Kubelet {
    client: kube::Client,
    runtime: Arc<dyn Runtime>,
    images: ImageStore,
    config: AgentConfig,
    recorder: Recorder,
    puller: crate::image::pull::Puller,
    snapshot: RwLock<Snapshot>,
    relist_now: Notify,
    /// Serializes relists, so a list begun before a container was created can never
    /// overwrite the snapshot of one begun after (which would hide the container from
    /// its worker and make it start a duplicate).
    relist_lock: tokio::sync::Mutex<()>,
    /// Relists begun and finished; a caller needing fresh state waits for one
    /// begun after its request, and concurrent callers share it.
    relists_started: std::sync::atomic::AtomicU64,
    relists_done: std::sync::atomic::AtomicU64,
    wakers: Mutex<HashMap<String, Arc<Notify>>>,
}

#[derive(Default, Clone)]
struct Snapshot {
    containers: Vec<ContainerInfo>,
    sandboxes: Vec<Sandbox>,
}

impl Kubelet {
    /// The directory of a pod's volumes and files.
    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.config.data_dir.join("pods").join(uid)
    }

    /// The CRI log file of one attempt of a container.
    pub fn log_path(
        data_dir: &Path,
        ns: &str,
        name: &str,
        uid: &str,
        container: &str,
        attempt: u32,
    ) -> PathBuf {
        data_dir
            .join("logs")
            .join(format!("{ns}_{name}_{uid}"))
            .join(container)
            .join(format!("{attempt}.log"))
    }

    /// The cluster DNS pods are pointed at, when the cluster runs one.
    fn cluster_dns(&self) -> Option<pod_files::ClusterDns> {
        let cluster = self.config.network.as_ref()?.cluster();
        Some(pod_files::ClusterDns {
            server: cluster.cluster_dns?,
            domain: cluster.cluster_domain.clone(),
        })
    }

    /// The Services whose variables a pod's containers get: its namespace's
    /// (with enableServiceLinks) and `default/kubernetes`.
    async fn service_env(&self, pod: &Pod) -> Vec<(String, String)> {
        if self.config.network.is_none() {
            return Vec::new();
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let links = pod
            .spec
            .as_ref()
            .and_then(|s| s.enable_service_links)
            .unwrap_or(true);
        let mut services = Vec::new();
        if links {
            let api: Api<Service> = Api::namespaced(self.client.clone(), &ns);
            if let Ok(list) = api.list(&Default::default()).await {
                services.extend(list.items);
            }
        }
        let default: Api<Service> = Api::namespaced(self.client.clone(), "default");
        if let Ok(Some(k)) = default.get_opt("kubernetes").await {
            services.push(k);
        }
        pod_files::service_env(&services, &ns, links)
    }

    fn observed(&self, uid: &str, stopped: &HashSet<String>) -> ObservedPod {
        let snap = self.snapshot.read().expect("snapshot lock");
        let sandbox = snap
            .sandboxes
            .iter()
            .filter(|s| s.labels.get(labels::POD_UID).map(String::as_str) == Some(uid))
            .max_by_key(|s| s.attempt)
            .cloned();
        let sandbox_ready = sandbox.as_ref().is_some_and(|s| !stopped.contains(&s.id));
        let containers = snap
            .containers
            .iter()
            .filter(|c| c.labels.get(labels::POD_UID).map(String::as_str) == Some(uid))
            .map(|c| ObservedContainer {
                id: c.id.clone(),
                name: c
                    .labels
                    .get(labels::CONTAINER_NAME)
                    .cloned()
                    .unwrap_or_default(),
                sandbox_id: c
                    .labels
                    .get(labels::SANDBOX_ID)
                    .cloned()
                    .unwrap_or_default(),
                attempt: c
                    .labels
                    .get(labels::ATTEMPT)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0),
                image: c
                    .labels
                    .get(extra_labels::IMAGE)
                    .cloned()
                    .unwrap_or_default(),
                image_id: c
                    .labels
                    .get(extra_labels::IMAGE_ID)
                    .cloned()
                    .unwrap_or_default(),
                hash: c
                    .labels
                    .get(extra_labels::HASH)
                    .cloned()
                    .unwrap_or_default(),
                state: c.state.clone(),
            })
            .collect();
        ObservedPod {
            sandbox,
            sandbox_ready,
            containers,
        }
    }

    async fn relist(&self) {
        use std::sync::atomic::Ordering;
        // Any relist that begins after this point sees everything done before it.
        let wanted = self.relists_started.load(Ordering::SeqCst) + 1;
        let _serial = self.relist_lock.lock().await;
        if self.relists_done.load(Ordering::SeqCst) >= wanted {
            return;
        }
        let generation = self.relists_started.fetch_add(1, Ordering::SeqCst) + 1;
        self.list_and_publish().await;
        self.relists_done.store(generation, Ordering::SeqCst);
    }

    async fn list_and_publish(&self) {
        let (containers, sandboxes) = match (
            self.runtime.list_containers().await,
            self.runtime.list_sandboxes().await,
        ) {
            (Ok(c), Ok(s)) => (c, s),
            (Err(e), _) | (_, Err(e)) => {
                tracing::warn!("relist: {e}");
                return;
            }
        };
        // Pods whose containers appeared, vanished or changed state since the last relist.
        let changed: HashSet<String> = {
            let old = self.snapshot.read().expect("snapshot lock");
            let before: HashMap<&str, &ContainerInfo> =
                old.containers.iter().map(|c| (c.id.as_str(), c)).collect();
            let after: HashSet<&str> = containers.iter().map(|c| c.id.as_str()).collect();
            let differs = containers
                .iter()
                .filter(|c| before.get(c.id.as_str()).is_none_or(|b| b.state != c.state));
            let gone = old
                .containers
                .iter()
                .filter(|c| !after.contains(c.id.as_str()));
            differs
                .chain(gone)
                .filter_map(|c| c.labels.get(labels::POD_UID).cloned())
                .collect()
        };
        *self.snapshot.write().expect("snapshot lock") = Snapshot {
            containers,
            sandboxes,
        };
        let wakers = self.wakers.lock().expect("wakers lock");
        for uid in changed {
            if let Some(n) = wakers.get(&uid) {
                n.notify_one();
            }
        }
    }
}

/// Runs the agent until `shutdown` turns true. Running containers are left
/// running: an agent restart re-adopts them.
pub async fn run(
    client: kube::Client,
    runtime: Arc<dyn Runtime>,
    images: ImageStore,
    config: AgentConfig,
    mut shutdown: watch::Receiver<bool>,
) -> Result<(), node::NodeError> {
    let machine = Machine::read(&config.data_dir);
    let node_config = NodeConfig {
        name: config.node_name.clone(),
        address: config.address.clone(),
        roles: config.roles.clone(),
        runtime: config.runtime_status.clone(),
        kubelet_port: config.kubelet_port,
        network: config.network.clone(),
    };
    node::register(&client, &machine, &node_config).await?;
    let kubelet = Arc::new(Kubelet {
        recorder: Recorder::new(client.clone(), "kubelet", &config.node_name),
        client: client.clone(),
        runtime,
        puller: crate::image::pull::Puller::new(Vec::new()),
        images,
        config,
        snapshot: RwLock::new(Snapshot::default()),
        relist_now: Notify::new(),
        relist_lock: tokio::sync::Mutex::new(()),
        relists_started: std::sync::atomic::AtomicU64::new(0),
        relists_done: std::sync::atomic::AtomicU64::new(0),
        wakers: Mutex::new(HashMap::new()),
    });
    kubelet.relist().await;

    // Heartbeats: the Lease every 10 s, the status every minute.
    {
        let k = kubelet.clone();
        let mut sd = shutdown.clone();
        let (machine, node_config) = (machine.clone(), node_config.clone());
        tokio::spawn(async move {
            let mut lease = tokio::time::interval(Duration::from_secs(10));
            let mut status = tokio::time::interval(Duration::from_secs(60));
            status.tick().await;
            loop {
                tokio::select! {
                    _ = sd.changed() => return,
                    _ = lease.tick() => {
                        if let Err(e) = node::renew_lease(&k.client, &k.config.node_name, Duration::from_secs(40)).await {
                            tracing::warn!("lease: {e}");
                        }
                    }
                    _ = status.tick() => {
                        if let Err(e) = node::post_status(&k.client, &machine, &node_config).await {
                            tracing::warn!("node status: {e}");
                        }
                    }
                }
            }
        });
    }
    // The local-path volumes of this node: their directories go when the volumes do.
    tokio::spawn(crate::local_path::run(
        client.clone(),
        kubelet.config.node_name.clone(),
        shutdown.clone(),
    ));
    // The pod network: configured once the node has its pod CIDR, and routes to the others.
    if let Some(net) = kubelet.config.network.clone() {
        tokio::spawn(follow_pod_cidr(
            kubelet.clone(),
            net.clone(),
            machine.clone(),
            node_config.clone(),
            shutdown.clone(),
        ));
        tokio::spawn(net.run_routes(
            kubelet.client.clone(),
            kubelet.config.node_name.clone(),
            shutdown.clone(),
        ));
    }
    // Relist.
    {
        let k = kubelet.clone();
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = sd.changed() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                    _ = k.relist_now.notified() => {}
                }
                k.relist().await;
            }
        });
    }
    if kubelet.config.self_assign {
        tokio::spawn(self_assign(kubelet.clone(), shutdown.clone()));
    }
    if kubelet.config.runtime_status.is_err() {
        // A node without a runtime registers (NotReady, saying why) and runs nothing.
        let _ = shutdown.changed().await;
        return Ok(());
    }

    let pods: Api<Pod> = Api::all(client);
    let cfg =
        watcher::Config::default().fields(&format!("spec.nodeName={}", kubelet.config.node_name));
    let mut stream = watcher(pods, cfg).boxed();
    let mut workers: HashMap<String, watch::Sender<Option<Pod>>> = HashMap::new();
    let mut init_seen: Option<HashSet<String>> = None;
    loop {
        let ev = tokio::select! {
            _ = shutdown.changed() => return Ok(()),
            ev = stream.next() => ev,
        };
        let Some(ev) = ev else { return Ok(()) };
        match ev {
            Ok(watcher::Event::Init) => init_seen = Some(HashSet::new()),
            Ok(watcher::Event::InitApply(pod)) | Ok(watcher::Event::Apply(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(seen) = init_seen.as_mut() {
                    seen.insert(uid.clone());
                }
                match workers.get(&uid) {
                    Some(tx) if !tx.is_closed() => {
                        let _ = tx.send(Some(pod));
                    }
                    _ => {
                        let (tx, rx) = watch::channel(Some(pod));
                        workers.insert(uid.clone(), tx);
                        tokio::spawn(pod_worker(kubelet.clone(), uid, rx));
                    }
                }
            }
            Ok(watcher::Event::Delete(pod)) => {
                let uid = pod.metadata.uid.clone().unwrap_or_default();
                if let Some(tx) = workers.remove(&uid) {
                    let _ = tx.send(None);
                }
            }
            Ok(watcher::Event::InitDone) => {
                let seen = init_seen.take().unwrap_or_default();
                workers.retain(|uid, tx| {
                    if seen.contains(uid) {
                        true
                    } else {
                        let _ = tx.send(None);
                        false
                    }
                });
                // Containers of pods the API no longer has (deleted while the agent was away).
                let orphans: HashSet<String> = {
                    let snap = kubelet.snapshot.read().expect("snapshot lock");
                    snap.containers
                        .iter()
                        .filter_map(|c| c.labels.get(labels::POD_UID).cloned())
                        .chain(
                            snap.sandboxes
                                .iter()
                                .filter_map(|s| s.labels.get(labels::POD_UID).cloned()),
                        )
                        .filter(|uid| !seen.contains(uid))
                        .collect()
                };
                for uid in orphans {
                    let (tx, rx) = watch::channel(None);
                    drop(tx);
                    tokio::spawn(pod_worker(kubelet.clone(), uid, rx));
                }
            }
            Err(e) => {
                tracing::warn!("pod watch: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}

/// Binds pods that name no node to this node (the embedded agent, until a scheduler runs).
async fn self_assign(k: Arc<Kubelet>, mut shutdown: watch::Receiver<bool>) {
    let pods: Api<Pod> = Api::all(k.client.clone());
    let mut stream = watcher(pods, watcher::Config::default().fields("spec.nodeName=")).boxed();
    loop {
        let ev = tokio::select! {
            _ = shutdown.changed() => return,
            ev = stream.next() => ev,
        };
        let pod = match ev {
            Some(Ok(watcher::Event::Apply(p))) | Some(Ok(watcher::Event::InitApply(p))) => p,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tracing::warn!("unscheduled pod watch: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            None => return,
        };
        if pod.metadata.deletion_timestamp.is_some() {
            continue;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns},
            "target": {"apiVersion": "v1", "kind": "Node", "name": k.config.node_name}});
        let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
            .header("content-type", "application/json")
            .body(serde_json::to_vec(&body).unwrap_or_default())
            .expect("valid request");
        // Bind concurrently: a burst of new pods must not queue behind one another.
        let k = k.clone();
        tokio::spawn(async move {
            match k.client.request::<serde_json::Value>(req).await {
                Ok(_) => {
                    let rec = Recorder::new(k.client.clone(), "default-scheduler", "");
                    let msg = format!(
                        "Successfully assigned {ns}/{name} to {}",
                        k.config.node_name
                    );
                    rec.pod(&pod, None, "Normal", "Scheduled", &msg).await;
                }
                Err(e) => tracing::debug!("binding {ns}/{name}: {e}"),
            }
        });
    }
}

/// What a failed container start reports.
enum StartFailure {
    /// The container waits with this reason and message.
    Waiting(Waiting),
}

struct Worker {
    k: Arc<Kubelet>,
    uid: String,
    backoff: Backoff,
    image_backoff: Backoff,
    probes: HashMap<(String, Kind), ProbeState>,
    stopped: HashSet<String>,
    waiting: BTreeMap<String, Waiting>,
    volumes: Option<BTreeMap<String, PathBuf>>,
    volumes_synced: Option<Timestamp>,
    last_status: Option<serde_json::Value>,
    deleting: bool,
    /// A container start failed in this sync (config error, image, runtime): retry later,
    /// not at once.
    start_failed: bool,
    /// Per container name, the attempt whose back-off the BackOff event was recorded for.
    backoff_reported: HashMap<String, u32>,
    /// A DNS configuration problem found writing the pod's resolv.conf, to record as an event.
    dns_warning: Option<pod_files::DnsWarning>,
    /// The sandbox the DNS warning was last recorded for.
    dns_warned: Option<String>,
}

/// The hostPorts of a pod's containers, as the portmap plugin takes them.
fn host_ports(spec: &k8s_openapi::api::core::v1::PodSpec) -> Vec<crate::network::cni::PortMapping> {
    if spec.host_network.unwrap_or(false) {
        return Vec::new();
    }
    spec.containers
        .iter()
        .flat_map(|c| c.ports.iter().flatten())
        .filter_map(|p| {
            let host_port = u16::try_from(p.host_port?).ok().filter(|h| *h > 0)?;
            Some(crate::network::cni::PortMapping {
                host_port,
                container_port: u16::try_from(p.container_port).ok()?,
                protocol: p.protocol.as_deref().unwrap_or("TCP").to_lowercase(),
                host_ip: p.host_ip.clone().unwrap_or_default(),
            })
        })
        .collect()
}

/// Waits for the node's pod CIDR (assigned by the server's node IPAM
/// controller), configures the pod network for it and reports the node Ready.
async fn follow_pod_cidr(
    k: Arc<Kubelet>,
    net: Arc<crate::network::PodNetwork>,
    machine: Machine,
    node_config: NodeConfig,
    mut shutdown: watch::Receiver<bool>,
) {
    if !net.cluster().pod_network {
        return;
    }
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(k.client.clone());
    let cfg = watcher::Config::default().fields(&format!("metadata.name={}", k.config.node_name));
    let mut stream = watcher(nodes, cfg).boxed();
    loop {
        let event = tokio::select! {
            e = stream.next() => e,
            _ = shutdown.changed() => return,
        };
        let node = match event {
            None => return,
            Some(Ok(watcher::Event::Apply(n))) | Some(Ok(watcher::Event::InitApply(n))) => n,
            Some(Ok(_)) => continue,
            Some(Err(e)) => {
                tracing::debug!("node watch for the pod CIDR: {e}");
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        };
        let Some(cidr) = node
            .spec
            .as_ref()
            .and_then(|s| s.pod_cidr.as_deref())
            .and_then(crate::network::parse_cidr)
        else {
            continue;
        };
        let was_ready = net.ready().is_ok();
        match net.set_pod_cidr(cidr).await {
            Ok(()) if !was_ready => {
                tracing::info!("pod network ready on {}/{}", cidr.0, cidr.1);
                if let Err(e) = node::post_status(&k.client, &machine, &node_config).await {
                    tracing::warn!("node status: {e}");
                }
            }
            Ok(()) => {}
            Err(e) => tracing::warn!("configuring the pod network for {}/{}: {e}", cidr.0, cidr.1),
        }
    }
}

/// How long after a failed container start the worker tries again (the kubelet's
/// pod worker back-off period).
const START_RETRY: Duration = Duration::from_secs(10);

async fn pod_worker(k: Arc<Kubelet>, uid: String, mut rx: watch::Receiver<Option<Pod>>) {
    let notify = Arc::new(Notify::new());
    k.wakers
        .lock()
        .expect("wakers lock")
        .insert(uid.clone(), notify.clone());
    let mut w = Worker {
        backoff: Backoff::new(Duration::from_secs(10), k.config.crashloop_backoff_max),
        image_backoff: Backoff::new(Duration::from_secs(10), Duration::from_secs(300)),
        k: k.clone(),
        uid: uid.clone(),
        probes: HashMap::new(),
        stopped: HashSet::new(),
        waiting: BTreeMap::new(),
        volumes: None,
        volumes_synced: None,
        last_status: None,
        deleting: false,
        start_failed: false,
        backoff_reported: HashMap::new(),
        dns_warning: None,
        dns_warned: None,
    };
    loop {
        let pod = rx.borrow_and_update().clone();
        let Some(pod) = pod else {
            w.clean_up().await;
            break;
        };
        let next = w.sync(&pod).await;
        let sleep = next.map(|t| {
            let d = t.duration_since(Timestamp::now());
            Duration::from_millis(d.as_millis().clamp(50, 60_000) as u64)
        });
        tokio::select! {
            r = rx.changed() => {
                if r.is_err() && rx.borrow().is_some() {
                    // The informer went away (shutdown): leave containers running.
                    break;
                }
            }
            _ = notify.notified() => {}
            _ = tokio::time::sleep(sleep.unwrap_or(Duration::from_secs(10))) => {}
        }
    }
    k.wakers.lock().expect("wakers lock").remove(&uid);
}

impl Worker {
    fn probe_results(&self, observed: &ObservedPod) -> ProbeResults {
        let mut out = ProbeResults::new();
        for c in &observed.containers {
            let get = |kind| {
                self.probes
                    .get(&(c.id.clone(), kind))
                    .map(|p| match p.result {
                        probe::Result::Success => Some(ProbeResult::Success),
                        probe::Result::Failure => Some(ProbeResult::Failure),
                        probe::Result::Unknown => None,
                    })
            };
            out.insert(
                c.id.clone(),
                ContainerProbes {
                    liveness: get(Kind::Liveness).flatten(),
                    readiness: get(Kind::Readiness).flatten(),
                    startup: get(Kind::Startup).flatten(),
                },
            );
        }
        out
    }

    /// Runs due probes of running containers; returns when the next one is due.
    async fn run_probes(
        &mut self,
        pod: &Pod,
        observed: &ObservedPod,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let spec = pod.spec.as_ref()?;
        let all: Vec<&Container> = spec
            .init_containers
            .iter()
            .flatten()
            .filter(|c| plan::is_restartable(c))
            .chain(spec.containers.iter())
            .collect();
        let mut live_ids = HashSet::new();
        let mut next: Option<Timestamp> = None;
        let netns = observed.sandbox.as_ref().and_then(|s| s.netns.clone());
        for c in all {
            let Some(oc) = observed.newest(&c.name) else {
                continue;
            };
            let ContainerState::Running { started_at, .. } = oc.state else {
                continue;
            };
            live_ids.insert(oc.id.clone());
            for (kind, p) in [
                (Kind::Startup, &c.startup_probe),
                (Kind::Liveness, &c.liveness_probe),
                (Kind::Readiness, &c.readiness_probe),
            ] {
                let Some(p) = p else { continue };
                let key = (oc.id.clone(), kind);
                self.probes
                    .entry(key.clone())
                    .or_insert_with(|| ProbeState::new(kind, p.clone(), started_at));
                // Startup gates the others; a passed startup probe stops running.
                let startup_done = c.startup_probe.is_none()
                    || self
                        .probes
                        .get(&(oc.id.clone(), Kind::Startup))
                        .is_some_and(|s| s.result == probe::Result::Success);
                if (kind != Kind::Startup && !startup_done)
                    || (kind == Kind::Startup && startup_done)
                {
                    continue;
                }
                let state = self.probes.get(&key).expect("inserted");
                if !state.due(now) {
                    next = Some(next.map_or(state.next_run(), |n| n.min(state.next_run())));
                    continue;
                }
                let target = probe::Target {
                    netns: netns.clone(),
                    default_host: probe::LOOPBACK,
                };
                let outcome = probe::run(p, c, &oc.id, &target, self.k.runtime.as_ref()).await;
                let state = self.probes.get_mut(&key).expect("inserted");
                state.record(&outcome, Timestamp::now());
                if let probe::Outcome::Failure(msg) = &outcome {
                    let fp = format!("spec.containers{{{}}}", c.name);
                    self.k
                        .recorder
                        .pod(
                            pod,
                            Some(&fp),
                            "Warning",
                            "Unhealthy",
                            &format!("{} probe failed: {}", kind.title(), msg.trim_end()),
                        )
                        .await;
                }
                let nr = state.next_run();
                next = Some(next.map_or(nr, |n| n.min(nr)));
            }
        }
        self.probes.retain(|(id, _), _| live_ids.contains(id));
        next
    }

    async fn sync(&mut self, pod: &Pod) -> Option<Timestamp> {
        let now = Timestamp::now();
        let mut observed = self.k.observed(&self.uid, &self.stopped);
        let next_probe = self.run_probes(pod, &observed, now).await;
        let probes = self.probe_results(&observed);
        let plan = plan::compute_pod_actions(pod, &observed, &probes, &self.backoff, now);
        self.report_backoff(pod, &observed, &plan.waiting).await;
        self.start_failed = false;
        let mut acted = false;
        for action in &plan.actions {
            acted = true;
            self.act(pod, action, &mut observed).await;
        }
        if acted {
            self.k.relist().await;
            observed = self.k.observed(&self.uid, &self.stopped);
        }
        let probes = self.probe_results(&observed);
        let mut waiting = plan.waiting.clone();
        for (k, v) in &self.waiting {
            waiting.entry(k.clone()).or_insert_with(|| v.clone());
        }
        let host_network = pod
            .spec
            .as_ref()
            .and_then(|s| s.host_network)
            .unwrap_or(false);
        let addresses = Addresses {
            host_ip: Some(self.k.config.address.clone()),
            pod_ip: if host_network {
                Some(self.k.config.address.clone())
            } else {
                observed
                    .sandbox
                    .as_ref()
                    .and_then(|s| s.ip)
                    .map(|ip| ip.to_string())
            },
        };
        let new_status = status::pod_status(
            pod,
            &observed,
            &probes,
            &waiting,
            &addresses,
            Timestamp::now(),
        );
        let value = serde_json::to_value(&new_status).unwrap_or_default();
        let current = pod
            .status
            .as_ref()
            .and_then(|s| serde_json::to_value(s).ok());
        if Some(&value) != current.as_ref() && Some(&value) != self.last_status.as_ref() {
            let pods: Api<Pod> = Api::namespaced(
                self.k.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let name = pod.metadata.name.clone().unwrap_or_default();
            match pods
                .patch_status(
                    &name,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"status": value})),
                )
                .await
            {
                Ok(_) => self.last_status = Some(value),
                Err(e) => tracing::debug!("status of {name}: {e}"),
            }
        }
        if plan.finished && pod.metadata.deletion_timestamp.is_some() && !self.deleting {
            // Everything stopped: the kubelet finishes the deletion.
            self.deleting = true;
            let pods: Api<Pod> = Api::namespaced(
                self.k.client.clone(),
                pod.metadata.namespace.as_deref().unwrap_or("default"),
            );
            let dp = DeleteParams {
                grace_period_seconds: Some(0),
                preconditions: Some(Preconditions {
                    uid: pod.metadata.uid.clone(),
                    resource_version: None,
                }),
                ..Default::default()
            };
            if let Err(e) = pods
                .delete(pod.metadata.name.as_deref().unwrap_or(""), &dp)
                .await
            {
                tracing::debug!("finishing deletion: {e}");
                self.deleting = false;
            }
        }
        let mut next = plan.requeue_at;
        for t in [next_probe].into_iter().flatten() {
            next = Some(next.map_or(t, |n| n.min(t)));
        }
        if self.start_failed {
            // Retry a failed start after the worker back-off (runtime changes still wake us).
            let retry = Timestamp::now() + START_RETRY;
            next = Some(next.map_or(retry, |n| n.min(retry)));
        } else if observed
            .containers
            .iter()
            .any(|c| c.state == ContainerState::Created)
            || acted
        {
            // While something is starting or stopping, look again soon.
            let soon = Timestamp::now() + jiff::SignedDuration::from_millis(200);
            next = Some(next.map_or(soon, |n| n.min(soon)));
        }
        next
    }

    /// Records the kubelet's `BackOff` event once per crash-loop back-off a container enters.
    async fn report_backoff(
        &mut self,
        pod: &Pod,
        observed: &ObservedPod,
        waiting: &BTreeMap<String, Waiting>,
    ) {
        for (name, w) in waiting {
            if w.reason != "CrashLoopBackOff" {
                continue;
            }
            let attempt = observed.newest(name).map_or(0, |c| c.attempt);
            if self.backoff_reported.get(name) == Some(&attempt) {
                continue;
            }
            self.backoff_reported.insert(name.clone(), attempt);
            let meta = &pod.metadata;
            let msg = format!(
                "Back-off restarting failed container {name} in pod {}_{}({})",
                meta.name.as_deref().unwrap_or_default(),
                meta.namespace.as_deref().unwrap_or_default(),
                meta.uid.as_deref().unwrap_or_default(),
            );
            let fp = field_path(pod, name);
            self.k
                .recorder
                .pod(pod, fp.as_deref(), "Warning", "BackOff", &msg)
                .await;
        }
    }

    async fn act(&mut self, pod: &Pod, action: &Action, observed: &mut ObservedPod) {
        match action {
            Action::CreateSandbox { attempt } => {
                if let Some(old) = &observed.sandbox
                    && !old.id.is_empty()
                {
                    self.k
                        .recorder
                        .pod(
                            pod,
                            None,
                            "Normal",
                            "SandboxChanged",
                            "Pod sandbox changed, it will be killed and re-created.",
                        )
                        .await;
                }
                let spec = pod.spec.clone().unwrap_or_default();
                let name = pod.metadata.name.clone().unwrap_or_default();
                let hostname: String = spec
                    .hostname
                    .clone()
                    .unwrap_or_else(|| name.clone())
                    .chars()
                    .take(63)
                    .collect();
                let cfg = SandboxConfig {
                    pod_uid: self.uid.clone(),
                    pod_name: name,
                    pod_namespace: pod.metadata.namespace.clone().unwrap_or_default(),
                    hostname,
                    host_network: spec.host_network.unwrap_or(false),
                    attempt: *attempt,
                    ports: host_ports(&spec),
                };
                match self.k.runtime.create_sandbox(&cfg).await {
                    Ok(sb) => {
                        self.stopped.remove(&sb.id);
                        observed.sandbox = Some(sb);
                        observed.sandbox_ready = true;
                    }
                    Err(e) => {
                        self.k
                            .recorder
                            .pod(
                                pod,
                                None,
                                "Warning",
                                "FailedCreatePodSandBox",
                                &format!("Failed to create pod sandbox: {e}"),
                            )
                            .await;
                    }
                }
            }
            Action::KillPod { grace, .. } => {
                let running: Vec<ObservedContainer> = observed
                    .containers
                    .iter()
                    .filter(|c| {
                        matches!(
                            c.state,
                            ContainerState::Running { .. } | ContainerState::Created
                        )
                    })
                    .cloned()
                    .collect();
                let messages: Vec<String> = running
                    .iter()
                    .map(|c| format!("Stopping container {}", c.name))
                    .collect();
                let futs = running
                    .iter()
                    .zip(messages.iter())
                    .map(|(c, m)| self.stop(pod, c, *grace, m));
                futures::future::join_all(futs).await;
                if let Some(sb) = &observed.sandbox {
                    self.stopped.insert(sb.id.clone());
                }
            }
            Action::KillContainer {
                id, message, grace, ..
            } => {
                if let Some(c) = observed.containers.iter().find(|c| &c.id == id).cloned() {
                    self.stop(pod, &c, *grace, message).await;
                }
            }
            Action::StartInitContainer {
                index,
                attempt,
                backoff,
            }
            | Action::StartContainer {
                index,
                attempt,
                backoff,
            } => {
                let init = matches!(action, Action::StartInitContainer { .. });
                let spec = pod.spec.clone().unwrap_or_default();
                let c = if init {
                    spec.init_containers
                        .unwrap_or_default()
                        .get(*index)
                        .cloned()
                } else {
                    spec.containers.get(*index).cloned()
                };
                let Some(c) = c else { return };
                let Some(sb) = observed.sandbox.clone() else {
                    return;
                };
                match self.start(pod, &c, init, *attempt, &sb).await {
                    Ok(()) => {
                        self.waiting.remove(&c.name);
                        if let Some(b) = backoff {
                            self.backoff.next(&b.key, b.event_time, Timestamp::now());
                        }
                    }
                    Err(StartFailure::Waiting(wt)) => {
                        self.start_failed = true;
                        self.waiting.insert(c.name.clone(), wt);
                    }
                }
            }
            Action::RemoveContainer { id } => {
                let _ = self.k.runtime.remove_container(id).await;
            }
        }
    }

    async fn stop(&self, pod: &Pod, c: &ObservedContainer, grace: Duration, message: &str) {
        let fp = field_path(pod, &c.name);
        self.k
            .recorder
            .pod(pod, fp.as_deref(), "Normal", "Killing", message)
            .await;
        let started = Timestamp::now();
        // preStop runs inside the grace period.
        if let Some(spec) = find_container(pod, &c.name)
            && let Some(pre) = spec.lifecycle.as_ref().and_then(|l| l.pre_stop.as_ref())
            && let ContainerState::Running { .. } = c.state
        {
            self.run_handler(spec, &c.id, pre, grace).await;
        }
        let spent = Timestamp::now().duration_since(started).unsigned_abs();
        let left = grace.saturating_sub(spent).max(Duration::from_secs(2));
        if let Err(e) = self.k.runtime.stop_container(&c.id, left).await {
            tracing::warn!("stopping {}: {e}", c.id);
        }
    }

    async fn run_handler(
        &self,
        c: &Container,
        id: &str,
        h: &k8s_openapi::api::core::v1::LifecycleHandler,
        timeout: Duration,
    ) -> Option<String> {
        if let Some(exec) = &h.exec {
            let cmd = exec.command.clone().unwrap_or_default();
            return match self.k.runtime.exec_sync(id, &cmd, timeout).await {
                Ok(out) if out.exit_code == 0 => None,
                Ok(out) => Some(format!(
                    "command '{}' exited with {}: {}",
                    cmd.join(" "),
                    out.exit_code,
                    String::from_utf8_lossy(&out.stderr)
                )),
                Err(e) => Some(e.to_string()),
            };
        }
        if let Some(http) = &h.http_get {
            let p: k8s_openapi::api::core::v1::Probe = k8s_openapi::api::core::v1::Probe {
                http_get: Some(http.clone()),
                timeout_seconds: Some(timeout.as_secs().max(1) as i32),
                ..Default::default()
            };
            let netns = self
                .k
                .observed(&self.uid, &self.stopped)
                .sandbox
                .and_then(|s| s.netns);
            let target = probe::Target {
                netns,
                default_host: probe::LOOPBACK,
            };
            return match probe::run(&p, c, id, &target, self.k.runtime.as_ref()).await {
                probe::Outcome::Success => None,
                probe::Outcome::Failure(m) => Some(m),
            };
        }
        if let Some(sleep) = &h.sleep {
            tokio::time::sleep(Duration::from_secs(sleep.seconds.max(0) as u64).min(timeout)).await;
        }
        None
    }

    /// The image of a container, pulled as its pull policy says.
    async fn ensure_image(
        &mut self,
        pod: &Pod,
        fp: &str,
        image_name: &str,
        policy: &str,
    ) -> Result<crate::image::Image, StartFailure> {
        let local = self.k.images.resolve(image_name).ok();
        match (policy, local) {
            ("Never", Some(img)) | ("IfNotPresent", Some(img)) => {
                let msg = format!("Container image \"{image_name}\" already present on machine");
                self.k
                    .recorder
                    .pod(pod, Some(fp), "Normal", "Pulled", &msg)
                    .await;
                return Ok(img);
            }
            ("Never", None) => {
                let msg = format!(
                    "Container image \"{image_name}\" is not present with pull policy of Never"
                );
                self.k
                    .recorder
                    .pod(pod, Some(fp), "Warning", "ErrImageNeverPull", &msg)
                    .await;
                return Err(StartFailure::Waiting(Waiting {
                    reason: "ErrImageNeverPull".into(),
                    message: msg,
                }));
            }
            _ => {}
        }
        let key = format!("{}/{image_name}", self.uid);
        let now = Timestamp::now();
        if self.image_backoff.in_backoff(&key, now, now).is_some() {
            let msg = format!("Back-off pulling image \"{image_name}\"");
            self.k
                .recorder
                .pod(pod, Some(fp), "Normal", "BackOff", &msg)
                .await;
            return Err(StartFailure::Waiting(Waiting {
                reason: "ImagePullBackOff".into(),
                message: msg,
            }));
        }
        self.k
            .recorder
            .pod(
                pod,
                Some(fp),
                "Normal",
                "Pulling",
                &format!("Pulling image \"{image_name}\""),
            )
            .await;
        let creds = self.pull_credentials(pod, image_name).await;
        let started = std::time::Instant::now();
        match self
            .k
            .puller
            .pull(&self.k.images, image_name, creds.as_ref())
            .await
        {
            Ok(img) => {
                self.image_backoff.reset(&key);
                let took = started.elapsed();
                self.k
                    .recorder
                    .pod(
                        pod,
                        Some(fp),
                        "Normal",
                        "Pulled",
                        &format!(
                            "Successfully pulled image \"{image_name}\" in {:.3}s ({:.3}s including waiting). Image size: {} bytes.",
                            took.as_secs_f64(),
                            took.as_secs_f64(),
                            img.size
                        ),
                    )
                    .await;
                Ok(img)
            }
            Err(crate::image::pull::PullError::Network { .. })
                if self.k.images.resolve(image_name).is_ok() =>
            {
                // Always, but the registry is out of reach: an offline node runs the image it has, and says so.
                let img = self.k.images.resolve(image_name).expect("checked");
                self.k
                    .recorder
                    .pod(pod, Some(fp), "Warning", "Pulled", &format!("Registry unreachable; using container image \"{image_name}\" already present on machine"))
                    .await;
                Ok(img)
            }
            Err(e) => {
                self.image_backoff.next(&key, now, now);
                let msg = format!("Failed to pull image \"{image_name}\": {e}");
                self.k
                    .recorder
                    .pod(pod, Some(fp), "Warning", "Failed", &msg)
                    .await;
                self.k
                    .recorder
                    .pod(pod, Some(fp), "Warning", "Failed", "Error: ErrImagePull")
                    .await;
                Err(StartFailure::Waiting(Waiting {
                    reason: "ErrImagePull".into(),
                    message: msg,
                }))
            }
        }
    }

    /// Registry credentials for an image from the pod's imagePullSecrets.
    async fn pull_credentials(
        &self,
        pod: &Pod,
        image_name: &str,
    ) -> Option<crate::image::pull::Credentials> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = crate::image::reference::Reference::parse(image_name)
            .ok()?
            .name();
        let secrets: Api<Secret> = Api::namespaced(self.k.client.clone(), &ns);
        for r in pod.spec.as_ref()?.image_pull_secrets.iter().flatten() {
            let Ok(Some(s)) = secrets.get_opt(&r.name).await else {
                continue;
            };
            let data = s.data.unwrap_or_default();
            for key in [".dockerconfigjson", ".dockercfg"] {
                if let Some(bytes) = data.get(key)
                    && let Some(c) =
                        crate::image::pull::credentials_from_docker_config(&bytes.0, &name)
                {
                    return Some(c);
                }
            }
        }
        None
    }

    async fn start(
        &mut self,
        pod: &Pod,
        c: &Container,
        init: bool,
        attempt: u32,
        sb: &Sandbox,
    ) -> Result<(), StartFailure> {
        let fp = if init {
            format!("spec.initContainers{{{}}}", c.name)
        } else {
            format!("spec.containers{{{}}}", c.name)
        };
        let image_name = c.image.clone().unwrap_or_default();
        // Images, by pull policy.
        let policy = c.image_pull_policy.clone().unwrap_or_else(|| {
            skiff_api::defaults::image_pull_policy_default(&image_name).to_string()
        });
        let image = self.ensure_image(pod, &fp, &image_name, &policy).await?;
        // Volumes (once per sandbox, refreshed every minute for configMap/secret updates).
        let refresh = self
            .volumes_synced
            .is_none_or(|t| Timestamp::now().duration_since(t).as_secs() > 60);
        if self.volumes.is_none() || refresh {
            match self.set_up_volumes(pod).await {
                Ok(v) => {
                    self.volumes = Some(v);
                    self.volumes_synced = Some(Timestamp::now());
                }
                Err(msg) => {
                    self.k
                        .recorder
                        .pod(pod, None, "Warning", "FailedMount", &msg)
                        .await;
                    return Err(StartFailure::Waiting(Waiting {
                        reason: "ContainerCreating".into(),
                        message: msg,
                    }));
                }
            }
        }
        let env = match self.resolve_env(pod, c, sb.ip).await {
            Ok(e) => e,
            Err(msg) => {
                self.k
                    .recorder
                    .pod(
                        pod,
                        Some(&fp),
                        "Warning",
                        "Failed",
                        &format!("Error: {msg}"),
                    )
                    .await;
                return Err(StartFailure::Waiting(Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: msg,
                }));
            }
        };
        let spec = pod.spec.clone().unwrap_or_default();
        let process = spec::process(c, spec.security_context.as_ref(), &image.config, &env);
        let env_map: BTreeMap<String, String> = process
            .env
            .iter()
            .filter_map(|e| {
                e.split_once('=')
                    .map(|(k, v)| (k.to_string(), v.to_string()))
            })
            .collect();
        let mut mounts = match volume::container_mounts(
            c,
            self.volumes.as_ref().expect("set up"),
            &volume::read_only_volumes(pod),
            &env_map,
        ) {
            Ok(m) => m,
            Err(e) => {
                return Err(StartFailure::Waiting(Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message: e.to_string(),
                }));
            }
        };
        mounts.extend(self.pod_files(pod, c, attempt, sb.ip));
        if let Some(w) = self.dns_warning.take()
            && self.dns_warned.as_deref() != Some(sb.id.as_str())
        {
            // Once per sandbox, as the kubelet reports it when it makes one.
            self.dns_warned = Some(sb.id.clone());
            self.k
                .recorder
                .pod(pod, None, "Warning", w.reason, &w.message)
                .await;
        }
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let log_path = Kubelet::log_path(
            &self.k.config.data_dir,
            &ns,
            &name,
            &self.uid,
            &c.name,
            attempt,
        );
        let id = format!(
            "{}-{}-{attempt}-{:04x}",
            &self.uid[..self.uid.len().min(8)],
            c.name,
            Timestamp::now().subsec_nanosecond() & 0xffff
        );
        let mut l = BTreeMap::new();
        l.insert(labels::POD_UID.to_string(), self.uid.clone());
        l.insert(labels::POD_NAME.to_string(), name.clone());
        l.insert(labels::POD_NAMESPACE.to_string(), ns.clone());
        l.insert(labels::CONTAINER_NAME.to_string(), c.name.clone());
        l.insert(labels::ATTEMPT.to_string(), attempt.to_string());
        l.insert(labels::SANDBOX_ID.to_string(), sb.id.clone());
        l.insert(extra_labels::HASH.to_string(), plan::container_hash(c));
        l.insert(extra_labels::IMAGE.to_string(), image.reference.clone());
        l.insert(extra_labels::IMAGE_ID.to_string(), image.id.clone());
        let config = ContainerConfig {
            id: id.clone(),
            sandbox: sb.clone(),
            labels: l,
            layers: image.layers.clone(),
            process,
            mounts,
            resources: spec::resources(c),
            cgroup_parent: format!("/skiff/pod{}", self.uid),
            security: spec::security(c),
            log_path,
            stdin: c.stdin.unwrap_or(false),
            stdin_once: c.stdin_once.unwrap_or(false),
        };
        if let Err(e) = self.k.runtime.create_container(&config).await {
            let msg = e.to_string();
            self.k
                .recorder
                .pod(
                    pod,
                    Some(&fp),
                    "Warning",
                    "Failed",
                    &format!("Error: {msg}"),
                )
                .await;
            return Err(StartFailure::Waiting(Waiting {
                reason: "CreateContainerError".into(),
                message: msg,
            }));
        }
        self.k
            .recorder
            .pod(
                pod,
                Some(&fp),
                "Normal",
                "Created",
                &format!("Created container: {}", c.name),
            )
            .await;
        if let Err(e) = self.k.runtime.start_container(&id).await {
            let msg = e.to_string();
            self.k
                .recorder
                .pod(
                    pod,
                    Some(&fp),
                    "Warning",
                    "Failed",
                    &format!("Error: {msg}"),
                )
                .await;
            return Err(StartFailure::Waiting(Waiting {
                reason: "RunContainerError".into(),
                message: msg,
            }));
        }
        self.k
            .recorder
            .pod(
                pod,
                Some(&fp),
                "Normal",
                "Started",
                &format!("Started container {}", c.name),
            )
            .await;
        if let Some(post) = c.lifecycle.as_ref().and_then(|l| l.post_start.as_ref())
            && let Some(err) = self
                .run_handler(c, &id, post, Duration::from_secs(30))
                .await
        {
            tracing::debug!("postStart of {}: {err}", c.name);
            self.k
                .recorder
                .pod(
                    pod,
                    Some(&fp),
                    "Warning",
                    "FailedPostStartHook",
                    "PostStartHook failed",
                )
                .await;
            let _ = self
                .k
                .runtime
                .stop_container(&id, Duration::from_secs(2))
                .await;
        }
        Ok(())
    }

    /// /etc/hosts, /etc/hostname, /etc/resolv.conf and the termination-log file.
    fn pod_files(
        &mut self,
        pod: &Pod,
        c: &Container,
        attempt: u32,
        pod_ip: Option<std::net::Ipv4Addr>,
    ) -> Vec<Mount> {
        let dir = self.k.pod_dir(&self.uid);
        let _ = std::fs::create_dir_all(&dir);
        let spec = pod.spec.clone().unwrap_or_default();
        let name = pod.metadata.name.clone().unwrap_or_default();
        let hostname: String = spec
            .hostname
            .clone()
            .unwrap_or_else(|| name.clone())
            .chars()
            .take(63)
            .collect();
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let dns = self.k.cluster_dns();
        let domain = dns.as_ref().map_or("cluster.local", |d| d.domain.as_str());
        let host_hosts = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
        let hosts = pod_files::hosts_file(&spec, &ns, &hostname, pod_ip, domain, &host_hosts);
        let _ = std::fs::write(dir.join("etc-hosts"), hosts);
        let _ = std::fs::write(dir.join("etc-hostname"), format!("{hostname}\n"));
        let host_resolv = pod_files::ResolvConf::parse(
            &std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default(),
        );
        let resolv = if self.k.config.network.is_some() {
            let (conf, warning) = pod_files::resolv_conf(&spec, &ns, dns.as_ref(), &host_resolv);
            self.dns_warning = warning;
            conf.render()
        } else {
            // Without a managed network the pod resolves as its node does.
            host_resolv.render()
        };
        let _ = std::fs::write(dir.join("resolv.conf"), resolv);
        let term = dir
            .join("containers")
            .join(&c.name)
            .join(format!("{attempt}-termination-log"));
        if let Some(p) = term.parent() {
            let _ = std::fs::create_dir_all(p);
        }
        let _ = std::fs::write(&term, b"");
        let bind = |src: PathBuf, dst: &str| Mount {
            destination: dst.to_string(),
            source: src.to_string_lossy().into_owned(),
            kind: "bind".into(),
            options: vec!["rbind".into(), "rprivate".into()],
        };
        let mut m = vec![
            bind(dir.join("etc-hosts"), "/etc/hosts"),
            bind(dir.join("etc-hostname"), "/etc/hostname"),
            bind(dir.join("resolv.conf"), "/etc/resolv.conf"),
        ];
        if let Some(tp) = c
            .termination_message_path
            .as_deref()
            .filter(|p| !p.is_empty())
        {
            m.push(bind(term, tp));
        }
        m
    }

    async fn set_up_volumes(&self, pod: &Pod) -> Result<BTreeMap<String, PathBuf>, String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        let spec = pod.spec.clone().unwrap_or_default();
        let mut sources = volume::Sources::default();
        let cms: Api<ConfigMap> = Api::namespaced(self.k.client.clone(), &ns);
        let secrets: Api<Secret> = Api::namespaced(self.k.client.clone(), &ns);
        let mut cm_names = Vec::new();
        let mut secret_names = Vec::new();
        for v in spec.volumes.iter().flatten() {
            if let Some(cm) = &v.config_map {
                cm_names.push(cm.name.clone());
            }
            if let Some(s) = &v.secret {
                secret_names.push(s.secret_name.clone().unwrap_or_default());
            }
            for src in v.projected.iter().flat_map(|p| p.sources.iter().flatten()) {
                if let Some(cm) = &src.config_map {
                    cm_names.push(cm.name.clone());
                }
                if let Some(s) = &src.secret {
                    secret_names.push(s.name.clone());
                }
            }
        }
        for n in cm_names {
            if let Ok(Some(cm)) = cms.get_opt(&n).await {
                let mut data: BTreeMap<String, Vec<u8>> = cm
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.into_bytes()))
                    .collect();
                data.extend(
                    cm.binary_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.0)),
                );
                sources.config_maps.insert(n, data);
            }
        }
        for n in secret_names {
            if let Ok(Some(s)) = secrets.get_opt(&n).await {
                let mut data: BTreeMap<String, Vec<u8>> = s
                    .data
                    .unwrap_or_default()
                    .into_iter()
                    .map(|(k, v)| (k, v.0))
                    .collect();
                data.extend(
                    s.string_data
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(k, v)| (k, v.into_bytes())),
                );
                sources.secrets.insert(n, data);
            }
        }
        // Claims, and the volumes they are bound to.
        let claims: Api<PersistentVolumeClaim> = Api::namespaced(self.k.client.clone(), &ns);
        let pvs: Api<PersistentVolume> = Api::all(self.k.client.clone());
        for v in spec.volumes.iter().flatten() {
            let Some(name) = volume::claim_name(pod, v) else {
                continue;
            };
            let Ok(Some(pvc)) = claims.get_opt(&name).await else {
                continue;
            };
            let pv_name = pvc
                .spec
                .as_ref()
                .and_then(|s| s.volume_name.clone())
                .unwrap_or_default();
            if !pv_name.is_empty()
                && let Ok(Some(pv)) = pvs.get_opt(&pv_name).await
            {
                sources.persistent_volumes.insert(pv_name, pv);
            }
            sources.claims.insert(name, pvc);
        }
        let dir = self.k.pod_dir(&self.uid);
        let mut out = BTreeMap::new();
        for v in spec.volumes.iter().flatten() {
            match volume::set_up(pod, &dir, v, &sources) {
                Ok(p) => {
                    out.insert(v.name.clone(), p);
                }
                Err(e @ volume::VolumeError::Claim { .. }) => {
                    // The volume manager's words when it cannot process a claim.
                    return Err(format!(
                        "Unable to attach or mount volumes: unmounted volumes=[{n}], \
                         unattached volumes=[], failed to process volumes=[{n}]: {e}",
                        n = v.name
                    ));
                }
                Err(e) => {
                    return Err(format!(
                        "MountVolume.SetUp failed for volume \"{}\" : {e}",
                        v.name
                    ));
                }
            }
        }
        Ok(out)
    }

    /// The values of a ConfigMap (`data`) or Secret (`data`, decoded) as the
    /// environment sees them; None when the object does not exist.
    async fn env_source(
        &self,
        ns: &str,
        kind: EnvSource,
        name: &str,
    ) -> Result<Option<BTreeMap<String, String>>, String> {
        match kind {
            EnvSource::ConfigMap => Api::<ConfigMap>::namespaced(self.k.client.clone(), ns)
                .get_opt(name)
                .await
                .map(|o| o.map(|cm| cm.data.unwrap_or_default()))
                .map_err(|e| e.to_string()),
            EnvSource::Secret => Api::<Secret>::namespaced(self.k.client.clone(), ns)
                .get_opt(name)
                .await
                .map(|o| {
                    o.map(|s| {
                        s.data
                            .unwrap_or_default()
                            .into_iter()
                            .map(|(k, v)| (k, String::from_utf8_lossy(&v.0).into_owned()))
                            .collect()
                    })
                })
                .map_err(|e| e.to_string()),
        }
    }

    /// The container's environment as (name, value), resolving valueFrom and envFrom.
    async fn resolve_env(
        &self,
        pod: &Pod,
        c: &Container,
        pod_ip: Option<std::net::Ipv4Addr>,
    ) -> Result<Vec<(String, String)>, String> {
        let ns = pod.metadata.namespace.clone().unwrap_or_default();
        // A source that is missing is an error unless the reference is optional.
        let required = |kind: EnvSource,
                        name: &str,
                        optional: Option<bool>,
                        found: Option<BTreeMap<String, String>>| match found
        {
            Some(m) => Ok(Some(m)),
            None if optional == Some(true) => Ok(None),
            None => Err(format!("{} \"{name}\" not found", kind.noun())),
        };
        let mut out: Vec<(String, String)> = Vec::new();
        for ef in c.env_from.iter().flatten() {
            let prefix = ef.prefix.clone().unwrap_or_default();
            let refs = [
                ef.config_map_ref
                    .as_ref()
                    .map(|r| (EnvSource::ConfigMap, r.name.as_str(), r.optional)),
                ef.secret_ref
                    .as_ref()
                    .map(|r| (EnvSource::Secret, r.name.as_str(), r.optional)),
            ];
            for (kind, name, optional) in refs.into_iter().flatten() {
                let found = self.env_source(&ns, kind, name).await?;
                if let Some(m) = required(kind, name, optional, found)? {
                    out.extend(m.into_iter().map(|(k, v)| (format!("{prefix}{k}"), v)));
                }
            }
        }
        for e in c.env.iter().flatten() {
            if let Some(v) = &e.value {
                out.push((e.name.clone(), v.clone()));
                continue;
            }
            let Some(vf) = &e.value_from else {
                out.push((e.name.clone(), String::new()));
                continue;
            };
            if let Some(f) = &vf.field_ref {
                let host_network = pod
                    .spec
                    .as_ref()
                    .and_then(|s| s.host_network)
                    .unwrap_or(false);
                let v = match f.field_path.as_str() {
                    "status.hostIP" | "status.hostIPs" => self.k.config.address.clone(),
                    "status.podIP" | "status.podIPs" if host_network => {
                        self.k.config.address.clone()
                    }
                    "status.podIP" | "status.podIPs" => {
                        pod_ip.map(|ip| ip.to_string()).unwrap_or_default()
                    }
                    "spec.nodeName" => self.k.config.node_name.clone(),
                    p => volume::field_path_value(pod, p).unwrap_or_default(),
                };
                out.push((e.name.clone(), v));
                continue;
            }
            if let Some(r) = &vf.resource_field_ref {
                let cname = r.container_name.clone().unwrap_or_else(|| c.name.clone());
                let divisor = r.divisor.as_ref().map(|d| d.0.as_str());
                let v = volume::resource_field_value(pod, Some(&cname), &r.resource, divisor)
                    .unwrap_or_default();
                out.push((e.name.clone(), v));
                continue;
            }
            let key_ref = vf
                .config_map_key_ref
                .as_ref()
                .map(|r| {
                    (
                        EnvSource::ConfigMap,
                        r.name.as_str(),
                        r.key.as_str(),
                        r.optional,
                    )
                })
                .or_else(|| {
                    vf.secret_key_ref.as_ref().map(|r| {
                        (
                            EnvSource::Secret,
                            r.name.as_str(),
                            r.key.as_str(),
                            r.optional,
                        )
                    })
                });
            if let Some((kind, name, key, optional)) = key_ref {
                let found = self.env_source(&ns, kind, name).await?;
                let Some(values) = required(kind, name, optional, found)? else {
                    continue;
                };
                match values.get(key) {
                    Some(v) => out.push((e.name.clone(), v.clone())),
                    None if optional == Some(true) => {}
                    None => {
                        return Err(format!(
                            "couldn't find key {key} in {} {ns}/{name}",
                            kind.kind()
                        ));
                    }
                }
            }
        }
        for (k, v) in self.k.service_env(pod).await {
            if !out.iter().any(|(n, _)| *n == k) {
                out.push((k, v));
            }
        }
        Ok(out)
    }

    /// The pod is gone from the API: stop and remove everything of it.
    async fn clean_up(&mut self) {
        let observed = self.k.observed(&self.uid, &self.stopped);
        for c in &observed.containers {
            if matches!(
                c.state,
                ContainerState::Running { .. } | ContainerState::Created
            ) {
                let _ = self
                    .k
                    .runtime
                    .stop_container(&c.id, Duration::from_secs(2))
                    .await;
            }
            let _ = self.k.runtime.remove_container(&c.id).await;
        }
        let sandboxes: Vec<Sandbox> = {
            let snap = self.k.snapshot.read().expect("snapshot lock");
            snap.sandboxes
                .iter()
                .filter(|s| s.labels.get(labels::POD_UID) == Some(&self.uid))
                .cloned()
                .collect()
        };
        for sb in sandboxes {
            let _ = self.k.runtime.remove_sandbox(&sb.id).await;
        }
        volume::tear_down(&self.k.pod_dir(&self.uid));
        let _ = remove_pod_cgroups(&self.uid);
        self.k.relist_now.notify_one();
    }
}

/// Where an environment variable's value comes from.
#[derive(Debug, Clone, Copy)]
enum EnvSource {
    ConfigMap,
    Secret,
}

impl EnvSource {
    /// As "not found" messages name it.
    fn noun(self) -> &'static str {
        match self {
            EnvSource::ConfigMap => "configmap",
            EnvSource::Secret => "secret",
        }
    }

    /// As "couldn't find key" messages name it.
    fn kind(self) -> &'static str {
        match self {
            EnvSource::ConfigMap => "ConfigMap",
            EnvSource::Secret => "Secret",
        }
    }
}

fn find_container<'a>(pod: &'a Pod, name: &str) -> Option<&'a Container> {
    let spec = pod.spec.as_ref()?;
    spec.containers
        .iter()
        .chain(spec.init_containers.iter().flatten())
        .find(|c| c.name == name)
}

fn field_path(pod: &Pod, name: &str) -> Option<String> {
    let spec = pod.spec.as_ref()?;
    if spec
        .init_containers
        .iter()
        .flatten()
        .any(|c| c.name == name)
    {
        Some(format!("spec.initContainers{{{name}}}"))
    } else {
        Some(format!("spec.containers{{{name}}}"))
    }
}

/// Removes the pod's cgroup directories (cgroup v1 hierarchies) once its containers are gone.
fn remove_pod_cgroups(uid: &str) -> std::io::Result<()> {
    for entry in std::fs::read_dir("/sys/fs/cgroup")? {
        let dir = entry?.path().join("skiff").join(format!("pod{uid}"));
        if dir.is_dir() {
            if let Ok(children) = std::fs::read_dir(&dir) {
                for c in children.flatten() {
                    if c.path().is_dir() {
                        let _ = std::fs::remove_dir(c.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(&dir);
        }
    }
    Ok(())
}
