//! scanwatch: watches the scan profiles of AvePoint Elements customers and keeps
//! an exact, append-only history of every profile added, changed or removed.

pub mod simulator;
