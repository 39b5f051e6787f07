//! `regauth refresh-secret`: shows and rotates the refresh secrets (the file is
//! `auth.refresh_secret_file`; see [`regauth::issue::refresh::secrets`]). The servers take a changed
//! file on SIGHUP or at their next start.

use std::path::PathBuf;

use chrono::Utc;

use regauth::config;
use regauth::issue::refresh::secrets::{self, SecretFile};

#[derive(clap::Args)]
pub struct Args {
    /// YAML or TOML settings file, as for serve (for auth.refresh_secret_file and
    /// auth.refresh_ttl_seconds).
    #[arg(long, short, env = "REGAUTH_CONFIG", global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    action: Action,
}

#[derive(clap::Subcommand, Clone, Copy)]
enum Action {
    /// Print each secret's key id and role (never a secret).
    Show,
    /// Add a `next` secret: accepted once the servers re-read the file, signing only after
    /// `rotate`. For several replicas: add, reload them all, then rotate.
    Add,
    /// Make the next secret (or, without one, a new secret) current; the current one stays
    /// accepted as `previous` for auth.refresh_ttl_seconds, so no refresh token stops working.
    Rotate,
    /// Drop every previous secret now: the refresh tokens they signed stop working once the
    /// servers re-read the file (after a leak).
    Retire,
}

/// Runs the action and prints the secrets the file then holds.
pub fn run(args: Args) -> anyhow::Result<()> {
    let config = config::load(args.config.as_deref())?;
    let path = config.refresh_secret_file();
    let ttl = config.auth.refresh_ttl_seconds;
    let now = Utc::now();
    if !path.exists() {
        anyhow::bail!(
            "{} does not exist, so refresh tokens are off; `regauth keygen --refresh-secret` writes one",
            path.display()
        );
    }
    let file = match args.action {
        Action::Show => SecretFile::read(&path, now, ttl)?,
        Action::Add => secrets::add(&path, now, ttl)?,
        Action::Rotate => secrets::rotate(&path, now, ttl)?,
        Action::Retire => secrets::retire(&path, now, ttl)?,
    };
    println!("{}:", path.display());
    for line in file.describe(now) {
        println!("  {line}");
    }
    if !matches!(args.action, Action::Show) {
        eprintln!(
            "regauth: written; send SIGHUP to each server that reads {} (or restart it)",
            path.display()
        );
    }
    Ok(())
}
