//! Finding a user and the user's groups with the service account, and reading names out of
//! the entries found.

use std::time::Instant;

use ldap3::{Scope, SearchEntry, SearchOptions};

use super::pool::{Broken, Conn, left, transport};
use super::{LdapSource, fold_name};

/// Most groups collected for one user.
const MAX_GROUPS: usize = 1_000;

/// LDAP result code for a search that matched more entries than its size limit (RFC 4511,
/// appendix A).
const RC_SIZE_LIMIT_EXCEEDED: u32 = 4;

/// Escapes a value for an LDAP filter (RFC 4515): `*`, `(`, `)`, `\` and NUL become `\2a`,
/// `\28`, `\29`, `\5c` and `\00`.
pub fn escape_filter_value(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '*' => out.push_str("\\2a"),
            '(' => out.push_str("\\28"),
            ')' => out.push_str("\\29"),
            '\\' => out.push_str("\\5c"),
            '\0' => out.push_str("\\00"),
            c => out.push(c),
        }
    }
    out
}

/// What the user search found.
pub(super) enum FoundUser {
    None,
    One(SearchEntry),
    Several,
    Failed(String),
}

impl LdapSource {
    /// Searches the user with the service account: `Ok(None)` when no entry matches.
    pub(super) fn find_user(
        &self,
        conn: &mut Conn,
        username: &str,
        deadline: Instant,
    ) -> Result<FoundUser, Broken> {
        let filter = self
            .settings
            .user_filter
            .replace("{username}", &escape_filter_value(username));
        let mut attrs: Vec<&str> = Vec::new();
        if let Some(attr) = &self.settings.groups_attribute {
            attrs.push(attr);
        }
        if let Some(attr) = &self.name_attribute {
            attrs.push(attr);
        }
        if attrs.is_empty() {
            // RFC 4511: "1.1" asks for no attributes.
            attrs.push("1.1");
        }
        let result = conn
            .ldap
            .with_search_options(SearchOptions::new().sizelimit(2))
            .with_timeout(left(deadline)?)
            .search(&self.settings.base_dn, Scope::Subtree, &filter, attrs)
            .map_err(transport)?;
        let (entries, status) = (result.0, result.1);
        let entries: Vec<SearchEntry> = entries
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .collect();
        if status.rc == RC_SIZE_LIMIT_EXCEEDED || entries.len() > 1 {
            return Ok(FoundUser::Several);
        }
        if status.rc != 0 {
            return Ok(FoundUser::Failed(format!(
                "the user search under {:?} failed (result code {}: {})",
                self.settings.base_dn,
                status.rc,
                status.text.trim()
            )));
        }
        Ok(entries
            .into_iter()
            .next()
            .map_or(FoundUser::None, FoundUser::One))
    }

    /// The user's groups, with the connection bound as the service account.
    pub(super) fn groups_of(
        &self,
        conn: &mut Conn,
        username: &str,
        entry: &SearchEntry,
        deadline: Instant,
    ) -> Result<Result<Vec<String>, String>, Broken> {
        if let Some(attr) = &self.settings.groups_attribute {
            let mut groups: Vec<String> = attribute(entry, attr)
                .iter()
                .map(|dn| group_name_from_dn(dn))
                .take(MAX_GROUPS)
                .collect();
            groups.sort();
            groups.dedup();
            return Ok(Ok(groups));
        }
        let Some(filter) = &self.settings.group_filter else {
            return Ok(Ok(Vec::new()));
        };
        let filter = filter
            .replace("{dn}", &escape_filter_value(&entry.dn))
            .replace("{username}", &escape_filter_value(username));
        let base = self
            .settings
            .group_base_dn
            .as_deref()
            .unwrap_or(&self.settings.base_dn);
        let name_attr = self.settings.group_name_attribute.as_str();
        let result = conn
            .ldap
            .with_search_options(SearchOptions::new().sizelimit(MAX_GROUPS as i32))
            .with_timeout(left(deadline)?)
            .search(base, Scope::Subtree, &filter, vec![name_attr])
            .map_err(transport)?;
        if result.1.rc != 0 && result.1.rc != RC_SIZE_LIMIT_EXCEEDED {
            return Ok(Err(format!(
                "the group search under {base:?} failed (result code {}: {})",
                result.1.rc,
                result.1.text.trim()
            )));
        }
        let mut groups: Vec<String> = result
            .0
            .into_iter()
            .filter(|e| !e.is_ref() && !e.is_intermediate())
            .map(SearchEntry::construct)
            .filter_map(|group| attribute(&group, name_attr).first().cloned())
            .collect();
        groups.sort();
        groups.dedup();
        Ok(Ok(groups))
    }

    pub(super) fn subject(&self, username: &str, entry: &SearchEntry) -> String {
        // The directory's spelling of the name, when it is the same name: `ALICE`, ` alice`
        // and `alice` find the same entry, and rules see one account.
        let folded = fold_name(username);
        self.name_attribute
            .as_deref()
            .and_then(|attr| {
                attribute(entry, attr)
                    .iter()
                    .find(|v| fold_name(v) == folded)
                    .cloned()
            })
            .unwrap_or_else(|| username.to_owned())
    }
}

/// The values of `name` in `entry`, matched without regard to case.
fn attribute<'a>(entry: &'a SearchEntry, name: &str) -> &'a [String] {
    entry
        .attrs
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map_or(&[], |(_, v)| v.as_slice())
}

/// `cn=dev,ou=groups,dc=example,dc=org` → `dev` (escaped characters kept as written).
fn group_name_from_dn(dn: &str) -> String {
    let mut first = String::new();
    let mut escaped = false;
    for c in dn.chars() {
        if escaped {
            first.push(c);
            escaped = false;
            continue;
        }
        match c {
            '\\' => escaped = true,
            ',' | '+' => break,
            c => first.push(c),
        }
    }
    match first.split_once('=') {
        Some((_, value)) if !value.trim().is_empty() => value.trim().to_owned(),
        _ => dn.to_owned(),
    }
}

/// The attribute of a simple `(attr={username})` part of `filter`.
pub(super) fn name_attribute(filter: &str) -> Option<String> {
    let at = filter.find("={username})")?;
    let start = filter[..at].rfind('(')? + 1;
    let attr = &filter[start..at];
    (!attr.is_empty() && attr.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        .then(|| attr.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_metacharacters_in_user_names_are_escaped() {
        assert_eq!(escape_filter_value("*)(uid=*"), "\\2a\\29\\28uid=\\2a");
        assert_eq!(escape_filter_value("a\\b\0"), "a\\5cb\\00");
        assert_eq!(escape_filter_value("jöhn.doe"), "jöhn.doe");
    }

    #[test]
    fn group_names_come_from_the_first_component_of_their_dn() {
        assert_eq!(
            group_name_from_dn("cn=dev,ou=groups,dc=example,dc=org"),
            "dev"
        );
        assert_eq!(
            group_name_from_dn("CN=Domain Users,CN=Users,DC=corp"),
            "Domain Users"
        );
        assert_eq!(group_name_from_dn("cn=a\\,b,dc=x"), "a,b");
        assert_eq!(group_name_from_dn("plain"), "plain");
    }

    #[test]
    fn the_name_attribute_is_read_from_a_simple_filter_part() {
        assert_eq!(name_attribute("(uid={username})").as_deref(), Some("uid"));
        assert_eq!(
            name_attribute("(&(objectClass=user)(sAMAccountName={username}))").as_deref(),
            Some("sAMAccountName")
        );
        assert_eq!(
            name_attribute("(|(uid={username})(mail={username}))").as_deref(),
            Some("uid")
        );
        assert_eq!(name_attribute("(uid=*{username})"), None);
    }
}
