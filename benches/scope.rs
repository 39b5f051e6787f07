//! Scope parsing cost against input size (issue 15, H2): resource scopes and actions of 1,
//! 4, 16 and 64 KiB in total, within the caps (accepted) and just over them (refused). With
//! actions kept in a set and every cap checked while reading, the time per KiB stays flat:
//! parse cost is linear in the input. (The 16 and 64 KiB inputs are larger than a `GET`
//! query may be, `crate::http::limits::MAX_QUERY_BYTES`; the parser is measured on them all
//! the same, as a `POST /token` body of up to 64 KiB reaches it.)
//!
//! `cargo bench --bench scope`; compare the per-KiB times across sizes within one run.

use std::hint::black_box;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use regauth::token::scope::{MAX_ACTIONS, MAX_SCOPES, parse_limited};

/// `n` distinct lowercase actions: `a`, `b`, ..., `z`, `aa`, ...
fn action(mut i: usize) -> String {
    let mut word = Vec::new();
    loop {
        word.push(b'a' + (i % 26) as u8);
        i /= 26;
        if i == 0 {
            break;
        }
        i -= 1;
    }
    String::from_utf8(word).unwrap_or_default()
}

/// Scope values of about `bytes` in total that parse: up to [`MAX_SCOPES`] resources, each
/// with [`MAX_ACTIONS`] distinct actions, the same resources asked again as often as needed.
fn within(bytes: usize) -> Vec<String> {
    let actions: Vec<String> = (0..MAX_ACTIONS).map(action).collect();
    let mut values = Vec::new();
    let mut total = 0;
    let mut i = 0;
    while total < bytes {
        let value = format!(
            "repository:team-{}/app-with-a-longer-name:{}",
            i % MAX_SCOPES,
            actions.join(",")
        );
        total += value.len() + 1;
        values.push(value);
        i += 1;
    }
    values
}

/// One scope of about `bytes` carrying distinct actions: refused at the first cap it meets
/// (the scope length for all of these sizes).
fn over_one_scope(bytes: usize) -> Vec<String> {
    let mut value = "repository:team/app:".to_owned();
    let mut i = 0;
    while value.len() < bytes {
        value.push_str(&action(i));
        value.push(',');
        i += 1;
    }
    vec![value]
}

/// Scope values of about `bytes` in total, each within the caps, where the last one takes
/// the resource past [`MAX_ACTIONS`]: refused after reading everything before it.
fn over_at_the_end(bytes: usize) -> Vec<String> {
    let mut values = within(bytes);
    values.push(format!(
        "repository:team-0/app-with-a-longer-name:{}",
        action(10_000)
    ));
    values
}

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("scope/parse");
    for kib in [1usize, 4, 16, 64] {
        let bytes = kib * 1024;
        for (case, values) in [
            ("within caps", within(bytes)),
            ("over: last action past the cap", over_at_the_end(bytes)),
            ("over: one long scope", over_one_scope(bytes)),
        ] {
            let size: usize = values.iter().map(|v| v.len() + 1).sum();
            group.throughput(Throughput::Bytes(size as u64));
            group.bench_with_input(
                BenchmarkId::new(case, format!("{kib} KiB")),
                &values,
                |b, v| {
                    b.iter(|| {
                        parse_limited(black_box(v).iter().map(String::as_str), MAX_SCOPES)
                            .map(|s| s.len())
                    })
                },
            );
        }
    }
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
