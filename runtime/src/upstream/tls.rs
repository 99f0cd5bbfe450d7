//! TLS to upstreams with rustls: which certificate authorities to trust, the client certificate
//! for mutual TLS, the server name to ask for and verify, and ALPN `h2`.
//!
//! Certificates and keys are read from files when the upstream is built. Their contents never
//! reach a message or a `Debug` output: errors name the file and what is wrong with it.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

/// How an upstream reached over `https://` is trusted and how the gateway proves itself to it.
///
/// ```no_run
/// let tls = protogate::UpstreamTls::new()
///     .ca_file("/etc/protogate/upstream-ca.pem")
///     .client_identity("/etc/protogate/client.pem", "/etc/protogate/client.key")
///     .server_name("orders.internal");
/// let upstream = protogate::Upstream::builder("orders")
///     .endpoint("https://10.0.0.7:8443")
///     .tls(tls)
///     .build()?;
/// # Ok::<(), protogate::UpstreamError>(())
/// ```
#[derive(Clone, Default)]
pub struct UpstreamTls {
    ca_files: Vec<PathBuf>,
    system_roots: Option<bool>,
    identity: Option<(PathBuf, PathBuf)>,
    server_name: Option<String>,
}

impl fmt::Debug for UpstreamTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Paths only: the files' contents are secrets.
        f.debug_struct("UpstreamTls")
            .field("ca_files", &self.ca_files)
            .field("system_roots", &self.uses_system_roots())
            .field(
                "client_certificate",
                &self.identity.as_ref().map(|(certificate, _)| certificate),
            )
            .field("server_name", &self.server_name)
            .finish()
    }
}

impl UpstreamTls {
    /// Trusts the system's certificate authorities, presents no client certificate, and
    /// verifies the name of each endpoint's URL.
    pub fn new() -> Self {
        UpstreamTls::default()
    }

    /// Trusts the certificate authorities in the PEM file at `path` (repeatable). Giving one
    /// stops trusting the system's authorities unless [`UpstreamTls::system_roots`] says so.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Whether the system's certificate authorities are trusted too (by default, only when no
    /// CA file is given).
    pub fn system_roots(mut self, trust: bool) -> Self {
        self.system_roots = Some(trust);
        self
    }

    /// Presents the certificate chain in the PEM file `certificate` with the private key in the
    /// PEM file `key`: mutual TLS.
    pub fn client_identity(
        mut self,
        certificate: impl Into<PathBuf>,
        key: impl Into<PathBuf>,
    ) -> Self {
        self.identity = Some((certificate.into(), key.into()));
        self
    }

    /// The server name sent in SNI and checked against the upstream's certificate, instead of
    /// the host of each endpoint's URL: for endpoints given by IP address, or a certificate
    /// issued for another name.
    pub fn server_name(mut self, name: impl Into<String>) -> Self {
        self.server_name = Some(name.into());
        self
    }

    fn uses_system_roots(&self) -> bool {
        self.system_roots.unwrap_or(self.ca_files.is_empty())
    }

    /// Reads the files and builds the client configuration.
    pub(crate) fn load(&self) -> Result<Connector, UpstreamTlsError> {
        let mut config = self.client_config()?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        let server_name = self
            .server_name
            .as_deref()
            .map(|name| {
                ServerName::try_from(name.to_owned()).map_err(|_| UpstreamTlsError::BadServerName {
                    name: name.to_owned(),
                })
            })
            .transpose()?;
        Ok(Connector {
            inner: tokio_rustls::TlsConnector::from(Arc::new(config)),
            server_name,
        })
    }

    /// The rustls client configuration these settings make (trust and client identity; no
    /// ALPN, no server name override): the upstreams' and, for an HTTPS client, the auth
    /// layer's key set fetches.
    pub(crate) fn client_config(&self) -> Result<rustls::ClientConfig, UpstreamTlsError> {
        let mut roots = rustls::RootCertStore::empty();
        if self.uses_system_roots() {
            let found = rustls_native_certs::load_native_certs();
            let (added, _) = roots.add_parsable_certificates(found.certs);
            if added == 0 && self.ca_files.is_empty() {
                return Err(UpstreamTlsError::NoSystemRoots {
                    errors: found.errors.iter().map(ToString::to_string).collect(),
                });
            }
        }
        for path in &self.ca_files {
            let certificates = read_certificates(path)?;
            for certificate in certificates {
                roots
                    .add(certificate)
                    .map_err(|source| UpstreamTlsError::BadCertificate {
                        path: path.clone(),
                        reason: source.to_string(),
                    })?;
            }
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| UpstreamTlsError::Config(e.to_string()))?
            .with_root_certificates(roots);
        let config = match &self.identity {
            None => builder.with_no_client_auth(),
            Some((certificate, key)) => {
                let chain = read_certificates(certificate)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|source| {
                    UpstreamTlsError::BadKey {
                        path: key.clone(),
                        reason: pem_reason(&source),
                    }
                })?;
                builder
                    .with_client_auth_cert(chain, key)
                    .map_err(|source| UpstreamTlsError::BadKey {
                        path: certificate.clone(),
                        reason: source.to_string(),
                    })?
            }
        };
        Ok(config)
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, UpstreamTlsError> {
    let bad = |reason: String| UpstreamTlsError::BadCertificate {
        path: path.to_owned(),
        reason,
    };
    let certificates = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(pem_reason(&e)))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(pem_reason(&e)))?;
    if certificates.is_empty() {
        return Err(bad("no PEM certificate in it".to_owned()));
    }
    Ok(certificates)
}

/// What went wrong reading a PEM file, in words that never quote its contents.
fn pem_reason(error: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error;
    match error {
        Error::Io(io) => io.to_string(),
        Error::NoItemsFound => "no PEM item of the expected kind in it".to_owned(),
        Error::MissingSectionEnd { .. } | Error::IllegalSectionStart { .. } => {
            "a PEM section is not closed properly".to_owned()
        }
        Error::Base64Decode(_) => "a PEM section is not valid base64".to_owned(),
        _ => "not a valid PEM file".to_owned(),
    }
}

/// A loaded TLS configuration, shared by every connection of an upstream.
#[derive(Clone)]
pub(crate) struct Connector {
    inner: tokio_rustls::TlsConnector,
    server_name: Option<ServerName<'static>>,
}

impl fmt::Debug for Connector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connector")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// Shakes hands over `io` with the server named `host` (or the configured override), and
    /// checks that it agreed to speak HTTP/2.
    pub(crate) async fn connect<IO>(
        &self,
        host: &str,
        io: IO,
    ) -> std::io::Result<tokio_rustls::client::TlsStream<IO>>
    where
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let name = match &self.server_name {
            Some(name) => name.clone(),
            None => ServerName::try_from(host.to_owned()).map_err(|_| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidInput,
                    format!("`{host}` is not a valid TLS server name"),
                )
            })?,
        };
        let stream = self.inner.connect(name, io).await?;
        match stream.get_ref().1.alpn_protocol() {
            // A server that ignores ALPN may still speak HTTP/2: let the handshake tell.
            None | Some(b"h2") => Ok(stream),
            Some(other) => Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "the upstream chose ALPN protocol {:?} instead of h2",
                    String::from_utf8_lossy(other)
                ),
            )),
        }
    }
}

/// Why an upstream's TLS settings cannot be loaded.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamTlsError {
    /// A certificate file that cannot be read or holds no valid certificate.
    #[error("TLS certificate file {}: {reason}", path.display())]
    BadCertificate {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// A private key file that cannot be read, holds no key, or does not match its certificate.
    #[error("TLS private key {}: {reason}", path.display())]
    BadKey {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The system trusts no certificate authority the gateway could read.
    #[error("no system certificate authority could be loaded ({}); give a CA file", errors.join("; "))]
    NoSystemRoots {
        /// What failed while looking for them.
        errors: Vec<String>,
    },
    /// A server name override that is neither a DNS name nor an IP address.
    #[error("`{name}` is not a valid TLS server name")]
    BadServerName {
        /// The name given.
        name: String,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Config(String),
}
