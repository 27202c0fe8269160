//! `skiff-bench-net`: a benchmark (not a test) of pod networking on real runc.
//!
//! Run it through `bench/net/run.sh`, which puts it in a private network
//! namespace (`unshare --net`, loopback up) so that the host's links, routes
//! and nftables are never touched. Inside, it starts `skiff server` with its
//! embedded agent and default networking (CNI bridge on 10.42.0.0/24, the
//! nftables service proxy in table `ip skiff`, cluster DNS on 10.43.0.10:53),
//! imports the busybox image built by `scripts/build-busybox-image.sh`, and
//! measures in one run:
//!
//! 1. HTTP through a ClusterIP against the same pod directly: pod `web`
//!    (busybox `httpd`) behind Service `web` (80 → 8080). The load comes from
//!    the network namespace of pod `client`: a thread of this process joins it
//!    (`setns`) and runs a current-thread tokio runtime there. Every request is
//!    a new TCP connection, `GET / HTTP/1.0`, read to EOF, so every ClusterIP
//!    request goes through the proxy's DNAT afresh. Direct and ClusterIP runs
//!    alternate, `--runs` of each; medians of req/s, p50 and p99.
//! 2. Cluster DNS: the `dnsperf` example run in the client pod's network
//!    namespace (`nsenter --net`) against 10.43.0.10:53, for a Service name
//!    (`--runs` times) and once for a name that does not exist (NXDOMAIN).
//! 3. Ready → programmed: pod `flip` (httpd, readiness probe `cat /tmp/ready`
//!    every second, failureThreshold 1) behind Service `flip`. `--flips` times
//!    the file is removed (until the proxy drops the pod's DNAT rule), then
//!    touched with `kubectl exec`, and the API (pod Ready) and `nft list table
//!    ip skiff` (`dnat to IP:8080`) are polled every 5 ms each: the time from
//!    Ready seen in the API to the rule seen in nftables, and from the exec's
//!    return to the rule (which includes up to one probe period).
//!
//! At the end, also on errors, Ctrl-C and SIGTERM, it deletes its pods (so the
//! agent stops their containers and releases their addresses), stops the
//! server, force-deletes any runc container left, unmounts whatever is still
//! mounted under its temp dir and removes it.

use anyhow::{Context, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Node, Pod, Service};
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use skiff_bench_common::{
    Proc, Signals, TempDir, block_on_with_signals, check_built, check_repo_root, exe_dir, flags,
    force_cleanup, kubectl, kubectl_cmd, max, median, ms, node_ready, percentile, pod_ready,
    poll_while_up, positive, private_skiff_with_busybox, run_cmd, start_server, unknown,
    wait_pods_gone,
};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The cluster DNS address `skiff server` uses by default.
const CLUSTER_DNS: &str = "10.43.0.10:53";
/// How often the flip phase polls the API and nftables.
const POLL: Duration = Duration::from_millis(5);

/// Run parameters.
#[derive(Debug, Clone, PartialEq)]
struct Opts {
    skiff: PathBuf,
    kubectl: PathBuf,
    dnsperf: PathBuf,
    runs: usize,
    requests: usize,
    concurrency: usize,
    dns_queries: usize,
    dns_concurrency: usize,
    flips: usize,
    timeout_s: u64,
    /// Close with FIN after the server's EOF instead of a RST (see [`one_request`]).
    orderly_close: bool,
}

const USAGE: &str = "usage: skiff-bench-net [--skiff PATH] [--kubectl PATH] [--dnsperf PATH] [--runs K] \
     [--requests N] [--concurrency C] [--dns-queries N] [--dns-concurrency C] [--flips K] [--timeout S] [--orderly-close]";

impl Opts {
    fn parse(args: &[String], default_skiff: PathBuf, default_dnsperf: PathBuf) -> Result<Opts> {
        let mut o = Opts {
            skiff: default_skiff,
            kubectl: PathBuf::from("kubectl"),
            dnsperf: default_dnsperf,
            runs: 3,
            requests: 20_000,
            concurrency: 16,
            dns_queries: 50_000,
            dns_concurrency: 20,
            flips: 10,
            timeout_s: 600,
            orderly_close: false,
        };
        for f in flags(args, USAGE, &["--orderly-close"])? {
            match f.name {
                "--orderly-close" => o.orderly_close = true,
                "--skiff" => o.skiff = PathBuf::from(f.value),
                "--kubectl" => o.kubectl = PathBuf::from(f.value),
                "--dnsperf" => o.dnsperf = PathBuf::from(f.value),
                "--runs" => o.runs = positive(f)?,
                "--requests" => o.requests = positive(f)?,
                "--concurrency" => o.concurrency = positive(f)?,
                "--dns-queries" => o.dns_queries = positive(f)?,
                "--dns-concurrency" => o.dns_concurrency = positive(f)?,
                "--flips" => o.flips = positive(f)?,
                "--timeout" => o.timeout_s = positive(f)? as u64,
                _ => return Err(unknown(f, USAGE)),
            }
        }
        Ok(o)
    }
}

// ---------------------------------------------------------------- pure helpers

/// A `Duration`'s `Debug` text (`523.1µs`, `1.2ms`, `2s`) in milliseconds.
fn parse_debug_duration_ms(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ns") {
        (n, 1e-6)
    } else if let Some(n) = s.strip_suffix("µs") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1e3)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * scale)
}

/// What one dnsperf run printed.
#[derive(Debug, Clone, PartialEq)]
struct DnsRun {
    qps: f64,
    p50_ms: f64,
    p99_ms: f64,
    /// The `queries` line: sent, answered, timed out.
    queries: String,
    /// The `rcodes` line, e.g. `{"No Error": 50000}`.
    rcodes: String,
}

/// Reads dnsperf's output (`qps N`, `p50 DURATION`, `p99 DURATION`, …).
fn parse_dnsperf(out: &str) -> Result<DnsRun> {
    let field = |key: &str| {
        out.lines()
            .find_map(|l| {
                let (k, v) = l.split_once(char::is_whitespace)?;
                (k == key).then(|| v.trim().to_string())
            })
            .with_context(|| format!("no {key:?} line in dnsperf's output:\n{out}"))
    };
    let dur = |key: &str| -> Result<f64> {
        let v = field(key)?;
        parse_debug_duration_ms(&v).with_context(|| format!("dnsperf {key} {v:?}"))
    };
    Ok(DnsRun {
        qps: field("qps")?
            .parse()
            .context("dnsperf qps is not a number")?,
        p50_ms: dur("p50")?,
        p99_ms: dur("p99")?,
        queries: field("queries")?,
        rcodes: field("rcodes")?,
    })
}

/// The network namespace file of pod `name` in `default` from the text of a
/// sandbox's `sandbox.json` (labels and the `netns` path), if it is that pod's.
fn sandbox_netns(sandbox_json: &str, name: &str) -> Option<PathBuf> {
    let v: serde_json::Value = serde_json::from_str(sandbox_json).ok()?;
    let labels = v.get("labels")?;
    let is = |k: &str, want: &str| labels.get(k).and_then(|x| x.as_str()) == Some(want);
    (is("io.kubernetes.pod.name", name) && is("io.kubernetes.pod.namespace", "default"))
        .then(|| v.get("netns")?.as_str().map(PathBuf::from))
        .flatten()
}

/// Whether `nft list table ip skiff` output DNATs to `ip:port`.
fn programs(nft: &str, ip: Ipv4Addr, port: u16) -> bool {
    let want = format!("dnat to {ip}:{port}");
    nft.lines().any(|l| {
        l.split_once(&want)
            .is_some_and(|(_, rest)| !rest.starts_with(|c: char| c.is_ascii_digit()))
    })
}

/// A counter of `/proc/net/netstat` (a header line `GROUP: names…` followed
/// by a line `GROUP: values…`).
fn netstat_counter(text: &str, group: &str, name: &str) -> Option<u64> {
    let prefix = format!("{group}:");
    let mut lines = text.lines().filter(|l| l.starts_with(&prefix));
    let names = lines.next()?;
    let values = lines.next()?;
    let i = names.split_whitespace().position(|n| n == name)?;
    values.split_whitespace().nth(i)?.parse().ok()
}

/// A busybox pod running `script` under `sh -c`, labelled `app: NAME`.
fn pod_json(name: &str, script: &str, readiness_file: bool) -> serde_json::Value {
    let mut c = serde_json::json!({
        "name": "main",
        "image": "busybox:latest",
        "imagePullPolicy": "IfNotPresent",
        "command": ["sh", "-c", script],
    });
    if readiness_file {
        c["ports"] = serde_json::json!([{"name": "http", "containerPort": 8080}]);
        c["readinessProbe"] = serde_json::json!({
            "exec": {"command": ["cat", "/tmp/ready"]},
            "periodSeconds": 1,
            "failureThreshold": 1,
        });
    }
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {"terminationGracePeriodSeconds": 1, "containers": [c]},
    })
}

/// A ClusterIP Service `name`, port 80 → 8080 of the pods labelled `app: NAME`.
fn service_json(name: &str) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name},
        "spec": {
            "selector": {"app": name},
            "ports": [{"name": "http", "port": 80, "targetPort": 8080}],
        },
    })
}

// ------------------------------------------------------------------ processes

/// The text of `nft list table ip skiff`.
async fn nft_table() -> Result<String> {
    let out = tokio::process::Command::new("nft")
        .args(["list", "table", "ip", "skiff"])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output()
        .await?;
    if !out.status.success() {
        bail!(
            "nft list table ip skiff: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// How often the waits for a state (node, pods, proxy rules) poll.
const WAIT_POLL: Duration = Duration::from_millis(50);

// ---------------------------------------------------------------- HTTP load

/// One HTTP load run.
#[derive(Debug, Clone)]
struct HttpRun {
    req_per_s: f64,
    p50_ms: f64,
    p99_ms: f64,
    errors: usize,
    /// SYNs the server's netns rejected on a TIME_WAIT socket for failing
    /// PAWS (`TcpExt: PAWSTimewait`, `PAWSEstab` on older kernels) during the run.
    paws: u64,
    /// SYNs the server's netns dropped for a full accept queue (`TcpExt: ListenDrops`).
    listen_drops: u64,
}

/// One request on a new connection: `GET / HTTP/1.0`, read to EOF, 200 expected.
///
/// Unless `orderly_close`, the client then closes with a RST (zero linger), so
/// the server's socket does not sit in TIME_WAIT. With a FIN close the server
/// keeps a TIME_WAIT socket per connection for 60 s; direct and ClusterIP
/// connections from the same pod reach the same server socket (pod IP:8080)
/// but carry TCP timestamps with different offsets (Linux derives the offset
/// from the addresses the client sees), so once the client's ephemeral ports
/// wrap, a SYN that lands on a TIME_WAIT socket of the other kind fails PAWS,
/// is dropped, and is retransmitted after 1 s: that, not the proxy, then rules
/// the p99.
async fn one_request(target: SocketAddr, orderly_close: bool) -> Result<()> {
    let mut s = tokio::net::TcpStream::connect(target).await?;
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").await?;
    let mut buf = Vec::with_capacity(512);
    s.read_to_end(&mut buf).await?;
    if !orderly_close {
        s.set_zero_linger()?;
    }
    let status = buf.split(|&b| b == b'\r').next().unwrap_or_default();
    if !(status.starts_with(b"HTTP/1.") && status.get(9..12) == Some(b"200")) {
        bail!(
            "unexpected answer {:?}",
            String::from_utf8_lossy(&buf[..buf.len().min(80)])
        );
    }
    Ok(())
}

/// `n` requests to `target` from `c` concurrent workers on the current runtime.
async fn load(target: SocketAddr, n: usize, c: usize, orderly_close: bool) -> HttpRun {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..c)
        .map(|_| {
            let next = next.clone();
            tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut errors = Vec::new();
                while next.fetch_add(1, Ordering::Relaxed) < n {
                    let t = Instant::now();
                    match tokio::time::timeout(
                        Duration::from_secs(5),
                        one_request(target, orderly_close),
                    )
                    .await
                    {
                        Ok(Ok(())) => lat.push(t.elapsed()),
                        Ok(Err(e)) => errors.push(e.to_string()),
                        Err(_) => errors.push("timed out after 5 s".into()),
                    }
                }
                (lat, errors)
            })
        })
        .collect();
    let mut lat = Vec::with_capacity(n);
    let mut errors = Vec::new();
    for w in workers {
        match w.await {
            Ok((l, e)) => {
                lat.extend(l);
                errors.extend(e);
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    let elapsed = start.elapsed();
    lat.sort();
    if let Some(e) = errors.first() {
        eprintln!(
            "  {} failed request(s) to {target}, first: {e}",
            errors.len()
        );
    }
    HttpRun {
        req_per_s: lat.len() as f64 / elapsed.as_secs_f64(),
        p50_ms: ms(percentile(&lat, 0.50)),
        p99_ms: ms(percentile(&lat, 0.99)),
        errors: errors.len(),
        paws: 0,
        listen_drops: 0,
    }
}

/// Runs [`load`] on a thread of its own that has joined the network
/// namespace `netns` (a pod's), with a current-thread runtime.
fn load_from_netns(
    netns: &Path,
    target: SocketAddr,
    n: usize,
    c: usize,
    orderly_close: bool,
) -> Result<HttpRun> {
    let netns = netns.to_path_buf();
    std::thread::spawn(move || -> Result<HttpRun> {
        let f =
            std::fs::File::open(&netns).with_context(|| format!("opening {}", netns.display()))?;
        nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("setns {}", netns.display()))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        Ok(rt.block_on(load(target, n, c, orderly_close)))
    })
    .join()
    .map_err(|_| anyhow!("the load thread panicked"))?
}

// -------------------------------------------------------------- measurement

/// What the whole run measured.
#[derive(Debug, Default)]
struct Figures {
    direct: Vec<HttpRun>,
    cluster_ip: Vec<HttpRun>,
    dns: Vec<DnsRun>,
    nxdomain: Option<DnsRun>,
    /// Per flip: (programmed − Ready seen in the API, programmed − exec returned), ms.
    flips: Vec<(f64, f64)>,
}

/// The IP of a Ready pod.
async fn ready_ip(pods: &Api<Pod>, name: &str) -> Result<Option<Ipv4Addr>> {
    let p = pods.get(name).await?;
    if !pod_ready(&p) {
        return Ok(None);
    }
    Ok(p.status
        .and_then(|s| s.pod_ip)
        .and_then(|ip| ip.parse().ok()))
}

/// The network namespace file of pod `name` from the agent's sandbox records.
fn find_netns(data: &Path, name: &str) -> Result<Option<PathBuf>> {
    let dir = data.join("agent/containers/sandboxes");
    for e in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let Ok(text) = std::fs::read_to_string(e?.path().join("sandbox.json")) else {
            continue;
        };
        if let Some(p) = sandbox_netns(&text, name).filter(|p| p.exists()) {
            return Ok(Some(p));
        }
    }
    Ok(None)
}

async fn measure(
    opts: &Opts,
    client: &kube::Client,
    data: &Path,
    server: &mut Proc,
    fig: &mut Figures,
) -> Result<()> {
    let kubeconfig = data.join("kubeconfig.yaml");
    let t = Duration::from_secs(opts.timeout_s.min(120));
    let nodes: Api<Node> = Api::all(client.clone());
    poll_while_up("node Ready", WAIT_POLL, t, server, || async {
        Ok(nodes
            .list(&ListParams::default())
            .await?
            .items
            .iter()
            .any(node_ready)
            .then_some(()))
    })
    .await?;

    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let services: Api<Service> = Api::default_namespaced(client.clone());
    let pp = PostParams::default();
    let web = "mkdir -p /www && echo hello > /www/index.html && exec httpd -f -p 8080 -h /www";
    let flip = "mkdir -p /www && echo flip > /www/index.html && touch /tmp/ready && exec httpd -f -p 8080 -h /www";
    for p in [
        pod_json("web", web, false),
        pod_json("client", "exec sleep 3600", false),
        pod_json("flip", flip, true),
    ] {
        pods.create(&pp, &serde_json::from_value(p)?).await?;
    }
    for s in ["web", "flip"] {
        services
            .create(&pp, &serde_json::from_value(service_json(s))?)
            .await?;
    }
    let t0 = Instant::now();
    let mut ips = Vec::new();
    for name in ["web", "client", "flip"] {
        let what = format!("pod {name} Ready");
        let ip = poll_while_up(&what, WAIT_POLL, t, server, || ready_ip(&pods, name)).await?;
        ips.push(ip);
    }
    let (web_ip, flip_ip) = (ips[0], ips[2]);
    println!(
        "  pods web {web_ip}, client {}, flip {flip_ip} Running and Ready {:.2} s after the creates",
        ips[1],
        t0.elapsed().as_secs_f64()
    );
    let cluster_ip: Ipv4Addr = services
        .get("web")
        .await?
        .spec
        .and_then(|s| s.cluster_ip)
        .context("Service web has no clusterIP")?
        .parse()?;
    let netns = find_netns(data, "client")?.context("no network namespace for pod client")?;
    let web_netns = find_netns(data, "web")?.context("no network namespace for pod web")?;
    // (PAWS rejections in TIME_WAIT, listen drops) in pod web's netns (0 when unreadable).
    let drops = || {
        let text = run_cmd(
            Command::new("nsenter")
                .arg(format!("--net={}", web_netns.display()))
                .args(["cat", "/proc/net/netstat"]),
        )
        .unwrap_or_default();
        let c = |name| netstat_counter(&text, "TcpExt", name).unwrap_or(0);
        (c("PAWSTimewait") + c("PAWSEstab"), c("ListenDrops"))
    };
    poll_while_up(
        "the proxy DNATs to web and flip",
        WAIT_POLL,
        t,
        server,
        || async {
            let nft = nft_table().await?;
            Ok((programs(&nft, web_ip, 8080) && programs(&nft, flip_ip, 8080)).then_some(()))
        },
    )
    .await?;
    println!(
        "  Service web {cluster_ip}:80 → {web_ip}:8080 programmed; load from pod client's netns {}",
        netns.display()
    );

    // 1. HTTP, direct and through the ClusterIP, alternating.
    let direct = SocketAddr::V4(SocketAddrV4::new(web_ip, 8080));
    let via_svc = SocketAddr::V4(SocketAddrV4::new(cluster_ip, 80));
    for run in 1..=opts.runs {
        for (label, target) in [("direct", direct), ("ClusterIP", via_svc)] {
            let (ns, n, c, fin) = (
                netns.clone(),
                opts.requests,
                opts.concurrency,
                opts.orderly_close,
            );
            let (paws0, drops0) = drops();
            let mut r =
                tokio::task::spawn_blocking(move || load_from_netns(&ns, target, n, c, fin))
                    .await??;
            let (paws1, drops1) = drops();
            (r.paws, r.listen_drops) = (paws1.saturating_sub(paws0), drops1.saturating_sub(drops0));
            println!(
                "  http run {run} {label:>9} {target}: {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms, {} errors; SYNs dropped at web: {} PAWS in TIME_WAIT, {} accept queue full",
                r.req_per_s, r.p50_ms, r.p99_ms, r.errors, r.paws, r.listen_drops
            );
            if r.errors * 100 > n {
                bail!("more than 1% of the requests to {target} failed");
            }
            if label == "direct" {
                fig.direct.push(r);
            } else {
                fig.cluster_ip.push(r);
            }
            server.check_alive("skiff server")?;
        }
    }

    // 2. DNS from the client pod's netns.
    let dnsperf = |name: &str| {
        let out = run_cmd(
            Command::new("nsenter")
                .arg(format!("--net={}", netns.display()))
                .arg(&opts.dnsperf)
                .args(["--server", CLUSTER_DNS])
                .args(["-n", &opts.dns_queries.to_string()])
                .args(["-c", &opts.dns_concurrency.to_string()])
                .args(["--name", name]),
        )?;
        parse_dnsperf(&out)
    };
    for run in 1..=opts.runs {
        let r = dnsperf("web.default.svc.cluster.local")?;
        println!(
            "  dns run {run} web.default.svc.cluster.local: {:.0} qps, p50 {:.3} ms, p99 {:.3} ms; {}; rcodes {}",
            r.qps, r.p50_ms, r.p99_ms, r.queries, r.rcodes
        );
        fig.dns.push(r);
    }
    let r = dnsperf("nope.default.svc.cluster.local")?;
    println!(
        "  dns nope.default.svc.cluster.local (NXDOMAIN): {:.0} qps, p50 {:.3} ms, p99 {:.3} ms; {}; rcodes {}",
        r.qps, r.p50_ms, r.p99_ms, r.queries, r.rcodes
    );
    fig.nxdomain = Some(r);

    // 3. Ready → programmed.
    for k in 1..=opts.flips {
        kubectl(
            &opts.kubectl,
            &kubeconfig,
            &["exec", "flip", "--", "rm", "-f", "/tmp/ready"],
        )
        .await?;
        poll_while_up(
            "flip not Ready and its rule gone",
            WAIT_POLL,
            t,
            server,
            || async {
                let p = pods.get("flip").await?;
                Ok((!pod_ready(&p) && !programs(&nft_table().await?, flip_ip, 8080)).then_some(()))
            },
        )
        .await?;
        let api_seen = {
            let pods = pods.clone();
            tokio::spawn(async move {
                loop {
                    if let Ok(p) = pods.get("flip").await
                        && pod_ready(&p)
                    {
                        return Instant::now();
                    }
                    tokio::time::sleep(POLL).await;
                }
            })
        };
        let programmed = tokio::spawn(async move {
            loop {
                if let Ok(nft) = nft_table().await
                    && programs(&nft, flip_ip, 8080)
                {
                    return Instant::now();
                }
                tokio::time::sleep(POLL).await;
            }
        });
        let out = kubectl_cmd(
            &opts.kubectl,
            &kubeconfig,
            &["exec", "flip", "--", "touch", "/tmp/ready"],
        )
        .output()
        .await?;
        let exec_done = Instant::now();
        if !out.status.success() {
            api_seen.abort();
            programmed.abort();
            bail!(
                "kubectl exec flip touch: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        let both = async { (api_seen.await, programmed.await) };
        let (ready_at, prog_at) = match tokio::time::timeout(Duration::from_secs(30), both).await {
            Ok((Ok(a), Ok(p))) => (a, p),
            _ => bail!("flip {k}: not Ready and programmed within 30 s of the touch"),
        };
        let signed = |a: Instant, b: Instant| {
            if a >= b { ms(a - b) } else { -ms(b - a) }
        };
        let (from_ready, from_exec) = (signed(prog_at, ready_at), signed(prog_at, exec_done));
        println!(
            "  flip {k}: programmed {from_ready:.1} ms after Ready was seen in the API, {from_exec:.1} ms after the exec returned"
        );
        fig.flips.push((from_ready, from_exec));
    }
    Ok(())
}

/// Prints the table, one summary line a figure and the machine line.
fn report(opts: &Opts, fig: &Figures) {
    let med = |v: &[HttpRun], f: fn(&HttpRun) -> f64| median(v.iter().map(f).collect());
    let (d_rps, d_p50, d_p99) = (
        med(&fig.direct, |r| r.req_per_s),
        med(&fig.direct, |r| r.p50_ms),
        med(&fig.direct, |r| r.p99_ms),
    );
    let (c_rps, c_p50, c_p99) = (
        med(&fig.cluster_ip, |r| r.req_per_s),
        med(&fig.cluster_ip, |r| r.p50_ms),
        med(&fig.cluster_ip, |r| r.p99_ms),
    );
    let dmed = |f: fn(&DnsRun) -> f64| median(fig.dns.iter().map(f).collect());
    let (q, q50, q99) = (dmed(|r| r.qps), dmed(|r| r.p50_ms), dmed(|r| r.p99_ms));
    let nx = fig.nxdomain.clone();
    let flip_ready: Vec<f64> = fig.flips.iter().map(|f| f.0).collect();
    let flip_exec: Vec<f64> = fig.flips.iter().map(|f| f.1).collect();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!();
    println!(
        "results (medians of {} run(s); HTTP: {} requests, {} concurrent, a new connection each, closed with {}):",
        opts.runs,
        opts.requests,
        opts.concurrency,
        if opts.orderly_close { "FIN" } else { "RST" }
    );
    println!(
        "  {:<44} {:>10} {:>10} {:>10}",
        "figure", "req/s|qps", "p50 ms", "p99 ms"
    );
    println!(
        "  {:<44} {d_rps:>10.0} {d_p50:>10.3} {d_p99:>10.3}",
        "HTTP pod → pod IP:8080 (direct)"
    );
    println!(
        "  {:<44} {c_rps:>10.0} {c_p50:>10.3} {c_p99:>10.3}",
        "HTTP pod → ClusterIP:80 (nftables DNAT)"
    );
    println!(
        "  {:<44} {q:>10.0} {q50:>10.3} {q99:>10.3}",
        "DNS web.default.svc.cluster.local A"
    );
    if let Some(n) = &nx {
        println!(
            "  {:<44} {:>10.0} {:>10.3} {:>10.3}",
            "DNS nope.default.svc.cluster.local (NXDOMAIN)", n.qps, n.p50_ms, n.p99_ms
        );
    }
    println!(
        "  {:<44} {:>10} {:>10.1} {:>10.1}",
        "ready in API → programmed (median, max) ms",
        fig.flips.len(),
        median(flip_ready.clone()),
        max(&flip_ready)
    );
    println!(
        "  {:<44} {:>10} {:>10.1} {:>10.1}",
        "touch exec → programmed (median, max) ms",
        fig.flips.len(),
        median(flip_exec.clone()),
        max(&flip_exec)
    );
    println!();
    println!(
        "  ClusterIP vs direct: {:.2}× the req/s, {:.2}× the p99 ({c_rps:.0} vs {d_rps:.0} req/s; p99 {c_p99:.3} vs {d_p99:.3} ms); SYNs dropped at web over all runs (PAWS in TIME_WAIT / accept queue full): direct {} / {}, ClusterIP {} / {}",
        c_rps / d_rps,
        c_p99 / d_p99,
        fig.direct.iter().map(|r| r.paws).sum::<u64>(),
        fig.direct.iter().map(|r| r.listen_drops).sum::<u64>(),
        fig.cluster_ip.iter().map(|r| r.paws).sum::<u64>(),
        fig.cluster_ip.iter().map(|r| r.listen_drops).sum::<u64>()
    );
    println!(
        "  cluster DNS from a pod: {q:.0} qps, p50 {q50:.3} ms, p99 {q99:.3} ms ({} queries, {} in flight){}",
        opts.dns_queries,
        opts.dns_concurrency,
        nx.as_ref().map_or(String::new(), |n| format!(
            "; NXDOMAIN {:.0} qps, p99 {:.3} ms, rcodes {}",
            n.qps, n.p99_ms, n.rcodes
        ))
    );
    println!(
        "  readiness → proxy programmed: median {:.1} ms, max {:.1} ms after Ready is in the API; median {:.1} ms, max {:.1} ms after the touching exec returned (includes up to one 1 s probe period)",
        median(flip_ready.clone()),
        max(&flip_ready),
        median(flip_exec.clone()),
        max(&flip_exec)
    );
    println!(
        "machine cores={cores} runs={} requests={} concurrency={} close={} direct_rps={d_rps:.0} direct_p50_ms={d_p50:.3} direct_p99_ms={d_p99:.3} clusterip_rps={c_rps:.0} clusterip_p50_ms={c_p50:.3} clusterip_p99_ms={c_p99:.3} ratio_rps={:.2} ratio_p99={:.2} dns_qps={q:.0} dns_p50_ms={q50:.3} dns_p99_ms={q99:.3} nxdomain_qps={:.0} nxdomain_p99_ms={:.3} flips={} ready_to_programmed_ms={:.1} ready_to_programmed_max_ms={:.1} exec_to_programmed_ms={:.1} exec_to_programmed_max_ms={:.1}",
        opts.runs,
        opts.requests,
        opts.concurrency,
        if opts.orderly_close { "fin" } else { "rst" },
        c_rps / d_rps,
        c_p99 / d_p99,
        nx.as_ref().map_or(f64::NAN, |n| n.qps),
        nx.as_ref().map_or(f64::NAN, |n| n.p99_ms),
        fig.flips.len(),
        median(flip_ready.clone()),
        max(&flip_ready),
        median(flip_exec.clone()),
        max(&flip_exec)
    );
}

// ------------------------------------------------------------------ cleanup

/// Deletes every pod and the Services, waits (bounded) for the pods to go so
/// the agent stops their containers and releases their addresses, then stops
/// the server.
async fn cleanup(client: &kube::Client, server: &mut Proc) {
    let pods: Api<Pod> = Api::default_namespaced(client.clone());
    let services: Api<Service> = Api::default_namespaced(client.clone());
    for s in ["web", "flip"] {
        let _ = services.delete(s, &DeleteParams::default()).await;
    }
    let _ = pods
        .delete_collection(&DeleteParams::default(), &ListParams::default())
        .await;
    wait_pods_gone(&pods, Duration::from_secs(60), || {
        server.check_alive("skiff server").is_ok()
    })
    .await;
    server.stop(Duration::from_secs(30));
}

async fn run(opts: Opts, mut signals: Signals) -> Result<()> {
    check_repo_root()?;
    check_built(&opts.skiff, "cargo build --release -p skiff")?;
    check_built(
        &opts.dnsperf,
        "cargo build --release -p skiff-net --example dnsperf",
    )?;
    let dir = TempDir::new(env!("CARGO_PKG_NAME"))?;
    let data = dir.0.join("data");
    let setup = async {
        let skiff = private_skiff_with_busybox(&opts.skiff, &dir.0, &data)?;
        start_server(&skiff, &data, &dir.0.join("server.log"), &[]).await
    };
    let (mut server, client, _) = signals.unless_signalled(setup).await?;
    let mut fig = Figures::default();
    let limit = Duration::from_secs(opts.timeout_s);
    let outcome = signals
        .within(limit, measure(&opts, &client, &data, &mut server, &mut fig))
        .await;
    if outcome.is_ok() {
        report(&opts, &fig);
    }
    println!("  cleaning up: deleting the pods, stopping the server");
    signals.clean_up(cleanup(&client, &mut server)).await;
    drop(server);
    force_cleanup(&data.join("agent/containers/runc"), &dir.0);
    outcome
}

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let exe_dir = exe_dir();
    let opts = Opts::parse(
        &args,
        exe_dir.join("skiff"),
        exe_dir.join("examples/dnsperf"),
    )?;
    println!(
        "skiff-bench-net: HTTP through a ClusterIP vs direct, cluster DNS, readiness → proxy programmed (one node, real runc; {} run(s))",
        opts.runs
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
            &args("--runs 5 --requests 100 --concurrency 4 --flips 2 --dnsperf /x/dnsperf --orderly-close"),
            "skiff".into(),
            "dnsperf".into(),
        )
        .unwrap();
        assert_eq!((o.runs, o.requests, o.concurrency, o.flips), (5, 100, 4, 2));
        assert_eq!(o.dnsperf, PathBuf::from("/x/dnsperf"));
        assert!(o.orderly_close);
        let d = Opts::parse(&[], "skiff".into(), "dnsperf".into()).unwrap();
        assert_eq!(
            (
                d.runs,
                d.requests,
                d.concurrency,
                d.dns_queries,
                d.dns_concurrency,
                d.flips
            ),
            (3, 20_000, 16, 50_000, 20, 10)
        );
        assert!(!d.orderly_close);
        for bad in ["--runs 0", "--runs", "--requests x", "--bogus 1"] {
            assert!(
                Opts::parse(&args(bad), "skiff".into(), "dnsperf".into()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn debug_durations_in_ms() {
        let cases = [
            ("250.5µs", Some(0.2505)),
            ("1.25ms", Some(1.25)),
            ("2s", Some(2000.0)),
            ("1.5s", Some(1500.0)),
            ("0ns", Some(0.0)),
            ("750ns", Some(0.00075)),
            ("fast", None),
            ("12", None),
        ];
        for (text, want) in cases {
            let got = parse_debug_duration_ms(text);
            match (got, want) {
                (Some(g), Some(w)) => assert!((g - w).abs() < 1e-9, "{text}: {g} vs {w}"),
                _ => assert_eq!(got, want, "{text}"),
            }
        }
    }

    #[test]
    fn dnsperf_output() {
        let out = "server      10.43.0.10:53\n\
                   queries     50000 sent, 50000 answered, 0 timed out, 20 in flight\n\
                   rcodes      {\"No Error\": 50000}\n\
                   elapsed     2.500 s\n\
                   qps         20000\n\
                   p50         812.3µs\n\
                   p99         3.1ms\n";
        let r = parse_dnsperf(out).unwrap();
        assert_eq!(r.qps, 20000.0);
        assert!((r.p50_ms - 0.8123).abs() < 1e-9);
        assert!((r.p99_ms - 3.1).abs() < 1e-9);
        assert_eq!(r.rcodes, "{\"No Error\": 50000}");
        assert!(r.queries.starts_with("50000 sent"));
        assert!(parse_dnsperf("qps 1\n").is_err());
    }

    #[test]
    fn netns_of_a_sandbox_record() {
        let rec = |name: &str, ns: &str, netns: serde_json::Value| {
            serde_json::json!({
                "id": "abc",
                "netns": netns,
                "labels": {"io.kubernetes.pod.name": name, "io.kubernetes.pod.namespace": ns},
            })
            .to_string()
        };
        let p = serde_json::Value::from("/d/sandboxes/abc/ns/net");
        assert_eq!(
            sandbox_netns(&rec("client", "default", p.clone()), "client"),
            Some(PathBuf::from("/d/sandboxes/abc/ns/net"))
        );
        assert_eq!(
            sandbox_netns(&rec("web", "default", p.clone()), "client"),
            None
        );
        assert_eq!(sandbox_netns(&rec("client", "other", p), "client"), None);
        // Host network: no netns.
        assert_eq!(
            sandbox_netns(&rec("client", "default", serde_json::Value::Null), "client"),
            None
        );
        assert_eq!(sandbox_netns("not json", "client"), None);
    }

    #[test]
    fn dnat_rules_are_matched_exactly() {
        let nft = "table ip skiff {\n\tchain endpoint-x {\n\t\tmeta l4proto tcp dnat to 10.42.0.12:8080\n\t}\n}\n";
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        assert!(programs(nft, ip("10.42.0.12"), 8080));
        assert!(
            !programs(nft, ip("10.42.0.1"), 8080),
            "a prefix of the address"
        );
        assert!(!programs(nft, ip("10.42.0.12"), 80), "a prefix of the port");
        assert!(!programs("", ip("10.42.0.12"), 8080));
    }

    #[test]
    fn netstat_counters() {
        let text = "TcpExt: SyncookiesSent PAWSActive PAWSEstab PAWSTimewait DelayedACKs\n\
                    TcpExt: 0 0 17 3 4\n\
                    IpExt: InNoRoutes InTruncatedPkts\n\
                    IpExt: 0 0\n";
        assert_eq!(netstat_counter(text, "TcpExt", "PAWSEstab"), Some(17));
        assert_eq!(netstat_counter(text, "TcpExt", "PAWSTimewait"), Some(3));
        assert_eq!(netstat_counter(text, "TcpExt", "DelayedACKs"), Some(4));
        assert_eq!(netstat_counter(text, "IpExt", "PAWSEstab"), None);
        assert_eq!(netstat_counter(text, "TcpExt", "Nope"), None);
        assert_eq!(netstat_counter("", "TcpExt", "PAWSEstab"), None);
    }

    #[test]
    fn pods_and_services() {
        let p: Pod = serde_json::from_value(pod_json("flip", "true", true)).unwrap();
        let c = &p.spec.unwrap().containers[0];
        let probe = c.readiness_probe.as_ref().unwrap();
        assert_eq!(
            (probe.period_seconds, probe.failure_threshold),
            (Some(1), Some(1))
        );
        assert_eq!(c.image.as_deref(), Some("busybox:latest"));
        let p: Pod = serde_json::from_value(pod_json("client", "sleep 1", false)).unwrap();
        assert!(p.spec.unwrap().containers[0].readiness_probe.is_none());
        let s: Service = serde_json::from_value(service_json("web")).unwrap();
        let port = &s.spec.unwrap().ports.unwrap()[0];
        assert_eq!(port.port, 80);
        assert_eq!(
            port.target_port,
            Some(k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(8080))
        );
    }
}
