//! JSON Schema helpers shared by the layers that own a schema: the one generator setting every
//! schema cinepipe writes uses, and the reading of an `llm` stage's output schema.

use schemars::JsonSchema;
use schemars::generate::SchemaSettings;
use serde_json::Value;

/// Draft-07: what Taplo and most editors understand.
pub fn draft07<T: JsonSchema>() -> Value {
    SchemaSettings::draft07()
        .into_generator()
        .into_root_schema_for::<T>()
        .to_value()
}

/// Follows local `$ref`s and single-entry `allOf`s from `node` within the schema `root`, to the
/// schema that says what the value is. A dangling reference gives `null` (a schema that says
/// nothing), never a panic.
pub fn deref<'s>(root: &'s Value, mut node: &'s Value) -> &'s Value {
    // Bounded: a reference cycle in a user's schema must not hang the checker.
    for _ in 0..16 {
        if let Some(r) = node.get("$ref").and_then(Value::as_str) {
            node = r
                .strip_prefix('#')
                .and_then(|p| root.pointer(p))
                .unwrap_or(&Value::Null);
        } else if let Some(Value::Array(all)) = node
            .get("allOf")
            .filter(|a| a.as_array().is_some_and(|a| a.len() == 1))
        {
            node = &all[0];
        } else {
            break;
        }
    }
    node
}

/// The names of the list properties at the top of an output schema (what `for_each` reads).
pub fn list_properties(schema: &Value) -> Vec<String> {
    let Some(props) = deref(schema, schema)
        .get("properties")
        .and_then(Value::as_object)
    else {
        return Vec::new();
    };
    props
        .iter()
        .filter(|(_, v)| deref(schema, v).get("type").and_then(Value::as_str) == Some("array"))
        .map(|(k, _)| k.clone())
        .collect()
}

/// The property names of one item of the list `field` of an output schema (`{{scene.*}}`).
pub fn item_properties(schema: &Value, field: &str) -> Vec<String> {
    let list = deref(
        schema,
        deref(schema, schema)
            .pointer(&format!("/properties/{field}"))
            .unwrap_or(&Value::Null),
    );
    let item = deref(schema, list.get("items").unwrap_or(&Value::Null));
    item.get("properties")
        .and_then(Value::as_object)
        .map(|p| p.keys().cloned().collect())
        .unwrap_or_default()
}
