//! Which addresses outbound downloads may reach: a server fetching URLs its clients name must not
//! be turned against the machines behind it (server-side request forgery). Loopback, private,
//! link-local, shared (carrier-grade NAT), multicast, broadcast and unspecified addresses are
//! refused unless the host is explicitly allowed.
//!
//! The check runs where names are resolved for a connection: `Resolver` is the HTTP client's
//! resolver, so a name is looked up once per connection and the client connects to exactly the
//! addresses that were checked. That covers the first request, every redirect, and a name that
//! resolves to another address the second time it is looked up (DNS rebinding): no second lookup
//! is made between the check and the connection.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::sync::Arc;

/// How names are looked up (the system's resolver, or a test's).
type Lookup = Arc<dyn Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync>;

/// The outbound address policy.
#[derive(Clone, Default)]
pub struct Guard {
    /// Host names or IP literals (lower case, without brackets or port) that may resolve to any
    /// address, private ones included.
    allow_hosts: Vec<String>,
    /// Name lookup; the system's when none.
    lookup: Option<Lookup>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard").field("allow_hosts", &self.allow_hosts).finish_non_exhaustive()
    }
}

impl Guard {
    /// A guard that refuses non-public addresses except for `allow_hosts`.
    pub fn new(allow_hosts: &[String]) -> Guard {
        Guard { allow_hosts: allow_hosts.iter().map(|h| normalise_host(h)).collect(), lookup: None }
    }

    /// The same guard looking names up with `lookup` (`host:port` to addresses) instead of the
    /// system's resolver: for tests that play a DNS server.
    #[cfg(test)]
    pub fn with_lookup(
        mut self,
        lookup: impl Fn(&str) -> io::Result<Vec<SocketAddr>> + Send + Sync + 'static,
    ) -> Guard {
        self.lookup = Some(Arc::new(lookup));
        self
    }

    /// Resolves `netloc` (`host:port`) and keeps its addresses only when they are public or the
    /// host is allowed; an error names the host and the refused address.
    pub fn resolve(&self, netloc: &str) -> io::Result<Vec<SocketAddr>> {
        let host = netloc.rsplit_once(':').map(|(h, _)| h).unwrap_or(netloc);
        let addrs: Vec<SocketAddr> = match &self.lookup {
            Some(lookup) => lookup(netloc)?,
            None => netloc.to_socket_addrs()?.collect(),
        };
        if self.allow_hosts.iter().any(|a| *a == normalise_host(host)) {
            return Ok(addrs);
        }
        if let Some(bad) = addrs.iter().find(|a| !is_public(a.ip())) {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!("download refused: {host} resolves to {}, a non-public address (allow the host in [server] allow_hosts to fetch from it)", bad.ip()),
            ));
        }
        Ok(addrs)
    }
}

/// The HTTP client's resolver under a `Guard`: each connection's name is looked up once, checked,
/// and only the checked addresses are handed to the client to connect to.
#[derive(Debug, Clone)]
pub struct Resolver {
    guard: Guard,
}

impl Resolver {
    /// A resolver checking with `guard`.
    pub(crate) fn new(guard: Guard) -> Resolver {
        Resolver { guard }
    }
}

impl ureq::unversioned::resolver::Resolver for Resolver {
    fn resolve(
        &self,
        uri: &ureq::http::Uri,
        _config: &ureq::config::Config,
        _timeout: ureq::unversioned::transport::NextTimeout,
    ) -> Result<ureq::unversioned::resolver::ResolvedSocketAddrs, ureq::Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return Err(ureq::Error::BadUri(format!("{uri} has no scheme or host")));
        };
        let netloc = ureq::unversioned::resolver::DefaultResolver::host_and_port(scheme, authority)
            .ok_or_else(|| ureq::Error::BadUri(format!("{uri}: unknown port")))?;
        let mut out = self.empty();
        for a in self.guard.resolve(&netloc)? {
            if out.try_push(a).is_err() {
                break; // the client takes at most 16
            }
        }
        if out.is_empty() {
            return Err(ureq::Error::HostNotFound);
        }
        Ok(out)
    }
}

fn normalise_host(h: &str) -> String {
    h.trim().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

/// Whether `ip` is an ordinary public unicast address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    let shared = a == 100 && (64..128).contains(&b); // 100.64.0.0/10
    let this_network = a == 0; // 0.0.0.0/8
    let reserved = a >= 240; // 240.0.0.0/4 and broadcast
    let benchmarking = a == 198 && (b == 18 || b == 19); // 198.18.0.0/15
    !(ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_multicast()
        || ip.is_unspecified()
        || shared
        || this_network
        || reserved
        || benchmarking)
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    let unique_local = (first & 0xfe00) == 0xfc00; // fc00::/7
    let link_local = (first & 0xffc0) == 0xfe80; // fe80::/10
    let site_local = (first & 0xffc0) == 0xfec0; // fec0::/10 (deprecated)
    let nat64 = ip.segments()[..6] == [0x64, 0xff9b, 0, 0, 0, 0]; // 64:ff9b::/96 reaches IPv4 behind it
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || unique_local
        || link_local
        || site_local
        || nat64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for a in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "224.0.0.1",
            "255.255.255.255",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:10.0.0.1",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(a.parse().unwrap()), "{a} taken as public");
        }
        for a in ["8.8.8.8", "172.32.0.1", "100.128.0.1", "2001:4860:4860::8888", "::ffff:8.8.8.8"]
        {
            assert!(is_public(a.parse().unwrap()), "{a} taken as non-public");
        }
    }

    #[test]
    fn loopback_refused_unless_the_host_is_allowed() {
        let strict = Guard::new(&[]);
        let e = strict.resolve("127.0.0.1:80").unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied);
        assert!(e.to_string().contains("non-public"), "{e}");
        assert!(strict.resolve("[::1]:80").is_err());
        let allowed = Guard::new(&["127.0.0.1".to_string(), "[::1]".to_string()]);
        assert_eq!(allowed.resolve("127.0.0.1:8080").unwrap()[0].port(), 8080);
        assert!(allowed.resolve("[::1]:80").is_ok());
        // another name for the same address is another host
        assert!(allowed.resolve("localhost:80").is_err());
    }
}
