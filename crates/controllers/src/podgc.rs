//! Pod garbage collection (kube-controller-manager's `podgc`): force-deletes
//! (grace 0) pods that no kubelet will ever finish.
//!
//! - Orphans: pods bound to a node that no longer exists, once the node has
//!   been missing for the quarantine (40 s in Kubernetes) and a fresh GET
//!   confirms it. They are first marked Failed with the `DisruptionTarget`
//!   condition (`DeletionByPodGC`, "PodGC: node no longer exists").
//! - Terminating pods on a node that is not Ready and carries the
//!   `node.kubernetes.io/out-of-service` taint: marked Failed, then deleted.
//! - Terminating pods that were never scheduled.
//!
//! The terminated-pod threshold (`--terminated-pod-gc-threshold`) is not done.

use crate::cache::Cache;
use crate::node_lifecycle::{OUT_OF_SERVICE, condition, patch_condition};
use futures::StreamExt;
use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Node, Pod, PodCondition};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use kube::runtime::watcher;
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;

/// Why pod GC deletes a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// Its node is gone.
    Orphaned,
    /// It is terminating on an out-of-service node that is not Ready.
    OutOfService,
    /// It is terminating and was never scheduled.
    Unscheduled,
}

/// One pod to force-delete.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Collect {
    /// `namespace/name`.
    pub pod: String,
    /// Why.
    pub reason: Reason,
}

/// What pod GC does in one pass.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Pods to force-delete.
    pub delete: Vec<Collect>,
    /// Missing nodes whose quarantine is over: confirm with a GET before their pods go.
    pub confirm_missing: Vec<String>,
}

/// Decides one pass. `missing_since` holds when each missing node was first
/// seen missing (updated here); `confirmed_gone` the nodes a GET found absent.
pub fn plan(
    pods: &[&Pod],
    nodes: &HashMap<String, &Node>,
    missing_since: &mut HashMap<String, Timestamp>,
    confirmed_gone: &HashSet<String>,
    now: Timestamp,
    quarantine: Duration,
) -> Plan {
    let mut out = Plan::default();
    let mut still_missing = HashSet::new();
    for pod in pods {
        let key = crate::key_of(&pod.metadata);
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        let terminating = pod.metadata.deletion_timestamp.is_some();
        if node_name.is_empty() {
            if terminating {
                out.delete.push(Collect {
                    pod: key,
                    reason: Reason::Unscheduled,
                });
            }
            continue;
        }
        match nodes.get(node_name) {
            None => {
                still_missing.insert(node_name.to_string());
                let since = *missing_since.entry(node_name.to_string()).or_insert(now);
                if now.duration_since(since).as_secs_f64() < quarantine.as_secs_f64() {
                    continue;
                }
                if confirmed_gone.contains(node_name) {
                    out.delete.push(Collect {
                        pod: key,
                        reason: Reason::Orphaned,
                    });
                } else if !out.confirm_missing.iter().any(|n| n == node_name) {
                    out.confirm_missing.push(node_name.to_string());
                }
            }
            Some(node) => {
                let ready = condition(node, "Ready").is_some_and(|c| c.status == "True");
                let out_of_service = node
                    .spec
                    .as_ref()
                    .and_then(|s| s.taints.as_ref())
                    .is_some_and(|ts| ts.iter().any(|t| t.key == OUT_OF_SERVICE));
                if terminating && !ready && out_of_service {
                    out.delete.push(Collect {
                        pod: key,
                        reason: Reason::OutOfService,
                    });
                }
            }
        }
    }
    missing_since.retain(|n, _| still_missing.contains(n));
    out
}

/// Runs pod GC until `shutdown` turns true.
/// (With a pod watch of its own; `skiff server` shares one through [`run_with_pods`].)
pub async fn run(client: kube::Client, config: crate::Config, shutdown: watch::Receiver<bool>) {
    run_with_pods(
        client.clone(),
        config,
        crate::informer::own_pods(client.clone()),
        shutdown,
    )
    .await
}

/// Runs the controller on a shared pod stream ([`crate::informer`]) until `shutdown` turns true.
pub async fn run_with_pods(
    client: kube::Client,
    config: crate::Config,
    pods_in: crate::informer::PodStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut nodes_w = watcher(Api::<Node>::all(client.clone()), watcher::Config::default()).boxed();
    let mut pods_w = pods_in;
    let mut nodes: Cache<Node> = Cache::new();
    let mut pods: Cache<Pod> = Cache::new();
    let mut missing_since: HashMap<String, Timestamp> = HashMap::new();
    let mut confirmed_gone: HashSet<String> = HashSet::new();
    let period = config
        .pod_gc_period
        .min(config.pod_gc_quarantine.max(Duration::from_millis(200)));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = nodes_w.next() => match ev {
                Some(Ok(e)) => { nodes.apply(e); }
                Some(Err(e)) => tracing::debug!("pod gc: node watch: {e}"),
                None => return,
            },
            ev = pods_w.next() => match ev {
                Some(Ok(e)) => { pods.apply(e); }
                Some(Err(e)) => tracing::debug!("pod gc: pod watch: {e}"),
                None => return,
            },
            _ = tick.tick() => {
                if !(nodes.synced && pods.synced) {
                    continue;
                }
                let by_name: HashMap<String, &Node> = nodes

                    .values()
                    .map(|n| (n.metadata.name.clone().unwrap_or_default(), n))
                    .collect();
                confirmed_gone.retain(|n| !by_name.contains_key(n));
                let all: Vec<&Pod> = pods.values().collect();
                let p = plan(&all, &by_name, &mut missing_since, &confirmed_gone, Timestamp::now(), config.pod_gc_quarantine);
                let node_api: Api<Node> = Api::all(client.clone());
                for n in p.confirm_missing {
                    if let Err(kube::Error::Api(s)) = node_api.get(&n).await
                        && s.code == 404
                    {
                        confirmed_gone.insert(n);
                    }
                }
                for c in p.delete {
                    if let Some(pod) = pods.get(&c.pod) {
                        collect(&client, pod, &c.reason).await;
                    }
                }
            }
        }
    }
}

/// `markFailedAndDeletePodWithCondition`: phase Failed (and the condition for
/// orphans) unless the pod already finished, then a delete with grace 0.
async fn collect(client: &kube::Client, pod: &Pod, reason: &Reason) {
    let key = crate::key_of(&pod.metadata);
    tracing::info!("pod gc: force deleting pod {key} ({reason:?})");
    let api: Api<Pod> = Api::namespaced(
        client.clone(),
        pod.metadata.namespace.as_deref().unwrap_or("default"),
    );
    let name = pod.metadata.name.as_deref().unwrap_or("");
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if !matches!(phase, Some("Succeeded" | "Failed")) {
        if *reason == Reason::Orphaned {
            let cond = PodCondition {
                type_: "DisruptionTarget".into(),
                status: "True".into(),
                reason: Some("DeletionByPodGC".into()),
                message: Some("PodGC: node no longer exists".into()),
                last_transition_time: Some(Time(crate::now_rounded())),
                ..Default::default()
            };
            patch_condition(client, pod, cond).await;
        }
        let patch = json!({"status": {"phase": "Failed"}});
        if let Err(e) = api
            .patch_status(name, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::debug!("pod gc: marking {key} Failed: {e}");
        }
    }
    if let Err(e) = api
        .delete(name, &DeleteParams::default().grace_period(0))
        .await
    {
        tracing::debug!("pod gc: deleting {key}: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, node: &str, terminating: bool) -> Pod {
        let mut v = json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"containers": [], "nodeName": node}});
        if terminating {
            v["metadata"]["deletionTimestamp"] = json!("2026-11-28T07:00:00Z");
        }
        serde_json::from_value(v).unwrap()
    }

    fn node(name: &str, ready: &str, taints: serde_json::Value) -> Node {
        serde_json::from_value(
            json!({"metadata": {"name": name}, "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": ready}]}}),
        )
        .unwrap()
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn orphans_wait_for_the_quarantine_and_a_confirming_get() {
        let a = node("a", "True", json!([]));
        let nodes: HashMap<String, &Node> = [("a".to_string(), &a)].into();
        let p1 = pod("on-a", "a", false);
        let p2 = pod("on-gone", "gone", false);
        let pods = vec![&p1, &p2];
        let q = Duration::from_secs(40);
        let mut missing = HashMap::new();
        let mut gone = HashSet::new();
        // First seen missing: nothing yet.
        let t0 = ts("2026-11-28T07:00:00Z");
        assert_eq!(
            plan(&pods, &nodes, &mut missing, &gone, t0, q),
            Plan::default()
        );
        // Within the quarantine: still nothing.
        let t1 = ts("2026-11-28T07:00:39Z");
        assert_eq!(
            plan(&pods, &nodes, &mut missing, &gone, t1, q),
            Plan::default()
        );
        // After it: confirm the node is really gone.
        let t2 = ts("2026-11-28T07:00:41Z");
        let p = plan(&pods, &nodes, &mut missing, &gone, t2, q);
        assert_eq!(p.confirm_missing, vec!["gone".to_string()]);
        assert!(p.delete.is_empty());
        gone.insert("gone".to_string());
        let p = plan(&pods, &nodes, &mut missing, &gone, t2, q);
        assert_eq!(
            p.delete,
            vec![Collect {
                pod: "default/on-gone".into(),
                reason: Reason::Orphaned
            }]
        );
    }

    #[test]
    fn a_node_that_comes_back_restarts_the_quarantine() {
        let a = node("a", "True", json!([]));
        let p1 = pod("p", "a", false);
        let pods = vec![&p1];
        let mut missing = HashMap::new();
        let gone = HashSet::new();
        let q = Duration::from_secs(40);
        let none: HashMap<String, &Node> = HashMap::new();
        plan(
            &pods,
            &none,
            &mut missing,
            &gone,
            ts("2026-11-28T07:00:00Z"),
            q,
        );
        assert!(missing.contains_key("a"));
        let nodes: HashMap<String, &Node> = [("a".to_string(), &a)].into();
        plan(
            &pods,
            &nodes,
            &mut missing,
            &gone,
            ts("2026-11-28T07:00:10Z"),
            q,
        );
        assert!(missing.is_empty(), "the node is back");
    }

    #[test]
    fn terminating_pods_go_only_from_not_ready_out_of_service_nodes() {
        let oos = json!([{"key": OUT_OF_SERVICE, "value": "nodeshutdown", "effect": "NoExecute"}]);
        let cases = [
            (
                "not ready, out of service, terminating",
                "False",
                oos.clone(),
                true,
                true,
            ),
            (
                "not ready, out of service, running",
                "False",
                oos.clone(),
                false,
                false,
            ),
            (
                "ready, out of service, terminating",
                "True",
                oos.clone(),
                true,
                false,
            ),
            (
                "unknown, no taint, terminating",
                "Unknown",
                json!([]),
                true,
                false,
            ),
            (
                "unknown, out of service, terminating",
                "Unknown",
                oos,
                true,
                true,
            ),
        ];
        for (name, ready, taints, terminating, collected) in cases {
            let n = node("n", ready, taints);
            let nodes: HashMap<String, &Node> = [("n".to_string(), &n)].into();
            let p = pod("p", "n", terminating);
            let got = plan(
                &[&p],
                &nodes,
                &mut HashMap::new(),
                &HashSet::new(),
                ts("2026-11-28T07:00:00Z"),
                Duration::from_secs(40),
            );
            let want = if collected {
                vec![Collect {
                    pod: "default/p".into(),
                    reason: Reason::OutOfService,
                }]
            } else {
                vec![]
            };
            assert_eq!(got.delete, want, "{name}");
        }
    }

    #[test]
    fn terminating_unscheduled_pods_are_collected() {
        let p = pod("p", "", true);
        let q = pod("q", "", false);
        let got = plan(
            &[&p, &q],
            &HashMap::new(),
            &mut HashMap::new(),
            &HashSet::new(),
            ts("2026-11-28T07:00:00Z"),
            Duration::from_secs(40),
        );
        assert_eq!(
            got.delete,
            vec![Collect {
                pod: "default/p".into(),
                reason: Reason::Unscheduled
            }]
        );
    }
}
