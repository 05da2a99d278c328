//! What each fuzz target does with one input, shared by the cargo-fuzz
//! targets (`fuzz_targets/`) and the stable smoke test that CI runs
//! (`tests/fuzz_smoke.rs`), so both exercise exactly the same code.
//!
//! The only property checked is the one that matters for arbitrary input:
//! no panic, and an accepted response is consistent with what was read.

use std::path::Path;

use scanwatch::api::{parse_page, Page};
use scanwatch::config::ConfigFile;
use scanwatch::diff::{self, Previous, Rules, SnapshotEntry};
use scanwatch::profile::Profile;
use serde_json::json;

/// A response body, as the API client reads it: the page shape, then every
/// item as a profile, then duplicates, then the diff against a snapshot.
pub fn response(data: &[u8]) {
    let Ok(page) = parse_page(data) else {
        return;
    };
    let items = match page {
        Page::Array(items) => items,
        Page::OData { items, .. } => items,
        Page::DataMetadata { items, .. } => items,
    };
    let count = items.len();
    let Ok(profiles) = items
        .into_iter()
        .enumerate()
        .map(|(i, item)| Profile::parse(i, item))
        .collect::<Result<Vec<_>, _>>()
    else {
        return;
    };
    assert_eq!(profiles.len(), count);
    let Ok((unique, _)) = diff::dedupe(profiles) else {
        return;
    };
    let outcome = diff::diff(&snapshot(), unique.clone(), &Rules::default());
    let listed = outcome
        .changes
        .iter()
        .filter(|c| c.kind != diff::ChangeKind::Removed);
    assert!(listed.count() <= unique.len());
}

fn snapshot() -> Previous {
    let known = [
        json!({"profileId": "aaaaaaaa-0000-4000-8000-000000000001", "profileName": "Finance",
               "scanMode": 0, "modifiedTime": "2025-09-11T03:19:14Z"}),
        json!({"profileId": "bbbbbbbb-0000-4000-8000-000000000002", "profileName": "Legal",
               "scanMode": 1, "modifiedTime": "2025-09-12T00:00:00Z"}),
    ];
    Previous {
        snapshot: known
            .into_iter()
            .map(|v| SnapshotEntry {
                profile: Profile::parse(0, v).expect("a valid profile"),
                missing_polls: 0,
            })
            .collect(),
        empty_streak: 0,
        has_history: true,
    }
}

/// A config file's text, resolved section by section. `[auth]` is left out:
/// resolving it reads the files the config names, and a fuzzer naming
/// `/dev/zero` would only test the disk.
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(file) =
        ConfigFile::from_toml_ignoring_environment(Path::new("/nonexistent/scanwatch.toml"), text)
    else {
        return;
    };
    let _ = file.api();
    let _ = file.schedule();
    let _ = file.storage();
    let _ = file.detection();
    let _ = file.customers();
    let _ = file.log();
    let _ = file.metrics_listen();
    let _ = file.warnings();
}
