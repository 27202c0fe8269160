//! Per-container restart back-off, with the semantics of client-go's `flowcontrol.Backoff`
//! as the kubelet uses it for CrashLoopBackOff.
//!
//! The kubelet keys an entry by pod and container (and the container's image), and:
//! - before restarting an exited container, asks whether it is in back-off *since the
//!   container finished*: `now - finished_at < backoff` (unless the entry has expired);
//! - when it does restart it, moves the entry on: the first time (or after expiry) to the
//!   initial duration, otherwise doubling, capped at the maximum; `last_update` is now.
//! - An entry expires when the container finished more than `2 × max` after the last
//!   restart, i.e. it ran that long without crashing (10 minutes with the default 5 minute
//!   maximum); the next crash then starts again at the initial duration.
//!
//! So the first restart is immediate and the following waits are 10 s, 20 s, 40 s, 80 s,
//! 160 s, 300 s, 300 s… with the defaults. Time is always passed in; nothing reads a clock.

use jiff::{SignedDuration, Timestamp};
use std::collections::HashMap;
use std::time::Duration;

/// The kubelet's initial restart back-off.
pub const DEFAULT_INITIAL: Duration = Duration::from_secs(10);
/// The kubelet's default maximum restart back-off (`--crashloop-backoff-max`).
pub const DEFAULT_MAX: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    backoff: Duration,
    last_update: Timestamp,
}

/// Restart back-off state for every container of the node, keyed by [`Backoff::key`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    entries: HashMap<String, Entry>,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(DEFAULT_INITIAL, DEFAULT_MAX)
    }
}

fn signed(d: Duration) -> SignedDuration {
    SignedDuration::try_from(d).unwrap_or(SignedDuration::MAX)
}

impl Backoff {
    /// Back-off starting at `initial` and doubling up to `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        Backoff {
            initial,
            max,
            entries: HashMap::new(),
        }
    }

    /// The key of one container of one pod: pod name, namespace, uid, container name and image,
    /// so that a new image starts a fresh back-off (the kubelet hashes the image instead).
    pub fn key(pod_name: &str, namespace: &str, uid: &str, container: &str, image: &str) -> String {
        format!("{pod_name}_{namespace}_{uid}_{container}_{image}")
    }

    /// Whether `event_time` (when the container finished) is more than `2 × max` after the
    /// entry's last update: the container ran stably and the back-off starts over.
    fn expired(&self, entry: &Entry, event_time: Timestamp) -> bool {
        event_time.duration_since(entry.last_update) > signed(self.max).saturating_mul(2)
    }

    /// Records a restart of the container that finished at `event_time`, made at `now`:
    /// the back-off becomes the initial duration (new or expired entry) or doubles, capped.
    pub fn next(&mut self, key: &str, event_time: Timestamp, now: Timestamp) {
        let backoff = match self.entries.get(key) {
            Some(e) if !self.expired(e, event_time) => e.backoff.saturating_mul(2).min(self.max),
            _ => self.initial,
        };
        self.entries.insert(
            key.to_string(),
            Entry {
                backoff,
                last_update: now,
            },
        );
    }

    /// When the container that finished at `event_time` may be restarted, if that is still
    /// in the future at `now`; `None` when it may be restarted now.
    pub fn in_backoff(
        &self,
        key: &str,
        event_time: Timestamp,
        now: Timestamp,
    ) -> Option<Timestamp> {
        let entry = self.entries.get(key)?;
        if self.expired(entry, event_time) {
            return None;
        }
        let until = event_time.checked_add(signed(entry.backoff)).ok()?;
        (now < until).then_some(until)
    }

    /// The current back-off of a key (zero when it has none).
    pub fn current(&self, key: &str) -> Duration {
        self.entries.get(key).map_or(Duration::ZERO, |e| e.backoff)
    }

    /// Forgets a key.
    pub fn reset(&mut self, key: &str) {
        self.entries.remove(key);
    }

    /// Forgets entries not updated for more than `2 × max` before `now`.
    pub fn gc(&mut self, now: Timestamp) {
        let limit = signed(self.max).saturating_mul(2);
        self.entries
            .retain(|_, e| now.duration_since(e.last_update) <= limit);
    }

    /// How many keys have an entry.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no key has an entry.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Formats a duration the way Go's `time.Duration.String` does ("10s", "1m20s", "5m0s",
/// "1h0m0s", "1.5s", "500ms"), as the kubelet's back-off messages show it.
pub fn go_duration(d: Duration) -> String {
    let nanos = d.as_nanos();
    if nanos == 0 {
        return "0s".to_string();
    }
    if nanos < 1_000 {
        return format!("{nanos}ns");
    }
    if nanos < 1_000_000 {
        return format!("{}µs", trim_fraction(nanos, 1_000));
    }
    if nanos < 1_000_000_000 {
        return format!("{}ms", trim_fraction(nanos, 1_000_000));
    }
    let total_secs = d.as_secs();
    let (h, m) = (total_secs / 3600, (total_secs / 60) % 60);
    let secs = trim_fraction(nanos % 60_000_000_000, 1_000_000_000);
    if h > 0 {
        format!("{h}h{m}m{secs}s")
    } else if m > 0 {
        format!("{m}m{secs}s")
    } else {
        format!("{secs}s")
    }
}

/// `value / unit` with its fractional part, trailing zeros dropped ("1.5", "2").
fn trim_fraction(value: u128, unit: u128) -> String {
    let whole = value / unit;
    let frac = value % unit;
    if frac == 0 {
        return whole.to_string();
    }
    let width = unit.ilog10() as usize;
    let digits = format!("{frac:0width$}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> Timestamp {
        Timestamp::from_second(1_700_000_000 + secs).unwrap()
    }

    #[test]
    fn crash_loop_waits_double_up_to_the_max() {
        // A container that crashes 1 s after every start. The first restart is immediate,
        // then each restart waits the current back-off after the crash.
        let mut b = Backoff::default();
        let key = "k";
        let mut now = t(0);
        let mut waits = Vec::new();
        for _ in 0..8 {
            let finished = now + SignedDuration::from_secs(1);
            now = finished;
            let wait = match b.in_backoff(key, finished, now) {
                Some(until) => until.duration_since(finished).as_secs(),
                None => 0,
            };
            waits.push(wait);
            now = finished + SignedDuration::from_secs(wait);
            assert_eq!(b.in_backoff(key, finished, now), None);
            b.next(key, finished, now);
        }
        assert_eq!(waits, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(b.current(key), DEFAULT_MAX);
    }

    #[test]
    fn in_backoff_until_finished_plus_current() {
        let mut b = Backoff::default();
        b.next("k", t(0), t(0));
        b.next("k", t(5), t(5)); // 20 s now
        let cases = [
            (t(6), t(10), Some(t(26))),
            (t(6), t(25), Some(t(26))),
            (t(6), t(26), None),
        ];
        for (finished, now, want) in cases {
            assert_eq!(b.in_backoff("k", finished, now), want, "now {now}");
        }
        assert_eq!(b.in_backoff("other", t(6), t(7)), None);
    }

    #[test]
    fn reset_after_running_twice_the_max() {
        let mut b = Backoff::default();
        for i in 0..6 {
            b.next("k", t(i), t(i));
        }
        assert_eq!(b.current("k"), Duration::from_secs(300));
        // Finished exactly 600 s after the last restart: not expired yet (strictly more needed).
        assert!(b.in_backoff("k", t(5 + 600), t(5 + 601)).is_some());
        // Ran 601 s: stable, no back-off, and the next restart starts at 10 s again.
        let finished = t(5 + 601);
        assert_eq!(b.in_backoff("k", finished, finished), None);
        b.next("k", finished, finished);
        assert_eq!(b.current("k"), Duration::from_secs(10));
    }

    #[test]
    fn configurable_max_caps_and_shortens_reset() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(60));
        let mut got = Vec::new();
        for i in 0..5 {
            b.next("k", t(i), t(i));
            got.push(b.current("k").as_secs());
        }
        assert_eq!(got, vec![10, 20, 40, 60, 60]);
        // 2 × 60 s of running resets.
        b.next("k", t(4 + 121), t(4 + 121));
        assert_eq!(b.current("k").as_secs(), 10);
    }

    #[test]
    fn gc_drops_stale_entries() {
        let mut b = Backoff::default();
        b.next("old", t(0), t(0));
        b.next("new", t(500), t(500));
        b.gc(t(601));
        assert_eq!(b.len(), 1);
        assert_eq!(b.current("old"), Duration::ZERO);
        assert_eq!(b.current("new").as_secs(), 10);
        b.reset("new");
        assert!(b.is_empty());
    }

    #[test]
    fn go_duration_strings() {
        let cases = [
            (Duration::from_secs(10), "10s"),
            (Duration::from_secs(80), "1m20s"),
            (Duration::from_secs(160), "2m40s"),
            (Duration::from_secs(300), "5m0s"),
            (Duration::from_secs(3600), "1h0m0s"),
            (Duration::from_millis(1500), "1.5s"),
            (Duration::from_millis(500), "500ms"),
            (Duration::ZERO, "0s"),
        ];
        for (d, want) in cases {
            assert_eq!(go_duration(d), want);
        }
    }
}
