//! Handlebars templates in specs and prompt files: compile them and list the variables they use.

use handlebars::Path;
use handlebars::template::{HelperTemplate, Parameter, Template, TemplateElement};

/// A template that does not compile: why, and where (line and column, from 1) when known.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateSyntax(pub String, pub Option<(usize, usize)>);

impl TemplateSyntax {
    /// The byte offset of the error in `text`, when its position is known.
    pub fn offset(&self, text: &str) -> Option<usize> {
        let (line, col) = self.1?;
        let start: usize = text
            .split_inclusive('\n')
            .take(line.saturating_sub(1))
            .map(str::len)
            .sum();
        let line_text = text.get(start..)?.split('\n').next()?;
        let within: usize = line_text
            .chars()
            .take(col.saturating_sub(1))
            .map(char::len_utf8)
            .sum();
        Some(start + within)
    }
}

/// The variable paths a template reads from its root context, e.g. `scene.prompt`, `seed`.
///
/// Paths inside `{{#each}}` and `{{#with}}` blocks are relative to the block's item and are not
/// listed; `{{#if x}}` and `{{#unless x}}` keep the root context and are looked into.
pub fn variables(text: &str) -> Result<Vec<String>, TemplateSyntax> {
    let template = Template::compile(text).map_err(|e| {
        let why = match e.reason() {
            // The parser's own words name grammar rules; say what a writer needs to know.
            handlebars::TemplateErrorReason::InvalidSyntax(_) => {
                "invalid Handlebars syntax (an unclosed `{{`, or a malformed expression)".to_owned()
            }
            other => first_line(&other.to_string()),
        };
        TemplateSyntax(why, e.pos())
    })?;
    let mut out = Vec::new();
    walk(&template, &mut out);
    let mut seen = std::collections::HashSet::new();
    out.retain(|v| seen.insert(v.clone()));
    Ok(out)
}

fn first_line(s: &str) -> String {
    s.lines().next().unwrap_or_default().trim().to_owned()
}

fn walk(t: &Template, out: &mut Vec<String>) {
    for el in &t.elements {
        match el {
            TemplateElement::Expression(h) | TemplateElement::HtmlExpression(h) => {
                expression(h, out)
            }
            TemplateElement::HelperBlock(h) => {
                let name = param_name(&h.name).unwrap_or_default();
                for p in &h.params {
                    param(p, out);
                }
                for p in h.hash.values() {
                    param(p, out);
                }
                if matches!(name.as_str(), "if" | "unless")
                    && let Some(inner) = &h.template
                {
                    walk(inner, out);
                }
                if let Some(inv) = &h.inverse {
                    walk(inv, out);
                }
            }
            _ => {}
        }
    }
}

fn expression(h: &HelperTemplate, out: &mut Vec<String>) {
    if h.params.is_empty() && h.hash.is_empty() {
        param(&h.name, out);
    } else {
        for p in &h.params {
            param(p, out);
        }
        for p in h.hash.values() {
            param(p, out);
        }
    }
}

fn param_name(p: &Parameter) -> Option<String> {
    match p {
        Parameter::Name(n) => Some(n.clone()),
        Parameter::Path(Path::Relative((_, raw))) => Some(raw.clone()),
        _ => None,
    }
}

fn param(p: &Parameter, out: &mut Vec<String>) {
    match p {
        Parameter::Subexpression(s) => {
            if let TemplateElement::Expression(h) | TemplateElement::HelperBlock(h) = s.as_element()
            {
                for p in &h.params {
                    param(p, out);
                }
            }
        }
        other => {
            if let Some(raw) = param_name(other) {
                let raw = raw
                    .strip_prefix("this.")
                    .or_else(|| raw.strip_prefix("./"))
                    .unwrap_or(&raw);
                if !raw.is_empty()
                    && raw != "this"
                    && !raw.starts_with("..")
                    && !raw.starts_with('@')
                {
                    out.push(raw.replace('/', "."));
                }
            }
        }
    }
}

/// A prompt file's metadata block: TOML in a leading `{{!-- ... --}}` comment.
#[derive(Debug, Clone, Default, PartialEq, serde::Deserialize)]
pub struct PromptMeta {
    pub version: Option<String>,
    #[serde(default)]
    pub variables: Vec<String>,
}

/// Why a prompt file's metadata block cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PromptMetaError {
    #[error("metadata block `{{{{!--` has no closing `--}}}}`")]
    Unclosed,
    /// The first line of the TOML parser's message.
    #[error("metadata block is not valid: {0}")]
    Invalid(String),
}

/// Reads the metadata block of a prompt file, if it has one. A block that is not valid TOML is
/// an error: it would otherwise silently declare nothing.
pub fn prompt_meta(text: &str) -> Result<Option<PromptMeta>, PromptMetaError> {
    let Some(rest) = text.trim_start().strip_prefix("{{!--") else {
        return Ok(None);
    };
    let Some(end) = rest.find("--}}") else {
        return Err(PromptMetaError::Unclosed);
    };
    toml::from_str::<PromptMeta>(&rest[..end])
        .map(Some)
        .map_err(|e| PromptMetaError::Invalid(first_line(e.message())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_root_variables_but_not_block_scoped_ones() {
        let vars = variables("{{scene.prompt}} {{seed}} {{#if premise}}{{premise}}{{/if}} {{#each items}}{{name}}{{/each}}")
            .expect("compiles");
        assert_eq!(vars, ["scene.prompt", "seed", "premise", "items"]);
    }

    #[test]
    fn helper_arguments_are_variables() {
        let vars = variables("{{lookup vars.names 0}} {{{run.id}}}").expect("compiles");
        assert_eq!(vars, ["vars.names", "run.id"]);
    }

    #[test]
    fn syntax_errors_are_reported() {
        assert!(variables("{{#if x}} no end").is_err());
        assert!(variables("{{ scene.prompt").is_err());
    }

    #[test]
    fn metadata_block() {
        let meta = prompt_meta("{{!--\nversion = \"1.0.0\"\nvariables = [\"a\"]\n--}}\nhi {{a}}")
            .expect("parses");
        assert_eq!(meta.map(|m| m.variables), Some(vec!["a".to_owned()]));
        assert_eq!(prompt_meta("hi").expect("no block"), None);
        assert!(matches!(
            prompt_meta("{{!-- version = --}}"),
            Err(PromptMetaError::Invalid(_))
        ));
        assert_eq!(
            prompt_meta("{{!-- version = \"1\"").map_err(|e| e.to_string()),
            Err("metadata block `{{!--` has no closing `--}}`".to_owned())
        );
    }
}
