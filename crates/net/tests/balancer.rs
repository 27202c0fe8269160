//! The API server load balancer against real TCP servers on 127.0.0.1.
//!
//! Each test server greets every connection with its name and a newline, then
//! echoes; so a client sees which server the balancer chose.

use skiff_net::balancer::{Balancer, BalancerConfig};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};

/// Long enough for any step on a loaded 2-core machine, short enough to fail fast.
const WAIT: Duration = Duration::from_secs(5);

/// A named echo server.
struct Echo {
    addr: SocketAddr,
    accept: JoinHandle<()>,
    conns: Arc<Mutex<JoinSet<()>>>,
}

impl Echo {
    async fn start(name: &str) -> Echo {
        Self::start_on("127.0.0.1:0".parse().unwrap(), name).await
    }

    async fn start_on(addr: SocketAddr, name: &str) -> Echo {
        let listener = TcpListener::bind(addr).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let conns = Arc::new(Mutex::new(JoinSet::new()));
        let greeting = format!("{name}\n");
        let accept = tokio::spawn({
            let conns = conns.clone();
            async move {
                loop {
                    let Ok((mut stream, _)) = listener.accept().await else {
                        continue;
                    };
                    let greeting = greeting.clone();
                    conns.lock().unwrap().spawn(async move {
                        stream.set_nodelay(true).unwrap();
                        if stream.write_all(greeting.as_bytes()).await.is_err() {
                            return;
                        }
                        let (mut r, mut w) = stream.split();
                        // Echo until the client half-closes, then half-close back.
                        if tokio::io::copy(&mut r, &mut w).await.is_ok() {
                            let _ = w.shutdown().await;
                        }
                    });
                }
            }
        });
        Echo {
            addr,
            accept,
            conns,
        }
    }

    fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Stops accepting (new connections are refused); open connections stay
    /// open and keep echoing, as behind a partition that lets nothing new in.
    async fn close_listener(&self) {
        self.accept.abort();
        while !self.accept.is_finished() {
            tokio::task::yield_now().await;
        }
    }

    /// Stops the server: listener and every accepted socket dropped.
    async fn kill(self) {
        self.close_listener().await;
        let mut conns = std::mem::take(&mut *self.conns.lock().unwrap());
        conns.shutdown().await;
    }
}

/// An address that refuses connections (a port just bound and released).
async fn refused_addr() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap().to_string()
}

/// A listener whose accept queue is full and never drained: a connect to it
/// gets no answer, like a black-holed server. Keep the result alive.
async fn black_hole() -> (SocketAddr, TcpListener, Vec<TcpStream>) {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..16 {
        match tokio::time::timeout(Duration::from_millis(300), TcpStream::connect(addr)).await {
            Ok(Ok(stream)) => fillers.push(stream),
            Ok(Err(err)) => panic!("connect to the filling listener failed: {err}"),
            // The queue is full: this connect got no answer at all.
            Err(_) => return (addr, listener, fillers),
        }
    }
    panic!("the accept queue never filled; cannot make a black-holed address here");
}

/// A client connection through the balancer, with the greeting read.
struct Client {
    stream: BufReader<TcpStream>,
    server: String,
}

impl Client {
    /// Connects and reads the greeting; `None` if the balancer closed the
    /// connection without reaching a server.
    async fn try_connect(addr: SocketAddr) -> Option<Client> {
        let stream = TcpStream::connect(addr).await.unwrap();
        stream.set_nodelay(true).unwrap();
        let mut stream = BufReader::new(stream);
        let mut line = String::new();
        let n = tokio::time::timeout(WAIT, stream.read_line(&mut line))
            .await
            .expect("no greeting and no close from the balancer")
            .unwrap_or(0);
        (n > 0).then(|| Client {
            stream,
            server: line.trim_end().to_string(),
        })
    }

    async fn connect(addr: SocketAddr) -> Client {
        Self::try_connect(addr)
            .await
            .expect("the balancer closed the connection without reaching a server")
    }

    /// Sends `msg` and reads it back.
    async fn ping(&mut self, msg: &[u8]) {
        self.stream.get_mut().write_all(msg).await.unwrap();
        let mut back = vec![0; msg.len()];
        tokio::time::timeout(WAIT, self.stream.read_exact(&mut back))
            .await
            .expect("echo timed out")
            .unwrap();
        assert_eq!(back, msg);
    }

    /// Waits until the connection is closed from the other end (EOF or reset).
    async fn closed(mut self) {
        let mut buf = [0; 64];
        loop {
            match tokio::time::timeout(WAIT, self.stream.read(&mut buf)).await {
                Err(_) => panic!("connection to {} was not closed", self.server),
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(_)) => {}
            }
        }
    }
}

fn fast() -> BalancerConfig {
    BalancerConfig {
        connect_timeout: Duration::from_millis(300),
        health_interval: Duration::from_millis(100),
    }
}

/// A config whose health check never runs within a test.
fn no_health_check() -> BalancerConfig {
    BalancerConfig {
        connect_timeout: Duration::from_millis(300),
        health_interval: Duration::from_secs(3600),
    }
}

async fn balancer(servers: Vec<String>, config: BalancerConfig) -> (Balancer, watch::Sender<bool>) {
    let (tx, rx) = watch::channel(false);
    let lb = Balancer::start_with("127.0.0.1:0".parse().unwrap(), servers, config, rx)
        .await
        .unwrap();
    (lb, tx)
}

async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn data_flows_both_ways_and_half_close_reaches_both_ends() {
    let a = Echo::start("a").await;
    let (lb, _stop) = balancer(vec![a.addr()], fast()).await;
    assert!(lb.local_addr().ip().is_loopback());
    assert_eq!(lb.current(), Some(a.addr()));

    let mut c = Client::connect(lb.local_addr()).await;
    assert_eq!(c.server, "a");
    c.ping(b"hello").await;

    // A large write, then a half-close: the server sees EOF only through the
    // balancer's half-close, echoes everything and half-closes back.
    let payload: Vec<u8> = (0..1_000_000u32).map(|i| (i % 251) as u8).collect();
    let (mut r, mut w) = c.stream.into_inner().into_split();
    let writer = tokio::spawn(async move {
        w.write_all(&payload).await.unwrap();
        w.shutdown().await.unwrap();
        payload
    });
    let mut back = Vec::new();
    tokio::time::timeout(WAIT, r.read_to_end(&mut back))
        .await
        .expect("no EOF after half-close")
        .unwrap();
    let payload = writer.await.unwrap();
    assert_eq!(back.len(), payload.len());
    assert!(back == payload);
}

#[tokio::test]
async fn first_server_refusing_means_the_second_is_used_and_becomes_current() {
    let dead = refused_addr().await;
    let b = Echo::start("b").await;
    let (lb, _stop) = balancer(vec![dead.clone(), b.addr()], no_health_check()).await;
    assert_eq!(lb.current(), Some(dead));

    let mut c = Client::connect(lb.local_addr()).await;
    assert_eq!(c.server, "b");
    c.ping(b"x").await;
    assert_eq!(lb.current(), Some(b.addr()));
    // New connections go straight to the current server.
    assert_eq!(Client::connect(lb.local_addr()).await.server, "b");
}

#[tokio::test]
async fn no_server_answering_closes_the_client_connection() {
    let (lb, _stop) = balancer(vec![refused_addr().await, refused_addr().await], fast()).await;
    assert!(Client::try_connect(lb.local_addr()).await.is_none());
}

#[tokio::test]
async fn server_stopped_mid_stream_closes_its_client_and_new_connections_reach_the_other() {
    let a = Echo::start("a").await;
    let b = Echo::start("b").await;
    let (lb, _stop) = balancer(vec![a.addr(), b.addr()], no_health_check()).await;
    let mut c = Client::connect(lb.local_addr()).await;
    assert_eq!(c.server, "a");
    c.ping(b"before").await;

    a.kill().await;
    c.closed().await;
    let mut c = Client::connect(lb.local_addr()).await;
    assert_eq!(c.server, "b");
    c.ping(b"after").await;
    assert_eq!(lb.current(), Some(b.addr()));
}

#[tokio::test]
async fn health_check_closes_connections_held_open_through_an_unreachable_server() {
    let a = Echo::start("a").await;
    let b = Echo::start("b").await;
    let (lb, _stop) = balancer(vec![a.addr(), b.addr()], fast()).await;
    let mut watch1 = Client::connect(lb.local_addr()).await;
    let mut watch2 = Client::connect(lb.local_addr()).await;
    assert_eq!((watch1.server.as_str(), watch2.server.as_str()), ("a", "a"));
    watch1.ping(b"1").await;
    watch2.ping(b"2").await;

    // `a` refuses new connections but never closes the open ones: only the
    // balancer can end them, once its health check finds `a` unreachable.
    a.close_listener().await;
    watch1.closed().await;
    watch2.closed().await;
    // Reconnecting clients reach `b` even before the check has moved on.
    assert_eq!(Client::connect(lb.local_addr()).await.server, "b");
    eventually("the health check moves to b", || {
        lb.current() == Some(b.addr())
    })
    .await;
    assert_eq!(Client::connect(lb.local_addr()).await.server, "b");
}

#[tokio::test]
async fn a_failed_dial_closes_connections_held_open_through_that_server() {
    let a = Echo::start("a").await;
    let b = Echo::start("b").await;
    let (lb, _stop) = balancer(vec![a.addr(), b.addr()], no_health_check()).await;
    let mut held = Client::connect(lb.local_addr()).await;
    assert_eq!(held.server, "a");
    held.ping(b"1").await;

    a.close_listener().await;
    // No health check runs: the next client's failed dial finds `a` gone.
    let mut next = Client::connect(lb.local_addr()).await;
    assert_eq!(next.server, "b");
    held.closed().await;
    next.ping(b"2").await;
}

#[tokio::test]
async fn black_holed_server_falls_back_within_the_connect_timeout() {
    let (hole, _listener, _fillers) = black_hole().await;
    let b = Echo::start("b").await;
    let (lb, _stop) = balancer(vec![hole.to_string(), b.addr()], no_health_check()).await;

    let started = Instant::now();
    let mut c = Client::connect(lb.local_addr()).await;
    let took = started.elapsed();
    assert_eq!(c.server, "b");
    c.ping(b"x").await;
    assert!(
        took >= Duration::from_millis(250),
        "fell back before the timeout: {took:?}"
    );
    assert!(took < Duration::from_millis(1500), "fallback took {took:?}");
    assert_eq!(lb.current(), Some(b.addr()));

    // The next connection does not wait for the black hole again.
    let started = Instant::now();
    assert_eq!(Client::connect(lb.local_addr()).await.server, "b");
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn health_check_moves_off_a_black_holed_current_server() {
    let (hole, _listener, _fillers) = black_hole().await;
    let b = Echo::start("b").await;
    let (lb, _stop) = balancer(vec![hole.to_string(), b.addr()], fast()).await;
    eventually("the health check moves to b", || {
        lb.current() == Some(b.addr())
    })
    .await;
    let started = Instant::now();
    assert_eq!(Client::connect(lb.local_addr()).await.server, "b");
    assert!(started.elapsed() < Duration::from_millis(250));
}

#[tokio::test]
async fn a_recovered_server_does_not_take_the_traffic_back() {
    let a = Echo::start("a").await;
    let b = Echo::start("b").await;
    let a_addr = a.addr;
    let (lb, _stop) = balancer(vec![a.addr(), b.addr()], fast()).await;
    a.kill().await;
    eventually("the health check moves to b", || {
        lb.current() == Some(b.addr())
    })
    .await;

    let _a_again = Echo::start_on(a_addr, "a again").await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(lb.current(), Some(b.addr()));
    assert_eq!(Client::connect(lb.local_addr()).await.server, "b");

    // Once b dies, a is used again.
    b.kill().await;
    eventually("the health check moves back to a", || {
        lb.current() == Some(a_addr.to_string())
    })
    .await;
    assert_eq!(Client::connect(lb.local_addr()).await.server, "a again");
}

#[tokio::test]
async fn set_servers_switches_and_closes_connections_to_removed_servers() {
    let a = Echo::start("a").await;
    let b = Echo::start("b").await;
    let c = Echo::start("c").await;
    let (lb, _stop) = balancer(vec![a.addr()], no_health_check()).await;
    let mut on_a = Client::connect(lb.local_addr()).await;
    assert_eq!(on_a.server, "a");
    on_a.ping(b"1").await;

    // The current server stays while it is listed, wherever it is listed.
    lb.set_servers(vec![b.addr(), a.addr()]);
    assert_eq!(lb.current(), Some(a.addr()));
    assert_eq!(Client::connect(lb.local_addr()).await.server, "a");
    on_a.ping(b"2").await;

    // Dropped from the list: the first listed takes over, and connections
    // to the dropped server end.
    lb.set_servers(vec![c.addr(), b.addr()]);
    assert_eq!(lb.current(), Some(c.addr()));
    on_a.closed().await;
    assert_eq!(Client::connect(lb.local_addr()).await.server, "c");

    // No servers: clients are closed at once.
    lb.set_servers(vec![]);
    assert_eq!(lb.current(), None);
    assert!(Client::try_connect(lb.local_addr()).await.is_none());

    // Servers learned later.
    lb.set_servers(vec![b.addr()]);
    assert_eq!(Client::connect(lb.local_addr()).await.server, "b");
}

#[tokio::test]
async fn shutdown_closes_the_listener_and_every_forwarded_connection() {
    let a = Echo::start("a").await;
    let (lb, stop) = balancer(vec![a.addr()], fast()).await;
    let mut c1 = Client::connect(lb.local_addr()).await;
    let mut c2 = Client::connect(lb.local_addr()).await;
    c1.ping(b"1").await;
    c2.ping(b"2").await;

    stop.send(true).unwrap();
    c1.closed().await;
    c2.closed().await;
    let deadline = Instant::now() + WAIT;
    loop {
        match TcpStream::connect(lb.local_addr()).await {
            Err(err) => {
                assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused);
                break;
            }
            Ok(_) => {
                assert!(Instant::now() < deadline, "the listener stayed open");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
}

/// Round-trip times of `n` one-byte ping-pongs over `stream`.
async fn round_trips(stream: &mut BufReader<TcpStream>, n: usize) -> Vec<Duration> {
    let mut times = Vec::with_capacity(n);
    let mut byte = [0u8; 1];
    for i in 0..n {
        let started = Instant::now();
        stream.get_mut().write_all(&[i as u8]).await.unwrap();
        stream.read_exact(&mut byte).await.unwrap();
        times.push(started.elapsed());
        assert_eq!(byte[0], i as u8);
    }
    times
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// The round-trip time the balancer adds on loopback. Run with
/// `cargo test -p skiff-net --release --test balancer -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check"]
async fn added_round_trip_latency() {
    const N: usize = 2_000;
    let a = Echo::start("a").await;
    let (lb, _stop) = balancer(vec![a.addr()], BalancerConfig::default()).await;

    let mut direct = Client::connect(a.addr).await.stream;
    let mut through = Client::connect(lb.local_addr()).await.stream;
    round_trips(&mut direct, 200).await;
    round_trips(&mut through, 200).await;
    // Alternate in batches so both paths see the same machine load.
    let (mut d, mut t) = (Vec::new(), Vec::new());
    for _ in 0..10 {
        d.extend(round_trips(&mut direct, N / 10).await);
        t.extend(round_trips(&mut through, N / 10).await);
    }
    let (d, t) = (median(d), median(t));
    println!(
        "round trip on loopback, median of {N}: direct {d:?}, through the balancer {t:?}, added {:?}",
        t.saturating_sub(d)
    );
}
