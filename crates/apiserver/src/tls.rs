//! The cluster CA and the API server's serving certificate.
//!
//! The CA is made on first start and kept in the data dir (k3s' file names
//! under `server/tls/`); the serving certificate is re-signed at every start
//! so its names follow the current bind address and hostname.

use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Why the PKI could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Generating or parsing a key or certificate failed.
    #[error("certificate: {0}")]
    Cert(#[from] rcgen::Error),
    /// rustls refused the certificate or key.
    #[error("tls: {0}")]
    Rustls(#[from] rustls::Error),
}

/// The cluster's PKI as the server uses it.
pub struct Pki {
    /// The CA certificate, PEM.
    pub ca_pem: String,
    /// The server's TLS configuration.
    pub server_config: Arc<rustls::ServerConfig>,
    /// How the server reaches agents: trusts only the cluster CA and presents a
    /// client certificate the CA signed (`kube-apiserver-kubelet-client`).
    pub kubelet_client: Arc<rustls::ClientConfig>,
    ca_key: KeyPair,
}

/// What a certificate is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Usage {
    /// A TLS server (a node's kubelet endpoint).
    Server,
    /// A TLS client.
    Client,
}

impl Pki {
    /// Signs a fresh key pair with the cluster CA: `(certificate PEM, key PEM)`.
    /// `names` become subject alternative names (IP addresses or DNS names).
    pub fn issue(
        &self,
        common_name: &str,
        organization: Option<&str>,
        names: &[String],
        usage: Usage,
    ) -> Result<(String, String), TlsError> {
        let issuer = Issuer::new(ca_params(), &self.ca_key);
        let key = KeyPair::generate()?;
        let cert =
            leaf_params(common_name, organization, names, usage)?.signed_by(&key, &issuer)?;
        Ok((cert.pem(), key.serialize_pem()))
    }
}

fn leaf_params(
    common_name: &str,
    organization: Option<&str>,
    names: &[String],
    usage: Usage,
) -> Result<CertificateParams, TlsError> {
    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    if let Some(o) = organization {
        params.distinguished_name.push(DnType::OrganizationName, o);
    }
    params.extended_key_usages = vec![match usage {
        Usage::Server => ExtendedKeyUsagePurpose::ServerAuth,
        Usage::Client => ExtendedKeyUsagePurpose::ClientAuth,
    }];
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2124, 1, 1);
    for n in names {
        let san = match n.parse::<std::net::IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(n.clone().try_into()?),
        };
        if !params.subject_alt_names.contains(&san) {
            params.subject_alt_names.push(san);
        }
    }
    Ok(params)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn general(e: impl std::fmt::Display) -> TlsError {
    TlsError::Rustls(rustls::Error::General(e.to_string()))
}

fn parse_certs(pem: &str) -> Result<Vec<rustls::pki_types::CertificateDer<'static>>, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<Result<_, _>>()
        .map_err(general)?;
    if certs.is_empty() {
        return Err(general("no certificate in PEM"));
    }
    Ok(certs)
}

fn parse_key(pem: &str) -> Result<rustls::pki_types::PrivateKeyDer<'static>, TlsError> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(general)?
        .ok_or_else(|| general("no private key in PEM"))
}

fn roots(ca_pem: &str) -> Result<rustls::RootCertStore, TlsError> {
    let mut roots = rustls::RootCertStore::empty();
    for c in parse_certs(ca_pem)? {
        roots.add(c)?;
    }
    Ok(roots)
}

/// A client configuration that trusts only `ca_pem` and presents `cert_pem`/`key_pem`.
pub fn client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ClientConfig>, TlsError> {
    let config = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots(ca_pem)?)
        .with_client_auth_cert(parse_certs(cert_pem)?, parse_key(key_pem)?)?;
    Ok(Arc::new(config))
}

/// A node's kubelet endpoint: serves `cert_pem`/`key_pem` and accepts only
/// clients presenting a certificate the cluster CA (`ca_pem`) signed.
pub fn kubelet_server_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
) -> Result<Arc<rustls::ServerConfig>, TlsError> {
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        Arc::new(roots(ca_pem)?),
        provider(),
    )
    .build()
    .map_err(general)?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_client_cert_verifier(verifier)
        .with_single_cert(parse_certs(cert_pem)?, parse_key(key_pem)?)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> TlsError + '_ {
    move |source| TlsError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn ca_params() -> CertificateParams {
    let mut p = CertificateParams::default();
    p.distinguished_name
        .push(DnType::CommonName, "skiff-server-ca");
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    p.not_before = rcgen::date_time_ymd(2024, 1, 1);
    p.not_after = rcgen::date_time_ymd(2124, 1, 1);
    p
}

/// Writes a file readable only by its owner.
pub fn write_private(path: &Path, contents: &[u8]) -> io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(contents)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

/// Loads the CA from `dir` (creating it on first start) and signs a serving
/// certificate for `names` (DNS names and IP addresses).
pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Pki, TlsError> {
    let (ca_pem, ca_key_pem) = load_or_create_ca(dir)?;
    let ca_key_pair = KeyPair::from_pem(&ca_key_pem)?;
    let issuer = Issuer::new(ca_params(), &ca_key_pair);
    let serving_key = KeyPair::generate()?;
    let serving = leaf_params("kube-apiserver", None, names, Usage::Server)?
        .signed_by(&serving_key, &issuer)?;
    let crt_path = dir.join("serving-kube-apiserver.crt");
    let key_path = dir.join("serving-kube-apiserver.key");
    write_private(&crt_path, format!("{}{}", serving.pem(), ca_pem).as_bytes())
        .map_err(io_err(&crt_path))?;
    write_private(&key_path, serving_key.serialize_pem().as_bytes()).map_err(io_err(&key_path))?;

    // The identity the server shows agents when it reaches their kubelet endpoint.
    let client_key = KeyPair::generate()?;
    let client = leaf_params(
        "kube-apiserver-kubelet-client",
        Some("system:masters"),
        &[],
        Usage::Client,
    )?
    .signed_by(&client_key, &issuer)?;
    let kubelet_client = client_config(&ca_pem, &client.pem(), &client_key.serialize_pem())?;

    let certs = vec![serving.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(serving_key.serialize_der())
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Pki {
        ca_pem,
        server_config: Arc::new(config),
        kubelet_client,
        ca_key: ca_key_pair,
    })
}

/// The CA in `dir` as `(certificate PEM, key PEM)`, made and written there
/// (k3s' `server-ca.crt` / `server-ca.key`) when it is not there yet.
pub fn load_or_create_ca(dir: &Path) -> Result<(String, String), TlsError> {
    let ca_crt = dir.join("server-ca.crt");
    let ca_key = dir.join("server-ca.key");
    if ca_crt.exists() && ca_key.exists() {
        let pem = std::fs::read_to_string(&ca_crt).map_err(io_err(&ca_crt))?;
        let key_pem = std::fs::read_to_string(&ca_key).map_err(io_err(&ca_key))?;
        return Ok((pem, key_pem));
    }
    let key = KeyPair::generate()?;
    let pem = ca_params().self_signed(&key)?.pem();
    let key_pem = key.serialize_pem();
    write_ca(dir, &pem, &key_pem)?;
    Ok((pem, key_pem))
}

/// Writes the CA certificate and key into `dir` (owner-only files).
pub fn write_ca(dir: &Path, cert_pem: &str, key_pem: &str) -> Result<(), TlsError> {
    let ca_crt = dir.join("server-ca.crt");
    let ca_key = dir.join("server-ca.key");
    write_private(&ca_key, key_pem.as_bytes()).map_err(io_err(&ca_key))?;
    write_private(&ca_crt, cert_pem.as_bytes()).map_err(io_err(&ca_crt))
}

/// The hash of the CA certificate that a join token pins (k3s' `K10<sha256>::` form).
pub fn ca_hash(ca_pem: &str) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(ca_pem.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ca_is_kept_across_restarts_and_serving_cert_is_renewed() {
        let dir = tempfile::tempdir().unwrap();
        let a = load_or_create(dir.path(), &["localhost".into(), "127.0.0.1".into()]).unwrap();
        let b = load_or_create(dir.path(), &["localhost".into(), "10.0.0.1".into()]).unwrap();
        assert_eq!(a.ca_pem, b.ca_pem);
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(dir.path().join("server-ca.key"))
                .unwrap()
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600);
    }
}
