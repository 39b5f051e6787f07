//! The `regauth` command: `serve`, `keygen`, `bundle`, `jwks`, `hash-password`, `check`,
//! `explain`, `probe` and `doctor`.

use std::io::BufRead;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};

use regauth::clock::SystemClock;
use regauth::config::{self, Validated};
use regauth::identity::federation::{self, Federated, Federation, TOKEN_USER};
use regauth::identity::{
    Identity, IdentitySource, LdapSource, MAX_PASSWORD_BYTES, Sources, UserDirectory,
};
use regauth::keys::{self, Algorithm, NextKey, generate};
use regauth::policy::{Policy, RequestContext};
use regauth::startup::Application;
use regauth::{publish, refresh, scope, watch};

mod cli_doctor;
mod cli_token;

#[derive(Parser)]
#[command(
    name = "regauth",
    version,
    about = "Token authentication server for container registries"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the token server.
    Serve {
        /// YAML or TOML settings file (defaults apply without one).
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Write a new signing key (DIR/signing.key, mode 0600) and a self-signed certificate.
    Keygen {
        /// es256, es384, es512, rs256, rs384, rs512, ps256, ps384, ps512, eddsa, hs256, hs384, hs512.
        #[arg(long, default_value = "es256")]
        alg: Algorithm,
        /// Output directory.
        #[arg(long, default_value = "keys")]
        out: PathBuf,
        /// Overwrite existing files.
        #[arg(long)]
        force: bool,
        /// Also write DIR/refresh.secret (unless it exists), which turns refresh tokens on.
        #[arg(long)]
        refresh_secret: bool,
    },
    /// Print the PEM certificates a registry should trust now (its rootcertbundle): those of
    /// the signing and next keys, or the anchor of their x5c chains.
    Bundle {
        /// YAML or TOML settings file, as for serve.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the JWK Set of the signing and next keys (e.g. for registry 3.x's jwks file).
    Jwks {
        /// YAML or TOML settings file, as for serve.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Print the signing key's public key as PEM (SubjectPublicKeyInfo), for verifiers that
    /// trust one key file, such as Pulp's PUBLIC_KEY_PATH.
    PublicKey {
        /// YAML or TOML settings file, as for serve.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// Print key.next's public key instead.
        #[arg(long)]
        next: bool,
    },
    /// Read a password on standard input and print its bcrypt hash (for users: or htpasswd).
    HashPassword {
        /// bcrypt cost (4 to 31); each step doubles the time a login takes.
        #[arg(long, default_value_t = 10)]
        cost: u32,
    },
    /// Validate the configuration, users, htpasswd file, rules and key; exit non-zero on errors.
    Check {
        /// YAML or TOML settings file.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
    },
    /// Show which identity source knows an account, which rule decides each scope for it,
    /// and what it is granted.
    Explain {
        /// YAML or TOML settings file.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// The account; omit it (or pass "") for an anonymous caller.
        #[arg(long, default_value = "")]
        account: String,
        /// A requested scope, e.g. repository:team/app:pull,push (repeatable).
        #[arg(long, required = true)]
        scope: Vec<String>,
        /// The requested service (default: the first of token.services).
        #[arg(long)]
        service: Option<String>,
        /// The client address, for ip rules.
        #[arg(long)]
        ip: Option<IpAddr>,
        /// Instead of --account: a file (`-` for standard input) holding a workload token,
        /// verified against `federation` as a login would be; the caller is its account.
        #[arg(long, conflicts_with = "account")]
        token_file: Option<PathBuf>,
    },
    /// GET an http:// URL and exit 0 on a 2xx answer (a container HEALTHCHECK without curl).
    Probe {
        /// e.g. http://127.0.0.1:5001/healthz (plain HTTP; use IP addresses, not names).
        /// Default: /healthz on server.admin_listen, else server.listen, from the settings.
        url: Option<String>,
        /// YAML or TOML settings file, as for serve (read only without a URL).
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// Seconds the whole exchange may take.
        #[arg(long, default_value_t = 2.0)]
        timeout: f64,
    },
    /// Check regauth's settings against a distribution registry's configuration (and, with
    /// --registry, a running registry): each mismatch with its fix; exit 0 only when all hold.
    Doctor(cli_doctor::Args),
    /// Create, list and revoke access tokens and robot accounts (needs store.url).
    #[command(subcommand)]
    Token(cli_token::TokenCommand),
    /// The token store: `regauth store migrate` (needs store.url).
    #[command(subcommand)]
    Store(cli_token::StoreCommand),
    /// Revoke every refresh token issued to USER so far (needs store.url).
    Logout {
        /// YAML or TOML settings file, as for serve.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// The user.
        user: String,
    },
}

fn main() -> ExitCode {
    regauth::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Doctor(args) => return cli_doctor::run(args),
        Command::Token(command) => cli_token::token(command),
        Command::Store(command) => cli_token::store(command),
        Command::Logout { config, user } => cli_token::logout(config, &user),
        Command::Serve { config } => serve(config),
        Command::Keygen {
            alg,
            out,
            force,
            refresh_secret,
        } => keygen(alg, out, force, refresh_secret),
        Command::Bundle { config } => print_published(config, publish::bundle),
        Command::Jwks { config } => print_published(config, publish::jwks),
        Command::PublicKey { config, next } => {
            let which = if next {
                publish::Which::Next
            } else {
                publish::Which::Signing
            };
            print_published(config, |c| publish::public_key(c, which))
        }
        Command::HashPassword { cost } => hash_password(cost),
        Command::Check { config } => check(config),
        Command::Explain {
            config,
            account,
            scope,
            service,
            ip,
            token_file,
        } => explain(config, &account, &scope, service, ip, token_file),
        Command::Probe {
            url,
            config,
            timeout,
        } => probe(url, config, timeout),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regauth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = config::load(config_path.as_deref())?;
    regauth::logging::set_format(config.settings.log.format);
    actix_web::rt::System::new().block_on(async move {
        let app = Application::build(config)?;
        app.run_until_stopped().await?;
        Ok(())
    })
}

/// Prints what `make` computes from the settings to stdout, its notes to stderr; prints
/// nothing to stdout on error.
fn print_published(
    config_path: Option<PathBuf>,
    make: impl FnOnce(&config::Validated) -> anyhow::Result<publish::Output>,
) -> anyhow::Result<()> {
    let config = config::load(config_path.as_deref())?;
    let output = make(&config)?;
    for note in output.notes {
        eprintln!("regauth: {note}");
    }
    print!("{}", output.text);
    Ok(())
}

fn keygen(alg: Algorithm, out: PathBuf, force: bool, refresh_secret: bool) -> anyhow::Result<()> {
    let written = generate::write(&out, alg, force)?;
    println!("key:          {}", written.key.display());
    if let Some(cert) = &written.certificate {
        println!("certificate:  {}", cert.display());
    }
    if let Some(kid) = &written.libtrust_kid {
        println!("libtrust kid: {kid}");
    }
    if let Some(t) = &written.thumbprint {
        println!("thumbprint:   {t}");
    }
    if alg.is_hmac() {
        println!("algorithm:    {alg} (set key.algorithm: {alg})");
    }
    let secret = out.join(config::REFRESH_SECRET_NAME);
    if refresh_secret && refresh::write_secret(&secret)? {
        println!(
            "refresh secret: {} (share it between replicas)",
            secret.display()
        );
    }
    Ok(())
}

fn probe(url: Option<String>, config_path: Option<PathBuf>, timeout: f64) -> anyhow::Result<()> {
    let timeout = std::time::Duration::try_from_secs_f64(timeout)
        .map_err(|_| anyhow::anyhow!("--timeout {timeout} is not a number of seconds"))?;
    let url = match url {
        Some(url) => url,
        None => regauth::probe::health_url(&config::load(config_path.as_deref())?),
    };
    let status = regauth::probe::probe(&url, timeout)?;
    println!("{status}");
    Ok(())
}

fn hash_password(cost: u32) -> anyhow::Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .context("reading the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(
        !password.is_empty(),
        "the password on standard input is empty"
    );
    anyhow::ensure!(
        password.len() <= MAX_PASSWORD_BYTES,
        "the password is {} bytes long; bcrypt uses only the first {MAX_PASSWORD_BYTES}, so \
         longer passwords are refused rather than silently cut",
        password.len()
    );
    let hash = bcrypt::hash_with_result(password, cost).context("hashing")?;
    println!("{}", hash.format_for_version(bcrypt::Version::TwoY));
    Ok(())
}

fn users_of(config: &Validated) -> anyhow::Result<UserDirectory> {
    let settings = &config.settings;
    Ok(UserDirectory::start(
        settings.users.clone(),
        settings.auth.htpasswd.clone(),
        watch::WatchOptions::default(),
    )?)
}

fn ldap_of(config: &Validated) -> anyhow::Result<Option<LdapSource>> {
    Ok(config
        .settings
        .ldap
        .clone()
        .map(LdapSource::new)
        .transpose()?)
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

fn check(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = config::load(config_path.as_deref())?;
    let settings = &config.settings;
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
        if settings.acl.is_none() {
            " (defaults)"
        } else {
            ""
        }
    );
    check_ldap(&config, &mut problems);
    check_keys(&config, &mut problems);
    if let Some(files) = &config.tls {
        match regauth::tls::check(files) {
            Ok(c) => println!(
                "tls: {} (serial {}, expires {})",
                c.subject, c.serial, c.not_after
            ),
            Err(e) => problems.push(format!("tls: {e}")),
        }
    }
    check_federation(&config, &mut problems);
    for warning in federation::warnings(&settings.federation, config.acl.names_federation()) {
        println!("warning: {warning}");
    }
    let refresh_secret = config.refresh_secret_file();
    if refresh_secret.exists() {
        match refresh::RefreshTokens::load(&refresh_secret, 60) {
            Ok(_) => println!("refresh tokens: on"),
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
    let loaded = match keys::load_from_settings(config) {
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
    let issuers = &config.settings.federation;
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

fn explain(
    config_path: Option<PathBuf>,
    account: &str,
    scopes: &[String],
    service: Option<String>,
    ip: Option<IpAddr>,
    token_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = config::load(config_path.as_deref())?;
    let users: Arc<dyn IdentitySource> = Arc::new(users_of(&config)?);
    let ldap = ldap_of(&config)?.map(|source| Arc::new(source) as Arc<dyn IdentitySource>);
    let sources = Sources::standard(None, users, ldap);
    let mut issuer = None;
    let identity = if let Some(path) = token_file {
        let federated = explain_token(&config, &path)?;
        issuer = Some(federated.issuer);
        federated.identity
    } else if account.is_empty() {
        Identity::anonymous()
    } else if !sources.is_configured() && config.settings.federation.is_empty() {
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
        .or_else(|| config.settings.token.services.first().cloned())
        .unwrap_or_else(|| "registry".into());
    let scopes = scope::parse_all(scopes.iter().map(String::as_str))?;
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
    for scope in &scopes {
        let decision = config.acl.decide(&ctx, scope);
        let granted = scope.actions.intersect(decision.allowed);
        println!(
            "{scope}\n  granted: [{granted}]\n  allowed: [{}]\n  by:      {}",
            decision.allowed, decision.explanation
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
    let federation = Federation::new(&config.settings.federation, Arc::new(SystemClock))?;
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
