//! `regauth keygen` (a signing key, its certificate, optionally the refresh secret) and
//! `regauth hash-password` (a bcrypt hash for `users:` or htpasswd).

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::Context;

use regauth::config;
use regauth::identity::MAX_PASSWORD_BYTES;
use regauth::issue::refresh;
use regauth::keys::{Algorithm, generate};

pub(super) fn keygen(
    alg: Algorithm,
    out: PathBuf,
    force: bool,
    refresh_secret: bool,
) -> anyhow::Result<()> {
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

pub(super) fn hash_password(cost: u32) -> anyhow::Result<()> {
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
