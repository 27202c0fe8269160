//! The scheduling queue (`internal/queue.PriorityQueue`): an active queue
//! ordered by priority then age, a back-off queue (1 s doubling to 10 s per
//! failed attempt) and the unschedulable pods, retried on cluster events or
//! after five minutes. Time is passed in; nothing here sleeps.

use std::collections::BTreeMap;

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

/// The three sub-queues, keyed by pod key.
#[derive(Debug, Clone, Default)]
pub struct SchedulingQueue {
    active: BTreeMap<String, QueuedPod>,
    backoff: BTreeMap<String, QueuedPod>,
    unschedulable: BTreeMap<String, QueuedPod>,
    in_flight: BTreeMap<String, QueuedPod>,
}

impl SchedulingQueue {
    /// An empty queue.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a new pending pod (or updates its priority) to the active queue.
    pub fn add(&mut self, key: &str, priority: i32, now: Timestamp) {
        if let Some(p) = self.active.get_mut(key) {
            p.priority = priority;
            return;
        }
        let old = self
            .backoff
            .remove(key)
            .or_else(|| self.unschedulable.remove(key));
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
        self.active.insert(key.to_string(), pod);
    }

    /// Forgets a pod (deleted, or bound by someone else).
    pub fn delete(&mut self, key: &str) {
        self.active.remove(key);
        self.backoff.remove(key);
        self.unschedulable.remove(key);
        self.in_flight.remove(key);
    }

    /// Moves pods whose back-off ended, and pods unschedulable for five
    /// minutes, to the active queue.
    pub fn flush(&mut self, now: Timestamp) {
        let done: Vec<String> = self
            .backoff
            .values()
            .filter(|p| p.backoff_expiry() <= now)
            .map(|p| p.key.clone())
            .collect();
        for k in done {
            if let Some(p) = self.backoff.remove(&k) {
                self.active.insert(k, p);
            }
        }
        let stale: Vec<String> = self
            .unschedulable
            .values()
            .filter(|p| now.duration_since(p.timestamp) > MAX_UNSCHEDULABLE_DURATION)
            .map(|p| p.key.clone())
            .collect();
        for k in stale {
            if let Some(p) = self.unschedulable.remove(&k) {
                self.requeue(p, now);
            }
        }
    }

    /// Takes the next pod to schedule: highest priority, then longest waiting.
    /// The attempt is counted; report its outcome with [`Self::done`],
    /// [`Self::unschedulable`] or [`Self::backoff`].
    pub fn pop(&mut self, now: Timestamp) -> Option<QueuedPod> {
        self.flush(now);
        let key = self
            .active
            .values()
            .min_by(|a, b| {
                b.priority
                    .cmp(&a.priority)
                    .then(a.timestamp.cmp(&b.timestamp))
                    .then(a.key.cmp(&b.key))
            })?
            .key
            .clone();
        let mut p = self.active.remove(&key)?;
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
            self.unschedulable.insert(key.to_string(), p);
        }
    }

    /// Scheduling the popped pod failed for another reason (an error): it backs off.
    pub fn backoff(&mut self, key: &str, now: Timestamp) {
        if let Some(mut p) = self.in_flight.remove(key) {
            p.timestamp = now;
            self.backoff.insert(key.to_string(), p);
        }
    }

    fn requeue(&mut self, mut p: QueuedPod, now: Timestamp) {
        if p.backoff_expiry() > now {
            self.backoff.insert(p.key.clone(), p);
        } else {
            p.timestamp = now;
            self.active.insert(p.key.clone(), p);
        }
    }

    /// A node or pod changed: every unschedulable pod is retried, through the
    /// back-off queue if its back-off has not ended yet.
    pub fn move_all_to_active_or_backoff(&mut self, now: Timestamp) {
        for p in std::mem::take(&mut self.unschedulable).into_values() {
            self.requeue(p, now);
        }
    }

    /// The earliest time a backing-off pod becomes active, if any.
    pub fn next_backoff_expiry(&self) -> Option<Timestamp> {
        self.backoff.values().map(QueuedPod::backoff_expiry).min()
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
