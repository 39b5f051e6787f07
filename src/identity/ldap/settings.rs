//! `ldap.*`: the settings type, and the checks that need neither files nor the network.

use std::path::PathBuf;

use serde::Deserialize;

/// `ldap.*`: where the directory is and how users and groups are found in it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LdapSettings {
    /// `ldap://host:port` or `ldaps://host:port`.
    pub url: String,
    /// Upgrade an `ldap://` connection with StartTLS before anything is sent.
    pub start_tls: bool,
    /// Allow `ldap://` without `start_tls` to a host that is not loopback: passwords then
    /// cross the network in clear. `serve` and `check` warn when it is used.
    pub allow_plaintext: bool,
    /// PEM certificates that sign the directory's certificate (default: the system's).
    pub ca_file: Option<PathBuf>,
    /// The service account that searches users and groups (absent: anonymous searches).
    pub bind_dn: Option<String>,
    /// A file holding the service account's password (its first line).
    pub bind_password_file: Option<PathBuf>,
    /// Where users are searched (the whole subtree).
    pub base_dn: String,
    /// The filter that finds a user; `{username}` is replaced by the escaped user name.
    pub user_filter: String,
    /// A filter that finds the user's groups; `{dn}` is the user's DN, `{username}` the
    /// user name, both escaped.
    pub group_filter: Option<String>,
    /// Where groups are searched (default: `base_dn`).
    pub group_base_dn: Option<String>,
    /// The attribute of a group entry that names the group.
    pub group_name_attribute: String,
    /// An attribute of the user's entry listing its groups' DNs (`memberOf`); each group is
    /// named by the value of its DN's first component (`cn=dev,ou=groups,...` is `dev`).
    pub groups_attribute: Option<String>,
    /// Seconds one login may spend on the directory, all operations together (waiting for a
    /// slot and a connection, connect, binds, searches, one retry).
    pub timeout_seconds: u64,
    /// Connections to the directory kept open at most; also the directory logins checked at
    /// once (more wait for a slot within their deadline).
    pub pool_size: usize,
    /// Seconds cached logins of directory users keep working past `auth.cache_seconds`
    /// while the directory is unavailable; 0 turns this off.
    pub outage_grace_seconds: u64,
}

impl Default for LdapSettings {
    fn default() -> Self {
        LdapSettings {
            url: String::new(),
            start_tls: false,
            allow_plaintext: false,
            ca_file: None,
            bind_dn: None,
            bind_password_file: None,
            base_dn: String::new(),
            user_filter: "(uid={username})".into(),
            group_filter: None,
            group_base_dn: None,
            group_name_attribute: "cn".into(),
            groups_attribute: None,
            timeout_seconds: 5,
            pool_size: 4,
            outage_grace_seconds: 0,
        }
    }
}

/// A setting that cannot work: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct LdapSettingsError {
    /// The setting, e.g. `ldap.url`.
    pub key: &'static str,
    /// What is wrong with it.
    pub message: String,
}

fn bad(key: &'static str, message: impl Into<String>) -> Result<(), LdapSettingsError> {
    Err(LdapSettingsError {
        key,
        message: message.into(),
    })
}

impl LdapSettings {
    /// Checks what can be checked without reading files or the network.
    pub fn validate(&self) -> Result<(), LdapSettingsError> {
        let scheme = self
            .url
            .split_once("://")
            .map(|(scheme, _)| scheme.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("ldap") => {}
            Some("ldaps") if self.start_tls => {
                return bad(
                    "ldap.start_tls",
                    "an ldaps:// URL is already TLS; use ldap:// with start_tls, or ldaps:// without",
                );
            }
            Some("ldaps") => {}
            _ => {
                return bad(
                    "ldap.url",
                    format!("{:?} must start with ldap:// or ldaps://", self.url),
                );
            }
        }
        if url_host(&self.url).is_none() {
            return bad("ldap.url", format!("{:?} names no host", self.url));
        }
        if self.sends_plaintext() && !self.allow_plaintext {
            return bad(
                "ldap.url",
                format!(
                    "{:?} sends every password in clear to a host that is not loopback; set \
                     ldap.start_tls: true, use an ldaps:// URL, or (on a network you trust) \
                     set ldap.allow_plaintext: true",
                    self.url
                ),
            );
        }
        if self.base_dn.trim().is_empty() {
            return bad("ldap.base_dn", "must not be empty");
        }
        if !self.user_filter.contains("{username}") {
            return bad(
                "ldap.user_filter",
                format!("{:?} must contain {{username}}", self.user_filter),
            );
        }
        check_parentheses("ldap.user_filter", &self.user_filter)?;
        if let Some(filter) = &self.group_filter {
            if !filter.contains("{dn}") && !filter.contains("{username}") {
                return bad(
                    "ldap.group_filter",
                    format!("{filter:?} must contain {{dn}} or {{username}}"),
                );
            }
            check_parentheses("ldap.group_filter", filter)?;
            if self.groups_attribute.is_some() {
                return bad(
                    "ldap.groups_attribute",
                    "set group_filter or groups_attribute, not both",
                );
            }
        }
        if self.group_name_attribute.trim().is_empty() {
            return bad("ldap.group_name_attribute", "must not be empty");
        }
        match (&self.bind_dn, &self.bind_password_file) {
            (Some(_), None) => return bad("ldap.bind_password_file", "required with bind_dn"),
            (None, Some(_)) => return bad("ldap.bind_dn", "required with bind_password_file"),
            _ => {}
        }
        if self.timeout_seconds == 0 {
            return bad("ldap.timeout_seconds", "must be at least 1");
        }
        if self.pool_size == 0 {
            return bad("ldap.pool_size", "must be at least 1");
        }
        Ok(())
    }
}

impl LdapSettings {
    /// True when passwords would cross the network in clear: `ldap://` without `start_tls`
    /// to a host that is not loopback (`localhost`, `127.0.0.0/8`, `::1`).
    pub fn sends_plaintext(&self) -> bool {
        let plain = self
            .url
            .split_once("://")
            .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("ldap"));
        plain && !self.start_tls && !url_host(&self.url).is_some_and(is_loopback)
    }

    /// True when the connection uses TLS (`ldaps://` or StartTLS).
    pub fn uses_tls(&self) -> bool {
        self.start_tls
            || self
                .url
                .split_once("://")
                .is_some_and(|(scheme, _)| scheme.eq_ignore_ascii_case("ldaps"))
    }
}

/// True for an authority (`host`, `host:port`, `[v6]:port`, with optional `user@`) naming a
/// loopback host.
fn is_loopback(authority: &str) -> bool {
    let host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host.strip_prefix('[') {
        Some(rest) => rest.split_once(']').map_or(rest, |(h, _)| h),
        None => host.rsplit_once(':').map_or(host, |(h, _)| h),
    };
    // A percent-encoded host is never taken for loopback.
    if host.contains('%') {
        return false;
    }
    if host.eq_ignore_ascii_case("localhost") {
        return true;
    }
    host.parse::<std::net::IpAddr>()
        .is_ok_and(|ip| ip.to_canonical().is_loopback())
}

fn url_host(url: &str) -> Option<&str> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?']).next()?;
    (!authority.is_empty()).then_some(authority)
}

fn check_parentheses(setting: &'static str, filter: &str) -> Result<(), LdapSettingsError> {
    let mut depth = 0i64;
    for c in filter.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            break;
        }
    }
    if depth != 0 || !filter.starts_with('(') {
        return bad(
            setting,
            format!("{filter:?} is not a parenthesised LDAP filter"),
        );
    }
    Ok(())
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    /// Settings that pass validation: a loopback directory.
    pub(in crate::identity::ldap) fn settings() -> LdapSettings {
        LdapSettings {
            url: "ldap://127.0.0.1:389".into(),
            base_dn: "dc=example,dc=org".into(),
            ..LdapSettings::default()
        }
    }

    #[test]
    fn settings_that_cannot_work_are_refused_naming_the_setting() {
        assert_eq!(settings().validate(), Ok(()));
        assert!(
            LdapSettings {
                group_filter: Some("(member={dn})".into()),
                ..settings()
            }
            .validate()
            .is_ok()
        );
        let cases: [(LdapSettings, &str); 9] = [
            (
                LdapSettings {
                    url: "http://x".into(),
                    ..settings()
                },
                "ldap.url",
            ),
            (
                LdapSettings {
                    url: "ldap://".into(),
                    ..settings()
                },
                "names no host",
            ),
            (
                LdapSettings {
                    url: "ldaps://x".into(),
                    start_tls: true,
                    ..settings()
                },
                "ldap.start_tls",
            ),
            (
                LdapSettings {
                    user_filter: "(uid=alice)".into(),
                    ..settings()
                },
                "{username}",
            ),
            (
                LdapSettings {
                    user_filter: "(uid={username}".into(),
                    ..settings()
                },
                "parenthesised",
            ),
            (
                LdapSettings {
                    base_dn: " ".into(),
                    ..settings()
                },
                "ldap.base_dn",
            ),
            (
                LdapSettings {
                    bind_dn: Some("cn=svc".into()),
                    ..settings()
                },
                "ldap.bind_password_file",
            ),
            (
                LdapSettings {
                    group_filter: Some("(member={dn})".into()),
                    groups_attribute: Some("memberOf".into()),
                    ..settings()
                },
                "ldap.groups_attribute",
            ),
            (
                LdapSettings {
                    timeout_seconds: 0,
                    ..settings()
                },
                "ldap.timeout_seconds",
            ),
        ];
        for (bad, expected) in cases {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains(expected), "{err} should mention {expected}");
        }
    }

    #[test]
    fn plaintext_to_a_host_that_is_not_loopback_needs_allow_plaintext() {
        let with = |url: &str, start_tls: bool, allow_plaintext: bool| LdapSettings {
            url: url.into(),
            start_tls,
            allow_plaintext,
            ..settings()
        };
        for url in [
            "ldap://127.0.0.1",
            "ldap://127.8.9.10:389",
            "ldap://localhost:389",
            "ldap://LOCALHOST",
            "ldap://[::1]:389",
            "ldap://[::ffff:127.0.0.1]:389",
        ] {
            assert_eq!(with(url, false, false).validate(), Ok(()), "{url}");
        }
        for url in [
            "ldap://ldap.example.org",
            "ldap://10.0.0.5:389",
            "ldap://[2001:db8::1]:389",
            "ldap://localhost.example.org",
            "ldap://user@ldap.example.org",
            "ldap://127%2e0.0.1",
        ] {
            let refused = with(url, false, false).validate().unwrap_err();
            assert_eq!(refused.key, "ldap.url", "{url}");
            assert!(refused.message.contains("ldap.allow_plaintext"), "{url}");
            assert_eq!(with(url, true, false).validate(), Ok(()), "{url}");
            assert_eq!(with(url, false, true).validate(), Ok(()), "{url}");
            assert!(with(url, false, true).sends_plaintext(), "{url}");
        }
        assert_eq!(
            with("ldaps://ldap.example.org", false, false).validate(),
            Ok(())
        );
    }
}
