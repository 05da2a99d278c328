//! The change rules: an old snapshot and a new complete list in, the changes
//! to record and the snapshot updates out.
//!
//! This module does no I/O and reads no clock, so every rule of the design's
//! change-semantics table is a plain function call to test. The store calls
//! [`diff`] inside its write transaction; the poller calls [`dedupe`] before
//! that, because a list with conflicting duplicates fails the poll.

use std::collections::{BTreeSet, HashMap};

use crate::profile::{field, Profile};

/// A profile as the snapshot holds it.
#[derive(Debug, Clone, PartialEq)]
pub struct SnapshotEntry {
    pub profile: Profile,
    /// Consecutive complete lists that lacked this profile.
    pub missing_polls: u32,
}

/// What the store knows about a customer before this poll.
#[derive(Debug, Clone, Default)]
pub struct Previous {
    pub snapshot: Vec<SnapshotEntry>,
    /// Consecutive polls that returned an empty list while the snapshot was not empty.
    pub empty_streak: u32,
    /// Whether any change was ever recorded for this customer; when not,
    /// additions are the baseline rather than news.
    pub has_history: bool,
}

/// The thresholds from `[detection]`.
#[derive(Debug, Clone)]
pub struct Rules {
    pub ignore_fields: BTreeSet<String>,
    pub removal_confirmations: u32,
    pub empty_list_confirmations: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            ignore_fields: BTreeSet::new(),
            removal_confirmations: 1,
            empty_list_confirmations: 2,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Removed,
}

impl ChangeKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Added => "added",
            ChangeKind::Changed => "changed",
            ChangeKind::Removed => "removed",
        }
    }
}

/// One row of the change log, before it has a poll ID and a time.
#[derive(Debug, Clone, PartialEq)]
pub struct Change {
    pub kind: ChangeKind,
    pub baseline: bool,
    /// The profile now; for a removal, the last version seen.
    pub profile: Profile,
    /// The version before a `changed`; `None` for added and removed.
    pub previous: Option<Profile>,
    /// Sorted names of the fields that differ; `None` for added and removed.
    pub changed_fields: Option<Vec<String>>,
}

/// A write to the snapshot table.
#[derive(Debug, Clone, PartialEq)]
pub enum SnapshotOp {
    /// Insert the profile, or replace what the snapshot holds for it, with
    /// `missing_polls` back at zero.
    Put(Profile),
    /// The profile stays, but one more list lacked it.
    Missing {
        profile_id: String,
        missing_polls: u32,
    },
    /// The profile was recorded as removed and leaves the snapshot.
    Delete { profile_id: String },
}

/// Something worth a warning in the logs that is not a change.
#[derive(Debug, Clone, PartialEq)]
pub enum Warning {
    /// The same profile appeared more than once with identical content.
    DuplicateMerged { profile_id: String, copies: usize },
    /// `modifiedTime` went backwards; the change is recorded all the same.
    ModifiedTimeBackwards {
        profile_id: String,
        old: String,
        new: String,
    },
    /// An empty list was not believed yet: the snapshot is kept.
    EmptyListHeld {
        streak: u32,
        confirmations: u32,
        snapshot_profiles: usize,
    },
}

/// Everything one accepted list leads to.
#[derive(Debug, Clone, Default)]
pub struct Outcome {
    pub changes: Vec<Change>,
    pub ops: Vec<SnapshotOp>,
    pub empty_streak: u32,
    pub warnings: Vec<Warning>,
    /// True when the snapshot now mirrors the list exactly: no profile is
    /// waiting for a removal confirmation and no empty list is pending. Only
    /// then may the next identical list be skipped without a full diff.
    pub settled: bool,
}

impl Outcome {
    pub fn count(&self, kind: ChangeKind) -> usize {
        self.changes.iter().filter(|c| c.kind == kind).count()
    }
}

/// Why a list cannot be accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DiffError {
    #[error("profile {profile_id} appears more than once in the list with different content")]
    ConflictingDuplicate { profile_id: String },
}

/// Merges identical duplicates and refuses conflicting ones.
///
/// Duplicates are compared the way versions of a profile are, so two copies
/// that differ only in formatting count as identical.
pub fn dedupe(list: Vec<Profile>) -> Result<(Vec<Profile>, Vec<Warning>), DiffError> {
    let mut position: HashMap<String, usize> = HashMap::with_capacity(list.len());
    let mut copies: Vec<usize> = Vec::with_capacity(list.len());
    let mut unique: Vec<Profile> = Vec::with_capacity(list.len());
    for profile in list {
        match position.get(&profile.id) {
            Some(&at) => {
                if !differing_fields(&unique[at], &profile, &BTreeSet::new()).is_empty() {
                    return Err(DiffError::ConflictingDuplicate {
                        profile_id: profile.id,
                    });
                }
                copies[at] += 1;
            }
            None => {
                position.insert(profile.id.clone(), unique.len());
                copies.push(1);
                unique.push(profile);
            }
        }
    }
    let warnings = unique
        .iter()
        .zip(&copies)
        .filter(|(_, &n)| n > 1)
        .map(|(p, &n)| Warning::DuplicateMerged {
            profile_id: p.id.clone(),
            copies: n,
        })
        .collect();
    Ok((unique, warnings))
}

/// Compares a complete, deduplicated list with the snapshot.
pub fn diff(previous: &Previous, list: Vec<Profile>, rules: &Rules) -> Outcome {
    if list.is_empty() {
        return diff_empty(previous, rules);
    }

    let mut outcome = Outcome {
        settled: true,
        ..Outcome::default()
    };
    let mut seen: HashMap<&str, ()> = HashMap::with_capacity(list.len());
    let by_id: HashMap<&str, &SnapshotEntry> = previous
        .snapshot
        .iter()
        .map(|e| (e.profile.id.as_str(), e))
        .collect();

    for profile in &list {
        seen.insert(profile.id.as_str(), ());
        let Some(entry) = by_id.get(profile.id.as_str()) else {
            outcome.changes.push(Change {
                kind: ChangeKind::Added,
                baseline: !previous.has_history,
                profile: profile.clone(),
                previous: None,
                changed_fields: None,
            });
            outcome.ops.push(SnapshotOp::Put(profile.clone()));
            continue;
        };

        let old = &entry.profile;
        if old.raw == profile.raw {
            // The very same object, as most of a list is from one poll to
            // the next: nothing to compare field by field, and nothing to
            // write unless it is back before its removal was confirmed.
            if entry.missing_polls > 0 {
                outcome.ops.push(SnapshotOp::Put(profile.clone()));
            }
            continue;
        }
        let fields = differing_fields(old, profile, &rules.ignore_fields);
        if !fields.is_empty() {
            if let (Some(was), Some(now)) = (&old.modified_time, &profile.modified_time) {
                if now < was {
                    outcome.warnings.push(Warning::ModifiedTimeBackwards {
                        profile_id: profile.id.clone(),
                        old: was.clone(),
                        new: now.clone(),
                    });
                }
            }
            outcome.changes.push(Change {
                kind: ChangeKind::Changed,
                baseline: false,
                profile: profile.clone(),
                previous: Some(old.clone()),
                changed_fields: Some(fields),
            });
            outcome.ops.push(SnapshotOp::Put(profile.clone()));
        } else if old.raw != profile.raw || entry.missing_polls > 0 {
            // Same meaning, other text (or back before its removal was
            // confirmed): refresh the snapshot without recording anything.
            outcome.ops.push(SnapshotOp::Put(profile.clone()));
        }
    }

    for entry in &previous.snapshot {
        if seen.contains_key(entry.profile.id.as_str()) {
            continue;
        }
        let missing_polls = entry.missing_polls + 1;
        if missing_polls >= rules.removal_confirmations {
            outcome.changes.push(removal(&entry.profile));
            outcome.ops.push(SnapshotOp::Delete {
                profile_id: entry.profile.id.clone(),
            });
        } else {
            outcome.settled = false;
            outcome.ops.push(SnapshotOp::Missing {
                profile_id: entry.profile.id.clone(),
                missing_polls,
            });
        }
    }
    outcome
}

/// An empty list removes everything only once it has been seen
/// `empty_list_confirmations` times in a row: an API that briefly answers
/// `[]` must not wipe a customer's history.
fn diff_empty(previous: &Previous, rules: &Rules) -> Outcome {
    if previous.snapshot.is_empty() {
        return Outcome {
            settled: true,
            ..Outcome::default()
        };
    }
    let streak = previous.empty_streak + 1;
    if streak < rules.empty_list_confirmations {
        return Outcome {
            empty_streak: streak,
            warnings: vec![Warning::EmptyListHeld {
                streak,
                confirmations: rules.empty_list_confirmations,
                snapshot_profiles: previous.snapshot.len(),
            }],
            ..Outcome::default()
        };
    }
    Outcome {
        changes: previous
            .snapshot
            .iter()
            .map(|e| removal(&e.profile))
            .collect(),
        ops: previous
            .snapshot
            .iter()
            .map(|e| SnapshotOp::Delete {
                profile_id: e.profile.id.clone(),
            })
            .collect(),
        empty_streak: 0,
        warnings: Vec::new(),
        settled: true,
    }
}

fn removal(profile: &Profile) -> Change {
    Change {
        kind: ChangeKind::Removed,
        baseline: false,
        profile: profile.clone(),
        previous: None,
        changed_fields: None,
    }
}

/// Sorted names of the top-level fields whose meaning differs.
fn differing_fields(old: &Profile, new: &Profile, ignore: &BTreeSet<String>) -> Vec<String> {
    let keys: BTreeSet<&str> = old
        .raw
        .keys()
        .chain(new.raw.keys())
        .map(String::as_str)
        .chain([field::ID])
        .collect();
    keys.into_iter()
        .filter(|key| !ignore.contains(*key))
        .filter(|key| old.comparable(key) != new.comparable(key))
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    const A: &str = "aaaaaaaa-0000-0000-0000-000000000001";
    const B: &str = "bbbbbbbb-0000-0000-0000-000000000002";

    fn profile(value: Value) -> Profile {
        Profile::parse(0, value).unwrap()
    }

    fn basic(id: &str, name: &str, mode: i64, time: &str) -> Profile {
        profile(
            json!({"profileId": id, "profileName": name, "scanMode": mode, "modifiedTime": time}),
        )
    }

    fn snapshot(profiles: &[Profile]) -> Previous {
        Previous {
            snapshot: profiles
                .iter()
                .map(|p| SnapshotEntry {
                    profile: p.clone(),
                    missing_polls: 0,
                })
                .collect(),
            empty_streak: 0,
            has_history: !profiles.is_empty(),
        }
    }

    fn kinds(outcome: &Outcome) -> Vec<(ChangeKind, String, bool)> {
        outcome
            .changes
            .iter()
            .map(|c| (c.kind, c.profile.id.clone(), c.baseline))
            .collect()
    }

    #[test]
    fn first_profiles_ever_are_baseline_additions() {
        let list = vec![basic(A, "One", 0, "2025-01-01T00:00:00Z")];
        let outcome = diff(&Previous::default(), list.clone(), &Rules::default());
        assert_eq!(kinds(&outcome), vec![(ChangeKind::Added, A.into(), true)]);
        assert_eq!(outcome.ops, vec![SnapshotOp::Put(list[0].clone())]);
        assert!(outcome.settled);
    }

    #[test]
    fn a_new_profile_after_history_is_not_baseline() {
        let one = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let two = basic(B, "Two", 1, "2025-01-02T00:00:00Z");
        let outcome = diff(
            &snapshot(std::slice::from_ref(&one)),
            vec![one, two],
            &Rules::default(),
        );
        assert_eq!(kinds(&outcome), vec![(ChangeKind::Added, B.into(), false)]);
        assert_eq!(outcome.changes[0].changed_fields, None);
    }

    #[test]
    fn a_renamed_profile_is_changed_with_its_fields_and_old_values() {
        let old = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let new = basic(A, "Uno", 1, "2025-01-02T00:00:00Z");
        let outcome = diff(
            &snapshot(std::slice::from_ref(&old)),
            vec![new.clone()],
            &Rules::default(),
        );
        assert_eq!(
            kinds(&outcome),
            vec![(ChangeKind::Changed, A.into(), false)]
        );
        let change = &outcome.changes[0];
        assert_eq!(
            change.changed_fields.as_deref(),
            Some(
                &[
                    "modifiedTime".to_owned(),
                    "profileName".into(),
                    "scanMode".into()
                ][..]
            )
        );
        assert_eq!(change.previous.as_ref(), Some(&old));
        assert_eq!(change.profile, new);
        assert_eq!(outcome.ops, vec![SnapshotOp::Put(new)]);
    }

    #[test]
    fn formatting_only_differences_refresh_the_snapshot_silently() {
        let old = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let new = profile(
            json!({"modifiedTime": "2025-01-01T00:00:00.000Z", "scanMode": 0,
                                 "profileName": "One", "profileId": A.to_uppercase()}),
        );
        let outcome = diff(&snapshot(&[old]), vec![new.clone()], &Rules::default());
        assert!(outcome.changes.is_empty());
        assert_eq!(outcome.ops, vec![SnapshotOp::Put(new)]);
    }

    #[test]
    fn key_order_alone_changes_nothing_at_all() {
        let old = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let new = profile(
            json!({"scanMode": 0, "modifiedTime": "2025-01-01T00:00:00Z",
                                 "profileName": "One", "profileId": A}),
        );
        let outcome = diff(&snapshot(&[old]), vec![new], &Rules::default());
        assert!(outcome.changes.is_empty());
        assert!(outcome.ops.is_empty());
    }

    #[test]
    fn an_ignored_field_is_never_a_change() {
        let old = profile(json!({"profileId": A, "lastScan": "monday"}));
        let new = profile(json!({"profileId": A, "lastScan": "tuesday"}));
        let rules = Rules {
            ignore_fields: ["lastScan".to_owned()].into(),
            ..Rules::default()
        };
        let outcome = diff(&snapshot(&[old]), vec![new.clone()], &rules);
        assert!(outcome.changes.is_empty());
        assert_eq!(outcome.ops, vec![SnapshotOp::Put(new)]);
    }

    #[test]
    fn an_unknown_field_that_changes_is_a_change() {
        let old = profile(json!({"profileId": A, "description": "a"}));
        let new = profile(json!({"profileId": A, "description": "b"}));
        let outcome = diff(&snapshot(&[old]), vec![new], &Rules::default());
        assert_eq!(
            outcome.changes[0].changed_fields.as_deref(),
            Some(&["description".to_owned()][..])
        );
    }

    #[test]
    fn absent_and_null_are_the_same() {
        let old = profile(json!({"profileId": A, "profileName": null, "extra": null}));
        let new = profile(json!({"profileId": A}));
        let outcome = diff(&snapshot(&[old]), vec![new], &Rules::default());
        assert!(outcome.changes.is_empty());
    }

    #[test]
    fn a_missing_profile_is_removed_with_its_last_values() {
        let one = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let two = basic(B, "Two", 1, "2025-01-01T00:00:00Z");
        let outcome = diff(
            &snapshot(&[one.clone(), two.clone()]),
            vec![one],
            &Rules::default(),
        );
        assert_eq!(
            kinds(&outcome),
            vec![(ChangeKind::Removed, B.into(), false)]
        );
        let change = &outcome.changes[0];
        assert_eq!(change.profile, two);
        assert_eq!(change.previous, None);
        assert_eq!(change.changed_fields, None);
        assert_eq!(
            outcome.ops,
            vec![SnapshotOp::Delete {
                profile_id: B.into()
            }]
        );
    }

    #[test]
    fn removal_waits_for_its_confirmations() {
        let one = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let two = basic(B, "Two", 1, "2025-01-01T00:00:00Z");
        let rules = Rules {
            removal_confirmations: 2,
            ..Rules::default()
        };
        let mut previous = snapshot(&[one.clone(), two]);

        let first = diff(&previous, vec![one.clone()], &rules);
        assert!(first.changes.is_empty());
        assert!(!first.settled);
        assert_eq!(
            first.ops,
            vec![SnapshotOp::Missing {
                profile_id: B.into(),
                missing_polls: 1
            }]
        );

        previous.snapshot[1].missing_polls = 1;
        let second = diff(&previous, vec![one], &rules);
        assert_eq!(kinds(&second), vec![(ChangeKind::Removed, B.into(), false)]);
        assert!(second.settled);
    }

    #[test]
    fn a_profile_back_before_its_removal_is_confirmed_is_not_a_change() {
        let one = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let mut previous = snapshot(std::slice::from_ref(&one));
        previous.snapshot[0].missing_polls = 1;
        let rules = Rules {
            removal_confirmations: 3,
            ..Rules::default()
        };
        let outcome = diff(&previous, vec![one.clone()], &rules);
        assert!(outcome.changes.is_empty());
        assert_eq!(outcome.ops, vec![SnapshotOp::Put(one)]);
        assert!(outcome.settled);
    }

    #[test]
    fn a_profile_that_reappears_after_removal_is_added_again_without_baseline() {
        let one = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let previous = Previous {
            has_history: true,
            ..Previous::default()
        };
        let outcome = diff(&previous, vec![one], &Rules::default());
        assert_eq!(kinds(&outcome), vec![(ChangeKind::Added, A.into(), false)]);
    }

    #[test]
    fn an_empty_list_is_held_until_confirmed() {
        let one = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let mut previous = snapshot(std::slice::from_ref(&one));
        let rules = Rules::default();

        let first = diff(&previous, vec![], &rules);
        assert!(first.changes.is_empty());
        assert!(first.ops.is_empty());
        assert_eq!(first.empty_streak, 1);
        assert!(!first.settled);
        assert!(matches!(
            first.warnings[..],
            [Warning::EmptyListHeld { streak: 1, .. }]
        ));

        previous.empty_streak = 1;
        let second = diff(&previous, vec![], &rules);
        assert_eq!(kinds(&second), vec![(ChangeKind::Removed, A.into(), false)]);
        assert_eq!(
            second.ops,
            vec![SnapshotOp::Delete {
                profile_id: A.into()
            }]
        );
        assert_eq!(second.empty_streak, 0);
    }

    #[test]
    fn a_non_empty_list_resets_the_empty_streak() {
        let one = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let mut previous = snapshot(std::slice::from_ref(&one));
        previous.empty_streak = 1;
        let outcome = diff(&previous, vec![one], &Rules::default());
        assert_eq!(outcome.empty_streak, 0);
        assert!(outcome.changes.is_empty());
    }

    #[test]
    fn an_empty_list_with_an_empty_snapshot_is_nothing() {
        let outcome = diff(&Previous::default(), vec![], &Rules::default());
        assert!(outcome.changes.is_empty() && outcome.ops.is_empty());
        assert_eq!(outcome.empty_streak, 0);
        assert!(outcome.settled);
    }

    #[test]
    fn modified_time_going_backwards_is_a_change_and_a_warning() {
        let old = basic(A, "One", 0, "2025-02-01T00:00:00Z");
        let new = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let outcome = diff(&snapshot(&[old]), vec![new], &Rules::default());
        assert_eq!(
            kinds(&outcome),
            vec![(ChangeKind::Changed, A.into(), false)]
        );
        assert!(matches!(
            &outcome.warnings[..],
            [Warning::ModifiedTimeBackwards { old, new, .. }]
                if old.starts_with("2025-02") && new.starts_with("2025-01")
        ));
    }

    #[test]
    fn the_same_list_again_changes_nothing() {
        let list = vec![
            basic(A, "One", 0, "2025-01-01T00:00:00Z"),
            basic(B, "Two", 1, "2025-01-01T00:00:00Z"),
        ];
        let outcome = diff(&snapshot(&list), list, &Rules::default());
        assert!(outcome.changes.is_empty());
        assert!(outcome.ops.is_empty());
        assert!(outcome.settled);
    }

    #[test]
    fn identical_duplicates_are_merged_with_a_warning() {
        let one = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let copy = basic(&A.to_uppercase(), "One", 0, "2025-01-01T00:00:00.000Z");
        let (list, warnings) = dedupe(vec![one.clone(), copy]).unwrap();
        assert_eq!(list, vec![one]);
        assert_eq!(
            warnings,
            vec![Warning::DuplicateMerged {
                profile_id: A.into(),
                copies: 2
            }]
        );
    }

    #[test]
    fn differing_duplicates_fail() {
        let one = basic(A, "One", 0, "2025-01-01T00:00:00Z");
        let other = basic(A, "Other", 0, "2025-01-01T00:00:00Z");
        assert_eq!(
            dedupe(vec![one, other]),
            Err(DiffError::ConflictingDuplicate {
                profile_id: A.into()
            })
        );
    }
}
