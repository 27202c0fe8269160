//! What every server of one cluster must share — the CA and the admin token —
//! kept in the datastore, sealed with the cluster token, as k3s keeps its
//! bootstrap data.
//!
//! A server reconciles its data dir with the datastore before it loads its
//! certificates:
//! - the datastore holds bootstrap data: it is opened with the token and
//!   written into the data dir (a second server joins this way, with only
//!   `--token`);
//! - it holds none: the data dir's CA and admin token (made now on a first
//!   start) are sealed and stored. Two servers starting at once race on one
//!   create; the loser takes the winner's.
//!
//! Sealing: a key from the token by PBKDF2-HMAC-SHA256 (random salt), then
//! AES-256-GCM over the JSON, the storage key as associated data. A wrong
//! token fails to open, and the server refuses to start rather than make a
//! second CA for one cluster.

use crate::StartError;
use crate::tls;
use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ring::aead;
use serde::{Deserialize, Serialize};
use skiff_store::{Store, StoreError};
use std::num::NonZeroU32;
use std::path::Path;

/// The datastore key of the bootstrap data.
pub const KEY: &str = "/bootstrap/skiff";

/// PBKDF2 rounds: the token is normally a generated 128-bit secret, so the
/// rounds only slow guessing of a hand-picked one; more would slow every start.
const ROUNDS: u32 = 10_000;

/// The secrets every server of a cluster shares.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct BootstrapData {
    /// The cluster CA certificate, PEM.
    pub ca_cert: String,
    /// The cluster CA key, PEM.
    pub ca_key: String,
    /// The admin kubeconfig's bearer token.
    pub admin_token: String,
}

/// The sealed form, as stored.
#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u32,
    kdf: String,
    rounds: u32,
    salt: String,
    cipher: String,
    nonce: String,
    data: String,
}

/// Why bootstrap data could not be opened.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum OpenError {
    /// Not the envelope this server writes.
    #[error("the bootstrap data in the datastore is not readable: {0}")]
    Malformed(String),
    /// The token does not open it.
    #[error(
        "the datastore already holds a cluster whose bootstrap data is sealed with a different token: start this server with that cluster's token (--token; a server of the cluster keeps it in DATA_DIR/token)"
    )]
    WrongToken,
}

fn key_from(secret: &str, salt: &[u8], rounds: u32) -> aead::LessSafeKey {
    let mut key = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA256,
        NonZeroU32::new(rounds.max(1)).expect("at least one round"),
        salt,
        secret.as_bytes(),
        &mut key,
    );
    aead::LessSafeKey::new(
        aead::UnboundKey::new(&aead::AES_256_GCM, &key).expect("a 32-byte AES-256 key"),
    )
}

/// Seals `data` with the cluster token's secret.
pub fn seal(secret: &str, data: &BootstrapData) -> Vec<u8> {
    let salt: [u8; 16] = rand::random();
    let nonce: [u8; 12] = rand::random();
    let mut buf = serde_json::to_vec(data).expect("plain strings serialise");
    key_from(secret, &salt, ROUNDS)
        .seal_in_place_append_tag(
            aead::Nonce::assume_unique_for_key(nonce),
            aead::Aad::from(KEY.as_bytes()),
            &mut buf,
        )
        .expect("AES-GCM seals any length this small");
    serde_json::to_vec(&Envelope {
        version: 1,
        kdf: "PBKDF2-HMAC-SHA256".into(),
        rounds: ROUNDS,
        salt: B64.encode(salt),
        cipher: "AES-256-GCM".into(),
        nonce: B64.encode(nonce),
        data: B64.encode(buf),
    })
    .expect("plain strings serialise")
}

/// Opens sealed bootstrap data with the cluster token's secret.
pub fn open(secret: &str, sealed: &[u8]) -> Result<BootstrapData, OpenError> {
    let env: Envelope =
        serde_json::from_slice(sealed).map_err(|e| OpenError::Malformed(e.to_string()))?;
    if env.version != 1 || env.kdf != "PBKDF2-HMAC-SHA256" || env.cipher != "AES-256-GCM" {
        return Err(OpenError::Malformed(format!(
            "version {} with {} and {}",
            env.version, env.kdf, env.cipher
        )));
    }
    let decode = |s: &str| {
        B64.decode(s)
            .map_err(|e| OpenError::Malformed(e.to_string()))
    };
    let (salt, nonce, mut data) = (decode(&env.salt)?, decode(&env.nonce)?, decode(&env.data)?);
    let nonce = aead::Nonce::try_assume_unique_for_key(&nonce)
        .map_err(|_| OpenError::Malformed("nonce length".into()))?;
    let plain = key_from(secret, &salt, env.rounds)
        .open_in_place(nonce, aead::Aad::from(KEY.as_bytes()), &mut data)
        .map_err(|_| OpenError::WrongToken)?;
    serde_json::from_slice(plain).map_err(|e| OpenError::Malformed(e.to_string()))
}

/// Splits a k3s-style token `K10<sha256 of the CA>::server:<secret>` into the
/// CA hash it pins and its secret; any other string is a bare secret.
pub fn parse_token(token: &str) -> (Option<String>, String) {
    match token
        .strip_prefix("K10")
        .and_then(|rest| rest.split_once("::"))
    {
        Some((hash, cred)) => (
            Some(hash.to_string()),
            cred.rsplit(':').next().unwrap_or(cred).to_string(),
        ),
        None => (None, token.to_string()),
    }
}

fn io_error(path: &Path) -> impl FnOnce(std::io::Error) -> StartError + '_ {
    move |source| StartError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes the data dir and the datastore agree on the cluster's shared
/// secrets (see the module documentation): afterwards `tls_dir` holds the
/// cluster CA and `admin_token_path` the admin token.
pub async fn reconcile(
    store: &dyn Store,
    secret: &str,
    tls_dir: &Path,
    admin_token_path: &Path,
    new_admin_token: impl Fn() -> String,
) -> Result<BootstrapData, StartError> {
    loop {
        if let Some(kv) = store.get(KEY).await? {
            let shared =
                open(secret, &kv.value).map_err(|e| StartError::Bootstrap(e.to_string()))?;
            write_local(&shared, tls_dir, admin_token_path)?;
            return Ok(shared);
        }
        let (ca_cert, ca_key) = tls::load_or_create_ca(tls_dir)?;
        let admin_token = match std::fs::read_to_string(admin_token_path) {
            Ok(s) if !s.trim().is_empty() => s.trim().to_string(),
            _ => new_admin_token(),
        };
        let local = BootstrapData {
            ca_cert,
            ca_key,
            admin_token,
        };
        match store.create(KEY, seal(secret, &local).into()).await {
            Ok(_) => {
                write_local(&local, tls_dir, admin_token_path)?;
                return Ok(local);
            }
            // Another server stored its own first: take that one.
            Err(StoreError::AlreadyExists { .. }) => continue,
            Err(e) => return Err(e.into()),
        }
    }
}

/// Writes the shared secrets into the data dir where they differ from it.
fn write_local(
    shared: &BootstrapData,
    tls_dir: &Path,
    admin_token_path: &Path,
) -> Result<(), StartError> {
    let local_ca = std::fs::read_to_string(tls_dir.join("server-ca.crt")).ok();
    let local_key = std::fs::read_to_string(tls_dir.join("server-ca.key")).ok();
    if local_ca.as_deref() != Some(shared.ca_cert.as_str())
        || local_key.as_deref() != Some(shared.ca_key.as_str())
    {
        if local_ca.is_some() {
            tracing::warn!(
                "this data dir's CA differs from the cluster's in the datastore; using the cluster's"
            );
        }
        tls::write_ca(tls_dir, &shared.ca_cert, &shared.ca_key)?;
    }
    let local_token = std::fs::read_to_string(admin_token_path).ok();
    if local_token.as_deref().map(str::trim) != Some(shared.admin_token.as_str()) {
        tls::write_private(
            admin_token_path,
            format!("{}\n", shared.admin_token).as_bytes(),
        )
        .map_err(io_error(admin_token_path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use skiff_store::MemoryStore;

    fn data() -> BootstrapData {
        BootstrapData {
            ca_cert: "-----BEGIN CERTIFICATE-----\nx\n".into(),
            ca_key: "-----BEGIN PRIVATE KEY-----\ny\n".into(),
            admin_token: "admin".into(),
        }
    }

    #[test]
    fn sealed_data_opens_with_its_token_only() {
        let sealed = seal("s3cret", &data());
        assert_eq!(open("s3cret", &sealed), Ok(data()));
        assert_eq!(open("other", &sealed), Err(OpenError::WrongToken));
        // Nothing readable in the clear.
        let text = String::from_utf8_lossy(&sealed);
        assert!(
            !text.contains("PRIVATE KEY") && !text.contains("admin"),
            "{text}"
        );
        // Each seal has its own salt and nonce.
        assert_ne!(seal("s3cret", &data()), sealed);
        // Tampering is detected.
        let mut env: serde_json::Value = serde_json::from_slice(&sealed).unwrap();
        let mut bytes = B64.decode(env["data"].as_str().unwrap()).unwrap();
        bytes[0] ^= 1;
        env["data"] = B64.encode(bytes).into();
        assert_eq!(
            open("s3cret", &serde_json::to_vec(&env).unwrap()),
            Err(OpenError::WrongToken)
        );
        assert!(matches!(
            open("s3cret", b"{}"),
            Err(OpenError::Malformed(_))
        ));
    }

    #[test]
    fn tokens_split_like_k3s() {
        assert_eq!(
            parse_token("K10abc::server:sec"),
            (Some("abc".into()), "sec".into())
        );
        assert_eq!(
            parse_token("K10abc::node:sec"),
            (Some("abc".into()), "sec".into())
        );
        assert_eq!(parse_token("plain"), (None, "plain".into()));
    }

    #[tokio::test]
    async fn a_second_server_takes_the_first_ones_ca_and_admin_token() {
        let store = MemoryStore::new();
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let first = reconcile(
            &store,
            "tok",
            &a.path().join("tls"),
            &a.path().join("admin.token"),
            || "first-admin".into(),
        )
        .await
        .unwrap();
        assert_eq!(first.admin_token, "first-admin");
        let second = reconcile(
            &store,
            "tok",
            &b.path().join("tls"),
            &b.path().join("admin.token"),
            || "second-admin".into(),
        )
        .await
        .unwrap();
        assert_eq!(second, first);
        for f in ["tls/server-ca.crt", "tls/server-ca.key", "admin.token"] {
            assert_eq!(
                std::fs::read_to_string(a.path().join(f)).unwrap(),
                std::fs::read_to_string(b.path().join(f)).unwrap(),
                "{f}"
            );
        }
        // A restart of the first changes nothing.
        let again = reconcile(
            &store,
            "tok",
            &a.path().join("tls"),
            &a.path().join("admin.token"),
            || "third".into(),
        )
        .await
        .unwrap();
        assert_eq!(again, first);
        // A server with another token is refused and its data dir left alone.
        let c = tempfile::tempdir().unwrap();
        let err = reconcile(
            &store,
            "wrong",
            &c.path().join("tls"),
            &c.path().join("admin.token"),
            || "x".into(),
        )
        .await
        .unwrap_err();
        assert!(
            err.to_string().contains("sealed with a different token"),
            "{err}"
        );
        assert!(!c.path().join("tls/server-ca.key").exists());
    }

    #[tokio::test]
    async fn an_existing_single_server_uploads_its_own_ca() {
        let store = MemoryStore::new();
        let dir = tempfile::tempdir().unwrap();
        let tls_dir = dir.path().join("tls");
        let (cert, key) = tls::load_or_create_ca(&tls_dir).unwrap();
        std::fs::write(dir.path().join("admin.token"), "kept\n").unwrap();
        let shared = reconcile(
            &store,
            "tok",
            &tls_dir,
            &dir.path().join("admin.token"),
            || "new".into(),
        )
        .await
        .unwrap();
        assert_eq!((shared.ca_cert, shared.ca_key), (cert, key));
        assert_eq!(shared.admin_token, "kept");
        let stored = store.get(KEY).await.unwrap().unwrap();
        assert_eq!(open("tok", &stored.value).unwrap().admin_token, "kept");
    }
}
