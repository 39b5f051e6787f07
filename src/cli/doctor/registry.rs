//! The distribution registry's side: its `auth.token` settings as the registry itself would
//! see them, i.e. its YAML file with the `REGISTRY_AUTH_TOKEN_*` environment overrides applied.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Which registry release the checks assume; the kid lookup differs between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegistryVersion {
    /// 2.x: looks the `kid` up as a libtrust key ID among its bundle's certificates.
    V2,
    /// 3.0.x: RFC 7638 thumbprints, with the bug that gives every P-256 certificate the same one.
    V3_0,
    /// 3.1 and later: RFC 7638 thumbprints (EC coordinates not left-padded) and the jwks file.
    V3_1,
}

impl RegistryVersion {
    /// Parses `2`, `2.8`, `3`, `3.0`, `3.0.0`, `3.1`, `3.1.1`...
    pub fn parse(text: &str) -> Option<RegistryVersion> {
        let text = text.trim().trim_start_matches('v');
        let mut parts = text.split('.');
        let major = parts.next()?;
        let minor = parts.next();
        match (major, minor) {
            ("2", _) => Some(RegistryVersion::V2),
            ("3", Some("0")) => Some(RegistryVersion::V3_0),
            ("3", _) => Some(RegistryVersion::V3_1),
            _ => None,
        }
    }

    /// For messages.
    pub fn name(self) -> &'static str {
        match self {
            RegistryVersion::V2 => "2.8",
            RegistryVersion::V3_0 => "3.0",
            RegistryVersion::V3_1 => "3.1+",
        }
    }

    /// True for 3.x.
    pub fn is_v3(self) -> bool {
        self != RegistryVersion::V2
    }
}

/// One `auth.token` setting and where its value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// The value.
    pub value: String,
    /// `auth.token.issuer in FILE` or `REGISTRY_AUTH_TOKEN_ISSUER`.
    pub from: String,
}

/// The registry's token settings, after the environment overrides.
#[derive(Debug, Clone)]
pub struct RegistryToken {
    /// The file read.
    pub path: PathBuf,
    /// `auth.token.realm`.
    pub realm: Option<Setting>,
    /// `auth.token.service`.
    pub service: Option<Setting>,
    /// `auth.token.issuer`.
    pub issuer: Option<Setting>,
    /// `auth.token.rootcertbundle`.
    pub rootcertbundle: Option<Setting>,
    /// `auth.token.jwks` (3.x).
    pub jwks: Option<Setting>,
    /// `auth.token.signingalgorithms` (3.x), when set.
    pub signing_algorithms: Option<Vec<String>>,
    /// Other `auth` methods the file names (e.g. `htpasswd`), when there is no `token`.
    pub other_auth: Vec<String>,
}

impl RegistryToken {
    /// True when the file (or the environment) configures token auth at all.
    pub fn has_token_auth(&self) -> bool {
        self.realm.is_some()
            || self.service.is_some()
            || self.issuer.is_some()
            || self.rootcertbundle.is_some()
            || self.jwks.is_some()
    }

    /// The version the settings imply: `jwks` and `signingalgorithms` exist only in 3.x.
    pub fn implied_version(&self) -> Option<RegistryVersion> {
        (self.jwks.is_some() || self.signing_algorithms.is_some()).then_some(RegistryVersion::V3_1)
    }
}

#[derive(Debug, Default, Deserialize)]
struct File {
    #[serde(default)]
    auth: Option<HashMap<String, serde_json::Value>>,
}

#[derive(Debug, Default, Deserialize)]
struct TokenFile {
    realm: Option<String>,
    service: Option<String>,
    issuer: Option<String>,
    rootcertbundle: Option<String>,
    jwks: Option<String>,
    signingalgorithms: Option<Vec<String>>,
}

/// Why the registry's configuration cannot be read. Usage errors: `doctor` exits 2.
#[derive(Debug, thiserror::Error)]
pub enum RegistryConfigError {
    /// The file cannot be read or is not YAML.
    #[error("cannot read the registry configuration {path}: {reason}")]
    Read {
        /// The file.
        path: String,
        /// What went wrong.
        reason: String,
    },
    /// `auth.token` is there but not a map of the expected settings.
    #[error("the registry configuration {path}: auth.token: {reason}")]
    Token {
        /// The file.
        path: String,
        /// What is wrong.
        reason: String,
    },
}

/// The overrides the registry reads, in the order of [`RegistryToken`]'s fields.
pub const ENV_OVERRIDES: [&str; 5] = [
    "REGISTRY_AUTH_TOKEN_REALM",
    "REGISTRY_AUTH_TOKEN_SERVICE",
    "REGISTRY_AUTH_TOKEN_ISSUER",
    "REGISTRY_AUTH_TOKEN_ROOTCERTBUNDLE",
    "REGISTRY_AUTH_TOKEN_JWKS",
];

/// Reads `path` and applies the overrides found in `env` (the registry's environment; the
/// process's own by default).
pub fn load(
    path: &Path,
    env: &HashMap<String, String>,
) -> Result<RegistryToken, RegistryConfigError> {
    let shown = path.display().to_string();
    let read = |reason: String| RegistryConfigError::Read {
        path: shown.clone(),
        reason,
    };
    if !path.is_file() {
        return Err(read("no such file".into()));
    }
    let file: File = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Yaml))
        .build()
        .and_then(config::Config::try_deserialize)
        .map_err(|e| read(e.to_string()))?;
    let auth = file.auth.unwrap_or_default();
    let token: TokenFile = match auth.get("token") {
        None | Some(serde_json::Value::Null) => TokenFile::default(),
        Some(value) => {
            serde_json::from_value(value.clone()).map_err(|e| RegistryConfigError::Token {
                path: shown.clone(),
                reason: e.to_string(),
            })?
        }
    };
    let from_file = |key: &str, value: Option<String>| {
        value.filter(|v| !v.is_empty()).map(|value| Setting {
            value,
            from: format!("auth.token.{key} in {shown}"),
        })
    };
    let overridden = |var: &str, file_value: Option<Setting>| match env.get(var) {
        Some(value) if !value.is_empty() => Some(Setting {
            value: value.clone(),
            from: var.to_owned(),
        }),
        _ => file_value,
    };
    let [realm, service, issuer, bundle, jwks] = ENV_OVERRIDES;
    let mut other_auth: Vec<String> = auth.keys().filter(|k| *k != "token").cloned().collect();
    other_auth.sort();
    Ok(RegistryToken {
        path: path.to_path_buf(),
        realm: overridden(realm, from_file("realm", token.realm)),
        service: overridden(service, from_file("service", token.service)),
        issuer: overridden(issuer, from_file("issuer", token.issuer)),
        rootcertbundle: overridden(bundle, from_file("rootcertbundle", token.rootcertbundle)),
        jwks: overridden(jwks, from_file("jwks", token.jwks)),
        signing_algorithms: token.signingalgorithms,
        other_auth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new().suffix(".yml").tempfile().unwrap();
        std::fs::write(f.path(), text).unwrap();
        f
    }

    #[test]
    fn reads_the_token_settings_and_applies_the_environment_over_them() {
        let f = write(
            "version: 0.1\nauth:\n  token:\n    realm: http://127.0.0.1:5001/token\n    \
             service: registry.test\n    issuer: regauth\n    rootcertbundle: /b.pem\n",
        );
        let env = HashMap::from([("REGISTRY_AUTH_TOKEN_ISSUER".to_owned(), "other".to_owned())]);
        let t = load(f.path(), &env).unwrap();
        assert_eq!(t.service.as_ref().unwrap().value, "registry.test");
        let issuer = t.issuer.clone().unwrap();
        assert_eq!(
            (issuer.value.as_str(), issuer.from.as_str()),
            ("other", "REGISTRY_AUTH_TOKEN_ISSUER")
        );
        assert!(
            t.realm
                .as_ref()
                .unwrap()
                .from
                .starts_with("auth.token.realm in ")
        );
        assert_eq!(t.implied_version(), None);
    }

    #[test]
    fn jwks_and_signing_algorithms_mean_registry_3_and_other_auth_is_named() {
        let f =
            write("auth:\n  token:\n    jwks: /j.json\n    signingalgorithms: [ES256, EdDSA]\n");
        let t = load(f.path(), &HashMap::new()).unwrap();
        assert_eq!(t.implied_version(), Some(RegistryVersion::V3_1));
        assert_eq!(t.signing_algorithms.unwrap(), ["ES256", "EdDSA"]);
        let f = write("auth:\n  htpasswd:\n    realm: x\n    path: /h\n");
        let t = load(f.path(), &HashMap::new()).unwrap();
        assert!(!t.has_token_auth());
        assert_eq!(t.other_auth, ["htpasswd"]);
    }

    #[test]
    fn versions_parse_and_a_missing_file_is_an_error() {
        assert_eq!(RegistryVersion::parse("2.8.3"), Some(RegistryVersion::V2));
        assert_eq!(RegistryVersion::parse("3.0.0"), Some(RegistryVersion::V3_0));
        assert_eq!(
            RegistryVersion::parse("v3.1.1"),
            Some(RegistryVersion::V3_1)
        );
        assert_eq!(RegistryVersion::parse("3"), Some(RegistryVersion::V3_1));
        assert_eq!(RegistryVersion::parse("1.0"), None);
        let err = load(Path::new("/nonexistent/config.yml"), &HashMap::new()).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/config.yml"), "{err}");
    }
}
