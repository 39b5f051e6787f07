//! The `regauth` command: `serve`, `keygen`, `bundle` and `jwks`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use regauth::keys::{Algorithm, generate};
use regauth::startup::Application;
use regauth::{config, publish};

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
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve { config } => serve(config),
        Command::Keygen { alg, out, force } => keygen(alg, out, force),
        Command::Bundle { config } => print_published(config, publish::bundle),
        Command::Jwks { config } => print_published(config, publish::jwks),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            log::error!("{e:#}");
            eprintln!("regauth: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn serve(config_path: Option<PathBuf>) -> anyhow::Result<()> {
    let config = config::load(config_path.as_deref())?;
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
    make: fn(&config::Validated) -> anyhow::Result<publish::Output>,
) -> anyhow::Result<()> {
    let config = config::load(config_path.as_deref())?;
    let output = make(&config)?;
    for note in output.notes {
        eprintln!("regauth: {note}");
    }
    print!("{}", output.text);
    Ok(())
}

fn keygen(alg: Algorithm, out: PathBuf, force: bool) -> anyhow::Result<()> {
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
    Ok(())
}
