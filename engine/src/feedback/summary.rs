//! `cinepipe feedback --summary`: the ratings of every run under a folder, grouped by genre (the
//! story prompt's file name: `sci-fi` for `prompts/story/v1/sci-fi.hbs`), prompt template
//! version (from the story attempt's record) and model (from the metadata's `LLM`).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::artifact_metadata::{ArtifactMetadata, METADATA_FILE};
use crate::rundir::RESOLVED_SPEC;
use crate::rundir::event::InstanceId;
use crate::rundir::history::{RunHistory, run_dirs};
use crate::spec::model::{SpecFile, Stage};
use crate::stages::output::LlmRecord;

/// The ratings of one (genre, template version, model).
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryRow {
    pub genre: String,
    pub template_version: String,
    pub model: String,
    pub runs: usize,
    /// How many ratings gave 1, 2, 3, 4 and 5 stars.
    pub stars: [usize; 5],
}

impl SummaryRow {
    pub fn ratings(&self) -> usize {
        self.stars.iter().sum()
    }

    pub fn mean(&self) -> f64 {
        let total: usize = self
            .stars
            .iter()
            .enumerate()
            .map(|(i, n)| (i + 1) * n)
            .sum();
        total as f64 / self.ratings().max(1) as f64
    }
}

const UNKNOWN: &str = "-";

/// Genre and template version of a run: the `llm` stage the scenes fanned out from (else the
/// first `llm` stage), its prompt's file stem, and its last attempt's template version.
fn story_facts(dir: &Path, h: &RunHistory) -> (String, String) {
    let spec: Option<SpecFile> = std::fs::read_to_string(dir.join(RESOLVED_SPEC))
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let fanned = h
        .lists
        .first()
        .and_then(|(l, _)| l.split('.').next())
        .map(str::to_owned);
    let Some(spec) = spec else {
        return (UNKNOWN.to_owned(), UNKNOWN.to_owned());
    };
    let llm = spec.stages.iter().find_map(|(name, stage)| match stage {
        Stage::Llm(s) if fanned.as_deref().is_none_or(|f| f == name) => Some((name, s)),
        _ => None,
    });
    let Some((name, stage)) = llm else {
        return (UNKNOWN.to_owned(), UNKNOWN.to_owned());
    };
    let genre = Path::new(&stage.prompt)
        .file_stem()
        .map_or_else(|| UNKNOWN.to_owned(), |s| s.to_string_lossy().into_owned());
    let version = h
        .get(&InstanceId::new(name.clone(), None))
        .and_then(|i| i.attempts.last())
        .and_then(|a| {
            let rel = crate::rundir::RunDir::instance_dir(&InstanceId::new(name.clone(), None))
                .join(format!("attempt-{}.json", a.attempt));
            std::fs::read_to_string(dir.join(rel)).ok()
        })
        .and_then(|t| serde_json::from_str::<LlmRecord>(&t).ok())
        .and_then(|r| r.body.template_version)
        .unwrap_or_else(|| UNKNOWN.to_owned());
    (genre, version)
}

/// The ratings of every run folder under `runs_dir`, grouped; runs without ratings are left
/// out. Sorted by genre, template version and model.
pub fn summarise(runs_dir: &Path) -> std::io::Result<Vec<SummaryRow>> {
    let mut groups: BTreeMap<(String, String, String), SummaryRow> = BTreeMap::new();
    for dir in run_dirs(runs_dir)? {
        let Some(meta) = std::fs::read_to_string(dir.join(METADATA_FILE))
            .ok()
            .and_then(|t| serde_json::from_str::<ArtifactMetadata>(&t).ok())
        else {
            continue;
        };
        if meta.feedback.is_empty() {
            continue;
        }
        let Ok(h) = RunHistory::read(&dir) else {
            continue;
        };
        let (genre, template_version) = story_facts(&dir, &h);
        let model = meta
            .llm
            .iter()
            .find_map(|l| l.model.clone())
            .unwrap_or_else(|| UNKNOWN.to_owned());
        let row = groups
            .entry((genre.clone(), template_version.clone(), model.clone()))
            .or_insert(SummaryRow {
                genre,
                template_version,
                model,
                runs: 0,
                stars: [0; 5],
            });
        row.runs += 1;
        for f in &meta.feedback {
            if let Some(slot) = row.stars.get_mut(usize::from(f.rating).wrapping_sub(1)) {
                *slot += 1;
            }
        }
    }
    Ok(groups.into_values().collect())
}

/// The summary as an aligned table.
pub fn summary_table(rows: &[SummaryRow]) -> String {
    let mut cells: Vec<[String; 6]> = vec![[
        "GENRE".into(),
        "TEMPLATE".into(),
        "MODEL".into(),
        "RUNS".into(),
        "RATINGS".into(),
        "MEAN  1/2/3/4/5 STARS".into(),
    ]];
    for r in rows {
        cells.push([
            r.genre.clone(),
            r.template_version.clone(),
            r.model.clone(),
            r.runs.to_string(),
            r.ratings().to_string(),
            format!(
                "{:.2}  {}",
                r.mean(),
                r.stars.map(|n| n.to_string()).join("/")
            ),
        ]);
    }
    let widths: Vec<usize> = (0..6)
        .map(|c| {
            cells
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut s = String::new();
    for row in &cells {
        let mut line = String::new();
        for (c, cell) in row.iter().enumerate() {
            let _ = write!(line, "{cell:<w$}  ", w = widths[c]);
        }
        s.push_str(line.trim_end());
        s.push('\n');
    }
    s
}
