//! SQLite backend.
//!
//! One SQLite file in WAL mode with `synchronous=FULL`: a write is answered
//! only after the transaction that holds it is durable.
//!
//! # Schema
//! - `kv(key PRIMARY KEY, create_rev, mod_rev, value)`: the current keys.
//! - `log(rev PRIMARY KEY, key, kind, create_rev, value)`: one row per write,
//!   newer than the compacted revision; a delete row carries the last value.
//! - `meta(name PRIMARY KEY, value)`: `compacted`, the compacted revision.
//!
//! The current revision is `max(max(log.rev), compacted)`: history above the
//! compacted revision is never deleted, so it survives restarts without a
//! counter row that every transaction would have to rewrite.
//!
//! # Threads
//! - One writer thread owns the only writing connection. It takes every
//!   queued request and commits them in one transaction (group commit),
//!   checking each request's precondition inside it, then publishes the
//!   events on a broadcast channel and answers each caller. It also runs
//!   compaction, logically at once (the `compacted` row) and physically in
//!   small chunks between batches, so it never holds the write lock long.
//! - Reads (`get`, `list`, a watch's history) use a small pool of read
//!   connections on tokio's blocking threads; in WAL mode they never wait
//!   for the writer.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::{broadcast, oneshot};

use crate::memory::watch_stream;
use crate::{Event, EventKind, KeyValue, Result, Revision, Store, StoreError, WatchStream};

/// How many history rows one compaction chunk deletes.
const COMPACT_CHUNK: i64 = 2_000;
/// Free pages above which a finished compaction returns space to the file system.
const VACUUM_THRESHOLD_PAGES: i64 = 256;

/// Tuning for [`SqliteStore`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SqliteOptions {
    /// Automatic compaction keeps this many revisions of history.
    pub retain_revisions: i64,
    /// How often automatic compaction runs; `None` turns it off.
    pub compact_interval: Option<Duration>,
    /// How many live events a watcher may fall behind before it gets [`StoreError::Lagged`].
    pub watch_capacity: usize,
    /// The most requests one transaction commits.
    pub max_batch: usize,
    /// Idle read connections kept open for reuse.
    pub read_connections: usize,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        Self {
            retain_revisions: 10_000,
            compact_interval: Some(Duration::from_secs(60)),
            watch_capacity: crate::memory::DEFAULT_WATCH_CAPACITY,
            max_batch: 1_024,
            read_connections: 4,
        }
    }
}

/// The SQLite store.
///
/// Dropping it (or calling [`SqliteStore::close`]) commits what is queued,
/// stops the writer thread and ends every watch.
pub struct SqliteStore {
    shared: Arc<Shared>,
    writer: Mutex<Option<WriterHandle>>,
}

/// What readers and the writer share.
struct Shared {
    path: PathBuf,
    readers: Mutex<Vec<Connection>>,
    max_idle_readers: usize,
    revision: AtomicI64,
    compacted: AtomicI64,
}

/// The ways to reach the writer thread; dropped on close.
struct WriterHandle {
    requests: mpsc::Sender<Request>,
    events: broadcast::Sender<Arc<Event>>,
    thread: JoinHandle<()>,
}

/// A write the writer thread carries out.
#[derive(Debug)]
enum Op {
    Create {
        key: String,
        value: Bytes,
    },
    Update {
        key: String,
        value: Bytes,
        expected: Revision,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

/// The answer to one [`Op`].
#[derive(Debug)]
enum Reply {
    Revision(Revision),
    Deleted(KeyValue),
    Compacted,
}

struct Request {
    op: Op,
    reply: oneshot::Sender<Result<Reply>>,
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(err.to_string())
}

fn closed() -> StoreError {
    StoreError::Backend("the store is closed".to_owned())
}

fn kind_code(kind: EventKind) -> i64 {
    match kind {
        EventKind::Create => 0,
        EventKind::Update => 1,
        EventKind::Delete => 2,
    }
}

fn kind_from_code(code: i64) -> rusqlite::Result<EventKind> {
    match code {
        0 => Ok(EventKind::Create),
        1 => Ok(EventKind::Update),
        2 => Ok(EventKind::Delete),
        other => Err(rusqlite::Error::IntegralValueOutOfRange(2, other)),
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS kv (
    key TEXT PRIMARY KEY NOT NULL,
    create_rev INTEGER NOT NULL,
    mod_rev INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS log (
    rev INTEGER PRIMARY KEY NOT NULL,
    key TEXT NOT NULL,
    kind INTEGER NOT NULL,
    create_rev INTEGER NOT NULL,
    value BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
INSERT OR IGNORE INTO meta (name, value) VALUES ('compacted', 0);
";

/// Settings every connection gets.
fn configure(conn: &Connection) -> rusqlite::Result<()> {
    conn.busy_timeout(Duration::from_secs(10))?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(())
}

/// The compacted revision, as seen by `conn`'s current transaction.
fn read_compacted(conn: &Connection) -> rusqlite::Result<Revision> {
    conn.query_row(
        "SELECT value FROM meta WHERE name = 'compacted'",
        [],
        |row| row.get(0),
    )
}

/// The latest revision, as seen by `conn`'s current transaction.
fn read_revision(conn: &Connection, compacted: Revision) -> rusqlite::Result<Revision> {
    let newest: Option<Revision> =
        conn.query_row("SELECT max(rev) FROM log", [], |row| row.get(0))?;
    Ok(newest.unwrap_or(0).max(compacted))
}

impl SqliteStore {
    /// Opens (creating if needed) the store in the file at `path` and starts its writer thread.
    pub fn open(path: &Path, options: SqliteOptions) -> Result<Self> {
        let conn = Connection::open(path).map_err(backend)?;
        // Only takes effect on a new file, before the first table exists.
        conn.pragma_update(None, "auto_vacuum", "INCREMENTAL")
            .map_err(backend)?;
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(backend)?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "{}: cannot use WAL mode (got {mode})",
                path.display()
            )));
        }
        configure(&conn).map_err(backend)?;
        // Keep the WAL from staying large after a burst.
        conn.pragma_update(None, "journal_size_limit", 4 * 1024 * 1024)
            .map_err(backend)?;
        conn.execute_batch(SCHEMA).map_err(backend)?;
        let compacted = read_compacted(&conn).map_err(backend)?;
        let revision = read_revision(&conn, compacted).map_err(backend)?;
        let leftover: bool = conn
            .query_row(
                "SELECT EXISTS (SELECT 1 FROM log WHERE rev <= ?1)",
                [compacted],
                |row| row.get(0),
            )
            .map_err(backend)?;

        let shared = Arc::new(Shared {
            path: path.to_owned(),
            readers: Mutex::new(Vec::new()),
            max_idle_readers: options.read_connections,
            revision: AtomicI64::new(revision),
            compacted: AtomicI64::new(compacted),
        });
        let (events, _) = broadcast::channel(options.watch_capacity.max(1));
        let (requests, receiver) = mpsc::channel();
        let writer = Writer {
            conn,
            requests: receiver,
            events: events.clone(),
            shared: shared.clone(),
            revision,
            compacted,
            cleanup_pending: leftover,
            next_auto_compaction: options.compact_interval.map(|every| Instant::now() + every),
            options,
        };
        let thread = std::thread::Builder::new()
            .name("skiff-store-writer".to_owned())
            .spawn(move || writer.run())
            .map_err(backend)?;
        Ok(Self {
            shared,
            writer: Mutex::new(Some(WriterHandle {
                requests,
                events,
                thread,
            })),
        })
    }

    /// Commits what is queued, stops the writer thread and ends every watch.
    /// Later calls fail with [`StoreError::Backend`]. Blocks until the writer
    /// has finished its current transaction.
    pub fn close(&self) -> Result<()> {
        let handle = self.lock_writer().take();
        if let Some(WriterHandle {
            requests,
            events,
            thread,
        }) = handle
        {
            drop(requests);
            drop(events);
            thread
                .join()
                .map_err(|_| StoreError::Backend("the writer thread panicked".to_owned()))?;
        }
        self.shared.lock_readers().clear();
        Ok(())
    }

    /// The file this store lives in.
    pub fn path(&self) -> &Path {
        &self.shared.path
    }

    /// Whether another open store (e.g. a running server, in this process or
    /// another) has the database at `path` open.
    ///
    /// In WAL mode every open connection holds a shared lock on the
    /// database file for as long as it is open, so asking for an exclusive
    /// lock, without waiting, fails exactly while some connection is open.
    /// The lock is let go at once: a store opened after this answer is not seen.
    pub fn in_use(path: &Path) -> Result<bool> {
        use rusqlite::OpenFlags;
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|err| StoreError::Backend(format!("{}: {err}", path.display())))?;
        conn.busy_timeout(Duration::ZERO).map_err(backend)?;
        conn.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(backend)?;
        match conn.execute_batch("BEGIN EXCLUSIVE; ROLLBACK;") {
            Ok(()) => Ok(false),
            Err(rusqlite::Error::SqliteFailure(err, _))
                if err.code == rusqlite::ErrorCode::DatabaseBusy =>
            {
                Ok(true)
            }
            Err(err) => Err(StoreError::Backend(format!("{}: {err}", path.display()))),
        }
    }

    fn lock_writer(&self) -> MutexGuard<'_, Option<WriterHandle>> {
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Queues `op` for the writer and waits for its answer.
    async fn submit(&self, op: Op) -> Result<Reply> {
        let (reply, answer) = oneshot::channel();
        {
            let writer = self.lock_writer();
            let writer = writer.as_ref().ok_or_else(closed)?;
            writer
                .requests
                .send(Request { op, reply })
                .map_err(|_| closed())?;
        }
        answer.await.map_err(|_| closed())?
    }

    /// Runs `read` on a pooled read connection on a blocking thread.
    async fn read<T, F>(&self, read: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || {
            let mut conn = shared.take_reader()?;
            let result = read(&mut conn);
            shared.put_reader(conn);
            result.map_err(backend)
        })
        .await
        .map_err(backend)?
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        if let Err(err) = self.close() {
            tracing::error!(%err, "closing the SQLite store");
        }
    }
}

impl Shared {
    fn lock_readers(&self) -> MutexGuard<'_, Vec<Connection>> {
        self.readers.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn take_reader(&self) -> Result<Connection> {
        if let Some(conn) = self.lock_readers().pop() {
            return Ok(conn);
        }
        let conn = Connection::open(&self.path).map_err(backend)?;
        configure(&conn).map_err(backend)?;
        conn.pragma_update(None, "query_only", true)
            .map_err(backend)?;
        Ok(conn)
    }

    fn put_reader(&self, conn: Connection) {
        let mut readers = self.lock_readers();
        if readers.len() < self.max_idle_readers {
            readers.push(conn);
        }
    }
}

fn kv_from_row(key: String, row: &rusqlite::Row<'_>) -> rusqlite::Result<KeyValue> {
    Ok(KeyValue {
        key,
        create_revision: row.get("create_rev")?,
        mod_revision: row.get("mod_rev")?,
        value: Bytes::from(row.get::<_, Vec<u8>>("value")?),
    })
}

#[async_trait::async_trait]
impl Store for SqliteStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let key = key.to_owned();
        self.read(move |conn| {
            let mut stmt =
                conn.prepare_cached("SELECT create_rev, mod_rev, value FROM kv WHERE key = ?1")?;
            stmt.query_row([&key], |row| kv_from_row(key.clone(), row))
                .optional()
        })
        .await
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        let prefix = prefix.to_owned();
        self.read(move |conn| {
            let tx = conn.transaction()?;
            let mut items = Vec::new();
            {
                // Keys with the prefix are one contiguous run starting at it.
                let mut stmt = tx.prepare_cached(
                    "SELECT key, create_rev, mod_rev, value FROM kv WHERE key >= ?1 ORDER BY key",
                )?;
                let mut rows = stmt.query([&prefix])?;
                while let Some(row) = rows.next()? {
                    let key: String = row.get("key")?;
                    if !key.starts_with(&prefix) {
                        break;
                    }
                    items.push(kv_from_row(key, row)?);
                }
            }
            let compacted = read_compacted(&tx)?;
            let revision = read_revision(&tx, compacted)?;
            tx.commit()?;
            Ok((items, revision))
        })
        .await
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        match self
            .submit(Op::Create {
                key: key.to_owned(),
                value,
            })
            .await?
        {
            Reply::Revision(revision) => Ok(revision),
            other => Err(backend(format!("unexpected writer reply {other:?}"))),
        }
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        match self
            .submit(Op::Update {
                key: key.to_owned(),
                value,
                expected,
            })
            .await?
        {
            Reply::Revision(revision) => Ok(revision),
            other => Err(backend(format!("unexpected writer reply {other:?}"))),
        }
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        match self
            .submit(Op::Delete {
                key: key.to_owned(),
                expected,
            })
            .await?
        {
            Reply::Deleted(kv) => Ok(kv),
            other => Err(backend(format!("unexpected writer reply {other:?}"))),
        }
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // Subscribe before reading history: every write committed after the
        // read is then broadcast to us, and the stream drops the overlap.
        let live = {
            let writer = self.lock_writer();
            writer.as_ref().ok_or_else(closed)?.events.subscribe()
        };
        let owned_prefix = prefix.to_owned();
        let (history, seen) = self
            .read(move |conn| {
                let tx = conn.transaction()?;
                let compacted = read_compacted(&tx)?;
                if after < compacted {
                    return Ok(Err(StoreError::Compacted {
                        requested: after,
                        compacted,
                    }));
                }
                let seen = read_revision(&tx, compacted)?;
                let mut history = Vec::new();
                {
                    let mut stmt = tx.prepare_cached(
                        "SELECT rev, key, kind, create_rev, value FROM log \
                         WHERE rev > ?1 AND rev <= ?2 ORDER BY rev",
                    )?;
                    let mut rows = stmt.query([after, seen])?;
                    while let Some(row) = rows.next()? {
                        let key: String = row.get("key")?;
                        if !key.starts_with(&owned_prefix) {
                            continue;
                        }
                        history.push(Event {
                            kind: kind_from_code(row.get("kind")?)?,
                            kv: KeyValue {
                                key,
                                create_revision: row.get("create_rev")?,
                                mod_revision: row.get("rev")?,
                                value: Bytes::from(row.get::<_, Vec<u8>>("value")?),
                            },
                        });
                    }
                }
                tx.commit()?;
                Ok(Ok((history, seen)))
            })
            .await??;
        Ok(watch_stream(history, live, prefix.to_owned(), seen))
    }

    async fn current_revision(&self) -> Result<Revision> {
        Ok(self.shared.revision.load(Ordering::Acquire))
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match self.submit(Op::Compact { revision }).await? {
            Reply::Compacted => Ok(()),
            other => Err(backend(format!("unexpected writer reply {other:?}"))),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        Ok(self.shared.compacted.load(Ordering::Acquire))
    }
}

/// The writer thread's state.
struct Writer {
    conn: Connection,
    requests: mpsc::Receiver<Request>,
    events: broadcast::Sender<Arc<Event>>,
    shared: Arc<Shared>,
    /// The latest committed revision.
    revision: Revision,
    /// The committed compacted revision.
    compacted: Revision,
    /// History rows at or below `compacted` may still exist.
    cleanup_pending: bool,
    next_auto_compaction: Option<Instant>,
    options: SqliteOptions,
}

/// What one applied request produced inside the transaction.
type Outcome = Result<(Reply, Option<Event>)>;

impl Writer {
    fn run(mut self) {
        loop {
            let first = if self.cleanup_pending {
                match self.requests.try_recv() {
                    Ok(request) => Some(request),
                    Err(mpsc::TryRecvError::Empty) => None,
                    Err(mpsc::TryRecvError::Disconnected) => break,
                }
            } else {
                let wait = self
                    .next_auto_compaction
                    .map(|at| at.saturating_duration_since(Instant::now()))
                    .unwrap_or(Duration::from_secs(3600));
                match self.requests.recv_timeout(wait) {
                    Ok(request) => Some(request),
                    Err(mpsc::RecvTimeoutError::Timeout) => None,
                    Err(mpsc::RecvTimeoutError::Disconnected) => break,
                }
            };
            let mut batch = Vec::new();
            if let Some(first) = first {
                batch.push(first);
                while batch.len() < self.options.max_batch.max(1) {
                    match self.requests.try_recv() {
                        Ok(request) => batch.push(request),
                        Err(_) => break,
                    }
                }
            }
            let auto_target = self.auto_compaction_due();
            self.commit_batch(batch, auto_target);
        }
        tracing::debug!(revision = self.revision, "store writer stopped");
    }

    /// The revision automatic compaction should compact to now, if it is due.
    fn auto_compaction_due(&mut self) -> Option<Revision> {
        let (at, every) = (self.next_auto_compaction?, self.options.compact_interval?);
        let now = Instant::now();
        if now < at {
            return None;
        }
        self.next_auto_compaction = Some(now + every);
        let target = self.revision - self.options.retain_revisions.max(0);
        (target > self.compacted).then_some(target)
    }

    /// Applies `batch` (and any compaction work) in one transaction, then
    /// publishes and answers.
    fn commit_batch(&mut self, batch: Vec<Request>, auto_target: Option<Revision>) {
        if batch.is_empty() && auto_target.is_none() && !self.cleanup_pending {
            return;
        }
        let mut revision = self.revision;
        let mut compacted = self.compacted;
        let result = (|| -> rusqlite::Result<(Vec<Outcome>, bool, bool)> {
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut outcomes = Vec::with_capacity(batch.len());
            let mut cleanup = self.cleanup_pending;
            for request in &batch {
                let outcome = apply(&tx, &request.op, &mut revision, &mut compacted)?;
                outcomes.push(outcome);
            }
            if let Some(target) = auto_target {
                set_compacted(&tx, target.min(revision), &mut compacted)?;
            }
            cleanup |= compacted > self.compacted;
            let mut cleanup_done = true;
            if cleanup {
                let deleted = tx.execute(
                    "DELETE FROM log WHERE rev IN \
                     (SELECT rev FROM log WHERE rev <= ?1 ORDER BY rev LIMIT ?2)",
                    [compacted, COMPACT_CHUNK],
                )?;
                cleanup_done = (deleted as i64) < COMPACT_CHUNK;
            }
            tx.commit()?;
            Ok((outcomes, cleanup, cleanup_done))
        })();

        match result {
            Ok((outcomes, cleaned, cleanup_done)) => {
                self.revision = revision;
                self.compacted = compacted;
                self.cleanup_pending = cleaned && !cleanup_done;
                self.shared.revision.store(revision, Ordering::Release);
                self.shared.compacted.store(compacted, Ordering::Release);
                for (request, outcome) in batch.into_iter().zip(outcomes) {
                    let answer = outcome.map(|(reply, event)| {
                        if let Some(event) = event {
                            let _ = self.events.send(Arc::new(event));
                        }
                        reply
                    });
                    let _ = request.reply.send(answer);
                }
                if cleaned && cleanup_done {
                    self.vacuum();
                }
            }
            Err(err) => {
                tracing::error!(%err, requests = batch.len(), "store transaction failed");
                let err = backend(err);
                for request in batch {
                    let _ = request.reply.send(Err(err.clone()));
                }
            }
        }
    }

    /// Returns free pages to the file system once compaction freed many.
    fn vacuum(&mut self) {
        let result = (|| -> rusqlite::Result<()> {
            let free: i64 = self
                .conn
                .query_row("PRAGMA freelist_count", [], |row| row.get(0))?;
            if free < VACUUM_THRESHOLD_PAGES {
                return Ok(());
            }
            // Each step of this pragma frees one page: run it to the end.
            let mut stmt = self.conn.prepare("PRAGMA incremental_vacuum")?;
            let mut rows = stmt.query([])?;
            while rows.next()?.is_some() {}
            Ok(())
        })();
        if let Err(err) = result {
            tracing::warn!(%err, "incremental vacuum failed");
        }
    }
}

/// Records `target` as the compacted revision if it is newer.
fn set_compacted(
    conn: &Connection,
    target: Revision,
    compacted: &mut Revision,
) -> rusqlite::Result<()> {
    if target > *compacted {
        conn.execute(
            "UPDATE meta SET value = ?1 WHERE name = 'compacted'",
            [target],
        )?;
        *compacted = target;
    }
    Ok(())
}

/// The key's current row: create revision, mod revision and value.
fn current(conn: &Connection, key: &str) -> rusqlite::Result<Option<KeyValue>> {
    let mut stmt =
        conn.prepare_cached("SELECT create_rev, mod_rev, value FROM kv WHERE key = ?1")?;
    stmt.query_row([key], |row| kv_from_row(key.to_owned(), row))
        .optional()
}

fn append_log(conn: &Connection, event: &Event) -> rusqlite::Result<()> {
    let mut stmt = conn.prepare_cached(
        "INSERT INTO log (rev, key, kind, create_rev, value) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    stmt.execute(params![
        event.kv.mod_revision,
        event.kv.key,
        kind_code(event.kind),
        event.kv.create_revision,
        &event.kv.value[..],
    ])?;
    Ok(())
}

/// Applies one request inside the writer's transaction. The outer error
/// fails the whole transaction; the inner one answers only this request.
fn apply(
    conn: &Connection,
    op: &Op,
    revision: &mut Revision,
    compacted: &mut Revision,
) -> rusqlite::Result<Outcome> {
    let next = *revision + 1;
    match op {
        Op::Create { key, value } => {
            if current(conn, key)?.is_some() {
                return Ok(Err(StoreError::AlreadyExists { key: key.clone() }));
            }
            conn.prepare_cached(
                "INSERT INTO kv (key, create_rev, mod_rev, value) VALUES (?1, ?2, ?2, ?3)",
            )?
            .execute(params![key, next, &value[..]])?;
            let event = Event {
                kind: EventKind::Create,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: next,
                    mod_revision: next,
                },
            };
            append_log(conn, &event)?;
            *revision = next;
            Ok(Ok((Reply::Revision(next), Some(event))))
        }
        Op::Update {
            key,
            value,
            expected,
        } => {
            let Some(existing) = current(conn, key)? else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if existing.mod_revision != *expected {
                return Ok(Err(StoreError::Conflict {
                    key: key.clone(),
                    expected: *expected,
                    current: existing.mod_revision,
                }));
            }
            conn.prepare_cached("UPDATE kv SET mod_rev = ?2, value = ?3 WHERE key = ?1")?
                .execute(params![key, next, &value[..]])?;
            let event = Event {
                kind: EventKind::Update,
                kv: KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                    create_revision: existing.create_revision,
                    mod_revision: next,
                },
            };
            append_log(conn, &event)?;
            *revision = next;
            Ok(Ok((Reply::Revision(next), Some(event))))
        }
        Op::Delete { key, expected } => {
            let Some(mut existing) = current(conn, key)? else {
                return Ok(Err(StoreError::NotFound { key: key.clone() }));
            };
            if let Some(expected) = *expected
                && existing.mod_revision != expected
            {
                return Ok(Err(StoreError::Conflict {
                    key: key.clone(),
                    expected,
                    current: existing.mod_revision,
                }));
            }
            conn.prepare_cached("DELETE FROM kv WHERE key = ?1")?
                .execute([key])?;
            existing.mod_revision = next;
            let event = Event {
                kind: EventKind::Delete,
                kv: existing.clone(),
            };
            append_log(conn, &event)?;
            *revision = next;
            Ok(Ok((Reply::Deleted(existing), Some(event))))
        }
        Op::Compact { revision: target } => {
            if *target > *revision {
                return Ok(Err(StoreError::Backend(format!(
                    "cannot compact at future revision {target}; current is {revision}"
                ))));
            }
            set_compacted(conn, *target, compacted)?;
            Ok(Ok((Reply::Compacted, None)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_codes_round_trip() {
        for kind in [EventKind::Create, EventKind::Update, EventKind::Delete] {
            assert_eq!(kind_from_code(kind_code(kind)).unwrap(), kind);
        }
        assert!(kind_from_code(7).is_err());
    }

    #[tokio::test]
    async fn new_file_uses_wal_full_sync_and_incremental_vacuum() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        store.create("/a", Bytes::from_static(b"x")).await.unwrap();
        store.close().unwrap();
        let conn = Connection::open(&path).unwrap();
        let cases: [(&str, i64); 1] = [("auto_vacuum", 2)];
        for (pragma, want) in cases {
            let got: i64 = conn.pragma_query_value(None, pragma, |r| r.get(0)).unwrap();
            assert_eq!(got, want, "{pragma}");
        }
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
    }

    #[tokio::test]
    async fn closed_store_refuses_calls() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("s.db"), SqliteOptions::default()).unwrap();
        store.close().unwrap();
        assert_eq!(store.create("/a", Bytes::new()).await, Err(closed()),);
        assert!(store.watch("/", 0).await.is_err());
        // Closing twice is fine.
        store.close().unwrap();
    }

    #[tokio::test]
    async fn compaction_deletes_history_in_chunks_and_frees_pages() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.db");
        let options = SqliteOptions {
            compact_interval: None,
            ..SqliteOptions::default()
        };
        let store = SqliteStore::open(&path, options).unwrap();
        let value = Bytes::from(vec![7u8; 2048]);
        let rows = COMPACT_CHUNK * 2 + 10;
        for i in 0..rows {
            store
                .create(&format!("/k/{i}"), value.clone())
                .await
                .unwrap();
            store.delete(&format!("/k/{i}"), None).await.unwrap();
        }
        let current = store.current_revision().await.unwrap();
        store.compact(current - 5).await.unwrap();
        // The chunks run on the writer after the answer; a write after them
        // is answered only once they are committed.
        for _ in 0..5 {
            store.create("/after", Bytes::new()).await.unwrap();
            store.delete("/after", None).await.unwrap();
        }
        store.close().unwrap();
        let conn = Connection::open(&path).unwrap();
        let (count, min): (i64, i64) = conn
            .query_row("SELECT count(*), min(rev) FROM log", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!((count, min), (15, current - 4));
        let free: i64 = conn
            .pragma_query_value(None, "freelist_count", |r| r.get(0))
            .unwrap();
        assert!(free < VACUUM_THRESHOLD_PAGES, "freelist_count {free}");
    }

    #[tokio::test]
    async fn in_use_while_a_store_has_the_file_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.db");
        let missing = SqliteStore::in_use(&path).unwrap_err();
        assert!(missing.to_string().contains("state.db"), "{missing}");
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        // Idle after a write, and with a pooled reader open.
        store.create("/a", Bytes::from_static(b"x")).await.unwrap();
        store.list("/").await.unwrap();
        assert!(SqliteStore::in_use(&path).unwrap());
        // Asking did not disturb the store.
        store.create("/b", Bytes::from_static(b"y")).await.unwrap();
        store.close().unwrap();
        assert!(!SqliteStore::in_use(&path).unwrap());
        // Asking leaves the file usable.
        let store = SqliteStore::open(&path, SqliteOptions::default()).unwrap();
        assert_eq!(store.list("/").await.unwrap().0.len(), 2);
    }
}
