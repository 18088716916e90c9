//! Logging set-up: structured JSON by default, pretty for people at a terminal.

use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, TelemetrySettings};

/// Installs the global subscriber from the telemetry section. The filter is a tracing filter
/// such as `info` or `queuegate=debug,rdkafka=warn`; a bad filter is a configuration error
/// naming `QUEUEGATE_LOG`.
pub fn init(settings: &TelemetrySettings) -> Result<(), crate::config::ConfigError> {
    let format = settings.log_format;
    let filter = EnvFilter::try_new(&settings.log)
        .map_err(|e| crate::config::ConfigError { setting: "QUEUEGATE_LOG", reason: e.to_string() })?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    let result = match format {
        LogFormat::Json => builder.json().flatten_event(true).with_current_span(true).try_init(),
        LogFormat::Pretty => builder.compact().try_init(),
    };
    // A second init (tests spawn many apps in one process) keeps the first subscriber.
    let _ = result;
    Ok(())
}
