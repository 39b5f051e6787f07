//! Token issuing costs: scope parsing, claims, and signing per algorithm, with
//! `jsonwebtoken::encode` as the baseline for the signing path, and each signature once more
//! after a sleep (what a server's signature meets between requests).
//!
//! `cargo bench --bench token`; compare ratios within one run, not absolute times.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use regauth::clock::SystemClock;
use regauth::issue::signing::sign;
use regauth::keys::{Algorithm, KeySpec, SigningKey, generate};
use regauth::token::claims::{AccessEntry, ClaimsBuilder};
use regauth::token::scope::parse_all;

fn bench(c: &mut Criterion) {
    let scopes = [
        "repository:team/new:pull,push",
        "repository:localhost:5000/team/app:pull repository:library/ubuntu:pull",
    ];
    c.bench_function("scope/parse 3 scopes", |b| {
        b.iter(|| parse_all(black_box(scopes)).map(|s| s.len()))
    });

    let parsed = parse_all(scopes).unwrap_or_default();
    let access: Vec<AccessEntry> = parsed
        .iter()
        .map(|s| AccessEntry::new(s, s.actions.clone()))
        .collect();
    let builder = ClaimsBuilder::new("regauth", 300);
    c.bench_function("claims/build", |b| {
        b.iter(|| builder.build(&SystemClock, "", "registry.test", black_box(access.clone())))
    });
    let Ok(claims) = builder.build(&SystemClock, "", "registry.test", access) else {
        return;
    };

    let pairs = [
        (Algorithm::ES256, jsonwebtoken::Algorithm::ES256),
        (Algorithm::RS256, jsonwebtoken::Algorithm::RS256),
        (Algorithm::EdDSA, jsonwebtoken::Algorithm::EdDSA),
        (Algorithm::HS256, jsonwebtoken::Algorithm::HS256),
    ];
    for (alg, jwt_alg) in pairs {
        let Ok(generated) = generate::generate(alg) else {
            continue;
        };
        let spec = KeySpec {
            algorithm: Some(alg),
            ..KeySpec::default()
        };
        let Ok(key) = SigningKey::from_bytes(generated.key_pem.as_bytes(), None, spec) else {
            continue;
        };
        c.bench_function(&format!("sign/regauth {alg}"), |b| {
            b.iter(|| sign(black_box(&claims), &key))
        });
        // The same signature when the thread slept first, as a server's worker does between
        // requests: only the signing is timed. On a virtual machine the tables and code the
        // signature touches may no longer be cached (or mapped in the TLB) after a sleep, so
        // this can be much slower than the loop above; `openssl speed` times the loop.
        c.bench_function(&format!("sign/regauth {alg} after a 50 us sleep"), |b| {
            b.iter_custom(|iterations| {
                let mut signing = Duration::ZERO;
                for _ in 0..iterations {
                    std::thread::sleep(Duration::from_micros(50));
                    let started = Instant::now();
                    let _ = black_box(sign(black_box(&claims), &key));
                    signing += started.elapsed();
                }
                signing
            })
        });
        let pem = generated.key_pem.as_bytes();
        let encoding = match alg {
            Algorithm::ES256 => jsonwebtoken::EncodingKey::from_ec_pem(pem),
            Algorithm::RS256 => jsonwebtoken::EncodingKey::from_rsa_pem(pem),
            Algorithm::EdDSA => jsonwebtoken::EncodingKey::from_ed_pem(pem),
            _ => jsonwebtoken::EncodingKey::from_base64_secret(generated.key_pem.trim()),
        };
        let Ok(encoding) = encoding else { continue };
        let mut header = jsonwebtoken::Header::new(jwt_alg);
        header.kid = key.kid().map(str::to_owned);
        c.bench_function(&format!("sign/jsonwebtoken {alg}"), |b| {
            b.iter(|| jsonwebtoken::encode(&header, black_box(&claims), &encoding))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
