//! The rules a spec must obey that its types cannot say: references between stages and
//! services, the shape of the graph, fan-out, files, templates and patch targets.

use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use fixedbitset::FixedBitSet;
use indexmap::IndexMap;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};
use serde::Deserialize;
use serde_json::Value;

use super::diagnostic::{Code, SpecDiagnostic, article, hint, suggest};
use super::model::{
    Backoff, LlmStage, OnShort, PatchWorkflowStage, QualityCheck, RetryPolicy, RunSection, Service,
    ServiceKind, Stage, StageKind,
};
use super::source::{SpanIndex, SpecSource, escape_segment};
use super::templates;
use crate::workflow::Workflow;

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

/// How a stage instance count is decided: once per run, or once per item of an upstream list.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case", tag = "mode")]
pub enum Fan {
    /// One instance per run.
    Once,
    /// One instance per item of `source` (`STAGE.FIELD`); `origin` is the stage whose
    /// `for_each` started the fan-out.
    PerItem { source: String, origin: String },
    /// One instance per run, after every instance of the fanned-out stages it needs.
    Gather { source: String },
}

/// Why a file a spec names cannot be used, and the code that reports it.
#[derive(Debug, Clone)]
pub struct FileError {
    pub code: Code,
    pub why: String,
}

impl FileError {
    fn new(code: Code, why: impl Into<String>) -> Self {
        FileError {
            code,
            why: why.into(),
        }
    }
}

/// Files read while checking, read (and parsed) once each.
#[derive(Default)]
pub struct Files {
    text: HashMap<PathBuf, Result<Arc<str>, FileError>>,
    workflows: HashMap<PathBuf, Result<Arc<Workflow>, FileError>>,
    templates: HashMap<PathBuf, Result<Vec<String>, FileError>>,
    schemas: HashMap<PathBuf, Result<Arc<Value>, FileError>>,
    story_schema: Option<Arc<Value>>,
}

impl Files {
    fn read(&mut self, path: &Path) -> Result<Arc<str>, FileError> {
        self.text
            .entry(path.to_path_buf())
            .or_insert_with(|| match std::fs::read(path) {
                Ok(bytes) => String::from_utf8(bytes)
                    .map(Arc::from)
                    .map_err(|_| FileError::new(Code::BadFile, "is not UTF-8 text")),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    Err(FileError::new(Code::MissingFile, "does not exist"))
                }
                Err(e) => Err(FileError::new(
                    Code::BadFile,
                    format!("cannot be read: {e}"),
                )),
            })
            .clone()
    }

    /// Reads and parses a file once; later calls get the cached result.
    fn parsed<T: Clone>(
        &mut self,
        path: &Path,
        cache: fn(&mut Files) -> &mut HashMap<PathBuf, Result<T, FileError>>,
        parse: impl FnOnce(&str) -> Result<T, FileError>,
    ) -> Result<T, FileError> {
        if let Some(r) = cache(self).get(path) {
            return r.clone();
        }
        let r = self.read(path).and_then(|text| parse(&text));
        cache(self).insert(path.to_path_buf(), r.clone());
        r
    }

    fn workflow(&mut self, path: &Path) -> Result<Arc<Workflow>, FileError> {
        self.parsed(
            path,
            |f| &mut f.workflows,
            |text| {
                Workflow::parse(text).map(Arc::new).map_err(|e| {
                    FileError::new(Code::Workflow, format!("is not a usable workflow: {e}"))
                })
            },
        )
    }

    /// The variables a template file uses, plus those its metadata block declares.
    fn template(&mut self, path: &Path) -> Result<Vec<String>, FileError> {
        self.parsed(
            path,
            |f| &mut f.templates,
            |text| {
                let invalid = |e: String| {
                    FileError::new(
                        Code::Template,
                        format!("is not a valid prompt template: {e}"),
                    )
                };
                let mut used = templates::variables(text).map_err(|e| invalid(e.0))?;
                for v in templates::prompt_meta(text)
                    .map_err(invalid)?
                    .map(|m| m.variables)
                    .unwrap_or_default()
                {
                    if !used.contains(&v) {
                        used.push(v);
                    }
                }
                Ok(used)
            },
        )
    }

    fn schema(&mut self, path: &Path) -> Result<Arc<Value>, FileError> {
        self.parsed(
            path,
            |f| &mut f.schemas,
            |text| {
                let v: Value = serde_json::from_str(text).map_err(|e| {
                    FileError::new(Code::BadFile, format!("is not valid JSON: {e}"))
                })?;
                jsonschema::validator_for(&v).map_err(|e| {
                    FileError::new(Code::BadFile, format!("is not a valid JSON Schema: {e}"))
                })?;
                Ok(Arc::new(v))
            },
        )
    }
}

/// Checks one document (the spec, or the spec with a profile laid over it).
pub struct Checker<'a> {
    pub source: &'a SpecSource,
    pub index: &'a SpanIndex,
    pub doc: &'a Value,
    pub parsed: &'a Parsed,
    pub base_dir: PathBuf,
    pub files: &'a mut Files,
    pub out: &'a mut Vec<SpecDiagnostic>,
    /// Check the values of only these entries (`stages/NAME`, `services/NAME`, `run`).
    pub only: Option<HashSet<String>>,
}

fn stage_ptr(name: &str) -> String {
    format!("/stages/{}", escape_segment(name))
}

fn service_ptr(name: &str) -> String {
    format!("/services/{}", escape_segment(name))
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

impl<'a> Checker<'a> {
    fn value_span(&self, ptr: &str) -> Range<usize> {
        self.index.nearest(ptr).value
    }

    fn entry_span(&self, ptr: &str) -> Range<usize> {
        self.index.nearest(ptr).entry()
    }

    fn err(
        &mut self,
        code: Code,
        msg: String,
        span: Range<usize>,
        label: &str,
        help: Option<String>,
    ) {
        self.out.push(
            SpecDiagnostic::new(self.source, code, msg)
                .label(span, label)
                .maybe_help(help),
        );
    }

    /// Whether the stage or anything above it has a `for_each`, read from the document as
    /// written (for when the graph is too broken to compute fan-out).
    fn raw_fanned(&self, name: &str) -> bool {
        let mut stack = vec![name.to_owned()];
        let mut seen = HashSet::new();
        while let Some(n) = stack.pop() {
            if !seen.insert(n.clone()) {
                continue;
            }
            let Some(stage) = super::source::lookup(self.doc, &stage_ptr(&n)) else {
                continue;
            };
            if stage.get("for_each").is_some() {
                return true;
            }
            if let Some(Value::Array(needs)) = stage.get("needs") {
                stack.extend(needs.iter().filter_map(Value::as_str).map(str::to_owned));
            }
        }
        false
    }

    fn wants(&self, table: &str, name: &str) -> bool {
        self.only
            .as_ref()
            .is_none_or(|o| o.contains(&format!("{table}/{name}")))
    }

    fn stage_names(&self) -> Vec<&'a str> {
        let parsed: &'a Parsed = self.parsed;
        parsed.stages.keys().map(String::as_str).collect()
    }

    /// The rules about the shape of the pipeline. Returns each stage's fan-out when the graph
    /// is sound (no unknown needs, no cycles).
    pub fn check_graph(&mut self) -> Option<IndexMap<String, Fan>> {
        if self.parsed.stages.is_empty() && self.doc.get("stages").is_some() {
            let span = self.entry_span("/stages");
            self.err(
                Code::MissingKey,
                "the spec has no stages".into(),
                span,
                "add at least one `[stages.NAME]` table",
                None,
            );
            return None;
        }
        if let Some(run) = &self.parsed.run
            && !run
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            let span = self.value_span("/run/name");
            self.err(
                Code::InvalidValue,
                format!(
                    "run name `{}` must use only letters, digits, `-`, `_` and `.`",
                    run.name
                ),
                span,
                "it becomes part of run ids and folder names",
                None,
            );
        }
        for name in self.parsed.stages.keys() {
            if !valid_name(name) {
                let span = self.entry_span(&stage_ptr(name));
                self.out.push(
                    SpecDiagnostic::new(
                        self.source,
                        Code::InvalidValue,
                        format!("stage name `{name}` must use only letters, digits, `-` and `_`"),
                    )
                    .label(
                        span,
                        "stage names appear in `for_each`, templates and folder names",
                    ),
                );
            }
        }
        for name in self.parsed.services.keys() {
            if !valid_name(name) {
                let span = self.entry_span(&service_ptr(name));
                self.out.push(
                    SpecDiagnostic::new(
                        self.source,
                        Code::InvalidValue,
                        format!("service name `{name}` must use only letters, digits, `-` and `_`"),
                    )
                    .label(span, "not a valid name"),
                );
            }
        }
        let names = self.stage_names();
        let mut graph: DiGraph<&str, usize> = DiGraph::new();
        let nodes: HashMap<&str, NodeIndex> =
            names.iter().map(|n| (*n, graph.add_node(*n))).collect();
        let mut sound = true;
        let mut needs_errs = Vec::new();
        for (name, stage) in &self.parsed.stages {
            let Some(stage) = stage else {
                sound = false;
                continue;
            };
            let mut seen = HashSet::new();
            for (i, need) in stage.common().needs.iter().enumerate() {
                let ptr = format!("{}/needs/{i}", stage_ptr(name));
                let span = self.value_span(&ptr);
                if need == name {
                    needs_errs.push(
                        SpecDiagnostic::new(
                            self.source,
                            Code::Cycle,
                            format!("stage `{name}` needs itself"),
                        )
                        .label(span, "a stage cannot wait for itself"),
                    );
                    sound = false;
                } else if !seen.insert(need.as_str()) {
                    needs_errs.push(
                        SpecDiagnostic::new(
                            self.source,
                            Code::InvalidValue,
                            format!("stage `{name}` lists `{need}` twice in `needs`"),
                        )
                        .label(span, "listed again here"),
                    );
                } else if let Some(&to) = nodes.get(need.as_str()) {
                    graph.add_edge(nodes[name.as_str()], to, i);
                } else {
                    let others: Vec<&str> = names.iter().copied().filter(|n| n != name).collect();
                    needs_errs.push(
                        SpecDiagnostic::new(
                            self.source,
                            Code::UnknownStage,
                            format!("unknown stage `{need}` in `needs` of stage `{name}`"),
                        )
                        .label(span, "no stage has this name")
                        .maybe_help(hint(need, "stages", &others)),
                    );
                    sound = false;
                }
            }
        }
        self.out.extend(needs_errs);
        // Cycles: every strongly connected component of more than one stage is one.
        for scc in tarjan_scc(&graph) {
            if scc.len() < 2 {
                continue;
            }
            sound = false;
            let members: HashSet<NodeIndex> = scc.iter().copied().collect();
            let start = *scc.iter().min_by_key(|n| n.index()).unwrap_or(&scc[0]);
            let path = cycle_path(&graph, start, &members);
            let spelled: Vec<String> = path.iter().map(|n| format!("`{}`", graph[*n])).collect();
            let mut d = SpecDiagnostic::new(self.source, Code::Cycle, format!("`needs` form a cycle: {}", spelled.join(" → ")))
                .help("each stage in the cycle waits for the next one, so none can ever start; remove one of these `needs`");
            for pair in path.windows(2) {
                if let Some(e) = graph.find_edge(pair[0], pair[1]) {
                    let ptr = format!("{}/needs/{}", stage_ptr(graph[pair[0]]), graph[e]);
                    d = d.label(
                        self.value_span(&ptr),
                        format!("`{}` needs `{}`", graph[pair[0]], graph[pair[1]]),
                    );
                }
            }
            d.labels.sort_by_key(|(r, _)| r.start);
            self.out.push(d);
        }
        if !sound {
            return None;
        }
        self.fan_out(&graph)
    }

    /// Decides each stage's fan-out, checking `for_each` and `on_short` along the way.
    fn fan_out(&mut self, graph: &DiGraph<&str, usize>) -> Option<IndexMap<String, Fan>> {
        let order = petgraph::algo::toposort(graph, None).ok()?;
        let mut fans: IndexMap<String, Fan> = IndexMap::new();
        // Ancestor sets as bitsets over stage indices: a 1,000-stage spec needs a million
        // membership facts, which hash sets of names made the slowest part of checking.
        let count = self.parsed.stages.len();
        let mut ancestors: Vec<FixedBitSet> = vec![FixedBitSet::with_capacity(count); count];
        let mut ok = true;
        // toposort over edges stage → need yields dependents first; walk it backwards.
        for n in order.iter().rev() {
            let name = graph[*n];
            let Some(Some(stage)) = self.parsed.stages.get(name) else {
                continue;
            };
            let common = stage.common();
            let mut anc = FixedBitSet::with_capacity(count);
            for need in common.needs {
                if let Some(j) = self.parsed.stages.get_index_of(need.as_str()) {
                    anc.insert(j);
                    anc.union_with(&ancestors[j]);
                }
            }
            // What the needs are fanned out over.
            let mut upstream: Vec<(String, String, &str)> = Vec::new();
            for need in common.needs {
                if let Some(Fan::PerItem { source, origin }) = fans.get(need.as_str())
                    && !upstream.iter().any(|(s, _, _)| s == source)
                {
                    upstream.push((source.clone(), origin.clone(), need.as_str()));
                }
            }
            let ptr = stage_ptr(name);
            let fan = if let Some(fe) = common.for_each {
                let fspan = self.value_span(&format!("{ptr}/for_each"));
                if let Some((src, _, via)) = upstream.first() {
                    self.err(Code::ForEach, format!("stage `{name}` already runs once per item of `{src}` (through `{via}`); a second `for_each` is not supported"), fspan, "nested fan-out", Some("remove `for_each` here: stages that need a fanned-out stage follow it item by item".into()));
                    ok = false;
                    Fan::Once
                } else if self.check_for_each(name, fe, &anc, fspan) {
                    Fan::PerItem {
                        source: fe.to_owned(),
                        origin: name.to_owned(),
                    }
                } else {
                    ok = false;
                    Fan::Once
                }
            } else if upstream.len() > 1 {
                let list: Vec<String> = upstream
                    .iter()
                    .map(|(s, _, via)| format!("`{via}` ({s})"))
                    .collect();
                let span = self.entry_span(&format!("{ptr}/needs"));
                self.err(
                    Code::ForEach,
                    format!(
                        "stage `{name}` needs stages fanned out over different lists: {}",
                        list.join(", ")
                    ),
                    span,
                    "items of different lists cannot be paired",
                    None,
                );
                ok = false;
                Fan::Once
            } else if let Some((src, origin, _)) = upstream.pop() {
                if stage.kind() == StageKind::Validate {
                    Fan::Gather { source: src }
                } else {
                    Fan::PerItem {
                        source: src,
                        origin,
                    }
                }
            } else {
                // Nothing fanned out above, or only gathered: once per run.
                Fan::Once
            };
            if let Stage::CollectFrames(c) = stage
                && let OnShort::Requeue(target) = &c.on_short
            {
                let tspan = self.value_span(&format!("{ptr}/on_short/requeue"));
                match self.parsed.stages.get(target) {
                    None => {
                        let names = self.stage_names();
                        self.err(Code::UnknownStage, format!("`on_short` of stage `{name}` requeues into unknown stage `{target}`"), tspan, "no stage has this name", hint(target, "stages", &names));
                    }
                    Some(Some(t)) if t.kind() != StageKind::Queue => {
                        self.err(Code::InvalidValue, format!("`on_short` of stage `{name}` requeues into `{target}`, {} `{}` stage; it must be a `queue` stage", article(t.kind().as_str()), t.kind().as_str()), tspan, "not a queue stage", None);
                    }
                    Some(_)
                        if !self
                            .parsed
                            .stages
                            .get_index_of(target.as_str())
                            .is_some_and(|j| anc.contains(j)) =>
                    {
                        self.err(Code::InvalidValue, format!("`on_short` of stage `{name}` requeues into `{target}`, which is not upstream of it"), tspan, "not among the stages this one needs", Some(format!("add `{target}` to the `needs` of `{name}`, directly or through another stage")));
                    }
                    _ => {}
                }
            }
            if let Some(i) = self.parsed.stages.get_index_of(name) {
                ancestors[i] = anc;
            }
            fans.insert(name.to_owned(), fan);
        }
        // Report in the spec's order.
        let mut ordered = IndexMap::new();
        for name in self.parsed.stages.keys() {
            if let Some(f) = fans.get(name) {
                ordered.insert(name.clone(), f.clone());
            }
        }
        ok.then_some(ordered)
    }

    fn check_for_each(
        &mut self,
        name: &str,
        fe: &str,
        anc: &FixedBitSet,
        span: Range<usize>,
    ) -> bool {
        let Some((src, field)) = fe.split_once('.') else {
            self.err(
                Code::ForEach,
                format!("`for_each` of stage `{name}` must be written `STAGE.FIELD`, found `{fe}`"),
                span,
                "e.g. `story.scenes`",
                None,
            );
            return false;
        };
        let names = self.stage_names();
        let Some(entry) = self.parsed.stages.get(src) else {
            self.err(
                Code::ForEach,
                format!("`for_each` of stage `{name}` names unknown stage `{src}`"),
                span,
                "no stage has this name",
                hint(src, "stages", &names),
            );
            return false;
        };
        if !self
            .parsed
            .stages
            .get_index_of(src)
            .is_some_and(|j| anc.contains(j))
        {
            self.err(
                Code::ForEach,
                format!("`for_each` of stage `{name}` reads `{src}`, which is not upstream of it"),
                span,
                "not among the stages this one needs",
                Some(format!("add `{src}` to `needs`")),
            );
            return false;
        }
        let Some(stage) = entry else { return false };
        let Stage::Llm(llm) = stage else {
            self.err(Code::ForEach, format!("`for_each` of stage `{name}` reads `{src}`, {} `{}` stage, which produces no list", article(stage.kind().as_str()), stage.kind().as_str()), span, "not a list-producing stage", Some("`for_each` reads a list from an `llm` stage's answer, e.g. `story.scenes`".into()));
            return false;
        };
        let Some(lists) = self.list_fields(llm) else {
            return true;
        };
        if !lists.iter().any(|l| l == field) {
            let l: Vec<&str> = lists.iter().map(String::as_str).collect();
            self.err(Code::ForEach, format!("`for_each` of stage `{name}` reads `{src}.{field}`, but the answer of `{src}` has no list `{field}`"), span, "not a list of the stage's output schema", hint(field, "lists it has", &l));
            return false;
        }
        true
    }

    /// The schema an llm stage's answer must match: its `output_schema`, else the story schema
    /// generated from `story::Story`. `None` when the file is unusable (reported elsewhere).
    fn output_schema(&mut self, llm: &LlmStage) -> Option<Arc<Value>> {
        match &llm.output_schema {
            None => Some(
                self.files
                    .story_schema
                    .get_or_insert_with(|| Arc::new(crate::schema::story_schema()))
                    .clone(),
            ),
            Some(path) => self.files.schema(&self.base_dir.join(path)).ok(),
        }
    }

    /// The array properties at the top of an llm stage's output.
    /// `None` when the schema is unusable: that is reported on its own, and what lists it
    /// would have is unknown.
    fn list_fields(&mut self, llm: &LlmStage) -> Option<Vec<String>> {
        self.output_schema(llm)
            .map(|s| crate::schema::list_properties(&s))
    }

    /// The fields an item of `source` (`STAGE.FIELD`) has, for `{{scene.*}}`; `None` when they
    /// cannot be known (the source stage or its schema is broken, which is reported on its own).
    fn item_fields(&mut self, source: &str) -> Option<Vec<String>> {
        let (src, field) = source.split_once('.')?;
        let parsed: &'a Parsed = self.parsed;
        let Some(Some(Stage::Llm(llm))) = parsed.stages.get(src) else {
            return None;
        };
        let schema = self.output_schema(llm)?;
        let mut fields = vec!["index".to_owned()];
        fields.extend(crate::schema::item_properties(&schema, field));
        Some(fields)
    }

    /// The rules about values: references, files, templates, retry policies, bounds.
    pub fn check_values(&mut self, fans: Option<&IndexMap<String, Fan>>) {
        self.check_services();
        let stages: Vec<(String, Stage)> = self
            .parsed
            .stages
            .iter()
            .filter(|(n, _)| self.wants("stages", n))
            .filter_map(|(n, s)| s.clone().map(|s| (n.clone(), s)))
            .collect();
        for (name, stage) in &stages {
            let ptr = stage_ptr(name);
            self.check_retry(&format!("{ptr}/retry"), stage.common().retry);
            for (key, svc) in stage.services() {
                let want = match (stage.kind(), key) {
                    (StageKind::Queue, _) => ServiceKind::Comfyui,
                    _ => ServiceKind::Openai,
                };
                self.check_service_ref(
                    &format!("{ptr}/{key}"),
                    &format!("`{key}` of stage `{name}`"),
                    svc,
                    want,
                );
            }
            match stage {
                Stage::Llm(s) => self.check_llm(name, s),
                Stage::PatchWorkflow(s) => {
                    let fan = fans.and_then(|f| f.get(name)).cloned();
                    self.check_patch(name, s, fan.as_ref());
                }
                Stage::Queue(s) => {
                    if s.poll_interval_s > s.max_wait_s {
                        let span = self.value_span(&format!("{ptr}/poll_interval_s"));
                        self.err(Code::InvalidValue, format!("`poll_interval_s` ({}) of stage `{name}` is longer than its `max_wait_s` ({})", s.poll_interval_s, s.max_wait_s), span, "it would never poll", None);
                    }
                }
                Stage::AwaitMarker(s) => {
                    if s.marker_suffix.is_empty() || s.marker_suffix.contains(['/', '\\']) {
                        let span = self.value_span(&format!("{ptr}/marker_suffix"));
                        self.err(Code::InvalidValue, format!("`marker_suffix` of stage `{name}` must be a non-empty file-name suffix"), span, "e.g. \".done\"", None);
                    }
                }
                Stage::CollectFrames(s) => {
                    if let Some(p) = &s.pattern
                        && (p.contains("..") || p.starts_with('/'))
                    {
                        let span = self.value_span(&format!("{ptr}/pattern"));
                        self.err(Code::InvalidValue, format!("`pattern` of stage `{name}` must stay inside the ComfyUI output folder"), span, "no `..` and no absolute paths", None);
                    }
                }
                Stage::Quality(s) => {
                    for (check, key, set) in [
                        (
                            QualityCheck::Alignment,
                            "embedding_service",
                            s.embedding_service.is_some(),
                        ),
                        (
                            QualityCheck::Coherence,
                            "rubric_service",
                            s.rubric_service.is_some(),
                        ),
                    ] {
                        if let Some(i) = s.checks.iter().position(|c| *c == check)
                            && !set
                        {
                            let span = self.value_span(&format!("{ptr}/checks/{i}"));
                            self.err(
                                Code::MissingKey,
                                format!(
                                    "quality check `{}` of stage `{name}` needs `{key}`",
                                    serde_json::to_value(check)
                                        .ok()
                                        .and_then(|v| v.as_str().map(str::to_owned))
                                        .unwrap_or_default()
                                ),
                                span,
                                "this check needs a service",
                                Some(format!("set `{key}` to an `openai` service")),
                            );
                        }
                    }
                }
                Stage::Validate(_) => {}
            }
        }
    }

    fn check_retry(&mut self, ptr: &str, r: &RetryPolicy) {
        let span = |c: &Self, k: &str| c.value_span(&format!("{ptr}/{k}"));
        if r.jitter && r.delay_s <= 0.0 {
            let s = span(self, "jitter");
            self.err(
                Code::Retry,
                "`jitter` needs a `delay_s` greater than 0".into(),
                s,
                "there is no delay to spread",
                Some("set `delay_s`, e.g. `delay_s = 1`".into()),
            );
        }
        if r.backoff == Backoff::Exponential && r.delay_s <= 0.0 {
            let s = span(self, "backoff");
            self.err(
                Code::Retry,
                "`exponential` backoff needs a `delay_s` greater than 0".into(),
                s,
                "0 doubled stays 0",
                Some("set `delay_s`, e.g. `delay_s = 1`".into()),
            );
        }
        if let Some(max) = r.max_delay_s {
            if r.backoff == Backoff::Fixed {
                let s = span(self, "max_delay_s");
                self.err(
                    Code::Retry,
                    "`max_delay_s` only applies to `exponential` backoff".into(),
                    s,
                    "a fixed delay never grows",
                    Some("set `backoff = \"exponential\"` or remove `max_delay_s`".into()),
                );
            } else if max < r.delay_s {
                let s = span(self, "max_delay_s");
                self.err(
                    Code::Retry,
                    format!("`max_delay_s` ({max}) is below `delay_s` ({})", r.delay_s),
                    s,
                    "the cap is below the first delay",
                    None,
                );
            }
        }
        if r.budget > 0 && r.on.is_empty() {
            let s = span(self, "on");
            self.err(
                Code::Retry,
                "`on` lists no failure classes, so the retry budget can never be spent".into(),
                s,
                "empty",
                Some("list failure classes, or set `budget = 0`".into()),
            );
        }
    }

    fn check_services(&mut self) {
        let services: Vec<(String, Service)> = self
            .parsed
            .services
            .iter()
            .filter(|(n, _)| self.wants("services", n))
            .filter_map(|(n, s)| s.clone().map(|s| (n.clone(), s)))
            .collect();
        for (name, svc) in &services {
            let ptr = service_ptr(name);
            match svc {
                Service::Openai(o) => {
                    self.check_url(&format!("{ptr}/base_url"), &o.base_url);
                    if let Some(env) = &o.api_key_env {
                        let looks_like_name = !env.is_empty()
                            && env.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
                            && !env.starts_with(|c: char| c.is_ascii_digit());
                        let looks_like_key = env.starts_with("sk-")
                            || (env.len() >= 32 && env.chars().any(|c| c.is_ascii_lowercase()));
                        if !looks_like_name || looks_like_key {
                            let span = self.value_span(&format!("{ptr}/api_key_env"));
                            // No source excerpt: if this is a key, printing the line would
                            // leak it into terminals and CI logs.
                            let (line, col) = line_col(&self.source.text, span.start);
                            self.out.push(
                                SpecDiagnostic::without_source(
                                    Code::InvalidValue,
                                    format!("`api_key_env` of service `{name}` must name an environment variable, e.g. `OPENAI_API_KEY` ({}:{line}:{col})", self.source.name),
                                )
                                .help("this looks like a key itself: never write a key in a spec; put it in the environment and name the variable here")
                                .at(format!("{ptr}/api_key_env")),
                            );
                        }
                    }
                }
                Service::Comfyui(c) => {
                    let mut seen = HashSet::new();
                    for (i, u) in c.urls.iter().enumerate() {
                        let up = format!("{ptr}/urls/{i}");
                        self.check_url(&up, u);
                        if !seen.insert(u.trim_end_matches('/')) {
                            let span = self.value_span(&up);
                            self.err(
                                Code::InvalidValue,
                                format!("`{u}` is listed twice in `urls` of service `{name}`"),
                                span,
                                "listed again here",
                                None,
                            );
                        }
                    }
                }
            }
            if let Some(fb) = svc.fallback() {
                self.check_service_ref(
                    &format!("{ptr}/fallback"),
                    &format!("`fallback` of service `{name}`"),
                    fb,
                    svc.kind(),
                );
                if fb == name {
                    let span = self.value_span(&format!("{ptr}/fallback"));
                    self.err(
                        Code::InvalidValue,
                        format!("service `{name}` falls back to itself"),
                        span,
                        "a fallback must be another service",
                        None,
                    );
                }
            }
        }
        // Fallback chains must end.
        let mut reported = HashSet::new();
        for (name, _) in &services {
            let mut chain = vec![name.as_str()];
            let mut cur = name.as_str();
            while let Some(Some(svc)) = self.parsed.services.get(cur) {
                let Some(next) = svc.fallback() else { break };
                if next == cur {
                    break;
                }
                if let Some(pos) = chain.iter().position(|c| *c == next) {
                    let cycle: Vec<&str> = chain[pos..].to_vec();
                    let mut key: Vec<&str> = cycle.clone();
                    key.sort_unstable();
                    if reported.insert(key.join(",")) {
                        let mut spelled: Vec<String> =
                            cycle.iter().map(|c| format!("`{c}`")).collect();
                        spelled.push(format!("`{next}`"));
                        let span = self.value_span(&format!("{}/fallback", service_ptr(cur)));
                        self.err(
                            Code::Cycle,
                            format!("`fallback` forms a cycle: {}", spelled.join(" → ")),
                            span,
                            "this closes the cycle",
                            Some(
                                "the last service of a fallback chain must have no `fallback`"
                                    .into(),
                            ),
                        );
                    }
                    break;
                }
                chain.push(next);
                cur = next;
            }
        }
    }

    fn check_url(&mut self, ptr: &str, url: &str) {
        let rest = url
            .strip_prefix("http://")
            .or_else(|| url.strip_prefix("https://"));
        if rest
            .is_none_or(|r| r.is_empty() || r.starts_with('/') || r.contains(char::is_whitespace))
        {
            let span = self.value_span(ptr);
            self.err(
                Code::InvalidValue,
                format!("`{url}` is not an http:// or https:// URL"),
                span,
                "not a URL",
                Some("e.g. \"http://127.0.0.1:8188\"".into()),
            );
        }
    }

    /// Names of the services of a kind (and of those too broken to tell), for hints.
    fn services_of(&self, want: ServiceKind) -> Vec<&'a str> {
        let parsed: &'a Parsed = self.parsed;
        parsed
            .services
            .iter()
            .filter(|(_, s)| s.as_ref().is_none_or(|s| s.kind() == want))
            .map(|(n, _)| n.as_str())
            .collect()
    }

    fn check_service_ref(&mut self, ptr: &str, what: &str, name: &str, want: ServiceKind) {
        let span = self.value_span(ptr);
        match self.parsed.services.get(name) {
            None => {
                let names = self.services_of(want);
                let help = if names.is_empty() {
                    Some(format!(
                        "add a `[services.{name}]` table with `kind = \"{}\"`",
                        want.as_str()
                    ))
                } else {
                    hint(name, &format!("`{}` services", want.as_str()), &names)
                };
                self.err(
                    Code::UnknownService,
                    format!("{what} names unknown service `{name}`"),
                    span,
                    "no service has this name",
                    help,
                );
            }
            Some(Some(svc)) if svc.kind() != want => {
                let others = self.services_of(want);
                let help = if others.is_empty() {
                    None
                } else {
                    Some(format!(
                        "`{}` services: {}",
                        want.as_str(),
                        others.join(", ")
                    ))
                };
                self.err(
                    Code::ServiceKind,
                    format!(
                        "{what} must be {} `{}` service, but `{name}` is `{}`",
                        article(want.as_str()),
                        want.as_str(),
                        svc.kind().as_str()
                    ),
                    span,
                    "wrong kind of service",
                    help,
                );
            }
            _ => {}
        }
    }

    /// Checks that a file exists and reports it at `ptr` if not.
    /// Reports a file the spec names that cannot be used, at the value that names it.
    fn file_problem(&mut self, ptr: &str, rel: &str, e: FileError, unusable_help: Option<String>) {
        let span = self.value_span(ptr);
        let path = tidy(&self.base_dir.join(rel));
        let (label, help) = if e.code == Code::MissingFile {
            let help = similar_file(&path).map_or_else(
                || format!("relative paths are resolved against `{}` (the spec's folder joined with `run.base_dir`)", tidy(&self.base_dir).display()),
                |f| format!("did you mean `{f}`?"),
            );
            ("file not found", Some(help))
        } else {
            let label = if e.code == Code::Workflow {
                "not an API-format workflow"
            } else {
                "this file is not usable"
            };
            (label, unusable_help)
        };
        self.err(
            e.code,
            format!("file `{}` {}", path.display(), e.why),
            span,
            label,
            help,
        );
    }

    fn check_llm(&mut self, name: &str, s: &LlmStage) {
        let ptr = stage_ptr(name);
        let mut needed: Vec<String> = Vec::new();
        let mut all_read = true;
        for (key, rel) in [
            ("prompt", Some(&s.prompt)),
            ("system_prompt", s.system_prompt.as_ref()),
        ] {
            let Some(rel) = rel else { continue };
            let path = self.base_dir.join(rel);
            match self.files.template(&path) {
                Ok(vars) => {
                    for v in vars {
                        let root = v.split('.').next().unwrap_or_default().to_owned();
                        if root != "run" && !needed.contains(&root) {
                            needed.push(root);
                        }
                    }
                }
                Err(e) => {
                    all_read = false;
                    self.file_problem(&format!("{ptr}/{key}"), rel, e, None);
                }
            }
        }
        if all_read {
            let missing: Vec<&String> =
                needed.iter().filter(|v| !s.vars.contains_key(*v)).collect();
            if !missing.is_empty() {
                let list: Vec<String> = missing.iter().map(|m| format!("`{m}`")).collect();
                let span = if self.index.get(&format!("{ptr}/vars")).is_some() {
                    self.value_span(&format!("{ptr}/vars"))
                } else {
                    self.entry_span(&ptr)
                };
                self.err(
                    Code::Template,
                    format!(
                        "stage `{name}` does not set {} that its prompt uses",
                        list.join(", ")
                    ),
                    span,
                    "missing in `vars`",
                    Some(format!(
                        "add them to `vars`, e.g. `vars = {{ {} = ... }}`",
                        missing[0]
                    )),
                );
            }
            for key in s.vars.keys() {
                if !needed.contains(key) {
                    let span = self.entry_span(&format!("{ptr}/vars/{}", escape_segment(key)));
                    let used: Vec<&str> = needed.iter().map(String::as_str).collect();
                    self.err(
                        Code::Template,
                        format!("`vars.{key}` of stage `{name}` is not used by its prompt"),
                        span,
                        "the prompt has no such variable",
                        hint(key, "variables the prompt uses", &used),
                    );
                }
            }
        }
        if let Some(rel) = &s.output_schema {
            let path = self.base_dir.join(rel);
            if let Err(e) = self.files.schema(&path) {
                self.file_problem(&format!("{ptr}/output_schema"), rel, e, None);
            }
        }
        if s.min_completion_tokens > s.max_completion_tokens {
            let span = self.value_span(&format!("{ptr}/min_completion_tokens"));
            self.err(Code::InvalidValue, format!("`min_completion_tokens` ({}) of stage `{name}` is above `max_completion_tokens` ({})", s.min_completion_tokens, s.max_completion_tokens), span, "empty range", None);
        }
        if s.max_tokens < s.min_completion_tokens {
            let span = self.value_span(&format!("{ptr}/max_tokens"));
            self.err(
                Code::InvalidValue,
                format!(
                    "`max_tokens` ({}) of stage `{name}` is below `min_completion_tokens` ({})",
                    s.max_tokens, s.min_completion_tokens
                ),
                span,
                "every answer would be too short",
                None,
            );
        }
    }

    fn check_patch(&mut self, name: &str, s: &PatchWorkflowStage, fan: Option<&Fan>) {
        let ptr = stage_ptr(name);
        let path = self.base_dir.join(&s.workflow);
        match self.files.workflow(&path) {
            Ok(wf) => {
                for key in s.set.keys() {
                    if let Err(e) = wf.resolve(key) {
                        let span = self.entry_span(&format!("{ptr}/set/{}", escape_segment(key)));
                        let help = match &e {
                            crate::workflow::TargetError::NoInput { id, .. } => {
                                let inputs = wf.settable_inputs(id);
                                let input = key.rsplit_once('.').map_or("", |(_, i)| i);
                                hint(input, "inputs it has", &inputs)
                            }
                            crate::workflow::TargetError::NoNode(n) => {
                                let mut cands: Vec<&str> = wf
                                    .nodes
                                    .values()
                                    .filter_map(|n| n.title.as_deref())
                                    .collect();
                                cands.extend(wf.nodes.values().map(|n| n.class_type.as_str()));
                                suggest(n, cands.iter().copied())
                                    .map(|c| format!("did you mean `{c}`?"))
                            }
                            crate::workflow::TargetError::Ambiguous { .. } => Some(
                                "address the node by its id, or give it a unique `_meta.title`"
                                    .into(),
                            ),
                            _ => None,
                        };
                        self.err(
                            Code::PatchTarget,
                            format!("patch target `{key}` of stage `{name}`: {e}"),
                            span,
                            "not a settable input of the workflow",
                            help,
                        );
                    }
                }
            }
            Err(e) => {
                let help = "export the workflow with \"Save (API Format)\" (enable dev mode options in ComfyUI's settings)";
                self.file_problem(
                    &format!("{ptr}/workflow"),
                    &s.workflow,
                    e,
                    Some(help.to_owned()),
                );
            }
        }
        // Template variables in `set`.
        // `scene` exists when the stage runs per item. When the graph is broken the fan-out is
        // unknown: then any `for_each` at or above the stage makes `scene` available, unchecked.
        let scene: Option<Option<Vec<String>>> = match fan {
            Some(Fan::PerItem { source, .. }) => Some(self.item_fields(&source.clone())),
            Some(_) => None,
            None if self.raw_fanned(name) => Some(None),
            None => None,
        };
        let mut roots: Vec<&str> = vec!["run", "story", "seed", "attempt", "prefix", "vars"];
        if scene.is_some() {
            roots.push("scene");
        }
        for (key, value) in &s.set {
            let Value::String(text) = value else { continue };
            let vptr = format!("{ptr}/set/{}", escape_segment(key));
            let vars = match templates::variables(text) {
                Ok(v) => v,
                Err(e) => {
                    let mut span = self.value_span(&vptr);
                    // Point into the string when it is written plainly (no escapes), so that
                    // the offset in the template is the offset in the file.
                    let raw = self.source.text.get(span.clone()).unwrap_or_default();
                    if let Some(off) = e.offset(text)
                        && raw.len() == text.len() + 2
                        && !raw.contains('\\')
                    {
                        let at = span.start + 1 + off;
                        span = at..(at + 2).min(span.end - 1);
                    }
                    self.err(
                        Code::Template,
                        format!(
                            "template in `set.\"{key}\"` of stage `{name}` does not compile: {}",
                            e.0
                        ),
                        span,
                        "here",
                        None,
                    );
                    continue;
                }
            };
            for v in vars {
                let mut parts = v.splitn(2, '.');
                let root = parts.next().unwrap_or_default();
                let rest = parts.next();
                let span = self.value_span(&vptr);
                let problem: Option<(String, Option<String>)> = match root {
                    "scene" if scene.is_none() => Some((
                        format!(
                            "`{{{{{v}}}}}` in stage `{name}`: `scene` exists only in a stage that runs once per item"
                        ),
                        Some(
                            "set `for_each = \"STAGE.scenes\"` on this stage or one it needs"
                                .into(),
                        ),
                    )),
                    "scene" if scene.as_ref().is_some_and(Option::is_none) => None,
                    "scene" => {
                        let fields = scene.clone().flatten().unwrap_or_default();
                        let field = rest
                            .unwrap_or_default()
                            .split('.')
                            .next()
                            .unwrap_or_default();
                        if rest.is_some() && !fields.iter().any(|f| f == field) {
                            let f: Vec<&str> = fields.iter().map(String::as_str).collect();
                            Some((
                                format!(
                                    "`{{{{{v}}}}}` in stage `{name}`: a scene has no field `{field}`"
                                ),
                                hint(field, "scene fields", &f),
                            ))
                        } else {
                            None
                        }
                    }
                    "run" => {
                        let field = rest
                            .unwrap_or_default()
                            .split('.')
                            .next()
                            .unwrap_or_default();
                        let fields = ["id", "name", "profile", "seed", "dir"];
                        (rest.is_some() && !fields.contains(&field)).then(|| {
                            (
                                format!(
                                    "`{{{{{v}}}}}` in stage `{name}`: `run` has no field `{field}`"
                                ),
                                hint(field, "run fields", &fields),
                            )
                        })
                    }
                    "vars" => {
                        let field = rest
                            .unwrap_or_default()
                            .split('.')
                            .next()
                            .unwrap_or_default();
                        let names: Vec<&str> = s.vars.keys().map(String::as_str).collect();
                        (rest.is_some() && !s.vars.contains_key(field)).then(|| {
                            (
                                format!(
                                    "`{{{{{v}}}}}` in stage `{name}`: `vars.{field}` is not set"
                                ),
                                hint(field, "vars", &names).or_else(|| {
                                    Some(format!("add `vars = {{ {field} = ... }}` to the stage"))
                                }),
                            )
                        })
                    }
                    r if roots.contains(&r) => None,
                    r => Some((
                        format!("`{{{{{v}}}}}` in stage `{name}`: unknown template variable `{r}`"),
                        hint(r, "variables", &roots),
                    )),
                };
                if let Some((msg, help)) = problem {
                    self.err(Code::Template, msg, span, "cannot be resolved", help);
                }
            }
        }
    }
}

/// A cycle through `members`, starting and ending at `start`, following `needs` edges.
fn cycle_path(
    graph: &DiGraph<&str, usize>,
    start: NodeIndex,
    members: &HashSet<NodeIndex>,
) -> Vec<NodeIndex> {
    let mut stack = vec![(start, vec![start])];
    let mut seen = HashSet::new();
    while let Some((n, path)) = stack.pop() {
        let mut next: Vec<NodeIndex> = graph.neighbors(n).filter(|m| members.contains(m)).collect();
        next.sort_by_key(|m| std::cmp::Reverse(m.index()));
        for m in next {
            if m == start {
                let mut p = path.clone();
                p.push(start);
                return p;
            }
            if seen.insert(m) {
                let mut p = path.clone();
                p.push(m);
                stack.push((m, p));
            }
        }
    }
    vec![start, start]
}

/// The spec file's folder joined with `run.base_dir`.
pub fn base_dir(source: &SpecSource, base: Option<&str>) -> PathBuf {
    let spec_dir = source
        .path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let spec_dir = if spec_dir.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        spec_dir
    };
    match base {
        Some(b) if b != "." => spec_dir.join(b),
        _ => spec_dir,
    }
}

/// A path with `.` and `name/..` taken out, as a person would write it (nothing is resolved
/// on disk; symlinks do not matter for a message).
pub fn tidy(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out: Vec<Component<'_>> = Vec::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir if matches!(out.last(), Some(Component::Normal(_))) => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    if out.is_empty() {
        PathBuf::from(".")
    } else {
        out.iter().collect()
    }
}

/// A file next to `path` whose name is close to its name, for "did you mean".
fn similar_file(path: &Path) -> Option<String> {
    let name = path.file_name()?.to_str()?;
    let dir = path.parent()?;
    let entries: Vec<String> = std::fs::read_dir(if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    })
    .ok()?
    .filter_map(|e| e.ok()?.file_name().into_string().ok())
    .collect();
    let best = suggest(name, entries.iter().map(String::as_str))?;
    Some(dir.join(best).display().to_string())
}

/// 1-based line and column of a byte offset.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, col)
}
