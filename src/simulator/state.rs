//! The simulator's in-memory world: customers, their profiles, how each
//! customer's list is served, issued tokens and request counters.
//!
//! Everything random here comes from one ChaCha generator seeded from
//! [`SimConfig::seed`], so the same seed and the same commands give the same
//! IDs and names. Tokens and request IDs use another generator on purpose:
//! how often a client asks for a token must not shift the seeded data.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::faults::Faults;
use super::SimConfig;

/// A profile exactly as served: a JSON object, so tests can add any field.
pub(crate) type Profile = Map<String, Value>;

const AREAS: &[&str] = &[
    "Finance",
    "Legal",
    "HR",
    "Sales",
    "Engineering",
    "Marketing",
    "Executive",
    "Support",
];
const KINDS: &[&str] = &[
    "Mailboxes",
    "Sites",
    "OneDrive",
    "Teams",
    "Groups",
    "Public Folders",
];

/// Request counters, served by `GET /_sim/state`.
///
/// Tests use them to prove what the watcher did on the wire (a cached token,
/// one request per page). New counters are added as new fields, which keeps
/// existing JSON readers working.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Requests to `POST /connect/token`, successful or not.
    pub token_requests: u64,
    /// Requests to the scan profile endpoints (list and batch), successful or not.
    pub api_requests: u64,
}

/// The envelope the `GET` list endpoint answers with, so the watcher's
/// parsing of every shape seen in AvePoint's API family can be tested.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum Shape {
    /// A bare JSON array: the documented shape.
    #[default]
    #[serde(rename = "array")]
    Array,
    /// `{"@odata.context", "value", "@odata.nextLink"}`, paged by `$skip`.
    #[serde(rename = "odata")]
    OData,
    /// `{"data", "metadata": {"pageIndex", "pageSize", "totalCount"}}`, all in one page.
    #[serde(rename = "data_metadata")]
    DataMetadata,
}

/// How one customer's requests are answered. Fault injection (status codes,
/// Retry-After, truncated bodies, delays) belongs here as more fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Behaviour {
    pub shape: Shape,
    /// Page size set by `SetShape`: pages OData lists (default 2) and caps
    /// the batch endpoint's `pageSize`.
    pub page_size: Option<usize>,
}

#[derive(Debug)]
pub(crate) struct Customer {
    pub id: String,
    pub profiles: Vec<Profile>,
    pub behaviour: Behaviour,
    /// How long each scan profile response is held back (`SetLatency`).
    pub latency: Duration,
    /// Up to this much more, drawn afresh for each response (`SetLatency`).
    pub latency_jitter: Duration,
}

impl Customer {
    pub fn profile_index(&self, profile_id: &str) -> Option<usize> {
        self.profiles.iter().position(|p| {
            p.get("profileId")
                .and_then(Value::as_str)
                .is_some_and(|id| id.eq_ignore_ascii_case(profile_id))
        })
    }
}

/// The whole world behind one mutex: requests are tiny and never await
/// while holding it.
#[derive(Debug)]
pub(crate) struct SimState {
    pub config: Arc<SimConfig>,
    pub rng: ChaCha8Rng,
    pub customers: Vec<Customer>,
    /// Applied to customers added later, so `SetShape` for all sticks.
    pub default_behaviour: Behaviour,
    /// Applied to customers added later, so `SetLatency` for all sticks.
    pub default_latency: Duration,
    pub default_latency_jitter: Duration,
    /// Position in `customers` by lower-case ID: a benchmark serves 10,000
    /// customers, and a linear search per request would be the bottleneck.
    index: HashMap<String, usize>,
    /// Issued tokens and when each expires.
    tokens: HashMap<String, Instant>,
    pub counters: Counters,
    /// Armed fault injections (`InjectFault`).
    pub faults: Faults,
}

impl SimState {
    pub fn new(config: Arc<SimConfig>) -> Self {
        let mut state = SimState {
            rng: ChaCha8Rng::seed_from_u64(config.seed),
            config,
            customers: Vec::new(),
            default_behaviour: Behaviour::default(),
            default_latency: Duration::ZERO,
            default_latency_jitter: Duration::ZERO,
            index: HashMap::new(),
            tokens: HashMap::new(),
            counters: Counters::default(),
            faults: Faults::default(),
        };
        for _ in 0..state.config.customers {
            state.add_customer(state.config.profiles);
        }
        state
    }

    /// Adds a customer with `profiles` seeded profiles; returns its ID.
    pub fn add_customer(&mut self, profiles: usize) -> String {
        let id = guid(&mut self.rng);
        let profiles = (0..profiles).map(|_| self.seeded_profile()).collect();
        self.index.insert(id.clone(), self.customers.len());
        self.customers.push(Customer {
            id: id.clone(),
            profiles,
            behaviour: self.default_behaviour,
            latency: self.default_latency,
            latency_jitter: self.default_latency_jitter,
        });
        id
    }

    /// A profile as it might have been created some days ago.
    fn seeded_profile(&mut self) -> Profile {
        // At least a day old, so a mutation's fresh modifiedTime always differs.
        let age = Duration::from_secs(self.rng.random_range(86_400..90 * 86_400));
        let modified = Utc::now() - age;
        let name = self.profile_name();
        let scan_mode = self.rng.random_range(0..=1);
        profile(guid(&mut self.rng), name, scan_mode, timestamp(modified))
    }

    /// A profile created now, with a seeded ID and, unless given, a seeded
    /// name and scan mode.
    pub fn new_profile(&mut self, name: Option<String>, scan_mode: Option<i64>) -> Profile {
        let id = guid(&mut self.rng);
        let name = name.unwrap_or_else(|| self.profile_name());
        let scan_mode = scan_mode.unwrap_or_else(|| self.rng.random_range(0..=1));
        profile(id, name, scan_mode, now())
    }

    /// A plausible name such as "Finance Mailboxes 3".
    pub fn profile_name(&mut self) -> String {
        let area = AREAS[self.rng.random_range(0..AREAS.len())];
        let kind = KINDS[self.rng.random_range(0..KINDS.len())];
        let number: u32 = self.rng.random_range(1..=9);
        format!("{area} {kind} {number}")
    }

    /// Looks a customer up by ID, ignoring case as GUIDs allow.
    pub fn customer(&self, id: &str) -> Option<&Customer> {
        let at = match self.index.get(id) {
            Some(&at) => at,
            None => *self.index.get(&id.to_ascii_lowercase())?,
        };
        self.customers.get(at)
    }

    /// The delay `SetLatency` asked for on `id`'s responses, jitter drawn
    /// (none for an unknown customer, whose 403 is immediate).
    pub fn latency(&self, id: &str) -> Duration {
        let Some(customer) = self.customer(id) else {
            return Duration::ZERO;
        };
        let jitter = customer.latency_jitter.as_micros() as u64;
        let extra = match jitter {
            0 => 0,
            _ => rand::rng().random_range(0..=jitter),
        };
        customer.latency + Duration::from_micros(extra)
    }

    /// Profiles served across all customers.
    pub fn profile_count(&self) -> usize {
        self.customers.iter().map(|c| c.profiles.len()).sum()
    }

    pub fn customer_ids(&self) -> Vec<String> {
        self.customers.iter().map(|c| c.id.clone()).collect()
    }

    pub fn profiles_json(&self, customer_id: &str) -> Vec<Value> {
        self.customer(customer_id)
            .map(|c| c.profiles.iter().cloned().map(Value::Object).collect())
            .unwrap_or_default()
    }

    /// Issues a fresh opaque token valid for the configured lifetime.
    pub fn issue_token(&mut self) -> String {
        let now = Instant::now();
        self.tokens.retain(|_, expiry| *expiry > now);

        let token = random_hex(32);
        self.tokens
            .insert(token.clone(), now + self.config.token_lifetime);
        token
    }

    pub fn token_is_valid(&self, token: &str) -> bool {
        self.tokens
            .get(token)
            .is_some_and(|expiry| *expiry > Instant::now())
    }

    pub fn revoke_tokens(&mut self) -> usize {
        let revoked = self.tokens.len();
        self.tokens.clear();
        revoked
    }

    /// `GET /_sim/state`: counters and a summary of every customer.
    pub fn summary(&self) -> Value {
        let customers: Vec<Value> = self
            .customers
            .iter()
            .map(|c| json!({"customer_id": c.id, "profiles": c.profiles.len()}))
            .collect();
        let faults = json!({"armed": self.faults.armed(), "fired": self.faults.fired});
        json!({"counters": self.counters, "customers": customers, "faults": faults})
    }
}

/// The state shared by the HTTP handlers and the [`Simulator`](super::Simulator) handle.
#[derive(Debug, Clone)]
pub(crate) struct SharedState(Arc<Mutex<SimState>>);

impl SharedState {
    pub fn new(state: SimState) -> Self {
        SharedState(Arc::new(Mutex::new(state)))
    }

    /// Locks the state; a panic in another holder leaves plain data behind,
    /// which is still fine to serve, so poisoning is ignored.
    pub fn lock(&self) -> MutexGuard<'_, SimState> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

fn profile(id: String, name: String, scan_mode: i64, modified_time: String) -> Profile {
    let mut profile = Map::new();
    profile.insert("profileName".to_owned(), Value::String(name));
    profile.insert("profileId".to_owned(), Value::String(id));
    profile.insert("scanMode".to_owned(), Value::from(scan_mode));
    profile.insert("modifiedTime".to_owned(), Value::String(modified_time));
    profile
}

/// A lower-case version 4 GUID drawn from `rng`.
fn guid(rng: &mut impl Rng) -> String {
    let bytes: [u8; 16] = rng.random();
    uuid::Builder::from_random_bytes(bytes)
        .into_uuid()
        .hyphenated()
        .to_string()
}

/// The current UTC time in the API's form, e.g. `2025-09-11T03:19:14Z`.
pub(crate) fn now() -> String {
    timestamp(Utc::now())
}

fn timestamp(time: chrono::DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// An unseeded GUID for the `request-id` header.
pub(crate) fn request_id() -> String {
    guid(&mut rand::rng())
}

/// Unseeded randomness for tokens.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut rng = rand::rng();
    (0..bytes)
        .map(|_| format!("{:02x}", rng.random::<u8>()))
        .collect()
}
