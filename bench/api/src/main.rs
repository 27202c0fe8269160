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
//! - `etcd`: the baseline, a local etcd taking puts of a stored pod's size
//!   through its v3 JSON gateway, with the same concurrency.
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
        };
        let mut it = args.iter();
        while let Some(flag) = it.next() {
            if flag == "--skip-etcd" {
                o.skip_etcd = true;
                continue;
            }
            if flag == "-h" || flag == "--help" {
                bail!(
                    "usage: skiff-bench-api [--skiff PATH] [--etcd PATH] [--starts N] [--pods N] \
                     [--clients N] [--lists N] [--watchers N] [--watch-events N] [--etcd-puts N] [--skip-etcd]"
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
                _ => bail!("unknown flag {flag:?} (try --help)"),
            }
        }
        Ok(o)
    }
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

/// CPU used by the server and by the benchmark itself during a phase.
struct CpuMeter {
    pid: u32,
    server: f64,
    bench: f64,
}

impl CpuMeter {
    fn start(pid: u32) -> CpuMeter {
        CpuMeter {
            pid,
            server: cpu_ms(Some(pid)),
            bench: cpu_ms(None),
        }
    }

    /// `cpu: server N ms, bench N ms` since `start`.
    fn report(&self) -> String {
        format!(
            "cpu: server {:.0} ms, bench client {:.0} ms",
            cpu_ms(Some(self.pid)) - self.server,
            cpu_ms(None) - self.bench
        )
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

/// Starts a fresh `skiff server --disable-agent` and returns it with the
/// time from spawn to the first `/readyz` 200.
async fn start_skiff(opts: &Opts, tls: &tokio_rustls::TlsConnector) -> Result<(Proc, Duration)> {
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
                if line.starts_with(br#"{"type":"ADDED""#) {
                    seen += 1;
                } else if !line.starts_with(br#"{"type":"BOOKMARK""#) {
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

struct EtcdResult {
    ready_ms: f64,
    puts: Batch,
    value_bytes: usize,
}

async fn etcd_baseline(opts: &Opts, value: Bytes) -> Result<EtcdResult> {
    let dir = TempDir::new("etcd")?;
    let (client_port, peer_port) = (free_port()?, free_port()?);
    let curl = format!("http://127.0.0.1:{client_port}");
    let purl = format!("http://127.0.0.1:{peer_port}");
    let mut cmd = Command::new(&opts.etcd);
    cmd.arg("--data-dir")
        .arg(dir.0.join("data"))
        .args(["--name", "bench"])
        .args(["--listen-client-urls", &curl])
        .args(["--advertise-client-urls", &curl])
        .args(["--listen-peer-urls", &purl])
        .args(["--initial-advertise-peer-urls", &purl])
        .args(["--initial-cluster", &format!("bench={purl}")])
        .args(["--logger", "zap", "--log-outputs", "stderr"]);
    let http = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<Full<Bytes>>();
    let t0 = Instant::now();
    let mut proc = Proc::spawn(&mut cmd, dir)?;
    let health: http::Uri = format!("{curl}/health").parse()?;
    loop {
        let ok = match tokio::time::timeout(Duration::from_secs(2), http.get(health.clone())).await
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
        proc.check_alive().context("etcd")?;
        if t0.elapsed() > Duration::from_secs(30) {
            bail!("etcd not healthy after 30 s");
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let ready_ms = ms(t0.elapsed());
    let value_b64 = base64::engine::general_purpose::STANDARD.encode(&value);
    let put: http::Uri = format!("{curl}/v3/kv/put").parse()?;
    let value_b64 = Arc::new(value_b64);
    let puts = run_batch(opts.etcd_puts, opts.clients, move |i| {
        let http = http.clone();
        let put = put.clone();
        let value_b64 = value_b64.clone();
        async move {
            let key = base64::engine::general_purpose::STANDARD.encode(format!(
                "/registry/pods/bench-{}/pod-{i:06}",
                i % NAMESPACES
            ));
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
    report_errors("etcd puts", &puts)?;
    proc.check_alive().context("etcd")?;
    drop(proc);
    Ok(EtcdResult {
        ready_ms,
        puts,
        value_bytes: value.len(),
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
        "skiff-bench-api: {} on {cores} cores, {mem_gib:.1} GiB; pods={} clients={} watchers={}x{}",
        opts.skiff.display(),
        opts.pods,
        opts.clients,
        opts.watchers,
        opts.watch_events
    );
    if !opts.skiff.exists() {
        bail!(
            "{} does not exist (build with cargo build --release -p skiff)",
            opts.skiff.display()
        );
    }

    // 1. ready: fresh starts; the last one is kept for everything else.
    let tls = probe_connector()?;
    let mut ready = Vec::new();
    let mut server = None;
    for i in 0..opts.starts {
        let (proc, took) = start_skiff(&opts, &tls).await?;
        ready.push(ms(took));
        if i + 1 == opts.starts {
            server = Some(proc);
        }
    }
    let server = server.expect("at least one start");
    let ready = sorted(ready);
    let ready_ms = percentile(&ready, 50.0);
    println!(
        "ready: median {ready_ms:.1} ms over {} starts (min {:.1}, max {:.1})   goal <= {GOAL_READY_MS} ms [{}]",
        ready.len(),
        ready[0],
        ready[ready.len() - 1],
        verdict(ready_ms, GOAL_READY_MS, true)
    );

    // 2. rss idle.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_idle = rss_mib(server.pid())?;
    println!(
        "rss_idle: {rss_idle:.1} MiB (1 s after ready)   goal <= {GOAL_RSS_IDLE_MB} MB [{}]",
        verdict(rss_idle, GOAL_RSS_IDLE_MB, true)
    );

    // 3. creates.
    let client = kube_client(&server.dir.0.join("data").join("kubeconfig.yaml")).await?;
    let namespaces: Vec<String> = (0..NAMESPACES).map(|i| format!("bench-{i}")).collect();
    for ns in namespaces.iter().map(String::as_str).chain([WATCH_NS]) {
        create_namespace(&client, ns).await?;
    }
    let cpu = CpuMeter::start(server.pid());
    let creates = create_pods(&client, namespaces, "pod", opts.pods, opts.clients).await;
    let creates_cpu = cpu.report();
    report_errors("creates", &creates)?;
    let c_rate = creates.rate();
    let c_p50 = percentile(&creates.latencies_ms, 50.0);
    let c_p99 = percentile(&creates.latencies_ms, 99.0);
    let stored_pod = creates.sample_body.clone().unwrap_or_default();
    println!(
        "creates: {} pods by {} clients in {:.2} s = {c_rate:.0}/s   goal >= {GOAL_CREATES_PER_S}/s [{}]",
        creates.latencies_ms.len(),
        opts.clients,
        creates.wall.as_secs_f64(),
        verdict(c_rate, GOAL_CREATES_PER_S, false)
    );
    println!(
        "create latency: p50 {c_p50:.2} ms, p99 {c_p99:.2} ms, max {:.2} ms   goal p99 <= {GOAL_CREATE_P99_MS} ms [{}]",
        percentile(&creates.latencies_ms, 100.0),
        verdict(c_p99, GOAL_CREATE_P99_MS, true)
    );
    println!("creates {creates_cpu}");
    println!("stored pod: {} bytes as returned", stored_pod.len());

    // 4. rss with the pods.
    let rss_10k = rss_mib(server.pid())?;
    println!("rss_with_pods: {rss_10k:.1} MiB with {} pods", opts.pods);

    // 5. list.
    let mut lists = Vec::new();
    let mut list_bytes = 0;
    let cpu = CpuMeter::start(server.pid());
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
        "list: {} pods, {:.1} MiB JSON: median {list_ms:.1} ms, max {:.1} ms over {}   goal <= {GOAL_LIST_10K_MS} ms [{}]",
        opts.pods,
        list_bytes as f64 / 1048576.0,
        lists[lists.len() - 1],
        lists.len(),
        verdict(list_ms, GOAL_LIST_10K_MS, true)
    );
    println!(
        "list {list_cpu} for all {} lists (incl. one untimed decode)",
        opts.lists
    );

    // 6. watch fan-out.
    let cpu = CpuMeter::start(server.pid());
    let w = watch_fanout(&client, &opts).await?;
    let watch_cpu = cpu.report();
    println!(
        "watch: {} watchers x {} creates: all delivered in {:.1} ms; per watcher median {:.1} ms, max {:.1} ms (creates alone took {:.1} ms, {:.0}/s)",
        opts.watchers,
        opts.watch_events,
        w.total_ms,
        percentile(&w.per_watcher_ms, 50.0),
        percentile(&w.per_watcher_ms, 100.0),
        ms(w.creates.wall),
        w.creates.rate()
    );
    println!("watch {watch_cpu}");
    let rss_end = rss_mib(server.pid())?;
    println!("rss_end: {rss_end:.1} MiB after the watch run");
    let mut server = server;
    server.check_alive().context("skiff server")?;
    drop(server);
    drop(client);

    // 7. etcd baseline.
    let etcd = if opts.skip_etcd {
        None
    } else {
        let value = if stored_pod.is_empty() {
            Bytes::from(vec![b'x'; 1024])
        } else {
            stored_pod.clone()
        };
        let e = etcd_baseline(&opts, value).await?;
        println!(
            "etcd: healthy in {:.0} ms; {} puts of {} bytes by {} clients via /v3/kv/put in {:.2} s = {:.0}/s; p50 {:.2} ms, p99 {:.2} ms",
            e.ready_ms,
            e.puts.latencies_ms.len(),
            e.value_bytes,
            opts.clients,
            e.puts.wall.as_secs_f64(),
            e.puts.rate(),
            percentile(&e.puts.latencies_ms, 50.0),
            percentile(&e.puts.latencies_ms, 99.0),
        );
        Some(e)
    };

    let (etcd_rate, etcd_p50, etcd_p99, etcd_ready) =
        etcd.as_ref()
            .map_or((f64::NAN, f64::NAN, f64::NAN, f64::NAN), |e| {
                (
                    e.puts.rate(),
                    percentile(&e.puts.latencies_ms, 50.0),
                    percentile(&e.puts.latencies_ms, 99.0),
                    e.ready_ms,
                )
            });
    let ratio = c_rate / etcd_rate;
    println!("ratio: skiff creates/s / etcd puts/s = {ratio:.2}");
    println!(
        "machine cores={cores} mem_gib={mem_gib:.0} ready_ms={ready_ms:.1} rss_idle_mb={rss_idle:.1} \
         creates_per_s={c_rate:.0} create_p50_ms={c_p50:.2} create_p99_ms={c_p99:.2} \
         etcd_puts_per_s={etcd_rate:.0} etcd_put_p50_ms={etcd_p50:.2} etcd_put_p99_ms={etcd_p99:.2} \
         etcd_ready_ms={etcd_ready:.0} ratio_vs_etcd={ratio:.2} list_10k_ms={list_ms:.1} \
         list_10k_max_ms={:.1} watch_100x1000_ms={:.1} watch_per_watcher_p50_ms={:.1} \
         rss_10k_pods_mb={rss_10k:.1}",
        lists[lists.len() - 1],
        w.total_ms,
        percentile(&w.per_watcher_ms, 50.0),
    );
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
        let o = Opts::parse(&args("--pods 500 --skip-etcd --skiff /y"), skiff.clone()).unwrap();
        assert_eq!(
            (o.pods, o.skip_etcd, o.skiff),
            (500, true, PathBuf::from("/y"))
        );
        for bad in ["--pods", "--pods 0", "--pods x", "--nope 1"] {
            assert!(Opts::parse(&args(bad), skiff.clone()).is_err(), "{bad}");
        }
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
