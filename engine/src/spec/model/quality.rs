//! The `quality` stage's checks: their names, the `checks` entries (a name, or promptfoo's
//! assertion shape with a threshold, a weight and a metric name) and the thresholds table.

use std::borrow::Cow;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::stage::default_min_frames;

/// A quality check, by the name written in `checks` (alone or as a table's `check`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum QualityCheck {
    /// Frame count against the floor.
    FrameCount,
    /// Frame width and height.
    Resolution,
    /// Black or blank (single-colour) frames.
    Blank,
    /// Frozen or duplicate consecutive frames.
    Frozen,
    /// Entropy of the scenes' key themes, in bits (run-wide).
    Diversity,
    /// Near-duplicate scenes: a scene's highest similarity to another scene (embedding cosine
    /// with `embedding_service`, lexical otherwise).
    Duplicate,
    /// Scenes whose frames are the same: a scene's smallest perceptual-hash distance to
    /// another scene's frames.
    SameFrames,
    /// Prompt-to-scene similarity by embeddings (needs `embedding_service`).
    Alignment,
    /// Narrative coherence graded by an LLM rubric (needs `judge_service`).
    Coherence,
}

/// The thresholds of the quality checks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct QualityThresholds {
    /// Fewest frames per scene.
    #[serde(default = "default_min_frames")]
    pub min_frames: u32,
    /// Narrowest acceptable frame, in pixels.
    #[serde(default = "default_min_side")]
    pub min_width: u32,
    /// Lowest acceptable frame, in pixels.
    #[serde(default = "default_min_side")]
    pub min_height: u32,
    /// Largest share of black or blank frames in a scene (0–1).
    #[serde(default = "default_max_blank")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_blank_fraction: f64,
    /// Largest share of frames identical to the one before (0–1).
    #[serde(default = "default_max_frozen")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_frozen_fraction: f64,
    /// Smallest entropy of the scenes' key themes, in bits (the seeds' target is 2.0; 16 bits
    /// would take 65536 equally common themes).
    #[serde(default = "default_min_diversity")]
    #[schemars(range(min = 0.0, max = 16.0))]
    pub min_diversity: f64,
    /// Largest lexical (theme-set Jaccard) similarity of a scene to any other (0–1), for the
    /// `duplicate` check without an `embedding_service`.
    #[serde(default = "default_max_similarity")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_similarity: f64,
    /// Largest embedding cosine of a scene to any other (0–1), for the `duplicate` check with
    /// an `embedding_service`.
    #[serde(default = "default_max_embedding_similarity")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub max_embedding_similarity: f64,
    /// Smallest perceptual-hash distance of a scene's frames to another scene's, in bits of
    /// 64 (mean over the first, middle and last frames; 0 = the same frames). The default 0.5
    /// flags frames that differ by at most one bit in all three hashes.
    #[serde(default = "default_min_frame_distance")]
    #[schemars(range(min = 0.0, max = 64.0))]
    pub min_frame_distance: f64,
    /// Smallest cosine similarity between a scene's prompt and the story's premise (else the
    /// whole story), 0–1 (the seeds' target is 0.75).
    #[serde(default = "default_min_alignment")]
    #[schemars(range(min = 0.0, max = 1.0))]
    pub min_alignment: f64,
    /// Smallest rubric score for coherence (1–5; the seeds' target is 4).
    #[serde(default = "default_min_coherence")]
    #[schemars(range(min = 1.0, max = 5.0))]
    pub min_coherence: f64,
}

impl Default for QualityThresholds {
    fn default() -> Self {
        QualityThresholds {
            min_frames: default_min_frames(),
            min_width: default_min_side(),
            min_height: default_min_side(),
            max_blank_fraction: default_max_blank(),
            max_frozen_fraction: default_max_frozen(),
            min_diversity: default_min_diversity(),
            max_similarity: default_max_similarity(),
            max_embedding_similarity: default_max_embedding_similarity(),
            min_frame_distance: default_min_frame_distance(),
            min_alignment: default_min_alignment(),
            min_coherence: default_min_coherence(),
        }
    }
}

/// One entry of a `quality` stage's `checks`: `"blank"`, or
/// `{ check = "blank", threshold = 0.2, weight = 2, metric = "clean-frames" }`.
///
/// Parsed from either shape by hand (an untagged enum would lose serde's error messages); the
/// schema says `oneOf` the two, so the structural check reports a mistake inside the table at
/// its span.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckEntry {
    /// The check.
    pub check: QualityCheck,
    /// The threshold for this check, over the `thresholds` table's value for it.
    pub threshold: Option<f64>,
    /// Its weight in the weighted score (default 1; 0 leaves it out of the score).
    pub weight: f64,
    /// A name to compare and gate on (sweeps, benches); default: the check's name.
    pub metric: Option<String>,
    /// Recorded and scored, but never fails the verdict (`Passed`, `enforce`).
    pub advisory: bool,
}

/// Heaviest weight a check may carry.
pub const MAX_CHECK_WEIGHT: f64 = 1000.0;

impl CheckEntry {
    pub fn named(check: QualityCheck) -> Self {
        CheckEntry {
            check,
            threshold: None,
            weight: 1.0,
            metric: None,
            advisory: false,
        }
    }
}

/// A `checks` entry as a table: a check with its own threshold, weight and metric name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CheckTable {
    /// The check.
    check: QualityCheck,
    /// The threshold for this check, over the `thresholds` table's (its range is the
    /// thresholds table's for that check; `resolution` has none of its own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    threshold: Option<f64>,
    /// Its weight in the weighted score (0–1000; 0 leaves it out of the score).
    #[serde(default = "default_weight")]
    #[schemars(range(min = 0.0, max = 1000.0))]
    weight: f64,
    /// A name to compare and gate on (letters, digits, `_`, `.`, `-`; at most 64).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(regex(pattern = r"^[A-Za-z0-9_.-]{1,64}$"))]
    metric: Option<String>,
    /// Recorded and scored, but never fails the verdict (`Passed`, `enforce`): for a check
    /// whose grader is not trusted yet (coherence by a tiny model).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    advisory: bool,
}

fn default_weight() -> f64 {
    1.0
}

impl<'de> Deserialize<'de> for CheckEntry {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = CheckEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a check's name or a table with `check`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<CheckEntry, E> {
                let check = QualityCheck::deserialize(serde::de::value::StrDeserializer::new(v))?;
                Ok(CheckEntry::named(check))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, m: A) -> Result<CheckEntry, A::Error> {
                let t = CheckTable::deserialize(serde::de::value::MapAccessDeserializer::new(m))?;
                Ok(CheckEntry {
                    check: t.check,
                    threshold: t.threshold,
                    weight: t.weight,
                    metric: t.metric,
                    advisory: t.advisory,
                })
            }
        }
        d.deserialize_any(Visit)
    }
}

impl Serialize for CheckEntry {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        if *self == CheckEntry::named(self.check) {
            return self.check.serialize(s);
        }
        CheckTable {
            check: self.check,
            threshold: self.threshold,
            weight: self.weight,
            metric: self.metric.clone(),
            advisory: self.advisory,
        }
        .serialize(s)
    }
}

impl JsonSchema for CheckEntry {
    fn schema_name() -> Cow<'static, str> {
        "CheckEntry".into()
    }
    fn json_schema(g: &mut SchemaGenerator) -> Schema {
        // The names inline (not a `$ref` to the enum's own `oneOf` of described constants), so
        // that a table is refused by this branch's type alone and the structural check reports
        // the table branch's own errors.
        let names: Vec<&str> = QualityCheck::ALL.iter().map(|c| c.as_str()).collect();
        let table = g.subschema_for::<CheckTable>();
        json_schema!({
            "description": "A check's name, or a table with its name (`check`) and its own `threshold`, `weight` and `metric`.",
            "oneOf": [{ "type": "string", "enum": names }, table]
        })
    }
}

/// Which side of its threshold a check passes on, and the range a threshold of it may take.
impl QualityCheck {
    pub const ALL: [QualityCheck; 9] = [
        QualityCheck::FrameCount,
        QualityCheck::Resolution,
        QualityCheck::Blank,
        QualityCheck::Frozen,
        QualityCheck::Diversity,
        QualityCheck::Duplicate,
        QualityCheck::SameFrames,
        QualityCheck::Alignment,
        QualityCheck::Coherence,
    ];

    /// The check passes at or above its threshold (else at or below).
    pub fn passes_at_least(self) -> bool {
        !matches!(
            self,
            QualityCheck::Blank | QualityCheck::Frozen | QualityCheck::Duplicate
        )
    }

    /// The range a `threshold` of this check may take (the thresholds table's), and whether it
    /// must be whole; `None` for `resolution`, whose floor is `min_width` and `min_height`.
    pub fn threshold_range(self) -> Option<(f64, f64, bool)> {
        match self {
            QualityCheck::FrameCount => Some((0.0, f64::from(u32::MAX), true)),
            QualityCheck::Resolution => None,
            QualityCheck::Blank
            | QualityCheck::Frozen
            | QualityCheck::Duplicate
            | QualityCheck::Alignment => Some((0.0, 1.0, false)),
            QualityCheck::Diversity => Some((0.0, 16.0, false)),
            QualityCheck::SameFrames => Some((0.0, 64.0, false)),
            QualityCheck::Coherence => Some((1.0, 5.0, false)),
        }
    }

    /// The name written in `checks`.
    pub fn as_str(self) -> &'static str {
        match self {
            QualityCheck::FrameCount => "frame-count",
            QualityCheck::Resolution => "resolution",
            QualityCheck::Blank => "blank",
            QualityCheck::Frozen => "frozen",
            QualityCheck::Diversity => "diversity",
            QualityCheck::Duplicate => "duplicate",
            QualityCheck::SameFrames => "same-frames",
            QualityCheck::Alignment => "alignment",
            QualityCheck::Coherence => "coherence",
        }
    }
}

impl QualityThresholds {
    /// The thresholds with each `checks` entry's own `threshold` put over the table's (a
    /// `duplicate` threshold over both of its similarities).
    pub fn with_overrides(&self, checks: &[CheckEntry]) -> QualityThresholds {
        let mut t = self.clone();
        for c in checks {
            let Some(v) = c.threshold else { continue };
            match c.check {
                // Whole and in range: `validate` checked it.
                QualityCheck::FrameCount => t.min_frames = v as u32,
                QualityCheck::Resolution => {}
                QualityCheck::Blank => t.max_blank_fraction = v,
                QualityCheck::Frozen => t.max_frozen_fraction = v,
                QualityCheck::Diversity => t.min_diversity = v,
                QualityCheck::Duplicate => {
                    t.max_similarity = v;
                    t.max_embedding_similarity = v;
                }
                QualityCheck::SameFrames => t.min_frame_distance = v,
                QualityCheck::Alignment => t.min_alignment = v,
                QualityCheck::Coherence => t.min_coherence = v,
            }
        }
        t
    }
}

pub(super) fn default_quality_checks() -> Vec<CheckEntry> {
    [
        QualityCheck::FrameCount,
        QualityCheck::Resolution,
        QualityCheck::Blank,
        QualityCheck::Frozen,
        QualityCheck::Diversity,
        QualityCheck::Duplicate,
        QualityCheck::SameFrames,
    ]
    .into_iter()
    .map(CheckEntry::named)
    .collect()
}
fn default_min_side() -> u32 {
    64
}
fn default_max_blank() -> f64 {
    0.1
}
fn default_max_frozen() -> f64 {
    0.5
}
fn default_min_diversity() -> f64 {
    2.0
}
fn default_max_similarity() -> f64 {
    0.6
}
fn default_max_embedding_similarity() -> f64 {
    0.9
}
fn default_min_alignment() -> f64 {
    0.75
}
fn default_min_coherence() -> f64 {
    4.0
}
fn default_min_frame_distance() -> f64 {
    0.5
}
