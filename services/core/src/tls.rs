//! TLS for a listener: the `cert_file`/`key_file` settings, the certificate
//! they hold (loaded at start, swapped on [`Certificate::reload`]: new
//! handshakes use the new one, established connections keep theirs) and the
//! acceptor built on it (rustls, ring, ALPN `http/1.1` only). It does no IO
//! on sockets; listeners run the acceptor.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use serde::Deserialize;
use tokio_rustls::TlsAcceptor;

pub use tokio_rustls::server::TlsStream;

/// A listener's TLS settings: both files, or neither (plain TCP).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// PEM certificate chain, the server's certificate first.
    pub cert_file: Option<PathBuf>,
    /// PEM private key (PKCS#8, PKCS#1 or SEC1) of the first certificate.
    pub key_file: Option<PathBuf>,
}

/// Why a certificate could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// One file of the pair is set without the other.
    #[error("cert_file and key_file must be set together")]
    Incomplete,
    /// A file is missing, unreadable or not PEM.
    #[error("{path}: {reason}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// The certificate file holds no certificate.
    #[error("{path}: no certificate in the file")]
    NoCertificate {
        /// The file.
        path: PathBuf,
    },
    /// The key is unusable or does not belong to the certificate.
    #[error("{path}: {reason}")]
    BadKey {
        /// The key file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
}

impl Config {
    /// Whether TLS is configured (an error when only one file is set).
    pub fn is_enabled(&self) -> Result<bool, TlsError> {
        match (&self.cert_file, &self.key_file) {
            (Some(_), Some(_)) => Ok(true),
            (None, None) => Ok(false),
            _ => Err(TlsError::Incomplete),
        }
    }
}

/// A listener's current certificate and the files it comes from.
#[derive(Debug)]
pub struct Certificate {
    cert_file: PathBuf,
    key_file: PathBuf,
    current: RwLock<Arc<CertifiedKey>>,
}

impl Certificate {
    /// Loads the configured pair; `None` when TLS is not configured.
    pub fn load(config: &Config) -> Result<Option<Arc<Certificate>>, TlsError> {
        if !config.is_enabled()? {
            return Ok(None);
        }
        let (Some(cert_file), Some(key_file)) = (&config.cert_file, &config.key_file) else {
            return Ok(None);
        };
        let key = read_pair(cert_file, key_file)?;
        Ok(Some(Arc::new(Certificate {
            cert_file: cert_file.clone(),
            key_file: key_file.clone(),
            current: RwLock::new(Arc::new(key)),
        })))
    }

    /// Reads the files again; on success new handshakes use what they hold,
    /// on failure the certificate in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let key = read_pair(&self.cert_file, &self.key_file)?;
        *self.current.write().expect("poisoned") = Arc::new(key);
        Ok(())
    }

    /// The certificate file.
    pub fn cert_file(&self) -> &Path {
        &self.cert_file
    }

    /// The DER of the server certificate in use (the first of the chain).
    pub fn end_entity(&self) -> CertificateDer<'static> {
        self.current.read().expect("poisoned").cert[0].clone()
    }

    /// An acceptor that presents whatever certificate is current at each handshake.
    pub fn acceptor(self: &Arc<Self>) -> TlsAcceptor {
        let mut config = rustls::ServerConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(self.clone())));
        // Herald speaks HTTP/1.1 only (WebSocket upgrades need it).
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        TlsAcceptor::from(Arc::new(config))
    }
}

#[derive(Debug)]
struct Resolver(Arc<Certificate>);

impl ResolvesServerCert for Resolver {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.current.read().expect("poisoned").clone())
    }
}

fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn read_pair(cert_file: &Path, key_file: &Path) -> Result<CertifiedKey, TlsError> {
    let unreadable = |path: &Path, e: rustls::pki_types::pem::Error| TlsError::Unreadable {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    let chain = CertificateDer::pem_file_iter(cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| unreadable(cert_file, e))?;
    if chain.is_empty() {
        return Err(TlsError::NoCertificate {
            path: cert_file.to_owned(),
        });
    }
    let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| unreadable(key_file, e))?;
    CertifiedKey::from_der(chain, key, &provider()).map_err(|e| TlsError::BadKey {
        path: key_file.to_owned(),
        reason: e.to_string(),
    })
}
