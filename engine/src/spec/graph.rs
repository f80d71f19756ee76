//! The stage graph: which stage needs which, the order they can run in, what each one fans out
//! over, and what a requeue sends back. Computed once, while the spec is checked; the checker,
//! the plan and the scheduler all read this one graph.
//!
//! Stages are numbered in the spec's order, and a stage's number is its node index.

use std::collections::BTreeSet;

use fixedbitset::FixedBitSet;
use indexmap::IndexMap;
use petgraph::Direction;
use petgraph::algo::tarjan_scc;
use petgraph::graph::{DiGraph, NodeIndex};

use super::model::{OnShort, Stage};

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

/// A stage's fan-out with its list by number (an index into [`StageGraph::lists`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FanMode {
    Once,
    PerItem(usize),
    Gather(usize),
}

/// A list that stages fan out over: the `FIELD` of stage `STAGE`'s output, as a `for_each`
/// names it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FanList {
    /// `STAGE.FIELD`, as written.
    pub label: String,
    /// The stage whose output holds the list.
    pub source: usize,
    pub field: String,
    /// The stages that run once per item of it, in spec order.
    pub members: Vec<usize>,
}

/// What `on_short = { requeue = TARGET }` sends back for an item: the target and every stage
/// from it to the requesting one (both included, in run order), which all run again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequeueSpan {
    pub target: usize,
    pub stages: Vec<usize>,
}

/// A cycle in `needs`: stages each needing the next, the last one being the first again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cycle(pub Vec<usize>);

/// The stages of a sound spec (every need known, no cycle) as a DAG, with what follows from it.
#[derive(Debug, Clone)]
pub struct StageGraph {
    /// Edges run from a stage to the stages that need it, in the order the spec lists them.
    dag: DiGraph<String, ()>,
    /// Each stage's needs, in the order its `needs` lists them.
    needs: Vec<Vec<usize>>,
    /// The stages that need each stage, in spec order.
    dependents: Vec<Vec<usize>>,
    /// Stages in an order they can run: every stage after all it needs; ties in spec order.
    order: Vec<usize>,
    /// Each stage's wave: 0 for stages that need nothing, else one more than its latest need.
    waves: Vec<usize>,
    /// Everything upstream of each stage, as a bitset over stage numbers: a 1,000-stage spec
    /// holds a million membership facts, which sets of names made slow.
    ancestors: Vec<FixedBitSet>,
    /// Each stage's fan-out by name, in spec order (all `Once` until [`StageGraph::fan_out`]).
    fans: IndexMap<String, Fan>,
    modes: Vec<FanMode>,
    lists: Vec<FanList>,
    /// The lists each stage is the source of.
    sources: Vec<Vec<usize>>,
    requeues: Vec<Option<RequeueSpan>>,
}

impl StageGraph {
    /// Builds the DAG of `names` (in spec order), where `needs[i]` are the stages stage `i`
    /// needs (known stages only, each once, never itself). Fails with every cycle.
    pub fn new(names: Vec<String>, needs: Vec<Vec<usize>>) -> Result<StageGraph, Vec<Cycle>> {
        let count = names.len();
        let mut dag: DiGraph<String, ()> = DiGraph::with_capacity(count, 0);
        let mut fans = IndexMap::with_capacity(count);
        for name in names {
            fans.insert(name.clone(), Fan::Once);
            dag.add_node(name);
        }
        let mut dependents = vec![Vec::new(); count];
        for (stage, stage_needs) in needs.iter().enumerate() {
            for &need in stage_needs {
                dag.add_edge(NodeIndex::new(need), NodeIndex::new(stage), ());
                dependents[need].push(stage);
            }
        }
        let cycles = cycles(&dag);
        if !cycles.is_empty() {
            return Err(cycles);
        }
        let (order, waves) = run_order(&dag);
        let mut ancestors = vec![FixedBitSet::with_capacity(count); count];
        for &stage in &order {
            let mut upstream = FixedBitSet::with_capacity(count);
            for &need in &needs[stage] {
                upstream.insert(need);
                upstream.union_with(&ancestors[need]);
            }
            ancestors[stage] = upstream;
        }
        Ok(StageGraph {
            dag,
            needs,
            dependents,
            order,
            waves,
            ancestors,
            fans,
            modes: vec![FanMode::Once; count],
            lists: Vec::new(),
            sources: vec![Vec::new(); count],
            requeues: vec![None; count],
        })
    }

    /// Records each stage's fan-out (as the checker decided it, in spec order) and the lists
    /// they fan out over.
    pub fn fan_out(&mut self, fans: Vec<Fan>) {
        self.lists.clear();
        for (stage, fan) in fans.into_iter().enumerate().take(self.fans.len()) {
            self.modes[stage] = match &fan {
                Fan::Once => FanMode::Once,
                Fan::PerItem { source, .. } => FanMode::PerItem(self.list(source)),
                Fan::Gather { source } => FanMode::Gather(self.list(source)),
            };
            if let FanMode::PerItem(list) = self.modes[stage] {
                self.lists[list].members.push(stage);
            }
            if let Some((_, slot)) = self.fans.get_index_mut(stage) {
                *slot = fan;
            }
        }
        self.sources = vec![Vec::new(); self.fans.len()];
        for (i, list) in self.lists.iter().enumerate() {
            self.sources[list.source].push(i);
        }
    }

    /// The number of the list `label` (`STAGE.FIELD`), added when it is new.
    fn list(&mut self, label: &str) -> usize {
        if let Some(i) = self.lists.iter().position(|l| l.label == label) {
            return i;
        }
        let (stage, field) = label.split_once('.').unwrap_or((label, ""));
        self.lists.push(FanList {
            label: label.to_owned(),
            source: self.fans.get_index_of(stage).unwrap_or(0),
            field: field.to_owned(),
            members: Vec::new(),
        });
        self.lists.len() - 1
    }

    /// Records the requeue spans of the final spec's `on_short` settings (a profile may change
    /// them). A requeue works within one item only: the target must run once per item of the
    /// same list as the stage that asks for it; any other is left out.
    pub fn requeue_spans(&mut self, stages: &IndexMap<String, Stage>) {
        for (stage, spec) in stages.values().enumerate().take(self.requeues.len()) {
            let Stage::CollectFrames(collect) = spec else {
                continue;
            };
            let OnShort::Requeue(target) = &collect.on_short else {
                continue;
            };
            let Some(target) = self.fans.get_index_of(target.as_str()) else {
                continue;
            };
            let same_list = matches!(
                (self.modes[target], self.modes[stage]),
                (FanMode::PerItem(a), FanMode::PerItem(b)) if a == b
            );
            if !same_list {
                continue;
            }
            let span = self
                .order
                .iter()
                .copied()
                .filter(|&x| {
                    x == target
                        || x == stage
                        || (self.ancestors[stage].contains(x) && self.ancestors[x].contains(target))
                })
                .collect();
            self.requeues[stage] = Some(RequeueSpan {
                target,
                stages: span,
            });
        }
    }

    /// The number of stages.
    pub fn len(&self) -> usize {
        self.needs.len()
    }

    pub fn is_empty(&self) -> bool {
        self.needs.is_empty()
    }

    pub fn name(&self, stage: usize) -> &str {
        self.fans.get_index(stage).map_or("", |(n, _)| n.as_str())
    }

    /// A stage's number, by name.
    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.fans.get_index_of(name)
    }

    pub fn needs(&self, stage: usize) -> &[usize] {
        &self.needs[stage]
    }

    pub fn dependents(&self, stage: usize) -> &[usize] {
        &self.dependents[stage]
    }

    /// Every stage, in an order it can run in (see the field).
    pub fn order(&self) -> &[usize] {
        &self.order
    }

    pub fn wave(&self, stage: usize) -> usize {
        self.waves[stage]
    }

    /// Whether `upstream` is among the stages `stage` needs, directly or not.
    pub fn is_upstream(&self, upstream: usize, stage: usize) -> bool {
        self.ancestors[stage].contains(upstream)
    }

    pub(crate) fn ancestors(&self, stage: usize) -> &FixedBitSet {
        &self.ancestors[stage]
    }

    /// Each stage's fan-out by name, in spec order.
    pub fn fans(&self) -> &IndexMap<String, Fan> {
        &self.fans
    }

    pub fn fan(&self, stage: usize) -> &Fan {
        self.fans.get_index(stage).map_or(&Fan::Once, |(_, f)| f)
    }

    pub fn mode(&self, stage: usize) -> FanMode {
        self.modes[stage]
    }

    pub fn lists(&self) -> &[FanList] {
        &self.lists
    }

    /// The lists `stage` is the source of.
    pub fn sources(&self, stage: usize) -> &[usize] {
        &self.sources[stage]
    }

    pub fn requeue(&self, stage: usize) -> Option<&RequeueSpan> {
        self.requeues[stage].as_ref()
    }

    /// Every edge as (need, the stage that needs it), in the order the spec lists them.
    pub fn edges(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        self.dag
            .raw_edges()
            .iter()
            .map(|e| (e.source().index(), e.target().index()))
    }
}

/// Every cycle: one per strongly connected component of more than one stage, each starting at
/// its lowest-numbered stage and following `needs`.
fn cycles(dag: &DiGraph<String, ()>) -> Vec<Cycle> {
    let mut found = Vec::new();
    for component in tarjan_scc(dag) {
        if component.len() < 2 {
            continue;
        }
        let members: BTreeSet<NodeIndex> = component.iter().copied().collect();
        let start = members.first().copied().unwrap_or(component[0]);
        found.push(Cycle(
            cycle_path(dag, start, &members)
                .into_iter()
                .map(NodeIndex::index)
                .collect(),
        ));
    }
    found
}

/// A cycle through `members`, starting and ending at `start`, following `needs`.
fn cycle_path(
    dag: &DiGraph<String, ()>,
    start: NodeIndex,
    members: &BTreeSet<NodeIndex>,
) -> Vec<NodeIndex> {
    let mut stack = vec![(start, vec![start])];
    let mut seen = BTreeSet::new();
    while let Some((n, path)) = stack.pop() {
        // A stage's needs are the sources of its incoming edges.
        let mut next: Vec<NodeIndex> = dag
            .neighbors_directed(n, Direction::Incoming)
            .filter(|m| members.contains(m))
            .collect();
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

/// Kahn's algorithm, always taking the ready stage that comes first in the spec; with each
/// stage's wave.
fn run_order(dag: &DiGraph<String, ()>) -> (Vec<usize>, Vec<usize>) {
    let count = dag.node_count();
    let mut indegree: Vec<usize> = dag
        .node_indices()
        .map(|n| dag.neighbors_directed(n, Direction::Incoming).count())
        .collect();
    let mut ready: BTreeSet<usize> = indegree
        .iter()
        .enumerate()
        .filter(|(_, d)| **d == 0)
        .map(|(i, _)| i)
        .collect();
    let mut order = Vec::with_capacity(count);
    let mut waves = vec![0usize; count];
    while let Some(i) = ready.pop_first() {
        order.push(i);
        for m in dag.neighbors_directed(NodeIndex::new(i), Direction::Outgoing) {
            let j = m.index();
            waves[j] = waves[j].max(waves[i] + 1);
            indegree[j] -= 1;
            if indegree[j] == 0 {
                ready.insert(j);
            }
        }
    }
    (order, waves)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(needs: &[&[usize]]) -> Result<StageGraph, Vec<Cycle>> {
        let names = (0..needs.len()).map(|i| format!("s{i}")).collect();
        StageGraph::new(names, needs.iter().map(|n| n.to_vec()).collect())
    }

    #[test]
    fn order_waves_dependents_and_ancestors() {
        // s0 ← s2 ← s1, s3 needs s0 and s1.
        let g = graph(&[&[], &[2], &[0], &[0, 1]]).expect("acyclic");
        assert_eq!(g.order(), &[0, 2, 1, 3]);
        assert_eq!((0..4).map(|s| g.wave(s)).collect::<Vec<_>>(), [0, 2, 1, 3]);
        assert_eq!(g.dependents(0), &[2, 3]);
        assert_eq!(g.needs(3), &[0, 1]);
        assert!(g.is_upstream(0, 1) && g.is_upstream(2, 3) && !g.is_upstream(3, 0));
        assert_eq!(
            g.edges().collect::<Vec<_>>(),
            [(2, 1), (0, 2), (0, 3), (1, 3)]
        );
    }

    #[test]
    fn every_cycle_is_reported_from_its_first_stage() {
        let Err(cycles) = graph(&[&[1], &[2], &[0], &[4], &[3], &[]]) else {
            panic!("cyclic graph accepted");
        };
        let mut cycles: Vec<Vec<usize>> = cycles.into_iter().map(|c| c.0).collect();
        cycles.sort();
        assert_eq!(cycles, [vec![0, 1, 2, 0], vec![3, 4, 3]]);
    }

    #[test]
    fn fan_out_numbers_lists_in_spec_order() {
        let mut g = graph(&[&[], &[0], &[1], &[0]]).expect("acyclic");
        let per_item = || Fan::PerItem {
            source: "s0.scenes".into(),
            origin: "s1".into(),
        };
        g.fan_out(vec![
            Fan::Once,
            per_item(),
            Fan::Gather {
                source: "s0.scenes".into(),
            },
            Fan::PerItem {
                source: "s0.shots".into(),
                origin: "s3".into(),
            },
        ]);
        assert_eq!(g.mode(1), FanMode::PerItem(0));
        assert_eq!(g.mode(2), FanMode::Gather(0));
        assert_eq!(g.mode(3), FanMode::PerItem(1));
        assert_eq!(g.lists()[0].members, [1]);
        assert_eq!(g.lists()[1].field, "shots");
        assert_eq!(g.sources(0), &[0, 1]);
        assert_eq!(g.fan(1), &per_item());
    }
}
