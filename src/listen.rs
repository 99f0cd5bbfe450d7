//! The stock gateway's listeners: cleartext (HTTP/1.1 and HTTP/2 with prior knowledge on one
//! port) or TLS (rustls; ALPN `h2` and `http/1.1`), whose certificate and key files are read
//! again when they change, without a restart.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// How often the certificate files are looked at for a change.
const POLL: Duration = Duration::from_secs(1);

/// A listener's TLS: the certificate it presents, kept in step with its files.
#[derive(Clone)]
pub struct Tls {
    acceptor: tokio_rustls::TlsAcceptor,
    certificate: Arc<Reloading>,
}

impl fmt::Debug for Tls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tls")
            .field("cert", &self.certificate.cert)
            .finish_non_exhaustive()
    }
}

impl Tls {
    /// TLS with the PEM certificate chain at `cert` and the private key at `key`; fails naming
    /// the file that cannot be used (never quoting it).
    pub fn load(cert: &Path, key: &Path) -> Result<Tls, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let current = certified_key(cert, key, &provider)?;
        let certificate = Arc::new(Reloading {
            cert: cert.to_owned(),
            key: key.to_owned(),
            provider: Arc::clone(&provider),
            current: RwLock::new(current),
            files: RwLock::new(read_both(cert, key)),
        });
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_no_client_auth()
            .with_cert_resolver(Arc::clone(&certificate) as Arc<dyn ResolvesServerCert>);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Tls {
            acceptor: tokio_rustls::TlsAcceptor::from(Arc::new(config)),
            certificate,
        })
    }

    /// Shakes hands with a client.
    pub fn acceptor(&self) -> &tokio_rustls::TlsAcceptor {
        &self.acceptor
    }

    /// Reads the files again whenever they change, until the process ends; a pair that cannot
    /// be used is logged and the previous certificate stays.
    pub async fn watch(self) {
        loop {
            tokio::time::sleep(POLL).await;
            self.certificate.reload_if_changed();
        }
    }
}

/// A certificate resolver whose certificate is replaced when its files change.
struct Reloading {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<rustls::crypto::CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
    /// The files' contents when last read.
    files: RwLock<Option<(Vec<u8>, Vec<u8>)>>,
}

impl fmt::Debug for Reloading {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reloading")
            .field("cert", &self.cert)
            .finish_non_exhaustive()
    }
}

impl ResolvesServerCert for Reloading {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(
            &self.current.read().unwrap_or_else(|e| e.into_inner()),
        ))
    }
}

impl Reloading {
    fn reload_if_changed(&self) {
        let now = read_both(&self.cert, &self.key);
        let mut files = self.files.write().unwrap_or_else(|e| e.into_inner());
        if now.is_none() || *files == now {
            return;
        }
        *files = now;
        match certified_key(&self.cert, &self.key, &self.provider) {
            Ok(key) => {
                *self.current.write().unwrap_or_else(|e| e.into_inner()) = key;
                tracing::info!(cert = %self.cert.display(), "TLS certificate reloaded");
            }
            Err(error) => {
                tracing::error!(%error, "TLS certificate not reloaded: the previous one stays");
            }
        }
    }
}

fn read_both(cert: &Path, key: &Path) -> Option<(Vec<u8>, Vec<u8>)> {
    Some((std::fs::read(cert).ok()?, std::fs::read(key).ok()?))
}

fn certified_key(
    cert: &Path,
    key: &Path,
    provider: &rustls::crypto::CryptoProvider,
) -> Result<Arc<CertifiedKey>, String> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|_| {
            format!(
                "TLS certificate {}: not a readable PEM certificate chain",
                cert.display()
            )
        })?;
    if chain.is_empty() {
        return Err(format!(
            "TLS certificate {}: no certificate in it",
            cert.display()
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|_| {
        format!(
            "TLS private key {}: not a readable PEM private key",
            key.display()
        )
    })?;
    let signing = provider
        .key_provider
        .load_private_key(key)
        .map_err(|e| format!("TLS private key: {e}"))?;
    let certified = CertifiedKey::new(chain, signing);
    certified
        .keys_match()
        .map_err(|e| format!("TLS certificate {} and its key: {e}", cert.display()))?;
    Ok(Arc::new(certified))
}
