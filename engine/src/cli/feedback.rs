//! `cinepipe feedback`: rate a scene of a run, or summarise the ratings of many runs
//! (`crate::feedback`).

use super::args::FeedbackArgs;
use super::output::outln;
use crate::exit::ExitCode;
use crate::feedback::{FeedbackError, Rating, give, summarise, summary_table};

pub(crate) fn feedback(args: &FeedbackArgs) -> ExitCode {
    if let Some(dir) = &args.summary {
        return match summarise(dir) {
            Ok(rows) if rows.is_empty() => {
                eprintln!("no ratings in the runs under `{}`", dir.display());
                ExitCode::Success
            }
            Ok(rows) => {
                outln!("{}", summary_table(&rows).trim_end());
                ExitCode::Success
            }
            Err(e) => {
                eprintln!("error: cannot read folder `{}`: {e}", dir.display());
                ExitCode::Io
            }
        };
    }
    // clap requires both unless --summary is given.
    let (Some(dir), Some(stars)) = (&args.run_dir, args.rating) else {
        eprintln!("error: a run folder and --rating are required");
        return ExitCode::Usage;
    };
    let rating = Rating {
        scene: args.scene.clone(),
        rating: stars,
        comment: args.comment.clone(),
        author: args.author.clone(),
    };
    match give(dir, &rating) {
        Ok(f) => {
            outln!(
                "rated {} of {}: {} star{}",
                f.scene_id
                    .as_deref()
                    .map_or_else(|| "the run".to_owned(), |s| format!("scene {s}")),
                dir.display(),
                f.rating,
                if f.rating == 1 { "" } else { "s" }
            );
            ExitCode::Success
        }
        Err(e) => {
            eprintln!("error: {e}");
            match e {
                e if e.is_bad_input() => ExitCode::Usage,
                FeedbackError::NotARun { .. } | FeedbackError::NoMetadata { .. } => {
                    ExitCode::Failure
                }
                FeedbackError::BadMetadata { .. } => ExitCode::ContractViolation,
                _ => ExitCode::Io,
            }
        }
    }
}
