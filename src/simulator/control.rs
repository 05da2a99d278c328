//! Control commands: the ways a test or a demo changes the simulated world
//! between polls, posted as JSON to `POST /_sim/commands` or passed to
//! [`Simulator::apply`](super::Simulator::apply).
//!
//! This file owns what each command does to the state; it knows nothing of
//! HTTP. Each command is one JSON object tagged by `op`, so new commands
//! (fault injection, latency) are new `op` values and old JSON keeps working.

use rand::Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::faults::{Arming, Fault, FaultError, FaultTarget};
use super::state::{now, Behaviour, Shape, SimState};

/// One change to the simulated world, e.g.
/// `{"op": "rename_profile", "customer": "...", "profile_id": "...", "profile_name": "New"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
#[non_exhaustive]
pub enum Command {
    /// Adds a customer with `profiles` seeded profiles; returns `{"customer_id": ...}`.
    AddCustomer {
        #[serde(default)]
        profiles: usize,
    },
    /// Adds a profile (seeded name and scan mode unless given); returns it.
    AddProfile {
        customer: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        profile_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        scan_mode: Option<i64>,
    },
    /// Renames a profile and bumps its `modifiedTime`; returns it.
    RenameProfile {
        customer: String,
        profile_id: String,
        profile_name: String,
    },
    /// Sets a profile's scan mode and bumps its `modifiedTime`; returns it.
    SetScanMode {
        customer: String,
        profile_id: String,
        scan_mode: i64,
    },
    /// Removes a profile; returns the removed profile.
    DeleteProfile {
        customer: String,
        profile_id: String,
    },
    /// Makes `count` seeded-random changes (add, rename, scan mode switch,
    /// delete) across all customers; returns an array describing each.
    Mutate { count: usize },
    /// Chooses the envelope of the `GET` list for one customer, or for all
    /// (including customers added later) when `customer` is absent.
    SetShape {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer: Option<String>,
        shape: Shape,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        page_size: Option<usize>,
    },
    /// Invalidates every token issued so far.
    RevokeTokens,
    /// Sets any top-level field of a profile to any JSON value, to serve
    /// unknown fields or odd formats; bumps `modifiedTime` unless that is the
    /// field being set.
    SetProfileField {
        customer: String,
        profile_id: String,
        field: String,
        value: Value,
    },
    /// Delays every scan profile response for one customer, or for all
    /// (including customers added later) when `customer` is absent, by
    /// `latency_ms` plus a uniform random part of up to `jitter_ms`; 0 removes
    /// the delay. Lets tests keep a poll in flight and benchmarks model an API.
    SetLatency {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer: Option<String>,
        latency_ms: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        jitter_ms: Option<u64>,
    },
    /// Arms a fault on the token endpoint or the scan profile endpoints (for
    /// one customer, or all when `customer` is absent): it fires for the next
    /// `count` matching requests (every one when absent), each with chance
    /// `probability` (drawn from `seed`) when given, after letting `after`
    /// matching requests through. Returns `{"fault_id": N}`.
    InjectFault {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        customer: Option<String>,
        target: FaultTarget,
        fault: Fault,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        count: Option<u32>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        probability: Option<f64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seed: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        after: Option<u32>,
    },
    /// Disarms every fault; returns `{"cleared": N}`.
    ClearFaults,
}

/// Why a command could not be applied.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum ControlError {
    #[error("unknown customer {customer}")]
    UnknownCustomer { customer: String },
    #[error("customer {customer} has no profile {profile_id}")]
    UnknownProfile {
        customer: String,
        profile_id: String,
    },
    #[error("page_size must be at least 1")]
    ZeroPageSize,
    #[error("invalid fault: {0}")]
    InvalidFault(#[from] FaultError),
}

impl Command {
    /// Applies the command to `state`; returns what the control endpoint answers.
    pub(crate) fn apply(self, state: &mut SimState) -> Result<Value, ControlError> {
        match self {
            Command::AddCustomer { profiles } => {
                Ok(json!({"customer_id": state.add_customer(profiles)}))
            }
            Command::AddProfile {
                customer,
                profile_name,
                scan_mode,
            } => add_profile(state, &customer, profile_name, scan_mode),
            Command::RenameProfile {
                customer,
                profile_id,
                profile_name,
            } => set_field(
                state,
                &customer,
                &profile_id,
                "profileName",
                profile_name.into(),
            ),
            Command::SetScanMode {
                customer,
                profile_id,
                scan_mode,
            } => set_field(state, &customer, &profile_id, "scanMode", scan_mode.into()),
            Command::DeleteProfile {
                customer,
                profile_id,
            } => delete_profile(state, &customer, &profile_id),
            Command::Mutate { count } => Ok(mutate(state, count)),
            Command::SetShape {
                customer,
                shape,
                page_size,
            } => set_shape(state, customer.as_deref(), Behaviour { shape, page_size }),
            Command::RevokeTokens => Ok(json!({"revoked": state.revoke_tokens()})),
            Command::SetProfileField {
                customer,
                profile_id,
                field,
                value,
            } => set_field(state, &customer, &profile_id, &field, value),
            Command::SetLatency {
                customer,
                latency_ms,
                jitter_ms,
            } => set_latency(state, customer.as_deref(), latency_ms, jitter_ms),
            Command::InjectFault {
                customer,
                target,
                fault,
                count,
                probability,
                seed,
                after,
            } => {
                if let Some(customer) = &customer {
                    customer_index(state, customer)?;
                }
                let id = state.faults.arm(Arming {
                    customer,
                    target,
                    fault,
                    count,
                    probability,
                    seed,
                    after,
                })?;
                Ok(json!({"fault_id": id}))
            }
            Command::ClearFaults => Ok(json!({"cleared": state.faults.clear()})),
        }
    }
}

fn set_latency(
    state: &mut SimState,
    customer: Option<&str>,
    latency_ms: u64,
    jitter_ms: Option<u64>,
) -> Result<Value, ControlError> {
    let latency = std::time::Duration::from_millis(latency_ms);
    let jitter = std::time::Duration::from_millis(jitter_ms.unwrap_or(0));
    let affected = match customer {
        Some(customer) => {
            let index = customer_index(state, customer)?;
            state.customers[index].latency = latency;
            state.customers[index].latency_jitter = jitter;
            1
        }
        None => {
            state.default_latency = latency;
            state.default_latency_jitter = jitter;
            for c in &mut state.customers {
                c.latency = latency;
                c.latency_jitter = jitter;
            }
            state.customers.len()
        }
    };
    Ok(json!({"customers": affected}))
}

fn add_profile(
    state: &mut SimState,
    customer: &str,
    name: Option<String>,
    scan_mode: Option<i64>,
) -> Result<Value, ControlError> {
    let index = customer_index(state, customer)?;
    let profile = state.new_profile(name, scan_mode);
    state.customers[index].profiles.push(profile.clone());
    Ok(Value::Object(profile))
}

/// Sets one top-level field of a profile; see [`touch`].
fn set_field(
    state: &mut SimState,
    customer: &str,
    profile_id: &str,
    field: &str,
    value: Value,
) -> Result<Value, ControlError> {
    let (c, p) = profile_index(state, customer, profile_id)?;
    Ok(touch(state, c, p, field, value))
}

fn delete_profile(
    state: &mut SimState,
    customer: &str,
    profile_id: &str,
) -> Result<Value, ControlError> {
    let (c, p) = profile_index(state, customer, profile_id)?;
    let removed = state.customers[c].profiles.remove(p);
    Ok(Value::Object(removed))
}

fn set_shape(
    state: &mut SimState,
    customer: Option<&str>,
    behaviour: Behaviour,
) -> Result<Value, ControlError> {
    if behaviour.page_size == Some(0) {
        return Err(ControlError::ZeroPageSize);
    }
    let affected = match customer {
        Some(customer) => {
            let index = customer_index(state, customer)?;
            state.customers[index].behaviour = behaviour;
            1
        }
        None => {
            state.default_behaviour = behaviour;
            for c in &mut state.customers {
                c.behaviour = behaviour;
            }
            state.customers.len()
        }
    };
    Ok(json!({"customers": affected}))
}

fn mutate(state: &mut SimState, count: usize) -> Value {
    let mut done = Vec::with_capacity(count);
    while done.len() < count && !state.customers.is_empty() {
        done.push(mutate_once(state));
    }
    Value::Array(done)
}

/// One seeded-random change. A customer's last profile is never deleted (an
/// add happens instead): an empty list means something special to the
/// watcher, and tests ask for it explicitly with `delete_profile`.
fn mutate_once(state: &mut SimState) -> Value {
    let c = state.rng.random_range(0..state.customers.len());
    let customer = state.customers[c].id.clone();
    let len = state.customers[c].profiles.len();
    let op: u8 = state.rng.random_range(0..4);
    if op == 0 || len == 0 || (op == 3 && len == 1) {
        let profile = state.new_profile(None, None);
        state.customers[c].profiles.push(profile.clone());
        return describe("add_profile", &customer, Value::Object(profile));
    }

    let p = state.rng.random_range(0..len);
    match op {
        1 => describe("rename_profile", &customer, rename_at(state, c, p)),
        2 => describe("set_scan_mode", &customer, switch_scan_mode_at(state, c, p)),
        _ => {
            let removed = state.customers[c].profiles.remove(p);
            describe("delete_profile", &customer, Value::Object(removed))
        }
    }
}

fn rename_at(state: &mut SimState, c: usize, p: usize) -> Value {
    let mut name = state.profile_name();
    let old = state.customers[c].profiles[p].get("profileName");
    if old.and_then(Value::as_str) == Some(name.as_str()) {
        name.push_str(" (renamed)");
    }
    touch(state, c, p, "profileName", Value::String(name))
}

fn switch_scan_mode_at(state: &mut SimState, c: usize, p: usize) -> Value {
    let current = state.customers[c].profiles[p].get("scanMode");
    let next = if current.and_then(Value::as_i64) == Some(0) {
        1
    } else {
        0
    };
    touch(state, c, p, "scanMode", Value::from(next))
}

/// Sets a field and, as the real API does on any edit, moves `modifiedTime`
/// to now, unless `modifiedTime` itself is the field being set.
fn touch(state: &mut SimState, c: usize, p: usize, field: &str, value: Value) -> Value {
    let profile = &mut state.customers[c].profiles[p];
    profile.insert(field.to_owned(), value);
    if field != "modifiedTime" {
        profile.insert("modifiedTime".to_owned(), Value::String(now()));
    }
    Value::Object(profile.clone())
}

/// One entry of `mutate`'s answer: the op, whom it touched, and the profile
/// after the change (before it, for a delete).
fn describe(op: &str, customer: &str, profile: Value) -> Value {
    let profile_id = profile.get("profileId").cloned().unwrap_or(Value::Null);
    json!({"op": op, "customer": customer, "profile_id": profile_id, "profile": profile})
}

fn customer_index(state: &SimState, customer: &str) -> Result<usize, ControlError> {
    state
        .customers
        .iter()
        .position(|c| c.id.eq_ignore_ascii_case(customer))
        .ok_or_else(|| ControlError::UnknownCustomer {
            customer: customer.to_owned(),
        })
}

fn profile_index(
    state: &SimState,
    customer: &str,
    profile_id: &str,
) -> Result<(usize, usize), ControlError> {
    let c = customer_index(state, customer)?;
    let p = state.customers[c]
        .profile_index(profile_id)
        .ok_or_else(|| ControlError::UnknownProfile {
            customer: customer.to_owned(),
            profile_id: profile_id.to_owned(),
        })?;
    Ok((c, p))
}
