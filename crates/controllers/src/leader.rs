//! Leader election on `coordination.k8s.io/v1` Leases, as client-go's
//! `tools/leaderelection` package does it with a `LeaseLock`.
//!
//! Several `skiff server`s on one datastore each run [`run_elected`] for the
//! controllers (`kube-controller-manager`) and the scheduler
//! (`kube-scheduler`); only the holder of the Lease runs the work, and when it
//! dies another candidate takes over once the Lease has not changed for
//! `leaseDurationSeconds`.
//!
//! How it decides:
//!
//! - Expiry is judged by the *local* time at which this candidate last saw the
//!   election record change (client-go's `observedTime`), never by the
//!   `renewTime` written in it, so clocks that disagree between servers do not
//!   matter (only their rates do).
//! - A candidate whose identity is the record's `holderIdentity` renews at
//!   once, so a restarted server with a stable identity takes its own Lease
//!   back without waiting. An empty `holderIdentity` is a free Lease.
//! - The Lease is created with POST and taken or renewed with PUT carrying the
//!   observed `resourceVersion`; a 409 Conflict means another candidate won.
//! - The leader renews every `retry_period`; when no renewal has succeeded for
//!   `renew_deadline` it has lost the Lease: the work is told to stop and the
//!   process goes back to being a candidate.
//! - On shutdown the work is stopped first and the Lease is then released
//!   (`holderIdentity` empty, `leaseDurationSeconds` 1), as client-go's
//!   `ReleaseOnCancel` does, so another candidate takes over at once.
//!
//! The decision is the pure [`decide`]; [`next_record`] and
//! [`release_record`] say what to write. The loop around them is thin.

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// How a candidate takes part in one election.
#[derive(Debug, Clone)]
pub struct ElectionConfig {
    /// The namespace of the Lease (`kube-system`).
    pub namespace: String,
    /// The Lease's name, e.g. `kube-controller-manager` or `kube-scheduler`.
    /// It is also the source component of the Events recorded on the Lease.
    pub lease_name: String,
    /// This candidate's identity, written as `holderIdentity`. Keep it stable
    /// across restarts of one server so that it takes its own Lease back at
    /// once.
    pub identity: String,
    /// How long candidates wait, from the last change they saw, before they
    /// take a Lease held by someone else (`--leader-elect-lease-duration`,
    /// 15 s). Written as whole seconds (at least 1) in `leaseDurationSeconds`.
    pub lease_duration: Duration,
    /// How long the leader keeps trying to renew before it gives up
    /// leadership (`--leader-elect-renew-deadline`, 10 s). Must be less than
    /// `lease_duration`.
    pub renew_deadline: Duration,
    /// How often candidates try to acquire and the leader renews
    /// (`--leader-elect-retry-period`, 2 s).
    pub retry_period: Duration,
}

impl ElectionConfig {
    /// An election for Lease `kube-system/<lease_name>` as `identity`, with
    /// Kubernetes' default timings (15 s / 10 s / 2 s).
    pub fn new(lease_name: impl Into<String>, identity: impl Into<String>) -> Self {
        Self {
            namespace: "kube-system".into(),
            lease_name: lease_name.into(),
            identity: identity.into(),
            lease_duration: Duration::from_secs(15),
            renew_deadline: Duration::from_secs(10),
            retry_period: Duration::from_secs(2),
        }
    }

    /// `leaseDurationSeconds` as written: whole seconds, at least 1.
    pub fn lease_duration_seconds(&self) -> i32 {
        i32::try_from(self.lease_duration.as_secs())
            .unwrap_or(i32::MAX)
            .max(1)
    }

    /// How long stopped work may take before it is aborted: the time between
    /// giving up (`renew_deadline`) and another candidate taking over
    /// (`lease_duration`).
    pub fn work_grace(&self) -> Duration {
        self.lease_duration.saturating_sub(self.renew_deadline)
    }

    fn describe(&self) -> String {
        format!("{}/{}", self.namespace, self.lease_name)
    }
}

/// The election record client-go keeps in a Lease's spec.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Record {
    /// `spec.holderIdentity`; empty when nobody holds the Lease.
    pub holder_identity: String,
    /// `spec.leaseDurationSeconds`.
    pub lease_duration_seconds: i32,
    /// `spec.acquireTime`: when the current holder took the Lease.
    pub acquire_time: Option<jiff::Timestamp>,
    /// `spec.renewTime`: when the holder last renewed.
    pub renew_time: Option<jiff::Timestamp>,
    /// `spec.leaseTransitions`: how many times the holder changed.
    pub lease_transitions: i32,
}

impl Record {
    /// The record in a Lease spec (absent fields read as empty/zero).
    pub fn from_spec(spec: &LeaseSpec) -> Self {
        Self {
            holder_identity: spec.holder_identity.clone().unwrap_or_default(),
            lease_duration_seconds: spec.lease_duration_seconds.unwrap_or(0),
            acquire_time: spec.acquire_time.as_ref().map(|t| t.0),
            renew_time: spec.renew_time.as_ref().map(|t| t.0),
            lease_transitions: spec.lease_transitions.unwrap_or(0),
        }
    }

    /// The Lease spec client-go writes for this record: every field set.
    pub fn to_spec(&self) -> LeaseSpec {
        LeaseSpec {
            holder_identity: Some(self.holder_identity.clone()),
            lease_duration_seconds: Some(self.lease_duration_seconds),
            acquire_time: self.acquire_time.map(MicroTime),
            renew_time: self.renew_time.map(MicroTime),
            lease_transitions: Some(self.lease_transitions),
            ..LeaseSpec::default()
        }
    }
}

/// What this candidate last saw of the election record, and when by its own
/// clock it saw the record change (client-go's `observedTime`).
#[derive(Debug, Clone, PartialEq)]
pub struct Observed {
    /// The record as last read or written.
    pub record: Record,
    /// The local time at which the record last changed in this candidate's
    /// eyes.
    pub seen_at: Instant,
}

impl Observed {
    /// Takes in a record just read at `now`: the observed time moves only
    /// when the record differs from the one seen before.
    pub fn update(previous: Option<&Observed>, record: Record, now: Instant) -> Observed {
        match previous {
            Some(p) if p.record == record => p.clone(),
            _ => Observed {
                record,
                seen_at: now,
            },
        }
    }

    /// When the Lease expires for this candidate: `leaseDurationSeconds`
    /// after it last saw the record change.
    pub fn expires_at(&self) -> Instant {
        let secs = u64::try_from(self.record.lease_duration_seconds).unwrap_or(0);
        self.seen_at + Duration::from_secs(secs)
    }
}

/// What a candidate does after reading the Lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    /// There is no Lease: create it holding it (POST).
    Create,
    /// The Lease is free or expired: take it (PUT, `leaseTransitions` + 1).
    Acquire,
    /// The Lease is ours: renew it (PUT, same `acquireTime` and transitions).
    Renew,
    /// Another candidate holds a valid Lease: it expires for us at this time.
    Wait(Instant),
    /// We were leading and have lost the Lease: the renew deadline passed, or
    /// the record names another holder.
    Lost,
}

/// True when the leader has gone `renew_deadline` without a successful
/// renewal since `last_renewed`.
pub fn renew_deadline_passed(last_renewed: Instant, now: Instant, cfg: &ElectionConfig) -> bool {
    now.saturating_duration_since(last_renewed) >= cfg.renew_deadline
}

/// Decides what this candidate does. `observed` is the record as last read
/// (`None` when the Lease does not exist); `last_renewed` is when this
/// candidate last wrote the Lease successfully while leading (`None` when it
/// is not leading).
pub fn decide(
    observed: Option<&Observed>,
    identity: &str,
    last_renewed: Option<Instant>,
    now: Instant,
    cfg: &ElectionConfig,
) -> Decision {
    if let Some(t) = last_renewed
        && renew_deadline_passed(t, now, cfg)
    {
        return Decision::Lost;
    }
    let Some(o) = observed else {
        return Decision::Create;
    };
    let holder = o.record.holder_identity.as_str();
    if holder == identity {
        return Decision::Renew;
    }
    if last_renewed.is_some() {
        return Decision::Lost;
    }
    if holder.is_empty() {
        return Decision::Acquire;
    }
    let expiry = o.expires_at();
    if now < expiry {
        Decision::Wait(expiry)
    } else {
        Decision::Acquire
    }
}

/// The record to write for `decision` (Create, Acquire or Renew) at wall
/// time `now`; `None` for Wait and Lost.
pub fn next_record(
    decision: Decision,
    observed: Option<&Record>,
    cfg: &ElectionConfig,
    now: jiff::Timestamp,
) -> Option<Record> {
    let fresh = Record {
        holder_identity: cfg.identity.clone(),
        lease_duration_seconds: cfg.lease_duration_seconds(),
        acquire_time: Some(now),
        renew_time: Some(now),
        lease_transitions: 0,
    };
    match decision {
        Decision::Create => Some(fresh),
        Decision::Acquire => Some(Record {
            lease_transitions: observed.map_or(0, |r| r.lease_transitions.saturating_add(1)),
            ..fresh
        }),
        Decision::Renew => Some(Record {
            acquire_time: observed.and_then(|r| r.acquire_time).or(Some(now)),
            lease_transitions: observed.map_or(0, |r| r.lease_transitions),
            ..fresh
        }),
        Decision::Wait(_) | Decision::Lost => None,
    }
}

/// The record a leader writes to give the Lease up on shutdown: no holder,
/// `leaseDurationSeconds` 1, renew and acquire time now, transitions kept.
pub fn release_record(observed: &Record, now: jiff::Timestamp) -> Record {
    Record {
        holder_identity: String::new(),
        lease_duration_seconds: 1,
        acquire_time: Some(now),
        renew_time: Some(now),
        lease_transitions: observed.lease_transitions,
    }
}

/// Runs `work` only while this process holds the Lease `cfg` names, until
/// `shutdown` turns true.
///
/// `work` is called each time leadership is won, with a receiver that turns
/// true when leadership is lost or on shutdown (its sender is also dropped if
/// this future is dropped). After the stop signal, `run_elected` waits for the
/// work future to finish, aborting it if it has not within
/// [`ElectionConfig::work_grace`], before competing again. On shutdown it
/// stops the work and then releases the Lease so another candidate takes over
/// at once. Dropping this future aborts the work without releasing.
pub async fn run_elected<F, Fut>(
    client: kube::Client,
    cfg: ElectionConfig,
    shutdown: watch::Receiver<bool>,
    work: F,
) where
    F: FnMut(watch::Receiver<bool>) -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    let (leading, _) = watch::channel(false);
    run_elected_reporting(client, cfg, shutdown, leading, work).await
}

/// [`run_elected`], also telling `leading` whether this process is the
/// leader: true from winning the Lease until the work has been stopped after
/// losing it (or on shutdown).
pub async fn run_elected_reporting<F, Fut>(
    client: kube::Client,
    cfg: ElectionConfig,
    mut shutdown: watch::Receiver<bool>,
    leading: watch::Sender<bool>,
    mut work: F,
) where
    F: FnMut(watch::Receiver<bool>) -> Fut + Send,
    Fut: Future<Output = ()> + Send + 'static,
{
    let mut el = Elector {
        api: Api::namespaced(client.clone(), &cfg.namespace),
        client,
        cfg,
        observed: None,
        lease: None,
    };
    loop {
        tracing::info!(lease = %el.cfg.describe(), "attempting to acquire leader lease");
        if !el.acquire(&mut shutdown).await {
            return;
        }
        tracing::info!(lease = %el.cfg.describe(), "successfully acquired lease");
        leading.send_replace(true);
        el.record_event("became leader").await;
        let (stop, stop_rx) = watch::channel(false);
        let mut task = AbortOnDrop(tokio::spawn(work(stop_rx)));
        let end = el.lead(&mut shutdown, &mut task).await;
        stop.send_replace(true);
        if !task.0.is_finished()
            && tokio::time::timeout(el.cfg.work_grace(), &mut task.0)
                .await
                .is_err()
        {
            tracing::warn!(lease = %el.cfg.describe(), "leader work did not stop in time; aborting it");
            task.0.abort();
        }
        drop(task);
        leading.send_replace(false);
        el.record_event("stopped leading").await;
        match end {
            End::Shutdown => {
                el.release().await;
                return;
            }
            End::Lost => {
                tracing::warn!(lease = %el.cfg.describe(), "leaderelection lost");
            }
        }
    }
}

/// Aborts the spawned work when dropped, so a dropped election stops it.
struct AbortOnDrop(JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Why leading ended.
enum End {
    Shutdown,
    Lost,
}

/// The outcome of one try to acquire or renew.
enum Step {
    Held,
    NotHeld,
    Lost,
}

/// One candidate's view of the Lease.
struct Elector {
    client: kube::Client,
    api: Api<Lease>,
    cfg: ElectionConfig,
    observed: Option<Observed>,
    /// The Lease as last read or written, whose `resourceVersion` a PUT carries.
    lease: Option<Lease>,
}

/// True once `shutdown` is true or its sender is gone.
fn is_shutdown(shutdown: &watch::Receiver<bool>) -> bool {
    *shutdown.borrow() || shutdown.has_changed().is_err()
}

impl Elector {
    /// Tries every `retry_period` until the Lease is held (true) or shutdown
    /// (false).
    async fn acquire(&mut self, shutdown: &mut watch::Receiver<bool>) -> bool {
        loop {
            if is_shutdown(shutdown) {
                return false;
            }
            if let Step::Held = self.try_acquire_or_renew(None).await {
                return true;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.retry_period) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Renews every `retry_period` until shutdown or the Lease is lost.
    async fn lead(&mut self, shutdown: &mut watch::Receiver<bool>, task: &mut AbortOnDrop) -> End {
        let mut last_renewed = Instant::now();
        let mut work_done = false;
        loop {
            if is_shutdown(shutdown) {
                return End::Shutdown;
            }
            tokio::select! {
                _ = tokio::time::sleep(self.cfg.retry_period) => {}
                _ = shutdown.changed() => continue,
                _ = &mut task.0, if !work_done => {
                    work_done = true;
                    tracing::info!(lease = %self.cfg.describe(), "leader work ended; keeping the lease");
                    continue;
                }
            }
            match self.try_acquire_or_renew(Some(last_renewed)).await {
                Step::Held => last_renewed = Instant::now(),
                Step::Lost => return End::Lost,
                Step::NotHeld => {
                    if renew_deadline_passed(last_renewed, Instant::now(), &self.cfg) {
                        return End::Lost;
                    }
                }
            }
        }
    }

    /// One round of client-go's `tryAcquireOrRenew`: the leader first PUTs
    /// over the Lease it last wrote; otherwise the Lease is read, decided on
    /// and written.
    async fn try_acquire_or_renew(&mut self, last_renewed: Option<Instant>) -> Step {
        let name = self.cfg.lease_name.clone();
        if last_renewed.is_some()
            && let (Some(o), Some(lease)) = (&self.observed, &self.lease)
            && o.record.holder_identity == self.cfg.identity
            && Instant::now() < o.expires_at()
        {
            let record = next_record(Decision::Renew, Some(&o.record), &self.cfg, micro_now());
            let lease = lease.clone();
            if let Some(record) = record
                && self.put(lease, record).await
            {
                return Step::Held;
            }
        }
        let now = Instant::now();
        match self.api.get_opt(&name).await {
            Ok(Some(lease)) => {
                let record = Record::from_spec(&lease.spec.clone().unwrap_or_default());
                self.observed = Some(Observed::update(self.observed.as_ref(), record, now));
                self.lease = Some(lease);
            }
            Ok(None) => {
                self.observed = None;
                self.lease = None;
            }
            Err(e) => {
                tracing::warn!(lease = %self.cfg.describe(), "error retrieving lease: {e}");
                return Step::NotHeld;
            }
        }
        let decision = decide(
            self.observed.as_ref(),
            &self.cfg.identity,
            last_renewed,
            Instant::now(),
            &self.cfg,
        );
        let observed = self.observed.as_ref().map(|o| &o.record);
        match decision {
            Decision::Lost => Step::Lost,
            Decision::Wait(_) => {
                tracing::debug!(
                    lease = %self.cfg.describe(),
                    "lock is held by {} and has not yet expired",
                    observed.map_or("", |r| r.holder_identity.as_str())
                );
                Step::NotHeld
            }
            Decision::Create => {
                let Some(record) = next_record(decision, None, &self.cfg, micro_now()) else {
                    return Step::NotHeld;
                };
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(name),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..ObjectMeta::default()
                    },
                    spec: Some(record.to_spec()),
                };
                match self.api.create(&PostParams::default(), &lease).await {
                    Ok(created) => {
                        self.written(created, record);
                        Step::Held
                    }
                    Err(e) => {
                        tracing::debug!(lease = %self.cfg.describe(), "error initially creating leader election record: {e}");
                        Step::NotHeld
                    }
                }
            }
            Decision::Acquire | Decision::Renew => {
                let (Some(record), Some(lease)) = (
                    next_record(decision, observed, &self.cfg, micro_now()),
                    self.lease.clone(),
                ) else {
                    return Step::NotHeld;
                };
                if self.put(lease, record).await {
                    Step::Held
                } else {
                    Step::NotHeld
                }
            }
        }
    }

    /// PUTs `record` over `lease` (its `resourceVersion` guards the write);
    /// true when it was written.
    async fn put(&mut self, mut lease: Lease, record: Record) -> bool {
        let name = self.cfg.lease_name.clone();
        lease.spec = Some(record.to_spec());
        match self
            .api
            .replace(&name, &PostParams::default(), &lease)
            .await
        {
            Ok(written) => {
                self.written(written, record);
                true
            }
            Err(e) => {
                tracing::debug!(lease = %self.cfg.describe(), "failed to update lock: {e}");
                false
            }
        }
    }

    /// Remembers a record this candidate wrote, seen now.
    fn written(&mut self, lease: Lease, record: Record) {
        self.observed = Some(Observed {
            record,
            seen_at: Instant::now(),
        });
        self.lease = Some(lease);
    }

    /// Gives the Lease up if this candidate holds it (client-go's `release`).
    async fn release(&mut self) {
        let (Some(o), Some(lease)) = (&self.observed, &self.lease) else {
            return;
        };
        if o.record.holder_identity != self.cfg.identity {
            return;
        }
        let record = release_record(&o.record, micro_now());
        let lease = lease.clone();
        if !self.put(lease, record).await {
            tracing::warn!(lease = %self.cfg.describe(), "failed to release lock");
        }
    }

    /// Records `<identity> <what>` as a Normal `LeaderElection` Event on the
    /// Lease.
    async fn record_event(&self, what: &str) {
        let uid = self.lease.as_ref().and_then(|l| l.metadata.uid.clone());
        let about = crate::events::Involved {
            kind: "Lease",
            api_version: "coordination.k8s.io/v1",
            namespace: &self.cfg.namespace,
            name: &self.cfg.lease_name,
            uid: uid.as_deref(),
        };
        crate::events::record(
            &self.client,
            &self.cfg.lease_name,
            &about,
            "Normal",
            "LeaderElection",
            &format!("{} {what}", self.cfg.identity),
        )
        .await;
    }
}

/// Now, to the microsecond as a `MicroTime` carries it.
fn micro_now() -> jiff::Timestamp {
    let t = jiff::Timestamp::now();
    t.round(jiff::Unit::Microsecond).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ElectionConfig {
        ElectionConfig::new("kube-controller-manager", "me")
    }

    fn held_by(holder: &str, seen_at: Instant) -> Observed {
        Observed {
            record: Record {
                holder_identity: holder.into(),
                lease_duration_seconds: 15,
                lease_transitions: 3,
                ..Record::default()
            },
            seen_at,
        }
    }

    #[test]
    fn decide_table() {
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let cfg = cfg();
        // (what, observed, last_renewed, now, expected)
        type Case = (
            &'static str,
            Option<Observed>,
            Option<Instant>,
            Instant,
            Decision,
        );
        let cases: Vec<Case> = vec![
            ("no lease: create", None, None, t0, Decision::Create),
            (
                "held by another, seen changing just now: wait out the duration",
                Some(held_by("other", t0)),
                None,
                t0 + s(1),
                Decision::Wait(t0 + s(15)),
            ),
            (
                "held by another, one second short of expiry: wait",
                Some(held_by("other", t0)),
                None,
                t0 + s(14),
                Decision::Wait(t0 + s(15)),
            ),
            (
                "held by another, unchanged for the lease duration by our clock: take it",
                Some(held_by("other", t0)),
                None,
                t0 + s(15),
                Decision::Acquire,
            ),
            (
                "our own lease (restart with a stable identity): renew at once",
                Some(held_by("me", t0)),
                None,
                t0 + s(1),
                Decision::Renew,
            ),
            (
                "empty holder is free even if fresh",
                Some(held_by("", t0)),
                None,
                t0,
                Decision::Acquire,
            ),
            (
                "leading, renewed recently: renew",
                Some(held_by("me", t0)),
                Some(t0),
                t0 + s(2),
                Decision::Renew,
            ),
            (
                "leading, no renewal for the renew deadline: lost",
                Some(held_by("me", t0)),
                Some(t0),
                t0 + s(10),
                Decision::Lost,
            ),
            (
                "leading but the record names another holder: lost",
                Some(held_by("other", t0)),
                Some(t0),
                t0 + s(1),
                Decision::Lost,
            ),
            (
                "leading and the lease was deleted: create it again",
                None,
                Some(t0),
                t0 + s(2),
                Decision::Create,
            ),
        ];
        for (what, observed, last, now, want) in cases {
            assert_eq!(
                decide(observed.as_ref(), "me", last, now, &cfg),
                want,
                "{what}"
            );
        }
    }

    #[test]
    fn expiry_follows_the_local_observation_not_the_renew_time() {
        // The other holder's clock is an hour behind: its renewTime looks
        // long expired, yet we saw the record change just now.
        let t0 = Instant::now();
        let skewed = jiff::Timestamp::now() - jiff::SignedDuration::from_hours(1);
        let mut o = held_by("other", t0);
        o.record.renew_time = Some(skewed);
        assert_eq!(
            decide(Some(&o), "me", None, t0 + Duration::from_secs(5), &cfg()),
            Decision::Wait(t0 + Duration::from_secs(15))
        );
    }

    #[test]
    fn observed_time_moves_only_when_the_record_changes() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(5);
        let first = held_by("other", t0);
        let same = Observed::update(Some(&first), first.record.clone(), later);
        assert_eq!(same.seen_at, t0, "unchanged record keeps its observed time");
        let mut renewed = first.record.clone();
        renewed.renew_time = Some(jiff::Timestamp::now());
        let moved = Observed::update(Some(&first), renewed, later);
        assert_eq!(moved.seen_at, later, "a renewal restarts the clock");
        assert_eq!(Observed::update(None, first.record, later).seen_at, later);
    }

    #[test]
    fn records_written_for_each_decision() {
        let now: jiff::Timestamp = "2026-01-02T03:04:05.123456Z".parse().unwrap();
        let then: jiff::Timestamp = "2026-01-01T00:00:00.5Z".parse().unwrap();
        let cfg = cfg();
        let old = Record {
            holder_identity: "other".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(then),
            renew_time: Some(then),
            lease_transitions: 4,
        };
        let mine = |acquire, transitions| Record {
            holder_identity: "me".into(),
            lease_duration_seconds: 15,
            acquire_time: Some(acquire),
            renew_time: Some(now),
            lease_transitions: transitions,
        };
        assert_eq!(
            next_record(Decision::Create, None, &cfg, now),
            Some(mine(now, 0))
        );
        assert_eq!(
            next_record(Decision::Acquire, Some(&old), &cfg, now),
            Some(mine(now, 5)),
            "a new holder counts one transition"
        );
        assert_eq!(
            next_record(Decision::Renew, Some(&old), &cfg, now),
            Some(mine(then, 4)),
            "renewing keeps acquireTime and transitions"
        );
        assert_eq!(next_record(Decision::Lost, Some(&old), &cfg, now), None);
        assert_eq!(
            release_record(&old, now),
            Record {
                holder_identity: String::new(),
                lease_duration_seconds: 1,
                acquire_time: Some(now),
                renew_time: Some(now),
                lease_transitions: 4,
            }
        );
    }

    #[test]
    fn spec_as_client_go_writes_it() {
        let now: jiff::Timestamp = "2026-01-02T03:04:05.123456Z".parse().unwrap();
        let rec = next_record(Decision::Create, None, &cfg(), now).unwrap();
        let json = serde_json::to_value(rec.to_spec()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "acquireTime": "2026-01-02T03:04:05.123456Z",
                "holderIdentity": "me",
                "leaseDurationSeconds": 15,
                "leaseTransitions": 0,
                "renewTime": "2026-01-02T03:04:05.123456Z",
            })
        );
        assert_eq!(Record::from_spec(&rec.to_spec()), rec);
    }

    #[test]
    fn defaults_and_durations() {
        let c = cfg();
        assert_eq!(c.namespace, "kube-system");
        assert_eq!(
            (c.lease_duration, c.renew_deadline, c.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        assert_eq!(c.lease_duration_seconds(), 15);
        assert_eq!(c.work_grace(), Duration::from_secs(5));
        let short = ElectionConfig {
            lease_duration: Duration::from_millis(700),
            ..c
        };
        assert_eq!(
            short.lease_duration_seconds(),
            1,
            "never 0, which validation rejects"
        );
    }
}
