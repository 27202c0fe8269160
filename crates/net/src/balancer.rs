//! The agent's client-side load balancer for the API servers (k3s' agent model).
//!
//! The agent's clients talk to `127.0.0.1:<port>`; each accepted TCP connection
//! is forwarded, bytes untouched (TLS passes through), to one API server. All new
//! connections go to the *current* server; it changes only when it stops
//! answering, so a working server is never abandoned for another (no flapping).
//!
//! When a server is found unreachable — a dial for a new connection fails, or
//! the periodic health check of the current server fails — every open connection
//! forwarded to it is closed at once, so long-lived watches held through a dead
//! or partitioned server end and their clients reconnect through the balancer to
//! a live one. Connections to a server dropped from the list by
//! [`Balancer::set_servers`] are closed the same way.
//!
//! The choice of server is the pure function [`order`]; the IO around it is thin.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::time::MissedTickBehavior;

/// Timeouts of a [`Balancer`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BalancerConfig {
    /// How long a dial to a server may take before the server counts as
    /// unreachable (a black-holed address answers nothing at all).
    pub connect_timeout: Duration,
    /// How often the current server is checked with a TCP connect.
    pub health_interval: Duration,
}

impl Default for BalancerConfig {
    /// A 2 s connect timeout and a health check every 5 s.
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(2),
            health_interval: Duration::from_secs(5),
        }
    }
}

/// A TCP load balancer listening on a local address and forwarding each
/// connection to the current API server.
///
/// It runs until the `shutdown` signal given to [`Balancer::start`] turns true
/// (or its sender goes away); then the listener and every forwarded
/// connection are closed.
#[derive(Debug)]
pub struct Balancer {
    local_addr: SocketAddr,
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    config: BalancerConfig,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// The configured servers, in order, without duplicates.
    servers: Vec<String>,
    /// Where new connections go first.
    current: Option<String>,
    /// Servers whose last dial failed; tried only after the others.
    failed: HashSet<String>,
    /// One signal per server with open connections: bumping it (or dropping
    /// the sender) closes every connection forwarded to that server.
    closers: HashMap<String, watch::Sender<u64>>,
}

impl Balancer {
    /// Binds `listen` (e.g. `127.0.0.1:0`) and forwards to `servers`
    /// (`"host:port"`, first one current) with the default timeouts.
    pub async fn start(
        listen: SocketAddr,
        servers: Vec<String>,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<Balancer> {
        Self::start_with(listen, servers, BalancerConfig::default(), shutdown).await
    }

    /// Like [`Balancer::start`], with the timeouts given in `config`.
    pub async fn start_with(
        listen: SocketAddr,
        servers: Vec<String>,
        config: BalancerConfig,
        shutdown: watch::Receiver<bool>,
    ) -> io::Result<Balancer> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let servers = dedup(servers);
        let shared = Arc::new(Shared {
            config,
            state: Mutex::new(State {
                current: servers.first().cloned(),
                servers,
                ..State::default()
            }),
        });
        tokio::spawn(accept_loop(listener, shared.clone(), shutdown.clone()));
        tokio::spawn(health_loop(shared.clone(), shutdown));
        tracing::info!(%local_addr, servers = ?shared.lock().servers, "API server load balancer listening");
        Ok(Balancer { local_addr, shared })
    }

    /// The address clients connect to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Replaces the server list (e.g. learned later); keeps the current one if
    /// still listed, else the first listed becomes current. Connections to
    /// servers no longer listed are closed.
    pub fn set_servers(&self, servers: Vec<String>) {
        let servers = dedup(servers);
        let mut state = self.shared.lock();
        let current = after_update(&servers, state.current.as_deref());
        if current != state.current {
            tracing::info!(from = ?state.current, to = ?current, "API server list changed");
        }
        state.current = current;
        state.failed.retain(|s| servers.contains(s));
        // Dropping a closer's sender ends every connection that listens to it.
        state.closers.retain(|s, _| servers.contains(s));
        state.servers = servers;
    }

    /// The server new connections go to now.
    pub fn current(&self) -> Option<String> {
        self.shared.lock().current.clone()
    }
}

/// The servers to try for a new connection, in order: from the current one
/// onwards through the list (wrapping around), with the servers whose last dial
/// failed moved to the end in that same order, as a last resort. Without a
/// listed current server the list order is kept.
pub fn order(servers: &[String], current: Option<&str>, failed: &HashSet<String>) -> Vec<String> {
    let start = current
        .and_then(|c| servers.iter().position(|s| s == c))
        .unwrap_or(0);
    let rotated = servers[start..].iter().chain(&servers[..start]);
    let (ok, bad): (Vec<&String>, Vec<&String>) = rotated.partition(|s| !failed.contains(*s));
    ok.into_iter().chain(bad).cloned().collect()
}

/// The current server after the list changed to `servers`: the old one if it is
/// still listed, else the first listed (none for an empty list).
fn after_update(servers: &[String], current: Option<&str>) -> Option<String> {
    match current {
        Some(c) if servers.iter().any(|s| s == c) => Some(c.to_string()),
        _ => servers.first().cloned(),
    }
}

/// `servers` without repeats, first occurrence kept.
fn dedup(servers: Vec<String>) -> Vec<String> {
    let mut seen = HashSet::new();
    servers
        .into_iter()
        .filter(|s| seen.insert(s.clone()))
        .collect()
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is consistent after every statement; a panic elsewhere
        // cannot leave it half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The servers to try now, and the current server they were chosen from.
    fn candidates(&self) -> (Option<String>, Vec<String>) {
        let state = self.lock();
        let order = order(&state.servers, state.current.as_deref(), &state.failed);
        (state.current.clone(), order)
    }

    /// `server` did not answer: remember it and close its connections.
    fn mark_failed(&self, server: &str, err: &io::Error) {
        let mut state = self.lock();
        let listed = state.servers.iter().any(|s| s == server);
        if listed && state.failed.insert(server.to_string()) {
            tracing::debug!(server, error = %err, "API server unreachable");
        }
        if let Some(closer) = state.closers.get(server) {
            closer.send_modify(|n| *n += 1);
            tracing::debug!(
                server,
                connections = closer.receiver_count(),
                "closing connections to unreachable API server"
            );
        }
    }

    /// `server` answered a dial made while `was_current` was current. It
    /// becomes current if that failed, unless another dial already moved on.
    /// Returns the signal that closes the connection if `server` fails later
    /// (already closed if `server` was dropped from the list meanwhile).
    fn mark_ok(&self, server: &str, was_current: Option<&str>) -> watch::Receiver<u64> {
        let mut state = self.lock();
        if !state.servers.iter().any(|s| s == server) {
            // Removed from the list while dialing: a closer nobody keeps, so
            // the connection ends at once.
            return watch::channel(0).1;
        }
        state.failed.remove(server);
        if was_current != Some(server) && state.current.as_deref() == was_current {
            match was_current {
                Some(old) => tracing::warn!("API server {old} unreachable; using {server}"),
                None => tracing::info!("using API server {server}"),
            }
            state.current = Some(server.to_string());
        }
        state
            .closers
            .entry(server.to_string())
            .or_insert_with(|| watch::channel(0).0)
            .subscribe()
    }

    /// Dials the candidates in order and returns the first that answers, with
    /// its closer. Marks every one that did not answer.
    async fn connect(&self) -> Option<(String, TcpStream, watch::Receiver<u64>)> {
        let (was_current, candidates) = self.candidates();
        for server in candidates {
            match dial(&server, self.config.connect_timeout).await {
                Ok(stream) => {
                    let closer = self.mark_ok(&server, was_current.as_deref());
                    return Some((server, stream, closer));
                }
                Err(err) => self.mark_failed(&server, &err),
            }
        }
        None
    }

    /// One health check: dials the current server; if it does not answer,
    /// marks it failed and moves to the first other server that answers.
    async fn check(&self) {
        let Some(current) = self.lock().current.clone() else {
            return;
        };
        match dial(&current, self.config.connect_timeout).await {
            Ok(_) => {
                self.lock().failed.remove(&current);
            }
            Err(err) => {
                self.mark_failed(&current, &err);
                match self.connect().await {
                    // The probe connection is dropped; its closer with it.
                    Some(_) => {}
                    None => tracing::warn!("no API server reachable"),
                }
            }
        }
    }
}

/// A TCP connection to `server`, or an error if it refuses or does not answer
/// within `timeout`.
async fn dial(server: &str, timeout: Duration) -> io::Result<TcpStream> {
    match tokio::time::timeout(timeout, TcpStream::connect(server)).await {
        Ok(result) => result,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("no answer within {timeout:?}"),
        )),
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        match accepted {
            Ok((client, peer)) => {
                tokio::spawn(forward(client, peer, shared.clone(), shutdown.clone()));
            }
            Err(err) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(error = %err, "load balancer accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    tracing::debug!("API server load balancer stopped");
}

async fn health_loop(shared: Arc<Shared>, mut shutdown: watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(shared.config.health_interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
        tokio::select! {
            _ = shared.check() => {}
            _ = shutdown.wait_for(|stop| *stop) => return,
        }
    }
}

/// Carries one client connection to a server until either side is done, the
/// server is found unreachable, or the balancer shuts down.
async fn forward(
    mut client: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<bool>,
) {
    let connected = tokio::select! {
        connected = shared.connect() => connected,
        _ = shutdown.wait_for(|stop| *stop) => return,
    };
    let Some((server, mut upstream, mut closer)) = connected else {
        tracing::warn!(%peer, "no API server reachable; closing client connection");
        return;
    };
    // Small requests and watch events should not wait for Nagle.
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    tokio::select! {
        copied = tokio::io::copy_bidirectional(&mut client, &mut upstream) => {
            if let Err(err) = copied {
                tracing::debug!(%peer, server, error = %err, "forwarded connection ended");
            }
        }
        // A bump or a dropped sender alike: the server is gone for us.
        _ = closer.changed() => {
            tracing::debug!(%peer, server, "closing connection to unreachable API server");
        }
        _ = shutdown.wait_for(|stop| *stop) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(s: &[&str]) -> Vec<String> {
        s.iter().map(|s| s.to_string()).collect()
    }

    struct OrderCase {
        name: &'static str,
        servers: &'static [&'static str],
        current: Option<&'static str>,
        failed: &'static [&'static str],
        want: &'static [&'static str],
    }

    const fn case(
        name: &'static str,
        servers: &'static [&'static str],
        current: Option<&'static str>,
        failed: &'static [&'static str],
        want: &'static [&'static str],
    ) -> OrderCase {
        OrderCase {
            name,
            servers,
            current,
            failed,
            want,
        }
    }

    #[test]
    fn order_starts_at_current_and_puts_failed_last() {
        let abc: &[&str] = &["a", "b", "c"];
        let cases = [
            case("empty list", &[], Some("a"), &[], &[]),
            case("no current keeps list order", abc, None, &[], abc),
            case("current first", abc, Some("a"), &[], abc),
            case("wraps from current", abc, Some("b"), &[], &["b", "c", "a"]),
            case("last is current", abc, Some("c"), &[], &["c", "a", "b"]),
            case("unlisted current", &["a", "b"], Some("z"), &[], &["a", "b"]),
            case(
                "failed current last",
                abc,
                Some("a"),
                &["a"],
                &["b", "c", "a"],
            ),
            case(
                "failed keep rotation order",
                &["a", "b", "c", "d"],
                Some("b"),
                &["b", "d"],
                &["c", "a", "b", "d"],
            ),
            case("all failed", abc, Some("b"), abc, &["b", "c", "a"]),
            case(
                "unlisted failed",
                &["a", "b"],
                Some("a"),
                &["x"],
                &["a", "b"],
            ),
        ];
        for c in cases {
            let failed: HashSet<String> = c.failed.iter().map(|s| s.to_string()).collect();
            let got = order(&list(c.servers), c.current, &failed);
            assert_eq!(got, list(c.want), "{}", c.name);
        }
    }

    #[test]
    fn after_update_keeps_a_listed_current() {
        type Case = (&'static str, &'static [&'static str], Option<&'static str>);
        let cases: [(Case, Option<&str>); 4] = [
            (("still listed", &["c", "b", "a"], Some("b")), Some("b")),
            (("dropped: first listed", &["c", "a"], Some("b")), Some("c")),
            (("none before: first listed", &["c", "a"], None), Some("c")),
            (("empty list", &[], Some("b")), None),
        ];
        for ((name, servers, current), want) in cases {
            assert_eq!(
                after_update(&list(servers), current).as_deref(),
                want,
                "{name}"
            );
        }
    }

    #[test]
    fn dedup_keeps_first_occurrence() {
        assert_eq!(
            dedup(list(&["b", "a", "b", "c", "a"])),
            list(&["b", "a", "c"])
        );
    }

    #[test]
    fn default_config_has_a_2s_connect_timeout_and_a_5s_health_check() {
        let config = BalancerConfig::default();
        assert_eq!(config.connect_timeout, Duration::from_secs(2));
        assert_eq!(config.health_interval, Duration::from_secs(5));
    }
}
