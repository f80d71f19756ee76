//! Spec diagnostics: one rule broken, pointing at the text that breaks it (miette).

use std::fmt;
use std::ops::Range;
use std::sync::Arc;

use miette::{Diagnostic, LabeledSpan, NamedSource, SourceCode};

use super::source::SpecSource;

/// Which rule a diagnostic reports; each is documented in `docs/cli.md`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Code {
    Io,
    TooLarge,
    NotUtf8,
    Syntax,
    UnknownKey,
    MissingKey,
    WrongType,
    InvalidValue,
    UnknownStageKind,
    UnknownServiceKind,
    UnknownStage,
    Cycle,
    UnknownService,
    ServiceKind,
    ForEach,
    Template,
    MissingFile,
    BadFile,
    Workflow,
    PatchTarget,
    Profile,
    Retry,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Code::Io => "cinepipe::spec::io",
            Code::TooLarge => "cinepipe::spec::too-large",
            Code::NotUtf8 => "cinepipe::spec::not-utf8",
            Code::Syntax => "cinepipe::spec::syntax",
            Code::UnknownKey => "cinepipe::spec::unknown-key",
            Code::MissingKey => "cinepipe::spec::missing-key",
            Code::WrongType => "cinepipe::spec::wrong-type",
            Code::InvalidValue => "cinepipe::spec::invalid-value",
            Code::UnknownStageKind => "cinepipe::spec::unknown-stage-kind",
            Code::UnknownServiceKind => "cinepipe::spec::unknown-service-kind",
            Code::UnknownStage => "cinepipe::spec::unknown-stage",
            Code::Cycle => "cinepipe::spec::cycle",
            Code::UnknownService => "cinepipe::spec::unknown-service",
            Code::ServiceKind => "cinepipe::spec::service-kind",
            Code::ForEach => "cinepipe::spec::for-each",
            Code::Template => "cinepipe::spec::template",
            Code::MissingFile => "cinepipe::spec::missing-file",
            Code::BadFile => "cinepipe::spec::bad-file",
            Code::Workflow => "cinepipe::spec::workflow",
            Code::PatchTarget => "cinepipe::spec::patch-target",
            Code::Profile => "cinepipe::spec::profile",
            Code::Retry => "cinepipe::spec::retry",
        }
    }
}

/// One broken rule, with the spans of the text that breaks it.
#[derive(Debug, Clone)]
pub struct SpecDiagnostic {
    pub code: Code,
    pub message: String,
    pub labels: Vec<(Range<usize>, String)>,
    pub help: Option<String>,
    /// The JSON pointer of the value at fault, when there is one (not shown to users).
    pub pointer: Option<String>,
    source: Option<NamedSource<Arc<str>>>,
}

impl SpecDiagnostic {
    pub fn new(source: &SpecSource, code: Code, message: impl Into<String>) -> Self {
        SpecDiagnostic {
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
            pointer: None,
            source: Some(NamedSource::new(source.name.clone(), source.text.clone())),
        }
    }

    /// A diagnostic about a file that could not be read at all.
    pub fn without_source(code: Code, message: impl Into<String>) -> Self {
        SpecDiagnostic {
            code,
            message: message.into(),
            labels: Vec::new(),
            help: None,
            pointer: None,
            source: None,
        }
    }

    pub fn label(mut self, span: Range<usize>, text: impl Into<String>) -> Self {
        self.labels.push((span, text.into()));
        self
    }

    pub fn at(mut self, pointer: impl Into<String>) -> Self {
        self.pointer = Some(pointer.into());
        self
    }

    pub fn help(mut self, text: impl Into<String>) -> Self {
        self.help = Some(text.into());
        self
    }

    pub fn maybe_help(mut self, text: Option<String>) -> Self {
        if text.is_some() {
            self.help = text;
        }
        self
    }

    /// Where the diagnostic points first; diagnostics are reported in this order.
    pub fn position(&self) -> usize {
        self.labels.first().map_or(0, |(r, _)| r.start)
    }
}

impl fmt::Display for SpecDiagnostic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for SpecDiagnostic {}

impl Diagnostic for SpecDiagnostic {
    fn code<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        Some(Box::new(self.code.as_str()))
    }

    fn help<'a>(&'a self) -> Option<Box<dyn fmt::Display + 'a>> {
        self.help
            .as_ref()
            .map(|h| Box::new(h) as Box<dyn fmt::Display>)
    }

    fn source_code(&self) -> Option<&dyn SourceCode> {
        if self.labels.is_empty() {
            return None;
        }
        self.source.as_ref().map(|s| s as &dyn SourceCode)
    }

    fn labels(&self) -> Option<Box<dyn Iterator<Item = LabeledSpan> + '_>> {
        if self.labels.is_empty() || self.source.is_none() {
            return None;
        }
        Some(Box::new(self.labels.iter().map(|(r, text)| {
            LabeledSpan::new(Some(text.clone()), r.start, r.end.saturating_sub(r.start))
        })))
    }
}

/// "did you mean" by edit distance: the closest candidate, if it is close enough.
pub fn suggest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    candidates
        .into_iter()
        .map(|c| (strsim::damerau_levenshtein(word, c), c))
        .filter(|(d, c)| *d <= (word.len().max(c.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// "did you mean `x`?", or the list of valid names when nothing is close.
pub fn hint(word: &str, what: &str, candidates: &[&str]) -> Option<String> {
    if let Some(s) = suggest(word, candidates.iter().copied()) {
        Some(format!("did you mean `{s}`?"))
    } else if candidates.is_empty() {
        None
    } else {
        Some(format!("{what}: {}", candidates.join(", ")))
    }
}

/// "a" or "an", for a word as it is spoken.
pub fn article(word: &str) -> &'static str {
    let w = word.trim_start_matches('`');
    if w.starts_with(['a', 'e', 'i', 'o', 'u', 'A', 'E', 'I', 'O', 'U']) {
        "an"
    } else {
        "a"
    }
}

/// A number as a person writes it: `0`, not `0.0`.
pub fn number(v: &serde_json::Value) -> String {
    match v.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => v.to_string(),
    }
}
