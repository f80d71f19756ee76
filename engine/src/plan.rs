//! The plan: a checked spec as a DAG of stages (petgraph), in the order they can run, with every
//! resolved value and where it came from.

use std::collections::BTreeSet;
use std::fmt::Write as _;

use petgraph::Direction;
use petgraph::graph::{DiGraph, NodeIndex};
use serde_json::{Map, Value, json};

use crate::spec::source::escape_segment;
use crate::spec::{CheckedSpec, Fan, Origin};

/// A checked spec turned into a graph. Edges run from a stage to the stages that need it.
#[derive(Debug)]
pub struct Plan {
    pub spec: CheckedSpec,
    pub graph: DiGraph<String, ()>,
    /// Stages in an order they can run: every stage after all it needs; ties in spec order.
    pub order: Vec<NodeIndex>,
    /// Each stage's wave: 0 for stages that need nothing, else one more than its latest need.
    pub waves: Vec<usize>,
}

impl Plan {
    /// Builds the DAG. The spec checker has already rejected unknown needs and cycles.
    pub fn new(spec: CheckedSpec) -> Plan {
        let mut graph = DiGraph::new();
        let nodes: Vec<NodeIndex> = spec
            .spec
            .stages
            .keys()
            .map(|n| graph.add_node(n.clone()))
            .collect();
        for (i, stage) in spec.spec.stages.values().enumerate() {
            for need in stage.common().needs {
                if let Some(j) = spec.spec.stages.get_index_of(need) {
                    graph.add_edge(nodes[j], nodes[i], ());
                }
            }
        }
        // Kahn's algorithm, always taking the ready stage that comes first in the spec.
        let mut indegree: Vec<usize> = graph
            .node_indices()
            .map(|n| graph.neighbors_directed(n, Direction::Incoming).count())
            .collect();
        let mut ready: BTreeSet<usize> = indegree
            .iter()
            .enumerate()
            .filter(|(_, d)| **d == 0)
            .map(|(i, _)| i)
            .collect();
        let mut order = Vec::with_capacity(nodes.len());
        let mut waves = vec![0usize; nodes.len()];
        while let Some(i) = ready.pop_first() {
            order.push(nodes[i]);
            for m in graph.neighbors_directed(nodes[i], Direction::Outgoing) {
                let j = m.index();
                waves[j] = waves[j].max(waves[i] + 1);
                indegree[j] -= 1;
                if indegree[j] == 0 {
                    ready.insert(j);
                }
            }
        }
        Plan {
            spec,
            graph,
            order,
            waves,
        }
    }

    pub fn stage_names(&self) -> impl Iterator<Item = &str> {
        self.order.iter().map(|n| self.graph[*n].as_str())
    }

    /// The plan as JSON: resolved values with their origins, and the stage order.
    pub fn to_json(&self) -> Value {
        let spec = &self.spec;
        let resolved = serde_json::to_value(&spec.spec).unwrap_or(Value::Null);
        let mut services = Vec::new();
        if let Some(Value::Object(svcs)) = resolved.get("services") {
            for (name, v) in svcs {
                let ptr = format!("/services/{}", escape_segment(name));
                services.push(json!({
                    "name": name,
                    "kind": v.get("kind"),
                    "values": values(spec, v, &ptr),
                }));
            }
        }
        let mut stages = Vec::new();
        for n in &self.order {
            let name = &self.graph[*n];
            let v = resolved
                .pointer(&format!("/stages/{}", escape_segment(name)))
                .cloned()
                .unwrap_or(Value::Null);
            let ptr = format!("/stages/{}", escape_segment(name));
            stages.push(json!({
                "name": name,
                "kind": v.get("kind"),
                "wave": self.waves[n.index()],
                "needs": v.get("needs"),
                "fan": spec.fans.get(name.as_str()),
                "values": values(spec, &v, &ptr),
            }));
        }
        json!({
            "spec": spec.source.name,
            "profile": spec.profile,
            "run": values(spec, resolved.get("run").unwrap_or(&Value::Null), "/run"),
            "services": services,
            "order": self.stage_names().collect::<Vec<_>>(),
            "stages": stages,
        })
    }

    /// The plan as text for people.
    pub fn to_text(&self) -> String {
        let j = self.to_json();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "plan of {} (profile: {})",
            self.spec.source.name, self.spec.profile
        );
        let _ = writeln!(s, "\n[run]");
        write_values(&mut s, &j["run"], "  ");
        for svc in j["services"].as_array().into_iter().flatten() {
            let _ = writeln!(
                s,
                "\n[services.{}] {}",
                str_of(&svc["name"]),
                str_of(&svc["kind"])
            );
            write_values(&mut s, &svc["values"], "  ");
        }
        let _ = writeln!(s, "\nstages, in order:");
        for (i, st) in j["stages"].as_array().into_iter().flatten().enumerate() {
            let fan = match st["fan"]["mode"].as_str() {
                Some("per-item") => format!("once per item of {}", str_of(&st["fan"]["source"])),
                Some("gather") => {
                    format!("once, after every item of {}", str_of(&st["fan"]["source"]))
                }
                _ => "once".to_owned(),
            };
            let needs: Vec<&str> = st["needs"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let needs = if needs.is_empty() {
                "nothing".to_owned()
            } else {
                needs.join(", ")
            };
            let _ = writeln!(
                s,
                "\n{}. {} ({}), wave {}, {fan}; needs {needs}",
                i + 1,
                str_of(&st["name"]),
                str_of(&st["kind"]),
                st["wave"]
            );
            write_values(&mut s, &st["values"], "   ");
        }
        s
    }

    /// The graph in Graphviz DOT.
    pub fn to_dot(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "digraph {} {{", quote_dot(&self.spec.spec.run.name));
        let _ = writeln!(
            s,
            "  rankdir=LR;\n  node [shape=box, fontname=\"sans-serif\"];"
        );
        for n in &self.order {
            let name = &self.graph[*n];
            let kind = self.kind_of(name);
            let (label, shape) = match self.spec.fans.get(name.as_str()) {
                Some(Fan::PerItem { source, .. }) => (
                    format!("{name}\n{kind}\nper item of {source}"),
                    ", peripheries=2",
                ),
                Some(Fan::Gather { .. }) => (format!("{name}\n{kind}\ngathers"), ""),
                _ => (format!("{name}\n{kind}"), ""),
            };
            let _ = writeln!(
                s,
                "  {} [label={}{shape}];",
                quote_dot(name),
                quote_dot(&label)
            );
        }
        for e in self.graph.edge_indices() {
            if let Some((a, b)) = self.graph.edge_endpoints(e) {
                let _ = writeln!(
                    s,
                    "  {} -> {};",
                    quote_dot(&self.graph[a]),
                    quote_dot(&self.graph[b])
                );
            }
        }
        s.push_str("}\n");
        s
    }

    /// The graph as a Mermaid flowchart.
    pub fn to_mermaid(&self) -> String {
        let mut s = String::from("flowchart LR\n");
        for n in &self.order {
            let name = &self.graph[*n];
            let kind = self.kind_of(name);
            let id = format!("s{}", n.index());
            let label = escape_mermaid(name);
            let line = match self.spec.fans.get(name.as_str()) {
                Some(Fan::PerItem { source, .. }) => format!(
                    "  {id}[[\"{label}<br/>{kind}<br/>per item of {}\"]]",
                    escape_mermaid(source)
                ),
                Some(Fan::Gather { .. }) => format!("  {id}[\"{label}<br/>{kind}<br/>gathers\"]"),
                _ => format!("  {id}[\"{label}<br/>{kind}\"]"),
            };
            let _ = writeln!(s, "{line}");
        }
        for e in self.graph.edge_indices() {
            if let Some((a, b)) = self.graph.edge_endpoints(e) {
                let _ = writeln!(s, "  s{} --> s{}", a.index(), b.index());
            }
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

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or_default()
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

/// Flattens a resolved table into `key = value` rows, each with its origin.
fn values(spec: &CheckedSpec, v: &Value, ptr: &str) -> Vec<Value> {
    let mut rows = Vec::new();
    if let Value::Object(m) = v {
        flatten(spec, m, ptr, "", &mut rows);
    }
    rows
}

fn flatten(
    spec: &CheckedSpec,
    m: &Map<String, Value>,
    ptr: &str,
    prefix: &str,
    rows: &mut Vec<Value>,
) {
    for (k, v) in m {
        if k == "kind" && prefix.is_empty() || k == "needs" && prefix.is_empty() {
            continue;
        }
        let key = if prefix.is_empty() {
            crate::toml_fmt::key(k)
        } else {
            format!("{prefix}.{}", crate::toml_fmt::key(k))
        };
        let p = format!("{ptr}/{}", escape_segment(k));
        match v {
            Value::Object(inner) if !inner.is_empty() => flatten(spec, inner, &p, &key, rows),
            _ => {
                let origin = spec.origin(&p);
                rows.push(json!({ "key": key, "value": v, "origin": origin_str(&origin) }));
            }
        }
    }
}

fn origin_str(o: &Origin) -> String {
    o.to_string()
}

fn write_values(s: &mut String, rows: &Value, indent: &str) {
    let rows: Vec<&Value> = rows.as_array().into_iter().flatten().collect();
    let width = rows
        .iter()
        .map(|r| r["key"].as_str().unwrap_or_default().len())
        .max()
        .unwrap_or(0);
    let shown: Vec<String> = rows
        .iter()
        .map(|r| crate::toml_fmt::value(&r["value"]))
        .collect();
    let vwidth = shown
        .iter()
        .map(|v| v.chars().count())
        .max()
        .unwrap_or(0)
        .min(48);
    for (r, v) in rows.iter().zip(shown) {
        let key = r["key"].as_str().unwrap_or_default();
        let origin = r["origin"].as_str().unwrap_or_default();
        let _ = writeln!(s, "{indent}{key:<width$} = {v:<vwidth$}  # {origin}");
    }
}
