//! Who a request is counted against: its client's address (behind trusted proxies, read from
//! `X-Forwarded-For`), the principal an authentication layer established, or nobody in
//! particular (one bucket per route).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use axum::extract::ConnectInfo;

use crate::call::RouteInfo;
use crate::principal::Principal;

/// Whose requests share a bucket.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum ClientKey {
    /// The client's IP address: the peer of the connection, or, when the peer is a trusted
    /// proxy, the right-most address of `X-Forwarded-For` that is not one (see
    /// [`RateLimitBuilder::trusted_proxies`](super::RateLimitBuilder::trusted_proxies)).
    #[default]
    Ip,
    /// The principal's subject ([`Principal::of`]: an API key's name, a token's `sub`), with
    /// the scheme that established it; a request without a principal is counted by its IP
    /// address instead.
    Principal,
    /// Nobody in particular: one bucket per route (binding), shared by every client.
    Route,
}

impl ClientKey {
    /// The name used in configs and messages: `ip`, `principal`, `route`.
    pub fn name(self) -> &'static str {
        match self {
            ClientKey::Ip => "ip",
            ClientKey::Principal => "principal",
            ClientKey::Route => "route",
        }
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A network of addresses, `10.0.0.0/8` or `2001:db8::/32`; an address alone is a network of
/// one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IpNetwork {
    address: IpAddr,
    prefix: u8,
}

/// Why a network's text does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "`{text}` is not a network (write `10.0.0.0/8`, `2001:db8::/32` or one address): {problem}"
)]
pub struct NetworkError {
    text: String,
    problem: &'static str,
}

impl IpNetwork {
    /// The network of `address` with a prefix of `prefix` bits; `None` when the prefix is longer
    /// than the address.
    pub fn new(address: IpAddr, prefix: u8) -> Option<IpNetwork> {
        let bits = if address.is_ipv4() { 32 } else { 128 };
        (prefix <= bits).then_some(IpNetwork { address, prefix })
    }

    /// Whether `address` is in this network. An IPv4 address mapped into IPv6
    /// (`::ffff:10.0.0.1`) is the IPv4 address it maps.
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.address, address.to_canonical()) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                prefix_matches(&network.octets(), &address.octets(), self.prefix)
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                prefix_matches(&network.octets(), &address.octets(), self.prefix)
            }
            _ => false,
        }
    }
}

fn prefix_matches(network: &[u8], address: &[u8], prefix: u8) -> bool {
    let (whole, rest) = (usize::from(prefix / 8), prefix % 8);
    if network[..whole] != address[..whole] {
        return false;
    }
    if rest == 0 {
        return true;
    }
    let mask = 0xffu8 << (8 - rest);
    network[whole] & mask == address[whole] & mask
}

impl FromStr for IpNetwork {
    type Err = NetworkError;

    fn from_str(text: &str) -> Result<Self, NetworkError> {
        let error = |problem| NetworkError {
            text: text.to_owned(),
            problem,
        };
        let (address, prefix) = match text.trim().split_once('/') {
            Some((address, prefix)) => (
                address,
                Some(
                    prefix
                        .parse::<u8>()
                        .map_err(|_| error("the prefix length is not a number"))?,
                ),
            ),
            None => (text.trim(), None),
        };
        let address: IpAddr = address
            .parse()
            .map_err(|_| error("the address is not an IP address"))?;
        let bits = if address.is_ipv4() { 32 } else { 128 };
        IpNetwork::new(address, prefix.unwrap_or(bits))
            .ok_or_else(|| error("the prefix is longer than the address"))
    }
}

impl fmt::Display for IpNetwork {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// How much of a client's address names the client: the length of the network prefix kept
/// of an IPv4 address and of an IPv6 address. Every address of one such network is counted as
/// one client.
///
/// By default an IPv4 address is a client on its own (`/32`), and an IPv6 client is its `/64`:
/// the usual assignment to one subscriber or one host is a whole `/64`, so a client keyed by
/// its full IPv6 address could take a fresh one from its network for every request and never
/// meet its limit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientPrefixes {
    ipv4: u8,
    ipv6: u8,
}

impl ClientPrefixes {
    /// `/32` for IPv4, `/64` for IPv6.
    pub const DEFAULT: ClientPrefixes = ClientPrefixes { ipv4: 32, ipv6: 64 };

    /// Prefixes of `ipv4` and `ipv6` bits; `None` unless `1 ..= 32` and `1 ..= 128`.
    pub fn new(ipv4: u8, ipv6: u8) -> Option<ClientPrefixes> {
        ClientPrefixes::DEFAULT.with_ipv4(ipv4)?.with_ipv6(ipv6)
    }

    /// These prefixes with an IPv4 prefix of `bits`; `None` unless `1 ..= 32`.
    pub fn with_ipv4(self, bits: u8) -> Option<ClientPrefixes> {
        (1..=32)
            .contains(&bits)
            .then_some(ClientPrefixes { ipv4: bits, ..self })
    }

    /// These prefixes with an IPv6 prefix of `bits`; `None` unless `1 ..= 128`.
    pub fn with_ipv6(self, bits: u8) -> Option<ClientPrefixes> {
        (1..=128)
            .contains(&bits)
            .then_some(ClientPrefixes { ipv6: bits, ..self })
    }

    /// The IPv4 prefix length.
    pub fn ipv4(self) -> u8 {
        self.ipv4
    }

    /// The IPv6 prefix length.
    pub fn ipv6(self) -> u8 {
        self.ipv6
    }

    /// The client that `address` (already canonical: an IPv4-mapped address is IPv4) belongs
    /// to: the address alone when the prefix is the whole address, else its network, written
    /// `2001:db8:1:2::/64`.
    fn client(self, address: IpAddr) -> Client {
        match address {
            IpAddr::V4(v4) if self.ipv4 < 32 => {
                let kept = u32::from(v4) & (u32::MAX << (32 - u32::from(self.ipv4)));
                Client::Network(IpAddr::V4(kept.into()), self.ipv4)
            }
            IpAddr::V6(v6) if self.ipv6 < 128 => {
                let kept = u128::from(v6) & (u128::MAX << (128 - u32::from(self.ipv6)));
                Client::Network(IpAddr::V6(kept.into()), self.ipv6)
            }
            whole => Client::Address(whole),
        }
    }
}

/// A client under [`ClientPrefixes`], as its key writes it.
pub(crate) enum Client {
    Address(IpAddr),
    Network(IpAddr, u8),
}

impl fmt::Display for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Client::Address(address) => write!(f, "{address}"),
            Client::Network(address, prefix) => write!(f, "{address}/{prefix}"),
        }
    }
}

impl Default for ClientPrefixes {
    fn default() -> Self {
        ClientPrefixes::DEFAULT
    }
}

/// The networks whose `X-Forwarded-For` is believed.
#[derive(Clone, Debug, Default)]
pub(crate) struct TrustedProxies(pub Vec<IpNetwork>);

impl TrustedProxies {
    fn trusts(&self, address: IpAddr) -> bool {
        self.0.iter().any(|network| network.contains(address))
    }

    /// The client of a request from `peer` that carries the `X-Forwarded-For` values
    /// `forwarded` (in order): `peer` itself unless it is trusted; else, walking the list from
    /// the right, the first address that is not trusted. A list of trusted addresses only gives
    /// its left-most; an entry that is not an address stops the walk at the hop that added it
    /// (the last trusted address passed), since nothing left of it can be believed.
    pub fn client<'a>(
        &self,
        peer: IpAddr,
        forwarded: impl Iterator<Item = &'a http::HeaderValue>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.trusts(peer) {
            return peer;
        }
        let entries: Vec<&str> = forwarded
            .filter_map(|value| value.to_str().ok())
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect();
        let mut client = peer;
        for entry in entries.iter().rev() {
            let Some(address) = parse_forwarded(entry) else {
                break;
            };
            client = address;
            if !self.trusts(address) {
                break;
            }
        }
        client
    }
}

/// An `X-Forwarded-For` entry: an address, possibly with a port (`1.2.3.4:80`, `[::1]:80`).
fn parse_forwarded(entry: &str) -> Option<IpAddr> {
    entry
        .parse::<IpAddr>()
        .or_else(|_| entry.parse::<SocketAddr>().map(|socket| socket.ip()))
        .ok()
        .map(|address| address.to_canonical())
}

/// The client key of `request` under `kind`, written as text (`ip:…`, `principal:scheme:…`,
/// `route:…`) straight into the bucket's key, with no string of its own.
pub(crate) fn client_key<'r, B>(
    kind: ClientKey,
    request: &'r http::Request<B>,
    trusted: &TrustedProxies,
    prefixes: ClientPrefixes,
) -> Key<'r> {
    match kind {
        ClientKey::Principal => match Principal::of(request) {
            Some(principal) => Key::Principal(principal),
            None => ip_key(request, trusted, prefixes),
        },
        ClientKey::Ip => ip_key(request, trusted, prefixes),
        ClientKey::Route => match RouteInfo::of(request) {
            Some(route) => Key::Route(route.method, route.template.text),
            None => Key::Route(request.method().as_str(), request.uri().path()),
        },
    }
}

fn ip_key<'r, B>(
    request: &'r http::Request<B>,
    trusted: &TrustedProxies,
    prefixes: ClientPrefixes,
) -> Key<'r> {
    match request.extensions().get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => {
            let forwarded = request.headers().get_all("x-forwarded-for").iter();
            Key::Ip(prefixes.client(trusted.client(peer.ip(), forwarded)))
        }
        // Served without the peer's address: every such request is one client.
        None => Key::UnknownIp,
    }
}

/// A request's client key ([`client_key`]).
pub(crate) enum Key<'r> {
    Principal(&'r Principal),
    Ip(Client),
    UnknownIp,
    /// The route's method and template (or the request's path, unrouted).
    Route(&'r str, &'r str),
}

impl fmt::Display for Key<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Principal(principal) => {
                write!(f, "principal:{}:{}", principal.scheme, principal.subject)
            }
            Key::Ip(client) => write!(f, "ip:{client}"),
            Key::UnknownIp => f.write_str("ip:unknown"),
            Key::Route(method, template) => write!(f, "route:{method} {template}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn networks(texts: &[&str]) -> TrustedProxies {
        TrustedProxies(texts.iter().map(|t| t.parse().expect(t)).collect())
    }

    fn client(trusted: &TrustedProxies, peer: &str, forwarded: &[&str]) -> String {
        let values: Vec<http::HeaderValue> = forwarded
            .iter()
            .map(|v| http::HeaderValue::from_str(v).expect("header"))
            .collect();
        trusted
            .client(peer.parse().expect("peer"), values.iter())
            .to_string()
    }

    #[test]
    fn networks_parse_and_contain() {
        let net: IpNetwork = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let odd: IpNetwork = "192.168.0.128/25".parse().unwrap();
        assert!(odd.contains("192.168.0.200".parse().unwrap()));
        assert!(!odd.contains("192.168.0.127".parse().unwrap()));
        let v6: IpNetwork = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains("2001:db8:1::1".parse().unwrap()));
        assert!(!v6.contains("10.0.0.1".parse().unwrap()));
        let one: IpNetwork = "127.0.0.1".parse().unwrap();
        assert_eq!(one.to_string(), "127.0.0.1/32");
        let all: IpNetwork = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("8.8.8.8".parse().unwrap()));
        for bad in ["10.0.0/8", "10.0.0.0/33", "10.0.0.0/x", "::/129", "proxy"] {
            let error = bad.parse::<IpNetwork>().expect_err(bad).to_string();
            assert!(error.contains(bad), "{error}");
        }
    }

    #[test]
    fn an_untrusted_peer_is_the_client_whatever_it_forwards() {
        let trusted = networks(&["10.0.0.0/8"]);
        assert_eq!(client(&trusted, "203.0.113.9", &["1.1.1.1"]), "203.0.113.9");
        assert_eq!(client(&trusted, "203.0.113.9", &[]), "203.0.113.9");
    }

    #[test]
    fn the_client_is_the_right_most_untrusted_address() {
        let trusted = networks(&["10.0.0.0/8", "192.168.1.1"]);
        // A spoofed entry on the left is not believed: the proxies' own additions are.
        assert_eq!(
            client(
                &trusted,
                "10.0.0.1",
                &["6.6.6.6, 198.51.100.7, 192.168.1.1"]
            ),
            "198.51.100.7"
        );
        // Several headers are one list, in order.
        assert_eq!(
            client(
                &trusted,
                "10.0.0.1",
                &["6.6.6.6", "198.51.100.7", "10.9.9.9"]
            ),
            "198.51.100.7"
        );
        // Ports and brackets are ignored.
        assert_eq!(
            client(&trusted, "10.0.0.1", &["[2001:db8::5]:443, 10.0.0.2:80"]),
            "2001:db8::5"
        );
        // Only proxies in the list: the left-most.
        assert_eq!(
            client(&trusted, "10.0.0.1", &["10.0.0.7, 10.0.0.8"]),
            "10.0.0.7"
        );
        // No header: the proxy itself.
        assert_eq!(client(&trusted, "10.0.0.1", &[]), "10.0.0.1");
        // Garbage stops the walk at the hop that passed it on.
        assert_eq!(
            client(&trusted, "10.0.0.1", &["1.2.3.4, unknown, 10.0.0.3"]),
            "10.0.0.3"
        );
    }

    #[test]
    fn keys_by_kind() {
        let trusted = networks(&[]);
        let mut request = http::Request::get("/v1/x").body(()).unwrap();
        assert_eq!(
            client_key(ClientKey::Ip, &request, &trusted, ClientPrefixes::DEFAULT).to_string(),
            "ip:unknown"
        );
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::from(([127, 0, 0, 1], 4000))));
        assert_eq!(
            client_key(ClientKey::Ip, &request, &trusted, ClientPrefixes::DEFAULT).to_string(),
            "ip:127.0.0.1"
        );
        // No principal: counted by address.
        assert_eq!(
            client_key(
                ClientKey::Principal,
                &request,
                &trusted,
                ClientPrefixes::DEFAULT
            )
            .to_string(),
            "ip:127.0.0.1"
        );
        Principal {
            subject: "alice".into(),
            scheme: "api_key",
            scopes: Vec::new().into(),
            claims: serde_json::Value::Null.into(),
        }
        .attach(&mut request);
        assert_eq!(
            client_key(
                ClientKey::Principal,
                &request,
                &trusted,
                ClientPrefixes::DEFAULT
            )
            .to_string(),
            "principal:api_key:alice"
        );
        assert_eq!(
            client_key(
                ClientKey::Route,
                &request,
                &trusted,
                ClientPrefixes::DEFAULT
            )
            .to_string(),
            "route:GET /v1/x"
        );
    }

    /// The key of a request from `peer`, with `prefixes`.
    fn ip_of(peer: &str, prefixes: ClientPrefixes) -> String {
        let mut request = http::Request::get("/v1/x").body(()).unwrap();
        let peer: IpAddr = peer.parse().expect("address");
        request
            .extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(peer, 4000)));
        client_key(ClientKey::Ip, &request, &networks(&[]), prefixes).to_string()
    }

    #[test]
    fn an_ipv6_client_is_its_64_and_an_ipv4_client_its_address() {
        let default = ClientPrefixes::DEFAULT;
        // Any address of one /64 is the same client: it cannot take a fresh address for each
        // request and start a new bucket each time.
        assert_eq!(ip_of("2001:db8:1:2::1", default), "ip:2001:db8:1:2::/64");
        assert_eq!(
            ip_of("2001:db8:1:2:aaaa:bbbb:cccc:dddd", default),
            "ip:2001:db8:1:2::/64"
        );
        assert_eq!(ip_of("2001:db8:1:3::1", default), "ip:2001:db8:1:3::/64");
        assert_eq!(ip_of("192.0.2.7", default), "ip:192.0.2.7");
        assert_eq!(ip_of("192.0.2.8", default), "ip:192.0.2.8");
        // An IPv4 client of a dual-stack listener is its IPv4 address, not the /64 that every
        // mapped address shares.
        assert_eq!(ip_of("::ffff:192.0.2.7", default), "ip:192.0.2.7");

        let wide = ClientPrefixes::new(24, 48).expect("valid");
        assert_eq!(ip_of("192.0.2.7", wide), "ip:192.0.2.0/24");
        assert_eq!(ip_of("2001:db8:1:2::1", wide), "ip:2001:db8:1::/48");
        let whole = ClientPrefixes::new(32, 128).expect("valid");
        assert_eq!(ip_of("2001:db8:1:2::1", whole), "ip:2001:db8:1:2::1");
        let one_bit = ClientPrefixes::new(1, 1).expect("valid");
        assert_eq!(ip_of("192.0.2.7", one_bit), "ip:128.0.0.0/1");
        assert_eq!(ip_of("2001:db8::1", one_bit), "ip:::/1");
    }

    #[test]
    fn prefixes_are_checked() {
        assert_eq!(ClientPrefixes::new(0, 64), None);
        assert_eq!(ClientPrefixes::new(33, 64), None);
        assert_eq!(ClientPrefixes::new(32, 0), None);
        assert_eq!(ClientPrefixes::new(32, 129), None);
        let prefixes = ClientPrefixes::new(32, 128).expect("valid");
        assert_eq!((prefixes.ipv4(), prefixes.ipv6()), (32, 128));
        assert_eq!(ClientPrefixes::default(), ClientPrefixes::DEFAULT);
    }
}
