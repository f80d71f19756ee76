//! `docs/prompts.md`, the prompt library's index, is generated from the templates' metadata
//! blocks; this test regenerates it and fails when the checked-in file differs
//! (`CINEPIPE_UPDATE_DOCS=1 cargo test prompts::` rewrites it). It also holds every template to
//! the library's rules: a complete metadata block whose `variables` are exactly what the body uses.

use std::path::{Path, PathBuf};

use crate::common::root;

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Meta {
    version: String,
    author: String,
    created: String,
    context_length: u32,
    token_limit: u32,
    variables: Vec<String>,
    description: String,
}

fn templates(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).expect("lists prompts/") {
            let p = e.expect("entry").path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "hbs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

fn meta(path: &Path, text: &str) -> Meta {
    let rest = text
        .trim_start()
        .strip_prefix("{{!--")
        .unwrap_or_else(|| panic!("{} has no metadata block", path.display()));
    let end = rest.find("--}}").expect("closed block");
    toml::from_str(&rest[..end]).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn index() -> String {
    let root = root();
    let mut out = String::from(
        "# Prompt library\n\n\
         Generated from the metadata blocks of the templates under `prompts/` by\n\
         `tests/prompts.rs` (`CINEPIPE_UPDATE_DOCS=1 cargo test prompts::` rewrites it; the test\n\
         fails when it is stale). How templates are written and versioned: `prompts/README.md`.\n\n\
         | template | version | variables | context | token limit | author | created | what it asks for |\n\
         | --- | --- | --- | --- | --- | --- | --- | --- |\n",
    );
    for path in templates(&root.join("prompts")) {
        let text = std::fs::read_to_string(&path).expect("reads");
        let m = meta(&path, &text);
        let rel = path
            .strip_prefix(&root)
            .expect("under root")
            .display()
            .to_string();
        let vars = if m.variables.is_empty() {
            "(none)".to_string()
        } else {
            m.variables
                .iter()
                .map(|v| format!("`{v}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        out.push_str(&format!(
            "| [`{rel}`](../{rel}) | {} | {vars} | {} | {} | {} | {} | {} |\n",
            m.version, m.context_length, m.token_limit, m.author, m.created, m.description
        ));
    }
    out
}

#[test]
fn every_template_declares_exactly_the_variables_it_uses() {
    let root = root();
    let all = templates(&root.join("prompts"));
    assert!(all.len() >= 4, "{all:?}");
    let genres: Vec<String> = all
        .iter()
        .filter_map(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .collect();
    for g in ["sci-fi", "drama", "thriller", "system"] {
        assert!(genres.iter().any(|x| x == g), "prompts/ has {g}");
    }
    for path in all {
        let text = std::fs::read_to_string(&path).expect("reads");
        let m = meta(&path, &text);
        let major = path
            .parent()
            .and_then(|d| d.file_name())
            .map(|d| d.to_string_lossy().trim_start_matches('v').to_string())
            .unwrap_or_default();
        assert!(
            m.version.split('.').next() == Some(major.as_str()),
            "{}: version {} is not in v{major}/",
            path.display(),
            m.version
        );
        let mut used = cinepipe::spec::templates::variables(&text).expect("the template compiles");
        used.sort();
        used.dedup();
        let mut declared = m.variables.clone();
        declared.sort();
        assert_eq!(used, declared, "{}: variables", path.display());
    }
}

#[test]
fn docs_prompts_md_is_up_to_date() {
    let path = root().join("docs/prompts.md");
    let want = index();
    if std::env::var_os("CINEPIPE_UPDATE_DOCS").is_some() {
        std::fs::write(&path, &want).expect("write docs/prompts.md");
    }
    let have = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        have == want,
        "docs/prompts.md is stale; run `CINEPIPE_UPDATE_DOCS=1 cargo test prompts::`\n--- want:\n{want}"
    );
}
