//! The Endpoints controller (core/v1 Endpoints) and the EndpointSlice
//! controller (discovery.k8s.io/v1), as kube-controller-manager runs them:
//! for every Service with a selector, the addresses of the pods it selects.
//!
//! Which pods count (Kubernetes' `ShouldPodBeInEndpoints`): they have an IP
//! (`status.podIP`) and are not Succeeded or Failed. Terminating pods are left
//! out of Endpoints unless the Service has `publishNotReadyAddresses`; they stay
//! in EndpointSlices with the `terminating` condition. A pod whose node is not
//! known is left out of EndpointSlices unless `publishNotReadyAddresses`.
//!
//! - [`endpoints_for`]: the Endpoints of a Service (subsets repacked by port
//!   set, ready and not-ready addresses, labels, truncation at 1000 addresses
//!   with `endpoints.kubernetes.io/over-capacity: truncated`).
//! - [`plan_endpoints`]: what to write, or nothing when the stored Endpoints
//!   already match (subsets, labels and the capacity annotation).
//! - [`plan_slices`]: which EndpointSlices to create, update and delete,
//!   changing as few as it can and placing at most `max_endpoints_per_slice`
//!   endpoints in each.
//! - [`run_with_pods`]: the loop; it syncs a Service as soon as one of its
//!   pods, itself or its objects change (no batching delay).
//!
//! Services without a selector (and ExternalName Services) get no Endpoints
//! from here: theirs are the user's, and [`mirror`] (the EndpointSlice
//! mirroring controller) copies them into slices. When a Service is deleted,
//! its Endpoints and EndpointSlices are deleted. Topology hints, dual-stack
//! (IPv6) pod addresses and the `--endpoint-updates-batch-period` are not done.

use crate::cache::Cache;
use futures::StreamExt;
use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Node, ObjectReference, Pod, Service,
    ServicePort,
};
use k8s_openapi::api::discovery::v1::{
    Endpoint, EndpointConditions, EndpointPort as SlicePort, EndpointSlice,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::api::{Api, DeleteParams, PostParams};
use kube::runtime::watcher;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::time::Duration;
use tokio::sync::watch;

/// The label naming a slice's Service.
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
/// The label naming the controller that manages a slice.
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
/// This controller's value of [`MANAGED_BY_LABEL`].
pub const CONTROLLER_NAME: &str = "endpointslice-controller.k8s.io";
/// The label on Endpoints and slices of headless Services.
pub const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";
/// When the change that led to the last write happened.
pub const TRIGGER_TIME_ANNOTATION: &str = "endpoints.kubernetes.io/last-change-trigger-time";
/// Set to `truncated` on Endpoints that hold only the first 1000 addresses.
pub const OVER_CAPACITY_ANNOTATION: &str = "endpoints.kubernetes.io/over-capacity";
/// The most addresses one Endpoints object holds.
pub const MAX_ENDPOINTS_CAPACITY: usize = 1000;
/// Endpoints with this annotation are leader-election locks, never deleted as leftovers.
pub(crate) const LEADER_ANNOTATION: &str = "control-plane.alpha.kubernetes.io/leader";

// ---------------------------------------------------------------------------
// Pods and ports
// ---------------------------------------------------------------------------

/// Whether the pod's Ready condition is True.
pub fn pod_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn pod_ip(pod: &Pod) -> Option<&str> {
    let st = pod.status.as_ref()?;
    st.pod_ip
        .as_deref()
        .filter(|ip| !ip.is_empty())
        .or_else(|| {
            st.pod_ips
                .as_ref()?
                .iter()
                .map(|p| p.ip.as_str())
                .find(|ip| !ip.is_empty())
        })
}

/// The pod's IPv4 address (the only address family done).
fn pod_ipv4(pod: &Pod) -> Option<&str> {
    let st = pod.status.as_ref()?;
    std::iter::once(st.pod_ip.as_deref().unwrap_or(""))
        .chain(st.pod_ips.iter().flatten().map(|p| p.ip.as_str()))
        .find(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
}

/// Kubernetes' `ShouldPodBeInEndpoints`: not Succeeded or Failed, has an IP,
/// and (unless `include_terminating`) is not being deleted.
pub fn should_be_in_endpoints(pod: &Pod, include_terminating: bool) -> bool {
    let phase = pod.status.as_ref().and_then(|s| s.phase.as_deref());
    if matches!(phase, Some("Succeeded" | "Failed")) || pod_ip(pod).is_none() {
        return false;
    }
    include_terminating || pod.metadata.deletion_timestamp.is_none()
}

/// Whether an address carries the pod's hostname: it has one and its
/// subdomain is the Service's name (in the Service's namespace).
fn should_set_hostname(pod: &Pod, svc: &Service) -> bool {
    let spec = pod.spec.as_ref();
    let hostname = spec.and_then(|s| s.hostname.as_deref()).unwrap_or("");
    let subdomain = spec.and_then(|s| s.subdomain.as_deref()).unwrap_or("");
    !hostname.is_empty()
        && subdomain == svc.metadata.name.as_deref().unwrap_or("")
        && pod.metadata.namespace == svc.metadata.namespace
}

fn protocol(p: &Option<String>) -> &str {
    p.as_deref().unwrap_or("TCP")
}

/// Kubernetes' `FindPort`: the pod's port a Service port targets. A numeric
/// (or missing) targetPort is taken as is; a name is looked up among the
/// container ports (sidecar init containers included) with the same protocol,
/// and a pod without it has no such port.
pub fn find_port(pod: &Pod, sp: &ServicePort) -> Option<i32> {
    match &sp.target_port {
        None => Some(sp.port),
        Some(IntOrString::Int(n)) => Some(*n),
        Some(IntOrString::String(name)) => {
            if let Ok(n) = name.parse::<i32>() {
                return Some(n);
            }
            let spec = pod.spec.as_ref()?;
            let sidecars = spec
                .init_containers
                .iter()
                .flatten()
                .filter(|c| c.restart_policy.as_deref() == Some("Always"));
            spec.containers
                .iter()
                .chain(sidecars)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| {
                    p.name.as_deref() == Some(name)
                        && protocol(&p.protocol) == protocol(&sp.protocol)
                })
                .map(|p| p.container_port)
        }
    }
}

fn headless(svc: &Service) -> bool {
    svc.spec.as_ref().and_then(|s| s.cluster_ip.as_deref()) == Some("None")
}

fn publish_not_ready(svc: &Service) -> bool {
    svc.spec
        .as_ref()
        .and_then(|s| s.publish_not_ready_addresses)
        .unwrap_or(false)
}

fn service_ports(svc: &Service) -> &[ServicePort] {
    svc.spec
        .as_ref()
        .and_then(|s| s.ports.as_deref())
        .unwrap_or(&[])
}

/// The selector of a Service this controller serves: None for Services
/// without one (user-managed Endpoints) and for ExternalName Services.
pub fn selector(svc: &Service) -> Option<&BTreeMap<String, String>> {
    let spec = svc.spec.as_ref()?;
    if spec.type_.as_deref() == Some("ExternalName") {
        return None;
    }
    spec.selector.as_ref().filter(|s| !s.is_empty())
}

/// Whether `svc` selects `pod` (same namespace, every selector label matches).
pub fn selects(svc: &Service, pod: &Pod) -> bool {
    svc.metadata.namespace == pod.metadata.namespace
        && selector(svc).is_some_and(|sel| {
            let labels = pod.metadata.labels.as_ref();
            sel.iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
}

fn target_ref(pod: &Pod) -> ObjectReference {
    ObjectReference {
        kind: Some("Pod".into()),
        namespace: pod.metadata.namespace.clone(),
        name: pod.metadata.name.clone(),
        uid: pod.metadata.uid.clone(),
        ..Default::default()
    }
}

/// The newest change among the inputs (the Service's creation, the pods'
/// Ready transitions and deletions), for [`TRIGGER_TIME_ANNOTATION`].
pub fn trigger_time(svc: &Service, pods: &[&Pod]) -> Option<String> {
    let mut t = svc.metadata.creation_timestamp.as_ref().map(|t| t.0);
    for p in pods.iter().filter(|p| selects(svc, p)) {
        let ready = p
            .status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
            .and_then(|c| c.last_transition_time.as_ref())
            .map(|t| t.0);
        let gone = p.metadata.deletion_timestamp.as_ref().map(|t| t.0);
        t = t.max(ready).max(gone);
    }
    t.map(|t| t.to_string())
}

// ---------------------------------------------------------------------------
// Endpoints
// ---------------------------------------------------------------------------

type PortKey = (String, i32, String, String);

fn port_key(p: &EndpointPort) -> PortKey {
    (
        p.name.clone().unwrap_or_default(),
        p.port,
        protocol(&p.protocol).to_string(),
        p.app_protocol.clone().unwrap_or_default(),
    )
}

/// An address as `RepackSubsets` tells them apart: IP and pod UID.
type AddrKey = (String, String);

fn addr_key(a: &EndpointAddress) -> AddrKey {
    (
        a.ip.clone(),
        a.target_ref
            .as_ref()
            .and_then(|r| r.uid.clone())
            .unwrap_or_default(),
    )
}

/// Kubernetes' `RepackSubsets`: one subset per distinct set of (address,
/// readiness) pairs, holding every port those addresses share. An address
/// both ready and not ready for a port counts as ready. Addresses sort by IP
/// and UID; ports and subsets by name, port and protocol.
pub fn repack(subsets: &[EndpointSubset]) -> Vec<EndpointSubset> {
    // Per port (None = a headless Service without ports): address -> ready.
    let mut by_port: BTreeMap<Option<PortKey>, BTreeMap<AddrKey, bool>> = BTreeMap::new();
    let mut ports: HashMap<PortKey, EndpointPort> = HashMap::new();
    let mut addrs: HashMap<AddrKey, EndpointAddress> = HashMap::new();
    for ss in subsets {
        let keys: Vec<Option<PortKey>> = match ss.ports.as_deref() {
            None | Some([]) => vec![None],
            Some(ps) => ps
                .iter()
                .map(|p| {
                    let k = port_key(p);
                    ports.entry(k.clone()).or_insert_with(|| p.clone());
                    Some(k)
                })
                .collect(),
        };
        for k in keys {
            let m = by_port.entry(k).or_default();
            for (list, ready) in [(&ss.addresses, true), (&ss.not_ready_addresses, false)] {
                for a in list.iter().flatten() {
                    let ak = addr_key(a);
                    addrs.entry(ak.clone()).or_insert_with(|| a.clone());
                    let e = m.entry(ak).or_insert(ready);
                    *e |= ready;
                }
            }
        }
    }
    let mut groups: BTreeMap<Vec<(AddrKey, bool)>, Vec<Option<PortKey>>> = BTreeMap::new();
    for (port, m) in by_port {
        groups
            .entry(m.into_iter().collect())
            .or_default()
            .push(port);
    }
    let mut out: Vec<(Vec<Option<PortKey>>, EndpointSubset)> = groups
        .into_iter()
        .map(|(members, mut port_keys)| {
            port_keys.sort();
            let pick = |ready: bool| -> Option<Vec<EndpointAddress>> {
                let v: Vec<EndpointAddress> = members
                    .iter()
                    .filter(|(_, r)| *r == ready)
                    .map(|(k, _)| addrs[k].clone())
                    .collect();
                (!v.is_empty()).then_some(v)
            };
            let ps: Vec<EndpointPort> = port_keys
                .iter()
                .flatten()
                .map(|k| ports[k].clone())
                .collect();
            let ss = EndpointSubset {
                addresses: pick(true),
                not_ready_addresses: pick(false),
                ports: (!ps.is_empty()).then_some(ps),
            };
            (port_keys, ss)
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.into_iter().map(|(_, ss)| ss).collect()
}

/// Kubernetes' `truncateEndpoints`: keeps at most [`MAX_ENDPOINTS_CAPACITY`]
/// addresses, ready ones first, each subset keeping its share (rounded up).
/// True when something was cut.
fn truncate(subsets: &mut [EndpointSubset]) -> bool {
    let count = |f: fn(&EndpointSubset) -> &Option<Vec<EndpointAddress>>| -> usize {
        subsets
            .iter()
            .map(|s| f(s).as_ref().map_or(0, Vec::len))
            .sum()
    };
    let ready = count(|s| &s.addresses);
    let not_ready = count(|s| &s.not_ready_addresses);
    if ready + not_ready <= MAX_ENDPOINTS_CAPACITY {
        return false;
    }
    let cut_ready = ready > MAX_ENDPOINTS_CAPACITY;
    let (max, total) = if cut_ready {
        (MAX_ENDPOINTS_CAPACITY, ready)
    } else {
        (MAX_ENDPOINTS_CAPACITY - ready, not_ready)
    };
    let mut room = max;
    for ss in subsets.iter_mut() {
        let list = if cut_ready {
            ss.not_ready_addresses = None;
            &mut ss.addresses
        } else {
            &mut ss.not_ready_addresses
        };
        let n = list.as_ref().map_or(0, Vec::len);
        let share = ((n as f64 / total as f64) * max as f64).ceil() as usize;
        let keep = share.min(room);
        if let Some(v) = list {
            v.truncate(keep);
            room -= v.len();
            if v.is_empty() {
                *list = None;
            }
        }
    }
    true
}

/// The Endpoints the Endpoints controller wants for `svc` (which must have a
/// selector), from the pods it selects. Its annotations hold only
/// [`OVER_CAPACITY_ANNOTATION`] when addresses were cut.
pub fn endpoints_for(svc: &Service, pods: &[&Pod]) -> Endpoints {
    let pnra = publish_not_ready(svc);
    let mut subsets = Vec::new();
    for pod in pods.iter().filter(|p| selects(svc, p)) {
        if !should_be_in_endpoints(pod, pnra) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else {
            continue;
        };
        let addr = EndpointAddress {
            ip: ip.to_string(),
            node_name: pod.spec.as_ref().and_then(|s| s.node_name.clone()),
            hostname: should_set_hostname(pod, svc)
                .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
                .flatten(),
            target_ref: Some(target_ref(pod)),
        };
        let ready = pnra || pod_ready(pod);
        let mut push = |ports: Option<Vec<EndpointPort>>| {
            subsets.push(EndpointSubset {
                addresses: ready.then(|| vec![addr.clone()]),
                not_ready_addresses: (!ready).then(|| vec![addr.clone()]),
                ports,
            })
        };
        let sps = service_ports(svc);
        if sps.is_empty() {
            if headless(svc) {
                push(None);
            }
            continue;
        }
        for sp in sps {
            let Some(port) = find_port(pod, sp) else {
                continue;
            };
            push(Some(vec![EndpointPort {
                name: sp.name.clone().or_else(|| Some(String::new())),
                port,
                protocol: Some(protocol(&sp.protocol).to_string()),
                app_protocol: sp.app_protocol.clone(),
            }]));
        }
    }
    let mut subsets = repack(&subsets);
    let truncated = truncate(&mut subsets);
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    if headless(svc) {
        labels.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        labels.remove(HEADLESS_LABEL);
    }
    Endpoints {
        metadata: ObjectMeta {
            name: svc.metadata.name.clone(),
            namespace: svc.metadata.namespace.clone(),
            labels: (!labels.is_empty()).then_some(labels),
            annotations: truncated.then(|| {
                BTreeMap::from([(
                    OVER_CAPACITY_ANNOTATION.to_string(),
                    "truncated".to_string(),
                )])
            }),
            ..Default::default()
        },
        subsets: (!subsets.is_empty()).then_some(subsets),
    }
}

fn norm_subsets(s: &Option<Vec<EndpointSubset>>) -> serde_json::Value {
    serde_json::to_value(s.as_deref().unwrap_or(&[])).unwrap_or_default()
}

fn labels_of(m: &ObjectMeta) -> BTreeMap<String, String> {
    m.labels.clone().unwrap_or_default()
}

/// The Endpoints to write for `svc`, or None when `current` already holds
/// the same subsets, labels and capacity annotation (the trigger time alone
/// never causes a write). Other annotations of `current` are kept.
pub fn plan_endpoints(
    svc: &Service,
    pods: &[&Pod],
    current: Option<&Endpoints>,
    trigger: Option<&str>,
) -> Option<Endpoints> {
    let want = endpoints_for(svc, pods);
    let over = |e: &Endpoints| {
        e.metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(OVER_CAPACITY_ANNOTATION))
            .cloned()
    };
    if let Some(cur) = current
        && norm_subsets(&cur.subsets) == norm_subsets(&want.subsets)
        && labels_of(&cur.metadata) == labels_of(&want.metadata)
        && over(cur) == over(&want)
    {
        return None;
    }
    let mut out = want.clone();
    if let Some(cur) = current {
        // Keep what else the stored object carries (uid, resourceVersion, owners).
        out.metadata = ObjectMeta {
            labels: out.metadata.labels,
            annotations: None,
            ..cur.metadata.clone()
        };
    }
    let mut ann = current
        .and_then(|c| c.metadata.annotations.clone())
        .unwrap_or_default();
    ann.remove(OVER_CAPACITY_ANNOTATION);
    match trigger {
        Some(t) => ann.insert(TRIGGER_TIME_ANNOTATION.into(), t.to_string()),
        None => ann.remove(TRIGGER_TIME_ANNOTATION),
    };
    ann.extend(want.metadata.annotations.unwrap_or_default());
    out.metadata.annotations = (!ann.is_empty()).then_some(ann);
    Some(out)
}

// ---------------------------------------------------------------------------
// EndpointSlices
// ---------------------------------------------------------------------------

/// What the EndpointSlice controller does for one Service.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct SlicePlan {
    /// New slices (with `generateName`).
    pub create: Vec<EndpointSlice>,
    /// Changed slices (with the resourceVersion they replace).
    pub update: Vec<EndpointSlice>,
    /// Names of slices to delete.
    pub delete: Vec<String>,
}

impl SlicePlan {
    /// Whether nothing is to be written.
    pub fn is_empty(&self) -> bool {
        self.create.is_empty() && self.update.is_empty() && self.delete.is_empty()
    }
}

/// The ports of a pod's endpoint: one per Service port the pod has.
fn slice_ports(svc: &Service, pod: &Pod) -> Vec<SlicePort> {
    service_ports(svc)
        .iter()
        .filter_map(|sp| {
            Some(SlicePort {
                port: Some(find_port(pod, sp)?),
                name: Some(sp.name.clone().unwrap_or_default()),
                protocol: Some(protocol(&sp.protocol).to_string()),
                app_protocol: sp.app_protocol.clone(),
            })
        })
        .collect()
}

/// Kubernetes' `podToEndpoint`.
fn pod_endpoint(pod: &Pod, ip: &str, node: Option<&Node>, svc: &Service) -> Endpoint {
    let serving = pod_ready(pod);
    let terminating = pod.metadata.deletion_timestamp.is_some();
    let ready = publish_not_ready(svc) || (serving && !terminating);
    Endpoint {
        addresses: vec![ip.to_string()],
        conditions: Some(EndpointConditions {
            ready: Some(ready),
            serving: Some(serving),
            terminating: Some(terminating),
        }),
        node_name: pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.clone())
            .filter(|n| !n.is_empty()),
        zone: node
            .and_then(|n| n.metadata.labels.as_ref())
            .and_then(|l| l.get("topology.kubernetes.io/zone"))
            .filter(|z| !z.is_empty())
            .cloned(),
        hostname: should_set_hostname(pod, svc)
            .then(|| pod.spec.as_ref().and_then(|s| s.hostname.clone()))
            .flatten(),
        target_ref: Some(target_ref(pod)),
        ..Default::default()
    }
}

/// The labels of a Service's slices: the Service's own (but the two the
/// controller owns), the headless label, the Service name and the manager.
pub fn slice_labels(svc: &Service) -> BTreeMap<String, String> {
    let mut l = svc.metadata.labels.clone().unwrap_or_default();
    l.remove(SERVICE_NAME_LABEL);
    l.remove(MANAGED_BY_LABEL);
    if headless(svc) {
        l.insert(HEADLESS_LABEL.into(), String::new());
    } else {
        l.remove(HEADLESS_LABEL);
    }
    l.insert(
        SERVICE_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    l.insert(MANAGED_BY_LABEL.into(), CONTROLLER_NAME.into());
    l
}

fn owner_ref(svc: &Service) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Service".into(),
        name: svc.metadata.name.clone().unwrap_or_default(),
        uid: svc.metadata.uid.clone().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

fn new_slice(svc: &Service, ports: Vec<SlicePort>, endpoints: Vec<Endpoint>) -> EndpointSlice {
    EndpointSlice {
        metadata: ObjectMeta {
            generate_name: Some(format!(
                "{}-",
                svc.metadata.name.as_deref().unwrap_or_default()
            )),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(slice_labels(svc)),
            owner_references: Some(vec![owner_ref(svc)]),
            ..Default::default()
        },
        address_type: "IPv4".into(),
        endpoints,
        ports: Some(ports),
    }
}

fn json<T: serde::Serialize>(t: &T) -> serde_json::Value {
    serde_json::to_value(t).unwrap_or_default()
}

fn ports_key(ports: &[SlicePort]) -> String {
    json(&ports).to_string()
}

fn endpoint_key(e: &Endpoint) -> String {
    let uid = e
        .target_ref
        .as_ref()
        .and_then(|r| r.uid.as_deref())
        .unwrap_or("");
    format!("{}/{uid}", e.addresses.first().map_or("", String::as_str))
}

/// Plans a Service's EndpointSlices. `existing` are the slices this
/// controller manages for it; `nodes` gives zones (and, without
/// `publishNotReadyAddresses`, which pods count: those on known nodes).
///
/// Endpoints are grouped by their port set. An existing slice keeps the
/// endpoints still wanted (updated in place when they changed) and loses
/// the others; new endpoints fill slices being updated anyway, then ones with
/// room, then new slices of at most `max_per_slice`. Emptied slices and
/// slices of port sets no longer wanted are deleted. A Service without
/// endpoints keeps one placeholder slice with no endpoints and no ports.
/// Created and updated slices carry `trigger` as
/// [`TRIGGER_TIME_ANNOTATION`]; it is not compared.
pub fn plan_slices(
    svc: &Service,
    pods: &[&Pod],
    nodes: &HashMap<String, &Node>,
    existing: &[&EndpointSlice],
    max_per_slice: usize,
    trigger: Option<&str>,
) -> SlicePlan {
    let pnra = publish_not_ready(svc);
    let mut want: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods.iter().filter(|p| selects(svc, p)) {
        if !should_be_in_endpoints(pod, true) {
            continue;
        }
        let Some(ip) = pod_ipv4(pod) else {
            continue;
        };
        let node_name = pod
            .spec
            .as_ref()
            .and_then(|s| s.node_name.as_deref())
            .unwrap_or("");
        let node = nodes.get(node_name).copied();
        if node.is_none() && !pnra {
            continue;
        }
        // A pod with none of the Service's ports is still listed, in a slice
        // without ports, as Kubernetes does.
        let ports = slice_ports(svc, pod);
        let ep = pod_endpoint(pod, ip, node, svc);
        Group::add(&mut want, "IPv4", ports, ep);
    }
    let template = Template {
        meta: new_slice(svc, Vec::new(), Vec::new()).metadata,
        compare_annotations: false,
        placeholder: true,
    };
    reconcile_slices(&template, want, existing, max_per_slice, trigger)
}

/// Wanted endpoints of one address type and port set.
#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    address_type: String,
    ports: Vec<SlicePort>,
    /// By address and pod UID.
    endpoints: BTreeMap<String, Endpoint>,
}

impl Group {
    fn key(address_type: &str, ports: &[SlicePort]) -> String {
        format!("{address_type}/{}", ports_key(ports))
    }

    /// Adds `ep` to the group of its address type and ports.
    pub(crate) fn add(
        groups: &mut BTreeMap<String, Group>,
        address_type: &str,
        ports: Vec<SlicePort>,
        ep: Endpoint,
    ) {
        groups
            .entry(Self::key(address_type, &ports))
            .or_insert_with(|| Group {
                address_type: address_type.to_string(),
                ports,
                endpoints: BTreeMap::new(),
            })
            .endpoints
            .entry(endpoint_key(&ep))
            .or_insert(ep);
    }
}

/// How a controller's slices look apart from their endpoints.
pub(crate) struct Template {
    /// generateName, namespace, labels, owners (and annotations, when compared).
    pub(crate) meta: ObjectMeta,
    /// Whether annotations are part of what must match (the mirroring controller's).
    pub(crate) compare_annotations: bool,
    /// Whether a Service without endpoints keeps one empty slice.
    pub(crate) placeholder: bool,
}

fn annotations_but_trigger(m: &ObjectMeta) -> BTreeMap<String, String> {
    let mut a = m.annotations.clone().unwrap_or_default();
    a.remove(TRIGGER_TIME_ANNOTATION);
    a
}

/// The reconciliation both slice controllers share: an existing slice keeps
/// the endpoints still wanted (updated in place when they changed) and loses
/// the others; new endpoints fill slices being updated anyway, then ones with
/// room, then new slices of at most `max_per_slice`. Emptied slices and
/// slices of port sets no longer wanted are deleted.
pub(crate) fn reconcile_slices(
    t: &Template,
    want: BTreeMap<String, Group>,
    existing: &[&EndpointSlice],
    max_per_slice: usize,
    trigger: Option<&str>,
) -> SlicePlan {
    let max_per_slice = max_per_slice.max(1);
    let labels = labels_of(&t.meta);
    let owner = json(&t.meta.owner_references);
    let want_ann = annotations_but_trigger(&t.meta);
    let new = |g: &Group, eps: Vec<Endpoint>| {
        let mut s = EndpointSlice {
            metadata: t.meta.clone(),
            address_type: g.address_type.clone(),
            endpoints: eps,
            ports: Some(g.ports.clone()),
        };
        stamp(&mut s, trigger);
        s
    };
    let mut plan = SlicePlan::default();
    let mut sorted: Vec<&EndpointSlice> = existing.to_vec();
    sorted.sort_by(|a, b| a.metadata.name.cmp(&b.metadata.name));
    let meta_right = |s: &EndpointSlice| {
        labels_of(&s.metadata) == labels
            && json(&s.metadata.owner_references) == owner
            && (!t.compare_annotations || annotations_but_trigger(&s.metadata) == want_ann)
    };

    if want.is_empty() && t.placeholder {
        // The placeholder: keep one that is already right, delete the rest.
        let mut kept = false;
        for s in sorted {
            let right = s.endpoints.is_empty()
                && s.ports.as_deref().unwrap_or(&[]).is_empty()
                && s.address_type == "IPv4"
                && meta_right(s);
            if right && !kept {
                kept = true;
            } else {
                plan.delete
                    .push(s.metadata.name.clone().unwrap_or_default());
            }
        }
        if !kept {
            let g = Group {
                address_type: "IPv4".into(),
                ..Default::default()
            };
            plan.create.push(new(&g, Vec::new()));
        }
        return plan;
    }

    // Existing slices: keep, change or drop their endpoints.
    // (slice, changed) by group key.
    let mut kept: BTreeMap<String, Vec<(EndpointSlice, bool)>> = BTreeMap::new();
    let mut placed: HashSet<(String, String)> = HashSet::new();
    for s in sorted {
        let name = s.metadata.name.clone().unwrap_or_default();
        let key = Group::key(&s.address_type, s.ports.as_deref().unwrap_or(&[]));
        let Some(g) = want.get(&key) else {
            plan.delete.push(name);
            continue;
        };
        let mut changed = !meta_right(s);
        let mut keep = Vec::new();
        for e in &s.endpoints {
            let k = endpoint_key(e);
            match g.endpoints.get(&k) {
                Some(w) if placed.insert((key.clone(), k)) => {
                    if json(w) != json(e) {
                        changed = true;
                    }
                    keep.push(w.clone());
                }
                _ => changed = true,
            }
        }
        if keep.is_empty() {
            plan.delete.push(name);
            continue;
        }
        let mut s = s.clone();
        s.endpoints = keep;
        kept.entry(key).or_default().push((s, changed));
    }

    // New endpoints: slices being changed first, then ones with room, then new ones.
    for (key, g) in &want {
        let mut rest = g
            .endpoints
            .iter()
            .filter(|(k, _)| !placed.contains(&(key.clone(), (*k).clone())))
            .map(|(_, e)| e.clone())
            .peekable();
        let mut slices = kept.remove(key).unwrap_or_default();
        slices.sort_by_key(|(_, changed)| !*changed);
        for (s, changed) in slices.iter_mut() {
            while s.endpoints.len() < max_per_slice
                && let Some(e) = rest.next()
            {
                s.endpoints.push(e);
                *changed = true;
            }
        }
        for (mut s, changed) in slices {
            if changed {
                s.metadata.labels = t.meta.labels.clone();
                s.metadata.owner_references = t.meta.owner_references.clone();
                if t.compare_annotations {
                    s.metadata.annotations = t.meta.annotations.clone();
                }
                stamp(&mut s, trigger);
                plan.update.push(s);
            }
        }
        let rest: Vec<Endpoint> = rest.collect();
        for chunk in rest.chunks(max_per_slice) {
            plan.create.push(new(g, chunk.to_vec()));
        }
    }
    plan
}

fn stamp(s: &mut EndpointSlice, trigger: Option<&str>) {
    if let Some(t) = trigger {
        s.metadata
            .annotations
            .get_or_insert_with(BTreeMap::new)
            .insert(TRIGGER_TIME_ANNOTATION.into(), t.into());
    }
}

// ---------------------------------------------------------------------------
// The loop
// ---------------------------------------------------------------------------

/// Runs the controllers with a pod watch of their own (for tests).
pub async fn run(client: kube::Client, config: crate::Config, shutdown: watch::Receiver<bool>) {
    let pods = crate::informer::own_pods(client.clone());
    run_with_pods(client, config, pods, shutdown).await
}

struct State {
    services: Cache<Service>,
    pods: Cache<Pod>,
    nodes: Cache<Node>,
    endpoints: Cache<Endpoints>,
    slices: Cache<EndpointSlice>,
    /// Pod keys by namespace.
    pods_by_ns: HashMap<String, BTreeSet<String>>,
}

fn ns_of(key: &str) -> &str {
    key.split_once('/').map_or("", |(ns, _)| ns)
}

impl State {
    fn index_pods(&mut self) {
        self.pods_by_ns.clear();
        for k in self.pods.items.keys() {
            self.pods_by_ns
                .entry(ns_of(k).to_string())
                .or_default()
                .insert(k.clone());
        }
    }

    /// Services in `ns` selecting `pod`.
    fn services_of(&self, pod: &Pod, out: &mut BTreeSet<String>) {
        for (k, s) in &self.services.items {
            if selects(s, pod) {
                out.insert(k.clone());
            }
        }
    }

    fn pods_in(&self, ns: &str) -> Vec<&Pod> {
        self.pods_by_ns
            .get(ns)
            .into_iter()
            .flatten()
            .filter_map(|k| self.pods.get(k))
            .collect()
    }

    /// The slices `manager` keeps for the Service `svc_key`.
    fn slices_of(&self, svc_key: &str, manager: &str) -> Vec<&EndpointSlice> {
        let (ns, name) = svc_key.split_once('/').unwrap_or(("", svc_key));
        self.slices
            .values()
            .filter(|s| {
                s.metadata.namespace.as_deref() == Some(ns)
                    && s.metadata.labels.as_ref().is_some_and(|l| {
                        l.get(SERVICE_NAME_LABEL).map(String::as_str) == Some(name)
                            && l.get(MANAGED_BY_LABEL).map(String::as_str) == Some(manager)
                    })
            })
            .collect()
    }
}

fn slice_service_key(s: &EndpointSlice) -> Option<String> {
    let l = s.metadata.labels.as_ref()?;
    let manager = l.get(MANAGED_BY_LABEL).map(String::as_str);
    matches!(
        manager,
        Some(CONTROLLER_NAME | mirror::MIRROR_CONTROLLER_NAME)
    )
    .then(|| {
        format!(
            "{}/{}",
            s.metadata.namespace.as_deref().unwrap_or(""),
            l.get(SERVICE_NAME_LABEL).map_or("", String::as_str)
        )
    })
}

/// Runs the Endpoints and EndpointSlice controllers on a shared pod stream
/// ([`crate::informer`]) until `shutdown` turns true.
pub async fn run_with_pods(
    client: kube::Client,
    config: crate::Config,
    pods_in: crate::informer::PodStream,
    mut shutdown: watch::Receiver<bool>,
) {
    let wc = watcher::Config::default;
    let mut svc_w = watcher(Api::<Service>::all(client.clone()), wc()).boxed();
    let mut node_w = watcher(Api::<Node>::all(client.clone()), wc()).boxed();
    let mut ep_w = watcher(Api::<Endpoints>::all(client.clone()), wc()).boxed();
    // Every slice (both controllers' and the users'), filtered by manager here.
    let mut slice_w = watcher(Api::<EndpointSlice>::all(client.clone()), wc()).boxed();
    let mut pod_w = pods_in;
    let mut st = State {
        services: Cache::new(),
        pods: Cache::new(),
        nodes: Cache::new(),
        endpoints: Cache::new(),
        slices: Cache::new(),
        pods_by_ns: HashMap::new(),
    };
    let mut dirty: BTreeSet<String> = BTreeSet::new();
    let mut retry: BTreeSet<String> = BTreeSet::new();
    // Services seen deleted (or missing at start), whose Endpoints go too.
    let mut gone: HashSet<String> = HashSet::new();
    let mut started = false;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    // Events taken in since the last sync.
    let mut backlog = 0usize;
    loop {
        let synced = st.services.synced
            && st.pods.synced
            && st.nodes.synced
            && st.endpoints.synced
            && st.slices.synced;
        if synced && !started {
            started = true;
            // Every Service, and leftovers of Services gone while we were away.
            dirty.extend(st.services.items.keys().cloned());
            for k in st.endpoints.items.keys() {
                if !st.services.items.contains_key(k) {
                    gone.insert(k.clone());
                    dirty.insert(k.clone());
                }
            }
            dirty.extend(st.slices.values().filter_map(slice_service_key));
        }
        // Events already waiting are taken in first (so a burst of pod changes
        // makes one sync, as a workqueue would), but never more than
        // MAX_BACKLOG before the dirty Services are synced.
        if started && !dirty.is_empty() && backlog >= MAX_BACKLOG {
            sync_all(&client, &config, &mut st, &mut dirty, &mut retry, &mut gone).await;
            backlog = 0;
        }
        backlog += 1;
        tokio::select! {
            biased;
            _ = shutdown.changed() => return,
            ev = svc_w.next() => match ev {
                Some(Ok(e)) => {
                    match &e {
                        watcher::Event::Apply(s) => {
                            let k = crate::key_of(&s.metadata);
                            gone.remove(&k);
                            dirty.insert(k);
                        }
                        watcher::Event::Delete(s) => {
                            let k = crate::key_of(&s.metadata);
                            gone.insert(k.clone());
                            dirty.insert(k);
                        }
                        _ => {}
                    }
                    let relisted = matches!(e, watcher::Event::InitDone);
                    let before: Vec<String> = if relisted && started {
                        st.services.items.keys().cloned().collect()
                    } else {
                        Vec::new()
                    };
                    st.services.apply(e);
                    if relisted {
                        // A re-list: anything may have changed, and Services
                        // deleted while the watch was down are gone.
                        for k in before {
                            if !st.services.items.contains_key(&k) {
                                gone.insert(k.clone());
                                dirty.insert(k);
                            }
                        }
                        dirty.extend(st.services.items.keys().cloned());
                    }
                }
                Some(Err(e)) => tracing::debug!("endpoints: service watch: {e}"),
                None => return,
            },
            ev = pod_w.next() => match ev {
                Some(Ok(e)) => {
                    match &e {
                        watcher::Event::Apply(p) | watcher::Event::Delete(p) => {
                            let key = crate::key_of(&p.metadata);
                            if let Some(old) = st.pods.get(&key) {
                                st.services_of(old, &mut dirty);
                            }
                            st.services_of(p, &mut dirty);
                            if matches!(e, watcher::Event::Delete(_)) {
                                if let Some(s) = st.pods_by_ns.get_mut(ns_of(&key)) {
                                    s.remove(&key);
                                }
                            } else {
                                st.pods_by_ns.entry(ns_of(&key).to_string()).or_default().insert(key);
                            }
                            st.pods.apply(e);
                        }
                        watcher::Event::InitDone => {
                            st.pods.apply(e);
                            st.index_pods();
                            dirty.extend(st.services.items.keys().cloned());
                        }
                        _ => { st.pods.apply(e); }
                    }
                }
                Some(Err(e)) => tracing::debug!("endpoints: pod watch: {e}"),
                None => return,
            },
            ev = node_w.next() => match ev {
                Some(Ok(e)) => {
                    // Zones and node existence matter to slices; node changes
                    // that touch neither are ignored.
                    let relevant = match &e {
                        watcher::Event::Apply(n) => {
                            let zone = |n: &Node| n.metadata.labels.as_ref().and_then(|l| l.get("topology.kubernetes.io/zone")).cloned();
                            st.nodes.get(&crate::key_of(&n.metadata)).is_none_or(|old| zone(old) != zone(n))
                        }
                        watcher::Event::Delete(_) | watcher::Event::InitDone => true,
                        _ => false,
                    };
                    st.nodes.apply(e);
                    if relevant && started {
                        dirty.extend(st.services.items.keys().cloned());
                    }
                }
                Some(Err(e)) => tracing::debug!("endpoints: node watch: {e}"),
                None => return,
            },
            ev = ep_w.next() => match ev {
                Some(Ok(e)) => {
                    if let watcher::Event::Apply(o) | watcher::Event::Delete(o) = &e {
                        dirty.insert(crate::key_of(&o.metadata));
                    }
                    st.endpoints.apply(e);
                }
                Some(Err(e)) => tracing::debug!("endpoints: endpoints watch: {e}"),
                None => return,
            },
            ev = slice_w.next() => match ev {
                Some(Ok(e)) => {
                    if let watcher::Event::Apply(o) | watcher::Event::Delete(o) = &e
                        && let Some(k) = slice_service_key(o)
                    {
                        dirty.insert(k);
                    }
                    st.slices.apply(e);
                }
                Some(Err(e)) => tracing::debug!("endpoints: endpointslice watch: {e}"),
                None => return,
            },
            _ = tick.tick() => {
                dirty.append(&mut retry);
            }
            _ = std::future::ready(()), if started && !dirty.is_empty() => {
                sync_all(&client, &config, &mut st, &mut dirty, &mut retry, &mut gone).await;
                backlog = 0;
            }
        }
    }
}

/// The most watch events taken in before dirty Services are synced.
const MAX_BACKLOG: usize = 256;

async fn sync_all(
    client: &kube::Client,
    config: &crate::Config,
    st: &mut State,
    dirty: &mut BTreeSet<String>,
    retry: &mut BTreeSet<String>,
    gone: &mut HashSet<String>,
) {
    for key in std::mem::take(dirty) {
        let deleted = gone.remove(&key);
        if let Err(e) = sync(client, config, st, &key, deleted).await {
            tracing::debug!("endpoints: syncing {key}: {e}");
            if deleted {
                gone.insert(key.clone());
            }
            retry.insert(key);
        }
    }
}

/// Brings one Service's Endpoints and EndpointSlices up to date. `deleted`:
/// the Service was seen deleted (or was missing at start), so its Endpoints
/// go; Endpoints without a Service are otherwise left alone (a user may
/// write them before the Service).
async fn sync(
    client: &kube::Client,
    config: &crate::Config,
    st: &mut State,
    key: &str,
    deleted: bool,
) -> Result<(), kube::Error> {
    let (ns, name) = key.split_once('/').unwrap_or(("", key));
    let ep_api: Api<Endpoints> = Api::namespaced(client.clone(), ns);
    let svc = st.services.get(key).cloned();
    if svc.is_none()
        && deleted
        && let Some(ep) = st.endpoints.get(key)
        && !ep
            .metadata
            .annotations
            .as_ref()
            .is_some_and(|a| a.contains_key(LEADER_ANNOTATION))
    {
        ignore_not_found(
            ep_api
                .delete(name, &DeleteParams::default())
                .await
                .map(|_| ()),
        )?;
        st.endpoints.items.remove(key);
    }
    // The mirroring controller.
    let ep = st.endpoints.get(key);
    let mirrored = st.slices_of(key, mirror::MIRROR_CONTROLLER_NAME);
    let plan = match ep {
        Some(ep) if mirror::should_mirror(svc.as_ref(), Some(ep)) => {
            mirror::plan_mirror(ep, &mirrored, mirror::MAX_MIRRORED_PER_SUBSET)
        }
        _ => mirror::plan_unmirror(&mirrored),
    };
    write_slices(client, st, ns, plan).await?;

    let Some(svc) = svc.filter(|s| selector(s).is_some()) else {
        // No Service (its slices go, as the garbage collector would take
        // them), or one whose Endpoints are the user's.
        if st.services.get(key).is_none() {
            let ours = st.slices_of(key, CONTROLLER_NAME);
            write_slices(client, st, ns, mirror::plan_unmirror(&ours)).await?;
        }
        return Ok(());
    };
    let pods = st.pods_in(ns);
    let trigger = trigger_time(&svc, &pods);
    let ep_plan = plan_endpoints(&svc, &pods, st.endpoints.get(key), trigger.as_deref());
    let nodes: HashMap<String, &Node> = st
        .nodes
        .values()
        .map(|n| (n.metadata.name.clone().unwrap_or_default(), n))
        .collect();
    let plan = plan_slices(
        &svc,
        &pods,
        &nodes,
        &st.slices_of(key, CONTROLLER_NAME),
        config.max_endpoints_per_slice,
        trigger.as_deref(),
    );
    if let Some(ep) = ep_plan {
        let written = if ep.metadata.resource_version.is_some() {
            ep_api.replace(name, &PostParams::default(), &ep).await?
        } else {
            ep_api.create(&PostParams::default(), &ep).await?
        };
        st.endpoints.put(written);
    }
    write_slices(client, st, ns, plan).await
}

/// Carries out a slice plan in `ns`, keeping the cache in step.
async fn write_slices(
    client: &kube::Client,
    st: &mut State,
    ns: &str,
    plan: SlicePlan,
) -> Result<(), kube::Error> {
    let api: Api<EndpointSlice> = Api::namespaced(client.clone(), ns);
    for s in plan.update {
        let n = s.metadata.name.clone().unwrap_or_default();
        let w = api.replace(&n, &PostParams::default(), &s).await?;
        st.slices.put(w);
    }
    for s in plan.create {
        let w = api.create(&PostParams::default(), &s).await?;
        st.slices.put(w);
    }
    for n in plan.delete {
        ignore_not_found(api.delete(&n, &DeleteParams::default()).await.map(|_| ()))?;
        st.slices.items.remove(&format!("{ns}/{n}"));
    }
    Ok(())
}

fn ignore_not_found(r: Result<(), kube::Error>) -> Result<(), kube::Error> {
    match r {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        r => r,
    }
}

pub mod mirror;

#[cfg(test)]
mod tests;
