//! The DNS server: hickory-server on UDP and TCP, answering each question from
//! the current [`ClusterView`] snapshot.

use super::answer::{Answer, DnsConfig, answer};
use super::forward::forward;
use crate::view::ClusterView;
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::proto::op::{
    Edns, Header, HeaderCounts, Message, MessageType, Metadata, OpCode, Query, ResponseCode,
};
use hickory_server::proto::rr::{DNSClass, Record};
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::watch;

/// How long one upstream gets to answer before the next is tried.
const UPSTREAM_TIMEOUT: Duration = Duration::from_secs(2);
/// How long an idle TCP client connection stays open.
const TCP_IDLE: Duration = Duration::from_secs(10);
/// Responses queued per TCP connection.
const TCP_BUFFER: usize = 32;

/// Why the DNS server could not start or stopped.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No address to listen on was given.
    #[error("no address given to serve DNS on")]
    NoAddress,
    /// A socket could not be bound.
    #[error("cannot listen for DNS over {proto} on {addr}: {source}")]
    Bind {
        /// "UDP" or "TCP".
        proto: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The server's sockets failed while serving.
    #[error("DNS server failed: {0}")]
    Serve(String),
}

/// The request handler: answers from the latest view snapshot, forwards the rest.
struct Handler {
    view: watch::Receiver<Arc<ClusterView>>,
    config: DnsConfig,
}

/// A bound cluster DNS server, serving UDP and TCP on the same addresses.
pub struct DnsServer {
    server: Server<Handler>,
    local: Vec<SocketAddr>,
}

impl DnsServer {
    /// Binds UDP and TCP on every address. A port of 0 picks one free port
    /// for both protocols.
    pub async fn bind(
        bind: Vec<SocketAddr>,
        view: watch::Receiver<Arc<ClusterView>>,
        config: DnsConfig,
    ) -> Result<Self, Error> {
        if bind.is_empty() {
            return Err(Error::NoAddress);
        }
        let mut server = Server::new(Handler { view, config });
        let mut local = Vec::new();
        for addr in bind {
            let (udp, tcp) = bind_pair(addr).await?;
            local.push(udp.local_addr().map_err(|source| Error::Bind {
                proto: "UDP",
                addr,
                source,
            })?);
            server.register_socket(udp);
            server.register_listener(tcp, TCP_IDLE, TCP_BUFFER);
        }
        Ok(Self { server, local })
    }

    /// The addresses actually bound (UDP and TCP share each one).
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local
    }

    /// Serves until `shutdown` turns true (or its sender goes away), then
    /// stops accepting and waits for the requests in flight.
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) -> Result<(), Error> {
        tokio::select! {
            r = self.server.block_until_done() => {
                return r.map_err(|e| Error::Serve(e.to_string()));
            }
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
        self.server
            .shutdown_gracefully()
            .await
            .map_err(|e| Error::Serve(e.to_string()))
    }
}

/// Binds UDP and TCP on `addr`; with port 0, on one port free for both.
async fn bind_pair(addr: SocketAddr) -> Result<(UdpSocket, TcpListener), Error> {
    let udp_err = |source| Error::Bind {
        proto: "UDP",
        addr,
        source,
    };
    let tcp_err = |source| Error::Bind {
        proto: "TCP",
        addr,
        source,
    };
    let mut tries = if addr.port() == 0 { 16 } else { 1 };
    loop {
        let udp = UdpSocket::bind(addr).await.map_err(udp_err)?;
        let port = udp.local_addr().map_err(udp_err)?.port();
        match TcpListener::bind(SocketAddr::new(addr.ip(), port)).await {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if tries > 1 && e.kind() == std::io::ErrorKind::AddrInUse => tries -= 1,
            Err(e) => return Err(tcp_err(e)),
        }
    }
}

/// Serves cluster DNS on `bind` (UDP and TCP) until `shutdown` turns true.
pub async fn serve(
    bind: Vec<SocketAddr>,
    view: watch::Receiver<Arc<ClusterView>>,
    config: DnsConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<(), Error> {
    let server = DnsServer::bind(bind, view, config).await?;
    tracing::info!("cluster DNS listening on {:?}", server.local_addrs());
    server.run(shutdown).await
}

/// A response without records (errors).
async fn reply_code<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    mut handle: R,
    code: ResponseCode,
) -> ResponseInfo {
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.response_code = code;
    meta.recursion_available = true;
    let response = MessageResponseBuilder::new(&request.queries, edns).build_no_records(meta);
    send(request, &mut handle, response).await
}

async fn send<'a, R: ResponseHandler>(
    request: &Request,
    handle: &mut R,
    response: hickory_server::zone_handler::MessageResponse<
        '_,
        'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
        impl Iterator<Item = &'a Record> + Send + 'a,
    >,
) -> ResponseInfo {
    match handle.send_response(response).await {
        Ok(info) => info,
        Err(e) => {
            tracing::debug!("dns: sending a response to {}: {e}", request.src());
            let mut meta = Metadata::response_from_request(&request.metadata);
            meta.response_code = ResponseCode::ServFail;
            ResponseInfo::from(Header {
                metadata: meta,
                counts: HeaderCounts::default(),
            })
        }
    }
}

#[async_trait::async_trait]
impl RequestHandler for Handler {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        handle: R,
    ) -> ResponseInfo {
        // EDNS in, EDNS out: the client's payload size bounds the UDP answer.
        let edns = request.edns.as_ref().map(|req| {
            let mut e = Edns::new();
            e.set_max_payload(req.max_payload().max(512));
            e
        });
        let edns = edns.as_ref();
        if request.metadata.message_type != MessageType::Query {
            return reply_code(request, edns, handle, ResponseCode::FormErr).await;
        }
        if request.metadata.op_code != OpCode::Query {
            return reply_code(request, edns, handle, ResponseCode::NotImp).await;
        }
        let Ok(info) = request.request_info() else {
            return reply_code(request, edns, handle, ResponseCode::FormErr).await;
        };
        let query = info.query.original().clone();
        let decided = if query.query_class() == DNSClass::IN {
            let view = self.view.borrow().clone();
            answer(&view, &self.config, query.name(), query.query_type())
        } else {
            Answer::Forward
        };
        match decided {
            Answer::Forward => self.forwarded(request, &query, edns, handle).await,
            Answer::Records {
                mut answers,
                additionals,
                chase,
            } => {
                if let Some(target) = chase {
                    let q = Query::query(target, query.query_type());
                    let rd = request.metadata.recursion_desired;
                    if let Some(up) =
                        forward(&self.config.upstreams, &q, rd, UPSTREAM_TIMEOUT).await
                    {
                        answers.extend(up.answers);
                    }
                }
                authoritative(
                    request,
                    edns,
                    handle,
                    ResponseCode::NoError,
                    &answers,
                    &additionals,
                    None,
                )
                .await
            }
            Answer::NoData { soa } => {
                authoritative(
                    request,
                    edns,
                    handle,
                    ResponseCode::NoError,
                    &[],
                    &[],
                    Some(&soa),
                )
                .await
            }
            Answer::NxDomain { soa } => {
                authoritative(
                    request,
                    edns,
                    handle,
                    ResponseCode::NXDomain,
                    &[],
                    &[],
                    Some(&soa),
                )
                .await
            }
        }
    }
}

/// An answer of our own: authoritative, SOA in the authority section when given.
async fn authoritative<R: ResponseHandler>(
    request: &Request,
    edns: Option<&Edns>,
    mut handle: R,
    code: ResponseCode,
    answers: &[Record],
    additionals: &[Record],
    soa: Option<&Record>,
) -> ResponseInfo {
    let mut meta = Metadata::response_from_request(&request.metadata);
    meta.response_code = code;
    meta.authoritative = true;
    meta.recursion_available = true;
    let response = MessageResponseBuilder::new(&request.queries, edns).build(
        meta,
        answers.iter(),
        std::iter::empty(),
        soa,
        additionals.iter(),
    );
    send(request, &mut handle, response).await
}

impl Handler {
    /// Relays the upstreams' answer; SERVFAIL when none answers.
    async fn forwarded<R: ResponseHandler>(
        &self,
        request: &Request,
        query: &Query,
        edns: Option<&Edns>,
        mut handle: R,
    ) -> ResponseInfo {
        let rd = request.metadata.recursion_desired;
        let Some(up): Option<Message> =
            forward(&self.config.upstreams, query, rd, UPSTREAM_TIMEOUT).await
        else {
            return reply_code(request, edns, handle, ResponseCode::ServFail).await;
        };
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.response_code = up.metadata.response_code;
        meta.authoritative = up.metadata.authoritative;
        meta.authentic_data = up.metadata.authentic_data;
        meta.recursion_available = true;
        let response = MessageResponseBuilder::new(&request.queries, edns).build(
            meta,
            up.answers.iter(),
            up.authorities.iter(),
            std::iter::empty(),
            up.additionals.iter(),
        );
        send(request, &mut handle, response).await
    }
}
