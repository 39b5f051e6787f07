//! `regauth check`: load everything `serve` would load (settings, users, rules, LDAP, keys, TLS,
//! federation, refresh secret) and report each problem; exit non-zero when there is one.

use std::path::PathBuf;
use std::sync::Arc;

use regauth::clock::SystemClock;
use regauth::config::{self, Validated};
use regauth::fs::watch;
use regauth::identity::federation::{self, Federation};
use regauth::identity::{LdapSource, UserDirectory};
use regauth::issue::refresh;
use regauth::keys::{self, NextKey};

pub(super) fn users_of(config: &Validated) -> anyhow::Result<UserDirectory> {
    Ok(UserDirectory::start(
        config.users.clone(),
        config.auth.htpasswd.clone(),
        watch::WatchOptions::default(),
    )?)
}

pub(super) fn ldap_of(config: &Validated) -> anyhow::Result<Option<LdapSource>> {
    Ok(config.ldap.clone().map(LdapSource::new).transpose()?)
}

/// Reads the LDAP files and tries one service-account bind; an unreachable directory is a
/// warning (check may run where the directory is not reachable), a bad file an error.
fn check_ldap(config: &Validated, problems: &mut Vec<String>) {
    let ldap = match ldap_of(config) {
        Ok(Some(ldap)) => ldap,
        Ok(None) => {
            println!("ldap: off");
            return;
        }
        Err(e) => {
            problems.push(format!("ldap: {e:#}"));
            return;
        }
    };
    let s = ldap.settings();
    let groups = match (&s.group_filter, &s.groups_attribute) {
        (Some(filter), _) => format!("groups by {filter}"),
        (None, Some(attr)) => format!("groups from {attr}"),
        (None, None) => "no groups".to_owned(),
    };
    println!(
        "ldap: {}{} under {:?}, users by {}, {groups}",
        s.url,
        if s.start_tls { " (StartTLS)" } else { "" },
        s.base_dn,
        s.user_filter
    );
    if s.sends_plaintext() {
        println!(
            "warning: ldap: {}",
            regauth::identity::ldap::PLAINTEXT_WARNING
        );
    }
    match ldap.probe() {
        Ok(Ok(())) => println!("ldap: the service account bind works"),
        Ok(Err(refused)) => problems.push(format!("ldap: {refused}")),
        Err(unreachable) => println!("warning: ldap: {unreachable}"),
    }
}

pub(super) fn check(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = config::load(config_path.as_deref())?;
    let mut problems = Vec::new();
    match users_of(&config) {
        Ok(users) => {
            let (total, from_file) = users.counts();
            println!("users: {total} ({from_file} from the htpasswd file)");
            let costs = users.costs();
            if costs.len() > 1 {
                println!(
                    "warning: the users' bcrypt hashes use costs {costs:?}: unknown names are \
                     checked at cost {}, so a user with a cheaper hash answers measurably faster \
                     and an attacker can tell which names exist; re-hash them at one cost",
                    users.dummy_cost()
                );
            }
        }
        Err(e) => problems.push(format!("users: {e:#}")),
    }
    println!(
        "rules: {}{}",
        config.acl.len(),
        if config.default_rules.is_some() {
            " (defaults)"
        } else {
            ""
        }
    );
    check_ldap(&config, &mut problems);
    check_keys(&config, &mut problems);
    if let Some(files) = &config.tls {
        match regauth::server::tls::check(files) {
            Ok(c) => println!(
                "tls: {} (serial {}, expires {})",
                c.subject, c.serial, c.not_after
            ),
            Err(e) => problems.push(format!("tls: {e}")),
        }
    }
    check_federation(&config, &mut problems);
    for warning in federation::warnings(&config.federation, config.acl.names_federation()) {
        println!("warning: {warning}");
    }
    let refresh_secret = config.refresh_secret_file();
    if refresh_secret.exists() {
        match refresh::RefreshTokens::load(&refresh_secret, config.auth.refresh_ttl_seconds) {
            Ok(tokens) => println!(
                "refresh tokens: on ({})",
                tokens.describe(chrono::Utc::now()).join(", ")
            ),
            Err(e) => problems.push(format!("refresh secret: {e}")),
        }
    } else {
        println!(
            "refresh tokens: off ({0} does not exist; to turn them on: head -c 32 /dev/urandom | base64 > {0})",
            refresh_secret.display()
        );
    }
    if problems.is_empty() {
        println!("ok");
        Ok(())
    } else {
        for p in &problems {
            eprintln!("error: {p}");
        }
        anyhow::bail!("{} problem(s) found", problems.len())
    }
}

/// Loads the keys as `serve` does and reports them, and anything that stops a registry from
/// accepting their tokens.
fn check_keys(config: &Validated, problems: &mut Vec<String>) {
    let loaded = match keys::load_from_settings(&config.key, config.key_spec()) {
        Ok(loaded) => loaded,
        Err(e) => {
            problems.push(format!("key: {e}"));
            return;
        }
    };
    let mut published = vec![("key", loaded.signing.key)];
    match loaded.next {
        NextKey::NotConfigured => {}
        NextKey::Missing(path) => {
            println!("next key: none ({} does not exist)", path.display());
        }
        NextKey::Loaded(next) => published.push(("next key", next.key)),
        NextKey::Unusable(e) => problems.push(format!("next key: {e}")),
    }
    for (what, key) in published {
        println!("{what}: {}", key.label());
        if let Some(problem) = key.registry_thumbprint_problem() {
            problems.push(format!("{what}: {problem}"));
        }
    }
}

/// Loads each federation issuer's keys as `serve` would (a JWKS file must be usable; a URL is
/// fetched once, and a failure there is a warning: the server retries on use).
fn check_federation(config: &Validated, problems: &mut Vec<String>) {
    let issuers = &config.federation;
    if issuers.is_empty() {
        return;
    }
    let federation = match Federation::new(issuers, Arc::new(SystemClock)) {
        Ok(federation) => federation,
        Err(e) => {
            problems.push(format!("federation: {e}"));
            return;
        }
    };
    federation.prefetch();
    for status in federation.issuers() {
        if status.keys == 0 {
            println!(
                "warning: federation issuer {:?}: no keys could be fetched from {} now; \
                 its tokens get 503 until they can",
                status.issuer, status.source
            );
        } else {
            println!(
                "federation issuer {:?}: {} key(s) from {}",
                status.issuer, status.keys, status.source
            );
        }
    }
}
