//! In-memory backend.
//!
//! All state lives behind one mutex: the current keys in a `BTreeMap` (so a
//! prefix list is a range scan), the history in a `VecDeque`, and live events
//! go out on a tokio broadcast channel. Every write publishes its event while
//! it still holds the mutex, and a watch subscribes and copies the history
//! under the same mutex, so a watch sees each revision exactly once and in
//! order. It behaves exactly like the SQLite backend, minus durability.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::broadcast;

use crate::{Event, EventKind, KeyValue, Result, Revision, Store, StoreError, WatchStream};

/// How many live events a watcher may fall behind before it gets [`StoreError::Lagged`].
pub const DEFAULT_WATCH_CAPACITY: usize = 16_384;

/// An in-memory store for tests.
///
/// History is kept until [`Store::compact`] drops it; nothing compacts
/// automatically, so a long-running test that churns should compact itself.
pub struct MemoryStore {
    state: Mutex<State>,
    events: broadcast::Sender<Arc<Event>>,
}

/// Everything the mutex guards.
#[derive(Default)]
struct State {
    revision: Revision,
    compacted: Revision,
    keys: BTreeMap<String, KeyValue>,
    history: VecDeque<Arc<Event>>,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store at revision 0 with the default watch capacity.
    pub fn new() -> Self {
        Self::with_watch_capacity(DEFAULT_WATCH_CAPACITY)
    }

    /// An empty store whose watchers may fall `capacity` live events behind
    /// before they are closed with [`StoreError::Lagged`].
    pub fn with_watch_capacity(capacity: usize) -> Self {
        let (events, _) = broadcast::channel(capacity.max(1));
        Self {
            state: Mutex::new(State::default()),
            events,
        }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic while holding the lock cannot leave the state half-written:
        // every write checks first and then mutates without failing.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Records `event` as the newest revision and publishes it.
    fn publish(&self, state: &mut State, event: Event) {
        let event = Arc::new(event);
        state.history.push_back(event.clone());
        // No receivers is not an error for us.
        let _ = self.events.send(event);
    }
}

/// Checks a delete or update precondition against the key's current value.
fn check_expected(key: &str, current: &KeyValue, expected: Option<Revision>) -> Result<()> {
    match expected {
        Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
            key: key.to_owned(),
            expected,
            current: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

/// Builds a watch stream from history read at revision `seen` and a live
/// receiver subscribed before that read: history first, then live events
/// newer than `seen` under `prefix`. A lagging receiver yields
/// [`StoreError::Lagged`] and ends the stream.
pub(crate) fn watch_stream(
    history: Vec<Event>,
    live: broadcast::Receiver<Arc<Event>>,
    prefix: String,
    seen: Revision,
) -> WatchStream {
    let live = futures::stream::unfold(Some((live, prefix, seen)), |state| async move {
        let (mut live, prefix, seen) = state?;
        loop {
            match live.recv().await {
                Ok(event) => {
                    if event.revision() > seen && event.kv.key.starts_with(&prefix) {
                        let revision = event.revision();
                        return Some((Ok((*event).clone()), Some((live, prefix, revision))));
                    }
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Some((Err(StoreError::Lagged), None));
                }
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    futures::stream::iter(history.into_iter().map(Ok))
        .chain(live)
        .boxed()
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        Ok(self.lock().keys.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        let state = self.lock();
        let items = state
            .keys
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(key, _)| key.starts_with(prefix))
            .map(|(_, kv)| kv.clone())
            .collect();
        Ok((items, state.revision))
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let mut state = self.lock();
        if state.keys.contains_key(key) {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        let revision = state.revision + 1;
        state.revision = revision;
        let kv = KeyValue {
            key: key.to_owned(),
            value,
            create_revision: revision,
            mod_revision: revision,
        };
        state.keys.insert(key.to_owned(), kv.clone());
        self.publish(
            &mut state,
            Event {
                kind: EventKind::Create,
                kv,
            },
        );
        Ok(revision)
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        let mut state = self.lock();
        let revision = state.revision + 1;
        let current = state
            .keys
            .get_mut(key)
            .ok_or_else(|| StoreError::NotFound {
                key: key.to_owned(),
            })?;
        check_expected(key, current, Some(expected))?;
        current.value = value;
        current.mod_revision = revision;
        let kv = current.clone();
        state.revision = revision;
        self.publish(
            &mut state,
            Event {
                kind: EventKind::Update,
                kv,
            },
        );
        Ok(revision)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let mut state = self.lock();
        let current = state.keys.get(key).ok_or_else(|| StoreError::NotFound {
            key: key.to_owned(),
        })?;
        check_expected(key, current, expected)?;
        let revision = state.revision + 1;
        state.revision = revision;
        let mut kv = state.keys.remove(key).expect("checked above");
        kv.mod_revision = revision;
        self.publish(
            &mut state,
            Event {
                kind: EventKind::Delete,
                kv: kv.clone(),
            },
        );
        Ok(kv)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        let state = self.lock();
        if after < state.compacted {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: state.compacted,
            });
        }
        let live = self.events.subscribe();
        // History is in revision order: skip to the first event after `after`.
        let start = state
            .history
            .partition_point(|event| event.revision() <= after);
        let history = state
            .history
            .range(start..)
            .filter(|event| event.kv.key.starts_with(prefix))
            .map(|event| (**event).clone())
            .collect();
        Ok(watch_stream(
            history,
            live,
            prefix.to_owned(),
            state.revision,
        ))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.lock().revision)
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let mut state = self.lock();
        if revision > state.revision {
            return Err(StoreError::Backend(format!(
                "cannot compact at future revision {revision}; current is {}",
                state.revision
            )));
        }
        if revision <= state.compacted {
            return Ok(());
        }
        state.compacted = revision;
        let keep_from = state
            .history
            .partition_point(|event| event.revision() <= revision);
        state.history.drain(..keep_from);
        Ok(())
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.lock().compacted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kv(key: &str, rev: Revision) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Bytes::from_static(b"v"),
            create_revision: 1,
            mod_revision: rev,
        }
    }

    #[test]
    fn check_expected_table() {
        let cases = [
            (None, Ok(())),
            (Some(5), Ok(())),
            (
                Some(4),
                Err(StoreError::Conflict {
                    key: "k".into(),
                    expected: 4,
                    current: 5,
                }),
            ),
        ];
        for (expected, want) in cases {
            assert_eq!(
                check_expected("k", &kv("k", 5), expected),
                want,
                "{expected:?}"
            );
        }
    }

    #[tokio::test]
    async fn compact_drops_exactly_the_history_at_and_below() {
        let store = MemoryStore::new();
        for i in 0..5 {
            store
                .create(&format!("/k/{i}"), Bytes::new())
                .await
                .unwrap();
        }
        store.compact(3).await.unwrap();
        let revs: Vec<_> = store.lock().history.iter().map(|e| e.revision()).collect();
        assert_eq!(revs, vec![4, 5]);
        // Compacting below the compacted revision is a no-op.
        store.compact(2).await.unwrap();
        assert_eq!(store.compacted_revision().await.unwrap(), 3);
        assert!(matches!(
            store.compact(6).await,
            Err(StoreError::Backend(_))
        ));
    }

    #[tokio::test]
    async fn small_capacity_watcher_lags_and_ends() {
        let store = MemoryStore::with_watch_capacity(2);
        let mut watch = store.watch("/", 0).await.unwrap();
        for i in 0..10 {
            store
                .create(&format!("/k/{i}"), Bytes::new())
                .await
                .unwrap();
        }
        assert_eq!(watch.next().await, Some(Err(StoreError::Lagged)));
        assert_eq!(watch.next().await, None);
    }
}
