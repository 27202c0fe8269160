//! etcd backend, through the `etcd-client` crate.
//!
//! Keys are stored exactly as callers give them (`/registry/…`), and a
//! revision is etcd's own: an object's `mod_revision` is its
//! `resourceVersion`, so etcd tools and skiff agree on every number.
//!
//! - create: a transaction `create_revision(key) == 0 → put`.
//! - update / delete with a precondition: `create_revision(key) > 0 &&
//!   mod_revision(key) == expected → write`, else read the key to tell
//!   `NotFound` from `Conflict`. Failed transactions write nothing, so they use
//!   no revision, as in the other backends.
//! - list: a prefix range read in pages of [`LIST_PAGE`] keys, every page at
//!   the revision of the first, so the list is one consistent snapshot.
//! - watch: an etcd watch from `after + 1` with previous values (a delete
//!   event carries the last value).
//!
//! # Compacted revision
//!
//! etcd has no call that returns its compacted revision, and a remembered
//! value would be wrong when another server compacts the same etcd. So
//! [`Store::compacted_revision`] asks etcd: a read at revision `r` fails with
//! "required revision has been compacted" exactly when `r` is below the
//! compacted revision, and a binary search between the last known compacted
//! revision and the current one finds it in about log2(revisions) cheap
//! reads. [`Store::watch`] makes one such read at `after` to refuse compacted
//! history before opening the watch.
//!
//! # Differences from SQLite
//!
//! - A fresh etcd is at revision 1, not 0: the first write is revision 2.
//! - A compaction at revision 1 (the empty start) reads back as 0.

use std::path::PathBuf;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, DeleteOptions, EventType, GetOptions,
    Identity, TlsOptions, Txn, TxnOp, TxnOpResponse, WatchOptions,
};
use futures::StreamExt;

use crate::{Event, EventKind, KeyValue, Result, Revision, Store, StoreError, WatchStream};

/// How long [`EtcdStore::connect`] waits for etcd to answer.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How many keys one page of a list reads.
pub const LIST_PAGE: i64 = 1_000;

/// Largest response the client accepts (a page of big objects).
const MAX_MESSAGE: usize = 256 * 1024 * 1024;

const COMPACTED_MESSAGE: &str = "required revision has been compacted";
const FUTURE_MESSAGE: &str = "required revision is a future revision";

/// TLS settings for etcd, as PEM files (k3s' `--datastore-cafile`,
/// `--datastore-certfile` and `--datastore-keyfile`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EtcdTls {
    /// The CA that signed etcd's serving certificate; `None` trusts the
    /// system's CA bundle (see [`SYSTEM_CA_BUNDLES`]).
    pub ca: Option<PathBuf>,
    /// This client's certificate, for an etcd with `--client-cert-auth`;
    /// given together with `key`.
    pub cert: Option<PathBuf>,
    /// This client's private key; given together with `cert`.
    pub key: Option<PathBuf>,
}

impl EtcdTls {
    /// The settings for the given files, or `None` when none is given.
    pub fn from_files(
        ca: Option<PathBuf>,
        cert: Option<PathBuf>,
        key: Option<PathBuf>,
    ) -> Option<Self> {
        (ca.is_some() || cert.is_some() || key.is_some()).then_some(Self { ca, cert, key })
    }
}

/// Where the system's CA bundle is looked for when no CA file is given
/// (after `$SSL_CERT_FILE`): Debian/Ubuntu/Alpine, Fedora/RHEL, macOS/BSD.
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// The etcd endpoints of a datastore endpoint `http(s)://HOST:PORT[,…]`,
/// or `None` when it names another datastore (e.g. `sqlite://PATH`).
pub fn parse_endpoints(datastore_endpoint: &str) -> Option<Vec<String>> {
    let etcd = |e: &str| e.starts_with("http://") || e.starts_with("https://");
    let endpoints: Vec<String> = datastore_endpoint
        .split(',')
        .map(|e| e.trim().to_owned())
        .filter(|e| !e.is_empty())
        .collect();
    (!endpoints.is_empty() && endpoints.iter().all(|e| etcd(e))).then_some(endpoints)
}

/// Checks that `endpoints` and `tls` fit together: TLS files only with
/// `https://` endpoints, never a mix of `http://` and `https://`, a client
/// certificate only with its key.
fn check_tls(endpoints: &[String], tls: Option<&EtcdTls>) -> Result<()> {
    let https = endpoints
        .iter()
        .filter(|e| e.starts_with("https://"))
        .count();
    if https > 0 && https < endpoints.len() {
        return Err(StoreError::Backend(format!(
            "etcd endpoints {} mix http:// and https://",
            endpoints.join(",")
        )));
    }
    let Some(tls) = tls else { return Ok(()) };
    if https == 0 {
        return Err(StoreError::Backend(format!(
            "etcd TLS files are given but the etcd endpoint {} is plain http://; use https://",
            endpoints.join(",")
        )));
    }
    match (&tls.cert, &tls.key) {
        (Some(_), None) => Err(StoreError::Backend(
            "an etcd client certificate needs its private key (--datastore-keyfile)".to_owned(),
        )),
        (None, Some(_)) => Err(StoreError::Backend(
            "an etcd client private key needs its certificate (--datastore-certfile)".to_owned(),
        )),
        _ => Ok(()),
    }
}

/// What to check when an `https://` etcd does not answer: etcd closes the
/// connection of a client whose certificate it does not accept, which
/// reads as a closed connection, not as a certificate error.
fn tls_hint(tls: Option<&EtcdTls>) -> &'static str {
    match tls {
        None => "",
        Some(EtcdTls { cert: None, .. }) => {
            " (over TLS: if etcd runs with --client-cert-auth, it wants a client certificate: \
             give --datastore-certfile and --datastore-keyfile)"
        }
        Some(_) => {
            " (over TLS: check that etcd's --trusted-ca-file signed the client certificate, and \
             that --datastore-cafile signed etcd's certificate)"
        }
    }
}

/// The client TLS configuration: the given CA or the system's bundle, and
/// the client identity if given.
fn tls_options(tls: &EtcdTls) -> Result<TlsOptions> {
    let read = |path: &PathBuf| {
        std::fs::read(path)
            .map_err(|err| StoreError::Backend(format!("etcd TLS file {}: {err}", path.display())))
    };
    let ca = match &tls.ca {
        Some(ca) => read(ca)?,
        None => {
            let from_env = std::env::var_os("SSL_CERT_FILE").map(PathBuf::from);
            let bundle = from_env
                .into_iter()
                .chain(SYSTEM_CA_BUNDLES.iter().map(PathBuf::from))
                .find(|path| path.is_file())
                .ok_or_else(|| {
                    StoreError::Backend(format!(
                        "an https:// etcd endpoint needs a CA: give --datastore-cafile \
                         (no system CA bundle in $SSL_CERT_FILE or {})",
                        SYSTEM_CA_BUNDLES.join(", ")
                    ))
                })?;
            read(&bundle)?
        }
    };
    let mut options = TlsOptions::new().ca_certificate(Certificate::from_pem(ca));
    if let (Some(cert), Some(key)) = (&tls.cert, &tls.key) {
        options = options.identity(Identity::from_pem(read(cert)?, read(key)?));
    }
    Ok(options)
}

/// A store kept in an etcd cluster.
pub struct EtcdStore {
    client: Client,
    /// The highest compacted revision seen; compaction only moves forward.
    compacted: AtomicI64,
}

/// Whether a failed call never reached etcd: no connection could be made to
/// the member the balanced channel routed it to (that member is down). Such
/// a call is safe to send again, writes included, and the channel then
/// routes it to another member. A call that may have reached etcd is never
/// resent: a compare-and-swap sent twice could report its own write as a
/// conflict.
fn never_sent(err: &etcd_client::Error) -> bool {
    match err {
        etcd_client::Error::GRpcStatus(status) => {
            // 14: UNAVAILABLE, with the transport's connect failure as the cause.
            status.code() as i32 == 14 && status.message().contains("connect")
        }
        _ => false,
    }
}

/// Sends a call, again after a short pause while it fails without having
/// reached etcd (see [`never_sent`]), for up to about two seconds.
async fn resend<T, F, Fut>(mut call: F) -> std::result::Result<T, etcd_client::Error>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = std::result::Result<T, etcd_client::Error>>,
{
    let mut pause = Duration::from_millis(10);
    let mut waited = Duration::ZERO;
    loop {
        match call().await {
            Err(err) if never_sent(&err) && waited < Duration::from_secs(2) => {
                tokio::time::sleep(pause).await;
                waited += pause;
                pause = (pause * 2).min(Duration::from_millis(250));
            }
            other => return other,
        }
    }
}

fn backend(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend(format!("etcd: {err}"))
}

/// The first key after every key that starts with `prefix` (etcd's range
/// end); the empty prefix means every key.
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    vec![0]
}

/// The range `[start, end)` holding every key under `prefix`.
fn prefix_range(prefix: &str) -> (Vec<u8>, Vec<u8>) {
    if prefix.is_empty() {
        (vec![0], vec![0])
    } else {
        (prefix.as_bytes().to_vec(), prefix_end(prefix.as_bytes()))
    }
}

fn to_kv(kv: &etcd_client::KeyValue) -> Result<KeyValue> {
    Ok(KeyValue {
        key: kv.key_str().map_err(backend)?.to_owned(),
        value: Bytes::copy_from_slice(kv.value()),
        create_revision: kv.create_revision(),
        mod_revision: kv.mod_revision(),
    })
}

fn header_revision(header: Option<&etcd_client::ResponseHeader>) -> Result<Revision> {
    header
        .map(|h| h.revision())
        .ok_or_else(|| backend("response without a header"))
}

/// The smallest `r` in `lo..=hi` for which `ok(r)` holds, given that `ok` is
/// false below some point and true from it on, and `ok(hi)` holds.
async fn first_ok<F, Fut>(mut lo: Revision, mut hi: Revision, mut ok: F) -> Result<Revision>
where
    F: FnMut(Revision) -> Fut,
    Fut: std::future::Future<Output = Result<bool>>,
{
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if ok(mid).await? {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    Ok(lo)
}

impl EtcdStore {
    /// Connects to etcd at `endpoints` (`http://host:port`, or `https://…`
    /// with `tls`; an `https://` endpoint without `tls` trusts the system's
    /// CA bundle and sends no client certificate) and checks that it answers
    /// within [`CONNECT_TIMEOUT`]. A wrong or unreachable endpoint fails with a
    /// [`StoreError::Backend`] that names it; so do TLS files that are missing,
    /// given with `http://` endpoints, or a certificate without its key.
    pub async fn connect(endpoints: &[String], tls: Option<&EtcdTls>) -> Result<Self> {
        check_tls(endpoints, tls)?;
        let mut options = ConnectOptions::new()
            .with_connect_timeout(CONNECT_TIMEOUT)
            .with_keep_alive(Duration::from_secs(10), Duration::from_secs(5));
        let system = EtcdTls::default();
        let tls = tls.or(endpoints
            .iter()
            .any(|e| e.starts_with("https://"))
            .then_some(&system));
        if let Some(tls) = tls {
            options = options.with_tls(tls_options(tls)?);
        }
        let where_ = endpoints.join(",");
        let hint = tls_hint(tls);
        let unreachable = |err: String| {
            StoreError::Backend(format!("etcd at {where_} is unreachable: {err}{hint}"))
        };
        let connect = async {
            let client = Client::connect(endpoints, Some(options))
                .await
                .map_err(|err| unreachable(err.to_string()))?;
            let store = Self {
                client,
                compacted: AtomicI64::new(0),
            };
            store.current_revision().await.map_err(|err| match err {
                StoreError::Backend(message) => unreachable(message),
                other => unreachable(other.to_string()),
            })?;
            Ok(store)
        };
        tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| unreachable(format!("no answer within {CONNECT_TIMEOUT:?}")))?
    }

    fn kv(&self) -> etcd_client::KvClient {
        self.client
            .kv_client()
            .max_decoding_message_size(MAX_MESSAGE)
    }

    /// Whether a read at `revision` still works, i.e. `revision` is not
    /// below the compacted revision.
    async fn readable_at(&self, revision: Revision) -> Result<bool> {
        let options = GetOptions::new().with_revision(revision).with_count_only();
        match resend(|| {
            let (mut kv, options) = (self.kv(), options.clone());
            async move { kv.get(vec![0], Some(options)).await }
        })
        .await
        {
            Ok(_) => Ok(true),
            Err(err) if err.to_string().contains(COMPACTED_MESSAGE) => Ok(false),
            Err(err) if err.to_string().contains(FUTURE_MESSAGE) => Ok(true),
            Err(err) => Err(backend(err)),
        }
    }

    /// The key's current value from a failed transaction's read, if it exists.
    fn current_of(responses: Vec<TxnOpResponse>) -> Option<KeyValue> {
        responses.into_iter().find_map(|response| match response {
            TxnOpResponse::Get(get) => get.kvs().first().and_then(|kv| to_kv(kv).ok()),
            _ => None,
        })
    }

    /// A transaction that writes `then` if the key exists with `expected`
    /// as its mod revision (any revision when `None`), else reads the key;
    /// maps a failed comparison to `NotFound` or `Conflict`.
    async fn guarded(
        &self,
        key: &str,
        expected: Option<Revision>,
        then: TxnOp,
    ) -> Result<etcd_client::TxnResponse> {
        let mut compares = vec![Compare::create_revision(key, CompareOp::Greater, 0)];
        if let Some(expected) = expected {
            compares.push(Compare::mod_revision(key, CompareOp::Equal, expected));
        }
        let txn = Txn::new()
            .when(compares)
            .and_then([then])
            .or_else([TxnOp::get(key, None)]);
        let response = resend(|| {
            let (mut kv, txn) = (self.kv(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(backend)?;
        if response.succeeded() {
            return Ok(response);
        }
        match Self::current_of(response.op_responses()) {
            None => Err(StoreError::NotFound {
                key: key.to_owned(),
            }),
            Some(current) => Err(StoreError::Conflict {
                key: key.to_owned(),
                expected: expected.unwrap_or_default(),
                current: current.mod_revision,
            }),
        }
    }
}

/// Turns one etcd watch event into a store event.
fn to_event(event: &etcd_client::Event) -> Result<Event> {
    let kv = event
        .kv()
        .ok_or_else(|| backend("watch event without a key"))?;
    match event.event_type() {
        EventType::Put => {
            let kv = to_kv(kv)?;
            let kind = if kv.create_revision == kv.mod_revision {
                EventKind::Create
            } else {
                EventKind::Update
            };
            Ok(Event { kind, kv })
        }
        EventType::Delete => {
            let prev = event.prev_kv().ok_or_else(|| {
                backend(format!(
                    "delete of {} at revision {} came without its last value",
                    String::from_utf8_lossy(kv.key()),
                    kv.mod_revision()
                ))
            })?;
            let mut last = to_kv(prev)?;
            last.mod_revision = kv.mod_revision();
            Ok(Event {
                kind: EventKind::Delete,
                kv: last,
            })
        }
    }
}

#[async_trait::async_trait]
impl Store for EtcdStore {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>> {
        let response = resend(|| {
            let mut kv = self.kv();
            async move { kv.get(key, None).await }
        })
        .await
        .map_err(backend)?;
        response.kvs().first().map(to_kv).transpose()
    }

    async fn list(&self, prefix: &str) -> Result<(Vec<KeyValue>, Revision)> {
        let (mut start, end) = prefix_range(prefix);
        let mut items = Vec::new();
        let mut revision = 0;
        loop {
            let mut options = GetOptions::new()
                .with_range(end.clone())
                .with_limit(LIST_PAGE);
            if revision > 0 {
                options = options.with_revision(revision);
            }
            let response = resend(|| {
                let (mut kv, start, options) = (self.kv(), start.clone(), options.clone());
                async move { kv.get(start, Some(options)).await }
            })
            .await
            .map_err(backend)?;
            if revision == 0 {
                revision = header_revision(response.header())?;
            }
            for kv in response.kvs() {
                items.push(to_kv(kv)?);
            }
            match response.kvs().last() {
                Some(last) if response.more() => {
                    start = last.key().to_vec();
                    start.push(0);
                }
                _ => return Ok((items, revision)),
            }
        }
    }

    async fn create(&self, key: &str, value: Bytes) -> Result<Revision> {
        let txn = Txn::new()
            .when([Compare::create_revision(key, CompareOp::Equal, 0)])
            .and_then([TxnOp::put(key, value.to_vec(), None)]);
        let response = resend(|| {
            let (mut kv, txn) = (self.kv(), txn.clone());
            async move { kv.txn(txn).await }
        })
        .await
        .map_err(backend)?;
        if !response.succeeded() {
            return Err(StoreError::AlreadyExists {
                key: key.to_owned(),
            });
        }
        header_revision(response.header())
    }

    async fn update(&self, key: &str, value: Bytes, expected: Revision) -> Result<Revision> {
        let put = TxnOp::put(key, value.to_vec(), None);
        let response = self.guarded(key, Some(expected), put).await?;
        header_revision(response.header())
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let delete = TxnOp::delete(key, Some(DeleteOptions::new().with_prev_key()));
        let response = self.guarded(key, expected, delete).await?;
        let revision = header_revision(response.header())?;
        let prev = response
            .op_responses()
            .into_iter()
            .find_map(|response| match response {
                TxnOpResponse::Delete(delete) => delete.prev_kvs().first().cloned(),
                _ => None,
            })
            // The comparison proved the key exists in this same
            // transaction, so etcd always returns its previous value.
            .ok_or_else(|| backend(format!("delete of {key} returned no previous value")))?;
        let mut last = to_kv(&prev)?;
        last.mod_revision = revision;
        Ok(last)
    }

    async fn watch(&self, prefix: &str, after: Revision) -> Result<WatchStream> {
        // A read at `after` fails exactly when history after it is gone.
        if !self.readable_at(after.max(1)).await? {
            return Err(StoreError::Compacted {
                requested: after,
                compacted: self.compacted_revision().await?,
            });
        }
        let (start, end) = prefix_range(prefix);
        let options = WatchOptions::new()
            .with_range(end)
            .with_prev_key()
            .with_start_revision(after + 1);
        let mut stream = resend(|| {
            let mut watch = self
                .client
                .watch_client()
                .max_decoding_message_size(MAX_MESSAGE);
            let (start, options) = (start.clone(), options.clone());
            async move { watch.watch(start, Some(options)).await }
        })
        .await
        .map_err(backend)?;
        // Wait until etcd has set the watch up, so errors show here.
        let created = stream
            .message()
            .await
            .map_err(backend)?
            .ok_or_else(|| backend("watch stream closed before it started"))?;
        if created.canceled() {
            return Err(cancelled(&created, after));
        }
        let pending = to_events(&created);
        let events = futures::stream::unfold(
            Some((stream, pending.into_iter())),
            move |state| async move {
                let (mut stream, mut pending) = state?;
                loop {
                    if let Some(event) = pending.next() {
                        let end = event.is_err();
                        return Some((event, (!end).then_some((stream, pending))));
                    }
                    match stream.message().await {
                        Ok(Some(response)) if response.canceled() => {
                            return Some((Err(cancelled(&response, after)), None));
                        }
                        Ok(Some(response)) => pending = to_events(&response).into_iter(),
                        Ok(None) => return None,
                        Err(err) => return Some((Err(backend(err)), None)),
                    }
                }
            },
        );
        Ok(events.boxed())
    }

    async fn current_revision(&self) -> Result<Revision> {
        let options = GetOptions::new().with_count_only();
        let response = resend(|| {
            let (mut kv, options) = (self.kv(), options.clone());
            async move { kv.get(vec![0], Some(options)).await }
        })
        .await
        .map_err(backend)?;
        header_revision(response.header())
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        match resend(|| {
            let mut kv = self.kv();
            async move { kv.compact(revision, None).await }
        })
        .await
        {
            Ok(_) => {
                self.compacted.fetch_max(revision, Ordering::Relaxed);
                Ok(())
            }
            // At or below the compacted revision: nothing to do.
            Err(err) if err.to_string().contains(COMPACTED_MESSAGE) => Ok(()),
            Err(err) => Err(backend(err)),
        }
    }

    async fn compacted_revision(&self) -> Result<Revision> {
        let known = self.compacted.load(Ordering::Relaxed).max(1);
        let current = self.current_revision().await?;
        let found = first_ok(known, current.max(known), |r| self.readable_at(r)).await?;
        self.compacted.fetch_max(found, Ordering::Relaxed);
        // Revision 1 is etcd's empty start: compacting it loses nothing.
        Ok(if found <= 1 { 0 } else { found })
    }
}

/// The error for a watch etcd cancelled.
fn cancelled(response: &etcd_client::WatchResponse, after: Revision) -> StoreError {
    if response.compact_revision() > 0 {
        StoreError::Compacted {
            requested: after,
            compacted: response.compact_revision(),
        }
    } else {
        backend(format!("watch cancelled: {}", response.cancel_reason()))
    }
}

fn to_events(response: &etcd_client::WatchResponse) -> Vec<Result<Event>> {
    response.events().iter().map(to_event).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_ranges_cover_exactly_the_prefix() {
        let cases: &[(&str, &[u8], &[u8])] = &[
            ("", b"\0", b"\0"),
            ("/registry/pods/", b"/registry/pods/", b"/registry/pods0"),
            ("/a", b"/a", b"/b"),
        ];
        for (prefix, start, end) in cases {
            assert_eq!(
                prefix_range(prefix),
                (start.to_vec(), end.to_vec()),
                "{prefix:?}"
            );
        }
        assert_eq!(prefix_end(b"a\xff"), b"b".to_vec());
        assert_eq!(prefix_end(b"\xff\xff"), vec![0]);
    }

    #[tokio::test]
    async fn first_ok_finds_the_boundary() {
        for boundary in 1..=20 {
            for lo in 1..=boundary {
                let calls = std::sync::atomic::AtomicUsize::new(0);
                let got = first_ok(lo, 20, |r| {
                    calls.fetch_add(1, Ordering::Relaxed);
                    async move { Ok(r >= boundary) }
                })
                .await
                .unwrap();
                assert_eq!(got, boundary, "lo {lo}");
                assert!(calls.load(Ordering::Relaxed) <= 5);
            }
        }
    }

    #[tokio::test]
    async fn unreachable_endpoint_fails_fast_and_names_it() {
        // A port nothing listens on: bind, note it, close.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let started = std::time::Instant::now();
        let err = EtcdStore::connect(std::slice::from_ref(&endpoint), None)
            .await
            .err()
            .expect("connect to a closed port must fail");
        assert!(started.elapsed() < CONNECT_TIMEOUT + Duration::from_secs(1));
        let message = err.to_string();
        assert!(
            message.contains(&endpoint) && message.contains("unreachable"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn missing_tls_file_is_named() {
        let tls = EtcdTls {
            ca: Some("/nonexistent/ca.crt".into()),
            cert: Some("/nonexistent/client.crt".into()),
            key: Some("/nonexistent/client.key".into()),
        };
        let err = EtcdStore::connect(&["https://127.0.0.1:2379".into()], Some(&tls))
            .await
            .err()
            .expect("missing files must fail");
        assert!(err.to_string().contains("/nonexistent/ca.crt"), "{err}");
    }

    #[test]
    fn datastore_endpoints_name_etcd_only_when_every_one_is_http() {
        let cases: &[(&str, Option<&[&str]>)] = &[
            ("http://127.0.0.1:2379", Some(&["http://127.0.0.1:2379"])),
            (
                "https://a:2379, https://b:2379",
                Some(&["https://a:2379", "https://b:2379"]),
            ),
            ("sqlite:///var/lib/state.db", None),
            ("", None),
            ("http://a:2379,sqlite:///x", None),
        ];
        for (endpoint, want) in cases {
            let want = want.map(|w| w.iter().map(|s| s.to_string()).collect::<Vec<_>>());
            assert_eq!(parse_endpoints(endpoint), want, "{endpoint:?}");
        }
    }

    #[test]
    fn tls_settings_must_fit_the_endpoints() {
        let file = |name: &str| Some(PathBuf::from(name));
        let full = EtcdTls::from_files(file("ca"), file("crt"), file("key"));
        let ca_only = EtcdTls::from_files(file("ca"), None, None);
        let cert_only = EtcdTls::from_files(None, file("crt"), None);
        let key_only = EtcdTls::from_files(file("ca"), None, file("key"));
        let https = vec!["https://a:2379".to_owned()];
        let http = vec!["http://a:2379".to_owned()];
        let mixed = vec!["https://a:2379".to_owned(), "http://b:2379".to_owned()];
        let cases: &[(&Vec<String>, &Option<EtcdTls>, Option<&str>)] = &[
            (&https, &full, None),
            (&https, &ca_only, None),
            (&https, &None, None),
            (&http, &None, None),
            (&http, &full, Some("plain http://")),
            (&https, &cert_only, Some("needs its private key")),
            (&https, &key_only, Some("needs its certificate")),
            (&mixed, &None, Some("mix http:// and https://")),
        ];
        for (endpoints, tls, want) in cases {
            let got = check_tls(endpoints, tls.as_ref())
                .err()
                .map(|e| e.to_string());
            match (want, &got) {
                (None, None) => {}
                (Some(want), Some(got)) if got.contains(want) => {}
                _ => panic!("{endpoints:?} {tls:?}: got {got:?}, want {want:?}"),
            }
        }
        assert_eq!(EtcdTls::from_files(None, None, None), None);
    }

    #[test]
    fn a_tls_failure_says_what_to_check() {
        let file = |name: &str| Some(PathBuf::from(name));
        let cases = [
            (None, ""),
            (
                EtcdTls::from_files(file("ca"), None, None),
                "--datastore-certfile",
            ),
            (
                EtcdTls::from_files(None, file("c"), file("k")),
                "--trusted-ca-file",
            ),
        ];
        for (tls, want) in cases {
            let hint = tls_hint(tls.as_ref());
            assert!(
                hint.contains(want) && hint.is_empty() == want.is_empty(),
                "{tls:?}: {hint}"
            );
        }
    }

    #[tokio::test]
    async fn https_without_a_ca_file_uses_the_system_bundle() {
        // With a system bundle, the TLS setup succeeds and the connect fails
        // only on the closed port; without one, the error asks for a CA file.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let err = EtcdStore::connect(&[format!("https://127.0.0.1:{port}")], None)
            .await
            .err()
            .expect("nothing listens there");
        let has_bundle = std::env::var_os("SSL_CERT_FILE").is_some()
            || SYSTEM_CA_BUNDLES
                .iter()
                .any(|p| std::path::Path::new(p).is_file());
        let want = if has_bundle {
            "unreachable"
        } else {
            "--datastore-cafile"
        };
        assert!(err.to_string().contains(want), "{err}");
    }
}
