//! `skiff-bench-api`: a benchmark (not a test) of the skiff control plane.
//!
//! It starts release `skiff server --disable-agent` processes on 127.0.0.1
//! and measures, in one run:
//! - `ready`: spawn → `/readyz` 200, median of several fresh starts;
//! - `rss_idle`: VmRSS of the server one second after it is ready;
//! - `creates`: concurrent pod creates (creates/s, p50, p99);
//! - `rss_10k`: VmRSS once those pods exist;
//! - `list`: LIST of every pod as JSON, body read but not decoded;
//! - `watch`: fan-out of N creates to M concurrent watchers;
//! - the same creates, LIST and watch figures for skiff on etcd
//!   (`--datastore-endpoint`), on a 1-member and on a 3-member local etcd
//!   cluster (`--etcd-members`), each started fresh;
//! - the floor of each of those clusters, measured before skiff runs on it:
//!   puts of a stored pod's size through etcd's v3 JSON gateway, `Put` over
//!   gRPC, and over gRPC the create transaction skiff's store sends, all with
//!   the same concurrency as the creates.
//!
//! The servers run the scheduler (with no nodes it marks every pod
//! unschedulable and records an event: three writes per create) unless
//! `--disable-scheduler` is given.
//!
//! Every process it starts is killed and every directory it makes is removed
//! when the run ends, on failure and on Ctrl-C/SIGTERM too. See
//! `bench/README.md` for what each figure means.

use anyhow::{Context, Result, anyhow, bail};
use base64::Engine as _;
use http::{Method, Request, StatusCode, header};
use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use k8s_openapi::api::core::v1::{Container, Pod, PodSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;

/// Goals from `shared/design/PERFORMANCE.md`, printed next to the figures.
const GOAL_CREATES_PER_S: f64 = 5000.0;
const GOAL_CREATE_P99_MS: f64 = 50.0;
const GOAL_LIST_10K_MS: f64 = 100.0;
const GOAL_READY_MS: f64 = 300.0;
const GOAL_RSS_IDLE_MB: f64 = 50.0;

/// Namespaces the bulk creates are spread over.
const NAMESPACES: usize = 4;
/// The namespace the watch fan-out runs in (empty before it starts).
const WATCH_NS: &str = "bench-watch";

/// Run parameters (flags with the brief's defaults).
#[derive(Debug, Clone, PartialEq)]
struct Opts {
    skiff: PathBuf,
    etcd: String,
    starts: usize,
    pods: usize,
    clients: usize,
    lists: usize,
    watchers: usize,
    watch_events: usize,
    etcd_puts: usize,
    skip_etcd: bool,
    /// Start every skiff server with `--disable-scheduler`, so that a create
    /// is the only write (no unschedulable status, no event per pod).
    disable_scheduler: bool,
    /// Sizes of the etcd clusters to run, in order (default 1 and 3).
    etcd_members: Vec<usize>,
}

impl Opts {
    fn parse(args: &[String], default_skiff: PathBuf) -> Result<Opts> {
        let mut o = Opts {
            skiff: default_skiff,
            etcd: "etcd".into(),
            starts: 7,
            pods: 10_000,
            clients: 16,
            lists: 10,
            watchers: 100,
            watch_events: 1_000,
            etcd_puts: 10_000,
            skip_etcd: false,
            disable_scheduler: false,
            etcd_members: vec![1, 3],
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--skip-etcd" {
                o.skip_etcd = true;
                continue;
            }
            if flag == "--disable-scheduler" {
                o.disable_scheduler = true;
                continue;
            }
            if flag == "-h" || flag == "--help" {
                bail!(
                    "usage: skiff-bench-api [--skiff PATH] [--etcd PATH] [--starts N] [--pods N] \
                     [--clients N] [--lists N] [--watchers N] [--watch-events N] [--etcd-puts N] \
                     [--etcd-members N[,N…]] [--skip-etcd] [--disable-scheduler]"
                );
            }
            let value = it.next().with_context(|| format!("{flag} needs a value"))?;
            let num = || -> Result<usize> {
                let n: usize = value
                    .parse()
                    .with_context(|| format!("{flag} {value:?}: not a number"))?;
                if n == 0 {
                    bail!("{flag} must be at least 1");
                }
                Ok(n)
            };
            match flag.as_str() {
                "--skiff" => o.skiff = PathBuf::from(value),
                "--etcd" => o.etcd = value.clone(),
                "--starts" => o.starts = num()?,
                "--pods" => o.pods = num()?,
                "--clients" => o.clients = num()?,
                "--lists" => o.lists = num()?,
                "--watchers" => o.watchers = num()?,
                "--watch-events" => o.watch_events = num()?,
                "--etcd-puts" => o.etcd_puts = num()?,
                "--etcd-members" => o.etcd_members = parse_members(value)?,
                _ => bail!("unknown flag {flag:?} (try --help)"),
            }
        }
        Ok(o)
    }
}

/// `1,3` → `[1, 3]`: etcd cluster sizes, each 1 to 7 members.
fn parse_members(value: &str) -> Result<Vec<usize>> {
    let sizes = value
        .split(',')
        .map(|part| match part.trim().parse::<usize>() {
            Ok(n) if (1..=7).contains(&n) => Ok(n),
            _ => bail!("--etcd-members {value:?}: each size must be a number from 1 to 7"),
        })
        .collect::<Result<Vec<usize>>>()?;
    Ok(sizes)
}

// ---------------------------------------------------------------- helpers

/// The value at percentile `p` (0–100) of sorted samples, nearest-rank.
fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `VmRSS` in MiB from the text of `/proc/PID/status`.
fn parse_vmrss_mib(status: &str) -> Option<f64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn rss_mib(pid: u32) -> Result<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    parse_vmrss_mib(&status).context("no VmRSS line")
}

/// User + system CPU time in clock ticks from the text of `/proc/PID/stat`.
fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    // Fields after the command name (which may hold spaces) start at field 3.
    let rest = &stat[stat.rfind(')')? + 1..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

/// CPU time used so far by `pid` (`None`: this process), in ms. Linux's
/// USER_HZ is 100 on every architecture the benchmark runs on.
fn cpu_ms(pid: Option<u32>) -> f64 {
    let path = pid.map_or("/proc/self/stat".to_string(), |p| format!("/proc/{p}/stat"));
    std::fs::read_to_string(path)
        .ok()
        .and_then(|s| parse_cpu_ticks(&s))
        .map_or(f64::NAN, |t| t as f64 * 10.0)
}

/// CPU used by the server, by the etcd members (if any) and by the
/// benchmark itself during a phase.
struct CpuMeter {
    server: Option<(u32, f64)>,
    etcd: Vec<(u32, f64)>,
    bench: f64,
}

impl CpuMeter {
    fn start(server: Option<u32>, etcd: &[u32]) -> CpuMeter {
        CpuMeter {
            server: server.map(|pid| (pid, cpu_ms(Some(pid)))),
            etcd: etcd.iter().map(|&pid| (pid, cpu_ms(Some(pid)))).collect(),
            bench: cpu_ms(None),
        }
    }

    /// `cpu: server N ms, etcd N ms, bench client N ms` since `start`.
    fn report(&self) -> String {
        let mut parts = Vec::new();
        if let Some((pid, t0)) = self.server {
            parts.push(format!("server {:.0} ms", cpu_ms(Some(pid)) - t0));
        }
        if !self.etcd.is_empty() {
            let used: f64 = self
                .etcd
                .iter()
                .map(|&(pid, t0)| cpu_ms(Some(pid)) - t0)
                .sum();
            parts.push(format!("etcd {used:.0} ms ({} members)", self.etcd.len()));
        }
        parts.push(format!("bench client {:.0} ms", cpu_ms(None) - self.bench));
        format!("cpu: {}", parts.join(", "))
    }
}

/// `MemTotal` in GiB from the text of `/proc/meminfo`.
fn parse_memtotal_gib(meminfo: &str) -> Option<f64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0 / 1024.0)
}

/// `ok` or `MISS` against a goal (`lower` = smaller is better).
fn verdict(value: f64, goal: f64, lower: bool) -> &'static str {
    let ok = if lower { value <= goal } else { value >= goal };
    if ok { "ok" } else { "MISS" }
}

/// A directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Result<TempDir> {
        static SEQ: AtomicUsize = AtomicUsize::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let p = std::env::temp_dir().join(format!("skiff-bench-{}-{tag}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A child process with its own temp dir: killed, reaped and the dir
/// removed on drop.
struct Proc {
    child: Child,
    dir: TempDir,
    log: PathBuf,
}

impl Proc {
    fn spawn(cmd: &mut Command, dir: TempDir) -> Result<Proc> {
        let log = dir.0.join("output.log");
        let out = std::fs::File::create(&log)?;
        let child = cmd
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("spawning {:?}", cmd.get_program()))?;
        Ok(Proc { child, dir, log })
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Fails with the process's output if it has exited.
    fn check_alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            let out = std::fs::read_to_string(&self.log).unwrap_or_default();
            bail!("process exited ({status}); its output:\n{out}");
        }
        Ok(())
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        // `dir` is removed after this, once the process is gone.
    }
}

/// A port on 127.0.0.1 that was free a moment ago.
fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")?;
    Ok(l.local_addr()?.port())
}

// ------------------------------------------------------ readiness probe

/// Accepts any server certificate: each fresh server makes a new CA, and the
/// probe must be built before the server exists to keep its set-up cost out
/// of the start-up figure. Only `/readyz` (public) goes through it.
#[derive(Debug)]
struct AnyCert(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCert {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn probe_connector() -> Result<tokio_rustls::TlsConnector> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyCert(provider)))
        .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// One `GET /readyz` on a new connection: TCP connect, TLS handshake, request.
async fn probe_readyz(tls: &tokio_rustls::TlsConnector, port: u16) -> Result<StatusCode> {
    let tcp = TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.set_nodelay(true)?;
    let name = rustls::pki_types::ServerName::try_from("localhost")?;
    let stream = tls.connect(name, tcp).await?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    let req = Request::get("/readyz")
        .header(header::HOST, "localhost")
        .body(Empty::<Bytes>::new())?;
    let res = send.send_request(req).await?;
    Ok(res.status())
}

/// Starts a fresh `skiff server --disable-agent` (on etcd at `endpoints`
/// if given, else on SQLite in its data dir) and returns it with the time
/// from spawn to the first `/readyz` 200.
async fn start_skiff(
    opts: &Opts,
    tls: &tokio_rustls::TlsConnector,
    endpoints: Option<&[String]>,
) -> Result<(Proc, Duration)> {
    let dir = TempDir::new("skiff")?;
    let port = free_port()?;
    let data = dir.0.join("data");
    let mut cmd = Command::new(&opts.skiff);
    cmd.arg("server")
        .arg("--disable-agent")
        .arg("--data-dir")
        .arg(&data)
        .arg("--bind-address")
        .arg("127.0.0.1")
        .arg("--https-listen-port")
        .arg(port.to_string());
    if let Some(endpoints) = endpoints {
        cmd.arg("--datastore-endpoint").arg(endpoints.join(","));
    }
    if opts.disable_scheduler {
        cmd.arg("--disable-scheduler");
    }
    let t0 = Instant::now();
    let mut proc = Proc::spawn(&mut cmd, dir)?;
    let deadline = t0 + Duration::from_secs(30);
    loop {
        if let Ok(Ok(StatusCode::OK)) =
            tokio::time::timeout(Duration::from_secs(2), probe_readyz(tls, port)).await
        {
            let took = t0.elapsed();
            return Ok((proc, took));
        }
        proc.check_alive().context("skiff server")?;
        if Instant::now() > deadline {
            bail!("skiff server not ready after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

// ----------------------------------------------------------- kube client

async fn kube_client(kubeconfig: &Path) -> Result<kube::Client> {
    let kc = kube::config::Kubeconfig::read_from(kubeconfig)?;
    let config =
        kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
            .await?;
    Ok(kube::Client::try_from(config)?)
}

/// Sends a request and reads the whole body, undecoded.
async fn send(
    client: &kube::Client,
    method: Method,
    uri: &str,
    body: Vec<u8>,
) -> Result<(StatusCode, Bytes)> {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header(header::ACCEPT, "application/json")
        .header(header::CONTENT_TYPE, "application/json")
        .body(kube::client::Body::from(body))?;
    let res = client.send(req).await?;
    let status = res.status();
    let bytes = res.into_body().collect().await?.to_bytes();
    Ok((status, bytes))
}

/// A one-container busybox pod as JSON.
fn pod_json(name: &str) -> Vec<u8> {
    let pod = Pod {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            labels: Some(BTreeMap::from([("app".to_string(), "bench".to_string())])),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some("busybox:1.36".into()),
                command: Some(vec!["sleep".into(), "3600".into()]),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    serde_json::to_vec(&pod).expect("a pod serialises")
}

async fn create_namespace(client: &kube::Client, name: &str) -> Result<()> {
    let body = serde_json::to_vec(&serde_json::json!({
        "apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}
    }))?;
    let (status, text) = send(client, Method::POST, "/api/v1/namespaces", body).await?;
    if status != StatusCode::CREATED {
        bail!(
            "creating namespace {name}: {status}: {}",
            String::from_utf8_lossy(&text)
        );
    }
    Ok(())
}

/// Latencies (ms) and failures of a batch of concurrent operations.
struct Batch {
    latencies_ms: Vec<f64>,
    wall: Duration,
    errors: usize,
    first_errors: Vec<String>,
    sample_body: Option<Bytes>,
}

impl Batch {
    fn rate(&self) -> f64 {
        self.latencies_ms.len() as f64 / self.wall.as_secs_f64()
    }
}

/// Runs `total` operations over `clients` concurrent workers; `op(i)` does
/// operation `i` and returns its response body on success.
async fn run_batch<F, Fut>(total: usize, clients: usize, op: F) -> Batch
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<Bytes>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let op = Arc::new(op);
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let next = next.clone();
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errs = Vec::new();
            let mut sample = None;
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    break;
                }
                let t = Instant::now();
                match op(i).await {
                    Ok(body) => {
                        lat.push(ms(t.elapsed()));
                        if sample.is_none() {
                            sample = Some(body);
                        }
                    }
                    Err(e) => errs.push(format!("#{i}: {e:#}")),
                }
            }
            (lat, errs, sample)
        }));
    }
    let mut batch = Batch {
        latencies_ms: Vec::with_capacity(total),
        wall: Duration::ZERO,
        errors: 0,
        first_errors: Vec::new(),
        sample_body: None,
    };
    for t in tasks {
        match t.await {
            Ok((lat, errs, sample)) => {
                batch.latencies_ms.extend(lat);
                batch.errors += errs.len();
                batch
                    .first_errors
                    .extend(errs.into_iter().take(5 - batch.first_errors.len().min(5)));
                if batch.sample_body.is_none() {
                    batch.sample_body = sample;
                }
            }
            Err(e) => {
                batch.errors += 1;
                batch.first_errors.push(format!("worker panicked: {e}"));
            }
        }
    }
    batch.wall = t0.elapsed();
    batch.latencies_ms = sorted(std::mem::take(&mut batch.latencies_ms));
    batch
}

async fn create_pods(
    client: &kube::Client,
    namespaces: Vec<String>,
    prefix: &str,
    total: usize,
    clients: usize,
) -> Batch {
    let client = client.clone();
    let prefix = prefix.to_string();
    let namespaces = Arc::new(namespaces);
    run_batch(total, clients, move |i| {
        let client = client.clone();
        let ns = namespaces[i % namespaces.len()].clone();
        let name = format!("{prefix}-{i:06}");
        async move {
            let uri = format!("/api/v1/namespaces/{ns}/pods");
            let (status, body) = send(&client, Method::POST, &uri, pod_json(&name)).await?;
            if status != StatusCode::CREATED {
                bail!(
                    "POST {uri} {name}: {status}: {}",
                    String::from_utf8_lossy(&body)
                );
            }
            Ok(body)
        }
    })
    .await
}

fn report_errors(what: &str, b: &Batch) -> Result<()> {
    if b.errors > 0 {
        println!("{what}: {} errors; first ones:", b.errors);
        for e in &b.first_errors {
            println!("  {e}");
        }
        if b.errors * 100 > b.latencies_ms.len() + b.errors {
            bail!("{what}: more than 1% of operations failed");
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- watch

/// Opens a watch from `rv` on `WATCH_NS` and returns once the server has
/// answered with headers; the returned task counts ADDED events and yields
/// the instant it saw the `want`-th.
async fn open_watcher(
    client: kube::Client,
    rv: String,
    want: usize,
) -> Result<tokio::task::JoinHandle<Result<Instant>>> {
    let uri = format!(
        "/api/v1/namespaces/{WATCH_NS}/pods?watch=1&resourceVersion={rv}&allowWatchBookmarks=false&timeoutSeconds=300"
    );
    let req = Request::get(uri.as_str())
        .header(header::ACCEPT, "application/json")
        .body(kube::client::Body::empty())?;
    let res = client.send(req).await?;
    if res.status() != StatusCode::OK {
        let status = res.status();
        let body = res.into_body().collect().await?.to_bytes();
        bail!("GET {uri}: {status}: {}", String::from_utf8_lossy(&body));
    }
    let mut body = res.into_body();
    Ok(tokio::spawn(async move {
        let mut seen = 0usize;
        let mut line: Vec<u8> = Vec::with_capacity(4096);
        while let Some(frame) = body.frame().await {
            let frame = frame?;
            let Some(data) = frame.data_ref() else {
                continue;
            };
            for chunk in data.split_inclusive(|b| *b == b'\n') {
                line.extend_from_slice(chunk);
                if line.last() != Some(&b'\n') {
                    continue;
                }
                // The scheduler marks each pod unschedulable (no nodes run
                // here), so MODIFIED events follow the ADDED ones.
                if line.starts_with(br#"{"type":"ADDED""#) {
                    seen += 1;
                } else if !line.starts_with(br#"{"type":"BOOKMARK""#)
                    && !line.starts_with(br#"{"type":"MODIFIED""#)
                {
                    let text = String::from_utf8_lossy(&line);
                    bail!(
                        "unexpected watch event after {seen}: {}",
                        text.chars().take(300).collect::<String>()
                    );
                }
                line.clear();
                if seen >= want {
                    return Ok(Instant::now());
                }
            }
        }
        bail!("watch ended after {seen} of {want} events")
    }))
}

/// Result of the watch fan-out.
struct WatchResult {
    per_watcher_ms: Vec<f64>,
    total_ms: f64,
    creates: Batch,
}

async fn watch_fanout(client: &kube::Client, opts: &Opts) -> Result<WatchResult> {
    let (status, body) = send(
        client,
        Method::GET,
        &format!("/api/v1/namespaces/{WATCH_NS}/pods?limit=1"),
        Vec::new(),
    )
    .await?;
    if status != StatusCode::OK {
        bail!("list {WATCH_NS}: {status}");
    }
    let list: serde_json::Value = serde_json::from_slice(&body)?;
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .context("list has no resourceVersion")?
        .to_string();
    let mut opening = Vec::new();
    for _ in 0..opts.watchers {
        opening.push(tokio::spawn(open_watcher(
            client.clone(),
            rv.clone(),
            opts.watch_events,
        )));
    }
    let mut watchers = Vec::new();
    for o in opening {
        watchers.push(o.await??);
    }
    let t0 = Instant::now();
    let creates = create_pods(
        client,
        vec![WATCH_NS.to_string()],
        "w",
        opts.watch_events,
        opts.clients,
    )
    .await;
    report_errors("watch creates", &creates)?;
    let mut per = Vec::new();
    for w in watchers {
        let done = tokio::time::timeout(Duration::from_secs(120), w)
            .await
            .map_err(|_| anyhow!("a watcher did not see all events within 120 s"))???;
        per.push(ms(done.saturating_duration_since(t0)));
    }
    let per = sorted(per);
    let total_ms = *per.last().unwrap_or(&f64::NAN);
    Ok(WatchResult {
        per_watcher_ms: per,
        total_ms,
        creates,
    })
}

// ------------------------------------------------------------------ etcd

/// A local etcd cluster of one or more members on 127.0.0.1, each its own
/// process with its own data dir; every member is killed and its dir removed
/// on drop.
struct EtcdCluster {
    members: Vec<Proc>,
    /// `http://127.0.0.1:PORT` of each member, in member order.
    client_urls: Vec<String>,
    /// Spawn of the first member → every member reports `{"health":"true"}`.
    ready_ms: f64,
    /// A gRPC client balanced over every member (as skiff's store connects).
    grpc: etcd_client::Client,
    http: hyper_util::client::legacy::Client<
        hyper_util::client::legacy::connect::HttpConnector,
        Full<Bytes>,
    >,
}

/// `m0=http://…,m1=http://…`: the `--initial-cluster` value.
fn initial_cluster(peer_urls: &[String]) -> String {
    peer_urls
        .iter()
        .enumerate()
        .map(|(i, url)| format!("m{i}={url}"))
        .collect::<Vec<_>>()
        .join(",")
}

impl EtcdCluster {
    /// Starts `n` members forming one new cluster, with etcd's default
    /// durability (fsync of the WAL before a write is acknowledged).
    async fn start(opts: &Opts, n: usize) -> Result<EtcdCluster> {
        let mut client_urls = Vec::new();
        let mut peer_urls = Vec::new();
        for _ in 0..n {
            client_urls.push(format!("http://127.0.0.1:{}", free_port()?));
            peer_urls.push(format!("http://127.0.0.1:{}", free_port()?));
        }
        let cluster = initial_cluster(&peer_urls);
        let token = format!("skiff-bench-{}-{n}", std::process::id());
        let t0 = Instant::now();
        let mut members = Vec::new();
        for i in 0..n {
            let dir = TempDir::new(&format!("etcd{n}-m{i}"))?;
            let mut cmd = Command::new(&opts.etcd);
            cmd.arg("--data-dir")
                .arg(dir.0.join("data"))
                .args(["--name", &format!("m{i}")])
                .args(["--listen-client-urls", &client_urls[i]])
                .args(["--advertise-client-urls", &client_urls[i]])
                .args(["--listen-peer-urls", &peer_urls[i]])
                .args(["--initial-advertise-peer-urls", &peer_urls[i]])
                .args(["--initial-cluster", &cluster])
                .args(["--initial-cluster-token", &token])
                .args(["--initial-cluster-state", "new"])
                .args(["--logger", "zap", "--log-outputs", "stderr"]);
            members.push(Proc::spawn(&mut cmd, dir)?);
        }
        let http =
            hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
                .build_http::<Full<Bytes>>();
        for (i, url) in client_urls.iter().enumerate() {
            let health: http::Uri = format!("{url}/health").parse()?;
            loop {
                let ok =
                    match tokio::time::timeout(Duration::from_secs(2), http.get(health.clone()))
                        .await
                    {
                        Ok(Ok(res)) if res.status() == StatusCode::OK => {
                            let b = res.into_body().collect().await?.to_bytes();
                            b.windows(6).any(|w| w == b"\"true\"")
                        }
                        _ => false,
                    };
                if ok {
                    break;
                }
                members[i]
                    .check_alive()
                    .with_context(|| format!("etcd member m{i} of {n}"))?;
                if t0.elapsed() > Duration::from_secs(30) {
                    bail!("etcd member m{i} of {n} not healthy after 30 s");
                }
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        }
        let ready_ms = ms(t0.elapsed());
        let grpc = etcd_client::Client::connect(&client_urls, None)
            .await
            .context("gRPC connect to etcd")?;
        Ok(EtcdCluster {
            members,
            client_urls,
            ready_ms,
            grpc,
            http,
        })
    }

    fn pids(&self) -> Vec<u32> {
        self.members.iter().map(Proc::pid).collect()
    }

    /// The cluster's current revision.
    async fn revision(&self) -> Result<i64> {
        let options = etcd_client::GetOptions::new().with_count_only();
        let res = self.grpc.kv_client().get("/", Some(options)).await?;
        Ok(res.header().context("no header")?.revision())
    }

    /// Handled gRPC calls by method, summed over the members.
    async fn grpc_calls(&self) -> Result<BTreeMap<String, f64>> {
        let mut total = BTreeMap::new();
        for url in &self.client_urls {
            let res = self.http.get(format!("{url}/metrics").parse()?).await?;
            let text = res.into_body().collect().await?.to_bytes();
            for (m, v) in parse_grpc_handled(&String::from_utf8_lossy(&text)) {
                *total.entry(m).or_insert(0.0) += v;
            }
        }
        Ok(total)
    }

    fn check_alive(&mut self) -> Result<()> {
        for (i, m) in self.members.iter_mut().enumerate() {
            m.check_alive()
                .with_context(|| format!("etcd member m{i}"))?;
        }
        Ok(())
    }
}

/// Raw etcd write throughput on one cluster: the floor under skiff on it.
struct EtcdFloor {
    /// `POST /v3/kv/put` through the JSON gateway, spread over the members.
    gateway_put: Batch,
    /// `Put` over gRPC, one balanced client shared by every worker.
    grpc_put: Batch,
    /// Over gRPC, the transaction skiff's store sends for a create:
    /// `create_revision(key) == 0 → put`.
    grpc_txn: Batch,
    /// The same transactions while one watch with previous values follows
    /// their prefix, as skiff's watch cache follows `/registry/`.
    grpc_txn_watched: Batch,
    value_bytes: usize,
}

/// A key of the same length as a pod's in skiff (`/registry/pods/NS/NAME`),
/// outside `/registry/` so skiff never reads it.
fn floor_key(kind: &str, i: usize) -> String {
    format!("/bench/floor-{kind}/bench-{}/pod-{i:06}", i % NAMESPACES)
}

/// Handled gRPC calls by method (`Range`, `Txn`, …) from the text of an etcd
/// `/metrics` page: the `grpc_server_handled_total` counters summed over
/// result codes.
fn parse_grpc_handled(metrics: &str) -> BTreeMap<String, f64> {
    let mut calls = BTreeMap::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("grpc_server_handled_total{") else {
            continue;
        };
        let Some((labels, value)) = rest.rsplit_once("} ") else {
            continue;
        };
        let method = labels
            .split(',')
            .find_map(|l| l.strip_prefix("grpc_method=\""))
            .and_then(|m| m.strip_suffix('"'));
        if let (Some(method), Ok(value)) = (method, value.trim().parse::<f64>()) {
            *calls.entry(method.to_string()).or_insert(0.0) += value;
        }
    }
    calls
}

/// `after - before` per `per`, for the methods that were called, as
/// `Range 1.00, Txn 1.00`.
fn calls_per(before: &BTreeMap<String, f64>, after: &BTreeMap<String, f64>, per: usize) -> String {
    after
        .iter()
        .map(|(m, v)| (m, (v - before.get(m).unwrap_or(&0.0)) / per as f64))
        .filter(|(_, d)| *d > 0.0)
        .map(|(m, d)| format!("{m} {d:.2}"))
        .collect::<Vec<_>>()
        .join(", ")
}

async fn etcd_floor(
    opts: &Opts,
    cluster: &EtcdCluster,
    value: Bytes,
    label: &str,
) -> Result<EtcdFloor> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let value_b64 = Arc::new(b64.encode(&value));
    let puts: Arc<Vec<http::Uri>> = Arc::new(
        cluster
            .client_urls
            .iter()
            .map(|u| format!("{u}/v3/kv/put").parse())
            .collect::<std::result::Result<_, _>>()?,
    );
    let http = cluster.http.clone();
    let cpu = CpuMeter::start(None, &cluster.pids());
    let gateway_put = run_batch(opts.etcd_puts, opts.clients, move |i| {
        let http = http.clone();
        let put = puts[i % puts.len()].clone();
        let value_b64 = value_b64.clone();
        async move {
            let key = base64::engine::general_purpose::STANDARD.encode(floor_key("gw", i));
            let body = format!(r#"{{"key":"{key}","value":"{value_b64}"}}"#);
            let req = Request::post(put)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Full::new(Bytes::from(body)))?;
            let res = http.request(req).await?;
            let status = res.status();
            let b = res.into_body().collect().await?.to_bytes();
            if status != StatusCode::OK || !b.starts_with(br#"{"header""#) {
                bail!("etcd put: {status}: {}", String::from_utf8_lossy(&b));
            }
            Ok(b)
        }
    })
    .await;
    report_errors("etcd gateway puts", &gateway_put)?;
    print_floor(
        label,
        "gateway /v3/kv/put",
        &gateway_put,
        &value,
        opts,
        &cpu,
    );

    let kv = cluster.grpc.kv_client();
    let v = value.clone();
    let cpu = CpuMeter::start(None, &cluster.pids());
    let grpc_put = run_batch(opts.etcd_puts, opts.clients, move |i| {
        let mut kv = kv.clone();
        let v = v.to_vec();
        async move {
            kv.put(floor_key("put", i), v, None).await?;
            Ok(Bytes::new())
        }
    })
    .await;
    report_errors("etcd gRPC puts", &grpc_put)?;
    print_floor(label, "gRPC Put", &grpc_put, &value, opts, &cpu);

    let cpu = CpuMeter::start(None, &cluster.pids());
    let grpc_txn = create_txns(cluster, "txn", &value, opts).await;
    report_errors("etcd gRPC create txns", &grpc_txn)?;
    print_floor(label, "gRPC create Txn", &grpc_txn, &value, opts, &cpu);

    let watcher = watch_floor(cluster, "/bench/floor-wtxn/", opts.etcd_puts).await?;
    let cpu = CpuMeter::start(None, &cluster.pids());
    let grpc_txn_watched = create_txns(cluster, "wtxn", &value, opts).await;
    report_errors("etcd gRPC create txns under a watch", &grpc_txn_watched)?;
    tokio::time::timeout(Duration::from_secs(60), watcher)
        .await
        .map_err(|_| anyhow!("the etcd watch did not see every create within 60 s"))???;
    print_floor(
        label,
        "gRPC create Txn + 1 watch with prev_kv",
        &grpc_txn_watched,
        &value,
        opts,
        &cpu,
    );
    Ok(EtcdFloor {
        gateway_put,
        grpc_put,
        grpc_txn,
        grpc_txn_watched,
        value_bytes: value.len(),
    })
}

/// `opts.etcd_puts` create transactions of `value` (the transaction
/// skiff's store sends for a create) on new keys under `/bench/floor-KIND/`.
async fn create_txns(
    cluster: &EtcdCluster,
    kind: &'static str,
    value: &Bytes,
    opts: &Opts,
) -> Batch {
    let kv = cluster.grpc.kv_client();
    let v = value.clone();
    run_batch(opts.etcd_puts, opts.clients, move |i| {
        let mut kv = kv.clone();
        let v = v.to_vec();
        async move {
            use etcd_client::{Compare, CompareOp, Txn, TxnOp};
            let key = floor_key(kind, i);
            let txn = Txn::new()
                .when([Compare::create_revision(key.as_str(), CompareOp::Equal, 0)])
                .and_then([TxnOp::put(key.as_str(), v, None)]);
            if !kv.txn(txn).await?.succeeded() {
                bail!("create txn of {key} failed its comparison");
            }
            Ok(Bytes::new())
        }
    })
    .await
}

/// Opens a watch with previous values on `prefix` (as skiff's store does)
/// and returns once etcd has set it up; the task ends after `want` events.
async fn watch_floor(
    cluster: &EtcdCluster,
    prefix: &str,
    want: usize,
) -> Result<tokio::task::JoinHandle<Result<()>>> {
    let mut end = prefix.as_bytes().to_vec();
    *end.last_mut().context("empty prefix")? += 1;
    let options = etcd_client::WatchOptions::new()
        .with_range(end)
        .with_prev_key();
    let mut stream = cluster
        .grpc
        .watch_client()
        .watch(prefix, Some(options))
        .await?;
    let created = stream.message().await?.context("watch closed at once")?;
    if created.canceled() {
        bail!("etcd cancelled the floor watch");
    }
    Ok(tokio::spawn(async move {
        let mut seen = created.events().len();
        while seen < want {
            let response = stream.message().await?.context("watch ended early")?;
            seen += response.events().len();
        }
        Ok(())
    }))
}

fn print_floor(label: &str, what: &str, b: &Batch, value: &Bytes, opts: &Opts, cpu: &CpuMeter) {
    println!(
        "[{label}] floor {what}: {} writes of {} bytes by {} clients in {:.2} s = {:.0}/s; p50 {:.2} ms, p99 {:.2} ms; {}",
        b.latencies_ms.len(),
        value.len(),
        opts.clients,
        b.wall.as_secs_f64(),
        b.rate(),
        percentile(&b.latencies_ms, 50.0),
        percentile(&b.latencies_ms, 99.0),
        cpu.report()
    );
}

// ---------------------------------------------------------- one server

/// What one skiff server did, from its first create to the end of the
/// watch run.
struct ServerFigures {
    ready_ms: f64,
    creates: Batch,
    stored_pod: Bytes,
    rss_10k: f64,
    lists: Vec<f64>,
    watch: WatchResult,
    /// etcd revisions used during the create phase per create (NaN on SQLite).
    revs_per_create: f64,
}

impl ServerFigures {
    fn p(&self, p: f64) -> f64 {
        percentile(&self.creates.latencies_ms, p)
    }

    fn list_ms(&self) -> f64 {
        percentile(&self.lists, 50.0)
    }

    fn list_max_ms(&self) -> f64 {
        percentile(&self.lists, 100.0)
    }
}

/// Creates, LISTs and the watch fan-out against a ready `server`; prints a
/// line per figure prefixed with `[label]`.
async fn measure_server(
    opts: &Opts,
    label: &str,
    server: &mut Proc,
    ready_ms: f64,
    etcd: Option<&EtcdCluster>,
) -> Result<ServerFigures> {
    let etcd_pids = etcd.map(EtcdCluster::pids).unwrap_or_default();
    let client = kube_client(&server.dir.0.join("data").join("kubeconfig.yaml")).await?;
    let namespaces: Vec<String> = (0..NAMESPACES).map(|i| format!("bench-{i}")).collect();
    for ns in namespaces.iter().map(String::as_str).chain([WATCH_NS]) {
        create_namespace(&client, ns).await?;
    }

    // creates.
    let rev0 = match etcd {
        Some(e) => Some((e.revision().await?, e.grpc_calls().await?)),
        None => None,
    };
    let cpu = CpuMeter::start(Some(server.pid()), &etcd_pids);
    let creates = create_pods(&client, namespaces, "pod", opts.pods, opts.clients).await;
    let creates_cpu = cpu.report();
    let (revs_per_create, calls) = match (etcd, rev0) {
        (Some(e), Some((rev0, calls0))) => (
            (e.revision().await? - rev0) as f64 / opts.pods as f64,
            calls_per(&calls0, &e.grpc_calls().await?, opts.pods),
        ),
        _ => (f64::NAN, String::new()),
    };
    report_errors("creates", &creates)?;
    let c_rate = creates.rate();
    let c_p50 = percentile(&creates.latencies_ms, 50.0);
    let c_p99 = percentile(&creates.latencies_ms, 99.0);
    let stored_pod = creates.sample_body.clone().unwrap_or_default();
    println!(
        "[{label}] creates: {} pods by {} clients in {:.2} s = {c_rate:.0}/s   goal >= {GOAL_CREATES_PER_S}/s [{}]",
        creates.latencies_ms.len(),
        opts.clients,
        creates.wall.as_secs_f64(),
        verdict(c_rate, GOAL_CREATES_PER_S, false)
    );
    println!(
        "[{label}] create latency: p50 {c_p50:.2} ms, p99 {c_p99:.2} ms, max {:.2} ms   goal p99 <= {GOAL_CREATE_P99_MS} ms [{}]",
        percentile(&creates.latencies_ms, 100.0),
        verdict(c_p99, GOAL_CREATE_P99_MS, true)
    );
    println!("[{label}] creates {creates_cpu}");
    if etcd.is_some() {
        println!(
            "[{label}] etcd revisions during the creates: {revs_per_create:.3} per create; \
             gRPC calls handled per create: {calls}"
        );
    }
    println!(
        "[{label}] stored pod: {} bytes as returned",
        stored_pod.len()
    );

    // rss with the pods.
    let rss_10k = rss_mib(server.pid())?;
    println!(
        "[{label}] rss_with_pods: {rss_10k:.1} MiB with {} pods",
        opts.pods
    );

    // list.
    let mut lists = Vec::new();
    let mut list_bytes = 0;
    let cpu = CpuMeter::start(Some(server.pid()), &etcd_pids);
    for i in 0..opts.lists {
        let t = Instant::now();
        let (status, body) = send(&client, Method::GET, "/api/v1/pods", Vec::new()).await?;
        lists.push(ms(t.elapsed()));
        if status != StatusCode::OK {
            bail!(
                "LIST /api/v1/pods: {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        list_bytes = body.len();
        if i == 0 {
            let v: serde_json::Value = serde_json::from_slice(&body)?;
            let n = v["items"].as_array().map_or(0, Vec::len);
            if n != opts.pods {
                bail!(
                    "LIST /api/v1/pods returned {n} items, expected {}",
                    opts.pods
                );
            }
        }
    }
    let list_cpu = cpu.report();
    let lists = sorted(lists);
    let list_ms = percentile(&lists, 50.0);
    println!(
        "[{label}] list: {} pods, {:.1} MiB JSON: median {list_ms:.1} ms, max {:.1} ms over {}   goal <= {GOAL_LIST_10K_MS} ms [{}]",
        opts.pods,
        list_bytes as f64 / 1048576.0,
        lists[lists.len() - 1],
        lists.len(),
        verdict(list_ms, GOAL_LIST_10K_MS, true)
    );
    println!(
        "[{label}] list {list_cpu} for all {} lists (incl. one untimed decode)",
        opts.lists
    );

    // watch fan-out.
    let cpu = CpuMeter::start(Some(server.pid()), &etcd_pids);
    let watch = watch_fanout(&client, opts).await?;
    let watch_cpu = cpu.report();
    println!(
        "[{label}] watch: {} watchers x {} creates: all delivered in {:.1} ms; per watcher median {:.1} ms, max {:.1} ms (creates alone took {:.1} ms, {:.0}/s)",
        opts.watchers,
        opts.watch_events,
        watch.total_ms,
        percentile(&watch.per_watcher_ms, 50.0),
        percentile(&watch.per_watcher_ms, 100.0),
        ms(watch.creates.wall),
        watch.creates.rate()
    );
    println!("[{label}] watch {watch_cpu}");
    let rss_end = rss_mib(server.pid())?;
    println!("[{label}] rss_end: {rss_end:.1} MiB after the watch run");
    server.check_alive().context("skiff server")?;
    Ok(ServerFigures {
        ready_ms,
        creates,
        stored_pod,
        rss_10k,
        lists,
        watch,
        revs_per_create,
    })
}

/// One etcd cluster's figures: skiff on it and the raw floor.
struct EtcdRun {
    members: usize,
    ready_ms: f64,
    floor: EtcdFloor,
    skiff: ServerFigures,
}

impl EtcdRun {
    /// skiff creates/s ÷ gateway puts/s on the same cluster.
    fn ratio_vs_put(&self) -> f64 {
        self.skiff.creates.rate() / self.floor.gateway_put.rate()
    }

    /// skiff creates/s ÷ gRPC create transactions/s on the same cluster.
    fn ratio_vs_txn(&self) -> f64 {
        self.skiff.creates.rate() / self.floor.grpc_txn.rate()
    }

    /// `etcdN_…=…` fields for the `machine` line.
    fn machine_fields(&self) -> String {
        let n = self.members;
        let f = &self.floor;
        let s = &self.skiff;
        format!(
            "etcd{n}_ready_ms={:.0} etcd{n}_put_per_s={:.0} etcd{n}_put_p50_ms={:.2} etcd{n}_put_p99_ms={:.2} \
             etcd{n}_grpc_put_per_s={:.0} etcd{n}_grpc_txn_per_s={:.0} etcd{n}_grpc_txn_p50_ms={:.2} \
             etcd{n}_grpc_txn_p99_ms={:.2} etcd{n}_grpc_txn_watched_per_s={:.0} etcd{n}_skiff_ready_ms={:.1} etcd{n}_skiff_creates_per_s={:.0} \
             etcd{n}_skiff_create_p50_ms={:.2} etcd{n}_skiff_create_p99_ms={:.2} etcd{n}_skiff_list_10k_ms={:.1} \
             etcd{n}_skiff_watch_100x1000_ms={:.1} etcd{n}_skiff_rss_10k_pods_mb={:.1} \
             etcd{n}_revs_per_create={:.3} etcd{n}_ratio_vs_put={:.2} etcd{n}_ratio_vs_txn={:.2}",
            self.ready_ms,
            f.gateway_put.rate(),
            percentile(&f.gateway_put.latencies_ms, 50.0),
            percentile(&f.gateway_put.latencies_ms, 99.0),
            f.grpc_put.rate(),
            f.grpc_txn.rate(),
            percentile(&f.grpc_txn.latencies_ms, 50.0),
            percentile(&f.grpc_txn.latencies_ms, 99.0),
            f.grpc_txn_watched.rate(),
            s.ready_ms,
            s.creates.rate(),
            s.p(50.0),
            s.p(99.0),
            s.list_ms(),
            s.watch.total_ms,
            s.rss_10k,
            s.revs_per_create,
            self.ratio_vs_put(),
            self.ratio_vs_txn(),
        )
    }
}

/// Starts an `n`-member etcd, measures its floor, then a skiff server on it.
async fn etcd_run(
    opts: &Opts,
    tls: &tokio_rustls::TlsConnector,
    n: usize,
    value: Bytes,
) -> Result<EtcdRun> {
    let label = format!("etcd-{n}");
    let mut cluster = EtcdCluster::start(opts, n).await?;
    println!(
        "[{label}] etcd: {n} member(s) healthy in {:.0} ms at {}",
        cluster.ready_ms,
        cluster.client_urls.join(",")
    );
    let floor = etcd_floor(opts, &cluster, value, &label).await?;
    cluster.check_alive()?;
    let (mut server, took) = start_skiff(opts, tls, Some(&cluster.client_urls)).await?;
    let ready_ms = ms(took);
    println!("[{label}] skiff ready on etcd in {ready_ms:.1} ms (one start)");
    let skiff = measure_server(opts, &label, &mut server, ready_ms, Some(&cluster)).await?;
    cluster.check_alive()?;
    drop(server);
    Ok(EtcdRun {
        members: n,
        ready_ms: cluster.ready_ms,
        floor,
        skiff,
    })
}

// ------------------------------------------------------------------- run

async fn run(opts: Opts) -> Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let mem_gib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| parse_memtotal_gib(&s))
        .unwrap_or(f64::NAN);
    println!(
        "skiff-bench-api: {} on {cores} cores, {mem_gib:.1} GiB; pods={} clients={} watchers={}x{} scheduler={} etcd={}",
        opts.skiff.display(),
        opts.pods,
        opts.clients,
        opts.watchers,
        opts.watch_events,
        if opts.disable_scheduler { "off" } else { "on" },
        if opts.skip_etcd {
            "skipped".to_string()
        } else {
            format!("{:?} members", opts.etcd_members)
        }
    );
    if !opts.skiff.exists() {
        bail!(
            "{} does not exist (build with cargo build --release -p skiff)",
            opts.skiff.display()
        );
    }

    // 1. ready on SQLite: fresh starts; the last one is kept for the rest.
    let tls = probe_connector()?;
    let mut ready = Vec::new();
    let mut server = None;
    for i in 0..opts.starts {
        let (proc, took) = start_skiff(&opts, &tls, None).await?;
        ready.push(ms(took));
        if i + 1 == opts.starts {
            server = Some(proc);
        }
    }
    let mut server = server.expect("at least one start");
    let ready = sorted(ready);
    let ready_ms = percentile(&ready, 50.0);
    println!(
        "[sqlite] ready: median {ready_ms:.1} ms over {} starts (min {:.1}, max {:.1})   goal <= {GOAL_READY_MS} ms [{}]",
        ready.len(),
        ready[0],
        ready[ready.len() - 1],
        verdict(ready_ms, GOAL_READY_MS, true)
    );

    // 2. rss idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_mib(server.pid())?;
    println!(
        "[sqlite] rss_idle: {rss_idle:.1} MiB (1 s after ready)   goal <= {GOAL_RSS_IDLE_MB} MB [{}]",
        verdict(rss_idle, GOAL_RSS_IDLE_MB, true)
    );

    // 3. creates, list and watch on SQLite.
    let sqlite = measure_server(&opts, "sqlite", &mut server, ready_ms, None).await?;
    drop(server);

    // 4. each etcd cluster: its floor, then skiff on it. skiff on SQLite is
    // stopped by now, and each cluster is gone before the next starts.
    let value = if sqlite.stored_pod.is_empty() {
        Bytes::from(vec![b'x'; 1024])
    } else {
        sqlite.stored_pod.clone()
    };
    let mut etcd_runs = Vec::new();
    if !opts.skip_etcd {
        for &n in &opts.etcd_members {
            etcd_runs.push(etcd_run(&opts, &tls, n, value.clone()).await?);
        }
    }

    // 5. summary.
    let c_rate = sqlite.creates.rate();
    println!();
    println!(
        "{:<8} {:>10} {:>8} {:>8} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "store",
        "creates/s",
        "p50 ms",
        "p99 ms",
        "list ms",
        "gw put/s",
        "grpc put",
        "grpc txn",
        "txn+watch",
        "/gw put",
        "/txn",
        "revs/cr"
    );
    let row = |name: &str, s: &ServerFigures, floor: Option<&EtcdFloor>| {
        let rate = |b: Option<&Batch>| b.map_or(f64::NAN, Batch::rate);
        let (gw, put, txn, watched) = (
            rate(floor.map(|f| &f.gateway_put)),
            rate(floor.map(|f| &f.grpc_put)),
            rate(floor.map(|f| &f.grpc_txn)),
            rate(floor.map(|f| &f.grpc_txn_watched)),
        );
        let r = s.creates.rate();
        println!(
            "{name:<8} {r:>10.0} {:>8.2} {:>8.2} {:>9.1} {gw:>9.0} {put:>9.0} {txn:>9.0} {watched:>9.0} {:>9.2} {:>9.2} {:>9.3}",
            s.p(50.0),
            s.p(99.0),
            s.list_ms(),
            r / gw,
            r / txn,
            s.revs_per_create
        );
    };
    row("sqlite", &sqlite, None);
    for e in &etcd_runs {
        row(&format!("etcd-{}", e.members), &e.skiff, Some(&e.floor));
    }
    // The classic baseline: SQLite against the 1-member gateway puts.
    let one = etcd_runs.iter().find(|e| e.members == 1);
    let (etcd_rate, etcd_p50, etcd_p99, etcd_ready) =
        one.map_or((f64::NAN, f64::NAN, f64::NAN, f64::NAN), |e| {
            let p = &e.floor.gateway_put.latencies_ms;
            (
                e.floor.gateway_put.rate(),
                percentile(p, 50.0),
                percentile(p, 99.0),
                e.ready_ms,
            )
        });
    let ratio = c_rate / etcd_rate;
    println!(
        "ratio: skiff on SQLite creates/s / 1-member etcd gateway puts/s = {ratio:.2} (values of {} bytes)",
        one.map_or(value.len(), |e| e.floor.value_bytes)
    );
    let mut line = format!(
        "machine cores={cores} mem_gib={mem_gib:.0} scheduler={} ready_ms={ready_ms:.1} rss_idle_mb={rss_idle:.1} \
         creates_per_s={c_rate:.0} create_p50_ms={:.2} create_p99_ms={:.2} \
         etcd_puts_per_s={etcd_rate:.0} etcd_put_p50_ms={etcd_p50:.2} etcd_put_p99_ms={etcd_p99:.2} \
         etcd_ready_ms={etcd_ready:.0} ratio_vs_etcd={ratio:.2} list_10k_ms={:.1} \
         list_10k_max_ms={:.1} watch_100x1000_ms={:.1} watch_per_watcher_p50_ms={:.1} \
         rss_10k_pods_mb={:.1}",
        if opts.disable_scheduler { "off" } else { "on" },
        sqlite.p(50.0),
        sqlite.p(99.0),
        sqlite.list_ms(),
        sqlite.list_max_ms(),
        sqlite.watch.total_ms,
        percentile(&sqlite.watch.per_watcher_ms, 50.0),
        sqlite.rss_10k,
    );
    for e in &etcd_runs {
        line.push(' ');
        line.push_str(&e.machine_fields());
    }
    println!("{line}");
    Ok(())
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let default_skiff = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(|d| d.join("skiff")))
        .unwrap_or_else(|| PathBuf::from("skiff"));
    let opts = Opts::parse(&args, default_skiff)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        // Dropping `run` on a signal or the overall time limit drops every
        // process guard and temp dir it holds.
        tokio::select! {
            r = tokio::time::timeout(Duration::from_secs(600), run(opts)) => {
                r.map_err(|_| anyhow!("benchmark did not finish within 10 minutes"))?
            }
            _ = tokio::signal::ctrl_c() => bail!("interrupted"),
            _ = term.recv() => bail!("terminated"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentile_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        let cases = [
            (50.0, 50.0),
            (99.0, 99.0),
            (100.0, 100.0),
            (0.0, 1.0),
            (99.5, 100.0),
        ];
        for (p, want) in cases {
            assert_eq!(percentile(&v, p), want, "p{p}");
        }
        assert_eq!(percentile(&[7.0], 99.0), 7.0);
        assert!(percentile(&[], 50.0).is_nan());
        assert_eq!(percentile(&sorted(vec![3.0, 1.0, 2.0]), 50.0), 2.0);
    }

    #[test]
    fn proc_files() {
        let status = "Name:\tskiff\nVmPeak:\t  9000 kB\nVmRSS:\t   20480 kB\nThreads:\t3\n";
        assert_eq!(parse_vmrss_mib(status), Some(20.0));
        assert_eq!(parse_vmrss_mib("Name:\tx\n"), None);
        let stat = "123 (sk iff) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20";
        assert_eq!(parse_cpu_ticks(stat), Some(300));
        assert_eq!(parse_cpu_ticks("123 (x) S 1"), None);
        let meminfo = "MemTotal:       25165824 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_memtotal_gib(meminfo), Some(24.0));
    }

    #[test]
    fn verdicts() {
        let cases = [
            (10.0, 50.0, true, "ok"),
            (60.0, 50.0, true, "MISS"),
            (6000.0, 5000.0, false, "ok"),
            (4000.0, 5000.0, false, "MISS"),
        ];
        for (v, goal, lower, want) in cases {
            assert_eq!(verdict(v, goal, lower), want, "{v} vs {goal}");
        }
    }

    #[test]
    fn flags() {
        let skiff = PathBuf::from("/x/skiff");
        let args = |s: &str| -> Vec<String> { s.split_whitespace().map(String::from).collect() };
        let o = Opts::parse(&args(""), skiff.clone()).unwrap();
        assert_eq!((o.starts, o.pods, o.clients, o.lists), (7, 10_000, 16, 10));
        assert_eq!(
            (o.watchers, o.watch_events, o.etcd_puts),
            (100, 1_000, 10_000)
        );
        assert_eq!(o.skiff, skiff);
        assert_eq!(o.etcd_members, vec![1, 3]);
        assert!(!o.skip_etcd);
        let o = Opts::parse(&args("--etcd-members 3"), skiff.clone()).unwrap();
        assert_eq!(o.etcd_members, vec![3]);
        let o = Opts::parse(&args("--etcd-members 3,1,5"), skiff.clone()).unwrap();
        assert_eq!(o.etcd_members, vec![3, 1, 5]);
        assert!(!o.disable_scheduler);
        let o = Opts::parse(&args("--pods 500 --skip-etcd --skiff /y"), skiff.clone()).unwrap();
        assert_eq!(
            (o.pods, o.skip_etcd, o.skiff),
            (500, true, PathBuf::from("/y"))
        );
        let o = Opts::parse(&args("--disable-scheduler --pods 7"), skiff.clone()).unwrap();
        assert_eq!((o.disable_scheduler, o.pods), (true, 7));
        for bad in [
            "--pods",
            "--pods 0",
            "--pods x",
            "--nope 1",
            "--etcd-members 0",
            "--etcd-members 1,,3",
            "--etcd-members 8",
            "--etcd-members",
        ] {
            assert!(Opts::parse(&args(bad), skiff.clone()).is_err(), "{bad}");
        }
    }

    #[test]
    fn grpc_calls_from_metrics() {
        let page = "# HELP grpc_server_handled_total Total number of RPCs.\n\
            grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Txn\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 30\n\
            grpc_server_handled_total{grpc_code=\"Aborted\",grpc_method=\"Txn\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 2\n\
            grpc_server_handled_total{grpc_code=\"OK\",grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 1e+01\n\
            grpc_server_started_total{grpc_method=\"Range\",grpc_service=\"etcdserverpb.KV\",grpc_type=\"unary\"} 99\n";
        let calls = parse_grpc_handled(page);
        assert_eq!(
            calls,
            BTreeMap::from([("Range".to_string(), 10.0), ("Txn".to_string(), 32.0)])
        );
        let before = BTreeMap::from([("Txn".to_string(), 12.0), ("Range".to_string(), 10.0)]);
        assert_eq!(calls_per(&before, &calls, 10), "Txn 2.00");
        assert_eq!(
            calls_per(&BTreeMap::new(), &calls, 10),
            "Range 1.00, Txn 3.20"
        );
    }

    #[test]
    fn etcd_cluster_flags() {
        let peers = |n: u16| -> Vec<String> {
            (0..n)
                .map(|i| format!("http://127.0.0.1:{}", 2380 + i))
                .collect()
        };
        assert_eq!(initial_cluster(&peers(1)), "m0=http://127.0.0.1:2380");
        assert_eq!(
            initial_cluster(&peers(3)),
            "m0=http://127.0.0.1:2380,m1=http://127.0.0.1:2381,m2=http://127.0.0.1:2382"
        );
    }

    #[test]
    fn floor_keys_are_as_long_as_pod_keys_and_outside_registry() {
        let pod = "/registry/pods/bench-1/pod-000005";
        for kind in ["gw", "put", "txn"] {
            let key = floor_key(kind, 5);
            assert!(!key.starts_with("/registry/"), "{key}");
            assert!(key.len().abs_diff(pod.len()) <= 4, "{key} vs {pod}");
        }
        assert_ne!(floor_key("txn", 1), floor_key("txn", 2));
    }

    #[test]
    fn pod_body_is_a_busybox_pod() {
        let v: serde_json::Value = serde_json::from_slice(&pod_json("p-1")).unwrap();
        assert_eq!(v["kind"], "Pod");
        assert_eq!(v["apiVersion"], "v1");
        assert_eq!(v["metadata"]["name"], "p-1");
        assert_eq!(v["spec"]["containers"][0]["image"], "busybox:1.36");
    }

    #[test]
    fn temp_dir_removed_on_drop() {
        let d = TempDir::new("test").unwrap();
        let p = d.0.clone();
        std::fs::write(p.join("f"), "x").unwrap();
        drop(d);
        assert!(!p.exists());
    }
}
