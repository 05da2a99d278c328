//! The systemd notify protocol, for `scanwatch run` under `Type=notify`.
//!
//! systemd passes `NOTIFY_SOCKET` (and `WATCHDOG_USEC` when the unit sets
//! `WatchdogSec`); without them every call here does nothing, so `run` in a
//! terminal behaves the same. Sending is best effort: a lost datagram is
//! logged at debug and never stops the daemon.

use std::time::Duration;

use sd_notify::NotifyState;

/// Talks to the service manager, when there is one.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    watchdog: Option<Duration>,
}

impl Notifier {
    /// Reads the environment systemd set up for this process.
    pub fn from_env() -> Notifier {
        Notifier {
            watchdog: watchdog_timeout(
                std::env::var("WATCHDOG_USEC").ok().as_deref(),
                std::env::var("WATCHDOG_PID").ok().as_deref(),
                std::process::id(),
            ),
        }
    }

    /// How often to send `WATCHDOG=1`: half the timeout systemd enforces,
    /// as `sd_watchdog_enabled(3)` advises; `None` without a watchdog.
    pub fn watchdog_period(&self) -> Option<Duration> {
        self.watchdog.map(|timeout| timeout / 2)
    }

    /// Startup (or a reload) is complete.
    pub fn ready(&self, status: &str) {
        send(&[NotifyState::Ready, NotifyState::Status(status)]);
    }

    /// A reload began; [`Notifier::ready`] ends it.
    pub fn reloading(&self) {
        match NotifyState::monotonic_usec_now() {
            Ok(now) => send(&[NotifyState::Reloading, now]),
            Err(_) => send(&[NotifyState::Reloading]),
        }
    }

    pub fn stopping(&self) {
        send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
    }

    pub fn status(&self, status: &str) {
        send(&[NotifyState::Status(status)]);
    }

    pub fn watchdog(&self) {
        send(&[NotifyState::Watchdog]);
    }
}

fn send(states: &[NotifyState<'_>]) {
    if let Err(error) = sd_notify::notify(false, states) {
        tracing::debug!(error = %error, "systemd notification not sent");
    }
}

/// The watchdog timeout as `sd_watchdog_enabled(3)` reads it: `WATCHDOG_USEC`
/// applies when `WATCHDOG_PID` is unset or names this process.
fn watchdog_timeout(usec: Option<&str>, pid: Option<&str>, own_pid: u32) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    match pid.map(|p| p.trim().parse::<u32>()) {
        None => {}
        Some(Ok(pid)) if pid == own_pid => {}
        Some(_) => return None,
    }
    Some(Duration::from_micros(usec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_watchdog_applies_without_a_pid_or_with_our_own() {
        let timeout = Some(Duration::from_secs(30));
        assert_eq!(watchdog_timeout(Some("30000000"), None, 7), timeout);
        assert_eq!(watchdog_timeout(Some("30000000"), Some("7"), 7), timeout);
    }

    #[test]
    fn the_watchdog_of_another_process_or_a_bad_value_is_ignored() {
        assert_eq!(watchdog_timeout(Some("30000000"), Some("8"), 7), None);
        assert_eq!(watchdog_timeout(Some("soon"), None, 7), None);
        assert_eq!(watchdog_timeout(Some("0"), None, 7), None);
        assert_eq!(watchdog_timeout(None, None, 7), None);
    }

    #[test]
    fn pings_come_at_half_the_timeout() {
        let notifier = Notifier {
            watchdog: Some(Duration::from_secs(30)),
        };
        assert_eq!(notifier.watchdog_period(), Some(Duration::from_secs(15)));
    }
}
