//! skiff's scheduler: Kubernetes' default filter and score plugins over
//! plain snapshots, the `FitError` message a FailedScheduling event
//! carries, the scheduling queue, and the loop that runs them as a client
//! of the API. Everything but [`run`] is pure: no IO, time passed in.
//!
//! # Layout
//! - [`resources`]: resource amounts and `PodRequests` (init containers, sidecars, overhead).
//! - [`node_info`]: [`NodeInfo`] (a node with its pods, requests, ports, images) and [`Snapshot`].
//! - [`matching`]: tolerations, node selector terms, pod affinity terms.
//! - [`filter`](mod@filter): the filter plugins in Kubernetes' order, and their reason strings.
//! - [`score`](mod@score): the score plugins, normalised and weighted.
//! - [`schedule`](mod@schedule): one attempt, [`schedule()`] / [`schedule_from`] (percentage of nodes to score), and [`FitError`].
//! - [`queue`]: [`SchedulingQueue`] — active, back-off and unschedulable pods.
//! - [`cache`]: [`Cache`] — the incremental snapshot: bound and assumed pods, nominations.
//! - [`preemption`]: DefaultPreemption — victims, candidate ordering, [`preempt`].
//! - [`scheduler`](mod@scheduler): [`Scheduler`] — events in, [`Action`]s out; the loop's pure core.
//! - [`volume_binding`]: VolumeBinding — PersistentVolumeClaims in PreFilter, Filter and PreBind.
//! - [`run`]: the scheduler loop: watches pods, nodes and storage, carries out actions, binds.

pub mod cache;
pub mod filter;
pub mod matching;
pub mod node_info;
pub mod preemption;
pub mod queue;
pub mod resources;
pub mod run;
pub mod schedule;
pub mod scheduler;
pub mod score;
pub mod volume_binding;

pub use cache::Cache;
pub use filter::{Code, Cycle, Rejection, filter};
pub use node_info::{HostPort, NodeInfo, PodInfo, Snapshot};
pub use preemption::{Candidate, preempt};
pub use queue::{QueuedPod, SchedulingQueue};
pub use resources::{Resources, pod_requests};
pub use schedule::{
    FitError, Placement, find_feasible, find_feasible_from, num_feasible_nodes_to_find, schedule,
    schedule_from,
};
pub use scheduler::{Action, Scheduler};
pub use score::{NodeScore, score};

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_scheduler;
