//! Asking the upstream resolvers: UDP first, TCP when the UDP answer is
//! truncated, the next upstream when one fails or does not answer in time.

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query};
use std::collections::hash_map::RandomState;
use std::hash::BuildHasher;
use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

/// The UDP payload size the forwarder advertises (the DNS flag day 2020 value).
const EDNS_PAYLOAD: u16 = 1232;

/// A query id nobody can guess from the previous one.
fn query_id() -> u16 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    RandomState::new().hash_one(n) as u16
}

/// Asks each upstream in turn until one answers; None when none does.
pub(crate) async fn forward(
    upstreams: &[SocketAddr],
    query: &Query,
    recursion_desired: bool,
    timeout: Duration,
) -> Option<Message> {
    for upstream in upstreams {
        match exchange(*upstream, query, recursion_desired, timeout).await {
            Ok(m) => return Some(m),
            Err(e) => tracing::debug!("dns upstream {upstream}: {e}"),
        }
    }
    None
}

async fn exchange(
    upstream: SocketAddr,
    query: &Query,
    recursion_desired: bool,
    timeout: Duration,
) -> io::Result<Message> {
    let mut m = Message::new(query_id(), MessageType::Query, OpCode::Query);
    m.metadata.recursion_desired = recursion_desired;
    m.add_query(query.clone());
    let mut edns = Edns::new();
    edns.set_max_payload(EDNS_PAYLOAD);
    m.set_edns(edns);
    let bytes = m.to_vec().map_err(io::Error::other)?;
    let reply = tokio::time::timeout(timeout, udp(upstream, &bytes, m.metadata.id, query))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer over UDP"))??;
    if !reply.metadata.truncation {
        return Ok(reply);
    }
    tokio::time::timeout(timeout, tcp(upstream, &bytes, m.metadata.id, query))
        .await
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "no answer over TCP"))?
}

/// True when `reply` answers our question.
fn matches(reply: &Message, id: u16, query: &Query) -> bool {
    reply.metadata.id == id
        && reply.metadata.message_type == MessageType::Response
        && reply.queries.first().is_none_or(|q| {
            q.query_type() == query.query_type() && q.name().eq_ignore_root(query.name())
        })
}

async fn udp(upstream: SocketAddr, bytes: &[u8], id: u16, query: &Query) -> io::Result<Message> {
    let local: SocketAddr = if upstream.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (Ipv6Addr::UNSPECIFIED, 0).into()
    };
    let sock = UdpSocket::bind(local).await?;
    sock.connect(upstream).await?;
    sock.send(bytes).await?;
    let mut buf = vec![0u8; 65535];
    loop {
        let n = sock.recv(&mut buf).await?;
        // Anything that is not the answer to this query is ignored.
        if let Ok(reply) = Message::from_vec(&buf[..n])
            && matches(&reply, id, query)
        {
            return Ok(reply);
        }
    }
}

async fn tcp(upstream: SocketAddr, bytes: &[u8], id: u16, query: &Query) -> io::Result<Message> {
    let mut conn = TcpStream::connect(upstream).await?;
    let len = u16::try_from(bytes.len()).map_err(io::Error::other)?;
    let mut framed = len.to_be_bytes().to_vec();
    framed.extend_from_slice(bytes);
    conn.write_all(&framed).await?;
    let n = conn.read_u16().await?;
    let mut buf = vec![0u8; usize::from(n)];
    conn.read_exact(&mut buf).await?;
    let reply = Message::from_vec(&buf).map_err(io::Error::other)?;
    if !matches(&reply, id, query) {
        return Err(io::Error::other("TCP answer does not match the question"));
    }
    Ok(reply)
}
