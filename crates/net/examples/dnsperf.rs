//! A small DNS load generator: sends N queries over UDP with C in flight and
//! prints queries per second and the p50/p99 latency.
//!
//! ```text
//! cargo run --release -p skiff-net --example dnsperf -- \
//!     [--server 10.96.0.10:53 | --local SERVICES] [-n 100000] [-c 50] \
//!     [--name kubernetes.default.svc.cluster.local.]... [--type A] [--timeout-ms 2000]
//! ```
//!
//! `--local K` starts the cluster DNS server in this process on 127.0.0.1 with
//! K ClusterIP Services `svc-0` … `svc-{K-1}` in `default`, and, without
//! `--name`, asks for all of them in turn. Several `--name`s are asked in turn.

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{Name, RecordType};
use skiff_net::dns::{DnsConfig, DnsServer};
use skiff_net::view::ClusterView;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::net::UdpSocket;
use tokio::sync::watch;

struct Args {
    server: Option<SocketAddr>,
    local: Option<usize>,
    n: usize,
    c: usize,
    names: Vec<String>,
    qtype: RecordType,
    timeout: Duration,
}

fn usage(msg: &str) -> ! {
    eprintln!("dnsperf: {msg}");
    eprintln!(
        "usage: dnsperf [--server ADDR | --local SERVICES] [-n N] [-c C] [--name NAME]... [--type T] [--timeout-ms MS]"
    );
    std::process::exit(2)
}

fn bad<T>(flag: &str, value: &str) -> T {
    usage(&format!("bad value for {flag}: {value}"))
}

fn parse_args() -> Args {
    let mut a = Args {
        server: None,
        local: None,
        n: 10_000,
        c: 20,
        names: Vec::new(),
        qtype: RecordType::A,
        timeout: Duration::from_secs(2),
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--server" => {
                let v = value();
                a.server = Some(v.parse().unwrap_or_else(|_| bad(&flag, &v)));
            }
            "--local" => {
                let v = value();
                a.local = Some(v.parse().unwrap_or_else(|_| bad(&flag, &v)));
            }
            "-n" => {
                let v = value();
                a.n = v.parse().unwrap_or_else(|_| bad(&flag, &v));
            }
            "-c" => {
                let v = value();
                a.c = v.parse().unwrap_or_else(|_| bad(&flag, &v));
            }
            "--name" => a.names.push(value()),
            "--type" => {
                let v = value();
                a.qtype = RecordType::from_str(&v.to_ascii_uppercase())
                    .unwrap_or_else(|_| bad(&flag, &v));
            }
            "--timeout-ms" => {
                let v = value();
                a.timeout = Duration::from_millis(v.parse().unwrap_or_else(|_| bad(&flag, &v)));
            }
            "-h" | "--help" => usage("help"),
            other => usage(&format!("unknown flag {other}")),
        }
    }
    if a.server.is_some() == a.local.is_some() {
        usage("give exactly one of --server and --local");
    }
    if a.c == 0 || a.n == 0 {
        usage("-n and -c must be positive");
    }
    a
}

/// A view with `k` ClusterIP Services `svc-i` in `default`.
fn synthetic_view(k: usize) -> ClusterView {
    let services = (0..k).map(|i| {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": format!("svc-{i}"), "namespace": "default"},
            "spec": {"clusterIP": format!("10.96.{}.{}", i / 250, 1 + i % 250),
                     "ports": [{"name": "http", "protocol": "TCP", "port": 80}]},
        }))
        .expect("a valid Service")
    });
    ClusterView::from_objects(services, [])
}

/// What one worker saw.
#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    timeouts: usize,
    rcodes: BTreeMap<String, usize>,
}

async fn worker(
    server: SocketAddr,
    queries: Arc<Vec<Vec<u8>>>,
    next: Arc<AtomicUsize>,
    n: usize,
    timeout: Duration,
) -> std::io::Result<Tally> {
    let sock = UdpSocket::bind(if server.is_ipv4() {
        "0.0.0.0:0"
    } else {
        "[::]:0"
    })
    .await?;
    sock.connect(server).await?;
    let mut tally = Tally::default();
    let mut buf = vec![0u8; 65535];
    loop {
        let i = next.fetch_add(1, Ordering::Relaxed);
        if i >= n {
            return Ok(tally);
        }
        let id = (i % 65536) as u16;
        let mut q = queries[i % queries.len()].clone();
        q[..2].copy_from_slice(&id.to_be_bytes());
        let start = Instant::now();
        sock.send(&q).await?;
        let deadline = start + timeout;
        loop {
            let got = tokio::time::timeout_at(deadline.into(), sock.recv(&mut buf)).await;
            match got {
                Err(_) => {
                    tally.timeouts += 1;
                    break;
                }
                Ok(r) => {
                    let len = r?;
                    // A late answer to an earlier, timed-out query is skipped.
                    let Ok(m) = Message::from_vec(&buf[..len]) else {
                        continue;
                    };
                    if m.metadata.id != id {
                        continue;
                    }
                    tally.latencies.push(start.elapsed());
                    *tally
                        .rcodes
                        .entry(m.metadata.response_code.to_string())
                        .or_default() += 1;
                    break;
                }
            }
        }
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx]
}

#[tokio::main]
async fn main() {
    let args = parse_args();
    let mut names = args.names.clone();
    // Both senders live until the end of main: the in-process server (if any)
    // keeps its view and runs until told to stop.
    let (view_tx, view_rx) = watch::channel(Arc::new(ClusterView::default()));
    let (stop_tx, stop_rx) = watch::channel(false);
    let server = match (args.server, args.local) {
        (Some(addr), _) => addr,
        (None, Some(k)) => {
            view_tx.send_replace(Arc::new(synthetic_view(k)));
            let any: SocketAddr = "127.0.0.1:0".parse().expect("an address");
            let dns = DnsServer::bind(vec![any], view_rx, DnsConfig::default())
                .await
                .unwrap_or_else(|e| usage(&e.to_string()));
            let addr = dns.local_addrs()[0];
            tokio::spawn(dns.run(stop_rx));
            if names.is_empty() {
                names = (0..k.max(1))
                    .map(|i| format!("svc-{i}.default.svc.cluster.local."))
                    .collect();
            }
            addr
        }
        (None, None) => unreachable!("checked in parse_args"),
    };
    if names.is_empty() {
        names.push("kubernetes.default.svc.cluster.local.".into());
    }
    let queries: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            let name = Name::from_ascii(n).unwrap_or_else(|_| usage(&format!("bad name {n}")));
            let mut m = Message::new(0, MessageType::Query, OpCode::Query);
            m.metadata.recursion_desired = true;
            m.add_query(Query::query(name, args.qtype));
            m.to_vec().expect("an encodable query")
        })
        .collect();
    let queries = Arc::new(queries);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let workers: Vec<_> = (0..args.c)
        .map(|_| {
            tokio::spawn(worker(
                server,
                queries.clone(),
                next.clone(),
                args.n,
                args.timeout,
            ))
        })
        .collect();
    let mut all = Tally::default();
    for w in workers {
        match w.await {
            Ok(Ok(t)) => {
                all.latencies.extend(t.latencies);
                all.timeouts += t.timeouts;
                for (k, v) in t.rcodes {
                    *all.rcodes.entry(k).or_default() += v;
                }
            }
            Ok(Err(e)) => eprintln!("dnsperf: worker: {e}"),
            Err(e) => eprintln!("dnsperf: worker: {e}"),
        }
    }
    let elapsed = start.elapsed();
    all.latencies.sort();
    let answered = all.latencies.len();
    println!("server      {server}");
    println!(
        "queries     {} sent, {answered} answered, {} timed out, {} in flight",
        args.n, all.timeouts, args.c
    );
    println!("rcodes      {:?}", all.rcodes);
    println!("elapsed     {:.3} s", elapsed.as_secs_f64());
    println!("qps         {:.0}", answered as f64 / elapsed.as_secs_f64());
    println!("p50         {:?}", percentile(&all.latencies, 0.50));
    println!("p99         {:?}", percentile(&all.latencies, 0.99));
    stop_tx.send_replace(true);
    drop(view_tx);
}
