//! Certificates for TLS tests: a throwaway CA that issues server certificates
//! for `localhost`/`127.0.0.1` as PEM files, and client configurations that
//! trust only that CA (wss://, https://, and the raw handshake that shows
//! which certificate a server presents).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, SerialNumber,
};
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// A test certificate authority.
pub struct TestCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A server certificate issued by a [`TestCa`].
pub struct Issued {
    /// The certificate, DER (what a client sees in the handshake).
    pub der: CertificateDer<'static>,
    /// The certificate, PEM.
    pub cert_pem: String,
    /// Its private key, PEM (PKCS#8).
    pub key_pem: String,
}

impl TestCa {
    /// A new CA with a fresh key.
    pub fn new() -> anyhow::Result<TestCa> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Herald test CA");
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate()?)?;
        Ok(TestCa { issuer })
    }

    /// A server certificate for `localhost` and `127.0.0.1` with common name
    /// `name` and serial number `serial`.
    pub fn issue(&self, name: &str, serial: u64) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(vec!["localhost".into(), "127.0.0.1".into()])?;
        params.distinguished_name.push(DnType::CommonName, name);
        params.serial_number = Some(SerialNumber::from(serial));
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &*self.issuer)?;
        Ok(Issued {
            der: cert.der().clone(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// The CA certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// A client configuration that trusts this CA alone (ALPN `http/1.1`).
    pub fn client_config(&self) -> Arc<ClientConfig> {
        let mut roots = RootCertStore::empty();
        roots.add(self.issuer.der().clone()).expect("a valid CA");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Arc::new(config)
    }

    /// An HTTP client that trusts this CA alone.
    pub fn http_client(&self) -> anyhow::Result<reqwest::Client> {
        let ca = reqwest::Certificate::from_pem(self.pem().as_bytes())?;
        Ok(reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(ca)
            .build()?)
    }

    /// Completes a TLS handshake with `addr` (as `localhost`) and returns
    /// the certificate the server presented, and the ALPN protocol agreed.
    pub async fn presented(
        &self,
        addr: &str,
    ) -> anyhow::Result<(CertificateDer<'static>, Option<Vec<u8>>)> {
        let tcp = TcpStream::connect(addr).await?;
        let name = ServerName::try_from("localhost")?;
        let tls = TlsConnector::from(self.client_config())
            .connect(name, tcp)
            .await?;
        let (_, connection) = tls.get_ref();
        let cert = connection
            .peer_certificates()
            .and_then(|c| c.first())
            .context("no certificate presented")?
            .clone();
        Ok((cert, connection.alpn_protocol().map(<[u8]>::to_vec)))
    }
}

impl Issued {
    /// Writes the certificate and key to `cert.pem` and `key.pem` in `dir`
    /// (replacing what is there); returns their paths.
    pub fn write_to(&self, dir: &Path) -> anyhow::Result<(PathBuf, PathBuf)> {
        let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
        std::fs::write(&cert, &self.cert_pem)?;
        std::fs::write(&key, &self.key_pem)?;
        Ok((cert, key))
    }
}
