//! The entries of a spec deserialized one by one, so that one broken entry hides nothing.

use indexmap::IndexMap;
use serde::Deserialize;
use serde_json::Value;

use super::super::model::{RunSection, Service, Stage};

/// The entries of a spec that deserialized; the names of all of them, broken or not.
#[derive(Debug, Default)]
pub struct Parsed {
    pub run: Option<RunSection>,
    pub services: IndexMap<String, Option<Service>>,
    pub stages: IndexMap<String, Option<Stage>>,
}

impl Parsed {
    /// Deserializes each entry on its own, so that one broken stage does not hide the others.
    pub fn from_doc(doc: &Value) -> Parsed {
        Parsed::from_doc_keeping(doc, |_, _| true)
    }

    /// Like [`Parsed::from_doc`], but deserializes only the stages `keep` picks; the others are
    /// known by name only (as if broken), which is all a check of a few stages needs of them.
    pub fn from_doc_keeping(doc: &Value, keep: impl Fn(&str, &Value) -> bool) -> Parsed {
        let table = |key: &str| {
            doc.get(key)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
        };
        Parsed {
            run: doc.get("run").and_then(|r| RunSection::deserialize(r).ok()),
            services: table("services")
                .map(|(k, v)| (k.clone(), Service::deserialize(v).ok()))
                .collect(),
            stages: table("stages")
                .map(|(k, v)| {
                    (
                        k.clone(),
                        if keep(k, v) {
                            Stage::deserialize(v).ok()
                        } else {
                            None
                        },
                    )
                })
                .collect(),
        }
    }
}
