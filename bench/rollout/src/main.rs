//! `skiff-bench-rollout`: a benchmark (not a test) of Deployment rollouts.
//!
//! It starts a release `skiff server --disable-agent` (API server, scheduler
//! and controllers, no node agent) on 127.0.0.1 with a fresh temp data dir and
//! `skiff sim --nodes N` against it (N hollow nodes: real Node, Lease and pod
//! status traffic, fake runtime: a bound pod is Running and Ready at once, a
//! deleted one is confirmed at once). It creates a Deployment of R replicas
//! (small requests so they fit), waits until it is rolled out, then, --runs
//! times, changes its image with the real `kubectl set image` and measures,
//! from the spawn of that kubectl to the first status in which
//! `kubectl rollout status` would say "successfully rolled out":
//! - `rollout_s` (median over the runs) and `pods_per_s` = R ÷ `rollout_s`
//!   (pods replaced a second);
//! - the CPU time (utime + stime from `/proc/PID/stat`) of the server, whose
//!   process holds the Deployment and ReplicaSet controllers (and the API
//!   server and scheduler they drive), and of the sim.
//!
//! With `--runc-scale` it measures a scale instead, on real containers: a
//! `skiff server` with its embedded agent (root, runc; the busybox image
//! built by `scripts/build-busybox-image.sh` from the host's busybox and
//! imported), a 10-replica Deployment running `sleep 3600` scaled with
//! `kubectl scale` to 100 (timed until `kubectl rollout status` would say
//! rolled out: 100 Running and Ready) and back to 10 (timed until 90 pods
//! are gone from the API, i.e. their containers stopped and the kubelet
//! confirmed the deletions).
//!
//! Baseline: none measured here (see `bench/README.md`).
//!
//! Every process it starts is killed and every temp dir removed when it ends,
//! also on errors, Ctrl-C and SIGTERM. It binds and talks to 127.0.0.1 only.

use anyhow::{Context, Result, bail};
use k8s_openapi::api::apps::v1::Deployment;
use kube::api::{Api, PostParams};
use skiff_bench_common::{
    Proc, TempDir, block_on_with_signals, check_built, check_repo_root, cpu_s, exe_dir, flags,
    median, node_ready, positive, private_skiff_with_busybox, run_cmd, start_server, unknown,
    wait_pods_gone,
};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The Deployment's name (namespace `default`).
const NAME: &str = "roll";

/// Run parameters.
#[derive(Debug, Clone, PartialEq)]
struct Opts {
    skiff: PathBuf,
    kubectl: PathBuf,
    nodes: usize,
    replicas: usize,
    runs: usize,
    timeout_s: u64,
    sim_concurrency: usize,
    cpu_request: String,
    memory_request: String,
    runc_scale: bool,
}

const USAGE: &str = "usage: skiff-bench-rollout [--skiff PATH] [--kubectl PATH] [--nodes N] [--replicas R] \
     [--runs K] [--timeout S] [--sim-concurrency N] [--cpu-request Q] [--memory-request Q] [--runc-scale]";

impl Opts {
    fn parse(args: &[String], default_skiff: PathBuf) -> Result<Opts> {
        let mut o = Opts {
            skiff: default_skiff,
            kubectl: PathBuf::from("kubectl"),
            nodes: 100,
            replicas: 1000,
            runs: 3,
            timeout_s: 600,
            sim_concurrency: 128,
            cpu_request: "10m".into(),
            memory_request: "16Mi".into(),
            runc_scale: false,
        };
        for f in flags(args, USAGE, &["--runc-scale"])? {
            match f.name {
                "--runc-scale" => o.runc_scale = true,
                "--skiff" => o.skiff = PathBuf::from(f.value),
                "--kubectl" => o.kubectl = PathBuf::from(f.value),
                "--nodes" => o.nodes = positive(f)?,
                "--replicas" => o.replicas = positive(f)?,
                "--runs" => o.runs = positive(f)?,
                "--timeout" => o.timeout_s = positive(f)? as u64,
                "--sim-concurrency" => o.sim_concurrency = positive(f)?,
                "--cpu-request" => o.cpu_request = f.value.to_string(),
                "--memory-request" => o.memory_request = f.value.to_string(),
                _ => return Err(unknown(f, USAGE)),
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- helpers

/// Whether the sim's log says all its nodes are registered and Ready.
fn sim_ready(log: &str) -> bool {
    log.lines()
        .any(|l| l.contains("hollow nodes registered and Ready in"))
}

/// What `kubectl rollout status` decides from a Deployment, as its
/// DeploymentStatusViewer does: `Ok(true)` "successfully rolled out",
/// `Ok(false)` still waiting, `Err` the progress deadline was exceeded.
fn rollout_done(d: &Deployment) -> Result<bool> {
    let generation = d.metadata.generation.unwrap_or(0);
    let Some(s) = d.status.as_ref() else {
        return Ok(false);
    };
    if generation > s.observed_generation.unwrap_or(0) {
        return Ok(false);
    }
    if s.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    }) {
        bail!("deployment {NAME:?} exceeded its progress deadline");
    }
    let want = d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(1);
    let updated = s.updated_replicas.unwrap_or(0);
    Ok(updated >= want
        && s.replicas.unwrap_or(0) <= updated
        && s.available_replicas.unwrap_or(0) >= updated)
}

/// The Deployment: `replicas` busybox pods with small requests, RollingUpdate
/// with Kubernetes' defaults (25% / 25%).
fn deployment_json(replicas: usize, cpu: &str, memory: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": NAME},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": NAME}},
            "template": {
                "metadata": {"labels": {"app": NAME}},
                "spec": {
                    "containers": [{
                        "name": "main",
                        "image": "docker.io/library/busybox:1.36",
                        "command": ["sleep", "3600"],
                        "resources": {"requests": {"cpu": cpu, "memory": memory}},
                    }],
                },
            },
        },
    })
}

/// Runs the real kubectl against the server: its stdout and stderr, or an
/// error with them.
fn kubectl(opts: &Opts, kubeconfig: &Path, args: &[&str]) -> Result<String> {
    run_cmd(
        Command::new(&opts.kubectl)
            .env("KUBECONFIG", kubeconfig)
            .args(args),
    )
}

/// Polls the Deployment every 20 ms until it is rolled out (as `kubectl
/// rollout status` decides), failing after `timeout` or if a process dies.
async fn wait_rolled_out(
    api: &Api<Deployment>,
    procs: &mut [(&mut Proc, &str)],
    timeout: Duration,
) -> Result<Deployment> {
    let deadline = Instant::now() + timeout;
    let mut last_check = Instant::now();
    loop {
        let d = api.get(NAME).await?;
        if rollout_done(&d)? {
            return Ok(d);
        }
        if Instant::now() > deadline {
            bail!(
                "not rolled out within {} s: {:?}",
                timeout.as_secs(),
                d.status
            );
        }
        if last_check.elapsed() > Duration::from_secs(1) {
            last_check = Instant::now();
            for (p, what) in procs.iter_mut() {
                p.check_alive(what)?;
            }
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// ------------------------------------------------------------- hollow

/// One timed rollout.
#[derive(Debug, Clone, Default)]
struct Rollout {
    seconds: f64,
    server_cpu_s: f64,
    sim_cpu_s: f64,
}

async fn hollow(opts: &Opts) -> Result<()> {
    let dir = TempDir::new(env!("CARGO_PKG_NAME"))?;
    let (mut server, client, port) = start_server(
        &opts.skiff,
        &dir.0.join("data"),
        &dir.0.join("server.log"),
        &["--disable-agent".as_ref()],
    )
    .await?;
    let kubeconfig = dir.0.join("data/kubeconfig.yaml");
    let token = std::fs::read_to_string(dir.0.join("data/token")).context("reading the token")?;
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
    while !sim_ready(&sim.log_text()) {
        sim.check_alive("skiff sim")?;
        server.check_alive("skiff server")?;
        if t_sim.elapsed() > Duration::from_secs(opts.timeout_s) {
            bail!("the sim did not register {} nodes", opts.nodes);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    println!(
        "  {} hollow nodes registered and Ready {:.2} s after the sim started",
        opts.nodes,
        t_sim.elapsed().as_secs_f64()
    );

    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let d: Deployment = serde_json::from_value(deployment_json(
        opts.replicas,
        &opts.cpu_request,
        &opts.memory_request,
    ))?;
    let t0 = Instant::now();
    api.create(&PostParams::default(), &d).await?;
    let timeout = Duration::from_secs(opts.timeout_s);
    wait_rolled_out(
        &api,
        &mut [(&mut server, "skiff server"), (&mut sim, "skiff sim")],
        timeout,
    )
    .await?;
    let create_s = t0.elapsed().as_secs_f64();
    println!(
        "  created: {} replicas available {create_s:.2} s after the create ({:.0} pods/s)",
        opts.replicas,
        opts.replicas as f64 / create_s
    );

    let mut runs = Vec::new();
    for n in 1..=opts.runs {
        let image = format!("main=docker.io/library/busybox:1.36-v{n}");
        let (s0, m0) = (cpu_s(server.pid()), cpu_s(sim.pid()));
        let t0 = Instant::now();
        kubectl(
            opts,
            &kubeconfig,
            &["set", "image", &format!("deployment/{NAME}"), &image],
        )?;
        wait_rolled_out(
            &api,
            &mut [(&mut server, "skiff server"), (&mut sim, "skiff sim")],
            timeout,
        )
        .await?;
        let r = Rollout {
            seconds: t0.elapsed().as_secs_f64(),
            server_cpu_s: cpu_s(server.pid()) - s0,
            sim_cpu_s: cpu_s(sim.pid()) - m0,
        };
        // The real kubectl agrees (untimed).
        let said = kubectl(
            opts,
            &kubeconfig,
            &[
                "rollout",
                "status",
                &format!("deployment/{NAME}"),
                "--timeout=60s",
            ],
        )?;
        if !said.contains("successfully rolled out") {
            bail!("kubectl rollout status after run {n}: {said}");
        }
        println!(
            "  run {n}: set image → successfully rolled out in {:.2} s ({:.0} pods replaced/s); CPU: server {:.2} s, sim {:.2} s",
            r.seconds,
            opts.replicas as f64 / r.seconds,
            r.server_cpu_s,
            r.sim_cpu_s
        );
        runs.push(r);
    }
    sim.stop(Duration::from_secs(10));
    server.stop(Duration::from_secs(5));

    let med = |f: fn(&Rollout) -> f64| median(runs.iter().map(f).collect());
    let rollout_s = med(|r| r.seconds);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!("results (median of {} rollout(s)):", runs.len());
    println!(
        "  rollout of {} replicas on {} hollow nodes: {rollout_s:.2} s from `kubectl set image` to \"successfully rolled out\", {:.0} pods replaced/s",
        opts.replicas,
        opts.nodes,
        opts.replicas as f64 / rollout_s
    );
    println!(
        "  CPU during the rollout: server (API server, scheduler, controllers) {:.2} s, sim {:.2} s",
        med(|r| r.server_cpu_s),
        med(|r| r.sim_cpu_s)
    );
    println!("  baseline: none measured here (see bench/README.md)");
    println!(
        "machine cores={cores} nodes={} replicas={} runs={} create_s={create_s:.2} rollout_s={rollout_s:.2} pods_per_s={:.0} server_cpu_s={:.2} sim_cpu_s={:.2}",
        opts.nodes,
        opts.replicas,
        runs.len(),
        opts.replicas as f64 / rollout_s,
        med(|r| r.server_cpu_s),
        med(|r| r.sim_cpu_s)
    );
    Ok(())
}

async fn run(opts: Opts) -> Result<()> {
    check_built(&opts.skiff, "cargo build --release -p skiff")?;
    if opts.runc_scale {
        println!(
            "skiff-bench-rollout --runc-scale: a Deployment of busybox `sleep 3600` scaled 10 → 100 → 10 on real runc (one node: the server's embedded agent)"
        );
        runc_scale(&opts).await
    } else {
        println!(
            "skiff-bench-rollout: a {}-replica Deployment (requests cpu {}, memory {}) on {} hollow nodes, {} rollout(s)",
            opts.replicas, opts.cpu_request, opts.memory_request, opts.nodes, opts.runs
        );
        hollow(&opts).await
    }
}

// --------------------------------------------------------------- runc

/// The 10→100→10 scale on real runc containers.
async fn runc_scale(opts: &Opts) -> Result<()> {
    check_repo_root()?;
    let dir = TempDir::new(env!("CARGO_PKG_NAME"))?;
    let data = dir.0.join("data");
    let skiff = private_skiff_with_busybox(&opts.skiff, &dir.0, &data)?;
    let (mut server, client, _) =
        start_server(&skiff, &data, &dir.0.join("server.log"), &[]).await?;
    let kubeconfig = dir.0.join("data/kubeconfig.yaml");
    let result = scale_phases(opts, &client, &dir.0.join("data"), &mut server).await;
    // Leave nothing running: delete the pods, let the agent stop them, then stop the server.
    let _ = kubectl(
        opts,
        &kubeconfig,
        &["delete", "deployment", NAME, "--wait=false"],
    );
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::default_namespaced(client.clone());
    wait_pods_gone(&pods, Duration::from_secs(120), || true).await;
    server.stop(Duration::from_secs(30));
    result
}

async fn scale_phases(
    opts: &Opts,
    client: &kube::Client,
    data: &Path,
    server: &mut Proc,
) -> Result<()> {
    let kubeconfig = &data.join("kubeconfig.yaml");
    // Node Ready.
    let nodes: Api<k8s_openapi::api::core::v1::Node> = Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let ready = nodes
            .list(&Default::default())
            .await?
            .items
            .iter()
            .any(node_ready);
        if ready {
            break;
        }
        server.check_alive("skiff server")?;
        if Instant::now() > deadline {
            bail!("the embedded node is not Ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let api: Api<Deployment> = Api::default_namespaced(client.clone());
    let mut d = deployment_json(10, "1m", "4Mi");
    d["spec"]["template"]["spec"]["containers"][0]["image"] = "busybox:latest".into();
    d["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent".into();
    d["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = 1.into();
    api.create(&PostParams::default(), &serde_json::from_value(d)?)
        .await?;
    let timeout = Duration::from_secs(opts.timeout_s);
    let t0 = Instant::now();
    wait_rolled_out(&api, &mut [(server, "skiff server")], timeout).await?;
    println!(
        "  10 replicas Running and Ready {:.2} s after the create",
        t0.elapsed().as_secs_f64()
    );

    let cpu0 = cpu_s(server.pid());
    let t0 = Instant::now();
    kubectl(
        opts,
        kubeconfig,
        &["scale", &format!("deployment/{NAME}"), "--replicas=100"],
    )?;
    wait_rolled_out(&api, &mut [(server, "skiff server")], timeout).await?;
    let up_s = t0.elapsed().as_secs_f64();
    let up_cpu = cpu_s(server.pid()) - cpu0;
    println!(
        "  scale 10 → 100: {up_s:.2} s to 100 Running and Ready ({:.1} pods/s); server CPU {up_cpu:.2} s (its embedded agent included)",
        90.0 / up_s
    );

    // What runs is real: 100 pods Running and Ready, and as many runc containers.
    let pods: Api<k8s_openapi::api::core::v1::Pod> = Api::default_namespaced(client.clone());
    let ready = pods
        .list(&Default::default())
        .await?
        .items
        .iter()
        .filter(|p| {
            p.status.as_ref().is_some_and(|s| {
                s.phase.as_deref() == Some("Running")
                    && s.conditions
                        .iter()
                        .flatten()
                        .any(|c| c.type_ == "Ready" && c.status == "True")
            })
        })
        .count();
    let runc = Command::new("runc")
        .arg("--root")
        .arg(data.join("agent/containers/runc"))
        .args(["list", "-q"])
        .output()?;
    let containers = String::from_utf8_lossy(&runc.stdout).lines().count();
    println!("  after the scale up: {ready} pods Running and Ready, {containers} runc containers");
    if ready != 100 || containers < 100 {
        bail!("expected 100 Ready pods with a runc container each");
    }
    let cpu0 = cpu_s(server.pid());
    let t0 = Instant::now();
    kubectl(
        opts,
        kubeconfig,
        &["scale", &format!("deployment/{NAME}"), "--replicas=10"],
    )?;
    let deadline = Instant::now() + timeout;
    loop {
        let n = pods.list(&Default::default()).await?.items.len();
        if n <= 10 {
            break;
        }
        if Instant::now() > deadline {
            bail!(
                "{n} pods still there {} s after the scale to 10",
                timeout.as_secs()
            );
        }
        server.check_alive("skiff server")?;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let down_s = t0.elapsed().as_secs_f64();
    let down_cpu = cpu_s(server.pid()) - cpu0;
    println!(
        "  scale 100 → 10: {down_s:.2} s until 90 pods are gone ({:.1} pods/s); server CPU {down_cpu:.2} s",
        90.0 / down_s
    );
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "machine cores={cores} mode=runc-scale up_s={up_s:.2} up_pods_per_s={:.1} up_server_cpu_s={up_cpu:.2} down_s={down_s:.2} down_pods_per_s={:.1} down_server_cpu_s={down_cpu:.2}",
        90.0 / up_s,
        90.0 / down_s
    );
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts::parse(&args, exe_dir().join("skiff"))?;
    let limit = Duration::from_secs(opts.timeout_s * (opts.runs as u64 + 2) + 60);
    // Dropping `run` drops its guards, which kill the server and the sim
    // and remove the temp dirs.
    block_on_with_signals(|mut signals| async move { signals.within(limit, run(opts)).await })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deploy(generation: i64, status: serde_json::Value) -> Deployment {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": NAME, "generation": generation},
            "spec": {"replicas": 10, "selector": {}, "template": {}},
            "status": status,
        }))
        .unwrap()
    }

    #[test]
    fn rollout_status_as_kubectl_decides_it() {
        let done = serde_json::json!({"observedGeneration": 2, "replicas": 10, "updatedReplicas": 10, "availableReplicas": 10});
        let cases = [
            ("complete", 2, done.clone(), true),
            ("not observed yet", 3, done.clone(), false),
            (
                "new replicas still coming",
                2,
                serde_json::json!({"observedGeneration": 2, "replicas": 12, "updatedReplicas": 7, "availableReplicas": 10}),
                false,
            ),
            (
                "old replicas pending termination",
                2,
                serde_json::json!({"observedGeneration": 2, "replicas": 11, "updatedReplicas": 10, "availableReplicas": 10}),
                false,
            ),
            (
                "updated but not all available",
                2,
                serde_json::json!({"observedGeneration": 2, "replicas": 10, "updatedReplicas": 10, "availableReplicas": 9}),
                false,
            ),
            ("no status", 1, serde_json::Value::Null, false),
        ];
        for (what, generation, status, want) in cases {
            assert_eq!(
                rollout_done(&deploy(generation, status)).unwrap(),
                want,
                "{what}"
            );
        }
        let stuck = serde_json::json!({"observedGeneration": 2, "replicas": 10, "updatedReplicas": 5,
            "conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded"}]});
        assert!(rollout_done(&deploy(2, stuck)).is_err());
    }

    #[test]
    fn flags() {
        let args = |s: &str| s.split_whitespace().map(String::from).collect::<Vec<_>>();
        let o = Opts::parse(
            &args("--replicas 5000 --nodes 500 --runs 1"),
            "skiff".into(),
        )
        .unwrap();
        assert_eq!((o.replicas, o.nodes, o.runs), (5000, 500, 1));
        let d = Opts::parse(&[], "skiff".into()).unwrap();
        assert_eq!((d.replicas, d.nodes, d.runs), (1000, 100, 3));
        assert!(Opts::parse(&args("--replicas 0"), "skiff".into()).is_err());
        assert!(Opts::parse(&args("--runs"), "skiff".into()).is_err());
        assert!(Opts::parse(&args("--bogus 1"), "skiff".into()).is_err());
    }

    #[test]
    fn the_deployment_fits_and_rolls_with_the_defaults() {
        let d: Deployment = serde_json::from_value(deployment_json(1000, "10m", "16Mi")).unwrap();
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(1000));
        assert!(spec.strategy.is_none(), "Kubernetes' defaults: 25% / 25%");
        let c = &spec.template.spec.unwrap().containers[0];
        assert_eq!(c.name, "main");
    }
}
