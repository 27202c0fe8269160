//! Resource amounts and the pod request sums Kubernetes' scheduler uses
//! (`pkg/api/v1/resource.PodRequests` and `framework.Resource`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, Pod};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;

/// The cpu request (in millicores) assumed for scoring when a container sets none.
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// The memory request (in bytes) assumed for scoring when a container sets none.
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 * 1024 * 1024;

/// An amount of every resource the scheduler tracks, like `framework.Resource`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resources {
    /// cpu in millicores.
    pub milli_cpu: i64,
    /// memory in bytes.
    pub memory: i64,
    /// ephemeral-storage in bytes.
    pub ephemeral_storage: i64,
    /// The number of pods (meaningful for allocatable only).
    pub pods: i64,
    /// Extended, hugepages and other scalar resources by name, in whole units.
    pub scalar: BTreeMap<String, i64>,
}

/// Parses a quantity's value the way `Quantity.Value()` / `MilliValue()` round: up.
fn quantity_value(q: &Quantity, milli: bool) -> i64 {
    let Ok(parsed) = skiff_api::validation::parse_quantity(&q.0) else {
        return 0;
    };
    let div: i128 = if milli { 1_000_000 } else { 1_000_000_000 };
    let n = parsed.nanos;
    let v = if n >= 0 { (n + div - 1) / div } else { n / div };
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

impl Resources {
    /// Builds resources from a `ResourceList` (requests, allocatable, overhead).
    pub fn from_list(list: &BTreeMap<String, Quantity>) -> Self {
        let mut r = Resources::default();
        for (name, q) in list {
            r.set(name, q);
        }
        r
    }

    fn set(&mut self, name: &str, q: &Quantity) {
        match name {
            "cpu" => self.milli_cpu = quantity_value(q, true),
            "memory" => self.memory = quantity_value(q, false),
            "ephemeral-storage" => self.ephemeral_storage = quantity_value(q, false),
            "pods" => self.pods = quantity_value(q, false),
            other => {
                self.scalar
                    .insert(other.to_string(), quantity_value(q, false));
            }
        }
    }

    /// Adds another amount to this one, resource by resource.
    pub fn add(&mut self, o: &Resources) {
        self.milli_cpu += o.milli_cpu;
        self.memory += o.memory;
        self.ephemeral_storage += o.ephemeral_storage;
        self.pods += o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() += v;
        }
    }

    /// Subtracts another amount from this one, resource by resource.
    pub fn sub(&mut self, o: &Resources) {
        self.milli_cpu -= o.milli_cpu;
        self.memory -= o.memory;
        self.ephemeral_storage -= o.ephemeral_storage;
        self.pods -= o.pods;
        for (k, v) in &o.scalar {
            *self.scalar.entry(k.clone()).or_default() -= v;
        }
    }

    /// Raises each resource to at least the other's amount.
    pub fn set_max(&mut self, o: &Resources) {
        self.milli_cpu = self.milli_cpu.max(o.milli_cpu);
        self.memory = self.memory.max(o.memory);
        self.ephemeral_storage = self.ephemeral_storage.max(o.ephemeral_storage);
        self.pods = self.pods.max(o.pods);
        for (k, v) in &o.scalar {
            let e = self.scalar.entry(k.clone()).or_default();
            *e = (*e).max(*v);
        }
    }

    /// Whether nothing at all is requested.
    pub fn is_zero(&self) -> bool {
        self.milli_cpu == 0
            && self.memory == 0
            && self.ephemeral_storage == 0
            && self.scalar.values().all(|v| *v == 0)
    }
}

fn container_requests(c: &Container, non_zero: bool) -> Resources {
    let mut r = c
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .map(Resources::from_list)
        .unwrap_or_default();
    if non_zero {
        let has = |k: &str| {
            c.resources
                .as_ref()
                .and_then(|r| r.requests.as_ref())
                .is_some_and(|m| m.contains_key(k))
        };
        if !has("cpu") {
            r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
        }
        if !has("memory") {
            r.memory = DEFAULT_MEMORY_REQUEST;
        }
    }
    r
}

/// Whether an init container is a sidecar (`restartPolicy: Always`).
pub(crate) fn is_restartable(c: &Container) -> bool {
    c.restart_policy.as_deref() == Some("Always")
}

fn requests(pod: &Pod, non_zero: bool) -> Resources {
    let Some(spec) = pod.spec.as_ref() else {
        return Resources::default();
    };
    let mut reqs = Resources::default();
    for c in &spec.containers {
        reqs.add(&container_requests(c, non_zero));
    }
    // Sidecars run beside everything started after them; a regular init container
    // runs alone beside the sidecars started before it.
    let mut sidecars = Resources::default();
    let mut init_peak = Resources::default();
    for c in spec.init_containers.iter().flatten() {
        let own = container_requests(c, non_zero);
        let during = if is_restartable(c) {
            reqs.add(&own);
            sidecars.add(&own);
            sidecars.clone()
        } else {
            let mut t = own;
            t.add(&sidecars);
            t
        };
        init_peak.set_max(&during);
    }
    reqs.set_max(&init_peak);
    if let Some(overhead) = spec.overhead.as_ref() {
        reqs.add(&Resources::from_list(overhead));
    }
    reqs
}

/// A pod's effective requests as Kubernetes sums them: the larger of the app
/// containers' sum (plus sidecars) and each init container's peak (plus the
/// sidecars started before it), then the pod overhead.
pub fn pod_requests(pod: &Pod) -> Resources {
    requests(pod, false)
}

/// [`pod_requests`] with a container's missing cpu request taken as 100m and a
/// missing memory request as 200Mi, as scoring does.
pub fn pod_requests_non_zero(pod: &Pod) -> Resources {
    requests(pod, true)
}
