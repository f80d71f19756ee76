//! The rules of retry policies that their types cannot say.

use super::super::diagnostic::Code;
use super::super::model::{Backoff, RetryPolicy};
use super::Checker;

impl<'a> Checker<'a> {
    pub(super) fn check_retry(&mut self, ptr: &str, r: &RetryPolicy) {
        let span = |c: &Self, k: &str| c.value_span(&format!("{ptr}/{k}"));
        if r.jitter && r.delay_s <= 0.0 {
            let s = span(self, "jitter");
            self.err(
                Code::Retry,
                "`jitter` needs a `delay_s` greater than 0".into(),
                s,
                "there is no delay to spread",
                Some("set `delay_s`, e.g. `delay_s = 1`".into()),
            );
        }
        if r.backoff == Backoff::Exponential && r.delay_s <= 0.0 {
            let s = span(self, "backoff");
            self.err(
                Code::Retry,
                "`exponential` backoff needs a `delay_s` greater than 0".into(),
                s,
                "0 doubled stays 0",
                Some("set `delay_s`, e.g. `delay_s = 1`".into()),
            );
        }
        if let Some(max) = r.max_delay_s {
            if r.backoff == Backoff::Fixed {
                let s = span(self, "max_delay_s");
                self.err(
                    Code::Retry,
                    "`max_delay_s` only applies to `exponential` backoff".into(),
                    s,
                    "a fixed delay never grows",
                    Some("set `backoff = \"exponential\"` or remove `max_delay_s`".into()),
                );
            } else if max < r.delay_s {
                let s = span(self, "max_delay_s");
                self.err(
                    Code::Retry,
                    format!("`max_delay_s` ({max}) is below `delay_s` ({})", r.delay_s),
                    s,
                    "the cap is below the first delay",
                    None,
                );
            }
        }
        if r.budget > 0 && r.on.is_empty() {
            let s = span(self, "on");
            self.err(
                Code::Retry,
                "`on` lists no failure classes, so the retry budget can never be spent".into(),
                s,
                "empty",
                Some("list failure classes, or set `budget = 0`".into()),
            );
        }
    }
}
