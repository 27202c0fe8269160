//! One behaviour suite, written once and run against every backend (memory,
//! SQLite, and a real etcd started per test), plus SQLite-only tests for
//! durability, bounded growth and write throughput.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use skiff_store::sqlite::SqliteOptions;
use skiff_store::{
    EtcdStore, Event, EventKind, KeyValue, MemoryStore, Revision, SqliteStore, Store, StoreError,
    WatchStream,
};
use tempfile::TempDir;

/// A store under test, with the directory that holds its file (if any)
/// and the etcd process serving it (if any).
struct Fixture {
    store: Arc<dyn Store>,
    /// The revision of the empty store: 0, or 1 for etcd.
    base: Revision,
    _etcd: Option<EtcdProcess>,
    _dir: Option<TempDir>,
}

fn memory() -> Fixture {
    Fixture {
        store: Arc::new(MemoryStore::new()),
        base: 0,
        _etcd: None,
        _dir: None,
    }
}

fn sqlite() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("state.db"), SqliteOptions::default()).unwrap();
    Fixture {
        store: Arc::new(store),
        base: 0,
        _etcd: None,
        _dir: Some(dir),
    }
}

const ETCD: &str = "/usr/bin/etcd";

/// An etcd server this test started; killed when dropped.
struct EtcdProcess(std::process::Child);

impl Drop for EtcdProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A fresh single-member etcd in a temporary directory, or `None` (with a
/// loud message) when etcd is not installed and this is not CI.
async fn etcd() -> Option<Fixture> {
    let (fixture, _) = etcd_with_endpoint().await?;
    Some(fixture)
}

/// [`etcd`], also returning the client endpoint for more connections.
async fn etcd_with_endpoint() -> Option<(Fixture, String)> {
    if !Path::new(ETCD).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{ETCD} is missing: CI must install etcd-server"
        );
        eprintln!(
            "!!! SKIPPED: {ETCD} is missing; install Debian etcd-server to run the etcd suite"
        );
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let client = format!("http://127.0.0.1:{}", free_port());
    let peer = format!("http://127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.path().join("etcd.log")).unwrap();
    let child = std::process::Command::new(ETCD)
        .args(["--name", "test", "--data-dir"])
        .arg(dir.path().join("data"))
        .args([
            "--unsafe-no-fsync",
            "--heartbeat-interval=10",
            "--election-timeout=100",
            "--listen-client-urls",
            &client,
            "--advertise-client-urls",
            &client,
            "--listen-peer-urls",
            &peer,
            "--initial-advertise-peer-urls",
            &peer,
            "--initial-cluster",
            &format!("test={peer}"),
        ])
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start etcd");
    let process = EtcdProcess(child);
    let started = Instant::now();
    let endpoints = [client.clone()];
    let store = loop {
        match EtcdStore::connect(&endpoints, None).await {
            Ok(store) => break store,
            Err(err) if started.elapsed() > Duration::from_secs(10) => {
                let log = std::fs::read_to_string(dir.path().join("etcd.log")).unwrap_or_default();
                panic!("etcd did not come up: {err}\n{log}");
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let fixture = Fixture {
        store: Arc::new(store),
        base: 1,
        _etcd: Some(process),
        _dir: Some(dir),
    };
    Some((fixture, client))
}

/// Runs each named suite function against every backend.
macro_rules! conformance {
    ($($name:ident),* $(,)?) => {
        mod memory_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::memory()).await;
                }
            )*
        }
        mod sqlite_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    super::$name(super::sqlite()).await;
                }
            )*
        }
        mod etcd_backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $name() {
                    if let Some(fixture) = super::etcd().await {
                        super::$name(fixture).await;
                    }
                }
            )*
        }
    };
}

conformance!(
    create_get_and_list_respect_prefix_boundaries,
    create_of_existing_key_is_already_exists,
    update_checks_expected_revision,
    delete_with_and_without_precondition,
    revisions_strictly_increase_and_failures_use_none,
    watch_from_zero_replays_all_history,
    watch_from_middle_revision_and_prefix,
    watch_follows_live_writes_after_history_without_gaps,
    delete_events_carry_the_last_value,
    compaction_fails_old_watches_and_keeps_newer_ones,
    concurrent_creates_from_16_tasks_get_distinct_revisions,
);

fn b(s: &str) -> Bytes {
    Bytes::copy_from_slice(s.as_bytes())
}

/// The next `n` items of `watch`, failing the test if they take over 10 s.
async fn take(watch: &mut WatchStream, n: usize) -> Vec<Event> {
    let mut events = Vec::with_capacity(n);
    while events.len() < n {
        let next = tokio::time::timeout(Duration::from_secs(10), watch.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {} of {n} events", events.len()));
        events.push(next.expect("watch ended early").expect("watch failed"));
    }
    events
}

/// Asserts that nothing more arrives on `watch` soon.
async fn assert_quiet(watch: &mut WatchStream) {
    let next = tokio::time::timeout(Duration::from_millis(100), watch.next()).await;
    assert!(next.is_err(), "unexpected watch item {next:?}");
}

fn summary(events: &[Event]) -> Vec<(EventKind, &str, &[u8], Revision)> {
    events
        .iter()
        .map(|e| (e.kind, e.kv.key.as_str(), &e.kv.value[..], e.revision()))
        .collect()
}

async fn create_get_and_list_respect_prefix_boundaries(f: Fixture) {
    let s = &*f.store;
    let keys = [
        "/registry/pods/default/b",
        "/registry/pods/default/a",
        "/registry/pods/kube-system/c",
        "/registry/podsx/default/d",
        "/registry/pods",
        "/registry/pod",
    ];
    let mut revs = Vec::new();
    for key in keys {
        revs.push(s.create(key, b(key)).await.unwrap());
    }

    let got = s.get("/registry/pods/default/a").await.unwrap().unwrap();
    assert_eq!(
        got,
        KeyValue {
            key: "/registry/pods/default/a".into(),
            value: b("/registry/pods/default/a"),
            create_revision: revs[1],
            mod_revision: revs[1],
        }
    );
    assert_eq!(s.get("/registry/pods/default").await.unwrap(), None);

    let current = s.current_revision().await.unwrap();
    assert_eq!(current, *revs.last().unwrap());
    let cases: &[(&str, &[&str])] = &[
        (
            "/registry/pods/",
            &[
                "/registry/pods/default/a",
                "/registry/pods/default/b",
                "/registry/pods/kube-system/c",
            ],
        ),
        (
            "/registry/pods/default/",
            &["/registry/pods/default/a", "/registry/pods/default/b"],
        ),
        ("/registry/podsx/", &["/registry/podsx/default/d"]),
        (
            "/registry/pods",
            &[
                "/registry/pods",
                "/registry/pods/default/a",
                "/registry/pods/default/b",
                "/registry/pods/kube-system/c",
                "/registry/podsx/default/d",
            ],
        ),
        ("/registry/services/", &[]),
        (
            "",
            &[
                "/registry/pod",
                "/registry/pods",
                "/registry/pods/default/a",
                "/registry/pods/default/b",
                "/registry/pods/kube-system/c",
                "/registry/podsx/default/d",
            ],
        ),
    ];
    for (prefix, want) in cases {
        let (items, rev) = s.list(prefix).await.unwrap();
        let got: Vec<_> = items.iter().map(|kv| kv.key.as_str()).collect();
        assert_eq!(&got, want, "list {prefix:?}");
        assert_eq!(rev, current, "list {prefix:?} revision");
        for kv in &items {
            assert_eq!(kv.value, b(&kv.key));
        }
    }
}

async fn create_of_existing_key_is_already_exists(f: Fixture) {
    let s = &*f.store;
    let first = s.create("/a", b("1")).await.unwrap();
    assert_eq!(
        s.create("/a", b("2")).await,
        Err(StoreError::AlreadyExists { key: "/a".into() })
    );
    assert_eq!(s.get("/a").await.unwrap().unwrap().value, b("1"));
    // The failed create used no revision.
    assert_eq!(s.current_revision().await.unwrap(), first);
    assert_eq!(s.create("/b", b("1")).await.unwrap(), first + 1);
}

async fn update_checks_expected_revision(f: Fixture) {
    let s = &*f.store;
    let created = s.create("/a", b("1")).await.unwrap();
    let updated = s.update("/a", b("2"), created).await.unwrap();
    assert!(updated > created);
    assert_eq!(
        s.get("/a").await.unwrap().unwrap(),
        KeyValue {
            key: "/a".into(),
            value: b("2"),
            create_revision: created,
            mod_revision: updated,
        }
    );
    // Stale: the error carries the current revision, nothing changes.
    assert_eq!(
        s.update("/a", b("3"), created).await,
        Err(StoreError::Conflict {
            key: "/a".into(),
            expected: created,
            current: updated,
        })
    );
    assert_eq!(s.get("/a").await.unwrap().unwrap().value, b("2"));
    assert_eq!(
        s.update("/missing", b("3"), 1).await,
        Err(StoreError::NotFound {
            key: "/missing".into()
        })
    );
    assert_eq!(s.current_revision().await.unwrap(), updated);
}

async fn delete_with_and_without_precondition(f: Fixture) {
    let s = &*f.store;
    let a = s.create("/a", b("a1")).await.unwrap();
    let a2 = s.update("/a", b("a2"), a).await.unwrap();
    let bee = s.create("/b", b("b1")).await.unwrap();

    assert_eq!(
        s.delete("/a", Some(a)).await,
        Err(StoreError::Conflict {
            key: "/a".into(),
            expected: a,
            current: a2,
        })
    );
    assert!(s.get("/a").await.unwrap().is_some());

    let deleted = s.delete("/a", Some(a2)).await.unwrap();
    assert_eq!(
        deleted,
        KeyValue {
            key: "/a".into(),
            value: b("a2"),
            create_revision: a,
            mod_revision: bee + 1,
        }
    );
    assert_eq!(s.get("/a").await.unwrap(), None);
    assert_eq!(
        s.delete("/a", None).await,
        Err(StoreError::NotFound { key: "/a".into() })
    );
    assert_eq!(
        s.delete("/a", Some(a2)).await,
        Err(StoreError::NotFound { key: "/a".into() })
    );

    let deleted = s.delete("/b", None).await.unwrap();
    assert_eq!((deleted.value, deleted.mod_revision), (b("b1"), bee + 2));
    let (items, rev) = s.list("/").await.unwrap();
    assert!(items.is_empty());
    assert_eq!(rev, bee + 2);
    // A deleted key can be created again, with a new create revision.
    assert_eq!(s.create("/a", b("again")).await.unwrap(), bee + 3);
    assert_eq!(s.get("/a").await.unwrap().unwrap().create_revision, bee + 3);
}

async fn revisions_strictly_increase_and_failures_use_none(f: Fixture) {
    let s = &*f.store;
    let base = f.base;
    assert_eq!(s.current_revision().await.unwrap(), base);
    assert_eq!(s.list("/").await.unwrap().1, base);
    let mut seen = vec![base];
    for i in 0..5 {
        let key = format!("/k/{i}");
        seen.push(s.create(&key, b("x")).await.unwrap());
        assert!(s.create(&key, b("y")).await.is_err());
        let last = *seen.last().unwrap();
        seen.push(s.update(&key, b("z"), last).await.unwrap());
        assert!(s.update(&key, b("z"), last).await.is_err());
        seen.push(s.delete(&key, None).await.unwrap().mod_revision);
        assert!(s.delete(&key, None).await.is_err());
    }
    let want: Vec<Revision> = (base..=base + 15).collect();
    assert_eq!(seen, want);
    assert_eq!(s.current_revision().await.unwrap(), base + 15);
    assert_eq!(s.list("/nothing/").await.unwrap().1, base + 15);
}

async fn watch_from_zero_replays_all_history(f: Fixture) {
    let s = &*f.store;
    let r1 = s.create("/a", b("1")).await.unwrap();
    let r2 = s.update("/a", b("2"), r1).await.unwrap();
    let r3 = s.create("/b", b("3")).await.unwrap();
    let r4 = s.delete("/a", None).await.unwrap().mod_revision;
    let mut watch = s.watch("/", 0).await.unwrap();
    let events = take(&mut watch, 4).await;
    assert_eq!(
        summary(&events),
        vec![
            (EventKind::Create, "/a", &b"1"[..], r1),
            (EventKind::Update, "/a", &b"2"[..], r2),
            (EventKind::Create, "/b", &b"3"[..], r3),
            (EventKind::Delete, "/a", &b"2"[..], r4),
        ]
    );
    assert!(
        events
            .iter()
            .all(|e| e.kv.create_revision == if e.kv.key == "/a" { r1 } else { r3 })
    );
    assert_quiet(&mut watch).await;
}

async fn watch_from_middle_revision_and_prefix(f: Fixture) {
    let s = &*f.store;
    let mut revs = Vec::new();
    for key in ["/pods/a", "/podsx/b", "/pods/c", "/svc/d", "/pods/e"] {
        revs.push(s.create(key, b(key)).await.unwrap());
    }
    let cases: &[(&str, Revision, &[&str])] = &[
        ("/pods/", revs[0], &["/pods/c", "/pods/e"]),
        ("/pods/", revs[2], &["/pods/e"]),
        ("/", revs[1], &["/pods/c", "/svc/d", "/pods/e"]),
        ("/podsx/", 0, &["/podsx/b"]),
        ("/pods/", revs[4], &[]),
    ];
    for (prefix, after, want) in cases {
        let mut watch = s.watch(prefix, *after).await.unwrap();
        let events = take(&mut watch, want.len()).await;
        let got: Vec<_> = events.iter().map(|e| e.kv.key.as_str()).collect();
        assert_eq!(&got, want, "watch {prefix:?} after {after}");
        assert!(events.iter().all(|e| e.revision() > *after));
        assert_quiet(&mut watch).await;
    }
}

async fn watch_follows_live_writes_after_history_without_gaps(f: Fixture) {
    const TASKS: usize = 8;
    const PER_TASK: usize = 100;
    let store = f.store.clone();
    let start = Arc::new(tokio::sync::Barrier::new(TASKS + 1));
    let mut writers = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let start = start.clone();
        writers.push(tokio::spawn(async move {
            start.wait().await;
            for i in 0..PER_TASK {
                let key = format!("/w/{t}/{i}");
                let rev = store.create(&key, b("v")).await.unwrap();
                store.update(&key, b("v2"), rev).await.unwrap();
                // Writes outside the watched prefix interleave.
                store
                    .create(&format!("/other/{t}/{i}"), b("o"))
                    .await
                    .unwrap();
            }
        }));
    }
    start.wait().await;
    // Open watches while the writers run: one from the start, one from
    // wherever the store is now.
    tokio::time::sleep(Duration::from_millis(5)).await;
    let mut from_zero = store.watch("/w/", 0).await.unwrap();
    let now = store.current_revision().await.unwrap();
    let mut from_now = store.watch("/w/", now).await.unwrap();
    for writer in writers {
        writer.await.unwrap();
    }
    let total = TASKS * PER_TASK * 2;
    let all = take(&mut from_zero, total).await;
    let revs: Vec<_> = all.iter().map(Event::revision).collect();
    assert!(
        revs.windows(2).all(|w| w[0] < w[1]),
        "out of order or duplicate"
    );
    let keys: BTreeSet<_> = all.iter().map(|e| e.kv.key.clone()).collect();
    assert_eq!(keys.len(), TASKS * PER_TASK);
    assert!(all.iter().all(|e| e.kv.key.starts_with("/w/")));
    assert_quiet(&mut from_zero).await;

    // The later watch sees exactly the tail of the same sequence.
    let tail: Vec<_> = all.iter().filter(|e| e.revision() > now).cloned().collect();
    let got = take(&mut from_now, tail.len()).await;
    assert_eq!(got, tail);
    assert_quiet(&mut from_now).await;

    // And both keep following new writes.
    let rev = store.create("/w/late", b("late")).await.unwrap();
    for watch in [&mut from_zero, &mut from_now] {
        let event = take(watch, 1).await.remove(0);
        assert_eq!((event.kind, event.revision()), (EventKind::Create, rev));
    }
}

async fn delete_events_carry_the_last_value(f: Fixture) {
    let s = &*f.store;
    let created = s.create("/a", b("first")).await.unwrap();
    let updated = s.update("/a", b("last"), created).await.unwrap();
    let mut watch = s.watch("/a", updated).await.unwrap();
    let deleted = s.delete("/a", Some(updated)).await.unwrap();
    let event = take(&mut watch, 1).await.remove(0);
    assert_eq!(
        event,
        Event {
            kind: EventKind::Delete,
            kv: KeyValue {
                key: "/a".into(),
                value: b("last"),
                create_revision: created,
                mod_revision: deleted.mod_revision,
            },
        }
    );
    assert_eq!(event.kv, deleted);
    // The same event replayed from history.
    let mut replay = s.watch("/a", updated).await.unwrap();
    assert_eq!(take(&mut replay, 1).await.remove(0), event);
}

async fn compaction_fails_old_watches_and_keeps_newer_ones(f: Fixture) {
    let s = &*f.store;
    let base = f.base;
    assert_eq!(s.compacted_revision().await.unwrap(), 0);
    for i in 1..=10 {
        s.create(&format!("/k/{i:02}"), b("v")).await.unwrap();
    }
    let last = base + 10;
    s.compact(base + 5).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), base + 5);
    for after in [0, base + 3, base + 4] {
        match s.watch("/", after).await {
            Err(err) => assert_eq!(
                err,
                StoreError::Compacted {
                    requested: after,
                    compacted: base + 5
                }
            ),
            Ok(_) => panic!("watch after {after} should fail"),
        }
    }
    for after in [base + 5, base + 7, last] {
        let mut watch = s.watch("/", after).await.unwrap();
        let events = take(&mut watch, (last - after) as usize).await;
        let revs: Vec<_> = events.iter().map(Event::revision).collect();
        assert_eq!(revs, ((after + 1)..=last).collect::<Vec<_>>());
        assert_quiet(&mut watch).await;
    }
    // Current state is untouched.
    assert_eq!(s.list("/k/").await.unwrap().0.len(), 10);
    assert_eq!(
        s.get("/k/01").await.unwrap().unwrap().mod_revision,
        base + 1
    );
    // Older compactions are no-ops; a future one is refused.
    s.compact(base + 2).await.unwrap();
    assert_eq!(s.compacted_revision().await.unwrap(), base + 5);
    assert!(matches!(
        s.compact(last + 1).await,
        Err(StoreError::Backend(_))
    ));
    // Compacting everything still leaves the revision counter intact.
    s.compact(last).await.unwrap();
    assert_eq!(s.current_revision().await.unwrap(), last);
    assert_eq!(s.list("/").await.unwrap().1, last);
    let mut watch = s.watch("/", last).await.unwrap();
    assert_eq!(s.create("/k/11", b("v")).await.unwrap(), last + 1);
    assert_eq!(take(&mut watch, 1).await[0].revision(), last + 1);
}

async fn concurrent_creates_from_16_tasks_get_distinct_revisions(f: Fixture) {
    const TASKS: usize = 16;
    const PER_TASK: usize = 50;
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = f.store.clone();
        tasks.push(tokio::spawn(async move {
            let mut revs = Vec::new();
            for i in 0..PER_TASK {
                revs.push(store.create(&format!("/c/{t}/{i}"), b("v")).await.unwrap());
            }
            revs
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        let revs = task.await.unwrap();
        assert!(revs.windows(2).all(|w| w[0] < w[1]));
        all.extend(revs);
    }
    let distinct: BTreeSet<_> = all.iter().copied().collect();
    assert_eq!(distinct.len(), TASKS * PER_TASK);
    let last = f.base + (TASKS * PER_TASK) as Revision;
    let want: BTreeSet<Revision> = (f.base + 1..=last).collect();
    assert_eq!(distinct, want);
    let (items, rev) = f.store.list("/c/").await.unwrap();
    assert_eq!(items.len(), TASKS * PER_TASK);
    assert_eq!(rev, last);
}

// ---- etcd only ----

/// A list larger than one page is one snapshot: every key, in order, at one revision.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_list_pages_through_a_consistent_snapshot() {
    let Some(f) = etcd().await else { return };
    let total = skiff_store::etcd::LIST_PAGE as usize * 2 + 500;
    let tasks: Vec<_> = (0..16)
        .map(|t| {
            let store = f.store.clone();
            tokio::spawn(async move {
                for i in (t..total).step_by(16) {
                    store
                        .create(&format!("/registry/pods/default/p-{i:05}"), b("v"))
                        .await
                        .unwrap();
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    // Writes after the list's first page must not show up in it.
    let writer = {
        let store = f.store.clone();
        tokio::spawn(async move {
            for i in 0..200 {
                store
                    .create(&format!("/registry/pods/default/z-{i:05}"), b("late"))
                    .await
                    .unwrap();
            }
        })
    };
    let (items, rev) = f.store.list("/registry/pods/").await.unwrap();
    writer.await.unwrap();
    let before_list: Vec<_> = items.iter().filter(|kv| kv.mod_revision <= rev).collect();
    assert_eq!(
        before_list.len(),
        items.len(),
        "items newer than the list revision"
    );
    let late = items.iter().filter(|kv| kv.value == b("late")).count() as Revision;
    assert_eq!(rev, f.base + total as Revision + late);
    assert_eq!(items.len(), total + late as usize);
    assert!(
        items.windows(2).all(|w| w[0].key < w[1].key),
        "not in key order"
    );
}

/// Two servers on one etcd: each sees the other's writes and compactions.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_two_clients_share_writes_watches_and_compaction() {
    let Some((f, endpoint)) = etcd_with_endpoint().await else {
        return;
    };
    let a = &*f.store;
    let other = EtcdStore::connect(&[endpoint], None).await.unwrap();
    let mut watch = other.watch("/registry/", f.base).await.unwrap();
    let created = a.create("/registry/x", b("1")).await.unwrap();
    let event = take(&mut watch, 1).await.remove(0);
    assert_eq!((event.kind, event.revision()), (EventKind::Create, created));
    assert_eq!(
        other.update("/registry/x", b("2"), f.base).await,
        Err(StoreError::Conflict {
            key: "/registry/x".into(),
            expected: f.base,
            current: created,
        })
    );
    let updated = other.update("/registry/x", b("2"), created).await.unwrap();
    a.create("/registry/y", b("3")).await.unwrap();
    // `a` compacts; `other` never did and still knows.
    a.compact(updated).await.unwrap();
    assert_eq!(other.compacted_revision().await.unwrap(), updated);
    assert_eq!(
        other.watch("/registry/", created - 1).await.err(),
        Some(StoreError::Compacted {
            requested: created - 1,
            compacted: updated,
        })
    );
    // The open watch keeps going.
    assert_eq!(take(&mut watch, 2).await[1].kv.key, "/registry/y");
}

/// `skiff migrate`'s copy: a SQLite store with history into a fresh etcd.
/// Every key under `/` arrives with its value verbatim and its own new
/// revision; a second copy into the same etcd is refused and writes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn etcd_copy_from_sqlite_keeps_values_and_refuses_a_second_time() {
    let Some(f) = etcd().await else { return };
    let dir = tempfile::tempdir().unwrap();
    let sqlite = open(&dir.path().join("state.db"), manual());
    // More keys than one etcd list page, some updated, some deleted.
    let total = skiff_store::etcd::LIST_PAGE as usize + 500;
    let writes = (0..total).map(|i| {
        let sqlite = &sqlite;
        async move {
            let key = format!("/registry/configmaps/ns/c{i:05}");
            let rev = sqlite
                .create(&key, b(&format!("{{\"v\":{i}}}")))
                .await
                .unwrap();
            if i % 10 == 0 {
                sqlite
                    .update(&key, b(&format!("{{\"v\":-{i}}}")), rev)
                    .await
                    .unwrap();
            }
        }
    });
    futures::future::join_all(writes).await;
    sqlite.create("/registry/gone", b("x")).await.unwrap();
    sqlite.delete("/registry/gone", None).await.unwrap();
    sqlite
        .create("/bootstrap/skiff", b("sealed"))
        .await
        .unwrap();

    let report = skiff_store::copy(&sqlite, f.store.as_ref(), "/")
        .await
        .unwrap();
    eprintln!(
        "copied {} keys ({} bytes) from SQLite to etcd in {:?}",
        report.keys, report.bytes, report.elapsed
    );
    assert_eq!(report.keys, total + 1);
    assert_eq!(
        report.source_revision,
        sqlite.current_revision().await.unwrap()
    );
    let (want, _) = sqlite.list("/").await.unwrap();
    let (got, revision) = f.store.list("/").await.unwrap();
    assert_eq!(revision, report.target_revision);
    assert_eq!(revision, f.base + report.keys as Revision);
    let pairs = |kvs: &[KeyValue]| -> Vec<(String, Bytes)> {
        kvs.iter()
            .map(|kv| (kv.key.clone(), kv.value.clone()))
            .collect()
    };
    assert_eq!(pairs(&got), pairs(&want));
    let revisions: BTreeSet<Revision> = got.iter().map(|kv| kv.mod_revision).collect();
    assert_eq!(revisions.len(), got.len(), "one revision per key");
    assert!(got.iter().all(|kv| kv.create_revision == kv.mod_revision));

    let err = skiff_store::copy(&sqlite, f.store.as_ref(), "/")
        .await
        .unwrap_err();
    assert_eq!(
        err,
        skiff_store::CopyError::TargetHasCluster { count: total }
    );
    assert_eq!(f.store.current_revision().await.unwrap(), revision);
}

// ---- SQLite only ----

fn open(path: &Path, options: SqliteOptions) -> SqliteStore {
    SqliteStore::open(path, options).unwrap()
}

fn manual() -> SqliteOptions {
    SqliteOptions {
        compact_interval: None,
        ..SqliteOptions::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_reopen_keeps_values_revisions_history_and_compaction() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.db");
    let (a, a2, gone) = {
        let s = open(&path, manual());
        let a = s.create("/a", b("a1")).await.unwrap();
        s.create("/b", b("b1")).await.unwrap();
        let a2 = s.update("/a", b("a2"), a).await.unwrap();
        s.create("/c", b("c1")).await.unwrap();
        let gone = s.delete("/c", None).await.unwrap();
        s.compact(2).await.unwrap();
        // Dropped without close(): Drop must flush and stop the writer.
        (a, a2, gone)
    };
    let s = open(&path, manual());
    assert_eq!(s.current_revision().await.unwrap(), 5);
    assert_eq!(s.compacted_revision().await.unwrap(), 2);
    assert_eq!(
        s.get("/a").await.unwrap().unwrap(),
        KeyValue {
            key: "/a".into(),
            value: b("a2"),
            create_revision: a,
            mod_revision: a2,
        }
    );
    let (items, rev) = s.list("/").await.unwrap();
    assert_eq!(
        items.iter().map(|kv| kv.key.as_str()).collect::<Vec<_>>(),
        ["/a", "/b"]
    );
    assert_eq!(rev, 5);
    assert!(matches!(
        s.watch("/", 1).await,
        Err(StoreError::Compacted {
            requested: 1,
            compacted: 2
        })
    ));
    let mut watch = s.watch("/", 2).await.unwrap();
    let events = take(&mut watch, 3).await;
    assert_eq!(
        summary(&events),
        vec![
            (EventKind::Update, "/a", &b"a2"[..], 3),
            (EventKind::Create, "/c", &b"c1"[..], 4),
            (EventKind::Delete, "/c", &b"c1"[..], 5),
        ]
    );
    assert_eq!(events[2].kv, gone);
    assert_eq!(s.create("/d", b("d")).await.unwrap(), 6);
    assert_eq!(take(&mut watch, 1).await[0].revision(), 6);
    s.close().unwrap();
    drop(s);

    // Compacting everything then reopening keeps the counter too.
    let s = open(&path, manual());
    s.compact(6).await.unwrap();
    s.close().unwrap();
    let s = open(&path, manual());
    assert_eq!(s.current_revision().await.unwrap(), 6);
    assert_eq!(s.compacted_revision().await.unwrap(), 6);
    assert_eq!(s.create("/e", b("e")).await.unwrap(), 7);
}

/// Total size of the files in `dir` (database, WAL, shared memory), printed per file.
fn file_sizes(dir: &Path) -> u64 {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let len = entry.metadata().unwrap().len();
        eprintln!("  {}: {len} bytes", entry.file_name().to_string_lossy());
        total += len;
    }
    total
}

/// kine#607: create/delete churn must not grow the file without limit.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_churn_with_auto_compaction_stays_small() {
    const TASKS: usize = 16;
    const CYCLES: usize = 20_000;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(
        &dir.path().join("state.db"),
        SqliteOptions {
            retain_revisions: 1_000,
            compact_interval: Some(Duration::from_millis(100)),
            ..SqliteOptions::default()
        },
    ));
    let value = Bytes::from(vec![b'x'; 1024]);
    let mut tasks = Vec::new();
    for t in 0..TASKS {
        let store = store.clone();
        let value = value.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..CYCLES / TASKS {
                let key = format!("/registry/events/default/{t}-{i}");
                store.create(&key, value.clone()).await.unwrap();
                store.delete(&key, None).await.unwrap();
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    // Let the last automatic compaction run.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let current = store.current_revision().await.unwrap();
    assert_eq!(current, (CYCLES * 2) as Revision);
    let compacted = store.compacted_revision().await.unwrap();
    let size = file_sizes(dir.path());
    eprintln!("churn: {CYCLES} create+delete cycles, files {size} bytes, compacted {compacted}");
    assert!(
        compacted >= current - 1_000 - 5_000,
        "compacted {compacted} of {current}"
    );
    // Without compaction the history alone is 40,000 rows of 1 KiB (> 40 MB).
    assert!(
        size < 12 * 1024 * 1024,
        "database files grew to {size} bytes"
    );
    assert!(store.list("/").await.unwrap().0.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_lagging_watcher_gets_lagged_and_ends() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(
        &dir.path().join("state.db"),
        SqliteOptions {
            watch_capacity: 4,
            ..manual()
        },
    );
    let mut watch = store.watch("/", 0).await.unwrap();
    for i in 0..20 {
        store.create(&format!("/k/{i}"), b("v")).await.unwrap();
    }
    let next = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert_eq!(next, Some(Err(StoreError::Lagged)));
    assert_eq!(watch.next().await, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_close_ends_watches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir.path().join("state.db"), manual());
    let mut watch = store.watch("/", 0).await.unwrap();
    store.create("/a", b("v")).await.unwrap();
    store.close().unwrap();
    assert_eq!(take(&mut watch, 1).await[0].kv.key, "/a");
    let end = tokio::time::timeout(Duration::from_secs(5), watch.next())
        .await
        .unwrap();
    assert_eq!(end, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_group_commit_handles_1000_concurrent_creates_quickly() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(&dir.path().join("state.db"), SqliteOptions::default()));
    let value = Bytes::from(vec![b'p'; 2048]);
    let started = Instant::now();
    let tasks: Vec<_> = (0..1_000)
        .map(|i| {
            let store = store.clone();
            let value = value.clone();
            tokio::spawn(async move {
                store
                    .create(&format!("/registry/pods/default/p-{i}"), value)
                    .await
                    .unwrap()
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    let elapsed = started.elapsed();
    let rate = 1_000.0 / elapsed.as_secs_f64();
    eprintln!("1000 concurrent creates in {elapsed:?}: {rate:.0} creates/s");
    assert_eq!(store.list("/registry/pods/").await.unwrap().0.len(), 1_000);
    assert!(elapsed < Duration::from_secs(2), "took {elapsed:?}");

    // 16 clients, each waiting for its previous write: the apiserver's shape.
    const CLIENTS: usize = 16;
    const PER_CLIENT: usize = 300;
    let started = Instant::now();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|c| {
            let store = store.clone();
            let value = value.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::with_capacity(PER_CLIENT);
                for i in 0..PER_CLIENT {
                    let t = Instant::now();
                    store
                        .create(&format!("/registry/pods/c{c}/p-{i}"), value.clone())
                        .await
                        .unwrap();
                    latencies.push(t.elapsed());
                }
                latencies
            })
        })
        .collect();
    let mut latencies = Vec::new();
    for client in clients {
        latencies.extend(client.await.unwrap());
    }
    let elapsed = started.elapsed();
    latencies.sort();
    let p99 = latencies[latencies.len() * 99 / 100];
    let rate = (CLIENTS * PER_CLIENT) as f64 / elapsed.as_secs_f64();
    eprintln!("16 clients: {rate:.0} creates/s, p99 {p99:?}");
    assert!(rate > 1_000.0, "only {rate:.0} creates/s");
}
