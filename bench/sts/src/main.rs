//! `skiff-bench-sts`: a benchmark (not a test) of StatefulSets with volumes
//! and of local-path PersistentVolume provisioning on real runc.
//!
//! Run it through `bench/sts/run.sh`, which puts it in a private network
//! namespace (`unshare --net`, loopback up) so that the host's links, routes
//! and nftables are never touched. Inside, it starts `skiff server` with its
//! embedded agent, default networking and `--default-local-storage-path
//! <temp>/storage`, imports the busybox image built by
//! `scripts/build-busybox-image.sh`, and measures:
//!
//! 1. StatefulSets: a headless Service `web` and a StatefulSet `web` of busybox
//!    `httpd -f -p 8080` pods (readiness probe tcpSocket 8080, periodSeconds 1)
//!    with one volumeClaimTemplate `data` (1Gi, default class `local-path`,
//!    WaitForFirstConsumer), for replicas 3 and 10 × podManagementPolicy
//!    OrderedReady and Parallel: the time from the create call to
//!    `status.readyReplicas == replicas`, the API polled every 50 ms. Each
//!    run uses fresh objects: the StatefulSet, its pods and claims are
//!    deleted and the volumes and their directories waited out in between.
//! 2. Provisioning: `--claims` times a standalone claim on the default class
//!    and then a pod using it; from the pod's create call to the claim's
//!    `volume.kubernetes.io/selected-node` annotation, to the claim Bound and
//!    to the pod Running (polled every 20 ms). Then `--claims` claims of a
//!    class `local-path-immediate` (provisioner `skiff.io/local-path`,
//!    volumeBindingMode Immediate): create → Bound.
//!
//! At the end, also on errors, Ctrl-C and SIGTERM, it deletes its
//! StatefulSets, pods and claims and waits (bounded) for the volumes to go
//! (the agent removes their directories), stops the server, force-deletes
//! any runc container left, unmounts whatever is still mounted under its temp
//! dir and removes it.

use anyhow::{Result, bail};
use k8s_openapi::api::apps::v1::StatefulSet;
use k8s_openapi::api::core::v1::{Node, PersistentVolume, PersistentVolumeClaim, Pod, Service};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use skiff_bench_common::{
    Proc, Signals, TempDir, block_on_with_signals, check_built, check_repo_root, exe_dir, flags,
    force_cleanup, max, median, ms, node_ready, pod_ready, pod_running, poll_while_up, positive,
    private_skiff_with_busybox, start_server, unknown,
};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// How often the StatefulSet phase polls the API (as the task asks).
const STS_POLL: Duration = Duration::from_millis(50);
/// How often the provisioning phase polls the API.
const CLAIM_POLL: Duration = Duration::from_millis(20);
/// The claim annotation the scheduler writes for WaitForFirstConsumer.
const SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The Immediate class this benchmark creates.
const IMMEDIATE_CLASS: &str = "local-path-immediate";
/// The readiness probe period of the StatefulSet's pods, in seconds.
const PROBE_PERIOD_S: i32 = 1;

/// Run parameters.
#[derive(Debug, Clone, PartialEq)]
struct Opts {
    skiff: PathBuf,
    runs: usize,
    claims: usize,
    timeout_s: u64,
}

const USAGE: &str = "usage: skiff-bench-sts [--skiff PATH] [--runs K] [--claims N] [--timeout S]";

impl Opts {
    fn parse(args: &[String], default_skiff: PathBuf) -> Result<Opts> {
        let mut o = Opts {
            skiff: default_skiff,
            runs: 3,
            claims: 10,
            timeout_s: 1800,
        };
        for f in flags(args, USAGE, &[])? {
            match f.name {
                "--skiff" => o.skiff = PathBuf::from(f.value),
                "--runs" => o.runs = positive(f)?,
                "--claims" => o.claims = positive(f)?,
                "--timeout" => o.timeout_s = positive(f)? as u64,
                _ => return Err(unknown(f, USAGE)),
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- pure helpers

/// The StatefulSet shapes measured, in order: (replicas, podManagementPolicy).
const CASES: [(i32, &str); 4] = [
    (3, "OrderedReady"),
    (3, "Parallel"),
    (10, "OrderedReady"),
    (10, "Parallel"),
];

/// The headless Service the StatefulSet names (`clusterIP: None`).
fn headless_service_json() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "web"},
        "spec": {
            "clusterIP": "None",
            "selector": {"app": "web"},
            "ports": [{"name": "http", "port": 8080}],
        },
    })
}

/// StatefulSet `web`: busybox httpd pods, Ready by a tcpSocket probe every
/// [`PROBE_PERIOD_S`], each with a 1Gi claim `data` of the default class.
fn statefulset_json(replicas: i32, policy: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "StatefulSet",
        "metadata": {"name": "web"},
        "spec": {
            "serviceName": "web",
            "replicas": replicas,
            "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "terminationGracePeriodSeconds": 1,
                    "containers": [{
                        "name": "httpd",
                        "image": "busybox:latest",
                        "imagePullPolicy": "IfNotPresent",
                        "command": ["httpd", "-f", "-p", "8080", "-h", "/data"],
                        "ports": [{"name": "http", "containerPort": 8080}],
                        "readinessProbe": {
                            "tcpSocket": {"port": 8080},
                            "periodSeconds": PROBE_PERIOD_S,
                        },
                        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                    }],
                },
            },
            "volumeClaimTemplates": [{
                "metadata": {"name": "data"},
                "spec": {
                    "accessModes": ["ReadWriteOnce"],
                    "resources": {"requests": {"storage": "1Gi"}},
                },
            }],
        },
    })
}

/// A 1Gi ReadWriteOnce claim; `class` None means the default class.
fn claim_json(name: &str, class: Option<&str>) -> serde_json::Value {
    let mut c = serde_json::json!({
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "labels": {"bench": "claim"}},
        "spec": {
            "accessModes": ["ReadWriteOnce"],
            "resources": {"requests": {"storage": "1Gi"}},
        },
    });
    if let Some(class) = class {
        c["spec"]["storageClassName"] = class.into();
    }
    c
}

/// A busybox pod sleeping with claim `claim` mounted at /data.
fn claim_pod_json(name: &str, claim: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"bench": "claim"}},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [{
                "name": "main",
                "image": "busybox:latest",
                "imagePullPolicy": "IfNotPresent",
                "command": ["sleep", "3600"],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            }],
            "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}],
        },
    })
}

/// The Immediate local-path class.
fn immediate_class_json() -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {"name": IMMEDIATE_CLASS},
        "provisioner": "skiff.io/local-path",
        "volumeBindingMode": "Immediate",
        "reclaimPolicy": "Delete",
    })
}

/// The StatefulSet's ready replicas (0 without a status).
fn ready_replicas(s: &StatefulSet) -> i32 {
    s.status
        .as_ref()
        .and_then(|st| st.ready_replicas)
        .unwrap_or(0)
}

/// Whether the claim carries the scheduler's selected-node annotation.
fn has_selected_node(c: &PersistentVolumeClaim) -> bool {
    c.metadata
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(SELECTED_NODE))
}

/// Whether the claim's phase is Bound.
fn claim_bound(c: &PersistentVolumeClaim) -> bool {
    c.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Bound")
}

/// Whether the default StorageClass is there (annotation
/// `storageclass.kubernetes.io/is-default-class: "true"`).
fn is_default_class(c: &StorageClass) -> bool {
    c.metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get("storageclass.kubernetes.io/is-default-class"))
        .is_some_and(|v| v == "true")
}

// ------------------------------------------------------------------ processes

/// The entries of the storage directory (volume directories left).
fn storage_entries(storage: &Path) -> usize {
    std::fs::read_dir(storage).map_or(0, |d| d.count())
}

/// The typed APIs of the default namespace and the cluster.
struct Apis {
    sts: Api<StatefulSet>,
    pods: Api<Pod>,
    claims: Api<PersistentVolumeClaim>,
    volumes: Api<PersistentVolume>,
    services: Api<Service>,
    classes: Api<StorageClass>,
    nodes: Api<Node>,
}

impl Apis {
    fn new(c: &kube::Client) -> Apis {
        Apis {
            sts: Api::default_namespaced(c.clone()),
            pods: Api::default_namespaced(c.clone()),
            claims: Api::default_namespaced(c.clone()),
            volumes: Api::all(c.clone()),
            services: Api::default_namespaced(c.clone()),
            classes: Api::all(c.clone()),
            nodes: Api::all(c.clone()),
        }
    }
}

/// Deletes the StatefulSet, every pod and claim of the namespace, then waits
/// until the pods, claims and volumes are gone and the storage directory is
/// empty (the agent removed the volume directories).
async fn teardown(apis: &Apis, storage: &Path, server: &mut Proc) -> Result<()> {
    let _ = apis.sts.delete("web", &DeleteParams::background()).await;
    let lp = ListParams::default();
    apis.pods
        .delete_collection(&DeleteParams::default(), &lp)
        .await?;
    apis.claims
        .delete_collection(&DeleteParams::default(), &lp)
        .await?;
    poll_while_up(
        "StatefulSet, pods, claims, volumes and their directories gone",
        Duration::from_millis(100),
        Duration::from_secs(180),
        server,
        || async {
            let sts = apis.sts.list(&lp).await?.items.len();
            let pods = apis.pods.list(&lp).await?.items.len();
            let claims = apis.claims.list(&lp).await?.items.len();
            let pvs = apis.volumes.list(&lp).await?.items.len();
            // A StatefulSet still being deleted may recreate a pod: keep deleting.
            if pods > 0 && sts == 0 {
                let _ = apis
                    .pods
                    .delete_collection(&DeleteParams::default(), &lp)
                    .await;
            }
            if claims > 0 && pods == 0 {
                let _ = apis
                    .claims
                    .delete_collection(&DeleteParams::default(), &lp)
                    .await;
            }
            Ok((sts + pods + claims + pvs == 0 && storage_entries(storage) == 0).then_some(()))
        },
    )
    .await
}

// ---------------------------------------------------------------- measuring

/// One StatefulSet run.
#[derive(Debug, Clone)]
struct StsRun {
    replicas: i32,
    policy: &'static str,
    ready_ms: f64,
}

/// One WaitForFirstConsumer claim: from the pod's create call.
#[derive(Debug, Clone)]
struct WffcClaim {
    selected_ms: f64,
    bound_ms: f64,
    running_ms: f64,
}

/// Everything measured.
#[derive(Debug, Default)]
struct Figures {
    sts: Vec<StsRun>,
    wffc: Vec<WffcClaim>,
    immediate_ms: Vec<f64>,
}

async fn measure(
    opts: &Opts,
    apis: &Apis,
    storage: &Path,
    server: &mut Proc,
    fig: &mut Figures,
) -> Result<()> {
    let pp = PostParams::default();
    poll_while_up(
        "node Ready and the default StorageClass",
        Duration::from_millis(100),
        Duration::from_secs(120),
        server,
        || async {
            let lp = ListParams::default();
            let nodes = apis.nodes.list(&lp).await?.items;
            let classes = apis.classes.list(&lp).await?.items;
            Ok(
                (nodes.iter().any(node_ready) && classes.iter().any(is_default_class))
                    .then_some(()),
            )
        },
    )
    .await?;
    apis.services
        .create(&pp, &serde_json::from_value(headless_service_json())?)
        .await?;

    // A warm-up StatefulSet, not counted: the first pods pay for the image
    // unpack and the first CNI set-up.
    println!("  warm-up: 1 replica");
    let warm: StatefulSet = serde_json::from_value(statefulset_json(1, "OrderedReady"))?;
    apis.sts.create(&pp, &warm).await?;
    poll_while_up(
        "warm-up StatefulSet Ready",
        STS_POLL,
        Duration::from_secs(180),
        server,
        || async { Ok((ready_replicas(&apis.sts.get("web").await?) == 1).then_some(())) },
    )
    .await?;
    teardown(apis, storage, server).await?;

    for run in 0..opts.runs {
        for (replicas, policy) in CASES {
            let sts: StatefulSet = serde_json::from_value(statefulset_json(replicas, policy))?;
            let start = Instant::now();
            apis.sts.create(&pp, &sts).await?;
            let ready = poll_while_up(
                &format!("{replicas} replicas ({policy}) Ready"),
                STS_POLL,
                Duration::from_secs(600),
                server,
                || async {
                    let s = apis.sts.get("web").await?;
                    Ok((ready_replicas(&s) >= replicas).then(|| start.elapsed()))
                },
            )
            .await?;
            check_complete(apis, replicas).await?;
            println!(
                "  run {}/{}: {replicas:>2} replicas {policy:<12} Ready in {:>8.0} ms",
                run + 1,
                opts.runs,
                ms(ready)
            );
            fig.sts.push(StsRun {
                replicas,
                policy,
                ready_ms: ms(ready),
            });
            teardown(apis, storage, server).await?;
        }
    }

    // WaitForFirstConsumer: claim first, then the pod; times from the pod's create.
    for i in 0..opts.claims {
        let claim = format!("wffc-{i}");
        apis.claims
            .create(&pp, &serde_json::from_value(claim_json(&claim, None))?)
            .await?;
        let pod: Pod = serde_json::from_value(claim_pod_json(&format!("use-{i}"), &claim))?;
        let start = Instant::now();
        apis.pods.create(&pp, &pod).await?;
        let selected = Cell::new(None::<Duration>);
        let bound = Cell::new(None::<Duration>);
        let pod_name = format!("use-{i}");
        let running = poll_while_up(
            &format!("claim {claim} bound and its pod Running"),
            CLAIM_POLL,
            Duration::from_secs(120),
            server,
            || async {
                let pvc = apis.claims.get(&claim).await?;
                let now = start.elapsed();
                if selected.get().is_none() && has_selected_node(&pvc) {
                    selected.set(Some(now));
                }
                if bound.get().is_none() && claim_bound(&pvc) {
                    bound.set(Some(now));
                }
                let p = apis.pods.get(&pod_name).await?;
                Ok(pod_running(&p).then(|| start.elapsed()))
            },
        )
        .await?;
        let c = WffcClaim {
            selected_ms: selected.get().map_or(f64::NAN, ms),
            bound_ms: bound.get().map_or(f64::NAN, ms),
            running_ms: ms(running),
        };
        println!(
            "  WaitForFirstConsumer claim {}/{}: selected-node {:.0} ms, Bound {:.0} ms, pod Running {:.0} ms",
            i + 1,
            opts.claims,
            c.selected_ms,
            c.bound_ms,
            c.running_ms
        );
        fig.wffc.push(c);
    }
    teardown(apis, storage, server).await?;

    // Immediate: create → Bound.
    apis.classes
        .create(&pp, &serde_json::from_value(immediate_class_json())?)
        .await?;
    for i in 0..opts.claims {
        let claim = format!("imm-{i}");
        let pvc: PersistentVolumeClaim =
            serde_json::from_value(claim_json(&claim, Some(IMMEDIATE_CLASS)))?;
        let start = Instant::now();
        apis.claims.create(&pp, &pvc).await?;
        let t = poll_while_up(
            &format!("claim {claim} Bound"),
            CLAIM_POLL,
            Duration::from_secs(60),
            server,
            || async {
                let c = apis.claims.get(&claim).await?;
                Ok(claim_bound(&c).then(|| start.elapsed()))
            },
        )
        .await?;
        println!(
            "  Immediate claim {}/{}: Bound {:.0} ms",
            i + 1,
            opts.claims,
            ms(t)
        );
        fig.immediate_ms.push(ms(t));
    }
    teardown(apis, storage, server).await?;
    Ok(())
}

/// Checks, outside the timed part, that what the StatefulSet's status
/// claims holds: `replicas` pods labelled `app=web` Ready, each with its
/// claim `data-web-N` Bound.
async fn check_complete(apis: &Apis, replicas: i32) -> Result<()> {
    let pods = apis
        .pods
        .list(&ListParams::default().labels("app=web"))
        .await?
        .items;
    let ready = pods.iter().filter(|p| pod_ready(p)).count();
    let claims = apis.claims.list(&ListParams::default()).await?.items;
    let bound = claims
        .iter()
        .filter(|c| {
            c.metadata
                .name
                .as_deref()
                .is_some_and(|n| n.starts_with("data-web-"))
        })
        .filter(|c| claim_bound(c))
        .count();
    if ready != replicas as usize || bound != replicas as usize {
        bail!(
            "readyReplicas said {replicas}, but {ready} pod(s) are Ready and {bound} claim(s) Bound"
        );
    }
    Ok(())
}

/// The ready times of one case.
fn case_times(fig: &Figures, replicas: i32, policy: &str) -> Vec<f64> {
    fig.sts
        .iter()
        .filter(|r| r.replicas == replicas && r.policy == policy)
        .map(|r| r.ready_ms)
        .collect()
}

fn report(opts: &Opts, fig: &Figures) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "results (medians of {} run(s); readiness probe tcpSocket every {PROBE_PERIOD_S} s; API polled every {} ms):",
        opts.runs,
        STS_POLL.as_millis()
    );
    println!(
        "  {:<46} {:>10} {:>10} {:>12}",
        "StatefulSet with one 1Gi claim per pod", "median ms", "max ms", "ms per pod"
    );
    let mut kv = Vec::new();
    for (replicas, policy) in CASES {
        let t = case_times(fig, replicas, policy);
        let m = median(t.clone());
        println!(
            "  {:<46} {m:>10.0} {:>10.0} {:>12.0}",
            format!("{replicas} replicas, {policy} → all Ready"),
            max(&t),
            m / replicas as f64
        );
        kv.push(format!(
            "sts_{replicas}_{}_ms={m:.0}",
            policy.to_ascii_lowercase()
        ));
    }
    let col = |f: fn(&WffcClaim) -> f64| median(fig.wffc.iter().map(f).collect());
    let colmax = |f: fn(&WffcClaim) -> f64| max(&fig.wffc.iter().map(f).collect::<Vec<_>>());
    let (sel, bound, running) = (
        col(|c| c.selected_ms),
        col(|c| c.bound_ms),
        col(|c| c.running_ms),
    );
    let imm = median(fig.immediate_ms.clone());
    println!(
        "  {:<46} {:>10} {:>10}",
        format!("provisioning ({} claims each)", opts.claims),
        "median ms",
        "max ms"
    );
    println!(
        "  {:<46} {sel:>10.0} {:>10.0}",
        "WFFC: pod create → claim selected-node",
        colmax(|c| c.selected_ms)
    );
    println!(
        "  {:<46} {bound:>10.0} {:>10.0}",
        "WFFC: pod create → claim Bound",
        colmax(|c| c.bound_ms)
    );
    println!(
        "  {:<46} {running:>10.0} {:>10.0}",
        "WFFC: pod create → pod Running",
        colmax(|c| c.running_ms)
    );
    println!(
        "  {:<46} {imm:>10.0} {:>10.0}",
        "Immediate: claim create → Bound",
        max(&fig.immediate_ms)
    );
    println!();
    let o3 = median(case_times(fig, 3, "OrderedReady"));
    let p3 = median(case_times(fig, 3, "Parallel"));
    let o10 = median(case_times(fig, 10, "OrderedReady"));
    let p10 = median(case_times(fig, 10, "Parallel"));
    println!(
        "  StatefulSet Ready: 3 replicas {o3:.0} ms OrderedReady ({:.0} ms/pod) vs {p3:.0} ms Parallel; 10 replicas {o10:.0} ms OrderedReady ({:.0} ms/pod) vs {p10:.0} ms Parallel",
        o3 / 3.0,
        o10 / 10.0
    );
    println!(
        "  provisioning: WaitForFirstConsumer pod create → selected-node {sel:.0} ms → Bound {bound:.0} ms → pod Running {running:.0} ms; Immediate create → Bound {imm:.0} ms"
    );
    println!(
        "machine cores={cores} runs={} claims={} probe_period_s={PROBE_PERIOD_S} {} wffc_selected_ms={sel:.0} wffc_bound_ms={bound:.0} wffc_running_ms={running:.0} immediate_bound_ms={imm:.0}",
        opts.runs,
        opts.claims,
        kv.join(" ")
    );
}

// ------------------------------------------------------------------ cleanup

/// Deletes the workloads, claims and the Immediate class, waits (bounded)
/// for the volumes and their directories to go, then stops the server.
async fn cleanup(apis: &Apis, storage: &Path, server: &mut Proc) {
    if let Err(e) = teardown(apis, storage, server).await {
        eprintln!("  cleanup: {e:#}");
    }
    let _ = apis.services.delete("web", &DeleteParams::default()).await;
    let _ = apis
        .classes
        .delete(IMMEDIATE_CLASS, &DeleteParams::default())
        .await;
    server.stop(Duration::from_secs(30));
}

async fn run(opts: Opts, mut signals: Signals) -> Result<()> {
    check_repo_root()?;
    check_built(&opts.skiff, "cargo build --release -p skiff")?;
    let dir = TempDir::new(env!("CARGO_PKG_NAME"))?;
    let data = dir.0.join("data");
    let storage = dir.0.join("storage");
    std::fs::create_dir_all(&storage)?;
    let setup = async {
        let skiff = private_skiff_with_busybox(&opts.skiff, &dir.0, &data)?;
        let extra = ["--default-local-storage-path".as_ref(), storage.as_os_str()];
        start_server(&skiff, &data, &dir.0.join("server.log"), &extra).await
    };
    let (mut server, client, _) = signals.unless_signalled(setup).await?;
    let apis = Apis::new(&client);
    let mut fig = Figures::default();
    let limit = Duration::from_secs(opts.timeout_s);
    let outcome = signals
        .within(
            limit,
            measure(&opts, &apis, &storage, &mut server, &mut fig),
        )
        .await;
    if outcome.is_ok() {
        report(&opts, &fig);
    }
    println!(
        "  cleaning up: deleting the StatefulSet, pods, claims and volumes, stopping the server"
    );
    signals
        .clean_up(cleanup(&apis, &storage, &mut server))
        .await;
    drop(server);
    force_cleanup(&data.join("agent/containers/runc"), &dir.0);
    outcome
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts::parse(&args, exe_dir().join("skiff"))?;
    println!(
        "skiff-bench-sts: StatefulSets with volumes to Ready, local-path provisioning latency (one node, real runc; {} run(s), {} claim(s))",
        opts.runs, opts.claims
    );
    block_on_with_signals(|signals| run(opts, signals))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = Opts::parse(
            &args("--runs 5 --claims 20 --skiff /x/skiff"),
            "skiff".into(),
        )
        .unwrap();
        assert_eq!((o.runs, o.claims), (5, 20));
        assert_eq!(o.skiff, PathBuf::from("/x/skiff"));
        let d = Opts::parse(&[], "skiff".into()).unwrap();
        assert_eq!((d.runs, d.claims, d.timeout_s), (3, 10, 1800));
        for bad in ["--runs 0", "--claims", "--claims x", "--bogus 1"] {
            assert!(Opts::parse(&args(bad), "skiff".into()).is_err(), "{bad}");
        }
    }

    #[test]
    fn statefulset_shape() {
        for (replicas, policy) in CASES {
            let s: StatefulSet =
                serde_json::from_value(statefulset_json(replicas, policy)).unwrap();
            let spec = s.spec.unwrap();
            assert_eq!(spec.replicas, Some(replicas));
            assert_eq!(spec.pod_management_policy.as_deref(), Some(policy));
            assert_eq!(spec.service_name.as_deref(), Some("web"));
            let t = &spec.volume_claim_templates.unwrap()[0];
            assert_eq!(t.metadata.name.as_deref(), Some("data"));
            // The default class: no storageClassName.
            assert!(t.spec.as_ref().unwrap().storage_class_name.is_none());
            let c = &spec.template.spec.unwrap().containers[0];
            let probe = c.readiness_probe.as_ref().unwrap();
            assert_eq!(probe.period_seconds, Some(PROBE_PERIOD_S));
            assert!(probe.tcp_socket.is_some());
            assert_eq!(c.volume_mounts.as_ref().unwrap()[0].name, "data");
        }
        let svc: Service = serde_json::from_value(headless_service_json()).unwrap();
        assert_eq!(svc.spec.unwrap().cluster_ip.as_deref(), Some("None"));
    }

    #[test]
    fn claims_pods_and_classes() {
        let c: PersistentVolumeClaim = serde_json::from_value(claim_json("a", None)).unwrap();
        assert!(c.spec.unwrap().storage_class_name.is_none());
        let c: PersistentVolumeClaim =
            serde_json::from_value(claim_json("b", Some(IMMEDIATE_CLASS))).unwrap();
        assert_eq!(
            c.spec.unwrap().storage_class_name.as_deref(),
            Some(IMMEDIATE_CLASS)
        );
        let p: Pod = serde_json::from_value(claim_pod_json("use-0", "wffc-0")).unwrap();
        let v = &p.spec.unwrap().volumes.unwrap()[0];
        assert_eq!(
            v.persistent_volume_claim.as_ref().unwrap().claim_name,
            "wffc-0"
        );
        let sc: StorageClass = serde_json::from_value(immediate_class_json()).unwrap();
        assert_eq!(sc.provisioner, "skiff.io/local-path");
        assert_eq!(sc.volume_binding_mode.as_deref(), Some("Immediate"));
        assert!(!is_default_class(&sc));
    }

    #[test]
    fn status_readers() {
        let claim =
            |v: serde_json::Value| -> PersistentVolumeClaim { serde_json::from_value(v).unwrap() };
        let pending =
            claim(serde_json::json!({"metadata": {"name": "a"}, "status": {"phase": "Pending"}}));
        assert!(!claim_bound(&pending) && !has_selected_node(&pending));
        let selected = claim(serde_json::json!({
            "metadata": {"name": "a", "annotations": {SELECTED_NODE: "n1"}},
            "status": {"phase": "Bound"},
        }));
        assert!(claim_bound(&selected) && has_selected_node(&selected));
        let sts: StatefulSet = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "web"}, "status": {"replicas": 3, "readyReplicas": 2},
        }))
        .unwrap();
        assert_eq!(ready_replicas(&sts), 2);
        let fresh: StatefulSet =
            serde_json::from_value(serde_json::json!({"metadata": {"name": "web"}})).unwrap();
        assert_eq!(ready_replicas(&fresh), 0);
        let pod: Pod = serde_json::from_value(
            serde_json::json!({"metadata": {"name": "p"}, "status": {"phase": "Running"}}),
        )
        .unwrap();
        assert!(pod_running(&pod) && !pod_ready(&pod));
        let ready: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p"},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True"}]},
        }))
        .unwrap();
        assert!(pod_ready(&ready));
        let sc: StorageClass = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "skiff.io/local-path",
        }))
        .unwrap();
        assert!(is_default_class(&sc));
    }

    #[test]
    fn case_times_per_shape() {
        let fig = Figures {
            sts: vec![
                StsRun {
                    replicas: 3,
                    policy: "Parallel",
                    ready_ms: 10.0,
                },
                StsRun {
                    replicas: 3,
                    policy: "OrderedReady",
                    ready_ms: 30.0,
                },
                StsRun {
                    replicas: 3,
                    policy: "Parallel",
                    ready_ms: 20.0,
                },
            ],
            ..Figures::default()
        };
        assert_eq!(case_times(&fig, 3, "Parallel"), vec![10.0, 20.0]);
        assert!(case_times(&fig, 10, "Parallel").is_empty());
    }
}
