//! The store's poll transaction on a real SQLite file, for one customer of
//! 20 profiles: an unchanged list (the one-round-trip path) and a list with
//! one profile renamed (the read, diff and write path), alternating so that
//! every iteration records a change. Run with `cargo bench --bench store`;
//! see BENCHMARKS.md.

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use scanwatch::config::StorageSettings;
use scanwatch::customer::{Customer, CustomerId};
use scanwatch::diff::Rules;
use scanwatch::profile::Profile;
use scanwatch::store::{list_hash, AcceptedList, Store};
use scanwatch::timestamp;
use serde_json::json;

const PROFILES: usize = 20;

fn list(renamed: bool) -> Vec<Profile> {
    (0..PROFILES)
        .map(|i| {
            let name = if renamed && i == 0 {
                "Renamed".to_owned()
            } else {
                format!("Finance Mailboxes {i}")
            };
            let item = json!({
                "profileId": format!("{i:08x}-0000-4000-8000-000000000000"),
                "profileName": name,
                "scanMode": i % 2,
                "modifiedTime": "2025-09-11T03:19:14Z",
            });
            Profile::parse(i, item).expect("a valid profile")
        })
        .collect()
}

async fn commit(store: &Store, customer: &Customer, rules: &Rules, profiles: Vec<Profile>) {
    let hash = list_hash(&profiles);
    let list = AcceptedList {
        customer,
        started_at: timestamp::now(),
        http_status: Some(200),
        profiles,
        rules,
    };
    store
        .commit_list_hashed(list, hash)
        .await
        .expect("the poll commits");
}

fn bench_store(c: &mut Criterion) {
    // The runtime the scanwatch binary polls on.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let dir = tempfile::tempdir().expect("a temporary folder");
    let settings = StorageSettings {
        database: dir.path().join("bench.db"),
        busy_timeout: Duration::from_secs(5),
        poll_retention: Duration::from_secs(30 * 86_400),
    };
    let store = runtime
        .block_on(Store::open(&settings))
        .expect("the store opens");
    let customer = Customer {
        id: CustomerId::parse("03f7382e-0000-1cda-0000-dd9a000074f0").expect("a GUID"),
        name: Some("Contoso".into()),
    };
    let rules = Rules::default();
    let (plain, renamed) = (list(false), list(true));
    runtime.block_on(commit(&store, &customer, &rules, plain.clone()));

    let mut group = c.benchmark_group("store_poll");
    group.bench_function("unchanged_20_profiles", |b| {
        b.iter(|| runtime.block_on(commit(&store, &customer, &rules, plain.clone())))
    });
    let mut flip = false;
    group.bench_function("one_of_20_changed", |b| {
        b.iter(|| {
            flip = !flip;
            let profiles = if flip { &renamed } else { &plain };
            runtime.block_on(commit(&store, &customer, &rules, profiles.clone()))
        })
    });
    group.finish();
    runtime.block_on(store.close());
}

criterion_group!(benches, bench_store);
criterion_main!(benches);
