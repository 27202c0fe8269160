//! The scheduling queue (`internal/queue.PriorityQueue`): an active queue
//! ordered by priority then age, a back-off queue (1 s doubling to 10 s per
//! failed attempt) and the unschedulable pods, retried on cluster events or
//! after five minutes. Time is passed in; nothing here sleeps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};

/// The first back-off after a failed attempt.
pub const INITIAL_BACKOFF: SignedDuration = SignedDuration::from_secs(1);
/// The longest back-off.
pub const MAX_BACKOFF: SignedDuration = SignedDuration::from_secs(10);
/// How long a pod stays unschedulable before it is retried anyway.
pub const MAX_UNSCHEDULABLE_DURATION: SignedDuration = SignedDuration::from_secs(300);

/// A pod waiting to be scheduled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueuedPod {
    /// `namespace/name`.
    pub key: String,
    /// `spec.priority`.
    pub priority: i32,
    /// When the pod last entered a queue (orders equal priorities).
    pub timestamp: Timestamp,
    /// When the pod was first added.
    pub initial_attempt: Timestamp,
    /// How many scheduling attempts have been made.
    pub attempts: u32,
}

impl QueuedPod {
    /// The back-off after this many attempts: 1 s, doubling, at most 10 s.
    pub fn backoff_duration(&self) -> SignedDuration {
        let mut d = INITIAL_BACKOFF;
        for _ in 1..self.attempts {
            if d > MAX_BACKOFF - d {
                return MAX_BACKOFF;
            }
            d += d;
        }
        d
    }

    /// When the pod's back-off ends.
    pub fn backoff_expiry(&self) -> Timestamp {
        self.timestamp + self.backoff_duration()
    }
}

type ActiveKey = (Reverse<i32>, Timestamp, String);

/// The three sub-queues, keyed by pod key, each with an index in the order
/// it is drained (active: priority then age; back-off: expiry; unschedulable:
/// age), so popping and flushing cost a logarithm, not a scan.
#[derive(Debug, Clone, Default)]
pub struct SchedulingQueue {
    active: BTreeMap<String, QueuedPod>,
    active_order: BTreeSet<ActiveKey>,
    backoff: BTreeMap<String, QueuedPod>,
    backoff_order: BTreeSet<(Timestamp, String)>,
    unschedulable: BTreeMap<String, QueuedPod>,
    unschedulable_order: BTreeSet<(Timestamp, String)>,
    in_flight: BTreeMap<String, QueuedPod>,
}

fn active_key(p: &QueuedPod) -> ActiveKey {
    (Reverse(p.priority), p.timestamp, p.key.clone())
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    fn push_active(&mut self, p: QueuedPod) {
        self.active_order.insert(active_key(&p));
        if let Some(old) = self.active.insert(p.key.clone(), p) {
            self.active_order.remove(&active_key(&old));
        }
    }

    fn take_active(&mut self, key: &str) -> Option<QueuedPod> {
        let p = self.active.remove(key)?;
        self.active_order.remove(&active_key(&p));
        Some(p)
    }

    fn push_backoff(&mut self, p: QueuedPod) {
        self.backoff_order
            .insert((p.backoff_expiry(), p.key.clone()));
        if let Some(old) = self.backoff.insert(p.key.clone(), p) {
            self.backoff_order
                .remove(&(old.backoff_expiry(), old.key.clone()));
        }
    }

    fn take_backoff(&mut self, key: &str) -> Option<QueuedPod> {
        let p = self.backoff.remove(key)?;
        self.backoff_order
            .remove(&(p.backoff_expiry(), p.key.clone()));
        Some(p)
    }

    fn push_unschedulable(&mut self, p: QueuedPod) {
        self.unschedulable_order
            .insert((p.timestamp, p.key.clone()));
        if let Some(old) = self.unschedulable.insert(p.key.clone(), p) {
            self.unschedulable_order
                .remove(&(old.timestamp, old.key.clone()));
        }
    }

    fn take_unschedulable(&mut self, key: &str) -> Option<QueuedPod> {
        let p = self.unschedulable.remove(key)?;
        self.unschedulable_order
            .remove(&(p.timestamp, p.key.clone()));
        Some(p)
    }

    /// Adds a new pending pod (or updates its priority) to the active queue.
    /// A pod being scheduled right now is left alone.
    pub fn add(&mut self, key: &str, priority: i32, now: Timestamp) {
        if self.in_flight.contains_key(key) {
            return;
        }
        if let Some(mut p) = self.take_active(key) {
            p.priority = priority;
            self.push_active(p);
            return;
        }
        let old = self
            .take_backoff(key)
            .or_else(|| self.take_unschedulable(key));
        let pod = match old {
            Some(mut p) => {
                p.priority = priority;
                p.timestamp = now;
                p
            }
            None => QueuedPod {
                key: key.to_string(),
                priority,
                timestamp: now,
                initial_attempt: now,
                attempts: 0,
            },
        };
        self.push_active(pod);
    }

    /// Whether the queue holds the pod anywhere (waiting or being scheduled).
    pub fn contains(&self, key: &str) -> bool {
        self.active.contains_key(key)
            || self.backoff.contains_key(key)
            || self.unschedulable.contains_key(key)
            || self.in_flight.contains_key(key)
    }

    /// Forgets a pod (deleted, or bound by someone else).
    pub fn delete(&mut self, key: &str) {
        self.take_active(key);
        self.take_backoff(key);
        self.take_unschedulable(key);
        self.in_flight.remove(key);
    }

    /// Moves pods whose back-off ended, and pods unschedulable for five
    /// minutes, to the active queue.
    pub fn flush(&mut self, now: Timestamp) {
        while let Some((expiry, key)) = self.backoff_order.first().cloned() {
            if expiry > now {
                break;
            }
            if let Some(p) = self.take_backoff(&key) {
                self.push_active(p);
            }
        }
        while let Some((since, key)) = self.unschedulable_order.first().cloned() {
            if now.duration_since(since) <= MAX_UNSCHEDULABLE_DURATION {
                break;
            }
            if let Some(p) = self.take_unschedulable(&key) {
                self.requeue(p, now);
            }
        }
    }

    /// Takes the next pod to schedule: highest priority, then longest waiting.
    /// The attempt is counted; report its outcome with [`Self::done`],
    /// [`Self::unschedulable`] or [`Self::backoff`].
    pub fn pop(&mut self, now: Timestamp) -> Option<QueuedPod> {
        self.flush(now);
        let (_, _, key) = self.active_order.first()?.clone();
        let mut p = self.take_active(&key)?;
        p.attempts += 1;
        self.in_flight.insert(key, p.clone());
        Some(p)
    }

    /// The pod was scheduled (bound); it leaves the queue.
    pub fn done(&mut self, key: &str) {
        self.in_flight.remove(key);
    }

    /// No node fits the popped pod: it waits in the unschedulable set until a
    /// cluster event ([`Self::move_all_to_active_or_backoff`]).
    pub fn unschedulable(&mut self, key: &str, now: Timestamp) {
        if let Some(mut p) = self.in_flight.remove(key) {
            p.timestamp = now;
            self.push_unschedulable(p);
        }
    }

    /// Scheduling the popped pod failed for another reason (an error): it backs off.
    pub fn backoff(&mut self, key: &str, now: Timestamp) {
        if let Some(mut p) = self.in_flight.remove(key) {
            p.timestamp = now;
            self.push_backoff(p);
        }
    }

    fn requeue(&mut self, mut p: QueuedPod, now: Timestamp) {
        if p.backoff_expiry() > now {
            self.push_backoff(p);
        } else {
            p.timestamp = now;
            self.push_active(p);
        }
    }

    /// A node or pod changed: every unschedulable pod is retried, through the
    /// back-off queue if its back-off has not ended yet.
    pub fn move_all_to_active_or_backoff(&mut self, now: Timestamp) {
        self.unschedulable_order.clear();
        for p in std::mem::take(&mut self.unschedulable).into_values() {
            self.requeue(p, now);
        }
    }

    /// The earliest time a backing-off pod becomes active, if any.
    pub fn next_backoff_expiry(&self) -> Option<Timestamp> {
        self.backoff_order.first().map(|(t, _)| *t)
    }

    /// (active, backoff, unschedulable) sizes.
    pub fn lens(&self) -> (usize, usize, usize) {
        (
            self.active.len(),
            self.backoff.len(),
            self.unschedulable.len(),
        )
    }
}
