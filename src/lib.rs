//! scanwatch: watches the scan profiles of AvePoint Elements customers and keeps
//! an exact, append-only history of every profile added, changed or removed.

pub mod api;
pub mod cli;
pub mod config;
pub mod customer;
pub mod diff;
pub mod history;
pub mod logging;
pub mod metrics;
pub mod notify;
pub mod poller;
pub mod profile;
pub mod scheduler;
pub mod simulator;
pub mod store;
pub mod timestamp;
