//! Leader election against the in-process API server: several candidates for
//! one Lease, of which exactly one runs its work at a time; failover when the
//! leader dies, at once when it shuts down (release), and a restarted
//! candidate with the same identity taking its own Lease straight back.
//!
//! Timings are short: lease 2 s, renew deadline 1.4 s, retry 0.2 s.

use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::Event;
use kube::api::{Api, ListParams, PostParams};
use skiff_controllers::leader::{ElectionConfig, run_elected_reporting};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio::task::JoinHandle;

mod support;
use support::{Cluster, eventually};

const LEASE: &str = "kube-controller-manager";

/// Who is running work right now, and the most that ever ran at once.
#[derive(Default)]
struct Workers {
    running: Mutex<Vec<String>>,
    most: AtomicUsize,
}

impl Workers {
    fn running(&self) -> Vec<String> {
        self.running.lock().unwrap().clone()
    }
}

/// Takes a worker off the running list however its future ends (stopped or
/// aborted).
struct Running(Arc<Workers>, String);

impl Drop for Running {
    fn drop(&mut self) {
        let mut r = self.0.running.lock().unwrap();
        if let Some(i) = r.iter().position(|x| *x == self.1) {
            r.remove(i);
        }
    }
}

/// One candidate: its task, its own shutdown signal and its leading state.
struct Candidate {
    task: JoinHandle<()>,
    stop: watch::Sender<bool>,
    leading: watch::Receiver<bool>,
}

fn config(identity: &str) -> ElectionConfig {
    ElectionConfig {
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1400),
        retry_period: Duration::from_millis(200),
        ..ElectionConfig::new(LEASE, identity)
    }
}

fn candidate(client: &kube::Client, identity: &str, workers: &Arc<Workers>) -> Candidate {
    let (stop, shutdown) = watch::channel(false);
    let (leading_tx, leading) = watch::channel(false);
    let workers = workers.clone();
    let id = identity.to_string();
    let task = tokio::spawn(run_elected_reporting(
        client.clone(),
        config(identity),
        shutdown,
        leading_tx,
        move |mut stop: watch::Receiver<bool>| {
            let workers = workers.clone();
            let id = id.clone();
            async move {
                let n = {
                    let mut r = workers.running.lock().unwrap();
                    r.push(id.clone());
                    r.len()
                };
                workers.most.fetch_max(n, Ordering::SeqCst);
                let _running = Running(workers, id);
                while !*stop.borrow() {
                    if stop.changed().await.is_err() {
                        break;
                    }
                }
            }
        },
    ));
    Candidate {
        task,
        stop,
        leading,
    }
}

async fn lease(client: &kube::Client) -> Option<Lease> {
    Api::<Lease>::namespaced(client.clone(), "kube-system")
        .get_opt(LEASE)
        .await
        .unwrap()
}

/// (holderIdentity, leaseTransitions, leaseDurationSeconds) of the Lease.
async fn record(client: &kube::Client) -> (String, i32, i32) {
    let spec = lease(client).await.and_then(|l| l.spec).unwrap_or_default();
    (
        spec.holder_identity.unwrap_or_default(),
        spec.lease_transitions.unwrap_or(-1),
        spec.lease_duration_seconds.unwrap_or(-1),
    )
}

/// The identities whose candidates say they lead.
fn leaders(cands: &[(&str, &Candidate)]) -> Vec<String> {
    cands
        .iter()
        .filter(|(_, c)| *c.leading.borrow())
        .map(|(id, _)| id.to_string())
        .collect()
}

/// Waits until exactly one of `cands` leads and is the one running work; its
/// identity.
async fn one_leader(cands: &[(&str, &Candidate)], workers: &Workers) -> String {
    eventually("exactly one leader running its work", async || {
        let l = leaders(cands);
        (l.len() == 1 && workers.running() == l).then(|| l[0].clone())
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_leader_at_a_time_with_failover_release_and_restart() {
    let cluster = Cluster::start("leases", |_, _| {}).await;
    let client = cluster.client.clone();
    let workers = Arc::new(Workers::default());

    let a = candidate(&client, "server-a", &workers);
    let b = candidate(&client, "server-b", &workers);
    let c = candidate(&client, "server-c", &workers);
    let all = [("server-a", &a), ("server-b", &b), ("server-c", &c)];

    // One of three wins and creates the Lease.
    let first = one_leader(&all, &workers).await;
    let (holder, transitions, duration) = record(&client).await;
    assert_eq!(
        (holder.as_str(), transitions, duration),
        (first.as_str(), 0, 2)
    );
    let l = lease(&client).await.unwrap();
    let spec = l.spec.clone().unwrap();
    assert!(spec.acquire_time.is_some() && spec.renew_time.is_some());
    let renewed = spec.renew_time.unwrap().0;

    // The winner's Event on the Lease.
    let events: Api<Event> = Api::namespaced(client.clone(), "kube-system");
    let ev = eventually("the LeaderElection event", async || {
        events
            .list(&ListParams::default())
            .await
            .unwrap()
            .items
            .into_iter()
            .find(|e| e.reason.as_deref() == Some("LeaderElection"))
    })
    .await;
    assert_eq!(
        ev.message.as_deref(),
        Some(format!("{first} became leader").as_str())
    );
    assert_eq!(ev.type_.as_deref(), Some("Normal"));
    assert_eq!(ev.involved_object.kind.as_deref(), Some("Lease"));
    assert_eq!(ev.involved_object.name.as_deref(), Some(LEASE));
    assert_eq!(ev.involved_object.uid, l.metadata.uid);
    assert_eq!(
        ev.involved_object.api_version.as_deref(),
        Some("coordination.k8s.io/v1")
    );

    // It keeps the Lease by renewing it: past a whole lease duration, nobody
    // else takes over.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    assert_eq!(leaders(&all), vec![first.clone()]);
    assert_eq!(workers.running(), vec![first.clone()]);
    let spec = lease(&client).await.unwrap().spec.unwrap();
    assert!(spec.renew_time.unwrap().0 > renewed, "renewTime moves on");
    assert_eq!(spec.lease_transitions, Some(0));

    // Kill the leader (no release): another takes over once the Lease has
    // gone unrenewed for about the lease duration.
    let mut rest: Vec<(&str, Candidate)> = Vec::new();
    for (id, cand) in [("server-a", a), ("server-b", b), ("server-c", c)] {
        if id == first {
            cand.task.abort();
            let _ = cand.task.await;
        } else {
            rest.push((id, cand));
        }
    }
    let killed = Instant::now();
    eventually("the killed leader's work is gone", async || {
        workers.running().is_empty().then_some(())
    })
    .await;
    let two: Vec<(&str, &Candidate)> = rest.iter().map(|(id, c)| (*id, c)).collect();
    let second = one_leader(&two, &workers).await;
    let took = killed.elapsed();
    eprintln!("takeover after killing the leader: {took:?}");
    assert_ne!(second, first);
    assert!(
        took >= Duration::from_millis(1500) && took < Duration::from_secs(8),
        "takeover after a kill took {took:?}, expected about the 2 s lease duration"
    );
    let (holder, transitions, _) = record(&client).await;
    assert_eq!((holder.as_str(), transitions), (second.as_str(), 1));

    // The new leader's process dies and restarts with the same identity: it
    // takes its own Lease straight back, before the other candidate could.
    let idx = rest.iter().position(|(id, _)| *id == second).unwrap();
    let (id, dead) = rest.remove(idx);
    dead.task.abort();
    let _ = dead.task.await;
    eventually("the killed leader's work is gone", async || {
        workers.running().is_empty().then_some(())
    })
    .await;
    let restarted_at = Instant::now();
    rest.push((id, candidate(&client, id, &workers)));
    let two: Vec<(&str, &Candidate)> = rest.iter().map(|(id, c)| (*id, c)).collect();
    let again = one_leader(&two, &workers).await;
    let took = restarted_at.elapsed();
    eprintln!("restarted holder leads again after {took:?}");
    assert_eq!(again, second, "the restarted server leads again");
    assert!(
        took < Duration::from_millis(1200),
        "a restarted holder takes its lease back at once, took {took:?}"
    );
    let (holder, transitions, _) = record(&client).await;
    assert_eq!(
        (holder.as_str(), transitions),
        (second.as_str(), 1),
        "renewing its own lease is no transition"
    );

    // Graceful shutdown releases the Lease: the last candidate takes over
    // well within the lease duration.
    let idx = rest.iter().position(|(id, _)| *id == second).unwrap();
    let (_, leaving) = rest.remove(idx);
    let asked = Instant::now();
    leaving.stop.send_replace(true);
    leaving.task.await.unwrap();
    assert!(!*leaving.leading.borrow());
    let one: Vec<(&str, &Candidate)> = rest.iter().map(|(id, c)| (*id, c)).collect();
    let third = one_leader(&one, &workers).await;
    let took = asked.elapsed();
    eprintln!("takeover after a graceful release: {took:?}");
    assert!(
        took < Duration::from_secs(1),
        "takeover after a release took {took:?}, expected well under the 2 s lease duration"
    );
    let (holder, transitions, _) = record(&client).await;
    assert_eq!((holder.as_str(), transitions), (third.as_str(), 2));

    // The last one shuts down: the Lease is left released, as client-go
    // writes it.
    let (_, last) = rest.pop().unwrap();
    last.stop.send_replace(true);
    last.task.await.unwrap();
    assert!(workers.running().is_empty());
    let spec = lease(&client).await.unwrap().spec.unwrap();
    assert_eq!(spec.holder_identity.as_deref().unwrap_or(""), "");
    assert_eq!(spec.lease_duration_seconds, Some(1));
    assert_eq!(spec.lease_transitions, Some(2));
    assert!(spec.renew_time.is_some() && spec.acquire_time.is_some());

    assert_eq!(
        workers.most.load(Ordering::SeqCst),
        1,
        "never more than one worker at a time"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_leader_that_sees_another_holder_stops_its_work_and_competes_again() {
    let cluster = Cluster::start("leases", |_, _| {}).await;
    let client = cluster.client.clone();
    let workers = Arc::new(Workers::default());
    let me = candidate(&client, "server-a", &workers);
    one_leader(&[("server-a", &me)], &workers).await;

    // Someone else overwrites the Lease: the leader loses it on its next
    // renewal and stops its work.
    let api: Api<Lease> = Api::namespaced(client.clone(), "kube-system");
    let mut l = api.get(LEASE).await.unwrap();
    let spec = l.spec.as_mut().unwrap();
    spec.holder_identity = Some("intruder".into());
    spec.lease_transitions = Some(1);
    api.replace(LEASE, &PostParams::default(), &l)
        .await
        .unwrap();
    let lost = Instant::now();
    eventually("leadership lost", async || {
        (!*me.leading.borrow() && workers.running().is_empty()).then_some(())
    })
    .await;
    assert!(
        lost.elapsed() < Duration::from_secs(1),
        "lost after {:?}",
        lost.elapsed()
    );

    // The intruder never renews: after the lease duration the candidate
    // takes the Lease back, one more transition.
    one_leader(&[("server-a", &me)], &workers).await;
    assert!(lost.elapsed() >= Duration::from_millis(1500));
    let (holder, transitions, _) = record(&client).await;
    assert_eq!((holder.as_str(), transitions), ("server-a", 2));
    me.stop.send_replace(true);
    me.task.await.unwrap();
    assert_eq!(workers.most.load(Ordering::SeqCst), 1);
}
