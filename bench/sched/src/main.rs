//! `skiff-bench-sched`: a benchmark (not a test) of scheduling throughput with
//! hollow nodes.
//!
//! Each run starts a release `skiff server --disable-agent` (API server and
//! scheduler, no node agent) on 127.0.0.1 with a fresh temp data dir, starts
//! `skiff sim --nodes N` against it (N hollow nodes in one process: real Node,
//! Lease and pod status traffic, fake runtime), waits until all N are
//! registered and Ready, optionally measures the idle cost of the N nodes
//! (Lease renewals only), then creates P small pods as fast as the server
//! takes them and measures:
//! - `bound_per_s`: P ÷ (first create sent → last pod seen bound on a watch);
//! - `running_per_s`: the same to the last pod seen Running (the hollow nodes'
//!   status writes are in this path);
//! - the peak RSS (`VmHWM`) and CPU of the server and of the sim.
//!
//! Baseline (published, not measured here): Kubernetes' scheduler_perf CI
//! floors for SchedulingBasic at 5,000 nodes are 680–810 pods/s; the ratio
//! printed is against 810.
//!
//! Every process it starts is killed and every temp dir removed when it ends,
//! also on errors, Ctrl-C and SIGTERM. It binds and talks to 127.0.0.1 only.
//! See `bench/README.md`.

use anyhow::{Context, Result, anyhow, bail};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use kube::api::{Api, ListParams, PostParams};
use kube::runtime::watcher;
use skiff_bench_common::{Proc, TempDir, cpu_s, free_port, kube_client, median, status_mib};
use std::collections::HashSet;
use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// Kubernetes scheduler_perf SchedulingBasic floor at 5,000 nodes (upper end), pods/s.
const K8S_FLOOR_HIGH: f64 = 810.0;
/// Its lower end.
const K8S_FLOOR_LOW: f64 = 680.0;
/// Goal: pods bound per second at 5,000 nodes.
const GOAL_PODS_PER_S: f64 = 5000.0;

/// The namespace the pods go to.
const NS: &str = "bench-sched";

/// Run parameters.
#[derive(Debug, Clone, PartialEq)]
struct Opts {
    skiff: PathBuf,
    nodes: usize,
    pods: usize,
    runs: usize,
    clients: usize,
    timeout_s: u64,
    idle_s: u64,
    sim_concurrency: usize,
    cpu_request: String,
    memory_request: String,
    prebound: bool,
    max_server_rss_gib: f64,
}

const USAGE: &str = "usage: skiff-bench-sched [--skiff PATH] [--nodes N] [--pods P] [--runs R] [--clients C] \
     [--timeout S] [--idle S] [--sim-concurrency N] [--cpu-request Q] [--memory-request Q] [--prebound] \
     [--max-server-rss-gib G]";

impl Opts {
    fn parse(args: &[String], default_skiff: PathBuf) -> Result<Opts> {
        let mut o = Opts {
            skiff: default_skiff,
            nodes: 1000,
            pods: 10_000,
            runs: 1,
            clients: 32,
            timeout_s: 600,
            idle_s: 0,
            sim_concurrency: 128,
            cpu_request: "100m".into(),
            memory_request: "64Mi".into(),
            prebound: false,
            max_server_rss_gib: 16.0,
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "-h" || flag == "--help" {
                println!("{USAGE}");
                std::process::exit(0);
            }
            if flag == "--prebound" {
                o.prebound = true;
                continue;
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let num = |min: usize| -> Result<usize> {
                let n: usize = value
                    .parse()
                    .with_context(|| format!("{flag} {value:?}: not a number"))?;
                if n < min {
                    bail!("{flag} must be at least {min}");
                }
                Ok(n)
            };
            match flag.as_str() {
                "--skiff" => o.skiff = PathBuf::from(value),
                "--nodes" => o.nodes = num(1)?,
                "--pods" => o.pods = num(0)?,
                "--runs" => o.runs = num(1)?,
                "--clients" => o.clients = num(1)?,
                "--timeout" => o.timeout_s = num(1)? as u64,
                "--idle" => o.idle_s = num(0)? as u64,
                "--sim-concurrency" => o.sim_concurrency = num(1)?,
                "--cpu-request" => o.cpu_request = value.clone(),
                "--memory-request" => o.memory_request = value.clone(),
                "--max-server-rss-gib" => {
                    o.max_server_rss_gib = value
                        .parse()
                        .ok()
                        .filter(|g: &f64| *g > 0.0)
                        .with_context(|| format!("{flag} {value:?}: not a positive number"))?
                }
                _ => bail!("unknown flag {flag:?}\n{USAGE}"),
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- helpers

/// From the sim's "N hollow nodes registered and Ready in X s (R nodes/s)" line: X (start
/// → all registered and seen Ready in a LIST) and R (nodes ÷ time to register them all).
fn parse_sim_ready(log: &str) -> Option<(f64, f64)> {
    let line = log
        .lines()
        .find(|l| l.contains("hollow nodes registered and Ready in"))?;
    let rest = line.split("Ready in ").nth(1)?;
    let secs = rest.split_whitespace().next()?.parse().ok()?;
    let rate = rest
        .split('(')
        .nth(1)?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some((secs, rate))
}

/// The pod every create sends: one busybox container with small requests; with `node`,
/// already bound to it (the scheduler is bypassed).
fn pod_json(name: &str, cpu: &str, memory: &str, node: Option<&str>) -> serde_json::Value {
    let mut pod = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench-sched"}},
        "spec": {
            "containers": [{
                "name": "main",
                "image": "docker.io/library/busybox:1.36",
                "command": ["sleep", "3600"],
                "resources": {"requests": {"cpu": cpu, "memory": memory}},
            }],
        },
    });
    if let Some(node) = node {
        pod["spec"]["nodeName"] = serde_json::json!(node);
    }
    pod
}

// ------------------------------------------------------------- one run

/// Idle cost of the hollow nodes (Lease renewals only).
#[derive(Debug, Clone, Default)]
struct Idle {
    seconds: f64,
    server_cpu_pct: f64,
    sim_cpu_pct: f64,
    server_rss_mb: f64,
    sim_rss_mb: f64,
    /// Server CPU per Lease renewal (expected nodes / 10 s renewals a second), µs.
    server_us_per_lease: f64,
}

/// What one run measured.
#[derive(Debug, Clone, Default)]
struct RunResult {
    /// Sim spawn → all nodes registered and Ready (the sim's own figure).
    register_s: f64,
    nodes_per_s: f64,
    idle: Option<Idle>,
    creates_s: f64,
    create_errors: usize,
    bound: usize,
    bind_s: f64,
    bound_per_s: f64,
    running: usize,
    running_s: f64,
    running_per_s: f64,
    complete: bool,
    server_cpu_s: f64,
    sim_cpu_s: f64,
    server_rss_mb: f64,
    server_hwm_mb: f64,
    sim_rss_mb: f64,
    sim_hwm_mb: f64,
    sim_summary: String,
    over_rss: bool,
}

async fn one_run(opts: &Opts, n: usize) -> Result<RunResult> {
    let dir = TempDir::new(env!("CARGO_PKG_NAME"))?;
    let data = dir.0.join("data");
    let port = free_port()?;
    let mut server = Proc::spawn(
        Command::new(&opts.skiff)
            .arg("server")
            .arg("--disable-agent")
            .arg("--data-dir")
            .arg(&data)
            .args(["--bind-address", "127.0.0.1"])
            .args(["--https-listen-port", &port.to_string()]),
        dir.0.join("server.log"),
    )?;
    // The server answers.
    let kubeconfig = data.join("kubeconfig.yaml");
    let deadline = Instant::now() + Duration::from_secs(60);
    let client = loop {
        server.check_alive("skiff server")?;
        if Instant::now() > deadline {
            bail!("skiff server not ready within 60 s");
        }
        if let Ok(text) = std::fs::read_to_string(&kubeconfig)
            && text.contains(&format!(":{port}"))
            && let Ok(c) = kube_client(&kubeconfig).await
            && c.request_text(http::Request::get("/readyz").body(Vec::new())?)
                .await
                .is_ok()
        {
            break c;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let token = std::fs::read_to_string(data.join("token")).context("reading the token")?;

    // The hollow nodes.
    let t_sim = Instant::now();
    let mut sim = Proc::spawn(
        Command::new(&opts.skiff)
            .arg("sim")
            .args(["--nodes", &opts.nodes.to_string()])
            .args(["--server", &format!("https://127.0.0.1:{port}")])
            .args(["--token", token.trim()])
            .args(["--concurrency", &opts.sim_concurrency.to_string()]),
        dir.0.join("sim.log"),
    )?;
    let (register_s, nodes_per_s) = loop {
        sim.check_alive("skiff sim")?;
        server.check_alive("skiff server")?;
        if let Some(r) = parse_sim_ready(&sim.log_text()) {
            break r;
        }
        if t_sim.elapsed() > Duration::from_secs(opts.timeout_s) {
            bail!(
                "the sim did not register {} nodes within {} s",
                opts.nodes,
                opts.timeout_s
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let nodes: Api<Node> = Api::all(client.clone());
    let listed = nodes
        .list(&ListParams::default().labels("skiff.io/hollow=true"))
        .await?;
    let ready = listed
        .items
        .iter()
        .filter(|n| {
            n.status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
        })
        .count();
    if ready != opts.nodes {
        bail!(
            "{ready} of {} hollow nodes Ready after the sim said all were",
            opts.nodes
        );
    }
    println!(
        "  run {n}: {} hollow nodes registered in {:.2} s ({nodes_per_s:.0} nodes/s), all seen Ready {register_s:.2} s after the sim started",
        opts.nodes,
        opts.nodes as f64 / nodes_per_s,
    );
    let mut r = RunResult {
        register_s,
        nodes_per_s,
        ..RunResult::default()
    };

    // Idle: Lease renewals only.
    if opts.idle_s > 0 {
        tokio::time::sleep(Duration::from_secs(2)).await;
        let (s0, m0, t0) = (cpu_s(server.pid()), cpu_s(sim.pid()), Instant::now());
        tokio::time::sleep(Duration::from_secs(opts.idle_s)).await;
        let secs = t0.elapsed().as_secs_f64();
        let (s1, m1) = (cpu_s(server.pid()), cpu_s(sim.pid()));
        let leases = opts.nodes as f64 / 10.0 * secs;
        let idle = Idle {
            seconds: secs,
            server_cpu_pct: (s1 - s0) / secs * 100.0,
            sim_cpu_pct: (m1 - m0) / secs * 100.0,
            server_rss_mb: status_mib(server.pid(), "VmRSS"),
            sim_rss_mb: status_mib(sim.pid(), "VmRSS"),
            server_us_per_lease: (s1 - s0) / leases * 1e6,
        };
        println!(
            "  run {n}: idle {:.0} s with {} nodes ({:.0} Lease renewals/s expected): server CPU {:.1}% ({:.0} µs a renewal), RSS {:.1} MiB; sim CPU {:.1}%, RSS {:.1} MiB",
            idle.seconds,
            opts.nodes,
            opts.nodes as f64 / 10.0,
            idle.server_cpu_pct,
            idle.server_us_per_lease,
            idle.server_rss_mb,
            idle.sim_cpu_pct,
            idle.sim_rss_mb
        );
        r.idle = Some(idle);
    }

    if opts.pods > 0 {
        pods_phase(opts, n, &client, &mut server, &mut sim, &mut r).await?;
    }
    r.server_rss_mb = status_mib(server.pid(), "VmRSS");
    r.server_hwm_mb = status_mib(server.pid(), "VmHWM");
    r.sim_rss_mb = status_mib(sim.pid(), "VmRSS");
    r.sim_hwm_mb = status_mib(sim.pid(), "VmHWM");
    sim.stop(Duration::from_secs(10));
    r.sim_summary = sim
        .log_text()
        .lines()
        .find_map(|l| l.strip_prefix("skiff sim: stopped: "))
        .unwrap_or("(no summary)")
        .to_string();
    server.stop(Duration::from_secs(5));
    Ok(r)
}

/// Creates the pods and follows them until every one is bound and Running (or the time
/// runs out).
async fn pods_phase(
    opts: &Opts,
    n: usize,
    client: &kube::Client,
    server: &mut Proc,
    sim: &mut Proc,
    r: &mut RunResult,
) -> Result<()> {
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let ns: Namespace = serde_json::from_value(serde_json::json!({"metadata": {"name": NS}}))?;
    namespaces.create(&PostParams::default(), &ns).await?;

    // The watch of bound pods, open before the first create.
    let pods: Api<Pod> = Api::namespaced(client.clone(), NS);
    let mut stream = watcher(
        pods.clone(),
        watcher::Config::default().fields("spec.nodeName!="),
    )
    .boxed();
    loop {
        match stream.next().await {
            Some(Ok(watcher::Event::InitDone)) => break,
            Some(Ok(_)) => {}
            Some(Err(e)) => bail!("watching pods: {e}"),
            None => bail!("the pod watch ended"),
        }
    }
    let total = opts.pods;
    let (server_cpu0, sim_cpu0) = (cpu_s(server.pid()), cpu_s(sim.pid()));
    let server_pid = server.pid();
    let t0 = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let stop_creates = next.clone();
    let errors = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for _ in 0..opts.clients {
        let (pods, next, errors) = (pods.clone(), next.clone(), errors.clone());
        let (cpu, mem) = (opts.cpu_request.clone(), opts.memory_request.clone());
        let (prebound, nodes) = (opts.prebound, opts.nodes);
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return;
                }
                let node = prebound.then(|| format!("hollow-node-{}", i % nodes));
                let pod: Pod = serde_json::from_value(pod_json(
                    &format!("p-{i}"),
                    &cpu,
                    &mem,
                    node.as_deref(),
                ))
                .expect("valid pod");
                let mut tries = 0;
                while let Err(e) = pods.create(&PostParams::default(), &pod).await {
                    tries += 1;
                    if tries >= 5 || matches!(&e, kube::Error::Api(s) if s.code == 409) {
                        errors.fetch_add(1, Ordering::Relaxed);
                        eprintln!("creating p-{i}: {e}");
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
        }));
    }
    let creates = async {
        for w in workers {
            let _ = w.await;
        }
        t0.elapsed()
    };
    let follow = async {
        let mut bound: HashSet<String> = HashSet::with_capacity(total);
        let mut running: HashSet<String> = HashSet::with_capacity(total);
        let mut bind_done = None;
        let deadline = t0 + Duration::from_secs(opts.timeout_s);
        let mut last_report = Instant::now();
        let mut rss_stop = false;
        loop {
            if bound.len() >= total && running.len() >= total {
                break;
            }
            let wake = deadline.min(Instant::now() + Duration::from_secs(1));
            let ev = match tokio::time::timeout_at(wake.into(), stream.next()).await {
                Err(_) if Instant::now() >= deadline => break,
                Err(_) => None,
                Ok(None) => break,
                Ok(Some(ev)) => Some(ev),
            };
            let rss_gib = status_mib(server_pid, "VmRSS") / 1024.0;
            if rss_gib > opts.max_server_rss_gib {
                println!(
                    "  run {n}: server RSS {rss_gib:.1} GiB is over --max-server-rss-gib {}: stopping",
                    opts.max_server_rss_gib
                );
                rss_stop = true;
                stop_creates.store(usize::MAX / 2, Ordering::Relaxed);
                break;
            }
            let Some(ev) = ev else { continue };
            if let Ok(watcher::Event::Apply(p) | watcher::Event::InitApply(p)) = ev {
                let name = p.metadata.name.clone().unwrap_or_default();
                if bound.insert(name.clone()) && bound.len() == total {
                    bind_done = Some(t0.elapsed());
                }
                if p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running") {
                    running.insert(name);
                }
            }
            if last_report.elapsed() > Duration::from_secs(10) {
                last_report = Instant::now();
                println!(
                    "  run {n}: … {:.0} s: {} bound, {} Running",
                    t0.elapsed().as_secs_f64(),
                    bound.len(),
                    running.len()
                );
            }
        }
        (
            bound.len(),
            bind_done,
            running.len(),
            t0.elapsed(),
            rss_stop,
        )
    };
    let (creates_took, (bound, bind_done, running, ended, rss_stop)) =
        tokio::join!(creates, follow);
    if rss_stop {
        r.over_rss = true;
    }
    r.server_cpu_s = cpu_s(server.pid()) - server_cpu0;
    r.sim_cpu_s = cpu_s(sim.pid()) - sim_cpu0;
    server.check_alive("skiff server")?;
    r.creates_s = creates_took.as_secs_f64();
    r.create_errors = errors.load(Ordering::Relaxed);
    r.bound = bound;
    r.running = running;
    r.complete = bind_done.is_some() && running >= total;
    let bind_s = bind_done.unwrap_or(ended).as_secs_f64();
    r.bind_s = bind_s;
    r.bound_per_s = bound as f64 / bind_s;
    r.running_s = ended.as_secs_f64();
    r.running_per_s = running as f64 / r.running_s;
    println!(
        "  run {n}: {} pods created in {:.2} s ({:.0}/s, {} failed); {bound} bound in {bind_s:.2} s → {:.0} pods/s; {running} Running after {:.2} s → {:.0} pods/s{}",
        total,
        r.creates_s,
        total as f64 / r.creates_s,
        r.create_errors,
        r.bound_per_s,
        r.running_s,
        r.running_per_s,
        if r.complete {
            ""
        } else if r.over_rss {
            "  (INCOMPLETE: server over the RSS limit)"
        } else {
            "  (INCOMPLETE: timed out)"
        }
    );
    println!(
        "  run {n}: CPU during the pod phase: server {:.1} s, sim {:.1} s",
        r.server_cpu_s, r.sim_cpu_s
    );
    Ok(())
}

async fn run(opts: Opts) -> Result<()> {
    if !opts.skiff.exists() {
        bail!(
            "{} does not exist (build it: cargo build --release -p skiff)",
            opts.skiff.display()
        );
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "skiff-bench-sched: {} hollow nodes, {} pods (requests cpu {}, memory {}), {} run(s), {} create clients, machine {cores} cores",
        opts.nodes, opts.pods, opts.cpu_request, opts.memory_request, opts.runs, opts.clients
    );
    let mut results = Vec::new();
    for n in 1..=opts.runs {
        let r = one_run(&opts, n).await?;
        println!(
            "  run {n}: peak RSS (VmHWM) server {:.1} MiB, sim {:.1} MiB; RSS at end server {:.1} MiB, sim {:.1} MiB",
            r.server_hwm_mb, r.sim_hwm_mb, r.server_rss_mb, r.sim_rss_mb
        );
        println!("  run {n}: sim: {}", r.sim_summary);
        results.push(r);
    }
    let med = |f: fn(&RunResult) -> f64| median(results.iter().map(f).collect());
    let idle = |f: fn(&Idle) -> f64| {
        median(
            results
                .iter()
                .filter_map(|r| r.idle.as_ref().map(f))
                .collect(),
        )
    };
    let complete = results.iter().all(|r| r.complete);
    println!();
    println!("results (median of {} run(s)):", results.len());
    println!(
        "  registration: {} nodes at {:.0} nodes/s; all Ready {:.2} s after the sim started",
        opts.nodes,
        med(|r| r.nodes_per_s),
        med(|r| r.register_s)
    );
    if opts.idle_s > 0 {
        println!(
            "  idle {} nodes: server CPU {:.1}% ({:.0} µs a Lease renewal), RSS {:.1} MiB; sim CPU {:.1}%, RSS {:.1} MiB",
            opts.nodes,
            idle(|i| i.server_cpu_pct),
            idle(|i| i.server_us_per_lease),
            idle(|i| i.server_rss_mb),
            idle(|i| i.sim_cpu_pct),
            idle(|i| i.sim_rss_mb)
        );
    }
    let bound_per_s = med(|r| r.bound_per_s);
    if opts.pods > 0 {
        println!(
            "  {}: {:.0} pods/s bound (first create → last binding){}; {:.0} pods/s Running",
            if opts.prebound {
                "prebound (nodeName set at create, scheduler bypassed)"
            } else {
                "scheduling"
            },
            bound_per_s,
            if complete {
                ""
            } else {
                " INCOMPLETE (timed out or over the RSS limit; rate of the pods bound)"
            },
            med(|r| r.running_per_s)
        );
    }
    if opts.pods > 0 && !opts.prebound {
        println!(
            "  baseline: Kubernetes scheduler_perf SchedulingBasic floor at 5,000 nodes: {K8S_FLOOR_LOW:.0}–{K8S_FLOOR_HIGH:.0} pods/s (published CI figure, not measured here); ratio vs {K8S_FLOOR_HIGH:.0}: {:.2}",
            bound_per_s / K8S_FLOOR_HIGH
        );
        println!(
            "  goal: ≥ {GOAL_PODS_PER_S:.0} pods/s at 5,000 nodes: {}",
            if opts.nodes < 5000 {
                "n/a (fewer than 5,000 nodes)"
            } else if bound_per_s >= GOAL_PODS_PER_S && complete {
                "ok"
            } else {
                "MISS"
            }
        );
    }
    println!(
        "  peak RSS (VmHWM): server {:.1} MiB, sim {:.1} MiB",
        med(|r| r.server_hwm_mb),
        med(|r| r.sim_hwm_mb)
    );
    println!(
        "machine cores={cores} nodes={} pods={} prebound={} runs={} register_s={:.2} nodes_per_s={:.0} idle_server_cpu_pct={:.1} idle_sim_cpu_pct={:.1} idle_server_rss_mb={:.1} idle_sim_rss_mb={:.1} bound_per_s={:.0} running_per_s={:.0} complete={} ratio_vs_k8s_810={:.2} server_hwm_mb={:.1} sim_hwm_mb={:.1}",
        opts.nodes,
        opts.pods,
        opts.prebound,
        results.len(),
        med(|r| r.register_s),
        med(|r| r.nodes_per_s),
        idle(|i| i.server_cpu_pct),
        idle(|i| i.sim_cpu_pct),
        idle(|i| i.server_rss_mb),
        idle(|i| i.sim_rss_mb),
        bound_per_s,
        med(|r| r.running_per_s),
        if opts.pods == 0 {
            "n/a".to_string()
        } else {
            complete.to_string()
        },
        bound_per_s / K8S_FLOOR_HIGH,
        med(|r| r.server_hwm_mb),
        med(|r| r.sim_hwm_mb)
    );
    if opts.pods > 0 && !complete {
        bail!(
            "not every pod was bound and Running within --timeout {} s",
            opts.timeout_s
        );
    }
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default_skiff = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("skiff")))
        .unwrap_or_else(|| PathBuf::from("skiff"));
    let opts = Opts::parse(&args, default_skiff)?;
    // Per run: start-up, registration and the pod phase each within --timeout.
    let limit = Duration::from_secs((opts.timeout_s * 3 + opts.idle_s + 60) * opts.runs as u64);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        // Dropping `run` drops its guards, which kill the server and the sim and
        // remove the temp dirs.
        tokio::select! {
            r = tokio::time::timeout(limit, run(opts)) => {
                r.map_err(|_| anyhow!("benchmark did not finish within {} s", limit.as_secs())).and_then(|r| r)
            }
            _ = tokio::signal::ctrl_c() => Err(anyhow!("interrupted")),
            _ = term.recv() => Err(anyhow!("terminated")),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sim_ready_line() {
        let log = "skiff sim: starting 5000 hollow nodes against https://127.0.0.1:1\n\
                   skiff sim: 5000 hollow nodes registered and Ready in 3.4 s (1502 nodes/s)\n";
        assert_eq!(parse_sim_ready(log), Some((3.4, 1502.0)));
        assert_eq!(parse_sim_ready("skiff sim: starting"), None);
    }

    #[test]
    fn flags() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = Opts::parse(
            &args("--nodes 5000 --pods 50000 --runs 3 --idle 20"),
            "skiff".into(),
        )
        .unwrap();
        assert_eq!((o.nodes, o.pods, o.runs, o.idle_s), (5000, 50000, 3, 20));
        assert_eq!(o.clients, 32);
        assert!(Opts::parse(&args("--nodes 0"), "skiff".into()).is_err());
        assert!(Opts::parse(&args("--pods"), "skiff".into()).is_err());
        assert!(Opts::parse(&args("--bogus 1"), "skiff".into()).is_err());
        assert_eq!(
            Opts::parse(&args("--pods 0"), "skiff".into()).unwrap().pods,
            0
        );
    }
}
