//! Reading a spec file: bytes → text → spanned TOML → JSON, keeping every key's and value's span.
//!
//! The checker works on JSON (so that the schema generated from the Rust types can judge it)
//! but reports in the TOML text, so each JSON pointer keeps the byte spans it came from.

use std::collections::HashMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{Map, Number, Value};
use toml::de::{DeTable, DeValue};

use super::diagnostic::{Code, SpecDiagnostic};

/// Specs larger than this are refused before parsing: a spec is a page or two of TOML, and a
/// generated 1,000-stage spec is about 200 KiB.
pub const MAX_SPEC_BYTES: usize = 16 * 1024 * 1024;

/// A spec's text and the name it is reported under.
#[derive(Debug, Clone)]
pub struct SpecSource {
    pub path: PathBuf,
    pub name: String,
    pub text: Arc<str>,
}

/// Where a key and its value sit in the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Spans {
    /// The key's span (absent for array items and the document root).
    pub key: Option<Range<usize>>,
    pub value: Range<usize>,
}

impl Spans {
    /// The span to underline when the whole entry is meant: its key, else its value.
    pub fn entry(&self) -> Range<usize> {
        self.key.clone().unwrap_or_else(|| self.value.clone())
    }
}

/// JSON pointer → spans, for every table entry and array item of a document.
///
/// A profile's index is layered over the spec's: it holds only the spans the profile moved,
/// and shares the rest, so that checking every profile of a 1,000-stage spec copies nothing.
#[derive(Debug, Clone, Default)]
pub struct SpanIndex {
    map: HashMap<String, Spans, foldhash::fast::RandomState>,
    base: Option<Arc<SpanIndex>>,
}

impl SpanIndex {
    /// An empty index that answers from `base` where it has nothing of its own.
    pub fn layered(base: Arc<SpanIndex>) -> SpanIndex {
        SpanIndex {
            map: HashMap::default(),
            base: Some(base),
        }
    }

    pub fn get(&self, pointer: &str) -> Option<&Spans> {
        self.map
            .get(pointer)
            .or_else(|| self.base.as_ref().and_then(|b| b.get(pointer)))
    }

    pub fn insert(&mut self, pointer: String, spans: Spans) {
        self.map.insert(pointer, spans);
    }

    /// Every entry strictly below `pointer`, in this layer only. A scan of the whole layer:
    /// it is asked only for profile values that are tables or arrays, which are few.
    pub fn below<'a>(
        &'a self,
        pointer: &'a str,
    ) -> impl Iterator<Item = (&'a String, &'a Spans)> + 'a {
        self.map.iter().filter(move |(p, _)| {
            p.len() > pointer.len() && p.starts_with(pointer) && p.as_bytes()[pointer.len()] == b'/'
        })
    }

    /// The spans of `pointer`, or of its nearest ancestor that has some.
    pub fn nearest(&self, pointer: &str) -> Spans {
        let mut p = pointer;
        loop {
            if let Some(s) = self.get(p) {
                return s.clone();
            }
            match p.rfind('/') {
                Some(i) => p = &p[..i],
                None => {
                    return Spans {
                        key: None,
                        value: 0..0,
                    };
                }
            }
        }
    }
}

impl SpecSource {
    /// Reads a spec file. Unreadable, oversized and non-UTF-8 files are diagnostics, not panics.
    pub fn read(path: &Path) -> Result<SpecSource, Box<SpecDiagnostic>> {
        let name = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|e| {
            Box::new(SpecDiagnostic::without_source(
                Code::Io,
                format!("cannot read spec `{name}`: {e}"),
            ))
        })?;
        Self::from_bytes(path, &bytes)
    }

    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<SpecSource, Box<SpecDiagnostic>> {
        let name = path.display().to_string();
        if bytes.len() > MAX_SPEC_BYTES {
            return Err(Box::new(SpecDiagnostic::without_source(
                Code::TooLarge,
                format!(
                    "spec `{name}` is {} bytes; specs are limited to {} bytes",
                    bytes.len(),
                    MAX_SPEC_BYTES
                ),
            )));
        }
        match std::str::from_utf8(bytes) {
            Ok(text) => Ok(SpecSource {
                path: path.to_path_buf(),
                name,
                text: Arc::from(text),
            }),
            Err(e) => {
                let at = e.valid_up_to();
                let lossy = String::from_utf8_lossy(bytes);
                let source = SpecSource {
                    path: path.to_path_buf(),
                    name,
                    text: Arc::from(lossy.as_ref()),
                };
                Err(Box::new(
                    SpecDiagnostic::new(&source, Code::NotUtf8, "spec is not valid UTF-8 text")
                        .label(at..at + 1, "this byte is not UTF-8")
                        .help("TOML files must be UTF-8; re-save the file with UTF-8 encoding"),
                ))
            }
        }
    }

    pub fn from_str(name: &str, text: &str) -> SpecSource {
        SpecSource {
            path: PathBuf::from(name),
            name: name.to_owned(),
            text: Arc::from(text),
        }
    }
}

/// Escapes one JSON pointer segment (RFC 6901).
pub fn escape_segment(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains(['~', '/']) {
        s.replace('~', "~0").replace('/', "~1").into()
    } else {
        s.into()
    }
}

/// The value at a JSON pointer, like `Value::pointer` but without allocating for segments that
/// need no unescaping (this runs once per row of a 1,000-stage plan).
pub fn lookup<'v>(mut v: &'v Value, pointer: &str) -> Option<&'v Value> {
    if pointer.is_empty() {
        return Some(v);
    }
    for seg in pointer.strip_prefix('/')?.split('/') {
        let seg: std::borrow::Cow<'_, str> = if seg.contains('~') {
            seg.replace("~1", "/").replace("~0", "~").into()
        } else {
            seg.into()
        };
        v = match v {
            Value::Object(m) => m.get(seg.as_ref())?,
            Value::Array(a) => a.get(seg.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(v)
}

/// `pointer/seg`, without the formatting machinery (this runs once per entry of a spec).
fn child(pointer: &str, seg: &str) -> String {
    let mut p = String::with_capacity(pointer.len() + 1 + seg.len());
    p.push_str(pointer);
    p.push('/');
    p.push_str(seg);
    p
}

/// Parses TOML text into JSON plus the span of every entry. All TOML syntax errors are reported.
pub fn parse(source: &SpecSource) -> Result<(Value, SpanIndex), Vec<SpecDiagnostic>> {
    let (doc, errors) = DeTable::parse_recoverable(&source.text);
    if !errors.is_empty() {
        return Err(errors
            .into_iter()
            .map(|e| {
                let span = e.span().unwrap_or(0..0);
                let msg = e.message().trim().to_owned();
                SpecDiagnostic::new(source, Code::Syntax, format!("invalid TOML: {msg}"))
                    .label(span, msg)
            })
            .collect());
    }
    let mut index = SpanIndex::default();
    let mut diags = Vec::new();
    let root_span = doc.span();
    index.insert(
        String::new(),
        Spans {
            key: None,
            value: root_span,
        },
    );
    let value = table_to_json(source, doc.get_ref(), "", &mut index, &mut diags);
    if diags.is_empty() {
        Ok((value, index))
    } else {
        Err(diags)
    }
}

fn table_to_json(
    source: &SpecSource,
    table: &DeTable<'_>,
    pointer: &str,
    index: &mut SpanIndex,
    diags: &mut Vec<SpecDiagnostic>,
) -> Value {
    let mut map = Map::with_capacity(table.len());
    for (key, value) in table.iter() {
        let p = child(pointer, &escape_segment(key.get_ref()));
        index.insert(
            p.clone(),
            Spans {
                key: Some(key.span()),
                value: value.span(),
            },
        );
        let v = value_to_json(source, value.get_ref(), value.span(), &p, index, diags);
        map.insert(key.get_ref().to_string(), v);
    }
    Value::Object(map)
}

fn value_to_json(
    source: &SpecSource,
    value: &DeValue<'_>,
    span: Range<usize>,
    pointer: &str,
    index: &mut SpanIndex,
    diags: &mut Vec<SpecDiagnostic>,
) -> Value {
    match value {
        DeValue::String(s) => Value::String(s.to_string()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(n) => Value::Number(n.into()),
            Err(_) => {
                diags.push(
                    SpecDiagnostic::new(source, Code::Syntax, "integer does not fit in 64 bits")
                        .label(span, "out of range"),
                );
                Value::Null
            }
        },
        DeValue::Float(f) => {
            let parsed: Option<f64> = f.as_str().replace('_', "").parse().ok();
            match parsed.and_then(Number::from_f64) {
                Some(n) => Value::Number(n),
                None => {
                    diags.push(
                        SpecDiagnostic::new(
                            source,
                            Code::Syntax,
                            "`nan` and `inf` are not allowed in a spec",
                        )
                        .label(span, "not a finite number"),
                    );
                    Value::Null
                }
            }
        }
        DeValue::Boolean(b) => Value::Bool(*b),
        DeValue::Datetime(d) => Value::String(d.to_string()),
        DeValue::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            for (n, item) in items.iter().enumerate() {
                let p = child(pointer, &n.to_string());
                index.insert(
                    p.clone(),
                    Spans {
                        key: None,
                        value: item.span(),
                    },
                );
                out.push(value_to_json(
                    source,
                    item.get_ref(),
                    item.span(),
                    &p,
                    index,
                    diags,
                ));
            }
            Value::Array(out)
        }
        DeValue::Table(t) => table_to_json(source, t, pointer, index, diags),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::{SpanIndex, Spans, lookup};

    fn spans(v: usize) -> Spans {
        Spans {
            key: None,
            value: v..v + 1,
        }
    }

    #[test]
    fn a_layer_answers_from_its_base_where_it_has_nothing_of_its_own() {
        let mut base = SpanIndex::default();
        base.insert("/stages/a".into(), spans(10));
        base.insert("/stages/a/kind".into(), spans(20));
        let mut layer = SpanIndex::layered(Arc::new(base));
        layer.insert("/stages/a/kind".into(), spans(30));
        assert_eq!(layer.get("/stages/a/kind"), Some(&spans(30)));
        assert_eq!(layer.get("/stages/a"), Some(&spans(10)));
        // `nearest` walks up through both layers.
        assert_eq!(layer.nearest("/stages/a/retry/budget"), spans(10));
        assert_eq!(
            layer.nearest("/nowhere"),
            Spans {
                key: None,
                value: 0..0
            }
        );
        assert_eq!(
            layer.below("/stages").count(),
            1,
            "below sees this layer only"
        );
    }

    #[test]
    fn lookup_matches_value_pointer() {
        let v = serde_json::json!({"a/b": {"c~d": [1, 2]}, "x": 1});
        for p in [
            "",
            "/x",
            "/a~1b",
            "/a~1b/c~0d",
            "/a~1b/c~0d/1",
            "/nope",
            "/x/y",
            "/a~1b/c~0d/9",
        ] {
            assert_eq!(lookup(&v, p), v.pointer(p), "{p}");
        }
    }
}
