//! Properties of the change rules over random sequences of lists: adds,
//! removals, renames, reorderings, format-only differences (ID case, time
//! precision, offsets) and duplicates, under random confirmation rules.
//!
//! Whatever the sequence: replaying the recorded changes from empty always
//! gives the snapshot, and once a list is settled it gives that list; kinds
//! come in a valid order; and polling a settled list again records nothing.
//! The same sequences also go through the real store, where the unchanged
//! list shortcut and the SQL must agree with the pure rules.

mod common;

use std::collections::BTreeMap;

use proptest::prelude::*;
use scanwatch::customer::{Customer, CustomerId};
use scanwatch::diff::{self, ChangeKind, Outcome, Previous, Rules, SnapshotEntry, SnapshotOp};
use scanwatch::profile::Profile;
use scanwatch::store::{AcceptedList, Store};
use serde_json::{json, Map, Value};

const IDS: [&str; 6] = [
    "aaaaaaaa-0000-4000-8000-000000000001",
    "bbbbbbbb-0000-4000-8000-000000000002",
    "cccccccc-0000-4000-8000-000000000003",
    "dddddddd-0000-4000-8000-000000000004",
    "eeeeeeee-0000-4000-8000-000000000005",
    "ffffffff-0000-4000-8000-000000000006",
];

/// Three instants, each in four spellings the API may use.
const TIMES: [[&str; 4]; 3] = [
    [
        "2025-09-11T03:19:14Z",
        "2025-09-11T03:19:14.000Z",
        "2025-09-11T03:19:14.0000000",
        "2025-09-11T05:19:14+02:00",
    ],
    [
        "2025-09-12T00:00:00Z",
        "2025-09-12T00:00:00.000000Z",
        "2025-09-12T00:00:00",
        "2025-09-11T20:00:00-04:00",
    ],
    [
        "2025-08-01T12:30:45.5Z",
        "2025-08-01T12:30:45.500Z",
        "2025-08-01T12:30:45.5000000",
        "2025-08-01T13:30:45.5+01:00",
    ],
];

/// One item of a list as the API could send it.
fn item() -> impl Strategy<Value = Value> {
    (
        0..IDS.len(),
        any::<bool>(),
        prop::option::of(prop::sample::select(vec!["Finance", "Legal", "HR"])),
        prop_oneof![Just(None), Just(Some(0)), Just(Some(1))],
        (0..TIMES.len(), 0..4usize),
        prop::option::of(0..3u8),
        any::<bool>(),
    )
        .prop_map(|(id, upper, name, mode, (time, form), note, null_name)| {
            let mut object = Map::new();
            let id = if upper {
                IDS[id].to_uppercase()
            } else {
                IDS[id].to_owned()
            };
            object.insert("profileId".into(), json!(id));
            match (name, null_name) {
                (Some(name), _) => {
                    object.insert("profileName".into(), json!(name));
                }
                // Null and absent mean the same; both must appear.
                (None, true) => {
                    object.insert("profileName".into(), Value::Null);
                }
                (None, false) => {}
            }
            if let Some(mode) = mode {
                object.insert("scanMode".into(), json!(mode));
            }
            object.insert("modifiedTime".into(), json!(TIMES[time][form]));
            if let Some(note) = note {
                object.insert("note".into(), json!(format!("note {note}")));
            }
            Value::Object(object)
        })
}

fn list() -> impl Strategy<Value = Vec<Value>> {
    prop_oneof![
        1 => Just(Vec::new()),
        8 => prop::collection::vec(item(), 1..8),
    ]
}

fn rules() -> impl Strategy<Value = Rules> {
    (
        prop_oneof![3 => Just(1u32), 1 => 2..4u32],
        prop_oneof![1 => Just(1u32), 3 => 2..4u32],
    )
        .prop_map(|(removal, empty)| Rules {
            removal_confirmations: removal,
            empty_list_confirmations: empty,
            ..Rules::default()
        })
}

/// What a profile means: every top-level field in comparable form.
type Meaning = BTreeMap<String, Value>;

fn meaning(profile: &Profile) -> Meaning {
    profile
        .raw
        .keys()
        .map(String::as_str)
        .chain(["profileId"])
        .filter_map(|key| profile.comparable(key).map(|v| (key.to_owned(), v)))
        .collect()
}

fn parse(list: &[Value]) -> Vec<Profile> {
    list.iter()
        .enumerate()
        .map(|(i, v)| Profile::parse(i, v.clone()).expect("generated items are valid"))
        .collect()
}

/// The store's bookkeeping, done in memory, plus the replayed change log.
#[derive(Debug, Default)]
struct Model {
    snapshot: Vec<SnapshotEntry>,
    empty_streak: u32,
    any_change: bool,
    replay: BTreeMap<String, Meaning>,
}

impl Model {
    fn previous(&self) -> Previous {
        Previous {
            snapshot: self.snapshot.clone(),
            empty_streak: self.empty_streak,
            has_history: !self.snapshot.is_empty() || self.any_change,
        }
    }

    fn apply(&mut self, outcome: &Outcome) -> Result<(), TestCaseError> {
        for op in &outcome.ops {
            match op {
                SnapshotOp::Put(profile) => {
                    self.snapshot.retain(|e| e.profile.id != profile.id);
                    self.snapshot.push(SnapshotEntry {
                        profile: profile.clone(),
                        missing_polls: 0,
                    });
                }
                SnapshotOp::Missing {
                    profile_id,
                    missing_polls,
                } => {
                    let entry = self
                        .snapshot
                        .iter_mut()
                        .find(|e| &e.profile.id == profile_id);
                    prop_assert!(entry.is_some(), "missing op for an absent {profile_id}");
                    entry.unwrap().missing_polls = *missing_polls;
                }
                SnapshotOp::Delete { profile_id } => {
                    let before = self.snapshot.len();
                    self.snapshot.retain(|e| &e.profile.id != profile_id);
                    prop_assert_eq!(self.snapshot.len() + 1, before);
                }
            }
        }
        self.empty_streak = outcome.empty_streak;
        self.any_change |= !outcome.changes.is_empty();
        self.replay_changes(outcome)
    }

    fn replay_changes(&mut self, outcome: &Outcome) -> Result<(), TestCaseError> {
        for change in &outcome.changes {
            let id = change.profile.id.clone();
            let now = meaning(&change.profile);
            match change.kind {
                ChangeKind::Added => {
                    prop_assert!(!self.replay.contains_key(&id), "{id} added twice");
                    prop_assert!(change.changed_fields.is_none() && change.previous.is_none());
                    self.replay.insert(id, now);
                }
                ChangeKind::Changed => {
                    let old = self.replay.get(&id);
                    prop_assert!(old.is_some(), "{id} changed while absent");
                    let old = old.unwrap();
                    let previous = change.previous.as_ref().map(meaning);
                    prop_assert_eq!(previous.as_ref(), Some(old));
                    let mut differing: Vec<String> = old
                        .keys()
                        .chain(now.keys())
                        .filter(|k| old.get(*k) != now.get(*k))
                        .cloned()
                        .collect();
                    differing.sort();
                    differing.dedup();
                    prop_assert!(!differing.is_empty(), "{id} changed with no difference");
                    prop_assert_eq!(change.changed_fields.as_ref(), Some(&differing));
                    prop_assert!(!change.baseline);
                    self.replay.insert(id, now);
                }
                ChangeKind::Removed => {
                    let last = self.replay.remove(&id);
                    prop_assert_eq!(last, Some(now), "{} removed with other values", id);
                    prop_assert!(!change.baseline && change.changed_fields.is_none());
                }
            }
        }
        Ok(())
    }

    fn snapshot_meaning(&self) -> BTreeMap<String, Meaning> {
        self.snapshot
            .iter()
            .map(|e| (e.profile.id.clone(), meaning(&e.profile)))
            .collect()
    }
}

fn list_meaning(list: &[Profile]) -> BTreeMap<String, Meaning> {
    list.iter().map(|p| (p.id.clone(), meaning(p))).collect()
}

/// Runs one poll of `list` through the pure rules. `None` when the list is
/// refused (conflicting duplicates), which must change nothing.
fn poll(
    model: &mut Model,
    list: &[Value],
    rules: &Rules,
) -> Result<Option<Outcome>, TestCaseError> {
    let Ok((unique, _)) = diff::dedupe(parse(list)) else {
        return Ok(None);
    };
    let outcome = diff::diff(&model.previous(), unique.clone(), rules);
    let mut ids: Vec<&str> = outcome
        .changes
        .iter()
        .map(|c| c.profile.id.as_str())
        .collect();
    ids.sort_unstable();
    let before = ids.len();
    ids.dedup();
    prop_assert_eq!(ids.len(), before, "a profile changed twice in one poll");
    model.apply(&outcome)?;
    prop_assert_eq!(&model.replay, &model.snapshot_meaning());
    if outcome.settled {
        prop_assert_eq!(&model.replay, &list_meaning(&unique));
    }
    if rules.removal_confirmations == 1 && !unique.is_empty() {
        prop_assert!(outcome.settled, "a complete list left something pending");
    }
    Ok(Some(outcome))
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn replaying_the_changes_always_gives_the_snapshot_and_a_settled_list_polled_again_gives_nothing(
        lists in prop::collection::vec(list(), 1..10),
        rules in rules(),
    ) {
        let mut model = Model::default();
        for list in &lists {
            let before = model.snapshot_meaning();
            let Some(outcome) = poll(&mut model, list, &rules)? else {
                prop_assert_eq!(model.snapshot_meaning(), before);
                continue;
            };
            if outcome.settled {
                let again = poll(&mut model, list, &rules)?.expect("accepted once, accepted again");
                prop_assert!(again.changes.is_empty(), "the same list again: {:?}", again.changes);
                prop_assert!(again.ops.is_empty(), "the same list again: {:?}", again.ops);
            }
        }
    }

    #[test]
    fn a_list_and_any_reordering_or_respelling_of_it_are_the_same_data(
        list in prop::collection::vec(item(), 1..8),
        seed in any::<u64>(),
    ) {
        let rules = Rules::default();
        let mut model = Model::default();
        prop_assume!(poll(&mut model, &list, &rules)?.is_some());

        // The same profiles reordered, with IDs in other case and times in
        // other spellings of the same instants.
        let mut other: Vec<Value> = list.iter().map(|v| respell(v, seed)).collect();
        let len = other.len();
        other.rotate_left((seed as usize) % len);
        let again = poll(&mut model, &other, &rules)?.expect("a respelled list is accepted");
        prop_assert!(again.changes.is_empty(), "{:?}", again.changes);
    }
}

/// The same profile in other spelling: ID case flipped, time in another form.
fn respell(item: &Value, seed: u64) -> Value {
    let mut item = item.clone();
    let id = item["profileId"].as_str().unwrap();
    let flipped: String = if id.chars().any(|c| c.is_ascii_uppercase()) {
        id.to_lowercase()
    } else {
        id.to_uppercase()
    };
    item["profileId"] = json!(flipped);
    let time = item["modifiedTime"].as_str().unwrap().to_owned();
    for forms in TIMES {
        if forms.contains(&time.as_str()) {
            item["modifiedTime"] = json!(forms[(seed % 4) as usize]);
        }
    }
    item
}

// The same sequences through the real store.

const CUSTOMER: &str = "03f7382e-0000-1cda-0000-dd9a000074f0";

async fn commit(store: &Store, customer: &Customer, list: &[Profile], rules: &Rules) -> Outcome {
    store
        .commit_list(AcceptedList {
            customer,
            started_at: scanwatch::timestamp::now(),
            http_status: Some(200),
            profiles: list.to_vec(),
            rules,
        })
        .await
        .expect("the store commits")
        .outcome
}

/// `customer -> profile -> (name, mode, time)`, as `profiles` holds it.
fn stored_form(list: &[Profile]) -> common::sim::Contents {
    list.iter()
        .map(|p| {
            (
                (CUSTOMER.to_owned(), p.id.clone()),
                (p.name.clone(), p.scan_mode, p.modified_time.clone()),
            )
        })
        .collect()
}

fn sorted(changes: &[diff::Change]) -> Vec<diff::Change> {
    let mut changes = changes.to_vec();
    changes.sort_by(|a, b| (&a.profile.id, a.kind.as_str()).cmp(&(&b.profile.id, b.kind.as_str())));
    changes
}

async fn through_the_store(lists: Vec<Vec<Value>>, rules: Rules) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&scanwatch::config::StorageSettings {
        database: dir.path().join("p.db"),
        busy_timeout: std::time::Duration::from_secs(5),
        poll_retention: std::time::Duration::from_secs(86_400),
    })
    .await
    .unwrap();
    let customer = Customer {
        id: CustomerId::parse(CUSTOMER).unwrap(),
        name: None,
    };
    let mut model = Model::default();
    for list in &lists {
        let Some(expected) = poll(&mut model, list, &rules)? else {
            continue;
        };
        let (unique, _) = diff::dedupe(parse(list)).unwrap();
        let outcome = commit(&store, &customer, &unique, &rules).await;
        // The store reads its snapshot in ID order, the model keeps arrival
        // order, so removals may come in another order.
        prop_assert_eq!(sorted(&outcome.changes), sorted(&expected.changes));
        let violations = common::sim::history_violations(store.pool()).await;
        prop_assert!(violations.is_empty(), "{}", violations.join("\n"));
        if outcome.settled {
            prop_assert_eq!(
                common::sim::snapshot_contents(store.pool()).await,
                stored_form(&unique)
            );
            let again = commit(&store, &customer, &unique, &rules).await;
            prop_assert!(again.changes.is_empty(), "{:?}", again.changes);
            poll(&mut model, list, &rules)?;
        }
    }
    store.close().await;
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn the_store_records_exactly_what_the_rules_say_and_replays_to_its_snapshot(
        lists in prop::collection::vec(list(), 1..8),
        rules in rules(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(through_the_store(lists, rules))?;
    }
}
