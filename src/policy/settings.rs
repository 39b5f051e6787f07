//! `access.*`: the defaults for callers when no `acl` is configured. [`crate::config`]
//! composes this section into its settings and checks it.

use serde::Deserialize;

/// `access.*`
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AccessSettings {
    /// Actions anonymous callers get on repositories under the default rules (`["pull"]`
    /// when unset). Only meaningful without `acl`.
    pub anonymous: Option<Vec<String>>,
}
