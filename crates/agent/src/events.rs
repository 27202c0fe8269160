//! Events about pods, as the kubelet records them: repeated events are
//! folded into one with a count, so `kubectl describe` shows `(x3 over 2m)`.

use jiff::Timestamp;
use k8s_openapi::api::core::v1::{Event, Pod};
use kube::api::{Api, Patch, PatchParams, PostParams};
use serde_json::json;
use std::collections::HashMap;
use std::sync::Mutex;

/// (pod uid, field path, reason, message): what makes two events the same.
type EventKey = (String, String, String, String);
/// (event name, namespace, count) of the event recorded for a key.
type Recorded = (String, String, i32);

/// Records events for one node.
pub struct Recorder {
    inner: std::sync::Arc<Inner>,
}

struct Inner {
    client: kube::Client,
    component: String,
    host: String,
    seen: Mutex<HashMap<EventKey, Recorded>>,
}

impl Recorder {
    /// A recorder reporting as `component` on `host`.
    pub fn new(client: kube::Client, component: &str, host: &str) -> Self {
        Self {
            inner: std::sync::Arc::new(Inner {
                client,
                component: component.into(),
                host: host.into(),
                seen: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// Records an event about a pod (or one of its containers, when
    /// `field_path` names it). Like Kubernetes' recorder it does not wait
    /// for the write: the event's name (pod name and a nanosecond stamp) is
    /// fixed now, so events still list in the order they happened.
    pub async fn pod(
        &self,
        pod: &Pod,
        field_path: Option<&str>,
        type_: &str,
        reason: &str,
        message: &str,
    ) {
        let ns = pod
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let name = pod.metadata.name.clone().unwrap_or_default();
        let uid = pod.metadata.uid.clone().unwrap_or_default();
        let key = (
            uid.clone(),
            field_path.unwrap_or("").to_string(),
            reason.to_string(),
            message.to_string(),
        );
        let now = Timestamp::now()
            .round(jiff::Unit::Second)
            .unwrap_or_else(|_| Timestamp::now())
            .to_string();
        let inner = self.inner.clone();
        // A repeat of an event already recorded raises its count.
        let previous = {
            let mut seen = inner.seen.lock().expect("recorder lock");
            let prev = seen.get(&key).cloned();
            if let Some((n, ns, count)) = &prev {
                seen.insert(key.clone(), (n.clone(), ns.clone(), count + 1));
            }
            prev
        };
        if let Some((ev_name, ev_ns, count)) = previous {
            tokio::spawn(async move {
                let api: Api<Event> = Api::namespaced(inner.client.clone(), &ev_ns);
                let patch = json!({"count": count + 1, "lastTimestamp": now});
                if let Err(e) = api
                    .patch(&ev_name, &PatchParams::default(), &Patch::Merge(patch))
                    .await
                {
                    tracing::debug!("counting event {ev_name}: {e}");
                }
            });
            return;
        }
        // Kubernetes names events after the pod and the time in nanoseconds, so they list in order.
        let ev_name = format!("{name}.{:x}", unique_nanos());
        let mut involved =
            json!({"kind": "Pod", "namespace": ns, "name": name, "uid": uid, "apiVersion": "v1"});
        if let Some(rv) = &pod.metadata.resource_version {
            involved["resourceVersion"] = json!(rv);
        }
        if let Some(fp) = field_path {
            involved["fieldPath"] = json!(fp);
        }
        let ev = json!({
            "metadata": {"name": ev_name, "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": type_,
            "source": {"component": inner.component, "host": inner.host},
            "reportingComponent": inner.component,
            "reportingInstance": inner.host,
            "count": 1,
            "firstTimestamp": now,
            "lastTimestamp": now,
        });
        let Ok(ev) = serde_json::from_value::<Event>(ev) else {
            return;
        };
        {
            let mut seen = inner.seen.lock().expect("recorder lock");
            if seen.len() > 4096 {
                seen.clear();
            }
            seen.insert(key, (ev_name, ns.clone(), 1));
        }
        let reason = reason.to_string();
        tokio::spawn(async move {
            let events: Api<Event> = Api::namespaced(inner.client.clone(), &ns);
            if let Err(e) = events.create(&PostParams::default(), &ev).await {
                tracing::debug!("recording event {reason}: {e}");
            }
        });
    }
}

/// Nanoseconds since the epoch, strictly increasing within this process.
fn unique_nanos() -> u128 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static LAST: AtomicU64 = AtomicU64::new(0);
    let now = Timestamp::now().as_nanosecond() as u64;
    let mut prev = LAST.load(Ordering::Relaxed);
    loop {
        let next = now.max(prev + 1);
        match LAST.compare_exchange(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return next as u128,
            Err(p) => prev = p,
        }
    }
}
