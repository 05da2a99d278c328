//! The pure diff at 1, 100 and 10,000 profiles, with nothing changed and
//! with 1% of the profiles renamed (at least one). Run with
//! `cargo bench --bench diff`; see BENCHMARKS.md.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use scanwatch::diff::{diff, Previous, Rules, SnapshotEntry};
use scanwatch::profile::Profile;
use serde_json::json;

fn list(n: usize) -> Vec<Profile> {
    (0..n)
        .map(|i| {
            let item = json!({
                "profileId": format!("{i:08x}-0000-4000-8000-000000000000"),
                "profileName": format!("Finance Mailboxes {i}"),
                "scanMode": i % 2,
                "modifiedTime": "2025-09-11T03:19:14Z",
            });
            Profile::parse(i, item).expect("a valid profile")
        })
        .collect()
}

/// `list` with every hundredth profile (and at least one) renamed.
fn changed(list: &[Profile]) -> Vec<Profile> {
    let step = (list.len() / (list.len() / 100).max(1)).max(1);
    list.iter()
        .enumerate()
        .map(|(i, profile)| {
            if i % step != 0 {
                return profile.clone();
            }
            let mut raw = profile.raw.clone();
            raw.insert("profileName".into(), json!(format!("Renamed {i}")));
            Profile::parse(i, raw.into()).expect("a valid profile")
        })
        .collect()
}

fn bench_diff(c: &mut Criterion) {
    let rules = Rules::default();
    let mut group = c.benchmark_group("diff");
    for n in [1, 100, 10_000] {
        let old = list(n);
        let previous = Previous {
            snapshot: old
                .iter()
                .map(|profile| SnapshotEntry {
                    profile: profile.clone(),
                    missing_polls: 0,
                })
                .collect(),
            empty_streak: 0,
            has_history: true,
        };
        let new = changed(&old);
        group.bench_with_input(BenchmarkId::new("unchanged", n), &old, |b, old| {
            b.iter_batched(
                || old.clone(),
                |list| diff(&previous, list, &rules),
                BatchSize::LargeInput,
            )
        });
        group.bench_with_input(
            BenchmarkId::new("one_percent_changed", n),
            &new,
            |b, new| {
                b.iter_batched(
                    || new.clone(),
                    |list| diff(&previous, list, &rules),
                    BatchSize::LargeInput,
                )
            },
        );
    }
    group.finish();
}

criterion_group!(benches, bench_diff);
criterion_main!(benches);
