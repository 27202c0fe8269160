//! `pods/portforward`: the server side of `kubectl port-forward`.
//!
//! kubectl 1.32 speaks SPDY/3.1 (as the kubelet's streaming server does) in
//! one of two wrappings:
//!
//! * a WebSocket upgrade with subprotocol `SPDY/3.1+portforward.k8s.io`, the
//!   SPDY frames carried as a byte stream in binary messages (the API
//!   server's tunnelling form, tried first), and
//! * a direct HTTP/1.1 `Upgrade: SPDY/3.1` with
//!   `X-Stream-Protocol-Version: portforward.k8s.io` (the fallback, and the
//!   only form when `KUBECTL_PORT_FORWARD_WEBSOCKETS=false`).
//!
//! Both run the same [`serve`] session. For every local connection the client
//! opens two streams carrying the same `requestid` header: an `error` stream
//! (which it half-closes at once and reads to its end; any text there is
//! reported as a forwarding error) and a `data` stream whose bytes are copied
//! to and from a TCP connection to `port` inside the pod.
//!
//! The framing follows the SPDY/3 draft as implemented by
//! `github.com/moby/spdystream` (the library client-go uses): header blocks
//! are zlib-compressed with the SPDY/3 preset dictionary, one compression
//! context per direction for the life of the connection, each block ended by
//! a sync flush.

use crate::error::ApiError;
use crate::node::PodConn;
use axum::body::Body;
use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use futures::future::BoxFuture;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

/// Opens a TCP connection to a port inside the pod.
pub type Connector =
    Arc<dyn Fn(u16) -> BoxFuture<'static, Result<PodConn, ApiError>> + Send + Sync>;

/// The port-forward stream protocol (`X-Stream-Protocol-Version`).
pub const PROTOCOL: &str = "portforward.k8s.io";
/// The WebSocket subprotocol carrying SPDY for port-forward.
pub const WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The `Upgrade` token of a direct SPDY upgrade.
pub const SPDY_UPGRADE: &str = "SPDY/3.1";

/// SPDY version carried in control frames.
const VERSION: u16 = 3;
/// FLAG_FIN on DATA, SYN_STREAM, SYN_REPLY and HEADERS frames.
pub const FLAG_FIN: u8 = 0x01;
/// RST_STREAM status PROTOCOL_ERROR.
pub const RST_PROTOCOL_ERROR: u32 = 1;
/// RST_STREAM status CANCEL.
pub const RST_CANCEL: u32 = 5;
/// The largest header block (decompressed) accepted.
const MAX_HEADER_BLOCK: usize = 1 << 20;
/// How much of the pod's output goes in one DATA frame.
const CHUNK: usize = 32 * 1024;

const TYPE_SYN_STREAM: u16 = 1;
const TYPE_SYN_REPLY: u16 = 2;
const TYPE_RST_STREAM: u16 = 3;
const TYPE_SETTINGS: u16 = 4;
const TYPE_PING: u16 = 6;
const TYPE_GOAWAY: u16 = 7;
const TYPE_HEADERS: u16 = 8;
const TYPE_WINDOW_UPDATE: u16 = 9;

/// The names the SPDY/3 dictionary lists first, each preceded by its length.
const DICTIONARY_WORDS: &[&str] = &[
    "options",
    "head",
    "post",
    "put",
    "delete",
    "trace",
    "accept",
    "accept-charset",
    "accept-encoding",
    "accept-language",
    "accept-ranges",
    "age",
    "allow",
    "authorization",
    "cache-control",
    "connection",
    "content-base",
    "content-encoding",
    "content-language",
    "content-length",
    "content-location",
    "content-md5",
    "content-range",
    "content-type",
    "date",
    "etag",
    "expect",
    "expires",
    "from",
    "host",
    "if-match",
    "if-modified-since",
    "if-none-match",
    "if-range",
    "if-unmodified-since",
    "last-modified",
    "location",
    "max-forwards",
    "pragma",
    "proxy-authenticate",
    "proxy-authorization",
    "range",
    "referer",
    "retry-after",
    "server",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "user-agent",
    "vary",
    "via",
    "warning",
    "www-authenticate",
    "method",
    "get",
    "status",
    "200 OK",
    "version",
    "HTTP/1.1",
    "url",
    "public",
    "set-cookie",
    "keep-alive",
    "origin",
];

/// The SPDY/3 dictionary's unprefixed tail.
const DICTIONARY_TAIL: &str = concat!(
    "100101201202205206300302303304305306307402405406407408409410411412413414415416417502504505",
    "203 Non-Authoritative Information204 No Content301 Moved Permanently400 Bad Request",
    "401 Unauthorized403 Forbidden404 Not Found500 Internal Server Error501 Not Implemented",
    "503 Service UnavailableJan Feb Mar Apr May Jun Jul Aug Sept Oct Nov Dec 00:00:00 ",
    "Mon, Tue, Wed, Thu, Fri, Sat, Sun, GMTchunked,text/html,image/png,image/jpg,image/gif,",
    "application/xml,application/xhtml+xml,text/plain,text/javascript,publicprivatemax-age=",
    "gzip,deflate,sdchcharset=utf-8charset=iso-8859-1,utf-,*,enq=0.",
);

/// The SPDY/3 header-compression dictionary (a protocol constant).
pub fn dictionary() -> &'static [u8] {
    static DICT: OnceLock<Vec<u8>> = OnceLock::new();
    DICT.get_or_init(|| {
        let mut d = Vec::with_capacity(1500);
        for w in DICTIONARY_WORDS {
            d.extend_from_slice(&(w.len() as u32).to_be_bytes());
            d.extend_from_slice(w.as_bytes());
        }
        d.extend_from_slice(DICTIONARY_TAIL.as_bytes());
        d
    })
}

/// A SPDY framing or compression error; it ends the session.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SpdyError {
    /// A control frame of a version other than 3.
    #[error("unsupported SPDY version {0}")]
    Version(u16),
    /// A frame shorter than its type requires.
    #[error("truncated {0} frame")]
    Truncated(&'static str),
    /// The header block could not be decompressed.
    #[error("header block decompression failed: {0}")]
    Compression(String),
    /// The decompressed header block is malformed.
    #[error("malformed header block")]
    HeaderBlock,
}

/// A header block: names (lower case) with their values, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(pub Vec<(String, Vec<String>)>);

impl Headers {
    /// The first value of `name`, if present.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .and_then(|(_, v)| v.first())
            .map(String::as_str)
    }

    /// The uncompressed block: a count, then length-prefixed names and
    /// values, several values of one name joined by NUL.
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::new();
        b.extend_from_slice(&(self.0.len() as u32).to_be_bytes());
        for (name, values) in &self.0 {
            let name = name.to_ascii_lowercase();
            let value = values.join("\0");
            b.extend_from_slice(&(name.len() as u32).to_be_bytes());
            b.extend_from_slice(name.as_bytes());
            b.extend_from_slice(&(value.len() as u32).to_be_bytes());
            b.extend_from_slice(value.as_bytes());
        }
        b
    }

    /// Parses an uncompressed block.
    pub fn decode(mut b: &[u8]) -> Result<Headers, SpdyError> {
        fn take<'a>(b: &mut &'a [u8], n: usize) -> Result<&'a [u8], SpdyError> {
            if b.len() < n {
                return Err(SpdyError::HeaderBlock);
            }
            let (head, rest) = b.split_at(n);
            *b = rest;
            Ok(head)
        }
        fn len(b: &mut &[u8]) -> Result<usize, SpdyError> {
            let x = take(b, 4)?;
            Ok(u32::from_be_bytes([x[0], x[1], x[2], x[3]]) as usize)
        }
        let count = len(&mut b)?;
        let mut out = Vec::with_capacity(count.min(64));
        for _ in 0..count {
            let n = len(&mut b)?;
            let name = String::from_utf8_lossy(take(&mut b, n)?).to_ascii_lowercase();
            let n = len(&mut b)?;
            let value = String::from_utf8_lossy(take(&mut b, n)?);
            out.push((name, value.split('\0').map(str::to_string).collect()));
        }
        Ok(Headers(out))
    }
}

/// Compresses header blocks: one zlib stream for the connection, primed
/// with the SPDY dictionary, each block ended by a sync flush.
pub struct HeaderCompressor(Compress);

impl Default for HeaderCompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderCompressor {
    /// A compressor at the best level, as Go's framer uses.
    pub fn new() -> Self {
        let mut c = Compress::new(Compression::best(), true);
        c.set_dictionary(dictionary())
            .expect("zlib accepts a dictionary before the first block");
        Self(c)
    }

    /// The compressed form of one (uncompressed) header block.
    pub fn compress(&mut self, block: &[u8]) -> Vec<u8> {
        let start = self.0.total_in();
        let mut out = Vec::with_capacity(block.len() + 64);
        loop {
            let done = (self.0.total_in() - start) as usize;
            if out.len() == out.capacity() {
                out.reserve(256);
            }
            self.0
                .compress_vec(&block[done..], &mut out, FlushCompress::Sync)
                .expect("deflate of an in-memory buffer");
            let done = (self.0.total_in() - start) as usize;
            // A flush is complete once input is consumed and output space is left.
            if done == block.len() && out.len() < out.capacity() {
                return out;
            }
        }
    }
}

/// Decompresses header blocks: the peer's zlib stream for the connection.
pub struct HeaderDecompressor(Decompress);

impl Default for HeaderDecompressor {
    fn default() -> Self {
        Self::new()
    }
}

impl HeaderDecompressor {
    /// A decompressor expecting a zlib header (and the SPDY dictionary).
    pub fn new() -> Self {
        Self(Decompress::new(true))
    }

    /// The uncompressed form of one compressed header block.
    pub fn decompress(&mut self, input: &[u8]) -> Result<Vec<u8>, SpdyError> {
        let start = self.0.total_in();
        let mut out = Vec::with_capacity(input.len() * 4 + 64);
        loop {
            let done = (self.0.total_in() - start) as usize;
            if out.len() == out.capacity() {
                if out.len() >= MAX_HEADER_BLOCK {
                    return Err(SpdyError::Compression("header block too large".into()));
                }
                out.reserve(out.capacity().max(256));
            }
            let (in0, out0) = (self.0.total_in(), self.0.total_out());
            match self
                .0
                .decompress_vec(&input[done..], &mut out, FlushDecompress::Sync)
            {
                Ok(_) => {}
                Err(e) => match e.needs_dictionary() {
                    Some(id) => {
                        let want = self
                            .0
                            .set_dictionary(dictionary())
                            .map_err(|e| SpdyError::Compression(e.to_string()))?;
                        if want != id {
                            return Err(SpdyError::Compression(format!(
                                "unknown dictionary {id:#x}"
                            )));
                        }
                        continue;
                    }
                    None => return Err(SpdyError::Compression(e.to_string())),
                },
            }
            let done = (self.0.total_in() - start) as usize;
            if done == input.len() && out.len() < out.capacity() {
                return Ok(out);
            }
            if self.0.total_in() == in0 && self.0.total_out() == out0 && out.len() < out.capacity()
            {
                return Err(SpdyError::Compression("no progress".into()));
            }
        }
    }
}

/// One SPDY/3 frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// DATA.
    Data {
        /// Stream.
        stream_id: u32,
        /// Flags (FLAG_FIN).
        flags: u8,
        /// Payload.
        data: Bytes,
    },
    /// SYN_STREAM: a peer opens a stream.
    SynStream {
        /// Stream.
        stream_id: u32,
        /// Associated-to stream (0 for none).
        associated_to: u32,
        /// Priority, 0 (highest) to 7.
        priority: u8,
        /// Credential slot.
        slot: u8,
        /// Flags (FLAG_FIN, FLAG_UNIDIRECTIONAL).
        flags: u8,
        /// Headers.
        headers: Headers,
    },
    /// SYN_REPLY: the answer to a SYN_STREAM.
    SynReply {
        /// Stream.
        stream_id: u32,
        /// Flags (FLAG_FIN).
        flags: u8,
        /// Headers.
        headers: Headers,
    },
    /// RST_STREAM.
    RstStream {
        /// Stream.
        stream_id: u32,
        /// Status code.
        status: u32,
    },
    /// SETTINGS: (flags, id, value) entries.
    Settings {
        /// Frame flags.
        flags: u8,
        /// Entries.
        entries: Vec<(u8, u32, u32)>,
    },
    /// PING.
    Ping {
        /// Ping id (odd from clients).
        id: u32,
    },
    /// GOAWAY.
    GoAway {
        /// The last stream the sender accepted.
        last_good_stream_id: u32,
        /// Status code.
        status: u32,
    },
    /// HEADERS.
    Headers {
        /// Stream.
        stream_id: u32,
        /// Flags (FLAG_FIN).
        flags: u8,
        /// Headers.
        headers: Headers,
    },
    /// WINDOW_UPDATE (stream 0: the whole session, SPDY/3.1).
    WindowUpdate {
        /// Stream, or 0.
        stream_id: u32,
        /// Window increase.
        delta: u32,
    },
    /// A control frame of a type this server ignores.
    Unknown {
        /// Its type.
        kind: u16,
    },
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

impl Frame {
    /// A DATA frame.
    pub fn data(stream_id: u32, data: impl Into<Bytes>, fin: bool) -> Frame {
        Frame::Data {
            stream_id,
            flags: if fin { FLAG_FIN } else { 0 },
            data: data.into(),
        }
    }

    /// The payload length announced by a frame's 8-byte header.
    pub fn payload_len(head: &[u8; 8]) -> usize {
        (be32(head, 4) & 0x00ff_ffff) as usize
    }

    /// Appends the wire form of the frame to `out`, compressing header
    /// blocks with `deflate`.
    pub fn encode(&self, deflate: &mut HeaderCompressor, out: &mut Vec<u8>) {
        let control = |out: &mut Vec<u8>, kind: u16, flags: u8, body: &[u8]| {
            out.extend_from_slice(&(0x8000 | VERSION).to_be_bytes());
            out.extend_from_slice(&kind.to_be_bytes());
            out.extend_from_slice(&(((flags as u32) << 24) | body.len() as u32).to_be_bytes());
            out.extend_from_slice(body);
        };
        let mut body = Vec::new();
        match self {
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                out.extend_from_slice(&(stream_id & 0x7fff_ffff).to_be_bytes());
                out.extend_from_slice(&(((*flags as u32) << 24) | data.len() as u32).to_be_bytes());
                out.extend_from_slice(data);
            }
            Frame::SynStream {
                stream_id,
                associated_to,
                priority,
                slot,
                flags,
                headers,
            } => {
                body.extend_from_slice(&stream_id.to_be_bytes());
                body.extend_from_slice(&associated_to.to_be_bytes());
                body.push(priority << 5);
                body.push(*slot);
                body.extend_from_slice(&deflate.compress(&headers.encode()));
                control(out, TYPE_SYN_STREAM, *flags, &body);
            }
            Frame::SynReply {
                stream_id,
                flags,
                headers,
            }
            | Frame::Headers {
                stream_id,
                flags,
                headers,
            } => {
                let kind = if matches!(self, Frame::SynReply { .. }) {
                    TYPE_SYN_REPLY
                } else {
                    TYPE_HEADERS
                };
                body.extend_from_slice(&stream_id.to_be_bytes());
                body.extend_from_slice(&deflate.compress(&headers.encode()));
                control(out, kind, *flags, &body);
            }
            Frame::RstStream { stream_id, status } => {
                body.extend_from_slice(&stream_id.to_be_bytes());
                body.extend_from_slice(&status.to_be_bytes());
                control(out, TYPE_RST_STREAM, 0, &body);
            }
            Frame::Settings { flags, entries } => {
                body.extend_from_slice(&(entries.len() as u32).to_be_bytes());
                for (f, id, value) in entries {
                    body.extend_from_slice(
                        &(((*f as u32) << 24) | (id & 0x00ff_ffff)).to_be_bytes(),
                    );
                    body.extend_from_slice(&value.to_be_bytes());
                }
                control(out, TYPE_SETTINGS, *flags, &body);
            }
            Frame::Ping { id } => control(out, TYPE_PING, 0, &id.to_be_bytes()),
            Frame::GoAway {
                last_good_stream_id,
                status,
            } => {
                body.extend_from_slice(&last_good_stream_id.to_be_bytes());
                body.extend_from_slice(&status.to_be_bytes());
                control(out, TYPE_GOAWAY, 0, &body);
            }
            Frame::WindowUpdate { stream_id, delta } => {
                body.extend_from_slice(&stream_id.to_be_bytes());
                body.extend_from_slice(&delta.to_be_bytes());
                control(out, TYPE_WINDOW_UPDATE, 0, &body);
            }
            Frame::Unknown { .. } => {}
        }
    }

    /// Parses a frame from its 8-byte header and its payload, decompressing
    /// header blocks with `inflate`.
    pub fn decode(
        head: &[u8; 8],
        payload: Bytes,
        inflate: &mut HeaderDecompressor,
    ) -> Result<Frame, SpdyError> {
        let first = be32(head, 0);
        let flags = head[4];
        if first & 0x8000_0000 == 0 {
            return Ok(Frame::Data {
                stream_id: first & 0x7fff_ffff,
                flags,
                data: payload,
            });
        }
        let version = ((first >> 16) & 0x7fff) as u16;
        let kind = (first & 0xffff) as u16;
        if version != VERSION {
            return Err(SpdyError::Version(version));
        }
        let p = &payload[..];
        let need = |n: usize, what: &'static str| {
            if p.len() < n {
                Err(SpdyError::Truncated(what))
            } else {
                Ok(())
            }
        };
        let mut headers_at = |at: usize| -> Result<Headers, SpdyError> {
            Headers::decode(&inflate.decompress(&p[at..])?)
        };
        Ok(match kind {
            TYPE_SYN_STREAM => {
                need(10, "SYN_STREAM")?;
                Frame::SynStream {
                    stream_id: be32(p, 0) & 0x7fff_ffff,
                    associated_to: be32(p, 4) & 0x7fff_ffff,
                    priority: p[8] >> 5,
                    slot: p[9],
                    flags,
                    headers: headers_at(10)?,
                }
            }
            TYPE_SYN_REPLY | TYPE_HEADERS => {
                need(4, "SYN_REPLY")?;
                let stream_id = be32(p, 0) & 0x7fff_ffff;
                let headers = headers_at(4)?;
                if kind == TYPE_SYN_REPLY {
                    Frame::SynReply {
                        stream_id,
                        flags,
                        headers,
                    }
                } else {
                    Frame::Headers {
                        stream_id,
                        flags,
                        headers,
                    }
                }
            }
            TYPE_RST_STREAM => {
                need(8, "RST_STREAM")?;
                Frame::RstStream {
                    stream_id: be32(p, 0) & 0x7fff_ffff,
                    status: be32(p, 4),
                }
            }
            TYPE_SETTINGS => {
                need(4, "SETTINGS")?;
                let n = be32(p, 0) as usize;
                need(4 + n.saturating_mul(8), "SETTINGS")?;
                let entries = (0..n)
                    .map(|i| {
                        let fid = be32(p, 4 + i * 8);
                        ((fid >> 24) as u8, fid & 0x00ff_ffff, be32(p, 8 + i * 8))
                    })
                    .collect();
                Frame::Settings { flags, entries }
            }
            TYPE_PING => {
                need(4, "PING")?;
                Frame::Ping { id: be32(p, 0) }
            }
            TYPE_GOAWAY => {
                need(4, "GOAWAY")?;
                Frame::GoAway {
                    last_good_stream_id: be32(p, 0) & 0x7fff_ffff,
                    status: if p.len() >= 8 { be32(p, 4) } else { 0 },
                }
            }
            TYPE_WINDOW_UPDATE => {
                need(8, "WINDOW_UPDATE")?;
                Frame::WindowUpdate {
                    stream_id: be32(p, 0) & 0x7fff_ffff,
                    delta: be32(p, 4) & 0x7fff_ffff,
                }
            }
            kind => Frame::Unknown { kind },
        })
    }
}

/// Answers a pods/portforward request (either upgrade form). `connect(port)`
/// opens a TCP stream to that port in the pod.
pub fn portforward_upgrade(
    mut req: Request<Body>,
    connect: Connector,
) -> Result<Response<Body>, ApiError> {
    let upgrade = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .trim()
        .to_string();
    let list = |name: &str| -> Vec<String> {
        req.headers()
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
            .filter(|s| !s.is_empty())
            .collect()
    };
    let mut resp = Response::new(Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let websocket = upgrade.eq_ignore_ascii_case("websocket");
    if websocket {
        let key = req
            .headers()
            .get("sec-websocket-key")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| ApiError::bad_request("Upgrade request required"))?
            .to_string();
        let offered = list("sec-websocket-protocol");
        if !offered.iter().any(|p| p == WEBSOCKET_PROTOCOL) {
            return Err(ApiError::bad_request(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{WEBSOCKET_PROTOCOL}\"]"
            )));
        }
        let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
        let h = resp.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(
            "sec-websocket-accept",
            HeaderValue::from_str(&accept).expect("base64 is ascii"),
        );
        h.insert(
            "sec-websocket-protocol",
            HeaderValue::from_static(WEBSOCKET_PROTOCOL),
        );
    } else if upgrade.eq_ignore_ascii_case(SPDY_UPGRADE) {
        let offered = list("x-stream-protocol-version");
        if !offered.is_empty() && !offered.iter().any(|p| p == PROTOCOL) {
            return Err(ApiError::forbidden(format!(
                "unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports [\"{PROTOCOL}\"]"
            )));
        }
        let h = resp.headers_mut();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static(SPDY_UPGRADE));
        if !offered.is_empty() {
            h.insert(
                "x-stream-protocol-version",
                HeaderValue::from_static(PROTOCOL),
            );
        }
    } else {
        return Err(ApiError::bad_request(format!(
            "unable to upgrade: missing upgrade headers in request: expected Upgrade: {SPDY_UPGRADE} or websocket"
        )));
    }
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => hyper_util::rt::TokioIo::new(u),
            Err(e) => {
                tracing::debug!("portforward upgrade: {e}");
                return;
            }
        };
        if websocket {
            serve_websocket(upgraded, connect).await;
        } else {
            serve(upgraded, connect).await;
        }
    });
    Ok(resp)
}

/// Runs a SPDY session over WebSocket binary messages: the messages'
/// payloads, concatenated, are the SPDY byte stream in each direction.
async fn serve_websocket<S>(io: S, connect: Connector)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use tokio_tungstenite::tungstenite::Message;
    let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
        io,
        tokio_tungstenite::tungstenite::protocol::Role::Server,
        None,
    )
    .await;
    let (mut sink, mut source) = ws.split();
    let (ours, theirs) = tokio::io::duplex(256 * 1024);
    let (mut from_session, mut to_session) = tokio::io::split(theirs);
    let inbound = async move {
        while let Some(Ok(msg)) = source.next().await {
            match msg {
                Message::Binary(b) if to_session.write_all(&b).await.is_err() => break,
                Message::Close(_) => break,
                _ => {}
            }
        }
        let _ = to_session.shutdown().await;
    };
    let outbound = async move {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match from_session.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if sink
                        .send(Message::Binary(Bytes::copy_from_slice(&buf[..n])))
                        .await
                        .is_err()
                    {
                        break;
                    }
                }
            }
        }
        let _ = sink.send(Message::Close(None)).await;
    };
    tokio::join!(inbound, outbound, serve(ours, connect));
}

/// What the session tells a stream's consumer.
#[derive(Debug)]
enum Event {
    Data(Bytes),
    Fin,
    Reset,
}

/// One accepted stream, waiting for its pair.
struct Half {
    id: u32,
    rx: mpsc::UnboundedReceiver<Event>,
}

#[derive(Default)]
struct Pair {
    port: u16,
    error: Option<Half>,
    data: Option<Half>,
}

/// Serves one port-forward SPDY session (server side) on `io` until the
/// peer goes away.
pub async fn serve<T>(io: T, connect: Connector)
where
    T: AsyncRead + AsyncWrite + Send + 'static,
{
    let (rd, wr) = tokio::io::split(io);
    let (out, rx) = mpsc::channel::<Frame>(64);
    let writer = tokio::spawn(write_frames(wr, rx));
    if let Err(e) = read_frames(rd, out, connect).await {
        tracing::debug!("portforward session: {e}");
    }
    let _ = writer.await;
}

async fn write_frames<W: AsyncWrite + Unpin>(mut wr: W, mut rx: mpsc::Receiver<Frame>) {
    let mut deflate = HeaderCompressor::new();
    let mut buf = Vec::with_capacity(CHUNK + 64);
    while let Some(frame) = rx.recv().await {
        buf.clear();
        frame.encode(&mut deflate, &mut buf);
        while buf.len() < CHUNK {
            match rx.try_recv() {
                Ok(f) => f.encode(&mut deflate, &mut buf),
                Err(_) => break,
            }
        }
        if wr.write_all(&buf).await.is_err() || wr.flush().await.is_err() {
            return;
        }
    }
    let _ = wr.shutdown().await;
}

/// Reads frames until the peer closes or sends GOAWAY.
async fn read_frames<R: AsyncRead>(
    rd: R,
    out: mpsc::Sender<Frame>,
    connect: Connector,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    let mut rd = Box::pin(tokio::io::BufReader::with_capacity(64 * 1024, rd));
    let mut inflate = HeaderDecompressor::new();
    let mut streams: HashMap<u32, mpsc::UnboundedSender<Event>> = HashMap::new();
    let mut pairs: HashMap<String, Pair> = HashMap::new();
    let mut last_id = 0u32;
    loop {
        let mut head = [0u8; 8];
        match rd.read_exact(&mut head).await {
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
            Err(e) => return Err(e.into()),
        }
        let mut payload = vec![0u8; Frame::payload_len(&head)];
        rd.read_exact(&mut payload).await?;
        let frame = Frame::decode(&head, payload.into(), &mut inflate)?;
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => {
                if stream_id % 2 == 0 || stream_id <= last_id {
                    out.send(Frame::RstStream {
                        stream_id,
                        status: RST_PROTOCOL_ERROR,
                    })
                    .await?;
                    continue;
                }
                last_id = stream_id;
                let (port, is_error) = match check_stream(&headers) {
                    Ok(v) => v,
                    Err(msg) => {
                        tracing::debug!("portforward stream {stream_id} refused: {msg}");
                        out.send(Frame::RstStream {
                            stream_id,
                            status: RST_CANCEL,
                        })
                        .await?;
                        continue;
                    }
                };
                out.send(Frame::SynReply {
                    stream_id,
                    flags: 0,
                    headers: Headers::default(),
                })
                .await?;
                let (tx, rx) = mpsc::unbounded_channel();
                if flags & FLAG_FIN != 0 {
                    let _ = tx.send(Event::Fin);
                } else {
                    streams.insert(stream_id, tx);
                }
                // Clients older than the requestid header number the pair
                // by the error stream's id; the data stream follows it.
                let request_id = match headers.get("requestid") {
                    Some(r) if !r.is_empty() => r.to_string(),
                    _ if is_error => stream_id.to_string(),
                    _ => stream_id.saturating_sub(2).to_string(),
                };
                let pair = pairs.entry(request_id.clone()).or_default();
                let half = Half { id: stream_id, rx };
                let slot = if is_error {
                    &mut pair.error
                } else {
                    pair.port = port;
                    &mut pair.data
                };
                if slot.is_some() {
                    let kind = if is_error { "error" } else { "data" };
                    if let Some(e) = &pair.error {
                        let msg = format!(
                            "error processing stream for request {request_id}: {kind} stream already assigned"
                        );
                        out.send(Frame::data(e.id, msg, false)).await?;
                    }
                    continue;
                }
                *slot = Some(half);
                if pair.error.is_some() && pair.data.is_some() {
                    let pair = pairs.remove(&request_id).expect("present");
                    let (Some(error), Some(data)) = (pair.error, pair.data) else {
                        continue;
                    };
                    tokio::spawn(forward(
                        out.clone(),
                        connect.clone(),
                        pair.port,
                        error,
                        data,
                    ));
                }
            }
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let n = data.len() as u32;
                match streams.get(&stream_id) {
                    Some(tx) => {
                        if n > 0 && tx.send(Event::Data(data)).is_err() {
                            out.send(Frame::WindowUpdate {
                                stream_id: 0,
                                delta: n,
                            })
                            .await?;
                        }
                        if flags & FLAG_FIN != 0 {
                            let _ = tx.send(Event::Fin);
                            streams.remove(&stream_id);
                        }
                    }
                    None if n > 0 => {
                        // Data for a finished stream still counts against
                        // the session window.
                        out.send(Frame::WindowUpdate {
                            stream_id: 0,
                            delta: n,
                        })
                        .await?;
                    }
                    None => {}
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(tx) = streams.remove(&stream_id) {
                    let _ = tx.send(Event::Reset);
                }
            }
            Frame::Ping { id } => {
                // Answer the peer's pings (odd ids); this server sends none.
                if id % 2 == 1 {
                    out.send(Frame::Ping { id }).await?;
                }
            }
            Frame::GoAway { .. } => return Ok(()),
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
    }
}

/// Validates a new stream's headers as the kubelet does: its port and
/// whether it is the error (true) or the data (false) stream.
fn check_stream(headers: &Headers) -> Result<(u16, bool), String> {
    let port = headers.get("port").unwrap_or("");
    if port.is_empty() {
        return Err("\"port\" header is required".into());
    }
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port < 1 {
        return Err(format!("port \"{port}\" must be > 0"));
    }
    match headers.get("streamtype").unwrap_or("") {
        "" => Err("\"streamType\" header is required".into()),
        "error" => Ok((port, true)),
        "data" => Ok((port, false)),
        other => Err(format!("invalid stream type {other:?}")),
    }
}

/// How the copy between a data stream and the pod ended.
enum End {
    /// The pod side closed (or failed): the data stream gets a FIN.
    Pod,
    /// The client reset the data stream, or the session ended.
    Reset,
}

/// Copies between one data stream and a fresh connection to `port` in the
/// pod, then closes the pair as the kubelet does.
async fn forward(out: mpsc::Sender<Frame>, connect: Connector, port: u16, error: Half, data: Half) {
    let Half {
        id: error_id,
        rx: _error_rx,
    } = error;
    let Half {
        id: data_id,
        rx: mut data_rx,
    } = data;
    let tcp = match connect(port).await {
        Ok(t) => t,
        Err(e) => {
            // The kubelet's text, without the API-error decoration.
            let message = e
                .message
                .strip_prefix("Internal error occurred: ")
                .unwrap_or(&e.message);
            let body = serde_json::json!({"closeConnection": true, "message": message});
            let _ = out
                .send(Frame::data(error_id, format!("{body}\n"), false))
                .await;
            let _ = out.send(Frame::data(error_id, Bytes::new(), true)).await;
            let _ = out.send(Frame::data(data_id, Bytes::new(), true)).await;
            return;
        }
    };
    let (mut rd, mut wr) = tokio::io::split(tcp);
    let upstream = async {
        while let Some(ev) = data_rx.recv().await {
            match ev {
                Event::Data(b) => {
                    if wr.write_all(&b).await.is_err() {
                        return End::Pod;
                    }
                    let delta = b.len() as u32;
                    for stream_id in [data_id, 0] {
                        if out
                            .send(Frame::WindowUpdate { stream_id, delta })
                            .await
                            .is_err()
                        {
                            return End::Reset;
                        }
                    }
                }
                Event::Fin => {
                    let _ = wr.shutdown().await;
                    return std::future::pending().await;
                }
                Event::Reset => return End::Reset,
            }
        }
        End::Reset
    };
    let downstream = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return End::Pod,
                Ok(n) => {
                    let chunk = Bytes::copy_from_slice(&buf[..n]);
                    if out.send(Frame::data(data_id, chunk, false)).await.is_err() {
                        return End::Reset;
                    }
                }
            }
        }
    };
    let end = tokio::select! {
        e = upstream => e,
        e = downstream => e,
    };
    if let End::Pod = end {
        let _ = out.send(Frame::data(data_id, Bytes::new(), true)).await;
    }
    let _ = out.send(Frame::data(error_id, Bytes::new(), true)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hdrs(pairs: &[(&str, &str)]) -> Headers {
        Headers(
            pairs
                .iter()
                .map(|(n, v)| (n.to_string(), vec![v.to_string()]))
                .collect(),
        )
    }

    /// Splits an encoded buffer into (header, payload) frames.
    fn split(mut b: &[u8]) -> Vec<([u8; 8], Bytes)> {
        let mut v = Vec::new();
        while !b.is_empty() {
            let head: [u8; 8] = b[..8].try_into().unwrap();
            let n = Frame::payload_len(&head);
            v.push((head, Bytes::copy_from_slice(&b[8..8 + n])));
            b = &b[8 + n..];
        }
        v
    }

    #[test]
    fn dictionary_is_the_spdy3_one() {
        let d = dictionary();
        assert_eq!(d.len(), 1423);
        assert_eq!(&d[..11], b"\0\0\0\x07options");
        assert!(d.ends_with(b",*,enq=0."));
    }

    #[test]
    fn every_frame_round_trips() {
        let frames = vec![
            Frame::data(1, &b"hello"[..], false),
            Frame::data(3, Bytes::new(), true),
            Frame::SynStream {
                stream_id: 5,
                associated_to: 0,
                priority: 7,
                slot: 0,
                flags: FLAG_FIN,
                headers: hdrs(&[("port", "8080"), ("streamtype", "data")]),
            },
            Frame::SynReply {
                stream_id: 5,
                flags: 0,
                headers: Headers::default(),
            },
            Frame::Headers {
                stream_id: 5,
                flags: FLAG_FIN,
                headers: Headers(vec![("x".into(), vec!["a".into(), "b".into()])]),
            },
            Frame::RstStream {
                stream_id: 7,
                status: RST_CANCEL,
            },
            Frame::Settings {
                flags: 0,
                entries: vec![(0, 7, 65536), (1, 4, 100)],
            },
            Frame::Ping { id: 1 },
            Frame::GoAway {
                last_good_stream_id: 9,
                status: 0,
            },
            Frame::WindowUpdate {
                stream_id: 0,
                delta: 32768,
            },
        ];
        let mut deflate = HeaderCompressor::new();
        let mut inflate = HeaderDecompressor::new();
        let mut wire = Vec::new();
        for f in &frames {
            f.encode(&mut deflate, &mut wire);
        }
        let decoded: Vec<Frame> = split(&wire)
            .into_iter()
            .map(|(h, p)| Frame::decode(&h, p, &mut inflate).unwrap())
            .collect();
        assert_eq!(decoded, frames);
    }

    #[test]
    fn fixed_layouts_match_the_draft() {
        let mut d = HeaderCompressor::new();
        let cases: Vec<(Frame, Vec<u8>)> = vec![
            (
                Frame::data(1, &b"ab"[..], true),
                vec![0, 0, 0, 1, 1, 0, 0, 2, b'a', b'b'],
            ),
            (
                Frame::Ping { id: 3 },
                vec![0x80, 3, 0, 6, 0, 0, 0, 4, 0, 0, 0, 3],
            ),
            (
                Frame::RstStream {
                    stream_id: 1,
                    status: 5,
                },
                vec![0x80, 3, 0, 3, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 5],
            ),
            (
                Frame::WindowUpdate {
                    stream_id: 2,
                    delta: 0x100,
                },
                vec![0x80, 3, 0, 9, 0, 0, 0, 8, 0, 0, 0, 2, 0, 0, 1, 0],
            ),
            (
                Frame::GoAway {
                    last_good_stream_id: 1,
                    status: 0,
                },
                vec![0x80, 3, 0, 7, 0, 0, 0, 8, 0, 0, 0, 1, 0, 0, 0, 0],
            ),
            (
                Frame::Settings {
                    flags: 0,
                    entries: vec![(1, 7, 2)],
                },
                vec![
                    0x80, 3, 0, 4, 0, 0, 0, 12, 0, 0, 0, 1, 1, 0, 0, 7, 0, 0, 0, 2,
                ],
            ),
        ];
        for (frame, want) in cases {
            let mut got = Vec::new();
            frame.encode(&mut d, &mut got);
            assert_eq!(got, want, "{frame:?}");
        }
    }

    #[test]
    fn header_blocks_share_one_compression_context() {
        let mut deflate = HeaderCompressor::new();
        let mut inflate = HeaderDecompressor::new();
        let first = hdrs(&[("streamtype", "error"), ("port", "80"), ("requestid", "0")]);
        let second = hdrs(&[("streamtype", "data"), ("port", "80"), ("requestid", "0")]);
        let a = deflate.compress(&first.encode());
        let b = deflate.compress(&second.encode());
        // The first block opens the zlib stream with the dictionary's id.
        assert_eq!(a[0], 0x78);
        assert_ne!(a[1] & 0x20, 0, "FDICT set");
        let adler = u32::from_be_bytes([a[2], a[3], a[4], a[5]]);
        let mut probe = Compress::new(Compression::best(), true);
        assert_eq!(probe.set_dictionary(dictionary()).unwrap(), adler);
        // Every block ends with a sync flush marker.
        assert!(a.ends_with(&[0, 0, 0xff, 0xff]) && b.ends_with(&[0, 0, 0xff, 0xff]));
        // The second block refers back into the first: it is smaller.
        assert!(b.len() < a.len());
        assert_eq!(Headers::decode(&inflate.decompress(&a).unwrap()), Ok(first));
        assert_eq!(
            Headers::decode(&inflate.decompress(&b).unwrap()),
            Ok(second)
        );
        // The second block alone (no shared context) does not decode.
        assert!(HeaderDecompressor::new().decompress(&b).is_err());
    }

    #[test]
    fn header_block_layout_and_multi_values() {
        let h = Headers(vec![("Port".into(), vec!["1".into(), "2".into()])]);
        assert_eq!(
            h.encode(),
            b"\0\0\0\x01\0\0\0\x04port\0\0\0\x031\x002".to_vec()
        );
        let back = Headers::decode(&h.encode()).unwrap();
        assert_eq!(back.get("port"), Some("1"));
        assert_eq!(back.0[0].1, vec!["1", "2"]);
        for bad in [&b"\0\0\0\x01\0\0\0\x09port"[..], &b"\0\0"[..]] {
            assert_eq!(Headers::decode(bad), Err(SpdyError::HeaderBlock));
        }
    }

    /// A SYN_STREAM shaped as kubectl's (spdystream's) framer writes it:
    /// headers from Go's http.Header (canonical names, lower-cased on the
    /// wire), zlib at best compression with the dictionary, sync-flushed.
    #[test]
    fn kubectl_syn_stream_decodes() {
        let mut go = Compress::new(Compression::best(), true);
        go.set_dictionary(dictionary()).unwrap();
        let block = hdrs(&[
            ("Streamtype", "error"),
            ("Port", "8080"),
            ("Requestid", "0"),
        ])
        .encode();
        let mut z = Vec::with_capacity(512);
        go.compress_vec(&block, &mut z, FlushCompress::Sync)
            .unwrap();
        let mut wire = vec![0x80, 3, 0, 1, 0, 0, 0, 0];
        let len = (10 + z.len()) as u32;
        wire[5..8].copy_from_slice(&len.to_be_bytes()[1..]);
        wire.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
        wire.extend_from_slice(&z);
        let (h, p) = split(&wire).remove(0);
        let f = Frame::decode(&h, p, &mut HeaderDecompressor::new()).unwrap();
        let Frame::SynStream {
            stream_id,
            headers,
            priority,
            ..
        } = f
        else {
            panic!("{f:?}")
        };
        assert_eq!((stream_id, priority), (1, 0));
        assert_eq!(headers.get("streamtype"), Some("error"));
        assert_eq!(headers.get("port"), Some("8080"));
        assert_eq!(headers.get("requestid"), Some("0"));
        assert_eq!(check_stream(&headers), Ok((8080, true)));
    }

    #[test]
    fn decode_rejects_bad_frames() {
        let mut inf = HeaderDecompressor::new();
        let cases: Vec<(&[u8], SpdyError)> = vec![
            (
                &[0x80, 2, 0, 6, 0, 0, 0, 4, 0, 0, 0, 1],
                SpdyError::Version(2),
            ),
            (
                &[0x80, 3, 0, 3, 0, 0, 0, 4, 0, 0, 0, 1],
                SpdyError::Truncated("RST_STREAM"),
            ),
            (
                &[0x80, 3, 0, 9, 0, 0, 0, 0],
                SpdyError::Truncated("WINDOW_UPDATE"),
            ),
        ];
        for (wire, want) in cases {
            let (h, p) = split(wire).remove(0);
            assert_eq!(Frame::decode(&h, p, &mut inf), Err(want));
        }
        let garbage = [0x80, 3, 0, 2, 0, 0, 0, 8, 0, 0, 0, 1, 1, 2, 3, 4];
        let (h, p) = split(&garbage).remove(0);
        assert!(matches!(
            Frame::decode(&h, p, &mut inf),
            Err(SpdyError::Compression(_))
        ));
    }

    #[test]
    fn stream_headers_checked_like_the_kubelet() {
        type Case = (
            Vec<(&'static str, &'static str)>,
            Result<(u16, bool), &'static str>,
        );
        let cases: Vec<Case> = vec![
            (
                vec![("port", "80"), ("streamtype", "data")],
                Ok((80, false)),
            ),
            (
                vec![("port", "80"), ("streamtype", "error")],
                Ok((80, true)),
            ),
            (
                vec![("streamtype", "data")],
                Err("\"port\" header is required"),
            ),
            (
                vec![("port", "0"), ("streamtype", "data")],
                Err("port \"0\" must be > 0"),
            ),
            (
                vec![("port", "80")],
                Err("\"streamType\" header is required"),
            ),
            (
                vec![("port", "80"), ("streamtype", "x")],
                Err("invalid stream type \"x\""),
            ),
        ];
        for (h, want) in cases {
            assert_eq!(
                check_stream(&hdrs(&h)),
                want.map_err(str::to_string),
                "{h:?}"
            );
        }
        assert!(check_stream(&hdrs(&[("port", "x"), ("streamtype", "data")])).is_err());
    }

    /// A whole session over an in-memory pipe: two forwarded connections in
    /// turn, each echoing through a local TCP server.
    #[tokio::test]
    async fn session_forwards_streams_in_pairs() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    s.read_to_end(&mut buf).await.unwrap();
                    s.write_all(b"echo:").await.unwrap();
                    s.write_all(&buf).await.unwrap();
                });
            }
        });
        let connect: Connector = Arc::new(|p: u16| {
            Box::pin(async move {
                tokio::net::TcpStream::connect(("127.0.0.1", p))
                    .await
                    .map(|t| Box::new(t) as PodConn)
                    .map_err(|e| ApiError::internal(e.to_string()))
            })
        });
        let (client, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve(server, connect));
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut deflate = HeaderCompressor::new();
        let mut inflate = HeaderDecompressor::new();
        let mut read_frame = async |crd: &mut tokio::io::ReadHalf<tokio::io::DuplexStream>| {
            let mut head = [0u8; 8];
            crd.read_exact(&mut head).await.unwrap();
            let mut p = vec![0u8; Frame::payload_len(&head)];
            crd.read_exact(&mut p).await.unwrap();
            Frame::decode(&head, p.into(), &mut inflate).unwrap()
        };
        for (req, (err_id, data_id)) in [(0, (1u32, 3u32)), (1, (5, 7))] {
            let port_s = port.to_string();
            let req_s = req.to_string();
            let mut wire = Vec::new();
            for (id, kind) in [(err_id, "error"), (data_id, "data")] {
                Frame::SynStream {
                    stream_id: id,
                    associated_to: 0,
                    priority: 0,
                    slot: 0,
                    flags: 0,
                    headers: hdrs(&[
                        ("streamtype", kind),
                        ("port", &port_s),
                        ("requestid", &req_s),
                    ]),
                }
                .encode(&mut deflate, &mut wire);
            }
            Frame::data(err_id, Bytes::new(), true).encode(&mut deflate, &mut wire);
            Frame::data(data_id, format!("req{req}"), true).encode(&mut deflate, &mut wire);
            Frame::Ping { id: 9 }.encode(&mut deflate, &mut wire);
            cwr.write_all(&wire).await.unwrap();
            let (mut replies, mut body, mut fins, mut updates, mut pong) =
                (Vec::new(), Vec::new(), Vec::new(), 0u32, false);
            while fins.len() < 2 {
                match read_frame(&mut crd).await {
                    Frame::SynReply { stream_id, .. } => replies.push(stream_id),
                    Frame::Data {
                        stream_id,
                        flags,
                        data,
                    } => {
                        if stream_id == data_id {
                            body.extend_from_slice(&data);
                        } else {
                            assert!(data.is_empty(), "error stream: {data:?}");
                        }
                        if flags & FLAG_FIN != 0 {
                            fins.push(stream_id);
                        }
                    }
                    Frame::WindowUpdate { stream_id, delta } => {
                        assert!(stream_id == 0 || stream_id == data_id);
                        updates += delta;
                    }
                    Frame::Ping { id } => pong = id == 9,
                    f => panic!("unexpected {f:?}"),
                }
            }
            assert_eq!(replies, vec![err_id, data_id]);
            assert_eq!(String::from_utf8(body).unwrap(), format!("echo:req{req}"));
            fins.sort();
            assert_eq!(fins, vec![err_id, data_id]);
            assert!(pong);
            // Both windows credited for the 4 bytes consumed.
            assert_eq!(updates, 8);
        }
    }

    #[tokio::test]
    async fn connect_failure_reported_on_the_error_stream() {
        let connect: Connector = Arc::new(|p: u16| {
            Box::pin(async move {
                Err(ApiError::internal(format!(
                    "error forwarding port {p} to pod web: connection refused"
                )))
            })
        });
        let (client, server) = tokio::io::duplex(1 << 16);
        tokio::spawn(serve(server, connect));
        let (mut crd, mut cwr) = tokio::io::split(client);
        let mut deflate = HeaderCompressor::new();
        let mut inflate = HeaderDecompressor::new();
        let mut wire = Vec::new();
        // No requestid: an old client; pairs by stream id.
        for (id, kind) in [(1, "error"), (3, "data")] {
            Frame::SynStream {
                stream_id: id,
                associated_to: 0,
                priority: 0,
                slot: 0,
                flags: 0,
                headers: hdrs(&[("streamtype", kind), ("port", "81")]),
            }
            .encode(&mut deflate, &mut wire);
        }
        cwr.write_all(&wire).await.unwrap();
        let mut message = Vec::new();
        let mut fins = 0;
        while fins < 2 {
            let mut head = [0u8; 8];
            crd.read_exact(&mut head).await.unwrap();
            let mut p = vec![0u8; Frame::payload_len(&head)];
            crd.read_exact(&mut p).await.unwrap();
            if let Frame::Data {
                stream_id,
                flags,
                data,
            } = Frame::decode(&head, p.into(), &mut inflate).unwrap()
            {
                if stream_id == 1 {
                    message.extend_from_slice(&data);
                }
                fins += (flags & FLAG_FIN) as usize;
            }
        }
        let v: serde_json::Value = serde_json::from_slice(&message).unwrap();
        assert_eq!(v["closeConnection"], true);
        assert_eq!(
            v["message"],
            "error forwarding port 81 to pod web: connection refused"
        );
    }

    #[test]
    fn upgrade_requests_are_checked() {
        let connect: Connector =
            Arc::new(|_| Box::pin(async { Err(ApiError::internal("unused")) }));
        let req = |headers: &[(&str, &str)]| {
            let mut b = Request::builder().method("POST").uri("/x");
            for (k, v) in headers {
                b = b.header(*k, *v);
            }
            b.body(Body::empty()).unwrap()
        };
        // Codes only: a 101 needs a live connection to upgrade, so only the
        // refusals are exercised here (the 101s are in the end-to-end test).
        let refused = [
            (vec![], 400),
            (vec![("upgrade", "h2c")], 400),
            (
                vec![
                    ("upgrade", "SPDY/3.1"),
                    ("x-stream-protocol-version", "v4.channel.k8s.io"),
                ],
                403,
            ),
            (
                vec![
                    ("upgrade", "websocket"),
                    ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
                    ("sec-websocket-protocol", "v5.channel.k8s.io"),
                ],
                400,
            ),
            (vec![("upgrade", "websocket")], 400),
        ];
        for (h, code) in refused {
            let err = portforward_upgrade(req(&h), connect.clone()).unwrap_err();
            assert_eq!(err.code, code, "{h:?}");
        }
    }
}
