//! The scheduler as a client of the API: it watches pods and nodes, keeps
//! the queue, places one pod at a time on a fresh snapshot, and binds
//! through `pods/binding`. A placed pod is assumed on its node at once, so
//! a burst of pods sees the earlier ones before their binding comes back.

use crate::node_info::Snapshot;
use crate::queue::SchedulingQueue;
use crate::schedule::{FitError, pod_priority, schedule};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Node, Pod, Taint};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::HashMap;
use std::time::Duration;
use tokio::sync::watch;

/// The scheduler's name, as pods ask for it in `spec.schedulerName`.
pub const DEFAULT_SCHEDULER: &str = "default-scheduler";

/// The key of a pod in the queue.
pub fn key(pod: &Pod) -> String {
    format!(
        "{}/{}",
        pod.metadata.namespace.as_deref().unwrap_or(""),
        pod.metadata.name.as_deref().unwrap_or("")
    )
}

/// Whether this scheduler should place the pod.
pub fn wants(pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    spec.and_then(|s| s.node_name.as_deref())
        .unwrap_or("")
        .is_empty()
        && spec
            .and_then(|s| s.scheduler_name.as_deref())
            .unwrap_or(DEFAULT_SCHEDULER)
            == DEFAULT_SCHEDULER
        && pod.metadata.deletion_timestamp.is_none()
        && !matches!(
            pod.status.as_ref().and_then(|s| s.phase.as_deref()),
            Some("Succeeded") | Some("Failed")
        )
}

/// A node as the scheduler sees it: one whose Ready condition is not True
/// carries the `node.kubernetes.io/not-ready` NoSchedule taint, as
/// Kubernetes' node lifecycle controller adds it (TaintNodesByCondition).
pub fn effective_node(node: &Node) -> Node {
    let ready = node
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .map(|c| c.status == "True")
        .unwrap_or(false);
    let mut n = node.clone();
    if !ready {
        let spec = n.spec.get_or_insert_with(Default::default);
        let taints = spec.taints.get_or_insert_with(Vec::new);
        if !taints
            .iter()
            .any(|t| t.key == "node.kubernetes.io/not-ready" && t.effect == "NoSchedule")
        {
            taints.push(Taint {
                key: "node.kubernetes.io/not-ready".into(),
                effect: "NoSchedule".into(),
                ..Default::default()
            });
        }
    }
    n
}

async fn record(client: &kube::Client, pod: &Pod, type_: &str, reason: &str, message: &str) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let now = Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| Timestamp::now())
        .to_string();
    let ev = json!({
        "metadata": {"name": format!("{name}.{:x}", Timestamp::now().as_nanosecond()), "namespace": ns},
        "involvedObject": {"kind": "Pod", "namespace": ns, "name": name, "uid": pod.metadata.uid, "apiVersion": "v1",
                           "resourceVersion": pod.metadata.resource_version},
        "reason": reason, "message": message, "type": type_,
        "source": {"component": DEFAULT_SCHEDULER},
        "reportingComponent": DEFAULT_SCHEDULER,
        "count": 1, "firstTimestamp": now, "lastTimestamp": now,
    });
    let Ok(ev) = serde_json::from_value::<Event>(ev) else {
        return;
    };
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    let _ = events.create(&PostParams::default(), &ev).await;
}

async fn bind(client: &kube::Client, pod: &Pod, node: &str) -> kube::Result<()> {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let body = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": name, "namespace": ns, "uid": pod.metadata.uid},
        "target": {"apiVersion": "v1", "kind": "Node", "name": node}});
    let req = http::Request::post(format!("/api/v1/namespaces/{ns}/pods/{name}/binding"))
        .header("content-type", "application/json")
        .body(serde_json::to_vec(&body).unwrap_or_default())
        .expect("valid request");
    client.request::<serde_json::Value>(req).await.map(|_| ())
}

/// What Kubernetes reports when there is no node at all.
pub const NO_NODES: &str = "no nodes available to schedule pods";

async fn mark_unschedulable(client: &kube::Client, pod: &Pod, message: &str) {
    let ns = pod.metadata.namespace.clone().unwrap_or_default();
    let name = pod.metadata.name.clone().unwrap_or_default();
    let pods: Api<Pod> = Api::namespaced(client.clone(), &ns);
    let mut conditions: Vec<serde_json::Value> = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .map(|cs| {
            cs.iter()
                .filter(|c| c.type_ != "PodScheduled")
                .filter_map(|c| serde_json::to_value(c).ok())
                .collect()
        })
        .unwrap_or_default();
    let prev = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "PodScheduled"));
    let message = message.to_string();
    if prev.is_some_and(|c| c.status == "False" && c.message.as_deref() == Some(message.as_str())) {
        return;
    }
    let now = Timestamp::now()
        .round(jiff::Unit::Second)
        .unwrap_or_else(|_| Timestamp::now())
        .to_string();
    conditions.push(json!({"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": message,
                           "lastProbeTime": null, "lastTransitionTime": now}));
    let patch = json!({"status": {"conditions": conditions}});
    let _ = pods
        .patch_status(&name, &PatchParams::default(), &Patch::Merge(patch))
        .await;
}

/// Runs the scheduler until `shutdown` turns true.
pub async fn run(client: kube::Client, mut shutdown: watch::Receiver<bool>) {
    let mut pods_stream =
        watcher(Api::<Pod>::all(client.clone()), watcher::Config::default()).boxed();
    let mut nodes_stream =
        watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).boxed();
    let mut pods: HashMap<String, Pod> = HashMap::new();
    let mut nodes: HashMap<String, Node> = HashMap::new();
    let mut queue = SchedulingQueue::new();
    let mut reported: HashMap<String, String> = HashMap::new();
    let mut seed: u64 = 0;
    // Bindings run concurrently; their results come back here.
    let (bound_tx, mut bound_rx) = tokio::sync::mpsc::unbounded_channel::<(String, String, bool)>();
    // Pods placed whose binding has not come back yet, with their node.
    let mut inflight: HashMap<String, String> = HashMap::new();
    loop {
        let wait = queue
            .next_backoff_expiry()
            .map(|t| {
                Duration::from_millis(
                    t.duration_since(Timestamp::now())
                        .as_millis()
                        .clamp(10, 1000) as u64,
                )
            })
            .unwrap_or(Duration::from_secs(1));
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = pods_stream.next() => match ev {
                Some(Ok(watcher::Event::Apply(mut p))) | Some(Ok(watcher::Event::InitApply(mut p))) => {
                    let k = key(&p);
                    let now = Timestamp::now();
                    if let Some(node) = inflight.get(&k)
                        && p.spec.as_ref().and_then(|s| s.node_name.as_deref()).unwrap_or("").is_empty()
                    {
                        // Still assumed on its node while the binding is in flight.
                        p.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
                    }
                    if wants(&p) {
                        queue.add(&k, pod_priority(&p), now);
                    } else {
                        queue.delete(&k);
                        reported.remove(&k);
                    }
                    let finished = matches!(p.status.as_ref().and_then(|s| s.phase.as_deref()), Some("Succeeded") | Some("Failed"));
                    pods.insert(k, p);
                    if finished {
                        queue.move_all_to_active_or_backoff(now);
                    }
                }
                Some(Ok(watcher::Event::Delete(p))) => {
                    let k = key(&p);
                    queue.delete(&k);
                    reported.remove(&k);
                    pods.remove(&k);
                    // Freed capacity may let others fit.
                    queue.move_all_to_active_or_backoff(Timestamp::now());
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!("scheduler pod watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            ev = nodes_stream.next() => match ev {
                Some(Ok(watcher::Event::Apply(n))) | Some(Ok(watcher::Event::InitApply(n))) => {
                    let changed = nodes.get(n.metadata.name.as_deref().unwrap_or("")).is_none_or(|old| {
                        old.spec != n.spec || old.metadata.labels != n.metadata.labels
                            || effective_node(old).spec != effective_node(&n).spec
                    });
                    nodes.insert(n.metadata.name.clone().unwrap_or_default(), n);
                    if changed {
                        queue.move_all_to_active_or_backoff(Timestamp::now());
                    }
                }
                Some(Ok(watcher::Event::Delete(n))) => {
                    nodes.remove(n.metadata.name.as_deref().unwrap_or(""));
                }
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::warn!("scheduler node watch: {e}");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                None => return,
            },
            Some((k, node, ok)) = bound_rx.recv() => {
                inflight.remove(&k);
                if ok {
                    queue.done(&k);
                } else {
                    // Un-assume and retry after the back-off.
                    if let Some(p) = pods.get_mut(&k)
                        && p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(node.as_str())
                    {
                        p.spec.get_or_insert_with(Default::default).node_name = None;
                    }
                    queue.backoff(&k, Timestamp::now());
                }
            }
            _ = tokio::time::sleep(wait) => {}
        }
        // Place everything that is due.
        let now = Timestamp::now();
        queue.flush(now);
        while let Some(qp) = queue.pop(now) {
            let Some(pod) = pods.get(&qp.key).cloned().filter(wants) else {
                queue.done(&qp.key);
                continue;
            };
            let node_list: Vec<Node> = nodes.values().map(effective_node).collect();
            let all: Vec<Pod> = pods.values().cloned().collect();
            let snapshot = Snapshot::new(node_list, &all);
            seed = seed.wrapping_add(1);
            let placed = if snapshot.nodes.is_empty() {
                Err(NO_NODES.to_string())
            } else {
                schedule(&pod, &snapshot, seed).map_err(|e: FitError| e.to_string())
            };
            match placed {
                Ok(node) => {
                    reported.remove(&qp.key);
                    // Assume it there now, so the next pods of a burst see it; bind in the background.
                    if let Some(p) = pods.get_mut(&qp.key) {
                        p.spec.get_or_insert_with(Default::default).node_name = Some(node.clone());
                    }
                    inflight.insert(qp.key.clone(), node.clone());
                    let (c, tx, k) = (client.clone(), bound_tx.clone(), qp.key.clone());
                    tokio::spawn(async move {
                        match bind(&c, &pod, &node).await {
                            Ok(()) => {
                                let _ = tx.send((k, node.clone(), true));
                                let msg = format!(
                                    "Successfully assigned {}/{} to {node}",
                                    pod.metadata.namespace.as_deref().unwrap_or(""),
                                    pod.metadata.name.as_deref().unwrap_or("")
                                );
                                record(&c, &pod, "Normal", "Scheduled", &msg).await;
                            }
                            Err(e) => {
                                tracing::debug!("binding {k}: {e}");
                                let _ = tx.send((k, node, false));
                            }
                        }
                    });
                }
                Err(msg) => {
                    if reported.get(&qp.key) != Some(&msg) {
                        reported.insert(qp.key.clone(), msg.clone());
                        mark_unschedulable(&client, &pod, &msg).await;
                        let (c, p) = (client.clone(), pod.clone());
                        tokio::spawn(async move {
                            record(&c, &p, "Warning", "FailedScheduling", &msg).await
                        });
                    }
                    queue.unschedulable(&qp.key, now);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_that_is_not_ready_carries_the_not_ready_taint() {
        let ready: Node = serde_json::from_value(json!({"metadata": {"name": "a"}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})).unwrap();
        assert!(
            effective_node(&ready)
                .spec
                .and_then(|s| s.taints)
                .unwrap_or_default()
                .is_empty()
        );
        let not_ready: Node = serde_json::from_value(json!({"metadata": {"name": "b"}, "status": {"conditions": [{"type": "Ready", "status": "False"}]}})).unwrap();
        let taints = effective_node(&not_ready).spec.unwrap().taints.unwrap();
        assert_eq!(taints.len(), 1);
        assert_eq!(
            (taints[0].key.as_str(), taints[0].effect.as_str()),
            ("node.kubernetes.io/not-ready", "NoSchedule")
        );
    }

    #[test]
    fn only_unbound_live_pods_for_this_scheduler_are_wanted() {
        let p = |v: serde_json::Value| -> Pod { serde_json::from_value(v).unwrap() };
        assert!(wants(&p(
            json!({"metadata": {"name": "a"}, "spec": {"containers": []}})
        )));
        assert!(!wants(&p(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [], "nodeName": "n"}})
        )));
        assert!(!wants(&p(
            json!({"metadata": {"name": "a"}, "spec": {"containers": [], "schedulerName": "other"}})
        )));
        assert!(!wants(&p(
            json!({"metadata": {"name": "a", "deletionTimestamp": "2026-11-28T05:00:00Z"}, "spec": {"containers": []}})
        )));
    }
}
