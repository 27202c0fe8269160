//! The revisioned key-value store with watch.
//!
//! Every write gets the next revision of one global, strictly increasing
//! counter, as in etcd; an object's `resourceVersion` is the revision of the
//! write that last changed it. Watches replay history after a revision and
//! then follow live writes; history older than the compacted revision is
//! gone and asking for it fails with [`StoreError::Compacted`].
//!
//! # Layout
//! - this file: the [`Store`] trait, its types and errors.
//! - [`memory`]: an in-memory backend for tests.
//! - [`sqlite`]: the default backend, one SQLite file in WAL mode with group commit.
//! - [`etcd`]: an etcd cluster, for several servers on one datastore.
//! - [`copy`]: copying every key from one store into another (`skiff migrate`).

use bytes::Bytes;
use futures::stream::BoxStream;

pub mod copy;
pub mod etcd;
pub mod memory;
pub mod sqlite;

pub use copy::{CopyError, CopyReport, copy};
pub use etcd::{EtcdStore, EtcdTls};
pub use memory::MemoryStore;
pub use sqlite::SqliteStore;

/// A store revision; 0 means "before any write" (etcd starts at 1).
pub type Revision = i64;

/// One key and its current value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyValue {
    /// The key, e.g. `/registry/pods/default/web-0`.
    pub key: String,
    /// The stored bytes.
    pub value: Bytes,
    /// Revision of the write that created the key.
    pub create_revision: Revision,
    /// Revision of the write that last changed it (for a delete event: the delete's revision).
    pub mod_revision: Revision,
}

/// What a write did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventKind {
    /// The key did not exist before.
    Create,
    /// The key's value was replaced.
    Update,
    /// The key was removed; the event carries its last value.
    Delete,
}

/// One write, as a watch delivers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Create, update or delete.
    pub kind: EventKind,
    /// The new value; for a delete, the last value with `mod_revision` set to the delete's revision.
    pub kv: KeyValue,
}

impl Event {
    /// The revision of this write.
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum StoreError {
    /// Create of a key that exists.
    #[error("key {key} already exists")]
    AlreadyExists {
        /// The key.
        key: String,
    },
    /// Update or delete of a key that does not exist.
    #[error("key {key} not found")]
    NotFound {
        /// The key.
        key: String,
    },
    /// Update or delete with a stale expected revision.
    #[error("key {key} was modified: expected revision {expected}, current {current}")]
    Conflict {
        /// The key.
        key: String,
        /// The revision the caller expected.
        expected: Revision,
        /// The key's current revision.
        current: Revision,
    },
    /// A watch asked for history that was compacted away.
    #[error("revision {requested} has been compacted; oldest available is {compacted}")]
    Compacted {
        /// The revision asked for.
        requested: Revision,
        /// The compacted revision.
        compacted: Revision,
    },
    /// A watcher fell too far behind the live writes and was dropped.
    #[error("watch fell behind and was closed")]
    Lagged,
    /// The backend failed.
    #[error("store backend: {0}")]
    Backend(String),
}

/// Result of a store operation.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A stream of events in revision order.
pub type WatchStream = BoxStream<'static, Result<Event>>;

/// The narrow, revision-based store interface (kine's model).
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The key's current value.
    async fn get(&self, key: &str) -> Result<Option<KeyValue>>;

    /// Every key under `prefix`, in key order, with the revision the list was read at.
    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)>;

    /// Creates a key; fails with `AlreadyExists` if it exists. Returns the write's revision.
    async fn create(&self, key: &str, value: Bytes) -> Result<Revision>;

    /// Replaces a key's value if its `mod_revision` is `expected`. Returns the write's revision.
    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision>;

    /// Deletes a key, if given only when its `mod_revision` is `expected`.
    /// Returns the last value with `mod_revision` set to the delete's revision.
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;

    /// Events under `prefix` with revision greater than `after`, history first, then live.
    /// Fails with `Compacted` when `after` is older than the compacted revision.
    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream>;

    /// The revision of the latest write.
    async fn current_revision(&self) -> Result<Revision>;

    /// Drops history at and below `revision`; later watches from before it fail with `Compacted`.
    async fn compact(&self, revision: Revision) -> Result<()>;

    /// The revision history was last compacted at (0 if never).
    async fn compacted_revision(&self) -> Result<Revision>;
}
