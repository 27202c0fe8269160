//! Reaching a remote agent's kubelet endpoint over HTTPS, as the Kubernetes
//! apiserver reaches kubelets: the node's InternalIP and
//! `status.daemonEndpoints.kubeletEndpoint.Port`, the node's certificate
//! checked against the cluster CA, and the server's own client certificate
//! (`kube-apiserver-kubelet-client`) presented in return.
//!
//! The paths are the kubelet's: `GET /containerLogs/{ns}/{pod}/{container}`,
//! `/exec/…` and `/attach/…` as WebSockets speaking `v5.channel.k8s.io`, and
//! `/portForward/{ns}/{pod}?port=N` as a WebSocket carrying the raw bytes of
//! one connection (subprotocol [`PORT_FORWARD_PROTOCOL`]), and
//! `GET /metrics/resource` for a node's resource usage.

use crate::error::ApiError;
use crate::node::{
    ExecProcess, LogRequest, NodeProxy, NodeTarget, PodConn, PodTarget, ResourceMetrics,
};
use bytes::Bytes;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use http_body_util::BodyExt;
use serde_json::Value;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::{Message, client::IntoClientRequest};

/// The WebSocket subprotocol of a node's `/portForward` stream: binary
/// messages carry the connection's bytes both ways.
pub const PORT_FORWARD_PROTOCOL: &str = "portforward.skiff.io";

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// The [`NodeProxy`] for nodes run by remote agents.
pub struct RemoteNodes {
    tls: Arc<rustls::ClientConfig>,
}

impl RemoteNodes {
    /// Reaches agents with this client configuration.
    pub fn new(tls: Arc<rustls::ClientConfig>) -> Self {
        Self { tls }
    }

    fn endpoint(t: &PodTarget) -> Result<SocketAddr, ApiError> {
        t.kubelet.ok_or_else(|| {
            ApiError::unavailable(format!(
                "node {:?} has no kubelet endpoint (InternalIP and daemonEndpoints)",
                t.node
            ))
        })
    }

    async fn dial(&self, addr: SocketAddr) -> Result<Tls, ApiError> {
        let unreachable =
            |e: std::io::Error| ApiError::unavailable(format!("dialing kubelet at {addr}: {e}"));
        let tcp = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .map_err(|_| unreachable(std::io::ErrorKind::TimedOut.into()))?
        .map_err(unreachable)?;
        let _ = tcp.set_nodelay(true);
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        tokio_rustls::TlsConnector::from(self.tls.clone())
            .connect(name, tcp)
            .await
            .map_err(unreachable)
    }

    /// `GET uri` on the kubelet at `addr`: the response when it is 200 OK, else
    /// the error the agent's answer describes.
    async fn get(
        &self,
        addr: SocketAddr,
        uri: &str,
    ) -> Result<http::Response<hyper::body::Incoming>, ApiError> {
        let io = self.dial(addr).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(io))
                .await
                .map_err(|e| ApiError::unavailable(format!("kubelet at {addr}: {e}")))?;
        tokio::spawn(conn);
        let request = http::Request::get(uri)
            .header(http::header::HOST, addr.to_string())
            .body(http_body_util::Empty::<Bytes>::new())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let resp = sender
            .send_request(request)
            .await
            .map_err(|e| ApiError::unavailable(format!("kubelet at {addr}: {e}")))?;
        let code = resp.status().as_u16();
        if code != 200 {
            let body = resp
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            return Err(status_error(code, &body));
        }
        Ok(resp)
    }

    /// Opens a WebSocket to `path_and_query` on the target's node.
    async fn websocket(
        &self,
        t: &PodTarget,
        path_and_query: &str,
        protocol: &str,
    ) -> Result<tokio_tungstenite::WebSocketStream<Tls>, ApiError> {
        let addr = Self::endpoint(t)?;
        let io = self.dial(addr).await?;
        let mut req = format!("wss://{addr}{path_and_query}")
            .into_client_request()
            .map_err(|e| ApiError::internal(e.to_string()))?;
        req.headers_mut().insert(
            "sec-websocket-protocol",
            http::HeaderValue::from_str(protocol).expect("ascii"),
        );
        match tokio_tungstenite::client_async(req, io).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                let code = resp.status().as_u16();
                let body = resp.body().clone().unwrap_or_default();
                Err(status_error(code, &body))
            }
            Err(e) => Err(ApiError::unavailable(format!("kubelet at {addr}: {e}"))),
        }
    }
}

/// The error an agent's non-success answer describes.
fn status_error(code: u16, body: &[u8]) -> ApiError {
    match serde_json::from_slice::<Value>(body) {
        Ok(v) if v["kind"] == "Status" => ApiError::from_status(code, &v),
        _ => ApiError::from_status(
            code,
            &serde_json::json!({"message": String::from_utf8_lossy(body).trim()}),
        ),
    }
}

fn enc(s: &str) -> String {
    percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
}

/// The kubelet query string of a log request.
fn log_query(req: &LogRequest) -> String {
    let mut q = Vec::new();
    if req.follow {
        q.push("follow=true".to_string());
    }
    if req.previous {
        q.push("previous=true".to_string());
    }
    if req.timestamps {
        q.push("timestamps=true".to_string());
    }
    if let Some(n) = req.tail_lines {
        q.push(format!("tailLines={n}"));
    }
    if let Some(n) = req.since_seconds {
        q.push(format!("sinceSeconds={n}"));
    }
    if let Some(t) = &req.since_time {
        q.push(format!("sinceTime={}", enc(t)));
    }
    if let Some(n) = req.limit_bytes {
        q.push(format!("limitBytes={n}"));
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// The exit code a channel-3 `Status` reports.
fn exit_code(status: &Value) -> i32 {
    if status["status"] == "Success" {
        return 0;
    }
    status["details"]["causes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["reason"] == "ExitCode")
        .and_then(|c| c["message"].as_str()?.parse().ok())
        .unwrap_or(1)
}

/// Turns a `v5.channel.k8s.io` client WebSocket into a process: stdin, stdout,
/// stderr and resize travel on their channels; the exit code comes from channel 3.
fn process_over(
    ws: tokio_tungstenite::WebSocketStream<Tls>,
    stdin: bool,
    tty: bool,
) -> ExecProcess {
    let (mut sink, mut source) = ws.split();
    let (stdout_w, stdout_r) = tokio::io::duplex(64 * 1024);
    let (stderr_w, stderr_r) = tokio::io::duplex(64 * 1024);
    let (stdin_w, mut stdin_r) = tokio::io::duplex(64 * 1024);
    let (code_tx, code_rx) = tokio::sync::oneshot::channel::<i32>();
    let (resize_tx, mut resize_rx) = tokio::sync::mpsc::unbounded_channel::<(u16, u16)>();
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Message>(16);
    // Outgoing: stdin and resizes.
    let stdin_task = {
        let out_tx = out_tx.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match stdin_r.read(&mut buf).await {
                    Ok(0) | Err(_) => {
                        let _ = out_tx.send(Message::Binary(vec![255, 0].into())).await;
                        return;
                    }
                    Ok(n) => {
                        let mut m = Vec::with_capacity(n + 1);
                        m.push(0);
                        m.extend_from_slice(&buf[..n]);
                        if out_tx.send(Message::Binary(m.into())).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
    };
    let resize_task = {
        let out_tx = out_tx.clone();
        tokio::spawn(async move {
            while let Some((w, h)) = resize_rx.recv().await {
                let mut m = vec![4u8];
                m.extend_from_slice(format!("{{\"Width\":{w},\"Height\":{h}}}").as_bytes());
                if out_tx.send(Message::Binary(m.into())).await.is_err() {
                    return;
                }
            }
        })
    };
    drop(out_tx);
    tokio::spawn(async move {
        let mut stdout_w = Some(stdout_w);
        let mut stderr_w = Some(stderr_w);
        let mut code = None;
        loop {
            tokio::select! {
                Some(m) = out_rx.recv() => {
                    let _ = sink.send(m).await;
                }
                m = source.next() => {
                    let data = match m {
                        Some(Ok(Message::Binary(b))) => b.to_vec(),
                        Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                        Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                        Some(Ok(_)) => continue,
                    };
                    let Some((&ch, rest)) = data.split_first() else { continue };
                    let w = match ch {
                        1 => &mut stdout_w,
                        2 => &mut stderr_w,
                        3 => {
                            code = Some(serde_json::from_slice::<Value>(rest).map(|v| exit_code(&v)).unwrap_or(1));
                            continue;
                        }
                        _ => continue,
                    };
                    if let Some(writer) = w.as_mut()
                        && writer.write_all(rest).await.is_err()
                    {
                        *w = None;
                    }
                }
            }
        }
        stdin_task.abort();
        resize_task.abort();
        drop(stdout_w);
        drop(stderr_w);
        let _ = code_tx.send(code.unwrap_or(1));
    });
    ExecProcess {
        stdin: stdin.then(|| Box::new(stdin_w) as Box<dyn tokio::io::AsyncWrite + Send + Unpin>),
        stdout: Box::new(stdout_r),
        stderr: (!tty).then(|| Box::new(stderr_r) as Box<dyn tokio::io::AsyncRead + Send + Unpin>),
        wait: Box::pin(async move { code_rx.await.unwrap_or(1) }),
        resize: tty.then(|| {
            Box::new(move |w, h| {
                let _ = resize_tx.send((w, h));
            }) as Box<dyn Fn(u16, u16) + Send + Sync>
        }),
    }
}

#[async_trait::async_trait]
impl NodeProxy for RemoteNodes {
    async fn resource_metrics(&self, node: &NodeTarget) -> Result<ResourceMetrics, ApiError> {
        let addr = node.kubelet.ok_or_else(|| {
            ApiError::unavailable(format!(
                "node {:?} has no kubelet endpoint (InternalIP and daemonEndpoints)",
                node.name
            ))
        })?;
        let resp = self.get(addr, "/metrics/resource").await?;
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| ApiError::unavailable(format!("kubelet at {addr}: {e}")))?
            .to_bytes();
        crate::resource_metrics::parse_prometheus(&String::from_utf8_lossy(&body)).map_err(|e| {
            ApiError::internal(format!(
                "reading the resource metrics of node {:?}: {e}",
                node.name
            ))
        })
    }

    async fn logs(
        &self,
        t: &PodTarget,
        container: &str,
        req: &LogRequest,
    ) -> Result<BoxStream<'static, Bytes>, ApiError> {
        let uri = format!(
            "/containerLogs/{}/{}/{}{}",
            enc(&t.namespace),
            enc(&t.name),
            enc(container),
            log_query(req)
        );
        let resp = self.get(Self::endpoint(t)?, &uri).await?;
        let body = resp.into_body().into_data_stream();
        Ok(body
            .take_while(|r| futures::future::ready(r.is_ok()))
            .filter_map(|r| futures::future::ready(r.ok()))
            .boxed())
    }

    async fn exec(
        &self,
        t: &PodTarget,
        container: &str,
        command: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<ExecProcess, ApiError> {
        let mut q: Vec<String> = command
            .iter()
            .map(|c| format!("command={}", enc(c)))
            .collect();
        q.push("output=1".into());
        if stdin {
            q.push("input=1".into());
        }
        if tty {
            q.push("tty=1".into());
        } else {
            q.push("error=1".into());
        }
        let path = format!(
            "/exec/{}/{}/{}?{}",
            enc(&t.namespace),
            enc(&t.name),
            enc(container),
            q.join("&")
        );
        let ws = self.websocket(t, &path, "v5.channel.k8s.io").await?;
        Ok(process_over(ws, stdin, tty))
    }

    async fn attach(
        &self,
        t: &PodTarget,
        container: &str,
        stdin: bool,
    ) -> Result<ExecProcess, ApiError> {
        let path = format!(
            "/attach/{}/{}/{}?output=1&error=1{}",
            enc(&t.namespace),
            enc(&t.name),
            enc(container),
            if stdin { "&input=1" } else { "" }
        );
        let ws = self.websocket(t, &path, "v5.channel.k8s.io").await?;
        Ok(process_over(ws, stdin, false))
    }

    async fn connect(&self, t: &PodTarget, port: u16) -> Result<PodConn, ApiError> {
        let path = format!(
            "/portForward/{}/{}?port={port}",
            enc(&t.namespace),
            enc(&t.name)
        );
        let ws = self.websocket(t, &path, PORT_FORWARD_PROTOCOL).await?;
        let (near, far) = tokio::io::duplex(64 * 1024);
        tokio::spawn(bridge(ws, far));
        Ok(Box::new(near))
    }
}

/// Copies between a WebSocket carrying raw bytes and a byte stream, both ways.
/// An empty binary message says the sender has finished writing (a TCP
/// half-close); the connection ends when both sides have finished, or when
/// the peer closes the WebSocket.
pub async fn bridge<S, T>(ws: tokio_tungstenite::WebSocketStream<S>, io: T)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send,
{
    let (mut sink, mut source) = ws.split();
    let (mut rd, mut wr) = tokio::io::split(io);
    let up = async move {
        let mut buf = vec![0u8; 32 * 1024];
        loop {
            let n = rd.read(&mut buf).await.unwrap_or(0);
            let msg = Message::Binary(Bytes::copy_from_slice(&buf[..n]));
            if sink.send(msg).await.is_err() || n == 0 {
                return sink;
            }
        }
    };
    // Whether the peer finished writing (true) or closed (false).
    let down = async move {
        while let Some(Ok(m)) = source.next().await {
            match m {
                Message::Binary(b) if b.is_empty() => {
                    let _ = wr.shutdown().await;
                    return true;
                }
                Message::Binary(b) if wr.write_all(&b).await.is_err() => return false,
                Message::Close(_) => return false,
                _ => {}
            }
        }
        false
    };
    tokio::pin!(up, down);
    let mut sink = None;
    let mut peer_done = false;
    loop {
        tokio::select! {
            s = &mut up, if sink.is_none() => {
                sink = Some(s);
                if peer_done { break; }
            }
            finished = &mut down, if !peer_done => {
                if !finished { return; }
                peer_done = true;
                if sink.is_some() { break; }
            }
        }
    }
    if let Some(mut s) = sink {
        let _ = s.send(Message::Close(None)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn log_options_travel_as_the_kubelet_query() {
        assert_eq!(log_query(&LogRequest::default()), "");
        let q = log_query(&LogRequest {
            follow: true,
            tail_lines: Some(5),
            since_time: Some("2026-11-28T07:00:00Z".into()),
            ..Default::default()
        });
        assert_eq!(
            q,
            "?follow=true&tailLines=5&sinceTime=2026%2D11%2D28T07%3A00%3A00Z"
        );
    }

    #[test]
    fn exit_codes_come_back_from_the_status_channel() {
        assert_eq!(exit_code(&json!({"status": "Success"})), 0);
        assert_eq!(
            exit_code(&json!({"status": "Failure", "reason": "NonZeroExitCode",
                "details": {"causes": [{"reason": "ExitCode", "message": "42"}]}})),
            42
        );
        assert_eq!(
            exit_code(&json!({"status": "Failure", "message": "boom"})),
            1
        );
    }

    #[test]
    fn agent_errors_keep_their_status() {
        let e = status_error(
            400,
            br#"{"kind":"Status","status":"Failure","message":"container \"c\" in pod \"p\" is waiting to start: ContainerCreating","reason":"BadRequest","code":400}"#,
        );
        assert_eq!((e.code, e.reason), (400, "BadRequest"));
        assert!(e.message.contains("is waiting to start"));
        let e = status_error(502, b"bad gateway\n");
        assert_eq!((e.code, e.message.as_str()), (502, "bad gateway"));
    }
}
