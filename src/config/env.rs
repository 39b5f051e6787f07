//! The `REGAUTH_` variables: which are settings, which are read for something else, and the
//! check that stops the start on one that is neither (a mistyped setting).

use std::collections::HashMap;

use super::ConfigError;

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "REGAUTH";

/// `REGAUTH_` variables that are not settings but are read all the same (besides the one
/// `key.env` names).
pub const NOT_SETTINGS: &[&str] = &["REGAUTH_CONFIG", "REGAUTH_SIGNING_KEY"];

/// The top-level sections, as variables spell them.
const SECTIONS: &[&str] = &[
    "SERVER",
    "TOKEN",
    "KEY",
    "ACCESS",
    "USERS",
    "AUTH",
    "LDAP",
    "ACL",
    "FEDERATION",
    "AUDIT",
    "LOG",
    "STORE",
];

/// Every `REGAUTH_` variable must be a setting (`REGAUTH_<SECTION>__<KEY>`, which the loader
/// checks against the known keys), one of [`NOT_SETTINGS`], or `key_env` (the variable
/// `key.env` names): a mistyped setting must stop the start, not be ignored.
pub(super) fn check_variables(
    key_env: &str,
    env: &HashMap<String, String>,
) -> Result<(), ConfigError> {
    let mut names: Vec<&String> = env.keys().collect();
    names.sort();
    for name in names {
        let Some(rest) = name.strip_prefix("REGAUTH_") else {
            continue;
        };
        if is_setting_var(name) || NOT_SETTINGS.contains(&name.as_str()) || *name == key_env {
            continue;
        }
        let hint = SECTIONS
            .iter()
            .find_map(|section| {
                rest.strip_prefix(section)
                    .and_then(|key| key.strip_prefix('_'))
                    .filter(|key| !key.is_empty())
                    .map(|key| format!(" (did you mean REGAUTH_{section}__{key}?)"))
            })
            .unwrap_or_default();
        return Err(ConfigError::UnknownVariable {
            name: name.clone(),
            hint,
        });
    }
    Ok(())
}

/// True for `REGAUTH_<SECTION>__<KEY>` names.
pub(super) fn is_setting_var(name: &str) -> bool {
    name.strip_prefix("REGAUTH_")
        .is_some_and(|rest| rest.contains("__"))
}
