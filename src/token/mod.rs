//! What a token says: the scope grammar clients ask in ([`scope`]) and the claims a token
//! carries ([`claims`]): the access entries granted, and who, for whom and until when. The
//! vocabulary the identity sources, the rules and the issuing pipeline ([`crate::issue`]) share;
//! it depends on nothing above it.

pub mod claims;
pub mod scope;
