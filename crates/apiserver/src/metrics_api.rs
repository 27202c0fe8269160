//! The resource metrics API, `metrics.k8s.io/v1beta1`, served as
//! metrics-server serves it, so `kubectl top` and the HPA work unchanged.
//!
//! A scraper task asks every node for its cumulative usage
//! ([`crate::node::NodeProxy::resource_metrics`]) every `metric_resolution`
//! (15 s by default, metrics-server's `--metric-resolution`), keeps the
//! previous and the latest sample of each node and container, and answers
//! from them:
//! - CPU: the rate between the two samples, in nanocores (`"123456789n"`,
//!   Kubernetes' canonical quantity form);
//! - memory: the latest working set (`"2748180Ki"`);
//! - `timestamp`: the latest sample's time; `window`: the time between the
//!   two samples (`"15.012s"`).
//!
//! A node or container needs two samples before it has a rate: a new one, or
//! one whose CPU counter went down (it restarted), is left out until its next
//! sample. A pod is listed only when every container reported has a rate. A
//! node whose scrape fails drops out, with one log line until it recovers.
//! Beyond metrics-server: when a round brings a node or container its first
//! sample, the next round runs 2 s later instead of a full resolution later,
//! so `kubectl top` has numbers seconds after a pod starts.
//!
//! Nothing here is stored: the objects are built per request from memory,
//! and there is no watch.

use crate::Server;
use crate::error::{ApiError, ApiResult};
use crate::handlers::Filter;
use crate::node::{NodeTarget, ResourceMetrics, UsageSample};
use futures::StreamExt;
use serde_json::{Map, Value, json};
use skiff_api::catalog;
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The API group.
pub const GROUP: &str = "metrics.k8s.io";
/// The only version served.
pub const VERSION: &str = "v1beta1";
/// `metrics.k8s.io/v1beta1`.
pub const API_VERSION: &str = "metrics.k8s.io/v1beta1";
/// metrics-server's default `--metric-resolution`.
pub const DEFAULT_RESOLUTION: Duration = Duration::from_secs(15);
/// How soon a round follows one that brought first samples.
pub const EARLY_RESCRAPE: Duration = Duration::from_secs(2);
/// The longest one node's scrape may take (metrics-server's `--kubelet-request-timeout`).
const SCRAPE_TIMEOUT: Duration = Duration::from_secs(10);
/// How many nodes are scraped at once.
const MAX_CONCURRENT_SCRAPES: usize = 32;

/// One cumulative sample: CPU time in whole nanoseconds, as metrics-server keeps it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
    /// Cumulative CPU time, nanoseconds.
    pub cpu_nanos: u64,
    /// Working set, bytes.
    pub memory_bytes: u64,
}

impl From<&UsageSample> for Point {
    fn from(s: &UsageSample) -> Self {
        Point {
            timestamp_ms: s.timestamp_ms,
            cpu_nanos: (s.cpu_usage_seconds_total.max(0.0) * 1e9).round() as u64,
            memory_bytes: s.memory_working_set_bytes,
        }
    }
}

/// The previous and the latest sample of one node or container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Series {
    /// The sample before `last`, when the counter ran on between them.
    pub prev: Option<Point>,
    /// The latest sample.
    pub last: Point,
}

/// What metrics-server serves for one node or container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    /// CPU rate over the window, nanocores.
    pub nanocores: u64,
    /// Latest working set, bytes.
    pub memory_bytes: u64,
    /// The latest sample's time.
    pub timestamp_ms: i64,
    /// Time between the two samples.
    pub window_ms: i64,
}

/// Moves a series on by a new sample: a newer sample pushes the latest one
/// to `prev`; a counter that went down (a restart) starts over with no
/// `prev`; a sample no newer than the latest changes nothing.
pub fn advance(old: Option<&Series>, new: Point) -> Series {
    match old {
        None => Series {
            prev: None,
            last: new,
        },
        Some(s) if new.timestamp_ms <= s.last.timestamp_ms => *s,
        Some(s) if new.cpu_nanos < s.last.cpu_nanos => Series {
            prev: None,
            last: new,
        },
        Some(s) => Series {
            prev: Some(s.last),
            last: new,
        },
    }
}

/// The usage a series gives, when it has two samples in order.
pub fn usage(s: &Series) -> Option<Usage> {
    let prev = s.prev?;
    let window_ms = s.last.timestamp_ms - prev.timestamp_ms;
    if window_ms <= 0 || s.last.cpu_nanos < prev.cpu_nanos {
        return None;
    }
    let rate = (s.last.cpu_nanos - prev.cpu_nanos) as f64 / (window_ms as f64 / 1000.0);
    Some(Usage {
        nanocores: rate as u64,
        memory_bytes: s.last.memory_bytes,
        timestamp_ms: s.last.timestamp_ms,
        window_ms,
    })
}

/// A pod's key: namespace and name.
pub type PodKey = (String, String);

/// What the scraper holds for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeState {
    /// The node as a whole.
    pub node: Series,
    /// Each running container, by pod and container name.
    pub pods: BTreeMap<PodKey, BTreeMap<String, Series>>,
}

impl NodeState {
    /// Whether any series has a single sample (new, or restarted).
    pub fn has_fresh(&self) -> bool {
        self.node.prev.is_none()
            || self
                .pods
                .values()
                .flat_map(|c| c.values())
                .any(|s| s.prev.is_none())
    }
}

/// The state after a node's scrape: containers no longer reported are gone.
pub fn apply_scrape(old: Option<&NodeState>, scraped: &ResourceMetrics) -> NodeState {
    let mut pods: BTreeMap<PodKey, BTreeMap<String, Series>> = BTreeMap::new();
    for c in &scraped.containers {
        let key = (c.namespace.clone(), c.pod.clone());
        let before = old
            .and_then(|o| o.pods.get(&key))
            .and_then(|p| p.get(&c.container));
        let entry = pods.entry(key).or_default();
        if entry.contains_key(&c.container) {
            tracing::debug!(
                "metrics: duplicate sample for container {}/{}/{}",
                c.namespace,
                c.pod,
                c.container
            );
            continue;
        }
        entry.insert(c.container.clone(), advance(before, Point::from(&c.usage)));
    }
    NodeState {
        node: advance(old.map(|o| &o.node), Point::from(&scraped.node)),
        pods,
    }
}

/// A pod's usage: each container's, and the pod's timestamp and window
/// (those of its earliest container sample).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodUsage {
    /// Usage by container name, in name order.
    pub containers: Vec<(String, Usage)>,
    /// The earliest container sample's time.
    pub timestamp_ms: i64,
    /// That sample's window.
    pub window_ms: i64,
}

/// A pod's usage, only when every container reported has a rate.
pub fn pod_usage(containers: &BTreeMap<String, Series>) -> Option<PodUsage> {
    let mut out = Vec::with_capacity(containers.len());
    let mut earliest: Option<&Usage> = None;
    for (name, s) in containers {
        out.push((name.clone(), usage(s)?));
    }
    for (_, u) in &out {
        if earliest.is_none_or(|e| u.timestamp_ms < e.timestamp_ms) {
            earliest = Some(u);
        }
    }
    let (timestamp_ms, window_ms) = earliest.map(|e| (e.timestamp_ms, e.window_ms))?;
    Some(PodUsage {
        containers: out,
        timestamp_ms,
        window_ms,
    })
}

/// Kubernetes' canonical DecimalSI form of a nanocore count, as
/// metrics-server's `NewScaledQuantity(n, Nano)` prints it: `"123456789n"`,
/// `"250m"`, `"1"`, `"0"`.
pub fn cpu_quantity(nanocores: u64) -> String {
    if nanocores == 0 {
        return "0".into();
    }
    const SUFFIXES: [&str; 10] = ["n", "u", "m", "", "k", "M", "G", "T", "P", "E"];
    let mut v = nanocores;
    let mut i = 0;
    while v.is_multiple_of(1000) && i + 1 < SUFFIXES.len() {
        v /= 1000;
        i += 1;
    }
    format!("{v}{}", SUFFIXES[i])
}

/// Kubernetes' canonical BinarySI form of a byte count: `"2748180Ki"`,
/// `"1Gi"`, and plain (DecimalSI) for what 1024 does not divide or below 1024.
pub fn memory_quantity(bytes: u64) -> String {
    if bytes < 1024 {
        // Below 1024 Kubernetes switches to DecimalSI: 1000 prints as "1k".
        return if bytes == 1000 {
            "1k".into()
        } else {
            bytes.to_string()
        };
    }
    const SUFFIXES: [&str; 7] = ["", "Ki", "Mi", "Gi", "Ti", "Pi", "Ei"];
    let mut v = bytes;
    let mut i = 0;
    while v.is_multiple_of(1024) && i + 1 < SUFFIXES.len() {
        v /= 1024;
        i += 1;
    }
    format!("{v}{}", SUFFIXES[i])
}

/// Go's `time.Duration.String()` of a millisecond duration, as a
/// `metav1.Duration` serializes: `"15.012s"`, `"1m0.5s"`, `"500ms"`, `"0s"`.
pub fn go_duration(ms: i64) -> String {
    if ms == 0 {
        return "0s".into();
    }
    let sign = if ms < 0 { "-" } else { "" };
    let ms = ms.unsigned_abs();
    if ms < 1000 {
        return format!("{sign}{ms}ms");
    }
    let (h, rest) = (ms / 3_600_000, ms % 3_600_000);
    let (m, rest) = (rest / 60_000, rest % 60_000);
    let (s, frac) = (rest / 1000, rest % 1000);
    let mut secs = s.to_string();
    if frac > 0 {
        let f = format!("{frac:03}");
        secs.push('.');
        secs.push_str(f.trim_end_matches('0'));
    }
    match (h, m) {
        (0, 0) => format!("{sign}{secs}s"),
        (0, m) => format!("{sign}{m}m{secs}s"),
        (h, m) => format!("{sign}{h}h{m}m{secs}s"),
    }
}

/// A `metav1.Time`: RFC 3339 in whole seconds, UTC.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms.div_euclid(1000) * 1000)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// The scraper's memory: the latest state of every node that answered.
#[derive(Default)]
pub struct MetricsStore {
    nodes: RwLock<BTreeMap<String, NodeState>>,
    failing: Mutex<HashSet<String>>,
}

impl MetricsStore {
    /// Records a round's results: nodes that answered move on, nodes that
    /// failed or are gone drop out. Returns whether any node or container
    /// got its first sample (so an early round is worth it).
    pub fn record(&self, results: Vec<(String, Result<ResourceMetrics, ApiError>)>) -> bool {
        let mut fresh = false;
        let mut next = BTreeMap::new();
        let mut nodes = self.nodes.write().expect("metrics lock");
        let mut failing = self.failing.lock().expect("metrics lock");
        for (name, result) in results {
            match result {
                Ok(m) => {
                    if failing.remove(&name) {
                        tracing::info!("metrics: node {name} answers again");
                    }
                    let state = apply_scrape(nodes.get(&name), &m);
                    fresh |= state.has_fresh();
                    next.insert(name, state);
                }
                Err(e) => {
                    if failing.insert(name.clone()) {
                        tracing::warn!("metrics: scraping node {name} failed: {}", e.message);
                    }
                }
            }
        }
        *nodes = next;
        fresh
    }

    /// A node's usage, when it has a rate.
    pub fn node_usage(&self, node: &str) -> Option<Usage> {
        usage(&self.nodes.read().expect("metrics lock").get(node)?.node)
    }

    /// A pod's usage (see [`pod_usage`]), when every container has a rate.
    pub fn pod_usage(&self, namespace: &str, pod: &str) -> Option<PodUsage> {
        let key = (namespace.to_string(), pod.to_string());
        let nodes = self.nodes.read().expect("metrics lock");
        nodes
            .values()
            .find_map(|n| n.pods.get(&key))
            .and_then(pod_usage)
    }
}

fn nodes_info() -> &'static catalog::ResourceInfo {
    catalog::lookup("", "v1", "nodes").expect("nodes")
}

fn pods_info() -> &'static catalog::ResourceInfo {
    catalog::lookup("", "v1", "pods").expect("pods")
}

/// Scrapes every node once, concurrently (bounded, each with a timeout).
pub async fn scrape_once(server: &Arc<Server>) -> bool {
    let Ok((nodes, _)) = server.registry().list(nodes_info(), None, None).await else {
        return false;
    };
    let targets: Vec<NodeTarget> = nodes
        .iter()
        .map(|n| NodeTarget {
            name: skiff_api::meta::name(&n.value).to_string(),
            kubelet: crate::node::kubelet_endpoint(&n.value),
        })
        .collect();
    let timeout = SCRAPE_TIMEOUT.min(server.metric_resolution());
    let results: Vec<(String, Result<ResourceMetrics, ApiError>)> = futures::stream::iter(targets)
        .map(|t| {
            let proxy = server.node_proxy(&t.name);
            async move {
                let r = match tokio::time::timeout(timeout, proxy.resource_metrics(&t)).await {
                    Ok(r) => r,
                    Err(_) => Err(ApiError::unavailable(format!(
                        "no answer within {}",
                        go_duration(timeout.as_millis() as i64)
                    ))),
                };
                (t.name, r)
            }
        })
        .buffer_unordered(MAX_CONCURRENT_SCRAPES)
        .collect()
        .await;
    server.metrics().record(results)
}

/// Starts the scraper: a round every `metric_resolution`, and one
/// [`EARLY_RESCRAPE`] after a round that brought first samples.
pub fn spawn_scraper(server: Arc<Server>, mut shutdown: tokio::sync::watch::Receiver<bool>) {
    tokio::spawn(async move {
        let resolution = server.metric_resolution();
        let mut early_done = false;
        loop {
            let fresh = scrape_once(&server).await;
            let wait = if fresh && !early_done {
                early_done = true;
                EARLY_RESCRAPE.min(resolution)
            } else {
                early_done = false;
                resolution
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
        }
    });
}

/// The `metrics.k8s.io` entry of `/apis` (APIGroupList) and `/apis/metrics.k8s.io`.
pub fn api_group() -> Value {
    let gv = json!({"groupVersion": API_VERSION, "version": VERSION});
    json!({"name": GROUP, "versions": [gv.clone()], "preferredVersion": gv})
}

/// `/apis/metrics.k8s.io/v1beta1`: the legacy APIResourceList.
pub fn resource_list() -> Value {
    json!({
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": API_VERSION,
        "resources": [
            {"name": "nodes", "singularName": "node", "namespaced": false, "kind": "NodeMetrics", "verbs": ["get", "list"]},
            {"name": "pods", "singularName": "pod", "namespaced": true, "kind": "PodMetrics", "verbs": ["get", "list"]},
        ],
    })
}

/// The `metrics.k8s.io` item of the aggregated (apidiscovery.k8s.io/v2) `/apis` document.
pub fn aggregated_item() -> Value {
    let res = |resource: &str, singular: &str, kind: &str, scope: &str| {
        json!({
            "resource": resource,
            "responseKind": {"group": GROUP, "version": VERSION, "kind": kind},
            "scope": scope,
            "singularResource": singular,
            "verbs": ["get", "list"],
        })
    };
    json!({
        "metadata": {"name": GROUP, "creationTimestamp": null},
        "versions": [{
            "version": VERSION,
            "resources": [
                res("nodes", "node", "NodeMetrics", "Cluster"),
                res("pods", "pod", "PodMetrics", "Namespaced"),
            ],
            "freshness": "Current",
        }],
    })
}

fn not_found(resource: &str, name: &str) -> ApiError {
    ApiError {
        code: 404,
        reason: "NotFound",
        message: format!("{resource}.{GROUP} \"{name}\" not found"),
        details: Some(json!({"name": name, "group": GROUP, "kind": resource})),
    }
}

/// A list's `labelSelector` and `fieldSelector`, as for any list, with
/// metrics-server's limits: fields of the object's metadata only, no watch.
fn selectors(query: Option<&str>, r: &catalog::ResourceInfo) -> ApiResult<Filter> {
    let watch = url::form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .any(|(k, v)| k == "watch" && (v == "true" || v == "1"));
    if watch {
        return Err(ApiError::method_not_allowed());
    }
    let filter = Filter::from_query(r, query)?;
    for t in filter.fields.iter().flat_map(|f| f.terms()) {
        if !matches!(t.field.as_str(), "metadata.name" | "metadata.namespace") {
            return Err(ApiError::bad_request(format!(
                "field label not supported: {}",
                t.field
            )));
        }
    }
    Ok(filter)
}

fn metadata(obj: &Value, namespaced: bool, now: &str) -> Value {
    let mut md = Map::new();
    md.insert("name".into(), obj["metadata"]["name"].clone());
    if namespaced {
        md.insert("namespace".into(), obj["metadata"]["namespace"].clone());
    }
    md.insert("creationTimestamp".into(), json!(now));
    if let Some(l) = obj["metadata"]["labels"]
        .as_object()
        .filter(|l| !l.is_empty())
    {
        md.insert("labels".into(), Value::Object(l.clone()));
    }
    Value::Object(md)
}

fn usage_json(u: &Usage) -> Value {
    json!({"cpu": cpu_quantity(u.nanocores), "memory": memory_quantity(u.memory_bytes)})
}

/// The NodeMetrics of a Node, when it has a rate (without kind and apiVersion, as list items).
pub fn node_metrics(store: &MetricsStore, node: &Value, now: &str) -> Option<Value> {
    let u = store.node_usage(skiff_api::meta::name(node))?;
    Some(json!({
        "metadata": metadata(node, false, now),
        "timestamp": rfc3339(u.timestamp_ms),
        "window": go_duration(u.window_ms),
        "usage": usage_json(&u),
    }))
}

/// The PodMetrics of a Pod, when all its containers have rates.
pub fn pod_metrics(store: &MetricsStore, pod: &Value, now: &str) -> Option<Value> {
    let p = store.pod_usage(skiff_api::meta::namespace(pod), skiff_api::meta::name(pod))?;
    let cs: Vec<Value> = p
        .containers
        .iter()
        .map(|(name, u)| json!({"name": name, "usage": usage_json(u)}))
        .collect();
    Some(json!({
        "metadata": metadata(pod, true, now),
        "timestamp": rfc3339(p.timestamp_ms),
        "window": go_duration(p.window_ms),
        "containers": cs,
    }))
}

fn with_kind(mut v: Value, kind: &str) -> Value {
    let mut out = Map::new();
    out.insert("kind".into(), json!(kind));
    out.insert("apiVersion".into(), json!(API_VERSION));
    if let Some(m) = v.as_object_mut() {
        out.append(m);
    }
    Value::Object(out)
}

fn list(kind: &str, items: Vec<Value>) -> Value {
    json!({"kind": kind, "apiVersion": API_VERSION, "metadata": {}, "items": items})
}

/// Answers a GET under `/apis/metrics.k8s.io/v1beta1/` (`rest` is the path
/// after it): NodeMetrics and PodMetrics, one or a list.
pub async fn get(server: &Server, rest: &[&str], query: Option<&str>) -> ApiResult<Value> {
    let now = rfc3339(jiff::Timestamp::now().as_millisecond());
    let store = server.metrics();
    let reg = server.registry();
    match rest {
        ["nodes"] => {
            let sel = selectors(query, nodes_info())?;
            let (nodes, _) = reg.list(nodes_info(), None, None).await?;
            let mut items: Vec<(String, Value)> = nodes
                .iter()
                .filter(|n| sel.matches(nodes_info(), &n.value))
                .filter_map(|n| {
                    let m = node_metrics(store, &n.value, &now)?;
                    Some((skiff_api::meta::name(&n.value).to_string(), m))
                })
                .collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(list(
                "NodeMetricsList",
                items.into_iter().map(|(_, v)| v).collect(),
            ))
        }
        ["nodes", name] => {
            let node = reg.get(nodes_info(), None, name).await?;
            node_metrics(store, &node.value, &now)
                .map(|v| with_kind(v, "NodeMetrics"))
                .ok_or_else(|| not_found("nodemetrics", name))
        }
        ["pods"] | ["namespaces", _, "pods"] => {
            let ns = match rest {
                ["namespaces", ns, _] => Some(*ns),
                _ => None,
            };
            let sel = selectors(query, pods_info())?;
            let (pods, _) = reg.list(pods_info(), ns, None).await?;
            let mut items: Vec<(PodKey, Value)> = pods
                .iter()
                .filter(|p| sel.matches(pods_info(), &p.value))
                .filter_map(|p| {
                    let m = pod_metrics(store, &p.value, &now)?;
                    let key = (
                        skiff_api::meta::namespace(&p.value).to_string(),
                        skiff_api::meta::name(&p.value).to_string(),
                    );
                    Some((key, m))
                })
                .collect();
            items.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(list(
                "PodMetricsList",
                items.into_iter().map(|(_, v)| v).collect(),
            ))
        }
        ["namespaces", ns, "pods", name] => {
            let pod = reg.get(pods_info(), Some(ns), name).await?;
            pod_metrics(store, &pod.value, &now)
                .map(|v| with_kind(v, "PodMetrics"))
                // metrics-server names the pod with its namespace here.
                .ok_or_else(|| not_found("podmetrics", &format!("{ns}/{name}")))
        }
        _ => Err(ApiError::no_route()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::node::ContainerSample;

    fn pt(ts: i64, cpu_ms: u64, mem: u64) -> Point {
        Point {
            timestamp_ms: ts,
            cpu_nanos: cpu_ms * 1_000_000,
            memory_bytes: mem,
        }
    }

    #[test]
    fn advancing_a_series() {
        let s1 = advance(None, pt(1_000, 500, 10));
        assert_eq!(s1.prev, None, "a first sample has no rate");
        let cases = [
            (
                "newer sample moves on",
                pt(16_000, 800, 20),
                Some(pt(1_000, 500, 10)),
                pt(16_000, 800, 20),
            ),
            (
                "same timestamp keeps",
                pt(1_000, 900, 20),
                None,
                pt(1_000, 500, 10),
            ),
            (
                "older sample keeps",
                pt(500, 100, 20),
                None,
                pt(1_000, 500, 10),
            ),
            (
                "counter went down: restarted",
                pt(16_000, 10, 30),
                None,
                pt(16_000, 10, 30),
            ),
        ];
        for (what, new, prev, last) in cases {
            let s = advance(Some(&s1), new);
            assert_eq!((s.prev, s.last), (prev, last), "{what}");
        }
    }

    #[test]
    fn usage_is_the_rate_over_the_window() {
        let series = |prev: Option<Point>, last: Point| Series { prev, last };
        type Case<'a> = (&'a str, Series, Option<(&'a str, &'a str, &'a str)>);
        let cases: &[Case] = &[
            ("one sample", series(None, pt(1_000, 5, 4096)), None),
            (
                "quarter core over 15.012 s",
                series(
                    Some(pt(0, 1_000, 1)),
                    pt(15_012, 1_000 + 3_753, 2_814_136_320),
                ),
                Some(("250m", "2748180Ki", "15.012s")),
            ),
            (
                "uneven nanocores",
                series(
                    Some(Point {
                        timestamp_ms: 0,
                        cpu_nanos: 7,
                        memory_bytes: 0,
                    }),
                    Point {
                        timestamp_ms: 10_000,
                        cpu_nanos: 7 + 1_234_567_891,
                        memory_bytes: 1_048_576,
                    },
                ),
                Some(("123456789n", "1Mi", "10s")),
            ),
            (
                "idle",
                series(Some(pt(0, 9, 0)), pt(60_500, 9, 1_000)),
                Some(("0", "1k", "1m0.5s")),
            ),
            ("zero window", series(Some(pt(5, 1, 0)), pt(5, 2, 0)), None),
            (
                "counter went down",
                series(Some(pt(0, 10, 0)), pt(5_000, 2, 0)),
                None,
            ),
        ];
        for (what, s, want) in cases {
            let got = usage(s).map(|u| {
                (
                    cpu_quantity(u.nanocores),
                    memory_quantity(u.memory_bytes),
                    go_duration(u.window_ms),
                )
            });
            let want = want.map(|(c, m, w)| (c.to_string(), m.to_string(), w.to_string()));
            assert_eq!(got, want, "{what}");
        }
    }

    #[test]
    fn quantities_print_as_kubernetes_prints_them() {
        for (n, want) in [
            (0, "0"),
            (1, "1n"),
            (1_500_000, "1500u"),
            (250_000_000, "250m"),
            (1_000_000_000, "1"),
            (2_500_000_000, "2500m"),
            (329_087_452, "329087452n"),
        ] {
            assert_eq!(cpu_quantity(n), want, "cpu {n}");
        }
        for (b, want) in [
            (0, "0"),
            (512, "512"),
            (1023, "1023"),
            (1024, "1Ki"),
            (1025, "1025"),
            (2_814_136_320, "2748180Ki"),
            (7 * 1024 * 1024, "7Mi"),
            (1 << 30, "1Gi"),
        ] {
            assert_eq!(memory_quantity(b), want, "memory {b}");
        }
        for (ms, want) in [
            (0, "0s"),
            (500, "500ms"),
            (15_000, "15s"),
            (15_012, "15.012s"),
            (20_064, "20.064s"),
            (90_100, "1m30.1s"),
            (3_600_000, "1h0m0s"),
        ] {
            assert_eq!(go_duration(ms), want, "duration {ms}");
        }
        assert_eq!(rfc3339(1_700_000_000_999), "2023-11-14T22:13:20Z");
    }

    fn sample(ts: i64, cpu: f64, mem: u64) -> UsageSample {
        UsageSample {
            timestamp_ms: ts,
            cpu_usage_seconds_total: cpu,
            memory_working_set_bytes: mem,
        }
    }

    fn container(pod: &str, name: &str, s: UsageSample) -> ContainerSample {
        ContainerSample {
            namespace: "default".into(),
            pod: pod.into(),
            container: name.into(),
            usage: s,
        }
    }

    #[test]
    fn pods_need_every_container_and_nodes_drop_out() {
        let store = MetricsStore::default();
        let round = |ts: i64, sidecar: bool| {
            let mut containers = vec![container(
                "web",
                "app",
                sample(ts, ts as f64 / 4000.0, 8192),
            )];
            if sidecar {
                containers.push(container("web", "log", sample(ts, 1.0, 4096)));
            }
            ResourceMetrics {
                node: sample(ts, ts as f64 / 1000.0, 1 << 30),
                containers,
            }
        };
        assert!(
            store.record(vec![("n1".into(), Ok(round(10_000, false)))]),
            "first samples are fresh"
        );
        assert_eq!(store.node_usage("n1"), None);
        assert_eq!(store.pod_usage("default", "web"), None);

        assert!(!store.record(vec![("n1".into(), Ok(round(20_000, false)))]));
        let n = store.node_usage("n1").unwrap();
        assert_eq!(
            (cpu_quantity(n.nanocores), n.window_ms),
            ("1".to_string(), 10_000)
        );
        let p = store.pod_usage("default", "web").unwrap();
        assert_eq!(
            (p.containers.len(), p.timestamp_ms, p.window_ms),
            (1, 20_000, 10_000)
        );
        assert_eq!(cpu_quantity(p.containers[0].1.nanocores), "250m");

        // A new sidecar: the pod waits until it has a rate too.
        assert!(store.record(vec![("n1".into(), Ok(round(30_000, true)))]));
        assert_eq!(store.pod_usage("default", "web"), None);
        assert!(!store.record(vec![("n1".into(), Ok(round(40_000, true)))]));
        let cs = store.pod_usage("default", "web").unwrap().containers;
        let names: Vec<&str> = cs.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["app", "log"]);
        assert_eq!(cpu_quantity(cs[1].1.nanocores), "0");

        // A failed scrape drops the node and its pods; it comes back with two samples.
        store.record(vec![("n1".into(), Err(ApiError::unavailable("down")))]);
        assert_eq!(store.node_usage("n1"), None);
        assert_eq!(store.pod_usage("default", "web"), None);
        store.record(vec![("n1".into(), Ok(round(50_000, true)))]);
        assert_eq!(store.node_usage("n1"), None);
        store.record(vec![("n1".into(), Ok(round(60_000, true)))]);
        assert!(store.node_usage("n1").is_some());
    }

    #[test]
    fn pod_timestamp_is_its_earliest_container_sample() {
        let mut cs = BTreeMap::new();
        cs.insert(
            "a".to_string(),
            Series {
                prev: Some(pt(0, 0, 0)),
                last: pt(15_000, 0, 0),
            },
        );
        cs.insert(
            "b".to_string(),
            Series {
                prev: Some(pt(2_000, 0, 0)),
                last: pt(14_000, 0, 0),
            },
        );
        let p = pod_usage(&cs).unwrap();
        assert_eq!((p.timestamp_ms, p.window_ms), (14_000, 12_000));
    }
}
