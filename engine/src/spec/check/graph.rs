//! The shape of the pipeline: stage and service names, `needs` (unknown, repeated, cyclic),
//! each stage's fan-out (`for_each`), and `on_short` requeues. What it finds sound becomes the
//! spec's [`StageGraph`].

use std::collections::HashSet;
use std::ops::Range;

use fixedbitset::FixedBitSet;

use super::super::diagnostic::{Code, SpecDiagnostic, article, hint};
use super::super::graph::{Cycle, Fan, StageGraph};
use super::super::model::{OnShort, Stage, StageKind};
use super::{Checker, service_ptr, stage_ptr, valid_name};

impl<'a> Checker<'a> {
    /// The rules about the shape of the pipeline. Returns the stage graph, each stage's fan-out
    /// decided, when it is sound (no unknown needs, no cycles, no bad `for_each`).
    pub fn check_graph(&mut self) -> Option<StageGraph> {
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
        let mut sound = true;
        let mut needs_errs = Vec::new();
        let mut edges: Vec<Vec<usize>> = vec![Vec::new(); names.len()];
        for (index, (name, stage)) in self.parsed.stages.iter().enumerate() {
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
                } else if let Some(to) = self.parsed.stages.get_index_of(need.as_str()) {
                    edges[index].push(to);
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
        let owned = names.iter().map(|n| (*n).to_owned()).collect();
        let graph = match StageGraph::new(owned, edges) {
            Ok(graph) => graph,
            Err(cycles) => {
                for cycle in cycles {
                    self.report_cycle(&names, &cycle);
                }
                return None;
            }
        };
        if !sound {
            return None;
        }
        self.fan_out(graph)
    }

    /// Reports a cycle of `needs`, with a label at each `needs` entry that closes it.
    pub(super) fn report_cycle(&mut self, names: &[&str], cycle: &Cycle) {
        let spelled: Vec<String> = cycle.0.iter().map(|n| format!("`{}`", names[*n])).collect();
        let mut d = SpecDiagnostic::new(self.source, Code::Cycle, format!("`needs` form a cycle: {}", spelled.join(" → ")))
            .help("each stage in the cycle waits for the next one, so none can ever start; remove one of these `needs`");
        for pair in cycle.0.windows(2) {
            let (stage, need) = (names[pair[0]], names[pair[1]]);
            let position = self
                .parsed
                .stages
                .get_index(pair[0])
                .and_then(|(_, s)| s.as_ref())
                .and_then(|s| s.common().needs.iter().position(|n| n == need));
            if let Some(i) = position {
                let ptr = format!("{}/needs/{i}", stage_ptr(stage));
                d = d.label(self.value_span(&ptr), format!("`{stage}` needs `{need}`"));
            }
        }
        d.labels.sort_by_key(|(r, _)| r.start);
        self.out.push(d);
    }

    /// Decides each stage's fan-out, checking `for_each` and `on_short` along the way.
    pub(super) fn fan_out(&mut self, mut graph: StageGraph) -> Option<StageGraph> {
        let mut fans: Vec<Option<Fan>> = vec![None; graph.len()];
        let mut ok = true;
        for &index in graph.order() {
            let Some((name, Some(stage))) = self.parsed.stages.get_index(index) else {
                continue;
            };
            let name = name.as_str();
            let common = stage.common();
            let anc = graph.ancestors(index);
            // What the needs are fanned out over.
            let mut upstream: Vec<(String, String, &str)> = Vec::new();
            for &need in graph.needs(index) {
                if let Some(Fan::PerItem { source, origin }) = &fans[need]
                    && !upstream.iter().any(|(s, _, _)| s == source)
                {
                    upstream.push((source.clone(), origin.clone(), graph.name(need)));
                }
            }
            let ptr = stage_ptr(name);
            let fan = if let Some(fe) = common.for_each {
                let fspan = self.value_span(&format!("{ptr}/for_each"));
                if let Some((src, _, via)) = upstream.first() {
                    self.err(Code::ForEach, format!("stage `{name}` already runs once per item of `{src}` (through `{via}`); a second `for_each` is not supported"), fspan, "nested fan-out", Some("remove `for_each` here: stages that need a fanned-out stage follow it item by item".into()));
                    ok = false;
                    Fan::Once
                } else if self.check_for_each(name, fe, anc, fspan) {
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
            fans[index] = Some(fan);
        }
        let fans: Option<Vec<Fan>> = fans.into_iter().collect();
        let fans = fans?;
        graph.fan_out(fans);
        ok.then_some(graph)
    }

    pub(super) fn check_for_each(
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
}
