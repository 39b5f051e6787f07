//! `regauth token create|list|revoke`, `regauth store migrate` and `regauth logout`: the
//! command line over [`regauth::store`]. Each needs `store.url` in the settings.

use std::path::PathBuf;

use secrecy::ExposeSecret;

use regauth::config;
use regauth::store::{Listed, Mode, Store, StoreError, parse_duration};

#[derive(clap::Subcommand)]
pub enum TokenCommand {
    /// Create an access token for a user (or a robot account) and print its secret once.
    Create {
        /// YAML or TOML settings file, as for serve.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// The user the token signs in as (with the user's name and the token as password).
        #[arg(long, required_unless_present = "robot", conflicts_with = "robot")]
        user: Option<String>,
        /// Create a robot account of this name instead (rules name robots with source: robot).
        #[arg(long)]
        robot: Option<String>,
        /// The token's name, unique per owner (e.g. laptop, ci).
        #[arg(long)]
        name: String,
        /// What the token may do: TYPE:NAME:ACTIONS with a glob name, e.g.
        /// repository:alice/*:pull (repeatable).
        #[arg(long, required = true)]
        scope: Vec<String>,
        /// Lifetime: 90s, 12h, 30d, 2w (default: until revoked).
        #[arg(long)]
        expires: Option<String>,
    },
    /// List tokens: name, owner, scopes, created, expires, last used (never the secret).
    List {
        /// YAML or TOML settings file, as for serve.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// Only this user's (or robot's) tokens.
        #[arg(long)]
        user: Option<String>,
        /// Print JSON (an array).
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token by id or name; every replica refuses it within 5 s.
    Revoke {
        /// YAML or TOML settings file, as for serve.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
        /// The token's id or name.
        token: String,
        /// The owner, when several owners have a token of that name.
        #[arg(long)]
        user: Option<String>,
    },
}

#[derive(clap::Subcommand)]
pub enum StoreCommand {
    /// Apply the store's pending schema migrations (serve also applies them at start).
    Migrate {
        /// YAML or TOML settings file, as for serve.
        #[arg(long, short, env = "REGAUTH_CONFIG")]
        config: Option<PathBuf>,
    },
}

fn open(config: Option<&std::path::Path>, create: bool) -> anyhow::Result<std::sync::Arc<Store>> {
    let config = config::load(config)?;
    let settings = config.store.as_ref().ok_or(StoreError::NotConfigured)?;
    Ok(Store::open(settings, Mode::Command { create })?)
}

fn block_on<T>(work: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    Ok(runtime.block_on(work))
}

/// Runs `regauth token ...`.
pub fn token(command: TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create {
            config,
            user,
            robot,
            name,
            scope,
            expires,
        } => {
            let ttl = expires
                .as_deref()
                .map(parse_duration)
                .transpose()
                .map_err(|e| anyhow::anyhow!("--expires {e}"))?;
            let (owner, is_robot) = match (user, robot) {
                (_, Some(robot)) => (robot, true),
                (Some(user), None) => (user, false),
                (None, None) => anyhow::bail!("give --user or --robot"),
            };
            let store = open(config.as_deref(), true)?;
            let created = block_on(store.create(&owner, is_robot, &name, &scope, ttl))??;
            let row = &created.row;
            eprintln!(
                "created {} token {} (id {}) for {}; expires {}. The secret is shown only now:",
                if is_robot { "robot" } else { "user" },
                row.name,
                row.id,
                row.owner,
                Listed::from(row).expires.unwrap_or_else(|| "never".into())
            );
            println!("{}", created.secret.expose_secret());
            Ok(())
        }
        TokenCommand::List { config, user, json } => {
            let store = open(config.as_deref(), false)?;
            let rows = block_on(store.list(user.as_deref()))??;
            let listed: Vec<Listed> = rows.iter().map(Listed::from).collect();
            if json {
                println!("{}", serde_json::to_string_pretty(&listed)?);
                return Ok(());
            }
            println!(
                "{:<16}  {:<16}  {:<16}  {:<5}  {:<20}  {:<20}  {:<20}  SCOPES",
                "ID", "NAME", "OWNER", "KIND", "CREATED", "EXPIRES", "LAST USED"
            );
            for t in &listed {
                println!(
                    "{:<16}  {:<16}  {:<16}  {:<5}  {:<20}  {:<20}  {:<20}  {}",
                    t.id,
                    t.name,
                    t.owner,
                    t.kind,
                    t.created,
                    t.expires.as_deref().unwrap_or("never"),
                    t.last_used.as_deref().unwrap_or("never"),
                    t.scopes.join(" ")
                );
            }
            Ok(())
        }
        TokenCommand::Revoke {
            config,
            token,
            user,
        } => {
            let store = open(config.as_deref(), false)?;
            let revoked = block_on(store.revoke(&token, user.as_deref()))??;
            println!(
                "revoked token {} (id {}) of {}",
                revoked.name, revoked.id, revoked.owner
            );
            Ok(())
        }
    }
}

/// Runs `regauth store ...`.
pub fn store(command: StoreCommand) -> anyhow::Result<()> {
    match command {
        StoreCommand::Migrate { config } => {
            let store = open(config.as_deref(), true)?;
            // Opening applied them; a second call says there is nothing left.
            let pending = store.migrate()?;
            println!(
                "store {} is at schema version {}{}",
                store.location(),
                regauth::store::SCHEMA_VERSION,
                if pending.is_empty() {
                    String::new()
                } else {
                    format!(" (applied {pending:?})")
                }
            );
            Ok(())
        }
    }
}

/// Runs `regauth logout USER`.
pub fn logout(config: Option<PathBuf>, user: &str) -> anyhow::Result<()> {
    let store = open(config.as_deref(), true)?;
    let at = block_on(store.logout(user))??;
    println!(
        "refresh tokens issued to {user} up to {} are revoked (every replica within 5 s)",
        chrono::DateTime::from_timestamp(at, 0)
            .map(|t| t.to_rfc3339())
            .unwrap_or_default()
    );
    Ok(())
}
