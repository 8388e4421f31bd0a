//! Who is on the other end: the peer's address, or, when the peer is a trusted reverse proxy
//! (`REELTIME_TRUSTED_PROXIES`), the client address it reports in `X-Forwarded-For`.
//!
//! Invariant: a forwarded header is believed only from a peer in the trusted list, and only
//! as far back as the chain stays trusted. `X-Forwarded-For` is read right to left (each
//! proxy appends the address it saw); the first address that is not a trusted proxy is the
//! client. Anyone can send the header, so with an empty list (the default) it is ignored:
//! otherwise anyone could pick the address their sign-in attempts are limited by and logged as.
//!
//! The result ([`ClientAddr`]) is put in the request's extensions before the request's span
//! is made, so the logs, the sign-in limits and anything else read the same address.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;

/// The client's address, as far as it can be trusted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientAddr(pub IpAddr);

/// The proxies whose forwarded headers are believed.
#[derive(Clone, Debug, Default)]
pub struct TrustedProxies(Arc<Vec<IpNet>>);

impl TrustedProxies {
    /// Parse a comma-separated list of addresses and networks (`127.0.0.1, 10.0.0.0/8, ::1`).
    pub fn parse(list: &str) -> Result<TrustedProxies, String> {
        let mut nets = Vec::new();
        for item in list.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let net = match item.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match item.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => {
                        return Err(format!(
                        "\"{item}\" is not an IP address or network (e.g. 127.0.0.1 or 10.0.0.0/8)"
                    ))
                    }
                },
            };
            nets.push(net);
        }
        Ok(TrustedProxies(Arc::new(nets)))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client behind `peer`, given the request's `X-Forwarded-For` values in order.
    pub fn client(&self, peer: IpAddr, forwarded_for: &[&str]) -> IpAddr {
        let peer = canonical(peer);
        if !self.trusts(peer) {
            return peer;
        }
        let hops = forwarded_for
            .iter()
            .flat_map(|value| value.split(','))
            .map(str::trim)
            .collect::<Vec<_>>();
        let mut client = peer;
        for hop in hops.into_iter().rev() {
            let Some(ip) = parse_hop(hop) else {
                // Garbage in the chain: stop at the last address we could trust.
                break;
            };
            client = ip;
            if !self.trusts(ip) {
                break;
            }
        }
        client
    }
}

/// An address as it appears in `X-Forwarded-For` (`1.2.3.4`, `1.2.3.4:5678`, `[::1]:80`, `::1`).
fn parse_hop(hop: &str) -> Option<IpAddr> {
    hop.parse::<IpAddr>()
        .ok()
        .or_else(|| hop.parse::<SocketAddr>().ok().map(|a| a.ip()))
        .map(canonical)
}

/// IPv4 addresses mapped into IPv6 (`::ffff:1.2.3.4`, as dual-stack sockets give them) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Work out the [`ClientAddr`] and put it in the request's extensions.
pub async fn client_address(
    State(trusted): State<TrustedProxies>,
    mut request: Request,
    next: Next,
) -> Response {
    let peer = request
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(addr)| addr.ip());
    if let Some(peer) = peer {
        let forwarded: Vec<&str> = request
            .headers()
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect();
        let client = trusted.client(peer, &forwarded);
        request.extensions_mut().insert(ClientAddr(client));
    }
    next.run(request).await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_headers_count_only_from_trusted_proxies() {
        let none = TrustedProxies::default();
        assert_eq!(
            none.client(ip("127.0.0.1"), &["203.0.113.9"]),
            ip("127.0.0.1")
        );

        let local = TrustedProxies::parse("127.0.0.1, 10.0.0.0/8").unwrap();
        assert_eq!(
            local.client(ip("127.0.0.1"), &["203.0.113.9"]),
            ip("203.0.113.9")
        );
        // A client's own forged entry sits left of what the proxies appended.
        assert_eq!(
            local.client(ip("127.0.0.1"), &["1.1.1.1, 203.0.113.9, 10.1.2.3"]),
            ip("203.0.113.9")
        );
        // From a peer that is not trusted, the header is the peer's say-so: ignored.
        assert_eq!(
            local.client(ip("198.51.100.7"), &["1.1.1.1"]),
            ip("198.51.100.7")
        );
        // No header: the proxy itself.
        assert_eq!(local.client(ip("127.0.0.1"), &[]), ip("127.0.0.1"));
        // Garbage stops the walk.
        assert_eq!(
            local.client(ip("127.0.0.1"), &["1.1.1.1, junk"]),
            ip("127.0.0.1")
        );
        // IPv4 through a dual-stack socket.
        assert_eq!(
            local.client(ip("::ffff:127.0.0.1"), &["[2001:db8::1]:443"]),
            ip("2001:db8::1")
        );
    }

    #[test]
    fn bad_entries_are_named() {
        let err = TrustedProxies::parse("127.0.0.1, nginx").unwrap_err();
        assert!(err.contains("\"nginx\""), "{err}");
        assert!(TrustedProxies::parse("").unwrap().is_empty());
    }
}
