//! The in-memory copy of the active tokens that sign-ins read: secret hash → token.

use std::collections::HashMap;
use std::sync::Arc;

use super::db::TokenRow;
use super::secret::{self, SecretHash};
use crate::identity::tokens::{TokenGrant, TokenScopes};

/// The tokens and logouts as of one revision of the store.
#[derive(Debug, Default)]
pub struct Snapshot {
    /// The store's revision counter when read.
    pub(super) revision: i64,
    /// False until the first read.
    pub(super) loaded: bool,
    tokens: HashMap<SecretHash, Entry>,
    /// `regauth logout`: owner → refresh tokens issued at or before this are void.
    pub(super) logouts: HashMap<String, i64>,
}

#[derive(Debug)]
struct Entry {
    hash: SecretHash,
    expires_at: Option<i64>,
    grant: Arc<TokenGrant>,
}

impl Snapshot {
    pub(super) fn build(revision: i64, rows: &[TokenRow], logouts: Vec<(String, i64)>) -> Snapshot {
        let mut tokens = HashMap::with_capacity(rows.len());
        for row in rows {
            let Some(hash) = secret::from_hex(&row.secret_sha256) else {
                log::warn!("store: token {} has a malformed hash; ignored", row.id);
                continue;
            };
            let scopes = match TokenScopes::parse(&row.scopes) {
                Ok(scopes) => scopes,
                Err(e) => {
                    log::warn!("store: token {} ignored: {e}", row.id);
                    continue;
                }
            };
            tokens.insert(
                hash,
                Entry {
                    hash,
                    expires_at: row.expires_at,
                    grant: Arc::new(TokenGrant {
                        id: row.id.clone(),
                        name: row.name.clone(),
                        owner: row.owner.clone(),
                        robot: row.robot,
                        scopes,
                    }),
                },
            );
        }
        Snapshot {
            revision,
            loaded: true,
            tokens,
            logouts: logouts.into_iter().collect(),
        }
    }

    /// Number of active tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// True without tokens.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token `password` is, when it belongs to `username` and has not expired at `now`
    /// (unix seconds): one SHA-256, one map lookup, one constant-time comparison.
    pub(super) fn find(&self, username: &str, password: &str, now: i64) -> Option<Arc<TokenGrant>> {
        let hash = secret::hash(password);
        let entry = self.tokens.get(&hash)?;
        aws_lc_rs::constant_time::verify_slices_are_equal(&entry.hash, &hash).ok()?;
        if entry.grant.owner != username {
            return None;
        }
        if entry.expires_at.is_some_and(|until| now >= until) {
            return None;
        }
        Some(Arc::clone(&entry.grant))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(secret: &str, owner: &str, expires_at: Option<i64>) -> TokenRow {
        TokenRow {
            id: "0123456789abcdef".into(),
            name: "laptop".into(),
            owner: owner.into(),
            robot: false,
            scopes: vec!["repository:alice/*:pull".into()],
            secret_sha256: secret::to_hex(&secret::hash(secret)),
            created_at: 1_000,
            expires_at,
            last_used_at: None,
        }
    }

    #[test]
    fn a_token_is_found_for_its_owner_until_the_second_it_expires() {
        let secret = secret::generate().unwrap();
        let snapshot = Snapshot::build(1, &[row(&secret, "alice", Some(2_000))], Vec::new());
        assert_eq!(
            snapshot.find("alice", &secret, 1_999).unwrap().owner,
            "alice"
        );
        assert!(snapshot.find("alice", &secret, 2_000).is_none());
        assert!(snapshot.find("bob", &secret, 1_500).is_none());
        let other = secret::generate().unwrap();
        assert!(snapshot.find("alice", &other, 1_500).is_none());
    }
}
