//! The watch cache: every object in memory, fed by one store watch.
//!
//! Lists, gets and watches are served from here; writes go to the store and
//! then wait until the cache has seen their revision, so a client always
//! reads its own writes. Each object is kept both parsed and serialized, so
//! a LIST is a concatenation of bytes.

use bytes::Bytes;
use futures::StreamExt;
use serde_json::Value;
use skiff_store::{EventKind, Revision, Store};
use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};
use tokio::sync::{broadcast, watch};

/// How many events the cache keeps for watches that resume from an older revision.
pub const HISTORY: usize = 10_000;

/// One object as stored, with its resourceVersion set.
#[derive(Debug)]
pub struct Obj {
    /// The storage key.
    pub key: String,
    /// The object (storage version) with `metadata.resourceVersion` set.
    pub value: Value,
    /// `value` serialized.
    pub json: Bytes,
    /// Its resourceVersion.
    pub rev: Revision,
}

impl Obj {
    /// Builds a cached object from stored bytes, setting its resourceVersion.
    pub fn decode(key: String, bytes: &[u8], rev: Revision) -> Option<Self> {
        let mut value: Value = serde_json::from_slice(bytes).ok()?;
        skiff_api::meta::set(
            &mut value,
            &["metadata", "resourceVersion"],
            Value::String(rev.to_string()),
        );
        let json = Bytes::from(serde_json::to_vec(&value).ok()?);
        Some(Self {
            key,
            value,
            json,
            rev,
        })
    }
}

/// Watch event types as the API names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchKind {
    /// ADDED
    Added,
    /// MODIFIED
    Modified,
    /// DELETED
    Deleted,
}

impl WatchKind {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            WatchKind::Added => "ADDED",
            WatchKind::Modified => "MODIFIED",
            WatchKind::Deleted => "DELETED",
        }
    }
}

/// One change seen by the cache.
#[derive(Debug)]
pub struct CacheEvent {
    /// What happened.
    pub kind: WatchKind,
    /// The object after the change (for a delete: its last state at the delete's revision).
    pub obj: Arc<Obj>,
    /// The object before the change, for selector transitions.
    pub prev: Option<Arc<Obj>>,
}

impl CacheEvent {
    /// The revision of the change.
    pub fn rev(&self) -> Revision {
        self.obj.rev
    }
}

struct Inner {
    objects: BTreeMap<String, Arc<Obj>>,
    history: VecDeque<Arc<CacheEvent>>,
    rev: Revision,
    /// Watches may resume from any revision ≥ this.
    oldest: Revision,
}

/// Where the objects are in the datastore.
const OBJECTS: &str = skiff_store::copy::REGISTRY_PREFIX;
/// The cache follows every key's revision (not only the objects'), so that
/// writes outside `/registry/` (the bootstrap data, the servers' leases, or
/// another program's keys in a shared etcd) still move it to the datastore's
/// revision, which reads wait for.
const EVERY_KEY: &str = "";

/// How long a start waits for the history replay before serving without it.
const PRIME_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

/// The cache. Cheap to share behind an `Arc`.
pub struct Cache {
    inner: RwLock<Inner>,
    rev_tx: watch::Sender<Revision>,
    events: broadcast::Sender<Arc<CacheEvent>>,
}

/// A subscription: the events after a revision that were already in history,
/// then the live receiver.
pub struct Subscription {
    /// Events from history, in order.
    pub backlog: Vec<Arc<CacheEvent>>,
    /// Live events; may repeat revisions already in `backlog`, callers skip them.
    pub live: broadcast::Receiver<Arc<CacheEvent>>,
    /// The cache's revision at subscription time.
    pub rev: Revision,
}

impl Cache {
    /// Loads every object from the store and starts following it.
    pub async fn start(store: Arc<dyn Store>) -> Result<Arc<Self>, skiff_store::StoreError> {
        let compacted = store.compacted_revision().await?;
        let (items, rev) = store.list(OBJECTS).await?;
        let mut objects = BTreeMap::new();
        for kv in items {
            if let Some(o) = Obj::decode(kv.key.clone(), &kv.value, kv.mod_revision) {
                objects.insert(kv.key, Arc::new(o));
            }
        }
        let (rev_tx, _) = watch::channel(rev);
        let (events, _) = broadcast::channel(HISTORY);
        let cache = Arc::new(Self {
            inner: RwLock::new(Inner {
                objects,
                history: VecDeque::new(),
                rev,
                oldest: rev,
            }),
            rev_tx,
            events,
        });
        // Prime history from the store so a watch from before a restart (or
        // from another server) can resume. The start waits for it a little;
        // a long replay (a big history on a remote etcd) goes on beside
        // serving, and until it is done such a watch gets 410 Gone and its
        // client relists, as without it.
        let replay_from = (rev - HISTORY as i64).max(compacted);
        let mut stream = store.watch(EVERY_KEY, rev).await?;
        if replay_from < rev {
            let (cache, store) = (cache.clone(), store.clone());
            let prime = tokio::spawn(async move {
                if let Ok(hist) = store.watch(EVERY_KEY, replay_from).await {
                    cache.prime_history(hist, rev).await;
                }
            });
            let _ = tokio::time::timeout(PRIME_WAIT, prime).await;
        }
        let weak = Arc::downgrade(&cache);
        let store2 = store.clone();
        tokio::spawn(async move {
            loop {
                let why = match stream.next().await {
                    Some(Ok(ev)) => {
                        let Some(c) = weak.upgrade() else { return };
                        c.apply(ev);
                        continue;
                    }
                    Some(Err(e)) => e.to_string(),
                    // A datastore member going away ends its streams.
                    None => "the stream ended".to_string(),
                };
                tracing::warn!("store watch interrupted ({why}); resuming");
                let Some(s) = Self::resume(&weak, &store2).await else {
                    return;
                };
                stream = s;
            }
        });
        Ok(cache)
    }

    async fn prime_history(&self, mut hist: skiff_store::WatchStream, until: Revision) {
        // Rebuild the states before each event by walking the history forward
        // from the states it implies; the prev of each event is the previous
        // event on the same key, if it is in the replayed window.
        let mut last: BTreeMap<String, Arc<Obj>> = BTreeMap::new();
        let mut out = VecDeque::new();
        let mut first: Option<Revision> = None;
        // The replay watches every key, so the write at `until` (the list's
        // revision) is always among its events and ends it; an idle second
        // ends it too, as a safeguard, and the replay is then not used.
        let mut complete = false;
        while let Ok(Some(Ok(ev))) =
            tokio::time::timeout(std::time::Duration::from_secs(1), hist.next()).await
        {
            let rev = ev.revision();
            if rev > until {
                complete = true;
                break;
            }
            first.get_or_insert(rev);
            if rev == until {
                complete = true;
            }
            if !ev.kv.key.starts_with(OBJECTS) {
                if complete {
                    break;
                }
                continue;
            }
            let Some(obj) = Obj::decode(ev.kv.key.clone(), &ev.kv.value, rev) else {
                continue;
            };
            let obj = Arc::new(obj);
            let prev = last.get(&ev.kv.key).cloned();
            let kind = match ev.kind {
                EventKind::Create => WatchKind::Added,
                EventKind::Update => WatchKind::Modified,
                EventKind::Delete => WatchKind::Deleted,
            };
            if kind == WatchKind::Deleted {
                last.remove(&ev.kv.key);
            } else {
                last.insert(ev.kv.key.clone(), obj.clone());
            }
            out.push_back(Arc::new(CacheEvent { kind, obj, prev }));
            if rev == until {
                break;
            }
        }
        let mut inner = self.inner.write().expect("cache lock");
        // Unless a relist started the history afresh meanwhile, the replay
        // goes before the live events applied since `until`.
        if let Some(f) = first
            && complete
            && inner.oldest == until
        {
            let mut oldest = f - 1;
            out.extend(inner.history.drain(..));
            while out.len() > HISTORY {
                if let Some(dropped) = out.pop_front() {
                    oldest = dropped.rev();
                }
            }
            inner.oldest = oldest;
            inner.history = out;
        }
    }

    /// A new store watch from where the cache is, retried with back-off while
    /// the datastore does not answer; a relist when that history is gone.
    /// None once the cache itself is dropped.
    async fn resume(
        weak: &std::sync::Weak<Self>,
        store: &Arc<dyn Store>,
    ) -> Option<skiff_store::WatchStream> {
        let mut backoff = std::time::Duration::from_millis(50);
        loop {
            let cache = weak.upgrade()?;
            let result = match store.watch(EVERY_KEY, cache.revision()).await {
                Err(skiff_store::StoreError::Compacted { .. }) => {
                    tracing::warn!("the cache fell behind compaction; relisting");
                    cache.resync(store).await
                }
                other => other,
            };
            match result {
                Ok(s) => return Some(s),
                Err(e) => tracing::warn!("resuming the store watch: {e}"),
            }
            drop(cache);
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(std::time::Duration::from_secs(2));
        }
    }

    async fn resync(
        &self,
        store: &Arc<dyn Store>,
    ) -> Result<skiff_store::WatchStream, skiff_store::StoreError> {
        let (items, rev) = store.list(OBJECTS).await?;
        let mut fresh = BTreeMap::new();
        for kv in items {
            if let Some(o) = Obj::decode(kv.key.clone(), &kv.value, kv.mod_revision) {
                fresh.insert(kv.key, Arc::new(o));
            }
        }
        let stream = store.watch(EVERY_KEY, rev).await?;
        let mut inner = self.inner.write().expect("cache lock");
        inner.objects = fresh;
        inner.history.clear();
        inner.rev = rev;
        inner.oldest = rev;
        drop(inner);
        self.rev_tx.send_replace(rev);
        Ok(stream)
    }

    /// Moves the cache's revision past a write that holds no object (a key
    /// outside `/registry/`, or one that does not decode), so that waits for
    /// the datastore's revision end.
    fn advance(&self, rev: Revision) {
        let mut inner = self.inner.write().expect("cache lock");
        if rev <= inner.rev {
            return;
        }
        inner.rev = rev;
        drop(inner);
        self.rev_tx.send_replace(rev);
    }

    fn apply(&self, ev: skiff_store::Event) {
        let rev = ev.revision();
        let key = ev.kv.key.clone();
        if !key.starts_with(OBJECTS) {
            self.advance(rev);
            return;
        }
        let Some(obj) = Obj::decode(key.clone(), &ev.kv.value, rev) else {
            tracing::error!("undecodable object at {key}");
            self.advance(rev);
            return;
        };
        let obj = Arc::new(obj);
        let mut inner = self.inner.write().expect("cache lock");
        if rev <= inner.rev {
            return;
        }
        let prev = match ev.kind {
            EventKind::Delete => inner.objects.remove(&key),
            _ => inner.objects.insert(key, obj.clone()),
        };
        let kind = match (ev.kind, &prev) {
            (EventKind::Delete, _) => WatchKind::Deleted,
            (_, None) => WatchKind::Added,
            (_, Some(_)) => WatchKind::Modified,
        };
        let event = Arc::new(CacheEvent { kind, obj, prev });
        inner.history.push_back(event.clone());
        if inner.history.len() > HISTORY
            && let Some(dropped) = inner.history.pop_front()
        {
            inner.oldest = dropped.rev();
        }
        inner.rev = rev;
        let _ = self.events.send(event);
        drop(inner);
        self.rev_tx.send_replace(rev);
    }

    /// The cache's current revision.
    pub fn revision(&self) -> Revision {
        *self.rev_tx.borrow()
    }

    /// Waits until the cache has applied `rev` (a write's revision).
    pub async fn wait_for(&self, rev: Revision) {
        let mut rx = self.rev_tx.subscribe();
        let _ = rx.wait_for(|r| *r >= rev).await;
    }

    /// The object at `key`.
    pub fn get(&self, key: &str) -> Option<Arc<Obj>> {
        self.inner
            .read()
            .expect("cache lock")
            .objects
            .get(key)
            .cloned()
    }

    /// Objects whose key starts with `prefix`, after `start_after` if given, with the cache revision.
    pub fn list(&self, prefix: &str, start_after: Option<&str>) -> (Vec<Arc<Obj>>, Revision) {
        let inner = self.inner.read().expect("cache lock");
        let lower = match start_after {
            Some(k) if k >= prefix => Bound::Excluded(k.to_string()),
            _ => Bound::Included(prefix.to_string()),
        };
        let items = inner
            .objects
            .range((lower, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (items, inner.rev)
    }

    /// Subscribes to changes after `after`. Fails with the oldest available
    /// revision when `after` is older than the history kept.
    pub fn subscribe(&self, after: Revision) -> Result<Subscription, Revision> {
        let inner = self.inner.read().expect("cache lock");
        if after < inner.oldest {
            return Err(inner.oldest);
        }
        let live = self.events.subscribe();
        let backlog = inner
            .history
            .iter()
            .filter(|e| e.rev() > after)
            .cloned()
            .collect();
        Ok(Subscription {
            backlog,
            live,
            rev: inner.rev,
        })
    }

    /// A consistent snapshot of current objects under `prefix` plus a subscription from that point.
    pub fn snapshot_and_subscribe(&self, prefix: &str) -> (Vec<Arc<Obj>>, Subscription) {
        let inner = self.inner.read().expect("cache lock");
        let live = self.events.subscribe();
        let items = inner
            .objects
            .range(prefix.to_string()..)
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, v)| v.clone())
            .collect();
        (
            items,
            Subscription {
                backlog: Vec::new(),
                live,
                rev: inner.rev,
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::{KeyValue, MemoryStore, Result};
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A datastore whose watch streams end after `events_per_stream` events,
    /// as an etcd member's do when it goes away; `failing_watches` watch calls
    /// after the first fail outright, as while no member answers.
    struct Ending {
        inner: MemoryStore,
        events_per_stream: usize,
        failing_watches: AtomicUsize,
        watches: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Store for Ending {
        async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
            self.inner.get(key).await
        }
        async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
            self.inner.list(prefix).await
        }
        async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
            self.inner.create(key, value).await
        }
        async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
            self.inner.update(key, value, expected).await
        }
        async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
            self.inner.delete(key, expected).await
        }
        async fn watch(&self, prefix: &str, after: Revision) -> Result<skiff_store::WatchStream> {
            if self.watches.fetch_add(1, Ordering::SeqCst) > 0
                && self
                    .failing_watches
                    .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
                    .is_ok()
            {
                return Err(skiff_store::StoreError::Backend("no member answers".into()));
            }
            let stream = self.inner.watch(prefix, after).await?;
            Ok(stream.take(self.events_per_stream).boxed())
        }
        async fn current_revision(&self) -> Result<Revision> {
            self.inner.current_revision().await
        }
        async fn compact(&self, revision: Revision) -> Result<()> {
            self.inner.compact(revision).await
        }
        async fn compacted_revision(&self) -> Result<Revision> {
            self.inner.compacted_revision().await
        }
    }

    fn cm(name: &str) -> Bytes {
        Bytes::from(format!(
            r#"{{"apiVersion":"v1","kind":"ConfigMap","metadata":{{"name":"{name}","namespace":"default"}}}}"#
        ))
    }

    #[tokio::test]
    async fn a_write_outside_the_objects_moves_the_cache_to_the_stores_revision() {
        let store = Arc::new(MemoryStore::new());
        store.create("/bootstrap/skiff", cm("x")).await.unwrap();
        store
            .create("/registry/configmaps/default/a", cm("a"))
            .await
            .unwrap();
        let cache = Cache::start(store.clone()).await.unwrap();
        // The history replay covers the objects written before the start,
        // shortly after it.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        while cache.subscribe(0).is_err() {
            assert!(std::time::Instant::now() < deadline, "no replayed history");
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        assert_eq!(cache.subscribe(0).unwrap().backlog.len(), 1);
        store
            .create("/masterleases/10.0.0.1", Bytes::from_static(b"{}"))
            .await
            .unwrap();
        let rev = store.current_revision().await.unwrap();
        tokio::time::timeout(std::time::Duration::from_secs(2), cache.wait_for(rev))
            .await
            .expect("the cache reaches the store's revision");
        assert!(cache.get("/masterleases/10.0.0.1").is_none());
        assert_eq!(cache.list("/", None).0.len(), 1);
    }

    #[tokio::test]
    async fn an_ended_store_watch_resumes_where_the_cache_is_and_loses_no_event() {
        let store = Arc::new(Ending {
            inner: MemoryStore::new(),
            events_per_stream: 2,
            failing_watches: AtomicUsize::new(3),
            watches: AtomicUsize::new(0),
        });
        let cache = Cache::start(store.clone()).await.unwrap();
        let mut sub = cache.subscribe(cache.revision()).unwrap();
        for i in 0..7 {
            store
                .create(
                    &format!("/registry/configmaps/default/c{i}"),
                    cm(&format!("c{i}")),
                )
                .await
                .unwrap();
        }
        // Every event reaches the cache's watchers, in order, across the
        // ended streams and the failed attempts to watch again.
        let mut seen = Vec::new();
        while seen.len() < 7 {
            let ev = tokio::time::timeout(std::time::Duration::from_secs(5), sub.live.recv())
                .await
                .expect("an event within 5 s")
                .unwrap();
            seen.push(ev.obj.key.clone());
        }
        let want: Vec<String> = (0..7)
            .map(|i| format!("/registry/configmaps/default/c{i}"))
            .collect();
        assert_eq!(seen, want);
        assert!(cache.get("/registry/configmaps/default/c6").is_some());
        assert!(store.watches.load(Ordering::SeqCst) >= 4);
    }
}
