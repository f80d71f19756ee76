//! The stage kinds, one file each. A stage attempt takes its typed config and what the run
//! gives it, and returns an outcome or a classified failure; the executor owns retries.

pub mod await_marker;
pub mod collect_frames;
pub mod comfy_files;
pub mod llm;
pub mod output;
pub mod patch_workflow;
pub mod quality;
pub mod queue;
pub mod validate;
