//! Reaching a pod's node for `kubectl logs` and `kubectl exec`.
//!
//! The apiserver knows nodes only through [`NodeProxy`]; the binary plugs in
//! the embedded agent (and later the HTTPS client for remote agents). Exec
//! speaks Kubernetes' WebSocket remotecommand protocol: channel-prefixed
//! binary messages (0 stdin, 1 stdout, 2 stderr, 3 error/status, 4 resize,
//! 255 close in v5) under the subprotocol `v5.channel.k8s.io` or `v4.channel.k8s.io`.

use crate::error::ApiError;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{SinkExt, StreamExt};
use http::{HeaderValue, Request, Response, StatusCode, header};
use serde_json::{Value, json};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// The pod a request is about.
#[derive(Debug, Clone)]
pub struct PodTarget {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// uid.
    pub uid: String,
    /// The node it is bound to.
    pub node: String,
    /// The node's kubelet endpoint (InternalIP and kubelet port), when known.
    pub kubelet: Option<std::net::SocketAddr>,
    /// The pod object.
    pub pod: Value,
}

/// `kubectl logs` options.
#[derive(Debug, Clone, Default)]
pub struct LogRequest {
    /// `follow`.
    pub follow: bool,
    /// `previous`.
    pub previous: bool,
    /// `tailLines`.
    pub tail_lines: Option<i64>,
    /// `sinceSeconds`.
    pub since_seconds: Option<i64>,
    /// `sinceTime`.
    pub since_time: Option<String>,
    /// `timestamps`.
    pub timestamps: bool,
    /// `limitBytes`.
    pub limit_bytes: Option<i64>,
}

/// A process started by exec.
pub struct ExecProcess {
    /// Its stdin, when requested.
    pub stdin: Option<Box<dyn AsyncWrite + Send + Unpin>>,
    /// Its stdout (with a tty: the terminal's output).
    pub stdout: Box<dyn AsyncRead + Send + Unpin>,
    /// Its stderr (none with a tty).
    pub stderr: Option<Box<dyn AsyncRead + Send + Unpin>>,
    /// Resolves to the exit code.
    pub wait: BoxFuture<'static, i32>,
    /// Resizes the terminal (width, height).
    pub resize: Option<Box<dyn Fn(u16, u16) + Send + Sync>>,
}

/// A byte stream to a port inside a pod (a TCP connection, or a tunnel to one).
pub trait Conn: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Conn for T {}

/// A connection [`NodeProxy::connect`] opened.
pub type PodConn = Box<dyn Conn>;

/// A node a node-level request (metrics) is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeTarget {
    /// The node's name.
    pub name: String,
    /// Its kubelet endpoint (InternalIP and kubelet port), when known.
    pub kubelet: Option<std::net::SocketAddr>,
}

/// One cumulative usage sample, as the kubelet's `/metrics/resource` carries it.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageSample {
    /// When it was taken, in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// CPU time used since the start of the node or container, in seconds.
    pub cpu_usage_seconds_total: f64,
    /// Working-set memory (usage minus inactive file pages), in bytes.
    pub memory_working_set_bytes: u64,
}

/// One container's sample.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerSample {
    /// Pod namespace.
    pub namespace: String,
    /// Pod name.
    pub pod: String,
    /// Container name.
    pub container: String,
    /// The sample.
    pub usage: UsageSample,
}

/// A node's resource usage: its own and that of each running container.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ResourceMetrics {
    /// The node as a whole.
    pub node: UsageSample,
    /// Every running container.
    pub containers: Vec<ContainerSample>,
}

/// The apiserver's way to a node.
#[async_trait::async_trait]
pub trait NodeProxy: Send + Sync + 'static {
    /// The node's cumulative resource usage (its kubelet's `/metrics/resource`).
    async fn resource_metrics(&self, node: &NodeTarget) -> Result<ResourceMetrics, ApiError> {
        Err(ApiError::unavailable(format!(
            "node {:?} serves no resource metrics",
            node.name
        )))
    }

    /// A container's log.
    async fn logs(
        &self,
        target: &PodTarget,
        container: &str,
        req: &LogRequest,
    ) -> Result<BoxStream<'static, Bytes>, ApiError>;
    /// Starts a command in a container.
    async fn exec(
        &self,
        target: &PodTarget,
        container: &str,
        command: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<ExecProcess, ApiError>;
    /// Attaches to a running container: its output (stdout and stderr), and with
    /// `stdin` its input, when the container keeps stdin open.
    async fn attach(
        &self,
        target: &PodTarget,
        container: &str,
        stdin: bool,
    ) -> Result<ExecProcess, ApiError>;
    /// Opens a TCP connection to `port` inside the pod's network namespace (for port-forward).
    async fn connect(&self, target: &PodTarget, port: u16) -> Result<PodConn, ApiError>;
}

/// Picks the container a logs or exec request means, as Kubernetes does:
/// the named one, or the only app container.
pub fn pick_container(pod: &Value, requested: Option<&str>) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let names = |key: &str| -> Vec<String> {
        pod["spec"][key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["name"].as_str().map(str::to_string))
            .collect()
    };
    let app = names("containers");
    let init = names("initContainers");
    match requested.filter(|c| !c.is_empty()) {
        Some(c) if app.iter().chain(init.iter()).any(|n| n == c) => Ok(c.to_string()),
        Some(c) => Err(ApiError::bad_request(format!(
            "container {c} is not valid for pod {name}"
        ))),
        None if app.len() == 1 => Ok(app[0].clone()),
        None => {
            let mut msg = format!(
                "a container name must be specified for pod {name}, choose one of: [{}]",
                app.join(" ")
            );
            if !init.is_empty() {
                msg.push_str(&format!(
                    " or one of the init containers: [{}]",
                    init.join(" ")
                ));
            }
            Err(ApiError::bad_request(msg))
        }
    }
}

/// The pod target of a request, checking it is bound to a node.
pub fn target(pod: &Value) -> Result<PodTarget, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
    let node = pod["spec"]["nodeName"].as_str().unwrap_or("").to_string();
    if node.is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    Ok(PodTarget {
        namespace: pod["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        name,
        uid: pod["metadata"]["uid"].as_str().unwrap_or("").to_string(),
        node,
        kubelet: None,
        pod: pod.clone(),
    })
}

/// A node's kubelet endpoint as the apiserver reaches it: the first InternalIP
/// (else any address that is an IP) and `status.daemonEndpoints.kubeletEndpoint.Port`.
pub fn kubelet_endpoint(node: &Value) -> Option<std::net::SocketAddr> {
    let status = &node["status"];
    let port = status["daemonEndpoints"]["kubeletEndpoint"]["Port"].as_u64()?;
    let addresses = status["addresses"].as_array()?;
    let ip = addresses
        .iter()
        .filter(|a| a["type"] == "InternalIP")
        .chain(addresses.iter())
        .find_map(|a| a["address"].as_str()?.parse::<std::net::IpAddr>().ok())?;
    Some(std::net::SocketAddr::new(ip, u16::try_from(port).ok()?))
}

const PROTOCOLS: &[&str] = &["v5.channel.k8s.io", "v4.channel.k8s.io"];

/// The upgraded connection a WebSocket handler gets.
pub type Upgraded =
    tokio_tungstenite::WebSocketStream<hyper_util::rt::TokioIo<hyper::upgrade::Upgraded>>;

/// Answers a WebSocket upgrade with one of `protocols` (the first the client
/// offers, in our order): returns 101 and runs `serve` on the connection.
pub fn websocket_upgrade<F, Fut>(
    mut req: Request<axum::body::Body>,
    protocols: &'static [&'static str],
    serve: F,
) -> Result<Response<axum::body::Body>, ApiError>
where
    F: FnOnce(Upgraded, &'static str) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let key = req
        .headers()
        .get("sec-websocket-key")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| ApiError::bad_request("Upgrade request required"))?
        .to_string();
    let offered: Vec<String> = req
        .headers()
        .get_all("sec-websocket-protocol")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(',').map(|s| s.trim().to_string()))
        .collect();
    let protocol: &'static str = protocols
        .iter()
        .find(|p| offered.iter().any(|o| o == *p))
        .ok_or_else(|| ApiError::bad_request(format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server supports {protocols:?}")))?;
    let on_upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let upgraded = match on_upgrade.await {
            Ok(u) => u,
            Err(e) => {
                tracing::debug!("websocket upgrade: {e}");
                return;
            }
        };
        let io = hyper_util::rt::TokioIo::new(upgraded);
        let ws = tokio_tungstenite::WebSocketStream::from_raw_socket(
            io,
            tokio_tungstenite::tungstenite::protocol::Role::Server,
            None,
        )
        .await;
        serve(ws, protocol).await;
    });
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut resp = Response::new(axum::body::Body::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let h = resp.headers_mut();
    h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    h.insert(
        "sec-websocket-accept",
        HeaderValue::from_str(&accept).expect("ascii"),
    );
    h.insert("sec-websocket-protocol", HeaderValue::from_static(protocol));
    Ok(resp)
}

/// Answers an exec upgrade: negotiates the subprotocol, returns 101, and
/// then pumps the process's streams over the WebSocket.
pub fn exec_upgrade(
    req: Request<axum::body::Body>,
    process: BoxFuture<'static, Result<ExecProcess, ApiError>>,
) -> Result<Response<axum::body::Body>, ApiError> {
    websocket_upgrade(req, PROTOCOLS, move |ws, protocol| {
        pump(ws, process, protocol == "v5.channel.k8s.io")
    })
}

fn status_message(code: i32, command: &str) -> Value {
    if code == 0 {
        json!({"metadata": {}, "status": "Success"})
    } else {
        json!({"metadata": {}, "status": "Failure",
            "message": format!("command terminated with non-zero exit code: error executing command {command}, exit code {code}"),
            "reason": "NonZeroExitCode",
            "details": {"causes": [{"reason": "ExitCode", "message": code.to_string()}]}})
    }
}

async fn pump<S>(
    ws: tokio_tungstenite::WebSocketStream<S>,
    process: BoxFuture<'static, Result<ExecProcess, ApiError>>,
    v5: bool,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    use tokio_tungstenite::tungstenite::Message;
    let (mut sink, mut source) = ws.split();
    let p = match process.await {
        Ok(p) => p,
        Err(e) => {
            let mut msg = vec![3u8];
            msg.extend_from_slice(&serde_json::to_vec(&e.status()).unwrap_or_default());
            let _ = sink.send(Message::Binary(msg.into())).await;
            let _ = sink.send(normal_close()).await;
            return;
        }
    };
    let (out_tx, mut out_rx) = tokio::sync::mpsc::channel::<Vec<u8>>(64);
    let spawn_reader = |mut r: Box<dyn AsyncRead + Send + Unpin>,
                        channel: u8,
                        tx: tokio::sync::mpsc::Sender<Vec<u8>>| {
        tokio::spawn(async move {
            let mut buf = vec![0u8; 16 * 1024];
            loop {
                match r.read(&mut buf).await {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut m = Vec::with_capacity(n + 1);
                        m.push(channel);
                        m.extend_from_slice(&buf[..n]);
                        if tx.send(m).await.is_err() {
                            return;
                        }
                    }
                }
            }
        })
    };
    let r1 = spawn_reader(p.stdout, 1, out_tx.clone());
    let r2 = p.stderr.map(|e| spawn_reader(e, 2, out_tx.clone()));
    drop(out_tx);
    let mut stdin = p.stdin;
    let resize = p.resize;
    let wait = p.wait;
    // Client → process.
    let input = async move {
        while let Some(Ok(msg)) = source.next().await {
            let data = match msg {
                Message::Binary(b) => b.to_vec(),
                Message::Text(t) => t.as_bytes().to_vec(),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&ch, rest)) = data.split_first() else {
                continue;
            };
            match ch {
                0 => {
                    if let Some(w) = stdin.as_mut()
                        && w.write_all(rest).await.is_err()
                    {
                        stdin = None;
                    }
                }
                4 => {
                    if let (Some(r), Ok(v)) =
                        (resize.as_ref(), serde_json::from_slice::<Value>(rest))
                    {
                        let w = v["Width"].as_u64().unwrap_or(80) as u16;
                        let h = v["Height"].as_u64().unwrap_or(24) as u16;
                        r(w, h);
                    }
                }
                255 if v5 && rest.first() == Some(&0) => {
                    // The client closed stdin.
                    if let Some(mut w) = stdin.take() {
                        let _ = w.shutdown().await;
                    }
                }
                _ => {}
            }
        }
    };
    let input = tokio::spawn(input);
    while let Some(m) = out_rx.recv().await {
        if sink.send(Message::Binary(m.into())).await.is_err() {
            break;
        }
    }
    let _ = r1.await;
    if let Some(r) = r2 {
        let _ = r.await;
    }
    let code = wait.await;
    let mut msg = vec![3u8];
    msg.extend_from_slice(&serde_json::to_vec(&status_message(code, "")).unwrap_or_default());
    let _ = sink.send(Message::Binary(msg.into())).await;
    let _ = sink.send(normal_close()).await;
    input.abort();
}

/// A close frame with status 1000: kubectl reads anything else as an error.
fn normal_close() -> tokio_tungstenite::tungstenite::Message {
    use tokio_tungstenite::tungstenite::protocol::{CloseFrame, frame::coding::CloseCode};
    tokio_tungstenite::tungstenite::Message::Close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_is_picked_as_kubernetes_picks_it() {
        let pod = json!({"metadata": {"name": "nginx"}, "spec": {"initContainers": [{"name": "install"}], "containers": [{"name": "nginx"}]}});
        assert_eq!(pick_container(&pod, None).unwrap(), "nginx");
        assert_eq!(pick_container(&pod, Some("install")).unwrap(), "install");
        assert_eq!(
            pick_container(&pod, Some("x")).unwrap_err().message,
            "container x is not valid for pod nginx"
        );
        let two = json!({"metadata": {"name": "p"}, "spec": {"initContainers": [{"name": "i"}], "containers": [{"name": "a"}, {"name": "b"}]}});
        assert_eq!(
            pick_container(&two, None).unwrap_err().message,
            "a container name must be specified for pod p, choose one of: [a b] or one of the init containers: [i]"
        );
    }

    #[test]
    fn exit_codes_travel_as_status() {
        assert_eq!(status_message(0, "")["status"], "Success");
        let s = status_message(3, "");
        assert_eq!(s["reason"], "NonZeroExitCode");
        assert_eq!(s["details"]["causes"][0]["message"], "3");
    }
}
