//! Working directories as the `regauth` binary expects them, and loopback ports.

use std::path::Path;

use regauth::keys::{Algorithm, generate};

/// A temporary directory holding a fresh ES256 key at `keys/signing.key` (its certificate at
/// `keys/signing.crt`), as `regauth keygen` writes them.
pub fn key_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    generate::write(&dir.path().join("keys"), Algorithm::ES256, false).expect("keygen");
    dir
}

/// [`key_dir`] with `yaml` as its `regauth.yaml`.
pub fn config_dir(yaml: &str) -> tempfile::TempDir {
    let dir = key_dir();
    write_config(dir.path(), yaml).expect("regauth.yaml");
    dir
}

/// Writes `yaml` as `dir/regauth.yaml`.
pub fn write_config(dir: &Path, yaml: impl AsRef<str>) -> std::io::Result<()> {
    std::fs::write(dir.join("regauth.yaml"), yaml.as_ref())
}

/// A free loopback port (closed again; the caller binds it right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}
