//! skiff's scheduler: Kubernetes' default filter and score plugins over
//! plain snapshots, the `FitError` message a FailedScheduling event
//! carries, the scheduling queue, and the loop that runs them as a client
//! of the API. Everything but [`run`] is pure: no IO, time passed in.
//!
//! # Layout
//! - [`resources`]: resource amounts and `PodRequests` (init containers, sidecars, overhead).
//! - [`node_info`]: [`NodeInfo`] (a node with its pods, requests, ports, images) and [`Snapshot`].
//! - [`matching`]: tolerations, node selector terms, pod affinity terms.
//! - [`filter`]: the filter plugins in Kubernetes' order, and their reason strings.
//! - [`score`]: the score plugins, normalised and weighted.
//! - [`schedule`]: one attempt, [`schedule()`], and [`FitError`].
//! - [`queue`]: [`SchedulingQueue`] — active, back-off and unschedulable pods.
//! - [`run`]: the scheduler loop: watches pods and nodes, places pods, binds them.

pub mod filter;
pub mod matching;
pub mod node_info;
pub mod queue;
pub mod resources;
pub mod run;
pub mod schedule;
pub mod score;

pub use filter::{Code, Cycle, Rejection, filter};
pub use node_info::{HostPort, NodeInfo, Snapshot};
pub use queue::{QueuedPod, SchedulingQueue};
pub use resources::{Resources, pod_requests};
pub use schedule::{FitError, find_feasible, schedule};
pub use score::{NodeScore, score};

#[cfg(test)]
mod tests;
