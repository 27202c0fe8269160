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
    let ca_crt = dir.join("server-ca.crt");
    let ca_key = dir.join("server-ca.key");
    let (ca_pem, ca_key_pair) = if ca_crt.exists() && ca_key.exists() {
        let pem = std::fs::read_to_string(&ca_crt).map_err(io_err(&ca_crt))?;
        let key_pem = std::fs::read_to_string(&ca_key).map_err(io_err(&ca_key))?;
        (pem, KeyPair::from_pem(&key_pem)?)
    } else {
        let key = KeyPair::generate()?;
        let cert = ca_params().self_signed(&key)?;
        let pem = cert.pem();
        write_private(&ca_key, key.serialize_pem().as_bytes()).map_err(io_err(&ca_key))?;
        write_private(&ca_crt, pem.as_bytes()).map_err(io_err(&ca_crt))?;
        (pem, key)
    };
    let issuer = Issuer::new(ca_params(), &ca_key_pair);

    let mut params = CertificateParams::default();
    params
        .distinguished_name
        .push(DnType::CommonName, "kube-apiserver");
    params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
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
    let serving_key = KeyPair::generate()?;
    let serving = params.signed_by(&serving_key, &issuer)?;
    let crt_path = dir.join("serving-kube-apiserver.crt");
    let key_path = dir.join("serving-kube-apiserver.key");
    write_private(&crt_path, format!("{}{}", serving.pem(), ca_pem).as_bytes())
        .map_err(io_err(&crt_path))?;
    write_private(&key_path, serving_key.serialize_pem().as_bytes()).map_err(io_err(&key_path))?;

    let certs = vec![serving.der().clone()];
    let key = rustls::pki_types::PrivateKeyDer::try_from(serving_key.serialize_der())
        .map_err(|e| TlsError::Rustls(rustls::Error::General(e.to_string())))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Pki {
        ca_pem,
        server_config: Arc::new(config),
    })
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
