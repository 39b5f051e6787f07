//! Who the caller is. Today every caller is anonymous: credentials are read and checked for
//! form, but no user store exists yet, so a well-formed `Authorization: Basic` is treated as
//! anonymous and a malformed one is refused.

use actix_web::http::header::HeaderValue;
use data_encoding::BASE64;

/// The authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    subject: String,
}

impl Identity {
    /// A caller that did not authenticate; its `sub` is `""`.
    pub fn anonymous() -> Self {
        Identity {
            subject: String::new(),
        }
    }

    /// The `sub` claim.
    pub fn subject(&self) -> &str {
        &self.subject
    }

    /// True for callers that did not authenticate.
    pub fn is_anonymous(&self) -> bool {
        self.subject.is_empty()
    }
}

/// Why authentication failed. Messages never echo credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthError {
    /// The Authorization header is not valid `Basic base64(user:password)`.
    #[error("the Authorization header is malformed; expected Basic credentials")]
    MalformedHeader,
}

/// Basic credentials as sent.
struct Credentials {
    username: String,
}

fn parse_basic(header: &HeaderValue) -> Result<Credentials, AuthError> {
    let text = header.to_str().map_err(|_| AuthError::MalformedHeader)?;
    let (scheme, encoded) = text
        .trim()
        .split_once(' ')
        .ok_or(AuthError::MalformedHeader)?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return Err(AuthError::MalformedHeader);
    }
    let decoded = BASE64
        .decode(encoded.trim().as_bytes())
        .map_err(|_| AuthError::MalformedHeader)?;
    let decoded = String::from_utf8(decoded).map_err(|_| AuthError::MalformedHeader)?;
    let (username, _password) = decoded.split_once(':').ok_or(AuthError::MalformedHeader)?;
    Ok(Credentials {
        username: username.to_owned(),
    })
}

/// Decides who the caller is from its `Authorization` header.
pub fn authenticate(header: Option<&HeaderValue>) -> Result<Identity, AuthError> {
    let Some(header) = header else {
        return Ok(Identity::anonymous());
    };
    let credentials = parse_basic(header)?;
    log::debug!(
        "credentials for {:?} ignored: no user store is configured, caller is anonymous",
        credentials.username
    );
    Ok(Identity::anonymous())
}

#[cfg(test)]
#[allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::type_complexity
)]
mod tests {
    use super::*;

    fn header(s: &str) -> HeaderValue {
        HeaderValue::from_str(s).unwrap()
    }

    #[test]
    fn no_header_is_anonymous() {
        assert!(authenticate(None).unwrap().is_anonymous());
    }

    #[test]
    fn well_formed_basic_is_anonymous_for_now() {
        let h = header(&format!("Basic {}", BASE64.encode(b"alice:s3cret")));
        assert_eq!(authenticate(Some(&h)).unwrap().subject(), "");
        let h = header(&format!("basic  {}", BASE64.encode(b"alice:")));
        assert!(authenticate(Some(&h)).is_ok());
    }

    #[test]
    fn malformed_headers_are_refused() {
        for bad in [
            "Basic",
            "Basic !!!",
            "Bearer abc",
            &format!("Basic {}", BASE64.encode(b"no-colon")),
            &format!("Basic {}", BASE64.encode(&[0xff, 0xfe, b':'])),
        ] {
            assert_eq!(
                authenticate(Some(&header(bad))),
                Err(AuthError::MalformedHeader),
                "{bad}"
            );
        }
    }
}
