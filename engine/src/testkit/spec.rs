//! [`SpecBuilder`]: the run specs of the tests and benches, written as TOML from a chain of the
//! usual stages, with each test changing only what it is about.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use crate::spec::{CheckedSpec, SpecSource};
use crate::toml_fmt;

/// The whole scene pipeline, in order: each stage needs the one before it, and the first stage
/// after `story` fans out over `story.scenes` (unless it is `validate`, which checks the run).
pub const SCENE_PIPELINE: [&str; 7] = [
    "story", "patch", "render", "marker", "frames", "quality", "validate",
];

/// An address where nothing answers (the discard port): the service of a stage that a test
/// scripts, or never runs.
pub const NOWHERE: &str = "http://127.0.0.1:9";

/// A run spec under construction: `[run]`, `[services.*]` and `[stages.*]` tables, each kept
/// in the order its keys were first set, written out by [`SpecBuilder::text`].
///
/// [`SpecBuilder::chain`] knows the stages every test names the same way (`story`, `patch`,
/// `render`, `marker`, `frames`, `quality`, `validate`) and the services they use (`llm`,
/// `comfy`, both at [`NOWHERE`] until a test points them at a server).
#[derive(Debug, Clone)]
pub struct SpecBuilder {
    run: Map<String, Value>,
    services: Map<String, Value>,
    stages: Map<String, Value>,
}

impl SpecBuilder {
    /// A spec with only `[run]`: `name`, and `base_dir` at the project root so that the
    /// project's prompts and workflows resolve wherever the spec is.
    pub fn new(name: &str) -> SpecBuilder {
        let mut run = Map::new();
        run.insert("name".into(), json!(name));
        run.insert(
            "base_dir".into(),
            json!(super::project_root().display().to_string()),
        );
        SpecBuilder {
            run,
            services: Map::new(),
            stages: Map::new(),
        }
    }

    /// The named stages of [`SCENE_PIPELINE`] (any subsequence of it, in its order), each
    /// needing the one before, with the services they use; the stage after `story` fans out
    /// over its scenes, unless it is `validate`. What each stage starts with:
    ///
    /// | stage | kind | settings |
    /// | --- | --- | --- |
    /// | `story` | `llm` | service `llm`, `prompts/story/v1/sci-fi.hbs`, 3 calm scenes, no premise |
    /// | `patch` | `patch-workflow` | `workflows/model-free/frames.json`, `save.filename_prefix` = `{{prefix}}` |
    /// | `render` | `queue` | service `comfy` |
    /// | `marker` | `await-marker` | |
    /// | `frames` | `collect-frames` | |
    /// | `quality` | `quality` | |
    /// | `validate` | `validate` | |
    ///
    /// # Panics
    /// On a name that is not one of [`SCENE_PIPELINE`]: a test's mistake.
    pub fn chain(name: &str, stages: &[&str]) -> SpecBuilder {
        let mut b = SpecBuilder::new(name);
        let mut before: Option<&str> = None;
        for &stage in stages {
            let mut table = usual_stage(stage);
            if let Some(need) = before {
                table.insert("needs".into(), json!([need]));
                // `validate` checks the whole run: it gathers, whatever it follows.
                if need == "story" && stage != "validate" {
                    table.insert("for_each".into(), json!("story.scenes"));
                }
            }
            match table.get("service").and_then(Value::as_str) {
                Some("llm") if !b.services.contains_key("llm") => {
                    b = b.service("llm", openai(&format!("{NOWHERE}/v1")));
                }
                Some("comfy") if !b.services.contains_key("comfy") => {
                    b = b.service("comfy", comfyui(&[NOWHERE]));
                }
                _ => {}
            }
            b.stages.insert(stage.to_owned(), Value::Object(table));
            before = Some(stage);
        }
        b
    }

    /// Sets `key` of the table at `table`: `"run"`, `"services.NAME"` or `"stages.NAME"`
    /// (created when missing). A key already set keeps its place.
    pub fn set(mut self, table: &str, key: &str, value: impl Into<Value>) -> SpecBuilder {
        self.table(table).insert(key.to_owned(), value.into());
        self
    }

    /// Sets every key of a TOML fragment (`"timeout_s = 0.5\non_timeout = \"fail\""`) in the
    /// table at `table`, as [`SpecBuilder::set`] would.
    ///
    /// # Panics
    /// When the fragment is not TOML.
    pub fn toml(mut self, table: &str, fragment: &str) -> SpecBuilder {
        let keys: Map<String, Value> = toml::from_str(fragment)
            .unwrap_or_else(|e| panic!("a TOML fragment for `{table}`: {e}\n{fragment}"));
        let target = self.table(table);
        for (k, v) in keys {
            target.insert(k, v);
        }
        self
    }

    /// Removes `key` from the table at `table`, if it is there.
    pub fn remove(mut self, table: &str, key: &str) -> SpecBuilder {
        self.table(table).shift_remove(key);
        self
    }

    /// Removes the table at `table` (`"services.NAME"` or `"stages.NAME"`), if it is there.
    pub fn without(mut self, table: &str) -> SpecBuilder {
        match table.split_once('.') {
            Some(("services", name)) => self.services.shift_remove(name),
            Some(("stages", name)) => self.stages.shift_remove(name),
            _ => panic!("`{table}` is not `services.NAME` or `stages.NAME`"),
        };
        self
    }

    /// Adds (or replaces) the service `name` with the keys of `table` (see [`openai`] and
    /// [`comfyui`]).
    pub fn service(mut self, name: &str, table: Value) -> SpecBuilder {
        self.services.insert(name.to_owned(), table);
        self
    }

    /// Adds (or replaces) the stage `name` with the keys of `table`, after the others.
    pub fn stage(mut self, name: &str, table: Value) -> SpecBuilder {
        self.stages.insert(name.to_owned(), table);
        self
    }

    /// Points the `llm` service at an OpenAI-compatible server (`http://host:port/v1`).
    pub fn llm_url(self, base_url: &str) -> SpecBuilder {
        self.set("services.llm", "base_url", base_url)
    }

    /// Points the `comfy` service at ComfyUI servers.
    pub fn comfy_urls(self, urls: &[&str]) -> SpecBuilder {
        self.set("services.comfy", "urls", json!(urls))
    }

    /// How many scenes the `story` stage asks for.
    pub fn scenes(mut self, scenes: usize) -> SpecBuilder {
        let vars = self
            .table("stages.story")
            .entry("vars")
            .or_insert_with(|| json!({}));
        vars["scenes"] = json!(scenes);
        self
    }

    /// The `story` stage's answer fixed whatever the CPU: the output schema
    /// `tests/fixtures/schemas/fixed-story.schema.json` (a const story, which the server's
    /// grammar forces) and no completion floor. For tests about what comes after the story.
    pub fn fixed_story(self) -> SpecBuilder {
        let schema = super::project_root().join("tests/fixtures/schemas/fixed-story.schema.json");
        self.set(
            "stages.story",
            "output_schema",
            schema.display().to_string(),
        )
        .set("stages.story", "min_completion_tokens", 1)
    }

    /// The `story` stage as the tests against the harness's small model (SmolLM2-135M) write
    /// it: the project's system prompt, two scenes about a lighthouse keeper, greedy and seeded,
    /// a completion floor the small model reaches (the prompts' 150 tokens are for real
    /// models), and bounds for a busy CI machine (these tests are about behaviour, not speed).
    pub fn small_model_story(self) -> SpecBuilder {
        self.toml(
            "stages.story",
            r#"
system_prompt = "prompts/story/v1/system.hbs"
prompt = "prompts/story/v1/sci-fi.hbs"
vars = { scenes = 2, tone = "calm", premise = "a lighthouse keeper on a moon" }
min_completion_tokens = 20
max_tokens = 600
temperature = 0.0
seed = 7
max_latency_s = 900.0
timeout_s = 900.0
"#,
        )
    }

    /// Where the run folders go (`[run] output_dir`).
    pub fn output_dir(self, dir: &Path) -> SpecBuilder {
        self.set("run", "output_dir", dir.display().to_string())
    }

    /// The keys of the stage `name`, as JSON: what a test that builds one stage's settings
    /// type (`LlmStage`, …) deserializes, without its `kind`.
    ///
    /// # Panics
    /// When there is no such stage.
    pub fn stage_settings(&self, name: &str) -> Value {
        let mut table = self
            .stages
            .get(name)
            .and_then(Value::as_object)
            .unwrap_or_else(|| panic!("the spec has no stage `{name}`"))
            .clone();
        table.shift_remove("kind");
        Value::Object(table)
    }

    /// The spec as TOML.
    pub fn text(&self) -> String {
        let mut out = String::new();
        write_table(&mut out, "run", &self.run);
        for (section, tables) in [("services", &self.services), ("stages", &self.stages)] {
            for (name, table) in tables {
                let empty = Map::new();
                let keys = table.as_object().unwrap_or(&empty);
                write_table(
                    &mut out,
                    &format!("{section}.{}", toml_fmt::key(name)),
                    keys,
                );
            }
        }
        out
    }

    /// Writes the spec to `dir/file` and returns that path.
    ///
    /// # Panics
    /// When the file cannot be written.
    pub fn write(&self, dir: &Path, file: &str) -> PathBuf {
        let path = dir.join(file);
        std::fs::write(&path, self.text())
            .unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
        path
    }

    /// The spec checked as `cinepipe validate` would (source name `<run name>.toml`).
    ///
    /// # Panics
    /// When the spec is invalid, with every diagnostic's message and the text.
    pub fn check(&self) -> CheckedSpec {
        let name = self
            .run
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("test");
        let text = self.text();
        let source = SpecSource::from_str(&format!("{name}.toml"), &text);
        match crate::spec::check(&source, None) {
            Ok(checked) => checked,
            Err(e) => panic!(
                "the test spec is invalid: {:?}\n{text}",
                e.diagnostics
                    .iter()
                    .map(|d| d.message.clone())
                    .collect::<Vec<_>>()
            ),
        }
    }

    fn table(&mut self, path: &str) -> &mut Map<String, Value> {
        let slot = match path.split_once('.') {
            None if path == "run" => return &mut self.run,
            Some(("services", name)) => self.services.entry(name).or_insert_with(|| json!({})),
            Some(("stages", name)) => self.stages.entry(name).or_insert_with(|| json!({})),
            _ => panic!("`{path}` is not `run`, `services.NAME` or `stages.NAME`"),
        };
        if !slot.is_object() {
            *slot = json!({});
        }
        slot.as_object_mut().expect("made an object above")
    }
}

/// An `openai` service at `base_url` serving the model `m`.
pub fn openai(base_url: &str) -> Value {
    json!({"kind": "openai", "base_url": base_url, "model": "m"})
}

/// A `comfyui` service over `urls`.
pub fn comfyui(urls: &[&str]) -> Value {
    json!({"kind": "comfyui", "urls": urls})
}

fn usual_stage(name: &str) -> Map<String, Value> {
    let table = match name {
        "story" => json!({
            "kind": "llm",
            "service": "llm",
            "prompt": "prompts/story/v1/sci-fi.hbs",
            "vars": {"scenes": 3, "tone": "calm", "premise": ""},
        }),
        "patch" => json!({
            "kind": "patch-workflow",
            "workflow": "workflows/model-free/frames.json",
            "set": {"save.filename_prefix": "{{prefix}}"},
        }),
        "render" => json!({"kind": "queue", "service": "comfy"}),
        "marker" => json!({"kind": "await-marker"}),
        "frames" => json!({"kind": "collect-frames"}),
        "quality" => json!({"kind": "quality"}),
        "validate" => json!({"kind": "validate"}),
        other => panic!("`{other}` is not a stage of {SCENE_PIPELINE:?}"),
    };
    match table {
        Value::Object(keys) => keys,
        _ => Map::new(),
    }
}

fn write_table(out: &mut String, header: &str, keys: &Map<String, Value>) {
    if !out.is_empty() {
        out.push('\n');
    }
    out.push_str(&format!("[{header}]\n"));
    for (k, v) in keys {
        out.push_str(&format!("{} = {}\n", toml_fmt::key(k), toml_fmt::value(v)));
    }
}
