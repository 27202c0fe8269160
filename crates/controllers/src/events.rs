//! Recording core/v1 Events, as client-go's event recorder writes them.

use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, PostParams};
use serde_json::json;

/// What an Event is about.
pub(crate) struct Involved<'a> {
    pub(crate) kind: &'a str,
    pub(crate) api_version: &'a str,
    pub(crate) namespace: &'a str,
    pub(crate) name: &'a str,
    pub(crate) uid: Option<&'a str>,
}

/// Writes one Event (best effort: a failure is only logged).
pub(crate) async fn record(
    client: &kube::Client,
    component: &str,
    about: &Involved<'_>,
    type_: &str,
    reason: &str,
    message: &str,
) {
    let ns = if about.namespace.is_empty() {
        "default"
    } else {
        about.namespace
    };
    let now = crate::now_rounded().to_string();
    let ev = json!({
        "metadata": {"name": format!("{}.{:x}", about.name, jiff::Timestamp::now().as_nanosecond()), "namespace": ns},
        "involvedObject": {"kind": about.kind, "namespace": about.namespace, "name": about.name,
                           "uid": about.uid, "apiVersion": about.api_version},
        "reason": reason, "message": message, "type": type_,
        "source": {"component": component},
        "reportingComponent": component,
        "count": 1, "firstTimestamp": now, "lastTimestamp": now,
    });
    let Ok(ev) = serde_json::from_value::<Event>(ev) else {
        return;
    };
    if let Err(e) = Api::<Event>::namespaced(client.clone(), ns)
        .create(&PostParams::default(), &ev)
        .await
    {
        tracing::debug!("recording event {reason}: {e}");
    }
}
