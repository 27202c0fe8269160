//! Copying every key under a prefix from one store into another, for
//! `skiff migrate` (a SQLite cluster into etcd).
//!
//! - The source is read in one list, so the copy is one consistent snapshot.
//! - Values are copied verbatim. The registry keeps no `resourceVersion`
//!   inside a stored object (it is the key's `mod_revision`, set when the
//!   object is read), so after the copy every object reads back with the
//!   target's new revision as its resourceVersion, and everything inside it
//!   (uid, creationTimestamp, generation, owner references, …) is unchanged.
//! - Each key is created in its own write, so each object gets its own
//!   revision as it would through the API; up to [`CONCURRENCY`] writes are in
//!   flight at once, so the copy is not one round trip per key.
//! - The target must not hold a cluster: [`copy`] refuses, before any write,
//!   when the target has keys under [`REGISTRY_PREFIX`] or any key the copy
//!   would create.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::{KeyValue, Revision, Store, StoreError};

/// Where the API server keeps its objects; a target with keys here holds a cluster.
pub const REGISTRY_PREFIX: &str = "/registry/";

/// How many creates a copy keeps in flight.
pub const CONCURRENCY: usize = 32;

/// What a finished copy did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CopyReport {
    /// Keys copied.
    pub keys: usize,
    /// Bytes of values copied.
    pub bytes: u64,
    /// The source revision the copy was read at.
    pub source_revision: Revision,
    /// The target's revision after the copy (of its last write).
    pub target_revision: Revision,
    /// How long the copy took, from the source list to the last write.
    pub elapsed: Duration,
}

/// Why a copy did not happen or did not finish.
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
pub enum CopyError {
    /// The target already holds a cluster; nothing was written.
    #[error(
        "the target datastore already holds {count} keys under {REGISTRY_PREFIX}: it has a cluster \
         already; nothing was written (migrate only into an empty datastore)"
    )]
    TargetHasCluster {
        /// How many keys the target has under [`REGISTRY_PREFIX`].
        count: usize,
    },
    /// The target already holds some of the keys to copy; nothing was written.
    #[error(
        "the target datastore already holds {count} of the keys to copy (e.g. {first}); \
         nothing was written"
    )]
    TargetHasKeys {
        /// How many of the source's keys the target has.
        count: usize,
        /// The first of them.
        first: String,
    },
    /// Reading the source or the target failed; nothing was written.
    #[error("{0}; nothing was written")]
    Read(StoreError),
    /// A write failed part way; the target holds some of the keys.
    #[error(
        "the copy stopped after {copied} of {total} keys, at {key}: {source}; the target is \
         partly written: empty it before trying again"
    )]
    Partial {
        /// Keys written before the failure.
        copied: usize,
        /// Keys to copy.
        total: usize,
        /// The key whose write failed.
        key: String,
        /// Why it failed.
        source: StoreError,
    },
}

/// Why a copy of the `source` keys must not start into a target that holds
/// `target_registry` keys under [`REGISTRY_PREFIX`] and the keys
/// `target` under the copied prefix, if it must not.
pub fn refusal(
    source: &[KeyValue],
    target_registry: usize,
    target: &[KeyValue],
) -> Option<CopyError> {
    if target_registry > 0 {
        return Some(CopyError::TargetHasCluster {
            count: target_registry,
        });
    }
    let present: BTreeSet<&str> = target.iter().map(|kv| kv.key.as_str()).collect();
    let clashes: Vec<&str> = source
        .iter()
        .map(|kv| kv.key.as_str())
        .filter(|key| present.contains(key))
        .collect();
    let first = clashes.first()?;
    Some(CopyError::TargetHasKeys {
        count: clashes.len(),
        first: (*first).to_owned(),
    })
}

/// Copies every key under `prefix` from `from` into `to`, values verbatim,
/// from one consistent list of `from`. Refuses (writing nothing) when `to`
/// holds a cluster or any of the keys; see the module notes.
pub async fn copy(from: &dyn Store, to: &dyn Store, prefix: &str) -> Result<CopyReport, CopyError> {
    let started = Instant::now();
    let (source, source_revision) = from.list(prefix).await.map_err(CopyError::Read)?;
    let (registry, _) = to.list(REGISTRY_PREFIX).await.map_err(CopyError::Read)?;
    let (present, _) = to.list(prefix).await.map_err(CopyError::Read)?;
    if let Some(refused) = refusal(&source, registry.len(), &present) {
        return Err(refused);
    }
    let total = source.len();
    let bytes = source.iter().map(|kv| kv.value.len() as u64).sum();
    let mut writes = futures::stream::iter(source)
        .map(|kv| async move {
            to.create(&kv.key, kv.value)
                .await
                .map_err(|source| (kv.key, source))
        })
        .buffer_unordered(CONCURRENCY);
    let mut copied = 0;
    let mut target_revision = None;
    while let Some(written) = writes.next().await {
        match written {
            Ok(revision) => {
                copied += 1;
                target_revision = target_revision.max(Some(revision));
            }
            Err((key, source)) => {
                return Err(CopyError::Partial {
                    copied,
                    total,
                    key,
                    source,
                });
            }
        }
    }
    let target_revision = match target_revision {
        Some(revision) => revision,
        // Nothing to copy, nothing written.
        None => to.current_revision().await.map_err(CopyError::Read)?,
    };
    Ok(CopyReport {
        keys: total,
        bytes,
        source_revision,
        target_revision,
        elapsed: started.elapsed(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::MemoryStore;
    use bytes::Bytes;

    fn kv(key: &str) -> KeyValue {
        KeyValue {
            key: key.to_owned(),
            value: Bytes::from_static(b"{}"),
            create_revision: 1,
            mod_revision: 1,
        }
    }

    #[test]
    fn refuses_a_target_with_a_cluster_or_any_of_the_keys() {
        let source = [kv("/bootstrap/skiff"), kv("/registry/namespaces/default")];
        let cases: &[(usize, &[KeyValue], Option<CopyError>)] = &[
            (0, &[], None),
            // Keys the copy does not touch are left alone.
            (0, &[kv("/coreos.com/network/config")], None),
            (3, &[], Some(CopyError::TargetHasCluster { count: 3 })),
            (
                0,
                &[kv("/bootstrap/skiff")],
                Some(CopyError::TargetHasKeys {
                    count: 1,
                    first: "/bootstrap/skiff".to_owned(),
                }),
            ),
        ];
        for (registry, target, want) in cases {
            assert_eq!(
                &refusal(&source, *registry, target),
                want,
                "{registry} {target:?}"
            );
        }
        assert_eq!(
            CopyError::TargetHasCluster { count: 3 }.to_string(),
            "the target datastore already holds 3 keys under /registry/: it has a cluster \
             already; nothing was written (migrate only into an empty datastore)"
        );
    }

    /// A source with history: updated and deleted keys, and one key outside `/`.
    async fn source() -> MemoryStore {
        let s = MemoryStore::new();
        let b = |v: &str| Bytes::from(v.to_owned());
        let r = s
            .create("/registry/configmaps/default/c", b("c1"))
            .await
            .unwrap();
        s.update("/registry/configmaps/default/c", b("c2"), r)
            .await
            .unwrap();
        s.create("/registry/gone", b("x")).await.unwrap();
        s.delete("/registry/gone", None).await.unwrap();
        s.create("/registry/namespaces/default", b("ns"))
            .await
            .unwrap();
        s.create("/bootstrap/skiff", b("secret")).await.unwrap();
        s.create("outside", b("o")).await.unwrap();
        s
    }

    #[tokio::test]
    async fn copies_every_key_under_the_prefix_verbatim() {
        let from = source().await;
        let to = MemoryStore::new();
        let report = copy(&from, &to, "/").await.unwrap();
        assert_eq!(report.keys, 3);
        assert_eq!(report.bytes, (2 + 2 + 6) as u64);
        assert_eq!(report.source_revision, 7);
        assert_eq!(report.target_revision, 3);
        let (copied, _) = to.list("").await.unwrap();
        let got: Vec<(&str, &[u8])> = copied
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_ref()))
            .collect();
        assert_eq!(
            got,
            [
                ("/bootstrap/skiff", &b"secret"[..]),
                ("/registry/configmaps/default/c", b"c2"),
                ("/registry/namespaces/default", b"ns"),
            ]
        );
        // Each key is a fresh create with its own revision in the target.
        let mut revisions: Vec<Revision> = copied.iter().map(|kv| kv.mod_revision).collect();
        revisions.sort();
        assert_eq!(revisions, [1, 2, 3]);
        assert!(
            copied
                .iter()
                .all(|kv| kv.create_revision == kv.mod_revision)
        );
    }

    #[tokio::test]
    async fn a_second_copy_is_refused_and_writes_nothing() {
        let from = source().await;
        let to = MemoryStore::new();
        copy(&from, &to, "/").await.unwrap();
        let before = to.current_revision().await.unwrap();
        let err = copy(&from, &to, "/").await.unwrap_err();
        assert_eq!(err, CopyError::TargetHasCluster { count: 2 });
        assert_eq!(to.current_revision().await.unwrap(), before);

        // Bootstrap data alone (no cluster) still blocks a copy that would clash with it.
        let to = MemoryStore::new();
        to.create("/bootstrap/skiff", Bytes::from_static(b"other"))
            .await
            .unwrap();
        let err = copy(&from, &to, "/").await.unwrap_err();
        assert_eq!(
            err,
            CopyError::TargetHasKeys {
                count: 1,
                first: "/bootstrap/skiff".to_owned()
            }
        );
        assert_eq!(to.current_revision().await.unwrap(), 1);
    }

    #[tokio::test]
    async fn an_empty_source_copies_nothing() {
        let to = MemoryStore::new();
        to.create("/elsewhere", Bytes::from_static(b"x"))
            .await
            .unwrap();
        let report = copy(&MemoryStore::new(), &to, "/").await.unwrap();
        assert_eq!(
            (report.keys, report.bytes, report.target_revision),
            (0, 0, 1)
        );
    }
}
