//! The embedded node as the apiserver reaches it: logs from the agent's CRI
//! files, exec through runc, resource usage from /proc and the containers' cgroups.

use bytes::Bytes;
use futures::stream::BoxStream;
use serde_json::Value;
use skiff_agent::kubelet::Kubelet;
use skiff_agent::logs::{self, LogOptions};
use skiff_agent::metrics::{self, NodeUsage};
use skiff_agent::runtime::runc::RuncRuntime;
use skiff_agent::runtime::{ContainerState, Runtime, labels};
use skiff_apiserver::error::ApiError;
use skiff_apiserver::node::{
    ContainerSample, ExecProcess, LogRequest, NodeProxy, NodeTarget, PodConn, PodTarget,
    ResourceMetrics, UsageSample,
};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// The node this binary runs.
pub struct LocalNode {
    /// The agent's data dir.
    pub agent_dir: PathBuf,
    /// Its node name.
    pub node_name: String,
    /// The runtime, when this node can run containers.
    pub runc: Option<Arc<RuncRuntime>>,
}

fn waiting_reason(pod: &Value, container: &str) -> Option<String> {
    ["containerStatuses", "initContainerStatuses"]
        .iter()
        .find_map(|k| {
            pod["status"][k]
                .as_array()?
                .iter()
                .find(|s| s["name"] == container)?["state"]["waiting"]["reason"]
                .as_str()
                .map(str::to_string)
        })
}

/// The collector's reading as the apiserver's [`ResourceMetrics`]; an error
/// when the node's own figures could not be read.
fn resource_metrics(usage: NodeUsage) -> Result<ResourceMetrics, ApiError> {
    let sample = |s: metrics::Sample| UsageSample {
        timestamp_ms: s.timestamp_ms,
        cpu_usage_seconds_total: s.usage.cpu_seconds,
        memory_working_set_bytes: s.usage.memory_working_set_bytes,
    };
    let node = usage
        .node
        .ok_or_else(|| ApiError::internal("reading the node's usage from /proc failed"))?;
    Ok(ResourceMetrics {
        node: sample(node),
        containers: usage
            .containers
            .into_iter()
            .map(|c| ContainerSample {
                namespace: c.namespace,
                pod: c.pod,
                container: c.container,
                usage: sample(c.sample),
            })
            .collect(),
    })
}

impl LocalNode {
    fn check_node(&self, t: &PodTarget) -> Result<(), ApiError> {
        if t.node != self.node_name {
            return Err(ApiError::unavailable(format!(
                "node {:?} is not reachable from this server yet",
                t.node
            )));
        }
        Ok(())
    }

    async fn newest_container(
        &self,
        t: &PodTarget,
        container: &str,
        attempt: Option<u32>,
    ) -> Option<(String, ContainerState)> {
        let runc = self.runc.as_ref()?;
        let all = runc.list_containers().await.ok()?;
        all.into_iter()
            .filter(|c| {
                c.labels.get(labels::POD_UID) == Some(&t.uid)
                    && c.labels.get(labels::CONTAINER_NAME).map(String::as_str) == Some(container)
            })
            .filter(|c| {
                attempt.is_none_or(|a| {
                    c.labels
                        .get(labels::ATTEMPT)
                        .and_then(|x| x.parse::<u32>().ok())
                        == Some(a)
                })
            })
            .max_by_key(|c| {
                c.labels
                    .get(labels::ATTEMPT)
                    .and_then(|a| a.parse::<u32>().ok())
                    .unwrap_or(0)
            })
            .map(|c| (c.id, c.state))
    }
}

#[async_trait::async_trait]
impl NodeProxy for LocalNode {
    async fn resource_metrics(&self, node: &NodeTarget) -> Result<ResourceMetrics, ApiError> {
        if node.name != self.node_name {
            return Err(ApiError::unavailable(format!(
                "node {:?} is not reachable from this server yet",
                node.name
            )));
        }
        let roots = metrics::Roots::default();
        let usage = match &self.runc {
            Some(runc) => metrics::collect_runc(runc, &roots).await,
            None => tokio::task::spawn_blocking(move || metrics::collect(&roots, &[]))
                .await
                .unwrap_or_default(),
        };
        resource_metrics(usage)
    }

    async fn logs(
        &self,
        t: &PodTarget,
        container: &str,
        req: &LogRequest,
    ) -> Result<BoxStream<'static, Bytes>, ApiError> {
        self.check_node(t)?;
        let dir = Kubelet::log_path(&self.agent_dir, &t.namespace, &t.name, &t.uid, container, 0)
            .parent()
            .expect("log dir")
            .to_path_buf();
        let attempts = logs::attempts(&dir);
        let chosen = if req.previous {
            if attempts.len() < 2 {
                return Err(ApiError::bad_request(format!(
                    "previous terminated container {container:?} in pod {:?} not found",
                    t.name
                )));
            }
            attempts[attempts.len() - 2].clone()
        } else {
            match attempts.last() {
                Some(a) => a.clone(),
                None => {
                    let why = waiting_reason(&t.pod, container)
                        .unwrap_or_else(|| "ContainerCreating".into());
                    return Err(ApiError::bad_request(format!(
                        "container {container:?} in pod {:?} is waiting to start: {why}",
                        t.name
                    )));
                }
            }
        };
        let since = match (&req.since_time, req.since_seconds) {
            (Some(t), _) => Some(
                t.parse()
                    .map_err(|_| ApiError::bad_request(format!("invalid sinceTime {t:?}")))?,
            ),
            (None, Some(s)) => Some(jiff::Timestamp::now() - jiff::SignedDuration::from_secs(s)),
            _ => None,
        };
        let opts = LogOptions {
            follow: req.follow && !req.previous,
            previous: req.previous,
            tail_lines: req.tail_lines,
            since,
            timestamps: req.timestamps,
            limit_bytes: req.limit_bytes,
        };
        // Following ends when that attempt's container has exited.
        let done = Arc::new(AtomicBool::new(!opts.follow));
        if opts.follow {
            let me = LocalNode {
                agent_dir: self.agent_dir.clone(),
                node_name: self.node_name.clone(),
                runc: self.runc.clone(),
            };
            let (t, container, attempt, done) =
                (t.clone(), container.to_string(), chosen.0, done.clone());
            tokio::spawn(async move {
                loop {
                    match me.newest_container(&t, &container, Some(attempt)).await {
                        Some((_, ContainerState::Running { .. }))
                        | Some((_, ContainerState::Created)) => {}
                        _ => {
                            done.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                }
            });
        }
        Ok(logs::stream(chosen.1, opts, move || {
            done.load(Ordering::SeqCst)
        }))
    }

    async fn attach(
        &self,
        t: &PodTarget,
        container: &str,
        stdin: bool,
    ) -> Result<ExecProcess, ApiError> {
        self.check_node(t)?;
        let Some((id, ContainerState::Running { .. })) =
            self.newest_container(t, container, None).await
        else {
            return Err(ApiError::bad_request(format!(
                "container {container} is not running"
            )));
        };
        // Input goes to the container's stdin socket; a container without
        // stdin takes none, and the input is dropped as container runtimes do.
        let socket = self.runc.as_ref().map(|r| r.attach_socket(&id));
        let input: Option<Box<dyn tokio::io::AsyncWrite + Send + Unpin>> = match socket {
            Some(path) if stdin && path.exists() => Some(Box::new(
                tokio::net::UnixStream::connect(&path)
                    .await
                    .map_err(|e| ApiError::internal(format!("attaching to {container}: {e}")))?,
            )),
            _ if stdin => Some(Box::new(tokio::io::sink())),
            _ => None,
        };
        // A session on a stdinOnce container (kubectl run -i) sees its output
        // from the start, so a quick command's output is not lost to the race
        // between the start and the attach.
        let replay = stdin
            && t.pod["spec"]["containers"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["name"] == container && c["stdinOnce"] == true);
        let dir = Kubelet::log_path(&self.agent_dir, &t.namespace, &t.name, &t.uid, container, 0)
            .parent()
            .expect("log dir")
            .to_path_buf();
        let (n, path) = logs::attempts(&dir).pop().ok_or_else(|| {
            ApiError::bad_request(format!("container {container} has no output yet"))
        })?;
        // Follow the output from now on until that attempt exits.
        let done = Arc::new(AtomicBool::new(false));
        let exit_code = Arc::new(std::sync::atomic::AtomicI32::new(0));
        {
            let me = LocalNode {
                agent_dir: self.agent_dir.clone(),
                node_name: self.node_name.clone(),
                runc: self.runc.clone(),
            };
            let (t, container, done, exit_code) = (
                t.clone(),
                container.to_string(),
                done.clone(),
                exit_code.clone(),
            );
            tokio::spawn(async move {
                loop {
                    match me.newest_container(&t, &container, Some(n)).await {
                        Some((_, ContainerState::Running { .. }))
                        | Some((_, ContainerState::Created)) => {}
                        Some((_, ContainerState::Exited { exit_code: c, .. })) => {
                            exit_code.store(c, Ordering::SeqCst);
                            done.store(true, Ordering::SeqCst);
                            return;
                        }
                        _ => {
                            done.store(true, Ordering::SeqCst);
                            return;
                        }
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
                }
            });
        }
        let opts = LogOptions {
            follow: true,
            tail_lines: if replay { None } else { Some(0) },
            ..Default::default()
        };
        let d2 = done.clone();
        let mut stream = logs::stream(path, opts, move || d2.load(Ordering::SeqCst));
        let (mut w, r) = tokio::io::duplex(64 * 1024);
        tokio::spawn(async move {
            use futures::StreamExt;
            use tokio::io::AsyncWriteExt;
            while let Some(chunk) = stream.next().await {
                if w.write_all(&chunk).await.is_err() {
                    return;
                }
            }
        });
        let wait = Box::pin(async move {
            while !done.load(Ordering::SeqCst) {
                tokio::time::sleep(std::time::Duration::from_millis(300)).await;
            }
            exit_code.load(Ordering::SeqCst)
        });
        Ok(ExecProcess {
            stdin: input,
            stdout: Box::new(r),
            stderr: None,
            wait,
            resize: None,
        })
    }

    async fn connect(&self, t: &PodTarget, port: u16) -> Result<PodConn, ApiError> {
        self.check_node(t)?;
        let runc = self
            .runc
            .as_ref()
            .ok_or_else(|| ApiError::bad_request("this node cannot run containers"))?;
        let sandbox = runc
            .list_sandboxes()
            .await
            .map_err(|e| ApiError::internal(e.to_string()))?
            .into_iter()
            .filter(|s| s.labels.get(labels::POD_UID) == Some(&t.uid))
            .max_by_key(|s| s.attempt)
            .ok_or_else(|| {
                ApiError::bad_request(format!("pod {} has no sandbox on this node", t.name))
            })?;
        let addr = std::net::SocketAddr::new(std::net::Ipv4Addr::LOCALHOST.into(), port);
        skiff_agent::probe::connect_in(
            sandbox.netns.as_deref(),
            addr,
            std::time::Duration::from_secs(5),
        )
        .await
        .map(|s| Box::new(s) as PodConn)
        .map_err(|e| {
            ApiError::internal(format!(
                "error forwarding port {port} to pod {}, uid {}: {e}",
                t.name, t.uid
            ))
        })
    }

    async fn exec(
        &self,
        t: &PodTarget,
        container: &str,
        command: Vec<String>,
        stdin: bool,
        tty: bool,
    ) -> Result<ExecProcess, ApiError> {
        self.check_node(t)?;
        let Some(runc) = self.runc.clone() else {
            return Err(ApiError::bad_request("this node cannot run containers"));
        };
        let id = match self.newest_container(t, container, None).await {
            Some((id, ContainerState::Running { .. })) => id,
            _ => {
                return Err(ApiError::bad_request(format!(
                    "unable to upgrade connection: container not found ({container:?})"
                )));
            }
        };
        let p = runc
            .exec_interactive(&id, &command, stdin, tty)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let mut child = p.child;
        let wait = Box::pin(async move {
            match child.wait().await {
                Ok(s) => s.code().unwrap_or(
                    128 + std::os::unix::process::ExitStatusExt::signal(&s).unwrap_or(0),
                ),
                Err(_) => 1,
            }
        });
        Ok(ExecProcess {
            stdin: p.stdin,
            stdout: p.stdout,
            stderr: p.stderr,
            wait,
            resize: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_collectors_reading_becomes_resource_metrics() {
        let s = |ts, cpu, mem| metrics::Sample {
            timestamp_ms: ts,
            usage: metrics::Usage {
                cpu_seconds: cpu,
                memory_working_set_bytes: mem,
            },
        };
        let usage = NodeUsage {
            node: Some(s(10, 100.5, 4096)),
            containers: vec![metrics::ContainerUsage {
                namespace: "ns".into(),
                pod: "web".into(),
                container: "app".into(),
                sample: s(11, 0.25, 1024),
            }],
        };
        assert_eq!(
            resource_metrics(usage).unwrap(),
            ResourceMetrics {
                node: UsageSample {
                    timestamp_ms: 10,
                    cpu_usage_seconds_total: 100.5,
                    memory_working_set_bytes: 4096
                },
                containers: vec![ContainerSample {
                    namespace: "ns".into(),
                    pod: "web".into(),
                    container: "app".into(),
                    usage: UsageSample {
                        timestamp_ms: 11,
                        cpu_usage_seconds_total: 0.25,
                        memory_working_set_bytes: 1024
                    }
                }]
            }
        );
        let err = resource_metrics(NodeUsage::default()).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (
                500,
                "Internal error occurred: reading the node's usage from /proc failed"
            )
        );
    }
}
