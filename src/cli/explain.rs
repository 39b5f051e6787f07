//! `regauth explain`: which identity source knows an account, which rule decides each scope for
//! it, and what it is granted.

use std::collections::HashSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use regauth::clock::SystemClock;
use regauth::config::{self, Validated};
use regauth::identity::federation::{Federated, Federation, TOKEN_USER};
use regauth::identity::{Identity, IdentitySource, Sources};
use regauth::issue::pipeline::{TokenRequest, authorize};
use regauth::policy::RequestContext;

pub(super) fn explain(
    config_path: Option<PathBuf>,
    account: &str,
    scopes: &[String],
    service: Option<String>,
    ip: Option<IpAddr>,
    token_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = config::load(config_path.as_deref())?;
    let users: Arc<dyn IdentitySource> = Arc::new(super::check::users_of(&config)?);
    let ldap =
        super::check::ldap_of(&config)?.map(|source| Arc::new(source) as Arc<dyn IdentitySource>);
    let sources = Sources::standard(None, users, ldap);
    let mut issuer = None;
    let identity = if let Some(path) = token_file {
        let federated = explain_token(&config, &path)?;
        issuer = Some(federated.issuer);
        federated.identity
    } else if account.is_empty() {
        Identity::anonymous()
    } else if !sources.is_configured() && config.federation.is_empty() {
        // As the server does: with nobody to sign in, credentials are ignored.
        println!(
            "note: no identity source is configured (no users, htpasswd file, ldap or \
             federation), so the server ignores credentials and every caller is anonymous; \
             evaluating {account:?} as the anonymous caller"
        );
        Identity::anonymous()
    } else {
        match sources.describe(account) {
            Ok(Some(identity)) => identity,
            Ok(None) => {
                println!(
                    "note: {account:?} is not known to any identity source ({}); evaluating \
                     it as an account without groups",
                    sources.names().join(", ")
                );
                Identity::user(account, Vec::new())
            }
            Err(e) => {
                println!(
                    "note: cannot look {account:?} up ({e}); evaluating it as an account \
                     without groups"
                );
                Identity::user(account, Vec::new())
            }
        }
    };
    let service = service
        .or_else(|| config.token.services.first().cloned())
        .unwrap_or_else(|| "registry".into());
    // The server's own checks: a service it does not issue for, or scopes it would refuse,
    // are refused here too, with the server's message.
    let services: HashSet<String> = config.token.services.iter().cloned().collect();
    let request = TokenRequest::check(&services, &service, scopes.iter().map(String::as_str))
        .map_err(|e| anyhow::anyhow!("the server would refuse this request: {e}"))?;
    let scopes = request.scopes();
    let ctx = RequestContext {
        identity: &identity,
        service: &service,
        ip,
    };
    let account = identity.subject().to_owned();
    let who = if let Some(issuer) = issuer {
        format!(
            "account {account:?} (source: federation (issuer {issuer}), groups: [{}])",
            identity.groups().join(", ")
        )
    } else if identity.is_anonymous() {
        "anonymous".to_owned()
    } else if identity.source().is_empty() {
        format!("account {account:?}")
    } else {
        format!(
            "account {account:?} (source: {}, groups: [{}])",
            identity.source(),
            identity.groups().join(", ")
        )
    };
    println!(
        "{who} on service {service:?}{}",
        ip.map(|i| format!(" from {i}")).unwrap_or_default()
    );
    // The server's own authorize step (`regauth::issue::pipeline`), so what is shown is what
    // a token would grant.
    for decided in authorize(&config.acl, &ctx, scopes) {
        println!(
            "{}\n  granted: [{}]\n  allowed: [{}]\n  by:      {}",
            decided.scope, decided.granted, decided.allowed, decided.rule
        );
    }
    Ok(())
}

/// The caller a workload token stands for, checked as a login would check it (its keys are
/// fetched when they come from a URL); the reason when it would be refused.
fn explain_token(config: &Validated, path: &std::path::Path) -> anyhow::Result<Federated> {
    let text = if path.as_os_str() == "-" {
        let mut text = String::new();
        std::io::Read::read_to_string(&mut std::io::stdin().lock(), &mut text)
            .context("reading the token from standard input")?;
        text
    } else {
        std::fs::read_to_string(path)
            .with_context(|| format!("reading the token from {}", path.display()))?
    };
    let federation = Federation::new(&config.federation, Arc::new(SystemClock))?;
    match federation.verify(TOKEN_USER, text.trim())? {
        Some(federated) => Ok(federated),
        None => anyhow::bail!(
            "{} does not hold a token of a configured federation issuer ({}); it would be \
             checked as a password",
            path.display(),
            federation
                .issuers()
                .iter()
                .map(|i| i.issuer.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}
