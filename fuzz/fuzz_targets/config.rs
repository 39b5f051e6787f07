//! Fuzzes configuration loading (`regauth::config::load_with_env`): a YAML or TOML file plus
//! `REGAUTH_*` environment overrides, then validation.
//!
//! Input: the first byte picks the format (even: YAML, odd: TOML); the rest up to the first
//! 0xFF byte is the file; after it, each `KEY=VALUE` line becomes the variable
//! `REGAUTH_KEY=VALUE`. The file is rewritten in one temporary directory per process.
//! Properties: nothing panics (including the ACL rule and pattern compilation that validation
//! runs), and a loaded configuration formats with `Debug`.

#![no_main]

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use regauth::config::load_with_env;

fn dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        // Kept for the life of the process; removed by the OS temp cleaner afterwards.
        let dir = tempfile::Builder::new()
            .prefix("regauth-fuzz-config")
            .tempdir()
            .unwrap_or_else(|e| panic!("temp dir: {e}"));
        dir.keep()
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let (file, env_text) = match rest.iter().position(|&b| b == 0xff) {
        Some(i) => (&rest[..i], &rest[i + 1..]),
        None => (rest, &[][..]),
    };
    let path = dir().join(if mode & 1 == 0 {
        "regauth.yaml"
    } else {
        "regauth.toml"
    });
    if std::fs::write(&path, file).is_err() {
        return;
    }
    let env: HashMap<String, String> = String::from_utf8_lossy(env_text)
        .lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (format!("REGAUTH_{k}"), v.to_owned()))
        .collect();
    if let Ok(validated) = load_with_env(Some(&path), &env) {
        let _ = format!("{validated:?}");
    }
});
