//! `regauth probe URL`: one plain-HTTP/1.1 `GET` with ureq, bounded in time and in bytes
//! read, so a container `HEALTHCHECK` works in an image without curl or a shell.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use regauth::config::Validated;

/// Most bytes of the answer's head (status line and headers) read.
const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Longest timeout accepted: a probe that waits longer than this is not a health check.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// Why a probe failed. Each message is one line a person can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProbeError {
    /// The URL is `https://…`: this probe speaks plain HTTP only.
    #[error(
        "{0}: https is not supported by the probe; probe a plain-HTTP listener (server.admin_listen) instead"
    )]
    Https(String),
    /// Not an `http://HOST[:PORT][/PATH]` URL.
    #[error("{url:?} is not an http://HOST[:PORT]/PATH URL: {reason}")]
    BadUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The timeout is zero or above [`MAX_TIMEOUT`].
    #[error("the timeout must be above 0 and at most {} s", MAX_TIMEOUT.as_secs())]
    BadTimeout,
    /// The host did not resolve to an address.
    #[error("{host}: cannot resolve: {reason}")]
    Resolve {
        /// The host part of the URL.
        host: String,
        /// The resolver's answer.
        reason: String,
    },
    /// Connecting or the exchange failed (the cause follows in the error's chain).
    #[error("{addr}: {what}")]
    Io {
        /// The host and port tried.
        addr: String,
        /// The step that failed.
        what: &'static str,
        /// The cause (connection refused, timed out, ...).
        source: std::io::Error,
    },
    /// The whole exchange took longer than the timeout.
    #[error("{addr}: no answer within {timeout:?}")]
    Timeout {
        /// The host and port tried.
        addr: String,
        /// The timeout.
        timeout: Duration,
    },
    /// The answer does not start with an HTTP/1.x status line (or its head is larger than
    /// 8 KiB).
    #[error("{addr}: not an HTTP/1.x answer")]
    NotHttp {
        /// The host and port tried.
        addr: String,
    },
    /// The HTTP client failed otherwise.
    #[error("{addr}: {reason}")]
    Client {
        /// The host and port tried.
        addr: String,
        /// The client's error.
        reason: String,
    },
    /// The server answered, with a status outside 2xx.
    #[error("{url}: {status_line}")]
    Status {
        /// The URL probed.
        url: String,
        /// The status code.
        code: u16,
        /// The status line, e.g. `HTTP/1.1 503 Service Unavailable`.
        status_line: String,
    },
}

/// `/healthz` on the admin listener when there is one, else on the main listener; an
/// unspecified address (`0.0.0.0`, `[::]`) is probed on the loopback address of its family.
/// The image's `HEALTHCHECK` runs `regauth probe` without a URL, so it follows
/// `REGAUTH_SERVER__LISTEN` and the settings file. With `server.tls` and no admin listener
/// the URL is `https://…`, which the probe refuses with a message naming
/// `server.admin_listen` (the admin listener stays plain HTTP).
pub fn health_url(config: &Validated) -> String {
    let scheme = match (config.admin_listen, &config.tls) {
        (None, Some(_)) => "https",
        _ => "http",
    };
    let mut addr = config.admin_listen.unwrap_or(config.listen);
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr.ip() {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::LOCALHOST),
        });
    }
    format!("{scheme}://{addr}/healthz")
}

/// The parts of an `http://` URL the probe needs.
#[derive(Debug, PartialEq, Eq)]
struct Target {
    /// `host[:port]` as written, for the `Host` header.
    authority: String,
    host: String,
    port: u16,
    /// Path and query, starting with `/`.
    path: String,
}

fn parse_url(url: &str) -> Result<Target, ProbeError> {
    let bad = |reason| ProbeError::BadUrl {
        url: url.to_owned(),
        reason,
    };
    if url.len() > 2048 {
        return Err(bad("longer than 2048 bytes"));
    }
    let lower = url.to_ascii_lowercase();
    if lower.starts_with("https://") {
        return Err(ProbeError::Https(url.to_owned()));
    }
    if !lower.starts_with("http://") {
        return Err(bad("the scheme must be http://"));
    }
    let rest = &url["http://".len()..];
    let (authority, path) = match rest.find(['/', '?']) {
        Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_owned()),
        Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
        None => (rest, "/".to_owned()),
    };
    let path = path.split('#').next().unwrap_or("/").to_owned();
    if authority.is_empty() {
        return Err(bad("no host"));
    }
    if authority.contains('@') {
        return Err(bad("credentials in the URL are not supported"));
    }
    if path.bytes().any(|b| b.is_ascii_control() || b == b' ') {
        return Err(bad("spaces or control characters in the path"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (host, after) = v6.split_once(']').ok_or_else(|| bad("unclosed '['"))?;
        let port = match after {
            "" => None,
            p => Some(p.strip_prefix(':').ok_or_else(|| bad("junk after ']'"))?),
        };
        (host.to_owned(), port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    let port = match port {
        None => 80,
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| bad("the port is not a number"))?,
    };
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Target {
        authority: authority.to_owned(),
        host,
        port,
        path,
    })
}

/// `GET url` and succeed on a 2xx status. Returns the status line (the version, the code
/// and the code's standard reason). The whole exchange (connect, send, read the answer's
/// head) must finish within `timeout`; the body is not read.
///
/// Hosts should be IP literals: a name is resolved through the C library, and a static
/// binary in an empty image has no `/etc/nsswitch.conf` or `/etc/hosts` to help it.
pub fn probe(url: &str, timeout: Duration) -> Result<String, ProbeError> {
    if timeout.is_zero() || timeout > MAX_TIMEOUT {
        return Err(ProbeError::BadTimeout);
    }
    let target = parse_url(url)?;
    let agent = ureq::Agent::config_builder()
        .proxy(None)
        .timeout_global(Some(timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .max_response_header_size(MAX_HEAD_BYTES)
        .user_agent("regauth-probe")
        .build()
        .new_agent();
    let response = agent
        .get(format!("http://{}{}", target.authority, target.path))
        .call()
        .map_err(|e| client_error(e, &target, timeout))?;
    let status = response.status();
    let status_line = format!(
        "{:?} {} {}",
        response.version(),
        status.as_str(),
        status.canonical_reason().unwrap_or_default()
    )
    .trim_end()
    .to_owned();
    if status.is_success() {
        Ok(status_line)
    } else {
        Err(ProbeError::Status {
            url: url.to_owned(),
            code: status.as_u16(),
            status_line,
        })
    }
}

/// What a ureq error means for the probe.
fn client_error(e: ureq::Error, target: &Target, timeout: Duration) -> ProbeError {
    use std::io::ErrorKind;
    let addr = if target.host.contains(':') {
        format!("[{}]:{}", target.host, target.port)
    } else {
        format!("{}:{}", target.host, target.port)
    };
    match e {
        ureq::Error::HostNotFound => ProbeError::Resolve {
            host: target.host.clone(),
            reason: "no address".into(),
        },
        ureq::Error::Timeout(_) => ProbeError::Timeout { addr, timeout },
        ureq::Error::Io(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
            ProbeError::Timeout { addr, timeout }
        }
        ureq::Error::Io(source) => {
            let what = match source.kind() {
                ErrorKind::ConnectionRefused
                | ErrorKind::HostUnreachable
                | ErrorKind::NetworkUnreachable
                | ErrorKind::AddrNotAvailable => "connect",
                _ => "exchange",
            };
            ProbeError::Io { addr, what, source }
        }
        ureq::Error::Protocol(_) | ureq::Error::LargeResponseHeader(..) => {
            ProbeError::NotHttp { addr }
        }
        other => ProbeError::Client {
            addr,
            reason: other.to_string(),
        },
    }
}

/// `regauth probe`: the URL given, else `/healthz` on the listener the settings name.
pub(super) fn run(
    url: Option<String>,
    config_path: Option<std::path::PathBuf>,
    timeout: f64,
) -> anyhow::Result<()> {
    let timeout = std::time::Duration::try_from_secs_f64(timeout)
        .map_err(|_| anyhow::anyhow!("--timeout {timeout} is not a number of seconds"))?;
    let url = match url {
        Some(url) => url,
        None => health_url(&regauth::config::load(config_path.as_deref())?),
    };
    let status = probe(&url, timeout)?;
    println!("{status}");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_url_is_healthz_on_the_admin_or_main_listener_on_loopback() {
        let url = |listen: &str, admin: Option<&str>| {
            let mut settings = regauth::config::Settings::default();
            settings.server.listen = listen.into();
            settings.server.admin_listen = admin.map(Into::into);
            health_url(&settings.validate(false).unwrap())
        };
        assert_eq!(url("0.0.0.0:5001", None), "http://127.0.0.1:5001/healthz");
        assert_eq!(url("[::]:5001", None), "http://[::1]:5001/healthz");
        assert_eq!(url("10.1.2.3:80", None), "http://10.1.2.3:80/healthz");
        assert_eq!(
            url("0.0.0.0:5001", Some("0.0.0.0:9090")),
            "http://127.0.0.1:9090/healthz"
        );
    }

    #[test]
    fn with_https_on_the_main_listener_the_default_probe_needs_the_admin_listener() {
        let mut settings = regauth::config::Settings::default();
        settings.server.listen = "0.0.0.0:5001".into();
        settings.server.tls.certificate = Some("tls.crt".into());
        settings.server.tls.key = Some("tls.key".into());
        let url = health_url(&settings.clone().validate(false).unwrap());
        assert_eq!(url, "https://127.0.0.1:5001/healthz");
        let refused = probe(&url, Duration::from_secs(1)).unwrap_err().to_string();
        assert!(refused.contains("server.admin_listen"), "{refused}");
        settings.server.admin_listen = Some("127.0.0.1:9090".into());
        assert_eq!(
            health_url(&settings.validate(false).unwrap()),
            "http://127.0.0.1:9090/healthz"
        );
    }

    #[test]
    fn urls_split_into_host_port_and_path() {
        let cases = [
            (
                "http://127.0.0.1:5001/healthz",
                "127.0.0.1",
                5001,
                "/healthz",
            ),
            ("http://127.0.0.1", "127.0.0.1", 80, "/"),
            ("HTTP://[::1]:9/readyz?x=1#f", "::1", 9, "/readyz?x=1"),
            ("http://localhost?a", "localhost", 80, "/?a"),
        ];
        for (url, host, port, path) in cases {
            let t = parse_url(url).unwrap();
            assert_eq!(
                (t.host.as_str(), t.port, t.path.as_str()),
                (host, port, path),
                "{url}"
            );
        }
    }

    #[test]
    fn urls_the_probe_cannot_use_are_refused_with_a_reason() {
        for url in [
            "ftp://x/",
            "http://",
            "http://:80/",
            "http://h:port/",
            "http://[::1/",
            "http://u:p@h/",
            "http://h/a b",
        ] {
            assert!(
                matches!(parse_url(url), Err(ProbeError::BadUrl { .. })),
                "{url}"
            );
        }
        let https = parse_url("https://127.0.0.1/healthz").unwrap_err();
        assert!(
            https.to_string().contains("https is not supported"),
            "{https}"
        );
    }

    #[test]
    fn a_zero_or_huge_timeout_is_refused() {
        for t in [Duration::ZERO, MAX_TIMEOUT + Duration::from_secs(1)] {
            assert!(matches!(
                probe("http://127.0.0.1:1/", t),
                Err(ProbeError::BadTimeout)
            ));
        }
    }

    #[test]
    fn a_server_that_never_answers_fails_the_probe_at_the_timeout() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        // Accepted by the kernel, never answered.
        let err = probe(&url, Duration::from_millis(200)).unwrap_err();
        assert!(matches!(err, ProbeError::Timeout { .. }), "{err}");
        drop(listener);
    }

    /// Serves one canned answer on a loopback port; returns the URL.
    fn canned(answer: &'static [u8]) -> (String, std::thread::JoinHandle<()>) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/healthz", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            use std::io::{Read, Write};
            let (mut s, _) = listener.accept().unwrap();
            let mut request = [0u8; 1024];
            let _ = s.read(&mut request);
            let _ = s.write_all(answer);
        });
        (url, server)
    }

    #[test]
    fn only_a_2xx_status_line_passes() {
        let (url, server) = canned(b"HTTP/1.1 204 No Content\r\n\r\n");
        assert_eq!(
            probe(&url, Duration::from_secs(5)).unwrap(),
            "HTTP/1.1 204 No Content"
        );
        server.join().unwrap();
        for answer in [
            &b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"[..],
            b"HTTP/1.0 301 Moved Permanently\r\n\r\n",
        ] {
            let (url, server) = canned(answer);
            let err = probe(&url, Duration::from_secs(5)).unwrap_err();
            assert!(matches!(err, ProbeError::Status { .. }), "{err}");
            assert!(!err.to_string().contains('\n'), "one line: {err}");
            server.join().unwrap();
        }
    }

    #[test]
    fn an_endless_header_line_is_not_http() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            use std::io::Write;
            let (mut s, _) = listener.accept().unwrap();
            let _ = s.write_all(&[b'x'; MAX_HEAD_BYTES + 10]);
        });
        let err = probe(&url, Duration::from_secs(5)).unwrap_err();
        assert!(matches!(err, ProbeError::NotHttp { .. }), "{err}");
        server.join().unwrap();
    }
}
