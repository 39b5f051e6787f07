//! What verifying a workload token costs: RS256 (2048-bit RSA) and ES256 (P-256) tokens
//! through `Federation::verify` (peek at `iss`, header, key lookup, signature, claims), keys
//! from a JWKS file. A token from an unknown issuer shows the cost of saying "not mine".
//!
//! `cargo bench --bench federation`; compare with `--bench login` (bcrypt) in one run.

// A bench that cannot build its fixtures has nothing to measure: failing loudly is right.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../tests/support/workload.rs"]
mod workload;

use std::hint::black_box;
use std::sync::Arc;

use criterion::{Criterion, criterion_group, criterion_main};
use jsonwebtoken::Algorithm;
use regauth::clock::SystemClock;
use regauth::identity::federation::{Federation, IssuerSettings};

const ISS: &str = "https://issuer.bench";
const AUD: &str = "registry.bench";

fn bench(c: &mut Criterion) {
    let rsa = workload::workload_key("rsa", Algorithm::RS256);
    let ec = workload::workload_key("ec", Algorithm::ES256);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("jwks.json");
    std::fs::write(&path, workload::jwks_of(&[&rsa, &ec])).unwrap();
    let mut settings = IssuerSettings::new(ISS, &[AUD]);
    settings.jwks_file = Some(path);
    let federation = Federation::new(&[settings], Arc::new(SystemClock)).unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = workload::service_account_claims(ISS, AUD, "team-a", "builder", now, 3600);
    let mut stranger = claims.clone();
    stranger["iss"] = "https://elsewhere.bench".into();

    let mut group = c.benchmark_group("federation/verify");
    for (name, token) in [
        ("RS256", rsa.sign(&claims)),
        ("ES256", ec.sign(&claims)),
        ("unknown issuer", rsa.sign(&stranger)),
    ] {
        let expect_some = name != "unknown issuer";
        assert_eq!(
            federation.verify("oidc", &token).unwrap().is_some(),
            expect_some,
            "{name}"
        );
        group.bench_function(name, |b| {
            b.iter(|| federation.verify(black_box("oidc"), black_box(&token)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
