//! ComfyUI workflows in API format: loading them and resolving `NODE.INPUT` addresses.

use indexmap::IndexMap;
use serde_json::{Map, Value};

/// One node of an API-format workflow.
#[derive(Debug, Clone)]
pub struct Node {
    pub class_type: String,
    pub title: Option<String>,
    pub inputs: Map<String, Value>,
}

/// An API-format workflow: nodes keyed by id.
#[derive(Debug, Clone)]
pub struct Workflow {
    pub nodes: IndexMap<String, Node>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WorkflowError {
    #[error("not valid JSON: {0}")]
    NotJson(String),
    #[error(
        "this is the editor (UI) format, not the API format; in ComfyUI enable dev mode options in the settings and use \"Save (API Format)\""
    )]
    UiFormat,
    #[error("an API-format workflow is a JSON object of nodes keyed by id, found {0}")]
    NotObject(&'static str),
    #[error("node `{id}` {reason}")]
    BadNode { id: String, reason: String },
    #[error("the workflow has no nodes")]
    Empty,
}

/// Why a `NODE.INPUT` address does not resolve.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TargetError {
    #[error(
        "`{0}` is not of the form NODE.INPUT (a node id, title or class_type, a dot, an input name)"
    )]
    Syntax(String),
    #[error("no node has the id, title or class_type `{0}`")]
    NoNode(String),
    #[error("`{node}` matches {} nodes by {by}: {}", ids.len(), ids.join(", "))]
    Ambiguous {
        node: String,
        by: &'static str,
        ids: Vec<String>,
    },
    #[error("node {id} (`{class_type}`) has no input `{input}`")]
    NoInput {
        id: String,
        class_type: String,
        input: String,
    },
    #[error(
        "input `{input}` of node {id} is a link from node {from}; setting it would cut the link"
    )]
    Link {
        id: String,
        input: String,
        from: String,
    },
}

impl Workflow {
    pub fn parse(text: &str) -> Result<Workflow, WorkflowError> {
        let value: Value =
            serde_json::from_str(text).map_err(|e| WorkflowError::NotJson(e.to_string()))?;
        let Value::Object(obj) = value else {
            return Err(WorkflowError::NotObject(match value {
                Value::Array(_) => "an array",
                Value::String(_) => "a string",
                _ => "a scalar",
            }));
        };
        if obj.get("nodes").is_some_and(Value::is_array) && obj.contains_key("links") {
            return Err(WorkflowError::UiFormat);
        }
        let mut nodes = IndexMap::with_capacity(obj.len());
        for (id, node) in obj {
            let bad = |reason: &str| WorkflowError::BadNode {
                id: id.clone(),
                reason: reason.to_owned(),
            };
            let Value::Object(node) = node else {
                return Err(bad("is not an object"));
            };
            let class_type = node
                .get("class_type")
                .and_then(Value::as_str)
                .ok_or_else(|| bad("has no `class_type` string"))?
                .to_owned();
            let inputs = match node.get("inputs") {
                Some(Value::Object(m)) => m.clone(),
                None => Map::new(),
                Some(_) => return Err(bad("has `inputs` that is not an object")),
            };
            let title = node
                .get("_meta")
                .and_then(|m| m.get("title"))
                .and_then(Value::as_str)
                .map(str::to_owned);
            nodes.insert(
                id,
                Node {
                    class_type,
                    title,
                    inputs,
                },
            );
        }
        if nodes.is_empty() {
            return Err(WorkflowError::Empty);
        }
        Ok(Workflow { nodes })
    }

    /// Resolves `NODE.INPUT`: NODE is a node id, else a `_meta.title`, else a `class_type`.
    /// Titles may contain dots, so the input is the part after the last dot.
    pub fn resolve(&self, address: &str) -> Result<(String, String), TargetError> {
        let Some((node, input)) = address.rsplit_once('.') else {
            return Err(TargetError::Syntax(address.to_owned()));
        };
        if node.is_empty() || input.is_empty() {
            return Err(TargetError::Syntax(address.to_owned()));
        }
        let id = if self.nodes.contains_key(node) {
            node.to_owned()
        } else {
            let by_title: Vec<&String> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.title.as_deref() == Some(node))
                .map(|(id, _)| id)
                .collect();
            let by_class: Vec<&String> = self
                .nodes
                .iter()
                .filter(|(_, n)| n.class_type == node)
                .map(|(id, _)| id)
                .collect();
            let (ids, by) = if by_title.is_empty() {
                (by_class, "class_type")
            } else {
                (by_title, "title")
            };
            match ids.as_slice() {
                [] => return Err(TargetError::NoNode(node.to_owned())),
                [one] => (*one).clone(),
                many => {
                    return Err(TargetError::Ambiguous {
                        node: node.to_owned(),
                        by,
                        ids: many.iter().map(|s| (*s).clone()).collect(),
                    });
                }
            }
        };
        let Some(n) = self.nodes.get(&id) else {
            return Err(TargetError::NoNode(node.to_owned()));
        };
        match n.inputs.get(input) {
            None => Err(TargetError::NoInput {
                id,
                class_type: n.class_type.clone(),
                input: input.to_owned(),
            }),
            Some(Value::Array(link)) if link.len() == 2 && link[1].is_u64() => {
                Err(TargetError::Link {
                    id,
                    input: input.to_owned(),
                    from: link[0]
                        .as_str()
                        .map_or_else(|| link[0].to_string(), str::to_owned),
                })
            }
            Some(_) => Ok((id, input.to_owned())),
        }
    }

    /// The inputs of a node that a spec may set (those that are not links).
    pub fn settable_inputs(&self, id: &str) -> Vec<&str> {
        self.nodes.get(id).map_or_else(Vec::new, |n| {
            n.inputs
                .iter()
                .filter(|(_, v)| !matches!(v, Value::Array(a) if a.len() == 2 && a[1].is_u64()))
                .map(|(k, _)| k.as_str())
                .collect()
        })
    }
}

/// Why a `filename_prefix` would make ComfyUI write outside its output folder, if it would:
/// absolute, a drive letter, a `..` segment or a NUL. `{{…}}` template parts stand for
/// plain text, so a template's written parts are judged before anything is rendered.
pub fn prefix_problem(prefix: &str) -> Option<&'static str> {
    let mut literal = String::with_capacity(prefix.len());
    let mut rest = prefix;
    while let Some(open) = rest.find("{{") {
        literal.push_str(&rest[..open]);
        literal.push('x');
        rest = rest[open..]
            .find("}}")
            .map_or("", |close| &rest[open + close + 2..]);
    }
    literal.push_str(rest);
    prefix_flaw(&literal).map(PrefixFlaw::as_str)
}

/// What is wrong with a `filename_prefix` that would make ComfyUI write outside its output
/// folder (or fail): the one rule for the spec checker (on what is written) and the
/// `patch-workflow` stage (on what was rendered).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PrefixFlaw {
    #[error("is absolute")]
    Absolute,
    #[error("starts with a drive letter")]
    DriveLetter,
    #[error("has a `..` segment")]
    ParentSegment,
    #[error("has a NUL character")]
    Nul,
}

impl PrefixFlaw {
    pub fn as_str(self) -> &'static str {
        match self {
            PrefixFlaw::Absolute => "is absolute",
            PrefixFlaw::DriveLetter => "starts with a drive letter",
            PrefixFlaw::ParentSegment => "has a `..` segment",
            PrefixFlaw::Nul => "has a NUL character",
        }
    }
}

/// The flaw of a literal (fully rendered) `filename_prefix`, if it has one.
pub fn prefix_flaw(prefix: &str) -> Option<PrefixFlaw> {
    if prefix.starts_with('/') || prefix.starts_with('\\') {
        return Some(PrefixFlaw::Absolute);
    }
    let b = prefix.as_bytes();
    if b.len() >= 2 && b[1] == b':' && b[0].is_ascii_alphabetic() {
        return Some(PrefixFlaw::DriveLetter);
    }
    if prefix.split(['/', '\\']).any(|s| s == "..") {
        return Some(PrefixFlaw::ParentSegment);
    }
    if prefix.contains('\0') {
        return Some(PrefixFlaw::Nul);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const WF: &str = r#"{
        "1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 25, "color": 0}, "_meta": {"title": "frames"}},
        "2": {"class_type": "ImageInvert", "inputs": {"image": ["1", 0]}, "_meta": {"title": "invert"}},
        "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "x"}, "_meta": {"title": "save"}},
        "4": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "y"}, "_meta": {"title": "save"}}
    }"#;

    #[test]
    fn resolves_by_id_title_and_class() {
        let wf = Workflow::parse(WF).expect("parses");
        assert_eq!(wf.resolve("1.width"), Ok(("1".into(), "width".into())));
        assert_eq!(
            wf.resolve("frames.batch_size"),
            Ok(("1".into(), "batch_size".into()))
        );
        assert_eq!(
            wf.resolve("EmptyImage.color"),
            Ok(("1".into(), "color".into()))
        );
    }

    #[test]
    fn reports_ambiguity_links_and_missing() {
        let wf = Workflow::parse(WF).expect("parses");
        assert!(matches!(
            wf.resolve("save.filename_prefix"),
            Err(TargetError::Ambiguous { by: "title", .. })
        ));
        assert!(matches!(
            wf.resolve("invert.image"),
            Err(TargetError::Link { .. })
        ));
        assert!(matches!(
            wf.resolve("frames.depth"),
            Err(TargetError::NoInput { .. })
        ));
        assert!(matches!(
            wf.resolve("nothing.x"),
            Err(TargetError::NoNode(_))
        ));
        assert!(matches!(wf.resolve("nodot"), Err(TargetError::Syntax(_))));
    }

    #[test]
    fn refuses_the_editor_format() {
        assert_eq!(
            Workflow::parse(r#"{"nodes": [], "links": []}"#).err(),
            Some(WorkflowError::UiFormat)
        );
        assert!(matches!(
            Workflow::parse("[1]"),
            Err(WorkflowError::NotObject(_))
        ));
        assert!(matches!(
            Workflow::parse("{"),
            Err(WorkflowError::NotJson(_))
        ));
    }

    #[test]
    fn a_prefix_that_leaves_the_output_folder_is_named_whatever_its_templates() {
        use super::prefix_problem;
        for ok in [
            "{{prefix}}",
            "cinepipe/{{scene.id}}/frame",
            "a/..b/c",
            "{{a}}..{{b}}",
        ] {
            assert_eq!(prefix_problem(ok), None, "{ok}");
        }
        for (bad, why) in [
            ("../x", "has a `..` segment"),
            ("{{scene.id}}/../x", "has a `..` segment"),
            ("/srv/{{prefix}}", "is absolute"),
            ("\\\\share\\x", "is absolute"),
            ("C:\\x", "starts with a drive letter"),
            ("a\0b", "has a NUL character"),
        ] {
            assert_eq!(prefix_problem(bad), Some(why), "{bad}");
        }
    }
}
