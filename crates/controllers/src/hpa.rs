//! The HorizontalPodAutoscaler controller (kube-controller-manager's
//! `horizontalpodautoscaling`) for autoscaling/v2 Resource and
//! ContainerResource metrics.
//!
//! Every sync period (`--horizontal-pod-autoscaler-sync-period`, 15 s) each
//! HPA's target is read through its scale subresource
//! (`/apis/GROUP/VERSION/namespaces/NS/RESOURCE/NAME/scale`, so Deployments,
//! ReplicaSets and StatefulSets alike), the pods of the Scale's
//! `status.selector` and their `metrics.k8s.io/v1beta1` PodMetrics are handed
//! to [`plan`], and the plan is carried out: the Scale's `spec.replicas`
//! written, `SuccessfulRescale`/failure Events recorded, the status written
//! when it changed.
//!
//! The replica calculation is Kubernetes': per metric `ceil(usageRatio ×
//! readyPods)` within a tolerance band (0.1), pods being deleted or Failed
//! ignored, Pending pods and CPU samples of pods that are not ready yet (within
//! the CPU initialisation period, 5 min, or never ready within the initial
//! readiness delay, 30 s) left out, pods without metrics counted at 0 % of
//! their request on a scale-up and at 100 % (or the target, if higher) on a
//! scale-down, unready pods at 0 % on a scale-up, the ratio re-checked after
//! that; the largest proposal of all metrics wins. Without `spec.behavior` the
//! recommendation is stabilised over the downscale window (5 min) and a
//! scale-up limited to `max(2 × current, 4)`; with it, the stabilisation
//! windows and Pods/Percent policies (selectPolicy Max/Min/Disabled) of
//! `scaleUp` and `scaleDown` apply, over the controller's history of
//! recommendations and scale events.
//!
//! # Beyond Kubernetes
//!
//! - Rollout surge (kubernetes#72775): a metric's proposal never moves against
//!   its usage ratio. With usage below target the proposal is at most the
//!   Scale's `spec.replicas`, with usage above target at least that. Kubernetes
//!   applies this only when it re-checks the ratio for missing or unready pods;
//!   on its plain path `ceil(ratio × readyPods)` counts the surge pods of a
//!   rolling update (more ready pods than `spec.replicas`), so usage below
//!   target can still raise the count, and the raised count surges again.
//! - Crashing pods (kubernetes#87199): a pod whose container is crash-looping
//!   (waiting with reason `CrashLoopBackOff`, or restarted and not Ready) is
//!   treated as unready for every resource, not only cpu: its sample is left
//!   out, and a metric's scale-up proposal is held at the current count while
//!   any pod of the target is crash-looping, since the pods it would add run
//!   the same failing template. Kubernetes keeps adding pods that crash, up to
//!   `maxReplicas`.

use crate::cache::Cache;
use crate::events::{Involved, record};
use futures::StreamExt;
use futures::future::BoxFuture;
use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::autoscaling::v1::Scale;
use k8s_openapi::api::autoscaling::v2::{
    ContainerResourceMetricStatus, HPAScalingPolicy, HPAScalingRules, HorizontalPodAutoscaler,
    HorizontalPodAutoscalerCondition, HorizontalPodAutoscalerStatus, MetricStatus,
    MetricValueStatus, ResourceMetricStatus,
};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::api::{Api, ListParams, PostParams};
use serde::{Deserialize, Serialize};
use skiff_api::selector::LabelSelector;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// The component name on Events, as kube-controller-manager's.
pub const COMPONENT: &str = "horizontal-pod-autoscaler";

/// Settings of the HPA controller (`skiff server` flags).
#[derive(Debug, Clone)]
pub struct Options {
    /// `--horizontal-pod-autoscaler-sync-period` (15 s).
    pub sync_period: Duration,
    /// `--horizontal-pod-autoscaler-tolerance` (0.1): the band around a usage
    /// ratio of 1 in which nothing is scaled.
    pub tolerance: f64,
    /// `--horizontal-pod-autoscaler-cpu-initialization-period` (5 min).
    pub cpu_initialization_period: Duration,
    /// `--horizontal-pod-autoscaler-initial-readiness-delay` (30 s).
    pub initial_readiness_delay: Duration,
    /// `--horizontal-pod-autoscaler-downscale-stabilization` (5 min).
    pub downscale_stabilization: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            sync_period: Duration::from_secs(15),
            tolerance: 0.1,
            cpu_initialization_period: Duration::from_secs(300),
            initial_readiness_delay: Duration::from_secs(30),
            downscale_stabilization: Duration::from_secs(300),
        }
    }
}

// ---------------------------------------------------------------- metrics API

/// A `metrics.k8s.io/v1beta1` PodMetrics (as metrics-server serves it).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PodMetrics {
    /// The pod's name and namespace.
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// When the sample was taken (the end of its window).
    pub timestamp: Time,
    /// The window the usage is averaged over (a Go duration, e.g. `15s`).
    #[serde(default)]
    pub window: String,
    /// Usage per container.
    #[serde(default)]
    pub containers: Vec<ContainerMetrics>,
}

/// One container's usage in a [`PodMetrics`].
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
pub struct ContainerMetrics {
    /// The container's name.
    pub name: String,
    /// `cpu` and `memory` usage.
    #[serde(default)]
    pub usage: BTreeMap<String, Quantity>,
}

#[derive(Deserialize)]
struct PodMetricsList {
    #[serde(default)]
    items: Vec<PodMetrics>,
}

/// Where the controller reads pod metrics from.
pub trait MetricsClient: Send + Sync + 'static {
    /// The PodMetrics of the pods in `namespace` matching `selector` (a label
    /// selector string), or the error that kept them from being read.
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>>;
}

/// The resource metrics API through the API server.
pub struct ApiMetrics(pub kube::Client);

impl MetricsClient for ApiMetrics {
    fn pod_metrics<'a>(
        &'a self,
        namespace: &'a str,
        selector: &'a str,
    ) -> BoxFuture<'a, Result<Vec<PodMetrics>, String>> {
        Box::pin(async move {
            let req = kube::core::Request::new(format!(
                "/apis/metrics.k8s.io/v1beta1/namespaces/{namespace}/pods"
            ))
            .list(&ListParams::default().labels(selector))
            .map_err(|e| e.to_string())?;
            let list: PodMetricsList = self.0.request(req).await.map_err(|e| e.to_string())?;
            Ok(list.items)
        })
    }
}

/// A Go duration (`15s`, `1m0s`, `500ms`, `1.5s`) in milliseconds.
fn go_duration_ms(s: &str) -> Option<i64> {
    let mut total = 0f64;
    let mut rest = s.trim();
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let v: f64 = rest[..n].parse().ok()?;
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let ms = match &rest[..u] {
            "h" => 3_600_000.0,
            "m" => 60_000.0,
            "s" => 1000.0,
            "ms" => 1.0,
            "us" | "µs" => 0.001,
            "ns" => 0.000_001,
            _ => return None,
        };
        total += v * ms;
        rest = &rest[u..];
    }
    Some(total as i64)
}

/// A quantity's `MilliValue()` (rounded up), or None when it does not parse.
pub fn milli_value(q: &Quantity) -> Option<i64> {
    let n = skiff_api::validation::parse_quantity(&q.0).ok()?.nanos;
    Some(((n + 999_999).div_euclid(1_000_000)) as i64)
}

/// A milli-value as `resource.NewMilliQuantity(v, DecimalSI).String()` writes it.
pub fn milli_quantity(v: i64) -> Quantity {
    if v == 0 {
        return Quantity("0".into());
    }
    let (mut m, mut exp) = (v, -3);
    while m % 1000 == 0 && exp < 18 {
        m /= 1000;
        exp += 3;
    }
    let suffix = match exp {
        -3 => "m",
        0 => "",
        3 => "k",
        6 => "M",
        9 => "G",
        12 => "T",
        15 => "P",
        _ => "E",
    };
    Quantity(format!("{m}{suffix}"))
}

// ---------------------------------------------------------------- history

/// A recommendation the controller made, kept for stabilisation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    /// The replicas recommended (before stabilisation and limits).
    pub replicas: i32,
    /// When.
    pub at: Timestamp,
}

/// A rescale the controller carried out, kept for the behavior policies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScaleEvent {
    /// Pods added (scale-up list) or removed (scale-down list).
    pub change: i32,
    /// When.
    pub at: Timestamp,
    /// Older than the longest policy period: its slot may be reused.
    pub outdated: bool,
}

/// What the controller remembers of one HPA between syncs (in memory, as
/// Kubernetes keeps it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    /// Recommendations of the recent past.
    pub recommendations: Vec<Recommendation>,
    /// Scale-ups of the recent past.
    pub scale_up: Vec<ScaleEvent>,
    /// Scale-downs of the recent past.
    pub scale_down: Vec<ScaleEvent>,
}

impl History {
    /// Records the recommendation `replicas` made at `now`, in the slot of an
    /// outdated one (`old`) when there is one.
    fn store_recommendation(&mut self, old: Option<usize>, replicas: i32, now: Timestamp) {
        let rec = Recommendation { replicas, at: now };
        match old {
            Some(i) => self.recommendations[i] = rec,
            None => self.recommendations.push(rec),
        }
    }

    /// Records a rescale from `prev` to `new` (only for HPAs with a
    /// `behavior`, the only ones whose policies read it), reusing an outdated slot.
    pub fn store_scale_event(
        &mut self,
        rules: Option<&Behavior>,
        prev: i32,
        new: i32,
        now: Timestamp,
    ) {
        let Some(b) = rules else { return };
        let (list, rules, change) = if new > prev {
            (&mut self.scale_up, &b.up, new - prev)
        } else {
            (&mut self.scale_down, &b.down, prev - new)
        };
        let longest = rules.policies.iter().map(|p| p.period_seconds).max();
        let cutoff = now - secs(longest.unwrap_or(0));
        for e in list.iter_mut() {
            if e.at < cutoff {
                e.outdated = true;
            }
        }
        let ev = ScaleEvent {
            change,
            at: now,
            outdated: false,
        };
        match list.iter().rposition(|e| e.outdated) {
            Some(i) => list[i] = ev,
            None => list.push(ev),
        }
    }
}

fn secs(s: i32) -> SignedDuration {
    SignedDuration::from_secs(i64::from(s))
}

fn dur(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

// ---------------------------------------------------------------- behavior

/// One direction's scaling rules with the defaults filled in.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// `stabilizationWindowSeconds`.
    pub window: i32,
    /// `selectPolicy`: `Max`, `Min` or `Disabled`.
    pub select: String,
    /// The policies.
    pub policies: Vec<HPAScalingPolicy>,
}

/// `spec.behavior` with Kubernetes' defaults filled in (`GenerateHPAScaleUpRules`,
/// `GenerateHPAScaleDownRules`, the downscale window from the flag).
#[derive(Debug, Clone, PartialEq)]
pub struct Behavior {
    /// scaleUp.
    pub up: Rules,
    /// scaleDown.
    pub down: Rules,
}

fn policy(type_: &str, value: i32, period_seconds: i32) -> HPAScalingPolicy {
    HPAScalingPolicy {
        type_: type_.into(),
        value,
        period_seconds,
    }
}

fn rules(r: Option<&HPAScalingRules>, window: i32, policies: Vec<HPAScalingPolicy>) -> Rules {
    Rules {
        window: r
            .and_then(|r| r.stabilization_window_seconds)
            .unwrap_or(window),
        select: r
            .and_then(|r| r.select_policy.clone())
            .unwrap_or_else(|| "Max".into()),
        policies: r
            .and_then(|r| r.policies.clone())
            .filter(|p| !p.is_empty())
            .unwrap_or(policies),
    }
}

/// The HPA's behavior with defaults, or None when it has none (the legacy path).
pub fn behavior(hpa: &HorizontalPodAutoscaler, opts: &Options) -> Option<Behavior> {
    let b = hpa.spec.as_ref()?.behavior.as_ref()?;
    Some(Behavior {
        up: rules(
            b.scale_up.as_ref(),
            0,
            vec![policy("Pods", 4, 15), policy("Percent", 100, 15)],
        ),
        down: rules(
            b.scale_down.as_ref(),
            opts.downscale_stabilization.as_secs() as i32,
            vec![policy("Percent", 100, 15)],
        ),
    })
}

fn change_in_period(period: i32, events: &[ScaleEvent], now: Timestamp) -> i32 {
    let cutoff = now - secs(period);
    events
        .iter()
        .filter(|e| e.at > cutoff)
        .map(|e| e.change)
        .sum()
}

/// The most replicas the scale-up policies allow now.
pub fn scale_up_limit(current: i32, h: &History, r: &Rules, now: Timestamp) -> i32 {
    if r.select == "Disabled" {
        return current;
    }
    let min = r.select == "Min";
    let mut result = if min { i32::MAX } else { i32::MIN };
    for p in &r.policies {
        let start = current - change_in_period(p.period_seconds, &h.scale_up, now)
            + change_in_period(p.period_seconds, &h.scale_down, now);
        let proposed = if p.type_ == "Pods" {
            start + p.value
        } else {
            (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
        };
        result = if min {
            result.min(proposed)
        } else {
            result.max(proposed)
        };
    }
    result
}

/// The fewest replicas the scale-down policies allow now.
pub fn scale_down_limit(current: i32, h: &History, r: &Rules, now: Timestamp) -> i32 {
    if r.select == "Disabled" {
        return current;
    }
    let min = r.select == "Min";
    let mut result = if min { i32::MIN } else { i32::MAX };
    for p in &r.policies {
        let start = current - change_in_period(p.period_seconds, &h.scale_up, now)
            + change_in_period(p.period_seconds, &h.scale_down, now);
        let proposed = if p.type_ == "Pods" {
            start - p.value
        } else {
            (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32
        };
        result = if min {
            result.max(proposed)
        } else {
            result.min(proposed)
        };
    }
    result
}

// ---------------------------------------------------------------- conditions

/// Sets a condition as Kubernetes' `setCondition`: the transition time moves
/// only when the status changes.
pub fn set_condition(
    list: &mut Vec<HorizontalPodAutoscalerCondition>,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: Timestamp,
) {
    let status = if status { "True" } else { "False" };
    let i = match list.iter().position(|c| c.type_ == type_) {
        Some(i) => i,
        None => {
            list.push(HorizontalPodAutoscalerCondition {
                type_: type_.into(),
                ..Default::default()
            });
            list.len() - 1
        }
    };
    let c = &mut list[i];
    if c.status != status {
        c.last_transition_time = Some(Time(now));
    }
    c.status = status.into();
    c.reason = Some(reason.into());
    c.message = Some(message.into());
}

// ---------------------------------------------------------------- replica calculation

/// One pod's usage of the metric's resource, in milli-units.
#[derive(Debug, Clone, Copy)]
struct Sample {
    value: i64,
    at: Timestamp,
    window_ms: i64,
}

fn condition<'a>(
    pod: &'a Pod,
    type_: &str,
) -> Option<&'a k8s_openapi::api::core::v1::PodCondition> {
    pod.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
}

/// Whether a container of the pod is crash-looping (see the module notes).
pub fn crash_looping(pod: &Pod) -> bool {
    let ready = condition(pod, "Ready").is_some_and(|c| c.status == "True");
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .is_some_and(|cs| {
            cs.iter().any(|c| {
                let waiting = c
                    .state
                    .as_ref()
                    .and_then(|s| s.waiting.as_ref())
                    .and_then(|w| w.reason.as_deref());
                waiting == Some("CrashLoopBackOff") || (c.restart_count > 0 && !ready)
            })
        })
}

/// Pods sorted as Kubernetes' `groupPods` sorts them.
#[derive(Debug, Default)]
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
    crashing: usize,
}

fn group_pods(
    pods: &[&Pod],
    samples: &BTreeMap<String, Sample>,
    resource: &str,
    opts: &Options,
    now: Timestamp,
) -> Groups {
    let mut g = Groups::default();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
        if pod.metadata.deletion_timestamp.is_some() || phase == Some("Failed") {
            g.ignored.insert(name);
            continue;
        }
        if phase == Some("Pending") {
            g.unready.insert(name);
            continue;
        }
        if crash_looping(pod) {
            g.crashing += 1;
            g.unready.insert(name);
            continue;
        }
        let Some(sample) = samples.get(&name) else {
            g.missing.insert(name);
            continue;
        };
        if resource == "cpu" {
            let ready = condition(pod, "Ready");
            let start = pod.status.as_ref().and_then(|s| s.start_time.as_ref());
            let unready = match (ready, start) {
                (Some(c), Some(start)) => {
                    let changed = c.last_transition_time.as_ref().map(|t| t.0);
                    if start.0 + dur(opts.cpu_initialization_period) > now {
                        c.status == "False"
                            || changed.is_some_and(|t| {
                                sample.at < t + SignedDuration::from_millis(sample.window_ms)
                            })
                    } else {
                        c.status == "False"
                            && changed
                                .is_some_and(|t| start.0 + dur(opts.initial_readiness_delay) > t)
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(name);
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// Per-pod usage from the metrics API (`getPodMetrics`/`getContainerMetrics`):
/// a pod missing the resource in any (chosen) container has no sample.
fn samples(
    metrics: &[PodMetrics],
    resource: &str,
    container: Option<&str>,
) -> BTreeMap<String, Sample> {
    let mut out = BTreeMap::new();
    for m in metrics {
        let mut sum = 0i64;
        let mut missing = m.containers.is_empty();
        let mut found = container.is_none();
        for c in &m.containers {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            found = true;
            match c.usage.get(resource).and_then(milli_value) {
                Some(v) => sum += v,
                None => {
                    missing = true;
                    break;
                }
            }
        }
        if missing || !found {
            continue;
        }
        out.insert(
            m.metadata.name.clone().unwrap_or_default(),
            Sample {
                value: sum,
                at: m.timestamp.0,
                window_ms: go_duration_ms(&m.window).unwrap_or(0),
            },
        );
    }
    out
}

/// Sum of the pods' requests of the resource (`calculatePodRequests`).
fn requests(
    pods: &[&Pod],
    resource: &str,
    container: Option<&str>,
) -> Result<BTreeMap<String, i64>, String> {
    let mut out = BTreeMap::new();
    for pod in pods {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut sum = 0;
        for c in pod.spec.as_ref().map(|s| &s.containers[..]).unwrap_or(&[]) {
            if container.is_some_and(|want| want != c.name) {
                continue;
            }
            let req = c
                .resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .and_then(|r| r.get(resource))
                .and_then(milli_value);
            match req {
                Some(v) => sum += v,
                None => {
                    return Err(format!(
                        "missing request for {resource} in container {} of Pod {name}",
                        c.name
                    ));
                }
            }
        }
        out.insert(name, sum);
    }
    Ok(out)
}

/// What the usage ratio is measured against.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Average usage per pod, milli-units.
    AverageValue(i64),
}

/// (usage ratio, utilization %, average raw usage) over the samples.
fn ratio(
    values: &BTreeMap<String, i64>,
    reqs: &BTreeMap<String, i64>,
    target: Target,
) -> Result<(f64, i32, i64), String> {
    match target {
        Target::Utilization(t) => {
            let (mut used, mut requested, mut n) = (0i64, 0i64, 0i64);
            for (pod, v) in values {
                let Some(r) = reqs.get(pod) else { continue };
                used += v;
                requested += r;
                n += 1;
            }
            if requested == 0 {
                return Err("no metrics returned matched known pods".into());
            }
            let util = (used * 100 / requested) as i32;
            Ok((f64::from(util) / f64::from(t), util, used / n))
        }
        Target::AverageValue(t) => {
            let total: i64 = values.values().sum();
            let avg = total / values.len().max(1) as i64;
            Ok((avg as f64 / t as f64, 0, avg))
        }
    }
}

/// A metric's proposal: replicas, utilization %, average raw usage.
#[allow(clippy::too_many_arguments)]
fn replicas_for(
    current: i32,
    target: Target,
    resource: &str,
    container: Option<&str>,
    pods: &[&Pod],
    metrics: &Result<Vec<PodMetrics>, String>,
    opts: &Options,
    now: Timestamp,
) -> Result<(i32, i32, i64), String> {
    let metrics = match metrics {
        Ok(m) if m.is_empty() => {
            return Err(format!(
                "unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
            ));
        }
        Ok(m) => m,
        Err(e) => {
            return Err(format!(
                "unable to get metrics for resource {resource}: {e}"
            ));
        }
    };
    let samples = samples(metrics, resource, container);
    if pods.is_empty() {
        return Err("no pods returned by selector while calculating replica count".into());
    }
    let g = group_pods(pods, &samples, resource, opts, now);
    let mut values: BTreeMap<String, i64> = samples
        .iter()
        .filter(|(p, _)| !g.ignored.contains(*p) && !g.unready.contains(*p))
        .filter(|(p, _)| {
            pods.iter()
                .any(|pod| pod.metadata.name.as_deref() == Some(p))
        })
        .map(|(p, s)| (p.clone(), s.value))
        .collect();
    if values.is_empty() {
        return Err("did not receive metrics for targeted pods (pods might be unready)".into());
    }
    let reqs = match target {
        Target::Utilization(_) => requests(pods, resource, container)?,
        Target::AverageValue(_) => BTreeMap::new(),
    };
    let (usage, util, raw) = ratio(&values, &reqs, target)?;
    let tolerance = opts.tolerance;
    // Beyond Kubernetes: never against the ratio; no scale-up while pods crash.
    let settle = |proposal: i32, r: f64| -> i32 {
        let against_ratio = (r < 1.0 && proposal > current) || (r > 1.0 && proposal < current);
        let up_while_crashing = proposal > current && g.crashing > 0;
        if against_ratio || up_while_crashing {
            current
        } else {
            proposal
        }
    };
    let up_with_unready = !g.unready.is_empty() && usage > 1.0;
    if !up_with_unready && g.missing.is_empty() {
        if (1.0 - usage).abs() <= tolerance {
            return Ok((current, util, raw));
        }
        let proposal = (usage * g.ready as f64).ceil() as i32;
        return Ok((settle(proposal, usage), util, raw));
    }
    for pod in &g.missing {
        let v = if usage < 1.0 {
            match target {
                Target::Utilization(t) => {
                    reqs.get(pod).copied().unwrap_or(0) * i64::from(t.max(100)) / 100
                }
                Target::AverageValue(t) => t,
            }
        } else {
            0
        };
        values.insert(pod.clone(), v);
    }
    if up_with_unready {
        for pod in &g.unready {
            values.insert(pod.clone(), 0);
        }
    }
    let (new_usage, _, _) = ratio(&values, &reqs, target)?;
    if (1.0 - new_usage).abs() <= tolerance
        || (usage < 1.0 && new_usage > 1.0)
        || (usage > 1.0 && new_usage < 1.0)
    {
        return Ok((current, util, raw));
    }
    let proposal = (new_usage * values.len() as f64).ceil() as i32;
    if (new_usage < 1.0 && proposal > current) || (new_usage > 1.0 && proposal < current) {
        return Ok((current, util, raw));
    }
    Ok((settle(proposal, new_usage), util, raw))
}

// ---------------------------------------------------------------- plan

/// An Event to record on the HPA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    /// The reason.
    pub reason: String,
    /// The message.
    pub message: String,
}

fn warning(reason: &str, message: String) -> Event {
    Event {
        type_: "Warning",
        reason: reason.into(),
        message,
    }
}

/// What one sync of an HPA decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// Write the Scale's `spec.replicas` to this.
    pub scale_to: Option<i32>,
    /// Why (the `SuccessfulRescale` reason text).
    pub reason: String,
    /// The status to write (as it will be if the rescale succeeds).
    pub status: HorizontalPodAutoscalerStatus,
    /// Events to record.
    pub events: Vec<Event>,
    /// The history to keep (recommendations; scale events are added by the
    /// caller once the rescale succeeded).
    pub history: History,
}

/// The target's scale as the scale subresource reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScaleView {
    /// `spec.replicas`.
    pub replicas: i32,
    /// `status.selector`.
    pub selector: String,
}

impl ScaleView {
    /// From an autoscaling/v1 Scale.
    pub fn of(s: &Scale) -> Self {
        Self {
            replicas: s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0),
            selector: s
                .status
                .as_ref()
                .and_then(|s| s.selector.clone())
                .unwrap_or_default(),
        }
    }
}

/// Decides one sync of `hpa` (`reconcileAutoscaler`): `scale` is the target's
/// scale or the error reading it, `pods` the pods of the namespace (the plan
/// selects them), `metrics` the PodMetrics of the selector or the error.
pub fn plan(
    hpa: &HorizontalPodAutoscaler,
    scale: Result<&ScaleView, String>,
    pods: &[&Pod],
    metrics: &Result<Vec<PodMetrics>, String>,
    history: &History,
    opts: &Options,
    now: Timestamp,
) -> Plan {
    let mut status = hpa.status.clone().unwrap_or_default();
    status.observed_generation = hpa.metadata.generation;
    let mut conds = status.conditions.take().unwrap_or_default();
    let mut events = Vec::new();
    let mut history = history.clone();
    let spec = hpa.spec.clone().unwrap_or_default();
    let finish = |mut status: HorizontalPodAutoscalerStatus,
                  conds: Vec<HorizontalPodAutoscalerCondition>,
                  events,
                  history,
                  scale_to,
                  reason: String| {
        status.conditions = (!conds.is_empty()).then_some(conds);
        Plan {
            scale_to,
            reason,
            status,
            events,
            history,
        }
    };
    let scale = match scale {
        Ok(s) => s,
        Err(e) => {
            events.push(warning("FailedGetScale", e.clone()));
            set_condition(
                &mut conds,
                "AbleToScale",
                false,
                "FailedGetScale",
                &format!("the HPA controller was unable to get the target's current scale: {e}"),
                now,
            );
            return finish(status, conds, events, history, None, String::new());
        }
    };
    set_condition(
        &mut conds,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now,
    );
    let current = scale.replicas;
    if history.recommendations.is_empty() {
        history.recommendations.push(Recommendation {
            replicas: current,
            at: now,
        });
    }
    let min = spec.min_replicas.unwrap_or(1);
    let max = spec.max_replicas;
    let mut metric_statuses = Vec::new();
    let (desired, reason) = if current == 0 && min != 0 {
        set_condition(
            &mut conds,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            now,
        );
        (current, String::new())
    } else if current > max {
        (
            max,
            "Current number of replicas above Spec.MaxReplicas".to_string(),
        )
    } else if current < min {
        (
            min,
            "Current number of replicas below Spec.MinReplicas".to_string(),
        )
    } else {
        let computed = compute_metrics(
            &spec,
            scale,
            pods,
            metrics,
            opts,
            now,
            &mut conds,
            &mut events,
        );
        let (proposal, name, statuses) = match computed {
            Ok(v) => v,
            Err(e) => {
                status.current_replicas = Some(current);
                events.push(warning("FailedComputeMetricsReplicas", e));
                return finish(status, conds, events, history, None, String::new());
            }
        };
        metric_statuses = statuses;
        let reason = if proposal > current {
            format!("{name} above target")
        } else if proposal < current {
            "All metrics below target".to_string()
        } else {
            String::new()
        };
        let d = match behavior(hpa, opts) {
            None => normalize(
                current,
                proposal,
                min,
                max,
                &mut history,
                opts,
                now,
                &mut conds,
            ),
            Some(b) => normalize_with_behavior(
                current,
                proposal,
                min,
                max,
                &b,
                &mut history,
                now,
                &mut conds,
            ),
        };
        (d, reason)
    };
    let rescale = desired != current;
    status.current_replicas = Some(current);
    status.desired_replicas = if rescale { desired } else { current };
    status.current_metrics = (!metric_statuses.is_empty()).then_some(metric_statuses);
    if rescale {
        set_condition(
            &mut conds,
            "AbleToScale",
            true,
            "SucceededRescale",
            &format!("the HPA controller was able to update the target scale to {desired}"),
            now,
        );
        status.last_scale_time = Some(Time(now));
        events.push(Event {
            type_: "Normal",
            reason: "SuccessfulRescale".into(),
            message: format!("New size: {desired}; reason: {reason}"),
        });
    }
    finish(
        status,
        conds,
        events,
        history,
        rescale.then_some(desired),
        reason,
    )
}

/// The status and events when writing the scale failed (`FailedRescale`).
pub fn rescale_failed(
    hpa: &HorizontalPodAutoscaler,
    plan: &Plan,
    current: i32,
    error: &str,
    now: Timestamp,
) -> (HorizontalPodAutoscalerStatus, Event) {
    let mut status = hpa.status.clone().unwrap_or_default();
    status.observed_generation = hpa.metadata.generation;
    status.current_replicas = Some(current);
    let mut conds = plan.status.conditions.clone().unwrap_or_default();
    set_condition(
        &mut conds,
        "AbleToScale",
        false,
        "FailedUpdateScale",
        &format!("the HPA controller was unable to update the target scale: {error}"),
        now,
    );
    status.conditions = Some(conds);
    let ev = warning(
        "FailedRescale",
        format!(
            "New size: {}; reason: {}; error: {error}",
            plan.scale_to.unwrap_or(current),
            plan.reason
        ),
    );
    (status, ev)
}

#[allow(clippy::too_many_arguments)]
fn compute_metrics(
    spec: &k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscalerSpec,
    scale: &ScaleView,
    pods: &[&Pod],
    metrics: &Result<Vec<PodMetrics>, String>,
    opts: &Options,
    now: Timestamp,
    conds: &mut Vec<HorizontalPodAutoscalerCondition>,
    events: &mut Vec<Event>,
) -> Result<(i32, String, Vec<MetricStatus>), String> {
    if scale.selector.is_empty() {
        events.push(warning("SelectorRequired", "selector is required".into()));
        set_condition(
            conds,
            "ScalingActive",
            false,
            "InvalidSelector",
            "the HPA target's scale is missing a selector",
            now,
        );
        return Err("selector is required".into());
    }
    let selector = match LabelSelector::parse(&scale.selector) {
        Ok(s) => s,
        Err(e) => {
            let msg = format!(
                "couldn't convert selector into a corresponding internal selector object: {e}"
            );
            events.push(warning("InvalidSelector", msg.clone()));
            set_condition(conds, "ScalingActive", false, "InvalidSelector", &msg, now);
            return Err(msg);
        }
    };
    let selected: Vec<&Pod> = pods
        .iter()
        .copied()
        .filter(|p| selector.matches(|k| p.metadata.labels.as_ref()?.get(k).map(String::as_str)))
        .collect();
    let specs = spec.metrics.clone().unwrap_or_default();
    let mut best: Option<(i32, String)> = None;
    let mut statuses = Vec::new();
    let mut invalid = 0;
    let mut first: Option<(String, String)> = None; // (error, reason)
    for m in &specs {
        let (resource, container, target, reason) = match m.type_.as_str() {
            "Resource" if m.resource.is_some() => {
                let r = m.resource.as_ref().unwrap();
                (
                    r.name.clone(),
                    None,
                    r.target.clone(),
                    "FailedGetResourceMetric",
                )
            }
            "ContainerResource" if m.container_resource.is_some() => {
                let r = m.container_resource.as_ref().unwrap();
                (
                    r.name.clone(),
                    Some(r.container.clone()),
                    r.target.clone(),
                    "FailedGetContainerResourceMetric",
                )
            }
            other => {
                let e = format!("unsupported metric source type \"{other}\"");
                invalid += 1;
                if first.is_none() {
                    first = Some((e, "InvalidMetricSourceType".into()));
                }
                continue;
            }
        };
        let t = if let Some(v) = target.average_value.as_ref().and_then(milli_value) {
            Ok(Target::AverageValue(v))
        } else if let Some(u) = target.average_utilization {
            Ok(Target::Utilization(u))
        } else {
            Err("invalid resource metric source: neither an average utilization target nor an average value target was set".to_string())
        };
        let result = t.and_then(|t| {
            replicas_for(
                scale.replicas,
                t,
                &resource,
                container.as_deref(),
                &selected,
                metrics,
                opts,
                now,
            )
            .map(|r| (t, r))
            .map_err(|e| format!("failed to get {resource} utilization: {e}"))
        });
        match result {
            Ok((t, (replicas, util, raw))) => {
                let (name, current) = match t {
                    Target::Utilization(_) => (
                        if container.is_some() {
                            format!(
                                "{resource} container resource utilization (percentage of request)"
                            )
                        } else {
                            format!("{resource} resource utilization (percentage of request)")
                        },
                        MetricValueStatus {
                            average_utilization: Some(util),
                            average_value: Some(milli_quantity(raw)),
                            value: None,
                        },
                    ),
                    Target::AverageValue(_) => (
                        format!("{resource} resource"),
                        MetricValueStatus {
                            average_utilization: None,
                            average_value: Some(milli_quantity(raw)),
                            value: None,
                        },
                    ),
                };
                statuses.push(match container {
                    Some(c) => MetricStatus {
                        type_: "ContainerResource".into(),
                        container_resource: Some(ContainerResourceMetricStatus {
                            container: c,
                            current,
                            name: resource,
                        }),
                        ..Default::default()
                    },
                    None => MetricStatus {
                        type_: "Resource".into(),
                        resource: Some(ResourceMetricStatus {
                            current,
                            name: resource,
                        }),
                        ..Default::default()
                    },
                });
                if best.as_ref().is_none_or(|(r, _)| replicas > *r) {
                    best = Some((replicas, name));
                }
            }
            Err(e) => {
                events.push(warning(reason, e.clone()));
                invalid += 1;
                if first.is_none() {
                    first = Some((e, reason.into()));
                }
            }
        }
    }
    let (replicas, name) = best.clone().unwrap_or((0, String::new()));
    if invalid > 0 && (invalid >= specs.len() || replicas < scale.replicas) {
        let (e, reason) = first.unwrap_or_default();
        set_condition(
            conds,
            "ScalingActive",
            false,
            &reason,
            &format!("the HPA was unable to compute the replica count: {e}"),
            now,
        );
        return Err(format!(
            "invalid metrics ({invalid} invalid out of {}), first error is: {e}",
            specs.len()
        ));
    }
    set_condition(
        conds,
        "ScalingActive",
        true,
        "ValidMetricFound",
        &format!("the HPA was able to successfully calculate a replica count from {name}"),
        now,
    );
    Ok((replicas, name, statuses))
}

/// Without `behavior`: the downscale stabilisation and `max(2 × current, 4)`.
#[allow(clippy::too_many_arguments)]
fn normalize(
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
    h: &mut History,
    opts: &Options,
    now: Timestamp,
    conds: &mut Vec<HorizontalPodAutoscalerCondition>,
) -> i32 {
    let cutoff = now - dur(opts.downscale_stabilization);
    let mut stabilized = proposal;
    let mut old = None;
    for (i, r) in h.recommendations.iter().enumerate() {
        if r.at < cutoff {
            old = Some(i);
        } else if r.replicas > stabilized {
            stabilized = r.replicas;
        }
    }
    h.store_recommendation(old, proposal, now);
    let held = (stabilized != proposal).then_some(Held::Down);
    set_able_to_scale(conds, held, now);
    let (allowed_max, mut reason, mut msg) = upper_bound(max, (2 * current).max(4));
    let desired = if stabilized < min {
        reason = "TooFewReplicas";
        msg = "the desired replica count is less than the minimum replica count";
        min
    } else if stabilized > allowed_max {
        allowed_max
    } else {
        reason = "DesiredWithinRange";
        msg = "the desired count is within the acceptable range";
        stabilized
    };
    set_condition(
        conds,
        "ScalingLimited",
        desired != stabilized,
        reason,
        msg,
        now,
    );
    desired
}

/// Which stabilisation window held a recommendation back.
#[derive(Debug, Clone, Copy)]
enum Held {
    /// The scale-up window (a lower recent recommendation).
    Up,
    /// The scale-down window (a higher recent recommendation).
    Down,
}

/// Sets `AbleToScale` after stabilisation: which window, if any, held the
/// recommendation back.
fn set_able_to_scale(
    conds: &mut Vec<HorizontalPodAutoscalerCondition>,
    held: Option<Held>,
    now: Timestamp,
) {
    let (reason, msg) = match held {
        Some(Held::Up) => (
            "ScaleUpStabilized",
            "recent recommendations were lower than current one, applying the lowest recent recommendation",
        ),
        Some(Held::Down) => (
            "ScaleDownStabilized",
            "recent recommendations were higher than current one, applying the highest recent recommendation",
        ),
        None => ("ReadyForNewScale", "recommended size matches current size"),
    };
    set_condition(conds, "AbleToScale", true, reason, msg, now);
}

/// The most replicas allowed going up, with the `ScalingLimited` reason and
/// message that name the bound: the scale-up `limit` when below `max`, else `max`.
fn upper_bound(max: i32, limit: i32) -> (i32, &'static str, &'static str) {
    if max > limit {
        (
            limit,
            "ScaleUpLimit",
            "the desired replica count is increasing faster than the maximum scale rate",
        )
    } else {
        (
            max,
            "TooManyReplicas",
            "the desired replica count is more than the maximum replica count",
        )
    }
}

/// With `behavior`: stabilisation windows up and down, then the policies.
#[allow(clippy::too_many_arguments)]
fn normalize_with_behavior(
    current: i32,
    proposal: i32,
    min: i32,
    max: i32,
    b: &Behavior,
    h: &mut History,
    now: Timestamp,
    conds: &mut Vec<HorizontalPodAutoscalerCondition>,
) -> i32 {
    let up_cut = now - secs(b.up.window);
    let down_cut = now - secs(b.down.window);
    let (mut up, mut down) = (proposal, proposal);
    let mut old = None;
    for (i, r) in h.recommendations.iter().enumerate() {
        if r.at > up_cut {
            up = up.min(r.replicas);
        }
        if r.at > down_cut {
            down = down.max(r.replicas);
        }
        if r.at < up_cut && r.at < down_cut {
            old = Some(i);
        }
    }
    let stabilized = current.max(up).min(down);
    h.store_recommendation(old, proposal, now);
    let held = (stabilized != proposal).then_some(if proposal >= current {
        Held::Up
    } else {
        Held::Down
    });
    set_able_to_scale(conds, held, now);
    let mut out = (
        stabilized,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    );
    if stabilized > current {
        let limit = scale_up_limit(current, h, &b.up, now).max(current);
        let (allowed, reason, msg) = upper_bound(max, limit);
        if stabilized > allowed {
            out = (allowed, reason, msg);
        }
    } else if stabilized < current {
        let limit = scale_down_limit(current, h, &b.down, now).min(current);
        let (allowed, reason, msg) = if min < limit {
            (
                limit,
                "ScaleDownLimit",
                "the desired replica count is decreasing faster than the maximum scale rate",
            )
        } else {
            (
                min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        };
        if stabilized < allowed {
            out = (allowed, reason, msg);
        }
    }
    set_condition(
        conds,
        "ScalingLimited",
        out.0 != stabilized,
        out.1,
        out.2,
        now,
    );
    out.0
}

// ---------------------------------------------------------------- loop

/// The scale subresource path of a target: `apiVersion` + `kind` → resource.
pub fn scale_path(api_version: &str, kind: &str, namespace: &str, name: &str) -> String {
    let base = if api_version.contains('/') {
        format!("/apis/{api_version}")
    } else {
        format!("/api/{api_version}")
    };
    let lower = kind.to_ascii_lowercase();
    let resource = if lower.ends_with('s') {
        format!("{lower}es")
    } else if let Some(stem) = lower.strip_suffix('y') {
        format!("{stem}ies")
    } else {
        format!("{lower}s")
    };
    format!("{base}/namespaces/{namespace}/{resource}/{name}/scale")
}

async fn get_scale(client: &kube::Client, path: &str) -> Result<Scale, String> {
    let req = http::Request::get(path)
        .body(Vec::new())
        .map_err(|e| e.to_string())?;
    client
        .request::<Scale>(req)
        .await
        .map_err(|e| e.to_string())
}

async fn put_scale(client: &kube::Client, path: &str, scale: &Scale) -> Result<Scale, String> {
    let body = serde_json::to_vec(scale).map_err(|e| e.to_string())?;
    let req = http::Request::put(path)
        .header("content-type", "application/json")
        .body(body)
        .map_err(|e| e.to_string())?;
    client
        .request::<Scale>(req)
        .await
        .map_err(|e| e.to_string())
}

/// Runs the HPA controller with its own pod watch.
pub async fn run(
    client: kube::Client,
    opts: Options,
    metrics: Arc<dyn MetricsClient>,
    shutdown: watch::Receiver<bool>,
) {
    let pods = crate::informer::own_pods(client.clone());
    run_with_pods(client, opts, metrics, pods, shutdown).await
}

/// Runs the HPA controller on a shared pod stream until `shutdown`.
pub async fn run_with_pods(
    client: kube::Client,
    opts: Options,
    metrics: Arc<dyn MetricsClient>,
    mut pod_events: crate::informer::PodStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut pods: Cache<Pod> = Cache::new();
    let mut histories: HashMap<String, History> = HashMap::new();
    let mut tick = tokio::time::interval(opts.sync_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.changed() => return,
            ev = pod_events.next() => match ev {
                Some(Ok(ev)) => { pods.apply(ev); }
                Some(Err(e)) => tracing::debug!("hpa pod watch: {e}"),
                None => return,
            },
            _ = tick.tick() => {
                if !pods.synced { continue; }
                let list = match Api::<HorizontalPodAutoscaler>::all(client.clone()).list(&ListParams::default()).await {
                    Ok(l) => l.items,
                    Err(e) => { tracing::debug!("listing hpas: {e}"); continue; }
                };
                let keys: BTreeSet<String> = list.iter().map(|h| crate::key_of(&h.metadata)).collect();
                histories.retain(|k, _| keys.contains(k));
                for hpa in &list {
                    let key = crate::key_of(&hpa.metadata);
                    let h = histories.entry(key).or_default();
                    sync_one(&client, &opts, &*metrics, &pods, hpa, h).await;
                }
            }
        }
    }
}

async fn sync_one(
    client: &kube::Client,
    opts: &Options,
    metrics: &dyn MetricsClient,
    pods: &Cache<Pod>,
    hpa: &HorizontalPodAutoscaler,
    history: &mut History,
) {
    let ns = hpa.metadata.namespace.clone().unwrap_or_default();
    let name = hpa.metadata.name.clone().unwrap_or_default();
    let Some(spec) = hpa.spec.as_ref() else {
        return;
    };
    let r = &spec.scale_target_ref;
    let path = scale_path(
        r.api_version.as_deref().unwrap_or("v1"),
        &r.kind,
        &ns,
        &r.name,
    );
    let scale = get_scale(client, &path).await;
    let view = scale.as_ref().map(ScaleView::of).map_err(Clone::clone);
    let ns_pods: Vec<&Pod> = pods
        .values()
        .filter(|p| p.metadata.namespace.as_deref() == Some(ns.as_str()))
        .collect();
    let m = match &view {
        Ok(v) if !v.selector.is_empty() => metrics.pod_metrics(&ns, &v.selector).await,
        _ => Ok(Vec::new()),
    };
    let now = crate::now_rounded();
    let mut plan = plan(
        hpa,
        view.as_ref().map_err(Clone::clone),
        &ns_pods,
        &m,
        history,
        opts,
        now,
    );
    *history = plan.history.clone();
    let about = Involved {
        kind: "HorizontalPodAutoscaler",
        api_version: "autoscaling/v2",
        namespace: &ns,
        name: &name,
        uid: hpa.metadata.uid.as_deref(),
    };
    if let (Some(to), Ok(mut s)) = (plan.scale_to, scale) {
        let current = s.spec.as_ref().and_then(|s| s.replicas).unwrap_or(0);
        s.spec.get_or_insert_with(Default::default).replicas = Some(to);
        match put_scale(client, &path, &s).await {
            Ok(_) => history.store_scale_event(behavior(hpa, opts).as_ref(), current, to, now),
            Err(e) => {
                let (status, ev) = rescale_failed(hpa, &plan, current, &e, now);
                plan.status = status;
                plan.events = vec![ev];
            }
        }
    }
    for ev in &plan.events {
        record(client, COMPONENT, &about, ev.type_, &ev.reason, &ev.message).await;
    }
    if hpa.status.as_ref() != Some(&plan.status) {
        let mut updated = hpa.clone();
        updated.status = Some(plan.status);
        let api: Api<HorizontalPodAutoscaler> = Api::namespaced(client.clone(), &ns);
        if let Err(e) = api
            .replace_status(&name, &PostParams::default(), &updated)
            .await
        {
            tracing::debug!("hpa {ns}/{name} status: {e}");
        }
    }
}

#[cfg(test)]
mod tests;
