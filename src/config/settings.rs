//! [`Settings`]: every section of `regauth.yaml`, each of a type its owner defines, and how
//! they are read (built-in defaults, then a YAML or TOML file, then `REGAUTH_<SECTION>__<KEY>`
//! variables).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::Deserialize;

use super::ConfigError;
use super::env::{ENV_PREFIX, is_setting_var};
use crate::identity::federation::IssuerSettings;
use crate::identity::{AuthSettings, LdapSettings, UserSettings};
use crate::issue::TokenSettings;
use crate::keys::KeySettings;
use crate::policy::{AccessSettings, RuleSettings};
use crate::server::settings::ServerSettings;
use crate::telemetry::audit::AuditSettings;
use crate::telemetry::logging::LogSettings;

/// All settings. `Debug` never shows a password hash: they are secrets (see `UserSettings`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// The HTTP listener.
    pub server: ServerSettings,
    /// What tokens say and how long they live.
    pub token: TokenSettings,
    /// Where the signing key comes from.
    pub key: KeySettings,
    /// Defaults for callers when no `acl` is configured.
    pub access: AccessSettings,
    /// Users and their bcrypt password hashes and groups.
    pub users: BTreeMap<String, UserSettings>,
    /// Password file, password cache and refresh tokens.
    pub auth: AuthSettings,
    /// An LDAP directory users sign in against (absent: none).
    pub ldap: Option<LdapSettings>,
    /// Ordered access rules; the first match decides. Absent: the default rules.
    pub acl: Option<Vec<RuleSettings>>,
    /// Issuers whose workload tokens (JWTs) are accepted as passwords.
    pub federation: Vec<IssuerSettings>,
    /// The audit log of token decisions.
    pub audit: AuditSettings,
    /// The process log.
    pub log: LogSettings,
    /// Where access tokens, robots and logouts are kept (absent: no store).
    pub store: Option<crate::store::StoreSettings>,
}

impl Settings {
    /// Loads defaults, then `file`, then the `REGAUTH_<SECTION>__<KEY>` variables in `env`.
    ///
    /// Only variables with a `__` after the prefix are read, so `REGAUTH_SIGNING_KEY` (the
    /// default home of an env key) is never mistaken for a setting.
    pub fn load(
        file: Option<&Path>,
        env: &HashMap<String, String>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder();
        if let Some(path) = file {
            let format = match path.extension().and_then(|e| e.to_str()) {
                Some("yaml" | "yml") => config::FileFormat::Yaml,
                Some("toml") => config::FileFormat::Toml,
                _ => return Err(ConfigError::Format(path.to_path_buf())),
            };
            let text = std::fs::read_to_string(path).map_err(|e| ConfigError::File {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
            builder = builder.add_source(config::File::from_str(&text, format));
        }
        let overrides: HashMap<String, String> = env
            .iter()
            .filter(|(k, _)| is_setting_var(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("_")
                .separator("__")
                .list_separator(",")
                .with_list_parse_key("access.anonymous")
                .with_list_parse_key("token.services")
                .with_list_parse_key("server.trusted_proxies")
                .try_parsing(true)
                .source(Some(overrides)),
        );
        let built = builder
            .build()
            .map_err(|e| ConfigError::Parse(e.to_string()))?;
        built
            .try_deserialize::<Settings>()
            .map_err(|e| ConfigError::Parse(e.to_string()))
    }
}
