//! `kubectl get` tables: column definitions and rows per kind.
//!
//! The apiserver answers `Accept: application/json;as=Table;v=v1;g=meta.k8s.io`
//! with a `meta.k8s.io/v1 Table` built from [`columns`] and [`row`]. Both follow
//! Kubernetes' server-side printers: the columns carry the same names, types,
//! formats, descriptions and priorities, and every row holds all cells, the
//! `-o wide` ones (priority 1) included, as the Kubernetes apiserver always
//! generates wide rows and leaves hiding them to kubectl.
//!
//! Objects are read as their v1 JSON wire form and every field may be missing.
//! A kind Kubernetes has no printer for gets the apiserver's default table:
//! `Name` and `Created At`.

use crate::catalog::ResourceInfo;
use jiff::{SignedDuration, Timestamp};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};

/// One column of a table, as `meta.k8s.io/v1 TableColumnDefinition`.
#[derive(Debug, Clone, PartialEq)]
pub struct Column {
    /// Header, e.g. `Name`.
    pub name: &'static str,
    /// `string`, `integer`, `date`, …
    pub type_: &'static str,
    /// OpenAPI format, e.g. `name`.
    pub format: &'static str,
    /// Description.
    pub description: &'static str,
    /// 0 for default columns, 1 for `-o wide`.
    pub priority: u8,
}

impl Column {
    /// The column as a `TableColumnDefinition` JSON object.
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "type": self.type_,
            "format": self.format,
            "description": self.description,
            "priority": self.priority,
        })
    }
}

// Column descriptions: the API documentation of the field each column shows,
// as Kubernetes takes it from the types' swagger docs.
const D_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const D_CREATED: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const D_POD_IP: &str = "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.";
const D_NOMINATED: &str = "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.";
const D_NODE_NAME: &str = "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename";
const D_READINESS_GATES: &str = "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates";
const D_NODE_SELECTOR: &str = "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/";
const D_RS_SPEC_REPLICAS: &str = "Replicas is the number of desired pods. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
const D_RS_SELECTOR: &str = "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const D_RS_REPLICAS: &str = "Replicas is the most recently observed number of non-terminating pods. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicaset";
const D_RS_READY: &str =
    "The number of non-terminating pods targeted by this ReplicaSet with a Ready Condition.";
const D_DS_DESIRED: &str = "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const D_DS_CURRENT: &str = "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/";
const D_DS_READY: &str = "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.";
const D_DS_UPDATED: &str = "The total number of nodes that are running updated daemon pod";
const D_DS_AVAILABLE: &str = "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)";
const D_DS_SELECTOR: &str = "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const D_JOB_SUCCEEDED: &str = "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.";
const D_JOB_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";
const D_CJ_SCHEDULE: &str = "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.";
const D_CJ_TIMEZONE: &str = "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones";
const D_CJ_SUSPEND: &str = "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.";
const D_CJ_ACTIVE: &str = "A list of pointers to currently running jobs.";
const D_CJ_LAST_SCHEDULE: &str =
    "Information when was the last time the job was successfully scheduled.";
const D_SVC_TYPE: &str = "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types";
const D_SVC_CLUSTER_IP: &str = "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const D_SVC_EXTERNAL_IPS: &str = "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.";
const D_SVC_PORTS: &str = "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies";
const D_SVC_SELECTOR: &str = "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/";
const D_EP_SUBSETS: &str = "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.";
const D_NODE_KUBELET: &str = "Kubelet Version reported by the node.";
const D_NODE_OS_IMAGE: &str =
    "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).";
const D_NODE_KERNEL: &str =
    "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).";
const D_NODE_RUNTIME: &str = "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).";
const D_NODE_ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
const D_EV_LAST: &str = "The time at which the most recent occurrence of this event was recorded.";
const D_EV_TYPE: &str =
    "Type of this event (Normal, Warning), new types could be added in the future";
const D_EV_REASON: &str = "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.";
const D_EV_OBJECT: &str = "The object that this event is about.";
const D_EV_SOURCE: &str =
    "The component reporting this event. Should be a short machine understandable string.";
const D_EV_MESSAGE: &str = "A human-readable description of the status of this operation.";
const D_EV_FIRST: &str =
    "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)";
const D_EV_COUNT: &str = "The number of times this event has occurred.";
const D_EV_FIELD_PATH: &str = "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.";
const D_SECRET_TYPE: &str = "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types";
const D_SECRET_DATA: &str = "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4";
const D_SA_SECRETS: &str = "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret";
const D_PV_CAPACITY: &str = "capacity is the description of the persistent volume's resources and capacity. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#capacity";
const D_PV_ACCESS_MODES: &str = "accessModes contains all ways the volume can be mounted. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes";
const D_PV_RECLAIM: &str = "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim. Valid options are Retain (default for manually created PersistentVolumes), Delete (default for dynamically provisioned PersistentVolumes), and Recycle (deprecated). Recycle must be supported by the volume plugin underlying this PersistentVolume. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#reclaiming";
const D_PV_CLAIM: &str = "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim. Expected to be non-nil when bound. claim.VolumeName is the authoritative bind between PV and PVC. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#binding";
const D_PV_VOLUME_MODE: &str = "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state. Value of Filesystem is implied when not included in spec.";
const D_PV_PHASE: &str = "phase indicates if a volume is available, bound to a claim, or released by a claim. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#phase";
const D_PV_REASON: &str = "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.";
const D_PVC_PHASE: &str = "phase represents the current phase of PersistentVolumeClaim.";
const D_PVC_CAPACITY: &str = "capacity represents the actual resources of the underlying volume.";
const D_PVC_ACCESS_MODES: &str = "accessModes contains the actual access modes the volume backing the PVC has. More info: https://kubernetes.io/docs/concepts/storage/persistent-volumes#access-modes-1";
const D_PVC_VOLUME: &str =
    "volumeName is the binding reference to the PersistentVolume backing this claim.";
const D_PVC_VOLUME_MODE: &str = "volumeMode defines what type of volume is required by the claim. Value of Filesystem is implied when not included in claim spec.";
const D_DEPLOY_UPDATED: &str = "Total number of non-terminating pods targeted by this deployment that have the desired template spec.";
const D_DEPLOY_AVAILABLE: &str = "Total number of available non-terminating pods (ready for at least minReadySeconds) targeted by this deployment.";
const D_DEPLOY_SELECTOR: &str = "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.";
const D_HPA_REF: &str = "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.";
const D_HPA_METRICS: &str = "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).  The desired replica count is calculated multiplying the ratio between the target value and the current value by the current number of pods.  Ergo, metrics used must decrease as the pod count is increased, and vice-versa.  See the individual metric source types for more information about how each type of metric must respond. If not set, the default metric will be set to 80% average CPU utilization.";
const D_HPA_MIN: &str = "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.  It defaults to 1 pod.  minReplicas is allowed to be 0 if the alpha feature gate HPAScaleToZero is enabled and at least one Object or External metric is configured.  Scaling is active as long as at least one metric value is available.";
const D_HPA_MAX: &str = "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up. It cannot be less that minReplicas.";
const D_HPA_CURRENT: &str = "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.";
const D_CM_DATA: &str = "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.";
const D_LEASE_HOLDER: &str = "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.";
const D_SC_PROVISIONER: &str = "provisioner indicates the type of the provisioner.";
const D_SC_RECLAIM: &str = "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.";
const D_SC_BINDING: &str = "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.";
const D_SC_EXPANSION: &str =
    "allowVolumeExpansion shows whether the storage class allow volume expand.";
const D_CR_REVISION: &str = "Revision indicates the revision of the state represented by Data.";
const D_PC_VALUE: &str = "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.";
const D_PC_GLOBAL: &str = "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.";
const D_PC_PREEMPTION: &str = "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.";
const D_EPS_ADDRESS_TYPE: &str = "addressType specifies the type of address carried by this EndpointSlice. All addresses in this slice must be the same type. This field is immutable after creation. The following address types are currently supported: * IPv4: Represents an IPv4 Address. * IPv6: Represents an IPv6 Address. * FQDN: Represents a Fully Qualified Domain Name. (Deprecated) The EndpointSlice controller only generates, and kube-proxy only processes, slices of addressType \"IPv4\" and \"IPv6\". No semantics are defined for the \"FQDN\" type.";
const D_EPS_PORTS: &str = "ports specifies the list of network ports exposed by each endpoint in this slice. Each port must have a unique name. Each slice may include a maximum of 100 ports. Services always have at least 1 port, so EndpointSlices generated by the EndpointSlice controller will likewise always have at least 1 port. EndpointSlices used for other purposes may have an empty ports list.";
const D_EPS_ENDPOINTS: &str = "endpoints is a list of unique endpoints in this slice. Each slice may include a maximum of 1000 endpoints.";

const D_POD_READY: &str = "The aggregate readiness state of this pod for accepting traffic.";
const D_POD_STATUS: &str = "The aggregate status of the containers in this pod.";
const D_POD_RESTARTS: &str = "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.";
const D_CONTAINERS: &str = "Names of each container in the template.";
const D_IMAGES: &str = "Images referenced by each container in the template.";
const D_READY_PODS: &str = "Number of the pod with ready state";

const fn col(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 0,
    }
}

const fn wide(name: &'static str, type_: &'static str, description: &'static str) -> Column {
    Column {
        name,
        type_,
        format: "",
        description,
        priority: 1,
    }
}

const NAME: Column = Column {
    name: "Name",
    type_: "string",
    format: "name",
    description: D_NAME,
    priority: 0,
};
const AGE: Column = col("Age", "string", D_CREATED);

/// The printer Kubernetes uses for a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Printer {
    Pod,
    Namespace,
    Event,
    Node,
    ConfigMap,
    Secret,
    Service,
    Endpoints,
    ServiceAccount,
    PersistentVolume,
    PersistentVolumeClaim,
    Deployment,
    ReplicaSet,
    StatefulSet,
    DaemonSet,
    ControllerRevision,
    Job,
    CronJob,
    HorizontalPodAutoscaler,
    StorageClass,
    Lease,
    EndpointSlice,
    PriorityClass,
    PodDisruptionBudget,
    Default,
}

fn printer(r: &ResourceInfo) -> Printer {
    use Printer::*;
    match (r.group, r.resource) {
        ("", "pods") => Pod,
        ("", "namespaces") => Namespace,
        ("" | "events.k8s.io", "events") => Event,
        ("", "nodes") => Node,
        ("", "configmaps") => ConfigMap,
        ("", "secrets") => Secret,
        ("", "services") => Service,
        ("", "endpoints") => Endpoints,
        ("", "serviceaccounts") => ServiceAccount,
        ("", "persistentvolumes") => PersistentVolume,
        ("", "persistentvolumeclaims") => PersistentVolumeClaim,
        ("apps", "deployments") => Deployment,
        ("apps", "replicasets") => ReplicaSet,
        ("apps", "statefulsets") => StatefulSet,
        ("apps", "daemonsets") => DaemonSet,
        ("apps", "controllerrevisions") => ControllerRevision,
        ("batch", "jobs") => Job,
        ("batch", "cronjobs") => CronJob,
        ("autoscaling", "horizontalpodautoscalers") => HorizontalPodAutoscaler,
        ("storage.k8s.io", "storageclasses") => StorageClass,
        ("coordination.k8s.io", "leases") => Lease,
        ("discovery.k8s.io", "endpointslices") => EndpointSlice,
        ("scheduling.k8s.io", "priorityclasses") => PriorityClass,
        ("policy", "poddisruptionbudgets") => PodDisruptionBudget,
        _ => Default,
    }
}

/// The columns for this kind.
pub fn columns(r: &ResourceInfo) -> Vec<Column> {
    use Printer as P;
    match printer(r) {
        P::Pod => vec![
            NAME,
            col("Ready", "string", D_POD_READY),
            col("Status", "string", D_POD_STATUS),
            col("Restarts", "string", D_POD_RESTARTS),
            AGE,
            wide("IP", "string", D_POD_IP),
            wide("Node", "string", D_NODE_NAME),
            wide("Nominated Node", "string", D_NOMINATED),
            wide("Readiness Gates", "string", D_READINESS_GATES),
        ],
        P::Namespace => vec![
            NAME,
            col("Status", "string", "The status of the namespace"),
            AGE,
        ],
        P::Event => vec![
            col("Last Seen", "string", D_EV_LAST),
            col("Type", "string", D_EV_TYPE),
            col("Reason", "string", D_EV_REASON),
            col("Object", "string", D_EV_OBJECT),
            wide("Subobject", "string", D_EV_FIELD_PATH),
            wide("Source", "string", D_EV_SOURCE),
            col("Message", "string", D_EV_MESSAGE),
            wide("First Seen", "string", D_EV_FIRST),
            wide("Count", "string", D_EV_COUNT),
            Column {
                priority: 1,
                ..NAME
            },
        ],
        P::Node => vec![
            NAME,
            col("Status", "string", "The status of the node"),
            col("Roles", "string", "The roles of the node"),
            AGE,
            col("Version", "string", D_NODE_KUBELET),
            wide("Internal-IP", "string", D_NODE_ADDRESSES),
            wide("External-IP", "string", D_NODE_ADDRESSES),
            wide("OS-Image", "string", D_NODE_OS_IMAGE),
            wide("Kernel-Version", "string", D_NODE_KERNEL),
            wide("Container-Runtime", "string", D_NODE_RUNTIME),
        ],
        P::ConfigMap => vec![NAME, col("Data", "string", D_CM_DATA), AGE],
        P::Secret => vec![
            NAME,
            col("Type", "string", D_SECRET_TYPE),
            col("Data", "string", D_SECRET_DATA),
            AGE,
        ],
        P::Service => vec![
            NAME,
            col("Type", "string", D_SVC_TYPE),
            col("Cluster-IP", "string", D_SVC_CLUSTER_IP),
            col("External-IP", "string", D_SVC_EXTERNAL_IPS),
            col("Port(s)", "string", D_SVC_PORTS),
            AGE,
            wide("Selector", "string", D_SVC_SELECTOR),
        ],
        P::Endpoints => vec![NAME, col("Endpoints", "string", D_EP_SUBSETS), AGE],
        P::ServiceAccount => vec![NAME, col("Secrets", "string", D_SA_SECRETS), AGE],
        P::PersistentVolume => vec![
            NAME,
            col("Capacity", "string", D_PV_CAPACITY),
            col("Access Modes", "string", D_PV_ACCESS_MODES),
            col("Reclaim Policy", "string", D_PV_RECLAIM),
            col("Status", "string", D_PV_PHASE),
            col("Claim", "string", D_PV_CLAIM),
            col("StorageClass", "string", "StorageClass of the pv"),
            col(
                "VolumeAttributesClass",
                "string",
                "VolumeAttributesClass of the pv",
            ),
            col("Reason", "string", D_PV_REASON),
            AGE,
            wide("VolumeMode", "string", D_PV_VOLUME_MODE),
        ],
        P::PersistentVolumeClaim => vec![
            NAME,
            col("Status", "string", D_PVC_PHASE),
            col("Volume", "string", D_PVC_VOLUME),
            col("Capacity", "string", D_PVC_CAPACITY),
            col("Access Modes", "string", D_PVC_ACCESS_MODES),
            col("StorageClass", "string", "StorageClass of the pvc"),
            col(
                "VolumeAttributesClass",
                "string",
                "VolumeAttributesClass of the pvc",
            ),
            AGE,
            wide("VolumeMode", "string", D_PVC_VOLUME_MODE),
        ],
        P::Deployment => vec![
            NAME,
            col("Ready", "string", D_READY_PODS),
            col("Up-to-date", "string", D_DEPLOY_UPDATED),
            col("Available", "string", D_DEPLOY_AVAILABLE),
            AGE,
            wide("Containers", "string", D_CONTAINERS),
            wide("Images", "string", D_IMAGES),
            wide("Selector", "string", D_DEPLOY_SELECTOR),
        ],
        P::ReplicaSet => vec![
            NAME,
            col("Desired", "integer", D_RS_SPEC_REPLICAS),
            col("Current", "integer", D_RS_REPLICAS),
            col("Ready", "integer", D_RS_READY),
            AGE,
            wide("Containers", "string", D_CONTAINERS),
            wide("Images", "string", D_IMAGES),
            wide("Selector", "string", D_RS_SELECTOR),
        ],
        P::StatefulSet => vec![
            NAME,
            col("Ready", "string", D_READY_PODS),
            AGE,
            wide("Containers", "string", D_CONTAINERS),
            wide("Images", "string", D_IMAGES),
        ],
        P::DaemonSet => vec![
            NAME,
            col("Desired", "integer", D_DS_DESIRED),
            col("Current", "integer", D_DS_CURRENT),
            col("Ready", "integer", D_DS_READY),
            col("Up-to-date", "integer", D_DS_UPDATED),
            col("Available", "integer", D_DS_AVAILABLE),
            col("Node Selector", "string", D_NODE_SELECTOR),
            AGE,
            wide("Containers", "string", D_CONTAINERS),
            wide("Images", "string", D_IMAGES),
            wide("Selector", "string", D_DS_SELECTOR),
        ],
        P::ControllerRevision => vec![
            NAME,
            col("Controller", "string", "Controller of the object"),
            col("Revision", "string", D_CR_REVISION),
            AGE,
        ],
        P::Job => vec![
            NAME,
            col("Status", "string", "Status of the job."),
            col("Completions", "string", D_JOB_SUCCEEDED),
            col("Duration", "string", "Time required to complete the job."),
            AGE,
            wide("Containers", "string", D_CONTAINERS),
            wide("Images", "string", D_IMAGES),
            wide("Selector", "string", D_JOB_SELECTOR),
        ],
        P::CronJob => vec![
            NAME,
            col("Schedule", "string", D_CJ_SCHEDULE),
            col("Timezone", "string", D_CJ_TIMEZONE),
            col("Suspend", "boolean", D_CJ_SUSPEND),
            col("Active", "integer", D_CJ_ACTIVE),
            col("Last Schedule", "string", D_CJ_LAST_SCHEDULE),
            AGE,
            wide("Containers", "string", D_CONTAINERS),
            wide("Images", "string", D_IMAGES),
            wide("Selector", "string", D_JOB_SELECTOR),
        ],
        P::HorizontalPodAutoscaler => vec![
            NAME,
            col("Reference", "string", D_HPA_REF),
            col("Targets", "string", D_HPA_METRICS),
            col("MinPods", "string", D_HPA_MIN),
            col("MaxPods", "string", D_HPA_MAX),
            col("Replicas", "string", D_HPA_CURRENT),
            AGE,
        ],
        P::StorageClass => vec![
            NAME,
            col("Provisioner", "string", D_SC_PROVISIONER),
            col("ReclaimPolicy", "string", D_SC_RECLAIM),
            col("VolumeBindingMode", "string", D_SC_BINDING),
            col("AllowVolumeExpansion", "string", D_SC_EXPANSION),
            AGE,
        ],
        P::Lease => vec![NAME, col("Holder", "string", D_LEASE_HOLDER), AGE],
        P::EndpointSlice => vec![
            NAME,
            col("AddressType", "string", D_EPS_ADDRESS_TYPE),
            col("Ports", "string", D_EPS_PORTS),
            col("Endpoints", "string", D_EPS_ENDPOINTS),
            AGE,
        ],
        P::PriorityClass => vec![
            NAME,
            col("Value", "integer", D_PC_VALUE),
            col("Global-Default", "boolean", D_PC_GLOBAL),
            AGE,
            col("PreemptionPolicy", "string", D_PC_PREEMPTION),
        ],
        P::PodDisruptionBudget => vec![
            NAME,
            col(
                "Min Available",
                "string",
                "The minimum number of pods that must be available.",
            ),
            col(
                "Max Unavailable",
                "string",
                "The maximum number of pods that may be unavailable.",
            ),
            col(
                "Allowed Disruptions",
                "integer",
                "Calculated number of pods that may be disrupted at this time.",
            ),
            AGE,
        ],
        P::Default => vec![NAME, col("Created At", "date", D_CREATED)],
    }
}

/// One row's cells for this kind, `now` giving ages. Wide cells are included.
pub fn row(r: &ResourceInfo, obj: &Value, now: Timestamp) -> Vec<Value> {
    use Printer as P;
    let name = crate::meta::name(obj);
    let age = || Value::from(age(obj, now));
    match printer(r) {
        P::Pod => {
            let summary = pod_summary(obj, now);
            let status = &obj["status"];
            let pod_ip = status["podIPs"]
                .get(0)
                .map(|ip| text(&ip["ip"]))
                .unwrap_or_else(|| text(&status["podIP"]));
            vec![
                name.into(),
                summary.ready.into(),
                summary.status.into(),
                summary.restarts.into(),
                age(),
                or_none(pod_ip).into(),
                or_none(text(&obj["spec"]["nodeName"])).into(),
                or_none(text(&status["nominatedNodeName"])).into(),
                readiness_gates(obj).into(),
            ]
        }
        P::Namespace => vec![name.into(), text(&obj["status"]["phase"]).into(), age()],
        P::Event => event_row(r, obj, now),
        P::Node => node_row(obj, now),
        P::ConfigMap => {
            let n = len(&obj["data"]) + len(&obj["binaryData"]);
            vec![name.into(), n.into(), age()]
        }
        P::Secret => vec![
            name.into(),
            text(&obj["type"]).into(),
            len(&obj["data"]).into(),
            age(),
        ],
        P::Service => service_row(obj, now),
        P::Endpoints => vec![name.into(), format_endpoints(obj).into(), age()],
        P::ServiceAccount => vec![name.into(), len(&obj["secrets"]).into(), age()],
        P::PersistentVolume => pv_row(obj, now),
        P::PersistentVolumeClaim => pvc_row(obj, now),
        P::Deployment => {
            let spec = &obj["spec"];
            let status = &obj["status"];
            let (names, images) = container_cells(&spec["template"]);
            let selector = match selector_string(&spec["selector"]) {
                Some(s) => s,
                None => "<invalid>".to_string(),
            };
            vec![
                name.into(),
                format!("{}/{}", int(&status["readyReplicas"]), replicas(spec)).into(),
                int(&status["updatedReplicas"]).into(),
                int(&status["availableReplicas"]).into(),
                age(),
                names.into(),
                images.into(),
                selector.into(),
            ]
        }
        P::ReplicaSet => {
            let spec = &obj["spec"];
            let status = &obj["status"];
            let (names, images) = container_cells(&spec["template"]);
            vec![
                name.into(),
                replicas(spec).into(),
                int(&status["replicas"]).into(),
                int(&status["readyReplicas"]).into(),
                age(),
                names.into(),
                images.into(),
                format_label_selector(&spec["selector"]).into(),
            ]
        }
        P::StatefulSet => {
            let spec = &obj["spec"];
            let (names, images) = container_cells(&spec["template"]);
            vec![
                name.into(),
                format!(
                    "{}/{}",
                    int(&obj["status"]["readyReplicas"]),
                    replicas(spec)
                )
                .into(),
                age(),
                names.into(),
                images.into(),
            ]
        }
        P::DaemonSet => {
            let spec = &obj["spec"];
            let status = &obj["status"];
            let (names, images) = container_cells(&spec["template"]);
            vec![
                name.into(),
                int(&status["desiredNumberScheduled"]).into(),
                int(&status["currentNumberScheduled"]).into(),
                int(&status["numberReady"]).into(),
                int(&status["updatedNumberScheduled"]).into(),
                int(&status["numberAvailable"]).into(),
                format_labels(&spec["template"]["spec"]["nodeSelector"]).into(),
                age(),
                names.into(),
                images.into(),
                format_label_selector(&spec["selector"]).into(),
            ]
        }
        P::ControllerRevision => vec![
            name.into(),
            controller_of(obj).into(),
            int(&obj["revision"]).into(),
            age(),
        ],
        P::Job => job_row(obj, now),
        P::CronJob => {
            let spec = &obj["spec"];
            let status = &obj["status"];
            let last_schedule = match status["lastScheduleTime"].as_str() {
                Some(t) => since(Some(t), now),
                None => "<none>".to_string(),
            };
            let time_zone = spec["timeZone"].as_str().unwrap_or("<none>");
            let job_spec = &spec["jobTemplate"]["spec"];
            let (names, images) = container_cells(&job_spec["template"]);
            vec![
                name.into(),
                text(&spec["schedule"]).into(),
                time_zone.into(),
                bool_ptr(&spec["suspend"]).into(),
                len(&status["active"]).into(),
                last_schedule.into(),
                age(),
                names.into(),
                images.into(),
                format_label_selector(&job_spec["selector"]).into(),
            ]
        }
        P::HorizontalPodAutoscaler => hpa_row(r, obj, now),
        P::StorageClass => {
            let mut display = name.to_string();
            if is_default_class(obj) {
                display.push_str(" (default)");
            }
            vec![
                display.into(),
                text(&obj["provisioner"]).into(),
                obj["reclaimPolicy"].as_str().unwrap_or("Delete").into(),
                obj["volumeBindingMode"]
                    .as_str()
                    .unwrap_or("Immediate")
                    .into(),
                obj["allowVolumeExpansion"]
                    .as_bool()
                    .unwrap_or(false)
                    .into(),
                age(),
            ]
        }
        P::Lease => vec![
            name.into(),
            text(&obj["spec"]["holderIdentity"]).into(),
            age(),
        ],
        P::EndpointSlice => vec![
            name.into(),
            text(&obj["addressType"]).into(),
            format_slice_ports(&obj["ports"]).into(),
            format_slice_endpoints(&obj["endpoints"]).into(),
            age(),
        ],
        P::PriorityClass => vec![
            name.into(),
            int(&obj["value"]).into(),
            obj["globalDefault"].as_bool().unwrap_or(false).into(),
            age(),
            text(&obj["preemptionPolicy"]).into(),
        ],
        P::PodDisruptionBudget => {
            let spec = &obj["spec"];
            vec![
                name.into(),
                int_or_string(&spec["minAvailable"]).into(),
                int_or_string(&spec["maxUnavailable"]).into(),
                int(&obj["status"]["disruptionsAllowed"]).into(),
                age(),
            ]
        }
        P::Default => {
            let created = obj["metadata"]["creationTimestamp"]
                .as_str()
                .and_then(parse_time)
                .map(|t| t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
                .unwrap_or_else(|| "0001-01-01T00:00:00Z".to_string());
            vec![name.into(), created.into()]
        }
    }
}

/// The row's `conditions`: pods that succeeded or failed are marked `Completed`,
/// as Kubernetes' pod printer does. `None` for every other row.
pub fn row_conditions(r: &ResourceInfo, obj: &Value) -> Option<Value> {
    if printer(r) != Printer::Pod {
        return None;
    }
    let (reason, message) = match obj["status"]["phase"].as_str() {
        Some("Succeeded") => ("Succeeded", "The pod has completed successfully."),
        Some("Failed") => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

// ---------------------------------------------------------------------------
// Small readers over JSON.

/// The string at `v`, or "".
fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

/// The integer at `v`, or 0.
fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

/// The items of the array at `v`, or none.
fn items(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

/// The number of entries of the array or object at `v`.
fn len(v: &Value) -> i64 {
    let n = match v {
        Value::Array(a) => a.len(),
        Value::Object(m) => m.len(),
        _ => 0,
    };
    n as i64
}

/// Whether `v` is present and not null (a Go pointer that is set).
fn is_set(v: &Value) -> bool {
    !v.is_null()
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "<none>" } else { s }
}

/// `spec.replicas`, defaulted to 1 as the apiserver does.
fn replicas(spec: &Value) -> i64 {
    spec["replicas"].as_i64().unwrap_or(1)
}

/// A Go `*bool` printed as `True`, `False` or `<unset>`.
fn bool_ptr(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => "True",
        Some(false) => "False",
        None => "<unset>",
    }
}

/// An IntOrString, or `N/A` when unset.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "N/A".to_string(),
    }
}

/// A quantity as printed; the zero quantity when unset.
fn quantity(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => "0".to_string(),
    }
}

// ---------------------------------------------------------------------------
// Time.

fn parse_time(s: &str) -> Option<Timestamp> {
    let t: Timestamp = s.parse().ok()?;
    // Go's zero time marks an unset timestamp.
    (t.as_second() > -62_135_596_800).then_some(t)
}

/// `HumanDuration(now - t)`, or `<unknown>` for a missing or zero timestamp.
fn since(t: Option<&str>, now: Timestamp) -> String {
    match t.and_then(parse_time) {
        Some(t) => human_duration(now.duration_since(t)),
        None => "<unknown>".to_string(),
    }
}

/// The AGE cell: time since `metadata.creationTimestamp`.
fn age(obj: &Value, now: Timestamp) -> String {
    since(obj["metadata"]["creationTimestamp"].as_str(), now)
}

/// A succinct duration with ~2-3 significant figures, as apimachinery's
/// `duration.HumanDuration`: `45s`, `119s`, `2m5s`, `15m`, `3h20m`, `30h`,
/// `3d4h`, `20d`, `2y45d`, `9y`. Up to a second in the future is `0s` (clock
/// skew); further in the future is `<invalid>`.
pub fn human_duration(d: SignedDuration) -> String {
    let seconds = d.as_secs();
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        return if s == 0 {
            format!("{minutes}m")
        } else {
            format!("{minutes}m{s}s")
        };
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        return if m == 0 {
            format!("{hours}h")
        } else {
            format!("{hours}h{m}m")
        };
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        return if h == 0 {
            format!("{}d", hours / 24)
        } else {
            format!("{}d{h}h", hours / 24)
        };
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        return if days == 0 {
            format!("{}y", hours / 24 / 365)
        } else {
            format!("{}y{days}d", hours / 24 / 365)
        };
    }
    format!("{}y", hours / 24 / 365)
}

// ---------------------------------------------------------------------------
// Pods.

/// The READY, STATUS and RESTARTS cells of a pod.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodSummary {
    /// `ready/total`, restartable init containers (sidecars) counted.
    pub ready: String,
    /// The STATUS reason.
    pub status: String,
    /// The restart count, with `(… ago)` for the last restart when known.
    pub restarts: String,
}

/// The STATUS column of a pod, as `kubectl get pods` shows it.
pub fn pod_status(pod: &Value, now: Timestamp) -> String {
    pod_summary(pod, now).status
}

/// Keeps the later of two optional times.
fn later(cur: &mut Option<Timestamp>, t: Option<Timestamp>) {
    if let Some(t) = t
        && cur.is_none_or(|c| c < t)
    {
        *cur = Some(t);
    }
}

/// `lastState.terminated.finishedAt` of a container status, when it terminated before.
fn last_finished(cs: &Value) -> Option<Option<Timestamp>> {
    let term = &cs["lastState"]["terminated"];
    is_set(term).then(|| term["finishedAt"].as_str().and_then(parse_time))
}

fn has_condition(pod: &Value, type_: &str) -> bool {
    items(&pod["status"]["conditions"])
        .iter()
        .any(|c| c["type"] == type_ && c["status"] == "True")
}

/// The terminated reason of a container, or `ExitCode:N` / `Signal:N`.
fn terminated_reason(term: &Value, prefix: &str) -> String {
    let reason = text(&term["reason"]);
    if !reason.is_empty() {
        return format!("{prefix}{reason}");
    }
    let signal = int(&term["signal"]);
    if signal != 0 {
        format!("{prefix}Signal:{signal}")
    } else {
        format!("{prefix}ExitCode:{}", int(&term["exitCode"]))
    }
}

/// READY, STATUS and RESTARTS of a pod, following Kubernetes' `printPod`.
pub fn pod_summary(pod: &Value, now: Timestamp) -> PodSummary {
    let spec = &pod["spec"];
    let status = &pod["status"];
    // The apiserver gives every new pod the Pending phase.
    let phase = match text(&status["phase"]) {
        "" => "Pending",
        p => p,
    };
    let status_reason = text(&status["reason"]);
    let mut reason = if status_reason.is_empty() {
        phase.to_string()
    } else {
        status_reason.to_string()
    };
    if items(&status["conditions"])
        .iter()
        .any(|c| c["type"] == "PodScheduled" && c["reason"] == "SchedulingGated")
    {
        reason = "SchedulingGated".to_string();
    }

    let init_specs = items(&spec["initContainers"]);
    let restartable = |name: &str| {
        init_specs
            .iter()
            .rev()
            .find(|c| c["name"] == name)
            .is_some_and(|c| c["restartPolicy"] == "Always")
    };
    let sidecars = init_specs
        .iter()
        .filter(|c| c["restartPolicy"] == "Always")
        .count();
    let total = items(&spec["containers"]).len() + sidecars;

    let mut ready = 0;
    let mut restarts = 0;
    let mut sidecar_restarts = 0;
    let mut last_restart: Option<Timestamp> = None;
    let mut last_sidecar_restart: Option<Timestamp> = None;
    let mut initializing = false;
    for (i, cs) in items(&status["initContainerStatuses"]).iter().enumerate() {
        let count = int(&cs["restartCount"]);
        let finished = last_finished(cs);
        let is_sidecar = restartable(text(&cs["name"]));
        restarts += count;
        if let Some(t) = finished {
            later(&mut last_restart, t);
        }
        if is_sidecar {
            sidecar_restarts += count;
            if let Some(t) = finished {
                later(&mut last_sidecar_restart, t);
            }
        }
        let state = &cs["state"];
        let term = &state["terminated"];
        let waiting_reason = text(&state["waiting"]["reason"]);
        if is_set(term) && int(&term["exitCode"]) == 0 {
            continue;
        }
        if is_sidecar && cs["started"].as_bool() == Some(true) {
            if cs["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        reason = if is_set(term) {
            terminated_reason(term, "Init:")
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            format!("Init:{waiting_reason}")
        } else {
            format!("Init:{i}/{}", init_specs.len())
        };
        initializing = true;
        break;
    }

    if !initializing || has_condition(pod, "Initialized") {
        restarts = sidecar_restarts;
        last_restart = last_sidecar_restart;
        let mut has_running = false;
        for cs in items(&status["containerStatuses"]).iter().rev() {
            restarts += int(&cs["restartCount"]);
            if let Some(t) = last_finished(cs) {
                later(&mut last_restart, t);
            }
            let state = &cs["state"];
            let term = &state["terminated"];
            let waiting_reason = text(&state["waiting"]["reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if is_set(term) {
                reason = terminated_reason(term, "");
            } else if cs["ready"].as_bool() == Some(true) && is_set(&state["running"]) {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose first container completed while others still run is Running.
        if reason == "Completed" && has_running {
            reason = if has_condition(pod, "Ready") {
                "Running".to_string()
            } else {
                "NotReady".to_string()
            };
        }
    }

    if is_set(&pod["metadata"]["deletionTimestamp"]) {
        if status_reason == "NodeLost" {
            reason = "Unknown".to_string();
        } else if phase != "Succeeded" && phase != "Failed" {
            reason = "Terminating".to_string();
        }
    }

    let restarts = match last_restart {
        Some(t) if restarts != 0 => {
            format!("{restarts} ({} ago)", human_duration(now.duration_since(t)))
        }
        _ => restarts.to_string(),
    };
    PodSummary {
        ready: format!("{ready}/{total}"),
        status: reason,
        restarts,
    }
}

/// READINESS GATES: `true/total` of the gate conditions, or `<none>`.
fn readiness_gates(pod: &Value) -> String {
    let gates = items(&pod["spec"]["readinessGates"]);
    if gates.is_empty() {
        return "<none>".to_string();
    }
    let conditions = items(&pod["status"]["conditions"]);
    let true_count = gates
        .iter()
        .filter(|g| {
            conditions
                .iter()
                .find(|c| c["type"] == g["conditionType"])
                .is_some_and(|c| c["status"] == "True")
        })
        .count();
    format!("{true_count}/{}", gates.len())
}

// ---------------------------------------------------------------------------
// Templates, labels and selectors.

/// CONTAINERS and IMAGES of a pod template: names and images joined by commas.
fn container_cells(template: &Value) -> (String, String) {
    let containers = items(&template["spec"]["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| text(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| text(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// A label map as `k=v,…` sorted by key, or `<none>`.
fn format_labels(map: &Value) -> String {
    let pairs: BTreeMap<&str, &str> = map
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.as_str(), text(v)))
        .collect();
    if pairs.is_empty() {
        return "<none>".to_string();
    }
    pairs
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A label selector in selector syntax (`app=web,tier in (a,b),!legacy`),
/// requirements sorted by key; "" selects everything or nothing; `None` when invalid.
fn selector_string(sel: &Value) -> Option<String> {
    let mut reqs: Vec<(String, String)> = Vec::new();
    for (k, v) in sel["matchLabels"].as_object().into_iter().flatten() {
        reqs.push((k.clone(), format!("{k}={}", text(v))));
    }
    for e in items(&sel["matchExpressions"]) {
        let key = text(&e["key"]);
        let mut values: Vec<&str> = items(&e["values"]).iter().map(text).collect();
        values.sort_unstable();
        let req = match text(&e["operator"]) {
            "In" | "NotIn" if values.is_empty() => return None,
            "In" => format!("{key} in ({})", values.join(",")),
            "NotIn" => format!("{key} notin ({})", values.join(",")),
            "Exists" | "DoesNotExist" if !values.is_empty() => return None,
            "Exists" => key.to_string(),
            "DoesNotExist" => format!("!{key}"),
            _ => return None,
        };
        reqs.push((key.to_string(), req));
    }
    reqs.sort_by(|a, b| a.0.cmp(&b.0));
    Some(
        reqs.into_iter()
            .map(|(_, r)| r)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// A label selector for a cell: `<none>` when empty, `<error>` when invalid.
fn format_label_selector(sel: &Value) -> String {
    match selector_string(sel) {
        None => "<error>".to_string(),
        Some(s) if s.is_empty() => "<none>".to_string(),
        Some(s) => s,
    }
}

/// CONTROLLER of a ControllerRevision: `kind.group/name` of its controller, lower-cased kind.
fn controller_of(obj: &Value) -> String {
    let owner = items(&obj["metadata"]["ownerReferences"])
        .iter()
        .find(|o| o["controller"].as_bool() == Some(true));
    let Some(owner) = owner else {
        return "<none>".to_string();
    };
    let (group, _) = crate::catalog::split_api_version(text(&owner["apiVersion"]));
    let kind = text(&owner["kind"]);
    let name = text(&owner["name"]);
    let group_kind = match (kind, group) {
        ("", "") => return name.to_string(),
        (kind, "") => kind.to_string(),
        (kind, group) => format!("{kind}.{group}"),
    };
    format!("{}/{name}", group_kind.to_lowercase())
}

// ---------------------------------------------------------------------------
// Events.

/// An event read from either wire form (core/v1 or events.k8s.io/v1).
struct EventView<'a> {
    first_timestamp: Option<&'a str>,
    last_timestamp: Option<&'a str>,
    event_time: Option<&'a str>,
    count: i64,
    series: Option<&'a Value>,
    regarding: &'a Value,
    source: &'a Value,
    reporting_controller: &'a str,
    reporting_instance: &'a str,
    message: &'a str,
}

fn event_view<'a>(new_api: bool, e: &'a Value) -> EventView<'a> {
    let field = |core: &'static str, events: &'static str| -> &'a Value {
        if new_api { &e[events] } else { &e[core] }
    };
    EventView {
        first_timestamp: field("firstTimestamp", "deprecatedFirstTimestamp").as_str(),
        last_timestamp: field("lastTimestamp", "deprecatedLastTimestamp").as_str(),
        event_time: e["eventTime"].as_str(),
        count: int(field("count", "deprecatedCount")),
        series: Some(&e["series"]).filter(|s| is_set(s)),
        regarding: field("involvedObject", "regarding"),
        source: field("source", "deprecatedSource"),
        reporting_controller: text(field("reportingComponent", "reportingController")),
        reporting_instance: text(&e["reportingInstance"]),
        message: text(field("message", "note")),
    }
}

fn is_events_api(r: &ResourceInfo) -> bool {
    r.group == "events.k8s.io"
}

fn event_row(r: &ResourceInfo, e: &Value, now: Timestamp) -> Vec<Value> {
    let v = event_view(is_events_api(r), e);
    let first_seen = if v.first_timestamp.and_then(parse_time).is_some() {
        since(v.first_timestamp, now)
    } else {
        since(v.event_time, now)
    };
    let mut last_seen = if v.last_timestamp.and_then(parse_time).is_some() {
        since(v.last_timestamp, now)
    } else {
        first_seen.clone()
    };
    let mut count = v.count;
    if let Some(series) = v.series {
        last_seen = since(series["lastObservedTime"].as_str(), now);
        count = int(&series["count"]);
    } else if count == 0 {
        // Singleton events of the new API carry no count.
        count = 1;
    }
    let kind = text(&v.regarding["kind"]).to_lowercase();
    let regarding_name = text(&v.regarding["name"]);
    let target = if regarding_name.is_empty() {
        kind
    } else {
        format!("{kind}/{regarding_name}")
    };
    let component = match text(&v.source["component"]) {
        "" => v.reporting_controller,
        c => c,
    };
    let host = match text(&v.source["host"]) {
        "" => v.reporting_instance,
        h => h,
    };
    let source = if host.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {host}")
    };
    vec![
        last_seen.into(),
        text(&e["type"]).into(),
        text(&e["reason"]).into(),
        target.into(),
        text(&v.regarding["fieldPath"]).into(),
        source.into(),
        v.message.trim().into(),
        first_seen.into(),
        count.into(),
        crate::meta::name(e).into(),
    ]
}

/// The event age as `kubectl events` and `kubectl describe` show it:
/// `5m (x3 over 10m)` for a repeated event, else the time since it was first seen.
/// `events_api` selects the events.k8s.io/v1 wire form.
pub fn event_interval(events_api: bool, e: &Value, now: Timestamp) -> String {
    let v = event_view(events_api, e);
    let first = if v.event_time.and_then(parse_time).is_some() {
        since(v.event_time, now)
    } else {
        since(v.first_timestamp, now)
    };
    if let Some(series) = v.series {
        let last = since(series["lastObservedTime"].as_str(), now);
        format!("{last} (x{} over {first})", int(&series["count"]))
    } else if v.count > 1 {
        let last = since(v.last_timestamp, now);
        format!("{last} (x{} over {first})", v.count)
    } else {
        first
    }
}

// ---------------------------------------------------------------------------
// Nodes.

fn node_row(node: &Value, now: Timestamp) -> Vec<Value> {
    let status = &node["status"];
    let ready = items(&status["conditions"])
        .iter()
        .rev()
        .find(|c| c["type"] == "Ready");
    let mut state = vec![match ready {
        Some(c) if c["status"] == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        state.push("SchedulingDisabled");
    }
    let mut roles = BTreeSet::new();
    for (k, v) in crate::meta::labels(node) {
        if let Some(role) = k.strip_prefix("node-role.kubernetes.io/") {
            if !role.is_empty() {
                roles.insert(role);
            }
        } else if k == "kubernetes.io/role" && !v.is_empty() {
            roles.insert(v);
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");
    let info = &status["nodeInfo"];
    let address = |type_: &str| {
        items(&status["addresses"])
            .iter()
            .find(|a| a["type"] == type_)
            .map(|a| text(&a["address"]))
            .unwrap_or("<none>")
    };
    let unknown = |s: &str| -> Value { if s.is_empty() { "<unknown>" } else { s }.into() };
    vec![
        crate::meta::name(node).into(),
        state.join(",").into(),
        or_none(&roles).into(),
        age(node, now).into(),
        text(&info["kubeletVersion"]).into(),
        address("InternalIP").into(),
        address("ExternalIP").into(),
        unknown(text(&info["osImage"])),
        unknown(text(&info["kernelVersion"])),
        unknown(text(&info["containerRuntimeVersion"])),
    ]
}

// ---------------------------------------------------------------------------
// Services and endpoints.

fn join_host_port(host: &str, port: i64) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

fn service_row(svc: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &svc["spec"];
    let type_ = text(&spec["type"]);
    let cluster_ip = items(&spec["clusterIPs"])
        .first()
        .map(text)
        .unwrap_or("<none>");
    let external_ips: Vec<&str> = items(&spec["externalIPs"]).iter().map(text).collect();
    let external = match type_ {
        "ClusterIP" | "NodePort" if external_ips.is_empty() => "<none>".to_string(),
        "ClusterIP" | "NodePort" => external_ips.join(","),
        "LoadBalancer" => {
            let lb: BTreeSet<&str> = items(&svc["status"]["loadBalancer"]["ingress"])
                .iter()
                .filter_map(|i| match (text(&i["ip"]), text(&i["hostname"])) {
                    ("", "") => None,
                    ("", host) => Some(host),
                    (ip, _) => Some(ip),
                })
                .collect();
            let all: Vec<&str> = lb.into_iter().chain(external_ips).collect();
            if all.is_empty() {
                "<pending>".to_string()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => text(&spec["externalName"]).to_string(),
        _ => "<unknown>".to_string(),
    };
    let ports: Vec<String> = items(&spec["ports"])
        .iter()
        .map(|p| {
            let port = int(&p["port"]);
            let protocol = text(&p["protocol"]);
            match int(&p["nodePort"]) {
                n if n > 0 => format!("{port}:{n}/{protocol}"),
                _ => format!("{port}/{protocol}"),
            }
        })
        .collect();
    let ports = if ports.is_empty() {
        "<none>".to_string()
    } else {
        ports.join(",")
    };
    vec![
        crate::meta::name(svc).into(),
        type_.into(),
        cluster_ip.into(),
        external.into(),
        ports.into(),
        age(svc, now).into(),
        format_labels(&spec["selector"]).into(),
    ]
}

/// ENDPOINTS: up to three `ip:port` pairs, then `+ N more...`; `<none>` without subsets.
fn format_endpoints(ep: &Value) -> String {
    const MAX: usize = 3;
    let subsets = items(&ep["subsets"]);
    if subsets.is_empty() {
        return "<none>".to_string();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses = items(&ss["addresses"]);
        let ports = items(&ss["ports"]);
        if ports.is_empty() {
            // Headless services may have no ports.
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(text(&a["ip"]).to_string());
            }
            continue;
        }
        for port in ports {
            count += addresses.len();
            for a in addresses {
                if list.len() == MAX {
                    more = true;
                    break;
                }
                list.push(join_host_port(text(&a["ip"]), int(&port["port"])));
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX)
    } else {
        joined
    }
}

/// Up to three entries, then `+ N more...`; `<unset>` when there are none.
fn list_with_more(all: Vec<String>) -> String {
    const MAX: usize = 3;
    if all.len() > MAX {
        format!("{} + {} more...", all[..MAX].join(","), all.len() - MAX)
    } else if all.is_empty() {
        "<unset>".to_string()
    } else {
        all.join(",")
    }
}

fn format_slice_ports(ports: &Value) -> String {
    list_with_more(
        items(ports)
            .iter()
            .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
                (Some(n), _) => n.to_string(),
                (None, Some(name)) => name.to_string(),
                (None, None) => "*".to_string(),
            })
            .collect(),
    )
}

fn format_slice_endpoints(endpoints: &Value) -> String {
    list_with_more(
        items(endpoints)
            .iter()
            .flat_map(|e| items(&e["addresses"]))
            .map(|a| text(a).to_string())
            .collect(),
    )
}

// ---------------------------------------------------------------------------
// Storage.

/// ACCESS MODES: `RWO,ROX,RWX,RWOP` in that order, each once.
fn access_modes(modes: &Value) -> String {
    let modes = items(modes);
    let has = |m: &str| modes.iter().any(|x| x == m);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(m, _)| has(m))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// The storage class of a PV or PVC: the beta annotation wins over the field.
fn storage_class(obj: &Value) -> &str {
    obj["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
        .as_str()
        .or_else(|| obj["spec"]["storageClassName"].as_str())
        .unwrap_or("")
}

fn is_default_class(sc: &Value) -> bool {
    let annotations = &sc["metadata"]["annotations"];
    annotations["storageclass.kubernetes.io/is-default-class"] == "true"
        || annotations["storageclass.beta.kubernetes.io/is-default-class"] == "true"
}

fn pv_row(pv: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &pv["spec"];
    let claim = &spec["claimRef"];
    let claim = if is_set(claim) {
        format!("{}/{}", text(&claim["namespace"]), text(&claim["name"]))
    } else {
        String::new()
    };
    let phase = if is_set(&pv["metadata"]["deletionTimestamp"]) {
        "Terminating"
    } else {
        text(&pv["status"]["phase"])
    };
    vec![
        crate::meta::name(pv).into(),
        quantity(&spec["capacity"]["storage"]).into(),
        access_modes(&spec["accessModes"]).into(),
        text(&spec["persistentVolumeReclaimPolicy"]).into(),
        phase.into(),
        claim.into(),
        storage_class(pv).into(),
        spec["volumeAttributesClassName"]
            .as_str()
            .unwrap_or("<unset>")
            .into(),
        text(&pv["status"]["reason"]).into(),
        age(pv, now).into(),
        spec["volumeMode"].as_str().unwrap_or("<unset>").into(),
    ]
}

fn pvc_row(pvc: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &pvc["spec"];
    let status = &pvc["status"];
    let phase = if is_set(&pvc["metadata"]["deletionTimestamp"]) {
        "Terminating"
    } else {
        text(&status["phase"])
    };
    let volume = text(&spec["volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity(&status["capacity"]["storage"]),
            access_modes(&status["accessModes"]),
        )
    };
    vec![
        crate::meta::name(pvc).into(),
        phase.into(),
        volume.into(),
        capacity.into(),
        modes.into(),
        storage_class(pvc).into(),
        spec["volumeAttributesClassName"]
            .as_str()
            .unwrap_or("<unset>")
            .into(),
        age(pvc, now).into(),
        spec["volumeMode"].as_str().unwrap_or("<unset>").into(),
    ]
}

// ---------------------------------------------------------------------------
// Jobs.

fn job_condition(job: &Value, type_: &str) -> bool {
    items(&job["status"]["conditions"])
        .iter()
        .find(|c| c["type"] == type_)
        .is_some_and(|c| c["status"] == "True")
}

fn job_row(job: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &job["spec"];
    let status = &job["status"];
    let succeeded = int(&status["succeeded"]);
    let completions = match spec["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(&spec["parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = status["startTime"].as_str().and_then(parse_time);
    let end = status["completionTime"].as_str().and_then(parse_time);
    let duration = match (start, end) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(now.duration_since(s)),
        (Some(s), Some(e)) => human_duration(e.duration_since(s)),
    };
    let state = if job_condition(job, "Complete") {
        "Complete"
    } else if job_condition(job, "Failed") {
        "Failed"
    } else if is_set(&job["metadata"]["deletionTimestamp"]) {
        "Terminating"
    } else if job_condition(job, "Suspended") {
        "Suspended"
    } else if job_condition(job, "FailureTarget") {
        "FailureTarget"
    } else {
        "Running"
    };
    let (names, images) = container_cells(&spec["template"]);
    vec![
        crate::meta::name(job).into(),
        state.into(),
        completions.into(),
        duration.into(),
        age(job, now).into(),
        names.into(),
        images.into(),
        format_label_selector(&spec["selector"]).into(),
    ]
}

// ---------------------------------------------------------------------------
// HorizontalPodAutoscalers.

/// The quantity at `v` as Go prints a `*Quantity`: `<nil>` when unset.
fn quantity_ptr(v: &Value) -> String {
    if is_set(v) {
        quantity(v)
    } else {
        "<nil>".to_string()
    }
}

/// The metric specs and statuses in the v2 form; autoscaling/v1 objects carry
/// only the CPU utilization target, which Kubernetes converts to one metric.
fn hpa_metrics(r: &ResourceInfo, hpa: &Value) -> (Vec<Value>, Vec<Value>) {
    if r.version != "v1" {
        return (
            items(&hpa["spec"]["metrics"]).to_vec(),
            items(&hpa["status"]["currentMetrics"]).to_vec(),
        );
    }
    let mut specs = Vec::new();
    if let Some(target) = hpa["spec"]["targetCPUUtilizationPercentage"].as_i64() {
        specs.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target}}}));
    }
    let mut statuses = Vec::new();
    if let Some(current) = hpa["status"]["currentCPUUtilizationPercentage"].as_i64() {
        statuses.push(json!({"type": "Resource", "resource": {"name": "cpu",
            "current": {"averageUtilization": current}}}));
    }
    (specs, statuses)
}

/// TARGETS: `current/target` per metric, at most two, then `+ N more...`.
fn format_hpa_metrics(specs: &[Value], statuses: &[Value]) -> String {
    const MAX: usize = 2;
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let unknown = || "<unknown>".to_string();
    let list: Vec<String> = specs
        .iter()
        .enumerate()
        .map(|(i, spec)| {
            let status = statuses.get(i).unwrap_or(&Value::Null);
            // The status of the same index, when it is of the field's kind.
            let current = |field: &str| Some(&status[field]).filter(|s| is_set(s));
            match text(&spec["type"]) {
                kind @ ("External" | "Object") => {
                    let field = if kind == "External" {
                        "external"
                    } else {
                        "object"
                    };
                    let target = &spec[field]["target"];
                    if is_set(&target["averageValue"]) {
                        let cur = current(field)
                            .map(|s| &s["current"]["averageValue"])
                            .filter(|v| is_set(v))
                            .map_or_else(unknown, quantity_ptr);
                        format!("{cur}/{} (avg)", quantity_ptr(&target["averageValue"]))
                    } else {
                        let cur = current(field)
                            .map_or_else(unknown, |s| quantity_ptr(&s["current"]["value"]));
                        format!("{cur}/{}", quantity_ptr(&target["value"]))
                    }
                }
                "Pods" => {
                    let cur = current("pods")
                        .map_or_else(unknown, |s| quantity_ptr(&s["current"]["averageValue"]));
                    let target = quantity_ptr(&spec["pods"]["target"]["averageValue"]);
                    format!("{cur}/{target}")
                }
                kind @ ("Resource" | "ContainerResource") => {
                    let field = if kind == "Resource" {
                        "resource"
                    } else {
                        "containerResource"
                    };
                    let source = &spec[field];
                    let name = text(&source["name"]);
                    let target = &source["target"];
                    if is_set(&target["averageValue"]) {
                        let cur = current(field)
                            .map_or_else(unknown, |s| quantity_ptr(&s["current"]["averageValue"]));
                        format!("{name}: {cur}/{}", quantity_ptr(&target["averageValue"]))
                    } else {
                        let cur = current(field)
                            .and_then(|s| s["current"]["averageUtilization"].as_i64())
                            .map_or_else(unknown, |u| format!("{u}%"));
                        let goal = target["averageUtilization"]
                            .as_i64()
                            .map_or_else(|| "<auto>".to_string(), |u| format!("{u}%"));
                        format!("{name}: {cur}/{goal}")
                    }
                }
                _ => "<unknown type>".to_string(),
            }
        })
        .collect();
    if list.len() > MAX {
        format!("{} + {} more...", list[..MAX].join(", "), list.len() - MAX)
    } else {
        list.join(", ")
    }
}

fn hpa_row(r: &ResourceInfo, hpa: &Value, now: Timestamp) -> Vec<Value> {
    let spec = &hpa["spec"];
    let target = &spec["scaleTargetRef"];
    let (specs, statuses) = hpa_metrics(r, hpa);
    let min_pods = spec["minReplicas"]
        .as_i64()
        .map_or_else(|| "<unset>".to_string(), |n| n.to_string());
    vec![
        crate::meta::name(hpa).into(),
        format!("{}/{}", text(&target["kind"]), text(&target["name"])).into(),
        format_hpa_metrics(&specs, &statuses).into(),
        min_pods.into(),
        int(&spec["maxReplicas"]).into(),
        int(&hpa["status"]["currentReplicas"]).into(),
        age(hpa, now).into(),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::catalog::{RESOURCES, lookup};

    const NOW: &str = "2024-05-01T12:00:00Z";

    fn now() -> Timestamp {
        NOW.parse().unwrap()
    }

    /// The RFC 3339 time `secs` seconds before [`NOW`].
    fn ago(secs: i64) -> String {
        (now() - SignedDuration::from_secs(secs)).to_string()
    }

    fn res(group: &str, version: &str, resource: &str) -> &'static ResourceInfo {
        lookup(group, version, resource).unwrap()
    }

    fn names(r: &ResourceInfo) -> Vec<&'static str> {
        columns(r).iter().map(|c| c.name).collect()
    }

    fn cells(group: &str, version: &str, resource: &str, obj: Value) -> Vec<Value> {
        row(res(group, version, resource), &obj, now())
    }

    fn pod(status: Value) -> Value {
        json!({"metadata": {"name": "p", "creationTimestamp": ago(3600)},
            "spec": {"containers": [{"name": "app"}]}, "status": status})
    }

    fn running(name: &str) -> Value {
        json!({"name": name, "ready": true, "restartCount": 0, "state": {"running": {}}})
    }

    fn waiting(name: &str, reason: &str) -> Value {
        json!({"name": name, "ready": false, "restartCount": 0, "state": {"waiting": {"reason": reason}}})
    }

    fn terminated(name: &str, term: Value) -> Value {
        json!({"name": name, "ready": false, "restartCount": 0, "state": {"terminated": term}})
    }

    fn two_inits(p: &mut Value) {
        p["spec"]["initContainers"] = json!([{"name": "i1"}, {"name": "i2"}]);
    }

    #[test]
    fn human_duration_boundaries() {
        let cases: &[(i64, &str)] = &[
            (-3, "<invalid>"),
            (-2, "<invalid>"),
            (-1, "0s"),
            (0, "0s"),
            (59, "59s"),
            (119, "119s"),
            (120, "2m"),
            (125, "2m5s"),
            (599, "9m59s"),
            (600, "10m"),
            (179 * 60 + 59, "179m"),
            (3 * 3600, "3h"),
            (3 * 3600 + 20 * 60 + 30, "3h20m"),
            (8 * 3600 - 60, "7h59m"),
            (8 * 3600, "8h"),
            (47 * 3600 + 59 * 60, "47h"),
            (48 * 3600, "2d"),
            (49 * 3600, "2d1h"),
            (8 * 86400 - 3600, "7d23h"),
            (8 * 86400, "8d"),
            (729 * 86400, "729d"),
            (730 * 86400, "2y"),
            (775 * 86400, "2y45d"),
            (8 * 365 * 86400 - 86400, "7y364d"),
            (8 * 365 * 86400, "8y"),
            (3000 * 86400, "8y"),
        ];
        for (secs, want) in cases {
            assert_eq!(
                human_duration(SignedDuration::from_secs(*secs)),
                *want,
                "{secs}s"
            );
        }
        // Sub-second skew truncates towards zero, as Go's int(d.Seconds()).
        assert_eq!(human_duration(SignedDuration::from_millis(-1500)), "0s");
        assert_eq!(human_duration(SignedDuration::from_millis(1999)), "1s");
    }

    #[test]
    fn pod_ready_status_restarts() {
        let deleted = |mut p: Value| {
            p["metadata"]["deletionTimestamp"] = json!(ago(5));
            p
        };
        let mut cases: Vec<(&str, Value, &str, &str, &str)> = vec![
            (
                "no status yet",
                json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app"}]}}),
                "0/1",
                "Pending",
                "0",
            ),
            (
                "running and ready",
                pod(json!({"phase": "Running", "containerStatuses": [running("app")]})),
                "1/1",
                "Running",
                "0",
            ),
            (
                "running not ready",
                pod(json!({"phase": "Running",
                "containerStatuses": [{"name": "app", "ready": false, "state": {"running": {}}}]})),
                "0/1",
                "Running",
                "0",
            ),
            (
                "evicted",
                pod(json!({"phase": "Failed", "reason": "Evicted"})),
                "0/1",
                "Evicted",
                "0",
            ),
            (
                "container creating",
                pod(json!({"phase": "Pending",
                "containerStatuses": [waiting("app", "ContainerCreating")]})),
                "0/1",
                "ContainerCreating",
                "0",
            ),
            (
                "err image pull",
                pod(json!({"phase": "Pending",
                "containerStatuses": [waiting("app", "ErrImagePull")]})),
                "0/1",
                "ErrImagePull",
                "0",
            ),
            (
                "image pull backoff",
                pod(json!({"phase": "Pending",
                "containerStatuses": [waiting("app", "ImagePullBackOff")]})),
                "0/1",
                "ImagePullBackOff",
                "0",
            ),
            (
                "crash loop with last restart",
                pod(json!({"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": false, "restartCount": 3, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(125)}}}]})),
                "0/1",
                "CrashLoopBackOff",
                "3 (2m5s ago)",
            ),
            (
                "restarts without finish time",
                pod(json!({"phase": "Running", "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 2, "state": {"running": {}}}]})),
                "1/1",
                "Running",
                "2",
            ),
            (
                "completed",
                pod(json!({"phase": "Succeeded", "containerStatuses": [
                terminated("app", json!({"exitCode": 0, "reason": "Completed"}))]})),
                "0/1",
                "Completed",
                "0",
            ),
            (
                "error",
                pod(json!({"phase": "Failed", "containerStatuses": [
                terminated("app", json!({"exitCode": 1, "reason": "Error"}))]})),
                "0/1",
                "Error",
                "0",
            ),
            (
                "oom killed",
                pod(json!({"phase": "Running", "containerStatuses": [
                terminated("app", json!({"exitCode": 137, "reason": "OOMKilled"}))]})),
                "0/1",
                "OOMKilled",
                "0",
            ),
            (
                "exit code without reason",
                pod(json!({"phase": "Failed", "containerStatuses": [
                terminated("app", json!({"exitCode": 2}))]})),
                "0/1",
                "ExitCode:2",
                "0",
            ),
            (
                "signal without reason",
                pod(json!({"phase": "Failed", "containerStatuses": [
                terminated("app", json!({"exitCode": 143, "signal": 15}))]})),
                "0/1",
                "Signal:15",
                "0",
            ),
            (
                "terminating",
                deleted(pod(
                    json!({"phase": "Running", "containerStatuses": [running("app")]}),
                )),
                "1/1",
                "Terminating",
                "0",
            ),
            (
                "node lost",
                deleted(pod(json!({"phase": "Running", "reason": "NodeLost",
                "containerStatuses": [running("app")]}))),
                "1/1",
                "Unknown",
                "0",
            ),
            (
                "deleted after success keeps Completed",
                deleted(pod(json!({"phase": "Succeeded", "containerStatuses": [
                terminated("app", json!({"exitCode": 0, "reason": "Completed"}))]}))),
                "0/1",
                "Completed",
                "0",
            ),
            (
                "scheduling gated",
                pod(json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"}]})),
                "0/1",
                "SchedulingGated",
                "0",
            ),
            (
                "unschedulable stays Pending",
                pod(json!({"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "Unschedulable"}]})),
                "0/1",
                "Pending",
                "0",
            ),
        ];

        // Init containers.
        let mut init = |name: &'static str,
                        statuses: Value,
                        app: Value,
                        want: &'static str,
                        restarts: &'static str| {
            let mut p = pod(
                json!({"phase": "Pending", "initContainerStatuses": statuses, "containerStatuses": app}),
            );
            two_inits(&mut p);
            cases.push((name, p, "0/1", want, restarts));
        };
        let ok = || terminated("i1", json!({"exitCode": 0, "reason": "Completed"}));
        let app_init = || json!([waiting("app", "PodInitializing")]);
        init(
            "first init running",
            json!([running("i1"), waiting("i2", "PodInitializing")]),
            app_init(),
            "Init:0/2",
            "0",
        );
        init(
            "second init running",
            json!([ok(), running("i2")]),
            app_init(),
            "Init:1/2",
            "0",
        );
        init(
            "init waiting PodInitializing counts",
            json!([ok(), waiting("i2", "PodInitializing")]),
            app_init(),
            "Init:1/2",
            "0",
        );
        init(
            "init error",
            json!([terminated("i1", json!({"exitCode": 1, "reason": "Error"}))]),
            app_init(),
            "Init:Error",
            "0",
        );
        init(
            "init oom",
            json!([terminated(
                "i1",
                json!({"exitCode": 137, "reason": "OOMKilled"})
            )]),
            app_init(),
            "Init:OOMKilled",
            "0",
        );
        init(
            "init exit code",
            json!([terminated("i1", json!({"exitCode": 3}))]),
            app_init(),
            "Init:ExitCode:3",
            "0",
        );
        init(
            "init signal",
            json!([terminated("i1", json!({"exitCode": 137, "signal": 9}))]),
            app_init(),
            "Init:Signal:9",
            "0",
        );
        init(
            "init crash loop counts init restarts only",
            json!([
            {"name": "i1", "restartCount": 4, "state": {"waiting": {"reason": "CrashLoopBackOff"}},
             "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}}}]),
            json!([{"name": "app", "restartCount": 7, "state": {"waiting": {"reason": "PodInitializing"}}}]),
            "Init:CrashLoopBackOff",
            "4 (30s ago)",
        );
        init(
            "inits done, app initializing",
            json!([ok(), terminated("i2", json!({"exitCode": 0}))]),
            app_init(),
            "PodInitializing",
            "0",
        );

        for (name, p, ready, status, restarts) in cases {
            let s = pod_summary(&p, now());
            assert_eq!(
                (s.ready.as_str(), s.status.as_str(), s.restarts.as_str()),
                (ready, status, restarts),
                "{name}"
            );
            assert_eq!(pod_status(&p, now()), status, "{name}");
        }
    }

    #[test]
    fn pod_completed_container_with_others_running() {
        let statuses = json!([
            terminated("a", json!({"exitCode": 0, "reason": "Completed"})),
            running("b"),
        ]);
        for (ready_cond, want) in [("True", "Running"), ("False", "NotReady")] {
            let mut p = pod(json!({"phase": "Running", "containerStatuses": statuses,
                "conditions": [{"type": "Ready", "status": ready_cond}]}));
            p["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
            let s = pod_summary(&p, now());
            assert_eq!((s.ready.as_str(), s.status.as_str()), ("1/2", want));
        }
    }

    #[test]
    fn pod_reason_comes_from_first_container_with_one() {
        let mut p = pod(json!({"phase": "Pending", "containerStatuses": [
            waiting("a", "ErrImagePull"), waiting("b", "ContainerCreating"), running("c")]}));
        p["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}, {"name": "c"}]);
        let s = pod_summary(&p, now());
        assert_eq!(
            (s.ready.as_str(), s.status.as_str()),
            ("1/3", "ErrImagePull")
        );
    }

    #[test]
    fn pod_sidecars_count_towards_ready_and_restarts() {
        let mut p = pod(json!({"phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [
                {"name": "init", "restartCount": 5, "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(10)}}},
                {"name": "proxy", "ready": true, "started": true, "restartCount": 2, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(600)}}}],
            "containerStatuses": [
                {"name": "app", "ready": true, "restartCount": 1, "state": {"running": {}},
                 "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(200)}}}]}));
        p["spec"]["initContainers"] =
            json!([{"name": "init"}, {"name": "proxy", "restartPolicy": "Always"}]);
        let s = pod_summary(&p, now());
        // The plain init container's restarts and time are dropped once initialized.
        assert_eq!(
            (s.ready.as_str(), s.status.as_str(), s.restarts.as_str()),
            ("2/2", "Running", "3 (3m20s ago)")
        );

        // A sidecar that has not started yet holds initialization.
        p["status"]["initContainerStatuses"][1]["started"] = json!(false);
        p["status"]["initContainerStatuses"][1]["state"] =
            json!({"waiting": {"reason": "ContainerCreating"}});
        p["status"]["conditions"] = json!([]);
        let s = pod_summary(&p, now());
        assert_eq!(
            (s.ready.as_str(), s.status.as_str()),
            ("0/2", "Init:ContainerCreating")
        );
    }

    #[test]
    fn pod_row_and_wide_cells() {
        let pods = res("", "v1", "pods");
        assert_eq!(
            names(pods),
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        let cols = columns(pods);
        assert_eq!(
            (cols[0].format, cols[3].type_, cols[5].priority),
            ("name", "string", 1)
        );
        let mut p = pod(
            json!({"phase": "Running", "podIP": "10.0.0.9", "podIPs": [{"ip": "10.0.0.7"}],
            "conditions": [{"type": "example.com/a", "status": "True"}, {"type": "example.com/b", "status": "False"}],
            "containerStatuses": [running("app")]}),
        );
        p["spec"]["nodeName"] = json!("n1");
        p["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/a"}, {"conditionType": "example.com/b"}]);
        assert_eq!(
            row(pods, &p, now()),
            vec![
                json!("p"),
                json!("1/1"),
                json!("Running"),
                json!("0"),
                json!("60m"),
                json!("10.0.0.7"),
                json!("n1"),
                json!("<none>"),
                json!("1/2")
            ]
        );
        let bare = json!({"metadata": {"name": "q"}});
        assert_eq!(
            row(pods, &bare, now())[4..],
            [
                json!("<unknown>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>"),
                json!("<none>")
            ]
        );
        assert_eq!(row_conditions(pods, &p), None);
        let done = pod(json!({"phase": "Succeeded"}));
        assert_eq!(
            row_conditions(pods, &done).unwrap()[0]["reason"],
            "Succeeded"
        );
    }

    #[test]
    fn every_resource_has_a_cell_per_column() {
        for r in RESOURCES {
            let obj = json!({"metadata": {"name": "x", "creationTimestamp": ago(30)}});
            let cols = columns(r);
            assert_eq!(row(r, &obj, now()).len(), cols.len(), "{}", r.resource);
            assert!(
                cols.iter().all(|c| !c.description.is_empty()),
                "{}",
                r.resource
            );
        }
    }

    #[test]
    fn default_table_for_kinds_without_a_printer() {
        let mut r = *res("", "v1", "configmaps");
        r.group = "example.com";
        r.resource = "widgets";
        assert_eq!(names(&r), ["Name", "Created At"]);
        assert_eq!(columns(&r)[1].type_, "date");
        let obj = json!({"metadata": {"name": "w", "creationTimestamp": "2024-01-02T03:04:05Z"}});
        assert_eq!(
            row(&r, &obj, now()),
            vec![json!("w"), json!("2024-01-02T03:04:05Z")]
        );
    }

    #[test]
    fn workloads() {
        let tmpl = json!({"spec": {"containers": [{"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}});
        let deploy = res("apps", "v1", "deployments");
        assert_eq!(
            names(deploy),
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let d = json!({"metadata": {"name": "web", "creationTimestamp": ago(90)},
            "spec": {"replicas": 3, "template": tmpl, "selector": {"matchLabels": {"app": "web"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}, {"key": "legacy", "operator": "DoesNotExist"}]}},
            "status": {"readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2}});
        assert_eq!(
            row(deploy, &d, now()),
            vec![
                json!("web"),
                json!("2/3"),
                json!(3),
                json!(2),
                json!("90s"),
                json!("web,log"),
                json!("nginx:1,busybox"),
                json!("app=web,!legacy,tier in (a,b)")
            ]
        );

        let rs = cells(
            "apps",
            "v1",
            "replicasets",
            json!({"metadata": {"name": "web-1"},
            "spec": {"template": tmpl, "selector": {}}, "status": {"replicas": 1}}),
        );
        assert_eq!(rs[1..5], [json!(1), json!(1), json!(0), json!("<unknown>")]);
        assert_eq!(rs[7], json!("<none>"));
        assert_eq!(
            names(res("apps", "v1", "replicasets"))[1..4],
            ["Desired", "Current", "Ready"]
        );

        let sts = cells(
            "apps",
            "v1",
            "statefulsets",
            json!({"metadata": {"name": "db"},
            "spec": {"replicas": 3}, "status": {"readyReplicas": 1}}),
        );
        assert_eq!(sts[..2], [json!("db"), json!("1/3")]);
        assert_eq!(
            names(res("apps", "v1", "statefulsets")),
            ["Name", "Ready", "Age", "Containers", "Images"]
        );

        let ds = cells(
            "apps",
            "v1",
            "daemonsets",
            json!({"metadata": {"name": "agent"},
            "spec": {"template": {"spec": {"nodeSelector": {"os": "linux", "a": "b"}}},
                "selector": {"matchExpressions": [{"key": "x", "operator": "Bogus"}]}},
            "status": {"desiredNumberScheduled": 2, "currentNumberScheduled": 2, "numberReady": 1,
                "updatedNumberScheduled": 2, "numberAvailable": 1}}),
        );
        assert_eq!(
            ds[1..7],
            [
                json!(2),
                json!(2),
                json!(1),
                json!(2),
                json!(1),
                json!("a=b,os=linux")
            ]
        );
        assert_eq!(ds[10], json!("<error>"));

        let cr = cells(
            "apps",
            "v1",
            "controllerrevisions",
            json!({"metadata": {"name": "agent-5d8",
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "DaemonSet", "name": "agent", "controller": true}]},
            "revision": 4}),
        );
        assert_eq!(cr[1..3], [json!("daemonset.apps/agent"), json!(4)]);
        assert_eq!(
            cells("apps", "v1", "controllerrevisions", json!({}))[1],
            json!("<none>")
        );
    }

    #[test]
    fn jobs_and_cronjobs() {
        let jobs = res("batch", "v1", "jobs");
        assert_eq!(
            names(jobs),
            [
                "Name",
                "Status",
                "Completions",
                "Duration",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
        let cases = [
            (
                json!({"spec": {"completions": 3}, "status": {"succeeded": 3, "startTime": ago(400), "completionTime": ago(100),
                "conditions": [{"type": "Complete", "status": "True"}]}}),
                "Complete",
                "3/3",
                "5m",
            ),
            (
                json!({"spec": {"parallelism": 2}, "status": {"startTime": ago(30)}}),
                "Running",
                "0/1 of 2",
                "30s",
            ),
            (
                json!({"spec": {}, "status": {"conditions": [{"type": "Failed", "status": "True"}]}}),
                "Failed",
                "0/1",
                "",
            ),
            (
                json!({"spec": {"suspend": true}, "status": {"conditions": [{"type": "Suspended", "status": "True"}]}}),
                "Suspended",
                "0/1",
                "",
            ),
            (
                json!({"metadata": {"deletionTimestamp": ago(1)}}),
                "Terminating",
                "0/1",
                "",
            ),
        ];
        for (job, status, completions, duration) in cases {
            let c = row(jobs, &job, now());
            assert_eq!(
                c[1..4],
                [json!(status), json!(completions), json!(duration)],
                "{job}"
            );
        }
        let cj = cells(
            "batch",
            "v1",
            "cronjobs",
            json!({"metadata": {"name": "nightly"},
            "spec": {"schedule": "0 3 * * *", "suspend": false},
            "status": {"active": [{"name": "j"}], "lastScheduleTime": ago(7200)}}),
        );
        assert_eq!(
            cj[..6],
            [
                json!("nightly"),
                json!("0 3 * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("120m")
            ]
        );
        assert_eq!(
            cells("batch", "v1", "cronjobs", json!({}))[5],
            json!("<none>")
        );
    }

    #[test]
    fn services() {
        let svc = res("", "v1", "services");
        assert_eq!(
            names(svc),
            [
                "Name",
                "Type",
                "Cluster-IP",
                "External-IP",
                "Port(s)",
                "Age",
                "Selector"
            ]
        );
        let cases = [
            (
                json!({"type": "ClusterIP", "clusterIPs": ["10.96.0.10"], "ports": [{"port": 80, "protocol": "TCP"}],
                "selector": {"app": "web"}}),
                json!({}),
                "10.96.0.10",
                "<none>",
                "80/TCP",
            ),
            (
                json!({"type": "NodePort", "clusterIPs": ["10.96.0.11"], "externalIPs": ["1.2.3.4"],
                "ports": [{"port": 80, "nodePort": 30080, "protocol": "TCP"}, {"port": 53, "protocol": "UDP"}]}),
                json!({}),
                "10.96.0.11",
                "1.2.3.4",
                "80:30080/TCP,53/UDP",
            ),
            (
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.12"], "ports": [{"port": 443, "nodePort": 31443, "protocol": "TCP"}]}),
                json!({}),
                "10.96.0.12",
                "<pending>",
                "443:31443/TCP",
            ),
            (
                json!({"type": "LoadBalancer", "clusterIPs": ["10.96.0.13"], "externalIPs": ["9.9.9.9"]}),
                json!({"loadBalancer": {"ingress": [{"ip": "5.5.5.5"}, {"hostname": "lb.example.com"}, {"ip": "5.5.5.5"}]}}),
                "10.96.0.13",
                "5.5.5.5,lb.example.com,9.9.9.9",
                "<none>",
            ),
            (
                json!({"type": "ExternalName", "externalName": "db.example.com"}),
                json!({}),
                "<none>",
                "db.example.com",
                "<none>",
            ),
            (
                json!({"type": "ClusterIP", "clusterIPs": ["None"]}),
                json!({}),
                "None",
                "<none>",
                "<none>",
            ),
        ];
        for (spec, status, ip, external, ports) in cases {
            let c = row(
                svc,
                &json!({"metadata": {"name": "s"}, "spec": spec, "status": status}),
                now(),
            );
            assert_eq!(
                c[2..5],
                [json!(ip), json!(external), json!(ports)],
                "{spec}"
            );
        }
        let c = row(
            svc,
            &json!({"spec": {"type": "ClusterIP", "selector": {"app": "web"}}}),
            now(),
        );
        assert_eq!(c[6], json!("app=web"));
    }

    #[test]
    fn endpoints_and_slices() {
        let eps = |subsets: Value| {
            cells(
                "",
                "v1",
                "endpoints",
                json!({"metadata": {"name": "e"}, "subsets": subsets}),
            )[1]
            .clone()
        };
        assert_eq!(eps(json!([])), json!("<none>"));
        assert_eq!(
            eps(
                json!([{"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}], "ports": [{"port": 80}]}])
            ),
            json!("10.0.0.1:80,10.0.0.2:80")
        );
        let five: Vec<Value> = (1..=5)
            .map(|i| json!({"ip": format!("10.0.0.{i}")}))
            .collect();
        assert_eq!(
            eps(json!([{"addresses": five, "ports": [{"port": 80}]}])),
            json!("10.0.0.1:80,10.0.0.2:80,10.0.0.3:80 + 2 more...")
        );
        assert_eq!(
            eps(
                json!([{"addresses": [{"ip": "fd00::1"}], "ports": [{"port": 80}, {"port": 443}]}])
            ),
            json!("[fd00::1]:80,[fd00::1]:443")
        );
        assert_eq!(
            eps(json!([{"addresses": [{"ip": "10.0.0.1"}]}])),
            json!("10.0.0.1")
        );

        let slices = res("discovery.k8s.io", "v1", "endpointslices");
        assert_eq!(
            names(slices),
            ["Name", "AddressType", "Ports", "Endpoints", "Age"]
        );
        let s = json!({"metadata": {"name": "web-abc"}, "addressType": "IPv4",
            "ports": [{"port": 80}, {"name": "metrics"}, {}],
            "endpoints": [{"addresses": ["10.0.0.1", "10.0.0.2"]}, {"addresses": ["10.0.0.3"]}, {"addresses": ["10.0.0.4"]}]});
        assert_eq!(
            row(slices, &s, now())[1..4],
            [
                json!("IPv4"),
                json!("80,metrics,*"),
                json!("10.0.0.1,10.0.0.2,10.0.0.3 + 1 more...")
            ]
        );
        assert_eq!(
            row(slices, &json!({}), now())[2..4],
            [json!("<unset>"), json!("<unset>")]
        );
    }

    #[test]
    fn nodes() {
        let nodes = res("", "v1", "nodes");
        assert_eq!(
            names(nodes)[..5],
            ["Name", "Status", "Roles", "Age", "Version"]
        );
        let node = |labels: Value, conditions: Value, unschedulable: bool| {
            json!({
            "metadata": {"name": "n1", "labels": labels, "creationTimestamp": ago(86400 * 3)},
            "spec": {"unschedulable": unschedulable},
            "status": {"conditions": conditions, "nodeInfo": {"kubeletVersion": "v1.32.0", "osImage": "Debian"},
                "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}, {"type": "Hostname", "address": "n1"}]}})
        };
        let ready = json!([{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}]);
        let c = row(
            nodes,
            &node(
                json!({"node-role.kubernetes.io/control-plane": "", "node-role.kubernetes.io/master": "",
            "kubernetes.io/role": "edge"}),
                ready.clone(),
                false,
            ),
            now(),
        );
        assert_eq!(
            c,
            vec![
                json!("n1"),
                json!("Ready"),
                json!("control-plane,edge,master"),
                json!("3d"),
                json!("v1.32.0"),
                json!("192.168.1.5"),
                json!("<none>"),
                json!("Debian"),
                json!("<unknown>"),
                json!("<unknown>")
            ]
        );
        let status = |conditions: Value, unschedulable: bool| {
            row(nodes, &node(json!({}), conditions, unschedulable), now())[1..3].to_vec()
        };
        assert_eq!(
            status(ready, true),
            [json!("Ready,SchedulingDisabled"), json!("<none>")]
        );
        assert_eq!(
            status(json!([{"type": "Ready", "status": "False"}]), false)[0],
            json!("NotReady")
        );
        assert_eq!(
            status(json!([{"type": "Ready", "status": "Unknown"}]), false)[0],
            json!("NotReady")
        );
        assert_eq!(
            status(json!([]), true)[0],
            json!("Unknown,SchedulingDisabled")
        );
    }

    #[test]
    fn events_in_both_apis() {
        let core = res("", "v1", "events");
        assert_eq!(
            names(core),
            [
                "Last Seen",
                "Type",
                "Reason",
                "Object",
                "Subobject",
                "Source",
                "Message",
                "First Seen",
                "Count",
                "Name"
            ]
        );
        assert_eq!(columns(core)[9].priority, 1);
        let e = json!({"metadata": {"name": "nginx.17a"}, "type": "Normal", "reason": "Pulled",
            "involvedObject": {"kind": "Pod", "name": "nginx", "fieldPath": "spec.containers{nginx}"},
            "source": {"component": "kubelet", "host": "n1"}, "message": " Pulled image \n",
            "firstTimestamp": ago(300), "lastTimestamp": ago(60), "count": 3});
        assert_eq!(
            row(core, &e, now()),
            vec![
                json!("60s"),
                json!("Normal"),
                json!("Pulled"),
                json!("pod/nginx"),
                json!("spec.containers{nginx}"),
                json!("kubelet, n1"),
                json!("Pulled image"),
                json!("5m"),
                json!(3),
                json!("nginx.17a")
            ]
        );
        assert_eq!(event_interval(false, &e, now()), "60s (x3 over 5m)");

        // The new API: no deprecated timestamps, a series, the reporting controller as source.
        let new = res("events.k8s.io", "v1", "events");
        assert_eq!(names(new), names(core));
        let e = json!({"metadata": {"name": "x"}, "type": "Warning", "reason": "BackOff",
            "regarding": {"kind": "Node"}, "note": "restarting", "eventTime": "2024-05-01T11:50:00.000000Z",
            "reportingController": "skiff/kubelet", "reportingInstance": "",
            "series": {"count": 7, "lastObservedTime": ago(20)}});
        assert_eq!(
            row(new, &e, now())[..9],
            [
                json!("20s"),
                json!("Warning"),
                json!("BackOff"),
                json!("node"),
                json!(""),
                json!("skiff/kubelet"),
                json!("restarting"),
                json!("10m"),
                json!(7)
            ]
        );
        assert_eq!(event_interval(true, &e, now()), "20s (x7 over 10m)");

        // A singleton of the new API has no count: it is printed as 1.
        let single = json!({"eventTime": ago(5), "regarding": {"kind": "Pod", "name": "a"}});
        assert_eq!(row(new, &single, now())[7..9], [json!("5s"), json!(1)]);
        assert_eq!(row(new, &single, now())[0], json!("5s"));
        assert_eq!(event_interval(true, &single, now()), "5s");
        assert_eq!(row(core, &json!({}), now())[0], json!("<unknown>"));
    }

    #[test]
    fn volumes_and_classes() {
        let pvcs = res("", "v1", "persistentvolumeclaims");
        assert_eq!(
            names(pvcs),
            [
                "Name",
                "Status",
                "Volume",
                "Capacity",
                "Access Modes",
                "StorageClass",
                "VolumeAttributesClass",
                "Age",
                "VolumeMode"
            ]
        );
        let bound = json!({"metadata": {"name": "data", "creationTimestamp": ago(45)},
            "spec": {"volumeName": "pv-1", "storageClassName": "local-path", "volumeMode": "Filesystem",
                "resources": {"requests": {"storage": "2Gi"}}},
            "status": {"phase": "Bound", "capacity": {"storage": "5Gi"},
                "accessModes": ["ReadWriteOncePod", "ReadWriteOnce", "ReadOnlyMany", "ReadWriteOnce"]}});
        assert_eq!(
            row(pvcs, &bound, now()),
            vec![
                json!("data"),
                json!("Bound"),
                json!("pv-1"),
                json!("5Gi"),
                json!("RWO,ROX,RWOP"),
                json!("local-path"),
                json!("<unset>"),
                json!("45s"),
                json!("Filesystem")
            ]
        );
        let pending = json!({"metadata": {"annotations": {"volume.beta.kubernetes.io/storage-class": "old"}},
            "spec": {"storageClassName": "new"}, "status": {"phase": "Pending", "accessModes": ["ReadWriteMany"]}});
        assert_eq!(
            row(pvcs, &pending, now())[1..6],
            [
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("old")
            ]
        );

        let pvs = res("", "v1", "persistentvolumes");
        assert_eq!(
            names(pvs),
            [
                "Name",
                "Capacity",
                "Access Modes",
                "Reclaim Policy",
                "Status",
                "Claim",
                "StorageClass",
                "VolumeAttributesClass",
                "Reason",
                "Age",
                "VolumeMode"
            ]
        );
        let pv = json!({"metadata": {"name": "pv-1", "deletionTimestamp": ago(1)},
            "spec": {"capacity": {"storage": "5Gi"}, "accessModes": ["ReadWriteMany"], "persistentVolumeReclaimPolicy": "Delete",
                "claimRef": {"namespace": "default", "name": "data"}, "storageClassName": "local-path"},
            "status": {"phase": "Bound"}});
        assert_eq!(
            row(pvs, &pv, now())[..9],
            [
                json!("pv-1"),
                json!("5Gi"),
                json!("RWX"),
                json!("Delete"),
                json!("Terminating"),
                json!("default/data"),
                json!("local-path"),
                json!("<unset>"),
                json!("")
            ]
        );

        let scs = res("storage.k8s.io", "v1", "storageclasses");
        assert_eq!(
            names(scs),
            [
                "Name",
                "Provisioner",
                "ReclaimPolicy",
                "VolumeBindingMode",
                "AllowVolumeExpansion",
                "Age"
            ]
        );
        let sc = json!({"metadata": {"name": "local-path", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
            "provisioner": "rancher.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            row(scs, &sc, now())[..5],
            [
                json!("local-path (default)"),
                json!("rancher.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false)
            ]
        );
        let plain = json!({"metadata": {"name": "fast"}, "reclaimPolicy": "Retain", "allowVolumeExpansion": true});
        assert_eq!(
            row(scs, &plain, now())[..5],
            [
                json!("fast"),
                json!(""),
                json!("Retain"),
                json!("Immediate"),
                json!(true)
            ]
        );
    }

    #[test]
    fn horizontal_pod_autoscalers() {
        let v2 = res("autoscaling", "v2", "horizontalpodautoscalers");
        assert_eq!(
            names(v2),
            [
                "Name",
                "Reference",
                "Targets",
                "MinPods",
                "MaxPods",
                "Replicas",
                "Age"
            ]
        );
        let cpu = |target: i64| {
            json!({"type": "Resource", "resource": {"name": "cpu",
            "target": {"type": "Utilization", "averageUtilization": target}}})
        };
        let hpa = |metrics: Value, current: Value| {
            json!({"metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 10, "metrics": metrics},
            "status": {"currentReplicas": 4, "currentMetrics": current}})
        };
        let c = row(
            v2,
            &hpa(
                json!([cpu(50)]),
                json!([{"type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": 250}}}]),
            ),
            now(),
        );
        assert_eq!(
            c[..6],
            [
                json!("web"),
                json!("Deployment/web"),
                json!("cpu: 250%/50%"),
                json!("1"),
                json!(10),
                json!(4)
            ]
        );
        let targets =
            |metrics: Value, current: Value| row(v2, &hpa(metrics, current), now())[2].clone();
        assert_eq!(
            targets(json!([cpu(50)]), json!([])),
            json!("cpu: <unknown>/50%")
        );
        assert_eq!(targets(json!([]), json!([])), json!("<none>"));
        let memory = json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "500Mi"}}});
        let pods = json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}});
        let ext = json!({"type": "External", "external": {"metric": {"name": "queue"}, "target": {"type": "Value", "value": "30"}}});
        assert_eq!(
            targets(
                json!([memory, pods, ext]),
                json!([{"type": "Resource", "resource": {"name": "memory", "current": {"averageValue": "300Mi"}}}])
            ),
            json!("memory: 300Mi/500Mi, <unknown>/10 + 1 more...")
        );
        assert_eq!(
            targets(
                json!([ext]),
                json!([{"type": "External", "external": {"current": {"value": "12"}}}])
            ),
            json!("12/30")
        );

        // autoscaling/v1 carries the CPU target in its own fields.
        let v1 = res("autoscaling", "v1", "horizontalpodautoscalers");
        let old = json!({"metadata": {"name": "web"}, "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"},
            "maxReplicas": 5, "targetCPUUtilizationPercentage": 80}, "status": {"currentReplicas": 1}});
        assert_eq!(
            row(v1, &old, now())[2..6],
            [
                json!("cpu: <unknown>/80%"),
                json!("<unset>"),
                json!(5),
                json!(1)
            ]
        );
    }

    #[test]
    fn simple_kinds() {
        let ns = res("", "v1", "namespaces");
        assert_eq!(names(ns), ["Name", "Status", "Age"]);
        assert_eq!(
            row(
                ns,
                &json!({"metadata": {"name": "default", "creationTimestamp": ago(200)},
            "status": {"phase": "Active"}}),
                now()
            ),
            vec![json!("default"), json!("Active"), json!("3m20s")]
        );

        assert_eq!(names(res("", "v1", "configmaps")), ["Name", "Data", "Age"]);
        assert_eq!(
            cells(
                "",
                "v1",
                "configmaps",
                json!({"data": {"a": "1", "b": "2"}, "binaryData": {"c": ""}})
            )[1],
            json!(3)
        );

        assert_eq!(
            names(res("", "v1", "secrets")),
            ["Name", "Type", "Data", "Age"]
        );
        assert_eq!(
            cells(
                "",
                "v1",
                "secrets",
                json!({"metadata": {"name": "tls"}, "type": "kubernetes.io/tls",
            "data": {"tls.crt": "", "tls.key": ""}})
            )[..3],
            [json!("tls"), json!("kubernetes.io/tls"), json!(2)]
        );

        assert_eq!(
            names(res("", "v1", "serviceaccounts")),
            ["Name", "Secrets", "Age"]
        );
        assert_eq!(
            cells(
                "",
                "v1",
                "serviceaccounts",
                json!({"secrets": [{"name": "t"}]})
            )[1],
            json!(1)
        );

        assert_eq!(
            names(res("coordination.k8s.io", "v1", "leases")),
            ["Name", "Holder", "Age"]
        );
        assert_eq!(
            cells(
                "coordination.k8s.io",
                "v1",
                "leases",
                json!({"spec": {"holderIdentity": "n1"}})
            )[1],
            json!("n1")
        );
        assert_eq!(
            cells("coordination.k8s.io", "v1", "leases", json!({}))[1],
            json!("")
        );

        assert_eq!(
            names(res("scheduling.k8s.io", "v1", "priorityclasses")),
            ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
        );
        assert_eq!(
            cells(
                "scheduling.k8s.io",
                "v1",
                "priorityclasses",
                json!({"metadata": {"name": "system-node-critical"},
            "value": 2000001000, "preemptionPolicy": "PreemptLowerPriority"})
            ),
            vec![
                json!("system-node-critical"),
                json!(2000001000),
                json!(false),
                json!("<unknown>"),
                json!("PreemptLowerPriority")
            ]
        );

        assert_eq!(
            names(res("policy", "v1", "poddisruptionbudgets")),
            [
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age"
            ]
        );
        assert_eq!(
            cells(
                "policy",
                "v1",
                "poddisruptionbudgets",
                json!({"spec": {"minAvailable": "50%"},
            "status": {"disruptionsAllowed": 1}})
            )[1..4],
            [json!("50%"), json!("N/A"), json!(1)]
        );
        assert_eq!(
            cells(
                "policy",
                "v1",
                "poddisruptionbudgets",
                json!({"spec": {"maxUnavailable": 1}})
            )[1..3],
            [json!("N/A"), json!("1")]
        );
    }

    #[test]
    fn column_json_shape() {
        let c = &columns(res("", "v1", "pods"))[5];
        assert_eq!(
            c.to_json(),
            json!({"name": "IP", "type": "string", "format": "", "description": D_POD_IP, "priority": 1})
        );
    }
}
