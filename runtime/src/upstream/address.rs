//! Where an upstream's endpoints are: its URLs parsed into what connecting needs, and the peers
//! (one socket address each) they stand for.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use http::uri::Authority;

use super::UpstreamUrlError;

/// One URL of an upstream: `http://host:port`, `https://host:port` or `unix:///path`.
#[derive(Clone, Debug)]
pub(crate) struct Address {
    /// How the URL was written, for messages.
    pub url: String,
    pub kind: Kind,
    /// The `:authority` of requests sent to it (and, over TLS, the server name it must prove).
    pub authority: Authority,
}

#[derive(Clone, Debug)]
pub(crate) enum Kind {
    /// A host and port over TCP, cleartext or TLS.
    Tcp { host: Host, port: u16, tls: bool },
    /// A Unix domain socket.
    Unix { path: PathBuf },
}

/// The host of a TCP address: an IP literal is one peer; a name stands for whatever its
/// addresses are, resolved again from time to time.
#[derive(Clone, Debug)]
pub(crate) enum Host {
    Ip(IpAddr),
    Name(String),
}

impl Address {
    pub(crate) fn parse(url: &str) -> Result<Address, UpstreamUrlError> {
        if let Some(rest) = url.strip_prefix("unix:") {
            // `unix:///run/svc.sock` and `unix:/run/svc.sock` are absolute, `unix:svc.sock`
            // relative to the working directory: gRPC's own naming.
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                return Err(UpstreamUrlError::MissingHost {
                    url: url.to_owned(),
                });
            }
            return Ok(Address {
                url: url.to_owned(),
                kind: Kind::Unix {
                    path: PathBuf::from(path),
                },
                authority: Authority::from_static("localhost"),
            });
        }
        let uri: http::Uri = url.parse().map_err(|source| UpstreamUrlError::Invalid {
            url: url.to_owned(),
            source,
        })?;
        let unsupported = || UpstreamUrlError::UnsupportedScheme {
            url: url.to_owned(),
        };
        let tls = match uri.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err(unsupported()),
        };
        let authority = uri
            .authority()
            .cloned()
            .ok_or_else(|| UpstreamUrlError::MissingHost {
                url: url.to_owned(),
            })?;
        if uri.path_and_query().is_some_and(|p| p.as_str() != "/") {
            return Err(UpstreamUrlError::HasPath {
                url: url.to_owned(),
            });
        }
        let bare = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let host = match bare.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(bare.to_owned()),
        };
        let port = authority.port_u16().unwrap_or(if tls { 443 } else { 80 });
        Ok(Address {
            url: url.to_owned(),
            kind: Kind::Tcp { host, port, tls },
            authority,
        })
    }

    /// Whether requests to it go over TLS.
    pub(crate) fn tls(&self) -> bool {
        matches!(self.kind, Kind::Tcp { tls: true, .. })
    }

    /// The name to resolve, when its host is one.
    pub(crate) fn name(&self) -> Option<(&str, u16)> {
        match &self.kind {
            Kind::Tcp {
                host: Host::Name(name),
                port,
                ..
            } => Some((name, *port)),
            _ => None,
        }
    }

    /// The peer it is when it needs no resolving: an IP literal or a socket path.
    pub(crate) fn fixed_peer(&self) -> Option<Peer> {
        match &self.kind {
            Kind::Tcp {
                host: Host::Ip(ip),
                port,
                tls,
            } => Some(self.peer(PeerAddr::Tcp(SocketAddr::new(*ip, *port)), *tls)),
            Kind::Tcp {
                host: Host::Name(_),
                ..
            } => None,
            Kind::Unix { path } => Some(self.peer(PeerAddr::Unix(path.clone()), false)),
        }
    }

    /// The peer at `socket`, one of the addresses its name resolved to.
    pub(crate) fn resolved_peer(&self, socket: SocketAddr) -> Peer {
        self.peer(PeerAddr::Tcp(socket), self.tls())
    }

    fn peer(&self, address: PeerAddr, tls: bool) -> Peer {
        Peer {
            address,
            authority: self.authority.clone(),
            tls,
        }
    }
}

/// The socket of one endpoint.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PeerAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

impl fmt::Display for PeerAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PeerAddr::Tcp(socket) => socket.fmt(f),
            PeerAddr::Unix(path) => write!(f, "unix:{}", path.display()),
        }
    }
}

/// One endpoint: a socket, and how requests to it are addressed and secured.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) struct Peer {
    pub address: PeerAddr,
    pub authority: Authority,
    pub tls: bool,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.address {
            PeerAddr::Tcp(socket) if socket.to_string() != self.authority.as_str() => {
                write!(f, "{} ({socket})", self.authority)
            }
            address => address.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_into_hosts_ports_and_transports() {
        let address = Address::parse("http://[::1]:50051").expect("IPv6 literal");
        let peer = address.fixed_peer().expect("no resolving");
        assert_eq!(peer.address, PeerAddr::Tcp("[::1]:50051".parse().unwrap()));
        assert_eq!(peer.authority.as_str(), "[::1]:50051");
        assert!(!peer.tls);

        let address = Address::parse("https://backend.internal").expect("default port");
        assert_eq!(address.name(), Some(("backend.internal", 443)));
        assert!(address.tls());
        assert!(address.fixed_peer().is_none());
        let peer = address.resolved_peer("10.0.0.7:443".parse().unwrap());
        assert!(peer.tls);
        assert_eq!(peer.to_string(), "backend.internal (10.0.0.7:443)");

        assert_eq!(
            Address::parse("http://backend.internal").unwrap().name(),
            Some(("backend.internal", 80))
        );
        assert!(Address::parse("http://backend:1/").is_ok());

        for (url, path) in [
            ("unix:///run/svc.sock", "/run/svc.sock"),
            ("unix:/run/svc.sock", "/run/svc.sock"),
            ("unix:svc.sock", "svc.sock"),
        ] {
            let peer = Address::parse(url).unwrap().fixed_peer().unwrap();
            assert_eq!(peer.address, PeerAddr::Unix(PathBuf::from(path)), "{url}");
            assert_eq!(peer.authority.as_str(), "localhost");
        }
    }

    #[test]
    fn urls_that_cannot_name_an_endpoint_are_refused() {
        assert!(matches!(
            Address::parse("ftp://backend:21"),
            Err(UpstreamUrlError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Address::parse("backend:443"),
            Err(UpstreamUrlError::UnsupportedScheme { .. })
        ));
        assert!(matches!(
            Address::parse("http://backend:1/prefix"),
            Err(UpstreamUrlError::HasPath { .. })
        ));
        assert!(matches!(
            Address::parse("http://bad host"),
            Err(UpstreamUrlError::Invalid { .. })
        ));
        assert!(matches!(
            Address::parse("unix://"),
            Err(UpstreamUrlError::MissingHost { .. })
        ));
    }
}
