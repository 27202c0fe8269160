//! The skiff node agent: what the kubelet does, for one node.
//!
//! # Layout
//! - [`kubelet`]: the main loop: node, Lease, pod informer, relist and one worker per pod.
//! - [`events`]: events about pods, folded with counts as the kubelet records them.
//! - [`hollow`]: hollow nodes, many simulated nodes with a fake runtime in one process (`skiff sim`).
//! - [`local_path`]: removes the directories of deleted `skiff.io/local-path` volumes of this node.
//! - [`logs`]: CRI log files read back for `kubectl logs`.
//! - [`metrics`]: CPU and working-set memory of the node and its containers (`/metrics/resource`).
//! - [`network`]: the pod network: CNI attachment, routes between nodes, masquerade.
//! - [`runtime`]: the container runtime boundary (runc under a shim; a fake for tests).
//! - [`image`]: the image store, archive import and reference resolution.
//! - [`node`]: the Node object, its conditions and its Lease.
//! - [`probe`]: liveness, readiness and startup probes.
//! - [`spec`]: argv, environment, user and cgroup limits from a container spec and its image.
//! - [`volume`]: pod volumes on the node and the bind mounts containers get.
//! - [`pod`]: the pod worker's pure planner, status computation and restart back-off.

pub mod events;
pub mod hollow;
pub mod image;
pub mod kubelet;
pub mod local_path;
pub mod logs;
pub mod metrics;
pub mod network;
pub mod node;
pub mod pod;
pub mod probe;
pub mod runtime;
pub mod spec;
pub mod volume;
