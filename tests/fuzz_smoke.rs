//! The fuzz targets' bodies (`fuzz/bodies.rs`) on stable Rust, in seconds:
//! every seed input, thousands of seeded mutations of them, and arbitrary
//! JSON documents. This is CI's share of fuzzing; `scripts/fuzz-long.sh`
//! runs the same bodies under libFuzzer (cargo fuzz) for as long as wanted.
//!
//! `SCANWATCH_FUZZ_SEED` and `SCANWATCH_FUZZ_ITERATIONS` change the mutation
//! run; the default seed keeps CI reproducible.

#[path = "../fuzz/bodies.rs"]
mod bodies;

use std::path::Path;

use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn seeds(target: &str) -> Vec<Vec<u8>> {
    let folder = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/seeds")
        .join(target);
    let mut files: Vec<_> = std::fs::read_dir(&folder)
        .unwrap_or_else(|e| panic!("{}: {e}", folder.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no seeds in {}", folder.display());
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Tokens that tend to reach new branches of JSON and TOML readers.
const TOKENS: &[&[u8]] = &[
    b"null",
    b"true",
    b"\"",
    b"{",
    b"}",
    b"[",
    b"]",
    b",",
    b":",
    b"=",
    b"\n",
    b"\\u0000",
    b"18446744073709551616",
    b"-1",
    b"1e999",
    b"\"profileId\"",
    b"\"value\"",
    b"\"data\"",
    b"\"metadata\"",
    b"{\"totalCount\":99}",
    b"\"@odata.nextLink\"",
    b"[[customers]]",
    b"[api]",
    b"\"0s\"",
    b"\"-1s\"",
    b"'''",
    b"\xff\xfe",
];

/// One random edit of `input`, libFuzzer style.
fn mutate(rng: &mut ChaCha8Rng, input: &mut Vec<u8>, pool: &[Vec<u8>]) {
    let len = input.len();
    match rng.random_range(0..6) {
        0 if len > 0 => {
            let at = rng.random_range(0..len);
            input[at] ^= 1 << rng.random_range(0..8);
        }
        1 => {
            let at = rng.random_range(0..=len);
            input.insert(at, rng.random());
        }
        2 if len > 0 => {
            let start = rng.random_range(0..len);
            let end = rng.random_range(start..=len.min(start + 16));
            input.drain(start..end);
        }
        3 => {
            let at = rng.random_range(0..=len);
            let token = TOKENS[rng.random_range(0..TOKENS.len())];
            input.splice(at..at, token.iter().copied());
        }
        4 if len > 0 => {
            let start = rng.random_range(0..len);
            let end = rng.random_range(start..=len.min(start + 32));
            let copy = input[start..end].to_vec();
            let at = rng.random_range(0..=len);
            input.splice(at..at, copy);
        }
        _ => {
            let other = &pool[rng.random_range(0..pool.len())];
            let cut = rng.random_range(0..=len);
            let from = rng.random_range(0..=other.len());
            input.truncate(cut);
            input.extend_from_slice(&other[from..]);
        }
    }
}

fn mutation_run(target: &str, body: fn(&[u8]), default_iterations: u64) {
    let pool = seeds(target);
    for seed in &pool {
        body(seed);
    }
    let seed = env_number("SCANWATCH_FUZZ_SEED", 0x5ca9_7a7c);
    let iterations = env_number("SCANWATCH_FUZZ_ITERATIONS", default_iterations);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for _ in 0..iterations {
        let mut input = pool[rng.random_range(0..pool.len())].clone();
        for _ in 0..rng.random_range(1..=4) {
            mutate(&mut rng, &mut input, &pool);
        }
        body(&input);
    }
}

#[test]
fn no_response_body_made_from_the_seeds_panics_the_parser() {
    mutation_run("parse_response", bodies::response, 20_000);
}

#[test]
fn no_config_text_made_from_the_seeds_panics_the_loader() {
    mutation_run("parse_config", bodies::config, 1_500);
}

fn json() -> impl Strategy<Value = serde_json::Value> {
    use serde_json::{json, Value};
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>().prop_map(|n| json!(n)),
        prop::sample::select(vec![
            "profileId",
            "47DBA9A1-1004-4C2D-B2CE-8F5E66F5842D",
            "2025-09-11T03:19:14Z",
            "2025-09-11T03:19:14.0000000",
            "",
        ])
        .prop_map(|s| json!(s)),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        let keys = prop::sample::select(vec![
            "profileId",
            "profileName",
            "scanMode",
            "modifiedTime",
            "value",
            "data",
            "metadata",
            "totalCount",
            "@odata.nextLink",
            "nextLink",
            "other",
        ]);
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(keys, inner, 0..6).prop_map(|m| {
                serde_json::Value::Object(m.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
            }),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 1024, ..ProptestConfig::default() })]

    #[test]
    fn no_json_document_of_any_shape_panics_the_parser(value in json()) {
        bodies::response(value.to_string().as_bytes());
    }

    #[test]
    fn no_bytes_at_all_panic_either_parser(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        bodies::response(&bytes);
        bodies::config(&bytes);
    }
}
