//! Where log lines go and how they look.
//!
//! Logs always go to stderr (stdout belongs to command output), or to the
//! journal's native protocol, where each field (`CUSTOMER_ID`, `POLL_ID`, ...)
//! can be filtered on with `journalctl`.

use std::io::IsTerminal;

use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use crate::config::{LogFormat, LogSettings};

/// Installs the global subscriber. `RUST_LOG`, when set, wins over `log.level`.
pub fn init(settings: &LogSettings) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(&settings.level));
    let format = resolve(settings.format);
    let layer: Box<dyn Layer<_> + Send + Sync> = match format {
        // No field prefix: `journalctl CUSTOMER_ID=...` must find our fields
        // under their own names (the crate's default would be F_CUSTOMER_ID).
        LogFormat::Journald => match tracing_journald::layer() {
            Ok(layer) => layer.with_field_prefix(None).boxed(),
            Err(_) => json_layer(),
        },
        LogFormat::Json => json_layer(),
        LogFormat::Pretty | LogFormat::Auto => tracing_subscriber::fmt::layer()
            .with_writer(std::io::stderr)
            .with_target(false)
            .boxed(),
    };
    // A second init (tests, demo inside another command) keeps the first.
    let _ = tracing_subscriber::registry()
        .with(layer.with_filter(filter))
        .try_init();
}

/// What `auto` means here: the journal when systemd connected stderr to it,
/// JSON lines when stderr is a pipe or file, readable text on a terminal.
pub fn resolve(format: LogFormat) -> LogFormat {
    match format {
        LogFormat::Auto if std::env::var_os("JOURNAL_STREAM").is_some() => LogFormat::Journald,
        LogFormat::Auto if !std::io::stderr().is_terminal() => LogFormat::Json,
        LogFormat::Auto => LogFormat::Pretty,
        other => other,
    }
}

fn json_layer<S>() -> Box<dyn Layer<S> + Send + Sync>
where
    S: tracing::Subscriber + for<'a> tracing_subscriber::registry::LookupSpan<'a>,
{
    tracing_subscriber::fmt::layer()
        .json()
        .flatten_event(true)
        .with_current_span(true)
        .with_span_list(false)
        .with_writer(std::io::stderr)
        .boxed()
}
