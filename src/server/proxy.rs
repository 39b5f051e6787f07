//! The client's address behind reverse proxies: `server.trusted_proxies` and the
//! `Forwarded` (RFC 7239) or `X-Forwarded-For` header those proxies append to.
//!
//! Only a request whose TCP peer is a trusted proxy has its header read. The hops are walked
//! from the right (the entries the trusted proxies wrote themselves) and the first address
//! that is not a trusted proxy is the client; entries to its left were written by the client
//! and are never looked at, so a spoofed leftmost entry changes nothing. A hop that is not an
//! address (`unknown`, an obfuscated `_name`, garbage) where the client should be, or more
//! hops than [`MAX_HOPS`], falls back to the peer.

use std::net::{IpAddr, SocketAddr};

use actix_web::http::header::{HeaderMap, HeaderName};
use ipnet::IpNet;
use serde::Deserialize;

/// Most hops read from the right before giving up on the header.
pub const MAX_HOPS: usize = 16;
/// Longest single hop (an element of the list) read; longer ones are garbage.
pub const MAX_HOP_BYTES: usize = 256;

/// Which header the trusted proxies append the client's address to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(try_from = "String")]
pub enum ForwardedHeader {
    /// `X-Forwarded-For: client, proxy1, proxy2` (nginx, HAProxy, Traefik, Envoy, most
    /// cloud load balancers).
    #[default]
    XForwardedFor,
    /// `Forwarded: for=client, for=proxy1` (RFC 7239).
    Forwarded,
}

impl TryFrom<String> for ForwardedHeader {
    type Error = String;

    fn try_from(s: String) -> Result<Self, Self::Error> {
        let choices = [
            ("x-forwarded-for", ForwardedHeader::XForwardedFor),
            ("forwarded", ForwardedHeader::Forwarded),
        ];
        crate::support::choice::one_of("server.client_ip_header", &s, &choices)
    }
}

impl ForwardedHeader {
    /// The header's name.
    pub fn name(self) -> HeaderName {
        match self {
            ForwardedHeader::XForwardedFor => HeaderName::from_static("x-forwarded-for"),
            ForwardedHeader::Forwarded => HeaderName::from_static("forwarded"),
        }
    }
}

/// The proxies whose forwarding header is believed, and which header that is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies {
    nets: Vec<IpNet>,
    header: ForwardedHeader,
}

/// A `server.trusted_proxies` entry that is neither a CIDR range nor an address.
#[derive(Debug, thiserror::Error)]
#[error("{0:?} is not a CIDR range (10.0.0.0/8, fd00::/8) or an address")]
pub struct ProxyError(String);

impl TrustedProxies {
    /// Parses `entries` (CIDR ranges or single addresses).
    pub fn parse(entries: &[String], header: ForwardedHeader) -> Result<Self, ProxyError> {
        let nets = entries
            .iter()
            .map(|e| {
                let e = e.trim();
                e.parse::<IpNet>()
                    .or_else(|_| e.parse::<IpAddr>().map(IpNet::from))
                    .map(|n| n.trunc())
                    .map_err(|_| ProxyError(e.to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(TrustedProxies { nets, header })
    }

    /// True when no proxy is trusted: headers are ignored.
    pub fn is_empty(&self) -> bool {
        self.nets.is_empty()
    }

    /// The header read, for the startup summary.
    pub fn header(&self) -> ForwardedHeader {
        self.header
    }

    /// A trusted range that covers a whole address family (`0.0.0.0/0`, `::/0`): anyone
    /// who can connect chooses their own address.
    pub fn everything(&self) -> Option<IpNet> {
        self.nets.iter().find(|n| n.prefix_len() == 0).copied()
    }

    /// True when `ip` is in a trusted range.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.nets.iter().any(|n| n.contains(&ip))
    }

    /// The client's address for a request from `peer` with `headers`.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let name = self.header.name();
        // Several header lines form one list, in order; read from the last line back.
        let mut hops = headers
            .get_all(&name)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .flat_map(|line| line.as_bytes().rsplit(|b| *b == b','));
        for _ in 0..MAX_HOPS {
            let Some(hop) = hops.next() else {
                // Every hop is a trusted proxy, or there was no header.
                return peer;
            };
            let ip = std::str::from_utf8(hop)
                .ok()
                .filter(|h| h.len() <= MAX_HOP_BYTES)
                .and_then(|h| match self.header {
                    ForwardedHeader::XForwardedFor => parse_node(h.trim()),
                    ForwardedHeader::Forwarded => forwarded_for(h),
                });
            match ip {
                Some(ip) if self.trusts(ip) => continue,
                Some(ip) => return ip,
                None => return peer,
            }
        }
        peer
    }
}

/// The `for=` node of one `Forwarded` element (`for=192.0.2.1;proto=https`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    let value = element.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("for")
            .then(|| value.trim())
    })?;
    let value = match value.strip_prefix('"') {
        Some(quoted) => quoted.strip_suffix('"')?,
        None => value,
    };
    parse_node(value)
}

/// An address, with or without a port, IPv6 with or without brackets; `None` for
/// `unknown`, obfuscated identifiers and anything else.
fn parse_node(node: &str) -> Option<IpAddr> {
    let ip = if let Ok(ip) = node.parse::<IpAddr>() {
        ip
    } else if let Ok(socket) = node.parse::<SocketAddr>() {
        socket.ip()
    } else {
        // `[2001:db8::1]` without a port, or an obfuscated port (`[::1]:_port`).
        let inner = node.strip_prefix('[')?;
        let (ip, rest) = inner.split_once(']')?;
        if !(rest.is_empty() || rest.starts_with(':')) {
            return None;
        }
        ip.parse::<std::net::Ipv6Addr>().ok().map(IpAddr::V6)?
    };
    Some(ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    const PEER: &str = "10.0.0.2";

    fn proxies(header: ForwardedHeader) -> TrustedProxies {
        TrustedProxies::parse(&["10.0.0.0/24".into(), "fd00::1".into()], header).unwrap()
    }

    fn resolve(header: ForwardedHeader, peer: &str, lines: &[&str]) -> String {
        let mut headers = HeaderMap::new();
        for line in lines {
            headers.append(header.name(), HeaderValue::from_str(line).unwrap());
        }
        proxies(header)
            .client_ip(peer.parse().unwrap(), &headers)
            .to_string()
    }

    #[test]
    fn x_forwarded_for_gives_the_rightmost_untrusted_address() {
        let long = vec!["10.0.0.9"; MAX_HOPS + 1].join(", ") + ", 10.0.0.8";
        let cases: &[(&str, &[&str], &str)] = &[
            // (why, header lines, client)
            ("one hop", &["203.0.113.7"], "203.0.113.7"),
            (
                "spoofed leftmost entry ignored",
                &["1.2.3.4, 203.0.113.7"],
                "203.0.113.7",
            ),
            (
                "trusted hops skipped",
                &["203.0.113.7, 10.0.0.5, 10.0.0.6"],
                "203.0.113.7",
            ),
            (
                "lines joined in order",
                &["1.2.3.4", "203.0.113.7, 10.0.0.5"],
                "203.0.113.7",
            ),
            ("IPv4 with a port", &["203.0.113.7:4711"], "203.0.113.7"),
            ("bare IPv6", &["2001:db8::1"], "2001:db8::1"),
            (
                "IPv6 in brackets with a port",
                &["[2001:db8::1]:4711"],
                "2001:db8::1",
            ),
            ("IPv6 in brackets", &["[2001:db8::1]"], "2001:db8::1"),
            ("IPv4-mapped IPv6", &["::ffff:203.0.113.7"], "203.0.113.7"),
            (
                "trusted IPv6 proxy skipped",
                &["2001:db8::1, fd00::1"],
                "2001:db8::1",
            ),
            (
                "garbage on the left never read",
                &["\"x, !!, 203.0.113.7"],
                "203.0.113.7",
            ),
            ("garbage where the client is", &["1.2.3.4, garbage"], PEER),
            ("unknown", &["unknown"], PEER),
            ("empty", &[""], PEER),
            ("only trusted hops", &["10.0.0.5, 10.0.0.6"], PEER),
            ("more hops than the cap", &[long.as_str()], PEER),
            (
                "overlong hop",
                &[&format!("{}1.2.3.4", " ".repeat(MAX_HOP_BYTES))],
                PEER,
            ),
        ];
        for (why, lines, expected) in cases {
            assert_eq!(
                resolve(ForwardedHeader::XForwardedFor, PEER, lines),
                *expected,
                "{why}"
            );
        }
    }

    #[test]
    fn forwarded_gives_the_rightmost_untrusted_for_node() {
        let cases: &[(&str, &[&str], &str)] = &[
            ("one element", &["for=203.0.113.7"], "203.0.113.7"),
            (
                "case-insensitive name",
                &["For=203.0.113.7;proto=https"],
                "203.0.113.7",
            ),
            (
                "other pairs first",
                &["proto=https;for=203.0.113.7;by=10.0.0.2"],
                "203.0.113.7",
            ),
            (
                "spoofed leftmost element ignored",
                &["for=1.2.3.4, for=203.0.113.7, for=10.0.0.5"],
                "203.0.113.7",
            ),
            (
                "quoted IPv6 with a port",
                &["for=\"[2001:db8::1]:4711\""],
                "2001:db8::1",
            ),
            ("quoted IPv6", &["for=\"[2001:db8::1]\""], "2001:db8::1"),
            (
                "quoted IPv4 with a port",
                &["for=\"203.0.113.7:47011\""],
                "203.0.113.7",
            ),
            (
                "obfuscated port",
                &["for=\"[2001:db8::1]:_p1\""],
                "2001:db8::1",
            ),
            ("obfuscated node", &["for=1.2.3.4, for=_hidden"], PEER),
            ("unknown node", &["for=unknown"], PEER),
            ("no for pair", &["proto=https"], PEER),
            ("unterminated quote", &["for=\"203.0.113.7"], PEER),
            (
                "broken quote on the left never read",
                &["for=\"x, for=203.0.113.7"],
                "203.0.113.7",
            ),
            ("X-Forwarded-For syntax", &["203.0.113.7"], PEER),
        ];
        for (why, lines, expected) in cases {
            assert_eq!(
                resolve(ForwardedHeader::Forwarded, PEER, lines),
                *expected,
                "{why}"
            );
        }
    }

    #[test]
    fn headers_from_untrusted_peers_or_without_trusted_proxies_are_ignored() {
        assert_eq!(
            resolve(
                ForwardedHeader::XForwardedFor,
                "192.0.2.1",
                &["203.0.113.7"]
            ),
            "192.0.2.1"
        );
        let mut headers = HeaderMap::new();
        headers.insert(
            HeaderName::from_static("x-forwarded-for"),
            HeaderValue::from_static("203.0.113.7"),
        );
        let none = TrustedProxies::default();
        assert!(none.is_empty());
        assert_eq!(
            none.client_ip("10.0.0.2".parse().unwrap(), &headers)
                .to_string(),
            "10.0.0.2"
        );
        // A peer that is IPv4-mapped IPv6 (a `[::]` listener) is matched as IPv4.
        assert_eq!(
            resolve(
                ForwardedHeader::XForwardedFor,
                "::ffff:10.0.0.2",
                &["203.0.113.7"]
            ),
            "203.0.113.7"
        );
    }

    #[test]
    fn trusted_proxy_entries_are_ranges_or_addresses() {
        let p = TrustedProxies::parse(
            &[
                "10.1.0.0/16".into(),
                " 192.0.2.1 ".into(),
                "fd00::/8".into(),
            ],
            ForwardedHeader::default(),
        )
        .unwrap();
        assert!(p.trusts("10.1.200.3".parse().unwrap()));
        assert!(p.trusts("192.0.2.1".parse().unwrap()));
        assert!(!p.trusts("192.0.2.2".parse().unwrap()));
        assert!(p.trusts("fd12::3".parse().unwrap()));
        assert_eq!(p.everything(), None);
        let all = TrustedProxies::parse(&["10.0.0.0/8".into(), "::/0".into()], p.header()).unwrap();
        assert_eq!(all.everything(), Some("::/0".parse().unwrap()));
        for bad in ["10.0.0.0/33", "proxy.internal", ""] {
            let err = TrustedProxies::parse(&[bad.into()], ForwardedHeader::default())
                .unwrap_err()
                .to_string();
            assert!(err.contains("is not a CIDR range"), "{bad}: {err}");
        }
    }
}
