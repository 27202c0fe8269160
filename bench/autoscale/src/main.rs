//! `skiff-bench-autoscale`: a benchmark (not a test) of resource metrics and
//! horizontal pod autoscaling on real runc.
//!
//! Run it through `bench/autoscale/run.sh`, which puts it in a private network
//! namespace (`unshare --net`, loopback and a dummy link with the node's
//! address) so that the host's links, routes and nftables are never touched.
//! Inside, it starts `skiff server --disable-agent` (default flags: 15 s
//! `--metric-resolution`, 15 s `--horizontal-pod-autoscaler-sync-period`) and
//! a separate `skiff agent` process joined with the server's token file, with
//! its own data dir (the busybox image of `scripts/build-busybox-image.sh`
//! imported there) and its own `--kubelet-port`, and measures in one run:
//!
//! 1. Metrics collection cost: `--scrapes` sequential `GET /metrics/resource`
//!    against the agent's kubelet endpoint over mTLS (a fresh connection each,
//!    as the server's metrics scraper makes them), presenting a client
//!    certificate this benchmark signs with the cluster CA from the server's
//!    data dir. The agent's CPU time (utime + stime of `/proc/PID/stat`) is
//!    read before and after; scrape latencies give p50 and p99. First at 0
//!    pods (the fixed cost), then with `--pods` pods (`sleep 3600`, tiny
//!    requests) Running, each page checked to list every container. The
//!    agent's idle CPU rate over an equal window just before is measured too,
//!    so the cost can be given net of it. `--runs` rounds of each.
//! 2. HPA reaction time: per run a fresh Deployment (1 replica, CPU request
//!    100m) whose container idles while `/load/idle` (a hostPath dir) exists
//!    and burns a CPU when it is gone, and `kubectl autoscale --cpu-percent=50
//!    --min=1 --max=4`. Once the HPA has settled (at least `--settle` seconds
//!    and a numeric current utilisation in `kubectl get hpa`), the file is
//!    removed (run `r` of `K` first waits `r/K` × 15 s more, so the starts
//!    sample the phase of the periodic scrape and sync evenly) and the
//!    Deployment's `spec.replicas` polled every 100 ms until it exceeds 1. The Deployment and HPA are deleted before the next run.
//!
//! At the end, also on errors, Ctrl-C and SIGTERM, it deletes its
//! Deployments, HPAs and pods (so the agent stops their containers), stops the
//! agent and the server, force-deletes any runc container left, unmounts
//! whatever is still mounted under its temp dir and removes it.

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Node, Pod};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use skiff_bench_common::{
    Proc, Signals, TempDir, block_on_with_signals, check_built, check_repo_root, cpu_s, exe_dir,
    flags, force_cleanup, free_port, kubectl, max, median, ms, node_ready, percentile, pod_running,
    poll_until, positive, private_skiff_with_busybox, start_server, unknown,
};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The node name the agent joins as.
const NODE: &str = "bench-node";
/// How often the HPA phase polls the Deployment's replicas.
const POLL: Duration = Duration::from_millis(100);
/// The metric family with one sample per container.
const CONTAINER_CPU: &str = "container_cpu_usage_seconds_total{";

/// Run parameters.
#[derive(Debug, Clone, PartialEq)]
struct Opts {
    skiff: PathBuf,
    kubectl: PathBuf,
    node_ip: IpAddr,
    runs: usize,
    scrapes: usize,
    pods: usize,
    settle_s: u64,
    timeout_s: u64,
}

const USAGE: &str = "usage: skiff-bench-autoscale [--skiff PATH] [--kubectl PATH] [--node-ip IP] [--runs K] \
     [--scrapes N] [--pods N] [--settle S] [--timeout S]";

impl Opts {
    fn parse(args: &[String], default_skiff: PathBuf) -> Result<Opts> {
        let mut o = Opts {
            skiff: default_skiff,
            kubectl: PathBuf::from("kubectl"),
            node_ip: IpAddr::from([127, 0, 0, 1]),
            runs: 3,
            scrapes: 200,
            pods: 100,
            settle_s: 40,
            timeout_s: 1800,
        };
        for f in flags(args, USAGE, &[])? {
            match f.name {
                "--skiff" => o.skiff = PathBuf::from(f.value),
                "--kubectl" => o.kubectl = PathBuf::from(f.value),
                "--node-ip" => {
                    o.node_ip = f
                        .value
                        .parse()
                        .with_context(|| format!("--node-ip {:?}: not an address", f.value))?
                }
                "--runs" => o.runs = positive(f)?,
                "--scrapes" => o.scrapes = positive(f)?,
                "--pods" => o.pods = positive(f)?,
                "--settle" => o.settle_s = positive(f)? as u64,
                "--timeout" => o.timeout_s = positive(f)? as u64,
                _ => return Err(unknown(f, USAGE)),
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- pure helpers

/// The status code and body of an HTTP/1.0 response read to EOF.
fn split_response(raw: &[u8]) -> Result<(u16, &str)> {
    let text = std::str::from_utf8(raw).context("the response is not UTF-8")?;
    let (head, body) = text
        .split_once("\r\n\r\n")
        .context("no end of headers in the response")?;
    let code = head
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .with_context(|| format!("no status line in {head:?}"))?;
    Ok((code, body))
}

/// The containers a `/metrics/resource` page lists (its
/// `container_cpu_usage_seconds_total` samples).
fn containers_listed(page: &str) -> usize {
    page.lines()
        .filter(|l| l.starts_with(CONTAINER_CPU))
        .count()
}

/// Whether `kubectl get hpa` columns show a numeric current CPU utilisation
/// (`cpu: 0%/50%`, not `cpu: <unknown>/50%`).
fn hpa_has_current(get_hpa: &str) -> bool {
    get_hpa.split_whitespace().any(|w| {
        w.split_once('/')
            .and_then(|(cur, _)| cur.strip_suffix('%'))
            .is_some_and(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit()))
    })
}

/// A Deployment `name` of `replicas` busybox pods running `script`, with CPU
/// request `cpu`, memory request `mem`, and optionally the hostPath dir
/// `load` mounted at `/load`.
fn deployment_json(
    name: &str,
    replicas: usize,
    script: &str,
    cpu: &str,
    mem: &str,
    load: Option<&Path>,
) -> serde_json::Value {
    let mut container = serde_json::json!({
        "name": "main",
        "image": "busybox:latest",
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
        "resources": {"requests": {"cpu": cpu, "memory": mem}},
    });
    let mut spec = serde_json::json!({
        "terminationGracePeriodSeconds": 1,
        "containers": [],
    });
    if let Some(dir) = load {
        container["volumeMounts"] = serde_json::json!([{"name": "load", "mountPath": "/load"}]);
        spec["volumes"] = serde_json::json!([{
            "name": "load",
            "hostPath": {"path": dir.display().to_string(), "type": "Directory"},
        }]);
    }
    spec["containers"] = serde_json::json!([container]);
    serde_json::json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {"metadata": {"labels": {"app": name}}, "spec": spec},
        },
    })
}

/// The default `--metric-resolution` and HPA sync period.
const PERIOD: Duration = Duration::from_secs(15);

/// How long run `r` of `runs` waits after the HPA settled before it starts
/// the load: `r/runs` of a period, so the runs sample the phase of the
/// periodic scrape and sync evenly.
fn phase_offset(r: usize, runs: usize) -> Duration {
    PERIOD.mul_f64(r as f64 / runs.max(1) as f64)
}

/// The busy container: idles while `/load/idle` exists, burns a CPU after.
const BURN: &str = "while :; do if [ -e /load/idle ]; then sleep 1; fi; done";

// ------------------------------------------------------------------ processes

/// The server and its agent, both killed on drop.
struct Cluster {
    server: Proc,
    agent: Proc,
}

impl Cluster {
    fn check_alive(&mut self) -> Result<()> {
        self.server.check_alive("skiff server")?;
        self.agent.check_alive("skiff agent")
    }
}

/// Polls `check` every 50 ms until it yields a value, failing after `timeout`
/// or when the server or agent has died.
async fn wait_for<T, F, Fut>(
    what: &str,
    timeout: Duration,
    cluster: &mut Cluster,
    check: F,
) -> Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<Option<T>>>,
{
    let alive = || cluster.check_alive();
    poll_until(what, Duration::from_millis(50), timeout, alive, check).await
}

/// Starts `skiff server --disable-agent` on a fresh port with data under
/// `dir/server` and waits until it answers `/readyz`; then `skiff agent`
/// (data under `dir/agent`, which already holds the image) joined with the
/// token file, and waits until its node is Ready.
async fn start_cluster(
    opts: &Opts,
    skiff: &Path,
    dir: &Path,
    kubelet_port: u16,
) -> Result<(Cluster, kube::Client)> {
    let data = dir.join("server");
    let (server, client, port) = start_server(
        skiff,
        &data,
        &dir.join("server.log"),
        &["--disable-agent".as_ref()],
    )
    .await?;
    let agent = Proc::spawn(
        Command::new(skiff)
            .arg("agent")
            .args(["--server", &format!("https://127.0.0.1:{port}")])
            .arg("--token-file")
            .arg(data.join("token"))
            .arg("--data-dir")
            .arg(dir.join("agent"))
            .args(["--node-name", NODE])
            .args(["--node-ip", &opts.node_ip.to_string()])
            .args(["--kubelet-port", &kubelet_port.to_string()]),
        dir.join("agent.log"),
    )?;
    let mut cluster = Cluster { server, agent };
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for(
        "node Ready",
        Duration::from_secs(60),
        &mut cluster,
        || async { Ok(node_ready(&nodes.get(NODE).await?).then_some(())) },
    )
    .await?;
    Ok((cluster, client))
}

/// The mTLS client of the kubelet endpoint: trusts the cluster CA and shows a
/// fresh `kube-apiserver-kubelet-client` certificate signed with the CA key
/// from the server's data dir (`server/tls/server-ca.{crt,key}`).
fn kubelet_client(tls_dir: &Path) -> Result<Arc<rustls::ClientConfig>> {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose,
    };
    let read = |f: &str| {
        let p = tls_dir.join(f);
        std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))
    };
    let ca_pem = read("server-ca.crt")?;
    let ca_key = KeyPair::from_pem(&read("server-ca.key")?)?;
    // The CA's subject and usages as the server made them; the authority key
    // identifier comes from the key.
    let mut ca = CertificateParams::default();
    ca.distinguished_name
        .push(DnType::CommonName, "skiff-server-ca");
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let issuer = Issuer::new(ca, ca_key);
    let mut leaf = CertificateParams::default();
    leaf.distinguished_name
        .push(DnType::CommonName, "kube-apiserver-kubelet-client");
    leaf.distinguished_name
        .push(DnType::OrganizationName, "system:masters");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    let key = KeyPair::generate()?;
    let cert = leaf.signed_by(&key, &issuer)?;

    let mut roots = rustls::RootCertStore::empty();
    for c in rustls_pemfile::certs(&mut ca_pem.as_bytes()) {
        roots.add(c?)?;
    }
    let key_der = rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der())
        .map_err(|e| anyhow!("client key: {e}"))?;
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_client_auth_cert(vec![cert.der().clone()], key_der)?;
    Ok(Arc::new(config))
}

/// One `GET /metrics/resource` on a fresh mTLS connection: the page.
async fn scrape(tls: &Arc<rustls::ClientConfig>, addr: SocketAddr) -> Result<String> {
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let mut s = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .context("TLS handshake with the kubelet endpoint")?;
    s.write_all(format!("GET /metrics/resource HTTP/1.0\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await?;
    let mut raw = Vec::new();
    // A peer that closes without close_notify still delivered the page.
    if let Err(e) = s.read_to_end(&mut raw).await
        && e.kind() != std::io::ErrorKind::UnexpectedEof
    {
        return Err(e.into());
    }
    let (code, body) = split_response(&raw)?;
    if code != 200 {
        bail!("/metrics/resource: HTTP {code}: {body}");
    }
    Ok(body.to_string())
}

// ------------------------------------------------------------------ measures

/// One round of scrapes.
#[derive(Debug, Clone, Default)]
struct ScrapeRun {
    /// Agent CPU seconds per scrape.
    cpu_per_scrape: f64,
    /// Agent CPU seconds per second while idle, just before.
    idle_cpu_rate: f64,
    /// Wall seconds the round took.
    wall_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// Bytes of the last page.
    page_bytes: usize,
}

impl ScrapeRun {
    /// CPU per scrape net of what the agent spends idle over the same time.
    fn net_cpu_per_scrape(&self, scrapes: usize) -> f64 {
        self.cpu_per_scrape - self.idle_cpu_rate * self.wall_s / scrapes as f64
    }
}

/// Measures the agent's idle CPU rate for a moment, then `opts.scrapes`
/// sequential scrapes, each of which must list `want` containers.
async fn scrape_round(
    opts: &Opts,
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    agent_pid: u32,
    want: usize,
) -> Result<ScrapeRun> {
    let idle_window = Duration::from_secs(3);
    let c0 = cpu_s(agent_pid);
    tokio::time::sleep(idle_window).await;
    let idle_cpu_rate = (cpu_s(agent_pid) - c0) / idle_window.as_secs_f64();

    let mut lat = Vec::with_capacity(opts.scrapes);
    let mut page_bytes = 0;
    let start = Instant::now();
    let before = cpu_s(agent_pid);
    for i in 0..opts.scrapes {
        let t = Instant::now();
        let page = scrape(tls, addr).await?;
        lat.push(t.elapsed());
        let n = containers_listed(&page);
        if n != want {
            bail!("scrape {i}: {n} containers listed, want {want}");
        }
        page_bytes = page.len();
    }
    let cpu = cpu_s(agent_pid) - before;
    let wall_s = start.elapsed().as_secs_f64();
    lat.sort();
    Ok(ScrapeRun {
        cpu_per_scrape: cpu / opts.scrapes as f64,
        idle_cpu_rate,
        wall_s,
        p50_ms: ms(percentile(&lat, 0.5)),
        p99_ms: ms(percentile(&lat, 0.99)),
        page_bytes,
    })
}

/// `opts.runs` rounds of [`scrape_round`] with `pods` pods, each printed.
async fn scrape_rounds(
    opts: &Opts,
    tls: &Arc<rustls::ClientConfig>,
    addr: SocketAddr,
    agent_pid: u32,
    pods: usize,
) -> Result<Vec<ScrapeRun>> {
    let mut rounds = Vec::new();
    for r in 0..opts.runs {
        let s = scrape_round(opts, tls, addr, agent_pid, pods).await?;
        println!(
            "  {pods} pods, round {}: {:.3} ms CPU/scrape ({:.3} net of idle), p50 {:.2} ms, p99 {:.2} ms, {} B",
            r + 1,
            s.cpu_per_scrape * 1e3,
            s.net_cpu_per_scrape(opts.scrapes) * 1e3,
            s.p50_ms,
            s.p99_ms,
            s.page_bytes
        );
        rounds.push(s);
    }
    Ok(rounds)
}

/// One HPA run.
#[derive(Debug, Clone, Default)]
struct HpaRun {
    /// Seconds from removing the idle file to `spec.replicas > 1`.
    reaction_s: f64,
    /// The replicas of the first scale-up.
    replicas: i32,
    /// The extra wait before the load started (see [`phase_offset`]).
    offset_s: f64,
    /// The HPA's view right before the load started.
    before: String,
}

/// Everything measured.
#[derive(Debug, Default)]
struct Figures {
    idle: Vec<ScrapeRun>,
    loaded: Vec<ScrapeRun>,
    pods_start_s: f64,
    hpa: Vec<HpaRun>,
}

/// The number of Running pods with label `app=NAME`.
async fn running(pods: &Api<Pod>, app: &str) -> Result<usize> {
    let l = pods
        .list(&ListParams::default().labels(&format!("app={app}")))
        .await?;
    Ok(l.items
        .iter()
        .filter(|p| pod_running(p) && p.metadata.deletion_timestamp.is_none())
        .count())
}

/// Deletes Deployment (and HPA) `name` and waits until its pods are gone.
async fn delete_workload(
    opts: &Opts,
    kubeconfig: &Path,
    client: &kube::Client,
    cluster: &mut Cluster,
    name: &str,
) -> Result<()> {
    let _ = kubectl(
        &opts.kubectl,
        kubeconfig,
        &["delete", "hpa", name, "--ignore-not-found"],
    )
    .await;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let _ = deployments.delete(name, &DeleteParams::default()).await;
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let selector = format!("app={name}");
    wait_for(
        &format!("pods of {name} gone"),
        Duration::from_secs(180),
        cluster,
        || async {
            let l = pods.list(&ListParams::default().labels(&selector)).await?;
            Ok(l.items.is_empty().then_some(()))
        },
    )
    .await
}

async fn measure(
    opts: &Opts,
    client: &kube::Client,
    dir: &Path,
    cluster: &mut Cluster,
    kubelet: SocketAddr,
    fig: &mut Figures,
) -> Result<()> {
    let kubeconfig = dir.join("server/kubeconfig.yaml");
    let tls = kubelet_client(&dir.join("server/server/tls"))?;
    let agent_pid = cluster.agent.pid();
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());

    // 1. Scrapes at 0 pods, then at opts.pods.
    fig.idle = scrape_rounds(opts, &tls, kubelet, agent_pid, 0).await?;
    println!("  starting {} pods", opts.pods);
    let t = Instant::now();
    let d: Deployment = serde_json::from_value(deployment_json(
        "idle",
        opts.pods,
        "sleep 3600",
        "1m",
        "1Mi",
        None,
    ))?;
    deployments.create(&PostParams::default(), &d).await?;
    let want = opts.pods;
    wait_for(
        &format!("{want} pods Running"),
        Duration::from_secs(900),
        cluster,
        || async { Ok((running(&pods, "idle").await? == want).then_some(())) },
    )
    .await?;
    fig.pods_start_s = t.elapsed().as_secs_f64();
    println!("  {want} pods Running after {:.1} s", fig.pods_start_s);
    // Let the start-up work (status updates, first samples) die down.
    tokio::time::sleep(Duration::from_secs(10)).await;
    fig.loaded = scrape_rounds(opts, &tls, kubelet, agent_pid, want).await?;
    println!("  deleting the {want} pods");
    delete_workload(opts, &kubeconfig, client, cluster, "idle").await?;

    // 2. HPA reaction time.
    for r in 0..opts.runs {
        let name = format!("burn{}", r + 1);
        let load = dir.join(format!("load-{}", r + 1));
        std::fs::create_dir_all(&load)?;
        std::fs::write(load.join("idle"), b"")?;
        let d: Deployment =
            serde_json::from_value(deployment_json(&name, 1, BURN, "100m", "16Mi", Some(&load)))?;
        deployments.create(&PostParams::default(), &d).await?;
        wait_for(
            &format!("{name} Running"),
            Duration::from_secs(120),
            cluster,
            || async { Ok((running(&pods, &name).await? == 1).then_some(())) },
        )
        .await?;
        kubectl(
            &opts.kubectl,
            &kubeconfig,
            &[
                "autoscale",
                "deployment",
                &name,
                "--cpu-percent=50",
                "--min=1",
                "--max=4",
            ],
        )
        .await?;
        let created = Instant::now();
        let settle = Duration::from_secs(opts.settle_s);
        let before = wait_for(
            &format!("hpa {name} settled"),
            settle + Duration::from_secs(120),
            cluster,
            || async {
                if created.elapsed() < settle {
                    return Ok(None);
                }
                let out = kubectl(
                    &opts.kubectl,
                    &kubeconfig,
                    &["get", "hpa", &name, "--no-headers"],
                )
                .await?;
                Ok(hpa_has_current(&out)
                    .then(|| out.split_whitespace().collect::<Vec<_>>().join(" ")))
            },
        )
        .await?;
        // Every run would otherwise start its load at the same phase of the
        // 15 s scrape and sync ticks (each run follows the last at fixed
        // delays), so the runs spread the start evenly over one period.
        let offset = phase_offset(r, opts.runs);
        tokio::time::sleep(offset).await;
        let replicas = |d: &Deployment| d.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        let now = deployments.get(&name).await?;
        if replicas(&now) != 1 {
            bail!("{name} has {} replicas before the load", replicas(&now));
        }
        // Load start.
        std::fs::remove_file(load.join("idle"))?;
        let t0 = Instant::now();
        let limit = Duration::from_secs(180);
        let scaled = loop {
            let d = deployments.get(&name).await?;
            if replicas(&d) > 1 {
                break replicas(&d);
            }
            cluster.check_alive()?;
            if t0.elapsed() > limit {
                bail!("{name} not scaled up within {} s", limit.as_secs());
            }
            tokio::time::sleep(POLL).await;
        };
        let run = HpaRun {
            reaction_s: t0.elapsed().as_secs_f64(),
            offset_s: offset.as_secs_f64(),
            replicas: scaled,
            before,
        };
        println!(
            "  hpa run {}: 1 → {} replicas {:.1} s after the load started (started {:.1} s after settling; before: {})",
            r + 1,
            run.replicas,
            run.reaction_s,
            run.offset_s,
            run.before
        );
        fig.hpa.push(run);
        delete_workload(opts, &kubeconfig, client, cluster, &name).await?;
    }
    Ok(())
}

/// Prints the table, the summaries and the one-line machine-readable record.
fn report(opts: &Opts, fig: &Figures) {
    let med =
        |runs: &[ScrapeRun], f: &dyn Fn(&ScrapeRun) -> f64| median(runs.iter().map(f).collect());
    let cpu0 = med(&fig.idle, &|s| s.cpu_per_scrape * 1e3);
    let cpu1 = med(&fig.loaded, &|s| s.cpu_per_scrape * 1e3);
    let net0 = med(&fig.idle, &|s| s.net_cpu_per_scrape(opts.scrapes) * 1e3);
    let net1 = med(&fig.loaded, &|s| s.net_cpu_per_scrape(opts.scrapes) * 1e3);
    let p50_0 = med(&fig.idle, &|s| s.p50_ms);
    let p99_0 = med(&fig.idle, &|s| s.p99_ms);
    let p50_1 = med(&fig.loaded, &|s| s.p50_ms);
    let p99_1 = med(&fig.loaded, &|s| s.p99_ms);
    let idle0 = med(&fig.idle, &|s| s.idle_cpu_rate * 1e3);
    let idle1 = med(&fig.loaded, &|s| s.idle_cpu_rate * 1e3);
    let n = opts.pods as f64;
    let per_pod = cpu1 / n;
    let marginal = (net1 - net0) / n;
    let reaction: Vec<f64> = fig.hpa.iter().map(|h| h.reaction_s).collect();
    let r_med = median(reaction.clone());
    let r_min = reaction.iter().copied().fold(f64::INFINITY, f64::min);
    let r_max = max(&reaction);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "results (medians of {} run(s); {} sequential scrapes per run, a fresh mTLS connection each):",
        opts.runs, opts.scrapes
    );
    println!(
        "  {:<34} {:>12} {:>12} {:>10} {:>10} {:>12}",
        "figure", "CPU ms/scr", "net ms/scr", "p50 ms", "p99 ms", "idle mCPU"
    );
    println!(
        "  {:<34} {cpu0:>12.3} {net0:>12.3} {p50_0:>10.2} {p99_0:>10.2} {idle0:>12.1}",
        "/metrics/resource at 0 pods"
    );
    println!(
        "  {:<34} {cpu1:>12.3} {net1:>12.3} {p50_1:>10.2} {p99_1:>10.2} {idle1:>12.1}",
        format!("/metrics/resource at {} pods", opts.pods)
    );
    println!(
        "  {:<34} {:>12} {r_med:>12.1} {r_min:>10.1} {r_max:>10.1}",
        "HPA load → scale-up s (med/min/max)",
        fig.hpa.len()
    );
    println!();
    println!(
        "  metrics collection: {cpu1:.3} ms agent CPU per scrape at {} pods ({:.1} µs per pod per scrape), {cpu0:.3} ms at 0 pods; marginal {:.1} µs per pod per scrape net of idle; p50/p99 {p50_1:.2}/{p99_1:.2} ms vs {p50_0:.2}/{p99_0:.2} ms; {} pods Running {:.0} s after the create",
        opts.pods,
        per_pod * 1e3,
        marginal * 1e3,
        opts.pods,
        fig.pods_start_s
    );
    println!(
        "  HPA reaction (15 s sync period, 15 s metric resolution): median {r_med:.1} s, min {r_min:.1} s, max {r_max:.1} s from load start to spec.replicas > 1 (per run, seconds after settling → reaction: {}; first scale-ups: {:?})",
        fig.hpa
            .iter()
            .map(|h| format!("+{:.1} → {:.1}", h.offset_s, h.reaction_s))
            .collect::<Vec<_>>()
            .join(", "),
        fig.hpa.iter().map(|h| h.replicas).collect::<Vec<_>>()
    );
    println!(
        "machine cores={cores} runs={} scrapes={} pods={} cpu_ms_per_scrape_0={cpu0:.3} cpu_ms_per_scrape_{}={cpu1:.3} net_cpu_ms_per_scrape_0={net0:.3} net_cpu_ms_per_scrape_{}={net1:.3} us_per_pod_per_scrape={:.2} marginal_us_per_pod_per_scrape={:.2} p50_ms_0={p50_0:.2} p99_ms_0={p99_0:.2} p50_ms_{}={p50_1:.2} p99_ms_{}={p99_1:.2} idle_mcpu_0={idle0:.1} idle_mcpu_{}={idle1:.1} hpa_reaction_s={r_med:.1} hpa_reaction_min_s={r_min:.1} hpa_reaction_max_s={r_max:.1}",
        opts.runs,
        opts.scrapes,
        opts.pods,
        opts.pods,
        opts.pods,
        per_pod * 1e3,
        marginal * 1e3,
        opts.pods,
        opts.pods,
        opts.pods
    );
}

// ------------------------------------------------------------------ cleanup

/// Deletes every Deployment, HPA and pod, waits (bounded) for the pods to go
/// so the agent stops their containers, then stops the agent and the server.
async fn cleanup(opts: &Opts, kubeconfig: &Path, client: &kube::Client, cluster: &mut Cluster) {
    let _ = kubectl(&opts.kubectl, kubeconfig, &["delete", "hpa", "--all"]).await;
    let deployments: Api<Deployment> = Api::default_namespaced(client.clone());
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let _ = deployments
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut deleted_pods = false;
    while Instant::now() < deadline && cluster.check_alive().is_ok() {
        match pods.list(&ListParams::default()).await {
            Ok(l) if l.items.is_empty() => break,
            Err(_) => break,
            _ => {
                // The ReplicaSets may outlive their Deployment for a moment.
                if !deleted_pods {
                    tokio::time::sleep(Duration::from_secs(2)).await;
                    let _ = pods
                        .delete_collection(&DeleteParams::default(), &ListParams::default())
                        .await;
                    deleted_pods = true;
                }
                tokio::time::sleep(Duration::from_millis(250)).await
            }
        }
    }
    cluster.agent.stop(Duration::from_secs(30));
    cluster.server.stop(Duration::from_secs(30));
}

async fn run(opts: Opts, mut signals: Signals) -> Result<()> {
    check_repo_root()?;
    check_built(&opts.skiff, "cargo build --release -p skiff")?;
    let dir = TempDir::new(env!("CARGO_PKG_NAME"))?;
    let kubelet_port = free_port()?;
    let kubelet = SocketAddr::new(opts.node_ip, kubelet_port);
    let setup = async {
        let skiff = private_skiff_with_busybox(&opts.skiff, &dir.0, &dir.0.join("agent"))?;
        start_cluster(&opts, &skiff, &dir.0, kubelet_port).await
    };
    let (mut cluster, client) = signals.unless_signalled(setup).await?;
    let mut fig = Figures::default();
    let limit = Duration::from_secs(opts.timeout_s);
    let outcome = signals
        .within(
            limit,
            measure(&opts, &client, &dir.0, &mut cluster, kubelet, &mut fig),
        )
        .await;
    if outcome.is_ok() {
        report(&opts, &fig);
    }
    println!("  cleaning up: deleting the workloads, stopping the agent and the server");
    let kubeconfig = dir.0.join("server/kubeconfig.yaml");
    signals
        .clean_up(cleanup(&opts, &kubeconfig, &client, &mut cluster))
        .await;
    drop(cluster);
    force_cleanup(&dir.0.join("agent/agent/containers/runc"), &dir.0);
    outcome
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = Opts::parse(&args, exe_dir().join("skiff"))?;
    println!(
        "skiff-bench-autoscale: agent CPU per /metrics/resource scrape at 0 and {} pods, HPA load → scale-up time (server + separate agent, real runc; {} run(s))",
        opts.pods, opts.runs
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
            &args("--runs 5 --scrapes 10 --pods 20 --settle 5 --node-ip 10.99.0.1"),
            "skiff".into(),
        )
        .unwrap();
        assert_eq!((o.runs, o.scrapes, o.pods, o.settle_s), (5, 10, 20, 5));
        assert_eq!(o.node_ip, "10.99.0.1".parse::<IpAddr>().unwrap());
        let d = Opts::parse(&[], "skiff".into()).unwrap();
        assert_eq!((d.runs, d.scrapes, d.pods, d.settle_s), (3, 200, 100, 40));
        for bad in ["--runs 0", "--runs", "--pods x", "--node-ip x", "--bogus 1"] {
            assert!(Opts::parse(&args(bad), "skiff".into()).is_err(), "{bad}");
        }
    }

    #[test]
    fn responses() {
        let raw = b"HTTP/1.0 200 OK\r\ncontent-type: text/plain\r\n\r\n# HELP x\nx 1\n";
        assert_eq!(split_response(raw).unwrap(), (200, "# HELP x\nx 1\n"));
        let raw = b"HTTP/1.1 403 Forbidden\r\n\r\nno";
        assert_eq!(split_response(raw).unwrap(), (403, "no"));
        assert!(split_response(b"HTTP/1.0 200 OK\r\n").is_err());
        assert!(split_response(b"garbage\r\n\r\n").is_err());
    }

    #[test]
    fn containers_on_a_page() {
        let page = "# HELP container_cpu_usage_seconds_total [STABLE] Cumulative cpu time consumed by the container in core-seconds\n\
                    # TYPE container_cpu_usage_seconds_total counter\n\
                    container_cpu_usage_seconds_total{container=\"a\",namespace=\"default\",pod=\"p1\"} 0.5 1700000000000\n\
                    container_cpu_usage_seconds_total{container=\"b\",namespace=\"default\",pod=\"p1\"} 0.25 1700000000000\n\
                    container_memory_working_set_bytes{container=\"a\",namespace=\"default\",pod=\"p1\"} 1e+06 1700000000000\n\
                    pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"p1\"} 0.75 1700000000000\n";
        assert_eq!(containers_listed(page), 2);
        assert_eq!(containers_listed(""), 0);
    }

    #[test]
    fn hpa_current_values() {
        let cases = [
            (
                "burn1   Deployment/burn1   cpu: 0%/50%   1   4   1   45s",
                true,
            ),
            (
                "burn1   Deployment/burn1   cpu: 250%/50%   1   4   1   45s",
                true,
            ),
            (
                "burn1   Deployment/burn1   cpu: <unknown>/50%   1   4   1   5s",
                false,
            ),
            ("burn1   Deployment/burn1   0%/50%   1   4   1   45s", true),
            ("", false),
        ];
        for (line, want) in cases {
            assert_eq!(hpa_has_current(line), want, "{line}");
        }
    }

    #[test]
    fn net_cost_subtracts_idle_time() {
        let r = ScrapeRun {
            cpu_per_scrape: 0.002,
            idle_cpu_rate: 0.01,
            wall_s: 2.0,
            ..ScrapeRun::default()
        };
        // 0.01 CPU-s/s over 2 s is 0.02 s, 0.0001 s per scrape of 200.
        assert!((r.net_cpu_per_scrape(200) - 0.0019).abs() < 1e-12);
    }

    #[test]
    fn load_starts_spread_over_one_period() {
        let got: Vec<Duration> = (0..3).map(|r| phase_offset(r, 3)).collect();
        assert_eq!(
            got,
            [0, 5, 10].map(Duration::from_secs).to_vec(),
            "3 runs start 0, 5 and 10 s after settling"
        );
        assert_eq!(phase_offset(0, 1), Duration::ZERO);
        assert_eq!(phase_offset(1, 2), Duration::from_millis(7500));
    }

    #[test]
    fn deployments() {
        let d: Deployment = serde_json::from_value(deployment_json(
            "burn1",
            1,
            BURN,
            "100m",
            "16Mi",
            Some(Path::new("/tmp/load")),
        ))
        .unwrap();
        let spec = d.spec.unwrap();
        assert_eq!(spec.replicas, Some(1));
        let pod = spec.template.spec.unwrap();
        let c = &pod.containers[0];
        let req = c.resources.as_ref().unwrap().requests.as_ref().unwrap();
        assert_eq!(req["cpu"].0, "100m");
        assert_eq!(c.volume_mounts.as_ref().unwrap()[0].mount_path, "/load");
        let vol = &pod.volumes.unwrap()[0];
        assert_eq!(vol.host_path.as_ref().unwrap().path, "/tmp/load");
        let idle: Deployment = serde_json::from_value(deployment_json(
            "idle",
            100,
            "sleep 3600",
            "1m",
            "1Mi",
            None,
        ))
        .unwrap();
        let spec = idle.spec.unwrap();
        assert_eq!(spec.replicas, Some(100));
        assert!(spec.template.spec.unwrap().volumes.is_none());
    }
}
