//! `--log-format json`: the run's events on stderr, one JSON object per line, each exactly as
//! the journal (`events.jsonl`, `schemas/run-events.schema.json`) has it, so that a tool reads one
//! format from the log and from the run folder. Log lines beside them come from the `tracing`
//! subscriber (`cli::logging`), keyed the same way with `"event": "log"`.

use std::io::Write;

use crate::exec::{Event, Observer};

/// One JSON object per line on a writer (stderr): the run's events.
pub struct JsonLines<W: Write + Send> {
    out: W,
}

impl<W: Write + Send> JsonLines<W> {
    pub fn new(out: W) -> JsonLines<W> {
        JsonLines { out }
    }
}

impl<W: Write + Send> Observer for JsonLines<W> {
    fn event(&mut self, e: &Event) {
        // An observer cannot fail the run: a log line that cannot be written is dropped.
        if let Ok(line) = serde_json::to_string(e) {
            let _ = writeln!(self.out, "{line}");
        }
    }
}
