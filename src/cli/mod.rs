//! The `regauth` command line: `serve`, `keygen`, `bundle`, `jwks`, `public-key`,
//! `hash-password`, `check`, `explain`, `probe` and `doctor`. One file per command; each parses
//! nothing itself (clap does) and calls into the library.

use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use regauth::keys::Algorithm;

mod check;
mod doctor;
mod doctor_cmd;
mod explain;
mod keygen;
mod probe;
mod publish;
mod refresh_secret;
mod serve;
mod token;

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
    Doctor(doctor_cmd::Args),
    /// Show, add, rotate or retire refresh secrets (auth.refresh_secret_file) by key id.
    RefreshSecret(refresh_secret::Args),
    /// Create, list and revoke access tokens and robot accounts (needs store.url).
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// The token store: `regauth store migrate` (needs store.url).
    #[command(subcommand)]
    Store(token::StoreCommand),
    /// Revoke every refresh token issued to USER so far (needs store.url).
    Logout {
        /// YAML or TOML settings file, as for serve.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// The user.
        user: String,
    },
}

pub fn main() -> ExitCode {
    regauth::telemetry::logging::init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Doctor(args) => return doctor_cmd::run(args),
        Command::Serve { config } => serve::serve(config),
        Command::RefreshSecret(args) => refresh_secret::run(args),
        Command::Token(command) => token::token(command),
        Command::Store(command) => token::store(command),
        Command::Logout { config, user } => token::logout(config, &user),
        Command::Keygen {
            alg,
            out,
            force,
            refresh_secret,
        } => keygen::keygen(alg, out, force, refresh_secret),
        Command::Bundle { config } => publish::print(config, publish::bundle),
        Command::Jwks { config } => publish::print(config, publish::jwks),
        Command::PublicKey { config, next } => {
            let which = if next {
                publish::Which::Next
            } else {
                publish::Which::Signing
            };
            publish::print(config, |c| publish::public_key(c, which))
        }
        Command::HashPassword { cost } => keygen::hash_password(cost),
        Command::Check { config } => check::check(config),
        Command::Explain {
            config,
            account,
            scope,
            service,
            ip,
            token_file,
        } => explain::explain(config, &account, &scope, service, ip, token_file),
        Command::Probe {
            url,
            config,
            timeout,
        } => probe::run(url, config, timeout),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("regauth: {e:#}");
            ExitCode::FAILURE
        }
    }
}
