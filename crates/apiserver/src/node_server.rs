//! A node's kubelet endpoint: the other end of [`crate::node_client`]. An
//! agent serves its [`NodeProxy`] here over HTTPS, accepting only clients
//! with a certificate the cluster CA signed (the API server).
//!
//! Paths, as the kubelet's: `GET /containerLogs/{ns}/{pod}/{container}`,
//! `/exec/{ns}/{pod}/{container}?command=…&input=1&tty=1` and
//! `/attach/{ns}/{pod}/{container}` (WebSocket, `v5.channel.k8s.io`),
//! `/portForward/{ns}/{pod}?port=N` (WebSocket, raw bytes), `/metrics/resource`
//! (the node's and its containers' usage, Prometheus text) and `/healthz`.

use crate::error::ApiError;
use crate::node::{LogRequest, NodeProxy, NodeTarget, PodTarget};
use axum::body::Body;
use axum::response::IntoResponse;
use futures::StreamExt;
use futures::future::BoxFuture;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use serde_json::Value;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Looks up a pod (namespace, name) as the API has it.
pub type PodLookup =
    Arc<dyn Fn(String, String) -> BoxFuture<'static, Result<Value, ApiError>> + Send + Sync>;

/// What the endpoint serves.
#[derive(Clone)]
pub struct NodeServer {
    /// The node's name: requests for pods bound elsewhere are refused.
    pub node_name: String,
    /// The node itself.
    pub proxy: Arc<dyn NodeProxy>,
    /// Where pods are looked up.
    pub pods: PodLookup,
}

/// Serves `node` on `listener` with `tls` until `shutdown` turns true.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    node: NodeServer,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
) {
    let acceptor = tokio_rustls::TlsAcceptor::from(tls);
    loop {
        let tcp = tokio::select! {
            r = listener.accept() => match r {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!("kubelet endpoint accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        let _ = tcp.set_nodelay(true);
        let (acceptor, node) = (acceptor.clone(), node.clone());
        tokio::spawn(async move {
            let stream = match acceptor.accept(tcp).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::debug!("kubelet endpoint TLS: {e}");
                    return;
                }
            };
            let io = hyper_util::rt::TokioIo::new(stream);
            let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                let node = node.clone();
                async move {
                    let resp = match handle(&node, req.map(Body::new)).await {
                        Ok(r) => r,
                        Err(e) => e.into_response(),
                    };
                    Ok::<_, std::convert::Infallible>(resp)
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(io, svc)
                .with_upgrades()
                .await;
        });
    }
}

fn decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

/// The query's values for `key`, in order.
fn all(req: &Request<Body>, key: &str) -> Vec<String> {
    url::form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
        .filter(|(k, _)| k == key)
        .map(|(_, v)| v.into_owned())
        .collect()
}

fn one(req: &Request<Body>, key: &str) -> Option<String> {
    all(req, key).into_iter().next()
}

/// Kubernetes reads `true`, `1` (and any non-false value) as set.
fn flag(req: &Request<Body>, key: &str) -> bool {
    one(req, key).is_some_and(|v| !matches!(v.as_str(), "" | "false" | "0"))
}

fn int(req: &Request<Body>, key: &str) -> Result<Option<i64>, ApiError> {
    match one(req, key) {
        None => Ok(None),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => v
            .parse()
            .map(Some)
            .map_err(|_| ApiError::bad_request(format!("invalid {key}: {v:?}"))),
    }
}

/// The log options of a `/containerLogs` request.
fn log_request(req: &Request<Body>) -> Result<LogRequest, ApiError> {
    Ok(LogRequest {
        follow: flag(req, "follow"),
        previous: flag(req, "previous"),
        tail_lines: int(req, "tailLines")?,
        since_seconds: int(req, "sinceSeconds")?,
        since_time: one(req, "sinceTime"),
        timestamps: flag(req, "timestamps"),
        limit_bytes: int(req, "limitBytes")?,
    })
}

async fn target(node: &NodeServer, ns: &str, name: &str) -> Result<PodTarget, ApiError> {
    let pod = (node.pods)(ns.to_string(), name.to_string()).await?;
    let t = crate::node::target(&pod)?;
    if t.node != node.node_name {
        return Err(ApiError::bad_request(format!(
            "pod {ns}/{name} is bound to node {:?}, not to this node ({:?})",
            t.node, node.node_name
        )));
    }
    Ok(t)
}

async fn handle(node: &NodeServer, req: Request<Body>) -> Result<Response<Body>, ApiError> {
    let path: Vec<String> = req
        .uri()
        .path()
        .trim_matches('/')
        .split('/')
        .map(decode)
        .collect();
    let parts: Vec<&str> = path.iter().map(String::as_str).collect();
    if !matches!(*req.method(), Method::GET | Method::POST) {
        return Err(ApiError::method_not_allowed());
    }
    match parts.as_slice() {
        ["healthz"] => Ok("ok".into_response()),
        ["metrics", "resource"] => {
            let target = NodeTarget {
                name: node.node_name.clone(),
                kubelet: None,
            };
            let metrics = node.proxy.resource_metrics(&target).await?;
            let mut resp = Response::new(Body::from(crate::resource_metrics::render_prometheus(
                &metrics,
            )));
            resp.headers_mut().insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(crate::resource_metrics::CONTENT_TYPE),
            );
            Ok(resp)
        }
        ["containerLogs", ns, pod, container] => {
            let t = target(node, ns, pod).await?;
            let lr = log_request(&req)?;
            let stream = node.proxy.logs(&t, container, &lr).await?;
            let mut resp = Response::new(Body::from_stream(
                stream.map(Ok::<_, std::convert::Infallible>),
            ));
            resp.headers_mut()
                .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
            Ok(resp)
        }
        ["exec", ns, pod, container] => {
            let t = target(node, ns, pod).await?;
            let command = all(&req, "command");
            if command.is_empty() {
                return Err(ApiError::bad_request("you must specify at least 1 command"));
            }
            let p = node
                .proxy
                .exec(
                    &t,
                    container,
                    command,
                    flag(&req, "input"),
                    flag(&req, "tty"),
                )
                .await?;
            crate::node::exec_upgrade(req, Box::pin(async move { Ok(p) }))
        }
        ["attach", ns, pod, container] => {
            let t = target(node, ns, pod).await?;
            let p = node
                .proxy
                .attach(&t, container, flag(&req, "input"))
                .await?;
            crate::node::exec_upgrade(req, Box::pin(async move { Ok(p) }))
        }
        ["portForward", ns, pod] => {
            let t = target(node, ns, pod).await?;
            let port = one(&req, "port")
                .and_then(|p| p.parse::<u16>().ok())
                .filter(|p| *p > 0)
                .ok_or_else(|| ApiError::bad_request("a valid port number is required"))?;
            let conn = node.proxy.connect(&t, port).await?;
            crate::node::websocket_upgrade(
                req,
                &[crate::node_client::PORT_FORWARD_PROTOCOL],
                move |ws, _| crate::node_client::bridge(ws, conn),
            )
        }
        _ => {
            let mut r = ApiError::no_route().into_response();
            *r.status_mut() = StatusCode::NOT_FOUND;
            Ok(r)
        }
    }
}

#[cfg(test)]
mod tests {
    //! Both ends of the node protocol over real TLS, against a scripted node.
    use super::*;
    use crate::node::{ContainerSample, ExecProcess, PodConn, ResourceMetrics, UsageSample};
    use crate::node_client::RemoteNodes;
    use bytes::Bytes;
    use futures::stream::BoxStream;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A node whose exec echoes stdin (uppercased) and exits with the
    /// command's length; logs are the requested options; connect reaches a
    /// local echo server.
    struct Scripted {
        echo: std::net::SocketAddr,
    }

    /// What the scripted node reports as its usage.
    fn scripted_metrics() -> ResourceMetrics {
        ResourceMetrics {
            node: UsageSample {
                timestamp_ms: 1_764_300_000_123,
                cpu_usage_seconds_total: 20795.19,
                memory_working_set_bytes: 1_081_344_000,
            },
            containers: vec![ContainerSample {
                namespace: "ns".into(),
                pod: "web".into(),
                container: "c".into(),
                usage: UsageSample {
                    timestamp_ms: 1_764_300_000_125,
                    cpu_usage_seconds_total: 12.345678901,
                    memory_working_set_bytes: 10_469_376,
                },
            }],
        }
    }

    #[async_trait::async_trait]
    impl NodeProxy for Scripted {
        async fn resource_metrics(&self, node: &NodeTarget) -> Result<ResourceMetrics, ApiError> {
            if node.name != "n1" {
                return Err(ApiError::internal(format!("asked for {:?}", node.name)));
            }
            Ok(scripted_metrics())
        }
        async fn logs(
            &self,
            t: &PodTarget,
            container: &str,
            req: &LogRequest,
        ) -> Result<BoxStream<'static, Bytes>, ApiError> {
            if container == "waiting" {
                return Err(ApiError::bad_request(format!(
                    "container \"waiting\" in pod \"{}\" is waiting to start: ContainerCreating",
                    t.name
                )));
            }
            let line = format!(
                "{}/{} {container} follow={} tail={:?}\n",
                t.namespace, t.name, req.follow, req.tail_lines
            );
            Ok(
                futures::stream::iter(vec![Bytes::from(line), Bytes::from_static(b"second\n")])
                    .boxed(),
            )
        }
        async fn exec(
            &self,
            _t: &PodTarget,
            _container: &str,
            command: Vec<String>,
            _stdin: bool,
            _tty: bool,
        ) -> Result<ExecProcess, ApiError> {
            let (to_proc, mut proc_in) = tokio::io::duplex(1024);
            let (mut proc_out, from_proc) = tokio::io::duplex(1024);
            let (mut proc_err, from_err) = tokio::io::duplex(1024);
            let code = command.len() as i32;
            let done = tokio::spawn(async move {
                let mut buf = Vec::new();
                proc_in.read_to_end(&mut buf).await.unwrap();
                proc_out.write_all(&buf.to_ascii_uppercase()).await.unwrap();
                proc_err.write_all(b"to stderr").await.unwrap();
            });
            Ok(ExecProcess {
                stdin: Some(Box::new(to_proc)),
                stdout: Box::new(from_proc),
                stderr: Some(Box::new(from_err)),
                wait: Box::pin(async move {
                    let _ = done.await;
                    code
                }),
                resize: None,
            })
        }
        async fn attach(
            &self,
            _t: &PodTarget,
            _c: &str,
            _stdin: bool,
        ) -> Result<ExecProcess, ApiError> {
            Err(ApiError::bad_request("container c is not running"))
        }
        async fn connect(&self, _t: &PodTarget, _port: u16) -> Result<PodConn, ApiError> {
            let s = tokio::net::TcpStream::connect(self.echo)
                .await
                .map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(Box::new(s))
        }
    }

    async fn setup() -> (RemoteNodes, PodTarget, tokio::sync::watch::Sender<bool>) {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::tls::load_or_create(dir.path(), &["127.0.0.1".into()]).unwrap();
        let (cert, key) = pki
            .issue(
                "system:node:n1",
                Some("system:nodes"),
                &["n1".into(), "127.0.0.1".into()],
                crate::tls::Usage::Server,
            )
            .unwrap();
        let tls = crate::tls::kubelet_server_config(&pki.ca_pem, &cert, &key).unwrap();
        // An echo server that answers after the client half-closes.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let echo_addr = echo.local_addr().unwrap();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = echo.accept().await.unwrap();
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    s.read_to_end(&mut buf).await.unwrap();
                    s.write_all(b"echo:").await.unwrap();
                    s.write_all(&buf).await.unwrap();
                });
            }
        });
        let pod = json!({"metadata": {"namespace": "ns", "name": "web", "uid": "u"},
                         "spec": {"nodeName": "n1", "containers": [{"name": "c"}]}});
        let pods: PodLookup = {
            let pod = pod.clone();
            Arc::new(move |ns, name| {
                let pod = pod.clone();
                Box::pin(async move {
                    if ns == "ns" && name == "web" {
                        Ok(pod)
                    } else {
                        Err(ApiError::bad_request(format!("pods \"{name}\" not found")))
                    }
                })
            })
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (stop, shutdown) = tokio::sync::watch::channel(false);
        let node = NodeServer {
            node_name: "n1".into(),
            proxy: Arc::new(Scripted { echo: echo_addr }),
            pods,
        };
        tokio::spawn(serve(listener, tls, node, shutdown));
        let mut target = crate::node::target(&pod).unwrap();
        target.kubelet = Some(addr);
        std::mem::forget(dir);
        (RemoteNodes::new(pki.kubelet_client.clone()), target, stop)
    }

    #[tokio::test]
    async fn logs_exec_and_port_forward_cross_the_node_protocol() {
        let (remote, target, _stop) = setup().await;

        let lr = LogRequest {
            follow: true,
            tail_lines: Some(3),
            ..Default::default()
        };
        let body: Vec<Bytes> = remote
            .logs(&target, "c", &lr)
            .await
            .unwrap()
            .collect()
            .await;
        assert_eq!(
            body.concat(),
            b"ns/web c follow=true tail=Some(3)\nsecond\n"
        );
        let err = remote
            .logs(&target, "waiting", &LogRequest::default())
            .await
            .err()
            .unwrap();
        assert_eq!(err.code, 400);
        assert!(
            err.message
                .contains("is waiting to start: ContainerCreating"),
            "{}",
            err.message
        );

        let mut p = remote
            .exec(
                &target,
                "c",
                vec!["sh".into(), "-c".into(), "x".into()],
                true,
                false,
            )
            .await
            .unwrap();
        let mut stdin = p.stdin.take().unwrap();
        stdin.write_all(b"hello").await.unwrap();
        stdin.shutdown().await.unwrap();
        drop(stdin);
        let mut out = String::new();
        p.stdout.read_to_string(&mut out).await.unwrap();
        let mut err = String::new();
        p.stderr
            .take()
            .unwrap()
            .read_to_string(&mut err)
            .await
            .unwrap();
        assert_eq!((out.as_str(), err.as_str()), ("HELLO", "to stderr"));
        assert_eq!(p.wait.await, 3, "the exit code travels back");

        let err = remote.attach(&target, "c", true).await.err().unwrap();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "container c is not running")
        );

        let mut conn = remote.connect(&target, 8080).await.unwrap();
        conn.write_all(b"ping").await.unwrap();
        conn.shutdown().await.unwrap();
        let mut back = Vec::new();
        conn.read_to_end(&mut back).await.unwrap();
        assert_eq!(
            back, b"echo:ping",
            "half-close reaches the pod and the reply comes back"
        );
    }

    #[tokio::test]
    async fn resource_metrics_cross_the_node_protocol() {
        let (remote, target, _stop) = setup().await;
        let node = NodeTarget {
            name: "n1".into(),
            kubelet: target.kubelet,
        };
        assert_eq!(
            remote.resource_metrics(&node).await.unwrap(),
            scripted_metrics()
        );
        let err = remote
            .resource_metrics(&NodeTarget {
                name: "n2".into(),
                kubelet: None,
            })
            .await
            .unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                503,
                "node \"n2\" has no kubelet endpoint (InternalIP and daemonEndpoints)"
            )
        );
    }

    #[tokio::test]
    async fn pods_of_other_nodes_and_unknown_clients_are_refused() {
        let (remote, mut target, _stop) = setup().await;
        target.name = "other".into();
        let err = remote
            .logs(&target, "c", &LogRequest::default())
            .await
            .err()
            .unwrap();
        assert!(
            err.message.contains("\"other\" not found"),
            "{}",
            err.message
        );

        // A client without a certificate from the cluster CA gets no TLS session.
        let addr = target.kubelet.unwrap();
        let stranger = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth();
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
        let refused = match tokio_rustls::TlsConnector::from(Arc::new(stranger))
            .connect(name, tcp)
            .await
        {
            Err(_) => true,
            Ok(mut s) => {
                // TLS 1.3 reports the missing certificate on first read.
                let _ = s
                    .write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
                    .await;
                let mut buf = [0u8; 16];
                !matches!(s.read(&mut buf).await, Ok(n) if n > 0)
            }
        };
        assert!(
            refused,
            "a client without a cluster certificate must be refused"
        );
    }

    #[derive(Debug)]
    struct AcceptAny;
    impl rustls::client::danger::ServerCertVerifier for AcceptAny {
        fn verify_server_cert(
            &self,
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &[rustls::pki_types::CertificateDer<'_>],
            _: &rustls::pki_types::ServerName<'_>,
            _: &[u8],
            _: rustls::pki_types::UnixTime,
        ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
            Ok(rustls::client::danger::ServerCertVerified::assertion())
        }
        fn verify_tls12_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn verify_tls13_signature(
            &self,
            _: &[u8],
            _: &rustls::pki_types::CertificateDer<'_>,
            _: &rustls::DigitallySignedStruct,
        ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
            Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
        }
        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            rustls::crypto::ring::default_provider()
                .signature_verification_algorithms
                .supported_schemes()
        }
    }
}
