//! A key taken from an environment variable at start.
//!
//! A process's environment cannot change under it, so this provider loads once; rotating an
//! environment key means restarting the process (a rolling restart behind a load balancer).
//! Use the file provider for rotation without restarts.

use std::path::PathBuf;
use std::sync::Arc;

use chrono::Utc;

use super::{KeyProvider, KeySpec, KeyStatus, ProviderError, SigningKey};

/// Signs with key material from an environment variable: PEM, or a base64 HMAC secret.
pub struct EnvKeyProvider {
    key: Arc<SigningKey>,
    status: KeyStatus,
}

impl EnvKeyProvider {
    /// Reads `var` from the process environment.
    pub fn from_env(
        var: &str,
        certificate: Option<PathBuf>,
        spec: KeySpec,
    ) -> Result<EnvKeyProvider, ProviderError> {
        let value = std::env::var(var).unwrap_or_default();
        EnvKeyProvider::from_value(var, &value, certificate, spec)
    }

    /// Builds the provider from the variable's value (separated out for tests).
    pub fn from_value(
        var: &str,
        value: &str,
        certificate: Option<PathBuf>,
        spec: KeySpec,
    ) -> Result<EnvKeyProvider, ProviderError> {
        if value.trim().is_empty() {
            return Err(ProviderError::EnvMissing(var.to_owned()));
        }
        // Some deployment tools flatten a PEM into one line with literal `\n`.
        let value = if value.contains("-----BEGIN") && !value.contains('\n') {
            value.replace("\\n", "\n")
        } else {
            value.to_owned()
        };
        let cert = super::read_certificate(certificate.as_deref())?;
        let key =
            SigningKey::from_bytes(value.as_bytes(), cert.as_deref(), spec).map_err(|error| {
                ProviderError::Key {
                    source_desc: format!("environment variable {var}"),
                    error,
                }
            })?;
        super::warn_registry_thumbprint(
            &key,
            &format!("signing key from environment variable {var}"),
        );
        let status = KeyStatus::new(format!("env {var}"), &key, Utc::now());
        Ok(EnvKeyProvider {
            key: Arc::new(key),
            status,
        })
    }
}

impl KeyProvider for EnvKeyProvider {
    fn signing_key(&self) -> Arc<SigningKey> {
        Arc::clone(&self.key)
    }

    fn status(&self) -> KeyStatus {
        self.status.clone()
    }
}
