//! Writing keys and JSON values the way a TOML author would, for `plan` and the spec reference.

use serde_json::Value;

/// A key as it would be written in TOML: bare when it can be, quoted otherwise.
pub fn key(k: &str) -> String {
    if !k.is_empty()
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        k.to_owned()
    } else {
        format!("{k:?}")
    }
}

/// A JSON value written as a TOML value (floats keep their `.0`, tables are inline).
pub fn value(v: &Value) -> String {
    match v {
        Value::Array(a) => format!("[{}]", a.iter().map(value).collect::<Vec<_>>().join(", ")),
        Value::Object(m) if m.is_empty() => "{}".to_owned(),
        Value::Object(m) => format!(
            "{{ {} }}",
            m.iter()
                .map(|(k, v)| format!("{} = {}", key(k), value(v)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Value::Number(n) if n.is_f64() => {
            let f = n.as_f64().unwrap_or_default();
            if f.fract() == 0.0 && f.abs() < 1e15 {
                format!("{f:.1}")
            } else {
                f.to_string()
            }
        }
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn writes_toml() {
        assert_eq!(super::key("poll_interval_s"), "poll_interval_s");
        assert_eq!(super::key("positive.text"), "\"positive.text\"");
        assert_eq!(super::value(&json!(2.0)), "2.0");
        assert_eq!(super::value(&json!(2)), "2");
        assert_eq!(
            super::value(&json!({"a.b": [1, "x"]})),
            "{ \"a.b\" = [1, \"x\"] }"
        );
        assert_eq!(super::value(&json!({})), "{}");
    }
}
