//! Liveness, readiness and startup probes: the per-probe state machine
//! (pure) and the four ways to probe (exec, httpGet, tcpSocket, grpc).
//!
//! Network probes connect from inside the pod's network namespace (a
//! thread enters it, connects, and hands the socket back), so they reach
//! the container at 127.0.0.1 whatever the pod network is.

use crate::runtime::Runtime;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::core::v1::{Container, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Which probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// livenessProbe
    Liveness,
    /// readinessProbe
    Readiness,
    /// startupProbe
    Startup,
}

impl Kind {
    /// "Liveness", as events word it.
    pub fn title(self) -> &'static str {
        match self {
            Kind::Liveness => "Liveness",
            Kind::Readiness => "Readiness",
            Kind::Startup => "Startup",
        }
    }
}

/// The result the kubelet keeps for a probe.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Result {
    /// Not probed yet (readiness counts as not ready, liveness and startup as fine).
    Unknown,
    /// Succeeded successThreshold times in a row.
    Success,
    /// Failed failureThreshold times in a row.
    Failure,
}

/// One attempt's outcome.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The probe passed.
    Success,
    /// The probe failed, with the message events carry.
    Failure(String),
}

/// The state of one probe of one running container.
#[derive(Debug, Clone, PartialEq)]
pub struct ProbeState {
    /// Which probe.
    pub kind: Kind,
    /// The spec.
    pub probe: Probe,
    /// When the container started.
    pub started_at: Timestamp,
    /// Current result.
    pub result: Result,
    successes: i32,
    failures: i32,
    last_run: Option<Timestamp>,
}

impl ProbeState {
    /// A probe of a container that started at `started_at`.
    pub fn new(kind: Kind, probe: Probe, started_at: Timestamp) -> Self {
        Self {
            kind,
            probe,
            started_at,
            result: Result::Unknown,
            successes: 0,
            failures: 0,
            last_run: None,
        }
    }

    fn period(&self) -> SignedDuration {
        SignedDuration::from_secs(self.probe.period_seconds.unwrap_or(10).max(1) as i64)
    }

    /// When this probe runs next.
    pub fn next_run(&self) -> Timestamp {
        match self.last_run {
            None => {
                self.started_at
                    + SignedDuration::from_secs(
                        self.probe.initial_delay_seconds.unwrap_or(0).max(0) as i64,
                    )
            }
            Some(t) => t + self.period(),
        }
    }

    /// Whether it is due at `now`.
    pub fn due(&self, now: Timestamp) -> bool {
        now >= self.next_run()
    }

    /// The attempt's timeout.
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.probe.timeout_seconds.unwrap_or(1).max(1) as u64)
    }

    /// Records an attempt; returns true when the result changed.
    pub fn record(&mut self, outcome: &Outcome, now: Timestamp) -> bool {
        self.last_run = Some(now);
        let before = self.result;
        match outcome {
            Outcome::Success => {
                self.failures = 0;
                self.successes += 1;
                if self.successes >= self.probe.success_threshold.unwrap_or(1).max(1) {
                    self.result = Result::Success;
                }
            }
            Outcome::Failure(_) => {
                self.successes = 0;
                self.failures += 1;
                if self.failures >= self.probe.failure_threshold.unwrap_or(3).max(1) {
                    self.result = Result::Failure;
                }
            }
        }
        // After a liveness or startup failure the container restarts; the counter starts over.
        if self.result == Result::Failure && self.kind != Kind::Readiness {
            self.failures = 0;
        }
        before != self.result
    }
}

/// Where a probe connects.
#[derive(Debug, Clone)]
pub struct Target {
    /// The pod's network namespace (None: the host's).
    pub netns: Option<PathBuf>,
    /// The address to use when no `host` is given (127.0.0.1 inside the pod).
    pub default_host: IpAddr,
}

fn port_of(port: &IntOrString, container: &Container) -> std::result::Result<u16, String> {
    match port {
        IntOrString::Int(p) => u16::try_from(*p).map_err(|_| format!("invalid port number: {p}")),
        IntOrString::String(name) => {
            if let Ok(p) = name.parse::<u16>() {
                return Ok(p);
            }
            container
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .ok_or_else(|| format!("couldn't find port: {name} in {}", container.name))
        }
    }
}

/// Connects to `addr` from inside a network namespace.
pub async fn connect_in(
    netns: Option<&Path>,
    addr: SocketAddr,
    timeout: Duration,
) -> std::io::Result<tokio::net::TcpStream> {
    let Some(ns) = netns else {
        return tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::TimedOut))?;
    };
    // Entering a namespace changes only the calling thread: a throwaway one
    // enters, connects and hands the socket back (it stays in the pod's namespace).
    let f = std::fs::File::open(ns)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let r = nix::sched::setns(&f, nix::sched::CloneFlags::CLONE_NEWNET)
            .map_err(std::io::Error::from)
            .and_then(|_| std::net::TcpStream::connect_timeout(&addr, timeout));
        let _ = tx.send(r);
    });
    let std_stream = rx
        .await
        .map_err(|_| std::io::Error::other("probe thread died"))??;
    std_stream.set_nonblocking(true)?;
    tokio::net::TcpStream::from_std(std_stream)
}

fn dial_error(addr: SocketAddr, e: &std::io::Error) -> String {
    let why = match e.kind() {
        std::io::ErrorKind::ConnectionRefused => "connect: connection refused".to_string(),
        std::io::ErrorKind::TimedOut => "i/o timeout".to_string(),
        _ => e.to_string(),
    };
    format!("dial tcp {addr}: {why}")
}

/// Runs one attempt of a probe.
pub async fn run(
    probe: &Probe,
    container: &Container,
    container_id: &str,
    target: &Target,
    runtime: &dyn Runtime,
) -> Outcome {
    let timeout = Duration::from_secs(probe.timeout_seconds.unwrap_or(1).max(1) as u64);
    if let Some(exec) = &probe.exec {
        let cmd = exec.command.clone().unwrap_or_default();
        return match runtime.exec_sync(container_id, &cmd, timeout).await {
            Ok(out) if out.exit_code == 0 => Outcome::Success,
            Ok(out) => {
                let mut msg = String::from_utf8_lossy(&out.stdout).to_string();
                msg.push_str(&String::from_utf8_lossy(&out.stderr));
                Outcome::Failure(if msg.trim().is_empty() {
                    format!("command {:?} exited with {}", cmd.join(" "), out.exit_code)
                } else {
                    msg
                })
            }
            Err(crate::runtime::RuntimeError::Timeout(_)) => {
                Outcome::Failure(format!("command {:?} timed out", cmd.join(" ")))
            }
            Err(e) => Outcome::Failure(e.to_string()),
        };
    }
    if let Some(tcp) = &probe.tcp_socket {
        let port = match port_of(&tcp.port, container) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host = tcp
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .unwrap_or(target.default_host);
        let addr = SocketAddr::new(host, port);
        return match tokio::time::timeout(
            timeout,
            connect_in(target.netns.as_deref(), addr, timeout),
        )
        .await
        {
            Ok(Ok(_)) => Outcome::Success,
            Ok(Err(e)) => Outcome::Failure(dial_error(addr, &e)),
            Err(_) => Outcome::Failure(format!("dial tcp {addr}: i/o timeout")),
        };
    }
    if let Some(http) = &probe.http_get {
        let port = match port_of(&http.port, container) {
            Ok(p) => p,
            Err(e) => return Outcome::Failure(e),
        };
        let host = http
            .host
            .as_deref()
            .and_then(|h| h.parse().ok())
            .unwrap_or(target.default_host);
        let addr = SocketAddr::new(host, port);
        let path = http.path.clone().unwrap_or_else(|| "/".into());
        let scheme = http.scheme.as_deref().unwrap_or("HTTP").to_lowercase();
        let url = format!("{scheme}://{addr}{path}");
        if scheme == "https" {
            // TLS probes do not verify certificates; a completed TCP connect is the check we can do here.
            return match tokio::time::timeout(
                timeout,
                connect_in(target.netns.as_deref(), addr, timeout),
            )
            .await
            {
                Ok(Ok(_)) => Outcome::Success,
                Ok(Err(e)) => Outcome::Failure(format!("Get \"{url}\": {}", dial_error(addr, &e))),
                Err(_) => Outcome::Failure(format!("Get \"{url}\": context deadline exceeded")),
            };
        }
        let headers: String = http
            .http_headers
            .iter()
            .flatten()
            .map(|h| format!("{}: {}\r\n", h.name, h.value))
            .collect();
        let attempt = async {
            let mut s = connect_in(target.netns.as_deref(), addr, timeout)
                .await
                .map_err(|e| format!("Get \"{url}\": {}", dial_error(addr, &e)))?;
            let has_host = http
                .http_headers
                .iter()
                .flatten()
                .any(|h| h.name.eq_ignore_ascii_case("host"));
            let host_line = if has_host {
                String::new()
            } else {
                format!("Host: {addr}\r\n")
            };
            let req = format!(
                "GET {path} HTTP/1.1\r\n{host_line}User-Agent: kube-probe/1.32\r\nAccept: */*\r\nConnection: close\r\n{headers}\r\n"
            );
            s.write_all(req.as_bytes())
                .await
                .map_err(|e| format!("Get \"{url}\": {e}"))?;
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            while buf.len() < 10 * 1024 {
                let n = s
                    .read(&mut chunk)
                    .await
                    .map_err(|e| format!("Get \"{url}\": {e}"))?;
                if n == 0 {
                    break;
                }
                buf.extend_from_slice(&chunk[..n]);
                if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
            }
            let line = String::from_utf8_lossy(&buf);
            let code: u16 = line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("Get \"{url}\": malformed HTTP response"))?;
            Ok::<u16, String>(code)
        };
        return match tokio::time::timeout(timeout, attempt).await {
            Ok(Ok(code)) if (200..400).contains(&code) => Outcome::Success,
            Ok(Ok(code)) => Outcome::Failure(format!("HTTP probe failed with statuscode: {code}")),
            Ok(Err(e)) => Outcome::Failure(e),
            Err(_) => Outcome::Failure(format!(
                "Get \"{url}\": context deadline exceeded (Client.Timeout exceeded while awaiting headers)"
            )),
        };
    }
    if let Some(grpc) = &probe.grpc {
        let Ok(port) = u16::try_from(grpc.port) else {
            return Outcome::Failure(format!("invalid port number: {}", grpc.port));
        };
        let addr = SocketAddr::new(target.default_host, port);
        let service = grpc.service.clone().unwrap_or_default();
        return match tokio::time::timeout(
            timeout,
            grpc_check(target.netns.as_deref(), addr, &service, timeout),
        )
        .await
        {
            Ok(r) => r,
            Err(_) => Outcome::Failure(format!(
                "timeout: health rpc did not complete within {}s",
                timeout.as_secs()
            )),
        };
    }
    Outcome::Success
}

/// The gRPC health check (grpc.health.v1.Health/Check) over HTTP/2 without TLS.
async fn grpc_check(
    netns: Option<&Path>,
    addr: SocketAddr,
    service: &str,
    timeout: Duration,
) -> Outcome {
    let stream = match connect_in(netns, addr, timeout).await {
        Ok(s) => s,
        Err(e) => {
            return Outcome::Failure(format!(
                "timeout: failed to connect service {addr:?} within {}s: {}",
                timeout.as_secs(),
                dial_error(addr, &e)
            ));
        }
    };
    // HealthCheckRequest { string service = 1; } behind the 5-byte gRPC frame header.
    let mut msg = Vec::new();
    if !service.is_empty() {
        msg.push(0x0a);
        msg.push(service.len() as u8);
        msg.extend_from_slice(service.as_bytes());
    }
    let mut body = vec![0u8];
    body.extend_from_slice(&(msg.len() as u32).to_be_bytes());
    body.extend_from_slice(&msg);
    let io = hyper_util::rt::TokioIo::new(stream);
    let (mut send, conn) =
        match hyper::client::conn::http2::handshake(hyper_util::rt::TokioExecutor::new(), io).await
        {
            Ok(x) => x,
            Err(e) => return Outcome::Failure(format!("rpc error: {e}")),
        };
    tokio::spawn(conn);
    let req = http::Request::post(format!("http://{addr}/grpc.health.v1.Health/Check"))
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(http_body_util::Full::new(bytes::Bytes::from(body)))
        .expect("valid request");
    let resp = match send.send_request(req).await {
        Ok(r) => r,
        Err(e) => return Outcome::Failure(format!("rpc error: {e}")),
    };
    use http_body_util::BodyExt;
    let collected = match resp.into_body().collect().await {
        Ok(c) => c,
        Err(e) => return Outcome::Failure(format!("rpc error: {e}")),
    };
    let grpc_status = collected
        .trailers()
        .and_then(|t| t.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let bytes = collected.to_bytes();
    if let Some(code) = grpc_status.filter(|c| c != "0") {
        return Outcome::Failure(format!("rpc error: code = {code}"));
    }
    // HealthCheckResponse { ServingStatus status = 1; } SERVING = 1.
    let status = if bytes.len() >= 7 && bytes[5] == 0x08 {
        bytes[6]
    } else {
        0
    };
    if status == 1 {
        Outcome::Success
    } else {
        let name = match status {
            0 => "UNKNOWN",
            2 => "NOT_SERVING",
            3 => "SERVICE_UNKNOWN",
            _ => "UNKNOWN",
        };
        Outcome::Failure(format!("service unhealthy (responded with \"{name}\")"))
    }
}

/// 127.0.0.1, the address probes use inside a pod's own network namespace.
pub const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn probe(v: serde_json::Value) -> Probe {
        serde_json::from_value(v).unwrap()
    }

    fn at(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    #[test]
    fn initial_delay_and_period_schedule_attempts() {
        let mut p = ProbeState::new(
            Kind::Liveness,
            probe(json!({"initialDelaySeconds": 5, "periodSeconds": 3})),
            at(0),
        );
        assert!(!p.due(at(4)));
        assert!(p.due(at(5)));
        p.record(&Outcome::Success, at(5));
        assert_eq!(p.next_run(), at(8));
    }

    #[test]
    fn thresholds_decide_the_result() {
        let mut p = ProbeState::new(
            Kind::Readiness,
            probe(json!({"failureThreshold": 3, "successThreshold": 2})),
            at(0),
        );
        assert_eq!(p.result, Result::Unknown);
        assert!(!p.record(&Outcome::Success, at(1)));
        assert!(
            p.record(&Outcome::Success, at(2)),
            "second success reaches successThreshold 2"
        );
        assert_eq!(p.result, Result::Success);
        p.record(&Outcome::Failure("x".into()), at(3));
        p.record(&Outcome::Failure("x".into()), at(4));
        assert_eq!(
            p.result,
            Result::Success,
            "two failures are below failureThreshold 3"
        );
        assert!(p.record(&Outcome::Failure("x".into()), at(5)));
        assert_eq!(p.result, Result::Failure);
        p.record(&Outcome::Success, at(6));
        assert_eq!(
            p.result,
            Result::Failure,
            "readiness needs successThreshold successes to recover"
        );
        p.record(&Outcome::Success, at(7));
        assert_eq!(p.result, Result::Success);
    }

    #[test]
    fn named_ports_resolve_from_the_container() {
        let c: Container = serde_json::from_value(
            json!({"name": "web", "ports": [{"name": "http", "containerPort": 8080}]}),
        )
        .unwrap();
        assert_eq!(port_of(&IntOrString::String("http".into()), &c), Ok(8080));
        assert_eq!(port_of(&IntOrString::Int(81), &c), Ok(81));
        assert_eq!(
            port_of(&IntOrString::String("nope".into()), &c),
            Err("couldn't find port: nope in web".into())
        );
    }

    #[tokio::test]
    async fn http_and_tcp_probes_against_a_local_server() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = [0u8; 1024];
                    let n = s.read(&mut buf).await.unwrap_or(0);
                    let req = String::from_utf8_lossy(&buf[..n]).to_string();
                    let code = if req.starts_with("GET /healthz ") {
                        "200 OK"
                    } else {
                        "500 Internal Server Error"
                    };
                    let _ = s
                        .write_all(
                            format!("HTTP/1.1 {code}\r\nContent-Length: 0\r\n\r\n").as_bytes(),
                        )
                        .await;
                });
            }
        });
        let rt = crate::runtime::fake::FakeRuntime::new();
        let c: Container = serde_json::from_value(json!({"name": "web"})).unwrap();
        let target = Target {
            netns: None,
            default_host: LOOPBACK,
        };
        let ok = probe(json!({"httpGet": {"path": "/healthz", "port": port}}));
        assert_eq!(run(&ok, &c, "id", &target, &rt).await, Outcome::Success);
        let bad = probe(json!({"httpGet": {"path": "/other", "port": port}}));
        assert_eq!(
            run(&bad, &c, "id", &target, &rt).await,
            Outcome::Failure("HTTP probe failed with statuscode: 500".into())
        );
        let tcp = probe(json!({"tcpSocket": {"port": port}}));
        assert_eq!(run(&tcp, &c, "id", &target, &rt).await, Outcome::Success);
        // A closed port: connection refused, worded as Kubernetes words it.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let refused = probe(json!({"tcpSocket": {"port": closed}}));
        assert_eq!(
            run(&refused, &c, "id", &target, &rt).await,
            Outcome::Failure(format!(
                "dial tcp 127.0.0.1:{closed}: connect: connection refused"
            ))
        );
    }
}
