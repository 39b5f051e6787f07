//! The live round trip a client makes: `GET /v2/` → 401 with a Bearer challenge → a token
//! from the challenge's realm → `GET /v2/` with the token; each request bounded in time and
//! size, and the registry's answer explained.

use data_encoding::{BASE64, BASE64URL_NOPAD};
use serde_json::Value;

use super::registry::RegistryToken;
use super::{Options, Report};

/// Most bytes read from any answer.
const MAX_BODY: u64 = 64 * 1024;

/// One answer: status, the `WWW-Authenticate` header, the body.
struct Answer {
    status: u16,
    challenge: Option<String>,
    body: String,
}

fn agent(url: &str, options: &Options) -> ureq::Agent {
    let loopback = url
        .parse::<ureq::http::Uri>()
        .ok()
        .and_then(|u| u.host().map(is_loopback))
        .unwrap_or(false);
    let tls = ureq::tls::TlsConfig::builder()
        .unversioned_rustls_crypto_provider(regauth::support::tls::provider())
        .build();
    let mut config = ureq::Agent::config_builder();
    if loopback {
        config = config.proxy(None);
    }
    config
        .timeout_global(Some(options.timeout))
        .max_redirects(0)
        .http_status_as_error(false)
        .user_agent(concat!("regauth-doctor/", env!("CARGO_PKG_VERSION")))
        .tls_config(tls)
        .build()
        .new_agent()
}

/// `localhost` or a loopback address: no proxy for those.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost")
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

fn get(agent: &ureq::Agent, url: &str, authorization: Option<&str>) -> Result<Answer, String> {
    let mut request = agent.get(url);
    if let Some(value) = authorization {
        request = request.header("Authorization", value);
    }
    let mut response = request.call().map_err(|e| e.to_string())?;
    let challenge = response
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let body = response
        .body_mut()
        .with_config()
        .limit(MAX_BODY)
        .read_to_string()
        .unwrap_or_default();
    Ok(Answer {
        status: response.status().as_u16(),
        challenge,
        body,
    })
}

/// The parameters of a `Bearer` challenge, or `None` for another scheme.
pub fn bearer_params(header: &str) -> Option<Vec<(String, String)>> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("bearer") {
        return None;
    }
    let mut out = Vec::new();
    let mut rest = rest.trim();
    while let Some((name, after)) = rest.split_once('=') {
        let name = name
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, tail) = match after.strip_prefix('"') {
            Some(quoted) => match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            },
            None => match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            },
        };
        out.push((name, value.to_owned()));
        rest = tail.trim_start_matches(',').trim();
    }
    Some(out)
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn jwt_part(token: &str, index: usize) -> Value {
    token
        .split('.')
        .nth(index)
        .and_then(|p| BASE64URL_NOPAD.decode(p.as_bytes()).ok())
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or(Value::Null)
}

/// The registry's error message from a JSON body, if any.
fn registry_message(body: &str) -> Option<String> {
    let v: Value = serde_json::from_str(body).ok()?;
    let e = &v["errors"][0];
    let code = e["code"].as_str().unwrap_or_default();
    let message = e["message"].as_str().unwrap_or_default();
    Some(format!("{code} {message}").trim().to_owned()).filter(|s| !s.is_empty())
}

/// Runs the round trip against the registry at `base`, adding to `report`.
pub fn round_trip(base: &str, options: &Options, registry: &RegistryToken, report: &mut Report) {
    let base = base.trim_end_matches('/');
    let agent = agent(base, options);
    let v2 = format!("{base}/v2/");
    let first = match get(&agent, &v2, None) {
        Ok(answer) => answer,
        Err(e) => {
            return report.error(
                "registry-unreachable",
                format!("GET {v2} failed: {e}"),
                "check --registry (the registry's own URL, e.g. http://127.0.0.1:5000) and that \
                 the registry runs"
                    .into(),
            );
        }
    };
    let params = match (
        first.status,
        first.challenge.as_deref().and_then(bearer_params),
    ) {
        (401, Some(params)) => params,
        (200, _) => {
            return report.error(
                "registry-open",
                format!("GET {v2} answered 200 without a token: the running registry does not use token auth"),
                format!(
                    "start the registry with {} (auth.token), and check its REGISTRY_AUTH* \
                     variables",
                    registry.path.display()
                ),
            );
        }
        (status, _) => {
            return report.error(
                "registry-no-challenge",
                format!(
                    "GET {v2} answered {status} with WWW-Authenticate {:?}, not 401 with a \
                     Bearer challenge",
                    first.challenge.unwrap_or_default()
                ),
                "point --registry at the registry itself, and give it auth.token".into(),
            );
        }
    };
    let realm = param(&params, "realm").unwrap_or_default().to_owned();
    let service = param(&params, "service").unwrap_or_default().to_owned();
    report.ok(format!(
        "GET {v2}: 401 with a Bearer challenge (realm {realm:?}, service {service:?})"
    ));
    let differs = [
        ("realm", &registry.realm, &realm),
        ("service", &registry.service, &service),
    ]
    .into_iter()
    .filter_map(|(name, file, live)| {
        let file = file.as_ref().map(|s| s.value.as_str()).unwrap_or_default();
        (file != live.as_str()).then(|| format!("{name} {live:?} (configured: {file:?})"))
    })
    .collect::<Vec<_>>();
    if !differs.is_empty() {
        report.error(
            "registry-config-differs",
            format!(
                "the running registry challenges with {}: it runs with another configuration, \
                 other REGISTRY_AUTH_TOKEN_* variables, or was not restarted",
                differs.join(", ")
            ),
            format!(
                "restart the registry with {} and the environment doctor was given",
                registry.path.display()
            ),
        );
    }
    let separator = if realm.contains('?') { '&' } else { '?' };
    let token_url = format!("{realm}{separator}service={}", encode(&service));
    let basic = options.credentials.as_ref().map(|(user, password)| {
        format!(
            "Basic {}",
            BASE64.encode(format!("{user}:{password}").as_bytes())
        )
    });
    let who = options
        .credentials
        .as_ref()
        .map_or("anonymously".to_owned(), |(user, _)| format!("as {user:?}"));
    let answer = match get(&agent, &token_url, basic.as_deref()) {
        Ok(answer) => answer,
        Err(e) => {
            return report.error(
                "realm-unreachable",
                format!("GET {token_url} (the challenge's realm) failed: {e}"),
                "make auth.token.realm a URL clients can reach regauth at".into(),
            );
        }
    };
    let token = serde_json::from_str::<Value>(&answer.body)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned));
    let Some(token) = token.filter(|_| answer.status == 200) else {
        let detail = serde_json::from_str::<Value>(&answer.body)
            .ok()
            .and_then(|v| v["errors"][0]["message"].as_str().map(str::to_owned))
            .unwrap_or_else(|| answer.body.chars().take(200).collect());
        let fix = if answer.status == 401 {
            "pass a user regauth knows (--user NAME --password-stdin)"
        } else {
            "fix what regauth's answer names (token.services, the realm)"
        };
        return report.error(
            "token-refused",
            format!(
                "regauth refused a token {who} for service {service:?}: {} {detail}",
                answer.status
            ),
            fix.into(),
        );
    };
    let (header, claims) = (jwt_part(&token, 0), jwt_part(&token, 1));
    let described = format!(
        "kid {}, x5c {}, iss {}, aud {}",
        header["kid"],
        if header["x5c"].is_array() {
            "yes"
        } else {
            "no"
        },
        claims["iss"],
        claims["aud"]
    );
    report.ok(format!("a token from the realm {who} ({described})"));
    let bearer = format!("Bearer {token}");
    let last = match get(&agent, &v2, Some(&bearer)) {
        Ok(answer) => answer,
        Err(e) => {
            return report.error(
                "registry-unreachable",
                format!("GET {v2} with the token failed: {e}"),
                "check that the registry runs".into(),
            );
        }
    };
    if last.status == 200 {
        return report.ok(format!(
            "GET {v2} with the token: 200, the registry accepts it"
        ));
    }
    let error = last
        .challenge
        .as_deref()
        .and_then(bearer_params)
        .and_then(|p| param(&p, "error").map(str::to_owned))
        .unwrap_or_default();
    let said = registry_message(&last.body).unwrap_or_default();
    let found = report.error_codes();
    let fix = if found.is_empty() {
        "the files agree, so the running registry reads other ones or has not re-read them: it \
         reads its bundle and jwks file only at start, so restart it; its log names the cause \
         (\"token signed by untrusted key with ID\", \"token from untrusted issuer\", \"token \
         intended for another audience\")"
            .to_owned()
    } else {
        format!(
            "fix the errors above ({}), then restart the registry",
            found.join(", ")
        )
    };
    report.error(
        "registry-refuses-token",
        format!(
            "GET {v2} with the token answered {} (error={error:?}, {said:?}): the registry does \
             not trust the token ({described}): its signing key is not in the registry's bundle \
             or jwks under that kid, or iss/aud differ from auth.token.issuer/service",
            last.status
        ),
        fix,
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_challenges_parse_with_quotes_commas_and_errors() {
        let p = bearer_params(
            "Bearer realm=\"http://127.0.0.1:5001/token\",service=\"registry.test\",\
             scope=\"repository:a:pull,push\",error=\"invalid_token\"",
        )
        .unwrap();
        assert_eq!(param(&p, "realm"), Some("http://127.0.0.1:5001/token"));
        assert_eq!(param(&p, "service"), Some("registry.test"));
        assert_eq!(param(&p, "scope"), Some("repository:a:pull,push"));
        assert_eq!(param(&p, "error"), Some("invalid_token"));
        assert!(bearer_params("Basic realm=\"x\"").is_none());
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
