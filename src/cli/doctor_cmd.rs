//! `regauth doctor`: the command line over [`regauth::doctor`]. Exit 0 when every check
//! holds, 1 when a problem was found, 2 when the settings or the registry's configuration
//! cannot be read (or the command line is wrong).

use std::collections::HashMap;
use std::io::BufRead;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;

use super::doctor::{self, RegistryVersion};
use regauth::config;

#[derive(clap::Args)]
pub struct Args {
    /// regauth's YAML or TOML settings file, as for serve.
    #[arg(long, short, env = "REGAUTH_CONFIG")]
    config: Option<PathBuf>,
    /// The distribution registry's configuration file (config.yml). Its
    /// REGISTRY_AUTH_TOKEN_* overrides are read from this process's environment.
    #[arg(long)]
    registry_config: PathBuf,
    /// The registry's URL (e.g. http://127.0.0.1:5000): also do the round trip a client does.
    #[arg(long)]
    registry: Option<String>,
    /// The registry's release (2.8, 3.0, 3.1...); by default 3.x when its configuration sets
    /// jwks or signingalgorithms, else 2.8.
    #[arg(long, value_parser = parse_version)]
    registry_version: Option<RegistryVersion>,
    /// The user for the round trip's token request (anonymous without it).
    #[arg(long, requires = "password_stdin")]
    user: Option<String>,
    /// Read the user's password from standard input.
    #[arg(long, requires = "user")]
    password_stdin: bool,
    /// Seconds each HTTP request of the round trip may take.
    #[arg(long, default_value_t = 5.0)]
    timeout: f64,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

fn parse_version(text: &str) -> Result<RegistryVersion, String> {
    RegistryVersion::parse(text).ok_or_else(|| format!("{text:?} is not 2.x or 3.x"))
}

/// Runs the command and prints the report.
pub fn run(args: Args) -> ExitCode {
    match prepare(&args) {
        Ok((config, options)) => {
            let env: HashMap<String, String> = std::env::vars().collect();
            match doctor::run(&config, &options, &env) {
                Ok(report) => {
                    if args.json {
                        println!("{}", report.to_json());
                    } else {
                        print!("{}", report.to_text());
                    }
                    if report.is_clean() {
                        ExitCode::SUCCESS
                    } else {
                        ExitCode::from(1)
                    }
                }
                Err(e) => usage_error(&e.into()),
            }
        }
        Err(e) => usage_error(&e),
    }
}

fn usage_error(e: &anyhow::Error) -> ExitCode {
    eprintln!("regauth: {e:#}");
    ExitCode::from(2)
}

fn prepare(args: &Args) -> anyhow::Result<(config::Validated, doctor::Options)> {
    let timeout = Duration::try_from_secs_f64(args.timeout)
        .ok()
        .filter(|t| !t.is_zero() && *t <= Duration::from_secs(60))
        .ok_or_else(|| anyhow::anyhow!("--timeout must be above 0 and at most 60 seconds"))?;
    let credentials = match &args.user {
        Some(user) => {
            let mut line = String::new();
            std::io::stdin()
                .lock()
                .read_line(&mut line)
                .context("reading the password from standard input")?;
            Some((user.clone(), line.trim_end_matches(['\r', '\n']).to_owned()))
        }
        None => None,
    };
    let config = config::load(args.config.as_deref())?;
    Ok((
        config,
        doctor::Options {
            config_path: args.config.clone(),
            registry_config: args.registry_config.clone(),
            registry_version: args.registry_version,
            registry_url: args.registry.clone(),
            credentials,
            timeout,
        },
    ))
}
