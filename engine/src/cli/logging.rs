//! Logs: the one `tracing` subscriber of the process, installed by the CLI.
//!
//! The library logs through `tracing` (service notes, signals, the CLI's own messages) inside
//! the spans `run` → `instance` → `attempt`. The subscriber writes on stderr what `CINEPIPE_LOG`
//! lets through (default `info`; `--quiet` keeps warnings and errors only):
//!
//! - as text: `[cinepipe] message` for information, the message alone for warnings and errors
//!   (they carry their own `error:` words), and the level and span path before debug and trace
//!   lines;
//! - as JSON (`--log-format json`): one object per line from tracing-subscriber's JSON layer,
//!   keyed like the run's events (`ts`, `"event": "log"`, `level`, `message`) so one reader takes
//!   both, with the layer's `target` and `spans` after them.
//!
//! The run's events are not logs: the journal (`events.jsonl`) records them, and the progress
//! displays (`cli::display`) show them.

use std::fmt;

use serde_json::{Map, Value};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::{EnvFilter, FilterExt, LevelFilter};
use tracing_subscriber::fmt::format::{Format, Json, JsonFields, Writer};
use tracing_subscriber::fmt::time::FormatTime;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::{Layer, Registry};

use super::args::LogFormat;
use super::display::log_writer;

/// The variable that filters the log lines (tracing-subscriber's `EnvFilter` syntax).
pub const LOG_ENV: &str = "CINEPIPE_LOG";

/// Installs the subscriber for the rest of the process. A second call (a library user that
/// installed its own) changes nothing.
pub(crate) fn init(format: LogFormat, quiet: bool) {
    let default = if quiet {
        LevelFilter::WARN
    } else {
        LevelFilter::INFO
    };
    // A directive that does not parse is dropped rather than failing the command: logs are
    // an aid, not the work.
    let env = EnvFilter::builder()
        .with_default_directive(default.into())
        .with_env_var(LOG_ENV)
        .from_env_lossy();
    // `--quiet` promises no logs but warnings and errors, whatever the variable says.
    let cap = if quiet {
        LevelFilter::WARN
    } else {
        LevelFilter::TRACE
    };
    let filter = env.and(cap);
    let layer = match format {
        LogFormat::Text => tracing_subscriber::fmt::layer()
            .event_format(TextLine)
            .with_writer(log_writer)
            .with_filter(filter)
            .boxed(),
        LogFormat::Json => tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(JsonLine::new())
            .with_writer(std::io::stderr)
            .with_filter(filter)
            .boxed(),
    };
    let _ = tracing::subscriber::set_global_default(Registry::default().with(layer));
}

/// A log line for people.
struct TextLine;

impl<S, N> FormatEvent<S, N> for TextLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = *event.metadata().level();
        // More verbose levels compare greater.
        if level == Level::INFO {
            writer.write_str("[cinepipe] ")?;
        } else if level > Level::INFO {
            write!(writer, "[cinepipe] {level} ")?;
            for span in ctx.event_scope().into_iter().flat_map(|s| s.from_root()) {
                writer.write_str(span.name())?;
                let ext = span.extensions();
                if let Some(fields) = ext.get::<FormattedFields<N>>()
                    && !fields.is_empty()
                {
                    write!(writer, "{{{fields}}}")?;
                }
                writer.write_str(": ")?;
            }
        }
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// The events' clock: the same RFC 3339 text as `ts` in `events.jsonl`.
struct EventClock;

impl FormatTime for EventClock {
    fn format_time(&self, w: &mut Writer<'_>) -> fmt::Result {
        w.write_str(&crate::rundir::event::now_rfc3339())
    }
}

/// tracing-subscriber's JSON line, flattened, its keys put in the events' shape.
struct JsonLine {
    inner: Format<Json, EventClock>,
}

impl JsonLine {
    fn new() -> JsonLine {
        JsonLine {
            inner: tracing_subscriber::fmt::format()
                .json()
                .flatten_event(true)
                .with_current_span(false)
                .with_span_list(true)
                .with_timer(EventClock),
        }
    }
}

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let mut line = String::new();
        self.inner
            .format_event(ctx, Writer::new(&mut line), event)?;
        match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(fields)) => writeln!(writer, "{}", Value::Object(reshape(fields))),
            // Not expected from the JSON layer; the line is still worth more than nothing.
            _ => writer.write_str(&line),
        }
    }
}

/// `{"timestamp", "level": "INFO", "message", …}` becomes `{"ts", "event": "log", "level":
/// "info", "message", …}`: the keys and values the run's events and the CLI's messages have
/// always had, then whatever else the layer wrote (fields, `target`, `spans`).
fn reshape(mut fields: Map<String, Value>) -> Map<String, Value> {
    let mut out = Map::new();
    if let Some(ts) = fields.shift_remove("timestamp") {
        out.insert("ts".into(), ts);
    }
    let event = fields
        .shift_remove("event")
        .unwrap_or_else(|| Value::from("log"));
    out.insert("event".into(), event);
    if let Some(level) = fields.shift_remove("level") {
        let level = level
            .as_str()
            .map_or(level.clone(), |l| Value::from(l.to_ascii_lowercase()));
        out.insert("level".into(), level);
    }
    if let Some(message) = fields.shift_remove("message") {
        out.insert("message".into(), message);
    }
    out.extend(fields);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_are_keyed_like_the_events() {
        let layer: Value = serde_json::json!({
            "timestamp": "2026-11-21T12:35:23.381Z",
            "level": "WARN",
            "message": "interrupted",
            "target": "cinepipe::cli::run",
            "spans": [{"name": "run", "run_id": "r"}],
        });
        let Value::Object(fields) = layer else {
            unreachable!("an object literal")
        };
        let out = Value::Object(reshape(fields));
        assert_eq!(
            out.to_string(),
            r#"{"ts":"2026-11-21T12:35:23.381Z","event":"log","level":"warn","message":"interrupted","target":"cinepipe::cli::run","spans":[{"name":"run","run_id":"r"}]}"#
        );
    }
}
