//! `cinepipe feedback`: a person's rating of a scene (or of a whole run) written into the run's
//! `artifact-metadata.json` (`Feedback`, the contract's names) and journaled, and the ratings of
//! many runs summarised by genre, prompt template version and model (`summary`).
//!
//! A rating is a read-modify-write of the metadata, done under the run folder's lock
//! (`rundir::lock`), which the telemetry writer of a running or resumed session takes too: one
//! waits for the other, and neither loses the other's write.

use std::path::{Path, PathBuf};

use crate::artifact_metadata::{ArtifactMetadata, Feedback, METADATA_FILE, Timestamp};
use crate::rundir::event::{Event, EventKind};
use crate::rundir::journal::{self, JournalError};
use crate::rundir::lock::{FolderLock, METADATA_LOCK_WAIT};
use crate::rundir::{EVENTS, MANIFEST};

mod summary;

pub use summary::{SummaryRow, summarise, summary_table};

/// The lowest and highest rating.
pub const RATINGS: std::ops::RangeInclusive<u8> = 1..=5;

/// Scene ids an unknown-scene error lists at most.
const SCENES_LISTED: usize = 10;

/// One rating to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rating {
    /// The scene rated (its `SceneId`); none for the run as a whole.
    pub scene: Option<String>,
    pub rating: u8,
    pub comment: Option<String>,
    pub author: Option<String>,
}

/// Why a rating was not recorded. Nothing is changed in any of these cases, except the last
/// (`Journal`), where the rating is in the metadata but its journal line is not.
#[derive(Debug, thiserror::Error)]
pub enum FeedbackError {
    #[error("rating {0} is out of range: give 1 to 5 stars")]
    Rating(u8),
    #[error("`{}` is not a run folder (it has no {MANIFEST} or {EVENTS})", path.display())]
    NotARun { path: PathBuf },
    #[error("`{}` has no {METADATA_FILE} yet: the run has not written its telemetry", path.display())]
    NoMetadata { path: PathBuf },
    #[error("{METADATA_FILE} of `{}` does not parse: {message}", path.display())]
    BadMetadata { path: PathBuf, message: String },
    #[error("unknown scene `{scene}`{hint}; scenes: {known}")]
    UnknownScene {
        scene: String,
        hint: String,
        known: String,
    },
    #[error("`{}` stayed locked by another cinepipe process for {}s", path.display(), METADATA_LOCK_WAIT.as_secs())]
    Busy { path: PathBuf },
    #[error("cannot read or write `{}`: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the rating is recorded in {METADATA_FILE}, but not in the journal: {0}")]
    Journal(#[source] JournalError),
}

impl FeedbackError {
    /// The input was wrong (a rating out of range, a scene the run does not have), as opposed
    /// to a folder that cannot take a rating.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            FeedbackError::Rating(_) | FeedbackError::UnknownScene { .. }
        )
    }
}

fn did_you_mean(scene: &str, known: &[&str]) -> String {
    known
        .iter()
        .map(|k| (strsim::jaro_winkler(scene, k), *k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map_or_else(String::new, |(_, k)| {
            format!(" (hint: did you mean `{k}`?)")
        })
}

/// Records `r` in the run folder `dir`: appended to `Feedback` in `artifact-metadata.json`
/// (atomically, under the folder's lock), then a `feedback-given` line in the journal.
pub fn give(dir: &Path, r: &Rating) -> Result<Feedback, FeedbackError> {
    if !RATINGS.contains(&r.rating) {
        return Err(FeedbackError::Rating(r.rating));
    }
    if !dir.join(MANIFEST).is_file() && !dir.join(EVENTS).is_file() {
        return Err(FeedbackError::NotARun {
            path: dir.to_owned(),
        });
    }
    let path = dir.join(METADATA_FILE);
    if !path.is_file() {
        return Err(FeedbackError::NoMetadata {
            path: dir.to_owned(),
        });
    }
    let io = |source| FeedbackError::Io {
        path: path.clone(),
        source,
    };
    let _lock = FolderLock::exclusive(dir, METADATA_LOCK_WAIT).map_err(|e| {
        if e.kind() == std::io::ErrorKind::WouldBlock {
            FeedbackError::Busy {
                path: dir.to_owned(),
            }
        } else {
            io(e)
        }
    })?;
    let text = std::fs::read_to_string(&path).map_err(io)?;
    let mut meta: ArtifactMetadata =
        serde_json::from_str(&text).map_err(|e| FeedbackError::BadMetadata {
            path: dir.to_owned(),
            message: e.to_string(),
        })?;
    if let Some(scene) = &r.scene
        && !meta.scenes.iter().any(|s| &s.scene_id == scene)
    {
        let known: Vec<&str> = meta.scenes.iter().map(|s| s.scene_id.as_str()).collect();
        return Err(FeedbackError::UnknownScene {
            scene: scene.clone(),
            hint: did_you_mean(scene, &known),
            known: match known.len() {
                0 => "(none)".to_owned(),
                // A long story's ids say what they look like in a few.
                n if n > SCENES_LISTED => {
                    format!("{}, … ({n} in all)", known[..SCENES_LISTED].join(", "))
                }
                _ => known.join(", "),
            },
        });
    }
    let feedback = Feedback {
        scene_id: r.scene.clone(),
        rating: r.rating,
        comment: r.comment.clone(),
        author: r.author.clone(),
        submitted_at: Timestamp::now(),
    };
    meta.feedback.push(feedback.clone());
    let mut bytes = serde_json::to_vec_pretty(&meta).map_err(|e| io(e.into()))?;
    bytes.push(b'\n');
    crate::fsutil::write_atomic(&path, &bytes).map_err(io)?;
    journal::append_event(
        &dir.join(EVENTS),
        &Event::now(EventKind::FeedbackGiven {
            scene: r.scene.clone(),
            rating: r.rating,
            comment: r.comment.clone(),
            author: r.author.clone(),
        }),
    )
    .map_err(FeedbackError::Journal)?;
    Ok(feedback)
}

#[cfg(test)]
mod tests;
