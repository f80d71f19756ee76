//! The plan: a checked spec's stages in the order they can run (the DAG the checker built,
//! [`StageGraph`]), with every resolved value and where it came from, as text, JSON, DOT and
//! Mermaid.

use std::fmt::Write as _;
use std::io::{self, Write};

use serde::Serialize;
use serde_json::{Map, Value};

use crate::spec::source::escape_segment;
use crate::spec::{CheckedSpec, Fan, Origin, StageGraph};

/// A checked spec, ready to show or run: its stages in the order they run, from the graph the
/// checker computed ([`StageGraph`]).
#[derive(Debug)]
pub struct Plan {
    pub spec: CheckedSpec,
}

impl Plan {
    /// The spec checker has already rejected unknown needs and cycles, and built the graph.
    pub fn new(spec: CheckedSpec) -> Plan {
        Plan { spec }
    }

    pub fn graph(&self) -> &StageGraph {
        &self.spec.graph
    }

    /// Stages (by number) in an order they can run: every stage after all it needs; ties in
    /// spec order.
    pub fn order(&self) -> &[usize] {
        self.graph().order()
    }

    pub fn stage_names(&self) -> impl Iterator<Item = &str> {
        let graph = self.graph();
        graph.order().iter().map(|n| graph.name(*n))
    }

    /// The spec with the profile applied and every default filled in, as JSON: what the views
    /// of the plan borrow their values from.
    pub fn resolved(&self) -> Value {
        serde_json::to_value(&self.spec.spec).unwrap_or(Value::Null)
    }

    /// The plan as data: resolved values with their origins, and the stage order. Borrows from
    /// `resolved` (see [`Plan::resolved`]) so that a 1,000-stage plan copies no values.
    pub fn view<'p>(&'p self, resolved: &'p Value) -> PlanView<'p> {
        let spec = &self.spec;
        let services = resolved
            .get("services")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
            .map(|(name, v)| ServiceView {
                name,
                kind: v.get("kind").and_then(Value::as_str).unwrap_or_default(),
                values: rows(spec, v, &format!("/services/{}", escape_segment(name))),
            })
            .collect();
        let graph = self.graph();
        let stages = graph
            .order()
            .iter()
            .map(|n| {
                let name = graph.name(*n);
                let ptr = format!("/stages/{}", escape_segment(name));
                let v = crate::spec::source::lookup(resolved, &ptr).unwrap_or(&Value::Null);
                StageView {
                    name,
                    kind: self.kind_of(name),
                    wave: graph.wave(*n),
                    needs: spec
                        .spec
                        .stages
                        .get(name)
                        .map_or(&[][..], |s| s.common().needs),
                    fan: graph.fans().get(name),
                    values: rows(spec, v, &ptr),
                }
            })
            .collect();
        PlanView {
            spec: &spec.source.name,
            profile: &spec.profile,
            run: rows(spec, resolved.get("run").unwrap_or(&Value::Null), "/run"),
            services,
            order: self.stage_names().collect(),
            stages,
        }
    }

    /// The plan as pretty JSON, streamed to `w`.
    pub fn write_json(&self, w: &mut dyn Write) -> io::Result<()> {
        let resolved = self.resolved();
        // One buffer, one write: serde_json writes token by token, and through `dyn Write` each
        // token would be a call of its own.
        let mut bytes = serde_json::to_vec_pretty(&self.view(&resolved))?;
        bytes.push(b'\n');
        w.write_all(&bytes)
    }

    /// The plan as text for people, streamed to `w`.
    pub fn write_text(&self, w: &mut dyn Write) -> io::Result<()> {
        let resolved = self.resolved();
        let view = self.view(&resolved);
        writeln!(w, "plan of {} (profile: {})", view.spec, view.profile)?;
        writeln!(w, "\n[run]")?;
        write_rows(w, &view.run, "  ")?;
        for svc in &view.services {
            writeln!(w, "\n[services.{}] {}", svc.name, svc.kind)?;
            write_rows(w, &svc.values, "  ")?;
        }
        writeln!(w, "\nstages, in order:")?;
        for (i, st) in view.stages.iter().enumerate() {
            let fan = match st.fan {
                Some(Fan::PerItem { source, .. }) => format!("once per item of {source}"),
                Some(Fan::Gather { source }) => format!("once, after every item of {source}"),
                _ => "once".to_owned(),
            };
            let needs = if st.needs.is_empty() {
                "nothing".to_owned()
            } else {
                st.needs.join(", ")
            };
            writeln!(
                w,
                "\n{}. {} ({}), wave {}, {fan}; needs {needs}",
                i + 1,
                st.name,
                st.kind,
                st.wave
            )?;
            write_rows(w, &st.values, "   ")?;
        }
        Ok(())
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "digraph {} {{", quote_dot(&self.spec.spec.run.name));
        let _ = writeln!(
            s,
            "  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];"
        );
        let graph = self.graph();
        for n in graph.order() {
            let name = graph.name(*n);
            let kind = self.kind_of(name);
            let (label, shape) = match graph.fan(*n) {
                Fan::PerItem { source, .. } => (
                    format!("{name}\n{kind}\nper item of {source}"),
                    ", peripheries=2",
                ),
                Fan::Gather { .. } => (format!("{name}\n{kind}\ngathers"), ""),
                Fan::Once => (format!("{name}\n{kind}"), ""),
            };
            let _ = writeln!(
                s,
                "  {} [label={}{shape}];",
                quote_dot(name),
                quote_dot(&label)
            );
        }
        for (need, stage) in graph.edges() {
            let _ = writeln!(
                s,
                "  {} -> {};",
                quote_dot(graph.name(need)),
                quote_dot(graph.name(stage))
            );
        }
        s.push_str("}\n");
        s
    }

    /// The graph as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let mut s = String::from("flowchart LR\n");
        let graph = self.graph();
        for n in graph.order() {
            let name = graph.name(*n);
            let kind = self.kind_of(name);
            let id = format!("s{n}");
            let label = escape_mermaid(name);
            let line = match graph.fan(*n) {
                Fan::PerItem { source, .. } => format!(
                    "  {id}[[\"{label}<br/>{kind}<br/>per item of {}\"]]",
                    escape_mermaid(source)
                ),
                Fan::Gather { .. } => format!("  {id}[\"{label}<br/>{kind}<br/>gathers\"]"),
                Fan::Once => format!("  {id}[\"{label}<br/>{kind}\"]"),
            };
            let _ = writeln!(s, "{line}");
        }
        for (need, stage) in graph.edges() {
            let _ = writeln!(s, "  s{need} --> s{stage}");
        }
        s
    }

    fn kind_of(&self, name: &str) -> &'static str {
        self.spec
            .spec
            .stages
            .get(name)
            .map_or("?", |s| s.kind().as_str())
    }
}

fn quote_dot(s: &str) -> String {
    format!(
        "\"{}\"",
        s.replace('\\', "\\\\")
            .replace('"', "\\\"")
            .replace('\n', "\\n")
    )
}

fn escape_mermaid(s: &str) -> String {
    s.replace('"', "#quot;")
        .replace('<', "#lt;")
        .replace('>', "#gt;")
}

/// The plan as data, as `cinepipe plan --format json` prints it.
#[derive(Debug, Serialize)]
pub struct PlanView<'p> {
    pub spec: &'p str,
    pub profile: &'p str,
    pub run: Vec<Row<'p>>,
    pub services: Vec<ServiceView<'p>>,
    pub order: Vec<&'p str>,
    pub stages: Vec<StageView<'p>>,
}

#[derive(Debug, Serialize)]
pub struct ServiceView<'p> {
    pub name: &'p str,
    pub kind: &'p str,
    pub values: Vec<Row<'p>>,
}

#[derive(Debug, Serialize)]
pub struct StageView<'p> {
    pub name: &'p str,
    pub kind: &'static str,
    pub wave: usize,
    pub needs: &'p [String],
    pub fan: Option<&'p Fan>,
    pub values: Vec<Row<'p>>,
}

/// One resolved value: its dotted key, the value, and where it came from.
#[derive(Debug, Serialize)]
pub struct Row<'p> {
    pub key: String,
    pub value: &'p Value,
    #[serde(serialize_with = "as_display")]
    pub origin: Origin,
}

fn as_display<S: serde::Serializer>(o: &Origin, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(o)
}

/// Flattens a resolved table into `key = value` rows, each with its origin. `kind` and `needs`
/// are shown in the stage's heading instead.
fn rows<'p>(spec: &CheckedSpec, v: &'p Value, ptr: &str) -> Vec<Row<'p>> {
    let mut out = Vec::new();
    if let Value::Object(m) = v {
        flatten(spec, m, &mut ptr.to_owned(), "", &mut out);
    }
    out
}

/// `ptr` is a buffer holding the table's pointer; it is extended per key and restored, so that a
/// plan of 25,000 rows does not allocate a pointer string for each.
fn flatten<'p>(
    spec: &CheckedSpec,
    m: &'p Map<String, Value>,
    ptr: &mut String,
    prefix: &str,
    out: &mut Vec<Row<'p>>,
) {
    for (k, v) in m {
        if prefix.is_empty() && (k == "kind" || k == "needs") {
            continue;
        }
        let key = if prefix.is_empty() {
            crate::toml_fmt::key(k)
        } else {
            format!("{prefix}.{}", crate::toml_fmt::key(k))
        };
        let len = ptr.len();
        ptr.push('/');
        ptr.push_str(&escape_segment(k));
        match v {
            Value::Object(inner) if !inner.is_empty() => flatten(spec, inner, ptr, &key, out),
            _ => out.push(Row {
                origin: spec.origin(ptr),
                key,
                value: v,
            }),
        }
        ptr.truncate(len);
    }
}

fn write_rows(w: &mut dyn Write, rows: &[Row<'_>], indent: &str) -> io::Result<()> {
    let width = rows.iter().map(|r| r.key.len()).max().unwrap_or(0);
    let shown: Vec<String> = rows
        .iter()
        .map(|r| crate::toml_fmt::value(r.value))
        .collect();
    let vwidth = shown
        .iter()
        .map(|v| v.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for (r, v) in rows.iter().zip(shown) {
        writeln!(
            w,
            "{indent}{:<width$} = {v:<vwidth$}  # {}",
            r.key, r.origin
        )?;
    }
    Ok(())
}
