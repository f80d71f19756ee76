//! The `filename_prefix` of each stage instance and attempt, and the check that keeps every
//! prefix of a graph inside ComfyUI's output folder.

use serde_json::{Map, Value};

use crate::workflow::PrefixFlaw;

/// A name safe as one path segment: letters, digits, `-`, `_`, `.` (never `.` or `..`).
fn segment(s: &str) -> String {
    let cleaned: String = s
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() || cleaned.chars().all(|c| c == '.') {
        String::from("_")
    } else {
        cleaned
    }
}

pub(super) fn scene_id(scene: Option<&Value>) -> Option<String> {
    match scene?.get("id")? {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// `cinepipe/<run-id>/<stage>/<item>-<scene-id>/a<attempt>/frame` (`<item>` alone without a
/// scene id, `once` for a stage that is not per item). The stage name and the item index
/// make the prefix the instance's own: scene ids may repeat, clean to the same segment
/// (`scene 1`, `scene_1`) or be cut at 64 characters, and the scene id is only there for
/// people reading the folder. The attempt number counts over the whole run, so no two
/// attempts of one instance share a prefix either.
pub fn prefix_for(
    run_id: &str,
    stage: &str,
    scene: Option<&Value>,
    item: Option<u32>,
    attempt: u32,
) -> String {
    let slot = match (item, scene_id(scene)) {
        (Some(i), Some(id)) => format!("{i}-{}", segment(&id)),
        (Some(i), None) => i.to_string(),
        (None, _) => "once".into(),
    };
    format!(
        "cinepipe/{}/{}/{slot}/a{attempt}/frame",
        segment(run_id),
        segment(stage)
    )
}

/// A `filename_prefix` that would make ComfyUI write outside its output folder.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnsafePrefix {
    #[error("filename_prefix of node {node} is empty")]
    Empty { node: String },
    #[error(
        "filename_prefix {prefix:?} of node {node} {flaw}; ComfyUI would write outside its output folder (or fail at run time)"
    )]
    Outside {
        node: String,
        prefix: String,
        flaw: PrefixFlaw,
    },
}

/// Refuses a `filename_prefix` that would write outside ComfyUI's output folder: absolute,
/// a drive letter, or a `..` segment.
pub fn check_prefix(node: &str, prefix: &str) -> Result<(), UnsafePrefix> {
    let bad = |flaw| {
        Err(UnsafePrefix::Outside {
            node: node.to_owned(),
            prefix: prefix.to_owned(),
            flaw,
        })
    };
    if prefix.trim().is_empty() {
        return Err(UnsafePrefix::Empty {
            node: node.to_owned(),
        });
    }
    match crate::workflow::prefix_flaw(prefix) {
        Some(flaw) => bad(flaw),
        None => Ok(()),
    }
}

/// Every `filename_prefix` of a graph, checked; `Err` names the first bad one.
pub fn check_prefixes(graph: &Value) -> Result<Map<String, Value>, UnsafePrefix> {
    let mut out = Map::new();
    for (id, node) in graph.as_object().into_iter().flatten() {
        if let Some(p) = node.pointer("/inputs/filename_prefix") {
            if let Some(s) = p.as_str() {
                check_prefix(id, s)?;
            }
            out.insert(id.clone(), p.clone());
        }
    }
    Ok(out)
}
